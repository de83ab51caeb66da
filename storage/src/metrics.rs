//! WAL statistics. The hot path bumps plain counters in [`WalStats`] (no registry lookups per
//! append); [`export`] publishes them to the `metrics` crate, called once per flush.

/// Counters and gauges of one shard's WAL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    pub appends: u64,
    pub appended_bytes: u64,
    /// Write rounds (`flush` or `sync` that found staged bytes).
    pub flushes: u64,
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
    pub cache_bytes: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub io_errors: u64,
}

/// Metric names exported by this crate.
pub const RECOVERY_DURATION_SECONDS: &str = "chronik_wal_recovery_duration_seconds";
pub const RECOVERY_BYTES: &str = "chronik_wal_recovery_bytes";

/// Publishes `s` to the `metrics` recorder (no-op if none is installed).
pub fn export(s: &WalStats) {
    metrics::counter!("chronik_wal_appends_total").absolute(s.appends);
    metrics::counter!("chronik_wal_appended_bytes_total").absolute(s.appended_bytes);
    metrics::counter!("chronik_wal_flushes_total").absolute(s.flushes);
    metrics::counter!("chronik_wal_written_bytes_total").absolute(s.written_bytes);
    metrics::counter!("chronik_wal_fsyncs_total").absolute(s.fsyncs);
    metrics::gauge!("chronik_wal_fsync_latency_us_last").set(s.fsync_latency_us_last as f64);
    metrics::gauge!("chronik_wal_fsync_latency_us_max").set(s.fsync_latency_us_max as f64);
    metrics::gauge!("chronik_wal_segments").set(s.segments as f64);
    metrics::counter!("chronik_wal_segments_deleted_total").absolute(s.segments_deleted);
    metrics::counter!("chronik_wal_segments_recycled_total").absolute(s.segments_recycled);
    metrics::counter!("chronik_wal_segments_prepared_total").absolute(s.segments_prepared);
    metrics::counter!("chronik_wal_relocated_records_total").absolute(s.relocated_records);
    metrics::gauge!("chronik_wal_cache_bytes").set(s.cache_bytes as f64);
    metrics::counter!("chronik_wal_cache_hits_total").absolute(s.cache_hits);
    metrics::counter!("chronik_wal_cache_misses_total").absolute(s.cache_misses);
    metrics::counter!("chronik_wal_io_errors_total").absolute(s.io_errors);
}
