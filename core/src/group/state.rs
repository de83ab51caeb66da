//! Per-group state and the transitions of Kafka's classic group state machine.
//!
//! ```text
//!            join            all joined / timeout            leader SyncGroup
//!  Empty ─────────▶ PreparingRebalance ─────────▶ CompletingRebalance ─────────▶ Stable
//!    ▲                 ▲     │ no members left         │ member joins/leaves/        │
//!    └─────────────────┼─────┘                         │ expires                     │
//!                      └───────────────────────────────┴─────────────────────────────┘
//!  Dead: deleted (DeleteGroups / retention); a Dead group is removed from the map at once.
//! ```

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::coordinator::{Completion, Output};
use super::records::{self, GroupValue, LogRecord, MemberValue, OffsetValue};
use super::{GroupConfig, Token};

/// Kafka's classic group states; `as_str` gives the names Kafka tools print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A request parked until a rebalance step completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub token: Token,
    pub version: i16,
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub awaiting_join: Option<Waiter>,
    pub awaiting_sync: Option<Waiter>,
    /// Joined but not yet through its first completed join: expires on
    /// `NEW_MEMBER_JOIN_TIMEOUT_MS`, not on the session timeout.
    pub is_new: bool,
    /// When the member is expired unless it heartbeats (or is parked in a rebalance step).
    pub heartbeat_deadline_ms: i64,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Same protocols, same metadata, same order (Kafka `MemberMetadata.matches`).
    pub fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// Kafka `hasSatisfiedHeartbeat` for an expired deadline: members parked in a rebalance step
    /// are alive by definition (their socket is muted), except brand-new ones.
    pub fn exempt_from_expiry(&self) -> bool {
        !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }
}

/// Where queued responses and records go during a transition.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a GroupConfig,
    pub out: &'a mut Output,
    pub now_ms: i64,
}

impl Ctx<'_> {
    pub fn complete(&mut self, waiter: Waiter, c: Completion) {
        self.out.completions.push((waiter.token, c));
    }

    pub fn record(&mut self, r: LogRecord) {
        self.out.records.push(r);
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub group_id: String,
    pub state: GroupState,
    /// Invariant: generation_id >= 0; bumped once per completed join phase.
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    /// Invariant: Some exactly when the group has members and is CompletingRebalance or Stable
    /// (PreparingRebalance keeps the previous generation's protocol until the join completes).
    pub protocol_name: Option<String>,
    /// Invariant: Some(id) with id in `members` iff `members` is non-empty.
    pub leader_id: Option<String>,
    /// Insertion order is join order: the next leader is the oldest member.
    pub members: IndexMap<String, Member>,
    /// group.instance.id -> member id. Invariant: exactly the members with an instance id.
    pub static_members: BTreeMap<String, String>,
    /// KIP-394 member ids handed out with MEMBER_ID_REQUIRED -> expiry. Disjoint from `members`.
    pub pending_members: BTreeMap<String, i64>,
    /// Members that have not yet sent SyncGroup for this generation. Subset of `members`.
    pub pending_sync: BTreeSet<String>,
    pub sync_deadline_ms: Option<i64>,
    /// Invariant: Some iff state == PreparingRebalance.
    pub join_deadline_ms: Option<i64>,
    /// Some(remaining ms) while the join phase is the initial delayed join of an Empty group.
    pub initial_delay_remaining_ms: Option<i64>,
    pub new_member_added: bool,
    pub current_state_timestamp_ms: i64,
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
    /// The deadline under which the coordinator's timer index holds this group.
    pub indexed_deadline_ms: Option<i64>,
    /// Some for a KIP-848 consumer group: membership lives there, and `state` is only Empty
    /// or Stable (see `consumer::sync_consumer_state`).
    pub consumer: Option<Box<super::consumer::ConsumerGroup>>,
}

impl Group {
    pub fn new(group_id: String, now_ms: i64) -> Self {
        Group {
            group_id,
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: IndexMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            sync_deadline_ms: None,
            join_deadline_ms: None,
            initial_delay_remaining_ms: None,
            new_member_added: false,
            current_state_timestamp_ms: now_ms,
            offsets: BTreeMap::new(),
            indexed_deadline_ms: None,
            consumer: None,
        }
    }

    /// The earliest timer of this group: KIP-394 pending ids, member sessions (members parked
    /// in a rebalance step are exempt), the join phase, the sync phase.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let pending = self.pending_members.values().copied();
        let sessions = self
            .members
            .values()
            .filter(|m| !m.exempt_from_expiry())
            .map(|m| m.heartbeat_deadline_ms);
        let join = self
            .join_deadline_ms
            .filter(|_| self.state == GroupState::PreparingRebalance);
        let consumer = self.consumer.as_ref().and_then(|c| c.next_deadline_ms());
        pending
            .chain(sessions)
            .chain(join)
            .chain(self.sync_deadline_ms)
            .chain(consumer)
            .min()
    }

    pub fn transition(&mut self, to: GroupState, now_ms: i64) {
        self.state = to;
        self.current_state_timestamp_ms = now_ms;
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    pub fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Protocols every member supports, in the first member's order of preference.
    fn candidate_protocols(&self) -> Vec<String> {
        let Some(first) = self.members.values().next() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            })
            .collect()
    }

    /// Kafka `supportsProtocols`: a joining member must share the protocol type and at least one
    /// protocol with every current member.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(n, _)| candidates.contains(n))
    }

    /// Kafka `selectProtocol`: every member votes for its most preferred candidate; most votes
    /// wins, ties go to the earlier candidate in the oldest member's preference order.
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes = vec![0usize; candidates.len()];
        for m in self.members.values() {
            if let Some(i) = m
                .protocols
                .iter()
                .find_map(|(n, _)| candidates.iter().position(|c| c == n))
            {
                votes[i] += 1;
            }
        }
        let mut best: Option<usize> = None;
        for (i, v) in votes.iter().enumerate() {
            if best.is_none_or(|b| *v > votes[b]) {
                best = Some(i);
            }
        }
        best.map(|i| candidates[i].clone())
    }

    pub fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// Kafka `GroupMetadata.add`: the first member fixes the group's protocol type.
    pub fn add_member(&mut self, member: Member, protocol_type: &str) {
        debug_assert!(!self.members.contains_key(&member.member_id));
        if self.members.is_empty() {
            self.protocol_type = Some(protocol_type.to_owned());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        if let Some(iid) = &member.group_instance_id {
            self.static_members
                .insert(iid.clone(), member.member_id.clone());
        }
        self.pending_members.remove(&member.member_id);
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member and everything that refers to it; re-elects the leader.
    pub fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let m = self.members.shift_remove(member_id)?;
        if let Some(iid) = &m.group_instance_id {
            if self.static_members.get(iid).map(String::as_str) == Some(member_id) {
                self.static_members.remove(iid);
            }
        }
        self.pending_sync.remove(member_id);
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        Some(m)
    }

    pub fn schedule_heartbeat(&mut self, member_id: &str, now_ms: i64) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.heartbeat_deadline_ms = now_ms + i64::from(m.session_timeout_ms);
        }
    }

    pub fn join_response_for(&self, member_id: &str, version: i16) -> JoinGroupResponse {
        let leader = self.is_leader(member_id);
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if leader {
            self.member_metadata(&protocol, version)
        } else {
            Vec::new()
        };
        join_response(
            version,
            JoinFields {
                error: None,
                generation_id: self.generation_id,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol_name.clone(),
                leader: self.leader_id.clone().unwrap_or_default(),
                skip_assignment: false,
                member_id: member_id.to_owned(),
                members,
            },
        )
    }

    pub fn member_metadata(&self, protocol: &str, version: i16) -> Vec<JoinGroupResponseMember> {
        self.members
            .values()
            .map(|m| {
                let mut r = JoinGroupResponseMember::default();
                r.member_id = StrBytes::from_string(m.member_id.clone());
                if version >= 5 {
                    r.group_instance_id = m.group_instance_id.clone().map(StrBytes::from_string);
                }
                r.metadata = m.metadata_for(protocol);
                r
            })
            .collect()
    }

    /// Answers a parked JoinGroup of `member_id` with an error (no-op if none is parked).
    pub fn fail_join(&mut self, member_id: &str, error: ResponseError, ctx: &mut Ctx) {
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        if let Some(w) = m.awaiting_join.take() {
            ctx.complete(w, Completion::Join(join_error(w.version, error, member_id)));
        }
    }

    /// Answers a parked SyncGroup of `member_id` with an error (no-op if none is parked).
    pub fn fail_sync(&mut self, member_id: &str, error: ResponseError, ctx: &mut Ctx) {
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        if let Some(w) = m.awaiting_sync.take() {
            ctx.complete(
                w,
                Completion::Sync(sync_response(
                    w.version,
                    Some(error),
                    None,
                    None,
                    Bytes::new(),
                )),
            );
        }
    }

    /// Kafka `maybePrepareRebalance`.
    pub fn maybe_prepare_rebalance(&mut self, ctx: &mut Ctx) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(ctx);
        }
    }

    /// Kafka `prepareRebalance`: members parked in SyncGroup are told to rejoin; the join phase
    /// waits for everyone up to the rebalance timeout (or the initial delay for an Empty group).
    pub fn prepare_rebalance(&mut self, ctx: &mut Ctx) {
        if self.state == GroupState::CompletingRebalance {
            let ids: Vec<String> = self.members.keys().cloned().collect();
            for id in &ids {
                self.members[id.as_str()].assignment = Bytes::new();
                self.fail_sync(id, ResponseError::RebalanceInProgress, ctx);
                self.schedule_heartbeat(id, ctx.now_ms);
            }
        }
        self.pending_sync.clear();
        self.sync_deadline_ms = None;
        if self.state == GroupState::Empty {
            let delay = i64::from(ctx.cfg.initial_rebalance_delay_ms.max(0));
            self.join_deadline_ms = Some(ctx.now_ms + delay);
            self.initial_delay_remaining_ms = Some((self.rebalance_timeout_ms() - delay).max(0));
        } else {
            self.join_deadline_ms = Some(ctx.now_ms + self.rebalance_timeout_ms());
            self.initial_delay_remaining_ms = None;
        }
        self.transition(GroupState::PreparingRebalance, ctx.now_ms);
        self.try_complete_join(ctx);
    }

    /// Completes the join phase early once every member has rejoined (not during the initial
    /// delay, whose whole point is to wait for more members).
    pub fn try_complete_join(&mut self, ctx: &mut Ctx) {
        if self.state == GroupState::PreparingRebalance
            && self.initial_delay_remaining_ms.is_none()
            && self.all_members_joined()
        {
            self.complete_join(ctx);
        }
    }

    /// The join deadline fired.
    pub fn on_join_deadline(&mut self, ctx: &mut Ctx) {
        debug_assert_eq!(self.state, GroupState::PreparingRebalance);
        if let Some(remaining) = self.initial_delay_remaining_ms {
            if self.new_member_added && remaining > 0 {
                // Another member arrived during the delay: wait once more, within the budget.
                self.new_member_added = false;
                let delay = i64::from(ctx.cfg.initial_rebalance_delay_ms.max(0)).min(remaining);
                // Counted from when the timer was due, not from when tick() noticed, so a
                // coarse tick does not stretch the delay.
                let fired_at = self.join_deadline_ms.unwrap_or(ctx.now_ms);
                self.join_deadline_ms = Some(fired_at + delay);
                self.initial_delay_remaining_ms = Some((remaining - delay).max(0));
                return;
            }
        }
        self.complete_join(ctx);
    }

    /// Kafka `onCompleteJoin`.
    pub fn complete_join(&mut self, ctx: &mut Ctx) {
        debug_assert_eq!(self.state, GroupState::PreparingRebalance);
        // Dynamic members that did not rejoin in time are gone; static ones stay (only their
        // session timeout removes them).
        let stale: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in &stale {
            self.remove_member(id);
        }
        // The leader must be a member that rejoined (it has to compute the assignment).
        if let Some(leader) = self.leader_id.clone() {
            if self.members[leader.as_str()].awaiting_join.is_none() {
                match self.members.values().find(|m| m.awaiting_join.is_some()) {
                    Some(m) => self.leader_id = Some(m.member_id.clone()),
                    None => {
                        // Only static members that have not rejoined: wait another rebalance
                        // timeout; their session timeouts will clear them.
                        self.join_deadline_ms = Some(ctx.now_ms + self.rebalance_timeout_ms());
                        self.initial_delay_remaining_ms = None;
                        return;
                    }
                }
            }
        }
        self.join_deadline_ms = None;
        self.initial_delay_remaining_ms = None;
        self.new_member_added = false;
        self.generation_id = self.generation_id.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(GroupState::Empty, ctx.now_ms);
            ctx.record(self.metadata_record());
            return;
        }
        self.protocol_name = self.select_protocol();
        debug_assert!(
            self.protocol_name.is_some(),
            "joins are checked by supports_protocols"
        );
        self.transition(GroupState::CompletingRebalance, ctx.now_ms);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in &ids {
            let waiter = self.members[id.as_str()].awaiting_join;
            if let Some(w) = waiter {
                let resp = self.join_response_for(id, w.version);
                ctx.complete(w, Completion::Join(resp));
            }
            let m = &mut self.members[id.as_str()];
            m.awaiting_join = None;
            m.is_new = false;
            self.schedule_heartbeat(id, ctx.now_ms);
        }
        self.pending_sync = ids.into_iter().collect();
        self.sync_deadline_ms = Some(ctx.now_ms + self.rebalance_timeout_ms());
    }

    /// Leader's assignment arrived: store it, answer everyone parked in SyncGroup, go Stable.
    pub fn complete_sync(&mut self, assignments: &BTreeMap<String, Bytes>, ctx: &mut Ctx) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in &ids {
            let m = &mut self.members[id.as_str()];
            m.assignment = assignments.get(id).cloned().unwrap_or_default();
        }
        self.transition(GroupState::Stable, ctx.now_ms);
        ctx.record(self.metadata_record());
        for id in &ids {
            let m = &mut self.members[id.as_str()];
            if let Some(w) = m.awaiting_sync.take() {
                let resp = sync_response(
                    w.version,
                    None,
                    self.protocol_type.clone(),
                    self.protocol_name.clone(),
                    m.assignment.clone(),
                );
                ctx.complete(w, Completion::Sync(resp));
            }
            self.schedule_heartbeat(id, ctx.now_ms);
        }
    }

    /// Kafka `removeMemberAndUpdateGroup`.
    pub fn remove_member_and_update(&mut self, member_id: &str, ctx: &mut Ctx) {
        self.fail_join(member_id, ResponseError::UnknownMemberId, ctx);
        self.fail_sync(member_id, ResponseError::UnknownMemberId, ctx);
        self.remove_member(member_id);
        match self.state {
            GroupState::Dead | GroupState::Empty => {}
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(ctx)
            }
            GroupState::PreparingRebalance => self.try_complete_join(ctx),
        }
    }

    pub fn remove_pending_member_and_update(&mut self, member_id: &str, ctx: &mut Ctx) {
        self.pending_members.remove(member_id);
        if self.state == GroupState::PreparingRebalance {
            self.try_complete_join(ctx);
        }
    }

    pub fn metadata_record(&self) -> LogRecord {
        let protocol = self.protocol_name.clone();
        let value = GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: protocol.clone(),
            leader: self.leader_id.clone(),
            current_state_timestamp_ms: self.current_state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: protocol
                        .as_deref()
                        .map(|p| m.metadata_for(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        };
        records::group_metadata_record(&self.group_id, &value)
    }

    /// Rebuilds membership from a stored GroupMetadataValue (replay). Loaded members are Stable
    /// with their stored assignment and a fresh session, exactly like Kafka's group load.
    pub fn load(&mut self, v: &GroupValue, now_ms: i64) {
        self.members.clear();
        self.static_members.clear();
        self.pending_members.clear();
        self.pending_sync.clear();
        self.sync_deadline_ms = None;
        self.join_deadline_ms = None;
        self.initial_delay_remaining_ms = None;
        self.new_member_added = false;
        self.generation_id = v.generation.max(0);
        self.protocol_type = (!v.protocol_type.is_empty()).then(|| v.protocol_type.clone());
        self.protocol_name = v.protocol.clone();
        self.leader_id = None;
        if self.protocol_name.is_some() && self.protocol_type.is_some() {
            for mv in v.members.iter().take(super::MAX_MEMBERS_PER_GROUP) {
                if mv.member_id.is_empty() || self.members.contains_key(&mv.member_id) {
                    continue;
                }
                let protocol = self.protocol_name.clone().unwrap_or_default();
                let member = Member {
                    member_id: mv.member_id.clone(),
                    group_instance_id: mv.group_instance_id.clone(),
                    client_id: mv.client_id.clone(),
                    client_host: mv.client_host.clone(),
                    rebalance_timeout_ms: mv.rebalance_timeout_ms,
                    session_timeout_ms: mv.session_timeout_ms,
                    protocols: vec![(protocol, mv.subscription.clone())],
                    assignment: mv.assignment.clone(),
                    awaiting_join: None,
                    awaiting_sync: None,
                    is_new: false,
                    heartbeat_deadline_ms: now_ms + i64::from(mv.session_timeout_ms),
                };
                if let Some(iid) = &member.group_instance_id {
                    // A later member with the same instance id wins, like a static replacement.
                    if let Some(old) = self.static_members.get(iid).cloned() {
                        self.members.shift_remove(&old);
                    }
                    self.static_members
                        .insert(iid.clone(), member.member_id.clone());
                }
                self.members.insert(member.member_id.clone(), member);
            }
        }
        self.leader_id = v
            .leader
            .clone()
            .filter(|l| self.members.contains_key(l))
            .or_else(|| self.members.keys().next().cloned());
        if self.members.is_empty() {
            self.protocol_name = None;
            self.state = GroupState::Empty;
        } else {
            self.state = GroupState::Stable;
        }
        self.current_state_timestamp_ms = if v.current_state_timestamp_ms >= 0 {
            v.current_state_timestamp_ms
        } else {
            now_ms
        };
    }

    /// Topics the members subscribe to under the "consumer" protocol; None when unknown (not a
    /// consumer group, or undecodable metadata), which callers treat as "maybe subscribed".
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            let mut meta = m.metadata_for(protocol);
            if meta.len() < 2 {
                return None;
            }
            let version = i16::from_be_bytes([meta[0], meta[1]]);
            let _ = bytes::Buf::get_i16(&mut meta);
            // Newer subscription versions only append fields: read them as our newest (3).
            let sub = ConsumerProtocolSubscription::decode(&mut meta, version.clamp(0, 3)).ok()?;
            topics.extend(sub.topics.iter().map(|t| t.to_string()));
        }
        Some(topics)
    }
}

/// Fields of a JoinGroup response before version shaping.
pub(crate) struct JoinFields {
    pub error: Option<ResponseError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    pub members: Vec<JoinGroupResponseMember>,
}

/// Builds a JoinGroup response that encodes at `version` (fields a version lacks are left at
/// their defaults, non-nullable strings of old versions are never null).
pub(crate) fn join_response(version: i16, f: JoinFields) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    r.error_code = f.error.map_or(0, |e| e.code());
    r.generation_id = f.generation_id;
    if version >= 7 {
        r.protocol_type = f.protocol_type.map(StrBytes::from_string);
        r.protocol_name = f.protocol_name.map(StrBytes::from_string);
    } else {
        r.protocol_name = Some(StrBytes::from_string(f.protocol_name.unwrap_or_default()));
    }
    r.leader = StrBytes::from_string(f.leader);
    r.skip_assignment = version >= 9 && f.skip_assignment;
    r.member_id = StrBytes::from_string(f.member_id);
    r.members = f.members;
    r
}

pub(crate) fn join_error(version: i16, error: ResponseError, member_id: &str) -> JoinGroupResponse {
    join_response(
        version,
        JoinFields {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.to_owned(),
            members: Vec::new(),
        },
    )
}

pub(crate) fn sync_response(
    version: i16,
    error: Option<ResponseError>,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    assignment: Bytes,
) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default();
    r.error_code = error.map_or(0, |e| e.code());
    if version >= 5 {
        r.protocol_type = protocol_type.map(StrBytes::from_string);
        r.protocol_name = protocol_name.map(StrBytes::from_string);
    }
    r.assignment = assignment;
    r
}
