"""kafka-python checks against a running Chronik broker: a group consumer with auto commit, and
(`transactions`) a transactional producer with read_committed consumers.

Usage: kafka_python_suite.py BOOTSTRAP [transactions]
"""

import sys
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata

BOOT = sys.argv[1]


def admin_main():
    """Log dirs, producers, elections, reassignments, ACLs, SCRAM, the metadata quorum, records:
    each answered from the broker's real state, checked against what this script did.
    (`kafka_python_suite.py BOOTSTRAP admin`)"""
    from kafka import TopicPartition
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourcePatternFilter,
        ResourceType,
    )
    from kafka.errors import InvalidReplicationAssignmentError, SecurityDisabledError

    topic = f"kpa-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=BOOT)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    me = admin.describe_cluster()["controller_id"]
    prod = KafkaProducer(bootstrap_servers=BOOT, acks="all", enable_idempotence=True)
    for i in range(20):
        prod.send(topic, value=b"x" * 500, partition=0)
    prod.flush(timeout=30)
    prod.close()

    # DescribeLogDirs: one directory; partition 0 holds the 10 KB written, partition 1 nothing.
    dirs = admin.describe_log_dirs({topic: [0, 1]})
    assert len(dirs) == 1 and len(dirs[0]["log_dirs"]) == 1, dirs
    d = dirs[0]["log_dirs"][0]
    assert d["error_code"] == 0 and d["log_dir"].startswith("/"), d
    sizes = {p["partition_index"]: p["partition_size"] for t in d["topics"] for p in t["partitions"]}
    assert sizes[0] >= 20 * 500 and sizes[1] < 500, sizes

    # DescribeProducers: the idempotent producer above, at sequence 19.
    states = admin.describe_producers([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    active = states[TopicPartition(topic, 0)].active_producers
    assert len(active) == 1 and active[0].last_sequence == 19, states
    assert active[0].producer_id >= 0 and active[0].producer_epoch >= 0
    assert states[TopicPartition(topic, 1)].active_producers == []

    # ElectLeaders: the only replica already leads.
    r = admin.elect_leaders(0, {topic: [0, 1]})
    codes = [p.error_code for t in r.replica_election_results for p in t.partition_result]
    assert codes == [84, 84], r

    # Reassignments: none in progress; this node's own set is a no-op, another broker invalid.
    assert admin.list_partition_reassignments() == {}
    r = admin.alter_partition_reassignments({TopicPartition(topic, 0): [me]})
    assert r == {TopicPartition(topic, 0): None}, r
    r = admin.alter_partition_reassignments({TopicPartition(topic, 1): [me, me + 1]})
    assert r == {TopicPartition(topic, 1): InvalidReplicationAssignmentError}, r

    # describe_topics (DescribeTopicPartitions when the broker offers it).
    desc = admin.describe_topics([topic])
    assert len(desc) == 1 and desc[0]["error_code"] == 0, desc
    assert [p["partition_index"] for p in desc[0]["partitions"]] == [0, 1], desc
    assert all(p["leader_id"] == me for p in desc[0]["partitions"]), desc

    # ACLs without an authorizer: SECURITY_DISABLED, as Kafka answers.
    flt = ACLFilter(
        principal=None,
        host="*",
        operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.ANY,
        resource_pattern=ResourcePatternFilter(ResourceType.TOPIC, None, ACLResourcePatternType.ANY),
    )
    try:
        admin.describe_acls(flt)
        raise AssertionError("describe_acls succeeded without an authorizer")
    except SecurityDisabledError:
        pass
    acl = ACL("User:alice", "*", ACLOperation.READ, ACLPermissionType.ALLOW,
              ResourcePattern(ResourceType.TOPIC, topic))
    r = admin.create_acls([acl])
    assert r == {"succeeded": [], "failed": [SecurityDisabledError]}, r

    # No SCRAM credentials are stored: none listed, a named user is not found.
    assert admin.describe_user_scram_credentials() == {}
    r = admin.describe_user_scram_credentials(["alice"])
    assert r["alice"]["credential_infos"] == [] and "does not exist" in r["alice"]["error"], r

    # The metadata quorum: this node leads and is the only voter.
    q = admin.describe_metadata_quorum()["topics"][0]["partitions"][0]
    assert q["error"] is None and q["leader_id"] == me, q
    assert [v["replica_id"] for v in q["current_voters"]] == [me], q
    assert q["current_voters"][0]["log_end_offset"] >= q["high_watermark"] > 0, q

    # DeleteRecords moves the log start.
    r = admin.delete_records({TopicPartition(topic, 0): 5})
    assert r[TopicPartition(topic, 0)]["low_watermark"] == 5, r
    admin.close()
    print("OK kafka-python admin")


def main():
    if len(sys.argv) > 2 and sys.argv[2] == "admin":
        return admin_main()
    topic = f"kp-{uuid.uuid4().hex[:8]}"
    group = f"kpg-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=BOOT)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    admin.close()
    prod = KafkaProducer(bootstrap_servers=BOOT, acks="all", compression_type="gzip")
    for i in range(300):
        prod.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    prod.flush(timeout=30)
    prod.close()

    def consume(expect, timeout=45):
        c = KafkaConsumer(
            topic,
            bootstrap_servers=BOOT,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=True,
            auto_commit_interval_ms=200,
            consumer_timeout_ms=3000,
        )
        got = []
        deadline = time.time() + timeout
        while len(got) < expect and time.time() < deadline:
            for m in c:
                got.append(m.value)
                if len(got) >= expect:
                    break
        time.sleep(0.5)  # let the auto commit run
        c.close(autocommit=True)
        return got

    got = consume(300)
    assert len(got) == 300, f"first consumer got {len(got)}"
    assert len(set(got)) == 300
    # Auto-committed: a second consumer in the group sees only new messages.
    prod = KafkaProducer(bootstrap_servers=BOOT, acks="all")
    prod.send(topic, value=b"fresh")
    prod.flush(timeout=30)
    prod.close()
    got = consume(1, timeout=30)
    assert got == [b"fresh"], f"after auto commit: {got[:5]}"
    print("OK kafka-python group consumer with auto commit")


def read_all(topic, isolation, expect_max, timeout=20):
    c = KafkaConsumer(
        bootstrap_servers=BOOT,
        isolation_level=isolation,
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
    )
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = []
    deadline = time.time() + timeout
    while time.time() < deadline and len(got) < expect_max:
        batch = c.poll(timeout_ms=500)
        if not batch and got:
            break
        for msgs in batch.values():
            got.extend(m.value.decode() for m in msgs)
    c.close()
    return got


def transactions():
    """Commit one transaction, abort one, and a consume-transform-produce commit with
    send_offsets_to_transaction; read_committed sees exactly the committed records."""
    src, out = f"kptin-{uuid.uuid4().hex[:8]}", f"kptout-{uuid.uuid4().hex[:8]}"
    group = f"kptg-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=BOOT)
    admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1) for t in (src, out)])
    admin.close()
    plain = KafkaProducer(bootstrap_servers=BOOT, acks="all")
    for i in range(4):
        plain.send(src, value=f"in{i}".encode())
    plain.flush(timeout=30)
    plain.close()

    p = KafkaProducer(bootstrap_servers=BOOT, transactional_id=f"kpt-{uuid.uuid4().hex[:8]}")
    p.init_transactions()
    p.begin_transaction()
    for i in range(3):
        p.send(out, value=f"c{i}".encode())
    p.commit_transaction()
    p.begin_transaction()
    for i in range(3):
        p.send(out, value=f"a{i}".encode())
    p.flush(timeout=30)
    p.abort_transaction()

    c = KafkaConsumer(
        src,
        bootstrap_servers=BOOT,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    got = []
    deadline = time.time() + 30
    while len(got) < 4 and time.time() < deadline:
        for msgs in c.poll(timeout_ms=500).values():
            got.extend(msgs)
    assert len(got) == 4, f"consumed {len(got)} of 4"
    p.begin_transaction()
    for m in got:
        p.send(out, value=b"t-" + m.value)
    tp = TopicPartition(src, 0)
    p.send_offsets_to_transaction({tp: OffsetAndMetadata(c.position(tp), "", -1)}, group)
    p.commit_transaction()
    c.close(autocommit=False)
    p.close()

    committed = read_all(out, "read_committed", 7)
    want = [f"c{i}" for i in range(3)] + [f"t-in{i}" for i in range(4)]
    assert committed == want, f"read_committed got {committed}"
    everything = read_all(out, "read_uncommitted", 10)
    assert everything == [f"c{i}" for i in range(3)] + [f"a{i}" for i in range(3)] + [
        f"t-in{i}" for i in range(4)
    ], f"read_uncommitted got {everything}"
    check = KafkaConsumer(bootstrap_servers=BOOT, group_id=group, enable_auto_commit=False)
    offset = check.committed(tp)
    check.close()
    assert offset == 4, f"group offset {offset}"
    print(f"OK kafka-python transactions committed={len(committed)} all={len(everything)}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "transactions":
        transactions()
    else:
        main()
