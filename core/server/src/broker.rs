//! One shard's broker: its WAL, its Raft groups, the partitions it owns, and call dispatch.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chronik_core::meta::{MetaCommand, MetaError, MetaState, TopicMeta, META_GROUP};
use chronik_raft::raft::eraftpb::Entry;
use chronik_raft::{Applier, MultiRaft};
use chronik_shard::mesh::Mesh;
use chronik_storage::Wal;
use futures::channel::oneshot;
use kafka_protocol::ResponseError;

use crate::calls::{
    Call, CallKind, FetchOutcome, FetchPart, OffsetLookup, PartitionOffsets, PartitionReport,
    ProduceOutcome, Reply,
};
use crate::handlers::groups::Coordinators;
use crate::handlers::txn::TxnCoordinators;
use crate::partition::{with_timeout, Partition, Settings};
use crate::shared::Shared;

/// Per-shard metric handles (looked up once; incrementing is an atomic add).
pub struct ShardMetrics {
    pub produce_requests: metrics::Counter,
    pub produce_bytes: metrics::Counter,
    pub produce_errors: metrics::Counter,
    pub fetch_bytes: metrics::Counter,
    pub leader_elections: metrics::Counter,
    /// Calls this shard forwarded to another shard, by [`Call::kind`].
    pub cross_shard_calls: [metrics::Counter; CallKind::COUNT],
}

impl ShardMetrics {
    fn new(shard: usize, node: i32) -> Self {
        let labels = [("shard", shard.to_string()), ("node_id", node.to_string())];
        Self {
            produce_requests: metrics::counter!(
                "chronik_produce_partition_requests_total",
                &labels
            ),
            produce_bytes: metrics::counter!("chronik_produce_bytes_total", &labels),
            produce_errors: metrics::counter!("chronik_produce_errors_total", &labels),
            fetch_bytes: metrics::counter!("chronik_fetch_bytes_total", &labels),
            leader_elections: metrics::counter!("raft_leader_elections_total", &labels),
            cross_shard_calls: CallKind::ALL.map(|k| {
                metrics::counter!(
                    "chronik_cross_shard_calls_total",
                    "shard" => shard.to_string(),
                    "node_id" => node.to_string(),
                    "kind" => k.name()
                )
            }),
        }
    }
}

/// How long a metadata change may take to commit and reach every shard.
pub const META_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Broker {
    pub shard: usize,
    pub shared: Arc<Shared>,
    pub wal: Rc<Wal>,
    pub raft: Rc<MultiRaft>,
    mesh: OnceCell<Rc<Mesh<Call, Reply>>>,
    partitions: RefCell<HashMap<u64, Rc<Partition>>>,
    meta_cache: RefCell<(u64, Arc<MetaState>)>,
    /// Topic id → name of the cached image, rebuilt when the image changes (`meta_and_ids`).
    id_cache: RefCell<(u64, Rc<HashMap<u128, String>>)>,
    /// Shard 0: the applied `__meta` state and the waiters of proposed commands.
    meta_state: RefCell<MetaState>,
    /// Topic name → id as of the last [`Broker::reconcile`] (`None` before the first), to tell
    /// which topics a metadata change deleted.
    known_topics: RefCell<Option<HashMap<String, u128>>>,
    /// Proposers of `__meta` entries by Raft index. `Ok` carries the producer id high-water mark
    /// as of that entry: proposals applied in one batch must each see their own.
    meta_waiters: RefCell<BTreeMap<u64, oneshot::Sender<Result<i64, MetaError>>>>,
    meta_applied: Cell<u64>,
    /// Producer ids this shard may hand out: `[next, end)`.
    pid_block: Cell<(i64, i64)>,
    /// One block refill at a time per shard: requests that find the block empty meanwhile wait
    /// and take ids from the new block instead of each allocating one.
    pid_refill: glommio::sync::Semaphore,
    pub coordinators: Coordinators,
    /// Transaction coordinators of the `__transaction_state` partitions this shard owns.
    pub txn_coordinators: TxnCoordinators,
    /// Requests being handled on this shard (drained before shutdown).
    inflight: Cell<usize>,
    pub metrics: ShardMetrics,
    /// The authorizer's policy; `None` when `server.authorization_enabled` is off.
    pub authz: Option<chronik_core::acl::Policy>,
    /// Fault injection for tests (`CHRONIK_FAULT_DROP_PRODUCE_RESPONSE_EVERY=N`): every Nth
    /// acknowledged produce on this shard is appended but its connection is dropped unanswered.
    fault_drop_every: u64,
    fault_counter: Cell<u64>,
    /// Parked long polls, woken at shutdown.
    shutdown_waiters: RefCell<Vec<oneshot::Sender<()>>>,
}

impl Broker {
    pub fn new(shard: usize, shared: Arc<Shared>, wal: Rc<Wal>) -> Rc<Self> {
        let raft = MultiRaft::new(shared.node_id as u64, wal.clone());
        let metrics = ShardMetrics::new(shard, shared.node_id);
        let meta = shared.meta();
        let authz = shared
            .config
            .server
            .authorization_enabled
            .then(|| chronik_core::acl::Policy {
                super_users: chronik_core::config::super_users(&shared.config.server.super_users)
                    .map(str::to_string)
                    .collect(),
                allow_everyone_if_no_acl_found: shared.config.server.allow_everyone_if_no_acl_found,
            });
        Rc::new(Self {
            shard,
            shared,
            wal,
            raft,
            mesh: OnceCell::new(),
            partitions: RefCell::new(HashMap::new()),
            meta_cache: RefCell::new(meta),
            id_cache: RefCell::new((u64::MAX, Rc::new(HashMap::new()))),
            meta_state: RefCell::new(MetaState::default()),
            known_topics: RefCell::new(None),
            meta_waiters: RefCell::new(BTreeMap::new()),
            meta_applied: Cell::new(0),
            pid_block: Cell::new((0, 0)),
            pid_refill: glommio::sync::Semaphore::new(1),
            coordinators: Coordinators::default(),
            txn_coordinators: TxnCoordinators::default(),
            inflight: Cell::new(0),
            metrics,
            authz,
            shutdown_waiters: RefCell::new(Vec::new()),
            fault_drop_every: std::env::var("CHRONIK_FAULT_DROP_PRODUCE_RESPONSE_EVERY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            fault_counter: Cell::new(0),
        })
    }

    /// Whether to drop this produce's response (see `fault_drop_every`).
    pub fn fault_drop_produce_response(&self) -> bool {
        if self.fault_drop_every == 0 {
            return false;
        }
        let n = self.fault_counter.get() + 1;
        self.fault_counter.set(n);
        let drop = n.is_multiple_of(self.fault_drop_every);
        if drop {
            metrics::counter!("chronik_fault_dropped_produce_responses_total").increment(1);
        }
        drop
    }

    /// Ends every parked long poll (shutdown).
    pub fn wake_parked(&self) {
        for tx in self.shutdown_waiters.borrow_mut().drain(..) {
            let _ = tx.send(());
        }
    }

    pub fn inflight(&self) -> usize {
        self.inflight.get()
    }

    /// Counts a request as in flight until the guard drops.
    pub fn track(self: &Rc<Self>) -> InflightGuard {
        self.inflight.set(self.inflight.get() + 1);
        InflightGuard(self.clone())
    }

    pub fn set_mesh(&self, mesh: Rc<Mesh<Call, Reply>>) {
        let _ = self.mesh.set(mesh);
    }

    /// The current metadata image (refreshed only when shard 0 published a new one).
    pub fn meta(&self) -> Arc<MetaState> {
        let v = self.shared.meta_version();
        {
            let c = self.meta_cache.borrow();
            if c.0 == v {
                return c.1.clone();
            }
        }
        let fresh = self.shared.meta();
        *self.meta_cache.borrow_mut() = fresh.clone();
        fresh.1
    }

    /// The current metadata image and its topic-id index (built once per image, so requests
    /// naming topics by id do not scan every topic).
    pub fn meta_and_ids(&self) -> (Arc<MetaState>, Rc<HashMap<u128, String>>) {
        let meta = self.meta();
        let v = self.meta_cache.borrow().0;
        {
            let c = self.id_cache.borrow();
            if c.0 == v {
                return (meta, c.1.clone());
            }
        }
        let ids = Rc::new(meta.id_index());
        *self.id_cache.borrow_mut() = (v, ids.clone());
        (meta, ids)
    }

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.meta().topics.get(name).cloned()
    }

    pub fn partition(&self, group: u64) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(&group).cloned()
    }

    pub fn local_partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Runs `call` on `shard`: directly if it is this shard, else over the mesh.
    pub async fn call(self: &Rc<Self>, shard: usize, call: Call) -> Option<Reply> {
        if shard == self.shard {
            return Some(self.clone().handle(call).await);
        }
        let mesh = self.mesh.get()?;
        self.metrics.cross_shard_calls[call.kind() as usize].increment(1);
        mesh.call(shard, call).await
    }

    /// Reads each partition; those with nothing to read are answered on the spot, the others
    /// are read concurrently, so a catch-up read that goes to disk does not hold up the rest.
    async fn fetch_parts(&self, parts: Vec<FetchPart>) -> Vec<FetchOutcome> {
        let mut out: Vec<FetchOutcome> = Vec::with_capacity(parts.len());
        let mut reads = Vec::new();
        for part in parts {
            let answer = match self.partition(part.group) {
                Some(p) => match p.fetch_without_read(part.offset, part.isolation) {
                    Some(o) => o,
                    None => {
                        reads.push((out.len(), p, part));
                        FetchOutcome::default()
                    }
                },
                None => FetchOutcome {
                    error: ResponseError::NotLeaderOrFollower.code(),
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    ..Default::default()
                },
            };
            out.push(answer);
        }
        let done = futures::future::join_all(
            reads
                .iter()
                .map(|(_, p, part)| p.fetch(part.offset, part.max_bytes, part.isolation)),
        )
        .await;
        for ((i, _, _), o) in reads.iter().zip(done) {
            out[*i] = o;
        }
        let bytes: usize = out.iter().map(|o| o.bytes).sum();
        self.metrics.fetch_bytes.increment(bytes as u64);
        out
    }

    /// Returns when any listed partition `(group, offset, isolation)` has data past `offset`
    /// (read_committed: its last stable offset passed it), at shutdown, or after `timeout_ms`.
    async fn wait_for_data(&self, parts: impl Iterator<Item = (u64, i64, i8)>, timeout_ms: u64) {
        if self.shared.is_shutting_down() {
            return;
        }
        let (tx, shutdown) = oneshot::channel();
        self.shutdown_waiters.borrow_mut().push(tx);
        let mut rxs = vec![shutdown];
        for (group, offset, isolation) in parts {
            if let Some(p) = self.partition(group) {
                match p.watch(offset, isolation) {
                    Some(rx) => rxs.push(rx),
                    // Already there.
                    None => return,
                }
            }
        }
        let any = futures::future::select_all(rxs);
        with_timeout(any, Duration::from_millis(timeout_ms)).await;
        self.shutdown_waiters
            .borrow_mut()
            .retain(|tx| !tx.is_canceled());
    }

    /// Handles a call addressed to this shard.
    pub async fn handle(self: Rc<Self>, call: Call) -> Reply {
        match call {
            Call::Produce {
                parts,
                acks,
                timeout_ms,
            } => {
                let futs = parts.into_iter().map(|(group, records)| {
                    let p = self.partition(group);
                    self.metrics.produce_requests.increment(1);
                    self.metrics.produce_bytes.increment(records.len() as u64);
                    async move {
                        let o = match p {
                            Some(p) => p.produce(records, acks, timeout_ms).await,
                            None => {
                                ProduceOutcome::failed(ResponseError::NotLeaderOrFollower.code())
                            }
                        };
                        if o.error != 0 {
                            tracing::debug!(group, error = o.error, message = ?o.error_message, "produce failed");
                        }
                        o
                    }
                });
                let out = futures::future::join_all(futs).await;
                let errors = out.iter().filter(|o| o.error != 0).count();
                self.metrics.produce_errors.increment(errors as u64);
                Reply::Produce(out)
            }
            Call::Fetch(parts) => Reply::Fetch(self.fetch_parts(parts).await),
            Call::FetchWhenData {
                parts,
                seen,
                timeout_ms,
                wanted,
            } => {
                let waits = parts
                    .iter()
                    .zip(&seen)
                    .map(|(p, &s)| (p.group, s, p.isolation));
                self.wait_for_data(waits, timeout_ms).await;
                // The caller answered from another shard meanwhile: skip the read.
                if !wanted.load(Ordering::Acquire) {
                    return Reply::Fetch(Vec::new());
                }
                Reply::Fetch(self.fetch_parts(parts).await)
            }
            Call::Offsets(group) => Reply::Offsets(match self.partition(group) {
                Some(p) => p.offsets(),
                None => PartitionOffsets::failed(ResponseError::NotLeaderOrFollower.code()),
            }),
            Call::ListOffsets {
                group,
                timestamp,
                isolation,
            } => Reply::ListOffsets(match self.partition(group) {
                Some(p) if p.is_leader() => p.list_offset(timestamp, isolation).await,
                _ => OffsetLookup::failed(ResponseError::NotLeaderOrFollower.code()),
            }),
            Call::DeleteRecords { group, offset } => {
                Reply::DeleteRecords(match self.partition(group) {
                    Some(p) => p.delete_records(offset).await,
                    None => PartitionOffsets::failed(ResponseError::NotLeaderOrFollower.code()),
                })
            }
            Call::EpochEnd { group, epoch } => {
                let (error, epoch, end_offset) = match self.partition(group) {
                    Some(p) => p.epoch_end(epoch),
                    None => (ResponseError::NotLeaderOrFollower.code(), -1, -1),
                };
                Reply::EpochEnd {
                    error,
                    epoch,
                    end_offset,
                }
            }
            Call::Meta(cmd) => Reply::Meta(self.propose_meta_local(cmd).await),
            Call::Reconcile => {
                self.reconcile();
                Reply::Reconciled
            }
            Call::Group(gc) => Reply::Group(crate::handlers::groups::handle_local(&self, gc).await),
            Call::Txn(tc) => {
                // Boxed: a coordinator calls other shards (markers), which may be this one.
                let fut: std::pin::Pin<Box<dyn std::future::Future<Output = _>>> =
                    Box::pin(crate::handlers::txn::handle_local(&self, tc));
                Reply::Txn(fut.await)
            }
            Call::WriteMarkers {
                groups,
                producer_id,
                producer_epoch,
                commit,
            } => {
                let futs = groups.into_iter().map(|g| {
                    let p = self.partition(g);
                    async move {
                        match p {
                            Some(p) => {
                                p.write_marker(
                                    producer_id,
                                    producer_epoch,
                                    commit,
                                    crate::handlers::txn::MARKER_TIMEOUT_MS,
                                )
                                .await
                            }
                            None => ResponseError::NotLeaderOrFollower.code(),
                        }
                    }
                });
                Reply::Markers(futures::future::join_all(futs).await)
            }
            Call::AllocateProducerIds => Reply::ProducerIds(self.allocate_pid_block_local().await),
            Call::QuorumStatus => {
                Reply::QuorumStatus(self.raft.group_status(META_GROUP).map(|st| {
                    crate::calls::QuorumStatus {
                        term: st.term,
                        commit: st.commit,
                        last_index: st.last_index,
                        leader: st.leader,
                        voters: self
                            .wal
                            .group_state(META_GROUP)
                            .map(|g| g.conf_state.voters)
                            .unwrap_or_default(),
                    }
                }))
            }
            Call::Report { groups, producers } => Reply::Report(
                groups
                    .into_iter()
                    .map(|g| match self.partition(g) {
                        Some(p) => p.report(producers),
                        None => PartitionReport {
                            error: ResponseError::NotLeaderOrFollower.code(),
                            ..Default::default()
                        },
                    })
                    .collect(),
            ),
        }
    }

    // ---- metadata -------------------------------------------------------------------------

    /// Proposes a metadata change from any shard and waits until all shards applied it.
    pub async fn propose_meta(self: &Rc<Self>, cmd: MetaCommand) -> Result<(), MetaError> {
        match self.call(0, Call::Meta(cmd)).await {
            Some(Reply::Meta(r)) => r,
            _ => Err(MetaError::NotInitialised),
        }
    }

    /// Shard 0: propose to `__meta`, wait for the apply result, then bring every shard in line.
    async fn propose_meta_local(self: &Rc<Self>, cmd: MetaCommand) -> Result<(), MetaError> {
        self.propose_meta_local_pid(cmd).await.map(|_| ())
    }

    /// [`Self::propose_meta_local`], returning the producer id high-water mark right after the
    /// entry was applied (not the current one, which later entries may have moved).
    async fn propose_meta_local_pid(self: &Rc<Self>, cmd: MetaCommand) -> Result<i64, MetaError> {
        assert_eq!(self.shard, 0, "__meta lives on shard 0");
        let data = serde_json::to_vec(&cmd).expect("meta commands serialise");
        let proposed = self
            .raft
            .propose(META_GROUP, data)
            .map_err(|_| MetaError::NotInitialised)?;
        let (tx, rx) = oneshot::channel();
        self.meta_waiters.borrow_mut().insert(proposed.index, tx);
        let result = match with_timeout(rx, META_TIMEOUT).await {
            Some(Ok(r)) => r,
            _ => Err(MetaError::NotInitialised),
        };
        if result.is_ok() {
            self.reconcile_all().await;
        }
        result
    }

    /// Shard 0: ask every shard (itself included) to open/close partitions per the metadata.
    pub async fn reconcile_all(self: &Rc<Self>) {
        let calls = (0..self.shared.shards).map(|s| self.call(s, Call::Reconcile));
        futures::future::join_all(calls).await;
    }

    fn apply_meta(&self, entries: &[Entry]) {
        let mut changed = false;
        for e in entries {
            self.meta_applied.set(e.index);
            if e.data.is_empty() {
                continue;
            }
            let result = match serde_json::from_slice::<MetaCommand>(&e.data) {
                Ok(cmd) => self.meta_state.borrow_mut().apply(&cmd),
                Err(err) => {
                    tracing::error!(index = e.index, "undecodable __meta entry: {err}");
                    Err(MetaError::NotInitialised)
                }
            };
            changed |= result.is_ok();
            if let Some(tx) = self.meta_waiters.borrow_mut().remove(&e.index) {
                let _ = tx.send(result.map(|()| self.meta_state.borrow().producer_id_high));
            }
        }
        if changed {
            self.meta_state.borrow().check_invariants();
            self.shared.publish_meta(self.meta_state.borrow().clone());
        }
    }

    /// Shard 0 at start-up: replay `__meta`, initialise it if new, and create internal topics.
    pub async fn bootstrap_meta(self: &Rc<Self>) -> anyhow::Result<()> {
        let node = self.shared.node_id as u64;
        self.raft.open_group(META_GROUP, &[node], false, true)?;
        // Wait until the group has a leader and has applied its whole log.
        let mut polls = 0;
        loop {
            let last = self
                .wal
                .group_state(META_GROUP)
                .map(|s| s.last_index)
                .unwrap_or(0);
            if self.raft.is_leader(META_GROUP) && self.meta_applied.get() >= last {
                break;
            }
            polls += 1;
            anyhow::ensure!(polls < 30_000, "__meta did not become ready within 30 s");
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        // Publish what was replayed even if nothing changed in this run.
        self.shared.publish_meta(self.meta_state.borrow().clone());
        let recorded = self.meta_state.borrow().shards;
        if recorded == 0 {
            self.propose_meta_local(MetaCommand::Init {
                shards: self.shared.shards as u32,
            })
            .await
            .map_err(|e| anyhow::anyhow!("initialising __meta: {e}"))?;
        } else if recorded as usize != self.shared.shards {
            anyhow::bail!(
                "this data directory was laid out for {recorded} shards but {} cores were given; \
                 start with {recorded} cores (--cores / [server] cores) — partitions are owned by \
                 a fixed shard",
                self.shared.shards
            );
        }
        let offsets = chronik_core::meta::CONSUMER_OFFSETS_TOPIC;
        if !self.meta_state.borrow().topics.contains_key(offsets) {
            let mut configs = BTreeMap::new();
            configs.insert("cleanup.policy".to_string(), "compact".to_string());
            self.propose_meta_local(MetaCommand::CreateTopic {
                name: offsets.to_string(),
                id: uuid::Uuid::new_v4().as_u128(),
                partitions: self
                    .shared
                    .config
                    .broker
                    .offsets_topic_num_partitions
                    .max(1) as i32,
                configs,
            })
            .await
            .map_err(|e| anyhow::anyhow!("creating {offsets}: {e}"))?;
        }
        let txn_state = chronik_core::txn::TRANSACTION_STATE_TOPIC;
        if !self.meta_state.borrow().topics.contains_key(txn_state) {
            let mut configs = BTreeMap::new();
            configs.insert("cleanup.policy".to_string(), "compact".to_string());
            self.propose_meta_local(MetaCommand::CreateTopic {
                name: txn_state.to_string(),
                id: uuid::Uuid::new_v4().as_u128(),
                partitions: self
                    .shared
                    .config
                    .broker
                    .transaction_state_log_num_partitions
                    .max(1) as i32,
                configs,
            })
            .await
            .map_err(|e| anyhow::anyhow!("creating {txn_state}: {e}"))?;
        }
        self.ensure_sasl_users().await?;
        self.reconcile_all().await;
        Ok(())
    }

    /// Shard 0 at start-up: `server.sasl_bootstrap_users` without any SCRAM credential get
    /// SCRAM-SHA-256 and SCRAM-SHA-512 ones (users that have credentials keep them, so a
    /// password changed through AlterUserScramCredentials is not reset by a restart).
    async fn ensure_sasl_users(self: &Rc<Self>) -> anyhow::Result<()> {
        use crate::handlers::scram_credentials::{SCRAM_SHA_256, SCRAM_SHA_512};
        let users =
            chronik_core::config::sasl_users(&self.shared.config.server.sasl_bootstrap_users.0);
        let mut upsertions = Vec::new();
        for (user, password) in users.into_iter().flatten() {
            if self.meta_state.borrow().scram.contains_key(&user) {
                continue;
            }
            for m in [SCRAM_SHA_256, SCRAM_SHA_512] {
                upsertions.push((user.clone(), m, crate::sasl::new_credential(m, &password)));
            }
        }
        if upsertions.is_empty() {
            return Ok(());
        }
        let n = upsertions.len() / 2;
        self.propose_meta_local(MetaCommand::AlterScramCredentials {
            deletions: Vec::new(),
            upsertions,
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating SASL bootstrap users: {e}"))?;
        tracing::info!(
            users = n,
            "created SCRAM credentials for SASL bootstrap users"
        );
        Ok(())
    }

    /// Opens partitions this shard owns per the metadata and closes the ones that are gone.
    pub fn reconcile(self: &Rc<Self>) {
        let meta = self.meta();
        let node = self.shared.node_id as u64;
        let mut wanted = HashMap::new();
        for t in meta.topics.values() {
            let settings = Settings::resolve(&t.configs, &self.shared.topic_defaults);
            for (i, p) in t.partitions.iter().enumerate() {
                if p.shard as usize == self.shard {
                    wanted.insert(p.group, (t.name.clone(), i as i32, settings.clone()));
                }
            }
        }
        // Groups' offsets for topics deleted (or deleted and re-created) since the last
        // reconcile go, as Kafka drops them with the topic's partitions.
        let current: HashMap<String, u128> = meta
            .topics
            .values()
            .map(|t| (t.name.clone(), t.id))
            .collect();
        if let Some(known) = self.known_topics.replace(Some(current.clone())) {
            let deleted: std::collections::BTreeSet<String> = known
                .into_iter()
                .filter(|(name, id)| current.get(name) != Some(id))
                .map(|(name, _)| name)
                .collect();
            if !deleted.is_empty() {
                self.coordinators.topics_deleted(self, &deleted);
            }
        }
        // Close partitions of deleted topics.
        let gone: Vec<u64> = self
            .partitions
            .borrow()
            .keys()
            .filter(|g| !wanted.contains_key(g))
            .copied()
            .collect();
        for g in gone {
            if let Some(p) = self.partitions.borrow_mut().remove(&g) {
                p.close();
            }
            self.coordinators.remove(g);
            self.txn_coordinators.remove(g);
            if let Err(e) = self.raft.remove_group(g) {
                tracing::warn!(group = g, "removing group: {e}");
            }
        }
        // Groups left in the WAL by topics deleted before a crash.
        for g in self.wal.groups() {
            if g != META_GROUP && !wanted.contains_key(&g) && !self.raft.has_group(g) {
                let _ = self.wal.remove_group(g);
            }
        }
        for (g, (topic, index, settings)) in wanted {
            if let Some(p) = self.partition(g) {
                *p.settings.borrow_mut() = settings;
                continue;
            }
            let is_offsets = topic == chronik_core::meta::CONSUMER_OFFSETS_TOPIC;
            let is_txn_state = topic == chronik_core::txn::TRANSACTION_STATE_TOPIC;
            if let Err(e) = self
                .raft
                .open_group(g, &[node], true, is_offsets || is_txn_state)
            {
                tracing::error!(group = g, topic, index, "cannot open partition: {e}");
                continue;
            }
            let p = Partition::open(g, topic.clone(), index, self.raft.clone(), settings);
            if is_offsets {
                self.coordinators.open(g, index, &self.shared);
                let last = self.wal.group_state(g).map_or(0, |s| s.last_index);
                self.coordinators.set_load_target(g, last);
            }
            if is_txn_state {
                self.txn_coordinators.open(g, index, &self.shared);
                let last = self.wal.group_state(g).map_or(0, |s| s.last_index);
                self.txn_coordinators.set_load_target(g, last);
            }
            self.partitions.borrow_mut().insert(g, p);
        }
    }

    /// Publishes this shard's Raft and partition figures for `/metrics` (housekeeping timer).
    pub fn publish_stats(&self) {
        let mut stats = Vec::new();
        let mut groups: Vec<u64> = self.partitions.borrow().keys().copied().collect();
        if self.shard == 0 {
            groups.push(META_GROUP);
        }
        for g in groups {
            if let Some(st) = self.raft.group_status(g) {
                let p = self.partition(g);
                stats.push(crate::shared::PartitionStats {
                    group: g,
                    term: st.term,
                    commit: st.commit,
                    applied: st.applied,
                    last_index: st.last_index,
                    leader: st.leader,
                    high_watermark: p.as_ref().map_or(-1, |p| p.high_watermark()),
                    log_start_offset: p.as_ref().map_or(-1, |p| p.log_start_offset()),
                });
            }
        }
        self.shared.publish_stats(self.shard, stats);
    }

    // ---- producer ids ---------------------------------------------------------------------

    async fn allocate_pid_block_local(self: &Rc<Self>) -> Result<i64, MetaError> {
        self.propose_meta_local_pid(MetaCommand::AllocateProducerIds)
            .await
    }

    /// Hands out a fresh producer id.
    pub async fn next_producer_id(self: &Rc<Self>) -> Result<i64, MetaError> {
        // Each iteration returns, or refills the block (which holds PRODUCER_ID_BLOCK ids for
        // the waiters behind it), or finds it refilled by the holder of the permit before.
        loop {
            let (next, end) = self.pid_block.get();
            if next < end {
                self.pid_block.set((next + 1, end));
                return Ok(next);
            }
            let _refill = self
                .pid_refill
                .acquire_permit(1)
                .await
                .map_err(|_| MetaError::NotInitialised)?;
            let (next, end) = self.pid_block.get();
            if next < end {
                continue;
            }
            let high = match self.call(0, Call::AllocateProducerIds).await {
                Some(Reply::ProducerIds(r)) => r?,
                _ => return Err(MetaError::NotInitialised),
            };
            self.pid_block
                .set((high - chronik_core::meta::PRODUCER_ID_BLOCK, high));
        }
    }
}

impl Applier for Broker {
    fn apply(&self, group: u64, entries: &[Entry]) {
        if group == META_GROUP {
            self.apply_meta(entries);
            return;
        }
        if let Some(p) = self.partition(group) {
            p.apply(entries);
        }
        self.coordinators.apply(group, entries, || self.meta());
        self.txn_coordinators.apply(group, entries);
    }

    fn storage_failed(&self, error: &chronik_raft::RaftError) {
        tracing::error!(
            shard = self.shard,
            "WAL failed ({error}); this shard now answers KAFKA_STORAGE_ERROR to writes"
        );
        self.shared.mark_storage_failed(self.shard);
        for p in self.local_partitions() {
            p.fail_waiters(ResponseError::KafkaStorageError.code());
        }
        for (_, tx) in std::mem::take(&mut *self.meta_waiters.borrow_mut()) {
            let _ = tx.send(Err(MetaError::NotInitialised));
        }
    }

    fn role_changed(&self, group: u64, term: u64, leader: bool) {
        tracing::debug!(group, term, leader, "raft role changed");
        self.shared
            .set_leader_epoch(group, leader.then_some(term.min(i32::MAX as u64) as i32));
        if leader {
            self.metrics.leader_elections.increment(1);
        }
        if let Some(p) = self.partition(group) {
            p.role_changed(term, leader);
        }
        self.txn_coordinators.role_changed(group);
    }
}

/// Decrements the in-flight count on drop.
pub struct InflightGuard(Rc<Broker>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.set(self.0.inflight.get().saturating_sub(1));
    }
}
