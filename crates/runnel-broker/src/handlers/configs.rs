//! DescribeConfigs (key 32) v1–v4, AlterConfigs (key 33) v0–v2 and
//! IncrementalAlterConfigs (key 44) v0–v1, for topics (resource type 2), brokers (4: one
//! broker by id, or the cluster-wide default with an empty name) and groups (32).
//! Broker and group configs are stored in the metadata log; which broker configs are
//! dynamic, and how values are checked, is `crate::dynamic_config`'s.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest, AlterConfigsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};

use runnel_metadata::acl::AclOperation;
use runnel_metadata::ConfigResource;

use super::{blocking, sb, Ctx};
use crate::dynamic_config::{self, BrokerConfigKind, BrokerSettings, GROUP_CONFIGS, STORED_ONLY};
use crate::errors::{code, KafkaError};
use crate::topic_config::{self, ConfigSource, ConfigType, TOPIC_CONFIGS};

pub const DESCRIBE_MIN_VERSION: i16 = 1;
pub const DESCRIBE_MAX_VERSION: i16 = 4;
pub const ALTER_MIN_VERSION: i16 = 0;
pub const ALTER_MAX_VERSION: i16 = 2;
pub const INCREMENTAL_MIN_VERSION: i16 = 0;
pub const INCREMENTAL_MAX_VERSION: i16 = 1;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;

/// One effective topic config.
pub struct Effective {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
}

/// Every topic config with its effective value and where it came from.
pub fn effective(overrides: &BTreeMap<String, String>, broker: &BrokerSettings) -> Vec<Effective> {
    TOPIC_CONFIGS
        .iter()
        .map(|d| {
            let (v, source) = topic_value(d, overrides, broker);
            Effective { name: d.name, value: v.to_string(), source }
        })
        .collect()
}

/// A topic config's value and source: the topic's override, else the broker level that
/// sets its broker name (dynamic, cluster default, static), else the built-in default.
fn topic_value<'a>(
    d: &'static topic_config::TopicConfigDef,
    overrides: &'a BTreeMap<String, String>,
    broker: &'a BrokerSettings,
) -> (&'a str, ConfigSource) {
    if let Some(v) = overrides.get(d.name) {
        return (v, ConfigSource::Topic);
    }
    match broker.levels(d.broker_name).first() {
        Some((source, v)) => (v, *source),
        None => (d.default, ConfigSource::Default),
    }
}

type Refusal = (KafkaError, String);

pub fn describe(ctx: &Ctx, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let b = &ctx.broker;
    let settings = b.settings();
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            // Null or empty: every config (as Kafka reads it).
            let keys: Option<Vec<String>> =
                r.configuration_keys.filter(|k| !k.is_empty()).map(|k| k.iter().map(|s| s.to_string()).collect());
            let wanted = |n: &str| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == n));
            let mut out = DescribeConfigsResult::default().with_resource_type(r.resource_type).with_resource_name(r.resource_name.clone());
            let synonyms_wanted = req.include_synonyms;
            let configs: Result<Vec<DescribeConfigsResourceResult>, Refusal> = match r.resource_type {
                t if unauthorized(ctx, AclOperation::DescribeConfigs, t, &name).is_some() => {
                    Err(unauthorized(ctx, AclOperation::DescribeConfigs, t, &name).expect("just checked"))
                }
                RESOURCE_TOPIC => match b.topic(&name) {
                    None => Err((KafkaError::UnknownTopicOrPartition, format!("topic '{name}' does not exist"))),
                    Some(t) => Ok(TOPIC_CONFIGS
                        .iter()
                        .filter(|d| wanted(d.name))
                        .map(|d| {
                            let (v, source) = topic_value(d, &t.configs, &settings);
                            let mut e = entry(ctx, d.name, v, source, false, d.config_type as i8, d.doc, req.include_documentation);
                            if synonyms_wanted {
                                e.synonyms = topic_synonyms(d, &t.configs, &settings);
                            }
                            e
                        })
                        .collect()),
                },
                RESOURCE_BROKER if name.is_empty() => Ok(settings
                    .cluster_default
                    .iter()
                    .filter(|(n, _)| wanted(n))
                    .map(|(n, v)| {
                        let mut e = entry(ctx, n, v, ConfigSource::DynamicDefaultBroker, false, broker_type(n, v) as i8, "", false);
                        if synonyms_wanted {
                            e.synonyms = vec![synonym(n, v, ConfigSource::DynamicDefaultBroker)];
                        }
                        e
                    })
                    .collect()),
                RESOURCE_BROKER if is_this_broker(&name, b.config.node_id) => Ok(broker_entries()
                    .into_iter()
                    .filter(|(n, _)| wanted(n))
                    .map(|(n, default)| {
                        let levels = settings.levels(n);
                        let (value, source) = levels.first().map_or((default, ConfigSource::Default), |(s, v)| (*v, *s));
                        let read_only = dynamic_config::broker_kind(n).effect().is_none();
                        let mut e = entry(ctx, n, value, source, read_only, broker_type(n, value) as i8, "", false);
                        if synonyms_wanted {
                            e.synonyms = levels.iter().map(|(s, v)| synonym(n, v, *s)).collect();
                            e.synonyms.push(synonym(n, default, ConfigSource::Default));
                        }
                        e
                    })
                    .collect()),
                RESOURCE_BROKER => Err((KafkaError::InvalidRequest, format!("broker '{name}' is not this broker ({})", b.config.node_id))),
                RESOURCE_GROUP if name.is_empty() => Err((KafkaError::InvalidRequest, "a group config resource needs a group id".into())),
                RESOURCE_GROUP => {
                    let stored = b.with_image(|i| i.resource_configs(ConfigResource::Group, &name));
                    Ok(GROUP_CONFIGS
                        .iter()
                        .filter(|d| wanted(d.name))
                        .map(|d| {
                            let default = d.default.to_string();
                            let (value, source) = stored.get(d.name).map_or((&default, ConfigSource::Default), |v| (v, ConfigSource::Group));
                            let mut e = entry(ctx, d.name, value, source, false, ConfigType::Int as i8, d.doc, req.include_documentation);
                            if synonyms_wanted {
                                e.synonyms = stored.get(d.name).map(|v| synonym(d.name, v, ConfigSource::Group)).into_iter().collect();
                                e.synonyms.push(synonym(d.default_name, &default, ConfigSource::Default));
                            }
                            e
                        })
                        .collect())
                }
                t => Err((KafkaError::InvalidRequest, format!("resource type {t} is not supported; use 2 (topic), 4 (broker) or 32 (group)"))),
            };
            match configs {
                Ok(c) => out.configs = c,
                Err((e, m)) => {
                    out.error_code = code(e);
                    out.error_message = Some(sb(m));
                }
            }
            out
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Every broker config DescribeConfigs lists, with its built-in default: Runnel's
/// settings, the topic defaults, and Kafka's dynamic configs Runnel stores.
fn broker_entries() -> Vec<(&'static str, &'static str)> {
    crate::config::BROKER_SETTINGS
        .iter()
        .map(|(n, d, _)| (*n, *d))
        .chain(TOPIC_CONFIGS.iter().map(|d| (d.broker_name, d.default)))
        .chain(STORED_ONLY.iter().map(|d| (d.name, d.default)))
        .collect()
}

fn synonym(name: &str, value: &str, source: ConfigSource) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default().with_name(sb(name.to_string())).with_value(Some(sb(value.to_string()))).with_source(source as i8)
}

/// The type of a broker setting: its declared type, else read off its value.
fn broker_type(name: &str, value: &str) -> ConfigType {
    match dynamic_config::broker_kind(name) {
        BrokerConfigKind::TopicDefault(d) => return d.config_type,
        BrokerConfigKind::StoredOnly(d) => return d.config_type,
        _ => {}
    }
    match value {
        "true" | "false" => ConfigType::Boolean,
        v if v.parse::<i32>().is_ok() => ConfigType::Int,
        v if v.parse::<i64>().is_ok() => ConfigType::Long,
        _ => ConfigType::String,
    }
}

#[allow(clippy::too_many_arguments)]
fn entry(
    ctx: &Ctx,
    name: &str,
    value: &str,
    source: ConfigSource,
    read_only: bool,
    config_type: i8,
    doc: &str,
    include_doc: bool,
) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default()
        .with_name(sb(name))
        .with_value(Some(sb(value)))
        .with_read_only(read_only)
        .with_config_source(source as i8);
    if ctx.version >= 3 {
        e.config_type = config_type;
        e.documentation = include_doc.then(|| sb(doc));
    }
    e
}

/// A topic config's synonyms, most specific first: the topic override, each broker
/// level that sets its broker name, the built-in default.
fn topic_synonyms(
    d: &topic_config::TopicConfigDef,
    overrides: &BTreeMap<String, String>,
    broker: &BrokerSettings,
) -> Vec<DescribeConfigsSynonym> {
    let mut out = Vec::new();
    if let Some(v) = overrides.get(d.name) {
        out.push(synonym(d.name, v, ConfigSource::Topic));
    }
    for (source, v) in broker.levels(d.broker_name) {
        out.push(synonym(d.broker_name, v, source));
    }
    out.push(synonym(d.broker_name, d.default, ConfigSource::Default));
    out
}

/// Checks a resource named in an alter request and returns the topic's current overrides.
/// The refusal when the principal may not do `op` (DESCRIBE_CONFIGS, ALTER_CONFIGS) on a
/// topic (TOPIC_AUTHORIZATION_FAILED) or the broker (CLUSTER_AUTHORIZATION_FAILED).
fn unauthorized(ctx: &Ctx, op: AclOperation, resource_type: i8, name: &str) -> Option<Refusal> {
    match resource_type {
        RESOURCE_TOPIC if !ctx.may_topic(op, name) => {
            Some((KafkaError::TopicAuthorizationFailed, format!("not authorized to {} topic '{name}'", verb(op))))
        }
        RESOURCE_BROKER if !ctx.may_cluster(op) => {
            Some((KafkaError::ClusterAuthorizationFailed, format!("not authorized to {} the cluster", verb(op))))
        }
        RESOURCE_GROUP if !ctx.may_group(op, name) => {
            Some((KafkaError::GroupAuthorizationFailed, format!("not authorized to {} group '{name}'", verb(op))))
        }
        _ => None,
    }
}

fn verb(op: AclOperation) -> &'static str {
    if op == AclOperation::AlterConfigs {
        "alter the configs of"
    } else {
        "describe the configs of"
    }
}

/// What an alter request changes.
enum Target {
    Topic(String),
    /// A broker (by id, or "" for the cluster-wide default) or a group.
    Resource(ConfigResource, String),
}

/// Whether a BROKER resource name is this broker's id, read as a number as Kafka reads it.
fn is_this_broker(name: &str, node_id: i32) -> bool {
    name.parse::<i32>().is_ok_and(|id| id == node_id)
}

/// Checks a resource named in an alter request: authorized, existing, and (a broker)
/// this broker or the cluster-wide default.
fn target(ctx: &Ctx, resource_type: i8, name: &str) -> Result<Target, Refusal> {
    unauthorized(ctx, AclOperation::AlterConfigs, resource_type, name).map_or(Ok(()), Err)?;
    match resource_type {
        RESOURCE_TOPIC if ctx.broker.topic(name).is_none() => {
            Err((KafkaError::UnknownTopicOrPartition, format!("topic '{name}' does not exist")))
        }
        RESOURCE_TOPIC => Ok(Target::Topic(name.to_string())),
        RESOURCE_BROKER if name.is_empty() => Ok(Target::Resource(ConfigResource::Broker, String::new())),
        // Stored under the id as Runnel writes it ("01" names broker 1, as Kafka parses it).
        RESOURCE_BROKER if is_this_broker(name, ctx.broker.config.node_id) => {
            Ok(Target::Resource(ConfigResource::Broker, ctx.broker.config.node_id.to_string()))
        }
        RESOURCE_BROKER => Err((
            KafkaError::InvalidRequest,
            format!("broker '{name}' is not this broker ({}): send a broker's configs to that broker, or use '' for every broker", ctx.broker.config.node_id),
        )),
        RESOURCE_GROUP if name.is_empty() => Err((KafkaError::InvalidRequest, "a group config resource needs a group id".into())),
        RESOURCE_GROUP if name.len() > MAX_GROUP_NAME => {
            Err((KafkaError::InvalidRequest, format!("dynamic configs are kept for group ids of at most {MAX_GROUP_NAME} bytes")))
        }
        RESOURCE_GROUP => Ok(Target::Resource(ConfigResource::Group, name.to_string())),
        t => Err((KafkaError::InvalidRequest, format!("resource type {t} is not supported; use 2 (topic), 4 (broker) or 32 (group)"))),
    }
}

/// Most groups that may have dynamic configs, and the longest group id that may: any
/// client may set them (with no authorizer), and nothing removes them but a client.
const MAX_GROUP_CONFIGS: usize = 10_000;
const MAX_GROUP_NAME: usize = 255;

/// Validates and stores the configs `edit` computes for `target` (unless `validate_only`).
async fn apply(
    ctx: &Ctx,
    target: Target,
    edit: impl Fn(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Refusal> + Send + 'static,
    validate_only: bool,
) -> Result<(), Refusal> {
    match target {
        Target::Topic(name) => apply_topic(ctx, &name, edit, validate_only).await,
        Target::Resource(resource, name) => apply_resource(ctx, resource, name, edit, validate_only).await,
    }
}

/// Broker and group configs: read, edit, check and write under the metadata lock (one
/// node) or through the quorum. Broker refusals are INVALID_REQUEST, group refusals
/// INVALID_CONFIG, as Kafka answers them.
async fn apply_resource(
    ctx: &Ctx,
    resource: ConfigResource,
    name: String,
    edit: impl Fn(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Refusal> + Send + 'static,
    validate_only: bool,
) -> Result<(), Refusal> {
    let broker = ctx.broker.clone();
    let n = name.clone();
    // On the blocking pool: reading the image waits for the metadata lock, held across
    // metadata fsyncs.
    let outcome = blocking(move || {
        // Read before the write (not under its lock): concurrent alters may pass the bound
        // by a few, which keeps it a bound.
        let groups_full = resource == ConfigResource::Group
            && broker.with_image(|i| i.resource_config_count(ConfigResource::Group)) >= MAX_GROUP_CONFIGS;
        let checked = move |current: &BTreeMap<String, String>| {
            let configs = edit(current)?;
            if groups_full && current.is_empty() && !configs.is_empty() {
                return Err((KafkaError::PolicyViolation, format!("{MAX_GROUP_CONFIGS} groups have dynamic configs already, the most this broker keeps; delete some first")));
            }
            for (k, v) in configs.iter().filter(|(k, v)| current.get(*k) != Some(*v)) {
                match resource {
                    ConfigResource::Broker => dynamic_config::validate_broker(k, v).map_err(|m| (KafkaError::InvalidRequest, m))?,
                    ConfigResource::Group => dynamic_config::validate_group(k, v).map_err(|m| (KafkaError::InvalidConfig, m))?,
                }
            }
            Ok(configs)
        };
        if validate_only {
            let current = broker.with_image(|i| i.resource_configs(resource, &n));
            return Ok(checked(&current).map(|_| ()));
        }
        broker.update_resource_configs(resource, &n, checked)
    })
    .await
    .map_err(|e| (KafkaError::KafkaStorageError, e.to_string()))?;
    outcome?;
    if !validate_only {
        tracing::info!(resource = ?resource, name = %name.escape_debug(), client_id = %ctx.client_id, "altered dynamic configs");
    }
    Ok(())
}

/// Computes a topic's new overrides from its current ones with `edit`, validates them,
/// and stores them unless `validate_only`. Read, edit and write happen under the metadata
/// lock, so concurrent alters of one topic never lose each other's changes.
async fn apply_topic(
    ctx: &Ctx,
    name: &str,
    edit: impl Fn(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Refusal> + Send + 'static,
    validate_only: bool,
) -> Result<(), Refusal> {
    let internal = name.to_string();
    let checked = move |current: &BTreeMap<String, String>| {
        let configs = edit(current)?;
        for (k, v) in &configs {
            topic_config::validate(k, v).map_err(|m| (KafkaError::InvalidConfig, m))?;
        }
        if crate::group::is_internal_topic(&internal) && !configs.get("cleanup.policy").is_some_and(|p| p.split(',').any(|x| x.trim() == "compact")) {
            return Err((KafkaError::InvalidConfig, format!("{internal} must keep cleanup.policy=compact: retention would delete committed offsets")));
        }
        Ok(configs)
    };
    let broker = ctx.broker.clone();
    let n = name.to_string();
    let outcome = blocking(move || {
        if validate_only {
            let current = broker.topic(&n).map(|t| t.configs).ok_or_else(|| crate::state::StateError::UnknownTopic(n.clone()))?;
            return Ok(checked(&current).map(|_| ()));
        }
        broker.update_topic_configs(&n, checked)
    })
    .await
    .map_err(|e| match e {
        crate::state::StateError::UnknownTopic(_) => (KafkaError::UnknownTopicOrPartition, e.to_string()),
        e => (KafkaError::KafkaStorageError, e.to_string()),
    })?;
    outcome?;
    if !validate_only {
        tracing::info!(topic = %name, client_id = %ctx.client_id, "altered topic configs");
    }
    Ok(())
}

fn split(outcome: Result<(), Refusal>) -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err((e, m)) => (code(e), Some(sb(m))),
    }
}

pub async fn alter(ctx: &Ctx, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for r in req.resources {
        let name = r.resource_name.to_string();
        let outcome = match target(ctx, r.resource_type, &name) {
            Err(e) => Err(e),
            Ok(target) => {
                // AlterConfigs replaces the whole set of the resource; a null value removes it.
                let configs: BTreeMap<String, String> =
                    r.configs.iter().filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string()))).collect();
                apply(ctx, target, move |_| Ok(configs.clone()), req.validate_only).await
            }
        };
        let (error_code, error_message) = split(outcome);
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(error_code)
                .with_error_message(error_message)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub async fn incremental_alter(ctx: &Ctx, req: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for r in req.resources {
        let name = r.resource_name.to_string();
        let outcome = match target(ctx, r.resource_type, &name) {
            Err(e) => Err(e),
            Ok(target) => {
                let ops: Vec<(i8, String, Option<String>)> =
                    r.configs.iter().map(|c| (c.config_operation, c.name.to_string(), c.value.as_ref().map(|v| v.to_string()))).collect();
                let mut names: Vec<&str> = ops.iter().map(|(_, n, _)| n.as_str()).collect();
                names.sort_unstable();
                if names.windows(2).any(|w| w[0] == w[1]) {
                    // As Kafka: the resource is refused, the others of the request go ahead.
                    Err((KafkaError::InvalidRequest, "Error due to duplicate config keys".to_string()))
                } else {
                    let lists = list_bases(ctx, &target, &ops);
                    apply(ctx, target, move |current| incremental(current, &ops, &lists), req.validate_only).await
                }
            }
        };
        let (error_code, error_message) = split(outcome);
        responses.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(error_code)
                .with_error_message(error_message)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// The list configs that `ops` name, with the value APPEND and SUBTRACT start from when
/// the resource does not set them itself (the value a level below gives them).
fn list_bases(ctx: &Ctx, target: &Target, ops: &[(i8, String, Option<String>)]) -> BTreeMap<String, String> {
    let settings = ctx.broker.settings();
    let base = |key: &str| -> Option<String> {
        match target {
            Target::Topic(_) => topic_config::def(key)
                .filter(|d| d.config_type == ConfigType::List)
                .map(|d| topic_value(d, &BTreeMap::new(), &settings).0.to_string()),
            Target::Resource(ConfigResource::Broker, name) => {
                let default = match dynamic_config::broker_kind(key) {
                    BrokerConfigKind::TopicDefault(d) if d.config_type == ConfigType::List => d.default,
                    BrokerConfigKind::StoredOnly(d) if d.config_type == ConfigType::List => d.default,
                    _ => return None,
                };
                // The cluster default builds on the static setting; a broker on the cluster default.
                let below = if name.is_empty() { settings.static_settings.get(key) } else { settings.cluster_default.get(key).or(settings.static_settings.get(key)) };
                Some(below.map_or(default, String::as_str).to_string())
            }
            Target::Resource(ConfigResource::Group, _) => None,
        }
    };
    ops.iter().filter_map(|(_, key, _)| base(key).map(|v| (key.clone(), v))).collect()
}

/// Applies IncrementalAlterConfigs operations (op, name, value) to a resource's `current`
/// configs; `lists` holds the list configs among them with their inherited values.
fn incremental(
    current: &BTreeMap<String, String>,
    ops: &[(i8, String, Option<String>)],
    lists: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut configs = current.clone();
    for (op, key, value) in ops {
        match (*op, value) {
            (OP_SET, Some(v)) => {
                configs.insert(key.clone(), v.clone());
            }
            (OP_DELETE, _) => {
                configs.remove(key);
            }
            (OP_APPEND | OP_SUBTRACT, Some(v)) if lists.contains_key(key) => {
                let current = configs.get(key).cloned().unwrap_or_else(|| lists[key].clone());
                let mut items: Vec<String> = current.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
                for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if *op == OP_APPEND {
                        if !items.iter().any(|x| x == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|x| x != item);
                    }
                }
                configs.insert(key.clone(), items.join(","));
            }
            (OP_APPEND | OP_SUBTRACT, _) => {
                return Err((KafkaError::InvalidConfig, format!("APPEND and SUBTRACT apply only to list configs; '{key}' is not one")));
            }
            (OP_SET, None) => return Err((KafkaError::InvalidConfig, format!("SET of '{key}' needs a value"))),
            (op, _) => return Err((KafkaError::InvalidRequest, format!("unknown config operation {op}"))),
        }
    }
    Ok(configs)
}
