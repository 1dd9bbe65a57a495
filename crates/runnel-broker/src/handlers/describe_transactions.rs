//! DescribeTransactions (key 65) v0: the state of each named transactional id: its state
//! (Kafka's names), producer id and epoch, timeout, start time and the partitions of its
//! transaction. An unknown id is TRANSACTIONAL_ID_NOT_FOUND; in cluster mode an id this broker
//! does not coordinate is NOT_COORDINATOR (COORDINATOR_LOAD_IN_PROGRESS while it loads).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName};

use runnel_metadata::acl::AclOperation;

use super::{blocking, sb, Ctx};
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub async fn handle(ctx: &Ctx, req: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    // Off the async workers: the coordinator's lock is held while a state write replicates.
    let b = ctx.broker.clone();
    let ids: Vec<String> = req.transactional_ids.iter().map(|id| id.0.to_string()).collect();
    let described = blocking(move || ids.iter().map(|id| b.txns().describe(id)).collect::<Vec<_>>()).await;
    let states = req
        .transactional_ids
        .into_iter()
        .zip(described)
        .map(|(id, described)| {
            let s = TransactionState::default().with_transactional_id(id.clone()).with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
            if !ctx.may_txn(AclOperation::Describe, &id.0) {
                return s.with_error_code(code(KafkaError::TransactionalIdAuthorizationFailed));
            }
            let m = match described {
                Ok(m) => m,
                Err(e) => return s.with_error_code(code(e)),
            };
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            // Only the topics the principal may describe, as Kafka.
            let visible = ctx.topics_allowed(AclOperation::Describe, m.partitions.iter().map(|(t, _)| t.as_str()));
            for (t, p) in m.partitions.iter().filter(|(t, _)| visible.contains(t)) {
                by_topic.entry(t.clone()).or_default().push(*p);
            }
            let topics = by_topic.into_iter().map(|(t, ps)| TopicData::default().with_topic(TopicName(sb(t))).with_partitions(ps)).collect();
            s.with_transaction_state(sb(m.state.name()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.txn_start_timestamp)
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_topics(topics)
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
