//! The metadata image: what the records so far add up to.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::acl::AclBinding;
use crate::quota::QuotaEntity;
use crate::{ConfigResource, MetadataRecord};

/// One topic as the image knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: u32,
    /// Topic-level overrides only; defaults live with the broker config.
    pub configs: BTreeMap<String, String>,
}

/// A user's SCRAM credential for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentialImage {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

/// All topics, by name and by id; SCRAM credentials by user and mechanism.
#[derive(Debug, Default, Clone)]
pub struct MetadataImage {
    topics: BTreeMap<String, TopicImage>,
    ids: BTreeMap<Uuid, String>,
    /// The first producer id no broker has reserved yet.
    next_producer_id: i64,
    /// Ids of topics a committed record deleted: their data may be removed.
    deleted: std::collections::BTreeSet<Uuid>,
    /// SCRAM credentials by (user, mechanism name).
    scram: BTreeMap<(String, String), ScramCredentialImage>,
    /// Every ACL binding.
    acls: std::collections::BTreeSet<AclBinding>,
    /// Client quotas: entity → key → value.
    quotas: BTreeMap<QuotaEntity, BTreeMap<String, f64>>,
    /// Dynamic configs of brokers (by id; "" the cluster-wide default) and groups.
    resource_configs: BTreeMap<(ConfigResource, String), BTreeMap<String, String>>,
}

impl MetadataImage {
    /// Applies one record. Records that name a missing topic change nothing.
    pub fn apply(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::CreateTopic { name, topic_id, partitions, configs } => {
                self.ids.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: *partitions,
                        configs: configs.clone(),
                    },
                );
            }
            MetadataRecord::CreatePartitions { name, total } => {
                if let Some(t) = self.topics.get_mut(name) {
                    t.partitions = t.partitions.max(*total);
                }
            }
            MetadataRecord::SetTopicConfigs { name, configs, .. } => {
                if let Some(t) = self.topics.get_mut(name) {
                    t.configs = configs.clone();
                }
            }
            MetadataRecord::DeleteTopic { name } => {
                if let Some(t) = self.topics.remove(name) {
                    self.ids.remove(&t.topic_id);
                    self.deleted.insert(t.topic_id);
                }
            }
            MetadataRecord::ProducerIds { next_producer_id, .. } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
            MetadataRecord::ScramCredential { name, mechanism, salt, stored_key, server_key, iterations } => {
                let cred = ScramCredentialImage {
                    salt: salt.clone(),
                    stored_key: stored_key.clone(),
                    server_key: server_key.clone(),
                    iterations: *iterations,
                };
                self.scram.insert((name.clone(), mechanism.clone()), cred);
            }
            MetadataRecord::DeleteScramCredential { name, mechanism } => {
                self.scram.remove(&(name.clone(), mechanism.clone()));
            }
            MetadataRecord::CreateAcls { acls } => self.acls.extend(acls.iter().cloned()),
            MetadataRecord::DeleteAcls { acls } => {
                for a in acls {
                    self.acls.remove(a);
                }
            }
            MetadataRecord::AlterClientQuota { entity, ops } => {
                let values = self.quotas.entry(entity.clone()).or_default();
                for (key, value) in ops {
                    match value {
                        Some(v) => values.insert(key.clone(), v.0),
                        None => values.remove(key),
                    };
                }
                if values.is_empty() {
                    self.quotas.remove(entity);
                }
            }
            MetadataRecord::SetResourceConfigs { resource, name, configs, .. } => {
                let key = (*resource, name.clone());
                if configs.is_empty() {
                    self.resource_configs.remove(&key);
                } else {
                    self.resource_configs.insert(key, configs.clone());
                }
            }
        }
    }

    /// The dynamic configs of a broker (by id, or "" for the cluster-wide default) or a
    /// group; empty when none are set.
    pub fn resource_configs(&self, resource: ConfigResource, name: &str) -> BTreeMap<String, String> {
        self.resource_configs.get(&(resource, name.to_string())).cloned().unwrap_or_default()
    }

    /// How many brokers (or groups) have dynamic configs.
    pub fn resource_config_count(&self, resource: ConfigResource) -> usize {
        self.resource_configs.keys().filter(|(r, _)| *r == resource).count()
    }

    /// The SCRAM credential of `user` for `mechanism` (`SCRAM-SHA-256` …).
    pub fn scram_credential(&self, user: &str, mechanism: &str) -> Option<&ScramCredentialImage> {
        self.scram.get(&(user.to_string(), mechanism.to_string()))
    }

    /// Every SCRAM credential: ((user, mechanism), credential), by user.
    pub fn scram_credentials(&self) -> impl Iterator<Item = (&(String, String), &ScramCredentialImage)> {
        self.scram.iter()
    }

    /// The records that recreate this image's SCRAM credentials (for snapshots).
    pub fn scram_records(&self) -> impl Iterator<Item = MetadataRecord> + '_ {
        self.scram.iter().map(|((name, mechanism), c)| MetadataRecord::ScramCredential {
            name: name.clone(),
            mechanism: mechanism.clone(),
            salt: c.salt.clone(),
            stored_key: c.stored_key.clone(),
            server_key: c.server_key.clone(),
            iterations: c.iterations,
        })
    }

    /// Every ACL binding, in a stable order.
    pub fn acls(&self) -> impl Iterator<Item = &AclBinding> {
        self.acls.iter()
    }

    /// Every client quota entity with its values.
    pub fn client_quotas(&self) -> &BTreeMap<QuotaEntity, BTreeMap<String, f64>> {
        &self.quotas
    }

    /// The records that recreate the ACLs, quotas and broker and group configs (for a
    /// snapshot of the image).
    pub fn security_records(&self) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        if !self.acls.is_empty() {
            out.push(MetadataRecord::CreateAcls { acls: self.acls.iter().cloned().collect() });
        }
        for (entity, values) in &self.quotas {
            let ops = values.iter().map(|(k, v)| (k.clone(), Some(crate::quota::QuotaValue(*v)))).collect();
            out.push(MetadataRecord::AlterClientQuota { entity: entity.clone(), ops });
        }
        for ((resource, name), configs) in &self.resource_configs {
            out.push(MetadataRecord::SetResourceConfigs { resource: *resource, name: name.clone(), configs: configs.clone(), expected: None });
        }
        out
    }

    /// The first producer id not yet reserved by any broker.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.ids.get(id).and_then(|n| self.topics.get(n))
    }

    /// True if a committed record deleted the topic with this id.
    pub fn was_deleted(&self, id: &Uuid) -> bool {
        self.deleted.contains(id)
    }

    pub fn topics(&self) -> impl Iterator<Item = &TopicImage> {
        self.topics.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_add_up() {
        let mut image = MetadataImage::default();
        let id = Uuid::new_v4();
        image.apply(&MetadataRecord::CreateTopic {
            name: "a".into(),
            topic_id: id,
            partitions: 1,
            configs: BTreeMap::new(),
        });
        image.apply(&MetadataRecord::CreatePartitions { name: "a".into(), total: 3 });
        assert_eq!(image.topic_by_id(&id).unwrap().partitions, 3);
        image.apply(&MetadataRecord::DeleteTopic { name: "a".into() });
        assert!(image.topic("a").is_none());
        assert!(image.topic_by_id(&id).is_none());
        assert!(image.was_deleted(&id));
    }

    #[test]
    fn resource_configs_are_replaced_removed_and_survive_a_snapshot() {
        let mut image = MetadataImage::default();
        let set = |name: &str, kv: &[(&str, &str)]| MetadataRecord::SetResourceConfigs {
            resource: ConfigResource::Broker,
            name: name.into(),
            configs: kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            expected: None,
        };
        image.apply(&set("", &[("log.retention.ms", "1000")]));
        image.apply(&set("1", &[("background.threads", "9")]));
        assert_eq!(image.resource_configs(ConfigResource::Broker, "")["log.retention.ms"], "1000");
        assert!(image.resource_configs(ConfigResource::Group, "1").is_empty());
        let mut copy = MetadataImage::default();
        for r in image.security_records() {
            copy.apply(&r);
        }
        assert_eq!(copy.resource_configs(ConfigResource::Broker, "1")["background.threads"], "9");
        image.apply(&set("1", &[]));
        assert!(image.resource_configs(ConfigResource::Broker, "1").is_empty());
    }
}
