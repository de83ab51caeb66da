//! On-disk format: segment header and record framing (see `storage/FORMAT.md`).
//!
//! Everything is little-endian. Every decode is fallible and bounds-checked before it slices or
//! allocates, because these bytes come from a disk that may have been torn or flipped.

use crate::{ConfState, EntryKind, HardState};

/// Magic at byte 0 of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CHRNKWAL";
/// Bumped on any incompatible change of this module. Version 2 seeds every record CRC with the
/// segment's base LSN (see [`record_seed`]) so that records left in a recycled segment file by
/// its previous life can never validate in the new one; version 1 files are still read.
pub const FORMAT_VERSION: u32 = 2;
/// Segment header flag (byte 32): the file was recycled or zero-filled, so bytes after the last
/// record may be stale records of an earlier life (CRC-invalid under this segment's seed).
pub const SEG_FLAG_RECYCLED: u32 = 1;
/// Bytes of the segment header; the first record starts right after it.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Bytes of every record header; the payload follows.
pub const RECORD_HEADER_BYTES: usize = 64;
/// Largest payload one record may carry (a Kafka batch is at most `message.max.bytes`, 1 MiB by
/// default; 16 MiB leaves room for large configured limits while bounding recovery allocations).
pub const MAX_PAYLOAD_BYTES: usize = 16 << 20;
/// Largest number of node ids in one conf-state list (bounds decode allocation).
pub const MAX_CONF_NODES: usize = 4096;

const _: () =
    assert!(SEGMENT_HEADER_BYTES.is_multiple_of(8) && RECORD_HEADER_BYTES.is_multiple_of(8));
const _: () = assert!(MAX_PAYLOAD_BYTES + RECORD_HEADER_BYTES <= u32::MAX as usize);

/// Record types (byte 8 of the record header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// A Raft entry of one group (index, term, kind, optional Kafka offsets, payload).
    Entry = 1,
    /// The group's latest `HardState` (payload: term, vote, commit).
    HardState = 2,
    /// The group's latest `ConfState` (payload: four id lists and auto_leave).
    ConfState = 3,
    /// Drop the group's entries with index >= `index` (Raft conflict).
    TruncateSuffix = 4,
    /// Drop entries with index < `index`; snapshot point (index-1, term); `a` = Kafka offset floor.
    CompactPrefix = 5,
    /// Kafka log start offset `a` (DeleteRecords / retention).
    LogStart = 6,
    /// The group was deleted; later records (if any) belong to a re-created group.
    RemoveGroup = 7,
    /// The group exists (so an empty group survives a restart).
    CreateGroup = 8,
    /// Filler with no meaning; readers skip it.
    Padding = 9,
}

impl RecordType {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Entry,
            2 => Self::HardState,
            3 => Self::ConfState,
            4 => Self::TruncateSuffix,
            5 => Self::CompactPrefix,
            6 => Self::LogStart,
            7 => Self::RemoveGroup,
            8 => Self::CreateGroup,
            9 => Self::Padding,
            _ => return None,
        })
    }
}

pub(crate) fn kind_to_u8(k: EntryKind) -> u8 {
    match k {
        EntryKind::Normal => 0,
        EntryKind::ConfChange => 1,
        EntryKind::ConfChangeV2 => 2,
    }
}

fn kind_from_u8(v: u8) -> Option<EntryKind> {
    Some(match v {
        0 => EntryKind::Normal,
        1 => EntryKind::ConfChange,
        2 => EntryKind::ConfChangeV2,
        _ => return None,
    })
}

/// Flag: the entry carries Kafka offsets (`a` base, `b` last, `c` max timestamp).
pub const FLAG_KAFKA: u8 = 1;
/// Flag: the record is a copy of a live entry moved forward out of an old segment.
pub const FLAG_RELOCATED: u8 = 2;
const KNOWN_FLAGS: u8 = FLAG_KAFKA | FLAG_RELOCATED;

/// Decoded fixed part of a record. Field meaning depends on `rtype` (see FORMAT.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Total record bytes, header included.
    pub len: u32,
    pub rtype: RecordType,
    pub kind: EntryKind,
    pub flags: u8,
    /// `record_lsn - durable_lsn` when the record was staged, saturated at `u32::MAX`.
    /// Recovery uses it to prove that a damaged record before this one had been made durable.
    pub durable_back: u32,
    pub group: u64,
    pub term: u64,
    pub index: u64,
    pub a: i64,
    pub b: i64,
    pub c: i64,
}

impl RecordHeader {
    /// A header of type `rtype` for `group` with every other field zero.
    pub fn new(rtype: RecordType, group: u64) -> Self {
        RecordHeader {
            len: RECORD_HEADER_BYTES as u32,
            rtype,
            kind: EntryKind::Normal,
            flags: 0,
            durable_back: 0,
            group,
            term: 0,
            index: 0,
            a: 0,
            b: 0,
            c: 0,
        }
    }
}

/// Why bytes at a position are not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The length field is zero: zero padding, i.e. the end of written data.
    Zero,
    /// Fewer bytes remain than the header or the declared length.
    Truncated,
    /// Length below the header size or above the payload limit.
    BadLength,
    /// Unknown record type, entry kind or flag bits, or a non-zero reserved byte.
    BadField,
    /// CRC32C mismatch.
    BadCrc,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            DecodeError::Zero => "zero length (padding)",
            DecodeError::Truncated => "record extends past the end of the file",
            DecodeError::BadLength => "record length out of range",
            DecodeError::BadField => "unknown type, kind, flags or non-zero reserved byte",
            DecodeError::BadCrc => "crc32c mismatch",
        };
        f.write_str(s)
    }
}

/// Encodes `h` (with `h.len` already equal to header + payload length) into `out`, computing the
/// CRC32C over the header (minus the CRC field) and `payload`.
/// `seed` is the segment's [`record_seed`].
pub fn encode_header(
    seed: u32,
    h: &RecordHeader,
    payload: &[u8],
    out: &mut [u8; RECORD_HEADER_BYTES],
) {
    debug_assert_eq!(h.len as usize, RECORD_HEADER_BYTES + payload.len());
    fill_header(h, out);
    let crc = record_crc(seed, out, payload);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Like [`encode_header`] for a payload of `payload_len` bytes whose CRC32C the caller knows:
/// the record CRC is combined from it ([`crate::crc::combine`]) without reading the payload.
pub fn encode_header_known_crc(
    seed: u32,
    h: &RecordHeader,
    payload_len: usize,
    payload_crc: u32,
    out: &mut [u8; RECORD_HEADER_BYTES],
) {
    debug_assert_eq!(h.len as usize, RECORD_HEADER_BYTES + payload_len);
    fill_header(h, out);
    let crc = crate::crc::combine(record_crc(seed, out, &[]), payload_crc, payload_len as u64);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Every header field but the CRC.
fn fill_header(h: &RecordHeader, out: &mut [u8; RECORD_HEADER_BYTES]) {
    out[0..4].copy_from_slice(&h.len.to_le_bytes());
    out[8] = h.rtype as u8;
    out[9] = kind_to_u8(h.kind);
    out[10] = h.flags;
    out[11] = 0;
    out[12..16].copy_from_slice(&h.durable_back.to_le_bytes());
    out[16..24].copy_from_slice(&h.group.to_le_bytes());
    out[24..32].copy_from_slice(&h.term.to_le_bytes());
    out[32..40].copy_from_slice(&h.index.to_le_bytes());
    out[40..48].copy_from_slice(&h.a.to_le_bytes());
    out[48..56].copy_from_slice(&h.b.to_le_bytes());
    out[56..64].copy_from_slice(&h.c.to_le_bytes());
}

/// Initial CRC value of every record in a segment: 0 (plain CRC32C) for format version 1, the
/// CRC32C of the little-endian base LSN for version 2. Base LSNs never repeat, so a record from a
/// recycled file's previous life fails the CRC check in its new life.
pub fn record_seed(version: u32, base_lsn: u64) -> u32 {
    if version < 2 {
        0
    } else {
        crc32c::crc32c(&base_lsn.to_le_bytes())
    }
}

fn record_crc(seed: u32, header: &[u8], payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c_append(seed, &header[0..4]);
    let crc = crc32c::crc32c_append(crc, &header[8..RECORD_HEADER_BYTES]);
    crc32c::crc32c_append(crc, payload)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Cheap plausibility check of the header at the start of `buf` (no CRC). Used by the forward
/// search of recovery to skip garbage offsets before paying for a CRC.
pub fn plausible(buf: &[u8]) -> bool {
    if buf.len() < RECORD_HEADER_BYTES {
        return false;
    }
    let len = u32_at(buf, 0) as usize;
    (RECORD_HEADER_BYTES..=RECORD_HEADER_BYTES + MAX_PAYLOAD_BYTES).contains(&len)
        && len <= buf.len()
        && RecordType::from_u8(buf[8]).is_some()
        && kind_from_u8(buf[9]).is_some()
        && buf[10] & !KNOWN_FLAGS == 0
        && buf[11] == 0
}

/// Decodes one record at the start of `buf`, verifying its CRC against the segment's `seed`.
/// Returns the header and payload.
pub fn decode_record(seed: u32, buf: &[u8]) -> Result<(RecordHeader, &[u8]), DecodeError> {
    if buf.len() < 4 {
        return Err(if buf.iter().all(|&b| b == 0) {
            DecodeError::Zero
        } else {
            DecodeError::Truncated
        });
    }
    let len = u32_at(buf, 0) as usize;
    if len == 0 {
        return Err(DecodeError::Zero);
    }
    if !(RECORD_HEADER_BYTES..=RECORD_HEADER_BYTES + MAX_PAYLOAD_BYTES).contains(&len) {
        return Err(DecodeError::BadLength);
    }
    if buf.len() < len {
        return Err(DecodeError::Truncated);
    }
    let rec = &buf[..len];
    let (header, payload) = rec.split_at(RECORD_HEADER_BYTES);
    if record_crc(seed, header, payload) != u32_at(header, 4) {
        return Err(DecodeError::BadCrc);
    }
    let rtype = RecordType::from_u8(header[8]).ok_or(DecodeError::BadField)?;
    let kind = kind_from_u8(header[9]).ok_or(DecodeError::BadField)?;
    let flags = header[10];
    if flags & !KNOWN_FLAGS != 0 || header[11] != 0 {
        return Err(DecodeError::BadField);
    }
    Ok((
        RecordHeader {
            len: len as u32,
            rtype,
            kind,
            flags,
            durable_back: u32_at(header, 12),
            group: u64_at(header, 16),
            term: u64_at(header, 24),
            index: u64_at(header, 32),
            a: u64_at(header, 40) as i64,
            b: u64_at(header, 48) as i64,
            c: u64_at(header, 56) as i64,
        },
        payload,
    ))
}

/// Segment file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// LSN of byte 0 of this file. Invariant: equals the previous segment's `base_lsn` plus the
    /// end offset of its last record, which recovery checks (a sealed segment must end exactly
    /// where the next one begins).
    pub base_lsn: u64,
    /// The roll size configured when the file was created (informational).
    pub segment_bytes: u64,
    /// Format version the segment was written with (decides the record CRC seed).
    pub version: u32,
    /// [`SEG_FLAG_RECYCLED`]: stale bytes may follow the last record.
    pub recycled: bool,
}

impl SegmentHeader {
    /// A header for a segment written by this version.
    pub fn new(base_lsn: u64, segment_bytes: u64, recycled: bool) -> Self {
        SegmentHeader {
            base_lsn,
            segment_bytes,
            version: FORMAT_VERSION,
            recycled,
        }
    }

    /// The CRC seed of this segment's records.
    pub fn seed(&self) -> u32 {
        record_seed(self.version, self.base_lsn)
    }
}

/// Encodes a segment header.
pub fn encode_segment_header(h: &SegmentHeader) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut out = [0u8; SEGMENT_HEADER_BYTES];
    out[0..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..12].copy_from_slice(&h.version.to_le_bytes());
    out[12..16].copy_from_slice(&(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
    out[16..24].copy_from_slice(&h.base_lsn.to_le_bytes());
    out[24..32].copy_from_slice(&h.segment_bytes.to_le_bytes());
    if h.recycled {
        out[32..36].copy_from_slice(&SEG_FLAG_RECYCLED.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out[0..60]);
    out[60..64].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes and validates a segment header.
pub fn decode_segment_header(buf: &[u8]) -> Result<SegmentHeader, String> {
    if buf.len() < SEGMENT_HEADER_BYTES {
        return Err(format!(
            "file shorter ({}) than the segment header",
            buf.len()
        ));
    }
    if buf[0..8] != SEGMENT_MAGIC {
        return Err("bad segment magic".into());
    }
    if crc32c::crc32c(&buf[0..60]) != u32_at(buf, 60) {
        return Err("segment header crc32c mismatch".into());
    }
    let version = u32_at(buf, 8);
    if !(1..=FORMAT_VERSION).contains(&version) {
        return Err(format!("unsupported format version {version}"));
    }
    if u32_at(buf, 12) as usize != SEGMENT_HEADER_BYTES {
        return Err("unexpected segment header length".into());
    }
    let flags = u32_at(buf, 32);
    if flags & !SEG_FLAG_RECYCLED != 0 || (version < 2 && flags != 0) {
        return Err(format!("unknown segment header flags {flags:#x}"));
    }
    Ok(SegmentHeader {
        base_lsn: u64_at(buf, 16),
        segment_bytes: u64_at(buf, 24),
        version,
        recycled: flags & SEG_FLAG_RECYCLED != 0,
    })
}

/// Hard-state payload: term, vote, commit.
pub const HARD_STATE_BYTES: usize = 24;

pub fn encode_hard_state(hs: &HardState) -> [u8; HARD_STATE_BYTES] {
    let mut out = [0u8; HARD_STATE_BYTES];
    out[0..8].copy_from_slice(&hs.term.to_le_bytes());
    out[8..16].copy_from_slice(&hs.vote.to_le_bytes());
    out[16..24].copy_from_slice(&hs.commit.to_le_bytes());
    out
}

pub fn decode_hard_state(p: &[u8]) -> Option<HardState> {
    if p.len() != HARD_STATE_BYTES {
        return None;
    }
    Some(HardState {
        term: u64_at(p, 0),
        vote: u64_at(p, 8),
        commit: u64_at(p, 16),
    })
}

/// Conf-state payload: four (u32 count, count × u64) lists then one byte auto_leave.
pub fn encode_conf_state(cs: &ConfState, out: &mut Vec<u8>) {
    out.clear();
    for list in [
        &cs.voters,
        &cs.learners,
        &cs.voters_outgoing,
        &cs.learners_next,
    ] {
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for id in list.iter() {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    out.push(cs.auto_leave as u8);
}

pub fn decode_conf_state(p: &[u8]) -> Option<ConfState> {
    let mut pos = 0usize;
    let mut lists: [Vec<u64>; 4] = Default::default();
    for list in lists.iter_mut() {
        if p.len() < pos + 4 {
            return None;
        }
        let n = u32_at(p, pos) as usize;
        pos += 4;
        // Bound before allocating: the count comes from disk.
        if n > MAX_CONF_NODES || p.len() < pos + n * 8 {
            return None;
        }
        list.reserve_exact(n);
        for _ in 0..n {
            list.push(u64_at(p, pos));
            pos += 8;
        }
    }
    if p.len() != pos + 1 || p[pos] > 1 {
        return None;
    }
    let [voters, learners, voters_outgoing, learners_next] = lists;
    Some(ConfState {
        voters,
        learners,
        voters_outgoing,
        learners_next,
        auto_leave: p[pos] == 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The seed of a version 2 segment at base 4096.
    const SEED: u32 = 0x1234_5678;

    fn random_header(rng: &mut ChaCha8Rng, payload_len: usize) -> RecordHeader {
        let rtype = RecordType::from_u8(rng.gen_range(1..=9)).unwrap();
        RecordHeader {
            len: (RECORD_HEADER_BYTES + payload_len) as u32,
            rtype,
            kind: kind_from_u8(rng.gen_range(0..3)).unwrap(),
            flags: rng.gen_range(0..=KNOWN_FLAGS),
            durable_back: rng.gen(),
            group: rng.gen(),
            term: rng.gen(),
            index: rng.gen(),
            a: rng.gen(),
            b: rng.gen(),
            c: rng.gen(),
        }
    }

    /// Round trip of random records, then every single-bit flip and every truncation of a
    /// record is detected (CRC32C detects all 1-bit errors; truncation fails the length check).
    #[test]
    fn record_round_trip_and_corruption_detected() {
        let seed = 0x5eed_0001u64;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for case in 0..200 {
            let plen = rng.gen_range(0..300);
            let payload: Vec<u8> = (0..plen).map(|_| rng.gen()).collect();
            let h = random_header(&mut rng, plen);
            let mut hb = [0u8; RECORD_HEADER_BYTES];
            encode_header(SEED, &h, &payload, &mut hb);
            // A payload CRC known in advance gives the same header.
            let mut known = [0u8; RECORD_HEADER_BYTES];
            encode_header_known_crc(SEED, &h, plen, crc32c::crc32c(&payload), &mut known);
            assert_eq!(known, hb, "seed {seed} case {case}");
            let mut rec = hb.to_vec();
            rec.extend_from_slice(&payload);
            let (d, p) = decode_record(SEED, &rec)
                .unwrap_or_else(|e| panic!("seed {seed} case {case}: {e}"));
            assert_eq!(d, h, "seed {seed} case {case}");
            assert_eq!(p, &payload[..]);
            assert!(plausible(&rec));
            // Every bit flip anywhere in the record is detected.
            for bit in 0..rec.len() * 8 {
                let mut bad = rec.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(
                    decode_record(SEED, &bad).is_err(),
                    "seed {seed} case {case} bit {bit} undetected"
                );
            }
            // Every truncation is detected.
            for cut in 0..rec.len() {
                assert!(
                    decode_record(SEED, &rec[..cut]).is_err(),
                    "seed {seed} case {case} cut {cut}"
                );
            }
        }
    }

    /// Decoder fuzz: random and mutated bytes never panic, and whatever decodes re-encodes to
    /// the same bytes (so a "valid" decode cannot be a misparse).
    #[test]
    fn decoders_never_panic_on_garbage() {
        let seed = 0x5eed_0002u64;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut valid = [0u8; RECORD_HEADER_BYTES];
        encode_header(
            SEED,
            &RecordHeader::new(RecordType::CreateGroup, 3),
            &[],
            &mut valid,
        );
        for case in 0..20_000 {
            let len = rng.gen_range(0..200);
            let mut buf: Vec<u8> = if rng.gen_bool(0.5) {
                (0..len).map(|_| rng.gen()).collect()
            } else {
                // Mutations of a valid record: more likely to reach the deeper checks.
                let mut b = valid.to_vec();
                for _ in 0..rng.gen_range(1..4) {
                    let i = rng.gen_range(0..b.len());
                    b[i] = rng.gen();
                }
                b.truncate(rng.gen_range(0..=b.len()));
                b
            };
            if let Ok((h, p)) = decode_record(SEED, &buf) {
                let mut again = [0u8; RECORD_HEADER_BYTES];
                encode_header(SEED, &h, p, &mut again);
                assert_eq!(
                    &again[..],
                    &buf[..RECORD_HEADER_BYTES],
                    "seed {seed} case {case}"
                );
            }
            let _ = plausible(&buf);
            let _ = decode_segment_header(&buf);
            let _ = decode_conf_state(&buf);
            let _ = decode_hard_state(&buf);
            buf.clear();
        }
    }

    #[test]
    fn zero_bytes_are_padding() {
        assert_eq!(decode_record(SEED, &[0u8; 100]), Err(DecodeError::Zero));
        assert_eq!(decode_record(SEED, &[0u8; 2]), Err(DecodeError::Zero));
        assert_eq!(decode_record(SEED, &[1u8; 2]), Err(DecodeError::Truncated));
    }

    #[test]
    fn oversize_length_rejected_before_slicing() {
        let mut buf = vec![0u8; 128];
        buf[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_record(SEED, &buf), Err(DecodeError::BadLength));
        buf[0..4].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(decode_record(SEED, &buf), Err(DecodeError::BadLength));
    }

    #[test]
    fn segment_header_round_trip_and_flips() {
        for recycled in [false, true] {
            let h = SegmentHeader::new(123_456, 1 << 28, recycled);
            let b = encode_segment_header(&h);
            assert_eq!(decode_segment_header(&b).unwrap(), h);
        }
        let h = SegmentHeader::new(123_456, 1 << 28, true);
        let b = encode_segment_header(&h);
        for bit in 0..SEGMENT_HEADER_BYTES * 8 {
            let mut bad = b;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_segment_header(&bad).is_err(), "bit {bit}");
        }
        assert!(decode_segment_header(&b[..10]).is_err());
    }

    #[test]
    fn state_payloads_round_trip_and_reject_garbage() {
        let hs = HardState {
            term: 5,
            vote: 2,
            commit: 99,
        };
        assert_eq!(decode_hard_state(&encode_hard_state(&hs)), Some(hs));
        assert_eq!(decode_hard_state(&[0u8; 3]), None);
        let cs = ConfState {
            voters: vec![1, 2, 3],
            learners: vec![4],
            voters_outgoing: vec![],
            learners_next: vec![9, 10],
            auto_leave: true,
        };
        let mut buf = Vec::new();
        encode_conf_state(&cs, &mut buf);
        assert_eq!(decode_conf_state(&buf), Some(cs));
        for cut in 0..buf.len() {
            assert_eq!(decode_conf_state(&buf[..cut]), None, "cut {cut}");
        }
        let mut huge = Vec::new();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_conf_state(&huge), None);
    }

    /// A record of one segment life never validates under another base LSN's seed (what makes
    /// recycled files safe), and version 1 records (seed 0) still decode.
    #[test]
    fn records_do_not_validate_under_another_segments_seed() {
        let h = RecordHeader::new(RecordType::CreateGroup, 9);
        let mut hb = [0u8; RECORD_HEADER_BYTES];
        let old = record_seed(FORMAT_VERSION, 0);
        encode_header(old, &h, &[], &mut hb);
        assert!(decode_record(old, &hb).is_ok());
        for base in [64u64, 4096, 1 << 28, u64::MAX] {
            let new = record_seed(FORMAT_VERSION, base);
            assert_eq!(
                decode_record(new, &hb),
                Err(DecodeError::BadCrc),
                "base {base}"
            );
        }
        assert_eq!(record_seed(1, 12345), 0);
        encode_header(0, &h, &[], &mut hb);
        assert_eq!(
            crc32c::crc32c(&[&hb[0..4], &hb[8..]].concat()),
            u32_at(&hb, 4)
        );
    }
}
