//! The Kafka listener: binds, accepts connections, and shuts down cleanly — stop
//! accepting, let connections answer what they have read, flush every partition.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::cleaner;
use crate::cluster::Cluster;
use crate::connection;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::state::Broker;
use crate::BrokerConfig;

/// A running broker.
pub struct BrokerHandle {
    /// The address the Kafka listener is bound to.
    pub local_addr: SocketAddr,
    /// The address advertised to clients.
    pub advertised: String,
    /// The cluster id stored in the data dir.
    pub cluster_id: String,
    /// The address the admin HTTP listener is bound to, if it is on.
    pub admin_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl BrokerHandle {
    /// Asks the broker to stop and waits until connections are drained and data flushed.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// A token that stops the broker when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the broker has stopped.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Errors that keep a broker from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {addr}: {source} (is another broker running there? pick another with --listen)")]
    Bind { addr: String, source: std::io::Error },
    #[error("cannot open the data dir {dir}: {source}")]
    Data { dir: String, source: crate::state::StateError },
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("invalid advertised listener '{0}': expected HOST:PORT")]
    Advertised(String),
}

/// Opens the data dir, binds the listener and starts serving.
pub async fn start(config: BrokerConfig) -> Result<BrokerHandle, StartError> {
    config.validate()?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|source| StartError::Bind { addr: config.listen.clone(), source })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind { addr: config.listen.clone(), source })?;
    let advertised = match &config.advertised_listener {
        Some(a) => a.clone(),
        None => local_addr.to_string(),
    };
    let (host, port) = advertised
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_string(), p.parse::<i32>().ok()?)))
        .ok_or_else(|| StartError::Advertised(advertised.clone()))?;
    // The admin listener comes up first, so /readyz answers 503 while the data dir opens.
    let metrics = Arc::new(Metrics::default());
    let admin = AdminState::new(metrics.clone());
    let admin_stop = CancellationToken::new();
    let admin_addr = match &config.admin_listen {
        None => None,
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr: addr.clone(), source })?;
            let bound = l.local_addr().ok();
            tokio::spawn(admin::serve(l, admin.clone(), admin_stop.clone()));
            bound
        }
    };
    let dir = config.data_dir.display().to_string();
    failpoint_delay("RUNNEL_FAILPOINT_OPEN_DELAY_MS").await;
    let cluster = match (&config.controller_listen, &config.controller_quorum) {
        (Some(listen), Some(quorum)) => match Cluster::start(&config, listen, quorum).await {
            Ok(c) => Some(c),
            Err(e) => {
                admin_stop.cancel();
                return Err(e.into());
            }
        },
        _ => None,
    };
    let for_open = cluster.clone();
    let opened = tokio::task::spawn_blocking(move || Broker::open(config, (host, port), for_open))
        .await
        .expect("broker open task")
        .map_err(|source| StartError::Data { dir, source });
    let broker = match opened {
        Ok(b) => Arc::new(b),
        Err(e) => {
            admin_stop.cancel();
            if let Some(c) = cluster {
                c.controller.shutdown().await;
            }
            return Err(e);
        }
    };
    if let Some(c) = &cluster {
        c.run_publisher(broker.clone());
    }
    let _ = admin.broker.set(broker.clone());
    admin.set_ready(true);
    let cluster_id = broker.cluster_id.clone();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(listener, broker, shutdown.clone(), metrics, admin, admin_stop));
    Ok(BrokerHandle { local_addr, advertised, cluster_id, admin_addr, shutdown, task })
}

async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    admin: Arc<AdminState>,
    admin_stop: CancellationToken,
) {
    let mut connections = JoinSet::new();
    let limits = Limits::new(&broker.config, metrics.clone());
    let shared = Arc::new(connection::Shared { broker: broker.clone(), shutdown: shutdown.clone(), metrics: metrics.clone(), limits: limits.clone() });
    let flusher = tokio::spawn(flush_loop(broker.clone(), shutdown.clone()));
    let group_timers = tokio::spawn(broker.groups().clone().run_timers(shutdown.clone()));
    let retention = tokio::spawn(cleaner::run_every(broker.clone(), Duration::from_millis(broker.config.log_retention_check_interval_ms()), shutdown.clone(), cleaner::retention_pass));
    let compaction = tokio::spawn(cleaner::run_every(broker.clone(), Duration::from_millis(broker.config.log_cleaner_backoff_ms()), shutdown.clone(), cleaner::compaction_pass));
    let isr_checks = broker.cluster().map(|_| tokio::spawn(crate::replication::run_isr_checks(broker.clone(), shutdown.clone())));
    let producer_expiry = tokio::spawn(cleaner::run_every(broker.clone(), Duration::from_millis(broker.config.producer_id_expiration_check_interval_ms()), shutdown.clone(), cleaner::producer_expiry_pass));
    let txn_timeouts = tokio::spawn(cleaner::run_every(broker.clone(), Duration::from_millis(broker.config.transaction_abort_interval_ms()), shutdown.clone(), |b| b.txns().abort_timed_out(b)));
    let txn_expiry = tokio::spawn(cleaner::run_every(broker.clone(), Duration::from_millis(broker.config.transaction_expiry_interval_ms()), shutdown.clone(), |b| b.txns().expire_ids()));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            // Under `max.connections` only: at the cap we stop accepting until one closes.
            (accepted, permit) = async { let p = limits.connection_permit().await; (listener.accept().await, p) } => match accepted {
                Ok((stream, peer)) => {
                    let Some(slot) = limits.admit(peer.ip(), permit) else {
                        tracing::debug!(%peer, "closing connection: max.connections.per.ip reached");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection::serve(stream, peer, shared.clone(), slot));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    admin.set_ready(false);
    failpoint_delay("RUNNEL_FAILPOINT_SHUTDOWN_DELAY_MS").await;
    drop(listener);
    tracing::info!(open = connections.len(), "shutting down: answering in-flight requests");
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    let _ = flusher.await;
    let _ = group_timers.await;
    let _ = retention.await;
    let _ = compaction.await;
    let _ = producer_expiry.await;
    let _ = txn_timeouts.await;
    let _ = txn_expiry.await;
    if let Some(t) = isr_checks {
        let _ = t.await;
    }
    if let Some(c) = broker.cluster() {
        c.fetchers.stop_all();
    }
    let b = broker.clone();
    let _ = tokio::task::spawn_blocking(move || b.flush_all()).await;
    if let Some(c) = broker.cluster() {
        c.controller.shutdown().await;
    }
    tracing::info!("broker stopped; data flushed");
    admin_stop.cancel();
}

/// Calls `maybe_flush` on every partition once a second, for `flush.ms`.
async fn flush_loop(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.flush_due()).await;
            }
        }
    }
}

/// Test failpoint: sleeps for the milliseconds named by environment variable `name`, if
/// set. Used by the tests of `/readyz` to hold the broker in its starting and stopping
/// phases; never set in production.
async fn failpoint_delay(name: &str) {
    if let Some(ms) = std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok()) {
        tracing::warn!(failpoint = name, ms, "failpoint: delaying");
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}
