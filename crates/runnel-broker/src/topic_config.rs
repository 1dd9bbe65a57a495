//! Topic-level configs: the ones Runnel honours, their Kafka names, their broker-level
//! defaults, validation, and how an effective config is resolved
//! (topic override → broker setting → built-in default).
//!
//! A config that is not in [`TOPIC_CONFIGS`] is refused with INVALID_CONFIG: Runnel does
//! not accept settings it would silently ignore. Kafka's other topic configs
//! ([`NOT_SUPPORTED_YET`]) are refused with a message that says so.

use std::collections::BTreeMap;

use runnel_protocol::batch::Compression;
use runnel_storage::{CompactionConfig, LogConfig, RetentionConfig};

/// The type of a config value, as DescribeConfigs reports it (v3+ `config_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
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
    /// A comma-separated, non-empty list of distinct allowed values (any order).
    ListOf(&'static [&'static str]),
    /// A number in `[0, 1]`.
    Ratio,
}

/// Every topic config Runnel honours.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        broker_name: "log.cleanup.policy",
        default: "delete",
        config_type: ConfigType::List,
        rule: Rule::ListOf(&["delete", "compact"]),
        doc: "What happens to old segments: 'delete' (retention.ms, retention.bytes), 'compact' (keep the latest record per key), or both.",
    },
    TopicConfigDef {
        name: "retention.ms",
        broker_name: "log.retention.ms",
        default: "604800000",
        config_type: ConfigType::Long,
        rule: Rule::AtLeast(-1),
        doc: "With cleanup.policy=delete, a closed segment whose newest record is older than this is deleted (-1: no time limit).",
    },
    TopicConfigDef {
        name: "retention.bytes",
        broker_name: "log.retention.bytes",
        default: "-1",
        config_type: ConfigType::Long,
        rule: Rule::AtLeast(-1),
        doc: "With cleanup.policy=delete, the oldest closed segments are deleted while the partition stays at least this big without them (-1: no size limit).",
    },
    TopicConfigDef {
        name: "delete.retention.ms",
        broker_name: "log.cleaner.delete.retention.ms",
        default: "86400000",
        config_type: ConfigType::Long,
        rule: Rule::AtLeast(0),
        doc: "How long a tombstone (null value) stays readable on a compacted topic before the cleaner removes it.",
    },
    TopicConfigDef {
        name: "min.cleanable.dirty.ratio",
        broker_name: "log.cleaner.min.cleanable.ratio",
        default: "0.5",
        config_type: ConfigType::Double,
        rule: Rule::Ratio,
        doc: "A compacted partition is cleaned once its not-yet-cleaned bytes reach this share of its cleanable bytes.",
    },
    TopicConfigDef {
        name: "min.compaction.lag.ms",
        broker_name: "log.cleaner.min.compaction.lag.ms",
        default: "0",
        config_type: ConfigType::Long,
        rule: Rule::AtLeast(0),
        doc: "Segments with records newer than this are not compacted yet.",
    },
    TopicConfigDef {
        name: "max.compaction.lag.ms",
        broker_name: "log.cleaner.max.compaction.lag.ms",
        default: "9223372036854775807",
        config_type: ConfigType::Long,
        rule: Rule::AtLeast(1),
        doc: "Records not yet compacted for this long force a compaction whatever the dirty ratio.",
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
        name: "message.timestamp.before.max.ms",
        broker_name: "log.message.timestamp.before.max.ms",
        default: "9223372036854775807",
        config_type: ConfigType::Long,
        rule: Rule::AtLeast(0),
        doc: "With CreateTime, a batch whose timestamps are further than this in the past is INVALID_TIMESTAMP.",
    },
    TopicConfigDef {
        name: "message.timestamp.after.max.ms",
        broker_name: "log.message.timestamp.after.max.ms",
        default: "3600000",
        config_type: ConfigType::Long,
        rule: Rule::AtLeast(0),
        doc: "With CreateTime, a batch whose timestamps are further than this in the future is INVALID_TIMESTAMP (a far-future maxTimestamp would stop time retention).",
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
        name: "compression.type",
        broker_name: "compression.type",
        default: "producer",
        config_type: ConfigType::String,
        rule: Rule::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
        doc: "'producer' keeps batches as the producer compressed them; a codec (or 'uncompressed') makes the broker recompress batches that use another.",
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        broker_name: "min.insync.replicas",
        default: "1",
        config_type: ConfigType::Int,
        rule: Rule::AtLeast(1),
        doc: "Cluster mode: in-sync replicas a partition needs for acks=all produces (fewer: NOT_ENOUGH_REPLICAS); a single broker has one.",
    },
];

/// Kafka's topic configs that Runnel does not serve yet: refused with a message that
/// says so, never stored and ignored.
pub const NOT_SUPPORTED_YET: &[&str] = &[
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.zstd.level",
    "file.delete.delay.ms",
    "follower.replication.throttled.replicas",
    "leader.replication.throttled.replicas",
    "local.retention.bytes",
    "local.retention.ms",
    "message.downconversion.enable",
    "message.format.version",
    "message.timestamp.difference.max.ms",
    "preallocate",
    "remote.log.copy.disable",
    "remote.log.delete.on.disable",
    "remote.storage.enable",
    "segment.jitter.ms",
    "unclean.leader.election.enable",
];

/// The longest config value accepted (Kafka's values are numbers, names and short lists):
/// a value is the client's to size, and it is stored in the metadata log.
pub const MAX_VALUE_LEN: usize = 1024;

/// Looks up a topic config by its Kafka name.
pub fn def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one topic config value. The error says what is allowed.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE_LEN {
        return Err(format!("the value of {name} is {} bytes long; at most {MAX_VALUE_LEN} are accepted", value.len()));
    }
    let Some(d) = def(name) else {
        if NOT_SUPPORTED_YET.contains(&name) {
            return Err(format!("topic config '{name}' is a Kafka config Runnel does not support yet"));
        }
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
        Rule::ListOf(allowed) => {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            let distinct = items.iter().enumerate().all(|(i, v)| !items[..i].contains(v));
            if !value.trim().is_empty() && distinct && items.iter().all(|v| allowed.contains(v)) {
                Ok(())
            } else {
                Err(format!(
                    "invalid value '{value}' for {name}; a comma-separated list of distinct values among: {}",
                    allowed.join(", ")
                ))
            }
        }
        Rule::Ratio => match value.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            _ => Err(format!("{name}={value} is not a number between 0 and 1")),
        },
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
    /// This broker's dynamic config (AlterConfigs on the broker's id).
    DynamicBroker = 2,
    /// The cluster-wide dynamic default (AlterConfigs on the broker resource "").
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
    /// A group's dynamic config (Kafka's GROUP_CONFIG).
    Group = 8,
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
    /// `cleanup.policy` has `delete`: retention applies.
    pub delete: bool,
    /// `cleanup.policy` has `compact`: the cleaner compacts, produce requires keys.
    pub compact: bool,
    pub retention: RetentionConfig,
    pub compaction: CompactionConfig,
    /// `compression.type`: None for `producer` (batches kept as sent), else the codec
    /// every stored batch must use.
    pub compression: Option<Compression>,
    /// `min.insync.replicas` (cluster mode; a single node is its own ISR).
    pub min_insync_replicas: usize,
    /// `message.timestamp.before.max.ms` and `message.timestamp.after.max.ms`: how far a
    /// CreateTime batch's timestamps may lie behind and ahead of the broker's clock.
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
}

impl TopicSettings {
    /// Resolves the effective settings. Values were validated when they were set.
    pub fn resolve(overrides: &BTreeMap<String, String>, broker: &BTreeMap<String, String>) -> Self {
        let get = |name: &str| resolve(def(name).expect("known config"), overrides, broker).0;
        let num = |name: &str| get(name).trim().parse::<i64>().unwrap_or(i64::MAX).max(0) as u64;
        // -1 (any negative) is "no limit".
        let limit = |name: &str| get(name).trim().parse::<i64>().ok().and_then(|v| u64::try_from(v).ok());
        let policy: Vec<&str> = get("cleanup.policy").split(',').map(str::trim).collect();
        TopicSettings {
            log: LogConfig {
                segment_bytes: num("segment.bytes"),
                segment_ms: num("segment.ms"),
                index_interval_bytes: num("index.interval.bytes"),
                // Kafka's "never" (Long.MAX_VALUE) is the storage's never (u64::MAX).
                flush_messages: match num("flush.messages") {
                    n if n >= i64::MAX as u64 => LogConfig::default().flush_messages,
                    n => n,
                },
                flush_ms: num("flush.ms"),
            },
            max_message_bytes: num("max.message.bytes") as usize,
            log_append_time: get("message.timestamp.type") == "LogAppendTime",
            delete: policy.contains(&"delete"),
            compact: policy.contains(&"compact"),
            retention: RetentionConfig {
                retention_ms: limit("retention.ms"),
                retention_bytes: limit("retention.bytes"),
            },
            compaction: CompactionConfig {
                delete_retention_ms: num("delete.retention.ms"),
                min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio").trim().parse().unwrap_or(0.5),
                min_compaction_lag_ms: num("min.compaction.lag.ms"),
                max_compaction_lag_ms: num("max.compaction.lag.ms"),
            },
            min_insync_replicas: num("min.insync.replicas").max(1) as usize,
            compression: match get("compression.type") {
                "uncompressed" => Some(Compression::None),
                "gzip" => Some(Compression::Gzip),
                "snappy" => Some(Compression::Snappy),
                "lz4" => Some(Compression::Lz4),
                "zstd" => Some(Compression::Zstd),
                _ => None,
            },
            timestamp_before_max_ms: num("message.timestamp.before.max.ms").min(i64::MAX as u64) as i64,
            timestamp_after_max_ms: num("message.timestamp.after.max.ms").min(i64::MAX as u64) as i64,
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
        assert!(validate("preallocate", "true").unwrap_err().contains("not support yet"));
        assert!(validate("compression.type", "lz4").is_ok());
        assert!(validate("compression.type", "brotli").is_err());
        for ok in ["delete", "compact", "compact,delete", "delete, compact"] {
            assert!(validate("cleanup.policy", ok).is_ok(), "{ok}");
        }
        for bad in ["", "shred", "compact,compact", "delete,"] {
            assert!(validate("cleanup.policy", bad).is_err(), "{bad}");
        }
        assert!(validate("min.cleanable.dirty.ratio", "0.1").is_ok());
        assert!(validate("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        let padded = format!("{}1000", " ".repeat(MAX_VALUE_LEN));
        assert!(validate("retention.ms", &padded).unwrap_err().contains("at most"));
        assert!(validate("message.timestamp.after.max.ms", "0").is_ok());
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
        let s = TopicSettings::resolve(&o, &b);
        assert!(s.delete && !s.compact);
        assert_eq!((s.retention.retention_ms, s.retention.retention_bytes), (Some(604_800_000), None));
        o.insert("cleanup.policy".into(), "compact,delete".into());
        o.insert("retention.ms".into(), "-1".into());
        let s = TopicSettings::resolve(&o, &b);
        assert!(s.delete && s.compact && s.retention.retention_ms.is_none());
        assert_eq!(s.compaction.min_cleanable_dirty_ratio, 0.5);
    }

    /// The default `flush.messages` (Kafka's Long.MAX_VALUE) is the storage's "never",
    /// which the produce path's inline fast path checks for.
    #[test]
    fn default_flush_messages_is_never() {
        let s = TopicSettings::resolve(&BTreeMap::new(), &BTreeMap::new());
        assert_eq!(s.log.flush_messages, LogConfig::default().flush_messages);
        assert_eq!(s.compression, None);
    }
}
