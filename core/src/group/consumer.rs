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
//! Persistence: the group epoch goes to `__consumer_offsets` as Kafka's ConsumerGroupMetadata
//! record (key version 3), so a restarted coordinator keeps the group (type, epoch, offsets) and
//! never reuses an epoch. Members are not persisted: after a coordinator restart their heartbeats
//! get UNKNOWN_MEMBER_ID and they rejoin (Kafka replays members too; this costs one rebalance).

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
use super::records;
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

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

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
    pub fn deadline_ms(&self) -> i64 {
        match self.revocation_deadline_ms {
            Some(r) if self.state == MemberState::UnrevokedPartitions => {
                r.min(self.session_deadline_ms)
            }
            _ => self.session_deadline_ms,
        }
    }
}

/// The KIP-848 part of a group; offsets stay in [`Group::offsets`].
#[derive(Debug, Clone, Default)]
pub(crate) struct ConsumerGroup {
    /// Group epoch: bumped by every membership, subscription or topic metadata change.
    pub epoch: i32,
    /// The last epoch written to the log.
    pub persisted_epoch: i32,
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
            persisted_epoch: epoch,
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

    fn release_all(&mut self, member_id: &str) {
        self.owners.retain(|_, o| o != member_id);
    }

    /// Removes a member (leave, expiry, fencing): its partitions become free for the others.
    pub fn remove_member(&mut self, member_id: &str) {
        if let Some(m) = self.members.remove(member_id) {
            if let Some(iid) = &m.instance_id {
                if self.static_members.get(iid).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(iid);
                }
            }
            self.release_all(member_id);
            self.target.remove(member_id);
            self.bump();
        }
    }

    /// Topic names member `m` subscribes to that exist now (names and regex matches).
    fn resolve(&mut self, m: &ConsumerMember, topics: &dyn TopicLookup) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = m
            .subscribed_names
            .iter()
            .filter(|n| topics.topic(n).is_some())
            .cloned()
            .collect();
        if let Some(re) = m.subscribed_regex.as_deref().filter(|r| !r.is_empty()) {
            if let Some(re) = self.regex(re) {
                topics.for_each_topic(&mut |t| {
                    if re.is_match(t) {
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
        let members: Vec<ConsumerMember> = self.members.values().cloned().collect();
        members
            .iter()
            .map(|m| (m.member_id.clone(), self.resolve(m, topics)))
            .collect()
    }

    /// Re-reads the metadata of subscribed topics; a change (topic created, deleted, grown)
    /// bumps the group epoch.
    fn refresh_metadata(&mut self, topics: &dyn TopicLookup) {
        let subs = self.subscriptions(topics);
        let mut meta = BTreeMap::new();
        for name in subs.values().flatten() {
            if let Some(t) = topics.topic(name) {
                meta.insert(name.clone(), t);
            }
        }
        if meta != self.subscription_meta {
            self.subscription_meta = meta;
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

/// Every partition of the subscribed topics, by subscriber set.
fn all_partitions(
    subs: &BTreeMap<String, BTreeSet<String>>,
    meta: &BTreeMap<String, (Uuid, i32)>,
) -> Vec<((Uuid, i32), Vec<String>)> {
    let mut out = Vec::new();
    for (name, (id, n)) in meta {
        let who: Vec<String> = subs
            .iter()
            .filter(|(_, s)| s.contains(name))
            .map(|(m, _)| m.clone())
            .collect();
        if who.is_empty() {
            continue;
        }
        for p in 0..*n {
            out.push(((*id, p), who.clone()));
        }
    }
    out
}

/// Kafka's `uniform` assignor: balanced (partition counts differ by at most one between members
/// that could take each other's partitions) and sticky (a partition stays with its previous
/// target owner unless balance requires moving it).
pub fn assign_uniform(
    subs: &BTreeMap<String, BTreeSet<String>>,
    meta: &BTreeMap<String, (Uuid, i32)>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let parts = all_partitions(subs, meta);
    let mut out: BTreeMap<String, Assignment> = subs
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    let mut load: BTreeMap<String, usize> = subs.keys().map(|m| (m.clone(), 0)).collect();
    let eligible: HashMap<(Uuid, i32), &Vec<String>> =
        parts.iter().map(|(tp, who)| (*tp, who)).collect();
    let total = parts.len();
    let members = subs.len().max(1);
    // A member keeps at most its fair share of its previous partitions.
    let quota = total.div_ceil(members);
    let mut free = Vec::new();
    for (tp, who) in &parts {
        let keeper = previous
            .iter()
            .find(|(m, a)| contains(a, tp) && who.contains(m))
            .map(|(m, _)| m.clone());
        match keeper {
            Some(m) if load[&m] < quota => {
                insert(out.get_mut(&m).expect("subscriber"), *tp);
                *load.get_mut(&m).expect("subscriber") += 1;
            }
            _ => free.push(*tp),
        }
    }
    for tp in free {
        let who = eligible[&tp];
        let m = who
            .iter()
            .min_by_key(|m| (load[*m], (*m).clone()))
            .expect("non-empty")
            .clone();
        insert(out.get_mut(&m).expect("subscriber"), tp);
        *load.get_mut(&m).expect("subscriber") += 1;
    }
    // Balance heterogeneous subscriptions: move from the most loaded member while some eligible
    // member holds two or more fewer.
    for _ in 0..total.saturating_mul(2) {
        let mut moved = false;
        let mut by_load: Vec<(usize, String)> = load.iter().map(|(m, l)| (*l, m.clone())).collect();
        by_load.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        'outer: for (l, from) in &by_load {
            let owned: Vec<(Uuid, i32)> = pairs(&out[from]).collect();
            for tp in owned.iter().rev() {
                let best = eligible[tp]
                    .iter()
                    .filter(|m| load[*m] + 1 < *l)
                    .min_by_key(|m| (load[*m], (*m).clone()));
                if let Some(to) = best {
                    let to = to.clone();
                    remove(out.get_mut(from).expect("member"), tp);
                    insert(out.get_mut(&to).expect("member"), *tp);
                    *load.get_mut(from).expect("member") -= 1;
                    *load.get_mut(&to).expect("member") += 1;
                    moved = true;
                    break 'outer;
                }
            }
        }
        if !moved {
            break;
        }
    }
    out
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
pub struct Caller<'a> {
    pub client_id: &'a str,
    pub client_host: &'a str,
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
            flush_epoch(g, &mut self.out.records);
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
            c.members.insert(
                member_id.to_owned(),
                ConsumerMember {
                    member_id: member_id.to_owned(),
                    instance_id: instance.map(str::to_owned),
                    rack_id: None,
                    client_id: String::new(),
                    client_host: String::new(),
                    epoch: 0,
                    previous_epoch: 0,
                    state: MemberState::Stable,
                    rebalance_timeout_ms: req.rebalance_timeout_ms,
                    server_assignor: None,
                    subscribed_names: Vec::new(),
                    subscribed_regex: None,
                    assigned: Assignment::new(),
                    revoking: Assignment::new(),
                    session_deadline_ms: 0,
                    revocation_deadline_ms: None,
                    left_static: false,
                },
            );
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

/// Queues the group's ConsumerGroupMetadata record when its epoch moved.
pub(crate) fn flush_epoch(g: &mut Group, out: &mut Vec<records::LogRecord>) {
    let Some(c) = g.consumer.as_deref_mut() else {
        return;
    };
    if c.epoch != c.persisted_epoch {
        c.persisted_epoch = c.epoch;
        out.push(records::consumer_group_record(&g.group_id, c.epoch));
    }
}

/// Timer work of a consumer group: session and revocation expiry.
pub(crate) fn fire_consumer(g: &mut Group, ctx: &mut Ctx) -> bool {
    let Some(c) = g.consumer.as_deref_mut() else {
        return false;
    };
    let fired = c.expire(ctx.now_ms);
    sync_consumer_state(g, ctx.now_ms);
    let mut recs = Vec::new();
    flush_epoch(g, &mut recs);
    for r in recs {
        ctx.record(r);
    }
    fired
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

    #[derive(Default)]
    struct Topics(BTreeMap<String, (Uuid, i32)>);

    impl TopicLookup for Topics {
        fn topic(&self, name: &str) -> Option<(Uuid, i32)> {
            self.0.get(name).copied()
        }
        fn for_each_topic(&self, f: &mut dyn FnMut(&str)) {
            for n in self.0.keys() {
                f(n);
            }
        }
    }

    const G: &str = "cg";
    const T: Uuid = Uuid::from_u128(7);

    struct Sim {
        c: GroupCoordinator,
        topics: Topics,
        now: i64,
        records: Vec<LogRecord>,
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
            }
        }

        fn raw(&mut self, req: &ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
            let caller = Caller {
                client_id: "client",
                client_host: "/127.0.0.1",
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

    #[test]
    fn replay_restores_the_group_and_its_epoch() {
        let mut s = Sim::new(3);
        let _a = s.join("a", &["t"], None);
        let epoch = s.c.groups[G].consumer.as_ref().unwrap().epoch;
        let mut c2 = GroupCoordinator::new(0, GroupConfig::default());
        for r in &s.records {
            c2.apply(r, s.now).unwrap();
        }
        assert_eq!(c2.groups[G].consumer.as_ref().unwrap().epoch, epoch);
        let l = c2.list_groups(&ListGroupsRequest::default(), 5);
        assert_eq!(
            (l[0].group_type.as_str(), l[0].group_state.as_str()),
            ("consumer", "Empty")
        );
        c2.check_invariants();
        // The old member is unknown to the new coordinator; a rejoin moves past the old epoch.
        let mut s2 = Sim {
            c: c2,
            topics: Sim::new(3).topics,
            now: s.now,
            records: Vec::new(),
        };
        let mut old = Client {
            id: "a".into(),
            epoch,
            owned: Assignment::new(),
        };
        assert_eq!(s2.beat(&mut old), ResponseError::UnknownMemberId.code());
        let a = s2.join("a", &["t"], None);
        assert!(a.epoch > epoch);
        assert_eq!(n(&a), 3);
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
        let mut req = ConsumerGroupHeartbeatRequest::default();
        req.group_id = GroupId(sb("rx"));
        req.member_id = sb("r");
        req.rack_id = None;
        req.instance_id = None;
        req.rebalance_timeout_ms = 5_000;
        req.subscribed_topic_names = None;
        req.subscribed_topic_regex = Some(sb("la.*"));
        req.server_assignor = Some(sb("range"));
        req.topic_partitions = Some(Vec::new());
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

    /// Seeded random schedule of joins, leaves, heartbeats (some with lost responses) and
    /// clock jumps: ownership never overlaps, and once everyone heartbeats enough the group is
    /// Stable with every partition assigned.
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
            for _ in 0..200 {
                let i = next(5) as usize;
                match (&mut clients[i], next(10)) {
                    (None, _) => clients[i] = Some(s.join(&format!("m{i}"), &["t"], None)),
                    (Some(cl), 0) => {
                        let mut req = ConsumerGroupHeartbeatRequest::default();
                        req.group_id = GroupId(sb(G));
                        req.member_id = sb(&cl.id);
                        req.member_epoch = -1;
                        req.instance_id = None;
                        req.rack_id = None;
                        req.subscribed_topic_names = None;
                        req.subscribed_topic_regex = None;
                        req.server_assignor = None;
                        req.topic_partitions = None;
                        s.raw(&req);
                        clients[i] = None;
                    }
                    (Some(cl), 1) => {
                        // Response lost: the client keeps its old view.
                        let mut copy = cl.clone();
                        s.beat(&mut copy);
                    }
                    (Some(cl), _) => {
                        if s.beat(cl) != 0 {
                            clients[i] = Some(s.join(&format!("m{i}"), &["t"], None));
                        }
                    }
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
            for _ in 0..6 {
                for cl in clients.iter_mut().flatten() {
                    if s.beat(cl) != 0 {
                        *cl = s.join(&cl.id.clone(), &["t"], None);
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
