//! [`PartitionLog`]: one partition's ordered segments in one directory. Owns offset
//! assignment, rolling, reads as file ranges, timestamp lookups, flushing with the
//! recovery checkpoint, the log start offset (with its checkpoint) and truncation.
//! Retention lives in [`crate::retention`], compaction in [`crate::compaction`]. Never
//! parses requests or touches sockets.
//!
//! Invariants (checked with `debug_assert!`):
//! - offsets strictly increase: each appended batch starts at the previous batch's last
//!   offset + 1; compaction may remove batches (and records inside batches), leaving gaps,
//!   so a segment starts at or after the offset where the previous one ends;
//! - the log end offset is the last batch's last offset + 1 (the active segment's base
//!   offset when it is empty);
//! - `first segment base <= log start offset <= log end offset`; reads below the log start
//!   are refused;
//! - only the last segment is ever appended to; compaction only rewrites other segments.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use runnel_protocol::batch::{self, BatchHeader};

use crate::config::LogConfig;
use crate::error::StorageError;
use crate::flush::SharedCheckpoint;
use crate::fsio;
use crate::open_files::{OpenFiles, SegmentFile};
use crate::producer_state::{AppendOrigin, ProducerStateManager};
use crate::recovery::{self, CLEANER_POINT_FILE, CLEAN_SHUTDOWN_FILE, LOG_START_FILE};
use crate::retention::{RetentionOutcome, SegmentDeletion};
use crate::segment::Segment;

/// What an append stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Largest batch `maxTimestamp` in the append.
    pub max_timestamp: i64,
    /// The append was a retry of a stored batch: nothing was written, the offsets are the
    /// original ones.
    pub duplicate: bool,
}

/// A byte range of a segment file: whole batches, ready for `pread` or `sendfile`.
#[derive(Debug, Clone)]
pub struct FileSlice {
    pub file: Arc<SegmentFile>,
    pub position: u64,
    pub len: usize,
}

/// The result of [`PartitionLog::read`]: whole batches, in offset order.
#[derive(Debug, Clone, Default)]
pub struct ReadSlice {
    pub slices: Vec<FileSlice>,
}

impl ReadSlice {
    /// Total bytes.
    pub fn len(&self) -> usize {
        self.slices.iter().map(|s| s.len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.slices.iter().all(|s| s.len == 0)
    }

    /// Copies the bytes out (one `pread` per slice). A segment truncated since the read
    /// gives `UnexpectedEof`.
    pub fn read_to_vec(&self) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; self.len()];
        let mut at = 0;
        for s in &self.slices {
            s.file.read_exact_at(&mut out[at..at + s.len], s.position)?;
            at += s.len;
        }
        Ok(out)
    }
}

/// One partition's log. See the module docs for its invariants.
#[derive(Debug)]
pub struct PartitionLog {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// Sorted by base offset, never empty; the last one is active.
    pub(crate) segments: Vec<Segment>,
    /// Offsets below this are fsynced (and named by the checkpoint file).
    pub(crate) recovery_point: i64,
    /// The first readable offset (checkpointed in `log-start-offset`).
    pub(crate) log_start: i64,
    /// Offsets below this were compacted at least once (checkpointed in `cleaner-offset`).
    pub(crate) cleaner_point: i64,
    pub(crate) unflushed_records: u64,
    pub(crate) last_flush: Instant,
    /// fsyncs done by [`PartitionLog::flush`] and the time they took, for metrics.
    pub(crate) fsyncs: FsyncStats,
    /// The recovery checkpoint file, shared with running [`crate::flush::FlushJob`]s.
    pub(crate) checkpoint: SharedCheckpoint,
    /// Whether an append that reaches `flush.messages` flushes before it returns (true
    /// by default); see [`PartitionLog::defer_flushes`].
    flush_inline: bool,
    /// Why the log is offline, if it is (see [`StorageError::Offline`]).
    offline: Option<String>,
    /// Idempotent and transactional producers, derived from the batches (see
    /// [`crate::producer_state`]).
    pub(crate) producers: ProducerStateManager,
    /// The budget of open segments this log's segments share (see [`crate::open_files`]).
    pub(crate) files: Arc<OpenFiles>,
}

/// How many flushes (fsync) a log has done, how long they took in all, and how many took
/// at most each of [`FSYNC_BUCKETS`] (a latency histogram, not cumulative).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FsyncStats {
    pub count: u64,
    pub total: Duration,
    pub buckets: [u64; FSYNC_BUCKETS.len()],
}

/// Upper bounds of the fsync latency buckets: 100 µs … 1 s.
pub const FSYNC_BUCKETS: [Duration; 10] = [
    Duration::from_micros(100),
    Duration::from_micros(250),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_micros(2500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(250),
    Duration::from_secs(1),
];

impl FsyncStats {
    pub(crate) fn record(&mut self, took: Duration) {
        self.count += 1;
        self.total += took;
        if let Some(i) = FSYNC_BUCKETS.iter().position(|b| took <= *b) {
            self.buckets[i] += 1;
        }
    }
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering it to the last whole, valid batch.
    /// Its segments share the process's budget of open files ([`OpenFiles::process`]).
    pub fn open(dir: &Path, config: LogConfig) -> Result<Self, StorageError> {
        Self::open_with(dir, config, OpenFiles::process())
    }

    /// [`open`](Self::open) with the segments held open through `files`.
    pub fn open_with(dir: &Path, config: LogConfig, files: &Arc<OpenFiles>) -> Result<Self, StorageError> {
        let (segments, recovery_point) = recovery::load(dir, config.index_interval_bytes, files)?;
        let first_base = segments[0].base_offset();
        let log_end = segments[segments.len() - 1].next_offset();
        let log_start = recovery::read_checkpoint(dir, LOG_START_FILE)?
            .unwrap_or(0)
            .max(first_base)
            .min(log_end);
        let cleaner_point = recovery::read_checkpoint(dir, CLEANER_POINT_FILE)?.unwrap_or(0);
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            recovery_point,
            log_start,
            cleaner_point,
            unflushed_records: 0,
            last_flush: Instant::now(),
            fsyncs: FsyncStats::default(),
            checkpoint: SharedCheckpoint::default(),
            flush_inline: true,
            offline: None,
            producers: ProducerStateManager::default(),
            files: Arc::clone(files),
        };
        for s in &log.segments {
            s.set_dirty(s.next_offset() > recovery_point);
        }
        // A crash between moving the log start and deleting what lies below it.
        log.delete_segments_below_start()?;
        log.load_producer_state()?;
        log.check_invariants();
        Ok(log)
    }

    /// `Err(Offline)` once the log went offline.
    pub(crate) fn check_online(&self) -> Result<(), StorageError> {
        match &self.offline {
            Some(why) => Err(StorageError::Offline(why.clone())),
            None => Ok(()),
        }
    }

    /// Why the log is offline, if it is.
    pub fn offline_reason(&self) -> Option<&str> {
        self.offline.as_deref()
    }

    /// Takes the log offline: every later read, append, flush or cleaning refuses.
    pub fn set_offline(&mut self, why: String) {
        if self.offline.is_none() {
            tracing::error!(dir = %self.dir.display(), reason = %why, "partition log is offline until restart");
            self.offline = Some(why);
        }
    }

    /// Retires the log of a deleted partition: renames its directory to `to` (in the same
    /// parent), fsyncs the parent and takes the log offline, so no holder of this log can
    /// ever touch a new directory created later under the old name. The caller removes
    /// `to` afterwards.
    pub fn retire(&mut self, to: &Path) -> Result<(), StorageError> {
        fsio::rename(&self.dir, to)?;
        if let Some(parent) = to.parent() {
            recovery::sync_dir(parent)?;
        }
        self.dir = to.to_path_buf();
        self.offline = Some("the partition was deleted".into());
        Ok(())
    }

    pub(crate) fn check_invariants(&self) {
        debug_assert!(!self.segments.is_empty());
        debug_assert!(self
            .segments
            .windows(2)
            .all(|w| w[0].next_offset() <= w[1].base_offset()));
        debug_assert!(self.segments[0].base_offset() <= self.log_start);
        debug_assert!(self.log_start <= self.log_end_offset());
    }

    fn active(&self) -> &Segment {
        &self.segments[self.segments.len() - 1]
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    /// The first readable offset: the log's low watermark.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start
    }
    /// One past the last stored offset: the offset the next append gets.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }
    /// Offsets below this are durable (fsynced).
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size).sum()
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// From now on an append that reaches `flush.messages` does not flush: the caller
    /// checks [`flush_due_by_count`](Self::flush_due_by_count) after it and flushes with
    /// [`begin_flush`](Self::begin_flush) / `run` / [`finish_flush`](Self::finish_flush)
    /// outside its lock, before acknowledging.
    pub fn defer_flushes(&mut self) {
        self.flush_inline = false;
    }

    /// Appends one or more already-validated v2 batches laid end to end. Offsets are
    /// assigned from the log end offset by patching each `baseOffset` in `batches`; the
    /// bytes go to the active segment in one write (rolling first when needed). On error
    /// nothing is visible and the log accepts later appends.
    ///
    /// Batches with a producer id are checked against the producer state as a client's
    /// (see [`append_as`](Self::append_as)).
    pub fn append(&mut self, batches: &mut [u8]) -> Result<AppendInfo, StorageError> {
        self.append_as(batches, AppendOrigin::Client)
    }

    /// [`append`](Self::append) for `origin`: a client's batches get the idempotence
    /// checks (a retried batch returns its original offsets with `duplicate` set and
    /// writes nothing; a sequence gap or an old epoch is refused); the coordinator's
    /// markers get the epoch checks; a replay gets none. The producer state changes only
    /// once the bytes are stored. A replay keeps the batches' own offsets where they are
    /// above the log end (a follower stores the leader's, and a compacted leader's log
    /// has gaps); other batches get the next offsets.
    pub fn append_as(&mut self, batches: &mut [u8], origin: AppendOrigin) -> Result<AppendInfo, StorageError> {
        self.check_online()?;
        if batches.is_empty() {
            return Err(StorageError::InvalidAppend("no batches".into()));
        }
        let mut metas: Vec<(BatchHeader, std::ops::Range<usize>)> =
            batch::batches(batches).collect::<Result<_, _>>()?;
        let base_offset = self.log_end_offset();
        let mut next = base_offset;
        let mut max_timestamp = i64::MIN;
        for (h, range) in &mut metas {
            if h.last_offset_delta < 0 {
                return Err(StorageError::InvalidAppend(format!(
                    "lastOffsetDelta {}",
                    h.last_offset_delta
                )));
            }
            if origin == AppendOrigin::Replay && h.base_offset > next {
                next = h.base_offset;
            }
            batch::set_base_offset(&mut batches[range.clone()], next);
            h.base_offset = next;
            next = h.last_offset() + 1;
            max_timestamp = max_timestamp.max(h.max_timestamp);
        }
        let last_offset = next - 1;
        let mut staged = {
            let headers: Vec<BatchHeader> = metas.iter().map(|(h, _)| *h).collect();
            let bytes: &[u8] = batches;
            self.producers.stage(&headers, |i| &bytes[metas[i].1.clone()], origin)?
        };
        if let Some(d) = staged.duplicate {
            return Ok(AppendInfo {
                base_offset: d.first_offset,
                last_offset: d.last_offset,
                max_timestamp: d.timestamp,
                duplicate: true,
            });
        }
        let len = batches.len() as u64;
        if len > u64::from(u32::MAX) || last_offset - base_offset > i64::from(u32::MAX) {
            return Err(StorageError::InvalidAppend(format!(
                "{len} bytes / {} offsets in one append",
                next - base_offset
            )));
        }
        if self.should_roll(len, last_offset) {
            self.roll()?;
        }
        let interval = self.config.index_interval_bytes;
        let last = self.segments.len() - 1;
        if let Err(e) = self.segments[last].append(batches, &metas, interval) {
            if self.segments[last].torn() {
                self.set_offline(format!("a failed append could not be cut back: {e}"));
            }
            return Err(e.into());
        }
        debug_assert_eq!(
            self.log_end_offset(),
            last_offset + 1,
            "log end = last offset + 1"
        );
        let completed = std::mem::take(&mut staged.completed);
        self.producers.commit(staged, next);
        if let Err(e) = self.on_transactions_completed(&completed) {
            // A read_committed consumer must never see an aborted record: without the
            // index entry nothing more is served from this log.
            self.set_offline(format!("could not index an aborted transaction: {e}"));
            return Err(e);
        }
        self.unflushed_records = self
            .unflushed_records
            .saturating_add((next - base_offset) as u64);
        if self.flush_inline && self.flush_due_by_count() {
            self.flush()?;
        }
        Ok(AppendInfo {
            base_offset,
            last_offset,
            max_timestamp,
            duplicate: false,
        })
    }

    fn should_roll(&self, len: u64, last_offset: i64) -> bool {
        let active = self.active();
        if active.size() == 0 {
            return false;
        }
        let too_old = active.first_append().is_some_and(|t| {
            SystemTime::now().duration_since(t).unwrap_or_default()
                >= Duration::from_millis(self.config.segment_ms)
        });
        active.size() + len > self.config.segment_bytes
            || too_old
            || !active.can_address(len, last_offset)
    }

    fn roll(&mut self) -> Result<(), StorageError> {
        let base = self.log_end_offset();
        tracing::debug!(dir = %self.dir.display(), base, "rolling segment");
        // The producer state as of the new segment's base: a restart replays only the
        // segment after it. Not fsynced here (a lost snapshot means a longer replay).
        self.producers.write_snapshot(&self.dir, base, false)?;
        let new = Segment::create(&self.dir, base, &self.files)?;
        let last = self.segments.len() - 1;
        self.segments[last].seal();
        self.segments.push(new);
        self.check_invariants();
        Ok(())
    }

    fn out_of_range(&self, requested: i64) -> StorageError {
        StorageError::OffsetOutOfRange {
            requested,
            log_start: self.log_start_offset(),
            log_end: self.log_end_offset(),
        }
    }

    /// Index of the segment that holds `offset` (the last one starting at or below it).
    fn segment_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1)
    }

    /// Whole batches from the one containing `offset`, across segments, up to `max_bytes`
    /// in total; with `min_one` the first batch is returned even if larger. Empty at the
    /// log end; `OffsetOutOfRange` outside `[log start, log end]`.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadSlice, StorageError> {
        self.read_up_to(offset, max_bytes, min_one, i64::MAX)
    }

    /// Like [`read`](Self::read), but returns only batches that lie wholly below `upper`
    /// (e.g. the high watermark): empty if the batch containing `offset` reaches `upper`.
    pub fn read_up_to(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        upper: i64,
    ) -> Result<ReadSlice, StorageError> {
        self.read_segments(offset, max_bytes, min_one, upper, usize::MAX)
    }

    /// [`read_up_to`](Self::read_up_to) from one segment only, as Kafka's fetch reads (the
    /// next fetch goes on where this one ended): a response being sent holds one open file
    /// per partition, however small the segments, so fetches in flight cannot exhaust the
    /// descriptors that the cache of open segments bounds.
    pub fn read_for_fetch(&self, offset: i64, max_bytes: usize, min_one: bool, upper: i64) -> Result<ReadSlice, StorageError> {
        self.read_segments(offset, max_bytes, min_one, upper, 1)
    }

    fn read_segments(&self, offset: i64, max_bytes: usize, min_one: bool, upper: i64, max_segments: usize) -> Result<ReadSlice, StorageError> {
        self.check_online()?;
        if offset < self.log_start_offset() || offset > self.log_end_offset() {
            return Err(self.out_of_range(offset));
        }
        let mut out = ReadSlice::default();
        if offset >= upper {
            return Ok(out);
        }
        // Where the data readable below `upper` ends: (segment index, position).
        let (upper_seg, upper_pos) = if upper >= self.log_end_offset() {
            (self.segments.len() - 1, self.active().size())
        } else {
            let i = self.segment_for(upper);
            let seg = &self.segments[i];
            (i, seg.find_position(upper)?.unwrap_or(seg.size()))
        };
        let mut total: u64 = 0;
        let max = max_bytes as u64;
        let first = self.segment_for(offset);
        for (i, seg) in self
            .segments
            .iter()
            .enumerate()
            .take(upper_seg + 1)
            .skip(first)
        {
            let end = if i == upper_seg {
                upper_pos
            } else {
                seg.size()
            };
            let start = if i == first {
                match seg.find_position(offset)? {
                    Some(pos) => pos,
                    None => continue,
                }
            } else {
                0
            };
            let mut pos = start;
            let mut full = false;
            if end.saturating_sub(pos) <= max - total {
                pos = end.max(start);
            } else {
                if let Some(b) = seg.indexed_boundary(pos, end.min(pos + (max - total))) {
                    pos = b;
                }
                while pos < end {
                    let len = seg.read_header(pos)?.total_len() as u64;
                    let forced = min_one && total == 0 && pos == start && out.slices.is_empty();
                    if total + (pos - start) + len > max && !forced {
                        full = true;
                        break;
                    }
                    pos += len;
                }
            }
            if pos > start {
                total += pos - start;
                out.slices.push(FileSlice {
                    file: seg.file()?,
                    position: start,
                    len: (pos - start) as usize,
                });
            }
            if full || total >= max || out.slices.len() >= max_segments {
                break;
            }
        }
        Ok(out)
    }

    /// Kafka's ListOffsets by time: `(offset, timestamp)` of the earliest record whose
    /// timestamp is `>= ts`. Exact inside uncompressed batches; a compressed batch answers
    /// with its base offset and `maxTimestamp`. `None` if there is no such record.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, StorageError> {
        self.check_online()?;
        for seg in &self.segments {
            if seg.next_offset() <= self.log_start {
                continue;
            }
            if let Some((offset, t)) = seg.offset_for_timestamp(ts)? {
                return Ok(Some((offset.max(self.log_start), t)));
            }
        }
        Ok(None)
    }

    /// `(timestamp, offset)` of the record with the largest timestamp (ties: the earliest
    /// offset). Exact for uncompressed batches; a compressed batch answers with its last
    /// offset. `None` for an empty log.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, StorageError> {
        self.check_online()?;
        let mut best: Option<(i64, &Segment)> = None;
        for seg in &self.segments {
            if let Some((ts, _)) = seg.max_time_entry() {
                if !matches!(best, Some((b, _)) if ts <= b) {
                    best = Some((ts, seg));
                }
            }
        }
        match best {
            Some((_, seg)) => seg.max_timestamp(),
            None => Ok(None),
        }
    }

    /// Flushes done so far and their total duration.
    pub fn fsync_stats(&self) -> FsyncStats {
        self.fsyncs
    }

    /// Flushes and marks a clean shutdown, so the next `open` trusts every segment.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.flush()?;
        self.producers.write_snapshot(&self.dir, self.log_end_offset(), true)?;
        fsio::sync_all(&fsio::create(&self.dir.join(CLEAN_SHUTDOWN_FILE))?)?;
        recovery::sync_dir(&self.dir)?;
        Ok(())
    }

    /// Drops every record at or above `offset`. Truncation is at batch granularity: the
    /// batch containing `offset` goes entirely, so afterwards the log end offset is that
    /// batch's base offset (`<= offset`). An `offset` at or below the log start empties
    /// the log, which then starts at `offset`. No-op at or past the log end.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        self.check_online()?;
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        let offset = offset.max(0);
        if offset <= self.log_start_offset() {
            for seg in self.segments.drain(..) {
                seg.delete()?;
            }
            self.segments.push(Segment::create(&self.dir, offset, &self.files)?);
            self.set_log_start(offset)?;
        } else {
            let keep = self.segment_for(offset);
            for seg in self.segments.drain(keep + 1..) {
                seg.delete()?;
            }
            let last = self.segments.len() - 1;
            self.segments[last].truncate_to(offset)?;
        }
        self.recovery_point = self.recovery_point.min(self.log_end_offset());
        crate::flush::write_after_truncation(&self.checkpoint, &self.dir, self.recovery_point)?;
        self.load_producer_state()?;
        self.check_invariants();
        Ok(())
    }

    /// Moves the log start offset (checkpointed first, so a crash never resurrects
    /// records below it).
    pub(crate) fn set_log_start(&mut self, offset: i64) -> Result<(), StorageError> {
        if offset != self.log_start {
            recovery::write_checkpoint(&self.dir, LOG_START_FILE, offset)?;
            self.log_start = offset;
        }
        Ok(())
    }

    /// Deletes every segment that lies wholly below the log start offset (its successor
    /// starts at or below it). Never the active segment. Returns how many were deleted.
    pub(crate) fn delete_segments_below_start(&mut self) -> Result<usize, StorageError> {
        let n = self
            .segments
            .windows(2)
            .take_while(|w| w[1].base_offset() <= self.log_start)
            .count();
        self.delete_oldest(n)?;
        Ok(n)
    }

    /// Deletes the `n` oldest segments (never the active one), oldest first, then moves
    /// the log start up to the new first segment if it was below it.
    pub(crate) fn delete_oldest(&mut self, n: usize) -> Result<(), StorageError> {
        self.detach_oldest(n).run().map(|_| ())
    }

    /// Takes the `n` oldest segments (never the active one) out of the log and moves the
    /// log start up to the new first segment if it was below it, in memory: reads no
    /// longer reach them (a read in flight keeps its open files). Their files are deleted,
    /// and the log start checkpointed, by [`SegmentDeletion::run`], without the log.
    pub(crate) fn detach_oldest(&mut self, n: usize) -> SegmentDeletion {
        let n = n.min(self.segments.len() - 1);
        let size: u64 = self.segments[..n].iter().map(Segment::size).sum();
        let segments: Vec<Segment> = self.segments.drain(..n).collect();
        // In memory first: the checkpoint may lag (`open` takes the larger of the
        // checkpoint and the first segment's base, and deletes the segments below it).
        let start = self.log_start.max(self.segments[0].base_offset());
        let old = std::mem::replace(&mut self.log_start, start);
        self.check_invariants();
        SegmentDeletion {
            dir: self.dir.clone(),
            outcome: RetentionOutcome { segments_deleted: segments.len(), bytes_deleted: size },
            segments,
            log_start: (start != old).then_some(start),
            first_base: self.segments[0].base_offset(),
        }
    }

    /// Deletes the partition directory and everything in it.
    pub fn delete(self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }
}
