//! The cluster image: what the committed controller records add up to (topics through
//! the single-node [`MetadataImage`], plus the registered brokers), the offset and epoch of
//! the last record applied, and its snapshot form. Applying is deterministic: every node
//! that applies the same records reaches the same image and gives the same answers.

use std::collections::BTreeMap;

use runnel_metadata::{MetadataImage, MetadataRecord};
use serde::{Deserialize, Serialize};

use uuid::Uuid;

use crate::types::{BrokerRegistration, ControllerRecord, Outcome, PartitionAssignment, Rejection};

/// Topics and brokers, as of record `offset` (written in `epoch`).
#[derive(Debug, Default, Clone)]
pub struct ClusterImage {
    pub topics: MetadataImage,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Each topic's partitions, by topic id, in partition order.
    pub partitions: BTreeMap<Uuid, Vec<PartitionAssignment>>,
    pub cluster_id: Option<String>,
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
    #[serde(default)]
    pub partitions: BTreeMap<Uuid, Vec<PartitionAssignment>>,
    #[serde(default)]
    pub cluster_id: Option<String>,
}

impl ClusterImage {
    /// Whether `record` may be applied to this image.
    pub fn check(&self, record: &ControllerRecord) -> Result<(), Rejection> {
        match record {
            ControllerRecord::Topic { topic_id, change, assignments } => {
                let by_name = |name: &str| self.topics.topic(name).filter(|t| t.topic_id == *topic_id);
                match change {
                    MetadataRecord::CreateTopic { name, .. } => {
                        if self.topics.topic(name).is_some() || self.topics.topic_by_id(topic_id).is_some() {
                            return Err(Rejection::TopicExists);
                        }
                        if let MetadataRecord::CreateTopic { partitions, .. } = change {
                            if !assignments.is_empty() && assignments.len() != *partitions as usize {
                                return Err(Rejection::InvalidAssignment);
                            }
                        }
                    }
                    MetadataRecord::CreatePartitions { name, total } => {
                        let t = by_name(name).ok_or(Rejection::UnknownTopic)?;
                        if *total <= t.partitions {
                            return Err(Rejection::InvalidPartitions);
                        }
                        if !assignments.is_empty() && assignments.len() != (*total - t.partitions) as usize {
                            return Err(Rejection::InvalidAssignment);
                        }
                    }
                    MetadataRecord::SetTopicConfigs { name, .. } | MetadataRecord::DeleteTopic { name } => {
                        by_name(name).ok_or(Rejection::UnknownTopic)?;
                    }
                    // Not a topic change (keyed by the nil id): a block of producer ids,
                    // which must lie above every block handed out so far.
                    MetadataRecord::ProducerIds { next_producer_id, .. } => {
                        if *next_producer_id <= self.topics.next_producer_id() {
                            return Err(Rejection::StaleProducerIds);
                        }
                    }
                }
                Ok(())
            }
            ControllerRecord::RegisterBroker(_) => Ok(()),
            ControllerRecord::SetClusterId { .. } if self.cluster_id.is_some() => Err(Rejection::ClusterIdSet),
            ControllerRecord::SetClusterId { .. } => Ok(()),
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
            ControllerRecord::Topic { topic_id, change, assignments } => {
                match change {
                    MetadataRecord::CreateTopic { .. } => {
                        self.partitions.insert(*topic_id, assignments.clone());
                    }
                    MetadataRecord::CreatePartitions { .. } => {
                        self.partitions.entry(*topic_id).or_default().extend(assignments.iter().cloned());
                    }
                    MetadataRecord::DeleteTopic { .. } => {
                        self.partitions.remove(topic_id);
                    }
                    MetadataRecord::SetTopicConfigs { .. } | MetadataRecord::ProducerIds { .. } => {}
                }
                self.topics.apply(change)
            }
            ControllerRecord::SetClusterId { cluster_id } => self.cluster_id = Some(cluster_id.clone()),
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
            partitions: self.partitions.clone(),
            cluster_id: self.cluster_id.clone(),
        }
    }

    /// The image a snapshot holds, as of `offset` and `epoch`.
    pub fn from_snapshot(snapshot: &ImageSnapshot, offset: u64, epoch: u64) -> Self {
        let mut topics = MetadataImage::default();
        for r in &snapshot.topics {
            topics.apply(r);
        }
        let brokers = snapshot.brokers.iter().map(|b| (b.broker_id, b.clone())).collect();
        Self { topics, brokers, partitions: snapshot.partitions.clone(), cluster_id: snapshot.cluster_id.clone(), offset, epoch }
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
            assignments: vec![one(1), one(2)],
        }
    }

    fn one(b: i32) -> PartitionAssignment {
        PartitionAssignment { replicas: vec![b], leader: b, leader_epoch: 0, isr: vec![b] }
    }

    #[test]
    fn records_are_checked_against_the_image_and_keyed_by_topic_id() {
        let mut image = ClusterImage::default();
        let old = Uuid::new_v4();
        assert_eq!(image.apply(1, 1, &create("t", old)), Outcome::Applied);
        assert_eq!(image.apply(2, 1, &create("t", Uuid::new_v4())), Outcome::Rejected(Rejection::TopicExists));
        let delete = |id| ControllerRecord::Topic { topic_id: id, change: MetadataRecord::DeleteTopic { name: "t".into() }, assignments: vec![] };
        assert_eq!(image.apply(3, 1, &delete(old)), Outcome::Applied);
        let new = Uuid::new_v4();
        assert_eq!(image.apply(4, 2, &create("t", new)), Outcome::Applied);
        // A delete of the old topic (say, retried late) does not hit the new one.
        assert_eq!(image.apply(5, 2, &delete(old)), Outcome::Rejected(Rejection::UnknownTopic));
        let grow = |total, assignments| ControllerRecord::Topic {
            topic_id: new,
            change: MetadataRecord::CreatePartitions { name: "t".into(), total },
            assignments,
        };
        assert_eq!(image.apply(6, 2, &grow(2, vec![])), Outcome::Rejected(Rejection::InvalidPartitions));
        assert_eq!(image.apply(7, 2, &grow(4, vec![one(3)])), Outcome::Rejected(Rejection::InvalidAssignment));
        assert_eq!(image.apply(8, 2, &grow(3, vec![one(3)])), Outcome::Applied);
        assert_eq!(image.partitions[&new].iter().map(|a| a.leader).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(!image.partitions.contains_key(&old));
        assert_eq!((image.offset, image.epoch), (8, 2));
        let back = ClusterImage::from_snapshot(&image.to_snapshot(), 8, 2);
        assert_eq!(back.topics.topic("t").unwrap().topic_id, new);
        assert_eq!(back.to_snapshot(), image.to_snapshot());
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
