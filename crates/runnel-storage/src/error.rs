//! The storage error type. Every fallible storage call returns [`StorageError`];
//! bad bytes on disk become `Corrupt`, never a panic.

use runnel_protocol::batch::BatchError;

/// Errors of the storage layer.
#[derive(thiserror::Error, Debug)]
pub enum StorageError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The requested offset is outside `[log_start, log_end]`.
    #[error("offset {requested} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        requested: i64,
        log_start: i64,
        log_end: i64,
    },
    /// On-disk data that cannot be interpreted.
    #[error("corrupt log data: {0}")]
    Corrupt(String),
    /// The bytes handed to `append` are not whole v2 batches.
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The append cannot be stored (empty, or larger than a segment can address).
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// The log is offline: a failed fsync or checkpoint write (its unsynced state is
    /// unknown), or it was retired by a topic deletion. Nothing is read or written until
    /// the broker restarts and recovers it.
    #[error("log is offline: {0}")]
    Offline(String),
    /// A producer's batch breaks its sequence, epoch or transaction state.
    #[error("{0}")]
    Producer(#[from] crate::producer_state::ProducerError),
}
