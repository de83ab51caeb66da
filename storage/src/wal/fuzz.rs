//! Operation fuzzer: random appends, suffix truncations, prefix compactions, state updates,
//! segment rolls (small segments), reclamation, reads, clean restarts and crashes, checked after
//! every step against a simple in-memory model. Seeded; the seed is printed and can be replayed
//! with `CHRONIK_FUZZ_SEED=<seed> cargo test -p chronik-storage fuzz`.

use std::collections::BTreeMap;
use std::rc::Rc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::tests::run;
use super::*;
use crate::testing::MemDisk;
use crate::{EntryKind, KafkaMeta};

#[derive(Clone, Debug)]
struct MEntry {
    meta: EntryMeta,
    payload: Rc<Vec<u8>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct MGroup {
    snap_i: u64,
    snap_t: u64,
    entries: Vec<MEntry>,
    hs: HardState,
    cs: ConfState,
    log_start: i64,
    floor: i64,
}

impl PartialEq for MEntry {
    fn eq(&self, o: &Self) -> bool {
        self.meta == o.meta && self.payload == o.payload
    }
}

impl MGroup {
    fn last(&self) -> u64 {
        self.snap_i + self.entries.len() as u64
    }
    fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.snap_t, |e| e.meta.term)
    }
    fn next_offset(&self) -> i64 {
        let n = self
            .entries
            .iter()
            .rev()
            .find_map(|e| e.meta.kafka.map(|k| k.last_offset + 1))
            .unwrap_or(self.floor);
        n.max(self.log_start.max(self.floor))
    }
    fn state(&self) -> GroupState {
        GroupState {
            first_index: self.snap_i + 1,
            last_index: self.last(),
            snapshot_index: self.snap_i,
            snapshot_term: self.snap_t,
            hard_state: self.hs.clone(),
            conf_state: self.cs.clone(),
            log_start_offset: self.log_start.max(self.floor),
            next_offset: self.next_offset(),
            size_bytes: self.entries.iter().map(|e| e.payload.len() as u64).sum(),
        }
    }
}

type Model = BTreeMap<GroupId, MGroup>;

async fn check(wal: &Wal, model: &Model, rng: &mut ChaCha8Rng, ctx: &str) {
    wal.check_invariants();
    assert_eq!(
        wal.groups(),
        model.keys().copied().collect::<Vec<_>>(),
        "{ctx}: groups"
    );
    for (&g, m) in model {
        assert_eq!(
            wal.group_state(g).unwrap(),
            m.state(),
            "{ctx}: group {g} state"
        );
        let got = wal
            .read_entries(g, m.snap_i + 1, m.last() + 1, u64::MAX)
            .unwrap();
        assert_eq!(got.len(), m.entries.len(), "{ctx}: group {g} entries");
        for (e, (meta, b)) in m.entries.iter().zip(got.iter()) {
            assert_eq!(&e.meta, meta, "{ctx}: group {g} meta");
            assert_eq!(
                &e.payload[..],
                &b[..],
                "{ctx}: group {g} payload {}",
                meta.index
            );
        }
        if m.snap_i > 0 {
            assert_eq!(
                wal.term(g, m.snap_i),
                Some(m.snap_t),
                "{ctx}: snapshot term"
            );
        }
        // Kafka reads from a random offset.
        let from = rng.gen_range(0..=m.next_offset() + 1);
        let want: Vec<&MEntry> = m
            .entries
            .iter()
            .filter(|e| matches!(e.meta.kafka, Some(k) if k.last_offset >= from))
            // Header-only batches (compacted away) are skipped by fetch.
            .filter(|e| e.payload.len() != EMPTY_KAFKA_BATCH_BYTES as usize)
            .collect();
        let got = wal
            .read_batches(g, from, i64::MAX, usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            got.len(),
            want.len(),
            "{ctx}: group {g} batches from {from}"
        );
        for (w, b) in want.iter().zip(got.iter()) {
            assert_eq!(&w.payload[..], &b[..], "{ctx}: batch bytes");
        }
    }
}

/// Totals over one run: (segments deleted, records relocated, cache misses, crashes that lost
/// unsynced ops).
async fn fuzz_one(seed: u64, steps: usize) -> [u64; 5] {
    let mut totals = [0u64; 5];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let disk = MemDisk::new();
    let mut o = WalOptions::new("/fuzz");
    o.segment_bytes = crate::MIN_SEGMENT_BYTES;
    // Unpaced preparation: deterministic (no timers) and exercised by every roll.
    o.prepare_bytes_per_sec = u64::MAX;
    o.cache_bytes = rng.gen_range(0..20_000);
    // No time passes in the fuzzer: relocate at the first reclaim that finds a segment pinned.
    o.relocate_after_ms = 0;
    // Periodic mode: flush() only writes, so several unsynced write rounds pile up and a crash
    // tears blocks out of all of them; recovery must still find a clean prefix >= durable.
    if rng.gen_bool(0.5) {
        o.sync_mode = SyncMode::Periodic;
    }
    // `always` mode: written through (O_DSYNC) or write-then-fdatasync.
    o.write_through = rng.gen_bool(0.5);
    let (mut wal, _) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
    let mut model: Model = BTreeMap::new();
    // Model states since the last durable point, keyed by the LSN after the op.
    let mut history: Vec<(u64, Model)> = vec![(wal.staged_lsn(), model.clone())];
    for step in 0..steps {
        let ctx = format!("seed {seed} step {step}");
        let gids: Vec<GroupId> = model.keys().copied().collect();
        let pick = |rng: &mut ChaCha8Rng| gids[rng.gen_range(0..gids.len())];
        let op = rng.gen_range(0..100);
        match op {
            0..=4 => {
                let g = rng.gen_range(0..6);
                wal.create_group(g).unwrap();
                model.entry(g).or_default();
            }
            5 if !gids.is_empty() => {
                let g = pick(&mut rng);
                wal.remove_group(g).unwrap();
                model.remove(&g);
            }
            6..=49 if !gids.is_empty() => {
                let g = pick(&mut rng);
                let m = model.get_mut(&g).unwrap();
                let term = m.last_term() + rng.gen_range(0..2);
                let index = m.last() + 1;
                let len = if rng.gen_bool(0.05) {
                    rng.gen_range(5000..20000)
                } else {
                    rng.gen_range(0..600)
                };
                let payload: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                let kafka = if rng.gen_bool(0.8) {
                    let base = m.next_offset() + rng.gen_range(0..2);
                    Some(KafkaMeta {
                        base_offset: base,
                        last_offset: base + rng.gen_range(0..5),
                        max_timestamp: rng.gen_range(0..1000),
                    })
                } else {
                    None
                };
                let kind = [
                    EntryKind::Normal,
                    EntryKind::ConfChange,
                    EntryKind::ConfChangeV2,
                ][rng.gen_range(0..3)];
                let kind = if kafka.is_some() {
                    EntryKind::Normal
                } else {
                    kind
                };
                let meta = EntryMeta {
                    index,
                    term,
                    kind,
                    kafka,
                };
                let res = if rng.gen_bool(0.5) {
                    wal.append_shared(g, meta, bytes::Bytes::from(payload.clone()))
                } else {
                    wal.append(g, meta, &payload)
                };
                res.unwrap_or_else(|e| panic!("{ctx}: append {e}"));
                m.entries.push(MEntry {
                    meta,
                    payload: Rc::new(payload),
                });
            }
            50..=56 if !gids.is_empty() => {
                let g = pick(&mut rng);
                let m = model.get_mut(&g).unwrap();
                let from = rng.gen_range(m.snap_i + 1..=m.last() + 1);
                wal.truncate_suffix(g, from).unwrap();
                m.entries.truncate((from - m.snap_i - 1) as usize);
            }
            57..=62 if !gids.is_empty() => {
                let g = pick(&mut rng);
                let m = model.get_mut(&g).unwrap();
                let before = rng.gen_range(m.snap_i + 1..=m.last() + 2);
                if before > m.snap_i + 1 {
                    let term = if before - 1 <= m.last() {
                        m.entries[(before - 2 - m.snap_i) as usize].meta.term
                    } else {
                        m.last_term() + 1
                    };
                    wal.compact_prefix(g, before, term).unwrap();
                    let drop_n = ((before - 1 - m.snap_i) as usize).min(m.entries.len());
                    for e in m.entries.drain(..drop_n) {
                        if let Some(k) = e.meta.kafka {
                            m.floor = m.floor.max(k.last_offset + 1);
                        }
                    }
                    m.snap_i = before - 1;
                    m.snap_t = term;
                }
            }
            63..=66 if !gids.is_empty() => {
                let g = pick(&mut rng);
                let hs = HardState {
                    term: rng.gen_range(0..9),
                    vote: rng.gen_range(0..4),
                    commit: rng.gen_range(0..99),
                };
                wal.set_hard_state(g, &hs).unwrap();
                model.get_mut(&g).unwrap().hs = hs;
            }
            67..=68 if !gids.is_empty() => {
                let g = pick(&mut rng);
                let cs = ConfState {
                    voters: (0..rng.gen_range(0..4)).collect(),
                    learners: (0..rng.gen_range(0..2)).map(|x| x + 10).collect(),
                    voters_outgoing: vec![],
                    learners_next: vec![],
                    auto_leave: rng.gen(),
                };
                wal.set_conf_state(g, &cs).unwrap();
                model.get_mut(&g).unwrap().cs = cs;
            }
            69..=70 if !gids.is_empty() => {
                let g = pick(&mut rng);
                let m = model.get_mut(&g).unwrap();
                let ls = m.log_start.max(m.floor);
                let off = rng.gen_range(ls..=m.next_offset());
                wal.set_log_start_offset(g, off).unwrap();
                m.log_start = m.log_start.max(off);
            }
            71..=80 => {
                wal.flush().await.unwrap();
            }
            81..=85 => {
                wal.sync().await.unwrap();
            }
            86..=90 => {
                wal.reclaim()
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}: reclaim {e}"));
            }
            91..=94 => {
                // Clean restart: everything synced survives exactly.
                wal.sync().await.unwrap();
                add_totals(&mut totals, &wal.metrics());
                drop(wal);
                disk.crash_keep_all();
                let (w, rep) = Wal::open_with_disk(o.clone(), disk.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}: reopen {e}"));
                assert_eq!(rep.truncated_tail_bytes, 0, "{ctx}");
                wal = w;
                history = vec![(wal.staged_lsn(), model.clone())];
            }
            95..=96 => {
                // Crash: unsynced blocks are kept or lost at random. The recovered state must be
                // the model as of some op at or after the durable point.
                let durable = wal.durable_lsn();
                let staged = wal.staged_lsn();
                add_totals(&mut totals, &wal.metrics());
                drop(wal);
                disk.crash(rng.gen());
                let (w, _) = Wal::open_with_disk(o.clone(), disk.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}: recover {e}"));
                wal = w;
                let got = wal.staged_lsn();
                assert!(
                    got >= durable,
                    "{ctx}: recovered lsn {got} < durable {durable}"
                );
                let k = history
                    .iter()
                    .rposition(|(l, _)| *l <= got)
                    .unwrap_or_else(|| panic!("{ctx}: no model state at or before lsn {got}"));
                model = history[k].1.clone();
                if got < staged {
                    totals[3] += 1;
                }
                history = vec![(got, model.clone())];
            }
            97..=99 if !gids.is_empty() => {
                // Log compaction replaces a live entry's payload (sometimes by a header-only
                // batch); a stale meta must change nothing.
                let g = pick(&mut rng);
                let m = model.get_mut(&g).unwrap();
                if !m.entries.is_empty() {
                    let k = rng.gen_range(0..m.entries.len());
                    let len = if rng.gen_bool(0.3) {
                        EMPTY_KAFKA_BATCH_BYTES as usize
                    } else {
                        rng.gen_range(0..300)
                    };
                    let payload: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                    let meta = m.entries[k].meta;
                    let mut stale = meta;
                    stale.term += 1;
                    assert_eq!(wal.replace_payload(g, &stale, b"x").unwrap(), None, "{ctx}");
                    let res = wal
                        .replace_payload(g, &meta, &payload)
                        .unwrap_or_else(|e| panic!("{ctx}: replace {e}"));
                    assert!(res.is_some(), "{ctx}: replace of a live entry");
                    m.entries[k].payload = Rc::new(payload);
                }
            }
            _ => {}
        }
        history.push((wal.staged_lsn(), model.clone()));
        // Keep the newest state at or before the durable point and everything after it.
        let durable = wal.durable_lsn();
        if let Some(k) = history.iter().rposition(|(l, _)| *l <= durable) {
            history.drain(..k);
        }
        check(&wal, &model, &mut rng, &ctx).await;
    }
    add_totals(&mut totals, &wal.metrics());
    totals
}

fn add_totals(t: &mut [u64; 5], m: &WalStats) {
    t[0] += m.segments_deleted;
    t[1] += m.relocated_records;
    t[2] += m.cache_misses;
    t[4] += m.segments_recycled;
}

#[test]
fn operation_fuzzer_against_model() {
    let seeds: Vec<u64> = match std::env::var("CHRONIK_FUZZ_SEED") {
        Ok(s) => vec![s.parse().expect("CHRONIK_FUZZ_SEED must be a u64")],
        // CHRONIK_FUZZ_SEEDS=<n> runs a longer campaign.
        Err(_) => {
            let n = std::env::var("CHRONIK_FUZZ_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(24u64);
            (0..n).map(|k| 0xC0FFEE + k).collect()
        }
    };
    let all = Rc::new(std::cell::RefCell::new([0u64; 5]));
    let many = seeds.len() > 1;
    for seed in seeds {
        eprintln!("fuzz seed {seed} (replay: CHRONIK_FUZZ_SEED={seed})");
        let (tx, rx) = std::sync::mpsc::channel();
        run(move || async move { tx.send(fuzz_one(seed, 600).await).unwrap() });
        let t = rx.recv().unwrap();
        for (a, b) in all.borrow_mut().iter_mut().zip(t) {
            *a += b;
        }
    }
    let t = *all.borrow();
    eprintln!(
        "fuzz totals: segments deleted {}, records relocated {}, cache misses {}, lossy crashes {}, segments recycled {}",
        t[0], t[1], t[2], t[3], t[4]
    );
    if many {
        // The fuzzer must reach the paths it claims to test.
        assert!(
            t.iter().all(|&x| x > 0),
            "fuzzer did not exercise every path: {t:?}"
        );
    }
}
