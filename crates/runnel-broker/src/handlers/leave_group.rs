//! LeaveGroup (key 13) v0–v5: one member (v0–v2) or a batch of members by member id or
//! instance id (v3+) leave; the group rebalances. Before v3 the member's error is the
//! response's error, as Kafka answers.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use runnel_metadata::acl::AclOperation;

use super::{blocking, Ctx};
use crate::errors::code;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

/// Batched members from this version on.
const BATCH_VERSION: i16 = 3;

pub async fn handle(ctx: &Ctx, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let group = req.group_id.0.to_string();
    if !ctx.may_group(AclOperation::Read, &group) {
        return LeaveGroupResponse::default().with_error_code(code(crate::errors::KafkaError::GroupAuthorizationFailed));
    }
    let batched = ctx.version >= BATCH_VERSION;
    let members: Vec<(String, Option<String>)> = if batched {
        req.members.iter().map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string()))).collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let coordinator = ctx.broker.groups().clone();
    let m = members.clone();
    let outcome = blocking(move || coordinator.leave(&group, &m)).await;
    let resp = LeaveGroupResponse::default();
    match outcome {
        Err(e) => resp.with_error_code(code(e)),
        Ok(errors) if batched => resp.with_members(
            members
                .into_iter()
                .zip(errors)
                .map(|((id, instance), e)| {
                    MemberResponse::default()
                        .with_member_id(super::sb(id))
                        .with_group_instance_id(instance.map(super::sb))
                        .with_error_code(e.map_or(0, code))
                })
                .collect(),
        ),
        Ok(errors) => resp.with_error_code(errors.into_iter().flatten().next().map_or(0, code)),
    }
}
