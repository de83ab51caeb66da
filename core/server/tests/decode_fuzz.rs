//! Seeded mutation fuzzing of request decoding: for every advertised (API key, version), valid
//! requests are encoded, mutated (bytes replaced, forged 32-bit counts and lengths, truncation,
//! random tails) and decoded the way a connection decodes a frame. Decoding may fail; it must
//! never panic. The broker's own allocator is installed, as in the binary, so forged element
//! counts are survivable here too (see `chronik_server::alloc`).
//!
//! `CHRONIK_FUZZ_ROUNDS` (default 150) sets the mutations per (key, version); the seed of a
//! failing case is printed.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{Bytes, BytesMut};
use chronik_protocol::api::SUPPORTED;
use chronik_protocol::frame;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

#[global_allocator]
static GLOBAL: chronik_server::alloc::GuardedAlloc = chronik_server::alloc::GuardedAlloc;

/// A request of `key` with some content (so that mutations hit real counts and lengths), or
/// `None` for keys this test does not know how to build.
fn sample(key: ApiKey) -> Option<RequestKind> {
    let s = StrBytes::from_static_str;
    Some(match key {
        ApiKey::Produce => {
            let batch = chronik_protocol::batch::encode_batch(&[(Some(b"k"), Some(b"v"))], 1);
            RequestKind::Produce(
                ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(1000)
                    .with_topic_data(vec![produce_request::TopicProduceData::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_data(vec![
                            produce_request::PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(Bytes::from(batch))),
                        ])]),
            )
        }
        ApiKey::Fetch => {
            RequestKind::Fetch(FetchRequest::default().with_max_wait_ms(10).with_topics(
                vec![fetch_request::FetchTopic::default()
                    .with_topic(TopicName(s("t")))
                    .with_partitions(vec![fetch_request::FetchPartition::default()])],
            ))
        }
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(
            vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default(),
                ])],
        )),
        ApiKey::Metadata => {
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(s("a")))),
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(s("b")))),
            ])))
        }
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default(),
                        ]),
                ]),
        ),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![0, 1]),
                ])),
        ),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(
            FindCoordinatorRequest::default()
                .with_key(s("g"))
                .with_coordinator_keys(vec![s("g")]),
        ),
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"\x00\x01\x00\x00\x00\x01\x00\x01t"))]),
        ),
        ApiKey::Heartbeat => {
            RequestKind::Heartbeat(HeartbeatRequest::default().with_group_id(GroupId(s("g"))))
        }
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_members(vec![leave_group_request::MemberIdentity::default()]),
        ),
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default(),
                ]),
        ),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
        ),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(s("fuzz"))
                .with_client_software_version(s("1")),
        ),
        ApiKey::CreateTopics => {
            RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_num_partitions(1)
                    .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("1")))]),
            ]))
        }
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(
            DeleteTopicsRequest::default()
                .with_topic_names(vec![TopicName(s("t"))])
                .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(TopicName(s("t"))))]),
        ),
        ApiKey::DeleteRecords => {
            RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default(),
                    ]),
            ]))
        }
        ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default()),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochRequest::default().with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(TopicName(s("t")))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default(),
                    ]),
            ]),
        ),
        ApiKey::DescribeConfigs => {
            RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configuration_keys(Some(vec![s("retention.ms")])),
            ]))
        }
        ApiKey::AlterConfigs => {
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("5")))]),
            ]))
        }
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s("retention.ms"))
                            .with_value(Some(s("5"))),
                    ]),
            ]),
        ),
        ApiKey::CreatePartitions => {
            RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_count(3),
            ]))
        }
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
        ),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default(),
                        ]),
                ]),
        ),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::AddPartitionsToTxn => {
            RequestKind::AddPartitionsToTxn(AddPartitionsToTxnRequest::default())
        }
        ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(AddOffsetsToTxnRequest::default()),
        ApiKey::EndTxn => RequestKind::EndTxn(EndTxnRequest::default()),
        ApiKey::TxnOffsetCommit => RequestKind::TxnOffsetCommit(TxnOffsetCommitRequest::default()),
        ApiKey::WriteTxnMarkers => RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default()),
        ApiKey::DescribeLogDirs => RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default()),
        ApiKey::DescribeProducers => {
            RequestKind::DescribeProducers(DescribeProducersRequest::default())
        }
        ApiKey::ListPartitionReassignments => {
            RequestKind::ListPartitionReassignments(ListPartitionReassignmentsRequest::default())
        }
        ApiKey::AlterPartitionReassignments => {
            RequestKind::AlterPartitionReassignments(AlterPartitionReassignmentsRequest::default())
        }
        ApiKey::ElectLeaders => RequestKind::ElectLeaders(ElectLeadersRequest::default()),
        ApiKey::DescribeAcls => RequestKind::DescribeAcls(DescribeAclsRequest::default()),
        ApiKey::CreateAcls => RequestKind::CreateAcls(CreateAclsRequest::default()),
        ApiKey::DeleteAcls => RequestKind::DeleteAcls(DeleteAclsRequest::default()),
        ApiKey::DescribeClientQuotas => {
            RequestKind::DescribeClientQuotas(DescribeClientQuotasRequest::default())
        }
        ApiKey::AlterClientQuotas => {
            RequestKind::AlterClientQuotas(AlterClientQuotasRequest::default().with_entries(vec![
                alter_client_quotas_request::EntryData::default()
                    .with_entity(vec![alter_client_quotas_request::EntityData::default()
                        .with_entity_type(s("user"))
                        .with_entity_name(Some(s("u")))])
                    .with_ops(vec![alter_client_quotas_request::OpData::default()
                        .with_key(s("producer_byte_rate"))
                        .with_value(1024.0)]),
            ]))
        }
        ApiKey::DescribeTopicPartitions => {
            RequestKind::DescribeTopicPartitions(DescribeTopicPartitionsRequest::default())
        }
        ApiKey::DescribeUserScramCredentials => RequestKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
                describe_user_scram_credentials_request::UserName::default().with_name(s("u")),
            ])),
        ),
        ApiKey::AlterUserScramCredentials => RequestKind::AlterUserScramCredentials(
            AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                    .with_name(s("u"))
                    .with_mechanism(1)
                    .with_iterations(4096)
                    .with_salt(Bytes::from_static(b"salt"))
                    .with_salted_password(Bytes::from_static(b"salted")),
            ]),
        ),
        ApiKey::AlterReplicaLogDirs => {
            RequestKind::AlterReplicaLogDirs(AlterReplicaLogDirsRequest::default().with_dirs(vec![
                alter_replica_log_dirs_request::AlterReplicaLogDir::default()
                    .with_path(s("/nowhere"))
                    .with_topics(vec![
                        alter_replica_log_dirs_request::AlterReplicaLogDirTopic::default()
                            .with_name(TopicName(s("t")))
                            .with_partitions(vec![0]),
                    ]),
            ]))
        }
        ApiKey::ListConfigResources => RequestKind::ListConfigResources(
            ListConfigResourcesRequest::default().with_resource_types(vec![2]),
        ),
        ApiKey::UpdateFeatures => RequestKind::UpdateFeatures(
            UpdateFeaturesRequest::default().with_feature_updates(vec![
                update_features_request::FeatureUpdateKey::default()
                    .with_feature(s("f"))
                    .with_max_version_level(1)
                    .with_upgrade_type(1),
            ]),
        ),
        ApiKey::SaslHandshake => {
            RequestKind::SaslHandshake(SaslHandshakeRequest::default().with_mechanism(s("PLAIN")))
        }
        ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0u\0p")),
        ),
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_member_id(s("m"))
                .with_instance_id(Some(s("i")))
                .with_rack_id(None)
                .with_subscribed_topic_names(Some(vec![TopicName(s("t"))]))
                .with_subscribed_topic_regex(Some(s("t.*")))
                .with_server_assignor(Some(s("uniform")))
                .with_topic_partitions(Some(vec![
                    consumer_group_heartbeat_request::TopicPartitions::default()
                        .with_partitions(vec![0, 1]),
                ])),
        ),
        ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("g"))]),
        ),
        ApiKey::DescribeQuorum => {
            RequestKind::DescribeQuorum(DescribeQuorumRequest::default().with_topics(vec![
                describe_quorum_request::TopicData::default()
                    .with_topic_name(TopicName(s("__cluster_metadata")))
                    .with_partitions(vec![describe_quorum_request::PartitionData::default()]),
            ]))
        }
        ApiKey::DescribeTransactions => {
            RequestKind::DescribeTransactions(DescribeTransactionsRequest::default())
        }
        ApiKey::ListTransactions => {
            RequestKind::ListTransactions(ListTransactionsRequest::default())
        }
        _ => return None,
    })
}

/// The request frame (without its size prefix) as a client sends it.
fn encode(key: ApiKey, version: i16, body: &RequestKind) -> Option<Vec<u8>> {
    let mut out = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")))
        .encode(&mut out, key.request_header_version(version))
        .ok()?;
    // Some sample fields do not exist in every version: skip what cannot be encoded.
    body.encode(&mut out, version).ok()?;
    Some(out.to_vec())
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four mutations; the first eight bytes (key, version, correlation id) stay intact so
/// the body is decoded as the intended request.
fn mutate(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    const FORGED: [[u8; 4]; 4] = [
        [0x7f, 0xff, 0xff, 0xff],
        [0xff, 0xff, 0xff, 0xff],
        [0x00, 0x10, 0x00, 0x00],
        [0x80, 0x00, 0x00, 0x00],
    ];
    for _ in 0..1 + rng.below(4) {
        let body = b.len().saturating_sub(8);
        match rng.below(5) {
            0 if body > 0 => {
                let i = 8 + rng.below(body);
                b[i] = rng.next() as u8;
            }
            1 if body >= 4 => {
                let i = 8 + rng.below(body - 3);
                b[i..i + 4].copy_from_slice(&FORGED[rng.below(FORGED.len())]);
            }
            2 if body > 0 => {
                // A forged varint (compact counts and lengths).
                let i = 8 + rng.below(body);
                b.splice(i..i, [0xff, 0xff, 0xff, 0xff, 0x0f]);
            }
            3 => b.truncate(8 + rng.below(body + 1)),
            _ => {
                for _ in 0..rng.below(16) {
                    b.push(rng.next() as u8);
                }
            }
        }
    }
    b
}

#[test]
fn mutated_requests_never_panic_the_decoder() {
    let rounds: usize = std::env::var("CHRONIK_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let mut decoded_ok = 0usize;
    let mut cases = 0usize;
    for &(key, lo, hi) in SUPPORTED {
        let body = sample(key).unwrap_or_else(|| {
            panic!("{key:?} is advertised: add a sample request for it to this test")
        });
        for version in lo..=hi {
            let Some(valid) = encode(key, version, &body) else {
                continue;
            };
            // The unmutated request must decode: the harness builds real requests.
            frame::decode_request(Bytes::from(valid.clone()))
                .unwrap_or_else(|e| panic!("{key:?} v{version} sample does not decode: {e}"));
            for round in 0..rounds {
                let seed = 0x9E37_79B9_7F4A_7C15u64
                    ^ ((key as u64) << 40)
                    ^ ((version as u64) << 32)
                    ^ round as u64;
                let mut rng = Rng(seed | 1);
                let input = mutate(&mut rng, valid.clone());
                let r = catch_unwind(AssertUnwindSafe(|| {
                    frame::decode_request(Bytes::from(input.clone())).is_ok()
                }));
                match r {
                    Ok(ok) => decoded_ok += usize::from(ok),
                    Err(_) => panic!(
                        "decoding panicked: {key:?} v{version} seed {seed:#x} input {input:02x?}"
                    ),
                }
                cases += 1;
            }
        }
    }
    assert!(cases > 1000, "only {cases} cases ran");
    // Some mutations (a changed byte inside a string, say) still decode: the mutations are not
    // all trivially rejected by the first check.
    assert!(decoded_ok > cases / 100, "{decoded_ok} of {cases} decoded");
}
