//! InitProducerId (key 22) v0–v5. Without a `transactional_id` it hands an idempotent
//! producer a producer id never used before, with epoch 0 (as in Kafka, a request that
//! names its current id and epoch, KIP-360 v3+, also gets a fresh id); ids come from blocks
//! reserved through the metadata log ([`crate::state::Broker::next_producer_id`]).
//! With a transactional id the transaction coordinator answers: the id's producer id and
//! its next epoch, after aborting an ongoing transaction of an older producer (fenced);
//! `transaction_timeout_ms` above `transaction.max.timeout.ms` is
//! INVALID_TRANSACTION_TIMEOUT.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use runnel_metadata::acl::{AclOperation, ResourceType};

use super::{blocking, Ctx};
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

pub async fn handle(ctx: &Ctx, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    let broker = ctx.broker.clone();
    // As Kafka: WRITE on the transactional id; an idempotent producer needs
    // IDEMPOTENT_WRITE on the cluster or WRITE on some topic.
    let denied = match &req.transactional_id {
        Some(id) => (!ctx.may_txn(AclOperation::Write, &id.0)).then_some(KafkaError::TransactionalIdAuthorizationFailed),
        None => (!ctx.may_cluster(AclOperation::IdempotentWrite) && !ctx.may_any(AclOperation::Write, ResourceType::Topic))
            .then_some(KafkaError::ClusterAuthorizationFailed),
    };
    if let Some(e) = denied {
        return resp.with_error_code(code(e));
    }
    let answer = match req.transactional_id {
        Some(id) => {
            let expected = (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
            let timeout = req.transaction_timeout_ms;
            blocking(move || broker.txns().init_producer_id(&broker, &id.0, timeout, expected)).await
        }
        None => blocking(move || broker.next_producer_id()).await.map(|id| (id, 0)).map_err(|e| {
            tracing::error!(error = %e, "could not reserve producer ids");
            KafkaError::CoordinatorNotAvailable
        }),
    };
    match answer {
        Ok((id, epoch)) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(epoch),
        Err(e) => {
            tracing::debug!(client_id = %ctx.client_id, error = ?e, "InitProducerId refused");
            resp.with_error_code(code(e))
        }
    }
}
