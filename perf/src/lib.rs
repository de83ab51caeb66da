//! chronik-perf: a Kafka-protocol benchmark harness that qualifies hosts and compares brokers.
//!
//! Module map (what goes where):
//! - [`workload`]: the workload TOML schema, defaults and bounds; nothing runs here.
//! - [`payload`]: the timing header every message carries, seeded message sizes and keys.
//! - [`rate`]: the open-loop send schedule (latency from the intended send time).
//! - [`histo`]: HDR latency histograms, merging, percentile summaries.
//! - [`seqset`]: bitmaps of sequence numbers for exactly-once delivery checks.
//! - [`runner`]: `run` — librdkafka producers and consumers, sampling, result assembly.
//! - [`compare`]: `compare` — medians and ratios over alternating runs.
//! - [`disk`]: `disk` — io_uring O_DIRECT write bandwidth and fdatasync latency.
//! - [`result`]: the JSON result document and the printed table.
//! - [`chart`]: the SVG chart.
//! - [`sysinfo`]: machine facts, /proc/<pid> sampling of the broker, getrusage of ourselves.
//! - [`error`]: the crate's error enum and `Result` alias.
//!
//! The binary (`src/main.rs`) only parses flags and calls into these modules.

pub mod chart;
pub mod compare;
pub mod disk;
pub mod error;
pub mod histo;
pub mod payload;
pub mod rate;
pub mod result;
pub mod runner;
pub mod seqset;
pub mod sysinfo;
pub mod workload;

pub use error::{PerfError, Result};
