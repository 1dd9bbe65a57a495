//! The follower side of replication (Kafka's ReplicaFetcherThread, one task per followed
//! partition): fetch from the leader with the Fetch API clients use, our node id as
//! `replica_id` and our leader epoch as `current_leader_epoch`, and append what comes back
//! as it is (the leader's offsets, leader epochs and producer ids; the producer state is
//! rebuilt as on replay). Each fetch tells the leader our log end; each answer brings the
//! leader's high watermark.
//!
//! On starting to follow a new leader epoch the log is first cut back to where it parts
//! from the leader's (KIP-101/279): the follower asks the leader (OffsetForLeaderEpoch)
//! where the latest epoch of its own log ends in the leader's log, and cuts there — or, if
//! the leader's answer is an older epoch, where that epoch ends in its own log, whichever is
//! lower. A log with no leader epochs known (written before replication) is cut back to
//! the high watermark instead (everything below it is on every ISR member). Then it fetches
//! from its new log end; it rejoins the ISR only once caught up.
//!
//! The task stops when cancelled (the publisher saw a new leader or epoch). It never
//! fetches from a broker the image does not list as live.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::batch;
use runnel_storage::StorageError;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::errors::KafkaError;
use crate::partition::{FollowerAppend, Partition};
use crate::peer::{self, PeerError};
use crate::state::Broker;

/// The Fetch version followers send (topics by name, `replica_id`, leader epochs).
const FETCH_VERSION: i16 = 12;
/// The OffsetForLeaderEpoch version followers send (`replica_id`, current leader epoch).
const EPOCH_VERSION: i16 = 3;
/// Largest response a follower accepts.
const MAX_RESPONSE: usize = peer::MAX_RESPONSE;
/// The client id of replica fetches.
const CLIENT_ID: &str = "runnel-replica-fetcher";
/// Back-off after an error (no leader yet, connection refused, leader not ready).
const BACKOFF: Duration = Duration::from_millis(100);

/// What the follower knows about whom it follows.
pub struct Target {
    pub leader: i32,
    pub leader_epoch: i32,
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Protocol(String),
    #[error("leader answered {0:?}")]
    Kafka(KafkaError),
}

impl From<PeerError> for FetchError {
    fn from(e: PeerError) -> Self {
        match e {
            PeerError::Io(e) => FetchError::Io(e),
            PeerError::Protocol(p) => FetchError::Protocol(p),
        }
    }
}

/// Follows `target` for `part` until `cancel`.
pub async fn run(broker: Arc<Broker>, part: Arc<Partition>, target: Target, cancel: CancellationToken) {
    let mut conn: Option<TcpStream> = None;
    let mut truncated = false;
    let mut correlation = 0i32;
    while !cancel.is_cancelled() {
        if conn.is_none() {
            conn = match peer::address(&broker, target.leader) {
                None => None,
                Some(addr) => tokio::select! {
                    c = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&addr)) => c.ok().and_then(Result::ok),
                    _ = cancel.cancelled() => return,
                },
            };
            if conn.is_none() {
                backoff(&cancel).await;
                continue;
            }
        }
        let stream = conn.as_mut().expect("connected above");
        correlation = correlation.wrapping_add(1);
        let follow = Follow { broker: &broker, part: &part, target: &target, cancel: &cancel };
        let round = if truncated {
            tokio::select! {
                r = fetch_once(follow, stream, correlation) => r,
                _ = cancel.cancelled() => return,
            }
        } else {
            let cut = tokio::select! {
                r = truncate(follow, stream, correlation) => r,
                _ = cancel.cancelled() => return,
            };
            cut.map(|end| {
                truncated = true;
                tracing::info!(topic = %part.topic, partition = part.index, leader = target.leader, epoch = target.leader_epoch, log_end = end, "following the leader");
            })
        };
        match round {
            Ok(()) => {}
            Err(FetchError::Kafka(e)) => {
                tracing::debug!(topic = %part.topic, partition = part.index, leader = target.leader, error = ?e, "leader refused the fetch; retrying");
                backoff(&cancel).await;
            }
            Err(e) => {
                tracing::debug!(topic = %part.topic, partition = part.index, leader = target.leader, error = %e, "replica fetch failed; reconnecting");
                conn = None;
                backoff(&cancel).await;
            }
        }
    }
}

async fn backoff(cancel: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(BACKOFF) => {}
        _ = cancel.cancelled() => {}
    }
}

/// What one fetcher task works with: the broker, the partition, whom it follows, and the
/// token that stops it.
#[derive(Clone, Copy)]
struct Follow<'a> {
    broker: &'a Arc<Broker>,
    part: &'a Arc<Partition>,
    target: &'a Target,
    cancel: &'a CancellationToken,
}

/// Cuts the log back to where it parts from the leader's; returns the new log end.
async fn truncate(f: Follow<'_>, stream: &mut TcpStream, correlation: i32) -> Result<i64, FetchError> {
    let Follow { broker, part, target, cancel } = f;
    let p = part.clone();
    let latest = tokio::task::spawn_blocking(move || p.latest_epoch()).await.map_err(std::io::Error::other)?;
    let to = match latest {
        None => part.high_watermark(),
        Some(epoch) => {
            let req = OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(broker.config.node_id)).with_topics(vec![
                OffsetForLeaderTopic::default().with_topic(TopicName(StrBytes::from_string(part.topic.clone()))).with_partitions(vec![
                    OffsetForLeaderPartition::default()
                        .with_partition(part.index)
                        .with_current_leader_epoch(target.leader_epoch)
                        .with_leader_epoch(epoch),
                ]),
            ]);
            let resp: OffsetForLeaderEpochResponse =
                peer::call(stream, ApiKey::OffsetForLeaderEpoch, EPOCH_VERSION, correlation, CLIENT_ID, &req, Duration::from_secs(10)).await?;
            let r = resp
                .topics
                .into_iter()
                .flat_map(|t| t.partitions)
                .find(|p| p.partition == part.index)
                .ok_or_else(|| FetchError::Protocol("the response lacks the partition".into()))?;
            if r.error_code != 0 {
                return Err(FetchError::Kafka(KafkaError::try_from_code(r.error_code).unwrap_or(KafkaError::UnknownServerError)));
            }
            crate::replica::truncation_offset(epoch, (r.leader_epoch, r.end_offset), part.high_watermark(), |e| part.epoch_end(e).1)
        }
    };
    cut(part, to, cancel).await
}

/// Cuts the log back to `to` on a blocking thread, unless the fetch is cancelled first
/// (that thread goes on when it is: see [`append`]). Returns the new log end.
async fn cut(part: &Arc<Partition>, to: i64, cancel: &CancellationToken) -> Result<i64, FetchError> {
    let (p, cancel) = (part.clone(), cancel.clone());
    tokio::task::spawn_blocking(move || p.truncate_as_follower(to, || cancel.is_cancelled()))
        .await
        .map_err(std::io::Error::other)??
        .ok_or_else(|| FetchError::Protocol("the fetch was cancelled (a new leader epoch)".into()))
}

/// One fetch round trip and its append.
async fn fetch_once(f: Follow<'_>, stream: &mut TcpStream, correlation: i32) -> Result<(), FetchError> {
    let Follow { broker, part, target, cancel } = f;
    let fetch_offset = part.log().log_end_offset();
    let cfg = &broker.config;
    let wait_ms = cfg.replica_fetch_wait_max_ms();
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(cfg.node_id))
        .with_max_wait_ms(wait_ms as i32)
        .with_min_bytes(1)
        .with_max_bytes(MAX_RESPONSE as i32)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default().with_topic(TopicName(StrBytes::from_string(part.topic.clone()))).with_partitions(vec![
            FetchPartition::default()
                .with_partition(part.index)
                .with_current_leader_epoch(target.leader_epoch)
                .with_fetch_offset(fetch_offset)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(cfg.replica_fetch_max_bytes() as i32),
        ])]);
    let resp: FetchResponse =
        peer::call(stream, ApiKey::Fetch, FETCH_VERSION, correlation, CLIENT_ID, &req, Duration::from_millis(wait_ms) + Duration::from_secs(10)).await?;
    let data = resp
        .responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == part.index)
        .ok_or_else(|| FetchError::Protocol("the response lacks the partition".into()))?;
    if data.error_code != 0 {
        let e = KafkaError::try_from_code(data.error_code).unwrap_or(KafkaError::UnknownServerError);
        if e == KafkaError::OffsetOutOfRange {
            // Our log end is outside the leader's log: below its start (start again
            // there) or above its end (cut back to its high watermark).
            let to = crate::replica::out_of_range_offset(fetch_offset, data.log_start_offset, data.high_watermark);
            cut(part, to, cancel).await?;
            tracing::warn!(topic = %part.topic, partition = part.index, fetch_offset, truncated_to = to, "fetch offset out of the leader's range");
            return Ok(());
        }
        return Err(FetchError::Kafka(e));
    }
    let records = data.records.unwrap_or_default();
    if !records.is_empty() {
        let mut buf = records.to_vec();
        let p = part.clone();
        let cancel = cancel.clone();
        tokio::task::spawn_blocking(move || append(&p, fetch_offset, &mut buf, &cancel)).await.map_err(std::io::Error::other)??;
    }
    part.follow_hw(data.high_watermark);
    Ok(())
}

/// Appends the leader's batches at its offsets: they start at or after our log end and
/// follow each other in order, with the gaps a compacted leader's log has kept as gaps.
/// Runs on a blocking thread, which goes on when the fetch is cancelled: the append is
/// refused once it is (a new leader epoch), checked under the partition's locks, so it can
/// never land after the next fetcher has cut the log (found by the cluster simulation).
fn append(part: &Partition, fetch_offset: i64, buf: &mut [u8], cancel: &CancellationToken) -> Result<(), FetchError> {
    let mut next = fetch_offset;
    let mut whole = 0;
    let mut epochs = Vec::new();
    for item in batch::batches(buf) {
        let Ok((header, range)) = item else { break };
        if batch::check_integrity(&buf[range.clone()]).is_err() {
            return Err(FetchError::Protocol(format!("corrupt batch at offset {}", header.base_offset)));
        }
        if header.base_offset < next {
            return Err(FetchError::Protocol(format!("batch at offset {} where {next} or later was expected", header.base_offset)));
        }
        next = header.last_offset() + 1;
        whole = range.end;
        epochs.push((header.partition_leader_epoch, header.base_offset));
    }
    if whole == 0 {
        return Ok(());
    }
    match part.append_as_follower(fetch_offset, &mut buf[..whole], &epochs, || cancel.is_cancelled())? {
        FollowerAppend::Appended { flush_due } => {
            if flush_due {
                // `flush.messages` on a follower: fsynced without the partition's lock.
                part.flush()?;
            }
            Ok(())
        }
        FollowerAppend::Cancelled => Err(FetchError::Protocol("the fetch was cancelled (a new leader epoch)".into())),
        FollowerAppend::Moved => Err(FetchError::Protocol("the log moved during the fetch".into())),
    }
}
