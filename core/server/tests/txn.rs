//! Wire-level transaction tests (KIP-98) against a real `chronik-server`: coordinator lookup,
//! InitProducerId epochs and fencing, AddPartitionsToTxn, transactional produce, LSO and
//! read_committed fetch with aborted transactions, ListOffsets by isolation level, EndTxn
//! errors, and an open transaction surviving kill -9 until a new producer aborts it.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Server, Wire};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

/// Few state partitions: start-up stays quick, and the partition count setting is exercised.
const ENV: &[(&str, &str)] = &[
    ("CHRONIK_TRANSACTION_STATE_LOG_NUM_PARTITIONS", "3"),
    ("CHRONIK_TRANSACTION_MAX_TIMEOUT_MS", "60000"),
];

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn create_topic(w: &mut Wire, name: &str) {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s(name)))
            .with_num_partitions(1)
            .with_replication_factor(1)])
        .with_timeout_ms(10_000);
    let resp: CreateTopicsResponse = w.call(ApiKey::CreateTopics, 7, &req);
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0]);
}

/// InitProducerId v4, retrying CONCURRENT_TRANSACTIONS (51) and coordinator loading or
/// moving (14–16) like clients do.
fn init_pid(w: &mut Wire, tid: &str, timeout_ms: i32) -> InitProducerIdResponse {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s(tid))))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r: InitProducerIdResponse = w.call(ApiKey::InitProducerId, 4, &req);
        if !matches!(r.error_code, 14..=16 | 51) || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn add_partition(w: &mut Wire, tid: &str, pid: i64, epoch: i16, topic: &str) -> i16 {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(tid)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![0])]);
    let r: AddPartitionsToTxnResponse = w.call(ApiKey::AddPartitionsToTxn, 3, &req);
    r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

fn end_txn(w: &mut Wire, tid: &str, pid: i64, epoch: i16, commit: bool, version: i16) -> i16 {
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(tid)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let r: EndTxnResponse = w.call(ApiKey::EndTxn, version, &req);
    r.error_code
}

/// A batch of `n` records, transactional when `pid >= 0`.
fn batch(pid: i64, epoch: i16, seq: i32, n: usize, attrs: i16) -> Vec<u8> {
    let vals: Vec<Vec<u8>> = (0..n).map(|i| format!("v{i}").into_bytes()).collect();
    let kvs: Vec<chronik_protocol::batch::KeyValue<'_>> =
        vals.iter().map(|v| (None, Some(&v[..]))).collect();
    let mut b = chronik_protocol::batch::encode_batch(&kvs, 1_000);
    if pid >= 0 {
        chronik_protocol::batch::set_producer(&mut b, pid, epoch, seq, attrs);
    }
    b
}

fn produce(w: &mut Wire, topic: &str, tid: Option<&str>, records: Vec<u8>) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_transactional_id(tid.map(|t| TransactionalId(s(t))))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(records)))])]);
    let r: ProduceResponse = w.call(ApiKey::Produce, 9, &req);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

type Fetched = (i64, i64, Option<Vec<(i64, i64)>>, usize);

/// Fetch v12 from offset 0 at `isolation`; (high watermark, LSO, aborted, record bytes).
fn fetch(w: &mut Wire, topic: &str, isolation: i8) -> Fetched {
    try_fetch(w, topic, isolation).expect("fetch answered with an error")
}

/// `fetch`, or `None` if the partition answered with an error (not ready after a restart).
fn try_fetch(w: &mut Wire, topic: &str, isolation: i8) -> Option<Fetched> {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(s(topic)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let r: FetchResponse = w.call(ApiKey::Fetch, 12, &req);
    let p = &r.responses[0].partitions[0];
    if p.error_code != 0 {
        return None;
    }
    let aborted = p.aborted_transactions.as_ref().map(|a| {
        a.iter()
            .map(|t| (t.producer_id.0, t.first_offset))
            .collect()
    });
    Some((
        p.high_watermark,
        p.last_stable_offset,
        aborted,
        p.records.as_ref().map_or(0, |r| r.len()),
    ))
}

fn latest(w: &mut Wire, topic: &str, isolation: i8) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let r: ListOffsetsResponse = w.call(ApiKey::ListOffsets, 5, &req);
    r.topics[0].partitions[0].offset
}

const TXN: i16 = chronik_protocol::batch::TRANSACTIONAL_FLAG;

/// DescribeProducers' `current_txn_start_offset` of `pid` in partition 0 of `topic`.
fn txn_start(w: &mut Wire, topic: &str, pid: i64) -> Option<i64> {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    let r: DescribeProducersResponse = w.call(
        ApiKey::DescribeProducers,
        0,
        &DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
            .with_name(TopicName(s(topic)))
            .with_partition_indexes(vec![0])]),
    );
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "{p:?}");
    p.active_producers
        .iter()
        .find(|a| a.producer_id.0 == pid)
        .map(|a| a.current_txn_start_offset)
}

#[test]
fn abort_hides_records_from_read_committed_and_fences_old_epochs() {
    let server = Server::start_with(ENV);
    let mut w = Wire::connect(server.port);
    create_topic(&mut w, "t");

    // The transaction coordinator is found with key type 1 (v3 single key, v4 batched).
    let fc: FindCoordinatorResponse = w.call(
        ApiKey::FindCoordinator,
        3,
        &FindCoordinatorRequest::default()
            .with_key(s("tx-a"))
            .with_key_type(1),
    );
    assert_eq!((fc.error_code, fc.port), (0, server.port as i32));
    let fc: FindCoordinatorResponse = w.call(
        ApiKey::FindCoordinator,
        4,
        &FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![s("tx-a"), s("tx-b")]),
    );
    assert!(fc.coordinators.iter().all(|c| c.error_code == 0));

    // Timeouts above transaction.max.timeout.ms are refused.
    assert_eq!(init_pid(&mut w, "tx-a", 60_001).error_code, 50);
    let r = init_pid(&mut w, "tx-a", 10_000);
    assert_eq!((r.error_code, r.producer_epoch), (0, 0));
    let pid = r.producer_id.0;
    let r = init_pid(&mut w, "tx-a", 10_000);
    assert_eq!(
        (r.error_code, r.producer_id.0, r.producer_epoch),
        (0, pid, 1)
    );
    let epoch = 1;

    // EndTxn with no transaction: INVALID_TXN_STATE; unknown topic: UNKNOWN_TOPIC_OR_PARTITION.
    assert_eq!(end_txn(&mut w, "tx-a", pid, epoch, true, 3), 48);
    assert_eq!(add_partition(&mut w, "tx-a", pid, epoch, "nope"), 3);
    // Clients cannot produce control batches; transactional batches need the transactional
    // id (Kafka: TRANSACTIONAL_ID_AUTHORIZATION_FAILED) and a partition added to the ongoing
    // transaction (KIP-890 verification: INVALID_TXN_STATE), so nothing hangs the LSO.
    let control = batch(pid, epoch, -1, 1, chronik_protocol::batch::CONTROL_FLAG);
    assert_eq!(produce(&mut w, "t", None, control).0, 87);
    let marker = chronik_protocol::batch::encode_control_batch(pid, epoch, true, 0, 1);
    assert_eq!(produce(&mut w, "t", None, marker).0, 53);
    assert_eq!(
        produce(&mut w, "t", Some("tx-a"), batch(pid, epoch, 0, 1, TXN)).0,
        48
    );
    assert_eq!(latest(&mut w, "t", 0), 0, "nothing was appended");

    // offset 0: a plain record; 1–3: the transaction; then its abort marker at 4.
    assert_eq!(produce(&mut w, "t", None, batch(-1, -1, -1, 1, 0)), (0, 0));
    assert_eq!(add_partition(&mut w, "tx-a", pid, epoch, "t"), 0);
    assert_eq!(
        produce(&mut w, "t", Some("tx-a"), batch(pid, epoch, 0, 3, TXN)),
        (0, 1)
    );
    let (hw, lso, aborted, bytes) = fetch(&mut w, "t", 1);
    assert_eq!((hw, lso, aborted), (4, 1, Some(vec![])));
    assert!(bytes > 0, "the plain record below the LSO is served");
    let (_, lso0, _, bytes0) = fetch(&mut w, "t", 0);
    assert_eq!(lso0, 1, "read_uncommitted is told the LSO too");
    assert!(bytes0 > bytes, "read_uncommitted sees the open transaction");
    assert_eq!(latest(&mut w, "t", 1), 1);
    assert_eq!(latest(&mut w, "t", 0), 4);
    // DescribeProducers shows where the open transaction starts (what find-hanging reads).
    assert_eq!(txn_start(&mut w, "t", pid), Some(1));

    assert_eq!(end_txn(&mut w, "tx-a", pid, epoch, false, 3), 0);
    assert_eq!(
        txn_start(&mut w, "t", pid),
        Some(-1),
        "no transaction open any more"
    );
    // A retried abort succeeds; a commit of the aborted transaction does not.
    assert_eq!(end_txn(&mut w, "tx-a", pid, epoch, false, 3), 0);
    assert_eq!(end_txn(&mut w, "tx-a", pid, epoch, true, 3), 48);
    let (hw, lso, aborted, _) = fetch(&mut w, "t", 1);
    assert_eq!((hw, lso), (5, 5));
    assert_eq!(aborted, Some(vec![(pid, 1)]));
    assert_eq!(latest(&mut w, "t", 1), 5);

    // A committed transaction leaves nothing in the aborted list for its range.
    assert_eq!(add_partition(&mut w, "tx-a", pid, epoch, "t"), 0);
    assert_eq!(
        produce(&mut w, "t", Some("tx-a"), batch(pid, epoch, 3, 2, TXN)),
        (0, 5)
    );
    assert_eq!(end_txn(&mut w, "tx-a", pid, epoch, true, 3), 0);
    let (hw, lso, aborted, _) = fetch(&mut w, "t", 1);
    assert_eq!((hw, lso), (8, 8));
    assert_eq!(aborted, Some(vec![(pid, 1)]));

    // A new InitProducerId bumps the epoch: the old one is fenced (v2+ PRODUCER_FENCED 90,
    // older versions INVALID_PRODUCER_EPOCH 47), at the coordinator and at the partition.
    let r = init_pid(&mut w, "tx-a", 10_000);
    assert_eq!((r.producer_id.0, r.producer_epoch), (pid, epoch + 1));
    assert_eq!(add_partition(&mut w, "tx-a", pid, epoch, "t"), 90);
    assert_eq!(end_txn(&mut w, "tx-a", pid, epoch, true, 1), 47);
    assert_eq!(end_txn(&mut w, "tx-a", pid + 1000, epoch + 1, true, 3), 49);
}

#[test]
fn open_transaction_survives_kill9_and_is_aborted_by_the_next_producer() {
    let mut server = Server::start_with(ENV);
    let mut w = Wire::connect(server.port);
    create_topic(&mut w, "k");
    let r = init_pid(&mut w, "tx-k", 30_000);
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    assert_eq!(add_partition(&mut w, "tx-k", pid, epoch, "k"), 0);
    assert_eq!(
        produce(&mut w, "k", Some("tx-k"), batch(pid, epoch, 0, 4, TXN)),
        (0, 0)
    );
    drop(w);
    server.kill9();
    server.restart();
    let mut w = Wire::connect(server.port);
    // The open transaction was rebuilt from the log: read_committed still stops before it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (hw, lso) = loop {
        if let Some((hw, lso, _, _)) = try_fetch(&mut w, "k", 1) {
            if hw == 4 || Instant::now() > deadline {
                break (hw, lso);
            }
        }
        assert!(
            Instant::now() < deadline,
            "partition not served after restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!((hw, lso), (4, 0));
    // The same transactional id: its open transaction is fenced and aborted first.
    let r = init_pid(&mut w, "tx-k", 30_000);
    assert_eq!(r.error_code, 0);
    assert_eq!(
        (r.producer_id.0, r.producer_epoch),
        (pid, epoch + 2),
        "one bump to fence and abort, one for the new producer"
    );
    let (hw, lso, aborted, _) = fetch(&mut w, "k", 1);
    assert_eq!((hw, lso), (5, 5));
    assert_eq!(aborted, Some(vec![(pid, 0)]));
    // The old epoch's late batch is refused by the partition (the marker carried epoch + 1).
    assert_eq!(
        produce(&mut w, "k", Some("tx-k"), batch(pid, epoch, 4, 1, TXN)).0,
        47
    );
}

#[test]
fn transaction_timeout_aborts_and_fences() {
    let server = Server::start_with(ENV);
    let mut w = Wire::connect(server.port);
    create_topic(&mut w, "to");
    let r = init_pid(&mut w, "tx-to", 1_000);
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    assert_eq!(add_partition(&mut w, "tx-to", pid, epoch, "to"), 0);
    assert_eq!(
        produce(&mut w, "to", Some("tx-to"), batch(pid, epoch, 0, 2, TXN)),
        (0, 0)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let lso = loop {
        let (_, lso, _, _) = fetch(&mut w, "to", 1);
        if lso == 3 || Instant::now() > deadline {
            break lso;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(lso, 3, "the coordinator aborted the expired transaction");
    assert_eq!(end_txn(&mut w, "tx-to", pid, epoch, true, 3), 90);
}

/// OffsetFetch v7 for one partition of `group`: (error code, committed offset).
fn offset_fetch(w: &mut Wire, group: &str, topic: &str, require_stable: bool) -> (i16, i64) {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_require_stable(require_stable)
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partition_indexes(vec![0])]));
    let r: OffsetFetchResponse = w.call(ApiKey::OffsetFetch, 7, &req);
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.committed_offset)
}

fn txn_offset_commit(w: &mut Wire, tid: &str, group: &str, pid: i64, epoch: i16, offset: i64) {
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    let add: AddOffsetsToTxnResponse = w.call(
        ApiKey::AddOffsetsToTxn,
        3,
        &AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s(tid)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_group_id(GroupId(s(group))),
    );
    assert_eq!(add.error_code, 0);
    let req = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s(tid)))
        .with_group_id(GroupId(s(group)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(s("src")))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    let r: TxnOffsetCommitResponse = w.call(ApiKey::TxnOffsetCommit, 3, &req);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
}

#[test]
fn transactional_offsets_are_unstable_until_commit_and_dropped_on_abort() {
    let server = Server::start_with(ENV);
    let mut w = Wire::connect(server.port);
    create_topic(&mut w, "src");
    let r = init_pid(&mut w, "tx-o", 30_000);
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);

    // Aborted: the offsets never become the group's.
    txn_offset_commit(&mut w, "tx-o", "g-o", pid, epoch, 7);
    assert_eq!(offset_fetch(&mut w, "g-o", "src", true), (88, -1));
    assert_eq!(offset_fetch(&mut w, "g-o", "src", false), (0, -1));
    assert_eq!(end_txn(&mut w, "tx-o", pid, epoch, false, 3), 0);
    assert_eq!(offset_fetch(&mut w, "g-o", "src", true), (0, -1));

    // Committed: unstable while open, then the group's committed offset.
    txn_offset_commit(&mut w, "tx-o", "g-o", pid, epoch, 9);
    assert_eq!(offset_fetch(&mut w, "g-o", "src", true), (88, -1));
    assert_eq!(end_txn(&mut w, "tx-o", pid, epoch, true, 3), 0);
    assert_eq!(offset_fetch(&mut w, "g-o", "src", true), (0, 9));
}

#[test]
fn write_txn_markers_ends_a_hanging_transaction_per_partition() {
    use kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    let server = Server::start_with(ENV);
    let mut w = Wire::connect(server.port);
    create_topic(&mut w, "h");
    let r = init_pid(&mut w, "tx-h", 30_000);
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    assert_eq!(add_partition(&mut w, "tx-h", pid, epoch, "h"), 0);
    assert_eq!(
        produce(&mut w, "h", Some("tx-h"), batch(pid, epoch, 0, 2, TXN)),
        (0, 0)
    );
    assert_eq!(
        fetch(&mut w, "h", 1).1,
        0,
        "open: LSO at the transaction's start"
    );
    // `kafka-transactions.sh describe / list` see it.
    let d: DescribeTransactionsResponse = w.call(
        ApiKey::DescribeTransactions,
        0,
        &DescribeTransactionsRequest::default().with_transactional_ids(vec![
            TransactionalId(s("tx-h")),
            TransactionalId(s("nobody")),
        ]),
    );
    let t = &d.transaction_states[0];
    assert_eq!((t.error_code, t.transaction_state.as_str()), (0, "Ongoing"));
    assert_eq!((t.producer_id.0, t.producer_epoch), (pid, epoch));
    assert_eq!(t.topics.len(), 1);
    assert_eq!(
        (t.topics[0].topic.0.as_str(), &t.topics[0].partitions[..]),
        ("h", &[0][..])
    );
    assert_eq!(
        d.transaction_states[1].error_code, 105,
        "TRANSACTIONAL_ID_NOT_FOUND"
    );
    let l: ListTransactionsResponse = w.call(
        ApiKey::ListTransactions,
        1,
        &ListTransactionsRequest::default()
            .with_state_filters(vec![s("Ongoing"), s("Bogus")])
            .with_duration_filter(-1),
    );
    assert_eq!(l.error_code, 0);
    assert_eq!(l.unknown_state_filters, vec![s("Bogus")]);
    let listed: Vec<(&str, i64)> = l
        .transaction_states
        .iter()
        .map(|t| (t.transactional_id.0.as_str(), t.producer_id.0))
        .collect();
    assert_eq!(listed, vec![("tx-h", pid)]);
    // v2: a regular expression over the whole transactional id.
    let by_pattern = |w: &mut Wire, pattern: &str| -> ListTransactionsResponse {
        w.call(
            ApiKey::ListTransactions,
            2,
            &ListTransactionsRequest::default()
                .with_duration_filter(-1)
                .with_transactional_id_pattern(Some(s(pattern))),
        )
    };
    let ids = |l: &ListTransactionsResponse| -> Vec<String> {
        l.transaction_states
            .iter()
            .map(|t| t.transactional_id.0.to_string())
            .collect()
    };
    assert_eq!(ids(&by_pattern(&mut w, "tx-.*")), ["tx-h"]);
    assert_eq!(ids(&by_pattern(&mut w, "")), ["tx-h"], "empty: every one");
    assert!(
        ids(&by_pattern(&mut w, "tx")).is_empty(),
        "whole id must match"
    );
    assert_eq!(
        by_pattern(&mut w, "tx-(").error_code,
        128,
        "INVALID_REGULAR_EXPRESSION"
    );
    // What `kafka-transactions.sh abort` sends to the partition leader.
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_transaction_result(false)
        .with_topics(vec![
            WritableTxnMarkerTopic::default()
                .with_name(TopicName(s("h")))
                .with_partition_indexes(vec![0, 9]),
            WritableTxnMarkerTopic::default()
                .with_name(TopicName(s("nope")))
                .with_partition_indexes(vec![0]),
        ])]);
    let r: WriteTxnMarkersResponse = w.call(ApiKey::WriteTxnMarkers, 1, &req);
    let codes: Vec<Vec<i16>> = r.markers[0]
        .topics
        .iter()
        .map(|t| t.partitions.iter().map(|p| p.error_code).collect())
        .collect();
    assert_eq!(codes, vec![vec![0, 3], vec![3]]);
    let (hw, lso, aborted, _) = fetch(&mut w, "h", 1);
    assert_eq!((hw, lso), (3, 3));
    assert_eq!(aborted, Some(vec![(pid, 0)]));
}
