//! Config tests: defaults, both guide file formats (verbatim fixtures in
//! `testdata/`), env precedence, collected errors, unknown keys, validation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;

fn env_from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/config/testdata")
        .join(name)
}

fn keys_of(issues: &[ConfigIssue]) -> Vec<&str> {
    issues.iter().map(|i| i.key.as_str()).collect()
}

fn load_err(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<ConfigIssue> {
    Config::load_str(text, env)
        .expect_err("expected load errors")
        .issues
}

#[test]
fn defaults_match_the_reference_and_kafka() {
    let c = Config::default();
    assert_eq!(c.server.bind_addr, "0.0.0.0");
    assert_eq!(c.server.kafka_port, 9092);
    assert_eq!(c.server.data_dir, PathBuf::from("./data"));
    assert_eq!(c.server.http_port, 8080);
    assert_eq!(c.server.cores, Cores::All);
    assert!(c.broker.auto_create_topics_enable);
    assert_eq!(c.broker.num_partitions, 1);
    assert_eq!(c.broker.message_max_bytes, 1_048_588);
    assert_eq!(c.broker.log_retention_ms, 604_800_000);
    assert_eq!(c.broker.log_retention_bytes, -1);
    assert_eq!(c.broker.offsets_topic_num_partitions, 50);
    assert_eq!(c.broker.group_initial_rebalance_delay_ms, 3000);
    assert_eq!(c.broker.group_min_session_timeout_ms, 6000);
    assert_eq!(c.broker.group_max_session_timeout_ms, 1_800_000);
    assert!(!c.cluster.enabled);
    assert_eq!(c.cluster.discovery_mode, DiscoveryMode::Static);
    assert_eq!(c.cluster.raft.election_timeout_ms, 200);
    assert_eq!(c.cluster.raft.heartbeat_interval_ms, 20);
    assert_eq!(c.cluster.raft.max_payload_entries, 1000);
    assert_eq!(c.cluster.raft.snapshot_log_size_threshold, 100_000);
    assert_eq!(c.cluster.raft.snapshot_policy, SnapshotPolicy::LogSize);
    assert_eq!(c.cluster.raft.snapshot_interval_secs, 3600);
    assert_eq!(c.cluster.raft.log_compaction_threshold, 50_000);
    assert!(c.cluster.raft.log_compaction_enabled);
    assert_eq!(c.cluster.raft.install_snapshot_timeout_secs, 300);
    assert_eq!(c.cluster.raft.max_snapshot_chunk_size, 1_048_576);
    assert!(c.cluster.raft.enable_pipeline);
    assert_eq!(c.cluster.raft.max_in_flight, 1000);
    assert_eq!(c.cluster.network.max_message_size, 4_194_304);
    assert_eq!(c.cluster.network.connect_timeout_ms, 5000);
    assert_eq!(c.cluster.network.request_timeout_ms, 10_000);
    assert_eq!(c.cluster.network.keepalive_interval_secs, 10);
    assert_eq!(c.cluster.network.keepalive_timeout_secs, 30);
    assert!(!c.cluster.network.tls_enabled);
    assert_eq!(c.cluster.storage.wal_sync_mode, WalSyncMode::Periodic);
    assert_eq!(c.cluster.storage.wal_sync_interval_ms, 10);
    assert_eq!(c.cluster.storage.wal_segment_size, 268_435_456);
    assert_eq!(
        c.cluster.storage.snapshot_compression,
        SnapshotCompression::Zstd
    );
    assert_eq!(c.cluster.storage.snapshot_compression_level, 3);
    assert_eq!(c.cluster.isr.max_lag_ms, 10_000);
    // Reference: wal_dir default "./data/wal", snapshot_dir "./data/snapshots".
    assert_eq!(c.wal_dir(), PathBuf::from("./data/wal"));
    assert_eq!(c.snapshot_dir(), PathBuf::from("./data/snapshots"));
    // Reference: node_addr default "0.0.0.0:9093" = Kafka port + 1.
    assert_eq!(c.raft_listen_addr(), "0.0.0.0:9093");
    assert_eq!(c.validate(), vec![], "defaults must be valid");
}

#[test]
fn empty_file_and_no_env_gives_defaults() {
    let c = Config::load_str("", &no_env).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.origin("server.kafka_port"), Origin::Default);
}

#[test]
fn registry_env_names_and_keys_are_unique_and_canonical() {
    let mut envs: Vec<&str> = KEYS.iter().map(|k| k.env).collect();
    let mut keys: Vec<&str> = KEYS.iter().map(|k| k.key).collect();
    envs.sort_unstable();
    keys.sort_unstable();
    let n = KEYS.len();
    envs.dedup();
    keys.dedup();
    assert_eq!(envs.len(), n, "duplicate env var in the registry");
    assert_eq!(keys.len(), n, "duplicate key in the registry");
    for k in KEYS {
        assert!(k.env.starts_with("CHRONIK_"), "{}", k.env);
        assert_ne!(k.env, ENV_CONFIG_FILE);
        assert_ne!(k.env, ENV_CLUSTER_CONFIG_FILE);
        // Every key's default renders and re-parses to the same value.
        let mut c = Config::default();
        let text = k.value_of(&c);
        if !text.is_empty() {
            (k.set_text)(&mut c, &text).unwrap_or_else(|e| panic!("{}: {e}", k.key));
            assert_eq!(k.value_of(&c), text, "{}", k.key);
        }
    }
}

/// `docs/configuration.md` embeds [`keys::reference_table`] verbatim.
/// Regenerate with `cargo test -p chronik-core print_reference_table --
/// --ignored --nocapture` after adding a key.
#[test]
fn every_key_is_documented() {
    let doc = include_str!("../../../docs/configuration.md");
    assert!(
        doc.contains(&keys::reference_table()),
        "docs/configuration.md's key table is stale; regenerate it"
    );
}

#[test]
#[ignore = "prints the docs table"]
fn print_reference_table() {
    print!("{}", keys::reference_table());
}

#[test]
fn reference_complete_example_loads_verbatim() {
    let c = Config::load(Some(&fixture("reference_complete.toml")), &no_env).unwrap();
    assert!(c.cluster.enabled);
    assert_eq!(c.cluster.node_id, 1);
    assert_eq!(c.cluster.node_addr.as_deref(), Some("0.0.0.0:9093"));
    assert_eq!(
        c.cluster.advertised_node_addr.as_deref(),
        Some("node1.example.com:9093")
    );
    assert_eq!(c.cluster.seed_nodes.len(), 2);
    assert_eq!(c.cluster.seed_nodes[0].node_id, 2);
    assert_eq!(c.cluster.seed_nodes[0].host, "node2.example.com");
    assert_eq!(c.cluster.seed_nodes[0].port, 9093);
    assert_eq!(
        c.cluster.network.tls_ca_path,
        Some(PathBuf::from("/etc/chronik/certs/ca.crt"))
    );
    assert_eq!(c.wal_dir(), PathBuf::from("/var/lib/chronik/wal"));
    assert_eq!(
        c.snapshot_dir(),
        PathBuf::from("/var/lib/chronik/snapshots")
    );
    let peers = c.raft_peers();
    assert_eq!(
        peers
            .iter()
            .map(|p| p.raft_addr.as_str())
            .collect::<Vec<_>>(),
        ["node2.example.com:9093", "node3.example.com:9093"]
    );
    assert_eq!(c.raft_advertised_addr(), "node1.example.com:9093");
    // 3 voters: replication factor 1 default is fine; TLS off so no file checks.
    assert_eq!(c.validate(), vec![]);
    assert!(matches!(c.origin("cluster.node_id"), Origin::File { .. }));
}

#[test]
fn reference_profiles_load() {
    for name in [
        "reference_dev_profile.toml",
        "reference_high_throughput_profile.toml",
        "reference_multi_dc_profile.toml",
        "reference_production_profile.toml",
    ] {
        let c =
            Config::load(Some(&fixture(name)), &no_env).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(c.cluster.enabled, "{name}");
        let issues = c.validate();
        if c.cluster.network.tls_enabled {
            // The guide's certificate paths do not exist here: reported, by key.
            let keys = keys_of(&issues);
            assert!(
                keys.contains(&"cluster.network.tls_cert_path"),
                "{name}: {issues:?}"
            );
            assert!(
                keys.contains(&"cluster.network.tls_key_path"),
                "{name}: {issues:?}"
            );
            assert!(
                keys.contains(&"cluster.network.tls_ca_path"),
                "{name}: {issues:?}"
            );
            assert_eq!(issues.len(), 3, "{name}: {issues:?}");
        } else {
            assert_eq!(issues, vec![], "{name}");
        }
    }
    let dev = Config::load(Some(&fixture("reference_dev_profile.toml")), &no_env).unwrap();
    assert_eq!(dev.cluster.raft.election_timeout_ms, 150);
    assert!(!dev.cluster.raft.enable_pipeline);
    assert_eq!(
        dev.cluster.storage.snapshot_compression,
        SnapshotCompression::None
    );
    assert_eq!(dev.wal_dir(), PathBuf::from("./data/dev/wal"));
}

#[test]
fn deployment_guide_flat_cluster_file_loads_via_env() {
    let path = fixture("deploy_node2_cluster.toml");
    let env = env_from(&[
        ("CHRONIK_CLUSTER_CONFIG", path.to_str().unwrap()),
        ("CHRONIK_ADVERTISED_ADDR", "node2.example.com"),
        ("CHRONIK_DATA_DIR", "/data/chronik/node2"),
    ]);
    let c = Config::load_str("", &env).unwrap();
    assert!(c.cluster.enabled);
    assert_eq!(c.cluster.node_id, 2);
    assert_eq!(c.broker.default_replication_factor, 3);
    assert_eq!(c.broker.min_insync_replicas, 2);
    assert_eq!(c.cluster.peers.len(), 3);
    assert_eq!(
        c.server.advertised_addr.as_deref(),
        Some("node2.example.com")
    );
    assert_eq!(c.advertised_port(), 9092);
    assert_eq!(c.wal_dir(), PathBuf::from("/data/chronik/node2/wal"));
    assert_eq!(c.raft_listen_addr(), "0.0.0.0:9093");
    assert_eq!(c.raft_advertised_addr(), "node2.example.com:9093");
    let peers = c.raft_peers();
    assert_eq!(peers.len(), 2);
    assert_eq!(peers[0].node_id, 1);
    assert_eq!(peers[0].raft_addr, "node1.example.com:9093");
    assert_eq!(
        peers[0].kafka_addr.as_deref(),
        Some("node1.example.com:9092")
    );
    assert_eq!(c.validate(), vec![]);
    assert_eq!(
        c.origin("broker.default_replication_factor"),
        Origin::File {
            path: path.clone(),
            written: "replication_factor".to_string()
        }
    );
}

#[test]
fn deployment_guide_complete_cluster_file_maps_raft_and_isr() {
    let c = Config::load(Some(&fixture("deploy_complete_cluster.toml")), &no_env).unwrap();
    assert_eq!(c.cluster.raft.election_timeout_ms, 300);
    assert_eq!(c.cluster.raft.heartbeat_interval_ms, 30);
    assert_eq!(c.cluster.raft.snapshot_log_size_threshold, 10_000);
    assert_eq!(c.cluster.isr.max_lag_ms, 10_000);
    assert_eq!(c.cluster.isr.max_lag_entries, 10_000);
    assert_eq!(c.cluster.isr.check_interval_ms, 1000);
    assert_eq!(c.validate(), vec![]);
    // The same file through CHRONIK_CLUSTER_CONFIG on top of a chronik.toml.
    let env = env_from(&[(
        "CHRONIK_CLUSTER_CONFIG",
        fixture("deploy_node1_cluster.toml").to_str().unwrap(),
    )]);
    let c = Config::load_str("[server]\nkafka_port = 19092\n", &env).unwrap();
    assert_eq!(c.server.kafka_port, 19092);
    assert_eq!(c.cluster.node_id, 1);
}

#[test]
fn scenario_bootstrap_node_file_loads() {
    // raft-configuration-reference.md, Scenario 1, node1.toml verbatim.
    let text = r#"[cluster]
node_id = 1
node_addr = "0.0.0.0:9093"
advertised_node_addr = "node1:9093"
enabled = true
discovery_mode = "static"
seed_nodes = []  # Empty for bootstrap
"#;
    let c = Config::load_str(text, &no_env).unwrap();
    assert!(c.cluster.seed_nodes.is_empty());
    assert!(c.raft_peers().is_empty());
    assert_eq!(c.validate(), vec![]);
}

#[test]
fn env_overrides_file_overrides_default() {
    let text = "[cluster]\nnode_id = 1\n[cluster.raft]\nelection_timeout_ms = 500\n";
    let env = env_from(&[
        ("CHRONIK_NODE_ID", "2"),
        ("CHRONIK_HEARTBEAT_INTERVAL_MS", "40"),
        ("CHRONIK_SEED_NODES", "1@h1:9093, 3@h3:9093"),
        ("CHRONIK_WAL_SYNC_MODE", "always"),
        ("CHRONIK_KAFKA_PORT", "19092"),
        ("CHRONIK_BIND_ADDR", "127.0.0.1"),
        ("CHRONIK_ADVERTISED_PORT", "29092"),
        ("CHRONIK_CORES", "0-1"),
        ("CHRONIK_ADVERTISED_ADDR", ""), // empty = unset
    ]);
    let c = Config::load_str(text, &env).unwrap();
    assert_eq!(c.cluster.node_id, 2, "env beats file");
    assert_eq!(
        c.cluster.raft.election_timeout_ms, 500,
        "file beats default"
    );
    assert_eq!(c.cluster.raft.heartbeat_interval_ms, 40);
    assert_eq!(c.cluster.seed_nodes.len(), 2);
    assert_eq!(c.cluster.seed_nodes[1].to_string(), "3@h3:9093");
    assert_eq!(c.cluster.storage.wal_sync_mode, WalSyncMode::Always);
    assert_eq!(c.kafka_listen_addr(), "127.0.0.1:19092");
    assert_eq!(c.advertised_host(), "127.0.0.1");
    assert_eq!(c.advertised_port(), 29092);
    assert_eq!(c.server.cores, Cores::List(vec![0, 1]));
    assert_eq!(c.raft_listen_addr(), "127.0.0.1:19093");
    assert_eq!(c.origin("cluster.node_id"), Origin::Env("CHRONIK_NODE_ID"));
    assert_eq!(c.origin("server.advertised_addr"), Origin::Default);
}

#[test]
fn config_file_lookup_uses_chronik_config_env() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("node1.toml");
    std::fs::write(&p, "[cluster]\nnode_id = 7\n").unwrap();
    let env = env_from(&[("CHRONIK_CONFIG", p.to_str().unwrap())]);
    let c = Config::load(None, &env).unwrap();
    assert_eq!(c.cluster.node_id, 7);
    // An explicit path wins over CHRONIK_CONFIG.
    let q = dir.path().join("other.toml");
    std::fs::write(&q, "[cluster]\nnode_id = 8\n").unwrap();
    assert_eq!(Config::load(Some(&q), &env).unwrap().cluster.node_id, 8);
    // A missing file is an error naming the file, not silently defaults.
    let missing = dir.path().join("missing.toml");
    let err = Config::load(Some(&missing), &no_env).unwrap_err();
    assert_eq!(err.issues.len(), 1);
    assert_eq!(err.issues[0].key, missing.display().to_string());
}

#[test]
fn unknown_keys_are_all_reported_with_suggestions() {
    let text = r#"
[cluster]
node_idd = 3
[cluster.raft]
election_timout_ms = 300
heartbeat_interval_ms = 30
[clustre.network]
tls_enabled = false
[server]
totally_unrelated = 1
"#;
    let issues = load_err(text, &no_env);
    let keys = keys_of(&issues);
    assert!(keys.contains(&"cluster.node_idd"), "{issues:?}");
    assert!(
        keys.contains(&"cluster.raft.election_timout_ms"),
        "{issues:?}"
    );
    assert!(keys.contains(&"clustre"), "{issues:?}");
    assert!(keys.contains(&"server.totally_unrelated"), "{issues:?}");
    let typo = issues
        .iter()
        .find(|i| i.key == "cluster.raft.election_timout_ms")
        .unwrap();
    assert!(
        typo.message
            .contains("did you mean `cluster.raft.election_timeout_ms`"),
        "{typo}"
    );
    // heartbeat 30 vs default election 200 is fine: no spurious issue.
    assert_eq!(issues.len(), 4, "{issues:?}");
}

#[test]
fn type_errors_name_the_key_and_loading_continues() {
    let text = r#"
[server]
kafka_port = "9092"
http_port = 70000
[cluster]
node_id = -1
seed_nodes = ["2@node2:9093", "node3:9093", 5]
discovery_mode = "zookeeper"
[cluster.storage]
wal_sync_mode = "sometimes"
snapshot_compression = "lz4"
[cluster.raft]
enable_pipeline = "yes"
"#;
    let issues = load_err(text, &no_env);
    let keys = keys_of(&issues);
    for k in [
        "server.kafka_port",
        "server.http_port",
        "cluster.node_id",
        "cluster.seed_nodes",
        "cluster.discovery_mode",
        "cluster.storage.wal_sync_mode",
        "cluster.storage.snapshot_compression",
        "cluster.raft.enable_pipeline",
    ] {
        assert!(keys.contains(&k), "missing {k} in {issues:?}");
    }
    let port = issues
        .iter()
        .find(|i| i.key == "server.kafka_port")
        .unwrap();
    assert!(port.message.contains("found string \"9092\""), "{port}");
    let seeds = issues
        .iter()
        .find(|i| i.key == "cluster.seed_nodes")
        .unwrap();
    assert!(
        seeds.message.contains("[1]") && seeds.message.contains("[2]"),
        "{seeds}"
    );
    let mode = issues
        .iter()
        .find(|i| i.key == "cluster.storage.wal_sync_mode")
        .unwrap();
    assert!(mode.message.contains("\"always\", \"periodic\""), "{mode}");
}

#[test]
fn bad_env_values_are_reported_with_the_variable() {
    let env = env_from(&[
        ("CHRONIK_NODE_ID", "two"),
        ("CHRONIK_SEED_NODES", "2@node2:9093,3-node3:9093"),
        ("CHRONIK_TLS_ENABLED", "maybe"),
    ]);
    let issues = load_err("", &env);
    assert_eq!(
        keys_of(&issues),
        [
            "cluster.node_id",
            "cluster.seed_nodes",
            "cluster.network.tls_enabled"
        ]
    );
    assert!(issues[0].message.starts_with("CHRONIK_NODE_ID=\"two\""));
}

#[test]
fn invalid_toml_names_the_file_and_line() {
    let issues = load_err("[cluster]\nnode_id = = 1\n", &no_env);
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].key, "<string>");
    assert!(issues[0].message.contains("line 2"), "{}", issues[0]);
}

#[test]
fn key_set_twice_through_aliases_is_reported() {
    let issues = load_err("node_id = 1\n[cluster]\nnode_id = 2\n", &no_env);
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert!(issues[0].message.contains("again"), "{}", issues[0]);
}

#[test]
fn peers_table_errors_are_precise() {
    let text = r#"
[[peers]]
id = 1
addr = "node1:9092"
raft_port = 9093
[[peers]]
id = 2
adr = "node2:9092"
raft_port = 99999
"#;
    let issues = load_err(text, &no_env);
    assert_eq!(issues.len(), 1, "{issues:?}");
    let m = &issues[0].message;
    assert_eq!(issues[0].key, "peers");
    assert!(m.contains("[1].adr: unknown key"), "{m}");
    assert!(m.contains("[1].addr: missing"), "{m}");
    assert!(m.contains("[1].raft_port"), "{m}");
}

#[test]
fn validation_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("server.crt");
    std::fs::write(&cert, "x").unwrap();
    let text = format!(
        r#"
[server]
kafka_port = 9092
http_port = 9092
advertised_addr = "0.0.0.0"
kafka_tls_enabled = true
kafka_tls_cert_path = "{}"
kafka_tls_ca_path = "/nonexistent/ca.pem"
super_users = "User:admin;admin"
[broker]
default_replication_factor = 2
min_insync_replicas = 3
group_min_session_timeout_ms = 10000
group_max_session_timeout_ms = 5000
log_retention_ms = 0
[cluster]
enabled = true
node_id = 70000
discovery_mode = "consul"
seed_nodes = ["2@n2:9093", "2@n2b:9093"]
[cluster.raft]
election_timeout_ms = 100
heartbeat_interval_ms = 100
max_snapshot_chunk_size = 8388608
[cluster.network]
tls_enabled = true
tls_cert_path = "{}"
tls_ca_path = "/nonexistent/ca.crt"
keepalive_interval_secs = 30
keepalive_timeout_secs = 30
[cluster.storage]
wal_segment_size = 1000000
snapshot_compression = "gzip"
wal_sync_interval_ms = 0
"#,
        cert.display(),
        cert.display()
    );
    let c = Config::load_str(&text, &no_env).unwrap();
    let issues = c.validate();
    let keys = keys_of(&issues);
    for k in [
        "server.http_port",
        "server.advertised_addr",
        "broker.min_insync_replicas",
        "broker.group_min_session_timeout_ms",
        "broker.log_retention_ms",
        "cluster.node_id",
        "cluster.discovery_mode",
        "cluster.seed_nodes",
        "cluster.raft.heartbeat_interval_ms",
        "cluster.raft.max_snapshot_chunk_size",
        "cluster.network.tls_key_path",
        "cluster.network.tls_ca_path",
        "server.kafka_tls_key_path",
        "server.kafka_tls_ca_path",
        "server.super_users",
        "cluster.network.keepalive_timeout_secs",
        "cluster.storage.wal_segment_size",
        "cluster.storage.snapshot_compression",
        "cluster.storage.wal_sync_interval_ms",
    ] {
        assert!(keys.contains(&k), "missing {k} in:\n{issues:#?}");
    }
    // The cert exists, so it is not reported.
    assert!(
        !keys.contains(&"cluster.network.tls_cert_path")
            && !keys.contains(&"server.kafka_tls_cert_path"),
        "{issues:#?}"
    );
    let hb = issues
        .iter()
        .find(|i| i.key == "cluster.raft.heartbeat_interval_ms")
        .unwrap();
    assert!(hb.message.contains("less than"), "{hb}");
}

#[test]
fn node_id_rules() {
    let mut c = Config::default();
    c.cluster.node_id = 0;
    assert_eq!(keys_of(&c.validate()), ["cluster.node_id"]);
    c.cluster.node_id = 65_536;
    assert_eq!(keys_of(&c.validate()), ["cluster.node_id"]);
    c.cluster.node_id = 65_535;
    assert_eq!(c.validate(), vec![]);
    // Clustering requires node_id to be set explicitly.
    let c = Config::load_str("[cluster]\nenabled = true\n", &no_env).unwrap();
    let issues = c.validate();
    assert_eq!(keys_of(&issues), ["cluster.node_id"]);
    assert!(issues[0].message.contains("required"));
}

#[test]
fn derived_raft_port_must_be_valid_and_distinct() {
    let c = Config::load_str("[server]\nkafka_port = 65535\n", &no_env).unwrap();
    assert_eq!(keys_of(&c.validate()), ["cluster.node_addr"]);
    let c = Config::load_str(
        "[server]\nkafka_port = 9092\n[cluster]\nnode_addr = \"0.0.0.0:9092\"\n",
        &no_env,
    )
    .unwrap();
    assert_eq!(keys_of(&c.validate()), ["cluster.node_addr"]);
}

#[test]
fn replication_factor_checks() {
    // Standalone with RF 3: needs a cluster.
    let c = Config::load_str("[broker]\ndefault_replication_factor = 3\n", &no_env).unwrap();
    assert_eq!(
        keys_of(&c.validate()),
        ["broker.default_replication_factor"]
    );
    // Cluster of 2 known nodes with RF 3.
    let c = Config::load_str(
        "enabled = true\nnode_id = 1\nreplication_factor = 3\nmin_insync_replicas = 2\n\
         [[peers]]\nid = 1\naddr = \"a:9092\"\nraft_port = 9093\n\
         [[peers]]\nid = 2\naddr = \"b:9092\"\nraft_port = 9093\n",
        &no_env,
    )
    .unwrap();
    assert_eq!(
        keys_of(&c.validate()),
        ["broker.default_replication_factor"]
    );
}

#[test]
fn peers_must_include_self_and_be_unique() {
    let c = Config::load_str(
        "enabled = true\nnode_id = 3\n\
         [[peers]]\nid = 1\naddr = \"a:9092\"\nraft_port = 9093\n\
         [[peers]]\nid = 1\naddr = \"b:9092\"\nraft_port = 9093\n",
        &no_env,
    )
    .unwrap();
    let issues = c.validate();
    assert_eq!(
        keys_of(&issues),
        ["cluster.peers", "cluster.peers"],
        "{issues:?}"
    );
    assert!(issues.iter().any(|i| i.message.contains("listed twice")));
    assert!(issues
        .iter()
        .any(|i| i.message.contains("does not list this node")));
}

#[test]
fn load_failure_also_reports_validation_problems() {
    // An unknown key plus an independent semantic problem: both in one run.
    let text = "[cluster.raft]\nelection_timeout_ms = 10\nheartbeat_interval_ms = 50\nbogus = 1\n";
    let issues = load_err(text, &no_env);
    assert_eq!(
        keys_of(&issues),
        ["cluster.raft.bogus", "cluster.raft.heartbeat_interval_ms"]
    );
}

#[test]
fn cli_overrides_win_and_accept_any_key_spelling() {
    let env = env_from(&[("CHRONIK_ADVERTISED_ADDR", "from-env")]);
    let mut c = Config::load_str("", &env).unwrap();
    c.apply_overrides([
        ("server.advertised_addr", "localhost"),
        ("CHRONIK_KAFKA_PORT", "19092"),
        ("replication_factor", "1"),
        ("raft.election_timeout_ms", "400"),
    ])
    .unwrap();
    assert_eq!(c.advertised_host(), "localhost");
    assert_eq!(c.server.kafka_port, 19092);
    assert_eq!(c.cluster.raft.election_timeout_ms, 400);
    assert_eq!(c.origin("server.kafka_port"), Origin::Override);
    let err = c
        .apply_overrides([("server.kafka_prot", "1"), ("server.http_port", "x")])
        .unwrap_err();
    assert_eq!(
        keys_of(&err.issues),
        ["server.kafka_prot", "server.http_port"]
    );
    assert!(err.issues[0]
        .message
        .contains("did you mean `server.kafka_port`"));
}

#[test]
fn cores_forms() {
    let c = Config::load_str("[server]\ncores = 2\n", &no_env).unwrap();
    assert_eq!(c.server.cores, Cores::Count(2));
    let c = Config::load_str("[server]\ncores = [3, 1]\n", &no_env).unwrap();
    assert_eq!(c.server.cores, Cores::List(vec![1, 3]));
    let c = Config::load_str("[server]\ncores = \"0-2,5\"\n", &no_env).unwrap();
    assert_eq!(c.server.cores, Cores::List(vec![0, 1, 2, 5]));
    assert_eq!(
        c.server.cores.resolve(&[0, 1, 2, 3, 4, 5]).unwrap(),
        [0, 1, 2, 5]
    );
    assert!(c.server.cores.resolve(&[0, 1]).is_err());
    assert_eq!(Cores::Count(1).resolve(&[4, 5]).unwrap(), [4]);
    assert!(Cores::Count(3).resolve(&[4, 5]).is_err());
    for bad in [
        "cores = 0",
        "cores = \"2-1\"",
        "cores = [1, 1]",
        "cores = \"x\"",
        "cores = \"0-99999999\"",
    ] {
        let issues = load_err(&format!("[server]\n{bad}\n"), &no_env);
        assert_eq!(keys_of(&issues), ["server.cores"], "{bad}");
    }
}

#[test]
fn seed_node_and_peer_text_forms() {
    let s: SeedNode = "12@[::1]:9093".parse().unwrap();
    assert_eq!(s.host, "::1");
    assert_eq!(s.raft_addr(), "[::1]:9093");
    for bad in [
        "node2:9093",
        "x@h:1",
        "2@h",
        "2@h:0",
        "2@:9093",
        "2@h:65536",
    ] {
        assert!(bad.parse::<SeedNode>().is_err(), "{bad}");
    }
    let p: Peer = "2@node2:9092/9093".parse().unwrap();
    assert_eq!(p.raft_addr().unwrap(), "node2:9093");
    assert_eq!(p.to_string(), "2@node2:9092/9093");
    assert!("2@node2/9093".parse::<Peer>().is_err());
}

#[test]
fn report_lists_each_problem_then_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("chronik.toml");
    std::fs::write(
        &p,
        "[cluster]\nnode_id = 0\ntypo_key = 1\n[cluster.raft]\nheartbeat_interval_ms = 500\n",
    )
    .unwrap();
    let (out, code) = validate_config_report(Some(&p), &no_env);
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with("cluster.typo_key: unknown key"),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("cluster.node_id: ")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("cluster.raft.heartbeat_interval_ms: ")),
        "{out}"
    );
    assert!(lines[3].contains("3 problem(s)"), "{out}");

    std::fs::write(&p, "[server]\nkafka_port = 19092\n").unwrap();
    let (out, code) = validate_config_report(Some(&p), &no_env);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("configuration is valid (1 key(s) from files"),
        "{out}"
    );
    assert!(out.contains("0.0.0.0:19092"), "{out}");

    // Only a cluster file (deployment guide style): the report names it.
    let cluster = fixture("deploy_node1_cluster.toml");
    let env = env_from(&[("CHRONIK_CLUSTER_CONFIG", cluster.to_str().unwrap())]);
    let (out, code) = validate_config_report(None, &env);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("{}: configuration is valid", cluster.display())),
        "{out}"
    );
    assert!(out.contains("2 peer(s)"), "{out}");
}

#[test]
fn oversized_lists_and_strings_are_rejected_before_allocation() {
    let many = vec!["1@h:1"; value::LIST_ENTRIES_MAX + 1].join(",");
    let env = env_from(&[("CHRONIK_SEED_NODES", many.as_str())]);
    assert_eq!(keys_of(&load_err("", &env)), ["cluster.seed_nodes"]);
    let long = "x".repeat(value::STRING_BYTES_MAX + 1);
    let env = env_from(&[("CHRONIK_DATA_DIR", long.as_str())]);
    assert_eq!(keys_of(&load_err("", &env)), ["server.data_dir"]);
}

#[test]
fn http_can_be_disabled_or_moved_for_tests() {
    let env = env_from(&[
        ("CHRONIK_HTTP_PORT", "18080"),
        ("CHRONIK_HTTP_BIND_ADDR", "127.0.0.1"),
    ]);
    let c = Config::load_str("", &env).unwrap();
    assert_eq!(c.http_listen_addr().as_deref(), Some("127.0.0.1:18080"));
    let env = env_from(&[("CHRONIK_HTTP_ENABLED", "false")]);
    let c = Config::load_str("", &env).unwrap();
    assert_eq!(c.http_listen_addr(), None);
}

#[test]
fn profiles_fill_unset_keys_and_explicit_keys_win() {
    // The reference's high-throughput tuning advice, via env.
    let env = env_from(&[
        ("CHRONIK_WAL_PROFILE", "ultra"),
        ("CHRONIK_PRODUCE_PROFILE", "high-throughput"),
    ]);
    let c = Config::load_str("[cluster.storage]\nwal_sync_interval_ms = 20\n", &env).unwrap();
    assert_eq!(
        c.cluster.storage.wal_sync_interval_ms, 20,
        "file beats preset"
    );
    assert_eq!(c.cluster.storage.wal_segment_size, 536_870_912);
    assert_eq!(c.cluster.raft.max_payload_entries, 5000);
    assert_eq!(c.cluster.raft.max_in_flight, 5000);
    assert_eq!(
        c.origin("cluster.raft.max_in_flight"),
        Origin::Profile("broker.produce_profile")
    );
    assert_eq!(c.validate(), vec![]);
    // Switching preset on the command line replaces the previous preset's
    // values but still not explicit ones.
    let mut c = c;
    c.set("CHRONIK_WAL_PROFILE", "durable").unwrap();
    assert_eq!(c.cluster.storage.wal_sync_mode, WalSyncMode::Always);
    assert_eq!(c.cluster.storage.wal_segment_size, 268_435_456);
    assert_eq!(c.cluster.storage.wal_sync_interval_ms, 20);
    // Every preset is valid on its own.
    for name in WalProfile::NAMES {
        let env = env_from(&[("CHRONIK_WAL_PROFILE", name)]);
        assert_eq!(
            Config::load_str("", &env).unwrap().validate(),
            vec![],
            "{name}"
        );
    }
    for name in ProduceProfile::NAMES {
        let env = env_from(&[("CHRONIK_PRODUCE_PROFILE", name)]);
        assert_eq!(
            Config::load_str("", &env).unwrap().validate(),
            vec![],
            "{name}"
        );
    }
    let issues = load_err("", &env_from(&[("CHRONIK_WAL_PROFILE", "fast")]));
    assert_eq!(keys_of(&issues), ["cluster.storage.wal_profile"]);
}
