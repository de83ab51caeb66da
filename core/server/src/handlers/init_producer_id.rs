//! InitProducerId (key 22), versions 0–4: idempotent producers get a fresh producer id with
//! epoch 0; requests with a transactional id go to its transaction coordinator
//! ([`super::txn::init_producer_id`]).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Ctx;

pub async fn handle(ctx: &Ctx<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        return super::txn::init_producer_id(ctx, req).await;
    }
    // KIP-679: an idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some
    // topic.
    if !ctx.cluster_allowed(chronik_core::acl::op::IDEMPOTENT_WRITE)
        && !ctx.allowed_on_any(
            chronik_core::acl::op::WRITE,
            chronik_core::acl::resource::TOPIC,
        )
    {
        return resp
            .with_error_code(kafka_protocol::ResponseError::ClusterAuthorizationFailed.code());
    }
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 {
        // KIP-360: an idempotent producer bumping its epoch after an error keeps its id.
        if req.producer_epoch < i16::MAX - 1 {
            return resp
                .with_producer_id(req.producer_id)
                .with_producer_epoch(req.producer_epoch + 1);
        }
    }
    match ctx.broker.next_producer_id().await {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => resp.with_error_code(e.kafka_code()),
    }
}
