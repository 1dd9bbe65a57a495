//! A partition's replica state in cluster mode (Kafka's `Partition`): whether this broker
//! leads it or follows, the leader epoch, the ISR as the committed image has it, the
//! followers' log ends as the leader saw them in their fetches, and the high watermark.
//!
//! Pure state, no I/O: the publisher feeds it the image's assignment ([`ReplicaState::assign`]),
//! the fetch path feeds it followers' fetch offsets ([`ReplicaState::on_follower_fetch`]),
//! and it answers what changed (the high watermark moved, an ISR change to propose). The
//! controller decides leaders and ISRs; a leader only proposes ISR changes
//! (AlterPartition), which take effect once committed.
//!
//! Invariants: the high watermark never goes back while this broker leads; on the leader it
//! is at most the minimum log end of the ISR (every ISR member holds every record below
//! it), so a record below it survives the loss of any ISR member but one. That ISR is the
//! *maximal* one (Kafka's, KIP-497): the committed ISR plus the followers this leader has
//! proposed to add and not yet seen committed, since the controller may already count them
//! (and elect one of them) while the answer is on its way or lost.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use runnel_controller::types::PartitionAssignment;

/// What the leader knows of one follower.
#[derive(Debug, Clone)]
struct Progress {
    /// Its log end offset: the offset of its last fetch (None: not fetched yet this epoch).
    leo: Option<i64>,
    /// The last time it was known to have the leader's whole log (Kafka's lastCaughtUpTime).
    last_caught_up: Instant,
    /// The leader's log end and the time of its previous fetch.
    prev_fetch: (i64, Instant),
}

/// A change of leadership the broker must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleChange {
    /// Nothing to do (same leader and epoch).
    None,
    /// This broker leads from now on (new epoch).
    BecameLeader,
    /// This broker follows `leader` (-1: no leader) in a new epoch: the fetcher restarts.
    BecameFollower { leader: i32 },
}

/// Why this broker cannot take a produce or a consumer's fetch for the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotServing {
    /// Another broker leads (-1: none does); with its leader epoch.
    NotLeader { leader: i32, leader_epoch: i32 },
    /// The request names an older leader epoch than ours (KIP-320).
    FencedEpoch,
    /// The request names a newer leader epoch than we know.
    UnknownEpoch,
    /// acks=all and the ISR is smaller than `min.insync.replicas`.
    NotEnoughReplicas,
}

/// Why an acks=all wait ended without the ISR having the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitError {
    NotLeader,
    TimedOut,
}

/// An ISR change a leader proposes (AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone)]
pub struct ReplicaState {
    me: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// The high watermark (on a follower: the leader's, capped at our log end).
    pub hw: i64,
    /// The log end when this broker became leader: a follower rejoins the ISR only once it
    /// has everything up to here (it has caught up with this epoch).
    epoch_start_offset: i64,
    followers: HashMap<i32, Progress>,
    /// An ISR change proposed and not yet answered (one at a time).
    pub isr_change_in_flight: bool,
    /// Followers proposed into the ISR, until the next partition epoch shows whether they
    /// are in: the high watermark waits for them too (a proposal that failed may still
    /// have been committed).
    joining: Vec<i32>,
}

impl ReplicaState {
    /// The state of a partition hosted by `me` before any assignment: no leader.
    pub fn new(me: i32, hw: i64) -> Self {
        Self {
            me,
            leader: -1,
            leader_epoch: -1,
            partition_epoch: -1,
            replicas: Vec::new(),
            isr: Vec::new(),
            hw,
            epoch_start_offset: 0,
            followers: HashMap::new(),
            isr_change_in_flight: false,
            joining: Vec::new(),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader == self.me
    }

    /// Checks that this broker leads, against a request's leader epoch (-1: none given).
    /// Returns our leader epoch.
    pub fn check_leader(&self, requested_epoch: i32) -> Result<i32, NotServing> {
        if requested_epoch >= 0 && requested_epoch < self.leader_epoch {
            return Err(NotServing::FencedEpoch);
        }
        if requested_epoch > self.leader_epoch {
            return Err(NotServing::UnknownEpoch);
        }
        if !self.is_leader() {
            return Err(NotServing::NotLeader { leader: self.leader, leader_epoch: self.leader_epoch });
        }
        Ok(self.leader_epoch)
    }

    /// Before a produce with `acks`: this broker must lead, and for acks=all the ISR must
    /// hold at least `min_insync` replicas. Returns the leader epoch to stamp.
    pub fn check_produce(&self, acks: i16, min_insync: usize) -> Result<i32, NotServing> {
        let epoch = self.check_leader(-1)?;
        if acks == -1 && self.isr.len() < min_insync {
            return Err(NotServing::NotEnoughReplicas);
        }
        Ok(epoch)
    }

    /// An acks=all wait for the record at `offset`: None while it must go on waiting;
    /// Ok(true) once the high watermark passed it, Ok(false) if the ISR is below
    /// `min_insync` then (NOT_ENOUGH_REPLICAS_AFTER_APPEND); Err when leadership is lost.
    pub fn replicated(&self, offset: i64, min_insync: usize) -> Option<Result<bool, WaitError>> {
        if !self.is_leader() {
            return Some(Err(WaitError::NotLeader));
        }
        (self.hw > offset).then_some(Ok(self.isr.len() >= min_insync))
    }

    /// Takes the committed assignment `a` (`leo`: our log end now).
    pub fn assign(&mut self, a: &PartitionAssignment, leo: i64, now: Instant) -> RoleChange {
        let new_epoch = a.leader_epoch != self.leader_epoch || a.leader != self.leader;
        if a.partition_epoch != self.partition_epoch {
            self.isr_change_in_flight = false;
            self.joining.clear();
        }
        self.replicas = a.replicas.clone();
        self.isr = a.isr.clone();
        self.partition_epoch = a.partition_epoch;
        if !new_epoch {
            // A smaller ISR may let the high watermark move (the caller compares).
            self.update_hw(leo);
            return RoleChange::None;
        }
        self.leader = a.leader;
        self.leader_epoch = a.leader_epoch;
        if self.is_leader() {
            self.epoch_start_offset = leo;
            // Followers start unknown, with a full lag allowance.
            self.followers = a
                .replicas
                .iter()
                .filter(|r| **r != self.me)
                .map(|r| (*r, Progress { leo: None, last_caught_up: now, prev_fetch: (leo, now) }))
                .collect();
            self.hw = self.hw.min(leo);
            self.update_hw(leo);
            RoleChange::BecameLeader
        } else {
            self.followers.clear();
            RoleChange::BecameFollower { leader: a.leader }
        }
    }

    /// Leader: recomputes the high watermark from the ISR's log ends (`leo`: ours).
    /// Returns whether it moved.
    pub fn update_hw(&mut self, leo: i64) -> bool {
        if !self.is_leader() {
            return false;
        }
        let mut min = leo;
        for r in self.isr.iter().chain(&self.joining).filter(|r| **r != self.me) {
            match self.followers.get(r).and_then(|p| p.leo) {
                Some(l) => min = min.min(l),
                None => return false,
            }
        }
        if min > self.hw {
            self.hw = min;
            return true;
        }
        false
    }

    /// Leader: follower `id` fetched from `fetch_offset` (so it has everything below it);
    /// `leo` is ours. Returns whether the high watermark moved, and an ISR expansion to
    /// propose when the follower caught up.
    pub fn on_follower_fetch(&mut self, id: i32, fetch_offset: i64, leo: i64, now: Instant) -> (bool, Option<IsrProposal>) {
        let Some(p) = self.followers.get_mut(&id) else { return (false, None) };
        if fetch_offset >= leo {
            p.last_caught_up = now;
        } else if fetch_offset >= p.prev_fetch.0 {
            p.last_caught_up = p.last_caught_up.max(p.prev_fetch.1);
        }
        p.prev_fetch = (leo, now);
        p.leo = Some(fetch_offset.min(leo));
        let moved = self.update_hw(leo);
        let joins = !self.isr.contains(&id) && fetch_offset >= self.hw && fetch_offset >= self.epoch_start_offset;
        let proposal = (joins && !self.isr_change_in_flight).then(|| {
            let mut isr = self.isr.clone();
            isr.push(id);
            if !self.joining.contains(&id) {
                self.joining.push(id);
            }
            self.proposal(isr)
        });
        (moved, proposal)
    }

    /// Leader: the ISR without the followers that have not caught up for `max_lag` (a
    /// lagging follower still joining is left out too: the commit's new partition epoch
    /// ends its wait).
    pub fn shrink_proposal(&mut self, max_lag: Duration, now: Instant) -> Option<IsrProposal> {
        if !self.is_leader() || self.isr_change_in_flight {
            return None;
        }
        let lagging = |r: &i32| self.followers.get(r).is_some_and(|p| now.duration_since(p.last_caught_up) > max_lag);
        if !self.isr.iter().chain(&self.joining).any(lagging) {
            return None;
        }
        let isr: Vec<i32> = self.isr.iter().copied().filter(|r| !lagging(r)).collect();
        Some(self.proposal(isr))
    }

    fn proposal(&mut self, isr: Vec<i32>) -> IsrProposal {
        self.isr_change_in_flight = true;
        IsrProposal { leader: self.me, leader_epoch: self.leader_epoch, partition_epoch: self.partition_epoch, isr }
    }

    /// Follower: the leader's high watermark arrived with a fetch (`leo`: ours).
    pub fn follow_hw(&mut self, leader_hw: i64, leo: i64) {
        if !self.is_leader() {
            self.hw = leader_hw.min(leo).max(self.hw.min(leo));
        }
    }

    /// How far each follower's log end is behind `leo` (unknown: all of it), for metrics.
    pub fn follower_lag(&self, leo: i64) -> i64 {
        self.followers.values().map(|p| leo - p.leo.unwrap_or(0)).max().unwrap_or(0).max(0)
    }
}

/// Where a follower that starts following a new leader epoch cuts its log (KIP-101/279):
/// it asked the leader where `requested` (the latest epoch of its own log) ends and got
/// `answer` (epoch, end offset). The same epoch: at that end; an older one: at its end in
/// the leader's log or in ours (`own_end`), whichever is lower; none known to the leader
/// (-1): at our high watermark `hw` (everything below it is on every ISR member).
pub fn truncation_offset(requested: i32, answer: (i32, i64), hw: i64, own_end: impl FnOnce(i32) -> i64) -> i64 {
    let (epoch, end) = answer;
    if epoch < 0 || end < 0 {
        hw
    } else if epoch == requested {
        end
    } else {
        end.min(own_end(epoch))
    }
}

/// Where a follower whose fetch offset is outside the leader's log goes: below its start
/// (`log_start`), start again there; above its end, cut back to its high watermark.
pub fn out_of_range_offset(fetch_offset: i64, log_start: i64, leader_hw: i64) -> i64 {
    if fetch_offset < log_start {
        log_start
    } else {
        leader_hw.max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(leader: i32, epoch: i32, isr: Vec<i32>) -> PartitionAssignment {
        PartitionAssignment { replicas: vec![1, 2, 3], leader, leader_epoch: epoch, isr, partition_epoch: epoch }
    }

    #[test]
    fn the_high_watermark_is_the_isr_minimum_and_never_goes_back() {
        let now = Instant::now();
        let mut s = ReplicaState::new(1, 0);
        assert_eq!(s.assign(&assignment(1, 0, vec![1, 2, 3]), 10, now), RoleChange::BecameLeader);
        assert!(!s.update_hw(10), "followers unknown: no advance");
        assert_eq!(s.on_follower_fetch(2, 10, 10, now), (false, None));
        assert_eq!(s.on_follower_fetch(3, 4, 10, now), (true, None));
        assert_eq!(s.hw, 4);
        assert!(s.on_follower_fetch(3, 10, 12, now).0);
        assert_eq!(s.hw, 10);
        // A smaller ISR never pulls the high watermark back.
        s.isr = vec![1];
        assert!(s.update_hw(12));
        assert_eq!(s.hw, 12);
        s.isr = vec![1, 2];
        assert!(!s.update_hw(12));
        assert_eq!(s.hw, 12);
    }

    #[test]
    fn a_lagging_follower_is_proposed_out_and_back_in_once_caught_up() {
        let t0 = Instant::now();
        let mut s = ReplicaState::new(1, 0);
        s.assign(&assignment(1, 3, vec![1, 2, 3]), 0, t0);
        let lag = Duration::from_millis(100);
        let t1 = t0 + Duration::from_millis(50);
        s.on_follower_fetch(2, 0, 5, t1);
        s.on_follower_fetch(3, 5, 5, t1);
        assert_eq!(s.shrink_proposal(lag, t1), None);
        let t2 = t0 + Duration::from_millis(200);
        s.on_follower_fetch(3, 5, 5, t2);
        let p = s.shrink_proposal(lag, t2).expect("2 lags");
        assert_eq!((p.isr, p.leader_epoch, p.partition_epoch), (vec![1, 3], 3, 3));
        assert_eq!(s.shrink_proposal(lag, t2), None, "one change in flight");
        // Committed: the publisher assigns the new ISR (partition epoch moved).
        s.assign(&PartitionAssignment { partition_epoch: 4, ..assignment(1, 3, vec![1, 3]) }, 5, t2);
        assert_eq!(s.hw, 5);
        let (_, p) = s.on_follower_fetch(2, 5, 5, t2);
        assert_eq!(p.expect("2 caught up").isr, vec![1, 3, 2]);
    }

    /// Found by the simulation (`sim`, see its regression seeds): the controller committed a
    /// follower's join while the leader still computed the high watermark without it; the
    /// leader acknowledged records the follower lacked, then died, and the follower was
    /// elected without them.
    #[test]
    fn the_high_watermark_waits_for_a_follower_whose_join_is_proposed() {
        let t = Instant::now();
        let mut s = ReplicaState::new(1, 0);
        s.assign(&PartitionAssignment { partition_epoch: 1, ..assignment(1, 0, vec![1, 3]) }, 0, t);
        s.on_follower_fetch(3, 0, 0, t);
        let (_, p) = s.on_follower_fetch(2, 0, 0, t);
        assert_eq!(p.expect("2 caught up").isr, vec![1, 3, 2]);
        // Records 0..5 appended; 3 has them all, 2 none: the high watermark stays.
        assert_eq!(s.on_follower_fetch(3, 5, 5, t), (false, None));
        assert_eq!(s.hw, 0);
        // The proposal failed (its outcome unknown): the wait goes on.
        s.isr_change_in_flight = false;
        assert!(!s.update_hw(5));
        assert!(s.on_follower_fetch(2, 4, 5, t).0);
        assert_eq!(s.hw, 4);
        // A lagging joiner is dropped by an ISR change; its commit ends the wait.
        s.isr_change_in_flight = false;
        let later = t + Duration::from_millis(500);
        s.on_follower_fetch(3, 5, 5, later);
        let p = s.shrink_proposal(Duration::from_millis(100), later).expect("2 lags");
        assert_eq!(p.isr, vec![1, 3]);
        s.assign(&PartitionAssignment { partition_epoch: 2, ..assignment(1, 0, vec![1, 3]) }, 5, later);
        assert_eq!(s.hw, 5);
    }

    #[test]
    fn a_new_leader_epoch_makes_a_follower_restart_its_fetcher() {
        let now = Instant::now();
        let mut s = ReplicaState::new(2, 0);
        assert_eq!(s.assign(&assignment(1, 0, vec![1, 2, 3]), 0, now), RoleChange::BecameFollower { leader: 1 });
        assert_eq!(s.assign(&assignment(1, 0, vec![1, 2]), 0, now), RoleChange::None);
        assert_eq!(s.assign(&assignment(3, 1, vec![3, 2]), 0, now), RoleChange::BecameFollower { leader: 3 });
        s.follow_hw(7, 5);
        assert_eq!(s.hw, 5);
        assert_eq!(s.assign(&assignment(2, 2, vec![2]), 5, now), RoleChange::BecameLeader);
    }
}
