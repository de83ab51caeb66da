//! A partition on its owning shard.
//!
//! Produce: validate each v2 batch, check idempotence, assign offsets, patch the batch in place
//! (base offset, leader epoch, LogAppendTime), propose it to the partition's Raft group, and wait
//! until the entry is committed (acks=all, and acks=1: a leader's append is durable only with the
//! same flush that commits a single-voter group). Fetch: serve stored batch bytes below the high
//! watermark (read_uncommitted) or the last stable offset (read_committed). Transactions: the
//! `txn` index tracks open transactions and aborted ones from transactional data batches and
//! the markers [`Partition::write_marker`] appends. Invariants: `log_start_offset <=
//! last_stable_offset <= high_watermark <= next_offset`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use chronik_core::producer_state::{Check as SequenceCheck, ProducerStateTable};
use chronik_core::topic_config;
use chronik_core::txn::index::TxnIndex;
use chronik_protocol::batch;
use chronik_raft::raft::eraftpb::Entry;
use chronik_raft::MultiRaft;
use chronik_storage::Wal;
use futures::channel::oneshot;
use kafka_protocol::ResponseError;

use crate::calls::{
    FetchOutcome, OffsetLookup, PartitionOffsets, PartitionReport, ProduceOutcome, ProducerReport,
};

/// Bound on produce waiters parked on one partition; beyond it produce answers with a retriable
/// error so a stalled log cannot exhaust memory.
pub const MAX_WAITERS_PER_PARTITION: usize = 100_000;
/// Entries read back at start-up to rebuild idempotent-producer state.
pub const PRODUCER_REBUILD_ENTRIES_MAX: u64 = 20_000;
/// Bound on fetch watchers parked on one partition.
pub const MAX_WATCHERS_PER_PARTITION: usize = 10_000;

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// Topic settings resolved for this partition.
#[derive(Clone, Debug)]
pub struct Settings {
    pub max_message_bytes: usize,
    pub log_append_time: bool,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    /// `cleanup.policy` and the compaction settings (see `compaction.rs`).
    pub compaction: crate::compaction::CompactionSettings,
}

impl Settings {
    pub fn resolve(
        overrides: &BTreeMap<String, String>,
        defaults: &BTreeMap<String, String>,
    ) -> Self {
        Self {
            max_message_bytes: topic_config::effective_i64("max.message.bytes", overrides, defaults)
                .max(0) as usize,
            log_append_time: topic_config::effective("message.timestamp.type", overrides, defaults)
                == Some("LogAppendTime"),
            retention_ms: topic_config::effective_i64("retention.ms", overrides, defaults),
            retention_bytes: topic_config::effective_i64("retention.bytes", overrides, defaults),
            compaction: crate::compaction::CompactionSettings::resolve(overrides, defaults),
        }
    }
}

/// Where the partition's active (never compacted) segment starts, and how big and how old it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveSegment {
    /// Offset of its first batch.
    pub base_offset: i64,
    pub bytes: u64,
    /// Max timestamp of its first batch (Kafka rolls by record time when it has one).
    pub first_timestamp: i64,
    /// Wall-clock time it was started (for batches without timestamps).
    pub created_ms: i64,
}

impl ActiveSegment {
    /// Kafka's `LogSegment.shouldRoll`, for a batch of `bytes` with max timestamp `timestamp`
    /// arriving at wall-clock `now_ms`: the segment would exceed `segment.bytes`, or it has
    /// waited `segment.ms` (by record timestamps when its first batch has one, as Kafka's
    /// `timeWaitedForRoll`, else by wall clock).
    pub fn should_roll(
        &self,
        bytes: u64,
        timestamp: i64,
        now_ms: i64,
        segment_bytes: i64,
        segment_ms: i64,
    ) -> bool {
        let waited = if self.first_timestamp >= 0 {
            timestamp.saturating_sub(self.first_timestamp)
        } else {
            now_ms.saturating_sub(self.created_ms)
        };
        self.bytes > 0
            && (self.bytes.saturating_add(bytes) > segment_bytes.max(0) as u64
                || waited > segment_ms)
    }
}

pub struct Partition {
    pub group: u64,
    pub topic: String,
    pub index: i32,
    raft: Rc<MultiRaft>,
    wal: Rc<Wal>,
    next_offset: Cell<i64>,
    high_watermark: Cell<i64>,
    /// Kafka's active segment of this partition, for compaction (`compaction.rs`): the records
    /// since the last roll by `segment.bytes` / `segment.ms`, which the cleaner leaves alone.
    /// `None` until the first batch applied since start (a restart rolls the segment).
    active_segment: Cell<Option<ActiveSegment>>,
    log_start_offset: Cell<i64>,
    leader_epoch: Cell<i32>,
    leader: Cell<bool>,
    applied_index: Cell<u64>,
    waiters: RefCell<BTreeMap<u64, Vec<oneshot::Sender<i16>>>>,
    waiter_count: Cell<usize>,
    watchers: RefCell<Vec<oneshot::Sender<()>>>,
    producers: RefCell<ProducerStateTable>,
    /// Open and aborted transactions of this partition (KIP-98).
    txn: RefCell<TxnIndex>,
    pub settings: RefCell<Settings>,
}

impl Partition {
    /// Opens the partition's state from the WAL (its Raft group must already be open).
    pub fn open(
        group: u64,
        topic: String,
        index: i32,
        raft: Rc<MultiRaft>,
        settings: Settings,
    ) -> Rc<Self> {
        let wal = raft.wal().clone();
        let st = wal.group_state(group);
        let (log_start, next, commit, first) = st
            .as_ref()
            .map(|s| {
                (
                    s.log_start_offset,
                    s.next_offset,
                    s.hard_state.commit,
                    s.first_index,
                )
            })
            .unwrap_or((0, 0, 0, 1));
        let p = Rc::new(Self {
            group,
            topic,
            index,
            raft,
            wal: wal.clone(),
            next_offset: Cell::new(next),
            high_watermark: Cell::new(log_start),
            active_segment: Cell::new(None),
            log_start_offset: Cell::new(log_start),
            leader_epoch: Cell::new(0),
            leader: Cell::new(false),
            applied_index: Cell::new(commit),
            waiters: RefCell::new(BTreeMap::new()),
            waiter_count: Cell::new(0),
            watchers: RefCell::new(Vec::new()),
            producers: RefCell::new(ProducerStateTable::default()),
            txn: RefCell::new(TxnIndex::new()),
            settings: RefCell::new(settings),
        });
        // The high watermark is the end of the last batch at or below the persisted commit index;
        // anything after it is re-committed (and applied) once the group has a leader again.
        let mut hw = log_start;
        let mut hi = commit + 1;
        const WINDOW: u64 = 256;
        while hi > first {
            let lo = hi.saturating_sub(WINDOW).max(first);
            let metas = wal.entry_metas(group, lo, hi);
            if let Some(k) = metas.iter().rev().find_map(|m| m.kafka) {
                hw = hw.max(k.last_offset + 1);
                break;
            }
            hi = lo;
        }
        p.high_watermark.set(hw);
        p.rebuild_producer_state(first);
        p
    }

    /// Replays batch headers to rebuild idempotent-producer state (last five batches per id)
    /// and the transaction index. Only the newest [`PRODUCER_REBUILD_ENTRIES_MAX`] entries are
    /// read, so start-up does not scan a whole partition; a producer idle for longer is treated
    /// as new (Kafka 2.5+ accepts an unknown producer at any sequence), and a transaction
    /// aborted before that window is forgotten (read_committed would show its records).
    fn rebuild_producer_state(&self, first: u64) {
        let Some(st) = self.wal.group_state(self.group) else {
            return;
        };
        let first = first.max((st.last_index + 1).saturating_sub(PRODUCER_REBUILD_ENTRIES_MAX));
        let metas = self.wal.entry_metas(self.group, first, st.last_index + 1);
        let mut table = self.producers.borrow_mut();
        let mut txn = self.txn.borrow_mut();
        for m in metas.iter().filter(|m| m.kafka.is_some()) {
            let Ok(read) = self
                .wal
                .read_entries(self.group, m.index, m.index + 1, u64::MAX)
            else {
                continue;
            };
            for (_, payload) in read {
                if let Ok(h) = batch::header(&payload) {
                    let i = h.info();
                    let base = h.base_offset.get();
                    if i.control {
                        if let Some(commit) = batch::control_marker(&payload) {
                            txn.on_marker(i.producer_id, commit, base);
                            table.fence_epoch(i.producer_id, i.producer_epoch);
                        }
                        continue;
                    }
                    if i.transactional && i.producer_id >= 0 {
                        txn.on_data(i.producer_id, base);
                    }
                    if i.producer_id >= 0 {
                        let base = h.base_offset.get();
                        table.record(
                            i.producer_id,
                            i.producer_epoch,
                            i.base_sequence,
                            i.base_sequence.wrapping_add(i.last_offset_delta),
                            base,
                            base + i.last_offset_delta as i64,
                            i.max_timestamp,
                        );
                    }
                }
            }
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.get()
    }

    /// Adds an applied batch to the active segment, rolling it first if Kafka would.
    fn track_segment(&self, batch_head: &[u8], base_offset: i64, max_timestamp: i64) {
        let bytes = batch::header(batch_head).map_or(0, |h| {
            h.batch_length.get().max(0) as u64 + batch::LOG_OVERHEAD as u64
        });
        let (segment_bytes, segment_ms) = {
            let s = self.settings.borrow();
            (s.compaction.segment_bytes, s.compaction.segment_ms)
        };
        let now = now_ms();
        let seg = match self.active_segment.get() {
            Some(a) if !a.should_roll(bytes, max_timestamp, now, segment_bytes, segment_ms) => a,
            _ => ActiveSegment {
                base_offset,
                bytes: 0,
                first_timestamp: max_timestamp,
                created_ms: now,
            },
        };
        self.active_segment.set(Some(ActiveSegment {
            bytes: seg.bytes + bytes,
            ..seg
        }));
    }

    /// The active segment (see the field), if a batch was applied since start.
    pub fn active_segment(&self) -> Option<ActiveSegment> {
        self.active_segment.get()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.get()
    }

    /// The last stable offset: below it every transaction is decided.
    pub fn last_stable_offset(&self) -> i64 {
        self.txn
            .borrow()
            .last_stable_offset(self.high_watermark.get())
    }

    /// Where a reader with `isolation` (1 = read_committed) must stop.
    fn visible_end(&self, isolation: i8) -> i64 {
        if isolation == 1 {
            self.last_stable_offset()
        } else {
            self.high_watermark.get()
        }
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.get()
    }

    pub fn is_leader(&self) -> bool {
        self.leader.get()
    }

    pub fn offsets(&self) -> PartitionOffsets {
        PartitionOffsets {
            error: if self.leader.get() {
                0
            } else {
                code(ResponseError::NotLeaderOrFollower)
            },
            log_start_offset: self.log_start_offset.get(),
            high_watermark: self.high_watermark.get(),
            leader_epoch: self.leader_epoch.get(),
        }
    }

    /// The partition's size in the WAL and, if asked, its idempotent producers. Producer state
    /// is the leader's to answer for (Kafka answers NOT_LEADER_OR_FOLLOWER elsewhere).
    pub fn report(&self, producers: bool) -> PartitionReport {
        let size_bytes = self.wal.group_state(self.group).map_or(0, |s| s.size_bytes);
        let mut r = PartitionReport {
            error: 0,
            size_bytes,
            producers: Vec::new(),
        };
        if producers {
            if !self.leader.get() {
                r.error = code(ResponseError::NotLeaderOrFollower);
                return r;
            }
            let table = self.producers.borrow();
            let txn = self.txn.borrow();
            r.producers = table
                .producer_ids()
                .map(|id| {
                    let last = table.batches(id).last().copied();
                    ProducerReport {
                        producer_id: id,
                        epoch: table.epoch(id).unwrap_or(-1),
                        last_sequence: last.map_or(-1, |b| b.last_seq),
                        last_timestamp_ms: last.map_or(-1, |b| b.timestamp_ms),
                        current_txn_start_offset: txn.ongoing_first_offset(id).unwrap_or(-1),
                    }
                })
                .collect();
        }
        r
    }

    /// Raft told us this node leads (or stopped leading) the group.
    pub fn role_changed(&self, term: u64, leader: bool) {
        self.leader.set(leader);
        self.leader_epoch.set(term.min(i32::MAX as u64) as i32);
        if leader {
            if let Some(st) = self.wal.group_state(self.group) {
                self.next_offset
                    .set(st.next_offset.max(self.high_watermark.get()));
            }
        } else {
            // Waiters of entries that may be overwritten by the new leader learn it now.
            self.fail_waiters(code(ResponseError::NotLeaderOrFollower));
        }
    }

    /// Answers every parked produce with `error`.
    pub fn fail_waiters(&self, error: i16) {
        let mut w = self.waiters.borrow_mut();
        for (_, list) in std::mem::take(&mut *w) {
            for tx in list {
                let _ = tx.send(error);
            }
        }
        self.waiter_count.set(0);
    }

    /// Committed entries of this group, in order.
    pub fn apply(&self, entries: &[Entry]) {
        let mut hw = self.high_watermark.get();
        for e in entries {
            if e.data.is_empty() {
                continue;
            }
            if let Some(k) = chronik_raft::engine::kafka_meta(&e.data) {
                if k.last_offset + 1 > hw {
                    self.track_segment(&e.data, k.base_offset, k.max_timestamp);
                }
                hw = hw.max(k.last_offset + 1);
            }
        }
        let Some(last) = entries.last() else {
            return;
        };
        self.applied_index.set(last.index);
        // A follower that became leader after a crash may know of more offsets than it assigned.
        if self.next_offset.get() < hw {
            self.next_offset.set(hw);
        }
        {
            let mut w = self.waiters.borrow_mut();
            let rest = w.split_off(&(last.index + 1));
            let done = std::mem::replace(&mut *w, rest);
            for (_, list) in done {
                self.waiter_count
                    .set(self.waiter_count.get().saturating_sub(list.len()));
                for tx in list {
                    let _ = tx.send(0);
                }
            }
        }
        if hw != self.high_watermark.get() {
            self.high_watermark.set(hw);
            for tx in self.watchers.borrow_mut().drain(..) {
                let _ = tx.send(());
            }
        }
    }

    /// Appends a produce request's records (one or more v2 batches).
    pub async fn produce(&self, records: Bytes, acks: i16, timeout_ms: i32) -> ProduceOutcome {
        let mut out = ProduceOutcome {
            error: 0,
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: self.log_start_offset.get(),
            error_message: None,
        };
        if !self.leader.get() {
            out.error = code(ResponseError::NotLeaderOrFollower);
            return out;
        }
        if self.wal.is_failed() {
            out.error = code(ResponseError::KafkaStorageError);
            out.error_message = Some("the write-ahead log failed on this broker".into());
            return out;
        }
        if self.waiter_count.get() >= MAX_WAITERS_PER_PARTITION {
            out.error = code(ResponseError::RequestTimedOut);
            return out;
        }
        let mut ranges = Vec::new();
        if let Err(e) = batch::split_batches(&records, &mut ranges) {
            out.error = e.kafka_code();
            out.error_message = Some(e.to_string());
            return out;
        }
        if ranges.is_empty() {
            out.error = code(ResponseError::InvalidRecord);
            out.error_message = Some("produce request without record batches".into());
            return out;
        }
        let settings = self.settings.borrow().clone();
        let now_ms = now_ms();
        let mut last_index = None;
        for (i, &(lo, hi)) in ranges.iter().enumerate() {
            let bytes = &records[lo..hi];
            if bytes.len() > settings.max_message_bytes {
                out.error = code(ResponseError::MessageTooLarge);
                out.error_message = Some(format!(
                    "batch of {} bytes exceeds max.message.bytes {}",
                    bytes.len(),
                    settings.max_message_bytes
                ));
                return out;
            }
            let info = batch::header(bytes).expect("validated").info();
            if info.control {
                out.error = code(ResponseError::InvalidRecord);
                out.error_message = Some(batch::BatchError::Control.to_string());
                return out;
            }
            if info.transactional && info.producer_id < 0 {
                out.error = code(ResponseError::InvalidRecord);
                out.error_message = Some("transactional batch without a producer id".into());
                return out;
            }
            if info.transactional && !self.txn.borrow().can_track(info.producer_id) {
                out.error = code(ResponseError::ConcurrentTransactions);
                return out;
            }
            if settings.compaction.compact {
                if let Err(msg) = crate::compaction::check_keys(bytes) {
                    out.error = code(ResponseError::InvalidRecord);
                    out.error_message = Some(msg);
                    return out;
                }
            }
            let last_seq = info.base_sequence.wrapping_add(info.last_offset_delta);
            if info.producer_id >= 0 {
                match self.producers.borrow().check(
                    info.producer_id,
                    info.producer_epoch,
                    info.base_sequence,
                    last_seq,
                ) {
                    SequenceCheck::New => {}
                    SequenceCheck::Duplicate { base_offset, .. } => {
                        // A retry of a batch already in the log: acknowledge its original offset.
                        if i == 0 {
                            out.base_offset = base_offset;
                        }
                        continue;
                    }
                    SequenceCheck::OutOfOrder { expected_seq } => {
                        tracing::debug!(
                            group = self.group,
                            producer_id = info.producer_id,
                            epoch = info.producer_epoch,
                            base_seq = info.base_sequence,
                            last_seq,
                            expected_seq,
                            "produce: out of order sequence"
                        );
                        out.error = code(ResponseError::OutOfOrderSequenceNumber);
                        return out;
                    }
                    SequenceCheck::Fenced { .. } => {
                        out.error = code(ResponseError::InvalidProducerEpoch);
                        return out;
                    }
                }
            }
            let base = self.next_offset.get();
            let mut data = bytes.to_vec();
            let append_time = settings.log_append_time.then_some(now_ms);
            let epoch = self.leader_epoch.get();
            if let Err(e) = batch::patch_for_append(&mut data, base, epoch, append_time) {
                out.error = e.kafka_code();
                return out;
            }
            match self.raft.propose(self.group, data) {
                Ok(p) => last_index = Some(p.index),
                Err(chronik_raft::RaftError::NotLeader { .. }) => {
                    out.error = code(ResponseError::NotLeaderOrFollower);
                    return out;
                }
                Err(e) => {
                    tracing::error!(group = self.group, "propose failed: {e}");
                    out.error = code(ResponseError::KafkaStorageError);
                    return out;
                }
            }
            let last = base + info.last_offset_delta as i64;
            if info.transactional {
                // Checked by can_track above, on this same task with no await in between.
                let tracked = self.txn.borrow_mut().on_data(info.producer_id, base);
                debug_assert!(tracked);
            }
            if info.producer_id >= 0 {
                self.producers.borrow_mut().record(
                    info.producer_id,
                    info.producer_epoch,
                    info.base_sequence,
                    last_seq,
                    base,
                    last,
                    info.max_timestamp,
                );
            }
            self.next_offset.set(last + 1);
            if out.base_offset < 0 {
                out.base_offset = base;
            }
            if let Some(t) = append_time {
                out.log_append_time_ms = t;
            }
        }
        let Some(index) = last_index else {
            return out; // every batch was a duplicate
        };
        if acks == 0 {
            return out;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().entry(index).or_default().push(tx);
        self.waiter_count.set(self.waiter_count.get() + 1);
        let timeout = Duration::from_millis(timeout_ms.clamp(1, 300_000) as u64);
        match with_timeout(rx, timeout).await {
            Some(Ok(0)) => {}
            Some(Ok(err)) => out.error = err,
            Some(Err(_)) => out.error = code(ResponseError::KafkaStorageError),
            None => out.error = code(ResponseError::RequestTimedOut),
        }
        out.log_start_offset = self.log_start_offset.get();
        out
    }

    /// Appends a transaction marker (commit or abort control batch) of `producer_id` and waits
    /// until it is committed. Returns a Kafka error code (0 = written).
    pub async fn write_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        timeout_ms: i32,
    ) -> i16 {
        if self
            .producers
            .borrow()
            .epoch(producer_id)
            .is_some_and(|e| e > producer_epoch)
        {
            // A newer epoch already wrote here: this marker is from a fenced attempt.
            return code(ResponseError::InvalidProducerEpoch);
        }
        let data = batch::encode_control_batch(producer_id, producer_epoch, commit, 0, now_ms());
        self.append_internal(data, timeout_ms).await
    }

    /// Appends a batch the broker built itself (a transaction marker, or transactional offset
    /// commits on `__consumer_offsets`): no sequence check, the transaction index is updated,
    /// and the call waits until the batch is committed. Returns a Kafka error code.
    pub async fn append_internal(&self, mut data: Vec<u8>, timeout_ms: i32) -> i16 {
        if !self.leader.get() {
            return code(ResponseError::NotLeaderOrFollower);
        }
        if self.wal.is_failed() {
            return code(ResponseError::KafkaStorageError);
        }
        if self.waiter_count.get() >= MAX_WAITERS_PER_PARTITION {
            return code(ResponseError::RequestTimedOut);
        }
        let Ok(info) = batch::header(&data).map(|h| h.info()) else {
            return code(ResponseError::CorruptMessage);
        };
        let marker = batch::control_marker(&data);
        if info.transactional && marker.is_none() && !self.txn.borrow().can_track(info.producer_id)
        {
            return code(ResponseError::ConcurrentTransactions);
        }
        let base = self.next_offset.get();
        if let Err(e) = batch::patch_for_append(&mut data, base, self.leader_epoch.get(), None) {
            return e.kafka_code();
        }
        let index = match self.raft.propose(self.group, data) {
            Ok(p) => p.index,
            Err(chronik_raft::RaftError::NotLeader { .. }) => {
                return code(ResponseError::NotLeaderOrFollower)
            }
            Err(e) => {
                tracing::error!(group = self.group, "propose failed: {e}");
                return code(ResponseError::KafkaStorageError);
            }
        };
        self.next_offset
            .set(base + info.last_offset_delta as i64 + 1);
        match marker {
            Some(commit) => {
                self.txn
                    .borrow_mut()
                    .on_marker(info.producer_id, commit, base);
                self.producers
                    .borrow_mut()
                    .fence_epoch(info.producer_id, info.producer_epoch);
            }
            None if info.transactional => {
                self.txn.borrow_mut().on_data(info.producer_id, base);
            }
            None => {}
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().entry(index).or_default().push(tx);
        self.waiter_count.set(self.waiter_count.get() + 1);
        let timeout = Duration::from_millis(timeout_ms.clamp(1, 300_000) as u64);
        match with_timeout(rx, timeout).await {
            Some(Ok(err)) => err,
            Some(Err(_)) => code(ResponseError::KafkaStorageError),
            None => code(ResponseError::RequestTimedOut),
        }
    }

    /// Reads batches from `offset` below the high watermark (`isolation` 0) or the last
    /// stable offset (1, read_committed: with the aborted transactions the batches overlap).
    pub async fn fetch(&self, offset: i64, max_bytes: usize, isolation: i8) -> FetchOutcome {
        if let Some(out) = self.fetch_without_read(offset, isolation) {
            return out;
        }
        self.fetch_read(offset, max_bytes, isolation).await
    }

    /// The answer of [`Partition::fetch`] when it needs no read (out of range, or nothing past
    /// `offset` yet: most partitions of a consumer's fetch, most of the time), without a future.
    pub fn fetch_without_read(&self, offset: i64, isolation: i8) -> Option<FetchOutcome> {
        let hw = self.high_watermark.get();
        let ls = self.log_start_offset.get();
        let lso = self.last_stable_offset();
        let end = if isolation == 1 { lso } else { hw };
        if offset >= ls && offset <= hw && offset < end {
            return None;
        }
        Some(FetchOutcome {
            error: if offset < ls || offset > hw {
                code(ResponseError::OffsetOutOfRange)
            } else {
                0
            },
            high_watermark: hw,
            last_stable_offset: lso,
            log_start_offset: ls,
            batches: Vec::new(),
            bytes: 0,
            aborted: (isolation == 1 && offset >= ls && offset <= hw).then(Vec::new),
        })
    }

    async fn fetch_read(&self, offset: i64, max_bytes: usize, isolation: i8) -> FetchOutcome {
        let hw = self.high_watermark.get();
        let ls = self.log_start_offset.get();
        let lso = self.last_stable_offset();
        let mut out = FetchOutcome {
            error: 0,
            high_watermark: hw,
            last_stable_offset: lso,
            log_start_offset: ls,
            batches: Vec::new(),
            bytes: 0,
            aborted: None,
        };
        if offset < ls || offset > hw {
            out.error = code(ResponseError::OffsetOutOfRange);
            return out;
        }
        let end = if isolation == 1 { lso } else { hw };
        if isolation == 1 {
            out.aborted = Some(Vec::new());
        }
        if offset >= end {
            return out;
        }
        match self
            .wal
            .read_batches(self.group, offset, end, max_bytes.max(1))
            .await
        {
            Ok(batches) => {
                out.bytes = batches.iter().map(|b| b.len()).sum();
                if isolation == 1 {
                    // The aborted transactions that overlap what is returned.
                    let upto = batches
                        .last()
                        .and_then(|b| batch::header(b).ok())
                        .map_or(offset, |h| {
                            h.base_offset.get() + h.last_offset_delta.get() as i64 + 1
                        });
                    out.aborted = Some(
                        self.txn
                            .borrow()
                            .aborted_between(offset, upto)
                            .into_iter()
                            .map(|a| (a.producer_id, a.first_offset))
                            .collect(),
                    );
                }
                out.batches = batches;
            }
            Err(e) => {
                tracing::error!(group = self.group, offset, "fetch read failed: {e}");
                out.error = code(ResponseError::KafkaStorageError);
            }
        }
        out
    }

    /// A receiver that fires when the high watermark (or, for read_committed, the last stable
    /// offset) may have moved past `offset`; `None` if it already has.
    pub fn watch(&self, offset: i64, isolation: i8) -> Option<oneshot::Receiver<()>> {
        if self.visible_end(isolation) > offset {
            return None;
        }
        let mut w = self.watchers.borrow_mut();
        if w.len() >= MAX_WATCHERS_PER_PARTITION {
            w.retain(|tx| !tx.is_canceled());
        }
        let (tx, rx) = oneshot::channel();
        if w.len() < MAX_WATCHERS_PER_PARTITION {
            w.push(tx);
        }
        Some(rx)
    }

    /// ListOffsets for one timestamp (-1 latest, -2 earliest, -3 max timestamp, -4 earliest
    /// local, -5 latest tiered); latest is the
    /// last stable offset for read_committed (`isolation` 1).
    pub async fn list_offset(&self, timestamp: i64, isolation: i8) -> OffsetLookup {
        let mut out = OffsetLookup {
            error: 0,
            offset: -1,
            timestamp: -1,
            leader_epoch: self.leader_epoch.get(),
        };
        let hw = self.high_watermark.get();
        match timestamp {
            -1 => out.offset = self.visible_end(isolation),
            // -4 (earliest local, v8+): no tiered storage here, so the local log starts at the
            // log start offset.
            -2 | -4 => out.offset = self.log_start_offset.get(),
            // -5 (latest tiered, v9+): nothing is tiered; Kafka without remote storage answers
            // offset -1 with leader epoch -1.
            -5 => out.leader_epoch = -1,
            -3 => {
                // The record with the largest timestamp: the batch with the largest max timestamp.
                if let Some(st) = self.wal.group_state(self.group) {
                    let best = self
                        .wal
                        .entry_metas(self.group, st.first_index, st.last_index + 1)
                        .into_iter()
                        .filter_map(|m| m.kafka)
                        .filter(|k| k.last_offset < hw)
                        .max_by_key(|k| (k.max_timestamp, std::cmp::Reverse(k.base_offset)));
                    if let Some(k) = best {
                        out.offset = k.last_offset;
                        out.timestamp = k.max_timestamp;
                        if let Some(found) = self
                            .exact_record(k.base_offset, hw, |ts| ts == k.max_timestamp)
                            .await
                        {
                            out.offset = found.0;
                        }
                    }
                }
            }
            ts if ts >= 0 => {
                let Some(m) = self.wal.find_by_timestamp(self.group, ts) else {
                    return out; // no record at or after ts: offset -1
                };
                let Some(k) = m.kafka else { return out };
                if k.base_offset >= hw {
                    return out;
                }
                out.offset = k.base_offset.max(self.log_start_offset.get());
                out.timestamp = k.max_timestamp;
                if let Some((off, t)) = self.exact_record(k.base_offset, hw, |t| t >= ts).await {
                    out.offset = off.max(self.log_start_offset.get());
                    out.timestamp = t;
                }
            }
            _ => out.error = code(ResponseError::InvalidRequest),
        }
        out
    }

    /// Inside the batch at `base`, the first record whose timestamp satisfies `pred`
    /// (uncompressed batches only; for compressed ones the batch's base offset stands).
    async fn exact_record(
        &self,
        base: i64,
        hw: i64,
        pred: impl Fn(i64) -> bool,
    ) -> Option<(i64, i64)> {
        let batches = self.wal.read_batches(self.group, base, hw, 1).await.ok()?;
        let b = batches.first()?;
        batch::record_timestamps(b)?
            .into_iter()
            .find(|&(_, t)| pred(t))
    }

    /// DeleteRecords: moves the log start offset (durably) to `offset` (-1: the high watermark).
    pub async fn delete_records(&self, offset: i64) -> PartitionOffsets {
        let mut out = self.offsets();
        if !self.leader.get() {
            return out;
        }
        let hw = self.high_watermark.get();
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            out.error = code(ResponseError::OffsetOutOfRange);
            return out;
        }
        if target > self.log_start_offset.get() {
            if let Err(e) = self.wal.set_log_start_offset(self.group, target) {
                tracing::error!(group = self.group, "set_log_start_offset failed: {e}");
                out.error = code(ResponseError::KafkaStorageError);
                return out;
            }
            if let Err(e) = self.wal.flush().await {
                tracing::error!(group = self.group, "flush failed: {e}");
                out.error = code(ResponseError::KafkaStorageError);
                return out;
            }
            self.log_start_offset.set(target);
            self.txn.borrow_mut().truncate_before(target);
        }
        out.log_start_offset = self.log_start_offset.get();
        out
    }

    /// OffsetForLeaderEpoch: the end offset of `epoch` (first offset of the next higher epoch).
    pub fn epoch_end(&self, epoch: i32) -> (i16, i32, i64) {
        if !self.leader.get() {
            return (code(ResponseError::NotLeaderOrFollower), -1, -1);
        }
        let current = self.leader_epoch.get();
        if epoch >= current {
            return (0, current, self.next_offset.get());
        }
        let Some(st) = self.wal.group_state(self.group) else {
            return (0, current, self.next_offset.get());
        };
        let metas = self
            .wal
            .entry_metas(self.group, st.first_index, st.last_index + 1);
        let mut best_epoch = -1;
        for m in &metas {
            let Some(k) = m.kafka else { continue };
            let term = m.term.min(i32::MAX as u64) as i32;
            if term > epoch {
                if best_epoch < 0 {
                    // Older than every epoch in the log: Kafka's UNDEFINED epoch and offset.
                    return (0, -1, -1);
                }
                return (0, best_epoch, k.base_offset);
            }
            best_epoch = term;
        }
        (0, current, self.next_offset.get())
    }

    /// Retention: drop whole batches older than `retention.ms` or beyond `retention.bytes`.
    pub fn enforce_retention(&self, now_ms: i64) {
        let s = self.settings.borrow().clone();
        // `cleanup.policy=compact` alone keeps data forever (compaction bounds it instead).
        if !s.compaction.delete || (s.retention_ms < 0 && s.retention_bytes < 0) {
            return;
        }
        let Some(point) =
            self.wal
                .retention_point(self.group, s.retention_ms, s.retention_bytes, now_ms)
        else {
            return;
        };
        self.drop_prefix_before(point);
    }

    /// Log compaction emptied a prefix of the log (header-only batches): drop it and move the
    /// log start to the first batch that still holds records, so a compacted partition stops
    /// growing by one entry per superseded write.
    pub fn drop_compacted_prefix(&self) {
        if let Some(point) = self.wal.empty_prefix_end(self.group) {
            self.drop_prefix_before(point);
        }
    }

    /// Drops the log before Raft index `point` (applied entries only) and moves the log start
    /// offset to the first batch from there.
    fn drop_prefix_before(&self, point: u64) {
        // Never drop what is not applied yet.
        let point = point.min(self.applied_index.get() + 1);
        let Some(prev_term) = self.wal.term(self.group, point.saturating_sub(1)) else {
            return;
        };
        let new_start = self
            .wal
            .entry_metas(self.group, point, point + 64)
            .iter()
            .find_map(|m| m.kafka.map(|k| k.base_offset))
            .unwrap_or(self.high_watermark.get());
        if new_start <= self.log_start_offset.get() {
            return;
        }
        if let Err(e) = self
            .wal
            .compact_prefix(self.group, point, prev_term)
            .and_then(|_| self.wal.set_log_start_offset(self.group, new_start))
        {
            tracing::warn!(group = self.group, "retention failed: {e}");
            return;
        }
        self.log_start_offset.set(new_start);
        self.txn.borrow_mut().truncate_before(new_start);
    }

    /// Wakes everything parked on this partition (shutdown, deletion).
    pub fn close(&self) {
        self.role_changed(self.leader_epoch.get() as u64, false);
        self.watchers.borrow_mut().clear();
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Awaits `fut` for at most `timeout`.
pub async fn with_timeout<F: std::future::Future>(fut: F, timeout: Duration) -> Option<F::Output> {
    use futures::future::{select, Either};
    let sleep = glommio::timer::sleep(timeout);
    match select(Box::pin(fut), Box::pin(sleep)).await {
        Either::Left((v, _)) => Some(v),
        Either::Right(_) => None,
    }
}
