//! `run`: drive a workload against a Kafka-protocol broker through librdkafka and measure it.
//!
//! Threads (all bounded by the workload's validated counts):
//! - one thread per producer: a `ThreadedProducer` (its own librdkafka threads plus a poll thread
//!   that runs our delivery callback) fed on the open-loop schedule of [`crate::rate`];
//! - one thread per consumer: a `BaseConsumer` polled in a loop;
//! - the calling thread samples once per second: progress line, timeline point, broker /proc.
//!
//! Order of events: create topics → wait for leaders → read each partition's end offset →
//! start consumers and wait until every group owns every partition (starting exactly at those end
//! offsets, so nothing produced by this run can be skipped) → start producers → warm-up →
//! measure → flush producers → drain consumers until they have everything acknowledged (bounded)
//! → merge per-thread histograms and delivery sets.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::error::{PerfError, Result};
use crate::histo::LatencyHisto;
use crate::payload::{Header, MessageGen};
use crate::rate::Schedule;
use crate::result::{
    BrokerUsage, Cdf, Delivery, DiskReference, GroupDelivery, HarnessUsage, PhaseResult, RunResult,
    TimelinePoint, PHASE_MEASURE, PHASE_WARMUP,
};
use crate::seqset::{Insert, SeqSet};
use crate::sysinfo::{load_avg_1m, proc_sample, sched_sample, self_usage, Machine};
use crate::workload::{ConsumerMode, Workload};

/// Longest wait for topic creation and partition leaders.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for consumer groups to own every partition.
const GROUP_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for producers to flush after the measured phase.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// Consumers drain until they have everything acknowledged, or this long without progress.
const DRAIN_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Absolute bound on the drain.
const DRAIN_MAX: Duration = Duration::from_secs(120);
/// Timeout of one metadata / offsets request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Consumer poll timeout (bounds how long a consumer takes to notice the stop flag).
const CONSUMER_POLL: Duration = Duration::from_millis(100);
/// Back-off when the client's local queue is full (the send is retried, its due time unchanged).
const QUEUE_FULL_BACKOFF: Duration = Duration::from_micros(200);
/// Distinct error kinds kept per thread (counts beyond go to "other").
const MAX_ERROR_KINDS: usize = 32;
/// Interval of the progress line and timeline.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Most partitions queried for end offsets one at a time when the batched query fails.
const MAX_WATERMARK_QUERIES: usize = 10_000;

/// How to run, beyond the workload itself.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub bootstrap: String,
    /// Broker process to sample from /proc (local brokers only).
    pub broker_pid: Option<u32>,
    /// Print a progress line every second to stderr.
    pub progress: bool,
    /// Best sequential write MB/s of this host's data disk, to express throughput against.
    pub disk_best_write_mb_per_s: Option<f64>,
}

/// The run's monotonic clock: ns since its epoch. Shared by every thread of the run so producer
/// due times and consumer receive times are on one clock.
#[derive(Debug, Clone, Copy)]
struct Clock {
    epoch: Instant,
}

impl Clock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Phase boundaries on the run clock.
#[derive(Debug, Clone, Copy)]
struct Phases {
    start_ns: u64,
    measure_start_ns: u64,
    end_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Warmup,
    Measure,
}

impl Phases {
    fn of(&self, due_ns: u64) -> Option<Phase> {
        if due_ns < self.start_ns || due_ns >= self.end_ns {
            None
        } else if due_ns < self.measure_start_ns {
            Some(Phase::Warmup)
        } else {
            Some(Phase::Measure)
        }
    }
}

/// Per-phase accumulation in one thread.
#[derive(Debug, Default, Clone)]
struct PhaseAcc {
    histo: LatencyHisto,
    msgs: u64,
    bytes: u64,
    errors: u64,
}

/// Counts since the sampler last looked.
#[derive(Debug, Default, Clone)]
struct IntervalAcc {
    histo: LatencyHisto,
    msgs: u64,
    bytes: u64,
}

fn count_error(kinds: &mut BTreeMap<String, u64>, kind: String) {
    if kinds.len() < MAX_ERROR_KINDS || kinds.contains_key(&kind) {
        *kinds.entry(kind).or_insert(0) += 1;
    } else {
        *kinds.entry("other".to_string()).or_insert(0) += 1;
    }
}

/// Most librdkafka log and error lines printed per client (a broken broker can make it repeat
/// the same line thousands of times a second).
const MAX_CLIENT_LOG_LINES: u64 = 50;

/// Forwards librdkafka's own log lines and errors to stderr, bounded. Warnings and errors
/// always; debug lines when the workload sets the client property `debug`.
#[derive(Debug, Default)]
struct ClientLog {
    name: String,
    lines: AtomicU64,
}

impl ClientLog {
    fn new(name: String) -> ClientLog {
        ClientLog {
            name,
            lines: AtomicU64::new(0),
        }
    }

    fn emit(&self, what: &str, text: &str) {
        let n = self.lines.fetch_add(1, Ordering::Relaxed);
        if n < MAX_CLIENT_LOG_LINES {
            eprintln!("librdkafka {} {what}: {text}", self.name);
        } else if n == MAX_CLIENT_LOG_LINES {
            eprintln!("librdkafka {}: further log lines suppressed", self.name);
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        self.emit(&format!("{level:?} {fac}"), msg);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.emit("error", &format!("{error}: {reason}"));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking thread cannot leave these plain counters inconsistent: keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Producers

#[derive(Debug, Default)]
struct ProducerStats {
    interval: IntervalAcc,
    warmup: PhaseAcc,
    measure: PhaseAcc,
    acked: SeqSet,
    failed: u64,
    truncated: bool,
    error_kinds: BTreeMap<String, u64>,
}

struct ProducerCtx {
    clock: Clock,
    /// Set once, after every client exists and before the first send.
    phases: Arc<OnceLock<Phases>>,
    stats: Arc<Mutex<ProducerStats>>,
    acked_total: Arc<AtomicU64>,
    log: ClientLog,
}

impl ClientContext for ProducerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        self.log.log(level, fac, msg);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let now = self.clock.now_ns();
        let (msg, err) = match result {
            Ok(m) => (m, None),
            Err((e, m)) => (m, Some(e)),
        };
        let Some(header) = msg.payload().and_then(Header::read) else {
            return;
        };
        let len = msg.payload_len() as u64;
        let mut s = lock(&self.stats);
        let phase = self.phases.get().and_then(|p| p.of(header.intended_ns));
        match err {
            None => {
                self.acked_total.fetch_add(1, Ordering::Relaxed);
                if s.acked.insert(header.seq) == Insert::Untracked {
                    s.truncated = true;
                }
                let latency = now.saturating_sub(header.intended_ns);
                s.interval.histo.record_ns(latency);
                s.interval.msgs += 1;
                s.interval.bytes += len;
                let acc = match phase {
                    Some(Phase::Warmup) => &mut s.warmup,
                    Some(Phase::Measure) => &mut s.measure,
                    None => return,
                };
                acc.histo.record_ns(latency);
                acc.msgs += 1;
                acc.bytes += len;
            }
            Some(e) => {
                s.failed += 1;
                count_error(&mut s.error_kinds, format!("delivery: {e}"));
                match phase {
                    Some(Phase::Warmup) => s.warmup.errors += 1,
                    Some(Phase::Measure) => s.measure.errors += 1,
                    None => {}
                }
            }
        }
    }
}

/// What a producer thread reports when it ends.
#[derive(Debug, Default)]
struct ProducerEnd {
    sent_warmup: u64,
    sent_measure: u64,
    send_errors: BTreeMap<String, u64>,
    send_errors_warmup: u64,
    send_errors_measure: u64,
}

fn producer_config(w: &Workload, bootstrap: &str, index: u32) -> ClientConfig {
    let p = &w.producers;
    let max_msg = p.message_size.max_bytes();
    // librdkafka refuses messages above message.max.bytes; leave room for the batch overhead.
    let message_max = max_msg
        .saturating_add(64 * 1024)
        .clamp(1_000_000, 1_000_000_000);
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", format!("chronik-perf-p{index}"))
        .set("acks", p.acks.as_config())
        .set("compression.type", p.compression.as_config())
        .set(
            "batch.size",
            p.batch_size_bytes.min(message_max).to_string(),
        )
        .set("linger.ms", p.linger_ms.to_string())
        .set("message.max.bytes", message_max.to_string());
    for (k, v) in &p.config {
        c.set(k, v);
    }
    set_log_level(&mut c);
    c
}

/// Warnings and worse by default; everything when the workload asks for librdkafka `debug`
/// contexts. (rdkafka otherwise derives the level from the `log` crate, which we do not use, and
/// would silence librdkafka entirely.)
fn set_log_level(c: &mut ClientConfig) {
    let level = if c.get("debug").is_some() {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Warning
    };
    c.set_log_level(level);
}

struct ProducerThread {
    index: u32,
    workload: Arc<Workload>,
    bootstrap: String,
    clock: Clock,
    phases: Arc<OnceLock<Phases>>,
    run_id: u32,
    stats: Arc<Mutex<ProducerStats>>,
    acked_total: Arc<AtomicU64>,
    sent_total: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl ProducerThread {
    fn create(&self) -> Result<ThreadedProducer<ProducerCtx>> {
        let ctx = ProducerCtx {
            clock: self.clock,
            phases: self.phases.clone(),
            stats: self.stats.clone(),
            acked_total: self.acked_total.clone(),
            log: ClientLog::new(format!("producer {}", self.index)),
        };
        producer_config(&self.workload, &self.bootstrap, self.index)
            .create_with_context(ctx)
            .map_err(|e| PerfError::kafka(format!("create producer {}", self.index), e))
    }

    fn run(self, producer: ThreadedProducer<ProducerCtx>, phases: Phases) -> ProducerEnd {
        let w = &*self.workload;
        let spec = &w.producers;
        let mut gen = MessageGen::new(spec, w.seed.wrapping_add(u64::from(self.index)));
        let mut schedule = (spec.rate_msgs_per_s > 0).then(|| {
            Schedule::for_producer(
                phases.start_ns,
                spec.rate_msgs_per_s,
                spec.count,
                self.index,
            )
        });
        let topics: Vec<&str> = w.topics.iter().map(|t| t.name.as_str()).collect();
        let mut end = ProducerEnd::default();
        let mut buf = Vec::with_capacity(gen.next_size());
        let mut key = String::new();
        let mut seq: u64 = 0;
        // Wait for the common start so all producers begin together.
        sleep_until(&self.clock, phases.start_ns, &self.stop);
        'messages: loop {
            let now = self.clock.now_ns();
            if now >= phases.end_ns || self.stop.load(Ordering::Relaxed) {
                break;
            }
            let due = match schedule.as_mut() {
                None => now,
                Some(s) => match s.take_due(now) {
                    Some(d) => d,
                    None => {
                        sleep_until(&self.clock, s.peek_ns().min(phases.end_ns), &self.stop);
                        continue;
                    }
                },
            };
            let header = Header {
                run_id: self.run_id,
                producer: self.index,
                seq,
                intended_ns: due,
            };
            let size = gen.next_size();
            gen.body(&header, size, &mut buf);
            let has_key = match gen.next_key() {
                Some(k) => {
                    key.clear();
                    key.push_str(k);
                    true
                }
                None => false,
            };
            let topic = topics[(seq % topics.len() as u64) as usize];
            let phase = phases.of(due);
            let mut record = BaseRecord::to(topic).payload(&buf[..]);
            if has_key {
                record = record.key(key.as_str());
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // Backpressure from the client: retry the same message; its latency keeps
                        // counting from `due`.
                        if self.clock.now_ns() >= phases.end_ns || self.stop.load(Ordering::Relaxed)
                        {
                            break 'messages;
                        }
                        std::thread::sleep(QUEUE_FULL_BACKOFF);
                        record = r;
                    }
                    Err((e, _)) => {
                        count_error(&mut end.send_errors, format!("send: {e}"));
                        match phase {
                            Some(Phase::Warmup) => end.send_errors_warmup += 1,
                            Some(Phase::Measure) => end.send_errors_measure += 1,
                            None => {}
                        }
                        seq += 1;
                        continue 'messages;
                    }
                }
            }
            match phase {
                Some(Phase::Warmup) => end.sent_warmup += 1,
                Some(Phase::Measure) => end.sent_measure += 1,
                None => {}
            }
            self.sent_total.fetch_add(1, Ordering::Relaxed);
            seq += 1;
        }
        if let Err(e) = producer.flush(FLUSH_TIMEOUT) {
            count_error(&mut end.send_errors, format!("flush: {e}"));
        }
        end
    }
}

fn sleep_until(clock: &Clock, target_ns: u64, stop: &AtomicBool) {
    // Sleep in slices so a stop request is noticed within one slice.
    const SLICE_NS: u64 = 50_000_000;
    loop {
        let now = clock.now_ns();
        if now >= target_ns || stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(Duration::from_nanos((target_ns - now).min(SLICE_NS)));
    }
}

// ---------------------------------------------------------------------------------------------
// Consumers

#[derive(Debug, Default)]
struct ConsumerStats {
    interval: IntervalAcc,
    warmup: PhaseAcc,
    measure: PhaseAcc,
    /// Per producer index: sequence numbers received.
    received: Vec<SeqSet>,
    received_total: u64,
    duplicates: u64,
    foreign: u64,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
}

/// Start offsets by (topic, partition).
type StartOffsets = HashMap<(String, i32), i64>;

struct ConsumerCtx {
    start: Arc<StartOffsets>,
    /// Partitions this consumer currently owns.
    assigned: Arc<AtomicU64>,
    log: ClientLog,
}

impl ClientContext for ConsumerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        self.log.log(level, fac, msg);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ConsumerContext for ConsumerCtx {
    // Replaces the default eager rebalance so each newly assigned partition starts at the end
    // offset read before producing began: a fresh group with `auto.offset.reset = latest` would
    // otherwise race the first produced messages and silently skip them.
    fn rebalance(
        &self,
        base_consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let parts: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                for (topic, partition) in &parts {
                    if let Some(off) = self.start.get(&(topic.clone(), *partition)) {
                        let _ = tpl.set_partition_offset(topic, *partition, Offset::Offset(*off));
                    }
                }
                let _ = base_consumer.assign(tpl);
                self.assigned.store(parts.len() as u64, Ordering::Relaxed);
            }
            _ => {
                let _ = base_consumer.unassign();
                self.assigned.store(0, Ordering::Relaxed);
            }
        }
    }
}

fn consumer_config(w: &Workload, bootstrap: &str, group_id: &str, index: u32) -> ClientConfig {
    let max_msg = w.producers.message_size.max_bytes();
    let per_partition = max_msg
        .saturating_add(64 * 1024)
        .clamp(1_048_576, 1_000_000_000);
    let fetch_max = per_partition.max(52_428_800);
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", format!("chronik-perf-c{index}"))
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "latest")
        .set("enable.partition.eof", "false")
        .set("max.partition.fetch.bytes", per_partition.to_string())
        .set("fetch.max.bytes", fetch_max.to_string())
        .set(
            "receive.message.max.bytes",
            (fetch_max + 1_048_576).to_string(),
        );
    for (k, v) in &w.consumers.config {
        c.set(k, v);
    }
    set_log_level(&mut c);
    c
}

struct ConsumerThread {
    run_id: u32,
    producers: u32,
    clock: Clock,
    phases: Phases,
    stats: Arc<Mutex<ConsumerStats>>,
    unique: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    delay_s: u64,
}

impl ConsumerThread {
    fn run(self, consumer: BaseConsumer<ConsumerCtx>) {
        // A delayed consumer stays assigned (librdkafka keeps its group membership alive in the
        // background) but reads nothing until then: a backlog builds up on the broker.
        if self.delay_s > 0 {
            sleep_until(
                &self.clock,
                self.phases.start_ns + self.delay_s * 1_000_000_000,
                &self.stop,
            );
        }
        while !self.stop.load(Ordering::Relaxed) {
            match consumer.poll(CONSUMER_POLL) {
                None => {}
                Some(Err(e)) => {
                    let mut s = lock(&self.stats);
                    s.errors += 1;
                    count_error(&mut s.error_kinds, format!("consume: {e}"));
                }
                Some(Ok(m)) => {
                    let now = self.clock.now_ns();
                    let header = m.payload().and_then(Header::read);
                    let mut s = lock(&self.stats);
                    let Some(h) =
                        header.filter(|h| h.run_id == self.run_id && h.producer < self.producers)
                    else {
                        s.foreign += 1;
                        continue;
                    };
                    s.received_total += 1;
                    match s.received[h.producer as usize].insert(h.seq) {
                        Insert::New => {
                            self.unique.fetch_add(1, Ordering::Relaxed);
                        }
                        Insert::Duplicate => s.duplicates += 1,
                        Insert::Untracked => {}
                    }
                    let latency = now.saturating_sub(h.intended_ns);
                    s.interval.histo.record_ns(latency);
                    s.interval.msgs += 1;
                    s.interval.bytes += m.payload_len() as u64;
                    let acc = match self.phases.of(h.intended_ns) {
                        Some(Phase::Warmup) => &mut s.warmup,
                        Some(Phase::Measure) => &mut s.measure,
                        None => continue,
                    };
                    acc.histo.record_ns(latency);
                    acc.msgs += 1;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Setup

fn admin(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "chronik-perf-admin")
        .create()
        .map_err(|e| PerfError::kafka("create admin client", e))
}

/// Whether `topic` exists with at least `partitions` partitions, each with a leader.
fn topic_ready(consumer: &BaseConsumer, topic: &str, partitions: u32) -> bool {
    match consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT) {
        Ok(md) => md.topics().iter().any(|mt| {
            mt.name() == topic
                && mt.error().is_none()
                && mt.partitions().len() >= partitions as usize
                && mt
                    .partitions()
                    .iter()
                    .all(|p| p.leader() >= 0 && p.error().is_none())
        }),
        Err(_) => false,
    }
}

/// Creates the workload's missing topics (existing ones are used as they are) and waits for every
/// partition to have a leader.
pub fn ensure_topics(w: &Workload, bootstrap: &str) -> Result<()> {
    // A consumer's metadata request does not auto-create topics, so this only looks.
    let consumer: BaseConsumer = metadata_client(bootstrap)?;
    let missing: Vec<_> = w
        .topics
        .iter()
        .filter(|t| !topic_ready(&consumer, &t.name, t.partitions))
        .collect();
    if !missing.is_empty() {
        let admin = admin(bootstrap)?;
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|t| {
                let mut nt = NewTopic::new(
                    &t.name,
                    i32::try_from(t.partitions).unwrap_or(i32::MAX),
                    TopicReplication::Fixed(i32::try_from(t.replication_factor).unwrap_or(1)),
                );
                for (k, v) in &t.configs {
                    nt = nt.set(k, v);
                }
                nt
            })
            .collect();
        let opts = AdminOptions::new()
            .operation_timeout(Some(TOPIC_READY_TIMEOUT))
            .request_timeout(Some(TOPIC_READY_TIMEOUT));
        let results = futures::executor::block_on(admin.create_topics(&new_topics, &opts))
            .map_err(|e| PerfError::kafka("create topics", e))?;
        for r in results {
            if let Err((name, code)) = r {
                if code != RDKafkaErrorCode::TopicAlreadyExists {
                    return Err(PerfError::kafka(
                        format!("create topic {name}"),
                        KafkaError::AdminOp(code),
                    ));
                }
            }
        }
    }
    let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
    loop {
        if w.topics
            .iter()
            .all(|t| topic_ready(&consumer, &t.name, t.partitions))
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(PerfError::Timeout {
                what: "topic partitions to have leaders".into(),
                waited_ms: TOPIC_READY_TIMEOUT.as_millis() as u64,
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn metadata_client(bootstrap: &str) -> Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "chronik-perf-meta")
        .set("group.id", "chronik-perf-meta")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| PerfError::kafka("create metadata client", e))
}

/// Every partition's current end offset (high watermark).
fn end_offsets(w: &Workload, bootstrap: &str) -> Result<StartOffsets> {
    let consumer = metadata_client(bootstrap)?;
    let mut tpl = TopicPartitionList::new();
    for t in &w.topics {
        for p in 0..t.partitions as i32 {
            // Offset::End as a "timestamp" asks ListOffsets for the latest offset: one batched
            // request per broker instead of one round trip per partition.
            let _ = tpl.add_partition_offset(&t.name, p, Offset::End);
        }
    }
    let mut out = StartOffsets::new();
    if let Ok(res) = consumer.offsets_for_times(tpl, REQUEST_TIMEOUT) {
        for e in res.elements() {
            if let Offset::Offset(o) = e.offset() {
                out.insert((e.topic().to_string(), e.partition()), o);
            }
        }
    }
    // Fall back per partition for anything the batched query did not answer.
    let mut queries = 0;
    for t in &w.topics {
        for p in 0..t.partitions as i32 {
            if out.contains_key(&(t.name.clone(), p)) {
                continue;
            }
            queries += 1;
            if queries > MAX_WATERMARK_QUERIES {
                break;
            }
            let (_, high) = consumer
                .fetch_watermarks(&t.name, p, REQUEST_TIMEOUT)
                .map_err(|e| PerfError::kafka(format!("end offset of {}/{p}", t.name), e))?;
            out.insert((t.name.clone(), p), high);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The run

/// Runs `workload` once and returns what was measured.
pub fn run(workload: &Workload, opts: &RunOptions) -> Result<RunResult> {
    workload.validate()?;
    let w = Arc::new(workload.clone());
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    // Distinguishes this run's messages from older ones in the same topics.
    let run_id = (started_unix_ms as u32) ^ std::process::id().rotate_left(16);
    let machine = Machine::probe();

    progress(opts, &format!("creating topics on {}", opts.bootstrap));
    ensure_topics(&w, &opts.bootstrap)?;
    let start_offsets = Arc::new(end_offsets(&w, &opts.bootstrap)?);

    let clock = Clock {
        epoch: Instant::now(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let producers = w.producers.count;

    // Consumers first, so they are in place before the first message.
    let all_partitions: Vec<(String, i32)> = w
        .topics
        .iter()
        .flat_map(|t| (0..t.partitions as i32).map(move |p| (t.name.clone(), p)))
        .collect();
    let mut consumer_stats: Vec<(u32, Arc<Mutex<ConsumerStats>>)> = Vec::new();
    let mut group_unique: Vec<Arc<AtomicU64>> = Vec::new();
    let mut group_assigned: Vec<Vec<Arc<AtomicU64>>> = Vec::new();
    let mut consumer_handles: Vec<JoinHandle<()>> = Vec::new();
    // Phases are fixed once everything is ready; consumers need them, so compute them lazily
    // through a placeholder and patch by starting consumers with the final value below.
    let mut pending_consumers = Vec::new();
    for g in 0..w.consumers.groups {
        let group_id = format!("chronik-perf-{run_id:08x}-g{g}");
        let unique = Arc::new(AtomicU64::new(0));
        group_unique.push(unique.clone());
        let mut assigned_list = Vec::new();
        for m in 0..w.consumers.per_group {
            let assigned = Arc::new(AtomicU64::new(0));
            assigned_list.push(assigned.clone());
            let ctx = ConsumerCtx {
                start: start_offsets.clone(),
                assigned: assigned.clone(),
                log: ClientLog::new(format!("consumer {g}/{m}")),
            };
            let consumer: BaseConsumer<ConsumerCtx> =
                consumer_config(&w, &opts.bootstrap, &group_id, g * 1000 + m)
                    .create_with_context(ctx)
                    .map_err(|e| PerfError::kafka(format!("create consumer {g}/{m}"), e))?;
            match w.consumers.mode {
                ConsumerMode::Group => {
                    let topics: Vec<&str> = w.topics.iter().map(|t| t.name.as_str()).collect();
                    consumer
                        .subscribe(&topics)
                        .map_err(|e| PerfError::kafka("subscribe", e))?;
                }
                ConsumerMode::Assigned => {
                    let mut tpl = TopicPartitionList::new();
                    let mut n = 0u64;
                    for (i, (topic, p)) in all_partitions.iter().enumerate() {
                        if i as u32 % w.consumers.per_group == m {
                            let off = start_offsets
                                .get(&(topic.clone(), *p))
                                .map(|o| Offset::Offset(*o))
                                .unwrap_or(Offset::End);
                            tpl.add_partition_offset(topic, *p, off)
                                .map_err(|e| PerfError::kafka("assign", e))?;
                            n += 1;
                        }
                    }
                    consumer
                        .assign(&tpl)
                        .map_err(|e| PerfError::kafka("assign", e))?;
                    assigned.store(n, Ordering::Relaxed);
                }
            }
            let stats = Arc::new(Mutex::new(ConsumerStats {
                received: vec![SeqSet::new(); producers as usize],
                ..ConsumerStats::default()
            }));
            consumer_stats.push((g, stats.clone()));
            pending_consumers.push((g, m, consumer, stats, unique.clone()));
        }
        group_assigned.push(assigned_list);
    }

    // Group mode: the rebalance callback runs inside poll, so poll while waiting for ownership.
    if w.consumers.mode == ConsumerMode::Group && !pending_consumers.is_empty() {
        progress(opts, "waiting for consumer groups to own every partition");
        let deadline = Instant::now() + GROUP_READY_TIMEOUT;
        let total = all_partitions.len() as u64;
        loop {
            for (_, _, c, _, _) in &pending_consumers {
                // Nothing is produced yet, so no message can be lost to this poll.
                if let Some(Ok(m)) = c.poll(Duration::from_millis(20)) {
                    drop(m);
                }
            }
            let all_owned = group_assigned.iter().all(|members| {
                members
                    .iter()
                    .map(|a| a.load(Ordering::Relaxed))
                    .sum::<u64>()
                    >= total
            });
            if all_owned {
                break;
            }
            if Instant::now() >= deadline {
                return Err(PerfError::Timeout {
                    what: "consumer groups to be assigned every partition".into(),
                    waited_ms: GROUP_READY_TIMEOUT.as_millis() as u64,
                });
            }
        }
    }

    // Producers: create clients now so connection set-up is not inside the warm-up.
    let acked_total = Arc::new(AtomicU64::new(0));
    let sent_total = Arc::new(AtomicU64::new(0));
    let phases_cell = Arc::new(OnceLock::new());
    let mut producer_stats = Vec::new();
    let mut producer_clients = Vec::new();
    for i in 0..producers {
        let stats = Arc::new(Mutex::new(ProducerStats::default()));
        let t = ProducerThread {
            index: i,
            workload: w.clone(),
            bootstrap: opts.bootstrap.clone(),
            clock,
            phases: phases_cell.clone(),
            run_id,
            stats: stats.clone(),
            acked_total: acked_total.clone(),
            sent_total: sent_total.clone(),
            stop: stop.clone(),
        };
        let client = t.create()?;
        producer_stats.push(stats);
        producer_clients.push((t, client));
    }
    // Phase boundaries start a little in the future so every thread is waiting when they begin.
    const LEAD_NS: u64 = 200_000_000;
    let start_ns = clock.now_ns() + LEAD_NS;
    let measure_start_ns = start_ns + w.warmup_s * 1_000_000_000;
    let phases = Phases {
        start_ns,
        measure_start_ns,
        end_ns: measure_start_ns + w.duration_s * 1_000_000_000,
    };
    let _ = phases_cell.set(phases);

    for (g, m, consumer, stats, unique) in pending_consumers {
        let t = ConsumerThread {
            run_id,
            producers,
            clock,
            phases,
            stats,
            unique,
            stop: stop.clone(),
            delay_s: w.consumers.delay_s,
        };
        consumer_handles.push(
            std::thread::Builder::new()
                .name(format!("perf-c{g}-{m}"))
                .spawn(move || t.run(consumer))
                .map_err(|e| PerfError::Io {
                    op: "spawn consumer thread",
                    path: Default::default(),
                    offset: 0,
                    source: e,
                })?,
        );
    }
    let mut producer_handles = Vec::new();
    for (t, client) in producer_clients {
        let i = t.index;
        producer_handles.push(
            std::thread::Builder::new()
                .name(format!("perf-p{i}"))
                .spawn(move || t.run(client, phases))
                .map_err(|e| PerfError::Io {
                    op: "spawn producer thread",
                    path: Default::default(),
                    offset: 0,
                    source: e,
                })?,
        );
    }

    // Sampling loop: wakes for each sample, for the start of the measured phase, and at the end.
    let mut timeline = Vec::new();
    let mut so_far = SoFar {
        histo: LatencyHisto::new(),
        phase: Phase::Warmup,
    };
    let mut measure_taken = false;
    let mut load_start = 0.0;
    let mut broker_start = None;
    let mut broker_sched_start = None;
    let mut broker_rss_max = 0u64;
    let mut self_start = None;
    let interval_ns = SAMPLE_INTERVAL.as_nanos() as u64;
    let mut next_sample = phases.start_ns + interval_ns;
    let mut last_sample = phases.start_ns;
    sleep_until(&clock, phases.start_ns, &stop);
    loop {
        let now = clock.now_ns();
        if !measure_taken && now >= phases.measure_start_ns {
            measure_taken = true;
            load_start = load_avg_1m();
            broker_start = opts.broker_pid.and_then(proc_sample);
            broker_sched_start = opts.broker_pid.and_then(sched_sample);
            self_start = Some(self_usage());
        }
        if now >= phases.end_ns {
            break;
        }
        if now >= next_sample {
            let point = sample(
                &producer_stats,
                &consumer_stats,
                now,
                last_sample,
                &phases,
                &mut so_far,
                sent_total
                    .load(Ordering::Relaxed)
                    .saturating_sub(acked_total.load(Ordering::Relaxed)),
            );
            if let Some(b) = opts.broker_pid.and_then(proc_sample) {
                if measure_taken {
                    broker_rss_max = broker_rss_max.max(b.rss_bytes);
                }
            }
            if opts.progress {
                eprintln!(
                    "[{:>6.1}s {:<7}] {:>10.0} msg/s {:>8.2} MB/s  p99 {:>8} ms (phase so far {:>8})  e2e p99 {:>8} ms  consumed {:>10.0} msg/s  unacked {}",
                    point.t_s,
                    point.phase,
                    point.msgs_per_s,
                    point.mb_per_s,
                    ms_or_dash(point.p99_ms, point.msgs_per_s),
                    ms_or_dash(
                        so_far.histo.percentile_ms(99.0),
                        so_far.histo.count() as f64
                    ),
                    ms_or_dash(point.e2e_p99_ms, point.consumed_msgs_per_s),
                    point.consumed_msgs_per_s,
                    point.outstanding
                );
            }
            timeline.push(point);
            last_sample = now;
            next_sample += interval_ns;
            continue;
        }
        let mut target = next_sample.min(phases.end_ns);
        if !measure_taken {
            target = target.min(phases.measure_start_ns);
        }
        std::thread::sleep(Duration::from_nanos(target.saturating_sub(now).max(1)));
    }
    // Last timeline point: the tail of the final interval, up to the end of the measured phase
    // (acknowledgements that arrive during the flush count in the phase totals, not here).
    let now = clock.now_ns();
    if now > last_sample + interval_ns / 2 {
        timeline.push(sample(
            &producer_stats,
            &consumer_stats,
            now,
            last_sample,
            &phases,
            &mut so_far,
            sent_total
                .load(Ordering::Relaxed)
                .saturating_sub(acked_total.load(Ordering::Relaxed)),
        ));
    }
    let load_end = load_avg_1m();
    let broker_end = opts.broker_pid.and_then(proc_sample);
    let broker_sched_end = opts.broker_pid.and_then(sched_sample);
    if let Some(b) = broker_end {
        broker_rss_max = broker_rss_max.max(b.rss_bytes);
    }
    let self_end = Some(self_usage());

    // Producers stop on their own at end_ns and flush.
    progress(opts, "flushing producers");
    let mut ends = Vec::new();
    for h in producer_handles {
        ends.push(h.join().unwrap_or_default());
    }
    // Drain: wait until every group has every acknowledged message, or until no progress.
    progress(opts, "draining consumers");
    let acked = acked_total.load(Ordering::Relaxed);
    let drain_start = Instant::now();
    let mut last_progress = Instant::now();
    let mut last_min = 0;
    while !group_unique.is_empty() {
        let min = group_unique
            .iter()
            .map(|u| u.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        if min >= acked {
            break;
        }
        if min > last_min {
            last_min = min;
            last_progress = Instant::now();
        }
        if last_progress.elapsed() >= DRAIN_IDLE_TIMEOUT || drain_start.elapsed() >= DRAIN_MAX {
            progress(
                opts,
                &format!("drain stopped: {min} of {acked} acknowledged messages received"),
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for h in consumer_handles {
        let _ = h.join();
    }
    let mut result = assemble(
        &w,
        opts,
        run_id,
        started_unix_ms,
        machine,
        &phases,
        &producer_stats,
        &consumer_stats,
        &ends,
        timeline,
    )?;
    result.load_avg_1m = [load_start, load_end];
    if let (Some(pid), Some(a), Some(b)) = (opts.broker_pid, broker_start, broker_end) {
        let secs = w.duration_s as f64;
        let sched = broker_sched_start.zip(broker_sched_end).map(|(a, b)| {
            (
                b.wait_ns.saturating_sub(a.wait_ns) as f64 / 1e9,
                b.slices.saturating_sub(a.slices),
            )
        });
        result.broker = Some(BrokerUsage {
            pid,
            cpu_s: b.cpu_s - a.cpu_s,
            cpu_cores: (b.cpu_s - a.cpu_s) / secs,
            rss_max_bytes: broker_rss_max,
            rss_end_bytes: b.rss_bytes,
            runq_wait_s: sched.map(|s| s.0),
            runq_slices: sched.map(|s| s.1),
        });
    }
    if let (Some(a), Some(b)) = (self_start, self_end) {
        let secs = w.duration_s as f64;
        result.harness = HarnessUsage {
            user_s: b.user_s - a.user_s,
            sys_s: b.sys_s - a.sys_s,
            cpu_cores: (b.user_s - a.user_s + b.sys_s - a.sys_s) / secs,
            max_rss_bytes: b.max_rss_bytes,
        };
    }
    if let Some(best) = opts.disk_best_write_mb_per_s.filter(|b| *b > 0.0) {
        let mb = result.measure().map(|m| m.mb_per_s).unwrap_or(0.0);
        result.disk = Some(DiskReference {
            best_write_mb_per_s: best,
            broker_pct_of_disk: 100.0 * mb / best,
        });
    }
    Ok(result)
}

/// A latency for the progress line, or "-" when nothing completed in the interval (a stall shows
/// as "-" and a growing unacked count, not as a reassuring 0 ms).
fn ms_or_dash(ms: f64, rate: f64) -> String {
    if rate > 0.0 {
        format!("{ms:.2}")
    } else {
        "-".to_string()
    }
}

fn progress(opts: &RunOptions, msg: &str) {
    if opts.progress {
        eprintln!("chronik-perf: {msg}");
    }
}

/// Produce latencies of the current phase so far (for the progress line).
struct SoFar {
    histo: LatencyHisto,
    phase: Phase,
}

/// Takes every thread's interval counters and turns them into one timeline point.
fn sample(
    producers: &[Arc<Mutex<ProducerStats>>],
    consumers: &[(u32, Arc<Mutex<ConsumerStats>>)],
    now: u64,
    last: u64,
    phases: &Phases,
    so_far: &mut SoFar,
    outstanding: u64,
) -> TimelinePoint {
    let mut produce = LatencyHisto::new();
    let (mut msgs, mut bytes) = (0u64, 0u64);
    for p in producers {
        let mut s = lock(p);
        let _ = produce.merge(&s.interval.histo);
        msgs += s.interval.msgs;
        bytes += s.interval.bytes;
        s.interval.histo.reset();
        s.interval.msgs = 0;
        s.interval.bytes = 0;
    }
    let mut e2e = LatencyHisto::new();
    let mut consumed = 0u64;
    for (_, c) in consumers {
        let mut s = lock(c);
        let _ = e2e.merge(&s.interval.histo);
        consumed += s.interval.msgs;
        s.interval.histo.reset();
        s.interval.msgs = 0;
        s.interval.bytes = 0;
    }
    // The interval belongs to the phase its midpoint falls in (samples run a little late).
    let phase = phases
        .of(last + now.saturating_sub(last) / 2)
        .unwrap_or(Phase::Measure);
    if phase != so_far.phase {
        so_far.histo.reset();
        so_far.phase = phase;
    }
    let _ = so_far.histo.merge(&produce);
    let secs = (now.saturating_sub(last) as f64 / 1e9).max(1e-9);
    TimelinePoint {
        t_s: now.saturating_sub(phases.start_ns) as f64 / 1e9,
        phase: match phase {
            Phase::Warmup => PHASE_WARMUP.into(),
            Phase::Measure => PHASE_MEASURE.into(),
        },
        msgs_per_s: msgs as f64 / secs,
        mb_per_s: bytes as f64 / 1e6 / secs,
        consumed_msgs_per_s: consumed as f64 / secs,
        p50_ms: produce.percentile_ms(50.0),
        p99_ms: produce.percentile_ms(99.0),
        p999_ms: produce.percentile_ms(99.9),
        e2e_p99_ms: e2e.percentile_ms(99.0),
        outstanding,
    }
}

/// Merges per-thread results into the final document.
#[allow(clippy::too_many_arguments)]
fn assemble(
    w: &Workload,
    opts: &RunOptions,
    run_id: u32,
    started_unix_ms: u64,
    machine: Machine,
    phases: &Phases,
    producer_stats: &[Arc<Mutex<ProducerStats>>],
    consumer_stats: &[(u32, Arc<Mutex<ConsumerStats>>)],
    ends: &[ProducerEnd],
    timeline: Vec<TimelinePoint>,
) -> Result<RunResult> {
    let mut delivery = Delivery::default();
    let mut acc = [PhaseAcc::default(), PhaseAcc::default()];
    let mut acked_sets = Vec::new();
    for p in producer_stats {
        let s = lock(p);
        acc[0].histo.merge(&s.warmup.histo)?;
        acc[0].msgs += s.warmup.msgs;
        acc[0].bytes += s.warmup.bytes;
        acc[0].errors += s.warmup.errors;
        acc[1].histo.merge(&s.measure.histo)?;
        acc[1].msgs += s.measure.msgs;
        acc[1].bytes += s.measure.bytes;
        acc[1].errors += s.measure.errors;
        delivery.acked += s.acked.len();
        delivery.failed += s.failed;
        delivery.tracking_truncated |= s.truncated;
        for (k, n) in &s.error_kinds {
            *delivery.error_kinds.entry(k.clone()).or_insert(0) += n;
        }
        acked_sets.push(s.acked.clone());
    }
    let mut sent = [0u64; 2];
    for e in ends {
        sent[0] += e.sent_warmup;
        sent[1] += e.sent_measure;
        acc[0].errors += e.send_errors_warmup;
        acc[1].errors += e.send_errors_measure;
        for (k, n) in &e.send_errors {
            *delivery.error_kinds.entry(k.clone()).or_insert(0) += n;
        }
    }
    delivery.sent = sent[0] + sent[1];

    // Per group: union of its members' received sets.
    let mut e2e = [LatencyHisto::new(), LatencyHisto::new()];
    let mut consumed = [0u64; 2];
    let mut groups: BTreeMap<u32, (GroupDelivery, Vec<SeqSet>)> = BTreeMap::new();
    for (g, c) in consumer_stats {
        let s = lock(c);
        e2e[0].merge(&s.warmup.histo)?;
        e2e[1].merge(&s.measure.histo)?;
        consumed[0] += s.warmup.msgs;
        consumed[1] += s.measure.msgs;
        let entry = groups.entry(*g).or_insert_with(|| {
            (
                GroupDelivery {
                    group: *g,
                    ..GroupDelivery::default()
                },
                vec![SeqSet::new(); producer_stats.len()],
            )
        });
        entry.0.received += s.received_total;
        entry.0.duplicates += s.duplicates;
        entry.0.foreign += s.foreign;
        entry.0.errors += s.errors;
        for (k, n) in &s.error_kinds {
            *delivery.error_kinds.entry(k.clone()).or_insert(0) += n;
        }
        for (i, set) in s.received.iter().enumerate() {
            if let Some(union) = entry.1.get_mut(i) {
                // The same message in two members of one group is a duplicate too.
                entry.0.duplicates += union.union_with(set);
            }
        }
    }
    for (_, (mut gd, sets)) in groups {
        for (i, set) in sets.iter().enumerate() {
            gd.unique += set.len();
            if let Some(acked) = acked_sets.get(i) {
                gd.missing += acked.count_not_in(set);
                gd.unacked_received += set.count_not_in(acked);
            }
        }
        delivery.groups.push(gd);
    }

    let durations = [
        (phases.measure_start_ns - phases.start_ns) as f64 / 1e9,
        (phases.end_ns - phases.measure_start_ns) as f64 / 1e9,
    ];
    let mut map = BTreeMap::new();
    for (i, name) in [PHASE_WARMUP, PHASE_MEASURE].into_iter().enumerate() {
        let d = durations[i];
        let per_s = |x: u64| if d > 0.0 { x as f64 / d } else { 0.0 };
        map.insert(
            name.to_string(),
            PhaseResult {
                duration_s: d,
                target_msgs_per_s: w.producers.rate_msgs_per_s,
                sent: sent[i],
                acked: acc[i].msgs,
                acked_bytes: acc[i].bytes,
                msgs_per_s: per_s(acc[i].msgs),
                mb_per_s: per_s(acc[i].bytes) / 1e6,
                consumed_msgs_per_s: per_s(consumed[i]),
                latency_ms: acc[i].histo.summary(),
                e2e_latency_ms: e2e[i].summary(),
                errors: acc[i].errors,
            },
        );
    }
    Ok(RunResult {
        tool: "chronik-perf".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_unix_ms,
        bootstrap: opts.bootstrap.clone(),
        run_id,
        workload: w.clone(),
        machine,
        phases: map,
        delivery,
        broker: None,
        harness: HarnessUsage::default(),
        timeline,
        cdf: Cdf {
            latency_ms: acc[1].histo.cdf(),
            e2e_latency_ms: e2e[1].cdf(),
        },
        disk: None,
        load_avg_1m: [0.0; 2],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Delivery accounting with faults: a lost message, a duplicate inside one consumer, the same
    /// message in two members of a group, a message received without a delivery report.
    #[test]
    fn assemble_counts_missing_duplicates_and_unacked() {
        let w = Workload::from_toml_str(
            "name = \"x\"\n[[topics]]\nname = \"t\"\npartitions = 2\n[producers]\ncount = 2\nmessage_size = 100\n[consumers]\ngroups = 2\nper_group = 2",
        )
        .unwrap();
        let phases = Phases {
            start_ns: 0,
            measure_start_ns: 1_000_000_000,
            end_ns: 3_000_000_000,
        };
        // Producer 0 acked 0..10, producer 1 acked 0..5 (seq 5 failed).
        let producer = |n: u64, failed: u64| {
            let mut s = ProducerStats::default();
            for seq in 0..n {
                s.acked.insert(seq);
                s.measure.msgs += 1;
                s.measure.bytes += 100;
                s.measure.histo.record_ns(2_000_000);
            }
            s.failed = failed;
            Arc::new(Mutex::new(s))
        };
        let producers = vec![producer(10, 0), producer(5, 1)];
        let consumer = |sets: [&[u64]; 2]| {
            let mut s = ConsumerStats {
                received: vec![SeqSet::new(), SeqSet::new()],
                ..ConsumerStats::default()
            };
            for (p, seqs) in sets.iter().enumerate() {
                for seq in *seqs {
                    s.received_total += 1;
                    if s.received[p].insert(*seq) == Insert::Duplicate {
                        s.duplicates += 1;
                    }
                    s.measure.histo.record_ns(5_000_000);
                    s.measure.msgs += 1;
                }
            }
            Arc::new(Mutex::new(s))
        };
        let consumers = vec![
            // Group 0: everything, split over two members, plus seq 5 of producer 1 (unacked).
            (0, consumer([&[0, 1, 2, 3, 4], &[0, 1, 2]])),
            (0, consumer([&[5, 6, 7, 8, 9], &[3, 4, 5]])),
            // Group 1: producer 0 seq 9 lost; seq 2 twice in one member; seq 4 in both members.
            (1, consumer([&[0, 1, 2, 2, 3, 4], &[0, 1, 2, 3, 4]])),
            (1, consumer([&[4, 5, 6, 7, 8], &[]])),
        ];
        let ends = vec![
            ProducerEnd {
                sent_measure: 10,
                ..ProducerEnd::default()
            },
            ProducerEnd {
                sent_measure: 6,
                ..ProducerEnd::default()
            },
        ];
        let opts = RunOptions {
            bootstrap: "h:1".into(),
            broker_pid: None,
            progress: false,
            disk_best_write_mb_per_s: None,
        };
        let r = assemble(
            &w,
            &opts,
            1,
            0,
            Machine::probe(),
            &phases,
            &producers,
            &consumers,
            &ends,
            Vec::new(),
        )
        .unwrap();
        let d = &r.delivery;
        assert_eq!((d.sent, d.acked, d.failed), (16, 15, 1));
        let g0 = &d.groups[0];
        assert_eq!(
            (
                g0.received,
                g0.unique,
                g0.duplicates,
                g0.missing,
                g0.unacked_received
            ),
            (16, 16, 0, 0, 1)
        );
        let g1 = &d.groups[1];
        assert_eq!(
            (
                g1.received,
                g1.unique,
                g1.duplicates,
                g1.missing,
                g1.unacked_received
            ),
            (16, 14, 2, 1, 0)
        );
        let m = r.measure().unwrap();
        assert_eq!(m.acked, 15);
        assert!((m.msgs_per_s - 7.5).abs() < 1e-9, "15 acked over 2 s");
        assert_eq!(m.latency_ms.count, 15);
        assert_eq!(m.e2e_latency_ms.count, 32);
        assert!(
            (m.consumed_msgs_per_s - 16.0).abs() < 1e-9,
            "32 received over 2 s"
        );
    }

    #[test]
    fn phases_classify_by_intended_time() {
        let p = Phases {
            start_ns: 100,
            measure_start_ns: 200,
            end_ns: 300,
        };
        assert_eq!(p.of(99), None);
        assert_eq!(p.of(100), Some(Phase::Warmup));
        assert_eq!(p.of(199), Some(Phase::Warmup));
        assert_eq!(p.of(200), Some(Phase::Measure));
        assert_eq!(p.of(299), Some(Phase::Measure));
        assert_eq!(p.of(300), None);
    }

    #[test]
    fn error_kinds_are_bounded() {
        let mut kinds = BTreeMap::new();
        for i in 0..100 {
            count_error(&mut kinds, format!("e{i}"));
        }
        assert!(kinds.len() <= MAX_ERROR_KINDS + 1);
        assert_eq!(kinds.values().sum::<u64>(), 100);
    }

    #[test]
    fn client_configs_fit_large_messages() {
        let w = Workload::from_toml_str(
            "name = \"x\"\n[[topics]]\nname = \"t\"\npartitions = 1\n[producers]\ncount = 1\nmessage_size = 4194304\nconfig = { \"linger.ms\" = \"0\" }",
        )
        .unwrap();
        let p = producer_config(&w, "h:1", 0);
        let max: u64 = p.get("message.max.bytes").unwrap().parse().unwrap();
        assert!(max > 4_194_304);
        assert_eq!(p.get("linger.ms"), Some("0"), "workload overrides win");
        let c = consumer_config(&w, "h:1", "g", 0);
        let per: u64 = c.get("max.partition.fetch.bytes").unwrap().parse().unwrap();
        assert!(per > 4_194_304);
    }
}
