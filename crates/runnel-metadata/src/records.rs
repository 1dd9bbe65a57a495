//! The metadata records: every change to cluster metadata is one of these.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::acl::AclBinding;
use crate::quota::{QuotaEntity, QuotaValue};

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
    /// A topic's config overrides are replaced by `configs`. With `expected`, only if they
    /// are still those (cluster mode: the controller refuses the record otherwise, so two
    /// alters read from the same values cannot both be committed).
    SetTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected: Option<BTreeMap<String, String>>,
    },
    /// A topic is deleted.
    DeleteTopic { name: String },
    /// A broker reserved the producer ids `[next_producer_id - block, next_producer_id)`
    /// (Kafka's ProducerIdsRecord, KIP-730): ids are handed out in blocks so that they stay
    /// unique across restarts and brokers.
    ProducerIds { broker_id: i32, next_producer_id: i64 },
    /// A user's SCRAM credential for one mechanism is set (Kafka's
    /// UserScramCredentialRecord): the salt and the keys derived from the salted password,
    /// never the password.
    ScramCredential {
        name: String,
        /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
        mechanism: String,
        salt: Vec<u8>,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
        iterations: i32,
    },
    /// A user's SCRAM credential for one mechanism is removed.
    DeleteScramCredential { name: String, mechanism: String },
    /// ACL bindings are added (CreateAcls); one already present changes nothing.
    CreateAcls { acls: Vec<AclBinding> },
    /// ACL bindings are removed (DeleteAcls resolves its filters to bindings first).
    DeleteAcls { acls: Vec<AclBinding> },
    /// A client quota entity's keys are set (`Some`) or removed (`None`).
    AlterClientQuota { entity: QuotaEntity, ops: Vec<(String, Option<QuotaValue>)> },
    /// The dynamic configs of a broker (`name` its id, or empty: the cluster-wide default)
    /// or of a group are replaced by `configs` (Kafka's ConfigRecord for BROKER and GROUP
    /// resources); empty `configs` removes them all. With `expected`, only if they are
    /// still those (as for `SetTopicConfigs`).
    SetResourceConfigs {
        resource: ConfigResource,
        name: String,
        configs: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected: Option<BTreeMap<String, String>>,
    },
}

/// A config resource other than a topic, as Kafka's ConfigResource types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigResource {
    /// Kafka's resource type 4: one broker by id, or the cluster-wide default (empty name).
    Broker,
    /// Kafka's resource type 32: a consumer group's configs (KIP-848).
    Group,
}

impl MetadataRecord {
    /// Whether this record changes no topic (producer ids, credentials): in cluster mode
    /// it is keyed by the nil topic id.
    pub fn is_cluster_wide(&self) -> bool {
        matches!(
            self,
            MetadataRecord::ProducerIds { .. }
                | MetadataRecord::ScramCredential { .. }
                | MetadataRecord::DeleteScramCredential { .. }
                | MetadataRecord::CreateAcls { .. }
                | MetadataRecord::DeleteAcls { .. }
                | MetadataRecord::AlterClientQuota { .. }
                | MetadataRecord::SetResourceConfigs { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_records_without_an_expectation_are_written_and_read_as_before() {
        let configs: BTreeMap<String, String> = [("log.retention.ms".to_string(), "1000".to_string())].into();
        let plain = MetadataRecord::SetResourceConfigs { resource: ConfigResource::Broker, name: String::new(), configs: configs.clone(), expected: None };
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("expected"), "the same bytes as records written before the field existed: {json}");
        assert_eq!(serde_json::from_str::<MetadataRecord>(&json).unwrap(), plain);
        let topic = MetadataRecord::SetTopicConfigs { name: "t".into(), configs: configs.clone(), expected: Some(BTreeMap::new()) };
        let json = serde_json::to_string(&topic).unwrap();
        assert_eq!(serde_json::from_str::<MetadataRecord>(&json).unwrap(), topic);
        let old = json.replace(r#","expected":{}"#, "");
        assert_ne!(old, json);
        assert_eq!(serde_json::from_str::<MetadataRecord>(&old).unwrap(), MetadataRecord::SetTopicConfigs { name: "t".into(), configs, expected: None });
    }
}
