//! CreateTopics (key 19) v2–v7: Kafka's name rules, partition and replication checks,
//! per-topic configs, `validate_only`. Every refusal carries Kafka's error code and a
//! message that says what to change.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use runnel_metadata::Uuid;

use runnel_metadata::acl::AclOperation;

use super::{blocking, configs, sb, Ctx};
use crate::errors::{code, KafkaError};
use crate::state::{Broker, StateError};
use crate::topic_name;

pub const MIN_VERSION: i16 = 2;
pub const MAX_VERSION: i16 = 7;

/// The most partitions a topic may have. Every partition is a directory with open files,
/// so a request for more (say 2^31 - 1, one int32 on the wire) is refused up front with
/// INVALID_PARTITIONS instead of running the broker out of file descriptors.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

/// A refusal: Kafka's error and a message for the user.
pub type Refusal = (KafkaError, String);

pub async fn handle(ctx: &Ctx, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *counts.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(req.topics.len());
    // CREATE on the cluster, or on each topic (else TOPIC_AUTHORIZATION_FAILED), as Kafka.
    let may_create_any = ctx.may_cluster(AclOperation::Create);
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(t.name.clone()).with_topic_config_error_code(0);
        let outcome = if counts[&name] > 1 {
            Err((KafkaError::InvalidRequest, format!("topic '{name}' appears more than once in the request")))
        } else if !may_create_any && !ctx.may_topic(AclOperation::Create, &name) {
            Err((KafkaError::TopicAuthorizationFailed, format!("not authorized to create topic '{name}'")))
        } else if !t.assignments.is_empty() && (t.num_partitions != -1 || t.replication_factor != -1) {
            Err((KafkaError::InvalidRequest, "give either replica assignments or partitions and replication factor, not both".into()))
        } else {
            let node = ctx.broker.config.node_id;
            let partitions = if t.assignments.is_empty() { t.num_partitions } else { t.assignments.len() as i32 };
            let bad_assignment = t.assignments.iter().enumerate().find(|(i, a)| {
                a.partition_index != *i as i32 || a.broker_ids.len() != 1 || a.broker_ids[0].0 != node
            });
            if let Some((_, a)) = bad_assignment {
                Err((KafkaError::InvalidReplicaAssignment, format!(
                    "assignment for partition {} names brokers {:?}; this cluster has only broker {node}, and partitions must be 0..n",
                    a.partition_index, a.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>()
                )))
            } else {
                let configs: Result<BTreeMap<_, _>, Refusal> = t
                    .configs
                    .iter()
                    .map(|c| match &c.value {
                        Some(v) => Ok((c.name.to_string(), v.to_string())),
                        None => Err((KafkaError::InvalidConfig, format!("config '{}' has no value", c.name))),
                    })
                    .collect();
                match configs {
                    Err(e) => Err(e),
                    Ok(configs) => {
                        let broker = ctx.broker.clone();
                        let n = name.clone();
                        let rf = if t.assignments.is_empty() { t.replication_factor } else { 1 };
                        let validate_only = req.validate_only;
                        blocking(move || create_checked(&broker, &n, partitions, rf, configs, validate_only)).await
                    }
                }
            }
        };
        match outcome {
            Ok(id) => {
                let topic = ctx.broker.topic(&name);
                let (partitions, overrides) = match (&topic, req.validate_only) {
                    (Some(t), false) => (t.partitions as i32, t.configs.clone()),
                    _ => (if t.num_partitions == -1 { ctx.broker.config.num_partitions() as i32 } else { t.num_partitions }, Default::default()),
                };
                let rf = match t.replication_factor {
                    -1 => ctx.broker.config.default_replication_factor(),
                    r => r,
                };
                result = result.with_topic_id(id).with_num_partitions(partitions).with_replication_factor(rf);
                if ctx.version >= 5 && !ctx.may_topic(AclOperation::DescribeConfigs, &name) {
                    // Created, but its configs are not the principal's to see.
                    result.topic_config_error_code = code(KafkaError::TopicAuthorizationFailed);
                } else if ctx.version >= 5 {
                    result.configs = Some(
                        configs::effective(&overrides, &ctx.broker.settings())
                            .into_iter()
                            .map(|e| {
                                CreatableTopicConfigs::default()
                                    .with_name(sb(e.name))
                                    .with_value(Some(sb(e.value)))
                                    .with_config_source(e.source as i8)
                            })
                            .collect(),
                    );
                }
                if !req.validate_only {
                    tracing::info!(topic = %name, partitions, client_id = %ctx.client_id, "created topic");
                }
            }
            Err((e, msg)) => {
                result = result.with_error_code(code(e)).with_error_message(Some(sb(msg))).with_num_partitions(-1).with_replication_factor(-1);
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Validates and (unless `validate_only`) creates a topic. `partitions` and
/// `replication_factor` may be -1 for the broker default.
pub fn create_checked(
    broker: &Broker,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<Uuid, Refusal> {
    topic_name::validate(name).map_err(|m| (KafkaError::InvalidTopicException, m))?;
    let partitions = match partitions {
        -1 => broker.config.num_partitions() as i32,
        p if (1..=MAX_PARTITIONS_PER_TOPIC).contains(&p) => p,
        p if p > MAX_PARTITIONS_PER_TOPIC => {
            return Err((KafkaError::InvalidPartitions, format!(
                "number of partitions must be at most {MAX_PARTITIONS_PER_TOPIC}, got {p}"
            )))
        }
        p => return Err((KafkaError::InvalidPartitions, format!("number of partitions must be ≥ 1, got {p}"))),
    };
    let rf = match replication_factor {
        -1 => broker.config.default_replication_factor(),
        r => r,
    };
    let live = crate::cluster::listed_brokers(broker, "").len();
    if rf < 1 {
        return Err((KafkaError::InvalidReplicationFactor, format!("replication factor must be ≥ 1, got {rf}")));
    }
    if rf as usize > live {
        return Err((KafkaError::InvalidReplicationFactor, format!(
            "replication factor {rf} is larger than the number of live brokers ({live})"
        )));
    }
    for (k, v) in &configs {
        crate::topic_config::validate(k, v).map_err(|m| (KafkaError::InvalidConfig, m))?;
    }
    if broker.topic(name).is_some() {
        return Err((KafkaError::TopicAlreadyExists, format!("topic '{name}' already exists")));
    }
    if validate_only {
        return Ok(Uuid::nil());
    }
    broker.create_replicated_topic(name, partitions as u32, rf as usize, configs).map_err(|e| match e {
        StateError::TopicExists(_) => (KafkaError::TopicAlreadyExists, e.to_string()),
        StateError::ReplicationFactor { .. } => (KafkaError::InvalidReplicationFactor, e.to_string()),
        StateError::PartitionLimit { .. } => (KafkaError::PolicyViolation, e.to_string()),
        StateError::Quorum(_) => (KafkaError::RequestTimedOut, format!("could not create topic '{name}': {e}")),
        e => (KafkaError::KafkaStorageError, format!("could not create topic '{name}': {e}")),
    })
}
