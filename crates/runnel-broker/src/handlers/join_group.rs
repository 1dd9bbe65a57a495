//! JoinGroup (key 11) v0–v9: joins (or rejoins) a classic group. The answer waits until
//! the rebalance completes (every member rejoined, or the rebalance timeout), as Kafka's
//! does; new dynamic members of v4+ first get MEMBER_ID_REQUIRED with their id. The state
//! machine is in `crate::group`.

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use runnel_metadata::acl::AclOperation;

use super::{blocking, sb, Ctx};
use crate::errors::{code, KafkaError};
use crate::group::{JoinRequest, JoinResult, Outcome};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 9;

/// v4+: a member must join with a coordinator-assigned id.
const KNOWN_MEMBER_ID_VERSION: i16 = 4;
/// v7+: protocol type and a nullable protocol name in the response.
const NULLABLE_PROTOCOL_VERSION: i16 = 7;

pub async fn handle(ctx: &Ctx, req: JoinGroupRequest) -> JoinGroupResponse {
    let group = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    if !ctx.may_group(AclOperation::Read, &group) {
        return response(ctx.version, JoinResult::error(&member_id, KafkaError::GroupAuthorizationFailed));
    }
    let r = JoinRequest {
        member_id: member_id.clone(),
        instance_id: req.group_instance_id.map(|s| s.to_string()),
        client_id: ctx.client_id.clone(),
        client_host: client_host(ctx),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if ctx.version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms },
        protocol_type: req.protocol_type.to_string(),
        // Copied: the decoded bytes are a slice of the whole request frame, which the
        // member would otherwise keep for as long as it is in the group.
        protocols: req.protocols.into_iter().map(|p| (p.name.to_string(), Bytes::copy_from_slice(&p.metadata))).collect(),
        require_known_member_id: ctx.version >= KNOWN_MEMBER_ID_VERSION,
    };
    let coordinator = ctx.broker.groups().clone();
    let outcome = blocking(move || coordinator.join(&group, r)).await;
    let result = match outcome {
        Outcome::Now(r) => r,
        Outcome::Wait(rx) => tokio::select! {
            r = rx => r.unwrap_or_else(|_| JoinResult::error(&member_id, KafkaError::UnknownMemberId)),
            _ = ctx.shutdown.cancelled() => JoinResult::error(&member_id, KafkaError::NotCoordinator),
        },
    };
    if let Some(e) = result.error {
        tracing::debug!(client_id = %ctx.client_id, member = %result.member_id, error = ?e, "JoinGroup refused");
    }
    response(ctx.version, result)
}

/// Kafka's form of the client address: `/ip`.
pub fn client_host(ctx: &Ctx) -> String {
    format!("/{}", ctx.peer.ip())
}

fn response(version: i16, r: JoinResult) -> JoinGroupResponse {
    let nullable = version >= NULLABLE_PROTOCOL_VERSION;
    let protocol_name = match r.protocol_name {
        Some(p) => Some(sb(p)),
        None if nullable => None,
        None => Some(sb("")),
    };
    JoinGroupResponse::default()
        .with_error_code(r.error.map_or(0, code))
        .with_generation_id(r.generation)
        .with_protocol_type(if nullable { r.protocol_type.map(sb) } else { None })
        .with_protocol_name(protocol_name)
        .with_leader(sb(r.leader))
        .with_member_id(sb(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(sb(m.member_id))
                        .with_group_instance_id(if version >= 5 { m.instance_id.map(sb) } else { None })
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}
