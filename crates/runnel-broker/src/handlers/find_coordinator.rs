//! FindCoordinator (key 10) v0–v6: every group is coordinated by the broker hosting
//! `__consumer_offsets` partition 0 (this broker on a single node; COORDINATOR_NOT_AVAILABLE
//! while that broker is fenced). A single node also coordinates every transactional id
//! (key type 1: the first lookup creates `__transaction_state`, as in Kafka; if that fails
//! the answer is COORDINATOR_NOT_AVAILABLE); a cluster answers COORDINATOR_NOT_AVAILABLE
//! for transactions until WriteTxnMarkers between brokers is built. Batched keys (v4+) are
//! answered one by one. Share groups (key type 2) are refused with INVALID_REQUEST.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{blocking, sb, Ctx};
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 6;

/// Batched `coordinator_keys` from this version on.
const BATCHED_VERSION: i16 = 4;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// The one place FindCoordinator refusals are decided.
async fn refusal(ctx: &Ctx, key_type: i8, coordinator_known: bool) -> Option<(KafkaError, &'static str)> {
    match key_type {
        KEY_TYPE_GROUP if coordinator_known => None,
        KEY_TYPE_GROUP => Some((KafkaError::CoordinatorNotAvailable, "the group coordinator's broker is not available")),
        KEY_TYPE_TRANSACTION => {
            let b = ctx.broker.clone();
            let ready = blocking(move || b.txns().ensure_ready(&b)).await;
            ready.err().map(|e| (e, "the transaction coordinator is not available"))
        }
        _ => Some((KafkaError::InvalidRequest, "unsupported coordinator key type")),
    }
}

pub async fn handle(ctx: &Ctx, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let b = &ctx.broker;
    let coordinator = crate::cluster::group_coordinator(b);
    let refused = refusal(ctx, req.key_type, coordinator.is_some()).await;
    let (node, host, port) = match coordinator {
        Some(c) => (BrokerId(c.id), sb(c.host), c.port),
        None => (BrokerId(-1), sb(""), -1),
    };
    if ctx.version >= BATCHED_VERSION {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key);
                match refused {
                    None => c.with_node_id(node).with_host(host.clone()).with_port(port),
                    Some((e, msg)) => c.with_node_id(BrokerId(-1)).with_port(-1).with_error_code(code(e)).with_error_message(Some(sb(msg))),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let resp = FindCoordinatorResponse::default();
    match refused {
        None => resp.with_node_id(node).with_host(host).with_port(port).with_error_message(None),
        Some((e, msg)) => resp
            .with_error_code(code(e))
            .with_node_id(BrokerId(-1))
            .with_port(-1)
            .with_error_message(if ctx.version >= 1 { Some(sb(msg)) } else { None }),
    }
}
