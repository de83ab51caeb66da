"""KIP-848 consumer groups with confluent-kafka (librdkafka, `group.protocol=consumer`).

Usage: kip848_client.py BOOTSTRAP

Two consumers share a 6-partition topic: the coordinator splits it between them without
overlap, they read every message exactly once between them and commit; the admin client
describes and lists the group as a consumer-protocol group; when one member leaves the other
gets every partition; a later member resumes from the committed offsets; a regex subscription
is resolved by the broker. Prints "OK kip848" at the end.
"""

import sys
import time

from confluent_kafka import Consumer, ConsumerGroupType, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BOOT = sys.argv[1]
TOPIC = "kip848-orders"
GROUP = "kip848-group"
PARTITIONS = 6
N = 600


def fail(msg):
    print("FAIL", msg, flush=True)
    sys.exit(1)


def consumer(extra=None):
    conf = {
        "bootstrap.servers": BOOT,
        "group.id": GROUP,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    conf.update(extra or {})
    return Consumer(conf)


def assigned(c):
    return {(tp.topic, tp.partition) for tp in c.assignment()}


def poll_until(consumers, cond, timeout, seen=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for c in consumers:
            m = c.poll(0.1)
            if m is not None and m.error() is None and seen is not None:
                key = (m.topic(), m.partition(), m.offset())
                if key in seen:
                    fail(f"message {key} delivered twice")
                seen[key] = m.value()
        if cond():
            return True
    return False


def main():
    admin = AdminClient({"bootstrap.servers": BOOT})
    for f in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
        f.result(30)
    a = consumer()
    a.subscribe([TOPIC])
    seen = {}
    if not poll_until([a], lambda: len(assigned(a)) == PARTITIONS, 30, seen):
        fail(f"first member never got all partitions: {assigned(a)}")
    b = consumer()
    b.subscribe([TOPIC])

    def split():
        x, y = assigned(a), assigned(b)
        return x and y and not (x & y) and len(x | y) == PARTITIONS

    if not poll_until([a, b], split, 60, seen):
        fail(f"no split: a={assigned(a)} b={assigned(b)}")
    # Produced once the split is settled, so no rebalance happens while the group reads.
    p = Producer({"bootstrap.servers": BOOT, "acks": "all"})
    for i in range(N):
        p.produce(TOPIC, key=str(i).encode(), value=f"v{i}".encode(), partition=i % PARTITIONS)
    if p.flush(30) != 0:
        fail("produce did not finish")

    if not poll_until([a, b], lambda: len(seen) == N, 60, seen):
        fail(f"consumed {len(seen)} of {N}")
    # Each message once, with the value produced for its key.
    values = sorted(int(v[1:]) for v in seen.values())
    if values != list(range(N)):
        fail("consumed values differ from the produced ones")
    a.commit(asynchronous=False)
    b.commit(asynchronous=False)

    groups = admin.describe_consumer_groups([GROUP])
    d = groups[GROUP].result(30)
    if len(d.members) != 2:
        fail(f"describe shows {len(d.members)} members")
    described = set()
    for m in d.members:
        described |= {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions}
    if len(described) != PARTITIONS:
        fail(f"described assignment {described}")
    gtype = getattr(d, "type", None)
    if gtype is not None and "CONSUMER" not in str(gtype).upper():
        fail(f"group type {gtype}")
    listed = admin.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(30)
    if GROUP not in {g.group_id for g in listed.valid}:
        fail("group not listed as a consumer-protocol group")
    listed = admin.list_consumer_groups(types={ConsumerGroupType.CLASSIC}).result(30)
    if GROUP in {g.group_id for g in listed.valid}:
        fail("group listed as a classic group")

    # b leaves: a takes every partition.
    b.close()
    if not poll_until([a], lambda: len(assigned(a)) == PARTITIONS, 60):
        fail(f"a did not get b's partitions: {assigned(a)}")
    a.close()

    # A new member resumes from the committed offsets: it sees only new messages.
    for i in range(N, N + 12):
        p.produce(TOPIC, key=str(i).encode(), value=f"v{i}".encode(), partition=i % PARTITIONS)
    p.flush(30)
    c = consumer()
    c.subscribe([TOPIC])
    later = {}
    if not poll_until([c], lambda: len(later) >= 12, 60, later):
        fail(f"resumed consumer read {len(later)} of 12")
    poll_until([c], lambda: False, 1, later)
    if sorted(int(v[1:]) for v in later.values()) != list(range(N, N + 12)):
        fail(f"resumed consumer read {sorted(later.values())}")
    committed = c.committed([TopicPartition(TOPIC, i) for i in range(PARTITIONS)], timeout=30)
    if sum(tp.offset for tp in committed) != N:
        fail(f"committed offsets {[tp.offset for tp in committed]}")
    c.close()

    # Regex subscription, resolved by the coordinator.
    r = consumer({"group.id": "kip848-regex"})
    r.subscribe(["^kip848-.*"])
    if not poll_until([r], lambda: len(assigned(r)) == PARTITIONS, 60):
        fail(f"regex member got {assigned(r)}")
    r.close()
    print("OK kip848", flush=True)


main()
