//! The transaction APIs (KIP-98): InitProducerId with a transactional id (22, v0–4; the
//! idempotent case stays in [`super::init_producer_id`]), AddPartitionsToTxn (24, v0–3),
//! AddOffsetsToTxn (25, v0–3), EndTxn (26, v0–3) and WriteTxnMarkers (27, v1: what
//! `kafka-transactions.sh abort` sends to end a hanging transaction; the coordinator itself
//! writes markers through `Call::WriteMarkers`). TxnOffsetCommit (28) belongs to the group
//! coordinator ([`super::groups`]); FindCoordinator with key type 1 is answered there too.
//! DescribeTransactions (65, v0) and ListTransactions (66, v0–1; v2's id regex is not served)
//! read the coordinators' state for `kafka-transactions.sh describe / list`.
//!
//! A transactional id's coordinator is the leader of its `__transaction_state` partition
//! (Kafka's `abs(hashCode) % partitions`), so each call is routed to the shard owning that
//! partition, where a `chronik_core::txn::TxnCoordinator` decides. Its records are appended to
//! the partition through the ordinary produce path and take effect when they come back through
//! `apply` (also how a restart rebuilds the state). Markers: once a PrepareCommit/PrepareAbort
//! record is committed, a control batch is appended to every partition of the transaction (a
//! `WriteMarkers` call to each owning shard, the way produce is routed), then the Complete
//! record. EndTxn answers after the markers are written, so a consumer that starts after
//! `commit_transaction` returns sees the records. A timer aborts timed-out transactions and
//! finishes any transaction left in a Prepare state (after a restart, or a failed marker).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use chronik_core::acl;
use std::time::Duration;

use bytes::Bytes;
use chronik_core::group::LogRecord;
use chronik_core::txn::{
    fenced_error, Api, InitOutcome, TxnConfig, TxnCoordinator, TxnState, TRANSACTION_STATE_TOPIC,
};
use chronik_raft::raft::eraftpb::Entry;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::str_bytes;

use crate::broker::Broker;
use crate::calls::{Call, Reply};
use crate::partition::now_ms;

use super::Ctx;

/// How long one marker append may take.
pub const MARKER_TIMEOUT_MS: i32 = 30_000;
/// How long a `__transaction_state` append may take.
const APPEND_TIMEOUT_MS: i32 = 30_000;
/// How often coordinators look for timed-out transactions and unfinished markers.
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);
/// Attempts to write one transaction's markers before leaving it to the next tick.
const MARKER_ATTEMPTS_MAX: usize = 20;
const MARKER_RETRY_BACKOFF: Duration = Duration::from_millis(50);
/// Bound on marker jobs one tick starts per coordinator.
const MARKER_JOBS_PER_TICK_MAX: usize = 1_000;
/// InitProducerId decides in at most two rounds: the second has the fresh producer id the
/// first asked for.
const INIT_ROUNDS_MAX: usize = 2;

/// A transaction call routed to the coordinator's shard. `group` is the raft group of the
/// `__transaction_state` partition.
pub enum TxnCall {
    Init {
        group: u64,
        transactional_id: String,
        timeout_ms: i32,
        expected: (i64, i16),
        version: i16,
    },
    Add {
        group: u64,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
        api: Api,
        version: i16,
    },
    End {
        group: u64,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        version: i16,
    },
    Describe {
        group: u64,
        transactional_id: String,
    },
    /// Produce of transactional batches: are these partitions in the producer's transaction?
    Verify {
        group: u64,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
    },
    /// Every coordinator on the shard.
    List {
        states: Vec<TxnState>,
        producer_ids: Vec<i64>,
        min_duration_ms: i64,
    },
}

pub enum TxnReply {
    Init {
        error: i16,
        producer_id: i64,
        producer_epoch: i16,
    },
    Done(i16),
    Describe(describe_transactions_response::TransactionState),
    List(Vec<list_transactions_response::TransactionState>),
}

struct Coord {
    partition: i32,
    tc: RefCell<TxnCoordinator>,
    load_target: Cell<u64>,
    loaded: Cell<bool>,
    /// Transactional ids whose markers a task is writing right now.
    driving: RefCell<HashSet<String>>,
}

/// The transaction coordinators of the `__transaction_state` partitions this shard owns.
#[derive(Default)]
pub struct TxnCoordinators {
    by_group: RefCell<HashMap<u64, Rc<Coord>>>,
}

impl TxnCoordinators {
    pub fn open(&self, group: u64, partition: i32, shared: &crate::shared::Shared) {
        let b = &shared.config.broker;
        let cfg = TxnConfig {
            max_timeout_ms: b.transaction_max_timeout_ms.min(i32::MAX as u64) as i32,
            id_expiration_ms: b.transactional_id_expiration_ms.min(i64::MAX as u64) as i64,
        };
        self.by_group.borrow_mut().insert(
            group,
            Rc::new(Coord {
                partition,
                tc: RefCell::new(TxnCoordinator::new(partition, cfg)),
                load_target: Cell::new(0),
                loaded: Cell::new(false),
                driving: RefCell::new(HashSet::new()),
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

    pub fn remove(&self, group: u64) {
        self.by_group.borrow_mut().remove(&group);
    }

    /// The partition lost (or gained) leadership: appends in flight are moot.
    pub fn role_changed(&self, group: u64) {
        if let Some(c) = self.get(group) {
            c.tc.borrow_mut().clear_pending();
        }
    }

    fn get(&self, group: u64) -> Option<Rc<Coord>> {
        self.by_group.borrow().get(&group).cloned()
    }

    /// Every coordinator with its state partition's raft group.
    fn all(&self) -> Vec<(u64, Rc<Coord>)> {
        self.by_group
            .borrow()
            .iter()
            .map(|(g, c)| (*g, c.clone()))
            .collect()
    }

    /// Committed entries of a `__transaction_state` partition: feed their records to its
    /// coordinator.
    pub fn apply(&self, group: u64, entries: &[Entry]) {
        let Some(c) = self.get(group) else { return };
        {
            let mut tc = c.tc.borrow_mut();
            for e in entries {
                if e.data.is_empty() {
                    continue;
                }
                let Some(records) = super::groups::log_records(&e.data) else {
                    tracing::warn!(
                        group,
                        index = e.index,
                        "undecodable __transaction_state batch"
                    );
                    continue;
                };
                for rec in records {
                    if let Err(err) = tc.apply(&rec) {
                        tracing::warn!(group, "skipping __transaction_state record: {err}");
                    }
                }
            }
        }
        if let Some(last) = entries.last() {
            if last.index >= c.load_target.get() {
                c.loaded.set(true);
            }
        }
    }
}

/// Where a transactional id's coordinator lives: (state partition's raft group, owning shard).
pub fn route(broker: &Rc<Broker>, transactional_id: &str) -> Option<(u64, usize)> {
    let topic = broker.topic(TRANSACTION_STATE_TOPIC)?;
    let n = topic.partitions.len() as i32;
    if n == 0 {
        return None;
    }
    let p = chronik_core::group::partition_for_group(transactional_id, n);
    let pm = topic.partitions.get(p as usize)?;
    Some((pm.group, pm.shard as usize))
}

/// Appends one record to the coordinator's `__transaction_state` partition (owned by this
/// shard) and waits until it is committed, which is when the coordinator applies it.
async fn append(broker: &Rc<Broker>, c: &Coord, rec: &LogRecord) -> Result<(), i16> {
    let topic = broker
        .topic(TRANSACTION_STATE_TOPIC)
        .ok_or(ResponseError::CoordinatorNotAvailable.code())?;
    let p = topic
        .partitions
        .get(c.partition as usize)
        .and_then(|pm| broker.partition(pm.group))
        .ok_or(ResponseError::NotCoordinator.code())?;
    let batch = chronik_protocol::batch::encode_batch(
        &[(Some(&rec.key[..]), rec.value.as_deref())],
        now_ms(),
    );
    let outcome = p.produce(Bytes::from(batch), -1, APPEND_TIMEOUT_MS).await;
    if outcome.error != 0 {
        return Err(outcome.error);
    }
    Ok(())
}

/// `append`, undoing the pending mark of `id` if it fails.
async fn persist(broker: &Rc<Broker>, c: &Coord, id: &str, rec: &LogRecord) -> Result<(), i16> {
    let r = append(broker, c, rec).await;
    if let Err(code) = r {
        tracing::warn!(
            transactional_id = id,
            code,
            "__transaction_state append failed"
        );
        c.tc.borrow_mut().abandon(id);
    }
    r
}

/// Writes the markers of `id`'s prepared transaction to every partition, then completes it.
/// Returns whether the transaction reached CompleteCommit/CompleteAbort.
async fn drive_markers(broker: &Rc<Broker>, c: &Rc<Coord>, id: &str) -> bool {
    if !c.driving.borrow_mut().insert(id.to_owned()) {
        return false; // another task is on it
    }
    let done = drive_markers_once(broker, c, id).await;
    c.driving.borrow_mut().remove(id);
    done
}

async fn drive_markers_once(broker: &Rc<Broker>, c: &Rc<Coord>, id: &str) -> bool {
    for attempt in 0..MARKER_ATTEMPTS_MAX {
        let job =
            c.tc.borrow()
                .markers_due()
                .into_iter()
                .find(|j| j.transactional_id == id);
        let Some(job) = job else {
            return false; // not prepared (any more)
        };
        if write_markers(broker, &job).await {
            let rec = c.tc.borrow_mut().complete(id, now_ms());
            if let Some(rec) = rec {
                return persist(broker, c, id, &rec).await.is_ok();
            }
            return false;
        }
        tracing::debug!(
            transactional_id = id,
            attempt,
            "markers not all written; retrying"
        );
        glommio::timer::sleep(MARKER_RETRY_BACKOFF).await;
    }
    false
}

/// Appends the job's marker to each of its partitions; true when every existing partition has
/// it (a partition whose topic was deleted needs none).
async fn write_markers(broker: &Rc<Broker>, job: &chronik_core::txn::MarkerJob) -> bool {
    let meta = broker.meta();
    let mut by_shard: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for (topic, partition) in &job.partitions {
        let owner = meta.topics.get(topic).and_then(|t| {
            usize::try_from(*partition)
                .ok()
                .and_then(|p| t.partitions.get(p))
        });
        if let Some(pm) = owner {
            by_shard
                .entry(pm.shard as usize)
                .or_default()
                .push(pm.group);
        }
    }
    let calls = by_shard.into_iter().map(|(shard, groups)| {
        let n = groups.len();
        let call = Call::WriteMarkers {
            groups,
            producer_id: job.producer_id,
            producer_epoch: job.producer_epoch,
            commit: job.commit,
        };
        async move { (n, broker.call(shard, call).await) }
    });
    let mut ok = true;
    for (n, reply) in futures::future::join_all(calls).await {
        match reply {
            Some(Reply::Markers(codes)) if codes.len() == n => {
                for code in codes {
                    // INVALID_PRODUCER_EPOCH: a newer epoch already wrote there, so this
                    // transaction's records are fenced; its marker is not needed any more.
                    if code != 0 && code != ResponseError::InvalidProducerEpoch.code() {
                        tracing::debug!(code, "marker append failed");
                        ok = false;
                    }
                }
            }
            _ => ok = false,
        }
    }
    ok
}

/// Runs transaction timers on this shard forever (spawned per shard): timeouts, and markers of
/// transactions left prepared.
pub async fn run_timers(broker: Rc<Broker>) {
    loop {
        glommio::timer::sleep(TICK_INTERVAL).await;
        if broker.shared.is_shutting_down() {
            return;
        }
        for (group, c) in broker.txn_coordinators.all() {
            if !c.loaded.get() || !broker.partition(group).is_some_and(|p| p.is_leader()) {
                continue;
            }
            let due = c.tc.borrow_mut().tick(now_ms());
            for rec in due {
                let (broker, c) = (broker.clone(), c.clone());
                glommio::spawn_local(async move {
                    let Ok((id, meta)) = chronik_core::txn::records::decode(&rec) else {
                        return;
                    };
                    if meta.is_none() {
                        tracing::debug!(transactional_id = id, "transactional id expired");
                        let _ = persist(&broker, &c, &id, &rec).await;
                        return;
                    }
                    tracing::info!(transactional_id = id, "transaction timed out; aborting");
                    if persist(&broker, &c, &id, &rec).await.is_ok() {
                        drive_markers(&broker, &c, &id).await;
                    }
                })
                .detach();
            }
            let due = c.tc.borrow().markers_due();
            for job in due.into_iter().take(MARKER_JOBS_PER_TICK_MAX) {
                if c.driving.borrow().contains(&job.transactional_id) {
                    continue;
                }
                let (broker, c) = (broker.clone(), c.clone());
                glommio::spawn_local(async move {
                    drive_markers(&broker, &c, &job.transactional_id).await;
                })
                .detach();
            }
        }
    }
}

/// Handles a transaction call on the shard that owns the coordinator.
pub async fn handle_local(broker: &Rc<Broker>, call: TxnCall) -> TxnReply {
    if let TxnCall::List {
        states,
        producer_ids,
        min_duration_ms,
    } = &call
    {
        let mut out = Vec::new();
        for (group, c) in broker.txn_coordinators.all() {
            if !c.loaded.get() || !broker.partition(group).is_some_and(|p| p.is_leader()) {
                continue;
            }
            let listed =
                c.tc.borrow()
                    .list(states, producer_ids, *min_duration_ms, now_ms());
            out.extend(listed.into_iter().map(|(id, pid, state)| {
                list_transactions_response::TransactionState::default()
                    .with_transactional_id(TransactionalId(str_bytes(id)))
                    .with_producer_id(ProducerId(pid))
                    .with_transaction_state(str_bytes(state.as_str()))
            }));
        }
        return TxnReply::List(out);
    }
    let group = match &call {
        TxnCall::Init { group, .. }
        | TxnCall::Add { group, .. }
        | TxnCall::End { group, .. }
        | TxnCall::Describe { group, .. }
        | TxnCall::Verify { group, .. } => *group,
        TxnCall::List { .. } => unreachable!("answered above"),
    };
    let refuse = |code: ResponseError| match &call {
        TxnCall::Init { .. } => TxnReply::Init {
            error: code.code(),
            producer_id: -1,
            producer_epoch: -1,
        },
        _ => TxnReply::Done(code.code()),
    };
    let Some(c) = broker.txn_coordinators.get(group) else {
        return refuse(ResponseError::NotCoordinator);
    };
    if !broker.partition(group).is_some_and(|p| p.is_leader()) {
        return refuse(ResponseError::NotCoordinator);
    }
    if !c.loaded.get() {
        return refuse(ResponseError::CoordinatorLoadInProgress);
    }
    match call {
        TxnCall::List { .. } => unreachable!("answered above"),
        TxnCall::Verify {
            transactional_id: id,
            producer_id,
            producer_epoch,
            partitions,
            ..
        } => TxnReply::Done(
            c.tc.borrow()
                .verify(&id, producer_id, producer_epoch, &partitions)
                .err()
                .map_or(0, |e| e.code()),
        ),
        TxnCall::Describe {
            transactional_id: id,
            ..
        } => {
            let tc = c.tc.borrow();
            let base = describe_transactions_response::TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(id.clone())));
            TxnReply::Describe(match tc.get(&id).filter(|_| !tc.is_new(&id)) {
                None => base.with_error_code(ResponseError::TransactionalIdNotFound.code()),
                Some(m) => {
                    let mut topics: Vec<describe_transactions_response::TopicData> = Vec::new();
                    for (t, p) in &m.partitions {
                        match topics.last_mut() {
                            Some(last) if last.topic.0.as_str() == t => last.partitions.push(*p),
                            _ => topics.push(
                                describe_transactions_response::TopicData::default()
                                    .with_topic(TopicName(str_bytes(t.clone())))
                                    .with_partitions(vec![*p]),
                            ),
                        }
                    }
                    base.with_transaction_state(str_bytes(m.state.as_str()))
                        .with_transaction_timeout_ms(m.timeout_ms)
                        .with_transaction_start_time_ms(m.start_ms)
                        .with_producer_id(ProducerId(m.producer_id))
                        .with_producer_epoch(m.producer_epoch)
                        .with_topics(topics)
                }
            })
        }
        TxnCall::Init {
            transactional_id: id,
            timeout_ms,
            expected,
            version,
            ..
        } => init(broker, &c, &id, timeout_ms, expected, version).await,
        TxnCall::Add {
            transactional_id: id,
            producer_id,
            producer_epoch,
            partitions,
            api,
            version,
            ..
        } => {
            let r = c.tc.borrow_mut().add_partitions(
                &id,
                producer_id,
                producer_epoch,
                &partitions,
                api,
                version,
                now_ms(),
            );
            TxnReply::Done(match r {
                Ok(None) => 0,
                Ok(Some(rec)) => persist(broker, &c, &id, &rec).await.err().unwrap_or(0),
                Err(e) => e.code(),
            })
        }
        TxnCall::End {
            transactional_id: id,
            producer_id,
            producer_epoch,
            commit,
            version,
            ..
        } => {
            let r = c.tc.borrow_mut().end_txn(
                &id,
                producer_id,
                producer_epoch,
                commit,
                version,
                now_ms(),
            );
            TxnReply::Done(match r {
                Ok(None) => 0,
                Ok(Some(rec)) => match persist(broker, &c, &id, &rec).await {
                    Ok(()) => {
                        // The outcome is decided and durable; markers that fail now are
                        // retried by the timer, so the answer is success either way.
                        drive_markers(broker, &c, &id).await;
                        0
                    }
                    Err(code) => code,
                },
                Err(e) => e.code(),
            })
        }
    }
}

async fn init(
    broker: &Rc<Broker>,
    c: &Rc<Coord>,
    id: &str,
    timeout_ms: i32,
    expected: (i64, i16),
    version: i16,
) -> TxnReply {
    let fail = |e: ResponseError| TxnReply::Init {
        error: e.code(),
        producer_id: -1,
        producer_epoch: -1,
    };
    let mut fresh = None;
    for _ in 0..INIT_ROUNDS_MAX {
        let outcome =
            c.tc.borrow_mut()
                .init_producer_id(id, timeout_ms, expected, version, fresh, now_ms());
        match outcome {
            InitOutcome::NeedProducerId => match broker.next_producer_id().await {
                Ok(pid) => fresh = Some(pid),
                Err(e) => {
                    return TxnReply::Init {
                        error: e.kafka_code(),
                        producer_id: -1,
                        producer_epoch: -1,
                    }
                }
            },
            InitOutcome::Persist {
                record,
                producer_id,
                producer_epoch,
            } => {
                return match persist(broker, c, id, &record).await {
                    Ok(()) => TxnReply::Init {
                        error: 0,
                        producer_id,
                        producer_epoch,
                    },
                    Err(code) => TxnReply::Init {
                        error: code,
                        producer_id: -1,
                        producer_epoch: -1,
                    },
                };
            }
            InitOutcome::Retry {
                producer_id,
                producer_epoch,
            } => {
                return TxnReply::Init {
                    error: 0,
                    producer_id,
                    producer_epoch,
                }
            }
            InitOutcome::AbortFirst { record } => {
                if let Err(code) = persist(broker, c, id, &record).await {
                    return TxnReply::Init {
                        error: code,
                        producer_id: -1,
                        producer_epoch: -1,
                    };
                }
                tracing::info!(
                    transactional_id = id,
                    "fencing and aborting an open transaction"
                );
                let (broker, c, id) = (broker.clone(), c.clone(), id.to_owned());
                glommio::spawn_local(async move {
                    drive_markers(&broker, &c, &id).await;
                })
                .detach();
                // The client retries until the abort is complete (as with Kafka).
                return fail(ResponseError::ConcurrentTransactions);
            }
            InitOutcome::Error(e) => return fail(e),
        }
    }
    fail(ResponseError::ConcurrentTransactions)
}

/// Sends a call to the transaction's coordinator, if the client may do `operation` on the
/// transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED otherwise).
async fn call(
    ctx: &Ctx<'_>,
    id: &str,
    operation: i8,
    make: impl FnOnce(u64) -> TxnCall,
) -> TxnReply {
    if !ctx.allowed(operation, acl::resource::TRANSACTIONAL_ID, id) {
        return TxnReply::Done(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    let Some((group, shard)) = route(ctx.broker, id) else {
        return TxnReply::Done(ResponseError::CoordinatorNotAvailable.code());
    };
    match ctx.broker.call(shard, Call::Txn(make(group))).await {
        Some(Reply::Txn(r)) => r,
        _ => TxnReply::Done(ResponseError::CoordinatorNotAvailable.code()),
    }
}

fn code_of(r: TxnReply) -> i16 {
    match r {
        TxnReply::Done(c) => c,
        TxnReply::Init { error, .. } => error,
        TxnReply::Describe(_) | TxnReply::List(_) => ResponseError::UnknownServerError.code(),
    }
}

/// InitProducerId for a transactional id.
pub async fn init_producer_id(ctx: &Ctx<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let id = req
        .transactional_id
        .as_ref()
        .map(|t| t.0.as_str().to_string())
        .unwrap_or_default();
    let expected = if ctx.version >= 3 {
        (req.producer_id.0, req.producer_epoch)
    } else {
        (-1, -1)
    };
    let version = ctx.version;
    let r = call(ctx, &id, acl::op::WRITE, |group| TxnCall::Init {
        group,
        transactional_id: id.clone(),
        timeout_ms: req.transaction_timeout_ms,
        expected,
        version,
    })
    .await;
    let (error, pid, epoch) = match r {
        TxnReply::Init {
            error,
            producer_id,
            producer_epoch,
        } => (error, producer_id, producer_epoch),
        other => (code_of(other), -1, -1),
    };
    InitProducerIdResponse::default()
        .with_error_code(map_fenced(error, Api::InitProducerId, version))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
}

/// Checks, before transactional batches are appended, that their partitions are in the
/// producer's ongoing transaction (see `TxnCoordinator::verify`). Returns a Kafka error code.
pub async fn verify_produce(
    ctx: &Ctx<'_>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<(String, i32)>,
) -> i16 {
    let r = call(ctx, transactional_id, acl::op::WRITE, |group| {
        TxnCall::Verify {
            group,
            transactional_id: transactional_id.to_owned(),
            producer_id,
            producer_epoch,
            partitions,
        }
    })
    .await;
    code_of(r)
}

/// PRODUCER_FENCED is new in KIP-588; older request versions get INVALID_PRODUCER_EPOCH.
fn map_fenced(code: i16, api: Api, version: i16) -> i16 {
    if code == ResponseError::ProducerFenced.code() {
        fenced_error(api, version).code()
    } else {
        code
    }
}

/// Dispatches the transaction APIs; `None` for request kinds that are not theirs.
pub async fn dispatch(ctx: &Ctx<'_>, body: RequestKind) -> Option<ResponseKind> {
    let v = ctx.version;
    Some(match body {
        RequestKind::AddPartitionsToTxn(req) => {
            ResponseKind::AddPartitionsToTxn(add_partitions(ctx, req).await)
        }
        RequestKind::AddOffsetsToTxn(req) => {
            let id = req.transactional_id.0.as_str().to_string();
            let group_id = req.group_id.0.as_str();
            let code = if group_id.is_empty() {
                ResponseError::InvalidGroupId.code()
            } else if !ctx.allowed(acl::op::READ, acl::resource::GROUP, group_id) {
                ResponseError::GroupAuthorizationFailed.code()
            } else {
                let offsets = ctx.broker.shared.offsets_partition_for(group_id);
                let partitions = vec![(
                    chronik_core::meta::CONSUMER_OFFSETS_TOPIC.to_string(),
                    offsets,
                )];
                let r = call(ctx, &id, acl::op::WRITE, |group| TxnCall::Add {
                    group,
                    transactional_id: id.clone(),
                    producer_id: req.producer_id.0,
                    producer_epoch: req.producer_epoch,
                    partitions,
                    api: Api::AddOffsetsToTxn,
                    version: v,
                })
                .await;
                map_fenced(code_of(r), Api::AddOffsetsToTxn, v)
            };
            ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code))
        }
        RequestKind::EndTxn(req) => {
            let id = req.transactional_id.0.as_str().to_string();
            let r = call(ctx, &id, acl::op::WRITE, |group| TxnCall::End {
                group,
                transactional_id: id.clone(),
                producer_id: req.producer_id.0,
                producer_epoch: req.producer_epoch,
                commit: req.committed,
                version: v,
            })
            .await;
            ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(map_fenced(
                code_of(r),
                Api::EndTxn,
                v,
            )))
        }
        RequestKind::WriteTxnMarkers(req) => {
            ResponseKind::WriteTxnMarkers(write_txn_markers(ctx, req).await)
        }
        RequestKind::DescribeTransactions(req) => {
            let mut states = Vec::with_capacity(req.transactional_ids.len());
            for tid in req.transactional_ids {
                let id = tid.0.as_str().to_string();
                let r = call(ctx, &id, acl::op::DESCRIBE, |group| TxnCall::Describe {
                    group,
                    transactional_id: id.clone(),
                })
                .await;
                states.push(match r {
                    TxnReply::Describe(d) => d,
                    other => describe_transactions_response::TransactionState::default()
                        .with_transactional_id(tid)
                        .with_error_code(code_of(other)),
                });
            }
            ResponseKind::DescribeTransactions(
                DescribeTransactionsResponse::default().with_transaction_states(states),
            )
        }
        RequestKind::ListTransactions(req) => {
            ResponseKind::ListTransactions(list_transactions(ctx, req).await)
        }
        _ => return None,
    })
}

/// ListTransactions: every shard lists the coordinators it leads; unknown state names are
/// reported back (Kafka's `unknown_state_filters`) and match nothing.
async fn list_transactions(
    ctx: &Ctx<'_>,
    req: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let mut states = Vec::new();
    let mut unknown = Vec::new();
    for name in &req.state_filters {
        match TxnState::from_name(name.as_str()) {
            Some(s) => states.push(s),
            None => unknown.push(name.clone()),
        }
    }
    let mut resp = ListTransactionsResponse::default().with_unknown_state_filters(unknown.clone());
    if !unknown.is_empty() && states.is_empty() {
        return resp; // only unknown states were asked for: nothing matches
    }
    // v2 (KIP-1152): a regular expression the whole transactional id must match, as Java's
    // `Matcher.matches`; empty or null matches everything.
    let pattern = match req.transactional_id_pattern.as_ref().map(|p| p.as_str()) {
        Some(p) if ctx.version >= 2 && !p.is_empty() => {
            match regex::Regex::new(&format!("^(?:{p})$")) {
                Ok(re) => Some(re),
                Err(e) => {
                    tracing::debug!("ListTransactions pattern {p:?}: {e}");
                    return resp.with_error_code(ResponseError::InvalidRegularExpression.code());
                }
            }
        }
        _ => None,
    };
    let producer_ids: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    let min_duration_ms = if ctx.version >= 1 {
        req.duration_filter
    } else {
        -1
    };
    let calls = (0..ctx.broker.shared.shards).map(|shard| {
        let call = Call::Txn(TxnCall::List {
            states: states.clone(),
            producer_ids: producer_ids.clone(),
            min_duration_ms,
        });
        async move { ctx.broker.call(shard, call).await }
    });
    for r in futures::future::join_all(calls).await {
        match r {
            Some(Reply::Txn(TxnReply::List(l))) => resp.transaction_states.extend(l),
            _ => resp.error_code = ResponseError::CoordinatorNotAvailable.code(),
        }
    }
    if let Some(re) = &pattern {
        resp.transaction_states
            .retain(|t| re.is_match(t.transactional_id.0.as_str()));
    }
    // Only the transactions the client may DESCRIBE, as Kafka lists them.
    if ctx.authorizing() {
        resp.transaction_states.retain(|t| {
            ctx.allowed(
                acl::op::DESCRIBE,
                acl::resource::TRANSACTIONAL_ID,
                t.transactional_id.0.as_str(),
            )
        });
    }
    resp.transaction_states.sort_by(|a, b| {
        a.transactional_id
            .0
            .as_str()
            .cmp(b.transactional_id.0.as_str())
    });
    resp
}

/// WriteTxnMarkers: each marker is appended to each listed partition (routed to the owning
/// shards, one call per shard and marker); every partition gets its own error code.
async fn write_txn_markers(ctx: &Ctx<'_>, req: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    use kafka_protocol::messages::write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    };
    let meta = ctx.broker.meta();
    let mut markers = Vec::with_capacity(req.markers.len());
    for m in req.markers {
        // (topic index, partition index) → error code; routed ones filled in below.
        let mut codes: Vec<Vec<i16>> = Vec::with_capacity(m.topics.len());
        let mut by_shard: BTreeMap<usize, Vec<(usize, usize, u64)>> = BTreeMap::new();
        for (ti, t) in m.topics.iter().enumerate() {
            let topic = meta.topics.get(t.name.0.as_str());
            let mut row = Vec::with_capacity(t.partition_indexes.len());
            for (pi, &p) in t.partition_indexes.iter().enumerate() {
                let owner =
                    topic.and_then(|tm| usize::try_from(p).ok().and_then(|i| tm.partitions.get(i)));
                match owner {
                    Some(pm) => {
                        by_shard
                            .entry(pm.shard as usize)
                            .or_default()
                            .push((ti, pi, pm.group));
                        row.push(ResponseError::NotLeaderOrFollower.code());
                    }
                    None => row.push(ResponseError::UnknownTopicOrPartition.code()),
                }
            }
            codes.push(row);
        }
        let calls = by_shard.into_iter().map(|(shard, slots)| {
            let call = Call::WriteMarkers {
                groups: slots.iter().map(|s| s.2).collect(),
                producer_id: m.producer_id.0,
                producer_epoch: m.producer_epoch,
                commit: m.transaction_result,
            };
            async move { (slots, ctx.broker.call(shard, call).await) }
        });
        for (slots, reply) in futures::future::join_all(calls).await {
            if let Some(Reply::Markers(r)) = reply {
                if r.len() == slots.len() {
                    for ((ti, pi, _), code) in slots.into_iter().zip(r) {
                        codes[ti][pi] = code;
                    }
                }
            }
        }
        let topics = m
            .topics
            .iter()
            .zip(codes)
            .map(|(t, row)| {
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partition_indexes
                            .iter()
                            .zip(row)
                            .map(|(&p, code)| {
                                WritableTxnMarkerPartitionResult::default()
                                    .with_partition_index(p)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect();
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}

async fn add_partitions(
    ctx: &Ctx<'_>,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let v = ctx.version;
    let id = req.v3_and_below_transactional_id.0.as_str().to_string();
    // Partitions of unknown topics fail alone; the others then get OPERATION_NOT_ATTEMPTED
    // (Kafka's rule: the transaction never holds a partition that does not exist).
    // Topics the client may not WRITE fail the same way, TOPIC_AUTHORIZATION_FAILED.
    let meta = ctx.broker.meta();
    let mut unknown = HashMap::new();
    let mut wanted = Vec::new();
    for t in &req.v3_and_below_topics {
        let writable = ctx.allowed(acl::op::WRITE, acl::resource::TOPIC, t.name.0.as_str());
        let topic = meta.topics.get(t.name.0.as_str());
        for &p in &t.partitions {
            let exists =
                topic.is_some_and(|m| usize::try_from(p).is_ok_and(|i| i < m.partitions.len()));
            let key = (t.name.0.as_str().to_string(), p);
            if !writable {
                unknown.insert(key, ResponseError::TopicAuthorizationFailed.code());
            } else if exists {
                wanted.push(key);
            } else {
                unknown.insert(key, ResponseError::UnknownTopicOrPartition.code());
            }
        }
    }
    let shared_code = if !ctx.allowed(acl::op::WRITE, acl::resource::TRANSACTIONAL_ID, &id) {
        ResponseError::TransactionalIdAuthorizationFailed.code()
    } else if !unknown.is_empty() {
        ResponseError::OperationNotAttempted.code()
    } else if wanted.is_empty() {
        ResponseError::InvalidRequest.code()
    } else {
        let r = call(ctx, &id, acl::op::WRITE, |group| TxnCall::Add {
            group,
            transactional_id: id.clone(),
            producer_id: req.v3_and_below_producer_id.0,
            producer_epoch: req.v3_and_below_producer_epoch,
            partitions: wanted,
            api: Api::AddPartitionsToTxn,
            version: v,
        })
        .await;
        map_fenced(code_of(r), Api::AddPartitionsToTxn, v)
    };
    let txn_id_refused = ResponseError::TransactionalIdAuthorizationFailed.code();
    let results = req
        .v3_and_below_topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|&p| {
                            let code = match unknown.get(&(t.name.0.as_str().to_string(), p)) {
                                Some(&code) if shared_code != txn_id_refused => code,
                                _ => shared_code,
                            };
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}
