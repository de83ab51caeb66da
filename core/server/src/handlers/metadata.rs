//! Metadata (key 3), versions 0–12. Unknown topics are created when the request allows it
//! (v4+ flag; always for v0–3) and `auto_create_topics_enable` is on; creation completes before
//! the answer, so the client sees the new topic's leaders at once.

use std::collections::BTreeMap;

use chronik_core::acl;
use chronik_core::meta::TopicMeta;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;

use super::create_topics::create_topic;
use super::{acls, str_bytes, Ctx};

pub async fn handle(ctx: &Ctx<'_>, req: MetadataRequest) -> MetadataResponse {
    let shared = &ctx.broker.shared;
    let me = BrokerId(shared.node_id);
    let mut topics = Vec::new();
    let all = match &req.topics {
        None => true,
        Some(list) => list.is_empty() && ctx.version == 0,
    };
    if all {
        let meta = ctx.broker.meta();
        for t in meta.topics.values() {
            // Topics the client may not see are left out, as on Kafka.
            if !ctx.allowed(acl::op::DESCRIBE, acl::resource::TOPIC, &t.name) {
                continue;
            }
            topics.push(describe_topic(
                ctx,
                t,
                req.include_topic_authorized_operations,
            ));
        }
    } else {
        let auto = shared.config.broker.auto_create_topics_enable
            && (ctx.version < 4 || req.allow_auto_topic_creation);
        for rt in req.topics.unwrap_or_default() {
            let by_id = (!rt.topic_id.is_nil()).then_some(rt.topic_id);
            let name = rt.name.as_ref().map(|n| n.0.as_str().to_string());
            let found = match (&name, by_id) {
                (Some(n), _) => ctx.broker.topic(n),
                (None, Some(id)) => {
                    let (meta, ids) = ctx.broker.meta_and_ids();
                    ids.get(&id.as_u128())
                        .and_then(|n| meta.topics.get(n))
                        .cloned()
                }
                (None, None) => None,
            };
            let visible = |n: &str| ctx.allowed(acl::op::DESCRIBE, acl::resource::TOPIC, n);
            let may_create = |n: &str| {
                ctx.cluster_allowed(acl::op::CREATE)
                    || ctx.allowed(acl::op::CREATE, acl::resource::TOPIC, n)
            };
            let refused = || {
                Err((
                    ResponseError::TopicAuthorizationFailed.code(),
                    String::new(),
                ))
            };
            let t = match (found, &name) {
                (Some(t), _) if !visible(&t.name) => refused(),
                (Some(t), _) => Ok(t),
                (None, Some(n)) if !visible(n) => refused(),
                (None, Some(n)) if auto && !n.starts_with("__") && !may_create(n) => refused(),
                (None, Some(n)) if auto && !n.starts_with("__") => {
                    let partitions = shared.config.broker.num_partitions.max(1) as i32;
                    create_topic(ctx, n, partitions, BTreeMap::new())
                        .await
                        .or_else(|e| {
                            // Lost a creation race with another client: fine.
                            ctx.broker.topic(n).ok_or(e)
                        })
                }
                (None, _) => Err((ResponseError::UnknownTopicOrPartition.code(), String::new())),
            };
            match t {
                Ok(t) => topics.push(describe_topic(
                    ctx,
                    &t,
                    req.include_topic_authorized_operations,
                )),
                Err((code, _)) => {
                    let code = if by_id.is_some()
                        && name.is_none()
                        && code == ResponseError::UnknownTopicOrPartition.code()
                    {
                        ResponseError::UnknownTopicId.code()
                    } else {
                        code
                    };
                    topics.push(
                        MetadataResponseTopic::default()
                            .with_error_code(code)
                            .with_name(name.map(|n| TopicName(str_bytes(n))))
                            .with_topic_id(by_id.unwrap_or_default()),
                    )
                }
            }
        }
    }
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(me)
            .with_host(str_bytes(shared.advertised_host.clone()))
            .with_port(shared.advertised_port as i32)
            .with_rack(shared.config.broker.rack_id.clone().map(str_bytes))])
        .with_cluster_id(Some(str_bytes(shared.cluster_id.clone())))
        .with_controller_id(me)
        .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
            acls::authorized_operations(
                ctx,
                acl::resource::CLUSTER,
                acl::CLUSTER_NAME,
                acls::CLUSTER_OPERATIONS,
            )
        } else {
            acls::NOT_REQUESTED
        })
        .with_topics(topics)
}

fn describe_topic(ctx: &Ctx<'_>, t: &TopicMeta, with_operations: bool) -> MetadataResponseTopic {
    let shared = &ctx.broker.shared;
    let me = BrokerId(shared.node_id);
    let partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let epoch = shared.leader_epoch(p.group);
            let mut part = MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_id(me)
                .with_leader_epoch(epoch.max(0))
                .with_replica_nodes(vec![me])
                .with_isr_nodes(vec![me]);
            if epoch < 0 {
                // Not led yet (just created or restarting): clients retry.
                part = part
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1));
            }
            part
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(t.name.clone()))))
        .with_topic_id(uuid::Uuid::from_u128(t.id))
        .with_is_internal(t.internal)
        .with_topic_authorized_operations(if with_operations {
            acls::authorized_operations(ctx, acl::resource::TOPIC, &t.name, acls::TOPIC_OPERATIONS)
        } else {
            acls::NOT_REQUESTED
        })
        .with_partitions(partitions)
}
