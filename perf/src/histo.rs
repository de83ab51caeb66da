//! Latency histograms (HDR, microsecond resolution) and the percentile summaries we report.
//!
//! Each producer and consumer thread records into its own histograms; the run merges them. HDR
//! histograms merge exactly (bucket counts add), so the merged p99 is the true p99 of all samples,
//! not an average of per-thread p99s.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::error::{PerfError, Result};

/// Highest latency we track: one hour in µs. Larger samples are clamped to it (and counted).
pub const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Significant decimal digits kept (0.1% relative error).
const SIGFIG: u8 = 3;
/// Percentiles plotted in the CDF; the tail gets more points than the body.
pub const CDF_PERCENTILES: [f64; 14] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
];

/// A latency histogram in microseconds.
#[derive(Clone)]
pub struct LatencyHisto {
    h: Histogram<u64>,
    /// Samples above [`MAX_LATENCY_US`] recorded as the maximum.
    pub clamped: u64,
}

impl Default for LatencyHisto {
    fn default() -> Self {
        LatencyHisto::new()
    }
}

impl std::fmt::Debug for LatencyHisto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHisto")
            .field("count", &self.h.len())
            .field("clamped", &self.clamped)
            .finish()
    }
}

impl LatencyHisto {
    /// An empty histogram covering 1 µs .. [`MAX_LATENCY_US`].
    pub fn new() -> LatencyHisto {
        let h = Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGFIG)
            .expect("constant histogram bounds are valid");
        LatencyHisto { h, clamped: 0 }
    }

    /// Records one latency in nanoseconds (sub-µs values count as 1 µs).
    pub fn record_ns(&mut self, ns: u64) {
        let us = (ns / 1_000).max(1);
        let us = if us > MAX_LATENCY_US {
            self.clamped += 1;
            MAX_LATENCY_US
        } else {
            us
        };
        // Cannot fail: the value is within the bounds set in `new`.
        let _ = self.h.record(us);
    }

    /// Adds every sample of `other` into `self`.
    pub fn merge(&mut self, other: &LatencyHisto) -> Result<()> {
        self.h
            .add(&other.h)
            .map_err(|e| PerfError::Histogram(format!("merge: {e:?}")))?;
        self.clamped += other.clamped;
        Ok(())
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.h.len()
    }

    /// Empties the histogram, keeping its allocation.
    pub fn reset(&mut self) {
        self.h.reset();
        self.clamped = 0;
    }

    /// Value at percentile `p` (0..=100) in milliseconds; 0 when empty.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.h.is_empty() {
            return 0.0;
        }
        self.h.value_at_percentile(p) as f64 / 1_000.0
    }

    /// The summary we report: p50, p90, p99, p99.9 and max, in ms.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            p50: self.percentile_ms(50.0),
            p90: self.percentile_ms(90.0),
            p99: self.percentile_ms(99.0),
            p999: self.percentile_ms(99.9),
            max: if self.h.is_empty() {
                0.0
            } else {
                self.h.max() as f64 / 1_000.0
            },
            count: self.count(),
        }
    }

    /// `(percentile, ms)` points for a latency CDF plot.
    pub fn cdf(&self) -> Vec<(f64, f64)> {
        if self.h.is_empty() {
            return Vec::new();
        }
        CDF_PERCENTILES
            .iter()
            .map(|p| (*p, self.percentile_ms(*p)))
            .collect()
    }
}

/// Percentiles of one latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// Samples behind these figures.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_equals_recording_everything_in_one() {
        // Two threads with very different latencies: the merged tail must come from the slow one.
        let mut fast = LatencyHisto::new();
        let mut slow = LatencyHisto::new();
        let mut all = LatencyHisto::new();
        for i in 0..9_900u64 {
            let ns = 1_000_000 + i * 10; // ~1 ms
            fast.record_ns(ns);
            all.record_ns(ns);
        }
        for i in 0..100u64 {
            let ns = 100_000_000 + i * 1_000; // ~100 ms
            slow.record_ns(ns);
            all.record_ns(ns);
        }
        let mut merged = LatencyHisto::new();
        merged.merge(&fast).unwrap();
        merged.merge(&slow).unwrap();
        assert_eq!(merged.count(), 10_000);
        assert_eq!(merged.summary(), all.summary());
        let s = merged.summary();
        assert!((0.99..1.11).contains(&s.p50), "p50 {}", s.p50);
        assert!(s.p99 < 1.2, "p99 {} is still the fast thread", s.p99);
        assert!(s.p999 > 99.0, "p999 {} must be the slow thread", s.p999);
        assert!((100.0..100.2).contains(&s.max));
    }

    #[test]
    fn empty_summary_is_zero_and_clamping_is_counted() {
        let h = LatencyHisto::new();
        assert_eq!(h.summary(), LatencySummary::default());
        assert!(h.cdf().is_empty());
        let mut h = LatencyHisto::new();
        h.record_ns(u64::MAX);
        h.record_ns(0);
        assert_eq!(h.clamped, 1);
        assert_eq!(h.count(), 2);
        let cdf = h.cdf();
        assert_eq!(cdf.len(), CDF_PERCENTILES.len());
        assert!(cdf.windows(2).all(|w| w[0].1 <= w[1].1), "CDF is monotone");
        h.reset();
        assert_eq!(h.count(), 0);
    }
}
