//! The metadata image: what the records so far add up to.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::MetadataRecord;

/// One topic as the image knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: u32,
    /// Topic-level overrides only; defaults live with the broker config.
    pub configs: BTreeMap<String, String>,
}

/// All topics, by name and by id.
#[derive(Debug, Default, Clone)]
pub struct MetadataImage {
    topics: BTreeMap<String, TopicImage>,
    ids: BTreeMap<Uuid, String>,
    /// The first producer id no broker has reserved yet.
    next_producer_id: i64,
    /// Ids of topics a committed record deleted: their data may be removed.
    deleted: std::collections::BTreeSet<Uuid>,
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
            MetadataRecord::SetTopicConfigs { name, configs } => {
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
        }
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
}
