//! Fetch (key 1), versions 4–12. Long-poll: when less than `min_bytes` is available the request
//! parks on the owning shards' partitions (no polling) until data arrives or `max_wait_ms`
//! passes. Fetch sessions (KIP-227) are not kept: every response has session id 0, which tells
//! clients to keep sending full fetch requests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;

use crate::calls::{Call, FetchOutcome, FetchPart, Reply};

use super::Ctx;

/// Upper bound on `max_wait_ms` honoured (clients send up to a few seconds).
pub const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);
/// Bound on wake-and-reread rounds of one fetch.
const MAX_ROUNDS: usize = 1000;

struct Slot {
    topic: usize,
    partition: i32,
    shard: Option<usize>,
    part: Option<FetchPart>,
    outcome: FetchOutcome,
}

pub async fn handle(ctx: &Ctx<'_>, req: FetchRequest) -> FetchResponse {
    let start = Instant::now();
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_FETCH_WAIT);
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    let mut slots = Vec::new();
    let mut names = Vec::with_capacity(req.topics.len());
    for (ti, t) in req.topics.iter().enumerate() {
        names.push(t.topic.clone());
        let meta = ctx.broker.topic(t.topic.0.as_str());
        for p in &t.partitions {
            let owner = meta
                .as_ref()
                .and_then(|m| m.partitions.get(p.partition as usize).cloned());
            let mut slot = Slot {
                topic: ti,
                partition: p.partition,
                shard: owner.as_ref().map(|o| o.shard as usize),
                part: owner.map(|o| FetchPart {
                    group: o.group,
                    offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    isolation: req.isolation_level,
                }),
                outcome: FetchOutcome::default(),
            };
            if slot.part.is_none() {
                slot.outcome.error = ResponseError::UnknownTopicOrPartition.code();
                slot.outcome.high_watermark = -1;
                slot.outcome.last_stable_offset = -1;
                slot.outcome.log_start_offset = -1;
            }
            slots.push(slot);
        }
    }
    let mut rounds = 0;
    loop {
        rounds += 1;
        read_all(ctx, &mut slots).await;
        let total: usize = slots.iter().map(|s| s.outcome.bytes).sum();
        let errors = slots.iter().any(|s| s.outcome.error != 0);
        let elapsed = start.elapsed();
        if total >= min_bytes.max(1) || errors || elapsed >= wait || rounds >= MAX_ROUNDS {
            break;
        }
        if ctx.broker.shared.is_shutting_down() {
            break;
        }
        wait_for_data(ctx, &slots, wait - elapsed).await;
    }
    build(names, slots, max_bytes)
}

async fn read_all(ctx: &Ctx<'_>, slots: &mut [Slot]) {
    let mut by_shard: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, s) in slots.iter().enumerate() {
        if let (Some(shard), Some(_)) = (s.shard, &s.part) {
            by_shard.entry(shard).or_default().push(i);
        }
    }
    let calls = by_shard.iter().map(|(&shard, idxs)| {
        let parts: Vec<FetchPart> = idxs
            .iter()
            .map(|&i| slots[i].part.clone().expect("filtered"))
            .collect();
        async move { (shard, ctx.broker.call(shard, Call::Fetch(parts)).await) }
    });
    let replies = futures::future::join_all(calls).await;
    for (shard, reply) in replies {
        let idxs = &by_shard[&shard];
        match reply {
            Some(Reply::Fetch(outcomes)) => {
                for (&i, o) in idxs.iter().zip(outcomes) {
                    slots[i].outcome = o;
                }
            }
            _ => {
                for &i in idxs {
                    slots[i].outcome.error = ResponseError::NotLeaderOrFollower.code();
                }
            }
        }
    }
}

async fn wait_for_data(ctx: &Ctx<'_>, slots: &[Slot], left: Duration) {
    let mut by_shard: BTreeMap<usize, Vec<(u64, i64)>> = BTreeMap::new();
    for s in slots {
        if let (Some(shard), Some(p)) = (s.shard, &s.part) {
            // Wait for the high watermark to pass what we already have.
            by_shard
                .entry(shard)
                .or_default()
                .push((p.group, s.outcome.high_watermark.max(p.offset)));
        }
    }
    if by_shard.is_empty() {
        glommio::timer::sleep(left).await;
        return;
    }
    let timeout_ms = left.as_millis().max(1) as u64;
    let waits: Vec<_> = by_shard
        .into_iter()
        .map(|(shard, parts)| {
            Box::pin(async move {
                ctx.broker
                    .call(shard, Call::WaitForData { parts, timeout_ms })
                    .await
            })
        })
        .collect();
    futures::future::select_all(waits).await;
}

fn build(
    names: Vec<kafka_protocol::messages::TopicName>,
    slots: Vec<Slot>,
    max_bytes: usize,
) -> FetchResponse {
    let mut topics: Vec<FetchableTopicResponse> = names
        .into_iter()
        .map(|n| FetchableTopicResponse::default().with_topic(n))
        .collect();
    let mut total = 0usize;
    for s in slots {
        let o = s.outcome;
        let mut records = BytesMut::new();
        // The response limit counts whole batches; the first batch always goes, so a consumer
        // can make progress past a batch larger than the limit.
        if total == 0 || total + o.bytes <= max_bytes {
            records.reserve(o.bytes);
            for b in &o.batches {
                records.extend_from_slice(b);
            }
            total += o.bytes;
        }
        topics[s.topic].partitions.push(
            PartitionData::default()
                .with_partition_index(s.partition)
                .with_error_code(o.error)
                .with_high_watermark(o.high_watermark)
                .with_last_stable_offset(o.last_stable_offset)
                .with_log_start_offset(o.log_start_offset)
                .with_aborted_transactions(Some(Vec::new()))
                .with_preferred_read_replica(BrokerId(-1))
                .with_records(Some(records.freeze())),
        );
    }
    FetchResponse::default()
        .with_session_id(0)
        .with_responses(topics)
}
