//! Multi-raft for Chronik: many tikv `raft` groups per shard, one WAL write and one sync per round.
//!
//! Module map (what goes where):
//! - [`storage`]: `raft::Storage` on the shard's WAL (`chronik-storage`), one view per group.
//! - [`engine`]: [`engine::MultiRaft`], the per-shard set of groups and its Ready loop: one poll
//!   round handles every group that has work, appends all their entries to the WAL and starts one
//!   flush for them (group commit; the next round may write while this one syncs), then reports
//!   persistence when the flush ends and applies committed entries.
//! - [`logger`]: bridges raft's `slog` output to `tracing`.
//! - [`error`]: the crate's error enum.
//!
//! Consensus does no I/O itself: the engine turns each `Ready` into WAL appends and (later)
//! transport sends, and the only I/O a round waits for is the WAL flush, in a task of its own.

pub mod engine;
pub mod error;
pub mod logger;
pub mod storage;

pub use engine::{Applier, MultiRaft, Proposed};
pub use error::{RaftError, Result};
pub use raft;
