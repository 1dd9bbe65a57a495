//! OffsetFetch (key 9) v1–v9: committed offsets of a group, for the given partitions or
//! (v2+, null topics) all of them; several groups per request from v8. A partition with
//! nothing committed answers offset -1, as Kafka does. Transactions are not built, so
//! `require_stable` never waits.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::{blocking, sb, Ctx};
use crate::group::CommittedOffset;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 9;

/// Several groups per request from this version on.
const GROUPS_VERSION: i16 = 8;
/// `committed_leader_epoch` from this version on.
const LEADER_EPOCH_VERSION: i16 = 5;

type Fetched = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

async fn fetch(ctx: &Ctx, group: String, topics: Option<Vec<(String, Vec<i32>)>>) -> Fetched {
    let coordinator = ctx.broker.groups().clone();
    blocking(move || coordinator.fetch_offsets(&group, topics)).await
}

/// (offset, leader epoch, metadata) as answered.
fn fields(version: i16, o: Option<CommittedOffset>) -> (i64, i32, String) {
    match o {
        Some(o) => (o.offset, if version >= LEADER_EPOCH_VERSION { o.leader_epoch } else { -1 }, o.metadata),
        None => (-1, -1, String::new()),
    }
}

/// The response topics of one group, built with the per-version types: `part` makes a
/// partition from (index, offset, leader epoch, metadata), `topic` a topic from its name
/// and partitions.
fn response_topics<T, P>(
    version: i16,
    fetched: Fetched,
    part: impl Fn(i32, i64, i32, String) -> P,
    topic: impl Fn(TopicName, Vec<P>) -> T,
) -> Vec<T> {
    fetched
        .into_iter()
        .map(|(t, parts)| {
            let parts = parts
                .into_iter()
                .map(|(p, o)| {
                    let (offset, epoch, metadata) = fields(version, o);
                    part(p, offset, epoch, metadata)
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
            let fetched = fetch(ctx, g.group_id.0.to_string(), topics).await;
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
                |name, parts| OffsetFetchResponseTopics::default().with_name(name).with_partitions(parts),
            );
            groups.push(OffsetFetchResponseGroup::default().with_group_id(GroupId(g.group_id.0)).with_topics(topics));
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
    let fetched = fetch(ctx, req.group_id.0.to_string(), topics).await;
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
        |name, parts| OffsetFetchResponseTopic::default().with_name(name).with_partitions(parts),
    );
    OffsetFetchResponse::default().with_topics(topics)
}
