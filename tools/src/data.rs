//! `produce` and `consume`: records in and out through the partition leaders.
//!
//! Produce reads stdin line by line into uncompressed v2 batches (`chronik_protocol::batch::
//! encode_batch`), each bounded by [`MAX_BATCH_RECORDS`] and [`MAX_BATCH_BYTES`], and sends each
//! with acks=all to the leader of its partition. Keyed records go where Kafka's Java client would
//! put them (murmur2 of the key), so a key typed here lands next to the same key written by an
//! application.
//!
//! Consume is a plain Fetch loop without a fetch session (session id 0, epoch -1: every request is
//! a full fetch), one request per leader per round. It prints as it goes, so it never holds more
//! than one fetch response in memory.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chronik_protocol::batch::encode_batch;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, FetchRequest, ProduceRequest};
use serde::Serialize;

use crate::client::{
    check_opt, topic_name, Client, PartitionInfo, EARLIEST_TIMESTAMP, FETCH_MAX_BYTES,
    LATEST_TIMESTAMP,
};
use crate::error::{check, CtlError, Result};
use crate::output::{Format, Render};
use crate::records::decode_fetched;

/// Most records per produced batch.
pub const MAX_BATCH_RECORDS: usize = 1000;
/// Most value bytes per produced batch (well under Kafka's 1 MiB default `max.message.bytes`).
pub const MAX_BATCH_BYTES: usize = 512 * 1024;
/// Longest stdin line accepted as one record.
pub const MAX_LINE_BYTES: usize = MAX_BATCH_BYTES;
/// Produce attempts per batch when the leader moved (NOT_LEADER_OR_FOLLOWER and friends).
pub const MAX_PRODUCE_ATTEMPTS: usize = 3;
/// Most time the broker may wait for acks=all, in ms (less when the socket timeout is shorter).
pub const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// Most bytes per partition per fetch.
pub const PARTITION_MAX_BYTES: i32 = 1024 * 1024;
/// Most long-poll wait per fetch, in ms (less when the socket timeout is shorter).
pub const FETCH_MAX_WAIT_MS: i32 = 500;

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), used by its default partitioner.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes(c.try_into().expect("4 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for `key` among `n`.
pub fn partition_for_key(key: &[u8], n: usize) -> i32 {
    assert!(n > 0, "a topic has at least one partition");
    ((murmur2(key) & 0x7fff_ffff) as usize % n) as i32
}

/// One acknowledged batch.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ProducedBatch {
    pub partition: i32,
    pub base_offset: i64,
    pub records: usize,
}

#[derive(Debug, Serialize)]
pub struct ProduceReport {
    pub topic: String,
    pub records: usize,
    pub batches: Vec<ProducedBatch>,
}

impl Render for ProduceReport {
    fn render_table(&self) -> String {
        let mut s = String::new();
        for b in &self.batches {
            s.push_str(&format!(
                "{}-{}: {} record(s) at offsets {}..={}\n",
                self.topic,
                b.partition,
                b.records,
                b.base_offset,
                b.base_offset + b.records as i64 - 1
            ));
        }
        s.push_str(&format!(
            "produced {} record(s) to '{}'\n",
            self.records, self.topic
        ));
        s
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Reads one line (without its `\n` or `\r\n`) into `buf`; `Ok(false)` at end of input.
fn read_line(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> Result<bool> {
    buf.clear();
    // `take` bounds the read, so an endless line cannot exhaust memory.
    let mut bounded: &mut dyn BufRead = input;
    let n = std::io::Read::take(&mut bounded, MAX_LINE_BYTES as u64 + 2)
        .read_until(b'\n', buf)
        .map_err(|err| CtlError::Io {
            op: "read",
            addr: "stdin".into(),
            err,
        })?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    if buf.len() > MAX_LINE_BYTES {
        return Err(CtlError::Invalid(format!(
            "a line of stdin is longer than {MAX_LINE_BYTES} bytes"
        )));
    }
    Ok(true)
}

/// Produces every line of `input` to `topic`.
pub fn produce(
    client: &mut Client,
    topic: &str,
    key: Option<&str>,
    partition: Option<i32>,
    input: &mut dyn BufRead,
) -> Result<ProduceReport> {
    let mut parts = client.partitions(topic)?;
    if let Some(p) = partition {
        if !parts.iter().any(|x| x.partition == p) {
            return Err(CtlError::NotFound(format!("partition {topic}-{p}")));
        }
    }
    let key_bytes = key.map(str::as_bytes);
    let mut report = ProduceReport {
        topic: topic.to_string(),
        records: 0,
        batches: Vec::new(),
    };
    let mut round_robin = 0usize;
    let mut values: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0usize;
    let mut line = Vec::new();
    loop {
        let more = read_line(input, &mut line)?;
        if more {
            bytes += line.len();
            values.push(std::mem::take(&mut line));
        }
        let full = values.len() >= MAX_BATCH_RECORDS || bytes >= MAX_BATCH_BYTES;
        if (full || !more) && !values.is_empty() {
            let target = match (partition, key_bytes) {
                (Some(p), _) => p,
                (None, Some(k)) => partition_for_key(k, parts.len()),
                (None, None) => {
                    round_robin += 1;
                    parts[(round_robin - 1) % parts.len()].partition
                }
            };
            let batch = send_batch(client, topic, &mut parts, target, key_bytes, &values)?;
            report.records += batch.records;
            report.batches.push(batch);
            values.clear();
            bytes = 0;
        }
        if !more {
            break;
        }
    }
    Ok(report)
}

/// Whether a produce error means "ask Metadata again and retry".
fn leader_moved(code: i16) -> bool {
    // NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, NOT_ENOUGH_REPLICAS, REQUEST_TIMED_OUT.
    matches!(code, 6 | 5 | 19 | 7)
}

fn send_batch(
    client: &mut Client,
    topic: &str,
    parts: &mut Vec<PartitionInfo>,
    partition: i32,
    key: Option<&[u8]>,
    values: &[Vec<u8>],
) -> Result<ProducedBatch> {
    let kvs: Vec<_> = values.iter().map(|v| (key, Some(v.as_slice()))).collect();
    let records = Bytes::from(encode_batch(&kvs, now_ms()));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let leader = parts
            .iter()
            .find(|p| p.partition == partition)
            .map(|p| p.leader)
            .ok_or_else(|| CtlError::NotFound(format!("partition {topic}-{partition}")))?;
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(client.broker_wait_ms(PRODUCE_TIMEOUT_MS))
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records.clone()))])]);
        let (resp, _) = client.broker(leader)?.send(&req)?;
        let p = resp
            .responses
            .iter()
            .filter(|t| t.name.as_str() == topic)
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == partition)
            .ok_or_else(|| {
                CtlError::Malformed(format!("Produce answer lacks {topic}-{partition}"))
            })?;
        if leader_moved(p.error_code) && attempt < MAX_PRODUCE_ATTEMPTS {
            std::thread::sleep(Duration::from_millis(200 * attempt as u64));
            *parts = client.partitions(topic)?;
            continue;
        }
        check_opt(p.error_code, p.error_message.as_ref(), || {
            format!("produce to {topic}-{partition}")
        })?;
        return Ok(ProducedBatch {
            partition,
            base_offset: p.base_offset,
            records: values.len(),
        });
    }
}

/// Options of one `consume` run.
#[derive(Clone, Debug)]
pub struct ConsumeOptions {
    pub from_beginning: bool,
    pub max: Option<u64>,
    pub partition: Option<i32>,
    pub idle_timeout: Option<Duration>,
    pub format: Format,
}

/// One printed record (the JSON line form).
#[derive(Debug, Serialize)]
struct RecordLine<'a> {
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Option<std::borrow::Cow<'a, str>>,
    value: Option<std::borrow::Cow<'a, str>>,
}

/// Formats one record for the terminal: `partition offset key value`, tab-separated, nulls as
/// `(null)`; bytes that are not UTF-8 are shown with U+FFFD replacements.
pub fn format_record(format: Format, partition: i32, r: &crate::records::Record) -> String {
    fn text(b: &Option<Vec<u8>>) -> Option<std::borrow::Cow<'_, str>> {
        b.as_deref().map(String::from_utf8_lossy)
    }
    match format {
        Format::Table => format!(
            "{partition}\t{}\t{}\t{}\n",
            r.offset,
            text(&r.key).as_deref().unwrap_or("(null)"),
            text(&r.value).as_deref().unwrap_or("(null)")
        ),
        Format::Json => {
            let line = RecordLine {
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: text(&r.key),
                value: text(&r.value),
            };
            let mut s = serde_json::to_string(&line).expect("strings and numbers");
            s.push('\n');
            s
        }
    }
}

/// Fetches and prints records of `topic` to `out` until `max` records were printed or nothing
/// arrived for `idle_timeout`; without either it runs until interrupted (that is what an operator
/// tailing a topic wants, so this loop alone has no round bound). Returns the records printed.
pub fn consume(
    client: &mut Client,
    topic: &str,
    opts: &ConsumeOptions,
    out: &mut dyn Write,
) -> Result<u64> {
    let mut parts = client.partitions(topic)?;
    if let Some(p) = opts.partition {
        parts.retain(|x| x.partition == p);
        if parts.is_empty() {
            return Err(CtlError::NotFound(format!("partition {topic}-{p}")));
        }
    }
    let start_ts = if opts.from_beginning {
        EARLIEST_TIMESTAMP
    } else {
        LATEST_TIMESTAMP
    };
    let mut next: BTreeMap<i32, i64> = client.list_offsets(topic, &parts, start_ts)?;
    let mut printed = 0u64;
    let mut last_progress = Instant::now();
    let write_err = |err| CtlError::Io {
        op: "write",
        addr: "stdout".into(),
        err,
    };
    if opts.max == Some(0) {
        return Ok(0);
    }
    let max_wait_ms = client.broker_wait_ms(FETCH_MAX_WAIT_MS);
    loop {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in &parts {
            by_leader.entry(p.leader).or_default().push(p.partition);
        }
        let mut refresh = false;
        for (leader, ids) in by_leader {
            if leader < 0 {
                refresh = true;
                continue;
            }
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(max_wait_ms)
                .with_min_bytes(1)
                .with_max_bytes(FETCH_MAX_BYTES)
                .with_isolation_level(0)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(
                        ids.iter()
                            .map(|i| {
                                FetchPartition::default()
                                    .with_partition(*i)
                                    .with_current_leader_epoch(-1)
                                    .with_fetch_offset(next[i])
                                    .with_log_start_offset(-1)
                                    .with_partition_max_bytes(PARTITION_MAX_BYTES)
                            })
                            .collect(),
                    )]);
            let (resp, _) = client.broker(leader)?.send(&req)?;
            check(resp.error_code, || format!("Fetch from broker {leader}"))?;
            for t in resp.responses.iter().filter(|t| t.topic.as_str() == topic) {
                for pd in &t.partitions {
                    let i = pd.partition_index;
                    let Some(&offset) = next.get(&i) else {
                        continue;
                    };
                    match pd.error_code {
                        0 => {}
                        1 => {
                            // OFFSET_OUT_OF_RANGE: retention moved the log start past us.
                            let lo = client.list_offsets(
                                topic,
                                &parts
                                    .iter()
                                    .filter(|p| p.partition == i)
                                    .cloned()
                                    .collect::<Vec<_>>(),
                                EARLIEST_TIMESTAMP,
                            )?;
                            let to = lo.get(&i).copied().unwrap_or(offset);
                            eprintln!("{topic}-{i}: offset {offset} out of range, moving to {to}");
                            next.insert(i, to);
                            continue;
                        }
                        c if leader_moved(c) => {
                            refresh = true;
                            continue;
                        }
                        c => check(c, || format!("fetch {topic}-{i} at {offset}"))?,
                    }
                    let Some(records) = pd.records.as_ref() else {
                        continue;
                    };
                    let d = decode_fetched(records)?;
                    for (lo, hi, codec) in &d.skipped_compressed {
                        eprintln!(
                            "{topic}-{i}: skipped offsets {lo}..={hi}: compressed batch (codec {codec}) cannot be decoded by chronik-ctl"
                        );
                    }
                    for r in d.records.iter().filter(|r| r.offset >= offset) {
                        out.write_all(format_record(opts.format, i, r).as_bytes())
                            .map_err(write_err)?;
                        printed += 1;
                        last_progress = Instant::now();
                        if opts.max.is_some_and(|m| printed >= m) {
                            out.flush().map_err(write_err)?;
                            return Ok(printed);
                        }
                    }
                    match d.next_offset {
                        Some(n) if n > offset => {
                            next.insert(i, n);
                        }
                        None if !records.is_empty() => {
                            return Err(CtlError::Malformed(format!(
                                "{topic}-{i}: a batch at offset {offset} is larger than {PARTITION_MAX_BYTES} bytes"
                            )));
                        }
                        _ => {}
                    }
                }
            }
        }
        out.flush().map_err(write_err)?;
        if refresh {
            std::thread::sleep(Duration::from_millis(200));
            let fresh = client.partitions(topic)?;
            parts = fresh
                .into_iter()
                .filter(|p| next.contains_key(&p.partition))
                .collect();
        }
        if opts
            .idle_timeout
            .is_some_and(|t| last_progress.elapsed() >= t)
        {
            return Ok(printed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Record;

    #[test]
    fn murmur2_matches_kafka_java_client() {
        // Vectors from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn key_partitioning_is_stable_and_in_range() {
        for n in 1..20 {
            let p = partition_for_key(b"user-42", n);
            assert!((0..n as i32).contains(&p));
            assert_eq!(p, partition_for_key(b"user-42", n));
        }
    }

    #[test]
    fn lines_are_split_without_terminators_and_bounded() {
        let mut input: &[u8] = b"a\r\nb\n\nlast";
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while read_line(&mut input, &mut buf).unwrap() {
            got.push(String::from_utf8(buf.clone()).unwrap());
        }
        assert_eq!(got, vec!["a", "b", "", "last"]);
        let long = vec![b'x'; MAX_LINE_BYTES + 1];
        let mut input: &[u8] = &long;
        assert!(read_line(&mut input, &mut buf).is_err());
        let mut exact = vec![b'x'; MAX_LINE_BYTES];
        exact.push(b'\n');
        let mut input: &[u8] = &exact;
        assert!(read_line(&mut input, &mut buf).unwrap());
        assert_eq!(buf.len(), MAX_LINE_BYTES);
    }

    #[test]
    fn records_print_as_tsv_or_json_lines() {
        let r = Record {
            offset: 7,
            timestamp: 1000,
            key: None,
            value: Some(b"hello".to_vec()),
            headers: vec![],
        };
        assert_eq!(format_record(Format::Table, 2, &r), "2\t7\t(null)\thello\n");
        let j: serde_json::Value =
            serde_json::from_str(&format_record(Format::Json, 2, &r)).unwrap();
        assert_eq!(j["offset"], 7);
        assert_eq!(j["key"], serde_json::Value::Null);
        assert_eq!(j["value"], "hello");
    }

    #[test]
    fn produce_report_table() {
        let r = ProduceReport {
            topic: "t".into(),
            records: 3,
            batches: vec![ProducedBatch {
                partition: 1,
                base_offset: 10,
                records: 3,
            }],
        };
        assert_eq!(
            r.render_table(),
            "t-1: 3 record(s) at offsets 10..=12\nproduced 3 record(s) to 't'\n"
        );
    }
}
