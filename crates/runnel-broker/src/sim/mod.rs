//! A seeded, deterministic simulation of one replicated partition on three brokers and the
//! controller, checked after every step (issue 9). It drives the real decision code:
//! [`ReplicaState`] (assignment, high watermark, ISR proposals, leader and produce checks,
//! the acks=all wait), [`ClusterImage::apply`] (registration, fencing, election, stale ISR
//! changes refused), [`LeaderEpochs`] (the leader-epoch checkpoint's entries) and the
//! follower's truncation points ([`replica::truncation_offset`], [`replica::out_of_range_offset`]).
//! Only the transport, the clock, the disk and the Raft log are modelled: a log per replica of
//! (leader epoch, record id) entries, durable across a crash with its epochs; the committed
//! controller records in one total order (the quorum is openraft's job); messages in flight
//! that are delivered in any order or lost; a virtual clock in milliseconds. The glue that
//! `Partition`, `fetcher`, the Fetch and OffsetForLeaderEpoch handlers and the controller's
//! heartbeat and fence loops put around that code is mirrored here step by step (each
//! function names what it mirrors).
//!
//! A seeded scheduler ([`ChaCha8Rng`]) picks each step: a produce (acks=all) to a broker
//! that thinks it leads (checked, then appended in a later step), a follower's next
//! request, the delivery or loss of a message, a parked follower fetch answered, an append
//! or a follower's log cut finishing on its blocking thread (in any order), a broker
//! applying the next metadata record, time
//! passing (heartbeats, fencing, ISR shrinks, high watermark checkpoints, acks=all
//! timeouts), a crash or restart of a broker (its log and epochs kept, its high watermark
//! from its last checkpoint), links cut and healed between brokers and between a broker
//! and the controller, a controller failover.
//!
//! Checked after every step:
//! - no record below a high watermark a leader served (every acknowledged record is) is
//!   missing from the log of the current leader (the one the controller's image names, once
//!   it acts as leader in that epoch), and two leaders never served different records below
//!   their high watermarks;
//! - an acknowledged record is at its acknowledged offset in the acknowledging leader's log;
//! - at most one broker ever leads a given leader epoch;
//! - the high watermark a leader serves never goes back within its epoch (a new leader may
//!   start lower, as in Kafka, until its followers report: it then answers reads above it
//!   with nothing; what matters, that nothing below the old one is lost, is the first check);
//! - every replica's log agrees with the current leader's below its own high watermark.
//!
//! Found so far: a leader computed its high watermark without a follower whose ISR join it
//! had proposed, while the controller could already count (and elect) that follower; fixed
//! with Kafka's maximal ISR in [`ReplicaState`] (regression seeds in `tests.rs`). And, in a
//! scripted run (`a_fetch_parked_on_a_deposed_leader_reads_nothing`), a follower fetch parked
//! on a leader deposed meanwhile read the new leader's records from it; the Fetch handler
//! now checks leadership again when it reads. And a follower's append or log cut handed to
//! a blocking thread ran even after its fetcher was cancelled for a new epoch: after the next
//! fetcher's cut (old records kept below the high watermark) or after the broker became
//! leader (its log cut below its high watermark); `Partition::append_as_follower` and
//! `truncate_as_follower` now check the cancellation under the partition's locks
//! (`Options::stale_jobs` switches the old rule back on for a test). Likewise a produce's
//! append, checked as leader and run later, could land in the log of a broker that had become
//! a follower meanwhile; `Partition::append_as_leader` checks the epoch under the log's lock.
//!
//! On a failure the test panics with the seed, the step, the broken invariant, the last
//! events and the command that replays it: `RUNNEL_SIM_SEED=N cargo test -p runnel-broker
//! --lib sim_seeds`. `RUNNEL_SIM_SEEDS=N` runs more seeds. No threads, no wall clock: the run is a
//! function of the seed.

mod checks;
mod follower;
mod metadata;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use runnel_controller::types::{BrokerRegistration, ControllerRecord, PartitionAssignment};
use runnel_controller::ClusterImage;
use runnel_metadata::{MetadataRecord, Uuid};
use runnel_storage::LeaderEpochs;

use crate::replica::{self, IsrProposal, NotServing, ReplicaState, RoleChange};

/// The simulated brokers (node ids); the controller is node 0.
const BROKERS: [i32; 3] = [1, 2, 3];
const CONTROLLER: i32 = 0;
const TOPIC: Uuid = Uuid::from_u128(0x5133_0009);
/// `broker.heartbeat.interval.ms`, `broker.session.timeout.ms`, `replica.lag.time.max.ms`,
/// `replica.fetch.wait.max.ms` and the producer's request timeout, in virtual ms.
const HEARTBEAT_MS: u64 = 500;
const SESSION_MS: u64 = 2000;
const MAX_LAG_MS: u64 = 1500;
const FETCH_WAIT_MS: u64 = 500;
const ACK_TIMEOUT_MS: u64 = 5000;
/// Events kept for the failure report.
const TRACE: usize = 60;

/// How one run goes.
#[derive(Debug, Clone)]
pub struct Options {
    pub steps: usize,
    /// A deliberately broken rule, to prove the checker can fail: when a partition is left
    /// without a leader, a live replica outside the ISR is elected (unclean election).
    pub unclean_election: bool,
    /// Most records a fetch answer carries (1 to this many, at random).
    pub max_fetch_records: i64,
    /// The old, broken rules: a follower's append or cut that was handed to a blocking
    /// thread still runs after its fetcher is cancelled, and a produce's append still runs
    /// after its broker stopped leading the epoch it checked.
    pub stale_jobs: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { steps: 1000, unclean_election: false, max_fetch_records: 4, stale_jobs: false }
    }
}

/// A broken invariant.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub step: usize,
    pub what: String,
    pub trace: Vec<String>,
    /// The broken rule switched on ([`Options`]), if any.
    pub broken_rule: Option<&'static str>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "simulation seed {} failed at step {}: {}", self.seed, self.step, self.what)?;
        writeln!(f, "last events (step: event):")?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        match &self.broken_rule {
            None => write!(f, "replay: RUNNEL_SIM_SEED={} cargo test -p runnel-broker --lib sim_seeds -- --nocapture", self.seed),
            Some(rule) => write!(f, "(a deliberately broken rule was on: {rule})"),
        }
    }
}

/// One record in a replica's log (its offset is its index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    epoch: i32,
    id: u64,
}

/// The follower's fetcher task (`fetcher::run`): whom it follows, whether it has cut its
/// log for this epoch yet, and whether a request is out.
#[derive(Debug, Clone)]
struct Fetcher {
    leader: i32,
    epoch: i32,
    gen: u64,
    truncated: bool,
    busy: bool,
}

/// An acks=all produce waiting in `Partition::wait_replicated`.
#[derive(Debug, Clone)]
struct Pending {
    offset: i64,
    id: u64,
    since: u64,
}

/// A follower's append of a fetch answer or cut of its log, handed to a blocking thread
/// (`fetcher::append`, `fetcher::cut` under `spawn_blocking`): it runs later, and runs even
/// if the fetcher is cancelled meanwhile (only the wait for it is dropped), so it checks
/// the cancellation itself (`Partition::append_as_follower`, `truncate_as_follower`).
#[derive(Debug, Clone)]
enum Job {
    Append { gen: u64, fetch_offset: i64, entries: Vec<Entry>, hw: i64 },
    Cut { gen: u64, to: i64, why: String },
    /// A produce's append, checked (`check_produce`) in `epoch` (handlers/produce.rs may
    /// run it on a blocking thread).
    Produce { epoch: i32, id: u64 },
}

/// A follower fetch parked on the leader for lack of data (the Fetch handler's long poll);
/// it has passed the leader check and will read the log as it is when it wakes.
#[derive(Debug, Clone)]
struct Parked {
    /// The fetch's `current_leader_epoch`, checked again when it reads.
    current_epoch: i32,
    follower: i32,
    follower_inc: u64,
    gen: u64,
    fetch_offset: i64,
}

struct Broker {
    id: i32,
    up: bool,
    incarnation: u64,
    // Durable: the log, its leader epochs, the high watermark checkpoint, the metadata
    // records applied (the node's Raft log and snapshot).
    log: Vec<Entry>,
    epochs: LeaderEpochs,
    hw_checkpoint: Option<i64>,
    image: ClusterImage,
    applied: usize,
    // Lost in a crash.
    state: ReplicaState,
    /// This run's registration: proposed, committed at this index (1-based).
    registering: bool,
    registered_at: Option<usize>,
    /// The publisher runs (`Cluster::wait_registered` passed): assignments are acted on.
    publishing: bool,
    fetcher: Option<Fetcher>,
    pending: Vec<Pending>,
    parked: Vec<Parked>,
    jobs: Vec<Job>,
    last_heartbeat: u64,
    /// Highest high watermark served as leader, per leader epoch.
    served_hw: BTreeMap<i32, i64>,
}

impl Broker {
    fn leo(&self) -> i64 {
        self.log.len() as i64
    }

    /// `Partition::high_watermark`.
    fn hw(&self) -> i64 {
        self.state.hw.min(self.leo())
    }

    /// `Partition::epoch_end` (cluster mode).
    fn epoch_end(&self, requested: i32) -> (i32, i64) {
        self.epochs.end_offset_for(requested, self.leo())
    }

    /// `Partition::truncate_to`: the log, then its epochs.
    fn truncate_to(&mut self, offset: i64) -> i64 {
        if offset < self.leo() {
            self.log.truncate(offset.max(0) as usize);
        }
        let end = self.leo();
        self.epochs.truncate_from_end(end);
        end
    }
}

#[derive(Debug, Clone)]
enum Body {
    EpochReq { gen: u64, current_epoch: i32, requested: i32 },
    EpochResp { gen: u64, requested: i32, answer: Result<(i32, i64), NotServing> },
    FetchReq { gen: u64, current_epoch: i32, fetch_offset: i64 },
    FetchResp { gen: u64, fetch_offset: i64, result: FetchResult },
    Propose { record: ControllerRecord },
    /// The controller's answer: the record's index once committed, or refused.
    ProposeResp { register: bool, committed: Option<usize> },
}

#[derive(Debug, Clone)]
enum FetchResult {
    Refused(NotServing),
    OutOfRange { log_start: i64, hw: i64 },
    Data { entries: Vec<Entry>, hw: i64 },
}

#[derive(Debug, Clone)]
struct Msg {
    from: i32,
    from_inc: u64,
    to: i32,
    to_inc: u64,
    body: Body,
}

struct Controller {
    log: Vec<ControllerRecord>,
    image: ClusterImage,
    last_seen: BTreeMap<i32, u64>,
}

pub struct World {
    seed: u64,
    opts: Options,
    rng: ChaCha8Rng,
    now: u64,
    origin: Instant,
    min_insync: usize,
    /// Per-seed factors (1..=3) on the events' weights for half the seeds, so seeds differ in
    /// what they stress (swarm testing): some crash often, some lose many messages.
    swarm: [u32; 13],
    brokers: Vec<Broker>,
    controller: Controller,
    net: Vec<Msg>,
    /// Links cut, as (lower id, higher id); the controller is 0.
    cut: BTreeSet<(i32, i32)>,
    next_id: u64,
    gen: u64,
    /// The records below the highest high watermark any leader served (all acknowledged
    /// records are among them): they must never be lost.
    visible: Vec<Entry>,
    /// Which broker led each leader epoch.
    leaders: BTreeMap<i32, i32>,
    acked: u64,
    /// An invariant broken during a step (checked with the others after it).
    broken: Option<String>,
    trace: VecDeque<String>,
    step: usize,
}

/// Applies a committed record as every node does; with the broken rule of
/// [`Options::unclean_election`], a leaderless partition then takes a live replica outside
/// its ISR as leader.
fn apply(image: &mut ClusterImage, index: usize, record: &ControllerRecord, unclean: bool) {
    image.apply(index as u64, 1, record);
    if !unclean {
        return;
    }
    let live: Vec<i32> = image.live_brokers().map(|b| b.broker_id).collect();
    for p in image.partitions.values_mut().flatten().filter(|p| p.leader == -1) {
        if let Some(r) = p.replicas.iter().copied().find(|r| live.contains(r) && !p.isr.contains(r)) {
            p.leader = r;
            p.isr = vec![r];
            p.leader_epoch += 1;
            p.partition_epoch += 1;
        }
    }
}

fn registration(id: i32) -> ControllerRecord {
    ControllerRecord::RegisterBroker(BrokerRegistration {
        broker_id: id,
        host: "sim".into(),
        port: id,
        rack: None,
        fenced: false,
        listeners: vec![],
    })
}

fn link(a: i32, b: i32) -> (i32, i32) {
    (a.min(b), a.max(b))
}

impl World {
    pub fn new(seed: u64, opts: Options) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let min_insync = rng.gen_range(1..=2);
        // Half the seeds weigh every event alike; the other half by per-seed factors.
        let mut swarm = [1; 13];
        if rng.gen_bool(0.5) {
            for f in swarm.iter_mut() {
                *f = rng.gen_range(1..=3);
            }
        }
        let mut replicas = BROKERS.to_vec();
        replicas.rotate_left(rng.gen_range(0..3));
        let mut controller = Controller { log: Vec::new(), image: ClusterImage::default(), last_seen: BTreeMap::new() };
        let create = ControllerRecord::Topic {
            topic_id: TOPIC,
            change: MetadataRecord::CreateTopic { name: "sim".into(), topic_id: TOPIC, partitions: 1, configs: Default::default() },
            assignments: vec![PartitionAssignment::new(replicas.clone())],
        };
        let mut registered = BTreeMap::new();
        for record in BROKERS.iter().map(|b| registration(*b)).chain([create]) {
            controller.log.push(record.clone());
            apply(&mut controller.image, controller.log.len(), &record, opts.unclean_election);
            if let ControllerRecord::RegisterBroker(r) = &record {
                registered.insert(r.broker_id, controller.log.len());
            }
        }
        let origin = Instant::now();
        let brokers = BROKERS
            .iter()
            .map(|&id| {
                controller.last_seen.insert(id, 0);
                Broker {
                    id,
                    up: true,
                    incarnation: 1,
                    log: Vec::new(),
                    epochs: LeaderEpochs::default(),
                    hw_checkpoint: None,
                    image: controller.image.clone(),
                    applied: controller.log.len(),
                    state: ReplicaState::new(id, 0),
                    registering: false,
                    registered_at: Some(registered[&id]),
                    publishing: true,
                    fetcher: None,
                    pending: Vec::new(),
                    parked: Vec::new(),
                    jobs: Vec::new(),
                    last_heartbeat: 0,
                    served_hw: BTreeMap::new(),
                }
            })
            .collect();
        let mut w = World {
            seed,
            opts,
            rng,
            now: 0,
            origin,
            min_insync,
            swarm,
            brokers,
            controller,
            net: Vec::new(),
            cut: BTreeSet::new(),
            next_id: 1,
            gen: 0,
            visible: Vec::new(),
            leaders: BTreeMap::new(),
            acked: 0,
            broken: None,
            trace: VecDeque::new(),
            step: 0,
        };
        w.log(format!("start: replicas {replicas:?}, min.insync.replicas {min_insync}, event weights x {swarm:?}"));
        for i in 0..w.brokers.len() {
            w.reconcile(i);
        }
        w
    }

    /// Runs `opts.steps` steps, checking after each.
    pub fn run(mut self) -> Result<Stats, Failure> {
        self.check().map_err(|what| self.failure(what))?;
        for step in 1..=self.opts.steps {
            self.step = step;
            self.next_event();
            self.resolve_acks();
            self.check().map_err(|what| self.failure(what))?;
        }
        Ok(Stats { acked: self.acked, epochs: self.leaders.len() as u64 })
    }

    fn failure(&self, what: String) -> Failure {
        let broken_rule = match (self.opts.unclean_election, self.opts.stale_jobs) {
            (true, _) => Some("unclean_election"),
            (_, true) => Some("stale_jobs"),
            _ => None,
        };
        Failure { seed: self.seed, step: self.step, what, trace: self.trace.iter().cloned().collect(), broken_rule }
    }

    fn log(&mut self, event: String) {
        if self.trace.len() == TRACE {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("{:>4} t={:>6}ms: {event}", self.step, self.now));
    }

    fn instant(&self) -> Instant {
        self.origin + Duration::from_millis(self.now)
    }

    fn idx(&self, id: i32) -> usize {
        (id - 1) as usize
    }

    fn linked(&self, a: i32, b: i32) -> bool {
        !self.cut.contains(&link(a, b))
    }

    fn send(&mut self, from: i32, to: i32, body: Body) {
        let from_inc = if from == CONTROLLER { 0 } else { self.brokers[self.idx(from)].incarnation };
        let to_inc = if to == CONTROLLER { 0 } else { self.brokers[self.idx(to)].incarnation };
        self.net.push(Msg { from, from_inc, to, to_inc, body });
    }

    // ---- the scheduler

    fn next_event(&mut self) {
        let down = self.brokers.iter().filter(|b| !b.up).count();
        let parked: usize = self.brokers.iter().map(|b| b.parked.len()).sum();
        let jobs: usize = self.brokers.iter().map(|b| b.jobs.len()).sum();
        let choices: [(u32, u8); 13] = [
            (14, 0),                                                 // produce
            (22, 1),                                                 // a follower's next request
            (if self.net.is_empty() { 0 } else { 28 }, 2),           // deliver a message
            (if self.net.is_empty() { 0 } else { 2 }, 3),            // lose a message
            (if parked == 0 { 0 } else { 6 }, 4),                    // a parked fetch wakes
            (14, 5),                                                 // a broker applies metadata
            (8, 6),                                                  // time passes
            (if down < 2 { 1 } else { 0 }, 7),                       // a broker crashes
            (if down > 0 { 3 } else { 0 }, 8),                       // a broker restarts
            (2, 9),                                                  // a link is cut
            (if self.cut.is_empty() { 0 } else { 3 }, 10),           // links heal
            (1, 11),                                                 // controller failover
            (if jobs == 0 { 0 } else { 6 }, 12),                     // an append or a cut runs
        ];
        let choices = choices.map(|(weight, kind)| (weight * self.swarm[kind as usize], kind));
        let total: u32 = choices.iter().map(|c| c.0).sum();
        let mut pick = self.rng.gen_range(0..total);
        let mut kind = 0;
        for (weight, k) in choices {
            if pick < weight {
                kind = k;
                break;
            }
            pick -= weight;
        }
        match kind {
            0 => self.produce(),
            1 => self.fetcher_step(),
            2 => {
                let i = self.rng.gen_range(0..self.net.len());
                let m = self.net.swap_remove(i);
                self.deliver(m);
            }
            3 => {
                let i = self.rng.gen_range(0..self.net.len());
                let m = self.net.swap_remove(i);
                self.log(format!("lost {} -> {}: {:?}", m.from, m.to, m.body));
                self.lost(m);
            }
            4 => {
                let holders: Vec<usize> = (0..self.brokers.len()).filter(|i| !self.brokers[*i].parked.is_empty()).collect();
                let b = holders[self.rng.gen_range(0..holders.len())];
                let k = self.rng.gen_range(0..self.brokers[b].parked.len());
                let p = self.brokers[b].parked.remove(k);
                self.answer_parked(b, p);
            }
            5 => self.metadata_step(),
            6 => self.tick(),
            7 => {
                let up: Vec<usize> = (0..self.brokers.len()).filter(|i| self.brokers[*i].up).collect();
                let b = up[self.rng.gen_range(0..up.len())];
                self.crash(b);
            }
            8 => {
                let down: Vec<usize> = (0..self.brokers.len()).filter(|i| !self.brokers[*i].up).collect();
                let b = down[self.rng.gen_range(0..down.len())];
                self.restart(b);
            }
            9 => {
                let a = BROKERS[self.rng.gen_range(0..3)];
                let b = [CONTROLLER, 1, 2, 3].into_iter().filter(|x| *x != a).nth(self.rng.gen_range(0..3)).unwrap();
                self.cut.insert(link(a, b));
                self.log(format!("link {a} <-> {b} cut"));
            }
            10 => {
                if self.rng.gen_bool(0.5) {
                    self.cut.clear();
                    self.log("every link healed".into());
                } else {
                    let l = *self.cut.iter().nth(self.rng.gen_range(0..self.cut.len())).unwrap();
                    self.cut.remove(&l);
                    self.log(format!("link {} <-> {} healed", l.0, l.1));
                }
            }
            12 => {
                let holders: Vec<usize> = (0..self.brokers.len()).filter(|i| !self.brokers[*i].jobs.is_empty()).collect();
                let b = holders[self.rng.gen_range(0..holders.len())];
                // Blocking threads run in any order (a fetcher waits for its own, though).
                let k = self.rng.gen_range(0..self.brokers[b].jobs.len());
                let job = self.brokers[b].jobs.remove(k);
                self.run_job(b, job);
            }
            _ => {
                // A new controller leader gives every broker a full session (`fence_loop`).
                let now = self.now;
                for t in self.controller.last_seen.values_mut() {
                    *t = now;
                }
                self.log("controller failover: every broker gets a full session".into());
            }
        }
    }

    // ---- producers

    /// A client's acks=all produce to a broker that thinks it leads (else to any broker
    /// up), as `handlers/produce.rs`: check, append stamped with the leader epoch, wait.
    fn produce(&mut self) {
        let up: Vec<usize> = (0..self.brokers.len()).filter(|i| self.brokers[*i].up).collect();
        if up.is_empty() {
            return;
        }
        let leaders: Vec<usize> = up.iter().copied().filter(|i| self.brokers[*i].state.is_leader()).collect();
        let pool = if leaders.is_empty() { &up } else { &leaders };
        let b = pool[self.rng.gen_range(0..pool.len())];
        self.produce_to(b);
    }

    fn produce_to(&mut self, b: usize) {
        let id = self.next_id;
        let min_insync = self.min_insync;
                let br = &mut self.brokers[b];
        match br.state.check_produce(-1, min_insync) {
            Err(e) => {
                let line = format!("produce #{id} to {}: refused {e:?}", br.id);
                self.log(line);
            }
            Ok(epoch) => {
                self.next_id += 1;
                br.jobs.push(Job::Produce { epoch, id });
            }
        }
    }

    /// A produce's append (`Partition::append_as_leader`: this broker must still lead in
    /// the epoch it checked), `on_append`, then the acks=all wait.
    fn append_as_leader(&mut self, b: usize, epoch: i32, id: u64) {
        let now = self.now;
        let br = &mut self.brokers[b];
        let leads = br.state.is_leader() && br.state.leader_epoch == epoch;
        if !leads && !self.opts.stale_jobs {
            let line = format!("produce #{id} to {}: no longer leads epoch {epoch}, refused", br.id);
            self.log(line);
            return;
        }
        br.log.push(Entry { epoch, id });
        let leo = br.leo();
        // `Partition::on_append`.
        br.state.update_hw(leo);
        br.pending.push(Pending { offset: leo - 1, id, since: now });
        let line = format!("produce #{id} to {}: appended at {} in epoch {epoch}, hw {}", br.id, leo - 1, br.hw());
        self.log(line);
        // A follower parked at the old log end wakes on the append.
        let parked = std::mem::take(&mut self.brokers[b].parked);
        for p in parked {
            self.answer_parked(b, p);
        }
    }

    /// `Partition::wait_replicated` for every waiting produce (waiters are woken by every
    /// change of the replica state, so they see each one).
    fn resolve_acks(&mut self) {
        for b in 0..self.brokers.len() {
            if !self.brokers[b].up {
                continue;
            }
            let pending = std::mem::take(&mut self.brokers[b].pending);
            for p in pending {
                let br = &self.brokers[b];
                match br.state.replicated(p.offset, self.min_insync) {
                    None if self.now - p.since > ACK_TIMEOUT_MS => {
                        self.log(format!("produce #{} on {}: timed out", p.id, br.id));
                    }
                    None => self.brokers[b].pending.push(p),
                    Some(Ok(true)) => {
                        let at = br.log.get(p.offset as usize).copied();
                        let id = br.id;
                        if at.map(|e| e.id) != Some(p.id) {
                            // The client is told its record is at this offset: it must be.
                            let what = format!("produce #{} acknowledged by {id} at {}, where its log holds {at:?}", p.id, p.offset);
                            self.broken.get_or_insert(what);
                            continue;
                        }
                        self.acked += 1;
                        self.log(format!("produce #{} acknowledged by {id} at offset {}", p.id, p.offset));
                    }
                    Some(r) => {
                        let line = format!("produce #{} on {}: {r:?}", p.id, br.id);
                        self.log(line);
                    }
                }
            }
        }
    }

    // ---- time

    /// Time passes: heartbeats (`Controller::run_broker`, `on_heartbeat`), the fence loop,
    /// ISR shrink checks (`run_isr_checks`), high watermark checkpoints, and parked fetches
    /// reach `replica.fetch.wait.max.ms`.
    fn tick(&mut self) {
        let dt = self.rng.gen_range(50..=700);
        self.pass(dt);
    }

    fn pass(&mut self, dt: u64) {
        self.now += dt;
        self.log(format!("{dt} ms pass"));
        for b in 0..self.brokers.len() {
            let (id, up) = (self.brokers[b].id, self.brokers[b].up);
            if !up {
                continue;
            }
            if self.brokers[b].registered_at.is_none() {
                if !self.brokers[b].registering {
                    self.brokers[b].registering = true;
                    self.send(id, CONTROLLER, Body::Propose { record: registration(id) });
                }
            } else if self.now - self.brokers[b].last_heartbeat >= HEARTBEAT_MS && self.linked(id, CONTROLLER) {
                self.brokers[b].last_heartbeat = self.now;
                self.controller.last_seen.insert(id, self.now);
                if self.controller.image.brokers.get(&id).is_some_and(|r| r.fenced) {
                    self.commit(ControllerRecord::UnfenceBroker { broker_id: id });
                }
            }
            if self.rng.gen_bool(0.3) {
                // `state::checkpoint_hw` (`Partition::checkpoint_hw`).
                self.brokers[b].hw_checkpoint = Some(self.brokers[b].hw());
            }
            let now = self.instant();
            if let Some(p) = self.brokers[b].state.shrink_proposal(Duration::from_millis(MAX_LAG_MS), now) {
                self.propose_isr(id, p);
            }
            if dt >= FETCH_WAIT_MS {
                let parked = std::mem::take(&mut self.brokers[b].parked);
                for p in parked {
                    self.answer_parked(b, p);
                }
            }
        }
        let expired: Vec<i32> = self
            .controller
            .image
            .live_brokers()
            .map(|r| r.broker_id)
            .filter(|id| self.now - *self.controller.last_seen.get(id).unwrap_or(&0) > SESSION_MS)
            .collect();
        for broker_id in expired {
            self.commit(ControllerRecord::FenceBroker { broker_id });
        }
    }

    // ---- crashes

    fn crash(&mut self, b: usize) {
        let br = &mut self.brokers[b];
        br.up = false;
        br.pending.clear();
        br.parked.clear();
        br.jobs.clear();
        br.fetcher = None;
        let line = format!("{} crashes (log end {}, hw checkpoint {:?})", br.id, br.leo(), br.hw_checkpoint);
        self.log(line);
    }

    /// A restart: the log, its epochs and the metadata records survive; the replica state
    /// starts from the stored high watermark (`Partition::await_assignment`) with no leader
    /// until this run's registration is applied.
    fn restart(&mut self, b: usize) {
        let br = &mut self.brokers[b];
        br.up = true;
        br.incarnation += 1;
        let hw = br.hw_checkpoint.map_or(0, |h| h.min(br.leo()).max(0));
        br.state = ReplicaState::new(br.id, hw);
        br.registering = false;
        br.registered_at = None;
        br.publishing = false;
        br.last_heartbeat = 0;
        let line = format!("{} restarts with log end {} and hw {hw}", br.id, br.leo());
        self.log(line);
    }
}

fn describe(r: &ControllerRecord) -> String {
    match r {
        ControllerRecord::RegisterBroker(b) => format!("RegisterBroker {}", b.broker_id),
        ControllerRecord::Topic { .. } => "Topic".into(),
        other => format!("{other:?}").replace(&format!("topic_id: {TOPIC}, partition: 0, "), ""),
    }
}

/// What a run did (to see that the runs exercise something).
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub acked: u64,
    pub epochs: u64,
}
