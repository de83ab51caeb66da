//! The per-shard multi-raft engine and its Ready loop.
//!
//! One round of the loop:
//! 1. for every group marked dirty (proposed to, stepped, ticked, or persisted) that has a
//!    `Ready`: apply its committed entries, buffer its new entries and hard state in the WAL, and
//!    hand the Ready back with `advance_append_async` (so proposals may continue meanwhile);
//! 2. one `Wal::flush` for all of them — the group commit — started as its own task, so the loop
//!    goes straight on with the next round: proposals that arrive meanwhile are staged and their
//!    flush writes them while the previous flush's fdatasync is still in flight (the WAL runs one
//!    write phase and one sync phase at once). At most [`MAX_INFLIGHT_FLUSHES`] are in flight;
//! 3. when a flush ends, `on_persist_ready` for each of its groups, which lets raft commit (a
//!    single voter commits what it has persisted); the next round applies.
//!
//! Pipelining the flushes takes a round's wait for the previous round's fdatasync off the
//! latency of every proposal: a proposal waits for its own write and sync, overlapped with the
//! sync before it, instead of a whole round and then its own.
//!
//! Invariants: a group is in `groups` iff it exists in the WAL; only the loop calls `ready()`;
//! a Ready is reported persisted only after a flush that began after its entries were staged
//! has returned (the flush covers everything staged before it starts).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use chronik_storage::{EntryMeta, GroupId, KafkaMeta, Wal};
use raft::eraftpb::Entry;
use raft::{Config, RawNode, StateRole};

use crate::error::{RaftError, Result};
use crate::storage::{entry_kind, from_raft_hard_state, GroupStorage};

/// How often raft's logical clock ticks.
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);
/// Election timeout in ticks (1 s) and heartbeat interval in ticks (100 ms).
pub const ELECTION_TICKS: usize = 10;
pub const HEARTBEAT_TICKS: usize = 1;
/// Bound on groups handled in one round; the rest wait for the next round.
pub const MAX_GROUPS_PER_ROUND: usize = 4096;
/// Group-commit flushes in flight at once: one writing while the one before it syncs. A round
/// that finds this many waits for the oldest to end (more would only queue inside the WAL).
pub const MAX_INFLIGHT_FLUSHES: usize = 2;
/// Entries at least this large are cached as the very buffer raft handed over (no copy); smaller
/// ones are copied into the cache's shared arenas, which hold many small batches in one
/// allocation.
pub const SHARED_PAYLOAD_MIN_BYTES: usize = 64 * 1024;

/// Receives committed entries, in order, per group.
pub trait Applier {
    /// `entries` are committed and durable on a majority; called in index order.
    fn apply(&self, group: GroupId, entries: &[Entry]);
    /// A group's leadership changed (`term` is the new term; `leader` true if this node leads).
    fn role_changed(&self, group: GroupId, term: u64, leader: bool);
    /// The WAL failed (I/O error, full disk): nothing more can be made durable on this shard.
    /// Everything waiting for a commit should be failed now; reads may go on.
    fn storage_failed(&self, error: &RaftError);
}

/// A group's Raft figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    pub leader: bool,
}

/// Where a proposal landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposed {
    pub index: u64,
    pub term: u64,
}

struct Group {
    node: RawNode<GroupStorage>,
    /// Entries in this group carry Kafka record batches (data partitions) rather than commands.
    kafka_log: bool,
    leader: bool,
    /// Number of the newest Ready handed to `advance_append_async` and of the newest one
    /// reported persisted; they differ while a flush carrying this group is in flight.
    handed: u64,
    persisted: u64,
}

/// All raft groups of one shard.
pub struct MultiRaft {
    node_id: u64,
    wal: Rc<Wal>,
    groups: RefCell<BTreeMap<GroupId, Group>>,
    dirty: RefCell<BTreeSet<GroupId>>,
    wake: RefCell<Option<std::task::Waker>>,
    woken: Cell<bool>,
    stopped: Cell<bool>,
    /// Flush tasks running.
    inflight: Cell<usize>,
    /// The error of a failed flush, for the loop to report.
    flush_failed: RefCell<Option<RaftError>>,
    logger: slog::Logger,
}

/// Reads the Kafka offsets and max timestamp of a stored record batch.
pub fn kafka_meta(data: &[u8]) -> Option<KafkaMeta> {
    let h = chronik_protocol::batch::header(data).ok()?;
    let base = h.base_offset.get();
    Some(KafkaMeta {
        base_offset: base,
        last_offset: base + h.last_offset_delta.get() as i64,
        max_timestamp: h.max_timestamp.get(),
    })
}

/// CRC32C of a stored Kafka record batch that is exactly `data`, from the batch's own CRC: that
/// covers every byte from `CRC_START` on and was verified by the produce path (or written by the
/// broker), so only the first 21 bytes are read ([`chronik_storage::crc::combine`]). `None`
/// when `data` is not exactly one v2 batch.
pub fn batch_crc32c(data: &[u8]) -> Option<u32> {
    use chronik_protocol::batch::{CRC_START, LOG_OVERHEAD, MAGIC_V2};
    let h = chronik_protocol::batch::header(data).ok()?;
    let whole = h.batch_length.get() as i64 + LOG_OVERHEAD as i64 == data.len() as i64;
    if h.magic != MAGIC_V2 || !whole {
        return None;
    }
    Some(chronik_storage::crc::combine(
        crc32c::crc32c(&data[..CRC_START]),
        h.crc.get(),
        (data.len() - CRC_START) as u64,
    ))
}

impl MultiRaft {
    pub fn new(node_id: u64, wal: Rc<Wal>) -> Rc<Self> {
        Rc::new(Self {
            node_id,
            wal,
            groups: RefCell::new(BTreeMap::new()),
            dirty: RefCell::new(BTreeSet::new()),
            wake: RefCell::new(None),
            woken: Cell::new(false),
            stopped: Cell::new(false),
            inflight: Cell::new(0),
            flush_failed: RefCell::new(None),
            logger: crate::logger::logger(),
        })
    }

    pub fn wal(&self) -> &Rc<Wal> {
        &self.wal
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Opens (or creates) a group. A new group is bootstrapped with `voters`; an existing one
    /// resumes from its persisted hard state and conf state. With `replay`, every entry in the log
    /// is handed to the applier again (for command logs whose state lives only in memory); without
    /// it, applying resumes after the persisted commit index. A `kafka_log` group opened without
    /// `replay` hands its applier data entries whose `data` is only the record batch header
    /// (`chronik_protocol::batch::HEADER_BYTES`: the offsets and timestamps), not the batch.
    pub fn open_group(
        &self,
        group: GroupId,
        voters: &[u64],
        kafka_log: bool,
        replay: bool,
    ) -> Result<()> {
        if self.groups.borrow().contains_key(&group) {
            return Ok(());
        }
        let fresh = self.wal.group_state(group).is_none();
        if fresh {
            self.wal.create_group(group)?;
            self.wal.set_conf_state(
                group,
                &chronik_storage::ConfState {
                    voters: voters.to_vec(),
                    ..Default::default()
                },
            )?;
        }
        let st = self
            .wal
            .group_state(group)
            .ok_or(RaftError::NoSuchGroup(group))?;
        let applied = if replay {
            st.first_index.saturating_sub(1)
        } else {
            st.hard_state.commit.min(st.last_index)
        };
        let cfg = Config {
            id: self.node_id,
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            applied,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let storage = GroupStorage::new(self.wal.clone(), group);
        // A Kafka partition's apply reads only batch headers; replayed logs need whole records.
        let storage = if kafka_log && !replay {
            storage.with_header_only_apply()
        } else {
            storage
        };
        let mut node = RawNode::new(&cfg, storage, &self.logger)?;
        let single_voter =
            st.conf_state.voters == [self.node_id] && st.conf_state.learners.is_empty();
        if single_voter {
            // Alone in the group: no one else can vote, so win now instead of after a timeout.
            node.campaign()?;
        }
        self.groups.borrow_mut().insert(
            group,
            Group {
                node,
                kafka_log,
                leader: false,
                handed: 0,
                persisted: 0,
            },
        );
        self.mark_dirty(group);
        Ok(())
    }

    /// Drops a group from the engine and the WAL.
    pub fn remove_group(&self, group: GroupId) -> Result<()> {
        self.groups.borrow_mut().remove(&group);
        self.dirty.borrow_mut().remove(&group);
        self.wal.remove_group(group)?;
        Ok(())
    }

    pub fn has_group(&self, group: GroupId) -> bool {
        self.groups.borrow().contains_key(&group)
    }

    pub fn group_ids(&self) -> Vec<GroupId> {
        self.groups.borrow().keys().copied().collect()
    }

    /// Leader and term of a group as this node sees it.
    pub fn leader_of(&self, group: GroupId) -> Option<(u64, u64)> {
        let groups = self.groups.borrow();
        let g = groups.get(&group)?;
        Some((g.node.raft.leader_id, g.node.raft.term))
    }

    pub fn group_status(&self, group: GroupId) -> Option<GroupStatus> {
        let groups = self.groups.borrow();
        let g = groups.get(&group)?;
        let r = &g.node.raft;
        Some(GroupStatus {
            term: r.term,
            commit: r.raft_log.committed,
            applied: r.raft_log.applied,
            last_index: r.raft_log.last_index(),
            leader: r.state == StateRole::Leader,
        })
    }

    pub fn is_leader(&self, group: GroupId) -> bool {
        self.groups
            .borrow()
            .get(&group)
            .is_some_and(|g| g.node.raft.state == StateRole::Leader)
    }

    /// Proposes `data` to `group`. Returns the index and term it was appended at (not yet durable
    /// or committed: the applier sees it when it is).
    pub fn propose(&self, group: GroupId, data: Vec<u8>) -> Result<Proposed> {
        let mut groups = self.groups.borrow_mut();
        let g = groups
            .get_mut(&group)
            .ok_or(RaftError::NoSuchGroup(group))?;
        if g.node.raft.state != StateRole::Leader {
            return Err(RaftError::NotLeader {
                group,
                leader: g.node.raft.leader_id,
            });
        }
        g.node.propose(Vec::new(), data)?;
        let proposed = Proposed {
            index: g.node.raft.raft_log.last_index(),
            term: g.node.raft.term,
        };
        drop(groups);
        self.mark_dirty(group);
        Ok(proposed)
    }

    /// The index the next proposal to `group` will get, if this node leads it.
    pub fn next_index(&self, group: GroupId) -> Option<(u64, u64)> {
        let groups = self.groups.borrow();
        let g = groups.get(&group)?;
        (g.node.raft.state == StateRole::Leader)
            .then(|| (g.node.raft.raft_log.last_index() + 1, g.node.raft.term))
    }

    fn mark_dirty(&self, group: GroupId) {
        self.dirty.borrow_mut().insert(group);
        self.woken.set(true);
        if let Some(w) = self.wake.borrow_mut().take() {
            w.wake();
        }
    }

    /// Stops the loop after its current round.
    pub fn stop(&self) {
        self.stopped.set(true);
        self.woken.set(true);
        if let Some(w) = self.wake.borrow_mut().take() {
            w.wake();
        }
    }

    async fn wait_for_work(&self) {
        std::future::poll_fn(|cx| {
            if self.woken.replace(false) {
                std::task::Poll::Ready(())
            } else {
                *self.wake.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        })
        .await
    }

    /// Ticks every group (raft's logical clock). Called by the shard's timer task.
    pub fn tick_all(&self) {
        let mut ticked = Vec::new();
        for (id, g) in self.groups.borrow_mut().iter_mut() {
            // A single voter has no elections or heartbeats to drive; skip its tick.
            if g.node.raft.prs().conf().voters().ids().len() > 1 && g.node.tick() {
                ticked.push(*id);
            }
        }
        for id in ticked {
            self.mark_dirty(id);
        }
    }

    /// The Ready loop. Runs until [`MultiRaft::stop`]. A WAL failure is reported to the applier
    /// once; the loop then stops making progress (the WAL refuses every write from then on, so
    /// nothing acknowledged can be damaged) but keeps the shard up for reads until stopped.
    pub async fn run(self: Rc<Self>, applier: Rc<dyn Applier>) -> Result<()> {
        if let Err(e) = self.clone().rounds(&*applier).await {
            tracing::error!("raft loop stopped by a storage failure: {e}");
            applier.storage_failed(&e);
            while !self.stopped.get() {
                self.wait_for_work().await;
            }
        }
        Ok(())
    }

    async fn rounds(self: Rc<Self>, applier: &dyn Applier) -> Result<()> {
        let mut persisted: Vec<(GroupId, u64)> = Vec::new();
        loop {
            self.wait_for_work().await;
            loop {
                if let Some(e) = self.flush_failed.borrow_mut().take() {
                    return Err(e);
                }
                if self.inflight.get() >= MAX_INFLIGHT_FLUSHES {
                    // The flush that ends wakes the loop.
                    break;
                }
                persisted.clear();
                let dirty: Vec<GroupId> = {
                    let mut d = self.dirty.borrow_mut();
                    let take: Vec<GroupId> = d.iter().take(MAX_GROUPS_PER_ROUND).copied().collect();
                    for g in &take {
                        d.remove(g);
                    }
                    take
                };
                if dirty.is_empty() {
                    break;
                }
                for gid in dirty {
                    self.handle_ready(gid, applier, &mut persisted)?;
                }
                if !persisted.is_empty() {
                    self.start_flush(std::mem::take(&mut persisted));
                }
                if !self.dirty.borrow().is_empty() {
                    // Let request tasks run between rounds (fairness), then continue.
                    futures_lite::future::yield_now().await;
                }
            }
            if self.stopped.get() {
                // Let the flushes in flight end, so a caller that stops the loop and then
                // flushes the WAL itself finds every Ready reported.
                while self.inflight.get() > 0 {
                    self.wait_for_work().await;
                }
                if let Some(e) = self.flush_failed.borrow_mut().take() {
                    return Err(e);
                }
                return Ok(());
            }
        }
    }

    /// Flushes the WAL in a task of its own and then reports the Readys of `persisted` (group,
    /// Ready number) persisted, waking the loop. Each flush returns once everything staged
    /// before it began is durable, which covers every earlier flush's Readys too; so when a later
    /// flush's task happens to report first, raft's cumulative report is still exact.
    fn start_flush(self: &Rc<Self>, persisted: Vec<(GroupId, u64)>) {
        self.inflight.set(self.inflight.get() + 1);
        let me = self.clone();
        glommio::spawn_local(async move {
            match me.wal.flush().await {
                Ok(_) => {
                    let mut groups = me.groups.borrow_mut();
                    let mut dirty = me.dirty.borrow_mut();
                    for (gid, number) in persisted {
                        if let Some(g) = groups.get_mut(&gid) {
                            // Cumulative in raft: a number already covered is a no-op.
                            g.node.on_persist_ready(number);
                            g.persisted = g.persisted.max(number);
                            if g.node.has_ready() {
                                dirty.insert(gid);
                            }
                        }
                    }
                }
                Err(e) => {
                    me.flush_failed.borrow_mut().get_or_insert(e.into());
                }
            }
            me.inflight.set(me.inflight.get() - 1);
            me.woken.set(true);
            if let Some(w) = me.wake.borrow_mut().take() {
                w.wake();
            }
        })
        .detach();
    }

    fn handle_ready(
        &self,
        gid: GroupId,
        applier: &dyn Applier,
        persisted: &mut Vec<(GroupId, u64)>,
    ) -> Result<()> {
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(&gid) else {
            return Ok(());
        };
        if !g.node.has_ready() {
            return Ok(());
        }
        let mut rd = g.node.ready();
        if let Some(ss) = rd.ss() {
            let leader = ss.raft_state == StateRole::Leader;
            if leader != g.leader {
                g.leader = leader;
                applier.role_changed(gid, g.node.raft.term, leader);
            }
        }
        if !rd.snapshot().is_empty() {
            tracing::warn!(
                group = gid,
                "snapshot install is not supported yet; ignored"
            );
        }
        let committed = rd.take_committed_entries();
        if !committed.is_empty() {
            applier.apply(gid, &committed);
        }
        // Owned entries (raft hands out a copy of its unstable log): a large payload goes into
        // the batch cache as it is, without a second copy.
        for e in rd.take_entries() {
            let kafka = if g.kafka_log && !e.data.is_empty() {
                kafka_meta(&e.data)
            } else {
                None
            };
            let meta = EntryMeta {
                index: e.index,
                term: e.term,
                kind: entry_kind(e.get_entry_type()),
                kafka,
            };
            // Raft may overwrite a suffix (a new leader's entries conflict with ours).
            if let Some(st) = self.wal.index_bounds(gid) {
                if e.index <= st.last_index {
                    self.wal.truncate_suffix(gid, e.index)?;
                }
            }
            if e.data.len() >= SHARED_PAYLOAD_MIN_BYTES {
                // A Kafka batch's CRC spares the WAL its own pass over the payload.
                let crc = if kafka.is_some() {
                    batch_crc32c(&e.data)
                } else {
                    None
                };
                let data = bytes::Bytes::from(e.data);
                match crc {
                    Some(crc) => self.wal.append_shared_with_crc(gid, meta, data, crc)?,
                    None => self.wal.append_shared(gid, meta, data)?,
                };
            } else {
                self.wal.append(gid, meta, &e.data)?;
            }
        }
        if let Some(hs) = rd.hs() {
            self.wal.set_hard_state(gid, &from_raft_hard_state(hs))?;
        }
        if !rd.messages().is_empty() || !rd.persisted_messages().is_empty() {
            tracing::trace!(
                group = gid,
                "messages to peers dropped: no transport on this node"
            );
        }
        if !rd.must_sync() && rd.snapshot().is_empty() && g.handed == g.persisted {
            // Nothing raft needs durable before going on (no entries, term and vote unchanged;
            // a commit index alone can be recomputed after a crash): skip the flush. Every earlier
            // Ready of this group has been reported persisted, so the synchronous advance (which
            // reports all of them) is exact. With a flush of this group in flight, the Ready
            // goes the asynchronous way instead and is reported after that flush.
            let mut light = g.node.advance_append(rd);
            let more = light.take_committed_entries();
            if !more.is_empty() {
                applier.apply(gid, &more);
            }
            g.node.advance_apply();
            return Ok(());
        }
        let number = rd.number();
        g.handed = number;
        g.node.advance_append_async(rd);
        g.node.advance_apply();
        persisted.push((gid, number));
        Ok(())
    }
}
