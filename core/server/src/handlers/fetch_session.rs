//! Incremental fetch sessions (KIP-227), kept per connection.
//!
//! A consumer that fetches the same partitions over and over can open a session: its first
//! (full) fetch carries `session_id = 0, session_epoch = 0`; the answer carries a nonzero session
//! id. Each later request carries that id and the next epoch (1, 2, ...) and lists only the
//! partitions whose fetch position changed plus `forgotten_topics_data`; the broker answers only
//! the partitions with something new: records, a moved high watermark, last stable offset or log
//! start offset, or an error (Kafka's `FetchSession` / `IncrementalFetchContext` rules; the last
//! stable offset is Chronik's addition so a read_committed consumer always learns it).
//!
//! | request (id, epoch)      | meaning                                               |
//! | ------------------------ | ----------------------------------------------------- |
//! | (0, 0)                   | full fetch, open a session                            |
//! | (id, 0)                  | close `id`, full fetch, open a new session            |
//! | (0 or id, -1)            | close `id` if given, sessionless full fetch           |
//! | (id, epoch ≥ 1)          | incremental fetch in `id`; the epoch must be the next |
//!
//! Errors are top-level: FETCH_SESSION_ID_NOT_FOUND (70) for an unknown id,
//! INVALID_FETCH_SESSION_EPOCH (71) for a wrong epoch, FETCH_SESSION_TOPIC_ID_ERROR (106) when a
//! session opened with topic names (v7–12) is continued with topic ids (v13+) or the other way.
//!
//! Sessions live in the connection's state ([`FetchSessions`], one per connection) and die with
//! it, so nothing needs an idle timeout. Kafka bounds sessions broker-wide
//! (`max.incremental.fetch.session.cache.slots`, default 1000 sessions); here each connection
//! holds at most `min(broker.max_incremental_fetch_session_cache_slots,`
//! [`MAX_SESSIONS_PER_CONNECTION`]`)` sessions (0 turns sessions off) of at most
//! [`MAX_PARTITIONS_PER_SESSION`] partitions each. A client uses one session per broker
//! connection, so a few slots are plenty; opening one more evicts the least recently used. A full
//! fetch of more partitions than a session may hold is answered without a session (id 0), and the
//! client keeps sending full fetches, exactly as when Kafka's cache is full.
//!
//! Everything here is synchronous and borrows the state only inside one method call, so request
//! tasks of one connection that run concurrently never hold it across an `.await`.

use std::cell::RefCell;
use std::collections::BTreeMap;

use kafka_protocol::ResponseError;

/// Sessions one connection may hold at once (least recently used evicted beyond that).
pub const MAX_SESSIONS_PER_CONNECTION: usize = 4;
/// Partitions one session may hold (Kafka has no such bound; this one keeps a connection's
/// cache at most `MAX_SESSIONS_PER_CONNECTION * MAX_PARTITIONS_PER_SESSION` entries).
pub const MAX_PARTITIONS_PER_SESSION: usize = 1000;

/// Session id meaning "no session".
pub const INVALID_SESSION_ID: i32 = 0;
/// Epoch of a full fetch that opens a session.
pub const INITIAL_EPOCH: i32 = 0;
/// Epoch of a sessionless full fetch (closes the session named, if any).
pub const FINAL_EPOCH: i32 = -1;

/// How a request names a topic: by name (Fetch v7–12) or by id (v13+).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TopicKey {
    Name(String),
    Id(u128),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    pub topic: TopicKey,
    pub partition: i32,
}

/// What the client asks of one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionFetch {
    pub fetch_offset: i64,
    pub max_bytes: i32,
}

/// The offsets of a partition as the client last heard them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionSeen {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
}

impl PartitionSeen {
    /// Not yet told (or told an error): the next answer always differs.
    pub const UNKNOWN: PartitionSeen = PartitionSeen {
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
    };
}

/// One partition's answer, as far as the session cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionAnswer {
    pub error: i16,
    /// Record bytes in the answer (after the response size limit).
    pub record_bytes: usize,
    pub seen: PartitionSeen,
}

/// How to answer one fetch request, decided by [`FetchSessions::begin`].
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Answer every requested partition; response session id 0.
    Sessionless,
    /// Answer every requested partition, then [`FetchSessions::open`] a session for them.
    Full,
    /// Answer from the session: read all its partitions (in this order), then
    /// [`FetchSessions::finish`] says which ones go into the response.
    Incremental {
        session_id: i32,
        /// The session's epoch after this request; `finish` checks nobody moved it since.
        epoch: i32,
        partitions: Vec<(PartitionKey, PartitionFetch)>,
    },
    /// Answer only this top-level error, with session id 0 and no partitions.
    Error(i16),
}

/// The epoch after `epoch` (Kafka's `FetchMetadata.nextEpoch`): wraps to 1, never to 0 or -1.
pub fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

#[derive(Debug)]
struct Cached {
    fetch: PartitionFetch,
    seen: PartitionSeen,
    /// Position in `Session::order`.
    seq: u64,
}

#[derive(Debug)]
struct Session {
    id: i32,
    /// The epoch the next incremental request must carry. Invariant: `epoch >= 1`.
    epoch: i32,
    uses_topic_ids: bool,
    partitions: BTreeMap<PartitionKey, Cached>,
    /// Response order. Partitions that were answered move to the back, so under a response size
    /// limit every partition gets its turn (KIP-227). Invariant: the same keys as `partitions`,
    /// `order[p.seq] == key`.
    order: BTreeMap<u64, PartitionKey>,
    next_seq: u64,
    last_used: u64,
}

impl Session {
    fn new(id: i32, uses_topic_ids: bool, now: u64) -> Self {
        Session {
            id,
            epoch: next_epoch(INITIAL_EPOCH),
            uses_topic_ids,
            partitions: BTreeMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            last_used: now,
        }
    }

    /// Adds a partition at the back, or updates its fetch position where it stands.
    fn upsert(&mut self, key: &PartitionKey, fetch: PartitionFetch, seen: PartitionSeen) {
        if let Some(c) = self.partitions.get_mut(key) {
            c.fetch = fetch;
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.partitions
            .insert(key.clone(), Cached { fetch, seen, seq });
    }

    fn remove(&mut self, key: &PartitionKey) {
        if let Some(c) = self.partitions.remove(key) {
            self.order.remove(&c.seq);
        }
    }

    fn move_to_back(&mut self, key: &PartitionKey) {
        let Some(c) = self.partitions.get_mut(key) else {
            return;
        };
        self.order.remove(&c.seq);
        c.seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(c.seq, key.clone());
    }

    fn check_invariants(&self) {
        assert!(self.id != INVALID_SESSION_ID);
        assert!(self.epoch >= 1, "session {} epoch {}", self.id, self.epoch);
        assert!(self.partitions.len() <= MAX_PARTITIONS_PER_SESSION);
        assert_eq!(self.partitions.len(), self.order.len());
        for (seq, key) in &self.order {
            assert!(*seq < self.next_seq);
            assert_eq!(self.partitions[key].seq, *seq);
            assert_eq!(matches!(key.topic, TopicKey::Id(_)), self.uses_topic_ids);
        }
    }
}

#[derive(Debug)]
struct Cache {
    /// Invariant: at most `max_sessions`, ids distinct and nonzero.
    sessions: Vec<Session>,
    /// Invariant: `max_sessions <= MAX_SESSIONS_PER_CONNECTION`; 0 means sessions are off.
    max_sessions: usize,
    last_id: i32,
    /// Logical clock for least-recently-used eviction.
    clock: u64,
}

impl Cache {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn find(&mut self, id: i32) -> Option<&mut Session> {
        self.sessions.iter_mut().find(|s| s.id == id)
    }

    fn close(&mut self, id: i32) {
        self.sessions.retain(|s| s.id != id);
    }

    /// A nonzero id not in use. Ids count up per connection: they only need to be unique among
    /// this connection's sessions, which are never visible to another connection.
    fn fresh_id(&mut self) -> i32 {
        // At most MAX_SESSIONS_PER_CONNECTION ids are taken, so this ends within that many + 1.
        for _ in 0..=MAX_SESSIONS_PER_CONNECTION {
            self.last_id = match self.last_id.checked_add(1) {
                Some(id) if id >= 1 => id,
                _ => 1,
            };
            let id = self.last_id;
            if !self.sessions.iter().any(|s| s.id == id) {
                return id;
            }
        }
        unreachable!("more than MAX_SESSIONS_PER_CONNECTION sessions in use")
    }
}

/// The fetch sessions of one connection.
#[derive(Debug)]
pub struct FetchSessions {
    inner: RefCell<Cache>,
}

impl Default for FetchSessions {
    fn default() -> Self {
        Self::new(MAX_SESSIONS_PER_CONNECTION)
    }
}

impl FetchSessions {
    /// A connection's cache holding up to `max_sessions` sessions (clamped to
    /// [`MAX_SESSIONS_PER_CONNECTION`]; 0 answers every full fetch without a session).
    pub fn new(max_sessions: usize) -> Self {
        FetchSessions {
            inner: RefCell::new(Cache {
                sessions: Vec::new(),
                max_sessions: max_sessions.min(MAX_SESSIONS_PER_CONNECTION),
                last_id: 0,
                clock: 0,
            }),
        }
    }

    /// Decides how to answer a request with `session_id`/`session_epoch`, listing `requested`
    /// partitions and `forgotten` ones, and applies the request to its session.
    pub fn begin(
        &self,
        session_id: i32,
        session_epoch: i32,
        uses_topic_ids: bool,
        requested: &[(PartitionKey, PartitionFetch)],
        forgotten: &[PartitionKey],
    ) -> Plan {
        let mut c = self.inner.borrow_mut();
        if session_epoch == INITIAL_EPOCH || session_epoch == FINAL_EPOCH {
            if session_id != INVALID_SESSION_ID {
                c.close(session_id);
            }
            return if session_epoch == INITIAL_EPOCH {
                Plan::Full
            } else {
                Plan::Sessionless
            };
        }
        let now = c.tick();
        let Some(s) = c.find(session_id) else {
            return Plan::Error(ResponseError::FetchSessionIdNotFound.code());
        };
        if s.epoch != session_epoch {
            return Plan::Error(ResponseError::InvalidFetchSessionEpoch.code());
        }
        if s.uses_topic_ids != uses_topic_ids {
            return Plan::Error(ResponseError::FetchSessionTopicIdError.code());
        }
        for (key, fetch) in requested {
            s.upsert(key, *fetch, PartitionSeen::UNKNOWN);
        }
        for key in forgotten {
            s.remove(key);
        }
        if s.partitions.len() > MAX_PARTITIONS_PER_SESSION {
            // The client grew the session past the bound: drop it. It answers NOT_FOUND by
            // sending a full fetch, which is then served without a session.
            c.close(session_id);
            return Plan::Error(ResponseError::FetchSessionIdNotFound.code());
        }
        if s.partitions.is_empty() {
            // Nothing left to follow: close it and answer what was asked, without a session.
            c.close(session_id);
            return Plan::Sessionless;
        }
        s.last_used = now;
        s.epoch = next_epoch(s.epoch);
        let partitions = s
            .order
            .values()
            .map(|k| (k.clone(), s.partitions[k].fetch))
            .collect();
        Plan::Incremental {
            session_id,
            epoch: s.epoch,
            partitions,
        }
    }

    /// Opens a session for the partitions a full fetch just answered; returns its id, or
    /// [`INVALID_SESSION_ID`] when it would hold no partitions or more than a session may.
    pub fn open(
        &self,
        uses_topic_ids: bool,
        answered: &[(PartitionKey, PartitionFetch, PartitionAnswer)],
    ) -> i32 {
        let mut c = self.inner.borrow_mut();
        if c.max_sessions == 0 {
            return INVALID_SESSION_ID;
        }
        let now = c.tick();
        let mut s = Session::new(INVALID_SESSION_ID, uses_topic_ids, now);
        for (key, fetch, answer) in answered {
            let seen = if answer.error != 0 {
                PartitionSeen::UNKNOWN
            } else {
                answer.seen
            };
            s.upsert(key, *fetch, seen);
            if let Some(p) = s.partitions.get_mut(key) {
                // A repeated partition: the last occurrence wins, as in Kafka.
                p.seen = seen;
            }
            if s.partitions.len() > MAX_PARTITIONS_PER_SESSION {
                return INVALID_SESSION_ID;
            }
        }
        if s.partitions.is_empty() {
            return INVALID_SESSION_ID;
        }
        if c.sessions.len() >= c.max_sessions {
            let lru = c
                .sessions
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(i, _)| i)
                .expect("the cache is full, so not empty");
            c.sessions.swap_remove(lru);
        }
        s.id = c.fresh_id();
        let id = s.id;
        c.sessions.push(s);
        id
    }

    /// After an incremental fetch: which of `answers` go into the response (Kafka's
    /// `CachedPartition.maybeUpdateResponseData`), remembering what the client is told and moving
    /// answered partitions to the back. `Err` is the top-level error when another request moved
    /// the session on (or closed it) meanwhile.
    pub fn finish(
        &self,
        session_id: i32,
        epoch: i32,
        answers: &[(&PartitionKey, PartitionAnswer)],
    ) -> Result<Vec<bool>, i16> {
        let mut c = self.inner.borrow_mut();
        let Some(s) = c.find(session_id) else {
            return Err(ResponseError::FetchSessionIdNotFound.code());
        };
        if s.epoch != epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch.code());
        }
        let mut include = Vec::with_capacity(answers.len());
        for (key, a) in answers {
            let Some(p) = s.partitions.get_mut(*key) else {
                include.push(false);
                continue;
            };
            let mut respond = a.record_bytes > 0 || a.error != 0 || p.seen != a.seen;
            if a.error != 0 {
                // Forget what the client knows, so the partition is sent again when the error
                // clears even if its offsets did not move.
                p.seen = PartitionSeen::UNKNOWN;
                respond = true;
            } else {
                p.seen = a.seen;
            }
            if respond {
                s.move_to_back(key);
            }
            include.push(respond);
        }
        Ok(include)
    }

    /// Sessions held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.inner.borrow().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn check_invariants(&self) {
        let c = self.inner.borrow();
        assert!(c.max_sessions <= MAX_SESSIONS_PER_CONNECTION);
        assert!(c.sessions.len() <= c.max_sessions);
        for (i, s) in c.sessions.iter().enumerate() {
            s.check_invariants();
            assert!(c.sessions[i + 1..].iter().all(|o| o.id != s.id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(topic: &str, partition: i32) -> PartitionKey {
        PartitionKey {
            topic: TopicKey::Name(topic.to_string()),
            partition,
        }
    }

    fn id_key(id: u128, partition: i32) -> PartitionKey {
        PartitionKey {
            topic: TopicKey::Id(id),
            partition,
        }
    }

    fn fetch(offset: i64) -> PartitionFetch {
        PartitionFetch {
            fetch_offset: offset,
            max_bytes: 1 << 20,
        }
    }

    fn answer(hw: i64, bytes: usize) -> PartitionAnswer {
        PartitionAnswer {
            error: 0,
            record_bytes: bytes,
            seen: PartitionSeen {
                high_watermark: hw,
                last_stable_offset: hw,
                log_start_offset: 0,
            },
        }
    }

    /// Opens a session over partitions 0..n of topic "t", all at high watermark 5.
    fn opened(s: &FetchSessions, n: i32) -> i32 {
        assert_eq!(s.begin(0, INITIAL_EPOCH, false, &[], &[]), Plan::Full);
        let answered: Vec<_> = (0..n)
            .map(|p| (key("t", p), fetch(0), answer(5, 10)))
            .collect();
        let id = s.open(false, &answered);
        s.check_invariants();
        id
    }

    fn incremental(
        s: &FetchSessions,
        id: i32,
        epoch: i32,
        requested: &[(PartitionKey, PartitionFetch)],
        forgotten: &[PartitionKey],
    ) -> (i32, Vec<(PartitionKey, PartitionFetch)>) {
        match s.begin(id, epoch, false, requested, forgotten) {
            Plan::Incremental {
                session_id,
                epoch,
                partitions,
            } => {
                assert_eq!(session_id, id);
                s.check_invariants();
                (epoch, partitions)
            }
            other => panic!("expected an incremental plan, got {other:?}"),
        }
    }

    #[test]
    fn full_fetch_opens_a_session_and_incremental_fetches_advance_its_epoch() {
        let s = FetchSessions::default();
        let id = opened(&s, 3);
        assert_ne!(id, INVALID_SESSION_ID);
        // The first incremental request carries epoch 1, the next 2.
        let (epoch, parts) = incremental(&s, id, 1, &[], &[]);
        assert_eq!(epoch, 2);
        assert_eq!(parts.len(), 3);
        let (epoch, _) = incremental(&s, id, 2, &[], &[]);
        assert_eq!(epoch, 3);
        // Replaying an old epoch is refused; the session survives it.
        assert_eq!(s.begin(id, 2, false, &[], &[]), Plan::Error(71));
        incremental(&s, id, 3, &[], &[]);
    }

    #[test]
    fn unknown_session_and_wrong_topic_naming_are_top_level_errors() {
        let s = FetchSessions::default();
        assert_eq!(s.begin(42, 1, false, &[], &[]), Plan::Error(70));
        let id = opened(&s, 1);
        // Opened by name (v7–12), continued by id (v13+).
        assert_eq!(s.begin(id, 1, true, &[], &[]), Plan::Error(106));
        s.check_invariants();
    }

    #[test]
    fn only_changed_partitions_are_answered_and_answered_ones_rotate_to_the_back() {
        let s = FetchSessions::default();
        let id = opened(&s, 3);
        let (epoch, parts) = incremental(&s, id, 1, &[], &[]);
        let keys: Vec<_> = parts.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![key("t", 0), key("t", 1), key("t", 2)]);
        // Nothing moved: nothing answered.
        let same: Vec<_> = keys.iter().map(|k| (k, answer(5, 0))).collect();
        assert_eq!(s.finish(id, epoch, &same), Ok(vec![false, false, false]));
        // Partition 1 got data (records and a new high watermark): only it is answered.
        let (epoch, _) = incremental(&s, id, epoch, &[], &[]);
        let moved = vec![
            (&keys[0], answer(5, 0)),
            (&keys[1], answer(9, 40)),
            (&keys[2], answer(5, 0)),
        ];
        assert_eq!(s.finish(id, epoch, &moved), Ok(vec![false, true, false]));
        // It moved to the back of the session's order.
        let (epoch, parts) = incremental(&s, id, epoch, &[(key("t", 1), fetch(9))], &[]);
        let order: Vec<_> = parts
            .iter()
            .map(|(k, f)| (k.partition, f.fetch_offset))
            .collect();
        assert_eq!(order, vec![(0, 0), (2, 0), (1, 9)]);
        // The new high watermark is remembered: the same answer again is not news.
        let again = vec![
            (&parts[0].0, answer(5, 0)),
            (&parts[1].0, answer(5, 0)),
            (&parts[2].0, answer(9, 0)),
        ];
        assert_eq!(s.finish(id, epoch, &again), Ok(vec![false, false, false]));
        s.check_invariants();
    }

    #[test]
    fn log_start_offset_moves_and_errors_are_news_and_an_error_is_sent_again_once_cleared() {
        let s = FetchSessions::default();
        let id = opened(&s, 1);
        let k = key("t", 0);
        let (epoch, _) = incremental(&s, id, 1, &[], &[]);
        let mut a = answer(5, 0);
        a.seen.log_start_offset = 3;
        assert_eq!(s.finish(id, epoch, &[(&k, a)]), Ok(vec![true]));
        let (epoch, _) = incremental(&s, id, epoch, &[], &[]);
        let mut err = a;
        err.error = 6;
        assert_eq!(s.finish(id, epoch, &[(&k, err)]), Ok(vec![true]));
        // Same offsets as before the error, but the client last saw an error: answered.
        let (epoch, _) = incremental(&s, id, epoch, &[], &[]);
        assert_eq!(s.finish(id, epoch, &[(&k, a)]), Ok(vec![true]));
        let (epoch, _) = incremental(&s, id, epoch, &[], &[]);
        assert_eq!(s.finish(id, epoch, &[(&k, a)]), Ok(vec![false]));
    }

    #[test]
    fn added_partitions_are_always_answered_and_forgotten_ones_leave() {
        let s = FetchSessions::default();
        let id = opened(&s, 2);
        let (epoch, parts) = incremental(&s, id, 1, &[(key("u", 0), fetch(7))], &[key("t", 0)]);
        let keys: Vec<_> = parts.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![key("t", 1), key("u", 0)]);
        let answers = vec![(&keys[0], answer(5, 0)), (&keys[1], answer(7, 0))];
        assert_eq!(s.finish(id, epoch, &answers), Ok(vec![false, true]));
        // Forgetting everything closes the session: the request is answered without one.
        assert_eq!(
            s.begin(id, epoch, false, &[], &[key("t", 1), key("u", 0)]),
            Plan::Sessionless
        );
        assert!(s.is_empty());
    }

    #[test]
    fn epoch_zero_with_an_id_closes_it_and_epoch_minus_one_is_sessionless() {
        let s = FetchSessions::default();
        let a = opened(&s, 1);
        assert_eq!(s.begin(a, INITIAL_EPOCH, false, &[], &[]), Plan::Full);
        assert!(s.is_empty());
        let b = s.open(false, &[(key("t", 0), fetch(0), answer(1, 0))]);
        assert_ne!(b, a, "a new session gets a new id");
        assert_eq!(s.begin(a, 1, false, &[], &[]), Plan::Error(70));
        assert_eq!(s.begin(b, FINAL_EPOCH, false, &[], &[]), Plan::Sessionless);
        assert!(s.is_empty());
        assert_eq!(s.begin(0, FINAL_EPOCH, false, &[], &[]), Plan::Sessionless);
    }

    #[test]
    fn an_id_raced_past_or_closed_fails_the_finish() {
        let s = FetchSessions::default();
        let id = opened(&s, 1);
        let k = key("t", 0);
        let (epoch, _) = incremental(&s, id, 1, &[], &[]);
        // A second (pipelined) request with the next epoch moves the session on.
        let (_, _) = incremental(&s, id, epoch, &[], &[]);
        assert_eq!(s.finish(id, epoch, &[(&k, answer(5, 0))]), Err(71));
        s.begin(id, FINAL_EPOCH, false, &[], &[]);
        assert_eq!(s.finish(id, epoch + 1, &[(&k, answer(5, 0))]), Err(70));
    }

    #[test]
    fn sessions_per_connection_are_bounded_least_recently_used_evicted() {
        let s = FetchSessions::default();
        let ids: Vec<i32> = (0..MAX_SESSIONS_PER_CONNECTION)
            .map(|_| opened(&s, 1))
            .collect();
        // Use all but the first, so the first is the least recently used.
        for &id in &ids[1..] {
            incremental(&s, id, 1, &[], &[]);
        }
        let newest = opened(&s, 1);
        assert_eq!(s.len(), MAX_SESSIONS_PER_CONNECTION);
        assert!(!ids.contains(&newest));
        assert_eq!(s.begin(ids[0], 1, false, &[], &[]), Plan::Error(70));
        for &id in &ids[1..] {
            incremental(&s, id, 2, &[], &[]);
        }
        s.check_invariants();
    }

    #[test]
    fn zero_slots_turn_sessions_off() {
        let s = FetchSessions::new(0);
        assert_eq!(s.begin(0, INITIAL_EPOCH, false, &[], &[]), Plan::Full);
        let answered = [(key("t", 0), fetch(0), answer(1, 0))];
        assert_eq!(s.open(false, &answered), INVALID_SESSION_ID);
        let one = FetchSessions::new(1);
        let a = one.open(false, &answered);
        let b = one.open(false, &answered);
        assert_eq!(one.len(), 1);
        assert_eq!(one.begin(a, 1, false, &[], &[]), Plan::Error(70));
        assert!(matches!(
            one.begin(b, 1, false, &[], &[]),
            Plan::Incremental { .. }
        ));
    }

    #[test]
    fn partitions_per_session_are_bounded() {
        let s = FetchSessions::default();
        let n = MAX_PARTITIONS_PER_SESSION as i32;
        let too_many: Vec<_> = (0..=n)
            .map(|p| (key("t", p), fetch(0), answer(0, 0)))
            .collect();
        assert_eq!(s.open(false, &too_many), INVALID_SESSION_ID);
        assert_eq!(s.open(false, &[]), INVALID_SESSION_ID, "no empty sessions");
        let id = s.open(false, &too_many[..n as usize]);
        assert_ne!(id, INVALID_SESSION_ID);
        // Growing it past the bound drops it.
        assert_eq!(
            s.begin(id, 1, false, &[(key("t", n), fetch(0))], &[]),
            Plan::Error(70)
        );
        assert!(s.is_empty());
    }

    #[test]
    fn topic_id_sessions_key_and_forget_by_id() {
        let s = FetchSessions::default();
        let id = s.open(
            true,
            &[
                (id_key(7, 0), fetch(0), answer(1, 0)),
                (id_key(7, 1), fetch(0), answer(1, 0)),
            ],
        );
        s.check_invariants();
        match s.begin(id, 1, true, &[], &[id_key(7, 0)]) {
            Plan::Incremental { partitions, .. } => {
                assert_eq!(partitions.len(), 1);
                assert_eq!(partitions[0].0, id_key(7, 1));
            }
            other => panic!("{other:?}"),
        }
        s.check_invariants();
    }

    #[test]
    fn epochs_wrap_to_one() {
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(41), 42);
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(FINAL_EPOCH), FINAL_EPOCH);
    }

    #[test]
    fn ids_stay_nonzero_and_distinct_after_wrapping() {
        let s = FetchSessions::default();
        s.inner.borrow_mut().last_id = i32::MAX - 1;
        let a = opened(&s, 1);
        let b = opened(&s, 1);
        assert_eq!((a, b), (i32::MAX, 1));
        s.check_invariants();
    }
}
