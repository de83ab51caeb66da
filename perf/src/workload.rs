//! Workload files: what to run, parsed from TOML and validated against named bounds.
//!
//! A workload describes topics, producers and consumers. Every count and size is bounded here,
//! before anything is allocated or any thread is started, so a typo cannot start 10^9 threads.
//!
//! ```toml
//! name = "latency-1k"
//! warmup_s = 5
//! duration_s = 30
//!
//! [[topics]]
//! name = "perf-latency-1k"
//! partitions = 8
//!
//! [producers]
//! count = 1
//! rate_msgs_per_s = 5000      # 0 = as fast as the client allows
//! message_size = 1024         # or { min = 100, max = 2000 } or { weighted = [[100, 9], [10000, 1]] }
//! keys = "none"               # "none" | "uniform" | "skewed"
//! acks = "all"
//!
//! [consumers]
//! groups = 1
//! per_group = 1
//! mode = "group"              # or "assigned"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{PerfError, Result};
use crate::payload::HEADER_LEN;

/// Largest message the harness will generate (librdkafka's own hard maximum is 1 GB; 64 MiB keeps
/// one producer's queue of them well inside memory).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Most producer threads (each is one librdkafka client with its own threads).
pub const MAX_PRODUCERS: u32 = 64;
/// Longest consumer start delay: a group member that does not poll for 300 s is evicted.
pub const MAX_CONSUMER_DELAY_S: u64 = 240;
/// Most consumer groups, and consumers per group.
pub const MAX_CONSUMER_GROUPS: u32 = 16;
pub const MAX_CONSUMERS_PER_GROUP: u32 = 64;
/// Most topics and partitions per topic a workload may create.
pub const MAX_TOPICS: usize = 64;
pub const MAX_PARTITIONS: u32 = 10_000;
/// Most distinct keys (the skewed distribution keeps a CDF table of this many entries).
pub const MAX_KEYS: u32 = 1_000_000;
/// Most entries in a weighted message-size distribution.
pub const MAX_SIZE_CHOICES: usize = 64;
/// Longest warm-up or measured phase, in seconds (one day).
pub const MAX_PHASE_S: u64 = 86_400;
/// Highest target rate (messages/s summed over producers).
pub const MAX_RATE_MSGS_PER_S: u64 = 100_000_000;
/// Most pass-through client properties per section.
pub const MAX_EXTRA_CONFIG: usize = 64;

/// One benchmark workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seconds of load before measuring starts.
    #[serde(default = "default_warmup_s")]
    pub warmup_s: u64,
    /// Seconds of measured load.
    #[serde(default = "default_duration_s")]
    pub duration_s: u64,
    /// Seed for message sizes and keys; printed in the result so a run can be repeated.
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub topics: Vec<TopicSpec>,
    pub producers: ProducerSpec,
    #[serde(default)]
    pub consumers: ConsumerSpec,
}

/// A topic the workload writes to; created if missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    #[serde(default = "default_replication")]
    pub replication_factor: u32,
    /// Topic configs passed on creation (e.g. `max.message.bytes`).
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// Producer side of a workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSpec {
    pub count: u32,
    /// Target rate summed over all producers; 0 means "as fast as possible".
    #[serde(default)]
    pub rate_msgs_per_s: u64,
    pub message_size: MessageSize,
    #[serde(default)]
    pub keys: KeyDistribution,
    #[serde(default = "default_key_count")]
    pub key_count: u32,
    #[serde(default)]
    pub acks: Acks,
    #[serde(default)]
    pub compression: Compression,
    /// librdkafka `batch.size` in bytes.
    #[serde(default = "default_batch_size_bytes")]
    pub batch_size_bytes: u64,
    /// librdkafka `linger.ms`.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Extra librdkafka producer properties, passed through verbatim (they win over ours).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// Consumer side of a workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSpec {
    /// Independent consumer groups; each receives every message (fan-out).
    #[serde(default = "default_groups")]
    pub groups: u32,
    /// Consumers in each group, sharing its partitions.
    #[serde(default = "default_per_group")]
    pub per_group: u32,
    #[serde(default)]
    pub mode: ConsumerMode,
    /// Seconds after the first message before consumers start polling (0: at once). Their
    /// partitions are assigned from the start, so they then read a backlog: the catch-up rate,
    /// with reads the broker no longer holds in memory.
    #[serde(default)]
    pub delay_s: u64,
    /// Extra librdkafka consumer properties, passed through verbatim.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

impl Default for ConsumerSpec {
    fn default() -> Self {
        ConsumerSpec {
            groups: default_groups(),
            per_group: default_per_group(),
            mode: ConsumerMode::default(),
            delay_s: 0,
            config: BTreeMap::new(),
        }
    }
}

/// How consumers get partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsumerMode {
    /// Kafka consumer groups: JoinGroup/SyncGroup decide the assignment.
    #[default]
    Group,
    /// Each consumer is assigned a fixed share of the partitions; no group coordinator needed.
    Assigned,
}

/// Message size: fixed, uniform in a range, or a weighted choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageSize {
    Fixed(u64),
    Uniform { min: u64, max: u64 },
    Weighted { weighted: Vec<(u64, u32)> },
}

impl MessageSize {
    /// Largest size this distribution can produce.
    pub fn max_bytes(&self) -> u64 {
        match self {
            MessageSize::Fixed(n) => *n,
            MessageSize::Uniform { max, .. } => *max,
            MessageSize::Weighted { weighted } => {
                weighted.iter().map(|(s, _)| *s).max().unwrap_or(0)
            }
        }
    }

    /// Smallest size this distribution can produce.
    pub fn min_bytes(&self) -> u64 {
        match self {
            MessageSize::Fixed(n) => *n,
            MessageSize::Uniform { min, .. } => *min,
            MessageSize::Weighted { weighted } => {
                weighted.iter().map(|(s, _)| *s).min().unwrap_or(0)
            }
        }
    }
}

/// Key distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyDistribution {
    /// No key: the client's partitioner spreads messages.
    #[default]
    None,
    /// Keys drawn uniformly from `key_count` keys.
    Uniform,
    /// Zipf-like (s = 1): key k is drawn with weight 1/(k+1), so a few keys (and partitions) are hot.
    Skewed,
}

/// Producer acknowledgement level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Acks {
    #[serde(rename = "0")]
    None,
    #[serde(rename = "1")]
    Leader,
    #[default]
    #[serde(rename = "all")]
    All,
}

impl Acks {
    /// The librdkafka `acks` value.
    pub fn as_config(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }
}

/// Producer compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The librdkafka `compression.type` value.
    pub fn as_config(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

fn default_warmup_s() -> u64 {
    5
}
fn default_duration_s() -> u64 {
    30
}
fn default_seed() -> u64 {
    0x5eed_c4a0
}
fn default_replication() -> u32 {
    1
}
fn default_key_count() -> u32 {
    1000
}
fn default_batch_size_bytes() -> u64 {
    1024 * 1024
}
fn default_linger_ms() -> u64 {
    5
}
fn default_groups() -> u32 {
    1
}
fn default_per_group() -> u32 {
    1
}

impl Workload {
    /// Parses and validates a workload from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Workload> {
        let workload: Workload =
            toml::from_str(text).map_err(|e| PerfError::InvalidWorkload(e.to_string()))?;
        workload.validate()?;
        Ok(workload)
    }

    /// Reads, parses and validates a workload file.
    pub fn from_file(path: &Path) -> Result<Workload> {
        let text = std::fs::read_to_string(path).map_err(|e| PerfError::Workload {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Workload::from_toml_str(&text).map_err(|e| PerfError::Workload {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Checks every bound and relationship; called by the parsers, public for overrides.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(PerfError::InvalidWorkload(msg));
        if self.name.is_empty() {
            return bad("name must not be empty".into());
        }
        if self.duration_s == 0 || self.duration_s > MAX_PHASE_S {
            return bad(format!("duration_s must be in 1..={MAX_PHASE_S}"));
        }
        if self.warmup_s > MAX_PHASE_S {
            return bad(format!("warmup_s must be at most {MAX_PHASE_S}"));
        }
        if self.topics.is_empty() || self.topics.len() > MAX_TOPICS {
            return bad(format!("topics: need 1..={MAX_TOPICS} topics"));
        }
        for t in &self.topics {
            if t.name.is_empty()
                || t.name.len() > 249
                || !t
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return bad(format!(
                    "topic name {:?} is not a legal Kafka topic name",
                    t.name
                ));
            }
            if t.partitions == 0 || t.partitions > MAX_PARTITIONS {
                return bad(format!(
                    "topic {}: partitions must be in 1..={MAX_PARTITIONS}",
                    t.name
                ));
            }
            if t.replication_factor == 0 || t.replication_factor > 16 {
                return bad(format!(
                    "topic {}: replication_factor must be in 1..=16",
                    t.name
                ));
            }
            if t.configs.len() > MAX_EXTRA_CONFIG {
                return bad(format!("topic {}: too many configs", t.name));
            }
        }
        let p = &self.producers;
        if p.count == 0 || p.count > MAX_PRODUCERS {
            return bad(format!("producers.count must be in 1..={MAX_PRODUCERS}"));
        }
        if p.rate_msgs_per_s > MAX_RATE_MSGS_PER_S {
            return bad(format!(
                "producers.rate_msgs_per_s must be at most {MAX_RATE_MSGS_PER_S}"
            ));
        }
        if p.rate_msgs_per_s != 0 && p.rate_msgs_per_s < u64::from(p.count) {
            return bad("producers.rate_msgs_per_s must be 0 or at least producers.count".into());
        }
        match &p.message_size {
            MessageSize::Fixed(_) => {}
            MessageSize::Uniform { min, max } => {
                if min > max {
                    return bad("message_size: min > max".into());
                }
            }
            MessageSize::Weighted { weighted } => {
                if weighted.is_empty() || weighted.len() > MAX_SIZE_CHOICES {
                    return bad(format!(
                        "message_size.weighted needs 1..={MAX_SIZE_CHOICES} entries"
                    ));
                }
                if weighted.iter().all(|(_, w)| *w == 0) {
                    return bad("message_size.weighted: all weights are zero".into());
                }
            }
        }
        // Every message carries the header the consumer uses for end-to-end latency.
        if p.message_size.min_bytes() < HEADER_LEN as u64 {
            return bad(format!(
                "message_size must be at least {HEADER_LEN} bytes (the timing header)"
            ));
        }
        if p.message_size.max_bytes() > MAX_MESSAGE_BYTES as u64 {
            return bad(format!(
                "message_size must be at most {MAX_MESSAGE_BYTES} bytes"
            ));
        }
        if p.keys != KeyDistribution::None && (p.key_count == 0 || p.key_count > MAX_KEYS) {
            return bad(format!("producers.key_count must be in 1..={MAX_KEYS}"));
        }
        if p.linger_ms > 60_000 {
            return bad("producers.linger_ms must be at most 60000".into());
        }
        if p.batch_size_bytes == 0 || p.batch_size_bytes > 2_147_483_647 {
            return bad("producers.batch_size_bytes must be in 1..=2147483647".into());
        }
        if p.config.len() > MAX_EXTRA_CONFIG {
            return bad("producers.config has too many entries".into());
        }
        let c = &self.consumers;
        if c.groups > MAX_CONSUMER_GROUPS {
            return bad(format!(
                "consumers.groups must be at most {MAX_CONSUMER_GROUPS}"
            ));
        }
        if c.groups > 0 && (c.per_group == 0 || c.per_group > MAX_CONSUMERS_PER_GROUP) {
            return bad(format!(
                "consumers.per_group must be in 1..={MAX_CONSUMERS_PER_GROUP}"
            ));
        }
        if c.config.len() > MAX_EXTRA_CONFIG {
            return bad("consumers.config has too many entries".into());
        }
        if c.delay_s > MAX_CONSUMER_DELAY_S {
            return bad(format!(
                "consumers.delay_s must be at most {MAX_CONSUMER_DELAY_S} (librdkafka's default max.poll.interval.ms)"
            ));
        }
        Ok(())
    }

    /// Total partitions over all topics.
    pub fn total_partitions(&self) -> u64 {
        self.topics.iter().map(|t| u64::from(t.partitions)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
        name = "t"
        description = "d"
        warmup_s = 2
        duration_s = 10
        seed = 7

        [[topics]]
        name = "perf-a"
        partitions = 16
        configs = { "max.message.bytes" = "5000000" }

        [[topics]]
        name = "perf-b"
        partitions = 2
        replication_factor = 3

        [producers]
        count = 4
        rate_msgs_per_s = 1000
        message_size = { min = 100, max = 2000 }
        keys = "skewed"
        key_count = 50
        acks = "1"
        compression = "lz4"
        batch_size_bytes = 65536
        linger_ms = 2
        config = { "queue.buffering.max.messages" = "1000" }

        [consumers]
        groups = 4
        per_group = 2
        mode = "assigned"
        delay_s = 12
    "#;

    #[test]
    fn parses_every_field() {
        let w = Workload::from_toml_str(FULL).unwrap();
        assert_eq!(w.name, "t");
        assert_eq!((w.warmup_s, w.duration_s, w.seed), (2, 10, 7));
        assert_eq!(w.topics.len(), 2);
        assert_eq!(w.topics[0].configs["max.message.bytes"], "5000000");
        assert_eq!(w.topics[1].replication_factor, 3);
        assert_eq!(w.total_partitions(), 18);
        let p = &w.producers;
        assert_eq!(p.count, 4);
        assert_eq!(p.rate_msgs_per_s, 1000);
        assert_eq!(
            p.message_size,
            MessageSize::Uniform {
                min: 100,
                max: 2000
            }
        );
        assert_eq!(p.keys, KeyDistribution::Skewed);
        assert_eq!(p.acks, Acks::Leader);
        assert_eq!(p.compression, Compression::Lz4);
        assert_eq!(p.config["queue.buffering.max.messages"], "1000");
        assert_eq!(w.consumers.groups, 4);
        assert_eq!(w.consumers.per_group, 2);
        assert_eq!(w.consumers.mode, ConsumerMode::Assigned);
        assert_eq!(w.consumers.delay_s, 12);
        let mut late = w.clone();
        late.consumers.delay_s = MAX_CONSUMER_DELAY_S + 1;
        assert!(
            late.validate().is_err(),
            "a delay beyond the poll interval is refused"
        );
    }

    #[test]
    fn defaults_fill_in() {
        let w = Workload::from_toml_str(
            r#"
            name = "min"
            [[topics]]
            name = "x"
            partitions = 1
            [producers]
            count = 1
            message_size = 1024
            "#,
        )
        .unwrap();
        assert_eq!(w.producers.message_size, MessageSize::Fixed(1024));
        assert_eq!(w.producers.acks, Acks::All);
        assert_eq!(w.producers.rate_msgs_per_s, 0);
        assert_eq!(w.consumers, ConsumerSpec::default());
        assert_eq!((w.warmup_s, w.duration_s), (5, 30));
    }

    #[test]
    fn weighted_sizes_parse() {
        let w = Workload::from_toml_str(
            r#"
            name = "w"
            [[topics]]
            name = "x"
            partitions = 1
            [producers]
            count = 1
            message_size = { weighted = [[100, 9], [10000, 1]] }
            "#,
        )
        .unwrap();
        assert_eq!(w.producers.message_size.max_bytes(), 10000);
        assert_eq!(w.producers.message_size.min_bytes(), 100);
    }

    fn with(replace: (&str, &str)) -> Result<Workload> {
        Workload::from_toml_str(&FULL.replace(replace.0, replace.1))
    }

    #[test]
    fn rejects_out_of_bounds_and_typos() {
        for (from, to) in [
            ("count = 4", "count = 0"),
            ("count = 4", "count = 100000"),
            ("partitions = 16", "partitions = 0"),
            ("partitions = 16", "partitions = 100000000"),
            ("duration_s = 10", "duration_s = 0"),
            ("min = 100", "min = 8"),
            ("max = 2000", "max = 99"),
            ("max = 2000", "max = 1000000000000"),
            ("name = \"perf-a\"", "name = \"bad topic!\""),
            ("key_count = 50", "key_count = 0"),
            ("acks = \"1\"", "acks = \"2\""),
            ("compression = \"lz4\"", "compression = \"brotli\""),
            ("mode = \"assigned\"", "mode = \"static\""),
            ("linger_ms = 2", "lingr_ms = 2"),
            ("per_group = 2", "per_group = 0"),
            ("rate_msgs_per_s = 1000", "rate_msgs_per_s = 3"),
        ] {
            assert!(with((from, to)).is_err(), "{to} should be rejected");
        }
    }

    #[test]
    fn shipped_workloads_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) == Some("toml") {
                let w = Workload::from_file(&path).unwrap();
                seen.push(w.name);
            }
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                "catchup-1k",
                "fanout",
                "ingest-1k",
                "ingest-1k-idem",
                "large-4m",
                "latency-1k",
                "many-partitions"
            ]
        );
    }
}
