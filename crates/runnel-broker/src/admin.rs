//! The admin HTTP listener: `GET /metrics` (Prometheus text format), `GET /healthz`
//! (the process is up) and `GET /readyz` (the broker has opened its data and accepts
//! Kafka connections; 503 while starting and while shutting down).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::state::Broker;

/// What the admin endpoints read.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub broker: OnceLock<Arc<Broker>>,
    pub ready: AtomicBool,
}

impl AdminState {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self { metrics, broker: OnceLock::new(), ready: AtomicBool::new(false) })
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

/// Serves the admin endpoints on `listener` until `stop` is cancelled.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    let served = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await;
    if let Err(e) = served {
        tracing::error!(error = %e, "admin listener failed");
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let s = state.clone();
    let body = tokio::task::spawn_blocking(move || s.metrics.render(s.broker.get().map(|b| &**b)))
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}

async fn readyz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
