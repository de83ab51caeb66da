//! Start-up scan: read every segment in LSN order, verify every CRC, replay the records into
//! per-group indexes, and cut a torn tail of the newest segment.
//!
//! Rules:
//! - A sealed (not newest) segment must be intact up to exactly the base of the next segment: the
//!   writer fdatasyncs a segment before it writes a byte of the next one, so any bad byte there is
//!   corruption of durable data and a hard [`StorageError::Corrupt`] naming file and position.
//! - In the newest segment, zeros after the last record are the normal end (zero padding). A bad
//!   record is a torn tail and is cut, unless some valid record after it proves that the bad one
//!   had been made durable: every record carries `durable_back`, the distance back to the durable
//!   LSN when it was staged; if that durable point lies at or beyond the start of the first valid
//!   record after the damage, the damaged bytes were durable, so this is a hole, not a tail.
//! - A recycled segment (header flag) may hold stale records of its previous life after the last
//!   record. They are CRC-invalid under this segment's seed (format version 2 seeds record CRCs
//!   with the base LSN), so if no record valid under the current seed follows the end, the rest
//!   is stale, not a torn tail: nothing is cut.
//! - Spare files (`<old base>.spare`, recycled segments waiting for reuse) are listed, never read.
//! - Replay is last-writer-wins per index in log order (relocated copies of live entries appear
//!   after later history; see `wal.rs` reclamation), followed by a contiguity check per group.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use crate::disk::{read_full, Disk, SegmentFile, WriteMode};
use crate::error::{Result, StorageError};
use crate::format::{
    self, DecodeError, RecordType, FLAG_KAFKA, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::group::{EntryLoc, Group, Pin};
use crate::{ConfState, GroupId, HardState, KafkaMeta, RecoveryReport};

/// Largest segment file recovery will read into memory (bounds the allocation).
pub const MAX_SEGMENT_FILE_BYTES: u64 = 4 << 30;
/// Upper bound on segment files in one WAL directory.
pub const MAX_SEGMENTS: usize = 1 << 16;

pub fn segment_path(dir: &Path, base_lsn: u64) -> PathBuf {
    dir.join(format!("{base_lsn:020}.wal"))
}

/// Path of a recycled segment file waiting for reuse (named after its last base LSN).
pub fn spare_path(dir: &Path, old_base: u64) -> PathBuf {
    dir.join(format!("{old_base:020}.spare"))
}

pub(crate) fn parse_segment_name(p: &Path) -> Option<u64> {
    parse_name(p, ".wal")
}

fn parse_name(p: &Path, ext: &str) -> Option<u64> {
    let name = p.file_name()?.to_str()?;
    let stem = name.strip_suffix(ext)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub struct RecoveredSegment {
    pub base: u64,
    pub path: PathBuf,
    pub file: Rc<dyn SegmentFile>,
    /// End offset of the last valid record.
    pub end_offset: u64,
    /// Record CRC seed of this segment.
    pub seed: u32,
    /// Roll size recorded in its header.
    pub roll_bytes: u64,
}

pub struct Recovered {
    pub segments: Vec<RecoveredSegment>,
    pub groups: HashMap<GroupId, Group>,
    /// Bytes `[align_down(end), end)` of the newest segment (the partially filled block).
    pub carry: Vec<u8>,
    /// Spare (recycled) files found, oldest name first.
    pub spares: Vec<PathBuf>,
    pub report: RecoveryReport,
}

#[derive(Default)]
struct RGroup {
    entries: BTreeMap<u64, EntryLoc>,
    snapshot_index: u64,
    snapshot_term: u64,
    hard_state: HardState,
    conf_state: ConfState,
    log_start: i64,
    offset_floor: i64,
    pins: [Option<u64>; crate::group::PIN_KINDS],
}

fn corrupt(path: &Path, position: u64, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        position,
        reason: reason.into(),
    }
}

/// Most bytes the forward search may run through CRC32C while looking for valid records after
/// damage. Garbage rarely passes the plausibility check, but payloads could embed record-like
/// bytes; past this budget recovery stops guessing and reports corruption instead.
pub const MAX_PROBE_CRC_BYTES: u64 = 1 << 30;

/// First offset >= from holding a record that decodes with a valid CRC. `Err` when the CRC
/// budget is exhausted.
fn find_next_valid(
    seed: u32,
    buf: &[u8],
    from: usize,
    budget: &mut u64,
) -> std::result::Result<Option<usize>, ()> {
    // Bounded by buf.len(); the plausibility check keeps the CRC off most offsets.
    for q in from..buf.len().saturating_sub(RECORD_HEADER_BYTES - 1) {
        if !format::plausible(&buf[q..]) {
            continue;
        }
        let len = u32::from_le_bytes([buf[q], buf[q + 1], buf[q + 2], buf[q + 3]]) as u64;
        *budget = budget.checked_sub(len).ok_or(())?;
        if format::decode_record(seed, &buf[q..]).is_ok() {
            return Ok(Some(q));
        }
    }
    Ok(None)
}

enum Proof {
    /// A valid record after the damage shows the damaged bytes had been durable.
    Durable { at: usize, hint: u64 },
    /// The forward search gave up (budget); treat as corruption rather than guess.
    Undecided,
}

/// Looks after a bad record at `bad` for a valid record proving the bad one was durable.
fn durability_proof(seed: u32, buf: &[u8], base: u64, bad: usize) -> Option<Proof> {
    let mut budget = MAX_PROBE_CRC_BYTES;
    let first = match find_next_valid(seed, buf, bad + 1, &mut budget) {
        Ok(Some(q)) => q,
        Ok(None) => return None,
        Err(()) => return Some(Proof::Undecided),
    };
    let first_lsn = base + first as u64;
    let mut p = first;
    // Bounded: p strictly increases towards buf.len().
    while p < buf.len() {
        match format::decode_record(seed, &buf[p..]) {
            Ok((h, _)) => {
                if h.durable_back != u32::MAX {
                    let hint = (base + p as u64).saturating_sub(h.durable_back as u64);
                    if hint >= first_lsn {
                        return Some(Proof::Durable { at: p, hint });
                    }
                }
                p += h.len as usize;
            }
            Err(_) => match find_next_valid(seed, buf, p + 1, &mut budget) {
                Ok(Some(q)) => p = q,
                Ok(None) => break,
                Err(()) => return Some(Proof::Undecided),
            },
        }
    }
    None
}

fn apply(
    groups: &mut BTreeMap<GroupId, RGroup>,
    seg_base: u64,
    pos: u64,
    h: &format::RecordHeader,
    payload: &[u8],
    path: &Path,
) -> Result<()> {
    let bad = |why: &str| {
        corrupt(
            path,
            pos,
            format!("{:?} record of group {}: {why}", h.rtype, h.group),
        )
    };
    match h.rtype {
        RecordType::Padding => {}
        RecordType::RemoveGroup => {
            groups.remove(&h.group);
        }
        RecordType::CreateGroup => {
            groups.entry(h.group).or_default().pins[Pin::Create as usize] = Some(seg_base);
        }
        RecordType::Entry => {
            let g = groups.entry(h.group).or_default();
            let kafka = if h.flags & FLAG_KAFKA != 0 {
                Some(KafkaMeta {
                    base_offset: h.a,
                    last_offset: h.b,
                    max_timestamp: h.c,
                })
            } else {
                None
            };
            g.entries.insert(
                h.index,
                EntryLoc {
                    term: h.term,
                    lsn: seg_base + pos,
                    payload_len: payload.len() as u32,
                    kind: h.kind,
                    kafka,
                    cached: None,
                },
            );
        }
        RecordType::HardState => {
            let g = groups.entry(h.group).or_default();
            g.hard_state = format::decode_hard_state(payload).ok_or_else(|| bad("bad payload"))?;
            g.pins[Pin::HardState as usize] = Some(seg_base);
        }
        RecordType::ConfState => {
            let g = groups.entry(h.group).or_default();
            g.conf_state = format::decode_conf_state(payload).ok_or_else(|| bad("bad payload"))?;
            g.pins[Pin::ConfState as usize] = Some(seg_base);
        }
        RecordType::TruncateSuffix => {
            let g = groups.entry(h.group).or_default();
            drop(g.entries.split_off(&h.index));
        }
        RecordType::CompactPrefix => {
            if h.index == 0 {
                return Err(bad("compact point 0"));
            }
            let g = groups.entry(h.group).or_default();
            g.entries = g.entries.split_off(&h.index);
            g.snapshot_index = h.index - 1;
            g.snapshot_term = h.term;
            g.offset_floor = h.a;
            g.pins[Pin::Compact as usize] = Some(seg_base);
        }
        RecordType::LogStart => {
            let g = groups.entry(h.group).or_default();
            g.log_start = g.log_start.max(h.a);
            g.pins[Pin::LogStart as usize] = Some(seg_base);
        }
    }
    Ok(())
}

/// Opens `path` and reads up to a segment header's worth of bytes from its start.
async fn open_and_read_head(
    disk: &dyn Disk,
    path: &Path,
) -> Result<(Rc<dyn SegmentFile>, [u8; SEGMENT_HEADER_BYTES], usize)> {
    let file = disk
        .open(path, WriteMode::Deferred)
        .await
        .map_err(|e| StorageError::io("open", path, None, e))?;
    let mut head = [0u8; SEGMENT_HEADER_BYTES];
    let n =
        read_full(&*file, 0, &mut head).map_err(|e| StorageError::io("read", path, Some(0), e))?;
    Ok((file, head, n))
}

/// A roll into a recycled file renames it (`<old>.spare` → `<new base>.wal`) and, unlike a roll
/// into a new file, does not wait for the directory fsync: the file's identity is its header.
/// So a crash may leave a reused file under its spare name (or, if its earlier rename to spare
/// was not durable either, under its old segment name) with a header naming a *later* base
/// than its name: such a file is that later segment, and gets its proper name back here. A
/// header naming an *earlier* base than the file name is a torn roll (rename durable, header
/// never written), handled with the newest segment below.
async fn adopt_reused_files(
    disk: &dyn Disk,
    dir: &Path,
    names: &mut Vec<(u64, PathBuf)>,
    spares: &mut Vec<(u64, PathBuf)>,
) -> Result<()> {
    let mut adopted: Vec<(u64, PathBuf)> = Vec::new();
    for list in [&mut *names, &mut *spares] {
        let mut k = 0;
        // Bounded by the list length; each iteration advances or removes one element.
        while k < list.len() {
            let (named, path) = list[k].clone();
            let (_, head, n) = open_and_read_head(disk, &path).await?;
            match format::decode_segment_header(&head[..n]) {
                Ok(h) if h.base_lsn > named => {
                    let to = segment_path(dir, h.base_lsn);
                    tracing::info!(from = ?path, to = ?to, "adopting a recycled wal segment whose rename was not durable");
                    disk.rename(&path, &to)
                        .await
                        .map_err(|e| StorageError::io("rename", &path, None, e))?;
                    list.remove(k);
                    adopted.push((h.base_lsn, to));
                }
                _ => k += 1,
            }
        }
    }
    if !adopted.is_empty() {
        for (base, to) in adopted {
            if names.iter().any(|(b, _)| *b == base) {
                return Err(corrupt(
                    &to,
                    0,
                    format!("two segment files claim base lsn {base}"),
                ));
            }
            names.push((base, to));
        }
        disk.sync_dir(dir)
            .await
            .map_err(|e| StorageError::io("sync_dir", dir, None, e))?;
    }
    Ok(())
}

/// Scans `dir` and rebuilds the WAL state.
/// `segment_bytes` is the configured roll size: a cut newest segment is re-preallocated to it.
///
/// Segment files stay open in [`Recovered::segments`] with `mode`: the WAL goes on writing the
/// newest one through that descriptor.
pub async fn recover(
    disk: &dyn Disk,
    dir: &Path,
    segment_bytes: u64,
    mode: WriteMode,
) -> Result<Recovered> {
    let started = Instant::now();
    let mut report = RecoveryReport::default();
    disk.create_dir_all(dir)
        .map_err(|e| StorageError::io("create_dir", dir, None, e))?;
    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    let mut spares: Vec<(u64, PathBuf)> = Vec::new();
    for p in disk
        .list(dir)
        .map_err(|e| StorageError::io("list", dir, None, e))?
    {
        match (parse_segment_name(&p), parse_name(&p, ".spare")) {
            (Some(base), _) => names.push((base, p)),
            (None, Some(old)) => spares.push((old, p)),
            (None, None) => {
                tracing::warn!(path = ?p, "ignoring non-segment file in wal directory")
            }
        }
        if names.len() + spares.len() > MAX_SEGMENTS {
            return Err(corrupt(
                dir,
                0,
                format!("more than {MAX_SEGMENTS} segment files"),
            ));
        }
    }
    adopt_reused_files(disk, dir, &mut names, &mut spares).await?;
    names.sort();
    spares.sort();

    // A roll creates the next segment only after the previous one is fdatasynced, so a newest
    // segment whose header never reached the disk holds nothing durable: remove it. A recycled
    // file renamed into place still carries its old header (another base LSN): same case.
    if let Some((base, path)) = names.last().cloned() {
        let (file, head, n) = open_and_read_head(disk, &path).await?;
        let header = format::decode_segment_header(&head[..n]).and_then(|h| {
            if h.base_lsn == base {
                Ok(h)
            } else {
                Err(format!(
                    "header of base lsn {} (a recycled file)",
                    h.base_lsn
                ))
            }
        });
        if let Err(why) = header {
            let size = file
                .size()
                .map_err(|e| StorageError::io("stat", &path, None, e))?;
            if size > MAX_SEGMENT_FILE_BYTES {
                return Err(corrupt(&path, 0, why));
            }
            // Valid records may follow (blocks of the first, unsynced write that did land). Only
            // if one of them proves the header had been made durable is this damage, not a torn
            // roll (same rule as for a torn tail, see `durability_proof`).
            let mut all = vec![0u8; size as usize];
            let n = read_full(&*file, 0, &mut all)
                .map_err(|e| StorageError::io("read", &path, Some(0), e))?;
            let seed = format::record_seed(format::FORMAT_VERSION, base);
            match durability_proof(seed, &all[..n], base, 0) {
                None => {}
                Some(Proof::Durable { at, hint }) => {
                    let why =
                        format!("{why}; the record at byte {at} shows lsn {hint} was durable");
                    return Err(corrupt(&path, 0, why));
                }
                Some(Proof::Undecided) => {
                    let why = format!("{why}, and too many record-like bytes follow");
                    return Err(corrupt(&path, 0, why));
                }
            }
            tracing::warn!(path = ?path, %why, "removing newest segment with an unwritten header");
            report.truncated_tail_bytes += size;
            drop(file);
            disk.remove(&path)
                .await
                .map_err(|e| StorageError::io("remove", &path, None, e))?;
            disk.sync_dir(dir)
                .await
                .map_err(|e| StorageError::io("sync_dir", dir, None, e))?;
            names.pop();
        }
    }

    let mut groups: BTreeMap<GroupId, RGroup> = BTreeMap::new();
    let mut segments: Vec<RecoveredSegment> = Vec::new();
    let mut carry = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    // Bounded by the number of segment files.
    for i in 0..names.len() {
        let (base, path) = names[i].clone();
        let newest = i + 1 == names.len();
        let file = disk
            .open(&path, mode)
            .await
            .map_err(|e| StorageError::io("open", &path, None, e))?;
        let size = file
            .size()
            .map_err(|e| StorageError::io("stat", &path, None, e))?;
        if size > MAX_SEGMENT_FILE_BYTES {
            return Err(corrupt(
                &path,
                0,
                format!("segment file of {size} bytes exceeds {MAX_SEGMENT_FILE_BYTES}"),
            ));
        }
        // One buffer reused across segments: fresh memory would cost page faults per segment.
        buf.clear();
        buf.resize(size as usize, 0);
        let n = read_full(&*file, 0, &mut buf)
            .map_err(|e| StorageError::io("read", &path, Some(0), e))?;
        buf.truncate(n);
        report.bytes_scanned += n as u64;

        let header = match format::decode_segment_header(&buf) {
            Ok(h) if h.base_lsn == base => h,
            Ok(h) => {
                return Err(corrupt(
                    &path,
                    0,
                    format!("header base lsn {} does not match file name", h.base_lsn),
                ))
            }
            Err(why) => return Err(corrupt(&path, 0, why)),
        };
        let seed = header.seed();
        if let Some(prev) = segments.last() {
            if prev.base + prev.end_offset != base {
                return Err(corrupt(
                    &prev.path,
                    prev.end_offset,
                    format!(
                        "segment ends at lsn {} but the next begins at {base}",
                        prev.base + prev.end_offset
                    ),
                ));
            }
        }
        let expected_end = if newest {
            None
        } else {
            Some(names[i + 1].0.saturating_sub(base))
        };

        let mut pos = SEGMENT_HEADER_BYTES;
        let mut failure: Option<DecodeError> = None;
        // Bounded: pos strictly increases (every record is at least the header size).
        while pos < buf.len() {
            if let Some(end) = expected_end {
                if pos as u64 >= end {
                    break;
                }
            }
            match format::decode_record(seed, &buf[pos..]) {
                Ok((h, payload)) => {
                    apply(&mut groups, base, pos as u64, &h, payload, &path)?;
                    if h.rtype == RecordType::Entry {
                        report.entries += 1;
                    }
                    pos += h.len as usize;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(end) = expected_end {
            if pos as u64 != end {
                let why = failure
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "sealed segment shorter than its successor's base".into());
                return Err(corrupt(
                    &path,
                    pos as u64,
                    format!("sealed segment damaged: {why}"),
                ));
            }
        } else if pos < buf.len() {
            let rest_zero = buf[pos..].iter().all(|&b| b == 0);
            // In a recycled file, stale records of the previous life follow the end; they only
            // matter if some record of this life (valid under this seed) lies beyond the end.
            let stale_only = header.recycled && {
                let mut budget = MAX_PROBE_CRC_BYTES;
                matches!(find_next_valid(seed, &buf, pos + 1, &mut budget), Ok(None))
            };
            if !rest_zero && !stale_only {
                let what = failure
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "zero gap".into());
                match durability_proof(seed, &buf, base, pos) {
                    Some(Proof::Durable { at, hint }) => {
                        return Err(corrupt(
                            &path,
                            pos as u64,
                            format!("{what} followed by valid records; the record at byte {at} shows lsn {hint} was durable"),
                        ));
                    }
                    Some(Proof::Undecided) => {
                        return Err(corrupt(
                            &path,
                            pos as u64,
                            format!("{what}; too many record-like bytes after it to tell a torn tail from a hole"),
                        ));
                    }
                    None => {}
                }
                // Count the damaged bytes, not the preallocated zeros after them.
                let last_nonzero = buf.iter().rposition(|&b| b != 0).map_or(pos, |k| k + 1);
                let cut = last_nonzero.max(pos) - pos;
                tracing::warn!(path = ?path, position = pos, bytes = cut, "cutting torn wal tail");
                report.truncated_tail_bytes += cut as u64;
                file.truncate(pos as u64)
                    .await
                    .map_err(|e| StorageError::io("truncate", &path, Some(pos as u64), e))?;
                // Truncating dropped the preallocation (and zeroed the garbage); restore it.
                file.preallocate(segment_bytes.max(pos as u64))
                    .await
                    .map_err(|e| StorageError::io("fallocate", &path, None, e))?;
                file.fdatasync()
                    .await
                    .map_err(|e| StorageError::io("fdatasync", &path, None, e))?;
            }
        }
        if newest {
            let from = crate::staging::align_down(pos as u64) as usize;
            carry = buf[from..pos].to_vec();
        }
        segments.push(RecoveredSegment {
            base,
            path,
            file,
            end_offset: pos as u64,
            seed,
            roll_bytes: header.segment_bytes,
        });
    }

    let mut out_groups = HashMap::with_capacity(groups.len());
    let where_ = segments
        .last()
        .map(|s| s.path.clone())
        .unwrap_or_else(|| dir.to_path_buf());
    for (gid, rg) in groups {
        let mut g = Group {
            snapshot_index: rg.snapshot_index,
            snapshot_term: rg.snapshot_term,
            hard_state: rg.hard_state,
            conf_state: rg.conf_state,
            log_start: rg.log_start,
            offset_floor: rg.offset_floor,
            pins: rg.pins,
            ..Group::default()
        };
        for (index, loc) in rg.entries {
            if index != g.last_index() + 1 {
                return Err(corrupt(
                    &where_,
                    0,
                    format!(
                        "group {gid}: entry {index} found after {} (hole in the log)",
                        g.last_index()
                    ),
                ));
            }
            if let (Some(k), Some(&(last, _))) = (loc.kafka, g.data.back()) {
                if k.base_offset <= last || k.last_offset < k.base_offset {
                    return Err(corrupt(
                        &where_,
                        loc.lsn,
                        format!("group {gid}: entry {index} kafka offsets not increasing"),
                    ));
                }
            }
            g.push(index, loc);
        }
        out_groups.insert(gid, g);
    }
    report.segments = segments.len();
    report.duration = started.elapsed();
    tracing::info!(
        dir = ?dir,
        segments = report.segments,
        bytes_scanned = report.bytes_scanned,
        entries = report.entries,
        truncated_tail_bytes = report.truncated_tail_bytes,
        duration_ms = report.duration.as_millis() as u64,
        "wal recovered"
    );
    let shard = crate::metrics::shard_label(dir);
    metrics::gauge!(crate::metrics::RECOVERY_DURATION_SECONDS, "shard" => shard.clone())
        .set(report.duration.as_secs_f64());
    metrics::gauge!(crate::metrics::RECOVERY_BYTES, "shard" => shard)
        .set(report.bytes_scanned as f64);
    Ok(Recovered {
        segments,
        groups: out_groups,
        carry,
        spares: spares.into_iter().map(|(_, p)| p).collect(),
        report,
    })
}
