//! Flushing a [`PartitionLog`]: fsync what lies above the recovery point, then move the
//! recovery checkpoint. A flush has three steps so that no fsync runs under the lock a
//! request waits on (the caller's lock around the log):
//! 1. [`PartitionLog::begin_flush`] (under the lock): names the files to sync and the
//!    log end they cover, in a [`FlushJob`];
//! 2. [`FlushJob::run`] (no lock): fsyncs them, then writes the recovery checkpoint;
//! 3. [`PartitionLog::finish_flush`] (under the lock): moves the recovery point, or takes
//!    the log offline if anything failed (as Kafka takes a log dir offline: after a failed
//!    fsync the kernel may have dropped the unsynced pages).
//!
//! [`PartitionLog::flush`] does all three for a caller that holds the log alone.
//! [`FlushJob::run_batch`] is step 2 for many logs at once (a clean shutdown): one syncfs
//! for all their files instead of an fsync per file.
//!
//! Invariant: the recovery checkpoint on disk never names an offset whose data was not
//! fsynced. Files deleted meanwhile (retention, compaction) need no sync; a truncation
//! meanwhile (the log end moved down) makes a running job's checkpoint stale, so
//! checkpoints go through one [`Checkpoint`] per log that knows the truncation
//! generation and refuses a stale write.

use std::fs::OpenOptions;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::StorageError;
use crate::fsio;
use crate::log::PartitionLog;
use crate::open_files::Handles;
use crate::recovery;

/// The recovery checkpoint file of one log, written by flushes (from any thread) and by
/// truncations, one at a time.
#[derive(Debug, Default)]
pub(crate) struct Checkpoint {
    /// Bumped by every truncation: a flush planned before it must not write.
    generation: u64,
    /// The last value written.
    written: i64,
}

pub(crate) type SharedCheckpoint = Arc<Mutex<Checkpoint>>;

fn lock(c: &SharedCheckpoint) -> std::sync::MutexGuard<'_, Checkpoint> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes `offset` as the recovery point after a truncation, invalidating every flush
/// planned before it.
pub(crate) fn write_after_truncation(c: &SharedCheckpoint, dir: &std::path::Path, offset: i64) -> io::Result<()> {
    let mut ck = lock(c);
    ck.generation += 1;
    recovery::write_recovery_point(dir, offset)?;
    ck.written = offset;
    Ok(())
}

/// The generation a flush planned now belongs to.
pub(crate) fn generation(c: &SharedCheckpoint) -> u64 {
    lock(c).generation
}

/// The fsyncs of one flush, planned under the log's lock and run without it.
#[derive(Debug)]
pub struct FlushJob {
    dir: PathBuf,
    /// The log end when planned: everything below it is in `logs`.
    end: i64,
    /// The segments to sync (each opened again for it if the cache closed it).
    logs: Vec<Arc<Handles>>,
    /// Index files, synced by path: one deleted meanwhile needs no sync.
    indexes: Vec<PathBuf>,
    checkpoint: SharedCheckpoint,
    generation: u64,
    /// Records this flush covers (subtracted from the unflushed count when it finishes).
    records: u64,
    started: Instant,
}

impl FlushJob {
    /// fsyncs the planned files, then writes the recovery checkpoint (unless a truncation
    /// came in between). Holds no lock of the caller's.
    pub fn run(&self) -> io::Result<()> {
        for h in &self.logs {
            match h.file() {
                Ok(f) => fsio::sync_data(&f)?,
                // Deleted meanwhile (retention, compaction): nothing to sync.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        for path in &self.indexes {
            match fsio::open(path, OpenOptions::new().write(true)) {
                Ok(f) => fsio::sync_data(&f)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.write_checkpoint(recovery::write_recovery_point)
    }

    /// Step 2 for many jobs whose logs share the filesystem of `fs_dir`: one syncfs makes
    /// every planned file durable, then each job's recovery checkpoint is written (without
    /// an fsync of its own) and a second syncfs makes those durable. Two journal commits
    /// in all, where [`run`](Self::run) costs a few per log: 1,000 partitions stop in one
    /// step instead of thousands of fsyncs. The checkpoints never name unsynced data: they
    /// are written only after the first syncfs succeeded. One failure fails every job.
    pub fn run_batch<'a>(jobs: impl IntoIterator<Item = &'a FlushJob>, fs_dir: &std::path::Path) -> io::Result<()> {
        fsio::sync_filesystem(fs_dir)?;
        for job in jobs {
            job.write_checkpoint(recovery::write_recovery_point_unsynced)?;
        }
        fsio::sync_filesystem(fs_dir)
    }

    /// Writes the recovery checkpoint with `write`, unless a truncation came in between or
    /// a later flush already wrote past it.
    fn write_checkpoint(&self, write: fn(&std::path::Path, i64) -> io::Result<()>) -> io::Result<()> {
        let mut ck = lock(&self.checkpoint);
        if ck.generation == self.generation && self.end > ck.written {
            write(&self.dir, self.end)?;
            ck.written = self.end;
        }
        Ok(())
    }
}

impl PartitionLog {
    /// Plans a flush of everything appended so far (step 1 of 3, see the module docs).
    pub fn begin_flush(&self) -> Result<FlushJob, StorageError> {
        self.check_online()?;
        let mut logs = Vec::new();
        let mut indexes = Vec::new();
        for s in self.segments.iter().filter(|s| s.next_offset() > self.recovery_point || s.size() == 0) {
            logs.push(Arc::clone(s.handles()));
            indexes.extend(s.index_paths());
        }
        Ok(FlushJob {
            dir: self.dir.clone(),
            end: self.log_end_offset(),
            logs,
            indexes,
            checkpoint: Arc::clone(&self.checkpoint),
            generation: generation(&self.checkpoint),
            records: self.unflushed_records,
            started: Instant::now(),
        })
    }

    /// Ends a flush with the outcome of [`FlushJob::run`] (step 3 of 3): on success the
    /// recovery point moves up to what the job covered; on failure the log goes offline.
    pub fn finish_flush(&mut self, job: FlushJob, ran: io::Result<()>) -> Result<(), StorageError> {
        if let Err(e) = ran {
            self.set_offline(format!("flush failed: {e}"));
            return Err(e.into());
        }
        if job.generation == generation(&self.checkpoint) {
            self.recovery_point = self.recovery_point.max(job.end.min(self.log_end_offset()));
            for s in self.segments.iter().take_while(|s| s.next_offset() <= self.recovery_point) {
                s.set_dirty(false);
            }
        }
        self.unflushed_records = self.unflushed_records.saturating_sub(job.records);
        self.last_flush = Instant::now();
        self.fsyncs.record(job.started.elapsed());
        Ok(())
    }

    /// fsyncs every segment with data above the recovery point, then moves the recovery
    /// checkpoint to the log end offset (written atomically), all under `&mut self`. A
    /// failed fsync or checkpoint write takes the log offline, and the recovery point
    /// stays where it was.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        let job = self.begin_flush()?;
        let ran = job.run();
        self.finish_flush(job, ran)
    }

    /// True when `flush.messages` records are unflushed: the caller should flush before it
    /// acknowledges them.
    pub fn flush_due_by_count(&self) -> bool {
        self.unflushed_records >= self.config.flush_messages
    }

    /// True if `flush_ms` passed since the last flush and there is unflushed data.
    pub fn flush_due_by_time(&self) -> bool {
        self.offline_reason().is_none()
            && self.last_flush.elapsed() >= Duration::from_millis(self.config.flush_ms)
            && (self.unflushed_records > 0 || self.recovery_point < self.log_end_offset())
    }

    /// Flushes if `flush_ms` passed since the last flush and there is unflushed data.
    pub fn maybe_flush(&mut self) -> Result<(), StorageError> {
        if self.flush_due_by_time() {
            self.flush()?;
        }
        Ok(())
    }
}
