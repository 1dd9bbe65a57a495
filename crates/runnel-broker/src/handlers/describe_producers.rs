//! DescribeProducers (key 61) v0: the active idempotent producers of each named partition,
//! read from the partition's producer state (id, epoch, last sequence and timestamp,
//! coordinator epoch, open transaction's first offset or -1). An unknown partition is
//! UNKNOWN_TOPIC_OR_PARTITION.

use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use runnel_metadata::acl::AclOperation;

use super::Ctx;
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub fn handle(ctx: &Ctx, req: DescribeProducersRequest) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let denied = !ctx.may_topic(AclOperation::Read, &t.name.0);
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&p| {
                    let r = PartitionResponse::default().with_partition_index(p);
                    if denied {
                        return r.with_error_code(code(KafkaError::TopicAuthorizationFailed));
                    }
                    let Some(part) = ctx.broker.partition(&t.name.0, p) else {
                        return r.with_error_code(code(KafkaError::UnknownTopicOrPartition));
                    };
                    let log = part.log();
                    let active = log
                        .producer_state()
                        .producers()
                        .map(|e| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(e.producer_id))
                                .with_producer_epoch(i32::from(e.epoch))
                                .with_last_sequence(e.last_seq())
                                .with_last_timestamp(e.last_timestamp)
                                .with_coordinator_epoch(e.coordinator_epoch)
                                .with_current_txn_start_offset(e.txn_first_offset.unwrap_or(-1))
                        })
                        .collect();
                    r.with_active_producers(active)
                })
                .collect();
            TopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
