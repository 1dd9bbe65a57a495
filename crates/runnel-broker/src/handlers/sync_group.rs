//! SyncGroup (key 14) v0–v5: the leader hands in the assignment of every member; each
//! member's answer waits for it (while the group is CompletingRebalance), or gets its
//! current assignment at once (Stable).

use bytes::Bytes;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use runnel_metadata::acl::AclOperation;

use super::{blocking, sb, Ctx};
use crate::errors::{code, KafkaError};
use crate::group::{Outcome, SyncResult};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

/// v5+: protocol type and name in request and response.
const PROTOCOL_VERSION: i16 = 5;

pub async fn handle(ctx: &Ctx, req: SyncGroupRequest) -> SyncGroupResponse {
    let group = req.group_id.0.to_string();
    if !ctx.may_group(AclOperation::Read, &group) {
        return SyncGroupResponse::default().with_error_code(code(KafkaError::GroupAuthorizationFailed));
    }
    let req_group = group.clone();
    let member_id = req.member_id.to_string();
    let instance_id = req.group_instance_id.map(|s| s.to_string());
    let v5 = ctx.version >= PROTOCOL_VERSION;
    let protocol_type = if v5 { req.protocol_type.map(|s| s.to_string()) } else { None };
    let protocol_name = if v5 { req.protocol_name.map(|s| s.to_string()) } else { None };
    // Copied out of the request frame, which the group would otherwise keep whole.
    let assignments: Vec<_> = req.assignments.into_iter().map(|a| (a.member_id.to_string(), Bytes::copy_from_slice(&a.assignment))).collect();
    let generation = req.generation_id;
    let coordinator = ctx.broker.groups().clone();
    let outcome = blocking(move || {
        coordinator.sync(&group, &member_id, instance_id.as_deref(), generation, protocol_type.as_deref(), protocol_name.as_deref(), assignments)
    })
    .await;
    let mut r = match outcome {
        Outcome::Now(r) => r,
        Outcome::Wait(rx) => tokio::select! {
            r = rx => r.unwrap_or_else(|_| SyncResult::error(KafkaError::RebalanceInProgress)),
            _ = ctx.shutdown.cancelled() => SyncResult::error(KafkaError::NotCoordinator),
        },
    };
    if r.error.is_none() {
        // The assignment is answered once the group's record is on the in-sync replicas.
        let (coordinator, group) = (ctx.broker.groups().clone(), req_group);
        if let Some(e) = blocking(move || coordinator.sync_durable(&group)).await {
            r = SyncResult::error(e);
        }
    }
    if let Some(e) = r.error {
        tracing::debug!(client_id = %ctx.client_id, error = ?e, "SyncGroup refused");
    }
    let mut resp = SyncGroupResponse::default().with_error_code(r.error.map_or(0, code)).with_assignment(r.assignment);
    if v5 {
        resp = resp.with_protocol_type(r.protocol_type.map(sb)).with_protocol_name(r.protocol_name.map(sb));
    }
    resp
}
