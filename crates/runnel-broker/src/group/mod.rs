//! The group coordinator (Kafka's classic group protocol). A group is coordinated by the
//! leader of its `__consumer_offsets` partition (`shards`: on a single node this broker
//! leads them all). [`Coordinator`] owns the loaded partitions' groups, each partition's
//! behind its own lock, validates what is common to all requests (group id, session
//! timeout range), writes every change to `__consumer_offsets` before it is visible
//! (offsets once the in-sync replicas have them), and runs the timers (sessions, join and
//! sync phases, offset retention) from one background task; a request that reads a
//! group's state first runs that group's timers that are due.
//!
//! Submodules: `state` (a group's state machine), `member`, `offsets` (committed offsets
//! and their expiry), `persist` (records in `__consumer_offsets`, replay), `shards`
//! (which partitions this broker coordinates: load, unload, acks=all writes), and
//! `consumer_protocol` (reading a consumer subscription's topics).
//!
//! Its methods block (they append to a log): handlers call them on a blocking thread.
//! It never decodes requests or builds responses: that is the handlers' job.

mod consumer_protocol;
mod member;
mod offsets;
mod persist;
mod shards;
mod state;
mod txn_offsets;

use std::collections::HashMap;
use std::sync::atomic::AtomicI32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use member::{JoinResult, SyncResult};
pub use offsets::CommittedOffset;
pub use persist::OFFSETS_TOPIC;
/// Appending as a partition's leader, shared with the transaction coordinator's log.
pub(crate) use persist::{append as append_as_leader, Record, WriteError};
pub use shards::partition_for;
pub use state::{GroupState, JoinRequest, Outcome};
pub use txn_offsets::TxnCommitter;

use crate::errors::KafkaError;
use crate::BrokerConfig;
use shards::{Shard, Slot};
use state::Group;

/// Whether `name` is an internal topic the broker owns (Kafka's `Topic.isInternal`):
/// clients may not delete it, add partitions to it or produce to it.
pub fn is_internal_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == crate::txn::TXN_TOPIC
}

pub(crate) use crate::now_ms;

/// The group settings of the broker config, read once.
#[derive(Debug, Clone)]
struct Settings {
    min_session_ms: i32,
    max_session_ms: i32,
    initial_delay_ms: i32,
    retention_ms: i64,
    retention_check: Duration,
    /// `offsets.commit.timeout.ms`.
    commit_timeout: Duration,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub state: GroupState,
    pub protocol_type: String,
    /// The protocol of a Stable group; empty otherwise.
    pub protocol: String,
    pub members: Vec<MemberSummary>,
}

#[derive(Debug, Clone)]
pub struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Only for a Stable group.
    pub metadata: bytes::Bytes,
    pub assignment: bytes::Bytes,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

/// An offset to commit.
#[derive(Debug, Clone)]
pub struct OffsetToCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: CommittedOffset,
}

pub struct Coordinator {
    /// The `__consumer_offsets` partitions this broker coordinates, by index.
    shards: RwLock<HashMap<i32, Slot>>,
    /// How many partitions `__consumer_offsets` has (0: not created yet).
    partition_count: AtomicI32,
    settings: Settings,
    /// Wakes the timer task when deadlines may have moved.
    timer: Notify,
}

impl Coordinator {
    /// A coordinator with no partition loaded yet (see [`elect`](Self::elect)).
    pub fn new(config: &BrokerConfig) -> Self {
        Coordinator {
            shards: RwLock::default(),
            partition_count: AtomicI32::new(0),
            settings: Settings {
                min_session_ms: config.group_min_session_timeout_ms(),
                max_session_ms: config.group_max_session_timeout_ms(),
                initial_delay_ms: config.group_initial_rebalance_delay_ms(),
                retention_ms: config.offsets_retention_ms(),
                retention_check: Duration::from_millis(config.offsets_retention_check_interval_ms().max(1) as u64),
                commit_timeout: Duration::from_millis(config.offsets_commit_timeout_ms()),
            },
            timer: Notify::new(),
        }
    }

    /// A coordinator of a one-partition `__consumer_offsets` (`log`), replayed now.
    #[cfg(test)]
    pub fn load(log: Arc<crate::partition::Partition>, config: &BrokerConfig) -> Result<Self, runnel_storage::StorageError> {
        let c = Self::new(config);
        c.set_partition_count(1);
        c.elect(0, 0, log)?;
        Ok(c)
    }

    /// Writes the group's record if it changed (and drops a Dead group). Call with the
    /// shard's lock held, after every change. Request paths then [`kick`](Self::kick) the
    /// timer. Members waiting in SyncGroup are answered only now, after the write (their
    /// handlers then wait for it to be replicated).
    fn settle(&self, shard: &Shard, groups: &mut HashMap<String, Group>, id: &str) {
        let Some(g) = groups.get_mut(id) else { return };
        let mut written = Ok(None);
        if g.dirty {
            g.dirty = false;
            written = shard.write(&[persist::group_record(g)]);
            if let Err(e) = &written {
                tracing::warn!(group = %id, error = ?e, "could not write the group record");
            }
        }
        // Kafka maps a failed write of the group to COORDINATOR_NOT_AVAILABLE (retriable),
        // or NOT_COORDINATOR once it no longer leads.
        g.answer_sync(written.err(), Instant::now());
        if g.state == GroupState::Dead {
            groups.remove(id);
        }
    }

    /// Deadlines may have moved earlier: let the timer task recompute.
    fn kick(&self) {
        self.timer.notify_one();
    }

    pub fn join(&self, group_id: &str, r: JoinRequest) -> Outcome<JoinResult> {
        let fail = |e| Outcome::Now(JoinResult::error(&r.member_id, e));
        if group_id.is_empty() {
            return fail(KafkaError::InvalidGroupId);
        }
        if r.session_timeout_ms < self.settings.min_session_ms || r.session_timeout_ms > self.settings.max_session_ms {
            return fail(KafkaError::InvalidSessionTimeout);
        }
        let shard = match self.shard(group_id) {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        let mut groups = shard.lock();
        if !groups.contains_key(group_id) {
            if !r.member_id.is_empty() {
                return fail(KafkaError::UnknownMemberId);
            }
            groups.insert(group_id.to_string(), Group::new(group_id.to_string(), now_ms()));
        }
        let g = groups.get_mut(group_id).expect("group");
        let outcome = g.join(r, Instant::now(), self.settings.initial_delay_ms);
        self.settle(&shard, &mut groups, group_id);
        self.kick();
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, bytes::Bytes)>,
    ) -> Outcome<SyncResult> {
        if group_id.is_empty() {
            return Outcome::Now(SyncResult::error(KafkaError::InvalidGroupId));
        }
        let shard = match self.shard(group_id) {
            Ok(s) => s,
            Err(e) => return Outcome::Now(SyncResult::error(e)),
        };
        let mut groups = shard.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return Outcome::Now(SyncResult::error(KafkaError::UnknownMemberId));
        };
        let outcome = g.sync(member_id, instance_id, generation, protocol_type, protocol_name, assignments, Instant::now());
        self.settle(&shard, &mut groups, group_id);
        self.kick();
        outcome
    }

    /// After a successful SyncGroup: waits until the group's record (and everything the
    /// partition holds before it) is on the in-sync replicas.
    pub fn sync_durable(&self, group_id: &str) -> Option<KafkaError> {
        self.shard(group_id).and_then(|s| s.await_all_replicated()).err()
    }

    pub fn heartbeat(&self, group_id: &str, member_id: &str, instance_id: Option<&str>, generation: i32) -> Option<KafkaError> {
        if group_id.is_empty() {
            return Some(KafkaError::InvalidGroupId);
        }
        let shard = match self.shard(group_id) {
            Ok(s) => s,
            Err(e) => return Some(e),
        };
        let mut groups = shard.lock();
        let Some(g) = groups.get_mut(group_id) else { return Some(KafkaError::UnknownMemberId) };
        let e = g.heartbeat(member_id, instance_id, generation, Instant::now());
        self.settle(&shard, &mut groups, group_id);
        e
    }

    /// Removes members: (member id, instance id) each. The outer error is for the whole
    /// request; the inner ones per member.
    pub fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Result<Vec<Option<KafkaError>>, KafkaError> {
        if group_id.is_empty() {
            return Err(KafkaError::InvalidGroupId);
        }
        let shard = self.shard(group_id)?;
        let mut groups = shard.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return Ok(members.iter().map(|_| Some(KafkaError::UnknownMemberId)).collect());
        };
        if g.state == GroupState::Dead {
            return Err(KafkaError::CoordinatorNotAvailable);
        }
        let now = Instant::now();
        let errors = members.iter().map(|(m, i)| g.leave(m, i.as_deref(), now, self.settings.initial_delay_ms)).collect();
        self.settle(&shard, &mut groups, group_id);
        self.kick();
        Ok(errors)
    }

    /// Commits offsets (already checked per partition by the handler). A simple commit
    /// (generation < 0, no member) creates the group if it does not exist. Answered (and
    /// visible to OffsetFetch) once the in-sync replicas have the offsets.
    pub fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        api_version: i16,
        offsets: Vec<OffsetToCommit>,
    ) -> Result<(), KafkaError> {
        if group_id.is_empty() {
            return Err(KafkaError::InvalidGroupId);
        }
        let shard = self.shard(group_id)?;
        let mut groups = shard.lock();
        if !groups.contains_key(group_id) {
            if generation >= 0 {
                // Kafka: GROUP_ID_NOT_FOUND from v9 on, ILLEGAL_GENERATION before.
                return Err(if api_version >= 9 { KafkaError::GroupIdNotFound } else { KafkaError::IllegalGeneration });
            }
            groups.insert(group_id.to_string(), Group::new(group_id.to_string(), now_ms()));
        }
        let g = groups.get_mut(group_id).expect("group");
        if let Some(e) = g.validate_commit(member_id, instance_id, generation, Instant::now()) {
            return Err(e);
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let records: Vec<_> =
            offsets.iter().map(|o| persist::offset_record(group_id, &o.topic, o.partition, Some(&o.offset))).collect();
        let written = shard.write(&records)?;
        drop(groups);
        // Kafka's pending offset commits: visible once replicated. Concurrent commits of
        // one partition are applied in log order, whichever wait ends first.
        shard.await_replicated(written)?;
        let at = written.unwrap_or(-1);
        let mut groups = shard.lock();
        let g = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id.to_string(), now_ms()));
        for o in offsets {
            g.offsets.put_written(o.topic, o.partition, o.offset, at);
        }
        Ok(())
    }

    /// Committed offsets: of the given partitions (None where nothing is committed), or
    /// every committed offset of the group when `topics` is None.
    #[allow(clippy::type_complexity)]
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>, KafkaError> {
        let shard = self.shard(group_id)?;
        let groups = shard.lock();
        let g = groups.get(group_id);
        Ok(match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(t, ps)| {
                    let parts = ps.into_iter().map(|p| (p, g.and_then(|g| g.offsets.get(&t, p).cloned()))).collect();
                    (t, parts)
                })
                .collect(),
            None => {
                let mut out: Vec<(String, Vec<(i32, Option<CommittedOffset>)>)> = Vec::new();
                if let Some(g) = g {
                    for ((t, p), o) in g.offsets.iter() {
                        match out.last_mut() {
                            Some((last, parts)) if last == t => parts.push((*p, Some(o.clone()))),
                            _ => out.push((t.clone(), vec![(*p, Some(o.clone()))])),
                        }
                    }
                }
                out
            }
        })
    }

    /// A group as DescribeGroups shows it (None: no such group here).
    pub fn describe(&self, group_id: &str) -> Result<Option<GroupSummary>, KafkaError> {
        let shard = self.shard(group_id)?;
        let mut groups = shard.lock();
        self.run_due_timers(&shard, &mut groups, group_id, Instant::now());
        let Some(g) = groups.get(group_id) else { return Ok(None) };
        let stable = g.state == GroupState::Stable;
        let protocol = if stable { g.protocol.clone().unwrap_or_default() } else { String::new() };
        Ok(Some(GroupSummary {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: g
                .members
                .values()
                .map(|m| MemberSummary {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable { m.metadata(&protocol) } else { Default::default() },
                    assignment: if stable { m.assignment.clone() } else { Default::default() },
                })
                .collect(),
        }))
    }

    /// The groups this broker coordinates (Kafka's ListGroups answers per broker).
    pub fn list(&self) -> Vec<ListedGroup> {
        let mut out: Vec<ListedGroup> = Vec::new();
        for shard in self.loaded() {
            let groups = shard.lock();
            out.extend(groups.values().filter(|g| g.state != GroupState::Dead).map(|g| ListedGroup {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            }));
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// Deletes an empty group and its offsets.
    pub fn delete(&self, group_id: &str) -> Option<KafkaError> {
        if group_id.is_empty() {
            return Some(KafkaError::InvalidGroupId);
        }
        let shard = match self.shard(group_id) {
            Ok(s) => s,
            Err(e) => return Some(e),
        };
        let mut groups = shard.lock();
        self.run_due_timers(&shard, &mut groups, group_id, Instant::now());
        let Some(g) = groups.get_mut(group_id) else { return Some(KafkaError::GroupIdNotFound) };
        match g.state {
            GroupState::Dead => return Some(KafkaError::GroupIdNotFound),
            GroupState::Empty => {}
            _ => return Some(KafkaError::NonEmptyGroup),
        }
        let mut records: Vec<_> = g.offsets.iter().map(|((t, p), _)| persist::offset_record(group_id, t, *p, None)).collect();
        records.push(persist::group_tombstone(group_id));
        let written = match shard.write(&records) {
            Ok(w) => w,
            Err(e) => return Some(e),
        };
        g.mark_dead();
        tracing::info!(group = %group_id, "group deleted");
        groups.remove(group_id);
        drop(groups);
        shard.await_replicated(written).err()
    }

    /// OffsetDelete: removes committed offsets unless a live consumer group subscribes to
    /// their topic. Per partition: `Some(GroupSubscribedToTopic)` or None.
    #[allow(clippy::type_complexity)]
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<(String, i32, Option<KafkaError>)>, KafkaError> {
        if group_id.is_empty() {
            return Err(KafkaError::InvalidGroupId);
        }
        let shard = self.shard(group_id)?;
        let mut groups = shard.lock();
        self.run_due_timers(&shard, &mut groups, group_id, Instant::now());
        let Some(g) = groups.get_mut(group_id) else { return Err(KafkaError::GroupIdNotFound) };
        if g.state == GroupState::Dead {
            return Err(KafkaError::GroupIdNotFound);
        }
        let subscribed = if g.state == GroupState::Empty {
            Default::default()
        } else if g.protocol_type.as_deref() == Some("consumer") {
            // Unknown subscriptions: refuse every topic rather than guess.
            match g.subscribed_topics() {
                Some(s) => s,
                None => partitions.iter().map(|(t, _)| t.clone()).collect(),
            }
        } else {
            return Err(KafkaError::NonEmptyGroup);
        };
        let mut results = Vec::with_capacity(partitions.len());
        let mut records = Vec::new();
        for (t, p) in partitions {
            if subscribed.contains(&t) {
                results.push((t, p, Some(KafkaError::GroupSubscribedToTopic)));
                continue;
            }
            if g.offsets.get(&t, p).is_some() {
                records.push(persist::offset_record(group_id, &t, p, None));
            }
            results.push((t, p, None));
        }
        let written = shard.write(&records)?;
        for (t, p, e) in &results {
            if e.is_none() {
                g.offsets.remove(t, *p);
            }
        }
        drop(groups);
        shard.await_replicated(written)?;
        Ok(results)
    }

    /// Removes every committed offset of `topic` (it was deleted), as Kafka does when a
    /// topic goes: tombstones in `__consumer_offsets`; an Empty group left without offsets
    /// is removed too. Returns how many offsets went.
    pub fn remove_offsets_for_topic(&self, topic: &str) -> usize {
        self.remove_offsets_where(|t| t == topic, "topic deleted")
    }

    /// Removes committed offsets of topics that no longer exist (`exists` says which do):
    /// at startup, for a topic deletion that a crash interrupted before its offsets went.
    pub fn remove_offsets_of_missing_topics(&self, exists: impl Fn(&str) -> bool) -> usize {
        self.remove_offsets_where(|t| !exists(t), "topic no longer exists")
    }

    fn remove_offsets_where(&self, doomed: impl Fn(&str) -> bool, why: &str) -> usize {
        self.loaded().iter().map(|shard| self.remove_offsets_in(shard, &doomed, why)).sum()
    }

    fn remove_offsets_in(&self, shard: &Shard, doomed: &impl Fn(&str) -> bool, why: &str) -> usize {
        let mut groups = shard.lock();
        let ids: Vec<String> = groups.keys().cloned().collect();
        let mut removed = 0;
        for id in ids {
            let g = groups.get_mut(&id).expect("group");
            let gone = g.offsets.partitions_where(doomed);
            if gone.is_empty() {
                continue;
            }
            let mut records: Vec<_> = gone.iter().map(|(t, p)| persist::offset_record(&id, t, *p, None)).collect();
            let emptied = g.state == GroupState::Empty && g.offsets.iter().count() == gone.len();
            if emptied {
                records.push(persist::group_tombstone(&id));
            }
            if let Err(e) = shard.write(&records) {
                tracing::warn!(group = %id, error = ?e, "could not write the removal of committed offsets");
                continue;
            }
            for (t, p) in &gone {
                g.offsets.remove(t, *p);
            }
            removed += gone.len();
            tracing::info!(group = %id, offsets = gone.len(), group_removed = emptied, reason = why, "removed committed offsets");
            if emptied {
                g.mark_dead();
                groups.remove(&id);
            }
        }
        removed
    }

    /// Runs `id`'s timers that are due at `now` (sessions, rebalance phases). The timer task
    /// does so at each deadline, and so does every request that reads a group's state
    /// (DescribeGroups, DeleteGroups, OffsetDelete) before reading it: however late the
    /// timer task runs on a loaded machine, a request after a member's session deadline
    /// never finds that member in the group.
    fn run_due_timers(&self, shard: &Shard, groups: &mut HashMap<String, Group>, id: &str, now: Instant) {
        if let Some(g) = groups.get_mut(id) {
            if g.next_deadline().is_some_and(|d| d <= now) {
                g.tick(now, self.settings.initial_delay_ms);
            }
        }
        self.settle(shard, groups, id);
    }

    /// Runs every due timer of every loaded partition; returns when to run again.
    fn tick(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for shard in self.loaded() {
            let mut groups = shard.lock();
            let ids: Vec<String> = groups.keys().cloned().collect();
            for id in ids {
                self.run_due_timers(&shard, &mut groups, &id, now);
                if let Some(d) = groups.get(&id).and_then(Group::next_deadline) {
                    next = Some(next.map_or(d, |n| n.min(d)));
                }
            }
        }
        next
    }

    /// Removes expired offsets, writing tombstones (Kafka's KIP-211 rules): of an Empty
    /// consumer group, all at once `offsets.retention.minutes` after it became Empty; of a
    /// simple group, each that long after its commit; of a Stable consumer group whose
    /// subscriptions are known, those of topics it no longer subscribes to, each that long
    /// after its commit. Groups in other states keep theirs. A group left Empty with no
    /// offsets is removed too.
    fn expire_offsets(&self) {
        for shard in self.loaded() {
            self.expire_offsets_in(&shard);
        }
    }

    fn expire_offsets_in(&self, shard: &Shard) {
        let now = now_ms();
        let mut groups = shard.lock();
        let ids: Vec<String> = groups.keys().cloned().collect();
        for id in ids {
            let g = groups.get_mut(&id).expect("group");
            let (base, keep) = match g.state {
                GroupState::Empty => (g.protocol_type.is_some().then_some(g.state_timestamp), Default::default()),
                GroupState::Stable => match g.subscribed_topics() {
                    Some(subscribed) => (None, subscribed),
                    None => continue,
                },
                _ => continue,
            };
            let expired = g.offsets.expired(now, self.settings.retention_ms, base, &keep);
            let mut records: Vec<_> = expired.iter().map(|(t, p)| persist::offset_record(&id, t, *p, None)).collect();
            let emptied = g.state == GroupState::Empty && g.offsets.iter().count() == expired.len();
            if emptied {
                records.push(persist::group_tombstone(&id));
            }
            if records.is_empty() {
                continue;
            }
            if let Err(e) = shard.write(&records) {
                tracing::warn!(group = %id, error = ?e, "could not write expired offsets");
                continue;
            }
            for (t, p) in &expired {
                g.offsets.remove(t, *p);
            }
            tracing::info!(group = %id, expired = expired.len(), removed = emptied, "expired committed offsets");
            if emptied {
                g.mark_dead();
                groups.remove(&id);
            }
        }
    }

    /// The coordinator's timers, until `shutdown`: sessions, rebalance phases, and the
    /// offset retention check every `offsets.retention.check.interval.ms`.
    pub async fn run_timers(self: Arc<Self>, shutdown: CancellationToken) {
        let mut next_retention = Instant::now() + self.settings.retention_check;
        loop {
            let me = self.clone();
            let due_retention = Instant::now() >= next_retention;
            let next = tokio::task::spawn_blocking(move || {
                if due_retention {
                    me.expire_offsets();
                }
                me.tick()
            })
            .await
            .unwrap_or(None);
            if due_retention {
                next_retention = Instant::now() + self.settings.retention_check;
            }
            let wake = next.map_or(next_retention, |n| n.min(next_retention));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.timer.notified() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;

    use super::*;
    use crate::partition::Partition;
    use crate::topic_config::TopicSettings;

    fn open_log(dir: &std::path::Path) -> Arc<Partition> {
        let settings = TopicSettings::resolve(&BTreeMap::new(), &BTreeMap::new());
        let log = runnel_storage::PartitionLog::open(&dir.join("__consumer_offsets-0"), settings.log.clone()).unwrap();
        Arc::new(Partition::new(OFFSETS_TOPIC.into(), 0, log, settings))
    }

    fn coordinator(log: &Arc<Partition>, retention_ms: i64) -> Coordinator {
        let mut c = Coordinator::load(log.clone(), &BrokerConfig::default()).unwrap();
        c.settings.retention_ms = retention_ms;
        c.settings.initial_delay_ms = 0;
        c
    }

    /// A consumer subscription (version 0) to `topics`.
    fn subscription(topics: &[&str]) -> Bytes {
        let mut b = vec![0, 0];
        b.extend((topics.len() as i32).to_be_bytes());
        for t in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
        }
        b.extend((-1i32).to_be_bytes());
        Bytes::from(b)
    }

    /// Joins `group` as its only member, subscribed to `topics`; the group is then Stable.
    fn stable_member(c: &Coordinator, group: &str, topics: &[&str]) -> (String, i32) {
        let r = JoinRequest { protocols: vec![("range".into(), subscription(topics))], ..join_request("") };
        let Outcome::Wait(mut rx) = c.join(group, r) else { panic!("join answered at once") };
        let j = rx.try_recv().expect("the only member completes the join");
        assert!(j.error.is_none());
        let Outcome::Wait(mut rx) = c.sync(group, &j.member_id, None, j.generation, None, None, vec![(j.member_id.clone(), Bytes::new())])
        else {
            panic!("sync answered at once")
        };
        assert!(rx.try_recv().unwrap().error.is_none());
        assert_eq!(c.describe(group).unwrap().unwrap().state, GroupState::Stable);
        (j.member_id, j.generation)
    }

    fn at(topic: &str, partition: i32, offset: i64, commit_timestamp: i64) -> OffsetToCommit {
        OffsetToCommit {
            topic: topic.into(),
            partition,
            offset: CommittedOffset { offset, leader_epoch: -1, metadata: String::new(), commit_timestamp, expire_timestamp: None },
        }
    }

    fn committed(c: &Coordinator, group: &str) -> Vec<(String, i32, i64)> {
        c.fetch_offsets(group, None)
            .unwrap()
            .into_iter()
            .flat_map(|(t, ps)| ps.into_iter().map(move |(p, o)| (t.clone(), p, o.unwrap().offset)))
            .collect()
    }

    fn join_request(member_id: &str) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "h".into(),
            session_timeout_ms: 60_000,
            rebalance_timeout_ms: 60_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), subscription(&["t"]))],
            require_known_member_id: false,
        }
    }

    /// Kafka answers SyncGroup only after the group's state is written: while the write
    /// cannot happen (the log's lock is held here), no waiting member is answered.
    #[test]
    fn sync_is_answered_after_the_group_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path());
        let c = Arc::new(coordinator(&log, 60_000));
        let Outcome::Wait(mut rx) = c.join("g", join_request("")) else { panic!() };
        let a = rx.try_recv().unwrap();
        // A second member makes the group rebalance; both join generation 2.
        let Outcome::Wait(mut rx_b) = c.join("g", join_request("")) else { panic!() };
        let Outcome::Wait(mut rx_a) = c.join("g", join_request(&a.member_id)) else { panic!() };
        let (a, b) = (rx_a.try_recv().unwrap(), rx_b.try_recv().unwrap());
        assert_eq!((a.generation, b.generation), (2, 2));
        let (leader, follower) = if a.leader == a.member_id { (a, b) } else { (b, a) };
        let Outcome::Wait(mut follower_rx) = c.sync("g", &follower.member_id, None, 2, None, None, vec![]) else { panic!() };
        let held = log.log();
        let (c2, id) = (c.clone(), leader.member_id.clone());
        let t = std::thread::spawn(move || {
            let assignments = vec![(id.clone(), Bytes::from_static(b"x"))];
            c2.sync("g", &id, None, 2, None, None, assignments)
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(follower_rx.try_recv().is_err(), "a member was answered before the group's state was written");
        drop(held);
        let Outcome::Wait(mut leader_rx) = t.join().unwrap() else { panic!() };
        assert_eq!(leader_rx.try_recv().unwrap().assignment, Bytes::from_static(b"x"));
        assert!(follower_rx.try_recv().unwrap().error.is_none());
        assert_eq!(c.describe("g").unwrap().unwrap().state, GroupState::Stable);
    }

    #[test]
    fn stable_group_expires_offsets_of_topics_it_no_longer_subscribes_to() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path());
        let c = coordinator(&log, 5_000);
        let (member, generation) = stable_member(&c, "g", &["sub"]);
        let (old, recent) = (now_ms() - 10_000, now_ms());
        let offsets = vec![at("sub", 0, 1, old), at("gone", 0, 2, old), at("gone", 1, 3, recent)];
        c.commit("g", &member, None, generation, 8, offsets).unwrap();
        c.expire_offsets();
        // KIP-211: the subscribed topic's old offset stays; of the others only the old one goes.
        let want = vec![("gone".to_string(), 1, 3), ("sub".to_string(), 0, 1)];
        assert_eq!(committed(&c, "g"), want);
        assert_eq!(c.describe("g").unwrap().unwrap().state, GroupState::Stable);
        // The tombstone is in the log: a restart sees the same.
        assert_eq!(committed(&coordinator(&log, 5_000), "g"), want);
    }

    #[test]
    fn removing_a_topic_removes_its_offsets_and_emptied_groups() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path());
        let c = coordinator(&log, i64::MAX / 2);
        let (member, generation) = stable_member(&c, "live", &["a", "b"]);
        c.commit("live", &member, None, generation, 8, vec![at("a", 0, 5, now_ms()), at("b", 0, 6, now_ms())]).unwrap();
        // A simple group with offsets of "a" only, another with "b" only.
        c.commit("only-a", "", None, -1, 8, vec![at("a", 0, 7, now_ms()), at("a", 1, 8, now_ms())]).unwrap();
        c.commit("only-b", "", None, -1, 8, vec![at("b", 0, 9, now_ms())]).unwrap();
        assert_eq!(c.remove_offsets_for_topic("a"), 3);
        assert_eq!(committed(&c, "live"), vec![("b".to_string(), 0, 6)]);
        assert!(c.describe("only-a").unwrap().is_none(), "an empty group left without offsets is removed");
        assert_eq!(committed(&c, "only-b"), vec![("b".to_string(), 0, 9)]);
        assert_eq!(c.remove_offsets_for_topic("a"), 0);

        let again = coordinator(&log, i64::MAX / 2);
        let ids: Vec<String> = again.list().into_iter().map(|g| g.group_id).collect();
        assert_eq!(ids, vec!["live".to_string(), "only-b".to_string()]);
        assert_eq!(committed(&again, "live"), vec![("b".to_string(), 0, 6)]);
        // At startup: offsets of topics that no longer exist go (an interrupted deletion).
        assert_eq!(again.remove_offsets_of_missing_topics(|t| t != "b"), 2);
        assert_eq!(again.list().into_iter().map(|g| g.group_id).collect::<Vec<_>>(), vec!["live".to_string()]);
    }
}
