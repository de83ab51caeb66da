//! DescribeConfigs (key 32, versions 1–4), AlterConfigs (key 33, versions 0–2) and
//! IncrementalAlterConfigs (key 44, versions 0–1).
//!
//! Topic configs are stored as overrides in `__meta`; DescribeConfigs returns every known topic
//! config with its source: DYNAMIC_TOPIC_CONFIG (1) for an override, STATIC_BROKER_CONFIG (4)
//! when the operator set the broker-level default (file, environment, command line),
//! DEFAULT_CONFIG (5) otherwise. Broker configs come from `chronik.toml` and are read-only at run
//! time; their source is STATIC_BROKER_CONFIG or DEFAULT_CONFIG the same way.

use std::collections::BTreeMap;

use chronik_core::acl;
use chronik_core::meta::MetaCommand;
use chronik_core::topic_config::{self, ConfigType};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::ResponseError;

use super::{meta_error, str_bytes, Ctx};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// DescribeConfigs source of a broker setting: DEFAULT_CONFIG unless the operator set the
/// `chronik.toml` key (file, environment, command line or a preset), then STATIC_BROKER_CONFIG.
fn broker_source(ctx: &Ctx<'_>, key: &str) -> i8 {
    debug_assert!(
        chronik_core::config::KEYS.iter().any(|k| k.key == key),
        "{key} is not a config key"
    );
    match ctx.broker.shared.config.origin(key) {
        chronik_core::config::Origin::Default => SOURCE_DEFAULT,
        _ => SOURCE_STATIC_BROKER,
    }
}

/// Source of a topic config's broker-level default (`retention.ms` from `log_retention_ms`).
fn topic_default_source(ctx: &Ctx<'_>, topic_config: &str) -> i8 {
    crate::shared::TOPIC_DEFAULT_KEYS
        .iter()
        .find(|(name, _)| *name == topic_config)
        .map_or(SOURCE_STATIC_BROKER, |(_, key)| broker_source(ctx, key))
}

/// Broker configs shown by DescribeConfigs: Kafka name, the `chronik.toml` key it comes from,
/// value, type.
fn broker_configs(ctx: &Ctx<'_>) -> Vec<(&'static str, &'static str, String, ConfigType)> {
    let c = &ctx.broker.shared.config;
    let b = &c.broker;
    vec![
        (
            "broker.id",
            "cluster.node_id",
            ctx.broker.shared.node_id.to_string(),
            ConfigType::Int,
        ),
        (
            "auto.create.topics.enable",
            "broker.auto_create_topics_enable",
            b.auto_create_topics_enable.to_string(),
            ConfigType::Boolean,
        ),
        (
            "delete.topic.enable",
            "broker.delete_topic_enable",
            b.delete_topic_enable.to_string(),
            ConfigType::Boolean,
        ),
        (
            "num.partitions",
            "broker.num_partitions",
            b.num_partitions.to_string(),
            ConfigType::Int,
        ),
        (
            "default.replication.factor",
            "broker.default_replication_factor",
            b.default_replication_factor.to_string(),
            ConfigType::Int,
        ),
        (
            "min.insync.replicas",
            "broker.min_insync_replicas",
            b.min_insync_replicas.to_string(),
            ConfigType::Int,
        ),
        (
            "message.max.bytes",
            "broker.message_max_bytes",
            b.message_max_bytes.to_string(),
            ConfigType::Int,
        ),
        (
            "log.retention.ms",
            "broker.log_retention_ms",
            b.log_retention_ms.to_string(),
            ConfigType::Long,
        ),
        (
            "log.retention.bytes",
            "broker.log_retention_bytes",
            b.log_retention_bytes.to_string(),
            ConfigType::Long,
        ),
        (
            "log.segment.bytes",
            "broker.log_segment_bytes",
            b.log_segment_bytes.to_string(),
            ConfigType::Int,
        ),
        (
            "log.message.timestamp.type",
            "broker.log_message_timestamp_type",
            b.log_message_timestamp_type.to_string(),
            ConfigType::String,
        ),
        (
            "log.dirs",
            "server.data_dir",
            c.server.data_dir.display().to_string(),
            ConfigType::String,
        ),
        (
            "sasl.enabled.mechanisms",
            "server.sasl_mechanisms",
            crate::sasl::Mechanism::parse_list(&c.server.sasl_mechanisms)
                .unwrap_or_default()
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(","),
            ConfigType::List,
        ),
        (
            "offsets.topic.num.partitions",
            "broker.offsets_topic_num_partitions",
            b.offsets_topic_num_partitions.to_string(),
            ConfigType::Int,
        ),
        (
            "offsets.topic.replication.factor",
            "broker.offsets_topic_replication_factor",
            b.offsets_topic_replication_factor.to_string(),
            ConfigType::Int,
        ),
        (
            "transaction.state.log.num.partitions",
            "broker.transaction_state_log_num_partitions",
            b.transaction_state_log_num_partitions.to_string(),
            ConfigType::Int,
        ),
        (
            "transaction.max.timeout.ms",
            "broker.transaction_max_timeout_ms",
            b.transaction_max_timeout_ms.to_string(),
            ConfigType::Int,
        ),
        (
            "group.initial.rebalance.delay.ms",
            "broker.group_initial_rebalance_delay_ms",
            b.group_initial_rebalance_delay_ms.to_string(),
            ConfigType::Int,
        ),
        (
            "group.min.session.timeout.ms",
            "broker.group_min_session_timeout_ms",
            b.group_min_session_timeout_ms.to_string(),
            ConfigType::Int,
        ),
        (
            "group.max.session.timeout.ms",
            "broker.group_max_session_timeout_ms",
            b.group_max_session_timeout_ms.to_string(),
            ConfigType::Int,
        ),
        (
            "socket.request.max.bytes",
            "server.socket_request_max_bytes",
            c.server.socket_request_max_bytes.to_string(),
            ConfigType::Int,
        ),
    ]
}

/// The broker config a topic config falls back to (Kafka's `ServerTopicConfigSynonyms`), which
/// DescribeConfigs names among the synonyms.
fn broker_synonym(topic_config: &str) -> &str {
    match topic_config {
        "cleanup.policy" => "log.cleanup.policy",
        "delete.retention.ms" => "log.cleaner.delete.retention.ms",
        "file.delete.delay.ms" => "log.segment.delete.delay.ms",
        "flush.messages" => "log.flush.interval.messages",
        "flush.ms" => "log.flush.interval.ms",
        "index.interval.bytes" => "log.index.interval.bytes",
        "max.compaction.lag.ms" => "log.cleaner.max.compaction.lag.ms",
        "max.message.bytes" => "message.max.bytes",
        "message.timestamp.after.max.ms" => "log.message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms" => "log.message.timestamp.before.max.ms",
        "message.timestamp.type" => "log.message.timestamp.type",
        "min.cleanable.dirty.ratio" => "log.cleaner.min.cleanable.ratio",
        "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms",
        "preallocate" => "log.preallocate",
        "retention.bytes" => "log.retention.bytes",
        "retention.ms" => "log.retention.ms",
        "segment.bytes" => "log.segment.bytes",
        "segment.index.bytes" => "log.index.size.max.bytes",
        "segment.jitter.ms" => "log.roll.jitter.ms",
        "segment.ms" => "log.roll.ms",
        "message.downconversion.enable" => "log.message.downconversion.enable",
        // compression.type, min.insync.replicas, unclean.leader.election.enable: same name.
        other => other,
    }
}

pub fn describe(ctx: &Ctx<'_>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let mut results = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let keys: Option<Vec<String>> = r
            .configuration_keys
            .as_ref()
            .map(|ks| ks.iter().map(|k| k.as_str().to_string()).collect());
        let wanted = |name: &str| keys.as_ref().is_none_or(|ks| ks.iter().any(|k| k == name));
        let mut res = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        if let Some((code, msg)) = refusal(
            ctx,
            r.resource_type,
            r.resource_name.as_str(),
            acl::op::DESCRIBE_CONFIGS,
        ) {
            results.push(
                res.with_error_code(code)
                    .with_error_message(Some(str_bytes(msg))),
            );
            continue;
        }
        match r.resource_type {
            RESOURCE_TOPIC => match ctx.broker.topic(r.resource_name.as_str()) {
                None => {
                    res = res
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(Some(str_bytes(format!(
                            "topic '{}' does not exist",
                            r.resource_name.as_str()
                        ))))
                }
                Some(t) => {
                    let defaults = &ctx.broker.shared.topic_defaults;
                    let configs = topic_config::TOPIC_CONFIGS
                        .iter()
                        .filter(|d| wanted(d.name))
                        .map(|d| {
                            let (value, source) = if let Some(v) = t.configs.get(d.name) {
                                (v.clone(), SOURCE_TOPIC)
                            } else if let Some(v) = defaults.get(d.name) {
                                (v.clone(), topic_default_source(ctx, d.name))
                            } else {
                                (d.default.to_string(), SOURCE_DEFAULT)
                            };
                            // Kafka's synonyms, most specific first: the topic override,
                            // then the broker-level config it falls back to (by its broker name).
                            let mut synonyms = Vec::new();
                            if req.include_synonyms {
                                if source == SOURCE_TOPIC {
                                    synonyms.push(
                                        DescribeConfigsSynonym::default()
                                            .with_name(str_bytes(d.name))
                                            .with_value(Some(str_bytes(value.clone())))
                                            .with_source(SOURCE_TOPIC),
                                    );
                                }
                                let (broker_value, broker_source) = match defaults.get(d.name) {
                                    Some(v) => (v.clone(), topic_default_source(ctx, d.name)),
                                    None => (d.default.to_string(), SOURCE_DEFAULT),
                                };
                                synonyms.push(
                                    DescribeConfigsSynonym::default()
                                        .with_name(str_bytes(broker_synonym(d.name)))
                                        .with_value(Some(str_bytes(broker_value)))
                                        .with_source(broker_source),
                                );
                            }
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(d.name))
                                .with_value(Some(str_bytes(value)))
                                .with_read_only(false)
                                .with_config_source(source)
                                .with_is_sensitive(false)
                                .with_synonyms(synonyms)
                                .with_config_type(d.ty as i8)
                                .with_documentation(
                                    req.include_documentation.then(|| str_bytes(d.doc)),
                                )
                        })
                        .collect();
                    res = res.with_configs(configs);
                }
            },
            RESOURCE_BROKER => {
                let name = r.resource_name.as_str();
                if !name.is_empty() && name != ctx.broker.shared.node_id.to_string() {
                    res = res.with_error_code(ResponseError::InvalidRequest.code());
                } else {
                    let entry = |n: &str, v: String, source: i8, ty: ConfigType| {
                        DescribeConfigsResourceResult::default()
                            .with_name(str_bytes(n))
                            .with_value(Some(str_bytes(v)))
                            .with_read_only(true)
                            .with_config_source(source)
                            .with_is_sensitive(false)
                            .with_config_type(ty as i8)
                    };
                    let own = broker_configs(ctx);
                    let mut configs: Vec<_> = own
                        .iter()
                        .filter(|(n, ..)| wanted(n))
                        .map(|(n, key, v, ty)| entry(n, v.clone(), broker_source(ctx, key), *ty))
                        .collect();
                    // Every topic config's broker-level default, under its broker name (the
                    // synonym a topic's DescribeConfigs points at), as Kafka lists them.
                    let defaults = &ctx.broker.shared.topic_defaults;
                    for d in topic_config::TOPIC_CONFIGS {
                        let n = broker_synonym(d.name);
                        if !wanted(n) || own.iter().any(|(o, ..)| *o == n) {
                            continue;
                        }
                        let (v, source) = match defaults.get(d.name) {
                            Some(v) => (v.clone(), topic_default_source(ctx, d.name)),
                            None => (d.default.to_string(), SOURCE_DEFAULT),
                        };
                        configs.push(entry(n, v, source, d.ty));
                    }
                    res = res.with_configs(configs);
                }
            }
            _ => {
                res = res
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes("unsupported resource type")))
            }
        }
        results.push(res);
    }
    DescribeConfigsResponse::default().with_results(results)
}

/// Validates and applies topic config changes. `Err((code, message))` on failure.
/// The error for a config resource this client may not `operation` (DESCRIBE_CONFIGS or
/// ALTER_CONFIGS): topics are checked on the topic, broker configs on the cluster.
fn refusal(ctx: &Ctx<'_>, resource_type: i8, name: &str, operation: i8) -> Option<(i16, String)> {
    let (allowed, code) = match resource_type {
        RESOURCE_TOPIC => (
            ctx.allowed(operation, acl::resource::TOPIC, name),
            ResponseError::TopicAuthorizationFailed,
        ),
        _ => (
            ctx.cluster_allowed(operation),
            ResponseError::ClusterAuthorizationFailed,
        ),
    };
    (!allowed).then(|| (code.code(), "Authorization failed.".to_string()))
}

async fn change_topic(
    ctx: &Ctx<'_>,
    resource_type: i8,
    name: &str,
    changes: BTreeMap<String, Option<String>>,
    replace: bool,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    if let Some(refused) = refusal(ctx, resource_type, name, acl::op::ALTER_CONFIGS) {
        return Err(refused);
    }
    if resource_type == RESOURCE_BROKER {
        return Err((
            ResponseError::InvalidConfig.code(),
            "broker configs are static: change chronik.toml or CHRONIK_* and restart".into(),
        ));
    }
    if resource_type != RESOURCE_TOPIC {
        return Err((
            ResponseError::InvalidRequest.code(),
            "unsupported resource type".into(),
        ));
    }
    if ctx.broker.topic(name).is_none() {
        return Err((
            ResponseError::UnknownTopicOrPartition.code(),
            format!("topic '{name}' does not exist"),
        ));
    }
    for (k, v) in &changes {
        match v {
            Some(v) => topic_config::validate(k, v),
            None => topic_config::find(k)
                .map(|_| ())
                .ok_or_else(|| format!("unknown topic config '{k}'")),
        }
        .map_err(|m| (ResponseError::InvalidConfig.code(), m))?;
    }
    if validate_only {
        return Ok(());
    }
    ctx.broker
        .propose_meta(MetaCommand::AlterTopicConfigs {
            name: name.to_string(),
            changes,
            replace,
        })
        .await
        .map_err(|e| meta_error(&e))
}

pub async fn alter(ctx: &Ctx<'_>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let changes = r
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.as_str().to_string(),
                    c.value.as_ref().map(|v| v.as_str().to_string()),
                )
            })
            .collect();
        let out = change_topic(
            ctx,
            r.resource_type,
            r.resource_name.as_str(),
            changes,
            true,
            req.validate_only,
        )
        .await;
        let mut resp = alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        if let Err((code, msg)) = out {
            resp = resp
                .with_error_code(code)
                .with_error_message(Some(str_bytes(msg)));
        }
        responses.push(resp);
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn incremental_alter(
    ctx: &Ctx<'_>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let current = ctx
            .broker
            .topic(r.resource_name.as_str())
            .map(|t| t.configs)
            .unwrap_or_default();
        let mut changes: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut bad = None;
        for c in &r.configs {
            let key = c.name.as_str().to_string();
            let value = c.value.as_ref().map(|v| v.as_str().to_string());
            let list_of = |k: &str| {
                changes
                    .get(k)
                    .cloned()
                    .flatten()
                    .or_else(|| current.get(k).cloned())
                    .or_else(|| topic_config::find(k).map(|d| d.default.to_string()))
                    .unwrap_or_default()
            };
            match c.config_operation {
                0 => {
                    changes.insert(key, value);
                }
                1 => {
                    changes.insert(key, None);
                }
                2 | 3 => {
                    let is_list =
                        topic_config::find(&key).is_some_and(|d| d.ty == ConfigType::List);
                    if !is_list {
                        bad = Some(format!("{key} is not a list config"));
                        break;
                    }
                    let mut items: Vec<String> = list_of(&key)
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                    for v in value
                        .unwrap_or_default()
                        .split(',')
                        .map(|s| s.trim().to_string())
                    {
                        if c.config_operation == 2 {
                            if !v.is_empty() && !items.contains(&v) {
                                items.push(v);
                            }
                        } else {
                            items.retain(|i| *i != v);
                        }
                    }
                    changes.insert(key, Some(items.join(",")));
                }
                op => {
                    bad = Some(format!("unknown config operation {op}"));
                    break;
                }
            }
        }
        let out = match bad {
            Some(m) => Err((ResponseError::InvalidConfig.code(), m)),
            None => {
                change_topic(
                    ctx,
                    r.resource_type,
                    r.resource_name.as_str(),
                    changes,
                    false,
                    req.validate_only,
                )
                .await
            }
        };
        let mut resp = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        if let Err((code, msg)) = out {
            resp = resp
                .with_error_code(code)
                .with_error_message(Some(str_bytes(msg)));
        }
        responses.push(resp);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
