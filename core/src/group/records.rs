//! `__consumer_offsets` record codec: Kafka's own key/value schemas, so the topic stays readable by
//! Kafka tools (`kafka-console-consumer --formatter ...GroupMetadataMessageFormatter`).
//!
//! Layouts (all integers big-endian, `string` = i16 length + UTF-8, `bytes` = i32 length + data,
//! nullable string length -1 = null):
//! - key version 0/1, OffsetCommitKey: `group string, topic string, partition i32`
//! - key version 2, GroupMetadataKey: `group string`
//! - key version >= 3: records of newer coordinator types (KIP-848); skipped on replay.
//! - OffsetCommitValue v0/v2 `offset i64, metadata string, commit_ts i64`; v1 adds `expire_ts i64`;
//!   v3 = `offset i64, leader_epoch i32, metadata string, commit_ts i64`; v4 is v3 flexible.
//! - GroupMetadataValue `protocol_type string, generation i32, protocol string?, leader string?,
//!   current_state_ts i64 (v2+), members [member_id, group_instance_id? (v3+), client_id,
//!   client_host, rebalance_timeout i32 (v1+), session_timeout i32, subscription bytes,
//!   assignment bytes]`; v4 is v3 flexible.
//!
//! Every length is checked against the bytes that remain before anything is allocated, so a
//! corrupt record costs an `Err`, never a panic or a huge allocation.

use bytes::{BufMut, Bytes, BytesMut};

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
}

pub type Result<T> = std::result::Result<T, RecordError>;

/// Upper bound on members decoded from one GroupMetadataValue; matches the coordinator's own bound.
pub const MAX_RECORD_MEMBERS: usize = super::MAX_MEMBERS_PER_GROUP;

pub const OFFSET_KEY_VERSION: i16 = 1;
pub const GROUP_KEY_VERSION: i16 = 2;
/// Kafka's ConsumerGroupMetadataKey (KIP-848): the group epoch of a consumer group.
pub const CONSUMER_GROUP_KEY_VERSION: i16 = 3;
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

/// A decoded record.
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
    /// A key version this coordinator does not own (e.g. KIP-848 records); replay skips it.
    Other { key_version: i16 },
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
        v if v > CONSUMER_GROUP_KEY_VERSION => Ok(Decoded::Other { key_version: v }),
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
        let rec = LogRecord {
            key: Bytes::from_static(&[0, 5, 1, 2]),
            value: None,
        };
        assert_eq!(decode(&rec).unwrap(), Decoded::Other { key_version: 5 });
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
}
