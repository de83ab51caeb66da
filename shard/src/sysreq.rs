//! Start-up checks of the host: kernel >= 5.10, io_uring usable, O_DIRECT on
//! the data directory's filesystem, and enough `RLIMIT_MEMLOCK` for glommio.
//!
//! [`check_system`] runs every check (it does not stop at the first failure)
//! and either returns what it found or every unmet requirement, each with a
//! message that names the fix. `linux-only.md` at the repository root quotes
//! these messages; keep the two in step.
//!
//! Memlock arithmetic (why the check exists): each glommio executor
//! allocates `io_memory` bytes of DMA buffers and registers them with each of
//! its 3 io_uring rings (main, latency, poll). The kernel charges every
//! registration to the user's locked memory, so a process with 2 shards and
//! 10 MiB io_memory needs `10 MiB × 3 × 2 = 60 MiB` of `RLIMIT_MEMLOCK`,
//! while the usual default is 8 MiB. A process with `CAP_IPC_LOCK` (root) is
//! not charged. Independently, glommio refuses to start an executor when the
//! limit is below 512 KiB, even for root.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Oldest supported kernel (io_uring features glommio relies on).
pub const KERNEL_MIN: KernelVersion = KernelVersion {
    major: 5,
    minor: 10,
    patch: 0,
};

/// glommio's floor on `RLIMIT_MEMLOCK` (`MIN_MEMLOCK_LIMIT` in glommio 0.9).
pub const GLOMMIO_MEMLOCK_MIN_BYTES: u64 = 512 << 10;
/// io_uring rings per glommio executor that each register the buffers.
pub const RINGS_PER_EXECUTOR: u64 = 3;
/// Ceiling of the automatic `io_memory` size. The WAL stages appends in 1 MiB chunks of this
/// memory (`chronik_storage::staging`), and registered chunks skip per-write page pinning; 32
/// chunks cover the writes a shard has in flight at 1 MiB batches (the WAL bench's `periodic`
/// 1 MiB cases wrote 12–53% more per second with 32 MiB than with heap chunks).
pub const IO_MEMORY_AUTO_MAX_BYTES: u64 = 32 << 20;
/// glommio rounds `io_memory` up to at least this.
pub const IO_MEMORY_MIN_BYTES: u64 = 64 << 10;
/// Page size glommio aligns `io_memory` to.
const PAGE_BYTES: u64 = 4096;
/// Size and alignment of the O_DIRECT probe write (one logical block on any
/// disk we support: 4096 covers both 512-byte and 4 KiB sector devices).
pub const O_DIRECT_PROBE_BYTES: usize = 4096;
/// `CAP_IPC_LOCK` bit in `/proc/self/status` `CapEff`.
const CAP_IPC_LOCK_BIT: u32 = 14;

/// A kernel release `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Patch number (0 when absent).
    pub patch: u32,
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl KernelVersion {
    /// Parse a `uname -r` release such as `6.18.44-fc-v669`, `5.10.0-23-amd64`
    /// or `5.15`. Returns None when the first two fields are not numbers.
    pub fn parse(release: &str) -> Option<KernelVersion> {
        let mut parts = release.trim().splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor = leading_number(parts.next()?)?;
        let patch = parts.next().and_then(leading_number).unwrap_or(0);
        Some(KernelVersion {
            major,
            minor,
            patch,
        })
    }
}

fn leading_number(s: &str) -> Option<u32> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

/// Which requirement failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Kernel >= 5.10.
    Kernel,
    /// `io_uring_setup` works.
    IoUring,
    /// O_DIRECT works on the data directory.
    ODirect,
    /// `RLIMIT_MEMLOCK` is large enough.
    Memlock,
    /// The data directory's filesystem has room (not ENOSPC or out of quota).
    DiskSpace,
}

/// One unmet requirement with an operator-facing message that names the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequirementFailure {
    /// What failed.
    pub requirement: Requirement,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for RequirementFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The locked-memory situation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemlockReport {
    /// Soft `RLIMIT_MEMLOCK` in bytes; None = unlimited.
    pub limit_bytes: Option<u64>,
    /// The process has `CAP_IPC_LOCK` (root): registrations are not charged.
    pub ipc_lock: bool,
    /// Bytes glommio will lock: `io_memory × 3 × cores` (0 with CAP_IPC_LOCK).
    pub needed_bytes: u64,
}

/// What [`check_system`] found on a host that meets every requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemReport {
    /// Running kernel.
    pub kernel: KernelVersion,
    /// Filesystem of the data directory (`ext4`, `xfs`, or the magic in hex).
    pub data_dir_fs: String,
    /// Locked memory figures.
    pub memlock: MemlockReport,
    /// The `io_memory` to give each glommio executor (the requested value,
    /// or the automatic size when 0 was requested).
    pub io_memory_bytes: usize,
    /// A recommendation about the data directory's mount options (logged, not enforced).
    pub mount_advice: Option<String>,
}

fn align_up(v: u64, align: u64) -> u64 {
    v.div_ceil(align) * align
}

/// The io_memory glommio actually allocates for a requested size
/// (rounded up to 4 KiB, at least 64 KiB).
pub fn effective_io_memory(io_memory_bytes: u64) -> u64 {
    align_up(io_memory_bytes, PAGE_BYTES).max(IO_MEMORY_MIN_BYTES)
}

/// Locked bytes needed for `cores` executors of `io_memory_bytes` each.
///
/// Worked example: 2 cores × 3 rings × 10 MiB = 60 MiB = 62_914_560 bytes;
/// a request of 100_000 bytes rounds up to 102_400 (25 pages), so 2 cores
/// need 2 × 3 × 102_400 = 614_400 bytes.
pub fn memlock_needed_bytes(io_memory_bytes: u64, cores: usize) -> u64 {
    effective_io_memory(io_memory_bytes)
        .saturating_mul(RINGS_PER_EXECUTOR)
        .saturating_mul(cores as u64)
}

/// The io_memory to use when the configuration says 0 (automatic):
/// [`IO_MEMORY_AUTO_MAX_BYTES`] if the limit allows, else the largest page multiple with
/// `io_memory × 3 × cores <= limit`, never below glommio's 64 KiB floor
/// (then the memlock check fails and says so).
///
/// Worked example: limit 8 MiB, 2 cores: 8_388_608 / 6 = 1_398_101, rounded
/// down to pages = 1_396_736 bytes (341 pages) per executor.
pub fn auto_io_memory_bytes(limit_bytes: Option<u64>, ipc_lock: bool, cores: usize) -> u64 {
    let Some(limit) = limit_bytes.filter(|_| !ipc_lock) else {
        return IO_MEMORY_AUTO_MAX_BYTES;
    };
    let per = limit / (RINGS_PER_EXECUTOR * cores.max(1) as u64);
    let per = per / PAGE_BYTES * PAGE_BYTES;
    per.clamp(IO_MEMORY_MIN_BYTES, IO_MEMORY_AUTO_MAX_BYTES)
}

/// Judge a memlock situation. Pure, so the arithmetic is unit-tested.
pub fn check_memlock(
    limit_bytes: Option<u64>,
    ipc_lock: bool,
    io_memory_bytes: u64,
    cores: usize,
) -> Result<MemlockReport, RequirementFailure> {
    let needed = if ipc_lock {
        0
    } else {
        memlock_needed_bytes(io_memory_bytes, cores)
    };
    let report = MemlockReport {
        limit_bytes,
        ipc_lock,
        needed_bytes: needed,
    };
    let Some(limit) = limit_bytes else {
        return Ok(report);
    };
    let floor = GLOMMIO_MEMLOCK_MIN_BYTES;
    if limit < floor || limit < needed {
        let want = needed.max(floor);
        let want_kib = want.div_ceil(1024);
        let mut message = format!(
            "RLIMIT_MEMLOCK is {limit} bytes ({} KiB) but Chronik needs {want} bytes ({want_kib} KiB)",
            limit / 1024
        );
        if needed > 0 {
            message.push_str(&format!(
                ": io_memory {} bytes x {RINGS_PER_EXECUTOR} io_uring rings x {cores} core(s)",
                effective_io_memory(io_memory_bytes)
            ));
        }
        if limit < floor {
            message.push_str(&format!(
                "; glommio refuses to start below {floor} bytes even as root"
            ));
        }
        message.push_str(&format!(
            ". Fix: raise the limit (shell: `ulimit -l {want_kib}` or `ulimit -l unlimited`; \
             systemd: `LimitMEMLOCK={want}` or `LimitMEMLOCK=infinity` in the [Service] section; \
             /etc/security/limits.conf: `chronik - memlock {want_kib}`; \
             Docker: `--ulimit memlock=-1:-1`)"
        ));
        if limit >= floor {
            message.push_str(
                ", or lower server.io_memory_bytes / server.cores \
                 (server.io_memory_bytes = 0 sizes it to fit the limit)",
            );
        }
        return Err(RequirementFailure {
            requirement: Requirement::Memlock,
            message,
        });
    }
    Ok(report)
}

/// Soft `RLIMIT_MEMLOCK` in bytes; None = unlimited.
pub fn memlock_limit() -> io::Result<Option<u64>> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the valid pointer we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((rl.rlim_cur != libc::RLIM_INFINITY).then_some(rl.rlim_cur))
}

/// Whether the effective capability set holds `CAP_IPC_LOCK`, from the
/// `CapEff:` line of a `/proc/<pid>/status` text.
pub fn parse_cap_ipc_lock(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK_BIT) != 0)
}

/// Whether this process has `CAP_IPC_LOCK`.
pub fn has_cap_ipc_lock() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| parse_cap_ipc_lock(&s))
        .unwrap_or(false)
}

/// The running kernel's release string (`uname -r`).
pub fn kernel_release() -> io::Result<String> {
    // SAFETY: utsname is plain old data; zeroed is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct we own.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Judge a kernel release string.
pub fn check_kernel_release(release: &str) -> Result<KernelVersion, RequirementFailure> {
    match KernelVersion::parse(release) {
        Some(v) if v >= KERNEL_MIN => Ok(v),
        Some(v) => Err(RequirementFailure {
            requirement: Requirement::Kernel,
            message: format!(
                "kernel {release} ({v}) is older than {KERNEL_MIN}: Chronik needs Linux >= {KERNEL_MIN} \
                 for io_uring. Fix: upgrade the kernel (e.g. Ubuntu 22.04+, Debian 12+, RHEL 9+)"
            ),
        }),
        None => Err(RequirementFailure {
            requirement: Requirement::Kernel,
            message: format!(
                "cannot parse kernel release {release:?}: Chronik needs Linux >= {KERNEL_MIN}"
            ),
        }),
    }
}

/// Explain an `io_uring_setup` failure. `io_uring_disabled` is the value of
/// `/proc/sys/kernel/io_uring_disabled` when it exists (Linux >= 6.6).
pub fn io_uring_failure(err: &io::Error, io_uring_disabled: Option<u32>) -> RequirementFailure {
    let errno = err.raw_os_error().unwrap_or(0);
    let sysctl = match io_uring_disabled {
        Some(0) | None => String::new(),
        Some(1) => " The sysctl kernel.io_uring_disabled = 1 limits io_uring to members of \
                   kernel.io_uring_group. Fix: `sysctl -w kernel.io_uring_disabled=0` or add the \
                   service user to that group."
            .to_string(),
        Some(n) => format!(
            " The sysctl kernel.io_uring_disabled = {n} turns io_uring off. Fix: \
             `sysctl -w kernel.io_uring_disabled=0` (and persist it in /etc/sysctl.d/)."
        ),
    };
    let docker = " In a container, the default seccomp profile of Docker (25.0+) and containerd \
                  (2.0+) blocks io_uring_setup, io_uring_enter and io_uring_register. Fix: run with \
                  `--security-opt seccomp=/path/chronik-seccomp.json` (the default profile plus \
                  those three syscalls; see linux-only.md) or, for a trusted test host only, \
                  `--security-opt seccomp=unconfined`; in Kubernetes set \
                  securityContext.seccompProfile to a Localhost profile that allows them.";
    let message = match errno {
        libc::EPERM | libc::EACCES => {
            format!("io_uring is not permitted (io_uring_setup: {err}).{sysctl}{docker}")
        }
        libc::ENOSYS => format!(
            "io_uring is not available (io_uring_setup: {err}): the kernel was built without \
             CONFIG_IO_URING (Fix: use a kernel >= {KERNEL_MIN} with io_uring enabled), or a \
             seccomp filter answers ENOSYS.{docker}"
        ),
        libc::ENOMEM => format!(
            "io_uring_setup failed with ENOMEM ({err}): on kernels before 5.12 the rings count \
             against RLIMIT_MEMLOCK. Fix: raise it (`ulimit -l unlimited`, systemd \
             `LimitMEMLOCK=infinity`, Docker `--ulimit memlock=-1:-1`)."
        ),
        _ => format!("io_uring_setup failed: {err}.{sysctl}"),
    };
    RequirementFailure {
        requirement: Requirement::IoUring,
        message,
    }
}

/// Create and drop a 1-entry io_uring to prove the syscall is usable.
pub fn check_io_uring() -> Result<(), RequirementFailure> {
    // io_uring_params is 120 bytes of u32 fields (entries, flags, offsets);
    // zeroed input asks for defaults, the kernel fills in the rest.
    let mut params = [0u32; 30];
    // SAFETY: io_uring_setup(entries, params*) reads and writes the 120-byte
    // params block we own; it returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        return Err(io_uring_failure(&err, disabled));
    }
    // SAFETY: fd is the ring fd io_uring_setup just returned to us.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

/// Filesystem magic numbers (from `statfs(2)`) we name in messages.
const FS_NAMES: &[(i64, &str)] = &[
    (0xEF53, "ext4"),
    (0x5846_5342, "xfs"),
    (0x9123_683E, "btrfs"),
    (0x0102_1994, "tmpfs"),
    (0x8584_58f6, "ramfs"),
    (0x794c_7630, "overlayfs"),
    (0x6969, "nfs"),
    (0x6573_5546, "fuse"),
    (0x2FC1_2FC1, "zfs"),
    (0xF2F5_2010, "f2fs"),
];

/// Filesystems that accept O_DIRECT but keep data in RAM: never durable.
const VOLATILE_FS: &[&str] = &["tmpfs", "ramfs"];

/// Name of a filesystem magic, or the magic in hex.
pub fn fs_name(magic: i64) -> String {
    FS_NAMES
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| format!("0x{magic:x}"))
}

/// The filesystem type of `dir`, by name.
pub fn fs_type(dir: &Path) -> io::Result<String> {
    let mut c = dir.as_os_str().as_bytes().to_vec();
    c.push(0);
    // SAFETY: statfs is plain old data; zeroed is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and outlives the call; `st` is ours.
    let rc = unsafe { libc::statfs(c.as_ptr().cast(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs by target
    Ok(fs_name(st.f_type as i64))
}

/// A 4 KiB-aligned heap buffer for the O_DIRECT probe.
struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(fill: u8) -> AlignedBuf {
        let layout =
            std::alloc::Layout::from_size_align(O_DIRECT_PROBE_BYTES, O_DIRECT_PROBE_BYTES)
                .expect("4096/4096 is a valid layout");
        // SAFETY: layout has non-zero size.
        let raw = unsafe { std::alloc::alloc(layout) };
        let ptr =
            std::ptr::NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        // SAFETY: ptr points to `layout.size()` writable bytes we own.
        unsafe { std::ptr::write_bytes(ptr.as_ptr(), fill, layout.size()) };
        AlignedBuf { ptr, layout }
    }
    fn as_slice(&self) -> &[u8] {
        // SAFETY: initialised in `new`, owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: initialised in `new`, uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// Removes the probe file however the probe ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The data directory's filesystem (or the user's quota) is full: not an O_DIRECT problem, and
/// the fix is the operator's.
pub fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

pub fn no_space_failure(dir: &Path, what: &str, e: &std::io::Error) -> RequirementFailure {
    RequirementFailure {
        requirement: Requirement::DiskSpace,
        message: format!(
            "data directory {} is full: {what} failed: {e}. The WAL cannot write until there is \
             room. Fix: free space on that filesystem (or grow it, or raise the quota); data \
             already acknowledged is on disk and is recovered at the next start",
            dir.display()
        ),
    }
}

fn odirect_failure(dir: &Path, fs: &str, what: String) -> RequirementFailure {
    RequirementFailure {
        requirement: Requirement::ODirect,
        message: format!(
            "O_DIRECT does not work in data directory {} (filesystem {fs}): {what}. Chronik's WAL \
             writes with O_DIRECT. Fix: put server.data_dir (CHRONIK_DATA_DIR) and \
             cluster.storage.wal_dir on ext4 or xfs; tmpfs/ramfs are not durable, and some \
             overlayfs, FUSE and network filesystems reject O_DIRECT (in Docker, mount a volume \
             or bind mount instead of writing into the container layer)",
            dir.display()
        ),
    }
}

/// Prove O_DIRECT works in `dir`: create a probe file with O_DIRECT, write
/// 4 KiB from a 4 KiB-aligned buffer at offset 0, fdatasync, read it back
/// through O_DIRECT and compare, then remove it. Returns the filesystem name.
pub fn check_o_direct(dir: &Path) -> Result<String, RequirementFailure> {
    let fs = match fs_type(dir) {
        Ok(fs) => fs,
        Err(e) => {
            return Err(RequirementFailure {
                requirement: Requirement::ODirect,
                message: format!(
                    "data directory {} is not usable ({e}). Fix: create it (and make it writable \
                     by the broker's user) on an ext4 or xfs filesystem, or point \
                     server.data_dir / CHRONIK_DATA_DIR elsewhere",
                    dir.display()
                ),
            })
        }
    };
    if VOLATILE_FS.contains(&fs.as_str()) {
        return Err(odirect_failure(
            dir,
            &fs,
            "it keeps data in RAM only, so nothing survives a restart (and O_DIRECT is not real there)"
                .to_string(),
        ));
    }
    let path = dir.join(format!(".chronik-odirect-probe-{}", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path);
    let file = match file {
        Ok(f) => f,
        Err(e) if is_no_space(&e) => return Err(no_space_failure(dir, "creating a file", &e)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            return Err(odirect_failure(
                dir,
                &fs,
                format!("open({}, O_DIRECT) failed: {e}", path.display()),
            ))
        }
        Err(e) => {
            return Err(RequirementFailure {
                requirement: Requirement::ODirect,
                message: format!(
                    "cannot create a file in data directory {}: {e}. Fix: make it writable by the \
                     broker's user",
                    dir.display()
                ),
            })
        }
    };
    let _cleanup = RemoveOnDrop(path.clone());
    let out = AlignedBuf::new(0xA5);
    if let Err(e) = file.write_all_at(out.as_slice(), 0) {
        if is_no_space(&e) {
            return Err(no_space_failure(dir, "a 4096-byte write", &e));
        }
        return Err(odirect_failure(
            dir,
            &fs,
            format!("aligned 4096-byte O_DIRECT write failed: {e}"),
        ));
    }
    if let Err(e) = file.sync_data() {
        if is_no_space(&e) {
            return Err(no_space_failure(dir, "fdatasync", &e));
        }
        return Err(odirect_failure(dir, &fs, format!("fdatasync failed: {e}")));
    }
    let mut back = AlignedBuf::new(0);
    if let Err(e) = file.read_exact_at(back.as_mut_slice(), 0) {
        return Err(odirect_failure(
            dir,
            &fs,
            format!("aligned 4096-byte O_DIRECT read failed: {e}"),
        ));
    }
    if back.as_slice() != out.as_slice() {
        return Err(odirect_failure(
            dir,
            &fs,
            "the 4096 bytes read back differ from those written".to_string(),
        ));
    }
    Ok(fs)
}

/// The mount holding `dir`, from `/proc/self/mountinfo`: (mount point, filesystem type, mount
/// options). `None` if it cannot be read.
pub fn mount_of(dir: &Path) -> Option<(String, String, Vec<String>)> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mount_of_in(&info, &dir.to_string_lossy())
}

/// [`mount_of`] over the text of a mountinfo file: the longest mount point that is `dir` or a
/// parent of it (the last such line wins, as later mounts hide earlier ones).
pub fn mount_of_in(mountinfo: &str, dir: &str) -> Option<(String, String, Vec<String>)> {
    let mut best: Option<(String, String, Vec<String>)> = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mount_point options [optional...] - fstype source super_opts
        let mut parts = line.split(" - ");
        let (Some(left), Some(right)) = (parts.next(), parts.next()) else {
            continue;
        };
        let l: Vec<&str> = left.split_whitespace().collect();
        let r: Vec<&str> = right.split_whitespace().collect();
        if l.len() < 6 || r.is_empty() {
            continue;
        }
        // Mount points escape spaces etc. as octal (\040); data directories rarely need them.
        let mp = l[4].replace("\\040", " ");
        let inside = dir == mp
            || mp == "/"
            || dir
                .strip_prefix(mp.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
        if !inside || best.as_ref().is_some_and(|b| b.0.len() > mp.len()) {
            continue;
        }
        let mut opts: Vec<String> = l[5].split(',').map(str::to_string).collect();
        if let Some(sup) = r.get(2) {
            opts.extend(sup.split(',').map(str::to_string));
        }
        best = Some((mp, r[0].to_string(), opts));
    }
    best
}

/// Advice for a WAL on `fstype` mounted with `options`, or `None` if there is nothing to say.
/// Without `lazytime`, ext4 and xfs log an inode update in the journal whenever an O_DIRECT
/// write changes the file's mtime (about once per clock tick per file); while the journal
/// commits, such writes wait. Measured on the reference VM (latency-1k at 50,000 msg/s): one run
/// in four had a 0.2 s stall of every shard's WAL writes without it, none of ten with it.
pub fn timestamp_advice(fstype: &str, options: &[String]) -> Option<String> {
    let journaled = matches!(fstype, "ext4" | "xfs");
    if journaled && !options.iter().any(|o| o == "lazytime") {
        Some(format!(
            "the WAL's {fstype} filesystem is mounted without lazytime: WAL writes update file \
             timestamps through the journal and stall while it commits (observed: 0.2 s). \
             Remount with lazytime (mount -o remount,lazytime <mount point>; add it to /etc/fstab)"
        ))
    } else {
        None
    }
}

/// Advice when transparent huge pages are off (`/sys/kernel/mm/transparent_hugepage/enabled`
/// reads `[never]`), or `None`. The broker's direct-I/O buffers ask for huge pages
/// (`chronik_storage::dma_alloc`); without them every 1 MiB write is 256 scattered 4 KiB pages,
/// which a virtio disk without indirect descriptors takes about one ring slot each for. With
/// 1 MiB of registered memory per shard (the usual memlock limit), huge-page staging wrote 1.7x
/// more per second in the WAL bench on the reference VM (1 group, `periodic`, 1 MiB batches).
pub fn thp_advice(enabled: &str) -> Option<String> {
    enabled.contains("[never]").then(|| {
        "transparent huge pages are disabled (/sys/kernel/mm/transparent_hugepage/enabled is \
         never): WAL writes go out from 4 KiB pages and reach less of the disk's bandwidth. \
         Set it to madvise (echo madvise > /sys/kernel/mm/transparent_hugepage/enabled)"
            .to_string()
    })
}

/// Run every start-up check. `io_memory_bytes` 0 means automatic (see
/// [`auto_io_memory_bytes`]); `cores` is the number of shards. Call after
/// creating `data_dir`. On success the report's `io_memory_bytes` is what to
/// pass to glommio's `io_memory`.
pub fn check_system(
    data_dir: &Path,
    io_memory_bytes: usize,
    cores: usize,
) -> Result<SystemReport, Vec<RequirementFailure>> {
    let mut failures = Vec::new();
    let mount_advice = mount_of(data_dir).and_then(|(mp, fstype, opts)| {
        timestamp_advice(&fstype, &opts).map(|a| format!("{a} (mount point {mp})"))
    });
    let kernel = match kernel_release() {
        Ok(r) => check_kernel_release(&r),
        Err(e) => Err(RequirementFailure {
            requirement: Requirement::Kernel,
            message: format!("uname failed: {e}"),
        }),
    };
    let kernel = kernel.map_err(|f| failures.push(f)).ok();
    if let Err(f) = check_io_uring() {
        failures.push(f);
    }
    let fs = check_o_direct(data_dir).map_err(|f| failures.push(f)).ok();
    let limit = match memlock_limit() {
        Ok(l) => l,
        Err(e) => {
            failures.push(RequirementFailure {
                requirement: Requirement::Memlock,
                message: format!("getrlimit(RLIMIT_MEMLOCK) failed: {e}"),
            });
            None
        }
    };
    let ipc_lock = has_cap_ipc_lock();
    let io_memory = if io_memory_bytes == 0 {
        auto_io_memory_bytes(limit, ipc_lock, cores)
    } else {
        io_memory_bytes as u64
    };
    let memlock = check_memlock(limit, ipc_lock, io_memory, cores)
        .map_err(|f| failures.push(f))
        .ok();
    match (kernel, fs, memlock) {
        (Some(kernel), Some(data_dir_fs), Some(memlock)) if failures.is_empty() => {
            Ok(SystemReport {
                kernel,
                data_dir_fs,
                memlock,
                io_memory_bytes: usize::try_from(io_memory).unwrap_or(usize::MAX),
                mount_advice,
            })
        }
        _ => Err(failures),
    }
}

/// The refusal text the broker prints when [`check_system`] fails.
pub fn render_failures(failures: &[RequirementFailure]) -> String {
    let mut s = format!(
        "chronik-server cannot start: {} system requirement(s) not met (see linux-only.md):\n",
        failures.len()
    );
    for f in failures {
        s.push_str(&format!("  - {f}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_release_parsing() {
        let v = |a, b, c| KernelVersion {
            major: a,
            minor: b,
            patch: c,
        };
        assert_eq!(KernelVersion::parse("6.18.44-fc-v669"), Some(v(6, 18, 44)));
        assert_eq!(KernelVersion::parse("5.10.0-23-amd64"), Some(v(5, 10, 0)));
        assert_eq!(KernelVersion::parse("5.15"), Some(v(5, 15, 0)));
        assert_eq!(KernelVersion::parse("4.19.112+"), Some(v(4, 19, 112)));
        assert_eq!(KernelVersion::parse("5.4.0-rc1"), Some(v(5, 4, 0)));
        assert_eq!(KernelVersion::parse("6.1-rc3"), Some(v(6, 1, 0)));
        assert_eq!(KernelVersion::parse("linux"), None);
        assert_eq!(KernelVersion::parse(""), None);
        assert!(check_kernel_release("5.10.0").is_ok());
        assert!(check_kernel_release("6.1.0-18-cloud-amd64").is_ok());
        let old = check_kernel_release("5.4.0-150-generic").unwrap_err();
        assert_eq!(old.requirement, Requirement::Kernel);
        assert!(old.message.contains("older than 5.10.0"), "{old}");
        assert!(check_kernel_release("4.19.112+").is_err());
        assert!(check_kernel_release("garbage").is_err());
    }

    #[test]
    fn running_kernel_is_supported() {
        let r = kernel_release().unwrap();
        assert!(check_kernel_release(&r).is_ok(), "{r}");
    }

    #[test]
    fn memlock_arithmetic() {
        const MIB: u64 = 1 << 20;
        // 10 MiB × 3 rings × 2 cores = 60 MiB.
        assert_eq!(memlock_needed_bytes(10 * MIB, 2), 60 * MIB);
        // 100_000 rounds up to 25 pages = 102_400.
        assert_eq!(effective_io_memory(100_000), 102_400);
        assert_eq!(memlock_needed_bytes(100_000, 2), 614_400);
        // Below glommio's 64 KiB floor.
        assert_eq!(effective_io_memory(1), 65_536);
        // The usual 8 MiB limit cannot hold 2 × 10 MiB executors ...
        let err = check_memlock(Some(8 * MIB), false, 10 * MIB, 2).unwrap_err();
        assert_eq!(err.requirement, Requirement::Memlock);
        assert!(err.message.contains("62914560 bytes"), "{err}");
        assert!(err.message.contains("ulimit -l 61440"), "{err}");
        assert!(err.message.contains("LimitMEMLOCK=62914560"), "{err}");
        assert!(err.message.contains("--ulimit memlock=-1:-1"), "{err}");
        // ... but holds the automatic size: 8 MiB / 6 → 1_396_736 (341 pages).
        let auto = auto_io_memory_bytes(Some(8 * MIB), false, 2);
        assert_eq!(auto, 1_396_736);
        assert!(check_memlock(Some(8 * MIB), false, auto, 2).is_ok());
        // Unlimited or CAP_IPC_LOCK: the ceiling, no charge.
        assert_eq!(auto_io_memory_bytes(None, false, 8), 32 * MIB);
        assert_eq!(auto_io_memory_bytes(Some(MIB), true, 8), 32 * MIB);
        let root = check_memlock(Some(8 * MIB), true, 10 * MIB, 64).unwrap();
        assert_eq!(root.needed_bytes, 0);
        assert!(check_memlock(None, false, 10 * MIB, 64).is_ok());
        // glommio's 512 KiB floor applies even with CAP_IPC_LOCK.
        let floor = check_memlock(Some(64 << 10), true, 10 * MIB, 1).unwrap_err();
        assert!(floor.message.contains("even as root"), "{floor}");
        // A huge limit caps the automatic size at 32 MiB; a tiny one floors it.
        assert_eq!(auto_io_memory_bytes(Some(1 << 40), false, 1), 32 * MIB);
        // 64 MiB over 2 shards: 64 MiB / 6 = 11_184_810, rounded down to 2730 pages.
        assert_eq!(auto_io_memory_bytes(Some(64 * MIB), false, 2), 11_182_080);
        assert_eq!(
            auto_io_memory_bytes(Some(600 << 10), false, 64),
            IO_MEMORY_MIN_BYTES
        );
        assert!(check_memlock(Some(600 << 10), false, IO_MEMORY_MIN_BYTES, 64).is_err());
    }

    #[test]
    fn cap_ipc_lock_parsing() {
        let root = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert!(parse_cap_ipc_lock(root));
        let user = "CapEff:\t0000000000000000\n";
        assert!(!parse_cap_ipc_lock(user));
        let only_ipc_lock = format!("CapEff:\t{:016x}\n", 1u64 << 14);
        assert!(parse_cap_ipc_lock(&only_ipc_lock));
        assert!(!parse_cap_ipc_lock("no caps here"));
    }

    #[test]
    fn io_uring_failure_messages_name_the_fix() {
        let eperm = io_uring_failure(&io::Error::from_raw_os_error(libc::EPERM), None);
        assert_eq!(eperm.requirement, Requirement::IoUring);
        assert!(eperm.message.contains("seccomp"), "{eperm}");
        assert!(eperm.message.contains("--security-opt seccomp="), "{eperm}");
        let sysctl = io_uring_failure(&io::Error::from_raw_os_error(libc::EPERM), Some(2));
        assert!(
            sysctl.message.contains("kernel.io_uring_disabled = 2"),
            "{sysctl}"
        );
        let enosys = io_uring_failure(&io::Error::from_raw_os_error(libc::ENOSYS), None);
        assert!(enosys.message.contains("CONFIG_IO_URING"), "{enosys}");
    }

    #[test]
    fn io_uring_works_here() {
        check_io_uring().unwrap();
    }

    /// A directory on the workspace's real disk (the target dir), not /tmp,
    /// which may be tmpfs on some hosts.
    fn disk_dir(tag: &str) -> PathBuf {
        let d = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/sysreq-tests")
            .join(format!("{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn o_direct_works_on_the_workspace_disk_and_cleans_up() {
        let d = disk_dir("odirect");
        let fs = check_o_direct(&d).unwrap();
        assert!(!fs.is_empty());
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "probe file left");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn o_direct_fails_on_missing_dir() {
        let d = disk_dir("missing").join("does/not/exist");
        let err = check_o_direct(&d).unwrap_err();
        assert_eq!(err.requirement, Requirement::ODirect);
        assert!(err.message.contains("not usable"), "{err}");
    }

    #[test]
    fn o_direct_refuses_tmpfs_when_present() {
        // /dev/shm is tmpfs on Linux hosts and containers alike.
        let shm = Path::new("/dev/shm");
        match fs_type(shm) {
            Ok(fs) if fs == "tmpfs" => {
                let err = check_o_direct(shm).unwrap_err();
                assert!(err.message.contains("filesystem tmpfs"), "{err}");
                assert!(err.message.contains("ext4 or xfs"), "{err}");
            }
            other => eprintln!("skipping: /dev/shm is {other:?}, not tmpfs"),
        }
    }

    #[test]
    fn check_system_passes_here_and_reports_io_memory() {
        let d = disk_dir("system");
        let report = check_system(&d, 0, 2).unwrap_or_else(|f| panic!("{}", render_failures(&f)));
        assert!(report.kernel >= KERNEL_MIN);
        assert!(report.io_memory_bytes as u64 >= IO_MEMORY_MIN_BYTES);
        let explicit = check_system(&d, 1 << 20, 1).unwrap();
        assert_eq!(explicit.io_memory_bytes, 1 << 20);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn thp_advice_only_when_disabled() {
        assert!(thp_advice("always madvise [never]\n").is_some());
        assert!(thp_advice("always [madvise] never\n").is_none());
        assert!(thp_advice("[always] madvise never\n").is_none());
    }

    #[test]
    fn check_system_collects_failures() {
        let d = disk_dir("collect").join("absent");
        let failures = check_system(&d, 0, 1).unwrap_err();
        assert!(failures
            .iter()
            .any(|f| f.requirement == Requirement::ODirect));
        let text = render_failures(&failures);
        assert!(text.starts_with("chronik-server cannot start:"), "{text}");
    }

    #[test]
    fn fs_names() {
        assert_eq!(fs_name(0xEF53), "ext4");
        assert_eq!(fs_name(0x0102_1994), "tmpfs");
        assert_eq!(fs_name(0x1234), "0x1234");
    }

    #[test]
    fn mount_lookup_and_lazytime_advice() {
        let info = "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard\n\
                    30 22 0:26 / /work rw,relatime,lazytime - xfs /dev/vdb rw\n\
                    31 22 0:27 / /work2 rw - tmpfs tmpfs rw\n";
        let (mp, fs, opts) = mount_of_in(info, "/var/lib/chronik").unwrap();
        assert_eq!((mp.as_str(), fs.as_str()), ("/", "ext4"));
        assert!(timestamp_advice(&fs, &opts).unwrap().contains("lazytime"));
        let (mp, fs, opts) = mount_of_in(info, "/work/data").unwrap();
        assert_eq!((mp.as_str(), fs.as_str()), ("/work", "xfs"));
        assert_eq!(timestamp_advice(&fs, &opts), None);
        // /work2 is not inside /work.
        let (mp, _, _) = mount_of_in(info, "/work2x/d").unwrap();
        assert_eq!(mp, "/");
        assert_eq!(mount_of_in(info, "/work2").unwrap().1, "tmpfs");
        assert_eq!(mount_of_in("garbage\n", "/x"), None);
        // The running system's own mountinfo parses.
        assert!(mount_of(Path::new("/")).is_some());
    }
}
