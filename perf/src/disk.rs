//! `disk`: qualify a data directory the way `fio` would, through io_uring and O_DIRECT.
//!
//! - Sequential O_DIRECT writes of 4 KiB, 64 KiB and 1 MiB blocks at queue depth 1 and 32:
//!   bandwidth, IOPS and per-write completion latency.
//! - fdatasync latency: a 4 KiB O_DIRECT write followed by an fdatasync, one at a time, like a WAL
//!   committing a small batch.
//!
//! The test file is preallocated (fallocate) so the figures are about the device and the
//! filesystem's data path, as for a WAL segment that was created ahead of time, and removed at the
//! end. Writes wrap around inside the file.
//!
//! O_DIRECT arithmetic: buffers, lengths and offsets must be multiples of the logical block size.
//! We align everything to 4096, which covers 512-byte and 4 KiB devices: a 64 KiB block at queue
//! slot 3 writes bytes [3 × 65536, 4 × 65536) = [196608, 262144) of the file, then the next
//! submission goes to 262144, and after the last block that fits, back to 0.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring};
use serde::{Deserialize, Serialize};

use crate::error::{PerfError, Result};
use crate::histo::{LatencyHisto, LatencySummary};
use crate::sysinfo::Machine;

/// Alignment of O_DIRECT buffers, lengths and offsets.
pub const ALIGN: usize = 4096;
/// Block sizes tested.
pub const BLOCK_SIZES: [usize; 3] = [4 * 1024, 64 * 1024, 1024 * 1024];
/// Queue depths tested.
pub const QUEUE_DEPTHS: [usize; 2] = [1, 32];
/// Largest queue depth (sizes the ring and the buffer pool).
const MAX_QUEUE_DEPTH: usize = 32;
/// Bounds on the test file and the fdatasync count.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024 * 1024;
pub const MAX_FSYNCS: u32 = 1_000_000;

const _: () = assert!(MAX_QUEUE_DEPTH >= QUEUE_DEPTHS[1]);
const _: () = assert!(BLOCK_SIZES[0].is_multiple_of(ALIGN) && BLOCK_SIZES[2].is_multiple_of(ALIGN));

/// What to test.
#[derive(Debug, Clone)]
pub struct DiskOptions {
    pub dir: PathBuf,
    /// Size of the preallocated test file (a multiple of 1 MiB).
    pub file_bytes: u64,
    /// Time limit of each write test.
    pub seconds_per_test: f64,
    /// Most fdatasyncs in the sync test (it also stops at `seconds_per_test`).
    pub fsyncs: u32,
}

/// Result of one write test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteTest {
    pub block_bytes: usize,
    pub queue_depth: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    pub iops: f64,
    /// Submission to completion of each write.
    pub latency_ms: LatencySummary,
}

/// Result of the fdatasync test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncTest {
    pub write_bytes: usize,
    pub count: u64,
    pub fdatasync_latency_ms: LatencySummary,
    /// Write plus fdatasync, as a WAL commit of one small batch would see it.
    pub write_and_sync_latency_ms: LatencySummary,
}

/// The whole `disk` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskResult {
    pub tool: String,
    pub dir: PathBuf,
    pub machine: Machine,
    pub file_bytes: u64,
    pub writes: Vec<WriteTest>,
    pub sync: SyncTest,
    /// Highest `mb_per_s` over the write tests.
    pub best_write_mb_per_s: f64,
}

impl DiskResult {
    /// Reads a result written as JSON by `chronik-perf disk --output`.
    pub fn read_json(path: &Path) -> Result<DiskResult> {
        let text = std::fs::read_to_string(path).map_err(|e| PerfError::Io {
            op: "read",
            path: path.to_path_buf(),
            offset: 0,
            source: e,
        })?;
        serde_json::from_str(&text).map_err(|e| PerfError::Result {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Human-readable table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "disk {} ({} cores, kernel {}), file {} MiB, O_DIRECT via io_uring",
            self.dir.display(),
            self.machine.cores,
            self.machine.kernel,
            self.file_bytes / (1024 * 1024)
        );
        let _ = writeln!(
            out,
            "{:>8} {:>4} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "block", "qd", "MB/s", "IOPS", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        for t in &self.writes {
            let _ = writeln!(
                out,
                "{:>8} {:>4} {:>10.1} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                human_block(t.block_bytes),
                t.queue_depth,
                t.mb_per_s,
                t.iops,
                t.latency_ms.p50,
                t.latency_ms.p99,
                t.latency_ms.p999,
                t.latency_ms.max
            );
        }
        let s = &self.sync;
        let _ = writeln!(
            out,
            "fdatasync after {} write ({} samples): p50 {:.3} ms p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
            human_block(s.write_bytes),
            s.count,
            s.fdatasync_latency_ms.p50,
            s.fdatasync_latency_ms.p90,
            s.fdatasync_latency_ms.p99,
            s.fdatasync_latency_ms.p999,
            s.fdatasync_latency_ms.max
        );
        let _ = writeln!(
            out,
            "write+fdatasync: p50 {:.3} ms p99 {:.3} ms; best sequential write {:.1} MB/s",
            s.write_and_sync_latency_ms.p50,
            s.write_and_sync_latency_ms.p99,
            self.best_write_mb_per_s
        );
        out
    }
}

fn human_block(b: usize) -> String {
    if b >= 1024 * 1024 {
        format!("{}MiB", b / (1024 * 1024))
    } else {
        format!("{}KiB", b / 1024)
    }
}

/// A heap buffer aligned for O_DIRECT.
struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> Result<AlignedBuf> {
        let layout = std::alloc::Layout::from_size_align(len.max(ALIGN), ALIGN)
            .map_err(|e| PerfError::InvalidWorkload(format!("buffer layout: {e}")))?;
        // SAFETY: layout has non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // Non-zero, non-repeating filler so no layer can shortcut zero pages.
        for i in 0..layout.size() {
            // SAFETY: i < allocation size.
            unsafe { *ptr.add(i) = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] | 1 };
        }
        Ok(AlignedBuf { ptr, len, layout })
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

fn io_err(op: &'static str, path: &Path, offset: u64, source: std::io::Error) -> PerfError {
    PerfError::Io {
        op,
        path: path.to_path_buf(),
        offset,
        source,
    }
}

/// Test file, removed on drop.
struct TestFile {
    file: std::fs::File,
    path: PathBuf,
}

impl Drop for TestFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn open_test_file(dir: &Path, bytes: u64) -> Result<TestFile> {
    let path = dir.join(format!("chronik-perf-disk-{}.tmp", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::EINVAL) {
                " (this filesystem does not support O_DIRECT, e.g. tmpfs)"
            } else {
                ""
            };
            io_err(
                "open O_DIRECT",
                &path,
                0,
                std::io::Error::new(e.kind(), format!("{e}{hint}")),
            )
        })?;
    let tf = TestFile { file, path };
    // SAFETY: valid fd; fallocate has no memory-safety preconditions.
    let rc = unsafe { libc::fallocate(tf.file.as_raw_fd(), 0, 0, bytes as libc::off_t) };
    if rc != 0 {
        return Err(io_err(
            "fallocate",
            &tf.path,
            0,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(tf)
}

/// Runs every test and returns the result.
pub fn run(opts: &DiskOptions) -> Result<DiskResult> {
    let mib = 1024 * 1024;
    if opts.file_bytes < 4 * mib
        || opts.file_bytes > MAX_FILE_BYTES
        || !opts.file_bytes.is_multiple_of(mib)
    {
        return Err(PerfError::InvalidWorkload(format!(
            "file size must be a multiple of 1 MiB in 4 MiB..={MAX_FILE_BYTES}"
        )));
    }
    if !(opts.seconds_per_test > 0.0 && opts.seconds_per_test <= 3600.0) {
        return Err(PerfError::InvalidWorkload(
            "seconds per test must be in (0, 3600]".into(),
        ));
    }
    if opts.fsyncs == 0 || opts.fsyncs > MAX_FSYNCS {
        return Err(PerfError::InvalidWorkload(format!(
            "fsyncs must be in 1..={MAX_FSYNCS}"
        )));
    }
    let tf = open_test_file(&opts.dir, opts.file_bytes)?;
    let mut ring = IoUring::new(2 * MAX_QUEUE_DEPTH as u32)
        .map_err(|e| io_err("io_uring_setup", &tf.path, 0, e))?;
    let limit = Duration::from_secs_f64(opts.seconds_per_test);
    let mut writes = Vec::new();
    for &bs in &BLOCK_SIZES {
        for &qd in &QUEUE_DEPTHS {
            writes.push(write_test(&mut ring, &tf, opts.file_bytes, bs, qd, limit)?);
        }
    }
    let sync = sync_test(&mut ring, &tf, opts.file_bytes, opts.fsyncs, limit)?;
    let best_write_mb_per_s = writes.iter().map(|w| w.mb_per_s).fold(0.0, f64::max);
    Ok(DiskResult {
        tool: "chronik-perf".into(),
        dir: opts.dir.clone(),
        machine: Machine::probe(),
        file_bytes: opts.file_bytes,
        writes,
        sync,
        best_write_mb_per_s,
    })
}

fn write_test(
    ring: &mut IoUring,
    tf: &TestFile,
    file_bytes: u64,
    bs: usize,
    qd: usize,
    limit: Duration,
) -> Result<WriteTest> {
    assert!((1..=MAX_QUEUE_DEPTH).contains(&qd) && bs.is_multiple_of(ALIGN));
    let fd = types::Fd(tf.file.as_raw_fd());
    let bufs: Vec<AlignedBuf> = (0..qd)
        .map(|_| AlignedBuf::new(bs))
        .collect::<Result<_>>()?;
    let mut free: Vec<usize> = (0..qd).rev().collect();
    let mut started = [None::<Instant>; MAX_QUEUE_DEPTH];
    let mut offsets = [0u64; MAX_QUEUE_DEPTH];
    // Wrap before the first block that would not fit entirely.
    let wrap = file_bytes - file_bytes % bs as u64;
    let mut next_off = 0u64;
    let mut histo = LatencyHisto::new();
    let mut bytes = 0u64;
    let mut inflight = 0usize;
    let begin = Instant::now();
    // At most this many writes per test, so a very fast device cannot loop for long.
    let max_writes = (MAX_FILE_BYTES / bs as u64).max(1);
    let mut submitted = 0u64;
    loop {
        let done = begin.elapsed() >= limit || submitted >= max_writes;
        while !done && inflight < qd {
            let Some(slot) = free.pop() else { break };
            let buf = &bufs[slot];
            let sqe = opcode::Write::new(fd, buf.ptr, buf.len as u32)
                .offset(next_off)
                .build()
                .user_data(slot as u64);
            offsets[slot] = next_off;
            started[slot] = Some(Instant::now());
            // SAFETY: the buffer outlives the operation (we wait for every completion below
            // before `bufs` is dropped), and the ring has room (inflight < qd <= entries).
            unsafe {
                ring.submission().push(&sqe).map_err(|_| {
                    io_err(
                        "io_uring push",
                        &tf.path,
                        next_off,
                        std::io::Error::other("submission queue full"),
                    )
                })?;
            }
            inflight += 1;
            submitted += 1;
            next_off = (next_off + bs as u64) % wrap;
        }
        if inflight == 0 {
            break;
        }
        ring.submit_and_wait(1)
            .map_err(|e| io_err("io_uring_enter", &tf.path, next_off, e))?;
        let completions: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (slot, res) in completions {
            let slot = slot as usize;
            inflight -= 1;
            free.push(slot);
            let off = offsets[slot];
            if res < 0 {
                drain(ring, inflight);
                return Err(io_err(
                    "write",
                    &tf.path,
                    off,
                    std::io::Error::from_raw_os_error(-res),
                ));
            }
            if res as usize != bs {
                drain(ring, inflight);
                return Err(io_err(
                    "write",
                    &tf.path,
                    off,
                    std::io::Error::other(format!("short write: {res} of {bs} bytes")),
                ));
            }
            if let Some(t) = started[slot].take() {
                histo.record_ns(t.elapsed().as_nanos() as u64);
            }
            bytes += bs as u64;
        }
    }
    let seconds = begin.elapsed().as_secs_f64();
    Ok(WriteTest {
        block_bytes: bs,
        queue_depth: qd,
        bytes,
        seconds,
        mb_per_s: bytes as f64 / 1e6 / seconds,
        iops: histo.count() as f64 / seconds,
        latency_ms: histo.summary(),
    })
}

/// Waits for every outstanding operation so no buffer is freed while the kernel uses it.
fn drain(ring: &mut IoUring, mut inflight: usize) {
    while inflight > 0 {
        if ring.submit_and_wait(1).is_err() {
            return;
        }
        inflight -= ring.completion().count().min(inflight);
    }
}

fn submit_one(
    ring: &mut IoUring,
    sqe: &io_uring::squeue::Entry,
    tf: &TestFile,
    offset: u64,
    op: &'static str,
) -> Result<i32> {
    // SAFETY: callers keep any buffer referenced by `sqe` alive until this returns, and it
    // returns only after the completion.
    unsafe {
        ring.submission().push(sqe).map_err(|_| {
            io_err(
                op,
                &tf.path,
                offset,
                std::io::Error::other("submission queue full"),
            )
        })?;
    }
    ring.submit_and_wait(1)
        .map_err(|e| io_err("io_uring_enter", &tf.path, offset, e))?;
    let res = ring
        .completion()
        .next()
        .map(|c| c.result())
        .ok_or_else(|| io_err(op, &tf.path, offset, std::io::Error::other("no completion")))?;
    if res < 0 {
        return Err(io_err(
            op,
            &tf.path,
            offset,
            std::io::Error::from_raw_os_error(-res),
        ));
    }
    Ok(res)
}

fn sync_test(
    ring: &mut IoUring,
    tf: &TestFile,
    file_bytes: u64,
    count: u32,
    limit: Duration,
) -> Result<SyncTest> {
    let bs = ALIGN;
    let buf = AlignedBuf::new(bs)?;
    let fd = types::Fd(tf.file.as_raw_fd());
    let mut sync_h = LatencyHisto::new();
    let mut both_h = LatencyHisto::new();
    let begin = Instant::now();
    let mut off = 0u64;
    for _ in 0..count {
        if begin.elapsed() >= limit {
            break;
        }
        let t0 = Instant::now();
        let w = opcode::Write::new(fd, buf.ptr, bs as u32)
            .offset(off)
            .build();
        let n = submit_one(ring, &w, tf, off, "write")?;
        if n as usize != bs {
            return Err(io_err(
                "write",
                &tf.path,
                off,
                std::io::Error::other("short write"),
            ));
        }
        let t1 = Instant::now();
        let s = opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build();
        submit_one(ring, &s, tf, off, "fdatasync")?;
        let t2 = Instant::now();
        sync_h.record_ns((t2 - t1).as_nanos() as u64);
        both_h.record_ns((t2 - t0).as_nanos() as u64);
        off = (off + bs as u64) % file_bytes;
    }
    Ok(SyncTest {
        write_bytes: bs,
        count: sync_h.count(),
        fdatasync_latency_ms: sync_h.summary(),
        write_and_sync_latency_ms: both_h.summary(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_options() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = DiskOptions {
            dir: dir.path().into(),
            file_bytes: 3 * 1024 * 1024,
            seconds_per_test: 0.05,
            fsyncs: 10,
        };
        assert!(run(&o).is_err());
        o.file_bytes = 4 * 1024 * 1024;
        o.fsyncs = 0;
        assert!(run(&o).is_err());
        o.fsyncs = 10;
        o.seconds_per_test = f64::NAN;
        assert!(run(&o).is_err());
    }

    #[test]
    fn measures_a_small_file_quickly() {
        // Uses the crate directory's filesystem (O_DIRECT-capable on the reference machine; tmpfs
        // would not be). Short limits keep this well under a second.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let o = DiskOptions {
            dir: dir.path().into(),
            file_bytes: 8 * 1024 * 1024,
            seconds_per_test: 0.05,
            fsyncs: 20,
        };
        let r = match run(&o) {
            Ok(r) => r,
            Err(e) if e.to_string().contains("io_uring_setup") => {
                eprintln!("SKIP: io_uring unavailable here: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(r.writes.len(), BLOCK_SIZES.len() * QUEUE_DEPTHS.len());
        for w in &r.writes {
            assert!(w.bytes > 0 && w.bytes % w.block_bytes as u64 == 0);
            assert!(w.mb_per_s > 0.0);
        }
        assert!(r.sync.count > 0 && r.sync.count <= 20);
        assert!(r.best_write_mb_per_s > 0.0);
        assert!(r.table().contains("fdatasync"));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "test file removed"
        );
    }
}
