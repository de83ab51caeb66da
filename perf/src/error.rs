//! The crate's one error type. Binaries wrap it in `anyhow`; library code returns [`Result`].

use std::path::PathBuf;

/// Everything that can go wrong in the harness, with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    /// The workload file could not be read or parsed.
    #[error("workload {path}: {reason}")]
    Workload { path: PathBuf, reason: String },

    /// A workload parsed but one of its values is out of bounds or inconsistent.
    #[error("invalid workload: {0}")]
    InvalidWorkload(String),

    /// An I/O operation failed; carries the operation, the path and the byte offset.
    #[error("{op} {path} at offset {offset}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        offset: u64,
        #[source]
        source: std::io::Error,
    },

    /// librdkafka reported an error.
    #[error("kafka client ({context}): {source}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// The broker did not reach the expected state within the bounded wait.
    #[error("timed out after {waited_ms} ms waiting for {what}")]
    Timeout { what: String, waited_ms: u64 },

    /// A histogram operation failed (value out of the trackable range).
    #[error("histogram: {0}")]
    Histogram(String),

    /// Writing or reading a result file failed.
    #[error("result {path}: {reason}")]
    Result { path: PathBuf, reason: String },
}

/// Result alias for the crate.
pub type Result<T> = std::result::Result<T, PerfError>;

impl PerfError {
    /// Shorthand for wrapping an rdkafka error with what we were doing.
    pub fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        PerfError::Kafka {
            context: context.into(),
            source,
        }
    }
}
