//! Starting one pinned executor per core.

use std::future::Future;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

/// Errors starting executors.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("cannot start the executor for core {core}: {reason}")]
    Start { core: usize, reason: String },
    #[error("the executor for core {core} panicked")]
    Panicked { core: usize },
}

/// Options for the executors.
#[derive(Clone, Debug)]
pub struct ExecutorOptions {
    /// CPU ids to pin to, one shard each, in shard order.
    pub cores: Vec<usize>,
    /// Pin to the cores (false: let the OS schedule; used by tests on busy machines).
    pub pin: bool,
    /// Memory each executor registers with io_uring for its buffers.
    pub io_memory_bytes: usize,
    /// How long an idle executor spins before sleeping (latency vs CPU).
    pub spin_before_park: Option<Duration>,
}

impl ExecutorOptions {
    /// Unpinned shards on `cores` with a small I/O memory budget and no spinning: for tests and
    /// examples that share a busy machine.
    pub fn unpinned_small(cores: Vec<usize>) -> Self {
        Self {
            cores,
            pin: false,
            io_memory_bytes: 512 * 1024,
            spin_before_park: None,
        }
    }
}

/// Runs `f(shard_index)` on one executor per core and waits for all of them.
/// Results come back in shard order.
pub fn run_on_shards<F, Fut, T>(opts: &ExecutorOptions, f: F) -> Result<Vec<T>, ExecutorError>
where
    F: Fn(usize) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let mut handles = Vec::with_capacity(opts.cores.len());
    for (shard, &core) in opts.cores.iter().enumerate() {
        let placement = if opts.pin {
            Placement::Fixed(core)
        } else {
            Placement::Unbound
        };
        // The preempt timer stays at glommio's default (100 ms). glommio submits queued DMA
        // writes only when it polls I/O, i.e. when the runnable tasks are done or the timer
        // fires, so a short timer would get writes to the device sooner; but with 50–200 µs the
        // WAL bench's executor hung in 10 of 47 runs, parked in io_uring_enter with no timer to
        // wake it. That matches a glommio 0.9.0 bug reported in its fork (glommio/glommio#53,
        // unpublished): the run loop reads "preempted before the first task queue ran" as
        // "nothing to run" and parks although tasks are runnable.
        let mut b = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{shard}"))
            .io_memory(opts.io_memory_bytes);
        if let Some(spin) = opts.spin_before_park {
            b = b.spin_before_park(spin);
        }
        let f = f.clone();
        let h = b
            .spawn(move || f(shard))
            .map_err(|e| ExecutorError::Start {
                core,
                reason: e.to_string(),
            })?;
        handles.push((core, h));
    }
    let mut out = Vec::with_capacity(handles.len());
    for (core, h) in handles {
        out.push(h.join().map_err(|_| ExecutorError::Panicked { core })?);
    }
    Ok(out)
}

/// How often [`watch_stalls`] checks the executor's responsiveness.
pub const STALL_PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// Reactor stall detector (like Seastar's): a task that sleeps `STALL_PROBE_INTERVAL` and
/// measures how late it wakes. Lateness beyond `threshold` means nothing on this shard ran for
/// that long: a task hogged the thread, a syscall blocked it, or the OS did not schedule it.
/// Each stall is logged and counted (`chronik_shard_stalls_total`, `chronik_shard_stall_ms_max`,
/// labelled by shard). Runs until `stop()` is true.
pub async fn watch_stalls(shard: usize, threshold: Duration, stop: impl Fn() -> bool) {
    let label = shard.to_string();
    let stalls = metrics::counter!("chronik_shard_stalls_total", "shard" => label.clone());
    let worst = metrics::gauge!("chronik_shard_stall_ms_max", "shard" => label);
    let mut max = Duration::ZERO;
    while !stop() {
        let t = std::time::Instant::now();
        glommio::timer::sleep(STALL_PROBE_INTERVAL).await;
        let late = t.elapsed().saturating_sub(STALL_PROBE_INTERVAL);
        if late >= threshold {
            stalls.increment(1);
            if late > max {
                max = late;
                worst.set(max.as_secs_f64() * 1000.0);
            }
            tracing::warn!(
                shard,
                stalled_ms = late.as_millis() as u64,
                "shard executor stalled"
            );
        }
    }
}

/// The CPUs this process may run on (its affinity mask), in order.
pub fn allowed_cores() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            return (0..n).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_one_executor_per_core_in_order() {
        let cores = allowed_cores();
        assert!(!cores.is_empty());
        let opts = ExecutorOptions::unpinned_small(vec![cores[0]; 3]);
        let out = run_on_shards(&opts, |i| async move { i * 10 }).unwrap();
        assert_eq!(out, vec![0, 10, 20]);
    }
}
