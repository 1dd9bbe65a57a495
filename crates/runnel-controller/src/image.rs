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
                    MetadataRecord::SetTopicConfigs { name, expected, .. } => {
                        let t = by_name(name).ok_or(Rejection::UnknownTopic)?;
                        if expected.as_ref().is_some_and(|e| *e != t.configs) {
                            return Err(Rejection::StaleConfigs);
                        }
                    }
                    MetadataRecord::DeleteTopic { name } => {
                        by_name(name).ok_or(Rejection::UnknownTopic)?;
                    }
                    // Read-modify-write of a broker's or group's configs: refused when
                    // another alter committed in between.
                    MetadataRecord::SetResourceConfigs { resource, name, expected: Some(e), .. } => {
                        if self.topics.resource_configs(*resource, name) != *e {
                            return Err(Rejection::StaleConfigs);
                        }
                    }
                    // Not a topic change (keyed by the nil id): a block of producer ids,
                    // which must lie above every block handed out so far.
                    MetadataRecord::ProducerIds { next_producer_id, .. } => {
                        if *next_producer_id <= self.topics.next_producer_id() {
                            return Err(Rejection::StaleProducerIds);
                        }
                    }
                    // Credentials (keyed by the nil id) replace or remove what is there.
                    MetadataRecord::ScramCredential { .. } | MetadataRecord::DeleteScramCredential { .. } => {}
                    // Not topic changes either (nil id): validated by the broker that
                    // wrote them; applying them cannot fail.
                    MetadataRecord::CreateAcls { .. }
                    | MetadataRecord::DeleteAcls { .. }
                    | MetadataRecord::AlterClientQuota { .. }
                    | MetadataRecord::SetResourceConfigs { expected: None, .. } => {}
                }
                Ok(())
            }
            ControllerRecord::RegisterBroker(_) => Ok(()),
            ControllerRecord::SetClusterId { .. } if self.cluster_id.is_some() => Err(Rejection::ClusterIdSet),
            ControllerRecord::SetClusterId { .. } => Ok(()),
            ControllerRecord::FenceBroker { broker_id } | ControllerRecord::UnfenceBroker { broker_id } => {
                self.brokers.get(broker_id).map(|_| ()).ok_or(Rejection::UnknownBroker)
            }
            ControllerRecord::AlterPartition { topic_id, partition, leader, leader_epoch, partition_epoch, isr } => {
                let p = self.partition(topic_id, *partition).ok_or(Rejection::UnknownPartition)?;
                if p.leader != *leader || p.leader_epoch != *leader_epoch || p.partition_epoch != *partition_epoch {
                    return Err(Rejection::StalePartitionEpoch);
                }
                let mut seen = std::collections::BTreeSet::new();
                let valid = isr.contains(leader)
                    && isr.iter().all(|r| {
                        seen.insert(*r)
                            && p.replicas.contains(r)
                            && (p.isr.contains(r) || self.brokers.get(r).is_some_and(|b| !b.fenced))
                    });
                if !valid {
                    return Err(Rejection::InvalidIsr);
                }
                Ok(())
            }
        }
    }

    /// Partition `index` of topic `topic_id`.
    pub fn partition(&self, topic_id: &Uuid, index: i32) -> Option<&PartitionAssignment> {
        self.partitions.get(topic_id)?.get(usize::try_from(index).ok()?)
    }

    /// `broker_id` is gone (fenced, or restarted and registering again): it leaves every
    /// ISR it is in, except as the last member; a partition it led gets a new leader from
    /// the rest of the ISR (in replica order; leader epoch bumped), or none (-1) when it
    /// was the last in-sync replica (unclean election stays off).
    fn remove_replica(&mut self, broker_id: i32) {
        for p in self.partitions.values_mut().flatten().filter(|p| p.isr.contains(&broker_id)) {
            if p.isr.len() > 1 {
                p.isr.retain(|r| *r != broker_id);
                p.partition_epoch += 1;
                if p.leader == broker_id {
                    p.leader = p.replicas.iter().copied().find(|r| p.isr.contains(r)).unwrap_or(-1);
                    p.leader_epoch += 1;
                }
            } else if p.leader == broker_id {
                p.leader = -1;
                p.leader_epoch += 1;
                p.partition_epoch += 1;
            }
        }
    }

    /// `broker_id` is live again: every leaderless partition whose ISR holds it gets it
    /// as leader.
    fn offer_leadership(&mut self, broker_id: i32) {
        for p in self.partitions.values_mut().flatten().filter(|p| p.leader == -1 && p.isr.contains(&broker_id)) {
            p.leader = broker_id;
            p.leader_epoch += 1;
            p.partition_epoch += 1;
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
                    MetadataRecord::SetTopicConfigs { .. }
                    | MetadataRecord::ProducerIds { .. }
                    | MetadataRecord::ScramCredential { .. }
                    | MetadataRecord::DeleteScramCredential { .. }
                    | MetadataRecord::CreateAcls { .. }
                    | MetadataRecord::DeleteAcls { .. }
                    | MetadataRecord::AlterClientQuota { .. }
                    | MetadataRecord::SetResourceConfigs { .. } => {}
                }
                self.topics.apply(change)
            }
            ControllerRecord::SetClusterId { cluster_id } => self.cluster_id = Some(cluster_id.clone()),
            ControllerRecord::RegisterBroker(reg) => {
                // A broker registering again restarted: what it led moves on, as if it
                // had been fenced, before it is live again.
                if let Some(b) = self.brokers.get_mut(&reg.broker_id) {
                    b.fenced = true;
                    self.remove_replica(reg.broker_id);
                }
                self.brokers.insert(reg.broker_id, BrokerRegistration { fenced: false, ..reg.clone() });
                self.offer_leadership(reg.broker_id);
            }
            ControllerRecord::FenceBroker { broker_id } => {
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    b.fenced = true;
                }
                self.remove_replica(*broker_id);
            }
            ControllerRecord::UnfenceBroker { broker_id } => {
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    b.fenced = false;
                }
                self.offer_leadership(*broker_id);
            }
            ControllerRecord::AlterPartition { topic_id, partition, isr, .. } => {
                if let Some(p) = self.partitions.get_mut(topic_id).and_then(|ps| ps.get_mut(*partition as usize)) {
                    p.isr = isr.clone();
                    p.partition_epoch += 1;
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
                // So do the SCRAM credentials.
                .chain(self.topics.scram_records())
                // So do the ACLs, client quotas and broker and group configs.
                .chain(self.topics.security_records())
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
        PartitionAssignment::new(vec![b])
    }

    fn register(image: &mut ClusterImage, offset: u64, b: i32) {
        let reg = BrokerRegistration { broker_id: b, host: "h".into(), port: b, rack: None, fenced: false, listeners: vec![] };
        assert_eq!(image.apply(offset, 1, &ControllerRecord::RegisterBroker(reg)), Outcome::Applied);
    }

    #[test]
    fn a_fenced_leader_is_replaced_from_the_isr_and_stale_isr_changes_are_refused() {
        let mut image = ClusterImage::default();
        for b in 1..=3 {
            register(&mut image, b as u64, b);
        }
        let id = Uuid::new_v4();
        let change = MetadataRecord::CreateTopic { name: "t".into(), topic_id: id, partitions: 1, configs: Default::default() };
        let create = ControllerRecord::Topic { topic_id: id, change, assignments: vec![PartitionAssignment::new(vec![2, 3, 1])] };
        assert_eq!(image.apply(4, 1, &create), Outcome::Applied);
        image.apply(5, 1, &ControllerRecord::FenceBroker { broker_id: 2 });
        let p = image.partition(&id, 0).unwrap().clone();
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone(), p.partition_epoch), (3, 1, vec![3, 1], 1));
        // The deposed leader's ISR change names an old epoch: refused.
        let alter = |leader, leader_epoch, partition_epoch, isr: Vec<i32>| ControllerRecord::AlterPartition {
            topic_id: id,
            partition: 0,
            leader,
            leader_epoch,
            partition_epoch,
            isr,
        };
        assert_eq!(image.apply(6, 1, &alter(2, 0, 0, vec![2])), Outcome::Rejected(Rejection::StalePartitionEpoch));
        // A fenced broker cannot join the ISR; a live one can.
        assert_eq!(image.apply(7, 1, &alter(3, 1, 1, vec![3, 1, 2])), Outcome::Rejected(Rejection::InvalidIsr));
        assert_eq!(image.apply(8, 1, &alter(3, 1, 1, vec![3])), Outcome::Applied);
        // The last in-sync replica fenced: no leader until it is back (no unclean election).
        image.apply(9, 1, &ControllerRecord::FenceBroker { broker_id: 3 });
        let p = image.partition(&id, 0).unwrap().clone();
        assert_eq!((p.leader, p.isr.clone()), (-1, vec![3]));
        image.apply(10, 1, &ControllerRecord::UnfenceBroker { broker_id: 1 });
        assert_eq!(image.partition(&id, 0).unwrap().leader, -1);
        image.apply(11, 1, &ControllerRecord::UnfenceBroker { broker_id: 3 });
        let p = image.partition(&id, 0).unwrap().clone();
        assert_eq!((p.leader, p.leader_epoch), (3, 3));
        // A leader that restarts (registers again) hands its leadership over.
        assert_eq!(image.apply(12, 1, &alter(3, 3, p.partition_epoch, vec![3, 1])), Outcome::Applied);
        register(&mut image, 13, 3);
        let p = image.partition(&id, 0).unwrap().clone();
        assert_eq!((p.leader, p.leader_epoch, p.isr), (1, 4, vec![1]));
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
    fn a_config_change_read_from_values_changed_since_is_refused() {
        use runnel_metadata::ConfigResource;
        let mut image = ClusterImage::default();
        let kv = |k: &str, v: &str| std::iter::once((k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        let set = |configs, expected| ControllerRecord::Topic {
            topic_id: Uuid::nil(),
            change: MetadataRecord::SetResourceConfigs { resource: ConfigResource::Broker, name: String::new(), configs, expected },
            assignments: vec![],
        };
        assert_eq!(image.apply(1, 1, &set(kv("a", "1"), Some(BTreeMap::new()))), Outcome::Applied);
        // Two alters read {a=1}: the first commits, the second is refused and changes nothing.
        assert_eq!(image.apply(2, 1, &set(kv("a", "2"), Some(kv("a", "1")))), Outcome::Applied);
        assert_eq!(image.apply(3, 1, &set(kv("b", "1"), Some(kv("a", "1")))), Outcome::Rejected(Rejection::StaleConfigs));
        assert_eq!(image.topics.resource_configs(ConfigResource::Broker, ""), kv("a", "2"));
        // Without an expectation (records of earlier versions) the record is applied as it is.
        assert_eq!(image.apply(4, 1, &set(kv("c", "1"), None)), Outcome::Applied);
        // The same for a topic's overrides.
        let id = Uuid::new_v4();
        assert_eq!(image.apply(5, 1, &create("t", id)), Outcome::Applied);
        let topic = |configs, expected| ControllerRecord::Topic {
            topic_id: id,
            change: MetadataRecord::SetTopicConfigs { name: "t".into(), configs, expected },
            assignments: vec![],
        };
        assert_eq!(image.apply(6, 1, &topic(kv("retention.ms", "1"), Some(BTreeMap::new()))), Outcome::Applied);
        assert_eq!(image.apply(7, 1, &topic(kv("segment.ms", "1"), Some(BTreeMap::new()))), Outcome::Rejected(Rejection::StaleConfigs));
        assert_eq!(image.topics.topic("t").unwrap().configs, kv("retention.ms", "1"));
    }

    #[test]
    fn brokers_register_and_are_fenced() {
        let mut image = ClusterImage::default();
        assert_eq!(image.apply(1, 1, &ControllerRecord::FenceBroker { broker_id: 1 }), Outcome::Rejected(Rejection::UnknownBroker));
        let reg = BrokerRegistration { broker_id: 1, host: "h".into(), port: 1, rack: None, fenced: false, listeners: vec![] };
        image.apply(2, 1, &ControllerRecord::RegisterBroker(reg));
        image.apply(3, 1, &ControllerRecord::FenceBroker { broker_id: 1 });
        assert_eq!(image.live_brokers().count(), 0);
        image.apply(4, 1, &ControllerRecord::UnfenceBroker { broker_id: 1 });
        assert_eq!(image.live_brokers().count(), 1);
    }
}
