//! The metadata quorum: cluster metadata records replicated by Raft among the controllers
//! (the `openraft` crate; we do not implement Raft ourselves), in the KRaft shape: every
//! voter in `--controller-quorum` is a controller and a broker.
//!
//! - [`types`]: the records ([`ControllerRecord`], keyed by topic and broker ids) and
//!   what applying one answers; a record's offset is its Raft index, its epoch its term.
//! - [`image`]: what the committed records add up to ([`ClusterImage`]).
//! - `log_store` / `state_machine`: the durable Raft log, vote and snapshot in the
//!   node's metadata dir; the state machine hands every applied record to the publisher
//!   channel ([`Published`]) that the broker drains.
//! - `rpc` / `network`: the controllers' TCP RPC on `--controller-listen`.
//! - [`Controller`]: starts a node, forms the quorum in any start order, proposes
//!   records from any node (forwarded to the leader, answered once committed and applied
//!   here), and runs broker registration, heartbeats and fencing.
//!
//! This crate never touches partition data: it decides; the broker's publisher acts.

mod files;
pub mod image;
mod log_store;
mod network;
pub mod rpc;
mod state_machine;
pub mod types;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use image::{ClusterImage, ImageSnapshot};
pub use rpc::ProposeError;
pub use state_machine::Published;
pub use types::{BrokerRegistration, ControllerRecord, NodeId, Outcome, Rejection};

use crate::log_store::LogStore;
use crate::network::Network;
use crate::rpc::{Client, Handler, Request, Response};
use crate::state_machine::StateMachine;
use crate::types::Raft;

/// How one controller node runs.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    pub node_id: NodeId,
    /// Where the Raft log, vote and snapshot live (fsynced).
    pub dir: std::path::PathBuf,
    /// Every voter: id → controller address (`host:port`). Must include `node_id`.
    pub voters: BTreeMap<NodeId, String>,
    /// Take a snapshot of the image after this many records since the last one.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot (a follower lagging further gets the snapshot).
    pub keep_after_snapshot: u64,
    /// `broker.session.timeout.ms`: a broker not heard from this long is fenced.
    pub broker_session_timeout: Duration,
    /// `broker.heartbeat.interval.ms`.
    pub broker_heartbeat_interval: Duration,
    /// How long a proposal may wait for a leader and a commit.
    pub propose_timeout: Duration,
}

impl ControllerOptions {
    pub fn new(node_id: NodeId, dir: std::path::PathBuf, voters: BTreeMap<NodeId, String>) -> Self {
        Self {
            node_id,
            dir,
            voters,
            snapshot_every: 1000,
            keep_after_snapshot: 1000,
            broker_session_timeout: Duration::from_millis(9000),
            broker_heartbeat_interval: Duration::from_millis(2000),
            propose_timeout: Duration::from_secs(15),
        }
    }
}

/// Parses `--controller-quorum`: `1@host:port,2@host:port,…`.
pub fn parse_quorum(s: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut voters = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('@').ok_or_else(|| format!("'{part}' is not ID@HOST:PORT"))?;
        let id: NodeId = id.parse().map_err(|_| format!("'{id}' in '{part}' is not a node id"))?;
        if addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
            return Err(format!("'{addr}' in '{part}' is not HOST:PORT"));
        }
        if voters.insert(id, addr.to_string()).is_some() {
            return Err(format!("node id {id} appears twice"));
        }
    }
    if voters.is_empty() {
        return Err("the quorum lists no voter".into());
    }
    Ok(voters)
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("controller storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("node {0} is not in --controller-quorum (broker-only nodes are not built yet)")]
    NotAVoter(NodeId),
    #[error("raft: {0}")]
    Raft(String),
}

/// One running controller node.
pub struct Controller {
    id: NodeId,
    raft: Raft,
    sm: StateMachine,
    opts: ControllerOptions,
    /// The leader's view of broker liveness (only meaningful while leader).
    last_seen: Mutex<HashMap<i32, Instant>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Whether this node's broker registration (of this run) is committed and applied here.
    registered: std::sync::atomic::AtomicBool,
}

impl Controller {
    /// Starts the node: opens its storage, serves the controller RPC on `listener`, and
    /// (if it has never been part of the quorum) initializes it with the configured voters —
    /// every voter does the same with the same membership, which openraft allows, so the
    /// nodes may start in any order. Returns the publisher channel of applied records.
    pub async fn start(
        opts: ControllerOptions,
        listener: TcpListener,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<Published>), ControllerError> {
        if !opts.voters.contains_key(&opts.node_id) {
            return Err(ControllerError::NotAVoter(opts.node_id));
        }
        let config = Config {
            cluster_name: "runnel".into(),
            heartbeat_interval: 150,
            election_timeout_min: 700,
            election_timeout_max: 1400,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(opts.snapshot_every),
            max_in_snapshot_log_to_keep: opts.keep_after_snapshot,
            snapshot_max_chunk_size: 1024 * 1024,
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(|e| ControllerError::Raft(e.to_string()))?);
        let dir = opts.dir.clone();
        let (log, (sm, events)) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            Ok((LogStore::open(&dir)?, StateMachine::open(&dir)?))
        })
        .await
        .map_err(std::io::Error::other)??;
        let raft = Raft::new(opts.node_id, config, Network, log, sm.clone())
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()))?;
        let me = Arc::new(Self {
            id: opts.node_id,
            raft: raft.clone(),
            sm,
            opts,
            last_seen: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            registered: std::sync::atomic::AtomicBool::new(false),
        });
        let server = rpc::serve(listener, me.clone().handler());
        let fencer = tokio::spawn(me.clone().fence_loop());
        me.tasks.lock().unwrap_or_else(|p| p.into_inner()).extend([server, fencer]);
        if !raft.is_initialized().await.map_err(|e| ControllerError::Raft(e.to_string()))? {
            let members: BTreeMap<NodeId, BasicNode> =
                me.opts.voters.iter().map(|(id, addr)| (*id, BasicNode { addr: addr.clone() })).collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(node = me.id, "initialized the metadata quorum"),
                // Another voter reached us first: we join through its log.
                Err(e) => tracing::debug!(node = me.id, error = %e, "quorum already initialized elsewhere"),
            }
        }
        Ok((me, events))
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The image as this node has applied it.
    pub fn image(&self) -> std::sync::RwLockReadGuard<'_, ClusterImage> {
        self.sm.shared.image.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The current controller leader, as this node knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// Offset of the last record applied here.
    pub fn applied_offset(&self) -> u64 {
        *self.sm.shared.applied_offset.borrow()
    }

    /// Waits until this node has applied `offset` (or `timeout` passes).
    pub async fn wait_applied(&self, offset: u64, timeout: Duration) -> bool {
        let mut rx = self.sm.shared.applied_offset.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|o| *o >= offset)).await.is_ok_and(|r| r.is_ok())
    }

    /// Waits until some node is leader (as this node knows it).
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let mut rx = self.raft.metrics();
        let r = tokio::time::timeout(timeout, rx.wait_for(|m| m.current_leader.is_some())).await;
        r.ok().and_then(|m| m.ok().and_then(|m| m.current_leader))
    }

    /// Commits `record` through the leader, from any node: answered with the record's
    /// offset and epoch once a majority has it and this node has applied it.
    pub async fn propose(&self, record: ControllerRecord) -> Result<(u64, u64), ProposeError> {
        let deadline = Instant::now() + self.opts.propose_timeout;
        let at = self.forward(Request::Propose(record), deadline, |r| match r {
            Response::Propose(r) => Some(r),
            _ => None,
        });
        let (offset, epoch) = at.await?;
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        if !self.wait_applied(offset, left).await {
            return Err(ProposeError::Unavailable(format!("record {offset} committed but not yet applied on node {}", self.id)));
        }
        Ok((offset, epoch))
    }

    /// Tells the leader that `broker_id` is alive.
    pub async fn heartbeat(&self, broker_id: i32) -> Result<(), ProposeError> {
        let deadline = Instant::now() + self.opts.broker_heartbeat_interval.max(Duration::from_millis(500));
        self.forward(Request::Heartbeat { broker_id }, deadline, |r| match r {
            Response::Heartbeat(r) => Some(r),
            _ => None,
        })
        .await
    }

    /// Sends `req` to the leader (handling it here when this node leads), following
    /// `NotLeader` hints and waiting out elections until `deadline`. A request is sent
    /// again only when it certainly was not handled (no leader, not the leader, no
    /// connection); a timeout after sending is reported, never retried.
    async fn forward<T>(
        &self,
        req: Request,
        deadline: Instant,
        pick: impl Fn(Response) -> Option<Result<T, ProposeError>>,
    ) -> Result<T, ProposeError> {
        let mut clients: HashMap<NodeId, Client> = HashMap::new();
        let mut last_error = ProposeError::Unavailable("no controller leader elected".into());
        while Instant::now() < deadline {
            let Some(leader) = self.leader() else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let result = if leader == self.id {
                pick(self.handle(clone_request(&req)).await)
            } else {
                let Some(addr) = self.opts.voters.get(&leader).cloned() else {
                    return Err(ProposeError::Unavailable(format!("leader {leader} is not a configured voter")));
                };
                let client = clients.entry(leader).or_insert_with(|| Client::new(addr));
                let left = deadline.saturating_duration_since(Instant::now());
                match client.call(&req, left).await {
                    Ok(resp) => pick(resp),
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        return Err(ProposeError::Unavailable(format!("controller {leader} did not answer: {e}")))
                    }
                    Err(e) => {
                        last_error = ProposeError::Unavailable(format!("controller {leader}: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            };
            match result {
                Some(Err(ProposeError::NotLeader { .. })) => {
                    last_error = ProposeError::Unavailable(format!("controller {leader} is no longer the leader"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(r) => return r,
                None => return Err(ProposeError::Unavailable("unexpected controller response".into())),
            }
        }
        Err(last_error)
    }

    fn handler(self: Arc<Self>) -> Handler {
        Arc::new(move |req| {
            let me = self.clone();
            Box::pin(async move { me.handle(req).await })
        })
    }

    async fn handle(&self, req: Request) -> Response {
        match req {
            Request::AppendEntries(r) => Response::AppendEntries(self.raft.append_entries(r).await),
            Request::Vote(r) => Response::Vote(self.raft.vote(r).await),
            Request::InstallSnapshot(r) => Response::InstallSnapshot(self.raft.install_snapshot(r).await),
            Request::Propose(record) => {
                // A broker registering is alive now: its session starts afresh (else a
                // restarted broker would be fenced again at once, its old heartbeat stale).
                if let ControllerRecord::RegisterBroker(reg) = &record {
                    self.last_seen.lock().unwrap_or_else(|p| p.into_inner()).insert(reg.broker_id, Instant::now());
                }
                Response::Propose(self.write(record).await)
            }
            Request::Heartbeat { broker_id } => Response::Heartbeat(self.on_heartbeat(broker_id).await),
        }
    }

    /// Leader side of a proposal.
    async fn write(&self, record: ControllerRecord) -> Result<(u64, u64), ProposeError> {
        match self.raft.client_write(record).await {
            Ok(resp) => match resp.data {
                Outcome::Applied => Ok((resp.log_id.index, resp.log_id.leader_id.term)),
                Outcome::Rejected(r) => Err(ProposeError::Rejected(r)),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(ProposeError::NotLeader {
                leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
            }),
            Err(e) => Err(ProposeError::Unavailable(e.to_string())),
        }
    }

    /// Leader side of a heartbeat: note the broker alive, unfence it if it was fenced.
    async fn on_heartbeat(&self, broker_id: i32) -> Result<(), ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader { leader: None });
        }
        let fenced = match self.image().brokers.get(&broker_id) {
            None => return Err(ProposeError::Rejected(Rejection::UnknownBroker)),
            Some(b) => b.fenced,
        };
        self.last_seen.lock().unwrap_or_else(|p| p.into_inner()).insert(broker_id, Instant::now());
        if fenced {
            tracing::info!(broker = broker_id, "broker heartbeats again; unfencing it");
            self.write(ControllerRecord::UnfenceBroker { broker_id }).await?;
        }
        Ok(())
    }

    /// On the leader: fences every registered, unfenced broker not heard from within
    /// the session timeout. A new leader gives every broker a full session first.
    async fn fence_loop(self: Arc<Self>) {
        let mut leading = false;
        let tick = (self.opts.broker_session_timeout / 4).clamp(Duration::from_millis(50), Duration::from_millis(500));
        loop {
            tokio::time::sleep(tick).await;
            if !self.is_leader() {
                leading = false;
                continue;
            }
            let now = Instant::now();
            let brokers: Vec<(i32, bool)> = self.image().brokers.values().map(|b| (b.broker_id, b.fenced)).collect();
            let expired: Vec<i32> = {
                let mut seen = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
                if !leading {
                    seen.clear();
                }
                brokers
                    .iter()
                    .filter(|(_, fenced)| !fenced)
                    .filter(|(id, _)| {
                        let last = *seen.entry(*id).or_insert(now);
                        now.duration_since(last) > self.opts.broker_session_timeout
                    })
                    .map(|(id, _)| *id)
                    .collect()
            };
            leading = true;
            for broker_id in expired {
                tracing::warn!(broker = broker_id, "broker missed its heartbeats; fencing it");
                if let Err(e) = self.write(ControllerRecord::FenceBroker { broker_id }).await {
                    tracing::warn!(broker = broker_id, error = %e, "could not fence the broker");
                }
            }
        }
    }

    /// Registers this node's broker and keeps it alive: registers (again after a
    /// restart, or when the controller has forgotten it), then heartbeats every
    /// `broker.heartbeat.interval.ms`. Runs until shutdown.
    pub fn run_broker(self: &Arc<Self>, registration: BrokerRegistration) {
        let me = self.clone();
        let task = tokio::spawn(async move {
            let mut registered = false;
            loop {
                if !registered {
                    match me.propose(ControllerRecord::RegisterBroker(registration.clone())).await {
                        Ok((offset, _)) => {
                            tracing::info!(broker = registration.broker_id, offset, "broker registered with the controller");
                            registered = true;
                            me.registered.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                        Err(e) => tracing::debug!(error = %e, "broker registration failed; retrying"),
                    }
                } else if let Err(e) = me.heartbeat(registration.broker_id).await {
                    tracing::debug!(error = %e, "broker heartbeat failed");
                    if e == ProposeError::Rejected(Rejection::UnknownBroker) {
                        registered = false;
                    }
                }
                tokio::time::sleep(if registered { me.opts.broker_heartbeat_interval } else { Duration::from_millis(200) }).await;
            }
        });
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
    }

    /// Whether the registration [`Self::run_broker`] proposed in this run is committed and
    /// applied here (so the image no longer shows what this broker led before a restart).
    pub fn broker_registered(&self) -> bool {
        self.registered.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Asks Raft to take a snapshot now (tests and operators).
    pub async fn snapshot_now(&self) -> Result<(), ControllerError> {
        self.raft.trigger().snapshot().await.map_err(|e| ControllerError::Raft(e.to_string()))
    }

    /// The index of the last snapshot this node holds.
    pub fn snapshot_offset(&self) -> Option<u64> {
        self.raft.metrics().borrow().snapshot.map(|l| l.index)
    }

    /// Stops Raft, the RPC server (closing its connections) and the broker tasks.
    pub async fn shutdown(&self) {
        for t in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            t.abort();
        }
        let _ = self.raft.shutdown().await;
    }
}

fn clone_request(req: &Request) -> Request {
    match req {
        Request::Propose(r) => Request::Propose(r.clone()),
        Request::Heartbeat { broker_id } => Request::Heartbeat { broker_id: *broker_id },
        // Raft's own RPCs are never forwarded.
        Request::AppendEntries(_) | Request::Vote(_) | Request::InstallSnapshot(_) => {
            unreachable!("only client requests are forwarded")
        }
    }
}
