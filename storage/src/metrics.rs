//! WAL statistics. The hot path bumps plain counters in [`WalStats`] (no registry lookups per
//! append); [`export`] publishes them to the `metrics` crate, called once per flush.

/// Counters and gauges of one shard's WAL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    pub appends: u64,
    pub appended_bytes: u64,
    /// Write rounds (`flush` or `sync` that found staged bytes).
    pub flushes: u64,
    /// Write rounds started while an earlier one was still writing (pipelined writes).
    pub pipelined_flushes: u64,
    pub written_bytes: u64,
    pub fsyncs: u64,
    pub fsync_latency_us_last: u64,
    pub fsync_latency_us_max: u64,
    pub fsync_latency_us_total: u64,
    pub segments: u64,
    pub segments_deleted: u64,
    /// Segment files reused from the spare pool instead of created.
    pub segments_recycled: u64,
    /// Spare segment files zero-filled in the background.
    pub segments_prepared: u64,
    pub relocated_records: u64,
    /// Entries whose payload log compaction replaced (`Wal::replace_payload`).
    pub replaced_payloads: u64,
    pub cache_bytes: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub io_errors: u64,
}

/// Metric names exported by this crate.
pub const RECOVERY_DURATION_SECONDS: &str = "chronik_wal_recovery_duration_seconds";
pub const RECOVERY_BYTES: &str = "chronik_wal_recovery_bytes";

/// The `shard` label of a WAL's metrics: its directory name without the `shard-` prefix
/// (`<wal_dir>/shard-3` → `3`), so several WALs in one process export separate series.
pub fn shard_label(dir: &std::path::Path) -> String {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_prefix("shard-").unwrap_or(&name).to_string()
}

/// Registered metric handles of one WAL (looked up once, labelled by shard); `export` publishes
/// a [`WalStats`] snapshot through them without registry lookups.
pub struct Handles {
    appends: metrics::Counter,
    appended_bytes: metrics::Counter,
    flushes: metrics::Counter,
    pipelined_flushes: metrics::Counter,
    written_bytes: metrics::Counter,
    fsyncs: metrics::Counter,
    fsync_last: metrics::Gauge,
    fsync_max: metrics::Gauge,
    segments: metrics::Gauge,
    segments_deleted: metrics::Counter,
    segments_recycled: metrics::Counter,
    segments_prepared: metrics::Counter,
    relocated: metrics::Counter,
    replaced: metrics::Counter,
    cache_bytes: metrics::Gauge,
    cache_hits: metrics::Counter,
    cache_misses: metrics::Counter,
    io_errors: metrics::Counter,
    /// Distribution of fdatasync latencies (seconds; the broker renders it as a histogram).
    pub fsync_seconds: metrics::Histogram,
    /// Distribution of write latencies, one per segment written in a round (seconds).
    pub write_seconds: metrics::Histogram,
}

/// Histogram names exported by this crate (recorded once per I/O, never per append).
pub const FSYNC_SECONDS: &str = "chronik_wal_fsync_seconds";
pub const WRITE_SECONDS: &str = "chronik_wal_write_seconds";

impl Handles {
    /// Registers the handles with the installed recorder (no-op handles if none is installed).
    pub fn new(shard: &str) -> Self {
        let l = || [("shard", shard.to_string())];
        Handles {
            appends: metrics::counter!("chronik_wal_appends_total", &l()),
            appended_bytes: metrics::counter!("chronik_wal_appended_bytes_total", &l()),
            flushes: metrics::counter!("chronik_wal_flushes_total", &l()),
            pipelined_flushes: metrics::counter!("chronik_wal_pipelined_flushes_total", &l()),
            written_bytes: metrics::counter!("chronik_wal_written_bytes_total", &l()),
            fsyncs: metrics::counter!("chronik_wal_fsyncs_total", &l()),
            fsync_last: metrics::gauge!("chronik_wal_fsync_latency_us_last", &l()),
            fsync_max: metrics::gauge!("chronik_wal_fsync_latency_us_max", &l()),
            segments: metrics::gauge!("chronik_wal_segments", &l()),
            segments_deleted: metrics::counter!("chronik_wal_segments_deleted_total", &l()),
            segments_recycled: metrics::counter!("chronik_wal_segments_recycled_total", &l()),
            segments_prepared: metrics::counter!("chronik_wal_segments_prepared_total", &l()),
            relocated: metrics::counter!("chronik_wal_relocated_records_total", &l()),
            replaced: metrics::counter!("chronik_wal_replaced_payloads_total", &l()),
            cache_bytes: metrics::gauge!("chronik_wal_cache_bytes", &l()),
            cache_hits: metrics::counter!("chronik_wal_cache_hits_total", &l()),
            cache_misses: metrics::counter!("chronik_wal_cache_misses_total", &l()),
            io_errors: metrics::counter!("chronik_wal_io_errors_total", &l()),
            fsync_seconds: metrics::histogram!(FSYNC_SECONDS, &l()),
            write_seconds: metrics::histogram!(WRITE_SECONDS, &l()),
        }
    }

    /// Publishes `s` (called once per flush round, not per append).
    pub fn export(&self, s: &WalStats) {
        self.appends.absolute(s.appends);
        self.appended_bytes.absolute(s.appended_bytes);
        self.flushes.absolute(s.flushes);
        self.pipelined_flushes.absolute(s.pipelined_flushes);
        self.written_bytes.absolute(s.written_bytes);
        self.fsyncs.absolute(s.fsyncs);
        self.fsync_last.set(s.fsync_latency_us_last as f64);
        self.fsync_max.set(s.fsync_latency_us_max as f64);
        self.segments.set(s.segments as f64);
        self.segments_deleted.absolute(s.segments_deleted);
        self.segments_recycled.absolute(s.segments_recycled);
        self.segments_prepared.absolute(s.segments_prepared);
        self.relocated.absolute(s.relocated_records);
        self.replaced.absolute(s.replaced_payloads);
        self.cache_bytes.set(s.cache_bytes as f64);
        self.cache_hits.absolute(s.cache_hits);
        self.cache_misses.absolute(s.cache_misses);
        self.io_errors.absolute(s.io_errors);
    }
}
