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


def main():
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
