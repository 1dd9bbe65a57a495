//! Topic-level configs: the ones Runnel honours, their Kafka names, their broker-level
//! defaults, validation, and how an effective config is resolved
//! (topic override → broker setting → built-in default).
//!
//! A config that is not in [`TOPIC_CONFIGS`] is refused with INVALID_CONFIG: Runnel does
//! not accept settings it would silently ignore.

use std::collections::BTreeMap;

use runnel_storage::LogConfig;

/// The type of a config value, as DescribeConfigs reports it (v3+ `config_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    List = 7,
}

/// One topic config Runnel honours.
#[derive(Debug)]
pub struct TopicConfigDef {
    /// Kafka's topic-level name, e.g. `segment.bytes`.
    pub name: &'static str,
    /// Kafka's broker-level name of its default, e.g. `log.segment.bytes`.
    pub broker_name: &'static str,
    pub default: &'static str,
    pub config_type: ConfigType,
    /// Allowed values for string configs, or the smallest value for numbers.
    pub rule: Rule,
    pub doc: &'static str,
}

#[derive(Debug)]
pub enum Rule {
    OneOf(&'static [&'static str]),
    AtLeast(i64),
}

/// Every topic config Runnel honours.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        broker_name: "log.cleanup.policy",
        default: "delete",
        config_type: ConfigType::List,
        rule: Rule::OneOf(&["delete"]),
        doc: "What happens to old segments. Runnel supports 'delete' (compaction is not built yet).",
    },
    TopicConfigDef {
        name: "segment.bytes",
        broker_name: "log.segment.bytes",
        default: "1073741824",
        config_type: ConfigType::Int,
        rule: Rule::AtLeast(14),
        doc: "Size at which a partition's active segment file is rolled.",
    },
    TopicConfigDef {
        name: "segment.ms",
        broker_name: "log.roll.ms",
        default: "604800000",
        config_type: ConfigType::Long,
        rule: Rule::AtLeast(1),
        doc: "Age at which the active segment is rolled even if not full.",
    },
    TopicConfigDef {
        name: "segment.index.bytes",
        broker_name: "log.index.size.max.bytes",
        default: "10485760",
        config_type: ConfigType::Int,
        rule: Rule::AtLeast(4),
        doc: "Accepted for compatibility; Runnel's index files grow as needed.",
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        broker_name: "log.index.interval.bytes",
        default: "4096",
        config_type: ConfigType::Int,
        rule: Rule::AtLeast(0),
        doc: "Bytes of log between entries of the sparse offset index.",
    },
    TopicConfigDef {
        name: "max.message.bytes",
        broker_name: "message.max.bytes",
        default: "1048588",
        config_type: ConfigType::Int,
        rule: Rule::AtLeast(0),
        doc: "Largest record batch the topic accepts (MESSAGE_TOO_LARGE above it).",
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        broker_name: "log.message.timestamp.type",
        default: "CreateTime",
        config_type: ConfigType::String,
        rule: Rule::OneOf(&["CreateTime", "LogAppendTime"]),
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's clock.",
    },
    TopicConfigDef {
        name: "flush.messages",
        broker_name: "log.flush.interval.messages",
        default: "9223372036854775807",
        config_type: ConfigType::Long,
        rule: Rule::AtLeast(1),
        doc: "fsync after this many records (default: never; the OS flushes, acknowledged records survive a broker crash but not a power loss).",
    },
    TopicConfigDef {
        name: "flush.ms",
        broker_name: "log.flush.interval.ms",
        default: "9223372036854775807",
        config_type: ConfigType::Long,
        rule: Rule::AtLeast(0),
        doc: "fsync when unflushed data is this old (default: never).",
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        broker_name: "min.insync.replicas",
        default: "1",
        config_type: ConfigType::Int,
        rule: Rule::AtLeast(1),
        doc: "Replicas that must have a write for acks=all; a single broker is always 1.",
    },
];

/// Looks up a topic config by its Kafka name.
pub fn def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one topic config value. The error says what is allowed.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let Some(d) = def(name) else {
        return Err(format!("unknown topic config '{name}'"));
    };
    match d.rule {
        Rule::OneOf(allowed) => {
            if allowed.contains(&value) {
                Ok(())
            } else {
                Err(format!("invalid value '{value}' for {name}; allowed: {}", allowed.join(", ")))
            }
        }
        Rule::AtLeast(min) => match value.trim().parse::<i64>() {
            Ok(v) if v >= min => {
                if d.config_type == ConfigType::Int && v > i32::MAX as i64 {
                    Err(format!("{name}={value} is larger than {}", i32::MAX))
                } else {
                    Ok(())
                }
            }
            Ok(_) => Err(format!("{name}={value} is below the minimum {min}")),
            Err(_) => Err(format!("{name}={value} is not a number")),
        },
    }
}

/// Where an effective config value came from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    Topic = 1,
    StaticBroker = 4,
    Default = 5,
}

/// Resolves one config: the topic override, else the broker's setting, else the default.
pub fn resolve<'a>(
    d: &'static TopicConfigDef,
    overrides: &'a BTreeMap<String, String>,
    broker: &'a BTreeMap<String, String>,
) -> (&'a str, ConfigSource) {
    if let Some(v) = overrides.get(d.name) {
        (v, ConfigSource::Topic)
    } else if let Some(v) = broker.get(d.broker_name) {
        (v, ConfigSource::StaticBroker)
    } else {
        (d.default, ConfigSource::Default)
    }
}

/// A topic's effective settings, as the produce path and the log need them.
#[derive(Debug, Clone)]
pub struct TopicSettings {
    pub log: LogConfig,
    pub max_message_bytes: usize,
    pub log_append_time: bool,
}

impl TopicSettings {
    /// Resolves the effective settings. Values were validated when they were set.
    pub fn resolve(overrides: &BTreeMap<String, String>, broker: &BTreeMap<String, String>) -> Self {
        let get = |name: &str| resolve(def(name).expect("known config"), overrides, broker).0;
        let num = |name: &str| get(name).trim().parse::<i64>().unwrap_or(i64::MAX).max(0) as u64;
        TopicSettings {
            log: LogConfig {
                segment_bytes: num("segment.bytes"),
                segment_ms: num("segment.ms"),
                index_interval_bytes: num("index.interval.bytes"),
                flush_messages: num("flush.messages"),
                flush_ms: num("flush.ms"),
            },
            max_message_bytes: num("max.message.bytes") as usize,
            log_append_time: get("message.timestamp.type") == "LogAppendTime",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_by_rule() {
        assert!(validate("segment.bytes", "1048576").is_ok());
        assert!(validate("segment.bytes", "10").is_err());
        assert!(validate("segment.bytes", "abc").is_err());
        assert!(validate("segment.bytes", "99999999999").is_err());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate("message.timestamp.type", "Later").is_err());
        assert!(validate("no.such.config", "1").is_err());
    }

    #[test]
    fn override_then_broker_then_default() {
        let mut o = BTreeMap::new();
        let mut b = BTreeMap::new();
        let d = def("segment.bytes").unwrap();
        assert_eq!(resolve(d, &o, &b), ("1073741824", ConfigSource::Default));
        b.insert("log.segment.bytes".into(), "2000".into());
        assert_eq!(resolve(d, &o, &b), ("2000", ConfigSource::StaticBroker));
        o.insert("segment.bytes".into(), "1000".into());
        assert_eq!(resolve(d, &o, &b), ("1000", ConfigSource::Topic));
        assert_eq!(TopicSettings::resolve(&o, &b).log.segment_bytes, 1000);
    }
}
