//! One partition as the broker holds it: its log (behind a lock), its topic settings, the
//! fetch waiters parked on it, and (cluster mode) its replica state: leader or follower,
//! leader epoch, ISR, followers' log ends and the high watermark (see [`crate::replica`]).
//! On a single node there is no replica state: the broker leads alone and the high
//! watermark is the log end.
//!
//! Invariant: a waiter registered before a read that found too little data is woken by
//! the next change it waits for (it registers first, then reads, then waits), so no
//! change is missed. Followers' fetches wait for appends; consumers' fetches and acks=all
//! produces wait for the high watermark to move. Registering is O(1) (an entry in
//! `Notify`'s intrusive list, removed when dropped), whatever the number of waiters.
//!
//! No fsync runs under the log's lock (which Produce and Fetch take): flushes plan under
//! it, sync without it and finish under it ([`Partition::flush`]); a compaction commits
//! its files without it. Work that deletes or replaces closed segments (retention,
//! DeleteRecords, compaction's install, retiring a deleted partition) is serialized by
//! the `maintenance` lock instead, always taken before the log's lock, never after.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use runnel_controller::types::PartitionAssignment;
use runnel_protocol::batch::BatchHeader;
use runnel_storage::{AppendOrigin, LeaderEpochCache, PartitionLog, StorageError};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::replica::{IsrProposal, ReplicaState, RoleChange};
use crate::topic_config::TopicSettings;

pub struct Partition {
    pub topic: String,
    pub index: i32,
    log: Mutex<PartitionLog>,
    maintenance: Mutex<()>,
    settings: RwLock<TopicSettings>,
    appended: Notify,
    hw_moved: Notify,
    /// None on a single node. Lock order: `replica`, then `epochs`, then `log`.
    replica: Mutex<Option<ReplicaState>>,
    /// The leader-epoch checkpoint (cluster mode; loaded with the first assignment).
    epochs: Mutex<Option<LeaderEpochCache>>,
    /// The leader epoch this broker leads in, -1 when it does not: set with each
    /// assignment, read under the log's lock by appends as leader (see
    /// [`Self::append_as_leader`]).
    leading: AtomicI32,
    /// Held by the produce path's flush for `flush.messages` while it runs, so that the
    /// appends made meanwhile wait for it and then flush only if still due (group commit).
    flush_gate: tokio::sync::Mutex<()>,
}

pub use crate::replica::{NotServing, WaitError};

/// What [`Partition::append_as_follower`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerAppend {
    /// Appended; `flush.messages` says to flush now.
    Appended { flush_due: bool },
    /// The fetcher was cancelled: nothing appended.
    Cancelled,
    /// The log end is no longer the fetch offset: nothing appended.
    Moved,
}

impl Partition {
    pub fn new(topic: String, index: i32, mut log: PartitionLog, settings: TopicSettings) -> Self {
        log.defer_flushes();
        Self {
            topic,
            index,
            log: Mutex::new(log),
            maintenance: Mutex::new(()),
            settings: RwLock::new(settings),
            appended: Notify::new(),
            hw_moved: Notify::new(),
            replica: Mutex::new(None),
            epochs: Mutex::new(None),
            leading: AtomicI32::new(-1),
            flush_gate: tokio::sync::Mutex::new(()),
        }
    }

    /// Held while closed segments are deleted or replaced (see the module docs); take it
    /// before [`log`](Self::log), never while holding it.
    pub fn maintenance(&self) -> MutexGuard<'_, ()> {
        self.maintenance.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Flushes the log, holding its lock only to plan and to finish, not across the
    /// fsyncs. Blocking: call it off the async workers.
    pub fn flush(&self) -> Result<(), StorageError> {
        let job = self.log().begin_flush()?;
        failpoint_flush_delay();
        let ran = job.run();
        self.log().finish_flush(job, ran)
    }

    /// After an append that reached `flush.messages`: flushes on the blocking pool, once a
    /// flush of the produce path already under way has ended, and only if the count is still
    /// reached then (the appends made during one fsync share the next). The append's answer
    /// waits for this; the log's lock is free meanwhile, so appends and fetches go on, and
    /// the fetches see the data at once, as in Kafka (the high watermark does not wait for
    /// fsyncs).
    pub async fn flush_if_due(self: std::sync::Arc<Self>) -> Result<(), StorageError> {
        let _gate = self.flush_gate.lock().await;
        if !self.log().flush_due_by_count() {
            return Ok(());
        }
        let p = self.clone();
        crate::handlers::blocking(move || p.flush()).await
    }

    /// [`flush`](Self::flush) if `flush.ms` has passed with data unflushed.
    pub fn maybe_flush(&self) -> Result<(), StorageError> {
        let due = self.log().flush_due_by_time();
        if due {
            self.flush()?;
        }
        Ok(())
    }

    /// The log, locked. Hold it only for one storage call.
    pub fn log(&self) -> MutexGuard<'_, PartitionLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn replica(&self) -> MutexGuard<'_, Option<ReplicaState>> {
        self.replica.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn settings(&self) -> TopicSettings {
        self.settings.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_settings(&self, settings: TopicSettings) {
        self.log().set_config(settings.log.clone());
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
    }

    /// A future that completes at the next append (`follower`: a replica's fetch) or the
    /// next move of the high watermark (a consumer's fetch): registered as it is created,
    /// so a change between this call and the first poll is not missed.
    pub fn next_change(&self, follower: bool) -> Notified<'_> {
        if follower {
            self.appended.notified()
        } else {
            self.hw_moved.notified()
        }
    }

    /// Wakes every fetch parked on this partition (deletion).
    pub fn wake_waiters(&self) {
        self.appended.notify_waiters();
        self.hw_moved.notify_waiters();
    }

    /// After an append as leader (or on a single node): wakes followers' fetches, and
    /// consumers' if the high watermark moved (a leader alone in its ISR).
    pub fn on_append(&self) {
        self.appended.notify_waiters();
        let moved = match self.replica().as_mut() {
            None => true,
            Some(r) => {
                let leo = self.log().log_end_offset();
                r.update_hw(leo)
            }
        };
        if moved {
            self.hw_moved.notify_waiters();
        }
    }

    /// Whether the partition has replica state (cluster mode): writes then wait for the
    /// in-sync replicas.
    pub fn is_replicated(&self) -> bool {
        self.replica().is_some()
    }

    /// The high watermark: what consumers may read below (single node: the log end).
    pub fn high_watermark(&self) -> i64 {
        let leo = self.log().log_end_offset();
        self.replica().as_ref().map_or(leo, |r| r.hw.min(leo))
    }

    /// Checks that this broker leads, against the request's leader epoch (-1: none
    /// given). Returns our leader epoch.
    pub fn check_leader(&self, requested_epoch: i32) -> Result<i32, NotServing> {
        self.replica().as_ref().map_or(Ok(0), |r| r.check_leader(requested_epoch))
    }

    /// Before a produce: this broker must lead, and for acks=all the ISR must hold at
    /// least `min.insync.replicas`. Returns the leader epoch to stamp on the batches
    /// (None on a single node: batches are kept as sent).
    pub fn check_produce(&self, acks: i16) -> Result<Option<i32>, NotServing> {
        let min_insync = self.settings().min_insync_replicas;
        self.replica().as_ref().map(|r| r.check_produce(acks, min_insync)).transpose()
    }

    /// Runs `append` on the log (locked) if this broker still leads in `epoch` (from
    /// [`Self::check_produce`]; None on a single node: always). Leadership can move between
    /// that check and the append (the append may wait for a blocking thread); checked again
    /// under the log's lock, which the follower's cut of the log also takes, an append as
    /// leader can never land in a follower's log (found by the cluster simulation).
    pub fn append_as_leader<R>(&self, epoch: Option<i32>, append: impl FnOnce(&mut PartitionLog) -> R) -> Result<R, NotServing> {
        let mut log = self.log();
        if epoch.is_some_and(|e| self.leading.load(Ordering::SeqCst) != e) {
            drop(log);
            return Err(self.check_leader(-1).err().unwrap_or(NotServing::FencedEpoch));
        }
        Ok(append(&mut log))
    }

    /// acks=all: waits until the high watermark passes `offset` (every ISR member has it).
    /// Err when leadership is lost or `timeout` passes first; Ok(false) when the ISR
    /// shrank below `min.insync.replicas` meanwhile (NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    pub async fn wait_replicated(&self, offset: i64, timeout: Duration) -> Result<bool, WaitError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let moved = self.hw_moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            let min_insync = self.settings().min_insync_replicas;
            match self.replica().as_ref().map(|r| r.replicated(offset, min_insync)) {
                None => return Ok(true),
                Some(Some(done)) => return done,
                Some(None) => {}
            }
            if tokio::time::timeout_at(deadline, moved).await.is_err() {
                return Err(WaitError::TimedOut);
            }
        }
    }

    /// Cluster mode, just opened: no leader until the assignment arrives, so nothing is
    /// served as if this were a single node. The high watermark starts at `stored` (from
    /// `replication-offset-checkpoint`, capped at the log end) or else the log start.
    pub fn await_assignment(&self, me: i32, stored: Option<i64>) {
        let hw = {
            let log = self.log();
            stored.map_or(log.log_start_offset(), |h| h.min(log.log_end_offset()).max(log.log_start_offset()))
        };
        self.replica().get_or_insert_with(|| ReplicaState::new(me, hw));
    }

    /// The replica's high watermark to checkpoint (None on a single node).
    pub fn checkpoint_hw(&self) -> Option<i64> {
        let guard = self.replica();
        let r = guard.as_ref()?;
        Some(r.hw.min(self.log().log_end_offset()))
    }

    /// Takes the committed assignment (the publisher): sets the replica state, returns
    /// what the broker must do about the role.
    pub fn assign(&self, a: &PartitionAssignment, me: i32) -> RoleChange {
        let mut guard = self.replica();
        let (start, leo) = {
            let log = self.log();
            (log.log_start_offset(), log.log_end_offset())
        };
        // Opened partitions start from the stored high watermark (`await_assignment`).
        let r = guard.get_or_insert_with(|| ReplicaState::new(me, start));
        let hw = r.hw;
        let change = r.assign(a, leo, Instant::now());
        self.leading.store(if r.is_leader() { r.leader_epoch } else { -1 }, Ordering::SeqCst);
        let moved = r.hw != hw;
        drop(guard);
        // A new leader's epoch starts at its log end (fsynced; no request waits on it).
        let mut epochs = self.epochs();
        if let Some(cache) = epochs.as_mut() {
            if change == RoleChange::BecameLeader {
                if let Err(e) = cache.assign(a.leader_epoch, leo) {
                    tracing::error!(topic = %self.topic, partition = self.index, error = %e, "could not write the leader-epoch checkpoint");
                }
            }
        }
        drop(epochs);
        // Waiters re-check (a lost leadership fails acks=all waits; a moved hw answers).
        if moved || change != RoleChange::None {
            self.wake_waiters();
        }
        change
    }

    /// The leader-epoch checkpoint, loaded on first use (blocking I/O).
    fn epochs(&self) -> MutexGuard<'_, Option<LeaderEpochCache>> {
        let mut guard = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let dir = self.log().dir().to_path_buf();
            match LeaderEpochCache::open(&dir) {
                Ok(c) => *guard = Some(c),
                Err(e) => tracing::error!(topic = %self.topic, partition = self.index, error = %e, "cannot read the leader-epoch checkpoint"),
            }
        }
        guard
    }

    /// Where leader epoch `requested` ends in this log (OffsetForLeaderEpoch): the largest
    /// known epoch `<=` it and its end offset (see `LeaderEpochCache::end_offset_for`). A
    /// single node writes no epochs: its one epoch (0) ends at the log end.
    pub fn epoch_end(&self, requested: i32) -> (i32, i64) {
        if self.replica().is_none() {
            let leo = self.log().log_end_offset();
            return if requested == 0 { (0, leo) } else { runnel_storage::leader_epoch::UNDEFINED };
        }
        let epochs = self.epochs();
        let leo = self.log().log_end_offset();
        epochs.as_ref().map_or(runnel_storage::leader_epoch::UNDEFINED, |c| c.end_offset_for(requested, leo))
    }

    /// The latest leader epoch in this replica's log, if any is known.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs().as_ref().and_then(LeaderEpochCache::latest_epoch)
    }

    /// Follower: cuts the log back to `offset` (see `PartitionLog::truncate_to`) and the
    /// leader epochs with it, unless `cancelled()` (the fetcher was stopped for a new epoch:
    /// None), checked under the locks, as for [`Self::append_as_follower`] (blocking I/O).
    pub fn truncate_as_follower(&self, offset: i64, cancelled: impl Fn() -> bool) -> Result<Option<i64>, StorageError> {
        let _maintenance = self.maintenance();
        let mut epochs = self.epochs();
        let end = {
            let mut log = self.log();
            if cancelled() {
                return Ok(None);
            }
            log.truncate_to(offset)?;
            log.log_end_offset()
        };
        if let Some(c) = epochs.as_mut() {
            c.truncate_from_end(end)?;
        }
        Ok(Some(end))
    }

    /// Follower: appends the leader's batches `buf` (read at `fetch_offset`, written in
    /// these `(leader epoch, base offset)`s) and records their epochs, unless `cancelled()`
    /// (the fetcher was stopped for a new epoch) or the log end moved. Both are checked, and
    /// the epochs recorded, under the epochs' and the log's locks, which a truncation also
    /// takes: an append either lands before a truncation or not at all (blocking I/O).
    pub fn append_as_follower(
        &self,
        fetch_offset: i64,
        buf: &mut [u8],
        batches: &[(i32, i64)],
        cancelled: impl Fn() -> bool,
    ) -> Result<FollowerAppend, StorageError> {
        let mut epochs = self.epochs();
        let flush_due = {
            let mut log = self.log();
            if cancelled() {
                return Ok(FollowerAppend::Cancelled);
            }
            if log.log_end_offset() != fetch_offset {
                return Ok(FollowerAppend::Moved);
            }
            log.append_as(buf, AppendOrigin::Replay)?;
            log.flush_due_by_count()
        };
        if let Some(c) = epochs.as_mut() {
            for &(epoch, base) in batches {
                c.assign(epoch, base)?;
            }
        }
        Ok(FollowerAppend::Appended { flush_due })
    }

    /// Leader: follower `id` fetched from `fetch_offset`. Returns an ISR expansion to
    /// propose, if it caught up.
    pub fn follower_fetched(&self, id: i32, fetch_offset: i64) -> Option<IsrProposal> {
        let mut guard = self.replica();
        let r = guard.as_mut()?;
        let leo = self.log().log_end_offset();
        let (moved, proposal) = r.on_follower_fetch(id, fetch_offset, leo, Instant::now());
        drop(guard);
        if moved {
            self.hw_moved.notify_waiters();
        }
        proposal
    }

    /// Leader: an ISR shrink to propose, if followers lag more than `max_lag`.
    pub fn lagging_followers(&self, max_lag: Duration) -> Option<IsrProposal> {
        self.replica().as_mut()?.shrink_proposal(max_lag, Instant::now())
    }

    /// A proposed ISR change was refused or failed: another may be proposed.
    pub fn isr_change_done(&self) {
        if let Some(r) = self.replica().as_mut() {
            r.isr_change_in_flight = false;
        }
    }

    /// Follower: the leader's high watermark, from a fetch response.
    pub fn follow_hw(&self, leader_hw: i64) {
        let mut guard = self.replica();
        if let Some(r) = guard.as_mut() {
            let leo = self.log().log_end_offset();
            r.follow_hw(leader_hw, leo);
        }
    }

    /// Replica state for metrics: (leads, ISR size, replicas, largest follower lag).
    pub fn replica_summary(&self) -> Option<(bool, usize, usize, i64)> {
        let guard = self.replica();
        let r = guard.as_ref()?;
        let leo = self.log().log_end_offset();
        Some((r.is_leader(), r.isr.len(), r.replicas.len(), r.follower_lag(leo)))
    }

    /// Reads the whole log, from its start to its end as of now, calling `f` with each
    /// batch's header and bytes in offset order (the replay of an internal topic at load).
    pub fn replay_batches(&self, mut f: impl FnMut(&BatchHeader, &[u8])) -> Result<(), StorageError> {
        let (mut offset, end) = {
            let log = self.log();
            (log.log_start_offset(), log.log_end_offset())
        };
        while offset < end {
            let bytes = self.log().read(offset, 1 << 20, true)?.read_to_vec()?;
            if bytes.is_empty() {
                break;
            }
            for item in runnel_protocol::batch::batches(&bytes) {
                let (header, range) = item?;
                offset = header.last_offset() + 1;
                f(&header, &bytes[range]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use runnel_protocol::batch::{encode_batch, NewRecord};

    use super::*;

    /// A replica with records 0..10, opened in cluster mode with `stored` as its
    /// checkpointed high watermark, then made leader with two followers not heard from.
    fn restarted_leader(dir: &std::path::Path, stored: Option<i64>) -> Partition {
        let settings = TopicSettings::resolve(&BTreeMap::new(), &BTreeMap::new());
        let mut log = PartitionLog::open(dir, settings.log.clone()).unwrap();
        let records: Vec<NewRecord<'_>> = (0..10).map(|_| NewRecord { timestamp: 0, key: None, value: Some(b"v"), headers: &[] }).collect();
        log.append(&mut encode_batch(0, 0, &records)).unwrap();
        let part = Partition::new("t".into(), 0, log, settings);
        part.await_assignment(1, stored);
        let a = PartitionAssignment { replicas: vec![1, 2, 3], leader: 1, leader_epoch: 1, isr: vec![1, 2, 3], partition_epoch: 1 };
        assert_eq!(part.assign(&a, 1), RoleChange::BecameLeader);
        part
    }

    /// Kafka's replication-offset-checkpoint: a restarted leader serves consumers up to the
    /// high watermark it had (not from its log start, and not the records above it, which
    /// the ISR may not hold) until its followers report where they are.
    #[test]
    fn a_restarted_leader_starts_from_its_stored_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let part = restarted_leader(dir.path(), Some(7));
        assert_eq!(part.high_watermark(), 7);
        assert_eq!(part.checkpoint_hw(), Some(7));
        assert!(part.follower_fetched(2, 10).is_none());
        assert!(part.follower_fetched(3, 9).is_none());
        assert_eq!(part.high_watermark(), 9, "the followers' log ends move it on");

        let dir = tempfile::tempdir().unwrap();
        assert_eq!(restarted_leader(dir.path(), None).high_watermark(), 0, "no checkpoint: from the log start");
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(restarted_leader(dir.path(), Some(50)).high_watermark(), 10, "capped at the log end");
    }
}

/// `RUNNEL_FAILPOINT_FLUSH_DELAY_MS`: tests make each fsync of a partition's log take this
/// much longer (read once). Unset in production: one cached lookup per flush.
fn failpoint_flush_delay() {
    static DELAY: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        std::env::var("RUNNEL_FAILPOINT_FLUSH_DELAY_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis)
    });
    if let Some(d) = delay {
        std::thread::sleep(*d);
    }
}
