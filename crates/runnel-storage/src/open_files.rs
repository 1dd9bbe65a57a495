//! The bounded cache of what segments hold open: each segment's `.log` descriptor and, for
//! a sealed segment (not the active one), its index entries. Both are taken on demand and
//! dropped when the segment has been idle longest, so a broker holds at most `capacity`
//! segments open however many partitions and segments a previous run left in its data
//! dir, and the indexes of sealed segments are not all in RAM.
//!
//! Owns: opening a segment's log file, loading a sealed segment's indexes, the
//! least-recently-used order, and counting the descriptors alive ([`OpenFiles::open_files`],
//! exported in `/metrics`). Never decides what a segment holds: that stays in
//! [`crate::segment`], and the cache only keeps copies of what is on disk.
//!
//! Eviction prefers segments with no unflushed data: a segment with dirty pages is closed
//! only when every clean one is already closed. Closing one is still safe then: Linux
//! (4.16 and later) reports a writeback error that nobody has seen to an `fsync` through a
//! descriptor opened after it, so the next flush, which reopens the file, still fails.
//! A descriptor a reader still holds (a fetch being sent, a flush) stays open until that
//! reader drops it; the cache then only forgets it, so the count may pass the capacity by
//! what is in flight.
//!
//! The descriptor table is one per process, and so is the budget:
//! [`OpenFiles::process`] is the instance every log opened with [`crate::PartitionLog::open`]
//! shares; tests and embedders may pass their own to `open_with`.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use crate::fsio;
use crate::index::{IndexFile, OffsetEntry, TimeEntry};

/// A segment's `.log` file, counted while open.
#[derive(Debug)]
pub struct SegmentFile {
    file: File,
    cache: Arc<OpenFiles>,
}

impl Deref for SegmentFile {
    type Target = File;
    fn deref(&self) -> &File {
        &self.file
    }
}

impl Drop for SegmentFile {
    fn drop(&mut self) {
        self.cache.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The index entries of a sealed segment.
#[derive(Debug, Default)]
pub(crate) struct SealedIndexes {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
}

#[derive(Debug, Default)]
struct Loaded {
    file: Option<Arc<SegmentFile>>,
    indexes: Option<Arc<SealedIndexes>>,
}

/// What one segment may hold open, shared by the segment and (weakly) the cache.
#[derive(Debug)]
pub(crate) struct Handles {
    id: u64,
    log: PathBuf,
    index: PathBuf,
    time_index: PathBuf,
    cache: Arc<OpenFiles>,
    /// The segment has data not yet fsynced: closed last.
    dirty: AtomicBool,
    loaded: Mutex<Loaded>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Handles {
    pub fn new(cache: &Arc<OpenFiles>, log: PathBuf, index: PathBuf, time_index: PathBuf) -> Arc<Self> {
        Arc::new(Handles {
            id: cache.next_id.fetch_add(1, Ordering::Relaxed),
            log,
            index,
            time_index,
            cache: Arc::clone(cache),
            dirty: AtomicBool::new(false),
            loaded: Mutex::default(),
        })
    }

    /// Registers an already opened file (a segment just created or loaded).
    pub fn adopt(self: &Arc<Self>, file: File) -> Arc<SegmentFile> {
        let f = Arc::new(self.cache.counted(file));
        lock(&self.loaded).file = Some(Arc::clone(&f));
        self.cache.touch(self);
        f
    }

    /// The log file, opened (read-write) if it was closed.
    pub fn file(self: &Arc<Self>) -> io::Result<Arc<SegmentFile>> {
        let mut loaded = lock(&self.loaded);
        let f = match &loaded.file {
            Some(f) => Arc::clone(f),
            None => {
                let file = fsio::open(&self.log, OpenOptions::new().read(true).write(true))?;
                self.cache.reopened.fetch_add(1, Ordering::Relaxed);
                let f = Arc::new(self.cache.counted(file));
                loaded.file = Some(Arc::clone(&f));
                f
            }
        };
        drop(loaded);
        self.cache.touch(self);
        Ok(f)
    }

    /// Keeps a sealed segment's index entries (evictable from now on).
    pub fn set_indexes(self: &Arc<Self>, indexes: SealedIndexes) {
        lock(&self.loaded).indexes = Some(Arc::new(indexes));
        self.cache.touch(self);
    }

    /// Takes the sealed index entries back (the segment becomes active again), loading
    /// them if they were dropped.
    pub fn take_indexes(self: &Arc<Self>, size: u64) -> SealedIndexes {
        let held = lock(&self.loaded).indexes.take();
        match held {
            Some(i) => Arc::try_unwrap(i).unwrap_or_else(|i| SealedIndexes { offsets: i.offsets.clone(), times: i.times.clone() }),
            None => self.read_indexes(size),
        }
    }

    /// A sealed segment's index entries, loaded from its files if they were dropped. An
    /// index that is missing or damaged now reads as empty (with a warning): indexes are
    /// only where a scan starts, and an empty one makes it start at the segment's head.
    pub fn indexes(self: &Arc<Self>, size: u64) -> Arc<SealedIndexes> {
        let mut loaded = lock(&self.loaded);
        let i = match &loaded.indexes {
            Some(i) => Arc::clone(i),
            None => {
                let i = Arc::new(self.read_indexes(size));
                loaded.indexes = Some(Arc::clone(&i));
                i
            }
        };
        drop(loaded);
        self.cache.touch(self);
        i
    }

    fn read_indexes(&self, size: u64) -> SealedIndexes {
        fn read<E: crate::index::Entry>(path: &std::path::Path) -> Vec<E> {
            match IndexFile::<E>::load(path) {
                Ok(Some(f)) => f.into_entries(),
                Ok(None) => {
                    tracing::warn!(file = %path.display(), "index missing or damaged; scanning the segment from its start");
                    Vec::new()
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot read an index; scanning the segment from its start");
                    Vec::new()
                }
            }
        }
        self.cache.index_loads.fetch_add(1, Ordering::Relaxed);
        let mut offsets: Vec<OffsetEntry> = read(&self.index);
        offsets.retain(|e| u64::from(e.position) < size);
        SealedIndexes { offsets, times: read(&self.time_index) }
    }

    pub fn set_dirty(&self, dirty: bool) {
        self.dirty.store(dirty, Ordering::Relaxed);
    }

    /// Drops what is loaded (a reader's clone of the file stays open until it drops it).
    fn evict(&self) {
        let mut loaded = lock(&self.loaded);
        loaded.file = None;
        loaded.indexes = None;
    }
}

impl Drop for Handles {
    fn drop(&mut self) {
        self.cache.forget(self.id);
    }
}

#[derive(Debug, Default)]
struct Lru {
    tick: u64,
    /// Segment id → (its last use, the segment).
    entries: HashMap<u64, (u64, Weak<Handles>)>,
    /// Last use → segment id, oldest first.
    order: BTreeMap<u64, u64>,
}

/// The process's budget of open segments (see the module docs).
#[derive(Debug)]
pub struct OpenFiles {
    capacity: AtomicUsize,
    lru: Mutex<Lru>,
    open: AtomicUsize,
    reopened: AtomicU64,
    index_loads: AtomicU64,
    next_id: AtomicU64,
}

impl OpenFiles {
    /// A cache that keeps at most `capacity` segments open (at least 1).
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(OpenFiles {
            capacity: AtomicUsize::new(capacity.max(1)),
            lru: Mutex::default(),
            open: AtomicUsize::new(0),
            reopened: AtomicU64::new(0),
            index_loads: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
        })
    }

    /// The instance shared by every log of this process, sized by
    /// [`default_capacity`](Self::default_capacity) until [`set_capacity`](Self::set_capacity).
    pub fn process() -> &'static Arc<OpenFiles> {
        static PROCESS: OnceLock<Arc<OpenFiles>> = OnceLock::new();
        PROCESS.get_or_init(|| OpenFiles::new(Self::default_capacity()))
    }

    /// Half the process's soft `RLIMIT_NOFILE` (the other half is for connections and
    /// everything else), at least 16, at most 100,000.
    pub fn default_capacity() -> usize {
        let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct we pass.
        let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 { rl.rlim_cur } else { 1024 };
        usize::try_from(soft / 2).unwrap_or(usize::MAX).clamp(16, 100_000)
    }

    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Changes the capacity; segments over it are closed at the next use of any.
    pub fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity.max(1), Ordering::Relaxed);
    }

    /// Segment `.log` descriptors open now (held by the cache or by readers).
    pub fn open_files(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Segments holding a descriptor or index entries in the cache.
    pub fn cached_segments(&self) -> usize {
        lock(&self.lru).entries.len()
    }

    /// How many times a closed segment file was opened again, and sealed indexes loaded
    /// from their files.
    pub fn reloads(&self) -> (u64, u64) {
        (self.reopened.load(Ordering::Relaxed), self.index_loads.load(Ordering::Relaxed))
    }

    fn counted(self: &Arc<Self>, file: File) -> SegmentFile {
        self.open.fetch_add(1, Ordering::Relaxed);
        SegmentFile { file, cache: Arc::clone(self) }
    }

    /// Marks `h` as just used, then closes the least recently used segments over the
    /// capacity: clean ones first, then dirty ones.
    fn touch(&self, h: &Arc<Handles>) {
        let victims = {
            let mut lru = lock(&self.lru);
            lru.tick += 1;
            let tick = lru.tick;
            if let Some((old, _)) = lru.entries.insert(h.id, (tick, Arc::downgrade(h))) {
                lru.order.remove(&old);
            }
            lru.order.insert(tick, h.id);
            let over = lru.entries.len().saturating_sub(self.capacity());
            if over == 0 {
                return;
            }
            // Oldest first, the segment just used last of all; clean before dirty.
            let mut clean = Vec::new();
            let mut dirty = Vec::new();
            for (_, id) in lru.order.iter() {
                if *id == h.id {
                    continue;
                }
                let Some(seg) = lru.entries.get(id).and_then(|(_, w)| w.upgrade()) else { continue };
                if seg.dirty.load(Ordering::Relaxed) {
                    dirty.push(seg);
                } else {
                    clean.push(seg);
                    if clean.len() >= over {
                        break;
                    }
                }
            }
            clean.extend(dirty);
            clean.truncate(over);
            for seg in &clean {
                if let Some((t, _)) = lru.entries.remove(&seg.id) {
                    lru.order.remove(&t);
                }
            }
            clean
        };
        // Outside the cache's lock. No lock is ever taken while a segment's own lock is
        // held (it guards only an open or an index read), so this wait is short. A segment
        // used again meanwhile is registered again, and loads again at its next use.
        for seg in victims {
            seg.evict();
        }
    }

    /// A segment is gone (deleted or replaced).
    fn forget(&self, id: u64) {
        let mut lru = lock(&self.lru);
        if let Some((t, _)) = lru.entries.remove(&id) {
            lru.order.remove(&t);
        }
    }
}
