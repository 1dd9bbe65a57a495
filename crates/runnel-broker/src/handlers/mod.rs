//! One handler per Kafka API. [`SUPPORTED_APIS`] is the single table of what this broker
//! serves; ApiVersions is derived from it and requests outside it are refused before
//! decoding. Never list an API here before its handler works fully.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use tokio_util::sync::CancellationToken;

use crate::state::Broker;

mod acls;
mod add_offsets_to_txn;
mod add_partitions_to_txn;
pub mod api_versions;
mod authz;
mod client_quotas;
mod configs;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_groups;
mod describe_producers;
mod describe_transactions;
mod end_txn;
pub(crate) mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod sasl;
mod scram_credentials;
mod sync_group;
mod txn_offset_commit;
mod write_txn_markers;

/// Every API this broker serves, with the versions: (api key, min, max).
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, produce::MIN_VERSION, produce::MAX_VERSION),
    (ApiKey::Fetch, fetch::MIN_VERSION, fetch::MAX_VERSION),
    (ApiKey::ListOffsets, list_offsets::MIN_VERSION, list_offsets::MAX_VERSION),
    (ApiKey::Metadata, metadata::MIN_VERSION, metadata::MAX_VERSION),
    (ApiKey::ApiVersions, api_versions::MIN_VERSION, api_versions::MAX_VERSION),
    (ApiKey::CreateTopics, create_topics::MIN_VERSION, create_topics::MAX_VERSION),
    (ApiKey::DeleteTopics, delete_topics::MIN_VERSION, delete_topics::MAX_VERSION),
    (ApiKey::DeleteRecords, delete_records::MIN_VERSION, delete_records::MAX_VERSION),
    (ApiKey::DescribeConfigs, configs::DESCRIBE_MIN_VERSION, configs::DESCRIBE_MAX_VERSION),
    (ApiKey::AlterConfigs, configs::ALTER_MIN_VERSION, configs::ALTER_MAX_VERSION),
    (ApiKey::CreatePartitions, create_partitions::MIN_VERSION, create_partitions::MAX_VERSION),
    (ApiKey::IncrementalAlterConfigs, configs::INCREMENTAL_MIN_VERSION, configs::INCREMENTAL_MAX_VERSION),
    (ApiKey::DescribeCluster, describe_cluster::MIN_VERSION, describe_cluster::MAX_VERSION),
    (ApiKey::FindCoordinator, find_coordinator::MIN_VERSION, find_coordinator::MAX_VERSION),
    (ApiKey::JoinGroup, join_group::MIN_VERSION, join_group::MAX_VERSION),
    (ApiKey::SyncGroup, sync_group::MIN_VERSION, sync_group::MAX_VERSION),
    (ApiKey::Heartbeat, heartbeat::MIN_VERSION, heartbeat::MAX_VERSION),
    (ApiKey::LeaveGroup, leave_group::MIN_VERSION, leave_group::MAX_VERSION),
    (ApiKey::OffsetCommit, offset_commit::MIN_VERSION, offset_commit::MAX_VERSION),
    (ApiKey::OffsetFetch, offset_fetch::MIN_VERSION, offset_fetch::MAX_VERSION),
    (ApiKey::DescribeGroups, describe_groups::MIN_VERSION, describe_groups::MAX_VERSION),
    (ApiKey::ListGroups, list_groups::MIN_VERSION, list_groups::MAX_VERSION),
    (ApiKey::DeleteGroups, delete_groups::MIN_VERSION, delete_groups::MAX_VERSION),
    (ApiKey::OffsetDelete, offset_delete::MIN_VERSION, offset_delete::MAX_VERSION),
    (ApiKey::InitProducerId, init_producer_id::MIN_VERSION, init_producer_id::MAX_VERSION),
    (ApiKey::DescribeProducers, describe_producers::MIN_VERSION, describe_producers::MAX_VERSION),
    (ApiKey::OffsetForLeaderEpoch, offset_for_leader_epoch::MIN_VERSION, offset_for_leader_epoch::MAX_VERSION),
    (ApiKey::AddPartitionsToTxn, add_partitions_to_txn::MIN_VERSION, add_partitions_to_txn::MAX_VERSION),
    (ApiKey::AddOffsetsToTxn, add_offsets_to_txn::MIN_VERSION, add_offsets_to_txn::MAX_VERSION),
    (ApiKey::EndTxn, end_txn::MIN_VERSION, end_txn::MAX_VERSION),
    (ApiKey::TxnOffsetCommit, txn_offset_commit::MIN_VERSION, txn_offset_commit::MAX_VERSION),
    (ApiKey::WriteTxnMarkers, write_txn_markers::MIN_VERSION, write_txn_markers::MAX_VERSION),
    (ApiKey::DescribeTransactions, describe_transactions::MIN_VERSION, describe_transactions::MAX_VERSION),
    (ApiKey::ListTransactions, list_transactions::MIN_VERSION, list_transactions::MAX_VERSION),
    (ApiKey::SaslHandshake, sasl::HANDSHAKE_MIN_VERSION, sasl::HANDSHAKE_MAX_VERSION),
    (ApiKey::SaslAuthenticate, sasl::AUTHENTICATE_MIN_VERSION, sasl::AUTHENTICATE_MAX_VERSION),
    (ApiKey::DescribeUserScramCredentials, scram_credentials::DESCRIBE_MIN_VERSION, scram_credentials::DESCRIBE_MAX_VERSION),
    (ApiKey::AlterUserScramCredentials, scram_credentials::ALTER_MIN_VERSION, scram_credentials::ALTER_MAX_VERSION),
    (ApiKey::DescribeAcls, acls::MIN_VERSION, acls::MAX_VERSION),
    (ApiKey::CreateAcls, acls::MIN_VERSION, acls::MAX_VERSION),
    (ApiKey::DeleteAcls, acls::MIN_VERSION, acls::MAX_VERSION),
    (ApiKey::DescribeClientQuotas, client_quotas::MIN_VERSION, client_quotas::MAX_VERSION),
    (ApiKey::AlterClientQuotas, client_quotas::MIN_VERSION, client_quotas::MAX_VERSION),
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
    /// Who sent the request: the connection's authenticated principal, its listener and
    /// security protocol, and the peer address (what ACLs and quotas are checked against).
    pub session: Arc<crate::auth::Session>,
    /// Record sections the response leaves to the connection to send from files
    /// (Fetch's zero-copy path): placeholders in the encoded body, in order.
    pub splices: std::sync::Mutex<Vec<Splice>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The fetch sessions this connection created (bounded per connection).
    pub fetch_sessions: crate::fetch_session::ConnectionSessions,
}

impl Ctx {
    /// This request's context for a response finished after the connection has moved on
    /// to the next requests ([`Reply::Later`]): the same request, no record sections.
    pub fn detached(&self) -> Ctx {
        Ctx {
            broker: self.broker.clone(),
            shutdown: self.shutdown.clone(),
            version: self.version,
            client_id: self.client_id.clone(),
            peer: self.peer,
            session: self.session.clone(),
            splices: Default::default(),
            metrics: self.metrics.clone(),
            fetch_sessions: Default::default(),
        }
    }
}

/// A records field of a response to be sent from segment files.
pub type Splice = runnel_protocol::splice::Placeholder<runnel_storage::ReadSlice>;

/// A handler's answer to one request.
pub enum Reply {
    /// The response, or `None` when none is sent (produce acks=0).
    Now(Option<ResponseKind>),
    /// The request has taken effect (a produce appended), but its response is due only
    /// when this resolves (acks=all: once the in-sync replicas have the batches, or at the
    /// request's timeout). It borrows nothing from the connection, so the connection may
    /// serve the next requests meanwhile; it always resolves, within the request's
    /// `timeout_ms`.
    Later(Pin<Box<dyn Future<Output = ResponseKind> + Send>>),
}

/// Runs the handler for one request.
pub async fn dispatch(ctx: &Ctx, body: RequestKind) -> Reply {
    match body {
        RequestKind::Produce(r) => produce::handle(ctx, r).await,
        body => Reply::Now(respond(ctx, body).await),
    }
}

/// Runs a handler that answers when it returns. `None` means no response is sent.
async fn respond(ctx: &Ctx, body: RequestKind) -> Option<ResponseKind> {
    Some(match body {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions::handle(ctx, r)),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(ctx, r).await),
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(ctx, r).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets::handle(ctx, r).await),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(create_topics::handle(ctx, r).await),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(delete_topics::handle(ctx, r).await),
        RequestKind::DeleteRecords(r) => ResponseKind::DeleteRecords(delete_records::handle(ctx, r).await),
        RequestKind::CreatePartitions(r) => ResponseKind::CreatePartitions(create_partitions::handle(ctx, r).await),
        RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(configs::describe(ctx, r)),
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter(ctx, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(ctx, r).await)
        }
        RequestKind::DescribeCluster(r) => ResponseKind::DescribeCluster(describe_cluster::handle(ctx, r)),
        RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(find_coordinator::handle(ctx, r).await),
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(join_group::handle(ctx, r).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(sync_group::handle(ctx, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat::handle(ctx, r).await),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(leave_group::handle(ctx, r).await),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(offset_commit::handle(ctx, r).await),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(offset_fetch::handle(ctx, r).await),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(describe_groups::handle(ctx, r).await),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups::handle(ctx, r).await),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(delete_groups::handle(ctx, r).await),
        RequestKind::OffsetDelete(r) => ResponseKind::OffsetDelete(offset_delete::handle(ctx, r).await),
        RequestKind::DescribeProducers(r) => ResponseKind::DescribeProducers(describe_producers::handle(ctx, r)),
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(ctx, r).await)
        }
        RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(init_producer_id::handle(ctx, r).await),
        RequestKind::AddPartitionsToTxn(r) => ResponseKind::AddPartitionsToTxn(add_partitions_to_txn::handle(ctx, r).await),
        RequestKind::AddOffsetsToTxn(r) => ResponseKind::AddOffsetsToTxn(add_offsets_to_txn::handle(ctx, r).await),
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(end_txn::handle(ctx, r).await),
        RequestKind::TxnOffsetCommit(r) => ResponseKind::TxnOffsetCommit(txn_offset_commit::handle(ctx, r).await),
        RequestKind::WriteTxnMarkers(r) => ResponseKind::WriteTxnMarkers(write_txn_markers::handle(ctx, r).await),
        RequestKind::DescribeTransactions(r) => ResponseKind::DescribeTransactions(describe_transactions::handle(ctx, r).await),
        RequestKind::ListTransactions(r) => ResponseKind::ListTransactions(list_transactions::handle(ctx, r).await),
        RequestKind::SaslHandshake(r) => ResponseKind::SaslHandshake(sasl::handshake(ctx, r)),
        RequestKind::SaslAuthenticate(r) => ResponseKind::SaslAuthenticate(sasl::authenticate(ctx, r)),
        RequestKind::DescribeUserScramCredentials(r) => {
            ResponseKind::DescribeUserScramCredentials(scram_credentials::describe(ctx, r))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            ResponseKind::AlterUserScramCredentials(scram_credentials::alter(ctx, r).await)
        }
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(acls::create(ctx, r).await),
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(acls::describe(ctx, r)),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(acls::delete(ctx, r).await),
        RequestKind::DescribeClientQuotas(r) => ResponseKind::DescribeClientQuotas(client_quotas::describe(ctx, r)),
        RequestKind::AlterClientQuotas(r) => ResponseKind::AlterClientQuotas(client_quotas::alter(ctx, r).await),
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
