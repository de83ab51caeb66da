//! `raft::Storage` for one group, read from the shard's WAL.
//!
//! raft-rs calls these methods synchronously. The WAL makes every append visible to reads as soon
//! as it is buffered (before it is durable), which is what raft-rs requires before
//! `advance_append_async`; entries not in the WAL's cache are read back from the segment files.

use std::rc::Rc;

use chronik_storage::{EntryKind, GroupId, Wal};
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

/// One group's view of the shard WAL.
pub struct GroupStorage {
    wal: Rc<Wal>,
    group: GroupId,
    /// Entries read for raft's own use (committed entries to apply, conf-change scans) carry
    /// only this many bytes of a Kafka data payload; entries for followers are always whole.
    apply_head: usize,
}

impl GroupStorage {
    pub fn new(wal: Rc<Wal>, group: GroupId) -> Self {
        Self {
            wal,
            group,
            apply_head: usize::MAX,
        }
    }

    /// A group whose applier needs only each record batch's header (a Kafka partition: its
    /// offsets are in the header, its bytes are already in the WAL): committed entries skip the
    /// copy of the whole batch. raft-rs reads entries through [`raft::Storage::entries`] for
    /// three internal purposes besides replication (`GetEntriesContext::can_async` false):
    /// committed entries for `Ready`, and two scans that look at entry types only.
    pub fn with_header_only_apply(mut self) -> Self {
        self.apply_head = chronik_protocol::batch::HEADER_BYTES;
        self
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    pub fn wal(&self) -> &Rc<Wal> {
        &self.wal
    }

    fn unavailable() -> raft::Error {
        raft::Error::Store(StorageError::Unavailable)
    }

    /// Index bounds without cloning the group's conf state (raft-rs calls these constantly).
    fn bounds(&self) -> raft::Result<chronik_storage::IndexBounds> {
        self.wal
            .index_bounds(self.group)
            .ok_or_else(Self::unavailable)
    }
}

pub fn entry_type(kind: EntryKind) -> EntryType {
    match kind {
        EntryKind::Normal => EntryType::EntryNormal,
        EntryKind::ConfChange => EntryType::EntryConfChange,
        EntryKind::ConfChangeV2 => EntryType::EntryConfChangeV2,
    }
}

pub fn entry_kind(t: EntryType) -> EntryKind {
    match t {
        EntryType::EntryNormal => EntryKind::Normal,
        EntryType::EntryConfChange => EntryKind::ConfChange,
        EntryType::EntryConfChangeV2 => EntryKind::ConfChangeV2,
    }
}

pub fn to_raft_hard_state(hs: &chronik_storage::HardState) -> HardState {
    HardState {
        term: hs.term,
        vote: hs.vote,
        commit: hs.commit,
    }
}

pub fn from_raft_hard_state(hs: &HardState) -> chronik_storage::HardState {
    chronik_storage::HardState {
        term: hs.term,
        vote: hs.vote,
        commit: hs.commit,
    }
}

pub fn to_raft_conf_state(cs: &chronik_storage::ConfState) -> ConfState {
    ConfState {
        voters: cs.voters.clone(),
        learners: cs.learners.clone(),
        voters_outgoing: cs.voters_outgoing.clone(),
        learners_next: cs.learners_next.clone(),
        auto_leave: cs.auto_leave,
    }
}

pub fn from_raft_conf_state(cs: &ConfState) -> chronik_storage::ConfState {
    chronik_storage::ConfState {
        voters: cs.voters.clone(),
        learners: cs.learners.clone(),
        voters_outgoing: cs.voters_outgoing.clone(),
        learners_next: cs.learners_next.clone(),
        auto_leave: cs.auto_leave,
    }
}

impl raft::Storage for GroupStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let st = self
            .wal
            .group_state(self.group)
            .ok_or_else(Self::unavailable)?;
        Ok(RaftState::new(
            to_raft_hard_state(&st.hard_state),
            to_raft_conf_state(&st.conf_state),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let st = self.bounds()?;
        if low < st.first_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > st.last_index + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max = max_size.into().unwrap_or(u64::MAX);
        // Replication (SendAppend, and async fetches) needs whole payloads.
        let head = if context.can_async() {
            usize::MAX
        } else {
            self.apply_head
        };
        let read = self
            .wal
            .read_entries_head(self.group, low, high, max, head)
            .map_err(|e| {
                tracing::error!(group = self.group, low, high, "wal read failed: {e}");
                Self::unavailable()
            })?;
        Ok(read
            .into_iter()
            .map(|(meta, payload)| {
                let mut e = Entry {
                    index: meta.index,
                    term: meta.term,
                    data: payload.to_vec(),
                    ..Default::default()
                };
                e.set_entry_type(entry_type(meta.kind));
                e
            })
            .collect())
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let st = self.bounds()?;
        if idx == st.snapshot_index {
            return Ok(st.snapshot_term);
        }
        if idx < st.first_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > st.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        self.wal
            .term(self.group, idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.bounds()?.first_index)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.bounds()?.last_index)
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Snapshots are only needed to catch up a follower whose log was compacted away; a
        // single-voter group never asks. Replicated groups get them with the cluster transport.
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}
