//! `chronik-ctl`: the operator's terminal tool for a Chronik broker (or any Kafka broker). It
//! speaks the Kafka protocol directly, synchronously, one blocking socket per broker with
//! timeouts on every operation; there is no async runtime.
//!
//! Module map (what goes where):
//! - [`conn`]: one broker connection: framing, ApiVersions negotiation, the version table this
//!   tool speaks, request/response with bounded frame sizes.
//! - [`client`]: routing: bootstrap, Metadata cache of brokers, partition leaders,
//!   FindCoordinator, ListOffsets grouped per leader.
//! - [`cluster`], [`topic`], [`group`], [`data`]: one module per command family; each command is
//!   a function returning a report (or streaming, for `consume`).
//! - [`assignment`], [`records`]: decoders of bytes that come off the wire (consumer-protocol
//!   assignments, fetched record batches); every length is checked before allocation.
//! - [`output`]: tables and JSON; [`cli`]: clap definitions and argument parsers.
//! - [`error`]: the crate's error enum and `Result`.
//!
//! The binary (`src/main.rs`) only parses arguments, dispatches and prints.

pub mod assignment;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod conn;
pub mod data;
pub mod error;
pub mod group;
pub mod output;
pub mod records;
pub mod topic;

pub use error::{CtlError, Result};
