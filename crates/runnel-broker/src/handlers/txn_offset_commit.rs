//! TxnOffsetCommit (key 28) v0–v4: offsets a transactional producer commits for a
//! consumer group (`send_offsets_to_transaction`). They are written to `__consumer_offsets`
//! in the transaction and count only once its COMMIT marker is written (see the group
//! coordinator's `txn_offsets`). The transaction must be ongoing with the group's offsets
//! partition in it (AddOffsetsToTxn first), else INVALID_TXN_STATE; an old epoch is
//! PRODUCER_FENCED. From v3 the group's generation and member are checked (KIP-447).
//! Per partition: UNKNOWN_TOPIC_OR_PARTITION, OFFSET_METADATA_TOO_LARGE, as OffsetCommit.
//! v5 (transactions v2, the group added implicitly) is not served.

use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use runnel_metadata::acl::AclOperation;

use super::offset_commit::{committed_offset, Checked};
use super::{blocking, Ctx};
use crate::errors::KafkaError;
use crate::group::{now_ms, TxnCommitter};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 4;

/// `committed_leader_epoch` from this version on.
const LEADER_EPOCH_VERSION: i16 = 2;
/// Generation, member and instance id from this version on.
const GROUP_METADATA_VERSION: i16 = 3;

pub async fn handle(ctx: &Ctx, req: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let now = now_ms();
    let max_metadata = ctx.broker.config.offset_metadata_max_bytes();
    let mut checked = Checked::default();
    let mut topics: Vec<TxnOffsetCommitResponseTopic> = Vec::with_capacity(req.topics.len());
    // WRITE on the transactional id, READ on the group (every partition refused), then
    // READ on each topic, as Kafka.
    let refused = if !ctx.may_txn(AclOperation::Write, &req.transactional_id.0) {
        Some(KafkaError::TransactionalIdAuthorizationFailed)
    } else if !ctx.may_group(AclOperation::Read, &req.group_id.0) {
        Some(KafkaError::GroupAuthorizationFailed)
    } else {
        None
    };
    for (slot, t) in req.topics.into_iter().enumerate() {
        topics.push(TxnOffsetCommitResponseTopic::default().with_name(t.name.clone()));
        let denied = refused.or_else(|| (!ctx.may_topic(AclOperation::Read, &t.name.0)).then_some(KafkaError::TopicAuthorizationFailed));
        for p in t.partitions {
            if let Some(e) = denied {
                checked.refuse(slot, p.partition_index, e);
                continue;
            }
            let epoch = if ctx.version >= LEADER_EPOCH_VERSION { p.committed_leader_epoch } else { -1 };
            let offset = committed_offset(p.committed_offset, epoch, p.committed_metadata, now, None);
            checked.add(ctx, slot, &t.name.0, p.partition_index, offset, max_metadata);
        }
    }
    let with_group = ctx.version >= GROUP_METADATA_VERSION;
    let (member_id, instance_id) = if with_group {
        (req.member_id.to_string(), req.group_instance_id.map(|s| s.to_string()))
    } else {
        (String::new(), None)
    };
    let generation = if with_group { req.generation_id } else { -1 };
    let b = ctx.broker.clone();
    let (id, group, producer) = (req.transactional_id.0.to_string(), req.group_id.0.to_string(), (req.producer_id.0, req.producer_epoch));
    let to_commit = std::mem::take(&mut checked.to_commit);
    if refused.is_some() {
        for (slot, partition, error) in checked.answers(Ok(())) {
            topics[slot].partitions.push(TxnOffsetCommitResponsePartition::default().with_partition_index(partition).with_error_code(error));
        }
        return TxnOffsetCommitResponse::default().with_topics(topics);
    }
    let verdict = blocking(move || {
        let who = TxnCommitter { producer_id: producer.0, producer_epoch: producer.1, member_id: &member_id, instance_id: instance_id.as_deref(), generation };
        let partition = b.groups().partition_for(&group);
        b.txns().with_offsets_txn(&id, producer, partition, || b.groups().commit_txn(&group, &who, to_commit))
    })
    .await;
    if let Err(e) = verdict {
        tracing::debug!(client_id = %ctx.client_id, error = ?e, "TxnOffsetCommit refused");
    }
    for (slot, partition, error) in checked.answers(verdict) {
        topics[slot].partitions.push(TxnOffsetCommitResponsePartition::default().with_partition_index(partition).with_error_code(error));
    }
    TxnOffsetCommitResponse::default().with_topics(topics)
}
