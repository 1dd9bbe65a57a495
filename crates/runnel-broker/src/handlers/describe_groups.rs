//! DescribeGroups (key 15) v0–v6: state, protocol and members of each group. An unknown
//! group is described as Dead with no error, as Kafka does; member metadata and
//! assignments are shown only for a Stable group.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use runnel_metadata::acl::{AclOperation, ResourceType};

use super::{blocking, sb, Ctx};
use crate::errors::{code, KafkaError};
use crate::group::GroupState;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 6;

/// `group_instance_id` of members from this version on.
const INSTANCE_ID_VERSION: i16 = 4;

pub async fn handle(ctx: &Ctx, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let coordinator = ctx.broker.groups().clone();
    let ids: Vec<String> = req.groups.iter().map(|g| g.0.to_string()).collect();
    let with_operations = req.include_authorized_operations;
    let summaries = blocking(move || ids.iter().map(|g| coordinator.describe(g)).collect::<Vec<_>>()).await;
    let groups = req
        .groups
        .into_iter()
        .zip(summaries)
        .map(|(id, s)| {
            let d = DescribedGroup::default().with_group_id(id.clone());
            if id.0.is_empty() {
                return d.with_error_code(code(KafkaError::InvalidGroupId)).with_group_state(sb(GroupState::Dead.name()));
            }
            if !ctx.may_group(AclOperation::Describe, &id.0) {
                return d.with_error_code(code(KafkaError::GroupAuthorizationFailed)).with_group_state(sb(""));
            }
            // v3+ when asked, as Kafka: the group operations this principal may do.
            let d = match with_operations {
                true => d.with_authorized_operations(ctx.authorized_operations(ResourceType::Group, &id.0)),
                false => d,
            };
            let s = match s {
                Ok(Some(s)) => s,
                Ok(None) => return d.with_group_state(sb(GroupState::Dead.name())),
                Err(e) => return d.with_error_code(code(e)).with_group_state(sb(GroupState::Dead.name())),
            };
            d.with_group_state(sb(s.state.name()))
                .with_protocol_type(sb(s.protocol_type))
                .with_protocol_data(sb(s.protocol))
                .with_members(
                    s.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(sb(m.member_id))
                                .with_group_instance_id(if ctx.version >= INSTANCE_ID_VERSION { m.instance_id.map(sb) } else { None })
                                .with_client_id(sb(m.client_id))
                                .with_client_host(sb(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
