//! Dynamic broker configs and group configs: which broker settings AlterConfigs and
//! IncrementalAlterConfigs may change at run time (for one broker, or for every broker
//! as the cluster-wide default), how their values are checked, which of them take effect
//! in Runnel, and the group configs of KIP-848 (resource type GROUP).
//!
//! The values live in the metadata log (`MetadataRecord::SetResourceConfigs`, Kafka's
//! ConfigRecord), so every node of a cluster sees them and they survive restarts. A
//! dynamic value wins over the cluster-wide default, which wins over the static setting
//! (config file, environment, flags), which wins over the built-in default (Kafka's order).
//! This module never does I/O.

use std::collections::BTreeMap;

use crate::config::{BROKER_SETTINGS, PER_LISTENER};
use crate::topic_config::{self, ConfigType, MAX_VALUE_LEN, TOPIC_CONFIGS};

/// Whether a dynamic broker config changes what Runnel does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Applied at once: the topic defaults (`log.retention.ms` …) of every partition
    /// without a topic override, and the broker settings in [`RUNNEL_DYNAMIC`].
    Applied,
    /// Kafka accepts it dynamically, Runnel has no such mechanism (Kerberos, Java thread
    /// pools): stored, described, and otherwise without effect.
    StoredOnly,
}

/// A dynamic broker config that is not a topic default.
#[derive(Debug)]
pub struct StoredDef {
    pub name: &'static str,
    pub default: &'static str,
    pub config_type: ConfigType,
    /// The smallest value a number may take.
    pub min: Option<i64>,
}

/// Kafka's dynamic broker configs that Runnel accepts and stores without acting on them
/// (Kafka 4.3 accepts each of them at run time; Runnel has no Kerberos and no Java
/// thread pools).
pub const STORED_ONLY: &[StoredDef] = &[
    StoredDef { name: "sasl.kerberos.min.time.before.relogin", default: "60000", config_type: ConfigType::Long, min: None },
    StoredDef { name: "sasl.kerberos.ticket.renew.window.factor", default: "0.8", config_type: ConfigType::Double, min: None },
    StoredDef { name: "sasl.kerberos.ticket.renew.jitter", default: "0.05", config_type: ConfigType::Double, min: None },
    StoredDef { name: "sasl.kerberos.kinit.cmd", default: "/usr/bin/kinit", config_type: ConfigType::String, min: None },
    StoredDef { name: "sasl.kerberos.service.name", default: "", config_type: ConfigType::String, min: None },
    StoredDef { name: "sasl.kerberos.principal.to.local.rules", default: "DEFAULT", config_type: ConfigType::List, min: None },
    StoredDef { name: "background.threads", default: "10", config_type: ConfigType::Int, min: Some(1) },
    StoredDef { name: "num.io.threads", default: "8", config_type: ConfigType::Int, min: Some(1) },
    StoredDef { name: "num.network.threads", default: "3", config_type: ConfigType::Int, min: Some(1) },
    StoredDef { name: "num.replica.fetchers", default: "1", config_type: ConfigType::Int, min: None },
    StoredDef { name: "num.recovery.threads.per.data.dir", default: "2", config_type: ConfigType::Int, min: Some(1) },
    StoredDef { name: "log.cleaner.threads", default: "1", config_type: ConfigType::Int, min: Some(0) },
];

/// Kafka's read-only broker configs that Runnel sets another way (flags such as
/// `--data-dir`, `--node-id`, `--controller-quorum`): refused as read-only, as Kafka
/// refuses them, rather than as unknown.
const KAFKA_READ_ONLY: &[&str] = &[
    "broker.id",
    "node.id",
    "log.dir",
    "log.dirs",
    "process.roles",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "controller.listener.names",
    "metadata.log.dir",
];

/// Runnel's own broker settings (of [`BROKER_SETTINGS`]) that are dynamic in Kafka and
/// that Runnel reads afresh at each use, so a dynamic value applies at once.
pub const RUNNEL_DYNAMIC: &[&str] = &["producer.id.expiration.ms"];

/// What a broker config name is, for a dynamic update.
pub enum BrokerConfigKind {
    /// A topic default (`log.segment.bytes` …): dynamic, applied at once.
    TopicDefault(&'static topic_config::TopicConfigDef),
    /// Dynamic in Kafka, stored only in Runnel.
    StoredOnly(&'static StoredDef),
    /// One of Runnel's settings that applies at once ([`RUNNEL_DYNAMIC`]).
    Setting,
    /// A setting Runnel reads once at start (Kafka's read-only configs, and the dynamic
    /// ones Runnel cannot change while running yet).
    ReadOnly,
    Unknown,
}

pub fn broker_kind(name: &str) -> BrokerConfigKind {
    if let Some(d) = TOPIC_CONFIGS.iter().find(|d| d.broker_name == name) {
        BrokerConfigKind::TopicDefault(d)
    } else if let Some(d) = STORED_ONLY.iter().find(|d| d.name == name) {
        BrokerConfigKind::StoredOnly(d)
    } else if RUNNEL_DYNAMIC.contains(&name) {
        BrokerConfigKind::Setting
    } else if BROKER_SETTINGS.iter().any(|(n, _, _)| *n == name)
        || KAFKA_READ_ONLY.contains(&name)
        || name.strip_prefix("listener.name.").and_then(|r| r.split_once('.')).is_some_and(|(_, s)| PER_LISTENER.contains(&s))
    {
        BrokerConfigKind::ReadOnly
    } else {
        BrokerConfigKind::Unknown
    }
}

impl BrokerConfigKind {
    pub fn effect(&self) -> Option<Effect> {
        match self {
            BrokerConfigKind::TopicDefault(_) | BrokerConfigKind::Setting => Some(Effect::Applied),
            BrokerConfigKind::StoredOnly(_) => Some(Effect::StoredOnly),
            _ => None,
        }
    }
}

/// Checks a dynamic broker config (refusals are Kafka's INVALID_REQUEST; the messages
/// follow Kafka's).
pub fn validate_broker(name: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE_LEN {
        return Err(format!("the value of {name} is {} bytes long; at most {MAX_VALUE_LEN} are accepted", value.len()));
    }
    match broker_kind(name) {
        BrokerConfigKind::TopicDefault(d) => {
            topic_config::validate(d.name, value).map_err(|e| format!("Invalid value {value} for configuration {name}: {e}"))
        }
        BrokerConfigKind::StoredOnly(d) => check_typed(name, value, d.config_type, d.min),
        BrokerConfigKind::Setting => crate::config::BrokerConfig::default()
            .check_broker_setting(name, value)
            .map_err(|e| format!("Invalid value {value} for configuration {name}: {}", e.0)),
        BrokerConfigKind::ReadOnly => Err(format!(
            "Cannot update these configs dynamically: [{name}] (Runnel reads it at start: set it in the config file, RUNNEL_* environment or flags, and restart)"
        )),
        // Kafka stores unknown names as custom configs; Runnel has no plugin that would
        // read them.
        BrokerConfigKind::Unknown => Err(format!("Unknown broker config name: {name}")),
    }
}

/// Checks a value against its type and smallest value, with Kafka's messages.
fn check_typed(name: &str, value: &str, config_type: ConfigType, min: Option<i64>) -> Result<(), String> {
    let bad = |why: &str| Err(format!("Invalid value {value} for configuration {name}: {why}"));
    let number = match config_type {
        ConfigType::Int => match value.trim().parse::<i32>() {
            Ok(n) => i64::from(n),
            Err(_) => return bad("Not a number of type INT"),
        },
        ConfigType::Long => match value.trim().parse::<i64>() {
            Ok(n) => n,
            Err(_) => return bad("Not a number of type LONG"),
        },
        ConfigType::Double => {
            return match value.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(()),
                _ => bad("Not a number of type DOUBLE"),
            }
        }
        ConfigType::Boolean => {
            return match value.trim().to_ascii_lowercase().as_str() {
                "true" | "false" => Ok(()),
                _ => bad("Expected value to be either true or false"),
            }
        }
        ConfigType::String | ConfigType::List => return Ok(()),
    };
    match min {
        Some(m) if number < m => bad(&format!("Value must be at least {m}")),
        _ => Ok(()),
    }
}

/// One group config (KIP-848): its range comes from broker settings of Kafka's, whose
/// defaults Runnel uses as fixed bounds.
#[derive(Debug)]
pub struct GroupConfigDef {
    pub name: &'static str,
    /// The broker setting that gives the default, and its value.
    pub default_name: &'static str,
    pub default: i32,
    pub min_name: &'static str,
    pub min: i32,
    pub max_name: &'static str,
    pub max: i32,
    pub doc: &'static str,
}

/// The group configs Runnel accepts. They are stored and described; Runnel's group
/// coordinator serves the classic protocol, whose members bring their own session
/// timeout, so they have no effect yet.
pub const GROUP_CONFIGS: &[GroupConfigDef] = &[
    GroupConfigDef {
        name: "consumer.session.timeout.ms",
        default_name: "group.consumer.session.timeout.ms",
        default: 45_000,
        min_name: "group.consumer.min.session.timeout.ms",
        min: 45_000,
        max_name: "group.consumer.max.session.timeout.ms",
        max: 60_000,
        doc: "Session timeout of the group's members under the consumer group protocol (KIP-848). Stored only: Runnel serves the classic protocol.",
    },
    GroupConfigDef {
        name: "consumer.heartbeat.interval.ms",
        default_name: "group.consumer.heartbeat.interval.ms",
        default: 5_000,
        min_name: "group.consumer.min.heartbeat.interval.ms",
        min: 5_000,
        max_name: "group.consumer.max.heartbeat.interval.ms",
        max: 15_000,
        doc: "Heartbeat interval of the group's members under the consumer group protocol (KIP-848). Stored only: Runnel serves the classic protocol.",
    },
];

/// Kafka's group configs for share and streams groups, which Runnel does not have.
const GROUP_NOT_SUPPORTED: &[&str] = &[
    "consumer.assignment.interval.ms",
    "share.assignment.interval.ms",
    "share.auto.offset.reset",
    "share.delivery.count.limit",
    "share.heartbeat.interval.ms",
    "share.isolation.level",
    "share.partition.max.record.locks",
    "share.record.lock.duration.ms",
    "share.renew.acknowledge.enable",
    "share.session.timeout.ms",
    "streams.assignment.interval.ms",
    "streams.heartbeat.interval.ms",
    "streams.initial.rebalance.delay.ms",
    "streams.num.standby.replicas",
    "streams.session.timeout.ms",
];

/// Checks a group config (refusals are Kafka's INVALID_CONFIG, with Kafka's messages).
pub fn validate_group(name: &str, value: &str) -> Result<(), String> {
    let Some(d) = GROUP_CONFIGS.iter().find(|d| d.name == name) else {
        if GROUP_NOT_SUPPORTED.contains(&name) {
            return Err(format!("group config '{name}' is a Kafka config Runnel does not support yet"));
        }
        return Err(format!("Unknown group config name: {name}"));
    };
    let Ok(v) = value.trim().parse::<i32>() else {
        return Err(format!("Invalid value {value} for configuration {name}: Not a number of type INT"));
    };
    if v < d.min {
        return Err(format!("{name} must be greater than or equal to {}", d.min_name));
    }
    if v > d.max {
        return Err(format!("{name} must be less than or equal to {}", d.max_name));
    }
    Ok(())
}

/// The broker settings in effect: the static ones, the cluster-wide dynamic default and
/// this broker's dynamic configs.
#[derive(Debug, Clone, Default)]
pub struct BrokerSettings {
    pub static_settings: BTreeMap<String, String>,
    pub cluster_default: BTreeMap<String, String>,
    pub per_broker: BTreeMap<String, String>,
    /// All three merged, the dynamic ones winning: what topic defaults resolve against.
    pub merged: BTreeMap<String, String>,
}

impl BrokerSettings {
    pub fn new(
        static_settings: BTreeMap<String, String>,
        cluster_default: BTreeMap<String, String>,
        per_broker: BTreeMap<String, String>,
    ) -> Self {
        let mut merged = static_settings.clone();
        merged.extend(cluster_default.iter().map(|(k, v)| (k.clone(), v.clone())));
        merged.extend(per_broker.iter().map(|(k, v)| (k.clone(), v.clone())));
        Self { static_settings, cluster_default, per_broker, merged }
    }

    /// Where broker setting `name` gets its value, in Kafka's order (most specific first):
    /// (source, value) for each level that sets it, built-in default excluded.
    pub fn levels(&self, name: &str) -> Vec<(topic_config::ConfigSource, &str)> {
        use topic_config::ConfigSource::*;
        [(DynamicBroker, &self.per_broker), (DynamicDefaultBroker, &self.cluster_default), (StaticBroker, &self.static_settings)]
            .into_iter()
            .filter_map(|(s, m)| m.get(name).map(|v| (s, v.as_str())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_configs_are_sorted_into_dynamic_read_only_and_unknown() {
        assert!(validate_broker("log.retention.ms", "3600000").is_ok());
        assert!(validate_broker("log.retention.ms", "abc").unwrap_err().starts_with("Invalid value abc for configuration log.retention.ms"));
        assert!(validate_broker("log.cleanup.policy", "delete,compact").is_ok());
        assert!(validate_broker("sasl.kerberos.min.time.before.relogin", "58000").is_ok());
        assert_eq!(
            validate_broker("background.threads", "0").unwrap_err(),
            "Invalid value 0 for configuration background.threads: Value must be at least 1"
        );
        assert!(validate_broker("background.threads", "x").unwrap_err().ends_with("Not a number of type INT"));
        assert!(validate_broker("num.partitions", "3").unwrap_err().starts_with("Cannot update these configs dynamically: [num.partitions]"));
        assert!(validate_broker("listener.name.sasl_ssl.ssl.keystore.location", "/k").unwrap_err().starts_with("Cannot update"));
        assert!(validate_broker("log.dirs", "/x").unwrap_err().starts_with("Cannot update these configs dynamically: [log.dirs]"));
        assert_eq!(validate_broker("foo.bar", "1").unwrap_err(), "Unknown broker config name: foo.bar");
        assert_eq!(broker_kind("log.segment.bytes").effect(), Some(Effect::Applied));
        assert_eq!(broker_kind("num.io.threads").effect(), Some(Effect::StoredOnly));
        assert_eq!(broker_kind("producer.id.expiration.ms").effect(), Some(Effect::Applied));
        assert!(validate_broker("producer.id.expiration.ms", "0").unwrap_err().starts_with("Invalid value 0 for configuration producer.id.expiration.ms"));
    }

    #[test]
    fn group_configs_are_bounded_as_kafka_bounds_them() {
        assert!(validate_group("consumer.session.timeout.ms", "50000").is_ok());
        assert_eq!(
            validate_group("consumer.session.timeout.ms", "1000").unwrap_err(),
            "consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms"
        );
        assert_eq!(
            validate_group("consumer.session.timeout.ms", "70000").unwrap_err(),
            "consumer.session.timeout.ms must be less than or equal to group.consumer.max.session.timeout.ms"
        );
        assert!(validate_group("consumer.heartbeat.interval.ms", "20000").is_err());
        assert!(validate_group("consumer.session.timeout.ms", "abc").unwrap_err().ends_with("Not a number of type INT"));
        assert_eq!(validate_group("foo.bar", "1").unwrap_err(), "Unknown group config name: foo.bar");
        assert!(validate_group("share.session.timeout.ms", "50000").unwrap_err().contains("does not support yet"));
    }

    #[test]
    fn dynamic_beats_default_beats_static() {
        let m = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        let s = BrokerSettings::new(m(&[("log.retention.ms", "1"), ("num.partitions", "3")]), m(&[("log.retention.ms", "2")]), m(&[]));
        assert_eq!(s.merged["log.retention.ms"], "2");
        assert_eq!(s.merged["num.partitions"], "3");
        use topic_config::ConfigSource::*;
        assert_eq!(s.levels("log.retention.ms"), vec![(DynamicDefaultBroker, "2"), (StaticBroker, "1")]);
        let s = BrokerSettings::new(m(&[]), m(&[("log.retention.ms", "2")]), m(&[("log.retention.ms", "3")]));
        assert_eq!(s.merged["log.retention.ms"], "3");
    }
}
