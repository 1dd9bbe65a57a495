//! Broker-wide limits on what clients can make the broker hold: connections
//! (`max.connections`, `max.connections.per.ip` and `max.connections.per.ip.overrides`),
//! idle connections
//! (`connections.max.idle.ms`) and the bytes of requests read but not yet handled, summed
//! over every connection (`queued.max.request.bytes`, Kafka's memory pool). Owned by the
//! listener and shared by its connections; never a global.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;
use crate::BrokerConfig;

pub struct Limits {
    /// `connections.max.idle.ms`: a connection with nothing in flight and nothing read
    /// for this long is closed; a response that cannot be written for this long too.
    pub idle: Duration,
    /// `socket.request.max.bytes`: the largest frame, and one connection's read-ahead.
    pub max_frame: usize,
    /// `queued.max.request.bytes`, as permits of one byte each.
    pub request_bytes: Arc<Semaphore>,
    /// `max.connections`, as permits of one connection each.
    connections: Arc<Semaphore>,
    max_per_ip: usize,
    /// `max.connections.per.ip.overrides`: addresses with their own cap.
    per_ip_overrides: HashMap<IpAddr, usize>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Since when the listener has been waiting at `max.connections`, if it is.
    blocked_since: Mutex<Option<std::time::Instant>>,
    metrics: Arc<Metrics>,
}

/// A connection's place under `max.connections` and `max.connections.per.ip`; given back
/// when the connection ends.
pub struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    limits: Arc<Limits>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per_ip = self.limits.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl Limits {
    pub fn new(config: &BrokerConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            idle: Duration::from_millis(config.connections_max_idle_ms()),
            max_frame: config.socket_request_max_bytes(),
            request_bytes: Arc::new(Semaphore::new(config.queued_max_request_bytes())),
            connections: Arc::new(Semaphore::new(config.max_connections())),
            max_per_ip: config.max_connections_per_ip(),
            per_ip_overrides: config.max_connections_per_ip_overrides(),
            per_ip: Mutex::new(HashMap::new()),
            blocked_since: Mutex::new(None),
            metrics,
        })
    }

    /// Waits for a free place under `max.connections` (the listener stops accepting
    /// meanwhile, as Kafka's acceptor does: new clients wait in the listen backlog). The
    /// time spent waiting is counted in `runnel_acceptor_blocked_seconds_total`.
    pub async fn connection_permit(&self) -> OwnedSemaphorePermit {
        let permit = match self.connections.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // The accept loop may drop this future and call again: the wait is kept
                // here, not in the future, so none of it goes uncounted.
                self.blocked_since.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| {
                    tracing::debug!("max.connections reached: the listener stops accepting until a connection closes");
                    std::time::Instant::now()
                });
                self.connections.clone().acquire_owned().await.expect("the connection semaphore is never closed")
            }
        };
        if let Some(since) = self.blocked_since.lock().unwrap_or_else(|p| p.into_inner()).take() {
            self.metrics.acceptor_blocked(since.elapsed());
        }
        permit
    }

    /// The cap on connections from `ip`: its override, else `max.connections.per.ip`.
    fn max_for(&self, ip: &IpAddr) -> usize {
        self.per_ip_overrides.get(ip).copied().unwrap_or(self.max_per_ip)
    }

    /// Admits a connection from `ip` holding `permit`, or None if that address already
    /// has `max.connections.per.ip` (the connection is then closed at once, as Kafka does).
    pub fn admit(self: &Arc<Self>, ip: IpAddr, permit: OwnedSemaphorePermit) -> Option<ConnectionSlot> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = per_ip.entry(ip).or_default();
        if *n >= self.max_for(&ip) {
            self.metrics.connection_refused("max.connections.per.ip");
            return None;
        }
        *n += 1;
        Some(ConnectionSlot { _permit: permit, ip, limits: self.clone() })
    }

    /// Takes `len` bytes of the broker-wide request budget, waiting (without reading
    /// more from the connection) until handled requests give enough back.
    pub async fn request_bytes(&self, len: usize) -> BudgetShare {
        let permit = self
            .request_bytes
            .clone()
            .acquire_many_owned(len as u32)
            .await
            .expect("the request budget is never closed");
        self.metrics.queued_request_bytes.inc_by(len as i64);
        BudgetShare { _permit: permit, len, metrics: self.metrics.clone() }
    }
}

/// One request's share of `queued.max.request.bytes`, given back when dropped (once its
/// handler is done with the frame).
pub struct BudgetShare {
    _permit: OwnedSemaphorePermit,
    len: usize,
    metrics: Arc<Metrics>,
}

impl Drop for BudgetShare {
    fn drop(&mut self) {
        self.metrics.queued_request_bytes.dec_by(self.len as i64);
    }
}
