//! The typed configuration tree and its defaults.
//!
//! Field names are the TOML key names; the dotted key of a field is its path
//! (`cluster.raft.election_timeout_ms`). Defaults follow
//! `raft-configuration-reference.md` for `[cluster.*]` and Apache Kafka's
//! broker defaults for `[broker]`. `docs/configuration.md` lists every key.

use std::path::{Path, PathBuf};

use super::value::{
    join_host_port, split_host_port, Cores, DiscoveryMode, Peer, ProduceProfile, Secret, SeedNode,
    SnapshotCompression, SnapshotPolicy, TimestampType, WalProfile, WalSyncMode,
};

/// Lowest valid node id (0 is raft-rs's "no node").
pub const NODE_ID_MIN: u64 = 1;
/// Highest valid node id, from the configuration reference (1-65535).
pub const NODE_ID_MAX: u64 = 65_535;

/// The whole broker configuration. Build with [`Config::load`] or
/// `Config::default()`; check with [`Config::validate`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// `[server]`: process, listeners, directories, cores.
    pub server: ServerConfig,
    /// `[broker]`: Kafka-visible defaults and limits.
    pub broker: BrokerConfig,
    /// `[cluster]` and its sub-sections (plus the flat cluster file).
    pub cluster: ClusterConfig,
    /// Where each key's value came from (not part of equality).
    pub(crate) origins: super::Origins,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Kafka listener bind address.
    pub bind_addr: String,
    /// Kafka listener port.
    pub kafka_port: u16,
    /// Host advertised to clients; unset = see [`Config::advertised_host`].
    pub advertised_addr: Option<String>,
    /// Port advertised to clients; unset = `kafka_port`.
    pub advertised_port: Option<u16>,
    /// Root of all on-disk state.
    pub data_dir: PathBuf,
    /// Serve the HTTP endpoints on a dedicated port.
    pub http_enabled: bool,
    /// Bind address of the dedicated HTTP port.
    pub http_bind_addr: String,
    /// Dedicated HTTP port (metrics, health, admin, cluster API).
    pub http_port: u16,
    /// Also answer HTTP requests that arrive on the Kafka port.
    pub http_on_kafka_port: bool,
    /// Which cores get a shard.
    pub cores: Cores,
    /// glommio registered I/O memory per executor; 0 = fit RLIMIT_MEMLOCK.
    pub io_memory_bytes: u64,
    /// Largest Kafka request frame accepted (Kafka `socket.request.max.bytes`).
    pub socket_request_max_bytes: u32,
    /// Close Kafka connections idle this long (Kafka `connections.max.idle.ms`).
    pub connections_max_idle_ms: u64,
    /// Most concurrent client connections per node.
    pub max_connections: u32,
    /// Grace period for a SIGTERM shutdown (leadership transfer, flush).
    pub shutdown_timeout_ms: u64,
    /// How long an idle shard polls before it sleeps (0: sleep at once). Polling trades CPU for
    /// the cost of parking and waking the executor between closely spaced events.
    pub spin_before_park_us: u64,
    /// Pin each shard's thread to its core. Off by default: measured on a 2-core host with the
    /// clients on the same cores, pinned shards starved the clients and stalled for seconds;
    /// turn it on for hosts whose shard cores run nothing else.
    pub pin_cores: bool,
    /// SASL mechanisms the Kafka listener requires, comma-separated (`PLAIN`, `SCRAM-SHA-256`,
    /// `SCRAM-SHA-512`); empty: no authentication (PLAINTEXT).
    pub sasl_mechanisms: String,
    /// `user:password` pairs, comma-separated, given SCRAM-SHA-256 and SCRAM-SHA-512
    /// credentials at start-up when they have none (the first users of a SASL listener).
    pub sasl_bootstrap_users: Secret,
    /// TLS on the Kafka listener (Kafka's SSL and SASL_SSL listeners).
    pub kafka_tls_enabled: bool,
    /// PEM certificate chain of the Kafka listener.
    pub kafka_tls_cert_path: Option<PathBuf>,
    /// PEM private key of the Kafka listener.
    pub kafka_tls_key_path: Option<PathBuf>,
    /// PEM CA certificates; when set, clients must present a certificate signed by one of them
    /// (Kafka `ssl.client.auth=required`).
    pub kafka_tls_ca_path: Option<PathBuf>,
    /// Enforce ACLs on Kafka requests (Kafka's `authorizer.class.name` set to
    /// `StandardAuthorizer`). ACLs are stored, listed and deleted whether or not this is on.
    pub authorization_enabled: bool,
    /// Principals (`User:name`) allowed everything, `;`- or `,`-separated (Kafka `super.users`).
    pub super_users: String,
    /// With authorization on, allow operations on resources that no ACL names (Kafka
    /// `allow.everyone.if.no.acl.found`).
    pub allow_everyone_if_no_acl_found: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind_addr: "0.0.0.0".to_string(),
            kafka_port: 9092,
            advertised_addr: None,
            advertised_port: None,
            data_dir: PathBuf::from("./data"),
            http_enabled: true,
            http_bind_addr: "0.0.0.0".to_string(),
            http_port: 8080,
            http_on_kafka_port: true,
            cores: Cores::All,
            io_memory_bytes: 0,
            socket_request_max_bytes: 104_857_600,
            connections_max_idle_ms: 600_000,
            max_connections: 65_536,
            shutdown_timeout_ms: 30_000,
            spin_before_park_us: 0,
            pin_cores: false,
            sasl_mechanisms: String::new(),
            sasl_bootstrap_users: Secret::default(),
            kafka_tls_enabled: false,
            kafka_tls_cert_path: None,
            kafka_tls_key_path: None,
            kafka_tls_ca_path: None,
            authorization_enabled: false,
            super_users: String::new(),
            allow_everyone_if_no_acl_found: false,
        }
    }
}

/// `[broker]`: Kafka broker settings, Kafka's names with `.` → `_`.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// Create topics on first Metadata/Produce request.
    pub auto_create_topics_enable: bool,
    /// Allow DeleteTopics.
    pub delete_topic_enable: bool,
    /// Partitions of an auto-created topic.
    pub num_partitions: u32,
    /// Replicas of a new topic (flat cluster file: `replication_factor`).
    pub default_replication_factor: u32,
    /// In-sync replicas required for `acks=all`.
    pub min_insync_replicas: u32,
    /// Largest record batch accepted.
    pub message_max_bytes: u32,
    /// Most bytes one Fetch response returns.
    pub fetch_max_bytes: u32,
    /// Delete segments older than this; -1 = never.
    pub log_retention_ms: i64,
    /// Delete oldest segments beyond this many bytes per partition; -1 = no limit.
    pub log_retention_bytes: i64,
    /// Per-partition segment size used for retention accounting.
    pub log_segment_bytes: u64,
    /// How often retention runs.
    pub log_retention_check_interval_ms: u64,
    /// Which timestamp a stored batch carries.
    pub log_message_timestamp_type: TimestampType,
    /// Partitions of `__consumer_offsets`.
    pub offsets_topic_num_partitions: u32,
    /// Replicas of `__consumer_offsets` (capped at the cluster size).
    pub offsets_topic_replication_factor: u32,
    /// Committed offsets of an empty group expire after this.
    pub offsets_retention_minutes: u64,
    /// Delay before the first rebalance of a new group.
    pub group_initial_rebalance_delay_ms: u64,
    /// Smallest session timeout a member may ask for.
    pub group_min_session_timeout_ms: u64,
    /// Largest session timeout a member may ask for.
    pub group_max_session_timeout_ms: u64,
    /// Most members per consumer group.
    pub group_max_size: u32,
    /// Kafka `group.consumer.session.timeout.ms` (KIP-848 groups).
    pub group_consumer_session_timeout_ms: u64,
    /// Kafka `group.consumer.heartbeat.interval.ms` (KIP-848 groups).
    pub group_consumer_heartbeat_interval_ms: u64,
    /// Transactional ids expire after this long without use.
    pub transactional_id_expiration_ms: u64,
    /// Partitions of `__transaction_state` (Kafka `transaction.state.log.num.partitions`).
    pub transaction_state_log_num_partitions: u32,
    /// Largest `transaction.timeout.ms` a producer may ask for (Kafka
    /// `transaction.max.timeout.ms`); InitProducerId above it gets INVALID_TRANSACTION_TIMEOUT.
    pub transaction_max_timeout_ms: u64,
    /// Idempotent producer state expires after this long without use.
    pub producer_id_expiration_ms: u64,
    /// Incremental fetch sessions kept per broker.
    pub max_incremental_fetch_session_cache_slots: u32,
    /// Allow an out-of-sync replica to become leader (may lose data).
    pub unclean_leader_election_enable: bool,
    /// Rack / availability zone of this node, for replica placement.
    pub rack_id: Option<String>,
    /// Raft batching preset (unset: none).
    pub produce_profile: Option<ProduceProfile>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            auto_create_topics_enable: true,
            delete_topic_enable: true,
            num_partitions: 1,
            default_replication_factor: 1,
            min_insync_replicas: 1,
            message_max_bytes: 1_048_588,
            fetch_max_bytes: 57_671_680,
            log_retention_ms: 604_800_000,
            log_retention_bytes: -1,
            log_segment_bytes: 1_073_741_824,
            log_retention_check_interval_ms: 300_000,
            log_message_timestamp_type: TimestampType::CreateTime,
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            offsets_retention_minutes: 10_080,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: 2_147_483_647,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            transactional_id_expiration_ms: 604_800_000,
            transaction_state_log_num_partitions: 50,
            transaction_max_timeout_ms: 900_000,
            producer_id_expiration_ms: 86_400_000,
            max_incremental_fetch_session_cache_slots: 1_000,
            unclean_leader_election_enable: false,
            rack_id: None,
            produce_profile: None,
        }
    }
}

/// `[cluster]`
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// Clustering on (false = standalone single-voter groups).
    pub enabled: bool,
    /// This node's id, 1..=65535.
    pub node_id: u64,
    /// Raft listener `host:port`; unset = `bind_addr:(kafka_port + 1)`, or
    /// this node's `[[peers]]` raft_port.
    pub node_addr: Option<String>,
    /// Raft `host:port` peers dial; unset = node_addr.
    pub advertised_node_addr: Option<String>,
    /// How peers are found.
    pub discovery_mode: DiscoveryMode,
    /// Static peers, `node_id@host:raft_port`.
    pub seed_nodes: Vec<SeedNode>,
    /// DNS discovery domain (planned discovery mode `dns`).
    pub dns_domain: Option<String>,
    /// DNS discovery Raft port (planned discovery mode `dns`).
    pub dns_port: Option<u16>,
    /// Consul agent URL (planned discovery mode `consul`).
    pub consul_addr: Option<String>,
    /// Consul service name (planned discovery mode `consul`).
    pub consul_service: Option<String>,
    /// Peers of the flat cluster file (`[[peers]]`).
    pub peers: Vec<Peer>,
    /// `[cluster.raft]`
    pub raft: RaftConfig,
    /// `[cluster.network]`
    pub network: NetworkConfig,
    /// `[cluster.storage]`
    pub storage: StorageConfig,
    /// `[cluster.isr]` (flat file: `[isr]`)
    pub isr: IsrConfig,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            node_id: 1,
            node_addr: None,
            advertised_node_addr: None,
            discovery_mode: DiscoveryMode::Static,
            seed_nodes: Vec::new(),
            dns_domain: None,
            dns_port: None,
            consul_addr: None,
            consul_service: None,
            peers: Vec::new(),
            raft: RaftConfig::default(),
            network: NetworkConfig::default(),
            storage: StorageConfig::default(),
            isr: IsrConfig::default(),
        }
    }
}

/// `[cluster.raft]`
#[derive(Debug, Clone, PartialEq)]
pub struct RaftConfig {
    /// Follower starts an election after this long without a leader.
    pub election_timeout_ms: u64,
    /// Leader heartbeat period. Invariant (validated): < election_timeout_ms.
    pub heartbeat_interval_ms: u64,
    /// Most entries per append message.
    pub max_payload_entries: u64,
    /// Snapshot when the log exceeds this many entries (policy log_size).
    pub snapshot_log_size_threshold: u64,
    /// When snapshots are taken.
    pub snapshot_policy: SnapshotPolicy,
    /// Snapshot period (policy periodic).
    pub snapshot_interval_secs: u64,
    /// Compact the log beyond this many entries.
    pub log_compaction_threshold: u64,
    /// Compact automatically.
    pub log_compaction_enabled: bool,
    /// Give up installing a snapshot after this long.
    pub install_snapshot_timeout_secs: u64,
    /// Snapshot stream chunk size. Invariant (validated): <= max_message_size.
    pub max_snapshot_chunk_size: u64,
    /// Send appends without waiting for the previous acknowledgement.
    pub enable_pipeline: bool,
    /// Most in-flight append messages per follower when pipelining.
    pub max_in_flight: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            election_timeout_ms: 200,
            heartbeat_interval_ms: 20,
            max_payload_entries: 1000,
            snapshot_log_size_threshold: 100_000,
            snapshot_policy: SnapshotPolicy::LogSize,
            snapshot_interval_secs: 3600,
            log_compaction_threshold: 50_000,
            log_compaction_enabled: true,
            install_snapshot_timeout_secs: 300,
            max_snapshot_chunk_size: 1_048_576,
            enable_pipeline: true,
            max_in_flight: 1000,
        }
    }
}

/// `[cluster.network]`
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    /// Largest Raft transport frame.
    pub max_message_size: u64,
    /// Peer connect timeout.
    pub connect_timeout_ms: u64,
    /// Peer request timeout.
    pub request_timeout_ms: u64,
    /// TCP keep-alive probe interval.
    pub keepalive_interval_secs: u64,
    /// Close a silent peer connection after this long.
    pub keepalive_timeout_secs: u64,
    /// TLS on the Raft transport.
    pub tls_enabled: bool,
    /// PEM certificate chain (required with TLS).
    pub tls_cert_path: Option<PathBuf>,
    /// PEM private key (required with TLS).
    pub tls_key_path: Option<PathBuf>,
    /// PEM CA for verifying peers (enables mTLS).
    pub tls_ca_path: Option<PathBuf>,
    /// Require and verify peer certificates (needs tls_ca_path).
    pub verify_peer: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            max_message_size: 4_194_304,
            connect_timeout_ms: 5000,
            request_timeout_ms: 10_000,
            keepalive_interval_secs: 10,
            keepalive_timeout_secs: 30,
            tls_enabled: false,
            tls_cert_path: None,
            tls_key_path: None,
            tls_ca_path: None,
            verify_peer: false,
        }
    }
}

/// `[cluster.storage]`
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// Durability preset (unset: none).
    pub wal_profile: Option<WalProfile>,
    /// WAL directory; unset = `<data_dir>/wal`.
    pub wal_dir: Option<PathBuf>,
    /// Snapshot directory; unset = `<data_dir>/snapshots`.
    pub snapshot_dir: Option<PathBuf>,
    /// fsync per write or group commit.
    pub wal_sync_mode: WalSyncMode,
    /// Group-commit period (mode periodic).
    pub wal_sync_interval_ms: u64,
    /// WAL segment size; a multiple of 4096 (O_DIRECT alignment).
    pub wal_segment_size: u64,
    /// Deleted WAL segment files kept per shard for reuse by later rolls (overwriting written
    /// blocks makes fdatasync cheaper than writing into fresh preallocated space).
    pub wal_recycle_segments: u32,
    /// Pace (bytes/s) of zero-filling new WAL segments in the background; 0 = fallocate only.
    pub wal_prepare_bytes_per_sec: u64,
    /// `always` mode: open WAL segments O_DSYNC so each group-commit write is durable when it
    /// completes (one I/O per round) instead of writing and then fdatasyncing.
    pub wal_write_through: bool,
    /// Per-shard memory for recent record batches (the tail-read cache).
    pub wal_cache_bytes: u64,
    /// Snapshot compression.
    pub snapshot_compression: SnapshotCompression,
    /// zstd 1..=22 (gzip 1..=9).
    pub snapshot_compression_level: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            wal_profile: None,
            wal_dir: None,
            snapshot_dir: None,
            wal_sync_mode: WalSyncMode::Periodic,
            wal_sync_interval_ms: 10,
            wal_segment_size: 268_435_456,
            wal_recycle_segments: 2,
            wal_prepare_bytes_per_sec: 134_217_728,
            wal_write_through: true,
            wal_cache_bytes: 134_217_728,
            snapshot_compression: SnapshotCompression::Zstd,
            snapshot_compression_level: 3,
        }
    }
}

/// `[cluster.isr]`
#[derive(Debug, Clone, PartialEq)]
pub struct IsrConfig {
    /// A replica further behind than this (time) leaves the ISR.
    pub max_lag_ms: u64,
    /// A replica further behind than this (entries) leaves the ISR.
    pub max_lag_entries: u64,
    /// How often the leader re-evaluates the ISR.
    pub check_interval_ms: u64,
}

impl Default for IsrConfig {
    fn default() -> Self {
        IsrConfig {
            max_lag_ms: 10_000,
            max_lag_entries: 10_000,
            check_interval_ms: 1000,
        }
    }
}

/// A Raft peer of this node, merged from `[[peers]]` and `seed_nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftPeer {
    /// The peer's node id.
    pub node_id: u64,
    /// `host:port` of its Raft listener.
    pub raft_addr: String,
    /// `host:port` of its Kafka listener, when known (`[[peers]]` only).
    pub kafka_addr: Option<String>,
}

fn is_unspecified(host: &str) -> bool {
    matches!(host, "0.0.0.0" | "::" | "[::]" | "")
}

impl Config {
    /// Effective WAL directory (`cluster.storage.wal_dir` or `<data_dir>/wal`).
    pub fn wal_dir(&self) -> PathBuf {
        self.cluster
            .storage
            .wal_dir
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("wal"))
    }

    /// Effective snapshot directory (`<data_dir>/snapshots` unless set).
    pub fn snapshot_dir(&self) -> PathBuf {
        self.cluster
            .storage
            .snapshot_dir
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("snapshots"))
    }

    /// `bind_addr:kafka_port`, ready for a listener.
    pub fn kafka_listen_addr(&self) -> String {
        join_host_port(&self.server.bind_addr, self.server.kafka_port)
    }

    /// `http_bind_addr:http_port`, or None when the dedicated port is off.
    pub fn http_listen_addr(&self) -> Option<String> {
        self.server
            .http_enabled
            .then(|| join_host_port(&self.server.http_bind_addr, self.server.http_port))
    }

    /// Host advertised to Kafka clients: `advertised_addr`; else `bind_addr`
    /// unless it is a wildcard; else this machine's host name; else
    /// `localhost`. A wildcard is never advertised: clients cannot dial it.
    pub fn advertised_host(&self) -> String {
        if let Some(a) = &self.server.advertised_addr {
            return a.clone();
        }
        if !is_unspecified(&self.server.bind_addr) {
            return self.server.bind_addr.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string())
    }

    /// Port advertised to Kafka clients.
    pub fn advertised_port(&self) -> u16 {
        self.server
            .advertised_port
            .unwrap_or(self.server.kafka_port)
    }

    /// This node's own `[[peers]]` entry, if the flat file lists it.
    pub fn own_peer(&self) -> Option<&Peer> {
        self.cluster
            .peers
            .iter()
            .find(|p| p.id == self.cluster.node_id)
    }

    /// Address the Raft listener binds: `cluster.node_addr`; else the own
    /// `[[peers]]` raft_port on `bind_addr`; else `bind_addr:(kafka_port+1)`
    /// (the deployment guide's "Raft port = Kafka port + 1").
    pub fn raft_listen_addr(&self) -> String {
        if let Some(a) = &self.cluster.node_addr {
            return a.clone();
        }
        let port = match self.own_peer() {
            Some(p) => p.raft_port,
            None => self.server.kafka_port.wrapping_add(1),
        };
        join_host_port(&self.server.bind_addr, port)
    }

    /// Address peers dial to reach this node's Raft listener.
    pub fn raft_advertised_addr(&self) -> String {
        if let Some(a) = &self.cluster.advertised_node_addr {
            return a.clone();
        }
        if let Some(p) = self.own_peer() {
            if let Ok(a) = p.raft_addr() {
                return a;
            }
        }
        let listen = self.raft_listen_addr();
        match split_host_port(&listen) {
            Ok((host, port)) if is_unspecified(&host) => {
                join_host_port(&self.advertised_host(), port)
            }
            _ => listen,
        }
    }

    /// The other voters, from `[[peers]]` then `seed_nodes` (first wins per
    /// id), excluding this node, sorted by id. Entries with a malformed
    /// address are skipped here; [`Config::validate`] reports them.
    pub fn raft_peers(&self) -> Vec<RaftPeer> {
        let mut out: Vec<RaftPeer> = Vec::new();
        for p in &self.cluster.peers {
            if p.id == self.cluster.node_id || out.iter().any(|o| o.node_id == p.id) {
                continue;
            }
            if let Ok(raft_addr) = p.raft_addr() {
                out.push(RaftPeer {
                    node_id: p.id,
                    raft_addr,
                    kafka_addr: Some(p.addr.clone()),
                });
            }
        }
        for s in &self.cluster.seed_nodes {
            if s.node_id == self.cluster.node_id || out.iter().any(|o| o.node_id == s.node_id) {
                continue;
            }
            out.push(RaftPeer {
                node_id: s.node_id,
                raft_addr: s.raft_addr(),
                kafka_addr: None,
            });
        }
        out.sort_by_key(|p| p.node_id);
        out
    }

    /// Path relative to the data dir (helper for crates that place files).
    pub fn data_path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.server.data_dir.join(rel)
    }
}
