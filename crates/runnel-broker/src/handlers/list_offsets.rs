//! ListOffsets (key 2) v1–v10: earliest (-2, and -4 earliest-local), latest (-1), max
//! timestamp (-3, v7+), and the first offset at or after a timestamp (through the time
//! index). Cluster mode: the leader answers (NOT_LEADER_OR_FOLLOWER elsewhere; a
//! `current_leader_epoch` (v4+) older than ours is FENCED_LEADER_EPOCH, newer
//! UNKNOWN_LEADER_EPOCH), "latest" is the high watermark, and offsets carry the leader epoch.
//! With `isolation_level` read_committed (v2+) the latest offset is the last stable
//! offset (never above the high watermark), and a timestamp lookup finds only offsets below it, as in Kafka.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use runnel_metadata::acl::AclOperation;

use super::{blocking, Ctx};
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 10;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

/// `isolation_level` of a read_committed consumer.
const READ_COMMITTED: i8 = 1;

pub async fn handle(ctx: &Ctx, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let denied = !ctx.may_topic(AclOperation::Describe, &name);
        let mut partitions = Vec::new();
        let mut seen = std::collections::HashMap::new();
        for p in &t.partitions {
            *seen.entry(p.partition_index).or_insert(0u32) += 1;
        }
        for p in t.partitions {
            let mut r = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index).with_timestamp(-1).with_offset(-1);
            match ctx.broker.partition(&name, p.partition_index) {
                // As Kafka: a partition named twice gets one INVALID_REQUEST answer.
                _ if seen[&p.partition_index] > 1 => {
                    if partitions.iter().any(|q: &ListOffsetsPartitionResponse| q.partition_index == p.partition_index) {
                        continue;
                    }
                    r.error_code = code(KafkaError::InvalidRequest);
                    if ctx.version >= 4 {
                        r.leader_epoch = -1;
                    }
                }
                _ if denied => r.error_code = code(KafkaError::TopicAuthorizationFailed),
                None => r.error_code = code(KafkaError::UnknownTopicOrPartition),
                Some(part) => match part.check_leader(if ctx.version >= 4 { p.current_leader_epoch } else { -1 }) {
                    Err(e) => r.error_code = code(super::fetch::not_serving_code(e)),
                    Ok(epoch) => {
                    let ts = p.timestamp;
                    let committed = req.isolation_level == READ_COMMITTED;
                    let found = blocking(move || {
                        let hw = part.high_watermark();
                        let log = part.log();
                        let visible = if committed { log.last_stable_offset().min(hw) } else { hw };
                        match ts {
                            LATEST => Ok(Some((-1, visible))),
                            EARLIEST | EARLIEST_LOCAL => Ok(Some((-1, log.log_start_offset()))),
                            MAX_TIMESTAMP => log.max_timestamp(),
                            ts if ts >= 0 => log.offset_for_timestamp(ts).map(|o| o.filter(|(off, _)| *off < visible).map(|(off, t)| (t, off))),
                            _ => Ok(None),
                        }
                    })
                    .await;
                    match found {
                        Ok(Some((timestamp, offset))) => {
                            r = r.with_timestamp(timestamp).with_offset(offset);
                            if ctx.version >= 4 {
                                r.leader_epoch = epoch;
                            }
                        }
                        // No record at or after that time (or a special timestamp we do not serve): -1.
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(topic = %name, error = %e, "list offsets failed");
                            r.error_code = code(KafkaError::KafkaStorageError);
                        }
                    }
                    }
                },
            }
            partitions.push(r);
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    ListOffsetsResponse::default().with_topics(topics)
}
