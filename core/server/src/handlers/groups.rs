//! The consumer-group APIs: FindCoordinator (10, v0–4), JoinGroup (11, v0–9), Heartbeat
//! (12, v0–4), LeaveGroup (13, v0–5), SyncGroup (14, v0–5), OffsetCommit (8, v2–9),
//! OffsetFetch (9, v1–9), DescribeGroups (15, v0–5), ListGroups (16, v0–5), DeleteGroups
//! (42, v0–2), OffsetDelete (47, v0), and the KIP-848 consumer protocol:
//! ConsumerGroupHeartbeat (68, v0–1) and ConsumerGroupDescribe (69, v0–1) (see
//! `chronik_core::group::consumer`).
//!
//! A group's coordinator is the leader of its `__consumer_offsets` partition
//! (`partition_for_group`), so every call is routed to the shard owning that partition, where a
//! `chronik_core::group::GroupCoordinator` state machine answers. Its records (offset commits,
//! group metadata) are appended to the partition through the ordinary produce path; an
//! OffsetCommit is answered only once its records are committed, and the coordinator learns
//! committed records through `apply`, which is also how it rebuilds its state after a restart.
//!
//! TxnOffsetCommit (28, v0–3) goes the same way, except that its records are written in a
//! transactional batch of the producer: `apply` hands such records to the coordinator as pending
//! and materializes (or drops) them when the producer's commit (abort) marker is applied.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

use chronik_core::acl;

use bytes::Bytes;
use chronik_core::group::{Completion, GroupConfig, GroupCoordinator, LogRecord, Reply as GReply};
use chronik_raft::raft::eraftpb::Entry;
use futures::channel::oneshot;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::calls::{Call, Reply};
use crate::partition::now_ms;

use super::{str_bytes, Ctx};

/// How often coordinators run their timers (session expiry, rebalance deadlines).
pub const TICK_INTERVAL: Duration = Duration::from_millis(50);
/// How long an OffsetCommit waits for its records to commit.
const COMMIT_TIMEOUT_MS: i32 = 30_000;

/// A group call routed to the coordinator's shard. `group` is the raft group of the
/// `__consumer_offsets` partition.
pub enum GroupCall {
    Join {
        group: u64,
        req: JoinGroupRequest,
        version: i16,
        client_id: String,
        client_host: String,
    },
    Sync {
        group: u64,
        req: SyncGroupRequest,
        version: i16,
    },
    Heartbeat {
        group: u64,
        req: HeartbeatRequest,
        version: i16,
    },
    Leave {
        group: u64,
        req: LeaveGroupRequest,
        version: i16,
    },
    Commit {
        group: u64,
        req: OffsetCommitRequest,
        version: i16,
    },
    Fetch {
        group: u64,
        req: OffsetFetchRequest,
        version: i16,
    },
    FetchGroup {
        group: u64,
        req: OffsetFetchRequestGroup,
        version: i16,
        require_stable: bool,
    },
    TxnCommit {
        group: u64,
        req: TxnOffsetCommitRequest,
        version: i16,
    },
    Describe {
        group: u64,
        group_id: String,
        version: i16,
    },
    /// Every coordinator on the shard.
    List {
        req: ListGroupsRequest,
        version: i16,
    },
    Delete {
        group: u64,
        group_id: String,
    },
    OffsetDelete {
        group: u64,
        req: OffsetDeleteRequest,
    },
    ConsumerHeartbeat {
        group: u64,
        req: Box<ConsumerGroupHeartbeatRequest>,
        version: i16,
        client_id: String,
        client_host: String,
        /// (principal, host) whose DESCRIBE rights filter the member's regex matches, while an
        /// authorizer is on.
        owner: Option<(String, String)>,
    },
    ConsumerDescribe {
        group: u64,
        group_id: String,
    },
}

pub enum GroupReply {
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    Leave(LeaveGroupResponse),
    Commit(OffsetCommitResponse),
    Fetch(OffsetFetchResponse),
    FetchGroup(OffsetFetchResponseGroup),
    TxnCommit(TxnOffsetCommitResponse),
    Describe(DescribedGroup),
    List(Vec<ListedGroup>),
    Delete(DeletableGroupResult),
    OffsetDelete(OffsetDeleteResponse),
    ConsumerHeartbeat(ConsumerGroupHeartbeatResponse),
    ConsumerDescribe(consumer_group_describe_response::DescribedGroup),
    /// The partition is not here, or its state is still being replayed.
    Error(i16),
}

struct Coord {
    partition: i32,
    gc: RefCell<GroupCoordinator>,
    waiters: RefCell<HashMap<u64, oneshot::Sender<Completion>>>,
    /// Raft index up to which the log must be applied before the coordinator answers.
    load_target: Cell<u64>,
    loaded: Cell<bool>,
    /// Deleted topics whose offsets must go once the replay is done (see
    /// [`Coordinators::topics_deleted`]).
    purge: RefCell<BTreeSet<String>>,
    /// One permit: outputs are settled (appended, then delivered) in the order they were taken.
    settling: glommio::sync::Semaphore,
}

/// The coordinators of the `__consumer_offsets` partitions this shard owns.
#[derive(Default)]
pub struct Coordinators {
    by_group: RefCell<HashMap<u64, Rc<Coord>>>,
    next_token: Cell<u64>,
}

impl Coordinators {
    pub fn open(&self, group: u64, partition: i32, shared: &crate::shared::Shared) {
        let b = &shared.config.broker;
        let cfg = GroupConfig {
            min_session_timeout_ms: b.group_min_session_timeout_ms.min(i32::MAX as u64) as i32,
            max_session_timeout_ms: b.group_max_session_timeout_ms.min(i32::MAX as u64) as i32,
            initial_rebalance_delay_ms: b.group_initial_rebalance_delay_ms.min(i32::MAX as u64)
                as i32,
            offsets_retention_ms: (b.offsets_retention_minutes as i64).saturating_mul(60_000),
            group_max_size: (b.group_max_size as usize)
                .min(chronik_core::group::MAX_MEMBERS_PER_GROUP),
            consumer_session_timeout_ms: b.group_consumer_session_timeout_ms.min(i32::MAX as u64)
                as i32,
            consumer_heartbeat_interval_ms: b
                .group_consumer_heartbeat_interval_ms
                .min(i32::MAX as u64) as i32,
            ..GroupConfig::default()
        };
        let target = 0;
        self.by_group.borrow_mut().insert(
            group,
            Rc::new(Coord {
                partition,
                gc: RefCell::new(GroupCoordinator::new(partition, cfg)),
                waiters: RefCell::new(HashMap::new()),
                load_target: Cell::new(target),
                loaded: Cell::new(false),
                purge: RefCell::new(BTreeSet::new()),
                settling: glommio::sync::Semaphore::new(1),
            }),
        );
    }

    /// Sets the index the replay must reach before the coordinator serves requests.
    pub fn set_load_target(&self, group: u64, index: u64) {
        if let Some(c) = self.by_group.borrow().get(&group) {
            c.load_target.set(index);
            if index == 0 {
                c.loaded.set(true);
            }
        }
    }

    /// Topics were deleted: every coordinator drops the groups' offsets for them (and appends
    /// tombstones). A coordinator still replaying its log does so as soon as the replay ends,
    /// before it serves a request.
    pub fn topics_deleted(&self, broker: &Rc<Broker>, topics: &BTreeSet<String>) {
        for c in self.all() {
            c.purge.borrow_mut().extend(topics.iter().cloned());
            if c.loaded.get() {
                purge(broker, &c);
            }
        }
    }

    pub fn remove(&self, group: u64) {
        if let Some(c) = self.by_group.borrow_mut().remove(&group) {
            // Parked joins/syncs learn that this broker no longer coordinates their group.
            let mut gc = c.gc.borrow_mut();
            gc.fail_all_waiters(ResponseError::NotCoordinator);
            for (token, completion) in gc.take_output().completions {
                if let Some(tx) = c.waiters.borrow_mut().remove(&token) {
                    let _ = tx.send(completion);
                }
            }
        }
    }

    /// Shutdown: every parked join/sync is answered (NOT_COORDINATOR makes clients look for
    /// the coordinator again, which is what they must do when this broker goes away).
    pub fn close_all(&self) {
        let groups: Vec<u64> = self.by_group.borrow().keys().copied().collect();
        for g in groups {
            self.remove(g);
        }
    }

    fn get(&self, group: u64) -> Option<Rc<Coord>> {
        self.by_group.borrow().get(&group).cloned()
    }

    fn all(&self) -> Vec<Rc<Coord>> {
        self.by_group.borrow().values().cloned().collect()
    }

    /// Committed entries of a `__consumer_offsets` partition: feed their records to its
    /// coordinator.
    /// `meta` gives the current metadata (asked for only then): when the replay ends, offsets for topics that no longer
    /// exist (deleted while this coordinator was not running, e.g. before a crash that beat the
    /// tombstones to disk) are purged like a live deletion's.
    pub fn apply(
        &self,
        group: u64,
        entries: &[Entry],
        meta: impl FnOnce() -> std::sync::Arc<chronik_core::meta::MetaState>,
    ) {
        let Some(c) = self.get(group) else { return };
        let now = now_ms();
        {
            let mut gc = c.gc.borrow_mut();
            for e in entries {
                if e.data.is_empty() {
                    continue;
                }
                let info = match chronik_protocol::batch::header(&e.data) {
                    Ok(h) => h.info(),
                    Err(_) => continue, // not a record batch (e.g. a Raft config entry)
                };
                if info.control {
                    // A transaction marker: the producer's pending offsets commit or vanish.
                    if let Some(commit) = chronik_protocol::batch::control_marker(&e.data) {
                        gc.complete_txn(info.producer_id, commit, now);
                    }
                    continue;
                }
                let Some(records) = log_records(&e.data) else {
                    tracing::warn!(
                        group,
                        index = e.index,
                        "undecodable __consumer_offsets batch"
                    );
                    continue;
                };
                for rec in records {
                    let applied = if info.transactional {
                        gc.apply_txn_record(info.producer_id, &rec)
                    } else {
                        gc.apply(&rec, now)
                    };
                    if let Err(err) = applied {
                        tracing::debug!(group, "skipping __consumer_offsets record: {err}");
                    }
                }
            }
        }
        if let Some(last) = entries.last() {
            if last.index >= c.load_target.get() && !c.loaded.get() {
                c.loaded.set(true);
                let mut topics = std::mem::take(&mut *c.purge.borrow_mut());
                let meta = meta();
                topics.extend(
                    c.gc.borrow()
                        .offset_topics()
                        .filter(|t| !meta.topics.contains_key(*t))
                        .map(str::to_string),
                );
                // The tombstones go out with the coordinator's next drain (timer tick).
                c.gc.borrow_mut().remove_topic_offsets(&topics);
            }
        }
    }

    fn next_token(&self) -> u64 {
        let t = self.next_token.get() + 1;
        self.next_token.set(t);
        t
    }
}

/// The keyed records of a batch the broker wrote to an internal topic (`__consumer_offsets`,
/// `__transaction_state`: uncompressed, keys required), as coordinator log records; keyless
/// records are skipped. `None` if the batch does not decode.
pub(crate) fn log_records(batch: &[u8]) -> Option<Vec<LogRecord>> {
    let records = chronik_protocol::batch::decode_records(batch)?;
    Some(
        records
            .into_iter()
            .filter_map(|(k, v)| {
                Some(LogRecord {
                    key: Bytes::copy_from_slice(k?),
                    value: v.map(Bytes::copy_from_slice),
                })
            })
            .collect(),
    )
}

/// Runs coordinator timers on this shard forever (spawned per shard).
pub async fn run_timers(broker: Rc<Broker>) {
    loop {
        glommio::timer::sleep(TICK_INTERVAL).await;
        if broker.shared.is_shutting_down() {
            return;
        }
        let now = now_ms();
        for c in broker.coordinators.all() {
            if !c.loaded.get() {
                continue;
            }
            purge(&broker, &c);
            c.gc.borrow_mut().tick(now);
            settle_later(&broker, &c);
        }
    }
}

/// Applies a coordinator's pending topic purge and appends its tombstones.
fn purge(broker: &Rc<Broker>, c: &Rc<Coord>) {
    let topics = std::mem::take(&mut *c.purge.borrow_mut());
    if topics.is_empty() {
        return;
    }
    c.gc.borrow_mut().remove_topic_offsets(&topics);
    settle_later(broker, c);
}

/// Settles the coordinator's output: appends its records (group metadata, expiry tombstones),
/// waits until they are committed, then delivers the parked responses. As in Kafka, a JoinGroup
/// or SyncGroup answer goes out only once the group state it reports is in the log, so a crash
/// after the answer cannot forget the generation and assignment the members were given. Outputs
/// settle in the order they were taken (the output is taken before the first await). If the
/// append fails, the parked responses and the caller's own answer carry the returned error:
/// COORDINATOR_NOT_AVAILABLE, which makes clients find the coordinator and rejoin, and the
/// groups whose state was not written rebalance ([`GroupCoordinator::append_failed`]).
async fn settle(broker: &Rc<Broker>, c: &Rc<Coord>) -> Result<(), i16> {
    let out = c.gc.borrow_mut().take_output();
    // The semaphore is never closed; an error would only mean no ordering, not no delivery.
    let _turn = c.settling.acquire_permit(1).await.ok();
    let res = if out.records.is_empty() {
        Ok(())
    } else {
        append_records(broker, c.partition, &out.records)
            .await
            .map_err(|code| {
                tracing::warn!(
                    partition = c.partition,
                    code,
                    "appending group metadata failed"
                );
                ResponseError::CoordinatorNotAvailable.code()
            })
    };
    if res.is_err() {
        // Groups whose new generation did not reach the log rebalance (their members get the
        // error below and rejoin); that output settles in a task of its own, after this one.
        c.gc.borrow_mut().append_failed(&out.records, now_ms());
        settle_later(broker, c);
    }
    for (token, mut completion) in out.completions {
        if let Err(code) = res {
            match &mut completion {
                Completion::Join(r) => r.error_code = code,
                Completion::Sync(r) => {
                    r.error_code = code;
                    r.assignment = Bytes::new();
                }
            }
        }
        if let Some(tx) = c.waiters.borrow_mut().remove(&token) {
            let _ = tx.send(completion);
        }
    }
    res
}

/// [`settle`] in a task of its own (timer ticks), if there is anything to settle.
fn settle_later(broker: &Rc<Broker>, c: &Rc<Coord>) {
    if !c.gc.borrow().has_output() {
        return;
    }
    let (broker, c) = (broker.clone(), c.clone());
    glommio::spawn_local(async move {
        let _ = settle(&broker, &c).await;
    })
    .detach();
}

/// Appends records to a `__consumer_offsets` partition owned by this shard; waits for commit.
async fn append_records(
    broker: &Rc<Broker>,
    partition: i32,
    records: &[LogRecord],
) -> Result<(), i16> {
    let topic = broker
        .topic(chronik_core::meta::CONSUMER_OFFSETS_TOPIC)
        .ok_or(ResponseError::CoordinatorNotAvailable.code())?;
    let pm = topic
        .partitions
        .get(partition as usize)
        .ok_or(ResponseError::CoordinatorNotAvailable.code())?;
    let p = broker
        .partition(pm.group)
        .ok_or(ResponseError::NotCoordinator.code())?;
    let kvs: Vec<chronik_protocol::batch::KeyValue<'_>> = records
        .iter()
        .map(|r| (Some(&r.key[..]), r.value.as_deref()))
        .collect();
    let batch = chronik_protocol::batch::encode_batch(&kvs, now_ms());
    let outcome = p.produce(Bytes::from(batch), -1, COMMIT_TIMEOUT_MS).await;
    if outcome.error != 0 {
        return Err(outcome.error);
    }
    Ok(())
}

/// Appends transactional offset commits of a producer to a `__consumer_offsets` partition
/// owned by this shard (one transactional batch); waits for commit. Returns a Kafka error code.
async fn append_txn_records(
    broker: &Rc<Broker>,
    partition: i32,
    records: &[LogRecord],
    producer_id: i64,
    producer_epoch: i16,
) -> i16 {
    let Some(topic) = broker.topic(chronik_core::meta::CONSUMER_OFFSETS_TOPIC) else {
        return ResponseError::CoordinatorNotAvailable.code();
    };
    let Some(p) = topic
        .partitions
        .get(partition as usize)
        .and_then(|pm| broker.partition(pm.group))
    else {
        return ResponseError::NotCoordinator.code();
    };
    let kvs: Vec<chronik_protocol::batch::KeyValue<'_>> = records
        .iter()
        .map(|r| (Some(&r.key[..]), r.value.as_deref()))
        .collect();
    let mut batch = chronik_protocol::batch::encode_batch(&kvs, now_ms());
    chronik_protocol::batch::set_producer(
        &mut batch,
        producer_id,
        producer_epoch,
        -1,
        chronik_protocol::batch::TRANSACTIONAL_FLAG,
    );
    p.append_internal(batch, COMMIT_TIMEOUT_MS).await
}

/// Handles a group call on the shard that owns the coordinator.
pub async fn handle_local(broker: &Rc<Broker>, call: GroupCall) -> GroupReply {
    let group = match &call {
        GroupCall::Join { group, .. }
        | GroupCall::Sync { group, .. }
        | GroupCall::Heartbeat { group, .. }
        | GroupCall::Leave { group, .. }
        | GroupCall::Commit { group, .. }
        | GroupCall::Fetch { group, .. }
        | GroupCall::FetchGroup { group, .. }
        | GroupCall::TxnCommit { group, .. }
        | GroupCall::Describe { group, .. }
        | GroupCall::Delete { group, .. }
        | GroupCall::OffsetDelete { group, .. }
        | GroupCall::ConsumerHeartbeat { group, .. }
        | GroupCall::ConsumerDescribe { group, .. } => Some(*group),
        GroupCall::List { .. } => None,
    };
    if let GroupCall::List { req, version } = &call {
        let mut all = Vec::new();
        for c in broker.coordinators.all() {
            if c.loaded.get() {
                all.extend(c.gc.borrow().list_groups(req, *version));
            }
        }
        return GroupReply::List(all);
    }
    let group = group.expect("non-list calls name a group");
    let Some(c) = broker.coordinators.get(group) else {
        return GroupReply::Error(ResponseError::NotCoordinator.code());
    };
    if !broker.partition(group).is_some_and(|p| p.is_leader()) {
        return GroupReply::Error(ResponseError::NotCoordinator.code());
    }
    if !c.loaded.get() {
        return GroupReply::Error(ResponseError::CoordinatorLoadInProgress.code());
    }
    let now = now_ms();
    let reply = match call {
        GroupCall::Join {
            req,
            version,
            client_id,
            client_host,
            ..
        } => {
            let token = broker.coordinators.next_token();
            let r =
                c.gc.borrow_mut()
                    .join_group(token, &req, version, &client_id, &client_host, now);
            match r {
                GReply::Now(mut resp) => {
                    if let Err(code) = settle(broker, &c).await {
                        resp.error_code = code;
                    }
                    GroupReply::Join(resp)
                }
                GReply::Later => {
                    let rx = park(&c, token);
                    // Delivers this call's completion too if it is already there.
                    let _ = settle(broker, &c).await;
                    match rx.await {
                        Ok(Completion::Join(resp)) => GroupReply::Join(resp),
                        _ => GroupReply::Error(ResponseError::RebalanceInProgress.code()),
                    }
                }
            }
        }
        GroupCall::Sync { req, version, .. } => {
            let token = broker.coordinators.next_token();
            let r = c.gc.borrow_mut().sync_group(token, &req, version, now);
            match r {
                GReply::Now(mut resp) => {
                    if let Err(code) = settle(broker, &c).await {
                        resp.error_code = code;
                        resp.assignment = Bytes::new();
                    }
                    GroupReply::Sync(resp)
                }
                GReply::Later => {
                    let rx = park(&c, token);
                    // Delivers this call's completion too if it is already there.
                    let _ = settle(broker, &c).await;
                    match rx.await {
                        Ok(Completion::Sync(resp)) => GroupReply::Sync(resp),
                        _ => GroupReply::Error(ResponseError::RebalanceInProgress.code()),
                    }
                }
            }
        }
        GroupCall::Heartbeat { req, version, .. } => {
            let r = c.gc.borrow_mut().heartbeat(&req, version, now);
            let _ = settle(broker, &c).await;
            GroupReply::Heartbeat(r)
        }
        GroupCall::Leave { req, version, .. } => {
            let r = c.gc.borrow_mut().leave_group(&req, version, now);
            let _ = settle(broker, &c).await;
            GroupReply::Leave(r)
        }
        GroupCall::Commit { req, version, .. } => {
            let (records, mut resp) = c.gc.borrow_mut().offset_commit(&req, version, now);
            let _ = settle(broker, &c).await;
            if !records.is_empty() {
                if let Err(code) = append_records(broker, c.partition, &records).await {
                    for t in &mut resp.topics {
                        for p in &mut t.partitions {
                            if p.error_code == 0 {
                                p.error_code = code;
                            }
                        }
                    }
                }
            }
            GroupReply::Commit(resp)
        }
        GroupCall::Fetch { req, version, .. } => {
            let gc = c.gc.borrow();
            let mut r = gc.offset_fetch(&req, version);
            if version >= 7 && req.require_stable {
                gc.mark_unstable(req.group_id.0.as_str(), &mut r);
            }
            GroupReply::Fetch(r)
        }
        GroupCall::FetchGroup {
            req,
            version,
            require_stable,
            ..
        } => {
            let gc = c.gc.borrow();
            if version >= 9 {
                let member = req.member_id.as_ref().map(|m| m.as_str());
                if let Some(e) =
                    gc.validate_offset_fetch(req.group_id.0.as_str(), member, req.member_epoch)
                {
                    return GroupReply::FetchGroup(
                        OffsetFetchResponseGroup::default()
                            .with_group_id(req.group_id)
                            .with_error_code(e.code()),
                    );
                }
            }
            let mut r = gc.offset_fetch_group(&req, version);
            if require_stable {
                gc.mark_unstable_group(&mut r);
            }
            GroupReply::FetchGroup(r)
        }
        GroupCall::TxnCommit { req, version, .. } => {
            let (records, mut resp) = c.gc.borrow_mut().txn_offset_commit(&req, version, now);
            let _ = settle(broker, &c).await;
            if !records.is_empty() {
                let code = append_txn_records(
                    broker,
                    c.partition,
                    &records,
                    req.producer_id.0,
                    req.producer_epoch,
                )
                .await;
                if code != 0 {
                    for t in &mut resp.topics {
                        for p in &mut t.partitions {
                            if p.error_code == 0 {
                                p.error_code = code;
                            }
                        }
                    }
                }
            }
            GroupReply::TxnCommit(resp)
        }
        GroupCall::Describe {
            group_id, version, ..
        } => GroupReply::Describe(c.gc.borrow().describe_group(&group_id, version)),
        GroupCall::Delete { group_id, .. } => {
            let (records, result) = c.gc.borrow_mut().delete_group(&group_id, now);
            let _ = settle(broker, &c).await;
            let mut result = result;
            if result.error_code == 0 && !records.is_empty() {
                if let Err(code) = append_records(broker, c.partition, &records).await {
                    result.error_code = code;
                }
            }
            GroupReply::Delete(result)
        }
        GroupCall::OffsetDelete { req, .. } => {
            let (records, mut resp) = c.gc.borrow_mut().offset_delete(&req, now);
            let _ = settle(broker, &c).await;
            if resp.error_code == 0 && !records.is_empty() {
                if let Err(code) = append_records(broker, c.partition, &records).await {
                    resp.error_code = code;
                }
            }
            GroupReply::OffsetDelete(resp)
        }
        GroupCall::ConsumerHeartbeat {
            req,
            version,
            client_id,
            client_host,
            owner,
            ..
        } => {
            let meta = broker.meta();
            let caller = chronik_core::group::consumer::Caller {
                client_id: &client_id,
                client_host: &client_host,
                owner: owner.as_ref().map(|(p, h)| (p.as_str(), h.as_str())),
            };
            let topics = AuthorizedTopics {
                meta: meta.as_ref(),
                policy: broker.authz.as_ref(),
            };
            let mut r =
                c.gc.borrow_mut()
                    .consumer_group_heartbeat(&req, version, &topics, caller, now);
            if let Err(code) = settle(broker, &c).await {
                if r.error_code == 0 {
                    r.error_code = code;
                    r.assignment = None;
                }
            }
            GroupReply::ConsumerHeartbeat(r)
        }
        GroupCall::ConsumerDescribe { group_id, .. } => {
            GroupReply::ConsumerDescribe(c.gc.borrow().consumer_group_describe(&group_id))
        }
        GroupCall::List { .. } => unreachable!("handled above"),
    };
    reply
}

fn park(c: &Rc<Coord>, token: u64) -> oneshot::Receiver<Completion> {
    let (tx, rx) = oneshot::channel();
    c.waiters.borrow_mut().insert(token, tx);
    rx
}

/// Where a group's coordinator lives: (offsets partition's raft group, owning shard).
fn route(broker: &Rc<Broker>, group_id: &str) -> Option<(u64, usize)> {
    let topic = broker.topic(chronik_core::meta::CONSUMER_OFFSETS_TOPIC)?;
    let p = broker.shared.offsets_partition_for(group_id);
    let pm = topic.partitions.get(p as usize)?;
    Some((pm.group, pm.shard as usize))
}

/// Sends a call to the group's coordinator, if the client may do `operation` on the group
/// (GROUP_AUTHORIZATION_FAILED otherwise).
async fn call(
    ctx: &Ctx<'_>,
    group_id: &str,
    operation: i8,
    make: impl FnOnce(u64) -> GroupCall,
) -> GroupReply {
    if !ctx.allowed(operation, acl::resource::GROUP, group_id) {
        return GroupReply::Error(ResponseError::GroupAuthorizationFailed.code());
    }
    let Some((group, shard)) = route(ctx.broker, group_id) else {
        return GroupReply::Error(ResponseError::CoordinatorNotAvailable.code());
    };
    match ctx.broker.call(shard, Call::Group(make(group))).await {
        Some(Reply::Group(r)) => r,
        _ => GroupReply::Error(ResponseError::CoordinatorNotAvailable.code()),
    }
}

/// Dispatches the group-family requests; `None` for request kinds that are not group APIs.
pub async fn dispatch(ctx: &Ctx<'_>, body: RequestKind) -> Option<ResponseKind> {
    let v = ctx.version;
    Some(match body {
        RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(find_coordinator(ctx, r)),
        RequestKind::JoinGroup(req) => {
            let gid = req.group_id.0.as_str().to_string();
            let client_host = client_host(ctx);
            let client_id = ctx.client_id.to_string();
            ResponseKind::JoinGroup(
                match call(ctx, &gid, acl::op::READ, |group| GroupCall::Join {
                    group,
                    req,
                    version: v,
                    client_id,
                    client_host,
                })
                .await
                {
                    GroupReply::Join(r) => r,
                    other => JoinGroupResponse::default()
                        .with_error_code(error_of(other))
                        .with_generation_id(-1),
                },
            )
        }
        RequestKind::SyncGroup(req) => {
            let gid = req.group_id.0.as_str().to_string();
            ResponseKind::SyncGroup(
                match call(ctx, &gid, acl::op::READ, |group| GroupCall::Sync {
                    group,
                    req,
                    version: v,
                })
                .await
                {
                    GroupReply::Sync(r) => r,
                    other => SyncGroupResponse::default().with_error_code(error_of(other)),
                },
            )
        }
        RequestKind::Heartbeat(req) => {
            let gid = req.group_id.0.as_str().to_string();
            ResponseKind::Heartbeat(
                match call(ctx, &gid, acl::op::READ, |group| GroupCall::Heartbeat {
                    group,
                    req,
                    version: v,
                })
                .await
                {
                    GroupReply::Heartbeat(r) => r,
                    other => HeartbeatResponse::default().with_error_code(error_of(other)),
                },
            )
        }
        RequestKind::LeaveGroup(req) => {
            let gid = req.group_id.0.as_str().to_string();
            ResponseKind::LeaveGroup(
                match call(ctx, &gid, acl::op::READ, |group| GroupCall::Leave {
                    group,
                    req,
                    version: v,
                })
                .await
                {
                    GroupReply::Leave(r) => r,
                    other => LeaveGroupResponse::default().with_error_code(error_of(other)),
                },
            )
        }
        RequestKind::OffsetCommit(mut req) => {
            let gid = req.group_id.0.as_str().to_string();
            let unknown = take_unknown(
                ctx,
                &mut req.topics,
                |t| &mut t.partitions,
                |t| &t.name,
                |p| p.partition_index,
            );
            let fallback = req.clone();
            let mut resp = if req.topics.is_empty() && !unknown.is_empty() {
                OffsetCommitResponse::default()
            } else {
                match call(ctx, &gid, acl::op::READ, |group| GroupCall::Commit {
                    group,
                    req,
                    version: v,
                })
                .await
                {
                    GroupReply::Commit(r) => r,
                    other => commit_error(&fallback, error_of(other)),
                }
            };
            {
                use kafka_protocol::messages::offset_commit_response::{
                    OffsetCommitResponsePartition as P, OffsetCommitResponseTopic as T,
                };
                answer_unknown!(resp, unknown, T, P);
            }
            ResponseKind::OffsetCommit(resp)
        }
        RequestKind::OffsetFetch(req) => ResponseKind::OffsetFetch(offset_fetch(ctx, req).await),
        RequestKind::TxnOffsetCommit(mut req) => {
            let gid = req.group_id.0.as_str().to_string();
            let unknown = take_unknown(
                ctx,
                &mut req.topics,
                |t| &mut t.partitions,
                |t| &t.name,
                |p| p.partition_index,
            );
            let fallback = req.clone();
            let mut resp = if req.topics.is_empty() && !unknown.is_empty() {
                TxnOffsetCommitResponse::default()
            } else {
                match call(ctx, &gid, acl::op::READ, |group| GroupCall::TxnCommit {
                    group,
                    req,
                    version: v,
                })
                .await
                {
                    GroupReply::TxnCommit(r) => r,
                    other => txn_commit_error(&fallback, error_of(other)),
                }
            };
            {
                use kafka_protocol::messages::txn_offset_commit_response::{
                    TxnOffsetCommitResponsePartition as P, TxnOffsetCommitResponseTopic as T,
                };
                answer_unknown!(resp, unknown, T, P);
            }
            ResponseKind::TxnOffsetCommit(resp)
        }
        RequestKind::ConsumerGroupHeartbeat(req) => {
            ResponseKind::ConsumerGroupHeartbeat(consumer_heartbeat(ctx, req).await)
        }
        RequestKind::ConsumerGroupDescribe(req) => {
            let mut groups = Vec::with_capacity(req.group_ids.len());
            for g in req.group_ids {
                let gid = g.0.as_str().to_string();
                let operations = group_operations(ctx, &gid, req.include_authorized_operations);
                let id2 = gid.clone();
                groups.push(
                    match call(ctx, &gid, acl::op::DESCRIBE, |group| {
                        GroupCall::ConsumerDescribe {
                            group,
                            group_id: id2,
                        }
                    })
                    .await
                    {
                        GroupReply::ConsumerDescribe(d) => d.with_authorized_operations(operations),
                        other => consumer_group_describe_response::DescribedGroup::default()
                            .with_group_id(g)
                            .with_error_code(error_of(other)),
                    },
                );
            }
            ResponseKind::ConsumerGroupDescribe(
                ConsumerGroupDescribeResponse::default().with_groups(groups),
            )
        }
        RequestKind::DescribeGroups(req) => {
            let mut groups = Vec::with_capacity(req.groups.len());
            let with_operations = req.include_authorized_operations;
            for g in req.groups {
                let gid = g.0.as_str().to_string();
                let operations = group_operations(ctx, &gid, with_operations);
                let id2 = gid.clone();
                groups.push(
                    match call(ctx, &gid, acl::op::DESCRIBE, |group| GroupCall::Describe {
                        group,
                        group_id: id2,
                        version: v,
                    })
                    .await
                    {
                        GroupReply::Describe(d) => d.with_authorized_operations(operations),
                        other => DescribedGroup::default()
                            .with_group_id(g)
                            .with_error_code(error_of(other)),
                    },
                );
            }
            ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(groups))
        }
        RequestKind::ListGroups(req) => {
            let shards = ctx.broker.shared.shards;
            let calls = (0..shards).map(|s| {
                let req = req.clone();
                async move {
                    ctx.broker
                        .call(s, Call::Group(GroupCall::List { req, version: v }))
                        .await
                }
            });
            let mut groups = Vec::new();
            let mut error = 0;
            for r in futures::future::join_all(calls).await {
                match r {
                    Some(Reply::Group(GroupReply::List(l))) => groups.extend(l),
                    _ => error = ResponseError::CoordinatorNotAvailable.code(),
                }
            }
            groups.sort_by(|a, b| a.group_id.0.as_str().cmp(b.group_id.0.as_str()));
            // Without DESCRIBE on the cluster, only the groups the client may DESCRIBE.
            if ctx.authorizing() && !ctx.cluster_allowed(acl::op::DESCRIBE) {
                groups.retain(|g| {
                    ctx.allowed(
                        acl::op::DESCRIBE,
                        acl::resource::GROUP,
                        g.group_id.0.as_str(),
                    )
                });
            }
            // The coordinators apply the state (v4+) and type (v5+) filters.
            ResponseKind::ListGroups(
                ListGroupsResponse::default()
                    .with_error_code(error)
                    .with_groups(groups),
            )
        }
        RequestKind::DeleteGroups(req) => {
            let mut results = Vec::with_capacity(req.groups_names.len());
            for g in req.groups_names {
                let gid = g.0.as_str().to_string();
                let id2 = gid.clone();
                results.push(
                    match call(ctx, &gid, acl::op::DELETE, |group| GroupCall::Delete {
                        group,
                        group_id: id2,
                    })
                    .await
                    {
                        GroupReply::Delete(d) => d,
                        other => DeletableGroupResult::default()
                            .with_group_id(g)
                            .with_error_code(error_of(other)),
                    },
                );
            }
            ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results))
        }
        RequestKind::OffsetDelete(req) => {
            let gid = req.group_id.0.as_str().to_string();
            ResponseKind::OffsetDelete(
                match call(ctx, &gid, acl::op::DELETE, |group| {
                    GroupCall::OffsetDelete { group, req }
                })
                .await
                {
                    GroupReply::OffsetDelete(r) => r,
                    other => OffsetDeleteResponse::default().with_error_code(error_of(other)),
                },
            )
        }
        _ => return None,
    })
}

/// The client's host as Kafka shows it in group descriptions (`/127.0.0.1`).
fn client_host(ctx: &Ctx<'_>) -> String {
    let host = ctx.peer.rsplit_once(':').map_or(ctx.peer, |(h, _)| h);
    format!("/{host}")
}

/// The `authorized_operations` of a described group, if the client asked for them.
fn group_operations(ctx: &Ctx<'_>, group_id: &str, requested: bool) -> i32 {
    if !requested {
        return super::acls::NOT_REQUESTED;
    }
    super::acls::authorized_operations(
        ctx,
        acl::resource::GROUP,
        group_id,
        super::acls::GROUP_OPERATIONS,
    )
}

/// ConsumerGroupHeartbeat: READ on the group, and DESCRIBE on every topic named in the
/// subscription (TOPIC_AUTHORIZATION_FAILED otherwise, as Kafka 4 answers).
async fn consumer_heartbeat(
    ctx: &Ctx<'_>,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let failed = |code: i16| {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(code)
            .with_member_id(None)
    };
    if ctx.authorizing() {
        let denied: Vec<&str> = req
            .subscribed_topic_names
            .iter()
            .flatten()
            .map(|t| t.0.as_str())
            .filter(|t| !ctx.allowed(acl::op::DESCRIBE, acl::resource::TOPIC, t))
            .collect();
        if !denied.is_empty() {
            return failed(ResponseError::TopicAuthorizationFailed.code()).with_error_message(
                Some(str_bytes(format!(
                    "Not authorized to describe topics: {}",
                    denied.join(", ")
                ))),
            );
        }
    }
    let gid = req.group_id.0.as_str().to_string();
    let client_host = client_host(ctx);
    let client_id = ctx.client_id.to_string();
    let version = ctx.version;
    let owner = ctx
        .authorizing()
        .then(|| (ctx.conn.principal().to_string(), ctx.conn.host.clone()));
    match call(ctx, &gid, acl::op::READ, |group| {
        GroupCall::ConsumerHeartbeat {
            group,
            req: Box::new(req),
            version,
            client_id,
            client_host,
            owner,
        }
    })
    .await
    {
        GroupReply::ConsumerHeartbeat(r) => r,
        other => failed(error_of(other)),
    }
}

/// The broker's topics as a consumer group sees them: regex matches are checked against the
/// member's DESCRIBE rights when an authorizer is on.
struct AuthorizedTopics<'a> {
    meta: &'a chronik_core::meta::MetaState,
    policy: Option<&'a acl::Policy>,
}

impl chronik_core::group::consumer::TopicLookup for AuthorizedTopics<'_> {
    fn topic(&self, name: &str) -> Option<(uuid::Uuid, i32)> {
        self.meta.topic(name)
    }

    fn for_each_topic(&self, f: &mut dyn FnMut(&str)) {
        self.meta.for_each_topic(f)
    }

    fn may_describe(&self, principal: &str, host: &str, topic: &str) -> bool {
        self.policy.is_none_or(|policy| {
            let who = acl::Requester { principal, host };
            acl::authorize(
                &self.meta.acls,
                policy,
                who,
                acl::op::DESCRIBE,
                acl::resource::TOPIC,
                topic,
            )
        })
    }
}

fn error_of(r: GroupReply) -> i16 {
    match r {
        GroupReply::Error(c) => c,
        _ => ResponseError::UnknownServerError.code(),
    }
}

/// Adds the partitions [`take_unknown`] removed to an offset-commit response (topic type `$topic`,
/// partition type `$part`, the same shape in OffsetCommit and TxnOffsetCommit) as
/// UNKNOWN_TOPIC_OR_PARTITION (or TOPIC_AUTHORIZATION_FAILED), under their topic's entry if the response has one.
macro_rules! answer_unknown {
    ($resp:expr, $unknown:expr, $topic:ty, $part:ty) => {
        for (name, parts, code) in $unknown {
            let parts = parts.into_iter().map(|i| {
                <$part>::default()
                    .with_partition_index(i)
                    .with_error_code(code)
            });
            match $resp.topics.iter_mut().find(|t| t.name == name) {
                Some(t) => t.partitions.extend(parts),
                None => $resp.topics.push(
                    <$topic>::default()
                        .with_name(name)
                        .with_partitions(parts.collect()),
                ),
            }
        }
    };
}
use answer_unknown;

/// Takes the partitions of topics or partition indexes that do not exist out of an offset commit
/// (Kafka answers them UNKNOWN_TOPIC_OR_PARTITION before the coordinator sees the request, so no
/// group holds offsets for partitions that are not there); topics left empty are dropped.
/// Topics the client may not READ are taken out the same way, answered
/// TOPIC_AUTHORIZATION_FAILED. Returns the removed `(topic, [partition], error code)`.
fn take_unknown<T, P>(
    ctx: &Ctx<'_>,
    topics: &mut Vec<T>,
    partitions: impl Fn(&mut T) -> &mut Vec<P>,
    name: impl Fn(&T) -> &TopicName,
    index: impl Fn(&P) -> i32,
) -> Vec<(TopicName, Vec<i32>, i16)> {
    let meta = ctx.broker.meta();
    let mut unknown = Vec::new();
    for t in topics.iter_mut() {
        let readable = ctx.allowed(acl::op::READ, acl::resource::TOPIC, name(t).0.as_str());
        let count = meta
            .topics
            .get(name(t).0.as_str())
            .map(|m| m.partitions.len())
            .filter(|_| readable);
        let topic = name(t).clone();
        let mut bad = Vec::new();
        partitions(t).retain(|p| {
            let i = index(p);
            let ok = count.is_some_and(|n| usize::try_from(i).is_ok_and(|i| i < n));
            if !ok {
                bad.push(i);
            }
            ok
        });
        if !bad.is_empty() {
            let code = if readable {
                ResponseError::UnknownTopicOrPartition
            } else {
                ResponseError::TopicAuthorizationFailed
            };
            unknown.push((topic, bad, code.code()));
        }
    }
    if !unknown.is_empty() {
        topics.retain_mut(|t| !partitions(t).is_empty());
    }
    unknown
}

fn commit_error(req: &OffsetCommitRequest, code: i16) -> OffsetCommitResponse {
    use kafka_protocol::messages::offset_commit_response::{
        OffsetCommitResponsePartition, OffsetCommitResponseTopic,
    };
    OffsetCommitResponse::default().with_topics(
        req.topics
            .iter()
            .map(|t| {
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

fn txn_commit_error(req: &TxnOffsetCommitRequest, code: i16) -> TxnOffsetCommitResponse {
    use kafka_protocol::messages::txn_offset_commit_response::{
        TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
    };
    TxnOffsetCommitResponse::default().with_topics(
        req.topics
            .iter()
            .map(|t| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// Hides committed offsets of topics the client may not DESCRIBE, as Kafka does: dropped from
/// an all-topics answer, TOPIC_AUTHORIZATION_FAILED (offset -1) where the request named them.
/// `$topics` is the response's topic list, `$named` whether the request listed topics.
macro_rules! hide_undescribable {
    ($ctx:expr, $topics:expr, $named:expr) => {{
        let code = ResponseError::TopicAuthorizationFailed.code();
        $topics.retain_mut(|t| {
            if $ctx.allowed(acl::op::DESCRIBE, acl::resource::TOPIC, t.name.0.as_str()) {
                return true;
            }
            for p in &mut t.partitions {
                p.committed_offset = -1;
                p.metadata = None;
                p.error_code = code;
            }
            $named
        });
    }};
}

async fn offset_fetch(ctx: &Ctx<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    if !ctx.authorizing() {
        return offset_fetch_unfiltered(ctx, req).await;
    }
    let named = req.topics.is_some();
    let groups_named: Vec<bool> = req.groups.iter().map(|g| g.topics.is_some()).collect();
    let mut resp = offset_fetch_unfiltered(ctx, req).await;
    hide_undescribable!(ctx, resp.topics, named);
    for (g, named) in resp.groups.iter_mut().zip(groups_named) {
        hide_undescribable!(ctx, g.topics, named);
    }
    resp
}

async fn offset_fetch_unfiltered(ctx: &Ctx<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let v = ctx.version;
    if v >= 8 {
        let require_stable = req.require_stable;
        let mut groups = Vec::with_capacity(req.groups.len());
        for g in req.groups {
            let gid = g.group_id.0.as_str().to_string();
            let group_id = g.group_id.clone();
            groups.push(
                match call(ctx, &gid, acl::op::DESCRIBE, |group| {
                    GroupCall::FetchGroup {
                        group,
                        req: g,
                        version: v,
                        require_stable,
                    }
                })
                .await
                {
                    GroupReply::FetchGroup(r) => r,
                    other => OffsetFetchResponseGroup::default()
                        .with_group_id(group_id)
                        .with_error_code(error_of(other)),
                },
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let gid = req.group_id.0.as_str().to_string();
    match call(ctx, &gid, acl::op::DESCRIBE, |group| GroupCall::Fetch {
        group,
        req,
        version: v,
    })
    .await
    {
        GroupReply::Fetch(r) => r,
        other => OffsetFetchResponse::default().with_error_code(error_of(other)),
    }
}

fn find_coordinator(ctx: &Ctx<'_>, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let s = &ctx.broker.shared;
    let keys: Vec<String> = if ctx.version >= 4 {
        req.coordinator_keys
            .iter()
            .map(|k| k.as_str().to_string())
            .collect()
    } else {
        vec![req.key.as_str().to_string()]
    };
    let answer = |key: &str| -> (i16, Option<String>) {
        let refused = match req.key_type {
            0 => (!ctx.allowed(acl::op::DESCRIBE, acl::resource::GROUP, key))
                .then_some(ResponseError::GroupAuthorizationFailed),
            1 => (!ctx.allowed(acl::op::DESCRIBE, acl::resource::TRANSACTIONAL_ID, key))
                .then_some(ResponseError::TransactionalIdAuthorizationFailed),
            _ => None,
        };
        if let Some(e) = refused {
            return (e.code(), None);
        }
        let routed = match req.key_type {
            0 if key.is_empty() => return (ResponseError::InvalidGroupId.code(), None),
            0 => route(ctx.broker, key),
            1 if key.is_empty() => return (ResponseError::InvalidRequest.code(), None),
            1 => super::txn::route(ctx.broker, key),
            _ => return (ResponseError::InvalidRequest.code(), None),
        };
        match routed {
            Some(_) => (0, None),
            None => (ResponseError::CoordinatorNotAvailable.code(), None),
        }
    };
    let host = str_bytes(s.advertised_host.clone());
    let port = s.advertised_port as i32;
    if ctx.version >= 4 {
        let coordinators = keys
            .iter()
            .map(|k| {
                let (err, msg) = answer(k);
                let ok = err == 0;
                Coordinator::default()
                    .with_key(str_bytes(k.clone()))
                    .with_node_id(BrokerId(if ok { s.node_id } else { -1 }))
                    .with_host(if ok { host.clone() } else { str_bytes("") })
                    .with_port(if ok { port } else { -1 })
                    .with_error_code(err)
                    .with_error_message(msg.map(str_bytes))
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (err, msg) = answer(&keys[0]);
    let ok = err == 0;
    FindCoordinatorResponse::default()
        .with_error_code(err)
        .with_error_message(msg.map(str_bytes))
        .with_node_id(BrokerId(if ok { s.node_id } else { -1 }))
        .with_host(if ok { host } else { str_bytes("") })
        .with_port(if ok { port } else { -1 })
}
