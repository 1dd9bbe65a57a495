//! Writing a prepared transaction's markers (Kafka's `TransactionMarkerChannelManager` and
//! the receiving side of WriteTxnMarkers): one control batch (COMMIT or ABORT, under the
//! transaction's producer id and epoch and the coordinator epoch, the leader epoch of the
//! transaction's `__transaction_state` partition) appended to every partition of the
//! transaction by that partition's leader, acknowledged once its in-sync replicas have it.
//! A partition this broker leads gets its marker here; one led by another broker gets it
//! through a WriteTxnMarkers request to that broker. Every partition is retried (new
//! leaders looked up each round) until it has its marker, for at most [`GIVE_UP`] per
//! call; the coordinator calls again later for what is left.
//!
//! In `__consumer_offsets` the group coordinator then decides the transaction's pending
//! offsets. A partition deleted since it joined the transaction is skipped, as in Kafka; a
//! marker the partition refuses because it already saw a newer epoch of the producer is
//! stale and skipped too; one refused because the partition saw a newer coordinator epoch
//! means this broker is no longer the coordinator (TRANSACTION_COORDINATOR_FENCED).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::batch::{self, encode_marker, ControlType, Marker};
use runnel_storage::{AppendOrigin, ProducerError, StorageError};

use super::state::{TxnMeta, TxnState};
use crate::errors::KafkaError;
use crate::group::OFFSETS_TOPIC;
use crate::now_ms;
use crate::partition::{NotServing, Partition, WaitError};
use crate::state::Broker;

/// How long one call of [`write`] keeps retrying partitions without their marker.
const GIVE_UP: Duration = Duration::from_secs(5);
/// How long a marker waits for the partition's in-sync replicas.
pub const REPLICATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between rounds of retries.
const BACKOFF: Duration = Duration::from_millis(100);
/// The WriteTxnMarkers version sent (the only one Kafka 4 serves).
pub const WRITE_TXN_MARKERS_VERSION: i16 = 1;
const CLIENT_ID: &str = "runnel-txn-coordinator";

/// The marker of one transaction: what to write, under which producer and coordinator epoch.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// Why a partition did not take its marker here.
#[derive(Debug)]
pub enum MarkerError {
    NotLeader,
    NotEnoughReplicas,
    /// The in-sync replicas did not all have it within [`REPLICATION_TIMEOUT`].
    TimedOut,
    /// The partition saw a newer epoch of the producer: the marker is stale.
    StaleProducer,
    /// The partition saw a newer coordinator epoch for the producer.
    CoordinatorFenced,
    Storage(StorageError),
}

impl MarkerError {
    /// The error code WriteTxnMarkers answers (Kafka's mapping of the append's errors).
    pub fn kafka(&self) -> KafkaError {
        match self {
            MarkerError::NotLeader => KafkaError::NotLeaderOrFollower,
            MarkerError::NotEnoughReplicas => KafkaError::NotEnoughReplicas,
            MarkerError::TimedOut => KafkaError::RequestTimedOut,
            MarkerError::StaleProducer => KafkaError::InvalidProducerEpoch,
            MarkerError::CoordinatorFenced => KafkaError::TransactionCoordinatorFenced,
            MarkerError::Storage(e) => {
                tracing::error!(error = %e, "could not append a transaction marker");
                KafkaError::KafkaStorageError
            }
        }
    }
}

/// Appends the marker to `part` as its leader (its leader epoch stamped, refused below
/// `min.insync.replicas`), as the coordinator. Returns the marker's offset; the caller
/// waits for the in-sync replicas. Blocking (an append).
pub fn append(b: &Broker, part: &Partition, d: &Decision) -> Result<i64, MarkerError> {
    let epoch = part.check_produce(-1).map_err(|e| match e {
        NotServing::NotEnoughReplicas => MarkerError::NotEnoughReplicas,
        _ => MarkerError::NotLeader,
    })?;
    let control = if d.commit { ControlType::Commit } else { ControlType::Abort };
    let mut buf = encode_marker(d.producer_id, d.producer_epoch, Marker { control, coordinator_epoch: d.coordinator_epoch }, now_ms());
    if let Some(epoch) = epoch {
        batch::set_partition_leader_epoch(&mut buf, epoch);
    }
    let appended =
        part.append_as_leader(epoch, |log| log.append_as(&mut buf, AppendOrigin::Coordinator)).map_err(|_| MarkerError::NotLeader)?;
    let info = match appended {
        Ok(info) => info,
        Err(StorageError::Producer(ProducerError::InvalidEpoch { .. })) => return Err(MarkerError::StaleProducer),
        Err(StorageError::Producer(ProducerError::InvalidTxnState { .. })) => return Err(MarkerError::CoordinatorFenced),
        Err(e) => return Err(MarkerError::Storage(e)),
    };
    part.on_append();
    if part.topic == OFFSETS_TOPIC {
        b.groups().complete_txn(part.index, d.producer_id, d.commit);
    }
    Ok(info.last_offset)
}

/// Maps the wait for the in-sync replicas (acks=all) to a marker's outcome.
pub fn replicated(waited: Result<bool, WaitError>) -> Result<(), MarkerError> {
    match waited {
        Ok(true) => Ok(()),
        Ok(false) => Err(MarkerError::NotEnoughReplicas),
        Err(WaitError::TimedOut) => Err(MarkerError::TimedOut),
        Err(WaitError::NotLeader) => Err(MarkerError::NotLeader),
    }
}

/// [`append`], then waits (blocking) for the in-sync replicas.
fn append_here(b: &Broker, part: &Arc<Partition>, d: &Decision) -> Result<(), MarkerError> {
    let offset = append(b, part, d)?;
    if !part.is_replicated() {
        return Ok(());
    }
    let rt = tokio::runtime::Handle::try_current().map_err(|_| MarkerError::TimedOut)?;
    replicated(rt.block_on(part.wait_replicated(offset, REPLICATION_TIMEOUT)))
}

/// Where a partition of the transaction gets its marker.
enum Target {
    /// Deleted since it joined the transaction: no marker.
    Gone,
    Here(Arc<Partition>),
    Broker(i32),
    /// No live leader now.
    Nobody,
}

fn target(b: &Broker, topic: &str, index: i32) -> Target {
    let Some(c) = b.cluster() else {
        return b.partition(topic, index).map_or(Target::Gone, Target::Here);
    };
    let Some(t) = b.topic(topic) else { return Target::Gone };
    if index < 0 || index as u32 >= t.partitions {
        return Target::Gone;
    }
    match c.assignment(&t.topic_id, index) {
        Some((a, true)) if a.leader == b.config.node_id => b.partition(topic, index).map_or(Target::Nobody, Target::Here),
        Some((a, true)) if a.leader >= 0 => Target::Broker(a.leader),
        Some(_) => Target::Nobody,
        None => Target::Gone,
    }
}

/// Writes the markers of `meta` (PrepareCommit or PrepareAbort) to all its partitions as
/// coordinator epoch `coordinator_epoch`, retrying for up to [`GIVE_UP`] while
/// `still_coordinator()` holds. Err: COORDINATOR_NOT_AVAILABLE when some partitions are
/// still without their marker, NOT_COORDINATOR or TRANSACTION_COORDINATOR_FENCED when
/// this broker is no longer the transaction's coordinator. Blocking.
pub fn write(b: &Broker, meta: &TxnMeta, coordinator_epoch: i32, still_coordinator: &dyn Fn() -> bool) -> Result<(), KafkaError> {
    let d = Decision {
        producer_id: meta.producer_id,
        producer_epoch: meta.producer_epoch,
        commit: meta.state == TxnState::PrepareCommit,
        coordinator_epoch,
    };
    let deadline = Instant::now() + GIVE_UP;
    let mut pending: BTreeSet<(String, i32)> = meta.partitions.clone();
    loop {
        if !still_coordinator() {
            return Err(KafkaError::NotCoordinator);
        }
        let mut remote: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        for (topic, index) in pending.clone() {
            let done = match target(b, &topic, index) {
                Target::Gone => {
                    tracing::debug!(topic = %topic, partition = index, "skipping the marker of a partition that no longer exists");
                    true
                }
                Target::Here(part) => match append_here(b, &part, &d) {
                    Ok(()) => true,
                    Err(MarkerError::StaleProducer) => {
                        tracing::warn!(topic = %topic, partition = index, producer_id = d.producer_id, "stale transaction marker skipped");
                        true
                    }
                    Err(MarkerError::CoordinatorFenced) => return Err(KafkaError::TransactionCoordinatorFenced),
                    Err(e) => {
                        tracing::debug!(topic = %topic, partition = index, error = ?e, "transaction marker not written yet");
                        false
                    }
                },
                Target::Broker(leader) => {
                    remote.entry(leader).or_default().push((topic.clone(), index));
                    false
                }
                Target::Nobody => false,
            };
            if done {
                pending.remove(&(topic, index));
            }
        }
        for (leader, parts) in remote {
            match send(b, leader, &d, &parts) {
                Ok(answers) => {
                    for ((topic, index), code) in parts.into_iter().zip(answers) {
                        match code {
                            None | Some(KafkaError::InvalidProducerEpoch) => {
                                pending.remove(&(topic, index));
                            }
                            Some(KafkaError::TransactionCoordinatorFenced) => return Err(KafkaError::TransactionCoordinatorFenced),
                            Some(e) => tracing::debug!(topic = %topic, partition = index, leader, error = ?e, "transaction marker refused; retrying"),
                        }
                    }
                }
                Err(e) => tracing::debug!(leader, error = %e, "WriteTxnMarkers failed; retrying"),
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            tracing::warn!(producer_id = d.producer_id, missing = pending.len(), "transaction markers not all written yet; retrying later");
            return Err(KafkaError::CoordinatorNotAvailable);
        }
        std::thread::sleep(BACKOFF);
    }
}

/// One WriteTxnMarkers request to broker `leader` for `parts`: each partition's error (None:
/// it has its marker), in the order of `parts`. Blocking (runs the request on the runtime).
fn send(b: &Broker, leader: i32, d: &Decision, parts: &[(String, i32)]) -> Result<Vec<Option<KafkaError>>, String> {
    let addr = crate::peer::address(b, leader).ok_or("the broker is not live")?;
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in parts {
        by_topic.entry(t).or_default().push(*p);
    }
    let topics = by_topic
        .iter()
        .map(|(t, ps)| WritableTxnMarkerTopic::default().with_name(TopicName(StrBytes::from_string(t.to_string()))).with_partition_indexes(ps.clone()))
        .collect();
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(d.producer_id))
        .with_producer_epoch(d.producer_epoch)
        .with_transaction_result(d.commit)
        .with_coordinator_epoch(d.coordinator_epoch)
        .with_topics(topics)]);
    let rt = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
    let resp: WriteTxnMarkersResponse = rt.block_on(async {
        let mut stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let timeout = REPLICATION_TIMEOUT + Duration::from_secs(5);
        crate::peer::call(&mut stream, ApiKey::WriteTxnMarkers, WRITE_TXN_MARKERS_VERSION, 1, CLIENT_ID, &req, timeout)
            .await
            .map_err(|e| e.to_string())
    })?;
    let answered: BTreeMap<(String, i32), i16> = resp
        .markers
        .into_iter()
        .filter(|m| m.producer_id.0 == d.producer_id)
        .flat_map(|m| m.topics)
        .flat_map(|t| {
            let name = t.name.0.to_string();
            t.partitions.into_iter().map(move |p| ((name.clone(), p.partition_index), p.error_code))
        })
        .collect();
    Ok(parts
        .iter()
        .map(|p| match answered.get(p) {
            Some(0) => None,
            Some(code) => Some(KafkaError::try_from_code(*code).unwrap_or(KafkaError::UnknownServerError)),
            None => Some(KafkaError::UnknownServerError),
        })
        .collect())
}
