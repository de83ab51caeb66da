//! ElectLeaders (key 43), versions 0–2: preferred (0) and unclean (1) leader elections.
//!
//! Every partition's only replica, and so its preferred one, is this node, which leads it as soon
//! as its Raft group has elected: a led partition needs no election (ELECTION_NOT_NEEDED); one
//! whose group has not elected yet cannot be helped by asking (PREFERRED_LEADER_NOT_AVAILABLE /
//! ELIGIBLE_LEADERS_NOT_AVAILABLE, which clients retry). As in Kafka, a request for all partitions
//! (null list) reports only the partitions where an election was needed.

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{str_bytes, Ctx};

/// Kafka's `ElectionType`.
const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

pub fn handle(ctx: &Ctx<'_>, req: ElectLeadersRequest) -> ElectLeadersResponse {
    let meta = ctx.broker.meta();
    let shared = &ctx.broker.shared;
    // v0 has no election type: it is always a preferred election.
    let election_type = if ctx.version == 0 {
        PREFERRED
    } else {
        req.election_type
    };
    let elect = |group: u64| -> Result<(), (ResponseError, &'static str)> {
        if election_type != PREFERRED && election_type != UNCLEAN {
            return Err((ResponseError::InvalidRequest, "Unknown election type."));
        }
        if shared.leader_epoch(group) >= 0 {
            return Err((
                ResponseError::ElectionNotNeeded,
                "Leader election not needed for topic partition.",
            ));
        }
        Err(if election_type == PREFERRED {
            (
                ResponseError::PreferredLeaderNotAvailable,
                "The preferred leader was not available.",
            )
        } else {
            (
                ResponseError::EligibleLeadersNotAvailable,
                "Eligible topic partition leaders are not available.",
            )
        })
    };
    let result = |partition_id: i32, r: Result<(), (ResponseError, &'static str)>| {
        let p = PartitionResult::default().with_partition_id(partition_id);
        match r {
            Ok(()) => p,
            Err((e, msg)) => p
                .with_error_code(e.code())
                .with_error_message(Some(str_bytes(msg))),
        }
    };
    let mut results = Vec::new();
    match req.topic_partitions {
        None => {
            for t in meta.topics.values() {
                let partition_result: Vec<PartitionResult> = t
                    .partitions
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| {
                        let r = elect(p.group);
                        let not_needed = matches!(r, Err((ResponseError::ElectionNotNeeded, _)));
                        (!not_needed).then(|| result(i as i32, r))
                    })
                    .collect();
                if !partition_result.is_empty() {
                    results.push(
                        ReplicaElectionResult::default()
                            .with_topic(TopicName(str_bytes(t.name.clone())))
                            .with_partition_result(partition_result),
                    );
                }
            }
        }
        Some(list) => {
            for tp in list {
                let topic = meta.topics.get(tp.topic.0.as_str());
                let partition_result = tp
                    .partitions
                    .iter()
                    .map(|&i| {
                        let owner = topic.and_then(|t| {
                            usize::try_from(i).ok().and_then(|i| t.partitions.get(i))
                        });
                        match owner {
                            Some(p) => result(i, elect(p.group)),
                            None => result(
                                i,
                                Err((
                                    ResponseError::UnknownTopicOrPartition,
                                    "This server does not host this topic-partition.",
                                )),
                            ),
                        }
                    })
                    .collect();
                results.push(
                    ReplicaElectionResult::default()
                        .with_topic(tp.topic)
                        .with_partition_result(partition_result),
                );
            }
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}
