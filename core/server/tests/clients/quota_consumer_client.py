"""Consumes with confluent-kafka for a while; prints how many value bytes it read.

Usage: quota_consumer_client.py BOOTSTRAP TOPIC CLIENT_ID SECONDS

Reads TOPIC from the beginning (no group commits) for SECONDS and prints
"READ <value bytes> DUPLICATES <n>" and "OK quota-consumer". The caller decides what the
numbers must be (a consumer_byte_rate quota holds them down).
"""

import sys
import time

from confluent_kafka import Consumer

boot, topic, client_id, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
c = Consumer(
    {
        "bootstrap.servers": boot,
        "client.id": client_id,
        "group.id": f"quota-{client_id}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
)
c.subscribe([topic])
read = 0
seen = set()
dups = 0
deadline = time.time() + seconds
while time.time() < deadline:
    m = c.poll(0.1)
    if m is None or m.error() is not None:
        continue
    key = (m.partition(), m.offset())
    if key in seen:
        dups += 1
    seen.add(key)
    read += len(m.value())
c.close()
print(f"READ {read} DUPLICATES {dups}", flush=True)
print("OK quota-consumer", flush=True)
