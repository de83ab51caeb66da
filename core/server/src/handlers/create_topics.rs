//! CreateTopics (key 19), versions 2–7.

use std::collections::BTreeMap;

use chronik_core::acl;
use chronik_core::meta::{validate_topic_name, MetaCommand, TopicMeta};
use chronik_core::topic_config;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::ResponseError;

use super::{meta_error, str_bytes, Ctx};

/// Kafka refuses a topic whose name equals an existing one's once '.' and '_' are taken as the
/// same character: both map to the same metric names. INVALID_TOPIC_EXCEPTION, with Kafka's
/// message. (Checked here, by the proposer, rather than when `__meta` applies the command, so
/// that replaying a log written before this check cannot drop a topic that existed. Two
/// creates of colliding names racing each other can therefore both pass.)
pub fn check_collision(ctx: &Ctx<'_>, name: &str) -> Result<(), (i16, String)> {
    if !name.contains(['.', '_']) {
        return Ok(());
    }
    let same = |a: u8, b: u8| a == b || (matches!(a, b'.' | b'_') && matches!(b, b'.' | b'_'));
    let meta = ctx.broker.meta();
    match meta.topics.keys().find(|t| {
        t.len() == name.len()
            && t.as_str() != name
            && t.bytes().zip(name.bytes()).all(|(a, b)| same(a, b))
    }) {
        Some(existing) => Err((
            ResponseError::InvalidTopicException.code(),
            format!("Topic '{name}' collides with existing topic: {existing}"),
        )),
        None => Ok(()),
    }
}

/// Creates a topic through `__meta` (used by CreateTopics and by auto-creation).
pub async fn create_topic(
    ctx: &Ctx<'_>,
    name: &str,
    partitions: i32,
    configs: BTreeMap<String, String>,
) -> Result<TopicMeta, (i16, String)> {
    check_collision(ctx, name)?;
    ctx.broker
        .propose_meta(MetaCommand::CreateTopic {
            name: name.to_string(),
            id: uuid::Uuid::new_v4().as_u128(),
            partitions,
            configs,
        })
        .await
        .map_err(|e| meta_error(&e))?;
    ctx.broker.topic(name).ok_or_else(|| {
        (
            ResponseError::UnknownServerError.code(),
            "topic vanished after creation".to_string(),
        )
    })
}

/// Checks the replication factor of a request against this cluster's size.
pub fn check_replication(rf: i16, brokers: i16) -> Result<(), (i16, String)> {
    if rf == -1 || (1..=brokers).contains(&rf) {
        Ok(())
    } else {
        Err((
            ResponseError::InvalidReplicationFactor.code(),
            format!("replication factor {rf} is larger than the {brokers} available broker(s)"),
        ))
    }
}

pub async fn handle(ctx: &Ctx<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let default_partitions = ctx.broker.shared.config.broker.num_partitions as i32;
    let quota = super::mutation_quota(ctx, 6);
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.as_str().to_string();
        let mut result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        let outcome: Result<TopicMeta, (i16, String)> = async {
            if !ctx.cluster_allowed(acl::op::CREATE)
                && !ctx.allowed(acl::op::CREATE, acl::resource::TOPIC, &name)
            {
                return Err((
                    ResponseError::TopicAuthorizationFailed.code(),
                    "Authorization failed.".to_string(),
                ));
            }
            validate_topic_name(&name).map_err(|e| meta_error(&e))?;
            if !t.assignments.is_empty() {
                // Manual replica placement: accepted when it names only this broker.
                let me = ctx.broker.shared.node_id;
                if t.assignments
                    .iter()
                    .any(|a| a.broker_ids.iter().any(|b| b.0 != me))
                {
                    return Err((
                        ResponseError::InvalidReplicaAssignment.code(),
                        format!("assignment names brokers other than {me}"),
                    ));
                }
            }
            check_replication(t.replication_factor, 1)?;
            let partitions = if t.num_partitions == -1 {
                if t.assignments.is_empty() {
                    default_partitions
                } else {
                    t.assignments.len() as i32
                }
            } else {
                t.num_partitions
            };
            let mut configs = BTreeMap::new();
            for c in &t.configs {
                let key = c.name.as_str();
                let Some(v) = c.value.as_ref() else { continue };
                topic_config::validate(key, v.as_str())
                    .map_err(|m| (ResponseError::InvalidConfig.code(), m))?;
                configs.insert(key.to_string(), v.as_str().to_string());
            }
            if ctx.broker.topic(&name).is_some() {
                return Err((
                    ResponseError::TopicAlreadyExists.code(),
                    format!("Topic '{name}' already exists."),
                ));
            }
            if partitions < 1 {
                return Err((
                    ResponseError::InvalidPartitions.code(),
                    "Number of partitions must be larger than 0.".to_string(),
                ));
            }
            if req.validate_only {
                check_collision(ctx, &name)?;
                return Ok(TopicMeta {
                    name: name.clone(),
                    id: 0,
                    partitions: vec![
                        chronik_core::meta::PartitionMeta { group: 0, shard: 0 };
                        partitions as usize
                    ],
                    configs,
                    internal: false,
                });
            }
            if let Some(refused) = super::mutation_refused(&quota) {
                return Err(refused);
            }
            let created = create_topic(ctx, &name, partitions, configs).await;
            if let (Ok(_), Some((q, _))) = (&created, &quota) {
                q.record(partitions as usize, crate::partition::now_ms());
            }
            created
        }
        .await;
        match outcome {
            Ok(meta) => {
                result = result
                    .with_topic_id(uuid::Uuid::from_u128(meta.id))
                    .with_num_partitions(meta.partitions.len() as i32)
                    .with_replication_factor(1);
                if ctx.version >= 5 {
                    let defaults = &ctx.broker.shared.topic_defaults;
                    let configs = topic_config::TOPIC_CONFIGS
                        .iter()
                        .map(|d| {
                            let value = topic_config::effective(d.name, &meta.configs, defaults)
                                .unwrap_or(d.default);
                            CreatableTopicConfigs::default()
                                .with_name(str_bytes(d.name))
                                .with_value(Some(str_bytes(value)))
                                .with_read_only(false)
                                .with_config_source(if meta.configs.contains_key(d.name) {
                                    1
                                } else if defaults.contains_key(d.name) {
                                    4
                                } else {
                                    5
                                })
                                .with_is_sensitive(false)
                        })
                        .collect();
                    result = result.with_configs(Some(configs));
                }
            }
            Err((code, msg)) => {
                result = result
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(msg)));
            }
        }
        results.push(result);
    }
    let throttle = super::mutation_throttle(ctx, &quota);
    CreateTopicsResponse::default()
        .with_topics(results)
        .with_throttle_time_ms(throttle)
}
