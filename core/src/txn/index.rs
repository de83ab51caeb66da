//! Per-partition transaction index: which producers have a transaction open in this partition
//! (and from which offset), the last stable offset, and the aborted transactions a
//! read_committed consumer must skip.
//!
//! Fed in offset order with every transactional data batch and every control batch (on append,
//! and when the partition replays its log at start-up). Worked example: producer 7 writes
//! offsets 10–12 in a transaction, a non-transactional batch lands at 13, producer 7's abort
//! marker at 14. Until the marker the LSO is 10 (read_committed sees 0–9); after it the LSO is
//! the high watermark, and the aborted list holds `(7, first 10, last 14)`, so a consumer
//! fetching from 0 is told to drop producer 7's batches from offset 10 until its marker.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Bound on aborted transactions remembered per partition; the oldest are forgotten beyond it
/// (a read_committed consumer reading that far back would then see their records).
pub const MAX_ABORTED_TXNS_PER_PARTITION: usize = 100_000;
/// Bound on producers with an open transaction in one partition.
pub const MAX_ONGOING_TXNS_PER_PARTITION: usize = 100_000;

/// One aborted transaction of this partition (Kafka's `AbortedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of the abort marker.
    pub last_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnIndex {
    /// producer id → first offset of its open transaction here.
    ongoing: BTreeMap<i64, i64>,
    /// The same pairs as (first offset, producer id), so the LSO (asked on every fetch) is the
    /// first element. Invariant: mirrors `ongoing`.
    by_first: BTreeSet<(i64, i64)>,
    /// Ordered by `last_offset` (markers are appended in offset order).
    aborted: VecDeque<AbortedTxn>,
}

impl TxnIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// A transactional data batch of `producer_id` at `base_offset`. Returns false when the
    /// bound on open transactions refuses a new one (the caller rejects the batch).
    pub fn on_data(&mut self, producer_id: i64, base_offset: i64) -> bool {
        if self.ongoing.contains_key(&producer_id) {
            return true;
        }
        if self.ongoing.len() >= MAX_ONGOING_TXNS_PER_PARTITION {
            return false;
        }
        self.ongoing.insert(producer_id, base_offset);
        self.by_first.insert((base_offset, producer_id));
        true
    }

    /// Whether [`Self::on_data`] would accept a batch of `producer_id` (checked before the
    /// batch is appended).
    pub fn can_track(&self, producer_id: i64) -> bool {
        self.ongoing.contains_key(&producer_id)
            || self.ongoing.len() < MAX_ONGOING_TXNS_PER_PARTITION
    }

    /// First offset of `producer_id`'s open transaction here (DescribeProducers'
    /// `currentTxnStartOffset`, which `kafka-transactions.sh find-hanging` reads).
    pub fn ongoing_first_offset(&self, producer_id: i64) -> Option<i64> {
        self.ongoing.get(&producer_id).copied()
    }

    /// Whether `producer_id` has a transaction open here.
    pub fn is_ongoing(&self, producer_id: i64) -> bool {
        self.ongoing.contains_key(&producer_id)
    }

    /// A commit or abort marker of `producer_id` at `offset`. A marker for a producer without
    /// an open transaction here (a repeated marker after a coordinator restart) changes nothing.
    pub fn on_marker(&mut self, producer_id: i64, commit: bool, offset: i64) {
        let Some(first) = self.ongoing.remove(&producer_id) else {
            return;
        };
        self.by_first.remove(&(first, producer_id));
        if !commit {
            if self.aborted.len() >= MAX_ABORTED_TXNS_PER_PARTITION {
                self.aborted.pop_front();
            }
            self.aborted.push_back(AbortedTxn {
                producer_id,
                first_offset: first,
                last_offset: offset,
            });
        }
    }

    /// The first offset of the oldest open transaction.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.by_first.first().map(|&(first, _)| first)
    }

    /// Kafka's last stable offset: nothing at or after it may be shown to read_committed.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.first_unstable_offset()
            .map_or(high_watermark, |f| f.min(high_watermark))
    }

    /// Aborted transactions overlapping offsets `[from, to)`, oldest first.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        // The list is ordered by marker offset: skip the ones that ended before `from`.
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted
            .iter()
            .skip(start)
            .filter(|a| a.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions wholly below the log start offset.
    pub fn truncate_before(&mut self, log_start_offset: i64) {
        while self
            .aborted
            .front()
            .is_some_and(|a| a.last_offset < log_start_offset)
        {
            self.aborted.pop_front();
        }
    }

    pub fn check_invariants(&self) {
        assert!(self.ongoing.len() <= MAX_ONGOING_TXNS_PER_PARTITION);
        let mirrored: BTreeSet<(i64, i64)> = self.ongoing.iter().map(|(&p, &f)| (f, p)).collect();
        assert_eq!(mirrored, self.by_first, "LSO index");
        assert!(self.aborted.len() <= MAX_ABORTED_TXNS_PER_PARTITION);
        for a in &self.aborted {
            assert!(a.first_offset <= a.last_offset, "{a:?}");
        }
        for w in self.aborted.iter().collect::<Vec<_>>().windows(2) {
            assert!(w[0].last_offset < w[1].last_offset, "{w:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worked_example() {
        let mut ix = TxnIndex::new();
        ix.on_data(7, 10);
        ix.on_data(7, 11); // later batches of the same transaction keep the first offset
        assert_eq!(ix.last_stable_offset(14), 10);
        ix.on_marker(7, false, 14);
        assert_eq!(ix.last_stable_offset(15), 15);
        let a = AbortedTxn {
            producer_id: 7,
            first_offset: 10,
            last_offset: 14,
        };
        assert_eq!(ix.aborted_between(0, 15), vec![a]);
        assert_eq!(ix.aborted_between(0, 10), vec![]);
        assert_eq!(ix.aborted_between(15, 20), vec![]);
        assert_eq!(ix.aborted_between(14, 20), vec![a]);
        ix.check_invariants();
        ix.truncate_before(15);
        assert_eq!(ix.aborted_between(0, 100), vec![]);
    }

    #[test]
    fn commits_leave_no_trace_and_lso_is_the_oldest_open_transaction() {
        let mut ix = TxnIndex::new();
        ix.on_data(1, 5);
        ix.on_data(2, 3);
        assert_eq!(ix.last_stable_offset(100), 3);
        assert_eq!(ix.last_stable_offset(2), 2);
        ix.on_marker(2, true, 8);
        assert_eq!(ix.last_stable_offset(100), 5);
        ix.on_marker(2, false, 9); // repeated marker: nothing open for 2
        ix.on_marker(1, true, 10);
        assert_eq!(ix.last_stable_offset(11), 11);
        assert_eq!(ix.aborted_between(0, 100), vec![]);
        ix.check_invariants();
    }
}
