//! ListGroups (key 16) v0–v5: every group, with its state (v4+, filterable by state) and
//! type (v5+, always "classic"; filterable).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use runnel_metadata::acl::{AclOperation, ResourceType};

use super::{blocking, sb, Ctx};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

const STATES_VERSION: i16 = 4;
const TYPES_VERSION: i16 = 5;
/// The only group type this broker has.
const CLASSIC: &str = "classic";

pub async fn handle(ctx: &Ctx, req: ListGroupsRequest) -> ListGroupsResponse {
    let coordinator = ctx.broker.groups().clone();
    let all = blocking(move || coordinator.list()).await;
    let states: Vec<String> =
        if ctx.version >= STATES_VERSION { req.states_filter.iter().map(|s| s.to_lowercase()).collect() } else { Vec::new() };
    let types: Vec<String> =
        if ctx.version >= TYPES_VERSION { req.types_filter.iter().map(|s| s.to_lowercase()).collect() } else { Vec::new() };
    if !types.is_empty() && !types.iter().any(|t| t == CLASSIC) {
        return ListGroupsResponse::default();
    }
    // DESCRIBE on the cluster lists every group; else those the principal may describe.
    let allowed = (!ctx.may_cluster(AclOperation::Describe))
        .then(|| ctx.allowed(AclOperation::Describe, ResourceType::Group, all.iter().map(|g| g.group_id.as_str())));
    let groups = all
        .into_iter()
        .filter(|g| allowed.as_ref().is_none_or(|a| a.contains(&g.group_id)))
        .filter(|g| states.is_empty() || states.contains(&g.state.name().to_lowercase()))
        .map(|g| {
            let mut l = ListedGroup::default().with_group_id(GroupId(sb(g.group_id))).with_protocol_type(sb(g.protocol_type));
            if ctx.version >= STATES_VERSION {
                l = l.with_group_state(sb(g.state.name()));
            }
            if ctx.version >= TYPES_VERSION {
                l = l.with_group_type(sb(CLASSIC));
            }
            l
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
