//! OffsetDelete (key 47) v0: removes committed offsets of a group. Refused per partition
//! with GROUP_SUBSCRIBED_TO_TOPIC while a live consumer group subscribes to the topic,
//! UNKNOWN_TOPIC_OR_PARTITION for a partition that does not exist; GROUP_ID_NOT_FOUND for
//! an unknown group, NON_EMPTY_GROUP for a live group of another protocol type.

use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use runnel_metadata::acl::AclOperation;

use super::{blocking, Ctx};
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub async fn handle(ctx: &Ctx, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = req.group_id.0.to_string();
    // DELETE on the group, then READ on each topic, as Kafka.
    if !ctx.may_group(AclOperation::Delete, &group) {
        return OffsetDeleteResponse::default().with_error_code(code(KafkaError::GroupAuthorizationFailed));
    }
    let mut known = Vec::new();
    let mut slots: Vec<(usize, i32, Option<KafkaError>)> = Vec::new();
    let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::with_capacity(req.topics.len());
    for (slot, t) in req.topics.into_iter().enumerate() {
        let name = t.name.0.to_string();
        topics.push(OffsetDeleteResponseTopic::default().with_name(t.name.clone()));
        let denied = !ctx.may_topic(AclOperation::Read, &name);
        for p in t.partitions {
            let exists = ctx.broker.topic(&name).is_some_and(|t| p.partition_index >= 0 && (p.partition_index as u32) < t.partitions);
            if denied {
                slots.push((slot, p.partition_index, Some(KafkaError::TopicAuthorizationFailed)));
            } else if exists {
                known.push((name.clone(), p.partition_index));
                slots.push((slot, p.partition_index, None));
            } else {
                slots.push((slot, p.partition_index, Some(KafkaError::UnknownTopicOrPartition)));
            }
        }
    }
    let coordinator = ctx.broker.groups().clone();
    let outcome = blocking(move || coordinator.delete_offsets(&group, known)).await;
    let results = match outcome {
        Err(e) => return OffsetDeleteResponse::default().with_error_code(code(e)),
        Ok(r) => r,
    };
    let mut results = results.into_iter();
    for (slot, partition, pre) in slots {
        let error = match pre {
            Some(e) => Some(e),
            None => results.next().and_then(|(_, _, e)| e),
        };
        topics[slot]
            .partitions
            .push(OffsetDeleteResponsePartition::default().with_partition_index(partition).with_error_code(error.map_or(0, code)));
    }
    OffsetDeleteResponse::default().with_topics(topics)
}
