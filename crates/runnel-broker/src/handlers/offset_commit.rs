//! OffsetCommit (key 8) v2–v9: stores committed offsets (with leader epoch and metadata)
//! in `__consumer_offsets`. Per partition: UNKNOWN_TOPIC_OR_PARTITION for a partition that
//! does not exist, OFFSET_METADATA_TOO_LARGE over `offset.metadata.max.bytes`; the group's
//! verdict (generation, member, state) applies to all the others. A simple commit
//! (generation -1, no member id) is accepted while the group is Empty or unknown.

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::{blocking, Ctx};
use crate::errors::{code, KafkaError};
use crate::group::{now_ms, CommittedOffset, OffsetToCommit};

pub const MIN_VERSION: i16 = 2;
pub const MAX_VERSION: i16 = 9;

/// `retention_time_ms` exists up to this version.
const LAST_RETENTION_VERSION: i16 = 4;
/// `committed_leader_epoch` from this version on.
const LEADER_EPOCH_VERSION: i16 = 6;
/// `group_instance_id` from this version on.
const INSTANCE_ID_VERSION: i16 = 7;

pub async fn handle(ctx: &Ctx, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let now = now_ms();
    let max_metadata = ctx.broker.config.offset_metadata_max_bytes();
    let expire = (ctx.version <= LAST_RETENTION_VERSION && req.retention_time_ms >= 0).then(|| now.saturating_add(req.retention_time_ms));
    // (topic slot, partition, pre-check error) in request order.
    let mut slots: Vec<(usize, i32, Option<KafkaError>)> = Vec::new();
    let mut to_commit = Vec::new();
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::with_capacity(req.topics.len());
    for (slot, t) in req.topics.into_iter().enumerate() {
        let name = t.name.0.to_string();
        topics.push(OffsetCommitResponseTopic::default().with_name(t.name.clone()));
        for p in t.partitions {
            let offset = CommittedOffset {
                offset: p.committed_offset,
                leader_epoch: if ctx.version >= LEADER_EPOCH_VERSION { p.committed_leader_epoch } else { -1 },
                metadata: p.committed_metadata.map(|m| m.to_string()).unwrap_or_default(),
                commit_timestamp: now,
                expire_timestamp: expire,
            };
            let pre = match checked(ctx, &name, p.partition_index, offset, max_metadata) {
                Ok(o) => {
                    to_commit.push(o);
                    None
                }
                Err(e) => Some(e),
            };
            slots.push((slot, p.partition_index, pre));
        }
    }
    let group = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    let instance_id = if ctx.version >= INSTANCE_ID_VERSION { req.group_instance_id.map(|s| s.to_string()) } else { None };
    let generation = req.generation_id_or_member_epoch;
    let version = ctx.version;
    let coordinator = ctx.broker.groups().clone();
    let verdict = blocking(move || coordinator.commit(&group, &member_id, instance_id.as_deref(), generation, version, to_commit)).await;
    if let Err(e) = verdict {
        tracing::debug!(client_id = %ctx.client_id, error = ?e, "OffsetCommit refused");
    }
    for (slot, partition, pre) in slots {
        let error = pre.or(verdict.err());
        topics[slot]
            .partitions
            .push(OffsetCommitResponsePartition::default().with_partition_index(partition).with_error_code(error.map_or(0, code)));
    }
    OffsetCommitResponse::default().with_topics(topics)
}

/// The per-partition checks of an offset commit (OffsetCommit, TxnOffsetCommit): the
/// partition must exist and the metadata fit `offset.metadata.max.bytes`.
pub(super) fn checked(ctx: &Ctx, topic: &str, partition: i32, offset: CommittedOffset, max_metadata: usize) -> Result<OffsetToCommit, KafkaError> {
    if ctx.broker.partition(topic, partition).is_none() {
        return Err(KafkaError::UnknownTopicOrPartition);
    }
    if offset.metadata.len() > max_metadata {
        return Err(KafkaError::OffsetMetadataTooLarge);
    }
    Ok(OffsetToCommit { topic: topic.to_string(), partition, offset })
}
