//! One client connection, run to completion on its own task. Requests take effect in the
//! order they arrive and one at a time, as in Kafka (librdkafka pipelines asynchronous
//! OffsetCommits and counts on it): the task takes the next frame, runs its handler, writes
//! its response (or owes it: an acks=all produce, below), then takes the next. A request that does not wait (Metadata, ApiVersions,
//! a Produce appended inline, a Fetch answered at once …) costs no hand-off to another task
//! or thread: one read for all the frames the socket holds, the handler as a direct call,
//! and one vectored write per response. Handlers move blocking work (fsync, file walks) to
//! the blocking pool themselves; everything else runs here.
//!
//! Pipelining is kept: frames are read ahead in one buffer (a read takes whatever the
//! socket holds, up to [`READ_CHUNK`] beyond the frame being read), and each is answered in
//! order.
//!
//! **Waits for the ISR overlap the next requests.** An acks=all produce in a cluster is
//! appended here, in request order like every request, but its response is due only once
//! the in-sync replicas have the batches (about one follower round trip). That wait is
//! not done on this task: it becomes a response owed ([`handlers::Reply::Later`]), and the
//! connection goes on reading and handling the requests behind it (further produces append
//! after it). Responses are written strictly in request order, each as soon as it and all
//! before it are ready; at [`MAX_IN_FLIGHT`] owed responses the connection reads nothing
//! more until the oldest is written. Without this one connection managed one acks=all
//! request per ISR round trip (~1,250/s at 0.8 ms): librdkafka with `linger.ms=0` sends a
//! request per record and fell seconds behind at 10,000 records/s.
//!
//! Other handlers that wait (a long-poll Fetch, a group join, an append that fsyncs, an
//! OffsetCommit replicated in a cluster) still await on this task, which meanwhile reads no
//! further frame but keeps writing the responses owed before it. This is Kafka's rule for
//! every request: its network thread mutes a channel once a request is read and unmutes it
//! when the response is sent, so a Kafka broker holds at most one request per connection
//! (a client's `max.in.flight` only fills the socket). We keep that rule for long polls: a
//! consumer sends one Fetch per broker at a time, so overlapping would gain nothing, and a
//! produce read behind a waiting Fetch would change what that Fetch returns. The difference
//! from Kafka is only the acks=all wait, whose effect (the append) already happened in
//! order.
//!
//! Fetch responses go out zero-copy on plaintext listeners: the handler leaves
//! placeholders for record sections, and the response is written with `sendfile` of the
//! segment ranges between the encoded pieces; small sections are copied in, so that the
//! whole response is one `writev` (see `transport`; TLS listeners copy them).
//!
//! On TLS listeners the handshake comes first (a client certificate names the principal);
//! on SASL listeners the connection authenticates the client (`auth::sasl`) before any
//! other request than ApiVersions is served, and a failed authentication closes the
//! connection after `connection.failed.authentication.delay.ms`.
//!
//! A frame whose length is negative or above `socket.request.max.bytes`, or that does not
//! decode, closes this connection only (after the responses already due are written).
//!
//! Memory is bounded. One connection holds at most one frame (at most
//! `socket.request.max.bytes`) and [`READ_CHUNK`] read ahead of it, at most
//! [`MAX_IN_FLIGHT`] owed responses (produce answers, a few hundred bytes each, each due
//! within its request's `timeout_ms`), and one response being
//! written (record sections stay in the files, or are copied only when small); all
//! connections together hold at most `queued.max.request.bytes` of frames. Past that the
//! connection reads no further and the client's further requests wait in its socket, as
//! Kafka's muted channels do. A connection idle for `connections.max.idle.ms` (nothing
//! read while no request is in flight), whose frame stops arriving for that long, or whose
//! response cannot be written for that long, is closed. As with Kafka's memory pool, a
//! frame's whole claimed length is reserved from `queued.max.request.bytes` before its body
//! is read (so connections never deadlock each holding part of the budget), but memory is
//! only taken as the bytes arrive; a client that claims a large frame and stalls holds its
//! claim until `connections.max.idle.ms` closes it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::stream::{FuturesOrdered, StreamExt};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use runnel_protocol::splice::{splice_records, FramePart};
use runnel_protocol::{decode_request, encode_response, encode_unsupported_api_versions, ProtocolError};
use runnel_storage::ReadSlice;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::auth::sasl::{escape, Authenticator, SaslSettings, Step};
use crate::auth::tls::TlsContext;
use crate::auth::{SecurityProtocol, Session};
use crate::handlers::{self, Ctx, Reply};
use crate::limits::{BudgetShare, ConnectionSlot, Limits};
use crate::metrics::{api_name, Metrics};
use crate::state::{Broker, SecurityView};
use crate::transport::{self, Reader, Writer};

/// How far one read may go beyond the frame being read: the frames a client pipelined
/// are taken by the same read, up to this many bytes.
pub const READ_CHUNK: usize = 16 * 1024;

/// Responses one connection may owe at once: requests that took effect (in order) and
/// whose answers wait, acks=all produces for the in-sync replicas. At this many the
/// connection reads no further frame until the oldest is written; the client's further
/// requests wait in its socket. librdkafka keeps up to 5 requests in flight per broker
/// with idempotence (1,000,000 without), the Java client 5; at 10,000 one-record requests
/// per second and an ISR round trip near 1 ms about 10 are owed at a time.
pub const MAX_IN_FLIGHT: usize = 32;

/// A deadline that never comes (for a `connections.max.idle.ms` too large to add).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365);

/// Longest a TLS handshake may take (or `connections.max.idle.ms`, if shorter).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A frame read, with its share of the broker's request budget, held until its handler
/// is done.
struct Frame {
    bytes: Bytes,
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
    let mut conn = Connection {
        rd,
        wr,
        pending: BytesMut::new(),
        shared: &shared,
        peer,
        idle: Box::pin(tokio::time::sleep(shared.limits.idle)),
        active: Instant::now(),
        owing: false,
    };
    if conn.run(session, sasl, auth).await {
        let _ = tokio::time::timeout(shared.limits.idle, conn.wr.shutdown()).await;
    }
}

/// One connection's socket and read buffer.
struct Connection<'a> {
    rd: Reader,
    wr: Writer,
    /// Bytes read and not yet taken as a frame.
    pending: BytesMut,
    shared: &'a Shared,
    peer: SocketAddr,
    /// `connections.max.idle.ms`: one timer for the connection, re-armed only when it
    /// fires before the connection has been idle that long.
    idle: Pin<Box<Sleep>>,
    /// When the connection last showed life: a byte read, or the start of a wait for a
    /// frame.
    active: Instant,
    /// Whether responses are owed: the client waits for them, the connection is not idle.
    owing: bool,
}

impl Connection<'_> {
    /// Serves requests in order until the client closes, the broker shuts down, a frame is
    /// refused, the connection idles out, a write fails or authentication fails. On SASL
    /// listeners, authenticates first; with `connections.max.reauth.ms`, the session ends
    /// unless the client re-authenticates in time (KIP-368), and a request after its end
    /// closes the connection. Returns whether the write side is still usable (to close it
    /// cleanly).
    async fn run(&mut self, mut session: Session, sasl: Option<Arc<SaslSettings>>, mut auth: Option<Authenticator>) -> bool {
        let shared = self.shared;
        let peer = self.peer;
        // One handler context for the connection, updated per request.
        let mut ctx = Ctx {
            broker: shared.broker.clone(),
            shutdown: shared.shutdown.clone(),
            version: 0,
            client_id: String::new(),
            peer,
            session: Arc::new(session.clone()),
            splices: Default::default(),
            metrics: shared.metrics.clone(),
            fetch_sessions: Default::default(),
        };
        let mut session_ends: Option<Instant> = None;
        // Responses owed, in request order: acks=all produces waiting for the ISR, and the
        // answers of the requests read behind them.
        let mut owed: FuturesOrdered<Owed> = FuturesOrdered::new();
        loop {
            self.owing = !owed.is_empty();
            let frame = if owed.is_empty() {
                self.next_frame().await
            } else {
                // The oldest owed response goes out as soon as it is ready; meanwhile the
                // next frame is read, unless MAX_IN_FLIGHT responses are owed already.
                tokio::select! {
                    biased;
                    Some(done) = owed.next() => {
                        match self.deliver(done).await {
                            None => continue,
                            Some(usable) => return usable,
                        }
                    }
                    frame = self.next_frame(), if owed.len() < MAX_IN_FLIGHT => frame,
                }
            };
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    self.closing(e);
                    // The requests read whole are answered first.
                    return self.settle(&mut owed).await.unwrap_or(true);
                }
            };
            shared.metrics.bytes_in.inc_by(4 + frame.bytes.len() as u64);
            let key = runnel_protocol::codec::peek_header(&frame.bytes).map(|(k, _, _)| k);
            let sasl_api = key == Some(ApiKey::SaslHandshake as i16) || key == Some(ApiKey::SaslAuthenticate as i16);
            let expired = session_ends.is_some_and(|t| Instant::now() >= t);
            // After the session's end only a re-authentication already under way goes on.
            if expired && !(auth.is_some() && sasl_api) {
                tracing::info!(%peer, listener = %session.listener, principal = %session.principal, "session expired without re-authentication (connections.max.reauth.ms); closing connection");
                shared.metrics.connection_closed("connections.max.reauth.ms");
                return self.settle(&mut owed).await.unwrap_or(true);
            }
            if let (None, Some(settings)) = (&auth, &sasl) {
                if settings.session_lifetime.is_some() && key == Some(ApiKey::SaslHandshake as i16) {
                    auth = Some(Authenticator::reauthenticate(settings.clone(), session.principal.clone()));
                }
            }
            if let Some(a) = auth.as_mut() {
                // Authentication answers come after every response owed (re-authentication
                // happens between produces).
                if let Some(usable) = self.settle(&mut owed).await {
                    return usable;
                }
                let reply = match a.step(&frame.bytes, &shared.broker).await {
                    Step::Serve => None,
                    Step::Respond(bytes) => Some(bytes),
                    Step::Authenticated(bytes, principal) => {
                        tracing::debug!(%peer, listener = %session.listener, %principal, reauthentication = a.is_reauthentication(), "authenticated");
                        shared.metrics.authentications.inc();
                        session_ends = sasl.as_ref().and_then(|s| s.session_lifetime).map(|l| Instant::now() + l);
                        session.principal = principal;
                        ctx.session = Arc::new(session.clone());
                        auth = None;
                        Some(bytes)
                    }
                    Step::Failed(bytes, reason) => {
                        drop(frame);
                        shared.metrics.authentication_failures.inc();
                        tracing::warn!(%peer, listener = %session.listener, reason = %escape(&reason), "authentication failed; closing connection");
                        if let Some(b) = bytes {
                            if !self.write(vec![FramePart::Bytes(b)]).await {
                                return false;
                            }
                        }
                        tokio::time::sleep(a.failed_delay()).await;
                        shared.metrics.connection_closed("authentication failed");
                        return true;
                    }
                };
                if let Some(bytes) = reply {
                    drop(frame);
                    if !self.write(vec![FramePart::Bytes(bytes)]).await {
                        return false;
                    }
                    continue;
                }
            }
            let handled = if owed.is_empty() {
                handle(&mut ctx, shared, frame).await
            } else {
                // A request that waits here (a long-poll Fetch, a group join …) does not
                // hold back the responses owed before it.
                let handling = handle(&mut ctx, shared, frame);
                tokio::pin!(handling);
                loop {
                    tokio::select! {
                        biased;
                        handled = &mut handling => break handled,
                        Some(done) = owed.next() => {
                            if let Some(usable) = self.deliver(done).await {
                                return usable;
                            }
                        }
                    }
                }
            };
            match handled {
                Handled::Later(wait) => owed.push_back(wait),
                Handled::Silent => {}
                handled if !owed.is_empty() => owed.push_back(Box::pin(std::future::ready(handled))),
                handled => {
                    if let Some(usable) = self.deliver(handled).await {
                        return usable;
                    }
                }
            }
        }
    }

    /// Writes one response as its request's outcome says. `Some(usable)`: the connection
    /// ends (and whether its write side is still usable).
    async fn deliver(&mut self, handled: Handled) -> Option<bool> {
        match handled {
            Handled::Respond(parts) => (!self.write(parts).await).then_some(false),
            // Over a client quota: the answer goes out, then this connection handles
            // nothing more for the throttle time (Kafka mutes the channel).
            Handled::Throttled(parts, wait) => {
                if !self.write(parts).await {
                    return Some(false);
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => None,
                    _ = self.shared.shutdown.cancelled() => Some(true),
                }
            }
            Handled::Silent => None,
            Handled::Close => Some(true),
            // Owed responses resolve to what is written, never to another wait.
            Handled::Later(_) => {
                debug_assert!(false, "an owed response resolved to another wait");
                Some(true)
            }
        }
    }

    /// Writes every owed response, in order, as each is ready. `Some(usable)` if the
    /// connection is to end.
    async fn settle(&mut self, owed: &mut FuturesOrdered<Owed>) -> Option<bool> {
        while let Some(done) = owed.next().await {
            if let Some(usable) = self.deliver(done).await {
                return Some(usable);
            }
        }
        None
    }

    /// Logs and counts why no further frame could be read.
    fn closing(&self, e: FrameError) {
        let peer = self.peer;
        match e {
            FrameError::Closed => {}
            // The client went away: not worth more than a debug line.
            FrameError::Io(reason) => tracing::debug!(%peer, %reason, "connection closed"),
            FrameError::Idle => {
                tracing::debug!(%peer, idle = ?self.shared.limits.idle, "closing idle connection (connections.max.idle.ms)");
                self.shared.metrics.connection_closed("connections.max.idle.ms");
            }
            FrameError::Refused(reason) => {
                tracing::warn!(%peer, %reason, "closing connection");
                self.shared.metrics.connection_closed("socket.request.max.bytes");
            }
        }
    }

    /// Writes one response (false: the connection is to close, the write failed or made no
    /// progress for `connections.max.idle.ms`).
    async fn write(&mut self, parts: Outgoing) -> bool {
        self.shared.metrics.bytes_out.inc_by(frame_len(&parts) as u64);
        // The timer is armed only if the write has to wait for the client.
        match tokio::time::timeout(self.shared.limits.idle, self.wr.write_parts(parts)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "write failed; closing connection");
                false
            }
            Err(_) => {
                tracing::debug!(peer = %self.peer, "client reads no responses; closing connection (connections.max.idle.ms)");
                self.shared.metrics.connection_closed("connections.max.idle.ms");
                false
            }
        }
    }

    /// Takes the next frame: from the bytes already read if it is there whole, else reading
    /// what the socket holds. Before a body is read, its claimed length is taken from the
    /// broker's `queued.max.request.bytes` (waiting, without reading, until other requests
    /// are handled). Ends at shutdown when it would have to wait (frames already read
    /// whole are answered first).
    async fn next_frame(&mut self) -> Result<Frame, FrameError> {
        let limits = &self.shared.limits;
        let max = limits.max_frame;
        // From here the client's silence counts as idleness (unless responses are owed).
        self.active = Instant::now();
        let mut claim: Option<BudgetShare> = None;
        loop {
            let mut room = READ_CHUNK;
            if self.pending.len() >= 4 {
                let len = i32::from_be_bytes([self.pending[0], self.pending[1], self.pending[2], self.pending[3]]);
                if len < 0 || len as usize > max {
                    return Err(FrameError::Refused(format!("frame length {len} is outside 0..={max} (socket.request.max.bytes)")));
                }
                let len = len as usize;
                if claim.is_none() {
                    // `len <= max` <= the budget, so this completes once other requests are
                    // handled; the wait is not the client's idleness.
                    claim = Some(tokio::select! {
                        biased;
                        _ = self.shared.shutdown.cancelled() => return Err(FrameError::Closed),
                        c = limits.request_bytes(len) => c,
                    });
                    self.active = Instant::now();
                }
                if self.pending.len() >= 4 + len {
                    let mut bytes = self.pending.split_to(4 + len);
                    bytes.advance(4);
                    if self.pending.is_empty() {
                        // The frame keeps the buffer; an idle connection holds none.
                        self.pending = BytesMut::new();
                    }
                    return Ok(Frame { bytes: bytes.freeze(), _global: claim.expect("claimed above") });
                }
                // The claim is reserved whole, but memory is taken as bytes arrive: the
                // buffer doubles as it fills, into uninitialised capacity (no memset).
                let missing = 4 + len - self.pending.len();
                if self.pending.capacity() == self.pending.len() {
                    self.pending.reserve(missing.min(self.pending.len().max(READ_CHUNK)));
                }
                room += missing;
            } else if self.pending.capacity() - self.pending.len() < 4 {
                self.pending.reserve(READ_CHUNK);
            }
            let between_frames = self.pending.is_empty();
            self.read_some(room, between_frames).await?;
        }
    }

    /// One read of what the socket holds (at most `room` bytes) into the buffer. Fails
    /// after `connections.max.idle.ms` without a byte, and at shutdown (a frame not read
    /// whole by then is not answered).
    async fn read_some(&mut self, room: usize, between_frames: bool) -> Result<(), FrameError> {
        let shared = self.shared;
        loop {
            let mut buf = (&mut self.pending).limit(room);
            let read = tokio::select! {
                biased;
                _ = shared.shutdown.cancelled() => return Err(FrameError::Closed),
                r = self.rd.read_buf(&mut buf) => r,
                _ = self.idle.as_mut() => {
                    // Fired at a deadline set earlier: idle only if nothing happened since
                    // and no response is owed.
                    if self.owing {
                        self.active = Instant::now();
                    }
                    match self.active.checked_add(shared.limits.idle) {
                        Some(due) if Instant::now() >= due => return Err(FrameError::Idle),
                        Some(due) => self.idle.as_mut().reset(due.into()),
                        None => self.idle.as_mut().reset(tokio::time::Instant::now() + FAR_FUTURE),
                    }
                    continue;
                }
            };
            return match read {
                Ok(0) if between_frames => Err(FrameError::Closed),
                Ok(0) => Err(FrameError::Io("connection closed mid-frame".into())),
                Ok(_) => {
                    self.active = Instant::now();
                    Ok(())
                }
                Err(e) if between_frames => Err(FrameError::Io(e.to_string())),
                Err(e) => Err(FrameError::Io(format!("connection closed mid-frame: {e}"))),
            };
        }
    }
}

/// What became of one request.
enum Handled {
    Respond(Outgoing),
    /// A response, after which the connection waits this long (client quotas).
    Throttled(Outgoing, Duration),
    /// No response is due (Produce with acks=0).
    Silent,
    /// The request was malformed or its response could not be encoded: close the
    /// connection after the responses already due.
    Close,
    /// The request took effect; its outcome (one of the above) is owed once this resolves
    /// (acks=all: the in-sync replicas have the batches).
    Later(Owed),
}

/// A response owed: resolves within the request's own timeout.
type Owed = Pin<Box<dyn Future<Output = Handled> + Send>>;

async fn handle(ctx: &mut Ctx, shared: &Shared, frame: Frame) -> Handled {
    let metrics = &shared.metrics;
    let peer = ctx.peer;
    match decode_request(frame.bytes.clone(), handlers::supported) {
        Ok(req) => {
            ctx.version = req.header.request_api_version;
            ctx.client_id.clear();
            if let Some(id) = &req.header.client_id {
                ctx.client_id.push_str(id);
            }
            let (api_key, correlation_id) = (req.api_key, req.header.correlation_id);
            let started = Instant::now();
            let exempt = quota_exempt(&req.body, ctx.version);
            let request_len = 4 + frame.bytes.len();
            let (reply, busy) = crate::quota::busy(handlers::dispatch(ctx, req.body)).await;
            let cost = Cost { request_len, busy, exempt };
            // The request's bytes go back to the budget before its response is written.
            drop(frame);
            match reply {
                Reply::Now(response) => finish(ctx, api_key, correlation_id, started, cost, response),
                Reply::Later(wait) => {
                    let ctx = ctx.detached();
                    Handled::Later(Box::pin(async move {
                        let response = wait.await;
                        finish(&ctx, api_key, correlation_id, started, cost, Some(response))
                    }))
                }
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

/// What a request costs against the client's quotas.
#[derive(Clone, Copy)]
struct Cost {
    /// Request bytes, length prefix included.
    request_len: usize,
    /// Time its handler spent running (not waiting).
    busy: Duration,
    /// Replication, markers and the requests before authentication count against no quota.
    exempt: bool,
}

/// Kafka exempts cluster actions (followers' fetches, transaction markers) from quotas;
/// ApiVersions and SASL come before the client has a principal.
fn quota_exempt(body: &RequestKind, version: i16) -> bool {
    match body {
        RequestKind::Fetch(f) => handlers::fetch::replica_id(f, version) >= 0,
        RequestKind::ApiVersions(_) | RequestKind::SaslHandshake(_) | RequestKind::SaslAuthenticate(_) | RequestKind::WriteTxnMarkers(_) => true,
        _ => false,
    }
}

/// Counts a handled request in the metrics, sets its throttle and encodes its response.
fn finish(ctx: &Ctx, api_key: ApiKey, correlation_id: i32, started: Instant, cost: Cost, mut response: Option<ResponseKind>) -> Handled {
    let failed = response.as_ref().is_some_and(crate::metrics::has_error);
    ctx.metrics.request(api_key, started.elapsed(), failed);
    // The quotas in force, if any apply to this request (usually none: nothing to count).
    let quotas = if cost.exempt { None } else { Some(ctx.broker.security()).filter(|v| !v.quotas.is_empty()) };
    let throttle = quotas.as_ref().map_or(Duration::ZERO, |view| throttle(ctx, view, api_key, cost, response.as_mut()));
    let encoding = Instant::now();
    let handled = match response {
        None => Handled::Silent,
        Some(body) => match encode(ctx, api_key, ctx.version, correlation_id, &body) {
            Some(parts) if throttle.is_zero() => Handled::Respond(parts),
            Some(parts) => Handled::Throttled(parts, throttle),
            None => Handled::Close,
        },
    };
    if let Some(view) = quotas {
        // Encoding is request time too; it counts towards the next request's throttle.
        let share = crate::quota::request_share(encoding.elapsed());
        ctx.broker.quotas().record(&view, crate::quota::QuotaKind::Request, &ctx.session.principal.name, &ctx.client_id, share);
    }
    handled
}

/// Counts a request against the client's quotas: its time (`request_percentage`), and the
/// request bytes of a Produce or the response bytes of a Fetch. When it is over one, sets
/// `throttle_time_ms` in the response (the longer throttle of the two) and returns it.
fn throttle(ctx: &Ctx, view: &SecurityView, api_key: ApiKey, cost: Cost, response: Option<&mut ResponseKind>) -> Duration {
    use crate::quota::QuotaKind;
    let (user, client) = (&ctx.session.principal.name, &ctx.client_id);
    let quotas = ctx.broker.quotas();
    let bytes = match (api_key, &response) {
        (ApiKey::Produce, _) => Some((QuotaKind::Produce, cost.request_len)),
        (ApiKey::Fetch, Some(ResponseKind::Fetch(f))) => {
            let inline: usize = f.responses.iter().flat_map(|t| &t.partitions).map(|p| p.records.as_ref().map_or(0, |r| r.len())).sum();
            let spliced: usize = ctx.splices.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|s| s.len).sum();
            Some((QuotaKind::Fetch, inline + spliced))
        }
        _ => None,
    };
    let by_bytes = bytes.map_or(Duration::ZERO, |(kind, n)| quotas.record(view, kind, user, client, n as f64));
    let by_time = quotas.record(view, QuotaKind::Request, user, client, crate::quota::request_share(cost.busy));
    let wait = by_bytes.max(by_time);
    if let Some(r) = response {
        set_throttle_time(r, wait.as_millis().min(i32::MAX as u128) as i32);
    }
    wait
}

/// Sets `throttle_time_ms` in a response of any API that has it.
fn set_throttle_time(response: &mut ResponseKind, ms: i32) {
    macro_rules! set {
        ($($api:ident),*) => {
            match response {
                $(ResponseKind::$api(r) => r.throttle_time_ms = ms,)*
                _ => {}
            }
        };
    }
    set!(
        Produce, Fetch, ListOffsets, Metadata, OffsetCommit, OffsetFetch, FindCoordinator, JoinGroup, Heartbeat, LeaveGroup, SyncGroup,
        DescribeGroups, ListGroups, ApiVersions, CreateTopics, DeleteTopics, DeleteRecords, InitProducerId, OffsetForLeaderEpoch,
        AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit, DescribeAcls, CreateAcls, DeleteAcls, DescribeConfigs, AlterConfigs,
        CreatePartitions, DeleteGroups, IncrementalAlterConfigs, OffsetDelete, DescribeClientQuotas, AlterClientQuotas,
        DescribeUserScramCredentials, AlterUserScramCredentials, DescribeCluster, DescribeProducers, DescribeTransactions, ListTransactions
    );
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
