//! The leader-epoch checkpoint of a partition (Kafka's `leader-epoch-checkpoint`, KIP-101):
//! for each leader epoch, the first offset written in it. It answers "where does epoch E
//! end in this log" (OffsetForLeaderEpoch), which is how a follower finds the point where
//! its log and a new leader's part ways, and cuts only what the leader does not have.
//!
//! File format (Kafka's): a version line (`0`), an entry count, then `epoch start_offset`
//! per line. It is rewritten whole (temp file, fsync, rename, fsync dir) on every change;
//! changes are rare (a new epoch, a truncation). Blocking I/O: call it off async workers.
//!
//! Invariant: epochs and start offsets both strictly increase along the entries.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// `(epoch, end offset)` meaning "unknown" (Kafka's UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET).
pub const UNDEFINED: (i32, i64) = (-1, -1);

/// The epoch entries alone, without the file: the decisions (which entry an epoch change
/// replaces, where an epoch ends) that [`LeaderEpochCache`] persists, kept pure so the
/// cluster simulation drives the same code. Each change answers whether it changed anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochs {
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochs {
    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// Epoch `epoch` starts at `start_offset`, unless a later or equal epoch is known. An
    /// entry starting at or after `start_offset` is replaced (it was never written past).
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|l| l >= epoch) {
            return false;
        }
        self.entries.retain(|e| e.1 < start_offset);
        self.entries.push((epoch, start_offset));
        true
    }

    /// The log now ends at `end`: epochs starting at or after it go.
    pub fn truncate_from_end(&mut self, end: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.1 < end);
        self.entries.len() != before
    }

    /// Kafka's `endOffsetFor`: the largest epoch `<= requested` this log knows and the
    /// offset where it ends (the next epoch's start, or `log_end` for the latest);
    /// [`UNDEFINED`] for an epoch above all known ones (or none known); for one below all,
    /// `(requested, first start)`.
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> (i32, i64) {
        match self.entries.last() {
            None => return UNDEFINED,
            Some(&(latest, _)) if latest == requested => return (latest, log_end),
            _ => {}
        }
        if requested < 0 {
            return UNDEFINED;
        }
        let Some(higher) = self.entries.iter().position(|e| e.0 > requested) else { return UNDEFINED };
        match higher.checked_sub(1) {
            None => (requested, self.entries[0].1),
            Some(floor) => (self.entries[floor].0, self.entries[higher].1),
        }
    }
}

/// [`LeaderEpochs`] kept in the partition's checkpoint file, rewritten on every change.
#[derive(Debug)]
pub struct LeaderEpochCache {
    path: PathBuf,
    epochs: LeaderEpochs,
}

impl LeaderEpochCache {
    /// Reads `dir`'s checkpoint (none, or one that does not parse: empty).
    pub fn open(dir: &Path) -> io::Result<Self> {
        let path = dir.join(CHECKPOINT_FILE);
        let entries = match fs::read_to_string(&path) {
            Ok(text) => parse(&text).unwrap_or_else(|| {
                tracing::warn!(path = %path.display(), "unreadable leader-epoch checkpoint; starting without one");
                Vec::new()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(Self { path, epochs: LeaderEpochs { entries } })
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        self.epochs.entries()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// [`LeaderEpochs::assign`], written to the file if it changed anything.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> io::Result<()> {
        if self.epochs.assign(epoch, start_offset) {
            return self.write();
        }
        Ok(())
    }

    /// [`LeaderEpochs::truncate_from_end`], written to the file if it changed anything.
    pub fn truncate_from_end(&mut self, end: i64) -> io::Result<()> {
        if self.epochs.truncate_from_end(end) {
            return self.write();
        }
        Ok(())
    }

    /// See [`LeaderEpochs::end_offset_for`].
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> (i32, i64) {
        self.epochs.end_offset_for(requested, log_end)
    }

    fn write(&self) -> io::Result<()> {
        let mut text = format!("0\n{}\n", self.epochs.entries.len());
        for (epoch, offset) in &self.epochs.entries {
            text.push_str(&format!("{epoch} {offset}\n"));
        }
        crate::offset_checkpoint::write_durably(&self.path, &text)
    }
}

fn parse(text: &str) -> Option<Vec<(i32, i64)>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let entries: Vec<(i32, i64)> = lines
        .take(count)
        .map(|l| {
            let (e, o) = l.trim().split_once(' ')?;
            Some((e.parse().ok()?, o.parse().ok()?))
        })
        .collect::<Option<_>>()?;
    let increasing = entries.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
    (entries.len() == count && increasing).then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafka_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::open(dir.path()).unwrap();
        assert_eq!(c.end_offset_for(0, 10), UNDEFINED);
        c.assign(1, 0).unwrap();
        c.assign(3, 40).unwrap();
        c.assign(2, 50).unwrap(); // older epoch: ignored
        c.assign(5, 70).unwrap();
        assert_eq!(c.entries(), [(1, 0), (3, 40), (5, 70)]);
        assert_eq!(c.end_offset_for(5, 90), (5, 90));
        assert_eq!(c.end_offset_for(3, 90), (3, 70));
        assert_eq!(c.end_offset_for(4, 90), (3, 70), "an unknown epoch between: the one below");
        assert_eq!(c.end_offset_for(0, 90), (0, 0), "below all: the first start");
        assert_eq!(c.end_offset_for(6, 90), UNDEFINED);
        c.truncate_from_end(70).unwrap();
        let mut c = LeaderEpochCache::open(dir.path()).unwrap();
        assert_eq!(c.entries(), [(1, 0), (3, 40)]);
        // A new epoch starting below an entry replaces it.
        c.assign(6, 30).unwrap();
        assert_eq!(c.entries(), [(1, 0), (6, 30)]);
        std::fs::write(dir.path().join(CHECKPOINT_FILE), "0\n2\n1 5\n").unwrap();
        assert!(LeaderEpochCache::open(dir.path()).unwrap().entries().is_empty());
    }
}
