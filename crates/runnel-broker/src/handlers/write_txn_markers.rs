//! WriteTxnMarkers (key 27) v1, the version Kafka 4 serves: a transaction coordinator on
//! another broker asks this one, as the leader of the named partitions, to append each
//! transaction's marker (COMMIT or ABORT, under the producer id and epoch, with the
//! coordinator epoch) and answers once the partition's in-sync replicas have it (Kafka
//! appends markers with acks=all). In `__consumer_offsets` the group coordinator then
//! decides the transaction's pending offsets.
//!
//! A cluster action, as in Kafka: CLUSTER_ACTION on the cluster, else every partition is
//! CLUSTER_AUTHORIZATION_FAILED. Per partition: UNKNOWN_TOPIC_OR_PARTITION if this broker
//! has no replica of it, NOT_LEADER_OR_FOLLOWER if it does not lead it,
//! INVALID_PRODUCER_EPOCH for a marker older than the producer's epoch in the partition,
//! TRANSACTION_COORDINATOR_FENCED for one older than the coordinator epoch it saw,
//! NOT_ENOUGH_REPLICAS, REQUEST_TIMED_OUT, KAFKA_STORAGE_ERROR.

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use runnel_metadata::acl::AclOperation;

use super::{blocking, Ctx};
use crate::errors::{code, KafkaError};
use crate::txn::{append_marker, marker_replicated, Decision, MARKER_REPLICATION_TIMEOUT};

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 1;

/// Most partitions in one request (each is an append and a wait).
const MAX_PARTITIONS: usize = 10_000;

pub async fn handle(ctx: &Ctx, req: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let allowed = ctx.may_cluster(AclOperation::ClusterAction);
    let total: usize = req.markers.iter().flat_map(|m| &m.topics).map(|t| t.partition_indexes.len()).sum();
    let refused = if !allowed {
        Some(KafkaError::ClusterAuthorizationFailed)
    } else if total > MAX_PARTITIONS {
        Some(KafkaError::InvalidRequest)
    } else {
        None
    };
    let mut markers = Vec::with_capacity(req.markers.len());
    for m in req.markers {
        let d = Decision {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            commit: m.transaction_result,
            coordinator_epoch: m.coordinator_epoch,
        };
        let mut topics = Vec::with_capacity(m.topics.len());
        for t in m.topics {
            let mut partitions = Vec::with_capacity(t.partition_indexes.len());
            for p in t.partition_indexes {
                let error = match refused {
                    Some(e) => Some(e),
                    None => write_one(ctx, &t.name.0, p, d).await.err(),
                };
                if let Some(e) = error {
                    tracing::debug!(topic = %t.name.0.escape_debug(), partition = p, producer_id = d.producer_id, error = ?e, "transaction marker refused");
                }
                partitions.push(WritableTxnMarkerPartitionResult::default().with_partition_index(p).with_error_code(error.map_or(0, code)));
            }
            topics.push(WritableTxnMarkerTopicResult::default().with_name(t.name).with_partitions(partitions));
        }
        markers.push(WritableTxnMarkerResult::default().with_producer_id(m.producer_id).with_topics(topics));
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}

/// Appends one marker to a partition this broker leads and waits for its in-sync replicas.
async fn write_one(ctx: &Ctx, topic: &str, index: i32, d: Decision) -> Result<(), KafkaError> {
    let part = ctx.broker.partition(topic, index).ok_or(KafkaError::UnknownTopicOrPartition)?;
    let b = ctx.broker.clone();
    let p = part.clone();
    let offset = blocking(move || append_marker(&b, &p, &d)).await.map_err(|e| e.kafka())?;
    if !part.is_replicated() {
        return Ok(());
    }
    marker_replicated(part.wait_replicated(offset, MARKER_REPLICATION_TIMEOUT).await).map_err(|e| e.kafka())
}
