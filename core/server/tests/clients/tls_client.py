"""confluent-kafka (librdkafka) over TLS against a running Chronik broker.

Usage: tls_client.py BOOTSTRAP CA_PEM [CERT_PEM KEY_PEM] [--sasl USER PASSWORD]
Connects with security.protocol SSL (SASL_SSL with --sasl, SCRAM-SHA-512), verifying the broker's
certificate against CA_PEM and presenting CERT_PEM/KEY_PEM when given; creates a topic, produces
200 keyed messages (acks=all, lz4) and consumes them back in a group, comparing exactly.
Prints "OK tls". With --expect-fail instead checks that no metadata can be read (the broker
refuses the handshake) and prints "OK tls-refused". Every wait is bounded.
"""

import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

args = sys.argv[1:]
expect_fail = "--expect-fail" in args
args = [a for a in args if a != "--expect-fail"]
sasl = None
if "--sasl" in args:
    i = args.index("--sasl")
    sasl = (args[i + 1], args[i + 2])
    args = args[:i] + args[i + 3:]
BOOT, CA = args[0], args[1]
conf = {
    "bootstrap.servers": BOOT,
    "security.protocol": "SASL_SSL" if sasl else "SSL",
    "ssl.ca.location": CA,
    "ssl.endpoint.identification.algorithm": "https",
}
if len(args) >= 4:
    conf["ssl.certificate.location"] = args[2]
    conf["ssl.key.location"] = args[3]
if sasl:
    conf.update({"sasl.mechanism": "SCRAM-SHA-512", "sasl.username": sasl[0], "sasl.password": sasl[1]})

admin = AdminClient(conf)
if expect_fail:
    try:
        md = admin.list_topics(timeout=5)
        raise AssertionError(f"metadata read without an accepted handshake: {md.brokers}")
    except KafkaException:
        print("OK tls-refused")
    sys.exit(0)

topic = f"tls-{uuid.uuid4().hex[:8]}"
admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(timeout=15)
p = Producer({**conf, "acks": "all", "compression.type": "lz4", "linger.ms": 5})
sent = {(f"k{i}".encode(), f"value-{i}".encode() * 3) for i in range(200)}
errs = []
for k, v in sent:
    p.produce(topic, v, key=k, on_delivery=lambda e, m: errs.append(e))
assert p.flush(30) == 0 and len(errs) == 200 and all(e is None for e in errs), errs[:3]
c = Consumer({**conf, "group.id": f"{topic}-g", "auto.offset.reset": "earliest"})
c.subscribe([topic])
got = set()
deadline = time.time() + 40
while len(got) < 200 and time.time() < deadline:
    m = c.poll(0.5)
    if m is None:
        continue
    assert m.error() is None, m.error()
    got.add((m.key(), m.value()))
c.close()
assert got == sent, (len(got), len(sent))
print("OK tls")
