//! Record-level access to v2 batches of any codec, for the few broker paths that must see keys:
//! log compaction and the "compacted topics need keys" produce check. The hot path never comes
//! here (see [`crate::batch`]).
//!
//! A record on the wire (all varints zig-zag):
//!
//! ```text
//! length | attributes i8 | timestampDelta | offsetDelta | keyLen key | valueLen value |
//! headerCount [hKeyLen hKey hValueLen hValue]...
//! ```
//!
//! Records are self-delimiting, so a rebuilt batch keeps each kept record's bytes verbatim
//! (offset delta, timestamp delta and headers unchanged) and only the batch header and the
//! (re-compressed) record set change. Worked example: a batch at base offset 100 with
//! `lastOffsetDelta = 4` whose records 101 and 103 are kept becomes a batch with
//! `recordsCount = 2`, still `baseOffset = 100` and `lastOffsetDelta = 4`, so the kept records
//! are still offsets 101 and 103 and the next batch still starts at 105 (Kafka keeps the
//! original last offset the same way, for idempotent producers' state).

use std::borrow::Cow;

use crate::batch::{self, read_varint, BatchError, COMPRESSION_MASK, CRC_START, HEADER_BYTES};
use crate::codec::{self, CodecError, Compression};

/// Most headers one record may carry (each costs at least 2 bytes, so this only bounds the
/// loop more tightly than the record length does).
pub const MAX_HEADERS_PER_RECORD: i64 = 1 << 16;

/// One record, borrowed from a (decompressed) record set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The whole record including its length prefix: what a rebuilt batch copies.
    pub raw: &'a [u8],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordsError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("malformed record {index}: {reason}")]
    Malformed { index: usize, reason: &'static str },
}

/// The batch's record set, decompressed (borrowed when the batch is uncompressed). At most
/// `max_bytes` of decompressed output.
pub fn record_set(b: &[u8], max_bytes: usize) -> Result<Cow<'_, [u8]>, RecordsError> {
    let h = batch::header(b)?;
    let codec = Compression::from_attributes(h.attributes.get())?;
    let body = &b[HEADER_BYTES..];
    Ok(match codec {
        Compression::None => Cow::Borrowed(body),
        c => Cow::Owned(codec::decompress(c, body, max_bytes)?),
    })
}

/// Parses `count` records from a record set. Every length is checked against the bytes
/// present; `count` is trusted only as far as the bytes go (each record takes >= 7 bytes).
pub fn parse_records(set: &[u8], count: i32) -> Result<Vec<Record<'_>>, RecordsError> {
    let count = usize::try_from(count).map_err(|_| RecordsError::Malformed {
        index: 0,
        reason: "negative record count",
    })?;
    if count > set.len() {
        return Err(RecordsError::Malformed {
            index: 0,
            reason: "record count larger than the record set",
        });
    }
    let mut out = Vec::with_capacity(count);
    let mut pos = 0usize;
    for index in 0..count {
        let bad = |reason| RecordsError::Malformed { index, reason };
        let (len, n) = read_varint(&set[pos..]).ok_or(bad("bad length"))?;
        let len = usize::try_from(len).map_err(|_| bad("negative length"))?;
        let start = pos;
        let body_start = pos + n;
        let end = body_start.checked_add(len).ok_or(bad("length overflow"))?;
        let rec = set.get(body_start..end).ok_or(bad("record past the end"))?;
        let mut p = 1usize; // attributes
        if rec.is_empty() {
            return Err(bad("empty record"));
        }
        let next = |p: &mut usize| -> Result<i64, RecordsError> {
            let (v, n) = read_varint(rec.get(*p..).unwrap_or(&[])).ok_or(bad("bad varint"))?;
            *p += n;
            Ok(v)
        };
        let timestamp_delta = next(&mut p)?;
        let offset_delta = next(&mut p)?;
        let offset_delta = i32::try_from(offset_delta).map_err(|_| bad("offset delta range"))?;
        let mut fields = [None, None];
        for f in fields.iter_mut() {
            let l = next(&mut p)?;
            if l >= 0 {
                let e = p.checked_add(l as usize).ok_or(bad("field overflow"))?;
                *f = Some(rec.get(p..e).ok_or(bad("field past the record"))?);
                p = e;
            } else if l != -1 {
                return Err(bad("negative field length"));
            }
        }
        let headers = next(&mut p)?;
        if !(0..=MAX_HEADERS_PER_RECORD).contains(&headers) {
            return Err(bad("header count out of range"));
        }
        for _ in 0..headers {
            let kl = next(&mut p)?;
            if kl < 0 {
                return Err(bad("null header key"));
            }
            p = p.checked_add(kl as usize).ok_or(bad("header overflow"))?;
            if p > rec.len() {
                return Err(bad("header past the record"));
            }
            let vl = next(&mut p)?;
            if vl >= 0 {
                p = p.checked_add(vl as usize).ok_or(bad("header overflow"))?;
                if p > rec.len() {
                    return Err(bad("header past the record"));
                }
            } else if vl != -1 {
                return Err(bad("negative header value length"));
            }
        }
        if p != rec.len() {
            return Err(bad("record length disagrees with its fields"));
        }
        out.push(Record {
            offset_delta,
            timestamp_delta,
            key: fields[0],
            value: fields[1],
            raw: &set[start..end],
        });
        pos = end;
    }
    if pos != set.len() {
        return Err(RecordsError::Malformed {
            index: count,
            reason: "bytes after the last record",
        });
    }
    Ok(out)
}

/// Rebuilds batch `b` with only `kept` (records of `b`, in order). Base offset, last offset
/// delta, timestamps, producer fields and leader epoch stay; the record set is re-compressed
/// with the batch's own codec and the CRC recomputed. With no record kept the result is a
/// header-only batch (`recordsCount = 0`, codec bits cleared: nothing to decompress).
pub fn rebuild(b: &[u8], kept: &[Record<'_>]) -> Result<Vec<u8>, RecordsError> {
    let h = batch::header(b)?;
    let attrs = h.attributes.get();
    let codec = Compression::from_attributes(attrs)?;
    let mut set = Vec::with_capacity(kept.iter().map(|r| r.raw.len()).sum());
    for r in kept {
        set.extend_from_slice(r.raw);
    }
    let body = if kept.is_empty() {
        Vec::new()
    } else {
        codec::compress(codec, &set)?
    };
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&b[..HEADER_BYTES]);
    out.extend_from_slice(&body);
    let total = out.len();
    let count = i32::try_from(kept.len()).map_err(|_| RecordsError::Malformed {
        index: kept.len(),
        reason: "too many records",
    })?;
    {
        let h = batch::header_mut(&mut out)?;
        h.batch_length
            .set(i32::try_from(total - batch::LOG_OVERHEAD).map_err(|_| {
                RecordsError::Malformed {
                    index: 0,
                    reason: "batch too large",
                }
            })?);
        h.records_count.set(count);
        if kept.is_empty() {
            h.attributes.set(attrs & !COMPRESSION_MASK);
        }
    }
    let crc = crc32c::crc32c(&out[CRC_START..]);
    batch::header_mut(&mut out)?.crc.set(crc);
    Ok(out)
}

/// Checks a stored batch after compaction: header, length, CRC, magic, codec, and records that
/// parse with offset deltas inside `[0, lastOffsetDelta]`, strictly increasing. Unlike
/// [`batch::validate`] it allows fewer records than the offset span (compacted batches).
pub fn validate_compacted(b: &[u8], max_bytes: usize) -> Result<(), RecordsError> {
    let h = batch::header(b)?;
    let declared = h.batch_length.get() as i64;
    if declared + batch::LOG_OVERHEAD as i64 != b.len() as i64 {
        return Err(BatchError::LengthMismatch {
            declared,
            actual: b.len().saturating_sub(batch::LOG_OVERHEAD),
        }
        .into());
    }
    if h.magic != batch::MAGIC_V2 {
        return Err(BatchError::Magic(h.magic).into());
    }
    let computed = crc32c::crc32c(&b[CRC_START..]);
    if computed != h.crc.get() {
        return Err(BatchError::Crc {
            stored: h.crc.get(),
            computed,
        }
        .into());
    }
    let count = h.records_count.get();
    let last = h.last_offset_delta.get();
    if count == 0 {
        return Ok(());
    }
    let set = record_set(b, max_bytes)?;
    let recs = parse_records(&set, count)?;
    let mut prev = -1i64;
    for (index, r) in recs.iter().enumerate() {
        let d = r.offset_delta as i64;
        if d <= prev || d > last as i64 {
            return Err(RecordsError::Malformed {
                index,
                reason: "offset delta out of order or past lastOffsetDelta",
            });
        }
        prev = d;
    }
    Ok(())
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::batch::{header_mut, put_varint, LOG_OVERHEAD, MAGIC_V2};

    /// One test record: (key, value, headers).
    pub type TestRecord<'a> = (
        Option<&'a [u8]>,
        Option<&'a [u8]>,
        &'a [(&'a [u8], Option<&'a [u8]>)],
    );

    /// Builds a batch of `records` compressed with `codec` (record i at offset delta i,
    /// timestamp `base_ts + i`).
    pub fn build_batch(
        codec: Compression,
        base_offset: i64,
        base_ts: i64,
        records: &[TestRecord<'_>],
    ) -> Vec<u8> {
        let mut set = Vec::new();
        for (i, (k, v, hs)) in records.iter().enumerate() {
            let mut rec = vec![0u8];
            put_varint(&mut rec, i as i64);
            put_varint(&mut rec, i as i64);
            for f in [k, v] {
                match f {
                    Some(b) => {
                        put_varint(&mut rec, b.len() as i64);
                        rec.extend_from_slice(b);
                    }
                    None => put_varint(&mut rec, -1),
                }
            }
            put_varint(&mut rec, hs.len() as i64);
            for (hk, hv) in hs.iter() {
                put_varint(&mut rec, hk.len() as i64);
                rec.extend_from_slice(hk);
                match hv {
                    Some(b) => {
                        put_varint(&mut rec, b.len() as i64);
                        rec.extend_from_slice(b);
                    }
                    None => put_varint(&mut rec, -1),
                }
            }
            put_varint(&mut set, rec.len() as i64);
            set.extend_from_slice(&rec);
        }
        let body = codec::compress(codec, &set).unwrap();
        let mut b = vec![0u8; HEADER_BYTES];
        b.extend_from_slice(&body);
        let total = b.len();
        let n = records.len() as i32;
        {
            let h = header_mut(&mut b).unwrap();
            h.base_offset.set(base_offset);
            h.batch_length.set((total - LOG_OVERHEAD) as i32);
            h.magic = MAGIC_V2;
            h.attributes.set(codec as i16);
            h.last_offset_delta.set(n - 1);
            h.base_timestamp.set(base_ts);
            h.max_timestamp.set(base_ts + n as i64 - 1);
            h.producer_id.set(-1);
            h.producer_epoch.set(-1);
            h.base_sequence.set(-1);
            h.records_count.set(n);
        }
        let crc = crc32c::crc32c(&b[CRC_START..]);
        header_mut(&mut b).unwrap().crc.set(crc);
        b
    }

    #[test]
    fn rebuild_keeps_offsets_headers_and_codec() {
        let hdrs: &[(&[u8], Option<&[u8]>)] = &[(b"h1", Some(b"x")), (b"h2", None)];
        let recs: Vec<TestRecord<'_>> = vec![
            (Some(b"a"), Some(b"1"), &[]),
            (Some(b"b"), Some(b"2"), hdrs),
            (Some(b"a"), Some(b"3"), &[]),
            (Some(b"c"), None, hdrs),
            (Some(b"b"), Some(b"5"), &[]),
        ];
        for codec in Compression::ALL {
            let b = build_batch(codec, 100, 5000, &recs);
            batch::validate(&b).unwrap();
            let set = record_set(&b, 1 << 20).unwrap();
            let parsed = parse_records(&set, 5).unwrap();
            assert_eq!(parsed.len(), 5);
            assert_eq!(parsed[3].value, None);
            let kept = vec![parsed[1], parsed[3]];
            let nb = rebuild(&b, &kept).unwrap();
            validate_compacted(&nb, 1 << 20).unwrap();
            let h = batch::header(&nb).unwrap();
            assert_eq!(h.base_offset.get(), 100);
            assert_eq!(h.last_offset_delta.get(), 4);
            assert_eq!(h.records_count.get(), 2);
            assert_eq!(h.max_timestamp.get(), 5004);
            assert_eq!(h.attributes.get() & COMPRESSION_MASK, codec as i16);
            let set2 = record_set(&nb, 1 << 20).unwrap();
            let again = parse_records(&set2, 2).unwrap();
            assert_eq!(again, kept);
            assert_eq!(again[0].offset_delta, 1);
            assert_eq!(again[1].offset_delta, 3);
            assert_eq!(again[0].key, Some(&b"b"[..]));
            assert_eq!(again[0].raw, parsed[1].raw);
            assert_eq!(again[1].raw, parsed[3].raw);
            let empty = rebuild(&b, &[]).unwrap();
            validate_compacted(&empty, 1 << 20).unwrap();
            assert_eq!(empty.len(), HEADER_BYTES);
            let h = batch::header(&empty).unwrap();
            assert_eq!((h.records_count.get(), h.last_offset_delta.get()), (0, 4));
            assert_eq!(h.attributes.get() & COMPRESSION_MASK, 0);
        }
    }

    #[test]
    fn malformed_record_sets_are_errors() {
        let recs: Vec<TestRecord<'_>> =
            vec![(Some(b"k"), Some(b"v"), &[]), (None, Some(b"w"), &[])];
        let b = build_batch(Compression::None, 0, 0, &recs);
        let set = &b[HEADER_BYTES..];
        assert!(parse_records(set, 2).is_ok());
        assert!(parse_records(set, 3).is_err());
        assert!(parse_records(set, 1).is_err(), "trailing bytes");
        assert!(parse_records(set, -1).is_err());
        assert!(parse_records(set, i32::MAX).is_err());
        for cut in 0..set.len() {
            assert!(parse_records(&set[..cut], 2).is_err());
        }
        for i in 0..set.len() {
            let mut s = set.to_vec();
            s[i] ^= 0xff;
            let _ = parse_records(&s, 2);
        }
    }
}
