//! Idempotent-producer state for one partition, and producer id allocation.
//!
//! Kafka's rules (2.5+, KIP-360), per (producer id, epoch):
//! - the last [`BATCHES_PER_PRODUCER`] appended batches are remembered; a retried batch with the
//!   same epoch and sequence range is a duplicate: acknowledge it with its original offsets and
//!   do not append it again;
//! - otherwise the next batch must start right after the last sequence (`last + 1`, wrapping
//!   from `i32::MAX` to 0) or it is OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - an older epoch is fenced (INVALID_PRODUCER_EPOCH); a newer epoch must start at sequence 0;
//! - an unknown producer id (never seen, or expired) is accepted at any sequence.
//!
//! The table is rebuilt at start-up by calling [`ProducerStateTable::record`] for every batch
//! header of the partition in offset order, or restored from [`ProducerStateTable::encode_snapshot`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;

/// Kafka's `NumBatchesToRetain`: producers keep at most 5 requests in flight per connection.
pub const BATCHES_PER_PRODUCER: usize = 5;
/// Bound on producers tracked per partition; beyond it the least recently active is forgotten
/// (it then counts as unknown, which Kafka 2.5+ accepts at any sequence).
pub const MAX_PRODUCERS_PER_PARTITION: usize = 100_000;
/// Ids handed out per persisted high-water mark step.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;
/// `RecordBatch.NO_PRODUCER_ID`: batches of non-idempotent producers.
pub const NO_PRODUCER_ID: i64 = -1;

const SNAPSHOT_MAGIC: u32 = 0x4350_5331; // "CPS1"
const SNAPSHOT_BATCH_BYTES: usize = 4 + 4 + 8 + 8 + 8;
const SNAPSHOT_PRODUCER_BYTES: usize = 8 + 2 + 8 + 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerStateError {
    #[error("producer ids exhausted at {next}")]
    ProducerIdsExhausted { next: i64 },
    #[error("producer snapshot corrupt: {reason} at byte {pos}")]
    CorruptSnapshot { reason: &'static str, pos: usize },
}

pub type Result<T> = std::result::Result<T, ProducerStateError>;

/// One appended batch as the producer table remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    /// Oldest first. Invariant: len <= BATCHES_PER_PRODUCER; consecutive batches are in
    /// sequence and in offset order; empty only after `fence_epoch`.
    batches: VecDeque<BatchMeta>,
    last_timestamp_ms: i64,
}

/// Outcome of [`ProducerStateTable::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Append it, then call `record`.
    New,
    /// A retry of a batch among the last five: answer with these offsets, do not append.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
        timestamp_ms: i64,
    },
    /// OUT_OF_ORDER_SEQUENCE_NUMBER. `expected_seq` is what would have been in order (-1 if a
    /// new epoch was required to start at 0 and did not).
    OutOfOrder { expected_seq: i32 },
    /// INVALID_PRODUCER_EPOCH: an older epoch than the table knows.
    Fenced { current_epoch: i16 },
}

impl Check {
    /// The Kafka error code for a rejected batch, 0 for `New` and `Duplicate`.
    pub fn error_code(&self) -> i16 {
        match self {
            Check::New | Check::Duplicate { .. } => 0,
            Check::OutOfOrder { .. } => ResponseError::OutOfOrderSequenceNumber.code(),
            Check::Fenced { .. } => ResponseError::InvalidProducerEpoch.code(),
        }
    }
}

/// Kafka `inSequence`: `next` follows `last`, wrapping at `i32::MAX`.
pub fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    i64::from(next_seq) == i64::from(last_seq) + 1 || (next_seq == 0 && last_seq == i32::MAX)
}

/// Kafka `incrementSequence`: the last sequence of a batch of `records` starting at `base_seq`.
pub fn last_sequence(base_seq: i32, records: i32) -> i32 {
    debug_assert!(records >= 1);
    let last = i64::from(base_seq) + i64::from(records) - 1;
    if last > i64::from(i32::MAX) {
        (last - i64::from(i32::MAX) - 1) as i32
    } else {
        last as i32
    }
}

/// Per-partition producer state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateTable {
    producers: BTreeMap<i64, ProducerEntry>,
    /// (last_timestamp_ms, producer id) for eviction and expiry. Invariant: exactly one entry
    /// per producer, matching its `last_timestamp_ms`.
    by_age: BTreeSet<(i64, i64)>,
}

impl ProducerStateTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Every tracked producer id, ascending (DescribeProducers lists them).
    pub fn producer_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.producers.keys().copied()
    }

    /// The epoch the table holds for `producer_id`, if known.
    pub fn epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }

    /// The remembered batches of `producer_id`, oldest first.
    pub fn batches(&self, producer_id: i64) -> Vec<BatchMeta> {
        self.producers
            .get(&producer_id)
            .map_or_else(Vec::new, |e| e.batches.iter().copied().collect())
    }

    /// Decides what to do with an idempotent batch before it is appended.
    pub fn check(&self, producer_id: i64, epoch: i16, base_seq: i32, last_seq: i32) -> Check {
        if producer_id < 0 {
            return Check::New; // not an idempotent batch: nothing to track
        }
        if base_seq < 0 || last_seq < 0 {
            return Check::OutOfOrder {
                expected_seq: self.expected_seq(producer_id),
            };
        }
        let Some(e) = self.producers.get(&producer_id) else {
            return Check::New;
        };
        if epoch < e.epoch {
            return Check::Fenced {
                current_epoch: e.epoch,
            };
        }
        if epoch > e.epoch {
            // A bumped epoch (KIP-360) restarts the sequence at 0.
            return if base_seq == 0 {
                Check::New
            } else {
                Check::OutOfOrder { expected_seq: 0 }
            };
        }
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_seq == base_seq && b.last_seq == last_seq)
        {
            return Check::Duplicate {
                base_offset: b.base_offset,
                last_offset: b.last_offset,
                timestamp_ms: b.timestamp_ms,
            };
        }
        match e.batches.back() {
            None => Check::New,
            Some(last) if in_sequence(last.last_seq, base_seq) => Check::New,
            Some(last) => Check::OutOfOrder {
                expected_seq: last_sequence(last.last_seq, 2),
            },
        }
    }

    fn expected_seq(&self, producer_id: i64) -> i32 {
        self.producers
            .get(&producer_id)
            .and_then(|e| e.batches.back())
            .map_or(-1, |b| last_sequence(b.last_seq, 2))
    }

    /// Records an appended batch (after `check` said `New`, or while replaying the log in
    /// offset order). A batch of an older epoch than known is ignored: the log already holds
    /// a newer epoch, so the old one can never be produced to again.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        producer_id: i64,
        epoch: i16,
        base_seq: i32,
        last_seq: i32,
        base_offset: i64,
        last_offset: i64,
        timestamp_ms: i64,
    ) {
        if producer_id < 0 {
            return;
        }
        assert!(
            base_offset <= last_offset,
            "batch offsets {base_offset}..{last_offset}"
        );
        let meta = BatchMeta {
            first_seq: base_seq,
            last_seq,
            base_offset,
            last_offset,
            timestamp_ms,
        };
        match self.producers.get_mut(&producer_id) {
            Some(e) if epoch < e.epoch => {}
            Some(e) => {
                self.by_age.remove(&(e.last_timestamp_ms, producer_id));
                if epoch > e.epoch {
                    e.epoch = epoch;
                    e.batches.clear();
                }
                if let Some(prev) = e.batches.back() {
                    debug_assert!(
                        prev.last_offset < base_offset,
                        "batches recorded out of offset order"
                    );
                }
                e.batches.push_back(meta);
                while e.batches.len() > BATCHES_PER_PRODUCER {
                    e.batches.pop_front();
                }
                e.last_timestamp_ms = e.last_timestamp_ms.max(timestamp_ms);
                self.by_age.insert((e.last_timestamp_ms, producer_id));
            }
            None => {
                if self.producers.len() >= MAX_PRODUCERS_PER_PARTITION {
                    if let Some((ts, pid)) = self.by_age.pop_first() {
                        self.producers.remove(&pid);
                        tracing::debug!(
                            pid,
                            ts,
                            "producer state evicted at MAX_PRODUCERS_PER_PARTITION"
                        );
                    }
                }
                let mut batches = VecDeque::with_capacity(BATCHES_PER_PRODUCER);
                batches.push_back(meta);
                self.producers.insert(
                    producer_id,
                    ProducerEntry {
                        epoch,
                        batches,
                        last_timestamp_ms: timestamp_ms,
                    },
                );
                self.by_age.insert((timestamp_ms, producer_id));
            }
        }
    }

    /// A transaction marker of `producer_id` written with `epoch`: when the coordinator bumped
    /// the epoch to fence a producer (an abort on InitProducerId or on timeout), batches of the
    /// older epoch are refused from now on, and the new epoch starts its sequence at 0.
    pub fn fence_epoch(&mut self, producer_id: i64, epoch: i16) {
        if let Some(e) = self.producers.get_mut(&producer_id) {
            if epoch > e.epoch {
                e.epoch = epoch;
                e.batches.clear();
            }
        }
    }

    /// Forgets producers idle for more than `max_idle_ms` (Kafka `producer.id.expiration.ms`,
    /// default one day). Returns how many were removed.
    pub fn expire(&mut self, now_ms: i64, max_idle_ms: i64) -> usize {
        let cutoff = now_ms.saturating_sub(max_idle_ms);
        let mut n = 0;
        while let Some(&(ts, pid)) = self.by_age.first() {
            if ts >= cutoff {
                break;
            }
            self.by_age.pop_first();
            self.producers.remove(&pid);
            n += 1;
        }
        n
    }

    /// Serializes the table (big-endian): magic u32, count u32, then per producer
    /// `pid i64, epoch i16, last_ts i64, n u8, n × (first_seq i32, last_seq i32, base i64,
    /// last i64, ts i64)`. The storage layer that keeps it adds its own checksum.
    pub fn encode_snapshot(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(
            8 + self.producers.len()
                * (SNAPSHOT_PRODUCER_BYTES + BATCHES_PER_PRODUCER * SNAPSHOT_BATCH_BYTES),
        );
        b.put_u32(SNAPSHOT_MAGIC);
        b.put_u32(self.producers.len() as u32);
        for (pid, e) in &self.producers {
            b.put_i64(*pid);
            b.put_i16(e.epoch);
            b.put_i64(e.last_timestamp_ms);
            b.put_u8(e.batches.len() as u8);
            for m in &e.batches {
                b.put_i32(m.first_seq);
                b.put_i32(m.last_seq);
                b.put_i64(m.base_offset);
                b.put_i64(m.last_offset);
                b.put_i64(m.timestamp_ms);
            }
        }
        b.freeze()
    }

    pub fn decode_snapshot(buf: &[u8]) -> Result<Self> {
        let mut pos = 0usize;
        let take = |n: usize, pos: &mut usize| -> Result<&[u8]> {
            let s = buf
                .get(*pos..*pos + n)
                .ok_or(ProducerStateError::CorruptSnapshot {
                    reason: "truncated",
                    pos: *pos,
                })?;
            *pos += n;
            Ok(s)
        };
        let be_u32 = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
        let be_i64 =
            |s: &[u8]| i64::from_be_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]);
        if be_u32(take(4, &mut pos)?) != SNAPSHOT_MAGIC {
            return Err(ProducerStateError::CorruptSnapshot {
                reason: "bad magic",
                pos: 0,
            });
        }
        let count = be_u32(take(4, &mut pos)?) as usize;
        if count > MAX_PRODUCERS_PER_PARTITION
            || count > (buf.len() - pos) / SNAPSHOT_PRODUCER_BYTES
        {
            return Err(ProducerStateError::CorruptSnapshot {
                reason: "producer count",
                pos: 4,
            });
        }
        let mut t = ProducerStateTable::new();
        for _ in 0..count {
            let at = pos;
            let pid = be_i64(take(8, &mut pos)?);
            let ep = take(2, &mut pos)?;
            let epoch = i16::from_be_bytes([ep[0], ep[1]]);
            let last_ts = be_i64(take(8, &mut pos)?);
            let n = take(1, &mut pos)?[0] as usize;
            if pid < 0 || n > BATCHES_PER_PRODUCER || t.producers.contains_key(&pid) {
                return Err(ProducerStateError::CorruptSnapshot {
                    reason: "producer entry",
                    pos: at,
                });
            }
            let mut batches: VecDeque<BatchMeta> = VecDeque::with_capacity(n);
            for _ in 0..n {
                let s = take(SNAPSHOT_BATCH_BYTES, &mut pos)?;
                let m = BatchMeta {
                    first_seq: i32::from_be_bytes([s[0], s[1], s[2], s[3]]),
                    last_seq: i32::from_be_bytes([s[4], s[5], s[6], s[7]]),
                    base_offset: be_i64(&s[8..16]),
                    last_offset: be_i64(&s[16..24]),
                    timestamp_ms: be_i64(&s[24..32]),
                };
                let ordered = batches
                    .back()
                    .is_none_or(|prev| prev.last_offset < m.base_offset);
                if m.base_offset > m.last_offset || m.first_seq < 0 || m.last_seq < 0 || !ordered {
                    return Err(ProducerStateError::CorruptSnapshot {
                        reason: "batch entry",
                        pos: at,
                    });
                }
                batches.push_back(m);
            }
            t.producers.insert(
                pid,
                ProducerEntry {
                    epoch,
                    batches,
                    last_timestamp_ms: last_ts,
                },
            );
            t.by_age.insert((last_ts, pid));
        }
        if pos != buf.len() {
            return Err(ProducerStateError::CorruptSnapshot {
                reason: "trailing bytes",
                pos,
            });
        }
        Ok(t)
    }

    pub fn check_invariants(&self) {
        assert_eq!(self.producers.len(), self.by_age.len(), "age index size");
        assert!(self.producers.len() <= MAX_PRODUCERS_PER_PARTITION);
        for (pid, e) in &self.producers {
            assert!(*pid >= 0);
            assert!(
                self.by_age.contains(&(e.last_timestamp_ms, *pid)),
                "age index for {pid}"
            );
            // Empty only after `fence_epoch` moved the producer to a new epoch.
            assert!(e.batches.len() <= BATCHES_PER_PRODUCER);
            for w in e.batches.iter().collect::<Vec<_>>().windows(2) {
                assert!(
                    w[0].last_offset < w[1].base_offset,
                    "{pid}: offsets not increasing"
                );
            }
        }
    }
}

/// Hands out producer ids. The broker persists `persist_high_water` (replicated, e.g. in the
/// metadata log) BEFORE answering with an id from a new block, so after a restart
/// [`ProducerIdAllocator::new`] with the last persisted mark never repeats an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerIdAllocator {
    next: i64,
    /// Exclusive end of the current block. Invariant: next <= block_end.
    block_end: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdGrant {
    pub producer_id: i64,
    /// Some(mark): make `mark` durable before using `producer_id`.
    pub persist_high_water: Option<i64>,
}

impl ProducerIdAllocator {
    /// `persisted_high_water`: the last durable mark (0 for a new cluster).
    pub fn new(persisted_high_water: i64) -> Self {
        let hw = persisted_high_water.max(0);
        ProducerIdAllocator {
            next: hw,
            block_end: hw,
        }
    }

    pub fn allocate(&mut self) -> Result<ProducerIdGrant> {
        let mut persist = None;
        if self.next >= self.block_end {
            let end = self
                .next
                .checked_add(PRODUCER_ID_BLOCK_SIZE)
                .ok_or(ProducerStateError::ProducerIdsExhausted { next: self.next })?;
            self.block_end = end;
            persist = Some(end);
        }
        let id = self.next;
        self.next += 1;
        Ok(ProducerIdGrant {
            producer_id: id,
            persist_high_water: persist,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID: i64 = 7;

    fn table_with(batches: &[(i16, i32, i32)]) -> ProducerStateTable {
        let mut t = ProducerStateTable::new();
        let mut off = 0;
        for &(epoch, first, last) in batches {
            // Record count of a batch whose sequence may wrap past i32::MAX.
            let n = if last >= first {
                i64::from(last) - i64::from(first) + 1
            } else {
                i64::from(i32::MAX) - i64::from(first) + i64::from(last) + 2
            };
            t.record(PID, epoch, first, last, off, off + n - 1, 1000 + off);
            off += n;
        }
        t.check_invariants();
        t
    }

    #[test]
    fn a_marker_with_a_bumped_epoch_fences_the_old_one() {
        let mut t = table_with(&[(0, 0, 4)]);
        t.fence_epoch(PID, 0); // same epoch (a plain commit/abort): nothing changes
        assert_eq!(t.check(PID, 0, 5, 5), Check::New);
        t.fence_epoch(PID, 1);
        assert_eq!(t.check(PID, 0, 5, 5), Check::Fenced { current_epoch: 1 });
        assert_eq!(t.check(PID, 1, 0, 0), Check::New);
        t.check_invariants();
    }

    #[test]
    fn unknown_producer_accepts_any_sequence() {
        let t = ProducerStateTable::new();
        assert_eq!(t.check(PID, 0, 0, 4), Check::New);
        assert_eq!(t.check(PID, 3, 1234, 1240), Check::New);
        assert_eq!(t.check(NO_PRODUCER_ID, -1, -1, -1), Check::New);
    }

    #[test]
    fn in_order_batches_are_new() {
        let t = table_with(&[(0, 0, 4), (0, 5, 9)]);
        assert_eq!(t.check(PID, 0, 10, 12), Check::New);
    }

    #[test]
    fn retry_among_last_five_is_duplicate_with_original_offsets() {
        let t = table_with(&[
            (0, 0, 4),
            (0, 5, 9),
            (0, 10, 14),
            (0, 15, 19),
            (0, 20, 24),
            (0, 25, 29),
        ]);
        // 0..4 fell out of the window of five; 5..9 is the oldest remembered.
        assert_eq!(
            t.check(PID, 0, 5, 9),
            Check::Duplicate {
                base_offset: 5,
                last_offset: 9,
                timestamp_ms: 1005
            }
        );
        assert_eq!(
            t.check(PID, 0, 25, 29),
            Check::Duplicate {
                base_offset: 25,
                last_offset: 29,
                timestamp_ms: 1025
            }
        );
        assert_eq!(
            t.check(PID, 0, 0, 4),
            Check::OutOfOrder { expected_seq: 30 }
        );
        assert_eq!(t.batches(PID).len(), BATCHES_PER_PRODUCER);
    }

    #[test]
    fn gaps_and_overlaps_are_out_of_order() {
        let t = table_with(&[(0, 0, 4)]);
        assert_eq!(t.check(PID, 0, 6, 8), Check::OutOfOrder { expected_seq: 5 });
        assert_eq!(t.check(PID, 0, 3, 8), Check::OutOfOrder { expected_seq: 5 });
        assert_eq!(
            t.check(PID, 0, 6, 8).error_code(),
            ResponseError::OutOfOrderSequenceNumber.code()
        );
        assert!(matches!(t.check(PID, 0, -1, 3), Check::OutOfOrder { .. }));
    }

    #[test]
    fn older_epoch_is_fenced_and_newer_epoch_restarts_at_zero() {
        let t = table_with(&[(1, 0, 4), (1, 5, 9)]);
        assert_eq!(t.check(PID, 0, 10, 12), Check::Fenced { current_epoch: 1 });
        assert_eq!(
            t.check(PID, 0, 10, 12).error_code(),
            ResponseError::InvalidProducerEpoch.code()
        );
        assert_eq!(t.check(PID, 2, 0, 3), Check::New);
        assert_eq!(
            t.check(PID, 2, 10, 12),
            Check::OutOfOrder { expected_seq: 0 }
        );
        // A duplicate check never crosses epochs.
        assert_eq!(t.check(PID, 2, 5, 9), Check::OutOfOrder { expected_seq: 0 });
        let mut t = t;
        t.record(PID, 2, 0, 3, 10, 13, 2000);
        assert_eq!(t.epoch(PID), Some(2));
        assert_eq!(t.batches(PID).len(), 1, "epoch bump clears the window");
        assert_eq!(t.check(PID, 2, 4, 4), Check::New);
        // Replay of an old-epoch batch after a newer one is ignored.
        t.record(PID, 1, 10, 12, 14, 16, 2001);
        assert_eq!(t.epoch(PID), Some(2));
        t.check_invariants();
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        assert_eq!(last_sequence(i32::MAX - 1, 3), 0);
        assert_eq!(last_sequence(i32::MAX, 1), i32::MAX);
        assert_eq!(last_sequence(5, 1), 5);
        let t = table_with(&[(0, i32::MAX - 4, i32::MAX)]);
        assert_eq!(t.check(PID, 0, 0, 2), Check::New);
        assert!(in_sequence(i32::MAX, 0));
        assert!(!in_sequence(i32::MAX, 1));
        let t = table_with(&[(0, i32::MAX - 1, 0)]); // a batch spanning the wrap
        assert_eq!(t.check(PID, 0, 1, 5), Check::New);
        assert_eq!(
            t.check(PID, 0, i32::MAX - 1, 0),
            Check::Duplicate {
                base_offset: 0,
                last_offset: 2,
                timestamp_ms: 1000
            }
        );
    }

    #[test]
    fn rebuild_by_replay_equals_live_table_and_snapshot_round_trips() {
        let mut live = ProducerStateTable::new();
        let mut log = Vec::new();
        let mut off = 0i64;
        for (pid, epoch, first, n) in [
            (1i64, 0i16, 0i32, 3i32),
            (2, 0, 0, 1),
            (1, 0, 3, 2),
            (1, 1, 0, 4),
            (2, 0, 1, 5),
        ] {
            let last = last_sequence(first, n);
            assert_eq!(live.check(pid, epoch, first, last), Check::New);
            live.record(pid, epoch, first, last, off, off + i64::from(n) - 1, off);
            log.push((pid, epoch, first, last, off, off + i64::from(n) - 1, off));
            off += i64::from(n);
        }
        let mut rebuilt = ProducerStateTable::new();
        for (pid, epoch, first, last, base, lo, ts) in log {
            rebuilt.record(pid, epoch, first, last, base, lo, ts);
        }
        assert_eq!(rebuilt, live);
        let snap = live.encode_snapshot();
        let restored = ProducerStateTable::decode_snapshot(&snap).unwrap();
        assert_eq!(restored, live);
        restored.check_invariants();
        for cut in 0..snap.len() {
            assert!(
                ProducerStateTable::decode_snapshot(&snap[..cut]).is_err(),
                "cut {cut}"
            );
        }
        for i in 0..snap.len() {
            let mut b = snap.to_vec();
            b[i] ^= 0xff;
            if let Ok(t) = ProducerStateTable::decode_snapshot(&b) {
                t.check_invariants();
            }
        }
    }

    #[test]
    fn expiry_and_eviction_keep_the_age_index() {
        let mut t = ProducerStateTable::new();
        for pid in 0..10 {
            t.record(pid, 0, 0, 0, pid, pid, pid * 100);
        }
        assert_eq!(t.expire(1000, 550), 5); // ts 0..400 are older than 450
        assert_eq!(t.len(), 5);
        assert_eq!(t.epoch(4), None);
        assert_eq!(
            t.check(4, 0, 17, 17),
            Check::New,
            "expired producers are unknown again"
        );
        t.check_invariants();
    }

    /// A producer with five batches in flight over a network that reorders, loses responses and
    /// retries: every record lands in the log exactly once and in sequence order, and every
    /// retried batch is acknowledged with the offsets of its first append. Like the Java client,
    /// a batch leaves the window of five only once every older batch is acknowledged.
    #[test]
    fn retries_and_reordering_never_duplicate_or_reorder_the_log() {
        for seed in 0..200u64 {
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut next = move || {
                // xorshift64*: deterministic per seed.
                rng ^= rng >> 12;
                rng ^= rng << 25;
                rng ^= rng >> 27;
                rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
            };
            let mut table = ProducerStateTable::new();
            let mut log: Vec<i32> = Vec::new(); // sequence of every appended record, in offset order
            let mut acked: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
            let mut in_flight: VecDeque<(i32, i32, bool)> = VecDeque::new();
            let mut next_seq = 0i32;
            let total = 400;
            let mut steps = 0;
            while (next_seq < total || !in_flight.is_empty()) && steps < 100_000 {
                steps += 1;
                if in_flight.len() < BATCHES_PER_PRODUCER && next_seq < total && next() % 2 == 0 {
                    let n = 1 + (next() % 4) as i32;
                    in_flight.push_back((next_seq, next_seq + n - 1, false));
                    next_seq += n;
                    continue;
                }
                if in_flight.is_empty() {
                    continue;
                }
                // Kafka accepts any sequence from an unknown producer, so the very first batch
                // must be the first to arrive (it is: one TCP connection keeps requests in
                // order; only retries after a broken connection reorder).
                let i = if table.epoch(PID).is_none() {
                    0
                } else {
                    (next() % in_flight.len() as u64) as usize
                };
                // Acked batches may be delivered again too: a duplicate from a stale retry.
                let (first, last, _) = in_flight[i];
                let result = match table.check(PID, 0, first, last) {
                    Check::New => {
                        let base = log.len() as i64;
                        log.extend(first..=last);
                        let lo = log.len() as i64 - 1;
                        table.record(PID, 0, first, last, base, lo, base);
                        Some((base, lo))
                    }
                    Check::Duplicate {
                        base_offset,
                        last_offset,
                        ..
                    } => Some((base_offset, last_offset)),
                    Check::OutOfOrder { .. } => None,
                    Check::Fenced { .. } => panic!("seed {seed}: single epoch cannot be fenced"),
                };
                let response_lost = next() % 4 == 0;
                if let (Some(offsets), false) = (result, response_lost) {
                    if let Some(prev) = acked.insert(first, offsets) {
                        assert_eq!(prev, offsets, "seed {seed}: retry acked with other offsets");
                    }
                    in_flight[i].2 = true;
                }
                while in_flight.front().is_some_and(|b| b.2) {
                    in_flight.pop_front();
                }
                table.check_invariants();
            }
            assert!(
                in_flight.is_empty(),
                "seed {seed}: stuck with {in_flight:?}"
            );
            assert_eq!(
                log,
                (0..next_seq).collect::<Vec<_>>(),
                "seed {seed}: log not exactly-once"
            );
        }
    }

    #[test]
    fn allocator_is_monotonic_and_asks_to_persist_each_block() {
        let mut a = ProducerIdAllocator::new(0);
        let g = a.allocate().unwrap();
        assert_eq!(
            g,
            ProducerIdGrant {
                producer_id: 0,
                persist_high_water: Some(PRODUCER_ID_BLOCK_SIZE)
            }
        );
        for i in 1..PRODUCER_ID_BLOCK_SIZE {
            let g = a.allocate().unwrap();
            assert_eq!((g.producer_id, g.persist_high_water), (i, None));
        }
        let g = a.allocate().unwrap();
        assert_eq!(g.producer_id, PRODUCER_ID_BLOCK_SIZE);
        assert_eq!(g.persist_high_water, Some(2 * PRODUCER_ID_BLOCK_SIZE));
        // Restart from the persisted mark: never reuses an id.
        let mut b = ProducerIdAllocator::new(2 * PRODUCER_ID_BLOCK_SIZE);
        assert_eq!(
            b.allocate().unwrap().producer_id,
            2 * PRODUCER_ID_BLOCK_SIZE
        );
        let mut c = ProducerIdAllocator::new(i64::MAX - 1);
        assert!(c.allocate().is_err());
    }
}
