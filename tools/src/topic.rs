//! `topic list|describe|create|delete|alter-config`.

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::cli::check_topic_name;
use crate::client::{
    check_opt, topic_name, Client, PartitionInfo, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP,
};
use crate::error::{CtlError, Result};
use crate::output::{list, opt, Outcome, Render, Table};

/// DescribeConfigs / IncrementalAlterConfigs resource type of a topic.
pub const RESOURCE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs operations.
pub const OP_SET: i8 = 0;
pub const OP_DELETE: i8 = 1;
/// Most time the broker may take to create or delete a topic, in ms (less when the socket
/// timeout is shorter).
pub const ADMIN_TIMEOUT_MS: i32 = 30_000;

#[derive(Debug, Serialize)]
pub struct TopicRow {
    pub name: String,
    pub partitions: usize,
    pub internal: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TopicList {
    pub topics: Vec<TopicRow>,
}

pub fn list_topics(client: &mut Client, internal: bool) -> Result<TopicList> {
    let md = client.metadata(None)?;
    let mut topics: Vec<TopicRow> = md
        .topics
        .iter()
        .filter(|t| internal || !t.is_internal)
        .map(|t| TopicRow {
            name: t.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
            partitions: t.partitions.len(),
            internal: t.is_internal,
            error: (t.error_code != 0).then(|| crate::error::code_name(t.error_code)),
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(TopicList { topics })
}

impl Render for TopicList {
    fn render_table(&self) -> String {
        let mut t = Table::new(&["TOPIC", "PARTITIONS", "INTERNAL", "ERROR"]);
        for r in &self.topics {
            t.row(vec![
                r.name.clone(),
                r.partitions.to_string(),
                r.internal.to_string(),
                opt(r.error.as_deref()),
            ]);
        }
        t.render()
    }
}

#[derive(Debug, Serialize)]
pub struct PartitionRow {
    #[serde(flatten)]
    pub info: PartitionInfo,
    pub log_start_offset: Option<i64>,
    pub log_end_offset: Option<i64>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ConfigRow {
    pub name: String,
    pub value: Option<String>,
    pub source: String,
    pub read_only: bool,
    pub sensitive: bool,
}

#[derive(Debug, Serialize)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: Vec<PartitionRow>,
    pub configs: Vec<ConfigRow>,
}

/// Kafka's names for DescribeConfigs `config_source`.
pub fn config_source_name(s: i8) -> &'static str {
    match s {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

pub fn describe(client: &mut Client, topic: &str) -> Result<TopicDescription> {
    let parts = client.partitions(topic)?;
    let with_leader: Vec<PartitionInfo> = parts.iter().filter(|p| p.leader >= 0).cloned().collect();
    let start = client.list_offsets(topic, &with_leader, EARLIEST_TIMESTAMP)?;
    let end = client.list_offsets(topic, &with_leader, LATEST_TIMESTAMP)?;
    let partitions = parts
        .into_iter()
        .map(|info| PartitionRow {
            log_start_offset: start.get(&info.partition).copied(),
            log_end_offset: end.get(&info.partition).copied(),
            info,
        })
        .collect();
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configuration_keys(None)]);
    let (resp, _) = client.send_any(&req)?;
    let mut configs = Vec::new();
    for r in &resp.results {
        check_opt(r.error_code, r.error_message.as_ref(), || {
            format!("DescribeConfigs for topic '{topic}'")
        })?;
        for c in &r.configs {
            configs.push(ConfigRow {
                name: c.name.to_string(),
                value: c.value.as_ref().map(|v| v.to_string()),
                source: config_source_name(c.config_source).to_string(),
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            });
        }
    }
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(TopicDescription {
        name: topic.to_string(),
        partitions,
        configs,
    })
}

impl Render for TopicDescription {
    fn render_table(&self) -> String {
        let mut s = format!(
            "topic: {}  partitions: {}\n\n",
            self.name,
            self.partitions.len()
        );
        let mut t = Table::new(&[
            "PARTITION",
            "LEADER",
            "EPOCH",
            "REPLICAS",
            "ISR",
            "LOG-START",
            "LOG-END",
            "ERROR",
        ]);
        for p in &self.partitions {
            t.row(vec![
                p.info.partition.to_string(),
                p.info.leader.to_string(),
                p.info.leader_epoch.to_string(),
                list(&p.info.replicas),
                list(&p.info.isr),
                opt(p.log_start_offset),
                opt(p.log_end_offset),
                if p.info.error_code == 0 {
                    "-".into()
                } else {
                    crate::error::code_name(p.info.error_code)
                },
            ]);
        }
        s.push_str(&t.render());
        if !self.configs.is_empty() {
            s.push('\n');
            let mut t = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
            for c in &self.configs {
                let value = if c.sensitive {
                    "(sensitive)".to_string()
                } else {
                    opt(c.value.as_deref())
                };
                t.row(vec![c.name.clone(), value, c.source.clone()]);
            }
            s.push_str(&t.render());
        }
        s
    }
}

pub fn create(
    client: &mut Client,
    topic: &str,
    partitions: i32,
    replication_factor: Option<i16>,
    configs: &[(String, String)],
) -> Result<Outcome> {
    check_topic_name(topic)?;
    let version = client.any()?.version_for(ApiKey::CreateTopics)?;
    // -1 ("broker default") is only understood from v4 on; older brokers need a number.
    let rf = replication_factor.unwrap_or(if version >= 4 { -1 } else { 1 });
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(client.broker_wait_ms(ADMIN_TIMEOUT_MS))
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.clone()))
                            .with_value(Some(StrBytes::from_string(v.clone())))
                    })
                    .collect(),
            )]);
    let resp = client.any()?.send_at(&req, version)?;
    let r = resp
        .topics
        .iter()
        .find(|t| t.name.as_str() == topic)
        .ok_or_else(|| CtlError::Malformed(format!("CreateTopics answer lacks '{topic}'")))?;
    check_opt(r.error_code, r.error_message.as_ref(), || {
        format!("create topic '{topic}'")
    })?;
    Ok(Outcome {
        ok: true,
        message: format!("created topic '{topic}' with {partitions} partitions"),
    })
}

pub fn delete(client: &mut Client, topic: &str) -> Result<Outcome> {
    let version = client.any()?.version_for(ApiKey::DeleteTopics)?;
    // v6 moved names into `topics` (so ids could be used instead); before, `topic_names`.
    let req = if version >= 6 {
        DeleteTopicsRequest::default().with_topics(vec![
            DeleteTopicState::default().with_name(Some(topic_name(topic)))
        ])
    } else {
        DeleteTopicsRequest::default().with_topic_names(vec![topic_name(topic)])
    }
    .with_timeout_ms(client.broker_wait_ms(ADMIN_TIMEOUT_MS));
    let resp = client.any()?.send_at(&req, version)?;
    let r = resp
        .responses
        .iter()
        .find(|r| r.name.as_ref().map(|n| n.as_str()) == Some(topic))
        .ok_or_else(|| CtlError::Malformed(format!("DeleteTopics answer lacks '{topic}'")))?;
    check_opt(r.error_code, r.error_message.as_ref(), || {
        format!("delete topic '{topic}'")
    })?;
    Ok(Outcome {
        ok: true,
        message: format!("deleted topic '{topic}'"),
    })
}

pub fn alter_config(
    client: &mut Client,
    topic: &str,
    set: &[(String, String)],
    delete: &[String],
) -> Result<Outcome> {
    if set.is_empty() && delete.is_empty() {
        return Err(CtlError::Invalid(
            "alter-config needs at least one --set k=v or --delete k".into(),
        ));
    }
    let mut ops: Vec<AlterableConfig> = set
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(OP_SET)
                .with_value(Some(StrBytes::from_string(v.clone())))
        })
        .collect();
    ops.extend(delete.iter().map(|k| {
        AlterableConfig::default()
            .with_name(StrBytes::from_string(k.clone()))
            .with_config_operation(OP_DELETE)
            .with_value(None)
    }));
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(ops),
    ]);
    let (resp, _) = client.send_any(&req)?;
    for r in &resp.responses {
        check_opt(r.error_code, r.error_message.as_ref(), || {
            format!("alter configs of topic '{topic}'")
        })?;
    }
    Ok(Outcome {
        ok: true,
        message: format!(
            "topic '{topic}': set {} config(s), deleted {}",
            set.len(),
            delete.len()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_table_shows_offsets_and_configs() {
        let d = TopicDescription {
            name: "t".into(),
            partitions: vec![PartitionRow {
                info: PartitionInfo {
                    partition: 0,
                    leader: 1,
                    leader_epoch: 3,
                    replicas: vec![1],
                    isr: vec![1],
                    error_code: 0,
                },
                log_start_offset: Some(0),
                log_end_offset: Some(7),
            }],
            configs: vec![ConfigRow {
                name: "retention.ms".into(),
                value: Some("60000".into()),
                source: config_source_name(1).into(),
                read_only: false,
                sensitive: false,
            }],
        };
        assert_eq!(
            d.render_table(),
            "topic: t  partitions: 1\n\n\
             PARTITION  LEADER  EPOCH  REPLICAS  ISR  LOG-START  LOG-END  ERROR\n\
             0          1       3      1         1    0          7        -\n\n\
             CONFIG        VALUE  SOURCE\n\
             retention.ms  60000  DYNAMIC_TOPIC_CONFIG\n"
        );
        let v: serde_json::Value = serde_json::to_value(&d).unwrap();
        // The partition fields are flattened next to the offsets.
        assert_eq!(v["partitions"][0]["leader_epoch"], 3);
        assert_eq!(v["partitions"][0]["log_end_offset"], 7);
    }
}
