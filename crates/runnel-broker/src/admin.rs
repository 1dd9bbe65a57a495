//! The admin HTTP listener: `GET /metrics` (Prometheus text format), `GET /healthz`
//! (the process is up) and `GET /readyz` (the broker has opened its data and accepts
//! Kafka connections; 503 while starting and while shutting down).
//!
//! It binds 127.0.0.1 by default. With `admin.basic.auth.file` (one `USER:PASSWORD` line),
//! `/metrics` answers 401 without that user's HTTP basic credentials; the health probes
//! stay open (they tell nothing but up or not).

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
    /// `Basic …` credentials `/metrics` requires, if any (the whole header value).
    pub basic_auth: Option<String>,
    pub broker: OnceLock<Arc<Broker>>,
    pub ready: AtomicBool,
}

impl AdminState {
    pub fn new(metrics: Arc<Metrics>, basic_auth: Option<String>) -> Arc<Self> {
        Arc::new(Self { metrics, basic_auth, broker: OnceLock::new(), ready: AtomicBool::new(false) })
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

/// Reads `admin.basic.auth.file` (`USER:PASSWORD` on its first line) into the header value
/// a client must send.
pub fn basic_auth(path: &str) -> Result<Option<String>, String> {
    use base64::Engine;
    if path.is_empty() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("admin.basic.auth.file {path}: {e}"))?;
    let line = text.lines().next().unwrap_or("").trim();
    match line.split_once(':') {
        Some((u, p)) if !u.is_empty() && !p.is_empty() => Ok(Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(line)))),
        _ => Err(format!("admin.basic.auth.file {path}: expected one line USER:PASSWORD")),
    }
}

async fn metrics(State(state): State<Arc<AdminState>>, headers: axum::http::HeaderMap) -> axum::response::Response {
    if let Some(want) = &state.basic_auth {
        let got = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
        // Compared in constant time: the length is not secret, the bytes are.
        let same = got.len() == want.len() && got.iter().zip(want.as_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if !same {
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Basic realm=\"runnel\"")], "unauthorized\n").into_response();
        }
    }
    let s = state.clone();
    let body = tokio::task::spawn_blocking(move || s.metrics.render(s.broker.get().map(|b| &**b)))
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

async fn readyz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
