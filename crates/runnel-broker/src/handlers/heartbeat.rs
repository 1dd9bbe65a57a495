//! Heartbeat (key 12) v0–v4: keeps a member's session alive; REBALANCE_IN_PROGRESS tells
//! it to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use runnel_metadata::acl::AclOperation;

use super::{blocking, Ctx};
use crate::errors::code;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 4;

pub async fn handle(ctx: &Ctx, req: HeartbeatRequest) -> HeartbeatResponse {
    let group = req.group_id.0.to_string();
    if !ctx.may_group(AclOperation::Read, &group) {
        return HeartbeatResponse::default().with_error_code(code(crate::errors::KafkaError::GroupAuthorizationFailed));
    }
    let member_id = req.member_id.to_string();
    let instance_id = req.group_instance_id.map(|s| s.to_string());
    let generation = req.generation_id;
    let coordinator = ctx.broker.groups().clone();
    let error = blocking(move || coordinator.heartbeat(&group, &member_id, instance_id.as_deref(), generation)).await;
    HeartbeatResponse::default().with_error_code(error.map_or(0, code))
}
