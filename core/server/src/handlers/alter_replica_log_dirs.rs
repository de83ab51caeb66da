//! AlterReplicaLogDirs (key 34), versions 1–2.
//!
//! This broker has one log directory (DescribeLogDirs reports it), so every replica already
//! lives where it can live: moving a partition to that directory succeeds at once as a no-op,
//! any other path is LOG_DIR_NOT_FOUND ("not found in the config", as Kafka says), and a
//! partition this broker does not have is UNKNOWN_TOPIC_OR_PARTITION. Kafka answers each
//! (topic, partition) once, grouped by topic.

use std::path::Path;

use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::{AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse};
use kafka_protocol::ResponseError;

use super::describe_log_dirs::log_dir;
use super::Ctx;

pub fn handle(ctx: &Ctx<'_>, req: AlterReplicaLogDirsRequest) -> AlterReplicaLogDirsResponse {
    let meta = ctx.broker.meta();
    let ours = log_dir(ctx);
    let mut results: Vec<AlterReplicaLogDirTopicResult> = Vec::new();
    for dir in &req.dirs {
        let path = Path::new(dir.path.as_str());
        let same = std::fs::canonicalize(path).is_ok_and(|p| p == ours) || path == ours;
        for t in &dir.topics {
            let topic = meta.topics.get(t.name.0.as_str());
            let parts = t.partitions.iter().map(|&i| {
                let known =
                    topic.is_some_and(|t| usize::try_from(i).is_ok_and(|i| i < t.partitions.len()));
                let code = if !same {
                    ResponseError::LogDirNotFound.code()
                } else if !known {
                    ResponseError::UnknownTopicOrPartition.code()
                } else {
                    0
                };
                AlterReplicaLogDirPartitionResult::default()
                    .with_partition_index(i)
                    .with_error_code(code)
            });
            match results.iter_mut().find(|r| r.topic_name == t.name) {
                Some(r) => r.partitions.extend(parts),
                None => results.push(
                    AlterReplicaLogDirTopicResult::default()
                        .with_topic_name(t.name.clone())
                        .with_partitions(parts.collect()),
                ),
            }
        }
    }
    AlterReplicaLogDirsResponse::default().with_results(results)
}
