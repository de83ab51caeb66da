//! Steady-state appends do not allocate per entry: a counting global allocator (counting only
//! on the measuring thread while enabled) observes a few thousand appends after warm-up.
//! Buffers are reused: staging chunks from the spare pool, cache arenas (one allocation per
//! MiB of payload), index deques keep their capacity across compaction.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use chronik_storage::testing::MemDisk;
use chronik_storage::{EntryKind, EntryMeta, KafkaMeta, Wal, WalOptions};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.try_with(|c| c.get()).unwrap_or(false) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.try_with(|c| c.get()).unwrap_or(false) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count<T>(f: impl FnOnce() -> T) -> (T, u64) {
    ALLOCS.store(0, Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.load(Ordering::Relaxed))
}

const GROUPS: u64 = 4;
const PAYLOAD: [u8; 200] = [0xAB; 200];

fn append_round(wal: &Wal, next: &mut [u64; GROUPS as usize], per_group: u64) {
    for _ in 0..per_group {
        for g in 0..GROUPS {
            let i = next[g as usize];
            let meta = EntryMeta {
                index: i,
                term: 1,
                kind: EntryKind::Normal,
                kafka: Some(KafkaMeta {
                    base_offset: i as i64,
                    last_offset: i as i64,
                    max_timestamp: 0,
                }),
            };
            wal.append(g, meta, &PAYLOAD).unwrap();
            next[g as usize] += 1;
        }
    }
}

#[test]
fn steady_state_appends_do_not_allocate_per_entry() {
    glommio::LocalExecutorBuilder::default()
        .spawn(|| async {
            let mut o = WalOptions::new("/alloc");
            o.segment_bytes = 64 << 20;
            o.cache_bytes = 256 << 10;
            let (wal, _) = Wal::open_with_disk(o, MemDisk::new()).await.unwrap();
            let mut next = [1u64; GROUPS as usize];
            for g in 0..GROUPS {
                wal.create_group(g).unwrap();
            }
            // Warm up: grow every buffer to its steady-state size, then compact.
            for _ in 0..3 {
                append_round(&wal, &mut next, 2500);
                wal.flush().await.unwrap();
                for g in 0..GROUPS {
                    wal.compact_prefix(g, next[g as usize] - 100, 1).unwrap();
                }
                wal.flush().await.unwrap();
            }
            let per_group = 1250;
            let ((), allocs) = count(|| append_round(&wal, &mut next, per_group));
            let appends = per_group * GROUPS;
            eprintln!("{appends} appends: {allocs} allocations");
            // One cache arena per MiB of payload (~1 MB here) and nothing per entry.
            assert!(allocs <= 4, "{allocs} allocations for {appends} appends");
            // A flush allocates per round (futures, op list), not per entry.
            let fut = wal.flush();
            let (r, flush_allocs) = count(|| futures_lite::future::block_on(fut));
            r.unwrap();
            eprintln!("flush of {appends} entries: {flush_allocs} allocations");
            assert!(
                flush_allocs < 200,
                "{flush_allocs} allocations in one flush"
            );
        })
        .unwrap()
        .join()
        .unwrap();
}
