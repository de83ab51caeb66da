//! Staging buffers: records are copied here by `append` (synchronously, in order) and written to
//! the segment files by the next flush as a few large, 4 KiB-aligned O_DIRECT writes.
//!
//! A *run* is a contiguous byte range of one segment file starting at an aligned file offset,
//! held in fixed-size aligned chunks (`CHUNK_BYTES`). Each record byte is copied once, into a
//! chunk, and written from there: a flush writes full chunks as they are (they go back to a spare
//! pool after the write) and the last, partly filled chunk in place, zero-padded and trimmed to
//! whole blocks (it is freed after the write, so a flush takes at most one chunk from the pool or
//! the allocator). Appends never allocate.
//!
//! O_DIRECT needs the file offset and length of every write to be multiples of the block size
//! (4 KiB). Records are not aligned, so a flush writes its last block zero-padded and keeps that
//! partially filled block in memory; the next flush rewrites the block with more records in it.
//!
//! Worked example (BLOCK = 4096): the active run starts at file offset 8192 and holds 10 000
//! bytes of records, i.e. file bytes [8192, 18192). The flush writes align_up(10 000) = 12 288
//! bytes at offset 8192 (blocks 8192, 12288, 16384; the last block carries 18192 - 16384 = 1808
//! record bytes and 2288 zero bytes). The new active run starts at 8192 + align_down(10 000) =
//! 16384 and begins with those 1808 bytes copied to the front of another chunk. The next records
//! are appended at file offset 18192 and the next flush writes from 16384 again, overwriting the
//! zero padding. Recovery treats zeros after the last record as the end of the log, never as
//! corruption.

use std::collections::VecDeque;
use std::rc::Rc;

use glommio::io::DmaBuffer;

/// O_DIRECT block size assumed for alignment (the largest logical block size in common use).
pub const BLOCK: usize = 4096;
/// Size of one reusable staging chunk; full chunks are written without a copy.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Spare chunks kept for reuse; beyond this they are freed. 128 MiB covers a round of 64
/// partitions with two 1 MiB batches each without touching the allocator (fresh memory costs
/// page faults on every round).
pub const MAX_SPARE_CHUNKS: usize = 128;

const _: () = assert!(CHUNK_BYTES.is_multiple_of(BLOCK) && BLOCK.is_power_of_two());

pub fn align_down(v: u64) -> u64 {
    v & !(BLOCK as u64 - 1)
}

pub fn align_up(v: u64) -> u64 {
    align_down(v + BLOCK as u64 - 1)
}

/// Where staging memory comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkMemory {
    /// The executor's io_uring registered buffer memory (glommio's `io_memory`) while it has
    /// room, then the heap. The kernel pinned registered memory once, at start-up; a write from
    /// an ordinary buffer pins and unpins each of its pages on every I/O. In the WAL bench's
    /// `periodic` cases with 1 MiB batches (`storage/benches/wal.rs`, runs interleaved on the
    /// development VM) registered chunks wrote 12–53% more per second than heap chunks (1 group:
    /// 2.3 against 1.5 GB/s; both in 4 KiB pages then). With `dma_alloc` installed both kinds
    /// are huge pages and the gap was gone: 1 group x window 2 wrote 2.3–2.8 GB/s with 1 MiB of
    /// registered memory (chunks mostly on the heap) and 1.4–2.5 GB/s with 32 MiB, in
    /// interleaved runs (`linux-only.md`, transparent huge pages). Needs a glommio executor on
    /// this thread.
    Registered,
    /// The heap only (unit tests that run outside an executor).
    #[cfg(test)]
    Heap,
}

impl ChunkMemory {
    fn alloc(self, size: usize) -> DmaBuffer {
        match self {
            // Falls back to the heap itself when the registered memory is used up.
            ChunkMemory::Registered => glommio::allocate_dma_buffer(size),
            #[cfg(test)]
            ChunkMemory::Heap => glommio::allocate_dma_buffer_global(size),
        }
    }
}

struct Run {
    seg_base: u64,
    /// Invariant: multiple of BLOCK.
    file_pos: u64,
    chunks: Vec<DmaBuffer>,
    len: usize,
    /// The run starts with the record bytes of a block an earlier `take` already wrote (padded):
    /// its first write rewrites that block.
    carried: bool,
}

impl Run {
    fn put(&mut self, mut src: &[u8], spare: &mut Vec<DmaBuffer>, mem: ChunkMemory) {
        // Bounded: each iteration consumes at least one byte or fills one chunk.
        while !src.is_empty() {
            let ci = self.len / CHUNK_BYTES;
            let off = self.len % CHUNK_BYTES;
            if ci == self.chunks.len() {
                self.chunks
                    .push(spare.pop().unwrap_or_else(|| mem.alloc(CHUNK_BYTES)));
            }
            let n = (CHUNK_BYTES - off).min(src.len());
            self.chunks[ci].as_bytes_mut()[off..off + n].copy_from_slice(&src[..n]);
            self.len += n;
            src = &src[n..];
        }
    }
}

/// One O_DIRECT write produced by [`Staging::take`].
pub struct WriteOp {
    pub seg_base: u64,
    pub pos: u64,
    pub buf: Rc<DmaBuffer>,
    /// The buffer is a reusable chunk to hand back with [`Staging::give_back`].
    pub reusable: bool,
    /// This write's first block was written by an earlier `take`'s last write (the carried
    /// partial block). It must not be issued until that write has completed: two writes of one
    /// block in flight at once may land in either order.
    pub rewrites_carry: bool,
}

/// All unflushed bytes, as runs in log order (more than one only across a segment roll).
pub struct Staging {
    runs: VecDeque<Run>,
    spare: Vec<DmaBuffer>,
    new_bytes: u64,
    mem: ChunkMemory,
}

impl Staging {
    /// Starts staging at `end_offset` of segment `seg_base`; `carry` are the record bytes of the
    /// partially filled block `[align_down(end_offset), end_offset)` already on disk.
    pub fn new(seg_base: u64, end_offset: u64, carry: &[u8], mem: ChunkMemory) -> Self {
        let file_pos = align_down(end_offset);
        assert_eq!(carry.len() as u64, end_offset - file_pos);
        let mut s = Staging {
            runs: VecDeque::new(),
            spare: Vec::new(),
            new_bytes: 0,
            mem,
        };
        let mut run = Run {
            seg_base,
            file_pos,
            chunks: Vec::new(),
            len: 0,
            carried: !carry.is_empty(),
        };
        run.put(carry, &mut s.spare, mem);
        s.runs.push_back(run);
        s
    }

    fn active(&self) -> &Run {
        self.runs.back().expect("staging always has an active run")
    }

    /// Segment that appends currently go to.
    pub fn active_seg_base(&self) -> u64 {
        self.active().seg_base
    }

    /// File offset (in the active segment) where the next appended byte lands.
    pub fn end_offset(&self) -> u64 {
        let r = self.active();
        r.file_pos + r.len as u64
    }

    /// Bytes staged since the last `take`.
    pub fn new_bytes(&self) -> u64 {
        self.new_bytes
    }

    pub fn is_dirty(&self) -> bool {
        self.new_bytes > 0
    }

    /// Appends bytes at the end of the active run.
    pub fn put(&mut self, data: &[u8]) {
        let run = self.runs.back_mut().expect("active run");
        run.put(data, &mut self.spare, self.mem);
        self.new_bytes += data.len() as u64;
    }

    /// Starts a new segment: later bytes go to file offset 0 of `seg_base`.
    pub fn roll(&mut self, seg_base: u64) {
        self.runs.push_back(Run {
            seg_base,
            file_pos: 0,
            chunks: Vec::new(),
            len: 0,
            carried: false,
        });
    }

    /// Hands every staged byte to the caller as aligned writes, grouped in log order, keeping the
    /// active run's last partial block (see the module example).
    pub fn take(&mut self) -> Vec<WriteOp> {
        let mut ops = Vec::new();
        let nruns = self.runs.len();
        for i in 0..nruns {
            let is_active = i + 1 == nruns;
            let mut run = self.runs.pop_front().expect("run");
            let len = run.len as u64;
            let full = run.len / CHUNK_BYTES;
            let fill = run.len % CHUNK_BYTES;
            let mut chunks = std::mem::take(&mut run.chunks).into_iter();
            let first_op = ops.len();
            for k in 0..full {
                let c = chunks.next().expect("full chunk");
                ops.push(WriteOp {
                    seg_base: run.seg_base,
                    pos: run.file_pos + (k * CHUNK_BYTES) as u64,
                    buf: Rc::new(c),
                    reusable: true,
                    rewrites_carry: false,
                });
            }
            // The partially filled last chunk is written in place: its padding is zeroed and it
            // is trimmed to whole blocks, so no byte is copied but the last partial block, which
            // the next run starts with (in a chunk of its own, since this one is in flight).
            let mut carry: Option<DmaBuffer> = None;
            let keep_from = align_down(len);
            let tail = (len - keep_from) as usize;
            if let Some(mut chunk) = chunks.next() {
                debug_assert!(fill > 0, "a last chunk is only ever partly filled");
                let wlen = align_up(fill as u64) as usize;
                let bytes = chunk.as_bytes_mut();
                bytes[fill..wlen].fill(0);
                if is_active && tail > 0 {
                    let mut next = self
                        .spare
                        .pop()
                        .unwrap_or_else(|| self.mem.alloc(CHUNK_BYTES));
                    next.as_bytes_mut()[..tail].copy_from_slice(&bytes[fill - tail..fill]);
                    carry = Some(next);
                }
                chunk.trim_to_size(wlen);
                ops.push(WriteOp {
                    seg_base: run.seg_base,
                    pos: run.file_pos + (full * CHUNK_BYTES) as u64,
                    buf: Rc::new(chunk),
                    reusable: false,
                    rewrites_carry: false,
                });
            }
            if run.carried {
                if let Some(op) = ops.get_mut(first_op) {
                    op.rewrites_carry = true;
                }
            }
            if is_active {
                self.runs.push_back(Run {
                    seg_base: run.seg_base,
                    file_pos: run.file_pos + keep_from,
                    chunks: carry.into_iter().collect(),
                    len: tail,
                    carried: tail > 0,
                });
            }
        }
        self.new_bytes = 0;
        ops
    }

    fn give_back_one(&mut self, c: DmaBuffer) {
        if self.spare.len() < MAX_SPARE_CHUNKS && c.len() == CHUNK_BYTES {
            self.spare.push(c);
        }
    }

    /// Returns written chunks for reuse.
    pub fn give_back(&mut self, op: WriteOp) {
        if op.reusable {
            if let Ok(c) = Rc::try_unwrap(op.buf) {
                self.give_back_one(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays takes into a flat "file" and checks the bytes equal everything put.
    #[test]
    fn takes_reassemble_the_stream_with_carry() {
        let mut s = Staging::new(0, 100, &[7u8; 100], ChunkMemory::Heap);
        let mut file = vec![7u8; 100];
        let mut expect = vec![7u8; 100];
        let mut val = 0u8;
        // End of the previous take's last write: a take's first write starts before it exactly
        // when it rewrites the carried block, and must say so.
        let mut prev_end = 100u64;
        for round in 0..40 {
            let n = [1usize, 4000, 4096, 5000, CHUNK_BYTES - 3, 70][round % 6];
            let data: Vec<u8> = (0..n)
                .map(|_| {
                    val = val.wrapping_add(1);
                    val
                })
                .collect();
            s.put(&data);
            expect.extend_from_slice(&data);
            let end = s.end_offset();
            assert_eq!(end as usize, expect.len());
            let ops = s.take();
            for (k, op) in ops.iter().enumerate() {
                let rewrites = k == 0 && op.pos < prev_end;
                assert_eq!(op.rewrites_carry, rewrites, "round {round} op {k}");
            }
            prev_end = ops.last().map_or(prev_end, |o| o.pos + o.buf.len() as u64);
            for op in ops {
                assert_eq!(op.pos % BLOCK as u64, 0);
                assert_eq!(op.buf.len() % BLOCK, 0);
                let p = op.pos as usize;
                if file.len() < p + op.buf.len() {
                    file.resize(p + op.buf.len(), 0);
                }
                file[p..p + op.buf.len()].copy_from_slice(op.buf.as_bytes());
                s.give_back(op);
            }
            assert_eq!(&file[..expect.len()], &expect[..], "round {round}");
            assert!(
                file[expect.len()..].iter().all(|&b| b == 0),
                "padding is zero"
            );
            assert!(!s.is_dirty());
        }
    }

    #[test]
    fn roll_starts_new_segment_at_zero() {
        let mut s = Staging::new(0, 0, &[], ChunkMemory::Heap);
        s.put(&[1u8; 10]);
        s.roll(500);
        s.put(&[2u8; 20]);
        assert_eq!(s.active_seg_base(), 500);
        assert_eq!(s.end_offset(), 20);
        let ops = s.take();
        assert_eq!(ops.len(), 2);
        assert_eq!((ops[0].seg_base, ops[0].pos), (0, 0));
        assert_eq!((ops[1].seg_base, ops[1].pos), (500, 0));
        assert_eq!(&ops[1].buf.as_bytes()[..20], &[2u8; 20]);
    }
}
