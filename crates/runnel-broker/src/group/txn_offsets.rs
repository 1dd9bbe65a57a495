//! Offsets committed inside a transaction (TxnOffsetCommit, KIP-98 and KIP-447): written
//! to `__consumer_offsets` at once, as a transactional batch of the producer, but kept
//! pending (invisible to OffsetFetch) until the transaction coordinator writes the
//! transaction's marker there and calls [`Coordinator::complete_txn`]: COMMIT makes them
//! the group's committed offsets, ABORT drops them. A replay does the same with the
//! markers it reads. While an offset is pending, OffsetFetch with `require_stable` gets
//! UNSTABLE_OFFSET_COMMIT for its partition, so a consumer of a consume-transform-produce
//! loop never starts from an offset whose transaction may still abort.

use std::collections::HashSet;

use tokio::time::Instant;

use super::state::Group;
use super::{now_ms, persist, Coordinator, OffsetToCommit};
use crate::errors::KafkaError;

/// Who commits in a TxnOffsetCommit.
pub struct TxnCommitter<'a> {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub generation: i32,
}

impl Coordinator {
    /// Writes `offsets` of a transaction and keeps them pending. The group's generation
    /// and member are checked when given (v3+, KIP-447); without them any group accepts
    /// (Kafka's rule for transactional commits).
    pub fn commit_txn(&self, group_id: &str, who: &TxnCommitter<'_>, offsets: Vec<OffsetToCommit>) -> Result<(), KafkaError> {
        if group_id.is_empty() {
            return Err(KafkaError::InvalidGroupId);
        }
        let shard = self.shard(group_id)?;
        let mut groups = shard.lock();
        let check = who.generation >= 0 || !who.member_id.is_empty() || who.instance_id.is_some();
        match groups.get_mut(group_id) {
            Some(g) if check => {
                if let Some(e) = g.validate_commit(who.member_id, who.instance_id, who.generation, Instant::now()) {
                    return Err(e);
                }
            }
            None if check => return Err(KafkaError::IllegalGeneration),
            _ => {}
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let records: Vec<_> =
            offsets.iter().map(|o| persist::offset_record(group_id, &o.topic, o.partition, Some(&o.offset))).collect();
        let written = shard.write_txn(&records, (who.producer_id, who.producer_epoch))?;
        drop(groups);
        {
            let mut pending = shard.pending.lock().unwrap_or_else(|p| p.into_inner());
            let mine = pending.entry(who.producer_id).or_default();
            for o in offsets {
                mine.insert((group_id.to_string(), o.topic, o.partition), o.offset);
            }
        }
        shard.await_replicated(written)
    }

    /// The marker of `producer_id`'s transaction is in `__consumer_offsets` partition
    /// `partition`: its pending offsets become committed (`commit`) or go.
    pub fn complete_txn(&self, partition: i32, producer_id: i64, commit: bool) {
        let Some(shard) = self.shard_at(partition) else { return };
        let mut groups = shard.lock();
        let decided = shard.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&producer_id).unwrap_or_default();
        if !commit {
            return;
        }
        for ((group, topic, partition), o) in decided {
            let g = groups.entry(group.clone()).or_insert_with(|| Group::new(group, now_ms()));
            g.offsets.put(topic, partition, o);
        }
    }

    /// The partitions of `group_id` with an offset in an undecided transaction.
    pub fn unstable_partitions(&self, group_id: &str) -> HashSet<(String, i32)> {
        let Ok(shard) = self.shard(group_id) else { return HashSet::new() };
        let pending = shard.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.values().flat_map(|m| m.keys()).filter(|(g, _, _)| g == group_id).map(|(_, t, p)| (t.clone(), *p)).collect()
    }
}
