//! One classic group and Kafka's rebalance state machine:
//! Empty → PreparingRebalance → CompletingRebalance → Stable, back to PreparingRebalance
//! when members join, leave or time out, and Dead once deleted.
//!
//! Everything here is synchronous and in memory: the coordinator holds the lock, passes
//! the time in, and writes the group record when [`Group::dirty`] is set. Never does I/O.
//!
//! Invariants: a member awaits a JoinGroup answer only while the group is
//! PreparingRebalance (or answered at once); a member awaits a SyncGroup answer only while
//! CompletingRebalance; `leader` is a member whenever there are members; `static_members`
//! maps each static member's instance id to its current member id.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::member::{JoinResult, JoinedMember, Member, SyncResult, NEW_MEMBER_JOIN_TIMEOUT_MS};
use super::offsets::OffsetStore;
use crate::errors::KafkaError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup request, decoded.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
}

/// An answer now, or one to wait for (the rebalance completes it).
pub enum Outcome<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

/// The first rebalance of an empty group waits `group.initial.rebalance.delay.ms` for more
/// members, extended while new ones keep arriving, up to the rebalance timeout.
#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    delay: Duration,
    remaining: Duration,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    /// Wall-clock ms of the last state change (offset expiry counts from becoming Empty).
    pub state_timestamp: i64,
    pub generation: i32,
    /// `None` for a simple group (offsets only, never joined).
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// instance id → member id.
    pub static_members: HashMap<String, String>,
    /// Members told MEMBER_ID_REQUIRED, with the deadline for their second join.
    pub pending_members: HashMap<String, Instant>,
    /// Members that have not yet synced in this generation.
    pending_sync: HashSet<String>,
    join_deadline: Option<Instant>,
    initial_delay: Option<InitialDelay>,
    new_member_added: bool,
    sync_deadline: Option<Instant>,
    pub offsets: OffsetStore,
    /// The group record must be written (the coordinator clears it).
    pub dirty: bool,
    /// The leader handed in the assignments: the members waiting in SyncGroup are answered
    /// once the group's record is written ([`Group::answer_sync`]), as Kafka does.
    sync_due: bool,
}

fn ms(v: i32) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

impl Group {
    pub fn new(id: String, now_ms: i64) -> Self {
        Group {
            id,
            state: GroupState::Empty,
            state_timestamp: now_ms,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            pending_sync: HashSet::new(),
            join_deadline: None,
            initial_delay: None,
            new_member_added: false,
            sync_deadline: None,
            offsets: OffsetStore::default(),
            dirty: false,
            sync_due: false,
        }
    }

    fn transition(&mut self, to: GroupState) {
        debug_assert!(
            match to {
                GroupState::Empty => matches!(self.state, GroupState::PreparingRebalance | GroupState::Empty),
                GroupState::PreparingRebalance => !matches!(self.state, GroupState::Dead),
                GroupState::CompletingRebalance => self.state == GroupState::PreparingRebalance,
                GroupState::Stable => matches!(self.state, GroupState::CompletingRebalance | GroupState::Stable),
                GroupState::Dead => true,
            },
            "group {}: illegal transition {:?} → {:?}",
            self.id,
            self.state,
            to
        );
        self.state = to;
        self.state_timestamp = super::now_ms();
    }

    pub fn mark_dead(&mut self) {
        self.transition(GroupState::Dead);
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// The largest rebalance timeout of the members.
    fn rebalance_timeout(&self) -> Duration {
        ms(self.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0))
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> Vec<&str> {
        let Some(first) = self.members.values().next() else { return Vec::new() };
        first
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| self.members.values().all(|m| m.supports(n)))
            .collect()
    }

    /// Whether a member with these protocols may join.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        let candidates = self.candidate_protocols();
        self.protocol_type.as_deref() == Some(protocol_type) && protocols.iter().any(|(n, _)| candidates.contains(&n.as_str()))
    }

    /// Kafka's selection: each member votes for its most preferred candidate (a protocol
    /// every member supports); most votes wins, ties go to the earlier candidate in the
    /// first member's order.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(&str, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
        for m in self.members.values() {
            if let Some(v) = m.vote(&candidates) {
                if let Some(e) = votes.iter_mut().find(|(c, _)| *c == v) {
                    e.1 += 1;
                }
            }
        }
        let best = votes.iter().map(|(_, n)| *n).max()?;
        votes.into_iter().find(|(_, n)| *n == best).map(|(c, _)| c.to_string())
    }

    pub fn is_static_member_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id.and_then(|i| self.static_members.get(i)).is_some_and(|m| m != member_id)
    }

    pub fn add_member(&mut self, member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        if let Some(i) = &member.instance_id {
            self.static_members.insert(i.clone(), member.id.clone());
        }
        self.members.insert(member.id.clone(), member);
    }

    fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let m = self.members.remove(member_id)?;
        if let Some(i) = &m.instance_id {
            if self.static_members.get(i).map(String::as_str) == Some(member_id) {
                self.static_members.remove(i);
            }
        }
        self.pending_sync.remove(member_id);
        if self.is_leader(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        Some(m)
    }

    fn current_member_metadata(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember { member_id: m.id.clone(), instance_id: m.instance_id.clone(), metadata: m.metadata(&protocol) })
            .collect()
    }

    fn join_result(&self, member_id: &str, with_members: bool, leader: Option<String>) -> JoinResult {
        JoinResult {
            error: None,
            member_id: member_id.to_string(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: leader.or_else(|| self.leader.clone()).unwrap_or_default(),
            members: if with_members { self.current_member_metadata() } else { Vec::new() },
        }
    }

    fn can_rebalance(&self) -> bool {
        matches!(self.state, GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty)
    }

    fn maybe_prepare_rebalance(&mut self, now: Instant, initial_delay_ms: i32) {
        if self.can_rebalance() {
            self.prepare_rebalance(now, initial_delay_ms);
        }
    }

    fn prepare_rebalance(&mut self, now: Instant, initial_delay_ms: i32) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_and_propagate_assignment_error(KafkaError::RebalanceInProgress);
        }
        self.sync_deadline = None;
        let timeout = self.rebalance_timeout();
        if self.state == GroupState::Empty && initial_delay_ms > 0 {
            let delay = ms(initial_delay_ms).min(timeout);
            self.initial_delay = Some(InitialDelay { delay: ms(initial_delay_ms), remaining: timeout.saturating_sub(delay) });
            self.join_deadline = Some(now + delay);
        } else {
            self.initial_delay = None;
            self.join_deadline = Some(now + timeout);
        }
        self.new_member_added = false;
        tracing::debug!(group = %self.id, generation = self.generation, "preparing rebalance");
        self.transition(GroupState::PreparingRebalance);
    }

    fn reset_and_propagate_assignment_error(&mut self, e: KafkaError) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            m.complete_sync(SyncResult::error(e));
        }
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(Member::is_awaiting_join)
    }

    fn try_complete_join(&mut self, now: Instant) {
        if self.state == GroupState::PreparingRebalance && self.initial_delay.is_none() && self.all_members_joined() {
            self.complete_join(now);
        }
    }

    /// Kafka's `onCompleteJoin`: drop dynamic members that did not rejoin, start the next
    /// generation and answer every waiting JoinGroup.
    fn complete_join(&mut self, now: Instant) {
        let gone: Vec<String> =
            self.members.values().filter(|m| !m.is_awaiting_join() && !m.is_static()).map(|m| m.id.clone()).collect();
        for id in gone {
            tracing::info!(group = %self.id, member = %id, "member did not rejoin in time; removed");
            self.remove_member(&id);
        }
        if !self.members.is_empty() && !self.maybe_elect_new_joined_leader() {
            // Nobody rejoined (only static members left): wait another rebalance timeout
            // for them or for their sessions to expire.
            self.join_deadline = Some(now + self.rebalance_timeout());
            return;
        }
        self.join_deadline = None;
        self.initial_delay = None;
        self.generation += 1;
        self.pending_sync.clear();
        if self.members.is_empty() {
            self.protocol = None;
            self.transition(GroupState::Empty);
            self.dirty = true;
            tracing::info!(group = %self.id, generation = self.generation, "group is now empty");
            return;
        }
        self.protocol = self.select_protocol();
        self.transition(GroupState::CompletingRebalance);
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), protocol = ?self.protocol, "rebalance: members joined");
        let leader = self.leader.clone().unwrap_or_default();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result(&id, id == leader, None);
            let m = self.members.get_mut(&id).expect("member");
            m.complete_join(result);
            m.heartbeat_deadline = now + ms(m.session_timeout_ms);
            self.pending_sync.insert(id);
        }
        self.sync_deadline = Some(now + self.rebalance_timeout());
    }

    fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.clone() else { return false };
        if self.members.get(&leader).is_some_and(Member::is_awaiting_join) {
            return true;
        }
        match self.members.values().find(|m| m.is_awaiting_join()) {
            Some(m) => {
                self.leader = Some(m.id.clone());
                true
            }
            None => false,
        }
    }

    /// Kafka's `removeMemberAndUpdateGroup` (LeaveGroup, session expiry).
    pub fn remove_member_and_update(&mut self, member_id: &str, now: Instant, initial_delay_ms: i32) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.complete_join(JoinResult::error("", KafkaError::UnknownMemberId));
            m.complete_sync(SyncResult::error(KafkaError::UnknownMemberId));
        }
        self.remove_member(member_id);
        match self.state {
            GroupState::Dead | GroupState::Empty => {}
            GroupState::Stable | GroupState::CompletingRebalance => self.maybe_prepare_rebalance(now, initial_delay_ms),
            GroupState::PreparingRebalance => self.try_complete_join(now),
        }
    }

    // ---- JoinGroup -------------------------------------------------------------------

    pub fn join(&mut self, r: JoinRequest, now: Instant, initial_delay_ms: i32) -> Outcome<JoinResult> {
        let outcome = self.join_inner(r, now, initial_delay_ms);
        if self.state == GroupState::PreparingRebalance {
            self.try_complete_join(now);
        }
        outcome
    }

    fn join_inner(&mut self, r: JoinRequest, now: Instant, initial_delay_ms: i32) -> Outcome<JoinResult> {
        let fail = |id: &str, e| Outcome::Now(JoinResult::error(id, e));
        if self.state == GroupState::Dead {
            return fail(&r.member_id, KafkaError::CoordinatorNotAvailable);
        }
        if !self.supports_protocols(&r.protocol_type, &r.protocols) {
            return fail(&r.member_id, KafkaError::InconsistentGroupProtocol);
        }
        if r.member_id.is_empty() {
            let prefix = r.instance_id.clone().unwrap_or_else(|| r.client_id.clone());
            let new_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
            if let Some(instance) = r.instance_id.clone() {
                return match self.static_members.get(&instance).cloned() {
                    Some(old) => self.replace_static_member(&instance, &old, new_id, r, now, initial_delay_ms),
                    None => self.add_member_and_rebalance(new_id, r, now, initial_delay_ms),
                };
            }
            if r.require_known_member_id {
                self.pending_members.insert(new_id.clone(), now + ms(r.session_timeout_ms));
                return fail(&new_id, KafkaError::MemberIdRequired);
            }
            return self.add_member_and_rebalance(new_id, r, now, initial_delay_ms);
        }
        if self.pending_members.contains_key(&r.member_id) {
            if r.instance_id.is_some() {
                return fail(&r.member_id, KafkaError::UnknownMemberId);
            }
            let id = r.member_id.clone();
            return self.add_member_and_rebalance(id, r, now, initial_delay_ms);
        }
        let instance = r.instance_id.as_deref();
        if self.is_static_member_fenced(instance, &r.member_id) {
            return fail(&r.member_id, KafkaError::FencedInstanceId);
        }
        if !self.members.contains_key(&r.member_id) || instance.is_some_and(|i| !self.static_members.contains_key(i)) {
            return fail(&r.member_id, KafkaError::UnknownMemberId);
        }
        let member_id = r.member_id.clone();
        let matches = self.members[&member_id].matches(&r.protocols);
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(r, now, initial_delay_ms),
            GroupState::CompletingRebalance if matches => {
                // A repeated join (the first answer was lost): the same answer again.
                Outcome::Now(self.join_result(&member_id, self.is_leader(&member_id), None))
            }
            GroupState::Stable if matches && !self.is_leader(&member_id) => {
                Outcome::Now(self.join_result(&member_id, false, None))
            }
            GroupState::CompletingRebalance | GroupState::Stable => self.update_member_and_rebalance(r, now, initial_delay_ms),
            GroupState::Empty | GroupState::Dead => fail(&member_id, KafkaError::UnknownMemberId),
        }
    }

    fn add_member_and_rebalance(&mut self, id: String, r: JoinRequest, now: Instant, initial_delay_ms: i32) -> Outcome<JoinResult> {
        let (tx, rx) = oneshot::channel();
        self.pending_members.remove(&id);
        let member = Member {
            id,
            instance_id: r.instance_id,
            client_id: r.client_id,
            client_host: r.client_host,
            rebalance_timeout_ms: r.rebalance_timeout_ms,
            session_timeout_ms: r.session_timeout_ms,
            protocol_type: r.protocol_type,
            protocols: r.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(tx),
            awaiting_sync: None,
            is_new: true,
            heartbeat_deadline: now + Duration::from_millis(NEW_MEMBER_JOIN_TIMEOUT_MS),
        };
        if self.state == GroupState::PreparingRebalance && self.generation == 0 {
            self.new_member_added = true;
        }
        tracing::debug!(group = %self.id, member = %member.id, "member joining");
        self.add_member(member);
        self.maybe_prepare_rebalance(now, initial_delay_ms);
        Outcome::Wait(rx)
    }

    fn update_member_and_rebalance(&mut self, r: JoinRequest, now: Instant, initial_delay_ms: i32) -> Outcome<JoinResult> {
        let (tx, rx) = oneshot::channel();
        let m = self.members.get_mut(&r.member_id).expect("member");
        m.protocols = r.protocols;
        m.rebalance_timeout_ms = r.rebalance_timeout_ms;
        m.session_timeout_ms = r.session_timeout_ms;
        m.client_id = r.client_id;
        m.client_host = r.client_host;
        m.awaiting_join = Some(tx);
        self.maybe_prepare_rebalance(now, initial_delay_ms);
        Outcome::Wait(rx)
    }

    /// Kafka's `updateStaticMemberAndRebalance`: a static member rejoined with a new
    /// member id. The old id is fenced; in a Stable group the member gets its current
    /// assignment back without a rebalance.
    fn replace_static_member(
        &mut self,
        instance: &str,
        old_id: &str,
        new_id: String,
        r: JoinRequest,
        now: Instant,
        initial_delay_ms: i32,
    ) -> Outcome<JoinResult> {
        let current_leader = self.leader.clone();
        let Some(mut m) = self.members.remove(old_id) else {
            return Outcome::Now(JoinResult::error(&r.member_id, KafkaError::UnknownMemberId));
        };
        m.complete_join(JoinResult::error(old_id, KafkaError::FencedInstanceId));
        m.complete_sync(SyncResult::error(KafkaError::FencedInstanceId));
        tracing::info!(group = %self.id, instance, old = old_id, new = %new_id, "static member rejoined; replacing its member id");
        m.id = new_id.clone();
        m.protocols = r.protocols;
        m.rebalance_timeout_ms = r.rebalance_timeout_ms;
        m.session_timeout_ms = r.session_timeout_ms;
        m.client_id = r.client_id;
        m.client_host = r.client_host;
        m.heartbeat_deadline = now + ms(m.session_timeout_ms);
        let (tx, rx) = oneshot::channel();
        m.awaiting_join = Some(tx);
        self.members.insert(new_id.clone(), m);
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        self.static_members.insert(instance.to_string(), new_id.clone());
        match self.state {
            GroupState::Stable => {
                if self.select_protocol() == self.protocol {
                    self.dirty = true;
                    // The old leader id, so that a rejoining leader does not run a
                    // trivial assignment a Stable group would never hand out.
                    let result = self.join_result(&new_id, false, current_leader);
                    self.members.get_mut(&new_id).expect("member").complete_join(result);
                } else {
                    self.maybe_prepare_rebalance(now, initial_delay_ms);
                }
            }
            GroupState::CompletingRebalance => self.prepare_rebalance(now, initial_delay_ms),
            GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => {}
        }
        Outcome::Wait(rx)
    }

    // ---- SyncGroup -------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Outcome<SyncResult> {
        let fail = |e| Outcome::Now(SyncResult::error(e));
        if let Some(e) = self.check_member(member_id, instance_id, generation) {
            return fail(e);
        }
        if protocol_type.is_some_and(|t| self.protocol_type.as_deref() != Some(t))
            || protocol_name.is_some_and(|p| self.protocol.as_deref() != Some(p))
        {
            return fail(KafkaError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => fail(KafkaError::UnknownMemberId),
            GroupState::PreparingRebalance => fail(KafkaError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                self.members.get_mut(member_id).expect("member").awaiting_sync = Some(tx);
                self.pending_sync.remove(member_id);
                if self.is_leader(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                        m.heartbeat_deadline = now + ms(m.session_timeout_ms);
                    }
                    self.sync_due = true;
                    self.transition(GroupState::Stable);
                    self.dirty = true;
                    tracing::info!(group = %self.id, generation = self.generation, "group is stable");
                }
                Outcome::Wait(rx)
            }
            GroupState::Stable => {
                self.pending_sync.remove(member_id);
                let m = self.members.get_mut(member_id).expect("member");
                m.heartbeat_deadline = now + ms(m.session_timeout_ms);
                Outcome::Now(SyncResult {
                    error: None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    assignment: m.assignment.clone(),
                })
            }
        }
    }

    /// After the leader's SyncGroup, once the group's record is written: answers every
    /// member waiting in SyncGroup with its assignment; if the write failed (`error`), with
    /// that error instead, and the group rebalances again (Kafka's store callback).
    pub fn answer_sync(&mut self, error: Option<KafkaError>, now: Instant) {
        if !std::mem::take(&mut self.sync_due) {
            return;
        }
        match error {
            None => {
                let (ptype, pname) = (self.protocol_type.clone(), self.protocol.clone());
                for m in self.members.values_mut() {
                    let assignment = m.assignment.clone();
                    m.complete_sync(SyncResult { error: None, protocol_type: ptype.clone(), protocol_name: pname.clone(), assignment });
                }
            }
            Some(e) => {
                self.reset_and_propagate_assignment_error(e);
                self.prepare_rebalance(now, 0);
            }
        }
    }

    /// This broker stopped coordinating the group: members waiting in JoinGroup or
    /// SyncGroup get `error` (NOT_COORDINATOR: they look the coordinator up again).
    pub fn fail_waiters(&mut self, error: KafkaError) {
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(JoinResult::error(&m.id, error));
            }
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult::error(error));
            }
        }
    }

    /// The checks SyncGroup and Heartbeat share, in Kafka's order: a dead group, a fenced
    /// static member, an unknown member, a stale generation.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>, generation: i32) -> Option<KafkaError> {
        if self.state == GroupState::Dead {
            Some(KafkaError::CoordinatorNotAvailable)
        } else if self.is_static_member_fenced(instance_id, member_id) {
            Some(KafkaError::FencedInstanceId)
        } else if !self.members.contains_key(member_id) {
            Some(KafkaError::UnknownMemberId)
        } else if generation != self.generation {
            Some(KafkaError::IllegalGeneration)
        } else {
            None
        }
    }

    // ---- Heartbeat -------------------------------------------------------------------

    pub fn heartbeat(&mut self, member_id: &str, instance_id: Option<&str>, generation: i32, now: Instant) -> Option<KafkaError> {
        if let Some(e) = self.check_member(member_id, instance_id, generation) {
            return Some(e);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => return Some(KafkaError::UnknownMemberId),
            _ => {}
        }
        let m = self.members.get_mut(member_id).expect("member");
        m.heartbeat_deadline = now + ms(m.session_timeout_ms);
        (self.state == GroupState::PreparingRebalance).then_some(KafkaError::RebalanceInProgress)
    }

    // ---- LeaveGroup ------------------------------------------------------------------

    /// One leaving member (by member id, or by instance id with an empty member id).
    pub fn leave(&mut self, member_id: &str, instance_id: Option<&str>, now: Instant, initial_delay_ms: i32) -> Option<KafkaError> {
        if member_id.is_empty() {
            return match instance_id.and_then(|i| self.static_members.get(i)).cloned() {
                Some(current) => {
                    tracing::info!(group = %self.id, member = %current, "static member removed by LeaveGroup");
                    self.remove_member_and_update(&current, now, initial_delay_ms);
                    None
                }
                None => Some(KafkaError::UnknownMemberId),
            };
        }
        if self.pending_members.remove(member_id).is_some() {
            self.try_complete_join(now);
            return None;
        }
        if self.is_static_member_fenced(instance_id, member_id) {
            return Some(KafkaError::FencedInstanceId);
        }
        if self.members.contains_key(member_id) {
            tracing::info!(group = %self.id, member = %member_id, "member left the group");
            self.remove_member_and_update(member_id, now, initial_delay_ms);
            return None;
        }
        Some(KafkaError::UnknownMemberId)
    }

    // ---- OffsetCommit validation -----------------------------------------------------

    /// Kafka's `validateOffsetCommit` for a classic group; on success a member's session
    /// is extended.
    pub fn validate_commit(&mut self, member_id: &str, instance_id: Option<&str>, generation: i32, now: Instant) -> Option<KafkaError> {
        if self.state == GroupState::Dead {
            return Some(KafkaError::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return None;
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            if self.is_static_member_fenced(instance_id, member_id) {
                return Some(KafkaError::FencedInstanceId);
            }
            if !self.members.contains_key(member_id) {
                return Some(KafkaError::UnknownMemberId);
            }
            if generation != self.generation {
                return Some(KafkaError::IllegalGeneration);
            }
        } else if self.state != GroupState::Empty {
            return Some(KafkaError::UnknownMemberId);
        }
        if self.state == GroupState::CompletingRebalance {
            return Some(KafkaError::RebalanceInProgress);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.heartbeat_deadline = now + ms(m.session_timeout_ms);
        }
        None
    }

    /// Topics the members subscribe to, when every member's metadata is a consumer
    /// subscription we can read; `None` when unknown.
    pub fn subscribed_topics(&self) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = HashSet::new();
        for m in self.members.values() {
            topics.extend(super::consumer_protocol::subscription_topics(&m.metadata(protocol))?);
        }
        Some(topics)
    }

    // ---- Timers ----------------------------------------------------------------------

    /// Expires what is due at `now`: MEMBER_ID_REQUIRED members that never came back,
    /// sessions, the join phase and the sync phase.
    pub fn tick(&mut self, now: Instant, initial_delay_ms: i32) {
        let expired: Vec<String> = self.pending_members.iter().filter(|(_, d)| **d <= now).map(|(id, _)| id.clone()).collect();
        if !expired.is_empty() {
            for id in &expired {
                self.pending_members.remove(id);
            }
            self.try_complete_join(now);
        }
        let dead: Vec<String> = self.members.values().filter(|m| !m.heartbeat_satisfied(now)).map(|m| m.id.clone()).collect();
        for id in dead {
            tracing::info!(group = %self.id, member = %id, "session timed out; removing member");
            self.remove_member_and_update(&id, now, initial_delay_ms);
        }
        if self.state == GroupState::PreparingRebalance && self.join_deadline.is_some_and(|d| d <= now) {
            match self.initial_delay {
                Some(mut init) if self.new_member_added && !init.remaining.is_zero() => {
                    let delay = init.delay.min(init.remaining);
                    init.remaining = init.remaining.saturating_sub(delay);
                    self.initial_delay = Some(init);
                    self.new_member_added = false;
                    self.join_deadline = Some(now + delay);
                }
                _ => {
                    self.initial_delay = None;
                    self.complete_join(now);
                }
            }
        }
        if self.sync_deadline.is_some_and(|d| d <= now) {
            self.sync_deadline = None;
            if matches!(self.state, GroupState::CompletingRebalance | GroupState::Stable) && !self.pending_sync.is_empty() {
                let late: Vec<String> = self.pending_sync.drain().collect();
                for id in late {
                    tracing::info!(group = %self.id, member = %id, "member did not sync in time; removing it");
                    if let Some(mut m) = self.remove_member(&id) {
                        m.complete_sync(SyncResult::error(KafkaError::UnknownMemberId));
                    }
                }
                self.prepare_rebalance(now, initial_delay_ms);
                self.try_complete_join(now);
            }
        }
    }

    /// The earliest instant [`tick`](Self::tick) has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let members = self
            .members
            .values()
            .filter(|m| m.is_new || !(m.is_awaiting_join() || m.is_awaiting_sync()))
            .map(|m| m.heartbeat_deadline);
        let phase = match self.state {
            GroupState::PreparingRebalance => self.join_deadline,
            GroupState::CompletingRebalance | GroupState::Stable => self.sync_deadline,
            _ => None,
        };
        members.chain(self.pending_members.values().copied()).chain(phase).min()
    }
}
