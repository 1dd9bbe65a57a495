//! AddPartitionsToTxn (key 24) v0–v5: adds partitions to the producer's ongoing
//! transaction (starting one), written to `__transaction_state` before the answer. v0–v3
//! carry one transaction (what clients send); v4+ a batch of them, each possibly
//! `verify_only` (KIP-890: only check that the partitions are in the transaction).
//!
//! Per transaction, as Kafka answers: a partition that does not exist is
//! UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED; otherwise every
//! partition gets the coordinator's verdict (PRODUCER_FENCED for an old epoch,
//! INVALID_PRODUCER_ID_MAPPING for a producer id that is not the transactional id's,
//! CONCURRENT_TRANSACTIONS while the previous transaction is being completed).

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TransactionalId};

use runnel_metadata::acl::AclOperation;

use super::{blocking, Ctx};
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

/// Batched transactions from this version on.
const BATCHED_VERSION: i16 = 4;

/// Most transactions in one batched request (each is a coordinator call).
const MAX_TRANSACTIONS: usize = 1000;

pub async fn handle(ctx: &Ctx, req: AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
    if ctx.version < BATCHED_VERSION {
        let one = (req.v3_and_below_transactional_id, req.v3_and_below_producer_id.0, req.v3_and_below_producer_epoch);
        let results = add(ctx, one.0, (one.1, one.2), req.v3_and_below_topics, false).await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    // v4+ is sent by brokers (KIP-890): CLUSTER_ACTION on the cluster, as Kafka.
    if !ctx.may_cluster(AclOperation::ClusterAction) {
        return AddPartitionsToTxnResponse::default().with_error_code(code(KafkaError::ClusterAuthorizationFailed));
    }
    if req.transactions.len() > MAX_TRANSACTIONS {
        return AddPartitionsToTxnResponse::default().with_error_code(code(KafkaError::InvalidRequest));
    }
    let mut out = Vec::with_capacity(req.transactions.len());
    for t in req.transactions {
        let id = t.transactional_id.clone();
        let results = add(ctx, t.transactional_id, (t.producer_id.0, t.producer_epoch), t.topics, t.verify_only).await;
        out.push(AddPartitionsToTxnResult::default().with_transactional_id(id).with_topic_results(results));
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(out)
}

async fn add(
    ctx: &Ctx,
    id: TransactionalId,
    producer: (i64, i16),
    topics: Vec<AddPartitionsToTxnTopic>,
    verify_only: bool,
) -> Vec<AddPartitionsToTxnTopicResult> {
    // Below v4: WRITE on the transactional id (every partition refused); then WRITE on each topic
    // (the refused ones TOPIC_AUTHORIZATION_FAILED, the rest OPERATION_NOT_ATTEMPTED).
    let txn_denied = ctx.version < BATCHED_VERSION && !ctx.may_txn(AclOperation::Write, &id.0);
    let topic_denied: std::collections::HashSet<String> = topics
        .iter()
        .map(|t| t.name.0.to_string())
        .filter(|n| !crate::group::is_internal_topic(n) && !ctx.may_topic(AclOperation::Write, n))
        .collect();
    if txn_denied || !topic_denied.is_empty() {
        let error_for = |name: &str| match () {
            _ if txn_denied => KafkaError::TransactionalIdAuthorizationFailed,
            _ if topic_denied.contains(name) => KafkaError::TopicAuthorizationFailed,
            _ => KafkaError::OperationNotAttempted,
        };
        return topics
            .into_iter()
            .map(|t| {
                let e = code(error_for(&t.name.0));
                let results = t
                    .partitions
                    .iter()
                    .map(|&p| AddPartitionsToTxnPartitionResult::default().with_partition_index(p).with_partition_error_code(e))
                    .collect();
                AddPartitionsToTxnTopicResult::default().with_name(t.name).with_results_by_partition(results)
            })
            .collect();
    }
    // In the image (in a cluster the coordinator need not hold a replica of the partition).
    let exists = |topic: &str, p: i32| ctx.broker.topic(topic).is_some_and(|t| p >= 0 && (p as u32) < t.partitions);
    let mut parts = Vec::new();
    let mut unknown = false;
    for t in &topics {
        for &p in &t.partitions {
            unknown |= !exists(&t.name.0, p);
            parts.push((t.name.0.to_string(), p));
        }
    }
    let verdict = if unknown {
        Err(KafkaError::OperationNotAttempted)
    } else {
        let b = ctx.broker.clone();
        blocking(move || b.txns().add_partitions(&id.0, producer, &parts, verify_only)).await
    };
    if let Err(e) = verdict {
        tracing::debug!(client_id = %ctx.client_id, error = ?e, "AddPartitionsToTxn refused");
    }
    topics
        .into_iter()
        .map(|t| {
            let results = t
                .partitions
                .iter()
                .map(|&p| {
                    let e = match verdict {
                        Err(KafkaError::OperationNotAttempted) if !exists(&t.name.0, p) => {
                            Some(KafkaError::UnknownTopicOrPartition)
                        }
                        Err(e) => Some(e),
                        Ok(()) => None,
                    };
                    AddPartitionsToTxnPartitionResult::default().with_partition_index(p).with_partition_error_code(e.map_or(0, code))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default().with_name(t.name).with_results_by_partition(results)
        })
        .collect()
}
