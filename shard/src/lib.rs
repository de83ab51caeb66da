//! Thread-per-core plumbing for Chronik.
//!
//! Module map (what goes where):
//! - [`executor`]: one glommio `LocalExecutor` per chosen core, pinned, started together.
//! - [`mesh`]: typed request/reply calls between shards over glommio's bounded lock-free channel
//!   mesh; the only way one shard reaches data owned by another.
//! - `sysreq`: start-up checks of the host (kernel, io_uring, O_DIRECT, memlock).
//! - `http`: the small HTTP/1.1 server used for `/metrics`, health and admin endpoints.
//!
//! Nothing here knows about Kafka or Raft: the broker (`core/server`) plugs its handlers in.

pub mod executor;
pub mod mesh;

pub use mesh::Handler;
pub mod http;
pub mod sysreq;
