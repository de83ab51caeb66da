//! The per-shard WAL: many Raft groups interleaved in one sequence of segment files.
//!
//! Life of an append: `append` validates, encodes the record into the staging buffers (in order,
//! synchronously), updates the group's index and copies the payload into the batch cache (or
//! keeps the caller's `Bytes`, `append_shared`), and returns the record's end LSN. The entry is
//! now visible to every read. `flush`/`sync` run a *round*: a write phase takes everything staged
//! by all groups and issues it as a few large aligned O_DIRECT writes; a sync phase fdatasyncs.
//! A sync phase may be in flight while the next write phase runs (round k+1 writes while round k
//! syncs). Callers that find the phase they need running wait for its end and usually find their
//! LSN covered, so N concurrent callers cost about one round, not N (group commit).
//!
//! Three watermarks, each monotonic: `staged_lsn` (appended) >= `written_lsn` (in the file) >=
//! `durable_lsn` (fdatasynced). `always`: `flush` returns once durable. `periodic`: `flush`
//! returns once written; `run_periodic_sync` makes it durable within `sync_interval_ms`;
//! `wait_durable(lsn)` awaits that without forcing a sync.
//!
//! Pipelined writes: `written_lsn` advances as each write completes, not when its whole round
//! ends, so the appenders it covers can stage their next records while the round's other writes
//! are still in flight. In deferred mode (not write-through), once at least a staging chunk
//! ([`PIPELINE_MIN_BYTES`]) is staged, a new write phase starts although earlier ones are still
//! in flight (up to [`MAX_WRITE_PHASES`]): the shard copies and checksums the next batches while
//! the device writes the previous ones. With serial rounds the WAL bench (1 MiB batches,
//! periodic) left the device idle while the shard staged: 62–77% of raw O_DIRECT bandwidth.
//! Rules that keep it correct:
//! - `written_lsn` covers a write's records only once it and every earlier write completed, and
//!   each completed write is counted in its segment's `write_seq` first (the sync phase syncs
//!   what that counts);
//! - a phase's write that rewrites the previous phase's carried partial block (`staging.rs`) is
//!   issued only after that phase's last write completed ([`Gate`]): two writes of one block in
//!   flight may land in either order;
//! - a phase that writes to another segment than the previous phase's last write waits until
//!   every earlier write completed, and no phase starts while it runs (the segment order
//!   invariant below).
//!
//! Write-through (`always` mode, `WalOptions::write_through`, the default): a round that is a
//! single write to a segment with nothing else unsynced goes through an O_DSYNC descriptor, so it
//! completes only once the kernel has made it durable (a device cache flush, or FUA where the
//! device has it). The write phase then advances `durable_lsn` itself and no sync phase runs.
//! Rounds of several writes (more than a 1 MiB staging chunk, or two segments) write plainly and
//! fdatasync once, as without write-through: one flush per write measured 20–35% less
//! throughput with 1 MiB batches. Per small round that is one I/O instead of a write, a completion, an fdatasync
//! (which the kernel always runs on an io_uring worker thread) and a second completion: fewer
//! wake-ups of the shard and of worker threads, which is what the latency of a busy 2-core host
//! is made of. Measured with `chronik-perf` latency-1k at 50 MB/s: produce p50 about 25% lower
//! and broker CPU 0.69 instead of 0.92 cores; ingest-1k throughput unchanged.
//!
//! Segment order invariant: before the first byte of segment k+1 is written, segment k is
//! fdatasynced. Recovery relies on it to tell a torn tail (newest segment only) from corruption.
//!
//! Reclamation: a segment can be deleted once no group needs any record in it (no live entry and
//! no latest state record). `reclaim` deletes such segments from the front; when the oldest
//! sealed segment is pinned by little live data, the live entries and state records are re-staged
//! at the tail ("rewritten forward", flagged `RELOCATED`), made durable, and the segment deleted.
//! Only once that segment has stopped draining, though: while retention or compaction keeps
//! deleting its records, copying them costs a read and a second write of data about to go (the
//! WAL bench with retention behind one fast group relocated 7% of what it appended, reading it
//! back). `WalOptions::relocate_after_ms` (10 s) of no shrinking is the sign
//! of a slow or idle group pinning the file. One `reclaim` call rewrites at most
//! [`RELOCATE_BUDGET_BYTES`] (and never past the unflushed-bytes limit); a larger job goes on
//! in the next calls, so relocation neither stalls the shard for long nor starves appends of
//! staging room.
//! Recovery replays last-writer-wins per index in log order, which gives the right result because
//! deletion only removes a prefix: every record that could override a relocated copy was written
//! after it.
//!
//! Payload replacement (log compaction): `replace_payload` re-stages a live entry with a new
//! payload but the same group, index, term and Kafka offsets, flagged `RELOCATED` like a
//! relocation; last-writer-wins replay takes it, and the original stops pinning its segment.
//! A header-only Kafka batch ([`EMPTY_KAFKA_BATCH_BYTES`]) is what remains of an entry whose
//! records were all compacted away; `read_batches` skips those.
//!
//! Recycling: a deleted segment file is renamed to a spare (up to `recycle_segments` of them)
//! and a later roll renames it into place instead of creating a fresh file. Appends into a
//! recycled file overwrite blocks that are already allocated *and written*; appends into a fresh
//! fallocated file write into unwritten extents, which on ext4 turns every fdatasync into a
//! journal commit (measured: fdatasync p50 191 µs into unwritten extents vs 63 µs on overwrite,
//! and O_DIRECT writes stall behind concurrent fdatasyncs). Stale records of the previous life
//! stay in the file but never validate: record CRCs are seeded with the base LSN.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cache::{Cache, CacheItem};
use crate::disk::{read_full, Disk, GlommioDisk, SegmentFile, WriteMode};
use crate::error::{Result, StorageError};
use crate::format::{
    self, RecordHeader, RecordType, SegmentHeader, FLAG_KAFKA, FLAG_RELOCATED, MAX_PAYLOAD_BYTES,
    RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::group::{EntryLoc, Group, Pin, PIN_KINDS};
use crate::metrics::WalStats;
use crate::prepare::{self, Spare, FIRST_SEGMENT_BYTES};
use crate::recovery::{self, segment_path, spare_path};
use crate::staging::{ChunkMemory, Staging};
use crate::{
    ConfState, EntryKind, EntryMeta, GroupId, GroupState, HardState, Lsn, RecoveryReport, SyncMode,
    WalOptions,
};

/// How this WAL's segment files are written (see the module notes, write-through).
fn write_mode(opts: &WalOptions) -> WriteMode {
    if opts.write_through && opts.sync_mode == SyncMode::Always {
        WriteMode::Through
    } else {
        WriteMode::Deferred
    }
}

/// What is left of one `reclaim` call's relocation budget ([`RELOCATE_BUDGET_BYTES`]).
struct Budget {
    full: u64,
    left: u64,
}

impl Budget {
    fn new(full: u64) -> Self {
        Budget { full, left: full }
    }

    /// Takes `bytes`; false if they do not fit, unless nothing was taken yet.
    fn take(&mut self, bytes: u64) -> bool {
        if bytes > self.left && self.left < self.full {
            return false;
        }
        self.left = self.left.saturating_sub(bytes);
        true
    }
}

/// One live entry `reclaim` rewrites forward: where its payload is, and the LSN that identifies
/// this copy of it (so a change while the read is in flight is noticed).
struct Relocation {
    group: GroupId,
    index: u64,
    lsn: u64,
    read: PlannedRead,
}

/// Reads the disk side of `reads` through io_uring, all at once (a blocking read would stall
/// every partition of the shard for the disk's latency); an empty buffer for a cached payload.
async fn read_planned<'a>(reads: impl Iterator<Item = &'a PlannedRead>) -> Result<Vec<Vec<u8>>> {
    futures::future::try_join_all(reads.map(|p| async move {
        match p {
            PlannedRead::Cached(_) => Ok(Vec::new()),
            PlannedRead::Disk(d) => d
                .file
                .read_at_async(d.off, d.len)
                .await
                .map_err(|err| StorageError::io("read", &d.path, Some(d.off), err)),
        }
    }))
    .await
}

/// The header of a new copy of entry `index` of group `g` (relocation, payload replacement):
/// the entry's term, kind and Kafka offsets, flagged `RELOCATED`.
fn relocated_header(g: GroupId, index: u64, e: &EntryLoc) -> RecordHeader {
    let mut h = RecordHeader::new(RecordType::Entry, g);
    h.term = e.term;
    h.index = index;
    h.kind = e.kind;
    h.flags = FLAG_RELOCATED;
    if let Some(kf) = e.kafka {
        h.flags |= FLAG_KAFKA;
        h.a = kf.base_offset;
        h.b = kf.last_offset;
        h.c = kf.max_timestamp;
    }
    h
}

/// Clears the flag when dropped (a `reclaim` that returns early or whose future is dropped).
struct ClearOnDrop<'a>(&'a Cell<bool>);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// Write phases that may be in flight at once (module notes, pipelined writes).
pub const MAX_WRITE_PHASES: usize = 4;
/// Staged bytes that make a write phase worth starting while others are in flight: one full
/// staging chunk. Less waits for the running phases to end and goes out with the next round
/// (group commit), instead of as a chain of small rewrites of the same block.
pub const PIPELINE_MIN_BYTES: u64 = crate::staging::CHUNK_BYTES as u64;
/// Most bytes that may be staged but not yet handed to a flush; beyond it `append` returns
/// [`StorageError::Backpressure`] so memory stays bounded if nobody flushes.
pub const MAX_UNFLUSHED_BYTES: u64 = 256 << 20;
/// A sealed segment whose live bytes are at most this percentage of `segment_bytes` is
/// rewritten forward by `reclaim` (cheap to move, and it would otherwise pin a whole file).
pub const RELOCATE_MAX_LIVE_PERCENT: u64 = 25;
/// Segments examined per `reclaim` call.
pub const MAX_RECLAIM_SEGMENTS: usize = 16;
/// Most record bytes one `reclaim` call rewrites forward (the default segment's relocation
/// limit, 25% of 256 MiB). Relocation holds what it reads in memory and stages it, so an
/// unbounded call could hold GiBs and fill the unflushed-bytes limit (appends would fail with
/// backpressure, and relocation itself could never finish a segment whose live bytes exceed
/// that limit). A larger job goes on in the next calls.
pub const RELOCATE_BUDGET_BYTES: u64 = 64 << 20;
/// A write round or fdatasync taking this long is logged (with where the time went).
pub const SLOW_IO: Duration = Duration::from_millis(100);
/// The periodic task reclaims about once per this many milliseconds.
pub const RECLAIM_INTERVAL_MS: u64 = 1000;
/// Largest `max_bytes`-independent number of batches one `read_batches` returns.
pub const MAX_FETCH_BATCHES: usize = 1 << 16;
/// Payload length of a header-only Kafka v2 batch (61 bytes, `recordsCount = 0`): what log
/// compaction leaves of an entry whose records were all superseded. Fetch skips such entries.
/// A produced batch always holds at least one record, so it is longer.
pub const EMPTY_KAFKA_BATCH_BYTES: u32 = 61;
/// Most header-only entries one `read_batches` steps over (an in-memory walk, no I/O).
pub const MAX_FETCH_SKIPPED_ENTRIES: usize = 1 << 20;

/// What one `reclaim` call did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReclaimReport {
    pub segments_deleted: usize,
    pub records_relocated: u64,
}

struct Segment {
    base: u64,
    /// Record CRC seed (format version 2: derived from `base`).
    seed: u32,
    path: PathBuf,
    /// A spare file to rename into place when the first flush needs the file.
    spare: Option<PathBuf>,
    /// Roll size (the header's `segment_bytes`): the file is made at least this long.
    roll: u64,
    /// `None` until the first flush creates the file.
    file: Option<Rc<dyn SegmentFile>>,
    /// Number of completed write batches to this file; `synced_seq` is the value covered by the
    /// last completed fdatasync. Invariant: synced_seq <= write_seq; unsynced iff they differ.
    write_seq: u64,
    synced_seq: u64,
    live_entries: u64,
    live_bytes: u64,
    /// Live bytes when `reclaim` last saw them shrink (or first looked), and when.
    drain_seen: Option<(u64, Instant)>,
}

struct Inner {
    groups: HashMap<GroupId, Group>,
    /// Invariant: sorted by base, contiguous in LSN; the last one receives appends.
    segments: VecDeque<Segment>,
    staging: Staging,
    /// Record CRC seed of the active (last) segment.
    active_seed: u32,
    /// Roll size of the active segment (its header's `segment_bytes`).
    active_roll: u64,
    /// When the active segment was started, and the fill rate (bytes/s) of the previous one.
    active_started: Instant,
    fill_rate: f64,
    /// Recycled and prepared segment files waiting for reuse, shared with the preparation task.
    /// Invariant: at most `recycle_segments + 1`.
    spares: Rc<RefCell<VecDeque<Spare>>>,
    /// LSN just past the last staged record. Invariant: written <= staged_lsn.
    staged_lsn: u64,
    cache: Cache,
    scratch: Vec<u8>,
    stats: WalStats,
    /// [`MAX_UNFLUSHED_BYTES`] (tests lower it).
    unflushed_limit: u64,
}

/// One shard's write-ahead log. Lives on one glommio executor (`!Send`); share it as `Rc<Wal>`.
pub struct Wal {
    opts: WalOptions,
    disk: Rc<dyn Disk>,
    inner: RefCell<Inner>,
    /// Write phases started and not yet ended (module notes, pipelined writes). Invariant: at
    /// most [`MAX_WRITE_PHASES`].
    phases: Cell<usize>,
    /// A phase is between its start and its take (at most one), so phases take in start order.
    starting: Cell<bool>,
    /// A phase that moves to another segment is running: no other phase may start.
    crossing: Cell<bool>,
    /// LSN up to which staged records were taken by a write phase.
    /// Invariant: written <= taken <= staged_lsn.
    taken: Cell<u64>,
    /// Completion of the newest phase's last write, which the next phase's rewrite of the carried
    /// block waits for; and the segment that write went to.
    tail: RefCell<(Option<Rc<Gate>>, u64)>,
    /// Issued writes not yet counted in `written`, in LSN order: the LSN that `written` may move
    /// to once this write and all before it completed, and whether it completed. `pending_first`
    /// numbers the front one. Bounded by the writes of [`MAX_WRITE_PHASES`] phases.
    pending: RefCell<VecDeque<(u64, bool)>>,
    pending_first: Cell<u64>,
    /// Tasks waiting for `written` to reach an LSN. Bounded by the tasks using this WAL.
    written_waiters: RefCell<Vec<(u64, Waker)>>,
    /// An fdatasync phase is running (one at a time). It may overlap the next write phase.
    syncing: Cell<bool>,
    /// A `reclaim` call is running (one at a time: relocation awaits its reads, and a second
    /// call would plan the same segment).
    reclaiming: Cell<bool>,
    /// Bumped at the end of every round.
    round_gen: Cell<u64>,
    /// Tasks waiting for the running round to end. Bounded by the number of tasks using this
    /// WAL (each registers once per wait); the Vec's capacity is reused.
    round_waiters: RefCell<Vec<Waker>>,
    /// Invariant: durable <= written <= staged_lsn.
    written: Cell<u64>,
    durable: Cell<u64>,
    /// Set by a failed write or fdatasync; the WAL then refuses writes.
    failed: Cell<bool>,
    cache_hits: Cell<u64>,
    cache_misses: Cell<u64>,
    /// A preparation task is running (at most one).
    preparing: Rc<Cell<bool>>,
    /// Spare files prepared so far.
    prepared: Rc<Cell<u64>>,
    metric_handles: crate::metrics::Handles,
}

fn seg_pos(segments: &VecDeque<Segment>, lsn: u64) -> Option<usize> {
    let k = segments.partition_point(|s| s.base <= lsn);
    k.checked_sub(1)
}

fn sub_live(segments: &mut VecDeque<Segment>, e: &EntryLoc) {
    if let Some(k) = seg_pos(segments, e.lsn) {
        let s = &mut segments[k];
        s.live_entries -= 1;
        s.live_bytes -= e.record_len();
    }
}

fn add_live(segments: &mut VecDeque<Segment>, e: &EntryLoc) {
    if let Some(k) = seg_pos(segments, e.lsn) {
        let s = &mut segments[k];
        s.live_entries += 1;
        s.live_bytes += e.record_len();
    }
}

impl Inner {
    fn group(&self, g: GroupId) -> Result<&Group> {
        self.groups
            .get(&g)
            .ok_or_else(|| StorageError::invalid(format!("unknown group {g}")))
    }

    /// Starts segment `base`. `roll`: its size when no spare is taken; `need`: bytes of the
    /// record that must fit after the header.
    fn start_segment(&mut self, base: u64, opts: &WalOptions, first: bool, roll: u64, need: u64) {
        if !first {
            self.staging.roll(base);
            let secs = self.active_started.elapsed().as_secs_f64();
            self.fill_rate = self.active_roll as f64 / secs.max(1e-6);
        }
        // The header says whether the file is recycled, so the spare is claimed now, when the
        // header is staged; the rename happens when the first flush needs the file. A spare too
        // small for the record waiting to be staged stays in the pool.
        let spare = {
            let mut pool = self.spares.borrow_mut();
            let fits =
                |s: &Spare| s.bytes.min(opts.segment_bytes) >= SEGMENT_HEADER_BYTES as u64 + need;
            pool.iter().position(fits).and_then(|k| pool.remove(k))
        };
        self.active_roll = spare
            .as_ref()
            .map_or(roll, |s| s.bytes.min(opts.segment_bytes));
        self.active_started = Instant::now();
        let spare = spare.map(|s| s.path);
        let header = SegmentHeader::new(base, self.active_roll, spare.is_some());
        self.staging.put(&format::encode_segment_header(&header));
        self.active_seed = header.seed();
        self.segments.push_back(Segment {
            base,
            seed: header.seed(),
            path: segment_path(&opts.dir, base),
            spare,
            roll: self.active_roll,
            file: None,
            write_seq: 0,
            synced_seq: 0,
            live_entries: 0,
            live_bytes: 0,
            drain_seen: None,
        });
        self.staged_lsn = base + SEGMENT_HEADER_BYTES as u64;
        self.stats.segments = self.segments.len() as u64;
    }

    /// Encodes one record into the staging buffers; returns (record start LSN, segment base).
    fn stage(
        &mut self,
        opts: &WalOptions,
        durable: u64,
        h: &mut RecordHeader,
        payload: &[u8],
    ) -> Result<(u64, u64)> {
        self.stage_with_crc(opts, durable, h, payload, None)
    }

    /// [`Inner::stage`], with the payload's CRC32C if the caller knows it (see
    /// [`Wal::append_shared_with_crc`]).
    fn stage_with_crc(
        &mut self,
        opts: &WalOptions,
        durable: u64,
        h: &mut RecordHeader,
        payload: &[u8],
        payload_crc: Option<u32>,
    ) -> Result<(u64, u64)> {
        let rec_len = (RECORD_HEADER_BYTES + payload.len()) as u64;
        if payload.len() > MAX_PAYLOAD_BYTES
            || rec_len + SEGMENT_HEADER_BYTES as u64 > opts.segment_bytes
        {
            return Err(StorageError::invalid(format!(
                "payload of {} bytes is too large",
                payload.len()
            )));
        }
        let buffered = self.staging.new_bytes();
        if buffered + rec_len > self.unflushed_limit {
            return Err(StorageError::Backpressure {
                buffered_bytes: buffered,
            });
        }
        let mut end = self.staging.end_offset();
        if end + rec_len > self.active_roll && end > SEGMENT_HEADER_BYTES as u64 {
            let next = self.staging.active_seg_base() + end;
            self.start_segment(next, opts, false, opts.segment_bytes, rec_len);
            end = SEGMENT_HEADER_BYTES as u64;
        }
        let seg_base = self.staging.active_seg_base();
        let start = seg_base + end;
        debug_assert_eq!(start, self.staged_lsn);
        h.len = rec_len as u32;
        h.durable_back = (start - durable.min(start)).min(u32::MAX as u64) as u32;
        let mut hb = [0u8; RECORD_HEADER_BYTES];
        match payload_crc {
            Some(crc) => {
                debug_assert_eq!(
                    crc,
                    crc32c::crc32c(payload),
                    "caller's payload CRC is wrong"
                );
                format::encode_header_known_crc(self.active_seed, h, payload.len(), crc, &mut hb)
            }
            None => format::encode_header(self.active_seed, h, payload, &mut hb),
        }
        self.staging.put(&hb);
        self.staging.put(payload);
        self.staged_lsn = start + rec_len;
        self.stats.appended_bytes += rec_len;
        Ok((start, seg_base))
    }

    fn evict(&mut self, written: u64) {
        // Bounded by the FIFO length.
        while self.cache.over_budget() {
            let Some(front) = self.cache.fifo.front().copied() else {
                break;
            };
            if front.end_lsn > written {
                break;
            }
            self.cache.fifo.pop_front();
            if let Some(e) = self
                .groups
                .get_mut(&front.group)
                .and_then(|g| g.get_mut(front.index))
            {
                if e.lsn == front.lsn {
                    if let Some(b) = e.cached.take() {
                        self.cache.bytes -= b.len();
                    }
                }
            }
        }
        self.stats.cache_bytes = self.cache.bytes as u64;
    }

    /// Drops a removed entry's cache and segment accounting.
    fn forget(segments: &mut VecDeque<Segment>, cache: &mut Cache, e: &EntryLoc) {
        sub_live(segments, e);
        if let Some(b) = &e.cached {
            cache.bytes -= b.len();
        }
    }

    fn read_payload(
        &self,
        g: GroupId,
        index: u64,
        hits: &Cell<u64>,
        misses: &Cell<u64>,
    ) -> Result<Bytes> {
        match self.plan_read(g, index, hits, misses)? {
            PlannedRead::Cached(b) => Ok(b),
            PlannedRead::Disk(d) => {
                let mut buf = vec![0u8; d.len];
                let n = read_full(&*d.file, d.off, &mut buf)
                    .map_err(|err| StorageError::io("read", &d.path, Some(d.off), err))?;
                buf.truncate(n);
                d.verify(buf)
            }
        }
    }

    /// Where entry `index` of group `g` is: in the cache, or at a file position to read and
    /// verify (without holding the WAL borrowed while the read is in flight).
    fn plan_read(
        &self,
        g: GroupId,
        index: u64,
        hits: &Cell<u64>,
        misses: &Cell<u64>,
    ) -> Result<PlannedRead> {
        let grp = self.group(g)?;
        let e = grp
            .get(index)
            .ok_or_else(|| StorageError::invalid(format!("group {g} has no entry {index}")))?;
        if let Some(b) = &e.cached {
            hits.set(hits.get() + 1);
            return Ok(PlannedRead::Cached(b.clone()));
        }
        misses.set(misses.get() + 1);
        let k = seg_pos(&self.segments, e.lsn).expect("entry lsn inside a segment");
        let seg = &self.segments[k];
        let Some(file) = &seg.file else {
            unreachable!("an uncached entry was written, so its segment file exists")
        };
        Ok(PlannedRead::Disk(DiskRead {
            file: file.clone(),
            path: seg.path.clone(),
            seed: seg.seed,
            off: e.lsn - seg.base,
            len: e.record_len() as usize,
            group: g,
            index,
            term: e.term,
            lsn: e.lsn,
            payload_len: e.payload_len as usize,
        }))
    }

    fn pinned(&self, k: usize) -> bool {
        let s = &self.segments[k];
        s.live_entries > 0 || self.groups.values().any(|g| g.pins.contains(&Some(s.base)))
    }
}

/// An entry's payload as `Inner::plan_read` found it.
enum PlannedRead {
    Cached(Bytes),
    Disk(DiskRead),
}

/// A record to read back from its segment file and check before its payload is served.
struct DiskRead {
    file: Rc<dyn SegmentFile>,
    path: PathBuf,
    seed: u32,
    off: u64,
    len: usize,
    group: GroupId,
    index: u64,
    term: u64,
    /// Identifies this copy of the entry: a relocation or a truncation changes it.
    lsn: u64,
    payload_len: usize,
}

impl DiskRead {
    /// Checks that `buf` (the bytes read at `off`) is this exact record and returns its payload.
    fn verify(&self, buf: Vec<u8>) -> Result<Bytes> {
        let bad = |why: String| StorageError::Corrupt {
            path: self.path.clone(),
            position: self.off,
            reason: why,
        };
        if buf.len() != self.len {
            return Err(bad(format!(
                "short read: {} of {} bytes",
                buf.len(),
                self.len
            )));
        }
        let (h, payload) = format::decode_record(self.seed, &buf)
            .map_err(|err| bad(format!("read back: {err}")))?;
        if h.rtype != RecordType::Entry
            || h.group != self.group
            || h.index != self.index
            || h.term != self.term
            || payload.len() != self.payload_len
        {
            return Err(bad(format!(
                "read back: record is not group {} entry {}",
                self.group, self.index
            )));
        }
        Ok(Bytes::from(buf).slice(RECORD_HEADER_BYTES..))
    }
}

/// Completion signal of one write: `Some(true)` once it succeeded, `Some(false)` if it failed
/// or was abandoned.
#[derive(Default)]
struct Gate {
    state: Cell<Option<bool>>,
    waiters: RefCell<Vec<Waker>>,
}

impl Gate {
    fn open(&self, ok: bool) {
        if self.state.get().is_none() {
            self.state.set(Some(ok));
            for w in self.waiters.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    async fn wait(&self) -> bool {
        std::future::poll_fn(|cx| match self.state.get() {
            Some(ok) => Poll::Ready(ok),
            None => {
                let mut w = self.waiters.borrow_mut();
                if !w.iter().any(|x| x.will_wake(cx.waker())) {
                    w.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }
}

/// Held by a task running a write phase; dropping it ends the phase. Dropped before the phase
/// finished (the task was cancelled, or the phase failed) it fails the WAL, since writes of
/// unknown fate may be in flight, and releases the phases waiting on this one.
struct PhaseGuard<'a> {
    wal: &'a Wal,
    /// Set once the phase has taken records (it then counts in `Wal::phases`).
    gate: Option<Rc<Gate>>,
    crossing: bool,
    finished: bool,
}

impl Drop for PhaseGuard<'_> {
    fn drop(&mut self) {
        let wal = self.wal;
        match self.gate.take() {
            None => {
                // Tasks that counted on this phase's take look again.
                wal.starting.set(false);
                wal.wake_written_waiters(true);
            }
            Some(gate) => {
                wal.phases.set(wal.phases.get() - 1);
                if self.crossing {
                    wal.crossing.set(false);
                }
                if !self.finished {
                    gate.open(false);
                    if !wal.failed.replace(true) {
                        tracing::error!(dir = ?wal.opts.dir, "wal write phase abandoned; refusing further writes");
                    }
                    wal.wake_written_waiters(true);
                }
            }
        }
        wal.phase_ended();
    }
}

/// Resolves once `written >= lsn` or the WAL failed.
struct WrittenAt<'a> {
    wal: &'a Wal,
    lsn: u64,
    registered: bool,
}

impl Future for WrittenAt<'_> {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.wal.written.get() >= self.lsn || self.wal.failed.get() {
            return Poll::Ready(());
        }
        if !self.registered {
            let lsn = self.lsn;
            self.wal
                .written_waiters
                .borrow_mut()
                .push((lsn, cx.waker().clone()));
            self.registered = true;
        }
        Poll::Pending
    }
}

/// Resolves when the write round running at creation time has ended.
struct RoundEnd<'a> {
    wal: &'a Wal,
    gen: u64,
    registered: bool,
}

impl<'a> RoundEnd<'a> {
    fn new(wal: &'a Wal) -> Self {
        RoundEnd {
            wal,
            gen: wal.round_gen.get(),
            registered: false,
        }
    }
}

impl Future for RoundEnd<'_> {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.wal.round_gen.get() != self.gen {
            return Poll::Ready(());
        }
        if !self.registered {
            self.wal.round_waiters.borrow_mut().push(cx.waker().clone());
            self.registered = true;
        }
        Poll::Pending
    }
}

impl Wal {
    /// Opens (recovering) or creates the WAL in `opts.dir` using glommio DMA files.
    pub async fn open(opts: WalOptions) -> Result<(Wal, RecoveryReport)> {
        Self::open_with_disk(opts, Rc::new(GlommioDisk)).await
    }

    /// Like [`Wal::open`] over any [`Disk`] (tests use [`crate::testing::MemDisk`]).
    pub async fn open_with_disk(
        opts: WalOptions,
        disk: Rc<dyn Disk>,
    ) -> Result<(Wal, RecoveryReport)> {
        opts.validate()?;
        let rec =
            recovery::recover(&*disk, &opts.dir, opts.segment_bytes, write_mode(&opts)).await?;
        let newest = rec
            .segments
            .last()
            .map(|s| (s.base, s.end_offset, s.roll_bytes));
        let mut segments: VecDeque<Segment> = rec
            .segments
            .into_iter()
            .map(|s| Segment {
                base: s.base,
                seed: s.seed,
                path: s.path,
                spare: None,
                roll: s.roll_bytes,
                file: Some(s.file),
                write_seq: 0,
                synced_seq: 0,
                live_entries: 0,
                live_bytes: 0,
                drain_seen: None,
            })
            .collect();
        for g in rec.groups.values() {
            for e in &g.entries {
                add_live(&mut segments, e);
            }
        }
        let mut spares: VecDeque<Spare> = VecDeque::new();
        // Bounded by the spare files found (at most MAX_SEGMENTS).
        for (k, path) in rec.spares.into_iter().enumerate() {
            if k >= opts.recycle_segments.max(1) {
                disk.remove(&path)
                    .await
                    .map_err(|e| StorageError::io("remove", &path, None, e))?;
                continue;
            }
            let bytes = disk
                .open(&path, WriteMode::Deferred)
                .await
                .and_then(|f| f.size())
                .map_err(|e| StorageError::io("stat", &path, None, e))?;
            spares.push_back(Spare { path, bytes });
        }
        let mut first_roll = opts.segment_bytes;
        if newest.is_none() && opts.prepare_bytes_per_sec > 0 && spares.is_empty() {
            // A brand-new WAL: zero-fill a small first segment now (see `prepare.rs`), so even
            // the first appends overwrite written blocks; later segments are prepared in the
            // background, doubling in size.
            first_roll = FIRST_SEGMENT_BYTES.min(opts.segment_bytes);
            let path = segment_path(&opts.dir, 0);
            prepare::zero_fill(&*disk, &opts.dir, &path, first_roll, 0, &|| true).await?;
        }
        let active_seed = segments.back().map_or(0, |s| s.seed);
        let mut inner = Inner {
            groups: rec.groups,
            segments,
            staging: Staging::new(0, 0, &[], ChunkMemory::Registered),
            active_seed,
            active_roll: newest.map_or(first_roll, |n| n.2),
            active_started: Instant::now(),
            fill_rate: 0.0,
            spares: Rc::new(RefCell::new(spares)),
            staged_lsn: 0,
            cache: Cache::new(opts.cache_bytes),
            scratch: Vec::new(),
            stats: WalStats::default(),
            unflushed_limit: MAX_UNFLUSHED_BYTES,
        };
        let start_lsn = match newest {
            Some((base, end_offset, _)) => {
                inner.staging = Staging::new(base, end_offset, &rec.carry, ChunkMemory::Registered);
                inner.staged_lsn = base + end_offset;
                inner.staged_lsn
            }
            None => {
                inner.start_segment(0, &opts, true, first_roll, 0);
                0
            }
        };
        inner.stats.segments = inner.segments.len() as u64;
        let opts_dir = opts.dir.clone();
        let wal = Wal {
            opts,
            disk,
            inner: RefCell::new(inner),
            phases: Cell::new(0),
            starting: Cell::new(false),
            crossing: Cell::new(false),
            taken: Cell::new(start_lsn),
            tail: RefCell::new((None, 0)),
            pending: RefCell::new(VecDeque::new()),
            pending_first: Cell::new(0),
            written_waiters: RefCell::new(Vec::new()),
            syncing: Cell::new(false),
            reclaiming: Cell::new(false),
            round_gen: Cell::new(0),
            round_waiters: RefCell::new(Vec::new()),
            written: Cell::new(start_lsn),
            durable: Cell::new(start_lsn),
            failed: Cell::new(false),
            cache_hits: Cell::new(0),
            cache_misses: Cell::new(0),
            preparing: Rc::new(Cell::new(false)),
            prepared: Rc::new(Cell::new(0)),
            metric_handles: crate::metrics::Handles::new(&crate::metrics::shard_label(&opts_dir)),
        };
        wal.kick_preparation();
        Ok((wal, rec.report))
    }

    /// The options this WAL was opened with.
    pub fn options(&self) -> &WalOptions {
        &self.opts
    }

    /// Groups present (sorted).
    pub fn groups(&self) -> Vec<GroupId> {
        let mut v: Vec<GroupId> = self.inner.borrow().groups.keys().copied().collect();
        v.sort_unstable();
        v
    }

    pub fn group_state(&self, g: GroupId) -> Option<GroupState> {
        self.inner.borrow().groups.get(&g).map(Group::state)
    }

    fn check_writable(&self) -> Result<()> {
        if self.failed.get() {
            return Err(StorageError::Unavailable);
        }
        Ok(())
    }

    /// Creates an empty group (no-op if it exists).
    pub fn create_group(&self, g: GroupId) -> Result<()> {
        self.check_writable()?;
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        if inner.groups.contains_key(&g) {
            return Ok(());
        }
        let mut h = RecordHeader::new(RecordType::CreateGroup, g);
        let (_, seg) = inner.stage(&self.opts, self.durable.get(), &mut h, &[])?;
        let mut grp = Group::default();
        grp.pins[Pin::Create as usize] = Some(seg);
        inner.groups.insert(g, grp);
        Ok(())
    }

    /// Deletes a group and its entries (space is reclaimed with the segments). No-op if absent.
    pub fn remove_group(&self, g: GroupId) -> Result<()> {
        self.check_writable()?;
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        if !inner.groups.contains_key(&g) {
            return Ok(());
        }
        let mut h = RecordHeader::new(RecordType::RemoveGroup, g);
        inner.stage(&self.opts, self.durable.get(), &mut h, &[])?;
        let grp = inner.groups.remove(&g).expect("checked");
        for e in &grp.entries {
            Inner::forget(&mut inner.segments, &mut inner.cache, e);
        }
        Ok(())
    }

    /// Appends entry `meta.index` (must be `last_index + 1`) of group `g`. Visible to reads at
    /// once; durable once `durable_lsn() >=` the returned LSN.
    pub fn append(&self, g: GroupId, meta: EntryMeta, payload: &[u8]) -> Result<Lsn> {
        self.append_inner(g, meta, payload, None, None)
    }

    /// Like [`Wal::append`], but the batch cache keeps `payload` itself instead of a copy: one
    /// memcpy less per append (into the staging buffer only), and reads return these very bytes.
    /// Worth it for large batches.
    pub fn append_shared(&self, g: GroupId, meta: EntryMeta, payload: Bytes) -> Result<Lsn> {
        self.append_inner(g, meta, &payload[..], Some(payload.clone()), None)
    }

    /// Like [`Wal::append_shared`], for a payload whose CRC32C (`payload_crc`) the caller
    /// already knows: the record's checksum is combined from it ([`crate::crc::combine`])
    /// instead of computed in a pass over the payload. The broker derives it from the Kafka
    /// batch CRC its produce path verified. The value must be right: debug builds check it; in
    /// release builds a wrong one makes the record fail its CRC when read from disk or
    /// recovered, i.e. look corrupt.
    pub fn append_shared_with_crc(
        &self,
        g: GroupId,
        meta: EntryMeta,
        payload: Bytes,
        payload_crc: u32,
    ) -> Result<Lsn> {
        self.append_inner(
            g,
            meta,
            &payload[..],
            Some(payload.clone()),
            Some(payload_crc),
        )
    }

    fn append_inner(
        &self,
        g: GroupId,
        meta: EntryMeta,
        payload: &[u8],
        shared: Option<Bytes>,
        payload_crc: Option<u32>,
    ) -> Result<Lsn> {
        self.check_writable()?;
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let grp = inner.group(g)?;
        if meta.index != grp.last_index() + 1 {
            return Err(StorageError::invalid(format!(
                "group {g}: append index {} but last index is {}",
                meta.index,
                grp.last_index()
            )));
        }
        let last_term = grp.term(grp.last_index()).unwrap_or(0);
        if meta.term < last_term {
            return Err(StorageError::invalid(format!(
                "group {g}: term {} below last term {last_term}",
                meta.term
            )));
        }
        let mut h = RecordHeader::new(RecordType::Entry, g);
        h.term = meta.term;
        h.index = meta.index;
        h.kind = meta.kind;
        if let Some(k) = meta.kafka {
            if k.last_offset < k.base_offset || k.base_offset < grp.next_offset() {
                return Err(StorageError::invalid(format!(
                    "group {g}: kafka offsets {}..={} invalid, next offset is {}",
                    k.base_offset,
                    k.last_offset,
                    grp.next_offset()
                )));
            }
            h.flags |= FLAG_KAFKA;
            h.a = k.base_offset;
            h.b = k.last_offset;
            h.c = k.max_timestamp;
        }
        let (start, _) =
            inner.stage_with_crc(&self.opts, self.durable.get(), &mut h, payload, payload_crc)?;
        let end = start + h.len as u64;
        let item = CacheItem {
            group: g,
            index: meta.index,
            lsn: start,
            end_lsn: end,
        };
        let cached = match shared {
            Some(b) => inner.cache.insert_shared(item, b),
            None => inner.cache.insert(item, payload),
        };
        let loc = EntryLoc {
            term: meta.term,
            lsn: start,
            payload_len: payload.len() as u32,
            kind: meta.kind,
            kafka: meta.kafka,
            cached: Some(cached),
        };
        add_live(&mut inner.segments, &loc);
        inner
            .groups
            .get_mut(&g)
            .expect("checked")
            .push(meta.index, loc);
        inner.stats.appends += 1;
        inner.evict(self.written.get());
        Ok(end)
    }

    /// Persists the group's Raft hard state.
    pub fn set_hard_state(&self, g: GroupId, hs: &HardState) -> Result<Lsn> {
        self.check_writable()?;
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        inner.group(g)?;
        let mut h = RecordHeader::new(RecordType::HardState, g);
        let (start, seg) = inner.stage(
            &self.opts,
            self.durable.get(),
            &mut h,
            &format::encode_hard_state(hs),
        )?;
        let grp = inner.groups.get_mut(&g).expect("checked");
        grp.hard_state = hs.clone();
        grp.pins[Pin::HardState as usize] = Some(seg);
        Ok(start + h.len as u64)
    }

    /// Persists the group's Raft conf state.
    pub fn set_conf_state(&self, g: GroupId, cs: &ConfState) -> Result<Lsn> {
        self.check_writable()?;
        let lists = [
            &cs.voters,
            &cs.learners,
            &cs.voters_outgoing,
            &cs.learners_next,
        ];
        if lists.iter().any(|l| l.len() > format::MAX_CONF_NODES) {
            return Err(StorageError::invalid("conf state list too long"));
        }
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        inner.group(g)?;
        let mut scratch = std::mem::take(&mut inner.scratch);
        format::encode_conf_state(cs, &mut scratch);
        let mut h = RecordHeader::new(RecordType::ConfState, g);
        let res = inner.stage(&self.opts, self.durable.get(), &mut h, &scratch);
        inner.scratch = scratch;
        let (start, seg) = res?;
        let grp = inner.groups.get_mut(&g).expect("checked");
        grp.conf_state = cs.clone();
        grp.pins[Pin::ConfState as usize] = Some(seg);
        Ok(start + h.len as u64)
    }

    /// Drops entries with index >= `from_index` (Raft conflict resolution).
    pub fn truncate_suffix(&self, g: GroupId, from_index: u64) -> Result<Lsn> {
        self.check_writable()?;
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let grp = inner.group(g)?;
        if from_index <= grp.snapshot_index {
            return Err(StorageError::invalid(format!(
                "group {g}: cannot truncate from {from_index}, compacted up to {}",
                grp.snapshot_index
            )));
        }
        if from_index > grp.last_index() {
            return Ok(inner.staged_lsn);
        }
        let mut h = RecordHeader::new(RecordType::TruncateSuffix, g);
        h.index = from_index;
        let (start, _) = inner.stage(&self.opts, self.durable.get(), &mut h, &[])?;
        let Inner {
            groups,
            segments,
            cache,
            ..
        } = inner;
        groups
            .get_mut(&g)
            .expect("checked")
            .truncate_suffix(from_index, |e| Inner::forget(segments, cache, e));
        Ok(start + h.len as u64)
    }

    /// Drops entries with index < `before_index` and records the snapshot point
    /// (`before_index - 1`, `term_at_before_minus_1`). Compacting beyond the last entry (snapshot
    /// install) empties the log and the next append must be `before_index`.
    pub fn compact_prefix(
        &self,
        g: GroupId,
        before_index: u64,
        term_at_before_minus_1: u64,
    ) -> Result<Lsn> {
        self.check_writable()?;
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let grp = inner.group(g)?;
        if before_index <= grp.first_index() {
            return Ok(inner.staged_lsn);
        }
        if let Some(t) = grp.get(before_index - 1).map(|e| e.term) {
            if t != term_at_before_minus_1 {
                return Err(StorageError::invalid(format!(
                    "group {g}: entry {} has term {t}, not {term_at_before_minus_1}",
                    before_index - 1
                )));
            }
        }
        let k = grp.data.partition_point(|&(_, i)| i < before_index);
        let floor = match k {
            0 => grp.offset_floor,
            _ => grp.offset_floor.max(grp.data[k - 1].0 + 1),
        };
        let mut h = RecordHeader::new(RecordType::CompactPrefix, g);
        h.index = before_index;
        h.term = term_at_before_minus_1;
        h.a = floor;
        let (start, seg) = inner.stage(&self.opts, self.durable.get(), &mut h, &[])?;
        let Inner {
            groups,
            segments,
            cache,
            ..
        } = inner;
        let grp = groups.get_mut(&g).expect("checked");
        grp.compact_prefix(before_index, term_at_before_minus_1, |e| {
            Inner::forget(segments, cache, e)
        });
        grp.offset_floor = floor;
        grp.pins[Pin::Compact as usize] = Some(seg);
        Ok(start + h.len as u64)
    }

    /// Advances the Kafka log start offset (DeleteRecords / retention); it may point inside a
    /// batch. Never moves backwards; must not exceed the next offset.
    pub fn set_log_start_offset(&self, g: GroupId, offset: i64) -> Result<Lsn> {
        self.check_writable()?;
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let grp = inner.group(g)?;
        if offset > grp.next_offset() {
            return Err(StorageError::invalid(format!(
                "group {g}: log start {offset} beyond next offset {}",
                grp.next_offset()
            )));
        }
        if offset <= grp.log_start_offset() {
            return Ok(inner.staged_lsn);
        }
        let mut h = RecordHeader::new(RecordType::LogStart, g);
        h.a = offset;
        let (start, seg) = inner.stage(&self.opts, self.durable.get(), &mut h, &[])?;
        let grp = inner.groups.get_mut(&g).expect("checked");
        grp.log_start = offset;
        grp.pins[Pin::LogStart as usize] = Some(seg);
        Ok(start + h.len as u64)
    }

    /// Group commit. `always`: writes everything staged (all groups) and fdatasyncs; returns the
    /// durable LSN, which covers every append made before the call. `periodic`: writes only (the
    /// periodic task syncs); returns the durable LSN, which may be behind.
    pub async fn flush(&self) -> Result<Lsn> {
        match self.opts.sync_mode {
            SyncMode::Always => self.round(true).await,
            SyncMode::Periodic => self.round(false).await,
        }
    }

    /// Writes everything staged and fdatasyncs, whatever the sync mode.
    pub async fn sync(&self) -> Result<Lsn> {
        self.round(true).await
    }

    /// Waits (without starting a round) until `durable_lsn() >= lsn`, e.g. to acknowledge an
    /// append in periodic mode once the periodic task has synced it. Returns the durable LSN.
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<Lsn> {
        // Bounded by the rounds that run until `lsn` is covered (or the WAL fails).
        loop {
            let d = self.durable.get();
            if d >= lsn {
                return Ok(d);
            }
            if self.failed.get() {
                return Err(StorageError::Unavailable);
            }
            RoundEnd::new(self).await;
        }
    }

    /// Every record with end LSN <= this is on stable storage.
    pub fn durable_lsn(&self) -> Lsn {
        self.durable.get()
    }

    /// Every record with end LSN <= this has been written to the file (maybe not synced).
    pub fn written_lsn(&self) -> Lsn {
        self.written.get()
    }

    /// LSN just past the last appended record.
    pub fn staged_lsn(&self) -> Lsn {
        self.inner.borrow().staged_lsn
    }

    /// True after an I/O failure: writes are refused.
    pub fn is_failed(&self) -> bool {
        self.failed.get()
    }

    /// Makes everything staged before the call written (and durable if `fsync`).
    ///
    /// A round is a write phase (take all staged bytes, aligned O_DIRECT writes) and, if needed,
    /// a sync phase (fdatasync). One write phase and one sync phase may run at once: round k+1
    /// writes while round k's fdatasync is in flight, so the device is not idle between them.
    /// Callers finding a phase they need already running wait for it and usually find their
    /// LSN covered when it ends (group commit).
    async fn round(&self, fsync: bool) -> Result<Lsn> {
        let target = self.inner.borrow().staged_lsn;
        // Bounded: every iteration returns, runs a phase that advances `written`/`durable` past
        // `target`, or waits for a running phase to end.
        loop {
            self.check_writable()?;
            if self.written.get() < target {
                // A phase about to take will take these records too (they were staged before it
                // resumes).
                if self.taken.get() >= target || self.starting.get() {
                    WrittenAt {
                        wal: self,
                        lsn: target,
                        registered: false,
                    }
                    .await;
                    continue;
                }
                if !self.may_start_write_phase() {
                    RoundEnd::new(self).await;
                    continue;
                }
                self.starting.set(true);
                let mut guard = PhaseGuard {
                    wal: self,
                    gate: None,
                    crossing: false,
                    finished: false,
                };
                // Tasks woken by the previous phase's end are runnable now; let them stage their
                // next records first so this write carries them (otherwise rounds convoy: each
                // one carries a single append while the others wait). A pipelined phase (others
                // in flight) with a chunk or more staged starts at once instead.
                if self.phases.get() == 0
                    || self.inner.borrow().staging.new_bytes() < PIPELINE_MIN_BYTES
                {
                    futures_lite::future::yield_now().await;
                }
                let res = self.write_phase(&mut guard).await;
                guard.finished = res.is_ok();
                // On error this marks the WAL failed first, so the guard releases quietly.
                let res = self.fail_on(res);
                drop(guard);
                res?;
                continue;
            }
            if !fsync || self.durable.get() >= target {
                return Ok(self.durable.get());
            }
            if self.syncing.get() {
                RoundEnd::new(self).await;
                continue;
            }
            self.syncing.set(true);
            let res = self.sync_phase().await;
            self.syncing.set(false);
            self.phase_ended();
            self.fail_on(res)?;
        }
    }

    /// Whether a task may start a write phase now (module notes, pipelined writes).
    fn may_start_write_phase(&self) -> bool {
        let n = self.phases.get();
        n == 0
            || (n < MAX_WRITE_PHASES
                && !self.crossing.get()
                && write_mode(&self.opts) == WriteMode::Deferred
                && self.inner.borrow().staging.new_bytes() >= PIPELINE_MIN_BYTES)
    }

    fn fail_on(&self, res: Result<()>) -> Result<()> {
        if let Err(e) = res {
            // After a failed write or fdatasync the kernel may have dropped dirty pages: nothing
            // after the last successful sync can be trusted, so stop accepting writes.
            self.failed.set(true);
            self.inner.borrow_mut().stats.io_errors += 1;
            tracing::error!(dir = ?self.opts.dir, error = %e, "wal write failed; refusing further writes");
            self.wake_written_waiters(true);
            self.phase_ended();
            return Err(e);
        }
        Ok(())
    }

    /// Wakes the tasks waiting for `written` to reach an LSN it has reached (all if `all`).
    fn wake_written_waiters(&self, all: bool) {
        let w = self.written.get();
        self.written_waiters.borrow_mut().retain(|(lsn, waker)| {
            if all || *lsn <= w {
                waker.wake_by_ref();
                false
            } else {
                true
            }
        });
    }

    /// Counts a completed write (`id` from `pending`) and moves `written` over the completed
    /// prefix of issued writes.
    fn write_completed(&self, id: u64, base: u64, durable: bool) {
        {
            let mut inner = self.inner.borrow_mut();
            if let Some(s) = inner.segments.iter_mut().find(|s| s.base == base) {
                s.write_seq += 1;
                if durable {
                    s.synced_seq = s.write_seq;
                }
            }
        }
        let mut q = self.pending.borrow_mut();
        let first = self.pending_first.get();
        q[(id - first) as usize].1 = true;
        let mut written = self.written.get();
        let mut popped = 0;
        while let Some(&(end, true)) = q.front() {
            written = written.max(end);
            q.pop_front();
            popped += 1;
        }
        drop(q);
        if popped > 0 {
            self.pending_first.set(first + popped);
            self.written.set(written);
            self.wake_written_waiters(false);
        }
    }

    /// Wakes every task waiting for a phase to end.
    fn phase_ended(&self) {
        self.round_gen.set(self.round_gen.get() + 1);
        let mut w = self.round_waiters.borrow_mut();
        for waker in w.drain(..) {
            waker.wake();
        }
    }

    async fn segment_file(&self, base: u64) -> Result<(Rc<dyn SegmentFile>, PathBuf)> {
        let (existing, path, spare, roll) = {
            let mut inner = self.inner.borrow_mut();
            let k = inner
                .segments
                .iter()
                .position(|s| s.base == base)
                .expect("segment of a staged write");
            (
                inner.segments[k].file.clone(),
                inner.segments[k].path.clone(),
                inner.segments[k].spare.take(),
                inner.segments[k].roll,
            )
        };
        if let Some(f) = existing {
            return Ok((f, path));
        }
        let mut recycled = false;
        if let Some(spare) = spare {
            if let Err(e) = self.disk.rename(&spare, &path).await {
                // The header already says "recycled", which is also right for a fresh file (it
                // only lets recovery ignore stale bytes that cannot validate).
                tracing::warn!(from = ?spare, to = ?path, error = %e, "recycling a wal segment failed; creating a new file");
            } else {
                self.inner.borrow_mut().stats.segments_recycled += 1;
                recycled = true;
            }
        }
        let f = self
            .disk
            .open(&path, write_mode(&self.opts))
            .await
            .map_err(|e| StorageError::io("create", &path, None, e))?;
        let size = f
            .size()
            .map_err(|e| StorageError::io("stat", &path, None, e))?;
        if size < roll {
            f.preallocate(roll)
                .await
                .map_err(|e| StorageError::io("fallocate", &path, None, e))?;
        }
        tracing::info!(path = ?path, roll_bytes = roll, reused = recycled, "wal segment started");
        self.kick_preparation();
        if recycled {
            // The rename need not be durable before records in the file are acknowledged:
            // the inode (and its data) exists under one name or the other, and recovery finds
            // a reused file by its header (`recovery::adopt_reused_files`). So the directory
            // fsync, which can take a journal commit's time, stays off the append path.
            let (disk, dir) = (self.disk.clone(), self.opts.dir.clone());
            glommio::spawn_local(async move {
                if let Err(e) = disk.sync_dir(&dir).await {
                    tracing::warn!(dir = ?dir, error = %e, "wal directory fsync failed");
                }
            })
            .detach();
        } else {
            // A new file's directory entry must be durable before anything in it is
            // acknowledged: without it the file itself is gone after a crash.
            self.disk
                .sync_dir(&self.opts.dir)
                .await
                .map_err(|e| StorageError::io("fsync_dir", &self.opts.dir, None, e))?;
        }
        let mut inner = self.inner.borrow_mut();
        if let Some(s) = inner.segments.iter_mut().find(|s| s.base == base) {
            s.file = Some(f.clone());
        }
        Ok((f, path))
    }

    /// Starts zero-filling the next spare in the background if the pool is empty, no
    /// preparation runs, and the WAL fills segments slower than the preparation pace (else the
    /// spare would not be ready in time and the zeroing would only eat disk bandwidth).
    fn kick_preparation(&self) {
        let pace = self.opts.prepare_bytes_per_sec;
        if pace == 0 || self.preparing.get() || self.failed.get() {
            return;
        }
        let (pool, size, name, too_fast) = {
            let inner = self.inner.borrow();
            if !inner.spares.borrow().is_empty() {
                return;
            }
            let active = inner.segments.back().map_or(0, |s| s.base);
            (
                inner.spares.clone(),
                (inner.active_roll * 2).min(self.opts.segment_bytes),
                // Never a segment base (bases are record boundaries, >= 64 bytes apart), and
                // below every later base: recovery's adoption rule relies on both.
                spare_path(&self.opts.dir, active + 1),
                inner.fill_rate > pace as f64,
            )
        };
        if too_fast {
            tracing::debug!(dir = ?self.opts.dir, "wal fills segments faster than they can be prepared; skipping");
            return;
        }
        self.preparing.set(true);
        let (disk, dir) = (self.disk.clone(), self.opts.dir.clone());
        let (preparing, prepared) = (self.preparing.clone(), self.prepared.clone());
        let alive = Rc::downgrade(&self.preparing);
        glommio::spawn_local(async move {
            // `preparing` is owned by the WAL; once it is dropped, stop touching the file.
            let alive = move || alive.strong_count() > 1;
            match prepare::zero_fill(&*disk, &dir, &name, size, pace, &alive).await {
                Ok(()) => {
                    tracing::debug!(path = ?name, bytes = size, "wal spare segment prepared");
                    pool.borrow_mut().push_back(Spare {
                        path: name,
                        bytes: size,
                    });
                    prepared.set(prepared.get() + 1);
                }
                Err(_) if !alive() => {}
                Err(e) => {
                    tracing::warn!(error = %e, "preparing a wal segment failed; the next roll creates one");
                    let _ = disk.remove(&name).await;
                }
            }
            preparing.set(false);
        })
        .detach();
    }

    /// fdatasyncs every segment with base < `below` that has unsynced writes.
    async fn sync_segments_below(&self, below: u64) -> Result<()> {
        let todo: Vec<(u64, u64, Rc<dyn SegmentFile>, PathBuf)> = {
            let inner = self.inner.borrow();
            inner
                .segments
                .iter()
                .filter(|s| s.base < below && s.write_seq != s.synced_seq)
                .filter_map(|s| {
                    s.file
                        .clone()
                        .map(|f| (s.base, s.write_seq, f, s.path.clone()))
                })
                .collect()
        };
        for (base, seq, f, path) in todo {
            let t = Instant::now();
            f.fdatasync()
                .await
                .map_err(|e| StorageError::io("fdatasync", &path, None, e))?;
            let took = t.elapsed();
            let us = took.as_micros() as u64;
            self.metric_handles.fsync_seconds.record(took.as_secs_f64());
            if took >= SLOW_IO {
                tracing::warn!(path = ?path, ms = us / 1000, "slow wal fdatasync");
            }
            let mut inner = self.inner.borrow_mut();
            inner.stats.fsyncs += 1;
            inner.stats.fsync_latency_us_last = us;
            inner.stats.fsync_latency_us_max = inner.stats.fsync_latency_us_max.max(us);
            inner.stats.fsync_latency_us_total += us;
            if let Some(s) = inner.segments.iter_mut().find(|s| s.base == base) {
                // Writes completed after `seq` was read may not be covered.
                s.synced_seq = s.synced_seq.max(seq);
            }
        }
        Ok(())
    }

    /// fdatasync phase: everything written when it starts becomes durable.
    async fn sync_phase(&self) -> Result<()> {
        let covered = self.written.get();
        self.sync_segments_below(u64::MAX).await?;
        self.durable.set(self.durable.get().max(covered));
        Ok(())
    }

    /// Write phase: all staged bytes as aligned O_DIRECT writes, in segment order. Other phases
    /// may be in flight (module notes, pipelined writes); `guard` is the caller's reservation.
    async fn write_phase(&self, guard: &mut PhaseGuard<'_>) -> Result<()> {
        let through = write_mode(&self.opts) == WriteMode::Through;
        let taken_before = self.taken.get();
        let (ops, round_end) = {
            let mut inner = self.inner.borrow_mut();
            let end = inner.staged_lsn;
            let ops = if inner.staging.is_dirty() {
                inner.staging.take()
            } else {
                Vec::new()
            };
            (ops, end)
        };
        let pipelined = self.phases.get() > 0;
        self.phases.set(self.phases.get() + 1);
        self.starting.set(false);
        let gate = Rc::new(Gate::default());
        guard.gate = Some(gate.clone());
        self.taken.set(taken_before.max(round_end));
        let Some(last) = ops.last() else {
            // Nothing staged: the records up to `round_end` were all taken by earlier phases.
            gate.open(true);
            guard.finished = true;
            return Ok(());
        };
        let (prev_gate, prev_seg) = std::mem::replace(
            &mut *self.tail.borrow_mut(),
            (Some(gate.clone()), last.seg_base),
        );
        // Register the writes in LSN order: write k lets `written` reach the start of write k+1
        // (the end of the run's records at a segment's end), the last one `round_end`.
        let first_id = {
            let mut q = self.pending.borrow_mut();
            let first_id = self.pending_first.get() + q.len() as u64;
            for (k, op) in ops.iter().enumerate() {
                let end = match ops.get(k + 1) {
                    Some(next) => (op.seg_base + op.pos + op.buf.len() as u64)
                        .min(next.seg_base + next.pos)
                        .min(round_end),
                    None => round_end,
                };
                q.push_back((end, false));
            }
            first_id
        };
        // A phase moving to another segment waits for every earlier write, and blocks new phases.
        if ops.iter().any(|o| o.seg_base != prev_seg) {
            guard.crossing = true;
            self.crossing.set(true);
            WrittenAt {
                wal: self,
                lsn: taken_before,
                registered: false,
            }
            .await;
            self.check_writable()?;
        }
        let mut i = 0;
        // Bounded by ops.len(): each iteration consumes the ops of one segment.
        while i < ops.len() {
            let base = ops[i].seg_base;
            let j = ops[i..]
                .iter()
                .position(|o| o.seg_base != base)
                .map_or(ops.len(), |k| i + k);
            // Segment order invariant: older segments are durable before this one is written.
            let t0 = Instant::now();
            self.sync_segments_below(base).await?;
            let t1 = Instant::now();
            let (file, path) = self.segment_file(base).await?;
            let t2 = Instant::now();
            // Write-through: a round that is one write to a segment with nothing unsynced in it
            // is made durable by that write (O_DSYNC). Several writes go plain and the sync phase
            // fdatasyncs once, instead of one device flush per write. (A FUA write makes only
            // itself durable, hence "nothing unsynced" before it.) Write-through phases never
            // overlap (`may_start_write_phase`), so nothing else is in flight.
            let durable_write = through && j - i == 1 && {
                let inner = self.inner.borrow();
                inner
                    .segments
                    .iter()
                    .find(|s| s.base == base)
                    .is_some_and(|s| s.write_seq == s.synced_seq)
            };
            let writes = (i..j).map(|k| {
                let op = &ops[k];
                let f = file.clone();
                let path = path.clone();
                let (buf, pos) = (op.buf.clone(), op.pos);
                let after = op.rewrites_carry.then(|| prev_gate.clone()).flatten();
                let signals = (k + 1 == ops.len()).then(|| gate.clone());
                async move {
                    if let Some(g) = after {
                        if !g.wait().await {
                            return Err(StorageError::Unavailable);
                        }
                    }
                    let res = if durable_write {
                        f.write_durable_at(buf, pos).await
                    } else {
                        f.write_at(buf, pos).await
                    }
                    .map_err(|e| StorageError::io("write", &path, Some(pos), e));
                    if res.is_ok() {
                        self.write_completed(first_id + k as u64, base, durable_write);
                    }
                    if let Some(g) = signals {
                        g.open(res.is_ok());
                    }
                    res
                }
            });
            futures::future::try_join_all(writes).await?;
            self.metric_handles
                .write_seconds
                .record(t2.elapsed().as_secs_f64());
            let bytes: u64 = ops[i..j].iter().map(|o| o.buf.len() as u64).sum();
            let took = t0.elapsed();
            if took >= SLOW_IO {
                tracing::warn!(
                    path = ?path,
                    bytes,
                    sync_older_ms = (t1 - t0).as_millis() as u64,
                    open_ms = (t2 - t1).as_millis() as u64,
                    write_ms = t2.elapsed().as_millis() as u64,
                    "slow wal write"
                );
            }
            let mut inner = self.inner.borrow_mut();
            inner.stats.written_bytes += bytes;
            if durable_write {
                // The O_DSYNC write included the device flush.
                inner.stats.fsyncs += 1;
            }
            i = j;
        }
        guard.finished = true;
        let mut inner = self.inner.borrow_mut();
        inner.stats.flushes += 1;
        if pipelined {
            inner.stats.pipelined_flushes += 1;
        }
        for op in ops {
            inner.staging.give_back(op);
        }
        let idle = self.phases.get() == 1;
        if through && idle && inner.segments.iter().all(|s| s.write_seq == s.synced_seq) {
            // No other write is in flight, every write so far has completed, and each one is
            // covered by a durable write or an fdatasync. Else the sync phase finishes the round.
            self.durable.set(self.durable.get().max(self.written.get()));
        }
        inner.evict(self.written.get());
        inner.stats.segments_prepared = self.prepared.get();
        inner.stats.cache_hits = self.cache_hits.get();
        inner.stats.cache_misses = self.cache_misses.get();
        self.metric_handles.export(&inner.stats);
        Ok(())
    }

    /// Periodic-mode task (harmless in `always` mode): fdatasync every `sync_interval_ms` while
    /// there are unsynced appends, and reclaim segments about once a second. Ends when it holds
    /// the last reference to the WAL or after an I/O failure.
    pub async fn run_periodic_sync(self: Rc<Self>) {
        let interval = Duration::from_millis(self.opts.sync_interval_ms);
        let reclaim_every = (RECLAIM_INTERVAL_MS / self.opts.sync_interval_ms).max(1);
        let mut ticks = 0u64;
        loop {
            glommio::timer::sleep(interval).await;
            if Rc::strong_count(&self) == 1 || self.failed.get() {
                break;
            }
            let dirty =
                self.inner.borrow().staging.is_dirty() || self.written.get() > self.durable.get();
            if dirty {
                if let Err(e) = self.sync().await {
                    tracing::error!(error = %e, "periodic wal sync failed");
                    break;
                }
            }
            ticks += 1;
            if ticks.is_multiple_of(reclaim_every) {
                if let Err(e) = self.reclaim().await {
                    tracing::error!(error = %e, "wal reclaim failed");
                }
            }
        }
    }

    // ---- reads

    /// A group's index bounds (no allocation, unlike [`Wal::group_state`]).
    pub fn index_bounds(&self, g: GroupId) -> Option<crate::IndexBounds> {
        let inner = self.inner.borrow();
        let grp = inner.groups.get(&g)?;
        Some(crate::IndexBounds {
            first_index: grp.first_index(),
            last_index: grp.last_index(),
            snapshot_index: grp.snapshot_index,
            snapshot_term: grp.snapshot_term,
        })
    }

    /// Term of entry `index`, including the snapshot point.
    pub fn term(&self, g: GroupId, index: u64) -> Option<u64> {
        self.inner.borrow().groups.get(&g)?.term(index)
    }

    /// Metas of entries in `[lo, hi)`, clamped to the live range.
    pub fn entry_metas(&self, g: GroupId, lo: u64, hi: u64) -> Vec<EntryMeta> {
        let inner = self.inner.borrow();
        let Some(grp) = inner.groups.get(&g) else {
            return Vec::new();
        };
        let lo = lo.max(grp.first_index());
        let hi = hi.min(grp.last_index() + 1);
        (lo..hi)
            .filter_map(|i| grp.get(i).map(|e| grp.meta_of(i, e)))
            .collect()
    }

    /// Entries `[lo, hi)` up to `max_bytes` of payload (at least one entry), for
    /// `raft::Storage::entries`. From the cache or, on a miss, a blocking pread.
    pub fn read_entries(
        &self,
        g: GroupId,
        lo: u64,
        hi: u64,
        max_bytes: u64,
    ) -> Result<Vec<(EntryMeta, Bytes)>> {
        self.read_entries_head(g, lo, hi, max_bytes, usize::MAX)
    }

    /// [`Wal::read_entries`], but the payload of every data entry that carries Kafka offsets is
    /// cut to its first `data_head` bytes (for an applier that needs only a record batch's
    /// header). A cached payload is sliced, not copied; one read from disk is still verified
    /// whole before it is cut. `max_bytes` counts whole payloads either way.
    pub fn read_entries_head(
        &self,
        g: GroupId,
        lo: u64,
        hi: u64,
        max_bytes: u64,
        data_head: usize,
    ) -> Result<Vec<(EntryMeta, Bytes)>> {
        let inner = self.inner.borrow();
        let grp = inner.group(g)?;
        if lo < grp.first_index() || hi > grp.last_index() + 1 || lo > hi {
            return Err(StorageError::invalid(format!(
                "group {g}: entries [{lo}, {hi}) outside [{}, {}]",
                grp.first_index(),
                grp.last_index() + 1
            )));
        }
        let mut out = Vec::with_capacity((hi - lo).min(1024) as usize);
        let mut total = 0u64;
        for i in lo..hi {
            let e = grp.get(i).expect("in range");
            total += e.payload_len as u64;
            if !out.is_empty() && total > max_bytes {
                break;
            }
            let meta = grp.meta_of(i, e);
            let mut payload = inner.read_payload(g, i, &self.cache_hits, &self.cache_misses)?;
            if meta.kind == EntryKind::Normal && meta.kafka.is_some() && payload.len() > data_head {
                payload.truncate(data_head);
            }
            out.push((meta, payload));
        }
        Ok(out)
    }

    /// Kafka fetch: stored record batches with `last_offset >= from_offset` and
    /// `last_offset < upto_offset`, in order, until `max_bytes` (at least one whole batch).
    /// Entries whose payload is a header-only batch ([`EMPTY_KAFKA_BATCH_BYTES`]: every record
    /// compacted away) are skipped: consumers of compacted topics expect offset gaps.
    pub async fn read_batches(
        &self,
        g: GroupId,
        from_offset: i64,
        upto_offset: i64,
        max_bytes: usize,
    ) -> Result<Vec<Bytes>> {
        let mut out = Vec::new();
        self.read_data(g, from_offset, upto_offset, max_bytes, true, |_, b| {
            out.push(b)
        })
        .await?;
        Ok(out)
    }

    /// Like [`Wal::read_batches`], with each batch's entry meta (index, term, Kafka offsets) and
    /// without skipping header-only batches: log compaction reads through this and hands the
    /// metas back to [`Wal::replace_payload`].
    pub async fn read_data_entries(
        &self,
        g: GroupId,
        from_offset: i64,
        upto_offset: i64,
        max_bytes: usize,
    ) -> Result<Vec<(EntryMeta, Bytes)>> {
        let mut out = Vec::new();
        self.read_data(g, from_offset, upto_offset, max_bytes, false, |m, b| {
            out.push((m, b))
        })
        .await?;
        Ok(out)
    }

    async fn read_data(
        &self,
        g: GroupId,
        from_offset: i64,
        upto_offset: i64,
        max_bytes: usize,
        skip_empty: bool,
        mut emit: impl FnMut(EntryMeta, Bytes),
    ) -> Result<()> {
        let planned = {
            let inner = self.inner.borrow();
            let grp = inner.group(g)?;
            let mut planned = Vec::new();
            let mut total = 0usize;
            let mut skipped = 0usize;
            let start = grp.data_from_offset(from_offset);
            for &(last, index) in grp.data.iter().skip(start) {
                if last >= upto_offset || planned.len() >= MAX_FETCH_BATCHES {
                    break;
                }
                let e = grp.get(index).expect("data index points at a live entry");
                if skip_empty && e.payload_len == EMPTY_KAFKA_BATCH_BYTES {
                    skipped += 1;
                    if skipped < MAX_FETCH_SKIPPED_ENTRIES {
                        continue;
                    }
                    if !planned.is_empty() {
                        break;
                    }
                    // A reader facing only a long run of emptied batches gets one of them
                    // (clients step over an empty batch using its last offset) rather than
                    // nothing, which would leave it fetching the same offset forever.
                }
                total += e.payload_len as usize;
                if !planned.is_empty() && total > max_bytes {
                    break;
                }
                let meta = grp.meta_of(index, e);
                planned.push((
                    meta,
                    inner.plan_read(g, index, &self.cache_hits, &self.cache_misses)?,
                ));
                if skipped >= MAX_FETCH_SKIPPED_ENTRIES {
                    break;
                }
            }
            planned
        };
        // Cache misses (catch-up readers) are read through io_uring.
        let bufs = read_planned(planned.iter().map(|(_, p)| p)).await?;
        for ((meta, p), buf) in planned.into_iter().zip(bufs) {
            match p {
                PlannedRead::Cached(b) => emit(meta, b),
                PlannedRead::Disk(d) => match d.verify(buf) {
                    Ok(b) => emit(meta, b),
                    // While the read was in flight, retention or truncation may have dropped the
                    // entry and its segment been recycled: serve what came before it.
                    Err(_) if !self.still_at(d.group, d.index, d.lsn) => break,
                    Err(e) => return Err(e),
                },
            }
        }
        Ok(())
    }

    /// Replaces the payload of live entry `meta.index` with `payload` (log compaction: the same
    /// batch with fewer records). Index, term, kind and Kafka offsets stay; the new copy is
    /// staged at the tail flagged `RELOCATED`, so recovery's last-writer-wins replay takes it
    /// over the original, and the original stops pinning its segment once the copy is durable
    /// (`reclaim` syncs before deleting anything). Returns `None`, changing nothing, when the
    /// entry is no longer the one described by `meta` (truncated, dropped by retention, or
    /// overwritten by a new leader since it was read).
    pub fn replace_payload(
        &self,
        g: GroupId,
        meta: &EntryMeta,
        payload: &[u8],
    ) -> Result<Option<Lsn>> {
        self.check_writable()?;
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let grp = inner.group(g)?;
        let Some(e) = grp.get(meta.index) else {
            return Ok(None);
        };
        if e.term != meta.term || e.kafka != meta.kafka || e.kind != meta.kind {
            return Ok(None);
        }
        let old = e.clone();
        let mut h = relocated_header(g, meta.index, &old);
        let (start, _) = inner.stage(&self.opts, self.durable.get(), &mut h, payload)?;
        Inner::forget(&mut inner.segments, &mut inner.cache, &old);
        let cached = inner.cache.insert(
            CacheItem {
                group: g,
                index: meta.index,
                lsn: start,
                end_lsn: start + h.len as u64,
            },
            payload,
        );
        let grp = inner.groups.get_mut(&g).expect("checked");
        grp.size_bytes = grp.size_bytes - old.payload_len as u64 + payload.len() as u64;
        let slot = grp.get_mut(meta.index).expect("checked");
        slot.lsn = start;
        slot.payload_len = payload.len() as u32;
        slot.cached = Some(cached);
        let loc = slot.clone();
        add_live(&mut inner.segments, &loc);
        inner.stats.replaced_payloads += 1;
        inner.evict(self.written.get());
        Ok(Some(start + h.len as u64))
    }

    /// Payload bytes of the group's data entries with `base_offset >= from_offset`, and of all
    /// its data entries (log compaction's dirty ratio). Header-only batches count as nothing:
    /// they hold no record.
    pub fn data_bytes(&self, g: GroupId, from_offset: i64) -> (u64, u64) {
        let inner = self.inner.borrow();
        let Some(grp) = inner.groups.get(&g) else {
            return (0, 0);
        };
        let (mut from, mut total) = (0u64, 0u64);
        for &(_, index) in grp.data.iter() {
            let Some(e) = grp.get(index) else { continue };
            if e.payload_len == EMPTY_KAFKA_BATCH_BYTES {
                continue;
            }
            total += e.payload_len as u64;
            if e.kafka.is_some_and(|k| k.base_offset >= from_offset) {
                from += e.payload_len as u64;
            }
        }
        (from, total)
    }

    /// True while entry `index` of `g` is live at `lsn`.
    fn still_at(&self, g: GroupId, index: u64, lsn: u64) -> bool {
        let inner = self.inner.borrow();
        inner
            .groups
            .get(&g)
            .and_then(|grp| grp.get(index))
            .is_some_and(|e| e.lsn == lsn)
    }

    /// The Raft index of the group's first data entry that is not a header-only batch, when
    /// only header-only data entries (and non-data entries) come before it: dropping the log
    /// before that index loses no record (log compaction emptied it). `None` otherwise.
    pub fn empty_prefix_end(&self, g: GroupId) -> Option<u64> {
        let inner = self.inner.borrow();
        let grp = inner.groups.get(&g)?;
        // Bounded by the group's data entries (in memory, no I/O).
        let (skipped, first_full) = grp
            .data
            .iter()
            .enumerate()
            .find(|(_, &(_, i))| {
                grp.get(i)
                    .is_some_and(|e| e.payload_len != EMPTY_KAFKA_BATCH_BYTES)
            })
            .map(|(k, &(_, i))| (k, i))?;
        (skipped > 0).then_some(first_full)
    }

    /// First data entry whose `max_timestamp >= ts` (ListOffsets by timestamp).
    pub fn find_by_timestamp(&self, g: GroupId, ts: i64) -> Option<EntryMeta> {
        let inner = self.inner.borrow();
        let grp = inner.groups.get(&g)?;
        grp.data.iter().find_map(|&(_, index)| {
            let e = grp.get(index)?;
            match e.kafka {
                Some(k) if k.max_timestamp >= ts => Some(grp.meta_of(index, e)),
                _ => None,
            }
        })
    }

    /// The Raft index before which entries may be dropped so the group keeps at most
    /// `retention_bytes` of data payload (if >= 0) and nothing whose `max_timestamp` is older than
    /// `now_ms - retention_ms` (if >= 0). `None` if nothing is to be dropped.
    pub fn retention_point(
        &self,
        g: GroupId,
        retention_ms: i64,
        retention_bytes: i64,
        now_ms: i64,
    ) -> Option<u64> {
        let inner = self.inner.borrow();
        let grp = inner.groups.get(&g)?;
        let mut remaining: u64 = grp
            .data
            .iter()
            .filter_map(|&(_, i)| grp.get(i).map(|e| e.payload_len as u64))
            .sum();
        let mut point = None;
        for &(_, index) in grp.data.iter() {
            let e = grp.get(index)?;
            let too_big = retention_bytes >= 0 && remaining > retention_bytes as u64;
            let too_old = retention_ms >= 0
                && e.kafka.map(|k| k.max_timestamp).unwrap_or(i64::MAX)
                    < now_ms.saturating_sub(retention_ms);
            if !(too_big || too_old) {
                break;
            }
            remaining -= e.payload_len as u64;
            point = Some(index + 1);
        }
        point
    }

    /// Counters (appends, bytes, flushes, fsync latency, cache, reclamation).
    pub fn metrics(&self) -> WalStats {
        let inner = self.inner.borrow();
        let mut s = inner.stats.clone();
        s.cache_hits = self.cache_hits.get();
        s.cache_misses = self.cache_misses.get();
        s.cache_bytes = inner.cache.bytes as u64;
        s.segments = inner.segments.len() as u64;
        s.segments_prepared = self.prepared.get();
        s
    }

    // ---- reclamation

    /// Plans the relocation of segment `k`'s live entries, in group order, within `budget`
    /// record bytes (one entry goes even if it alone exceeds a full budget, so every call
    /// makes progress) and the room the unflushed-bytes limit leaves. Returns the reads to do
    /// and whether they cover every live entry of the segment.
    fn plan_relocation(
        &self,
        inner: &Inner,
        k: usize,
        budget: &mut Budget,
    ) -> Result<(Vec<Relocation>, bool)> {
        let lo = inner.segments[k].base;
        let hi = inner.segments.get(k + 1).map_or(u64::MAX, |s| s.base);
        let mut room = inner.unflushed_limit - inner.staging.new_bytes().min(inner.unflushed_limit);
        let mut gids: Vec<GroupId> = inner.groups.keys().copied().collect();
        gids.sort_unstable();
        let mut plan = Vec::new();
        for g in gids {
            let grp = &inner.groups[&g];
            for (i, e) in grp.entries.iter().enumerate() {
                if e.lsn < lo || e.lsn >= hi {
                    continue;
                }
                let len = e.record_len();
                if len > room || !budget.take(len) {
                    return Ok((plan, false));
                }
                room -= len;
                let index = grp.first_index() + i as u64;
                plan.push(Relocation {
                    group: g,
                    index,
                    lsn: e.lsn,
                    read: inner.plan_read(g, index, &self.cache_hits, &self.cache_misses)?,
                });
            }
        }
        Ok((plan, true))
    }

    /// Stages the copies `plan` read (`bufs`, empty for cached payloads) at the tail, skipping
    /// entries that changed while the reads were in flight (truncated, compacted, replaced: no
    /// longer at the planned LSN). Returns the copies staged and false if it had to stop early
    /// (no staging room left).
    fn stage_relocations(
        &self,
        inner: &mut Inner,
        plan: Vec<Relocation>,
        bufs: Vec<Vec<u8>>,
    ) -> Result<(u64, bool)> {
        let mut moved = 0u64;
        let mut all = true;
        for (r, buf) in plan.into_iter().zip(bufs) {
            let g = r.group;
            let Some(e) = inner
                .groups
                .get(&g)
                .and_then(|grp| grp.get(r.index))
                .filter(|e| e.lsn == r.lsn)
                .cloned()
            else {
                continue;
            };
            let payload = match r.read {
                PlannedRead::Cached(b) => b,
                PlannedRead::Disk(d) => d.verify(buf)?,
            };
            let mut h = relocated_header(g, r.index, &e);
            let start = match inner.stage(&self.opts, self.durable.get(), &mut h, &payload) {
                Ok((start, _)) => start,
                // Appends took the room while the reads were in flight.
                Err(StorageError::Backpressure { .. }) => {
                    all = false;
                    break;
                }
                Err(err) => return Err(err),
            };
            Inner::forget(&mut inner.segments, &mut inner.cache, &e);
            let cached = inner.cache.insert(
                CacheItem {
                    group: g,
                    index: r.index,
                    lsn: start,
                    end_lsn: start + h.len as u64,
                },
                &payload,
            );
            let slot = inner
                .groups
                .get_mut(&g)
                .and_then(|grp| grp.get_mut(r.index))
                .expect("live");
            slot.lsn = start;
            slot.cached = Some(cached);
            let loc = slot.clone();
            add_live(&mut inner.segments, &loc);
            moved += 1;
        }
        inner.stats.relocated_records += moved;
        Ok((moved, all))
    }

    /// Re-stages the state records of every group that has one in segment `k`; false if the
    /// unflushed-bytes limit stopped it.
    fn checkpoint_segment(&self, inner: &mut Inner, k: usize) -> Result<(u64, bool)> {
        let lo = inner.segments[k].base;
        let hi = inner.segments.get(k + 1).map_or(u64::MAX, |s| s.base);
        let mut gids: Vec<GroupId> = inner
            .groups
            .iter()
            .filter(|(_, grp)| {
                grp.pins
                    .iter()
                    .any(|p| matches!(p, Some(b) if *b >= lo && *b < hi))
            })
            .map(|(g, _)| *g)
            .collect();
        gids.sort_unstable();
        let mut moved = 0;
        for g in gids {
            match self.checkpoint_group(inner, g) {
                Ok(n) => moved += n,
                // A few small records; they go with the next call.
                Err(StorageError::Backpressure { .. }) => {
                    inner.stats.relocated_records += moved;
                    return Ok((moved, false));
                }
                Err(e) => return Err(e),
            }
        }
        inner.stats.relocated_records += moved;
        Ok((moved, true))
    }

    /// Re-stages every state record the group has (create, hard state, conf state, compaction
    /// point, log start) so that older copies stop pinning their segments.
    fn checkpoint_group(&self, inner: &mut Inner, g: GroupId) -> Result<u64> {
        let grp = &inner.groups[&g];
        let pins = grp.pins;
        let hs = grp.hard_state.clone();
        let cs = grp.conf_state.clone();
        let (snap_i, snap_t, floor, log_start) = (
            grp.snapshot_index,
            grp.snapshot_term,
            grp.offset_floor,
            grp.log_start,
        );
        let mut n = 0;
        let mut new_pins: [Option<u64>; PIN_KINDS] = [None; PIN_KINDS];
        let durable = self.durable.get();
        let mut scratch = Vec::new();
        for (kind, pin) in pins.iter().enumerate() {
            if pin.is_none() {
                continue;
            }
            let (mut h, payload): (RecordHeader, &[u8]) = match kind {
                k if k == Pin::Create as usize => {
                    (RecordHeader::new(RecordType::CreateGroup, g), &[])
                }
                k if k == Pin::HardState as usize => {
                    scratch = format::encode_hard_state(&hs).to_vec();
                    (RecordHeader::new(RecordType::HardState, g), &scratch)
                }
                k if k == Pin::ConfState as usize => {
                    format::encode_conf_state(&cs, &mut scratch);
                    (RecordHeader::new(RecordType::ConfState, g), &scratch)
                }
                k if k == Pin::Compact as usize => {
                    let mut h = RecordHeader::new(RecordType::CompactPrefix, g);
                    h.index = snap_i + 1;
                    h.term = snap_t;
                    h.a = floor;
                    (h, &[])
                }
                _ => {
                    let mut h = RecordHeader::new(RecordType::LogStart, g);
                    h.a = log_start;
                    (h, &[])
                }
            };
            h.flags = FLAG_RELOCATED;
            let (_, seg) = inner.stage(&self.opts, durable, &mut h, payload)?;
            new_pins[kind] = Some(seg);
            n += 1;
        }
        inner.groups.get_mut(&g).expect("exists").pins = new_pins;
        Ok(n)
    }

    /// Deletes segments no group needs, oldest first, after rewriting forward the live records
    /// of old segments that hold little live data. Called by the periodic task about once a
    /// second; callers may also invoke it directly (e.g. after retention).
    pub async fn reclaim(&self) -> Result<ReclaimReport> {
        self.check_writable()?;
        if self.reclaiming.replace(true) {
            return Ok(ReclaimReport::default());
        }
        let _running = ClearOnDrop(&self.reclaiming);
        let mut report = ReclaimReport::default();
        let mut budget = Budget::new(
            (self.opts.segment_bytes * RELOCATE_MAX_LIVE_PERCENT / 100).min(RELOCATE_BUDGET_BYTES),
        );
        let limit = self.opts.segment_bytes * RELOCATE_MAX_LIVE_PERCENT / 100;
        let mut candidates = Vec::new();
        // Bounded by MAX_RECLAIM_SEGMENTS iterations. Segments only leave the front of the
        // deque here (one call at a time), so index k stays segment k across the awaits.
        for k in 0..MAX_RECLAIM_SEGMENTS {
            let (base, plan, complete) = {
                let mut guard = self.inner.borrow_mut();
                let inner = &mut *guard;
                if k >= inner.segments.len() {
                    break;
                }
                let active = inner.staging.active_seg_base();
                let s = &inner.segments[k];
                if s.base == active || s.file.is_none() || s.write_seq != s.synced_seq {
                    break;
                }
                let base = s.base;
                if !inner.pinned(k) {
                    candidates.push(base);
                    continue;
                }
                let s = &mut inner.segments[k];
                if s.live_bytes > limit {
                    break;
                }
                // Records that retention or compaction is still deleting need no copy: wait
                // until the segment has stopped draining for `relocate_after_ms`. A segment
                // held only by state records (no live entry) moves at once: that is a few small
                // records, and waiting would keep a whole file.
                if self.opts.relocate_after_ms > 0 && s.live_entries > 0 {
                    let now = Instant::now();
                    let wait = Duration::from_millis(self.opts.relocate_after_ms);
                    match s.drain_seen {
                        Some((seen, at)) if s.live_bytes >= seen => {
                            if now.duration_since(at) < wait {
                                break;
                            }
                        }
                        _ => {
                            s.drain_seen = Some((s.live_bytes, now));
                            break;
                        }
                    }
                }
                let (plan, complete) = self.plan_relocation(inner, k, &mut budget)?;
                (base, plan, complete)
            };
            let bufs = read_planned(plan.iter().map(|r| &r.read)).await?;
            self.check_writable()?;
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            debug_assert_eq!(inner.segments[k].base, base, "segment k moved during reads");
            let (moved, staged_all) = self.stage_relocations(inner, plan, bufs)?;
            report.records_relocated += moved;
            if complete && staged_all {
                report.records_relocated += self.checkpoint_segment(inner, k)?.0;
            }
            if inner.pinned(k) {
                // The budget or the staging room ran out: the next call goes on, at once (what
                // this one moved is not the segment draining).
                let s = &mut inner.segments[k];
                if let Some((_, at)) = s.drain_seen {
                    s.drain_seen = Some((s.live_bytes, at));
                }
                break;
            }
            candidates.push(base);
        }
        if candidates.is_empty() {
            if report.records_relocated > 0 {
                // Hand the copies to the disk now, so staging does not hold them until the next
                // round and the next call starts from an empty buffer.
                self.sync().await?;
            }
            return Ok(report);
        }
        // Everything that replaced the candidates' records (relocated copies, newer state
        // records) was staged before this call; make it durable before deleting anything.
        self.sync().await?;
        // Write and sync phases keep running meanwhile: they only touch segments with staged or
        // unsynced bytes, and candidates have neither (a phase that still holds a candidate's
        // file handle may fdatasync it after the rename or unlink, which is harmless). Unlinking
        // a large file or fsyncing the directory can take a journal commit's time, which must
        // not stall appends. Nothing depends on the deletions being durable: a file that comes
        // back after a crash is an old segment recovery accepts, or a spare.
        self.delete_front_segments(&candidates, &mut report).await?;
        self.disk
            .sync_dir(&self.opts.dir)
            .await
            .map_err(|e| StorageError::io("fsync_dir", &self.opts.dir, None, e))?;
        let mut inner = self.inner.borrow_mut();
        inner.stats.segments_deleted += report.segments_deleted as u64;
        inner.stats.segments = inner.segments.len() as u64;
        Ok(report)
    }

    async fn delete_front_segments(
        &self,
        candidates: &[u64],
        report: &mut ReclaimReport,
    ) -> Result<()> {
        for &base in candidates {
            let seg = {
                let mut inner = self.inner.borrow_mut();
                match inner.segments.front() {
                    Some(s) if s.base == base && !inner.pinned(0) => inner.segments.pop_front(),
                    _ => None,
                }
            };
            let Some(seg) = seg else { break };
            let bytes = seg.file.as_ref().and_then(|f| f.size().ok()).unwrap_or(0);
            drop(seg.file);
            let pool = self.inner.borrow().spares.clone();
            if pool.borrow().len() < self.opts.recycle_segments && bytes > 0 {
                // Its blocks are allocated and written: a later roll reuses them (module doc).
                let spare = spare_path(&self.opts.dir, seg.base);
                self.disk
                    .rename(&seg.path, &spare)
                    .await
                    .map_err(|e| StorageError::io("rename", &seg.path, None, e))?;
                pool.borrow_mut().push_back(Spare { path: spare, bytes });
            } else {
                self.disk
                    .remove(&seg.path)
                    .await
                    .map_err(|e| StorageError::io("remove", &seg.path, None, e))?;
            }
            report.segments_deleted += 1;
        }
        Ok(())
    }

    /// Checks cross-structure invariants (tests and the fuzzer call this after every step).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let inner = self.inner.borrow();
        assert!(self.durable.get() <= self.written.get() && self.written.get() <= inner.staged_lsn);
        let mut live: HashMap<u64, (u64, u64)> = HashMap::new();
        let mut cached = 0usize;
        for g in inner.groups.values() {
            g.check_invariants();
            for e in &g.entries {
                let k = seg_pos(&inner.segments, e.lsn).expect("entry inside a segment");
                let v = live.entry(inner.segments[k].base).or_default();
                v.0 += 1;
                v.1 += e.record_len();
                if let Some(b) = &e.cached {
                    cached += b.len();
                }
                if e.lsn + e.record_len() > self.written.get() {
                    assert!(e.cached.is_some(), "unwritten entry must be cached");
                }
            }
        }
        for s in &inner.segments {
            let v = live.get(&s.base).copied().unwrap_or_default();
            assert_eq!(
                (s.live_entries, s.live_bytes),
                v,
                "segment {} live accounting",
                s.base
            );
        }
        assert_eq!(cached, inner.cache.bytes, "cache byte accounting");
        for w in inner.segments.iter().collect::<Vec<_>>().windows(2) {
            assert!(w[0].base < w[1].base);
        }
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
