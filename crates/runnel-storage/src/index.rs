//! The two per-segment indexes, kept in memory and mirrored to append-only files:
//!
//! - `.index`: sparse offset index, 8-byte entries `relative offset u32 | position u32`
//!   (big-endian), one per `index_interval_bytes` of log. Each entry points at the start of
//!   a batch whose base offset is `segment base + relative offset`.
//! - `.timeindex`: 12-byte entries `timestamp i64 | relative offset u32`, appended with
//!   the offset index's entries (once per `index_interval_bytes`): the largest batch
//!   `maxTimestamp` so far, if it grew, and the base offset of the first batch that
//!   reached it. Every batch up to that offset-index entry has a `maxTimestamp` at most
//!   the time entry's; the segment keeps its exact maximum in memory.
//!
//! A sealed segment's entries live in [`crate::open_files`] instead, loaded on demand.
//!
//! Indexes are derived data: the `.log` file is the truth, and an index that fails
//! [`IndexFile::load`]'s checks is rebuilt from it. This module never reads the log.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::fsio;

/// An entry type of an index file.
pub(crate) trait Entry: Copy + std::fmt::Debug {
    const SIZE: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(b: &[u8]) -> Self;
    /// True if `self` may follow `prev` (both keys strictly increase).
    fn follows(&self, prev: &Self) -> bool;
}

/// An offset-index entry: a batch start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub rel_offset: u32,
    pub position: u32,
}

/// A time-index entry: the first batch whose `maxTimestamp` reached `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub rel_offset: u32,
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Entry for OffsetEntry {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.rel_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            rel_offset: be_u32(&b[0..4]),
            position: be_u32(&b[4..8]),
        }
    }
    fn follows(&self, prev: &Self) -> bool {
        self.rel_offset > prev.rel_offset && self.position > prev.position
    }
}

impl Entry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.rel_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[0..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(ts),
            rel_offset: be_u32(&b[8..12]),
        }
    }
    fn follows(&self, prev: &Self) -> bool {
        self.timestamp > prev.timestamp && self.rel_offset > prev.rel_offset
    }
}

/// An index file and its entries in memory (an active segment's). Invariant: the file holds exactly
/// `entries` (the file may hold garbage past them only after a failed write, and the
/// next write overwrites it).
///
/// The file is opened only for the moment of a write or truncation (a flush syncs it by
/// path, see [`crate::flush`]), so a partition
/// with many segments holds one descriptor per segment (its log), not three.
#[derive(Debug)]
pub(crate) struct IndexFile<E: Entry> {
    path: PathBuf,
    entries: Vec<E>,
}

impl<E: Entry> IndexFile<E> {
    /// Opens an existing index; `Ok(None)` if it is missing or damaged (size not a
    /// multiple of the entry size, or keys not strictly increasing).
    pub fn load(path: &Path) -> io::Result<Option<Self>> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        if bytes.len() % E::SIZE != 0 {
            return Ok(None);
        }
        let entries: Vec<E> = bytes.chunks_exact(E::SIZE).map(E::decode).collect();
        if entries.windows(2).any(|w| !w[1].follows(&w[0])) {
            return Ok(None);
        }
        Ok(Some(IndexFile { path: path.to_path_buf(), entries }))
    }

    /// Creates (or overwrites) the index file with `entries`.
    pub fn create(path: &Path, entries: Vec<E>) -> io::Result<Self> {
        fsio::open(path, OpenOptions::new().write(true).create(true).truncate(true))?;
        let mut index = IndexFile {
            path: path.to_path_buf(),
            entries: Vec::new(),
        };
        index.append(&entries)?;
        Ok(index)
    }

    pub fn entries(&self) -> &[E] {
        &self.entries
    }

    pub fn into_entries(self) -> Vec<E> {
        self.entries
    }

    /// Moves the entries out (a sealed segment's go to [`crate::open_files`]); the file
    /// keeps them.
    pub fn take_entries(&mut self) -> Vec<E> {
        std::mem::take(&mut self.entries)
    }

    /// Puts back entries taken with [`take_entries`](Self::take_entries) (the file holds
    /// exactly these).
    pub fn set_entries(&mut self, entries: Vec<E>) {
        self.entries = entries;
    }

    pub fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    /// Appends `new` in one write; on failure the file is cut back and nothing changes.
    pub fn append(&mut self, new: &[E]) -> io::Result<()> {
        if new.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(new.len() * E::SIZE);
        new.iter().for_each(|e| e.encode(&mut bytes));
        let at = (self.entries.len() * E::SIZE) as u64;
        let file = self.open()?;
        if let Err(e) = fsio::write_all_at(&file, &bytes, at) {
            let _ = fsio::set_len(&file, at);
            return Err(e);
        }
        self.entries.extend_from_slice(new);
        Ok(())
    }

    /// Keeps the first `n` entries.
    pub fn truncate(&mut self, n: usize) -> io::Result<()> {
        if n < self.entries.len() {
            fsio::set_len(&self.open()?, (n * E::SIZE) as u64)?;
            self.entries.truncate(n);
        }
        Ok(())
    }

    fn open(&self) -> io::Result<File> {
        fsio::open(&self.path, OpenOptions::new().write(true))
    }
}

/// The last entry with `rel_offset <= rel` (the start point of a scan for `rel`).
pub(crate) fn floor(entries: &[OffsetEntry], rel: u32) -> Option<OffsetEntry> {
    let n = entries.partition_point(|e| e.rel_offset <= rel);
    n.checked_sub(1).map(|i| entries[i])
}

/// The last entry with `position <= position`.
pub(crate) fn floor_position(entries: &[OffsetEntry], position: u64) -> Option<OffsetEntry> {
    let n = entries.partition_point(|e| u64::from(e.position) <= position);
    n.checked_sub(1).map(|i| entries[i])
}

/// The last entry with `timestamp < ts`: every batch up to that entry's batch has
/// `maxTimestamp < ts`, so a search for `ts` may start at that batch.
pub(crate) fn last_below(entries: &[TimeEntry], ts: i64) -> Option<TimeEntry> {
    let n = entries.partition_point(|e| e.timestamp < ts);
    n.checked_sub(1).map(|i| entries[i])
}

impl IndexFile<OffsetEntry> {
    pub fn floor(&self, rel: u32) -> Option<OffsetEntry> {
        floor(&self.entries, rel)
    }

    pub fn floor_position(&self, position: u64) -> Option<OffsetEntry> {
        floor_position(&self.entries, position)
    }
}

impl IndexFile<TimeEntry> {
    pub fn last_below(&self, ts: i64) -> Option<TimeEntry> {
        last_below(&self.entries, ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_lookup_and_damage_detection() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.index");
        let mut idx = IndexFile::create(
            &p,
            vec![OffsetEntry {
                rel_offset: 3,
                position: 100,
            }],
        )
        .unwrap();
        idx.append(&[OffsetEntry {
            rel_offset: 9,
            position: 300,
        }])
        .unwrap();
        assert_eq!(idx.floor(2), None);
        assert_eq!(idx.floor(8).unwrap().position, 100);
        assert_eq!(idx.floor_position(300).unwrap().rel_offset, 9);
        let loaded = IndexFile::<OffsetEntry>::load(&p).unwrap().unwrap();
        assert_eq!(loaded.entries(), idx.entries());
        idx.truncate(1).unwrap();
        assert_eq!(
            IndexFile::<OffsetEntry>::load(&p)
                .unwrap()
                .unwrap()
                .entries()
                .len(),
            1
        );

        std::fs::write(&p, [0u8; 7]).unwrap();
        assert!(IndexFile::<OffsetEntry>::load(&p).unwrap().is_none());
        std::fs::write(&p, [0, 0, 0, 5, 0, 0, 0, 9, 0, 0, 0, 4, 0, 0, 0, 10]).unwrap();
        assert!(IndexFile::<OffsetEntry>::load(&p).unwrap().is_none());
        assert!(IndexFile::<TimeEntry>::load(&dir.path().join("missing"))
            .unwrap()
            .is_none());

        let t = dir.path().join("x.timeindex");
        let ti = IndexFile::create(
            &t,
            vec![
                TimeEntry {
                    timestamp: 10,
                    rel_offset: 0,
                },
                TimeEntry {
                    timestamp: 20,
                    rel_offset: 4,
                },
            ],
        )
        .unwrap();
        assert_eq!(ti.last_below(10), None);
        assert_eq!(ti.last_below(21).unwrap().rel_offset, 4);
        assert_eq!(
            IndexFile::<TimeEntry>::load(&t).unwrap().unwrap().entries(),
            ti.entries()
        );
    }
}
