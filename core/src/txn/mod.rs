//! Transaction coordinator (KIP-98) as a pure state machine, one per `__transaction_state`
//! partition; the broker owns the log, the sockets and the markers.
//!
//! Module map:
//! - this file: [`TxnCoordinator`], its states and the transitions of InitProducerId,
//!   AddPartitionsToTxn / AddOffsetsToTxn, EndTxn and the transaction timeout.
//! - [`records`]: the `__transaction_state` key/value codec.
//! - [`index`]: the per-partition transaction index (open transactions, LSO, aborted list).
//! - `tests`: scenario tests and a seeded random-operation test against the invariants.
//!
//! # How the broker drives it (the same shape as `group`)
//! ```text
//!  request ─▶ init_producer_id / add_partitions / end_txn ─▶ Err(code): answer now
//!                                                          └▶ Ok(record): append it; the entry
//!      is `pending` (other requests for it get CONCURRENT_TRANSACTIONS) until the committed
//!      record comes back through apply(record) — or abandon(id) if the append failed.
//!  tick(now) ─▶ records of timed-out transactions (PrepareAbort with a bumped epoch)
//!  markers_due() ─▶ transactions in PrepareCommit/PrepareAbort: write a commit/abort control
//!      batch to each partition, then complete(id) ─▶ record (CompleteCommit/CompleteAbort)
//!  start / new leader ─▶ apply(record) for every record of the partition, in offset order;
//!      transactions found in a Prepare state get their markers (again) from markers_due().
//! ```
//! State changes take effect only through `apply`, so a replay after a crash and a running
//! coordinator go through the same code: memory never runs ahead of the log.

pub mod index;
pub mod records;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;

use crate::group::{LogRecord, RecordError, MAX_ID_BYTES};

/// The internal topic holding transaction metadata.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// Bound on partitions (offsets partitions included) one transaction may span.
pub const MAX_PARTITIONS_PER_TXN: usize = 100_000;
/// Bound on transactional ids one coordinator holds; beyond it new ids get
/// COORDINATOR_NOT_AVAILABLE.
pub const MAX_TXNS_PER_COORDINATOR: usize = 1_000_000;
/// Bound on transactions one ListTransactions answer lists per coordinator.
pub const LIST_MAX: usize = 100_000;
/// Bound on records one `tick` returns (timeouts first, then expirations); the rest wait for
/// the next tick.
pub const TICK_RECORDS_MAX: usize = 1_000;
/// Epochs stop below this; the next bump allocates a new producer id (Kafka: `Short.MaxValue - 1`
/// is the last usable epoch so that an abort can still bump once).
pub const MAX_PRODUCER_EPOCH: i16 = i16::MAX - 1;

/// Kafka's `TransactionState`, with its log ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i8)]
pub enum TxnState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
}

impl TxnState {
    pub fn from_i8(v: i8) -> Option<Self> {
        Some(match v {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            _ => return None,
        })
    }

    /// Parses Kafka's name (ListTransactions state filters).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            TxnState::Empty,
            TxnState::Ongoing,
            TxnState::PrepareCommit,
            TxnState::PrepareAbort,
            TxnState::CompleteCommit,
            TxnState::CompleteAbort,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// Kafka's names (DescribeTransactions, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    fn has_partitions(self) -> bool {
        matches!(
            self,
            TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
        )
    }
}

/// One transactional id's metadata, as stored in its `__transaction_state` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMeta {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The id and epoch handed out before the current ones (-1: none), so that a producer
    /// retrying InitProducerId after a lost response gets the same answer (KIP-360).
    pub last_producer_id: i64,
    pub producer_epoch: i16,
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// Invariant: non-empty exactly in Ongoing, PrepareCommit and PrepareAbort.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the current or last transaction began (first partition added). Kafka keeps it
    /// through CompleteCommit/CompleteAbort (DescribeTransactions reports it) and clears it
    /// only when InitProducerId starts afresh.
    /// Invariant: >= 0 in Ongoing, PrepareCommit and PrepareAbort; -1 in Empty.
    pub start_ms: i64,
    pub last_update_ms: i64,
}

impl TxnMeta {
    pub fn new(transactional_id: String, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMeta {
            transactional_id,
            producer_id,
            last_producer_id: -1,
            producer_epoch: 0,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
        }
    }
}

/// Coordinator settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: an id with no transaction open and no request for
    /// this long is forgotten (a tombstone is written).
    pub id_expiration_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
        }
    }
}

/// What InitProducerId decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// Answer with this error.
    Error(ResponseError),
    /// A fresh producer id is needed: allocate one and call again with it.
    NeedProducerId,
    /// Append `record`; once it is committed answer with (producer id, epoch).
    Persist {
        record: LogRecord,
        producer_id: i64,
        producer_epoch: i16,
    },
    /// The same producer retried after a lost response: answer with these at once.
    Retry {
        producer_id: i64,
        producer_epoch: i16,
    },
    /// An ongoing transaction of an older epoch is being fenced and aborted: append `record`
    /// (PrepareAbort), let the markers be written, and answer CONCURRENT_TRANSACTIONS so the
    /// client retries.
    AbortFirst { record: LogRecord },
}

/// A transaction whose markers must be written: every partition gets a control batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: Vec<(String, i32)>,
}

#[derive(Debug, Clone)]
struct Entry {
    meta: TxnMeta,
    /// A record for this id is being appended; no other transition may start.
    pending: bool,
    /// False for a new id whose first record is still being appended (`meta` is then what it
    /// will become, not what the log holds).
    in_log: bool,
}

/// The transaction coordinator of one `__transaction_state` partition.
#[derive(Debug)]
pub struct TxnCoordinator {
    partition: i32,
    cfg: TxnConfig,
    /// BTreeMap so ticks and marker jobs come in a deterministic order.
    txns: BTreeMap<String, Entry>,
    /// Timer indexes over the committed metadata (`in_log` entries), kept by `apply` — the only
    /// place committed state changes — so `tick` and `markers_due` cost O(due), not O(ids).
    /// Invariant: exactly what `check_invariants` rebuilds from `txns`.
    /// (timeout deadline, id) of Ongoing transactions.
    deadlines: BTreeSet<(i64, String)>,
    /// Ids in PrepareCommit/PrepareAbort.
    prepared: BTreeSet<String>,
    /// (last update, id) of ids with no transaction open (expiry candidates).
    idle: BTreeSet<(i64, String)>,
}

/// Which timer index a committed metadata belongs in.
enum Slot {
    Deadline(i64),
    Prepared,
    Idle(i64),
}

fn slot_of(m: &TxnMeta) -> Slot {
    match m.state {
        TxnState::Ongoing => Slot::Deadline(m.start_ms.saturating_add(i64::from(m.timeout_ms))),
        TxnState::PrepareCommit | TxnState::PrepareAbort => Slot::Prepared,
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            Slot::Idle(m.last_update_ms)
        }
    }
}

/// Which API is asking: PRODUCER_FENCED (KIP-588) is only understood from these versions on;
/// older clients get INVALID_PRODUCER_EPOCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    InitProducerId,
    AddPartitionsToTxn,
    AddOffsetsToTxn,
    EndTxn,
    TxnOffsetCommit,
}

/// Kafka's rule for old clients: PRODUCER_FENCED becomes INVALID_PRODUCER_EPOCH below the
/// version that introduced it.
pub fn fenced_error(api: Api, version: i16) -> ResponseError {
    let first = match api {
        Api::InitProducerId => 4,
        Api::AddPartitionsToTxn | Api::AddOffsetsToTxn | Api::EndTxn => 2,
        Api::TxnOffsetCommit => 3,
    };
    if version >= first {
        ResponseError::ProducerFenced
    } else {
        ResponseError::InvalidProducerEpoch
    }
}

impl TxnCoordinator {
    pub fn new(partition: i32, cfg: TxnConfig) -> Self {
        TxnCoordinator {
            partition,
            cfg,
            txns: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            prepared: BTreeSet::new(),
            idle: BTreeSet::new(),
        }
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The metadata of a transactional id, as last committed.
    pub fn get(&self, transactional_id: &str) -> Option<&TxnMeta> {
        self.txns.get(transactional_id).map(|e| &e.meta)
    }

    /// ListTransactions: (id, producer id, state) of the transactions matching every given
    /// filter (an empty filter matches all; `min_duration_ms >= 0` keeps only transactions
    /// open at least that long: a completed one keeps its start time but is not running),
    /// in id order, at most [`LIST_MAX`].
    pub fn list(
        &self,
        states: &[TxnState],
        producer_ids: &[i64],
        min_duration_ms: i64,
        now_ms: i64,
    ) -> Vec<(String, i64, TxnState)> {
        self.txns
            .values()
            .filter(|e| e.in_log)
            .map(|e| &e.meta)
            .filter(|m| states.is_empty() || states.contains(&m.state))
            .filter(|m| producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
            .filter(|m| {
                min_duration_ms < 0
                    || (m.state.has_partitions()
                        && now_ms.saturating_sub(m.start_ms) >= min_duration_ms)
            })
            .take(LIST_MAX)
            .map(|m| (m.transactional_id.clone(), m.producer_id, m.state))
            .collect()
    }

    /// A brand-new id whose first record is still being appended (not yet in the log).
    pub fn is_new(&self, transactional_id: &str) -> bool {
        self.txns.get(transactional_id).is_some_and(|e| !e.in_log)
    }

    pub fn is_pending(&self, transactional_id: &str) -> bool {
        self.txns.get(transactional_id).is_some_and(|e| e.pending)
    }

    pub fn len(&self) -> usize {
        self.txns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    /// Marks `next` as being appended and returns its record.
    fn persist(&mut self, next: TxnMeta) -> LogRecord {
        let rec = records::record(&next);
        match self.txns.get_mut(&next.transactional_id) {
            Some(e) => e.pending = true,
            None => {
                // A brand-new id: remember it as pending with what it will become, so a second
                // InitProducerId racing this one waits instead of allocating another id.
                self.txns.insert(
                    next.transactional_id.clone(),
                    Entry {
                        meta: next,
                        pending: true,
                        in_log: false,
                    },
                );
            }
        }
        rec
    }

    /// InitProducerId with a transactional id (v0–v4). `expected` is the (producer id, epoch)
    /// the client already holds (KIP-360, v3+; `(-1, -1)` otherwise). `fresh_producer_id` is
    /// supplied on the second call after [`InitOutcome::NeedProducerId`].
    pub fn init_producer_id(
        &mut self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: (i64, i16),
        version: i16,
        fresh_producer_id: Option<i64>,
        now_ms: i64,
    ) -> InitOutcome {
        if transactional_id.is_empty() || transactional_id.len() > MAX_ID_BYTES {
            return InitOutcome::Error(ResponseError::InvalidRequest);
        }
        if timeout_ms <= 0 || timeout_ms > self.cfg.max_timeout_ms {
            return InitOutcome::Error(ResponseError::InvalidTransactionTimeout);
        }
        let Some(e) = self.txns.get(transactional_id) else {
            if expected.0 >= 0 {
                // The client believes it holds an id this coordinator never gave out.
                return InitOutcome::Error(ResponseError::InvalidProducerIdMapping);
            }
            if self.txns.len() >= MAX_TXNS_PER_COORDINATOR {
                return InitOutcome::Error(ResponseError::CoordinatorNotAvailable);
            }
            let Some(pid) = fresh_producer_id else {
                return InitOutcome::NeedProducerId;
            };
            let next = TxnMeta::new(transactional_id.to_owned(), pid, timeout_ms, now_ms);
            return InitOutcome::Persist {
                record: self.persist(next),
                producer_id: pid,
                producer_epoch: 0,
            };
        };
        if e.pending {
            return InitOutcome::Error(ResponseError::ConcurrentTransactions);
        }
        let m = &e.meta;
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                InitOutcome::Error(ResponseError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                // Fence the old producer: bump the epoch and abort with it (markers carry the
                // new epoch, so the partitions reject the old one from now on).
                let mut next = m.clone();
                if next.producer_epoch < MAX_PRODUCER_EPOCH {
                    next.last_producer_epoch = next.producer_epoch;
                    next.producer_epoch += 1;
                }
                next.state = TxnState::PrepareAbort;
                next.last_update_ms = now_ms;
                InitOutcome::AbortFirst {
                    record: self.persist(next),
                }
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                if expected.0 >= 0 {
                    let current = (m.producer_id, m.producer_epoch);
                    let retried = (m.last_producer_id >= 0
                        && expected == (m.last_producer_id, MAX_PRODUCER_EPOCH))
                        || (expected.0 == m.producer_id && expected.1 == m.last_producer_epoch);
                    if retried && expected != current {
                        // The answer to that request was lost; give the same one again.
                        return InitOutcome::Retry {
                            producer_id: m.producer_id,
                            producer_epoch: m.producer_epoch,
                        };
                    }
                    if expected != current {
                        return InitOutcome::Error(fenced_error(Api::InitProducerId, version));
                    }
                }
                let mut next = m.clone();
                if m.producer_epoch >= MAX_PRODUCER_EPOCH {
                    let Some(pid) = fresh_producer_id else {
                        return InitOutcome::NeedProducerId;
                    };
                    next.last_producer_id = m.producer_id;
                    next.producer_id = pid;
                    next.last_producer_epoch = m.producer_epoch;
                    next.producer_epoch = 0;
                } else {
                    next.last_producer_id = -1;
                    next.last_producer_epoch = m.producer_epoch;
                    next.producer_epoch = m.producer_epoch + 1;
                }
                next.timeout_ms = timeout_ms;
                next.state = TxnState::Empty;
                next.partitions.clear();
                next.start_ms = -1;
                next.last_update_ms = now_ms;
                let (producer_id, producer_epoch) = (next.producer_id, next.producer_epoch);
                InitOutcome::Persist {
                    record: self.persist(next),
                    producer_id,
                    producer_epoch,
                }
            }
        }
    }

    /// The checks every transactional request after InitProducerId shares.
    fn validate(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        api: Api,
        version: i16,
    ) -> Result<&TxnMeta, ResponseError> {
        let Some(e) = self.txns.get(transactional_id) else {
            return Err(ResponseError::InvalidProducerIdMapping);
        };
        if e.pending {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if e.meta.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if e.meta.producer_epoch != producer_epoch {
            return Err(fenced_error(api, version));
        }
        Ok(&e.meta)
    }

    /// AddPartitionsToTxn (v0–v3) and AddOffsetsToTxn (the group's offsets partition).
    /// `Ok(None)`: every partition is already in the transaction; nothing to append.
    #[allow(clippy::too_many_arguments)]
    pub fn add_partitions(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
        api: Api,
        version: i16,
        now_ms: i64,
    ) -> Result<Option<LogRecord>, ResponseError> {
        let m = self.validate(transactional_id, producer_id, producer_epoch, api, version)?;
        if matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if partitions.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        if m.state == TxnState::Ongoing && partitions.iter().all(|p| m.partitions.contains(p)) {
            return Ok(None);
        }
        let mut next = m.clone();
        if next.state != TxnState::Ongoing {
            next.partitions.clear();
            next.start_ms = now_ms;
        }
        next.partitions.extend(partitions.iter().cloned());
        if next.partitions.len() > MAX_PARTITIONS_PER_TXN {
            return Err(ResponseError::InvalidRequest);
        }
        next.state = TxnState::Ongoing;
        next.last_update_ms = now_ms;
        Ok(Some(self.persist(next)))
    }

    /// Produce of transactional batches (KIP-890 part 1, done at the coordinator since the
    /// partitions are on this node): the producer must hold the current epoch and every
    /// partition must already be in its ongoing transaction. Otherwise a late or stray batch
    /// would open a transaction in the partition that no marker ever ends (a hanging
    /// transaction pins the LSO). State being appended does not matter: a producer sends data
    /// only after AddPartitionsToTxn answered, so the committed metadata is what it saw.
    pub fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), ResponseError> {
        let Some(e) = self.txns.get(transactional_id).filter(|e| e.in_log) else {
            return Err(ResponseError::InvalidProducerIdMapping);
        };
        let m = &e.meta;
        if m.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if m.producer_epoch != producer_epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        if m.state != TxnState::Ongoing || !partitions.iter().all(|p| m.partitions.contains(p)) {
            return Err(ResponseError::InvalidTxnState);
        }
        Ok(())
    }

    /// EndTxn (v0–v3). `Ok(None)`: a retry of an end that already completed; answer success.
    /// `Ok(Some(record))`: append the PrepareCommit/PrepareAbort record; once it is committed the
    /// transaction appears in [`Self::markers_due`].
    pub fn end_txn(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        version: i16,
        now_ms: i64,
    ) -> Result<Option<LogRecord>, ResponseError> {
        let m = self.validate(
            transactional_id,
            producer_id,
            producer_epoch,
            Api::EndTxn,
            version,
        )?;
        match (m.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut next = m.clone();
                next.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                next.last_update_ms = now_ms;
                Ok(Some(self.persist(next)))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(None),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(ResponseError::ConcurrentTransactions)
            }
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// Transactions whose markers are due (Prepare states, not being appended), in id order.
    pub fn markers_due(&self) -> Vec<MarkerJob> {
        self.prepared
            .iter()
            .filter_map(|id| self.txns.get(id))
            .filter(|e| !e.pending)
            .map(|e| MarkerJob {
                transactional_id: e.meta.transactional_id.clone(),
                producer_id: e.meta.producer_id,
                producer_epoch: e.meta.producer_epoch,
                commit: e.meta.state == TxnState::PrepareCommit,
                partitions: e.meta.partitions.iter().cloned().collect(),
            })
            .collect()
    }

    /// Every marker of `transactional_id`'s prepared transaction is written: the record moving
    /// it to CompleteCommit/CompleteAbort. `None` if it is not in a Prepare state (any more).
    pub fn complete(&mut self, transactional_id: &str, now_ms: i64) -> Option<LogRecord> {
        let e = self.txns.get(transactional_id)?;
        if e.pending {
            return None;
        }
        let mut next = e.meta.clone();
        next.state = match next.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return None,
        };
        // start_ms stays: Kafka's completed transaction still reports when it began.
        next.partitions.clear();
        next.last_update_ms = now_ms;
        Some(self.persist(next))
    }

    /// Timers, at most [`TICK_RECORDS_MAX`] records per call: ongoing transactions past their
    /// timeout get the record that fences and aborts them (PrepareAbort with a bumped epoch, as
    /// Kafka does, so the late producer is fenced); ids idle past `id_expiration_ms` with no
    /// transaction open get a tombstone. Either record is appended like any other.
    pub fn tick(&mut self, now_ms: i64) -> Vec<LogRecord> {
        let timed_out: Vec<TxnMeta> = self
            .deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now_ms)
            .filter_map(|(_, id)| self.txns.get(id))
            .filter(|e| !e.pending)
            .take(TICK_RECORDS_MAX)
            .map(|e| e.meta.clone())
            .collect();
        let mut out: Vec<LogRecord> = timed_out
            .into_iter()
            .map(|mut next| {
                if next.producer_epoch < MAX_PRODUCER_EPOCH {
                    next.last_producer_epoch = next.producer_epoch;
                    next.producer_epoch += 1;
                }
                next.state = TxnState::PrepareAbort;
                next.last_update_ms = now_ms;
                self.persist(next)
            })
            .collect();
        let expiry = self.cfg.id_expiration_ms;
        let idle: Vec<String> = self
            .idle
            .iter()
            .take_while(|(updated, _)| updated.saturating_add(expiry) <= now_ms)
            .filter(|(_, id)| self.txns.get(id).is_some_and(|e| !e.pending))
            .take(TICK_RECORDS_MAX - out.len())
            .map(|(_, id)| id.clone())
            .collect();
        for id in idle {
            if let Some(e) = self.txns.get_mut(&id) {
                e.pending = true;
            }
            out.push(LogRecord {
                key: records::key(&id),
                value: None,
            });
        }
        out
    }

    /// The append of a record for `transactional_id` failed: its transition did not happen.
    pub fn abandon(&mut self, transactional_id: &str) {
        let Some(e) = self.txns.get_mut(transactional_id) else {
            return;
        };
        e.pending = false;
        // A new id that never reached the log is forgotten again.
        if !e.in_log {
            self.txns.remove(transactional_id);
        }
    }

    /// Applies one committed record (replay at start, and each record this coordinator emitted
    /// once it is committed).
    pub fn apply(&mut self, rec: &LogRecord) -> Result<(), RecordError> {
        let (id, meta) = records::decode(rec)?;
        if let Some(old) = self.txns.get(&id).filter(|e| e.in_log) {
            let slot = slot_of(&old.meta);
            self.unindex(&id, slot);
        }
        match meta {
            Some(meta) => {
                let slot = slot_of(&meta);
                self.index(&id, slot);
                self.txns.insert(
                    id,
                    Entry {
                        meta,
                        pending: false,
                        in_log: true,
                    },
                );
            }
            None => {
                self.txns.remove(&id);
            }
        }
        Ok(())
    }

    fn index(&mut self, id: &str, slot: Slot) {
        match slot {
            Slot::Deadline(d) => self.deadlines.insert((d, id.to_owned())),
            Slot::Prepared => self.prepared.insert(id.to_owned()),
            Slot::Idle(t) => self.idle.insert((t, id.to_owned())),
        };
    }

    fn unindex(&mut self, id: &str, slot: Slot) {
        match slot {
            Slot::Deadline(d) => self.deadlines.remove(&(d, id.to_owned())),
            Slot::Prepared => self.prepared.remove(id),
            Slot::Idle(t) => self.idle.remove(&(t, id.to_owned())),
        };
    }

    /// Ends every pending mark (the partition lost leadership: appends in flight are moot).
    pub fn clear_pending(&mut self) {
        let ids: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, e)| e.pending)
            .map(|(k, _)| k.clone())
            .collect();
        for id in ids {
            self.abandon(&id);
        }
    }

    /// Asserts the state machine's invariants (tests call it after every step).
    pub fn check_invariants(&self) {
        assert!(self.txns.len() <= MAX_TXNS_PER_COORDINATOR);
        let (mut deadlines, mut prepared, mut idle) =
            (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for (id, e) in self.txns.iter().filter(|(_, e)| e.in_log) {
            match slot_of(&e.meta) {
                Slot::Deadline(d) => deadlines.insert((d, id.clone())),
                Slot::Prepared => prepared.insert(id.clone()),
                Slot::Idle(t) => idle.insert((t, id.clone())),
            };
        }
        assert_eq!(deadlines, self.deadlines, "deadline index");
        assert_eq!(prepared, self.prepared, "prepared index");
        assert_eq!(idle, self.idle, "idle index");
        for (id, e) in &self.txns {
            let m = &e.meta;
            assert!(
                e.in_log || e.pending,
                "{id}: neither in the log nor being appended"
            );
            assert_eq!(id, &m.transactional_id);
            assert!(m.producer_id >= 0, "{id}: producer id {}", m.producer_id);
            assert!((0..=MAX_PRODUCER_EPOCH).contains(&m.producer_epoch));
            assert_eq!(
                m.state.has_partitions(),
                !m.partitions.is_empty(),
                "{id}: state {:?} with {} partitions",
                m.state,
                m.partitions.len()
            );
            assert!(m.partitions.len() <= MAX_PARTITIONS_PER_TXN);
            // Completed transactions keep their start; ones completed by an older broker
            // version have -1, so only the open and the Empty states are pinned.
            assert!(
                (!m.state.has_partitions() || m.start_ms >= 0)
                    && (m.state != TxnState::Empty || m.start_ms == -1),
                "{id}: start {} in {:?}",
                m.start_ms,
                m.state
            );
        }
    }
}
