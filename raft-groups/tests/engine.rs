//! The multi-raft engine on a real WAL: proposals commit in order per group, many groups share
//! flushes, and a restart resumes (or replays) from the persisted log. Seeded; the seed is
//! printed on failure.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use chronik_raft::raft::eraftpb::Entry;
use chronik_raft::{Applier, MultiRaft};
use chronik_storage::{SyncMode, Wal, WalOptions};
use rand::{Rng, SeedableRng};

/// Per group, the (index, data) of every applied entry.
type Applied = BTreeMap<u64, Vec<(u64, Vec<u8>)>>;

#[derive(Default)]
struct Recorder {
    applied: RefCell<Applied>,
    leaders: RefCell<BTreeMap<u64, u64>>,
}

impl Applier for Recorder {
    fn apply(&self, group: u64, entries: &[Entry]) {
        let mut a = self.applied.borrow_mut();
        let v = a.entry(group).or_default();
        for e in entries {
            if let Some(&(last, _)) = v.last() {
                assert_eq!(e.index, last + 1, "group {group}: applied out of order");
            }
            v.push((e.index, e.data.clone()));
        }
    }

    fn role_changed(&self, group: u64, term: u64, leader: bool) {
        if leader {
            self.leaders.borrow_mut().insert(group, term);
        }
    }

    fn storage_failed(&self, error: &chronik_raft::RaftError) {
        panic!("unexpected storage failure: {error}");
    }
}

impl Recorder {
    /// The non-empty payloads applied to `group`, in order.
    fn payloads(&self, group: u64) -> Vec<Vec<u8>> {
        self.applied
            .borrow()
            .get(&group)
            .map(|v| {
                v.iter()
                    .filter(|(_, d)| !d.is_empty())
                    .map(|(_, d)| d.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

fn wal_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

async fn open(dir: &std::path::Path) -> Rc<Wal> {
    let mut o = WalOptions::new(dir);
    o.sync_mode = SyncMode::Always;
    o.segment_bytes = 1 << 20;
    Rc::new(Wal::open(o).await.unwrap().0)
}

/// Waits (bounded) until `cond` holds, letting the engine run.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..5000 {
        if cond() {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting for {what}");
}

fn payload(group: u64, i: usize) -> Vec<u8> {
    format!("g{group}-e{i}").into_bytes()
}

#[test]
fn single_voter_groups_commit_in_order_and_survive_restart() {
    let seed: u64 = std::env::var("CHRONIK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0001);
    eprintln!("seed {seed} (CHRONIK_SEED to reproduce)");
    let dir = wal_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let groups: Vec<u64> = (1..=8).collect();
        let mut proposed: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
        {
            let wal = open(&path).await;
            let engine = MultiRaft::new(1, wal.clone());
            let rec = Rc::new(Recorder::default());
            for &g in &groups {
                engine.open_group(g, &[1], false, false).unwrap();
            }
            let task = glommio::spawn_local(engine.clone().run(rec.clone())).detach();
            until("leaders", || groups.iter().all(|g| engine.is_leader(*g))).await;
            // Random interleaving of proposals across groups, in bursts (group commit).
            for round in 0..40 {
                for _ in 0..rng.gen_range(1..20) {
                    let g = groups[rng.gen_range(0..groups.len())];
                    let list = proposed.entry(g).or_default();
                    let data = payload(g, list.len());
                    let p = engine.propose(g, data.clone()).unwrap();
                    assert!(p.index >= 2, "index {} after the election entry", p.index);
                    list.push(data);
                }
                if round % 3 == 0 {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
            }
            until("all applied", || {
                proposed
                    .iter()
                    .all(|(g, list)| rec.payloads(*g).len() == list.len())
            })
            .await;
            for (g, list) in &proposed {
                assert_eq!(
                    &rec.payloads(*g),
                    list,
                    "seed {seed}: group {g} applied differently"
                );
            }
            let flushes = wal.metrics().flushes;
            let total: usize = proposed.values().map(|l| l.len()).sum();
            assert!(
                flushes < total as u64,
                "seed {seed}: {flushes} flushes for {total} proposals: no group commit"
            );
            engine.stop();
            task.await.unwrap().unwrap();
            wal.flush().await.unwrap();
        }
        // Restart: replay delivers the whole log again; resume delivers nothing old.
        let wal = open(&path).await;
        let engine = MultiRaft::new(1, wal.clone());
        let rec = Rc::new(Recorder::default());
        let (replayed, resumed) = (groups[0], groups[1]);
        engine.open_group(replayed, &[1], false, true).unwrap();
        engine.open_group(resumed, &[1], false, false).unwrap();
        let task = glommio::spawn_local(engine.clone().run(rec.clone())).detach();
        until("leaders after restart", || {
            engine.is_leader(replayed) && engine.is_leader(resumed)
        })
        .await;
        let want = proposed.get(&replayed).cloned().unwrap_or_default();
        until("replay", || rec.payloads(replayed).len() == want.len()).await;
        assert_eq!(rec.payloads(replayed), want, "seed {seed}: replay differs");
        // A new term after the restart.
        assert!(rec.leaders.borrow()[&replayed] >= 2);
        // New proposals continue after the old log.
        let more = b"after-restart".to_vec();
        engine.propose(resumed, more.clone()).unwrap();
        until("post-restart apply", || {
            rec.payloads(resumed).last() == Some(&more)
        })
        .await;
        let old = proposed.get(&resumed).map_or(0, |l| l.len());
        let resumed_payloads = rec.payloads(resumed);
        assert!(
            resumed_payloads.len() <= old + 1,
            "resume re-applied more than the uncommitted tail"
        );
        engine.stop();
        task.await.unwrap().unwrap();
    });
}

#[test]
fn proposals_to_unknown_groups_and_removed_groups_fail_cleanly() {
    let dir = wal_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let wal = open(&path).await;
        let engine = MultiRaft::new(1, wal.clone());
        let rec = Rc::new(Recorder::default());
        assert!(matches!(
            engine.propose(42, b"x".to_vec()),
            Err(chronik_raft::RaftError::NoSuchGroup(42))
        ));
        engine.open_group(7, &[1], false, false).unwrap();
        let task = glommio::spawn_local(engine.clone().run(rec.clone())).detach();
        until("leader", || engine.is_leader(7)).await;
        engine.remove_group(7).unwrap();
        assert!(!engine.has_group(7));
        assert!(wal.group_state(7).is_none());
        assert!(engine.propose(7, b"x".to_vec()).is_err());
        engine.stop();
        task.await.unwrap().unwrap();
    });
}

#[test]
fn kafka_meta_is_read_from_the_batch_header() {
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> =
        vec![(None, Some(b"a")), (None, Some(b"b"))];
    let mut b = chronik_protocol::batch::encode_batch(&kv, 1234);
    chronik_protocol::batch::patch_for_append(&mut b, 40, 3, None).unwrap();
    let m = chronik_raft::engine::kafka_meta(&b).unwrap();
    assert_eq!(
        (m.base_offset, m.last_offset, m.max_timestamp),
        (40, 41, 1234)
    );
    assert!(chronik_raft::engine::kafka_meta(b"short").is_none());
}

#[test]
fn batch_crc_is_combined_from_the_stored_kafka_crc() {
    for (n, size) in [(1, 0), (3, 100), (2, 200_000)] {
        let b = kafka_batch(17, n, size);
        assert_eq!(
            chronik_raft::engine::batch_crc32c(&b),
            Some(crc32c::crc32c(&b)),
            "{n} records of {size} bytes"
        );
        // Not exactly one batch: a byte more, a byte less, another magic.
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(chronik_raft::engine::batch_crc32c(&longer), None);
        assert_eq!(chronik_raft::engine::batch_crc32c(&b[..b.len() - 1]), None);
        let mut v1 = b.clone();
        v1[16] = 1;
        assert_eq!(chronik_raft::engine::batch_crc32c(&v1), None);
    }
    assert_eq!(chronik_raft::engine::batch_crc32c(b"short"), None);
}

/// A Kafka batch of `n` records of `size` bytes each, patched to `base`.
fn kafka_batch(base: i64, n: usize, size: usize) -> Vec<u8> {
    let value = vec![7u8; size];
    let kv: Vec<chronik_protocol::batch::KeyValue<'_>> =
        (0..n).map(|_| (None, Some(value.as_slice()))).collect();
    let mut b = chronik_protocol::batch::encode_batch(&kv, 1000 + base);
    chronik_protocol::batch::patch_for_append(&mut b, base, 1, None).unwrap();
    b
}

#[test]
fn kafka_partitions_apply_batch_headers_and_replicate_whole_batches() {
    use chronik_protocol::batch::HEADER_BYTES;
    use chronik_raft::raft::{GetEntriesContext, Storage};
    let dir = wal_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let wal = open(&path).await;
        let engine = MultiRaft::new(1, wal.clone());
        let rec = Rc::new(Recorder::default());
        // 1: a Kafka partition; 2: a replayed Kafka log (like __consumer_offsets); 3: a command
        // log (like __meta).
        engine.open_group(1, &[1], true, false).unwrap();
        engine.open_group(2, &[1], true, true).unwrap();
        engine.open_group(3, &[1], false, false).unwrap();
        let task = glommio::spawn_local(engine.clone().run(rec.clone())).detach();
        until("leaders", || (1..=3).all(|g| engine.is_leader(g))).await;
        let batches: Vec<Vec<u8>> = (0..4)
            .map(|i| kafka_batch(i * 3, 3, 100_000 + i as usize))
            .collect();
        for g in 1..=3 {
            for b in &batches {
                engine.propose(g, b.clone()).unwrap();
            }
        }
        until("all applied", || {
            (1..=3).all(|g| rec.payloads(g).len() == batches.len())
        })
        .await;
        let heads: Vec<Vec<u8>> = batches.iter().map(|b| b[..HEADER_BYTES].to_vec()).collect();
        let applied = rec.payloads(1);
        // Committed entries come back through storage once persisted: headers only.
        assert!(
            applied.iter().any(|a| a.len() == HEADER_BYTES),
            "the partition's apply copied every whole batch"
        );
        for (a, b) in applied.iter().zip(&batches) {
            // Either the whole batch (handed over from raft's unstable log) or its header.
            assert!(
                a == b || a.as_slice() == &b[..HEADER_BYTES],
                "partition apply got other bytes"
            );
            let m = chronik_raft::engine::kafka_meta(a).unwrap();
            let want = chronik_raft::engine::kafka_meta(b).unwrap();
            assert_eq!(m, want);
        }
        assert_eq!(
            rec.payloads(2),
            batches,
            "a replayed log applies whole batches"
        );
        assert_eq!(
            rec.payloads(3),
            batches,
            "a command log applies whole entries"
        );
        // Through the raft::Storage seam: raft-internal reads (committed entries) get headers,
        // replication reads (can_async) get whole batches.
        let storage =
            chronik_raft::storage::GroupStorage::new(wal.clone(), 1).with_header_only_apply();
        let last = storage.last_index().unwrap();
        let lo = last + 1 - batches.len() as u64;
        let internal = storage
            .entries(lo, last + 1, None, GetEntriesContext::empty(false))
            .unwrap();
        let data: Vec<Vec<u8>> = internal.iter().map(|e| e.data.clone()).collect();
        assert_eq!(data, heads);
        let replicated = storage
            .entries(lo, last + 1, None, GetEntriesContext::empty(true))
            .unwrap();
        let data: Vec<Vec<u8>> = replicated.iter().map(|e| e.data.clone()).collect();
        assert_eq!(data, batches);
        engine.stop();
        task.await.unwrap().unwrap();
    });
}

/// Applies like [`Recorder`] but takes a storage failure (the crashed disk) as expected.
#[derive(Default)]
struct CrashRecorder {
    applied: RefCell<Applied>,
    failed: std::cell::Cell<bool>,
}

impl Applier for CrashRecorder {
    fn apply(&self, group: u64, entries: &[Entry]) {
        let mut a = self.applied.borrow_mut();
        let v = a.entry(group).or_default();
        for e in entries {
            v.push((e.index, e.data.clone()));
        }
    }
    fn role_changed(&self, _group: u64, _term: u64, _leader: bool) {}
    fn storage_failed(&self, _error: &chronik_raft::RaftError) {
        self.failed.set(true);
    }
}

/// Yields to the executor `n` times (the in-memory disk completes I/O at yields).
async fn yields(n: usize) {
    for _ in 0..n {
        futures_lite::future::yield_now().await;
    }
}

/// Flushes are pipelined (a round writes while the one before it syncs), so the engine must
/// still apply an entry only once it is durable: the disk crashes at a random moment of a
/// stream of proposals, and every entry applied before the crash is in the recovered log.
#[test]
fn every_applied_entry_survives_a_crash_at_any_moment() {
    use chronik_storage::testing::MemDisk;
    let first: u64 = std::env::var("CHRONIK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0100);
    run(move || async move {
        let mut checked = 0;
        for seed in first..first + 24 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let disk = MemDisk::new();
            let mut o = WalOptions::new("/wal");
            o.sync_mode = SyncMode::Always;
            o.segment_bytes = chronik_storage::MIN_SEGMENT_BYTES;
            o.prepare_bytes_per_sec = u64::MAX;
            let (wal, _) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
            let wal = Rc::new(wal);
            let engine = MultiRaft::new(1, wal.clone());
            let rec = Rc::new(CrashRecorder::default());
            let groups: Vec<u64> = (1..=4).collect();
            for &g in &groups {
                engine.open_group(g, &[1], false, false).unwrap();
            }
            let task = glommio::spawn_local(engine.clone().run(rec.clone())).detach();
            until("leaders", || groups.iter().all(|g| engine.is_leader(*g))).await;
            // Proposals in bursts, with yields between them so flushes overlap; the crash
            // comes after a random number of bursts, wherever the flushes are.
            let bursts = rng.gen_range(5..60);
            let mut sent = 0usize;
            for _ in 0..bursts {
                for _ in 0..rng.gen_range(1..6) {
                    let g = groups[rng.gen_range(0..groups.len())];
                    engine.propose(g, payload(g, sent)).unwrap();
                    sent += 1;
                }
                yields(rng.gen_range(0..8)).await;
            }
            let applied = rec.applied.borrow().clone();
            disk.crash(seed);
            engine.stop();
            task.await.unwrap().unwrap();
            drop(engine);
            drop(wal);
            let (wal, _) = Wal::open_with_disk(o, disk.clone())
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}"));
            for (g, list) in &applied {
                let st = wal
                    .group_state(*g)
                    .unwrap_or_else(|| panic!("seed {seed}: group {g} lost"));
                let got = wal
                    .read_entries(*g, 1, st.last_index + 1, u64::MAX)
                    .unwrap();
                for (index, data) in list {
                    let kept = got.iter().find(|(m, _)| m.index == *index);
                    assert!(
                        kept.is_some_and(|(_, b)| b.as_ref() == data.as_slice()),
                        "seed {seed}: group {g} entry {index} was applied but is not durable"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "only {checked} applied entries checked");
    });
}
