//! Transaction state as records of the internal compacted topic `__transaction_state`:
//! the partition a transactional id lives in, how its record is keyed and encoded, how a
//! change is appended (one uncompressed batch), and how the partitions are replayed at
//! load (last record per key wins; a null value is a tombstone).
//!
//! Keys and values are JSON, like `__consumer_offsets`' here (not Kafka's binary schema):
//! key `{"transaction":"<transactional id>"}`, value a [`TxnMeta`]. Never decides
//! transaction semantics.

use std::collections::HashMap;

use runnel_protocol::batch;
use runnel_storage::StorageError;
use serde::{Deserialize, Serialize};

use super::state::TxnMeta;
use crate::group::{append_as_leader, Record, WriteError};
use crate::partition::Partition;

/// The internal topic's name.
pub const TXN_TOPIC: &str = "__transaction_state";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RecordKey {
    Transaction(String),
}

/// The partition of `__transaction_state` that holds `transactional_id`: Kafka's
/// `abs(transactionalId.hashCode) % partitions`, with Java's `String.hashCode`, so a
/// transactional id lands where Kafka would put it.
pub fn partition_for(transactional_id: &str, partitions: u32) -> i32 {
    // The same mapping as a group's `__consumer_offsets` partition.
    crate::group::partition_for(transactional_id, partitions.min(i32::MAX as u32) as i32)
}

/// Appends the state of `transactional_id` (None: a tombstone) as one batch, as the
/// partition's leader (cluster mode: leader epoch stamped, refused below
/// `min.insync.replicas`). Returns its offset; the caller waits for the in-sync replicas.
pub fn append(part: &Partition, transactional_id: &str, meta: Option<&TxnMeta>) -> Result<i64, WriteError> {
    let key = serde_json::to_vec(&RecordKey::Transaction(transactional_id.to_string())).expect("plain data");
    let value = meta.map(|m| serde_json::to_vec(m).expect("plain data"));
    let offset = append_as_leader(part, &[Record::new(key, value)])?;
    Ok(offset.expect("one record was written"))
}

/// Reads one partition whole: the latest state of each transactional id in it.
pub fn replay(part: &Partition) -> Result<HashMap<String, TxnMeta>, StorageError> {
    let mut out = HashMap::new();
    part.replay_batches(|header, bytes| {
        if header.is_control() {
            return;
        }
        let Ok(recs) = batch::records(bytes) else {
            tracing::warn!(topic = TXN_TOPIC, base_offset = header.base_offset, "skipping unreadable batch");
            return;
        };
        for rec in recs.flatten() {
            let Some(RecordKey::Transaction(id)) = rec.key.and_then(|k| serde_json::from_slice(k).ok()) else {
                tracing::warn!(topic = TXN_TOPIC, offset = rec.offset, "skipping record with an unknown key");
                continue;
            };
            match rec.value.map(serde_json::from_slice::<TxnMeta>) {
                Some(Ok(m)) => {
                    out.insert(id, m);
                }
                None => {
                    out.remove(&id);
                }
                Some(Err(e)) => tracing::warn!(topic = TXN_TOPIC, offset = rec.offset, error = %e, "skipping bad record"),
            }
        }
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_follow_javas_string_hash() {
        // Java: "my-txn".hashCode() = -1061187895 → abs & mask % 50.
        let h: i32 = -1061187895;
        assert_eq!(partition_for("my-txn", 50), ((h & 0x7fff_ffff) % 50) as i32);
        assert_eq!(partition_for("", 50), 0);
        assert!((0..50).contains(&partition_for("é€𝄞", 50)));
    }
}
