//! FindCoordinator (key 10) v0–v6: a group is coordinated by the leader of its
//! `__consumer_offsets` partition, `hash(group) % partitions` as in Kafka (this broker on
//! a single node; COORDINATOR_NOT_AVAILABLE while that partition has no live leader; in a
//! cluster the first lookup creates the topic). A transactional id (key type 1) likewise by
//! the leader of its `__transaction_state` partition (the first lookup creates the topic,
//! as in Kafka; if that fails the answer is COORDINATOR_NOT_AVAILABLE). Batched keys (v4+) are
//! answered one by one. Share groups (key type 2) are refused with INVALID_REQUEST.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use runnel_metadata::acl::AclOperation;

use super::{blocking, sb, Ctx};
use crate::cluster::ListedBroker;
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 6;

/// Batched `coordinator_keys` from this version on.
const BATCHED_VERSION: i16 = 4;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Where a key's coordinator is, or the one place FindCoordinator refusals are decided.
async fn locate(ctx: &Ctx, key_type: i8, key: &str) -> Result<ListedBroker, (KafkaError, &'static str)> {
    let b = ctx.broker.clone();
    match key_type {
        KEY_TYPE_GROUP => {
            let key = key.to_string();
            let listener = ctx.session.listener.clone();
            blocking(move || {
                // Cluster mode: the first lookup creates `__consumer_offsets`, as in Kafka.
                if let Err(e) = b.ensure_offsets_topic() {
                    tracing::info!(error = %e, "cannot create {} yet", crate::group::OFFSETS_TOPIC);
                }
                crate::cluster::group_coordinator(&b, &key, &listener)
            })
            .await
            .map_err(|e| (e, "the group coordinator is not available"))
        }
        KEY_TYPE_TRANSACTION => {
            let key = key.to_string();
            let listener = ctx.session.listener.clone();
            blocking(move || {
                // The first lookup creates `__transaction_state`, as in Kafka.
                b.txns().ensure_ready(&b)?;
                crate::cluster::coordinator(&b, crate::txn::TXN_TOPIC, &key, &listener)
            })
            .await
            .map_err(|e| (e, "the transaction coordinator is not available"))
        }
        _ => Err((KafkaError::InvalidRequest, "unsupported coordinator key type")),
    }
}

/// DESCRIBE on the group or the transactional id, as Kafka checks.
fn unauthorized(ctx: &Ctx, key_type: i8, key: &str) -> Option<(KafkaError, &'static str)> {
    match key_type {
        KEY_TYPE_GROUP if !ctx.may_group(AclOperation::Describe, key) => {
            Some((KafkaError::GroupAuthorizationFailed, "not authorized to describe this group"))
        }
        KEY_TYPE_TRANSACTION if !ctx.may_txn(AclOperation::Describe, key) => {
            Some((KafkaError::TransactionalIdAuthorizationFailed, "not authorized to describe this transactional id"))
        }
        _ => None,
    }
}

pub async fn handle(ctx: &Ctx, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    if ctx.version >= BATCHED_VERSION {
        let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
        for key in req.coordinator_keys {
            let c = Coordinator::default().with_key(key.clone());
            let located = match unauthorized(ctx, req.key_type, &key) {
                Some(denied) => Err(denied),
                None => locate(ctx, req.key_type, &key).await,
            };
            coordinators.push(match located {
                Ok(l) => c.with_node_id(BrokerId(l.id)).with_host(sb(l.host)).with_port(l.port),
                Err((e, msg)) => c.with_node_id(BrokerId(-1)).with_port(-1).with_error_code(code(e)).with_error_message(Some(sb(msg))),
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let resp = FindCoordinatorResponse::default();
    let located = match unauthorized(ctx, req.key_type, &req.key) {
        Some(denied) => Err(denied),
        None => locate(ctx, req.key_type, &req.key).await,
    };
    match located {
        Ok(l) => resp.with_node_id(BrokerId(l.id)).with_host(sb(l.host)).with_port(l.port).with_error_message(None),
        Err((e, msg)) => resp
            .with_error_code(code(e))
            .with_node_id(BrokerId(-1))
            .with_port(-1)
            .with_error_message(if ctx.version >= 1 { Some(sb(msg)) } else { None }),
    }
}
