//! KIP-848 consumer groups: ConsumerGroupHeartbeat (68, v0–1) and ConsumerGroupDescribe
//! (69, v0–1), the "consumer" group protocol of Kafka 4.
//!
//! The coordinator, not a group leader, computes the assignment. Every change to membership,
//! subscriptions or the metadata of a subscribed topic bumps the *group epoch*; the coordinator
//! then computes a *target assignment* for that epoch with a server-side assignor (`uniform`,
//! the default, or `range`). Each member moves towards its target one heartbeat at a time
//! (Kafka's `CurrentAssignmentBuilder`):
//!
//! - **Stable**: the member holds its target. When the target changes, a member that must give
//!   partitions up is told to keep only `assigned ∩ target` and goes to
//! - **UnrevokedPartitions**: its epoch stays put until a heartbeat reports the revoked partitions
//!   gone (or its rebalance timeout fences it). Then its epoch becomes the target epoch and it
//!   gets every target partition nobody else owns; if some are still owned, it waits in
//! - **UnreleasedPartitions** and picks them up at a later heartbeat once they are free.
//!
//! A partition is never given to one member while another still owns it (assigned or pending
//! revocation): `owners` tracks that. A member whose heartbeat epoch is ahead of its own, or
//! behind it other than the one-step-behind case of a lost response, is fenced
//! (FENCED_MEMBER_EPOCH) and rejoins with epoch 0.
//!
//! Persistence: like Kafka, the whole group goes to `__consumer_offsets`, one record per key
//! version (layouts in [`records`]): 3 the group epoch, 4 the subscribed topics' metadata,
//! 5 each member's metadata, 6 the target assignment's epoch (and assignor), 7 each member's
//! target, 8 each member's epoch, state and partitions. So a restarted coordinator resumes the
//! group where it was: members heartbeat at their old epochs and keep their partitions, without
//! a rebalance, and no epoch is ever reused. Session and revocation deadlines are not persisted:
//! a replayed member gets a full session (and, mid-revocation, a full rebalance timeout) from
//! the restart.
//!
//! - Writing: every handler and timer that changes a group ends with `flush`, which diffs the
//!   group against `ConsumerGroup::persisted` (what the log holds) and writes only the keys that
//!   differ, tombstones for members that are gone. Handlers mark the members they touch
//!   (`touch`); a new target or topic metadata marks them all. A heartbeat that changes nothing
//!   writes nothing. Deleting the group writes tombstones for all its keys
//!   (`ConsumerGroup::tombstones`).
//! - Replay: each key is last-write-wins on its own, so compaction may reorder them: a member's
//!   first record (of keys 5, 7, 8) creates it. When the coordinator starts serving,
//!   `finish_replay` drops members whose metadata (key 5) never came, along with anything a log
//!   with lost records contradicts (a partition held twice), and writes what that changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    self as cgd, DescribedGroup as CgDescribed,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as HbAssignment, TopicPartitions as HbTopicPartitions,
};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as CpaTopicPartition;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, ConsumerProtocolAssignment,
    ConsumerProtocolSubscription, GroupId, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use uuid::Uuid;

use super::coordinator::GroupCoordinator;
use super::records::{self, Decoded, LogRecord};
use super::state::{Ctx, Group, GroupState};
use super::{MAX_ID_BYTES, MAX_MEMBERS_PER_GROUP};

/// Server-side assignors, the default first (Kafka's `group.consumer.assignors`).
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];
/// Bound on the topics one member may name in its subscription.
pub const MAX_SUBSCRIBED_TOPICS: usize = 100_000;
/// Bound on a subscription regex, in bytes.
pub const MAX_REGEX_BYTES: usize = 4096;

/// What the coordinator needs to know about topics: the broker's metadata.
pub trait TopicLookup {
    /// (topic id, partition count) of an existing topic.
    fn topic(&self, name: &str) -> Option<(Uuid, i32)>;
    /// Calls `f` with every topic a regex subscription may match (internal topics excluded).
    fn for_each_topic(&self, f: &mut dyn FnMut(&str));
    /// Whether the client (`principal`, `host`) may DESCRIBE `topic`: a regex subscription
    /// resolves only to topics its member may see. True without an authorizer.
    fn may_describe(&self, _principal: &str, _host: &str, _topic: &str) -> bool {
        true
    }
}

impl TopicLookup for crate::meta::MetaState {
    fn topic(&self, name: &str) -> Option<(Uuid, i32)> {
        self.topics
            .get(name)
            .map(|t| (Uuid::from_u128(t.id), t.partitions.len() as i32))
    }

    fn for_each_topic(&self, f: &mut dyn FnMut(&str)) {
        for t in self.topics.values().filter(|t| !t.internal) {
            f(&t.name);
        }
    }
}

/// Partitions by topic id. Invariant: no topic maps to an empty set.
pub type Assignment = records::TopicPartitions;

#[cfg(test)]
fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

fn contains(a: &Assignment, tp: &(Uuid, i32)) -> bool {
    a.get(&tp.0).is_some_and(|s| s.contains(&tp.1))
}

fn insert(a: &mut Assignment, tp: (Uuid, i32)) {
    a.entry(tp.0).or_default().insert(tp.1);
}

fn remove(a: &mut Assignment, tp: &(Uuid, i32)) {
    if let Some(s) = a.get_mut(&tp.0) {
        s.remove(&tp.1);
        if s.is_empty() {
            a.remove(&tp.0);
        }
    }
}

fn pairs(a: &Assignment) -> impl Iterator<Item = (Uuid, i32)> + '_ {
    a.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
}

/// Where a member is on its way to its target assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberState {
    Stable,
    /// Told to give up `revoking`; keeps its epoch until it reports them gone.
    UnrevokedPartitions,
    /// At the target epoch, waiting for target partitions other members still own.
    UnreleasedPartitions,
}

impl MemberState {
    /// The state's number in a current-assignment record (key 8).
    fn code(self) -> i8 {
        match self {
            MemberState::Stable => records::MEMBER_STATE_STABLE,
            MemberState::UnrevokedPartitions => records::MEMBER_STATE_UNREVOKED,
            MemberState::UnreleasedPartitions => records::MEMBER_STATE_UNRELEASED,
        }
    }

    fn from_code(code: i8) -> Option<MemberState> {
        match code {
            records::MEMBER_STATE_STABLE => Some(MemberState::Stable),
            records::MEMBER_STATE_UNREVOKED => Some(MemberState::UnrevokedPartitions),
            records::MEMBER_STATE_UNRELEASED => Some(MemberState::UnreleasedPartitions),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
    /// Sorted, deduplicated.
    pub subscribed_names: Vec<String>,
    pub subscribed_regex: Option<String>,
    /// The (principal, host) whose DESCRIBE rights filter the member's regex matches, from its
    /// latest heartbeat while authorization is on. In memory only: after a restart it is unknown
    /// until the member's next heartbeat, and its regex resolves unfiltered meanwhile.
    pub regex_owner: Option<(String, String)>,
    /// What the member was last told it owns.
    pub assigned: Assignment,
    /// Partitions the member must give up before it moves on.
    pub revoking: Assignment,
    pub session_deadline_ms: i64,
    pub revocation_deadline_ms: Option<i64>,
    /// A static member that left with epoch -2: kept (with its assignment) until its session
    /// expires, so the same instance can rejoin without a rebalance.
    pub left_static: bool,
}

impl ConsumerMember {
    /// A member that holds nothing yet, at epoch 0.
    fn new(member_id: &str, instance_id: Option<&str>, session_deadline_ms: i64) -> Self {
        ConsumerMember {
            member_id: member_id.to_owned(),
            instance_id: instance_id.map(str::to_owned),
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            rebalance_timeout_ms: 0,
            server_assignor: None,
            subscribed_names: Vec::new(),
            subscribed_regex: None,
            regex_owner: None,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
            session_deadline_ms,
            revocation_deadline_ms: None,
            left_static: false,
        }
    }

    /// The member's metadata record (key 5).
    fn metadata_value(&self) -> records::ConsumerMemberValue {
        records::ConsumerMemberValue {
            instance_id: self.instance_id.clone(),
            rack_id: self.rack_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            subscribed_topic_names: self.subscribed_names.clone(),
            subscribed_topic_regex: self.subscribed_regex.clone(),
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            server_assignor: self.server_assignor.clone(),
            left_static: self.left_static,
        }
    }

    /// The member's current-assignment record (key 8).
    fn assignment_value(&self) -> records::CurrentAssignmentValue {
        records::CurrentAssignmentValue {
            member_epoch: self.epoch,
            previous_member_epoch: self.previous_epoch,
            state: self.state.code(),
            assigned: self.assigned.clone(),
            pending_revocation: self.revoking.clone(),
        }
    }

    /// Everything the member owns: assigned and pending revocation.
    fn owned(&self) -> Vec<(Uuid, i32)> {
        pairs(&self.assigned).chain(pairs(&self.revoking)).collect()
    }

    pub fn deadline_ms(&self) -> i64 {
        match self.revocation_deadline_ms {
            Some(r) if self.state == MemberState::UnrevokedPartitions => {
                r.min(self.session_deadline_ms)
            }
            _ => self.session_deadline_ms,
        }
    }
}

/// What the log holds for one consumer group: the value last written or replayed under each of
/// its keys, encoded. A flush encodes what it would write now and writes only what differs from
/// these, so a heartbeat that changes nothing writes nothing. Absent: no record, or a tombstone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Persisted {
    /// Key 3, the group epoch.
    pub epoch: i32,
    /// Key 4, the subscribed topics' metadata.
    pub topics: Option<Bytes>,
    /// Key 6, the target assignment's epoch and assignor.
    pub target: Option<Bytes>,
    /// Key 5 by member id.
    pub members: BTreeMap<String, Bytes>,
    /// Key 7 by member id.
    pub targets: BTreeMap<String, Bytes>,
    /// Key 8 by member id.
    pub assignments: BTreeMap<String, Bytes>,
}

/// The KIP-848 part of a group; offsets stay in [`Group::offsets`].
#[derive(Debug, Clone, Default)]
pub(crate) struct ConsumerGroup {
    /// Group epoch: bumped by every membership, subscription or topic metadata change.
    pub epoch: i32,
    /// What the log holds. Invariant (between calls, once serving): equal to what this state
    /// would write, so `unflushed` is empty and `unflushed_all` false (`check_flushed`).
    pub persisted: Persisted,
    /// Members whose records (keys 5, 7, 8) may differ from `persisted`.
    pub unflushed: BTreeSet<String>,
    /// Every record may differ from `persisted` (a new target or topic metadata, replay).
    pub unflushed_all: bool,
    pub members: BTreeMap<String, ConsumerMember>,
    /// instance id → member id.
    pub static_members: BTreeMap<String, String>,
    /// Epoch of `target`.
    pub target_epoch: i32,
    pub target: BTreeMap<String, Assignment>,
    pub assignor: String,
    /// (id, partition count) of every existing topic some member subscribes to.
    pub subscription_meta: BTreeMap<String, (Uuid, i32)>,
    /// Owner of every partition assigned to or being revoked from a member.
    pub owners: BTreeMap<(Uuid, i32), String>,
    pub regexes: HashMap<String, regex::Regex>,
}

impl ConsumerGroup {
    pub fn new(epoch: i32) -> Self {
        ConsumerGroup {
            epoch,
            persisted: Persisted {
                epoch,
                ..Persisted::default()
            },
            target_epoch: epoch,
            assignor: ASSIGNORS[0].to_owned(),
            ..Default::default()
        }
    }

    /// Kafka's consumer group states.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.target_epoch != self.epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.target_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.members.values().map(ConsumerMember::deadline_ms).min()
    }

    fn bump(&mut self) {
        self.epoch += 1;
    }

    /// Marks member `id`'s records for the next flush.
    fn touch(&mut self, id: &str) {
        if !self.unflushed_all {
            self.unflushed.insert(id.to_owned());
        }
    }

    fn release_all(&mut self, member_id: &str) {
        self.owners.retain(|_, o| o != member_id);
    }

    /// Gives up the ownership of `tps` that `id` holds (another member may own one already
    /// while replay is under way).
    fn release(&mut self, id: &str, tps: &[(Uuid, i32)]) {
        for tp in tps {
            if self.owners.get(tp).map(String::as_str) == Some(id) {
                self.owners.remove(tp);
            }
        }
    }

    /// Takes a member out of `members`, `static_members` and `owners`; its target stays.
    fn detach(&mut self, member_id: &str) -> Option<ConsumerMember> {
        let m = self.members.remove(member_id)?;
        if let Some(iid) = &m.instance_id {
            if self.static_members.get(iid).map(String::as_str) == Some(member_id) {
                self.static_members.remove(iid);
            }
        }
        self.release(member_id, &m.owned());
        Some(m)
    }

    /// Removes a member (leave, expiry, fencing): its partitions become free for the others.
    pub fn remove_member(&mut self, member_id: &str) {
        if self.detach(member_id).is_some() {
            self.target.remove(member_id);
            self.touch(member_id);
            self.bump();
        }
    }

    /// Topic names member `m` subscribes to that exist now (names and regex matches; with an
    /// `owner`, only the regex matches it may DESCRIBE).
    fn resolve(
        &mut self,
        names: &[String],
        regex: Option<&str>,
        owner: Option<&(String, String)>,
        topics: &dyn TopicLookup,
    ) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = names
            .iter()
            .filter(|n| topics.topic(n).is_some())
            .cloned()
            .collect();
        if let Some(re) = regex.filter(|r| !r.is_empty()) {
            if let Some(re) = self.regex(re) {
                topics.for_each_topic(&mut |t| {
                    if re.is_match(t) && owner.is_none_or(|(p, h)| topics.may_describe(p, h, t)) {
                        out.insert(t.to_owned());
                    }
                });
            }
        }
        out
    }

    fn regex(&mut self, pattern: &str) -> Option<regex::Regex> {
        if let Some(r) = self.regexes.get(pattern) {
            return Some(r.clone());
        }
        let r = compile_regex(pattern).ok()?;
        if self.regexes.len() >= 1024 {
            self.regexes.clear();
        }
        self.regexes.insert(pattern.to_owned(), r.clone());
        Some(r)
    }

    /// Every member's resolved subscription.
    fn subscriptions(&mut self, topics: &dyn TopicLookup) -> BTreeMap<String, BTreeSet<String>> {
        // Static members that left keep their place (and target) until their session ends.
        type Spec = (
            String,
            Vec<String>,
            Option<String>,
            Option<(String, String)>,
        );
        let specs: Vec<Spec> = self
            .members
            .values()
            .map(|m| {
                let names = m.subscribed_names.clone();
                let owner = m.regex_owner.clone();
                (
                    m.member_id.clone(),
                    names,
                    m.subscribed_regex.clone(),
                    owner,
                )
            })
            .collect();
        specs
            .into_iter()
            .map(|(id, names, re, owner)| {
                let resolved = self.resolve(&names, re.as_deref(), owner.as_ref(), topics);
                (id, resolved)
            })
            .collect()
    }

    /// Re-reads the metadata of subscribed topics; a change (topic created, deleted, grown)
    /// bumps the group epoch. Runs on every heartbeat, so it resolves the union of the
    /// subscriptions (each distinct regex once), not every member's.
    fn refresh_metadata(&mut self, topics: &dyn TopicLookup) {
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut regexes: BTreeSet<String> = BTreeSet::new();
        for m in self.members.values() {
            for n in &m.subscribed_names {
                if !names.contains(n) {
                    names.insert(n.clone());
                }
            }
            if let Some(r) = m
                .subscribed_regex
                .as_ref()
                .filter(|r| !regexes.contains(*r))
            {
                regexes.insert(r.clone());
            }
        }
        let names: Vec<String> = names.into_iter().collect();
        // Unfiltered: this only detects metadata changes; each member's own view is filtered
        // when the target assignment is computed.
        let mut subscribed = self.resolve(&names, None, None, topics);
        for r in &regexes {
            subscribed.extend(self.resolve(&[], Some(r), None, topics));
        }
        let mut meta = BTreeMap::new();
        for name in subscribed {
            if let Some(t) = topics.topic(&name) {
                meta.insert(name, t);
            }
        }
        if meta != self.subscription_meta {
            self.subscription_meta = meta;
            self.unflushed_all = true;
            self.bump();
        }
    }

    /// Computes the target assignment of the current group epoch if it is behind.
    fn update_target(&mut self, topics: &dyn TopicLookup) {
        if self.target_epoch == self.epoch {
            return;
        }
        let subs = self.subscriptions(topics);
        // The assignor most members ask for; ties and no preference go to the default.
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.server_assignor.as_deref() {
                *votes.entry(a).or_default() += 1;
            }
        }
        let best = ASSIGNORS
            .iter()
            .copied()
            .max_by_key(|a| (votes.get(a).copied().unwrap_or(0), usize::MAX - rank(a)))
            .unwrap_or(ASSIGNORS[0]);
        self.assignor = best.to_owned();
        // Any member's target may move: flush them all (O(members), like the assignor).
        self.unflushed_all = true;
        self.target = match best {
            "range" => assign_range(&subs, &self.subscription_meta),
            _ => assign_uniform(&subs, &self.subscription_meta, &self.target),
        };
        self.target_epoch = self.epoch;
    }

    /// Moves member `id` towards its target (Kafka `CurrentAssignmentBuilder`). `owned` is the
    /// member's report of the partitions it holds, when the heartbeat carried one.
    fn reconcile(&mut self, id: &str, owned: Option<&Assignment>, now_ms: i64) {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let target_epoch = self.target_epoch;
        self.touch(id);
        let Some(m) = self.members.get_mut(id) else {
            return;
        };
        if m.state == MemberState::UnrevokedPartitions {
            let done = owned.is_some_and(|o| pairs(&m.revoking).all(|tp| !contains(o, &tp)));
            if !done {
                return;
            }
            let revoked: Vec<(Uuid, i32)> = pairs(&m.revoking).collect();
            m.revoking.clear();
            m.revocation_deadline_ms = None;
            m.state = MemberState::Stable;
            for tp in revoked {
                if self.owners.get(&tp).map(String::as_str) == Some(id) {
                    self.owners.remove(&tp);
                }
            }
        }
        let m = self.members.get_mut(id).expect("checked above");
        if m.epoch == target_epoch && m.state == MemberState::Stable {
            return;
        }
        let revoke: Vec<(Uuid, i32)> = pairs(&m.assigned)
            .filter(|tp| !contains(&target, tp))
            .collect();
        if !revoke.is_empty() {
            for tp in &revoke {
                remove(&mut m.assigned, tp);
                insert(&mut m.revoking, *tp);
            }
            m.state = MemberState::UnrevokedPartitions;
            m.revocation_deadline_ms = Some(now_ms + i64::from(m.rebalance_timeout_ms.max(0)));
            return;
        }
        let mut unreleased = false;
        for tp in pairs(&target) {
            if contains(&m.assigned, &tp) {
                continue;
            }
            match self.owners.get(&tp) {
                Some(o) if o != id => unreleased = true,
                _ => {
                    insert(&mut m.assigned, tp);
                    self.owners.insert(tp, id.to_owned());
                }
            }
        }
        if m.epoch != target_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = target_epoch;
        }
        m.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
    }

    /// Expires members whose session or revocation deadline passed.
    pub fn expire(&mut self, now_ms: i64) -> bool {
        let due: Vec<String> = self
            .members
            .values()
            .filter(|m| m.deadline_ms() <= now_ms)
            .map(|m| m.member_id.clone())
            .collect();
        for id in &due {
            self.remove_member(id);
        }
        !due.is_empty()
    }

    /// Panics if ownership bookkeeping is inconsistent. Tests call it after every step.
    pub fn check_invariants(&self, id: &str) {
        let mut owned = BTreeMap::new();
        for m in self.members.values() {
            assert!(m.epoch <= self.epoch, "{id}: member epoch ahead of group");
            for tp in pairs(&m.assigned).chain(pairs(&m.revoking)) {
                let prev = owned.insert(tp, m.member_id.clone());
                assert!(prev.is_none(), "{id}: {tp:?} owned twice");
            }
            if !m.revoking.is_empty() {
                assert_eq!(m.state, MemberState::UnrevokedPartitions, "{id}: revoking");
            }
            if let Some(iid) = &m.instance_id {
                assert_eq!(
                    self.static_members.get(iid),
                    Some(&m.member_id),
                    "{id}: static"
                );
            }
        }
        assert_eq!(owned, self.owners, "{id}: owners out of date");
        assert!(
            self.target_epoch <= self.epoch,
            "{id}: target ahead of group"
        );
        for mid in self.static_members.values() {
            assert!(
                self.members.contains_key(mid),
                "{id}: static map to gone {mid}"
            );
        }
    }

    fn topic_names(&self) -> HashMap<Uuid, &str> {
        self.subscription_meta
            .iter()
            .map(|(n, (id, _))| (*id, n.as_str()))
            .collect()
    }
}

fn rank(a: &str) -> usize {
    ASSIGNORS.iter().position(|x| *x == a).unwrap_or(usize::MAX)
}

/// Compiles a subscription regex with Kafka's (RE2J `matches`) whole-name semantics.
pub fn compile_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
}

/// Kafka's `uniform` assignor: balanced (partition counts differ by at most one between members
/// that could take each other's partitions) and sticky (a partition stays with its previous
/// target owner unless balance requires moving it).
///
/// Members are worked on by index, so the cost stays near O(partitions × subscribers of a
/// topic) even for large groups (10,000 partitions over 500 members in tens of milliseconds):
/// this runs on a shard's event loop.
pub fn assign_uniform(
    subs: &BTreeMap<String, BTreeSet<String>>,
    meta: &BTreeMap<String, (Uuid, i32)>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let names: Vec<&String> = subs.keys().collect();
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let members = names.len();
    // (topic id, partitions, subscriber indexes in member order, subscriber flags)
    let topics: Vec<(Uuid, i32, Vec<usize>, Vec<bool>)> = meta
        .iter()
        .filter_map(|(name, (id, n))| {
            let who: Vec<usize> = (0..members)
                .filter(|i| subs[names[*i]].contains(name))
                .collect();
            let mut flags = vec![false; members];
            who.iter().for_each(|i| flags[*i] = true);
            (!who.is_empty()).then_some((*id, *n, who, flags))
        })
        .collect();
    let topic_of: HashMap<Uuid, usize> = topics.iter().enumerate().map(|(i, t)| (t.0, i)).collect();
    let total: usize = topics.iter().map(|t| t.1.max(0) as usize).sum();
    let mut sets: Vec<BTreeSet<(Uuid, i32)>> = vec![BTreeSet::new(); members];
    let mut load = vec![0usize; members];
    if members == 0 {
        return BTreeMap::new();
    }
    // A member keeps at most its fair share of its previous partitions.
    let quota = total.div_ceil(members);
    let mut owner: HashMap<(Uuid, i32), usize> = HashMap::new();
    for (m, a) in previous {
        if let Some(&i) = index.get(m.as_str()) {
            owner.extend(pairs(a).map(|tp| (tp, i)));
        }
    }
    let mut free = Vec::new();
    for (ti, (id, n, _, flags)) in topics.iter().enumerate() {
        for p in 0..*n {
            let tp = (*id, p);
            match owner.get(&tp) {
                Some(&o) if flags[o] && load[o] < quota => {
                    sets[o].insert(tp);
                    load[o] += 1;
                }
                _ => free.push((ti, tp)),
            }
        }
    }
    for (ti, tp) in free {
        let best = *topics[ti]
            .2
            .iter()
            .min_by_key(|i| (load[**i], **i))
            .expect("a topic here has subscribers");
        sets[best].insert(tp);
        load[best] += 1;
    }
    // Balance heterogeneous subscriptions: move from the most loaded member while some member
    // that may take the partition holds two or more fewer.
    for _ in 0..total.saturating_mul(2) {
        let mut order: Vec<usize> = (0..members).collect();
        order.sort_by(|a, b| load[*b].cmp(&load[*a]).then(a.cmp(b)));
        let mut moved = None;
        'outer: for &from in &order {
            let l = load[from];
            if l < 2 {
                break;
            }
            // Partitions are ordered by topic: find the best taker once per topic.
            let mut last: Option<(Uuid, Option<usize>)> = None;
            for tp in sets[from].iter().rev() {
                let to = match last {
                    Some((t, to)) if t == tp.0 => to,
                    _ => {
                        let ti = topic_of[&tp.0];
                        let to = topics[ti]
                            .2
                            .iter()
                            .copied()
                            .filter(|i| load[*i] + 1 < l)
                            .min_by_key(|i| (load[*i], *i));
                        last = Some((tp.0, to));
                        to
                    }
                };
                if let Some(to) = to {
                    moved = Some((from, to, *tp));
                    break 'outer;
                }
            }
        }
        let Some((from, to, tp)) = moved else { break };
        sets[from].remove(&tp);
        sets[to].insert(tp);
        load[from] -= 1;
        load[to] += 1;
    }
    names
        .iter()
        .zip(sets)
        .map(|(n, set)| {
            let mut a = Assignment::new();
            set.into_iter().for_each(|tp| insert(&mut a, tp));
            ((*n).clone(), a)
        })
        .collect()
}

/// Kafka's `range` assignor: per topic, its subscribers in member id order take contiguous
/// ranges, the first `partitions % subscribers` one partition more.
pub fn assign_range(
    subs: &BTreeMap<String, BTreeSet<String>>,
    meta: &BTreeMap<String, (Uuid, i32)>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subs
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for (name, (id, n)) in meta {
        let who: Vec<&String> = subs
            .iter()
            .filter(|(_, s)| s.contains(name))
            .map(|(m, _)| m)
            .collect();
        if who.is_empty() {
            continue;
        }
        let n = *n as usize;
        let (each, extra) = (n / who.len(), n % who.len());
        let mut next = 0;
        for (i, m) in who.iter().enumerate() {
            let take = each + usize::from(i < extra);
            for p in next..next + take {
                insert(out.get_mut(*m).expect("subscriber"), (*id, p as i32));
            }
            next += take;
        }
    }
    out
}

fn hb_error(e: ResponseError, msg: &str) -> ConsumerGroupHeartbeatResponse {
    let mut r = ConsumerGroupHeartbeatResponse::default();
    r.error_code = e.code();
    r.error_message = Some(StrBytes::from_string(msg.to_owned()));
    r.member_id = None;
    r
}

fn owned_of(req: &ConsumerGroupHeartbeatRequest) -> Option<Assignment> {
    req.topic_partitions.as_ref().map(|tps| {
        let mut a = Assignment::new();
        for t in tps {
            for p in &t.partitions {
                insert(&mut a, (t.topic_id, *p));
            }
        }
        a
    })
}

/// Request checks of Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`.
fn validate(
    req: &ConsumerGroupHeartbeatRequest,
    version: i16,
) -> Result<(), (ResponseError, String)> {
    let invalid = |m: &str| Err((ResponseError::InvalidRequest, m.to_owned()));
    let gid = req.group_id.0.as_str();
    if gid.is_empty() || gid.len() > MAX_ID_BYTES {
        return invalid("GroupId can't be empty.");
    }
    if req.member_id.len() > MAX_ID_BYTES {
        return invalid("MemberId is too long.");
    }
    if req
        .instance_id
        .as_ref()
        .is_some_and(|i| i.is_empty() || i.len() > MAX_ID_BYTES)
    {
        return invalid("InstanceId can't be empty.");
    }
    if req
        .rack_id
        .as_ref()
        .is_some_and(|r| r.is_empty() || r.len() > MAX_ID_BYTES)
    {
        return invalid("RackId can't be empty.");
    }
    let epoch = req.member_epoch;
    if epoch < -2 {
        return invalid("MemberEpoch is invalid.");
    }
    if (version >= 1 || epoch != 0) && req.member_id.is_empty() {
        return invalid("MemberId can't be empty.");
    }
    if epoch == -2 && req.instance_id.is_none() {
        return invalid("InstanceId can't be null when leaving as a static member.");
    }
    if epoch == 0 {
        if req.rebalance_timeout_ms == -1 {
            return invalid("RebalanceTimeoutMs must be provided in first request.");
        }
        if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
            return invalid(
                "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
            );
        }
        if req.topic_partitions.as_ref().is_none_or(|t| !t.is_empty()) {
            return invalid("TopicPartitions must be empty when (re-)joining.");
        }
    }
    if req.subscribed_topic_names.as_ref().is_some_and(|t| {
        t.len() > MAX_SUBSCRIBED_TOPICS || t.iter().any(|n| n.len() > MAX_ID_BYTES)
    }) {
        return invalid("SubscribedTopicNames is too large.");
    }
    if let Some(a) = req.server_assignor.as_ref() {
        if !ASSIGNORS.contains(&a.as_str()) {
            return Err((
                ResponseError::UnsupportedAssignor,
                format!(
                    "ServerAssignor {a} is not supported. Supported assignors: uniform, range."
                ),
            ));
        }
    }
    if let Some(re) = req
        .subscribed_topic_regex
        .as_ref()
        .filter(|r| !r.is_empty())
    {
        if re.len() > MAX_REGEX_BYTES || compile_regex(re).is_err() {
            return Err((
                ResponseError::InvalidRegularExpression,
                format!("SubscribedTopicRegex `{re}` is not a valid regular expression."),
            ));
        }
    }
    Ok(())
}

/// Identity of the caller, from the request header and connection.
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    pub client_id: &'a str,
    pub client_host: &'a str,
    /// (principal, host) for authorization, while an authorizer is on.
    pub owner: Option<(&'a str, &'a str)>,
}

impl GroupCoordinator {
    /// ConsumerGroupHeartbeat v0–v1.
    pub fn consumer_group_heartbeat(
        &mut self,
        req: &ConsumerGroupHeartbeatRequest,
        version: i16,
        topics: &dyn TopicLookup,
        caller: Caller<'_>,
        now_ms: i64,
    ) -> ConsumerGroupHeartbeatResponse {
        self.run_timers(now_ms);
        let gid = req.group_id.0.as_str().to_owned();
        let r = match validate(req, version) {
            Err((e, msg)) => hb_error(e, &msg),
            Ok(()) => self.cg_heartbeat_inner(req, topics, caller, now_ms),
        };
        if let Some(g) = self.groups.get_mut(&gid) {
            sync_consumer_state(g, now_ms);
            flush(g, &mut self.out.records);
        }
        self.settle(&gid, now_ms);
        r
    }

    fn cg_heartbeat_inner(
        &mut self,
        req: &ConsumerGroupHeartbeatRequest,
        topics: &dyn TopicLookup,
        caller: Caller<'_>,
        now_ms: i64,
    ) -> ConsumerGroupHeartbeatResponse {
        let gid = req.group_id.0.as_str();
        let epoch = req.member_epoch;
        let mut member_id = req.member_id.to_string();
        if member_id.is_empty() {
            // v0: the coordinator names a joining member.
            member_id = self.new_consumer_member_id(now_ms);
        }
        let session_ms = i64::from(self.config().consumer_session_timeout_ms);
        let interval_ms = self.config().consumer_heartbeat_interval_ms;
        let max_size = self.config().group_max_size.min(MAX_MEMBERS_PER_GROUP);
        match self.groups.get(gid) {
            None if epoch != 0 => {
                return hb_error(
                    ResponseError::UnknownMemberId,
                    &format!("Member {member_id} is not a member of group {gid}."),
                )
            }
            None => {
                if self.groups.len() >= super::MAX_GROUPS_PER_COORDINATOR {
                    return hb_error(ResponseError::CoordinatorNotAvailable, "Too many groups.");
                }
                let mut g = Group::new(gid.to_owned(), now_ms);
                g.consumer = Some(Box::new(ConsumerGroup::new(0)));
                self.groups.insert(gid.to_owned(), g);
            }
            Some(g) if g.consumer.is_none() => {
                if !g.members.is_empty() || !g.pending_members.is_empty() {
                    return hb_error(
                        ResponseError::GroupIdNotFound,
                        &format!("Group {gid} is not a consumer group."),
                    );
                }
                // An empty classic group becomes a consumer group; its offsets stay.
                let g = self.groups.get_mut(gid).expect("present");
                if g.generation_id > 0 {
                    self.out.records.push(records::group_tombstone(gid));
                    g.generation_id = 0;
                    g.protocol_type = None;
                }
                g.consumer = Some(Box::new(ConsumerGroup::new(0)));
            }
            Some(_) => {}
        }
        let g = self.groups.get_mut(gid).expect("present");
        let c = g.consumer.as_mut().expect("consumer group");
        let owned = owned_of(req);

        if epoch < 0 {
            return leave(c, req, &member_id, session_ms, now_ms);
        }
        if epoch == 0 {
            if let Err((e, msg)) = join(c, req, &member_id, max_size, caller) {
                return hb_error(e, &msg);
            }
        } else {
            let Some(m) = c.members.get(&member_id).filter(|m| !m.left_static) else {
                return hb_error(
                    ResponseError::UnknownMemberId,
                    &format!("Member {member_id} is not a member of group {gid}."),
                );
            };
            if epoch > m.epoch
                || (epoch < m.epoch
                    && !(epoch == m.previous_epoch
                        && owned
                            .as_ref()
                            .is_some_and(|o| pairs(o).all(|tp| contains(&m.assigned, &tp)))))
            {
                return hb_error(
                    ResponseError::FencedMemberEpoch,
                    &format!(
                        "The consumer group member has a smaller or larger member epoch ({epoch}) \
                         than the one known by the group coordinator ({}). The member must \
                         abandon all its partitions and rejoin.",
                        m.epoch
                    ),
                );
            }
            update_member(c, req, &member_id);
        }
        let m = c.members.get_mut(&member_id).expect("member");
        m.session_deadline_ms = now_ms + session_ms;
        if let Some((principal, host)) = caller.owner {
            if m.regex_owner
                .as_ref()
                .is_none_or(|(p, h)| p != principal || h != host)
            {
                m.regex_owner = Some((principal.to_owned(), host.to_owned()));
            }
        }
        let before = m.assigned.clone();
        c.refresh_metadata(topics);
        c.update_target(topics);
        c.reconcile(&member_id, owned.as_ref(), now_ms);
        let m = &c.members[&member_id];
        let mut r = ConsumerGroupHeartbeatResponse::default();
        r.member_id = Some(StrBytes::from_string(member_id.clone()));
        r.member_epoch = m.epoch;
        r.heartbeat_interval_ms = interval_ms;
        if owned.is_some() || epoch == 0 || m.assigned != before {
            let mut a = HbAssignment::default();
            a.topic_partitions = m
                .assigned
                .iter()
                .map(|(t, ps)| {
                    let mut tp = HbTopicPartitions::default();
                    tp.topic_id = *t;
                    tp.partitions = ps.iter().copied().collect();
                    tp
                })
                .collect();
            r.assignment = Some(a);
        }
        r
    }

    fn new_consumer_member_id(&mut self, now_ms: i64) -> String {
        let id = self.new_member_id("", now_ms);
        id.trim_start_matches('-').to_owned()
    }

    /// One group of ConsumerGroupDescribe (authorized_operations is left for the broker).
    pub fn consumer_group_describe(&self, group_id: &str) -> CgDescribed {
        let mut d = CgDescribed::default();
        d.group_id = GroupId(StrBytes::from_string(group_id.to_owned()));
        let Some(c) = self
            .groups
            .get(group_id)
            .and_then(|g| g.consumer.as_deref())
        else {
            d.error_code = ResponseError::GroupIdNotFound.code();
            d.error_message = Some(StrBytes::from_string(format!(
                "Group {group_id} not found or not a consumer group."
            )));
            d.group_state = StrBytes::from_static_str("Dead");
            return d;
        };
        let names = c.topic_names();
        let describe = |a: &Assignment| {
            let mut out = cgd::Assignment::default();
            out.topic_partitions = a
                .iter()
                .map(|(t, ps)| {
                    let mut tp = cgd::TopicPartitions::default();
                    tp.topic_id = *t;
                    tp.topic_name = TopicName(StrBytes::from_string(
                        names.get(t).copied().unwrap_or_default().to_owned(),
                    ));
                    tp.partitions = ps.iter().copied().collect();
                    tp
                })
                .collect();
            out
        };
        d.group_state = StrBytes::from_static_str(c.state_name());
        d.group_epoch = c.epoch;
        d.assignment_epoch = c.target_epoch;
        d.assignor_name = StrBytes::from_string(c.assignor.clone());
        d.members = c
            .members
            .values()
            .map(|m| {
                let mut dm = cgd::Member::default();
                dm.member_id = StrBytes::from_string(m.member_id.clone());
                dm.instance_id = m.instance_id.clone().map(StrBytes::from_string);
                dm.rack_id = m.rack_id.clone().map(StrBytes::from_string);
                dm.member_epoch = m.epoch;
                dm.client_id = StrBytes::from_string(m.client_id.clone());
                dm.client_host = StrBytes::from_string(m.client_host.clone());
                dm.subscribed_topic_names = m
                    .subscribed_names
                    .iter()
                    .map(|n| TopicName(StrBytes::from_string(n.clone())))
                    .collect();
                dm.subscribed_topic_regex = m.subscribed_regex.clone().map(StrBytes::from_string);
                dm.assignment = describe(&m.assigned);
                dm.target_assignment =
                    describe(&c.target.get(&m.member_id).cloned().unwrap_or_default());
                dm.member_type = 1; // consumer protocol
                dm
            })
            .collect();
        d
    }

    /// OffsetFetch v9+ from a member of a consumer group: the member must exist and name its
    /// current epoch (UNKNOWN_MEMBER_ID / STALE_MEMBER_EPOCH).
    pub fn validate_offset_fetch(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Option<ResponseError> {
        if member_epoch < 0 && member_id.is_none_or(str::is_empty) {
            return None;
        }
        let c = self.groups.get(group_id)?.consumer.as_deref()?;
        let m = c.members.get(member_id.unwrap_or_default())?;
        if m.left_static {
            return Some(ResponseError::UnknownMemberId);
        }
        (m.epoch != member_epoch).then_some(ResponseError::StaleMemberEpoch)
    }
}

/// OffsetCommit into a consumer group (Kafka `ConsumerGroup.validateOffsetCommit`): an empty
/// group takes "simple" commits (epoch -1); otherwise only a member at its current epoch may
/// commit, with OffsetCommit v9+.
pub(crate) fn validate_commit(
    c: &ConsumerGroup,
    member_id: &str,
    member_epoch: i32,
    version: i16,
    transactional: bool,
) -> Option<ResponseError> {
    if member_epoch < 0 && c.members.is_empty() {
        return None;
    }
    let Some(m) = c.members.get(member_id).filter(|m| !m.left_static) else {
        return Some(ResponseError::UnknownMemberId);
    };
    if transactional {
        return (m.epoch != member_epoch).then_some(ResponseError::IllegalGeneration);
    }
    if version < 9 {
        return Some(ResponseError::UnsupportedVersion);
    }
    (m.epoch != member_epoch).then_some(ResponseError::StaleMemberEpoch)
}

fn leave(
    c: &mut ConsumerGroup,
    req: &ConsumerGroupHeartbeatRequest,
    member_id: &str,
    session_ms: i64,
    now_ms: i64,
) -> ConsumerGroupHeartbeatResponse {
    let id = match req.instance_id.as_deref() {
        Some(iid) => match c.static_members.get(iid) {
            Some(mid) if mid == member_id => mid.clone(),
            Some(_) => {
                return hb_error(
                    ResponseError::FencedInstanceId,
                    &format!("Static member {member_id} with instance id {iid} was replaced."),
                )
            }
            None => member_id.to_owned(),
        },
        None => member_id.to_owned(),
    };
    if !c.members.contains_key(&id) {
        return hb_error(
            ResponseError::UnknownMemberId,
            &format!("Member {member_id} is not a member of the group."),
        );
    }
    if req.member_epoch == -2 {
        let m = c.members.get_mut(&id).expect("checked");
        m.left_static = true;
        m.session_deadline_ms = now_ms + session_ms;
        c.touch(&id);
    } else {
        c.remove_member(&id);
    }
    let mut r = ConsumerGroupHeartbeatResponse::default();
    r.member_id = Some(StrBytes::from_string(member_id.to_owned()));
    r.member_epoch = req.member_epoch;
    r
}

fn sorted_names(names: &[TopicName]) -> Vec<String> {
    let set: BTreeSet<String> = names.iter().map(|n| n.0.to_string()).collect();
    set.into_iter().collect()
}

fn join(
    c: &mut ConsumerGroup,
    req: &ConsumerGroupHeartbeatRequest,
    member_id: &str,
    max_size: usize,
    caller: Caller<'_>,
) -> Result<(), (ResponseError, String)> {
    let instance = req.instance_id.as_deref();
    let mut inherited = false;
    let mut added = false;
    // A static member rejoining under a new member id takes over the old one's place.
    if let Some(iid) = instance {
        if let Some(old) = c.static_members.get(iid).cloned() {
            if old != member_id {
                let left = c.members.get(&old).is_some_and(|m| m.left_static);
                if !left {
                    return Err((
                        ResponseError::UnreleasedInstanceId,
                        format!("Static member {old} with instance id {iid} is still active."),
                    ));
                }
                let mut m = c.members.remove(&old).expect("static member");
                c.touch(&old);
                c.touch(member_id);
                m.member_id = member_id.to_owned();
                m.left_static = false;
                for o in c.owners.values_mut() {
                    if *o == old {
                        *o = member_id.to_owned();
                    }
                }
                if let Some(t) = c.target.remove(&old) {
                    c.target.insert(member_id.to_owned(), t);
                }
                c.static_members
                    .insert(iid.to_owned(), member_id.to_owned());
                c.members.insert(member_id.to_owned(), m);
                inherited = true;
            }
        }
    }
    let existing = c
        .members
        .get(member_id)
        .map(|m| (m.left_static, m.instance_id.as_deref() == instance));
    match existing {
        // The same static member coming back: it keeps its assignment and epoch.
        Some((true, true)) => {
            c.members.get_mut(member_id).expect("member").left_static = false;
        }
        // Rejoining with epoch 0 (after being fenced): it holds nothing now, so release what it
        // had; its target stays.
        Some((false, true)) => {
            if !inherited {
                let m = c.members.get_mut(member_id).expect("member");
                m.assigned.clear();
                m.revoking.clear();
                m.epoch = 0;
                m.previous_epoch = 0;
                m.state = MemberState::Stable;
                m.revocation_deadline_ms = None;
                c.release_all(member_id);
            }
        }
        existing => {
            if existing.is_some() {
                c.remove_member(member_id);
            }
            let active = c.members.values().filter(|m| !m.left_static).count();
            if active >= max_size {
                return Err((
                    ResponseError::GroupMaxSizeReached,
                    format!(
                        "The consumer group has reached its maximum capacity of {max_size} members."
                    ),
                ));
            }
            let mut m = ConsumerMember::new(member_id, instance, 0);
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            c.members.insert(member_id.to_owned(), m);
            if let Some(iid) = instance {
                c.static_members
                    .insert(iid.to_owned(), member_id.to_owned());
            }
            added = true;
        }
    }
    let m = c.members.get_mut(member_id).expect("member");
    m.client_id = truncate(caller.client_id);
    m.client_host = truncate(caller.client_host);
    let before = c.epoch;
    update_member(c, req, member_id);
    if added && c.epoch == before {
        c.bump();
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    let mut end = s.len().min(MAX_ID_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Applies the fields a heartbeat may change; a subscription change bumps the group epoch.
fn update_member(c: &mut ConsumerGroup, req: &ConsumerGroupHeartbeatRequest, member_id: &str) {
    c.touch(member_id);
    let m = c.members.get_mut(member_id).expect("member");
    let mut changed = false;
    if req.rebalance_timeout_ms != -1 {
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
    }
    if let Some(r) = &req.rack_id {
        m.rack_id = Some(r.to_string());
    }
    if let Some(a) = &req.server_assignor {
        if m.server_assignor.as_deref() != Some(a.as_str()) {
            m.server_assignor = Some(a.to_string());
            changed = true;
        }
    }
    if let Some(names) = &req.subscribed_topic_names {
        let names = sorted_names(names);
        if names != m.subscribed_names {
            m.subscribed_names = names;
            changed = true;
        }
    }
    if let Some(re) = &req.subscribed_topic_regex {
        let re = (!re.is_empty()).then(|| re.to_string());
        if re != m.subscribed_regex {
            m.subscribed_regex = re;
            changed = true;
        }
    }
    if changed {
        c.bump();
    }
}

/// Keeps the classic `state` field of a consumer group meaningful for the code they share
/// (retention counts from Empty, DeleteGroups needs Empty).
pub(crate) fn sync_consumer_state(g: &mut Group, now_ms: i64) {
    let Some(c) = g.consumer.as_deref() else {
        return;
    };
    let want = if c.members.is_empty() {
        GroupState::Empty
    } else {
        GroupState::Stable
    };
    if g.state != want {
        g.transition(want, now_ms);
    }
}

/// Queues the records of whatever the group changed since the last flush (keys 3–8, tombstones
/// for members that left). Called after every handler and timer that changes a consumer group.
pub(crate) fn flush(g: &mut Group, out: &mut Vec<LogRecord>) {
    let Some(c) = g.consumer.as_deref_mut() else {
        return;
    };
    c.flush(&g.group_id, out);
}

/// Timer work of a consumer group: session and revocation expiry.
pub(crate) fn fire_consumer(g: &mut Group, ctx: &mut Ctx) -> bool {
    let Some(c) = g.consumer.as_deref_mut() else {
        return false;
    };
    let fired = c.expire(ctx.now_ms);
    sync_consumer_state(g, ctx.now_ms);
    let mut recs = Vec::new();
    flush(g, &mut recs);
    for r in recs {
        ctx.record(r);
    }
    fired
}

// ---------------------------------------------------------------------- persistence

/// Writes `want` under a group-level key (4 or 6) if the log holds something else.
fn sync_group_key(
    slot: &mut Option<Bytes>,
    key_version: i16,
    group: &str,
    want: Option<Bytes>,
    out: &mut Vec<LogRecord>,
) {
    if *slot != want {
        slot.clone_from(&want);
        out.push(LogRecord {
            key: records::consumer_group_part_key(key_version, group),
            value: want,
        });
    }
}

/// Writes `want` under member `id`'s key (5, 7 or 8) if the log holds something else; `None`
/// writes a tombstone.
fn sync_member_key(
    map: &mut BTreeMap<String, Bytes>,
    key_version: i16,
    group: &str,
    id: &str,
    want: Option<Bytes>,
    out: &mut Vec<LogRecord>,
) {
    if map.get(id) == want.as_ref() {
        return;
    }
    match &want {
        Some(v) => map.insert(id.to_owned(), v.clone()),
        None => map.remove(id),
    };
    out.push(LogRecord {
        key: records::consumer_member_part_key(key_version, group, id),
        value: want,
    });
}

impl ConsumerGroup {
    /// Key 4's value; none while no subscribed topic exists.
    fn topics_value(&self) -> Option<Bytes> {
        (!self.subscription_meta.is_empty())
            .then(|| records::encode_topic_metadata(&self.subscription_meta))
    }

    /// Key 6's value; none until a target was computed (target epochs start at 1).
    fn target_value(&self) -> Option<Bytes> {
        (self.target_epoch > 0).then(|| {
            records::encode_target_assignment(&records::TargetAssignmentValue {
                assignment_epoch: self.target_epoch,
                assignor: self.assignor.clone(),
            })
        })
    }

    /// Member `id`'s values of keys 5, 7 and 8; none for a member that is gone.
    fn member_values(&self, id: &str) -> [Option<Bytes>; 3] {
        let m = self.members.get(id);
        [
            m.map(|m| records::encode_consumer_member(&m.metadata_value())),
            self.target.get(id).map(records::encode_target_member),
            m.map(|m| records::encode_current_assignment(&m.assignment_value())),
        ]
    }

    /// Every member id the log or memory knows.
    fn all_member_ids(&self) -> BTreeSet<String> {
        let p = &self.persisted;
        self.members
            .keys()
            .chain(self.target.keys())
            .chain(p.members.keys())
            .chain(p.targets.keys())
            .chain(p.assignments.keys())
            .cloned()
            .collect()
    }

    /// See [`flush`]. Group-level keys are compared only when `unflushed_all` says they may
    /// have changed (the epoch always: that is one integer).
    fn flush(&mut self, group: &str, out: &mut Vec<LogRecord>) {
        if self.epoch != self.persisted.epoch {
            self.persisted.epoch = self.epoch;
            out.push(records::consumer_group_record(group, self.epoch));
        }
        let ids = if self.unflushed_all {
            let topics = self.topics_value();
            let key = records::CONSUMER_PARTITION_METADATA_KEY_VERSION;
            sync_group_key(&mut self.persisted.topics, key, group, topics, out);
            let target = self.target_value();
            let key = records::CONSUMER_TARGET_KEY_VERSION;
            sync_group_key(&mut self.persisted.target, key, group, target, out);
            self.unflushed.clear();
            self.all_member_ids()
        } else {
            std::mem::take(&mut self.unflushed)
        };
        self.unflushed_all = false;
        for id in &ids {
            let [member, target, assignment] = self.member_values(id);
            let p = &mut self.persisted;
            let key = records::CONSUMER_MEMBER_KEY_VERSION;
            sync_member_key(&mut p.members, key, group, id, member, out);
            let key = records::CONSUMER_TARGET_MEMBER_KEY_VERSION;
            sync_member_key(&mut p.targets, key, group, id, target, out);
            let key = records::CONSUMER_ASSIGNMENT_KEY_VERSION;
            sync_member_key(&mut p.assignments, key, group, id, assignment, out);
        }
    }

    /// Tombstones for every key this group may hold in the log, to delete it (DeleteGroups,
    /// offset expiry, turning into a classic group): each member's keys 5, 7, 8, then the
    /// group's 4, 6 and 3. None if the group never wrote a record.
    pub fn tombstones(&self, group: &str) -> Vec<LogRecord> {
        if self.epoch == 0 && self.persisted == Persisted::default() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for id in self.all_member_ids() {
            for key in [
                records::CONSUMER_MEMBER_KEY_VERSION,
                records::CONSUMER_TARGET_MEMBER_KEY_VERSION,
                records::CONSUMER_ASSIGNMENT_KEY_VERSION,
            ] {
                out.push(LogRecord {
                    key: records::consumer_member_part_key(key, group, &id),
                    value: None,
                });
            }
        }
        for key in [
            records::CONSUMER_PARTITION_METADATA_KEY_VERSION,
            records::CONSUMER_TARGET_KEY_VERSION,
        ] {
            out.push(LogRecord {
                key: records::consumer_group_part_key(key, group),
                value: None,
            });
        }
        out.push(records::consumer_group_tombstone(group));
        out
    }

    /// Panics unless the log holds exactly this state (nothing left to flush). The coordinator
    /// checks it between calls once it serves; O(members), so tests only.
    pub fn check_flushed(&self, id: &str) {
        assert!(
            self.unflushed.is_empty() && !self.unflushed_all,
            "{id}: unflushed changes"
        );
        let p = &self.persisted;
        assert_eq!(p.epoch, self.epoch, "{id}: epoch not persisted");
        assert_eq!(p.topics, self.topics_value(), "{id}: topic metadata");
        assert_eq!(p.target, self.target_value(), "{id}: target metadata");
        let mut want: [BTreeMap<String, Bytes>; 3] = Default::default();
        for mid in self.all_member_ids() {
            for (map, v) in want.iter_mut().zip(self.member_values(&mid)) {
                if let Some(v) = v {
                    map.insert(mid.clone(), v);
                }
            }
        }
        assert_eq!(p.members, want[0], "{id}: member metadata");
        assert_eq!(p.targets, want[1], "{id}: target members");
        assert_eq!(p.assignments, want[2], "{id}: current assignments");
    }
}

// ---------------------------------------------------------------------- replay

impl ConsumerGroup {
    /// Member `id`, created with placeholder metadata if its key 5 has not been replayed yet.
    fn replayed_member(&mut self, id: &str, session_deadline_ms: i64) -> &mut ConsumerMember {
        self.members
            .entry(id.to_owned())
            .or_insert_with(|| ConsumerMember::new(id, None, session_deadline_ms))
    }

    /// Key 5: the member's metadata, or its removal.
    fn replay_member(
        &mut self,
        id: &str,
        v: Option<records::ConsumerMemberValue>,
        now_ms: i64,
        session_deadline_ms: i64,
    ) {
        let Some(v) = v else {
            self.persisted.members.remove(id);
            self.detach(id);
            return;
        };
        self.persisted
            .members
            .insert(id.to_owned(), records::encode_consumer_member(&v));
        let m = self.replayed_member(id, session_deadline_ms);
        let old_instance = std::mem::replace(&mut m.instance_id, v.instance_id);
        m.rack_id = v.rack_id;
        m.client_id = v.client_id;
        m.client_host = v.client_host;
        let names: BTreeSet<String> = v.subscribed_topic_names.into_iter().collect();
        m.subscribed_names = names.into_iter().collect();
        m.subscribed_regex = v.subscribed_topic_regex;
        m.rebalance_timeout_ms = v.rebalance_timeout_ms;
        m.server_assignor = v.server_assignor;
        m.left_static = v.left_static;
        m.revocation_deadline_ms = revocation_deadline(m, now_ms);
        let instance = m.instance_id.clone();
        if let Some(old) = old_instance {
            if self.static_members.get(&old).map(String::as_str) == Some(id) {
                self.static_members.remove(&old);
            }
        }
        if let Some(iid) = instance {
            self.static_members.insert(iid, id.to_owned());
        }
    }

    /// Key 7: the member's target partitions.
    fn replay_target_member(&mut self, id: &str, partitions: Option<Assignment>) {
        match partitions {
            Some(t) => {
                let v = records::encode_target_member(&t);
                self.persisted.targets.insert(id.to_owned(), v);
                self.target.insert(id.to_owned(), t);
            }
            None => {
                self.persisted.targets.remove(id);
                self.target.remove(id);
            }
        }
    }

    /// Key 8: the member's epochs, state and partitions. A tombstone leaves a member that holds
    /// nothing (its key 5 tombstone removes it).
    fn replay_assignment(
        &mut self,
        id: &str,
        v: Option<records::CurrentAssignmentValue>,
        now_ms: i64,
        session_deadline_ms: i64,
    ) {
        let v = match v {
            Some(v) => {
                let bytes = records::encode_current_assignment(&v);
                self.persisted.assignments.insert(id.to_owned(), bytes);
                v
            }
            None => {
                self.persisted.assignments.remove(id);
                if !self.members.contains_key(id) {
                    return;
                }
                ConsumerMember::new(id, None, 0).assignment_value()
            }
        };
        let m = self.replayed_member(id, session_deadline_ms);
        let old = m.owned();
        m.epoch = v.member_epoch;
        m.previous_epoch = v.previous_member_epoch;
        // The decoder admits only known states; partitions pending revocation imply the state.
        m.state = MemberState::from_code(v.state).unwrap_or(MemberState::Stable);
        if !v.pending_revocation.is_empty() {
            m.state = MemberState::UnrevokedPartitions;
        }
        m.assigned = v.assigned;
        m.revoking = v.pending_revocation;
        m.revocation_deadline_ms = revocation_deadline(m, now_ms);
        let new = m.owned();
        self.release(id, &old);
        for tp in new {
            self.owners.insert(tp, id.to_owned());
        }
    }

    /// Replay is over: drops members whose metadata (key 5) never came, fences members whose
    /// records contradict another's (a partition or instance id held twice, which only a log
    /// that lost records can say) and drops targets of members that are gone. Any of these
    /// bumps the group epoch, so the next heartbeat computes a fresh target. A group whose
    /// metadata (key 3) never came and that has no members is cleared, to be forgotten.
    fn finish_replay(&mut self) {
        let mut dropped: BTreeSet<String> = self
            .members
            .keys()
            .filter(|id| !self.persisted.members.contains_key(*id))
            .cloned()
            .collect();
        let mut owners = BTreeMap::new();
        let mut statics = BTreeMap::new();
        for (id, m) in &self.members {
            if dropped.contains(id) {
                continue;
            }
            let owned = m.owned();
            let clash = owned.iter().any(|tp| owners.contains_key(tp))
                || m.instance_id
                    .as_ref()
                    .is_some_and(|i| statics.contains_key(i));
            if clash {
                dropped.insert(id.clone());
                continue;
            }
            owners.extend(owned.into_iter().map(|tp| (tp, id.clone())));
            if let Some(iid) = &m.instance_id {
                statics.insert(iid.clone(), id.clone());
            }
        }
        self.owners = owners;
        self.static_members = statics;
        self.members.retain(|id, _| !dropped.contains(id));
        let targets = self.target.len();
        self.target.retain(|id, _| self.members.contains_key(id));
        // A lost key 3 must not leave the epoch behind what members and target have seen.
        let newest = self.members.values().map(|m| m.epoch).max().unwrap_or(0);
        self.epoch = self.epoch.max(newest).max(self.target_epoch);
        if !dropped.is_empty() || self.target.len() != targets {
            self.bump();
        }
        if self.epoch == 0 && self.members.is_empty() {
            let persisted = std::mem::take(&mut self.persisted);
            *self = ConsumerGroup::new(0);
            self.persisted = persisted;
        }
        self.unflushed_all = true;
    }
}

/// When a replayed member in UnrevokedPartitions is fenced: a full rebalance timeout from now.
fn revocation_deadline(m: &ConsumerMember, now_ms: i64) -> Option<i64> {
    (m.state == MemberState::UnrevokedPartitions)
        .then(|| now_ms + i64::from(m.rebalance_timeout_ms.max(0)))
}

/// Replays one record of keys 3–8 into group `g`, before the coordinator serves. Each key is
/// last-write-wins on its own, so records may come in any order (compaction moves them): a
/// member's first record creates it, and [`finish_replay`] drops one whose metadata (key 5)
/// never came. A tombstone never creates anything; the key 3 tombstone (the group is deleted)
/// is the coordinator's. Members get a fresh session from `now_ms`.
pub(crate) fn replay(g: &mut Group, rec: Decoded, session_ms: i64, now_ms: i64) {
    if matches!(
        rec,
        Decoded::Offset { .. } | Decoded::Group { .. } | Decoded::Other { .. }
    ) {
        return;
    }
    if g.consumer.is_none() {
        if rec.is_tombstone() {
            return;
        }
        g.consumer = Some(Box::new(ConsumerGroup::new(0)));
    }
    let c = g.consumer.as_deref_mut().expect("created above");
    let session_deadline_ms = now_ms + session_ms;
    match rec {
        Decoded::ConsumerGroup { epoch, .. } => {
            // (A tombstone is the coordinator's: it drops the whole group.)
            if let Some(epoch) = epoch {
                c.epoch = epoch;
                c.persisted.epoch = epoch;
            }
        }
        Decoded::ConsumerPartitionMetadata { topics, .. } => {
            c.persisted.topics = topics.as_ref().map(records::encode_topic_metadata);
            c.subscription_meta = topics.unwrap_or_default();
        }
        Decoded::ConsumerTargetAssignment { value, .. } => {
            c.persisted.target = value.as_ref().map(records::encode_target_assignment);
            let (epoch, assignor) = value.map_or((0, ASSIGNORS[0].to_owned()), |v| {
                (v.assignment_epoch, v.assignor)
            });
            c.target_epoch = epoch;
            c.assignor = assignor;
        }
        Decoded::ConsumerMember {
            member_id, value, ..
        } => c.replay_member(&member_id, value, now_ms, session_deadline_ms),
        Decoded::ConsumerTargetMember {
            member_id,
            partitions,
            ..
        } => c.replay_target_member(&member_id, partitions),
        Decoded::ConsumerCurrentAssignment {
            member_id, value, ..
        } => c.replay_assignment(&member_id, value, now_ms, session_deadline_ms),
        Decoded::Offset { .. } | Decoded::Group { .. } | Decoded::Other { .. } => {}
    }
    sync_consumer_state(g, now_ms);
}

/// The coordinator starts serving: see [`ConsumerGroup::finish_replay`]. Queues the records
/// that changed (tombstones for dropped members and stray records).
pub(crate) fn finish_replay(g: &mut Group, out: &mut Vec<LogRecord>, now_ms: i64) {
    let Some(c) = g.consumer.as_deref_mut() else {
        return;
    };
    c.finish_replay();
    sync_consumer_state(g, now_ms);
    flush(g, out);
}

/// DescribeGroups of a consumer group, in the classic shape: members carry their subscription
/// and assignment in the classic consumer protocol encoding, so classic admin tools can read it.
pub(crate) fn describe_classic(g: &Group, c: &ConsumerGroup, version: i16) -> DescribedGroup {
    let mut d = DescribedGroup::default();
    d.group_id = GroupId(StrBytes::from_string(g.group_id.clone()));
    d.group_state = StrBytes::from_static_str(c.state_name());
    d.protocol_type = StrBytes::from_static_str("consumer");
    d.protocol_data = StrBytes::from_string(c.assignor.clone());
    let names = c.topic_names();
    d.members = c
        .members
        .values()
        .map(|m| {
            let mut dm = DescribedGroupMember::default();
            dm.member_id = StrBytes::from_string(m.member_id.clone());
            if version >= 4 {
                dm.group_instance_id = m.instance_id.clone().map(StrBytes::from_string);
            }
            dm.client_id = StrBytes::from_string(m.client_id.clone());
            dm.client_host = StrBytes::from_string(m.client_host.clone());
            let mut topics: BTreeSet<String> = m.subscribed_names.iter().cloned().collect();
            if let Some(re) = m
                .subscribed_regex
                .as_deref()
                .and_then(|r| compile_regex(r).ok())
            {
                topics.extend(
                    c.subscription_meta
                        .keys()
                        .filter(|t| re.is_match(t))
                        .cloned(),
                );
            }
            let mut sub = ConsumerProtocolSubscription::default();
            sub.topics = topics.into_iter().map(StrBytes::from_string).collect();
            sub.user_data = None;
            dm.member_metadata = encode_versioned(&sub, 0);
            let mut asg = ConsumerProtocolAssignment::default();
            asg.assigned_partitions = m
                .assigned
                .iter()
                .filter_map(|(t, ps)| {
                    let mut tp = CpaTopicPartition::default();
                    tp.topic = TopicName(StrBytes::from_string((*names.get(t)?).to_owned()));
                    tp.partitions = ps.iter().copied().collect();
                    Some(tp)
                })
                .collect();
            asg.user_data = None;
            dm.member_assignment = encode_versioned(&asg, 0);
            dm
        })
        .collect();
    d
}

fn encode_versioned<T: Encodable>(msg: &T, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    bytes::BufMut::put_i16(&mut buf, version);
    if msg.encode(&mut buf, version).is_err() {
        return Bytes::new();
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(topics: &[(&str, u128, i32)]) -> BTreeMap<String, (Uuid, i32)> {
        topics
            .iter()
            .map(|(n, id, p)| (n.to_string(), (Uuid::from_u128(*id), *p)))
            .collect()
    }

    fn subs(members: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        members
            .iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn loads(a: &BTreeMap<String, Assignment>) -> Vec<usize> {
        a.values().map(count).collect()
    }

    /// Every partition of a subscribed topic goes to exactly one subscriber of it.
    fn check_complete(
        a: &BTreeMap<String, Assignment>,
        s: &BTreeMap<String, BTreeSet<String>>,
        m: &BTreeMap<String, (Uuid, i32)>,
    ) {
        let mut seen = BTreeSet::new();
        for (member, asg) in a {
            for tp in pairs(asg) {
                assert!(seen.insert(tp), "{tp:?} assigned twice");
                let name = m.iter().find(|(_, (id, _))| *id == tp.0).unwrap().0;
                assert!(
                    s[member].contains(name),
                    "{member} not subscribed to {name}"
                );
            }
        }
        for (name, (id, n)) in m {
            if s.values().any(|x| x.contains(name)) {
                for p in 0..*n {
                    assert!(seen.contains(&(*id, p)), "{name}-{p} unassigned");
                }
            }
        }
    }

    #[test]
    fn uniform_is_balanced_and_sticky() {
        let m = meta(&[("a", 1, 7), ("b", 2, 5)]);
        let s2 = subs(&[("m1", &["a", "b"]), ("m2", &["a", "b"])]);
        let a2 = assign_uniform(&s2, &m, &BTreeMap::new());
        check_complete(&a2, &s2, &m);
        assert_eq!(loads(&a2), vec![6, 6]);
        // A third member joins: it takes four partitions; the others keep what they can.
        let s3 = subs(&[
            ("m1", &["a", "b"]),
            ("m2", &["a", "b"]),
            ("m3", &["a", "b"]),
        ]);
        let a3 = assign_uniform(&s3, &m, &a2);
        check_complete(&a3, &s3, &m);
        assert_eq!(loads(&a3), vec![4, 4, 4]);
        for old in ["m1", "m2"] {
            let kept = pairs(&a3[old]).filter(|tp| contains(&a2[old], tp)).count();
            assert_eq!(kept, 4, "{old} moved more than it had to");
        }
        // Recomputing with nothing changed moves nothing.
        assert_eq!(assign_uniform(&s3, &m, &a3), a3);
    }

    /// 10,000 partitions over 500 members (the size the index-based assignor was written for):
    /// balanced, and a member joining moves only what it takes.
    #[test]
    fn uniform_large_group_is_balanced_and_sticky() {
        let m: BTreeMap<String, (Uuid, i32)> = (0..100)
            .map(|i| (format!("t{i}"), (Uuid::from_u128(i as u128 + 1), 100)))
            .collect();
        let all: BTreeSet<String> = m.keys().cloned().collect();
        let s: BTreeMap<String, BTreeSet<String>> = (0..500)
            .map(|i| (format!("m{i:04}"), all.clone()))
            .collect();
        let a = assign_uniform(&s, &m, &BTreeMap::new());
        check_complete(&a, &s, &m);
        assert!(loads(&a).iter().all(|l| *l == 20));
        let mut s2 = s.clone();
        s2.insert("zz-new".into(), all.clone());
        let b = assign_uniform(&s2, &m, &a);
        check_complete(&b, &s2, &m);
        let l = loads(&b);
        assert!(
            l.iter().max().unwrap() - l.iter().min().unwrap() <= 1,
            "{l:?}"
        );
        let moved: usize = a
            .iter()
            .map(|(k, v)| pairs(v).filter(|tp| !contains(&b[k], tp)).count())
            .sum();
        assert_eq!(moved, count(&b["zz-new"]));
        let half: BTreeSet<String> = m.keys().take(50).cloned().collect();
        let s3: BTreeMap<String, BTreeSet<String>> = (0..500)
            .map(|i| {
                let topics = if i % 2 == 0 {
                    all.clone()
                } else {
                    half.clone()
                };
                (format!("m{i:04}"), topics)
            })
            .collect();
        check_complete(&assign_uniform(&s3, &m, &a), &s3, &m);
    }

    #[test]
    fn uniform_balances_heterogeneous_subscriptions() {
        let m = meta(&[("a", 1, 6), ("b", 2, 2)]);
        let s = subs(&[("m1", &["a"]), ("m2", &["a", "b"]), ("m3", &["b"])]);
        let a = assign_uniform(&s, &m, &BTreeMap::new());
        check_complete(&a, &s, &m);
        let l = loads(&a);
        assert!(
            l.iter().max().unwrap() - l.iter().min().unwrap() <= 3,
            "{l:?}"
        );
        // m1 can only take `a`; it must not sit idle while m2 hoards `a`.
        assert!(count(&a["m1"]) >= 3, "{a:?}");
    }

    #[test]
    fn range_gives_contiguous_ranges() {
        let m = meta(&[("a", 1, 5)]);
        let s = subs(&[("m1", &["a"]), ("m2", &["a"])]);
        let a = assign_range(&s, &m);
        check_complete(&a, &s, &m);
        let id = Uuid::from_u128(1);
        assert_eq!(a["m1"][&id], BTreeSet::from([0, 1, 2]));
        assert_eq!(a["m2"][&id], BTreeSet::from([3, 4]));
    }

    #[test]
    fn regex_matches_whole_names() {
        let r = compile_regex("orders.*").unwrap();
        assert!(r.is_match("orders-eu"));
        assert!(!r.is_match("old-orders"));
        assert!(compile_regex("(").is_err());
    }

    #[test]
    fn seeded_random_assignments_stay_complete() {
        let mut seed: u64 = 0x5eed;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let topics = ["t0", "t1", "t2", "t3"];
        let m = meta(&[("t0", 1, 3), ("t1", 2, 8), ("t2", 3, 1), ("t3", 4, 12)]);
        let mut prev = BTreeMap::new();
        for round in 0..200 {
            let members = 1 + next(6) as usize;
            let mut s = BTreeMap::new();
            for i in 0..members {
                let mut set = BTreeSet::new();
                for t in topics {
                    if next(3) > 0 {
                        set.insert(t.to_string());
                    }
                }
                s.insert(format!("m{i}"), set);
            }
            let a = assign_uniform(&s, &m, &prev);
            check_complete(&a, &s, &m);
            let r = assign_range(&s, &m);
            check_complete(&r, &s, &m);
            if round % 2 == 0 {
                prev = a;
            }
        }
    }

    // ------------------------------------------------------------ coordinator scenarios

    use crate::group::{GroupConfig, LogRecord};
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as ReqTp;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{JoinGroupRequest, ListGroupsRequest, OffsetCommitRequest};

    /// Topics, and the (principal, topic) pairs an authorizer refuses DESCRIBE for.
    #[derive(Default, Clone)]
    struct Topics(BTreeMap<String, (Uuid, i32)>, BTreeSet<(String, String)>);

    impl TopicLookup for Topics {
        fn topic(&self, name: &str) -> Option<(Uuid, i32)> {
            self.0.get(name).copied()
        }
        fn for_each_topic(&self, f: &mut dyn FnMut(&str)) {
            for n in self.0.keys() {
                f(n);
            }
        }
        fn may_describe(&self, principal: &str, _host: &str, topic: &str) -> bool {
            !self.1.contains(&(principal.to_owned(), topic.to_owned()))
        }
    }

    const G: &str = "cg";
    const T: Uuid = Uuid::from_u128(7);

    struct Sim {
        c: GroupCoordinator,
        topics: Topics,
        now: i64,
        records: Vec<LogRecord>,
        /// The authorized caller of the next heartbeats (None: authorization off).
        owner: Option<(&'static str, &'static str)>,
    }

    /// One client's view: member id, epoch, what it owns.
    #[derive(Clone, Debug)]
    struct Client {
        id: String,
        epoch: i32,
        owned: Assignment,
    }

    fn sb(s: &str) -> StrBytes {
        StrBytes::from_string(s.to_owned())
    }

    impl Sim {
        fn new(partitions: i32) -> Sim {
            let cfg = GroupConfig {
                consumer_session_timeout_ms: 10_000,
                consumer_heartbeat_interval_ms: 1_000,
                ..GroupConfig::default()
            };
            let mut topics = Topics::default();
            topics.0.insert("t".into(), (T, partitions));
            Sim {
                c: GroupCoordinator::new(0, cfg),
                topics,
                now: 1_000,
                records: Vec::new(),
                owner: None,
            }
        }

        fn raw(&mut self, req: &ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
            let caller = Caller {
                client_id: "client",
                client_host: "/127.0.0.1",
                owner: self.owner,
            };
            let r = self
                .c
                .consumer_group_heartbeat(req, 1, &self.topics, caller, self.now);
            self.c.check_invariants();
            self.records.extend(self.c.take_output().records);
            r
        }

        fn join(&mut self, id: &str, topics: &[&str], instance: Option<&str>) -> Client {
            let mut req = ConsumerGroupHeartbeatRequest::default();
            req.group_id = GroupId(sb(G));
            req.member_id = sb(id);
            req.member_epoch = 0;
            req.instance_id = instance.map(sb);
            req.rack_id = None;
            req.rebalance_timeout_ms = 5_000;
            req.subscribed_topic_names = Some(topics.iter().map(|t| TopicName(sb(t))).collect());
            req.subscribed_topic_regex = None;
            req.server_assignor = None;
            req.topic_partitions = Some(Vec::new());
            let r = self.raw(&req);
            assert_eq!(r.error_code, 0, "{:?}", r.error_message);
            let mut cl = Client {
                id: id.into(),
                epoch: 0,
                owned: Assignment::new(),
            };
            absorb(&mut cl, &r);
            cl
        }

        /// A heartbeat as a client sends it: its epoch and (always) what it owns.
        fn beat(&mut self, cl: &mut Client) -> i16 {
            let mut req = ConsumerGroupHeartbeatRequest::default();
            req.group_id = GroupId(sb(G));
            req.member_id = sb(&cl.id);
            req.member_epoch = cl.epoch;
            req.instance_id = None;
            req.rack_id = None;
            req.rebalance_timeout_ms = -1;
            req.subscribed_topic_names = None;
            req.subscribed_topic_regex = None;
            req.server_assignor = None;
            req.topic_partitions = Some(
                cl.owned
                    .iter()
                    .map(|(t, ps)| {
                        let mut tp = ReqTp::default();
                        tp.topic_id = *t;
                        tp.partitions = ps.iter().copied().collect();
                        tp
                    })
                    .collect(),
            );
            let r = self.raw(&req);
            if r.error_code == 0 {
                absorb(cl, &r);
            }
            r.error_code
        }

        /// Members "a" and "b" on topic "t", heartbeating until they converge.
        fn two_stable_members(&mut self) -> (Client, Client) {
            let mut a = self.join("a", &["t"], None);
            let mut b = self.join("b", &["t"], None);
            for _ in 0..3 {
                self.beat(&mut a);
                self.beat(&mut b);
            }
            (a, b)
        }

        fn commit(&mut self, member: &str, epoch: i32, version: i16) -> i16 {
            let mut req = OffsetCommitRequest::default();
            req.group_id = GroupId(sb(G));
            req.member_id = sb(member);
            req.generation_id_or_member_epoch = epoch;
            req.group_instance_id = None;
            let mut t = OffsetCommitRequestTopic::default();
            t.name = TopicName(sb("t"));
            t.partitions = vec![OffsetCommitRequestPartition::default()];
            req.topics = vec![t];
            let r = self.c.offset_commit(&req, version, self.now).1;
            self.c.check_invariants();
            r.topics[0].partitions[0].error_code
        }

        /// A leave heartbeat: epoch -1 (leave) or -2 (static member leaving for a while).
        fn leave(&mut self, id: &str, epoch: i32, instance: Option<&str>) -> i16 {
            let mut req = ConsumerGroupHeartbeatRequest::default();
            req.group_id = GroupId(sb(G));
            req.member_id = sb(id);
            req.member_epoch = epoch;
            req.instance_id = instance.map(sb);
            req.rack_id = None;
            req.subscribed_topic_names = None;
            req.subscribed_topic_regex = None;
            req.server_assignor = None;
            req.topic_partitions = None;
            self.raw(&req).error_code
        }

        /// A coordinator restarted from `log`: replayed (invariants must hold), then serving
        /// after one tick. Returns it with the records that first tick wrote.
        fn restart(&self, log: &[LogRecord]) -> (GroupCoordinator, Vec<LogRecord>) {
            let mut c = GroupCoordinator::new(0, self.c.config().clone());
            for r in log {
                c.apply(r, self.now).unwrap();
            }
            c.check_invariants();
            c.tick(self.now);
            c.check_invariants();
            let written = c.take_output().records;
            (c, written)
        }

        /// This simulation with another coordinator (the same topics and clock, no records).
        fn with(&self, c: GroupCoordinator) -> Sim {
            Sim {
                c,
                topics: self.topics.clone(),
                now: self.now,
                records: Vec::new(),
                owner: self.owner,
            }
        }
    }

    /// Log compaction: the last record of every key, in log order; a key whose last record is a
    /// tombstone goes entirely.
    fn compact(log: &[LogRecord]) -> Vec<LogRecord> {
        let last: HashMap<&Bytes, usize> =
            log.iter().enumerate().map(|(i, r)| (&r.key, i)).collect();
        log.iter()
            .enumerate()
            .filter(|(i, r)| last[&r.key] == *i && r.value.is_some())
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Every consumer group as replay must restore it: all but the deadlines (a replay starts
    /// them afresh from its clock), the regex cache and the regex owners (in memory only).
    fn restorable(c: &GroupCoordinator) -> BTreeMap<String, String> {
        c.groups
            .iter()
            .filter_map(|(id, g)| {
                let mut c = g.consumer.as_deref()?.clone();
                c.regexes.clear();
                for m in c.members.values_mut() {
                    m.regex_owner = None;
                    m.session_deadline_ms = 0;
                    m.revocation_deadline_ms = m.revocation_deadline_ms.map(|_| 0);
                }
                Some((id.clone(), format!("{c:?}")))
            })
            .collect()
    }

    /// Seeded Fisher-Yates shuffle (xorshift).
    fn shuffle<T>(v: &mut [T], mut seed: u64) {
        seed |= 1;
        for i in (1..v.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            v.swap(i, (seed % (i as u64 + 1)) as usize);
        }
    }

    /// A classic consumer's JoinGroup for group `G`.
    fn classic_join() -> JoinGroupRequest {
        let mut j = JoinGroupRequest::default();
        j.group_id = GroupId(sb(G));
        j.session_timeout_ms = 10_000;
        j.rebalance_timeout_ms = 10_000;
        j.protocol_type = sb("consumer");
        j.group_instance_id = None;
        let mut p =
            kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol::default();
        p.name = sb("range");
        j.protocols.push(p);
        j
    }

    fn absorb(cl: &mut Client, r: &ConsumerGroupHeartbeatResponse) {
        cl.epoch = r.member_epoch;
        if let Some(a) = &r.assignment {
            cl.owned = a
                .topic_partitions
                .iter()
                .map(|t| (t.topic_id, t.partitions.iter().copied().collect()))
                .collect();
        }
    }

    fn n(cl: &Client) -> usize {
        count(&cl.owned)
    }

    #[test]
    fn two_members_converge_without_double_ownership() {
        let mut s = Sim::new(6);
        let mut a = s.join("a", &["t"], None);
        assert_eq!(n(&a), 6);
        let mut b = s.join("b", &["t"], None);
        // b's half is still a's: b waits at the new epoch.
        assert_eq!(n(&b), 0);
        assert!(b.epoch > a.epoch);
        assert_eq!(
            s.c.list_groups(&ListGroupsRequest::default(), 5)[0]
                .group_state
                .as_str(),
            "Reconciling"
        );
        // a is told to keep only its half (same epoch: revocation first).
        let before = a.epoch;
        assert_eq!(s.beat(&mut a), 0);
        assert_eq!((n(&a), a.epoch), (3, before));
        // a reports the revocation done: it moves to the new epoch.
        assert_eq!(s.beat(&mut a), 0);
        assert_eq!(a.epoch, b.epoch);
        assert_eq!(s.beat(&mut b), 0);
        assert_eq!(n(&b), 3);
        assert!(pairs(&a.owned).all(|tp| !contains(&b.owned, &tp)));
        assert_eq!(
            s.c.list_groups(&ListGroupsRequest::default(), 5)[0]
                .group_state
                .as_str(),
            "Stable"
        );
        let d = s.c.consumer_group_describe(G);
        assert_eq!((d.error_code, d.members.len()), (0, 2));
        assert_eq!(
            d.members[0].assignment.topic_partitions[0]
                .topic_name
                .0
                .as_str(),
            "t"
        );
        // b leaves: a gets everything back at a higher epoch.
        let mut leave = ConsumerGroupHeartbeatRequest::default();
        leave.group_id = GroupId(sb(G));
        leave.member_id = sb("b");
        leave.member_epoch = -1;
        leave.instance_id = None;
        leave.rack_id = None;
        leave.subscribed_topic_names = None;
        leave.subscribed_topic_regex = None;
        leave.server_assignor = None;
        leave.topic_partitions = None;
        assert_eq!(s.raw(&leave).member_epoch, -1);
        assert_eq!(s.beat(&mut a), 0);
        assert_eq!(n(&a), 6);
        // The epoch went to the log.
        assert!(s
            .records
            .iter()
            .any(|r| r.key == records::consumer_group_key(G)));
    }

    #[test]
    fn fencing_and_lost_responses() {
        let mut s = Sim::new(4);
        let mut a = s.join("a", &["t"], None);
        let mut wrong = a.clone();
        wrong.epoch += 5;
        assert_eq!(s.beat(&mut wrong), ResponseError::FencedMemberEpoch.code());
        let mut ghost = a.clone();
        ghost.id = "nobody".into();
        assert_eq!(s.beat(&mut ghost), ResponseError::UnknownMemberId.code());
        // b joins; a revokes and moves up an epoch, but loses that response: its next heartbeat
        // at the previous epoch, owning a subset of its assignment, is still accepted.
        let _b = s.join("b", &["t"], None);
        assert_eq!(s.beat(&mut a), 0);
        let stale = a.clone();
        assert_eq!(s.beat(&mut a), 0);
        assert!(a.epoch > stale.epoch);
        let mut replay = stale.clone();
        assert_eq!(s.beat(&mut replay), 0);
        assert_eq!(replay.epoch, a.epoch);
        // Two epochs behind: fenced; rejoining with epoch 0 works.
        let mut old = a.clone();
        old.epoch = 1; // neither the current nor the previous epoch
        old.owned = Assignment::new();
        assert_eq!(s.beat(&mut old), ResponseError::FencedMemberEpoch.code());
        let a2 = s.join("a", &["t"], None);
        assert!(a2.epoch > 0);
    }

    #[test]
    fn sessions_and_revocations_expire() {
        let mut s = Sim::new(4);
        let mut a = s.join("a", &["t"], None);
        let mut b = s.join("b", &["t"], None);
        // a is asked to revoke but never reports back: fenced after the rebalance timeout, and
        // b gets everything.
        assert_eq!(s.beat(&mut a), 0);
        s.now += 5_001;
        assert_eq!(s.beat(&mut b), 0);
        s.c.tick(s.now);
        s.c.check_invariants();
        assert_eq!(s.beat(&mut a), ResponseError::UnknownMemberId.code());
        assert_eq!(s.beat(&mut b), 0);
        assert_eq!(n(&b), 4);
        // b goes silent: its session ends and the group is empty.
        s.now += 10_001;
        s.c.tick(s.now);
        s.c.check_invariants();
        assert_eq!(s.c.group_state(G), Some(GroupState::Empty));
        assert_eq!(
            s.c.list_groups(&ListGroupsRequest::default(), 5)[0]
                .group_type
                .as_str(),
            "consumer"
        );
    }

    #[test]
    fn static_member_rejoins_with_its_assignment() {
        let mut s = Sim::new(4);
        let mut a = s.join("a", &["t"], Some("i-a"));
        let mut b = s.join("b", &["t"], None);
        for _ in 0..3 {
            s.beat(&mut a);
            s.beat(&mut b);
        }
        assert_eq!((n(&a), n(&b)), (2, 2));
        let epoch = s.c.groups[G].consumer.as_ref().unwrap().epoch;
        let mut leave = ConsumerGroupHeartbeatRequest::default();
        leave.group_id = GroupId(sb(G));
        leave.member_id = sb("a");
        leave.member_epoch = -2;
        leave.instance_id = Some(sb("i-a"));
        leave.rack_id = None;
        leave.subscribed_topic_names = None;
        leave.subscribed_topic_regex = None;
        leave.server_assignor = None;
        leave.topic_partitions = None;
        assert_eq!(s.raw(&leave).member_epoch, -2);
        // Another process with the same instance id is refused while a is still active...
        // (a has left, so it is not) — a new incarnation takes a's place and partitions.
        let a2 = s.join("a2", &["t"], Some("i-a"));
        assert_eq!(n(&a2), 2);
        assert_eq!(s.c.groups[G].consumer.as_ref().unwrap().epoch, epoch);
        // A third process with the same instance id while a2 is active: refused.
        let mut req = ConsumerGroupHeartbeatRequest::default();
        req.group_id = GroupId(sb(G));
        req.member_id = sb("a3");
        req.instance_id = Some(sb("i-a"));
        req.rack_id = None;
        req.rebalance_timeout_ms = 5_000;
        req.subscribed_topic_names = Some(vec![TopicName(sb("t"))]);
        req.subscribed_topic_regex = None;
        req.server_assignor = None;
        req.topic_partitions = Some(Vec::new());
        assert_eq!(
            s.raw(&req).error_code,
            ResponseError::UnreleasedInstanceId.code()
        );
    }

    #[test]
    fn commits_need_the_current_member_epoch() {
        let mut s = Sim::new(2);
        // Empty group: simple commits are fine.
        assert_eq!(s.commit("", -1, 9), 0);
        let a = s.join("a", &["t"], None);
        assert_eq!(s.commit("", -1, 9), ResponseError::UnknownMemberId.code());
        assert_eq!(
            s.commit("a", a.epoch, 8),
            ResponseError::UnsupportedVersion.code()
        );
        assert_eq!(
            s.commit("a", a.epoch - 1, 9),
            ResponseError::StaleMemberEpoch.code()
        );
        assert_eq!(s.commit("a", a.epoch, 9), 0);
        assert_eq!(
            s.c.validate_offset_fetch(G, Some("a"), a.epoch - 1),
            Some(ResponseError::StaleMemberEpoch)
        );
        assert_eq!(s.c.validate_offset_fetch(G, Some("a"), a.epoch), None);
        assert_eq!(s.c.validate_offset_fetch(G, None, -1), None);
    }

    #[test]
    fn classic_and_consumer_groups_exclude_each_other() {
        let mut s = Sim::new(2);
        let _a = s.join("a", &["t"], None);
        let j = classic_join();
        match s.c.join_group(1, &j, 9, "c", "/h", s.now) {
            crate::group::Reply::Now(r) => {
                assert_eq!(
                    r.error_code,
                    ResponseError::InconsistentGroupProtocol.code()
                )
            }
            other => panic!("{other:?}"),
        }
        // Describing the consumer group the classic way shows its members.
        let d = s.c.describe_group(G, 5);
        assert_eq!((d.protocol_type.as_str(), d.members.len()), ("consumer", 1));
        assert!(!d.members[0].member_assignment.is_empty());
    }

    /// Two members converge, the coordinator restarts from its log (whole, or compacted): the
    /// group, its members, their epochs and assignments and the target come back, and the
    /// members go on heartbeating at their old epochs: no fencing, no rebalance, no record.
    #[test]
    fn replay_resumes_members_without_a_rebalance() {
        let mut s = Sim::new(6);
        let mut a = s.join("a", &["t"], None);
        let mut b = s.join("b", &["t"], Some("i-b"));
        for _ in 0..3 {
            s.beat(&mut a);
            s.beat(&mut b);
        }
        assert_eq!((n(&a), n(&b)), (3, 3));
        let epoch = s.c.groups[G].consumer.as_ref().unwrap().epoch;
        let before = restorable(&s.c);
        for log in [s.records.clone(), compact(&s.records)] {
            let (c2, written) = s.restart(&log);
            assert!(written.is_empty(), "{written:?}");
            assert_eq!(restorable(&c2), before);
            let l = c2.list_groups(&ListGroupsRequest::default(), 5);
            assert_eq!(
                (l[0].group_type.as_str(), l[0].group_state.as_str()),
                ("consumer", "Stable")
            );
            let mut s2 = s.with(c2);
            for cl in [&a, &b] {
                let mut again = cl.clone();
                assert_eq!(s2.beat(&mut again), 0, "{cl:?}");
                assert_eq!((again.epoch, &again.owned), (cl.epoch, &cl.owned));
            }
            assert!(s2.records.is_empty(), "{:?}", s2.records);
            assert_eq!(s2.c.groups[G].consumer.as_ref().unwrap().epoch, epoch);
            // Commits at the member epoch still work.
            assert_eq!(s2.commit("a", a.epoch, 9), 0);
        }
    }

    /// A restart in the middle of a rebalance: a member told to revoke resumes revoking, and
    /// the group converges from there.
    #[test]
    fn replay_mid_rebalance_resumes_reconciliation() {
        let mut s = Sim::new(4);
        let mut a = s.join("a", &["t"], None);
        let mut b = s.join("b", &["t"], None);
        assert_eq!(s.beat(&mut a), 0); // a: revoke two, same epoch
        assert_eq!(n(&a), 2);
        let c = s.c.groups[G].consumer.as_ref().unwrap();
        assert_eq!(c.members["a"].state, MemberState::UnrevokedPartitions);
        assert_eq!(c.members["b"].state, MemberState::UnreleasedPartitions);
        let (c2, written) = s.restart(&compact(&s.records));
        assert!(written.is_empty());
        assert_eq!(restorable(&c2), restorable(&s.c));
        let mut s2 = s.with(c2);
        assert_eq!(s2.beat(&mut a), 0);
        assert_eq!(a.epoch, b.epoch);
        assert_eq!(s2.beat(&mut b), 0);
        assert_eq!((n(&a), n(&b)), (2, 2));
        assert!(pairs(&a.owned).all(|tp| !contains(&b.owned, &tp)));
        // The revocation deadline restarted too: a member that never reports its revocation
        // is still fenced after its rebalance timeout.
        let mut s3 = s.with(s.restart(&compact(&s.records)).0);
        s3.now += 5_001;
        s3.c.tick(s3.now);
        s3.c.check_invariants();
        assert!(!s3.c.groups[G]
            .consumer
            .as_ref()
            .unwrap()
            .members
            .contains_key("a"));
    }

    /// Records of different keys may come in any order: every permutation of the compacted
    /// log replays to the same group.
    #[test]
    fn replay_in_any_order() {
        let mut s = Sim::new(5);
        let mut a = s.join("a", &["t"], Some("i-a"));
        let mut b = s.join("b", &["t"], None);
        let _c = s.join("c", &["t"], None);
        s.beat(&mut a);
        s.beat(&mut b);
        let want = restorable(&s.c);
        let log = compact(&s.records);
        let mut reversed = log.clone();
        reversed.reverse();
        let (c2, written) = s.restart(&reversed);
        assert!(written.is_empty());
        assert_eq!(restorable(&c2), want);
        for seed in 0..20 {
            let mut shuffled = log.clone();
            shuffle(&mut shuffled, seed);
            let (c2, written) = s.restart(&shuffled);
            assert!(written.is_empty(), "seed {seed}");
            assert_eq!(restorable(&c2), want, "seed {seed}");
        }
    }

    /// A member whose metadata (key 5) is missing from the log is dropped when the coordinator
    /// starts serving: its partitions are free, its other records are deleted and the group
    /// epoch moves on so the others rebalance.
    #[test]
    fn replay_drops_a_member_without_metadata() {
        let mut s = Sim::new(4);
        let (mut a, mut b) = s.two_stable_members();
        let epoch = s.c.groups[G].consumer.as_ref().unwrap().epoch;
        let b_meta =
            records::consumer_member_part_key(records::CONSUMER_MEMBER_KEY_VERSION, G, "b");
        let log: Vec<LogRecord> = compact(&s.records)
            .into_iter()
            .filter(|r| r.key != b_meta)
            .collect();
        let (c2, written) = s.restart(&log);
        let c = c2.groups[G].consumer.as_ref().unwrap();
        assert!(!c.members.contains_key("b"));
        assert_eq!(c.owners.values().filter(|o| *o == "b").count(), 0);
        assert!(c.epoch > epoch);
        // b's target and assignment are deleted; the new epoch is written.
        for key in [
            records::CONSUMER_TARGET_MEMBER_KEY_VERSION,
            records::CONSUMER_ASSIGNMENT_KEY_VERSION,
        ] {
            let k = records::consumer_member_part_key(key, G, "b");
            assert!(written.iter().any(|r| r.key == k && r.value.is_none()));
        }
        assert!(written
            .iter()
            .any(|r| r.key == records::consumer_group_key(G)));
        let mut s2 = s.with(c2);
        assert_eq!(s2.beat(&mut b), ResponseError::UnknownMemberId.code());
        for _ in 0..3 {
            assert_eq!(s2.beat(&mut a), 0);
        }
        assert_eq!(n(&a), 4);
    }

    /// A log that lost records may contradict itself: here b's assignment says it holds a's
    /// partitions too. Serving starts with consistent ownership: one of them is fenced (it
    /// rejoins), the epoch moves on, and the group converges again.
    #[test]
    fn replay_repairs_contradicting_records() {
        let mut s = Sim::new(4);
        let (mut a, mut b) = s.two_stable_members();
        let epoch = s.c.groups[G].consumer.as_ref().unwrap().epoch;
        let key =
            |m| records::consumer_member_part_key(records::CONSUMER_ASSIGNMENT_KEY_VERSION, G, m);
        let mut log = compact(&s.records);
        let a_value = log
            .iter()
            .find(|r| r.key == key("a"))
            .unwrap()
            .value
            .clone();
        log.push(LogRecord {
            key: key("b"),
            value: a_value,
        });
        // (Invariants cannot hold before the repair: no check until serving.)
        let mut c2 = GroupCoordinator::new(0, s.c.config().clone());
        for r in &log {
            c2.apply(r, s.now).unwrap();
        }
        c2.tick(s.now);
        c2.check_invariants();
        let written = c2.take_output().records;
        let g = c2.groups[G].consumer.as_ref().unwrap();
        assert_eq!(g.members.len(), 1, "{:?}", g.members.keys());
        assert!(g.epoch > epoch);
        assert!(!written.is_empty());
        let mut s2 = s.with(c2);
        for cl in [&mut a, &mut b] {
            if s2.beat(cl) != 0 {
                *cl = s2.join(&cl.id.clone(), &["t"], None);
            }
        }
        for _ in 0..4 {
            s2.beat(&mut a);
            s2.beat(&mut b);
        }
        assert_eq!((n(&a), n(&b)), (2, 2));
        assert!(pairs(&a.owned).all(|tp| !contains(&b.owned, &tp)));
    }

    /// Members that left are gone after a replay; a static member that left for a while (-2)
    /// keeps its place, and its next incarnation takes over its partitions.
    #[test]
    fn replay_forgets_members_that_left() {
        let mut s = Sim::new(6);
        let mut a = s.join("a", &["t"], None);
        let mut b = s.join("b", &["t"], None);
        let mut c = s.join("c", &["t"], Some("i-c"));
        for _ in 0..3 {
            s.beat(&mut a);
            s.beat(&mut b);
            s.beat(&mut c);
        }
        assert_eq!(s.leave("b", -1, None), 0);
        assert_eq!(s.leave("c", -2, Some("i-c")), 0);
        let want = restorable(&s.c);
        for log in [s.records.clone(), compact(&s.records)] {
            let (c2, written) = s.restart(&log);
            assert!(written.is_empty());
            assert_eq!(restorable(&c2), want);
            let g = c2.groups[G].consumer.as_ref().unwrap();
            assert!(!g.members.contains_key("b"));
            assert!(g.members["c"].left_static);
            assert_eq!(g.static_members["i-c"], "c");
            let mut s2 = s.with(c2);
            assert_eq!(
                s2.beat(&mut b.clone()),
                ResponseError::UnknownMemberId.code()
            );
            // (It may get more than c had: b's partitions are up for grabs too.)
            let c2 = s2.join("c2", &["t"], Some("i-c"));
            assert!(pairs(&c.owned).all(|tp| contains(&c2.owned, &tp)), "{c2:?}");
        }
    }

    /// A group deleted after everyone left is gone after a replay, whole log or compacted.
    #[test]
    fn replay_of_a_deleted_group() {
        let mut s = Sim::new(3);
        let mut a = s.join("a", &["t"], None);
        let mut b = s.join("b", &["t"], None);
        s.beat(&mut a);
        s.beat(&mut b);
        assert_eq!(s.commit("a", a.epoch, 9), 0);
        assert_eq!(s.leave("a", -1, None), 0);
        assert_eq!(s.leave("b", -1, None), 0);
        let (recs, res) = s.c.delete_group(G, s.now);
        assert_eq!(res.error_code, 0);
        s.records.extend(recs);
        assert!(s.c.take_output().records.is_empty());
        for log in [s.records.clone(), compact(&s.records)] {
            let (c2, written) = s.restart(&log);
            assert!(written.is_empty());
            assert!(!c2.groups.contains_key(G), "{:?}", c2.groups.get(G));
            assert_eq!(
                c2.consumer_group_describe(G).error_code,
                ResponseError::GroupIdNotFound.code()
            );
        }
        // A new group of the same name starts from scratch, as on a fresh coordinator.
        let (c2, _) = s.restart(&s.records);
        let mut s2 = s.with(c2);
        let a = s2.join("a", &["t"], None);
        let fresh = Sim::new(3).join("a", &["t"], None);
        assert_eq!((a.epoch, n(&a)), (fresh.epoch, 3));
    }

    /// Turning into a classic group deletes every KIP-848 record of the group.
    #[test]
    fn classic_conversion_deletes_consumer_records() {
        let mut s = Sim::new(2);
        let mut a = s.join("a", &["t"], None);
        s.beat(&mut a);
        assert_eq!(s.leave("a", -1, None), 0);
        let j = classic_join();
        let _ = s.c.join_group(1, &j, 9, "c", "/h", s.now);
        s.records.extend(s.c.take_output().records);
        s.c.check_invariants();
        assert!(s.c.groups[G].consumer.is_none());
        for log in [s.records.clone(), compact(&s.records)] {
            let (c2, written) = s.restart(&log);
            assert!(written.is_empty());
            assert!(c2.groups.get(G).is_none_or(|g| g.consumer.is_none()));
        }
        // Nothing of keys 3–8 survives compaction.
        assert!(compact(&s.records)
            .iter()
            .all(|r| !records::decode(r).unwrap().is_consumer()));
    }

    /// A joining heartbeat (epoch 0) of member `id` of `group` subscribing by `regex`, asking
    /// for the range assignor.
    fn regex_join(group: &str, id: &str, regex: &str) -> ConsumerGroupHeartbeatRequest {
        let mut req = ConsumerGroupHeartbeatRequest::default();
        req.group_id = GroupId(sb(group));
        req.member_id = sb(id);
        req.rack_id = None;
        req.instance_id = None;
        req.rebalance_timeout_ms = 5_000;
        req.subscribed_topic_names = None;
        req.subscribed_topic_regex = Some(sb(regex));
        req.server_assignor = Some(sb("range"));
        req.topic_partitions = Some(Vec::new());
        req
    }

    #[test]
    fn metadata_changes_and_regex_subscriptions() {
        let mut s = Sim::new(2);
        let mut a = s.join("a", &["t", "later"], None);
        assert_eq!(n(&a), 2);
        // Partitions added and a subscribed topic created: picked up at the next heartbeat.
        s.topics.0.insert("t".into(), (T, 4));
        s.topics.0.insert("later".into(), (Uuid::from_u128(9), 1));
        assert_eq!(s.beat(&mut a), 0);
        assert_eq!(n(&a), 5);
        // A regex member.
        let mut req = regex_join("rx", "r", "la.*");
        let r = s.raw(&req);
        assert_eq!(r.error_code, 0);
        let asg = r.assignment.unwrap();
        assert_eq!(asg.topic_partitions.len(), 1);
        assert_eq!(asg.topic_partitions[0].topic_id, Uuid::from_u128(9));
        assert_eq!(
            s.c.consumer_group_describe("rx").assignor_name.as_str(),
            "range"
        );
        // Bad input.
        req.subscribed_topic_regex = Some(sb("("));
        assert_eq!(
            s.raw(&req).error_code,
            ResponseError::InvalidRegularExpression.code()
        );
        req.subscribed_topic_regex = Some(sb("la.*"));
        req.server_assignor = Some(sb("sticky"));
        assert_eq!(
            s.raw(&req).error_code,
            ResponseError::UnsupportedAssignor.code()
        );
        req.server_assignor = None;
        req.topic_partitions = None;
        assert_eq!(s.raw(&req).error_code, ResponseError::InvalidRequest.code());
        req.group_id = GroupId(sb(""));
        assert_eq!(s.raw(&req).error_code, ResponseError::InvalidRequest.code());
    }

    /// A regex subscription resolves only to topics its member may DESCRIBE (each member with
    /// its own rights); explicitly named topics were checked by the handler already.
    #[test]
    fn regex_matches_are_filtered_by_the_members_describe_rights() {
        let mut s = Sim::new(2);
        let (t1, t2) = (Uuid::from_u128(21), Uuid::from_u128(22));
        s.topics.0.insert("logs-a".into(), (t1, 2));
        s.topics.0.insert("logs-b".into(), (t2, 2));
        s.topics.1.insert(("User:bob".into(), "logs-b".into()));
        let regex_member = |id: &str| regex_join("rx", id, "logs-.*");
        let topics_of = |r: &ConsumerGroupHeartbeatResponse| -> BTreeSet<Uuid> {
            r.assignment
                .as_ref()
                .map(|a| a.topic_partitions.iter().map(|t| t.topic_id).collect())
                .unwrap_or_default()
        };
        s.owner = Some(("User:bob", "127.0.0.1"));
        let r = s.raw(&regex_member("bob"));
        assert_eq!(r.error_code, 0);
        assert_eq!(topics_of(&r), BTreeSet::from([t1]), "bob sees logs-a only");
        // Alice may describe both: she gets logs-b, and (range) her share of logs-a.
        s.owner = Some(("User:alice", "127.0.0.1"));
        let r = s.raw(&regex_member("alice"));
        assert_eq!(r.error_code, 0);
        assert!(topics_of(&r).contains(&t2), "alice's regex matches logs-b");
        let d = s.c.consumer_group_describe("rx");
        for m in &d.members {
            let ids: BTreeSet<Uuid> = m
                .target_assignment
                .topic_partitions
                .iter()
                .map(|t| t.topic_id)
                .collect();
            if m.member_id.as_str() == "bob" {
                assert!(
                    !ids.contains(&t2),
                    "bob is given a topic he may not describe"
                );
            }
        }
        // Without an authorizer nothing is filtered.
        s.owner = None;
        let mut solo = Sim::new(2);
        solo.topics = s.topics.clone();
        let r = solo.raw(&regex_member("carol"));
        assert_eq!(topics_of(&r), BTreeSet::from([t1, t2]));
    }

    /// Seeded random schedule of joins, leaves (static members leave with -2 and come back as
    /// a new incarnation), heartbeats (some with lost responses) and coordinator restarts from
    /// the compacted log: ownership never overlaps, a restart restores the group exactly and
    /// writes nothing, and once everyone heartbeats enough the group is Stable with every
    /// partition assigned.
    #[test]
    fn random_schedules_converge() {
        for seed in 0..40u64 {
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut next = |n: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % n
            };
            let mut s = Sim::new(1 + next(9) as i32);
            let mut clients: Vec<Option<Client>> = vec![None; 5];
            // Slots 3 and 4 are static members; one that left with -2 comes back as a new
            // incarnation (a new member id) that takes over its place.
            let instance = |i: usize| (i >= 3).then(|| format!("i{i}"));
            let mut incarnation = [0u32; 5];
            for _ in 0..200 {
                let i = next(5) as usize;
                let iid = instance(i);
                match (&mut clients[i], next(10)) {
                    (None, _) => {
                        let id = format!("m{i}-{}", incarnation[i]);
                        clients[i] = Some(s.join(&id, &["t"], iid.as_deref()));
                    }
                    (Some(cl), 0) => {
                        let epoch = if iid.is_some() { -2 } else { -1 };
                        s.leave(&cl.id, epoch, iid.as_deref());
                        incarnation[i] += 1;
                        clients[i] = None;
                    }
                    (Some(cl), 1) => {
                        // Response lost: the client keeps its old view.
                        let mut copy = cl.clone();
                        s.beat(&mut copy);
                    }
                    (Some(cl), _) => {
                        if s.beat(cl) != 0 {
                            *cl = s.join(&cl.id.clone(), &["t"], iid.as_deref());
                        }
                    }
                }
                if next(25) == 0 {
                    // The coordinator restarts from its compacted log and carries on.
                    let log = compact(&s.records);
                    let (c2, written) = s.restart(&log);
                    assert!(written.is_empty(), "seed {seed}: {written:?}");
                    assert_eq!(restorable(&c2), restorable(&s.c), "seed {seed}");
                    s.c = c2;
                    s.records = log;
                }
                // Clients never own a partition another client owns (as they see it).
                let live: Vec<&Client> = clients.iter().flatten().collect();
                for (x, a) in live.iter().enumerate() {
                    for b in &live[x + 1..] {
                        assert!(
                            pairs(&a.owned).all(|tp| !contains(&b.owned, &tp)),
                            "seed {seed}: {a:?} and {b:?} overlap"
                        );
                    }
                }
            }
            // Everyone comes back (a static member that left still holds its partitions).
            for (i, slot) in clients.iter_mut().enumerate() {
                if slot.is_none() {
                    let id = format!("m{i}-{}", incarnation[i]);
                    *slot = Some(s.join(&id, &["t"], instance(i).as_deref()));
                }
            }
            for _ in 0..6 {
                for (i, cl) in clients.iter_mut().enumerate() {
                    let cl = cl.as_mut().expect("all joined");
                    if s.beat(cl) != 0 {
                        *cl = s.join(&cl.id.clone(), &["t"], instance(i).as_deref());
                    }
                }
            }
            let live: Vec<&Client> = clients.iter().flatten().collect();
            if !live.is_empty() {
                let total: usize = live.iter().map(|c| n(c)).sum();
                let parts = s.topics.0["t"].1 as usize;
                assert_eq!(total, parts, "seed {seed}: {live:?}");
                let l = s.c.list_groups(&ListGroupsRequest::default(), 5);
                assert_eq!(l[0].group_state.as_str(), "Stable", "seed {seed}");
            }
        }
    }
}
