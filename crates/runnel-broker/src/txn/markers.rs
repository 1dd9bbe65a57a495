//! Writing a prepared transaction's markers: one control batch (COMMIT or ABORT, under
//! the transaction's producer id and epoch and [`super::COORDINATOR_EPOCH`]) appended to
//! every partition in the transaction as the coordinator, waking the partition's fetches
//! (its last stable offset moved). In `__consumer_offsets` the group coordinator then
//! decides the transaction's pending offsets. A partition deleted since it joined the
//! transaction is skipped, as in Kafka; a marker the partition refuses because it already
//! saw a newer epoch of the producer is stale and skipped too.

use runnel_protocol::batch::{encode_marker, ControlType, Marker};
use runnel_storage::{AppendOrigin, StorageError};

use super::state::{TxnMeta, TxnState};
use super::COORDINATOR_EPOCH;
use crate::group::OFFSETS_TOPIC;
use crate::now_ms;
use crate::state::Broker;

/// Appends the markers of `meta` (PrepareCommit or PrepareAbort) to its partitions.
pub fn write(b: &Broker, meta: &TxnMeta) -> Result<(), StorageError> {
    let commit = meta.state == TxnState::PrepareCommit;
    let marker = Marker { control: if commit { ControlType::Commit } else { ControlType::Abort }, coordinator_epoch: COORDINATOR_EPOCH };
    let now = now_ms();
    for (topic, index) in &meta.partitions {
        let Some(part) = b.partition(topic, *index) else {
            tracing::debug!(topic = %topic, partition = index, "skipping the marker of a partition that no longer exists");
            continue;
        };
        let mut buf = encode_marker(meta.producer_id, meta.producer_epoch, marker, now);
        let appended = part.log().append_as(&mut buf, AppendOrigin::Coordinator);
        match appended {
            Ok(_) => {}
            Err(StorageError::Producer(e)) => {
                tracing::warn!(topic = %topic, partition = index, error = %e, "stale transaction marker skipped");
            }
            Err(e) => return Err(e),
        }
        part.on_append();
        if topic == OFFSETS_TOPIC {
            b.groups().complete_txn(*index, meta.producer_id, commit);
        }
    }
    Ok(())
}
