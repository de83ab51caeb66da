//! Topic-level configs: every key Kafka describes for a topic, its default, its type, and the
//! validation an AlterConfigs/CreateTopics value must pass.

use std::collections::BTreeMap;

/// Kafka's DescribeConfigs `config_type` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// One known topic config.
#[derive(Clone, Copy, Debug)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub ty: ConfigType,
    /// Allowed values for enumerated strings/lists (empty: any).
    pub allowed: &'static [&'static str],
    /// Smallest allowed numeric value.
    pub min: i64,
    pub doc: &'static str,
}

const fn def(
    name: &'static str,
    default: &'static str,
    ty: ConfigType,
    allowed: &'static [&'static str],
    min: i64,
    doc: &'static str,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        default,
        ty,
        allowed,
        min,
        doc,
    }
}

use ConfigType::{Boolean, Double, Int, List, Long};

/// Every topic config the broker knows, with Kafka's defaults.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def(
        "cleanup.policy",
        "delete",
        List,
        &["delete", "compact"],
        0,
        "Retention policy: delete and/or compact.",
    ),
    def(
        "compression.type",
        "producer",
        ConfigType::String,
        &[
            "producer",
            "uncompressed",
            "none",
            "gzip",
            "snappy",
            "lz4",
            "zstd",
        ],
        0,
        "Final compression; 'producer' keeps the producer's codec (the broker never recompresses).",
    ),
    def(
        "delete.retention.ms",
        "86400000",
        Long,
        &[],
        0,
        "How long delete tombstones are kept for compacted topics.",
    ),
    def(
        "file.delete.delay.ms",
        "60000",
        Long,
        &[],
        0,
        "Delay before deleting a file from the filesystem.",
    ),
    def(
        "flush.messages",
        "9223372036854775807",
        Long,
        &[],
        1,
        "Forced fsync interval in messages (the WAL's sync mode governs durability).",
    ),
    def(
        "flush.ms",
        "9223372036854775807",
        Long,
        &[],
        0,
        "Forced fsync interval in ms (the WAL's sync mode governs durability).",
    ),
    def(
        "index.interval.bytes",
        "4096",
        Int,
        &[],
        0,
        "Offset index granularity.",
    ),
    def(
        "max.compaction.lag.ms",
        "9223372036854775807",
        Long,
        &[],
        1,
        "Maximum time a message remains ineligible for compaction.",
    ),
    def(
        "max.message.bytes",
        "1048588",
        Int,
        &[],
        0,
        "Largest record batch size allowed.",
    ),
    def(
        "message.timestamp.after.max.ms",
        "9223372036854775807",
        Long,
        &[],
        0,
        "Allowed future skew of CreateTime timestamps.",
    ),
    def(
        "message.timestamp.before.max.ms",
        "9223372036854775807",
        Long,
        &[],
        0,
        "Allowed past skew of CreateTime timestamps.",
    ),
    def(
        "message.timestamp.type",
        "CreateTime",
        ConfigType::String,
        &["CreateTime", "LogAppendTime"],
        0,
        "Whether record timestamps are the producer's or the broker's append time.",
    ),
    def(
        "min.cleanable.dirty.ratio",
        "0.5",
        Double,
        &[],
        0,
        "Dirty ratio that triggers compaction.",
    ),
    def(
        "min.compaction.lag.ms",
        "0",
        Long,
        &[],
        0,
        "Minimum time a message remains uncompacted.",
    ),
    def(
        "min.insync.replicas",
        "1",
        Int,
        &[],
        1,
        "Replicas that must acknowledge an acks=all write.",
    ),
    def(
        "preallocate",
        "false",
        Boolean,
        &[],
        0,
        "Preallocate segment files.",
    ),
    def(
        "retention.bytes",
        "-1",
        Long,
        &[],
        -1,
        "Maximum partition size before old batches are deleted (-1: unlimited).",
    ),
    def(
        "retention.ms",
        "604800000",
        Long,
        &[],
        -1,
        "Maximum age of a batch before it is deleted (-1: unlimited).",
    ),
    def(
        "segment.bytes",
        "1073741824",
        Int,
        &[],
        14,
        "Size at which the partition's (virtual) active segment rolls; compaction never cleans the active segment. The shared WAL rolls at wal_segment_size.",
    ),
    def(
        "segment.index.bytes",
        "10485760",
        Int,
        &[],
        4,
        "Offset index size.",
    ),
    def(
        "segment.jitter.ms",
        "0",
        Long,
        &[],
        0,
        "Random jitter subtracted from segment.ms.",
    ),
    def(
        "segment.ms",
        "604800000",
        Long,
        &[],
        1,
        "Record time after which the partition's active segment rolls (compaction never cleans the active segment).",
    ),
    def(
        "unclean.leader.election.enable",
        "false",
        Boolean,
        &[],
        0,
        "Raft never elects an unclean leader; accepted for compatibility.",
    ),
    def(
        "message.downconversion.enable",
        "true",
        Boolean,
        &[],
        0,
        "Accepted for compatibility; v2 batches are never down-converted.",
    ),
];

/// Looks up a topic config definition.
pub fn find(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks `value` for `name`. `Err` carries the message for INVALID_CONFIG (40).
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let d = find(name).ok_or_else(|| format!("unknown topic config '{name}'"))?;
    match d.ty {
        Boolean => {
            if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") {
                return Err(format!("{name} must be true or false, got '{value}'"));
            }
        }
        Int | Long => {
            let v: i64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{name} must be an integer, got '{value}'"))?;
            if d.ty == Int && i32::try_from(v).is_err() {
                return Err(format!("{name} must fit in 32 bits, got {v}"));
            }
            if v < d.min {
                return Err(format!("{name} must be at least {}, got {v}", d.min));
            }
        }
        Double => {
            let v: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{name} must be a number, got '{value}'"))?;
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be between 0 and 1, got {v}"));
            }
        }
        ConfigType::String => {
            if !d.allowed.is_empty() && !d.allowed.contains(&value) {
                return Err(format!(
                    "{name} must be one of {:?}, got '{value}'",
                    d.allowed
                ));
            }
        }
        List => {
            for item in value.split(',').map(str::trim) {
                if !d.allowed.is_empty() && !d.allowed.contains(&item) {
                    return Err(format!(
                        "{name} items must be among {:?}, got '{item}'",
                        d.allowed
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The effective value of a topic config: the topic override, else the broker default given in
/// `broker_defaults` (e.g. `retention.ms` from `log.retention.ms`), else Kafka's default.
pub fn effective<'a>(
    name: &str,
    overrides: &'a BTreeMap<std::string::String, std::string::String>,
    broker_defaults: &'a BTreeMap<std::string::String, std::string::String>,
) -> Option<&'a str> {
    overrides
        .get(name)
        .or_else(|| broker_defaults.get(name))
        .map(|s| s.as_str())
        .or_else(|| find(name).map(|d| d.default))
}

/// Parses an integer config's effective value.
pub fn effective_i64(
    name: &str,
    overrides: &BTreeMap<std::string::String, std::string::String>,
    broker_defaults: &BTreeMap<std::string::String, std::string::String>,
) -> i64 {
    effective(name, overrides, broker_defaults)
        .and_then(|v| v.trim().parse().ok())
        .or_else(|| find(name).and_then(|d| d.default.parse().ok()))
        .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        for d in TOPIC_CONFIGS {
            validate(d.name, d.default).unwrap_or_else(|e| panic!("{}: {e}", d.name));
        }
    }

    #[test]
    fn rejects_bad_values() {
        assert!(validate("retention.ms", "abc").is_err());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("max.message.bytes", "99999999999").is_err());
        assert!(validate("message.timestamp.type", "Whenever").is_err());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("no.such.key", "1").is_err());
        assert!(validate("preallocate", "yes").is_err());
    }

    #[test]
    fn effective_value_precedence() {
        let mut o = BTreeMap::new();
        let mut b = BTreeMap::new();
        assert_eq!(effective_i64("retention.ms", &o, &b), 604_800_000);
        b.insert("retention.ms".to_string(), "5".to_string());
        assert_eq!(effective_i64("retention.ms", &o, &b), 5);
        o.insert("retention.ms".to_string(), "7".to_string());
        assert_eq!(effective_i64("retention.ms", &o, &b), 7);
    }
}
