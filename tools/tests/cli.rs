//! End-to-end: a real `chronik-server` on a free loopback port, driven by the real `chronik-ctl`
//! binary with `--output json`. Covers topic create/describe/alter-config/delete,
//! produce/consume, and group describe/reset-offsets/list/delete; the group is created by
//! committing offsets from the test itself (OffsetCommit, generation -1), which is also how a
//! Kafka "simple" consumer group comes to exist.
//!
//! The server binary is `../target/debug/chronik-server` (relative to this crate) or
//! `$CHRONIK_SERVER_BIN`. Without it the test prints SKIPPED, unless `CHRONIK_REQUIRE_SERVER` is set
//! (CI sets it and builds the server first), in which case it fails.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chronik_ctl::client::Client;
use chronik_ctl::data::partition_for_key;
use chronik_ctl::group::commit_offsets;
use serde_json::Value;

/// The whole test must finish within this.
const TEST_BUDGET: Duration = Duration::from_secs(30);
/// How long the server may take to accept its first ApiVersions.
const START_BUDGET: Duration = Duration::from_secs(15);
/// How long the Python consumer may take to join, consume and commit.
const CONSUMER_READY_BUDGET: Duration = Duration::from_secs(20);
/// Most port pairs tried when looking for a free Kafka port whose +1 (the derived Raft port) is
/// free too.
const MAX_PORT_TRIES: usize = 50;

fn server_bin() -> Option<PathBuf> {
    let p = std::env::var_os("CHRONIK_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/chronik-server")
        });
    p.is_file().then_some(p)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// `(kafka, http)`: the Kafka port, with the next port (the Raft port the config derives from it)
/// also free and different from the HTTP port.
fn ports() -> (u16, u16) {
    for _ in 0..MAX_PORT_TRIES {
        let k = free_port();
        let Some(raft) = k.checked_add(1) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", raft)).is_err() {
            continue;
        }
        let h = free_port();
        if h != k && h != raft {
            return (k, h);
        }
    }
    panic!("no free port pair in {MAX_PORT_TRIES} tries");
}

/// A running server; killed by PID and its data removed on drop.
struct Server {
    child: Child,
    dir: PathBuf,
    bootstrap: String,
}

impl Server {
    fn start(bin: &PathBuf) -> Server {
        let (kafka, http) = ports();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("chronik-ctl-it-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let child = Command::new(bin)
            .env("CHRONIK_BIND_ADDR", "127.0.0.1")
            .env("CHRONIK_ADVERTISED_ADDR", "127.0.0.1")
            .env("CHRONIK_KAFKA_PORT", kafka.to_string())
            .env("CHRONIK_HTTP_PORT", http.to_string())
            .env("CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("standalone")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn chronik-server");
        let mut s = Server {
            child,
            dir,
            bootstrap: format!("127.0.0.1:{kafka}"),
        };
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("chronik-server exited during start-up: {status}");
            }
            if chronik_ctl::conn::Connection::connect(&s.bootstrap, Duration::from_millis(500))
                .is_ok()
            {
                break;
            }
            assert!(
                t0.elapsed() < START_BUDGET,
                "chronik-server not answering on {} after {START_BUDGET:?}",
                s.bootstrap
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Metadata can list the cluster before topic admin is served; wait for a clean answer.
        let mut c = Client::new(&s.bootstrap, Duration::from_secs(5)).unwrap();
        while c.metadata(None).is_err() {
            assert!(t0.elapsed() < START_BUDGET, "metadata never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Kill by our own child's PID only; then show the server log if the test failed.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(self.dir.join("server.log")) {
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- chronik-server log (last 40 lines, newest first) ---");
                for l in tail {
                    eprintln!("{l}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn ctl(bootstrap: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chronik-ctl"));
    cmd.args([
        "--bootstrap",
        bootstrap,
        "--output",
        "json",
        "--timeout-ms",
        "5000",
    ])
    .args(args)
    .env_remove("CHRONIK_BOOTSTRAP")
    .stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn chronik-ctl");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs and expects success with one JSON document on stdout.
fn ctl_json(bootstrap: &str, args: &[&str], stdin: Option<&str>) -> Value {
    let r = ctl(bootstrap, args, stdin);
    assert_eq!(
        r.code, 0,
        "chronik-ctl {args:?} failed\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", r.stdout))
}

fn offsets_by_partition(group: &Value, topic: &str) -> BTreeMap<i64, (Value, Value, Value)> {
    group["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["topic"] == topic)
        .map(|o| {
            (
                o["partition"].as_i64().unwrap(),
                (
                    o["committed_offset"].clone(),
                    o["log_end_offset"].clone(),
                    o["lag"].clone(),
                ),
            )
        })
        .collect()
}

#[test]
fn ctl_against_a_real_server() {
    let Some(bin) = server_bin() else {
        if std::env::var_os("CHRONIK_REQUIRE_SERVER").is_some() {
            panic!("CHRONIK_REQUIRE_SERVER is set but chronik-server was not found (build it with `cargo build -p chronik-server` or set CHRONIK_SERVER_BIN)");
        }
        eprintln!(
            "\n*** SKIPPED ctl_against_a_real_server: no chronik-server binary at ../target/debug/chronik-server or $CHRONIK_SERVER_BIN; run `cargo build -p chronik-server` ***\n"
        );
        return;
    };
    let t0 = Instant::now();
    let server = Server::start(&bin);
    let b = server.bootstrap.as_str();
    let topic = "ctl-it";
    let group = "ctl-it-group";

    // Cluster and topic admin.
    let st = ctl_json(b, &["cluster", "status"], None);
    assert_eq!(st["brokers"].as_array().unwrap().len(), 1, "{st}");
    let created = ctl_json(
        b,
        &[
            "topic",
            "create",
            topic,
            "--partitions",
            "2",
            "--config",
            "retention.ms=3600000",
        ],
        None,
    );
    assert_eq!(created["ok"], true);
    let dup = ctl(b, &["topic", "create", topic, "--partitions", "2"], None);
    assert_eq!(dup.code, 1);
    assert!(
        dup.stderr.contains("TOPIC_ALREADY_EXISTS"),
        "{}",
        dup.stderr
    );

    let d = ctl_json(b, &["topic", "describe", topic], None);
    let parts = d["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    for p in parts {
        assert!(p["leader"].as_i64().unwrap() >= 0, "{p}");
        assert_eq!(p["log_end_offset"], 0, "{p}");
    }
    let retention = d["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "retention.ms")
        .expect("retention.ms listed");
    assert_eq!(retention["value"], "3600000");
    assert_eq!(retention["source"], "DYNAMIC_TOPIC_CONFIG");

    ctl_json(
        b,
        &[
            "topic",
            "alter-config",
            topic,
            "--set",
            "retention.ms=7200000",
        ],
        None,
    );
    let d = ctl_json(b, &["topic", "describe", topic], None);
    assert!(
        d["configs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "retention.ms" && c["value"] == "7200000"),
        "{d}"
    );

    // Produce to partition 1, then a keyed record that must land where Kafka's partitioner puts
    // it.
    let p = ctl_json(
        b,
        &["produce", topic, "--partition", "1"],
        Some("one\ntwo\nthree\n"),
    );
    assert_eq!(p["records"], 3);
    assert_eq!(p["batches"][0]["partition"], 1);
    assert_eq!(p["batches"][0]["base_offset"], 0);
    // A key that Kafka's partitioner sends to partition 0, so partition 1 keeps its 3 records.
    let key = (0..100)
        .map(|i| format!("k{i}"))
        .find(|k| partition_for_key(k.as_bytes(), 2) == 0)
        .expect("some key hashes to partition 0");
    let keyed = ctl_json(b, &["produce", topic, "--key", &key], Some("kv\n"));
    assert_eq!(keyed["batches"][0]["partition"], 0);
    assert_eq!(keyed["batches"][0]["base_offset"], 0);

    let c = ctl(
        b,
        &[
            "consume",
            topic,
            "--from-beginning",
            "--partition",
            "1",
            "--max",
            "3",
            "--idle-timeout-ms",
            "5000",
        ],
        None,
    );
    assert_eq!(c.code, 0, "{}", c.stderr);
    let lines: Vec<Value> = c
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(i64, &str)> = lines
        .iter()
        .map(|l| (l["offset"].as_i64().unwrap(), l["value"].as_str().unwrap()))
        .collect();
    assert_eq!(got, vec![(0, "one"), (1, "two"), (2, "three")]);
    // All partitions: 4 records in total, the keyed one carries its key.
    let c = ctl(
        b,
        &[
            "consume",
            topic,
            "--from-beginning",
            "--max",
            "4",
            "--idle-timeout-ms",
            "5000",
        ],
        None,
    );
    assert_eq!(c.code, 0, "{}", c.stderr);
    assert_eq!(c.stdout.lines().count(), 4, "{}", c.stdout);
    assert!(
        c.stdout.contains(&format!(r#""key":"{key}","value":"kv""#)),
        "{}",
        c.stdout
    );

    // A group made by committing offsets directly (generation -1, no member).
    let mut client = Client::new(b, Duration::from_secs(5)).unwrap();
    commit_offsets(&mut client, group, topic, &BTreeMap::from([(1, 1)])).unwrap();
    let g = ctl_json(b, &["group", "describe", group], None);
    assert_eq!(g["state"], "Empty", "{g}");
    let offs = offsets_by_partition(&g, topic);
    assert_eq!(
        offs[&1],
        (Value::from(1), Value::from(3), Value::from(2)),
        "{g}"
    );
    let listed = ctl_json(b, &["group", "list"], None);
    assert!(
        listed["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["group"] == group),
        "{listed}"
    );

    // Dry run changes nothing; --execute commits; shift-by moves from the new commit.
    let plan = ctl_json(
        b,
        &[
            "group",
            "reset-offsets",
            group,
            "--topic",
            topic,
            "--to-latest",
        ],
        None,
    );
    assert_eq!(plan["executed"], false);
    let g = ctl_json(b, &["group", "describe", group], None);
    assert_eq!(
        offsets_by_partition(&g, topic)[&1].0,
        1,
        "dry run committed: {g}"
    );
    ctl_json(
        b,
        &[
            "group",
            "reset-offsets",
            group,
            "--topic",
            topic,
            "--to-latest",
            "--execute",
        ],
        None,
    );
    let g = ctl_json(b, &["group", "describe", group], None);
    let offs = offsets_by_partition(&g, topic);
    assert_eq!(
        offs[&1],
        (Value::from(3), Value::from(3), Value::from(0)),
        "{g}"
    );
    assert_eq!(
        offs[&0],
        (Value::from(1), Value::from(1), Value::from(0)),
        "{g}"
    );
    ctl_json(
        b,
        &[
            "group",
            "reset-offsets",
            group,
            "--topic",
            topic,
            "--shift-by",
            "-2",
            "--execute",
        ],
        None,
    );
    let g = ctl_json(b, &["group", "describe", group], None);
    assert_eq!(offsets_by_partition(&g, topic)[&1].0, 1, "{g}");
    // Below the log start is clamped to it.
    ctl_json(
        b,
        &[
            "group",
            "reset-offsets",
            group,
            "--topic",
            topic,
            "--to-offset",
            "-7",
            "--execute",
        ],
        None,
    );
    let g = ctl_json(b, &["group", "describe", group], None);
    assert_eq!(offsets_by_partition(&g, topic)[&1].0, 0, "{g}");

    // Delete the group, then the topic.
    ctl_json(b, &["group", "delete", group], None);
    let gone = ctl(b, &["group", "describe", group], None);
    assert_eq!(gone.code, 1, "{}", gone.stdout);
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);
    ctl_json(b, &["topic", "delete", topic], None);
    let topics = ctl_json(b, &["topic", "list"], None);
    assert!(
        !topics["topics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == topic),
        "{topics}"
    );
    assert!(
        t0.elapsed() < TEST_BUDGET,
        "took {:?}, budget {TEST_BUDGET:?}",
        t0.elapsed()
    );
}

/// The Python interpreter with confluent-kafka (`$CHRONIK_PYTHON` or the repo's `.venv`), as the
/// server's client tests find it; `CHRONIK_REQUIRE_CLIENTS` turns its absence into a failure.
fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHRONIK_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if venv.exists() {
        return Some(venv);
    }
    assert!(
        std::env::var_os("CHRONIK_REQUIRE_CLIENTS").is_none(),
        "CHRONIK_REQUIRE_CLIENTS is set but no Python with confluent-kafka was found"
    );
    None
}

/// Kills the consumer by PID if the test ends early.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A consumer that joins, reads 3 records, commits, prints READY and holds its membership until
/// stdin closes (bounded at 25 s so a stuck test cannot leave it behind).
const PY_CONSUMER: &str = r#"
import sys, time, threading
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "client.id": "ctl-it-py",
              "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe([sys.argv[3]])
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
n, ready, t0 = 0, False, time.time()
while not done.is_set() and time.time() - t0 < 25:
    m = c.poll(0.2)
    if m is not None and not m.error():
        n += 1
        if n == 3 and not ready:
            c.commit(asynchronous=False)
            print("READY", flush=True)
            ready = True
c.close()
"#;

#[test]
fn describes_a_live_confluent_consumer_group() {
    let Some(bin) = server_bin() else {
        if std::env::var_os("CHRONIK_REQUIRE_SERVER").is_some() {
            panic!("CHRONIK_REQUIRE_SERVER is set but chronik-server was not found");
        }
        eprintln!("\n*** SKIPPED describes_a_live_confluent_consumer_group: no chronik-server binary ***\n");
        return;
    };
    let Some(py) = python() else {
        eprintln!("\n*** SKIPPED describes_a_live_confluent_consumer_group: no Python client environment ***\n");
        return;
    };
    let t0 = Instant::now();
    let server = Server::start(&bin);
    let b = server.bootstrap.as_str();
    let (topic, group) = ("ctl-live", "ctl-live-group");
    ctl_json(b, &["topic", "create", topic, "--partitions", "2"], None);
    ctl_json(
        b,
        &["produce", topic, "--partition", "0"],
        Some("a\nb\nc\nd\n"),
    );

    let mut child = Command::new(py)
        .args(["-c", PY_CONSUMER, b, group, topic])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn python consumer");
    let stdout = child.stdout.take().unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut consumer = Reaper(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(CONSUMER_READY_BUDGET)
        .expect("consumer never printed READY");
    assert_eq!(line, "READY");

    let g = ctl_json(b, &["group", "describe", group], None);
    assert_eq!(g["state"], "Stable", "{g}");
    assert_eq!(g["protocol_type"], "consumer", "{g}");
    let members = g["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{g}");
    assert_eq!(members[0]["client_id"], "ctl-it-py", "{g}");
    // librdkafka's assignment, decoded: both partitions of the topic.
    let topics = members[0]["assignment"]["topics"].as_array().unwrap();
    assert_eq!(topics.len(), 1, "{g}");
    assert_eq!(topics[0][0], topic);
    let mut parts: Vec<i64> = topics[0][1]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect();
    parts.sort_unstable();
    assert_eq!(parts, vec![0, 1], "{g}");
    // Committed 3 of 4 while the member is live: lag 1.
    let offs = offsets_by_partition(&g, topic);
    assert_eq!(
        offs[&0],
        (Value::from(3), Value::from(4), Value::from(1)),
        "{g}"
    );
    assert_eq!(offs[&1].0, Value::Null, "{g}");

    // An active group's offsets cannot be reset, dry run or not.
    let r = ctl(
        b,
        &[
            "group",
            "reset-offsets",
            group,
            "--topic",
            topic,
            "--to-earliest",
        ],
        None,
    );
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("current state is Stable"), "{}", r.stderr);

    // Closing stdin makes the consumer leave; the group becomes Empty and resettable.
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(10);
    while consumer.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "consumer did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    let g = ctl_json(b, &["group", "describe", group], None);
    assert_eq!(g["state"], "Empty", "{g}");
    let plan = ctl_json(
        b,
        &[
            "group",
            "reset-offsets",
            group,
            "--topic",
            topic,
            "--to-earliest",
        ],
        None,
    );
    assert_eq!(plan["partitions"][0]["new_offset"], 0, "{plan}");
    assert!(t0.elapsed() < TEST_BUDGET, "took {:?}", t0.elapsed());
}
