//! Bounded per-shard cache of recent payloads, FIFO by append order.
//!
//! Payloads are copied into 1 MiB arenas and handed out as `Bytes` slices of them, so inserting
//! does not allocate per entry (one allocation per arena). The cached `Bytes` lives in the
//! group's `EntryLoc`; this module keeps the eviction order and the byte budget. Entries whose
//! record is not yet written to disk are never evicted: reads of unflushed entries always hit
//! memory (the budget may be exceeded by at most the unflushed bytes).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::GroupId;

/// Arena size for small payloads.
pub const ARENA_BYTES: usize = 1 << 20;
/// Payloads above this get their own allocation (an arena would waste too much on them).
pub const ARENA_MAX_PAYLOAD: usize = ARENA_BYTES / 4;
/// Upper bound on remembered cache entries (stale ones included).
pub const MAX_CACHE_ENTRIES: usize = 1 << 20;

/// One cached payload, in insertion order.
#[derive(Clone, Copy, Debug)]
pub struct CacheItem {
    pub group: GroupId,
    pub index: u64,
    /// LSN of the record start: identifies this exact copy (relocation or truncation changes it).
    pub lsn: u64,
    /// LSN just past the record: evictable once written.
    pub end_lsn: u64,
}

pub struct Cache {
    pub limit_bytes: usize,
    pub bytes: usize,
    pub fifo: VecDeque<CacheItem>,
    arena: BytesMut,
}

impl Cache {
    pub fn new(limit_bytes: usize) -> Self {
        Cache {
            limit_bytes,
            bytes: 0,
            fifo: VecDeque::new(),
            arena: BytesMut::new(),
        }
    }

    /// Copies `payload` into cache memory and records it for eviction.
    pub fn insert(&mut self, item: CacheItem, payload: &[u8]) -> Bytes {
        self.bytes += payload.len();
        self.fifo.push_back(item);
        if payload.len() > ARENA_MAX_PAYLOAD {
            return Bytes::copy_from_slice(payload);
        }
        if self.arena.capacity() - self.arena.len() < payload.len() {
            self.arena = BytesMut::with_capacity(ARENA_BYTES);
        }
        self.arena.extend_from_slice(payload);
        self.arena.split().freeze()
    }

    /// Records an already shared payload (no copy).
    pub fn insert_shared(&mut self, item: CacheItem, payload: Bytes) -> Bytes {
        self.bytes += payload.len();
        self.fifo.push_back(item);
        payload
    }

    /// True when something should be evicted.
    pub fn over_budget(&self) -> bool {
        self.bytes > self.limit_bytes || self.fifo.len() > MAX_CACHE_ENTRIES
    }
}
