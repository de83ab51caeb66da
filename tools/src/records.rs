//! Reading the `records` field of a Fetch response: v2 batches, each checked (length, magic,
//! CRC32C), then walked record by record. The broker-side `chronik_protocol::batch::validate` is
//! deliberately not used: it also insists on `recordsCount = lastOffsetDelta + 1`, which holds for
//! produced batches but not for batches a compacting broker has thinned out.
//!
//! A fetch may end in a partial batch (the broker cuts at `partition_max_bytes`); that tail is not
//! an error, it is simply fetched again from the next offset. Control batches (transaction
//! markers) are skipped. Compressed batches are reported but not decoded: this tool links no codecs
//! (the workspace keeps `kafka-protocol`'s compression features off), so it says which offsets it
//! skipped rather than printing garbage.
//!
//! Record layout inside a batch (varints are zig-zag):
//! `length, attributes i8, timestampDelta, offsetDelta, keyLength, key, valueLength, value,
//! headerCount, [headerKeyLength, headerKey, headerValueLength, headerValue]`.

use chronik_protocol::batch::{
    header, read_varint, BatchHeader, COMPRESSION_MASK, CONTROL_FLAG, CRC_START, HEADER_BYTES,
    LOG_OVERHEAD, MAGIC_V2,
};

use crate::error::{CtlError, Result};

/// One decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// What a `records` field held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    pub records: Vec<Record>,
    /// `(first offset, last offset, codec)` of compressed batches that were skipped.
    pub skipped_compressed: Vec<(i64, i64, i16)>,
    /// The offset to fetch next (one past the last whole batch), if any whole batch was seen.
    pub next_offset: Option<i64>,
}

/// Decodes every whole batch in `b`.
pub fn decode_fetched(b: &[u8]) -> Result<Decoded> {
    let mut out = Decoded::default();
    let mut pos = 0usize;
    // Each pass consumes at least HEADER_BYTES, so the loop ends within b.len()/61 passes.
    while b.len() - pos >= LOG_OVERHEAD {
        let rest = &b[pos..];
        let declared = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes")) as i64;
        if declared < (HEADER_BYTES - LOG_OVERHEAD) as i64 {
            return Err(CtlError::Malformed(format!(
                "batch at byte {pos} declares length {declared}"
            )));
        }
        let total = declared as u64 + LOG_OVERHEAD as u64;
        if total > rest.len() as u64 {
            break; // partial batch at the end of the fetch: fetched again next round
        }
        let batch = &rest[..total as usize];
        let h = check_batch(batch, pos)?;
        let base = h.base_offset.get();
        let last = base + h.last_offset_delta.get() as i64;
        let attrs = h.attributes.get();
        out.next_offset = Some(last + 1);
        pos += total as usize;
        if attrs & CONTROL_FLAG != 0 {
            continue;
        }
        if attrs & COMPRESSION_MASK != 0 {
            out.skipped_compressed
                .push((base, last, attrs & COMPRESSION_MASK));
            continue;
        }
        decode_batch(batch, &mut out.records)?;
    }
    Ok(out)
}

/// Magic and CRC of one whole batch (`pos` only names it in errors).
fn check_batch(batch: &[u8], pos: usize) -> Result<&BatchHeader> {
    let h = header(batch).map_err(|e| CtlError::Malformed(format!("batch at byte {pos}: {e}")))?;
    if h.magic != MAGIC_V2 {
        return Err(CtlError::Malformed(format!(
            "batch at byte {pos}: magic {} (only v2 batches are read)",
            h.magic
        )));
    }
    let computed = crc32c::crc32c(&batch[CRC_START..]);
    if computed != h.crc.get() {
        return Err(CtlError::Malformed(format!(
            "batch at byte {pos}: crc {:#010x} in header, bytes give {computed:#010x}",
            h.crc.get()
        )));
    }
    Ok(h)
}

struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn varint(&mut self) -> Result<i64> {
        let (v, n) = read_varint(self.b).ok_or_else(|| bad("varint"))?;
        self.b = &self.b[n..];
        Ok(v)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.b.len() {
            return Err(bad("field longer than its record"));
        }
        let (h, r) = self.b.split_at(n);
        self.b = r;
        Ok(h)
    }
    /// A varint-length byte string; -1 is null.
    fn bytes(&mut self) -> Result<Option<&'a [u8]>> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < 0 => Err(bad("negative length")),
            n => Ok(Some(
                self.take(usize::try_from(n).map_err(|_| bad("length"))?)?,
            )),
        }
    }
}

fn bad(what: &str) -> CtlError {
    CtlError::Malformed(format!("record: {what}"))
}

/// Appends the records of one validated, uncompressed batch.
fn decode_batch(batch: &[u8], out: &mut Vec<Record>) -> Result<()> {
    let h = header(batch).map_err(|e| CtlError::Malformed(format!("batch: {e}")))?;
    let base = h.base_offset.get();
    let base_ts = h.base_timestamp.get();
    let count = h.records_count.get();
    let mut c = Cursor {
        b: &batch[HEADER_BYTES..],
    };
    // A record is at least 7 bytes (length, attributes, 2 deltas, key, value, header count).
    if count < 0 || count as usize > c.b.len() / 7 {
        return Err(bad("record count does not fit the batch"));
    }
    out.reserve(count as usize);
    for _ in 0..count {
        let len = c.varint()?;
        let body = c.take(usize::try_from(len).map_err(|_| bad("negative record length"))?)?;
        let mut r = Cursor { b: body };
        r.take(1)?; // attributes (unused in v2)
        let ts_delta = r.varint()?;
        let off_delta = r.varint()?;
        let key = r.bytes()?.map(<[u8]>::to_vec);
        let value = r.bytes()?.map(<[u8]>::to_vec);
        let n_headers = r.varint()?;
        // A header is at least 2 bytes (two varint lengths).
        if n_headers < 0 || n_headers as usize > r.b.len() / 2 {
            return Err(bad("header count does not fit the record"));
        }
        let mut headers = Vec::with_capacity(n_headers as usize);
        for _ in 0..n_headers {
            let k = r.bytes()?.ok_or_else(|| bad("null header key"))?;
            let v = r.bytes()?.map(<[u8]>::to_vec);
            headers.push((String::from_utf8_lossy(k).into_owned(), v));
        }
        out.push(Record {
            offset: base.wrapping_add(off_delta),
            timestamp: base_ts.wrapping_add(ts_delta),
            key,
            value,
            headers,
        });
    }
    Ok(())
}

/// Stamps `base_offset` into an encoded batch (tests build fetch responses from produce batches).
#[cfg(test)]
pub fn with_base_offset(mut b: Vec<u8>, base_offset: i64) -> Vec<u8> {
    chronik_protocol::batch::header_mut(&mut b)
        .expect("batch")
        .base_offset
        .set(base_offset);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronik_protocol::batch::encode_batch;

    #[test]
    fn decodes_batches_with_offsets_keys_and_nulls() {
        let mut b = with_base_offset(
            encode_batch(&[(Some(b"k1"), Some(b"v1")), (None, Some(b"v2"))], 1000),
            10,
        );
        b.extend(with_base_offset(
            encode_batch(&[(Some(b"k3"), None)], 2000),
            12,
        ));
        let d = decode_fetched(&b).unwrap();
        assert_eq!(d.next_offset, Some(13));
        assert!(d.skipped_compressed.is_empty());
        let got: Vec<_> = d
            .records
            .iter()
            .map(|r| (r.offset, r.timestamp, r.key.clone(), r.value.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (10, 1000, Some(b"k1".to_vec()), Some(b"v1".to_vec())),
                (11, 1000, None, Some(b"v2".to_vec())),
                (12, 2000, Some(b"k3".to_vec()), None),
            ]
        );
    }

    #[test]
    fn a_partial_trailing_batch_is_left_for_the_next_fetch() {
        let first = with_base_offset(encode_batch(&[(None, Some(b"a"))], 0), 0);
        let second = with_base_offset(encode_batch(&[(None, Some(b"b"))], 0), 1);
        for cut in 0..second.len() {
            let mut b = first.clone();
            b.extend_from_slice(&second[..cut]);
            let d = decode_fetched(&b).unwrap();
            assert_eq!(d.records.len(), 1, "cut {cut}");
            assert_eq!(d.next_offset, Some(1), "cut {cut}");
        }
        assert_eq!(decode_fetched(&[]).unwrap(), Decoded::default());
    }

    #[test]
    fn corruption_is_an_error() {
        let mut b = with_base_offset(encode_batch(&[(None, Some(b"abc"))], 0), 0);
        let n = b.len();
        b[n - 2] ^= 0xff; // inside the CRC-covered records
        assert!(decode_fetched(&b).is_err());
        let mut b = with_base_offset(encode_batch(&[(None, Some(b"abc"))], 0), 0);
        b[8..12].copy_from_slice(&5i32.to_be_bytes()); // shorter than a header
        assert!(decode_fetched(&b).is_err());
    }

    #[test]
    fn compressed_and_control_batches_are_skipped_with_offsets() {
        let mut c = with_base_offset(encode_batch(&[(None, Some(b"x")), (None, None)], 0), 5);
        chronik_protocol::batch::header_mut(&mut c)
            .unwrap()
            .attributes
            .set(4); // zstd
        let crc = crc_of(&c);
        chronik_protocol::batch::header_mut(&mut c)
            .unwrap()
            .crc
            .set(crc);
        let d = decode_fetched(&c).unwrap();
        assert_eq!(d.skipped_compressed, vec![(5, 6, 4)]);
        assert_eq!(d.next_offset, Some(7));
        assert!(d.records.is_empty());

        let mut m = with_base_offset(encode_batch(&[(None, None)], 0), 9);
        chronik_protocol::batch::header_mut(&mut m)
            .unwrap()
            .attributes
            .set(CONTROL_FLAG);
        let crc = crc_of(&m);
        chronik_protocol::batch::header_mut(&mut m)
            .unwrap()
            .crc
            .set(crc);
        let d = decode_fetched(&m).unwrap();
        assert!(d.records.is_empty() && d.skipped_compressed.is_empty());
        assert_eq!(d.next_offset, Some(10));
    }

    fn crc_of(b: &[u8]) -> u32 {
        crc32c::crc32c(&b[CRC_START..])
    }

    #[test]
    fn compacted_batches_with_gaps_are_read() {
        // After compaction a batch may keep lastOffsetDelta 5 while holding one record: the next
        // fetch must still start after the whole batch.
        let mut b = with_base_offset(encode_batch(&[(Some(b"k"), Some(b"v"))], 0), 20);
        chronik_protocol::batch::header_mut(&mut b)
            .unwrap()
            .last_offset_delta
            .set(5);
        let crc = crc_of(&b);
        chronik_protocol::batch::header_mut(&mut b)
            .unwrap()
            .crc
            .set(crc);
        let d = decode_fetched(&b).unwrap();
        assert_eq!(d.records.len(), 1);
        assert_eq!(d.records[0].offset, 20);
        assert_eq!(d.next_offset, Some(26));
    }

    #[test]
    fn headers_are_decoded() {
        // Hand-built record with one header, spliced into a batch made by encode_batch.
        let mut b = encode_batch(&[(Some(b"k"), Some(b"v"))], 0);
        // The record: len, attr 0, ts 0, off 0, key 1 'k', value 1 'v', 1 header ("h" -> "x").
        let rec_body = [0u8, 0, 0, 2, b'k', 2, b'v', 2, 2, b'h', 2, b'x'];
        b.truncate(HEADER_BYTES);
        b.push((rec_body.len() as u8) << 1);
        b.extend_from_slice(&rec_body);
        let total = b.len();
        chronik_protocol::batch::header_mut(&mut b)
            .unwrap()
            .batch_length
            .set((total - LOG_OVERHEAD) as i32);
        let crc = crc_of(&b);
        chronik_protocol::batch::header_mut(&mut b)
            .unwrap()
            .crc
            .set(crc);
        let d = decode_fetched(&b).unwrap();
        assert_eq!(
            d.records[0].headers,
            vec![("h".to_string(), Some(b"x".to_vec()))]
        );
    }
}
