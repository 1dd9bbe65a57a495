//! The transaction coordinator (KIP-98; Kafka's `TransactionCoordinator` and
//! `TransactionStateManager`). For every transactional id it keeps a [`TxnMeta`] in the
//! internal compacted topic `__transaction_state` (`transaction.state.log.num.partitions`
//! partitions, created at the first transactional request, as Kafka does); the coordinator
//! of an id is the leader of the partition the id hashes to (Kafka's `abs(hashCode) %
//! partitions`) — on one broker, this broker. A broker loads a partition's transactions
//! when it becomes its leader ([`TxnCoordinator::elect`]) and drops them when it stops
//! ([`TxnCoordinator::resign`]); requests for them meanwhile get NOT_COORDINATOR or
//! COORDINATOR_LOAD_IN_PROGRESS, and clients look the coordinator up again.
//!
//! Every change is written to `__transaction_state` as the partition's leader and takes
//! effect (and is answered) only once the partition's in-sync replicas have it. Ending a
//! transaction is: `PrepareCommit`/`PrepareAbort` written, then a marker (control batch)
//! appended to every partition of the transaction by its leader (`markers`: here, or
//! through WriteTxnMarkers to the broker that leads it) with the coordinator epoch (the
//! leader epoch of the id's `__transaction_state` partition), then
//! `CompleteCommit`/`CompleteAbort` written. EndTxn is answered once the markers are
//! written, or — if some partition cannot take its marker for a while — once the decision
//! is written, as Kafka answers; the rest is retried every
//! `transaction.abort.timed.out.transaction.cleanup.interval.ms`. A new coordinator finishes
//! the prepared transactions it loads (a second marker is harmless). An ongoing
//! transaction is left to its producer or to its `transaction.timeout.ms`, after which the
//! coordinator aborts it under a bumped epoch, fencing the producer; InitProducerId on an
//! id with an ongoing transaction does the same before handing out the next epoch.
//!
//! Transaction changes, the transactional appends of clients checked against the
//! transaction (KIP-890's verification, when this broker coordinates the producer's
//! transactional id) and TxnOffsetCommit run under one lock, so no checked batch of a
//! transaction can land after its marker; the markers themselves are written outside it,
//! by one writer per transactional id. In cluster mode a transactional append to a
//! partition whose producer is coordinated by another broker is checked only by the
//! partition's producer state (epochs and coordinator epochs of markers), as Kafka without
//! `transaction.partition.verification.enable`. Its methods block (they append to logs and
//! wait for replicas): handlers call them on a blocking thread. Lock order: this lock, then
//! the group coordinator's, then a partition log's.
//!
//! Submodules: `state` (a transaction's states and rules), `persist` (records in
//! `__transaction_state`), `markers` (writing the markers, here and on other brokers).

mod markers;
mod persist;
mod state;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use markers::{append as append_marker, replicated as marker_replicated, Decision, REPLICATION_TIMEOUT as MARKER_REPLICATION_TIMEOUT};
pub use persist::TXN_TOPIC;
pub use state::{TxnMeta, TxnState};

use crate::errors::KafkaError;
use crate::group::WriteError;
use crate::now_ms;
use crate::partition::{Partition, WaitError};
use crate::state::{Broker, StateError};

/// The transaction settings of the broker config, read once.
#[derive(Debug, Clone)]
struct Settings {
    partitions: u32,
    replication_factor: Option<usize>,
    min_isr: usize,
    max_timeout_ms: i32,
    id_expiration_ms: i64,
}

/// A `__transaction_state` partition this broker leads: being loaded (in this leader
/// epoch), or loaded.
enum Slot {
    Loading(i32),
    Loaded { epoch: i32, log: Arc<Partition> },
}

#[derive(Default)]
struct Inner {
    /// The transactions of the loaded partitions (and, until they are loaded again, of
    /// partitions this broker stopped leading: [`TxnCoordinator::owner`] tells them apart).
    txns: HashMap<String, TxnMeta>,
    /// Producer id → transactional id.
    by_producer: HashMap<i64, String>,
    /// Transactional ids whose markers are being written (one writer each).
    finishing: HashSet<String>,
}

/// The coordinator's view of the partition holding a transactional id.
struct Owner {
    index: i32,
    /// Its leader epoch: the coordinator epoch of markers.
    epoch: i32,
    log: Arc<Partition>,
}

/// A prepared transaction to finish: markers, then the completed state.
struct Prepared {
    id: String,
    meta: TxnMeta,
    owner: (i32, i32),
}

pub struct TxnCoordinator {
    inner: Mutex<Inner>,
    /// Partitions of `__transaction_state` (0: not created yet).
    count: AtomicI32,
    /// The partitions this broker leads. Apart from `inner` and never held while waiting,
    /// so the publisher (elections, resignations) never waits for a transaction's writes.
    slots: Mutex<HashMap<i32, Slot>>,
    /// Held while a single node creates and loads `__transaction_state`.
    creating: Mutex<()>,
    settings: Settings,
    clustered: bool,
}

/// A transactional id's answer to DescribeTransactions / ListTransactions.
pub type Described = (String, TxnMeta);

impl TxnCoordinator {
    pub fn new(config: &crate::BrokerConfig, clustered: bool) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            count: AtomicI32::new(0),
            slots: Mutex::new(HashMap::new()),
            creating: Mutex::new(()),
            settings: Settings {
                partitions: config.transaction_state_partitions(),
                replication_factor: config.transaction_state_replication_factor(),
                min_isr: config.transaction_state_min_isr(),
                max_timeout_ms: config.transaction_max_timeout_ms(),
                id_expiration_ms: config.transactional_id_expiration_ms(),
            },
            clustered,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<i32, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `__transaction_state` has `n` partitions (cluster mode: from the image).
    pub fn set_partition_count(&self, n: i32) {
        self.count.store(n, Ordering::SeqCst);
    }

    /// The loaded partition that coordinates `id`, or why this broker cannot answer for it.
    fn owner(&self, id: &str) -> Result<Owner, KafkaError> {
        let count = self.count.load(Ordering::SeqCst);
        if count <= 0 {
            return Err(KafkaError::NotCoordinator);
        }
        let index = persist::partition_for(id, count as u32);
        match self.slots().get(&index) {
            Some(Slot::Loaded { epoch, log }) => Ok(Owner { index, epoch: *epoch, log: log.clone() }),
            Some(Slot::Loading(_)) => Err(KafkaError::CoordinatorLoadInProgress),
            None => Err(KafkaError::NotCoordinator),
        }
    }

    /// Single node: loads `__transaction_state` if it exists (this broker leads every
    /// partition), finishing transactions a crash left prepared. Called once the group
    /// coordinator is loaded.
    pub fn load_if_present(&self, b: &Broker) -> Result<(), StateError> {
        match b.topic(TXN_TOPIC) {
            Some(t) => self.load_all(b, t.partitions),
            None => Ok(()),
        }
    }

    fn load_all(&self, b: &Broker, partitions: u32) -> Result<(), StateError> {
        self.set_partition_count(partitions as i32);
        for p in 0..partitions as i32 {
            let log = b.partition(TXN_TOPIC, p).ok_or_else(|| StateError::UnknownTopic(format!("{TXN_TOPIC} (a partition is offline)")))?;
            self.elect(b, p, 0, log)?;
        }
        Ok(())
    }

    /// Makes sure `__transaction_state` exists (FindCoordinator and InitProducerId for a
    /// transactional id): in cluster mode `transaction.state.log.num.partitions` partitions
    /// of `transaction.state.log.replication.factor` replicas (unset: 3, or the live
    /// brokers if fewer), whose leaders load them; on a single node created and loaded
    /// here. COORDINATOR_NOT_AVAILABLE if it cannot be.
    pub fn ensure_ready(&self, b: &Broker) -> Result<(), KafkaError> {
        let ready = if let Some(c) = b.cluster() {
            if b.topic(TXN_TOPIC).is_some() {
                return Ok(());
            }
            let rf = self.settings.replication_factor.unwrap_or_else(|| c.live_brokers().len().clamp(1, 3));
            let configs = BTreeMap::from([
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("min.insync.replicas".to_string(), self.settings.min_isr.min(rf).to_string()),
            ]);
            self.create(b, rf, configs)
        } else {
            let _creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
            if !self.slots().is_empty() {
                return Ok(());
            }
            let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
            self.create(b, 1, configs).and_then(|()| self.load_if_present(b))
        };
        ready.map_err(|e| {
            tracing::error!(error = %e, "the transaction coordinator cannot start");
            KafkaError::CoordinatorNotAvailable
        })
    }

    fn create(&self, b: &Broker, rf: usize, configs: BTreeMap<String, String>) -> Result<(), StateError> {
        if b.topic(TXN_TOPIC).is_some() {
            return Ok(());
        }
        let partitions = self.settings.partitions;
        match b.create_replicated_topic(TXN_TOPIC, partitions, rf, configs) {
            Ok(_) => {
                tracing::info!(topic = TXN_TOPIC, partitions, replication_factor = rf, "created the internal topic");
                Ok(())
            }
            Err(StateError::TopicExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// This broker leads `__transaction_state` partition `index` in leader epoch `epoch`:
    /// replays its log (blocking I/O; requests for its ids meanwhile get
    /// COORDINATOR_LOAD_IN_PROGRESS), starts answering for its transactional ids, and
    /// finishes the transactions it finds prepared.
    pub fn elect(&self, b: &Broker, index: i32, epoch: i32, log: Arc<Partition>) -> Result<(), runnel_storage::StorageError> {
        {
            let mut slots = self.slots();
            if matches!(slots.get(&index), Some(Slot::Loaded { epoch: e, .. }) if *e == epoch) {
                return Ok(());
            }
            slots.insert(index, Slot::Loading(epoch));
        }
        let started = std::time::Instant::now();
        let replayed = persist::replay(&log);
        let prepared: Vec<Prepared> = {
            let mut inner = self.lock();
            let mut slots = self.slots();
            if !matches!(slots.get(&index), Some(Slot::Loading(e)) if *e == epoch) {
                return Ok(());
            }
            let txns = match replayed {
                Ok(t) => t,
                Err(e) => {
                    slots.remove(&index);
                    return Err(e);
                }
            };
            // What an earlier leadership of this partition left.
            let partitions = self.count.load(Ordering::SeqCst).max(1) as u32;
            let stale: Vec<String> = inner.txns.keys().filter(|id| persist::partition_for(id, partitions) == index).cloned().collect();
            for id in stale {
                if let Some(m) = inner.txns.remove(&id) {
                    inner.by_producer.remove(&m.producer_id);
                }
            }
            let count = txns.len();
            let mut prepared = Vec::new();
            for (id, meta) in txns {
                if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
                    prepared.push(Prepared { id: id.clone(), meta: meta.clone(), owner: (index, epoch) });
                }
                inner.by_producer.insert(meta.producer_id, id.clone());
                inner.txns.insert(id, meta);
            }
            slots.insert(index, Slot::Loaded { epoch, log });
            tracing::info!(
                partition = index,
                epoch,
                transactional_ids = count,
                prepared = prepared.len(),
                ms = started.elapsed().as_millis() as u64,
                "coordinating the transactions of {TXN_TOPIC}"
            );
            prepared
        };
        for p in prepared {
            let id = p.id.clone();
            if let Err(e) = self.finish(b, p) {
                tracing::warn!(transactional_id = %id.escape_debug(), error = ?e, "could not complete a prepared transaction; retrying later");
            }
        }
        Ok(())
    }

    /// This broker no longer leads `__transaction_state` partition `index`: requests for
    /// its transactional ids get NOT_COORDINATOR (their states are replaced at the next
    /// load). Never waits for the coordinator's lock (the publisher calls it).
    pub fn resign(&self, index: i32) {
        if self.slots().remove(&index).is_some() {
            tracing::info!(partition = index, "no longer coordinating the transactions of {TXN_TOPIC}");
        }
    }

    /// Writes `meta` for `id` to its partition as its leader, waits for the in-sync
    /// replicas, then makes it current. Errors as Kafka's `appendTransactionToLog` maps
    /// them: leadership lost → NOT_COORDINATOR; too few in-sync replicas, a timeout or a
    /// storage failure → COORDINATOR_NOT_AVAILABLE (both retriable).
    fn persist(&self, inner: &mut Inner, id: &str, meta: TxnMeta) -> Result<(), KafkaError> {
        let owner = self.owner(id)?;
        write_replicated(&owner.log, id, Some(&meta))?;
        if let Some(old) = inner.txns.get(id) {
            if old.producer_id != meta.producer_id {
                inner.by_producer.remove(&old.producer_id);
            }
        }
        inner.by_producer.insert(meta.producer_id, id.to_string());
        inner.txns.insert(id.to_string(), meta);
        Ok(())
    }

    /// Writes the markers of a prepared transaction (without the lock) and completes it,
    /// unless it changed meanwhile or another writer is on it (then Ok: that one finishes).
    fn finish(&self, b: &Broker, p: Prepared) -> Result<(), KafkaError> {
        {
            let mut inner = self.lock();
            if inner.txns.get(&p.id) != Some(&p.meta) || !inner.finishing.insert(p.id.clone()) {
                return Ok(());
            }
        }
        let (index, epoch) = p.owner;
        let still = || matches!(self.slots().get(&index), Some(Slot::Loaded { epoch: e, .. }) if *e == epoch);
        let written = markers::write(b, &p.meta, epoch, &still);
        let mut inner = self.lock();
        inner.finishing.remove(&p.id);
        written?;
        if inner.txns.get(&p.id) != Some(&p.meta) {
            return Ok(());
        }
        self.persist(&mut inner, &p.id, p.meta.completed(now_ms()))
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
        let fresh_id = || b.next_producer_id().map_err(|_| KafkaError::CoordinatorNotAvailable);
        // At most: finish the previous transaction (or abort the ongoing one), then bump.
        for _ in 0..3 {
            let mut inner = self.lock();
            let owner = self.owner(id)?;
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
            let prepared = match meta.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort => meta,
                TxnState::Ongoing => {
                    tracing::info!(transactional_id = %id.escape_debug(), "a new producer aborts the ongoing transaction");
                    let fenced = meta.fenced_abort(now);
                    self.persist(&mut inner, id, fenced.clone()).map_err(|_| KafkaError::ConcurrentTransactions)?;
                    fenced
                }
                _ => {
                    let next = meta.bumped(fresh_id, timeout_ms, now)?;
                    let answer = (next.producer_id, next.producer_epoch);
                    self.persist(&mut inner, id, next)?;
                    return Ok(answer);
                }
            };
            drop(inner);
            let p = Prepared { id: id.to_string(), meta: prepared, owner: (owner.index, owner.epoch) };
            self.finish(b, p).map_err(|_| KafkaError::ConcurrentTransactions)?;
        }
        Err(KafkaError::ConcurrentTransactions)
    }

    /// AddPartitionsToTxn and AddOffsetsToTxn: adds `parts` to the ongoing transaction
    /// (starting one). With `verify_only` (v4+), only checks that they are in it.
    pub fn add_partitions(&self, id: &str, producer: (i64, i16), parts: &[(String, i32)], verify_only: bool) -> Result<(), KafkaError> {
        let mut inner = self.lock();
        self.owner(id)?;
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

    /// EndTxn: commits or aborts the ongoing transaction (the decision written, then the
    /// markers, before the answer; markers that cannot be written now are retried later).
    /// A retry of an end that completed succeeds.
    pub fn end_txn(&self, b: &Broker, id: &str, producer: (i64, i16), commit: bool) -> Result<(), KafkaError> {
        let p = {
            let mut inner = self.lock();
            let owner = self.owner(id)?;
            let meta = inner.txns.get(id).ok_or(KafkaError::InvalidProducerIdMapping)?;
            meta.check_producer(producer.0, producer.1)?;
            let Some(prepared) = meta.prepare_end(commit, now_ms())? else { return Ok(()) };
            self.persist(&mut inner, id, prepared.clone())?;
            Prepared { id: id.to_string(), meta: prepared, owner: (owner.index, owner.epoch) }
        };
        if let Err(e) = self.finish(b, p) {
            tracing::info!(transactional_id = %id.escape_debug(), error = ?e, "transaction decided; its markers are retried later");
        }
        Ok(())
    }

    /// Runs `f` (a client's transactional append to `topic`/`partition`) if the producer's
    /// transaction is ongoing with that partition in it; else the error to answer. In
    /// cluster mode a producer this broker does not coordinate is left to the partition's
    /// producer state.
    pub fn with_verified_partition<T>(
        &self,
        producer: (i64, i16),
        topic: &str,
        partition: i32,
        f: impl FnOnce() -> T,
    ) -> Result<T, KafkaError> {
        let inner = self.lock();
        let Some(id) = inner.by_producer.get(&producer.0).filter(|id| self.owner(id).is_ok()) else {
            return if self.clustered { Ok(f()) } else { Err(KafkaError::InvalidTxnState) };
        };
        let meta = inner.txns.get(id).ok_or(KafkaError::InvalidTxnState)?;
        if producer.1 < meta.producer_epoch {
            return Err(KafkaError::InvalidProducerEpoch);
        }
        if producer.1 != meta.producer_epoch || meta.state != TxnState::Ongoing || !meta.partitions.contains(&(topic.to_string(), partition)) {
            return Err(KafkaError::InvalidTxnState);
        }
        Ok(f())
    }

    /// TxnOffsetCommit: runs `f` (the group coordinator's write) if the producer's
    /// transaction is ongoing and holds `__consumer_offsets` (AddOffsetsToTxn was done). In
    /// cluster mode, when another broker coordinates `id`, the offsets partition's producer
    /// state checks the producer instead.
    pub fn with_offsets_txn<T>(
        &self,
        id: &str,
        producer: (i64, i16),
        offsets_partition: i32,
        f: impl FnOnce() -> Result<T, KafkaError>,
    ) -> Result<T, KafkaError> {
        let inner = self.lock();
        if self.clustered && self.owner(id).is_err() {
            drop(inner);
            return f();
        }
        let meta = inner.txns.get(id).ok_or(KafkaError::InvalidProducerIdMapping)?;
        meta.check_producer(producer.0, producer.1)?;
        let offsets_partition = (crate::group::OFFSETS_TOPIC.to_string(), offsets_partition);
        if meta.state != TxnState::Ongoing || !meta.partitions.contains(&offsets_partition) {
            return Err(KafkaError::InvalidTxnState);
        }
        f()
    }

    /// A transactional id's state (DescribeTransactions): NOT_COORDINATOR /
    /// COORDINATOR_LOAD_IN_PROGRESS if this broker does not coordinate it now,
    /// TRANSACTIONAL_ID_NOT_FOUND if it is unknown.
    pub fn describe(&self, id: &str) -> Result<TxnMeta, KafkaError> {
        let inner = self.lock();
        if self.clustered {
            self.owner(id)?;
        }
        inner.txns.get(id).cloned().ok_or(KafkaError::TransactionalIdNotFound)
    }

    /// Every transactional id this broker coordinates and its state, sorted by id
    /// (ListTransactions).
    pub fn list(&self) -> Vec<Described> {
        let mut out: Vec<Described> =
            self.lock().txns.iter().filter(|(id, _)| self.owner(id).is_ok()).map(|(id, m)| (id.clone(), m.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Transactions open now (ongoing or being completed), for `/metrics`.
    pub fn open_transactions(&self) -> usize {
        self.lock().txns.iter().filter(|(id, m)| m.state.is_open() && self.owner(id).is_ok()).count()
    }

    /// Aborts ongoing transactions older than their timeout, under a bumped epoch (the
    /// producer's next request is fenced), and finishes prepared ones whose markers are
    /// not all written. Runs every `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub fn abort_timed_out(&self, b: &Broker) {
        let work: Vec<Prepared> = {
            let mut inner = self.lock();
            let now = now_ms();
            let due: Vec<(String, TxnMeta)> = inner
                .txns
                .iter()
                .filter(|(id, m)| {
                    (m.timed_out(now) || matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort)) && !inner.finishing.contains(*id)
                })
                .map(|(id, m)| (id.clone(), m.clone()))
                .collect();
            let mut work = Vec::new();
            for (id, meta) in due {
                let Ok(owner) = self.owner(&id) else { continue };
                let meta = if meta.state == TxnState::Ongoing {
                    tracing::info!(transactional_id = %id.escape_debug(), timeout_ms = meta.timeout_ms, "aborting a transaction that timed out");
                    let fenced = meta.fenced_abort(now);
                    if let Err(e) = self.persist(&mut inner, &id, fenced.clone()) {
                        tracing::warn!(transactional_id = %id.escape_debug(), error = ?e, "could not abort a transaction; retrying later");
                        continue;
                    }
                    fenced
                } else {
                    meta
                };
                work.push(Prepared { id, meta, owner: (owner.index, owner.epoch) });
            }
            work
        };
        for p in work {
            let id = p.id.clone();
            if let Err(e) = self.finish(b, p) {
                tracing::warn!(transactional_id = %id.escape_debug(), error = ?e, "could not complete a transaction; retrying later");
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
        for id in expired {
            let Ok(owner) = self.owner(&id) else { continue };
            if let Err(e) = write_replicated(&owner.log, &id, None) {
                tracing::error!(error = ?e, "could not expire a transactional id");
                continue;
            }
            if let Some(m) = inner.txns.remove(&id) {
                inner.by_producer.remove(&m.producer_id);
            }
            tracing::info!(transactional_id = %id.escape_debug(), "expired an idle transactional id");
        }
    }
}

/// Appends `id`'s state (None: a tombstone) as the partition's leader and waits (blocking)
/// until its in-sync replicas have it (immediate on a single node).
fn write_replicated(log: &Partition, id: &str, meta: Option<&TxnMeta>) -> Result<(), KafkaError> {
    let offset = persist::append(log, id, meta).map_err(|e| match e {
        WriteError::NotLeader => KafkaError::NotCoordinator,
        WriteError::NotEnoughReplicas => KafkaError::CoordinatorNotAvailable,
        WriteError::ProducerFenced => KafkaError::CoordinatorNotAvailable,
        WriteError::Storage(e) => {
            tracing::error!(transactional_id = %id.escape_debug(), error = %e, "could not write transaction state");
            KafkaError::CoordinatorNotAvailable
        }
    })?;
    if !log.is_replicated() {
        return Ok(());
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return Err(KafkaError::CoordinatorNotAvailable);
    };
    match rt.block_on(log.wait_replicated(offset, markers::REPLICATION_TIMEOUT)) {
        Ok(true) => Ok(()),
        Ok(false) | Err(WaitError::TimedOut) => Err(KafkaError::CoordinatorNotAvailable),
        Err(WaitError::NotLeader) => Err(KafkaError::NotCoordinator),
    }
}
