//! Metadata (key 3) v0–v13: this broker as the only broker and the leader of every
//! partition; topics by name (or by id, v10+); auto-creation per
//! `auto.create.topics.enable` and the request's `allow_auto_topic_creation` (v4+).

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use runnel_metadata::{TopicImage, Uuid};

use super::{blocking, create_topics, sb, Ctx};
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 13;

pub async fn handle(ctx: &Ctx, req: MetadataRequest) -> MetadataResponse {
    let b = &ctx.broker;
    let node = BrokerId(b.config.node_id);
    let mut resp = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(node)
            .with_host(sb(b.advertised.0.clone()))
            .with_port(b.advertised.1)])
        .with_cluster_id(Some(sb(b.cluster_id.clone())))
        .with_controller_id(node)
        .with_cluster_authorized_operations(i32::MIN);
    let allow_create = b.config.auto_create_topics() && (ctx.version < 4 || req.allow_auto_topic_creation);
    let requested = match req.topics {
        Some(t) if !(ctx.version == 0 && t.is_empty()) => t,
        _ => {
            let image = b.image();
            resp.topics = image.topics().map(|t| topic_response(t, node)).collect();
            return resp;
        }
    };
    for t in requested {
        // A topic id (v10+) wins over the name: the Java client asks by id with the name
        // left as "" rather than null, as Kafka accepts.
        let name = if t.topic_id.is_nil() { t.name } else { None };
        let entry = match name {
            Some(name) => {
                let name = name.0.to_string();
                match b.topic(&name) {
                    Some(topic) => topic_response(&topic, node),
                    None if allow_create => auto_create(ctx, name).await,
                    None => error_topic(Some(name), Uuid::nil(), KafkaError::UnknownTopicOrPartition),
                }
            }
            None => match b.topic_by_id(&t.topic_id) {
                Some(topic) => topic_response(&topic, node),
                None => error_topic(None, t.topic_id, KafkaError::UnknownTopicId),
            },
        };
        resp.topics.push(entry);
    }
    resp
}

async fn auto_create(ctx: &Ctx, name: String) -> MetadataResponseTopic {
    let broker = ctx.broker.clone();
    let partitions = broker.config.num_partitions();
    let n = name.clone();
    let created = blocking(move || create_topics::create_checked(&broker, &n, partitions as i32, 1, Default::default(), false)).await;
    match created {
        Ok(_) => {
            tracing::info!(topic = %name, partitions, client_id = %ctx.client_id, "auto-created topic");
            match ctx.broker.topic(&name) {
                Some(t) => topic_response(&t, BrokerId(ctx.broker.config.node_id)),
                None => error_topic(Some(name), Uuid::nil(), KafkaError::UnknownTopicOrPartition),
            }
        }
        // Lost a race with another creator: answer with what exists now.
        Err((KafkaError::TopicAlreadyExists, _)) => match ctx.broker.topic(&name) {
            Some(t) => topic_response(&t, BrokerId(ctx.broker.config.node_id)),
            None => error_topic(Some(name), Uuid::nil(), KafkaError::UnknownTopicOrPartition),
        },
        Err((e, _)) => error_topic(Some(name), Uuid::nil(), e),
    }
}

fn error_topic(name: Option<String>, id: Uuid, e: KafkaError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code(e))
        .with_name(name.map(|n| TopicName(sb(n))))
        .with_topic_id(id)
        .with_topic_authorized_operations(i32::MIN)
}

fn topic_response(t: &TopicImage, node: BrokerId) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(sb(t.name.clone()))))
        .with_topic_id(t.topic_id)
        .with_is_internal(crate::group::is_internal_topic(&t.name))
        .with_topic_authorized_operations(i32::MIN)
        .with_partitions(
            (0..t.partitions as i32)
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(node)
                        .with_leader_epoch(0)
                        .with_replica_nodes(vec![node])
                        .with_isr_nodes(vec![node])
                })
                .collect(),
        )
}
