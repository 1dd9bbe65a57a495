//! DeleteTopics (key 20) v1–v6: by name, or by topic id (v6). The topic's data is removed
//! from disk, and every group's committed offsets of it (as Kafka does). The internal
//! `__consumer_offsets` is refused with INVALID_REQUEST: the coordinator keeps its log open.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use runnel_metadata::Uuid;

use runnel_metadata::acl::AclOperation;

use super::{blocking, sb, Ctx};
use crate::errors::{code, KafkaError};
use crate::group::is_internal_topic;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 6;

pub async fn handle(ctx: &Ctx, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, Uuid)> = if ctx.version >= 6 {
        req.topics.into_iter().map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)).collect()
    } else {
        req.topic_names.into_iter().map(|n| (Some(n.0.to_string()), Uuid::nil())).collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let topic = match &name {
            Some(n) => ctx.broker.topic(n),
            None => ctx.broker.topic_by_id(&id),
        };
        let mut r = DeletableTopicResult::default().with_name(name.clone().map(|n| TopicName(sb(n)))).with_topic_id(id);
        // As Kafka: a topic named by id that the principal may not DESCRIBE keeps its name
        // hidden; one it may not DELETE is TOPIC_AUTHORIZATION_FAILED, existing or not.
        let target = name.clone().or_else(|| topic.as_ref().map(|t| t.name.clone()));
        let denied = match &target {
            Some(n) if name.is_none() && !ctx.may_topic(AclOperation::Describe, n) => Some(None),
            Some(n) if !ctx.may_topic(AclOperation::Delete, n) => Some(target.clone()),
            _ => None,
        };
        if let Some(shown) = denied {
            r = r
                .with_name(shown.map(|n| TopicName(sb(n))))
                .with_error_code(code(KafkaError::TopicAuthorizationFailed))
                .with_error_message(Some(sb("not authorized to delete this topic")));
            responses.push(r);
            continue;
        }
        match topic {
            None => {
                let e = if name.is_some() { KafkaError::UnknownTopicOrPartition } else { KafkaError::UnknownTopicId };
                r = r.with_error_code(code(e)).with_error_message(Some(sb("no such topic")));
            }
            Some(t) if is_internal_topic(&t.name) => {
                r = r
                    .with_name(Some(TopicName(sb(t.name.clone()))))
                    .with_topic_id(t.topic_id)
                    .with_error_code(code(KafkaError::InvalidRequest))
                    .with_error_message(Some(sb(format!("'{}' is an internal topic and cannot be deleted", t.name))));
            }
            Some(t) => {
                let (tname, tid) = (t.name.clone(), t.topic_id);
                r = r.with_name(Some(TopicName(sb(tname.clone())))).with_topic_id(tid);
                let broker = ctx.broker.clone();
                let n = tname.clone();
                let deleted = blocking(move || {
                    broker.delete_topic(&n)?;
                    broker.groups().remove_offsets_for_topic(&n);
                    Ok::<_, crate::state::StateError>(())
                });
                match deleted.await {
                    // Deleted by a concurrent request meanwhile: nothing is committed here.
                    Err(crate::state::StateError::UnknownTopic(_)) => {
                        r = r.with_error_code(code(KafkaError::UnknownTopicOrPartition)).with_error_message(Some(sb("no such topic")));
                    }
                    Err(e) => {
                        tracing::error!(topic = %tname, error = %e, "delete failed");
                        r = r.with_error_code(code(KafkaError::KafkaStorageError)).with_error_message(Some(sb(e.to_string())));
                    }
                    Ok(()) => tracing::info!(topic = %tname, client_id = %ctx.client_id, "deleted topic"),
                }
            }
        }
        responses.push(r);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
