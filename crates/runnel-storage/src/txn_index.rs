//! `.txnindex`: the aborted transactions of one segment, as Kafka keeps them. An entry is
//! added when an ABORT marker closes a transaction that wrote to the partition, in the
//! segment that holds the marker. A `read_committed` fetch gets the aborted transactions
//! that overlap what it reads, so the consumer can drop their records.
//!
//! Entry layout (34 bytes, big-endian, Kafka's): `version i16 = 0, producerId i64,
//! firstOffset i64, lastOffset i64 (the marker), lastStableOffset i64`. Entries are in
//! marker order (`lastOffset` strictly increases). The file is created at the first entry.
//!
//! Derived data: an entry past the segment's end (a truncation, a torn tail) is dropped
//! at load; a damaged file is treated as empty (with a warning). Never reads the log.

use std::io;
use std::path::Path;

use crate::fsio;
use crate::index::{Entry, IndexFile};
use crate::segment::segment_path;

pub(crate) const TXN_INDEX_EXT: &str = "txnindex";

/// One aborted transaction of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// Offset of its first batch in this partition.
    pub first_offset: i64,
    /// Offset of its ABORT marker.
    pub last_offset: i64,
    /// The partition's last stable offset once the marker was written.
    pub last_stable_offset: i64,
}

fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

impl Entry for AbortedTxn {
    const SIZE: usize = 34;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&0i16.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.first_offset.to_be_bytes());
        out.extend_from_slice(&self.last_offset.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        AbortedTxn {
            producer_id: be_i64(&b[2..]),
            first_offset: be_i64(&b[10..]),
            last_offset: be_i64(&b[18..]),
            last_stable_offset: be_i64(&b[26..]),
        }
    }
    fn follows(&self, prev: &Self) -> bool {
        self.last_offset > prev.last_offset
    }
}

/// A segment's aborted-transaction index (the file exists once it has an entry).
#[derive(Debug, Default)]
pub(crate) struct TxnIndex {
    file: Option<IndexFile<AbortedTxn>>,
}

impl TxnIndex {
    /// Loads `<base>.txnindex` if present, keeping only entries whose marker lies below
    /// `next_offset` (the segment's end).
    pub fn load(dir: &Path, base: i64, next_offset: i64) -> io::Result<Self> {
        let path = segment_path(dir, base, TXN_INDEX_EXT);
        let mut file = match IndexFile::<AbortedTxn>::load(&path)? {
            Some(f) => Some(f),
            None if path.exists() => {
                tracing::warn!(file = %path.display(), "damaged transaction index; starting it again");
                Some(IndexFile::create(&path, Vec::new())?)
            }
            None => None,
        };
        if let Some(f) = &mut file {
            let keep = f.entries().partition_point(|e| e.last_offset < next_offset);
            f.truncate(keep)?;
        }
        Ok(Self { file })
    }

    pub fn entries(&self) -> &[AbortedTxn] {
        self.file.as_ref().map_or(&[], |f| f.entries())
    }

    /// Adds `e` unless an entry for its marker (or a later one) is already there (a
    /// replay after a crash finds markers whose entries were written).
    pub fn append(&mut self, dir: &Path, base: i64, e: AbortedTxn) -> io::Result<()> {
        if self.entries().last().is_some_and(|l| l.last_offset >= e.last_offset) {
            return Ok(());
        }
        if self.file.is_none() {
            self.file = Some(IndexFile::create(&segment_path(dir, base, TXN_INDEX_EXT), Vec::new())?);
        }
        self.file.as_mut().expect("created").append(&[e])
    }

    /// Drops entries whose marker is at or above `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<()> {
        if let Some(f) = &mut self.file {
            let keep = f.entries().partition_point(|e| e.last_offset < offset);
            f.truncate(keep)?;
        }
        Ok(())
    }
}

/// Compaction replaced segments `others` by the one at `base`: their index entries move
/// into `<base>.txnindex` (written whole to a temp file, then renamed, so a crash and a
/// second run give the same file), then their files go. Idempotent.
pub(crate) fn merge_into(dir: &Path, base: i64, others: &[i64]) -> io::Result<()> {
    let paths: Vec<_> = others.iter().map(|&b| segment_path(dir, b, TXN_INDEX_EXT)).filter(|p| p.exists()).collect();
    if paths.is_empty() {
        return Ok(());
    }
    let target = segment_path(dir, base, TXN_INDEX_EXT);
    let mut all: Vec<AbortedTxn> = Vec::new();
    for p in std::iter::once(&target).chain(&paths) {
        if let Some(f) = IndexFile::<AbortedTxn>::load(p)? {
            all.extend_from_slice(f.entries());
        }
    }
    all.sort_by_key(|e| e.last_offset);
    all.dedup_by_key(|e| e.last_offset);
    let tmp = target.with_extension("txnindex.tmp");
    IndexFile::create(&tmp, all)?;
    fsio::sync_all(&std::fs::File::open(&tmp)?)?;
    fsio::rename(&tmp, &target)?;
    for p in paths {
        fsio::remove_file(&p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(last: i64) -> AbortedTxn {
        AbortedTxn { producer_id: 7, first_offset: last - 3, last_offset: last, last_stable_offset: last + 1 }
    }

    #[test]
    fn entries_survive_reload_and_are_cut_at_the_segment_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TxnIndex::load(dir.path(), 0, 0).unwrap();
        assert!(!segment_path(dir.path(), 0, TXN_INDEX_EXT).exists(), "created lazily");
        for last in [5, 9, 14] {
            t.append(dir.path(), 0, e(last)).unwrap();
        }
        t.append(dir.path(), 0, e(9)).unwrap();
        assert_eq!(t.entries().len(), 3, "a replayed marker is not indexed twice");
        let back = TxnIndex::load(dir.path(), 0, 10).unwrap();
        assert_eq!(back.entries(), &[e(5), e(9)]);
        let mut back = TxnIndex::load(dir.path(), 0, 100).unwrap();
        assert_eq!(back.entries(), &[e(5), e(9)], "the cut is on disk too");
        back.truncate_to(6).unwrap();
        assert_eq!(TxnIndex::load(dir.path(), 0, 100).unwrap().entries(), &[e(5)]);
    }
}
