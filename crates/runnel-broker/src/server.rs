//! The Kafka listeners: binds each, accepts connections, and shuts down cleanly — stop
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
use crate::auth::sasl::SaslSettings;
use crate::auth::tls::TlsContext;
use crate::auth::SecurityProtocol;
use crate::connection::{self, Listener};
use crate::listeners::{self, Endpoint, Endpoints};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::state::Broker;
use crate::BrokerConfig;

/// A running broker.
pub struct BrokerHandle {
    /// The address the first Kafka listener is bound to.
    pub local_addr: SocketAddr,
    /// The address advertised to clients of the first listener.
    pub advertised: String,
    /// Every Kafka listener: name, security protocol, bound address, advertised HOST:PORT.
    pub listeners: Vec<BoundListener>,
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

/// A listener as bound.
#[derive(Clone, Debug)]
pub struct BoundListener {
    pub name: String,
    pub protocol: crate::auth::SecurityProtocol,
    pub local_addr: SocketAddr,
    pub advertised: String,
}

/// Errors that keep a broker from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {addr}: {source} (is another broker running there? pick another port with --listen or listeners)")]
    Bind { addr: String, source: std::io::Error },
    #[error("cannot open the data dir {dir}: {source}")]
    Data { dir: String, source: crate::state::StateError },
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// Opens the data dir, binds the listener and starts serving.
pub async fn start(config: BrokerConfig) -> Result<BrokerHandle, StartError> {
    config.validate()?;
    let specs = listeners::from_config(&config)?;
    // Cluster mode: the listener the brokers reach each other on, checked before anything binds.
    let inter_broker = match config.controller_listen {
        Some(_) => Some(listeners::inter_broker(&config, &specs)?),
        None => None,
    };
    // Each listener sees the settings with its `listener.name.NAME.` overrides (KIP-103).
    // SSL listeners check client certificates per `ssl.client.auth`; SASL_SSL listeners
    // authenticate with SASL and ask for none unless their own override says so, as Kafka's.
    let mut contexts = Vec::new();
    for spec in &specs {
        let lc = config.for_listener(&spec.name);
        let tls = if spec.protocol.is_tls() {
            let sasl_without_certs = spec.protocol == SecurityProtocol::SaslSsl && !config.has_listener_override(&spec.name, "ssl.client.auth");
            Some(TlsContext::from_config(&lc, sasl_without_certs)?)
        } else {
            None
        };
        let sasl = if spec.protocol.is_sasl() {
            let settings = SaslSettings::from_config(&lc)?;
            if settings.mechanisms.is_empty() {
                return Err(crate::config::ConfigError(format!("listener {}: a SASL listener needs at least one mechanism in sasl.enabled.mechanisms", spec.name)).into());
            }
            Some(Arc::new(settings))
        } else {
            None
        };
        contexts.push((tls, sasl));
    }
    let mut bound = Vec::new();
    let mut endpoints = Vec::new();
    let mut sockets = Vec::new();
    for (spec, (tls, sasl)) in specs.iter().zip(&contexts) {
        let socket = TcpListener::bind(&spec.bind)
            .await
            .map_err(|source| StartError::Bind { addr: format!("{}://{}", spec.name, spec.bind), source })?;
        let local = socket.local_addr().map_err(|source| StartError::Bind { addr: spec.bind.clone(), source })?;
        let (host, port) = spec.advertised.clone().unwrap_or_else(|| (local.ip().to_string(), i32::from(local.port())));
        let advertised = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        bound.push(BoundListener { name: spec.name.to_string(), protocol: spec.protocol, local_addr: local, advertised });
        endpoints.push(Endpoint { name: spec.name.clone(), host, port });
        let listener = Listener {
            name: spec.name.clone(),
            protocol: spec.protocol,
            tls: tls.clone(),
            sasl: sasl.clone(),
        };
        sockets.push((socket, Arc::new(listener)));
    }
    let mut endpoints = Endpoints::new(endpoints);
    if let Some(name) = &inter_broker {
        endpoints = endpoints.with_inter_broker(name);
    }
    let (local_addr, advertised) = (bound[0].local_addr, bound[0].advertised.clone());
    // The admin listener comes up first, so /readyz answers 503 while the data dir opens.
    let metrics = Arc::new(Metrics::default());
    let basic_auth = admin::basic_auth(config.setting_value("admin.basic.auth.file")).map_err(|e| crate::config::ConfigError(e))?;
    let admin = AdminState::new(metrics.clone(), basic_auth);
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
    let opened = tokio::task::spawn_blocking(move || Broker::open(config, endpoints, for_open))
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
    for t in contexts.into_iter().filter_map(|(tls, _)| tls) {
        tokio::spawn(t.watch(shutdown.clone()));
    }
    let task = tokio::spawn(serve(sockets, broker, shutdown.clone(), metrics, admin, admin_stop));
    Ok(BrokerHandle { local_addr, advertised, listeners: bound, cluster_id, admin_addr, shutdown, task })
}

/// A connection accepted on one of the listeners, with its `max.connections` permit.
type Accepted = (tokio::net::TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit, Arc<Listener>);

/// Accepts on one listener until shutdown; under `max.connections` only (at the cap it
/// stops accepting until a connection closes).
async fn accept_loop(socket: TcpListener, listener: Arc<Listener>, limits: Arc<Limits>, to: tokio::sync::mpsc::Sender<Accepted>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = async { let p = limits.connection_permit().await; (socket.accept().await, p) } => a,
        };
        match accepted {
            (Ok((stream, peer)), permit) => {
                if to.send((stream, peer, permit, listener.clone())).await.is_err() {
                    return;
                }
            }
            (Err(e), _) => {
                tracing::warn!(listener = %listener.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(
    sockets: Vec<(TcpListener, Arc<Listener>)>,
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
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::channel::<Accepted>(1);
    let stop_accepting = CancellationToken::new();
    let mut acceptors = JoinSet::new();
    for (socket, listener) in sockets {
        acceptors.spawn(accept_loop(socket, listener, limits.clone(), accepted_tx.clone(), stop_accepting.clone()));
    }
    drop(accepted_tx);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some((stream, peer, permit, listener)) = accepted.recv() => {
                let Some(slot) = limits.admit(peer.ip(), permit) else {
                    tracing::debug!(%peer, "closing connection: max.connections.per.ip reached");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                connections.spawn(connection::serve(stream, peer, shared.clone(), listener, slot));
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    admin.set_ready(false);
    failpoint_delay("RUNNEL_FAILPOINT_SHUTDOWN_DELAY_MS").await;
    // The listeners close: nothing more is accepted.
    stop_accepting.cancel();
    while acceptors.join_next().await.is_some() {}
    drop(accepted);
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
