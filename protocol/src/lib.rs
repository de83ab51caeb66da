//! Kafka wire protocol for Chronik.
//!
//! Module map (what goes where):
//! - [`frame`]: size-prefixed request/response framing, the request header, and the bounds that are
//!   checked before any allocation. Every decode here is fallible.
//! - [`api`]: the table of API keys and version ranges this broker advertises in ApiVersions, and
//!   the error responses for unknown keys and versions.
//! - [`batch`]: zero-copy views of v2 record batches: validation (lengths, magic, CRC32C, counts)
//!   and in-place patching of base offset, leader epoch and timestamps.
//! - [`codec`]: gzip / snappy (raw and xerial) / lz4 (frame) / zstd for batch record sets, every
//!   decompression bounded before it allocates. Used only off the hot path (compaction).
//! - [`records`]: record-level parsing of batches of any codec and rebuilding a batch with a
//!   subset of its records (log compaction), keeping offsets, timestamps and headers.
//! - [`fetch_frame`]: Fetch responses encoded as parts, the stored batches passed through
//!   uncopied.
//! - [`error`]: the crate's error enum.
//!
//! Message bodies are encoded and decoded with the `kafka-protocol` crate (generated from Kafka's
//! own JSON schemas, so every version's field layout, flexible versions and tagged fields match the
//! reference broker). Record batches are never decoded by it on the broker's hot path: the
//! `records` field is carried as `Bytes` and validated by [`batch`].

pub mod api;
pub mod batch;
pub mod codec;
pub mod error;
pub mod fetch_frame;
pub mod frame;
pub mod records;

pub use error::{ProtocolError, Result};
pub use kafka_protocol;
