//! The Raft log and vote of one controller, on disk in its metadata dir (openraft's
//! `RaftLogStorage`). Owns the files `raft.log` (CRC-framed entries, appended and
//! fsynced before openraft is told they are durable), `raft.vote` (fsynced before
//! `save_vote` returns), `raft.purged` (the last entry dropped after a snapshot) and
//! `raft.committed` (a hint: losing it only means waiting for the leader to say again).
//!
//! Entries are also held in memory (metadata is small), so reads never touch the disk.
//! Writes come one at a time from openraft and run on the blocking pool; readers take the
//! memory lock only, never a lock that is held over an fsync.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogId};

use crate::files::{self, blocking};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const LOG: &str = "raft.log";
const VOTE: &str = "raft.vote";
const PURGED: &str = "raft.purged";
const COMMITTED: &str = "raft.committed";

/// The log store; clones share it (a clone is the log reader openraft asks for).
#[derive(Clone)]
pub struct LogStore {
    mem: Arc<Mutex<Mem>>,
    disk: Arc<Mutex<Disk>>,
}

struct Mem {
    entries: BTreeMap<u64, Entry>,
    purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

struct Disk {
    dir: PathBuf,
    file: File,
    /// Where each entry's frame starts in `raft.log`.
    positions: BTreeMap<u64, u64>,
    len: u64,
}

fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: io::Error) -> StorageError {
    StorageError::from_io_error(subject, verb, e)
}

impl LogStore {
    /// Opens the log in `dir`, cutting a torn or damaged tail (never acknowledged).
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let vote: Option<Vote> = files::read_json(dir, VOTE)?;
        let purged: Option<LogId> = files::read_json(dir, PURGED)?;
        let committed: Option<LogId> = files::read_json(dir, COMMITTED)?;
        let path = dir.join(LOG);
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (frames, valid) = files::parse_frames::<Entry>(&bytes);
        if valid < bytes.len() {
            tracing::warn!(path = %path.display(), kept = valid, dropped = bytes.len() - valid, "raft log had a torn or damaged tail; cutting it");
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        let mut entries = BTreeMap::new();
        let mut positions = BTreeMap::new();
        let after = purged.map(|p| p.index + 1).unwrap_or(0);
        for (entry, pos) in frames {
            let index = entry.log_id.index;
            if index < after {
                continue; // purged, the file not yet rewritten
            }
            // A later frame for an index replaces a truncated one's successors too.
            entries.split_off(&index);
            positions.split_off(&index);
            entries.insert(index, entry);
            positions.insert(index, pos);
        }
        let disk = Disk { dir: dir.to_path_buf(), file, positions, len: valid as u64 };
        let mem = Mem { entries, purged, vote, committed };
        Ok(Self { mem: Arc::new(Mutex::new(mem)), disk: Arc::new(Mutex::new(disk)) })
    }

    fn mem(&self) -> std::sync::MutexGuard<'_, Mem> {
        self.mem.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the disk state on the blocking pool.
    async fn with_disk<T: Send + 'static>(&self, f: impl FnOnce(&mut Disk) -> io::Result<T> + Send + 'static) -> io::Result<T> {
        let disk = self.disk.clone();
        blocking(move || f(&mut disk.lock().unwrap_or_else(|p| p.into_inner()))).await
    }
}

impl LogStore {
    /// Appends `entries` to the file and fsyncs it, then makes them readable.
    async fn write_entries(&self, entries: Vec<Entry>) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for e in &entries {
            offsets.push((e.log_id.index, buf.len() as u64));
            files::frame(e, &mut buf)?;
        }
        self.with_disk(move |d| {
            d.file.write_all(&buf)?;
            d.file.sync_data()?;
            for (index, off) in offsets {
                d.positions.insert(index, d.len + off);
            }
            d.len += buf.len() as u64;
            Ok(())
        })
        .await?;
        let mut mem = self.mem();
        for e in entries {
            mem.entries.insert(e.log_id.index, e);
        }
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.mem().entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let mem = self.mem();
        let last = mem.entries.values().next_back().map(|e| e.log_id).or(mem.purged);
        Ok(LogState { last_purged_log_id: mem.purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let v = *vote;
        self.with_disk(move |d| files::write_json(&d.dir, VOTE, &v, true))
            .await
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        self.mem().vote = Some(v);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.mem().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.with_disk(move |d| files::write_json(&d.dir, COMMITTED, &committed, false))
            .await
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.mem().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.mem().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let written = self.write_entries(entries.into_iter().collect()).await;
        let result = written.as_ref().map(|_| ()).map_err(|e| io::Error::new(e.kind(), e.to_string()));
        callback.log_io_completed(result);
        written.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let index = log_id.index;
        self.mem().entries.split_off(&index);
        self.with_disk(move |d| {
            let cut = d.positions.split_off(&index);
            if let Some((_, &pos)) = cut.iter().next() {
                d.file.set_len(pos)?;
                d.file.sync_data()?;
                d.len = pos;
            }
            Ok(())
        })
        .await
        .map_err(|e| io_err(ErrorSubject::Log(log_id), ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let kept: Vec<Entry> = {
            let mut mem = self.mem();
            mem.entries = mem.entries.split_off(&(log_id.index + 1));
            mem.purged = Some(log_id);
            mem.entries.values().cloned().collect()
        };
        self.with_disk(move |d| {
            // The purge point is durable first, so a crash while the file is rewritten
            // still skips the purged entries at the next open.
            files::write_json(&d.dir, PURGED, &log_id, true)?;
            let mut buf = Vec::new();
            let mut positions = BTreeMap::new();
            for e in &kept {
                positions.insert(e.get_log_id().index, buf.len() as u64);
                files::frame(e, &mut buf)?;
            }
            files::write_atomic(&d.dir, LOG, &buf, true)?;
            d.file = OpenOptions::new().read(true).append(true).open(d.dir.join(LOG))?;
            d.positions = positions;
            d.len = buf.len() as u64;
            Ok(())
        })
        .await
        .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(term, 1), index), payload: EntryPayload::Blank }
    }

    async fn append(store: &mut LogStore, entries: Vec<Entry>) {
        store.write_entries(entries).await.unwrap();
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        store.mem().entries.keys().copied().collect()
    }

    #[tokio::test]
    async fn log_and_vote_survive_reopen_truncate_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = LogStore::open(dir.path()).unwrap();
        append(&mut s, (0..6).map(|i| entry(1, i)).collect()).await;
        s.save_vote(&Vote::new(2, 1)).await.unwrap();
        s.truncate(LogId::new(CommittedLeaderId::new(1, 1), 4)).await.unwrap();
        append(&mut s, vec![entry(2, 4)]).await;
        s.purge(LogId::new(CommittedLeaderId::new(1, 1), 1)).await.unwrap();
        drop(s);
        let mut s = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&s), [2, 3, 4]);
        assert_eq!(s.mem().entries[&4].log_id.leader_id.term, 2);
        assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
        let state = s.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(1));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(4));
        // A torn tail is cut at the next open.
        append(&mut s, vec![entry(2, 5)]).await;
        drop(s);
        let path = dir.path().join(LOG);
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
        let s = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&s), [2, 3, 4]);
    }
}
