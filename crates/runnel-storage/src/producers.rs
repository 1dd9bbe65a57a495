//! The partition log's side of producer state (see [`crate::producer_state`]): loading it
//! at open and after a truncation (the newest intact `<offset>.snapshot` at or below the
//! log end, then a replay of the batch headers after it), keeping snapshot files in step
//! with the segments (the newest one always stays, so retention never loses the state),
//! and what the broker asks of it.

use runnel_protocol::batch;

use crate::error::StorageError;
use crate::log::PartitionLog;
use crate::producer_state::{self, CompletedTxn, ProducerStateManager};
use crate::txn_index::AbortedTxn;

impl PartitionLog {
    /// The producers of this partition.
    pub fn producer_state(&self) -> &ProducerStateManager {
        &self.producers
    }

    /// Writes the producer state as of the log end to `<log end>.snapshot`, so the next
    /// open replays nothing (a clean shutdown); fsynced when `sync`, else left to the
    /// caller's [`crate::fsio::sync_filesystem`] (a damaged snapshot is skipped on load).
    pub fn snapshot_producer_state(&mut self, sync: bool) -> Result<(), StorageError> {
        self.producers.write_snapshot(&self.dir, self.log_end_offset(), sync)?;
        Ok(())
    }

    /// Drops producers idle for `expiration_ms` [`producer.id.expiration.ms`].
    pub fn remove_expired_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        self.producers.remove_expired(now_ms, expiration_ms)
    }

    /// Rebuilds the producer state for the current log: newest usable snapshot, then
    /// the batches after it.
    pub(crate) fn load_producer_state(&mut self) -> Result<(), StorageError> {
        let end = self.log_end_offset();
        let mut snaps = producer_state::list_snapshots(&self.dir)?;
        while let Some(&o) = snaps.last() {
            if o <= end {
                break;
            }
            // Describes batches a truncation removed.
            producer_state::delete_snapshot(&self.dir, o)?;
            snaps.pop();
        }
        let mut loaded = None;
        while let Some(o) = snaps.pop() {
            match ProducerStateManager::read_snapshot(&self.dir, o) {
                Ok(Some(m)) => {
                    loaded = Some(m);
                    break;
                }
                Ok(None) | Err(_) => {
                    tracing::warn!(dir = %self.dir.display(), offset = o, "damaged producer snapshot; deleting it");
                    producer_state::delete_snapshot(&self.dir, o)?;
                }
            }
        }
        let first = self.segments[0].base_offset();
        self.producers = loaded.unwrap_or_default();
        if self.producers.map_end_offset() < first {
            self.producers.commit(Default::default(), first);
        }
        let from = self.producers.map_end_offset();
        if from < end {
            tracing::debug!(dir = %self.dir.display(), from, end, "rebuilding producer state from the log");
        }
        let mut done = Vec::new();
        for seg in self.segments.iter().filter(|s| s.next_offset() > from) {
            let mut pos = if seg.base_offset() >= from {
                0
            } else {
                match seg.find_batch(from)? {
                    Some((p, _)) => p,
                    None => continue,
                }
            };
            while pos < seg.size() {
                let h = seg.read_header(pos)?;
                if h.has_producer_id() && h.last_offset() >= from {
                    let marker = if h.is_control() { batch::read_marker(&seg.read_batch(pos, &h)?) } else { None };
                    done.extend(self.producers.replay(&h, marker));
                }
                pos += h.total_len() as u64;
            }
        }
        self.producers.commit(Default::default(), end);
        self.on_replayed_transactions(&done)
    }


    /// Indexes the aborted ones of `txns`, closed by markers just appended (in the
    /// active segment).
    pub(crate) fn on_transactions_completed(&mut self, txns: &[CompletedTxn]) -> Result<(), StorageError> {
        let lso = self.last_stable_offset();
        let last = self.segments.len() - 1;
        for t in txns.iter().filter(|t| t.aborted) {
            self.segments[last].add_aborted_txn(aborted(t, lso))?;
        }
        Ok(())
    }

    /// Like [`on_transactions_completed`](Self::on_transactions_completed), for markers
    /// found by a replay, in whichever segment holds them (their entries may exist).
    fn on_replayed_transactions(&mut self, txns: &[CompletedTxn]) -> Result<(), StorageError> {
        for t in txns.iter().filter(|t| t.aborted) {
            let i = self.segments.partition_point(|s| s.base_offset() <= t.last_offset).saturating_sub(1);
            self.segments[i].add_aborted_txn(aborted(t, t.last_offset + 1))?;
        }
        Ok(())
    }

    /// The last stable offset: below it every transaction is decided (committed or
    /// aborted). The first offset of the oldest open transaction, else the log end. A
    /// replicated partition bounds it by its high watermark too.
    pub fn last_stable_offset(&self) -> i64 {
        let end = self.log_end_offset();
        self.producers.first_unstable_offset().map_or(end, |o| o.min(end))
    }

    /// The aborted transactions that a read of `[from, upper)` overlaps (marker at or
    /// after `from`, first offset below `upper`), in marker order: what Fetch sends a
    /// `read_committed` consumer as `aborted_transactions`.
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let first = self.segments.partition_point(|s| s.base_offset() <= from).saturating_sub(1);
        self.segments[first..]
            .iter()
            .flat_map(|s| s.aborted_txns())
            .filter(|t| t.last_offset >= from && t.first_offset < upper)
            .copied()
            .collect()
    }
}

fn aborted(t: &CompletedTxn, lso: i64) -> AbortedTxn {
    AbortedTxn { producer_id: t.producer_id, first_offset: t.first_offset, last_offset: t.last_offset, last_stable_offset: lso }
}

/// Deletes the producer snapshots of `dir` below `first` (the first segment's base), except
/// the newest snapshot.
pub(crate) fn prune_snapshots(dir: &std::path::Path, first: i64) -> Result<(), StorageError> {
    let snaps = producer_state::list_snapshots(dir)?;
    if let Some((_, older)) = snaps.split_last() {
        for &o in older.iter().filter(|&&o| o < first) {
            producer_state::delete_snapshot(dir, o)?;
        }
    }
    Ok(())
}
