//! Unit tests of the WAL API over the in-memory disk and over real files.

use std::path::Path;
use std::rc::Rc;

use super::*;
use crate::testing::MemDisk;
use crate::{EntryKind, KafkaMeta};

pub(crate) fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .spawn(f)
        .expect("spawn executor")
        .join()
        .expect("executor thread");
}

fn opts(dir: &str) -> WalOptions {
    let mut o = WalOptions::new(dir);
    o.segment_bytes = crate::MIN_SEGMENT_BYTES;
    o.cache_bytes = 4096;
    // Unpaced preparation: no timers, so runs are deterministic.
    o.prepare_bytes_per_sec = u64::MAX;
    // Relocate at the first reclaim, so tests need not wait for segments to stop draining.
    o.relocate_after_ms = 0;
    o
}

fn data_meta(index: u64, term: u64, base: i64, n: i64, ts: i64) -> EntryMeta {
    EntryMeta {
        index,
        term,
        kind: EntryKind::Normal,
        kafka: Some(KafkaMeta {
            base_offset: base,
            last_offset: base + n - 1,
            max_timestamp: ts,
        }),
    }
}

fn payload(g: u64, i: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (g as usize * 31 + i as usize * 7 + k) as u8)
        .collect()
}

#[test]
fn append_read_flush_reopen_mem() {
    run(|| async {
        let disk = MemDisk::new();
        let o = opts("/wal");
        let (wal, rep) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
        assert_eq!(rep.segments, 0);
        wal.create_group(1).unwrap();
        wal.create_group(2).unwrap();
        wal.create_group(1).unwrap(); // idempotent
        let mut lsn = 0;
        for i in 1..=50u64 {
            for g in [1u64, 2] {
                let p = payload(g, i, 400 + i as usize * 10);
                lsn = wal
                    .append(
                        g,
                        data_meta(i, 1, (i as i64 - 1) * 10, 10, 1000 + i as i64),
                        &p,
                    )
                    .unwrap();
            }
            wal.check_invariants();
        }
        // Visible before flush.
        let got = wal.read_entries(1, 1, 51, u64::MAX).unwrap();
        assert_eq!(got.len(), 50);
        assert_eq!(&got[4].1[..], &payload(1, 5, 450)[..]);
        assert!(wal.durable_lsn() < lsn);
        let d = wal.flush().await.unwrap();
        assert!(d >= lsn);
        wal.check_invariants();
        // Rolled at least once with 64 KiB segments.
        assert!(wal.metrics().segments > 1, "{:?}", wal.metrics());
        // Cache is tiny: old entries come back from disk, byte-identical.
        let got = wal.read_entries(2, 1, 51, u64::MAX).unwrap();
        for (k, (m, b)) in got.iter().enumerate() {
            let i = k as u64 + 1;
            assert_eq!(m.index, i);
            assert_eq!(&b[..], &payload(2, i, 400 + i as usize * 10)[..]);
        }
        assert!(wal.metrics().cache_misses > 0);
        wal.set_hard_state(
            1,
            &HardState {
                term: 1,
                vote: 3,
                commit: 40,
            },
        )
        .unwrap();
        let cs = ConfState {
            voters: vec![1, 2, 3],
            ..ConfState::default()
        };
        wal.set_conf_state(1, &cs).unwrap();
        wal.truncate_suffix(2, 45).unwrap();
        wal.compact_prefix(1, 11, 1).unwrap();
        wal.set_log_start_offset(1, 105).unwrap();
        wal.flush().await.unwrap();
        let s1 = wal.group_state(1).unwrap();
        let s2 = wal.group_state(2).unwrap();
        assert_eq!(
            (s1.first_index, s1.last_index, s1.snapshot_index),
            (11, 50, 10)
        );
        assert_eq!((s1.log_start_offset, s1.next_offset), (105, 500));
        assert_eq!(
            (s2.first_index, s2.last_index, s2.next_offset),
            (1, 44, 440)
        );
        drop(wal);
        disk.crash_keep_all();
        let (wal, rep) = Wal::open_with_disk(o, disk.clone()).await.unwrap();
        assert_eq!(rep.truncated_tail_bytes, 0);
        assert_eq!(wal.group_state(1).unwrap(), s1);
        assert_eq!(wal.group_state(2).unwrap(), s2);
        assert_eq!(wal.group_state(1).unwrap().hard_state.commit, 40);
        assert_eq!(wal.group_state(1).unwrap().conf_state, cs);
        assert_eq!(wal.term(1, 10), Some(1));
        let got = wal.read_entries(1, 11, 51, u64::MAX).unwrap();
        assert_eq!(got.len(), 40);
        assert_eq!(&got[0].1[..], &payload(1, 11, 510)[..]);
        wal.check_invariants();
        // Appends continue after recovery.
        wal.append(2, data_meta(45, 2, 440, 5, 9), b"x").unwrap();
        wal.flush().await.unwrap();
        assert_eq!(wal.group_state(2).unwrap().next_offset, 445);
    });
}

/// A payload CRC supplied by the caller (`append_shared_with_crc`) writes exactly the bytes
/// `append_shared` writes, and those records pass recovery and disk reads.
#[test]
fn known_payload_crc_writes_identical_records() {
    run(|| async {
        let disk = MemDisk::new();
        let mut files = Vec::new();
        for (dir, known) in [("/computed", false), ("/known", true)] {
            let o = opts(dir);
            let (wal, _) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
            wal.create_group(1).unwrap();
            for i in 1..=40u64 {
                let p = bytes::Bytes::from(payload(1, i, 100 + i as usize * 97));
                let meta = data_meta(i, 1, (i as i64 - 1) * 3, 3, i as i64);
                if known {
                    let crc = crc32c::crc32c(&p);
                    wal.append_shared_with_crc(1, meta, p, crc).unwrap();
                } else {
                    wal.append_shared(1, meta, p).unwrap();
                }
            }
            wal.flush().await.unwrap();
            drop(wal);
            let mut paths: Vec<_> = disk
                .paths()
                .into_iter()
                .filter(|p| p.starts_with(dir))
                .collect();
            paths.sort();
            assert!(paths.len() > 1, "rolled: {paths:?}");
            files.push(
                paths
                    .iter()
                    .map(|p| {
                        (
                            p.file_name().unwrap().to_owned(),
                            disk.file_bytes(p).unwrap(),
                        )
                    })
                    .collect::<Vec<_>>(),
            );
            // Recovery verifies every record's CRC; the tiny cache makes reads go to disk.
            let (wal, rep) = Wal::open_with_disk(o, disk.clone()).await.unwrap();
            assert_eq!(rep.truncated_tail_bytes, 0);
            let got = wal.read_entries(1, 1, 41, u64::MAX).unwrap();
            assert_eq!(got.len(), 40);
            for (k, (_, b)) in got.iter().enumerate() {
                let i = k as u64 + 1;
                assert_eq!(&b[..], &payload(1, i, 100 + i as usize * 97)[..]);
            }
        }
        assert!(files[0] == files[1], "segment files differ");
    });
}

#[test]
fn kafka_reads_by_offset_timestamp_and_retention() {
    run(|| async {
        let disk = MemDisk::new();
        let (wal, _) = Wal::open_with_disk(opts("/wal"), disk).await.unwrap();
        wal.create_group(5).unwrap();
        // Entries: 1 data(0..9), 2 no-op, 3 data(10..19), 4 data(20..29)...
        let mut idx = 0;
        let mut base = 0;
        for k in 0..10 {
            idx += 1;
            if k == 1 {
                let m = EntryMeta {
                    index: idx,
                    term: 1,
                    kind: EntryKind::Normal,
                    kafka: None,
                };
                wal.append(5, m, b"").unwrap();
                continue;
            }
            wal.append(
                5,
                data_meta(idx, 1, base, 10, 100 * k as i64),
                &payload(5, idx, 1000),
            )
            .unwrap();
            base += 10;
        }
        let all = wal.read_batches(5, 0, i64::MAX, usize::MAX).await.unwrap();
        assert_eq!(all.len(), 9);
        let some = wal.read_batches(5, 15, 39, usize::MAX).await.unwrap();
        assert_eq!(
            some.len(),
            2,
            "batches 10..19 and 20..29 (30..39 reaches the watermark)"
        );
        assert_eq!(&some[0][..], &payload(5, 3, 1000)[..]);
        let one = wal.read_batches(5, 0, i64::MAX, 1).await.unwrap();
        assert_eq!(one.len(), 1, "at least one whole batch");
        let two = wal.read_batches(5, 0, i64::MAX, 2000).await.unwrap();
        assert_eq!(two.len(), 2);
        assert!(wal
            .read_batches(5, 1000, i64::MAX, 100)
            .await
            .unwrap()
            .is_empty());
        let m = wal.find_by_timestamp(5, 250).unwrap();
        assert_eq!(m.index, 4);
        assert_eq!(m.kafka.unwrap().base_offset, 20);
        assert!(wal.find_by_timestamp(5, 10_000).is_none());
        // Retention: keep <= 3000 bytes -> drop the first 6 data entries (indexes 1,3..7).
        assert_eq!(wal.retention_point(5, -1, 3000, 0), Some(8));
        // Time: older than 1000-550=450 (timestamps 0,200,300,400 at indexes 1,3,4,5).
        assert_eq!(wal.retention_point(5, 550, -1, 1000), Some(6));
        assert_eq!(wal.retention_point(5, -1, -1, 1000), None);
        wal.compact_prefix(5, 5, 1).unwrap();
        let s = wal.group_state(5).unwrap();
        assert_eq!((s.log_start_offset, s.next_offset), (30, 90));
        wal.check_invariants();
    });
}

#[test]
fn invalid_arguments_are_errors_not_panics() {
    run(|| async {
        let (wal, _) = Wal::open_with_disk(opts("/wal"), MemDisk::new())
            .await
            .unwrap();
        let m = EntryMeta {
            index: 1,
            term: 1,
            kind: EntryKind::Normal,
            kafka: None,
        };
        assert!(matches!(
            wal.append(9, m, b""),
            Err(StorageError::InvalidArgument(_))
        ));
        wal.create_group(9).unwrap();
        let bad = EntryMeta { index: 2, ..m };
        assert!(matches!(
            wal.append(9, bad, b""),
            Err(StorageError::InvalidArgument(_))
        ));
        wal.append(9, m, b"a").unwrap();
        assert!(wal.read_entries(9, 0, 2, 10).is_err());
        assert!(wal.read_entries(9, 1, 3, 10).is_err());
        let big = vec![0u8; crate::MIN_SEGMENT_BYTES as usize];
        assert!(matches!(
            wal.append(9, EntryMeta { index: 2, ..m }, &big),
            Err(StorageError::InvalidArgument(_))
        ));
        wal.compact_prefix(9, 2, 1).unwrap();
        assert!(wal.truncate_suffix(9, 1).is_err());
        assert!(
            wal.compact_prefix(9, 3, 7).is_ok(),
            "beyond the log: snapshot install"
        );
        assert_eq!(wal.group_state(9).unwrap().first_index, 3);
        wal.check_invariants();
    });
}

#[test]
fn real_files_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard-0");
    run(move || async move {
        let mut o = WalOptions::new(&path);
        o.segment_bytes = 1 << 20;
        let (wal, _) = Wal::open(o.clone()).await.unwrap();
        let wal = Rc::new(wal);
        for g in 0..4u64 {
            wal.create_group(g).unwrap();
        }
        for i in 1..=300u64 {
            for g in 0..4u64 {
                wal.append(
                    g,
                    data_meta(i, 1, (i as i64 - 1) * 3, 3, i as i64),
                    &payload(g, i, 5000),
                )
                .unwrap();
            }
            if i % 7 == 0 {
                wal.flush().await.unwrap();
            }
        }
        let lsn = wal.staged_lsn();
        assert_eq!(wal.flush().await.unwrap(), lsn);
        let m = wal.metrics();
        assert!(m.fsyncs > 0 && m.segments > 1, "{m:?}");
        drop(wal);
        let (wal, rep) = Wal::open(o).await.unwrap();
        assert_eq!(rep.entries, 1200);
        assert_eq!(rep.truncated_tail_bytes, 0);
        for g in 0..4u64 {
            let got = wal.read_entries(g, 1, 301, u64::MAX).unwrap();
            assert_eq!(got.len(), 300);
            for (k, (_, b)) in got.iter().enumerate() {
                assert_eq!(&b[..], &payload(g, k as u64 + 1, 5000)[..]);
            }
        }
        wal.check_invariants();
    });
}

/// Fetch reads of entries evicted from the cache go to the segment files through io_uring
/// (O_DIRECT, unaligned records) and come back byte for byte, batch limits respected.
#[test]
fn real_files_cache_miss_reads_are_async_and_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard-0");
    run(move || async move {
        let mut o = WalOptions::new(&path);
        o.segment_bytes = 1 << 20;
        o.cache_bytes = 4096;
        let (wal, _) = Wal::open(o).await.unwrap();
        for g in 0..3u64 {
            wal.create_group(g).unwrap();
        }
        // Odd sizes so records straddle 4 KiB blocks and segment rolls.
        let len = |g: u64, i: u64| 100 + ((g * 977 + i * 313) % 9000) as usize;
        for i in 1..=200u64 {
            for g in 0..3u64 {
                wal.append(
                    g,
                    data_meta(i, 1, (i as i64 - 1) * 2, 2, i as i64),
                    &payload(g, i, len(g, i)),
                )
                .unwrap();
            }
            if i % 9 == 0 {
                wal.flush().await.unwrap();
            }
        }
        wal.flush().await.unwrap();
        let misses_before = wal.metrics().cache_misses;
        for g in 0..3u64 {
            let mut offset = 0i64;
            let mut seen = 0u64;
            // Bounded: every round returns at least one batch (or the loop ends).
            while offset < 400 {
                let got = wal.read_batches(g, offset, 400, 20_000).await.unwrap();
                assert!(!got.is_empty(), "group {g} offset {offset}");
                let bytes: usize = got.iter().map(|b| b.len()).sum();
                assert!(got.len() == 1 || bytes <= 20_000, "{bytes}");
                for b in got {
                    seen += 1;
                    assert_eq!(&b[..], &payload(g, seen, len(g, seen))[..], "g{g} e{seen}");
                    offset += 2;
                }
            }
            assert_eq!(seen, 200);
        }
        assert!(wal.metrics().cache_misses >= misses_before + 590);
        wal.check_invariants();
    });
}

/// Reclaimed segments become spares and later rolls reuse them (real files, real renames); a
/// recycled newest segment whose end is followed by stale records of its previous life recovers
/// cleanly: nothing cut, nothing stale replayed.
#[test]
fn recycled_segments_are_reused_and_stale_records_never_replay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard-0");
    run(move || async move {
        let spares = |p: &std::path::Path| {
            std::fs::read_dir(p)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .and_then(|x| x.to_str())
                        == Some("spare")
                })
                .count()
        };
        let mut o = WalOptions::new(&path);
        o.segment_bytes = 1 << 20;
        // Recycling only (preparation has its own test).
        o.prepare_bytes_per_sec = 0;
        let (wal, _) = Wal::open(o.clone()).await.unwrap();
        wal.create_group(1).unwrap();
        // About five segments of group 1, then the group goes away: its segments are garbage.
        for i in 1..=1000u64 {
            wal.append(1, data_meta(i, 1, i as i64, 1, 0), &payload(1, i, 5000))
                .unwrap();
            if i % 50 == 0 {
                wal.flush().await.unwrap();
            }
        }
        wal.sync().await.unwrap();
        wal.remove_group(1).unwrap();
        wal.create_group(2).unwrap();
        wal.append(2, data_meta(1, 1, 0, 1, 0), &payload(2, 1, 5000))
            .unwrap();
        wal.sync().await.unwrap();
        let rep = wal.reclaim().await.unwrap();
        assert!(rep.segments_deleted >= 4, "{rep:?}");
        assert_eq!(spares(&path), o.recycle_segments);
        // Group 2 fills one and a half segments: both rolls take spares, so the newest segment
        // is a recycled file with group 1's old records after its end.
        for i in 2..=300u64 {
            wal.append(2, data_meta(i, 1, i as i64 - 1, 1, 0), &payload(2, i, 5000))
                .unwrap();
            if i % 50 == 0 {
                wal.flush().await.unwrap();
            }
        }
        wal.sync().await.unwrap();
        assert_eq!(wal.metrics().segments_recycled, 2);
        assert_eq!(spares(&path), 0);
        drop(wal);
        let (wal, rep) = Wal::open(o.clone()).await.unwrap();
        assert_eq!(
            rep.truncated_tail_bytes, 0,
            "stale records are not a torn tail"
        );
        assert_eq!(wal.groups(), vec![2]);
        let got = wal.read_entries(2, 1, 301, u64::MAX).unwrap();
        assert_eq!(got.len(), 300);
        for (k, (_, b)) in got.iter().enumerate() {
            assert_eq!(&b[..], &payload(2, k as u64 + 1, 5000)[..]);
        }
        // Appends continue in the recycled file after the restart and survive another one.
        wal.append(2, data_meta(301, 1, 300, 1, 0), &payload(2, 301, 5000))
            .unwrap();
        wal.sync().await.unwrap();
        wal.check_invariants();
        drop(wal);
        let (wal, rep) = Wal::open(o).await.unwrap();
        assert_eq!(rep.truncated_tail_bytes, 0);
        assert_eq!(wal.group_state(2).unwrap().last_index, 301);
    });
}

/// A roll into a recycled file does not wait for the directory fsync, so after a crash the
/// file holding acknowledged records may still carry its spare name, or even its old segment
/// name: recovery knows it by its header and gives it its name back.
#[test]
fn reused_file_under_its_old_name_is_adopted_by_its_header() {
    run(|| async {
        use crate::disk::Disk;
        for old_name_is_segment in [false, true] {
            let disk = MemDisk::new();
            let mut o = opts("/wal");
            o.recycle_segments = 1;
            o.prepare_bytes_per_sec = 0;
            let (wal, _) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
            wal.create_group(1).unwrap();
            fill(&wal, 1, 1, 200, 700).await;
            wal.sync().await.unwrap();
            wal.remove_group(1).unwrap();
            wal.create_group(2).unwrap();
            wal.sync().await.unwrap();
            wal.reclaim().await.unwrap();
            let spare = disk
                .paths()
                .into_iter()
                .find(|p| p.extension().is_some_and(|x| x == "spare"))
                .expect("a spare");
            // Group 2 rolls into the spare; every record is acknowledged (synced).
            let mut i = 1;
            while wal.metrics().segments_recycled == 0 {
                fill(&wal, 2, i, 10, 700).await;
                wal.sync().await.unwrap();
                i += 10;
            }
            fill(&wal, 2, i, 10, 700).await;
            wal.sync().await.unwrap();
            let last = i + 9;
            let newest = disk.paths().into_iter().max().unwrap();
            drop(wal);
            disk.crash_keep_all();
            // The renames were lost: the reused file is back under its spare name (or under
            // the segment name it had before it became a spare).
            let bytes = disk.file_bytes(&newest).unwrap();
            disk.remove(&newest).await.unwrap();
            let old = if old_name_is_segment {
                spare.with_extension("wal")
            } else {
                spare.clone()
            };
            disk.set_file_bytes(&old, bytes);
            let (wal, rep) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
            assert_eq!(rep.truncated_tail_bytes, 0);
            assert_eq!(wal.group_state(2).unwrap().last_index, last);
            let got = wal.read_entries(2, 1, last + 1, u64::MAX).unwrap();
            assert_eq!(got.len() as u64, last);
            assert!(disk.paths().contains(&newest), "adopted under its own name");
            assert!(!disk.paths().contains(&old));
            wal.check_invariants();
        }
    });
}

/// A brand-new WAL starts in a zero-filled first segment of `FIRST_SEGMENT_BYTES` (capped at
/// the segment size) and prepares zero-filled spares in the background, each twice the size of
/// the active segment, which later rolls take (real files).
#[test]
fn new_segments_are_prepared_zero_filled_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard-0");
    run(move || async move {
        let mut o = WalOptions::new(&path);
        o.segment_bytes = 64 << 20;
        o.prepare_bytes_per_sec = u64::MAX;
        let (wal, _) = Wal::open(o.clone()).await.unwrap();
        let first = path.join(format!("{:020}.wal", 0));
        assert_eq!(
            std::fs::metadata(&first).unwrap().len(),
            crate::prepare::FIRST_SEGMENT_BYTES
        );
        assert!(std::fs::read(&first).unwrap().iter().all(|&b| b == 0));
        wal.create_group(1).unwrap();
        let mut i = 1u64;
        // 16 + 32 MiB of segments, then into the third: every roll takes a prepared spare.
        while wal.staged_lsn() < (16 + 32 + 1) << 20 {
            wal.append(1, data_meta(i, 1, i as i64, 1, 0), &payload(1, i, 64 << 10))
                .unwrap();
            if i.is_multiple_of(16) {
                wal.flush().await.unwrap();
                // Let the preparation task run between rounds.
                glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            }
            i += 1;
        }
        wal.sync().await.unwrap();
        let m = wal.metrics();
        assert!(m.segments_prepared >= 2, "{m:?}");
        assert_eq!(
            m.segments_recycled, 2,
            "both rolls took a prepared spare: {m:?}"
        );
        let mut sizes: Vec<u64> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "wal"))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .collect();
        sizes.sort();
        assert_eq!(sizes, vec![16 << 20, 32 << 20, 64 << 20]);
        drop(wal);
        let (wal, rep) = Wal::open(o).await.unwrap();
        assert_eq!(rep.truncated_tail_bytes, 0);
        assert_eq!(wal.group_state(1).unwrap().last_index, i - 1);
        wal.check_invariants();
    });
}

async fn fill(wal: &Wal, g: u64, from: u64, n: u64, len: usize) -> u64 {
    let mut lsn = 0;
    for i in from..from + n {
        let m = EntryMeta {
            index: i,
            term: 1,
            kind: EntryKind::Normal,
            kafka: None,
        };
        lsn = wal.append(g, m, &payload(g, i, len)).unwrap();
    }
    lsn
}

#[test]
fn enospc_mid_append_is_an_error_and_durable_data_survives() {
    run(|| async {
        let disk = MemDisk::new();
        let o = opts("/wal");
        let (wal, _) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
        wal.create_group(1).unwrap();
        fill(&wal, 1, 1, 20, 1000).await;
        let durable = wal.flush().await.unwrap();
        // Only 8 KiB more fit on the device.
        disk.set_write_budget(Some(8192));
        fill(&wal, 1, 21, 40, 1000).await;
        let err = wal.flush().await.unwrap_err();
        assert!(matches!(err, StorageError::NoSpace), "{err}");
        assert_eq!(wal.durable_lsn(), durable);
        assert!(wal.is_failed());
        // The shard stays up: reads work, writes are refused.
        assert_eq!(wal.read_entries(1, 1, 61, u64::MAX).unwrap().len(), 60);
        let m = EntryMeta {
            index: 61,
            term: 1,
            kind: EntryKind::Normal,
            kafka: None,
        };
        assert!(matches!(
            wal.append(1, m, b"x"),
            Err(StorageError::Unavailable)
        ));
        assert!(matches!(wal.flush().await, Err(StorageError::Unavailable)));
        drop(wal);
        disk.set_write_budget(None);
        disk.crash(99);
        let (wal, _) = Wal::open_with_disk(o, disk.clone()).await.unwrap();
        let st = wal.group_state(1).unwrap();
        assert!(st.last_index >= 20, "durable entries lost: {st:?}");
        for (k, (_, b)) in wal
            .read_entries(1, 1, st.last_index + 1, u64::MAX)
            .unwrap()
            .iter()
            .enumerate()
        {
            assert_eq!(&b[..], &payload(1, k as u64 + 1, 1000)[..]);
        }
        wal.check_invariants();
    });
}

/// Both ways of making a round durable: a failed fdatasync after the write, and a failed
/// O_DSYNC write (write-through: the kernel's cache flush inside the write failed).
#[test]
fn failed_fdatasync_is_an_error_and_nothing_acknowledged_is_damaged() {
    for through in [false, true] {
        failed_fdatasync_case(through);
    }
}

fn failed_fdatasync_case(through: bool) {
    run(move || async move {
        let disk = MemDisk::new();
        let mut o = opts("/wal");
        o.write_through = through;
        let (wal, _) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
        wal.create_group(3).unwrap();
        fill(&wal, 3, 1, 10, 500).await;
        let durable = wal.flush().await.unwrap();
        disk.fail_fsync_after(Some(0));
        fill(&wal, 3, 11, 10, 500).await;
        match wal.flush().await {
            Err(StorageError::Io { op, .. }) => {
                assert_eq!(op, if through { "write" } else { "fdatasync" })
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
        assert_eq!(
            wal.durable_lsn(),
            durable,
            "a failed sync must not advance durability"
        );
        assert!(matches!(
            wal.set_hard_state(3, &HardState::default()),
            Err(StorageError::Unavailable)
        ));
        drop(wal);
        disk.fail_fsync_after(None);
        for seed in 0..4 {
            disk.crash(seed);
            let (wal, _) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
            let st = wal.group_state(3).unwrap();
            assert!(
                st.last_index >= 10,
                "seed {seed}: acknowledged entries lost"
            );
            let got = wal.read_entries(3, 1, st.last_index + 1, u64::MAX).unwrap();
            for (k, (_, b)) in got.iter().enumerate() {
                assert_eq!(&b[..], &payload(3, k as u64 + 1, 500)[..], "seed {seed}");
            }
        }
    });
}

/// 64 groups on 64 tasks each append then flush: rounds are shared (group commit), so far fewer
/// fdatasyncs than appends happen, and every flush returns only once its append is durable.
#[test]
fn concurrent_flushes_share_rounds() {
    run(|| async {
        let disk = MemDisk::new();
        let (wal, _) = Wal::open_with_disk(opts("/wal"), disk.clone())
            .await
            .unwrap();
        let wal = Rc::new(wal);
        let mut tasks = Vec::new();
        for g in 0..64u64 {
            wal.create_group(g).unwrap();
            let wal = wal.clone();
            tasks.push(glommio::spawn_local(async move {
                for i in 1..=20u64 {
                    let m = EntryMeta {
                        index: i,
                        term: 1,
                        kind: EntryKind::Normal,
                        kafka: None,
                    };
                    let lsn = wal.append(g, m, &payload(g, i, 100)).unwrap();
                    let d = wal.flush().await.unwrap();
                    assert!(d >= lsn && wal.durable_lsn() >= lsn);
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        let (_, fsyncs) = disk.io_counts();
        let m = wal.metrics();
        assert_eq!(m.appends, 64 * 20);
        assert!(
            fsyncs * 10 < m.appends,
            "group commit not coalescing: {fsyncs} fsyncs for {} appends",
            m.appends
        );
        wal.check_invariants();
    });
}

/// `relocate_after_ms`: records in a segment that retention is still draining are not copied;
/// once its live bytes stop shrinking for that long, they are.
#[test]
fn reclaim_relocates_only_segments_that_stopped_draining() {
    run(|| async {
        let disk = MemDisk::new();
        let mut o = opts("/wal");
        o.relocate_after_ms = 300;
        let (wal, _) = Wal::open_with_disk(o, disk).await.unwrap();
        wal.create_group(1).unwrap();
        // Group 1 fills two segments and a bit, then compacts most of the first away, leaving
        // it below the relocation threshold and pinned.
        let mut next = 1;
        while wal.metrics().segments < 3 {
            fill(&wal, 1, next, 10, 1000).await;
            next += 10;
            wal.flush().await.unwrap();
        }
        // Entries in the first segment; keep 12 of them (under 25% of it, not none).
        let per_seg = (crate::MIN_SEGMENT_BYTES - SEGMENT_HEADER_BYTES as u64)
            / (1000 + RECORD_HEADER_BYTES as u64);
        let mut start = per_seg - 12;
        let first_live = |wal: &Wal| wal.inner.borrow().segments[0].live_entries;
        wal.compact_prefix(1, start, 1).unwrap();
        wal.sync().await.unwrap();
        let segs = wal.metrics().segments;
        // Draining: each pass deletes a little more of the pinned segment; nothing is copied.
        for _ in 0..4 {
            glommio::timer::sleep(Duration::from_millis(100)).await;
            assert_eq!(wal.reclaim().await.unwrap().records_relocated, 0);
            start += 1;
            wal.compact_prefix(1, start, 1).unwrap();
            wal.sync().await.unwrap();
        }
        assert_eq!(wal.metrics().relocated_records, 0);
        assert_eq!(wal.metrics().segments, segs, "the pinned segment stays");
        assert!(
            first_live(&wal) > 0,
            "the first segment still holds entries"
        );
        // Stopped draining: not yet copied before the wait is over, then copied and deleted.
        assert_eq!(wal.reclaim().await.unwrap().records_relocated, 0);
        glommio::timer::sleep(Duration::from_millis(150)).await;
        assert_eq!(wal.reclaim().await.unwrap().records_relocated, 0);
        glommio::timer::sleep(Duration::from_millis(250)).await;
        let rep = wal.reclaim().await.unwrap();
        assert!(
            rep.records_relocated > 0 && rep.segments_deleted > 0,
            "{rep:?}"
        );
        wal.check_invariants();
        let got = wal.read_entries(1, start, start + 1, u64::MAX).unwrap();
        assert_eq!(&got[0].1[..], &payload(1, start, 1000)[..]);
    });
}

/// A segment held only by state records (a group's creation, no live entry) is not waited on:
/// its few records move forward at the first reclaim, whatever `relocate_after_ms` says.
#[test]
fn segments_held_only_by_state_records_are_freed_at_once() {
    run(|| async {
        let mut o = opts("/wal");
        o.relocate_after_ms = 60_000;
        let (wal, _) = Wal::open_with_disk(o, MemDisk::new()).await.unwrap();
        wal.create_group(1).unwrap();
        wal.create_group(2).unwrap();
        let mut next = 1;
        while wal.metrics().segments < 3 {
            fill(&wal, 2, next, 10, 1000).await;
            next += 10;
            wal.flush().await.unwrap();
        }
        wal.compact_prefix(2, next - 1, 1).unwrap();
        wal.sync().await.unwrap();
        let rep = wal.reclaim().await.unwrap();
        assert!(rep.segments_deleted >= 2, "{rep:?}");
        assert!(wal.group_state(1).is_some());
        wal.check_invariants();
    });
}

/// One idle group that wrote once at the start must not pin old segments forever: reclaim
/// rewrites its entry and state forward, deletes the segments, and a restart still finds them.
#[test]
fn idle_group_does_not_pin_segments() {
    run(|| async {
        let disk = MemDisk::new();
        let o = opts("/wal");
        let (wal, _) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
        wal.create_group(1).unwrap();
        wal.create_group(2).unwrap();
        let m = EntryMeta {
            index: 1,
            term: 1,
            kind: EntryKind::Normal,
            kafka: None,
        };
        wal.append(1, m, b"idle group's only entry").unwrap();
        wal.set_hard_state(
            1,
            &HardState {
                term: 1,
                vote: 1,
                commit: 1,
            },
        )
        .unwrap();
        // The busy group writes ~20 segments, compacting behind itself.
        let mut next = 1;
        for _ in 0..40 {
            fill(&wal, 2, next, 30, 1000).await;
            next += 30;
            wal.compact_prefix(2, next - 5, 1).unwrap();
            wal.sync().await.unwrap();
            wal.reclaim().await.unwrap();
            wal.check_invariants();
        }
        let st = wal.metrics();
        assert!(
            st.segments_deleted > 10 && st.relocated_records > 0,
            "{st:?}"
        );
        assert!(st.segments <= 3, "old segments still pinned: {st:?}");
        drop(wal);
        disk.crash_keep_all();
        let (wal, _) = Wal::open_with_disk(o, disk).await.unwrap();
        let got = wal.read_entries(1, 1, 2, u64::MAX).unwrap();
        assert_eq!(&got[0].1[..], b"idle group's only entry");
        assert_eq!(wal.group_state(1).unwrap().hard_state.commit, 1);
        assert_eq!(wal.group_state(2).unwrap().last_index, next - 1);
        wal.check_invariants();
    });
}

#[test]
fn periodic_mode_syncs_in_background() {
    run(|| async {
        let disk = MemDisk::new();
        let mut o = opts("/wal");
        o.sync_mode = SyncMode::Periodic;
        o.sync_interval_ms = 2;
        let (wal, _) = Wal::open_with_disk(o, disk).await.unwrap();
        let wal = Rc::new(wal);
        let task = glommio::spawn_local(wal.clone().run_periodic_sync());
        wal.create_group(1).unwrap();
        let lsn = fill(&wal, 1, 1, 10, 100).await;
        // flush() in periodic mode writes but does not wait for the sync.
        wal.flush().await.unwrap();
        assert!(wal.written_lsn() >= lsn);
        let mut waited = 0;
        while wal.durable_lsn() < lsn {
            assert!(waited < 1000, "periodic sync never happened");
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            waited += 1;
        }
        drop(wal);
        task.await; // ends once it holds the last reference
    });
}

fn det_len(g: u64, i: u64) -> usize {
    ((g * 7919 + i * 104_729) % 3000) as usize
}

/// Appenders (always mode), compaction, explicit syncs and reclamation run concurrently, so
/// write and sync phases overlap and segments are deleted under load; then the disk loses
/// every unsynced block at random. Every append whose flush returned must survive.
#[test]
fn concurrent_load_with_reclaim_then_crash_keeps_acknowledged() {
    use rand::{Rng, SeedableRng};
    use std::cell::RefCell;
    for seed in 0..6u64 {
        // Odd seeds write through (O_DSYNC), even ones write and then fdatasync.
        let through = seed % 2 == 1;
        eprintln!("concurrent crash seed {seed} write-through {through}");
        run(move || async move {
            let disk = MemDisk::new();
            let mut o = opts("/wal");
            o.write_through = through;
            let (wal, _) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
            let wal = Rc::new(wal);
            let acked = Rc::new(RefCell::new(vec![0u64; 8]));
            let mut tasks = Vec::new();
            for g in 0..8u64 {
                wal.create_group(g).unwrap();
                let (wal, acked) = (wal.clone(), acked.clone());
                tasks.push(glommio::spawn_local(async move {
                    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed * 100 + g);
                    for i in 1..=60u64 {
                        let m = EntryMeta {
                            index: i,
                            term: 1,
                            kind: EntryKind::Normal,
                            kafka: None,
                        };
                        wal.append(g, m, &payload(g, i, det_len(g, i))).unwrap();
                        if i > 20 && rng.gen_bool(0.2) {
                            wal.compact_prefix(g, i - 10, 1).unwrap();
                        }
                        if rng.gen_bool(0.7) {
                            wal.flush().await.unwrap();
                            acked.borrow_mut()[g as usize] = i;
                        } else {
                            futures_lite::future::yield_now().await;
                        }
                    }
                }));
            }
            let side = {
                let wal = wal.clone();
                glommio::spawn_local(async move {
                    for k in 0..40 {
                        if k % 2 == 0 {
                            wal.sync().await.unwrap();
                        } else {
                            wal.reclaim().await.unwrap();
                        }
                        futures_lite::future::yield_now().await;
                    }
                })
            };
            for t in tasks {
                t.await;
            }
            side.await;
            wal.check_invariants();
            let deleted = wal.metrics().segments_deleted;
            let wal = Rc::try_unwrap(wal).ok().expect("tasks done");
            drop(wal);
            disk.crash(seed);
            let (wal, _) = Wal::open_with_disk(o, disk)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            for g in 0..8u64 {
                let a = acked.borrow()[g as usize];
                let st = wal.group_state(g).unwrap();
                assert!(
                    st.last_index >= a,
                    "seed {seed} group {g}: acked {a}, recovered {st:?}"
                );
                let got = wal
                    .read_entries(g, st.first_index, a.max(st.first_index - 1) + 1, u64::MAX)
                    .unwrap();
                for (m, b) in &got {
                    assert_eq!(
                        &b[..],
                        &payload(g, m.index, det_len(g, m.index))[..],
                        "seed {seed} g {g}"
                    );
                }
            }
            wal.check_invariants();
            eprintln!("  segments deleted under load: {deleted}");
        });
    }
}

/// A roll whose new segment got a file but never its header (crash between create and the
/// first write) leaves an empty or garbage newest file: recovery removes it and continues from
/// the previous segment. Zero padding after the last record is the normal end, not damage.
#[test]
fn recovery_removes_unwritten_newest_segment_and_accepts_zero_padding() {
    run(|| async {
        let disk = MemDisk::new();
        let o = opts("/wal");
        let (wal, _) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
        wal.create_group(1).unwrap();
        fill(&wal, 1, 1, 10, 700).await;
        wal.sync().await.unwrap();
        drop(wal);
        disk.crash_keep_all();
        // Zero padding only: clean recovery, nothing cut.
        let paths = disk.paths();
        let last = paths.last().unwrap().clone();
        let mut bytes = disk.file_bytes(&last).unwrap();
        bytes.extend_from_slice(&[0u8; 8192]);
        disk.set_file_bytes(&last, bytes);
        let (wal, rep) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
        assert_eq!(rep.truncated_tail_bytes, 0);
        let lsn = wal.staged_lsn();
        drop(wal);
        // A newer segment file with a garbage header and no records.
        let bogus = crate::recovery::segment_path(&o.dir, lsn);
        disk.set_file_bytes(&bogus, vec![0xEE; 100]);
        let (wal, rep) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
        assert_eq!(rep.truncated_tail_bytes, 100);
        assert!(!disk.paths().contains(&bogus));
        assert_eq!(wal.group_state(1).unwrap().last_index, 10);
        // A sealed segment that ends before its successor's base is corruption.
        fill(&wal, 1, 11, 200, 700).await;
        wal.sync().await.unwrap();
        drop(wal);
        disk.crash_keep_all();
        let paths = disk.paths();
        let first = paths[0].clone();
        // Files are preallocated: the data of segment 0 ends where segment 1 begins.
        let next_base: usize = paths[1]
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let mut bytes = disk.file_bytes(&first).unwrap();
        bytes.truncate(next_base - 5000);
        disk.set_file_bytes(&first, bytes);
        match Wal::open_with_disk(o, disk).await {
            Err(StorageError::Corrupt { path, .. }) => assert_eq!(path, first),
            Err(e) => panic!("expected Corrupt, got {e}"),
            Ok(_) => panic!("a damaged sealed segment was accepted"),
        }
    });
}

/// One appender in always mode: exactly one write and one device flush per flush (an
/// fdatasync, or the flush inside an O_DSYNC write).
#[test]
fn one_fdatasync_per_flush_at_low_load() {
    for through in [false, true] {
        one_fdatasync_per_flush_case(through);
    }
}

fn one_fdatasync_per_flush_case(through: bool) {
    run(move || async move {
        let disk = MemDisk::new();
        let mut o = opts("/wal");
        o.write_through = through;
        let (wal, _) = Wal::open_with_disk(o, disk.clone()).await.unwrap();
        wal.create_group(1).unwrap();
        wal.flush().await.unwrap();
        let (w0, s0) = disk.io_counts();
        for i in 1..=50u64 {
            let m = EntryMeta {
                index: i,
                term: 1,
                kind: EntryKind::Normal,
                kafka: None,
            };
            wal.append(1, m, b"x").unwrap();
            wal.flush().await.unwrap();
        }
        let (w1, s1) = disk.io_counts();
        assert_eq!((w1 - w0, s1 - s0), (50, 50));
    });
}

#[test]
fn one_fdatasync_per_flush_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w");
    run(move || async move {
        let (wal, _) = Wal::open(WalOptions::new(&path)).await.unwrap();
        wal.create_group(1).unwrap();
        wal.flush().await.unwrap();
        let f0 = wal.metrics().fsyncs;
        for i in 1..=50u64 {
            let m = EntryMeta {
                index: i,
                term: 1,
                kind: EntryKind::Normal,
                kafka: None,
            };
            wal.append(1, m, b"x").unwrap();
            wal.flush().await.unwrap();
        }
        assert_eq!(wal.metrics().fsyncs - f0, 50);
    });
}

/// Log compaction's replace: the newest copy wins at reads and after recovery, header-only
/// payloads are skipped by fetch, a stale meta changes nothing, and the segments that held the
/// originals are reclaimed.
#[test]
fn replaced_payloads_win_over_originals_and_free_their_segments() {
    run(|| async {
        let disk = MemDisk::new();
        let o = opts("/wal");
        let (wal, _) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
        wal.create_group(1).unwrap();
        // 60 entries of 3 offsets each, ~2 KiB: several 64 KiB segments.
        let n = 60u64;
        for i in 1..=n {
            let m = data_meta(i, 1, (i as i64 - 1) * 3, 3, 100 + i as i64);
            wal.append(1, m, &payload(1, i, 2000)).unwrap();
        }
        wal.flush().await.unwrap();
        let segments_before = wal.metrics().segments;
        assert!(segments_before >= 2, "{:?}", wal.metrics());
        let metas = wal.entry_metas(1, 1, n + 1);
        // Replace every entry but the last: even ones with a 100-byte payload, odd ones with a
        // header-only one.
        let empty = vec![7u8; EMPTY_KAFKA_BATCH_BYTES as usize];
        for m in &metas[..metas.len() - 1] {
            let new: Vec<u8> = if m.index % 2 == 0 {
                payload(9, m.index, 100)
            } else {
                empty.clone()
            };
            assert!(wal.replace_payload(1, m, &new).unwrap().is_some());
            wal.check_invariants();
        }
        // A meta that no longer describes the entry (other term) changes nothing.
        let mut stale = metas[0];
        stale.term = 9;
        assert_eq!(wal.replace_payload(1, &stale, b"nope").unwrap(), None);
        let check = |wal: &Wal| {
            let got = wal.read_entries(1, 1, n + 1, u64::MAX).unwrap();
            for (m, b) in &got {
                let want: Vec<u8> = if m.index == n {
                    payload(1, n, 2000)
                } else if m.index % 2 == 0 {
                    payload(9, m.index, 100)
                } else {
                    empty.clone()
                };
                assert_eq!(&b[..], &want[..], "entry {}", m.index);
                assert_eq!(m.kafka, metas[m.index as usize - 1].kafka);
            }
        };
        check(&wal);
        // Fetch skips header-only entries and returns each remaining batch once, in order.
        let batches = wal.read_batches(1, 0, i64::MAX, usize::MAX).await.unwrap();
        assert_eq!(batches.len(), (n as usize - 1) / 2 + 1);
        let with_meta = wal
            .read_data_entries(1, 0, i64::MAX, usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            with_meta.len(),
            n as usize,
            "read_data_entries does not skip"
        );
        let st = wal.group_state(1).unwrap();
        assert_eq!(st.next_offset, n as i64 * 3);
        // Offsets of entries 1..=3 lie in header-only entry 1 and the 100-byte entry 2.
        let (from, total) = wal.data_bytes(1, 3);
        let empties = (n - 1).div_ceil(2) * EMPTY_KAFKA_BATCH_BYTES as u64;
        assert_eq!(
            total,
            st.size_bytes - empties,
            "header-only batches count as nothing"
        );
        assert_eq!(from, total);
        let (from, _) = wal.data_bytes(1, 6);
        assert_eq!(total - from, 100, "entry 2 is below offset 6");
        // Entry 1 is header-only, entry 2 is not: the log before entry 2 holds no record.
        assert_eq!(wal.empty_prefix_end(1), Some(2));
        wal.flush().await.unwrap();
        // The originals no longer pin their segments: reclaim deletes them.
        let rep = wal.reclaim().await.unwrap();
        assert!(rep.segments_deleted >= 1, "{rep:?} {:?}", wal.metrics());
        wal.check_invariants();
        check(&wal);
        drop(wal);
        disk.crash_keep_all();
        let (wal, _) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
        wal.check_invariants();
        check(&wal);
        assert_eq!(wal.group_state(1).unwrap().size_bytes, st.size_bytes);
        // A second round of replacement after recovery, then a crash that loses nothing
        // unsynced (the flush below is durable in `always` mode).
        let m = wal.entry_metas(1, 2, 3)[0];
        assert!(wal.replace_payload(1, &m, &empty).unwrap().is_some());
        wal.flush().await.unwrap();
        drop(wal);
        disk.crash_keep_all();
        let (wal, _) = Wal::open_with_disk(o, disk).await.unwrap();
        let got = wal.read_entries(1, 2, 3, u64::MAX).unwrap();
        assert_eq!(&got[0].1[..], &empty[..]);
        wal.check_invariants();
    });
}

/// Write-through with a sync in flight: a round of several writes (an entry over one 1 MiB
/// staging chunk) is written plainly and waits in its fdatasync; a small append flushed meanwhile
/// must not be written through and report the big one durable with it: the disk models the
/// O_DSYNC write as FUA (only its own bytes durable), so the big entry is not durable until its
/// fdatasync returns. A crash at that moment then recovers a consistent WAL.
#[test]
fn write_through_never_reports_an_unsynced_round_durable() {
    run(|| async {
        let disk = MemDisk::new();
        let mut o = opts("/wal");
        o.segment_bytes = 64 << 20;
        let (wal, _) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
        let wal = Rc::new(wal);
        wal.create_group(1).unwrap();
        wal.flush().await.unwrap();
        disk.hold_fsyncs(true);
        let big_end = fill(&wal, 1, 1, 1, 1_500_000).await;
        let big = glommio::spawn_local({
            let wal = wal.clone();
            async move { wal.flush().await }
        });
        // Until the big round is written and its fdatasync is in flight (bounded).
        for _ in 0..10_000 {
            if wal.written_lsn() >= big_end {
                break;
            }
            futures_lite::future::yield_now().await;
        }
        assert!(
            wal.written_lsn() >= big_end,
            "the big round was never written"
        );
        fill(&wal, 1, 2, 1, 100).await;
        let small = glommio::spawn_local({
            let wal = wal.clone();
            async move { wal.flush().await }
        });
        for _ in 0..50 {
            futures_lite::future::yield_now().await;
        }
        let reported = wal.durable_lsn();
        assert!(
            reported < big_end,
            "durable {reported} covers the unsynced round ending at {big_end}"
        );
        // Crash now, fdatasync still held: whatever was reported durable must survive.
        drop((big, small));
        disk.crash(7);
        disk.hold_fsyncs(false);
        let (wal2, _) = Wal::open_with_disk(o, disk.clone()).await.unwrap();
        assert!(
            wal2.group_state(1).is_some(),
            "the group, durable before, survives"
        );
    });
}

/// Pipelined write phases (module notes) over a disk whose writes complete in random order:
/// every byte of every entry survives, because a rewrite of the carried block waits for the
/// write it rewrites; and power loss in the middle of pipelined rounds, with syncs running
/// concurrently, keeps every entry that was durable when it struck (`written` covers only
/// completed writes, segments are synced in order).
#[test]
fn pipelined_writes_survive_reordered_completions() {
    let seeds: Vec<u64> = match std::env::var("CHRONIK_PIPELINE_SEED") {
        Ok(s) => vec![s.parse().expect("seed")],
        Err(_) => (1..=8).collect(),
    };
    for seed in seeds {
        run(move || async move {
            use rand::{Rng, SeedableRng};
            use std::cell::{Cell, RefCell};
            println!("pipelined writes: CHRONIK_PIPELINE_SEED={seed}");
            let disk = MemDisk::new();
            disk.set_write_delays(seed, 40);
            let mut o = opts("/wal");
            o.sync_mode = SyncMode::Periodic;
            // A roll every few rounds: phases crossing segments must drain the pipeline.
            o.segment_bytes = 12 << 20;
            let (wal, _) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
            let wal = Rc::new(wal);
            const GROUPS: u64 = 3;
            // (group, index, end LSN, payload), in append order.
            type Model = Vec<(u64, u64, u64, Vec<u8>)>;
            let model = Rc::new(RefCell::new(Model::new()));
            let crashed = Rc::new(Cell::new(false));
            // Appenders: two per group, each appending and flushing in a loop, so the next
            // round's appends are staged while earlier rounds are writing.
            let wave = |wave: u64, appends: usize| {
                let mut tasks = Vec::new();
                for t in 0..GROUPS * 2 {
                    let g = t % GROUPS;
                    let (wal, model, crashed) = (wal.clone(), model.clone(), crashed.clone());
                    let mut rng =
                        rand_chacha::ChaCha8Rng::seed_from_u64(seed * 1000 + wave * 10 + t);
                    tasks.push(glommio::spawn_local(async move {
                        for _ in 0..appends {
                            if crashed.get() {
                                return;
                            }
                            let len = if rng.gen_bool(0.7) {
                                rng.gen_range(600 << 10..1300 << 10)
                            } else {
                                rng.gen_range(1..5000)
                            };
                            let st = wal.group_state(g).unwrap();
                            let i = st.last_index + 1;
                            let p: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                            let end = wal
                                .append(g, data_meta(i, 1, st.next_offset, 1, 0), &p)
                                .unwrap();
                            model.borrow_mut().push((g, i, end, p));
                            if wal.flush().await.is_err() {
                                assert!(crashed.get(), "seed {seed}: flush failed");
                                return;
                            }
                        }
                    }));
                }
                tasks
            };
            // Checks after every step of the other tasks: at most one segment has unsynced
            // writes (segment order); the records `written_lsn` covers are in the file, those
            // `durable_lsn` covers are in its synced bytes.
            let stop = Rc::new(Cell::new(false));
            let checker = {
                let (wal, model, disk, stop) =
                    (wal.clone(), model.clone(), disk.clone(), stop.clone());
                glommio::spawn_local(async move {
                    let (mut checked_w, mut checked_d) = (0usize, 0usize);
                    let present = |end: u64, p: &[u8], durable: bool| {
                        let base = disk
                            .paths()
                            .iter()
                            .filter_map(|f| crate::recovery::parse_segment_name(f))
                            .filter(|b| *b < end)
                            .max()
                            .expect("segment");
                        let path = crate::recovery::segment_path(Path::new("/wal"), base);
                        let bytes = if durable {
                            disk.durable_bytes(&path)
                        } else {
                            disk.file_bytes(&path)
                        }
                        .expect("file");
                        let e = (end - base) as usize;
                        bytes.len() >= e && bytes[e - p.len()..e] == *p
                    };
                    // Bounded by the other tasks: it ends when the test sets `stop`.
                    while !stop.get() {
                        let wal_unsynced = disk
                            .unsynced_paths()
                            .into_iter()
                            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
                            .count();
                        assert!(
                            wal_unsynced <= 1,
                            "seed {seed}: {wal_unsynced} segments unsynced"
                        );
                        {
                            let m = model.borrow();
                            let (w, d) = (wal.written_lsn(), wal.durable_lsn());
                            while checked_w < m.len() && m[checked_w].2 <= w {
                                let (g, i, end, p) = &m[checked_w];
                                assert!(
                                    present(*end, p, false),
                                    "seed {seed}: {g}/{i} below written_lsn not in the file"
                                );
                                checked_w += 1;
                            }
                            while checked_d < m.len() && m[checked_d].2 <= d {
                                let (g, i, end, p) = &m[checked_d];
                                assert!(
                                    present(*end, p, true),
                                    "seed {seed}: {g}/{i} below durable_lsn not synced"
                                );
                                checked_d += 1;
                            }
                        }
                        futures_lite::future::yield_now().await;
                    }
                })
            };
            for g in 0..GROUPS {
                wal.create_group(g).unwrap();
            }
            for t in wave(0, 10) {
                t.await;
            }
            assert!(
                wal.metrics().pipelined_flushes > 0,
                "seed {seed}: no write phase overlapped another: {:?}",
                wal.metrics()
            );
            assert!(wal.metrics().segments > 2, "no roll: {:?}", wal.metrics());
            // Every entry reads back from the disk's current bytes (the cache is tiny).
            for (g, i, _, p) in model.borrow().iter() {
                let got = wal.read_entries(*g, *i, *i + 1, u64::MAX).unwrap();
                assert_eq!(&got[0].1[..], &p[..], "seed {seed}: group {g} index {i}");
            }
            // Second wave with a syncer running as the periodic task would, and power loss at
            // a random moment while rounds are in flight.
            let appends_before = model.borrow().len();
            let syncer = {
                let (wal, crashed) = (wal.clone(), crashed.clone());
                glommio::spawn_local(async move {
                    while !crashed.get() {
                        if wal.sync().await.is_err() {
                            assert!(crashed.get(), "seed {seed}: sync failed");
                            return;
                        }
                        futures_lite::future::yield_now().await;
                    }
                })
            };
            let tasks = wave(1, 12);
            let crash_after = rand_chacha::ChaCha8Rng::seed_from_u64(seed).gen_range(20..60);
            // Bounded: the appenders stage at most 72 entries; the loop ends at `crash_after` of
            // them or when they are done.
            let mut spins = 0u64;
            while model.borrow().len() < appends_before + crash_after && spins < 1_000_000 {
                futures_lite::future::yield_now().await;
                spins += 1;
            }
            let durable = wal.durable_lsn();
            assert!(wal.written_lsn() > durable || spins >= 1_000_000);
            stop.set(true);
            checker.await;
            disk.crash(seed);
            crashed.set(true);
            for t in tasks {
                t.await;
            }
            syncer.await;
            drop(wal);
            let (wal, _) = Wal::open_with_disk(o, disk.clone())
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}"));
            let mut kept = 0;
            for (g, i, end, p) in model.borrow().iter() {
                if *end > durable {
                    continue;
                }
                let got = wal
                    .read_entries(*g, *i, *i + 1, u64::MAX)
                    .unwrap_or_else(|e| panic!("seed {seed}: durable entry {g}/{i} lost: {e}"));
                assert_eq!(&got[0].1[..], &p[..], "seed {seed}: group {g} index {i}");
                kept += 1;
            }
            assert!(
                kept > appends_before,
                "seed {seed}: the syncer made nothing durable"
            );
            wal.check_invariants();
        });
    }
}

/// Relocation is bounded per `reclaim` call (a budget of 25% of a segment, and whatever room the
/// unflushed-bytes limit leaves): a pinned segment holding more live bytes than that limit is
/// moved over several calls instead of failing every call with backpressure (which kept it,
/// and the disk behind it, forever), and no call stages more than its budget.
#[test]
fn relocation_is_bounded_per_reclaim_call() {
    run(|| async {
        let disk = MemDisk::new();
        let mut o = opts("/wal");
        o.segment_bytes = 256 << 10;
        let (wal, _) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
        wal.create_group(1).unwrap();
        wal.create_group(2).unwrap();
        // Per segment: group 1 (slow) writes 12 entries of 4000 bytes (~48 KiB, under the 25%
        // relocation threshold), group 2 (busy) fills the rest and compacts behind itself.
        let (mut slow, mut busy) = (1u64, 1u64);
        while wal.metrics().segments < 6 {
            fill(&wal, 1, slow, 12, 4000).await;
            slow += 12;
            fill(&wal, 2, busy, 50, 4000).await;
            busy += 50;
            wal.flush().await.unwrap();
        }
        wal.compact_prefix(2, busy - 1, 1).unwrap();
        wal.sync().await.unwrap();
        let segs = wal.metrics().segments;
        let budget = o.segment_bytes * RELOCATE_MAX_LIVE_PERCENT / 100;
        let mut calls = 0;
        // Bounded: each call moves at least one entry or deletes a segment (asserted), and
        // there are a few hundred entries.
        loop {
            if calls == 2 {
                // From now on the unflushed-bytes limit is smaller than one pinned segment's
                // live bytes.
                wal.inner.borrow_mut().unflushed_limit = 32 << 10;
            }
            let limit = if calls < 2 { budget } else { 32 << 10 };
            let before = wal.metrics().appended_bytes;
            let rep = wal
                .reclaim()
                .await
                .expect("reclaim never fails on a big job");
            let staged = wal.metrics().appended_bytes - before;
            assert!(
                staged <= limit,
                "call {calls} staged {staged}, limit {limit}"
            );
            wal.check_invariants();
            calls += 1;
            if rep.records_relocated == 0 && rep.segments_deleted == 0 {
                break;
            }
            assert!(calls < 200, "no end: {:?}", wal.metrics());
        }
        let st = wal.metrics();
        assert!(calls > segs as usize, "{calls} calls for {segs} segments");
        assert!(st.segments <= 2, "segments left pinned: {st:?}");
        drop(wal);
        let (wal, _) = Wal::open_with_disk(o, disk).await.unwrap();
        for i in 1..slow {
            let got = wal.read_entries(1, i, i + 1, u64::MAX).unwrap();
            assert_eq!(
                &got[0].1[..],
                &payload(1, i, 4000)[..],
                "slow group index {i}"
            );
        }
        wal.check_invariants();
    });
}

/// Relocation reads through `read_at_async` (a blocking read would stall the whole shard), and
/// entries that change while its reads are in flight (here: compacted away) are not copied.
#[test]
fn relocation_reads_asynchronously_and_skips_entries_changed_meanwhile() {
    run(|| async {
        let disk = MemDisk::new();
        let mut o = opts("/wal");
        o.segment_bytes = 256 << 10;
        let (wal, _) = Wal::open_with_disk(o.clone(), disk.clone()).await.unwrap();
        let wal = Rc::new(wal);
        wal.create_group(1).unwrap();
        wal.create_group(2).unwrap();
        let (mut slow, mut busy) = (1u64, 1u64);
        while wal.metrics().segments < 4 {
            fill(&wal, 1, slow, 4, 4000).await;
            slow += 4;
            fill(&wal, 2, busy, 50, 4000).await;
            busy += 50;
            wal.flush().await.unwrap();
        }
        wal.compact_prefix(2, busy - 1, 1).unwrap();
        wal.sync().await.unwrap();
        let blocking = disk.blocking_reads();
        let task = glommio::spawn_local({
            let wal = wal.clone();
            async move { wal.reclaim().await }
        });
        // Let reclaim plan and issue its reads, then drop group 1's first two entries (planned
        // for relocation) while the reads are in flight.
        futures_lite::future::yield_now().await;
        assert!(wal.reclaiming.get(), "reclaim is waiting for its reads");
        wal.compact_prefix(1, 3, 1).unwrap();
        let rep = task.await.unwrap();
        assert!(
            rep.records_relocated > 0 && rep.segments_deleted > 0,
            "{rep:?}"
        );
        assert_eq!(disk.blocking_reads(), blocking, "relocation read blocking");
        wal.check_invariants();
        // Finish the job, then restart: the compacted entries stay gone, the rest is intact.
        let mut calls = 0;
        while wal.reclaim().await.unwrap().segments_deleted > 0 {
            calls += 1;
            assert!(calls < 100, "reclaim keeps deleting: {:?}", wal.metrics());
        }
        let wal = Rc::into_inner(wal).expect("only reference");
        drop(wal);
        let (wal, _) = Wal::open_with_disk(o, disk).await.unwrap();
        let st = wal.group_state(1).unwrap();
        assert_eq!((st.first_index, st.last_index), (3, slow - 1), "{st:?}");
        for i in 3..slow {
            let got = wal.read_entries(1, i, i + 1, u64::MAX).unwrap();
            assert_eq!(&got[0].1[..], &payload(1, i, 4000)[..], "index {i}");
        }
        wal.check_invariants();
    });
}
