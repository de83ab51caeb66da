//! Test support: [`MemDisk`], an in-memory [`Disk`] that models what a crash keeps and lets tests
//! inject faults (ENOSPC after a byte budget, failed fdatasync, lost/torn unsynced blocks).
//! Public so other crates' tests can run a `Wal` without touching the filesystem.
//!
//! Model: every file has `durable` bytes (as of its last fdatasync) and a list of `pending` writes
//! since. Reads see durable + pending. [`MemDisk::crash`] keeps the durable bytes and, per 4 KiB
//! block of each pending write, keeps or loses it at random (seeded) — a torn, reordered write.
//! Truncation applies to both views at once (simplification: recovery syncs right after it).
//! `write_durable_at` on a file opened [`WriteMode::Through`] is one operation (an O_DSYNC write),
//! modelled as FUA, the weakest form a device gives it: that write's bytes become durable, other
//! unsynced writes stay pending; or an injected fdatasync failure fails the write (its bytes stay
//! pending: a crash may keep or lose them). Deferred files do it as a write and then a separate
//! fdatasync.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::DmaBuffer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::disk::{Disk, IoFuture, SegmentFile, WriteMode};

const BLOCK: usize = 4096;

#[derive(Default, Clone)]
struct FileState {
    durable: Vec<u8>,
    pending: Vec<(u64, Vec<u8>)>,
    /// Directory entry not yet made durable by `sync_dir`.
    dir_pending: bool,
    /// Renamed from this path and the rename not yet made durable by `sync_dir`: a crash may
    /// undo it.
    renamed_from: Option<PathBuf>,
}

impl FileState {
    fn view(&self) -> Vec<u8> {
        let mut v = self.durable.clone();
        for (pos, b) in &self.pending {
            write_into(&mut v, *pos, b);
        }
        v
    }
}

fn write_into(v: &mut Vec<u8>, pos: u64, b: &[u8]) {
    let p = pos as usize;
    if v.len() < p + b.len() {
        v.resize(p + b.len(), 0);
    }
    v[p..p + b.len()].copy_from_slice(b);
}

#[derive(Default)]
struct State {
    files: BTreeMap<PathBuf, FileState>,
    /// Bumped by `crash`: handles from before the crash fail.
    generation: u64,
    write_budget: Option<u64>,
    fsyncs_until_failure: Option<u64>,
    /// While set, fdatasyncs wait (a sync phase held in flight).
    hold_fsyncs: bool,
    writes: u64,
    fsyncs: u64,
    /// Blocking reads (`read_at` called directly, not through `read_at_async`).
    blocking_reads: u64,
    /// Each write completes after a random number of yields in `0..=max` (seeded), so writes
    /// in flight together complete, and apply, in any order.
    write_delays: Option<(ChaCha8Rng, u32)>,
}

/// In-memory fault-injecting disk.
#[derive(Default)]
pub struct MemDisk {
    state: Rc<RefCell<State>>,
}

struct MemFile {
    state: Rc<RefCell<State>>,
    path: PathBuf,
    generation: u64,
    mode: WriteMode,
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl MemDisk {
    pub fn new() -> Rc<MemDisk> {
        Rc::new(MemDisk::default())
    }

    /// After `bytes` more bytes are written, writes fail with ENOSPC (writing nothing).
    pub fn set_write_budget(&self, bytes: Option<u64>) {
        self.state.borrow_mut().write_budget = bytes;
    }

    /// While `hold` is true, fdatasyncs do not complete (they wait, yielding), so a test can act
    /// while a sync is in flight.
    pub fn hold_fsyncs(&self, hold: bool) {
        self.state.borrow_mut().hold_fsyncs = hold;
    }

    /// The `n+1`-th fdatasync from now fails with EIO (and so do later ones).
    pub fn fail_fsync_after(&self, n: Option<u64>) {
        self.state.borrow_mut().fsyncs_until_failure = n;
    }

    /// Simulates power loss: keeps synced bytes, keeps or drops each unsynced 4 KiB block at
    /// random, drops files whose creation was never made durable (all seeded by `seed`).
    pub fn crash(&self, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut st = self.state.borrow_mut();
        st.generation += 1;
        let mut gone = Vec::new();
        let mut undone = Vec::new();
        for (path, f) in st.files.iter_mut() {
            if f.dir_pending && rng.gen_bool(0.5) {
                gone.push(path.clone());
                continue;
            }
            if let Some(from) = f.renamed_from.take() {
                if rng.gen_bool(0.5) {
                    undone.push((path.clone(), from));
                }
            }
            let mut v = std::mem::take(&mut f.durable);
            for (pos, b) in std::mem::take(&mut f.pending) {
                for (k, blk) in b.chunks(BLOCK).enumerate() {
                    if rng.gen_bool(0.5) {
                        write_into(&mut v, pos + (k * BLOCK) as u64, blk);
                    }
                }
            }
            f.durable = v;
            f.dir_pending = false;
        }
        for p in gone {
            st.files.remove(&p);
        }
        for (to, from) in undone {
            if let Some(f) = st.files.remove(&to) {
                st.files.insert(from, f);
            }
        }
    }

    /// Simulates power loss where every issued write reached the disk (only handles are lost).
    pub fn crash_keep_all(&self) {
        let mut st = self.state.borrow_mut();
        st.generation += 1;
        for f in st.files.values_mut() {
            f.durable = f.view();
            f.pending.clear();
            f.dir_pending = false;
            f.renamed_from = None;
        }
    }

    /// Current bytes of a file (durable + pending).
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        self.state.borrow().files.get(path).map(FileState::view)
    }

    /// Bytes of a file as of its last fdatasync (what a crash is sure to keep).
    pub fn durable_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        self.state
            .borrow()
            .files
            .get(path)
            .map(|f| f.durable.clone())
    }

    /// Files with writes that no fdatasync has covered yet, sorted.
    pub fn unsynced_paths(&self) -> Vec<PathBuf> {
        let st = self.state.borrow();
        st.files
            .iter()
            .filter(|(_, f)| !f.pending.is_empty())
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Replaces a file's content (for corruption tests); the new content counts as durable.
    pub fn set_file_bytes(&self, path: &Path, bytes: Vec<u8>) {
        let mut st = self.state.borrow_mut();
        let f = st.files.entry(path.to_path_buf()).or_default();
        f.durable = bytes;
        f.pending.clear();
    }

    /// All file paths, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.state.borrow().files.keys().cloned().collect()
    }

    /// From now on each write completes after a random number (seeded, at most `max_yields`)
    /// of executor yields, so concurrent writes land in any order, as on a real device.
    pub fn set_write_delays(&self, seed: u64, max_yields: u32) {
        self.state.borrow_mut().write_delays = Some((ChaCha8Rng::seed_from_u64(seed), max_yields));
    }

    /// (writes, fdatasyncs) issued so far.
    pub fn io_counts(&self) -> (u64, u64) {
        let st = self.state.borrow();
        (st.writes, st.fsyncs)
    }

    /// Blocking reads so far (`SegmentFile::read_at` called directly, which on a real disk
    /// stalls the executor).
    pub fn blocking_reads(&self) -> u64 {
        self.state.borrow().blocking_reads
    }
}

impl Disk for MemDisk {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(self
            .state
            .borrow()
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }

    fn open(&self, path: &Path, mode: WriteMode) -> IoFuture<'_, Rc<dyn SegmentFile>> {
        let path = path.to_path_buf();
        Box::pin(async move {
            let mut st = self.state.borrow_mut();
            let generation = st.generation;
            st.files.entry(path.clone()).or_insert_with(|| FileState {
                dir_pending: true,
                ..FileState::default()
            });
            Ok(Rc::new(MemFile {
                state: self.state.clone(),
                path,
                generation,
                mode,
            }) as Rc<dyn SegmentFile>)
        })
    }

    fn remove(&self, path: &Path) -> IoFuture<'_, ()> {
        let path = path.to_path_buf();
        Box::pin(async move {
            match self.state.borrow_mut().files.remove(&path) {
                Some(_) => Ok(()),
                None => Err(io::Error::from(io::ErrorKind::NotFound)),
            }
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> IoFuture<'_, ()> {
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        Box::pin(async move {
            let mut st = self.state.borrow_mut();
            let Some(mut f) = st.files.remove(&from) else {
                return Err(io::Error::from(io::ErrorKind::NotFound));
            };
            if !f.dir_pending && f.renamed_from.is_none() {
                f.renamed_from = Some(from);
            }
            st.files.insert(to, f);
            Ok(())
        })
    }

    fn sync_dir(&self, dir: &Path) -> IoFuture<'_, ()> {
        let dir = dir.to_path_buf();
        Box::pin(async move {
            for (p, f) in self.state.borrow_mut().files.iter_mut() {
                if p.parent() == Some(&dir) {
                    f.dir_pending = false;
                    f.renamed_from = None;
                }
            }
            Ok(())
        })
    }
}

impl MemFile {
    fn with<T>(&self, f: impl FnOnce(&mut State, &PathBuf) -> io::Result<T>) -> io::Result<T> {
        let mut st = self.state.borrow_mut();
        if st.generation != self.generation || !st.files.contains_key(&self.path) {
            return Err(eio());
        }
        f(&mut st, &self.path)
    }
}

impl State {
    /// Counts one device flush, or fails it if an injected fdatasync failure is due.
    fn count_flush(&mut self) -> io::Result<()> {
        if let Some(n) = self.fsyncs_until_failure {
            if n == 0 {
                return Err(eio());
            }
            self.fsyncs_until_failure = Some(n - 1);
        }
        self.fsyncs += 1;
        Ok(())
    }
}

impl MemFile {
    /// A device cache flush for this file: everything written becomes durable, or the injected
    /// failure (the bytes stay pending).
    fn flush(&self) -> io::Result<()> {
        self.with(|st, path| {
            st.count_flush()?;
            let f = st.files.get_mut(path).expect("checked");
            f.durable = f.view();
            f.pending.clear();
            Ok(())
        })
    }
}

impl SegmentFile for MemFile {
    fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            // Yield once so concurrent flushers really interleave, as with io_uring.
            futures_lite::future::yield_now().await;
            let extra = match self.state.borrow_mut().write_delays.as_mut() {
                Some((rng, max)) => rng.gen_range(0..=*max),
                None => 0,
            };
            for _ in 0..extra {
                futures_lite::future::yield_now().await;
            }
            self.with(|st, path| {
                assert!(
                    pos.is_multiple_of(BLOCK as u64) && buf.len().is_multiple_of(BLOCK),
                    "unaligned O_DIRECT write"
                );
                if let Some(b) = st.write_budget {
                    if (buf.len() as u64) > b {
                        return Err(enospc());
                    }
                    st.write_budget = Some(b - buf.len() as u64);
                }
                st.writes += 1;
                let f = st.files.get_mut(path).expect("checked");
                f.pending.push((pos, buf.as_bytes().to_vec()));
                Ok(())
            })
        })
    }

    fn fdatasync(&self) -> IoFuture<'_, ()> {
        Box::pin(async move {
            futures_lite::future::yield_now().await;
            // Bounded by the test that set the hold: it releases it (or the executor ends).
            while self.state.borrow().hold_fsyncs {
                futures_lite::future::yield_now().await;
            }
            self.flush()
        })
    }

    fn write_durable_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.write_at(buf, pos).await?;
            if self.mode == WriteMode::Deferred {
                futures_lite::future::yield_now().await;
                return self.flush();
            }
            // Through: one O_DSYNC write, modelled with the weakest guarantee a device gives it
            // (FUA): this write's bytes are durable; earlier unsynced writes stay pending.
            self.with(|st, path| {
                st.count_flush()?;
                let f = st.files.get_mut(path).expect("checked");
                // No await since `write_at` pushed it: the last pending write is this one.
                let (p, b) = f.pending.pop().expect("the write just made");
                write_into(&mut f.durable, p, &b);
                Ok(())
            })
        })
    }

    fn truncate(&self, len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.with(|st, path| {
                let f = st.files.get_mut(path).expect("checked");
                let mut v = f.view();
                v.resize(len as usize, 0);
                f.durable = v;
                f.pending.clear();
                Ok(())
            })
        })
    }

    fn preallocate(&self, len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.with(|st, path| {
                // Modelled as durable at once (recovery and segment creation sync right after).
                let f = st.files.get_mut(path).expect("checked");
                if (f.durable.len() as u64) < len {
                    f.durable.resize(len as usize, 0);
                }
                Ok(())
            })
        })
    }

    fn size(&self) -> io::Result<u64> {
        self.with(|st, path| Ok(st.files[path].view().len() as u64))
    }

    fn read_at_async(&self, pos: u64, len: usize) -> IoFuture<'_, Vec<u8>> {
        Box::pin(async move {
            // Yield once, as an io_uring read would, so other tasks run while it is in flight.
            futures_lite::future::yield_now().await;
            let mut buf = vec![0u8; len];
            let n = self.read_into(pos, &mut buf)?;
            buf.truncate(n);
            Ok(buf)
        })
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.state.borrow_mut().blocking_reads += 1;
        self.read_into(pos, buf)
    }
}

impl MemFile {
    fn read_into(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.with(|st, path| {
            let v = st.files[path].view();
            let p = (pos as usize).min(v.len());
            let n = buf.len().min(v.len() - p);
            buf[..n].copy_from_slice(&v[p..p + n]);
            Ok(n)
        })
    }
}
