//! OffsetFetch (key 9) v1–v9: committed offsets of a group, for the given partitions or
//! (v2+, null topics) all of them; several groups per request from v8. A partition with
//! nothing committed answers offset -1, as Kafka does. With `require_stable` (v7+,
//! KIP-447) a partition whose offset waits for a transaction's marker answers
//! UNSTABLE_OFFSET_COMMIT (retriable), so a consumer never starts from an offset that may
//! still be aborted.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};

use runnel_metadata::acl::AclOperation;

use super::{blocking, sb, Ctx};
use crate::errors::{code, KafkaError};
use crate::group::CommittedOffset;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 9;

/// Several groups per request from this version on.
const GROUPS_VERSION: i16 = 8;
/// `committed_leader_epoch` from this version on.
const LEADER_EPOCH_VERSION: i16 = 5;
/// A top-level error code from this version on.
const GROUP_ERROR_VERSION: i16 = 2;

/// Per topic: (partition, its committed offset or an error).
type Fetched = Vec<(String, Vec<(i32, Result<Option<CommittedOffset>, KafkaError>)>)>;

/// The group's committed offsets as the principal may see them, or why not: no DESCRIBE
/// on the group is GROUP_AUTHORIZATION_FAILED; topics it may not DESCRIBE are left out of
/// an all-topics answer and answered TOPIC_AUTHORIZATION_FAILED when named (Kafka's
/// rules).
async fn fetch(ctx: &Ctx, group: String, topics: Option<Vec<(String, Vec<i32>)>>, require_stable: bool) -> Result<Fetched, KafkaError> {
    if !ctx.may_group(AclOperation::Describe, &group) {
        return Err(KafkaError::GroupAuthorizationFailed);
    }
    let named = topics.is_some();
    let fetched = fetch_offsets(ctx, group, topics, require_stable).await?;
    let allowed = ctx.topics_allowed(AclOperation::Describe, fetched.iter().map(|(t, _)| t.as_str()));
    Ok(fetched
        .into_iter()
        .filter(|(t, _)| named || allowed.contains(t))
        .map(|(t, parts)| {
            if allowed.contains(&t) {
                return (t, parts);
            }
            let parts = parts.into_iter().map(|(p, _)| (p, Err(KafkaError::TopicAuthorizationFailed))).collect();
            (t, parts)
        })
        .collect())
}

/// The group's committed offsets, or why this broker cannot answer for it
/// (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS …): for v1, which has no group-level
/// error, that error is given per requested partition.
async fn fetch_offsets(ctx: &Ctx, group: String, topics: Option<Vec<(String, Vec<i32>)>>, require_stable: bool) -> Result<Fetched, KafkaError> {
    let coordinator = ctx.broker.groups().clone();
    let v1 = ctx.version < GROUP_ERROR_VERSION;
    blocking(move || {
        let requested = topics.clone();
        let fetched = match coordinator.fetch_offsets(&group, topics) {
            Ok(f) => f,
            Err(e) if v1 => {
                let parts = requested.unwrap_or_default();
                return Ok(parts.into_iter().map(|(t, ps)| (t, ps.into_iter().map(|p| (p, Err(e))).collect())).collect());
            }
            Err(e) => return Err(e),
        };
        let unstable = if require_stable { coordinator.unstable_partitions(&group) } else { Default::default() };
        Ok(fetched
            .into_iter()
            .map(|(t, parts)| {
                let parts = parts
                    .into_iter()
                    .map(|(p, o)| (p, if unstable.contains(&(t.clone(), p)) { Err(KafkaError::UnstableOffsetCommit) } else { Ok(o) }))
                    .collect();
                (t, parts)
            })
            .collect())
    })
    .await
}

/// (offset, leader epoch, metadata, error code) as answered.
fn fields(version: i16, o: Result<Option<CommittedOffset>, KafkaError>) -> (i64, i32, String, i16) {
    match o {
        Ok(Some(o)) => (o.offset, if version >= LEADER_EPOCH_VERSION { o.leader_epoch } else { -1 }, o.metadata, 0),
        Ok(None) => (-1, -1, String::new(), 0),
        Err(e) => (-1, -1, String::new(), code(e)),
    }
}

/// The response topics of one group, built with the per-version types: `part` makes a
/// partition from (index, offset, leader epoch, metadata), `topic` a topic from its name
/// and partitions.
fn response_topics<T, P>(
    version: i16,
    fetched: Fetched,
    part: impl Fn(i32, i64, i32, String) -> P,
    error: impl Fn(P, i16) -> P,
    topic: impl Fn(TopicName, Vec<P>) -> T,
) -> Vec<T> {
    fetched
        .into_iter()
        .map(|(t, parts)| {
            let parts = parts
                .into_iter()
                .map(|(p, o)| {
                    let (offset, epoch, metadata, e) = fields(version, o);
                    error(part(p, offset, epoch, metadata), e)
                })
                .collect();
            topic(TopicName(sb(t)), parts)
        })
        .collect()
}

pub async fn handle(ctx: &Ctx, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let v = ctx.version;
    if v >= GROUPS_VERSION {
        let mut groups = Vec::with_capacity(req.groups.len());
        for g in req.groups {
            let topics = g.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
            let fetched = match fetch(ctx, g.group_id.0.to_string(), topics, req.require_stable).await {
                Ok(f) => f,
                Err(e) => {
                    groups.push(OffsetFetchResponseGroup::default().with_group_id(GroupId(g.group_id.0)).with_error_code(code(e)));
                    continue;
                }
            };
            let topics = response_topics(
                v,
                fetched,
                |p, offset, epoch, metadata| {
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(p)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(Some(sb(metadata)))
                },
                |p, e| p.with_error_code(e),
                |name, parts| OffsetFetchResponseTopics::default().with_name(name).with_partitions(parts),
            );
            groups.push(OffsetFetchResponseGroup::default().with_group_id(GroupId(g.group_id.0)).with_topics(topics));
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
    let fetched = match fetch(ctx, req.group_id.0.to_string(), topics, req.require_stable).await {
        Ok(f) => f,
        Err(e) => return OffsetFetchResponse::default().with_error_code(code(e)),
    };
    let topics = response_topics(
        v,
        fetched,
        |p, offset, epoch, metadata| {
            OffsetFetchResponsePartition::default()
                .with_partition_index(p)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(epoch)
                .with_metadata(Some(sb(metadata)))
        },
        |p, e| p.with_error_code(e),
        |name, parts| OffsetFetchResponseTopic::default().with_name(name).with_partitions(parts),
    );
    OffsetFetchResponse::default().with_topics(topics)
}
