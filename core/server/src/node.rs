//! Process start-up and shutdown.
//!
//! Order: validate the config; create the data directory; check the host (kernel, io_uring,
//! O_DIRECT, memlock) and refuse with a message naming the fix; install the metrics recorder and
//! signal handlers; start one pinned executor per core. Each shard opens its WAL (recovery),
//! joins the cross-shard mesh and starts its Raft loop; shard 0 replays `__meta` and brings every
//! shard's partitions up; then all shards listen. SIGTERM/SIGINT: stop accepting, let in-flight
//! requests finish (bounded by `shutdown_timeout_ms`), flush the WAL, exit 0.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chronik_core::config::Config;
use chronik_raft::Applier;
use chronik_shard::executor::{allowed_cores, run_on_shards, ExecutorOptions};
use chronik_shard::mesh::{Mesh, MeshSetup};
use chronik_storage::{SyncMode, Wal, WalOptions};
use glommio::net::TcpListener;

use crate::broker::Broker;
use crate::calls::{Call, Reply};
use crate::partition::now_ms;
use crate::shared::Shared;

/// How often shards look at the shutdown flag and run housekeeping.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(50);
/// Partition figures for `/metrics` are refreshed every this many housekeeping ticks (1 s).
const STATS_EVERY_TICKS: u64 = 20;
/// How often retention and WAL reclamation run.
const RETENTION_INTERVAL_FLOOR: Duration = Duration::from_secs(1);
/// Executor lateness reported as a stall (log line and `chronik_shard_stalls_total`).
const STALL_THRESHOLD: Duration = Duration::from_millis(20);

/// Runs the broker until a shutdown signal. Returns the process exit code.
/// Upper bounds of the latency histograms (`*_seconds`): 50 µs to 10 s, about three per decade,
/// so a p99 read off `/metrics` is within one bucket of the truth.
const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_2, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.007_5, 0.01, 0.02, 0.05,
    0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

pub fn run(config: Config) -> anyhow::Result<()> {
    let data_dir = config.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let _lock = lock_data_dir(&data_dir)?;
    let usable = allowed_cores();
    let cores = config
        .server
        .cores
        .resolve(&usable)
        .map_err(|e| anyhow::anyhow!("server.cores: {e}"))?;
    let report = match chronik_shard::sysreq::check_system(
        &data_dir,
        config.server.io_memory_bytes as usize,
        cores.len(),
    ) {
        Ok(r) => r,
        Err(failures) => {
            eprintln!("{}", chronik_shard::sysreq::render_failures(&failures));
            std::process::exit(2);
        }
    };
    tracing::info!(
        kernel = %report.kernel,
        fs = %report.data_dir_fs,
        io_memory_bytes = report.io_memory_bytes,
        shards = cores.len(),
        "host checks passed"
    );
    if let Some(advice) = &report.mount_advice {
        tracing::warn!("{advice}; see linux-only.md");
    }
    if let Some(advice) = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .ok()
        .and_then(|e| chronik_shard::sysreq::thp_advice(&e))
    {
        tracing::warn!("{advice}; see linux-only.md");
    }
    if std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|m| m.trim() == "2") {
        tracing::warn!(
            "vm.overcommit_memory is 2 (strict): a request with a forged array count can then \
             abort the broker instead of closing its connection; see linux-only.md"
        );
    }
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            LATENCY_BUCKETS_SECONDS,
        )
        .context("configuring latency histogram buckets")?
        .build_recorder();
    let _ = crate::http::PROMETHEUS.set(recorder.handle());
    let _ = metrics::set_global_recorder(recorder);

    let shared_cfg_spin_us = config.server.spin_before_park_us;
    let pin_cores = config.server.pin_cores;
    let kafka_tls = crate::tls::kafka_acceptor(&config.server)
        .context("setting up TLS for the Kafka listener")?;
    let mut shared = Shared::new(config, cores.len());
    shared.kafka_tls = kafka_tls;
    let shared = Arc::new(shared);
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, unsafe_flag(&shared))
            .context("installing signal handlers")?;
    }
    let setup: MeshSetup<Call, Reply> = MeshSetup::new(cores.len());
    let opts = ExecutorOptions {
        cores,
        pin: pin_cores,
        io_memory_bytes: report.io_memory_bytes,
        spin_before_park: (shared_cfg_spin_us > 0)
            .then(|| Duration::from_micros(shared_cfg_spin_us)),
    };
    let results = run_on_shards(&opts, move |shard| {
        let shared = shared.clone();
        let setup = setup.clone();
        async move {
            let r = shard_main(shard, shared.clone(), setup).await;
            if let Err(e) = &r {
                // One shard failing takes the node down: a half-alive broker is worse.
                tracing::error!(shard, "shard failed: {e:#}");
                shared.shutting_down.store(true, Ordering::Release);
            }
            r.map_err(|e| format!("{e:#}"))
        }
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    for r in results {
        r.map_err(|e| anyhow::anyhow!(e))?;
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// Takes an exclusive `flock` on `<data_dir>/chronik.lock` for the life of the process: two
/// brokers recovering and appending to the same WAL would destroy it. The lock dies with the
/// process (also on kill -9), so a stale file never blocks a restart.
fn lock_data_dir(data_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    let path = data_dir.join("chronik.lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        anyhow::bail!(
            "data directory {} is in use by another chronik-server (pid {}); stop it first or \
             use another --data-dir",
            data_dir.display(),
            holder.trim()
        );
    }
    let record_pid = |f: &mut std::fs::File| -> std::io::Result<()> {
        f.set_len(0)?;
        f.rewind()?;
        write!(f, "{}", std::process::id())
    };
    if let Err(e) = record_pid(&mut f) {
        // The first write of a start: on a full disk say so, as the start-up checks would.
        let what = format!("writing {}", path.display());
        if chronik_shard::sysreq::is_no_space(&e) {
            anyhow::bail!(chronik_shard::sysreq::no_space_failure(data_dir, &what, &e).message);
        }
        return Err(e).context(what);
    }
    Ok(f)
}

/// The shutdown flag as the `Arc<AtomicBool>` signal-hook wants (shared with `Shared`).
fn unsafe_flag(shared: &Arc<Shared>) -> Arc<std::sync::atomic::AtomicBool> {
    shared.shutdown_flag()
}

fn wal_options(config: &Config, shard: usize) -> WalOptions {
    let s = &config.cluster.storage;
    let mut o = WalOptions::new(config.wal_dir().join(format!("shard-{shard}")));
    o.segment_bytes = s.wal_segment_size;
    o.sync_mode = match s.wal_sync_mode.as_str() {
        "always" => SyncMode::Always,
        _ => SyncMode::Periodic,
    };
    o.sync_interval_ms = s.wal_sync_interval_ms.max(1);
    o.recycle_segments = s.wal_recycle_segments as usize;
    o.prepare_bytes_per_sec = s.wal_prepare_bytes_per_sec;
    o.write_through = s.wal_write_through;
    o.cache_bytes = usize::try_from(s.wal_cache_bytes).unwrap_or(usize::MAX);
    o
}

async fn shard_main(
    shard: usize,
    shared: Arc<Shared>,
    setup: MeshSetup<Call, Reply>,
) -> anyhow::Result<()> {
    let opts = wal_options(&shared.config, shard);
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("creating WAL directory {}", opts.dir.display()))?;
    let periodic = opts.sync_mode == SyncMode::Periodic;
    let (wal, recovery) = Wal::open(opts.clone())
        .await
        .with_context(|| format!("opening WAL {}", opts.dir.display()))?;
    tracing::info!(
        shard,
        segments = recovery.segments,
        bytes = recovery.bytes_scanned,
        entries = recovery.entries,
        truncated_tail_bytes = recovery.truncated_tail_bytes,
        duration_ms = recovery.duration.as_millis() as u64,
        "WAL recovered"
    );
    let wal = Rc::new(wal);
    let broker = Broker::new(shard, shared.clone(), wal.clone());
    let b2 = broker.clone();
    let handler: chronik_shard::Handler<Call, Reply> =
        Rc::new(move |call| Box::pin(b2.clone().handle(call)));
    let mesh = Mesh::join(setup, shard, handler)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    broker.set_mesh(mesh);

    let raft_loop = {
        let raft = broker.raft.clone();
        let applier: Rc<dyn Applier> = broker.clone();
        glommio::spawn_local(async move {
            // Storage failures are handled inside (writes answered KAFKA_STORAGE_ERROR, reads
            // continue); an error here is a bug, not a reason to take the shard down.
            if let Err(e) = raft.run(applier).await {
                tracing::error!(shard, "raft loop ended: {e}");
            }
        })
        .detach()
    };
    {
        let raft = broker.raft.clone();
        let shared = shared.clone();
        glommio::spawn_local(async move {
            while !shared.is_shutting_down() {
                glommio::timer::sleep(chronik_raft::engine::TICK_INTERVAL).await;
                raft.tick_all();
            }
        })
        .detach();
    }
    if periodic {
        glommio::spawn_local(wal.clone().run_periodic_sync()).detach();
    }
    glommio::spawn_local(crate::handlers::groups::run_timers(broker.clone())).detach();
    glommio::spawn_local(crate::handlers::txn::run_timers(broker.clone())).detach();
    {
        let shared = shared.clone();
        glommio::spawn_local(chronik_shard::executor::watch_stalls(
            shard,
            STALL_THRESHOLD,
            move || shared.is_shutting_down(),
        ))
        .detach();
    }
    {
        let broker = broker.clone();
        let every =
            Duration::from_millis(broker.shared.config.broker.log_retention_check_interval_ms)
                .max(RETENTION_INTERVAL_FLOOR);
        glommio::spawn_local(async move {
            while !broker.shared.is_shutting_down() {
                glommio::timer::sleep(every).await;
                let now = now_ms();
                for p in broker.local_partitions() {
                    p.enforce_retention(now);
                }
                if let Err(e) = broker.wal.reclaim().await {
                    tracing::warn!("WAL reclamation failed: {e}");
                }
            }
        })
        .detach();
    }

    {
        // Log compaction in its own task queue with few shares: under load it gets a small
        // slice of the core, and it yields every few milliseconds of work (compaction.rs).
        let tq = glommio::executor().create_task_queue(
            glommio::Shares::Static(crate::compaction::CLEANER_SHARES),
            glommio::Latency::NotImportant,
            "compaction",
        );
        let (b1, b2) = (broker.clone(), broker.clone());
        let cleaner = crate::compaction::run_cleaner(
            shard,
            broker.wal.clone(),
            move || b1.local_partitions(),
            move || b2.shared.is_shutting_down(),
        );
        glommio::spawn_local_into(cleaner, tq)
            .map_err(|e| anyhow::anyhow!("spawning the compaction task: {e}"))?
            .detach();
    }

    if shard == 0 {
        broker.bootstrap_meta().await?;
        shared.set_ready();
    } else {
        let start = Instant::now();
        while !shared.is_ready() {
            anyhow::ensure!(!shared.is_shutting_down(), "shutdown during start-up");
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(120),
                "shard 0 did not finish start-up"
            );
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }

    let addr = shared.config.kafka_listen_addr();
    let listener = TcpListener::bind(&addr)
        .map_err(|e| anyhow::anyhow!("binding Kafka listener {addr}: {e}"))?;
    let accept = {
        let broker = broker.clone();
        glommio::spawn_local(async move {
            loop {
                match listener.accept().await {
                    Ok(stream) => {
                        if broker.shared.is_shutting_down() {
                            break;
                        }
                        let max = broker.shared.config.server.max_connections as usize;
                        if broker.shared.connections.load(Ordering::Acquire) >= max {
                            tracing::warn!(max, "connection limit reached; closing new connection");
                            continue;
                        }
                        glommio::spawn_local(crate::conn::serve(broker.clone(), stream)).detach();
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        })
        .detach()
    };
    let http_accept = match shared.config.http_listen_addr() {
        Some(http_addr) => {
            let l = TcpListener::bind(&http_addr)
                .map_err(|e| anyhow::anyhow!("binding HTTP listener {http_addr}: {e}"))?;
            let broker = broker.clone();
            Some(
                glommio::spawn_local(async move {
                    while let Ok(stream) = l.accept().await {
                        glommio::spawn_local(crate::http::serve(broker.clone(), stream, &[]))
                            .detach();
                    }
                })
                .detach(),
            )
        }
        None => None,
    };
    broker.publish_stats();
    if shard == 0 {
        tracing::info!(
            "Chronik server ready on {addr} (advertised: {}:{}), {} shard(s)",
            shared.advertised_host,
            shared.advertised_port,
            shared.shards
        );
    }

    let mut ticks = 0u64;
    while !shared.is_shutting_down() {
        glommio::timer::sleep(HOUSEKEEPING_INTERVAL).await;
        ticks += 1;
        if ticks.is_multiple_of(STATS_EVERY_TICKS) {
            broker.publish_stats();
        }
    }
    // Stop accepting, let in-flight requests finish, then make everything durable.
    accept.cancel();
    if let Some(h) = http_accept {
        h.cancel();
    }
    broker.coordinators.close_all();
    broker.wake_parked();
    let deadline = Instant::now() + Duration::from_millis(shared.config.server.shutdown_timeout_ms);
    while broker.inflight() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    if broker.inflight() > 0 {
        tracing::warn!(
            shard,
            inflight = broker.inflight(),
            "shutdown timeout: requests abandoned"
        );
    }
    // Keep serving other shards' calls until every shard has drained its own requests.
    shared.drained_shards.fetch_add(1, Ordering::AcqRel);
    while shared.drained_shards.load(Ordering::Acquire) < shared.shards && Instant::now() < deadline
    {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    broker.raft.stop();
    let _ = raft_loop.await;
    wal.flush().await.context("final WAL flush")?;
    if periodic {
        wal.sync().await.context("final WAL sync")?;
    }
    tracing::info!(shard, "shard stopped");
    Ok(())
}
