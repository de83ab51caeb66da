//! Named presets (`CHRONIK_WAL_PROFILE`, `CHRONIK_PRODUCE_PROFILE`, from the
//! configuration reference's tuning advice). A preset fills in a few keys
//! unless the operator set them explicitly (file, env or CLI): explicit keys
//! always win, and choosing another preset replaces the previous preset's
//! values.

use super::keys;
use super::value::{ProduceProfile, WalProfile};
use super::{Config, Origin};

const WAL_PROFILE_KEY: &str = "cluster.storage.wal_profile";
const PRODUCE_PROFILE_KEY: &str = "broker.produce_profile";

/// Keys and values a WAL preset sets (every preset names the same keys, so
/// switching presets leaves nothing behind).
pub fn wal_preset(p: WalProfile) -> &'static [(&'static str, &'static str)] {
    match p {
        WalProfile::Durable => &[
            ("cluster.storage.wal_sync_mode", "always"),
            ("cluster.storage.wal_sync_interval_ms", "10"),
            ("cluster.storage.wal_segment_size", "268435456"),
        ],
        WalProfile::Balanced => &[
            ("cluster.storage.wal_sync_mode", "periodic"),
            ("cluster.storage.wal_sync_interval_ms", "10"),
            ("cluster.storage.wal_segment_size", "268435456"),
        ],
        WalProfile::HighThroughput => &[
            ("cluster.storage.wal_sync_mode", "periodic"),
            ("cluster.storage.wal_sync_interval_ms", "50"),
            ("cluster.storage.wal_segment_size", "268435456"),
        ],
        WalProfile::Ultra => &[
            ("cluster.storage.wal_sync_mode", "periodic"),
            ("cluster.storage.wal_sync_interval_ms", "100"),
            ("cluster.storage.wal_segment_size", "536870912"),
        ],
    }
}

/// Keys and values a produce preset sets.
pub fn produce_preset(p: ProduceProfile) -> &'static [(&'static str, &'static str)] {
    match p {
        ProduceProfile::LowLatency => &[
            ("cluster.raft.max_payload_entries", "100"),
            ("cluster.raft.max_in_flight", "1000"),
        ],
        ProduceProfile::Balanced => &[
            ("cluster.raft.max_payload_entries", "1000"),
            ("cluster.raft.max_in_flight", "1000"),
        ],
        ProduceProfile::HighThroughput => &[
            ("cluster.raft.max_payload_entries", "5000"),
            ("cluster.raft.max_in_flight", "5000"),
        ],
    }
}

/// Whether `key` is one of the preset selectors.
pub(crate) fn is_profile_key(key: &str) -> bool {
    key == WAL_PROFILE_KEY || key == PRODUCE_PROFILE_KEY
}

fn apply(cfg: &mut Config, preset: &[(&'static str, &'static str)], by: &'static str) {
    for (key, value) in preset {
        if !matches!(cfg.origin(key), Origin::Default | Origin::Profile(_)) {
            continue;
        }
        let def = keys::find(key).expect("preset names a registered key");
        (def.set_text)(cfg, value).expect("preset values parse");
        cfg.set_origin(def.key, Origin::Profile(by));
    }
}

/// Apply the selected presets to keys not set explicitly.
pub(crate) fn apply_profiles(cfg: &mut Config) {
    if let Some(p) = cfg.cluster.storage.wal_profile {
        apply(cfg, wal_preset(p), WAL_PROFILE_KEY);
    }
    if let Some(p) = cfg.broker.produce_profile {
        apply(cfg, produce_preset(p), PRODUCE_PROFILE_KEY);
    }
}
