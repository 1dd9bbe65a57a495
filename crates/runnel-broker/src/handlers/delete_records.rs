//! DeleteRecords (key 21) v0–v2: moves each partition's log start offset (the low
//! watermark) up to the requested offset; -1 means the high watermark. Records below it are
//! no longer readable (Fetch answers OFFSET_OUT_OF_RANGE, ListOffsets earliest returns the
//! new start), and segments wholly below it are deleted. The new start is checkpointed
//! before the answer, so it survives a restart.

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use runnel_storage::StorageError;

use runnel_metadata::acl::AclOperation;

use super::{blocking, Ctx};
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

/// "Delete everything below the high watermark."
const HIGH_WATERMARK: i64 = -1;

/// The one place DeleteRecords failures become Kafka error codes.
fn error_code(e: &StorageError) -> KafkaError {
    match e {
        StorageError::OffsetOutOfRange { .. } => KafkaError::OffsetOutOfRange,
        _ => KafkaError::KafkaStorageError,
    }
}

pub async fn handle(ctx: &Ctx, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let denied = !ctx.may_topic(AclOperation::Delete, &name);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let mut r = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index).with_low_watermark(-1);
            match ctx.broker.partition(&name, p.partition_index) {
                _ if denied => r.error_code = code(KafkaError::TopicAuthorizationFailed),
                None => r.error_code = code(KafkaError::UnknownTopicOrPartition),
                // Kafka: "Cannot delete records of internal topic" (the committed offsets
                // of every group live there).
                Some(_) if crate::group::is_internal_topic(&name) => r.error_code = code(KafkaError::InvalidTopicException),
                Some(part) => {
                    let offset = p.offset;
                    let outcome = blocking(move || {
                        // The log's lock only to check and to move the log start; the
                        // checkpoint's fsyncs and the deletes run without it.
                        let _maintenance = part.maintenance();
                        let planned = {
                            let log = part.log();
                            let target = if offset == HIGH_WATERMARK { log.log_end_offset() } else { offset };
                            log.plan_delete_records(target)
                        };
                        match planned {
                            Ok(Some(mv)) => mv.write().and_then(|()| {
                                let deletion = part.log().finish_delete_records(mv);
                                deletion.run()?;
                                Ok(part.log().log_start_offset())
                            }),
                            Ok(None) => Ok(part.log().log_start_offset()),
                            Err(e) => Err(e),
                        }
                    })
                    .await;
                    match outcome {
                        Ok(low) => r.low_watermark = low,
                        Err(e) => {
                            let kafka = error_code(&e);
                            if kafka == KafkaError::KafkaStorageError {
                                tracing::error!(topic = %name, partition = p.partition_index, error = %e, "delete records failed");
                            }
                            r.error_code = code(kafka);
                        }
                    }
                }
            }
            partitions.push(r);
        }
        topics.push(DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions));
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
