//! Planner tests: seeded random key/value streams compacted by the real pass (`clean`) over an
//! in-memory log, checked against a simple model (key → last record).

use std::cell::RefCell;
use std::collections::BTreeMap;

use bytes::Bytes;
use chronik_protocol::batch::{self, put_varint, CRC_START, HEADER_BYTES, LOG_OVERHEAD};
use chronik_protocol::codec::{self, Compression};
use chronik_protocol::records;
use chronik_storage::{EntryKind, EntryMeta, KafkaMeta};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// A record as found in the log: (offset, key, value).
type Found = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// One record of a generated stream.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    header: Option<Vec<u8>>,
}

/// Builds a stored batch at `base` (record i at offset base + i).
fn build(codec: Compression, base: i64, ts: i64, recs: &[Rec], attrs_extra: i16) -> Vec<u8> {
    let mut set = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        let mut rec = vec![0u8];
        put_varint(&mut rec, i as i64);
        put_varint(&mut rec, i as i64);
        for f in [&r.key, &r.value] {
            match f {
                Some(b) => {
                    put_varint(&mut rec, b.len() as i64);
                    rec.extend_from_slice(b);
                }
                None => put_varint(&mut rec, -1),
            }
        }
        match &r.header {
            Some(h) => {
                put_varint(&mut rec, 1);
                put_varint(&mut rec, 1);
                rec.push(b'h');
                put_varint(&mut rec, h.len() as i64);
                rec.extend_from_slice(h);
            }
            None => put_varint(&mut rec, 0),
        }
        put_varint(&mut set, rec.len() as i64);
        set.extend_from_slice(&rec);
    }
    let mut b = vec![0u8; HEADER_BYTES];
    b.extend_from_slice(&codec::compress(codec, &set).unwrap());
    let total = b.len();
    let n = recs.len() as i32;
    {
        let h = batch::header_mut(&mut b).unwrap();
        h.base_offset.set(base);
        h.batch_length.set((total - LOG_OVERHEAD) as i32);
        h.magic = batch::MAGIC_V2;
        h.attributes.set(codec as i16 | attrs_extra);
        h.last_offset_delta.set(n - 1);
        h.base_timestamp.set(ts);
        h.max_timestamp.set(ts + n as i64 - 1);
        h.producer_id.set(if attrs_extra != 0 { 7 } else { -1 });
        h.producer_epoch.set(-1);
        h.base_sequence.set(-1);
        h.records_count.set(n);
    }
    let crc = crc32c::crc32c(&b[CRC_START..]);
    batch::header_mut(&mut b).unwrap().crc.set(crc);
    b
}

/// The in-memory log the pass runs over.
#[derive(Default)]
struct MemLog {
    entries: RefCell<Vec<(EntryMeta, Bytes)>>,
    transactional: RefCell<Vec<bool>>,
}

impl MemLog {
    fn next_offset(&self) -> i64 {
        self.entries
            .borrow()
            .last()
            .map_or(0, |(m, _)| m.kafka.unwrap().last_offset + 1)
    }

    fn append(&self, b: Vec<u8>, txn: bool) {
        let h = batch::header(&b).unwrap();
        let base = h.base_offset.get();
        let meta = EntryMeta {
            index: self.entries.borrow().len() as u64 + 1,
            term: 1,
            kind: EntryKind::Normal,
            kafka: Some(KafkaMeta {
                base_offset: base,
                last_offset: base + h.last_offset_delta.get() as i64,
                max_timestamp: h.max_timestamp.get(),
            }),
        };
        self.entries.borrow_mut().push((meta, Bytes::from(b)));
        self.transactional.borrow_mut().push(txn);
    }

    /// Every record in the log: (offset, key, value).
    fn records(&self) -> Vec<Found> {
        let mut out = Vec::new();
        for (m, b) in self.entries.borrow().iter() {
            records::validate_compacted(b, 1 << 20).unwrap();
            let h = batch::header(b).unwrap();
            let k = m.kafka.unwrap();
            assert_eq!(h.base_offset.get(), k.base_offset);
            assert_eq!(
                h.base_offset.get() + h.last_offset_delta.get() as i64,
                k.last_offset
            );
            assert_eq!(h.max_timestamp.get(), k.max_timestamp);
            let set = records::record_set(b, 1 << 20).unwrap();
            for r in records::parse_records(&set, h.records_count.get()).unwrap() {
                out.push((
                    k.base_offset + r.offset_delta as i64,
                    r.key.map(|x| x.to_vec()),
                    r.value.map(|x| x.to_vec()),
                ));
            }
        }
        out
    }
}

impl PassLog for MemLog {
    async fn read(
        &self,
        from: i64,
        upto: i64,
        max_bytes: usize,
    ) -> chronik_storage::Result<Vec<(EntryMeta, Bytes)>> {
        let mut out = Vec::new();
        let mut total = 0;
        for (m, b) in self.entries.borrow().iter() {
            let last = m.kafka.unwrap().last_offset;
            if last < from {
                continue;
            }
            if last >= upto {
                break;
            }
            total += b.len();
            if !out.is_empty() && total > max_bytes {
                break;
            }
            out.push((*m, b.clone()));
        }
        Ok(out)
    }

    fn replace(&self, meta: &EntryMeta, payload: &[u8]) -> chronik_storage::Result<bool> {
        let mut e = self.entries.borrow_mut();
        let slot = &mut e[meta.index as usize - 1];
        assert_eq!(slot.0, *meta);
        slot.1 = Bytes::copy_from_slice(payload);
        Ok(true)
    }
}

fn settings(delete_retention_ms: i64) -> CompactionSettings {
    CompactionSettings {
        compact: true,
        delete: false,
        delete_retention_ms,
        min_cleanable_dirty_ratio: 0.0,
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: i64::MAX,
        segment_bytes: 1 << 30,
        segment_ms: 604_800_000,
    }
}

fn run_sync<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// Passes until one makes no progress (bounded).
fn converge(
    log: &MemLog,
    st: &mut CleanerState,
    s: &CompactionSettings,
    limits: PassLimits,
    now: i64,
) {
    for _ in 0..1000 {
        let before = st.cleaned_upto;
        let r = run_sync(clean(
            log,
            1,
            (log.next_offset(), 0, i64::MAX),
            st,
            s,
            limits,
            now,
        ))
        .unwrap();
        if r.cleaned_upto == before {
            return;
        }
    }
    panic!("compaction did not converge");
}

/// Appends `n` random batches; returns the model of appended records (offset, rec, txn).
fn append_random(
    log: &MemLog,
    rng: &mut ChaCha8Rng,
    n: usize,
    keys: u32,
    model: &mut Vec<(i64, Rec, bool)>,
) {
    for _ in 0..n {
        let count = rng.gen_range(1..=8);
        let recs: Vec<Rec> = (0..count)
            .map(|_| Rec {
                key: if rng.gen_bool(0.03) {
                    None
                } else {
                    Some(format!("key-{}", rng.gen_range(0..keys)).into_bytes())
                },
                value: if rng.gen_bool(0.1) {
                    None
                } else {
                    Some(format!("v{}", rng.gen::<u32>()).into_bytes())
                },
                header: rng.gen_bool(0.2).then(|| vec![rng.gen(); 3]),
            })
            .collect();
        let codec = Compression::ALL[rng.gen_range(0..5)];
        let txn = rng.gen_bool(0.05);
        let base = log.next_offset();
        let b = build(
            codec,
            base,
            1000 + base,
            &recs,
            if txn { TRANSACTIONAL_FLAG } else { 0 },
        );
        for (i, r) in recs.into_iter().enumerate() {
            model.push((base + i as i64, r, txn));
        }
        log.append(b, txn);
    }
}

/// Expected records: transactional ones all; of the rest, below `cleanable` (the pass never
/// cleans the newest batch) only the last record of each key (tombstones too unless
/// `drop_tombstones`), keyless ones dropped; at or above `cleanable` everything.
fn expected(model: &[(i64, Rec, bool)], cleanable: i64, drop_tombstones: bool) -> Vec<Found> {
    let mut last: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for (off, r, txn) in model {
        if *off < cleanable && !txn {
            if let Some(k) = &r.key {
                last.insert(k.clone(), *off);
            }
        }
    }
    model
        .iter()
        .filter(|(off, r, txn)| {
            if *txn || *off >= cleanable {
                return true;
            }
            let Some(k) = &r.key else { return false };
            last[k] == *off && !(drop_tombstones && r.value.is_none())
        })
        .map(|(off, r, _)| (*off, r.key.clone(), r.value.clone()))
        .collect()
}

#[test]
fn random_streams_compact_to_the_last_record_per_key() {
    let seeds: u64 = std::env::var("CHRONIK_COMPACTION_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    for seed in 0..seeds {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let ctx = format!("seed {seed} (replay: first {} seeds)", seed + 1);
        let keys = rng.gen_range(1..40);
        // Tiny map budgets force several passes per round (Kafka's partial dedupe buffer).
        let limits = PassLimits {
            map_bytes: rng.gen_range(1..6) * (KEY_MAP_ENTRY_OVERHEAD + 8) * 4,
            chunk_bytes: rng.gen_range(1..3000),
        };
        let log = MemLog::default();
        let mut model = Vec::new();
        let mut st = CleanerState::default();
        // Long tombstone retention: tombstones stay as the last record of their key.
        let keep = settings(i64::MAX);
        let mut now = 10_000;
        for _round in 0..rng.gen_range(1..5) {
            let n = rng.gen_range(1..40);
            append_random(&log, &mut rng, n, keys, &mut model);
            now += 1;
            converge(&log, &mut st, &keep, limits, now);
        }
        let newest_base = log
            .entries
            .borrow()
            .last()
            .unwrap()
            .0
            .kafka
            .unwrap()
            .base_offset;
        assert_eq!(log.records(), expected(&model, newest_base, false), "{ctx}");
        assert_eq!(st.cleaned_upto, newest_base, "{ctx}");

        // Zero retention: tombstones cleaned by an earlier pass go at the next pass; fresh
        // batches with new keys make the later passes happen.
        let drop = settings(0);
        for i in 0..3 {
            let base = log.next_offset();
            let rec = Rec {
                key: Some(format!("fresh-{i}").into_bytes()),
                value: Some(b"x".to_vec()),
                header: None,
            };
            log.append(
                build(Compression::None, base, 1, std::slice::from_ref(&rec), 0),
                false,
            );
            model.push((base, rec, false));
            now += 1;
            converge(&log, &mut st, &drop, limits, now);
        }
        let newest_base = log
            .entries
            .borrow()
            .last()
            .unwrap()
            .0
            .kafka
            .unwrap()
            .base_offset;
        assert_eq!(log.records(), expected(&model, newest_base, true), "{ctx}");
    }
}

#[test]
fn the_active_segment_is_left_as_written() {
    let rec = |k: &str, v: &str| Rec {
        key: Some(k.as_bytes().to_vec()),
        value: Some(v.as_bytes().to_vec()),
        header: None,
    };
    let log = MemLog::default();
    log.append(
        build(
            Compression::None,
            0,
            1000,
            &[rec("a", "1"), rec("a", "2")],
            0,
        ),
        false,
    );
    log.append(
        build(Compression::None, 2, 1001, &[rec("a", "3")], 0),
        false,
    );
    log.append(
        build(Compression::None, 3, 1002, &[rec("b", "1")], 0),
        false,
    );
    let all = log.records();
    assert_eq!(all.len(), 4);
    let limits = PassLimits {
        map_bytes: MAX_KEY_MAP_BYTES,
        chunk_bytes: SWEEP_CHUNK_BYTES,
    };
    let s = settings(i64::MAX);
    let mut st = CleanerState::default();
    // One segment, still active: nothing is cleaned, whatever the dirty ratio.
    let bounds = (log.next_offset(), 0, 0);
    run_sync(clean(&log, 1, bounds, &mut st, &s, limits, 1 << 40)).unwrap();
    assert_eq!(log.records(), all);
    // Rolled before offset 2: the old segment is cleaned against itself (a=1 goes, a=2 stays
    // although the active segment has a newer a), the active segment is untouched.
    let bounds = (log.next_offset(), 0, 2);
    run_sync(clean(&log, 1, bounds, &mut st, &s, limits, 1 << 40)).unwrap();
    let offsets: Vec<i64> = log.records().iter().map(|r| r.0).collect();
    assert_eq!(offsets, vec![1, 2, 3]);
}

#[test]
fn segments_roll_as_kafka_rolls_them() {
    use crate::partition::ActiveSegment;
    let a = ActiveSegment {
        base_offset: 10,
        bytes: 900,
        first_timestamp: 5_000,
        created_ms: 1_000_000,
    };
    let now = 1_000_000;
    // By size: the batch would take the segment past segment.bytes.
    assert!(!a.should_roll(100, 5_000, now, 1_000, 60_000));
    assert!(a.should_roll(101, 5_000, now, 1_000, 60_000));
    // A batch bigger than segment.bytes still goes into an empty segment.
    let empty = ActiveSegment { bytes: 0, ..a };
    assert!(!empty.should_roll(5_000, 5_000, now, 1_000, 60_000));
    // By time: the new batch's timestamp is more than segment.ms after the first batch's.
    assert!(!a.should_roll(1, 65_000, now, 1_000, 60_000));
    assert!(a.should_roll(1, 65_001, now, 1_000, 60_000));
    // Without a first timestamp, by wall clock since the segment started.
    let untimed = ActiveSegment {
        first_timestamp: -1,
        ..a
    };
    assert!(!untimed.should_roll(1, 99_999_999, now + 60_000, 1_000, 60_000));
    assert!(untimed.should_roll(1, -1, now + 60_001, 1_000, 60_000));
}

#[test]
fn tombstones_wait_for_delete_retention_after_their_first_pass() {
    let mut st = CleanerState::default();
    st.record_pass(100, 1_000);
    st.record_pass(200, 5_000);
    assert!(!st.tombstone_expired(50, 1_500, 1_000));
    assert!(st.tombstone_expired(50, 2_000, 1_000));
    assert!(!st.tombstone_expired(150, 2_000, 1_000));
    assert!(st.tombstone_expired(150, 6_000, 1_000));
    assert!(!st.tombstone_expired(250, i64::MAX, 0), "never cleaned yet");
    for k in 0..(MAX_PASS_HISTORY as i64 * 2) {
        st.record_pass(300 + k, 10_000 + k);
    }
    assert!(st.passes.len() <= MAX_PASS_HISTORY);
    assert!(
        !st.tombstone_expired(50, 9_000, 1_000),
        "merging only delays expiry"
    );
}

#[test]
fn keyless_records_are_refused_on_compacted_topics() {
    let with_key = Rec {
        key: Some(b"k".to_vec()),
        value: Some(b"v".to_vec()),
        header: None,
    };
    let without = Rec {
        key: None,
        ..with_key.clone()
    };
    for codec in Compression::ALL {
        let ok = build(codec, 0, 0, &[with_key.clone(), with_key.clone()], 0);
        assert_eq!(check_keys(&ok), Ok(()));
        let bad = build(codec, 0, 0, &[with_key.clone(), without.clone()], 0);
        assert_eq!(check_keys(&bad), Err(KEYLESS_MESSAGE.to_string()));
    }
}

#[test]
fn transactional_batches_and_unparsable_batches_are_left_alone() {
    let map = KeyMap::new(1 << 20);
    let r = Rec {
        key: Some(b"k".to_vec()),
        value: None,
        header: None,
    };
    let txn = build(
        Compression::Gzip,
        0,
        0,
        &[r.clone(), r.clone()],
        TRANSACTIONAL_FLAG,
    );
    assert_eq!(
        rewrite_batch(&txn, &map, |_| true).unwrap(),
        Rewrite::Unchanged
    );
    let mut broken = build(Compression::Zstd, 0, 0, std::slice::from_ref(&r), 0);
    // The compressed body replaced by bytes that are no zstd frame.
    for b in broken[HEADER_BYTES..].iter_mut() {
        *b = 0xff;
    }
    assert!(rewrite_batch(&broken, &map, |_| true).is_err());
    assert!(KeyMap::new(1 << 20).add_batch(&broken).is_err());
}

/// Measurement, not run by default: `cargo test -p chronik-server --lib measure_pass --
/// --ignored --nocapture` (one pass over 200k lz4 records, 1000 keys, in memory).
#[test]
#[ignore]
fn measure_pass_throughput() {
    let log = MemLog::default();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..2000 {
        let base = log.next_offset();
        let recs: Vec<Rec> = (0..100)
            .map(|_| Rec {
                key: Some(format!("key-{}", rng.gen_range(0..1000)).into_bytes()),
                value: Some(vec![b'v'; 100]),
                header: None,
            })
            .collect();
        log.append(build(Compression::Lz4, base, 1, &recs, 0), false);
    }
    let bytes: usize = log.entries.borrow().iter().map(|(_, b)| b.len()).sum();
    let mut st = CleanerState::default();
    let limits = PassLimits {
        map_bytes: MAX_KEY_MAP_BYTES,
        chunk_bytes: SWEEP_CHUNK_BYTES,
    };
    let t = std::time::Instant::now();
    let r = run_sync(clean(
        &log,
        1,
        (log.next_offset(), 0, i64::MAX),
        &mut st,
        &settings(i64::MAX),
        limits,
        1 << 40,
    ))
    .unwrap();
    let el = t.elapsed();
    // Every key's last record survives; of the newest batch nothing is removed.
    assert!(r.records_removed >= 200_000 - 1000 - 100, "{r:?}");
    assert_eq!(r.records_removed as usize + log.records().len(), 200_000);
    eprintln!("200k records, {bytes} bytes (lz4), 1000 keys: pass {el:?}, {} rewritten, {} removed, {:.0} records/s", r.batches_rewritten, r.records_removed, 200_000.0 / el.as_secs_f64());
}
