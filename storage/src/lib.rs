//! chronik-storage: the per-core write-ahead log that is both the Raft log and the partition log.
//!
//! One [`Wal`] per shard (glommio executor) holds the entries of every Raft group on that core,
//! interleaved in segment files written with O_DIRECT through io_uring; one write and one
//! `fdatasync` make many groups durable at once (group commit). The record format is documented in
//! `storage/FORMAT.md`.
//!
//! Module map (what goes where):
//! - [`error`]: the crate's one error enum and `Result` alias.
//! - [`format`]: pure encode/decode of segment headers and records (no I/O); every decode fallible.
//! - [`disk`]: the narrow I/O seam (`Disk`, `SegmentFile`) and the glommio DMA implementation.
//! - `staging`: aligned in-memory buffers between `append` and the next flush (O_DIRECT arithmetic).
//! - `group`: per-group in-memory indexes (Raft index / Kafka offset → WAL position, state).
//! - `cache`: the bounded per-shard cache of recent payloads (tail reads from memory).
//! - `prepare`: background zero-filling of spare segment files (fresh space is slow on ext4).
//! - `recovery`: the start-up scan that verifies every CRC and rebuilds the indexes.
//! - [`wal`]: the `Wal` itself: appends, flush/sync, reads, retention, reclamation.
//! - [`metrics`]: counters exported to the `metrics` crate and [`WalStats`].
//! - [`testing`]: an in-memory fault-injecting `Disk` for this crate's and other crates' tests.
//!
//! ```no_run
//! use chronik_storage::{EntryKind, EntryMeta, Wal, WalOptions};
//! glommio::LocalExecutorBuilder::default()
//!     .spawn(|| async {
//!         let (wal, _report) = Wal::open(WalOptions::new("/tmp/wal/shard-0")).await.unwrap();
//!         wal.create_group(7).unwrap();
//!         let meta = EntryMeta { index: 1, term: 1, kind: EntryKind::Normal, kafka: None };
//!         let lsn = wal.append(7, meta, b"hello").unwrap(); // written (visible) now
//!         assert!(wal.flush().await.unwrap() >= lsn); // durable now (sync_mode = always)
//!     })
//!     .unwrap()
//!     .join()
//!     .unwrap();
//! ```

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

mod cache;
pub mod crc;
pub mod disk;
pub mod dma_alloc;
pub mod error;
pub mod format;
mod group;
pub mod metrics;
mod prepare;
mod recovery;
mod staging;
pub mod testing;
pub mod wal;

pub use crate::error::{Result, StorageError};
pub use crate::metrics::WalStats;
pub use crate::wal::{ReclaimReport, Wal, EMPTY_KAFKA_BATCH_BYTES};

/// Raft group id (one Kafka partition, or the metadata group 0).
pub type GroupId = u64;
/// Log sequence number: a byte position in this shard's WAL, monotonically increasing across
/// segments. `append` returns the LSN just past its record; the record is durable once
/// `durable_lsn() >= lsn`.
pub type Lsn = u64;

/// Default segment roll size (256 MiB).
pub const DEFAULT_SEGMENT_BYTES: u64 = 256 << 20;
/// Default periodic sync interval.
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 10;
/// Default batch cache size per shard.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;
/// Default number of spare (recycled) segment files per WAL: two rolls' worth, so a steady
/// writer with retention never writes into fresh, unwritten extents.
pub const DEFAULT_RECYCLE_SEGMENTS: usize = 2;
/// Default pace of background zero-filling of new segments: about 8% of this host's disk
/// bandwidth per shard; keeps spares ready for writers up to ~64 MB/s per shard.
pub const DEFAULT_PREPARE_BYTES_PER_SEC: u64 = 128 << 20;
/// Smallest accepted segment size (must hold a few maximal O_DIRECT blocks and headers).
/// Default of [`WalOptions::relocate_after_ms`].
pub const DEFAULT_RELOCATE_AFTER_MS: u64 = 10_000;
pub const MIN_SEGMENT_BYTES: u64 = 64 << 10;

/// When appends become durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// `flush()` writes and fdatasyncs: an acknowledged append is on stable storage.
    Always,
    /// `flush()` only writes; `run_periodic_sync` fdatasyncs every `sync_interval_ms`.
    Periodic,
}

impl FromStr for SyncMode {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "always" => Ok(SyncMode::Always),
            "periodic" => Ok(SyncMode::Periodic),
            _ => Err(StorageError::invalid(format!(
                "wal_sync_mode must be \"always\" or \"periodic\", not {s:?}"
            ))),
        }
    }
}

/// WAL configuration (one per shard).
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Directory of this shard's segments, e.g. `<data>/wal/shard-0`.
    pub dir: PathBuf,
    /// Roll to a new segment file at this size.
    pub segment_bytes: u64,
    pub sync_mode: SyncMode,
    /// Periodic mode: fdatasync interval.
    pub sync_interval_ms: u64,
    /// Bytes of recent payloads kept in memory for tail reads.
    pub cache_bytes: usize,
    /// Deleted segment files kept as spares for reuse by later rolls (see `wal.rs`, recycling).
    pub recycle_segments: usize,
    /// Pace of zero-filling new spare segments in the background (bytes/s); 0 turns
    /// preparation off (new segments are then fallocated, see `prepare.rs`).
    pub prepare_bytes_per_sec: u64,
    /// `always` mode only: open segments O_DSYNC so each group-commit write is durable when it
    /// completes, instead of writing and then fdatasyncing ([`disk::WriteMode::Through`]).
    /// `periodic` mode always defers durability to its fdatasyncs.
    pub write_through: bool,
    /// `reclaim` rewrites forward the live records of an old segment only once that segment's
    /// live bytes have stopped shrinking for this long (see `wal.rs`, reclamation); 0 rewrites
    /// them at the first `reclaim` that finds the segment holding little live data.
    pub relocate_after_ms: u64,
}

impl WalOptions {
    /// Options with the defaults (256 MiB segments, `always` written through, 10 ms, 64 MiB
    /// cache).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalOptions {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            sync_mode: SyncMode::Always,
            sync_interval_ms: DEFAULT_SYNC_INTERVAL_MS,
            cache_bytes: DEFAULT_CACHE_BYTES,
            recycle_segments: DEFAULT_RECYCLE_SEGMENTS,
            prepare_bytes_per_sec: DEFAULT_PREPARE_BYTES_PER_SEC,
            write_through: true,
            relocate_after_ms: DEFAULT_RELOCATE_AFTER_MS,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(StorageError::invalid(format!(
                "segment_bytes {} below minimum {MIN_SEGMENT_BYTES}",
                self.segment_bytes
            )));
        }
        if self.sync_interval_ms == 0 {
            return Err(StorageError::invalid("sync_interval_ms must be > 0"));
        }
        Ok(())
    }
}

/// Raft entry type (mirrors `raft::eraftpb::EntryType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Normal,
    ConfChange,
    ConfChangeV2,
}

/// Kafka offsets of a data entry (its payload is one Kafka v2 record batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KafkaMeta {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// What is known about an entry without reading its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    pub index: u64,
    pub term: u64,
    pub kind: EntryKind,
    /// `None` for empty, no-op, config and metadata entries (they take no Kafka offset).
    pub kafka: Option<KafkaMeta>,
}

/// Raft hard state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

/// Raft conf state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfState {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub voters_outgoing: Vec<u64>,
    pub learners_next: Vec<u64>,
    pub auto_leave: bool,
}

/// A group's Raft index bounds, without the allocations of [`GroupState`] (raft-rs asks for
/// these on every `term`/`entries` call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexBounds {
    /// `last_index + 1` when the log is empty.
    pub first_index: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    pub snapshot_term: u64,
}

/// Per-group view, cheap to compute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupState {
    /// `first_index == last_index + 1` when the log is empty.
    pub first_index: u64,
    pub last_index: u64,
    /// Prefix-compaction point. Invariant: `first_index == snapshot_index + 1`.
    pub snapshot_index: u64,
    pub snapshot_term: u64,
    pub hard_state: HardState,
    pub conf_state: ConfState,
    /// Kafka log start offset. Invariant: `log_start_offset <= next_offset`.
    pub log_start_offset: i64,
    /// Kafka offset of the next batch (last batch's `last_offset + 1`).
    pub next_offset: i64,
    /// Payload bytes of the live entries.
    pub size_bytes: u64,
}

/// What recovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub bytes_scanned: u64,
    pub entries: u64,
    pub truncated_tail_bytes: u64,
    pub duration: Duration,
}
