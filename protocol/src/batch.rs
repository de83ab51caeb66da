//! Zero-copy views of Kafka v2 record batches.
//!
//! The broker never decodes records on the hot path. It checks the 61-byte batch header and the
//! CRC, then patches a few header fields in place and stores the bytes as they are; fetches serve
//! the same bytes. Header layout (big-endian):
//!
//! ```text
//! off len field                  in CRC?
//!   0   8 baseOffset             no   (patched: the leader assigns offsets)
//!   8   4 batchLength            no   (bytes after this field: total - 12)
//!  12   4 partitionLeaderEpoch   no   (patched: the leader's Raft term)
//!  16   1 magic (= 2)            no
//!  17   4 crc (CRC32C of 21..)   -
//!  21   2 attributes             yes  (bit 3: timestamp type; patched for LogAppendTime)
//!  23   4 lastOffsetDelta        yes
//!  27   8 baseTimestamp          yes
//!  35   8 maxTimestamp           yes  (patched for LogAppendTime)
//!  43   8 producerId             yes
//!  51   2 producerEpoch          yes
//!  53   4 baseSequence           yes
//!  57   4 recordsCount           yes
//!  61   . records
//! ```
//!
//! Worked example: a batch of 3 records of total size 200 has `batchLength = 188`, `crc` over
//! bytes 21..200 (179 bytes) and `lastOffsetDelta = 2`; stored at offset 1000 its records are
//! offsets 1000, 1001 and 1002 and the next batch starts at 1003.

use thiserror::Error;
use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Bytes of the v2 batch header.
pub const HEADER_BYTES: usize = 61;
/// Where the CRC-covered part of the batch begins.
pub const CRC_START: usize = 21;
/// Bytes before `batchLength` counts (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// The only batch format the broker stores.
pub const MAGIC_V2: i8 = 2;
/// Attribute bits.
pub const COMPRESSION_MASK: i16 = 0x07;
pub const TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;
pub const TRANSACTIONAL_FLAG: i16 = 0x10;
pub const CONTROL_FLAG: i16 = 0x20;
/// `producerId` of a batch written without idempotence.
pub const NO_PRODUCER_ID: i64 = -1;

const _: () = assert!(core::mem::size_of::<BatchHeader>() == HEADER_BYTES);

/// The v2 batch header as it sits in the bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug)]
#[repr(C)]
pub struct BatchHeader {
    pub base_offset: I64,
    pub batch_length: I32,
    pub partition_leader_epoch: I32,
    pub magic: i8,
    pub crc: U32,
    pub attributes: I16,
    pub last_offset_delta: I32,
    pub base_timestamp: I64,
    pub max_timestamp: I64,
    pub producer_id: I64,
    pub producer_epoch: I16,
    pub base_sequence: I32,
    pub records_count: I32,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch shorter than its header ({0} bytes)")]
    TooShort(usize),
    #[error("batch length {declared} does not match the {actual} bytes present")]
    LengthMismatch { declared: i64, actual: usize },
    #[error("unsupported magic {0} (only v2 batches are accepted)")]
    Magic(i8),
    #[error("crc mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("record count {count} does not agree with last offset delta {delta}")]
    Count { count: i32, delta: i32 },
    #[error("unknown compression codec {0}")]
    Codec(i16),
    #[error("control batches cannot be produced by clients")]
    Control,
}

impl BatchError {
    /// The Kafka error code a produce response carries for this failure.
    pub fn kafka_code(&self) -> i16 {
        match self {
            // CORRUPT_MESSAGE: bytes damaged in flight.
            BatchError::TooShort(_)
            | BatchError::LengthMismatch { .. }
            | BatchError::Crc { .. }
            | BatchError::Magic(_) => 2,
            // INVALID_RECORD: well-formed bytes, invalid content.
            BatchError::Count { .. } | BatchError::Codec(_) | BatchError::Control => 87,
        }
    }
}

/// Splits a `records` field into its batches, validating each. Returns `(start, end)` ranges.
pub fn split_batches(records: &[u8], out: &mut Vec<(usize, usize)>) -> Result<(), BatchError> {
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < HEADER_BYTES {
            return Err(BatchError::TooShort(rest.len()));
        }
        let declared = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes")) as i64;
        let total = declared + LOG_OVERHEAD as i64;
        if declared < (HEADER_BYTES - LOG_OVERHEAD) as i64 || total > rest.len() as i64 {
            return Err(BatchError::LengthMismatch {
                declared,
                actual: rest.len() - LOG_OVERHEAD,
            });
        }
        let total = total as usize;
        validate(&rest[..total])?;
        out.push((pos, pos + total));
        pos += total;
    }
    Ok(())
}

/// Validates one batch exactly filling `b`.
pub fn validate(b: &[u8]) -> Result<&BatchHeader, BatchError> {
    let h = header(b)?;
    let declared = h.batch_length.get() as i64;
    if declared + LOG_OVERHEAD as i64 != b.len() as i64 {
        return Err(BatchError::LengthMismatch {
            declared,
            actual: b.len() - LOG_OVERHEAD,
        });
    }
    if h.magic != MAGIC_V2 {
        return Err(BatchError::Magic(h.magic));
    }
    let computed = crc32c::crc32c(&b[CRC_START..]);
    if computed != h.crc.get() {
        return Err(BatchError::Crc {
            stored: h.crc.get(),
            computed,
        });
    }
    let count = h.records_count.get();
    let delta = h.last_offset_delta.get();
    if count <= 0 || delta != count - 1 {
        return Err(BatchError::Count { count, delta });
    }
    let codec = h.attributes.get() & COMPRESSION_MASK;
    if codec > 4 {
        return Err(BatchError::Codec(codec));
    }
    Ok(h)
}

/// A read-only view of the header.
pub fn header(b: &[u8]) -> Result<&BatchHeader, BatchError> {
    if b.len() < HEADER_BYTES {
        return Err(BatchError::TooShort(b.len()));
    }
    Ok(BatchHeader::ref_from_bytes(&b[..HEADER_BYTES]).expect("61 unaligned bytes"))
}

/// A mutable view of the header.
pub fn header_mut(b: &mut [u8]) -> Result<&mut BatchHeader, BatchError> {
    if b.len() < HEADER_BYTES {
        return Err(BatchError::TooShort(b.len()));
    }
    Ok(BatchHeader::mut_from_bytes(&mut b[..HEADER_BYTES]).expect("61 unaligned bytes"))
}

/// Patches a validated batch for storage at `base_offset` under `leader_epoch`. With
/// `log_append_time = Some(now)` the batch's timestamp type becomes LogAppendTime and its max
/// timestamp `now`; that changes CRC-covered bytes, so the CRC is recomputed (the only case that
/// touches the payload's CRC). Returns the batch's max timestamp as stored.
pub fn patch_for_append(
    b: &mut [u8],
    base_offset: i64,
    leader_epoch: i32,
    log_append_time: Option<i64>,
) -> Result<i64, BatchError> {
    let h = header_mut(b)?;
    h.base_offset.set(base_offset);
    h.partition_leader_epoch.set(leader_epoch);
    let max_ts = match log_append_time {
        Some(now) => {
            h.attributes
                .set(h.attributes.get() | TIMESTAMP_TYPE_LOG_APPEND);
            h.max_timestamp.set(now);
            // Like Kafka, record deltas and the base timestamp stay as the client wrote them:
            // readers take maxTimestamp as the time of every record of a LogAppendTime batch.
            let crc = crc32c::crc32c(&b[CRC_START..]);
            header_mut(b)?.crc.set(crc);
            now
        }
        None => h.max_timestamp.get(),
    };
    Ok(max_ts)
}

/// Summary of a batch header used by the broker (offsets relative to the batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    pub records: i32,
    pub last_offset_delta: i32,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
    /// A control batch (transaction marker); clients cannot produce these.
    pub control: bool,
    pub compression: i16,
}

impl BatchHeader {
    pub fn info(&self) -> BatchInfo {
        let attrs = self.attributes.get();
        BatchInfo {
            records: self.records_count.get(),
            last_offset_delta: self.last_offset_delta.get(),
            max_timestamp: self.max_timestamp.get(),
            producer_id: self.producer_id.get(),
            producer_epoch: self.producer_epoch.get(),
            base_sequence: self.base_sequence.get(),
            transactional: attrs & TRANSACTIONAL_FLAG != 0,
            control: attrs & CONTROL_FLAG != 0,
            compression: attrs & COMPRESSION_MASK,
        }
    }
}

/// Reads a zig-zag varint (records use them). Returns `(value, bytes used)`.
pub fn read_varint(b: &[u8]) -> Option<(i64, usize)> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((v >> 1) as i64) ^ -((v & 1) as i64), i + 1));
        }
    }
    None
}

/// One record of an uncompressed batch, borrowed from the batch bytes.
struct RecordView<'a> {
    timestamp_delta: i64,
    offset_delta: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

/// Parses every record of an uncompressed batch (headers are skipped). `None` if the batch is
/// compressed or any record does not parse; every length is checked against the bytes present.
fn parse_records(b: &[u8]) -> Option<Vec<RecordView<'_>>> {
    let h = header(b).ok()?;
    if h.attributes.get() & COMPRESSION_MASK != 0 {
        return None;
    }
    let count = h.records_count.get().max(0) as usize;
    let mut out = Vec::with_capacity(count.min(4096));
    let mut pos = HEADER_BYTES;
    for _ in 0..count {
        let (len, n) = read_varint(b.get(pos..)?)?;
        pos += n;
        let end = pos.checked_add(usize::try_from(len).ok()?)?;
        let rec = b.get(pos..end)?;
        let mut p = 1; // attributes
        let (timestamp_delta, n) = read_varint(rec.get(p..)?)?;
        p += n;
        let (offset_delta, n) = read_varint(rec.get(p..)?)?;
        p += n;
        let mut kv = [None, None];
        for slot in kv.iter_mut() {
            let (l, n) = read_varint(rec.get(p..)?)?;
            p += n;
            if l >= 0 {
                let e = p.checked_add(usize::try_from(l).ok()?)?;
                *slot = Some(rec.get(p..e)?);
                p = e;
            }
        }
        out.push(RecordView {
            timestamp_delta,
            offset_delta,
            key: kv[0],
            value: kv[1],
        });
        pos = end;
    }
    Some(out)
}

/// For an uncompressed batch, the offset and timestamp of every record, in order. Used by
/// ListOffsets-by-timestamp to find the first record at or after a time inside one batch.
/// Returns None when the records do not parse (treated as "use the batch's base offset").
pub fn record_timestamps(b: &[u8]) -> Option<Vec<(i64, i64)>> {
    let h = header(b).ok()?;
    let (base_off, base_ts) = (h.base_offset.get(), h.base_timestamp.get());
    Some(
        parse_records(b)?
            .iter()
            .map(|r| (base_off + r.offset_delta, base_ts + r.timestamp_delta))
            .collect(),
    )
}

/// Appends a zig-zag varint.
pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// Key and value of one record (`None` = null).
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Encodes an uncompressed v2 batch of `records` (no headers) stamped `timestamp`, with base
/// offset 0: the broker's own writes (consumer-group records) go through the normal produce path,
/// which assigns the offsets.
pub fn encode_batch(records: &[KeyValue<'_>], timestamp: i64) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let mut body = Vec::new();
    let mut rec = Vec::new();
    for (i, (k, v)) in records.iter().enumerate() {
        rec.clear();
        rec.push(0); // attributes
        put_varint(&mut rec, 0); // timestamp delta
        put_varint(&mut rec, i as i64); // offset delta
        for field in [k, v] {
            match field {
                Some(b) => {
                    put_varint(&mut rec, b.len() as i64);
                    rec.extend_from_slice(b);
                }
                None => put_varint(&mut rec, -1),
            }
        }
        put_varint(&mut rec, 0); // headers
        put_varint(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let mut b = vec![0u8; HEADER_BYTES];
    b.extend_from_slice(&body);
    let total = b.len();
    let n = records.len() as i32;
    {
        let h = header_mut(&mut b).expect("header sized");
        h.batch_length.set((total - LOG_OVERHEAD) as i32);
        h.magic = MAGIC_V2;
        h.last_offset_delta.set(n - 1);
        h.base_timestamp.set(timestamp);
        h.max_timestamp.set(timestamp);
        h.producer_id.set(NO_PRODUCER_ID);
        h.producer_epoch.set(-1);
        h.base_sequence.set(-1);
        h.records_count.set(n);
    }
    let crc = crc32c::crc32c(&b[CRC_START..]);
    header_mut(&mut b).expect("header sized").crc.set(crc);
    b
}

/// Control record type of an abort marker (Kafka `ControlRecordType.ABORT`).
pub const CONTROL_ABORT: i16 = 0;
/// Control record type of a commit marker (Kafka `ControlRecordType.COMMIT`).
pub const CONTROL_COMMIT: i16 = 1;

/// Encodes a transaction marker: a control batch of one record whose key is Kafka's
/// `ControlRecordType` (`version i16 = 0, type i16`) and whose value is an `EndTransactionMarker`
/// (`version i16 = 0, coordinator_epoch i32`), flagged transactional + control, carrying the
/// producer's id and epoch and no sequence. Base offset 0: the appending partition assigns it.
pub fn encode_control_batch(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    let kind = if commit {
        CONTROL_COMMIT
    } else {
        CONTROL_ABORT
    };
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let mut b = encode_batch(&[(Some(&key), Some(&value))], timestamp);
    set_producer(
        &mut b,
        producer_id,
        producer_epoch,
        -1,
        TRANSACTIONAL_FLAG | CONTROL_FLAG,
    );
    b
}

/// Stamps a batch built by [`encode_batch`] with a producer (id, epoch, base sequence) and
/// extra attribute bits, and recomputes its CRC (all of these are CRC-covered).
pub fn set_producer(
    b: &mut [u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    attributes: i16,
) {
    {
        let h = header_mut(b).expect("a batch built by encode_batch");
        h.producer_id.set(producer_id);
        h.producer_epoch.set(producer_epoch);
        h.base_sequence.set(base_sequence);
        h.attributes.set(h.attributes.get() | attributes);
    }
    let crc = crc32c::crc32c(&b[CRC_START..]);
    header_mut(b).expect("checked above").crc.set(crc);
}

/// For a control batch, whether it is a commit (`Some(true)`) or abort (`Some(false)`)
/// marker; `None` for data batches, other control records, or bytes that do not parse.
pub fn control_marker(b: &[u8]) -> Option<bool> {
    let h = header(b).ok()?;
    if h.attributes.get() & CONTROL_FLAG == 0 {
        return None;
    }
    let recs = parse_records(b)?;
    let key = recs.first()?.key?;
    if key.len() < 4 {
        return None;
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        CONTROL_COMMIT => Some(true),
        CONTROL_ABORT => Some(false),
        _ => None,
    }
}

/// Decodes the keys and values of an uncompressed batch. `None` if the batch is compressed or
/// its records do not parse.
pub fn decode_records(b: &[u8]) -> Option<Vec<KeyValue<'_>>> {
    Some(
        parse_records(b)?
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect(),
    )
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Builds a valid uncompressed batch of `n` records with small values (test helper).
    pub fn make_batch(n: i32, base_ts: i64) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..n {
            let mut rec = vec![0u8]; // attributes
            put_varint(&mut rec, i as i64); // timestamp delta
            put_varint(&mut rec, i as i64); // offset delta
            put_varint(&mut rec, -1); // key length (null)
            put_varint(&mut rec, 1); // value length
            rec.push(b'a' + (i % 26) as u8);
            put_varint(&mut rec, 0); // headers
            put_varint(&mut records, rec.len() as i64);
            records.extend_from_slice(&rec);
        }
        let mut b = vec![0u8; HEADER_BYTES];
        b.extend_from_slice(&records);
        let total = b.len();
        {
            let h = header_mut(&mut b).unwrap();
            h.batch_length.set((total - LOG_OVERHEAD) as i32);
            h.magic = MAGIC_V2;
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
    fn encode_decode_records_round_trip() {
        let recs: Vec<KeyValue<'_>> = vec![
            (Some(b"k1"), Some(b"v1")),
            (Some(b"k2"), None),
            (None, Some(b"")),
        ];
        let b = encode_batch(&recs, 42);
        validate(&b).unwrap();
        assert_eq!(decode_records(&b).unwrap(), recs);
        for cut in 0..b.len() {
            let _ = decode_records(&b[..cut]);
        }
    }

    #[test]
    fn valid_batch_round_trip() {
        let b = make_batch(3, 1000);
        let h = validate(&b).unwrap();
        assert_eq!(h.info().records, 3);
        let mut ranges = Vec::new();
        let mut two = b.clone();
        two.extend_from_slice(&b);
        split_batches(&two, &mut ranges).unwrap();
        assert_eq!(ranges, vec![(0, b.len()), (b.len(), 2 * b.len())]);
        assert_eq!(
            record_timestamps(&b).unwrap(),
            vec![(0, 1000), (1, 1001), (2, 1002)]
        );
    }

    #[test]
    fn any_single_bit_flip_in_crc_region_is_detected() {
        let b = make_batch(5, 7);
        for byte in CRC_START..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[byte] ^= 1 << bit;
                assert!(validate(&c).is_err(), "flip at {byte}:{bit} not detected");
            }
        }
    }

    #[test]
    fn truncations_are_errors() {
        let b = make_batch(4, 0);
        for cut in 0..b.len() {
            let mut r = Vec::new();
            assert!(split_batches(&b[..cut], &mut r).is_err() || cut == 0);
        }
    }

    #[test]
    fn patch_keeps_crc_valid() {
        let mut b = make_batch(2, 50);
        assert_eq!(patch_for_append(&mut b, 100, 3, None).unwrap(), 51);
        let h = validate(&b).unwrap();
        assert_eq!(h.base_offset.get(), 100);
        assert_eq!(h.partition_leader_epoch.get(), 3);
        assert_eq!(patch_for_append(&mut b, 100, 3, Some(999)).unwrap(), 999);
        let h = validate(&b).unwrap();
        assert_eq!(h.max_timestamp.get(), 999);
        assert!(h.attributes.get() & TIMESTAMP_TYPE_LOG_APPEND != 0);
    }

    #[test]
    fn error_codes() {
        assert_eq!(BatchError::TooShort(1).kafka_code(), 2);
        assert_eq!(BatchError::Count { count: 0, delta: 0 }.kafka_code(), 87);
    }

    #[test]
    fn control_batches_round_trip_and_data_batches_are_not_markers() {
        for commit in [true, false] {
            let b = encode_control_batch(42, 3, commit, 0, 1000);
            let h = validate(&b).unwrap();
            let i = h.info();
            assert!(i.transactional && i.control);
            assert_eq!(
                (i.producer_id, i.producer_epoch, i.base_sequence),
                (42, 3, -1)
            );
            assert_eq!(control_marker(&b), Some(commit));
            // Kafka's exact key and value bytes.
            let kv = decode_records(&b).unwrap();
            let kind: &[u8] = if commit { &[0, 0, 0, 1] } else { &[0, 0, 0, 0] };
            assert_eq!(kv[0].0, Some(kind));
            assert_eq!(kv[0].1, Some(&[0u8, 0, 0, 0, 0, 0][..]));
        }
        assert_eq!(control_marker(&make_batch(1, 0)), None);
        let mut b = encode_batch(&[(Some(b"k"), Some(b"v"))], 5);
        set_producer(&mut b, 7, 1, 0, TRANSACTIONAL_FLAG);
        let i = validate(&b).unwrap().info();
        assert!(i.transactional && !i.control);
        assert_eq!(control_marker(&b), None);
    }
}
