//! ListOffsets (key 2), versions 1–10: latest (-1), earliest (-2), max timestamp (-3, v7),
//! earliest local (-4, v8; the log start here, nothing being tiered), latest tiered (-5, v9;
//! offset -1, as Kafka without remote storage) and by timestamp. v10's timeout is moot: every
//! answer is local. With `isolation_level` 1 (read_committed, v2+) latest is the last stable
//! offset.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use crate::calls::{Call, Reply};

use super::Ctx;

pub async fn handle(ctx: &Ctx<'_>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let (meta, missing) =
            ctx.authorized_topic(chronik_core::acl::op::DESCRIBE, t.name.0.as_str());
        let futs = t.partitions.into_iter().map(|p| {
            let owner = meta
                .as_ref()
                .and_then(|m| m.partitions.get(p.partition_index as usize).cloned());
            async move {
                let mut r = ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_timestamp(-1)
                    .with_offset(-1)
                    .with_leader_epoch(-1);
                match owner {
                    None => r = r.with_error_code(missing),
                    Some(o) => {
                        let call = Call::ListOffsets {
                            group: o.group,
                            timestamp: p.timestamp,
                            isolation: req.isolation_level,
                        };
                        match ctx.broker.call(o.shard as usize, call).await {
                            Some(Reply::ListOffsets(l)) => {
                                r = r
                                    .with_error_code(l.error)
                                    .with_offset(l.offset)
                                    .with_timestamp(l.timestamp);
                                if ctx.version >= 4 {
                                    r = r.with_leader_epoch(l.leader_epoch);
                                }
                            }
                            _ => r = r.with_error_code(ResponseError::NotLeaderOrFollower.code()),
                        }
                    }
                }
                r
            }
        });
        let partitions = futures::future::join_all(futs).await;
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}
