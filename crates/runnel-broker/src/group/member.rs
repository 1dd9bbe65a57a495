//! One member of a classic group: who it is, the protocols (assignors) it supports with
//! their metadata, its assignment, its timeouts and the JoinGroup / SyncGroup responses it
//! is waiting for. Owns nothing else: the group decides what happens to members.

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::errors::KafkaError;

/// What a JoinGroup request is answered with.
#[derive(Debug, Clone)]
pub struct JoinResult {
    pub error: Option<KafkaError>,
    pub member_id: String,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    /// For the leader only: every member with its metadata for the chosen protocol.
    pub members: Vec<JoinedMember>,
}

#[derive(Debug, Clone)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

impl JoinResult {
    pub fn error(member_id: &str, e: KafkaError) -> Self {
        JoinResult {
            error: Some(e),
            member_id: member_id.into(),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            members: Vec::new(),
        }
    }
}

/// What a SyncGroup request is answered with.
#[derive(Debug, Clone)]
pub struct SyncResult {
    pub error: Option<KafkaError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(e: KafkaError) -> Self {
        SyncResult { error: Some(e), protocol_type: None, protocol_name: None, assignment: Bytes::new() }
    }
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub awaiting_join: Option<oneshot::Sender<JoinResult>>,
    pub awaiting_sync: Option<oneshot::Sender<SyncResult>>,
    /// Joined in the current rebalance and has not yet been answered.
    pub is_new: bool,
    /// When the member is removed unless it heartbeats (or is waiting in a rebalance).
    pub heartbeat_deadline: Instant,
}

/// How long a new member's JoinGroup may wait in a rebalance before it is dropped
/// (Kafka's `NewMemberJoinTimeoutMs`).
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: u64 = 5 * 60 * 1000;

impl Member {
    pub fn is_static(&self) -> bool {
        self.instance_id.is_some()
    }

    pub fn is_awaiting_join(&self) -> bool {
        self.awaiting_join.is_some()
    }

    pub fn is_awaiting_sync(&self) -> bool {
        self.awaiting_sync.is_some()
    }

    /// Same protocols with the same metadata, in the same order.
    pub fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    pub fn supports(&self, name: &str) -> bool {
        self.protocols.iter().any(|(n, _)| n == name)
    }

    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    /// The member's most preferred protocol among `candidates`.
    pub fn vote<'a>(&'a self, candidates: &[&str]) -> Option<&'a str> {
        self.protocols.iter().map(|(n, _)| n.as_str()).find(|n| candidates.contains(n))
    }

    /// Kafka's `hasSatisfiedHeartbeat`: members waiting in a rebalance need no heartbeat
    /// (except new ones, whose join has its own deadline).
    pub fn heartbeat_satisfied(&self, now: Instant) -> bool {
        if !self.is_new && (self.is_awaiting_join() || self.is_awaiting_sync()) {
            return true;
        }
        now < self.heartbeat_deadline
    }

    pub fn complete_join(&mut self, result: JoinResult) {
        if let Some(tx) = self.awaiting_join.take() {
            let _ = tx.send(result);
        }
        self.is_new = false;
    }

    pub fn complete_sync(&mut self, result: SyncResult) {
        if let Some(tx) = self.awaiting_sync.take() {
            let _ = tx.send(result);
        }
    }
}
