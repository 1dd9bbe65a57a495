//! Produce (key 0) v3–v11: validate every batch of a partition (magic, lengths, CRC-32C,
//! record count, `max.message.bytes`), stamp LogAppendTime if the topic asks for it,
//! append the bytes as sent (only `baseOffset` patched), wake the fetches waiting on the
//! partition, then answer. acks=0 gets no response; on one broker acks=1 and acks=-1 are
//! both answered once the batch is in the log (in the page cache).
//!
//! A partition's data is all or nothing: if any batch fails validation none is stored.
//! On a compacted topic (`cleanup.policy` has `compact`) a record without a key is
//! INVALID_RECORD. A failed write (a full disk, any I/O error) is KAFKA_STORAGE_ERROR; the
//! log keeps nothing of it and takes later appends.

use bytes::BytesMut;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use runnel_protocol::batch::{self, BatchError};
use runnel_storage::StorageError;

use super::{blocking, sb, Ctx};
use crate::now_ms;
use crate::partition::Partition;
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
    TooLarge { size: usize, max: usize },
    Empty,
    Storage(StorageError),
}

/// The one place produce failures become Kafka error codes.
fn error_code(e: &ProduceError) -> KafkaError {
    match e {
        ProduceError::UnknownPartition => KafkaError::UnknownTopicOrPartition,
        ProduceError::InternalTopic => KafkaError::InvalidTopicException,
        ProduceError::Batch(b) if b.is_corrupt() => KafkaError::CorruptMessage,
        ProduceError::Batch(_) | ProduceError::Empty => KafkaError::InvalidRecord,
        ProduceError::TooLarge { .. } => KafkaError::MessageTooLarge,
        ProduceError::Storage(_) => KafkaError::KafkaStorageError,
    }
}

fn message(e: &ProduceError) -> String {
    match e {
        ProduceError::UnknownPartition => "this topic-partition does not exist".into(),
        ProduceError::InternalTopic => "cannot append to an internal topic".into(),
        ProduceError::Batch(b) => b.to_string(),
        ProduceError::TooLarge { size, max } => format!("record batch of {size} bytes exceeds max.message.bytes ({max})"),
        ProduceError::Empty => "no record batches in the request".into(),
        ProduceError::Storage(s) => format!("could not write to the log: {s}"),
    }
}

struct Appended {
    base_offset: i64,
    log_append_time: i64,
    log_start_offset: i64,
}

pub async fn handle(ctx: &Ctx, req: ProduceRequest) -> Option<ProduceResponse> {
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name = topic.name.0.to_string();
        let mut partition_responses = Vec::with_capacity(topic.partition_data.len());
        for pd in topic.partition_data {
            let index = pd.index;
            let outcome = match ctx.broker.partition(&name, index) {
                None => Err(ProduceError::UnknownPartition),
                Some(_) if crate::group::is_internal_topic(&name) => Err(ProduceError::InternalTopic),
                Some(part) => {
                    let records = pd.records.unwrap_or_default();
                    // A small append without fsync is a copy into the page cache: done
                    // here, it saves two thread hand-offs per request (the latency tail at
                    // high request rates). Large appends and appends that may fsync go to
                    // the blocking pool so they never stall this runtime worker.
                    let settings = part.settings();
                    if records.len() < INLINE_APPEND_MAX && settings.log.flush_messages == u64::MAX {
                        append(&part, &settings, &records)
                    } else {
                        blocking(move || append(&part, &settings, &records)).await
                    }
                }
            };
            let mut r = PartitionProduceResponse::default().with_index(index);
            match outcome {
                Ok(a) => {
                    r = r.with_base_offset(a.base_offset).with_log_append_time_ms(a.log_append_time).with_log_start_offset(a.log_start_offset);
                }
                Err(e) => {
                    let kafka = error_code(&e);
                    if matches!(e, ProduceError::Storage(_)) {
                        tracing::error!(topic = %name, partition = index, error = %message(&e), "append failed");
                    } else {
                        tracing::debug!(topic = %name, partition = index, client_id = %ctx.client_id, error = %message(&e), "produce refused");
                    }
                    r = r.with_error_code(code(kafka)).with_error_message(Some(sb(message(&e)))).with_base_offset(-1).with_log_append_time_ms(-1).with_log_start_offset(-1);
                }
            }
            partition_responses.push(r);
        }
        responses.push(TopicProduceResponse::default().with_name(topic.name).with_partition_responses(partition_responses));
    }
    if req.acks == 0 {
        return None;
    }
    Some(ProduceResponse::default().with_responses(responses))
}

/// Validates all batches, then appends them in one write (on the request's task or a
/// blocking thread, see `handle`).
fn append(part: &Partition, settings: &TopicSettings, records: &[u8]) -> Result<Appended, ProduceError> {
    if records.is_empty() {
        return Err(ProduceError::Empty);
    }
    let mut buf = BytesMut::from(records);
    let now = now_ms();
    for item in batch::batches(records) {
        let (_, range) = item.map_err(ProduceError::Batch)?;
        let size = range.len();
        if size > settings.max_message_bytes {
            return Err(ProduceError::TooLarge { size, max: settings.max_message_bytes });
        }
        batch::validate_batch(&records[range.clone()]).map_err(ProduceError::Batch)?;
        if settings.compact && !batch::all_keys_present(&records[range.clone()]).map_err(ProduceError::Batch)? {
            return Err(ProduceError::Batch(BatchError::InvalidRecord("a compacted topic needs a key on every record".into())));
        }
        if settings.log_append_time {
            batch::set_log_append_time(&mut buf[range], now);
        }
    }
    let info = {
        let mut log = part.log();
        let info = log.append(&mut buf).map_err(ProduceError::Storage)?;
        (info, log.log_start_offset())
    };
    part.wake_waiters();
    Ok(Appended {
        base_offset: info.0.base_offset,
        log_append_time: if settings.log_append_time { now } else { -1 },
        log_start_offset: info.1,
    })
}
