//! Log compaction of topics whose `cleanup.policy` contains `compact` (and `__consumer_offsets`).
//!
//! Kafka's cleaner, mapped onto the per-shard WAL. A partition's log is split at its *cleaned
//! point* (in memory, [`CleanerState::cleaned_upto`]): below it every key appears at most once,
//! above it is the dirty section. A pass:
//!
//! 1. **Key map.** Reads the dirty section from the cleaned point up to the *cleanable end* and
//!    records, for every key, the offset of its last record. The cleanable end stops before the
//!    newest committed batch (so fetch below the high watermark always finds a non-empty batch),
//!    before any batch newer than `min.compaction.lag.ms`, and where the map's byte budget
//!    ([`MAX_KEY_MAP_BYTES`]) runs out (the rest waits for the next pass, like Kafka's dedupe
//!    buffer).
//! 2. **Sweep.** Reads every batch from the log start to that end and keeps a record only if it
//!    is the last for its key ([`rewrite_batch`]). Tombstones (null values) are kept until
//!    `delete.retention.ms` after the pass that first cleaned them, then dropped. Records without
//!    a key are dropped, as Kafka does. Transactional and control batches are left as they are.
//!    A changed batch keeps its base offset, `lastOffsetDelta`, timestamps and producer fields
//!    (so kept records keep their offsets), is re-compressed with its own codec and replaces the
//!    entry's payload in the WAL (`Wal::replace_payload`: re-staged at the tail, same Raft
//!    index/term, so the old segment can be reclaimed). A batch left with no record becomes a
//!    61-byte header-only batch: the Raft entry cannot disappear from the middle of the log and
//!    its Kafka offsets are read from that header; fetch skips such entries.
//! 3. The cleaned point moves to the cleanable end. In `__consumer_offsets`, a prefix of the log
//!    left with header-only batches only is then dropped (Raft prefix compaction, the log start
//!    moves to the first batch with records), so superseded commits stop costing a WAL entry
//!    each: that partition no longer grows forever. User topics keep their header-only entries
//!    (61 bytes plus the WAL record header each; fetch skips them) because moving their log
//!    start would send consumers positioned in the dropped prefix to `auto.offset.reset`, and
//!    Kafka never moves a log start by compaction.
//!
//! A pass runs when `dirty bytes / total bytes >= min.cleanable.dirty.ratio`, or when the oldest
//! dirty batch is older than `max.compaction.lag.ms`. The cleaned point is not persisted: after
//! a restart the first pass treats the whole log as dirty and rewrites nothing that is already
//! compacted. Each replica compacts its own copy (as in Kafka); entries sent to a lagging
//! follower may be compacted copies, which is what a Kafka follower fetching a cleaned segment
//! gets too.
//!
//! The WAL's segments are shared by every partition of a shard, so a partition's segments are
//! virtual: each partition tracks its *active segment* as Kafka would roll it (`segment.bytes`,
//! `segment.ms` by record timestamps, checked when a batch is applied; a restart starts a new
//! one) and a user topic is cleaned only below it ([`cleanable_end`]): records a producer just
//! wrote stay as written until the segment rolls, as in Kafka, where a fresh compacted topic
//! returns every record until its first roll. The internal topics are cleaned up to the newest
//! committed batch, which keeps them small. Tombstones expire at a later pass, so like in Kafka
//! they go once new writes make the partition dirty enough for another pass.
//!
//! The cleaner is one task per shard in a low-share glommio task queue; it yields every
//! [`CLEANER_SLICE`] of work and reads through the WAL's async read path in chunks of
//! [`SWEEP_CHUNK_BYTES`], so produce and fetch on the same shard keep their latency.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chronik_core::topic_config;
use chronik_protocol::batch::{self, CONTROL_FLAG, TRANSACTIONAL_FLAG};
use chronik_protocol::codec::MAX_DECOMPRESSED_BYTES;
use chronik_protocol::records::{self, RecordsError};
use chronik_storage::{EntryMeta, Wal, EMPTY_KAFKA_BATCH_BYTES};

use crate::partition::Partition;

/// Key bytes (plus [`KEY_MAP_ENTRY_OVERHEAD`] each) one pass may hold in its key map.
pub const MAX_KEY_MAP_BYTES: usize = 32 << 20;
/// Approximate per-key cost of the map beyond the key bytes (hash slot, Vec header, offset).
pub const KEY_MAP_ENTRY_OVERHEAD: usize = 48;
/// Batch bytes read from the WAL per step of a pass (then the cleaner may yield).
pub const SWEEP_CHUNK_BYTES: usize = 1 << 20;
/// Most data entries one pass looks at in each phase (bounds a pass on a huge log; the next
/// pass continues from the cleaned point).
pub const MAX_PASS_ENTRIES: u64 = 1 << 22;
/// The cleaner yields to other tasks after this much continuous work.
pub const CLEANER_SLICE: Duration = Duration::from_millis(2);
/// How often the cleaner looks at each compacted partition of its shard.
pub const CLEANER_BACKOFF: Duration = Duration::from_millis(500);
/// Past passes remembered per partition (tombstone expiry); older ones are merged.
pub const MAX_PASS_HISTORY: usize = 64;
/// Shares of the cleaner's glommio task queue (the default queue has 1000).
pub const CLEANER_SHARES: usize = 50;

/// A pre-built header-only batch is exactly what the WAL skips on fetch.
const _: () = assert!(EMPTY_KAFKA_BATCH_BYTES as usize == batch::HEADER_BYTES);

/// Compaction settings of one topic.
#[derive(Clone, Debug, PartialEq)]
pub struct CompactionSettings {
    /// `cleanup.policy` contains `compact`.
    pub compact: bool,
    /// `cleanup.policy` contains `delete` (retention applies).
    pub delete: bool,
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    /// Roll points of the partition's active segment, which is never cleaned (as in Kafka).
    pub segment_bytes: i64,
    pub segment_ms: i64,
}

impl CompactionSettings {
    pub fn resolve(
        overrides: &std::collections::BTreeMap<String, String>,
        defaults: &std::collections::BTreeMap<String, String>,
    ) -> Self {
        let policy =
            topic_config::effective("cleanup.policy", overrides, defaults).unwrap_or("delete");
        let has = |p: &str| policy.split(',').any(|s| s.trim() == p);
        Self {
            compact: has("compact"),
            delete: has("delete"),
            delete_retention_ms: topic_config::effective_i64(
                "delete.retention.ms",
                overrides,
                defaults,
            ),
            min_cleanable_dirty_ratio: topic_config::effective(
                "min.cleanable.dirty.ratio",
                overrides,
                defaults,
            )
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.5),
            min_compaction_lag_ms: topic_config::effective_i64(
                "min.compaction.lag.ms",
                overrides,
                defaults,
            )
            .max(0),
            max_compaction_lag_ms: topic_config::effective_i64(
                "max.compaction.lag.ms",
                overrides,
                defaults,
            ),
            segment_bytes: topic_config::effective_i64("segment.bytes", overrides, defaults),
            segment_ms: topic_config::effective_i64("segment.ms", overrides, defaults),
        }
    }
}

/// The error produce answers for a keyless record on a compacted topic (Kafka's message).
pub const KEYLESS_MESSAGE: &str = "Compacted topic cannot accept message without key";

/// For a compacted topic: every record of the batch must have a key. Decompresses (bounded)
/// when the batch is compressed; a batch whose records do not parse is refused too.
pub fn check_keys(b: &[u8]) -> Result<(), String> {
    let h = batch::header(b).map_err(|e| e.to_string())?;
    if h.attributes.get() & CONTROL_FLAG != 0 {
        return Ok(());
    }
    let count = h.records_count.get();
    let set = records::record_set(b, MAX_DECOMPRESSED_BYTES).map_err(|e| e.to_string())?;
    let recs = records::parse_records(&set, count).map_err(|e| e.to_string())?;
    if recs.iter().any(|r| r.key.is_none()) {
        return Err(KEYLESS_MESSAGE.to_string());
    }
    Ok(())
}

/// Key → offset of its last record, over a pass's dirty section, with a byte budget.
pub struct KeyMap {
    map: HashMap<Vec<u8>, i64>,
    bytes: usize,
    limit: usize,
}

impl KeyMap {
    pub fn new(limit: usize) -> Self {
        Self {
            map: HashMap::new(),
            bytes: 0,
            limit,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn last_offset(&self, key: &[u8]) -> Option<i64> {
        self.map.get(key).copied()
    }

    /// Adds the records of one stored batch. `Ok(false)` (nothing added) if its new keys would
    /// exceed the budget; transactional and control batches add nothing (they are never
    /// compacted, and a record of an aborted transaction must not supersede anything).
    pub fn add_batch(&mut self, b: &[u8]) -> Result<bool, RecordsError> {
        let h = batch::header(b)?;
        if h.attributes.get() & (CONTROL_FLAG | TRANSACTIONAL_FLAG) != 0 {
            return Ok(true);
        }
        let base = h.base_offset.get();
        let set = records::record_set(b, MAX_DECOMPRESSED_BYTES)?;
        let recs = records::parse_records(&set, h.records_count.get())?;
        let new_bytes: usize = recs
            .iter()
            .filter_map(|r| r.key)
            .filter(|k| !self.map.contains_key(*k))
            .map(|k| k.len() + KEY_MAP_ENTRY_OVERHEAD)
            .sum();
        if self.bytes + new_bytes > self.limit && !self.map.is_empty() {
            return Ok(false);
        }
        for r in &recs {
            let Some(k) = r.key else { continue };
            let off = base + r.offset_delta as i64;
            match self.map.get_mut(k) {
                Some(v) => *v = (*v).max(off),
                None => {
                    self.bytes += k.len() + KEY_MAP_ENTRY_OVERHEAD;
                    self.map.insert(k.to_vec(), off);
                }
            }
        }
        Ok(true)
    }
}

/// What the sweep does with one batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Rewrite {
    Unchanged,
    /// The batch rebuilt with fewer records (possibly none: a header-only batch).
    Replaced {
        batch: Vec<u8>,
        records_removed: usize,
    },
}

/// Keeps the records of `b` that are the last for their key per `map` (a key absent from the
/// map had its last record in the already-cleaned section, so this record is it). A tombstone
/// that is the last for its key is dropped when `tombstone_expired(offset)`. Records without a
/// key are dropped. Transactional and control batches are unchanged.
pub fn rewrite_batch(
    b: &[u8],
    map: &KeyMap,
    tombstone_expired: impl Fn(i64) -> bool,
) -> Result<Rewrite, RecordsError> {
    let h = batch::header(b)?;
    if h.attributes.get() & (CONTROL_FLAG | TRANSACTIONAL_FLAG) != 0 {
        return Ok(Rewrite::Unchanged);
    }
    let count = h.records_count.get();
    if count == 0 {
        return Ok(Rewrite::Unchanged);
    }
    let base = h.base_offset.get();
    let set = records::record_set(b, MAX_DECOMPRESSED_BYTES)?;
    let recs = records::parse_records(&set, count)?;
    let kept: Vec<_> = recs
        .iter()
        .filter(|r| {
            let Some(k) = r.key else { return false };
            let off = base + r.offset_delta as i64;
            if map.last_offset(k).is_some_and(|last| last > off) {
                return false;
            }
            !(r.value.is_none() && tombstone_expired(off))
        })
        .copied()
        .collect();
    if kept.len() == recs.len() {
        return Ok(Rewrite::Unchanged);
    }
    Ok(Rewrite::Replaced {
        batch: records::rebuild(b, &kept)?,
        records_removed: recs.len() - kept.len(),
    })
}

/// Per-partition cleaner state (memory only; see the module doc).
#[derive(Debug, Default)]
pub struct CleanerState {
    /// Offsets below this were compacted by an earlier pass (every key at most once).
    pub cleaned_upto: i64,
    /// `(end offset, time)` of past passes, oldest first: a record below `end` was first
    /// cleaned no later than `time`. Invariant: ends strictly increasing; at most
    /// [`MAX_PASS_HISTORY`].
    passes: VecDeque<(i64, i64)>,
    /// A batch that did not parse was reported (warn once per partition).
    warned: bool,
    /// The high watermark at which the partition last had nothing to clean: while it stays
    /// there (and no max lag applies) the cleaner skips the partition without looking at it.
    idle_at_hw: Option<i64>,
}

impl CleanerState {
    /// True when a tombstone at `offset` was first cleaned at least `retention_ms` before
    /// `now_ms`, so every consumer that was reading had the time to see it.
    pub fn tombstone_expired(&self, offset: i64, now_ms: i64, retention_ms: i64) -> bool {
        self.passes
            .iter()
            .find(|&&(end, _)| offset < end)
            .is_some_and(|&(_, at)| now_ms.saturating_sub(at) >= retention_ms.max(0))
    }

    fn record_pass(&mut self, end: i64, now_ms: i64) {
        if self.passes.back().is_some_and(|&(e, _)| e >= end) {
            return;
        }
        self.passes.push_back((end, now_ms));
        if self.passes.len() > MAX_PASS_HISTORY {
            // Merging keeps the later time for the whole range: tombstones there live a little
            // longer, never shorter.
            let (_, t0) = self.passes.pop_front().expect("non-empty");
            let first = self.passes.front_mut().expect("more than one");
            first.1 = first.1.max(t0);
        }
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub ran: bool,
    pub batches_rewritten: u64,
    pub records_removed: u64,
    pub bytes_removed: u64,
    pub cleaned_upto: i64,
}

/// Yields to other tasks once `CLEANER_SLICE` of continuous work has passed.
async fn maybe_yield(since: &mut Instant) {
    if since.elapsed() >= CLEANER_SLICE {
        futures_lite::future::yield_now().await;
        *since = Instant::now();
    }
}

/// Decides whether `p` needs a pass now (dirty ratio or max lag).
pub async fn needs_pass(
    p: &Partition,
    wal: &Wal,
    st: &CleanerState,
    s: &CompactionSettings,
    now_ms: i64,
) -> bool {
    let from = st.cleaned_upto.max(p.log_start_offset());
    let hw = p.high_watermark();
    if from >= hw || from >= cleanable_end(p) {
        return false;
    }
    let (dirty, total) = wal.data_bytes(p.group, from);
    if total == 0 || dirty == 0 {
        return false;
    }
    if dirty as f64 / total as f64 >= s.min_cleanable_dirty_ratio {
        return true;
    }
    if s.max_compaction_lag_ms >= 0 && s.max_compaction_lag_ms < i64::MAX {
        if let Ok(first) = wal.read_data_entries(p.group, from, hw, 1).await {
            if let Some(k) = first.first().and_then(|(m, _)| m.kafka) {
                return k.max_timestamp < now_ms.saturating_sub(s.max_compaction_lag_ms);
            }
        }
    }
    false
}

/// The log a pass reads and rewrites: the WAL in the broker, a vector in the planner's tests.
pub(crate) trait PassLog {
    /// Data entries with `last_offset` in `[from, upto)`, in order, about `max_bytes` (at least
    /// one), including header-only batches.
    async fn read(
        &self,
        from: i64,
        upto: i64,
        max_bytes: usize,
    ) -> chronik_storage::Result<Vec<(EntryMeta, Bytes)>>;
    /// Replaces the payload of the entry `meta` describes; false if it changed meanwhile.
    fn replace(&self, meta: &EntryMeta, payload: &[u8]) -> chronik_storage::Result<bool>;
}

struct WalLog<'a> {
    wal: &'a Wal,
    group: u64,
}

impl PassLog for WalLog<'_> {
    async fn read(
        &self,
        from: i64,
        upto: i64,
        max_bytes: usize,
    ) -> chronik_storage::Result<Vec<(EntryMeta, Bytes)>> {
        self.wal
            .read_data_entries(self.group, from, upto, max_bytes)
            .await
    }

    fn replace(&self, meta: &EntryMeta, payload: &[u8]) -> chronik_storage::Result<bool> {
        Ok(self
            .wal
            .replace_payload(self.group, meta, payload)?
            .is_some())
    }
}

/// Where the cleanable part of `p`'s log ends: the start of its active segment for a user topic
/// (Kafka never cleans the active segment, so a producer's recent records stay as they were
/// written until `segment.bytes` or `segment.ms` rolls it); the whole log for the internal
/// topics, which stay small only because they are cleaned eagerly.
pub fn cleanable_end(p: &Partition) -> i64 {
    if is_internal_log(p) {
        return i64::MAX;
    }
    p.active_segment().map_or(i64::MAX, |a| a.base_offset)
}

/// `__consumer_offsets` and `__transaction_state`: read back only by the broker's own replay
/// (latest record per key wins), cleaned eagerly and their compacted prefix dropped.
fn is_internal_log(p: &Partition) -> bool {
    p.topic == chronik_core::meta::CONSUMER_OFFSETS_TOPIC
        || p.topic == chronik_core::txn::TRANSACTION_STATE_TOPIC
}

/// One compaction pass over partition `p` (see the module doc).
pub async fn clean_partition(
    p: &Partition,
    wal: &Wal,
    st: &mut CleanerState,
    s: &CompactionSettings,
    now_ms: i64,
) -> chronik_storage::Result<PassReport> {
    let log = WalLog {
        wal,
        group: p.group,
    };
    let limits = PassLimits {
        map_bytes: MAX_KEY_MAP_BYTES,
        chunk_bytes: SWEEP_CHUNK_BYTES,
    };
    clean(
        &log,
        p.group,
        (p.high_watermark(), p.log_start_offset(), cleanable_end(p)),
        st,
        s,
        limits,
        now_ms,
    )
    .await
}

/// Memory and step bounds of one pass (the broker uses the named constants; tests shrink them
/// to force multi-pass and multi-chunk behaviour).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PassLimits {
    pub map_bytes: usize,
    pub chunk_bytes: usize,
}

/// One pass over `log` whose `(high watermark, log start, cleanable end)` are `bounds`: batches
/// ending after the cleanable end (the active segment) stay dirty.
pub(crate) async fn clean(
    log: &impl PassLog,
    g: u64,
    bounds: (i64, i64, i64),
    st: &mut CleanerState,
    s: &CompactionSettings,
    limits: PassLimits,
    now_ms: i64,
) -> chronik_storage::Result<PassReport> {
    let (hw, log_start, cleanable_end) = bounds;
    st.cleaned_upto = st.cleaned_upto.max(log_start);
    let mut report = PassReport {
        cleaned_upto: st.cleaned_upto,
        ..PassReport::default()
    };
    let lag_limit = now_ms.saturating_sub(s.min_compaction_lag_ms);
    let mut since = Instant::now();

    // Phase 1: the key map over the dirty section.
    let mut map = KeyMap::new(limits.map_bytes);
    let mut end = st.cleaned_upto;
    let mut seen = 0u64;
    'map: while seen < MAX_PASS_ENTRIES {
        let chunk = log.read(end, hw, limits.chunk_bytes).await?;
        if chunk.is_empty() {
            break;
        }
        for (m, b) in &chunk {
            seen += 1;
            let Some(k) = m.kafka else { continue };
            // The newest committed batch stays dirty: fetch below the high watermark must find
            // a batch with records. So does the active segment.
            if k.last_offset + 1 >= hw
                || k.last_offset + 1 > cleanable_end
                || k.max_timestamp > lag_limit
            {
                break 'map;
            }
            match map.add_batch(b) {
                Ok(true) => {}
                Ok(false) => break 'map,
                Err(e) => {
                    if !st.warned {
                        st.warned = true;
                        tracing::warn!(
                            group = g,
                            offset = k.base_offset,
                            "compaction leaves an unparsable batch as is: {e}"
                        );
                    }
                }
            }
            end = k.last_offset + 1;
        }
        maybe_yield(&mut since).await;
    }
    if end <= st.cleaned_upto {
        return Ok(report);
    }
    report.ran = true;

    // Phase 2: sweep the log start .. end.
    let mut cursor = log_start;
    let mut swept = 0u64;
    while cursor < end && swept < MAX_PASS_ENTRIES {
        let chunk = log.read(cursor, end, limits.chunk_bytes).await?;
        let Some(last) = chunk.last().and_then(|(m, _)| m.kafka) else {
            break;
        };
        for (m, b) in &chunk {
            swept += 1;
            let expired = |off: i64| st.tombstone_expired(off, now_ms, s.delete_retention_ms);
            match rewrite_batch(b, &map, expired) {
                Ok(Rewrite::Unchanged) => {}
                Ok(Rewrite::Replaced {
                    batch: nb,
                    records_removed,
                }) => {
                    if log.replace(m, &nb)? {
                        report.batches_rewritten += 1;
                        report.records_removed += records_removed as u64;
                        report.bytes_removed += (b.len() - nb.len().min(b.len())) as u64;
                    }
                }
                Err(e) => {
                    if !st.warned {
                        st.warned = true;
                        tracing::warn!(
                            group = g,
                            index = m.index,
                            "compaction leaves an unparsable batch as is: {e}"
                        );
                    }
                }
            }
        }
        cursor = last.last_offset + 1;
        maybe_yield(&mut since).await;
    }
    // Only what the sweep covered counts as cleaned (a key whose last record lies beyond an
    // unswept point would otherwise keep duplicates forever).
    let cleaned = end.min(cursor);
    if cleaned > st.cleaned_upto {
        st.cleaned_upto = cleaned;
        st.record_pass(cleaned, now_ms);
    }
    report.cleaned_upto = st.cleaned_upto;
    Ok(report)
}

/// Metric handles of one shard's cleaner.
struct CleanerMetrics {
    runs: metrics::Counter,
    bytes_removed: metrics::Counter,
}

/// The per-shard cleaner: runs until `stop()` says so, in its own low-share task queue.
pub async fn run_cleaner(
    shard: usize,
    wal: Rc<Wal>,
    partitions: impl Fn() -> Vec<Rc<Partition>>,
    stop: impl Fn() -> bool,
) {
    let labels = [("shard", shard.to_string())];
    let m = CleanerMetrics {
        runs: metrics::counter!("chronik_compaction_runs_total", &labels),
        bytes_removed: metrics::counter!("chronik_compaction_bytes_removed_total", &labels),
    };
    let mut states: HashMap<u64, CleanerState> = HashMap::new();
    while !stop() {
        glommio::timer::sleep(CLEANER_BACKOFF).await;
        let parts = partitions();
        states.retain(|g, _| parts.iter().any(|p| p.group == *g));
        for p in parts {
            if stop() {
                return;
            }
            let s = p.settings.borrow().compaction.clone();
            if !s.compact {
                continue;
            }
            let now = crate::partition::now_ms();
            let st = states.entry(p.group).or_default();
            let lag_bound = s.max_compaction_lag_ms >= 0 && s.max_compaction_lag_ms < i64::MAX;
            let hw = p.high_watermark();
            if st.idle_at_hw == Some(hw) && !lag_bound {
                continue;
            }
            if !needs_pass(&p, &wal, st, &s, now).await {
                st.idle_at_hw = Some(hw);
                continue;
            }
            match clean_partition(&p, &wal, st, &s, now).await {
                Ok(r) if !r.ran => st.idle_at_hw = Some(hw),
                Ok(r) => {
                    st.idle_at_hw = None;
                    // Only for the internal topics: moving a user topic's log start would send
                    // consumers whose position lies in the dropped prefix to their reset policy
                    // (Kafka never moves it by compaction); nobody but the broker reads these.
                    // Both replay keyed snapshots (latest record per key wins), so the dropped
                    // header-only prefix held nothing a replay needs.
                    if is_internal_log(&p) {
                        p.drop_compacted_prefix();
                    }
                    m.runs.increment(1);
                    m.bytes_removed.increment(r.bytes_removed);
                    tracing::debug!(
                        group = p.group,
                        topic = p.topic,
                        partition = p.index,
                        rewritten = r.batches_rewritten,
                        records_removed = r.records_removed,
                        bytes_removed = r.bytes_removed,
                        cleaned_upto = r.cleaned_upto,
                        "compaction pass"
                    );
                }
                Err(e) => tracing::warn!(group = p.group, "compaction pass failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
