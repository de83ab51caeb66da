//! Log compaction end to end: a real `chronik-server`, confluent-kafka (librdkafka) as producer
//! and consumer, every codec. Skips loudly without the Python client environment (see
//! `tests/common`), fails under `CHRONIK_REQUIRE_CLIENTS=1`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{python, run_client, Server};

/// How long compaction may take to show up after the last produce (the cleaner looks every
/// 500 ms; a pass over a few thousand records takes milliseconds).
const COMPACTION_DEADLINE: Duration = Duration::from_secs(60);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

type Found = Vec<(i64, String, Option<String>)>;

fn consume(py: &Path, s: &Server, topic: &str) -> Found {
    let out = run_client(
        py,
        "compaction_client.py",
        &[&s.bootstrap(), "consume", topic],
        CLIENT_TIMEOUT,
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("consume output is JSON");
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_i64().unwrap(),
                r[1].as_str().unwrap().to_string(),
                r[2].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn metric(s: &Server, name: &str) -> f64 {
    let (_, body) = s.http_get(s.http_port, "/metrics");
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn compacted_topic_keeps_the_latest_value_per_key_at_its_offset_across_restart() {
    let Some(py) = python() else { return };
    let mut s = Server::start();
    let topic = "compacted";
    let out = run_client(
        &py,
        "compaction_client.py",
        &[&s.bootstrap(), "produce", topic, "12", "3000"],
        CLIENT_TIMEOUT,
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("produce output is JSON");
    let written = v["written"].as_i64().unwrap();
    let expected: BTreeMap<i64, (String, Option<String>)> = v["latest"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, e)| {
            (
                e[0].as_i64().unwrap(),
                (k.clone(), e[1].as_str().map(str::to_string)),
            )
        })
        .collect();
    let expected: Found = expected.into_iter().map(|(o, (k, v))| (o, k, v)).collect();
    assert!(expected.len() >= 12 && written > 3000, "{out}");
    // The tombstone of "gone" is the last record of its key and is kept (delete.retention.ms).
    assert!(expected.iter().any(|(_, k, v)| k == "gone" && v.is_none()));

    let start = Instant::now();
    let got = loop {
        let got = consume(&py, &s, topic);
        if got.len() == expected.len() || start.elapsed() > COMPACTION_DEADLINE {
            break got;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let took = start.elapsed();
    assert_eq!(
        got, expected,
        "after {took:?}: exactly the latest record of each key, at its original offset"
    );
    eprintln!("compacted {written} records to {} in {took:?}", got.len());
    assert!(metric(&s, "chronik_compaction_runs_total") >= 1.0);
    assert!(metric(&s, "chronik_compaction_bytes_removed_total") > 0.0);

    // kcat (Debian's, librdkafka 2.0) reads the compacted log with its offset gaps too.
    if common::kcat() {
        let out = std::process::Command::new("timeout")
            .args(["60", "kcat", "-b", &s.bootstrap(), "-C", "-t", topic])
            .args(["-o", "beginning", "-e", "-f", "%o %k %S\n"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        // %S is the value's size: -1 for a tombstone.
        let want: Vec<String> = expected
            .iter()
            .map(|(o, k, v)| format!("{o} {k} {}", v.as_ref().map_or(-1, |v| v.len() as i64)))
            .collect();
        assert_eq!(lines, want, "kcat");
    }

    // Keyless records are refused on a compacted topic, as Kafka does.
    let err = run_client(
        &py,
        "compaction_client.py",
        &[&s.bootstrap(), "nullkey", topic],
        CLIENT_TIMEOUT,
    );
    assert_eq!(err.trim(), "INVALID_RECORD");

    // Committed offsets live in the compacted __consumer_offsets: many commits of one key
    // compact to a few records, and the coordinator replays the same offset after a restart.
    run_client(
        &py,
        "compaction_client.py",
        &[&s.bootstrap(), "commit", "grp", topic, "300"],
        CLIENT_TIMEOUT,
    );
    let start = Instant::now();
    let internal = loop {
        let n: usize = run_client(
            &py,
            "compaction_client.py",
            &[&s.bootstrap(), "count_internal"],
            CLIENT_TIMEOUT,
        )
        .trim()
        .parse()
        .unwrap();
        if n < 50 || start.elapsed() > COMPACTION_DEADLINE {
            break n;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        internal < 50,
        "__consumer_offsets still holds {internal} records"
    );
    eprintln!("300 offset commits compacted to {internal} __consumer_offsets records");

    // SIGKILL and restart: recovery takes the compacted copies; nothing comes back.
    s.restart();
    let after = consume(&py, &s, topic);
    assert_eq!(after, expected, "after restart");
    let c = run_client(
        &py,
        "compaction_client.py",
        &[&s.bootstrap(), "committed", "grp", topic],
        CLIENT_TIMEOUT,
    );
    assert_eq!(
        c.trim(),
        "300",
        "committed offset after compaction + restart"
    );
    // The restarted cleaner sees everything as dirty once; a pass over compacted data keeps it.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        consume(&py, &s, topic),
        expected,
        "after a post-restart pass"
    );
}

#[test]
fn the_active_segment_of_a_compacted_topic_is_read_as_written() {
    // Kafka never cleans a partition's active segment: with the default segment.bytes (1 GiB)
    // and segment.ms (7 days), a compacted topic returns every record a producer wrote, however
    // dirty. Clients that read a fresh changelog back rely on it.
    let Some(py) = python() else { return };
    let s = Server::start();
    let topic = "fresh-compacted";
    run_client(
        &py,
        "compaction_client.py",
        &[&s.bootstrap(), "dupes", topic, "60"],
        CLIENT_TIMEOUT,
    );
    // Several cleaner periods (500 ms each) with a dirty ratio far above the topic's 0.01.
    std::thread::sleep(Duration::from_secs(3));
    let got = consume(&py, &s, topic);
    let offsets: Vec<i64> = got.iter().map(|r| r.0).collect();
    assert_eq!(offsets, (0..60).collect::<Vec<i64>>(), "{got:?}");
    assert_eq!(metric(&s, "chronik_compaction_bytes_removed_total"), 0.0);
}
