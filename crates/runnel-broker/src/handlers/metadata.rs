//! Metadata (key 3) v0–v13: the live brokers and the controller (this broker alone on a
//! single node), each partition's leader, replicas and ISR from the metadata image (a
//! partition whose leader is fenced has no leader: LEADER_NOT_AVAILABLE); topics by name
//! (or by id, v10+); auto-creation per
//! `auto.create.topics.enable` and the request's `allow_auto_topic_creation` (v4+).
//!
//! With the authorizer on, as Kafka: a listing of all topics leaves out those the
//! principal may not DESCRIBE; a named one it may not describe is TOPIC_AUTHORIZATION_FAILED
//! (whether it exists or not, so nothing is disclosed); auto-creation needs CREATE on the
//! cluster or on the topic (else TOPIC_AUTHORIZATION_FAILED).

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use runnel_metadata::acl::{AclOperation, ResourceType, CLUSTER_NAME};
use runnel_metadata::{TopicImage, Uuid};

use super::{blocking, create_topics, sb, Ctx};
use crate::cluster;
use crate::errors::{code, KafkaError};
use crate::state::Broker;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 13;

pub async fn handle(ctx: &Ctx, req: MetadataRequest) -> MetadataResponse {
    let b = &ctx.broker;
    let brokers = cluster::listed_brokers(b, &ctx.session.listener)
        .into_iter()
        .map(|l| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(l.id))
                .with_host(sb(l.host))
                .with_port(l.port)
                .with_rack(l.rack.map(sb))
        })
        .collect();
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(sb(b.cluster_id.clone())))
        .with_controller_id(BrokerId(cluster::controller_id(b)))
        .with_cluster_authorized_operations(match req.include_cluster_authorized_operations {
            true => ctx.authorized_operations(ResourceType::Cluster, CLUSTER_NAME),
            false => i32::MIN,
        });
    let topic_operations = req.include_topic_authorized_operations;
    let allow_create = b.config.auto_create_topics() && (ctx.version < 4 || req.allow_auto_topic_creation);
    let requested = match req.topics {
        Some(t) if !(ctx.version == 0 && t.is_empty()) => t,
        _ => {
            let image = b.image();
            let allowed = ctx.topics_allowed(AclOperation::Describe, image.topics().map(|t| t.name.as_str()));
            resp.topics = image.topics().filter(|t| allowed.contains(&t.name)).map(|t| topic_response(b, t)).collect();
            return with_topic_operations(ctx, resp, topic_operations);
        }
    };
    let may_create_any = allow_create && ctx.may_cluster(AclOperation::Create);
    for t in requested {
        // A topic id (v10+) wins over the name: the Java client asks by id with the name
        // left as "" rather than null, as Kafka accepts.
        let name = if t.topic_id.is_nil() { t.name } else { None };
        let entry = match name {
            Some(name) => {
                let name = name.0.to_string();
                match b.topic(&name) {
                    _ if !ctx.may_topic(AclOperation::Describe, &name) => {
                        error_topic(Some(name), Uuid::nil(), KafkaError::TopicAuthorizationFailed)
                    }
                    Some(topic) => topic_response(b, &topic),
                    None if allow_create && !may_create_any && !ctx.may_topic(AclOperation::Create, &name) => {
                        error_topic(Some(name), Uuid::nil(), KafkaError::TopicAuthorizationFailed)
                    }
                    None if allow_create => auto_create(ctx, name).await,
                    None => error_topic(Some(name), Uuid::nil(), KafkaError::UnknownTopicOrPartition),
                }
            }
            None => match b.topic_by_id(&t.topic_id) {
                // Topic ids are not secret: the id goes back with the refusal.
                Some(topic) if !ctx.may_topic(AclOperation::Describe, &topic.name) => {
                    error_topic(None, t.topic_id, KafkaError::TopicAuthorizationFailed)
                }
                Some(topic) => topic_response(b, &topic),
                None => error_topic(None, t.topic_id, KafkaError::UnknownTopicId),
            },
        };
        resp.topics.push(entry);
    }
    with_topic_operations(ctx, resp, topic_operations)
}

/// When the request asks (v8+), each named topic's operations this principal may do, as
/// Kafka fills them in: for every topic answered except those refused for authorization.
fn with_topic_operations(ctx: &Ctx, mut resp: MetadataResponse, asked: bool) -> MetadataResponse {
    if asked {
        for t in &mut resp.topics {
            if let (Some(name), false) = (&t.name, t.error_code == code(KafkaError::TopicAuthorizationFailed)) {
                t.topic_authorized_operations = ctx.authorized_operations(ResourceType::Topic, name);
            }
        }
    }
    resp
}

async fn auto_create(ctx: &Ctx, name: String) -> MetadataResponseTopic {
    let broker = ctx.broker.clone();
    let partitions = broker.config.num_partitions();
    let n = name.clone();
    let created = blocking(move || create_topics::create_checked(&broker, &n, partitions as i32, -1, Default::default(), false)).await;
    match created {
        Ok(_) => {
            tracing::info!(topic = %name, partitions, client_id = %ctx.client_id, "auto-created topic");
            match ctx.broker.topic(&name) {
                Some(t) => topic_response(&ctx.broker, &t),
                None => error_topic(Some(name), Uuid::nil(), KafkaError::UnknownTopicOrPartition),
            }
        }
        // Lost a race with another creator: answer with what exists now.
        Err((KafkaError::TopicAlreadyExists, _)) => match ctx.broker.topic(&name) {
            Some(t) => topic_response(&ctx.broker, &t),
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

fn topic_response(b: &Broker, t: &TopicImage) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(sb(t.name.clone()))))
        .with_topic_id(t.topic_id)
        .with_is_internal(crate::group::is_internal_topic(&t.name))
        .with_topic_authorized_operations(i32::MIN)
        .with_partitions(
            (0..t.partitions as i32)
                .map(|p| {
                    let v = cluster::partition_view(b, &t.topic_id, p);
                    let ids = |v: Vec<i32>| v.into_iter().map(BrokerId).collect();
                    MetadataResponsePartition::default()
                        .with_error_code(if v.leader < 0 { code(KafkaError::LeaderNotAvailable) } else { 0 })
                        .with_partition_index(p)
                        .with_leader_id(BrokerId(v.leader))
                        .with_leader_epoch(v.leader_epoch)
                        .with_replica_nodes(ids(v.replicas))
                        .with_isr_nodes(ids(v.isr))
                })
                .collect(),
        )
}
