//! Consumer-group coordinator for Kafka's classic group protocol, as a pure state machine.
//!
//! Module map:
//! - [`coordinator`]: [`GroupCoordinator`], one per `__consumer_offsets` partition. Request
//!   handlers take kafka-protocol request structs plus the API version and return the response
//!   structs; timers are driven by [`GroupCoordinator::tick`] with a caller-supplied `now_ms`.
//! - `state`: the per-group and per-member data and the transitions between group states.
//! - [`records`]: the `__consumer_offsets` key/value codec (Kafka's own schemas).
//! - `txn_offsets`: TxnOffsetCommit: offsets held per producer id until its transaction's
//!   commit marker (materialized) or abort marker (dropped) reaches this partition.
//! - `tests`: scenario tests with a virtual clock and a seeded random-operation test.
//!
//! No I/O, no clocks, no async here: the broker owns the log and the sockets.
//!
//! # How the broker drives it
//! ```text
//!  request ──▶ join_group / sync_group ──▶ Reply::Now(resp) ─▶ send now
//!                                       └▶ Reply::Later     ─▶ park request under its Token
//!  every call and tick(now_ms) ──▶ take_output() ─▶ completions: (Token, Completion) ─▶ send
//!                                                └▶ records: append to the partition (group
//!                                                   metadata, expiry tombstones)
//!  offset_commit / delete_group / offset_delete ─▶ (records, response): append the records,
//!      send the response once they are durable, then apply(record) each one
//!  start / new leader ─▶ apply(record) for every record of the partition, in offset order
//! ```
//!
//! Group metadata records are emitted when a rebalance completes (leader's SyncGroup), when a
//! group becomes Empty and when a static member is replaced; the coordinator does not wait for
//! them to be durable before answering SyncGroup (Kafka does). Losing one costs the group a
//! rebalance after a coordinator failover, never a committed offset.

//! # Example: one consumer joins (KIP-394), syncs, commits
//! ```
//! use chronik_core::group::{GroupConfig, GroupCoordinator, Reply};
//! use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
//! use kafka_protocol::messages::{GroupId, JoinGroupRequest, SyncGroupRequest};
//! use kafka_protocol::protocol::StrBytes;
//!
//! let cfg = GroupConfig { initial_rebalance_delay_ms: 0, ..GroupConfig::default() };
//! let mut coord = GroupCoordinator::new(0, cfg);
//! let mut join = JoinGroupRequest::default();
//! join.group_id = GroupId(StrBytes::from_static_str("g"));
//! join.session_timeout_ms = 10_000;
//! join.rebalance_timeout_ms = 30_000;
//! join.protocol_type = StrBytes::from_static_str("consumer");
//! let mut p = JoinGroupRequestProtocol::default();
//! p.name = StrBytes::from_static_str("range");
//! join.protocols = vec![p];
//!
//! // First JoinGroup (v4+) without a member id: MEMBER_ID_REQUIRED with the id to use.
//! let Reply::Now(r) = coord.join_group(1, &join, 9, "client", "/10.0.0.1", 0) else { panic!() };
//! assert_eq!(r.error_code, 79);
//! join.member_id = r.member_id.clone();
//! // Second JoinGroup: the only member, so the rebalance completes at once: generation 1.
//! let Reply::Now(r) = coord.join_group(2, &join, 9, "client", "/10.0.0.1", 5) else { panic!() };
//! assert_eq!((r.error_code, r.generation_id), (0, 1));
//! assert_eq!(r.leader, r.member_id); // it leads: it computes the assignment
//!
//! let mut sync = SyncGroupRequest::default();
//! sync.group_id = join.group_id.clone();
//! sync.generation_id = 1;
//! sync.member_id = r.member_id.clone();
//! let Reply::Now(s) = coord.sync_group(3, &sync, 5, 10) else { panic!() };
//! assert_eq!(s.error_code, 0);
//! // The completed rebalance left a group metadata record for the broker to append.
//! let out = coord.take_output();
//! assert_eq!(out.records.len(), 1);
//! coord.check_invariants();
//! ```

pub mod consumer;
pub mod coordinator;
pub mod records;
mod state;
#[cfg(test)]
mod tests;
mod txn_offsets;

pub use coordinator::{Completion, GroupCoordinator, Output, Reply};
pub use records::{LogRecord, RecordError};
pub use state::GroupState;

/// The broker's id for a request that waits for a rebalance (JoinGroup, follower SyncGroup).
pub type Token = u64;

/// Hard bound on members (joined + awaiting a KIP-394 rejoin) in one group.
pub const MAX_MEMBERS_PER_GROUP: usize = 10_000;
/// Hard bound on groups one coordinator holds; beyond it new groups get COORDINATOR_NOT_AVAILABLE.
pub const MAX_GROUPS_PER_COORDINATOR: usize = 1_000_000;
/// Bound on group ids, member ids, instance ids, client ids and hosts we store: records keep them
/// as Kafka `string` (i16 length), so they must stay well below 32 767 bytes.
pub const MAX_ID_BYTES: usize = 4096;
/// Kafka's `NewMemberJoinTimeoutMs`: a brand-new member awaiting its first join response is
/// dropped after this long (it cannot heartbeat yet, and a client that gave up would linger).
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 300_000;
/// Bound on timer rounds per `tick`: a round can make further timers due at the same instant
/// (initial rebalance delay 0 → join completes → sync timer), but never more than a few.
pub const MAX_TIMER_ROUNDS: usize = 16;

/// Coordinator settings (Kafka broker config names in the field docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an Empty group waits
    /// for more members (extended by this much per new member, up to the rebalance timeout).
    pub initial_rebalance_delay_ms: i32,
    /// `offsets.retention.minutes` in ms: offsets of an Empty group expire this long after it
    /// became Empty.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
    /// `group.max.size`, capped by [`MAX_MEMBERS_PER_GROUP`].
    pub group_max_size: usize,
    /// `group.consumer.session.timeout.ms`: a KIP-848 member that does not heartbeat for this
    /// long is removed.
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`: how often KIP-848 members heartbeat.
    pub consumer_heartbeat_interval_ms: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            group_max_size: MAX_MEMBERS_PER_GROUP,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
        }
    }
}

/// Java's `String.hashCode()`: `h = 31 * h + c` over UTF-16 code units, wrapping.
pub fn java_string_hashcode(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition owning `group_id`, exactly as Kafka computes it:
/// `Utils.abs(groupId.hashCode) % n`, where `Utils.abs(Integer.MIN_VALUE) == 0` and otherwise
/// `Math.abs`. (Not `hash & 0x7fffffff`: that differs for every negative hash, e.g. "a"-free
/// ids hashing to -5 give 5 in Kafka but 2147483643 with the mask.)
pub fn partition_for_group(group_id: &str, partitions: i32) -> i32 {
    assert!(
        partitions > 0,
        "partition count must be positive, got {partitions}"
    );
    let h = java_string_hashcode(group_id);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions
}
