//! One transactional id's state as the transaction coordinator keeps it (Kafka's
//! `TransactionMetadata`): the producer id and epoch it hands out, the transaction timeout,
//! the state of its current transaction and the partitions in it. Pure data and rules; the
//! coordinator persists every change before it takes effect.
//!
//! States (Kafka's): `Empty` → (AddPartitionsToTxn, AddOffsetsToTxn) → `Ongoing` →
//! (EndTxn) → `PrepareCommit` | `PrepareAbort` → (markers written) → `CompleteCommit` |
//! `CompleteAbort` → (next AddPartitions) → `Ongoing` …; InitProducerId bumps the epoch
//! and leaves `Empty` (an `Ongoing` transaction is aborted first, with a bumped epoch, so
//! the old producer is fenced).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::errors::KafkaError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    pub const ALL: [TxnState; 6] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ];

    /// A transaction that is open or being completed (its partitions have an unstable
    /// offset).
    pub fn is_open(self) -> bool {
        matches!(self, TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// The value stored in `__transaction_state` for a transactional id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    pub producer_id: i64,
    /// The id and epoch before the last bump (KIP-360: a producer that lost the answer
    /// to InitProducerId may present them).
    pub last_producer_id: i64,
    pub producer_epoch: i16,
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions of the current transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the current transaction started (its first AddPartitions), -1 if none.
    pub txn_start_timestamp: i64,
    pub txn_last_update_timestamp: i64,
}

/// Highest epoch handed out before a producer gets a fresh id (Kafka: `Short.MAX_VALUE - 1`).
const MAX_EPOCH: i16 = i16::MAX - 1;

impl TxnMeta {
    pub fn new(producer_id: i64, timeout_ms: i32, now: i64) -> Self {
        Self {
            producer_id,
            last_producer_id: -1,
            producer_epoch: -1,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            txn_start_timestamp: -1,
            txn_last_update_timestamp: now,
        }
    }

    /// Whether `(id, epoch)` from a KIP-360 InitProducerId names this producer now or
    /// just before its last bump.
    pub fn is_current_or_last(&self, id: i64, epoch: i16) -> bool {
        (id == self.producer_id && epoch == self.producer_epoch)
            || (id == self.last_producer_id && epoch == self.last_producer_epoch)
    }

    /// Whether the epoch can grow once more without a new producer id.
    pub fn epoch_exhausted(&self) -> bool {
        self.producer_epoch >= MAX_EPOCH
    }

    /// InitProducerId on a completed or empty transaction: the next epoch (or, once the
    /// epochs are used up, `fresh_id` with epoch 0), state `Empty`.
    pub fn bumped(&self, fresh_id: impl FnOnce() -> Result<i64, KafkaError>, timeout_ms: i32, now: i64) -> Result<Self, KafkaError> {
        let mut m = self.clone();
        m.last_producer_id = self.producer_id;
        m.last_producer_epoch = self.producer_epoch;
        if self.epoch_exhausted() {
            m.producer_id = fresh_id()?;
            m.producer_epoch = 0;
        } else {
            m.producer_epoch = self.producer_epoch + 1;
        }
        m.timeout_ms = timeout_ms;
        m.state = TxnState::Empty;
        m.partitions.clear();
        m.txn_start_timestamp = -1;
        m.txn_last_update_timestamp = now;
        Ok(m)
    }

    /// Checks a request naming `(producer_id, epoch)` against this state: the id must be
    /// ours, the epoch current (an older one is fenced).
    pub fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), KafkaError> {
        if producer_id != self.producer_id {
            return Err(KafkaError::InvalidProducerIdMapping);
        }
        if epoch != self.producer_epoch {
            return Err(KafkaError::ProducerFenced);
        }
        Ok(())
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: `None` when nothing changes (all already in
    /// an ongoing transaction), else the new state to persist.
    pub fn with_partitions(&self, parts: &[(String, i32)], now: i64) -> Result<Option<Self>, KafkaError> {
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => return Err(KafkaError::ConcurrentTransactions),
            TxnState::Ongoing if parts.iter().all(|p| self.partitions.contains(p)) => return Ok(None),
            _ => {}
        }
        let mut m = self.clone();
        if m.state != TxnState::Ongoing {
            m.txn_start_timestamp = now;
            m.partitions.clear();
        }
        m.state = TxnState::Ongoing;
        m.partitions.extend(parts.iter().cloned());
        m.txn_last_update_timestamp = now;
        Ok(Some(m))
    }

    /// EndTxn: `Ok(None)` for a retry of a completed end (answered as success), else the
    /// prepared state to persist before the markers are written.
    pub fn prepare_end(&self, commit: bool, now: i64) -> Result<Option<Self>, KafkaError> {
        match (self.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut m = self.clone();
                m.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
                m.txn_last_update_timestamp = now;
                Ok(Some(m))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(None),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => Err(KafkaError::ConcurrentTransactions),
            _ => Err(KafkaError::InvalidTxnState),
        }
    }

    /// The state once every marker of a prepared transaction is written.
    pub fn completed(&self, now: i64) -> Self {
        let mut m = self.clone();
        m.state = if self.state == TxnState::PrepareCommit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
        m.partitions.clear();
        m.txn_last_update_timestamp = now;
        m
    }

    /// The coordinator aborts an ongoing transaction (timeout, or a new producer with the
    /// same transactional id): `PrepareAbort` under the next epoch, so the old producer is
    /// fenced by the markers and by the coordinator.
    pub fn fenced_abort(&self, now: i64) -> Self {
        let mut m = self.clone();
        if !self.epoch_exhausted() {
            m.last_producer_id = self.producer_id;
            m.last_producer_epoch = self.producer_epoch;
            m.producer_epoch = self.producer_epoch + 1;
        }
        m.state = TxnState::PrepareAbort;
        m.txn_last_update_timestamp = now;
        m
    }

    /// Whether an ongoing transaction has outlived its timeout at `now`.
    pub fn timed_out(&self, now: i64) -> bool {
        self.state == TxnState::Ongoing && now.saturating_sub(self.txn_start_timestamp) > i64::from(self.timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(v: &[(&str, i32)]) -> Vec<(String, i32)> {
        v.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    #[test]
    fn a_transaction_goes_through_kafkas_states() {
        let m = TxnMeta::new(7, 60_000, 0).bumped(|| unreachable!(), 60_000, 1).unwrap();
        assert_eq!((m.producer_id, m.producer_epoch, m.state), (7, 0, TxnState::Empty));
        assert_eq!(m.prepare_end(true, 2), Err(KafkaError::InvalidTxnState));
        let m = m.with_partitions(&parts(&[("a", 0)]), 5).unwrap().unwrap();
        assert_eq!((m.state, m.txn_start_timestamp), (TxnState::Ongoing, 5));
        assert_eq!(m.with_partitions(&parts(&[("a", 0)]), 6), Ok(None));
        let m = m.with_partitions(&parts(&[("b", 1)]), 7).unwrap().unwrap();
        assert_eq!((m.partitions.len(), m.txn_start_timestamp), (2, 5));
        let p = m.prepare_end(true, 8).unwrap().unwrap();
        assert_eq!(p.state, TxnState::PrepareCommit);
        assert_eq!(p.prepare_end(true, 9), Err(KafkaError::ConcurrentTransactions));
        assert_eq!(p.with_partitions(&parts(&[("a", 0)]), 9), Err(KafkaError::ConcurrentTransactions));
        let c = p.completed(10);
        assert_eq!((c.state, c.partitions.len()), (TxnState::CompleteCommit, 0));
        assert_eq!(c.prepare_end(true, 11), Ok(None), "a retried commit succeeds");
        assert_eq!(c.prepare_end(false, 11), Err(KafkaError::InvalidTxnState));
        assert_eq!(c.check_producer(7, 0), Ok(()));
        assert_eq!(c.check_producer(8, 0), Err(KafkaError::InvalidProducerIdMapping));
        assert_eq!(c.check_producer(7, 1), Err(KafkaError::ProducerFenced));
    }

    #[test]
    fn fencing_and_timeouts_bump_the_epoch() {
        let m = TxnMeta::new(7, 100, 0).bumped(|| unreachable!(), 100, 0).unwrap();
        let m = m.with_partitions(&parts(&[("a", 0)]), 1000).unwrap().unwrap();
        assert!(!m.timed_out(1100));
        assert!(m.timed_out(1101));
        let f = m.fenced_abort(1200);
        assert_eq!((f.state, f.producer_epoch, f.last_producer_epoch), (TxnState::PrepareAbort, 1, 0));
        assert_eq!(f.check_producer(7, 0), Err(KafkaError::ProducerFenced));
        let mut old = f.completed(1300);
        old.producer_epoch = MAX_EPOCH;
        let fresh = old.bumped(|| Ok(99), 100, 1400).unwrap();
        assert_eq!((fresh.producer_id, fresh.producer_epoch, fresh.last_producer_id), (99, 0, 7));
        assert!(fresh.is_current_or_last(7, MAX_EPOCH));
    }
}
