//! The crate's one error type. I/O errors carry the operation, the path and the file offset so
//! an operator can find the failing file without a debugger.

use std::io;
use std::path::PathBuf;

/// Errors returned by the WAL.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call failed. `offset` is the byte position in `path` when the call had one.
    #[error("wal i/o error: {op} {path:?} at offset {offset:?}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        offset: Option<u64>,
        #[source]
        source: io::Error,
    },
    /// A record or segment header failed validation where a torn tail is impossible.
    #[error("wal corrupt: {path:?} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    /// The device is full (ENOSPC). The WAL refuses further writes until restarted.
    #[error("wal: no space left on device")]
    NoSpace,
    /// A previous write or fdatasync failed: the WAL refuses writes (Kafka: KAFKA_STORAGE_ERROR).
    /// Everything acknowledged before the failure is intact on disk.
    #[error("wal unavailable after an earlier i/o failure")]
    Unavailable,
    /// The caller broke an API precondition (wrong index, unknown group, oversize payload).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// More than `MAX_UNFLUSHED_BYTES` are buffered: the caller must `flush()` before appending.
    #[error("wal backpressure: {buffered_bytes} bytes buffered, flush first")]
    Backpressure { buffered_bytes: u64 },
}

/// Crate result alias.
pub type Result<T> = std::result::Result<T, StorageError>;

impl StorageError {
    /// Wraps an `io::Error`, turning ENOSPC into [`StorageError::NoSpace`].
    pub(crate) fn io(
        op: &'static str,
        path: &std::path::Path,
        offset: Option<u64>,
        source: io::Error,
    ) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            return StorageError::NoSpace;
        }
        StorageError::Io {
            op,
            path: path.to_path_buf(),
            offset,
            source,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        StorageError::InvalidArgument(msg.into())
    }
}
