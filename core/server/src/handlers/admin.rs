//! Routing for the cluster-administration APIs (log dirs, producers, reassignments, elections,
//! ACLs, quotas, topic partition descriptions, SCRAM credentials, config resources, feature
//! updates, the metadata quorum), and the one cross-shard read they share: [`report_partitions`].
//!
//! Kept apart from `mod.rs`'s dispatch so adding an API here touches [`routes`] and
//! [`dispatch`], not the main match.

use std::rc::Rc;

use chronik_core::acl;
use chronik_core::meta::PartitionMeta;
use kafka_protocol::messages::{RequestKind, ResponseKind};

use crate::broker::Broker;
use crate::calls::{Call, PartitionReport, Reply};

use super::{
    acls, alter_replica_log_dirs, client_quotas, describe_log_dirs, describe_producers,
    describe_quorum, describe_topic_partitions, elect_leaders, list_config_resources,
    partition_reassignments, scram_credentials, update_features, Ctx,
};

/// Whether `req` is one of the admin APIs [`dispatch`] answers.
pub fn routes(req: &RequestKind) -> bool {
    matches!(
        req,
        RequestKind::DescribeLogDirs(_)
            | RequestKind::DescribeProducers(_)
            | RequestKind::ListPartitionReassignments(_)
            | RequestKind::AlterPartitionReassignments(_)
            | RequestKind::ElectLeaders(_)
            | RequestKind::DescribeAcls(_)
            | RequestKind::CreateAcls(_)
            | RequestKind::DeleteAcls(_)
            | RequestKind::DescribeClientQuotas(_)
            | RequestKind::AlterClientQuotas(_)
            | RequestKind::DescribeTopicPartitions(_)
            | RequestKind::DescribeUserScramCredentials(_)
            | RequestKind::AlterUserScramCredentials(_)
            | RequestKind::ListConfigResources(_)
            | RequestKind::AlterReplicaLogDirs(_)
            | RequestKind::UpdateFeatures(_)
            | RequestKind::DescribeQuorum(_)
    )
}

/// The answer to a cluster-wide admin request the client may not make (Kafka's operation on
/// the cluster resource for each API), or `None` to handle it.
fn refused(ctx: &Ctx<'_>, req: &RequestKind) -> Option<ResponseKind> {
    use acl::op::{ALTER, ALTER_CONFIGS, DESCRIBE, DESCRIBE_CONFIGS};
    use kafka_protocol::messages::*;
    let operation = match req {
        RequestKind::DescribeLogDirs(_)
        | RequestKind::ListPartitionReassignments(_)
        | RequestKind::DescribeUserScramCredentials(_)
        | RequestKind::DescribeQuorum(_) => DESCRIBE,
        RequestKind::AlterPartitionReassignments(_)
        | RequestKind::ElectLeaders(_)
        | RequestKind::AlterUserScramCredentials(_)
        | RequestKind::AlterReplicaLogDirs(_)
        | RequestKind::UpdateFeatures(_) => ALTER,
        RequestKind::DescribeClientQuotas(_) => DESCRIBE_CONFIGS,
        RequestKind::AlterClientQuotas(_) => ALTER_CONFIGS,
        _ => return None,
    };
    if ctx.cluster_allowed(operation) {
        return None;
    }
    let code = kafka_protocol::ResponseError::ClusterAuthorizationFailed.code();
    let msg = || Some(super::str_bytes("Cluster authorization failed."));
    Some(match req {
        RequestKind::DescribeLogDirs(_) => {
            ResponseKind::DescribeLogDirs(DescribeLogDirsResponse::default().with_error_code(code))
        }
        RequestKind::ListPartitionReassignments(_) => ResponseKind::ListPartitionReassignments(
            ListPartitionReassignmentsResponse::default()
                .with_error_code(code)
                .with_error_message(msg()),
        ),
        RequestKind::DescribeUserScramCredentials(_) => ResponseKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsResponse::default()
                .with_error_code(code)
                .with_error_message(msg()),
        ),
        RequestKind::DescribeQuorum(_) => ResponseKind::DescribeQuorum(
            DescribeQuorumResponse::default()
                .with_error_code(code)
                .with_error_message(msg()),
        ),
        RequestKind::AlterPartitionReassignments(_) => ResponseKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsResponse::default()
                .with_error_code(code)
                .with_error_message(msg()),
        ),
        RequestKind::ElectLeaders(_) => {
            ResponseKind::ElectLeaders(ElectLeadersResponse::default().with_error_code(code))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            use alter_user_scram_credentials_response::AlterUserScramCredentialsResult as R;
            let users = r
                .deletions
                .iter()
                .map(|d| d.name.clone())
                .chain(r.upsertions.iter().map(|u| u.name.clone()));
            ResponseKind::AlterUserScramCredentials(
                AlterUserScramCredentialsResponse::default().with_results(
                    users
                        .map(|u| {
                            R::default()
                                .with_user(u)
                                .with_error_code(code)
                                .with_error_message(msg())
                        })
                        .collect(),
                ),
            )
        }
        RequestKind::AlterReplicaLogDirs(r) => {
            use alter_replica_log_dirs_response::{
                AlterReplicaLogDirPartitionResult as P, AlterReplicaLogDirTopicResult as T,
            };
            let results = r
                .dirs
                .iter()
                .flat_map(|d| &d.topics)
                .map(|t| {
                    T::default()
                        .with_topic_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|&p| {
                                    P::default().with_partition_index(p).with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            ResponseKind::AlterReplicaLogDirs(
                AlterReplicaLogDirsResponse::default().with_results(results),
            )
        }
        RequestKind::UpdateFeatures(_) => ResponseKind::UpdateFeatures(
            UpdateFeaturesResponse::default()
                .with_error_code(code)
                .with_error_message(msg()),
        ),
        RequestKind::DescribeClientQuotas(_) => ResponseKind::DescribeClientQuotas(
            DescribeClientQuotasResponse::default()
                .with_error_code(code)
                .with_error_message(msg()),
        ),
        RequestKind::AlterClientQuotas(r) => {
            use alter_client_quotas_response::{EntityData, EntryData};
            ResponseKind::AlterClientQuotas(
                AlterClientQuotasResponse::default().with_entries(
                    r.entries
                        .iter()
                        .map(|e| {
                            EntryData::default()
                                .with_error_code(code)
                                .with_error_message(msg())
                                .with_entity(
                                    e.entity
                                        .iter()
                                        .map(|d| {
                                            EntityData::default()
                                                .with_entity_type(d.entity_type.clone())
                                                .with_entity_name(d.entity_name.clone())
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            )
        }
        _ => return None,
    })
}

/// Answers `req` if it is one of the admin APIs routed here; gives it back otherwise.
pub async fn dispatch(ctx: &Ctx<'_>, req: RequestKind) -> Result<ResponseKind, RequestKind> {
    if let Some(answer) = refused(ctx, &req) {
        return Ok(answer);
    }
    Ok(match req {
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(describe_log_dirs::handle(ctx, r).await)
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(describe_producers::handle(ctx, r).await)
        }
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(partition_reassignments::list(ctx, r))
        }
        RequestKind::AlterPartitionReassignments(r) => {
            ResponseKind::AlterPartitionReassignments(partition_reassignments::alter(ctx, r))
        }
        RequestKind::ElectLeaders(r) => ResponseKind::ElectLeaders(elect_leaders::handle(ctx, r)),
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(acls::describe(ctx, r)),
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(acls::create(ctx, r).await),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(acls::delete(ctx, r).await),
        RequestKind::DescribeClientQuotas(r) => {
            ResponseKind::DescribeClientQuotas(client_quotas::describe(ctx, r))
        }
        RequestKind::AlterClientQuotas(r) => {
            ResponseKind::AlterClientQuotas(client_quotas::alter(ctx, r).await)
        }
        RequestKind::DescribeTopicPartitions(r) => {
            ResponseKind::DescribeTopicPartitions(describe_topic_partitions::handle(ctx, r))
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            ResponseKind::DescribeUserScramCredentials(scram_credentials::describe(ctx, r))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            ResponseKind::AlterUserScramCredentials(scram_credentials::alter(ctx, r).await)
        }
        RequestKind::ListConfigResources(r) => {
            ResponseKind::ListConfigResources(list_config_resources::handle(ctx, r))
        }
        RequestKind::AlterReplicaLogDirs(r) => {
            ResponseKind::AlterReplicaLogDirs(alter_replica_log_dirs::handle(ctx, r))
        }
        RequestKind::UpdateFeatures(r) => {
            ResponseKind::UpdateFeatures(update_features::handle(ctx, r))
        }
        RequestKind::DescribeQuorum(r) => {
            ResponseKind::DescribeQuorum(describe_quorum::handle(ctx, r).await)
        }
        other => return Err(other),
    })
}

/// Reads [`PartitionReport`]s for `owners` from the shards that own them, one call per shard,
/// all shards at once. The answer is in `owners` order; `None` where the owning shard could not
/// be reached.
pub async fn report_partitions(
    broker: &Rc<Broker>,
    owners: &[PartitionMeta],
    producers: bool,
) -> Vec<Option<PartitionReport>> {
    let mut shards: Vec<u32> = owners.iter().map(|p| p.shard).collect();
    shards.sort_unstable();
    shards.dedup();
    let calls = shards.iter().map(|&shard| {
        let groups: Vec<u64> = owners
            .iter()
            .filter(|p| p.shard == shard)
            .map(|p| p.group)
            .collect();
        async move {
            let call = Call::Report { groups, producers };
            match broker.call(shard as usize, call).await {
                Some(Reply::Report(r)) => Some(r),
                _ => None,
            }
        }
    });
    let answers = futures::future::join_all(calls).await;
    // Hand each shard's answers back out in request order.
    let mut per_shard: Vec<Option<std::vec::IntoIter<PartitionReport>>> =
        answers.into_iter().map(|a| a.map(Vec::into_iter)).collect();
    owners
        .iter()
        .map(|p| {
            let k = shards.binary_search(&p.shard).ok()?;
            per_shard[k].as_mut()?.next()
        })
        .collect()
}
