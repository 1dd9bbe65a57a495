//! Which groups this broker coordinates (Kafka's `CoordinatorRuntime` partitions): the
//! coordinator of a group is the leader of `__consumer_offsets` partition
//! `abs(javaHashCode(group)) % partitions` (Kafka's `partitionFor`, so tools agree on the
//! mapping). Each such partition this broker leads is a [`Shard`]: its groups and pending
//! transactional offsets, loaded from the partition's log when the broker becomes its
//! leader ([`Coordinator::elect`]) and dropped when it stops leading
//! ([`Coordinator::resign`]); requests for its groups meanwhile get NOT_COORDINATOR, or
//! COORDINATOR_LOAD_IN_PROGRESS while it loads, and clients look the coordinator up again.
//!
//! A shard's writes are appended as the partition's leader (leader epoch stamped, refused
//! below `min.insync.replicas`) and a change a client waits for is acknowledged only once
//! the in-sync replicas have it (acks=all, [`Shard::await_replicated`]), as Kafka's
//! coordinator appends with `requiredAcks = -1`. On a single node both are immediate.
//! Owns no group semantics: the coordinator (`super`) decides what to write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::persist::{self, PendingOffsets, Record, WriteError};
use super::state::Group;
use super::Coordinator;
use crate::errors::KafkaError;
use crate::partition::{Partition, WaitError};

/// One loaded `__consumer_offsets` partition this broker leads.
pub(crate) struct Shard {
    pub index: i32,
    /// The leader epoch it was loaded in.
    pub epoch: i32,
    pub log: Arc<Partition>,
    groups: Mutex<HashMap<String, Group>>,
    /// Offsets committed in transactions not decided yet (see `txn_offsets`).
    pub pending: Mutex<PendingOffsets>,
    /// `offsets.commit.timeout.ms`: how long a write waits for the in-sync replicas.
    commit_timeout: Duration,
}

/// A coordinator partition: being loaded (in this leader epoch), or loaded.
#[derive(Clone)]
pub(crate) enum Slot {
    Loading(i32),
    Loaded(Arc<Shard>),
}

impl Shard {
    pub fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `records` as one batch, as the partition's leader. Returns the offset of
    /// the last one (None: nothing to write). Errors as Kafka's coordinator maps them:
    /// not the leader any more → NOT_COORDINATOR; too few in-sync replicas or a storage
    /// failure → COORDINATOR_NOT_AVAILABLE (both retriable).
    pub fn write(&self, records: &[Record]) -> Result<Option<i64>, KafkaError> {
        persist::append(&self.log, records).map_err(|e| self.write_error(e))
    }

    /// [`write`](Self::write) for a transaction's offsets (TxnOffsetCommit).
    pub fn write_txn(
        &self,
        records: &[Record],
        producer: (i64, i16),
    ) -> Result<Option<i64>, KafkaError> {
        persist::append_txn(&self.log, records, producer).map_err(|e| self.write_error(e))
    }

    fn write_error(&self, e: WriteError) -> KafkaError {
        match e {
            WriteError::NotLeader => KafkaError::NotCoordinator,
            WriteError::NotEnoughReplicas => KafkaError::CoordinatorNotAvailable,
            WriteError::ProducerFenced => KafkaError::ProducerFenced,
            WriteError::Storage(e) => {
                tracing::error!(partition = self.index, error = %e, "could not write to {}", persist::OFFSETS_TOPIC);
                KafkaError::CoordinatorNotAvailable
            }
        }
    }

    /// Waits (blocking) until every in-sync replica has the record at `offset` (acks=all):
    /// NOT_COORDINATOR if leadership was lost meanwhile, COORDINATOR_NOT_AVAILABLE if
    /// `offsets.commit.timeout.ms` passed or the ISR fell below `min.insync.replicas`
    /// (Kafka's mapping of REQUEST_TIMED_OUT and NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    /// Immediate on a single node. Call it without holding the shard's lock.
    pub fn await_replicated(&self, offset: Option<i64>) -> Result<(), KafkaError> {
        let Some(offset) = offset else { return Ok(()) };
        if !self.log.is_replicated() {
            return Ok(());
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return Ok(());
        };
        match rt.block_on(self.log.wait_replicated(offset, self.commit_timeout)) {
            Ok(true) => Ok(()),
            Ok(false) | Err(WaitError::TimedOut) => Err(KafkaError::CoordinatorNotAvailable),
            Err(WaitError::NotLeader) => Err(KafkaError::NotCoordinator),
        }
    }

    /// Waits until everything written to the shard so far is replicated (SyncGroup: the
    /// group's record is written before its members are answered).
    pub fn await_all_replicated(&self) -> Result<(), KafkaError> {
        let end = self.log.log().log_end_offset();
        self.await_replicated((end > 0).then_some(end - 1))
    }
}

/// Java's `String.hashCode` (over UTF-16 code units), as Kafka hashes group ids.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of `group` among `partitions` (Kafka's
/// `Utils.abs(groupId.hashCode()) % partitions`, where `abs` masks the sign bit).
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    (java_hash(group) & 0x7fff_ffff) % partitions.max(1)
}

impl Coordinator {
    /// The `__consumer_offsets` partition that holds `group`.
    pub fn partition_for(&self, group: &str) -> i32 {
        partition_for(group, self.partition_count())
    }

    pub fn partition_count(&self) -> i32 {
        self.partition_count
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `__consumer_offsets` has `n` partitions (0: not created yet).
    pub fn set_partition_count(&self, n: i32) {
        self.partition_count
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    fn slots(&self) -> std::sync::RwLockReadGuard<'_, HashMap<i32, Slot>> {
        self.shards.read().unwrap_or_else(|p| p.into_inner())
    }

    fn slots_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<i32, Slot>> {
        self.shards.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The loaded shard coordinating `group`, or why this broker cannot answer for it.
    pub(crate) fn shard(&self, group: &str) -> Result<Arc<Shard>, KafkaError> {
        if self.partition_count() <= 0 {
            return Err(KafkaError::CoordinatorNotAvailable);
        }
        match self.slots().get(&self.partition_for(group)) {
            Some(Slot::Loaded(s)) => Ok(s.clone()),
            Some(Slot::Loading(_)) => Err(KafkaError::CoordinatorLoadInProgress),
            None => Err(KafkaError::NotCoordinator),
        }
    }

    /// The loaded shard of partition `index`, if this broker coordinates it.
    pub(crate) fn shard_at(&self, index: i32) -> Option<Arc<Shard>> {
        match self.slots().get(&index) {
            Some(Slot::Loaded(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// Every loaded shard, by partition.
    pub(crate) fn loaded(&self) -> Vec<Arc<Shard>> {
        let mut out: Vec<Arc<Shard>> = self
            .slots()
            .values()
            .filter_map(|s| {
                if let Slot::Loaded(s) = s {
                    Some(s.clone())
                } else {
                    None
                }
            })
            .collect();
        out.sort_by_key(|s| s.index);
        out
    }

    /// This broker leads `__consumer_offsets` partition `index` in leader epoch `epoch`:
    /// replays its log into groups (blocking I/O) and starts answering for them.
    pub fn elect(
        &self,
        index: i32,
        epoch: i32,
        log: Arc<Partition>,
    ) -> Result<(), runnel_storage::StorageError> {
        if self.begin_load(index, epoch) {
            self.finish_load(index, epoch, log)?;
        }
        Ok(())
    }

    /// Marks partition `index` as loading in `epoch` (requests for its groups get
    /// COORDINATOR_LOAD_IN_PROGRESS). False if it is loaded in that epoch already.
    pub fn begin_load(&self, index: i32, epoch: i32) -> bool {
        let mut slots = self.slots_mut();
        if matches!(slots.get(&index), Some(Slot::Loaded(s)) if s.epoch == epoch) {
            return false;
        }
        slots.insert(index, Slot::Loading(epoch));
        true
    }

    /// Replays partition `index` (blocking I/O) and serves its groups, unless a newer
    /// election or a resignation overtook this load.
    pub fn finish_load(
        &self,
        index: i32,
        epoch: i32,
        log: Arc<Partition>,
    ) -> Result<(), runnel_storage::StorageError> {
        let current = |slots: &HashMap<i32, Slot>| matches!(slots.get(&index), Some(Slot::Loading(e)) if *e == epoch);
        if !current(&self.slots()) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let replayed = persist::replay(&log, Instant::now());
        let mut slots = self.slots_mut();
        if !current(&slots) {
            return Ok(());
        }
        let (groups, pending) = match replayed {
            Ok(r) => r,
            Err(e) => {
                slots.remove(&index);
                return Err(e);
            }
        };
        let count = groups.len();
        let shard = Shard {
            index,
            epoch,
            log,
            groups: Mutex::new(groups),
            pending: Mutex::new(pending),
            commit_timeout: self.settings.commit_timeout,
        };
        slots.insert(index, Slot::Loaded(Arc::new(shard)));
        drop(slots);
        tracing::info!(
            partition = index,
            epoch,
            groups = count,
            ms = started.elapsed().as_millis() as u64,
            "coordinating the groups of {}",
            persist::OFFSETS_TOPIC
        );
        self.kick();
        Ok(())
    }

    /// This broker no longer leads partition `index`: its groups are unloaded, and members
    /// waiting in JoinGroup or SyncGroup are answered NOT_COORDINATOR (they find the new
    /// coordinator and rejoin there).
    pub fn resign(&self, index: i32) {
        let Some(slot) = self.slots_mut().remove(&index) else {
            return;
        };
        if let Slot::Loaded(shard) = slot {
            let mut groups = shard.lock();
            for g in groups.values_mut() {
                g.fail_waiters(KafkaError::NotCoordinator);
            }
            tracing::info!(
                partition = index,
                groups = groups.len(),
                "no longer coordinating the groups of {}",
                persist::OFFSETS_TOPIC
            );
            groups.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_for_matches_kafka() {
        // Java: "my-group".hashCode() == -1906497762; Utils.abs masks the sign bit.
        assert_eq!(java_hash("my-group"), -1906497762);
        assert_eq!(partition_for("my-group", 50), 36);
        assert_eq!(java_hash(""), 0);
        assert_eq!(partition_for("anything", 1), 0);
    }
}
