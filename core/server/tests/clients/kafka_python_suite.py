"""kafka-python checks against a running Chronik broker: a group consumer with auto commit.

Usage: kafka_python_suite.py BOOTSTRAP
"""

import sys
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

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


if __name__ == "__main__":
    main()
