"""Compatibility checks with confluent-kafka (librdkafka) against a running Chronik broker.

Usage: confluent_suite.py BOOTSTRAP COMMAND [ARGS]
Every command exits 0 on success and raises (non-zero exit, message on stderr) on failure.
All loops are bounded by deadlines.
"""

import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewPartitions, NewTopic

BOOT = sys.argv[1]
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def admin():
    return AdminClient({"bootstrap.servers": BOOT})


def create_topic(name, partitions, configs=None):
    a = admin()  # keep the handle alive until the futures resolve
    fs = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=configs or {})],
        request_timeout=30,
    )
    for _, f in fs.items():
        f.result(timeout=30)


def deliver_all(p, timeout=60):
    left = p.flush(timeout)
    assert left == 0, f"{left} messages not delivered within {timeout}s"


def consume_exact(topic, expected_count, group=None, timeout=90, assign=None, extra=None):
    conf = {
        "bootstrap.servers": BOOT,
        "group.id": group or f"g-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
    }
    conf.update(extra or {})
    c = Consumer(conf)
    if assign:
        c.assign(assign)
    else:
        c.subscribe([topic])
    got = []
    deadline = time.time() + timeout
    while len(got) < expected_count and time.time() < deadline:
        for m in c.consume(num_messages=1000, timeout=0.5):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(m.error())
            got.append(m)
    c.close()
    assert len(got) == expected_count, f"consumed {len(got)} of {expected_count}"
    return got


def cmd_roundtrip(n_per_codec):
    """Keys, headers and every codec: produce, consume back, compare exactly."""
    n = int(n_per_codec)
    topic = f"rt-{uuid.uuid4().hex[:8]}"
    create_topic(topic, 4)
    sent = {}
    for codec in CODECS:
        p = Producer(
            {
                "bootstrap.servers": BOOT,
                "compression.type": codec,
                "acks": "all",
                "linger.ms": 5,
                "batch.num.messages": 1000,
            }
        )
        errors = []

        def cb(err, msg):
            if err:
                errors.append(err)

        for i in range(n):
            key = f"{codec}-k{i}".encode()
            value = (f"{codec}-v{i}-" + "x" * (i % 200)).encode()
            headers = [("h1", f"{i}".encode()), ("codec", codec.encode())]
            p.produce(topic, key=key, value=value, headers=headers, on_delivery=cb)
            sent[key] = (value, headers)
            if i % 10000 == 0:
                p.poll(0)
        deliver_all(p)
        assert not errors, f"delivery errors with {codec}: {errors[:3]}"
    got = consume_exact(topic, len(sent))
    seen = set()
    per_partition_last = {}
    for m in got:
        k = m.key()
        assert k in sent, f"unexpected key {k!r}"
        assert k not in seen, f"duplicate key {k!r}"
        seen.add(k)
        value, headers = sent[k]
        assert m.value() == value, f"value mismatch for {k!r}"
        assert [(h, v) for h, v in (m.headers() or [])] == headers, f"headers mismatch for {k!r}"
        last = per_partition_last.get(m.partition(), -1)
        assert m.offset() > last, "offsets not increasing within a partition"
        per_partition_last[m.partition()] = m.offset()
    print(f"OK roundtrip {len(got)} messages, {len(per_partition_last)} partitions")


def cmd_produce_acked(topic, n):
    """Produce n messages acks=all; print the acked (partition, offset, value) lines."""
    n = int(n)
    create_topic(topic, 3)
    p = Producer({"bootstrap.servers": BOOT, "acks": "all", "linger.ms": 2})
    acked = []

    def cb(err, msg):
        if err is None:
            acked.append((msg.partition(), msg.offset(), msg.value().decode()))

    for i in range(n):
        p.produce(topic, key=f"k{i}".encode(), value=f"value-{i}".encode(), on_delivery=cb)
        if i % 1000 == 0:
            p.poll(0)
    deliver_all(p)
    assert len(acked) == n, f"only {len(acked)} of {n} acknowledged"
    for part, off, val in acked:
        print(f"{part} {off} {val}")


def cmd_verify(topic, acked_file):
    """Every acknowledged message is there at its acknowledged offset."""
    want = {}
    with open(acked_file) as f:
        for line in f:
            part, off, val = line.split()
            want[(int(part), int(off))] = val
    got = consume_exact(topic, len(want))
    have = {(m.partition(), m.offset()): m.value().decode() for m in got}
    missing = [k for k in want if have.get(k) != want[k]]
    assert not missing, f"{len(missing)} acknowledged messages lost or moved, e.g. {missing[:3]}"
    print(f"OK verified {len(want)} acknowledged messages")


def wait_assignment(consumers, want_total, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for c in consumers:
            c.poll(0.1)
        sets = [set((tp.topic, tp.partition) for tp in c.assignment()) for c in consumers]
        total = set().union(*sets)
        disjoint = sum(len(s) for s in sets) == len(total)
        if len(total) == want_total and disjoint and all(sets):
            return sets
    raise AssertionError(f"no complete disjoint assignment within {timeout}s: {sets}")


def cmd_groups():
    """Two consumers split 4 partitions; a third (another process) joins and is killed -9, its
    partitions come back after the session timeout; offsets committed; a new member resumes."""
    topic = f"grp-{uuid.uuid4().hex[:8]}"
    group = f"group-{uuid.uuid4().hex[:8]}"
    create_topic(topic, 4)
    p = Producer({"bootstrap.servers": BOOT, "acks": "all"})

    def consumer(strategy="range"):
        c = Consumer(
            {
                "bootstrap.servers": BOOT,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
                "partition.assignment.strategy": strategy,
            }
        )
        c.subscribe([topic])
        return c

    a, b = consumer(), consumer()
    t0 = time.time()
    sets = wait_assignment([a, b], 4)
    print(f"2 members: {[sorted(s) for s in sets]} in {time.time() - t0:.2f}s")
    # A third member in another process joins; the partitions are spread over three.
    child = subprocess.Popen([sys.executable, __file__, BOOT, "member", topic, group])
    try:
        t0 = time.time()
        deadline = time.time() + 60
        while time.time() < deadline:
            for c in (a, b):
                c.poll(0.1)
            sets = [set((tp.topic, tp.partition) for tp in c.assignment()) for c in (a, b)]
            # The child holds what a and b do not (one or two partitions, by assignor order).
            if all(sets) and len(sets[0] | sets[1]) < 4 and not (sets[0] & sets[1]):
                break
        else:
            raise AssertionError(f"third member never got a partition: {sets}")
        rebalance_s = time.time() - t0
        print(f"3 members: a,b hold {[sorted(s) for s in sets]}; rebalance 2->3 took {rebalance_s:.2f}s")
    finally:
        # kill -9: no LeaveGroup; its partitions move after the session timeout (6 s).
        child.kill()
        child.wait()
    t0 = time.time()
    sets = wait_assignment([a, b], 4, timeout=30)
    print(f"member killed: partitions back with 2 members after {time.time() - t0:.2f}s")
    # Only now produce (the rebalance phases above polled and would have eaten messages).
    for i in range(400):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 4)
    deliver_all(p)
    # Consume everything with the two members and commit synchronously.
    got = 0
    deadline = time.time() + 60
    while got < 400 and time.time() < deadline:
        for c in (a, b):
            for m in c.consume(num_messages=500, timeout=0.2):
                if m.error():
                    continue
                got += 1
    assert got == 400, f"group consumed {got} of 400"
    for c in (a, b):
        c.commit(asynchronous=False)
    committed = a.committed([TopicPartition(topic, i) for i in range(4)], timeout=10)
    a.close()
    b.close()
    # A new member resumes after the committed offsets: nothing left to read.
    p.produce(topic, key=b"late", value=b"after-commit", partition=2)
    deliver_all(p)
    d = consumer()
    msgs = []
    deadline = time.time() + 30
    while not msgs and time.time() < deadline:
        msgs = [m for m in d.consume(num_messages=10, timeout=0.5) if not m.error()]
    d.close()
    assert [m.value() for m in msgs] == [b"after-commit"], f"resumed wrongly: {[m.value() for m in msgs]}"
    print("committed:", [(tp.partition, tp.offset) for tp in committed])
    print(f"OK groups rebalance_2_to_3_s={rebalance_s:.2f}")


def cmd_committed(topic, group, expect):
    """The group's committed offsets sum to `expect` (survives restarts)."""
    c = Consumer({"bootstrap.servers": BOOT, "group.id": group})
    md = c.list_topics(topic, timeout=10)
    parts = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
    committed = c.committed(parts, timeout=10)
    c.close()
    total = sum(tp.offset for tp in committed if tp.offset >= 0)
    assert total == int(expect), f"committed sum {total} != {expect}: {committed}"
    print(f"OK committed {total}")


def cmd_commit(topic, group):
    """Consume a 3-partition topic fully and commit; print the committed total."""
    c = Consumer(
        {
            "bootstrap.servers": BOOT,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    got = 0
    idle = 0
    deadline = time.time() + 60
    while time.time() < deadline and idle < 6:
        ms = c.consume(num_messages=1000, timeout=0.5)
        ms = [m for m in ms if not m.error()]
        got += len(ms)
        idle = idle + 1 if not ms and got > 0 else 0
    c.commit(asynchronous=False)
    c.close()
    print(got)


def cmd_idempotent(n):
    """enable.idempotence: each message exactly once and in order. Run against a broker started
    with CHRONIK_FAULT_DROP_PRODUCE_RESPONSE_EVERY, which appends a produce and then drops the
    connection instead of answering, so the client retries batches that are already stored."""
    n = int(n)
    topic = f"idem-{uuid.uuid4().hex[:8]}"
    create_topic(topic, 2)
    p = Producer(
        {
            "bootstrap.servers": BOOT,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 1,
            "max.in.flight.requests.per.connection": 5,
            # Short socket timeouts plus tiny batches make librdkafka retry in-flight requests.
            "message.timeout.ms": 60000,
            "request.timeout.ms": 5000,
            "batch.num.messages": 50,
        }
    )
    errors = []

    def cb(err, msg):
        if err:
            errors.append(err)

    for i in range(n):
        while True:
            try:
                p.produce(topic, key=str(i % 2).encode(), value=str(i).encode(), partition=i % 2, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        if i % 5000 == 0:
            p.poll(0)
    deliver_all(p, 120)
    assert not errors, errors[:3]
    got = consume_exact(topic, n)
    per_part = {0: [], 1: []}
    for m in got:
        per_part[m.partition()].append(int(m.value()))
    for part, vals in per_part.items():
        assert vals == sorted(vals), f"partition {part} out of order"
        assert len(vals) == len(set(vals)), f"partition {part} has duplicates"
    print(f"OK idempotent {n} messages exactly once, in order")


def cmd_admin():
    """Configs, partitions, offsets by timestamp, delete."""
    a = admin()
    topic = f"adm-{uuid.uuid4().hex[:8]}"
    create_topic(topic, 2, {"retention.ms": "3600000"})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    cfg = a.describe_configs([res])[res].result(timeout=10)
    assert cfg["retention.ms"].value == "3600000", cfg["retention.ms"]
    assert "cleanup.policy" in cfg and cfg["cleanup.policy"].value == "delete"
    assert cfg["max.message.bytes"].value == "1048588"
    # Sources as Kafka reports them: the topic's own override, a broker default the operator set
    # (the test server sets CHRONIK_LOG_RETENTION_BYTES), a built-in default.
    S = ConfigSource
    assert cfg["retention.ms"].source == S.DYNAMIC_TOPIC_CONFIG.value, cfg["retention.ms"].source
    assert cfg["retention.bytes"].source == S.STATIC_BROKER_CONFIG.value, cfg["retention.bytes"].source
    assert cfg["retention.bytes"].value == "1073741824", cfg["retention.bytes"].value
    assert cfg["segment.bytes"].source == S.DEFAULT_CONFIG.value, cfg["segment.bytes"].source
    assert cfg["cleanup.policy"].source == S.DEFAULT_CONFIG.value, cfg["cleanup.policy"].source
    bres = ConfigResource(ConfigResource.Type.BROKER, "1")
    bcfg = a.describe_configs([bres])[bres].result(timeout=10)
    assert bcfg["num.partitions"].source == S.DEFAULT_CONFIG.value, bcfg["num.partitions"].source
    delay = bcfg["group.initial.rebalance.delay.ms"]
    assert delay.source == S.STATIC_BROKER_CONFIG.value and delay.value == "0", delay
    # Every topic config's broker-level default is listed under its broker name (the synonym a
    # topic's description points at), with the same value and source.
    for topic_name_, broker_name in [("cleanup.policy", "log.cleanup.policy"),
                                     ("compression.type", "compression.type"),
                                     ("segment.ms", "log.roll.ms"),
                                     ("retention.bytes", "log.retention.bytes")]:
        tc, bc = cfg[topic_name_], bcfg[broker_name]
        assert (bc.value, bc.source) == (tc.value, tc.source), (broker_name, bc, tc)
    assert bcfg["compression.type"].value == "producer", bcfg["compression.type"]
    res2 = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.ms": "7200000"})
    a.alter_configs([res2])[res2].result(timeout=10)
    cfg = a.describe_configs([res])[res].result(timeout=10)
    assert cfg["retention.ms"].value == "7200000"
    a.create_partitions([NewPartitions(topic, 5)])[topic].result(timeout=10)
    md = a.list_topics(topic, timeout=10)
    assert len(md.topics[topic].partitions) == 5
    # Offsets by timestamp.
    p = Producer({"bootstrap.servers": BOOT, "acks": "all", "linger.ms": 0})
    base = int(time.time() * 1000) - 100000
    for i in range(10):
        p.produce(topic, value=f"t{i}".encode(), partition=0, timestamp=base + i * 1000)
        p.flush(10)
    c = Consumer({"bootstrap.servers": BOOT, "group.id": "adm"})
    found = c.offsets_for_times([TopicPartition(topic, 0, base + 4500)], timeout=10)
    assert found[0].offset == 5, f"offset for time: {found[0].offset}"
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    assert (lo, hi) == (0, 10), (lo, hi)
    c.close()
    fs = a.delete_topics([topic], operation_timeout=30)
    fs[topic].result(timeout=30)
    md = a.list_topics(timeout=10)
    assert topic not in md.topics
    # Errors come back as errors.
    fs = a.create_topics([NewTopic("bad/name", 1, 1)])
    try:
        fs["bad/name"].result(timeout=10)
        raise AssertionError("invalid topic name accepted")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.TOPIC_EXCEPTION, e
    print("OK admin")


def cmd_admin_apis():
    """Group offsets, records, elections, topic descriptions and ACLs through AdminClient."""
    from confluent_kafka import ConsumerGroupTopicPartitions, ElectionType, TopicCollection
    from confluent_kafka.admin import (
        AclBinding,
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        OffsetSpec,
        ResourcePatternType,
        ResourceType,
    )

    a = admin()
    topic = f"apis-{uuid.uuid4().hex[:8]}"
    group = f"apis-g-{uuid.uuid4().hex[:8]}"
    create_topic(topic, 2)
    p = Producer({"bootstrap.servers": BOOT, "enable.idempotence": True, "linger.ms": 0})
    for i in range(10):
        p.produce(topic, value=f"v{i}".encode(), partition=i % 2)
    deliver_all(p)

    # Group offsets written by the admin client read back exactly.
    tps = [TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 4)]
    for f in a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)]).values():
        f.result(timeout=10)
    res = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    got = sorted((tp.partition, tp.offset) for tp in res[group].result(timeout=10).topic_partitions)
    assert got == [(0, 3), (1, 4)], got

    # DeleteRecords, then the earliest offset has moved.
    res = a.delete_records([TopicPartition(topic, 0, 2)])
    for tp, f in res.items():
        assert f.result(timeout=10).low_watermark == 2
    res = a.list_offsets({TopicPartition(topic, 0): OffsetSpec.earliest()})
    for f in res.values():
        assert f.result(timeout=10).offset == 2

    # Preferred election: the only replica already leads.
    res = a.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0)]).result(timeout=10)
    errs = [e.code() for e in res.values()]
    assert errs == [KafkaError.ELECTION_NOT_NEEDED], res

    desc = a.describe_topics(TopicCollection([topic]))[topic].result(timeout=10)
    assert [pt.id for pt in desc.partitions] == [0, 1]
    assert all(len(pt.replicas) == 1 and pt.leader.id == pt.replicas[0].id for pt in desc.partitions)

    # Authorized operations, when asked for: with no authorizer, every operation the resource
    # type supports (as Kafka reports them); not asked for, none.
    ops = lambda xs: sorted(o.name for o in xs)
    desc = a.describe_topics(TopicCollection([topic]), include_authorized_operations=True)[topic]
    desc = desc.result(timeout=10)
    want = ["ALTER", "ALTER_CONFIGS", "CREATE", "DELETE", "DESCRIBE", "DESCRIBE_CONFIGS", "READ", "WRITE"]
    assert ops(desc.authorized_operations) == want, desc.authorized_operations
    cl = a.describe_cluster(include_authorized_operations=True).result(timeout=10)
    want = ["ALTER", "ALTER_CONFIGS", "CLUSTER_ACTION", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS", "IDEMPOTENT_WRITE"]
    assert ops(cl.authorized_operations) == want, cl.authorized_operations
    assert a.describe_cluster().result(timeout=10).authorized_operations is None
    grp = a.describe_consumer_groups([group], include_authorized_operations=True)[group].result(timeout=10)
    assert ops(grp.authorized_operations) == ["DELETE", "DESCRIBE", "READ"], grp.authorized_operations

    # ACLs: stored (not enforced on this server), listed by filter, deleted by filter.
    def bind(rtype, name, ptype, principal, op, perm):
        return AclBinding(rtype, name, ptype, principal, "*", op, perm)

    prefix = f"{topic}-pre"
    alice, bob = f"User:alice-{topic}", f"User:bob-{topic}"
    created = [
        bind(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, alice, AclOperation.READ, AclPermissionType.ALLOW),
        bind(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, bob, AclOperation.WRITE, AclPermissionType.DENY),
        bind(ResourceType.GROUP, prefix, ResourcePatternType.PREFIXED, alice, AclOperation.READ, AclPermissionType.ALLOW),
    ]
    for fut in a.create_acls(created).values():
        assert fut.result(timeout=10) is None
    # The broker refuses a principal without its type, with INVALID_REQUEST.
    bad = bind(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "alice", AclOperation.READ, AclPermissionType.ALLOW)
    for fut in a.create_acls([bad]).values():
        try:
            fut.result(timeout=10)
            raise AssertionError("an ACL without a principal type was accepted")
        except KafkaException as e:
            assert e.args[0].code() == KafkaError.INVALID_REQUEST, e

    def described(rtype, name, ptype, principal=None):
        flt = AclBindingFilter(rtype, name, ptype, principal, None, AclOperation.ANY, AclPermissionType.ANY)
        got = a.describe_acls(flt).result(timeout=10)
        return sorted((b.restype, b.name, b.resource_pattern_type, b.principal, b.operation, b.permission_type) for b in got)

    def key(b):
        return (b.restype, b.name, b.resource_pattern_type, b.principal, b.operation, b.permission_type)

    assert described(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL) == sorted(map(key, created[:2]))
    assert described(ResourceType.ANY, topic, ResourcePatternType.ANY, bob) == [key(created[1])]
    # MATCH: the ACLs that apply to group "<prefix>-1" are the prefixed one.
    assert described(ResourceType.GROUP, f"{prefix}-1", ResourcePatternType.MATCH) == [key(created[2])]
    # Delete alice's ACLs (either resource type); the result lists exactly what went.
    flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, alice, None, AclOperation.ANY, AclPermissionType.ANY)
    gone = a.delete_acls([flt])[flt].result(timeout=10)
    assert sorted(map(key, gone)) == sorted([key(created[0]), key(created[2])]), gone
    assert described(ResourceType.ANY, None, ResourcePatternType.ANY, alice) == []
    assert described(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL) == [key(created[1])]
    # SCRAM credentials: stored and described (mechanism and iterations, never the secret).
    from confluent_kafka.admin import (
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialDeletion,
        UserScramCredentialUpsertion,
    )

    def scram_error(fut):
        try:
            fut.result(timeout=10)
            return None
        except KafkaException as e:
            return e.args[0].code()

    alice, bob = f"alice-{topic}", f"bob-{topic}"
    assert scram_error(a.describe_user_scram_credentials([alice])[alice]) == KafkaError.RESOURCE_NOT_FOUND
    futs = a.alter_user_scram_credentials(
        [
            UserScramCredentialUpsertion(alice, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), b"pw1"),
            UserScramCredentialUpsertion(bob, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"pw2"),
        ]
    )
    assert {u: scram_error(f) for u, f in futs.items()} == {alice: None, bob: None}
    futs = a.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(alice, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 100), b"pw")]
    )
    assert scram_error(futs[alice]) == KafkaError.UNACCEPTABLE_CREDENTIAL
    described = a.describe_user_scram_credentials().result(timeout=10)
    infos = {
        u: [(i.mechanism, i.iterations) for i in d.scram_credential_infos]
        for u, d in described.items()
        if u in (alice, bob)
    }
    assert infos == {alice: [(ScramMechanism.SCRAM_SHA_256, 8192)], bob: [(ScramMechanism.SCRAM_SHA_512, 4096)]}, infos
    futs = a.alter_user_scram_credentials([UserScramCredentialDeletion(bob, ScramMechanism.SCRAM_SHA_512)])
    assert scram_error(futs[bob]) is None
    assert scram_error(a.describe_user_scram_credentials([bob])[bob]) == KafkaError.RESOURCE_NOT_FOUND
    futs = a.alter_user_scram_credentials([UserScramCredentialDeletion(bob, ScramMechanism.SCRAM_SHA_512)])
    assert scram_error(futs[bob]) == KafkaError.RESOURCE_NOT_FOUND
    print(f"SCRAM-USER {alice}")
    print("OK admin-apis")


def cmd_scram_check(user):
    """`user`'s SCRAM-SHA-256 credential (8192 iterations) is still described (after a restart)."""
    from confluent_kafka.admin import ScramMechanism

    a = AdminClient({"bootstrap.servers": BOOT})
    d = a.describe_user_scram_credentials([user])[user].result(timeout=10)
    got = [(i.mechanism, i.iterations) for i in d.scram_credential_infos]
    assert got == [(ScramMechanism.SCRAM_SHA_256, 8192)], got
    print("OK scram-check")


def cmd_recreate(phase, topic=None):
    """Deleting a topic drops every group's committed offsets for it (as Kafka does), so a group
    does not resume a re-created topic at the old topic's offsets. `setup` commits, deletes,
    re-creates and prints the names; `check TOPIC` re-checks (after a broker restart)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    a = AdminClient({"bootstrap.servers": BOOT})
    if phase == "setup":
        topic = f"recreate-{uuid.uuid4().hex[:8]}"
    keep, group = f"{topic}-keep", f"{topic}-g"

    def offsets():
        r = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=10)
        return sorted((tp.topic, tp.partition, tp.offset) for tp in r.topic_partitions)

    if phase == "setup":
        for f in a.create_topics([NewTopic(topic, 2, 1), NewTopic(keep, 1, 1)]).values():
            f.result(timeout=10)
        c = Consumer({"bootstrap.servers": BOOT, "group.id": group, "enable.auto.commit": False})
        c.commit(
            offsets=[TopicPartition(topic, 0, 7), TopicPartition(topic, 1, 9), TopicPartition(keep, 0, 3)],
            asynchronous=False,
        )
        c.close()
        assert offsets() == [(topic, 0, 7), (topic, 1, 9), (keep, 0, 3)], offsets()
        a.delete_topics([topic])[topic].result(timeout=10)
        assert offsets() == [(keep, 0, 3)], offsets()
        # Nor can offsets be committed for a topic (or partition) that does not exist.
        c = Consumer({"bootstrap.servers": BOOT, "group.id": group, "enable.auto.commit": False})
        for tp in (TopicPartition(topic, 0, 5), TopicPartition(keep, 1, 5)):
            try:
                c.commit(offsets=[tp], asynchronous=False)
                raise AssertionError(f"commit to missing {tp} succeeded")
            except KafkaException as e:
                assert e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, e
        c.close()
        assert offsets() == [(keep, 0, 3)], offsets()
        a.create_topics([NewTopic(topic, 2, 1)])[topic].result(timeout=10)
        p = Producer({"bootstrap.servers": BOOT, "acks": "all"})
        for i in range(20):
            p.produce(topic, value=f"new{i}".encode(), partition=i % 2)
        assert p.flush(30) == 0
        print(f"RECREATED {topic}")
    assert offsets() == [(keep, 0, 3)], offsets()
    # A group member starts the re-created topic from its beginning (no committed offset).
    c = Consumer(
        {"bootstrap.servers": BOOT, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    c.subscribe([topic])
    got = []
    deadline = time.time() + 30
    while len(got) < 20 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert sorted(got) == sorted(f"new{i}".encode() for i in range(20)), got
    print(f"OK recreate-{phase}")


def cmd_sasl(user, password):
    """A SASL listener (SCRAM-SHA-256/512 and PLAIN required): the start-up user logs in with
    each mechanism, a user created through AlterUserScramCredentials can log in with exactly the
    mechanism it was given until its credential is deleted, wrong passwords and PLAINTEXT
    clients are refused, and kafka-python authenticates with SCRAM too."""
    from confluent_kafka.admin import (
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialDeletion,
        UserScramCredentialUpsertion,
    )

    def conf(mech, u, pw):
        return {
            "bootstrap.servers": BOOT,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mech,
            "sasl.username": u,
            "sasl.password": pw,
        }

    def can_login(mech, u, pw):
        """True once a metadata request succeeds; False on an authentication error."""
        errors = []
        a = AdminClient({**conf(mech, u, pw), "error_cb": lambda e: errors.append(e)})
        deadline = time.time() + 10
        while time.time() < deadline:
            a.poll(0.1)  # serves error_cb
            if any(e.code() == KafkaError._AUTHENTICATION for e in errors):
                return False
            try:
                a.list_topics(timeout=1)
                return True
            except KafkaException:
                pass
        raise AssertionError(f"neither success nor an authentication error for {u}/{mech}: {errors}")

    topic = f"sasl-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(conf("SCRAM-SHA-512", user, password))
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=10)
    mechs = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
    for mech in mechs:
        p = Producer({**conf(mech, user, password), "acks": "all"})
        errs = []
        p.produce(topic, mech.encode(), on_delivery=lambda e, m: errs.append(e))
        assert p.flush(15) == 0 and errs == [None], (mech, errs)
    assert not can_login("SCRAM-SHA-256", user, password + "x")
    assert not can_login("PLAIN", user, "wrong")
    # A PLAINTEXT client gets nowhere.
    plain = AdminClient({"bootstrap.servers": BOOT})
    try:
        plain.list_topics(timeout=3)
        raise AssertionError("a PLAINTEXT client read metadata from a SASL listener")
    except KafkaException:
        pass

    carol = f"carol-{topic}"
    futs = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(carol, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"c-pw")]
    )
    futs[carol].result(timeout=10)
    assert can_login("SCRAM-SHA-256", carol, "c-pw")
    assert can_login("PLAIN", carol, "c-pw")
    assert not can_login("SCRAM-SHA-512", carol, "c-pw"), "no SHA-512 credential was given"
    futs = admin.alter_user_scram_credentials([UserScramCredentialDeletion(carol, ScramMechanism.SCRAM_SHA_256)])
    futs[carol].result(timeout=10)
    assert not can_login("SCRAM-SHA-256", carol, "c-pw")

    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTp

    kc = KafkaConsumer(
        bootstrap_servers=BOOT,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username=user,
        sasl_plain_password=password,
        consumer_timeout_ms=5000,
    )
    kc.assign([KTp(topic, 0)])
    kc.seek_to_beginning()
    got = [m.value.decode() for m in kc]
    kc.close()
    assert got == mechs, got
    print("OK sasl")


def cmd_member(topic, group):
    """A group member that polls until killed (used by `groups`)."""
    c = Consumer(
        {
            "bootstrap.servers": BOOT,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
    )
    c.subscribe([topic])
    deadline = time.time() + 120
    while time.time() < deadline:
        c.poll(0.1)


def txn_producer(tid, extra=None):
    conf = {"bootstrap.servers": BOOT, "transactional.id": tid, "linger.ms": 5}
    conf.update(extra or {})
    p = Producer(conf)
    p.init_transactions(60)
    return p


def read_all(topic, partitions, isolation, timeout=60):
    """Every record of `topic` from the beginning up to the end (the LSO for read_committed)."""
    c = Consumer(
        {
            "bootstrap.servers": BOOT,
            "group.id": f"r-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, eof = [], set()
    deadline = time.time() + timeout
    while len(eof) < partitions and time.time() < deadline:
        for m in c.consume(num_messages=1000, timeout=0.5):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                raise KafkaException(m.error())
            got.append(m.value().decode())
    c.close()
    assert len(eof) == partitions, f"no EOF on {partitions - len(eof)} partitions in {timeout}s"
    return got


def consume_n(c, n, timeout=60):
    got = []
    deadline = time.time() + timeout
    while len(got) < n and time.time() < deadline:
        for m in c.consume(num_messages=n - len(got), timeout=0.5):
            if m.error():
                raise KafkaException(m.error())
            got.append(m)
    assert len(got) == n, f"consumed {len(got)} of {n}"
    return got


def cmd_transactions():
    """Commit one transaction, abort another, then consume-transform-produce with
    send_offsets_to_transaction (one committed, one aborted). read_committed sees exactly the
    committed records; read_uncommitted sees everything; the group's offsets are the committed
    transaction's."""
    src, out = f"txin-{uuid.uuid4().hex[:8]}", f"txout-{uuid.uuid4().hex[:8]}"
    create_topic(src, 1)
    create_topic(out, 2)
    plain = Producer({"bootstrap.servers": BOOT, "acks": "all"})
    for i in range(15):
        plain.produce(src, value=f"in{i}".encode(), partition=0)
    deliver_all(plain)

    p = txn_producer(f"tx-{uuid.uuid4().hex[:8]}")
    p.begin_transaction()
    for i in range(5):
        p.produce(out, value=f"c{i}".encode(), partition=i % 2)
    p.commit_transaction(60)
    p.begin_transaction()
    for i in range(5):
        p.produce(out, value=f"a{i}".encode(), partition=i % 2)
    p.flush(30)
    p.abort_transaction(60)

    group = f"ctp-{uuid.uuid4().hex[:8]}"
    c = Consumer(
        {
            "bootstrap.servers": BOOT,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    c.subscribe([src])
    # Consume-transform-produce, committed: the first 10 input records.
    msgs = consume_n(c, 10)
    p.begin_transaction()
    for m in msgs:
        p.produce(out, value=b"t-" + m.value(), partition=0)
    p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 60)
    p.commit_transaction(60)
    # Consume-transform-produce, aborted: the last 5; the group's offsets must not move.
    msgs = consume_n(c, 5)
    p.begin_transaction()
    for m in msgs:
        p.produce(out, value=b"x-" + m.value(), partition=0)
    p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 60)
    p.flush(30)  # abort_transaction drops unsent messages: make sure these reach the log
    p.abort_transaction(60)
    c.close()

    committed = sorted(read_all(out, 2, "read_committed"))
    want = sorted([f"c{i}" for i in range(5)] + [f"t-in{i}" for i in range(10)])
    assert committed == want, f"read_committed got {committed}"
    everything = sorted(read_all(out, 2, "read_uncommitted"))
    want_all = sorted(
        want + [f"a{i}" for i in range(5)] + [f"x-in{i}" for i in range(10, 15)]
    )
    assert everything == want_all, f"read_uncommitted got {everything}"

    check = Consumer({"bootstrap.servers": BOOT, "group.id": group})
    offs = check.committed([TopicPartition(src, 0)], timeout=30)
    check.close()
    assert offs[0].offset == 10, f"group offset {offs[0].offset} (aborted offsets leaked?)"
    print(f"OK transactions committed={len(committed)} all={len(everything)}")


def cmd_txn_open(topic, tid):
    """Leave a transaction open: produce inside it, flush, and exit without ending it."""
    create_topic(topic, 1)
    p = txn_producer(tid)
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, value=f"open{i}".encode(), partition=0)
    p.flush(30)
    print("OK txn-open", flush=True)
    import os

    os._exit(0)  # no abort, no commit: the transaction stays open on the broker


def cmd_txn_resume(topic, tid):
    """A new producer with the same transactional id: InitProducerId aborts the open
    transaction (retrying CONCURRENT_TRANSACTIONS), then its own transaction commits."""
    stuck = read_all(topic, 1, "read_committed", timeout=10)
    assert stuck == [], f"open transaction visible to read_committed: {stuck}"
    p = txn_producer(tid)
    p.begin_transaction()
    p.produce(topic, value=b"after", partition=0)
    p.commit_transaction(60)
    committed = read_all(topic, 1, "read_committed")
    assert committed == ["after"], f"read_committed got {committed}"
    everything = read_all(topic, 1, "read_uncommitted")
    assert everything == [f"open{i}" for i in range(5)] + ["after"], everything
    print("OK txn-resume")


def cmd_txn_timeout(topic):
    """A transaction left open past transaction.timeout.ms is aborted by the coordinator."""
    create_topic(topic, 1)
    p = txn_producer(f"to-{uuid.uuid4().hex[:8]}", {"transaction.timeout.ms": 2000})
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, value=f"late{i}".encode(), partition=0)
    p.flush(30)
    # Nothing ends it; the LSO must still reach the end once the coordinator aborts it.
    deadline = time.time() + 30
    while time.time() < deadline:
        c = Consumer({"bootstrap.servers": BOOT, "group.id": "to", "isolation.level": "read_committed"})
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.close()
        if hi == 4:  # 3 records + the abort marker
            break
        time.sleep(0.5)
    assert hi == 4, f"read_committed end offset stuck at {hi}"
    assert read_all(topic, 1, "read_committed") == []
    try:
        p.commit_transaction(10)
        raise AssertionError("commit after the coordinator aborted succeeded")
    except KafkaException:
        pass
    print("OK txn-timeout")


COMMANDS = {
    "admin-apis": cmd_admin_apis,
    "scram-check": cmd_scram_check,
    "recreate": cmd_recreate,
    "sasl": cmd_sasl,
    "member": cmd_member,
    "roundtrip": cmd_roundtrip,
    "produce-acked": cmd_produce_acked,
    "verify": cmd_verify,
    "groups": cmd_groups,
    "commit": cmd_commit,
    "committed": cmd_committed,
    "idempotent": cmd_idempotent,
    "admin": cmd_admin,
    "transactions": cmd_transactions,
    "txn-open": cmd_txn_open,
    "txn-resume": cmd_txn_resume,
    "txn-timeout": cmd_txn_timeout,
}

if __name__ == "__main__":
    COMMANDS[sys.argv[2]](*sys.argv[3:])
