//! The cluster image: what the committed controller records add up to (topics through
//! the single-node [`MetadataImage`], plus the registered brokers), the offset and epoch of
//! the last record applied, and its snapshot form. Applying is deterministic: every node
//! that applies the same records reaches the same image and gives the same answers.

use std::collections::BTreeMap;

use runnel_metadata::{MetadataImage, MetadataRecord};
use serde::{Deserialize, Serialize};

use crate::types::{BrokerRegistration, ControllerRecord, Outcome, Rejection};

/// Topics and brokers, as of record `offset` (written in `epoch`).
#[derive(Debug, Default, Clone)]
pub struct ClusterImage {
    pub topics: MetadataImage,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Raft log index of the last record applied (0: none yet).
    pub offset: u64,
    /// Raft term of that record.
    pub epoch: u64,
}

/// The serialized image: topics as the records that recreate them, and the brokers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageSnapshot {
    pub topics: Vec<MetadataRecord>,
    pub brokers: Vec<BrokerRegistration>,
}

impl ClusterImage {
    /// Whether `record` may be applied to this image.
    pub fn check(&self, record: &ControllerRecord) -> Result<(), Rejection> {
        match record {
            ControllerRecord::Topic { topic_id, change } => {
                let by_name = |name: &str| self.topics.topic(name).filter(|t| t.topic_id == *topic_id);
                match change {
                    MetadataRecord::CreateTopic { name, .. } => {
                        if self.topics.topic(name).is_some() || self.topics.topic_by_id(topic_id).is_some() {
                            return Err(Rejection::TopicExists);
                        }
                    }
                    MetadataRecord::CreatePartitions { name, total } => {
                        let t = by_name(name).ok_or(Rejection::UnknownTopic)?;
                        if *total <= t.partitions {
                            return Err(Rejection::InvalidPartitions);
                        }
                    }
                    MetadataRecord::SetTopicConfigs { name, .. } | MetadataRecord::DeleteTopic { name } => {
                        by_name(name).ok_or(Rejection::UnknownTopic)?;
                    }
                    // A producer id block: the image only ever moves its counter up.
                    MetadataRecord::ProducerIds { .. } => {}
                }
                Ok(())
            }
            ControllerRecord::RegisterBroker(_) => Ok(()),
            ControllerRecord::FenceBroker { broker_id } | ControllerRecord::UnfenceBroker { broker_id } => {
                self.brokers.get(broker_id).map(|_| ()).ok_or(Rejection::UnknownBroker)
            }
        }
    }

    /// Applies `record` (written at `offset` in `epoch`) if it passes [`Self::check`].
    pub fn apply(&mut self, offset: u64, epoch: u64, record: &ControllerRecord) -> Outcome {
        self.offset = offset;
        self.epoch = epoch;
        if let Err(r) = self.check(record) {
            return Outcome::Rejected(r);
        }
        match record {
            ControllerRecord::Topic { change, .. } => self.topics.apply(change),
            ControllerRecord::RegisterBroker(reg) => {
                self.brokers.insert(reg.broker_id, BrokerRegistration { fenced: false, ..reg.clone() });
            }
            ControllerRecord::FenceBroker { broker_id } => {
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    b.fenced = true;
                }
            }
            ControllerRecord::UnfenceBroker { broker_id } => {
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    b.fenced = false;
                }
            }
        }
        Outcome::Applied
    }

    /// Registered brokers that are not fenced, by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    pub fn to_snapshot(&self) -> ImageSnapshot {
        ImageSnapshot {
            topics: self
                .topics
                .topics()
                .map(|t| MetadataRecord::CreateTopic {
                    name: t.name.clone(),
                    topic_id: t.topic_id,
                    partitions: t.partitions,
                    configs: t.configs.clone(),
                })
                // The producer id counter rides along with the topics.
                .chain((self.topics.next_producer_id() > 0).then(|| MetadataRecord::ProducerIds {
                    broker_id: -1,
                    next_producer_id: self.topics.next_producer_id(),
                }))
                .collect(),
            brokers: self.brokers.values().cloned().collect(),
        }
    }

    /// The image a snapshot holds, as of `offset` and `epoch`.
    pub fn from_snapshot(snapshot: &ImageSnapshot, offset: u64, epoch: u64) -> Self {
        let mut topics = MetadataImage::default();
        for r in &snapshot.topics {
            topics.apply(r);
        }
        let brokers = snapshot.brokers.iter().map(|b| (b.broker_id, b.clone())).collect();
        Self { topics, brokers, offset, epoch }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn create(name: &str, id: Uuid) -> ControllerRecord {
        ControllerRecord::Topic {
            topic_id: id,
            change: MetadataRecord::CreateTopic { name: name.into(), topic_id: id, partitions: 2, configs: Default::default() },
        }
    }

    #[test]
    fn records_are_checked_against_the_image_and_keyed_by_topic_id() {
        let mut image = ClusterImage::default();
        let old = Uuid::new_v4();
        assert_eq!(image.apply(1, 1, &create("t", old)), Outcome::Applied);
        assert_eq!(image.apply(2, 1, &create("t", Uuid::new_v4())), Outcome::Rejected(Rejection::TopicExists));
        let delete = |id| ControllerRecord::Topic { topic_id: id, change: MetadataRecord::DeleteTopic { name: "t".into() } };
        assert_eq!(image.apply(3, 1, &delete(old)), Outcome::Applied);
        let new = Uuid::new_v4();
        assert_eq!(image.apply(4, 2, &create("t", new)), Outcome::Applied);
        // A delete of the old topic (say, retried late) does not hit the new one.
        assert_eq!(image.apply(5, 2, &delete(old)), Outcome::Rejected(Rejection::UnknownTopic));
        let shrink = ControllerRecord::Topic { topic_id: new, change: MetadataRecord::CreatePartitions { name: "t".into(), total: 2 } };
        assert_eq!(image.apply(6, 2, &shrink), Outcome::Rejected(Rejection::InvalidPartitions));
        assert_eq!((image.offset, image.epoch), (6, 2));
        let back = ClusterImage::from_snapshot(&image.to_snapshot(), 6, 2);
        assert_eq!(back.topics.topic("t").unwrap().topic_id, new);
    }

    #[test]
    fn brokers_register_and_are_fenced() {
        let mut image = ClusterImage::default();
        assert_eq!(image.apply(1, 1, &ControllerRecord::FenceBroker { broker_id: 1 }), Outcome::Rejected(Rejection::UnknownBroker));
        let reg = BrokerRegistration { broker_id: 1, host: "h".into(), port: 1, rack: None, fenced: false };
        image.apply(2, 1, &ControllerRecord::RegisterBroker(reg));
        image.apply(3, 1, &ControllerRecord::FenceBroker { broker_id: 1 });
        assert_eq!(image.live_brokers().count(), 0);
        image.apply(4, 1, &ControllerRecord::UnfenceBroker { broker_id: 1 });
        assert_eq!(image.live_brokers().count(), 1);
    }
}
