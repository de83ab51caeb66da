//! Per-group in-memory index: Raft index → WAL position, Kafka offset → Raft index, terms,
//! snapshot point, hard/conf state, log start. Pure data structure, no I/O.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::{ConfState, EntryKind, EntryMeta, GroupState, HardState, KafkaMeta};

/// Where one live entry is and what it is.
#[derive(Clone, Debug)]
pub(crate) struct EntryLoc {
    pub term: u64,
    /// LSN of the first byte of the record.
    pub lsn: u64,
    pub payload_len: u32,
    pub kind: EntryKind,
    pub kafka: Option<KafkaMeta>,
    /// Payload held by the batch cache (always `Some` until the record is written to disk).
    pub cached: Option<Bytes>,
}

impl EntryLoc {
    pub fn record_len(&self) -> u64 {
        crate::format::RECORD_HEADER_BYTES as u64 + self.payload_len as u64
    }
}

/// Which latest state record a pin refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pin {
    Create = 0,
    HardState = 1,
    ConfState = 2,
    Compact = 3,
    LogStart = 4,
}
pub(crate) const PIN_KINDS: usize = 5;

#[derive(Debug, Default)]
pub(crate) struct Group {
    /// Invariant: every entry index <= snapshot_index is gone; `entries[i]` has index
    /// `snapshot_index + 1 + i`.
    pub snapshot_index: u64,
    pub snapshot_term: u64,
    pub entries: VecDeque<EntryLoc>,
    /// `(last_offset, index)` of every data entry, in index order.
    /// Invariant: strictly increasing in both fields.
    pub data: VecDeque<(i64, u64)>,
    pub hard_state: HardState,
    pub conf_state: ConfState,
    /// Explicit log start (DeleteRecords / retention); only moves forward.
    pub log_start: i64,
    /// First Kafka offset not dropped by prefix compaction.
    pub offset_floor: i64,
    /// Sum of payload bytes of live entries.
    pub size_bytes: u64,
    /// Segment base LSN holding the latest record of each state kind (`Pin` order).
    pub pins: [Option<u64>; PIN_KINDS],
}

impl Group {
    pub fn first_index(&self) -> u64 {
        self.snapshot_index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    pub fn get(&self, index: u64) -> Option<&EntryLoc> {
        if index <= self.snapshot_index {
            return None;
        }
        self.entries.get((index - self.snapshot_index - 1) as usize)
    }

    pub fn get_mut(&mut self, index: u64) -> Option<&mut EntryLoc> {
        if index <= self.snapshot_index {
            return None;
        }
        self.entries
            .get_mut((index - self.snapshot_index - 1) as usize)
    }

    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.get(index).map(|e| e.term)
    }

    pub fn meta_of(&self, index: u64, e: &EntryLoc) -> EntryMeta {
        EntryMeta {
            index,
            term: e.term,
            kind: e.kind,
            kafka: e.kafka,
        }
    }

    /// Kafka offset of the next batch.
    pub fn next_offset(&self) -> i64 {
        let n = match self.data.back() {
            Some(&(last, _)) => last + 1,
            None => self.offset_floor,
        };
        n.max(self.log_start_offset())
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start.max(self.offset_floor)
    }

    pub fn state(&self) -> GroupState {
        GroupState {
            first_index: self.first_index(),
            last_index: self.last_index(),
            snapshot_index: self.snapshot_index,
            snapshot_term: self.snapshot_term,
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
            log_start_offset: self.log_start_offset(),
            next_offset: self.next_offset(),
            size_bytes: self.size_bytes,
        }
    }

    /// Adds the next entry. Caller checked `index == last_index + 1`.
    pub fn push(&mut self, index: u64, loc: EntryLoc) {
        debug_assert_eq!(index, self.last_index() + 1);
        if let Some(k) = loc.kafka {
            self.data.push_back((k.last_offset, index));
        }
        self.size_bytes += loc.payload_len as u64;
        self.entries.push_back(loc);
    }

    /// Drops entries with index >= from; calls `gone` for each.
    pub fn truncate_suffix(&mut self, from: u64, mut gone: impl FnMut(&EntryLoc)) {
        let keep = from.saturating_sub(self.first_index()) as usize;
        // Bounded by the number of entries.
        while self.entries.len() > keep {
            let e = self.entries.pop_back().expect("non-empty");
            self.size_bytes -= e.payload_len as u64;
            gone(&e);
        }
        while matches!(self.data.back(), Some(&(_, i)) if i >= from) {
            self.data.pop_back();
        }
    }

    /// Drops entries with index < before and moves the snapshot point to (before-1, term).
    pub fn compact_prefix(&mut self, before: u64, term: u64, mut gone: impl FnMut(&EntryLoc)) {
        // Bounded by the number of entries.
        while self.first_index() < before {
            match self.entries.pop_front() {
                Some(e) => {
                    self.size_bytes -= e.payload_len as u64;
                    if let Some(k) = e.kafka {
                        self.offset_floor = self.offset_floor.max(k.last_offset + 1);
                    }
                    gone(&e);
                    self.snapshot_index += 1;
                }
                None => {
                    self.snapshot_index = before - 1;
                }
            }
        }
        while matches!(self.data.front(), Some(&(_, i)) if i < before) {
            self.data.pop_front();
        }
        self.snapshot_index = before - 1;
        self.snapshot_term = term;
    }

    /// Position in `data` of the first data entry whose last_offset >= offset.
    pub fn data_from_offset(&self, offset: i64) -> usize {
        self.data.partition_point(|&(last, _)| last < offset)
    }

    /// Checks the invariants written on the fields; panics with a description if broken.
    #[cfg(test)]
    pub fn check_invariants(&self) {
        let mut size = 0u64;
        let mut data = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            size += e.payload_len as u64;
            if let Some(k) = e.kafka {
                data.push((k.last_offset, self.snapshot_index + 1 + i as u64));
            }
        }
        assert_eq!(size, self.size_bytes, "size_bytes");
        assert_eq!(
            data,
            self.data.iter().copied().collect::<Vec<_>>(),
            "data index"
        );
        for w in data.windows(2) {
            assert!(
                w[0].0 < w[1].0 && w[0].1 < w[1].1,
                "data index not increasing"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(term: u64, kafka: Option<(i64, i64)>) -> EntryLoc {
        EntryLoc {
            term,
            lsn: 0,
            payload_len: 10,
            kind: EntryKind::Normal,
            kafka: kafka.map(|(b, l)| KafkaMeta {
                base_offset: b,
                last_offset: l,
                max_timestamp: 0,
            }),
            cached: None,
        }
    }

    #[test]
    fn truncate_and_compact_keep_indexes_consistent() {
        let mut g = Group::default();
        for i in 1..=10u64 {
            let k = if i % 3 == 0 {
                None
            } else {
                Some(((i * 10) as i64, (i * 10 + 9) as i64))
            };
            g.push(i, loc(1, k));
            g.check_invariants();
        }
        assert_eq!(g.next_offset(), 110);
        g.truncate_suffix(8, |_| {});
        g.check_invariants();
        assert_eq!(g.last_index(), 7);
        assert_eq!(g.next_offset(), 80);
        g.compact_prefix(5, 1, |_| {});
        g.check_invariants();
        assert_eq!((g.first_index(), g.snapshot_index), (5, 4));
        assert_eq!(g.log_start_offset(), 50);
        assert_eq!(g.term(4), Some(1));
        assert_eq!(g.term(3), None);
        // Compacting past the end (snapshot install) empties the log.
        g.compact_prefix(20, 3, |_| {});
        g.check_invariants();
        assert_eq!((g.first_index(), g.last_index()), (20, 19));
        assert_eq!(g.next_offset(), 80);
    }
}
