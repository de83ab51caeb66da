//! DescribeQuorum (key 55), versions 0–2: the Raft quorum of the cluster metadata.
//!
//! Clients (Java `Admin.describeMetadataQuorum`, `kafka-metadata-quorum.sh`) ask for Kafka's
//! metadata log `__cluster_metadata` partition 0; here that log is the `__meta` Raft group, led
//! from shard 0, so the answer is that group's state: its term as the leader epoch, its commit
//! index as the high watermark and the leader's last index as its log end. Like Kafka's leader,
//! this node reports itself as fetched and caught up now; voters it cannot see report -1. There
//! are no observers (no broker replicates the metadata log without voting).

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use kafka_protocol::ResponseError;

use crate::calls::{Call, QuorumStatus, Reply};
use crate::partition::now_ms;

use super::{str_bytes, Ctx};

/// Kafka's name for the metadata log, which clients ask for.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(ctx: &Ctx<'_>, req: DescribeQuorumRequest) -> DescribeQuorumResponse {
    let valid = req.topics.len() == 1
        && req.topics[0].topic_name.0.as_str() == METADATA_TOPIC
        && req.topics[0].partitions.len() == 1
        && req.topics[0].partitions[0].partition_index == 0;
    if !valid {
        // Kafka's answer to anything but the metadata partition: a top-level error.
        return DescribeQuorumResponse::default()
            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
            .with_error_message(None);
    }
    let status = match ctx.broker.call(0, Call::QuorumStatus).await {
        Some(Reply::QuorumStatus(s)) => s,
        _ => None,
    };
    let shared = &ctx.broker.shared;
    let partition = describe(shared.node_id, status, now_ms());
    // Voter endpoints exist from v2 on (encoding them earlier is an error).
    let nodes = if ctx.version < 2 {
        Vec::new()
    } else {
        vec![Node::default()
            .with_node_id(BrokerId(shared.node_id))
            .with_listeners(vec![Listener::default()
                .with_name(str_bytes("PLAINTEXT"))
                .with_host(str_bytes(shared.advertised_host.clone()))
                .with_port(shared.advertised_port)])]
    };
    DescribeQuorumResponse::default()
        .with_error_message(None)
        .with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
            .with_partitions(vec![partition])])
        .with_nodes(nodes)
}

/// The partition entry for the metadata group's `status` as node `me` sees it at `now_ms`.
fn describe(me: i32, status: Option<QuorumStatus>, now_ms: i64) -> PartitionData {
    let p = PartitionData::default()
        .with_partition_index(0)
        .with_error_message(None);
    let Some(st) = status.filter(|s| s.leader) else {
        // Only the leader describes the quorum (Kafka answers the same way elsewhere).
        return p
            .with_error_code(ResponseError::NotLeaderOrFollower.code())
            .with_leader_id(BrokerId(-1))
            .with_leader_epoch(-1)
            .with_high_watermark(-1);
    };
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let voters = st
        .voters
        .iter()
        .filter_map(|&id| i32::try_from(id).ok())
        .map(|id| {
            let r = ReplicaState::default().with_replica_id(BrokerId(id));
            if id == me {
                r.with_log_end_offset(clamp(st.last_index))
                    .with_last_fetch_timestamp(now_ms)
                    .with_last_caught_up_timestamp(now_ms)
            } else {
                r.with_log_end_offset(-1)
                    .with_last_fetch_timestamp(-1)
                    .with_last_caught_up_timestamp(-1)
            }
        })
        .collect();
    p.with_leader_id(BrokerId(me))
        .with_leader_epoch(i32::try_from(st.term).unwrap_or(i32::MAX))
        .with_high_watermark(clamp(st.commit))
        .with_current_voters(voters)
        .with_observers(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_describes_itself_and_unknown_voters_report_minus_one() {
        let st = QuorumStatus {
            term: 3,
            commit: 41,
            last_index: 42,
            leader: true,
            voters: vec![1, 2],
        };
        let p = describe(1, Some(st.clone()), 1000);
        assert_eq!(p.error_code, 0);
        assert_eq!(
            (p.leader_id.0, p.leader_epoch, p.high_watermark),
            (1, 3, 41)
        );
        let v: Vec<(i32, i64, i64)> = p
            .current_voters
            .iter()
            .map(|r| (r.replica_id.0, r.log_end_offset, r.last_fetch_timestamp))
            .collect();
        assert_eq!(v, vec![(1, 42, 1000), (2, -1, -1)]);
        let follower = describe(
            1,
            Some(QuorumStatus {
                leader: false,
                ..st
            }),
            1000,
        );
        assert_eq!(
            follower.error_code,
            ResponseError::NotLeaderOrFollower.code()
        );
        assert_eq!(describe(1, None, 1000).leader_id.0, -1);
    }
}
