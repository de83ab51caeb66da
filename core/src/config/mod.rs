//! Broker configuration: `chronik.toml`, the flat cluster file, `CHRONIK_*`
//! environment variables, CLI overrides, validation and `validate-config`.
//!
//! Module map:
//! - [`model`]: the typed tree ([`Config`] and its sections) with defaults
//!   and derived addresses/directories (`wal_dir()`, `raft_peers()`, ...).
//! - [`value`]: value types (enums, core sets, seed nodes, peers) and their
//!   parsing from TOML and from text.
//! - [`keys`]: the registry of every key (dotted name, env var, doc); every
//!   source of settings goes through it.
//! - `load`: reading files (both formats), env overrides, unknown-key and
//!   type-error collection.
//! - `validate`: cross-key checks, every problem with its dotted key.
//! - `report`: the `validate-config` subcommand's output.
//!
//! Precedence, lowest to highest: defaults, the main file (`--config`, else
//! `CHRONIK_CONFIG`, else `./chronik.toml` if present), the flat cluster file
//! named by `CHRONIK_CLUSTER_CONFIG`, `CHRONIK_*` variables, then CLI
//! overrides the binary applies with [`Config::apply_overrides`].
//!
//! ```
//! use chronik_core::config::Config;
//! let env = |name: &str| match name {
//!     "CHRONIK_NODE_ID" => Some("2".to_string()),
//!     "CHRONIK_SEED_NODES" => Some("1@n1:9093,3@n3:9093".to_string()),
//!     "CHRONIK_CLUSTER_ENABLED" => Some("true".to_string()),
//!     _ => None,
//! };
//! let cfg = Config::load_str("[cluster.raft]\nelection_timeout_ms = 300\n", &env).unwrap();
//! assert_eq!(cfg.cluster.node_id, 2);
//! assert_eq!(cfg.cluster.raft.election_timeout_ms, 300);
//! assert_eq!(cfg.raft_peers().len(), 2);
//! assert!(cfg.validate().is_empty());
//! ```

pub mod keys;
mod load;
pub mod model;
pub mod profiles;
mod report;
mod validate;
pub use validate::{sasl_users, super_users};
pub mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

pub use keys::{KeyDef, KEYS};
pub use model::{
    BrokerConfig, ClusterConfig, Config, IsrConfig, NetworkConfig, RaftConfig, RaftPeer,
    ServerConfig, StorageConfig, NODE_ID_MAX, NODE_ID_MIN,
};
pub use report::{validate_config_main, validate_config_report};
pub use value::{
    join_host_port, split_host_port, Cores, DiscoveryMode, Peer, ProduceProfile, Secret, SeedNode,
    SnapshotCompression, SnapshotPolicy, TimestampType, WalProfile, WalSyncMode,
};

/// Environment variable naming the main config file.
pub const ENV_CONFIG_FILE: &str = "CHRONIK_CONFIG";
/// Environment variable naming the flat cluster file.
pub const ENV_CLUSTER_CONFIG_FILE: &str = "CHRONIK_CLUSTER_CONFIG";
/// Main config file used when neither `--config` nor `CHRONIK_CONFIG` is given.
pub const DEFAULT_CONFIG_FILE: &str = "chronik.toml";
/// Largest config file read. Why: the file is read whole before parsing;
/// real files are a few KiB, so 1 MiB bounds a mistaken path (a log, a disk).
pub const CONFIG_FILE_BYTES_MAX: u64 = 1 << 20;

/// One configuration problem, named by its dotted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key (`cluster.raft.heartbeat_interval_ms`), the key as written
    /// in a file for unknown keys, or the file path for unreadable files.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigIssue {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigIssue {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found while loading (and then validating) a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} configuration problem(s):\n{}", .issues.len(), render_issues(.issues))]
pub struct ConfigErrors {
    /// All problems, in file order then key order.
    pub issues: Vec<ConfigIssue>,
}

fn render_issues(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(|i| format!("  {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where a key's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built-in default.
    Default,
    /// A config file, with the key as written there.
    File {
        /// The file.
        path: PathBuf,
        /// The key as written (`raft.election_timeout_ms` in a flat file).
        written: String,
    },
    /// An environment variable.
    Env(&'static str),
    /// [`Config::set`] / [`Config::apply_overrides`] (CLI flags).
    Override,
    /// A preset, named by its selector key (`cluster.storage.wal_profile`).
    Profile(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, written } => write!(f, "{} ({written})", path.display()),
            Origin::Env(name) => write!(f, "env {name}"),
            Origin::Override => f.write_str("command line"),
            Origin::Profile(key) => write!(f, "preset {key}"),
        }
    }
}

/// Provenance of each key. Not part of a config's identity: two configs with
/// equal values compare equal whatever set them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origins(BTreeMap<&'static str, Origin>);

impl PartialEq for Origins {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Config {
    /// Where `key`'s effective value came from.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.0.get(key).cloned().unwrap_or(Origin::Default)
    }

    pub(crate) fn set_origin(&mut self, key: &'static str, origin: Origin) {
        self.origins.0.insert(key, origin);
    }

    /// Every key with its effective value (env-var text form) and origin, in
    /// registry order: the "effective configuration" dump.
    pub fn effective(&self) -> Vec<(&'static KeyDef, String, Origin)> {
        KEYS.iter()
            .map(|k| (k, k.value_of(self), self.origin(k.key)))
            .collect()
    }

    /// Set one key from text, as a CLI flag would. `key` may be the dotted
    /// key, a flat-file alias (`replication_factor`) or the env var name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigIssue> {
        let def = load::resolve_any(key)
            .ok_or_else(|| ConfigIssue::new(key, format!("unknown key{}", load::suggest(key))))?;
        (def.set_text)(self, value.trim())
            .map_err(|e| ConfigIssue::new(def.key, format!("{value:?}: {e}")))?;
        self.set_origin(def.key, Origin::Override);
        if profiles::is_profile_key(def.key) {
            profiles::apply_profiles(self);
        }
        Ok(())
    }

    /// Apply CLI overrides (highest precedence). All are attempted; every
    /// failure is returned together.
    pub fn apply_overrides<'a, I>(&mut self, overrides: I) -> Result<(), ConfigErrors>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let issues: Vec<ConfigIssue> = overrides
            .into_iter()
            .filter_map(|(k, v)| self.set(k, v).err())
            .collect();
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors { issues })
        }
    }
}
