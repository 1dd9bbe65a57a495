//! The transaction coordinator (KIP-98; Kafka's `TransactionCoordinator` and
//! `TransactionStateManager`). For every transactional id it keeps a [`TxnMeta`] in the
//! internal compacted topic `__transaction_state` (`transaction.state.log.num.partitions`
//! partitions, created at the first transactional request, as Kafka does); the coordinator
//! of an id is the leader of the partition the id hashes to — on one broker, this broker.
//!
//! Every change is written to `__transaction_state` before it takes effect or is answered.
//! Ending a transaction is: `PrepareCommit`/`PrepareAbort` written, then a marker (control
//! batch) appended to every partition of the transaction as the coordinator
//! (`AppendOrigin::Coordinator`; the group coordinator's pending offsets are decided with
//! the marker in `__consumer_offsets`), then `CompleteCommit`/`CompleteAbort` written. A
//! crash between those steps is finished at load: a prepared transaction gets its markers
//! again (a second marker is harmless). An ongoing transaction is left to its producer or
//! to its `transaction.timeout.ms`, after which the coordinator aborts it under a bumped
//! epoch, fencing the producer; InitProducerId on an id with an ongoing transaction does
//! the same before handing out the next epoch.
//!
//! All transaction changes, transactional appends of clients (checked against the
//! transaction, KIP-890's verification) and TxnOffsetCommit run under one lock, so no
//! batch of a transaction can land after its marker. Its methods block (they append to
//! logs): handlers call them on a blocking thread. Lock order: this lock, then the group
//! coordinator's, then a partition log's.
//!
//! Submodules: `state` (a transaction's states and rules), `persist` (records in
//! `__transaction_state`), `markers` (writing the markers).

mod markers;
mod persist;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

pub use persist::TXN_TOPIC;
pub use state::{TxnMeta, TxnState};

use crate::errors::KafkaError;
use crate::now_ms;
use crate::partition::Partition;
use crate::state::{Broker, StateError};

/// The coordinator epoch written in markers. One broker coordinates every transaction and
/// never hands it over, so it never changes; a cluster takes the `__transaction_state`
/// partition's leader epoch.
pub const COORDINATOR_EPOCH: i32 = 0;

/// The transaction settings of the broker config, read once.
#[derive(Debug, Clone)]
struct Settings {
    partitions: u32,
    max_timeout_ms: i32,
    id_expiration_ms: i64,
}

#[derive(Default)]
struct Inner {
    /// The partitions of `__transaction_state`, once it exists.
    logs: Option<Vec<Arc<Partition>>>,
    txns: HashMap<String, TxnMeta>,
    /// Producer id → transactional id.
    by_producer: HashMap<i64, String>,
}

pub struct TxnCoordinator {
    inner: Mutex<Inner>,
    settings: Settings,
}

/// A transactional id's answer to DescribeTransactions / ListTransactions.
pub type Described = (String, TxnMeta);

impl TxnCoordinator {
    pub fn new(config: &crate::BrokerConfig) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            settings: Settings {
                partitions: config.transaction_state_partitions(),
                max_timeout_ms: config.transaction_max_timeout_ms(),
                id_expiration_ms: config.transactional_id_expiration_ms(),
            },
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads `__transaction_state` if it exists, finishing transactions a crash left
    /// prepared. Called once the group coordinator is loaded.
    pub fn load_if_present(&self, b: &Broker) -> Result<(), StateError> {
        if b.topic(TXN_TOPIC).is_some() {
            let mut inner = self.lock();
            self.load(&mut inner, b)?;
        }
        Ok(())
    }

    /// Makes sure `__transaction_state` exists and is loaded (FindCoordinator and
    /// InitProducerId for a transactional id); COORDINATOR_NOT_AVAILABLE if it cannot be.
    pub fn ensure_ready(&self, b: &Broker) -> Result<(), KafkaError> {
        if b.cluster().is_some() {
            // Markers to partitions on other brokers (WriteTxnMarkers) are not built yet.
            return Err(KafkaError::CoordinatorNotAvailable);
        }
        let mut inner = self.lock();
        if inner.logs.is_some() {
            return Ok(());
        }
        let ready = (|| {
            if b.topic(TXN_TOPIC).is_none() {
                let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
                match b.create_topic(TXN_TOPIC, self.settings.partitions, configs) {
                    Ok(_) | Err(StateError::TopicExists(_)) => {}
                    Err(e) => return Err(e),
                }
                tracing::info!(topic = TXN_TOPIC, partitions = self.settings.partitions, "created the internal topic");
            }
            self.load(&mut inner, b)
        })();
        ready.map_err(|e| {
            tracing::error!(error = %e, "the transaction coordinator cannot start");
            KafkaError::CoordinatorNotAvailable
        })
    }

    fn load(&self, inner: &mut Inner, b: &Broker) -> Result<(), StateError> {
        let count = b.topic(TXN_TOPIC).map_or(0, |t| t.partitions) as i32;
        let logs: Vec<_> = (0..count).filter_map(|p| b.partition(TXN_TOPIC, p)).collect();
        if logs.len() != count as usize {
            return Err(StateError::UnknownTopic(format!("{TXN_TOPIC} (a partition is offline)")));
        }
        for log in &logs {
            for (id, meta) in persist::replay(log)? {
                inner.by_producer.insert(meta.producer_id, id.clone());
                inner.txns.insert(id, meta);
            }
        }
        inner.logs = Some(logs);
        let prepared: Vec<String> =
            inner.txns.iter().filter(|(_, m)| matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort)).map(|(id, _)| id.clone()).collect();
        tracing::info!(transactional_ids = inner.txns.len(), prepared = prepared.len(), "loaded {TXN_TOPIC}");
        for id in prepared {
            if let Err(e) = self.complete(inner, b, &id) {
                tracing::error!(transactional_id = %id.escape_debug(), error = %e, "could not complete a prepared transaction; retrying later");
            }
        }
        Ok(())
    }

    /// Writes `meta` for `id` to its partition, then makes it current.
    fn persist(&self, inner: &mut Inner, id: &str, meta: TxnMeta) -> Result<(), KafkaError> {
        let logs = inner.logs.as_ref().ok_or(KafkaError::CoordinatorNotAvailable)?;
        let part = &logs[persist::partition_for(id, logs.len() as u32) as usize];
        if let Err(e) = persist::append(part, id, Some(&meta), now_ms()) {
            tracing::error!(transactional_id = %id.escape_debug(), error = %e, "could not write transaction state");
            return Err(KafkaError::CoordinatorNotAvailable);
        }
        if let Some(old) = inner.txns.get(id) {
            if old.producer_id != meta.producer_id {
                inner.by_producer.remove(&old.producer_id);
            }
        }
        inner.by_producer.insert(meta.producer_id, id.to_string());
        inner.txns.insert(id.to_string(), meta);
        Ok(())
    }

    /// Writes the markers of `id`'s prepared transaction and completes it.
    fn complete(&self, inner: &mut Inner, b: &Broker, id: &str) -> Result<(), KafkaError> {
        let meta = inner.txns.get(id).cloned().ok_or(KafkaError::InvalidTxnState)?;
        markers::write(b, &meta).map_err(|e| {
            tracing::error!(transactional_id = %id.escape_debug(), error = %e, "could not write transaction markers");
            KafkaError::CoordinatorNotAvailable
        })?;
        self.persist(inner, id, meta.completed(now_ms()))
    }

    /// Prepares `prepared` (a PrepareCommit/PrepareAbort state) and completes it.
    fn end(&self, inner: &mut Inner, b: &Broker, id: &str, prepared: TxnMeta) -> Result<(), KafkaError> {
        self.persist(inner, id, prepared)?;
        self.complete(inner, b, id)
    }

    /// InitProducerId with a transactional id: the producer id and the next epoch. An
    /// ongoing transaction is aborted first (fencing its producer); `expected` is the
    /// (id, epoch) a KIP-360 producer presents, which must be current or the last one.
    pub fn init_producer_id(&self, b: &Broker, id: &str, timeout_ms: i32, expected: Option<(i64, i16)>) -> Result<(i64, i16), KafkaError> {
        if id.is_empty() {
            return Err(KafkaError::InvalidRequest);
        }
        if timeout_ms <= 0 || timeout_ms > self.settings.max_timeout_ms {
            return Err(KafkaError::InvalidTransactionTimeout);
        }
        self.ensure_ready(b)?;
        let mut inner = self.lock();
        let fresh_id = || b.next_producer_id().map_err(|_| KafkaError::CoordinatorNotAvailable);
        let now = now_ms();
        let meta = match inner.txns.get(id) {
            Some(m) => m.clone(),
            None => TxnMeta::new(fresh_id()?, timeout_ms, now),
        };
        if let Some((pid, epoch)) = expected {
            if !meta.is_current_or_last(pid, epoch) {
                return Err(KafkaError::ProducerFenced);
            }
        }
        let meta = match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                self.complete(&mut inner, b, id).map_err(|_| KafkaError::ConcurrentTransactions)?;
                inner.txns[id].clone()
            }
            TxnState::Ongoing => {
                tracing::info!(transactional_id = %id.escape_debug(), "a new producer aborts the ongoing transaction");
                self.end(&mut inner, b, id, meta.fenced_abort(now)).map_err(|_| KafkaError::ConcurrentTransactions)?;
                inner.txns[id].clone()
            }
            _ => meta,
        };
        let next = meta.bumped(fresh_id, timeout_ms, now)?;
        let answer = (next.producer_id, next.producer_epoch);
        self.persist(&mut inner, id, next)?;
        Ok(answer)
    }

    /// AddPartitionsToTxn and AddOffsetsToTxn: adds `parts` to the ongoing transaction
    /// (starting one). With `verify_only` (v4+), only checks that they are in it.
    pub fn add_partitions(&self, id: &str, producer: (i64, i16), parts: &[(String, i32)], verify_only: bool) -> Result<(), KafkaError> {
        let mut inner = self.lock();
        let meta = inner.txns.get(id).ok_or(KafkaError::InvalidProducerIdMapping)?;
        meta.check_producer(producer.0, producer.1)?;
        if verify_only {
            let ok = meta.state == TxnState::Ongoing && parts.iter().all(|p| meta.partitions.contains(p));
            return if ok { Ok(()) } else { Err(KafkaError::InvalidTxnState) };
        }
        match meta.with_partitions(parts, now_ms())? {
            Some(next) => self.persist(&mut inner, id, next),
            None => Ok(()),
        }
    }

    /// EndTxn: commits or aborts the ongoing transaction (markers written before the
    /// answer). A retry of an end that completed succeeds.
    pub fn end_txn(&self, b: &Broker, id: &str, producer: (i64, i16), commit: bool) -> Result<(), KafkaError> {
        let mut inner = self.lock();
        let meta = inner.txns.get(id).ok_or(KafkaError::InvalidProducerIdMapping)?;
        meta.check_producer(producer.0, producer.1)?;
        match meta.prepare_end(commit, now_ms())? {
            Some(prepared) => self.end(&mut inner, b, id, prepared),
            None => Ok(()),
        }
    }

    /// Runs `f` (a client's transactional append to `topic`/`partition`) if the producer's
    /// transaction is ongoing with that partition in it; else the error to answer.
    pub fn with_verified_partition<T>(
        &self,
        producer: (i64, i16),
        topic: &str,
        partition: i32,
        f: impl FnOnce() -> T,
    ) -> Result<T, KafkaError> {
        let inner = self.lock();
        let meta = inner.by_producer.get(&producer.0).and_then(|id| inner.txns.get(id)).ok_or(KafkaError::InvalidTxnState)?;
        if producer.1 < meta.producer_epoch {
            return Err(KafkaError::InvalidProducerEpoch);
        }
        if producer.1 != meta.producer_epoch || meta.state != TxnState::Ongoing || !meta.partitions.contains(&(topic.to_string(), partition)) {
            return Err(KafkaError::InvalidTxnState);
        }
        Ok(f())
    }

    /// TxnOffsetCommit: runs `f` (the group coordinator's write) if the producer's
    /// transaction is ongoing and holds `__consumer_offsets` (AddOffsetsToTxn was done).
    pub fn with_offsets_txn<T>(
        &self,
        id: &str,
        producer: (i64, i16),
        offsets_partition: i32,
        f: impl FnOnce() -> Result<T, KafkaError>,
    ) -> Result<T, KafkaError> {
        let inner = self.lock();
        let meta = inner.txns.get(id).ok_or(KafkaError::InvalidProducerIdMapping)?;
        meta.check_producer(producer.0, producer.1)?;
        let offsets_partition = (crate::group::OFFSETS_TOPIC.to_string(), offsets_partition);
        if meta.state != TxnState::Ongoing || !meta.partitions.contains(&offsets_partition) {
            return Err(KafkaError::InvalidTxnState);
        }
        f()
    }

    /// A transactional id's state (DescribeTransactions).
    pub fn describe(&self, id: &str) -> Option<TxnMeta> {
        self.lock().txns.get(id).cloned()
    }

    /// Every transactional id and its state, sorted by id (ListTransactions).
    pub fn list(&self) -> Vec<Described> {
        let mut out: Vec<Described> = self.lock().txns.iter().map(|(id, m)| (id.clone(), m.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Transactions open now (ongoing or being completed), for `/metrics`.
    pub fn open_transactions(&self) -> usize {
        self.lock().txns.values().filter(|m| m.state.is_open()).count()
    }

    /// Aborts ongoing transactions older than their timeout, under a bumped epoch (the
    /// producer's next request is fenced), and retries prepared ones whose markers could
    /// not be written. Runs every `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub fn abort_timed_out(&self, b: &Broker) {
        let mut inner = self.lock();
        let now = now_ms();
        let due: Vec<(String, TxnMeta)> = inner
            .txns
            .iter()
            .filter(|(_, m)| m.timed_out(now) || matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort))
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect();
        for (id, meta) in due {
            let done = if meta.state == TxnState::Ongoing {
                tracing::info!(transactional_id = %id.escape_debug(), timeout_ms = meta.timeout_ms, "aborting a transaction that timed out");
                self.end(&mut inner, b, &id, meta.fenced_abort(now))
            } else {
                self.complete(&mut inner, b, &id)
            };
            if let Err(e) = done {
                tracing::warn!(transactional_id = %id.escape_debug(), error = ?e, "could not abort or complete a transaction; retrying later");
            }
        }
    }

    /// Forgets transactional ids idle for `transactional.id.expiration.ms` with no open
    /// transaction (a tombstone each). Runs every
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    pub fn expire_ids(&self) {
        let mut inner = self.lock();
        let now = now_ms();
        let ttl = self.settings.id_expiration_ms;
        let expired: Vec<String> = inner
            .txns
            .iter()
            .filter(|(_, m)| !m.state.is_open() && now.saturating_sub(m.txn_last_update_timestamp) >= ttl)
            .map(|(id, _)| id.clone())
            .collect();
        let Some(logs) = inner.logs.clone() else { return };
        for id in expired {
            let part = &logs[persist::partition_for(&id, logs.len() as u32) as usize];
            if let Err(e) = persist::append(part, &id, None, now) {
                tracing::error!(error = %e, "could not expire a transactional id");
                continue;
            }
            if let Some(m) = inner.txns.remove(&id) {
                inner.by_producer.remove(&m.producer_id);
            }
            tracing::info!(transactional_id = %id.escape_debug(), "expired an idle transactional id");
        }
    }
}
