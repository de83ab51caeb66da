//! [`GroupCoordinator`]: request handlers and timers for one `__consumer_offsets` partition.
//!
//! Handlers follow Kafka's classic `GroupCoordinator` (3.x) decision by decision; the comments
//! name the Kafka behaviour where it is not obvious. Every handler first runs due timers, so a
//! request never observes a member that should already have expired.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::records::{self, Decoded, LogRecord, OffsetValue, RecordError};
use super::state::{
    join_error, join_response, sync_response, Ctx, Group, GroupState, JoinFields, Member, Waiter,
};
use super::{
    GroupConfig, Token, MAX_GROUPS_PER_COORDINATOR, MAX_ID_BYTES, MAX_MEMBERS_PER_GROUP,
    MAX_TIMER_ROUNDS, NEW_MEMBER_JOIN_TIMEOUT_MS,
};

/// Bound on protocols one member may offer in JoinGroup (clients send 1–3).
pub const MAX_PROTOCOLS_PER_MEMBER: usize = 64;
/// Bound on attempts to draw a member id that is not already in use.
const MAX_MEMBER_ID_ATTEMPTS: usize = 8;

/// Answer to a request that may have to wait for a rebalance step.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply<R> {
    /// Send this response now.
    Now(R),
    /// Parked under the request's [`Token`]; the response comes out of [`Output::completions`].
    Later,
}

/// A response for a parked request.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
}

/// Side effects queued by handlers and timers; drain with [`GroupCoordinator::take_output`]
/// after every call.
#[derive(Debug, Default)]
pub struct Output {
    /// Responses for parked requests, in the order they completed.
    pub completions: Vec<(Token, Completion)>,
    /// Group metadata records and expiry tombstones to append to the partition. The broker
    /// delivers `completions` (and answers the call that produced them) only once these are
    /// committed; call [`GroupCoordinator::apply`] when they commit anyway.
    pub records: Vec<LogRecord>,
}

/// The classic-protocol group coordinator for one `__consumer_offsets` partition.
#[derive(Debug)]
pub struct GroupCoordinator {
    partition: i32,
    cfg: GroupConfig,
    /// BTreeMap so timers fire and groups list in a deterministic order.
    pub(super) groups: BTreeMap<String, Group>,
    /// (earliest deadline, group id) for every group with a timer. Invariant: exactly one entry
    /// per such group, equal to `Group::next_deadline_ms()` between calls, so timers cost
    /// O(due groups), not O(groups), per request.
    timers: BTreeSet<(i64, String)>,
    pub(super) out: Output,
    /// Set by the first request or tick. Before it, `apply` replays the log (group metadata
    /// included); after it, group metadata in the log only echoes what memory already holds.
    /// The switch completes the replay of KIP-848 groups (`finish_replay`).
    serving: bool,
    member_id_counter: u64,
    next_retention_check_ms: Option<i64>,
    /// Offsets committed inside open transactions (TxnOffsetCommit), by producer id.
    pub(super) pending_txn: super::txn_offsets::PendingTxnOffsets,
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Kafka `validateCurrentMember`: an instance id must exist and map to this member id; a member
/// id must be a member.
fn validate_member(g: &Group, member_id: &str, instance: Option<&str>) -> Option<ResponseError> {
    if let Some(iid) = instance {
        match g.static_members.get(iid) {
            None => return Some(ResponseError::UnknownMemberId),
            Some(m) if m != member_id => return Some(ResponseError::FencedInstanceId),
            Some(_) => {}
        }
    }
    if !g.members.contains_key(member_id) {
        return Some(ResponseError::UnknownMemberId);
    }
    None
}

/// What a JoinGroup request asks for, validated and owned.
struct JoinArgs<'a> {
    member_id: &'a str,
    instance: Option<&'a str>,
    client_id: &'a str,
    client_host: &'a str,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocol_type: &'a str,
    protocols: Vec<(String, Bytes)>,
    waiter: Waiter,
}

impl GroupCoordinator {
    pub fn new(partition: i32, cfg: GroupConfig) -> Self {
        assert!(cfg.min_session_timeout_ms <= cfg.max_session_timeout_ms);
        assert!(
            cfg.offset_metadata_max_bytes <= MAX_ID_BYTES,
            "metadata must fit a Kafka string"
        );
        GroupCoordinator {
            partition,
            cfg,
            groups: BTreeMap::new(),
            timers: BTreeSet::new(),
            out: Output::default(),
            serving: false,
            member_id_counter: 0,
            next_retention_check_ms: None,
            pending_txn: Default::default(),
        }
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn config(&self) -> &GroupConfig {
        &self.cfg
    }

    /// Drains queued completions and records.
    pub fn take_output(&mut self) -> Output {
        std::mem::take(&mut self.out)
    }

    /// True if [`Self::take_output`] has something to deliver or append.
    pub fn has_output(&self) -> bool {
        !self.out.completions.is_empty() || !self.out.records.is_empty()
    }

    pub fn group_state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(|g| g.state)
    }

    pub fn generation(&self, group_id: &str) -> Option<i32> {
        self.groups.get(group_id).map(|g| g.generation_id)
    }

    pub fn group_ids(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    /// Members of a group in join order (member id, instance id).
    pub fn members(&self, group_id: &str) -> Vec<(String, Option<String>)> {
        self.groups.get(group_id).map_or_else(Vec::new, |g| {
            g.members
                .values()
                .map(|m| (m.member_id.clone(), m.group_instance_id.clone()))
                .collect()
        })
    }

    /// The committed offset of one partition, if any.
    pub fn committed(&self, group_id: &str, topic: &str, partition: i32) -> Option<&OffsetValue> {
        self.groups
            .get(group_id)?
            .offsets
            .get(&(topic.to_owned(), partition))
    }

    /// All committed offsets of a group, ordered by (topic, partition).
    pub fn committed_offsets(&self, group_id: &str) -> Vec<(String, i32, OffsetValue)> {
        self.groups.get(group_id).map_or_else(Vec::new, |g| {
            g.offsets
                .iter()
                .map(|((t, p), v)| (t.clone(), *p, v.clone()))
                .collect()
        })
    }

    fn ctx_parts(&mut self, now_ms: i64) -> (&mut BTreeMap<String, Group>, Ctx<'_>) {
        (
            &mut self.groups,
            Ctx {
                cfg: &self.cfg,
                out: &mut self.out,
                now_ms,
            },
        )
    }

    fn take_completion(&mut self, token: Token) -> Option<Completion> {
        let i = self.out.completions.iter().position(|(t, _)| *t == token)?;
        Some(self.out.completions.remove(i).1)
    }

    /// Forgets a group that holds nothing worth keeping (created by a request that failed, or
    /// only ever held pending members that expired): nothing about it was ever persisted.
    fn maybe_forget(&mut self, group_id: &str) {
        if let Some(g) = self.groups.get(group_id) {
            if g.state == GroupState::Empty
                && g.generation_id == 0
                && g.consumer
                    .as_ref()
                    .is_none_or(|c| c.epoch == 0 && c.members.is_empty())
                && g.members.is_empty()
                && g.pending_members.is_empty()
                && g.offsets.is_empty()
            {
                self.remove_group(group_id);
            }
        }
    }

    fn remove_group(&mut self, group_id: &str) -> Option<Group> {
        let g = self.groups.remove(group_id)?;
        if let Some(d) = g.indexed_deadline_ms {
            self.timers.remove(&(d, group_id.to_owned()));
        }
        Some(g)
    }

    /// Brings the timer index entry of `group_id` up to date after its state changed.
    fn reindex(&mut self, group_id: &str) {
        let Some(g) = self.groups.get_mut(group_id) else {
            return;
        };
        let next = g.next_deadline_ms();
        if next == g.indexed_deadline_ms {
            return;
        }
        if let Some(old) = g.indexed_deadline_ms.take() {
            self.timers.remove(&(old, group_id.to_owned()));
        }
        if let Some(d) = next {
            self.timers.insert((d, group_id.to_owned()));
        }
        g.indexed_deadline_ms = next;
    }

    /// After a handler changed `group_id`: re-index it, fire timers that became due at once
    /// (e.g. an initial rebalance delay of 0) and drop the group if it holds nothing.
    pub(super) fn settle(&mut self, group_id: &str, now_ms: i64) {
        self.reindex(group_id);
        self.run_timers(now_ms);
        self.maybe_forget(group_id);
    }

    pub(super) fn new_member_id(&mut self, prefix: &str, now_ms: i64) -> String {
        // Kafka uses `clientId-UUID`. A UUID-shaped id drawn from (partition, time, counter)
        // keeps ids unique across coordinator restarts and deterministic under a virtual clock.
        let prefix = truncate_utf8(prefix, MAX_ID_BYTES / 2);
        self.member_id_counter += 1;
        let seed = (now_ms as u64) ^ ((self.partition as u64) << 48) ^ self.member_id_counter;
        let a = splitmix64(seed);
        let b = splitmix64(a ^ self.member_id_counter.rotate_left(32));
        format!(
            "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    // ------------------------------------------------------------------ JoinGroup

    /// JoinGroup v0–v9. `client_id`/`client_host` come from the request header and connection.
    pub fn join_group(
        &mut self,
        token: Token,
        req: &JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
        now_ms: i64,
    ) -> Reply<JoinGroupResponse> {
        self.run_timers(now_ms);
        let group_id = req.group_id.0.as_str().to_owned();
        let immediate = self.join_inner(token, req, version, client_id, client_host, now_ms);
        self.settle(&group_id, now_ms);
        match immediate {
            Some(r) => Reply::Now(r),
            None => match self.take_completion(token) {
                Some(Completion::Join(r)) => Reply::Now(r),
                Some(other) => unreachable!("join token completed with {other:?}"),
                None => Reply::Later,
            },
        }
    }

    fn join_inner(
        &mut self,
        token: Token,
        req: &JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
        now_ms: i64,
    ) -> Option<JoinGroupResponse> {
        let group_id = req.group_id.0.as_str();
        let member_id = req.member_id.as_str();
        let err = |e| Some(join_error(version, e, member_id));
        if group_id.is_empty() || group_id.len() > MAX_ID_BYTES {
            return err(ResponseError::InvalidGroupId);
        }
        let instance = req.group_instance_id.as_ref().map(|s| s.as_str());
        if member_id.len() > MAX_ID_BYTES
            || instance.is_some_and(|i| i.is_empty() || i.len() > MAX_ID_BYTES)
            || req.protocol_type.len() > MAX_ID_BYTES
            || req.protocols.len() > MAX_PROTOCOLS_PER_MEMBER
        {
            return err(ResponseError::InvalidRequest);
        }
        let session = req.session_timeout_ms;
        if session < self.cfg.min_session_timeout_ms || session > self.cfg.max_session_timeout_ms {
            return err(ResponseError::InvalidSessionTimeout);
        }
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        let rebalance = if version == 0 || req.rebalance_timeout_ms <= 0 {
            session
        } else {
            req.rebalance_timeout_ms
        };
        let mut protocols: Vec<(String, Bytes)> = Vec::with_capacity(req.protocols.len());
        for p in &req.protocols {
            if p.name.len() > MAX_ID_BYTES {
                return err(ResponseError::InvalidRequest);
            }
            // Kafka keys the protocol collection by name: the first occurrence wins.
            if !protocols.iter().any(|(n, _)| n == p.name.as_str()) {
                protocols.push((p.name.to_string(), p.metadata.clone()));
            }
        }
        if !self.groups.contains_key(group_id) {
            if !member_id.is_empty() {
                return err(ResponseError::UnknownMemberId);
            }
            if self.groups.len() >= MAX_GROUPS_PER_COORDINATOR {
                return err(ResponseError::CoordinatorNotAvailable);
            }
            self.groups
                .insert(group_id.to_owned(), Group::new(group_id.to_owned(), now_ms));
        }
        let new_id = member_id.is_empty().then(|| {
            let prefix = instance.unwrap_or(client_id);
            let mut id = String::new();
            for _ in 0..MAX_MEMBER_ID_ATTEMPTS {
                id = self.new_member_id(prefix, now_ms);
                let g = &self.groups[group_id];
                if !g.members.contains_key(&id) && !g.pending_members.contains_key(&id) {
                    break;
                }
            }
            id
        });
        let max_size = self.cfg.group_max_size.min(MAX_MEMBERS_PER_GROUP);
        let args = JoinArgs {
            member_id,
            instance,
            client_id: truncate_utf8(client_id, MAX_ID_BYTES),
            client_host: truncate_utf8(client_host, MAX_ID_BYTES),
            session_timeout_ms: session,
            rebalance_timeout_ms: rebalance,
            protocol_type: req.protocol_type.as_str(),
            protocols,
            waiter: Waiter { token, version },
        };
        if let Some(c) = self.groups[group_id].consumer.as_deref() {
            // A consumer group takes classic members only once it is empty; then it turns
            // back into a classic group (keeping its offsets).
            if !c.members.is_empty() {
                return err(ResponseError::InconsistentGroupProtocol);
            }
            let tombstones = c.tombstones(group_id);
            self.groups.get_mut(group_id).expect("present").consumer = None;
            self.out.records.extend(tombstones);
        }
        let (groups, mut ctx) = self.ctx_parts(now_ms);
        let g = groups.get_mut(group_id).expect("inserted above");
        if g.state == GroupState::Dead {
            return err(ResponseError::CoordinatorNotAvailable);
        }
        if !g.supports_protocols(args.protocol_type, &args.protocols) {
            return err(ResponseError::InconsistentGroupProtocol);
        }
        let r = match new_id {
            Some(new_id) => join_unknown(g, new_id, args, version, max_size, &mut ctx),
            None => join_known(g, args, version, &mut ctx),
        };
        if g.state == GroupState::PreparingRebalance {
            g.try_complete_join(&mut ctx);
        }
        r
    }

    // ------------------------------------------------------------------ SyncGroup

    /// SyncGroup v0–v5.
    pub fn sync_group(
        &mut self,
        token: Token,
        req: &SyncGroupRequest,
        version: i16,
        now_ms: i64,
    ) -> Reply<SyncGroupResponse> {
        self.run_timers(now_ms);
        let immediate = self.sync_inner(token, req, version, now_ms);
        self.settle(req.group_id.0.as_str(), now_ms);
        match immediate {
            Some(r) => Reply::Now(r),
            None => match self.take_completion(token) {
                Some(Completion::Sync(r)) => Reply::Now(r),
                Some(other) => unreachable!("sync token completed with {other:?}"),
                None => Reply::Later,
            },
        }
    }

    fn sync_inner(
        &mut self,
        token: Token,
        req: &SyncGroupRequest,
        version: i16,
        now_ms: i64,
    ) -> Option<SyncGroupResponse> {
        let err = |e| Some(sync_response(version, Some(e), None, None, Bytes::new()));
        let member_id = req.member_id.as_str();
        let instance = req.group_instance_id.as_ref().map(|s| s.as_str());
        let (groups, mut ctx) = self.ctx_parts(now_ms);
        let Some(g) = groups.get_mut(req.group_id.0.as_str()) else {
            return err(ResponseError::UnknownMemberId);
        };
        if g.state == GroupState::Dead {
            return err(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(e) = validate_member(g, member_id, instance) {
            return err(e);
        }
        if req.generation_id != g.generation_id {
            return err(ResponseError::IllegalGeneration);
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|p| g.protocol_type.as_deref() != Some(p.as_str()))
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|p| g.protocol_name.as_deref() != Some(p.as_str()))
        {
            return err(ResponseError::InconsistentGroupProtocol);
        }
        let resp = match g.state {
            GroupState::Empty => err(ResponseError::UnknownMemberId),
            GroupState::Dead => err(ResponseError::CoordinatorNotAvailable),
            GroupState::PreparingRebalance => err(ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                let m = &mut g.members[member_id];
                if let Some(old) = m.awaiting_sync.replace(Waiter { token, version }) {
                    let r = sync_response(
                        old.version,
                        Some(ResponseError::RebalanceInProgress),
                        None,
                        None,
                        Bytes::new(),
                    );
                    ctx.complete(old, Completion::Sync(r));
                }
                g.pending_sync.remove(member_id);
                if g.is_leader(member_id) {
                    // Entries for non-members are ignored; members the leader left out get an
                    // empty assignment (Kafka logs the same).
                    let assignments: BTreeMap<String, Bytes> = req
                        .assignments
                        .iter()
                        .take(MAX_MEMBERS_PER_GROUP)
                        .filter(|a| g.members.contains_key(a.member_id.as_str()))
                        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                        .collect();
                    g.complete_sync(&assignments, &mut ctx);
                }
                None
            }
            GroupState::Stable => {
                g.pending_sync.remove(member_id);
                g.schedule_heartbeat(member_id, now_ms);
                let m = &g.members[member_id];
                Some(sync_response(
                    version,
                    None,
                    g.protocol_type.clone(),
                    g.protocol_name.clone(),
                    m.assignment.clone(),
                ))
            }
        };
        if g.pending_sync.is_empty() {
            g.sync_deadline_ms = None;
        }
        resp
    }

    // ------------------------------------------------------------------ Heartbeat

    /// Heartbeat v0–v4.
    pub fn heartbeat(
        &mut self,
        req: &HeartbeatRequest,
        version: i16,
        now_ms: i64,
    ) -> HeartbeatResponse {
        let _ = version; // every version has the same shape
        self.run_timers(now_ms);
        let error = self.heartbeat_inner(req, now_ms);
        self.settle(req.group_id.0.as_str(), now_ms);
        let mut r = HeartbeatResponse::default();
        r.error_code = error.map_or(0, |e| e.code());
        r
    }

    fn heartbeat_inner(&mut self, req: &HeartbeatRequest, now_ms: i64) -> Option<ResponseError> {
        let member_id = req.member_id.as_str();
        let instance = req.group_instance_id.as_ref().map(|s| s.as_str());
        let Some(g) = self.groups.get_mut(req.group_id.0.as_str()) else {
            return Some(ResponseError::UnknownMemberId);
        };
        if g.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(e) = validate_member(g, member_id, instance) {
            return Some(e);
        }
        if req.generation_id != g.generation_id {
            return Some(ResponseError::IllegalGeneration);
        }
        match g.state {
            GroupState::Empty => Some(ResponseError::UnknownMemberId),
            GroupState::Dead => Some(ResponseError::CoordinatorNotAvailable),
            // Consumers may heartbeat between their JoinGroup and SyncGroup responses.
            GroupState::CompletingRebalance | GroupState::Stable => {
                g.schedule_heartbeat(member_id, now_ms);
                None
            }
            GroupState::PreparingRebalance => {
                g.schedule_heartbeat(member_id, now_ms);
                Some(ResponseError::RebalanceInProgress)
            }
        }
    }

    // ------------------------------------------------------------------ LeaveGroup

    /// LeaveGroup v0–v5 (v3+ batched members, identified by member id and/or instance id).
    pub fn leave_group(
        &mut self,
        req: &LeaveGroupRequest,
        version: i16,
        now_ms: i64,
    ) -> LeaveGroupResponse {
        self.run_timers(now_ms);
        let identities: Vec<(String, Option<String>)> = if version < 3 {
            vec![(req.member_id.to_string(), None)]
        } else {
            req.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|s| s.to_string()),
                    )
                })
                .collect()
        };
        let group_id = req.group_id.0.as_str().to_owned();
        let (groups, mut ctx) = self.ctx_parts(now_ms);
        let mut top: Option<ResponseError> = None;
        let mut results = Vec::with_capacity(identities.len());
        match groups.get_mut(group_id.as_str()) {
            None => {
                for (mid, iid) in identities {
                    results.push((mid, iid, Some(ResponseError::UnknownMemberId)));
                }
            }
            Some(g) if g.state == GroupState::Dead => {
                top = Some(ResponseError::CoordinatorNotAvailable)
            }
            Some(g) => {
                for (mid, iid) in identities {
                    let e = leave_one(g, &mid, iid.as_deref(), &mut ctx);
                    results.push((mid, iid, e));
                }
            }
        }
        self.settle(&group_id, now_ms);
        let mut r = LeaveGroupResponse::default();
        if version < 3 {
            r.error_code = top
                .or_else(|| results.first().and_then(|x| x.2))
                .map_or(0, |e| e.code());
        } else {
            r.error_code = top.map_or(0, |e| e.code());
            r.members = results
                .into_iter()
                .map(|(mid, iid, e)| {
                    let mut m = MemberResponse::default();
                    m.member_id = StrBytes::from_string(mid);
                    m.group_instance_id = iid.map(StrBytes::from_string);
                    m.error_code = e.map_or(0, |e| e.code());
                    m
                })
                .collect();
        }
        r
    }

    // ------------------------------------------------------------------ OffsetCommit

    /// OffsetCommit v2–v9. Returns the records to append and the response to send once they are
    /// durable; offsets become visible to OffsetFetch when the broker calls [`Self::apply`] on
    /// each committed record. (If the append fails, answer every partition with the append's
    /// error instead.)
    pub fn offset_commit(
        &mut self,
        req: &OffsetCommitRequest,
        version: i16,
        now_ms: i64,
    ) -> (Vec<LogRecord>, OffsetCommitResponse) {
        self.run_timers(now_ms);
        let group_id = req.group_id.0.as_str();
        let group_error = self.validate_commit(req, version, now_ms);
        self.settle(group_id, now_ms);
        // v2–v4 carry a retention; -1 means "broker default" (retention counted from Empty).
        let expire = if (2..=4).contains(&version) && req.retention_time_ms >= 0 {
            now_ms.saturating_add(req.retention_time_ms)
        } else {
            -1
        };
        let mut recs = Vec::new();
        let mut resp = OffsetCommitResponse::default();
        for t in &req.topics {
            let mut rt = OffsetCommitResponseTopic::default();
            rt.name = t.name.clone();
            rt.topic_id = t.topic_id;
            for p in &t.partitions {
                let metadata = p.committed_metadata.as_ref().map_or("", |m| m.as_str());
                let error = if group_error.is_some() {
                    group_error
                } else if t.name.0.is_empty() || t.name.0.len() > MAX_ID_BYTES {
                    Some(ResponseError::UnknownTopicOrPartition)
                } else if metadata.len() > self.cfg.offset_metadata_max_bytes {
                    Some(ResponseError::OffsetMetadataTooLarge)
                } else {
                    let v = OffsetValue {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: metadata.to_owned(),
                        commit_timestamp_ms: now_ms,
                        expire_timestamp_ms: expire,
                    };
                    recs.push(records::offset_commit_record(
                        group_id,
                        t.name.0.as_str(),
                        p.partition_index,
                        &v,
                    ));
                    None
                };
                let mut rp = OffsetCommitResponsePartition::default();
                rp.partition_index = p.partition_index;
                rp.error_code = error.map_or(0, |e| e.code());
                rt.partitions.push(rp);
            }
            resp.topics.push(rt);
        }
        (recs, resp)
    }

    fn validate_commit(
        &mut self,
        req: &OffsetCommitRequest,
        version: i16,
        now_ms: i64,
    ) -> Option<ResponseError> {
        let group_id = req.group_id.0.as_str();
        if group_id.is_empty() || group_id.len() > MAX_ID_BYTES {
            return Some(ResponseError::InvalidGroupId);
        }
        let generation = req.generation_id_or_member_epoch;
        let member_id = req.member_id.as_str();
        let instance = req.group_instance_id.as_ref().map(|s| s.as_str());
        let Some(g) = self.groups.get_mut(group_id) else {
            // No group: only a "simple" consumer (no group management) may commit.
            return (generation >= 0).then_some(ResponseError::IllegalGeneration);
        };
        if g.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(c) = g.consumer.as_deref_mut() {
            let e = super::consumer::validate_commit(c, member_id, generation, version, false);
            if e.is_none() {
                // A commit proves the member is alive, like a heartbeat.
                let session = i64::from(self.cfg.consumer_session_timeout_ms);
                if let Some(m) = c.members.get_mut(member_id) {
                    m.session_deadline_ms = m.session_deadline_ms.max(now_ms + session);
                }
            }
            return e;
        }
        if generation < 0 && g.state == GroupState::Empty {
            return None;
        }
        if generation >= 0 || !member_id.is_empty() || instance.is_some() {
            if let Some(e) = validate_member(g, member_id, instance) {
                return Some(e);
            }
            if generation != g.generation_id {
                return Some(ResponseError::IllegalGeneration);
            }
        } else if g.state != GroupState::Empty {
            // Once a group has members only they may commit.
            return Some(ResponseError::UnknownMemberId);
        }
        if g.state == GroupState::CompletingRebalance {
            // The member knows the new generation but has no assignment yet.
            return Some(ResponseError::RebalanceInProgress);
        }
        // A commit proves the member is alive, like a heartbeat.
        g.schedule_heartbeat(member_id, now_ms);
        None
    }

    // ------------------------------------------------------------------ OffsetFetch

    /// OffsetFetch v1–v9. For v8+ this answers the groups of `req.groups` that this coordinator
    /// owns; the broker splits batched requests by [`super::partition_for_group`] and
    /// concatenates the `groups` of the answers. Topics are matched by name: for topic-id based
    /// requests the broker fills in names first.
    pub fn offset_fetch(&self, req: &OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        let mut r = OffsetFetchResponse::default();
        if version >= 8 {
            r.groups = req
                .groups
                .iter()
                .map(|g| self.offset_fetch_group(g, version))
                .collect();
            return r;
        }
        let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                .collect()
        });
        let (error, topics) = self.fetch_internal(req.group_id.0.as_str(), wanted.as_deref());
        if version >= 2 {
            r.error_code = error.map_or(0, |e| e.code());
        }
        for (name, parts) in topics {
            let mut t = OffsetFetchResponseTopic::default();
            t.name = TopicName(StrBytes::from_string(name));
            for (p, v) in parts {
                let mut rp = OffsetFetchResponsePartition::default();
                rp.partition_index = p;
                rp.committed_offset = v.as_ref().map_or(-1, |v| v.offset);
                if version >= 5 {
                    rp.committed_leader_epoch = v.as_ref().map_or(-1, |v| v.leader_epoch);
                }
                rp.metadata = Some(StrBytes::from_string(
                    v.map(|v| v.metadata).unwrap_or_default(),
                ));
                t.partitions.push(rp);
            }
            r.topics.push(t);
        }
        r
    }

    /// One group of a v8+ OffsetFetch.
    pub fn offset_fetch_group(
        &self,
        req: &OffsetFetchRequestGroup,
        version: i16,
    ) -> OffsetFetchResponseGroup {
        let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                .collect()
        });
        let ids: BTreeMap<String, _> = req
            .topics
            .iter()
            .flatten()
            .map(|t| (t.name.0.to_string(), t.topic_id))
            .collect();
        let (error, topics) = self.fetch_internal(req.group_id.0.as_str(), wanted.as_deref());
        let mut g = OffsetFetchResponseGroup::default();
        g.group_id = req.group_id.clone();
        g.error_code = error.map_or(0, |e| e.code());
        for (name, parts) in topics {
            let mut t = OffsetFetchResponseTopics::default();
            if version >= 10 {
                t.topic_id = ids.get(&name).copied().unwrap_or_default();
            }
            t.name = TopicName(StrBytes::from_string(name));
            for (p, v) in parts {
                let mut rp = OffsetFetchResponsePartitions::default();
                rp.partition_index = p;
                rp.committed_offset = v.as_ref().map_or(-1, |v| v.offset);
                rp.committed_leader_epoch = v.as_ref().map_or(-1, |v| v.leader_epoch);
                rp.metadata = Some(StrBytes::from_string(
                    v.map(|v| v.metadata).unwrap_or_default(),
                ));
                t.partitions.push(rp);
            }
            g.topics.push(t);
        }
        g
    }

    #[allow(clippy::type_complexity)]
    fn fetch_internal(
        &self,
        group_id: &str,
        wanted: Option<&[(String, Vec<i32>)]>,
    ) -> (
        Option<ResponseError>,
        Vec<(String, Vec<(i32, Option<OffsetValue>)>)>,
    ) {
        if group_id.is_empty() {
            return (Some(ResponseError::InvalidGroupId), Vec::new());
        }
        let g = self.groups.get(group_id);
        match wanted {
            Some(topics) => {
                let out = topics
                    .iter()
                    .map(|(name, parts)| {
                        let ps = parts
                            .iter()
                            .map(|p| {
                                (
                                    *p,
                                    g.and_then(|g| g.offsets.get(&(name.clone(), *p))).cloned(),
                                )
                            })
                            .collect();
                        (name.clone(), ps)
                    })
                    .collect();
                (None, out)
            }
            None => {
                let mut out: Vec<(String, Vec<(i32, Option<OffsetValue>)>)> = Vec::new();
                for ((t, p), v) in g.map(|g| g.offsets.iter()).into_iter().flatten() {
                    match out.last_mut() {
                        Some((name, ps)) if name == t => ps.push((*p, Some(v.clone()))),
                        _ => out.push((t.clone(), vec![(*p, Some(v.clone()))])),
                    }
                }
                (None, out)
            }
        }
    }

    // ------------------------------------------------------------------ Describe / List

    /// One group of DescribeGroups v0–v6 (authorized_operations is left for the broker).
    pub fn describe_group(&self, group_id: &str, version: i16) -> DescribedGroup {
        let mut d = DescribedGroup::default();
        d.group_id = GroupId(sb(group_id));
        if group_id.is_empty() {
            d.error_code = ResponseError::InvalidGroupId.code();
            return d;
        }
        let Some(g) = self.groups.get(group_id) else {
            d.group_state = sb(GroupState::Dead.as_str());
            if version >= 6 {
                d.error_code = ResponseError::GroupIdNotFound.code();
            }
            return d;
        };
        if let Some(c) = g.consumer.as_deref() {
            return super::consumer::describe_classic(g, c, version);
        }
        d.group_state = sb(g.state.as_str());
        d.protocol_type = sb(g.protocol_type.as_deref().unwrap_or(""));
        // Like Kafka, member metadata and assignments are shown only when Stable.
        let stable = g.state == GroupState::Stable;
        let protocol = if stable {
            g.protocol_name.clone().unwrap_or_default()
        } else {
            String::new()
        };
        d.protocol_data = sb(&protocol);
        d.members = g
            .members
            .values()
            .map(|m| {
                let mut dm = DescribedGroupMember::default();
                dm.member_id = sb(&m.member_id);
                if version >= 4 {
                    dm.group_instance_id = m.group_instance_id.as_deref().map(sb);
                }
                dm.client_id = sb(&m.client_id);
                dm.client_host = sb(&m.client_host);
                if stable {
                    dm.member_metadata = m.metadata_for(&protocol);
                    dm.member_assignment = m.assignment.clone();
                }
                dm
            })
            .collect();
        d
    }

    /// ListGroups v0–v5 for this coordinator's groups, filtered by state (v4+, case-insensitive)
    /// and type (v5+; every group here is "classic").
    pub fn list_groups(&self, req: &ListGroupsRequest, version: i16) -> Vec<ListedGroup> {
        let states: Vec<String> = if version >= 4 {
            req.states_filter.iter().map(|s| s.to_lowercase()).collect()
        } else {
            Vec::new()
        };
        let types: Vec<String> = if version >= 5 {
            req.types_filter.iter().map(|s| s.to_lowercase()).collect()
        } else {
            Vec::new()
        };
        fn describe(g: &Group) -> (&'static str, &str, &str) {
            match g.consumer.as_deref() {
                Some(c) => ("consumer", c.state_name(), "consumer"),
                None => (
                    "classic",
                    g.state.as_str(),
                    g.protocol_type.as_deref().unwrap_or(""),
                ),
            }
        }
        self.groups
            .values()
            .filter(|g| {
                let (kind, state, _) = describe(g);
                (states.is_empty() || states.iter().any(|s| *s == state.to_lowercase()))
                    && (types.is_empty() || types.iter().any(|t| t == kind))
            })
            .map(|g| {
                let (kind, state, protocol_type) = describe(g);
                let mut l = ListedGroup::default();
                l.group_id = GroupId(sb(&g.group_id));
                l.protocol_type = sb(protocol_type);
                if version >= 4 {
                    l.group_state = sb(state);
                }
                if version >= 5 {
                    l.group_type = sb(kind);
                }
                l
            })
            .collect()
    }

    // ------------------------------------------------------------------ Deletes

    /// One group of DeleteGroups: only an Empty group can go (NON_EMPTY_GROUP otherwise). Its
    /// offsets and metadata are gone from memory at once; append the tombstones and answer once
    /// they are durable.
    pub fn delete_group(
        &mut self,
        group_id: &str,
        now_ms: i64,
    ) -> (Vec<LogRecord>, DeletableGroupResult) {
        self.run_timers(now_ms);
        let mut res = DeletableGroupResult::default();
        res.group_id = GroupId(sb(group_id));
        let error = match self.groups.get(group_id) {
            _ if group_id.is_empty() => Some(ResponseError::InvalidGroupId),
            None => Some(ResponseError::GroupIdNotFound),
            Some(g) if g.state == GroupState::Dead => Some(ResponseError::GroupIdNotFound),
            Some(g) if g.state != GroupState::Empty => Some(ResponseError::NonEmptyGroup),
            Some(_) => None,
        };
        if let Some(e) = error {
            res.error_code = e.code();
            return (Vec::new(), res);
        }
        let g = self.remove_group(group_id).expect("checked above");
        let mut recs: Vec<LogRecord> = g
            .offsets
            .keys()
            .map(|(t, p)| records::offset_tombstone(group_id, t, *p))
            .collect();
        recs.push(records::group_tombstone(group_id));
        if let Some(c) = &g.consumer {
            recs.extend(c.tombstones(group_id));
        }
        (recs, res)
    }

    /// OffsetDelete v0: drops committed offsets unless the group is actively consuming the topic.
    pub fn offset_delete(
        &mut self,
        req: &OffsetDeleteRequest,
        now_ms: i64,
    ) -> (Vec<LogRecord>, OffsetDeleteResponse) {
        self.run_timers(now_ms);
        let group_id = req.group_id.0.as_str();
        let mut resp = OffsetDeleteResponse::default();
        let Some(g) = self
            .groups
            .get_mut(group_id)
            .filter(|g| g.state != GroupState::Dead)
        else {
            resp.error_code = ResponseError::GroupIdNotFound.code();
            return (Vec::new(), resp);
        };
        if g.state != GroupState::Empty
            && g.consumer.is_none()
            && g.protocol_type.as_deref() != Some("consumer")
        {
            resp.error_code = ResponseError::NonEmptyGroup.code();
            return (Vec::new(), resp);
        }
        // Unknown subscriptions (undecodable metadata) count as subscribed: refusing a delete is
        // recoverable, deleting the offsets of a live consumer is not.
        let subscribed: Option<BTreeSet<String>> = if g.state == GroupState::Empty {
            Some(BTreeSet::new())
        } else if let Some(c) = g.consumer.as_deref() {
            Some(c.subscription_meta.keys().cloned().collect())
        } else {
            g.subscribed_topics()
        };
        let mut recs = Vec::new();
        for t in &req.topics {
            let name = t.name.0.as_str();
            let busy = subscribed.as_ref().is_none_or(|s| s.contains(name));
            let mut rt = OffsetDeleteResponseTopic::default();
            rt.name = t.name.clone();
            for p in &t.partitions {
                let mut rp = OffsetDeleteResponsePartition::default();
                rp.partition_index = p.partition_index;
                if busy {
                    rp.error_code = ResponseError::GroupSubscribedToTopic.code();
                } else if g
                    .offsets
                    .remove(&(name.to_owned(), p.partition_index))
                    .is_some()
                {
                    recs.push(records::offset_tombstone(group_id, name, p.partition_index));
                }
                rt.partitions.push(rp);
            }
            resp.topics.push(rt);
        }
        (recs, resp)
    }

    /// Every topic some group has a committed offset for (with repeats).
    pub fn offset_topics(&self) -> impl Iterator<Item = &str> {
        self.groups
            .values()
            .flat_map(|g| g.offsets.keys().map(|(t, _)| t.as_str()))
    }

    /// The topics were deleted: every group's committed offsets for them go, with tombstones in
    /// [`Self::take_output`], as Kafka's coordinator does when partitions are deleted, so a group
    /// does not resume a re-created topic of the same name at the old topic's offsets. An Empty
    /// group left with no offsets is removed by the next retention check.
    pub fn remove_topic_offsets(&mut self, topics: &BTreeSet<String>) {
        if topics.is_empty() {
            return;
        }
        for g in self.groups.values_mut() {
            let gone: Vec<(String, i32)> = g
                .offsets
                .keys()
                .filter(|(t, _)| topics.contains(t))
                .cloned()
                .collect();
            for (t, p) in gone {
                g.offsets.remove(&(t.clone(), p));
                self.out
                    .records
                    .push(records::offset_tombstone(&g.group_id, &t, p));
            }
        }
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            self.maybe_forget(&id);
        }
    }

    // ------------------------------------------------------------------ Log

    /// Applies one committed record of this partition.
    ///
    /// Replay: before the first request or `tick`, call it for every record of the partition in
    /// offset order (on start, or on becoming the partition's leader once its log is committed up
    /// to the new term); that rebuilds groups, generations, members, assignments and offsets.
    /// Serving: afterwards, call it for each record this coordinator emitted once committed.
    /// Offset records then take effect (OffsetFetch sees a commit only once it is durable);
    /// group records are ignored, since memory already holds that membership or newer.
    pub fn apply(&mut self, rec: &LogRecord, now_ms: i64) -> Result<(), RecordError> {
        match records::decode(rec)? {
            Decoded::Offset {
                group,
                topic,
                partition,
                value: Some(v),
            } => {
                let g = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group, now_ms));
                g.offsets.insert((topic, partition), v);
            }
            Decoded::Offset {
                group,
                topic,
                partition,
                value: None,
            } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                    self.maybe_forget(&group);
                }
            }
            // Once serving, every group record in the log is an echo of a change this coordinator
            // already made (and may have moved past): membership in memory is authoritative.
            Decoded::Group { .. } if self.serving => {}
            Decoded::Group {
                group,
                value: Some(v),
            } => {
                let g = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group, now_ms));
                g.load(&v, now_ms);
                let id = g.group_id.clone();
                self.reindex(&id);
            }
            Decoded::Group { group, value: None } => {
                if let Some(mut g) = self.remove_group(&group) {
                    // Membership goes; offsets have their own tombstones.
                    let mut fresh = Group::new(group.clone(), now_ms);
                    fresh.offsets = std::mem::take(&mut g.offsets);
                    fresh.consumer = g.consumer.take();
                    self.groups.insert(group.clone(), fresh);
                    self.maybe_forget(&group);
                }
            }
            // KIP-848 group records, like classic ones, only echo memory once serving.
            rec if rec.is_consumer() && self.serving => {}
            Decoded::ConsumerGroup { group, epoch: None } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    g.consumer = None;
                    self.maybe_forget(&group);
                }
            }
            part @ (Decoded::ConsumerGroup { .. }
            | Decoded::ConsumerPartitionMetadata { .. }
            | Decoded::ConsumerMember { .. }
            | Decoded::ConsumerTargetAssignment { .. }
            | Decoded::ConsumerTargetMember { .. }
            | Decoded::ConsumerCurrentAssignment { .. }) => self.replay_consumer(part, now_ms),
            Decoded::Other { .. } => {}
        }
        Ok(())
    }

    /// The broker could not append `records` (an output of this coordinator). A classic group
    /// whose generation and assignment they carried would otherwise go on serving state that
    /// is not in the log, so a restart would forget it. As Kafka does when storing a SyncGroup
    /// assignment fails, such a group drops its assignments and rebalances: members rejoin and
    /// the next assignment is written again. A group that has moved past that generation is
    /// left alone (its newer record settles on its own). Offsets need no undo: they become
    /// visible only when their records commit.
    pub fn append_failed(&mut self, records: &[LogRecord], now_ms: i64) {
        let mut failed: BTreeMap<String, i32> = BTreeMap::new();
        for rec in records {
            if let Ok(Decoded::Group {
                group,
                value: Some(v),
            }) = records::decode(rec)
            {
                failed.insert(group, v.generation);
            }
        }
        for (id, generation) in failed {
            let (groups, mut ctx) = self.ctx_parts(now_ms);
            let Some(g) = groups.get_mut(&id) else {
                continue;
            };
            if g.consumer.is_some()
                || g.generation_id != generation
                || !matches!(
                    g.state,
                    GroupState::Stable | GroupState::CompletingRebalance
                )
            {
                continue;
            }
            for m in g.members.values_mut() {
                m.assignment = Bytes::new();
            }
            g.prepare_rebalance(&mut ctx);
            self.settle(&id, now_ms);
        }
    }

    /// Replays a record of keys 3–8 (not the key 3 tombstone): see [`super::consumer::replay`].
    /// A tombstone for a group that does not exist is a no-op.
    fn replay_consumer(&mut self, rec: Decoded, now_ms: i64) {
        let Some(group) = rec.group_id().map(str::to_owned) else {
            return;
        };
        if rec.is_tombstone() && !self.groups.contains_key(&group) {
            return;
        }
        let session_ms = i64::from(self.cfg.consumer_session_timeout_ms);
        let g = self
            .groups
            .entry(group.clone())
            .or_insert_with(|| Group::new(group.clone(), now_ms));
        super::consumer::replay(g, rec, session_ms, now_ms);
        self.reindex(&group);
    }

    /// Replay ends with the first request or tick: KIP-848 groups drop members whose records
    /// came only in part and write what that changed (see `ConsumerGroup::finish_replay`).
    fn finish_replay(&mut self, now_ms: i64) {
        let ids: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.consumer.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            let g = self.groups.get_mut(id).expect("listed above");
            super::consumer::finish_replay(g, &mut self.out.records, now_ms);
            self.reindex(id);
            self.maybe_forget(id);
        }
    }

    // ------------------------------------------------------------------ Timers

    /// Fires every timer due at `now_ms`: session expiry, join and sync deadlines, the initial
    /// rebalance delay, KIP-394 pending members, offset retention. Responses and records land
    /// in [`Self::take_output`].
    pub fn tick(&mut self, now_ms: i64) {
        self.run_timers(now_ms);
        self.expire_offsets(now_ms);
    }

    /// The earliest instant at which [`Self::tick`] has work, if any.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let timer = self.timers.first().map(|(d, _)| *d);
        match (timer, self.next_retention_check_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn run_timers(&mut self, now_ms: i64) {
        if !self.serving {
            self.serving = true;
            self.finish_replay(now_ms);
        }
        for _ in 0..MAX_TIMER_ROUNDS {
            let due: Vec<String> = self
                .timers
                .iter()
                .take_while(|(d, _)| *d <= now_ms)
                .map(|(_, id)| id.clone())
                .collect();
            if due.is_empty() {
                break;
            }
            for id in &due {
                let (groups, mut ctx) = self.ctx_parts(now_ms);
                if let Some(g) = groups.get_mut(id) {
                    fire_due(g, &mut ctx);
                }
                self.reindex(id);
                self.maybe_forget(id);
            }
        }
    }

    /// Kafka's offset retention (2.1+): offsets of an Empty group expire `offsets_retention_ms`
    /// after it became Empty (or after the commit, if later); an explicit v2–v4 expiry always
    /// applies. An Empty group left with no offsets is deleted.
    fn expire_offsets(&mut self, now_ms: i64) {
        let due = *self
            .next_retention_check_ms
            .get_or_insert(now_ms + self.cfg.offsets_retention_check_interval_ms);
        if now_ms < due {
            return;
        }
        self.next_retention_check_ms = Some(now_ms + self.cfg.offsets_retention_check_interval_ms);
        let retention = self.cfg.offsets_retention_ms;
        let mut gone = Vec::new();
        for g in self.groups.values_mut() {
            let empty = g.state == GroupState::Empty;
            let since = g.current_state_timestamp_ms;
            let expired: Vec<(String, i32)> = g
                .offsets
                .iter()
                .filter(|(_, v)| {
                    if v.expire_timestamp_ms >= 0 {
                        v.expire_timestamp_ms <= now_ms
                    } else {
                        empty
                            && since.max(v.commit_timestamp_ms).saturating_add(retention) <= now_ms
                    }
                })
                .map(|(k, _)| k.clone())
                .collect();
            for (t, p) in expired {
                g.offsets.remove(&(t.clone(), p));
                self.out
                    .records
                    .push(records::offset_tombstone(&g.group_id, &t, p));
            }
            if empty && g.offsets.is_empty() && g.pending_members.is_empty() {
                if g.generation_id > 0 {
                    self.out.records.push(records::group_tombstone(&g.group_id));
                }
                if let Some(c) = &g.consumer {
                    self.out.records.extend(c.tombstones(&g.group_id));
                }
                gone.push(g.group_id.clone());
            }
        }
        for id in gone {
            self.remove_group(&id);
        }
    }

    /// Answers every parked JoinGroup/SyncGroup with `error` — NOT_COORDINATOR when this node
    /// stops leading the partition — so the broker holds no request forever. Drop the
    /// coordinator afterwards; the next leader rebuilds from the log.
    pub fn fail_all_waiters(&mut self, error: ResponseError) {
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in &ids {
            let (groups, mut ctx) = self.ctx_parts(i64::MIN);
            let g = groups.get_mut(id).expect("listed above");
            let members: Vec<String> = g.members.keys().cloned().collect();
            for m in &members {
                g.fail_join(m, error, &mut ctx);
                g.fail_sync(m, error, &mut ctx);
            }
            self.reindex(id);
        }
    }

    // ------------------------------------------------------------------ Invariants

    /// Panics if any cross-field invariant is broken. Tests call it after every step.
    pub fn check_invariants(&self) {
        let mut tokens = BTreeSet::new();
        let done: BTreeSet<Token> = self.out.completions.iter().map(|(t, _)| *t).collect();
        for (d, id) in &self.timers {
            let g = self
                .groups
                .get(id)
                .unwrap_or_else(|| panic!("timer for missing group {id}"));
            assert_eq!(g.indexed_deadline_ms, Some(*d), "{id}: timer index entry");
        }
        for (id, g) in &self.groups {
            assert_eq!(id, &g.group_id);
            assert_eq!(
                g.indexed_deadline_ms,
                g.next_deadline_ms(),
                "{id}: stale timer index"
            );
            assert!(
                g.state != GroupState::Dead,
                "{id}: Dead groups leave the map"
            );
            assert!(g.generation_id >= 0, "{id}: negative generation");
            if let Some(c) = g.consumer.as_deref() {
                c.check_invariants(id);
                if self.serving {
                    c.check_flushed(id);
                }
                assert!(
                    g.members.is_empty(),
                    "{id}: consumer group with classic members"
                );
                assert_eq!(
                    g.state == GroupState::Empty,
                    c.members.is_empty(),
                    "{id}: consumer group state"
                );
                continue;
            }
            assert!(g.members.len() + g.pending_members.len() <= MAX_MEMBERS_PER_GROUP);
            match &g.leader_id {
                Some(l) => assert!(g.members.contains_key(l), "{id}: leader {l} not a member"),
                None => assert!(g.members.is_empty(), "{id}: members without a leader"),
            }
            if g.state == GroupState::Empty {
                assert!(g.members.is_empty(), "{id}: Empty with members");
            }
            assert_eq!(
                g.join_deadline_ms.is_some(),
                g.state == GroupState::PreparingRebalance,
                "{id}: join deadline iff PreparingRebalance"
            );
            if g.initial_delay_remaining_ms.is_some() {
                assert_eq!(g.state, GroupState::PreparingRebalance);
            }
            if matches!(
                g.state,
                GroupState::CompletingRebalance | GroupState::Stable
            ) {
                let p = g
                    .protocol_name
                    .as_deref()
                    .unwrap_or_else(|| panic!("{id}: no protocol"));
                assert!(!g.members.is_empty(), "{id}: {:?} without members", g.state);
                for m in g.members.values() {
                    assert!(
                        m.protocols.iter().any(|(n, _)| n == p),
                        "{id}: {} lacks {p}",
                        m.member_id
                    );
                }
            }
            for (iid, mid) in &g.static_members {
                let m = g
                    .members
                    .get(mid)
                    .unwrap_or_else(|| panic!("{id}: static {iid} -> gone {mid}"));
                assert_eq!(m.group_instance_id.as_deref(), Some(iid.as_str()));
            }
            for m in g.members.values() {
                if let Some(iid) = &m.group_instance_id {
                    assert_eq!(
                        g.static_members.get(iid),
                        Some(&m.member_id),
                        "{id}: static map"
                    );
                }
                if m.awaiting_join.is_some() {
                    assert_eq!(
                        g.state,
                        GroupState::PreparingRebalance,
                        "{id}: join parked outside Preparing"
                    );
                }
                if m.awaiting_sync.is_some() {
                    assert_eq!(
                        g.state,
                        GroupState::CompletingRebalance,
                        "{id}: sync parked outside Completing"
                    );
                }
                for w in m.awaiting_join.iter().chain(m.awaiting_sync.iter()) {
                    assert!(tokens.insert(w.token), "token {} parked twice", w.token);
                    assert!(
                        !done.contains(&w.token),
                        "token {} both parked and completed",
                        w.token
                    );
                }
            }
            for p in g.pending_members.keys() {
                assert!(
                    !g.members.contains_key(p),
                    "{id}: {p} both pending and member"
                );
            }
            for p in &g.pending_sync {
                assert!(
                    g.members.contains_key(p),
                    "{id}: pending sync {p} not a member"
                );
            }
            if !g.pending_sync.is_empty() {
                assert!(
                    g.sync_deadline_ms.is_some(),
                    "{id}: pending sync without deadline"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------- join helpers

fn check_capacity(g: &Group, max_size: usize) -> Result<(), ResponseError> {
    if g.members.len() + g.pending_members.len() >= max_size {
        Err(ResponseError::GroupMaxSizeReached)
    } else {
        Ok(())
    }
}

/// Kafka `doUnknownJoinGroup`: the member has no id yet.
fn join_unknown(
    g: &mut Group,
    new_id: String,
    a: JoinArgs,
    version: i16,
    max_size: usize,
    ctx: &mut Ctx,
) -> Option<JoinGroupResponse> {
    if let Some(iid) = a.instance {
        if let Some(old) = g.static_members.get(iid).cloned() {
            return update_static_member(g, &old, new_id, a, version, ctx);
        }
    }
    if let Err(e) = check_capacity(g, max_size) {
        return Some(join_error(version, e, a.member_id));
    }
    if a.instance.is_none() && version >= 4 {
        // KIP-394: hand out the id and make the client come back with it, so a client that
        // times out and retries does not leave a ghost member behind.
        g.pending_members
            .insert(new_id.clone(), ctx.now_ms + i64::from(a.session_timeout_ms));
        return Some(join_error(
            version,
            ResponseError::MemberIdRequired,
            &new_id,
        ));
    }
    add_member_and_rebalance(g, new_id, a, ctx);
    None
}

/// Kafka `doCurrentJoinGroup`: the member presents an id.
fn join_known(
    g: &mut Group,
    a: JoinArgs,
    version: i16,
    ctx: &mut Ctx,
) -> Option<JoinGroupResponse> {
    let member_id = a.member_id;
    if g.pending_members.contains_key(member_id) {
        add_member_and_rebalance(g, member_id.to_owned(), a, ctx);
        return None;
    }
    if let Some(e) = validate_member(g, member_id, a.instance) {
        return Some(join_error(version, e, member_id));
    }
    let matches = g.members[member_id].matches(&a.protocols);
    match g.state {
        GroupState::PreparingRebalance => {
            update_member_and_rebalance(g, a, ctx);
            None
        }
        // The member lost our JoinGroup response: resend it (same generation).
        GroupState::CompletingRebalance if matches => Some(g.join_response_for(member_id, version)),
        GroupState::CompletingRebalance => {
            update_member_and_rebalance(g, a, ctx);
            None
        }
        // A follower rejoining unchanged needs no rebalance; the leader rejoining means it
        // wants a new assignment (e.g. metadata changed), so rebalance.
        GroupState::Stable if matches && !g.is_leader(member_id) => {
            Some(g.join_response_for(member_id, version))
        }
        GroupState::Stable => {
            update_member_and_rebalance(g, a, ctx);
            None
        }
        GroupState::Empty | GroupState::Dead => Some(join_error(
            version,
            ResponseError::UnknownMemberId,
            member_id,
        )),
    }
}

fn add_member_and_rebalance(g: &mut Group, member_id: String, a: JoinArgs, ctx: &mut Ctx) {
    let member = Member {
        member_id,
        group_instance_id: a.instance.map(str::to_owned),
        client_id: a.client_id.to_owned(),
        client_host: a.client_host.to_owned(),
        rebalance_timeout_ms: a.rebalance_timeout_ms,
        session_timeout_ms: a.session_timeout_ms,
        protocols: a.protocols,
        assignment: Bytes::new(),
        awaiting_join: Some(a.waiter),
        awaiting_sync: None,
        is_new: true,
        heartbeat_deadline_ms: ctx.now_ms + NEW_MEMBER_JOIN_TIMEOUT_MS,
    };
    if g.state == GroupState::PreparingRebalance && g.generation_id == 0 {
        // Lets the initial delayed join wait once more for further members.
        g.new_member_added = true;
    }
    g.add_member(member, a.protocol_type);
    g.maybe_prepare_rebalance(ctx);
}

fn update_member_and_rebalance(g: &mut Group, a: JoinArgs, ctx: &mut Ctx) {
    let m = &mut g.members[a.member_id];
    if let Some(old) = m.awaiting_join.replace(a.waiter) {
        // A retried JoinGroup replaces the parked one; answer the old request so the broker
        // never holds a token forever.
        let r = join_error(old.version, ResponseError::RebalanceInProgress, a.member_id);
        ctx.complete(old, Completion::Join(r));
    }
    m.protocols = a.protocols;
    m.rebalance_timeout_ms = a.rebalance_timeout_ms;
    m.session_timeout_ms = a.session_timeout_ms;
    g.maybe_prepare_rebalance(ctx);
}

/// Kafka `updateStaticMemberAndRebalance`: a known `group.instance.id` joined without a member
/// id (restarted client). The new id replaces the old one; if the group is Stable and the
/// selected protocol stays the same there is no rebalance at all.
fn update_static_member(
    g: &mut Group,
    old_id: &str,
    new_id: String,
    a: JoinArgs,
    version: i16,
    ctx: &mut Ctx,
) -> Option<JoinGroupResponse> {
    let previous_leader = g.leader_id.clone();
    g.fail_join(old_id, ResponseError::FencedInstanceId, ctx);
    g.fail_sync(old_id, ResponseError::FencedInstanceId, ctx);
    let (idx, _, mut m) = g
        .members
        .shift_remove_full(old_id)
        .expect("static member exists");
    m.member_id = new_id.clone();
    m.protocols = a.protocols;
    m.rebalance_timeout_ms = a.rebalance_timeout_ms;
    m.session_timeout_ms = a.session_timeout_ms;
    m.awaiting_join = Some(a.waiter);
    m.heartbeat_deadline_ms = ctx.now_ms + i64::from(a.session_timeout_ms);
    g.members.shift_insert(idx, new_id.clone(), m);
    if g.is_leader(old_id) {
        g.leader_id = Some(new_id.clone());
    }
    if g.pending_sync.remove(old_id) {
        g.pending_sync.insert(new_id.clone());
    }
    if let Some(iid) = a.instance {
        g.static_members.insert(iid.to_owned(), new_id.clone());
    }
    match g.state {
        GroupState::Stable if g.select_protocol() == g.protocol_name => {
            g.members[new_id.as_str()].awaiting_join = None;
            ctx.record(g.metadata_record());
            let is_leader = g.is_leader(&new_id);
            let protocol = g.protocol_name.clone().unwrap_or_default();
            // KIP-814: from v9 a returning static leader learns it is the leader but is told to
            // skip the assignment; before v9 it is shown the previous leader id so that it acts
            // as a follower and just fetches its assignment.
            let leader = if version >= 9 {
                g.leader_id.clone()
            } else {
                previous_leader
            };
            Some(join_response(
                version,
                JoinFields {
                    error: None,
                    generation_id: g.generation_id,
                    protocol_type: g.protocol_type.clone(),
                    protocol_name: g.protocol_name.clone(),
                    leader: leader.unwrap_or_default(),
                    skip_assignment: is_leader,
                    member_id: new_id,
                    members: if is_leader && version >= 9 {
                        g.member_metadata(&protocol, version)
                    } else {
                        Vec::new()
                    },
                },
            ))
        }
        GroupState::Stable => {
            g.prepare_rebalance(ctx);
            None
        }
        // The leader may already be computing an assignment that names the old member id:
        // rebalance so the new id gets one.
        GroupState::CompletingRebalance => {
            g.prepare_rebalance(ctx);
            None
        }
        GroupState::PreparingRebalance => None,
        GroupState::Empty | GroupState::Dead => {
            unreachable!("a group with a static member is neither Empty nor Dead")
        }
    }
}

fn leave_one(
    g: &mut Group,
    member_id: &str,
    instance: Option<&str>,
    ctx: &mut Ctx,
) -> Option<ResponseError> {
    let resolved = if member_id.is_empty() {
        match instance.and_then(|i| g.static_members.get(i)) {
            Some(m) => m.clone(),
            None => return Some(ResponseError::UnknownMemberId),
        }
    } else {
        member_id.to_owned()
    };
    if let Some(iid) = instance {
        match g.static_members.get(iid) {
            Some(m) if *m != resolved => return Some(ResponseError::FencedInstanceId),
            None => return Some(ResponseError::UnknownMemberId),
            Some(_) => {}
        }
    }
    if g.pending_members.contains_key(&resolved) {
        g.remove_pending_member_and_update(&resolved, ctx);
        return None;
    }
    if !g.members.contains_key(&resolved) {
        return Some(ResponseError::UnknownMemberId);
    }
    g.remove_member_and_update(&resolved, ctx);
    None
}

/// Fires the timers of one group that are due; true if anything fired.
fn fire_due(g: &mut Group, ctx: &mut Ctx) -> bool {
    if g.consumer.is_some() {
        return super::consumer::fire_consumer(g, ctx);
    }
    let now = ctx.now_ms;
    let mut fired = false;
    let expired: Vec<String> = g
        .pending_members
        .iter()
        .filter(|(_, d)| **d <= now)
        .map(|(id, _)| id.clone())
        .collect();
    for id in expired {
        g.remove_pending_member_and_update(&id, ctx);
        fired = true;
    }
    let expired: Vec<String> = g
        .members
        .values()
        .filter(|m| m.heartbeat_deadline_ms <= now && !m.exempt_from_expiry())
        .map(|m| m.member_id.clone())
        .collect();
    for id in expired {
        if g.members.contains_key(&id) {
            g.remove_member_and_update(&id, ctx);
            fired = true;
        }
    }
    if g.state == GroupState::PreparingRebalance && g.join_deadline_ms.is_some_and(|d| d <= now) {
        g.on_join_deadline(ctx);
        fired = true;
    }
    if g.sync_deadline_ms.is_some_and(|d| d <= now) {
        g.sync_deadline_ms = None;
        fired = true;
        if matches!(
            g.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) && !g.pending_sync.is_empty()
        {
            // Members that got a JoinGroup response but never sent SyncGroup are gone.
            let stale: Vec<String> = g.pending_sync.iter().cloned().collect();
            for id in &stale {
                g.fail_join(id, ResponseError::UnknownMemberId, ctx);
                g.fail_sync(id, ResponseError::UnknownMemberId, ctx);
                g.remove_member(id);
            }
            g.prepare_rebalance(ctx);
        }
    }
    fired
}
