//! EndTxn (key 26) v0–v4: commits or aborts the producer's ongoing transaction. The
//! coordinator writes PrepareCommit/PrepareAbort, the markers to every partition of the
//! transaction, then CompleteCommit/CompleteAbort, all before answering. A retry of an
//! end that completed succeeds; PRODUCER_FENCED for an old epoch, INVALID_TXN_STATE for
//! an end that does not match the state. v5 (KIP-890's transactions v2, an epoch bump per
//! transaction) is not served.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use runnel_metadata::acl::AclOperation;

use super::{blocking, Ctx};
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 4;

pub async fn handle(ctx: &Ctx, req: EndTxnRequest) -> EndTxnResponse {
    if !ctx.may_txn(AclOperation::Write, &req.transactional_id.0) {
        return EndTxnResponse::default().with_error_code(code(KafkaError::TransactionalIdAuthorizationFailed));
    }
    let b = ctx.broker.clone();
    let producer = (req.producer_id.0, req.producer_epoch);
    let verdict = blocking(move || b.txns().end_txn(&b, &req.transactional_id.0, producer, req.committed)).await;
    if let Err(e) = verdict {
        tracing::debug!(client_id = %ctx.client_id, error = ?e, "EndTxn refused");
    }
    EndTxnResponse::default().with_error_code(verdict.err().map_or(0, code))
}
