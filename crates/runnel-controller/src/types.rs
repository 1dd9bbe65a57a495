//! The controller's records, what applying one answers, and the openraft type
//! configuration that ties them to Raft. Records are keyed by ids (topic id, broker id):
//! a record about an old topic can never change a new topic that has the same name.

use std::io::Cursor;

use runnel_metadata::MetadataRecord;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A controller's Raft id; the same number as the broker's `--node-id`.
pub type NodeId = u64;

/// One change to cluster metadata, as it is replicated by the quorum. The offset of a
/// record is its Raft log index, its epoch the Raft term it was written in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControllerRecord {
    /// A topic change (the single-node record), keyed by the id of the topic it changes.
    /// A `CreateTopic` carries one assignment per partition, a `CreatePartitions` one
    /// per new partition; other changes none.
    Topic {
        topic_id: Uuid,
        change: MetadataRecord,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        assignments: Vec<PartitionAssignment>,
    },
    /// The cluster's id, set once by the first broker to ask.
    SetClusterId { cluster_id: String },
    /// A broker registers (or re-registers after a restart) with its endpoint. A
    /// registered broker starts unfenced.
    RegisterBroker(BrokerRegistration),
    /// The controller stopped hearing from a broker: it is no longer offered to clients.
    FenceBroker { broker_id: i32 },
    /// A fenced broker heartbeats again.
    UnfenceBroker { broker_id: i32 },
    /// A partition leader changes the ISR (Kafka's AlterPartition): accepted only if it
    /// names the partition's current leader epoch and partition epoch, so a deposed
    /// leader or a stale request changes nothing.
    AlterPartition {
        topic_id: Uuid,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
}

/// Where one partition lives (Kafka's PartitionRecord): its replicas, which of them
/// leads (-1: none, all ISR members are fenced) and since which leader epoch, and the
/// in-sync replicas. The leader epoch grows with every leader change; the partition
/// epoch with every change of leader or ISR. Only committed records change them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    pub replicas: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    #[serde(default)]
    pub partition_epoch: i32,
}

impl PartitionAssignment {
    /// A new partition on `replicas`, led by the first.
    pub fn new(replicas: Vec<i32>) -> Self {
        let leader = replicas.first().copied().unwrap_or(-1);
        Self { isr: replicas.clone(), replicas, leader, leader_epoch: 0, partition_epoch: 0 }
    }
}

/// A broker as the image knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    #[serde(default)]
    pub fenced: bool,
    /// Every listener's advertised endpoint: (name, host, port); `host`/`port` are the
    /// first listener's.
    #[serde(default)]
    pub listeners: Vec<(String, String, i32)>,
}

/// Why the controller refused a record. Validation that depends on the image is done
/// when the record is applied, the same way on every node, so two brokers racing to
/// create one topic get one success and one `TopicExists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("the topic already exists")]
    TopicExists,
    #[error("the topic does not exist (or has another id)")]
    UnknownTopic,
    #[error("a topic's partition count can only grow")]
    InvalidPartitions,
    #[error("the broker is not registered")]
    UnknownBroker,
    #[error("the partition assignments do not match the partition count")]
    InvalidAssignment,
    #[error("the cluster id is already set")]
    ClusterIdSet,
    #[error("that block of producer ids is already taken")]
    StaleProducerIds,
    #[error("the partition does not exist")]
    UnknownPartition,
    #[error("the leader or partition epoch is stale")]
    StalePartitionEpoch,
    #[error("the ISR must hold the leader and live replicas of the partition only")]
    InvalidIsr,
    #[error("the configs changed since they were read")]
    StaleConfigs,
}

/// What applying a record answered: the record changed the image, or it was refused
/// (and changed nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Applied,
    Rejected(Rejection),
}

openraft::declare_raft_types!(
    /// The openraft types of the metadata quorum.
    pub TypeConfig:
        D = ControllerRecord,
        R = Outcome,
        NodeId = NodeId,
        Node = openraft::BasicNode,
);

pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Raft = openraft::Raft<TypeConfig>;
