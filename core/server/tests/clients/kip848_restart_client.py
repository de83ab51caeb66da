"""A KIP-848 member rides out a broker kill -9 without a rebalance.

Usage: kip848_restart_client.py BOOTSTRAP MARKER_FILE

The consumer (group.protocol=consumer) takes all 4 partitions and reads 100 messages, then
writes MARKER_FILE; the test kills the broker with SIGKILL and restarts it. The consumer keeps
polling; 50 more messages are produced once the broker is back. It must read them too, never
see a message twice, and get exactly one assignment with no revocation or loss: the restarted
coordinator resumed the member at its epoch. Prints "OK kip848-restart".
"""

import sys
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

BOOT, MARKER = sys.argv[1], sys.argv[2]
TOPIC = "kip848-restart"


def fail(msg):
    print("FAIL", msg, flush=True)
    sys.exit(1)


admin = AdminClient({"bootstrap.servers": BOOT})
for f in admin.create_topics([NewTopic(TOPIC, 4, 1)]).values():
    f.result(30)
events = []
c = Consumer(
    {
        "bootstrap.servers": BOOT,
        "group.id": "kip848-restart-group",
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
    }
)
c.subscribe(
    [TOPIC],
    on_assign=lambda _c, ps: events.append(("assign", len(ps))),
    on_revoke=lambda _c, ps: events.append(("revoke", len(ps))),
    on_lost=lambda _c, ps: events.append(("lost", len(ps))),
)
seen = set()


def poll_until(cond, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = c.poll(0.1)
        if m is not None and m.error() is None:
            key = (m.partition(), m.offset())
            if key in seen:
                fail(f"message {key} delivered twice")
            seen.add(key)
        if cond():
            return True
    return False


p = Producer({"bootstrap.servers": BOOT, "acks": "all"})
if not poll_until(lambda: len(c.assignment()) == 4, 30):
    fail(f"no assignment: {c.assignment()}")
for i in range(100):
    p.produce(TOPIC, value=b"before", partition=i % 4)
p.flush(30)
if not poll_until(lambda: len(seen) == 100, 30):
    fail(f"read {len(seen)} of 100 before the restart")
with open(MARKER, "w") as f:
    f.write("ready")
# The broker goes down and comes back meanwhile; keep the member polling.
poll_until(lambda: False, 8)
for i in range(50):
    p.produce(TOPIC, value=b"after", partition=i % 4)
if p.flush(60) != 0:
    fail("produce after the restart did not finish")
if not poll_until(lambda: len(seen) == 150, 60):
    fail(f"read {len(seen)} of 150 after the restart")
poll_until(lambda: False, 3)
if events != [("assign", 4)] or len(c.assignment()) != 4:
    fail(f"rebalance events {events}, assignment {c.assignment()}")
c.close()
print("OK kip848-restart", flush=True)
