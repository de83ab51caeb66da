//! The registry of every configuration key: dotted name, environment
//! variable, type and a one-line description.
//!
//! Loading, env overrides, CLI overrides, the effective-config dump and the
//! documentation test all walk this one table, so a key added here is
//! automatically settable from every source and must be documented.

use super::model::Config;
use super::value::ConfValue;

/// One configuration key.
pub struct KeyDef {
    /// Canonical dotted key, e.g. `cluster.raft.election_timeout_ms`.
    pub key: &'static str,
    /// Environment variable overriding it, e.g. `CHRONIK_ELECTION_TIMEOUT_MS`.
    pub env: &'static str,
    /// One-line description.
    pub doc: &'static str,
    pub(crate) expected: fn() -> String,
    pub(crate) set_toml: fn(&mut Config, &toml::Value) -> Result<(), String>,
    pub(crate) set_text: fn(&mut Config, &str) -> Result<(), String>,
    pub(crate) get: fn(&Config) -> String,
}

impl KeyDef {
    /// Description of the accepted values, as used in type errors.
    pub fn expected(&self) -> String {
        (self.expected)()
    }

    /// The key's current value in `cfg`, rendered as text (env-var form).
    pub fn value_of(&self, cfg: &Config) -> String {
        (self.get)(cfg)
    }
}

impl std::fmt::Debug for KeyDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyDef")
            .field("key", &self.key)
            .field("env", &self.env)
            .finish()
    }
}

macro_rules! keys {
    ($( $key:literal $env:literal $ty:ty = $($field:ident).+ ; $doc:literal )*) => {
        /// Every key, in documentation order.
        pub static KEYS: &[KeyDef] = &[ $( KeyDef {
            key: $key,
            env: $env,
            doc: $doc,
            expected: <$ty as ConfValue>::expected,
            set_toml: |c, v| { c.$($field).+ = <$ty as ConfValue>::from_toml(v)?; Ok(()) },
            set_text: |c, s| { c.$($field).+ = <$ty as ConfValue>::from_text(s)?; Ok(()) },
            get: |c| ConfValue::render(&c.$($field).+),
        } ),* ];
    };
}

use super::value::{
    Cores, DiscoveryMode, Peer, ProduceProfile, Secret, SeedNode, SnapshotCompression,
    SnapshotPolicy, TimestampType, WalProfile, WalSyncMode,
};
use std::path::PathBuf;

keys! {
    "server.bind_addr" "CHRONIK_BIND_ADDR" String = server.bind_addr;
        "Kafka listener bind address"
    "server.kafka_port" "CHRONIK_KAFKA_PORT" u16 = server.kafka_port;
        "Kafka listener port"
    "server.advertised_addr" "CHRONIK_ADVERTISED_ADDR" Option<String> = server.advertised_addr;
        "host name clients are told to connect to (unset: bind_addr, or the host name if bind_addr is a wildcard)"
    "server.advertised_port" "CHRONIK_ADVERTISED_PORT" Option<u16> = server.advertised_port;
        "port clients are told to connect to (unset: kafka_port)"
    "server.data_dir" "CHRONIK_DATA_DIR" PathBuf = server.data_dir;
        "root directory of all on-disk state"
    "server.http_enabled" "CHRONIK_HTTP_ENABLED" bool = server.http_enabled;
        "serve /metrics, /health and the admin API on a dedicated port"
    "server.http_bind_addr" "CHRONIK_HTTP_BIND_ADDR" String = server.http_bind_addr;
        "bind address of the dedicated HTTP port"
    "server.http_port" "CHRONIK_HTTP_PORT" u16 = server.http_port;
        "dedicated HTTP port"
    "server.http_on_kafka_port" "CHRONIK_HTTP_ON_KAFKA_PORT" bool = server.http_on_kafka_port;
        "also answer HTTP requests (GET/POST/PUT/DELETE) arriving on the Kafka port"
    "server.cores" "CHRONIK_CORES" Cores = server.cores;
        "cores that get a shard: \"all\", a count, a list [0, 2] or \"0-3,6\""
    "server.io_memory_bytes" "CHRONIK_IO_MEMORY_BYTES" u64 = server.io_memory_bytes;
        "registered io_uring buffer memory per shard; 0 = largest that fits RLIMIT_MEMLOCK (max 32 MiB)"
    "server.socket_request_max_bytes" "CHRONIK_SOCKET_REQUEST_MAX_BYTES" u32 = server.socket_request_max_bytes;
        "largest Kafka request frame accepted"
    "server.connections_max_idle_ms" "CHRONIK_CONNECTIONS_MAX_IDLE_MS" u64 = server.connections_max_idle_ms;
        "close client connections idle this long"
    "server.max_connections" "CHRONIK_MAX_CONNECTIONS" u32 = server.max_connections;
        "most concurrent client connections per node"
    "server.shutdown_timeout_ms" "CHRONIK_SHUTDOWN_TIMEOUT_MS" u64 = server.shutdown_timeout_ms;
        "grace period of a SIGTERM shutdown (leadership transfer, final flush)"
    "server.spin_before_park_us" "CHRONIK_SPIN_BEFORE_PARK_US" u64 = server.spin_before_park_us;
        "how long an idle shard keeps polling before it sleeps (0 = sleep at once)"
    "server.pin_cores" "CHRONIK_PIN_CORES" bool = server.pin_cores;
        "pin each shard thread to its core (for hosts whose shard cores run nothing else)"
    "server.sasl_mechanisms" "CHRONIK_SASL_MECHANISMS" String = server.sasl_mechanisms;
        "SASL mechanisms Kafka clients must authenticate with: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, comma-separated; empty = none"
    "server.sasl_bootstrap_users" "CHRONIK_SASL_BOOTSTRAP_USERS" Secret = server.sasl_bootstrap_users;
        "user:password pairs, comma-separated, given SCRAM credentials at start-up if they have none"
    "server.kafka_tls_enabled" "CHRONIK_KAFKA_TLS_ENABLED" bool = server.kafka_tls_enabled;
        "TLS on the Kafka listener (SSL, or SASL_SSL with sasl_mechanisms)"
    "server.kafka_tls_cert_path" "CHRONIK_KAFKA_TLS_CERT_PATH" Option<PathBuf> = server.kafka_tls_cert_path;
        "PEM certificate chain of the Kafka listener (required with kafka_tls_enabled)"
    "server.kafka_tls_key_path" "CHRONIK_KAFKA_TLS_KEY_PATH" Option<PathBuf> = server.kafka_tls_key_path;
        "PEM private key of the Kafka listener (required with kafka_tls_enabled)"
    "server.kafka_tls_ca_path" "CHRONIK_KAFKA_TLS_CA_PATH" Option<PathBuf> = server.kafka_tls_ca_path;
        "PEM CA certificates: when set, clients must present a certificate it signed (mTLS)"
    "server.authorization_enabled" "CHRONIK_AUTHORIZATION_ENABLED" bool = server.authorization_enabled;
        "enforce ACLs (CreateAcls) on Kafka requests; ACLs are stored and listed either way"
    "server.super_users" "CHRONIK_SUPER_USERS" String = server.super_users;
        "principals allowed everything when authorization is on, e.g. \"User:admin;User:ops\" (';' or ',' separated)"
    "server.allow_everyone_if_no_acl_found" "CHRONIK_ALLOW_EVERYONE_IF_NO_ACL_FOUND" bool = server.allow_everyone_if_no_acl_found;
        "with authorization on, allow operations on resources that no ACL names"

    "broker.auto_create_topics_enable" "CHRONIK_AUTO_CREATE_TOPICS_ENABLE" bool = broker.auto_create_topics_enable;
        "create unknown topics on Metadata/Produce"
    "broker.delete_topic_enable" "CHRONIK_DELETE_TOPIC_ENABLE" bool = broker.delete_topic_enable;
        "allow DeleteTopics"
    "broker.num_partitions" "CHRONIK_NUM_PARTITIONS" u32 = broker.num_partitions;
        "partitions of an auto-created topic"
    "broker.default_replication_factor" "CHRONIK_DEFAULT_REPLICATION_FACTOR" u32 = broker.default_replication_factor;
        "replicas of a new topic (flat cluster file: replication_factor)"
    "broker.min_insync_replicas" "CHRONIK_MIN_INSYNC_REPLICAS" u32 = broker.min_insync_replicas;
        "in-sync replicas required for acks=all"
    "broker.message_max_bytes" "CHRONIK_MESSAGE_MAX_BYTES" u32 = broker.message_max_bytes;
        "largest record batch accepted"
    "broker.fetch_max_bytes" "CHRONIK_FETCH_MAX_BYTES" u32 = broker.fetch_max_bytes;
        "most bytes one Fetch response returns"
    "broker.log_retention_ms" "CHRONIK_LOG_RETENTION_MS" i64 = broker.log_retention_ms;
        "delete data older than this; -1 = keep forever"
    "broker.log_retention_bytes" "CHRONIK_LOG_RETENTION_BYTES" i64 = broker.log_retention_bytes;
        "per-partition size limit; -1 = none"
    "broker.log_segment_bytes" "CHRONIK_LOG_SEGMENT_BYTES" u64 = broker.log_segment_bytes;
        "per-partition segment size (retention granularity, reported to clients)"
    "broker.log_retention_check_interval_ms" "CHRONIK_LOG_RETENTION_CHECK_INTERVAL_MS" u64 = broker.log_retention_check_interval_ms;
        "how often retention runs"
    "broker.log_message_timestamp_type" "CHRONIK_LOG_MESSAGE_TIMESTAMP_TYPE" TimestampType = broker.log_message_timestamp_type;
        "CreateTime or LogAppendTime"
    "broker.offsets_topic_num_partitions" "CHRONIK_OFFSETS_TOPIC_NUM_PARTITIONS" u32 = broker.offsets_topic_num_partitions;
        "partitions of __consumer_offsets"
    "broker.offsets_topic_replication_factor" "CHRONIK_OFFSETS_TOPIC_REPLICATION_FACTOR" u32 = broker.offsets_topic_replication_factor;
        "replicas of __consumer_offsets (capped at the cluster size)"
    "broker.offsets_retention_minutes" "CHRONIK_OFFSETS_RETENTION_MINUTES" u64 = broker.offsets_retention_minutes;
        "committed offsets of an empty group expire after this"
    "broker.group_initial_rebalance_delay_ms" "CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS" u64 = broker.group_initial_rebalance_delay_ms;
        "delay before a new group's first rebalance"
    "broker.group_min_session_timeout_ms" "CHRONIK_GROUP_MIN_SESSION_TIMEOUT_MS" u64 = broker.group_min_session_timeout_ms;
        "smallest session timeout a member may request"
    "broker.group_max_session_timeout_ms" "CHRONIK_GROUP_MAX_SESSION_TIMEOUT_MS" u64 = broker.group_max_session_timeout_ms;
        "largest session timeout a member may request"
    "broker.group_max_size" "CHRONIK_GROUP_MAX_SIZE" u32 = broker.group_max_size;
        "most members per consumer group"
    "broker.group_consumer_session_timeout_ms" "CHRONIK_GROUP_CONSUMER_SESSION_TIMEOUT_MS" u64 = broker.group_consumer_session_timeout_ms;
        "KIP-848 consumer groups: a member silent this long is removed"
    "broker.group_consumer_heartbeat_interval_ms" "CHRONIK_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS" u64 = broker.group_consumer_heartbeat_interval_ms;
        "KIP-848 consumer groups: how often members heartbeat"
    "broker.transactional_id_expiration_ms" "CHRONIK_TRANSACTIONAL_ID_EXPIRATION_MS" u64 = broker.transactional_id_expiration_ms;
        "transactional ids expire after this long unused"
    "broker.transaction_state_log_num_partitions" "CHRONIK_TRANSACTION_STATE_LOG_NUM_PARTITIONS" u32 = broker.transaction_state_log_num_partitions;
        "partitions of __transaction_state"
    "broker.transaction_max_timeout_ms" "CHRONIK_TRANSACTION_MAX_TIMEOUT_MS" u64 = broker.transaction_max_timeout_ms;
        "largest transaction.timeout.ms a producer may ask for"
    "broker.producer_id_expiration_ms" "CHRONIK_PRODUCER_ID_EXPIRATION_MS" u64 = broker.producer_id_expiration_ms;
        "idempotent producer state expires after this long unused"
    "broker.max_incremental_fetch_session_cache_slots" "CHRONIK_MAX_INCREMENTAL_FETCH_SESSION_CACHE_SLOTS" u32 = broker.max_incremental_fetch_session_cache_slots;
        "incremental fetch sessions kept per client connection: min(value, 4); 0 disables sessions"
    "broker.unclean_leader_election_enable" "CHRONIK_UNCLEAN_LEADER_ELECTION_ENABLE" bool = broker.unclean_leader_election_enable;
        "let an out-of-sync replica lead (may lose acknowledged data)"
    "broker.rack_id" "CHRONIK_RACK_ID" Option<String> = broker.rack_id;
        "rack / availability zone of this node for replica placement"

    "broker.produce_profile" "CHRONIK_PRODUCE_PROFILE" Option<ProduceProfile> = broker.produce_profile;
        "preset for Raft append batching: low-latency, balanced, high-throughput (explicit keys win)"

    "cluster.enabled" "CHRONIK_CLUSTER_ENABLED" bool = cluster.enabled;
        "run as a member of a multi-node cluster (flat file: enabled)"
    "cluster.node_id" "CHRONIK_NODE_ID" u64 = cluster.node_id;
        "unique node id, 1..=65535 (required when clustering)"
    "cluster.node_addr" "CHRONIK_NODE_ADDR" Option<String> = cluster.node_addr;
        "Raft listener host:port (unset: own [[peers]] raft_port, else bind_addr:kafka_port+1)"
    "cluster.advertised_node_addr" "CHRONIK_ADVERTISED_NODE_ADDR" Option<String> = cluster.advertised_node_addr;
        "Raft host:port peers dial (unset: derived from node_addr)"
    "cluster.discovery_mode" "CHRONIK_DISCOVERY_MODE" DiscoveryMode = cluster.discovery_mode;
        "static (dns, consul, etcd are planned and rejected)"
    "cluster.seed_nodes" "CHRONIK_SEED_NODES" Vec<SeedNode> = cluster.seed_nodes;
        "peers as node_id@host:raft_port; env form is comma-separated"
    "cluster.dns_domain" "CHRONIK_DNS_DOMAIN" Option<String> = cluster.dns_domain;
        "domain for discovery_mode = dns (planned)"
    "cluster.dns_port" "CHRONIK_DNS_PORT" Option<u16> = cluster.dns_port;
        "Raft port for discovery_mode = dns (planned)"
    "cluster.consul_addr" "CHRONIK_CONSUL_ADDR" Option<String> = cluster.consul_addr;
        "Consul URL for discovery_mode = consul (planned)"
    "cluster.consul_service" "CHRONIK_CONSUL_SERVICE" Option<String> = cluster.consul_service;
        "Consul service for discovery_mode = consul (planned)"
    "cluster.peers" "CHRONIK_PEERS" Vec<Peer> = cluster.peers;
        "[[peers]] id/addr/raft_port; env form id@host:kafka_port/raft_port,..."

    "cluster.raft.election_timeout_ms" "CHRONIK_ELECTION_TIMEOUT_MS" u64 = cluster.raft.election_timeout_ms;
        "election timeout"
    "cluster.raft.heartbeat_interval_ms" "CHRONIK_HEARTBEAT_INTERVAL_MS" u64 = cluster.raft.heartbeat_interval_ms;
        "leader heartbeat interval, less than the election timeout"
    "cluster.raft.max_payload_entries" "CHRONIK_MAX_PAYLOAD_ENTRIES" u64 = cluster.raft.max_payload_entries;
        "most entries per append message"
    "cluster.raft.snapshot_log_size_threshold" "CHRONIK_SNAPSHOT_LOG_SIZE_THRESHOLD" u64 = cluster.raft.snapshot_log_size_threshold;
        "snapshot when the log exceeds this many entries (flat file: raft.snapshot_threshold)"
    "cluster.raft.snapshot_policy" "CHRONIK_SNAPSHOT_POLICY" SnapshotPolicy = cluster.raft.snapshot_policy;
        "periodic, log_size or disabled"
    "cluster.raft.snapshot_interval_secs" "CHRONIK_SNAPSHOT_INTERVAL_SECS" u64 = cluster.raft.snapshot_interval_secs;
        "snapshot period for snapshot_policy = periodic"
    "cluster.raft.log_compaction_threshold" "CHRONIK_LOG_COMPACTION_THRESHOLD" u64 = cluster.raft.log_compaction_threshold;
        "compact the log beyond this many entries"
    "cluster.raft.log_compaction_enabled" "CHRONIK_LOG_COMPACTION_ENABLED" bool = cluster.raft.log_compaction_enabled;
        "compact automatically"
    "cluster.raft.install_snapshot_timeout_secs" "CHRONIK_INSTALL_SNAPSHOT_TIMEOUT_SECS" u64 = cluster.raft.install_snapshot_timeout_secs;
        "give up installing a snapshot after this long"
    "cluster.raft.max_snapshot_chunk_size" "CHRONIK_MAX_SNAPSHOT_CHUNK_SIZE" u64 = cluster.raft.max_snapshot_chunk_size;
        "snapshot stream chunk size, at most network.max_message_size"
    "cluster.raft.enable_pipeline" "CHRONIK_ENABLE_PIPELINE" bool = cluster.raft.enable_pipeline;
        "send appends without waiting for acknowledgements"
    "cluster.raft.max_in_flight" "CHRONIK_MAX_IN_FLIGHT" u64 = cluster.raft.max_in_flight;
        "most in-flight append messages per follower"

    "cluster.network.max_message_size" "CHRONIK_MAX_MESSAGE_SIZE" u64 = cluster.network.max_message_size;
        "largest Raft transport frame"
    "cluster.network.connect_timeout_ms" "CHRONIK_CONNECT_TIMEOUT_MS" u64 = cluster.network.connect_timeout_ms;
        "peer connect timeout"
    "cluster.network.request_timeout_ms" "CHRONIK_REQUEST_TIMEOUT_MS" u64 = cluster.network.request_timeout_ms;
        "peer request timeout"
    "cluster.network.keepalive_interval_secs" "CHRONIK_KEEPALIVE_INTERVAL_SECS" u64 = cluster.network.keepalive_interval_secs;
        "TCP keep-alive probe interval"
    "cluster.network.keepalive_timeout_secs" "CHRONIK_KEEPALIVE_TIMEOUT_SECS" u64 = cluster.network.keepalive_timeout_secs;
        "close a silent peer connection after this long"
    "cluster.network.tls_enabled" "CHRONIK_TLS_ENABLED" bool = cluster.network.tls_enabled;
        "TLS on the Raft transport"
    "cluster.network.tls_cert_path" "CHRONIK_TLS_CERT_PATH" Option<PathBuf> = cluster.network.tls_cert_path;
        "PEM certificate chain (required with TLS)"
    "cluster.network.tls_key_path" "CHRONIK_TLS_KEY_PATH" Option<PathBuf> = cluster.network.tls_key_path;
        "PEM private key (required with TLS)"
    "cluster.network.tls_ca_path" "CHRONIK_TLS_CA_PATH" Option<PathBuf> = cluster.network.tls_ca_path;
        "PEM CA certificate for verifying peers (mTLS)"
    "cluster.network.verify_peer" "CHRONIK_VERIFY_PEER" bool = cluster.network.verify_peer;
        "require and verify peer certificates (needs tls_ca_path)"

    "cluster.storage.wal_profile" "CHRONIK_WAL_PROFILE" Option<WalProfile> = cluster.storage.wal_profile;
        "preset for wal_sync_mode / wal_sync_interval_ms / wal_segment_size: durable, balanced, high-throughput, ultra (explicit keys win)"
    "cluster.storage.wal_dir" "CHRONIK_WAL_DIR" Option<PathBuf> = cluster.storage.wal_dir;
        "WAL directory (unset: <data_dir>/wal)"
    "cluster.storage.snapshot_dir" "CHRONIK_SNAPSHOT_DIR" Option<PathBuf> = cluster.storage.snapshot_dir;
        "snapshot directory (unset: <data_dir>/snapshots)"
    "cluster.storage.wal_sync_mode" "CHRONIK_WAL_SYNC_MODE" WalSyncMode = cluster.storage.wal_sync_mode;
        "always (fsync per write) or periodic (group commit)"
    "cluster.storage.wal_sync_interval_ms" "CHRONIK_WAL_SYNC_INTERVAL_MS" u64 = cluster.storage.wal_sync_interval_ms;
        "group-commit period for wal_sync_mode = periodic"
    "cluster.storage.wal_segment_size" "CHRONIK_WAL_SEGMENT_SIZE" u64 = cluster.storage.wal_segment_size;
        "WAL segment size, a multiple of 4096 and at least 1 MiB"
    "cluster.storage.wal_recycle_segments" "CHRONIK_WAL_RECYCLE_SEGMENTS" u32 = cluster.storage.wal_recycle_segments;
        "deleted WAL segment files kept per shard for reuse (0..=64; 0 unlinks them)"
    "cluster.storage.wal_prepare_bytes_per_sec" "CHRONIK_WAL_PREPARE_BYTES_PER_SEC" u64 = cluster.storage.wal_prepare_bytes_per_sec;
        "pace of zero-filling new WAL segments in the background (0: fallocate only; fresh extents make every fdatasync commit the ext4 journal)"
    "cluster.storage.wal_write_through" "CHRONIK_WAL_WRITE_THROUGH" bool = cluster.storage.wal_write_through;
        "wal_sync_mode = always: write WAL segments O_DSYNC, one I/O per group commit (false: write, then fdatasync)"
    "cluster.storage.wal_cache_bytes" "CHRONIK_WAL_CACHE_BYTES" u64 = cluster.storage.wal_cache_bytes;
        "per-shard memory for recent record batches (tail reads never touch the disk; older ones are read back through io_uring)"
    "cluster.storage.snapshot_compression" "CHRONIK_SNAPSHOT_COMPRESSION" SnapshotCompression = cluster.storage.snapshot_compression;
        "none or zstd (gzip is not built in)"
    "cluster.storage.snapshot_compression_level" "CHRONIK_SNAPSHOT_COMPRESSION_LEVEL" u32 = cluster.storage.snapshot_compression_level;
        "zstd level 1..=22"

    "cluster.isr.max_lag_ms" "CHRONIK_ISR_MAX_LAG_MS" u64 = cluster.isr.max_lag_ms;
        "a replica further behind than this (time) leaves the ISR"
    "cluster.isr.max_lag_entries" "CHRONIK_ISR_MAX_LAG_ENTRIES" u64 = cluster.isr.max_lag_entries;
        "a replica further behind than this (entries) leaves the ISR"
    "cluster.isr.check_interval_ms" "CHRONIK_ISR_CHECK_INTERVAL_MS" u64 = cluster.isr.check_interval_ms;
        "how often the leader re-evaluates the ISR"
}

/// Look a key up by its canonical dotted name.
pub fn find(key: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.key == key)
}

/// Look a key up by its environment variable.
pub fn find_env(env: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.env == env)
}

/// The Markdown table of every key (section, key, env var, default,
/// meaning) that `docs/configuration.md` embeds; a test keeps them equal.
pub fn reference_table() -> String {
    let defaults = Config::default();
    let mut out = String::from(
        "| key | environment variable | default | meaning |\n| --- | --- | --- | --- |\n",
    );
    for k in KEYS {
        let (section, leaf) = k.key.rsplit_once('.').unwrap_or(("", k.key));
        let default = k.value_of(&defaults);
        let default = if default.is_empty() {
            "(unset)".to_string()
        } else {
            format!("`{default}`")
        };
        out.push_str(&format!(
            "| `[{section}]` `{leaf}` | `{}` | {default} | {} |\n",
            k.env,
            k.doc.replace('|', "\\|")
        ));
    }
    out
}
