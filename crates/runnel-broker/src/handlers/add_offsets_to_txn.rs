//! AddOffsetsToTxn (key 25) v0–v4: adds the group's `__consumer_offsets` partition to the
//! producer's ongoing transaction, so that its TxnOffsetCommit offsets are committed or
//! aborted with the transaction's marker (the partition that holds the group).
//! Errors as AddPartitionsToTxn's.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use runnel_metadata::acl::AclOperation;

use super::{blocking, Ctx};
use crate::errors::{code, KafkaError};
use crate::group::OFFSETS_TOPIC;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 4;

pub async fn handle(ctx: &Ctx, req: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    // WRITE on the transactional id, READ on the group, as Kafka.
    if !ctx.may_txn(AclOperation::Write, &req.transactional_id.0) {
        return AddOffsetsToTxnResponse::default().with_error_code(code(KafkaError::TransactionalIdAuthorizationFailed));
    }
    if !ctx.may_group(AclOperation::Read, &req.group_id.0) {
        return AddOffsetsToTxnResponse::default().with_error_code(code(KafkaError::GroupAuthorizationFailed));
    }
    let b = ctx.broker.clone();
    let producer = (req.producer_id.0, req.producer_epoch);
    let parts = [(OFFSETS_TOPIC.to_string(), ctx.broker.groups().partition_for(&req.group_id.0))];
    let verdict = blocking(move || b.txns().add_partitions(&req.transactional_id.0, producer, &parts, false)).await;
    if let Err(e) = verdict {
        tracing::debug!(client_id = %ctx.client_id, error = ?e, "AddOffsetsToTxn refused");
    }
    AddOffsetsToTxnResponse::default().with_error_code(verdict.err().map_or(0, code))
}
