//! Wire-level tests of the cluster-administration APIs a single node answers from its own state:
//! DescribeLogDirs, DescribeProducers, List/AlterPartitionReassignments, ElectLeaders, the ACL
//! APIs (stored in __meta), client quotas (stored in __meta, enforced on produce) and
//! DescribeTopicPartitions.

mod common;

use bytes::Bytes;
use common::{Server, Wire};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create_topic(w: &mut Wire, topic: &str, partitions: i32) {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
        .with_timeout_ms(10_000);
    let resp: CreateTopicsResponse = w.call(ApiKey::CreateTopics, 7, &req);
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0]);
}

/// Produces `batch` to `topic`/`partition` with acks=-1; returns the partition's error code.
fn produce(w: &mut Wire, topic: &str, partition: i32, batch: Vec<u8>) -> i16 {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(batch)))])]);
    let r: ProduceResponse = w.call(ApiKey::Produce, 9, &req);
    r.responses[0].partition_responses[0].error_code
}

/// A batch of `n` records from idempotent producer `pid`/`epoch` starting at `seq`.
fn idempotent_batch(n: usize, pid: i64, epoch: i16, seq: i32, ts: i64) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..n).map(|i| format!("v{i}").into_bytes()).collect();
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> =
        values.iter().map(|v| (None, Some(v.as_slice()))).collect();
    let mut b = chronik_protocol::batch::encode_batch(&kv, ts);
    let h = chronik_protocol::batch::header_mut(&mut b).unwrap();
    h.producer_id.set(pid);
    h.producer_epoch.set(epoch);
    h.base_sequence.set(seq);
    let crc = crc32c::crc32c(&b[chronik_protocol::batch::CRC_START..]);
    chronik_protocol::batch::header_mut(&mut b)
        .unwrap()
        .crc
        .set(crc);
    b
}

fn node_id(w: &mut Wire) -> i32 {
    let r: DescribeClusterResponse = w.call(
        ApiKey::DescribeCluster,
        0,
        &DescribeClusterRequest::default(),
    );
    r.brokers[0].broker_id.0
}

#[test]
fn describe_log_dirs_reports_the_data_dir_and_partition_sizes() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    create_topic(&mut w, "ld", 2);
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> = vec![(Some(b"k"), Some(&[7u8; 1000]))];
    let batch = chronik_protocol::batch::encode_batch(&kv, 1_700_000_000_000);
    for _ in 0..5 {
        assert_eq!(produce(&mut w, "ld", 0, batch.clone()), 0);
    }
    let dir = std::fs::canonicalize(s.data_dir()).unwrap();
    for version in 1..=4 {
        // Null topics: every partition, including internal topics once they exist.
        let all: DescribeLogDirsResponse = w.call(
            ApiKey::DescribeLogDirs,
            version,
            &DescribeLogDirsRequest::default().with_topics(None),
        );
        assert_eq!(all.error_code, 0);
        assert_eq!(all.results.len(), 1);
        let d = &all.results[0];
        assert_eq!(d.error_code, 0);
        assert_eq!(d.log_dir.as_str(), dir.to_str().unwrap());
        if version >= 4 {
            assert!(d.total_bytes > 0 && d.usable_bytes >= 0 && d.usable_bytes <= d.total_bytes);
        }
        let t = d
            .topics
            .iter()
            .find(|t| t.name.0.as_str() == "ld")
            .unwrap_or_else(|| panic!("no topic ld in {all:?}"));
        let size = |i: i32| {
            t.partitions
                .iter()
                .find(|p| p.partition_index == i)
                .unwrap()
                .partition_size
        };
        assert!(size(0) >= 5 * batch.len() as i64, "p0 {}", size(0));
        assert!(size(1) < batch.len() as i64, "p1 {}", size(1));
        assert!(t
            .partitions
            .iter()
            .all(|p| p.offset_lag == 0 && !p.is_future_key));
        // Named partitions: only those that exist come back.
        let req = DescribeLogDirsRequest::default().with_topics(Some(vec![
            describe_log_dirs_request::DescribableLogDirTopic::default()
                .with_topic(name("ld"))
                .with_partitions(vec![0, 9]),
            describe_log_dirs_request::DescribableLogDirTopic::default()
                .with_topic(name("missing"))
                .with_partitions(vec![0]),
        ]));
        let some: DescribeLogDirsResponse = w.call(ApiKey::DescribeLogDirs, version, &req);
        let topics = &some.results[0].topics;
        assert_eq!(topics.len(), 1, "{topics:?}");
        assert_eq!(topics[0].partitions.len(), 1);
        assert_eq!(topics[0].partitions[0].partition_index, 0);
        assert_eq!(topics[0].partitions[0].partition_size, size(0));
    }
}

/// Idempotent producers that start together (several clients, or one pipelining) each get
/// their own producer id. Two id blocks allocated in one `__meta` batch used to both hand out the
/// second block's ids, so two producers shared an id and one's batches were refused as
/// OUT_OF_ORDER_SEQUENCE_NUMBER (seen with two librdkafka producers in `ingest-1k`); and each
/// such request allocated a block of its own.
#[test]
fn concurrent_init_producer_id_requests_get_distinct_ids() {
    let s = Server::start();
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    // Connections spread over the shards; every request is sent before any answer is read.
    let mut conns: Vec<Wire> = (0..4).map(|_| Wire::connect(s.port)).collect();
    for w in conns.iter_mut() {
        for _ in 0..16 {
            w.send(ApiKey::InitProducerId, 4, &req);
        }
    }
    let mut ids = std::collections::BTreeSet::new();
    for w in conns.iter_mut() {
        for _ in 0..16 {
            let mut buf = Bytes::from(w.recv_frame().expect("response"));
            let _ = <ResponseHeader as kafka_protocol::protocol::Decodable>::decode(&mut buf, 1)
                .unwrap();
            let r = <InitProducerIdResponse as kafka_protocol::protocol::Decodable>::decode(
                &mut buf, 4,
            )
            .unwrap();
            assert_eq!(r.error_code, 0);
            assert_eq!(r.producer_epoch, 0);
            assert!(r.producer_id.0 >= 0, "{r:?}");
            assert!(
                ids.insert(r.producer_id.0),
                "producer id {} handed out twice",
                r.producer_id.0
            );
        }
    }
    assert_eq!(ids.len(), 64);
    // Requests that find a shard's block empty share one refill: at most one block per shard.
    let blocks: std::collections::BTreeSet<i64> = ids
        .iter()
        .map(|id| id / chronik_core::meta::PRODUCER_ID_BLOCK)
        .collect();
    let shards = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        blocks.len() <= shards,
        "{} blocks for {shards} shards: {blocks:?}",
        blocks.len()
    );
}

#[test]
fn describe_producers_lists_idempotent_producer_state() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    create_topic(&mut w, "dp", 2);
    let init: InitProducerIdResponse = w.call(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    let ts = 1_700_000_000_000;
    assert_eq!(
        produce(&mut w, "dp", 0, idempotent_batch(3, pid, epoch, 0, ts)),
        0
    );
    assert_eq!(
        produce(&mut w, "dp", 0, idempotent_batch(4, pid, epoch, 3, ts + 5)),
        0
    );
    // A plain (non-idempotent) batch on partition 1 tracks no producer.
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> = vec![(None, Some(b"x"))];
    let plain = chronik_protocol::batch::encode_batch(&kv, ts);
    assert_eq!(produce(&mut w, "dp", 1, plain), 0);

    let req = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(name("dp"))
            .with_partition_indexes(vec![0, 1, 5]),
        describe_producers_request::TopicRequest::default()
            .with_name(name("nope"))
            .with_partition_indexes(vec![0]),
    ]);
    let r: DescribeProducersResponse = w.call(ApiKey::DescribeProducers, 0, &req);
    assert_eq!(r.topics.len(), 2);
    let parts = &r.topics[0].partitions;
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0].error_code, 0);
    assert_eq!(parts[0].active_producers.len(), 1);
    let p = &parts[0].active_producers[0];
    assert_eq!(p.producer_id.0, pid);
    assert_eq!(p.producer_epoch, i32::from(epoch));
    assert_eq!(p.last_sequence, 6);
    assert_eq!(p.last_timestamp, ts + 5);
    assert_eq!((p.coordinator_epoch, p.current_txn_start_offset), (-1, -1));
    assert_eq!(parts[1].error_code, 0);
    assert!(parts[1].active_producers.is_empty());
    assert_eq!(parts[2].error_code, 3);
    assert_eq!(r.topics[1].partitions[0].error_code, 3);
}

#[test]
fn reassignments_none_in_progress_and_only_this_node_is_a_valid_target() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    create_topic(&mut w, "ra", 2);
    let me = node_id(&mut w);
    let list: ListPartitionReassignmentsResponse = w.call(
        ApiKey::ListPartitionReassignments,
        0,
        &ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000),
    );
    assert_eq!(list.error_code, 0);
    assert!(list.topics.is_empty());
    use alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
    let part = |i: i32, r: Option<Vec<i32>>| {
        ReassignablePartition::default()
            .with_partition_index(i)
            .with_replicas(r.map(|v| v.into_iter().map(BrokerId).collect()))
    };
    for version in 0..=1 {
        let req = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(10_000)
            .with_allow_replication_factor_change(true)
            .with_topics(vec![
                ReassignableTopic::default()
                    .with_name(name("ra"))
                    .with_partitions(vec![
                        part(0, Some(vec![me])),
                        part(1, Some(vec![me, me + 1])),
                        part(1, None),
                        part(1, Some(vec![])),
                        part(7, Some(vec![me])),
                    ]),
                ReassignableTopic::default()
                    .with_name(name("nope"))
                    .with_partitions(vec![part(0, Some(vec![me]))]),
            ]);
        let r: AlterPartitionReassignmentsResponse =
            w.call(ApiKey::AlterPartitionReassignments, version, &req);
        assert_eq!(r.error_code, 0);
        let codes: Vec<i16> = r.responses[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(codes, vec![0, 39, 85, 39, 3], "{r:?}");
        let msg = r.responses[0].partitions[1].error_message.as_ref().unwrap();
        assert!(msg.contains(&format!("broker {}", me + 1)), "{msg}");
        assert_eq!(r.responses[1].partitions[0].error_code, 3);
    }
}

#[test]
fn elect_leaders_is_never_needed_for_led_partitions() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    create_topic(&mut w, "el", 2);
    for version in 0..=2 {
        let req = ElectLeadersRequest::default()
            .with_election_type(0)
            .with_timeout_ms(10_000)
            .with_topic_partitions(Some(vec![
                elect_leaders_request::TopicPartitions::default()
                    .with_topic(name("el"))
                    .with_partitions(vec![0, 1, 4]),
                elect_leaders_request::TopicPartitions::default()
                    .with_topic(name("nope"))
                    .with_partitions(vec![0]),
            ]));
        let r: ElectLeadersResponse = w.call(ApiKey::ElectLeaders, version, &req);
        assert_eq!(r.error_code, 0);
        let codes = |i: usize| -> Vec<i16> {
            r.replica_election_results[i]
                .partition_result
                .iter()
                .map(|p| p.error_code)
                .collect()
        };
        assert_eq!(codes(0), vec![84, 84, 3], "{r:?}");
        assert_eq!(codes(1), vec![3]);
        // All partitions: the ones that needed no election are left out.
        let all: ElectLeadersResponse = w.call(
            ApiKey::ElectLeaders,
            version,
            &ElectLeadersRequest::default()
                .with_topic_partitions(None)
                .with_timeout_ms(10_000),
        );
        assert_eq!(all.error_code, 0);
        assert!(all.replica_election_results.is_empty(), "{all:?}");
    }
}

fn acl(
    rt: i8,
    name: &str,
    pt: i8,
    who: &str,
    op: i8,
    perm: i8,
) -> create_acls_request::AclCreation {
    create_acls_request::AclCreation::default()
        .with_resource_type(rt)
        .with_resource_name(StrBytes::from_string(name.into()))
        .with_resource_pattern_type(pt)
        .with_principal(StrBytes::from_string(who.into()))
        .with_host(StrBytes::from_static_str("*"))
        .with_operation(op)
        .with_permission_type(perm)
}

fn describe_all(w: &mut Wire, version: i16) -> DescribeAclsResponse {
    w.call(
        ApiKey::DescribeAcls,
        version,
        &DescribeAclsRequest::default()
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_resource_type_filter(1)
            .with_pattern_type_filter(1)
            .with_operation(1)
            .with_permission_type(1),
    )
}

#[test]
fn acls_are_created_described_deleted_and_survive_restart() {
    let mut s = Server::start();
    let mut w = Wire::connect(s.port);
    // TOPIC=2 GROUP=3; LITERAL=3 PREFIXED=4; READ=3 WRITE=4; DENY=2 ALLOW=3.
    let c: CreateAclsResponse = w.call(
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(vec![
            acl(2, "orders", 3, "User:alice", 3, 3),
            acl(3, "app-", 4, "User:alice", 3, 3),
            acl(2, "orders", 3, "User:bob", 4, 2),
            acl(2, "orders", 3, "alice", 3, 3),
            acl(2, "orders", 2, "User:alice", 3, 3),
            acl(2, "orders", 3, "User:alice", 3, 3),
        ]),
    );
    let codes: Vec<i16> = c.results.iter().map(|r| r.error_code).collect();
    // A principal without a type and a MATCH pattern are invalid; a duplicate is fine.
    assert_eq!(codes, [0, 0, 0, 42, 42, 0], "{c:?}");
    assert!(c.results[3]
        .error_message
        .as_ref()
        .unwrap()
        .contains("principal"));
    for version in 1..=3 {
        let d = describe_all(&mut w, version);
        assert_eq!(d.error_code, 0);
        let got: Vec<(i8, String, i8, usize)> = d
            .resources
            .iter()
            .map(|r| {
                (
                    r.resource_type,
                    r.resource_name.to_string(),
                    r.pattern_type,
                    r.acls.len(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [(2, "orders".into(), 3, 2), (3, "app-".into(), 4, 1)],
            "v{version}"
        );
    }
    // MATCH: the ACLs that apply to group "app-1" (the prefixed one).
    let d: DescribeAclsResponse = w.call(
        ApiKey::DescribeAcls,
        2,
        &DescribeAclsRequest::default()
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_resource_type_filter(3)
            .with_resource_name_filter(Some(StrBytes::from_static_str("app-1")))
            .with_pattern_type_filter(2)
            .with_operation(1)
            .with_permission_type(1),
    );
    assert_eq!(d.resources.len(), 1, "{d:?}");
    assert_eq!(d.resources[0].acls[0].principal.as_str(), "User:alice");
    // An UNKNOWN resource type in a filter is refused.
    let bad: DescribeAclsResponse = w.call(
        ApiKey::DescribeAcls,
        2,
        &DescribeAclsRequest::default()
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_resource_type_filter(0)
            .with_pattern_type_filter(1)
            .with_operation(1)
            .with_permission_type(1),
    );
    assert_eq!(bad.error_code, 42);
    // Delete bob's DENY by principal; the filter result lists what went.
    let del: DeleteAclsResponse = w.call(
        ApiKey::DeleteAcls,
        3,
        &DeleteAclsRequest::default().with_filters(vec![
            delete_acls_request::DeleteAclsFilter::default()
                .with_resource_name_filter(None)
                .with_principal_filter(None)
                .with_host_filter(None)
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_principal_filter(Some(StrBytes::from_static_str("User:bob")))
                .with_operation(1)
                .with_permission_type(1),
            delete_acls_request::DeleteAclsFilter::default()
                .with_resource_name_filter(None)
                .with_principal_filter(None)
                .with_host_filter(None)
                .with_resource_type_filter(2)
                .with_resource_name_filter(Some(StrBytes::from_static_str("nothing")))
                .with_pattern_type_filter(3)
                .with_operation(1)
                .with_permission_type(1),
        ]),
    );
    assert_eq!(del.filter_results.len(), 2);
    assert_eq!(del.filter_results[0].error_code, 0);
    let gone = &del.filter_results[0].matching_acls;
    assert_eq!(gone.len(), 1, "{del:?}");
    assert_eq!((gone[0].operation, gone[0].permission_type), (4, 2));
    assert!(del.filter_results[1].matching_acls.is_empty());
    drop(w);
    // The ACLs are in __meta: a restart keeps them.
    s.restart();
    let mut w = Wire::connect(s.port);
    let d = describe_all(&mut w, 3);
    let n: usize = d.resources.iter().map(|r| r.acls.len()).sum();
    assert_eq!(n, 2, "{d:?}");
}

fn quota_entry(
    entity: &[(&str, Option<&str>)],
    ops: &[(&str, f64, bool)],
) -> alter_client_quotas_request::EntryData {
    use alter_client_quotas_request::{EntityData, EntryData, OpData};
    EntryData::default()
        .with_entity(
            entity
                .iter()
                .map(|(t, n)| {
                    EntityData::default()
                        .with_entity_type(StrBytes::from_string(t.to_string()))
                        .with_entity_name(n.map(|n| StrBytes::from_string(n.to_string())))
                })
                .collect(),
        )
        .with_ops(
            ops.iter()
                .map(|(k, v, remove)| {
                    OpData::default()
                        .with_key(StrBytes::from_string(k.to_string()))
                        .with_value(*v)
                        .with_remove(*remove)
                })
                .collect(),
        )
}

fn alter_quotas(
    w: &mut Wire,
    entries: Vec<alter_client_quotas_request::EntryData>,
    validate_only: bool,
) -> Vec<i16> {
    let r: AlterClientQuotasResponse = w.call(
        ApiKey::AlterClientQuotas,
        1,
        &AlterClientQuotasRequest::default()
            .with_entries(entries)
            .with_validate_only(validate_only),
    );
    r.entries.iter().map(|e| e.error_code).collect()
}

/// (entity, values) of every stored quota matching one filter component.
#[allow(clippy::type_complexity)]
fn describe_quotas(
    w: &mut Wire,
    entity_type: &str,
    match_type: i8,
    strict: bool,
) -> Vec<(Vec<(String, Option<String>)>, Vec<(String, f64)>)> {
    use describe_client_quotas_request::ComponentData;
    let r: DescribeClientQuotasResponse = w.call(
        ApiKey::DescribeClientQuotas,
        1,
        &DescribeClientQuotasRequest::default()
            .with_components(vec![ComponentData::default()
                .with_entity_type(StrBytes::from_string(entity_type.to_string()))
                .with_match_type(match_type)
                .with_match(None)])
            .with_strict(strict),
    );
    assert_eq!(r.error_code, 0, "{r:?}");
    r.entries
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.entity
                    .iter()
                    .map(|d| {
                        (
                            d.entity_type.to_string(),
                            d.entity_name.as_ref().map(|n| n.to_string()),
                        )
                    })
                    .collect(),
                e.values
                    .iter()
                    .map(|v| (v.key.to_string(), v.value))
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn client_quotas_are_stored_described_and_enforced() {
    let mut s = Server::start();
    let mut w = Wire::connect(s.port);
    use describe_client_quotas_request::ComponentData;
    // Filters are checked the way Kafka checks them.
    let bad: DescribeClientQuotasResponse = w.call(
        ApiKey::DescribeClientQuotas,
        1,
        &DescribeClientQuotasRequest::default().with_components(vec![ComponentData::default()
            .with_entity_type(StrBytes::from_static_str("user"))
            .with_match_type(0)
            .with_match(None)]),
    );
    assert_eq!((bad.error_code, bad.entries), (42, None));
    assert!(describe_quotas(&mut w, "user", 2, false).is_empty());

    // Each entry stands alone: the valid ones apply, the others get INVALID_REQUEST.
    let codes = alter_quotas(
        &mut w,
        vec![
            quota_entry(
                &[("client-id", Some("wire-test"))],
                &[("producer_byte_rate", 20_000.0, false)],
            ),
            quota_entry(
                &[("user", Some("alice")), ("client-id", None)],
                &[("consumer_byte_rate", 1.5, false)],
            ),
            quota_entry(&[("user", None)], &[("request_percentage", 50.0, false)]),
            quota_entry(
                &[("ip", Some("bogus"))],
                &[("connection_creation_rate", 3.0, false)],
            ),
            quota_entry(
                &[("user", Some("bob"))],
                &[
                    ("producer_byte_rate", 1.0, false),
                    ("producer_byte_rate", 2.0, false),
                ],
            ),
        ],
        false,
    );
    assert_eq!(codes, vec![0, 42, 0, 42, 42]);
    // validate_only stores nothing.
    let codes = alter_quotas(
        &mut w,
        vec![quota_entry(
            &[("client-id", Some("other"))],
            &[("producer_byte_rate", 5.0, false)],
        )],
        true,
    );
    assert_eq!(codes, vec![0]);
    let clients = describe_quotas(&mut w, "client-id", 2, true);
    assert_eq!(
        clients,
        vec![(
            vec![("client-id".to_string(), Some("wire-test".to_string()))],
            vec![("producer_byte_rate".to_string(), 20_000.0)]
        )]
    );
    let users = describe_quotas(&mut w, "user", 1, false);
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0].1, vec![("request_percentage".to_string(), 50.0)]);

    // 220 KB at once is 22 KB/s over the 10 s minimum window: throttled about a second, and
    // the connection is not read again before that.
    create_topic(&mut w, "quota-t", 1);
    let values = vec![vec![7u8; 1000]; 220];
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> =
        values.iter().map(|v| (None, Some(v.as_slice()))).collect();
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name("quota-t"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(
                    chronik_protocol::batch::encode_batch(&kv, 1),
                )))])]);
    let r: ProduceResponse = w.call(ApiKey::Produce, 9, &req);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    assert!(
        (500..=2_000).contains(&r.throttle_time_ms),
        "throttle {}",
        r.throttle_time_ms
    );
    let started = std::time::Instant::now();
    let _ = describe_quotas(&mut w, "user", 1, false);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(r.throttle_time_ms as u64 - 200),
        "muted only {:?}",
        started.elapsed()
    );

    // Quotas are metadata: they survive kill -9.
    s.kill9();
    s.restart();
    let mut w = Wire::connect(s.port);
    assert_eq!(describe_quotas(&mut w, "client-id", 2, false), clients);
    // Removing the last key removes the entity.
    let codes = alter_quotas(
        &mut w,
        vec![quota_entry(
            &[("client-id", Some("wire-test"))],
            &[("producer_byte_rate", 0.0, true)],
        )],
        false,
    );
    assert_eq!(codes, vec![0]);
    assert!(describe_quotas(&mut w, "client-id", 2, false).is_empty());
    assert_eq!(describe_quotas(&mut w, "user", 1, false).len(), 1);
}

/// A consumer_byte_rate quota: a fetch is capped at the quota's worth of the window, and an
/// over-quota fetch comes back throttled and without records (they do not count).
#[test]
fn consumer_byte_rate_caps_and_empties_fetches() {
    use fetch_request::{FetchPartition, FetchTopic};
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    create_topic(&mut w, "cq", 1);
    let values = vec![vec![3u8; 1000]; 30];
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> =
        values.iter().map(|v| (None, Some(v.as_slice()))).collect();
    for _ in 0..10 {
        let batch = chronik_protocol::batch::encode_batch(&kv, 1);
        assert_eq!(produce(&mut w, "cq", 0, batch), 0);
    }
    // 10 KB/s: a fetch carries at most 100 KB (the quota's worth of the 10 s window).
    let codes = alter_quotas(
        &mut w,
        vec![quota_entry(
            &[("client-id", Some("wire-test"))],
            &[("consumer_byte_rate", 10_000.0, false)],
        )],
        false,
    );
    assert_eq!(codes, vec![0]);
    let fetch = |w: &mut Wire, offset: i64| -> FetchResponse {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(50 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("cq"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(50 << 20)])]);
        w.call(ApiKey::Fetch, 12, &req)
    };
    let records = |r: &FetchResponse| {
        r.responses[0].partitions[0]
            .records
            .as_ref()
            .map_or(0, |b| b.len())
    };
    let first = fetch(&mut w, 0);
    let got = records(&first);
    assert!(
        got > 0 && got <= 100_000,
        "first fetch {got} bytes: {first:?}"
    );
    assert_eq!(first.throttle_time_ms, 0, "{}", first.throttle_time_ms);
    // The next one would double the rate: throttled, no records, high watermark still there.
    let second = fetch(&mut w, 90);
    assert!(second.throttle_time_ms > 0, "{}", second.throttle_time_ms);
    assert_eq!(records(&second), 0);
    assert_eq!(second.responses[0].partitions[0].high_watermark, 300);
}

/// KIP-124: a client over its request_percentage (thread time per second) gets
/// throttle_time_ms in its responses and its next request waits that long; another client is
/// not affected.
#[test]
fn request_quota_throttles_a_busy_client() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    // 1% of a thread: 10 ms of handler time per second, over the quota window.
    assert_eq!(
        alter_quotas(
            &mut w,
            vec![quota_entry(
                &[("client-id", Some("wire-test"))],
                &[("request_percentage", 1.0, false)]
            )],
            false
        ),
        vec![0]
    );
    let metadata = |w: &mut Wire| -> i32 {
        let r: MetadataResponse = w.call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        );
        r.throttle_time_ms
    };
    let started = std::time::Instant::now();
    let mut throttle = 0;
    let mut calls = 0;
    while throttle == 0 && started.elapsed() < std::time::Duration::from_secs(60) {
        throttle = metadata(&mut w);
        calls += 1;
    }
    assert!(
        throttle > 0,
        "{calls} Metadata calls in 60 s were never throttled"
    );
    // The connection is muted for each throttle time: the next request waits for it. Over the
    // next calls, the time they take covers the throttle times announced before them.
    let t = std::time::Instant::now();
    let mut owed = i64::from(throttle);
    for _ in 0..50 {
        owed += i64::from(metadata(&mut w));
    }
    let last = i64::from(metadata(&mut w));
    let waited = t.elapsed().as_millis() as i64;
    assert!(
        owed >= 20,
        "throttles of {owed} ms in all: too small to check the mute"
    );
    assert!(
        waited * 10 >= owed * 7,
        "throttled {owed} ms over 51 calls, but they took {waited} ms (last throttle {last})"
    );
    // ApiVersions is exempt, and a client under no quota is served without a throttle.
    let r: ApiVersionsResponse = w.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.throttle_time_ms, 0);
    let mut other = Wire::connect(s.port);
    other.client_id = "other";
    let r: ListGroupsResponse = other.call(ApiKey::ListGroups, 4, &ListGroupsRequest::default());
    assert_eq!((r.error_code, r.throttle_time_ms), (0, 0));
}

/// KIP-599: CreateTopics v6+ refuses topics once the client's controller_mutation_rate bucket
/// is in debt (THROTTLING_QUOTA_EXCEEDED); older versions are only throttled.
#[test]
fn controller_mutation_quota_refuses_and_throttles() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    let codes = alter_quotas(
        &mut w,
        vec![quota_entry(
            &[("client-id", Some("wire-test"))],
            &[("controller_mutation_rate", 1.0, false)],
        )],
        false,
    );
    assert_eq!(codes, vec![0]);
    let create = |w: &mut Wire, version: i16, topics: &[&str]| -> CreateTopicsResponse {
        let req = CreateTopicsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(name(t))
                            .with_num_partitions(6)
                            .with_replication_factor(1)
                    })
                    .collect(),
            )
            .with_timeout_ms(10_000);
        w.call(ApiKey::CreateTopics, version, &req)
    };
    // A burst of 11 partitions: the first two topics (12) go through, the third is refused.
    let r = create(&mut w, 7, &["cmq-a", "cmq-b", "cmq-c"]);
    let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, vec![0, 0, 89], "{r:?}");
    assert!((500..=1_500).contains(&r.throttle_time_ms), "{r:?}");
    // The throttle has passed (the connection was muted meanwhile); v5 only throttles.
    let r = create(&mut w, 5, &["cmq-d", "cmq-e"]);
    let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, vec![0, 0], "{r:?}");
    assert!(r.throttle_time_ms > 5_000, "{r:?}");
}

/// KIP-612: an address over its connection_creation_rate gets its new connections closed
/// unread after the throttle time; refused connections do not count.
#[test]
fn connection_creation_rate_closes_excess_connections() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    let codes = alter_quotas(
        &mut w,
        vec![quota_entry(
            &[("ip", None)],
            &[("connection_creation_rate", 1.0, false)],
        )],
        false,
    );
    assert_eq!(codes, vec![0]);
    // 1 connection/s over the 10 s minimum window: 10 connections, then refusals.
    let mut outcomes = Vec::new();
    for _ in 0..13 {
        let mut c = Wire::connect(s.port);
        c.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        outcomes.push(c.recv_frame().is_some());
    }
    let served = outcomes.iter().filter(|x| **x).count();
    assert_eq!(served, 10, "{outcomes:?}");
    assert!(outcomes[10..].iter().all(|x| !x), "{outcomes:?}");
    // The connection opened before the quota is untouched.
    let r: ApiVersionsResponse = w.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
}

#[test]
fn describe_topic_partitions_pages_with_a_cursor() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    create_topic(&mut w, "dtp-a", 3);
    create_topic(&mut w, "dtp-b", 4);
    create_topic(&mut w, "dtp-c", 2);
    let me = node_id(&mut w);
    use describe_topic_partitions_request::{Cursor, TopicRequest};
    let topics: Vec<TopicRequest> = ["dtp-c", "dtp-a", "dtp-b"]
        .iter()
        .map(|t| TopicRequest::default().with_name(name(t)))
        .collect();
    // Walk the pages with a limit of 2 partitions: every partition exactly once, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    for page in 0.. {
        assert!(page < 20, "cursor does not advance");
        let req = DescribeTopicPartitionsRequest::default()
            .with_topics(topics.clone())
            .with_response_partition_limit(2)
            .with_cursor(cursor.clone());
        let r: DescribeTopicPartitionsResponse = w.call(ApiKey::DescribeTopicPartitions, 0, &req);
        let n: usize = r.topics.iter().map(|t| t.partitions.len()).sum();
        assert!(n <= 2, "{r:?}");
        for t in &r.topics {
            assert_eq!(t.error_code, 0);
            assert!(!t.topic_id.is_nil());
            for p in &t.partitions {
                assert_eq!(p.leader_id.0, me);
                assert_eq!(p.replica_nodes, vec![BrokerId(me)]);
                seen.push((t.name.as_ref().unwrap().0.to_string(), p.partition_index));
            }
        }
        match r.next_cursor {
            Some(c) => {
                cursor = Some(
                    Cursor::default()
                        .with_topic_name(c.topic_name)
                        .with_partition_index(c.partition_index),
                )
            }
            None => break,
        }
    }
    let want: Vec<(String, i32)> = [("dtp-a", 3), ("dtp-b", 4), ("dtp-c", 2)]
        .iter()
        .flat_map(|&(t, n)| (0..n).map(move |i| (t.to_string(), i)))
        .collect();
    assert_eq!(seen, want);
    // Unknown and invalid names are reported; a cursor outside the list is INVALID_REQUEST.
    let r: DescribeTopicPartitionsResponse = w.call(
        ApiKey::DescribeTopicPartitions,
        0,
        &DescribeTopicPartitionsRequest::default()
            .with_response_partition_limit(100)
            .with_topics(vec![
                TopicRequest::default().with_name(name("dtp-a")),
                TopicRequest::default().with_name(name("missing")),
                TopicRequest::default().with_name(name("bad/name")),
            ]),
    );
    let codes: Vec<(String, i16)> = r
        .topics
        .iter()
        .map(|t| (t.name.as_ref().unwrap().0.to_string(), t.error_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("bad/name".to_string(), 17),
            ("dtp-a".to_string(), 0),
            ("missing".to_string(), 3)
        ]
    );
    let r: DescribeTopicPartitionsResponse = w.call(
        ApiKey::DescribeTopicPartitions,
        0,
        &DescribeTopicPartitionsRequest::default()
            .with_response_partition_limit(100)
            .with_topics(vec![TopicRequest::default().with_name(name("dtp-a"))])
            .with_cursor(Some(
                Cursor::default()
                    .with_topic_name(name("dtp-b"))
                    .with_partition_index(0),
            )),
    );
    assert_eq!(r.topics[0].error_code, 42);
    // Empty topic list: every topic (the internal offsets topic may be among them).
    let r: DescribeTopicPartitionsResponse = w.call(
        ApiKey::DescribeTopicPartitions,
        0,
        &DescribeTopicPartitionsRequest::default().with_response_partition_limit(2000),
    );
    for t in ["dtp-a", "dtp-b", "dtp-c"] {
        assert!(r
            .topics
            .iter()
            .any(|x| x.name.as_ref().unwrap().0.as_str() == t));
    }
}

#[test]
fn describe_quorum_reports_the_metadata_raft_group() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    let me = node_id(&mut w);
    let req = |t: &str, p: i32| {
        DescribeQuorumRequest::default().with_topics(vec![
            describe_quorum_request::TopicData::default()
                .with_topic_name(name(t))
                .with_partitions(vec![
                    describe_quorum_request::PartitionData::default().with_partition_index(p)
                ]),
        ])
    };
    let before: DescribeQuorumResponse =
        w.call(ApiKey::DescribeQuorum, 2, &req("__cluster_metadata", 0));
    assert_eq!(before.error_code, 0);
    let p = &before.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "{before:?}");
    assert_eq!(p.leader_id.0, me);
    assert!(p.leader_epoch >= 1);
    assert_eq!(p.current_voters.len(), 1);
    assert_eq!(p.current_voters[0].replica_id.0, me);
    assert!(p.current_voters[0].log_end_offset >= p.high_watermark);
    assert!(p.observers.is_empty());
    assert_eq!(before.nodes.len(), 1);
    assert_eq!(before.nodes[0].listeners[0].port, s.port);
    // A metadata change (creating a topic) moves the high watermark.
    create_topic(&mut w, "dq", 1);
    let after: DescribeQuorumResponse =
        w.call(ApiKey::DescribeQuorum, 1, &req("__cluster_metadata", 0));
    let q = &after.topics[0].partitions[0];
    assert!(q.high_watermark > p.high_watermark, "{p:?} then {q:?}");
    assert!(q.current_voters[0].last_fetch_timestamp > 0);
    // Anything but the metadata partition is a top-level error.
    for (t, i) in [("__cluster_metadata", 1), ("other", 0)] {
        let r: DescribeQuorumResponse = w.call(ApiKey::DescribeQuorum, 0, &req(t, i));
        assert_eq!(r.error_code, 3, "{t}-{i}");
    }
}

#[test]
fn delete_topics_v6_by_id() {
    let s = Server::start();
    let mut w = Wire::connect(s.port);
    create_topic(&mut w, "del-id", 1);
    let md: MetadataResponse = w.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name("del-id"))),
        ])),
    );
    let id = md.topics[0].topic_id;
    assert!(!id.is_nil());
    use delete_topics_request::DeleteTopicState;
    let unknown = uuid::Uuid::from_u128(42);
    let r: DeleteTopicsResponse = w.call(
        ApiKey::DeleteTopics,
        6,
        &DeleteTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![
                DeleteTopicState::default()
                    .with_name(None)
                    .with_topic_id(id),
                DeleteTopicState::default()
                    .with_name(None)
                    .with_topic_id(unknown),
                DeleteTopicState::default()
                    .with_name(Some(name("del-id")))
                    .with_topic_id(id),
            ]),
    );
    let mut got: Vec<(Option<String>, uuid::Uuid, i16)> = r
        .responses
        .iter()
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.0.to_string()),
                t.topic_id,
                t.error_code,
            )
        })
        .collect();
    got.sort_by_key(|x| x.2);
    assert_eq!(
        got,
        vec![
            (Some("del-id".to_string()), id, 0),
            (Some("del-id".to_string()), id, 42),
            (None, unknown, 100),
        ]
    );
    let md: MetadataResponse = w.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(name("del-id")))])),
    );
    assert_eq!(md.topics[0].error_code, 3);
}
