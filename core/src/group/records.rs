//! `__consumer_offsets` record codec: Kafka's own keys, and Kafka's own values for offsets and
//! group metadata, so the topic stays readable by Kafka tools (`kafka-console-consumer
//! --formatter ...GroupMetadataMessageFormatter`).
//!
//! Layouts (all integers big-endian, `string` = i16 length + UTF-8, `bytes` = i32 length + data,
//! nullable string length -1 = null):
//! - key version 0/1, OffsetCommitKey: `group string, topic string, partition i32`
//! - key version 2, GroupMetadataKey: `group string`
//! - key version 3, ConsumerGroupMetadataKey: `group string`. Value (Kafka's v0, flexible):
//!   `version i16, epoch i32, tagged-field count u8 (0)`.
//! - key versions 4–8, the rest of a KIP-848 consumer group, keyed exactly like Kafka's records:
//!   4 ConsumerGroupPartitionMetadataKey `group string`, 5 ConsumerGroupMemberMetadataKey
//!   `group string, member string`, 6 ConsumerGroupTargetAssignmentMetadataKey `group string`,
//!   7 ConsumerGroupTargetAssignmentMemberKey `group string, member string`,
//!   8 ConsumerGroupCurrentMemberAssignmentKey `group string, member string`.
//! - key version > 8: records of coordinators Chronik does not run (share groups, streams);
//!   skipped on replay.
//! - OffsetCommitValue v0/v2 `offset i64, metadata string, commit_ts i64`; v1 adds `expire_ts i64`;
//!   v3 = `offset i64, leader_epoch i32, metadata string, commit_ts i64`; v4 is v3 flexible.
//! - GroupMetadataValue `protocol_type string, generation i32, protocol string?, leader string?,
//!   current_state_ts i64 (v2+), members [member_id, group_instance_id? (v3+), client_id,
//!   client_host, rebalance_timeout i32 (v1+), session_timeout i32, subscription bytes,
//!   assignment bytes]`; v4 is v3 flexible.
//!
//! Values of keys 4–8 use Chronik's own layout, value version 0: Kafka's schemas are flexible
//! (compact strings, varint arrays) and some of their fields (rack-aware partition metadata,
//! classic-protocol members) do not exist here. A Kafka tool that decodes these values with
//! Kafka's schemas fails on them; everything else stays byte-compatible. Each value is `version i16 (0)`, its fields, then a tagged-field count `u8`
//! (0); `[T]` is an i32 count then the elements, `uuid` 16 bytes, `parts` is
//! `[topic_id uuid, partitions [i32]]`:
//! - 4 `topics [topic_id uuid, name string, partition_count i32]` (the subscribed topics);
//! - 5 `instance_id string?, rack_id string?, client_id string, client_host string,
//!   subscribed_topic_names [string], subscribed_topic_regex string?, rebalance_timeout_ms i32,
//!   server_assignor string?, left_static i8` (`left_static`, a static member that left with
//!   epoch -2 and keeps its place until its session ends, is Chronik's);
//! - 6 `assignment_epoch i32, assignor string` (the assignor is Chronik's addition);
//! - 7 `partitions parts` (the member's target);
//! - 8 `member_epoch i32, previous_member_epoch i32, state i8 (0 stable, 1 unrevoked partitions,
//!   2 unreleased partitions), assigned parts, pending_revocation parts`.
//!
//! Every length is checked against the bytes that remain before anything is allocated, so a
//! corrupt record costs an `Err`, never a panic or a huge allocation.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

/// One record of a `__consumer_offsets` partition. `value == None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// Why a `__consumer_offsets` record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record truncated: needed {needed} bytes at position {pos}, {remaining} remain")]
    Truncated {
        pos: usize,
        needed: usize,
        remaining: usize,
    },
    #[error("invalid length {len} at position {pos}")]
    BadLength { pos: usize, len: i64 },
    #[error("string at position {pos} is not UTF-8")]
    NotUtf8 { pos: usize },
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion { what: &'static str, version: i16 },
    #[error("{count} group members exceeds the bound {max}")]
    TooManyMembers { count: usize, max: usize },
    #[error("{trailing} trailing bytes after {what}")]
    Trailing { what: &'static str, trailing: usize },
    #[error("invalid {what} at position {pos}")]
    Invalid { what: &'static str, pos: usize },
}

pub type Result<T> = std::result::Result<T, RecordError>;

/// Upper bound on members decoded from one GroupMetadataValue; matches the coordinator's own bound.
pub const MAX_RECORD_MEMBERS: usize = super::MAX_MEMBERS_PER_GROUP;

pub const OFFSET_KEY_VERSION: i16 = 1;
pub const GROUP_KEY_VERSION: i16 = 2;
/// Kafka's ConsumerGroupMetadataKey (KIP-848): the group epoch of a consumer group.
pub const CONSUMER_GROUP_KEY_VERSION: i16 = 3;
/// Kafka's ConsumerGroupPartitionMetadataKey: the metadata of the topics a group subscribes to.
pub const CONSUMER_PARTITION_METADATA_KEY_VERSION: i16 = 4;
/// Kafka's ConsumerGroupMemberMetadataKey: one member's identity and subscription.
pub const CONSUMER_MEMBER_KEY_VERSION: i16 = 5;
/// Kafka's ConsumerGroupTargetAssignmentMetadataKey: the epoch of the target assignment.
pub const CONSUMER_TARGET_KEY_VERSION: i16 = 6;
/// Kafka's ConsumerGroupTargetAssignmentMemberKey: one member's target partitions.
pub const CONSUMER_TARGET_MEMBER_KEY_VERSION: i16 = 7;
/// Kafka's ConsumerGroupCurrentMemberAssignmentKey: one member's epoch and partitions.
pub const CONSUMER_ASSIGNMENT_KEY_VERSION: i16 = 8;
// `decode` dispatches keys 4–8 as one contiguous range.
const _: () = assert!(
    CONSUMER_PARTITION_METADATA_KEY_VERSION == CONSUMER_GROUP_KEY_VERSION + 1
        && CONSUMER_MEMBER_KEY_VERSION == CONSUMER_PARTITION_METADATA_KEY_VERSION + 1
        && CONSUMER_TARGET_KEY_VERSION == CONSUMER_MEMBER_KEY_VERSION + 1
        && CONSUMER_TARGET_MEMBER_KEY_VERSION == CONSUMER_TARGET_KEY_VERSION + 1
        && CONSUMER_ASSIGNMENT_KEY_VERSION == CONSUMER_TARGET_MEMBER_KEY_VERSION + 1
);
/// The only value version of keys 4–8 (Chronik's layout, see the module doc).
pub const CONSUMER_VALUE_VERSION: i16 = 0;
/// `state` of a current-assignment value (Chronik's numbering; see `consumer::MemberState`).
pub const MEMBER_STATE_STABLE: i8 = 0;
pub const MEMBER_STATE_UNREVOKED: i8 = 1;
pub const MEMBER_STATE_UNRELEASED: i8 = 2;
/// Written when the commit carries no explicit expiry (it then carries the leader epoch).
pub const OFFSET_VALUE_VERSION: i16 = 3;
/// Written when the commit carries an explicit expiry (OffsetCommit v2-v4 `retention_time_ms`).
pub const OFFSET_VALUE_VERSION_WITH_EXPIRY: i16 = 1;
pub const GROUP_VALUE_VERSION: i16 = 3;

/// A committed offset as stored (OffsetCommitValue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    /// -1 when unknown (value versions below 3 do not carry it).
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// -1 unless the client asked for an explicit retention (value v1).
    pub expire_timestamp_ms: i64,
}

/// One member as stored in GroupMetadataValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// Group membership as stored after each completed rebalance (GroupMetadataValue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

/// Partitions by topic id. Decoded values never hold a topic with no partitions.
pub type TopicPartitions = BTreeMap<Uuid, BTreeSet<i32>>;

/// Subscribed topics by name: (topic id, partition count).
pub type TopicMetadata = BTreeMap<String, (Uuid, i32)>;

/// A KIP-848 member as stored (key 5): everything but its epoch and partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberValue {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
    /// A static member that left with epoch -2, kept until its session ends.
    pub left_static: bool,
}

/// The target assignment's epoch and the assignor that computed it (key 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetAssignmentValue {
    pub assignment_epoch: i32,
    pub assignor: String,
}

/// Where a KIP-848 member is on its way to its target (key 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentAssignmentValue {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    /// One of the `MEMBER_STATE_*` constants.
    pub state: i8,
    pub assigned: TopicPartitions,
    pub pending_revocation: TopicPartitions,
}

/// A decoded record. Keys 3–8 are the parts of a KIP-848 consumer group; each is replayed
/// last-write-wins on its own, so they may come in any order (compaction moves them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    Group {
        group: String,
        value: Option<GroupValue>,
    },
    /// A KIP-848 consumer group's epoch (`None`: the group was deleted).
    ConsumerGroup { group: String, epoch: Option<i32> },
    /// The metadata of the topics a consumer group subscribes to (key 4).
    ConsumerPartitionMetadata {
        group: String,
        topics: Option<TopicMetadata>,
    },
    /// One member's metadata (key 5); `None`: the member is gone.
    ConsumerMember {
        group: String,
        member_id: String,
        value: Option<ConsumerMemberValue>,
    },
    /// The target assignment's epoch (key 6).
    ConsumerTargetAssignment {
        group: String,
        value: Option<TargetAssignmentValue>,
    },
    /// One member's target partitions (key 7).
    ConsumerTargetMember {
        group: String,
        member_id: String,
        partitions: Option<TopicPartitions>,
    },
    /// One member's epoch, state and partitions (key 8).
    ConsumerCurrentAssignment {
        group: String,
        member_id: String,
        value: Option<CurrentAssignmentValue>,
    },
    /// A key version this coordinator does not own (share groups, streams); replay skips it.
    Other { key_version: i16 },
}

impl Decoded {
    /// The group the record belongs to (`None` for key versions this coordinator skips).
    pub fn group_id(&self) -> Option<&str> {
        match self {
            Decoded::Offset { group, .. }
            | Decoded::Group { group, .. }
            | Decoded::ConsumerGroup { group, .. }
            | Decoded::ConsumerPartitionMetadata { group, .. }
            | Decoded::ConsumerMember { group, .. }
            | Decoded::ConsumerTargetAssignment { group, .. }
            | Decoded::ConsumerTargetMember { group, .. }
            | Decoded::ConsumerCurrentAssignment { group, .. } => Some(group),
            Decoded::Other { .. } => None,
        }
    }

    /// Whether the record is one of a KIP-848 consumer group's (key versions 3–8).
    pub fn is_consumer(&self) -> bool {
        matches!(
            self,
            Decoded::ConsumerGroup { .. }
                | Decoded::ConsumerPartitionMetadata { .. }
                | Decoded::ConsumerMember { .. }
                | Decoded::ConsumerTargetAssignment { .. }
                | Decoded::ConsumerTargetMember { .. }
                | Decoded::ConsumerCurrentAssignment { .. }
        )
    }

    /// Whether the record deletes its key.
    pub fn is_tombstone(&self) -> bool {
        match self {
            Decoded::Offset { value, .. } => value.is_none(),
            Decoded::Group { value, .. } => value.is_none(),
            Decoded::ConsumerGroup { epoch, .. } => epoch.is_none(),
            Decoded::ConsumerPartitionMetadata { topics, .. } => topics.is_none(),
            Decoded::ConsumerMember { value, .. } => value.is_none(),
            Decoded::ConsumerTargetAssignment { value, .. } => value.is_none(),
            Decoded::ConsumerTargetMember { partitions, .. } => partitions.is_none(),
            Decoded::ConsumerCurrentAssignment { value, .. } => value.is_none(),
            Decoded::Other { .. } => false,
        }
    }
}

// ---------------------------------------------------------------- encoding

fn put_str(buf: &mut BytesMut, s: &str) {
    // Kafka strings are at most i16::MAX bytes; the coordinator bounds ids and metadata below
    // that before a record is built, so this is a programmer error, not an input error.
    assert!(
        s.len() <= i16::MAX as usize,
        "string of {} bytes exceeds the i16 length",
        s.len()
    );
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

fn put_opt_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    assert!(b.len() <= i32::MAX as usize);
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut buf = BytesMut::with_capacity(2 + 2 + group.len() + 2 + topic.len() + 4);
    buf.put_i16(OFFSET_KEY_VERSION);
    put_str(&mut buf, group);
    put_str(&mut buf, topic);
    buf.put_i32(partition);
    buf.freeze()
}

pub fn group_key(group: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + group.len());
    buf.put_i16(GROUP_KEY_VERSION);
    put_str(&mut buf, group);
    buf.freeze()
}

pub fn encode_offset_value(v: &OffsetValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(32 + v.metadata.len());
    if v.expire_timestamp_ms >= 0 {
        buf.put_i16(OFFSET_VALUE_VERSION_WITH_EXPIRY);
        buf.put_i64(v.offset);
        put_str(&mut buf, &v.metadata);
        buf.put_i64(v.commit_timestamp_ms);
        buf.put_i64(v.expire_timestamp_ms);
    } else {
        buf.put_i16(OFFSET_VALUE_VERSION);
        buf.put_i64(v.offset);
        buf.put_i32(v.leader_epoch);
        put_str(&mut buf, &v.metadata);
        buf.put_i64(v.commit_timestamp_ms);
    }
    buf.freeze()
}

pub fn encode_group_value(v: &GroupValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(GROUP_VALUE_VERSION);
    put_str(&mut buf, &v.protocol_type);
    buf.put_i32(v.generation);
    put_opt_str(&mut buf, v.protocol.as_deref());
    put_opt_str(&mut buf, v.leader.as_deref());
    buf.put_i64(v.current_state_timestamp_ms);
    buf.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_str(&mut buf, &m.member_id);
        put_opt_str(&mut buf, m.group_instance_id.as_deref());
        put_str(&mut buf, &m.client_id);
        put_str(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

pub fn offset_commit_record(
    group: &str,
    topic: &str,
    partition: i32,
    v: &OffsetValue,
) -> LogRecord {
    LogRecord {
        key: offset_key(group, topic, partition),
        value: Some(encode_offset_value(v)),
    }
}

pub fn offset_tombstone(group: &str, topic: &str, partition: i32) -> LogRecord {
    LogRecord {
        key: offset_key(group, topic, partition),
        value: None,
    }
}

pub fn group_metadata_record(group: &str, v: &GroupValue) -> LogRecord {
    LogRecord {
        key: group_key(group),
        value: Some(encode_group_value(v)),
    }
}

pub fn group_tombstone(group: &str) -> LogRecord {
    LogRecord {
        key: group_key(group),
        value: None,
    }
}

pub fn consumer_group_key(group: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + group.len());
    buf.put_i16(CONSUMER_GROUP_KEY_VERSION);
    put_str(&mut buf, group);
    buf.freeze()
}

/// Kafka's ConsumerGroupMetadataValue v0 (flexible): the epoch, then no tagged fields.
pub fn consumer_group_record(group: &str, epoch: i32) -> LogRecord {
    let mut buf = BytesMut::with_capacity(7);
    buf.put_i16(0);
    buf.put_i32(epoch);
    buf.put_u8(0);
    LogRecord {
        key: consumer_group_key(group),
        value: Some(buf.freeze()),
    }
}

pub fn consumer_group_tombstone(group: &str) -> LogRecord {
    LogRecord {
        key: consumer_group_key(group),
        value: None,
    }
}

/// Key of a group-level KIP-848 record: 4 (topic metadata) or 6 (target assignment).
pub fn consumer_group_part_key(key_version: i16, group: &str) -> Bytes {
    assert!(
        key_version == CONSUMER_PARTITION_METADATA_KEY_VERSION
            || key_version == CONSUMER_TARGET_KEY_VERSION,
        "key version {key_version} is not keyed by group alone"
    );
    let mut buf = BytesMut::with_capacity(4 + group.len());
    buf.put_i16(key_version);
    put_str(&mut buf, group);
    buf.freeze()
}

/// Key of a per-member KIP-848 record: 5 (metadata), 7 (target) or 8 (current assignment).
pub fn consumer_member_part_key(key_version: i16, group: &str, member_id: &str) -> Bytes {
    assert!(
        [
            CONSUMER_MEMBER_KEY_VERSION,
            CONSUMER_TARGET_MEMBER_KEY_VERSION,
            CONSUMER_ASSIGNMENT_KEY_VERSION
        ]
        .contains(&key_version),
        "key version {key_version} is not keyed by member"
    );
    let mut buf = BytesMut::with_capacity(6 + group.len() + member_id.len());
    buf.put_i16(key_version);
    put_str(&mut buf, group);
    put_str(&mut buf, member_id);
    buf.freeze()
}

fn put_uuid(buf: &mut BytesMut, id: &Uuid) {
    buf.put_slice(id.as_bytes());
}

fn put_count(buf: &mut BytesMut, n: usize) {
    assert!(n <= i32::MAX as usize, "array of {n} elements");
    buf.put_i32(n as i32);
}

fn put_partitions(buf: &mut BytesMut, parts: &TopicPartitions) {
    put_count(buf, parts.len());
    for (topic, ps) in parts {
        put_uuid(buf, topic);
        put_count(buf, ps.len());
        for p in ps {
            buf.put_i32(*p);
        }
    }
}

/// Starts a key 4–8 value: its version.
fn consumer_value(capacity: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(capacity);
    buf.put_i16(CONSUMER_VALUE_VERSION);
    buf
}

/// Ends a key 4–8 value: no tagged fields.
fn end_consumer_value(mut buf: BytesMut) -> Bytes {
    buf.put_u8(0);
    buf.freeze()
}

/// Value of key 4.
pub fn encode_topic_metadata(topics: &TopicMetadata) -> Bytes {
    let mut buf = consumer_value(7 + topics.len() * 32);
    put_count(&mut buf, topics.len());
    for (name, (id, partitions)) in topics {
        put_uuid(&mut buf, id);
        put_str(&mut buf, name);
        buf.put_i32(*partitions);
    }
    end_consumer_value(buf)
}

/// Value of key 5.
pub fn encode_consumer_member(v: &ConsumerMemberValue) -> Bytes {
    let mut buf = consumer_value(64);
    put_opt_str(&mut buf, v.instance_id.as_deref());
    put_opt_str(&mut buf, v.rack_id.as_deref());
    put_str(&mut buf, &v.client_id);
    put_str(&mut buf, &v.client_host);
    put_count(&mut buf, v.subscribed_topic_names.len());
    for n in &v.subscribed_topic_names {
        put_str(&mut buf, n);
    }
    put_opt_str(&mut buf, v.subscribed_topic_regex.as_deref());
    buf.put_i32(v.rebalance_timeout_ms);
    put_opt_str(&mut buf, v.server_assignor.as_deref());
    buf.put_i8(i8::from(v.left_static));
    end_consumer_value(buf)
}

/// Value of key 6.
pub fn encode_target_assignment(v: &TargetAssignmentValue) -> Bytes {
    let mut buf = consumer_value(9 + v.assignor.len());
    buf.put_i32(v.assignment_epoch);
    put_str(&mut buf, &v.assignor);
    end_consumer_value(buf)
}

/// Value of key 7.
pub fn encode_target_member(partitions: &TopicPartitions) -> Bytes {
    let mut buf = consumer_value(7 + partitions.len() * 24);
    put_partitions(&mut buf, partitions);
    end_consumer_value(buf)
}

/// Value of key 8.
pub fn encode_current_assignment(v: &CurrentAssignmentValue) -> Bytes {
    let mut buf = consumer_value(20 + (v.assigned.len() + v.pending_revocation.len()) * 24);
    buf.put_i32(v.member_epoch);
    buf.put_i32(v.previous_member_epoch);
    buf.put_i8(v.state);
    put_partitions(&mut buf, &v.assigned);
    put_partitions(&mut buf, &v.pending_revocation);
    end_consumer_value(buf)
}

// ---------------------------------------------------------------- decoding

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(RecordError::Truncated {
                pos: self.pos,
                needed: n,
                remaining: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn i16(&mut self) -> Result<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i8(&mut self) -> Result<i8> {
        Ok(self.take(1)?[0] as i8)
    }

    fn uuid(&mut self) -> Result<Uuid> {
        let b = self.take(16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ok(Uuid::from_bytes(a))
    }

    /// An i32 array count of elements that take at least `min_bytes` each: checked against the
    /// bytes that remain, so a corrupt count fails here instead of sizing an allocation.
    fn count(&mut self, min_bytes: usize) -> Result<usize> {
        let pos = self.pos;
        let n = self.i32()?;
        if n < 0 || n as usize > self.remaining() / min_bytes {
            return Err(RecordError::BadLength { pos, len: n.into() });
        }
        Ok(n as usize)
    }

    /// A non-negative i32 (partition index or count).
    fn index(&mut self, what: &'static str) -> Result<i32> {
        let pos = self.pos;
        let v = self.i32()?;
        if v < 0 {
            return Err(RecordError::Invalid { what, pos });
        }
        Ok(v)
    }

    fn i64(&mut self) -> Result<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn uvarint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        // A u32 varint is at most 5 bytes; allow 10 (u64) and reject anything longer.
        for shift in (0..70).step_by(7) {
            let b = self.take(1)?[0];
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::BadLength {
            pos: self.pos,
            len: -1,
        })
    }

    fn utf8(&self, raw: &[u8], pos: usize) -> Result<String> {
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| RecordError::NotUtf8 { pos })
    }

    fn opt_str_with_len(&mut self, len: i64) -> Result<Option<String>> {
        if len == -1 {
            return Ok(None);
        }
        let pos = self.pos;
        if len < 0 {
            return Err(RecordError::BadLength { pos, len });
        }
        let raw = self.take(len as usize)?;
        self.utf8(raw, pos).map(Some)
    }

    fn opt_str(&mut self, compact: bool) -> Result<Option<String>> {
        let len = if compact {
            self.uvarint()? as i64 - 1
        } else {
            i64::from(self.i16()?)
        };
        self.opt_str_with_len(len)
    }

    fn str(&mut self, compact: bool) -> Result<String> {
        let pos = self.pos;
        self.opt_str(compact)?
            .ok_or(RecordError::BadLength { pos, len: -1 })
    }

    fn bytes(&mut self, compact: bool) -> Result<Bytes> {
        let pos = self.pos;
        let len = if compact {
            self.uvarint()? as i64 - 1
        } else {
            i64::from(self.i32()?)
        };
        if len < 0 {
            return Err(RecordError::BadLength { pos, len });
        }
        Ok(Bytes::copy_from_slice(self.take(len as usize)?))
    }

    fn array_len(&mut self, compact: bool) -> Result<usize> {
        let pos = self.pos;
        let len = if compact {
            self.uvarint()? as i64 - 1
        } else {
            i64::from(self.i32()?)
        };
        if len < 0 {
            return Err(RecordError::BadLength { pos, len });
        }
        Ok(len as usize)
    }

    fn skip_tagged_fields(&mut self) -> Result<()> {
        let count = self.uvarint()?;
        // Each tagged field takes at least 2 bytes, which bounds the loop by the input size.
        if count > self.remaining() as u64 / 2 {
            return Err(RecordError::BadLength {
                pos: self.pos,
                len: count as i64,
            });
        }
        for _ in 0..count {
            let _tag = self.uvarint()?;
            let size = self.uvarint()?;
            if size > self.remaining() as u64 {
                return Err(RecordError::BadLength {
                    pos: self.pos,
                    len: size as i64,
                });
            }
            self.take(size as usize)?;
        }
        Ok(())
    }

    fn finish(&self, what: &'static str) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            trailing => Err(RecordError::Trailing { what, trailing }),
        }
    }
}

fn decode_offset_value(raw: &[u8]) -> Result<OffsetValue> {
    let mut r = Reader::new(raw);
    let version = r.i16()?;
    let v = match version {
        0 | 2 => OffsetValue {
            offset: r.i64()?,
            leader_epoch: -1,
            metadata: r.str(false)?,
            commit_timestamp_ms: r.i64()?,
            expire_timestamp_ms: -1,
        },
        1 => OffsetValue {
            offset: r.i64()?,
            leader_epoch: -1,
            metadata: r.str(false)?,
            commit_timestamp_ms: r.i64()?,
            expire_timestamp_ms: r.i64()?,
        },
        3 | 4 => {
            let compact = version == 4;
            let v = OffsetValue {
                offset: r.i64()?,
                leader_epoch: r.i32()?,
                metadata: r.str(compact)?,
                commit_timestamp_ms: r.i64()?,
                expire_timestamp_ms: -1,
            };
            if compact {
                r.skip_tagged_fields()?;
            }
            v
        }
        _ => {
            return Err(RecordError::UnsupportedVersion {
                what: "OffsetCommitValue",
                version,
            })
        }
    };
    // Kafka readers ignore trailing bytes of a known version (fields added later are
    // "ignorable"); be equally lenient so records written by newer tools still load.
    Ok(v)
}

fn decode_group_value(raw: &[u8]) -> Result<GroupValue> {
    let mut r = Reader::new(raw);
    let version = r.i16()?;
    if !(0..=4).contains(&version) {
        return Err(RecordError::UnsupportedVersion {
            what: "GroupMetadataValue",
            version,
        });
    }
    let compact = version >= 4;
    let protocol_type = r.str(compact)?;
    let generation = r.i32()?;
    let protocol = r.opt_str(compact)?;
    let leader = r.opt_str(compact)?;
    let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.array_len(compact)?;
    // A member takes at least 20 bytes; the bound on members also caps the allocation.
    if count > MAX_RECORD_MEMBERS || count > r.remaining() / 20 {
        return Err(RecordError::TooManyMembers {
            count,
            max: MAX_RECORD_MEMBERS,
        });
    }
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let member_id = r.str(compact)?;
        let group_instance_id = if version >= 3 {
            r.opt_str(compact)?
        } else {
            None
        };
        let client_id = r.str(compact)?;
        let client_host = r.str(compact)?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let rebalance_timeout_ms = if rebalance_timeout_ms < 0 {
            session_timeout_ms
        } else {
            rebalance_timeout_ms
        };
        let subscription = r.bytes(compact)?;
        let assignment = r.bytes(compact)?;
        if compact {
            r.skip_tagged_fields()?;
        }
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    if compact {
        r.skip_tagged_fields()?;
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

/// Reads the version of a key 4–8 value.
fn consumer_value_reader<'a>(raw: &'a [u8], what: &'static str) -> Result<Reader<'a>> {
    let mut r = Reader::new(raw);
    let version = r.i16()?;
    if version != CONSUMER_VALUE_VERSION {
        return Err(RecordError::UnsupportedVersion { what, version });
    }
    Ok(r)
}

/// Ends a key 4–8 value: tagged fields (none are defined), then nothing.
fn finish_consumer_value(mut r: Reader<'_>, what: &'static str) -> Result<()> {
    r.skip_tagged_fields()?;
    r.finish(what)
}

fn read_partitions(r: &mut Reader<'_>) -> Result<TopicPartitions> {
    // A topic takes at least 20 bytes (id and count), a partition 4.
    let topics = r.count(20)?;
    let mut out = TopicPartitions::new();
    for _ in 0..topics {
        let id = r.uuid()?;
        let n = r.count(4)?;
        let mut ps = BTreeSet::new();
        for _ in 0..n {
            ps.insert(r.index("partition")?);
        }
        if !ps.is_empty() {
            out.entry(id).or_default().extend(ps);
        }
    }
    Ok(out)
}

fn decode_topic_metadata(raw: &[u8]) -> Result<TopicMetadata> {
    const WHAT: &str = "ConsumerGroupPartitionMetadataValue";
    let mut r = consumer_value_reader(raw, WHAT)?;
    // A topic takes at least 22 bytes: id, name length, partition count.
    let n = r.count(22)?;
    let mut topics = TopicMetadata::new();
    for _ in 0..n {
        let id = r.uuid()?;
        let name = r.str(false)?;
        let partitions = r.index("partition count")?;
        topics.insert(name, (id, partitions));
    }
    finish_consumer_value(r, WHAT)?;
    Ok(topics)
}

fn decode_consumer_member(raw: &[u8]) -> Result<ConsumerMemberValue> {
    const WHAT: &str = "ConsumerGroupMemberMetadataValue";
    let mut r = consumer_value_reader(raw, WHAT)?;
    let instance_id = r.opt_str(false)?;
    let rack_id = r.opt_str(false)?;
    let client_id = r.str(false)?;
    let client_host = r.str(false)?;
    let n = r.count(2)?;
    let mut subscribed_topic_names = Vec::with_capacity(n);
    for _ in 0..n {
        subscribed_topic_names.push(r.str(false)?);
    }
    let subscribed_topic_regex = r.opt_str(false)?;
    let rebalance_timeout_ms = r.i32()?;
    let server_assignor = r.opt_str(false)?;
    let pos = r.pos;
    let left_static = match r.i8()? {
        0 => false,
        1 => true,
        _ => {
            return Err(RecordError::Invalid {
                what: "left_static",
                pos,
            })
        }
    };
    finish_consumer_value(r, WHAT)?;
    Ok(ConsumerMemberValue {
        instance_id,
        rack_id,
        client_id,
        client_host,
        subscribed_topic_names,
        subscribed_topic_regex,
        rebalance_timeout_ms,
        server_assignor,
        left_static,
    })
}

fn decode_target_assignment(raw: &[u8]) -> Result<TargetAssignmentValue> {
    const WHAT: &str = "ConsumerGroupTargetAssignmentMetadataValue";
    let mut r = consumer_value_reader(raw, WHAT)?;
    let assignment_epoch = r.i32()?;
    let assignor = r.str(false)?;
    finish_consumer_value(r, WHAT)?;
    Ok(TargetAssignmentValue {
        assignment_epoch,
        assignor,
    })
}

fn decode_target_member(raw: &[u8]) -> Result<TopicPartitions> {
    const WHAT: &str = "ConsumerGroupTargetAssignmentMemberValue";
    let mut r = consumer_value_reader(raw, WHAT)?;
    let partitions = read_partitions(&mut r)?;
    finish_consumer_value(r, WHAT)?;
    Ok(partitions)
}

fn decode_current_assignment(raw: &[u8]) -> Result<CurrentAssignmentValue> {
    const WHAT: &str = "ConsumerGroupCurrentMemberAssignmentValue";
    let mut r = consumer_value_reader(raw, WHAT)?;
    let member_epoch = r.i32()?;
    let previous_member_epoch = r.i32()?;
    let pos = r.pos;
    let state = r.i8()?;
    if !(MEMBER_STATE_STABLE..=MEMBER_STATE_UNRELEASED).contains(&state) {
        return Err(RecordError::Invalid {
            what: "member state",
            pos,
        });
    }
    let assigned = read_partitions(&mut r)?;
    let pending_revocation = read_partitions(&mut r)?;
    finish_consumer_value(r, WHAT)?;
    Ok(CurrentAssignmentValue {
        member_epoch,
        previous_member_epoch,
        state,
        assigned,
        pending_revocation,
    })
}

/// Decodes the key of a group-level KIP-848 record (the key version already read).
fn group_part_key(mut r: Reader<'_>, what: &'static str) -> Result<String> {
    let group = r.str(false)?;
    r.finish(what)?;
    Ok(group)
}

/// Decodes the key of a per-member KIP-848 record: (group, member id).
fn member_part_key(mut r: Reader<'_>, what: &'static str) -> Result<(String, String)> {
    let group = r.str(false)?;
    let member_id = r.str(false)?;
    r.finish(what)?;
    Ok((group, member_id))
}

/// Decodes keys 4–8: the parts of a KIP-848 consumer group beyond its epoch.
fn decode_consumer_part(key_version: i16, r: Reader<'_>, value: Option<&[u8]>) -> Result<Decoded> {
    Ok(match key_version {
        CONSUMER_PARTITION_METADATA_KEY_VERSION => Decoded::ConsumerPartitionMetadata {
            group: group_part_key(r, "ConsumerGroupPartitionMetadataKey")?,
            topics: value.map(decode_topic_metadata).transpose()?,
        },
        CONSUMER_MEMBER_KEY_VERSION => {
            let (group, member_id) = member_part_key(r, "ConsumerGroupMemberMetadataKey")?;
            Decoded::ConsumerMember {
                group,
                member_id,
                value: value.map(decode_consumer_member).transpose()?,
            }
        }
        CONSUMER_TARGET_KEY_VERSION => Decoded::ConsumerTargetAssignment {
            group: group_part_key(r, "ConsumerGroupTargetAssignmentMetadataKey")?,
            value: value.map(decode_target_assignment).transpose()?,
        },
        CONSUMER_TARGET_MEMBER_KEY_VERSION => {
            let (group, member_id) = member_part_key(r, "ConsumerGroupTargetAssignmentMemberKey")?;
            Decoded::ConsumerTargetMember {
                group,
                member_id,
                partitions: value.map(decode_target_member).transpose()?,
            }
        }
        CONSUMER_ASSIGNMENT_KEY_VERSION => {
            let (group, member_id) = member_part_key(r, "ConsumerGroupCurrentMemberAssignmentKey")?;
            Decoded::ConsumerCurrentAssignment {
                group,
                member_id,
                value: value.map(decode_current_assignment).transpose()?,
            }
        }
        v => unreachable!("key version {v} is not a KIP-848 part"),
    })
}

/// Decode one record of the `__consumer_offsets` topic.
pub fn decode(rec: &LogRecord) -> Result<Decoded> {
    let mut r = Reader::new(&rec.key);
    let key_version = r.i16()?;
    match key_version {
        0 | 1 => {
            let group = r.str(false)?;
            let topic = r.str(false)?;
            let partition = r.i32()?;
            r.finish("OffsetCommitKey")?;
            let value = rec.value.as_deref().map(decode_offset_value).transpose()?;
            Ok(Decoded::Offset {
                group,
                topic,
                partition,
                value,
            })
        }
        2 => {
            let group = r.str(false)?;
            r.finish("GroupMetadataKey")?;
            let value = rec.value.as_deref().map(decode_group_value).transpose()?;
            Ok(Decoded::Group { group, value })
        }
        CONSUMER_GROUP_KEY_VERSION => {
            let group = r.str(false)?;
            r.finish("ConsumerGroupMetadataKey")?;
            let epoch = match rec.value.as_deref() {
                None => None,
                Some(v) => {
                    let mut vr = Reader::new(v);
                    let _version = vr.i16()?;
                    Some(vr.i32()?)
                }
            };
            Ok(Decoded::ConsumerGroup { group, epoch })
        }
        CONSUMER_PARTITION_METADATA_KEY_VERSION..=CONSUMER_ASSIGNMENT_KEY_VERSION => {
            decode_consumer_part(key_version, r, rec.value.as_deref())
        }
        v if v > CONSUMER_ASSIGNMENT_KEY_VERSION => Ok(Decoded::Other { key_version: v }),
        v => Err(RecordError::UnsupportedVersion {
            what: "record key",
            version: v,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_group() -> GroupValue {
        GroupValue {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp_ms: 1234,
            members: vec![
                MemberValue {
                    member_id: "m1".into(),
                    group_instance_id: Some("i1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 60_000,
                    session_timeout_ms: 10_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                },
                MemberValue {
                    member_id: "m2".into(),
                    group_instance_id: None,
                    client_id: "c2".into(),
                    client_host: "/10.0.0.2".into(),
                    rebalance_timeout_ms: 30_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::new(),
                    assignment: Bytes::new(),
                },
            ],
        }
    }

    #[test]
    fn group_value_round_trip() {
        let v = sample_group();
        let rec = group_metadata_record("g", &v);
        assert_eq!(
            decode(&rec).unwrap(),
            Decoded::Group {
                group: "g".into(),
                value: Some(v)
            }
        );
        assert_eq!(
            decode(&group_tombstone("g")).unwrap(),
            Decoded::Group {
                group: "g".into(),
                value: None
            }
        );
    }

    #[test]
    fn offset_value_round_trip_both_versions() {
        let v3 = OffsetValue {
            offset: 42,
            leader_epoch: 5,
            metadata: "meta".into(),
            commit_timestamp_ms: 99,
            expire_timestamp_ms: -1,
        };
        let rec = offset_commit_record("g", "t", 3, &v3);
        assert_eq!(rec.value.as_ref().unwrap()[..2], 3i16.to_be_bytes());
        assert_eq!(
            decode(&rec).unwrap(),
            Decoded::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(v3)
            }
        );
        let v1 = OffsetValue {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 10,
            expire_timestamp_ms: 20,
        };
        let rec = offset_commit_record("g", "t", 0, &v1);
        assert_eq!(rec.value.as_ref().unwrap()[..2], 1i16.to_be_bytes());
        match decode(&rec).unwrap() {
            Decoded::Offset { value: Some(v), .. } => assert_eq!(v, v1),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Bytes taken from Kafka's layout by hand: key v1 ("g","t",0), value v3.
    #[test]
    fn matches_kafka_layout_byte_for_byte() {
        let key = offset_key("g", "t", 0);
        assert_eq!(&key[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 0]);
        let v = encode_offset_value(&OffsetValue {
            offset: 1,
            leader_epoch: 2,
            metadata: "m".into(),
            commit_timestamp_ms: 3,
            expire_timestamp_ms: -1,
        });
        assert_eq!(
            &v[..],
            &[0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, b'm', 0, 0, 0, 0, 0, 0, 0, 3]
        );
        assert_eq!(&group_key("g")[..], &[0, 2, 0, 1, b'g']);
    }

    #[test]
    fn flexible_v4_values_decode() {
        // OffsetCommitValue v4: offset, epoch, compact metadata "ab", commit ts, 1 tagged field.
        let mut b = BytesMut::new();
        b.put_i16(4);
        b.put_i64(9);
        b.put_i32(1);
        b.put_u8(3);
        b.put_slice(b"ab");
        b.put_i64(77);
        b.put_u8(1); // one tagged field
        b.put_u8(0); // tag 0 (topic id)
        b.put_u8(16);
        b.put_slice(&[0u8; 16]);
        let rec = LogRecord {
            key: offset_key("g", "t", 1),
            value: Some(b.freeze()),
        };
        match decode(&rec).unwrap() {
            Decoded::Offset { value: Some(v), .. } => {
                assert_eq!(
                    (
                        v.offset,
                        v.leader_epoch,
                        v.metadata.as_str(),
                        v.commit_timestamp_ms
                    ),
                    (9, 1, "ab", 77)
                )
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_key_versions_are_skipped_and_bad_ones_rejected() {
        // Share-group and streams records (9+) belong to coordinators Chronik does not run.
        for v in [9u8, 12, 17] {
            let rec = LogRecord {
                key: Bytes::from(vec![0, v, 1, 2]),
                value: Some(Bytes::from_static(b"whatever")),
            };
            assert_eq!(
                decode(&rec).unwrap(),
                Decoded::Other {
                    key_version: v.into()
                }
            );
        }
        let rec = LogRecord {
            key: Bytes::from_static(&[0xff, 0xff]),
            value: None,
        };
        assert!(decode(&rec).is_err());
    }

    /// Every truncation and a sweep of single-byte corruptions must return, never panic.
    #[test]
    fn truncated_and_corrupt_inputs_fail_cleanly() {
        let rec = group_metadata_record("group", &sample_group());
        let value = rec.value.clone().unwrap();
        for cut in 0..value.len() {
            let r = LogRecord {
                key: rec.key.clone(),
                value: Some(value.slice(..cut)),
            };
            assert!(decode(&r).is_err(), "cut at {cut} decoded");
        }
        for i in 0..value.len() {
            for x in [0x00u8, 0x7f, 0x80, 0xff] {
                let mut v = value.to_vec();
                v[i] = x;
                let _ = decode(&LogRecord {
                    key: rec.key.clone(),
                    value: Some(Bytes::from(v)),
                });
            }
        }
        let key = offset_key("g", "t", 1);
        for cut in 0..key.len() {
            assert!(decode(&LogRecord {
                key: key.slice(..cut),
                value: None
            })
            .is_err());
        }
    }

    // ------------------------------------------------------------ KIP-848 records (keys 4–8)

    fn parts(entries: &[(u128, &[i32])]) -> TopicPartitions {
        entries
            .iter()
            .map(|(t, ps)| (Uuid::from_u128(*t), ps.iter().copied().collect()))
            .collect()
    }

    fn sample_member() -> ConsumerMemberValue {
        ConsumerMemberValue {
            instance_id: Some("i-1".into()),
            rack_id: None,
            client_id: "client".into(),
            client_host: "/10.0.0.1".into(),
            subscribed_topic_names: vec!["a".into(), "b".into()],
            subscribed_topic_regex: Some("x.*".into()),
            rebalance_timeout_ms: 30_000,
            server_assignor: Some("range".into()),
            left_static: true,
        }
    }

    fn sample_assignment() -> CurrentAssignmentValue {
        CurrentAssignmentValue {
            member_epoch: 7,
            previous_member_epoch: 5,
            state: MEMBER_STATE_UNREVOKED,
            assigned: parts(&[(1, &[0, 2]), (2, &[4])]),
            pending_revocation: parts(&[(1, &[1])]),
        }
    }

    /// One valid record of every KIP-848 key 4–8, with what it must decode to.
    fn consumer_samples() -> Vec<(LogRecord, Decoded)> {
        let topics: TopicMetadata = [
            ("a".to_owned(), (Uuid::from_u128(1), 3)),
            ("b".to_owned(), (Uuid::from_u128(2), 5)),
        ]
        .into();
        let target = TargetAssignmentValue {
            assignment_epoch: 9,
            assignor: "uniform".into(),
        };
        let member_key = |v| consumer_member_part_key(v, "g", "m-1");
        vec![
            (
                LogRecord {
                    key: consumer_group_part_key(CONSUMER_PARTITION_METADATA_KEY_VERSION, "g"),
                    value: Some(encode_topic_metadata(&topics)),
                },
                Decoded::ConsumerPartitionMetadata {
                    group: "g".into(),
                    topics: Some(topics),
                },
            ),
            (
                LogRecord {
                    key: member_key(CONSUMER_MEMBER_KEY_VERSION),
                    value: Some(encode_consumer_member(&sample_member())),
                },
                Decoded::ConsumerMember {
                    group: "g".into(),
                    member_id: "m-1".into(),
                    value: Some(sample_member()),
                },
            ),
            (
                LogRecord {
                    key: consumer_group_part_key(CONSUMER_TARGET_KEY_VERSION, "g"),
                    value: Some(encode_target_assignment(&target)),
                },
                Decoded::ConsumerTargetAssignment {
                    group: "g".into(),
                    value: Some(target),
                },
            ),
            (
                LogRecord {
                    key: member_key(CONSUMER_TARGET_MEMBER_KEY_VERSION),
                    value: Some(encode_target_member(&parts(&[(1, &[0, 1, 2])]))),
                },
                Decoded::ConsumerTargetMember {
                    group: "g".into(),
                    member_id: "m-1".into(),
                    partitions: Some(parts(&[(1, &[0, 1, 2])])),
                },
            ),
            (
                LogRecord {
                    key: member_key(CONSUMER_ASSIGNMENT_KEY_VERSION),
                    value: Some(encode_current_assignment(&sample_assignment())),
                },
                Decoded::ConsumerCurrentAssignment {
                    group: "g".into(),
                    member_id: "m-1".into(),
                    value: Some(sample_assignment()),
                },
            ),
        ]
    }

    #[test]
    fn consumer_records_round_trip() {
        for (rec, want) in consumer_samples() {
            assert_eq!(decode(&rec).unwrap(), want);
            assert!(!want.is_tombstone());
            assert_eq!(want.group_id(), Some("g"));
            let tomb = decode(&LogRecord {
                key: rec.key.clone(),
                value: None,
            })
            .unwrap();
            assert!(tomb.is_tombstone(), "{tomb:?}");
        }
        // Empty and null fields survive too.
        let bare = ConsumerMemberValue {
            instance_id: None,
            rack_id: Some("r".into()),
            client_id: String::new(),
            client_host: String::new(),
            subscribed_topic_names: Vec::new(),
            subscribed_topic_regex: None,
            rebalance_timeout_ms: -1,
            server_assignor: None,
            left_static: false,
        };
        let rec = LogRecord {
            key: consumer_member_part_key(CONSUMER_MEMBER_KEY_VERSION, "g", "m"),
            value: Some(encode_consumer_member(&bare)),
        };
        match decode(&rec).unwrap() {
            Decoded::ConsumerMember { value, .. } => assert_eq!(value, Some(bare)),
            other => panic!("unexpected {other:?}"),
        }
        let empty = CurrentAssignmentValue {
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MEMBER_STATE_STABLE,
            assigned: TopicPartitions::new(),
            pending_revocation: TopicPartitions::new(),
        };
        let v = encode_current_assignment(&empty);
        assert_eq!(decode_current_assignment(&v).unwrap(), empty);
        assert_eq!(
            decode_topic_metadata(&encode_topic_metadata(&TopicMetadata::new())).unwrap(),
            TopicMetadata::new()
        );
    }

    /// Keys follow Kafka's layout: version, group, member id, as plain strings.
    #[test]
    fn consumer_keys_match_kafka_layout() {
        assert_eq!(
            &consumer_member_part_key(CONSUMER_MEMBER_KEY_VERSION, "g", "m")[..],
            &[0, 5, 0, 1, b'g', 0, 1, b'm']
        );
        assert_eq!(
            &consumer_group_part_key(CONSUMER_TARGET_KEY_VERSION, "g")[..],
            &[0, 6, 0, 1, b'g']
        );
        // Key 6's value: version 0, epoch 9, "u", no tagged fields.
        let v = encode_target_assignment(&TargetAssignmentValue {
            assignment_epoch: 9,
            assignor: "u".into(),
        });
        assert_eq!(&v[..], &[0, 0, 0, 0, 0, 9, 0, 1, b'u', 0]);
        // Trailing bytes in the key are refused.
        let mut key = consumer_member_part_key(CONSUMER_ASSIGNMENT_KEY_VERSION, "g", "m").to_vec();
        key.push(0);
        assert!(decode(&LogRecord {
            key: Bytes::from(key),
            value: None
        })
        .is_err());
    }

    /// Every strict prefix of every KIP-848 value and key fails; single-byte corruptions and
    /// appended garbage return (most fail), never panic.
    #[test]
    fn truncated_and_corrupt_consumer_records_fail_cleanly() {
        for (rec, _) in consumer_samples() {
            let value = rec.value.clone().unwrap();
            for cut in 0..value.len() {
                let r = LogRecord {
                    key: rec.key.clone(),
                    value: Some(value.slice(..cut)),
                };
                assert!(decode(&r).is_err(), "{:?}: cut at {cut} decoded", rec.key);
            }
            for cut in 0..rec.key.len() {
                let r = LogRecord {
                    key: rec.key.slice(..cut),
                    value: rec.value.clone(),
                };
                assert!(decode(&r).is_err(), "key cut at {cut} decoded");
            }
            let mut long = value.to_vec();
            long.push(0);
            assert!(decode(&LogRecord {
                key: rec.key.clone(),
                value: Some(Bytes::from(long)),
            })
            .is_err());
            for i in 0..value.len() {
                for x in [0x00u8, 0x01, 0x7f, 0x80, 0xff] {
                    let mut v = value.to_vec();
                    v[i] = x;
                    let _ = decode(&LogRecord {
                        key: rec.key.clone(),
                        value: Some(Bytes::from(v)),
                    });
                }
            }
        }
    }

    /// Values that are well-formed bytes but not valid records.
    #[test]
    fn invalid_consumer_values_are_rejected() {
        let key = consumer_member_part_key(CONSUMER_ASSIGNMENT_KEY_VERSION, "g", "m");
        let mut bad_state = sample_assignment();
        bad_state.state = 3;
        let mut bad_partition = sample_assignment();
        bad_partition.assigned = parts(&[(1, &[-1])]);
        for v in [bad_state, bad_partition] {
            let rec = LogRecord {
                key: key.clone(),
                value: Some(encode_current_assignment(&v)),
            };
            assert!(
                matches!(decode(&rec), Err(RecordError::Invalid { .. })),
                "{v:?}"
            );
        }
        // A value version from the future.
        let mut v = encode_target_member(&parts(&[(1, &[0])])).to_vec();
        v[1] = 1;
        let rec = LogRecord {
            key: consumer_member_part_key(CONSUMER_TARGET_MEMBER_KEY_VERSION, "g", "m"),
            value: Some(Bytes::from(v)),
        };
        assert!(matches!(
            decode(&rec),
            Err(RecordError::UnsupportedVersion { .. })
        ));
        // A count far beyond the bytes that follow fails before allocating.
        let mut v = BytesMut::new();
        v.put_i16(0);
        v.put_i32(i32::MAX);
        let rec = LogRecord {
            key: consumer_group_part_key(CONSUMER_PARTITION_METADATA_KEY_VERSION, "g"),
            value: Some(v.freeze()),
        };
        assert!(matches!(decode(&rec), Err(RecordError::BadLength { .. })));
    }
}
