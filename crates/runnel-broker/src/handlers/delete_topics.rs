//! DeleteTopics (key 20) v1–v6: by name, or by topic id (v6). The topic's data is removed
//! from disk.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use runnel_metadata::Uuid;

use super::{blocking, sb, Ctx};
use crate::errors::{code, KafkaError};

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
        let image = ctx.broker.image();
        let topic = match &name {
            Some(n) => image.topic(n),
            None => image.topic_by_id(&id),
        };
        let mut r = DeletableTopicResult::default().with_name(name.clone().map(|n| TopicName(sb(n)))).with_topic_id(id);
        match topic {
            None => {
                let e = if name.is_some() { KafkaError::UnknownTopicOrPartition } else { KafkaError::UnknownTopicId };
                r = r.with_error_code(code(e)).with_error_message(Some(sb("no such topic")));
            }
            Some(t) => {
                let (tname, tid) = (t.name.clone(), t.topic_id);
                r = r.with_name(Some(TopicName(sb(tname.clone())))).with_topic_id(tid);
                let broker = ctx.broker.clone();
                let n = tname.clone();
                if let Err(e) = blocking(move || broker.delete_topic(&n)).await {
                    tracing::error!(topic = %tname, error = %e, "delete failed");
                    r = r.with_error_code(code(KafkaError::KafkaStorageError)).with_error_message(Some(sb(e.to_string())));
                } else {
                    tracing::info!(topic = %tname, client_id = %ctx.client_id, "deleted topic");
                }
            }
        }
        responses.push(r);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
