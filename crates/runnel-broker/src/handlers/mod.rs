//! One handler per Kafka API. [`SUPPORTED_APIS`] is the single table of what this broker
//! serves; ApiVersions is derived from it and requests outside it are refused before
//! decoding. Never list an API here before its handler works fully.

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use tokio_util::sync::CancellationToken;

use crate::state::Broker;

pub mod api_versions;
mod configs;
mod create_partitions;
mod create_topics;
mod delete_topics;
mod describe_cluster;
mod fetch;
mod list_offsets;
mod metadata;
mod produce;

/// Every API this broker serves, with the versions: (api key, min, max).
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, produce::MIN_VERSION, produce::MAX_VERSION),
    (ApiKey::Fetch, fetch::MIN_VERSION, fetch::MAX_VERSION),
    (ApiKey::ListOffsets, list_offsets::MIN_VERSION, list_offsets::MAX_VERSION),
    (ApiKey::Metadata, metadata::MIN_VERSION, metadata::MAX_VERSION),
    (ApiKey::ApiVersions, api_versions::MIN_VERSION, api_versions::MAX_VERSION),
    (ApiKey::CreateTopics, create_topics::MIN_VERSION, create_topics::MAX_VERSION),
    (ApiKey::DeleteTopics, delete_topics::MIN_VERSION, delete_topics::MAX_VERSION),
    (ApiKey::DescribeConfigs, configs::DESCRIBE_MIN_VERSION, configs::DESCRIBE_MAX_VERSION),
    (ApiKey::AlterConfigs, configs::ALTER_MIN_VERSION, configs::ALTER_MAX_VERSION),
    (ApiKey::CreatePartitions, create_partitions::MIN_VERSION, create_partitions::MAX_VERSION),
    (ApiKey::IncrementalAlterConfigs, configs::INCREMENTAL_MIN_VERSION, configs::INCREMENTAL_MAX_VERSION),
    (ApiKey::DescribeCluster, describe_cluster::MIN_VERSION, describe_cluster::MAX_VERSION),
];

/// Whether this broker serves `key` at `version`.
pub fn supported(key: ApiKey, version: i16) -> bool {
    SUPPORTED_APIS.iter().any(|(k, min, max)| *k == key && (*min..=*max).contains(&version))
}

/// What a handler knows about the request it serves.
pub struct Ctx {
    pub broker: Arc<Broker>,
    pub shutdown: CancellationToken,
    pub version: i16,
    pub client_id: String,
    pub peer: SocketAddr,
}

/// Runs the handler for one request. `None` means no response is sent (produce acks=0).
pub async fn dispatch(ctx: &Ctx, body: RequestKind) -> Option<ResponseKind> {
    Some(match body {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions::handle(ctx, r)),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(ctx, r).await),
        RequestKind::Produce(r) => return produce::handle(ctx, r).await.map(ResponseKind::Produce),
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(ctx, r).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets::handle(ctx, r).await),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(create_topics::handle(ctx, r).await),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(delete_topics::handle(ctx, r).await),
        RequestKind::CreatePartitions(r) => ResponseKind::CreatePartitions(create_partitions::handle(ctx, r).await),
        RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(configs::describe(ctx, r)),
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter(ctx, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(ctx, r).await)
        }
        RequestKind::DescribeCluster(r) => ResponseKind::DescribeCluster(describe_cluster::handle(ctx, r)),
        other => {
            // Unreachable: `supported` refuses these before decoding.
            tracing::error!(peer = %ctx.peer, "no handler for {other:?}");
            return None;
        }
    })
}

/// Runs blocking storage or metadata work off the async threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task panicked")
}

/// A `StrBytes` from a string.
pub fn sb(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}
