//! Cross-key validation: every problem, each named by its dotted key.
//!
//! Load-time checks (types, ranges of a single integer type, enum spellings,
//! list formats) already happened while parsing; here are the checks that
//! need more than one key or knowledge of what the broker can do.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use super::model::{Config, NODE_ID_MAX, NODE_ID_MIN};
use super::value::{
    split_host_port, DiscoveryMode, SnapshotCompression, SnapshotPolicy, WalSyncMode,
};
use super::{ConfigIssue, Origin};

/// O_DIRECT alignment the WAL writes with (bytes).
pub const DIRECT_IO_ALIGN_BYTES: u64 = 4096;
// The alignment check masks with `DIRECT_IO_ALIGN_BYTES - 1`.
const _: () = assert!(DIRECT_IO_ALIGN_BYTES.is_power_of_two());
/// Smallest WAL segment / per-partition segment accepted.
pub const SEGMENT_BYTES_MIN: u64 = 1 << 20;
/// Upper bound of `cluster.storage.wal_recycle_segments`.
pub const MAX_RECYCLE_SEGMENTS: u32 = 64;
/// Smallest record batch limit: a v2 batch header alone is 61 bytes.
pub const MESSAGE_MAX_BYTES_MIN: u32 = 61;
/// Largest Raft transport frame accepted (the transport allocates up to this).
pub const RAFT_MESSAGE_SIZE_MAX: u64 = 1 << 30;
/// Largest per-follower in-flight window (a bounded queue per follower).
pub const MAX_IN_FLIGHT_MAX: u64 = 100_000;
/// Smallest registered I/O memory glommio uses (it rounds smaller up to this).
pub const IO_MEMORY_BYTES_MIN: u64 = 64 << 10;

/// TLS settings `{prefix}tls_cert_path`, `tls_key_path`, `tls_ca_path`: with TLS on, the
/// certificate and key are required and every named file must exist.
fn check_tls(v: &mut Issues, prefix: &str, enabled: bool, paths: [&Option<std::path::PathBuf>; 3]) {
    if !enabled {
        return;
    }
    for (i, (name, path)) in ["tls_cert_path", "tls_key_path", "tls_ca_path"]
        .into_iter()
        .zip(paths)
        .enumerate()
    {
        let key = format!("{prefix}{name}");
        match path {
            None if i < 2 => v.push(&key, format!("required when {prefix}tls_enabled = true")),
            Some(p) if !p.is_file() => v.push(
                &key,
                format!("file {} does not exist or is not a file", p.display()),
            ),
            _ => {}
        }
    }
}

/// The principals of `server.super_users`, split at `;` or `,`, blanks dropped.
pub fn super_users(list: &str) -> impl Iterator<Item = &str> {
    list.split([';', ','])
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// The `user:password` entries of `server.sasl_bootstrap_users` (split at the first ':'), `None`
/// for a malformed entry. Passwords cannot contain ','.
pub fn sasl_users(list: &str) -> Vec<Option<(String, String)>> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (u, p) = e.split_once(':')?;
            (!u.is_empty() && !p.is_empty()).then(|| (u.to_string(), p.to_string()))
        })
        .collect()
}

fn wildcard(host: &str) -> bool {
    matches!(host, "0.0.0.0" | "::" | "")
}

struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn push(&mut self, key: &str, message: String) {
        self.0.push(ConfigIssue::new(key, message));
    }
    fn check(&mut self, ok: bool, key: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.push(key, message());
        }
    }
    fn positive(&mut self, value: u64, key: &str) {
        self.check(value > 0, key, || "must be greater than 0".to_string());
    }
}

impl Config {
    /// Every problem of this configuration, each with its dotted key; empty
    /// means valid. Checks files named by TLS keys exist (when TLS is on).
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut v = Issues(Vec::new());
        self.validate_server(&mut v);
        self.validate_broker(&mut v);
        self.validate_cluster(&mut v);
        self.validate_raft(&mut v);
        self.validate_network(&mut v);
        self.validate_storage(&mut v);
        self.validate_isr(&mut v);
        v.0
    }

    fn validate_server(&self, v: &mut Issues) {
        let s = &self.server;
        v.check(
            !s.bind_addr.is_empty() && !s.bind_addr.contains(char::is_whitespace),
            "server.bind_addr",
            || format!("{:?} is not a host or IP address", s.bind_addr),
        );
        v.check(s.kafka_port != 0, "server.kafka_port", || {
            "must be 1..=65535 (clients need a fixed port)".to_string()
        });
        if let Some(a) = &s.advertised_addr {
            v.check(!wildcard(a) && a != "[::]", "server.advertised_addr", || {
                format!("{a:?} is a wildcard address clients cannot connect to; advertise a host name or IP")
            });
            if !a.starts_with('[') && a.matches(':').count() == 1 {
                v.push(
                    "server.advertised_addr",
                    format!("{a:?} includes a port; give only the host and set server.advertised_port (CHRONIK_ADVERTISED_PORT)"),
                );
            }
        }
        v.check(
            s.advertised_port != Some(0),
            "server.advertised_port",
            || "must be 1..=65535".to_string(),
        );
        v.check(
            !s.data_dir.as_os_str().is_empty(),
            "server.data_dir",
            || "must not be empty".to_string(),
        );
        if s.http_enabled {
            v.check(s.http_port != 0, "server.http_port", || {
                "must be 1..=65535 (or set server.http_enabled = false)".to_string()
            });
            if s.http_port == s.kafka_port && binds_overlap(&s.http_bind_addr, &s.bind_addr) {
                v.push(
                    "server.http_port",
                    format!("{} is also server.kafka_port; pick another port, or set server.http_enabled = false and keep server.http_on_kafka_port = true", s.http_port),
                );
            }
        }
        v.check(
            s.io_memory_bytes == 0 || s.io_memory_bytes >= IO_MEMORY_BYTES_MIN,
            "server.io_memory_bytes",
            || format!("must be 0 (fit RLIMIT_MEMLOCK) or at least {IO_MEMORY_BYTES_MIN}"),
        );
        v.check(
            s.socket_request_max_bytes >= self.broker.message_max_bytes,
            "server.socket_request_max_bytes",
            || format!(
                "{} is smaller than broker.message_max_bytes ({}): a maximal batch could never arrive",
                s.socket_request_max_bytes, self.broker.message_max_bytes
            ),
        );
        for name in s.sasl_mechanisms.split(',').map(str::trim) {
            v.check(
                matches!(name, "" | "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"),
                "server.sasl_mechanisms",
                || format!("unknown SASL mechanism {name:?} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"),
            );
        }
        for (i, pair) in sasl_users(&s.sasl_bootstrap_users.0)
            .into_iter()
            .enumerate()
        {
            v.check(pair.is_some(), "server.sasl_bootstrap_users", || {
                format!(
                    "entry {} is not user:password with a non-empty user and password",
                    i + 1
                )
            });
        }
        for p in super_users(&s.super_users) {
            v.check(
                crate::acl::parse_principal(p).is_ok(),
                "server.super_users",
                || format!("{p:?} is not a principal of the form Type:name (User:admin)"),
            );
        }
        check_tls(
            v,
            "server.kafka_",
            s.kafka_tls_enabled,
            [
                &s.kafka_tls_cert_path,
                &s.kafka_tls_key_path,
                &s.kafka_tls_ca_path,
            ],
        );
        v.positive(u64::from(s.max_connections), "server.max_connections");
        v.positive(s.connections_max_idle_ms, "server.connections_max_idle_ms");
    }

    fn validate_broker(&self, v: &mut Issues) {
        let b = &self.broker;
        v.positive(u64::from(b.num_partitions), "broker.num_partitions");
        v.positive(
            u64::from(b.default_replication_factor),
            "broker.default_replication_factor",
        );
        v.positive(
            u64::from(b.min_insync_replicas),
            "broker.min_insync_replicas",
        );
        v.check(
            b.min_insync_replicas <= b.default_replication_factor,
            "broker.min_insync_replicas",
            || format!(
                "{} is greater than broker.default_replication_factor ({}): acks=all produce to a new topic could never succeed",
                b.min_insync_replicas, b.default_replication_factor
            ),
        );
        let voters = self.voter_count();
        v.check(
            u64::from(b.default_replication_factor) <= voters as u64,
            "broker.default_replication_factor",
            || {
                if self.cluster.enabled {
                    format!(
                        "{} is more than the {voters} node(s) known from cluster.peers / cluster.seed_nodes",
                        b.default_replication_factor
                    )
                } else {
                    format!(
                        "{} needs a cluster; set cluster.enabled = true with peers, or use 1 for a standalone node",
                        b.default_replication_factor
                    )
                }
            },
        );
        v.check(
            b.message_max_bytes >= MESSAGE_MAX_BYTES_MIN,
            "broker.message_max_bytes",
            || format!("must be at least {MESSAGE_MAX_BYTES_MIN} (a record batch header)"),
        );
        v.check(b.fetch_max_bytes >= 1024, "broker.fetch_max_bytes", || {
            "must be at least 1024".to_string()
        });
        v.check(
            b.log_retention_ms == -1 || b.log_retention_ms > 0,
            "broker.log_retention_ms",
            || {
                format!(
                    "{} is invalid: use -1 (keep forever) or a positive number",
                    b.log_retention_ms
                )
            },
        );
        v.check(
            b.log_retention_bytes >= -1,
            "broker.log_retention_bytes",
            || {
                format!(
                    "{} is invalid: use -1 (no limit) or a size in bytes",
                    b.log_retention_bytes
                )
            },
        );
        v.check(
            b.log_segment_bytes >= SEGMENT_BYTES_MIN,
            "broker.log_segment_bytes",
            || format!("must be at least {SEGMENT_BYTES_MIN}"),
        );
        v.positive(
            b.log_retention_check_interval_ms,
            "broker.log_retention_check_interval_ms",
        );
        v.positive(
            u64::from(b.offsets_topic_num_partitions),
            "broker.offsets_topic_num_partitions",
        );
        v.positive(
            u64::from(b.transaction_state_log_num_partitions),
            "broker.transaction_state_log_num_partitions",
        );
        v.positive(
            b.transaction_max_timeout_ms,
            "broker.transaction_max_timeout_ms",
        );
        v.positive(
            u64::from(b.offsets_topic_replication_factor),
            "broker.offsets_topic_replication_factor",
        );
        v.check(
            b.group_min_session_timeout_ms <= b.group_max_session_timeout_ms,
            "broker.group_min_session_timeout_ms",
            || {
                format!(
                    "{} is greater than broker.group_max_session_timeout_ms ({})",
                    b.group_min_session_timeout_ms, b.group_max_session_timeout_ms
                )
            },
        );
        v.check(
            b.group_consumer_heartbeat_interval_ms >= 1
                && b.group_consumer_heartbeat_interval_ms < b.group_consumer_session_timeout_ms
                && b.group_consumer_session_timeout_ms <= i32::MAX as u64,
            "broker.group_consumer_heartbeat_interval_ms",
            || {
                format!(
                    "{} must be at least 1 and less than broker.group_consumer_session_timeout_ms ({})",
                    b.group_consumer_heartbeat_interval_ms, b.group_consumer_session_timeout_ms
                )
            },
        );
        v.check(
            b.group_max_size >= 1 && b.group_max_size <= i32::MAX as u32,
            "broker.group_max_size",
            || format!("must be 1..={}", i32::MAX),
        );
        v.positive(
            b.transactional_id_expiration_ms,
            "broker.transactional_id_expiration_ms",
        );
        v.positive(
            b.producer_id_expiration_ms,
            "broker.producer_id_expiration_ms",
        );
    }

    /// Voters this node knows of: itself plus distinct peer / seed ids.
    fn voter_count(&self) -> usize {
        if !self.cluster.enabled {
            return 1;
        }
        1 + self.raft_peers().len()
    }

    fn validate_cluster(&self, v: &mut Issues) {
        let c = &self.cluster;
        v.check(
            (NODE_ID_MIN..=NODE_ID_MAX).contains(&c.node_id),
            "cluster.node_id",
            || {
                format!(
                    "{} is out of range: must be {NODE_ID_MIN}-{NODE_ID_MAX}",
                    c.node_id
                )
            },
        );
        if c.enabled && self.origin("cluster.node_id") == Origin::Default {
            v.push(
                "cluster.node_id",
                "required when clustering is enabled (unique per node; or CHRONIK_NODE_ID)"
                    .to_string(),
            );
        }
        for (key, addr) in [
            ("cluster.node_addr", &c.node_addr),
            ("cluster.advertised_node_addr", &c.advertised_node_addr),
        ] {
            if let Some(a) = addr {
                match split_host_port(a) {
                    Err(e) => v.push(key, e),
                    Ok((host, _)) if key == "cluster.advertised_node_addr" && wildcard(&host) => v
                        .push(
                            key,
                            format!("{a:?} is a wildcard address peers cannot connect to"),
                        ),
                    Ok(_) => {}
                }
            }
        }
        v.check(
            c.discovery_mode == DiscoveryMode::Static,
            "cluster.discovery_mode",
            || format!("{:?} discovery is not implemented yet; use \"static\" with seed_nodes or [[peers]]", c.discovery_mode.as_str()),
        );
        for (key, set, mode) in [
            (
                "cluster.dns_domain",
                c.dns_domain.is_some(),
                DiscoveryMode::Dns,
            ),
            ("cluster.dns_port", c.dns_port.is_some(), DiscoveryMode::Dns),
            (
                "cluster.consul_addr",
                c.consul_addr.is_some(),
                DiscoveryMode::Consul,
            ),
            (
                "cluster.consul_service",
                c.consul_service.is_some(),
                DiscoveryMode::Consul,
            ),
        ] {
            v.check(!set || c.discovery_mode == mode, key, || {
                format!(
                    "only used with cluster.discovery_mode = {:?}",
                    mode.as_str()
                )
            });
        }
        let mut raft_addr_by_id: BTreeMap<u64, String> = BTreeMap::new();
        for (i, s) in c.seed_nodes.iter().enumerate() {
            let key = "cluster.seed_nodes";
            v.check(
                (NODE_ID_MIN..=NODE_ID_MAX).contains(&s.node_id),
                key,
                || format!("[{i}] {s}: node id must be {NODE_ID_MIN}-{NODE_ID_MAX}"),
            );
            match raft_addr_by_id.entry(s.node_id) {
                Entry::Occupied(_) => {
                    v.push(key, format!("[{i}] {s}: node {} listed twice", s.node_id))
                }
                Entry::Vacant(e) => {
                    e.insert(s.raft_addr());
                }
            }
        }
        let mut peer_ids = Vec::new();
        for (i, p) in c.peers.iter().enumerate() {
            let key = "cluster.peers";
            v.check((NODE_ID_MIN..=NODE_ID_MAX).contains(&p.id), key, || {
                format!("[{i}] id {} must be {NODE_ID_MIN}-{NODE_ID_MAX}", p.id)
            });
            v.check(p.raft_port != 0, key, || {
                format!("[{i}] raft_port must be 1..=65535")
            });
            if peer_ids.contains(&p.id) {
                v.push(key, format!("[{i}] id {} listed twice", p.id));
                continue;
            }
            peer_ids.push(p.id);
            match p.raft_addr() {
                Err(e) => v.push(key, format!("[{i}] addr: {e}")),
                Ok(ra) => {
                    if let Some(seed_addr) = raft_addr_by_id.get(&p.id) {
                        if *seed_addr != ra {
                            v.push(
                                key,
                                format!("[{i}] node {} has Raft address {ra} here but {seed_addr} in cluster.seed_nodes", p.id),
                            );
                        }
                    }
                }
            }
        }
        if c.enabled && !c.peers.is_empty() && !peer_ids.contains(&c.node_id) {
            v.push(
                "cluster.peers",
                format!("does not list this node (cluster.node_id = {}); every node's [[peers]] must list all nodes including itself", c.node_id),
            );
        }
        // Listener port clashes on this node.
        let raft_listen = split_host_port(&self.raft_listen_addr());
        if let (Err(e), None) = (&raft_listen, &c.node_addr) {
            // Derived from kafka_port + 1 (65535 + 1 wraps to 0).
            v.push(
                "cluster.node_addr",
                format!("derived Raft address is invalid ({e}); set it"),
            );
        }
        if let Ok((rhost, rport)) = raft_listen {
            if rport == self.server.kafka_port && binds_overlap(&rhost, &self.server.bind_addr) {
                v.push(
                    "cluster.node_addr",
                    format!("Raft port {rport} is also server.kafka_port"),
                );
            }
            if self.server.http_enabled
                && rport == self.server.http_port
                && binds_overlap(&rhost, &self.server.http_bind_addr)
            {
                v.push(
                    "cluster.node_addr",
                    format!("Raft port {rport} is also server.http_port"),
                );
            }
        }
    }

    fn validate_raft(&self, v: &mut Issues) {
        let r = &self.cluster.raft;
        v.positive(r.election_timeout_ms, "cluster.raft.election_timeout_ms");
        v.positive(
            r.heartbeat_interval_ms,
            "cluster.raft.heartbeat_interval_ms",
        );
        v.check(
            r.heartbeat_interval_ms < r.election_timeout_ms,
            "cluster.raft.heartbeat_interval_ms",
            || {
                format!(
                "{} must be less than cluster.raft.election_timeout_ms ({}); typically 1/10 of it",
                r.heartbeat_interval_ms, r.election_timeout_ms
            )
            },
        );
        v.positive(r.max_payload_entries, "cluster.raft.max_payload_entries");
        if r.snapshot_policy == SnapshotPolicy::Periodic {
            v.positive(
                r.snapshot_interval_secs,
                "cluster.raft.snapshot_interval_secs",
            );
        }
        if r.snapshot_policy == SnapshotPolicy::LogSize {
            v.positive(
                r.snapshot_log_size_threshold,
                "cluster.raft.snapshot_log_size_threshold",
            );
        }
        if r.log_compaction_enabled {
            v.positive(
                r.log_compaction_threshold,
                "cluster.raft.log_compaction_threshold",
            );
        }
        v.positive(
            r.install_snapshot_timeout_secs,
            "cluster.raft.install_snapshot_timeout_secs",
        );
        v.positive(
            r.max_snapshot_chunk_size,
            "cluster.raft.max_snapshot_chunk_size",
        );
        v.check(
            r.max_snapshot_chunk_size <= self.cluster.network.max_message_size,
            "cluster.raft.max_snapshot_chunk_size",
            || format!(
                "{} is larger than cluster.network.max_message_size ({}): a chunk would not fit in one frame",
                r.max_snapshot_chunk_size, self.cluster.network.max_message_size
            ),
        );
        if r.enable_pipeline {
            v.check(
                (1..=MAX_IN_FLIGHT_MAX).contains(&r.max_in_flight),
                "cluster.raft.max_in_flight",
                || format!("must be 1..={MAX_IN_FLIGHT_MAX}"),
            );
        }
    }

    fn validate_network(&self, v: &mut Issues) {
        let n = &self.cluster.network;
        v.check(
            (1..=RAFT_MESSAGE_SIZE_MAX).contains(&n.max_message_size),
            "cluster.network.max_message_size",
            || format!("must be 1..={RAFT_MESSAGE_SIZE_MAX}"),
        );
        v.positive(n.connect_timeout_ms, "cluster.network.connect_timeout_ms");
        v.positive(n.request_timeout_ms, "cluster.network.request_timeout_ms");
        v.positive(
            n.keepalive_interval_secs,
            "cluster.network.keepalive_interval_secs",
        );
        v.check(
            n.keepalive_interval_secs < n.keepalive_timeout_secs,
            "cluster.network.keepalive_timeout_secs",
            || {
                format!(
                    "{} must be greater than cluster.network.keepalive_interval_secs ({})",
                    n.keepalive_timeout_secs, n.keepalive_interval_secs
                )
            },
        );
        check_tls(
            v,
            "cluster.network.",
            n.tls_enabled,
            [&n.tls_cert_path, &n.tls_key_path, &n.tls_ca_path],
        );
        if n.verify_peer {
            v.check(n.tls_enabled, "cluster.network.verify_peer", || {
                "has no effect unless cluster.network.tls_enabled = true".to_string()
            });
            v.check(
                n.tls_ca_path.is_some(),
                "cluster.network.verify_peer",
                || "needs cluster.network.tls_ca_path to verify peer certificates".to_string(),
            );
        }
    }

    fn validate_storage(&self, v: &mut Issues) {
        let s = &self.cluster.storage;
        if s.wal_sync_mode == WalSyncMode::Periodic {
            v.positive(
                s.wal_sync_interval_ms,
                "cluster.storage.wal_sync_interval_ms",
            );
        }
        v.check(
            s.wal_segment_size >= SEGMENT_BYTES_MIN
                && s.wal_segment_size & (DIRECT_IO_ALIGN_BYTES - 1) == 0,
            "cluster.storage.wal_segment_size",
            || format!(
                "{} must be a multiple of {DIRECT_IO_ALIGN_BYTES} (O_DIRECT) and at least {SEGMENT_BYTES_MIN}",
                s.wal_segment_size
            ),
        );
        v.check(
            s.wal_recycle_segments <= MAX_RECYCLE_SEGMENTS,
            "cluster.storage.wal_recycle_segments",
            || {
                format!(
                    "{} exceeds {MAX_RECYCLE_SEGMENTS} (each spare holds a segment's disk space)",
                    s.wal_recycle_segments
                )
            },
        );
        // A segment must hold the largest batch plus its entry framing.
        v.check(
            s.wal_segment_size >= 2 * u64::from(self.broker.message_max_bytes),
            "cluster.storage.wal_segment_size",
            || {
                format!(
                "{} cannot hold a maximal batch: use at least twice broker.message_max_bytes ({})",
                s.wal_segment_size, self.broker.message_max_bytes
            )
            },
        );
        match s.snapshot_compression {
            SnapshotCompression::Gzip => v.push(
                "cluster.storage.snapshot_compression",
                "\"gzip\" is not built into this broker; use \"zstd\" or \"none\"".to_string(),
            ),
            SnapshotCompression::Zstd => v.check(
                (1..=22).contains(&s.snapshot_compression_level),
                "cluster.storage.snapshot_compression_level",
                || format!("{} must be 1..=22 for zstd", s.snapshot_compression_level),
            ),
            SnapshotCompression::None => {}
        }
    }

    fn validate_isr(&self, v: &mut Issues) {
        let i = &self.cluster.isr;
        v.positive(i.max_lag_ms, "cluster.isr.max_lag_ms");
        v.positive(i.max_lag_entries, "cluster.isr.max_lag_entries");
        v.positive(i.check_interval_ms, "cluster.isr.check_interval_ms");
        v.check(
            i.check_interval_ms <= i.max_lag_ms,
            "cluster.isr.check_interval_ms",
            || format!(
                "{} is longer than cluster.isr.max_lag_ms ({}): lagging replicas would be noticed late",
                i.check_interval_ms, i.max_lag_ms
            ),
        );
    }
}

/// Whether two bind addresses can collide on one port.
fn binds_overlap(a: &str, b: &str) -> bool {
    a == b || wildcard(a) || wildcard(b) || a == "[::]" || b == "[::]"
}
