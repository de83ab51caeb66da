//! The broker's global allocator: the system allocator, except that allocations of
//! [`HUGE_ALLOCATION_BYTES`] or more are anonymous mappings made with `MAP_NORESERVE`.
//!
//! Why: the `kafka-protocol` decoders (0.18, the newest release) pre-size every array with
//! `Vec::with_capacity(count)` where `count` is read off the wire. A 20-byte request declaring
//! 2^31 elements asks for ~150 GB before a single element is decoded; the system allocator
//! refuses (more than RAM + swap), and Rust aborts the process on a failed allocation. A broker
//! that any client can kill with one frame is not acceptable, and the decoder cannot be told the
//! frame length. With `MAP_NORESERVE` the kernel grants the address space without committing
//! memory (overcommit heuristics do not count such mappings); the decoder then touches only the
//! pages of the elements it really decodes (bounded by the frame, itself bounded by
//! `socket.request.max.bytes`), fails on the missing bytes, and the mapping is unmapped. The
//! connection is closed as for any malformed frame.
//!
//! No legitimate allocation in the broker comes near 1 GiB (the largest are request frames,
//! capped far below it), so the fast path is the system allocator plus two comparisons (this
//! one and the direct-I/O test below).
//!
//! Below that threshold it is `chronik_storage::dma_alloc::DmaHugePageAlloc`: the system
//! allocator, except that direct-I/O buffers (page-aligned, 1 MiB and up: glommio's registered
//! memory and the WAL's staging chunks) come from huge pages.

use std::alloc::{GlobalAlloc, Layout};

use chronik_storage::dma_alloc::DmaHugePageAlloc;

/// Allocations at least this large are served by `mmap(MAP_NORESERVE)`.
pub const HUGE_ALLOCATION_BYTES: usize = 1 << 30;
/// Alignment an anonymous mapping always has (the smallest page size).
const PAGE_BYTES: usize = 4096;

/// See the module documentation.
pub struct GuardedAlloc;

fn is_huge(size: usize, align: usize) -> bool {
    size >= HUGE_ALLOCATION_BYTES && align <= PAGE_BYTES
}

/// A fresh zero-filled private mapping of `size` bytes, or null.
fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches no
    // existing memory; failure is reported as MAP_FAILED and turned into null.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

/// Everything but the forged-count-sized blocks: the system allocator, with direct-I/O buffers
/// in huge pages.
const INNER: DmaHugePageAlloc = DmaHugePageAlloc;

// SAFETY: every block is either a mapping of exactly `layout.size()` bytes (page-aligned, so any
// alignment up to a page holds) or `INNER`'s; `dealloc` and `realloc` tell the two apart by the
// same size and alignment test `alloc` used, which the `GlobalAlloc` contract guarantees are the
// allocation's own.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout.size(), layout.align()) {
            return map(layout.size());
        }
        // SAFETY: forwarded with the caller's guarantees (non-zero size).
        unsafe { INNER.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout.size(), layout.align()) {
            return map(layout.size()); // anonymous mappings read as zero
        }
        // SAFETY: as in `alloc`.
        unsafe { INNER.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(layout.size(), layout.align()) {
            // SAFETY: `ptr` is a mapping of `layout.size()` bytes made by `map`.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
            return;
        }
        // SAFETY: `ptr` came from `INNER` with this layout.
        unsafe { INNER.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        if !is_huge(layout.size(), align) && !is_huge(new_size, align) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { INNER.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees `new_size`, rounded up to `align`, does not overflow.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, align) };
        // SAFETY: non-zero size (realloc's contract).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and at least `min(old, new)` bytes long.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_huge_blocks_round_trip() {
        let a = GuardedAlloc;
        for size in [
            16usize,
            4096,
            1 << 20,
            HUGE_ALLOCATION_BYTES,
            3 * HUGE_ALLOCATION_BYTES,
        ] {
            let layout = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: non-zero layout; the block is written within bounds and freed once.
            unsafe {
                let p = a.alloc_zeroed(layout);
                assert!(!p.is_null(), "{size}");
                assert_eq!(*p, 0);
                assert_eq!(*p.add(size - 1), 0);
                *p = 7;
                *p.add(size - 1) = 9;
                // Grow across the threshold and back: contents survive.
                let q = a.realloc(p, layout, size + HUGE_ALLOCATION_BYTES);
                assert!(!q.is_null());
                assert_eq!((*q, *q.add(size - 1)), (7, 9));
                let grown = Layout::from_size_align(size + HUGE_ALLOCATION_BYTES, 8).unwrap();
                let r = a.realloc(q, grown, 64);
                assert!(!r.is_null());
                assert_eq!(*r, 7);
                a.dealloc(r, Layout::from_size_align(64, 8).unwrap());
            }
        }
    }

    /// Direct-I/O buffer layouts (what glommio asks for) come back huge-page aligned and
    /// survive a realloc into and out of the class.
    #[test]
    fn dma_buffer_layouts_round_trip() {
        let a = GuardedAlloc;
        let dma = Layout::from_size_align(1 << 20, 4096).unwrap();
        // SAFETY: non-zero layouts; writes within bounds; each block freed once with its layout.
        unsafe {
            let p = a.alloc(dma);
            assert!(!p.is_null());
            assert_eq!(p as usize % 4096, 0);
            *p.add((1 << 20) - 1) = 5;
            let q = a.realloc(p, dma, 8192);
            assert!(!q.is_null());
            a.dealloc(q, Layout::from_size_align(8192, 4096).unwrap());
            let z = a.alloc_zeroed(Layout::from_size_align(3 << 20, 4096).unwrap());
            assert_eq!(z as usize % (2 << 20), 0);
            assert_eq!(*z.add((3 << 20) - 1), 0);
            a.dealloc(z, Layout::from_size_align(3 << 20, 4096).unwrap());
        }
    }

    /// The allocation a forged array count asks for (2^31 elements of 72 bytes, ~155 GB) is
    /// granted as address space, not refused: the process does not abort.
    #[test]
    fn forged_count_sized_allocation_is_granted_without_committing_memory() {
        let layout = Layout::from_size_align((1usize << 31) * 72, 8).unwrap();
        // SAFETY: only the first page is touched; freed with the same layout.
        unsafe {
            let p = GuardedAlloc.alloc(layout);
            assert!(!p.is_null());
            *p = 1;
            GuardedAlloc.dealloc(p, layout);
        }
    }
}
