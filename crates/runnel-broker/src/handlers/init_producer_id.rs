//! InitProducerId (key 22) v0–v5: hands an idempotent producer (no `transactional_id`) a
//! producer id never used before, with epoch 0. As in Kafka, a request that names its
//! current id and epoch (KIP-360, v3+) without a transactional id also gets a fresh id.
//! Ids come from blocks reserved through the metadata log ([`crate::state::Broker::next_producer_id`]).
//! Transactional ids are the transaction coordinator's business.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{blocking, Ctx};
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

pub async fn handle(ctx: &Ctx, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        return resp.with_error_code(code(KafkaError::CoordinatorNotAvailable));
    }
    let broker = ctx.broker.clone();
    match blocking(move || broker.next_producer_id()).await {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "could not reserve producer ids");
            resp.with_error_code(code(KafkaError::CoordinatorNotAvailable))
        }
    }
}
