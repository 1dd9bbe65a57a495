//! Cluster mode (`--controller-listen` with `--controller-quorum`): the broker's side of
//! the metadata quorum (`runnel-controller`). It starts this node's controller, registers
//! the broker and keeps it heartbeating, turns metadata changes into proposals that are
//! answered only once a majority committed them and this broker has published them, and
//! runs the **publisher**: every committed record, whoever wrote it, becomes local changes
//! here (open the partitions this broker hosts, apply configs, remove a deleted topic's
//! data), exactly as for records this broker wrote itself.
//!
//! Partitions are placed by the broker that creates them, round-robin over the live
//! brokers; their replicas follow the image's assignments (see `crate::replication`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use runnel_controller::types::PartitionAssignment;
use runnel_controller::{
    BrokerRegistration, Controller, ControllerOptions, ControllerRecord, ProposeError, Published, Rejection,
};
use runnel_metadata::{MetadataRecord, Uuid};
use tokio::sync::{mpsc, watch};

use crate::state::{Broker, StateError};
use crate::BrokerConfig;

/// This broker's membership in the cluster.
pub struct Cluster {
    pub controller: Arc<Controller>,
    node_id: i32,
    /// The offset of the last record the publisher has acted on.
    published: watch::Sender<u64>,
    /// The image offset `Broker::open` started from: the publisher acts on later records.
    publish_from: std::sync::atomic::AtomicU64,
    events: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Published>>>,
    /// The follower fetchers of this broker's replicas.
    pub(crate) fetchers: crate::replication::Fetchers,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("--controller-quorum: {0}")]
    Quorum(String),
    #[error("cannot listen on --controller-listen {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error(transparent)]
    Controller(#[from] runnel_controller::ControllerError),
}

impl Cluster {
    /// Starts this node's controller on `--controller-listen`.
    pub async fn start(config: &BrokerConfig, listen: &str, quorum: &str) -> Result<Arc<Self>, ClusterError> {
        let voters = runnel_controller::parse_quorum(quorum).map_err(ClusterError::Quorum)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| ClusterError::Bind { addr: listen.to_string(), source })?;
        let mut opts = ControllerOptions::new(config.node_id as u64, config.data_dir.join(CONTROLLER_DIR), voters);
        opts.broker_session_timeout = Duration::from_millis(config.broker_session_timeout_ms());
        opts.broker_heartbeat_interval = Duration::from_millis(config.broker_heartbeat_interval_ms());
        let (controller, events) = Controller::start(opts, listener).await?;
        tracing::info!(node = config.node_id, listen, quorum, "controller started; waiting for the metadata quorum");
        Ok(Arc::new(Self {
            controller,
            node_id: config.node_id,
            published: watch::channel(0).0,
            publish_from: std::sync::atomic::AtomicU64::new(0),
            events: std::sync::Mutex::new(Some(events)),
            fetchers: Default::default(),
        }))
    }

    /// Registers this broker with the controller and keeps it heartbeating.
    pub fn register(&self, endpoints: &crate::listeners::Endpoints, rack: Option<String>) {
        // The registration's own address is where the other brokers fetch from.
        let inter_broker = endpoints.inter_broker();
        self.controller.run_broker(BrokerRegistration {
            broker_id: self.node_id,
            host: inter_broker.host.clone(),
            port: inter_broker.port,
            rack,
            fenced: false,
            listeners: endpoints.iter().map(|e| (e.name.to_string(), e.host.clone(), e.port)).collect(),
        });
    }

    /// Commits `record` through the quorum; answers once this node's image has it.
    /// Runs on a blocking thread (the state changes of `Broker` do).
    fn propose(&self, record: ControllerRecord) -> Result<u64, StateError> {
        let rt = tokio::runtime::Handle::current();
        let (offset, _) = rt.block_on(self.controller.propose(record)).map_err(|e| match e {
            ProposeError::Rejected(Rejection::TopicExists) => StateError::TopicExists(String::new()),
            ProposeError::Rejected(Rejection::StaleConfigs) => StateError::StaleConfigs,
            ProposeError::Rejected(r) => StateError::Refused(r.to_string()),
            e => StateError::Quorum(e.to_string()),
        })?;
        Ok(offset)
    }

    /// Commits `record` through the quorum and waits until this broker's publisher has
    /// acted on it (so a client that created a topic here can use it here at once).
    pub fn commit(&self, record: ControllerRecord) -> Result<(), StateError> {
        let offset = self.propose(record)?;
        let rt = tokio::runtime::Handle::current();
        let mut rx = self.published.subscribe();
        let done = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|o| *o >= offset)).await });
        match done {
            Ok(Ok(_)) => Ok(()),
            _ => Err(StateError::Quorum(format!("record {offset} committed but not yet applied on this broker"))),
        }
    }

    /// Waits until this broker's registration of this run is applied and it is live.
    pub fn wait_registered(&self) {
        let mut logged = false;
        // This run's registration, not the last run's: a restarted broker must not act on
        // the leaderships it held before (its registration moves them).
        while !self.controller.broker_registered() || !self.controller.image().live_brokers().any(|b| b.broker_id == self.node_id) {
            if !logged {
                tracing::info!(broker = self.node_id, "waiting for this broker's registration to commit");
                logged = true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn set_publish_from(&self, offset: u64) {
        self.publish_from.store(offset, std::sync::atomic::Ordering::SeqCst);
    }

    /// Proposes a topic change, keyed by the topic's id.
    pub fn commit_topic(
        &self,
        topic_id: Uuid,
        change: MetadataRecord,
        assignments: Vec<PartitionAssignment>,
    ) -> Result<(), StateError> {
        self.commit(ControllerRecord::Topic { topic_id, change, assignments })
    }

    /// The cluster id the quorum agreed on, proposing `ours` if none is set yet. Waits
    /// (on a blocking thread) until a majority of voters is up.
    pub fn agree_cluster_id(&self, ours: &str) -> Result<String, StateError> {
        loop {
            if let Some(id) = self.controller.image().cluster_id.clone() {
                return Ok(id);
            }
            match self.propose(ControllerRecord::SetClusterId { cluster_id: ours.to_string() }) {
                Ok(_) | Err(StateError::Refused(_)) => {}
                Err(e) => tracing::info!(error = %e, "waiting for the metadata quorum"),
            }
        }
    }

    /// Places `count` new partitions (from index `first`) of `topic_id` with `rf` replicas
    /// each on distinct live brokers: round-robin over the live brokers (by id) from a
    /// spot that depends on the topic, so leaders (the first replica) spread too.
    pub fn place(&self, topic_id: Uuid, first: u32, count: u32, rf: usize) -> Result<Vec<PartitionAssignment>, StateError> {
        let live: Vec<i32> = self.controller.image().live_brokers().map(|b| b.broker_id).collect();
        if rf == 0 || rf > live.len() {
            return Err(StateError::ReplicationFactor { rf, live: live.len() });
        }
        let start = (topic_id.as_u128() % live.len() as u128) as usize;
        Ok((first..first + count)
            .map(|p| {
                let at = start + p as usize;
                PartitionAssignment::new((0..rf).map(|j| live[(at + j) % live.len()]).collect())
            })
            .collect())
    }

    /// The replication factor of a topic (its first partition's replica count).
    pub fn replication_factor(&self, topic_id: &Uuid) -> usize {
        self.controller.image().partition(topic_id, 0).map_or(1, |p| p.replicas.len())
    }

    /// Live (unfenced) brokers: id, host, port, rack.
    pub fn live_brokers(&self) -> Vec<BrokerRegistration> {
        self.controller.image().live_brokers().cloned().collect()
    }

    /// The controller leader's id, or -1 while there is none.
    pub fn controller_id(&self) -> i32 {
        self.controller.leader().map(|l| l as i32).unwrap_or(-1)
    }

    /// Partition `p` of `topic_id`'s assignment, with whether its leader is live.
    pub fn assignment(&self, topic_id: &Uuid, p: i32) -> Option<(PartitionAssignment, bool)> {
        let image = self.controller.image();
        let a = image.partitions.get(topic_id)?.get(usize::try_from(p).ok()?)?.clone();
        let live = image.brokers.get(&a.leader).is_some_and(|b| !b.fenced);
        Some((a, live))
    }

    /// Whether this broker hosts partition `p` of `topic_id`.
    pub fn hosts(&self, topic_id: &Uuid, p: i32) -> bool {
        self.assignment(topic_id, p).is_some_and(|(a, _)| a.replicas.contains(&self.node_id))
    }

    /// The partitions of each topic this broker hosts, and the image's offset.
    pub fn hosted(&self) -> (BTreeMap<String, (Uuid, Vec<i32>, BTreeMap<String, String>)>, u64) {
        let image = self.controller.image();
        let mut out = BTreeMap::new();
        for t in image.topics.topics() {
            let parts = image
                .partitions
                .get(&t.topic_id)
                .map(|ps| {
                    ps.iter().enumerate().filter(|(_, a)| a.replicas.contains(&self.node_id)).map(|(i, _)| i as i32).collect()
                })
                .unwrap_or_default();
            out.insert(t.name.clone(), (t.topic_id, parts, t.configs.clone()));
        }
        (out, image.offset)
    }

    /// Starts the publisher: after the image `Broker::open` started from, every
    /// committed record becomes local changes, in log order.
    pub fn run_publisher(self: &Arc<Self>, broker: Arc<Broker>) {
        let start_offset = self.publish_from.load(std::sync::atomic::Ordering::SeqCst);
        let Some(mut events) = self.events.lock().unwrap_or_else(|p| p.into_inner()).take() else { return };
        self.published.send_replace(start_offset);
        let me = self.clone();
        tokio::spawn(async move {
            // The replicas opened with the image `Broker::open` read take their roles.
            let (b, c) = (broker.clone(), me.clone());
            let _ = tokio::task::spawn_blocking(move || crate::replication::reconcile(&b, &c)).await;
            while let Some(event) = events.recv().await {
                let offset = match &event {
                    Published::Record { offset, .. } | Published::Snapshot { offset } => *offset,
                };
                if offset > start_offset || matches!(event, Published::Snapshot { .. }) {
                    let (b, c) = (broker.clone(), me.clone());
                    let result = tokio::task::spawn_blocking(move || c.publish(&b, event)).await;
                    match result {
                        Ok(Err(e)) => tracing::error!(offset, error = %e, "could not apply a committed metadata record here"),
                        Err(e) => tracing::error!(offset, error = %e, "metadata publisher task failed"),
                        Ok(Ok(())) => {}
                    }
                }
                me.published.send_modify(|o| *o = (*o).max(offset));
            }
        });
    }

    /// Acts on one applied record (blocking I/O), then brings the local replicas' roles
    /// in line with the image.
    fn publish(&self, broker: &Arc<Broker>, event: Published) -> Result<(), StateError> {
        let done = self.apply_record(broker, event);
        crate::replication::reconcile(broker, self);
        done
    }

    fn apply_record(&self, broker: &Broker, event: Published) -> Result<(), StateError> {
        match event {
            Published::Record { record: ControllerRecord::Topic { topic_id, change, .. }, outcome, .. } => {
                if outcome != runnel_controller::Outcome::Applied {
                    return Ok(());
                }
                match change {
                    MetadataRecord::CreateTopic { name, configs, .. } | MetadataRecord::SetTopicConfigs { name, configs, .. } => {
                        broker.apply_topic_configs(&name);
                        self.open_hosted(broker, &name, &topic_id, &configs)
                    }
                    MetadataRecord::CreatePartitions { name, .. } => {
                        let configs = broker.topic(&name).map(|t| t.configs).unwrap_or_default();
                        self.open_hosted(broker, &name, &topic_id, &configs)
                    }
                    MetadataRecord::ProducerIds { .. }
                    | MetadataRecord::ScramCredential { .. }
                    | MetadataRecord::DeleteScramCredential { .. } => Ok(()),
                    MetadataRecord::CreateAcls { .. } | MetadataRecord::DeleteAcls { .. } | MetadataRecord::AlterClientQuota { .. } => {
                        broker.refresh_security();
                        Ok(())
                    }
                    MetadataRecord::SetResourceConfigs { .. } => {
                        broker.refresh_dynamic_configs();
                        Ok(())
                    }
                    MetadataRecord::DeleteTopic { name } => {
                        broker.remove_topic_partitions(&name)?;
                        broker.groups().remove_offsets_for_topic(&name);
                        Ok(())
                    }
                }
            }
            Published::Record { .. } => Ok(()),
            Published::Snapshot { .. } => {
                broker.refresh_security();
                broker.refresh_dynamic_configs();
                // Reconcile with the whole image: open what is hosted here, remove topics
                // a committed delete removed while this node was behind.
                let (hosted, _) = self.hosted();
                for name in broker.open_topic_names() {
                    if !hosted.contains_key(&name) && !crate::group::is_internal_topic(&name) {
                        broker.remove_topic_partitions(&name)?;
                    }
                }
                for (name, (topic_id, _, configs)) in hosted {
                    self.open_hosted(broker, &name, &topic_id, &configs)?;
                }
                Ok(())
            }
        }
    }

    fn open_hosted(&self, broker: &Broker, name: &str, topic_id: &Uuid, configs: &BTreeMap<String, String>) -> Result<(), StateError> {
        let count = broker.topic(name).filter(|t| t.topic_id == *topic_id).map(|t| t.partitions).unwrap_or(0);
        let missing: Vec<i32> =
            (0..count as i32).filter(|p| self.hosts(topic_id, *p) && broker.partition(name, *p).is_none()).collect();
        broker.open_partitions(&(name, *topic_id), missing, configs)
    }
}

/// The controller's directory in the data dir (Raft log, vote, snapshot), inside the
/// metadata dir that single-node mode uses for its local log.
pub const CONTROLLER_DIR: &str = "__cluster_metadata-0/quorum";

/// A broker as clients are told about it.
pub struct ListedBroker {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// Where clients find a partition: leader (-1 when its broker is fenced), leader epoch,
/// replicas and ISR.
pub struct PartitionView {
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// The brokers to list to a client that came through listener `listener`: the live
/// brokers in cluster mode, else this one, each at its address for that listener (a
/// broker without a listener of that name: at its first listener's address).
pub fn listed_brokers(b: &Broker, listener: &str) -> Vec<ListedBroker> {
    match b.cluster() {
        Some(c) => c
            .live_brokers()
            .into_iter()
            .map(|r| {
                let (host, port) = r
                    .listeners
                    .iter()
                    .find(|(name, _, _)| name == listener)
                    .map_or((r.host, r.port), |(_, h, p)| (h.clone(), *p));
                ListedBroker { id: r.broker_id, host, port, rack: r.rack }
            })
            .collect(),
        None => {
            let e = b.endpoints.get(listener);
            vec![ListedBroker { id: b.config.node_id, host: e.host.clone(), port: e.port, rack: None }]
        }
    }
}

/// The controller's id as clients are told (this broker on a single node).
pub fn controller_id(b: &Broker) -> i32 {
    b.cluster().map_or(b.config.node_id, |c| c.controller_id())
}

/// Partition `p` of topic `topic_id` as clients see it.
pub fn partition_view(b: &Broker, topic_id: &Uuid, p: i32) -> PartitionView {
    let me = b.config.node_id;
    match b.cluster().and_then(|c| c.assignment(topic_id, p)) {
        Some((a, live)) => PartitionView {
            leader: if live { a.leader } else { -1 },
            leader_epoch: a.leader_epoch,
            replicas: a.replicas,
            isr: a.isr,
        },
        None => PartitionView { leader: me, leader_epoch: 0, replicas: vec![me], isr: vec![me] },
    }
}

/// The coordinator of `group`, at its address for listener `listener`: the leader of its
/// `__consumer_offsets` partition (this broker on a single node). Err:
/// COORDINATOR_NOT_AVAILABLE while the topic does not exist or that partition has no live
/// leader.
pub fn group_coordinator(b: &Broker, group: &str, listener: &str) -> Result<ListedBroker, crate::errors::KafkaError> {
    coordinator(b, crate::group::OFFSETS_TOPIC, group, listener)
}

/// The coordinator of `key` in internal topic `topic` (`__consumer_offsets` for a group,
/// `__transaction_state` for a transactional id): the leader of partition
/// `abs(hash(key)) % partitions`, as [`group_coordinator`].
pub fn coordinator(b: &Broker, topic: &str, key: &str, listener: &str) -> Result<ListedBroker, crate::errors::KafkaError> {
    let Some(c) = b.cluster() else {
        let e = b.endpoints.get(listener);
        return Ok(ListedBroker { id: b.config.node_id, host: e.host.clone(), port: e.port, rack: None });
    };
    let unavailable = crate::errors::KafkaError::CoordinatorNotAvailable;
    let topic = b.topic(topic).ok_or(unavailable)?;
    let partition = crate::group::partition_for(key, topic.partitions as i32);
    let (a, live) = c.assignment(&topic.topic_id, partition).ok_or(unavailable)?;
    if !live || a.leader < 0 {
        return Err(unavailable);
    }
    listed_brokers(b, listener).into_iter().find(|l| l.id == a.leader).ok_or(unavailable)
}
