//! ListTransactions (key 66) v0–v1: every transactional id this broker coordinates, with
//! its producer id and state; filtered by states (unknown names are listed back in
//! `unknown_state_filters`), by producer ids, and (v1) by running longer than
//! `duration_filter` ms. v2's regular-expression filter is not served.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId};

use runnel_metadata::acl::AclOperation;

use super::{blocking, sb, Ctx};
use crate::now_ms;
use crate::txn::TxnState;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 1;

pub async fn handle(ctx: &Ctx, req: ListTransactionsRequest) -> ListTransactionsResponse {
    let (known, unknown): (Vec<_>, Vec<_>) =
        req.state_filters.into_iter().partition(|f| TxnState::ALL.iter().any(|s| s.name() == f.as_str()));
    let now = now_ms();
    // Off the async workers: the coordinator's lock is held while a state write replicates.
    let b = ctx.broker.clone();
    let listed = blocking(move || b.txns().list()).await;
    let states = listed
        .into_iter()
        .filter(|(_, m)| known.is_empty() || known.iter().any(|f| f.as_str() == m.state.name()))
        .filter(|(_, m)| req.producer_id_filters.is_empty() || req.producer_id_filters.contains(&ProducerId(m.producer_id)))
        .filter(|(_, m)| req.duration_filter < 0 || (m.txn_start_timestamp >= 0 && now - m.txn_start_timestamp >= req.duration_filter))
        .filter(|(id, _)| ctx.may_txn(AclOperation::Describe, id))
        .map(|(id, m)| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(sb(id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(sb(m.state.name()))
        })
        .collect();
    ListTransactionsResponse::default().with_unknown_state_filters(unknown).with_transaction_states(states)
}
