// Compatibility checks with kafkajs 2.2.4 (pure JavaScript, old protocol versions: Metadata v<=6,
// Produce v<=7, Fetch v<=11, ListOffsets v<=3, JoinGroup v<=5, transactions v0-1) against a
// running Chronik broker.
//
// Usage: node kafkajs_suite.js BOOTSTRAP COMMAND
// Every command prints "OK <command>" and exits 0 on success; any failure exits 1 with the error
// on stderr. Every wait is bounded by a deadline. `KAFKAJS_PATH` (or NODE_PATH) locates the
// kafkajs package installed by tools/scripts/setup-test-env.sh.
'use strict'

const assert = require('assert')
const crypto = require('crypto')

const kafkajs = require(process.env.KAFKAJS_PATH || 'kafkajs')
const {
  Kafka,
  logLevel,
  CompressionTypes,
  ConfigResourceTypes,
  AclResourceTypes,
  AclOperationTypes,
  AclPermissionTypes,
  ResourcePatternTypes,
} = kafkajs

const BOOT = process.argv[2]
const COMMAND = process.argv[3]

// How long any single wait in this suite may take.
const WAIT_MS = 60000

function kafka(clientId) {
  return new Kafka({
    clientId: clientId || 'kafkajs-suite',
    brokers: [BOOT],
    logLevel: process.env.KAFKAJS_DEBUG ? logLevel.DEBUG : logLevel.ERROR,
    connectionTimeout: 5000,
    requestTimeout: 30000,
    retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 2000 },
  })
}

const uid = () => crypto.randomBytes(4).toString('hex')
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const T0 = Date.now()
// Progress on stderr, shown by the Rust driver when a command fails or is slow.
const step = (what) => console.error(`[${((Date.now() - T0) / 1000).toFixed(2)}s] ${what}`)

async function until(what, pred, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await pred()) return
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

async function expectReject(what, promise, check) {
  let err = null
  try {
    await promise
  } catch (e) {
    err = e
  }
  assert.ok(err, `${what}: expected an error`)
  if (check) check(err)
}

async function createTopic(admin, topic, numPartitions, configEntries) {
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions, replicationFactor: 1, configEntries: configEntries || [] }],
    waitForLeaders: true,
    timeout: 30000,
  })
  assert.strictEqual(created, true, `createTopics(${topic}) returned ${created}`)
}

async function highWatermarks(admin, topic) {
  const offs = await admin.fetchTopicOffsets(topic)
  const out = {}
  for (const p of offs) out[p.partition] = { high: Number(p.high), low: Number(p.low) }
  return out
}

// ---- admin ------------------------------------------------------------------------------------

async function cmdAdmin() {
  const k = kafka('kafkajs-admin')
  const admin = k.admin()
  await admin.connect()
  const topic = `kjs-adm-${uid()}`

  await createTopic(admin, topic, 3, [{ name: 'retention.ms', value: '3600000' }])
  // Creating it again is TOPIC_ALREADY_EXISTS, which kafkajs reports as `false`.
  step('Creating it again is TOPIC_ALREADY_EXISTS, which kafkajs rep')
  const again = await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] })
  assert.strictEqual(again, false, 'second createTopics should report false')
  assert.ok((await admin.listTopics()).includes(topic), 'listTopics misses the new topic')

  const md = await admin.fetchTopicMetadata({ topics: [topic] })
  assert.strictEqual(md.topics.length, 1)
  assert.strictEqual(md.topics[0].name, topic)
  assert.strictEqual(md.topics[0].partitions.length, 3)
  for (const p of md.topics[0].partitions) {
    assert.strictEqual(p.partitionErrorCode, 0)
    assert.ok(p.leader >= 0, `partition ${p.partitionId} has no leader`)
    assert.deepStrictEqual(p.replicas, [p.leader])
  }

  const cluster = await admin.describeCluster()
  assert.strictEqual(cluster.brokers.length, 1, JSON.stringify(cluster))
  assert.strictEqual(cluster.controller, cluster.brokers[0].nodeId)
  assert.ok(cluster.clusterId, 'no cluster id')

  // Configs: the created value, a default, alter, read back.
  step('Configs: the created value, a default, alter, read back.')
  const describe = async () => {
    const r = await admin.describeConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
      includeSynonyms: false,
    })
    assert.strictEqual(r.resources.length, 1)
    assert.strictEqual(r.resources[0].errorCode, 0)
    const m = {}
    for (const e of r.resources[0].configEntries) m[e.configName] = e.configValue
    return m
  }
  let cfg = await describe()
  assert.strictEqual(cfg['retention.ms'], '3600000')
  assert.strictEqual(cfg['cleanup.policy'], 'delete')
  await admin.alterConfigs({
    validateOnly: false,
    resources: [
      {
        type: ConfigResourceTypes.TOPIC,
        name: topic,
        configEntries: [{ name: 'retention.ms', value: '7200000' }],
      },
    ],
  })
  cfg = await describe()
  assert.strictEqual(cfg['retention.ms'], '7200000')
  // Synonyms: the topic override, then the broker config it falls back to (left at its
  // built-in default on the test server: DEFAULT_CONFIG, 5).
  const syn = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms'] }],
    includeSynonyms: true,
  })
  const entry = syn.resources[0].configEntries[0]
  assert.strictEqual(entry.configSource, 1, JSON.stringify(entry))
  assert.deepStrictEqual(
    entry.configSynonyms.map((x) => [x.configName, x.configSource]),
    [
      ['retention.ms', 1],
      ['log.retention.ms', 5],
    ],
  )
  // A broker resource answers too.
  step('A broker resource answers too.')
  const br = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.BROKER, name: String(cluster.brokers[0].nodeId) }],
    includeSynonyms: false,
  })
  assert.strictEqual(br.resources[0].errorCode, 0)
  assert.ok(br.resources[0].configEntries.length > 0, 'broker has no configs')

  await admin.createPartitions({ topicPartitions: [{ topic, count: 5 }] })
  await until('5 partitions', async () => {
    const m = await admin.fetchTopicMetadata({ topics: [topic] })
    return m.topics[0].partitions.length === 5
  })
  await expectReject(
    'shrinking partitions',
    admin.createPartitions({ topicPartitions: [{ topic, count: 2 }] }),
  )

  // Records on two partitions, then a group that consumes them and commits.
  step('Records on two partitions, then a group that consumes them a')
  const producer = k.producer()
  await producer.connect()
  const msgs = []
  for (let i = 0; i < 20; i++) msgs.push({ partition: i % 2, value: `v${i}` })
  await producer.send({ topic, acks: -1, messages: msgs })
  await producer.disconnect()
  let hw = await highWatermarks(admin, topic)
  assert.deepStrictEqual([hw[0].high, hw[1].high, hw[2].high], [10, 10, 0])

  const group = `kjs-adm-g-${uid()}`
  const consumer = k.consumer({ groupId: group, maxWaitTimeInMs: 100, heartbeatInterval: 500 })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  let seen = 0
  await consumer.run({
    autoCommitThreshold: 1,
    eachMessage: async () => {
      seen++
    },
  })
  await until('20 messages', () => seen >= 20)
  await until('committed offsets', async () => {
    const f = await admin.fetchOffsets({ groupId: group, topics: [topic] })
    const p = f[0].partitions.sort((a, b) => a.partition - b.partition)
    return p[0].offset === '10' && p[1].offset === '10'
  })

  const groups = await admin.listGroups()
  assert.ok(
    groups.groups.some((g) => g.groupId === group && g.protocolType === 'consumer'),
    JSON.stringify(groups),
  )
  const dg = await admin.describeGroups([group])
  assert.strictEqual(dg.groups.length, 1)
  assert.strictEqual(dg.groups[0].state, 'Stable')
  assert.strictEqual(dg.groups[0].members.length, 1)
  assert.strictEqual(dg.groups[0].protocol, 'RoundRobinAssigner')

  // Offsets of an active group cannot be changed; of an empty one they can.
  step('Offsets of an active group cannot be changed; of an empty on')
  await expectReject(
    'setOffsets on an active group',
    admin.setOffsets({ groupId: group, topic, partitions: [{ partition: 0, offset: '3' }] }),
  )
  await consumer.disconnect()
  await until('group empty', async () => {
    const d = await admin.describeGroups([group])
    return d.groups[0].state === 'Empty'
  })
  await admin.setOffsets({ groupId: group, topic, partitions: [{ partition: 0, offset: '3' }] })
  let f = await admin.fetchOffsets({ groupId: group, topics: [topic] })
  let byPart = Object.fromEntries(f[0].partitions.map((p) => [p.partition, p.offset]))
  assert.strictEqual(byPart[0], '3')
  assert.strictEqual(byPart[1], '10')
  // kafkajs commits the logical offsets -2 (earliest) and -1 (latest) as they are, like Kafka
  step('resetOffsets')
  // stores them; `resolveOffsets` turns them into real offsets through ListOffsets.
  await admin.resetOffsets({ groupId: group, topic, earliest: true })
  f = await admin.fetchOffsets({ groupId: group, topics: [topic] })
  byPart = Object.fromEntries(f[0].partitions.map((p) => [p.partition, p.offset]))
  assert.deepStrictEqual([byPart[0], byPart[1], byPart[4]], ['-2', '-2', '-2'])
  f = await admin.fetchOffsets({ groupId: group, topics: [topic], resolveOffsets: true })
  byPart = Object.fromEntries(f[0].partitions.map((p) => [p.partition, p.offset]))
  assert.deepStrictEqual([byPart[0], byPart[1], byPart[4]], ['0', '0', '0'])
  await admin.resetOffsets({ groupId: group, topic, earliest: false })
  f = await admin.fetchOffsets({ groupId: group, topics: [topic], resolveOffsets: true })
  byPart = Object.fromEntries(f[0].partitions.map((p) => [p.partition, p.offset]))
  assert.deepStrictEqual([byPart[0], byPart[1], byPart[2]], ['10', '10', '0'])

  // Delete records below offset 4 of partition 0: its log start moves.
  step('Delete records below offset 4 of partition 0: its log start ')
  await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '4' }] })
  hw = await highWatermarks(admin, topic)
  assert.deepStrictEqual([hw[0].low, hw[0].high], [4, 10])
  const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, Date.now() + 3600000)
  const p0 = byTime.find((p) => p.partition === 0)
  assert.strictEqual(p0.offset, '10', JSON.stringify(byTime))

  const del = await admin.deleteGroups([group])
  assert.strictEqual(del.length, 1)
  assert.strictEqual(del[0].errorCode, 0)
  assert.ok(!(await admin.listGroups()).groups.some((g) => g.groupId === group), 'group not deleted')
  await expectReject('deleting an unknown group', admin.deleteGroups([`nope-${uid()}`]))

  // Reassignments: none in progress; this node's own replica set is accepted as a no-op,
  // another broker is rejected (it is not registered).
  const me = cluster.brokers[0].nodeId
  const listed = await admin.listPartitionReassignments({ topics: [{ topic, partitions: [0, 1] }] })
  assert.deepStrictEqual(listed.topics, [])
  await admin.alterPartitionReassignments({
    topics: [{ topic, partitionAssignment: [{ partition: 0, replicas: [me] }] }],
  })
  await expectReject(
    'reassignment to an unknown broker',
    admin.alterPartitionReassignments({
      topics: [{ topic, partitionAssignment: [{ partition: 1, replicas: [me, me + 1] }] }],
    }),
    (e) => {
      assert.strictEqual(e.errors.length, 1, e.message)
      assert.strictEqual(e.errors[0].type, 'INVALID_REPLICA_ASSIGNMENT', e.errors[0].message)
      assert.strictEqual(e.errors[0].partition, 1)
    },
  )
  step('ACLs: create, describe by filter, delete (stored, not enforced here)')
  const alice = `User:alice-${topic}`
  const bob = `User:bob-${topic}`
  const acl = (resourceType, resourceName, resourcePatternType, principal, operation, permissionType) => ({
    resourceType, resourceName, resourcePatternType, principal, host: '*', operation, permissionType,
  })
  const read = acl(AclResourceTypes.TOPIC, topic, ResourcePatternTypes.LITERAL, alice,
    AclOperationTypes.READ, AclPermissionTypes.ALLOW)
  const deny = acl(AclResourceTypes.TOPIC, topic, ResourcePatternTypes.LITERAL, bob,
    AclOperationTypes.WRITE, AclPermissionTypes.DENY)
  const pre = acl(AclResourceTypes.GROUP, `${topic}-g`, ResourcePatternTypes.PREFIXED, alice,
    AclOperationTypes.READ, AclPermissionTypes.ALLOW)
  await admin.createAcls({ acl: [read, deny, pre] })
  await expectReject(
    'an ACL principal without its type',
    admin.createAcls({ acl: [{ ...read, principal: 'alice' }] }),
    (e) => assert.strictEqual(e.type, 'INVALID_REQUEST', e.message),
  )
  const key = (a) => [a.resourceType, a.resourceName, a.resourcePatternType, a.principal,
    a.operation, a.permissionType].join('|')
  const described = async (filter) => {
    const r = await admin.describeAcls({
      operation: AclOperationTypes.ANY, permissionType: AclPermissionTypes.ANY, ...filter,
    })
    return r.resources
      .flatMap((res) => res.acls.map((a) => key({ ...res, ...a })))
      .sort()
  }
  assert.deepStrictEqual(
    await described({ resourceType: AclResourceTypes.TOPIC, resourceName: topic,
      resourcePatternType: ResourcePatternTypes.LITERAL }),
    [key(read), key(deny)].sort(),
  )
  assert.deepStrictEqual(
    await described({ resourceType: AclResourceTypes.GROUP, resourceName: `${topic}-g1`,
      resourcePatternType: ResourcePatternTypes.MATCH }),
    [key(pre)],
  )
  const aclsGone = await admin.deleteAcls({
    filters: [{ resourceType: AclResourceTypes.ANY, resourcePatternType: ResourcePatternTypes.ANY,
      principal: alice, operation: AclOperationTypes.ANY, permissionType: AclPermissionTypes.ANY }],
  })
  assert.strictEqual(aclsGone.filterResponses[0].errorCode, 0)
  assert.deepStrictEqual(aclsGone.filterResponses[0].matchingAcls.map(key).sort(), [key(read), key(pre)].sort())
  assert.deepStrictEqual(
    await described({ resourceType: AclResourceTypes.ANY, resourcePatternType: ResourcePatternTypes.ANY,
      principal: alice }),
    [],
  )

  await admin.deleteTopics({ topics: [topic], timeout: 30000 })
  await until('topic gone', async () => !(await admin.listTopics()).includes(topic))
  await expectReject(
    'invalid topic name',
    admin.createTopics({ topics: [{ topic: 'bad/name', numPartitions: 1 }] }),
  )
  await admin.disconnect()
  console.log('OK admin')
}

// ---- producer ---------------------------------------------------------------------------------

async function readAll(k, topic, expected, opts = {}) {
  const consumer = k.consumer({ groupId: `kjs-read-${uid()}`, maxWaitTimeInMs: 100 })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const got = []
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      got.push({ partition, ...message })
    },
  })
  await until(`${expected} messages of ${topic}`, () => got.length >= expected, opts.timeoutMs)
  await sleep(300) // anything beyond `expected` would arrive now
  await consumer.disconnect()
  assert.strictEqual(got.length, expected, `read ${got.length} of ${expected}`)
  return got
}

async function cmdProduce() {
  const k = kafka('kafkajs-produce')
  const admin = k.admin()
  await admin.connect()
  const topic = `kjs-prod-${uid()}`
  await createTopic(admin, topic, 2)

  const sent = []
  const producer = k.producer()
  await producer.connect()
  // acks=-1 and acks=1 with keys, headers and gzip; answers carry the assigned offsets.
  step('acks=-1 and acks=1 with keys, headers and gzip; answers carr')
  for (const [acks, compression] of [
    [-1, CompressionTypes.None],
    [1, CompressionTypes.GZIP],
    [-1, CompressionTypes.GZIP],
  ]) {
    const messages = []
    for (let i = 0; i < 50; i++) {
      const n = sent.length + messages.length
      messages.push({
        key: `key-${n}`,
        value: `value-${n}-${'x'.repeat(n % 7)}`,
        partition: n % 2,
        headers: { n: String(n), kind: `acks${acks}` },
      })
    }
    const res = await producer.send({ topic, acks, compression, messages })
    for (const r of res) assert.strictEqual(r.errorCode, 0, JSON.stringify(res))
    sent.push(...messages)
  }
  // acks=0: no answer at all; the records still land.
  step('acks=0: no answer at all; the records still land.')
  const zero = []
  for (let i = 0; i < 20; i++) {
    const n = sent.length + zero.length
    zero.push({ key: `key-${n}`, value: `value-${n}-`, partition: n % 2, headers: { n: String(n) } })
  }
  await producer.send({ topic, acks: 0, messages: zero })
  sent.push(...zero)
  await until('acks=0 records', async () => {
    const hw = await highWatermarks(admin, topic)
    return hw[0].high + hw[1].high === sent.length
  })
  // A record with a null key and a timestamp set by the client.
  step('A record with a null key and a timestamp set by the client.')
  const ts = String(Date.now() - 5000)
  await producer.send({ topic, acks: -1, messages: [{ value: 'nokey', partition: 0, timestamp: ts }] })
  sent.push({ key: null, value: 'nokey', partition: 0, timestamp: ts, headers: {} })
  await producer.disconnect()

  const got = await readAll(k, topic, sent.length)
  const byN = new Map()
  for (const m of got) {
    const key = m.key === null ? null : m.key.toString()
    const n = m.headers.n === undefined ? 'nokey' : m.headers.n.toString()
    assert.ok(!byN.has(n), `message ${n} twice`)
    byN.set(n, { ...m, key, value: m.value.toString() })
  }
  for (let n = 0; n < sent.length; n++) {
    const s = sent[n]
    const id = s.headers.n === undefined ? 'nokey' : s.headers.n
    const g = byN.get(id)
    assert.ok(g, `message ${id} missing`)
    assert.strictEqual(g.key, s.key)
    assert.strictEqual(g.value, s.value)
    assert.strictEqual(g.partition, s.partition)
    if (s.headers.kind) assert.strictEqual(g.headers.kind.toString(), s.headers.kind)
    if (s.timestamp) assert.strictEqual(g.timestamp, s.timestamp)
  }
  // Offsets in each partition are dense and in order.
  step('Offsets in each partition are dense and in order.')
  for (const part of [0, 1]) {
    const offs = got.filter((m) => m.partition === part).map((m) => Number(m.offset))
    offs.forEach((o, i) => assert.strictEqual(o, i, `partition ${part} offsets ${offs}`))
  }

  // Idempotent producer: acks=-1, one request in flight, exactly once and in order.
  step('Idempotent producer: acks=-1, one request in flight, exactly')
  const itopic = `kjs-idem-${uid()}`
  await createTopic(admin, itopic, 1)
  const ip = k.producer({ idempotent: true, maxInFlightRequests: 1 })
  await ip.connect()
  const N = 2000
  for (let b = 0; b < N; b += 100) {
    const messages = []
    for (let i = b; i < b + 100; i++) messages.push({ key: `k${i}`, value: String(i) })
    await ip.send({ topic: itopic, acks: -1, compression: CompressionTypes.GZIP, messages })
  }
  await ip.disconnect()
  const igot = await readAll(k, itopic, N)
  igot.forEach((m, i) => {
    assert.strictEqual(m.value.toString(), String(i))
    assert.strictEqual(Number(m.offset), i)
  })
  await admin.disconnect()
  console.log(`OK produce ${sent.length} messages, idempotent ${N}`)
}

// ---- consumer groups --------------------------------------------------------------------------

async function cmdGroups() {
  const k = kafka('kafkajs-groups')
  const admin = k.admin()
  await admin.connect()
  const topic = `kjs-grp-${uid()}`
  const group = `kjs-g-${uid()}`
  await createTopic(admin, topic, 4)

  // Two members; both must hold partitions before anything is produced.
  step('Two members; both must hold partitions before anything is pr')
  const members = []
  const seen = new Map() // "partition:offset" -> value
  const dup = []
  for (const name of ['a', 'b']) {
    const c = k.consumer({
      groupId: group,
      maxWaitTimeInMs: 100,
      sessionTimeout: 10000,
      heartbeatInterval: 300,
      rebalanceTimeout: 20000,
    })
    const m = { name, c, assigned: [] }
    c.on(c.events.GROUP_JOIN, (e) => {
      m.assigned = Object.values(e.payload.memberAssignment).flat()
      m.generation = e.payload.groupId && e.payload.memberId
    })
    await c.connect()
    await c.subscribe({ topic, fromBeginning: true })
    await c.run({
      autoCommitThreshold: 1,
      eachMessage: async ({ partition, message }) => {
        const key = `${partition}:${message.offset}`
        if (seen.has(key)) dup.push(key)
        seen.set(key, { by: name, value: message.value.toString() })
      },
    })
    members.push(m)
  }
  await until('both members assigned', async () => {
    const d = await admin.describeGroups([group])
    const g = d.groups[0]
    return (
      g.state === 'Stable' &&
      g.members.length === 2 &&
      members[0].assigned.length === 2 &&
      members[1].assigned.length === 2
    )
  })
  const all = [...members[0].assigned, ...members[1].assigned].sort()
  assert.deepStrictEqual(all, [0, 1, 2, 3], `assignment ${JSON.stringify(members.map((m) => m.assigned))}`)

  const producer = k.producer()
  await producer.connect()
  const N = 400
  const messages = []
  for (let i = 0; i < N; i++) messages.push({ key: `k${i}`, value: `m${i}` })
  for (let i = 0; i < N; i += 100) {
    await producer.send({ topic, acks: -1, messages: messages.slice(i, i + 100) })
  }
  await until(`${N} messages consumed by the group`, () => seen.size >= N)
  await sleep(500)
  assert.deepStrictEqual(dup, [], 'duplicates')
  assert.strictEqual(seen.size, N)
  const values = [...seen.values()].map((v) => v.value).sort()
  assert.deepStrictEqual(values, messages.map((m) => m.value).sort())
  const byMember = { a: 0, b: 0 }
  for (const v of seen.values()) byMember[v.by]++
  assert.ok(byMember.a > 0 && byMember.b > 0, `one member got nothing: ${JSON.stringify(byMember)}`)

  // Commit and resume: wait for the commits, stop both, produce more, and a new member reads
  step('Commit and resume: wait for the commits, stop both, produce ')
  // exactly the new records.
  await until('all offsets committed', async () => {
    const f = await admin.fetchOffsets({ groupId: group, topics: [topic] })
    const hw = await highWatermarks(admin, topic)
    return f[0].partitions.every((p) => Number(p.offset) === hw[p.partition].high)
  })
  for (const m of members) await m.c.disconnect()
  const more = []
  for (let i = N; i < N + 100; i++) more.push({ key: `k${i}`, value: `m${i}` })
  await producer.send({ topic, acks: -1, messages: more })
  const c3 = k.consumer({ groupId: group, maxWaitTimeInMs: 100, heartbeatInterval: 300 })
  await c3.connect()
  await c3.subscribe({ topic, fromBeginning: true })
  const resumed = []
  await c3.run({
    eachMessage: async ({ message }) => {
      resumed.push(message.value.toString())
    },
  })
  await until('100 new messages after resume', () => resumed.length >= 100)
  await sleep(500)
  await c3.disconnect()
  assert.deepStrictEqual(resumed.sort(), more.map((m) => m.value).sort())

  step('A member that dies without leaving: the survivor takes over after the session timeout')
  const child = require('child_process').spawn(
    process.execPath,
    [__filename, BOOT, 'member', topic, group],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  )
  try {
    await until('the child member', async () => {
      const d = await admin.describeGroups([group])
      return d.groups[0].state === 'Stable' && d.groups[0].members.length === 1
    })
  } catch (e) {
    child.kill('SIGKILL')
    throw e
  }
  const c4 = k.consumer({ groupId: group, maxWaitTimeInMs: 100, heartbeatInterval: 300, sessionTimeout: 6000 })
  let held = []
  c4.on(c4.events.GROUP_JOIN, (e) => {
    held = e.payload.memberAssignment[topic] || []
  })
  await c4.connect()
  await c4.subscribe({ topic, fromBeginning: true })
  const after = []
  await c4.run({
    eachMessage: async ({ message }) => {
      after.push(message.value.toString())
    },
  })
  await until('the survivor shares the partitions', async () => {
    const d = await admin.describeGroups([group])
    return d.groups[0].state === 'Stable' && d.groups[0].members.length === 2 && held.length === 2
  })
  child.kill('SIGKILL')
  const killedAt = Date.now()
  await until('the survivor holds every partition', () => held.length === 4, 30000)
  const tookMs = Date.now() - killedAt
  const last = []
  for (let i = N + 100; i < N + 200; i++) last.push({ key: `k${i}`, value: `m${i}` })
  await producer.send({ topic, acks: -1, messages: last })
  await until('the survivor consumed the new records', () => after.length >= 100)
  await sleep(300)
  await c4.disconnect()
  assert.deepStrictEqual(after.sort(), last.map((m) => m.value).sort())

  await producer.disconnect()
  await admin.disconnect()
  console.log(
    `OK groups ${N}+200 messages, members a=${byMember.a} b=${byMember.b}, takeover ${tookMs} ms`,
  )
}

// ---- seek, pause/resume, manual commit -------------------------------------------------------

async function cmdConsumer() {
  const k = kafka('kafkajs-consumer')
  const admin = k.admin()
  await admin.connect()
  const topic = `kjs-seek-${uid()}`
  const group = `kjs-s-${uid()}`
  await createTopic(admin, topic, 1)
  const producer = k.producer()
  await producer.connect()
  const batch = (from, n) => Array.from({ length: n }, (_, i) => ({ value: String(from + i) }))
  await producer.send({ topic, acks: -1, messages: batch(0, 100) })

  const c = k.consumer({ groupId: group, maxWaitTimeInMs: 100, heartbeatInterval: 300 })
  await c.connect()
  await c.subscribe({ topic, fromBeginning: true })
  const got = []
  let seeked = false
  await c.run({
    autoCommit: false,
    eachMessage: async ({ message }) => {
      got.push(Number(message.value.toString()))
    },
  })
  await until('first 100', () => got.length >= 100)
  assert.deepStrictEqual(got.slice(0, 100), Array.from({ length: 100 }, (_, i) => i))

  // Seek back to offset 90: the next records are 90..99 again.
  step('Seek back to offset 90: the next records are 90..99 again.')
  got.length = 0
  c.seek({ topic, partition: 0, offset: '90' })
  seeked = true
  await until('records after seek', () => got.length >= 10)
  assert.ok(seeked)
  assert.deepStrictEqual(got.slice(0, 10), [90, 91, 92, 93, 94, 95, 96, 97, 98, 99])

  // Pause: new records are not delivered; resume: they are.
  step('Pause: new records are not delivered; resume: they are.')
  c.pause([{ topic }])
  assert.ok(c.paused().some((p) => p.topic === topic))
  await sleep(300)
  got.length = 0
  await producer.send({ topic, acks: -1, messages: batch(100, 20) })
  await sleep(1500)
  assert.strictEqual(got.length, 0, `delivered while paused: ${got}`)
  c.resume([{ topic }])
  await until('records after resume', () => got.length >= 20)
  assert.deepStrictEqual(got.slice(0, 20), Array.from({ length: 20 }, (_, i) => 100 + i))

  // Manual commit of offset 110, then a fresh member resumes from it.
  step('Manual commit of offset 110, then a fresh member resumes fro')
  await c.commitOffsets([{ topic, partition: 0, offset: '110' }])
  const f = await admin.fetchOffsets({ groupId: group, topics: [topic] })
  assert.strictEqual(f[0].partitions[0].offset, '110')
  await c.disconnect()
  const c2 = k.consumer({ groupId: group, maxWaitTimeInMs: 100, heartbeatInterval: 300 })
  await c2.connect()
  await c2.subscribe({ topic, fromBeginning: true })
  const got2 = []
  await c2.run({
    autoCommit: false,
    eachMessage: async ({ message }) => {
      got2.push(Number(message.value.toString()))
    },
  })
  await until('resumed records', () => got2.length >= 10)
  await sleep(300)
  await c2.disconnect()
  assert.deepStrictEqual(got2, Array.from({ length: 10 }, (_, i) => 110 + i))

  step('A committed offset below the log start is out of range: reset to the earliest')
  await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '115' }] })
  const c3 = k.consumer({ groupId: group, maxWaitTimeInMs: 100, heartbeatInterval: 300 })
  await c3.connect()
  await c3.subscribe({ topic, fromBeginning: true })
  const got3 = []
  await c3.run({
    autoCommit: false,
    eachMessage: async ({ message }) => {
      got3.push(Number(message.value.toString()))
    },
  })
  await until('records after the reset', () => got3.length >= 5)
  await sleep(300)
  await c3.disconnect()
  assert.deepStrictEqual(got3, [115, 116, 117, 118, 119])

  await producer.disconnect()
  await admin.disconnect()
  console.log('OK consumer seek pause resume commit')
}

// ---- transactions -----------------------------------------------------------------------------

async function cmdTransactions() {
  const k = kafka('kafkajs-txn')
  const admin = k.admin()
  await admin.connect()
  const src = `kjs-txsrc-${uid()}`
  const out = `kjs-txout-${uid()}`
  const group = `kjs-txg-${uid()}`
  await admin.createTopics({
    topics: [
      { topic: src, numPartitions: 1 },
      { topic: out, numPartitions: 2 },
    ],
    waitForLeaders: true,
  })
  const p = k.producer({ transactionalId: `kjs-tx-${uid()}`, idempotent: true, maxInFlightRequests: 1 })
  await p.connect()
  step('commit, abort, then commit with the consumer offsets (sendOffsets)')
  let tx = await p.transaction()
  await tx.send({ topic: out, messages: [{ value: 'c1', partition: 0 }, { value: 'c2', partition: 1 }] })
  await tx.commit()
  tx = await p.transaction()
  await tx.send({ topic: out, messages: [{ value: 'a1', partition: 0 }, { value: 'a2', partition: 1 }] })
  await tx.abort()
  tx = await p.transaction()
  await tx.send({ topic: out, messages: [{ value: 'c3', partition: 0 }] })
  await tx.sendOffsets({
    consumerGroupId: group,
    topics: [{ topic: src, partitions: [{ partition: 0, offset: '5' }] }],
  })
  await tx.commit()
  await p.disconnect()
  const offs = await admin.fetchOffsets({ groupId: group, topics: [src] })
  assert.strictEqual(offs[0].partitions[0].offset, '5', JSON.stringify(offs))

  step('read_committed sees the committed records only; read_uncommitted sees all')
  for (const [readUncommitted, want] of [
    [false, ['c1', 'c2', 'c3']],
    [true, ['a1', 'a2', 'c1', 'c2', 'c3']],
  ]) {
    const c = k.consumer({ groupId: `kjs-txr-${uid()}`, readUncommitted, maxWaitTimeInMs: 100 })
    await c.connect()
    await c.subscribe({ topic: out, fromBeginning: true })
    const got = []
    await c.run({
      autoCommit: false,
      eachMessage: async ({ message }) => {
        got.push(message.value.toString())
      },
    })
    await until(`${want.length} records (readUncommitted=${readUncommitted})`, () => got.length >= want.length)
    await sleep(500) // anything more would arrive now
    await c.disconnect()
    assert.deepStrictEqual(got.sort(), want, `readUncommitted=${readUncommitted}`)
  }
  await admin.disconnect()
  console.log('OK transactions')
}

// A group member that consumes until it is killed (used by `groups`).
async function cmdMember(topic, group) {
  const c = kafka('kafkajs-member').consumer({
    groupId: group,
    maxWaitTimeInMs: 100,
    heartbeatInterval: 300,
    sessionTimeout: 6000,
  })
  await c.connect()
  await c.subscribe({ topic, fromBeginning: true })
  await c.run({ eachMessage: async () => {} })
  await sleep(WAIT_MS * 3)
}

// A SASL listener: kafkajs logs in with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN, produces and
// reads back; a wrong password is a KafkaJSSASLAuthenticationError.
async function cmdSasl(user, password) {
  const topic = `kjs-sasl-${crypto.randomBytes(4).toString('hex')}`
  const client = (mechanism, pw) =>
    new Kafka({
      clientId: 'kjs-sasl',
      brokers: [BOOT],
      sasl: { mechanism, username: user, password: pw },
      logLevel: logLevel.NOTHING,
      retry: { retries: 0 },
    })
  const mechanisms = ['scram-sha-256', 'scram-sha-512', 'plain']
  const admin = client('scram-sha-512', password).admin()
  await admin.connect()
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }] })
  await admin.disconnect()
  for (const m of mechanisms) {
    const p = client(m, password).producer()
    await p.connect()
    await p.send({ topic, acks: -1, messages: [{ value: m }] })
    await p.disconnect()
  }
  const consumer = client('scram-sha-256', password).consumer({ groupId: `${topic}-g` })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const got = []
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`consumed only ${got}`)), WAIT_MS)
    consumer.run({
      eachMessage: async ({ message }) => {
        got.push(message.value.toString())
        if (got.length === mechanisms.length) {
          clearTimeout(t)
          resolve()
        }
      },
    })
  })
  await consumer.disconnect()
  assert.deepStrictEqual(got, mechanisms)
  const bad = client('scram-sha-256', password + 'x').admin()
  await assert.rejects(bad.connect(), (e) => e.name === 'KafkaJSSASLAuthenticationError')
  console.log('OK sasl')
}

const COMMANDS = {
  sasl: cmdSasl,
  member: cmdMember,
  transactions: cmdTransactions,
  admin: cmdAdmin,
  produce: cmdProduce,
  groups: cmdGroups,
  consumer: cmdConsumer,
}

const overall = setTimeout(() => {
  console.error(`${COMMAND}: overall deadline passed`)
  process.exit(1)
}, 240000)

if (!COMMANDS[COMMAND]) {
  console.error(`unknown command ${COMMAND}; one of ${Object.keys(COMMANDS).join(', ')}`)
  process.exit(2)
}
COMMANDS[COMMAND](...process.argv.slice(4))
  .then(() => {
    clearTimeout(overall)
    process.exit(0)
  })
  .catch((e) => {
    console.error(`${COMMAND} failed:`, e && e.stack ? e.stack : e)
    process.exit(1)
  })
