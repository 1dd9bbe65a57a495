//! OffsetCommit (key 8) v2–v9: stores committed offsets (with leader epoch and metadata)
//! in `__consumer_offsets`. Per partition: UNKNOWN_TOPIC_OR_PARTITION for a partition that
//! does not exist, OFFSET_METADATA_TOO_LARGE over `offset.metadata.max.bytes`; the group's
//! verdict (generation, member, state) applies to all the others. A simple commit
//! (generation -1, no member id) is accepted while the group is Empty or unknown.

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use kafka_protocol::protocol::StrBytes;

use runnel_metadata::acl::AclOperation;

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
    let mut checked = Checked::default();
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::with_capacity(req.topics.len());
    // READ on the group (else every partition is GROUP_AUTHORIZATION_FAILED), then READ
    // on each topic (else its partitions are TOPIC_AUTHORIZATION_FAILED), as Kafka.
    let group_denied = !ctx.may_group(AclOperation::Read, &req.group_id.0);
    for (slot, t) in req.topics.into_iter().enumerate() {
        let name = t.name.0.to_string();
        topics.push(OffsetCommitResponseTopic::default().with_name(t.name.clone()));
        let denied = if group_denied {
            Some(KafkaError::GroupAuthorizationFailed)
        } else {
            (!ctx.may_topic(AclOperation::Read, &name)).then_some(KafkaError::TopicAuthorizationFailed)
        };
        for p in t.partitions {
            if let Some(e) = denied {
                checked.refuse(slot, p.partition_index, e);
                continue;
            }
            let epoch = if ctx.version >= LEADER_EPOCH_VERSION { p.committed_leader_epoch } else { -1 };
            let offset = committed_offset(p.committed_offset, epoch, p.committed_metadata, now, expire);
            checked.add(ctx, slot, &name, p.partition_index, offset, max_metadata);
        }
    }
    let group = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    let instance_id = if ctx.version >= INSTANCE_ID_VERSION { req.group_instance_id.map(|s| s.to_string()) } else { None };
    let generation = req.generation_id_or_member_epoch;
    let version = ctx.version;
    let coordinator = ctx.broker.groups().clone();
    let to_commit = std::mem::take(&mut checked.to_commit);
    let verdict = blocking(move || coordinator.commit(&group, &member_id, instance_id.as_deref(), generation, version, to_commit)).await;
    if let Err(e) = verdict {
        tracing::debug!(client_id = %ctx.client_id, error = ?e, "OffsetCommit refused");
    }
    for (slot, partition, error) in checked.answers(verdict) {
        topics[slot].partitions.push(OffsetCommitResponsePartition::default().with_partition_index(partition).with_error_code(error));
    }
    OffsetCommitResponse::default().with_topics(topics)
}

/// The partitions of an offset commit (OffsetCommit, TxnOffsetCommit), checked one by one
/// in request order: each must exist and its metadata fit `offset.metadata.max.bytes`.
#[derive(Default)]
pub(super) struct Checked {
    /// (topic slot, partition, its own error) in request order.
    slots: Vec<(usize, i32, Option<KafkaError>)>,
    pub to_commit: Vec<OffsetToCommit>,
}

impl Checked {
    pub fn add(&mut self, ctx: &Ctx, slot: usize, topic: &str, partition: i32, offset: CommittedOffset, max_metadata: usize) {
        // The topic's partitions as the metadata has them: in a cluster the coordinator
        // need not host them.
        let exists = ctx.broker.topic(topic).is_some_and(|t| partition >= 0 && (partition as u32) < t.partitions);
        let error = if !exists {
            Some(KafkaError::UnknownTopicOrPartition)
        } else if offset.metadata.len() > max_metadata {
            Some(KafkaError::OffsetMetadataTooLarge)
        } else {
            self.to_commit.push(OffsetToCommit { topic: topic.to_string(), partition, offset });
            None
        };
        self.slots.push((slot, partition, error));
    }

    /// Answers a partition with `error` without committing it (not authorized).
    pub fn refuse(&mut self, slot: usize, partition: i32, error: KafkaError) {
        self.slots.push((slot, partition, Some(error)));
    }

    /// (topic slot, partition, error code): a partition's own error, else the group's verdict.
    pub fn answers(self, verdict: Result<(), KafkaError>) -> impl Iterator<Item = (usize, i32, i16)> {
        self.slots.into_iter().map(move |(slot, p, pre)| (slot, p, pre.or(verdict.err()).map_or(0, code)))
    }
}

/// A committed offset as a request states it, committed `now`.
pub(super) fn committed_offset(offset: i64, leader_epoch: i32, metadata: Option<StrBytes>, now: i64, expire: Option<i64>) -> CommittedOffset {
    CommittedOffset { offset, leader_epoch, metadata: metadata.map(|m| m.to_string()).unwrap_or_default(), commit_timestamp: now, expire_timestamp: expire }
}
