//! DescribeProducers (key 61), version 0: the idempotent producers each partition's leader
//! tracks (the same table that deduplicates retried batches).
//!
//! `current_txn_start_offset` is the first offset of the producer's open transaction in the
//! partition (from the partition's transaction index; -1 outside a transaction), which
//! `kafka-transactions.sh find-hanging` reads. `coordinator_epoch` is -1: markers here carry
//! coordinator epoch 0 and the partition does not keep it.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::ResponseError;

use chronik_core::acl;

use super::admin::report_partitions;
use super::Ctx;

pub async fn handle(ctx: &Ctx<'_>, req: DescribeProducersRequest) -> DescribeProducersResponse {
    let meta = ctx.broker.meta();
    let mut topics = Vec::with_capacity(req.topics.len());
    for rt in req.topics {
        // Kafka asks READ on the topic; refused topics answer TOPIC_AUTHORIZATION_FAILED.
        let allowed = ctx.allowed(acl::op::READ, acl::resource::TOPIC, rt.name.0.as_str());
        let missing = if allowed {
            ResponseError::UnknownTopicOrPartition
        } else {
            ResponseError::TopicAuthorizationFailed
        }
        .code();
        let t = meta.topics.get(rt.name.0.as_str()).filter(|_| allowed);
        // Owners of the known partitions; unknown ones answer UNKNOWN_TOPIC_OR_PARTITION.
        let owners: Vec<_> = rt
            .partition_indexes
            .iter()
            .map(|&i| {
                t.and_then(|t| usize::try_from(i).ok().and_then(|i| t.partitions.get(i)))
                    .cloned()
            })
            .collect();
        let known: Vec<_> = owners.iter().flatten().cloned().collect();
        let mut reports = report_partitions(ctx.broker, &known, true)
            .await
            .into_iter();
        let partitions = rt
            .partition_indexes
            .iter()
            .zip(&owners)
            .map(|(&index, owner)| {
                let r = PartitionResponse::default().with_partition_index(index);
                if owner.is_none() {
                    return r.with_error_code(missing);
                }
                match reports.next().flatten() {
                    Some(rep) if rep.error == 0 => r.with_active_producers(
                        rep.producers
                            .iter()
                            .map(|p| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(p.producer_id))
                                    .with_producer_epoch(i32::from(p.epoch))
                                    .with_last_sequence(p.last_sequence)
                                    .with_last_timestamp(p.last_timestamp_ms)
                                    .with_coordinator_epoch(-1)
                                    .with_current_txn_start_offset(p.current_txn_start_offset)
                            })
                            .collect(),
                    ),
                    Some(rep) => r.with_error_code(rep.error),
                    None => r.with_error_code(ResponseError::NotLeaderOrFollower.code()),
                }
            })
            .collect();
        topics.push(
            TopicResponse::default()
                .with_name(rt.name)
                .with_partitions(partitions),
        );
    }
    DescribeProducersResponse::default().with_topics(topics)
}
