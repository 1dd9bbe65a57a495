//! The group coordinator (Kafka's classic group protocol). This broker coordinates every
//! group. [`Coordinator`] owns the groups behind one lock, validates what is common to all
//! requests (group id, session timeout range), writes every change to `__consumer_offsets`
//! before it is visible, and runs the timers (sessions, join and sync phases, offset
//! retention) from one background task.
//!
//! Submodules: `state` (a group's state machine), `member`, `offsets` (committed offsets
//! and their expiry), `persist` (records in `__consumer_offsets`, replay), and
//! `consumer_protocol` (reading a consumer subscription's topics).
//!
//! Its methods block (they append to a log): handlers call them on a blocking thread.
//! It never decodes requests or builds responses: that is the handlers' job.

mod consumer_protocol;
mod member;
mod offsets;
mod persist;
mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use member::{JoinResult, SyncResult};
pub use offsets::CommittedOffset;
pub use persist::OFFSETS_TOPIC;
pub use state::{GroupState, JoinRequest, Outcome};

use crate::errors::KafkaError;
use crate::partition::Partition;
use crate::BrokerConfig;
use state::Group;

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The group settings of the broker config, read once.
#[derive(Debug, Clone)]
struct Settings {
    min_session_ms: i32,
    max_session_ms: i32,
    initial_delay_ms: i32,
    retention_ms: i64,
    retention_check: Duration,
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
    groups: Mutex<HashMap<String, Group>>,
    log: Arc<Partition>,
    settings: Settings,
    /// Wakes the timer task when deadlines may have moved.
    timer: Notify,
}

impl Coordinator {
    /// Replays `__consumer_offsets` (partition `log`) into groups.
    pub fn load(log: Arc<Partition>, config: &BrokerConfig) -> Result<Self, runnel_storage::StorageError> {
        let groups = persist::replay(&log, Instant::now())?;
        Ok(Coordinator {
            groups: Mutex::new(groups),
            log,
            settings: Settings {
                min_session_ms: config.group_min_session_timeout_ms(),
                max_session_ms: config.group_max_session_timeout_ms(),
                initial_delay_ms: config.group_initial_rebalance_delay_ms(),
                retention_ms: config.offsets_retention_ms(),
                retention_check: Duration::from_millis(config.offsets_retention_check_interval_ms().max(1) as u64),
            },
            timer: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the group's record if it changed (and drops a Dead group). Call with the
    /// lock held, after every change. Request paths then [`kick`](Self::kick) the timer.
    fn settle(&self, groups: &mut HashMap<String, Group>, id: &str) {
        let Some(g) = groups.get_mut(id) else { return };
        if g.dirty {
            g.dirty = false;
            if let Err(e) = persist::append(&self.log, &[persist::group_record(g)]) {
                tracing::error!(group = %id, error = %e, "could not write the group record");
            }
        }
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
        let mut groups = self.lock();
        if !groups.contains_key(group_id) {
            if !r.member_id.is_empty() {
                return fail(KafkaError::UnknownMemberId);
            }
            groups.insert(group_id.to_string(), Group::new(group_id.to_string(), now_ms()));
        }
        let g = groups.get_mut(group_id).expect("group");
        let outcome = g.join(r, Instant::now(), self.settings.initial_delay_ms);
        self.settle(&mut groups, group_id);
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
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return Outcome::Now(SyncResult::error(KafkaError::UnknownMemberId));
        };
        let outcome = g.sync(member_id, instance_id, generation, protocol_type, protocol_name, assignments, Instant::now());
        self.settle(&mut groups, group_id);
        self.kick();
        outcome
    }

    pub fn heartbeat(&self, group_id: &str, member_id: &str, instance_id: Option<&str>, generation: i32) -> Option<KafkaError> {
        if group_id.is_empty() {
            return Some(KafkaError::InvalidGroupId);
        }
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else { return Some(KafkaError::UnknownMemberId) };
        let e = g.heartbeat(member_id, instance_id, generation, Instant::now());
        self.settle(&mut groups, group_id);
        e
    }

    /// Removes members: (member id, instance id) each. The outer error is for the whole
    /// request; the inner ones per member.
    pub fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Result<Vec<Option<KafkaError>>, KafkaError> {
        if group_id.is_empty() {
            return Err(KafkaError::InvalidGroupId);
        }
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return Ok(members.iter().map(|_| Some(KafkaError::UnknownMemberId)).collect());
        };
        if g.state == GroupState::Dead {
            return Err(KafkaError::CoordinatorNotAvailable);
        }
        let now = Instant::now();
        let errors = members.iter().map(|(m, i)| g.leave(m, i.as_deref(), now, self.settings.initial_delay_ms)).collect();
        self.settle(&mut groups, group_id);
        self.kick();
        Ok(errors)
    }

    /// Commits offsets (already checked per partition by the handler). A simple commit
    /// (generation < 0, no member) creates the group if it does not exist.
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
        let mut groups = self.lock();
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
        if let Err(e) = persist::append(&self.log, &records) {
            tracing::error!(group = %group_id, error = %e, "could not write committed offsets");
            return Err(KafkaError::CoordinatorNotAvailable);
        }
        for o in offsets {
            g.offsets.put(o.topic, o.partition, o.offset);
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
    ) -> Vec<(String, Vec<(i32, Option<CommittedOffset>)>)> {
        let groups = self.lock();
        let g = groups.get(group_id);
        match topics {
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
        }
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupSummary> {
        let groups = self.lock();
        let g = groups.get(group_id)?;
        let stable = g.state == GroupState::Stable;
        let protocol = if stable { g.protocol.clone().unwrap_or_default() } else { String::new() };
        Some(GroupSummary {
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
        })
    }

    pub fn list(&self) -> Vec<ListedGroup> {
        let groups = self.lock();
        let mut out: Vec<ListedGroup> = groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .map(|g| ListedGroup {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// Deletes an empty group and its offsets.
    pub fn delete(&self, group_id: &str) -> Option<KafkaError> {
        if group_id.is_empty() {
            return Some(KafkaError::InvalidGroupId);
        }
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else { return Some(KafkaError::GroupIdNotFound) };
        match g.state {
            GroupState::Dead => return Some(KafkaError::GroupIdNotFound),
            GroupState::Empty => {}
            _ => return Some(KafkaError::NonEmptyGroup),
        }
        let mut records: Vec<_> = g.offsets.iter().map(|((t, p), _)| persist::offset_record(group_id, t, *p, None)).collect();
        g.mark_dead();
        records.push(persist::group_record(g));
        if let Err(e) = persist::append(&self.log, &records) {
            tracing::error!(group = %group_id, error = %e, "could not write group deletion");
            return Some(KafkaError::CoordinatorNotAvailable);
        }
        tracing::info!(group = %group_id, "group deleted");
        groups.remove(group_id);
        None
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
        let mut groups = self.lock();
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
        if let Err(e) = persist::append(&self.log, &records) {
            tracing::error!(group = %group_id, error = %e, "could not write offset deletion");
            return Err(KafkaError::CoordinatorNotAvailable);
        }
        for (t, p, e) in &results {
            if e.is_none() {
                g.offsets.remove(t, *p);
            }
        }
        Ok(results)
    }

    /// Runs every due timer; returns when to run again.
    fn tick(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut groups = self.lock();
        let ids: Vec<String> = groups.keys().cloned().collect();
        let mut next: Option<Instant> = None;
        for id in ids {
            if let Some(g) = groups.get_mut(&id) {
                if g.next_deadline().is_some_and(|d| d <= now) {
                    g.tick(now, self.settings.initial_delay_ms);
                }
            }
            self.settle(&mut groups, &id);
            if let Some(d) = groups.get(&id).and_then(Group::next_deadline) {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
        next
    }

    /// Removes expired offsets of empty (and simple) groups, writing tombstones; a group
    /// left Empty with no offsets is removed too.
    fn expire_offsets(&self) {
        let now = now_ms();
        let mut groups = self.lock();
        let ids: Vec<String> = groups.keys().cloned().collect();
        for id in ids {
            let g = groups.get_mut(&id).expect("group");
            if g.state != GroupState::Empty {
                continue;
            }
            let base = g.protocol_type.is_some().then_some(g.state_timestamp);
            let expired = g.offsets.expired(now, self.settings.retention_ms, base);
            let mut records: Vec<_> = expired.iter().map(|(t, p)| persist::offset_record(&id, t, *p, None)).collect();
            let emptied = g.offsets.iter().count() == expired.len();
            if emptied {
                g.mark_dead();
                records.push(persist::group_record(g));
            }
            if records.is_empty() {
                continue;
            }
            if let Err(e) = persist::append(&self.log, &records) {
                tracing::error!(group = %id, error = %e, "could not write expired offsets");
                continue;
            }
            for (t, p) in &expired {
                g.offsets.remove(t, *p);
            }
            tracing::info!(group = %id, expired = expired.len(), removed = emptied, "expired committed offsets");
            if emptied {
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
