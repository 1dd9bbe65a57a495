//! DescribeConfigs (key 32) v1–v4, AlterConfigs (key 33) v0–v2 and
//! IncrementalAlterConfigs (key 44) v0–v1, for topics (resource type 2). The broker
//! (resource type 4) can be described; its settings are read-only at run time (they come
//! from the config file, environment and flags).

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

use super::{blocking, sb, Ctx};
use crate::errors::{code, KafkaError};
use crate::topic_config::{self, ConfigSource, TOPIC_CONFIGS};

pub const DESCRIBE_MIN_VERSION: i16 = 1;
pub const DESCRIBE_MAX_VERSION: i16 = 4;
pub const ALTER_MIN_VERSION: i16 = 0;
pub const ALTER_MAX_VERSION: i16 = 2;
pub const INCREMENTAL_MIN_VERSION: i16 = 0;
pub const INCREMENTAL_MAX_VERSION: i16 = 1;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// One effective topic config.
pub struct Effective {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
}

/// Every topic config with its effective value and where it came from.
pub fn effective(overrides: &BTreeMap<String, String>, broker: &BTreeMap<String, String>) -> Vec<Effective> {
    TOPIC_CONFIGS
        .iter()
        .map(|d| {
            let (v, source) = topic_config::resolve(d, overrides, broker);
            Effective { name: d.name, value: v.to_string(), source }
        })
        .collect()
}

type Refusal = (KafkaError, String);

pub fn describe(ctx: &Ctx, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let b = &ctx.broker;
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let keys: Option<Vec<String>> = r.configuration_keys.map(|k| k.iter().map(|s| s.to_string()).collect());
            let wanted = |n: &str| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == n));
            let mut out = DescribeConfigsResult::default().with_resource_type(r.resource_type).with_resource_name(r.resource_name.clone());
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
                            let (v, source) = topic_config::resolve(d, &t.configs, &b.config.settings);
                            let mut e = entry(ctx, d.name, v, source, false, d.config_type as i8, d.doc, req.include_documentation);
                            if req.include_synonyms {
                                e.synonyms = synonyms(d, &t.configs, &b.config.settings);
                            }
                            e
                        })
                        .collect()),
                },
                RESOURCE_BROKER if name.is_empty() || name == b.config.node_id.to_string() => Ok(b
                    .config
                    .effective_settings()
                    .into_iter()
                    .filter(|(n, _, _)| wanted(n))
                    .map(|(n, v, set)| {
                        let source = if set { ConfigSource::StaticBroker } else { ConfigSource::Default };
                        entry(ctx, n, &v, source, true, broker_setting_type(n, &v) as i8, "", false)
                    })
                    .collect()),
                RESOURCE_BROKER => Err((KafkaError::InvalidRequest, format!("broker '{name}' is not this broker ({})", b.config.node_id))),
                t => Err((KafkaError::InvalidRequest, format!("resource type {t} is not supported; use 2 (topic) or 4 (broker)"))),
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

/// The type of a broker setting: a topic default's own type, else read off its value.
fn broker_setting_type(name: &str, value: &str) -> topic_config::ConfigType {
    use topic_config::ConfigType;
    if let Some(d) = TOPIC_CONFIGS.iter().find(|d| d.broker_name == name) {
        return d.config_type;
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

fn synonyms(
    d: &topic_config::TopicConfigDef,
    overrides: &BTreeMap<String, String>,
    broker: &BTreeMap<String, String>,
) -> Vec<DescribeConfigsSynonym> {
    let mut out = Vec::new();
    if let Some(v) = overrides.get(d.name) {
        out.push(DescribeConfigsSynonym::default().with_name(sb(d.name)).with_value(Some(sb(v.clone()))).with_source(ConfigSource::Topic as i8));
    }
    if let Some(v) = broker.get(d.broker_name) {
        out.push(DescribeConfigsSynonym::default().with_name(sb(d.broker_name)).with_value(Some(sb(v.clone()))).with_source(ConfigSource::StaticBroker as i8));
    }
    out.push(DescribeConfigsSynonym::default().with_name(sb(d.broker_name)).with_value(Some(sb(d.default))).with_source(ConfigSource::Default as i8));
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

fn alterable_topic(ctx: &Ctx, resource_type: i8, name: &str) -> Result<BTreeMap<String, String>, Refusal> {
    unauthorized(ctx, AclOperation::AlterConfigs, resource_type, name).map_or(Ok(()), Err)?;
    match resource_type {
        RESOURCE_TOPIC => ctx
            .broker
            .topic(name)
            .map(|t| t.configs)
            .ok_or_else(|| (KafkaError::UnknownTopicOrPartition, format!("topic '{name}' does not exist"))),
        RESOURCE_BROKER => Err((KafkaError::InvalidRequest, "broker settings are read-only at run time: set them in the config file, RUNNEL_* environment or flags, and restart".into())),
        t => Err((KafkaError::InvalidRequest, format!("resource type {t} is not supported; use 2 (topic)"))),
    }
}

/// Computes a topic's new overrides from its current ones with `edit`, validates them,
/// and stores them unless `validate_only`. Read, edit and write happen under the metadata
/// lock, so concurrent alters of one topic never lose each other's changes.
async fn apply(
    ctx: &Ctx,
    name: &str,
    edit: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Refusal> + Send + 'static,
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
        let outcome = match alterable_topic(ctx, r.resource_type, &name) {
            Err(e) => Err(e),
            Ok(_) => {
                // AlterConfigs replaces the whole override set; a null value removes it.
                let configs: BTreeMap<String, String> =
                    r.configs.iter().filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string()))).collect();
                apply(ctx, &name, move |_| Ok(configs), req.validate_only).await
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
        let outcome = match alterable_topic(ctx, r.resource_type, &name) {
            Err(e) => Err(e),
            Ok(_) => {
                let ops: Vec<(i8, String, Option<String>)> =
                    r.configs.iter().map(|c| (c.config_operation, c.name.to_string(), c.value.as_ref().map(|v| v.to_string()))).collect();
                let broker_settings = ctx.broker.config.settings.clone();
                apply(ctx, &name, move |current| incremental(current, &ops, &broker_settings), req.validate_only).await
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

/// Applies IncrementalAlterConfigs operations (op, name, value) to a topic's `current`
/// overrides.
fn incremental(
    current: &BTreeMap<String, String>,
    ops: &[(i8, String, Option<String>)],
    broker_settings: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut configs = current.clone();
    for (op, key, value) in ops {
        let is_list = topic_config::def(key).is_some_and(|d| d.config_type == topic_config::ConfigType::List);
        match (*op, value) {
            (OP_SET, Some(v)) => {
                configs.insert(key.clone(), v.clone());
            }
            (OP_DELETE, _) => {
                configs.remove(key);
            }
            (OP_APPEND | OP_SUBTRACT, Some(v)) if is_list => {
                let current = configs.get(key).cloned().unwrap_or_else(|| {
                    topic_config::resolve(topic_config::def(key).expect("list def"), &BTreeMap::new(), broker_settings).0.to_string()
                });
                let mut items: Vec<String> = current.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
                for item in v.split(',').filter(|s| !s.is_empty()) {
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
