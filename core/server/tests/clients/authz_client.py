"""ACL enforcement seen by confluent-kafka (librdkafka) on a SASL listener with
`server.authorization_enabled` on.

Usage: authz_client.py BOOTSTRAP ADMIN_USER ADMIN_PASSWORD USER PASSWORD
ADMIN is a super user; USER has no ACLs at the start. The script grants USER topic and group
ACLs through the admin client and checks what librdkafka reports for each allowed and refused
operation. Prints "OK authz" at the end; any failure raises (non-zero exit). Every wait is
bounded.
"""

import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

BOOT, ADMIN, ADMIN_PW, USER, USER_PW = sys.argv[1:6]


def conf(user, password):
    return {
        "bootstrap.servers": BOOT,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": user,
        "sasl.password": password,
    }


def produce(producer_conf, topic, n):
    """Delivery errors of n messages (None for each delivered one)."""
    p = Producer({**producer_conf, "acks": "all", "message.timeout.ms": 10000, "linger.ms": 0})
    errs = []
    for i in range(n):
        p.produce(topic, f"v{i}".encode(), on_delivery=lambda e, m: errs.append(e))
    assert p.flush(20) == 0, "undelivered messages left"
    return errs


def main():
    run = uuid.uuid4().hex[:8]
    mine, other, group = f"authz-{run}", f"authz-other-{run}", f"authz-g-{run}"
    admin = AdminClient(conf(ADMIN, ADMIN_PW))
    for f in admin.create_topics([NewTopic(mine, 1, 1), NewTopic(other, 1, 1)]).values():
        f.result(timeout=15)
    user = conf(USER, USER_PW)
    # One client kept for the whole run: a handle that is collected cancels its futures.
    user_admin = AdminClient(user)

    # No ACL yet: the topic is invisible and a write is refused with the topic error.
    md = user_admin.list_topics(timeout=10)
    assert mine not in md.topics or md.topics[mine].error is not None, md.topics
    errs = produce(user, mine, 1)
    assert errs[0] is not None and errs[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errs

    def binding(rtype, name, op, perm=AclPermissionType.ALLOW):
        return AclBinding(rtype, name, ResourcePatternType.LITERAL, f"User:{USER}", "*", op, perm)

    grants = [
        binding(ResourceType.TOPIC, mine, AclOperation.WRITE),
        binding(ResourceType.TOPIC, mine, AclOperation.READ),
        binding(ResourceType.GROUP, group, AclOperation.READ),
    ]
    for f in admin.create_acls(grants).values():
        f.result(timeout=10)
    # The user may not manage ACLs.
    for f in user_admin.create_acls([binding(ResourceType.TOPIC, other, AclOperation.ALL)]).values():
        try:
            f.result(timeout=10)
            raise AssertionError("a user without ALTER on the cluster created an ACL")
        except KafkaException as e:
            assert e.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, e

    # Allowed: produce (plain and idempotent) to its topic, which it now sees.
    md = user_admin.list_topics(timeout=10)
    assert mine in md.topics and md.topics[mine].error is None, md.topics
    assert other not in md.topics, "a topic without ACLs is listed"
    assert produce(user, mine, 5) == [None] * 5
    assert produce({**user, "enable.idempotence": True}, mine, 5) == [None] * 5
    # Refused: the other topic, creating topics.
    errs = produce(user, other, 1)
    assert errs[0] is not None and errs[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errs
    for f in user_admin.create_topics([NewTopic(f"authz-new-{run}", 1, 1)]).values():
        try:
            f.result(timeout=10)
            raise AssertionError("a user without CREATE created a topic")
        except KafkaException as e:
            assert e.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, e

    # Its group consumes and commits.
    c = Consumer({**user, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([mine])
    got = []
    deadline = time.time() + 30
    while len(got) < 10 and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None, m.error()
        got.append(m.value())
    assert len(got) == 10, got
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(mine, 0)], timeout=10)
    assert committed[0].offset == 10, committed
    c.close()

    # Another group: librdkafka reports GROUP_AUTHORIZATION_FAILED.
    c = Consumer({**user, "group.id": f"{group}-x", "auto.offset.reset": "earliest"})
    c.subscribe([mine])
    seen = None
    deadline = time.time() + 20
    while seen is None and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is not None:
            seen = m.error().code()
    c.close()
    assert seen == KafkaError.GROUP_AUTHORIZATION_FAILED, seen

    # A DENY wins over the ALLOW: reading stops.
    for f in admin.create_acls([binding(ResourceType.TOPIC, mine, AclOperation.READ, AclPermissionType.DENY)]).values():
        f.result(timeout=10)
    c = Consumer({**user, "group.id": group, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(mine, 0, 0)])
    seen = None
    deadline = time.time() + 20
    while seen is None and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None:
            seen = m.error().code() if m.error() is not None else "record"
    c.close()
    assert seen == KafkaError.TOPIC_AUTHORIZATION_FAILED, seen
    print("OK authz")


main()
