//! `chronik-perf` command line: `disk`, `run` and `compare`. All logic lives in the library.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use chronik_perf::chart;
use chronik_perf::compare::{compare, MAX_ROUNDS};
use chronik_perf::disk::{self, DiskOptions, DiskResult};
use chronik_perf::result::RunResult;
use chronik_perf::runner::{self, RunOptions};
use chronik_perf::workload::{Workload, MAX_PHASE_S};
use rdkafka::mocking::MockCluster;

#[derive(Parser)]
#[command(
    name = "chronik-perf",
    version,
    about = "Kafka-protocol benchmark harness"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Qualify a data directory: O_DIRECT sequential writes (4 KiB, 64 KiB, 1 MiB at queue depth
    /// 1 and 32) and fdatasync latency, via io_uring.
    Disk {
        /// Directory on the filesystem to test (must support O_DIRECT).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Size of the preallocated test file in MiB.
        #[arg(long, default_value_t = 1024)]
        file_mib: u64,
        /// Time limit of each write test, seconds.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Most fdatasync samples.
        #[arg(long, default_value_t = 2000)]
        fsyncs: u32,
        /// Write the JSON result here.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Run a workload against one broker.
    Run {
        workload: PathBuf,
        /// Kafka bootstrap address, HOST:PORT (`mock`: librdkafka's in-process mock cluster).
        #[arg(long)]
        bootstrap: String,
        #[command(flatten)]
        common: Common,
        /// JSON result file (an SVG chart is written next to it, same name with .svg).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Run a workload against two brokers in alternation and report medians and ratios.
    Compare {
        workload: PathBuf,
        /// Give exactly twice: A then B.
        #[arg(long, num_args = 1)]
        bootstrap: Vec<String>,
        /// Rounds (each runs A then B).
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Broker PIDs of A and B, as `PID_A,PID_B` (optional; local brokers only).
        #[arg(long = "broker-pids", value_delimiter = ',')]
        broker_pids: Vec<u32>,
        #[command(flatten)]
        common: Common,
        /// JSON comparison file.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct Common {
    /// Measured seconds (overrides the workload file).
    #[arg(long)]
    duration: Option<u64>,
    /// Warm-up seconds (overrides the workload file).
    #[arg(long)]
    warmup: Option<u64>,
    /// Target rate in messages/s (overrides the workload file; 0 = max throughput).
    #[arg(long)]
    rate: Option<u64>,
    /// PID of a local broker to sample CPU and RSS from /proc (run only).
    #[arg(long)]
    broker_pid: Option<u32>,
    /// A `disk --output` JSON of this host, to report throughput as a share of disk bandwidth.
    #[arg(long)]
    disk_result: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

fn load(path: &Path, c: &Common) -> anyhow::Result<Workload> {
    let mut w = Workload::from_file(path)?;
    if let Some(d) = c.duration {
        w.duration_s = d;
    }
    if let Some(d) = c.warmup {
        w.warmup_s = d;
    }
    if let Some(r) = c.rate {
        w.producers.rate_msgs_per_s = r;
    }
    w.validate()
        .with_context(|| format!("after overrides (phases at most {MAX_PHASE_S} s)"))?;
    Ok(w)
}

fn run_options(bootstrap: &str, c: &Common, pid: Option<u32>) -> anyhow::Result<RunOptions> {
    let disk_best = match &c.disk_result {
        Some(p) => Some(DiskResult::read_json(p)?.best_write_mb_per_s),
        None => None,
    };
    Ok(RunOptions {
        bootstrap: bootstrap.to_string(),
        broker_pid: pid,
        progress: !c.quiet,
        disk_best_write_mb_per_s: disk_best,
    })
}

/// Runs `workload` against `bootstrap`; the special address `mock` starts librdkafka's in-process
/// mock cluster (one broker) for the duration of the run, with the workload's topics created, to
/// check the harness itself and see its own ceiling without a broker.
fn run_once(w: &Workload, bootstrap: &str, opts: RunOptions) -> anyhow::Result<RunResult> {
    if bootstrap != MOCK_BOOTSTRAP {
        return Ok(runner::run(w, &opts)?);
    }
    let cluster = MockCluster::new(1).context("starting the librdkafka mock cluster")?;
    for t in &w.topics {
        cluster
            .create_topic(
                &t.name,
                i32::try_from(t.partitions)?,
                i32::try_from(t.replication_factor)?,
            )
            .with_context(|| format!("creating mock topic {}", t.name))?;
    }
    let opts = RunOptions {
        bootstrap: cluster.bootstrap_servers(),
        ..opts
    };
    Ok(runner::run(w, &opts)?)
}

/// `--bootstrap` value that selects librdkafka's in-process mock cluster.
const MOCK_BOOTSTRAP: &str = "mock";

fn write_run(result: &RunResult, output: &Path) -> anyhow::Result<()> {
    result.write_json(output)?;
    let svg = output.with_extension("svg");
    std::fs::write(&svg, chart::render(result))
        .with_context(|| format!("writing {}", svg.display()))?;
    eprintln!("wrote {} and {}", output.display(), svg.display());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Disk {
            dir,
            file_mib,
            seconds,
            fsyncs,
            output,
        } => {
            let r = disk::run(&DiskOptions {
                dir,
                file_bytes: file_mib.saturating_mul(1024 * 1024),
                seconds_per_test: seconds,
                fsyncs,
            })?;
            print!("{}", r.table());
            if let Some(out) = output {
                std::fs::write(&out, serde_json::to_string_pretty(&r)?)
                    .with_context(|| format!("writing {}", out.display()))?;
                eprintln!("wrote {}", out.display());
            }
        }
        Cmd::Run {
            workload,
            bootstrap,
            common,
            output,
        } => {
            let w = load(&workload, &common)?;
            let opts = run_options(&bootstrap, &common, common.broker_pid)?;
            let r = run_once(&w, &bootstrap, opts)?;
            print!("{}", r.table());
            if let Some(out) = output {
                write_run(&r, &out)?;
            }
        }
        Cmd::Compare {
            workload,
            bootstrap,
            rounds,
            broker_pids,
            common,
            output,
        } => {
            if bootstrap.len() != 2 {
                bail!("compare needs --bootstrap A --bootstrap B");
            }
            if rounds == 0 || rounds > MAX_ROUNDS {
                bail!("--rounds must be in 1..={MAX_ROUNDS}");
            }
            if !broker_pids.is_empty() && broker_pids.len() != 2 {
                bail!("--broker-pids takes exactly two PIDs: PID_A,PID_B");
            }
            let w = load(&workload, &common)?;
            let pids = [broker_pids.first().copied(), broker_pids.get(1).copied()];
            let mut runs: [Vec<RunResult>; 2] = [Vec::new(), Vec::new()];
            for round in 0..rounds {
                for side in 0..2 {
                    eprintln!(
                        "chronik-perf compare: round {}/{rounds}, {} = {}",
                        round + 1,
                        ["A", "B"][side],
                        bootstrap[side]
                    );
                    let opts = run_options(&bootstrap[side], &common, pids[side])?;
                    let r = run_once(&w, &bootstrap[side], opts)?;
                    eprint!("{}", r.table());
                    runs[side].push(r);
                }
            }
            let c = compare(&bootstrap[0], &bootstrap[1], &runs[0], &runs[1]);
            print!("{}", c.table());
            if let Some(out) = output {
                std::fs::write(&out, serde_json::to_string_pretty(&c)?)
                    .with_context(|| format!("writing {}", out.display()))?;
                eprintln!("wrote {}", out.display());
            }
        }
    }
    Ok(())
}
