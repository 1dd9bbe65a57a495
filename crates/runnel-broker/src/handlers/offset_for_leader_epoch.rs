//! OffsetForLeaderEpoch (key 23) v2–v4 (Kafka 4 serves no older ones) (KIP-101, KIP-279, KIP-320): for each partition and
//! leader epoch, the largest epoch at most the requested one that the leader's log knows and
//! the offset where it ends (the next epoch's start, or the log end for the latest). Followers
//! ask it to find where their log parts from a new leader's; consumers, to detect a
//! truncated log after a leader change.
//!
//! Answered by the partition's leader (NOT_LEADER_OR_FOLLOWER elsewhere); a
//! `current_leader_epoch` older than ours is FENCED_LEADER_EPOCH, newer
//! UNKNOWN_LEADER_EPOCH. An epoch above every known one answers -1/-1 (Kafka's undefined).
//! A single node has one epoch, 0, ending at the log end.

use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use runnel_metadata::acl::AclOperation;

use super::{blocking, Ctx};
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 2;
pub const MAX_VERSION: i16 = 4;

pub async fn handle(ctx: &Ctx, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    // CLUSTER_ACTION on the cluster (followers), else DESCRIBE on each topic, as Kafka.
    let cluster_action = ctx.may_cluster(AclOperation::ClusterAction);
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        let denied = !cluster_action && !ctx.may_topic(AclOperation::Describe, &t.topic.0);
        for p in t.partitions {
            let r = EpochEndOffset::default().with_partition(p.partition).with_leader_epoch(-1).with_end_offset(-1);
            if denied {
                partitions.push(r.with_error_code(code(KafkaError::TopicAuthorizationFailed)));
                continue;
            }
            let Some(part) = ctx.broker.partition(&t.topic.0, p.partition) else {
                partitions.push(r.with_error_code(code(KafkaError::UnknownTopicOrPartition)));
                continue;
            };
            if let Err(e) = part.check_leader(p.current_leader_epoch) {
                partitions.push(r.with_error_code(code(super::fetch::not_serving_code(e))));
                continue;
            }
            // Reading the checkpoint the first time is file I/O.
            let (epoch, end) = blocking(move || part.epoch_end(p.leader_epoch)).await;
            partitions.push(r.with_leader_epoch(epoch).with_end_offset(end));
        }
        topics.push(OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions));
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
