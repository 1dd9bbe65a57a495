//! Log compaction (`cleanup.policy=compact`): keep the latest record of every key in the
//! closed segments, preserving offsets (gaps are fine), and drop tombstones (null values)
//! once they are older than `delete.retention.ms`. The active segment is never touched.
//!
//! A pass has three steps so that the partition's lock is held only briefly:
//! 1. [`PartitionLog::plan_compaction`] (under the lock): picks the cleanable segments
//!    (closed, older than `min.compaction.lag.ms`), decides whether cleaning is due
//!    (dirty ratio against `min.cleanable.dirty.ratio`, or dirty records older than
//!    `max.compaction.lag.ms`), and groups consecutive segments so each group fits in
//!    `segment.bytes`.
//! 2. [`CompactionJob::run`] (no lock; closed segments are immutable): builds the map
//!    key → latest offset over every cleanable segment, then writes each group's kept
//!    batches to `<base>-<end>.log.cleaned` and fsyncs it. Batches that keep every record
//!    are copied verbatim; the others are rewritten with the same codec
//!    ([`runnel_protocol::batch::filter_batch`]).
//! 3. The install, itself in three steps so that the lock is not held across its file
//!    operations: [`PartitionLog::prepare_install`] (under the lock) keeps the groups whose
//!    segments are still in place; [`InstallJob::commit`] (no lock) renames each `.cleaned`
//!    to `.swap` and fsyncs the directory — the commit point — then deletes the replaced
//!    segments, renames the swap file to `<base>.log`, scans it and writes its indexes, and
//!    writes the cleaner checkpoint; [`PartitionLog::finish_install`] (under the lock)
//!    puts the new segments in place of the old ones (readers holding the old files keep
//!    reading them). See [`crate::recovery`], which finishes a committed swap and deletes
//!    an uncommitted `.cleaned` file at open: a `kill -9` at any moment leaves either the
//!    old segments or the cleaned one, never a half-written segment, and every key's
//!    latest value survives. [`PartitionLog::install_compaction`] does the three at once.
//!
//! Contract for callers that commit without the lock: nothing else may delete or truncate
//! this log's closed segments between `prepare_install` and `finish_install` (retention,
//! `delete_records_before`, `truncate_to`, `retire`): the broker serializes them with a
//! per-partition maintenance lock. Appends, reads and rolls may run meanwhile.
//!
//! Records without a key are dropped (Kafka's cleaner does the same); control batches are
//! kept. The key map holds whole keys (no hash collisions), so its memory grows with the
//! number of distinct keys in the closed segments.

use std::collections::HashMap;
use std::io::BufWriter;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use runnel_protocol::batch::{self, BatchHeader, Filtered, BATCH_HEADER_LEN};

use crate::config::CompactionConfig;
use crate::error::StorageError;
use crate::fsio::{self, Dir};
use crate::log::PartitionLog;
use crate::open_files::{Handles, OpenFiles};
use crate::recovery::{self, CLEANER_POINT_FILE};
use crate::segment::Segment;

/// What a compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
}

/// A closed segment as the plan saw it: its files are opened when the run reads it (one
/// at a time, through the cache of open segments), and its identity tells the install
/// whether the log still holds that very segment.
#[derive(Debug, Clone)]
struct SegRef {
    base: i64,
    size: u64,
    handles: Arc<Handles>,
}

/// Consecutive segments cleaned into one; `end` is the base offset of the segment after.
#[derive(Debug)]
struct Group {
    segs: Vec<SegRef>,
    end: i64,
}

/// The work of one compaction pass, planned under the log's lock and run without it.
#[derive(Debug)]
pub struct CompactionJob {
    /// The partition directory, held open: output files land in it even if it is renamed
    /// (retired by a topic deletion) meanwhile.
    dir: Arc<Dir>,
    groups: Vec<Group>,
    /// The first offset not cleaned (base of the first uncleanable segment).
    end: i64,
    /// Tombstones in batches whose `maxTimestamp` is below this are removed.
    tombstone_horizon: i64,
}

/// The cleaned files of a [`CompactionJob`], ready to install.
#[derive(Debug)]
pub struct CompactionOutput {
    dir: Arc<Dir>,
    /// Groups that changed, each with its `.cleaned` file written and fsynced.
    cleaned: Vec<Group>,
    end: i64,
    records_removed: u64,
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl PartitionLog {
    /// Plans a compaction pass at wall-clock time `now_ms` (see the module docs). `None`
    /// when nothing is cleanable or cleaning is not due; `force` ignores the dirty ratio.
    pub fn plan_compaction(
        &self,
        cfg: &CompactionConfig,
        now_ms: i64,
        force: bool,
    ) -> Option<CompactionJob> {
        if self.offline_reason().is_some() {
            return None;
        }
        let closed = &self.segments[..self.segments.len() - 1];
        let lag_horizon = now_ms.saturating_sub(ms(cfg.min_compaction_lag_ms));
        let n = if cfg.min_compaction_lag_ms == 0 {
            closed.len()
        } else {
            closed
                .iter()
                .take_while(|s| !matches!(s.max_time_entry(), Some((ts, _)) if ts > lag_horizon))
                .count()
        };
        let cleanable = &closed[..n];
        if cleanable.is_empty() {
            return None;
        }
        let end = self.segments[n].base_offset();
        let total: u64 = cleanable.iter().map(Segment::size).sum();
        let dirty_segs = || {
            cleanable
                .iter()
                .filter(|s| s.next_offset() > self.cleaner_point)
        };
        let dirty: u64 = dirty_segs().map(Segment::size).sum();
        let overdue_horizon = now_ms.saturating_sub(ms(cfg.max_compaction_lag_ms));
        let overdue =
            dirty_segs().any(|s| s.first_timestamp().is_some_and(|ts| ts < overdue_horizon));
        let ratio = if total == 0 {
            0.0
        } else {
            dirty as f64 / total as f64
        };
        let due = dirty > 0 && (ratio >= cfg.min_cleanable_dirty_ratio || overdue);
        if !force && !due {
            return None;
        }
        let mut groups = Vec::new();
        let mut cur: Vec<SegRef> = Vec::new();
        let mut cur_size = 0u64;
        for s in cleanable {
            if let Some(first) = cur.first() {
                if cur_size + s.size() > self.config.segment_bytes
                    || s.next_offset() - first.base > i64::from(u32::MAX)
                {
                    groups.push(Group {
                        segs: std::mem::take(&mut cur),
                        end: s.base_offset(),
                    });
                    cur_size = 0;
                }
            }
            cur_size += s.size();
            cur.push(SegRef {
                base: s.base_offset(),
                size: s.size(),
                handles: Arc::clone(s.handles()),
            });
        }
        groups.push(Group { segs: cur, end });
        let dir = match Dir::open(&self.dir) {
            Ok(d) => Arc::new(d),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot open the partition dir for compaction");
                return None;
            }
        };
        Some(CompactionJob {
            dir,
            groups,
            end,
            tombstone_horizon: now_ms.saturating_sub(ms(cfg.delete_retention_ms)),
        })
    }

    /// Installs what [`CompactionJob::run`] wrote (see the module docs), holding
    /// `&mut self` throughout. A group whose segments changed since the plan (retention,
    /// truncation) is discarded.
    pub fn install_compaction(
        &mut self,
        out: CompactionOutput,
    ) -> Result<CompactionStats, StorageError> {
        let mut job = self.prepare_install(out);
        let committed = job.commit();
        self.finish_install(job, committed)
    }

    /// Install step 1 (under the lock): keeps the cleaned groups whose segments are still
    /// in place; the others' files are removed.
    pub fn prepare_install(&self, out: CompactionOutput) -> InstallJob {
        let online = self.offline_reason().is_none() && out.dir.path == self.dir;
        let mut groups = Vec::new();
        for g in out.cleaned {
            if online && self.find_group(&g).is_some() {
                groups.push((g, None));
            } else {
                tracing::debug!(dir = %self.dir.display(), base = g.segs[0].base, "discarding a cleaned segment: the log changed");
                let _ = out.dir.remove(&recovery::swap_name(g.segs[0].base, g.end, "cleaned"));
            }
        }
        InstallJob {
            dir: out.dir,
            groups,
            end: out.end,
            cleaner_point: self.cleaner_point,
            interval: self.config.index_interval_bytes,
            records_removed: out.records_removed,
            before: (self.segments.len(), self.size_bytes()),
            files: Arc::clone(&self.files),
        }
    }

    /// Install step 3 (under the lock): puts the committed segments in place. A failed
    /// commit leaves the log as it was in memory; what was committed on disk is what a
    /// restart finds, so a group that committed on disk but cannot be placed (the contract
    /// was broken) takes the log offline rather than serve what the disk no longer has.
    pub fn finish_install(&mut self, job: InstallJob, committed: Result<(), StorageError>) -> Result<CompactionStats, StorageError> {
        for (g, seg) in job.groups {
            let Some(seg) = seg else { continue };
            match self.find_group(&g) {
                Some(i) => {
                    // The old segments' files are gone (or renamed over); dropping them
                    // closes them once no reader holds them.
                    self.segments.splice(i..i + g.segs.len(), [seg]);
                    self.check_invariants();
                }
                None => self.set_offline(format!("compacted segment {} was committed but the log changed meanwhile", g.segs[0].base)),
            }
        }
        committed?;
        self.check_online()?;
        self.cleaner_point = self.cleaner_point.max(job.end);
        Ok(CompactionStats {
            segments_before: job.before.0,
            segments_after: self.segments.len(),
            bytes_before: job.before.1,
            bytes_after: self.size_bytes(),
            records_removed: job.records_removed,
        })
    }

    /// Plans, runs and installs a compaction pass in one call (holding `&mut self`
    /// throughout). `None` if no pass was due.
    pub fn compact(
        &mut self,
        cfg: &CompactionConfig,
        now_ms: i64,
        force: bool,
    ) -> Result<Option<CompactionStats>, StorageError> {
        let Some(job) = self.plan_compaction(cfg, now_ms, force) else {
            return Ok(None);
        };
        let out = job.run()?;
        self.install_compaction(out).map(Some)
    }

    /// Index of the group's first segment if all its segments are still in place (same
    /// files) and the segment after it still starts at `g.end`.
    fn find_group(&self, g: &Group) -> Option<usize> {
        let i = self
            .segments
            .iter()
            .position(|s| s.base_offset() == g.segs[0].base)?;
        let same = g.segs.iter().enumerate().all(|(k, r)| {
            self.segments
                .get(i + k)
                .is_some_and(|s| s.base_offset() == r.base && Arc::ptr_eq(s.handles(), &r.handles))
        });
        let next = self.segments.get(i + g.segs.len()).map(Segment::base_offset);
        (same && next == Some(g.end)).then_some(i)
    }
}

/// A compaction install between [`PartitionLog::prepare_install`] and
/// [`PartitionLog::finish_install`]: its file operations run in [`InstallJob::commit`],
/// without the log's lock (see the module docs for the contract).
#[derive(Debug)]
pub struct InstallJob {
    dir: Arc<Dir>,
    /// The groups to install and, once committed, the segment that replaces each.
    groups: Vec<(Group, Option<Segment>)>,
    end: i64,
    cleaner_point: i64,
    interval: u64,
    records_removed: u64,
    before: (usize, u64),
    files: Arc<OpenFiles>,
}

impl InstallJob {
    /// Install step 2 (no lock): commits each group's cleaned file and opens it as a
    /// segment (a CRC scan that builds its indexes), then writes the cleaner checkpoint.
    /// Stops at the first error; groups not committed have their files removed.
    pub fn commit(&mut self) -> Result<(), StorageError> {
        let path = self.dir.path.clone();
        let mut failed = None;
        for (g, seg) in &mut self.groups {
            let base = g.segs[0].base;
            if failed.is_some() {
                let _ = self.dir.remove(&recovery::swap_name(base, g.end, "cleaned"));
                continue;
            }
            let committed = (|| -> Result<Segment, StorageError> {
                fsio::rename(&recovery::swap_path(&path, base, g.end, "cleaned"), &recovery::swap_path(&path, base, g.end, "swap"))?;
                recovery::sync_dir(&path)?;
                // Committed: from here on, `open` finishes the swap after a crash.
                recovery::complete_swap(&path, base, g.end)?;
                let mut seg = Segment::load(&path, base, false, self.interval, &self.files)?.0;
                seg.seal();
                Ok(seg)
            })();
            match committed {
                Ok(s) => *seg = Some(s),
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if self.end > self.cleaner_point {
            recovery::write_checkpoint(&path, CLEANER_POINT_FILE, self.end)?;
        }
        Ok(())
    }
}

/// Calls `f` with each whole batch of a closed segment, in order.
fn for_each_batch(
    s: &SegRef,
    mut f: impl FnMut(&BatchHeader, &[u8]) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let corrupt = |pos: u64, what: &str| {
        StorageError::Corrupt(format!("segment {} position {pos}: {what}", s.base))
    };
    let (mut pos, mut header, mut buf) = (0u64, [0u8; BATCH_HEADER_LEN], Vec::new());
    let file = s.handles.file()?;
    while pos < s.size {
        if s.size - pos < BATCH_HEADER_LEN as u64 {
            return Err(corrupt(pos, "torn batch header"));
        }
        file.read_exact_at(&mut header, pos)?;
        let h = BatchHeader::parse(&header).map_err(|e| corrupt(pos, &e.to_string()))?;
        let len = h.total_len() as u64;
        if pos + len > s.size {
            return Err(corrupt(pos, "batch past the segment end"));
        }
        buf.resize(len as usize, 0);
        file.read_exact_at(&mut buf, pos)?;
        f(&h, &buf)?;
        pos += len;
    }
    Ok(())
}

impl CompactionJob {
    /// Builds the key map and writes one fsynced `.cleaned` file per group that changes.
    /// Needs no lock: it reads only closed segments, through the files the plan captured.
    /// On error every file it wrote is removed.
    pub fn run(mut self) -> Result<CompactionOutput, StorageError> {
        let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
        for s in self.groups.iter().flat_map(|g| &g.segs) {
            for_each_batch(s, |h, bytes| {
                if h.is_control() {
                    return Ok(());
                }
                let (h, section) = batch::records_section(bytes)?;
                for r in batch::walk(&h, &section) {
                    let r = r?;
                    if let Some(k) = r.key {
                        match latest.get_mut(k) {
                            Some(o) => *o = r.offset,
                            None => {
                                latest.insert(k.to_vec(), r.offset);
                            }
                        }
                    }
                }
                Ok(())
            })?;
        }
        let mut cleaned = Vec::new();
        let mut removed = 0u64;
        let mut failure = None;
        for g in std::mem::take(&mut self.groups) {
            match self.write_group(&g, &latest, &mut removed) {
                Ok(true) => cleaned.push(g),
                Ok(false) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            for g in &cleaned {
                let _ = self.dir.remove(&recovery::swap_name(g.segs[0].base, g.end, "cleaned"));
            }
            return Err(e);
        }
        Ok(CompactionOutput {
            dir: self.dir,
            cleaned,
            end: self.end,
            records_removed: removed,
        })
    }

    /// Writes the kept batches of `g` to its `.cleaned` file and fsyncs it. Returns false
    /// (and writes nothing) when the group would come out unchanged.
    fn write_group(
        &self,
        g: &Group,
        latest: &HashMap<Vec<u8>, i64>,
        removed: &mut u64,
    ) -> Result<bool, StorageError> {
        let name = recovery::swap_name(g.segs[0].base, g.end, "cleaned");
        let mut changed = g.segs.len() > 1;
        let mut group_removed = 0u64;
        let written = (|| -> Result<(), StorageError> {
            let mut w = BufWriter::with_capacity(1 << 20, self.dir.create(&name)?);
            for s in &g.segs {
                for_each_batch(s, |h, bytes| {
                    let expired = h.max_timestamp < self.tombstone_horizon;
                    let filtered = batch::filter_batch(bytes, |r| {
                        let latest = r.key.is_some_and(|k| latest.get(k) == Some(&r.offset));
                        let keep = latest && !(r.value.is_none() && expired);
                        group_removed += u64::from(!keep);
                        keep
                    })?;
                    match filtered {
                        Filtered::Unchanged => fsio::write_all(&mut w, bytes)?,
                        Filtered::Empty => changed = true,
                        Filtered::Rewritten(b) => {
                            changed = true;
                            fsio::write_all(&mut w, &b)?;
                        }
                    }
                    Ok(())
                })?;
            }
            let file = w.into_inner().map_err(|e| e.into_error())?;
            fsio::sync_all(&file)?;
            Ok(())
        })();
        if written.is_err() || !changed {
            let _ = self.dir.remove(&name);
        }
        written?;
        *removed += group_removed;
        Ok(changed)
    }
}
