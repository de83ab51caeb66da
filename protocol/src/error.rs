//! Errors of the wire layer. Each maps to a Kafka error code or to closing one connection.

use thiserror::Error;

pub type Result<T> = std::result::Result<T, ProtocolError>;

#[derive(Debug, Error)]
pub enum ProtocolError {
    /// A size prefix outside `[MIN_REQUEST_BYTES, max]`: the connection is closed before allocating.
    #[error("frame size {size} outside the allowed range 1..={max}")]
    FrameSize { size: i64, max: usize },
    /// The frame is shorter than the fixed request header.
    #[error("truncated request header ({len} bytes)")]
    TruncatedHeader { len: usize },
    /// An API key this broker does not know.
    #[error("unknown api key {api_key}")]
    UnknownApiKey { api_key: i16 },
    /// A known API at a version outside the advertised range.
    #[error("unsupported version {version} of api key {api_key}")]
    UnsupportedVersion { api_key: i16, version: i16 },
    /// The body did not decode with the schema of its version.
    #[error("malformed {api} v{version} request: {reason}")]
    Malformed {
        api: &'static str,
        version: i16,
        reason: String,
    },
    /// Encoding a response failed (a field out of range for the version).
    #[error("cannot encode {api} v{version} response: {reason}")]
    Encode {
        api: &'static str,
        version: i16,
        reason: String,
    },
    /// A record batch failed validation.
    #[error("invalid record batch: {0}")]
    Batch(#[from] crate::batch::BatchError),
    /// Record-level parsing or a codec failed (compaction, key checks).
    #[error("records: {0}")]
    Records(#[from] crate::records::RecordsError),
}
