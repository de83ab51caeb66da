//! Every advertised version of every API, with requests that carry real content (a topic, a
//! partition, a group): each answer must decode completely at the version asked for, and the
//! broker must never fall back to its UNSUPPORTED_VERSION frame because a response failed to
//! encode. Old clients (kafkajs: Metadata v<=6, Produce v<=7, Fetch v<=11, ListOffsets v<=3,
//! JoinGroup v<=5; librdkafka 2.0) negotiate the low ends of these ranges.

mod common;

use std::fmt::Debug;

use bytes::{Buf, Bytes};
use common::{Server, Wire};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

fn group(v: &str) -> GroupId {
    GroupId(s(v))
}

/// `(api key, version)` pairs this test has sent.
static SWEPT: std::sync::Mutex<std::collections::BTreeSet<(i16, i16)>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Sends `req` as `key`/`version` and decodes the answer, which must use every byte.
fn call<Req: Encodable, Resp: Decodable + Debug>(
    w: &mut Wire,
    key: ApiKey,
    version: i16,
    req: &Req,
) -> Resp {
    // Shown only when the test fails: which request it was on.
    eprintln!("sweep: {key:?} v{version}");
    SWEPT.lock().unwrap().insert((key as i16, version));
    let corr = w.send(key, version, req);
    let frame = w
        .recv_frame()
        .unwrap_or_else(|| panic!("{key:?} v{version}: connection closed"));
    let mut buf = Bytes::from(frame);
    let header = ResponseHeader::decode(&mut buf, key.response_header_version(version))
        .unwrap_or_else(|e| panic!("{key:?} v{version}: header: {e}"));
    assert_eq!(header.correlation_id, corr, "{key:?} v{version}");
    let resp = Resp::decode(&mut buf, version)
        .unwrap_or_else(|e| panic!("{key:?} v{version}: body does not decode: {e}"));
    assert_eq!(
        buf.remaining(),
        0,
        "{key:?} v{version}: {} bytes left after {resp:?}",
        buf.remaining()
    );
    resp
}

/// Runs `$body` (an expression using `v`) for every advertised version of `$key` (none if the
/// key is not advertised: the coverage check at the end catches advertised keys without a case).
macro_rules! each_version {
    ($key:expr, |$v:ident| $body:expr) => {{
        if let Some((lo, hi)) = chronik_protocol::api::supported($key) {
            for $v in lo..=hi {
                $body;
            }
        }
    }};
}

fn batch() -> Vec<u8> {
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> = vec![(Some(b"k"), Some(b"v"))];
    chronik_protocol::batch::encode_batch(&kv, 1_700_000_000_000)
}

#[test]
fn every_advertised_version_answers_with_a_complete_response() {
    let srv = Server::start();
    let mut w = Wire::connect(srv.port);
    const T: &str = "sweep";

    each_version!(ApiKey::CreateTopics, |v| {
        use create_topics_request::CreatableTopic;
        let name = if v == 2 {
            T.to_string()
        } else {
            format!("{T}-{v}")
        };
        let r: CreateTopicsResponse = call(
            &mut w,
            ApiKey::CreateTopics,
            v,
            &CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic(&name))
                    .with_num_partitions(2)
                    .with_replication_factor(1)])
                .with_timeout_ms(10_000),
        );
        assert_eq!(r.topics[0].error_code, 0, "v{v} {r:?}");
    });
    each_version!(ApiKey::ApiVersions, |v| {
        let r: ApiVersionsResponse = call(
            &mut w,
            ApiKey::ApiVersions,
            v,
            &ApiVersionsRequest::default()
                .with_client_software_name(s("sweep"))
                .with_client_software_version(s("1.0")),
        );
        assert_eq!(r.error_code, 0, "v{v}");
    });
    let mut topic_id = uuid::Uuid::nil();
    each_version!(ApiKey::Metadata, |v| {
        use metadata_request::MetadataRequestTopic;
        let r: MetadataResponse = call(
            &mut w,
            ApiKey::Metadata,
            v,
            &MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(topic(T)))
                ]))
                .with_allow_auto_topic_creation(v < 4),
        );
        assert_eq!(r.topics[0].error_code, 0, "v{v} {r:?}");
        assert_eq!(r.topics[0].partitions.len(), 2);
        if v >= 10 {
            topic_id = r.topics[0].topic_id;
        }
    });
    assert!(!topic_id.is_nil());
    each_version!(ApiKey::Produce, |v| {
        use produce_request::{PartitionProduceData, TopicProduceData};
        let r: ProduceResponse = call(
            &mut w,
            ApiKey::Produce,
            v,
            &ProduceRequest::default()
                .with_transactional_id(None)
                .with_acks(-1)
                .with_timeout_ms(10_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic(T))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(batch())))])]),
        );
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0, "v{v}");
    });
    each_version!(ApiKey::Fetch, |v| {
        use fetch_request::{FetchPartition, FetchTopic};
        let mut t = FetchTopic::default().with_partitions(vec![FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(0)
            .with_partition_max_bytes(1 << 20)]);
        t = if v >= 13 {
            t.with_topic_id(topic_id)
        } else {
            t.with_topic(topic(T))
        };
        let r: FetchResponse = call(
            &mut w,
            ApiKey::Fetch,
            v,
            &FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(0)
                .with_min_bytes(1)
                .with_max_bytes(1 << 20)
                .with_topics(vec![t]),
        );
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "v{v}");
        assert!(p.records.as_ref().is_some_and(|b| !b.is_empty()), "v{v}");
    });
    each_version!(ApiKey::ListOffsets, |v| {
        use list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
        let mut list = |ts: i64| -> (i16, i64) {
            let r: ListOffsetsResponse = call(
                &mut w,
                ApiKey::ListOffsets,
                v,
                &ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(vec![ListOffsetsTopic::default()
                        .with_name(topic(T))
                        .with_partitions(vec![ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(ts)])]),
            );
            let p = &r.topics[0].partitions[0];
            (p.error_code, p.offset)
        };
        let (code, latest) = list(-1);
        assert_eq!(code, 0, "v{v}");
        assert!(latest >= 1, "v{v} latest {latest}");
        // v8: earliest local (-4) is the log start; v9: latest tiered (-5) is -1, nothing tiered.
        if v >= 8 {
            assert_eq!(list(-4), (0, 0), "v{v}");
        }
        if v >= 9 {
            assert_eq!(list(-5), (0, -1), "v{v}");
        }
    });
    each_version!(ApiKey::OffsetForLeaderEpoch, |v| {
        use offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
        let r: OffsetForLeaderEpochResponse = call(
            &mut w,
            ApiKey::OffsetForLeaderEpoch,
            v,
            &OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![OffsetForLeaderTopic::default()
                    .with_topic(topic(T))
                    .with_partitions(vec![OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(-1)
                        .with_leader_epoch(0)])]),
        );
        assert_eq!(r.topics[0].partitions.len(), 1, "v{v}");
    });

    // Groups: a fresh group per version, so no join waits for an earlier member.
    each_version!(ApiKey::FindCoordinator, |v| {
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("sweep-g")])
        } else {
            FindCoordinatorRequest::default().with_key(s("sweep-g"))
        };
        let r: FindCoordinatorResponse = call(&mut w, ApiKey::FindCoordinator, v, &req);
        if v >= 4 {
            assert_eq!(r.coordinators[0].error_code, 0, "v{v}");
        } else {
            assert_eq!(r.error_code, 0, "v{v}");
        }
    });
    each_version!(ApiKey::JoinGroup, |v| {
        use join_group_request::JoinGroupRequestProtocol;
        let g = format!("sweep-g-{v}");
        let join = |member: &str| {
            JoinGroupRequest::default()
                .with_group_id(group(&g))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_member_id(s(member))
                .with_group_instance_id(None)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(&[0, 1, 0, 0, 0, 0]))])
        };
        let mut r: JoinGroupResponse = call(&mut w, ApiKey::JoinGroup, v, &join(""));
        if r.error_code == 79 {
            // MEMBER_ID_REQUIRED (v4+): join again with the id handed out.
            let id = r.member_id.to_string();
            r = call(&mut w, ApiKey::JoinGroup, v, &join(&id));
        }
        assert_eq!(r.error_code, 0, "JoinGroup v{v} {r:?}");
        let member = r.member_id.to_string();
        let generation = r.generation_id;
        let sv = v.min(5);
        let sync: SyncGroupResponse = call(
            &mut w,
            ApiKey::SyncGroup,
            sv,
            &SyncGroupRequest::default()
                .with_group_id(group(&g))
                .with_generation_id(generation)
                .with_member_id(s(&member))
                .with_group_instance_id(None)
                .with_protocol_type(if sv >= 5 { Some(s("consumer")) } else { None })
                .with_protocol_name(if sv >= 5 { Some(s("range")) } else { None })
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(s(&member))
                        .with_assignment(Bytes::from_static(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0])),
                ]),
        );
        assert_eq!(sync.error_code, 0, "SyncGroup v{sv} {sync:?}");
        let hv = v.min(4);
        let hb: HeartbeatResponse = call(
            &mut w,
            ApiKey::Heartbeat,
            hv,
            &HeartbeatRequest::default()
                .with_group_id(group(&g))
                .with_generation_id(generation)
                .with_member_id(s(&member))
                .with_group_instance_id(None),
        );
        assert_eq!(hb.error_code, 0, "Heartbeat v{hv}");
    });
    each_version!(ApiKey::SyncGroup, |v| {
        let r: SyncGroupResponse = call(
            &mut w,
            ApiKey::SyncGroup,
            v,
            &SyncGroupRequest::default()
                .with_group_id(group("sweep-none"))
                .with_generation_id(1)
                .with_member_id(s("nobody"))
                .with_group_instance_id(None)
                .with_protocol_type(None)
                .with_protocol_name(None),
        );
        assert_ne!(r.error_code, 0, "v{v}");
    });
    each_version!(ApiKey::Heartbeat, |v| {
        let r: HeartbeatResponse = call(
            &mut w,
            ApiKey::Heartbeat,
            v,
            &HeartbeatRequest::default()
                .with_group_id(group("sweep-none"))
                .with_generation_id(1)
                .with_member_id(s("nobody"))
                .with_group_instance_id(None),
        );
        assert_ne!(r.error_code, 0, "v{v}");
    });
    each_version!(ApiKey::DescribeGroups, |v| {
        let r: DescribeGroupsResponse = call(
            &mut w,
            ApiKey::DescribeGroups,
            v,
            &DescribeGroupsRequest::default().with_groups(vec![group("sweep-g-0")]),
        );
        assert_eq!(r.groups[0].error_code, 0, "v{v}");
        assert_eq!(r.groups[0].members.len(), 1, "v{v} {r:?}");
    });
    each_version!(ApiKey::ListGroups, |v| {
        let r: ListGroupsResponse =
            call(&mut w, ApiKey::ListGroups, v, &ListGroupsRequest::default());
        assert_eq!(r.error_code, 0, "v{v}");
        assert!(
            r.groups
                .iter()
                .any(|g| g.group_id.0.as_str() == "sweep-g-0"),
            "v{v}"
        );
        if v >= 5 {
            assert!(r.groups.iter().all(|g| g.group_type.as_str() == "classic"));
            let none: ListGroupsResponse = call(
                &mut w,
                ApiKey::ListGroups,
                v,
                &ListGroupsRequest::default().with_types_filter(vec![s("consumer")]),
            );
            assert!(none.groups.is_empty(), "{none:?}");
            let some: ListGroupsResponse = call(
                &mut w,
                ApiKey::ListGroups,
                v,
                &ListGroupsRequest::default().with_types_filter(vec![s("Classic")]),
            );
            assert_eq!(some.groups.len(), r.groups.len());
        }
    });
    // KIP-848: a member joins (epoch 0), gets the whole topic, is described, and leaves.
    each_version!(ApiKey::ConsumerGroupHeartbeat, |v| {
        let gid = format!("sweep-cg-{v}");
        let join = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(group(&gid))
            .with_member_id(s(&format!("member-{v}")))
            .with_member_epoch(0)
            .with_instance_id(None)
            .with_rack_id(None)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![topic(T)]))
            .with_subscribed_topic_regex(None)
            .with_server_assignor(None)
            .with_topic_partitions(Some(vec![]));
        let r: ConsumerGroupHeartbeatResponse =
            call(&mut w, ApiKey::ConsumerGroupHeartbeat, v, &join);
        assert_eq!(r.error_code, 0, "v{v} {r:?}");
        assert!(r.member_epoch > 0, "v{v} {r:?}");
        assert!(r.heartbeat_interval_ms > 0, "v{v} {r:?}");
        let parts: usize = r.assignment.as_ref().map_or(0, |a| {
            a.topic_partitions.iter().map(|t| t.partitions.len()).sum()
        });
        assert!(parts > 0, "v{v} {r:?}");
        for dv in 0..=1 {
            let d: ConsumerGroupDescribeResponse = call(
                &mut w,
                ApiKey::ConsumerGroupDescribe,
                dv,
                &ConsumerGroupDescribeRequest::default()
                    .with_group_ids(vec![group(&gid), group("sweep-g-0")]),
            );
            assert_eq!(d.groups[0].error_code, 0, "v{dv} {d:?}");
            assert_eq!(d.groups[0].members.len(), 1, "v{dv} {d:?}");
            assert_eq!(d.groups[0].members[0].member_epoch, r.member_epoch);
            // A classic group is not a consumer-protocol group.
            assert_eq!(
                d.groups[1].error_code,
                kafka_protocol::ResponseError::GroupIdNotFound.code(),
                "{d:?}"
            );
        }
        let leave = join
            .with_member_epoch(-1)
            .with_rebalance_timeout_ms(-1)
            .with_subscribed_topic_names(None)
            .with_topic_partitions(None);
        let l: ConsumerGroupHeartbeatResponse =
            call(&mut w, ApiKey::ConsumerGroupHeartbeat, v, &leave);
        assert_eq!((l.error_code, l.member_epoch), (0, -1), "v{v} {l:?}");
    });
    each_version!(ApiKey::OffsetCommit, |v| {
        use offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
        let r: OffsetCommitResponse = call(
            &mut w,
            ApiKey::OffsetCommit,
            v,
            &OffsetCommitRequest::default()
                .with_group_id(group(&format!("sweep-oc-{v}")))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(s(""))
                .with_group_instance_id(None)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic(T))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1)
                        .with_committed_metadata(Some(s("m")))])]),
        );
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "v{v} {r:?}");
    });
    each_version!(ApiKey::OffsetFetch, |v| {
        let g = "sweep-oc-2";
        let req = if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group(g))
                    .with_member_id(None)
                    .with_topics(None),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(group(g))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(topic(T))
                        .with_partition_indexes(vec![0]),
                ]))
        };
        let r: OffsetFetchResponse = call(&mut w, ApiKey::OffsetFetch, v, &req);
        let committed = if v >= 8 {
            r.groups[0].topics[0].partitions[0].committed_offset
        } else {
            r.topics[0].partitions[0].committed_offset
        };
        assert_eq!(committed, 1, "v{v} {r:?}");
    });
    each_version!(ApiKey::OffsetDelete, |v| {
        use offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
        let r: OffsetDeleteResponse = call(
            &mut w,
            ApiKey::OffsetDelete,
            v,
            &OffsetDeleteRequest::default()
                .with_group_id(group("sweep-oc-3"))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(topic(T))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0)
                    ])]),
        );
        assert_eq!(r.error_code, 0, "v{v} {r:?}");
    });
    each_version!(ApiKey::LeaveGroup, |v| {
        let g = group(&format!("sweep-g-{}", v.min(9)));
        let req = if v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(g)
                .with_members(vec![leave_group_request::MemberIdentity::default()
                    .with_member_id(s("nobody"))
                    .with_group_instance_id(None)
                    .with_reason(None)])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(g)
                .with_member_id(s("nobody"))
        };
        let _: LeaveGroupResponse = call(&mut w, ApiKey::LeaveGroup, v, &req);
    });
    each_version!(ApiKey::DeleteGroups, |v| {
        let r: DeleteGroupsResponse = call(
            &mut w,
            ApiKey::DeleteGroups,
            v,
            &DeleteGroupsRequest::default()
                .with_groups_names(vec![group(&format!("sweep-oc-{}", v + 4))]),
        );
        assert_eq!(r.results[0].error_code, 0, "v{v} {r:?}");
    });

    // Topic administration.
    each_version!(ApiKey::DescribeConfigs, |v| {
        use describe_configs_request::DescribeConfigsResource;
        let r: DescribeConfigsResponse = call(
            &mut w,
            ApiKey::DescribeConfigs,
            v,
            &DescribeConfigsRequest::default()
                .with_include_synonyms(v >= 1)
                .with_include_documentation(v >= 3)
                .with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s(T))
                        .with_configuration_keys(None),
                    DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(s(""))
                        .with_configuration_keys(None),
                ]),
        );
        assert_eq!(r.results[0].error_code, 0, "v{v}");
        assert!(!r.results[0].configs.is_empty());
    });
    each_version!(ApiKey::AlterConfigs, |v| {
        use alter_configs_request::{AlterConfigsResource, AlterableConfig};
        let r: AlterConfigsResponse = call(
            &mut w,
            ApiKey::AlterConfigs,
            v,
            &AlterConfigsRequest::default()
                .with_validate_only(true)
                .with_resources(vec![AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(T))
                    .with_configs(vec![AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("1000")))])]),
        );
        assert_eq!(r.responses[0].error_code, 0, "v{v} {r:?}");
    });
    each_version!(ApiKey::IncrementalAlterConfigs, |v| {
        use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
        let r: IncrementalAlterConfigsResponse = call(
            &mut w,
            ApiKey::IncrementalAlterConfigs,
            v,
            &IncrementalAlterConfigsRequest::default()
                .with_validate_only(true)
                .with_resources(vec![AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(T))
                    .with_configs(vec![AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(s("1000")))])]),
        );
        assert_eq!(r.responses[0].error_code, 0, "v{v} {r:?}");
    });
    each_version!(ApiKey::CreatePartitions, |v| {
        use create_partitions_request::CreatePartitionsTopic;
        let r: CreatePartitionsResponse = call(
            &mut w,
            ApiKey::CreatePartitions,
            v,
            &CreatePartitionsRequest::default()
                .with_timeout_ms(10_000)
                .with_validate_only(true)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(topic(T))
                    .with_count(3)
                    .with_assignments(None)]),
        );
        assert_eq!(r.results[0].error_code, 0, "v{v} {r:?}");
    });
    each_version!(ApiKey::DeleteRecords, |v| {
        use delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
        let r: DeleteRecordsResponse = call(
            &mut w,
            ApiKey::DeleteRecords,
            v,
            &DeleteRecordsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![DeleteRecordsTopic::default()
                    .with_name(topic(T))
                    .with_partitions(vec![DeleteRecordsPartition::default()
                        .with_partition_index(1)
                        .with_offset(0)])]),
        );
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "v{v} {r:?}");
    });
    each_version!(ApiKey::InitProducerId, |v| {
        let r: InitProducerIdResponse = call(
            &mut w,
            ApiKey::InitProducerId,
            v,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        );
        assert_eq!(r.error_code, 0, "v{v}");
    });
    each_version!(ApiKey::DescribeCluster, |v| {
        let r: DescribeClusterResponse = call(
            &mut w,
            ApiKey::DescribeCluster,
            v,
            &DescribeClusterRequest::default(),
        );
        assert_eq!(r.error_code, 0, "v{v}");
        assert_eq!(r.brokers.len(), 1);
        assert!(!r.brokers[0].is_fenced);
        // Asking a broker endpoint for the controllers: Kafka's endpoint-type error (v1+, where
        // the request can say so).
        if v >= 1 {
            let wrong: DescribeClusterResponse = call(
                &mut w,
                ApiKey::DescribeCluster,
                v,
                &DescribeClusterRequest::default().with_endpoint_type(2),
            );
            assert_eq!(wrong.error_code, 114, "v{v}");
        }
    });
    each_version!(ApiKey::DescribeLogDirs, |v| {
        let r: DescribeLogDirsResponse = call(
            &mut w,
            ApiKey::DescribeLogDirs,
            v,
            &DescribeLogDirsRequest::default().with_topics(None),
        );
        assert!(
            r.results[0].topics.iter().any(|t| t.name.0.as_str() == T),
            "v{v}"
        );
    });
    each_version!(ApiKey::DescribeProducers, |v| {
        let r: DescribeProducersResponse = call(
            &mut w,
            ApiKey::DescribeProducers,
            v,
            &DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(topic(T))
                    .with_partition_indexes(vec![0]),
            ]),
        );
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "v{v}");
    });
    each_version!(ApiKey::ListPartitionReassignments, |v| {
        let r: ListPartitionReassignmentsResponse = call(
            &mut w,
            ApiKey::ListPartitionReassignments,
            v,
            &ListPartitionReassignmentsRequest::default().with_timeout_ms(1000),
        );
        assert_eq!(r.error_code, 0, "v{v}");
    });
    each_version!(ApiKey::AlterPartitionReassignments, |v| {
        use alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
        let r: AlterPartitionReassignmentsResponse = call(
            &mut w,
            ApiKey::AlterPartitionReassignments,
            v,
            &AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(1000)
                .with_allow_replication_factor_change(true)
                .with_topics(vec![ReassignableTopic::default()
                    .with_name(topic(T))
                    .with_partitions(vec![ReassignablePartition::default()
                        .with_partition_index(0)
                        .with_replicas(Some(vec![BrokerId(-7)]))])]),
        );
        assert_eq!(r.responses[0].partitions[0].error_code, 39, "v{v}");
    });
    each_version!(ApiKey::ElectLeaders, |v| {
        let r: ElectLeadersResponse = call(
            &mut w,
            ApiKey::ElectLeaders,
            v,
            &ElectLeadersRequest::default()
                .with_election_type(0)
                .with_timeout_ms(1000)
                .with_topic_partitions(Some(vec![
                    elect_leaders_request::TopicPartitions::default()
                        .with_topic(topic(T))
                        .with_partitions(vec![0]),
                ])),
        );
        assert_eq!(
            r.replica_election_results[0].partition_result[0].error_code, 84,
            "v{v}"
        );
    });
    each_version!(ApiKey::DescribeAcls, |v| {
        let r: DescribeAclsResponse = call(
            &mut w,
            ApiKey::DescribeAcls,
            v,
            &DescribeAclsRequest::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1),
        );
        assert_eq!(r.error_code, 0, "v{v}");
    });
    each_version!(ApiKey::CreateAcls, |v| {
        let r: CreateAclsResponse = call(
            &mut w,
            ApiKey::CreateAcls,
            v,
            &CreateAclsRequest::default().with_creations(vec![
                create_acls_request::AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_pattern_type(3)
                    .with_operation(3)
                    .with_permission_type(3),
            ]),
        );
        // No principal and no resource name: INVALID_REQUEST, nothing stored.
        assert_eq!(r.results[0].error_code, 42, "v{v}");
    });
    each_version!(ApiKey::DeleteAcls, |v| {
        let r: DeleteAclsResponse = call(
            &mut w,
            ApiKey::DeleteAcls,
            v,
            &DeleteAclsRequest::default().with_filters(vec![
                delete_acls_request::DeleteAclsFilter::default()
                    .with_resource_type_filter(1)
                    .with_pattern_type_filter(1)
                    .with_operation(1)
                    .with_permission_type(1),
            ]),
        );
        assert_eq!(r.filter_results[0].error_code, 0, "v{v}");
        assert!(r.filter_results[0].matching_acls.is_empty(), "v{v}");
    });
    // A quota set per version, then read back through every DescribeClientQuotas version.
    each_version!(ApiKey::AlterClientQuotas, |v| {
        use alter_client_quotas_request::{EntityData, EntryData, OpData};
        let r: AlterClientQuotasResponse = call(
            &mut w,
            ApiKey::AlterClientQuotas,
            v,
            &AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
                .with_entity(vec![EntityData::default()
                    .with_entity_type(s("client-id"))
                    .with_entity_name(Some(s(&format!("sweep-{v}"))))])
                .with_ops(vec![OpData::default()
                    .with_key(s("producer_byte_rate"))
                    .with_value(1e9)])]),
        );
        assert_eq!(r.entries[0].error_code, 0, "v{v} {r:?}");
    });
    each_version!(ApiKey::DescribeClientQuotas, |v| {
        use describe_client_quotas_request::ComponentData;
        let r: DescribeClientQuotasResponse = call(
            &mut w,
            ApiKey::DescribeClientQuotas,
            v,
            &DescribeClientQuotasRequest::default().with_components(vec![ComponentData::default()
                .with_entity_type(s("client-id"))
                .with_match_type(2)
                .with_match(None)]),
        );
        assert_eq!(r.error_code, 0, "v{v}");
        assert_eq!(r.entries.as_ref().map(Vec::len), Some(2), "v{v} {r:?}");
    });
    each_version!(ApiKey::DescribeTopicPartitions, |v| {
        let r: DescribeTopicPartitionsResponse = call(
            &mut w,
            ApiKey::DescribeTopicPartitions,
            v,
            &DescribeTopicPartitionsRequest::default()
                .with_response_partition_limit(10)
                .with_topics(vec![
                    describe_topic_partitions_request::TopicRequest::default().with_name(topic(T)),
                ]),
        );
        assert_eq!(r.topics[0].partitions.len(), 2, "v{v}");
    });
    each_version!(ApiKey::DescribeUserScramCredentials, |v| {
        use describe_user_scram_credentials_request::UserName;
        let r: DescribeUserScramCredentialsResponse = call(
            &mut w,
            ApiKey::DescribeUserScramCredentials,
            v,
            &DescribeUserScramCredentialsRequest::default()
                .with_users(Some(vec![UserName::default().with_name(s("alice"))])),
        );
        assert_eq!(r.results[0].error_code, 91, "v{v}");
    });
    each_version!(ApiKey::AlterUserScramCredentials, |v| {
        use alter_user_scram_credentials_request::ScramCredentialDeletion;
        let r: AlterUserScramCredentialsResponse = call(
            &mut w,
            ApiKey::AlterUserScramCredentials,
            v,
            &AlterUserScramCredentialsRequest::default().with_deletions(vec![
                ScramCredentialDeletion::default()
                    .with_name(s("nobody"))
                    .with_mechanism(1),
            ]),
        );
        assert_eq!(r.results[0].error_code, 91, "v{v}");
    });
    each_version!(ApiKey::AlterReplicaLogDirs, |v| {
        use alter_replica_log_dirs_request::{AlterReplicaLogDir, AlterReplicaLogDirTopic};
        let r: AlterReplicaLogDirsResponse = call(
            &mut w,
            ApiKey::AlterReplicaLogDirs,
            v,
            &AlterReplicaLogDirsRequest::default().with_dirs(vec![AlterReplicaLogDir::default()
                .with_path(s("/no/such/log/dir"))
                .with_topics(vec![AlterReplicaLogDirTopic::default()
                    .with_name(topic(T))
                    .with_partitions(vec![0])])]),
        );
        assert_eq!(r.results[0].partitions[0].error_code, 57, "v{v}");
    });
    each_version!(ApiKey::ListConfigResources, |v| {
        let r: ListConfigResourcesResponse = call(
            &mut w,
            ApiKey::ListConfigResources,
            v,
            // v0 has no resource types (and lists client metrics only).
            &ListConfigResourcesRequest::default().with_resource_types(if v >= 1 {
                vec![2]
            } else {
                vec![]
            }),
        );
        assert_eq!(r.error_code, 0, "v{v}");
        let topics = r
            .config_resources
            .iter()
            .filter(|c| c.resource_name.as_str() == T);
        // v0 is ListClientMetricsResources: client metrics only.
        assert_eq!(topics.count(), usize::from(v >= 1), "v{v}");
    });
    each_version!(ApiKey::UpdateFeatures, |v| {
        use update_features_request::FeatureUpdateKey;
        let mut u = FeatureUpdateKey::default()
            .with_feature(s("metadata.version"))
            .with_max_version_level(1);
        if v >= 1 {
            u = u.with_upgrade_type(1);
        }
        let r: UpdateFeaturesResponse = call(
            &mut w,
            ApiKey::UpdateFeatures,
            v,
            &UpdateFeaturesRequest::default().with_feature_updates(vec![u]),
        );
        let code = if v >= 2 {
            r.error_code
        } else {
            r.results[0].error_code
        };
        assert_eq!(code, 95, "v{v}");
    });
    // A PLAINTEXT listener: both SASL APIs answer ILLEGAL_SASL_STATE and the connection stays.
    each_version!(ApiKey::SaslHandshake, |v| {
        let r: SaslHandshakeResponse = call(
            &mut w,
            ApiKey::SaslHandshake,
            v,
            &SaslHandshakeRequest::default().with_mechanism(s("PLAIN")),
        );
        assert_eq!(r.error_code, 34, "v{v}");
    });
    each_version!(ApiKey::SaslAuthenticate, |v| {
        let r: SaslAuthenticateResponse = call(
            &mut w,
            ApiKey::SaslAuthenticate,
            v,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0u\0p")),
        );
        assert_eq!(r.error_code, 34, "v{v}");
    });
    each_version!(ApiKey::DescribeQuorum, |v| {
        let r: DescribeQuorumResponse = call(
            &mut w,
            ApiKey::DescribeQuorum,
            v,
            &DescribeQuorumRequest::default().with_topics(vec![
                describe_quorum_request::TopicData::default()
                    .with_topic_name(topic("__cluster_metadata"))
                    .with_partitions(vec![describe_quorum_request::PartitionData::default()]),
            ]),
        );
        assert_eq!(r.error_code, 0, "v{v}");
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "v{v} {r:?}");
    });
    // Transactions, with an id that has no transaction: each answer must decode; the
    // coordinator's errors are the transaction tests' business.
    let txn_id = || TransactionalId(s("sweep-no-such-txn"));
    each_version!(ApiKey::AddPartitionsToTxn, |v| {
        let r: AddPartitionsToTxnResponse = call(
            &mut w,
            ApiKey::AddPartitionsToTxn,
            v,
            &AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(txn_id())
                .with_v3_and_below_producer_id(ProducerId(123_456))
                .with_v3_and_below_producer_epoch(0)
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(topic(T))
                        .with_partitions(vec![0]),
                ]),
        );
        let errors: Vec<i16> = r
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| p.partition_error_code)
            })
            .collect();
        assert!(
            r.error_code != 0 || errors.iter().all(|&e| e != 0),
            "v{v} {r:?}"
        );
    });
    each_version!(ApiKey::AddOffsetsToTxn, |v| {
        let r: AddOffsetsToTxnResponse = call(
            &mut w,
            ApiKey::AddOffsetsToTxn,
            v,
            &AddOffsetsToTxnRequest::default()
                .with_transactional_id(txn_id())
                .with_producer_id(ProducerId(123_456))
                .with_group_id(group("sweep-txn-g")),
        );
        assert_ne!(r.error_code, 0, "v{v}");
    });
    each_version!(ApiKey::TxnOffsetCommit, |v| {
        use txn_offset_commit_request::{
            TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
        };
        let _: TxnOffsetCommitResponse = call(
            &mut w,
            ApiKey::TxnOffsetCommit,
            v,
            &TxnOffsetCommitRequest::default()
                .with_transactional_id(txn_id())
                .with_group_id(group("sweep-txn-g"))
                .with_producer_id(ProducerId(123_456))
                .with_group_instance_id(None)
                .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                    .with_name(topic(T))
                    .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1)
                        .with_committed_metadata(None)])]),
        );
    });
    each_version!(ApiKey::EndTxn, |v| {
        let r: EndTxnResponse = call(
            &mut w,
            ApiKey::EndTxn,
            v,
            &EndTxnRequest::default()
                .with_transactional_id(txn_id())
                .with_producer_id(ProducerId(123_456))
                .with_committed(false),
        );
        assert_ne!(r.error_code, 0, "v{v}");
    });
    each_version!(ApiKey::WriteTxnMarkers, |v| {
        let _: WriteTxnMarkersResponse = call(
            &mut w,
            ApiKey::WriteTxnMarkers,
            v,
            &WriteTxnMarkersRequest::default(),
        );
    });
    each_version!(ApiKey::DescribeTransactions, |v| {
        let r: DescribeTransactionsResponse = call(
            &mut w,
            ApiKey::DescribeTransactions,
            v,
            &DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id()]),
        );
        assert_ne!(r.transaction_states[0].error_code, 0, "v{v}");
    });
    each_version!(ApiKey::ListTransactions, |v| {
        let r: ListTransactionsResponse = call(
            &mut w,
            ApiKey::ListTransactions,
            v,
            &ListTransactionsRequest::default()
                .with_duration_filter(-1)
                .with_transactional_id_pattern(None),
        );
        assert_eq!(r.error_code, 0, "v{v}");
    });
    each_version!(ApiKey::DeleteTopics, |v| {
        let name = format!("{T}-del-{v}");
        let created: CreateTopicsResponse = call(
            &mut w,
            ApiKey::CreateTopics,
            7,
            &CreateTopicsRequest::default()
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(topic(&name))
                    .with_num_partitions(1)
                    .with_replication_factor(1)])
                .with_timeout_ms(10_000),
        );
        assert_eq!(created.topics[0].error_code, 0);
        let req = if v >= 6 {
            DeleteTopicsRequest::default()
                .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(topic(&name)))])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![topic(&name)])
        };
        let r: DeleteTopicsResponse = call(
            &mut w,
            ApiKey::DeleteTopics,
            v,
            &req.with_timeout_ms(10_000),
        );
        assert_eq!(r.responses[0].error_code, 0, "v{v} {r:?}");
    });

    // Every advertised version was swept (an API added to SUPPORTED must be added here).
    let swept = SWEPT.lock().unwrap().clone();
    for &(key, lo, hi) in chronik_protocol::api::SUPPORTED {
        for v in lo..=hi {
            assert!(
                swept.contains(&(key as i16, v)),
                "{key:?} v{v} is advertised but not swept: add a case to tests/version_sweep.rs"
            );
        }
    }
    let log = srv.log_text();
    assert!(
        !log.contains("encoding response failed") && !log.contains("request kind without"),
        "{log}"
    );
}
