"""Produces as fast as it can for a while with confluent-kafka; prints what was acknowledged.

Usage: quota_client.py BOOTSTRAP CLIENT_ID SECONDS [MAX_BYTES]

With MAX_BYTES it stops producing once that many value bytes were handed to the client.

Prints "BYTES <value bytes acknowledged within SECONDS> THROTTLES <throttle events seen by librdkafka>" and
"OK quota". The caller decides what the numbers must be (a quota holds them down).
"""

import sys
import time

from confluent_kafka import Producer

boot, client_id, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
max_bytes = int(sys.argv[4]) if len(sys.argv) > 4 else None
sent = 0
acked = 0
throttles = 0


def on_delivery(err, msg):
    global acked
    if err is None:
        acked += len(msg.value())


def on_throttle(event):
    global throttles
    if event.throttle_time > 0:
        throttles += 1


p = Producer(
    {
        "bootstrap.servers": boot,
        "client.id": client_id,
        "acks": "all",
        "linger.ms": 5,
        "throttle_cb": on_throttle,
    }
)
value = b"q" * 10_000
deadline = time.time() + seconds
while time.time() < deadline and (max_bytes is None or sent < max_bytes):
    try:
        p.produce("quota-topic", value=value, on_delivery=on_delivery)
        sent += len(value)
    except BufferError:
        p.poll(0.05)
    p.poll(0)
if max_bytes is not None:
    p.flush(30)
# Only what was acknowledged within the time counts; the rest is dropped.
counted = acked
p.purge()
p.flush(10)
print(f"BYTES {counted} THROTTLES {throttles}", flush=True)
print("OK quota", flush=True)
