//! ListPartitionReassignments (key 46, v0) and AlterPartitionReassignments (key 45, v0–1).
//!
//! Every partition's replica set is this node alone, and a reassignment here could only move a
//! partition to a broker that is not registered. So no reassignment is ever in progress (List
//! answers with none, Kafka's answer for an idle cluster), a target of exactly this node is
//! already in place (a completed no-op, as Kafka completes a reassignment to the current
//! replicas), and any other target fails validation with Kafka's own errors and messages.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, Ctx};

pub fn list(
    _ctx: &Ctx<'_>,
    _req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    // Kafka lists only ongoing reassignments and skips unknown topics and partitions; with a
    // single replica per partition nothing can be moving.
    ListPartitionReassignmentsResponse::default().with_topics(Vec::new())
}

pub fn alter(
    ctx: &Ctx<'_>,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let me = ctx.broker.shared.node_id;
    let meta = ctx.broker.meta();
    // Before v1 the flag does not exist and Kafka behaves as if it were true.
    let allow_rf_change = ctx.version < 1 || req.allow_replication_factor_change;
    let responses = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = meta.topics.get(t.name.0.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let exists = topic.is_some_and(|t| {
                        usize::try_from(p.partition_index).is_ok_and(|i| i < t.partitions.len())
                    });
                    let outcome = if exists {
                        check_target(me, p.replicas.as_deref(), allow_rf_change)
                    } else {
                        Err((
                            ResponseError::UnknownTopicOrPartition,
                            "This server does not host this topic-partition.".to_string(),
                        ))
                    };
                    let r = ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    match outcome {
                        Ok(()) => r,
                        Err((e, msg)) => r
                            .with_error_code(e.code())
                            .with_error_message(Some(str_bytes(msg))),
                    }
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_responses(responses)
}

/// Validates a reassignment of a partition whose only replica is broker `me` to `target`
/// (`None` cancels), with Kafka's errors and messages.
fn check_target(
    me: i32,
    target: Option<&[BrokerId]>,
    allow_rf_change: bool,
) -> Result<(), (ResponseError, String)> {
    let Some(target) = target else {
        return Err((
            ResponseError::NoReassignmentInProgress,
            "No partition reassignment is in progress for this partition.".to_string(),
        ));
    };
    let invalid = |msg: String| Err((ResponseError::InvalidReplicaAssignment, msg));
    if target.is_empty() {
        return invalid("The manual partition assignment includes an empty replica list.".into());
    }
    for (i, b) in target.iter().enumerate() {
        if target[..i].contains(b) {
            return invalid(format!(
                "The manual partition assignment includes the broker {} more than once.",
                b.0
            ));
        }
    }
    if let Some(b) = target.iter().find(|b| b.0 != me) {
        return invalid(format!(
            "The manual partition assignment includes broker {}, but no such broker is \
             registered.",
            b.0
        ));
    }
    // Only [me] is left, the current replica set: already in place.
    if !allow_rf_change && target.len() != 1 {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!(
                "The replication factor is changed from 1 to {} but \
                 allowReplicationFactorChange is false",
                target.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[i32]) -> Vec<BrokerId> {
        v.iter().map(|&b| BrokerId(b)).collect()
    }

    #[test]
    fn targets_are_validated_like_kafka() {
        assert_eq!(check_target(1, Some(&ids(&[1])), false), Ok(()));
        let code = |t: Option<&[BrokerId]>| check_target(1, t, true).unwrap_err().0;
        assert_eq!(code(None), ResponseError::NoReassignmentInProgress);
        assert_eq!(code(Some(&[])), ResponseError::InvalidReplicaAssignment);
        assert_eq!(
            code(Some(&ids(&[1, 1]))),
            ResponseError::InvalidReplicaAssignment
        );
        let (e, msg) = check_target(1, Some(&ids(&[1, 2])), true).unwrap_err();
        assert_eq!(e, ResponseError::InvalidReplicaAssignment);
        assert!(msg.contains("broker 2"), "{msg}");
        assert_eq!(
            code(Some(&ids(&[3]))),
            ResponseError::InvalidReplicaAssignment
        );
    }
}
