//! The narrow seam between the WAL and the operating system.
//!
//! Everything the WAL does to a disk goes through [`Disk`] and [`SegmentFile`], so tests can
//! substitute [`crate::testing::MemDisk`] (in memory, with injectable ENOSPC, failed fdatasync and
//! crash/torn-write simulation) and the executor could be swapped without touching the WAL logic.
//!
//! [`GlommioDisk`] is the production implementation: writes and fdatasync go through glommio's
//! `DmaFile` (O_DIRECT, io_uring); the fetch path's cache misses
//! ([`SegmentFile::read_at_async`]) are io_uring reads too (buffered: see `GlommioSegment`); the rare synchronous read path (a cache miss inside
//! `raft::Storage::entries`, which cannot await, and recovery) uses a second, ordinary file
//! descriptor and `pread`, which is acceptable off the hot path.

use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

/// Boxed local future returned by the seam (one allocation per I/O call, not per entry).
pub type IoFuture<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + 'a>>;

/// When a completed write to a segment file is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// After the next `fdatasync` of the file.
    Deferred,
    /// When a [`SegmentFile::write_durable_at`] completes: it goes through a second descriptor
    /// opened `O_DSYNC` (on first use), so the kernel flushes the device's write cache (or writes
    /// with FUA) before it completes the write. One I/O per group commit instead of a write and
    /// then an fdatasync, which the kernel runs on an io_uring worker thread: fewer wake-ups and
    /// context switches per round (see `wal.rs`, write-through). Plain `write_at`s stay
    /// deferred: a round of several writes costs one fdatasync, not one flush per write.
    Through,
}

/// Directory-level operations.
pub trait Disk {
    /// Creates the directory (and parents) if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the regular files in `dir` (not sorted).
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Opens `path` for O_DIRECT writes and reads, creating it if missing. `mode` says how
    /// [`SegmentFile::write_durable_at`] makes a write durable.
    fn open(&self, path: &Path, mode: WriteMode) -> IoFuture<'_, Rc<dyn SegmentFile>>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> IoFuture<'_, ()>;
    /// Renames a file within its directory (segment recycling); durable after `sync_dir`.
    fn rename(&self, from: &Path, to: &Path) -> IoFuture<'_, ()>;
    /// Makes directory entries (created or removed files) durable.
    fn sync_dir(&self, dir: &Path) -> IoFuture<'_, ()>;
}

/// One open segment file.
pub trait SegmentFile {
    /// Writes all of `buf` at `pos`. Both must be 4 KiB aligned (O_DIRECT).
    fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> IoFuture<'_, ()>;
    /// fdatasync.
    fn fdatasync(&self) -> IoFuture<'_, ()>;
    /// Writes like [`Self::write_at`] and returns once the bytes (and every write to this file
    /// completed before) are durable. A file opened [`WriteMode::Through`] does it in one O_DSYNC
    /// write; the default writes, then fdatasyncs.
    fn write_durable_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.write_at(buf, pos).await?;
            self.fdatasync().await
        })
    }
    /// Sets the file length (used by recovery to cut a torn tail).
    fn truncate(&self, len: u64) -> IoFuture<'_, ()>;
    /// Allocates blocks up to `len` (file size becomes at least `len`, new bytes read as zero).
    /// Later O_DIRECT writes are then overwrites, not extending writes: ext4 serialises extending
    /// direct writes on the inode lock and io_uring hands them to worker threads.
    fn preallocate(&self, len: u64) -> IoFuture<'_, ()>;
    /// Current file length.
    fn size(&self) -> io::Result<u64>;
    /// Blocking positional read into `buf`; returns bytes read (short at end of file).
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Positional read of `len` bytes that does not block the executor (short at end of file).
    /// The default is the blocking read, for test disks that are memory anyway.
    fn read_at_async(&self, pos: u64, len: usize) -> IoFuture<'_, Vec<u8>> {
        Box::pin(async move {
            let mut buf = vec![0u8; len];
            let mut done = 0usize;
            // Bounded: every iteration either advances or ends the loop.
            while done < len {
                let n = self.read_at(pos + done as u64, &mut buf[done..])?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            buf.truncate(done);
            Ok(buf)
        })
    }
}

/// Reads exactly `buf.len()` bytes (or fewer at end of file), retrying short reads.
pub(crate) fn read_full(f: &dyn SegmentFile, mut pos: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0usize;
    // Bounded: every iteration either advances or returns.
    while done < buf.len() {
        let n = f.read_at(pos, &mut buf[done..])?;
        if n == 0 {
            break;
        }
        done += n;
        pos += n as u64;
    }
    Ok(done)
}

/// Production disk: glommio DMA files.
///
/// O_DSYNC history: an earlier measurement here (before `probe_polling`, when every DMA write
/// went through glommio's IOPOLL ring and the executor spun to reap it) found O_DSYNC segments
/// cut the `always` p50 by a third but added 4 ms stalls and a busy executor. With the probe
/// fixed, write-through ([`WriteMode::Through`]) measured lower produce p50 and broker CPU in the
/// broker (`wal.rs`, write-through); p99 on this host is dominated by its disk stalls in both
/// modes.
#[derive(Default)]
pub struct GlommioDisk;

struct GlommioSegment {
    path: PathBuf,
    mode: WriteMode,
    dma: DmaFile,
    /// The O_DSYNC descriptor for [`SegmentFile::write_durable_at`], opened on first use (sealed
    /// segments never need one).
    dsync: std::cell::RefCell<Option<Rc<DmaFile>>>,
    /// Second descriptor without O_DIRECT for the synchronous read path.
    reader: std::fs::File,
    /// Third descriptor for asynchronous reads through io_uring. Buffered, not O_DIRECT: a
    /// catch-up reader reads sequentially, and the kernel's read-ahead and page cache serve it
    /// better than one direct read per fetch (DMA reads used to fail with EOPNOTSUPP here:
    /// glommio's polling probe, see [`probe_polling`]). Buffered io_uring reads stay off the
    /// executor thread. They are coherent with the O_DIRECT writes: only bytes already written
    /// are read, and a direct write invalidates the cached pages it overwrites (a recycled
    /// segment).
    async_reader: glommio::io::BufferedFile,
}

impl Disk for GlommioDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_file() {
                out.push(e.path());
            }
        }
        Ok(out)
    }

    fn open(&self, path: &Path, mode: WriteMode) -> IoFuture<'_, Rc<dyn SegmentFile>> {
        let path = path.to_path_buf();
        Box::pin(async move {
            if let Some(dir) = path.parent() {
                probe_polling(dir).await;
            }
            // DmaFile::create opens write-only in glommio 0.9 (DEPENDENCIES.md), hence OpenOptions.
            let dma = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .dma_open(&path)
                .await
                .map_err(io::Error::from)?;
            let reader = std::fs::File::open(&path)?;
            let async_reader = glommio::io::BufferedFile::open(&path)
                .await
                .map_err(io::Error::from)?;
            Ok(Rc::new(GlommioSegment {
                path,
                mode,
                dma,
                dsync: std::cell::RefCell::new(None),
                reader,
                async_reader,
            }) as Rc<dyn SegmentFile>)
        })
    }

    fn remove(&self, path: &Path) -> IoFuture<'_, ()> {
        let path = path.to_path_buf();
        Box::pin(async move { glommio::io::remove(&path).await.map_err(io::Error::from) })
    }

    fn rename(&self, from: &Path, to: &Path) -> IoFuture<'_, ()> {
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        Box::pin(async move {
            glommio::io::rename(&from, &to)
                .await
                .map_err(io::Error::from)
        })
    }

    fn sync_dir(&self, dir: &Path) -> IoFuture<'_, ()> {
        let dir = dir.to_path_buf();
        // glommio offers only fdatasync, which ext4 does not promise to cover directory entries,
        // and a directory fsync waits for a journal commit (milliseconds under load): run it on
        // the executor's blocking pool so the shard keeps serving meanwhile.
        Box::pin(async move {
            glommio::executor()
                .spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
                .await
        })
    }
}

thread_local! {
    /// Directories whose device this thread's glommio reactor has probed for I/O polling.
    static PROBED: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Lets glommio find out, correctly, whether the device under `dir` supports polled I/O, before
/// the first segment file is opened on this thread.
///
/// glommio 0.9 probes a device the first time a thread opens a DMA file on it, by reading the
/// file's first block through its IOPOLL ring, and caches the answer per thread. When that file
/// is new and empty the read ends at end-of-file without reaching the device and "succeeds", so
/// glommio concludes the device can be polled even when it has no poll queues (virtio-blk, most
/// cloud disks): every DMA write then goes through the IOPOLL ring, whose completions the
/// executor can only reap by spinning (measured: a WAL appending 3,700 1 KiB batches a second
/// kept its thread 53% busy), and DMA reads fail with EOPNOTSUPP. Opening a file that holds one
/// written block first makes the probe read really reach the device. A probe that cannot run
/// (a full or read-only disk) is skipped: glommio then probes as it would have.
async fn probe_polling(dir: &Path) {
    if PROBED.with(|p| p.borrow().iter().any(|d| d == dir)) {
        return;
    }
    PROBED.with(|p| p.borrow_mut().push(dir.to_path_buf()));
    let probe = dir.join(format!(
        ".dma-probe-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let written = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&probe)?;
        f.write_all(&[0u8; 4096])?;
        f.sync_data()
    })();
    let res = match written {
        Ok(()) => match OpenOptions::new().read(true).dma_open(&probe).await {
            Ok(f) => f.close().await.map_err(io::Error::from),
            Err(e) => Err(io::Error::from(e)),
        },
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&probe);
    if let Err(e) = res {
        tracing::debug!(dir = ?dir, error = %e, "DMA polling probe skipped");
    }
}

/// One O_DIRECT write of all of `buf` at `pos` (a short write is an error).
async fn write_all_at(file: &DmaFile, buf: Rc<DmaBuffer>, pos: u64) -> io::Result<()> {
    let want = buf.len();
    let n = file.write_rc_at(buf, pos).await.map_err(io::Error::from)?;
    if n != want {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short O_DIRECT write: {n} of {want} bytes"),
        ));
    }
    Ok(())
}

impl GlommioSegment {
    async fn dsync_file(&self) -> io::Result<Rc<DmaFile>> {
        if let Some(f) = self.dsync.borrow().as_ref() {
            return Ok(f.clone());
        }
        let f = Rc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_DSYNC)
                .dma_open(&self.path)
                .await
                .map_err(io::Error::from)?,
        );
        *self.dsync.borrow_mut() = Some(f.clone());
        Ok(f)
    }
}

impl SegmentFile for GlommioSegment {
    fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> IoFuture<'_, ()> {
        Box::pin(write_all_at(&self.dma, buf, pos))
    }

    fn fdatasync(&self) -> IoFuture<'_, ()> {
        Box::pin(async move { self.dma.fdatasync().await.map_err(io::Error::from) })
    }

    fn write_durable_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            match self.mode {
                WriteMode::Through => write_all_at(&*self.dsync_file().await?, buf, pos).await,
                WriteMode::Deferred => {
                    write_all_at(&self.dma, buf, pos).await?;
                    self.dma.fdatasync().await.map_err(io::Error::from)
                }
            }
        })
    }

    fn truncate(&self, len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move { self.dma.truncate(len).await.map_err(io::Error::from) })
    }

    fn preallocate(&self, len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.dma
                .pre_allocate(len, false)
                .await
                .map_err(io::Error::from)
        })
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.reader.metadata()?.len())
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read_at(buf, pos)
    }

    fn read_at_async(&self, pos: u64, len: usize) -> IoFuture<'_, Vec<u8>> {
        // The one copy out of glommio's read buffer is the price of handing the bytes to
        // `Bytes` (that buffer is not `Send`).
        Box::pin(async move {
            let r = self
                .async_reader
                .read_at(pos, len)
                .await
                .map_err(io::Error::from)?;
            Ok(r.to_vec())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a device without poll queues (virtio-blk here) a polled O_DIRECT read fails with
    /// EOPNOTSUPP: after the first segment of a new directory is opened, glommio must have
    /// classified the device correctly, so a DMA read works.
    #[test]
    fn dma_reads_work_after_opening_a_new_segment() {
        // Like the WAL's other real-file tests: /tmp, which must support O_DIRECT.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let disk = GlommioDisk;
                let seg = disk.open(&path, WriteMode::Deferred).await.unwrap();
                let mut buf = glommio::allocate_dma_buffer_global(4096);
                buf.as_bytes_mut().fill(7);
                seg.write_at(Rc::new(buf), 0).await.unwrap();
                seg.fdatasync().await.unwrap();
                let f = OpenOptions::new().read(true).dma_open(&path).await.unwrap();
                let r = f.read_at(0, 4096).await.expect("DMA read");
                assert_eq!(&r[..], &[7u8; 4096][..]);
                f.close().await.unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// A write-through segment's durable writes go through a second, O_DSYNC descriptor (the
    /// kernel makes each such write durable before it completes it); plain writes, and every
    /// write of a deferred segment, do not.
    #[test]
    fn write_through_segments_are_opened_o_dsync() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let disk = GlommioDisk;
                for (name, mode, want) in [
                    ("through", WriteMode::Through, true),
                    ("deferred", WriteMode::Deferred, false),
                ] {
                    let path = root.join(name);
                    let seg = disk.open(&path, mode).await.unwrap();
                    let mut buf = glommio::allocate_dma_buffer_global(4096);
                    buf.as_bytes_mut().fill(1);
                    let buf = Rc::new(buf);
                    seg.write_at(buf.clone(), 0).await.unwrap();
                    assert_eq!(o_dsync_fds(&path), vec![false], "{name}: plain descriptor");
                    seg.write_durable_at(buf, 4096).await.unwrap();
                    let mut fds = o_dsync_fds(&path);
                    fds.sort();
                    let expect = if want { vec![false, true] } else { vec![false] };
                    assert_eq!(fds, expect, "{name}");
                    let mut back = [0u8; 8192];
                    assert_eq!(seg.read_at(0, &mut back).unwrap(), 8192);
                    assert!(back.iter().all(|&b| b == 1), "{name}: both writes landed");
                    drop(seg);
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// For every O_DIRECT descriptor of this process open on `path`: whether it has O_DSYNC.
    fn o_dsync_fds(path: &Path) -> Vec<bool> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            if std::fs::read_link(e.path()).ok().as_deref() != Some(path) {
                continue;
            }
            let info = std::fs::read_to_string(format!(
                "/proc/self/fdinfo/{}",
                e.file_name().to_string_lossy()
            ))
            .unwrap_or_default();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|v| i32::from_str_radix(v.trim(), 8).ok())
                .unwrap_or(0);
            if flags & libc::O_DIRECT != 0 {
                out.push(flags & libc::O_DSYNC != 0);
            }
        }
        out
    }
}
