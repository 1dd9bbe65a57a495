//! Deleting from the head of a partition log: time and size retention (whole closed
//! segments, never the active one) and DeleteRecords (moving the log start offset, possibly
//! into the middle of a segment, then deleting the segments wholly below it).
//!
//! The log start offset is checkpointed (`log-start-offset`, written atomically) before the
//! files below it are deleted, so a crash never makes deleted records readable again.
//! Never decides when to run: the broker's cleaner loop does.

use crate::config::RetentionConfig;
use crate::error::StorageError;
use crate::log::PartitionLog;

/// What a retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
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
        if self.offline_reason().is_some() {
            return Ok(RetentionOutcome::default());
        }
        let before = (self.segments.len(), self.size_bytes());
        self.delete_segments_below_start()?;
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
        self.delete_oldest(n)?;
        Ok(RetentionOutcome {
            segments_deleted: before.0 - self.segments.len(),
            bytes_deleted: before.1 - self.size_bytes(),
        })
    }

    /// DeleteRecords: makes `offset` the log start offset (records below it are no longer
    /// readable) and deletes the segments wholly below it. `OffsetOutOfRange` above the log
    /// end; an offset at or below the current log start changes nothing. Returns the new
    /// log start offset (the low watermark).
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, StorageError> {
        self.check_online()?;
        if offset > self.log_end_offset() || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start: self.log_start_offset(),
                log_end: self.log_end_offset(),
            });
        }
        if offset > self.log_start {
            self.set_log_start(offset)?;
            self.delete_segments_below_start()?;
        }
        Ok(self.log_start)
    }
}
