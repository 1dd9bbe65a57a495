//! CreatePartitions (key 37) v0–v3: grow a topic's partition count; `validate_only`. The
//! internal `__consumer_offsets` is refused with INVALID_REQUEST.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use runnel_metadata::acl::AclOperation;

use super::{blocking, sb, Ctx};
use crate::errors::{code, KafkaError};
use crate::group::is_internal_topic;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 3;

pub async fn handle(ctx: &Ctx, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let node = ctx.broker.config.node_id;
    let mut results = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let outcome: Result<(), (KafkaError, String)> = match ctx.broker.topic(&name) {
            _ if !ctx.may_topic(AclOperation::Alter, &name) => {
                Err((KafkaError::TopicAuthorizationFailed, format!("not authorized to alter topic '{name}'")))
            }
            None => Err((KafkaError::UnknownTopicOrPartition, format!("topic '{name}' does not exist"))),
            Some(_) if is_internal_topic(&name) => {
                Err((KafkaError::InvalidRequest, format!("'{name}' is an internal topic; its partitions cannot be changed")))
            }
            Some(topic) if t.count <= topic.partitions as i32 => Err((KafkaError::InvalidPartitions, format!(
                "topic '{name}' has {} partitions; the new count must be larger, got {}",
                topic.partitions, t.count
            ))),
            Some(_) if t.count > super::create_topics::MAX_PARTITIONS_PER_TOPIC => Err((KafkaError::InvalidPartitions, format!(
                "a topic may have at most {} partitions, got {}",
                super::create_topics::MAX_PARTITIONS_PER_TOPIC, t.count
            ))),
            Some(topic) => {
                let added = (t.count - topic.partitions as i32) as usize;
                match &t.assignments {
                    Some(a) if a.len() != added => Err((KafkaError::InvalidReplicaAssignment, format!(
                        "{} assignments given for {added} new partitions", a.len()
                    ))),
                    Some(a) if a.iter().any(|x| x.broker_ids.iter().any(|b| b.0 != node)) => {
                        Err((KafkaError::InvalidReplicaAssignment, format!("this cluster has only broker {node}")))
                    }
                    _ if req.validate_only => Ok(()),
                    _ => {
                        let broker = ctx.broker.clone();
                        let (n, count) = (name.clone(), t.count as u32);
                        blocking(move || broker.create_partitions(&n, count))
                            .await
                            .map_err(|e| match e {
                                crate::state::StateError::PartitionLimit { .. } => (KafkaError::PolicyViolation, e.to_string()),
                                e => (KafkaError::KafkaStorageError, e.to_string()),
                            })
                    }
                }
            }
        };
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name);
        if let Err((e, msg)) = outcome {
            r = r.with_error_code(code(e)).with_error_message(Some(sb(msg)));
        }
        results.push(r);
    }
    CreatePartitionsResponse::default().with_results(results)
}
