//! Background preparation of spare segment files: a new file written full of zeros, so that the
//! roll that takes it appends into blocks that are allocated *and written* (the same benefit as
//! a recycled file, see `wal.rs`). Fresh fallocated space on ext4 is "unwritten": every O_DIRECT
//! write there converts extents in the journal, so every fdatasync commits the journal, and with
//! two shards' WALs committing alternately produce latency stalled for 100–300 ms (measured with
//! `chronik-perf` latency-1k at 5,000 msg/s: p99 412 ms unprepared, 5 ms prepared).
//!
//! Zeroing costs a second write of each segment's bytes, so it is paced (`prepare_bytes_per_sec`)
//! and skipped when the WAL fills segments faster than that pace (throughput workloads, where
//! large group commits amortise the journal cost anyway). Once retention deletes segments,
//! recycled files take over and nothing is zeroed any more.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::disk::{Disk, WriteMode};
use crate::error::{Result, StorageError};

/// Zeros written per I/O.
pub const ZERO_CHUNK_BYTES: usize = 1 << 20;
/// Size of the first segment of a brand-new WAL, zero-filled before the WAL opens (a few
/// milliseconds); later prepared segments double in size up to `segment_bytes`, so preparation
/// stays ahead of a writer slower than half the preparation pace from the first byte on.
pub const FIRST_SEGMENT_BYTES: u64 = 16 << 20;

/// A spare segment file ready for a roll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spare {
    pub path: PathBuf,
    /// File size: the roll size of the segment that takes it (capped at `segment_bytes`).
    pub bytes: u64,
}

/// A DMA buffer of zeros (fresh DMA memory is not zeroed).
fn zeroed(len: usize) -> glommio::io::DmaBuffer {
    let mut b = glommio::allocate_dma_buffer_global(len);
    b.as_bytes_mut().fill(0);
    b
}

/// Creates `path` (or reuses a leftover of a crashed preparation), writes `bytes` of zeros into
/// it at no more than `pace` bytes per second (0: unpaced), makes file and directory entry
/// durable. The caller adds it to the spare pool afterwards. Stops with an error as soon as
/// `alive()` is false (the WAL was dropped: a WAL opened again on the same directory in this
/// process may take the file over).
pub async fn zero_fill(
    disk: &dyn Disk,
    dir: &Path,
    path: &Path,
    bytes: u64,
    pace: u64,
    alive: &dyn Fn() -> bool,
) -> Result<()> {
    // Deferred: the zeros are made durable by one fdatasync at the end, not per chunk.
    let file = disk
        .open(path, WriteMode::Deferred)
        .await
        .map_err(|e| StorageError::io("create", path, None, e))?;
    let zeros = Rc::new(zeroed(ZERO_CHUNK_BYTES));
    let started = Instant::now();
    let mut pos = 0u64;
    // Bounded by bytes / ZERO_CHUNK_BYTES iterations.
    while pos < bytes {
        if !alive() {
            return Err(StorageError::Unavailable);
        }
        let n = (bytes - pos).min(ZERO_CHUNK_BYTES as u64);
        let buf = if n == ZERO_CHUNK_BYTES as u64 {
            zeros.clone()
        } else {
            // The last chunk of a size that is not a multiple of the chunk (4 KiB aligned).
            Rc::new(zeroed(n as usize))
        };
        file.write_at(buf, pos)
            .await
            .map_err(|e| StorageError::io("write", path, Some(pos), e))?;
        pos += n;
        // 0 and u64::MAX: unpaced (tests use MAX for determinism: no timers).
        if pace > 0 && pace < u64::MAX {
            let due = Duration::from_secs_f64(pos as f64 / pace as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                glommio::timer::sleep(wait).await;
            }
        }
    }
    file.fdatasync()
        .await
        .map_err(|e| StorageError::io("fdatasync", path, None, e))?;
    disk.sync_dir(dir)
        .await
        .map_err(|e| StorageError::io("fsync_dir", dir, None, e))
}
