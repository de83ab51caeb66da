//! The command line: clap definitions and the small parsers behind them (`k=v`, reset specs).

use clap::{Args, Parser, Subcommand};

use crate::error::{CtlError, Result};
use crate::output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "chronik-ctl",
    version,
    about = "Operate a Chronik (or any Kafka) broker: cluster, topics, groups, produce, consume"
)]
pub struct Cli {
    /// Broker to start from, `host:port` (comma-separate several).
    #[arg(
        long,
        global = true,
        env = "CHRONIK_BOOTSTRAP",
        default_value = "localhost:9092"
    )]
    pub bootstrap: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Connect/read/write timeout per socket operation, in milliseconds.
    #[arg(long, global = true, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub timeout_ms: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cluster-wide information.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Topic administration.
    #[command(subcommand)]
    Topic(TopicCmd),
    /// Consumer groups.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Produce the lines of stdin as records (acks=all).
    Produce(ProduceArgs),
    /// Print records of a topic.
    Consume(ConsumeArgs),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Brokers, controller, topic and partition counts.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum TopicCmd {
    /// Every topic with its partition count.
    List {
        /// Include internal topics such as __consumer_offsets.
        #[arg(long)]
        internal: bool,
    },
    /// Partitions, leaders, offsets and configs of one topic.
    Describe { topic: String },
    /// Create a topic.
    Create {
        topic: String,
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..=1_000_000))]
        partitions: i32,
        /// Replicas per partition (default: the broker's default).
        #[arg(long, value_parser = clap::value_parser!(i16).range(1..))]
        replication_factor: Option<i16>,
        /// Topic config, repeatable: `--config retention.ms=60000`.
        #[arg(long = "config", value_parser = parse_kv)]
        configs: Vec<(String, String)>,
    },
    /// Delete a topic.
    Delete { topic: String },
    /// Set or remove topic configs (IncrementalAlterConfigs).
    AlterConfig {
        topic: String,
        /// `k=v` to set, repeatable.
        #[arg(long = "set", value_parser = parse_kv)]
        set: Vec<(String, String)>,
        /// Key to remove (back to the default), repeatable.
        #[arg(long = "delete")]
        delete: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Every group the brokers know.
    List,
    /// State, members, assignments, committed offsets and lag of one group.
    Describe { group: String },
    /// Move a group's committed offsets (dry run unless --execute).
    ResetOffsets(ResetArgs),
    /// Delete a group (it must have no members).
    Delete { group: String },
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    pub group: String,
    #[arg(long)]
    pub topic: String,
    #[command(flatten)]
    pub to: ResetTo,
    /// Commit the new offsets; without it only the plan is printed.
    #[arg(long)]
    pub execute: bool,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ResetTo {
    /// The log start offset of each partition.
    #[arg(long)]
    pub to_earliest: bool,
    /// The log end offset of each partition.
    #[arg(long)]
    pub to_latest: bool,
    /// This offset on every partition (clamped to the log's range).
    #[arg(long, allow_negative_numbers = true)]
    pub to_offset: Option<i64>,
    /// The committed offset plus N (N may be negative; clamped to the log's range).
    #[arg(long, allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
}

/// The reset target as one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetSpec {
    Earliest,
    Latest,
    Offset(i64),
    ShiftBy(i64),
}

impl ResetTo {
    pub fn spec(&self) -> ResetSpec {
        match (
            self.to_earliest,
            self.to_latest,
            self.to_offset,
            self.shift_by,
        ) {
            (true, ..) => ResetSpec::Earliest,
            (_, true, ..) => ResetSpec::Latest,
            (_, _, Some(n), _) => ResetSpec::Offset(n),
            (_, _, _, Some(n)) => ResetSpec::ShiftBy(n),
            // clap's ArgGroup(required = true) guarantees one of them.
            _ => unreachable!("clap requires one reset target"),
        }
    }
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Key of every record (default: null key).
    #[arg(long)]
    pub key: Option<String>,
    /// Partition for every record (default: by key hash, or round-robin per batch without a key).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Start at each partition's log start (default: its end, so only new records print).
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    pub max: Option<u64>,
    /// Only this partition.
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,
    /// Stop when no record arrived for this long (default: wait for ever).
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
}

/// `key=value` (the value may contain `=`; the key may not be empty).
pub fn parse_kv(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got '{s}'")),
    }
}

/// Checks a topic name the way Kafka does (1..=249 chars of `[a-zA-Z0-9._-]`, not `.`/`..`),
/// so a typo is refused here with a clear message rather than by the broker.
pub fn check_topic_name(t: &str) -> Result<()> {
    let ok_chars = t
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if t.is_empty() || t.len() > 249 || !ok_chars || t == "." || t == ".." {
        return Err(CtlError::Invalid(format!(
            "topic name '{t}': use 1..=249 characters of [a-zA-Z0-9._-], not '.' or '..'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> std::result::Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("chronik-ctl").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn globals_have_defaults_and_may_follow_the_subcommand() {
        let c = parse(&["topic", "list"]).unwrap();
        // CHRONIK_BOOTSTRAP may be set in a developer's shell; only check it when it is not.
        if std::env::var_os("CHRONIK_BOOTSTRAP").is_none() {
            assert_eq!(c.bootstrap, "localhost:9092");
        }
        assert_eq!(c.output, Format::Table);
        let c = parse(&["topic", "list", "--bootstrap", "h:1", "--output", "json"]).unwrap();
        assert_eq!(c.bootstrap, "h:1");
        assert_eq!(c.output, Format::Json);
        assert!(parse(&["--output", "yaml", "topic", "list"]).is_err());
    }

    #[test]
    fn topic_create_collects_configs() {
        let c = parse(&[
            "topic",
            "create",
            "t",
            "--partitions",
            "3",
            "--config",
            "a=1",
            "--config",
            "b=x=y",
        ])
        .unwrap();
        match c.command {
            Command::Topic(TopicCmd::Create {
                topic,
                partitions,
                replication_factor,
                configs,
            }) => {
                assert_eq!(topic, "t");
                assert_eq!(partitions, 3);
                assert_eq!(replication_factor, None);
                assert_eq!(
                    configs,
                    vec![("a".into(), "1".into()), ("b".into(), "x=y".into())]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["topic", "create", "t", "--partitions", "0"]).is_err());
        assert!(parse(&["topic", "create", "t"]).is_err());
        assert!(parse(&[
            "topic",
            "create",
            "t",
            "--partitions",
            "1",
            "--config",
            "nokv"
        ])
        .is_err());
    }

    #[test]
    fn reset_needs_exactly_one_target() {
        let spec = |args: &[&str]| {
            let mut a = vec!["group", "reset-offsets", "g", "--topic", "t"];
            a.extend_from_slice(args);
            parse(&a).map(|c| match c.command {
                Command::Group(GroupCmd::ResetOffsets(r)) => (r.to.spec(), r.execute),
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(
            spec(&["--to-earliest"]).unwrap(),
            (ResetSpec::Earliest, false)
        );
        assert_eq!(
            spec(&["--to-latest", "--execute"]).unwrap(),
            (ResetSpec::Latest, true)
        );
        assert_eq!(
            spec(&["--to-offset", "42"]).unwrap(),
            (ResetSpec::Offset(42), false)
        );
        assert_eq!(
            spec(&["--shift-by", "-5"]).unwrap(),
            (ResetSpec::ShiftBy(-5), false)
        );
        assert!(spec(&[]).is_err());
        assert!(spec(&["--to-earliest", "--to-latest"]).is_err());
    }

    #[test]
    fn kv_parser() {
        assert_eq!(parse_kv("a=b").unwrap(), ("a".into(), "b".into()));
        assert_eq!(parse_kv("a=").unwrap(), ("a".into(), "".into()));
        assert!(parse_kv("=b").is_err());
        assert!(parse_kv("ab").is_err());
    }

    #[test]
    fn topic_names() {
        assert!(check_topic_name("orders.v1-a_b").is_ok());
        assert!(check_topic_name("").is_err());
        assert!(check_topic_name("..").is_err());
        assert!(check_topic_name("a b").is_err());
        assert!(check_topic_name(&"x".repeat(250)).is_err());
        assert!(check_topic_name(&"x".repeat(249)).is_ok());
    }

    #[test]
    fn produce_and_consume_flags() {
        let c = parse(&["produce", "t", "--key", "k", "--partition", "2"]).unwrap();
        match c.command {
            Command::Produce(p) => {
                assert_eq!(p.key.as_deref(), Some("k"));
                assert_eq!(p.partition, Some(2));
            }
            other => panic!("{other:?}"),
        }
        let c = parse(&["consume", "t", "--from-beginning", "--max", "10"]).unwrap();
        match c.command {
            Command::Consume(a) => {
                assert!(a.from_beginning);
                assert_eq!(a.max, Some(10));
                assert_eq!(a.partition, None);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["consume", "t", "--partition", "-1"]).is_err());
    }
}
