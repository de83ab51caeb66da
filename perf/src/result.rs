//! The result of a run: the JSON document we write, and the table we print.
//!
//! JSON shape (stable; `compare` and the README read it):
//!
//! ```json
//! { "tool": "chronik-perf", "version": "0.1.0", "bootstrap": "127.0.0.1:9092", "run_id": 1,
//!   "workload": { …the parsed workload… },
//!   "machine": { "cores": 2, "kernel": "6.18.0", … },
//!   "phases": {
//!     "warmup":  { "msgs_per_s": 0.0, "mb_per_s": 0.0, "latency_ms": {…}, "e2e_latency_ms": {…}, … },
//!     "measure": { "msgs_per_s": 0.0, "mb_per_s": 0.0,
//!                  "latency_ms":     { "p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0, "count": 0 },
//!                  "e2e_latency_ms": { "p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0, "count": 0 }, … } },
//!   "delivery": {…}, "broker": {…} | null, "harness": {…}, "timeline": […], "cdf": {…} }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{PerfError, Result};
use crate::histo::LatencySummary;
use crate::sysinfo::Machine;
use crate::workload::Workload;

/// Name of the warm-up phase in [`RunResult::phases`].
pub const PHASE_WARMUP: &str = "warmup";
/// Name of the measured phase in [`RunResult::phases`].
pub const PHASE_MEASURE: &str = "measure";

/// Everything one `run` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub tool: String,
    pub version: String,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_unix_ms: u64,
    pub bootstrap: String,
    /// Tag carried in every message so consumers ignore other runs' messages.
    pub run_id: u32,
    pub workload: Workload,
    pub machine: Machine,
    /// Keyed by [`PHASE_WARMUP`] and [`PHASE_MEASURE`].
    pub phases: BTreeMap<String, PhaseResult>,
    pub delivery: Delivery,
    /// Present when `--broker-pid` was given and the process was readable.
    pub broker: Option<BrokerUsage>,
    pub harness: HarnessUsage,
    /// One point per second from the start of the warm-up.
    pub timeline: Vec<TimelinePoint>,
    pub cdf: Cdf,
    /// The `disk` result this run is compared with, when `--disk-result` was given.
    pub disk: Option<DiskReference>,
    /// 1-minute load average when the measured phase started and ended: anything well above
    /// the broker's and harness's own cores busy means something else shared the machine.
    #[serde(default)]
    pub load_avg_1m: [f64; 2],
}

/// Figures for one phase. Messages are assigned to the phase their intended send time falls in.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PhaseResult {
    pub duration_s: f64,
    /// Target rate (0 = max throughput).
    pub target_msgs_per_s: u64,
    /// Messages sent (handed to the client) in the phase.
    pub sent: u64,
    /// Messages acknowledged by the broker.
    pub acked: u64,
    pub acked_bytes: u64,
    /// Acknowledged messages per second.
    pub msgs_per_s: f64,
    /// Acknowledged payload MB (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Messages consumed per second, summed over consumer groups.
    pub consumed_msgs_per_s: f64,
    /// Produce latency: intended send time to delivery report.
    pub latency_ms: LatencySummary,
    /// End-to-end latency: intended send time to receipt by a consumer.
    pub e2e_latency_ms: LatencySummary,
    /// Failed sends and failed deliveries.
    pub errors: u64,
}

/// Whether every acknowledged message reached every consumer group exactly once.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Delivery {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    /// Error kinds and counts from sends and delivery reports (bounded list).
    pub error_kinds: BTreeMap<String, u64>,
    pub groups: Vec<GroupDelivery>,
    /// True when a producer sent more messages than the tracker can hold, so `missing` and
    /// `duplicates` cover only the tracked prefix.
    pub tracking_truncated: bool,
}

/// Delivery figures for one consumer group.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GroupDelivery {
    pub group: u32,
    /// Messages of this run received (including duplicates).
    pub received: u64,
    /// Distinct messages of this run received.
    pub unique: u64,
    pub duplicates: u64,
    /// Acknowledged messages never received.
    pub missing: u64,
    /// Received messages that had no successful delivery report.
    pub unacked_received: u64,
    /// Messages from other runs or other writers (ignored).
    pub foreign: u64,
    pub errors: u64,
}

/// The broker process over the measured phase (from /proc/<pid>).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BrokerUsage {
    pub pid: u32,
    /// CPU seconds (user + system) spent during the measured phase.
    pub cpu_s: f64,
    /// Average cores busy during the measured phase.
    pub cpu_cores: f64,
    pub rss_max_bytes: u64,
    pub rss_end_bytes: u64,
    /// Seconds the broker's threads, summed, were runnable but waiting for a CPU during the
    /// measured phase (`schedstat`), and how many times they were given one. A wait comparable
    /// to `cpu_s` means the broker was starved of CPU (e.g. by a harness on the same cores), and
    /// its latency says more about the host than about the broker.
    #[serde(default)]
    pub runq_wait_s: Option<f64>,
    #[serde(default)]
    pub runq_slices: Option<u64>,
}

/// The harness's own cost over the measured phase (getrusage, all threads).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HarnessUsage {
    pub user_s: f64,
    pub sys_s: f64,
    /// Average cores the harness kept busy; compare with the machine's cores.
    pub cpu_cores: f64,
    pub max_rss_bytes: u64,
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since the start of the warm-up (end of this interval).
    pub t_s: f64,
    pub phase: String,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    pub consumed_msgs_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub e2e_p99_ms: f64,
    /// Messages handed to the client but not yet acknowledged at the end of the interval: during
    /// a broker stall this grows while `msgs_per_s` drops to zero.
    #[serde(default)]
    pub outstanding: u64,
}

/// Latency CDFs of the measured phase: `(percentile, ms)` pairs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Cdf {
    pub latency_ms: Vec<(f64, f64)>,
    pub e2e_latency_ms: Vec<(f64, f64)>,
}

/// The raw disk figure a run is compared with.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DiskReference {
    /// Best sequential O_DIRECT write bandwidth from the `disk` result.
    pub best_write_mb_per_s: f64,
    /// Measured-phase `mb_per_s` as a percentage of it.
    pub broker_pct_of_disk: f64,
}

impl RunResult {
    /// The measured phase (always present in results this crate builds).
    pub fn measure(&self) -> Option<&PhaseResult> {
        self.phases.get(PHASE_MEASURE)
    }

    /// Writes the result as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| PerfError::Result {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        std::fs::write(path, text).map_err(|e| PerfError::Io {
            op: "write",
            path: path.to_path_buf(),
            offset: 0,
            source: e,
        })
    }

    /// Reads a result written by [`RunResult::write_json`].
    pub fn read_json(path: &Path) -> Result<RunResult> {
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

    /// The human-readable summary table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "workload {} against {} ({} cores, kernel {})",
            self.workload.name, self.bootstrap, self.machine.cores, self.machine.kernel
        );
        let _ = writeln!(
            out,
            "{:<8} {:>7} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>7}",
            "phase",
            "secs",
            "msg/s",
            "MB/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "e2e p50",
            "e2e p99",
            "errors"
        );
        for name in [PHASE_WARMUP, PHASE_MEASURE] {
            if let Some(p) = self.phases.get(name) {
                let _ = writeln!(
                    out,
                    "{:<8} {:>7.1} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>10.2} {:>10.2} {:>7}",
                    name,
                    p.duration_s,
                    p.msgs_per_s,
                    p.mb_per_s,
                    p.latency_ms.p50,
                    p.latency_ms.p90,
                    p.latency_ms.p99,
                    p.latency_ms.p999,
                    p.latency_ms.max,
                    p.e2e_latency_ms.p50,
                    p.e2e_latency_ms.p99,
                    p.errors
                );
            }
        }
        if let Some(m) = self.measure() {
            let _ = writeln!(
                out,
                "e2e (measure): p90 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms over {} messages; consumed {:.0} msg/s",
                m.e2e_latency_ms.p90,
                m.e2e_latency_ms.p999,
                m.e2e_latency_ms.max,
                m.e2e_latency_ms.count,
                m.consumed_msgs_per_s
            );
        }
        let d = &self.delivery;
        let _ = writeln!(
            out,
            "delivery: sent {} acked {} failed {}{}",
            d.sent,
            d.acked,
            d.failed,
            if d.tracking_truncated {
                " (tracking truncated)"
            } else {
                ""
            }
        );
        for g in &d.groups {
            let _ = writeln!(
                out,
                "  group {}: received {} unique {} duplicates {} missing {} unacked-received {} foreign {}",
                g.group, g.received, g.unique, g.duplicates, g.missing, g.unacked_received, g.foreign
            );
        }
        for (kind, n) in &d.error_kinds {
            let _ = writeln!(out, "  error {kind}: {n}");
        }
        if let Some(b) = &self.broker {
            let _ = writeln!(
                out,
                "broker pid {}: {:.2} cores busy ({:.1} CPU s), RSS max {:.1} MiB, end {:.1} MiB",
                b.pid,
                b.cpu_cores,
                b.cpu_s,
                b.rss_max_bytes as f64 / 1048576.0,
                b.rss_end_bytes as f64 / 1048576.0
            );
            if let (Some(wait), Some(slices)) = (b.runq_wait_s, b.runq_slices) {
                let _ = writeln!(
                    out,
                    "broker threads waited {:.1} s for a CPU ({:.0}% of their CPU time; {} runs, {:.3} ms mean wait each)",
                    wait,
                    if b.cpu_s > 0.0 { 100.0 * wait / b.cpu_s } else { 0.0 },
                    slices,
                    if slices > 0 { 1000.0 * wait / slices as f64 } else { 0.0 }
                );
            }
        }
        let _ = writeln!(
            out,
            "machine load average (1 min) at start / end of measure: {:.2} / {:.2}",
            self.load_avg_1m[0], self.load_avg_1m[1]
        );
        let h = &self.harness;
        let _ = writeln!(
            out,
            "harness: {:.2} cores busy (user {:.1} s, sys {:.1} s), max RSS {:.1} MiB",
            h.cpu_cores,
            h.user_s,
            h.sys_s,
            h.max_rss_bytes as f64 / 1048576.0
        );
        if let Some(disk) = &self.disk {
            let _ = writeln!(
                out,
                "disk: best sequential write {:.1} MB/s; broker at {:.1}% of it",
                disk.best_write_mb_per_s, disk.broker_pct_of_disk
            );
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_result() -> RunResult {
        let workload = Workload::from_toml_str(
            "name = \"w\"\n[[topics]]\nname = \"t\"\npartitions = 1\n[producers]\ncount = 1\nmessage_size = 64",
        )
        .unwrap();
        let lat = LatencySummary {
            p50: 1.0,
            p90: 2.0,
            p99: 3.0,
            p999: 4.0,
            max: 5.0,
            count: 10,
        };
        let mut phases = BTreeMap::new();
        for name in [PHASE_WARMUP, PHASE_MEASURE] {
            phases.insert(
                name.to_string(),
                PhaseResult {
                    duration_s: 1.0,
                    msgs_per_s: 10.0,
                    mb_per_s: 0.01,
                    latency_ms: lat,
                    e2e_latency_ms: lat,
                    ..PhaseResult::default()
                },
            );
        }
        RunResult {
            tool: "chronik-perf".into(),
            version: "0".into(),
            started_unix_ms: 1,
            bootstrap: "h:1".into(),
            run_id: 3,
            workload,
            machine: Machine {
                cores: 2,
                kernel: "6.18".into(),
                hostname: "h".into(),
                mem_total_bytes: 1,
                cpu_model: String::new(),
            },
            phases,
            delivery: Delivery::default(),
            broker: None,
            harness: HarnessUsage::default(),
            timeline: vec![TimelinePoint::default()],
            cdf: Cdf::default(),
            disk: None,
            load_avg_1m: [0.5, 0.7],
        }
    }

    #[test]
    fn json_has_the_documented_field_names() {
        let r = sample_result();
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        for phase in ["warmup", "measure"] {
            let p = &v["phases"][phase];
            assert!(p["msgs_per_s"].is_number(), "{phase}.msgs_per_s");
            assert!(p["mb_per_s"].is_number(), "{phase}.mb_per_s");
            for obj in ["latency_ms", "e2e_latency_ms"] {
                for k in ["p50", "p90", "p99", "p999", "max"] {
                    assert!(p[obj][k].is_number(), "{phase}.{obj}.{k}");
                }
            }
        }
        assert_eq!(v["phases"]["measure"]["latency_ms"]["p999"], 4.0);
        assert_eq!(v["machine"]["cores"], 2);
        assert_eq!(v["machine"]["kernel"], "6.18");
        assert_eq!(v["workload"]["name"], "w");
        assert!(v["broker"].is_null());
    }

    #[test]
    fn json_round_trips_through_a_file() {
        let r = sample_result();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        r.write_json(&path).unwrap();
        assert_eq!(RunResult::read_json(&path).unwrap(), r);
        assert!(r.table().contains("measure"));
        assert!(RunResult::read_json(&dir.path().join("missing.json")).is_err());
    }
}
