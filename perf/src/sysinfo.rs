//! What the run happened on: the machine, the broker process (/proc/<pid>) and the harness itself
//! (getrusage), so a reader can tell whether the broker or the load generator was the limit.

use serde::{Deserialize, Serialize};

/// The host a result was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Online CPUs.
    pub cores: u32,
    /// `uname -r`.
    pub kernel: String,
    pub hostname: String,
    pub mem_total_bytes: u64,
    /// First `model name` in /proc/cpuinfo, if any.
    pub cpu_model: String,
}

impl Machine {
    /// Probes the current host; missing pieces become empty or zero, never an error.
    pub fn probe() -> Machine {
        // SAFETY: sysconf has no memory-safety preconditions.
        let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        let (kernel, hostname) = uname();
        let mem_total_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .map(|kb| kb * 1024)
            .unwrap_or(0);
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_default();
        Machine {
            cores: u32::try_from(cores).unwrap_or(0),
            kernel,
            hostname,
            mem_total_bytes,
            cpu_model,
        }
    }
}

fn uname() -> (String, String) {
    // SAFETY: utsname is plain old data; uname fills it and NUL-terminates each field.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return (String::new(), String::new());
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (field(&u.release[..]), field(&u.nodename[..]))
}

/// The 1-minute load average from /proc/loadavg (0 if unreadable).
pub fn load_avg_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// CPU time and resident memory of a process at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcSample {
    /// User + system CPU seconds since the process started.
    pub cpu_s: f64,
    pub rss_bytes: u64,
}

/// `/proc/<pid>/task/<tid>/schedstat` summed over threads: time on a CPU, time runnable but
/// waiting for one (run-queue wait), and the number of times a thread was given a CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedSample {
    pub run_ns: u64,
    pub wait_ns: u64,
    pub slices: u64,
}

/// Parses one schedstat line: `<run ns> <wait ns> <timeslices>`.
pub fn parse_schedstat(line: &str) -> Option<SchedSample> {
    let mut f = line.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some(SchedSample {
        run_ns: f.next()??,
        wait_ns: f.next()??,
        slices: f.next()??,
    })
}

/// [`SchedSample`] of every thread of `pid` added up; `None` if none could be read (no such
/// process, or a kernel without schedstat: CONFIG_SCHED_INFO off). Threads that
/// exited between two samples take their counts with them, so compare samples of a process whose
/// threads live as long as it (a broker's shards do).
pub fn sched_sample(pid: u32) -> Option<SchedSample> {
    let mut total: Option<SchedSample> = None;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Ok(line) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        if let Some(s) = parse_schedstat(&line) {
            let t = total.get_or_insert_with(SchedSample::default);
            t.run_ns += s.run_ns;
            t.wait_ns += s.wait_ns;
            t.slices += s.slices;
        }
    }
    total
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/statm`; `None` if the process is gone or unreadable.
pub fn proc_sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let cpu_s = parse_stat_cpu_ticks(&stat)? as f64 / clock_ticks_per_s();
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let rss_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(ProcSample {
        cpu_s,
        rss_bytes: rss_pages * page_size(),
    })
}

/// utime + stime (fields 14 and 15) from a /proc/<pid>/stat line. The command name (field 2) is
/// in parentheses and may itself contain spaces or ')', so parse from the last ')'.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')': field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).unwrap_or(4096).max(1)
}

/// The harness's own CPU time (all threads, including librdkafka's) and peak RSS.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SelfUsage {
    pub user_s: f64,
    pub sys_s: f64,
    pub max_rss_bytes: u64,
}

/// getrusage(RUSAGE_SELF).
pub fn self_usage() -> SelfUsage {
    // SAFETY: rusage is plain old data and getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return SelfUsage::default();
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    SelfUsage {
        user_s: tv(ru.ru_utime),
        sys_s: tv(ru.ru_stime),
        // ru_maxrss is in KiB on Linux.
        max_rss_bytes: u64::try_from(ru.ru_maxrss).unwrap_or(0) * 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        let line = "1234 (my (weird) cmd) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_stat_cpu_ticks(line), Some(325));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        assert_eq!(parse_stat_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn schedstat_parsing() {
        assert_eq!(
            parse_schedstat("123456 7890 42\n"),
            Some(SchedSample {
                run_ns: 123456,
                wait_ns: 7890,
                slices: 42
            })
        );
        assert_eq!(parse_schedstat("1 2"), None);
        assert_eq!(parse_schedstat("1 x 3"), None);
    }

    #[test]
    fn probes_this_process_and_machine() {
        let m = Machine::probe();
        assert!(m.cores >= 1);
        assert!(!m.kernel.is_empty());
        let s = proc_sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0);
        let u = self_usage();
        assert!(u.max_rss_bytes > 0);
        assert!(proc_sample(u32::MAX).is_none());
        // Where the kernel keeps schedstat, this very thread has run.
        if let Some(sched) = sched_sample(std::process::id()) {
            assert!(sched.run_ns > 0 && sched.slices > 0, "{sched:?}");
        }
        assert!(load_avg_1m() >= 0.0);
    }
}
