//! WAL benchmark (not a timed test): append throughput and append→durable latency
//! (p50/p99/p99.9) for 1 KiB, 16 KiB and 1 MiB batches, 1 and 64 groups, `always` and
//! `periodic`, printed beside raw O_DIRECT sequential write bandwidth and raw fdatasync latency
//! measured by `benches/fio.sh` in the same run on the same filesystem; then two side-by-side
//! cases: `paired_case` interleaves `always`-mode appends with raw fdatasync, write+fdatasync
//! and O_DSYNC writes of the same block size, so their percentiles share the device's conditions;
//! `paired_bandwidth` rotates slices of 1 MiB `periodic` appends, raw O_DIRECT sequential writes
//! and raw writes that first copy each batch (as the WAL copies into staging), so the bandwidth
//! ratios do too.
//!
//! Run: `cargo bench -p chronik-storage --bench wal`
//! Env: `CHRONIK_BENCH_DIR` (default /tmp/chronik-wal-bench; must support O_DIRECT),
//!      `CHRONIK_BENCH_SECS` (seconds per case, default 2), `CHRONIK_BENCH_NO_FIO=1` to skip fio,
//!      `CHRONIK_BENCH_BATCH=<bytes>` / `CHRONIK_BENCH_GROUPS=<n>` to run a subset,
//!      `CHRONIK_BENCH_BW_CASES=1x8,64x1` (groups x window) for the side-by-side bandwidth cases,
//!      `CHRONIK_BENCH_IO_MEMORY_MB=<n>` registered memory per executor (default 32, the broker's
//!      automatic maximum; 1 is what a 2-shard broker gets under the usual 8 MiB memlock limit),
//!      `CHRONIK_BENCH_PAIRED_ONLY=1` to run only the side-by-side latency case (`paired_case`),
//!      `CHRONIK_BENCH_CASES=0` to skip the table of cases (side-by-side cases only),
//!      `CHRONIK_BENCH_VERBOSE=1` to print each case's WAL counters,
//!      `CHRONIK_BENCH_NO_RECOVERY=1` to skip the recovery measurement,
//!      `CHRONIK_BENCH_FRESH=1` to measure a fresh WAL (no warm-up, no retention; new segments
//!      zero-filled in the background at the default pace, as in the broker),
//!      `CHRONIK_BENCH_PREPARE=<bytes/s>` to set the zero-filling pace (0 = off),
//!      `CHRONIK_BENCH_WRITE_THROUGH=0` to run `always` as write-then-fdatasync instead of
//!      O_DSYNC writes (shown as `always/fs`),
//!      `CHRONIK_BENCH_SPIN_US=<µs>` to let the executor poll that long before it sleeps (the
//!      broker's `server.spin_before_park_us`),
//!      `CHRONIK_BENCH_JSON=<path>` where to write the run's figures as JSON (default
//!      `<bench dir>/wal-bench.json`).
//!
//! The run ends with each of the storage issue's targets beside the figures this run measured
//! that bear on it (`Report::print_targets`), and writes every figure to the JSON file.
//!
//! Steady state (default): a broker that has run for a while has retention deleting old
//! segments, so rolls reuse recycled files (`wal.rs`, recycling). Each case therefore first
//! writes and drops `recycle_segments + 1` segments of scratch data (the spare pool fills), and
//! a retention task keeps about one segment of data per WAL during the run (compact every group
//! to its newest entries every `RETENTION_EVERY`, then `reclaim`). Reclaim's deletions and
//! renames run inside the measured window; background zero-filling is off (a steady-state
//! broker has recycled files and does not zero-fill).
//!
//! Load model: each group has `window` appender tasks; each appends a batch and awaits `flush()`
//! (closed loop: `window` batches in flight per group, like a partition leader persisting each
//! Raft ready; window 1 is the low-load latency case, window 2 lets appends of the next round
//! overlap the current write, as pipelined producers do). In
//! `always` mode `flush()` returns once durable; in `periodic` mode it returns once written and
//! the periodic task syncs every `sync_interval_ms` (10). An observer task records each
//! append's latency when `durable_lsn()` passes its LSN. Batches over 64 KiB are appended the way
//! the broker appends Kafka batches: `append_shared_with_crc` (no copy into the cache, and the
//! record CRC combined from a payload CRC known in advance instead of a pass over the payload).

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel;

use chronik_storage::{EntryKind, EntryMeta, KafkaMeta, SyncMode, Wal, WalOptions};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Direct-I/O buffers (glommio's registered memory and the WAL's staging chunks beyond it) in
/// huge pages, as in `chronik-server` (`chronik_storage::dma_alloc`).
#[global_allocator]
static ALLOC: chronik_storage::dma_alloc::DmaHugePageAlloc =
    chronik_storage::dma_alloc::DmaHugePageAlloc;

#[derive(Clone)]
struct Case {
    batch: usize,
    groups: u64,
    mode: SyncMode,
    /// Batches in flight per group (appender tasks sharing the group).
    window: u64,
}

#[derive(Clone)]
struct Outcome {
    /// CPU time of the executor thread / wall time.
    cpu_pct: f64,
    mib_s: f64,
    batches_s: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    fsyncs: u64,
    recycled: u64,
}

/// Retention pass interval in steady-state runs.
const RETENTION_EVERY: Duration = Duration::from_millis(50);
/// Group id of the warm-up scratch data (never used by a case).
const SCRATCH_GROUP: u64 = u64::MAX - 1;
/// io_uring registered memory per executor: by default the broker's automatic size when the
/// memlock limit allows (`chronik_shard::sysreq::IO_MEMORY_AUTO_MAX_BYTES`), else
/// `CHRONIK_BENCH_IO_MEMORY_MB`. The WAL stages appends in it, then in heap memory.
fn io_memory() -> usize {
    std::env::var("CHRONIK_BENCH_IO_MEMORY_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(32 << 20, |mb| mb << 20)
}

/// Brings the WAL to the state of a long-running broker with retention: the active segment is a
/// recycled file and the spare pool is full. Writes `recycle_segments + 1` segments of scratch
/// data, drops them (the pool fills), then writes scratch data until a roll takes a spare, and
/// drops that too (the pool refills).
async fn warm_up(wal: &Wal) {
    let seg = wal.options().segment_bytes;
    let segs = wal.options().recycle_segments as u64 + 1;
    let chunk = bytes::Bytes::from(vec![0xC3u8; 1 << 20]);
    for round in 0..2u64 {
        let g = SCRATCH_GROUP - round;
        wal.create_group(g).unwrap();
        let mut i = 0u64;
        // Bounded: round 0 writes `segs` segments; round 1 stops at the first recycled roll,
        // which happens within one segment because round 0 filled the pool.
        loop {
            let done = match round {
                0 => i * chunk.len() as u64 > segs * seg,
                _ => wal.metrics().segments_recycled > 0,
            };
            if done || i > (segs + 1) * seg / chunk.len() as u64 {
                break;
            }
            i += 1;
            let meta = EntryMeta {
                index: i,
                term: 1,
                kind: EntryKind::Normal,
                kafka: None,
            };
            wal.append_shared(g, meta, chunk.clone()).unwrap();
            if round == 1 || i.is_multiple_of(16) {
                wal.flush().await.unwrap();
            }
        }
        wal.remove_group(g).unwrap();
        wal.sync().await.unwrap();
        wal.reclaim().await.unwrap();
    }
    assert_eq!(
        wal.metrics().segments_recycled,
        1,
        "warm-up ends in a recycled segment"
    );
}

/// Retention: keeps about one segment of data per WAL, spread over the groups.
async fn retention(wal: Rc<Wal>, groups: u64, batch: usize, stop: Rc<std::cell::Cell<bool>>) {
    let keep = (wal.options().segment_bytes / groups / batch as u64).max(1);
    while !stop.get() {
        glommio::timer::sleep(RETENTION_EVERY).await;
        for g in 0..groups {
            let st = wal.group_state(g).unwrap();
            if st.last_index > keep {
                wal.compact_prefix(g, st.last_index + 1 - keep, 1).unwrap();
            }
        }
        wal.reclaim().await.expect("reclaim");
    }
}

/// The entry after group `g`'s last: one record at the next offset. Callers append it before
/// any await, so appenders sharing a group never race.
fn next_meta(wal: &Wal, g: u64) -> EntryMeta {
    let st = wal.group_state(g).unwrap();
    EntryMeta {
        index: st.last_index + 1,
        term: 1,
        kind: EntryKind::Normal,
        kafka: Some(KafkaMeta {
            base_offset: st.next_offset,
            last_offset: st.next_offset,
            max_timestamp: 0,
        }),
    }
}

fn thread_cpu_secs() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// `always` mode writes O_DSYNC (the default) unless `CHRONIK_BENCH_WRITE_THROUGH=0`.
fn write_through() -> bool {
    std::env::var("CHRONIK_BENCH_WRITE_THROUGH").map_or(true, |v| v != "0")
}

async fn run_case(dir: PathBuf, case: &Case, secs: f64) -> Outcome {
    let _ = std::fs::remove_dir_all(&dir);
    let mut o = WalOptions::new(&dir);
    o.sync_mode = case.mode;
    o.write_through = write_through();
    // Steady state reuses recycled files only; a fresh WAL zero-fills new segments as the broker
    // does (default pace). CHRONIK_BENCH_PREPARE=<bytes/s> overrides either.
    if std::env::var("CHRONIK_BENCH_FRESH").is_err() {
        o.prepare_bytes_per_sec = 0;
    }
    if let Some(p) = std::env::var("CHRONIK_BENCH_PREPARE")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        o.prepare_bytes_per_sec = p;
    }
    let (wal, _) = Wal::open(o).await.expect("open wal");
    let steady = std::env::var("CHRONIK_BENCH_FRESH").is_err();
    if steady {
        warm_up(&wal).await;
    }
    let wal = Rc::new(wal);
    let periodic = (case.mode == SyncMode::Periodic)
        .then(|| glommio::spawn_local(wal.clone().run_periodic_sync()));
    // Appends in LSN order, for the observer; it waits on the channel (no polling nap, which
    // would add up to its length to a fast append's measured latency).
    let (pending, appended) = local_channel::new_unbounded::<(u64, Instant)>();
    let pending = Rc::new(pending);
    let hist = Rc::new(RefCell::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
    ));
    let payload = bytes::Bytes::from(vec![0x5Au8; case.batch]);
    let payload_crc = crc32c::crc32c(&payload);
    let start = Instant::now();
    let cpu0 = thread_cpu_secs();
    let deadline = start + Duration::from_secs_f64(secs);

    let observer = {
        let (wal, hist) = (wal.clone(), hist.clone());
        glommio::spawn_local(async move {
            // The durable LSN last seen and when it was seen: appends at or below it completed
            // then.
            let mut seen = (0u64, Instant::now());
            while let Some((lsn, t0)) = appended.recv().await {
                if lsn > seen.0 {
                    wal.wait_durable(lsn).await.expect("wal failed");
                    seen = (wal.durable_lsn(), Instant::now());
                }
                hist.borrow_mut()
                    .record(seen.1.duration_since(t0).as_micros().max(1) as u64)
                    .unwrap();
            }
        })
    };
    let mut tasks = Vec::new();
    for g in 0..case.groups {
        wal.create_group(g).unwrap();
    }
    let retention_stop = Rc::new(std::cell::Cell::new(false));
    let retention = steady.then(|| {
        glommio::spawn_local(retention(
            wal.clone(),
            case.groups,
            case.batch,
            retention_stop.clone(),
        ))
    });
    for g in 0..case.groups {
        for _ in 0..case.window {
            let (wal, pending, payload) = (wal.clone(), pending.clone(), payload.clone());
            tasks.push(glommio::spawn_local(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let meta = next_meta(&wal, g);
                    let t0 = Instant::now();
                    // Large batches take the broker's path: the zero-copy cache and a payload CRC
                    // known in advance (the broker combines it from the Kafka batch's own CRC).
                    let lsn = if payload.len() > 64 << 10 {
                        wal.append_shared_with_crc(g, meta, payload.clone(), payload_crc)
                            .expect("append")
                    } else {
                        wal.append(g, meta, &payload).expect("append")
                    };
                    pending.try_send((lsn, t0)).expect("observer alive");
                    wal.flush().await.expect("flush");
                    n += 1;
                }
                n
            }));
        }
    }
    let mut batches = 0u64;
    for t in tasks {
        batches += t.await;
    }
    retention_stop.set(true);
    if let Some(r) = retention {
        r.await;
    }
    wal.sync().await.unwrap();
    drop(pending);
    observer.await;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_pct = (thread_cpu_secs() - cpu0) / elapsed * 100.0;
    let fsyncs = wal.metrics().fsyncs;
    if std::env::var("CHRONIK_BENCH_VERBOSE").is_ok() {
        eprintln!("{:?}", wal.metrics());
    }
    let recycled = wal.metrics().segments_recycled;
    drop(periodic);
    let h = hist.borrow();
    let out = Outcome {
        cpu_pct,
        mib_s: batches as f64 * case.batch as f64 / elapsed / 1048576.0,
        batches_s: batches as f64 / elapsed,
        p50_us: h.value_at_quantile(0.50),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        fsyncs,
        recycled,
    };
    drop(h);
    drop(wal);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// Size of the raw file the side-by-side case overwrites (laid out with real writes first, like
/// a recycled WAL segment).
const RAW_FILE: u64 = 64 << 20;

/// Latency percentiles (µs) of one kind of operation in the side-by-side case.
#[derive(Clone, Copy)]
struct Lat {
    p50: u64,
    p99: u64,
    p999: u64,
}

impl Lat {
    fn of(h: &Histogram<u64>) -> Lat {
        Lat {
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
        }
    }
}

/// The side-by-side case: `always`-mode WAL appends (1 group, one in flight) interleaved with
/// raw O_DIRECT operations of the same block size on a laid-out file in the same directory, so
/// both see the same device conditions (this VM's disk latency drifts by 10× within minutes;
/// percentiles taken minutes apart by fio are not comparable). Each iteration runs, in an order
/// that rotates: a WAL append→durable; a raw write then a timed fdatasync (fio's `fdatasync`
/// latency); a timed write+fdatasync; a timed O_DSYNC write.
/// Returns WAL, fdatasync, write+fdatasync and O_DSYNC write latencies, and the raw block size.
async fn paired_case(dir: PathBuf, batch: usize, secs: f64) -> ([Lat; 4], usize) {
    use glommio::io::{DmaFile, OpenOptions};
    let _ = std::fs::remove_dir_all(&dir);
    let mut o = WalOptions::new(dir.join("wal"));
    o.sync_mode = SyncMode::Always;
    o.write_through = write_through();
    o.prepare_bytes_per_sec = 0;
    let (wal, _) = Wal::open(o).await.expect("open wal");
    warm_up(&wal).await;
    wal.create_group(0).unwrap();

    let raw_path = dir.join("raw.dat");
    let plain = DmaFile::create(&raw_path).await.expect("raw file");
    // The WAL writes the batch plus its entry header, padded to 4 KiB blocks.
    let block = (batch + 64).div_ceil(4096) * 4096;
    let mut lay = plain.alloc_dma_buffer(1 << 20);
    lay.as_bytes_mut().fill(0);
    let lay = Rc::new(lay);
    for pos in (0..RAW_FILE).step_by(1 << 20) {
        plain.write_rc_at(lay.clone(), pos).await.expect("lay out");
    }
    plain.fdatasync().await.expect("lay out");
    let dsync = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DSYNC)
        .dma_open(&raw_path)
        .await
        .expect("O_DSYNC open");
    let mut buf = plain.alloc_dma_buffer(block);
    buf.as_bytes_mut().fill(0xA5);
    let buf = Rc::new(buf);

    let new_hist = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut h = [new_hist(), new_hist(), new_hist(), new_hist()];
    let us = |t0: Instant| t0.elapsed().as_micros().max(1) as u64;
    let payload = vec![0x5Au8; batch];
    let mut pos = 0u64;
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut i = 0usize;
    while Instant::now() < deadline {
        for k in 0..4 {
            let op = (i + k) % 4;
            if op > 0 {
                pos = (pos + block as u64) % (RAW_FILE - block as u64);
            }
            match op {
                0 => {
                    let meta = next_meta(&wal, 0);
                    let t0 = Instant::now();
                    wal.append(0, meta, &payload).expect("append");
                    wal.flush().await.expect("flush");
                    h[0].record(us(t0)).unwrap();
                }
                1 => {
                    plain.write_rc_at(buf.clone(), pos).await.expect("write");
                    let t0 = Instant::now();
                    plain.fdatasync().await.expect("fdatasync");
                    h[1].record(us(t0)).unwrap();
                }
                2 => {
                    let t0 = Instant::now();
                    plain.write_rc_at(buf.clone(), pos).await.expect("write");
                    plain.fdatasync().await.expect("fdatasync");
                    h[2].record(us(t0)).unwrap();
                }
                _ => {
                    let t0 = Instant::now();
                    dsync.write_rc_at(buf.clone(), pos).await.expect("write");
                    h[3].record(us(t0)).unwrap();
                }
            }
        }
        i += 1;
        // Compact now and then so the WAL recycles segments, as a broker with retention does.
        if i.is_multiple_of(1024) {
            let keep = (wal.options().segment_bytes / batch as u64).max(1);
            let last = wal.group_state(0).unwrap().last_index;
            if last > keep {
                wal.compact_prefix(0, last + 1 - keep, 1).unwrap();
            }
            wal.reclaim().await.expect("reclaim");
        }
    }
    let _ = (plain.close().await, dsync.close().await);
    drop(wal);
    let _ = std::fs::remove_dir_all(&dir);
    (
        [
            Lat::of(&h[0]),
            Lat::of(&h[1]),
            Lat::of(&h[2]),
            Lat::of(&h[3]),
        ],
        block,
    )
}

/// Slices per side in the side-by-side bandwidth case.
const BW_ROUNDS: usize = 6;
/// Raw writes kept in flight by the side-by-side bandwidth case (fio's queue depth above).
/// Each has its own registered buffer, as each fio I/O unit has its own buffer and as the WAL
/// writes from registered staging chunks.
const RAW_QD: usize = 8;

/// The side-by-side bandwidth case: 1 MiB batches in `periodic` mode (steady state, retention
/// running) alternating with raw O_DIRECT sequential 1 MiB writes at queue depth [`RAW_QD`]
/// that overwrite a laid-out file in the same directory, fdatasynced as often as the WAL's
/// periodic mode does, `BW_ROUNDS` slices of `slice_secs`
/// each, the order rotating. The disk's bandwidth drifts by tens of percent within minutes, so
/// only slices taken this close together give a meaningful ratio. A third side, raw+copy, is
/// the raw loop copying each 1 MiB batch into its buffer before writing it, as the WAL copies
/// every append into a staging buffer: on the development VM any work the shard thread does
/// between I/Os costs device bandwidth (a 60 µs spin, a CRC pass or a memcpy of each batch all
/// took raw O_DIRECT from 3.4–3.5 to 2.9–3.1 GB/s), so WAL against raw+copy is the cost of the
/// WAL's own machinery and WAL against raw is that plus the copy. Returns (WAL, raw, raw+copy)
/// MiB/s per round.
async fn paired_bandwidth(
    dir: PathBuf,
    groups: u64,
    window: u64,
    slice_secs: f64,
) -> Vec<[f64; 3]> {
    use glommio::io::DmaFile;
    const BATCH: usize = 1 << 20;
    let _ = std::fs::remove_dir_all(&dir);
    // Taken from the registered memory before the WAL's staging can (the executor has room for
    // both).
    let raw_bufs: Vec<_> = (0..RAW_QD)
        .map(|_| glommio::allocate_dma_buffer(BATCH))
        .collect();
    // The raw+copy side's buffers: each belongs to one writer task, which fills it before every
    // write.
    let copy_bufs: Vec<_> = (0..RAW_QD)
        .map(|_| glommio::allocate_dma_buffer(BATCH))
        .collect();
    let copy_bufs = Rc::new(std::cell::RefCell::new(copy_bufs));
    let mut o = WalOptions::new(dir.join("wal"));
    o.sync_mode = SyncMode::Periodic;
    o.prepare_bytes_per_sec = 0;
    let (wal, _) = Wal::open(o).await.expect("open wal");
    warm_up(&wal).await;
    let wal = Rc::new(wal);
    let periodic = glommio::spawn_local(wal.clone().run_periodic_sync());
    for g in 0..groups {
        wal.create_group(g).unwrap();
    }
    let stop = Rc::new(std::cell::Cell::new(false));
    let retention = glommio::spawn_local(retention(wal.clone(), groups, BATCH, stop.clone()));

    let raw = Rc::new(
        DmaFile::create(dir.join("raw.dat"))
            .await
            .expect("raw file"),
    );
    let bufs: Vec<_> = raw_bufs
        .into_iter()
        .map(|mut b| {
            b.as_bytes_mut().fill(0xA5);
            Rc::new(b)
        })
        .collect();
    // As much disk as the WAL cycles through (active, retained and spare segments), so neither
    // side is helped by caches below the filesystem.
    let raw_len = wal.options().segment_bytes * 4;
    for pos in (0..raw_len).step_by(BATCH) {
        raw.write_rc_at(bufs[0].clone(), pos)
            .await
            .expect("lay out");
    }
    raw.fdatasync().await.expect("lay out");
    let payload = bytes::Bytes::from(vec![0x5Au8; BATCH]);
    let payload_crc = crc32c::crc32c(&payload);

    let wal_slice = |deadline: Instant| {
        let mut tasks = Vec::new();
        for g in 0..groups {
            for _ in 0..window {
                let (wal, payload) = (wal.clone(), payload.clone());
                tasks.push(glommio::spawn_local(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let meta = next_meta(&wal, g);
                        wal.append_shared_with_crc(g, meta, payload.clone(), payload_crc)
                            .expect("append");
                        wal.flush().await.expect("flush");
                        n += 1;
                    }
                    n
                }));
            }
        }
        tasks
    };
    let next_pos = Rc::new(std::cell::Cell::new(0u64));
    // The raw side syncs as often as the WAL's periodic task does (every `sync_interval_ms`):
    // on this VM an O_DIRECT write that is never flushed may sit in the host's cache, and the
    // next fdatasync, whoever issues it, pays for writing it out.
    let sync_every = Duration::from_millis(wal.options().sync_interval_ms);
    // `copy`: before each write, copy the 1 MiB batch into the buffer, as the WAL copies each
    // append into its staging buffer.
    let raw_slice = |deadline: Instant, copy: bool| {
        let syncer = {
            let raw = raw.clone();
            glommio::spawn_local(async move {
                while Instant::now() < deadline {
                    glommio::timer::sleep(sync_every).await;
                    raw.fdatasync().await.expect("raw fdatasync");
                }
                0
            })
        };
        (0..RAW_QD)
            .map(|k| {
                let (raw, next_pos) = (raw.clone(), next_pos.clone());
                let (shared, payload) = (bufs[k].clone(), payload.clone());
                let own = copy.then(|| copy_bufs.borrow_mut().pop().expect("copy buffer"));
                let copy_bufs = copy_bufs.clone();
                glommio::spawn_local(async move {
                    let mut n = 0u64;
                    let mut own = own.map(Rc::new);
                    while Instant::now() < deadline {
                        let pos = next_pos.get();
                        next_pos.set((pos + BATCH as u64) % raw_len);
                        let buf = match own.as_mut() {
                            Some(b) => {
                                Rc::get_mut(b)
                                    .expect("the previous write released the buffer")
                                    .as_bytes_mut()
                                    .copy_from_slice(&payload);
                                b.clone()
                            }
                            None => shared.clone(),
                        };
                        raw.write_rc_at(buf, pos).await.expect("raw write");
                        n += 1;
                    }
                    if let Some(b) = own {
                        let b = Rc::into_inner(b).expect("no write in flight");
                        copy_bufs.borrow_mut().push(b);
                    }
                    n
                })
            })
            .chain(std::iter::once(syncer))
            .collect::<Vec<_>>()
    };
    let mut out = Vec::new();
    for round in 0..BW_ROUNDS {
        let mut slices = [0.0; 3];
        for k in 0..3 {
            // 0 = WAL, 1 = raw, 2 = raw+copy; the order rotates from round to round.
            let side = (k + round) % 3;
            let wal_side = side == 0;
            let start = Instant::now();
            let deadline = start + Duration::from_secs_f64(slice_secs);
            let tasks = if wal_side {
                wal_slice(deadline)
            } else {
                raw_slice(deadline, side == 2)
            };
            let mut n = 0u64;
            for t in tasks {
                n += t.await;
            }
            let mib_s = n as f64 * BATCH as f64 / start.elapsed().as_secs_f64() / 1048576.0;
            // What the slice wrote becomes durable (untimed) before the other side starts.
            if wal_side {
                wal.sync().await.expect("sync");
            } else {
                raw.fdatasync().await.expect("raw fdatasync");
            }
            slices[side] = mib_s;
        }
        out.push(slices);
    }
    stop.set(true);
    retention.await;
    drop(periodic);
    let _ = raw.close_rc().await;
    drop(wal);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// Writes `total` bytes of 16 KiB entries over 64 groups, syncs, reopens; returns the report.
async fn recovery_case(dir: PathBuf, total: u64) -> chronik_storage::RecoveryReport {
    let _ = std::fs::remove_dir_all(&dir);
    let (wal, _) = Wal::open(WalOptions::new(&dir)).await.expect("open wal");
    let payload = bytes::Bytes::from(vec![0xA5u8; 16 << 10]);
    let n = total / payload.len() as u64;
    for g in 0..64 {
        wal.create_group(g).unwrap();
    }
    for k in 0..n {
        let g = k % 64;
        let i = k / 64 + 1;
        let meta = EntryMeta {
            index: i,
            term: 1,
            kind: EntryKind::Normal,
            kafka: None,
        };
        wal.append_shared(g, meta, payload.clone()).unwrap();
        if k % 1024 == 1023 {
            wal.flush().await.unwrap();
        }
    }
    wal.sync().await.unwrap();
    drop(wal);
    let (_wal, report) = Wal::open(WalOptions::new(&dir)).await.expect("reopen wal");
    let _ = std::fs::remove_dir_all(&dir);
    report
}

fn main() {
    let dir = PathBuf::from(
        std::env::var("CHRONIK_BENCH_DIR").unwrap_or_else(|_| "/tmp/chronik-wal-bench".into()),
    );
    let secs: f64 = std::env::var("CHRONIK_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut report = Report::default();
    let fio = &mut report.fio;

    if std::env::var("CHRONIK_BENCH_NO_FIO").is_err() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fio.sh");
        match std::process::Command::new(script)
            .arg(&dir)
            .arg(format!("{}", secs.ceil() as u64))
            .output()
        {
            Ok(out) if out.status.success() => {
                println!("raw device (fio, same filesystem, this run):");
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    println!("  {line}");
                    if let Some((k, v)) = line.split_once('=') {
                        if let Ok(v) = v.trim().parse::<f64>() {
                            fio.insert(k.trim().to_string(), v);
                        }
                    }
                }
            }
            Ok(out) => println!("fio failed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => println!("fio not run: {e}"),
        }
    }

    println!();
    println!(
        "{:>8} {:>6} {:>6} {:>9} | {:>10} {:>10} {:>8} {:>5} {:>5} | {:>8} {:>8} {:>8}",
        "batch",
        "groups",
        "window",
        "mode",
        "MiB/s",
        "batches/s",
        "fsyncs",
        "cpu%",
        "recyc",
        "p50 us",
        "p99 us",
        "p99.9 us"
    );
    let mut cases: Vec<Case> = [1usize << 10, 16 << 10, 1 << 20]
        .into_iter()
        .flat_map(|batch| {
            [1u64, 64].into_iter().flat_map(move |groups| {
                [SyncMode::Always, SyncMode::Periodic]
                    .into_iter()
                    .map(move |mode| Case {
                        batch,
                        groups,
                        mode,
                        window: 1,
                    })
            })
        })
        .collect();
    for groups in [1u64, 64] {
        for mode in [SyncMode::Always, SyncMode::Periodic] {
            cases.push(Case {
                batch: 1 << 20,
                groups,
                mode,
                window: 2,
            });
        }
    }
    let only: Option<usize> = std::env::var("CHRONIK_BENCH_BATCH")
        .ok()
        .and_then(|s| s.parse().ok());
    // The broker's `server.spin_before_park_us`: how long an idle executor polls for
    // completions before it sleeps (0 or unset: sleeps at once).
    let spin_us: Option<u64> = std::env::var("CHRONIK_BENCH_SPIN_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&us| us > 0);
    let only_groups: Option<u64> = std::env::var("CHRONIK_BENCH_GROUPS")
        .ok()
        .and_then(|s| s.parse().ok());
    let paired_only = std::env::var("CHRONIK_BENCH_PAIRED_ONLY").is_ok();
    let no_cases = std::env::var("CHRONIK_BENCH_CASES").is_ok_and(|v| v == "0");
    for case in cases.into_iter().filter(|c| {
        !paired_only
            && !no_cases
            && only.is_none_or(|b| b == c.batch)
            && only_groups.is_none_or(|g| g == c.groups)
    }) {
        let d = dir.join("wal");
        let (tx, rx) = std::sync::mpsc::channel();
        let c = Case { ..case };
        let mut builder = glommio::LocalExecutorBuilder::default().io_memory(io_memory());
        if let Some(us) = spin_us {
            builder = builder.spin_before_park(std::time::Duration::from_micros(us));
        }
        builder
            .spawn(move || async move {
                let o = run_case(d, &c, secs).await;
                tx.send((c, o)).unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
        let (c, o) = rx.recv().unwrap();
        let mode = match (c.mode, write_through()) {
            (SyncMode::Always, true) => "always",
            (SyncMode::Always, false) => "always/fs",
            _ => "periodic",
        };
        report.cases.push((c.clone(), o.clone()));
        println!(
            "{:>8} {:>6} {:>6} {:>9} | {:>10.1} {:>10.0} {:>8} {:>5.0} {:>5} | {:>8} {:>8} {:>8}",
            c.batch,
            c.groups,
            c.window,
            mode,
            o.mib_s,
            o.batches_s,
            o.fsyncs,
            o.cpu_pct,
            o.recycled,
            o.p50_us,
            o.p99_us,
            o.p999_us
        );
    }

    let paired: Vec<usize> = [1usize << 10, 16 << 10]
        .into_iter()
        .filter(|&b| only.is_none_or(|o| o == b))
        .collect();
    // Side by side: WAL append→durable interleaved with raw operations (see `paired_case`).
    if !paired.is_empty() {
        println!();
        println!(
            "side by side, 1 group, one append in flight, `{}` (µs; ratio = WAL p99 / raw p99):",
            if write_through() {
                "always"
            } else {
                "always/fs"
            }
        );
        println!(
            "{:>8} {:>6} | {:>22} | {:>22} | {:>22} | {:>22} | {:>6} {:>6}",
            "batch",
            "block",
            "WAL p50/p99/p99.9",
            "fdatasync p50/p99/p99.9",
            "write+fdatasync",
            "O_DSYNC write",
            "÷fds",
            "÷w+fds"
        );
    }
    for batch in paired {
        let d = dir.join("paired");
        let (tx, rx) = std::sync::mpsc::channel();
        glommio::LocalExecutorBuilder::default()
            .io_memory(io_memory())
            .spawn(move || async move { tx.send(paired_case(d, batch, secs).await).unwrap() })
            .unwrap()
            .join()
            .unwrap();
        let ([w, f, wf, ds], block) = rx.recv().unwrap();
        report.paired.push((batch, block, [w, f, wf, ds]));
        let col = |l: &Lat| format!("{}/{}/{}", l.p50, l.p99, l.p999);
        println!(
            "{:>8} {:>6} | {:>22} | {:>22} | {:>22} | {:>22} | {:>6.2} {:>6.2}",
            batch,
            block,
            col(&w),
            col(&f),
            col(&wf),
            col(&ds),
            w.p99 as f64 / f.p99 as f64,
            w.p99 as f64 / wf.p99 as f64
        );
    }

    // Side by side: WAL bandwidth at 1 MiB batches interleaved with raw O_DIRECT writes.
    if only.is_none_or(|b| b == 1 << 20) && !paired_only {
        println!();
        println!(
            "side by side, 1 MiB batches, `periodic`, {BW_ROUNDS} rotating slices of {secs:.1} s each (raw: O_DIRECT sequential 1 MiB overwrites, queue depth {RAW_QD}, fdatasync every 10 ms; raw+copy: the same, copying each batch into its buffer first):"
        );
        println!(
            "{:>6} {:>6} | {:>36} | {:>36} | {:>36} | {:>5} {:>6}",
            "groups",
            "window",
            "WAL MiB/s per slice",
            "raw MiB/s per slice",
            "raw+copy MiB/s per slice",
            "÷raw",
            "÷copy"
        );
        let bw_cases: Vec<(u64, u64)> = std::env::var("CHRONIK_BENCH_BW_CASES")
            .ok()
            .map(|v| {
                v.split(',')
                    .filter_map(|c| {
                        let (g, w) = c.trim().split_once('x')?;
                        Some((g.parse().ok()?, w.parse().ok()?))
                    })
                    .collect()
            })
            .unwrap_or_else(|| vec![(1, 2), (64, 1)]);
        for (groups, window) in bw_cases {
            if only_groups.is_some_and(|g| g != groups) {
                continue;
            }
            let d = dir.join("paired-bw");
            let (tx, rx) = std::sync::mpsc::channel();
            glommio::LocalExecutorBuilder::default()
                .io_memory(io_memory() + 2 * RAW_QD * (1 << 20))
                .spawn(move || async move {
                    tx.send(paired_bandwidth(d, groups, window, secs).await)
                        .unwrap()
                })
                .unwrap()
                .join()
                .unwrap();
            let rounds = rx.recv().unwrap();
            let list = |side: usize| {
                rounds
                    .iter()
                    .map(|r| format!("{:.0}", r[side]))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let sum = |side: usize| rounds.iter().map(|r| r[side]).sum::<f64>();
            report
                .bandwidth
                .push((groups, window, [sum(0), sum(1), sum(2)], rounds.clone()));
            println!(
                "{:>6} {:>6} | {:>36} | {:>36} | {:>36} | {:>5.2} {:>6.2}",
                groups,
                window,
                list(0),
                list(1),
                list(2),
                sum(0) / sum(1),
                sum(0) / sum(2)
            );
        }
    }

    report.print_targets();
    if std::env::var("CHRONIK_BENCH_NO_RECOVERY").is_err() {
        report.recovery = Some(recovery(&dir));
    }
    report.write_json(&dir);
}

fn recovery(dir: &std::path::Path) -> chronik_storage::RecoveryReport {
    let d = dir.join("wal-recovery");
    let (tx, rx) = std::sync::mpsc::channel();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move { tx.send(recovery_case(d, 1 << 30).await).unwrap() })
        .unwrap()
        .join()
        .unwrap();
    let r = rx.recv().unwrap();
    println!();
    println!(
        "recovery: {} segments, {} MiB scanned, {} entries in {:?} ({:.0} MiB/s; page cache may hold part of it)",
        r.segments,
        r.bytes_scanned >> 20,
        r.entries,
        r.duration,
        (r.bytes_scanned as f64 / 1048576.0) / r.duration.as_secs_f64()
    );
    r
}

/// MiB/s of one round of the side-by-side bandwidth case: [WAL, raw, raw+copy].
type Slices = [f64; 3];

/// Everything one run measured, for the targets summary and the JSON file.
#[derive(Default)]
struct Report {
    /// fio's `key=value` figures (`benches/fio.sh`).
    fio: std::collections::HashMap<String, f64>,
    cases: Vec<(Case, Outcome)>,
    /// (batch, block, [WAL, fdatasync, write+fdatasync, O_DSYNC write]).
    paired: Vec<(usize, usize, [Lat; 4])>,
    /// (groups, window, summed MiB/s of [WAL, raw, raw+copy], per-round slices).
    bandwidth: Vec<(u64, u64, [f64; 3], Vec<Slices>)>,
    recovery: Option<chronik_storage::RecoveryReport>,
}

/// The storage issue's targets.
const BW_TARGET: f64 = 0.85;
const P99_TARGET: f64 = 1.5;
const GROUP_COMMIT_TARGET: f64 = 5.0;

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

impl Report {
    fn case(&self, batch: usize, groups: u64, window: u64, mode: SyncMode) -> Option<&Outcome> {
        self.cases
            .iter()
            .find(|(c, _)| {
                c.batch == batch && c.groups == groups && c.window == window && c.mode == mode
            })
            .map(|(_, o)| o)
    }

    /// Each target beside what this run measured (only the parts that ran).
    fn print_targets(&self) {
        println!();
        println!("targets, from what this run measured:");
        let raw = self.fio.get("raw_seq_write_mib_s").copied();
        let bw: Vec<(String, f64)> = self
            .cases
            .iter()
            .filter(|(c, _)| c.batch == 1 << 20 && c.mode == SyncMode::Periodic)
            .filter_map(|(c, o)| Some((format!("{}x{}", c.groups, c.window), o.mib_s / raw?)))
            .collect();
        if !bw.is_empty() {
            let list: Vec<String> = bw.iter().map(|(n, r)| format!("{n} {r:.2}")).collect();
            println!(
                "  1 MiB `periodic` >= {BW_TARGET} x raw O_DIRECT (fio, {:.0} MiB/s), groups x window: {}: {}",
                raw.unwrap_or(0.0),
                list.join(", "),
                verdict(bw.iter().all(|(_, r)| *r >= BW_TARGET))
            );
        }
        if !self.bandwidth.is_empty() {
            let list: Vec<String> = self
                .bandwidth
                .iter()
                .map(|(g, w, s, _)| format!("{g}x{w} {:.2} ({:.2})", s[0] / s[1], s[0] / s[2]))
                .collect();
            println!(
                "  1 MiB `periodic` >= {BW_TARGET} x raw O_DIRECT side by side (in brackets: x raw+copy): {}: {}",
                list.join(", "),
                verdict(self.bandwidth.iter().all(|(_, _, s, _)| s[0] / s[1] >= BW_TARGET))
            );
        }
        if !self.paired.is_empty() {
            let list: Vec<String> = self
                .paired
                .iter()
                .map(|(b, _, [w, f, _, ds])| {
                    format!(
                        "{} KiB {:.2} (one raw O_DSYNC write: {:.2})",
                        b >> 10,
                        w.p99 as f64 / f.p99 as f64,
                        ds.p99 as f64 / f.p99 as f64
                    )
                })
                .collect();
            println!(
                "  `always` append->durable p99 <= {P99_TARGET} x raw fdatasync p99, side by side, 1 group, one in flight: {}: {}",
                list.join(", "),
                verdict(
                    self.paired
                        .iter()
                        .all(|(_, _, [w, f, _, _])| w.p99 as f64 <= P99_TARGET * f.p99 as f64)
                )
            );
        }
        if let Some(fds) = self.fio.get("raw_fdatasync_p99_us") {
            let list: Vec<(usize, f64)> = [1usize << 10, 16 << 10]
                .into_iter()
                .filter_map(|b| {
                    Some((b, self.case(b, 1, 1, SyncMode::Always)?.p99_us as f64 / fds))
                })
                .collect();
            if !list.is_empty() {
                let text: Vec<String> = list
                    .iter()
                    .map(|(b, r)| format!("{} KiB {r:.2}", b >> 10))
                    .collect();
                println!(
                    "  `always` p99 (table, 1 group) <= {P99_TARGET} x fio fdatasync p99 ({fds:.0} us, measured minutes apart): {}: {}",
                    text.join(", "),
                    verdict(list.iter().all(|(_, r)| *r <= P99_TARGET))
                );
            }
        }
        let gc: Vec<(SyncMode, f64)> = [SyncMode::Always, SyncMode::Periodic]
            .into_iter()
            .filter_map(|m| {
                let one = self.case(1 << 10, 1, 1, m)?;
                let many = self.case(1 << 10, 64, 1, m)?;
                Some((m, many.batches_s / one.batches_s))
            })
            .collect();
        if !gc.is_empty() {
            let text: Vec<String> = gc
                .iter()
                .map(|(m, r)| format!("{} {r:.1}x", format!("{m:?}").to_lowercase()))
                .collect();
            println!(
                "  1 KiB batches, 64 groups >= {GROUP_COMMIT_TARGET} x one group's batches/s: {}: {}",
                text.join(", "),
                verdict(gc.iter().all(|(_, r)| *r >= GROUP_COMMIT_TARGET))
            );
        }
    }

    /// Writes the run's figures to `CHRONIK_BENCH_JSON` (default `<bench dir>/wal-bench.json`).
    fn write_json(&self, dir: &std::path::Path) {
        let lat = |l: &Lat| json!({"p50_us": l.p50, "p99_us": l.p99, "p999_us": l.p999});
        let cases: Vec<Value> = self
            .cases
            .iter()
            .map(|(c, o)| {
                json!({
                    "batch": c.batch, "groups": c.groups, "window": c.window,
                    "mode": format!("{:?}", c.mode).to_lowercase(),
                    "write_through": write_through(),
                    "mib_s": o.mib_s, "batches_s": o.batches_s, "fsyncs": o.fsyncs,
                    "cpu_pct": o.cpu_pct, "recycled": o.recycled,
                    "p50_us": o.p50_us, "p99_us": o.p99_us, "p999_us": o.p999_us,
                })
            })
            .collect();
        let paired: Vec<Value> = self
            .paired
            .iter()
            .map(|(b, block, [w, f, wf, ds])| {
                json!({
                    "batch": b, "block": block, "wal": lat(w), "fdatasync": lat(f),
                    "write_fdatasync": lat(wf), "odsync_write": lat(ds),
                })
            })
            .collect();
        let bandwidth: Vec<Value> = self
            .bandwidth
            .iter()
            .map(|(g, w, s, rounds)| {
                json!({
                    "groups": g, "window": w, "wal_mib_s": s[0] / rounds.len() as f64,
                    "raw_mib_s": s[1] / rounds.len() as f64,
                    "raw_copy_mib_s": s[2] / rounds.len() as f64,
                    "slices": rounds,
                })
            })
            .collect();
        let recovery = self.recovery.as_ref().map(|r| {
            json!({
                "segments": r.segments, "bytes_scanned": r.bytes_scanned, "entries": r.entries,
                "seconds": r.duration.as_secs_f64(),
            })
        });
        let doc = json!({
            "fio": self.fio, "cases": cases, "side_by_side_latency": paired,
            "side_by_side_bandwidth": bandwidth, "recovery": recovery,
        });
        let path = std::env::var("CHRONIK_BENCH_JSON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| dir.join("wal-bench.json"));
        match std::fs::write(&path, serde_json::to_string_pretty(&doc).expect("json")) {
            Ok(()) => println!("\nresults: {}", path.display()),
            Err(e) => println!("\nresults not written to {}: {e}", path.display()),
        }
    }
}
