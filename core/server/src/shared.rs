//! State shared by all shards: the configuration and the published metadata image.
//!
//! The metadata image is replaced (never mutated) by shard 0 after it applies a `__meta` entry.
//! Readers keep a per-shard copy and compare a version counter (one atomic load) before use, so
//! the lock is touched only when the metadata actually changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chronik_core::config::Config;
use chronik_core::meta::MetaState;

/// One partition's figures as its owner last published them (for `/metrics`).
#[derive(Clone, Debug)]
pub struct PartitionStats {
    pub group: u64,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    pub leader: bool,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

pub struct Shared {
    pub config: Config,
    pub node_id: i32,
    pub shards: usize,
    pub advertised_host: String,
    pub advertised_port: u16,
    pub cluster_id: String,
    /// Broker-level defaults for topic configs (`retention.ms` from `log_retention_ms`, ...).
    pub topic_defaults: BTreeMap<String, String>,
    meta: RwLock<Arc<MetaState>>,
    meta_version: AtomicU64,
    /// Set once shard 0 has replayed `__meta` and every shard opened its partitions.
    ready: AtomicBool,
    pub shutting_down: Arc<AtomicBool>,
    /// Leader epoch (Raft term) of every partition group this node leads; written on leadership
    /// changes only, read by Metadata.
    leader_epochs: RwLock<HashMap<u64, i32>>,
    /// Per shard, its partitions' figures (replaced once a second by the owner).
    stats: RwLock<Vec<Vec<PartitionStats>>>,
    /// Shards that finished draining their requests at shutdown; a shard exits only when every
    /// shard has drained, so no request is left waiting on a shard that is already gone.
    pub drained_shards: std::sync::atomic::AtomicUsize,
    /// Open client connections on this node (bounded by `server.max_connections`).
    pub connections: std::sync::atomic::AtomicUsize,
    /// TLS for the Kafka listener (`server.kafka_tls_enabled`), set before the shards start.
    pub kafka_tls: Option<futures_rustls::TlsAcceptor>,
    /// Client quota rates (produce/fetch byte rates), shared by all shards.
    pub quotas: crate::quotas::QuotaSensors,
    /// Whether the published metadata holds any client quota: the request path checks this
    /// one flag before it looks at quotas at all.
    has_quotas: AtomicBool,
    /// Shards whose WAL failed (I/O error, full disk): they refuse writes until a restart.
    storage_failed: std::sync::Mutex<Vec<usize>>,
}

/// The `chronik.toml` key behind each entry of [`Shared::topic_defaults`].
pub const TOPIC_DEFAULT_KEYS: &[(&str, &str)] = &[
    ("retention.ms", "broker.log_retention_ms"),
    ("retention.bytes", "broker.log_retention_bytes"),
    ("segment.bytes", "broker.log_segment_bytes"),
    ("max.message.bytes", "broker.message_max_bytes"),
    ("min.insync.replicas", "broker.min_insync_replicas"),
    (
        "message.timestamp.type",
        "broker.log_message_timestamp_type",
    ),
];

impl Shared {
    pub fn new(config: Config, shards: usize) -> Self {
        let advertised_host = config.advertised_host();
        let advertised_port = config.advertised_port();
        let b = &config.broker;
        let mut topic_defaults = BTreeMap::new();
        topic_defaults.insert("retention.ms".into(), b.log_retention_ms.to_string());
        topic_defaults.insert("retention.bytes".into(), b.log_retention_bytes.to_string());
        topic_defaults.insert("segment.bytes".into(), b.log_segment_bytes.to_string());
        topic_defaults.insert("max.message.bytes".into(), b.message_max_bytes.to_string());
        topic_defaults.insert(
            "min.insync.replicas".into(),
            b.min_insync_replicas.to_string(),
        );
        topic_defaults.insert(
            "message.timestamp.type".into(),
            b.log_message_timestamp_type.to_string(),
        );
        let node_id = config.cluster.node_id.max(1) as i32;
        Self {
            node_id,
            shards,
            advertised_host,
            advertised_port,
            cluster_id: "chronik-cluster".to_string(),
            topic_defaults,
            config,
            meta: RwLock::new(Arc::new(MetaState::default())),
            meta_version: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            shutting_down: Arc::new(AtomicBool::new(false)),
            leader_epochs: RwLock::new(HashMap::new()),
            stats: RwLock::new(vec![Vec::new(); shards]),
            drained_shards: std::sync::atomic::AtomicUsize::new(0),
            connections: std::sync::atomic::AtomicUsize::new(0),
            kafka_tls: None,
            quotas: Default::default(),
            has_quotas: AtomicBool::new(false),
            storage_failed: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Whether any client quota is set.
    pub fn has_quotas(&self) -> bool {
        self.has_quotas.load(Ordering::Relaxed)
    }

    pub fn meta_version(&self) -> u64 {
        self.meta_version.load(Ordering::Acquire)
    }

    pub fn meta(&self) -> (u64, Arc<MetaState>) {
        let g = self.meta.read().unwrap_or_else(|e| e.into_inner());
        (self.meta_version(), g.clone())
    }

    pub fn publish_meta(&self, state: MetaState) {
        let mut g = self.meta.write().unwrap_or_else(|e| e.into_inner());
        self.has_quotas
            .store(!state.quotas.is_empty(), Ordering::Release);
        *g = Arc::new(state);
        self.meta_version.fetch_add(1, Ordering::AcqRel);
    }

    pub fn set_leader_epoch(&self, group: u64, epoch: Option<i32>) {
        let mut m = self
            .leader_epochs
            .write()
            .unwrap_or_else(|e| e.into_inner());
        match epoch {
            Some(e) => {
                m.insert(group, e);
            }
            None => {
                m.remove(&group);
            }
        }
    }

    /// The leader epoch of a partition group, or -1 if this node does not lead it.
    pub fn leader_epoch(&self, group: u64) -> i32 {
        let m = self.leader_epochs.read().unwrap_or_else(|e| e.into_inner());
        m.get(&group).copied().unwrap_or(-1)
    }

    pub fn publish_stats(&self, shard: usize, stats: Vec<PartitionStats>) {
        let mut g = self.stats.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = g.get_mut(shard) {
            *slot = stats;
        }
    }

    /// Every partition's latest figures, by Raft group.
    pub fn stats(&self) -> HashMap<u64, PartitionStats> {
        let g = self.stats.read().unwrap_or_else(|e| e.into_inner());
        g.iter().flatten().map(|s| (s.group, s.clone())).collect()
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Records that `shard`'s WAL failed (health probes report it from then on).
    pub fn mark_storage_failed(&self, shard: usize) {
        let mut f = self
            .storage_failed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !f.contains(&shard) {
            f.push(shard);
            f.sort_unstable();
        }
    }

    /// Shards whose WAL failed, in order (empty when storage is healthy).
    pub fn storage_failed_shards(&self) -> Vec<usize> {
        self.storage_failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        self.shutting_down.clone()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Which shard owns the coordinator of a consumer group.
    pub fn offsets_partition_for(&self, group_id: &str) -> i32 {
        chronik_core::group::partition_for_group(
            group_id,
            self.config.broker.offsets_topic_num_partitions as i32,
        )
    }

    pub fn arc(self) -> Arc<Self> {
        Arc::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_default_names_a_config_key() {
        let shared = Shared::new(Config::default(), 1);
        let named: Vec<&str> = TOPIC_DEFAULT_KEYS.iter().map(|(n, _)| *n).collect();
        let have: Vec<&str> = shared.topic_defaults.keys().map(String::as_str).collect();
        let mut named_sorted = named.clone();
        named_sorted.sort_unstable();
        assert_eq!(
            named_sorted, have,
            "topic_defaults and TOPIC_DEFAULT_KEYS differ"
        );
        for (_, key) in TOPIC_DEFAULT_KEYS {
            assert!(
                chronik_core::config::KEYS.iter().any(|k| k.key == *key),
                "{key} is not a config key"
            );
        }
    }
}
