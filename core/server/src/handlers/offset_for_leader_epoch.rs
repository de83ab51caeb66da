//! OffsetForLeaderEpoch (key 23), versions 2–4: the end offset of a leader epoch, used by
//! consumers to detect log truncation after a leader change.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use crate::calls::{Call, Reply};

use super::Ctx;

pub async fn handle(
    ctx: &Ctx<'_>,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let (meta, missing) =
            ctx.authorized_topic(chronik_core::acl::op::DESCRIBE, t.topic.0.as_str());
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let owner = meta
                .as_ref()
                .and_then(|m| m.partitions.get(p.partition as usize).cloned());
            let mut r = EpochEndOffset::default()
                .with_partition(p.partition)
                .with_leader_epoch(-1)
                .with_end_offset(-1);
            match owner {
                None => r = r.with_error_code(missing),
                Some(o) => {
                    let call = Call::EpochEnd {
                        group: o.group,
                        epoch: p.leader_epoch,
                    };
                    match ctx.broker.call(o.shard as usize, call).await {
                        Some(Reply::EpochEnd {
                            error,
                            epoch,
                            end_offset,
                        }) => {
                            r = r
                                .with_error_code(error)
                                .with_leader_epoch(epoch)
                                .with_end_offset(end_offset)
                        }
                        _ => r = r.with_error_code(ResponseError::NotLeaderOrFollower.code()),
                    }
                }
            }
            partitions.push(r);
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
