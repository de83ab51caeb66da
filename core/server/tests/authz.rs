//! The authorizer (`server.authorization_enabled`) on a SASL listener: what each principal may
//! do follows the ACLs a super user creates, with Kafka's error codes for what it may not.

mod common;

use bytes::Bytes;
use common::{Server, Wire};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A connection authenticated with PLAIN as `user`.
fn login(port: u16, user: &str, password: &str) -> Wire {
    let mut w = Wire::connect(port);
    let hs = SaslHandshakeRequest::default().with_mechanism(s("PLAIN"));
    let r: SaslHandshakeResponse = w.call(ApiKey::SaslHandshake, 1, &hs);
    assert_eq!(r.error_code, 0);
    let token = format!("\0{user}\0{password}");
    let r: SaslAuthenticateResponse = w.call(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
    );
    assert_eq!(r.error_code, 0, "{user} logs in");
    w
}

fn create_topic(w: &mut Wire, name: &str) -> i16 {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s(name)))
            .with_num_partitions(1)
            .with_replication_factor(1)])
        .with_timeout_ms(10_000);
    let r: CreateTopicsResponse = w.call(ApiKey::CreateTopics, 7, &req);
    r.topics[0].error_code
}

fn produce(w: &mut Wire, topic: &str) -> i16 {
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> = vec![(Some(b"k"), Some(b"v"))];
    let batch = chronik_protocol::batch::encode_batch(&kv, 1_700_000_000_000);
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(batch)))])]);
    let r: ProduceResponse = w.call(ApiKey::Produce, 9, &req);
    r.responses[0].partition_responses[0].error_code
}

fn fetch(w: &mut Wire, topic: &str) -> i16 {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(s(topic)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 20)])]);
    let r: FetchResponse = w.call(ApiKey::Fetch, 12, &req);
    r.responses[0].partitions[0].error_code
}

fn metadata(w: &mut Wire, topics: Option<&[&str]>) -> Vec<(String, i16, i32)> {
    let req = MetadataRequest::default()
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(s(t)))))
                .collect()
        }))
        .with_allow_auto_topic_creation(false)
        .with_include_topic_authorized_operations(true);
    let r: MetadataResponse = w.call(ApiKey::Metadata, 12, &req);
    r.topics
        .iter()
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                t.error_code,
                t.topic_authorized_operations,
            )
        })
        .collect()
}

/// ACL codes: TOPIC=2 GROUP=3 CLUSTER=4; LITERAL=3 PREFIXED=4; READ=3 WRITE=4 CREATE=5
/// DESCRIBE=8; DENY=2 ALLOW=3.
fn grant(w: &mut Wire, rt: i8, name: &str, pt: i8, who: &str, op: i8, perm: i8) {
    let r: CreateAclsResponse = w.call(
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(vec![AclCreation::default()
            .with_resource_type(rt)
            .with_resource_name(s(name))
            .with_resource_pattern_type(pt)
            .with_principal(s(who))
            .with_host(s("*"))
            .with_operation(op)
            .with_permission_type(perm)]),
    );
    assert_eq!(r.results[0].error_code, 0, "{r:?}");
}

/// A broker with a PLAIN listener for `users` ("name:password,..."), the authorizer on, and
/// `admin` as super user.
fn start_authorizing(users: &str) -> Server {
    Server::start_with(&[
        ("CHRONIK_SASL_MECHANISMS", "PLAIN"),
        ("CHRONIK_SASL_BOOTSTRAP_USERS", users),
        ("CHRONIK_AUTHORIZATION_ENABLED", "true"),
        ("CHRONIK_SUPER_USERS", "User:admin"),
    ])
}

fn find_group(w: &mut Wire, group: &str) -> i16 {
    let r: FindCoordinatorResponse = w.call(
        ApiKey::FindCoordinator,
        4,
        &FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![s(group)]),
    );
    r.coordinators[0].error_code
}

#[test]
fn acls_decide_what_each_principal_may_do() {
    let server = start_authorizing("admin:root-pw,alice:alice-pw,bob:bob-pw");
    let port = server.port;
    let mut admin = login(port, "admin", "root-pw");
    assert_eq!(
        create_topic(&mut admin, "orders"),
        0,
        "a super user may do anything"
    );
    assert_eq!(create_topic(&mut admin, "secret"), 0);

    // Alice has no ACL yet: she sees no topic and may change nothing.
    let mut alice = login(port, "alice", "alice-pw");
    assert!(metadata(&mut alice, None).is_empty());
    assert_eq!(
        metadata(&mut alice, Some(&["orders"]))[0].1,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(create_topic(&mut alice, "mine"), TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(produce(&mut alice, "orders"), TOPIC_AUTHORIZATION_FAILED);
    let r: CreateAclsResponse = alice.call(
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(vec![AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(s("orders"))
            .with_resource_pattern_type(3)
            .with_principal(s("User:alice"))
            .with_host(s("*"))
            .with_operation(2)
            .with_permission_type(3)]),
    );
    assert_eq!(r.results[0].error_code, CLUSTER_AUTHORIZATION_FAILED);

    // WRITE on "orders": she may produce there (and so describe it), not read it.
    grant(&mut admin, 2, "orders", 3, "User:alice", 4, 3);
    let seen = metadata(&mut alice, None);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "orders");
    // READ=3 DESCRIBE=8 WRITE=4 bits: WRITE and the DESCRIBE it implies.
    assert_eq!(seen[0].2, (1 << 4) | (1 << 8), "authorized operations");
    assert_eq!(produce(&mut alice, "orders"), 0);
    assert_eq!(fetch(&mut alice, "orders"), TOPIC_AUTHORIZATION_FAILED);
    // READ on every topic starting "ord", but a DENY on "secret" stands whatever else.
    grant(&mut admin, 2, "ord", 4, "User:alice", 3, 3);
    grant(&mut admin, 2, "*", 3, "User:alice", 3, 3);
    grant(&mut admin, 2, "secret", 3, "User:alice", 3, 2);
    assert_eq!(fetch(&mut alice, "orders"), 0);
    assert_eq!(fetch(&mut alice, "secret"), TOPIC_AUTHORIZATION_FAILED);
    // DescribeConfigs needs DESCRIBE_CONFIGS, which READ does not imply.
    let r: DescribeConfigsResponse = alice.call(
        ApiKey::DescribeConfigs,
        4,
        &DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("orders"))
            .with_configuration_keys(None)]),
    );
    assert_eq!(r.results[0].error_code, TOPIC_AUTHORIZATION_FAILED);

    // Groups: READ on "app" lets her find its coordinator; another group is refused.
    grant(&mut admin, 3, "app", 3, "User:alice", 3, 3);
    assert_eq!(find_group(&mut alice, "app"), 0);
    assert_eq!(find_group(&mut alice, "other"), GROUP_AUTHORIZATION_FAILED);
    let r: OffsetFetchResponse = alice.call(
        ApiKey::OffsetFetch,
        7,
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(s("other")))
            .with_topics(None),
    );
    assert_eq!(r.error_code, GROUP_AUTHORIZATION_FAILED);

    // Committed offsets of topics she may not DESCRIBE stay hidden.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("app")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(
            ["orders", "secret"]
                .iter()
                .map(|t| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(vec![OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(1)])
                })
                .collect(),
        );
    let r: OffsetCommitResponse = admin.call(ApiKey::OffsetCommit, 8, &commit);
    assert!(
        r.topics.iter().all(|t| t.partitions[0].error_code == 0),
        "{r:?}"
    );
    grant(&mut admin, 2, "secret", 3, "User:alice", 8, 2);
    let offsets = |w: &mut Wire, topics: Option<Vec<&str>>| -> Vec<(String, i64, i16)> {
        let r: OffsetFetchResponse = w.call(
            ApiKey::OffsetFetch,
            7,
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(s("app")))
                .with_topics(topics.map(|ts| {
                    ts.iter()
                        .map(|t| {
                            OffsetFetchRequestTopic::default()
                                .with_name(TopicName(s(t)))
                                .with_partition_indexes(vec![0])
                        })
                        .collect()
                })),
        );
        assert_eq!(r.error_code, 0);
        r.topics
            .iter()
            .map(|t| {
                let p = &t.partitions[0];
                (t.name.0.to_string(), p.committed_offset, p.error_code)
            })
            .collect()
    };
    assert_eq!(offsets(&mut alice, None), [("orders".to_string(), 1, 0)]);
    assert_eq!(
        offsets(&mut alice, Some(vec!["secret"])),
        [("secret".to_string(), -1, TOPIC_AUTHORIZATION_FAILED)]
    );
    assert_eq!(offsets(&mut admin, None).len(), 2, "a super user sees both");

    // Bob has none of alice's ACLs.
    let mut bob = login(port, "bob", "bob-pw");
    assert_eq!(produce(&mut bob, "orders"), TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(fetch(&mut bob, "orders"), TOPIC_AUTHORIZATION_FAILED);
    // Cluster-wide admin APIs need their cluster operation.
    let r: DescribeUserScramCredentialsResponse = bob.call(
        ApiKey::DescribeUserScramCredentials,
        0,
        &DescribeUserScramCredentialsRequest::default().with_users(None),
    );
    assert_eq!(r.error_code, CLUSTER_AUTHORIZATION_FAILED);
    use alter_replica_log_dirs_request::{AlterReplicaLogDir, AlterReplicaLogDirTopic};
    let r: AlterReplicaLogDirsResponse = bob.call(
        ApiKey::AlterReplicaLogDirs,
        2,
        &AlterReplicaLogDirsRequest::default().with_dirs(vec![AlterReplicaLogDir::default()
            .with_path(s("/elsewhere"))
            .with_topics(vec![AlterReplicaLogDirTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partitions(vec![0])])]),
    );
    assert_eq!(
        r.results[0].partitions[0].error_code,
        CLUSTER_AUTHORIZATION_FAILED
    );
    // A wildcard principal ACL reaches him too.
    grant(&mut admin, 2, "orders", 3, "User:*", 4, 3);
    assert_eq!(produce(&mut bob, "orders"), 0);
}

/// KIP-848: a regex subscription resolves only to topics the member may DESCRIBE (Kafka filters
/// regex matches by the member's rights; named topics are refused outright).
#[test]
fn consumer_group_regex_matches_only_describable_topics() {
    let server = start_authorizing("admin:root-pw,alice:alice-pw");
    let port = server.port;
    let mut admin = login(port, "admin", "root-pw");
    assert_eq!(create_topic(&mut admin, "orders"), 0);
    assert_eq!(create_topic(&mut admin, "secret"), 0);
    let r: MetadataResponse = admin.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    let id = |name: &str| {
        r.topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
            .map(|t| t.topic_id)
            .unwrap()
    };
    let (orders, secret) = (id("orders"), id("secret"));
    // Alice may read every topic but not describe "secret", and may use groups "app*".
    grant(&mut admin, 2, "*", 3, "User:alice", 3, 3);
    grant(&mut admin, 2, "secret", 3, "User:alice", 8, 2);
    grant(&mut admin, 3, "app", 4, "User:alice", 3, 3);
    let join = |w: &mut Wire, group: &str| -> Vec<uuid::Uuid> {
        let req = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(&format!("{group}-member")))
            .with_member_epoch(0)
            .with_instance_id(None)
            .with_rack_id(None)
            .with_rebalance_timeout_ms(5_000)
            .with_subscribed_topic_names(None)
            .with_subscribed_topic_regex(Some(s("orders|secret")))
            .with_server_assignor(None)
            .with_topic_partitions(Some(Vec::new()));
        let r: ConsumerGroupHeartbeatResponse = w.call(ApiKey::ConsumerGroupHeartbeat, 1, &req);
        assert_eq!(r.error_code, 0, "{r:?}");
        let mut ids: Vec<uuid::Uuid> = r
            .assignment
            .map(|a| a.topic_partitions.iter().map(|t| t.topic_id).collect())
            .unwrap_or_default();
        ids.sort();
        ids
    };
    let mut alice = login(port, "alice", "alice-pw");
    assert_eq!(join(&mut alice, "app-alice"), vec![orders]);
    let mut both = vec![orders, secret];
    both.sort();
    assert_eq!(
        join(&mut admin, "app-admin"),
        both,
        "a super user sees both"
    );
}
