//! The Chronik broker: request handlers, per-shard broker state, and the `chronik-server` binary.
//!
//! Module map (what goes where):
//! - [`alloc`]: the global allocator that keeps forged array counts from aborting the process.
//! - [`node`]: process start-up and shutdown: config, host checks, one shard per core.
//! - [`shared`]: the little state all shards share read-mostly (config, metadata image).
//! - [`broker`]: one [`broker::Broker`] per shard: its WAL, its Raft groups, its partitions, and
//!   the cross-shard call dispatcher ([`calls`]).
//! - [`partition`]: a partition on its owning shard: offsets, produce, fetch, waiters.
//! - [`compaction`]: log compaction of `cleanup.policy=compact` topics: the planner (key map,
//!   batch rewrite) and the per-shard low-priority cleaner task.
//! - [`conn`]: a client connection: framing, pipelining with in-order responses, HTTP sniffing.
//! - [`handlers`]: one file per Kafka API, each declaring the versions it serves.
//! - [`http`]: `/metrics`, health and admin routes.
//!
//! Rule: a handler runs on the shard that accepted the connection and reaches partitions through
//! [`broker::Broker::call`], which is a direct call for local partitions and a mesh call for the
//! others. Only the owning shard touches a partition's state.

pub mod alloc;
pub mod broker;
pub mod calls;
pub mod compaction;
pub mod conn;
pub mod handlers;
pub mod http;
pub mod node;
pub mod partition;
pub mod quotas;
pub mod sasl;
pub mod shared;
pub mod tls;
