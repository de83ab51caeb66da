//! Produce (key 0), versions 3–11. Partitions are handled concurrently, each on its owning
//! shard; the owner validates every batch (length, magic, CRC32C, counts), assigns offsets and
//! answers when the batch is committed (acks=1/all) or at once (acks=0, no response).

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;

use crate::calls::{Call, ProduceOutcome, Reply};

use super::{str_bytes, Ctx};

pub async fn handle(ctx: &Ctx<'_>, req: ProduceRequest) -> ProduceResponse {
    let acks = req.acks;
    let timeout = req.timeout_ms;
    let mut topics = Vec::with_capacity(req.topic_data.len());
    let invalid_acks = !matches!(acks, -1..=1);
    let transactional = req.transactional_id.is_some();
    for td in req.topic_data {
        let meta = ctx.broker.topic(td.name.0.as_str());
        let futs = td.partition_data.into_iter().map(|pd| {
            let meta = meta.as_ref();
            async move {
                let idx = pd.index;
                let outcome = if invalid_acks {
                    err(ResponseError::InvalidRequiredAcks)
                } else if transactional {
                    err(ResponseError::TransactionalIdAuthorizationFailed)
                } else {
                    match meta.and_then(|m| m.partitions.get(idx as usize).cloned()) {
                        None => err(ResponseError::UnknownTopicOrPartition),
                        Some(p) => {
                            let call = Call::Produce {
                                group: p.group,
                                records: pd.records.unwrap_or_default(),
                                acks,
                                timeout_ms: timeout,
                            };
                            match ctx.broker.call(p.shard as usize, call).await {
                                Some(Reply::Produce(o)) => o,
                                _ => err(ResponseError::NotLeaderOrFollower),
                            }
                        }
                    }
                };
                let mut r = PartitionProduceResponse::default()
                    .with_index(idx)
                    .with_error_code(outcome.error)
                    .with_base_offset(outcome.base_offset)
                    .with_log_append_time_ms(outcome.log_append_time_ms)
                    .with_log_start_offset(outcome.log_start_offset);
                if let Some(msg) = outcome.error_message.filter(|_| ctx.version >= 8) {
                    if outcome.error == ResponseError::InvalidRecord.code() {
                        r = r.with_record_errors(vec![BatchIndexAndErrorMessage::default()
                            .with_batch_index(0)
                            .with_batch_index_error_message(Some(str_bytes(msg.clone())))]);
                    }
                    r = r.with_error_message(Some(str_bytes(msg)));
                }
                r
            }
        });
        let partition_responses = futures::future::join_all(futs).await;
        topics.push(
            TopicProduceResponse::default()
                .with_name(td.name)
                .with_partition_responses(partition_responses),
        );
    }
    ProduceResponse::default().with_responses(topics)
}

fn err(e: ResponseError) -> ProduceOutcome {
    ProduceOutcome {
        error: e.code(),
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
        error_message: None,
    }
}
