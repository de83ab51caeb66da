//! Produce (key 0), versions 3–11. The partitions of a request are grouped by owning shard and
//! each shard gets one call, handled concurrently; the owner validates every batch (length,
//! magic, CRC32C, counts), assigns offsets and answers when the batch is committed (acks=1/all)
//! or at once (acks=0: no response is sent).
//!
//! Transactional batches (read from the first batch header of each partition; v3+ requests carry
//! one batch per partition) need the request's transactional id (else
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as Kafka answers) and are verified with the
//! transaction coordinator first: every such partition must be in the producer's ongoing
//! transaction (KIP-890 part 1), so a late or stray batch cannot leave a hanging transaction.

use std::collections::BTreeMap;

use bytes::Bytes;
use chronik_core::acl;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;

use crate::calls::{Call, ProduceOutcome, Reply};

use super::{str_bytes, Ctx};

/// One shard's share of a request: (topic index, partition index) slots and their
/// (raft group, records).
type ShardWork = (Vec<(usize, usize)>, Vec<(u64, Bytes)>);

pub async fn handle(ctx: &Ctx<'_>, req: ProduceRequest) -> ProduceResponse {
    let acks = req.acks;
    let invalid_acks = !matches!(acks, -1..=1);
    let txn_error = verify_transactional(ctx, &req).await;
    // (topic index, partition index) → outcome; routed work grouped by shard.
    let mut outcomes: Vec<Vec<(i32, Option<ProduceOutcome>)>> =
        Vec::with_capacity(req.topic_data.len());
    let mut by_shard: BTreeMap<usize, ShardWork> = BTreeMap::new();
    // Looked up in place: cloning a topic's metadata copies its whole partition table.
    let all_meta = ctx.broker.meta();
    for (ti, td) in req.topic_data.iter().enumerate() {
        let meta = all_meta.topics.get(td.name.0.as_str());
        let authorized = ctx.allowed(acl::op::WRITE, acl::resource::TOPIC, td.name.0.as_str());
        let mut parts = Vec::with_capacity(td.partition_data.len());
        for (pi, pd) in td.partition_data.iter().enumerate() {
            let early = if invalid_acks {
                Some(err(ResponseError::InvalidRequiredAcks))
            } else if !authorized {
                Some(err(ResponseError::TopicAuthorizationFailed))
            } else if txn_error != 0 && first_transactional(pd.records.as_ref()).is_some() {
                Some(ProduceOutcome::failed(txn_error))
            } else {
                match meta.and_then(|m| m.partitions.get(pd.index as usize)) {
                    None => Some(err(ResponseError::UnknownTopicOrPartition)),
                    Some(p) => {
                        let e = by_shard.entry(p.shard as usize).or_default();
                        e.0.push((ti, pi));
                        e.1.push((p.group, pd.records.clone().unwrap_or_default()));
                        None
                    }
                }
            };
            parts.push((pd.index, early));
        }
        outcomes.push(parts);
    }
    let calls = by_shard
        .into_iter()
        .map(|(shard, (slots, parts))| async move {
            let call = Call::Produce {
                parts,
                acks,
                timeout_ms: req.timeout_ms,
            };
            (slots, ctx.broker.call(shard, call).await)
        });
    for (slots, reply) in futures::future::join_all(calls).await {
        let results = match reply {
            Some(Reply::Produce(r)) if r.len() == slots.len() => r,
            _ => vec![err(ResponseError::NotLeaderOrFollower); slots.len()],
        };
        for ((ti, pi), o) in slots.into_iter().zip(results) {
            outcomes[ti][pi].1 = Some(o);
        }
    }
    let topics = req
        .topic_data
        .into_iter()
        .zip(outcomes)
        .map(|(td, parts)| {
            let partition_responses = parts
                .into_iter()
                .map(|(idx, o)| partition_response(ctx, idx, o.expect("every partition answered")))
                .collect();
            TopicProduceResponse::default()
                .with_name(td.name)
                .with_partition_responses(partition_responses)
        })
        .collect();
    ProduceResponse::default().with_responses(topics)
}

fn partition_response(ctx: &Ctx<'_>, index: i32, o: ProduceOutcome) -> PartitionProduceResponse {
    let mut r = PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(o.error)
        .with_base_offset(o.base_offset)
        .with_log_append_time_ms(o.log_append_time_ms)
        .with_log_start_offset(o.log_start_offset);
    // Per-record errors and messages exist from v8 on.
    if let Some(msg) = o.error_message.filter(|_| ctx.version >= 8) {
        if o.error == ResponseError::InvalidRecord.code() {
            r = r.with_record_errors(vec![BatchIndexAndErrorMessage::default()
                .with_batch_index(0)
                .with_batch_index_error_message(Some(str_bytes(msg.clone())))]);
        }
        r = r.with_error_message(Some(str_bytes(msg)));
    }
    r
}

/// (producer id, epoch) of the first batch if it is transactional.
fn first_transactional(records: Option<&Bytes>) -> Option<(i64, i16)> {
    let info = chronik_protocol::batch::header(records?).ok()?.info();
    info.transactional
        .then_some((info.producer_id, info.producer_epoch))
}

/// The error for the request's transactional batches (0 when there are none or they may be
/// appended).
async fn verify_transactional(ctx: &Ctx<'_>, req: &ProduceRequest) -> i16 {
    let mut producer = None;
    let mut partitions = Vec::new();
    for td in &req.topic_data {
        for pd in &td.partition_data {
            if let Some(p) = first_transactional(pd.records.as_ref()) {
                if producer.is_some_and(|q| q != p) {
                    // One request, one producer: mixing them is malformed.
                    return ResponseError::InvalidRecord.code();
                }
                producer = Some(p);
                partitions.push((td.name.0.as_str().to_string(), pd.index));
            }
        }
    }
    let Some((producer_id, producer_epoch)) = producer else {
        return 0;
    };
    let Some(tid) = req.transactional_id.as_ref() else {
        return ResponseError::TransactionalIdAuthorizationFailed.code();
    };
    if !ctx.allowed(
        acl::op::WRITE,
        acl::resource::TRANSACTIONAL_ID,
        tid.0.as_str(),
    ) {
        return ResponseError::TransactionalIdAuthorizationFailed.code();
    }
    let code =
        super::txn::verify_produce(ctx, tid.0.as_str(), producer_id, producer_epoch, partitions)
            .await;
    if code != 0 {
        tracing::debug!(
            transactional_id = tid.0.as_str(),
            code,
            "transactional produce refused"
        );
    }
    // As Kafka does: a coordinator that cannot answer yet is a retriable produce error.
    let unavailable = [
        ResponseError::CoordinatorNotAvailable,
        ResponseError::CoordinatorLoadInProgress,
        ResponseError::NotCoordinator,
        ResponseError::ConcurrentTransactions,
    ];
    if unavailable.iter().any(|e| e.code() == code) {
        return ResponseError::NotEnoughReplicas.code();
    }
    code
}

fn err(e: ResponseError) -> ProduceOutcome {
    ProduceOutcome::failed(e.code())
}
