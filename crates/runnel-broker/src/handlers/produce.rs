//! Produce (key 0) v3–v11: validate every batch of a partition (magic, lengths, CRC-32C,
//! record count, `max.message.bytes`), stamp LogAppendTime if the topic asks for it,
//! append the bytes as sent (only `baseOffset` patched), wake the fetches waiting on the
//! partition, then answer. acks=0 gets no response; on one broker acks=1 and acks=-1 are
//! both answered once the batch is in the log (in the page cache).
//!
//! A partition's data is all or nothing: if any batch fails validation none is stored.
//! On a compacted topic (`cleanup.policy` has `compact`) a record without a key is
//! INVALID_RECORD, and from v8 the response names each such record in `record_errors`
//! (KIP-467: its index in the batch and why). A topic's `compression.type` other than
//! `producer` makes the broker recompress batches that use another codec. acks other than
//! -1, 0 and 1 is INVALID_REQUIRED_ACKS for every partition. A failed write (a full disk, any I/O error) is KAFKA_STORAGE_ERROR; the
//! log keeps nothing of it and takes later appends.
//!
//! Cluster mode: only the partition's leader takes a produce (else NOT_LEADER_OR_FOLLOWER,
//! with the current leader from v10); it stamps its leader epoch on each batch. acks=all
//! needs an ISR of at least `min.insync.replicas` before appending (NOT_ENOUGH_REPLICAS)
//! and is answered once the high watermark passes the batch (every ISR member has it), or
//! REQUEST_TIMED_OUT after the request's `timeout_ms`; NOT_ENOUGH_REPLICAS_AFTER_APPEND if
//! the ISR shrank below the minimum meanwhile.
//!
//! Idempotent producers (batches with a producer id) are checked by the partition's
//! producer state as the batch is appended: a retried batch is answered with its original
//! offset and not written again; a sequence gap is OUT_OF_ORDER_SEQUENCE_NUMBER, an old
//! epoch INVALID_PRODUCER_EPOCH. Control batches from clients are INVALID_RECORD.
//! Transactional batches are appended only while their producer's transaction is ongoing
//! with this partition in it (the transaction coordinator verifies it, as KIP-890 has the
//! leader do; else INVALID_TXN_STATE, or INVALID_PRODUCER_EPOCH for a fenced epoch), and
//! never on the request's task (the check may wait for a transaction being completed).

use bytes::BytesMut;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, ResponseKind};
use runnel_metadata::acl::AclOperation;
use runnel_protocol::batch::{self, BatchError};
use runnel_storage::{ProducerError, StorageError};

use super::{blocking, sb, Ctx, Reply};
use crate::now_ms;
use crate::partition::{NotServing, Partition, WaitError};
use crate::state::Broker;
use crate::topic_config::TopicSettings;
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 3;
pub const MAX_VERSION: i16 = 11;

/// Appends smaller than this (and without `flush.messages`) run on the request's task.
const INLINE_APPEND_MAX: usize = 256 * 1024;

/// Why a partition's produce failed.
#[derive(Debug)]
enum ProduceError {
    UnknownPartition,
    InternalTopic,
    Batch(BatchError),
    /// Records of the partition's data that are invalid: (index, why), KIP-467.
    Records(Vec<(i32, String)>),
    InvalidAcks(i16),
    TooLarge { size: usize, max: usize },
    Empty,
    Storage(StorageError),
    /// A control batch (transaction marker) sent by a client.
    Control,
    /// A transactional batch the transaction coordinator refused.
    Txn(KafkaError),
    /// Transactional and other batches, or several producers, in one partition's data.
    MixedTxn,
    /// Not the leader, or too few in-sync replicas (cluster mode).
    NotServing(NotServing),
    /// acks=all: appended, but the ISR shrank below `min.insync.replicas` before it had it.
    NotEnoughReplicasAfterAppend,
    /// acks=all: leadership was lost, or the timeout passed, before the ISR had it.
    Replication(WaitError),
    /// A CreateTime batch timestamp outside `message.timestamp.{before,after}.max.ms`.
    Timestamp(String),
    /// The principal may not write (the topic or the transactional id).
    Unauthorized(KafkaError),
}

/// The one place produce failures become Kafka error codes.
fn error_code(e: &ProduceError) -> KafkaError {
    match e {
        ProduceError::UnknownPartition => KafkaError::UnknownTopicOrPartition,
        ProduceError::InternalTopic => KafkaError::InvalidTopicException,
        ProduceError::Batch(b) if b.is_corrupt() => KafkaError::CorruptMessage,
        ProduceError::Batch(_) | ProduceError::Empty | ProduceError::Records(_) => KafkaError::InvalidRecord,
        ProduceError::InvalidAcks(_) => KafkaError::InvalidRequiredAcks,
        ProduceError::TooLarge { .. } => KafkaError::MessageTooLarge,
        ProduceError::Control => KafkaError::InvalidRecord,
        ProduceError::Txn(e) => *e,
        ProduceError::MixedTxn => KafkaError::InvalidRecord,
        ProduceError::NotServing(NotServing::NotEnoughReplicas) => KafkaError::NotEnoughReplicas,
        ProduceError::NotServing(NotServing::FencedEpoch) => KafkaError::FencedLeaderEpoch,
        ProduceError::NotServing(NotServing::UnknownEpoch) => KafkaError::UnknownLeaderEpoch,
        ProduceError::NotServing(NotServing::NotLeader { .. }) | ProduceError::Replication(WaitError::NotLeader) => {
            KafkaError::NotLeaderOrFollower
        }
        ProduceError::NotEnoughReplicasAfterAppend => KafkaError::NotEnoughReplicasAfterAppend,
        ProduceError::Replication(WaitError::TimedOut) => KafkaError::RequestTimedOut,
        ProduceError::Timestamp(_) => KafkaError::InvalidTimestamp,
        ProduceError::Unauthorized(e) => *e,
        ProduceError::Storage(StorageError::Producer(p)) => match p {
            ProducerError::InvalidEpoch { .. } => KafkaError::InvalidProducerEpoch,
            ProducerError::OutOfOrder { .. } => KafkaError::OutOfOrderSequenceNumber,
            ProducerError::Duplicate { .. } => KafkaError::DuplicateSequenceNumber,
            ProducerError::InvalidTxnState { .. } => KafkaError::InvalidTxnState,
        },
        ProduceError::Storage(_) => KafkaError::KafkaStorageError,
    }
}

fn message(e: &ProduceError) -> String {
    match e {
        ProduceError::UnknownPartition => "this topic-partition does not exist".into(),
        ProduceError::InternalTopic => "cannot append to an internal topic".into(),
        ProduceError::Batch(b) => b.to_string(),
        ProduceError::Records(r) => format!("{} record(s) rejected: {}", r.len(), r.first().map_or("", |(_, m)| m.as_str())),
        ProduceError::InvalidAcks(a) => format!("acks must be -1, 0 or 1, got {a}"),
        ProduceError::TooLarge { size, max } => format!("record batch of {size} bytes exceeds max.message.bytes ({max})"),
        ProduceError::Empty => "no record batches in the request".into(),
        ProduceError::Control => "clients may not write control batches".into(),
        ProduceError::Txn(e) => format!("transactional batch refused: {e:?}"),
        ProduceError::MixedTxn => "a transactional batch with other batches in one partition's data".into(),
        ProduceError::NotServing(NotServing::NotLeader { leader, .. }) => format!("this broker is not the partition's leader (the leader is {leader})"),
        ProduceError::NotServing(NotServing::NotEnoughReplicas) => "fewer in-sync replicas than min.insync.replicas".into(),
        ProduceError::NotServing(_) => "stale leader epoch".into(),
        ProduceError::NotEnoughReplicasAfterAppend => "appended, but the ISR shrank below min.insync.replicas".into(),
        ProduceError::Replication(WaitError::NotLeader) => "leadership moved before the in-sync replicas had the batch".into(),
        ProduceError::Replication(WaitError::TimedOut) => "the in-sync replicas did not confirm the batch within timeout_ms".into(),
        ProduceError::Timestamp(m) => m.clone(),
        ProduceError::Unauthorized(KafkaError::TransactionalIdAuthorizationFailed) => "not authorized to write with this transactional id".into(),
        ProduceError::Unauthorized(_) => "not authorized to write to this topic".into(),
        ProduceError::Storage(StorageError::Producer(p)) => p.to_string(),
        ProduceError::Storage(s) => format!("could not write to the log: {s}"),
    }
}

struct Appended {
    base_offset: i64,
    last_offset: i64,
    log_append_time: i64,
    log_start_offset: i64,
    /// `flush.messages` reached: the answer waits for a flush ([`Partition::flush_if_due`]).
    flush_due: bool,
}

/// Where a partition's answer goes in the response.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Slot {
    topic: usize,
    partition: usize,
}

/// An acks=all append waiting for the in-sync replicas: where its answer goes in the
/// response, and the offset the high watermark must pass.
struct Replicating {
    slot: Slot,
    part: std::sync::Arc<Partition>,
    last_offset: i64,
}

/// An append that reached `flush.messages`: its flush, started at once on its own task (it
/// runs even if the answer is never sent: acks=0, a closed connection).
struct Flushing {
    slot: Slot,
    flush: tokio::task::JoinHandle<Result<(), StorageError>>,
}

/// Appends every partition's data in request order, here and now. Unless an append reached
/// `flush.messages` or acks=all in a cluster left appends waiting for the ISR, the
/// response is ready at once; else it is [`Reply::Later`]: every partition was appended
/// first, then the waits run together (the ISR's up to the request's `timeout_ms` from
/// now), so the connection can serve its next requests meanwhile.
pub async fn handle(ctx: &Ctx, req: ProduceRequest) -> Reply {
    let mut responses = Vec::with_capacity(req.topic_data.len());
    // Authorization as Kafka: WRITE on the transactional id (else every partition is
    // TRANSACTIONAL_ID_AUTHORIZATION_FAILED), then WRITE on each topic.
    let txn_denied = req.transactional_id.as_ref().is_some_and(|id| !ctx.may_txn(AclOperation::Write, id));
    // Leaders named in NOT_LEADER_OR_FOLLOWER answers: their endpoints go along (v10+).
    let mut leaders: Vec<i32> = Vec::new();
    let mut replicating: Vec<Replicating> = Vec::new();
    let mut flushing: Vec<Flushing> = Vec::new();
    for topic in req.topic_data {
        let name = topic.name.0.to_string();
        let topic_denied = !txn_denied && !ctx.may_topic(AclOperation::Write, &name);
        let mut partition_responses = Vec::with_capacity(topic.partition_data.len());
        for pd in topic.partition_data {
            let index = pd.index;
            let outcome = match ctx.broker.partition(&name, index) {
                _ if txn_denied => Err(ProduceError::Unauthorized(KafkaError::TransactionalIdAuthorizationFailed)),
                _ if topic_denied => Err(ProduceError::Unauthorized(KafkaError::TopicAuthorizationFailed)),
                _ if !matches!(req.acks, -1..=1) => Err(ProduceError::InvalidAcks(req.acks)),
                None => Err(match ctx.broker.offline_reason(&name, index) {
                    Some(why) => ProduceError::Storage(StorageError::Offline(why)),
                    None => ProduceError::UnknownPartition,
                }),
                Some(_) if crate::group::is_internal_topic(&name) => Err(ProduceError::InternalTopic),
                Some(part) => match part.check_produce(req.acks) {
                    Err(e) => Err(ProduceError::NotServing(e)),
                    Ok(epoch) => {
                    let records = pd.records.unwrap_or_default();
                    // A small append is a copy into the page cache: done here, it saves two
                    // thread hand-offs per request (the latency tail at high request rates).
                    // Large appends and those that decompress go to the blocking pool so
                    // they never stall this runtime worker; a flush runs after, below.
                    let settings = part.settings();
                    let appended = if runs_inline(&settings, &records) {
                        append(&ctx.broker, &part, &settings, &records, epoch)
                    } else {
                        let (b, p) = (ctx.broker.clone(), part.clone());
                        blocking(move || append(&b, &p, &settings, &records, epoch)).await
                    };
                    if let Ok(a) = &appended {
                        let slot = Slot { topic: responses.len(), partition: partition_responses.len() };
                        if a.flush_due {
                            flushing.push(Flushing { slot, flush: tokio::spawn(part.clone().flush_if_due()) });
                        }
                        if req.acks == -1 && epoch.is_some() {
                            replicating.push(Replicating { slot, part, last_offset: a.last_offset });
                        }
                    }
                    appended
                    }
                },
            };
            let r = match outcome {
                Ok(a) => PartitionProduceResponse::default()
                    .with_index(index)
                    .with_base_offset(a.base_offset)
                    .with_log_append_time_ms(a.log_append_time)
                    .with_log_start_offset(a.log_start_offset),
                Err(e) => {
                    if matches!(e, ProduceError::Storage(ref s) if !matches!(s, StorageError::Producer(_))) {
                        tracing::error!(topic = %name, partition = index, error = %message(&e), "append failed");
                    } else {
                        tracing::debug!(topic = %name, partition = index, client_id = %ctx.client_id, error = %message(&e), "produce refused");
                    }
                    if let ProduceError::NotServing(NotServing::NotLeader { leader, .. }) = e {
                        leaders.push(leader);
                    }
                    // Kafka reports the log start offset with a record that failed
                    // validation or a producer-state error, -1 with the others.
                    let log_start = match &e {
                        ProduceError::Records(_) | ProduceError::Storage(StorageError::Producer(_)) => {
                            ctx.broker.partition(&name, index).map_or(-1, |p| p.log().log_start_offset())
                        }
                        _ => -1,
                    };
                    refused(index, &e, log_start)
                }
            };
            partition_responses.push(r);
        }
        responses.push(TopicProduceResponse::default().with_name(topic.name).with_partition_responses(partition_responses));
    }
    if req.acks == 0 {
        return Reply::Now(None);
    }
    // The broker list is built only when an answer names another leader.
    let node_endpoints = if leaders.is_empty() {
        Vec::new()
    } else {
        crate::cluster::listed_brokers(&ctx.broker, &ctx.session.listener)
            .into_iter()
            .filter(|b| leaders.contains(&b.id))
            .map(|b| NodeEndpoint::default().with_node_id(BrokerId(b.id)).with_host(sb(b.host)).with_port(b.port).with_rack(b.rack.map(sb)))
            .collect()
    };
    let mut response = ProduceResponse::default().with_responses(responses).with_node_endpoints(node_endpoints);
    if replicating.is_empty() && flushing.is_empty() {
        return Reply::Now(Some(ResponseKind::Produce(response)));
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(req.timeout_ms.max(0) as u64);
    let client_id = ctx.client_id.clone();
    Reply::Later(Box::pin(async move {
        // All appended already and the flushes started: the waits overlap, the ISR's each
        // bounded by the one deadline. A failed flush is the partition's answer.
        let mut failed = Vec::new();
        for f in flushing {
            let e = match f.flush.await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => ProduceError::Storage(e),
                Err(_) => ProduceError::Storage(StorageError::Offline("the flush task ended abnormally".into())),
            };
            let t = &mut response.responses[f.slot.topic];
            tracing::error!(topic = %t.name.0, error = %message(&e), "flush after append failed");
            let r = &mut t.partition_responses[f.slot.partition];
            *r = refused(r.index, &e, -1);
            failed.push(f.slot);
        }
        for w in replicating.into_iter().filter(|w| !failed.contains(&w.slot)) {
            let waited = w.part.wait_replicated(w.last_offset, deadline.saturating_duration_since(tokio::time::Instant::now())).await;
            let e = match waited {
                Ok(true) => continue,
                Ok(false) => ProduceError::NotEnoughReplicasAfterAppend,
                Err(e) => ProduceError::Replication(e),
            };
            let t = &mut response.responses[w.slot.topic];
            tracing::debug!(topic = %t.name.0, partition = w.part.index, %client_id, error = %message(&e), "produce refused");
            let r = &mut t.partition_responses[w.slot.partition];
            *r = refused(r.index, &e, -1);
        }
        ResponseKind::Produce(response)
    }))
}

/// A partition's answer to data it refused (or could not have replicated).
fn refused(index: i32, e: &ProduceError, log_start: i64) -> PartitionProduceResponse {
    let mut r = PartitionProduceResponse::default().with_index(index);
    if let ProduceError::Records(records) = e {
        r.record_errors = records
            .iter()
            .map(|(i, m)| BatchIndexAndErrorMessage::default().with_batch_index(*i).with_batch_index_error_message(Some(sb(m.clone()))))
            .collect();
    }
    if let ProduceError::NotServing(NotServing::NotLeader { leader, leader_epoch }) = e {
        r.current_leader = LeaderIdAndEpoch::default().with_leader_id(BrokerId(*leader)).with_leader_epoch(*leader_epoch);
    }
    r.with_error_code(code(error_code(e)))
        .with_error_message(Some(sb(message(e))))
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(log_start)
}

/// Whether an append may run on the request's task: small, no decompression (a
/// compacted topic's key check of a compressed batch, a recompression), and not
/// transactional. (An fsync for `flush.messages` never runs in the append: see
/// [`Partition::flush_if_due`].)
fn runs_inline(settings: &TopicSettings, records: &[u8]) -> bool {
    records.len() < INLINE_APPEND_MAX
        && settings.compression.is_none()
        && batch::batches(records).all(|b| {
            // A malformed batch is refused by the validation, cheaply, here.
            b.map_or(true, |(h, _)| !h.is_transactional() && (!settings.compact || h.compression().is_ok_and(|c| c == batch::Compression::None)))
        })
}

/// Validates all batches, then appends them in one write (on the request's task or a
/// blocking thread, see `handle`), stamped with the leader's `epoch` in cluster mode.
fn append(broker: &Broker, part: &Partition, settings: &TopicSettings, records: &[u8], epoch: Option<i32>) -> Result<Appended, ProduceError> {
    if records.is_empty() {
        return Err(ProduceError::Empty);
    }
    let mut buf = BytesMut::with_capacity(records.len());
    let now = now_ms();
    // Index of a record among all records of this partition's data (KIP-467 counts in
    // the batch; a v2 producer sends one batch per partition).
    let mut first_record = 0i32;
    // The (producer id, epoch) of transactional data: every batch must share it.
    let mut txn: Option<Option<(i64, i16)>> = None;
    for item in batch::batches(records) {
        let (_, range) = item.map_err(ProduceError::Batch)?;
        let size = range.len();
        if size > settings.max_message_bytes {
            return Err(ProduceError::TooLarge { size, max: settings.max_message_bytes });
        }
        let header = batch::validate_batch(&records[range.clone()]).map_err(ProduceError::Batch)?;
        if header.is_control() {
            return Err(ProduceError::Control);
        }
        let producer = header.is_transactional().then_some((header.producer_id, header.producer_epoch));
        if *txn.get_or_insert(producer) != producer {
            return Err(ProduceError::MixedTxn);
        }
        if !settings.log_append_time {
            check_timestamps(&header, settings, now)?;
        }
        if settings.compact {
            let keyless = batch::keyless_records(&records[range.clone()]).map_err(ProduceError::Batch)?;
            if !keyless.is_empty() {
                let why = format!("Compacted topic cannot accept message without key in topic partition {}-{}.", part.topic, part.index);
                return Err(ProduceError::Records(keyless.into_iter().map(|i| (first_record + i, why.clone())).collect()));
            }
        }
        first_record = first_record.saturating_add(header.records_count);
        let start = buf.len();
        match settings.compression.map(|codec| batch::recompress(&records[range.clone()], codec)).transpose().map_err(ProduceError::Batch)? {
            Some(Some(recompressed)) => buf.extend_from_slice(&recompressed),
            _ => buf.extend_from_slice(&records[range]),
        }
        if settings.log_append_time {
            batch::set_log_append_time(&mut buf[start..], now);
        }
        if let Some(epoch) = epoch {
            batch::set_partition_leader_epoch(&mut buf[start..], epoch);
        }
    }
    let mut write = || {
        part.append_as_leader(epoch, |log| {
            let info = log.append(&mut buf).map_err(ProduceError::Storage)?;
            Ok(((info, log.log_start_offset()), log.flush_due_by_count()))
        })
        .map_err(ProduceError::NotServing)?
    };
    let (info, flush_due) = match txn.flatten() {
        Some(producer) => broker.txns().with_verified_partition(producer, &part.topic, part.index, write).map_err(ProduceError::Txn)??,
        None => write()?,
    };
    if !info.0.duplicate {
        part.on_append();
    }
    Ok(Appended {
        base_offset: info.0.base_offset,
        last_offset: info.0.last_offset,
        log_append_time: match (settings.log_append_time, info.0.duplicate) {
            (false, _) => -1,
            (true, false) => now,
            (true, true) => info.0.max_timestamp,
        },
        log_start_offset: info.1,
        flush_due,
    })
}

/// Kafka's `message.timestamp.{before,after}.max.ms` at batch granularity: the first and
/// the max timestamp of a CreateTime batch (the ones the indexes and retention use) must
/// lie within the window around `now`. -1 (no timestamp) passes, as in Kafka.
fn check_timestamps(h: &batch::BatchHeader, settings: &TopicSettings, now: i64) -> Result<(), ProduceError> {
    for ts in [h.base_timestamp, h.max_timestamp] {
        if ts == -1 {
            continue;
        }
        let behind = now.saturating_sub(ts);
        let ahead = ts.saturating_sub(now);
        if behind > settings.timestamp_before_max_ms || ahead > settings.timestamp_after_max_ms {
            return Err(ProduceError::Timestamp(format!(
                "timestamp {ts} is out of range: at most {} ms behind and {} ms ahead of the broker's clock ({now})",
                settings.timestamp_before_max_ms, settings.timestamp_after_max_ms
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path compared `flush.messages` with the wrong "never" and never ran.
    #[test]
    fn small_appends_to_a_default_topic_run_inline() {
        let settings = TopicSettings::resolve(&Default::default(), &Default::default());
        assert!(runs_inline(&settings, &[0; 1000]));
        assert!(!runs_inline(&settings, &vec![0; INLINE_APPEND_MAX]));
        // A compacted topic's key check of an uncompressed batch is a walk of its records:
        // inline; a compressed batch is decompressed for it: not inline.
        let compact = [("cleanup.policy".to_string(), "compact".to_string())].into_iter().collect();
        let compact = TopicSettings::resolve(&compact, &Default::default());
        let record = batch::NewRecord { key: Some(b"k"), value: Some(b"v"), ..Default::default() };
        assert!(runs_inline(&compact, &batch::encode_batch(0, 0, &[record])));
        let lz4 = batch::compress(batch::Compression::Lz4, &batch::encode_batch(0, 0, &[record])[batch::BATCH_HEADER_LEN..]).unwrap();
        let mut compressed = batch::encode_batch(0, 0, &[record]);
        compressed.truncate(batch::BATCH_HEADER_LEN);
        compressed.extend_from_slice(&lz4);
        let attributes = batch::Compression::Lz4.code();
        compressed[21..23].copy_from_slice(&attributes.to_be_bytes());
        assert!(!runs_inline(&compact, &compressed));
        // flush.messages no longer keeps an append off the request's task: the flush runs after it.
        let flushed = [("flush.messages".to_string(), "1".to_string())].into_iter().collect();
        assert!(runs_inline(&TopicSettings::resolve(&flushed, &Default::default()), &batch::encode_batch(0, 0, &[record])));
    }
}
