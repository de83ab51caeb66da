//! DescribeCluster (key 60), versions 0–2.
//!
//! This listener is a broker endpoint (Kafka's `EndpointType.BROKER` = 1): a request meant for a
//! controller endpoint gets MISMATCHED_ENDPOINT_TYPE, an unknown type UNSUPPORTED_ENDPOINT_TYPE
//! (INVALID_REQUEST at v0), as Kafka's brokers answer. A running broker is never fenced, so v2's
//! `include_fenced_brokers` changes nothing.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, Ctx};

/// Kafka's `EndpointType` ids.
const ENDPOINT_BROKER: i8 = 1;
const ENDPOINT_CONTROLLER: i8 = 2;

pub fn handle(ctx: &Ctx<'_>, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let s = &ctx.broker.shared;
    if req.endpoint_type != ENDPOINT_BROKER {
        let (error, message) = if req.endpoint_type == ENDPOINT_CONTROLLER {
            (
                ResponseError::MismatchedEndpointType,
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint \
                 of type CONTROLLER"
                    .to_string(),
            )
        } else {
            (
                ResponseError::UnsupportedEndpointType,
                format!("Unsupported endpoint type {}", req.endpoint_type),
            )
        };
        let error = if ctx.version == 0 {
            ResponseError::InvalidRequest
        } else {
            error
        };
        return DescribeClusterResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message)))
            .with_endpoint_type(ENDPOINT_BROKER);
    }
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(s.cluster_id.clone()))
        .with_controller_id(BrokerId(s.node_id))
        .with_endpoint_type(ENDPOINT_BROKER)
        .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
            super::acls::authorized_operations(
                ctx,
                chronik_core::acl::resource::CLUSTER,
                chronik_core::acl::CLUSTER_NAME,
                super::acls::CLUSTER_OPERATIONS,
            )
        } else {
            super::acls::NOT_REQUESTED
        })
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(s.node_id))
            .with_host(str_bytes(s.advertised_host.clone()))
            .with_port(s.advertised_port as i32)
            .with_rack(s.config.broker.rack_id.clone().map(str_bytes))
            .with_is_fenced(false)])
}
