//! Crash test on real files: many groups append and flush concurrently (always mode, group
//! commit); then a last round of appends is treated as the write that was in flight when power
//! failed: the newest segment is cut at a random byte position and a random bit in that tail is
//! flipped. Recovery must keep every entry reported durable before the last round, and keep
//! exactly the records before the first damaged one. Seeded; the seed is printed.
//! Replay one seed with `CHRONIK_CRASH_SEED=<seed>`.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use chronik_storage::{EntryKind, EntryMeta, KafkaMeta, StorageError, Wal, WalOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const GROUPS: u64 = 16;
const HEADER: u64 = 64;

#[derive(Clone)]
struct Rec {
    group: u64,
    index: u64,
    start: u64,
    end: u64,
    payload: Vec<u8>,
}

fn run<Fut: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> Fut + Send + 'static) {
    glommio::LocalExecutorBuilder::default()
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

fn newest_segment(dir: &Path) -> (u64, PathBuf) {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        // Segments only (not spare files waiting for reuse).
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .filter_map(|p| {
            let base = p.file_stem()?.to_str()?.parse().ok()?;
            Some((base, p))
        })
        .collect();
    v.sort();
    v.pop().unwrap()
}

fn opts(dir: &Path) -> WalOptions {
    let mut o = WalOptions::new(dir);
    o.segment_bytes = 256 << 10;
    o.cache_bytes = 1 << 20;
    o
}

fn meta(index: u64, off: i64) -> EntryMeta {
    EntryMeta {
        index,
        term: 1,
        kind: EntryKind::Normal,
        kafka: Some(KafkaMeta {
            base_offset: off,
            last_offset: off,
            max_timestamp: index as i64,
        }),
    }
}

/// Runs the concurrent phase and the in-flight round; returns (records in LSN order, durable
/// LSN before the last round).
async fn write_phase(dir: PathBuf, seed: u64) -> (Vec<Rec>, u64) {
    let (wal, _) = Wal::open(opts(&dir)).await.unwrap();
    let wal = Rc::new(wal);
    let recs = Rc::new(RefCell::new(Vec::new()));
    let mut tasks = Vec::new();
    for g in 0..GROUPS {
        wal.create_group(g).unwrap();
        let (wal, recs) = (wal.clone(), recs.clone());
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ ((g + 1) * 0x9E37_79B9));
        tasks.push(glommio::spawn_local(async move {
            for i in 1..=rng.gen_range(8..24u64) {
                let payload: Vec<u8> = (0..rng.gen_range(1..3000)).map(|_| rng.gen()).collect();
                let end = wal.append(g, meta(i, i as i64 - 1), &payload).unwrap();
                let start = end - HEADER - payload.len() as u64;
                recs.borrow_mut().push(Rec {
                    group: g,
                    index: i,
                    start,
                    end,
                    payload,
                });
                let durable = wal.flush().await.unwrap();
                assert!(
                    durable >= end,
                    "flush returned before the append was durable"
                );
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    let durable_before = wal.durable_lsn();
    let m = wal.metrics();
    assert!(
        m.flushes < m.appends,
        "group commit should coalesce flushes: {m:?}"
    );
    // The in-flight round: a few more appends per group, one flush.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for g in 0..GROUPS {
        let st = wal.group_state(g).unwrap();
        for k in 0..rng.gen_range(0..4u64) {
            let i = st.last_index + 1 + k;
            let payload: Vec<u8> = (0..rng.gen_range(1..2000)).map(|_| rng.gen()).collect();
            let end = wal
                .append(g, meta(i, st.next_offset + k as i64), &payload)
                .unwrap();
            recs.borrow_mut().push(Rec {
                group: g,
                index: i,
                start: end - HEADER - payload.len() as u64,
                end,
                payload,
            });
        }
    }
    wal.flush().await.unwrap();
    let mut v = recs.borrow().clone();
    v.sort_by_key(|r| r.start);
    (v, durable_before)
}

/// Returns how many records the damage removed.
fn crash_case(seed: u64) -> usize {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let d2 = dir.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    run(move || async move { tx.send(write_phase(d2, seed).await).unwrap() });
    let (recs, durable) = rx.recv().unwrap();

    // Damage the newest segment's bytes at LSN >= max(durable, segment start).
    let (base, path) = newest_segment(&dir);
    let mut bytes = std::fs::read(&path).unwrap();
    let lo = durable.max(base + HEADER) - base;
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(31));
    let file_len = bytes.len() as u64;
    // Files are preallocated: aim the damage at the written bytes (plus a block of padding).
    let data_end = (recs.last().map_or(0, |r| r.end).saturating_sub(base) + 4096).min(file_len);
    let cut = if lo < data_end && rng.gen_bool(0.7) {
        rng.gen_range(lo..=data_end)
    } else {
        file_len
    };
    bytes.truncate(cut as usize);
    let mut flip_lsn = None;
    if cut.min(data_end) > lo && rng.gen_bool(0.7) {
        let at = rng.gen_range(lo..cut.min(data_end));
        bytes[at as usize] ^= 1 << rng.gen_range(0..8);
        flip_lsn = Some(base + at);
    }
    std::fs::write(&path, &bytes).unwrap();
    let cut_lsn = base + cut;

    // Expected: every record before the first one touched by the cut or the flip.
    let first_bad = recs
        .iter()
        .position(|r| r.end > cut_lsn || flip_lsn.is_some_and(|f| f >= r.start && f < r.end))
        .unwrap_or(recs.len());
    let expect: Vec<Rec> = recs[..first_bad].to_vec();
    let lost = recs.len() - first_bad;
    assert!(
        recs[first_bad..].iter().all(|r| r.end > durable),
        "seed {seed}: test damaged durable data"
    );

    run(move || async move {
        let (wal, rep) = Wal::open(opts(&dir))
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}"));
        for g in 0..GROUPS {
            let want: Vec<&Rec> = expect.iter().filter(|r| r.group == g).collect();
            let st = wal.group_state(g).unwrap();
            assert_eq!(
                st.last_index,
                want.len() as u64,
                "seed {seed}: group {g} entries (report {rep:?})"
            );
            let got = wal.read_entries(g, 1, st.last_index + 1, u64::MAX).unwrap();
            for (w, (m, b)) in want.iter().zip(got.iter()) {
                assert_eq!(
                    (m.index, &b[..]),
                    (w.index, &w.payload[..]),
                    "seed {seed}: group {g}"
                );
            }
        }
        // The recovered WAL accepts appends again.
        let st = wal.group_state(0).unwrap();
        wal.append(0, meta(st.last_index + 1, st.next_offset), b"after")
            .unwrap();
        wal.flush().await.unwrap();
    });
    lost
}

#[test]
fn crash_cut_and_flip_keeps_durable_prefix() {
    let seeds: Vec<u64> = match std::env::var("CHRONIK_CRASH_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        Err(_) => (0..10).map(|k| 0xDEAD_0000 + k).collect(),
    };
    let many = seeds.len() > 1;
    let mut damaged = 0;
    for seed in seeds {
        eprintln!("crash seed {seed} (replay: CHRONIK_CRASH_SEED={seed})");
        let t = std::time::Instant::now();
        let lost = crash_case(seed);
        eprintln!("  lost {lost} in-flight records, {:?}", t.elapsed());
        damaged += (lost > 0) as usize;
    }
    if many {
        assert!(
            damaged >= 3,
            "too few seeds actually damaged records ({damaged})"
        );
    }
}

/// A bit flip inside durable data that is followed by more durable records is a hole, not a
/// torn tail: recovery must fail with `Corrupt` naming the file and the position.
#[test]
fn corruption_before_valid_records_is_a_hard_error() {
    for (seed, sealed) in [(7u64, false), (8, true)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let d2 = dir.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        run(move || async move { tx.send(write_phase(d2, seed).await).unwrap() });
        let (recs, _) = rx.recv().unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "wal"))
            .collect();
        files.sort();
        assert!(files.len() >= 2, "need a sealed segment");
        let (path, base) = if sealed {
            (files[0].clone(), 0u64)
        } else {
            let (b, p) = newest_segment(&dir);
            (p, b)
        };
        // Flip a bit in the payload of the first record of that segment.
        let r = recs
            .iter()
            .find(|r| r.start >= base + HEADER && !r.payload.is_empty())
            .unwrap();
        let at = (r.start + HEADER - base) as usize;
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let want_pos = r.start - base;
        let dir2 = dir.clone();
        run(move || async move {
            match Wal::open(opts(&dir2)).await {
                Err(StorageError::Corrupt {
                    path: p,
                    position,
                    reason,
                }) => {
                    assert_eq!(p, path, "{reason}");
                    assert_eq!(position, want_pos, "{reason}");
                }
                Err(e) => panic!("expected Corrupt, got {e}"),
                Ok(_) => panic!("corruption in the middle of the log was silently accepted"),
            }
        });
    }
}
