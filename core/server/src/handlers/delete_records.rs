//! DeleteRecords (key 21), versions 0–2: moves partitions' log start offsets.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

use crate::calls::{Call, Reply};

use super::Ctx;

pub async fn handle(ctx: &Ctx<'_>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let (meta, missing) =
            ctx.authorized_topic(chronik_core::acl::op::DELETE, t.name.0.as_str());
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let owner = meta
                .as_ref()
                .and_then(|m| m.partitions.get(p.partition_index as usize).cloned());
            let mut r = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            match owner {
                None => r = r.with_error_code(missing),
                Some(o) => {
                    let call = Call::DeleteRecords {
                        group: o.group,
                        offset: p.offset,
                    };
                    match ctx.broker.call(o.shard as usize, call).await {
                        Some(Reply::DeleteRecords(d)) => {
                            r = r
                                .with_error_code(d.error)
                                .with_low_watermark(d.log_start_offset)
                        }
                        _ => r = r.with_error_code(ResponseError::NotLeaderOrFollower.code()),
                    }
                }
            }
            partitions.push(r);
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
