//! Cluster mode: the broker acts on the partition state of the committed image (Kafka's
//! ReplicaManager). After every applied record the publisher calls [`reconcile`]: each
//! local replica takes its assignment (leader, leader epoch, ISR), a replica that became
//! a follower gets a fetcher for its leader ([`crate::fetcher`]), one that became leader
//! loses its fetcher. A leader proposes ISR changes to the controller ([`propose_isr`]):
//! a follower that caught up joins (from the fetch path), one that lagged more than
//! `replica.lag.time.max.ms` leaves ([`run_isr_checks`]). The controller commits or
//! refuses them; the ISR changes here only when the committed record is published.
//! Leading a `__consumer_offsets` partition makes this broker its groups' coordinator:
//! the group coordinator loads the partition when it becomes leader and unloads it when
//! it stops (Kafka's `onElection` / `onResignation`); leading a `__transaction_state`
//! partition likewise makes it the transaction coordinator of its transactional ids.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runnel_controller::types::PartitionAssignment;
use runnel_controller::ControllerRecord;
use runnel_metadata::Uuid;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::fetcher::{self, Target};
use crate::group::OFFSETS_TOPIC;
use crate::partition::Partition;
use crate::replica::{IsrProposal, RoleChange};
use crate::state::Broker;
use crate::txn::TXN_TOPIC;

/// The running fetchers, by partition: (leader epoch followed, stop token).
#[derive(Default)]
pub struct Fetchers {
    running: Mutex<HashMap<(String, i32), (i32, CancellationToken)>>,
}

impl Fetchers {
    fn stop(&self, key: &(String, i32)) {
        if let Some((_, token)) = self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(key) {
            token.cancel();
        }
    }

    fn start(&self, broker: &Arc<Broker>, part: Arc<Partition>, target: Target) {
        let key = (part.topic.clone(), part.index);
        let token = CancellationToken::new();
        let previous =
            self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(key, (target.leader_epoch, token.clone()));
        if let Some((_, old)) = previous {
            old.cancel();
        }
        tokio::spawn(fetcher::run(broker.clone(), part, target, token));
    }

    /// Stops every fetcher (shutdown).
    pub fn stop_all(&self) {
        for (_, (_, token)) in self.running.lock().unwrap_or_else(|p| p.into_inner()).drain() {
            token.cancel();
        }
    }
}

/// Brings every local replica in line with the image (blocking: call it off the async
/// workers; it must run inside the runtime, as it spawns fetchers).
pub fn reconcile(broker: &Arc<Broker>, c: &Cluster) {
    let me = broker.config.node_id;
    let hosted: Vec<(String, i32, PartitionAssignment)> = {
        let image = c.controller.image();
        if let Some(t) = image.topics.topic(OFFSETS_TOPIC) {
            broker.groups().set_partition_count(t.partitions as i32);
        }
        if let Some(t) = image.topics.topic(TXN_TOPIC) {
            broker.txns().set_partition_count(t.partitions as i32);
        }
        image
            .topics
            .topics()
            .flat_map(|t| {
                let parts = image.partitions.get(&t.topic_id).map(Vec::as_slice).unwrap_or_default();
                parts
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.replicas.contains(&me))
                    .map(|(i, a)| (t.name.clone(), i as i32, a.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    for (name, index, a) in hosted {
        let Some(part) = broker.partition(&name, index) else { continue };
        match part.assign(&a, me) {
            RoleChange::None => {}
            RoleChange::BecameLeader => {
                tracing::info!(topic = %name, partition = index, epoch = a.leader_epoch, isr = ?a.isr, "leading the partition");
                c.fetchers.stop(&(name.clone(), index));
                if name == OFFSETS_TOPIC {
                    load_groups(broker, index, a.leader_epoch, part);
                } else if name == TXN_TOPIC {
                    load_transactions(broker, index, a.leader_epoch, part);
                }
            }
            RoleChange::BecameFollower { leader } => {
                if name == OFFSETS_TOPIC {
                    broker.groups().resign(index);
                } else if name == TXN_TOPIC {
                    broker.txns().resign(index);
                }
                if leader < 0 {
                    tracing::warn!(topic = %name, partition = index, epoch = a.leader_epoch, "the partition has no leader (its in-sync replicas are down)");
                    c.fetchers.stop(&(name, index));
                } else {
                    c.fetchers.start(broker, part, Target { leader, leader_epoch: a.leader_epoch });
                }
            }
        }
    }
}

/// This broker leads `__consumer_offsets` partition `index` from `epoch` on: its groups
/// are loaded from the log on a blocking thread (requests for them meanwhile get
/// COORDINATOR_LOAD_IN_PROGRESS), so the publisher is not held up.
fn load_groups(broker: &Arc<Broker>, index: i32, epoch: i32, part: Arc<Partition>) {
    let groups = broker.groups().clone();
    if !groups.begin_load(index, epoch) {
        return;
    }
    tokio::task::spawn_blocking(move || {
        if let Err(e) = groups.finish_load(index, epoch, part) {
            tracing::error!(topic = OFFSETS_TOPIC, partition = index, error = %e, "could not load the groups of the partition");
        }
    });
}

/// This broker leads `__transaction_state` partition `index` from `epoch` on: it becomes
/// the coordinator of its transactional ids, loaded (and prepared transactions finished) on
/// a blocking thread.
fn load_transactions(broker: &Arc<Broker>, index: i32, epoch: i32, part: Arc<Partition>) {
    let b = broker.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = b.txns().elect(&b, index, epoch, part) {
            tracing::error!(topic = TXN_TOPIC, partition = index, error = %e, "could not load the transactions of the partition");
        }
    });
}

/// Proposes a leader's ISR change to the controller (asynchronously). If it is refused
/// or fails, the partition may propose again; if it commits, the publisher applies it.
pub fn propose_isr(broker: &Broker, part: Arc<Partition>, change: IsrProposal) {
    let (Some(c), Some(topic_id)) = (broker.cluster(), broker.topic(&part.topic).map(|t| t.topic_id)) else {
        part.isr_change_done();
        return;
    };
    let controller = c.controller.clone();
    tokio::spawn(async move {
        tracing::info!(topic = %part.topic, partition = part.index, isr = ?change.isr, "proposing an ISR change");
        let record = alter_partition(topic_id, part.index, &change);
        if let Err(e) = controller.propose(record).await {
            tracing::info!(topic = %part.topic, partition = part.index, error = %e, "ISR change not committed");
            part.isr_change_done();
        }
    });
}

fn alter_partition(topic_id: Uuid, partition: i32, c: &IsrProposal) -> ControllerRecord {
    ControllerRecord::AlterPartition {
        topic_id,
        partition,
        leader: c.leader,
        leader_epoch: c.leader_epoch,
        partition_epoch: c.partition_epoch,
        isr: c.isr.clone(),
    }
}

/// On every partition this broker leads, every half `replica.lag.time.max.ms`: proposes
/// to drop followers that lag more than that from the ISR. Every
/// `replica.high.watermark.checkpoint.interval.ms`, and once more at shutdown, writes the
/// replicas' high watermarks to `replication-offset-checkpoint` (Kafka's ReplicaManager).
pub async fn run_isr_checks(broker: Arc<Broker>, shutdown: CancellationToken) {
    let max_lag = Duration::from_millis(broker.config.replica_lag_time_max_ms());
    let tick = (max_lag / 2).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let mut checks = tokio::time::interval(tick);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checkpoints = tokio::time::interval(Duration::from_millis(broker.config.replica_hw_checkpoint_interval_ms()));
    checkpoints.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = checks.tick() => {}
            _ = checkpoints.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || crate::state::checkpoint_hw(&b)).await;
                continue;
            }
            _ = shutdown.cancelled() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || crate::state::checkpoint_hw(&b)).await;
                return;
            }
        }
        for part in broker.all_partitions() {
            if let Some(change) = part.lagging_followers(max_lag) {
                propose_isr(&broker, part, change);
            }
        }
    }
}
