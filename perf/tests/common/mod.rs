//! Helpers shared by the integration tests: workload files and running the real binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Upper bound on one `chronik-perf` invocation inside a test.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// A small workload: `duration_s` measured seconds after `warmup_s` warm-up.
pub fn workload(
    topic: &str,
    partitions: u32,
    rate: u64,
    mode: &str,
    groups: u32,
    warmup_s: u64,
    duration_s: u64,
) -> String {
    format!(
        r#"
name = "{topic}"
warmup_s = {warmup_s}
duration_s = {duration_s}
seed = 11

[[topics]]
name = "{topic}"
partitions = {partitions}

[producers]
count = 2
rate_msgs_per_s = {rate}
message_size = {{ min = 64, max = 512 }}
keys = "uniform"
key_count = 100
acks = "all"
linger_ms = 2

[consumers]
groups = {groups}
per_group = 2
mode = "{mode}"
"#
    )
}

/// Runs `chronik-perf` with `args`, killing it if it exceeds [`CLI_TIMEOUT`].
pub fn run_cli(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chronik-perf"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn chronik-perf");
    let deadline = Instant::now() + CLI_TIMEOUT;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "chronik-perf timed out after {CLI_TIMEOUT:?}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p
}

/// Checks a result JSON: shape, and that every acknowledged message reached every group once.
pub fn check_exactly_once(json: &serde_json::Value, groups: usize) {
    let m = &json["phases"]["measure"];
    for k in ["msgs_per_s", "mb_per_s"] {
        assert!(m[k].as_f64().is_some(), "measure.{k}");
    }
    for obj in ["latency_ms", "e2e_latency_ms"] {
        for k in ["p50", "p90", "p99", "p999", "max"] {
            assert!(m[obj][k].as_f64().is_some(), "measure.{obj}.{k}");
        }
    }
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    let d = &json["delivery"];
    let sent = d["sent"].as_u64().unwrap();
    let acked = d["acked"].as_u64().unwrap();
    assert!(sent > 0, "nothing sent: {d}");
    assert_eq!(acked, sent, "every sent message acknowledged: {d}");
    assert_eq!(d["failed"].as_u64(), Some(0), "{d}");
    let gs = d["groups"].as_array().unwrap();
    assert_eq!(gs.len(), groups);
    for g in gs {
        assert_eq!(g["unique"].as_u64(), Some(acked), "group received all: {g}");
        assert_eq!(g["missing"].as_u64(), Some(0), "{g}");
        assert_eq!(g["duplicates"].as_u64(), Some(0), "received once: {g}");
        assert_eq!(g["received"].as_u64(), Some(acked), "{g}");
    }
    assert!(m["msgs_per_s"].as_f64().unwrap() > 0.0);
    assert!(m["e2e_latency_ms"]["count"].as_u64().unwrap() > 0);
}
