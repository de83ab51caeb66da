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

/// Directory-level operations.
pub trait Disk {
    /// Creates the directory (and parents) if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the regular files in `dir` (not sorted).
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Opens `path` for O_DIRECT writes and reads, creating it if missing.
    fn open(&self, path: &Path) -> IoFuture<'_, Rc<dyn SegmentFile>>;
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
/// Segments are not opened with O_DSYNC (which would make every write durable and fdatasync
/// unnecessary): measured on this machine's virtio disk, it cut the `always` p50 by a third but
/// added 4 ms stalls and a busy executor (the writes are punted to io-wq workers).
#[derive(Default)]
pub struct GlommioDisk;

struct GlommioSegment {
    dma: DmaFile,
    /// Second descriptor without O_DIRECT for the synchronous read path.
    reader: std::fs::File,
    /// Third descriptor for asynchronous reads through io_uring. Not O_DIRECT: glommio 0.9's
    /// DMA reads fail with EOPNOTSUPP on this machine's kernel (6.18, virtio-blk, ext4) while
    /// its DMA writes work, and buffered io_uring reads stay off the executor thread. They are
    /// coherent with the O_DIRECT writes: only bytes already written are read, and a direct
    /// write invalidates the cached pages it overwrites (a recycled segment).
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

    fn open(&self, path: &Path) -> IoFuture<'_, Rc<dyn SegmentFile>> {
        let path = path.to_path_buf();
        Box::pin(async move {
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
                dma,
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

impl SegmentFile for GlommioSegment {
    fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            let want = buf.len();
            let n = self
                .dma
                .write_rc_at(buf, pos)
                .await
                .map_err(io::Error::from)?;
            if n != want {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short O_DIRECT write: {n} of {want} bytes"),
                ));
            }
            Ok(())
        })
    }

    fn fdatasync(&self) -> IoFuture<'_, ()> {
        Box::pin(async move { self.dma.fdatasync().await.map_err(io::Error::from) })
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
