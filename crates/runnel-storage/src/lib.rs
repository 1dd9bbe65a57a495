//! Runnel's storage: one [`PartitionLog`] per partition directory, made of segments
//! (`.log` files of verbatim v2 record batches named by 20-digit base offset, with a sparse
//! `.index` and a `.timeindex`), plus the recovery checkpoint.
//!
//! Owns: appending (offset assignment, rolling, indexes), reads as file ranges of whole
//! batches (for `sendfile`), timestamp lookups, flush and the recovery checkpoint, crash
//! recovery to the last whole CRC-valid batch, truncation, retention and DeleteRecords
//! (the log start offset and its checkpoint), and compaction with crash-safe swaps.
//!
//! Must never: know about sockets or Kafka requests, keep a second copy of message data in
//! memory (reads return file ranges; the page cache does the caching), rewrite stored
//! batch bytes outside compaction, or panic on bad bytes read from disk.

pub mod compaction;
pub mod config;
pub mod error;
#[cfg(feature = "failpoints")]
pub mod failpoints;
mod flush;
mod fsio;
mod index;
pub mod leader_epoch;
pub mod log;
pub mod offset_checkpoint;
mod open_files;
pub mod producer_state;
mod producers;
mod recovery;
pub mod retention;
mod segment;
mod txn_index;

pub use compaction::{CompactionJob, CompactionOutput, CompactionStats, InstallJob};
pub use config::{CompactionConfig, LogConfig, RetentionConfig};
pub use error::StorageError;
pub use producer_state::{AppendOrigin, ProducerEntry, ProducerError, ProducerStateManager};
pub use retention::{LogStartMove, RetentionOutcome, SegmentDeletion};
pub use flush::FlushJob;
pub use fsio::sync_filesystem;
pub use leader_epoch::{LeaderEpochCache, LeaderEpochs};
pub use txn_index::AbortedTxn;
pub use open_files::{OpenFiles, SegmentFile};
pub use log::{AppendInfo, FileSlice, FsyncStats, PartitionLog, ReadSlice, FSYNC_BUCKETS};
