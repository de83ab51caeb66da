//! DescribeCluster (key 60), versions 0–1.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{str_bytes, Ctx};

pub fn handle(ctx: &Ctx<'_>, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let s = &ctx.broker.shared;
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(s.cluster_id.clone()))
        .with_controller_id(BrokerId(s.node_id))
        .with_endpoint_type(1)
        .with_cluster_authorized_operations(i32::MIN)
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(s.node_id))
            .with_host(str_bytes(s.advertised_host.clone()))
            .with_port(s.advertised_port as i32)])
}
