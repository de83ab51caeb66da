//! DescribeTopicPartitions (key 75), version 0 (KIP-966): topic descriptions paged by partition,
//! used by newer Java admin clients for `describeTopics`.
//!
//! Paging follows Kafka's `DescribeTopicPartitionsRequestHandler` and
//! `KRaftMetadataCache.describeTopicResponse`: topics sorted by name, starting at the cursor
//! (which must name a requested topic), at most `min(response_partition_limit,
//! MAX_PARTITIONS_PER_RESPONSE)` partitions (at least 1); `next_cursor` points at the first
//! partition not returned. An empty topic list means every topic.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, Ctx};

/// Kafka's `max.request.partition.size.limit` default: partitions per response at most.
pub const MAX_PARTITIONS_PER_RESPONSE: usize = 2000;

pub fn handle(
    ctx: &Ctx<'_>,
    req: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let meta = ctx.broker.meta();
    let shared = &ctx.broker.shared;
    let me = BrokerId(shared.node_id);
    let all = req.topics.is_empty();
    let cursor_topic = req
        .cursor
        .as_ref()
        .map(|c| c.topic_name.0.as_str().to_string())
        .unwrap_or_default();
    let mut names: Vec<String> = if all {
        meta.topics.keys().cloned().collect()
    } else {
        req.topics
            .iter()
            .map(|t| t.name.0.as_str().to_string())
            .collect()
    };
    names.retain(|n| *n >= cursor_topic);
    names.sort();
    names.dedup();
    let invalid = match &req.cursor {
        Some(c) if !all && !names.contains(&cursor_topic) => Some(format!(
            "DescribeTopicPartitionsRequest topic list should contain the cursor topic: {}",
            c.topic_name.0.as_str()
        )),
        Some(c) if c.partition_index < 0 => Some(format!(
            "DescribeTopicPartitionsRequest cursor partition must be valid: {}",
            c.partition_index
        )),
        _ => None,
    };
    if let Some(msg) = invalid {
        // Kafka fails the whole request: every requested topic gets INVALID_REQUEST.
        tracing::debug!("DescribeTopicPartitions: {msg}");
        let topics = req
            .topics
            .into_iter()
            .map(|t| {
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(t.name))
                    .with_error_code(ResponseError::InvalidRequest.code())
            })
            .collect();
        return DescribeTopicPartitionsResponse::default().with_topics(topics);
    }
    let limit = usize::try_from(req.response_partition_limit)
        .unwrap_or(0)
        .clamp(1, MAX_PARTITIONS_PER_RESPONSE);
    let mut remaining = limit;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        if remaining == 0 {
            // Everything before this topic was returned whole: resume at its start.
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(TopicName(str_bytes(name)))
                    .with_partition_index(0),
            );
            break;
        }
        let Some(t) = meta.topics.get(&name) else {
            if !all {
                let code = match chronik_core::meta::validate_topic_name(&name) {
                    Ok(()) => ResponseError::UnknownTopicOrPartition.code(),
                    Err(_) => ResponseError::InvalidTopicException.code(),
                };
                topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_name(Some(TopicName(str_bytes(name))))
                        .with_error_code(code),
                );
            }
            continue;
        };
        let start = if name == cursor_topic {
            req.cursor
                .as_ref()
                .map_or(0, |c| c.partition_index as usize)
        } else {
            0
        };
        let end = t.partitions.len().min(start.saturating_add(remaining));
        let partitions: Vec<_> = (start..end)
            .map(|i| {
                let epoch = shared.leader_epoch(t.partitions[i].group);
                let p = DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(i as i32)
                    .with_leader_id(me)
                    .with_leader_epoch(epoch.max(0))
                    .with_replica_nodes(vec![me])
                    .with_isr_nodes(vec![me])
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(Vec::new());
                if epoch < 0 {
                    // Not led yet (just created or restarting), as Metadata reports it.
                    p.with_error_code(ResponseError::LeaderNotAvailable.code())
                        .with_leader_id(BrokerId(-1))
                } else {
                    p
                }
            })
            .collect();
        let returned = partitions.len();
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(str_bytes(name.clone()))))
                .with_topic_id(uuid::Uuid::from_u128(t.id))
                .with_is_internal(t.internal)
                .with_topic_authorized_operations(super::acls::authorized_operations(
                    ctx,
                    chronik_core::acl::resource::TOPIC,
                    &name,
                    super::acls::TOPIC_OPERATIONS,
                ))
                .with_partitions(partitions),
        );
        if end < t.partitions.len() {
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(TopicName(str_bytes(name)))
                    .with_partition_index(end as i32),
            );
            break;
        }
        remaining -= returned;
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}
