//! Wire-level tests against a real `chronik-server`: protocol negotiation, bad input, produce and
//! fetch of exact bytes, HTTP on the Kafka port, start-up refusal and clean shutdown.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::{Server, Wire};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create_topic(w: &mut Wire, name: &str, partitions: i32) {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
        .with_timeout_ms(10_000);
    let resp: CreateTopicsResponse = w.call(ApiKey::CreateTopics, 7, &req);
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0]);
}

fn produce(
    w: &mut Wire,
    version: i16,
    topic: &str,
    partition: i32,
    records: Vec<u8>,
) -> ProduceResponse {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(records)))])]);
    w.call(ApiKey::Produce, version, &req)
}

fn fetch(
    w: &mut Wire,
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
) -> FetchResponse {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    w.call(ApiKey::Fetch, 12, &req)
}

#[test]
fn api_versions_advertises_exact_ranges() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    for v in [0i16, 1, 2, 3, 4] {
        let resp: ApiVersionsResponse =
            w.call(ApiKey::ApiVersions, v, &ApiVersionsRequest::default());
        assert_eq!(resp.error_code, 0);
        let produce = resp
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::Produce as i16)
            .unwrap();
        assert_eq!((produce.min_version, produce.max_version), (3, 11));
        assert_eq!(
            resp.api_keys.len(),
            chronik_protocol::api::SUPPORTED.len(),
            "every served API is advertised, nothing more"
        );
    }
}

#[test]
fn unknown_key_and_version_get_unsupported_version_and_the_connection_survives() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    // Unknown API key 999: correlation id + error 35.
    let mut frame = Vec::new();
    frame.extend_from_slice(&999i16.to_be_bytes());
    frame.extend_from_slice(&0i16.to_be_bytes());
    frame.extend_from_slice(&77i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    w.send_raw(&(frame.len() as i32).to_be_bytes());
    w.send_raw(&frame);
    let resp = w.recv_frame().unwrap();
    assert_eq!(&resp[..4], &77i32.to_be_bytes());
    assert_eq!(&resp[4..6], &35i16.to_be_bytes());
    // ApiVersions at an unknown version: Kafka's v0 fallback with the ranges.
    let mut frame = Vec::new();
    frame.extend_from_slice(&(ApiKey::ApiVersions as i16).to_be_bytes());
    frame.extend_from_slice(&99i16.to_be_bytes());
    frame.extend_from_slice(&78i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    w.send_raw(&(frame.len() as i32).to_be_bytes());
    w.send_raw(&frame);
    let resp = w.recv_frame().unwrap();
    assert_eq!(&resp[..4], &78i32.to_be_bytes());
    assert_eq!(&resp[4..6], &35i16.to_be_bytes());
    // Same connection still answers.
    let ok: ApiVersionsResponse = w.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(ok.error_code, 0);
}

#[test]
fn hostile_frames_close_only_their_connection() {
    let s = Server::start();
    // Oversized length prefix: closed before anything is allocated.
    let mut w = Wire::connect(s.port);
    w.send_raw(&i32::MAX.to_be_bytes());
    assert!(w.closed_by_server());
    // Negative length.
    let mut w = Wire::connect(s.port);
    w.send_raw(&(-5i32).to_be_bytes());
    assert!(w.closed_by_server());
    // Truncated frame: promise 100 bytes, send 10, hang up.
    let mut w = Wire::connect(s.port);
    w.send_raw(&100i32.to_be_bytes());
    w.send_raw(&[1u8; 10]);
    drop(w);
    // Garbage after a plausible head: a malformed body closes the connection.
    let mut w = Wire::connect(s.port);
    let mut frame = Vec::new();
    frame.extend_from_slice(&(ApiKey::Metadata as i16).to_be_bytes());
    frame.extend_from_slice(&12i16.to_be_bytes());
    frame.extend_from_slice(&1i32.to_be_bytes());
    frame.extend_from_slice(&[0xff; 40]);
    w.send_raw(&(frame.len() as i32).to_be_bytes());
    w.send_raw(&frame);
    assert!(w.closed_by_server());
    // Forged element counts: a tiny body declaring 2^31 - 1 topics (Metadata v1, Int32 count)
    // and 2^32 - 2 topics (Metadata v9, compact varint count). The decoder pre-sizes its array
    // from the count (~150 GB): this must cost a closed connection, not the process.
    let mut w = Wire::connect(s.port);
    let mut frame = Vec::new();
    frame.extend_from_slice(&(ApiKey::Metadata as i16).to_be_bytes());
    frame.extend_from_slice(&1i16.to_be_bytes());
    frame.extend_from_slice(&2i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    frame.extend_from_slice(&i32::MAX.to_be_bytes());
    frame.extend_from_slice(&[0, 1, b'a']);
    w.send_raw(&(frame.len() as i32).to_be_bytes());
    w.send_raw(&frame);
    assert!(w.closed_by_server());
    let mut w = Wire::connect(s.port);
    let mut frame = Vec::new();
    frame.extend_from_slice(&(ApiKey::Metadata as i16).to_be_bytes());
    frame.extend_from_slice(&9i16.to_be_bytes());
    frame.extend_from_slice(&3i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    frame.push(0); // header tagged fields
    frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // varint u32::MAX
    frame.extend_from_slice(&[2, b'a']);
    w.send_raw(&(frame.len() as i32).to_be_bytes());
    w.send_raw(&frame);
    assert!(w.closed_by_server());
    // Seeded random garbage on many connections.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..50 {
        let mut w = Wire::connect(s.port);
        let mut junk = vec![0u8; 64];
        for b in junk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let _ = w.stream.write_all(&junk);
    }
    // The broker still serves everyone else.
    let mut w = Wire::connect(s.port);
    let ok: ApiVersionsResponse = w.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(ok.error_code, 0);
}

#[test]
fn produce_validates_batches_and_fetch_returns_the_stored_bytes() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    create_topic(&mut w, "wire", 2);
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> =
        vec![(Some(b"k0"), Some(b"v0")), (Some(b"k1"), Some(b"v1"))];
    let batch = chronik_protocol::batch::encode_batch(&kv, 1_700_000_000_000);
    // Good batch, twice: offsets 0 and 2.
    for (i, expect) in [0i64, 2].into_iter().enumerate() {
        let r = produce(&mut w, 9, "wire", 1, batch.clone());
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "produce {i}: {p:?}");
        assert_eq!(p.base_offset, expect);
    }
    // A flipped bit inside the CRC-covered region: CORRUPT_MESSAGE, nothing stored.
    let mut bad = batch.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    let r = produce(&mut w, 9, "wire", 1, bad);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 2);
    // Truncated batch: CORRUPT_MESSAGE too.
    let r = produce(&mut w, 9, "wire", 1, batch[..batch.len() - 3].to_vec());
    assert_eq!(r.responses[0].partition_responses[0].error_code, 2);
    // Unknown partition and topic.
    let r = produce(&mut w, 9, "wire", 7, batch.clone());
    assert_eq!(r.responses[0].partition_responses[0].error_code, 3);
    // Older produce version still works.
    let r = produce(&mut w, 3, "wire", 1, batch.clone());
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 4);
    // Fetch: the same bytes, with the base offsets the broker assigned.
    let f = fetch(&mut w, "wire", 1, 0, 0);
    let p = &f.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(p.high_watermark, 6);
    let records = p.records.clone().unwrap();
    assert_eq!(records.len(), 3 * batch.len());
    for (i, chunk) in records.chunks(batch.len()).enumerate() {
        let h = chronik_protocol::batch::validate(chunk).expect("stored batch valid");
        assert_eq!(h.base_offset.get(), 2 * i as i64);
        assert_eq!(
            &chunk[chronik_protocol::batch::CRC_START..],
            &batch[chronik_protocol::batch::CRC_START..]
        );
    }
    // Out of range.
    let f = fetch(&mut w, "wire", 1, 99, 0);
    assert_eq!(f.responses[0].partitions[0].error_code, 1);
    // Long poll: wakes when data arrives, not at the deadline.
    let port = s.port;
    let batch2 = batch.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut w2 = Wire::connect(port);
        produce(&mut w2, 9, "wire", 0, batch2);
    });
    let start = std::time::Instant::now();
    let f = fetch(&mut w, "wire", 0, 0, 10_000);
    let waited = start.elapsed();
    t.join().unwrap();
    assert_eq!(f.responses[0].partitions[0].high_watermark, 2);
    assert!(
        waited < Duration::from_secs(5),
        "long poll did not wake early: {waited:?}"
    );
    assert!(
        waited >= Duration::from_millis(200),
        "long poll returned before data: {waited:?}"
    );
    // min_bytes 0 answers at once even with nothing to return (Kafka semantics).
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(10_000)
        .with_min_bytes(0)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("wire"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(2)
                .with_partition_max_bytes(1 << 20)])]);
    let start = std::time::Instant::now();
    let f: FetchResponse = w.call(ApiKey::Fetch, 12, &req);
    assert_eq!(f.responses[0].partitions[0].error_code, 0);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "min_bytes 0 waited {:?}",
        start.elapsed()
    );
}

#[test]
fn message_too_large_and_topic_configs_apply() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    let mut configs = BTreeMap::new();
    configs.insert("max.message.bytes", "200");
    configs.insert("message.timestamp.type", "LogAppendTime");
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name("small"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        kafka_protocol::messages::create_topics_request::CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )])
        .with_timeout_ms(10_000);
    let resp: CreateTopicsResponse = w.call(ApiKey::CreateTopics, 7, &req);
    assert_eq!(resp.topics[0].error_code, 0);
    let big = vec![0u8; 300];
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> = vec![(None, Some(&big[..]))];
    let r = produce(
        &mut w,
        9,
        "small",
        0,
        chronik_protocol::batch::encode_batch(&kv, 5),
    );
    assert_eq!(r.responses[0].partition_responses[0].error_code, 10);
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> = vec![(None, Some(b"tiny"))];
    let r = produce(
        &mut w,
        9,
        "small",
        0,
        chronik_protocol::batch::encode_batch(&kv, 5),
    );
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0);
    assert!(
        p.log_append_time_ms > 1_600_000_000_000,
        "LogAppendTime stamped: {p:?}"
    );
    // Invalid replication factor on a one-node cluster.
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(topic_name("rf3"))
        .with_num_partitions(1)
        .with_replication_factor(3)]);
    let resp: CreateTopicsResponse = w.call(ApiKey::CreateTopics, 7, &req);
    assert_eq!(resp.topics[0].error_code, 38);
}

/// As in Kafka, a name that equals an existing topic's once '.' and '_' are the same character
/// is refused with INVALID_TOPIC_EXCEPTION (17): by CreateTopics, validate-only or not, and by
/// auto-creation through Metadata; the existing topic and unrelated names are unaffected.
#[test]
fn topic_names_colliding_on_dot_and_underscore_are_refused() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    create_topic(&mut w, "orders.eu_1", 1);
    let create = |w: &mut Wire, name: &str, validate_only: bool| {
        let req = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(1)
                .with_replication_factor(1)])
            .with_validate_only(validate_only)
            .with_timeout_ms(10_000);
        let resp: CreateTopicsResponse = w.call(ApiKey::CreateTopics, 7, &req);
        let t = &resp.topics[0];
        (
            t.error_code,
            t.error_message.as_ref().map(|m| m.to_string()),
        )
    };
    for (name, validate_only) in [("orders_eu.1", false), ("orders_eu_1", true)] {
        let (code, msg) = create(&mut w, name, validate_only);
        assert_eq!(code, 17, "{name}: {msg:?}");
        assert_eq!(
            msg.as_deref(),
            Some(format!("Topic '{name}' collides with existing topic: orders.eu_1").as_str())
        );
    }
    assert_eq!(
        create(&mut w, "orders.eu_1", false).0,
        36,
        "the same name exists"
    );
    assert_eq!(
        create(&mut w, "orders-eu-1", false).0,
        0,
        "'-' does not collide"
    );
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name("orders_eu_1")))
        ]))
        .with_allow_auto_topic_creation(true);
    let resp: MetadataResponse = w.call(ApiKey::Metadata, 12, &req);
    assert_eq!(resp.topics[0].error_code, 17, "auto-creation refused too");
    let all: MetadataResponse = w.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    let mut names: Vec<String> = all
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .filter(|n| n.starts_with("orders"))
        .collect();
    names.sort();
    assert_eq!(names, ["orders-eu-1", "orders.eu_1"]);
}

#[test]
fn http_is_served_on_both_ports() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    let _: ApiVersionsResponse = w.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    drop(w);
    let (status, body) = s.http_get(s.port, "/metrics");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("chronik_cluster_nodes"), "{body}");
    assert!(
        body.contains("raft_is_leader{topic=\"__meta\",partition=\"0\",node_id=\"1\"} 1"),
        "{body}"
    );
    // WAL and executor metrics are per shard.
    assert!(
        body.contains("chronik_wal_appends_total{shard=\"0\"}"),
        "storage metrics exported per shard: {body}"
    );
    assert!(
        body.contains("chronik_shard_stalls_total{shard=\"0\"}"),
        "stall detector registered: {body}"
    );
    // Latencies are histograms with buckets (the request above, the WAL's start-up fsyncs).
    assert!(
        body.contains("chronik_request_seconds_bucket{api=\"ApiVersions\",le=\"0.001\"}"),
        "request latency histogram: {body}"
    );
    assert!(
        body.contains("chronik_wal_fsync_seconds_bucket{shard=\"0\",le=\"0.01\"}"),
        "fsync latency histogram per shard: {body}"
    );
    let (status, body) = s.http_get(s.http_port, "/health");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("healthy"));
    let (status, _) = s.http_get(s.http_port, "/nope");
    assert!(status.contains("404"));
}

#[test]
fn sigterm_exits_cleanly_and_data_survives() {
    let mut s = Server::start();
    let mut w = Wire::connect(s.port);
    create_topic(&mut w, "keep", 1);
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> = vec![(Some(b"a"), Some(b"b"))];
    let r = produce(
        &mut w,
        9,
        "keep",
        0,
        chronik_protocol::batch::encode_batch(&kv, 1),
    );
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    drop(w);
    assert_eq!(s.terminate(), Some(0), "log:\n{}", s.log_text());
    s.restart();
    let mut w = Wire::connect(s.port);
    let f = fetch(&mut w, "keep", 0, 0, 0);
    assert_eq!(f.responses[0].partitions[0].high_watermark, 1);
}

#[test]
fn validate_config_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[cluster]\nnode_id = 0\nseed_nodes = [\"nonsense\"]\n[cluster.raft]\nelection_timeout_ms = 100\nheartbeat_interval_ms = 200\n[cluster.storage]\nwal_sync_mode = \"sometimes\"\ntypo_key = 1\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chronik-server"))
        .arg("validate-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    for key in [
        "cluster.node_id",
        "cluster.seed_nodes",
        "cluster.raft.heartbeat_interval_ms",
        "cluster.storage.wal_sync_mode",
        "typo_key",
    ] {
        assert!(text.contains(key), "report misses {key}:\n{text}");
    }
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[cluster]\nnode_id = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chronik-server"))
        .args(["validate-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Starts the binary on `data_dir` expecting it to refuse; returns its stderr. A binary that
/// is still running after 60 s has started: it is killed and the test fails.
fn start_refused(data_dir: &std::path::Path) -> String {
    let log = tempfile::NamedTempFile::new_in(common::test_tmp()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chronik-server"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("standalone")
        .env("CHRONIK_KAFKA_PORT", common::free_port().to_string())
        .env("CHRONIK_BIND_ADDR", "127.0.0.1")
        .env("CHRONIK_HTTP_ENABLED", "false")
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
    assert!(
        status.is_some_and(|s| !s.success()),
        "started ({status:?}): {text}"
    );
    text
}

/// Takes every free block of the filesystem holding `path` (as root, reserved blocks too) with
/// one file there.
fn fill_up(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for size in [1 << 20, 64 << 10, 4 << 10] {
        while f.write_all(&chunk[..size]).is_ok() {}
    }
    let _ = f.sync_all();
}

#[test]
fn refuses_to_start_on_a_filesystem_without_o_direct() {
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("SKIPPED: no /dev/shm tmpfs on this host");
        return;
    }
    let dir = tempfile::tempdir_in(shm).unwrap();
    let text = start_refused(dir.path());
    assert!(text.contains("O_DIRECT"), "{text}");
}

fn list_earliest(w: &mut Wire, topic: &str, partition: i32) -> i64 {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(-2)])]);
    let resp: ListOffsetsResponse = w.call(ApiKey::ListOffsets, 7, &req);
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

#[test]
fn delete_records_and_retention_move_the_log_start() {
    // One shard, so the admin endpoint's retention pass covers every partition.
    let s = Server::start_with(&[("CHRONIK_CORES", "1")]);
    let mut w = Wire::connect(s.port);
    create_topic(&mut w, "dr", 1);
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> = vec![(Some(b"k"), Some(&[7u8; 200][..]))];
    // Stamped now: retention.ms (7 days by default) must not be what drops them.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let batch = chronik_protocol::batch::encode_batch(&kv, now_ms);
    for _ in 0..10 {
        let r = produce(&mut w, 9, "dr", 0, batch.clone());
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    // DeleteRecords to offset 3.
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    let req = DeleteRecordsRequest::default()
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name("dr"))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(3)])])
        .with_timeout_ms(5000);
    let resp: DeleteRecordsResponse = w.call(ApiKey::DeleteRecords, 2, &req);
    let p = &resp.topics[0].partitions[0];
    assert_eq!((p.error_code, p.low_watermark), (0, 3));
    assert_eq!(list_earliest(&mut w, "dr", 0), 3);
    assert_eq!(
        fetch(&mut w, "dr", 0, 1, 0).responses[0].partitions[0].error_code,
        1
    );
    // retention.bytes small enough to keep about two batches, applied on demand.
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("dr"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.bytes"))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_static_str("700")))]),
    ]);
    let resp: IncrementalAlterConfigsResponse = w.call(ApiKey::IncrementalAlterConfigs, 1, &req);
    assert_eq!(resp.responses[0].error_code, 0);
    let (status, body) = s.http(s.http_port, "POST", "/admin/compact");
    assert!(status.contains("202"), "{status} {body}");
    let earliest = list_earliest(&mut w, "dr", 0);
    assert!(
        (6..10).contains(&earliest),
        "log start after retention: {earliest}"
    );
    // The survivors are still readable from the new start.
    let f = fetch(&mut w, "dr", 0, earliest, 0);
    assert_eq!(f.responses[0].partitions[0].error_code, 0);
    assert_eq!(f.responses[0].partitions[0].log_start_offset, earliest);
}

/// A small ext4 filesystem in a file, loop-mounted at `mnt` until dropped.
struct LoopFs {
    mnt: std::path::PathBuf,
}

impl LoopFs {
    /// `None` (with the reason printed) where loop mounts are not allowed (not root, no loop
    /// devices, no mkfs.ext4).
    fn mount(img: &std::path::Path, mnt: &std::path::Path, bytes: u64) -> Option<LoopFs> {
        std::fs::File::create(img).unwrap().set_len(bytes).unwrap();
        std::fs::create_dir_all(mnt).unwrap();
        let run = |cmd: &mut Command| cmd.output().map(|o| (o.status.success(), o));
        match run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(img)) {
            Ok((true, _)) => {}
            other => {
                eprintln!("SKIPPED: mkfs.ext4 failed: {other:?}");
                return None;
            }
        }
        match run(Command::new("mount").args(["-o", "loop"]).arg(img).arg(mnt)) {
            Ok((true, _)) => Some(LoopFs {
                mnt: mnt.to_path_buf(),
            }),
            other => {
                eprintln!("SKIPPED: cannot loop-mount a test filesystem here: {other:?}");
                None
            }
        }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).output();
    }
}

#[test]
fn a_full_disk_fails_writes_with_storage_error_and_keeps_serving_reads() {
    // The data dir is a 96 MiB ext4 filesystem: produce 900 KB batches until it is full.
    let dir = Server::new_dir();
    let data = dir.path().join("data");
    let Some(fs) = LoopFs::mount(&dir.path().join("fs.img"), &data, 96 << 20) else {
        return;
    };
    // Ballast, deleted at the end so that the node can start again with room to spare.
    let ballast = data.join("ballast");
    std::fs::write(&ballast, vec![0u8; 8 << 20]).unwrap();
    let mut s = Server::start_in(dir, &[("CHRONIK_WAL_SEGMENT_SIZE", "16777216")]);
    let mut w = Wire::connect(s.port);
    create_topic(&mut w, "full", 1);
    let value = vec![0x42u8; 900_000];
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> = vec![(Some(b"k"), Some(&value))];
    let batch = chronik_protocol::batch::encode_batch(&kv, 1_700_000_000_000);
    let mut acked = 0i64;
    let mut error = 0;
    for _ in 0..400 {
        let r = produce(&mut w, 9, "full", 0, batch.clone());
        let p = &r.responses[0].partition_responses[0];
        if p.error_code != 0 {
            error = p.error_code;
            break;
        }
        assert_eq!(p.base_offset, acked);
        acked += 1;
    }
    assert_eq!(
        error, 56,
        "KAFKA_STORAGE_ERROR once the disk is full ({acked} acked)"
    );
    assert!(acked > 10, "only {acked} batches fit");
    // Writes keep failing cleanly; reads of what was acknowledged, and metadata, still work.
    let r = produce(&mut w, 9, "full", 0, batch.clone());
    assert_eq!(r.responses[0].partition_responses[0].error_code, 56);
    let f = fetch(&mut w, "full", 0, acked - 1, 0);
    let p = &f.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, acked));
    let records = p.records.clone().unwrap();
    let h = chronik_protocol::batch::validate(&records[..batch.len()]).expect("stored batch");
    assert_eq!(h.base_offset.get(), acked - 1);
    let _ = topic_id(&mut w, "full");
    // Health probes say why the node needs attention.
    let (status, body) = s.http_get(s.http_port, "/health");
    assert!(status.contains("503"), "{status} {body}");
    assert!(body.contains("storage_failed"), "{body}");
    let (status, body) = s.http_get(s.http_port, "/health/ready");
    assert!(
        status.contains("503") && body.contains("\"ready\":false"),
        "{status} {body}"
    );
    assert!(s.is_running(), "log:\n{}", s.log_text());
    assert!(s.log_text().contains("No space left on device"));
    s.kill9();
    // The WAL failed at its next allocation (a segment, up to 16 MiB), so some space may be
    // left; take it. A restart on the full disk is refused with what is wrong and what to do
    // (not as an O_DIRECT problem).
    let filler = s.data_dir().join("filler");
    fill_up(&filler);
    let text = start_refused(&s.data_dir());
    assert!(
        text.contains("is full") && text.contains("free space"),
        "{text}"
    );
    assert!(!text.contains("O_DIRECT does not work"), "{text}");
    // Space freed: the node starts and every acknowledged batch is there.
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(&ballast).unwrap();
    s.restart();
    let mut w = Wire::connect(s.port);
    let f = fetch(&mut w, "full", 0, acked - 1, 0);
    let p = &f.responses[0].partitions[0];
    assert_eq!(
        (p.error_code, p.high_watermark),
        (0, acked),
        "log:\n{}",
        s.log_text()
    );
    drop(w);
    s.kill9();
    drop(fs);
}

#[test]
fn a_second_broker_on_the_same_data_dir_is_refused() {
    let s = Server::start();
    let text = start_refused(&s.data_dir());
    assert!(text.contains("in use by another chronik-server"), "{text}");
    assert!(text.contains(&s.pid().to_string()), "{text}");
}

#[test]
fn sigterm_with_parked_long_polls_exits_promptly() {
    let mut s = Server::start();
    let mut w = Wire::connect(s.port);
    create_topic(&mut w, "parked", 4);
    // Long polls parked on every partition (two shards own them).
    let port = s.port;
    let pollers: Vec<_> = (0..4)
        .map(|p| {
            std::thread::spawn(move || {
                let mut w = Wire::connect(port);
                let req = FetchRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_max_wait_ms(20_000)
                    .with_min_bytes(1)
                    .with_topics(vec![FetchTopic::default()
                        .with_topic(topic_name("parked"))
                        .with_partitions(vec![FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20)])]);
                w.send(ApiKey::Fetch, 12, &req);
                let _ = w.recv_frame();
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let start = std::time::Instant::now();
    assert_eq!(s.terminate(), Some(0), "log:\n{}", s.log_text());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        start.elapsed()
    );
    for p in pollers {
        p.join().unwrap();
    }
}

/// A Fetch of partitions `0..n` of `topic`, each at its offset in `offsets`.
fn fetch_all(topic: &str, offsets: &[i64], min_bytes: i32, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(
                offsets
                    .iter()
                    .enumerate()
                    .map(|(p, &o)| fetch_partition(p as i32, o))
                    .collect(),
            )])
}

/// Record bytes per partition index of a one-topic fetch response.
fn bytes_by_partition(f: &FetchResponse) -> BTreeMap<i32, usize> {
    f.responses[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, 0, "{p:?}");
            (p.partition_index, p.records.as_ref().map_or(0, |r| r.len()))
        })
        .collect()
}

#[test]
fn long_polls_wake_on_data_and_gather_min_bytes_across_shards() {
    // Four partitions: with two or more cores they belong to different shards, so the long
    // poll waits on shards other than the connection's and gathers what they answer.
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    create_topic(&mut w, "lp", 4);
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> = vec![(Some(b"k"), Some(b"v"))];
    let batch = chronik_protocol::batch::encode_batch(&kv, 1_700_000_000_000);
    let port = s.port;
    let poll = move |req: FetchRequest| {
        std::thread::spawn(move || {
            let mut w = Wire::connect(port);
            let t0 = std::time::Instant::now();
            let f: FetchResponse = w.call(ApiKey::Fetch, 12, &req);
            (f, t0.elapsed())
        })
    };

    // min_bytes 1: the poll parked on all four wakes when partition 3 gets a batch.
    let h = poll(fetch_all("lp", &[0, 0, 0, 0], 1, 20_000));
    std::thread::sleep(Duration::from_millis(400));
    let r = produce(&mut w, 9, "lp", 3, batch.clone());
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let (f, took) = h.join().unwrap();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let got = bytes_by_partition(&f);
    assert_eq!(got[&3], batch.len(), "{got:?}");

    // min_bytes of two batches: one batch on partition 0 is not enough; the answer comes once
    // partition 1 has one too, and carries both.
    let h = poll(fetch_all(
        "lp",
        &[0, 0, 0, 1],
        2 * batch.len() as i32,
        20_000,
    ));
    std::thread::sleep(Duration::from_millis(400));
    produce(&mut w, 9, "lp", 0, batch.clone());
    std::thread::sleep(Duration::from_millis(400));
    produce(&mut w, 9, "lp", 1, batch.clone());
    let (f, took) = h.join().unwrap();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let got = bytes_by_partition(&f);
    assert_eq!(
        (got[&0], got[&1], got[&2], got[&3]),
        (batch.len(), batch.len(), 0, 0)
    );

    // Unreachable min_bytes: answered at max_wait with what there is.
    let h = poll(fetch_all("lp", &[0, 1, 0, 1], 1 << 20, 600));
    let (f, took) = h.join().unwrap();
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let got = bytes_by_partition(&f);
    assert_eq!((got[&0], got[&1], got[&2], got[&3]), (batch.len(), 0, 0, 0));
}

#[test]
fn connection_limit_and_idle_timeout_close_connections() {
    let s = Server::start_with(&[
        ("CHRONIK_MAX_CONNECTIONS", "2"),
        ("CHRONIK_CONNECTIONS_MAX_IDLE_MS", "700"),
    ]);
    // Let the harness's readiness probe connection close on the server side first.
    std::thread::sleep(Duration::from_millis(300));
    let mut a = Wire::connect(s.port);
    let mut b = Wire::connect(s.port);
    let _: ApiVersionsResponse = a.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let _: ApiVersionsResponse = b.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    // A third connection is over the limit: closed at once.
    let mut c = Wire::connect(s.port);
    assert!(c.closed_by_server());
    // Idle connections are closed after connections_max_idle_ms, freeing their slots.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(a.closed_by_server());
    assert!(b.closed_by_server());
    let mut d = Wire::connect(s.port);
    let ok: ApiVersionsResponse = d.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(ok.error_code, 0);
}

/// The topic id Metadata v12 reports for `name`.
fn topic_id(w: &mut Wire, name: &str) -> uuid::Uuid {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let req = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name(name)))
    ]));
    let resp: MetadataResponse = w.call(ApiKey::Metadata, 12, &req);
    assert_eq!(resp.topics[0].error_code, 0);
    assert!(!resp.topics[0].topic_id.is_nil());
    resp.topics[0].topic_id
}

fn fetch_partition(partition: i32, offset: i64) -> FetchPartition {
    FetchPartition::default()
        .with_partition(partition)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20)
}

/// A Fetch by topic id (v13+) in session `session_id` at `epoch`.
fn fetch_by_id(
    session_id: i32,
    epoch: i32,
    max_wait_ms: i32,
    topics: Vec<(uuid::Uuid, Vec<FetchPartition>)>,
    forgotten: Vec<(uuid::Uuid, Vec<i32>)>,
) -> FetchRequest {
    use kafka_protocol::messages::fetch_request::ForgottenTopic;
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(
            topics
                .into_iter()
                .map(|(id, parts)| {
                    FetchTopic::default()
                        .with_topic_id(id)
                        .with_partitions(parts)
                })
                .collect(),
        )
        .with_forgotten_topics_data(
            forgotten
                .into_iter()
                .map(|(id, parts)| {
                    ForgottenTopic::default()
                        .with_topic_id(id)
                        .with_partitions(parts)
                })
                .collect(),
        )
}

/// `(topic id, partition, error, high watermark, record bytes)` of every answered partition.
fn answered(f: &FetchResponse) -> Vec<(uuid::Uuid, i32, i16, i64, usize)> {
    f.responses
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let bytes = p.records.as_ref().map_or(0, |r| r.len());
                (
                    t.topic_id,
                    p.partition_index,
                    p.error_code,
                    p.high_watermark,
                    bytes,
                )
            })
        })
        .collect()
}

#[test]
fn fetch_by_topic_id_returns_the_records_and_the_id_and_unknown_ids_fail() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    let versions: ApiVersionsResponse =
        w.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let fetch_range = versions
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Fetch as i16)
        .map(|k| (k.min_version, k.max_version));
    assert_eq!(fetch_range, Some((4, 18)));
    create_topic(&mut w, "ids", 2);
    let id = topic_id(&mut w, "ids");
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> = vec![(Some(b"k"), Some(b"v"))];
    let batch = chronik_protocol::batch::encode_batch(&kv, 1_700_000_000_000);
    let r = produce(&mut w, 9, "ids", 1, batch.clone());
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let unknown = uuid::Uuid::from_u128(0xdead_beef);
    for version in 13..=18 {
        let req = fetch_by_id(
            0,
            -1,
            0,
            vec![
                (id, vec![fetch_partition(0, 0), fetch_partition(1, 0)]),
                (unknown, vec![fetch_partition(0, 0), fetch_partition(3, 0)]),
            ],
            vec![],
        );
        let f: FetchResponse = w.call(ApiKey::Fetch, version, &req);
        assert_eq!((f.error_code, f.session_id), (0, 0), "v{version}");
        assert_eq!(f.responses.len(), 2, "v{version}");
        assert_eq!(f.responses[0].topic_id, id);
        assert_eq!(f.responses[0].topic.0.as_str(), "", "v13+ carries no name");
        assert_eq!(
            answered(&f),
            vec![
                (id, 0, 0, 0, 0),
                (id, 1, 0, 1, batch.len()),
                (unknown, 0, 100, -1, 0),
                (unknown, 3, 100, -1, 0),
            ],
            "v{version}"
        );
        let records = f.responses[0].partitions[1].records.clone().unwrap();
        let h = chronik_protocol::batch::validate(&records).expect("stored batch valid");
        assert_eq!(h.base_offset.get(), 0);
        assert_eq!(
            &records[chronik_protocol::batch::CRC_START..],
            &batch[chronik_protocol::batch::CRC_START..]
        );
    }
    // Names still work below v13.
    let f = fetch(&mut w, "ids", 1, 0, 0);
    assert_eq!(f.responses[0].topic.0.as_str(), "ids");
    assert_eq!(f.responses[0].partitions[0].high_watermark, 1);
}

#[test]
fn incremental_fetch_sessions_answer_only_what_changed() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    create_topic(&mut w, "sess", 3);
    let id = topic_id(&mut w, "sess");
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> = vec![(Some(b"k"), Some(b"v"))];
    let batch = chronik_protocol::batch::encode_batch(&kv, 1_700_000_000_000);
    let n = batch.len();
    produce(&mut w, 9, "sess", 0, batch.clone());
    let v = 17;
    // Full fetch with (0, 0): opens a session, answers every partition.
    let all = vec![(
        id,
        vec![
            fetch_partition(0, 0),
            fetch_partition(1, 0),
            fetch_partition(2, 0),
        ],
    )];
    let f: FetchResponse = w.call(ApiKey::Fetch, v, &fetch_by_id(0, 0, 0, all, vec![]));
    let session = f.session_id;
    assert_ne!(session, 0, "a session was opened");
    assert_eq!(
        answered(&f),
        vec![(id, 0, 0, 1, n), (id, 1, 0, 0, 0), (id, 2, 0, 0, 0)]
    );
    // Epoch 1: partition 0 consumed; nothing changed anywhere, so nothing is answered.
    let req = fetch_by_id(
        session,
        1,
        0,
        vec![(id, vec![fetch_partition(0, 1)])],
        vec![],
    );
    let f: FetchResponse = w.call(ApiKey::Fetch, v, &req);
    assert_eq!((f.error_code, f.session_id), (0, session));
    assert_eq!(answered(&f), vec![]);
    // New data on partition 2 only: epoch 2 lists nothing and gets exactly that partition.
    produce(&mut w, 9, "sess", 2, batch.clone());
    let f: FetchResponse = w.call(
        ApiKey::Fetch,
        v,
        &fetch_by_id(session, 2, 0, vec![], vec![]),
    );
    assert_eq!(answered(&f), vec![(id, 2, 0, 1, n)]);
    // Long poll inside the session: parks on every session partition, wakes for partition 1.
    let port = s.port;
    let batch2 = batch.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut w2 = Wire::connect(port);
        produce(&mut w2, 9, "sess", 1, batch2);
    });
    let start = std::time::Instant::now();
    let req = fetch_by_id(
        session,
        3,
        10_000,
        vec![(id, vec![fetch_partition(2, 1)])],
        vec![],
    );
    let f: FetchResponse = w.call(ApiKey::Fetch, v, &req);
    let waited = start.elapsed();
    t.join().unwrap();
    assert_eq!(answered(&f), vec![(id, 1, 0, 1, n)]);
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
        "incremental long poll waited {waited:?}"
    );
    // A replayed epoch: INVALID_FETCH_SESSION_EPOCH, top-level, no partitions, no session.
    let f: FetchResponse = w.call(
        ApiKey::Fetch,
        v,
        &fetch_by_id(session, 3, 0, vec![], vec![]),
    );
    assert_eq!((f.error_code, f.session_id), (71, 0));
    assert!(f.responses.is_empty());
    // An unknown session id: FETCH_SESSION_ID_NOT_FOUND.
    let f: FetchResponse = w.call(
        ApiKey::Fetch,
        v,
        &fetch_by_id(session.wrapping_add(1000), 1, 0, vec![], vec![]),
    );
    assert_eq!((f.error_code, f.session_id), (70, 0));
    // The session survived both: epoch 4 works. Forget partition 0 (by id) and move 1 on.
    let req = fetch_by_id(
        session,
        4,
        0,
        vec![(id, vec![fetch_partition(1, 1)])],
        vec![(id, vec![0])],
    );
    let f: FetchResponse = w.call(ApiKey::Fetch, v, &req);
    assert_eq!((f.error_code, answered(&f)), (0, vec![]));
    // New data on the forgotten partition is not answered.
    produce(&mut w, 9, "sess", 0, batch.clone());
    let f: FetchResponse = w.call(
        ApiKey::Fetch,
        v,
        &fetch_by_id(session, 5, 0, vec![], vec![]),
    );
    assert_eq!((f.error_code, answered(&f)), (0, vec![]));
    // The same session cannot be continued by topic name (v12).
    let mut by_name = fetch_by_id(session, 6, 0, vec![], vec![]);
    by_name.topics.clear();
    let f: FetchResponse = w.call(ApiKey::Fetch, 12, &by_name);
    assert_eq!(f.error_code, 106);
    // Epoch -1 closes it: a sessionless answer, and the id is gone.
    let req = fetch_by_id(
        session,
        -1,
        0,
        vec![(id, vec![fetch_partition(0, 1)])],
        vec![],
    );
    let f: FetchResponse = w.call(ApiKey::Fetch, v, &req);
    assert_eq!(f.session_id, 0);
    assert_eq!(answered(&f), vec![(id, 0, 0, 2, n)]);
    let f: FetchResponse = w.call(
        ApiKey::Fetch,
        v,
        &fetch_by_id(session, 6, 0, vec![], vec![]),
    );
    assert_eq!(f.error_code, 70);
    // Sessions belong to their connection: another connection does not know this one's ids.
    let (f, other) = {
        let mut w2 = Wire::connect(s.port);
        let opened: FetchResponse = w2.call(
            ApiKey::Fetch,
            v,
            &fetch_by_id(0, 0, 0, vec![(id, vec![fetch_partition(0, 0)])], vec![]),
        );
        assert_ne!(opened.session_id, 0);
        let req = fetch_by_id(opened.session_id, 1, 0, vec![], vec![]);
        (
            w.call::<_, FetchResponse>(ApiKey::Fetch, v, &req),
            opened.session_id,
        )
    };
    assert_eq!(f.error_code, 70, "session {other} of another connection");
}

#[test]
fn name_based_sessions_work_below_v13() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    create_topic(&mut w, "named", 2);
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> = vec![(None, Some(b"x"))];
    let batch = chronik_protocol::batch::encode_batch(&kv, 1_700_000_000_000);
    let req = |session: i32, epoch: i32, parts: Vec<FetchPartition>| {
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_session_id(session)
            .with_session_epoch(epoch)
            .with_topics(if parts.is_empty() {
                vec![]
            } else {
                vec![FetchTopic::default()
                    .with_topic(topic_name("named"))
                    .with_partitions(parts)]
            })
    };
    let f: FetchResponse = w.call(
        ApiKey::Fetch,
        7,
        &req(0, 0, vec![fetch_partition(0, 0), fetch_partition(1, 0)]),
    );
    let session = f.session_id;
    assert_ne!(session, 0);
    assert_eq!(f.responses[0].partitions.len(), 2);
    produce(&mut w, 9, "named", 1, batch.clone());
    for (epoch, version) in [(1, 7), (2, 12)] {
        let f: FetchResponse = w.call(ApiKey::Fetch, version, &req(session, epoch, vec![]));
        assert_eq!(f.error_code, 0);
        let got: Vec<(String, i32, i64)> = f
            .responses
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.topic.0.to_string(), p.partition_index, p.high_watermark))
            })
            .collect();
        // Epoch 1 learns partition 1's new data; epoch 2 still fetches it from offset 0 (the
        // client did not move it on), so the records come again.
        assert_eq!(got, vec![("named".to_string(), 1, 1)], "epoch {epoch}");
    }
}

/// Large batches (cached as raft's own buffer, no copy) and batches evicted from a tiny cache
/// (read back from the segment files through io_uring) come back byte for byte, in order.
#[test]
fn large_and_evicted_batches_are_fetched_exactly() {
    let s = Server::start_with(&[("CHRONIK_WAL_CACHE_BYTES", "65536")]);
    let mut w = Wire::connect(s.port);
    create_topic(&mut w, "big", 1);
    let mut sent = Vec::new();
    for i in 0..12usize {
        // 300 KiB and 3 KiB values alternate: both cache paths, and evictions.
        let len = if i % 2 == 0 { 300 * 1024 } else { 3 * 1024 };
        let value: Vec<u8> = (0..len).map(|k| (k * 7 + i * 13) as u8).collect();
        let key = format!("k{i}");
        let kv: Vec<chronik_protocol::batch::KeyValue<'_>> =
            vec![(Some(key.as_bytes()), Some(&value[..]))];
        let batch = chronik_protocol::batch::encode_batch(&kv, 1_700_000_000_000);
        let r = produce(&mut w, 9, "big", 0, batch.clone());
        let p = &r.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, i as i64), "{p:?}");
        sent.push(batch);
    }
    let mut offset = 0i64;
    let mut got = 0usize;
    // Bounded: every fetch returns at least one batch.
    while got < sent.len() {
        let f = fetch(&mut w, "big", 0, offset, 0);
        let p = &f.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "{p:?}");
        let records = p.records.clone().unwrap();
        assert!(!records.is_empty(), "no records at offset {offset}");
        let mut rest = &records[..];
        while !rest.is_empty() {
            let len = sent[got].len();
            let h = chronik_protocol::batch::validate(&rest[..len]).expect("stored batch valid");
            assert_eq!(h.base_offset.get(), got as i64);
            assert_eq!(
                &rest[chronik_protocol::batch::CRC_START..len],
                &sent[got][chronik_protocol::batch::CRC_START..],
                "batch {got}"
            );
            rest = &rest[len..];
            got += 1;
            offset += 1;
        }
    }
    let (_, metrics) = s.http_get(s.port, "/metrics");
    let misses: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("chronik_wal_cache_misses_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(misses > 0, "no read went to disk:\n{metrics}");
}

/// SASL on the Kafka listener at the wire level: outside an exchange both SASL APIs are
/// ILLEGAL_SASL_STATE; with mechanisms required, a request before authentication closes the
/// connection, an unknown mechanism is refused, a version-0 handshake takes a bare PLAIN token,
/// a wrong password is SASL_AUTHENTICATION_FAILED and closes, and an authenticated connection
/// is served. (SCRAM is driven by the real clients in `clients.rs`.)
#[test]
fn sasl_handshake_authenticate_and_the_unauthenticated_gate() {
    let plain = Server::start();
    let mut w = Wire::connect(plain.port);
    let r: SaslHandshakeResponse = w.call(
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
    );
    assert_eq!(r.error_code, 34, "PLAINTEXT listener: ILLEGAL_SASL_STATE");
    let r: SaslAuthenticateResponse = w.call(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0a\0b")),
    );
    assert_eq!(r.error_code, 34);
    let m: MetadataResponse = w.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(!m.brokers.is_empty(), "the connection still serves");
    drop(plain);

    let s = Server::start_with(&[
        ("CHRONIK_SASL_MECHANISMS", "PLAIN,SCRAM-SHA-512"),
        (
            "CHRONIK_SASL_BOOTSTRAP_USERS",
            "alice:wonder land,bob:builder",
        ),
    ]);
    // No HTTP on a SASL Kafka port: its admin routes would bypass authentication.
    let mut w = Wire::connect(s.port);
    w.send_raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        w.closed_by_server(),
        "HTTP must not be served on a SASL Kafka port"
    );
    // ApiVersions is allowed before authentication; Metadata is not.
    let mut w = Wire::connect(s.port);
    let v: ApiVersionsResponse = w.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert!(v
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::SaslAuthenticate as i16));
    w.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(w.closed_by_server(), "unauthenticated Metadata must close");

    let mut w = Wire::connect(s.port);
    let r: SaslHandshakeResponse = w.call(
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("GSSAPI")),
    );
    assert_eq!(r.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
    let names: Vec<&str> = r.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(names, vec!["PLAIN", "SCRAM-SHA-512"]);
    assert!(w.closed_by_server());

    // Version 0: the token travels as a bare frame and the answer is a bare (empty) frame.
    let mut w = Wire::connect(s.port);
    let r: SaslHandshakeResponse = w.call(
        ApiKey::SaslHandshake,
        0,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
    );
    assert_eq!(r.error_code, 0);
    let token = b"\0alice\0wonder land";
    w.send_raw(&(token.len() as i32).to_be_bytes());
    w.send_raw(token);
    assert_eq!(w.recv_frame().expect("bare answer"), Vec::<u8>::new());
    let m: MetadataResponse = w.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(!m.brokers.is_empty());

    // Version 1 with SaslAuthenticate: a wrong password fails and closes.
    let mut w = Wire::connect(s.port);
    let hs = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let r: SaslHandshakeResponse = w.call(ApiKey::SaslHandshake, 1, &hs);
    assert_eq!(r.error_code, 0);
    let r: SaslAuthenticateResponse = w.call(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0bob\0nope")),
    );
    assert_eq!(r.error_code, 58, "SASL_AUTHENTICATION_FAILED");
    assert!(r.error_message.is_some());
    assert!(w.closed_by_server());

    // The right password: authenticated, then served; a second handshake is ILLEGAL_SASL_STATE.
    let mut w = Wire::connect(s.port);
    let _: SaslHandshakeResponse = w.call(ApiKey::SaslHandshake, 1, &hs);
    let r: SaslAuthenticateResponse = w.call(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0bob\0builder")),
    );
    assert_eq!(r.error_code, 0);
    let m: MetadataResponse = w.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(!m.brokers.is_empty());
    let r: SaslHandshakeResponse = w.call(ApiKey::SaslHandshake, 1, &hs);
    assert_eq!(r.error_code, 34);
}

/// A JoinGroup/SyncGroup answer goes out only once the group state it reports is committed:
/// right after each SyncGroup answer the assignment record is in the log (ten groups, so an
/// answer that races its append is caught), and after a kill -9 the moment the last answer
/// arrives, every member's generation is still valid (Heartbeat succeeds) with its assignment.
#[test]
fn group_join_and_sync_answers_survive_kill_9() {
    use join_group_request::JoinGroupRequestProtocol;
    use sync_group_request::SyncGroupRequestAssignment;
    let mut s = Server::start_with(&[("CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")]);
    let group = |i: usize| StrBytes::from_string(format!("kill9-group-{i}"));
    // The coordinator may still be replaying its partition (COORDINATOR_LOAD_IN_PROGRESS).
    let coordinator_ready = |w: &mut Wire, group: StrBytes| {
        let req = FindCoordinatorRequest::default()
            .with_key(group)
            .with_key_type(0);
        for _ in 0..200 {
            let r: FindCoordinatorResponse = w.call(ApiKey::FindCoordinator, 3, &req);
            if r.error_code == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no coordinator");
    };
    let assignment = Bytes::from_static(b"partitions 0-3");
    let mut w = Wire::connect(s.port);
    let mut members = Vec::new();
    for i in 0..10 {
        coordinator_ready(&mut w, group(i));
        let join = JoinGroupRequest::default()
            .with_group_id(GroupId(group(i)))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"meta"))]);
        let j: JoinGroupResponse = w.call(ApiKey::JoinGroup, 3, &join);
        assert_eq!(j.error_code, 0, "{j:?}");
        assert_eq!(j.leader, j.member_id, "the only member leads");
        let logged_before_sync = consumer_offsets_end(&mut w);
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(group(i)))
            .with_generation_id(j.generation_id)
            .with_member_id(j.member_id.clone())
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(j.member_id.clone())
                .with_assignment(assignment.clone())]);
        let r: SyncGroupResponse = w.call(ApiKey::SyncGroup, 3, &sync);
        assert_eq!((r.error_code, &r.assignment), (0, &assignment));
        assert!(
            consumer_offsets_end(&mut w) > logged_before_sync,
            "group {i}: SyncGroup answered before its group metadata was committed"
        );
        members.push((j.generation_id, j.member_id));
    }
    s.kill9();
    s.restart();

    let mut w = Wire::connect(s.port);
    for (i, (generation, member)) in members.into_iter().enumerate() {
        coordinator_ready(&mut w, group(i));
        let hb = HeartbeatRequest::default()
            .with_group_id(GroupId(group(i)))
            .with_generation_id(generation)
            .with_member_id(member);
        let mut code = -1;
        for _ in 0..200 {
            let h: HeartbeatResponse = w.call(ApiKey::Heartbeat, 3, &hb);
            code = h.error_code;
            if code != 14 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(code, 0, "group {i}: generation {generation} forgotten");
        let d: DescribeGroupsResponse = w.call(
            ApiKey::DescribeGroups,
            3,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(group(i))]),
        );
        let g = &d.groups[0];
        assert_eq!(g.group_state.as_str(), "Stable", "{g:?}");
        assert_eq!(g.members.len(), 1, "{g:?}");
        assert_eq!(g.members[0].member_assignment, assignment);
    }
}

/// Sum of the end offsets of all `__consumer_offsets` partitions.
fn consumer_offsets_end(w: &mut Wire) -> i64 {
    use list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let topic = topic_name("__consumer_offsets");
    let md: MetadataResponse = w.call(
        ApiKey::Metadata,
        9,
        &MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(topic.clone())),
        ])),
    );
    let n = md.topics[0].partitions.len() as i32;
    assert!(n > 0, "{md:?}");
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic)
            .with_partitions(
                (0..n)
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(-1)
                    })
                    .collect(),
            )]);
    let r: ListOffsetsResponse = w.call(ApiKey::ListOffsets, 1, &req);
    r.topics[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, 0, "{p:?}");
            p.offset
        })
        .sum()
}
