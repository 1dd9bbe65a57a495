//! Producer state of one partition: for every producer id that wrote to it, the epoch, the
//! sequence ranges and offsets of its last [`MAX_BATCHES`] batches, and its open
//! transaction (the first offset of transactional data not yet followed by a marker).
//!
//! Owns: the idempotence checks of a leader append (a retried batch is found and answered
//! with its original offsets, a sequence gap is `OutOfOrder`, an older epoch is
//! `InvalidEpoch`; an unknown producer is accepted at any sequence, as Kafka does since
//! KIP-360), the bookkeeping of transactions (open ones give the first unstable offset;
//! markers close them and report aborted ranges), expiry of idle producers, and the
//! `<offset>.snapshot` files from which the state is loaded at open (then the log after the
//! snapshot is replayed by [`crate::PartitionLog`]).
//!
//! The state is derived from the log alone: replaying the same batches (a follower, or a
//! restart without a snapshot) gives the same state. Never does I/O except the snapshot
//! files, and never looks at records other than markers.
//!
//! Snapshot format (big-endian): `"RNPS" u16 version=1 u32 crc32c(rest) u32 count`, then per
//! producer `i64 id, i16 epoch, i32 coordinatorEpoch, i64 txnFirstOffset (-1: none),
//! i64 lastTimestamp, u8 n`, then `n × (i32 firstSeq, i32 lastSeq, i64 firstOffset,
//! i64 lastOffset, i64 timestamp)`, oldest batch first.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use runnel_protocol::batch::{in_sequence, BatchHeader, ControlType, Marker};

/// How many batches per producer are remembered for duplicate detection (Kafka's
/// `max.in.flight.requests.per.connection` limit for idempotence).
pub const MAX_BATCHES: usize = 5;
/// Epoch of a producer whose state was created by a write without prior state.
pub const NO_EPOCH: i16 = -1;

const SNAPSHOT_EXT: &str = "snapshot";
const MAGIC: &[u8; 4] = b"RNPS";
const VERSION: u16 = 1;

/// Who is appending: a client's produce (checked), the transaction coordinator's markers
/// (epoch checked), or a replay of stored batches (recovery, replication: no checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    Client,
    Coordinator,
    Replay,
}

/// One stored batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub timestamp: i64,
}

/// What the partition knows of one producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub producer_id: i64,
    pub epoch: i16,
    /// The last batches of the current epoch, oldest first (at most [`MAX_BATCHES`]).
    pub batches: VecDeque<BatchMeta>,
    /// Largest `maxTimestamp` of its batches and markers (expiry runs on it).
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// First offset of its open transaction in this partition.
    pub txn_first_offset: Option<i64>,
}

impl ProducerEntry {
    fn new(producer_id: i64) -> Self {
        Self {
            producer_id,
            epoch: NO_EPOCH,
            batches: VecDeque::new(),
            last_timestamp: -1,
            coordinator_epoch: -1,
            txn_first_offset: None,
        }
    }

    pub fn last_seq(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }

    pub fn last_offset(&self) -> i64 {
        self.batches.back().map_or(-1, |b| b.last_offset)
    }

    fn find_duplicate(&self, h: &BatchHeader) -> Option<BatchMeta> {
        if h.producer_epoch != self.epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == h.last_sequence())
            .copied()
    }
}

/// Why a producer's batch was refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ProducerError {
    #[error("producer {producer_id}: epoch {epoch} is older than the current epoch {current}")]
    InvalidEpoch { producer_id: i64, epoch: i16, current: i16 },
    #[error("producer {producer_id} epoch {epoch}: sequence {first} does not follow {last}")]
    OutOfOrder { producer_id: i64, epoch: i16, first: i32, last: i32 },
    #[error("producer {producer_id}: a retried batch in an append of several batches")]
    Duplicate { producer_id: i64 },
    #[error("producer {producer_id}: {what}")]
    InvalidTxnState { producer_id: i64, what: String },
}

/// A transaction that a marker closed in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub aborted: bool,
}

/// The checked effect of one append, applied with [`ProducerStateManager::commit`] once
/// the bytes are stored.
#[derive(Debug, Default)]
pub struct Staged {
    entries: HashMap<i64, ProducerEntry>,
    pub completed: Vec<CompletedTxn>,
    /// Set when the append is one batch that is already stored: its original metadata.
    pub duplicate: Option<BatchMeta>,
}

/// All producers of one partition; see the module docs.
#[derive(Debug, Default)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset → producer id.
    ongoing: BTreeMap<i64, i64>,
    /// The state covers every batch below this offset.
    map_end_offset: i64,
}

impl ProducerStateManager {
    pub fn producers(&self) -> impl Iterator<Item = &ProducerEntry> {
        self.producers.values()
    }

    pub fn producer(&self, id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&id)
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn map_end_offset(&self) -> i64 {
        self.map_end_offset
    }

    /// First offset of the oldest open transaction: the last stable offset is the smaller
    /// of this and the high watermark.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Open transactions as (first offset, producer id), oldest first.
    pub fn ongoing(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().map(|(o, p)| (*o, *p))
    }

    /// Checks the batches of one append (offsets already assigned) and computes their
    /// effect. `batch_bytes(i)` gives the whole bytes of batch `i` (markers are read).
    pub fn stage<'a>(
        &self,
        headers: &[BatchHeader],
        batch_bytes: impl Fn(usize) -> &'a [u8],
        origin: AppendOrigin,
    ) -> Result<Staged, ProducerError> {
        let mut staged = Staged::default();
        for (i, h) in headers.iter().enumerate() {
            if !h.has_producer_id() {
                continue;
            }
            let entry = match staged.entries.remove(&h.producer_id) {
                Some(e) => e,
                None => self.producers.get(&h.producer_id).cloned().unwrap_or_else(|| ProducerEntry::new(h.producer_id)),
            };
            if origin == AppendOrigin::Client {
                if let Some(dup) = entry.find_duplicate(h) {
                    if headers.len() != 1 {
                        return Err(ProducerError::Duplicate { producer_id: h.producer_id });
                    }
                    staged.duplicate = Some(dup);
                    return Ok(staged);
                }
            }
            let marker = if h.is_control() { runnel_protocol::batch::read_marker(batch_bytes(i)) } else { None };
            let entry = update(entry, h, marker, origin, &mut staged.completed)?;
            staged.entries.insert(h.producer_id, entry);
        }
        Ok(staged)
    }

    /// Applies a staged append whose bytes are now stored below `log_end`.
    pub fn commit(&mut self, staged: Staged, log_end: i64) {
        for (id, entry) in staged.entries {
            if let Some(old) = self.producers.get(&id).and_then(|e| e.txn_first_offset) {
                if entry.txn_first_offset != Some(old) {
                    self.ongoing.remove(&old);
                }
            }
            if let Some(first) = entry.txn_first_offset {
                self.ongoing.insert(first, id);
            }
            self.producers.insert(id, entry);
        }
        self.map_end_offset = self.map_end_offset.max(log_end);
    }

    /// Replays one stored batch (no checks). Returns the transaction a marker closed.
    pub fn replay(&mut self, h: &BatchHeader, marker: Option<Marker>) -> Option<CompletedTxn> {
        let mut staged = Staged::default();
        if h.has_producer_id() {
            let entry = self.producers.get(&h.producer_id).cloned().unwrap_or_else(|| ProducerEntry::new(h.producer_id));
            if let Ok(e) = update(entry, h, marker, AppendOrigin::Replay, &mut staged.completed) {
                staged.entries.insert(h.producer_id, e);
            }
        }
        let done = staged.completed.first().copied();
        self.commit(staged, h.last_offset() + 1);
        done
    }

    /// Removes producers idle since `now_ms - expiration_ms` (by their batches'
    /// timestamps) that have no open transaction [`producer.id.expiration.ms`]. Returns
    /// how many went.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| e.txn_first_offset.is_some() || now_ms.saturating_sub(e.last_timestamp) < expiration_ms);
        before - self.producers.len()
    }

    /// Forgets everything (before a reload).
    pub fn clear(&mut self, map_end_offset: i64) {
        self.producers.clear();
        self.ongoing.clear();
        self.map_end_offset = map_end_offset;
    }

    // ---- snapshots -------------------------------------------------------------------

    /// Writes `<offset>.snapshot` for the current state (atomically: temp file + rename),
    /// fsynced when `sync`.
    pub fn write_snapshot(&self, dir: &Path, offset: i64, sync: bool) -> io::Result<()> {
        let mut body = Vec::with_capacity(4 + self.producers.len() * 64);
        body.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let e = &self.producers[&id];
            body.extend_from_slice(&e.producer_id.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            body.extend_from_slice(&e.txn_first_offset.unwrap_or(-1).to_be_bytes());
            body.extend_from_slice(&e.last_timestamp.to_be_bytes());
            body.push(e.batches.len() as u8);
            for b in &e.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.first_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
                body.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(body.len() + 10);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        let path = snapshot_path(dir, offset);
        let tmp = path.with_extension("snapshot.tmp");
        fs::write(&tmp, &out)?;
        if sync {
            fs::File::open(&tmp)?.sync_all()?;
        }
        fs::rename(&tmp, &path)
    }

    /// Loads `<offset>.snapshot`: the state as of `offset`. `None` if it is damaged.
    pub fn read_snapshot(dir: &Path, offset: i64) -> io::Result<Option<Self>> {
        let bytes = fs::read(snapshot_path(dir, offset))?;
        Ok(parse_snapshot(&bytes).map(|producers| {
            let ongoing = producers
                .values()
                .filter_map(|e| e.txn_first_offset.map(|o| (o, e.producer_id)))
                .collect();
            Self { producers, ongoing, map_end_offset: offset }
        }))
    }
}

/// Applies one batch to a producer's entry, checking it for `origin`.
fn update(
    mut e: ProducerEntry,
    h: &BatchHeader,
    marker: Option<Marker>,
    origin: AppendOrigin,
    completed: &mut Vec<CompletedTxn>,
) -> Result<ProducerEntry, ProducerError> {
    let pid = h.producer_id;
    if origin != AppendOrigin::Replay && h.producer_epoch < e.epoch {
        return Err(ProducerError::InvalidEpoch { producer_id: pid, epoch: h.producer_epoch, current: e.epoch });
    }
    if h.is_control() {
        if let Some(m) = marker {
            if origin == AppendOrigin::Coordinator && m.coordinator_epoch < e.coordinator_epoch {
                return Err(ProducerError::InvalidTxnState {
                    producer_id: pid,
                    what: format!("coordinator epoch {} is older than {}", m.coordinator_epoch, e.coordinator_epoch),
                });
            }
            if let Some(first) = e.txn_first_offset.take() {
                completed.push(CompletedTxn {
                    producer_id: pid,
                    first_offset: first,
                    last_offset: h.base_offset,
                    aborted: m.control == ControlType::Abort,
                });
            }
            e.coordinator_epoch = m.coordinator_epoch;
        }
        if h.producer_epoch > e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        e.last_timestamp = e.last_timestamp.max(h.max_timestamp);
        return Ok(e);
    }
    if origin == AppendOrigin::Client {
        check_sequence(&e, h)?;
        if !h.is_transactional() && e.txn_first_offset.is_some() {
            return Err(ProducerError::InvalidTxnState {
                producer_id: pid,
                what: "a non-transactional batch while a transaction is open".into(),
            });
        }
    }
    if h.producer_epoch != e.epoch {
        e.epoch = h.producer_epoch;
        e.batches.clear();
    }
    e.batches.push_back(BatchMeta {
        first_seq: h.base_sequence,
        last_seq: h.last_sequence(),
        first_offset: h.base_offset,
        last_offset: h.last_offset(),
        timestamp: h.max_timestamp,
    });
    while e.batches.len() > MAX_BATCHES {
        e.batches.pop_front();
    }
    e.last_timestamp = e.last_timestamp.max(h.max_timestamp);
    if h.is_transactional() && e.txn_first_offset.is_none() {
        e.txn_first_offset = Some(h.base_offset);
    }
    Ok(e)
}

/// Kafka's sequence rule: within an epoch each batch continues the last one; a new epoch
/// starts at 0; a producer the partition knows nothing of may start anywhere.
fn check_sequence(e: &ProducerEntry, h: &BatchHeader) -> Result<(), ProducerError> {
    let first = h.base_sequence;
    let out_of_order =
        |last| ProducerError::OutOfOrder { producer_id: h.producer_id, epoch: h.producer_epoch, first, last };
    if h.producer_epoch != e.epoch {
        if first != 0 && e.epoch != NO_EPOCH {
            return Err(out_of_order(-1));
        }
    } else if e.epoch != NO_EPOCH || !e.batches.is_empty() {
        let last = e.last_seq();
        if !in_sequence(last, first) {
            return Err(out_of_order(last));
        }
    }
    Ok(())
}

fn parse_snapshot(bytes: &[u8]) -> Option<HashMap<i64, ProducerEntry>> {
    struct R<'a>(&'a [u8]);
    impl R<'_> {
        fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
            let (a, b) = self.0.split_first_chunk::<N>()?;
            self.0 = b;
            Some(*a)
        }
        fn i16(&mut self) -> Option<i16> {
            self.take().map(i16::from_be_bytes)
        }
        fn i32(&mut self) -> Option<i32> {
            self.take().map(i32::from_be_bytes)
        }
        fn i64(&mut self) -> Option<i64> {
            self.take().map(i64::from_be_bytes)
        }
    }
    let mut r = R(bytes);
    if &r.take::<4>()? != MAGIC || u16::from_be_bytes(r.take()?) != VERSION {
        return None;
    }
    let crc = u32::from_be_bytes(r.take()?);
    if crc32c::crc32c(r.0) != crc {
        return None;
    }
    let count = u32::from_be_bytes(r.take()?);
    let mut out = HashMap::new();
    for _ in 0..count {
        let mut e = ProducerEntry::new(r.i64()?);
        e.epoch = r.i16()?;
        e.coordinator_epoch = r.i32()?;
        e.txn_first_offset = Some(r.i64()?).filter(|o| *o >= 0);
        e.last_timestamp = r.i64()?;
        let n = r.take::<1>()?[0];
        for _ in 0..n {
            e.batches.push_back(BatchMeta {
                first_seq: r.i32()?,
                last_seq: r.i32()?,
                first_offset: r.i64()?,
                last_offset: r.i64()?,
                timestamp: r.i64()?,
            });
        }
        out.insert(e.producer_id, e);
    }
    r.0.is_empty().then_some(out)
}

pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.{SNAPSHOT_EXT}"))
}

/// Offsets of the snapshot files in `dir`, ascending.
pub(crate) fn list_snapshots(dir: &Path) -> io::Result<Vec<i64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".snapshot") {
            if let Ok(o) = stem.parse::<i64>() {
                if stem.len() == 20 {
                    out.push(o);
                }
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

pub(crate) fn delete_snapshot(dir: &Path, offset: i64) -> io::Result<()> {
    match fs::remove_file(snapshot_path(dir, offset)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_protocol::batch::{encode_batch, set_producer, NewRecord};

    fn header(pid: i64, epoch: i16, seq: i32, base: i64, n: usize) -> BatchHeader {
        let recs = vec![NewRecord { timestamp: 1000, ..NewRecord::default() }; n];
        let mut b = encode_batch(base, 0, &recs);
        set_producer(&mut b, pid, epoch, seq);
        BatchHeader::parse(&b).unwrap()
    }

    fn append(m: &mut ProducerStateManager, h: BatchHeader) -> Result<Option<BatchMeta>, ProducerError> {
        let staged = m.stage(&[h], |_| &[][..], AppendOrigin::Client)?;
        if let Some(d) = staged.duplicate {
            return Ok(Some(d));
        }
        m.commit(staged, h.last_offset() + 1);
        Ok(None)
    }

    #[test]
    fn sequences_duplicates_and_epochs() {
        let mut m = ProducerStateManager::default();
        assert_eq!(append(&mut m, header(7, 0, 0, 0, 3)), Ok(None));
        assert_eq!(append(&mut m, header(7, 0, 3, 3, 2)), Ok(None));
        // A retry of the first batch is found with its original offsets.
        let dup = append(&mut m, header(7, 0, 0, 99, 3)).unwrap().unwrap();
        assert_eq!((dup.first_offset, dup.last_offset), (0, 2));
        // A gap.
        assert!(matches!(append(&mut m, header(7, 0, 9, 5, 1)), Err(ProducerError::OutOfOrder { last: 4, .. })));
        // A new epoch starts at 0; the old one is fenced.
        assert!(matches!(append(&mut m, header(7, 1, 5, 5, 1)), Err(ProducerError::OutOfOrder { .. })));
        assert_eq!(append(&mut m, header(7, 1, 0, 5, 1)), Ok(None));
        assert!(matches!(append(&mut m, header(7, 0, 5, 6, 1)), Err(ProducerError::InvalidEpoch { current: 1, .. })));
        // An unknown producer may start anywhere (KIP-360).
        assert_eq!(append(&mut m, header(8, 4, 1234, 6, 1)), Ok(None));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut m = ProducerStateManager::default();
        for i in 0..7 {
            append(&mut m, header(1, 0, i, i64::from(i), 1)).unwrap();
        }
        assert_eq!(m.producer(1).unwrap().batches.len(), MAX_BATCHES);
        assert!(append(&mut m, header(1, 0, 6, 100, 1)).unwrap().is_some());
        assert!(matches!(append(&mut m, header(1, 0, 1, 100, 1)), Err(ProducerError::OutOfOrder { .. })));
    }

    #[test]
    fn snapshot_round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = ProducerStateManager::default();
        append(&mut m, header(1, 2, 0, 0, 3)).unwrap();
        let mut t = header(5, 0, 0, 3, 1);
        t.attributes |= 0x10;
        append(&mut m, t).unwrap();
        assert_eq!(m.first_unstable_offset(), Some(3));
        m.write_snapshot(dir.path(), 4, true).unwrap();
        let back = ProducerStateManager::read_snapshot(dir.path(), 4).unwrap().unwrap();
        assert_eq!(back.producer(1), m.producer(1));
        assert_eq!(back.first_unstable_offset(), Some(3));
        assert_eq!(back.map_end_offset(), 4);
        assert_eq!(list_snapshots(dir.path()).unwrap(), vec![4]);
        let p = snapshot_path(dir.path(), 4);
        let mut bytes = fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&p, bytes).unwrap();
        assert!(ProducerStateManager::read_snapshot(dir.path(), 4).unwrap().is_none());
    }

    #[test]
    fn expiry_keeps_open_transactions() {
        let mut m = ProducerStateManager::default();
        append(&mut m, header(1, 0, 0, 0, 1)).unwrap();
        let mut t = header(2, 0, 0, 1, 1);
        t.attributes |= 0x10;
        append(&mut m, t).unwrap();
        assert_eq!(m.remove_expired(1000 + 10, 100), 0);
        assert_eq!(m.remove_expired(1000 + 100, 100), 1);
        assert!(m.producer(2).is_some());
    }
}
