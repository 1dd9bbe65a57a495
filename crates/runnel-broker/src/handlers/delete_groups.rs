//! DeleteGroups (key 42) v0–v2: deletes empty groups with their committed offsets
//! (tombstones in `__consumer_offsets`). NON_EMPTY_GROUP while members remain,
//! GROUP_ID_NOT_FOUND for an unknown group.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use runnel_metadata::acl::{AclOperation, ResourceType};

use super::{blocking, Ctx};
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

pub async fn handle(ctx: &Ctx, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let coordinator = ctx.broker.groups().clone();
    // DELETE on each group (else GROUP_AUTHORIZATION_FAILED), as Kafka.
    let allowed = ctx.allowed(AclOperation::Delete, ResourceType::Group, req.groups_names.iter().map(|g| g.0.as_str()));
    let ids: Vec<String> = req.groups_names.iter().map(|g| g.0.to_string()).collect();
    let errors = blocking(move || {
        ids.iter()
            .map(|g| if allowed.contains(g) { coordinator.delete(g) } else { Some(KafkaError::GroupAuthorizationFailed) })
            .collect::<Vec<_>>()
    })
    .await;
    let results = req
        .groups_names
        .into_iter()
        .zip(errors)
        .map(|(id, e)| DeletableGroupResult::default().with_group_id(id).with_error_code(e.map_or(0, code)))
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
