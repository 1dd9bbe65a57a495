//! One client connection. Requests take effect in the order they arrive and one at a
//! time, as in Kafka (librdkafka pipelines asynchronous OffsetCommits and counts on it):
//! each request runs to completion before the next starts. Pipelining is kept for
//! throughput: the connection reads ahead of its answers, and the next request runs while
//! the previous response is being written.
//!
//! One task per connection drives three loops joined together: the reader (frames off
//! the socket), the processor (decode, run the handler, encode) and the writer (responses
//! in request order). Handing a request from one loop to the next wakes the same task, not
//! another thread. Handlers move blocking work (fsync, file walks) to the blocking pool
//! themselves; everything else runs here.
//!
//! Fetch responses go out zero-copy on plaintext listeners: the handler leaves
//! placeholders for record sections, and the writer `sendfile`s the segment ranges
//! between the encoded pieces (TLS listeners copy them, see `transport`).
//!
//! On TLS listeners the handshake comes first (a client certificate names the principal);
//! on SASL listeners the processor authenticates the client (`auth::sasl`) before any
//! other request than ApiVersions is served, and a failed authentication closes the
//! connection after `connection.failed.authentication.delay.ms`.
//!
//! A frame whose length is negative or above `socket.request.max.bytes`, or that does not
//! decode, closes this connection only (after the responses already due are written).
//!
//! Memory is bounded. One connection reads ahead at most `socket.request.max.bytes` of
//! requests (and [`MAX_READ_AHEAD`] frames); all connections together at most
//! `queued.max.request.bytes`. Past either the reader stops and the client's further
//! requests wait in its socket, as Kafka's muted channels do. At most
//! [`RESPONSES_QUEUED`] responses wait for a client that does not read them; then the
//! processor waits too. A connection idle for `connections.max.idle.ms` (nothing read,
//! nothing in flight), whose frame stops arriving for that long, or whose response cannot
//! be written for that long, is closed. As with Kafka's memory pool, a frame's whole
//! claimed length is reserved from `queued.max.request.bytes` before its body is read (so
//! connections never deadlock each holding part of the budget), but memory is only taken
//! as the bytes arrive; a client that claims a large frame and stalls holds its claim
//! until `connections.max.idle.ms` closes it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use runnel_protocol::splice::{splice_records, FramePart};
use runnel_protocol::{decode_request, encode_response, encode_unsupported_api_versions, ProtocolError};
use runnel_storage::ReadSlice;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::auth::sasl::{escape, Authenticator, SaslSettings, Step};
use crate::auth::tls::TlsContext;
use crate::auth::{SecurityProtocol, Session};
use crate::handlers::{self, Ctx};
use crate::limits::{BudgetShare, ConnectionSlot, Limits};
use crate::metrics::{api_name, Metrics};
use crate::state::Broker;
use crate::transport::{self, Reader, Writer};

/// How many requests one connection reads ahead of the one being handled.
pub const MAX_READ_AHEAD: usize = 128;

/// A frame's first allocation; larger frames grow their buffer as their bytes arrive.
const INITIAL_BUFFER: usize = 64 * 1024;

/// How many encoded responses may wait for the writer (a client that does not read).
pub const RESPONSES_QUEUED: usize = 2;

/// Longest a TLS handshake may take (or `connections.max.idle.ms`, if shorter).
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A frame read, with its shares of the connection's and the broker's request budgets,
/// held until its handler is done.
struct Frame {
    bytes: Bytes,
    _own: OwnedSemaphorePermit,
    _global: BudgetShare,
}

/// An encoded response: bytes, and record sections to send from files.
type Outgoing = Vec<FramePart<ReadSlice>>;

/// What one connection shares with the rest of the broker.
pub struct Shared {
    pub broker: Arc<Broker>,
    pub shutdown: CancellationToken,
    pub metrics: Arc<Metrics>,
    pub limits: Arc<Limits>,
}

/// A listener as its connections see it.
pub struct Listener {
    pub name: Arc<str>,
    pub protocol: SecurityProtocol,
    /// SSL and SASL_SSL listeners.
    pub tls: Option<Arc<TlsContext>>,
    /// SASL_PLAINTEXT and SASL_SSL listeners.
    pub sasl: Option<Arc<SaslSettings>>,
}

pub async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, listener: Arc<Listener>, _slot: ConnectionSlot) {
    let metrics = shared.metrics.clone();
    metrics.connections.inc();
    metrics.connections_total.inc();
    let _open = scopeguard(metrics.clone());
    let (rd, wr, cert_principal) = match &listener.tls {
        None => {
            let (rd, wr) = transport::plain(stream);
            (rd, wr, None)
        }
        Some(tls) => match transport::tls(stream, tls, shared.limits.idle.min(HANDSHAKE_TIMEOUT)).await {
            Ok(t) => t,
            Err(reason) => {
                tracing::info!(%peer, listener = %listener.name, %reason, "closing connection");
                metrics.connection_closed("tls handshake failed");
                return;
            }
        },
    };
    // On SSL listeners a client certificate names the principal; SASL names it on SASL_SSL.
    let principal = match listener.protocol {
        SecurityProtocol::Ssl => cert_principal.unwrap_or_default(),
        _ => Default::default(),
    };
    let session = Session { principal, listener: listener.name.clone(), protocol: listener.protocol, peer };
    let auth = listener.sasl.clone().map(Authenticator::new);
    let sasl = listener.sasl.clone();
    let (frames_tx, frames_rx) = mpsc::channel::<Frame>(MAX_READ_AHEAD);
    let (out_tx, out_rx) = mpsc::channel::<Outgoing>(RESPONSES_QUEUED);
    // Cancelled when the processor or the writer ends: the reader stops too.
    let stop = CancellationToken::new();
    let own_budget = Arc::new(Semaphore::new(shared.limits.max_frame));
    tokio::join!(
        read_loop(rd, peer, &shared, &own_budget, frames_tx, &stop),
        process_loop(session, sasl, auth, &shared, frames_rx, out_tx, &stop),
        write_loop(wr, peer, &shared, out_rx, &stop),
    );
}

/// Reads frames until the client closes, the broker shuts down, a frame is refused, the
/// connection idles out, or another loop stops.
async fn read_loop(
    mut rd: Reader,
    peer: SocketAddr,
    shared: &Shared,
    own_budget: &Arc<Semaphore>,
    frames: mpsc::Sender<Frame>,
    stop: &CancellationToken,
) {
    let limits = &shared.limits;
    loop {
        let read = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = stop.cancelled() => return,
            f = read_frame(&mut rd, limits, own_budget) => f,
        };
        let frame = match read {
            Ok(frame) => frame,
            Err(FrameError::Closed) => return,
            // The client went away: not worth more than a debug line.
            Err(FrameError::Io(reason)) => {
                tracing::debug!(%peer, %reason, "connection closed");
                return;
            }
            Err(FrameError::Idle) => {
                tracing::debug!(%peer, idle = ?limits.idle, "closing idle connection (connections.max.idle.ms)");
                shared.metrics.connection_closed("connections.max.idle.ms");
                return;
            }
            Err(FrameError::Refused(reason)) => {
                tracing::warn!(%peer, %reason, "closing connection");
                shared.metrics.connection_closed("socket.request.max.bytes");
                return;
            }
        };
        shared.metrics.bytes_in.inc_by(4 + frame.bytes.len() as u64);
        if frames.send(frame).await.is_err() {
            return;
        }
    }
}

/// Handles the frames one at a time, in order, and queues their responses. On SASL
/// listeners, authenticates first; with `connections.max.reauth.ms`, the session ends
/// unless the client re-authenticates in time (KIP-368), and a request after its end
/// closes the connection.
async fn process_loop(
    mut session: Session,
    sasl: Option<Arc<SaslSettings>>,
    mut auth: Option<Authenticator>,
    shared: &Shared,
    mut frames: mpsc::Receiver<Frame>,
    out: mpsc::Sender<Outgoing>,
    stop: &CancellationToken,
) {
    let _stop_reader = stop.clone().drop_guard();
    let peer = session.peer;
    let mut current = Arc::new(session.clone());
    let mut session_ends: Option<std::time::Instant> = None;
    while let Some(frame) = frames.recv().await {
        let key = runnel_protocol::codec::peek_header(&frame.bytes).map(|(k, _, _)| k);
        let sasl_api = key == Some(ApiKey::SaslHandshake as i16) || key == Some(ApiKey::SaslAuthenticate as i16);
        let expired = session_ends.is_some_and(|t| std::time::Instant::now() >= t);
        // After the session's end only a re-authentication already under way goes on.
        if expired && !(auth.is_some() && sasl_api) {
            tracing::info!(%peer, listener = %session.listener, principal = %session.principal, "session expired without re-authentication (connections.max.reauth.ms); closing connection");
            shared.metrics.connection_closed("connections.max.reauth.ms");
            return;
        }
        if let (None, Some(settings)) = (&auth, &sasl) {
            if settings.session_lifetime.is_some() && key == Some(ApiKey::SaslHandshake as i16) {
                auth = Some(Authenticator::reauthenticate(settings.clone(), session.principal.clone()));
            }
        }
        if let Some(a) = auth.as_mut() {
            let reply = match a.step(&frame.bytes, &shared.broker).await {
                Step::Serve => None,
                Step::Respond(bytes) => Some(bytes),
                Step::Authenticated(bytes, principal) => {
                    tracing::debug!(%peer, listener = %session.listener, %principal, reauthentication = a.is_reauthentication(), "authenticated");
                    shared.metrics.authentications.inc();
                    session_ends = sasl.as_ref().and_then(|s| s.session_lifetime).map(|l| std::time::Instant::now() + l);
                    session.principal = principal;
                    current = Arc::new(session.clone());
                    auth = None;
                    Some(bytes)
                }
                Step::Failed(bytes, reason) => {
                    drop(frame);
                    shared.metrics.authentication_failures.inc();
                    tracing::warn!(%peer, listener = %session.listener, reason = %escape(&reason), "authentication failed; closing connection");
                    if let Some(b) = bytes {
                        if out.send(vec![FramePart::Bytes(b)]).await.is_err() {
                            return;
                        }
                    }
                    tokio::time::sleep(a.failed_delay()).await;
                    shared.metrics.connection_closed("authentication failed");
                    return;
                }
            };
            if let Some(bytes) = reply {
                drop(frame);
                if out.send(vec![FramePart::Bytes(bytes)]).await.is_err() {
                    return;
                }
                continue;
            }
        }
        match handle(peer, &current, shared, frame).await {
            Handled::Respond(parts) => {
                if out.send(parts).await.is_err() {
                    return;
                }
            }
            // Over a client quota: the answer goes out, then this connection handles
            // nothing more for the throttle time (Kafka mutes the channel).
            Handled::Throttled(parts, wait) => {
                if out.send(parts).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shared.shutdown.cancelled() => return,
                }
            }
            Handled::Silent => {}
            Handled::Close => return,
        }
    }
}

/// What became of one request.
enum Handled {
    Respond(Outgoing),
    /// A response, after which the connection waits this long (client quotas).
    Throttled(Outgoing, std::time::Duration),
    /// No response is due (Produce with acks=0).
    Silent,
    /// The request was malformed or its response could not be encoded: close the
    /// connection after the responses already due.
    Close,
}

async fn handle(peer: SocketAddr, session: &Arc<Session>, shared: &Shared, frame: Frame) -> Handled {
    let metrics = &shared.metrics;
    match decode_request(frame.bytes.clone(), handlers::supported) {
        Ok(req) => {
            let ctx = Ctx {
                broker: shared.broker.clone(),
                shutdown: shared.shutdown.clone(),
                version: req.header.request_api_version,
                client_id: req.header.client_id.as_ref().map(|s| s.to_string()).unwrap_or_default(),
                peer,
                session: session.clone(),
                splices: Default::default(),
                metrics: metrics.clone(),
            };
            let (api_key, correlation_id) = (req.api_key, req.header.correlation_id);
            let started = std::time::Instant::now();
            let request_len = 4 + frame.bytes.len();
            let mut response = handlers::dispatch(&ctx, req.body).await;
            // The request's bytes go back to the budgets before its response is written.
            drop(frame);
            let failed = response.as_ref().is_some_and(crate::metrics::has_error);
            metrics.request(api_key, started.elapsed(), failed);
            let throttle = throttle(&ctx, api_key, request_len, response.as_mut());
            match response {
                None => Handled::Silent,
                Some(body) => match encode(&ctx, api_key, ctx.version, correlation_id, &body) {
                    Some(parts) if throttle.is_zero() => Handled::Respond(parts),
                    Some(parts) => Handled::Throttled(parts, throttle),
                    None => Handled::Close,
                },
            }
        }
        Err(ProtocolError::UnsupportedVersion { key, version }) if key == ApiKey::ApiVersions as i16 => {
            metrics.refused(api_name(ApiKey::ApiVersions));
            let (_, _, correlation_id) = runnel_protocol::codec::peek_header(&frame.bytes).unwrap_or_default();
            tracing::debug!(%peer, version, "ApiVersions version too new; answering v0 UNSUPPORTED_VERSION");
            match encode_unsupported_api_versions(correlation_id, handlers::api_versions::table()) {
                Ok(bytes) => Handled::Respond(vec![FramePart::Bytes(bytes)]),
                Err(_) => Handled::Close,
            }
        }
        Err(e) => {
            let api = runnel_protocol::codec::peek_header(&frame.bytes)
                .and_then(|(k, _, _)| ApiKey::try_from(k).ok())
                .map_or("Unknown", api_name);
            metrics.refused(api);
            metrics.connection_closed("bad request");
            let client_id = runnel_protocol::codec::peek_client_id(&frame.bytes).unwrap_or("");
            tracing::warn!(%peer, client_id, error = %e, "bad request; closing connection");
            Handled::Close
        }
    }
}

/// Writes the responses in order; ends when the processor is done and everything due is
/// written, or when a write fails or makes no progress for `connections.max.idle.ms`.
async fn write_loop(
    mut wr: Writer,
    peer: SocketAddr,
    shared: &Shared,
    mut responses: mpsc::Receiver<Outgoing>,
    stop: &CancellationToken,
) {
    let _stop_reader = stop.clone().drop_guard();
    while let Some(parts) = responses.recv().await {
        shared.metrics.bytes_out.inc_by(frame_len(&parts) as u64);
        match tokio::time::timeout(shared.limits.idle, wr.write_parts(parts)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "write failed; closing connection");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "client reads no responses; closing connection (connections.max.idle.ms)");
                shared.metrics.connection_closed("connections.max.idle.ms");
                return;
            }
        }
    }
    let _ = wr.shutdown().await;
}

/// Counts a Produce (request bytes) or Fetch (response bytes) against the client's quota
/// and, when it is over, sets `throttle_time_ms` in the response; returns the throttle.
/// Followers' fetches are not counted (Kafka exempts replication).
fn throttle(ctx: &Ctx, api_key: ApiKey, request_len: usize, response: Option<&mut ResponseKind>) -> std::time::Duration {
    use crate::quota::QuotaKind;
    let (kind, bytes) = match (api_key, &response) {
        (ApiKey::Produce, _) => (QuotaKind::Produce, request_len),
        (ApiKey::Fetch, Some(ResponseKind::Fetch(f))) => {
            let inline: usize = f.responses.iter().flat_map(|t| &t.partitions).map(|p| p.records.as_ref().map_or(0, |r| r.len())).sum();
            let spliced: usize = ctx.splices.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|s| s.len).sum();
            (QuotaKind::Fetch, inline + spliced)
        }
        _ => return std::time::Duration::ZERO,
    };
    let view = ctx.broker.security();
    let wait = ctx.broker.quotas().record(&view, kind, &ctx.session.principal.name, &ctx.client_id, bytes as f64);
    let ms = wait.as_millis().min(i32::MAX as u128) as i32;
    match response {
        Some(ResponseKind::Produce(p)) => p.throttle_time_ms = ms,
        Some(ResponseKind::Fetch(f)) => f.throttle_time_ms = ms,
        _ => {}
    }
    wait
}

fn encode(ctx: &Ctx, api_key: ApiKey, version: i16, correlation_id: i32, body: &ResponseKind) -> Option<Outgoing> {
    let splices = std::mem::take(&mut *ctx.splices.lock().unwrap_or_else(|p| p.into_inner()));
    let encoded = encode_response(api_key, version, correlation_id, body)
        .and_then(|frame| splice_records(frame, api_key.response_header_version(version) >= 1, splices));
    match encoded {
        Ok(parts) => Some(parts),
        Err(e) => {
            tracing::error!(peer = %ctx.peer, principal = %ctx.session.principal, client_id = %ctx.client_id, ?api_key, version, error = %e, "could not encode response");
            None
        }
    }
}

/// Decrements the open-connections gauge when the connection ends, however it ends.
struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.dec();
    }
}

fn scopeguard(metrics: Arc<Metrics>) -> OpenConnection {
    OpenConnection(metrics)
}

/// Bytes of an encoded response, spliced record sections included.
fn frame_len(parts: &Outgoing) -> usize {
    parts
        .iter()
        .map(|p| match p {
            FramePart::Bytes(b) => b.len(),
            FramePart::Splice(s) => s.len(),
        })
        .sum()
}

/// Why no frame could be read.
enum FrameError {
    /// A clean end of stream between frames.
    Closed,
    /// The connection failed, or closed mid-frame.
    Io(String),
    /// The client sent a length we refuse.
    Refused(String),
    /// Nothing arrived for `connections.max.idle.ms` with nothing in flight.
    Idle,
}

/// Reads one frame. Before reading a body, takes its length from the connection's
/// read-ahead budget and the broker's `queued.max.request.bytes` (waiting, without
/// reading, until earlier requests are handled). While waiting for a new frame with
/// nothing of this connection in flight, gives up after `connections.max.idle.ms`.
async fn read_frame(rd: &mut Reader, limits: &Limits, own_budget: &Arc<Semaphore>) -> Result<Frame, FrameError> {
    let max = limits.max_frame;
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        // A single `read` loses nothing when the timer wins, unlike `read_exact`.
        let n = tokio::select! {
            r = rd.read(&mut len[got..]) => r.map_err(|e| FrameError::Io(e.to_string()))?,
            _ = tokio::time::sleep(limits.idle), if got == 0 => {
                if own_budget.available_permits() == max {
                    return Err(FrameError::Idle);
                }
                continue;
            }
        };
        if n == 0 {
            return Err(if got == 0 { FrameError::Closed } else { FrameError::Io("connection closed mid-frame".into()) });
        }
        got += n;
    }
    let len = i32::from_be_bytes(len);
    if len < 0 || len as usize > max {
        return Err(FrameError::Refused(format!("frame length {len} is outside 0..={max} (socket.request.max.bytes)")));
    }
    // `len <= max` = each budget's least size, so these complete once earlier requests
    // are handled; they fail only if a semaphore were closed, which we never do.
    let own = own_budget.clone().acquire_many_owned(len as u32).await.map_err(|e| FrameError::Io(e.to_string()))?;
    let global = limits.request_bytes(len as usize).await;
    // The claim is reserved whole (no deadlock between connections each holding part of
    // the budget), but memory is taken as bytes arrive: a claim alone costs nothing. The
    // buffer doubles as it fills, into uninitialised capacity (no memset).
    let len = len as usize;
    let mut buf = BytesMut::with_capacity(len.min(INITIAL_BUFFER));
    while buf.len() < len {
        let remaining = len - buf.len();
        if buf.capacity() == buf.len() {
            buf.reserve(remaining.min(buf.len().max(INITIAL_BUFFER)));
        }
        let room = remaining.min(buf.capacity() - buf.len());
        match tokio::time::timeout(limits.idle, rd.read_buf(&mut (&mut buf).limit(room))).await {
            Ok(Ok(0)) => return Err(FrameError::Io("connection closed mid-frame".into())),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(FrameError::Io(format!("connection closed mid-frame: {e}"))),
            Err(_) => return Err(FrameError::Idle),
        }
    }
    Ok(Frame { bytes: buf.freeze(), _own: own, _global: global })
}
