//! One segment: a `.log` file of whole v2 batches with dense offsets from `base_offset`,
//! plus its `.index` and `.timeindex` (see [`crate::index`]).
//!
//! Owns: the segment's files, appending whole batches in one write, finding the batch that
//! holds an offset or a timestamp, truncating at a batch boundary, and loading a segment
//! from disk (trusting its indexes, or rebuilding them with a CRC-checked scan that cuts
//! the file at the first torn or corrupt batch). Never decides when to roll or flush:
//! that is [`crate::log::PartitionLog`]'s job.
//!
//! Invariants: `[base_offset, next_offset)` are the offsets stored; batches are laid end
//! to end in `[0, size)`; batch offsets strictly increase: an appended batch starts at the
//! previous batch's last offset + 1, and a compacted segment may have gaps between batches
//! (and before its first batch), never overlaps.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use runnel_protocol::batch::{self, BatchHeader, BATCH_HEADER_LEN, MAGIC_V2};

use crate::error::StorageError;
use crate::fsio;
use crate::index::{self, IndexFile, OffsetEntry, TimeEntry};
use crate::open_files::{Handles, OpenFiles, SealedIndexes, SegmentFile};
use crate::txn_index::{AbortedTxn, TxnIndex, TXN_INDEX_EXT};

pub(crate) const LOG_EXT: &str = "log";
pub(crate) const INDEX_EXT: &str = "index";
pub(crate) const TIME_INDEX_EXT: &str = "timeindex";

/// `dir/<20-digit base offset>.<ext>`, as Kafka names segment files.
pub(crate) fn segment_path(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// What loading found at the end of the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoadOutcome {
    /// The file ended on a batch boundary.
    Clean,
    /// A torn or corrupt batch was found; the file was cut there.
    Truncated,
}

/// Index entries to add for a run of batches. Both indexes gain an entry only once per
/// `index.interval.bytes` of log (as in Kafka): the time index's entry is the largest
/// `maxTimestamp` so far, if it grew. Batches are the client's, so an entry per batch
/// would let tiny batches turn a large share of the bytes written into index.
#[derive(Debug, Default)]
struct IndexPlan {
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
    bytes_since_index: u64,
    last_ts: Option<i64>,
    /// The largest batch `maxTimestamp` so far and the first batch (relative offset)
    /// that reached it.
    max: Option<(i64, u32)>,
    /// The first batch's `maxTimestamp`, if the plan saw the segment's first batch.
    first_ts: Option<i64>,
}

impl IndexPlan {
    fn add(&mut self, base: i64, pos: u64, h: &BatchHeader, interval: u64) {
        let rel = (h.base_offset - base) as u32;
        if pos == 0 {
            self.first_ts = Some(h.max_timestamp);
        }
        if !matches!(self.max, Some((t, _)) if h.max_timestamp <= t) {
            self.max = Some((h.max_timestamp, rel));
        }
        if pos > 0 && self.bytes_since_index >= interval {
            self.offsets.push(OffsetEntry {
                rel_offset: rel,
                position: pos as u32,
            });
            self.bytes_since_index = 0;
            if let Some((timestamp, rel_offset)) = self.max.filter(|(t, _)| !matches!(self.last_ts, Some(l) if *t <= l)) {
                self.times.push(TimeEntry { timestamp, rel_offset });
                self.last_ts = Some(timestamp);
            }
        }
        self.bytes_since_index += h.total_len() as u64;
    }
}

/// A log segment (see the module docs for its invariants).
#[derive(Debug)]
pub(crate) struct Segment {
    dir: PathBuf,
    base_offset: i64,
    /// The log file and, once sealed, the index entries: opened and loaded on demand,
    /// closed when idle (see [`crate::open_files`]).
    handles: Arc<Handles>,
    /// Not the active segment: its index entries are in `handles`, not in the
    /// `IndexFile`s (which then hold none).
    sealed: bool,
    size: u64,
    next_offset: i64,
    offset_index: IndexFile<OffsetEntry>,
    time_index: IndexFile<TimeEntry>,
    bytes_since_index: u64,
    /// The largest batch `maxTimestamp` and the first batch offset that reached it (the
    /// time index is sparse: its last entry may lag the batches after it).
    max_ts: Option<(i64, i64)>,
    /// The first batch's `maxTimestamp`.
    first_ts: Option<i64>,
    first_append: Option<SystemTime>,
    /// See [`Segment::torn`].
    torn: bool,
    /// Aborted transactions whose marker is in this segment (`.txnindex`).
    txn_index: TxnIndex,
    /// The active segment's latest batches, `(last offset, position)` in append order: a
    /// consumer at the tail asks for an offset appended moments ago, found here without
    /// reading headers from the file one by one from the last index entry (a `pread` each,
    /// up to `index.interval.bytes` / 61 of them). At most [`RECENT_BATCHES`]; empty when
    /// sealed, loaded or cut.
    recent: std::collections::VecDeque<(i64, u32)>,
}

/// How many of the latest batches the active segment remembers the positions of (16 bytes
/// each): more than one default `index.interval.bytes` of the smallest batches.
pub(crate) const RECENT_BATCHES: usize = 128;

fn handles_for(dir: &Path, base_offset: i64, files: &Arc<OpenFiles>) -> Arc<Handles> {
    let path = |ext| segment_path(dir, base_offset, ext);
    Handles::new(files, path(LOG_EXT), path(INDEX_EXT), path(TIME_INDEX_EXT))
}

fn open_rw(path: &Path, truncate: bool) -> io::Result<File> {
    fsio::open(
        path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(truncate),
    )
}

impl Segment {
    /// Creates an empty segment (overwriting files of the same name). The `.log` file
    /// comes last: after a failure there is no segment, only index files that the next
    /// open deletes as orphans.
    pub fn create(dir: &Path, base_offset: i64, files: &Arc<OpenFiles>) -> io::Result<Self> {
        let offset_index = IndexFile::create(&segment_path(dir, base_offset, INDEX_EXT), Vec::new())?;
        let time_index = IndexFile::create(&segment_path(dir, base_offset, TIME_INDEX_EXT), Vec::new())?;
        let log = open_rw(&segment_path(dir, base_offset, LOG_EXT), true)?;
        let handles = handles_for(dir, base_offset, files);
        handles.adopt(log);
        Ok(Segment {
            dir: dir.to_path_buf(),
            base_offset,
            handles,
            sealed: false,
            size: 0,
            next_offset: base_offset,
            offset_index,
            time_index,
            bytes_since_index: 0,
            max_ts: None,
            first_ts: None,
            first_append: None,
            torn: false,
            txn_index: TxnIndex::default(),
            recent: Default::default(),
        })
    }

    /// Opens an existing segment. A `trusted` segment (wholly below the recovery point)
    /// keeps its indexes if they pass sanity checks and a header walk from the last index
    /// entry ends exactly at the file end; otherwise, or if not trusted, the whole file is
    /// scanned with CRC checks, cut at the first bad batch, and the indexes are rebuilt.
    pub fn load(
        dir: &Path,
        base_offset: i64,
        trusted: bool,
        interval: u64,
        files: &Arc<OpenFiles>,
    ) -> Result<(Self, LoadOutcome), StorageError> {
        let log = open_rw(&segment_path(dir, base_offset, LOG_EXT), false)?;
        let meta = log.metadata()?;
        let handles = handles_for(dir, base_offset, files);
        // Held until loaded: the cache may close the segment as soon as it is idle.
        let _log = handles.adopt(log);
        let first_append = (meta.len() > 0)
            .then(|| meta.created().or_else(|_| meta.modified()).ok())
            .flatten();
        let index_path = segment_path(dir, base_offset, INDEX_EXT);
        let time_path = segment_path(dir, base_offset, TIME_INDEX_EXT);
        let (offset_index, time_index) = if trusted {
            (IndexFile::load(&index_path)?, IndexFile::load(&time_path)?)
        } else {
            (None, None)
        };
        let mut seg = Segment {
            dir: dir.to_path_buf(),
            base_offset,
            handles,
            sealed: false,
            size: meta.len(),
            next_offset: base_offset,
            offset_index: match offset_index {
                Some(i) => i,
                None => IndexFile::create(&index_path, Vec::new())?,
            },
            time_index: match time_index {
                Some(i) => i,
                None => IndexFile::create(&time_path, Vec::new())?,
            },
            bytes_since_index: 0,
            max_ts: None,
            first_ts: None,
            first_append,
            torn: false,
            txn_index: TxnIndex::default(),
            recent: Default::default(),
        };
        let outcome = if trusted && seg.indexes_match_log()? {
            LoadOutcome::Clean
        } else {
            tracing::info!(dir = %dir.display(), base_offset, trusted, "scanning segment and rebuilding its indexes");
            seg.recover(interval, trusted)?
        };
        seg.txn_index = TxnIndex::load(dir, base_offset, seg.next_offset)?;
        Ok((seg, outcome))
    }

    /// Checks loaded indexes against the log and sets `next_offset` from a header walk.
    fn indexes_match_log(&mut self) -> Result<bool, StorageError> {
        let size = self.size;
        if self
            .offset_index
            .entries()
            .iter()
            .any(|e| u64::from(e.position) >= size)
        {
            return Ok(false);
        }
        let Some((expected, max_ts)) = self.walk_tail()? else {
            return Ok(false);
        };
        let rel_end = expected - self.base_offset;
        if self
            .time_index
            .last()
            .is_some_and(|e| i64::from(e.rel_offset) >= rel_end)
            || (size == 0 && !self.time_index.entries().is_empty())
        {
            return Ok(false);
        }
        self.next_offset = expected;
        self.max_ts = max_ts;
        self.first_ts = if size > 0 { Some(self.read_header(0)?.max_timestamp) } else { None };
        self.bytes_since_index = size
            - self
                .offset_index
                .last()
                .map_or(0, |e| u64::from(e.position));
        Ok(true)
    }

    /// Walks the batch headers from the last offset-index entry to the end of the file.
    /// `None` if they do not chain (a bad header, offsets going back, a batch past the
    /// end); else the offset after the last batch and the segment's largest
    /// `maxTimestamp` with the first batch that reached it: the time index's last entry
    /// covers every batch up to the last offset-index entry, the walk the rest.
    fn walk_tail(&self) -> Result<Option<(i64, Option<(i64, i64)>)>, StorageError> {
        let size = self.size;
        let (mut pos, mut expected) = match self.offset_index.last() {
            Some(e) => (
                u64::from(e.position),
                self.base_offset + i64::from(e.rel_offset),
            ),
            None => (0, self.base_offset),
        };
        let mut max = self
            .time_index
            .last()
            .map(|e| (e.timestamp, self.base_offset + i64::from(e.rel_offset)));
        let mut header = [0u8; BATCH_HEADER_LEN];
        let log = self.file()?;
        while pos < size {
            if size - pos < BATCH_HEADER_LEN as u64 {
                return Ok(None);
            }
            log.read_exact_at(&mut header, pos)?;
            let Ok(h) = BatchHeader::parse(&header) else {
                return Ok(None);
            };
            let end = pos + h.total_len() as u64;
            if h.magic != MAGIC_V2
                || h.base_offset < expected
                || h.last_offset_delta < 0
                || end > size
            {
                return Ok(None);
            }
            if !matches!(max, Some((t, _)) if h.max_timestamp <= t) {
                max = Some((h.max_timestamp, h.base_offset));
            }
            expected = h.last_offset() + 1;
            pos = end;
        }
        Ok(Some((expected, max)))
    }

    /// Scans the whole file with CRC checks, cuts it at the first bad batch and rebuilds
    /// both indexes.
    /// With `keep_cut` (damage in data that was flushed, not a torn tail) the bytes cut
    /// off are first copied to `<base>.log.damaged-<position>` for an operator.
    fn recover(&mut self, interval: u64, keep_cut: bool) -> Result<LoadOutcome, StorageError> {
        let (mut pos, mut expected) = (0u64, self.base_offset);
        let mut plan = IndexPlan::default();
        let mut buf = Vec::new();
        let mut header = [0u8; BATCH_HEADER_LEN];
        let log = self.file()?;
        let cut = loop {
            if pos == self.size {
                break None;
            }
            if self.size - pos < BATCH_HEADER_LEN as u64 {
                break Some(pos);
            }
            log.read_exact_at(&mut header, pos)?;
            let Ok(h) = BatchHeader::parse(&header) else {
                break Some(pos);
            };
            let len = h.total_len() as u64;
            let rel_last = h.last_offset() - self.base_offset;
            if pos + len > self.size
                || h.base_offset < expected
                || h.last_offset_delta < 0
                || rel_last > i64::from(u32::MAX)
                || pos + len > u64::from(u32::MAX)
            {
                break Some(pos);
            }
            buf.resize(len as usize, 0);
            log.read_exact_at(&mut buf, pos)?;
            if let Err(e) = batch::check_integrity(&buf) {
                tracing::warn!(base_offset = h.base_offset, pos, error = %e, "corrupt batch");
                break Some(pos);
            }
            plan.add(self.base_offset, pos, &h, interval);
            expected = h.last_offset() + 1;
            pos += len;
        };
        if let Some(at) = cut {
            tracing::warn!(dir = %self.dir.display(), segment = self.base_offset, at, size = self.size, "truncating torn or corrupt segment tail");
            if keep_cut {
                let mut tail = vec![0u8; (self.size - at) as usize];
                log.read_exact_at(&mut tail, at)?;
                let kept = self.dir.join(format!("{:020}.{LOG_EXT}.damaged-{at}", self.base_offset));
                std::fs::write(&kept, &tail)?;
                tracing::error!(file = %kept.display(), bytes = tail.len(), "damaged flushed data moved aside");
            }
            fsio::set_len(&log, at)?;
            fsio::sync_all(&log)?;
            self.size = at;
        }
        self.offset_index = IndexFile::create(
            &segment_path(&self.dir, self.base_offset, INDEX_EXT),
            plan.offsets,
        )?;
        self.time_index = IndexFile::create(
            &segment_path(&self.dir, self.base_offset, TIME_INDEX_EXT),
            plan.times,
        )?;
        self.next_offset = expected;
        self.bytes_since_index = plan.bytes_since_index;
        self.max_ts = plan.max.map(|(t, rel)| (t, self.base_offset + i64::from(rel)));
        self.first_ts = plan.first_ts;
        if self.size == 0 {
            self.first_append = None;
        }
        Ok(if cut.is_some() {
            LoadOutcome::Truncated
        } else {
            LoadOutcome::Clean
        })
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    /// One past the last offset stored here (`base_offset` when empty).
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    /// The log file, opened again if the cache closed it.
    pub fn file(&self) -> io::Result<Arc<SegmentFile>> {
        self.handles.file()
    }
    /// What the segment holds open: its identity (compaction checks that a segment is
    /// still the one it read) and its files for a flush or a compaction.
    pub(crate) fn handles(&self) -> &Arc<Handles> {
        &self.handles
    }

    /// Makes this segment sealed (no longer the active one): its index entries move to
    /// the cache of open segments, which may drop them when idle and load them again.
    pub fn seal(&mut self) {
        if !self.sealed {
            let indexes = SealedIndexes { offsets: self.offset_index.take_entries(), times: self.time_index.take_entries() };
            self.handles.set_indexes(indexes);
            self.sealed = true;
            self.recent = Default::default();
        }
    }

    /// Makes a sealed segment the active one again (a truncation dropped the ones after
    /// it): its index entries come back from the cache.
    fn unseal(&mut self) {
        if self.sealed {
            let i = self.handles.take_indexes(self.size);
            self.offset_index.set_entries(i.offsets);
            self.time_index.set_entries(i.times);
            self.sealed = false;
        }
    }

    /// Records whether the segment holds data not yet fsynced (the cache closes such a
    /// segment last).
    pub fn set_dirty(&self, dirty: bool) {
        self.handles.set_dirty(dirty);
    }

    /// The last offset-index entry at or below relative offset `rel`.
    fn offset_floor(&self, rel: u32) -> Option<OffsetEntry> {
        if self.sealed {
            index::floor(&self.handles.indexes(self.size).offsets, rel)
        } else {
            self.offset_index.floor(rel)
        }
    }

    /// The last time-index entry below `ts`.
    pub(crate) fn time_last_below(&self, ts: i64) -> Option<TimeEntry> {
        if self.sealed {
            index::last_below(&self.handles.indexes(self.size).times, ts)
        } else {
            self.time_index.last_below(ts)
        }
    }
    pub fn first_append(&self) -> Option<SystemTime> {
        self.first_append
    }

    /// True if `extra` more bytes up to `last_offset` still fit the u32 positions and
    /// relative offsets of the indexes.
    pub fn can_address(&self, extra: u64, last_offset: i64) -> bool {
        self.size + extra <= u64::from(u32::MAX)
            && last_offset - self.base_offset <= i64::from(u32::MAX)
    }

    /// Appends whole batches (`data`, with each batch's header and range in `data`) in one
    /// write, then their index entries. On any error, files are cut back and nothing
    /// changes. Callers guarantee offsets continue from `next_offset` and fit (`can_address`).
    pub fn append(
        &mut self,
        data: &[u8],
        batches: &[(BatchHeader, std::ops::Range<usize>)],
        interval: u64,
    ) -> io::Result<()> {
        debug_assert_eq!(
            batches.first().map(|b| b.0.base_offset),
            Some(self.next_offset),
            "offsets must be dense"
        );
        debug_assert!(!self.sealed, "only the active segment is appended to");
        let log = self.file()?;
        let start = self.size;
        let mut plan = IndexPlan {
            bytes_since_index: self.bytes_since_index,
            last_ts: self.time_index.last().map(|e| e.timestamp),
            max: self.max_ts.map(|(t, o)| (t, (o - self.base_offset) as u32)),
            first_ts: self.first_ts,
            ..IndexPlan::default()
        };
        for (h, range) in batches {
            plan.add(self.base_offset, start + range.start as u64, h, interval);
        }
        if let Err(e) = fsio::write_all_at(&log, data, start) {
            self.cut_back(&log, start);
            return Err(e);
        }
        let (n_offsets, n_times) = (
            self.offset_index.entries().len(),
            self.time_index.entries().len(),
        );
        let indexed = self
            .offset_index
            .append(&plan.offsets)
            .and_then(|()| self.time_index.append(&plan.times));
        if let Err(e) = indexed {
            let _ = self.offset_index.truncate(n_offsets);
            let _ = self.time_index.truncate(n_times);
            self.cut_back(&log, start);
            return Err(e);
        }
        self.size += data.len() as u64;
        self.bytes_since_index = plan.bytes_since_index;
        self.max_ts = plan.max.map(|(t, rel)| (t, self.base_offset + i64::from(rel)));
        self.first_ts = plan.first_ts;
        if let Some((h, _)) = batches.last() {
            self.next_offset = h.last_offset() + 1;
        }
        for (h, range) in batches.iter().rev().take(RECENT_BATCHES).rev() {
            if self.recent.len() == RECENT_BATCHES {
                self.recent.pop_front();
            }
            // `can_address` keeps positions within u32.
            self.recent.push_back((h.last_offset(), (start + range.start as u64) as u32));
        }
        self.first_append.get_or_insert_with(SystemTime::now);
        self.handles.set_dirty(true);
        Ok(())
    }

    /// Cuts the log file back to `len` after a failed append; if even that fails, the file
    /// may hold bytes past `size` and [`Segment::torn`] says so.
    fn cut_back(&mut self, log: &File, len: u64) {
        if let Err(e) = fsio::set_len(log, len) {
            tracing::error!(dir = %self.dir.display(), segment = self.base_offset, error = %e, "could not cut back a failed append");
            self.torn = true;
        }
    }

    /// True after a failed append could not be cut back: the file holds bytes past `size`.
    pub fn torn(&self) -> bool {
        self.torn
    }

    /// Reads and checks the batch header at `pos`.
    pub fn read_header(&self, pos: u64) -> Result<BatchHeader, StorageError> {
        let corrupt = |what: &str| {
            StorageError::Corrupt(format!(
                "segment {} position {pos}: {what}",
                self.base_offset
            ))
        };
        if pos + BATCH_HEADER_LEN as u64 > self.size {
            return Err(corrupt("batch header past the end"));
        }
        let mut header = [0u8; BATCH_HEADER_LEN];
        self.file()?.read_exact_at(&mut header, pos)?;
        let h = BatchHeader::parse(&header).map_err(|e| corrupt(&e.to_string()))?;
        if pos + h.total_len() as u64 > self.size {
            return Err(corrupt("batch past the end"));
        }
        Ok(h)
    }

    /// The whole batch at `pos`.
    pub fn read_batch(&self, pos: u64, h: &BatchHeader) -> Result<Vec<u8>, StorageError> {
        let mut buf = vec![0u8; h.total_len()];
        self.file()?.read_exact_at(&mut buf, pos)?;
        Ok(buf)
    }

    /// Position and header of the batch containing `offset`, if stored here.
    pub fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, StorageError> {
        if offset < self.base_offset || offset >= self.next_offset {
            return Ok(None);
        }
        if let Some(pos) = self.recent_position(offset) {
            return Ok(Some((pos, self.read_header(pos)?)));
        }
        let rel = (offset - self.base_offset) as u32;
        let mut pos = self.offset_floor(rel).map_or(0, |e| u64::from(e.position));
        while pos < self.size {
            let h = self.read_header(pos)?;
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Position of the batch containing `offset`, if stored here: from the latest batches
    /// without reading the file, else as [`Self::find_batch`] finds it.
    pub fn find_position(&self, offset: i64) -> Result<Option<u64>, StorageError> {
        if offset < self.base_offset || offset >= self.next_offset {
            return Ok(None);
        }
        match self.recent_position(offset) {
            Some(pos) => Ok(Some(pos)),
            None => Ok(self.find_batch(offset)?.map(|(pos, _)| pos)),
        }
    }

    /// The position of the first batch whose last offset is at least `offset` (as
    /// [`Self::find_batch`] finds it), if that is one of the latest batches: certain when
    /// `offset` is at least the oldest remembered batch's last offset, since every batch
    /// before that one ends below it.
    fn recent_position(&self, offset: i64) -> Option<u64> {
        let &(oldest_last, _) = self.recent.front()?;
        if offset < oldest_last {
            return None;
        }
        let i = self.recent.partition_point(|&(last, _)| last < offset);
        self.recent.get(i).map(|&(_, pos)| u64::from(pos))
    }

    /// The last batch boundary in `(from, limit]` known from the offset index, if any:
    /// lets a read skip header-by-header scanning.
    pub fn indexed_boundary(&self, from: u64, limit: u64) -> Option<u64> {
        let entry = if self.sealed {
            index::floor_position(&self.handles.indexes(self.size).offsets, limit)
        } else {
            self.offset_index.floor_position(limit)
        };
        entry.map(|e| u64::from(e.position)).filter(|&p| p > from)
    }

    /// Cuts the segment before the batch containing `offset` (dropping that whole batch).
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        self.unseal();
        if offset >= self.next_offset {
            return Ok(());
        }
        let (pos, new_next) = match self.find_batch(offset)? {
            Some((pos, h)) if offset > self.base_offset => (pos, h.base_offset),
            _ => (0, self.base_offset),
        };
        let log = self.file()?;
        self.recent.clear();
        fsio::set_len(&log, pos)?;
        let keep = self
            .offset_index
            .entries()
            .partition_point(|e| u64::from(e.position) < pos);
        self.offset_index.truncate(keep)?;
        let rel_end = new_next - self.base_offset;
        let keep = self
            .time_index
            .entries()
            .partition_point(|e| i64::from(e.rel_offset) < rel_end);
        self.time_index.truncate(keep)?;
        self.txn_index.truncate_to(new_next)?;
        self.size = pos;
        self.next_offset = new_next;
        self.bytes_since_index = pos
            - self
                .offset_index
                .last()
                .map_or(0, |e| u64::from(e.position));
        if pos == 0 {
            self.first_append = None;
            self.first_ts = None;
        }
        self.max_ts = match self.walk_tail()? {
            Some((_, max)) => max,
            None => return Err(StorageError::Corrupt(format!("segment {}: batches do not chain after truncation", self.base_offset))),
        };
        Ok(())
    }

    /// The paths of the index files (the `.txnindex` only once it has entries).
    pub fn index_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = [INDEX_EXT, TIME_INDEX_EXT].iter().map(|ext| segment_path(&self.dir, self.base_offset, ext)).collect();
        if !self.txn_index.entries().is_empty() {
            paths.push(segment_path(&self.dir, self.base_offset, TXN_INDEX_EXT));
        }
        paths
    }

    /// The aborted transactions whose marker is in this segment, in marker order.
    pub fn aborted_txns(&self) -> &[AbortedTxn] {
        self.txn_index.entries()
    }

    /// Indexes an aborted transaction whose marker this segment holds.
    pub fn add_aborted_txn(&mut self, e: AbortedTxn) -> io::Result<()> {
        self.txn_index.append(&self.dir, self.base_offset, e)
    }

    /// Removes the segment's files.
    pub fn delete(self) -> io::Result<()> {
        for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT, TXN_INDEX_EXT] {
            match fsio::remove_file(&segment_path(&self.dir, self.base_offset, ext)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

mod timestamps;

#[cfg(test)]
mod tests;
