//! The metadata records: every change to cluster metadata is one of these.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One change to cluster metadata. Records are applied in log order; applying is
/// deterministic and never fails (validation happens before a record is written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// A topic is created with its partition count and its topic-level config overrides.
    CreateTopic {
        name: String,
        topic_id: Uuid,
        partitions: u32,
        configs: BTreeMap<String, String>,
    },
    /// A topic's partition count grows to `total`.
    CreatePartitions { name: String, total: u32 },
    /// A topic's config overrides are replaced by `configs`.
    SetTopicConfigs { name: String, configs: BTreeMap<String, String> },
    /// A topic is deleted.
    DeleteTopic { name: String },
    /// A broker reserved the producer ids `[next_producer_id - block, next_producer_id)`
    /// (Kafka's ProducerIdsRecord, KIP-730): ids are handed out in blocks so that they stay
    /// unique across restarts and brokers.
    ProducerIds { broker_id: i32, next_producer_id: i64 },
}
