"""Log compaction checks with confluent-kafka (librdkafka) against a running Chronik broker.

Usage: compaction_client.py BOOTSTRAP COMMAND [ARGS]
  produce TOPIC KEYS UPDATES   create a compacted topic, write UPDATES records over KEYS keys
                               with every codec (plus a tombstone), then a sentinel batch;
                               prints {"latest": {key: [offset, value|null]}, "written": n}
  nullkey TOPIC                produce a record without key; prints the delivery error name
  consume TOPIC                prints [[offset, key, value|null], ...] of partition 0, from the
                               beginning up to the high watermark
  commit GROUP TOPIC N         commits offsets 1..N of TOPIC/0 for GROUP, one at a time
  committed GROUP TOPIC        prints the committed offset of TOPIC/0 for GROUP
  count_internal               prints the number of records in __consumer_offsets
All loops are bounded by deadlines; failures raise (non-zero exit).
"""

import json
import random
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BOOT = sys.argv[1]
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def create_topic(name, configs):
    a = AdminClient({"bootstrap.servers": BOOT})
    fs = a.create_topics(
        [NewTopic(name, num_partitions=1, replication_factor=1, config=configs)],
        request_timeout=30,
    )
    for _, f in fs.items():
        f.result(timeout=30)


def produce(topic, keys, updates):
    create_topic(
        topic,
        {
            "cleanup.policy": "compact",
            "min.cleanable.dirty.ratio": "0.01",
            "segment.ms": "100",
            "delete.retention.ms": "86400000",
        },
    )
    rng = random.Random(7)
    latest = {}
    written = 0

    def make_cb(key, value):
        def cb(err, msg):
            if err is not None:
                raise KafkaException(err)
            latest_offsets.append((msg.offset(), key, value))

        return cb

    latest_offsets = []
    per_codec = max(1, updates // len(CODECS))
    for codec in CODECS:
        p = Producer(
            {
                "bootstrap.servers": BOOT,
                "compression.type": codec,
                "linger.ms": 5,
                "batch.num.messages": 50,
            }
        )
        for i in range(per_codec):
            key = f"key-{rng.randrange(keys)}"
            value = f"{codec}-{i}-{rng.random()}"
            p.produce(topic, key=key, value=value, on_delivery=make_cb(key, value))
            p.poll(0)
            written += 1
        # A key that is written, then deleted: its tombstone must survive (delete.retention.ms
        # is a day) as its only record.
        p.produce(topic, key="gone", value=f"alive-{codec}", on_delivery=make_cb("gone", f"alive-{codec}"))
        written += 1
        left = p.flush(60)
        assert left == 0, f"{left} undelivered"
    p = Producer({"bootstrap.servers": BOOT})
    p.produce(topic, key="gone", value=None, on_delivery=make_cb("gone", None))
    written += 1
    assert p.flush(60) == 0
    # As in Kafka, the active segment is never cleaned: a sentinel batch more than segment.ms
    # (100) after the records above rolls the segment, so every update above becomes cleanable.
    time.sleep(0.3)
    p.produce(topic, key="sentinel", value="end", on_delivery=make_cb("sentinel", "end"))
    written += 1
    assert p.flush(60) == 0
    for off, key, value in sorted(latest_offsets):
        latest[key] = [off, value]
    print(json.dumps({"latest": latest, "written": written}))


def nullkey(topic):
    errors = []

    def cb(err, msg):
        errors.append(err)

    p = Producer({"bootstrap.servers": BOOT, "retries": 0, "message.send.max.retries": 0})
    p.produce(topic, value="no key", on_delivery=cb)
    assert p.flush(30) == 0
    assert len(errors) == 1
    print(errors[0].name() if errors[0] is not None else "OK")


def consume(topic):
    c = Consumer(
        {
            "bootstrap.servers": BOOT,
            "group.id": f"g-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
        }
    )
    _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
    c.assign([TopicPartition(topic, 0, -2)])  # OFFSET_BEGINNING
    out = []
    deadline = time.time() + 60
    done = False
    while not done and time.time() < deadline:
        for m in c.consume(num_messages=1000, timeout=0.5):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    done = True
                    continue
                raise KafkaException(m.error())
            v = m.value()
            out.append([m.offset(), m.key().decode() if m.key() else None, v.decode() if v is not None else None])
            if m.offset() >= high - 1:
                done = True
    c.close()
    assert done, f"did not reach the end ({high}) in time; got {len(out)}"
    print(json.dumps(out))


def commit(group, topic, n):
    c = Consumer({"bootstrap.servers": BOOT, "group.id": group, "enable.auto.commit": False})
    for i in range(1, n + 1):
        c.commit(offsets=[TopicPartition(topic, 0, i)], asynchronous=False)
    c.close()
    print("committed", n)


def committed(group, topic):
    c = Consumer({"bootstrap.servers": BOOT, "group.id": group, "enable.auto.commit": False})
    deadline = time.time() + 30
    while True:
        try:
            tp = c.committed([TopicPartition(topic, 0)], timeout=10)[0]
            break
        except KafkaException:
            # The coordinator may still be loading after a restart.
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    c.close()
    print(tp.offset)


def count_internal():
    c = Consumer(
        {
            "bootstrap.servers": BOOT,
            "group.id": f"g-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    md = c.list_topics("__consumer_offsets", timeout=30)
    parts = list(md.topics["__consumer_offsets"].partitions.keys())
    total = 0
    for p in parts:
        low, high = c.get_watermark_offsets(TopicPartition("__consumer_offsets", p), timeout=30)
        if high == low:
            continue
        c.assign([TopicPartition("__consumer_offsets", p, low)])
        deadline = time.time() + 30
        done = False
        while not done and time.time() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        done = True
                        continue
                    raise KafkaException(m.error())
                total += 1
                if m.offset() >= high - 1:
                    done = True
        assert done, f"partition {p} not read to its end"
    c.close()
    print(total)


def dupes(topic, n):
    """n updates of 3 keys to a compacted topic with Kafka's default segment.bytes/segment.ms,
    as separate batches: all of it is the active segment, which is never cleaned."""
    create_topic(topic, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"})
    p = Producer({"bootstrap.servers": BOOT, "linger.ms": 0})
    for i in range(n):
        p.produce(topic, key=f"k{i % 3}", value=f"v{i}")
        p.flush(30)
    print(n)


CMDS = {
    "produce": lambda a: produce(a[0], int(a[1]), int(a[2])),
    "dupes": lambda a: dupes(a[0], int(a[1])),
    "nullkey": lambda a: nullkey(a[0]),
    "consume": lambda a: consume(a[0]),
    "commit": lambda a: commit(a[0], a[1], int(a[2])),
    "committed": lambda a: committed(a[0], a[1]),
    "count_internal": lambda a: count_internal(),
}

if __name__ == "__main__":
    CMDS[sys.argv[2]](sys.argv[3:])
