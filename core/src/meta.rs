//! Cluster metadata: the state machine replicated by the `__meta` Raft group (group 0).
//!
//! Topics, their partitions' Raft groups and owning shards, topic configs and the producer-id
//! high-water mark live here. Every change is a [`MetaCommand`] proposed to group 0; every node
//! applies the same commands in the same order, so [`MetaState::apply`] must be deterministic:
//! no clocks, no randomness (ids such as topic UUIDs are chosen by the proposer and carried in the
//! command).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::acl::AclBinding;
use crate::quota::{QuotaEntity, QuotaOp, Quotas};

/// Raft group id of the metadata group.
pub const META_GROUP: u64 = 0;
/// Internal topic holding consumer-group state and committed offsets.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Largest number of partitions one topic may have.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;
/// Largest topic name (Kafka's limit).
pub const MAX_TOPIC_NAME_BYTES: usize = 249;
/// Producer ids are handed out to shards in blocks of this size.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// One partition: its Raft group and the shard (core index) that owns it on every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    pub group: u64,
    pub shard: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// Kafka topic id (UUID as u128).
    pub id: u128,
    pub partitions: Vec<PartitionMeta>,
    /// Topic-level config overrides (`retention.ms`, ...). Defaults are not stored.
    pub configs: BTreeMap<String, String>,
    pub internal: bool,
}

/// A stored SCRAM credential, as Kafka keeps it: the client-chosen salt, the salted password
/// (`Hi(password, salt, iterations)`) and the iteration count. The password itself is never sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub salted_password: Vec<u8>,
    pub iterations: i32,
}

/// A change to the metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Fixes the shard count of this cluster's layout (first command ever applied).
    Init {
        shards: u32,
    },
    CreateTopic {
        name: String,
        id: u128,
        partitions: i32,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        total: i32,
    },
    /// Sets (`Some`) or removes (`None`) topic config keys; `replace` first clears all overrides
    /// (legacy AlterConfigs semantics).
    AlterTopicConfigs {
        name: String,
        changes: BTreeMap<String, Option<String>>,
        replace: bool,
    },
    /// Reserves the next block of producer ids.
    AllocateProducerIds,
    /// Removes and sets SCRAM credentials, keyed by (user, mechanism code). The proposer has
    /// validated the request (at most one change per user, known mechanisms, iteration bounds);
    /// removing a credential that is gone is a no-op.
    AlterScramCredentials {
        deletions: Vec<(String, i8)>,
        upsertions: Vec<(String, i8, ScramCredential)>,
    },
    /// Adds ACLs (validated by the proposer); adding one that exists is a no-op.
    CreateAcls {
        bindings: Vec<AclBinding>,
    },
    /// Removes these ACLs (the proposer resolved the DeleteAcls filters); removing one that is
    /// gone is a no-op.
    DeleteAcls {
        bindings: Vec<AclBinding>,
    },
    /// Sets (`Some`) and removes (`None`) client quota keys per entity (validated by the
    /// proposer with `quota::validate_alteration`).
    AlterClientQuotas {
        alterations: Vec<(QuotaEntity, Vec<QuotaOp>)>,
    },
}

/// Why a command was not applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("invalid topic name '{0}': {1}")]
    InvalidTopic(String, &'static str),
    #[error("invalid partition count {0}")]
    InvalidPartitions(i32),
    #[error("metadata not initialised")]
    NotInitialised,
}

impl MetaError {
    /// The Kafka error code for this failure.
    pub fn kafka_code(&self) -> i16 {
        match self {
            MetaError::TopicExists(_) => 36,       // TOPIC_ALREADY_EXISTS
            MetaError::UnknownTopic(_) => 3,       // UNKNOWN_TOPIC_OR_PARTITION
            MetaError::InvalidTopic(..) => 17,     // INVALID_TOPIC_EXCEPTION
            MetaError::InvalidPartitions(_) => 37, // INVALID_PARTITIONS
            MetaError::NotInitialised => 5,        // LEADER_NOT_AVAILABLE
        }
    }
}

/// The replicated metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    pub shards: u32,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Next Raft group id to hand out (0 is `__meta`).
    pub next_group: u64,
    /// Partitions owned per shard (for balanced placement).
    pub shard_load: Vec<u32>,
    /// Producer ids below this are reserved.
    pub producer_id_high: i64,
    /// SCRAM credentials: user → mechanism code → credential.
    #[serde(default)]
    pub scram: BTreeMap<String, BTreeMap<i8, ScramCredential>>,
    /// Access control lists (CreateAcls/DeleteAcls), enforced when authorization is on.
    #[serde(default)]
    pub acls: BTreeSet<AclBinding>,
    /// Client quotas (AlterClientQuotas), enforced on produce and fetch byte rates.
    #[serde(default, with = "crate::quota::as_entries")]
    pub quotas: Quotas,
}

/// Checks a topic name the way Kafka does.
pub fn validate_topic_name(name: &str) -> Result<(), MetaError> {
    let bad = |why| Err(MetaError::InvalidTopic(name.to_string(), why));
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if name.len() > MAX_TOPIC_NAME_BYTES {
        return bad("longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII alphanumerics, '.', '_' and '-' are allowed");
    }
    Ok(())
}

impl MetaState {
    /// Topic id → name, for requests that name topics by id (Fetch v13+, Metadata v10+). Built
    /// once per metadata image by its users, not per request.
    pub fn id_index(&self) -> std::collections::HashMap<u128, String> {
        self.topics
            .values()
            .map(|t| (t.id, t.name.clone()))
            .collect()
    }

    /// Applies one committed command. Errors leave the state unchanged.
    pub fn apply(&mut self, cmd: &MetaCommand) -> Result<(), MetaError> {
        match cmd {
            MetaCommand::Init { shards } => {
                if self.shards == 0 {
                    self.shards = (*shards).max(1);
                    self.shard_load = vec![0; self.shards as usize];
                    self.next_group = self.next_group.max(1);
                    self.producer_id_high = self.producer_id_high.max(0);
                }
                Ok(())
            }
            MetaCommand::CreateTopic {
                name,
                id,
                partitions,
                configs,
            } => {
                if self.shards == 0 {
                    return Err(MetaError::NotInitialised);
                }
                validate_topic_name(name)?;
                if self.topics.contains_key(name) {
                    return Err(MetaError::TopicExists(name.clone()));
                }
                if *partitions < 1 || *partitions > MAX_PARTITIONS_PER_TOPIC {
                    return Err(MetaError::InvalidPartitions(*partitions));
                }
                let mut topic = TopicMeta {
                    name: name.clone(),
                    id: *id,
                    partitions: Vec::with_capacity(*partitions as usize),
                    configs: configs.clone(),
                    internal: name.starts_with("__"),
                };
                for _ in 0..*partitions {
                    let p = self.place();
                    topic.partitions.push(p);
                }
                self.topics.insert(name.clone(), topic);
                Ok(())
            }
            MetaCommand::DeleteTopic { name } => {
                let t = self
                    .topics
                    .remove(name)
                    .ok_or_else(|| MetaError::UnknownTopic(name.clone()))?;
                for p in &t.partitions {
                    if let Some(l) = self.shard_load.get_mut(p.shard as usize) {
                        *l = l.saturating_sub(1);
                    }
                }
                Ok(())
            }
            MetaCommand::CreatePartitions { name, total } => {
                let current = self
                    .topics
                    .get(name)
                    .ok_or_else(|| MetaError::UnknownTopic(name.clone()))?
                    .partitions
                    .len() as i32;
                if *total <= current || *total > MAX_PARTITIONS_PER_TOPIC {
                    return Err(MetaError::InvalidPartitions(*total));
                }
                let mut added = Vec::new();
                for _ in current..*total {
                    added.push(self.place());
                }
                self.topics
                    .get_mut(name)
                    .expect("checked above")
                    .partitions
                    .extend(added);
                Ok(())
            }
            MetaCommand::AlterTopicConfigs {
                name,
                changes,
                replace,
            } => {
                let t = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| MetaError::UnknownTopic(name.clone()))?;
                if *replace {
                    t.configs.clear();
                }
                for (k, v) in changes {
                    match v {
                        Some(v) => {
                            t.configs.insert(k.clone(), v.clone());
                        }
                        None => {
                            t.configs.remove(k);
                        }
                    }
                }
                Ok(())
            }
            MetaCommand::AllocateProducerIds => {
                self.producer_id_high += PRODUCER_ID_BLOCK;
                Ok(())
            }
            MetaCommand::AlterScramCredentials {
                deletions,
                upsertions,
            } => {
                for (user, mechanism) in deletions {
                    if let Some(creds) = self.scram.get_mut(user) {
                        creds.remove(mechanism);
                        if creds.is_empty() {
                            self.scram.remove(user);
                        }
                    }
                }
                for (user, mechanism, cred) in upsertions {
                    self.scram
                        .entry(user.clone())
                        .or_default()
                        .insert(*mechanism, cred.clone());
                }
                Ok(())
            }
            MetaCommand::CreateAcls { bindings } => {
                self.acls.extend(bindings.iter().cloned());
                Ok(())
            }
            MetaCommand::DeleteAcls { bindings } => {
                for b in bindings {
                    self.acls.remove(b);
                }
                Ok(())
            }
            MetaCommand::AlterClientQuotas { alterations } => {
                for (entity, ops) in alterations {
                    crate::quota::apply_alteration(&mut self.quotas, entity, ops);
                }
                Ok(())
            }
        }
    }

    /// Next partition placement: a fresh group on the least-loaded shard (lowest index on ties),
    /// so placement is balanced and the same on every node.
    fn place(&mut self) -> PartitionMeta {
        let (shard, _) = self
            .shard_load
            .iter()
            .enumerate()
            .min_by_key(|&(i, l)| (*l, i))
            .expect("initialised with at least one shard");
        self.shard_load[shard] += 1;
        let group = self.next_group;
        self.next_group += 1;
        PartitionMeta {
            group,
            shard: shard as u32,
        }
    }

    /// Checks internal consistency (tests and the simulator call this after every step).
    pub fn check_invariants(&self) {
        let mut load = vec![0u32; self.shards as usize];
        let mut groups = std::collections::BTreeSet::new();
        for t in self.topics.values() {
            for p in &t.partitions {
                assert!(
                    p.group >= 1 && p.group < self.next_group,
                    "group id out of range"
                );
                assert!(groups.insert(p.group), "group {} used twice", p.group);
                load[p.shard as usize] += 1;
            }
        }
        assert_eq!(load, self.shard_load, "shard load out of sync");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, n: i32) -> MetaCommand {
        MetaCommand::CreateTopic {
            name: name.into(),
            id: 7,
            partitions: n,
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn placement_is_balanced_and_deterministic() {
        let mut a = MetaState::default();
        a.apply(&MetaCommand::Init { shards: 2 }).unwrap();
        a.apply(&create("t1", 3)).unwrap();
        a.apply(&create("t2", 3)).unwrap();
        a.check_invariants();
        assert_eq!(a.shard_load, vec![3, 3]);
        let mut b = MetaState::default();
        for c in [
            MetaCommand::Init { shards: 2 },
            create("t1", 3),
            create("t2", 3),
        ] {
            b.apply(&c).unwrap();
        }
        assert_eq!(a, b);
    }

    #[test]
    fn errors_leave_state_unchanged() {
        let mut s = MetaState::default();
        assert_eq!(s.apply(&create("t", 1)), Err(MetaError::NotInitialised));
        s.apply(&MetaCommand::Init { shards: 1 }).unwrap();
        s.apply(&create("t", 2)).unwrap();
        let before = s.clone();
        assert!(matches!(
            s.apply(&create("t", 1)),
            Err(MetaError::TopicExists(_))
        ));
        assert!(matches!(
            s.apply(&create("bad name", 1)),
            Err(MetaError::InvalidTopic(..))
        ));
        assert!(matches!(
            s.apply(&create("z", 0)),
            Err(MetaError::InvalidPartitions(0))
        ));
        let shrink = MetaCommand::CreatePartitions {
            name: "t".into(),
            total: 1,
        };
        assert!(s.apply(&shrink).is_err());
        assert_eq!(s, before);
        s.apply(&MetaCommand::CreatePartitions {
            name: "t".into(),
            total: 4,
        })
        .unwrap();
        s.apply(&MetaCommand::DeleteTopic { name: "t".into() })
            .unwrap();
        s.check_invariants();
        assert_eq!(s.shard_load, vec![0]);
    }

    #[test]
    fn config_changes() {
        let mut s = MetaState::default();
        s.apply(&MetaCommand::Init { shards: 1 }).unwrap();
        s.apply(&create("t", 1)).unwrap();
        let mut ch = BTreeMap::new();
        ch.insert("retention.ms".to_string(), Some("10".to_string()));
        s.apply(&MetaCommand::AlterTopicConfigs {
            name: "t".into(),
            changes: ch,
            replace: false,
        })
        .unwrap();
        assert_eq!(s.topics["t"].configs["retention.ms"], "10");
        let mut ch = BTreeMap::new();
        ch.insert("retention.ms".to_string(), None);
        s.apply(&MetaCommand::AlterTopicConfigs {
            name: "t".into(),
            changes: ch,
            replace: false,
        })
        .unwrap();
        assert!(s.topics["t"].configs.is_empty());
    }

    #[test]
    fn scram_credentials_are_set_replaced_and_removed() {
        let cred = |it: i32| ScramCredential {
            salt: vec![1, 2],
            salted_password: vec![3; 32],
            iterations: it,
        };
        let mut s = MetaState::default();
        s.apply(&MetaCommand::AlterScramCredentials {
            deletions: vec![],
            upsertions: vec![
                ("alice".into(), 1, cred(4096)),
                ("bob".into(), 2, cred(8192)),
            ],
        })
        .unwrap();
        s.apply(&MetaCommand::AlterScramCredentials {
            deletions: vec![("bob".into(), 2), ("carol".into(), 1)],
            upsertions: vec![
                ("alice".into(), 1, cred(5000)),
                ("alice".into(), 2, cred(4096)),
            ],
        })
        .unwrap();
        assert_eq!(
            s.scram.len(),
            1,
            "bob's last credential went, and bob with it"
        );
        assert_eq!(s.scram["alice"][&1].iterations, 5000);
        assert_eq!(s.scram["alice"][&2].iterations, 4096);
        // A state written before SCRAM existed still reads.
        let old =
            r#"{"shards":1,"topics":{},"next_group":1,"shard_load":[0],"producer_id_high":0}"#;
        let st: MetaState = serde_json::from_str(old).unwrap();
        assert!(st.scram.is_empty() && st.acls.is_empty());
    }

    #[test]
    fn acls_are_added_once_and_removed() {
        use crate::acl::{op, pattern, permission, resource};
        let b = |name: &str| AclBinding {
            resource_type: resource::TOPIC,
            resource_name: name.into(),
            pattern_type: pattern::LITERAL,
            principal: "User:a".into(),
            host: "*".into(),
            operation: op::READ,
            permission: permission::ALLOW,
        };
        let mut s = MetaState::default();
        s.apply(&MetaCommand::CreateAcls {
            bindings: vec![b("x"), b("y"), b("x")],
        })
        .unwrap();
        assert_eq!(s.acls.len(), 2);
        s.apply(&MetaCommand::DeleteAcls {
            bindings: vec![b("x"), b("gone")],
        })
        .unwrap();
        assert_eq!(s.acls.iter().collect::<Vec<_>>(), vec![&b("y")]);
        // Commands survive the log's JSON encoding.
        let cmd = MetaCommand::CreateAcls {
            bindings: vec![b("z")],
        };
        let back: MetaCommand = serde_json::from_slice(&serde_json::to_vec(&cmd).unwrap()).unwrap();
        assert_eq!(back, cmd);
    }

    #[test]
    fn client_quotas_apply_and_survive_json() {
        use crate::quota::{QuotaValue, PRODUCER_BYTE_RATE, USER};
        let alice = vec![(USER.to_string(), Some("alice".to_string()))];
        let cmd = MetaCommand::AlterClientQuotas {
            alterations: vec![(
                alice.clone(),
                vec![(PRODUCER_BYTE_RATE.to_string(), Some(QuotaValue(1024.5)))],
            )],
        };
        let back: MetaCommand = serde_json::from_slice(&serde_json::to_vec(&cmd).unwrap()).unwrap();
        assert_eq!(back, cmd);
        let mut s = MetaState::default();
        s.apply(&cmd).unwrap();
        assert_eq!(s.quotas[&alice][PRODUCER_BYTE_RATE], QuotaValue(1024.5));
        let state: MetaState = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(state, s);
        s.apply(&MetaCommand::AlterClientQuotas {
            alterations: vec![(alice, vec![(PRODUCER_BYTE_RATE.to_string(), None)])],
        })
        .unwrap();
        assert!(s.quotas.is_empty());
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("a.b_c-1").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
        assert!(validate_topic_name("a/b").is_err());
    }
}
