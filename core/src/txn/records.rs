//! `__transaction_state` record codec.
//!
//! Layouts (big-endian, `string` = i16 length + UTF-8):
//! - key (Kafka's TransactionLogKey v0): `version i16 = 0, transactional_id string`
//! - value: Kafka's TransactionLogValue v0 — `version i16 = 0, producer_id i64,
//!   producer_epoch i16, transaction_timeout_ms i32, transaction_status i8,
//!   transaction_partitions [topic string, partition_ids [i32]], last_update_timestamp_ms i64,
//!   start_timestamp_ms i64` — followed by Chronik's own `previous_producer_id i64,
//!   previous_producer_epoch i16` (KIP-360 retries must survive a restart, which Kafka keeps in
//!   its flexible v1 tagged fields).
//! - a null value (tombstone) forgets the transactional id.
//!
//! Every count is checked against the bytes that remain before anything is allocated.

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};

use super::{TxnMeta, TxnState, MAX_PARTITIONS_PER_TXN};
use crate::group::{LogRecord, RecordError};

pub const KEY_VERSION: i16 = 0;
pub const VALUE_VERSION: i16 = 0;

type Result<T> = std::result::Result<T, RecordError>;

fn put_str(buf: &mut BytesMut, s: &str) {
    // Ids and topic names are bounded (MAX_ID_BYTES) before a record is built.
    assert!(s.len() <= i16::MAX as usize, "string of {} bytes", s.len());
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

pub fn key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + transactional_id.len());
    b.put_i16(KEY_VERSION);
    put_str(&mut b, transactional_id);
    b.freeze()
}

pub fn encode_value(m: &TxnMeta) -> Bytes {
    let mut b = BytesMut::with_capacity(64 + m.partitions.len() * 16);
    b.put_i16(VALUE_VERSION);
    b.put_i64(m.producer_id);
    b.put_i16(m.producer_epoch);
    b.put_i32(m.timeout_ms);
    b.put_i8(m.state as i8);
    // Group partitions by topic (the set is ordered by topic, then partition).
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (t, p) in &m.partitions {
        match topics.last_mut() {
            Some((name, ps)) if name == t => ps.push(*p),
            _ => topics.push((t, vec![*p])),
        }
    }
    b.put_i32(topics.len() as i32);
    for (t, ps) in topics {
        put_str(&mut b, t);
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(p);
        }
    }
    b.put_i64(m.last_update_ms);
    b.put_i64(m.start_ms);
    b.put_i64(m.last_producer_id);
    b.put_i16(m.last_producer_epoch);
    b.freeze()
}

pub fn record(m: &TxnMeta) -> LogRecord {
    LogRecord {
        key: key(&m.transactional_id),
        value: Some(encode_value(m)),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let remaining = self.buf.len() - self.pos;
        if n > remaining {
            return Err(RecordError::Truncated {
                pos: self.pos,
                needed: n,
                remaining,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn i8(&mut self) -> Result<i8> {
        Ok(self.take(1)?[0] as i8)
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
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_be_bytes(a))
    }
    fn str(&mut self) -> Result<String> {
        let pos = self.pos;
        let len = self.i16()?;
        if len < 0 {
            return Err(RecordError::BadLength {
                pos,
                len: len.into(),
            });
        }
        let raw = self.take(len as usize)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| RecordError::NotUtf8 { pos })
    }
    /// A count of items of at least `min_item_bytes` each, checked against what remains.
    fn count(&mut self, min_item_bytes: usize, max: usize) -> Result<usize> {
        let pos = self.pos;
        let n = self.i32()?;
        let remaining = self.buf.len() - self.pos;
        if n < 0 || n as usize > max || (n as usize).saturating_mul(min_item_bytes) > remaining {
            return Err(RecordError::BadLength { pos, len: n.into() });
        }
        Ok(n as usize)
    }
    fn finish(&self, what: &'static str) -> Result<()> {
        let trailing = self.buf.len() - self.pos;
        if trailing != 0 {
            return Err(RecordError::Trailing { what, trailing });
        }
        Ok(())
    }
}

/// Decodes a record: the transactional id and its metadata (`None` for a tombstone).
pub fn decode(rec: &LogRecord) -> Result<(String, Option<TxnMeta>)> {
    let mut k = Reader {
        buf: &rec.key,
        pos: 0,
    };
    let version = k.i16()?;
    if version != KEY_VERSION {
        return Err(RecordError::UnsupportedVersion {
            what: "transaction key",
            version,
        });
    }
    let id = k.str()?;
    k.finish("transaction key")?;
    let Some(value) = &rec.value else {
        return Ok((id, None));
    };
    let mut r = Reader { buf: value, pos: 0 };
    let version = r.i16()?;
    if version != VALUE_VERSION {
        return Err(RecordError::UnsupportedVersion {
            what: "transaction value",
            version,
        });
    }
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let status = r.i8()?;
    let state = TxnState::from_i8(status).ok_or(RecordError::UnsupportedVersion {
        what: "transaction status",
        version: status.into(),
    })?;
    let mut partitions = BTreeSet::new();
    let topics = r.count(6, MAX_PARTITIONS_PER_TXN)?;
    for _ in 0..topics {
        let t = r.str()?;
        let n = r.count(4, MAX_PARTITIONS_PER_TXN)?;
        for _ in 0..n {
            partitions.insert((t.clone(), r.i32()?));
        }
        if partitions.len() > MAX_PARTITIONS_PER_TXN {
            return Err(RecordError::BadLength {
                pos: r.pos,
                len: partitions.len() as i64,
            });
        }
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    let last_producer_id = r.i64()?;
    let last_producer_epoch = r.i16()?;
    r.finish("transaction value")?;
    Ok((
        id.clone(),
        Some(TxnMeta {
            transactional_id: id,
            producer_id,
            last_producer_id,
            producer_epoch,
            last_producer_epoch,
            timeout_ms,
            state,
            partitions,
            start_ms,
            last_update_ms,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TxnMeta {
        let mut m = TxnMeta::new("tx-1".into(), 42, 60_000, 7);
        m.producer_epoch = 3;
        m.last_producer_epoch = 2;
        m.state = TxnState::PrepareCommit;
        m.partitions.insert(("a".into(), 1));
        m.partitions.insert(("a".into(), 0));
        m.partitions.insert(("b".into(), 5));
        m.start_ms = 5;
        m
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let (id, back) = decode(&record(&m)).unwrap();
        assert_eq!(id, "tx-1");
        assert_eq!(back.unwrap(), m);
        let tomb = LogRecord {
            key: key("x"),
            value: None,
        };
        assert_eq!(decode(&tomb).unwrap(), ("x".to_string(), None));
    }

    #[test]
    fn every_truncation_and_a_huge_count_are_errors() {
        let rec = record(&sample());
        let v = rec.value.clone().unwrap();
        for n in 0..v.len() {
            let r = LogRecord {
                key: rec.key.clone(),
                value: Some(v.slice(..n)),
            };
            assert!(decode(&r).is_err(), "prefix of {n} bytes decoded");
        }
        // Topic count claims two billion entries: refused before allocating.
        let mut bad = BytesMut::from(&v[..]);
        bad[17..21].copy_from_slice(&i32::MAX.to_be_bytes());
        let r = LogRecord {
            key: rec.key.clone(),
            value: Some(bad.freeze()),
        };
        assert!(matches!(decode(&r), Err(RecordError::BadLength { .. })));
    }
}
