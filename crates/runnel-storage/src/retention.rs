//! Deleting from the head of a partition log: time and size retention (whole closed
//! segments, never the active one) and DeleteRecords (moving the log start offset, possibly
//! into the middle of a segment, then deleting the segments wholly below it).
//!
//! The log start offset is checkpointed (`log-start-offset`, written atomically) before the
//! files below it are deleted, so a crash never makes deleted records readable again.
//! Never decides when to run: the broker's cleaner loop does.
//!
//! Retention runs in two steps so that no file is deleted under the lock a request waits
//! on: [`PartitionLog::plan_retention`] (under the lock) takes the expired segments out of
//! the log in memory; [`SegmentDeletion::run`] (without it) deletes their files, then
//! checkpoints the log start. Callers serialize it with other deletions of closed
//! segments (the broker's per-partition maintenance lock).

use std::path::PathBuf;

use crate::config::RetentionConfig;
use crate::error::StorageError;
use crate::log::PartitionLog;
use crate::recovery::{self, LOG_START_FILE};
use crate::segment::Segment;

/// What a retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

/// Segments taken out of a log whose files are still to be deleted (see the module docs).
#[derive(Debug)]
pub struct SegmentDeletion {
    pub(crate) dir: PathBuf,
    pub(crate) segments: Vec<Segment>,
    /// The log start to checkpoint once the files are gone, if it moved.
    pub(crate) log_start: Option<i64>,
    /// The log's first segment after the deletion: producer snapshots below it go.
    pub(crate) first_base: i64,
    pub(crate) outcome: RetentionOutcome,
}

/// A new log start for DeleteRecords, checkpointed before it takes effect (see
/// [`PartitionLog::plan_delete_records`]).
#[derive(Debug)]
pub struct LogStartMove {
    dir: PathBuf,
    pub offset: i64,
}

impl LogStartMove {
    /// Writes the log-start checkpoint (temp file, fsync, rename, fsync the directory).
    pub fn write(&self) -> Result<(), StorageError> {
        Ok(recovery::write_checkpoint(&self.dir, LOG_START_FILE, self.offset)?)
    }
}

impl SegmentDeletion {
    /// Deletes the segments' files oldest first, then checkpoints the log start and prunes
    /// producer snapshots. After a failed delete the rest stay on disk below the log start,
    /// where the next `open` deletes them.
    pub fn run(self) -> Result<RetentionOutcome, StorageError> {
        if self.segments.is_empty() && self.log_start.is_none() {
            return Ok(self.outcome);
        }
        let mut deleted = Ok(());
        for seg in self.segments {
            tracing::debug!(dir = %self.dir.display(), base = seg.base_offset(), "deleting segment");
            if let Err(e) = seg.delete() {
                deleted = Err(e);
                break;
            }
        }
        if let Some(start) = self.log_start {
            recovery::write_checkpoint(&self.dir, LOG_START_FILE, start)?;
        }
        crate::producers::prune_snapshots(&self.dir, self.first_base)?;
        deleted?;
        Ok(self.outcome)
    }

    /// Another deletion's segments after this one's (one run for both).
    fn then(mut self, next: SegmentDeletion) -> SegmentDeletion {
        self.segments.extend(next.segments);
        self.log_start = next.log_start.or(self.log_start);
        self.first_base = next.first_base;
        self.outcome.segments_deleted += next.outcome.segments_deleted;
        self.outcome.bytes_deleted += next.outcome.bytes_deleted;
        self
    }
}

impl PartitionLog {
    /// Deletes the oldest closed segments that break `cfg` at wall-clock time `now_ms`, and
    /// any segment wholly below the log start offset: by time, each segment whose largest
    /// timestamp is older than `now_ms - retention_ms` (an empty segment counts as
    /// expired); by size, the oldest segments while the log is at least `retention_bytes`
    /// without them. Deletion stops at the first segment that may stay, and never reaches
    /// the active segment. The log start moves up to the first remaining segment.
    pub fn apply_retention(
        &mut self,
        cfg: &RetentionConfig,
        now_ms: i64,
    ) -> Result<RetentionOutcome, StorageError> {
        self.plan_retention(cfg, now_ms).run()
    }

    /// [`apply_retention`](Self::apply_retention)'s step under the lock: takes the
    /// segments it deletes out of the log; [`SegmentDeletion::run`] deletes their files.
    pub fn plan_retention(&mut self, cfg: &RetentionConfig, now_ms: i64) -> SegmentDeletion {
        if self.offline_reason().is_some() {
            return self.detach_oldest(0);
        }
        let n = self
            .segments
            .windows(2)
            .take_while(|w| w[1].base_offset() <= self.log_start)
            .count();
        let below_start = self.detach_oldest(n);
        let closed = self.segments.len() - 1;
        let mut n = 0;
        if let Some(ms) = cfg.retention_ms {
            let horizon = now_ms.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX));
            n = self.segments[..closed]
                .iter()
                .take_while(|s| !matches!(s.max_time_entry(), Some((ts, _)) if ts >= horizon))
                .count();
        }
        if let Some(limit) = cfg.retention_bytes {
            let mut excess = self.size_bytes().saturating_sub(limit);
            let mut by_size = 0;
            for s in &self.segments[..closed] {
                if s.size() > excess {
                    break;
                }
                excess -= s.size();
                by_size += 1;
            }
            n = n.max(by_size);
        }
        below_start.then(self.detach_oldest(n))
    }

    /// DeleteRecords: makes `offset` the log start offset (records below it are no longer
    /// readable) and deletes the segments wholly below it. `OffsetOutOfRange` above the log
    /// end; an offset at or below the current log start changes nothing. Returns the new
    /// log start offset (the low watermark).
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, StorageError> {
        if let Some(mv) = self.plan_delete_records(offset)? {
            mv.write()?;
            self.finish_delete_records(mv).run()?;
        }
        Ok(self.log_start)
    }

    /// [`delete_records_before`](Self::delete_records_before) in steps, so that its fsyncs
    /// and deletes run without the lock a request waits on: this check (under the lock)
    /// gives the log start to write, `None` if it would not move;
    /// [`LogStartMove::write`] (without the lock) checkpoints it, so a crash never makes
    /// the records below it readable again; [`finish_delete_records`](Self::finish_delete_records)
    /// (under the lock) moves it in memory and takes the segments wholly below it out,
    /// and [`SegmentDeletion::run`] (without) deletes their files. Callers serialize it with
    /// other deletions and truncations (the broker's maintenance lock).
    pub fn plan_delete_records(&self, offset: i64) -> Result<Option<LogStartMove>, StorageError> {
        self.check_online()?;
        if offset > self.log_end_offset() || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start: self.log_start_offset(),
                log_end: self.log_end_offset(),
            });
        }
        Ok((offset > self.log_start).then(|| LogStartMove { dir: self.dir.clone(), offset }))
    }

    /// See [`plan_delete_records`](Self::plan_delete_records).
    pub fn finish_delete_records(&mut self, mv: LogStartMove) -> SegmentDeletion {
        self.log_start = self.log_start.max(mv.offset);
        let n = self.segments.windows(2).take_while(|w| w[1].base_offset() <= self.log_start).count();
        self.detach_oldest(n)
    }
}
