//! Fetch (key 1), versions 4–18.
//!
//! - v4–12 name topics; v13+ name them by topic id only (KIP-516). An unknown id answers
//!   UNKNOWN_TOPIC_ID for each partition asked; response topics then carry the id and, as in
//!   Kafka, no name.
//! - v7+ incremental fetch sessions (KIP-227), kept per connection: see [`super::fetch_session`].
//!   A full fetch (or an incremental one resolved from its session) reads its partitions here;
//!   the session decides which of them the answer lists.
//! - v15 moves the follower's replica id into `replica_state`, v17 adds the follower's directory
//!   id and v18 its high watermark. Those are follower-only fields: replicas here follow through
//!   Raft, not Fetch, so consumers (replica -1) are all this handler serves and they are ignored.
//! - v16 (KIP-951): a partition answering NOT_LEADER_OR_FOLLOWER carries the current leader and
//!   epoch when known, and the response the leader's endpoint (this node's advertised address),
//!   so the client can retry without a metadata round trip.
//!
//! Isolation: read_committed (`isolation_level` 1) reads below the last stable offset and gets
//! the aborted transactions overlapping what is returned; both levels are told the LSO.
//!
//! Long-poll: when less than `min_bytes` is available the request parks on the owning shards'
//! partitions (no polling) until data arrives or `max_wait_ms` passes; an incremental fetch waits
//! on every partition of its session. As in Kafka, a partition that cannot be resolved (unknown
//! topic, id or partition) is answered with its error without cutting the others' wait short;
//! a read error answers at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use chronik_core::acl;
use chronik_core::meta::MetaState;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};
use kafka_protocol::ResponseError;

use crate::calls::{Call, FetchOutcome, FetchPart, Reply};

use super::fetch_session::{
    PartitionAnswer, PartitionFetch, PartitionKey, PartitionSeen, Plan, TopicKey,
    INVALID_SESSION_ID,
};
use super::{str_bytes, Ctx};

/// Upper bound on `max_wait_ms` honoured (clients send up to a few seconds).
pub const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);
/// Bound on wake-and-reread rounds of one fetch.
const MAX_ROUNDS: usize = 1000;
/// The first version that names topics by id (KIP-516).
pub const TOPIC_ID_VERSION: i16 = 13;
/// The first version whose response carries leader endpoints (KIP-951).
pub const NODE_ENDPOINTS_VERSION: i16 = 16;

/// One partition being read.
struct Slot {
    /// Index into the response's topic list.
    topic: usize,
    partition: i32,
    shard: Option<usize>,
    /// `None` when the partition could not be resolved (its error is in `outcome`).
    part: Option<FetchPart>,
    outcome: FetchOutcome,
    /// v16+: the current leader `(node id, epoch)` told with NOT_LEADER_OR_FOLLOWER.
    leader: Option<(i32, i32)>,
}

/// The response, and for each of its partitions (in order) the stored batches of its `records`
/// when there are several of them (empty otherwise): the encoder sends them as they are instead
/// of joining them (see `chronik_protocol::fetch_frame`).
pub async fn handle(ctx: &Ctx<'_>, req: FetchRequest) -> (FetchResponse, Vec<Vec<Bytes>>) {
    let start = Instant::now();
    let by_id = ctx.version >= TOPIC_ID_VERSION;
    let requested = requested_partitions(&req, by_id);
    let forgotten = forgotten_partitions(&req, by_id);
    let sessions = &ctx.conn.fetch_sessions;
    let plan = sessions.begin(
        req.session_id,
        req.session_epoch,
        by_id,
        &requested,
        &forgotten,
    );
    let wanted = match &plan {
        Plan::Error(code) => return (error_response(*code), Vec::new()),
        Plan::Incremental { partitions, .. } => partitions.as_slice(),
        Plan::Full | Plan::Sessionless => requested.as_slice(),
    };
    let (meta, ids) = ctx.broker.meta_and_ids();
    let (topics, mut slots) = resolve(&meta, &ids, wanted, req.isolation_level);
    if ctx.authorizing() {
        refuse_unreadable(ctx, &ids, wanted, &mut slots);
    }
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_FETCH_WAIT);
    let min_bytes = req.min_bytes.max(0) as usize;
    long_poll(ctx, &mut slots, min_bytes, start, wait).await;
    let max_bytes = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    limit_response_bytes(&mut slots, max_bytes);
    if ctx.version >= NODE_ENDPOINTS_VERSION {
        mark_leaders(ctx, &mut slots);
    }
    let (session_id, include) = match &plan {
        Plan::Sessionless => (INVALID_SESSION_ID, None),
        Plan::Full => {
            let answered: Vec<_> = wanted
                .iter()
                .zip(&slots)
                .map(|((k, f), s)| (k.clone(), *f, answer(s)))
                .collect();
            (sessions.open(by_id, &answered), None)
        }
        Plan::Incremental {
            session_id, epoch, ..
        } => {
            let answers: Vec<_> = wanted
                .iter()
                .zip(&slots)
                .map(|((k, _), s)| (k, answer(s)))
                .collect();
            match sessions.finish(*session_id, *epoch, &answers) {
                Ok(include) => (*session_id, Some(include)),
                Err(code) => return (error_response(code), Vec::new()),
            }
        }
        Plan::Error(code) => return (error_response(*code), Vec::new()),
    };
    let mut lists = Vec::new();
    let mut resp =
        build(&topics, slots, include.as_deref(), Some(&mut lists)).with_session_id(session_id);
    if resp
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .any(|p| p.current_leader.leader_id.0 == ctx.broker.shared.node_id)
    {
        resp.node_endpoints = vec![own_endpoint(ctx)];
    }
    (resp, lists)
}

/// The partitions a request lists, keyed by topic id (v13+) or name, in request order.
fn requested_partitions(req: &FetchRequest, by_id: bool) -> Vec<(PartitionKey, PartitionFetch)> {
    let mut out = Vec::new();
    for t in &req.topics {
        let topic = topic_key(by_id, &t.topic, t.topic_id);
        for p in &t.partitions {
            out.push((
                PartitionKey {
                    topic: topic.clone(),
                    partition: p.partition,
                },
                PartitionFetch {
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes,
                },
            ));
        }
    }
    out
}

/// The partitions an incremental request drops from its session (by id for v13+).
fn forgotten_partitions(req: &FetchRequest, by_id: bool) -> Vec<PartitionKey> {
    let mut out = Vec::new();
    for t in &req.forgotten_topics_data {
        let topic = topic_key(by_id, &t.topic, t.topic_id);
        for &partition in &t.partitions {
            out.push(PartitionKey {
                topic: topic.clone(),
                partition,
            });
        }
    }
    out
}

fn topic_key(by_id: bool, name: &TopicName, id: uuid::Uuid) -> TopicKey {
    if by_id {
        TopicKey::Id(id.as_u128())
    } else {
        TopicKey::Name(name.0.as_str().to_string())
    }
}

/// Finds each wanted partition's owner. Consecutive partitions of one topic share a response
/// topic entry (as Kafka groups them), so the topic list follows the wanted order.
fn resolve(
    meta: &MetaState,
    ids: &HashMap<u128, String>,
    wanted: &[(PartitionKey, PartitionFetch)],
    isolation: i8,
) -> (Vec<TopicKey>, Vec<Slot>) {
    let mut topics: Vec<TopicKey> = Vec::new();
    let mut slots = Vec::with_capacity(wanted.len());
    for (key, fetch) in wanted {
        if topics.last() != Some(&key.topic) {
            topics.push(key.topic.clone());
        }
        let topic = match &key.topic {
            TopicKey::Name(name) => meta.topics.get(name),
            TopicKey::Id(id) => ids.get(id).and_then(|name| meta.topics.get(name)),
        };
        let owner = topic.and_then(|t| {
            usize::try_from(key.partition)
                .ok()
                .and_then(|p| t.partitions.get(p))
        });
        let mut slot = Slot {
            topic: topics.len() - 1,
            partition: key.partition,
            shard: owner.map(|o| o.shard as usize),
            part: owner.map(|o| FetchPart {
                group: o.group,
                offset: fetch.fetch_offset,
                max_bytes: fetch.max_bytes.max(0) as usize,
                isolation,
            }),
            outcome: FetchOutcome::default(),
            leader: None,
        };
        if slot.part.is_none() {
            let error = match (&key.topic, topic) {
                (TopicKey::Id(_), None) => ResponseError::UnknownTopicId,
                _ => ResponseError::UnknownTopicOrPartition,
            };
            slot.outcome = failed(error.code());
        }
        slots.push(slot);
    }
    (topics, slots)
}

/// Partitions of topics the client may not READ get TOPIC_AUTHORIZATION_FAILED, unread.
fn refuse_unreadable(
    ctx: &Ctx<'_>,
    ids: &HashMap<u128, String>,
    wanted: &[(PartitionKey, PartitionFetch)],
    slots: &mut [Slot],
) {
    for ((key, _), slot) in wanted.iter().zip(slots.iter_mut()) {
        let name = match &key.topic {
            TopicKey::Name(name) => Some(name),
            TopicKey::Id(id) => ids.get(id),
        };
        if let Some(name) = name {
            if !ctx.allowed(acl::op::READ, acl::resource::TOPIC, name) {
                slot.part = None;
                slot.shard = None;
                slot.outcome = failed(ResponseError::TopicAuthorizationFailed.code());
            }
        }
    }
}

fn failed(error: i16) -> FetchOutcome {
    FetchOutcome {
        error,
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        ..Default::default()
    }
}

/// Reads until `min_bytes` are there, a read fails, or `wait` (from `start`) has passed.
async fn long_poll(
    ctx: &Ctx<'_>,
    slots: &mut [Slot],
    min_bytes: usize,
    start: Instant,
    wait: Duration,
) {
    if slots.iter().all(|s| s.part.is_none()) {
        // Nothing to read or wait on: every partition already has its error.
        return;
    }
    read_all(ctx, slots).await;
    let mut rounds = 1;
    loop {
        let total: usize = slots.iter().map(|s| s.outcome.bytes).sum();
        let read_error = slots
            .iter()
            .any(|s| s.part.is_some() && s.outcome.error != 0);
        let elapsed = start.elapsed();
        // As in Kafka, `min_bytes` 0 answers at once, with or without data.
        if total >= min_bytes || read_error || elapsed >= wait || rounds >= MAX_ROUNDS {
            break;
        }
        if ctx.broker.shared.is_shutting_down() {
            break;
        }
        rounds += 1;
        read_when_data(ctx, slots, wait - elapsed).await;
    }
}

/// Groups the readable slots by owning shard (slot indexes per shard).
fn by_shard(slots: &[Slot]) -> BTreeMap<usize, Vec<usize>> {
    let mut by_shard: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, s) in slots.iter().enumerate() {
        if let (Some(shard), Some(_)) = (s.shard, &s.part) {
            by_shard.entry(shard).or_default().push(i);
        }
    }
    by_shard
}

/// Stores a shard's reply to a read of `idxs` in their slots.
fn take_reply(slots: &mut [Slot], idxs: &[usize], reply: Option<Reply>) {
    match reply {
        Some(Reply::Fetch(outcomes)) if outcomes.len() == idxs.len() => {
            for (&i, o) in idxs.iter().zip(outcomes) {
                slots[i].outcome = o;
            }
        }
        _ => {
            for &i in idxs {
                slots[i].outcome = failed(ResponseError::NotLeaderOrFollower.code());
            }
        }
    }
}

async fn read_all(ctx: &Ctx<'_>, slots: &mut [Slot]) {
    let by_shard = by_shard(slots);
    let calls = by_shard.iter().map(|(&shard, idxs)| {
        let parts: Vec<FetchPart> = idxs
            .iter()
            .map(|&i| slots[i].part.clone().expect("filtered"))
            .collect();
        async move { (shard, ctx.broker.call(shard, Call::Fetch(parts)).await) }
    });
    let replies = futures::future::join_all(calls).await;
    for (shard, reply) in replies {
        take_reply(slots, &by_shard[&shard], reply);
    }
}

/// Asks every shard involved to wait until one of its partitions has data past what the last
/// read saw (or `left` runs out) and then read its partitions; takes the first shard's answer,
/// and tells the others their reads are no longer wanted. One cross-shard round trip per
/// wake-up instead of a wait and then a read of every shard.
async fn read_when_data(ctx: &Ctx<'_>, slots: &mut [Slot], left: Duration) {
    let by_shard = by_shard(slots);
    if by_shard.is_empty() {
        glommio::timer::sleep(left).await;
        return;
    }
    // Rounded up: a shard that returns before `left` is over costs another round.
    let timeout_ms = (left.as_micros() as u64).div_ceil(1000).max(1);
    let wanted = Arc::new(AtomicBool::new(true));
    let calls: Vec<_> = by_shard
        .iter()
        .map(|(&shard, idxs)| {
            let mut parts = Vec::with_capacity(idxs.len());
            let mut seen = Vec::with_capacity(idxs.len());
            for &i in idxs {
                let s = &slots[i];
                let p = s.part.clone().expect("filtered");
                // Wait for the high watermark (read_committed: the last stable offset) to pass
                // what we already have.
                let hw = if p.isolation == 1 {
                    s.outcome.last_stable_offset
                } else {
                    s.outcome.high_watermark
                };
                seen.push(hw.max(p.offset));
                parts.push(p);
            }
            let call = Call::FetchWhenData {
                parts,
                seen,
                timeout_ms,
                wanted: wanted.clone(),
            };
            Box::pin(async move { (shard, ctx.broker.call(shard, call).await) })
        })
        .collect();
    let ((shard, reply), _, rest) = futures::future::select_all(calls).await;
    wanted.store(false, Ordering::Release);
    drop(rest);
    take_reply(slots, &by_shard[&shard], reply);
}

/// Cuts the response at `max_bytes`, as Kafka does: whole batches, in partition order, inside a
/// partition too; the very first batch is always kept, so a consumer can make progress past a
/// batch larger than the limit. What is cut is read again next time (an incremental session
/// also moves the answered partitions to the back, so each gets its turn).
fn limit_response_bytes(slots: &mut [Slot], max_bytes: usize) {
    let mut total = 0usize;
    for s in slots.iter_mut().filter(|s| s.outcome.bytes > 0) {
        let mut kept = 0usize;
        let mut bytes = 0usize;
        for b in &s.outcome.batches {
            let after = total.saturating_add(bytes).saturating_add(b.len());
            if total + bytes != 0 && after > max_bytes {
                break;
            }
            bytes += b.len();
            kept += 1;
        }
        s.outcome.batches.truncate(kept);
        s.outcome.bytes = bytes;
        total += bytes;
    }
}

/// v16+: tells the current leader with each NOT_LEADER_OR_FOLLOWER, when one is known.
fn mark_leaders(ctx: &Ctx<'_>, slots: &mut [Slot]) {
    let shared = &ctx.broker.shared;
    for s in slots.iter_mut() {
        if s.outcome.error != ResponseError::NotLeaderOrFollower.code() {
            continue;
        }
        if let Some(p) = &s.part {
            let epoch = shared.leader_epoch(p.group);
            if epoch >= 0 {
                s.leader = Some((shared.node_id, epoch));
            }
        }
    }
}

fn own_endpoint(ctx: &Ctx<'_>) -> NodeEndpoint {
    let shared = &ctx.broker.shared;
    NodeEndpoint::default()
        .with_node_id(BrokerId(shared.node_id))
        .with_host(str_bytes(shared.advertised_host.clone()))
        .with_port(shared.advertised_port as i32)
        .with_rack(shared.config.broker.rack_id.clone().map(str_bytes))
}

/// What a session remembers of a partition's answer.
fn answer(s: &Slot) -> PartitionAnswer {
    PartitionAnswer {
        error: s.outcome.error,
        record_bytes: s.outcome.bytes,
        seen: PartitionSeen {
            high_watermark: s.outcome.high_watermark,
            last_stable_offset: s.outcome.last_stable_offset,
            log_start_offset: s.outcome.log_start_offset,
        },
    }
}

/// A fetch answered only with a top-level (session) error.
fn error_response(code: i16) -> FetchResponse {
    FetchResponse::default()
        .with_error_code(code)
        .with_session_id(INVALID_SESSION_ID)
}

/// The response body: the slots `include` selects (all when `None`), consecutive partitions of
/// one topic under one topic entry. With `lists`, a partition with several batches gets an empty
/// `records` placeholder and its batches are pushed to `lists` (one entry per partition, empty
/// for the others); without, they are joined into `records`.
fn build(
    topics: &[TopicKey],
    slots: Vec<Slot>,
    include: Option<&[bool]>,
    mut lists: Option<&mut Vec<Vec<Bytes>>>,
) -> FetchResponse {
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    let mut last_topic = None;
    for (i, s) in slots.into_iter().enumerate() {
        if include.is_some_and(|inc| !inc.get(i).copied().unwrap_or(false)) {
            continue;
        }
        if last_topic != Some(s.topic) {
            last_topic = Some(s.topic);
            responses.push(match &topics[s.topic] {
                TopicKey::Name(name) => {
                    FetchableTopicResponse::default().with_topic(TopicName(str_bytes(name.clone())))
                }
                TopicKey::Id(id) => {
                    FetchableTopicResponse::default().with_topic_id(uuid::Uuid::from_u128(*id))
                }
            });
        }
        let o = s.outcome;
        let aborted = match o.aborted {
            // read_committed: the list (possibly empty), as Kafka sends it.
            Some(list) => Some(
                list.into_iter()
                    .map(|(pid, first)| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(pid))
                            .with_first_offset(first)
                    })
                    .collect(),
            ),
            None => Some(Vec::new()),
        };
        // One batch (the common case for large records) is passed on as it is; several go to
        // the encoder as a list, or are joined once when there is no list to give them to.
        let mut batches = o.batches;
        let records = match (&batches[..], lists.as_deref_mut()) {
            ([one], _) => {
                let one = one.clone();
                if let Some(l) = lists.as_deref_mut() {
                    l.push(Vec::new());
                }
                one
            }
            (_, Some(l)) => {
                l.push(std::mem::take(&mut batches));
                Bytes::new()
            }
            (many, None) => {
                let mut joined = BytesMut::with_capacity(o.bytes);
                for b in many {
                    joined.extend_from_slice(b);
                }
                joined.freeze()
            }
        };
        let mut data = PartitionData::default()
            .with_partition_index(s.partition)
            .with_error_code(o.error)
            .with_high_watermark(o.high_watermark)
            .with_last_stable_offset(o.last_stable_offset)
            .with_log_start_offset(o.log_start_offset)
            .with_aborted_transactions(aborted)
            .with_preferred_read_replica(BrokerId(-1))
            .with_records(Some(records));
        if let Some((leader, epoch)) = s.leader {
            data = data.with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(epoch),
            );
        }
        responses
            .last_mut()
            .expect("a topic entry was pushed above")
            .partitions
            .push(data);
    }
    FetchResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use chronik_core::meta::PartitionMeta;
    use chronik_core::meta::TopicMeta;
    use kafka_protocol::protocol::{Decodable, Encodable};

    fn meta_with(name: &str, id: u128, partitions: u64) -> MetaState {
        let mut meta = MetaState::default();
        meta.topics.insert(
            name.to_string(),
            TopicMeta {
                name: name.to_string(),
                id,
                partitions: (0..partitions)
                    .map(|g| PartitionMeta {
                        group: 10 + g,
                        shard: 0,
                    })
                    .collect(),
                configs: BTreeMap::new(),
                internal: false,
            },
        );
        meta
    }

    fn want(topic: TopicKey, partition: i32) -> (PartitionKey, PartitionFetch) {
        (
            PartitionKey { topic, partition },
            PartitionFetch {
                fetch_offset: 0,
                max_bytes: 100,
            },
        )
    }

    fn with_bytes(mut s: Slot, n: usize) -> Slot {
        s.outcome.batches = vec![Bytes::from(vec![7u8; n])];
        s.outcome.bytes = n;
        s
    }

    #[test]
    fn resolve_by_id_and_name_and_the_errors_for_each() {
        let meta = meta_with("t", 0xabc, 2);
        let wanted = vec![
            want(TopicKey::Id(0xabc), 1),
            want(TopicKey::Id(0xabc), 5),
            want(TopicKey::Id(0xdef), 0),
            want(TopicKey::Name("t".into()), 0),
            want(TopicKey::Name("nope".into()), 0),
            want(TopicKey::Name("t".into()), -1),
        ];
        let (topics, slots) = resolve(&meta, &meta.id_index(), &wanted, 0);
        assert_eq!(
            topics,
            vec![
                TopicKey::Id(0xabc),
                TopicKey::Id(0xdef),
                TopicKey::Name("t".into()),
                TopicKey::Name("nope".into()),
                TopicKey::Name("t".into()),
            ]
        );
        let errors: Vec<i16> = slots.iter().map(|s| s.outcome.error).collect();
        assert_eq!(errors, vec![0, 3, 100, 0, 3, 3]);
        assert_eq!(slots[0].part.as_ref().map(|p| p.group), Some(11));
        assert_eq!(slots[2].outcome.high_watermark, -1);
    }

    #[test]
    fn response_limit_keeps_the_first_partition_with_records_whole() {
        let meta = meta_with("t", 1, 3);
        let wanted: Vec<_> = (0..3).map(|p| want(TopicKey::Id(1), p)).collect();
        let (_, slots) = resolve(&meta, &meta.id_index(), &wanted, 0);
        let mut slots: Vec<Slot> = slots
            .into_iter()
            .zip([0, 150, 60])
            .map(|(s, n)| with_bytes(s, n))
            .collect();
        slots[0].outcome.bytes = 0;
        slots[0].outcome.batches.clear();
        limit_response_bytes(&mut slots, 100);
        let kept: Vec<usize> = slots.iter().map(|s| s.outcome.bytes).collect();
        assert_eq!(kept, vec![0, 150, 0]);
    }

    #[test]
    fn response_limit_cuts_inside_a_partition_at_whole_batches() {
        let meta = meta_with("t", 1, 2);
        let wanted: Vec<_> = (0..2).map(|p| want(TopicKey::Id(1), p)).collect();
        let (_, slots) = resolve(&meta, &meta.id_index(), &wanted, 0);
        let mut slots: Vec<Slot> = slots.into_iter().map(|s| with_bytes(s, 0)).collect();
        for s in &mut slots {
            s.outcome.batches = vec![Bytes::from(vec![1u8; 40]); 3];
            s.outcome.bytes = 120;
        }
        // 100 bytes: two of the first partition's three 40-byte batches, nothing of the second.
        limit_response_bytes(&mut slots, 100);
        let kept: Vec<(usize, usize)> = slots
            .iter()
            .map(|s| (s.outcome.batches.len(), s.outcome.bytes))
            .collect();
        assert_eq!(kept, vec![(2, 80), (0, 0)]);
        // A limit below one batch still returns the first batch.
        for s in &mut slots {
            s.outcome.batches = vec![Bytes::from(vec![1u8; 40]); 3];
            s.outcome.bytes = 120;
        }
        limit_response_bytes(&mut slots, 10);
        let kept: Vec<usize> = slots.iter().map(|s| s.outcome.bytes).collect();
        assert_eq!(kept, vec![40, 0]);
    }

    #[test]
    fn v13_response_names_topics_by_id_only_and_skips_unselected_partitions() {
        let meta = meta_with("t", 0x1234, 2);
        let wanted = vec![want(TopicKey::Id(0x1234), 0), want(TopicKey::Id(0x1234), 1)];
        let (topics, slots) = resolve(&meta, &meta.id_index(), &wanted, 0);
        let slots: Vec<Slot> = slots.into_iter().map(|s| with_bytes(s, 5)).collect();
        let resp = build(&topics, slots, Some(&[false, true]), None);
        assert_eq!(resp.responses.len(), 1);
        let t = &resp.responses[0];
        assert_eq!(t.topic_id, uuid::Uuid::from_u128(0x1234));
        assert_eq!(t.topic.0.as_str(), "");
        assert_eq!(t.partitions.len(), 1);
        assert_eq!(t.partitions[0].partition_index, 1);
        // Round trip through the v13 codec: the id survives, the name is not on the wire.
        let mut buf = BytesMut::new();
        resp.encode(&mut buf, 13).unwrap();
        let back = FetchResponse::decode(&mut buf.freeze(), 13).unwrap();
        assert_eq!(back.responses[0].topic_id, t.topic_id);
    }

    #[test]
    fn v16_not_leader_carries_the_current_leader_and_the_endpoint_encodes() {
        let meta = meta_with("t", 9, 1);
        let (topics, mut slots) = resolve(&meta, &meta.id_index(), &[want(TopicKey::Id(9), 0)], 0);
        slots[0].outcome = failed(ResponseError::NotLeaderOrFollower.code());
        slots[0].leader = Some((1, 4));
        let mut resp = build(&topics, slots, None, None);
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 6);
        assert_eq!(
            (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
            (1, 4)
        );
        resp.node_endpoints = vec![NodeEndpoint::default()
            .with_node_id(BrokerId(1))
            .with_host(str_bytes("h"))
            .with_port(9092)];
        let mut buf = BytesMut::new();
        resp.encode(&mut buf, 16).unwrap();
        let back = FetchResponse::decode(&mut buf.freeze(), 16).unwrap();
        assert_eq!(back.node_endpoints.len(), 1);
        assert_eq!(back.node_endpoints[0].port, 9092);
        assert_eq!(
            back.responses[0].partitions[0].current_leader.leader_epoch,
            4
        );
    }

    #[test]
    fn request_keys_follow_the_version() {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
        let id = uuid::Uuid::from_u128(77);
        let req = FetchRequest::default()
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(str_bytes("n")))
                .with_topic_id(id)
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(3)
                    .with_fetch_offset(8)
                    .with_partition_max_bytes(50)])])
            .with_forgotten_topics_data(vec![ForgottenTopic::default()
                .with_topic(TopicName(str_bytes("n")))
                .with_topic_id(id)
                .with_partitions(vec![1, 2])]);
        let by_id = requested_partitions(&req, true);
        assert_eq!(by_id[0].0.topic, TopicKey::Id(77));
        assert_eq!(by_id[0].1.fetch_offset, 8);
        let by_name = requested_partitions(&req, false);
        assert_eq!(by_name[0].0.topic, TopicKey::Name("n".into()));
        let forgotten = forgotten_partitions(&req, true);
        assert_eq!(
            forgotten,
            vec![
                PartitionKey {
                    topic: TopicKey::Id(77),
                    partition: 1
                },
                PartitionKey {
                    topic: TopicKey::Id(77),
                    partition: 2
                },
            ]
        );
    }
}
