//! Real Kafka clients against a real `chronik-server`: kcat (librdkafka 2.0), confluent-kafka
//! (current librdkafka), kafka-python and kafkajs 2.2.4 (old protocol versions, pure JavaScript).
//! The client environment comes from `.ci/run` (a venv with the Python clients, Debian's kcat,
//! kafkajs under `.node/`); without it these tests skip loudly, and with
//! `CHRONIK_REQUIRE_CLIENTS=1` (CI) a missing client fails them.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{kafkajs, kcat, python, run_client, run_node, Server};

fn kcat_cmd(s: &Server, args: &[&str], input: Option<&str>) -> String {
    let mut child = Command::new("timeout")
        .arg("60")
        .arg("kcat")
        .arg("-b")
        .arg(s.bootstrap())
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn kcat_metadata_produce_consume_and_balanced_group() {
    if !kcat() {
        return;
    }
    let s = Server::start();
    let input: String = (0..500).map(|i| format!("key{i}:value{i}\n")).collect();
    kcat_cmd(&s, &["-P", "-t", "kc", "-K:", "-z", "lz4"], Some(&input));
    let meta = kcat_cmd(&s, &["-L", "-t", "kc"], None);
    assert!(meta.contains("topic \"kc\" with 1 partitions"), "{meta}");
    let out = kcat_cmd(
        &s,
        &["-C", "-t", "kc", "-o", "beginning", "-e", "-f", "%k=%s\n"],
        None,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 500);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(*l, format!("key{i}=value{i}"));
    }
    // Balanced consumer group (-G): reads everything from the beginning.
    let out = kcat_cmd(
        &s,
        &[
            "-G",
            "kcat-group",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%s\n",
            "kc",
        ],
        None,
    );
    assert_eq!(out.lines().count(), 500, "kcat -G got {out}");
}

#[test]
fn confluent_roundtrip_every_codec_100k_messages() {
    let Some(py) = python() else { return };
    let s = Server::start();
    let out = run_client(
        &py,
        "confluent_suite.py",
        &[&s.bootstrap(), "roundtrip", "20000"],
        Duration::from_secs(300),
    );
    assert!(
        out.contains("OK roundtrip 100000 messages, 4 partitions"),
        "{out}"
    );
}

#[test]
fn confluent_consumer_groups_rebalance_and_resume() {
    let Some(py) = python() else { return };
    let s = Server::start();
    let out = run_client(
        &py,
        "confluent_suite.py",
        &[&s.bootstrap(), "groups"],
        Duration::from_secs(240),
    );
    assert!(out.contains("OK groups"), "{out}");
    eprintln!("{out}");
}

#[test]
fn confluent_idempotent_producer_exactly_once_in_order() {
    let Some(py) = python() else { return };
    // Every 50th acknowledged produce is stored but its connection dropped unanswered: the
    // client retries batches the log already has, and must not get them twice.
    let s = Server::start_with(&[("CHRONIK_FAULT_DROP_PRODUCE_RESPONSE_EVERY", "50")]);
    let out = run_client(
        &py,
        "confluent_suite.py",
        &[&s.bootstrap(), "idempotent", "100000"],
        Duration::from_secs(300),
    );
    assert!(out.contains("OK idempotent 100000"), "{out}");
    // The faults really happened (otherwise this would only test the happy path).
    let (_, metrics) = s.http_get(s.http_port, "/metrics");
    let dropped: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("chronik_fault_dropped_produce_responses_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(dropped > 0, "no produce response was dropped:\n{metrics}");
    eprintln!("{dropped} produce responses dropped and retried");
}

#[test]
fn confluent_admin_configs_partitions_offsets() {
    let Some(py) = python() else { return };
    // A broker-level topic default set by the operator (DescribeConfigs reports its source).
    let s = Server::start_with(&[("CHRONIK_LOG_RETENTION_BYTES", "1073741824")]);
    let out = run_client(
        &py,
        "confluent_suite.py",
        &[&s.bootstrap(), "admin"],
        Duration::from_secs(120),
    );
    assert!(out.contains("OK admin"), "{out}");
}

#[test]
fn kafka_python_group_consumer_with_auto_commit() {
    let Some(py) = python() else { return };
    let s = Server::start();
    let out = run_client(
        &py,
        "kafka_python_suite.py",
        &[&s.bootstrap()],
        Duration::from_secs(180),
    );
    assert!(out.contains("OK kafka-python"), "{out}");
}

/// Runs `kafka_python_suite.py` commands, in order, against one fresh server; each must print
/// its OK line.
fn kafka_python_commands(commands: &[(&str, &str)], timeout: Duration) {
    let Some(py) = python() else { return };
    let s = Server::start();
    for (command, ok) in commands {
        let out = run_client(
            &py,
            "kafka_python_suite.py",
            &[&s.bootstrap(), command],
            timeout,
        );
        assert!(out.contains(ok), "{command}: {out}");
    }
}

/// kafka-python's own codecs (gzip, snappy, lz4, zstd; its encoders, not librdkafka's), its
/// consumer positioning API and group rebalance, and the rest of its admin client.
#[test]
fn kafka_python_codecs_consumer_api_and_admin() {
    kafka_python_commands(
        &[
            ("codecs", "OK kafka-python codecs"),
            ("consumer-api", "OK kafka-python consumer api"),
            ("admin-more", "OK kafka-python admin-more"),
        ],
        Duration::from_secs(120),
    );
}

/// What kafka-python's producer is told (offsets, timestamps, size limits, auto-creation),
/// its reset policies, and the admin client's error answers and less common options.
#[test]
fn kafka_python_producer_api_and_admin_edge_cases() {
    kafka_python_commands(
        &[
            ("producer-api", "OK kafka-python producer api"),
            ("admin-edges", "OK kafka-python admin-edges"),
        ],
        Duration::from_secs(60),
    );
}

/// Runs one command of `kafkajs_suite.js` against a fresh server and checks its OK line.
fn kafkajs_command(command: &str, timeout: Duration) -> Option<String> {
    let js = kafkajs()?;
    let s = Server::start();
    let out = run_node(&js, "kafkajs_suite.js", &[&s.bootstrap(), command], timeout);
    assert!(out.contains(&format!("OK {command}")), "{out}");
    Some(out)
}

#[test]
fn kafkajs_admin_topics_configs_groups_offsets_records() {
    kafkajs_command("admin", Duration::from_secs(180));
}

#[test]
fn kafkajs_producer_acks_gzip_headers_idempotent() {
    if let Some(out) = kafkajs_command("produce", Duration::from_secs(180)) {
        assert!(out.contains("idempotent 2000"), "{out}");
    }
}

#[test]
fn kafkajs_two_member_group_consumes_everything_once_and_resumes() {
    kafkajs_command("groups", Duration::from_secs(180));
}

#[test]
fn kafkajs_consumer_seek_pause_resume_manual_commit() {
    kafkajs_command("consumer", Duration::from_secs(180));
}

#[test]
fn kafkajs_transactions_commit_abort_send_offsets_read_committed() {
    kafkajs_command("transactions", Duration::from_secs(180));
}

#[test]
fn deleting_a_topic_drops_group_offsets_so_a_recreated_topic_is_read_from_the_start() {
    let Some(py) = python() else { return };
    let mut s = Server::start();
    let out = run_client(
        &py,
        "confluent_suite.py",
        &[&s.bootstrap(), "recreate", "setup"],
        Duration::from_secs(90),
    );
    assert!(out.contains("OK recreate-setup"), "{out}");
    let topic = out
        .lines()
        .find_map(|l| l.strip_prefix("RECREATED "))
        .expect("recreate names its topic")
        .to_string();
    // The tombstones are in __consumer_offsets: the offsets stay gone after a restart.
    s.restart();
    let out = run_client(
        &py,
        "confluent_suite.py",
        &[&s.bootstrap(), "recreate", "check", &topic],
        Duration::from_secs(90),
    );
    assert!(out.contains("OK recreate-check"), "{out}");
}

#[test]
fn sasl_scram_and_plain_with_confluent_kafka_python_and_kafkajs() {
    let Some(py) = python() else { return };
    let s = Server::start_with(&[
        (
            "CHRONIK_SASL_MECHANISMS",
            "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
        ),
        ("CHRONIK_SASL_BOOTSTRAP_USERS", "admin:admin-secret"),
    ]);
    let out = run_client(
        &py,
        "confluent_suite.py",
        &[&s.bootstrap(), "sasl", "admin", "admin-secret"],
        Duration::from_secs(120),
    );
    assert!(out.contains("OK sasl"), "{out}");
    // kcat (Debian's librdkafka 2.0) with PLAIN: its SCRAM final message is malformed (the
    // client nonce twice), which Kafka rejects as well.
    if kcat() {
        let plain = [
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            "sasl.mechanisms=PLAIN",
            "-X",
            "sasl.username=admin",
            "-X",
            "sasl.password=admin-secret",
        ];
        let mut args = plain.to_vec();
        args.extend(["-P", "-t", "kcat-sasl"]);
        kcat_cmd(&s, &args, Some("one\ntwo\n"));
        let mut args = plain.to_vec();
        args.extend(["-C", "-t", "kcat-sasl", "-o", "beginning", "-e", "-q"]);
        assert_eq!(kcat_cmd(&s, &args, None), "one\ntwo\n");
    }
    if let Some(js) = kafkajs() {
        let out = run_node(
            &js,
            "kafkajs_suite.js",
            &[&s.bootstrap(), "sasl", "admin", "admin-secret"],
            Duration::from_secs(120),
        );
        assert!(out.contains("OK sasl"), "{out}");
    }
}

#[test]
fn confluent_admin_group_offsets_records_elections_acls() {
    let Some(py) = python() else { return };
    let mut s = Server::start();
    let out = run_client(
        &py,
        "confluent_suite.py",
        &[&s.bootstrap(), "admin-apis"],
        Duration::from_secs(120),
    );
    assert!(out.contains("OK admin-apis"), "{out}");
    // SCRAM credentials are metadata: they survive a restart.
    let user = out
        .lines()
        .find_map(|l| l.strip_prefix("SCRAM-USER "))
        .expect("admin-apis names its SCRAM user")
        .to_string();
    s.restart();
    let out = run_client(
        &py,
        "confluent_suite.py",
        &[&s.bootstrap(), "scram-check", &user],
        Duration::from_secs(60),
    );
    assert!(out.contains("OK scram-check"), "{out}");
}

#[test]
fn kafka_python_admin_log_dirs_producers_reassignments_acls() {
    let Some(py) = python() else { return };
    let s = Server::start();
    let out = run_client(
        &py,
        "kafka_python_suite.py",
        &[&s.bootstrap(), "admin"],
        Duration::from_secs(120),
    );
    assert!(out.contains("OK kafka-python admin"), "{out}");
}

/// Every acknowledged (partition, offset, value) in `acked_path` is in topic "dur".
fn verify_acked(py: &std::path::Path, s: &Server, acked_path: &std::path::Path) {
    let out = run_client(
        py,
        "confluent_suite.py",
        &[
            &s.bootstrap(),
            "verify",
            "dur",
            acked_path.to_str().unwrap(),
        ],
        Duration::from_secs(180),
    );
    assert!(out.contains("OK verified 20000"), "{out}");
}

#[test]
fn acked_writes_and_committed_offsets_survive_kill9() {
    acked_writes_survive_kill9_with(&[]);
}

/// The same in `always` mode, whose WAL writes go through O_DSYNC segment files (write-through)
/// and whose recovery reopens them that way.
#[test]
fn acked_writes_survive_kill9_in_always_mode() {
    acked_writes_survive_kill9_with(&[("CHRONIK_WAL_SYNC_MODE", "always")]);
}

fn acked_writes_survive_kill9_with(env: &[(&str, &str)]) {
    let Some(py) = python() else { return };
    let mut s = Server::start_with(env);
    let acked = run_client(
        &py,
        "confluent_suite.py",
        &[&s.bootstrap(), "produce-acked", "dur", "20000"],
        Duration::from_secs(180),
    );
    let acked_path = s.dir.path().join("acked.txt");
    std::fs::write(&acked_path, &acked).unwrap();
    assert_eq!(acked.lines().count(), 20000);
    let committed = run_client(
        &py,
        "confluent_suite.py",
        &[&s.bootstrap(), "commit", "dur", "dur-group"],
        Duration::from_secs(120),
    );
    assert_eq!(committed.trim(), "20000");
    // kill -9 right after the acknowledgements: nothing acknowledged may be lost.
    s.restart();
    verify_acked(&py, &s, &acked_path);
    let out = run_client(
        &py,
        "confluent_suite.py",
        &[&s.bootstrap(), "committed", "dur", "dur-group", "20000"],
        Duration::from_secs(60),
    );
    assert!(out.contains("OK committed 20000"), "{out}");
    // And once more, with a second crash before anything else happens.
    s.restart();
    verify_acked(&py, &s, &acked_path);
}

/// Few `__transaction_state` partitions keep start-up quick in the transaction tests.
const TXN_ENV: &[(&str, &str)] = &[("CHRONIK_TRANSACTION_STATE_LOG_NUM_PARTITIONS", "5")];

#[test]
fn confluent_transactions_commit_abort_and_consume_transform_produce() {
    let Some(py) = python() else { return };
    let s = Server::start_with(TXN_ENV);
    let out = run_client(
        &py,
        "confluent_suite.py",
        &[&s.bootstrap(), "transactions"],
        Duration::from_secs(180),
    );
    assert!(out.contains("OK transactions committed=15 all=25"), "{out}");
    let out = run_client(
        &py,
        "confluent_suite.py",
        &[&s.bootstrap(), "txn-timeout", "txn-timeout"],
        Duration::from_secs(120),
    );
    assert!(out.contains("OK txn-timeout"), "{out}");
}

#[test]
fn confluent_open_transaction_across_kill9_is_aborted_by_the_next_producer() {
    let Some(py) = python() else { return };
    let mut s = Server::start_with(TXN_ENV);
    let out = run_client(
        &py,
        "confluent_suite.py",
        &[&s.bootstrap(), "txn-open", "txk", "txk-id"],
        Duration::from_secs(120),
    );
    assert!(out.contains("OK txn-open"), "{out}");
    // kill -9 with the transaction open; the new producer's InitProducerId must abort it.
    s.restart();
    let out = run_client(
        &py,
        "confluent_suite.py",
        &[&s.bootstrap(), "txn-resume", "txk", "txk-id"],
        Duration::from_secs(120),
    );
    assert!(out.contains("OK txn-resume"), "{out}");
}

#[test]
fn kafka_python_transactions() {
    let Some(py) = python() else { return };
    let s = Server::start_with(TXN_ENV);
    let out = run_client(
        &py,
        "kafka_python_suite.py",
        &[&s.bootstrap(), "transactions"],
        Duration::from_secs(180),
    );
    assert!(out.contains("OK kafka-python transactions"), "{out}");
    // The transaction admin APIs (list/describe/find-hanging/abort) on a live producer.
    let out = run_client(
        &py,
        "kafka_python_suite.py",
        &[&s.bootstrap(), "admin-txn"],
        Duration::from_secs(60),
    );
    assert!(out.contains("OK kafka-python admin-txn"), "{out}");
}

#[test]
fn acl_enforcement_with_confluent_kafka() {
    let Some(py) = python() else { return };
    let s = Server::start_with(&[
        ("CHRONIK_SASL_MECHANISMS", "SCRAM-SHA-256"),
        (
            "CHRONIK_SASL_BOOTSTRAP_USERS",
            "admin:admin-pw,alice:alice-pw",
        ),
        ("CHRONIK_AUTHORIZATION_ENABLED", "true"),
        ("CHRONIK_SUPER_USERS", "User:admin"),
    ]);
    let out = run_client(
        &py,
        "authz_client.py",
        &[&s.bootstrap(), "admin", "admin-pw", "alice", "alice-pw"],
        Duration::from_secs(180),
    );
    assert!(out.contains("OK authz"), "{out}");
}

/// KIP-848: librdkafka consumers with `group.protocol=consumer` share a topic through the
/// broker-side assignor, commit, fail over and resume (see kip848_client.py).
#[test]
fn consumer_protocol_groups_with_confluent_kafka() {
    let Some(py) = python() else { return };
    let s = Server::start_with(&[("CHRONIK_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS", "500")]);
    let out = run_client(
        &py,
        "kip848_client.py",
        &[&s.bootstrap()],
        Duration::from_secs(240),
    );
    assert!(out.contains("OK kip848"), "{out}");
}

/// A producer_byte_rate quota holds a librdkafka producer down to about its rate (it is told
/// through throttle_time_ms and its connection is muted), while another client id is not.
#[test]
fn producer_byte_rate_quota_throttles_confluent_kafka() {
    let Some(py) = python() else { return };
    let s = Server::start();
    set_client_quota(&s, "slow", "producer_byte_rate", 100_000.0);
    let bytes = |out: &str| -> (u64, u64) {
        let line = out.lines().find(|l| l.starts_with("BYTES")).expect(out);
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        (f[0], f[1])
    };
    let slow = run_client(
        &py,
        "quota_client.py",
        &[&s.bootstrap(), "slow", "12"],
        Duration::from_secs(120),
    );
    assert!(slow.contains("OK quota"), "{slow}");
    let (slow_bytes, throttles) = bytes(&slow);
    // 100 KB/s over a window of at least 10 s, plus the first requests before the rate
    // shows: a few MB in 12 s, far from unthrottled.
    assert!(slow_bytes < 5_000_000, "{slow}");
    assert!(throttles > 0, "{slow}");
    let fast = run_client(
        &py,
        "quota_client.py",
        &[&s.bootstrap(), "fast", "3", "50000000"],
        Duration::from_secs(120),
    );
    let (fast_bytes, fast_throttles) = bytes(&fast);
    eprintln!("quota: slow {slow_bytes} B ({throttles} throttles), fast {fast_bytes} B");
    assert!(fast_bytes > 3 * slow_bytes, "{fast} vs {slow}");
    assert_eq!(fast_throttles, 0, "{fast}");
}

/// KIP-848 members survive a broker kill -9 without a rebalance: the coordinator replays members
/// and assignments from __consumer_offsets (see kip848_restart_client.py).
#[test]
fn consumer_protocol_member_survives_broker_restart() {
    let Some(py) = python() else { return };
    let mut s = Server::start_with(&[("CHRONIK_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS", "500")]);
    let marker = common::test_tmp().join(format!("kip848-marker-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let (boot, m) = (s.bootstrap(), marker.to_string_lossy().to_string());
    let client = std::thread::spawn(move || {
        run_client(
            &py,
            "kip848_restart_client.py",
            &[&boot, &m],
            Duration::from_secs(240),
        )
    });
    let start = std::time::Instant::now();
    while !marker.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(90) && !client.is_finished(),
            "the client never got ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the coordinator's records commit (they are appended right after each change).
    std::thread::sleep(Duration::from_millis(500));
    s.kill9();
    s.restart();
    let out = client.join().expect("client thread");
    assert!(out.contains("OK kip848-restart"), "{out}");
    let _ = std::fs::remove_file(&marker);
}

/// A consumer_byte_rate quota holds a librdkafka consumer down (capped, throttled and emptied
/// fetches), with no message delivered twice, while another client id reads everything.
#[test]
fn consumer_byte_rate_quota_throttles_confluent_kafka() {
    let Some(py) = python() else { return };
    let s = Server::start();
    // 4 MB to read ("fast" has no quota).
    let out = run_client(
        &py,
        "quota_client.py",
        &[&s.bootstrap(), "fast", "30", "4000000"],
        Duration::from_secs(120),
    );
    assert!(out.contains("OK quota"), "{out}");
    set_client_quota(&s, "slowc", "consumer_byte_rate", 100_000.0);
    let read = |client: &str| -> (u64, u64) {
        let out = run_client(
            &py,
            "quota_consumer_client.py",
            &[&s.bootstrap(), "quota-topic", client, "8"],
            Duration::from_secs(120),
        );
        let line = out.lines().find(|l| l.starts_with("READ")).expect(&out);
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        (f[0], f[1])
    };
    let (slow, slow_dups) = read("slowc");
    let (fast, fast_dups) = read("fastc");
    eprintln!("quota: slow consumer {slow} B, fast consumer {fast} B");
    assert_eq!((slow_dups, fast_dups), (0, 0));
    // 100 KB/s: one capped fetch (1 MB) plus the rate over 8 s, far below the unthrottled read.
    assert!(
        slow > 0 && slow < 2_500_000,
        "slow consumer read {slow} bytes"
    );
    assert_eq!(fast, 4_000_000, "fast consumer");
}

/// Sets one client-id quota over the wire (the Python clients have no quota admin API).
fn set_client_quota(s: &Server, client_id: &str, key: &str, value: f64) {
    use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
    use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey};
    use kafka_protocol::protocol::StrBytes;
    let mut w = common::Wire::connect(s.port);
    let r: AlterClientQuotasResponse = w.call(
        ApiKey::AlterClientQuotas,
        1,
        &AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
            .with_entity(vec![EntityData::default()
                .with_entity_type(StrBytes::from_static_str("client-id"))
                .with_entity_name(Some(StrBytes::from_string(
                    client_id.to_string(),
                )))])
            .with_ops(vec![OpData::default()
                .with_key(StrBytes::from_string(key.to_string()))
                .with_value(value)])]),
    );
    assert_eq!(r.entries[0].error_code, 0, "{r:?}");
}
