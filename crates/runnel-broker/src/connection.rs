//! One client connection: reads length-prefixed frames, hands each request to its handler
//! in its own task (so requests are pipelined), and writes responses in request order.
//! Produce requests of one connection are applied in request order, each after the one
//! before it has finished: Kafka clients with several produce requests in flight (librdkafka,
//! kafka-python, without idempotence) count on that for per-partition order.
//!
//! Fetch responses go out zero-copy: the handler leaves placeholders for record sections,
//! and the writer `sendfile`s the segment ranges between the encoded pieces.
//!
//! A frame whose length is negative or above `socket.request.max.bytes`, or that does not
//! decode, closes this connection only (after the responses already due are written).
//!
//! Memory per connection is bounded: the bytes of the requests in flight (read, not yet
//! answered) never exceed `socket.request.max.bytes`; past that we stop reading, and the
//! client's further requests wait in its socket, as Kafka's muted channels do. Without it
//! one client could pipeline 128 frames of 100 MiB each.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use runnel_protocol::splice::{splice_records, FramePart};
use runnel_protocol::{decode_request, encode_response, encode_unsupported_api_versions, ProtocolError};
use runnel_storage::ReadSlice;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::handlers::{self, Ctx};
use crate::metrics::{api_name, Metrics};
use crate::state::Broker;

/// How many requests one connection may have in flight before we stop reading.
const MAX_IN_FLIGHT: usize = 128;

/// A response to come, and the share of the in-flight byte budget its request holds
/// until the response is written.
type Pending = (oneshot::Receiver<Option<Outgoing>>, OwnedSemaphorePermit);

/// An encoded response: bytes, and record sections to send from files.
type Outgoing = Vec<FramePart<ReadSlice>>;

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) {
    metrics.connections.inc();
    metrics.connections_total.inc();
    let _open = scopeguard(metrics.clone());
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Pending>(MAX_IN_FLIGHT);
    let out_metrics = metrics.clone();
    let writer = tokio::spawn(async move {
        while let Some((pending, _budget)) = rx.recv().await {
            match pending.await {
                Ok(Some(parts)) => {
                    out_metrics.bytes_out.inc_by(frame_len(&parts) as u64);
                    if let Err(e) = write_parts(&mut wr, parts).await {
                        tracing::debug!(%peer, error = %e, "write failed; closing connection");
                        return;
                    }
                }
                Ok(None) => {}
                Err(_) => return,
            }
        }
        let _ = wr.shutdown().await;
    });
    let max = broker.config.socket_request_max_bytes();
    let budget = Arc::new(Semaphore::new(max));
    // Completes when the last Produce handed to a task has been handled.
    let mut last_produce: Option<oneshot::Receiver<()>> = None;
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => break,
            f = read_frame(&mut rd, max, &budget) => f,
        };
        let (frame, permit) = match frame {
            Ok(Some(frame_and_permit)) => {
                metrics.bytes_in.inc_by(4 + frame_and_permit.0.len() as u64);
                frame_and_permit
            }
            Ok(None) => break,
            // The client went away: not worth more than a debug line.
            Err(FrameError::Io(reason)) => {
                tracing::debug!(%peer, %reason, "connection closed");
                break;
            }
            Err(FrameError::Refused(reason)) => {
                tracing::warn!(%peer, %reason, "closing connection");
                break;
            }
        };
        let (done_tx, done_rx) = oneshot::channel();
        if tx.send((done_rx, permit)).await.is_err() {
            break;
        }
        match decode_request(frame.clone(), handlers::supported) {
            Ok(req) => {
                let ctx = Ctx {
                    broker: broker.clone(),
                    shutdown: shutdown.clone(),
                    version: req.header.request_api_version,
                    client_id: req.header.client_id.as_ref().map(|s| s.to_string()).unwrap_or_default(),
                    peer,
                    splices: Default::default(),
                    metrics: metrics.clone(),
                };
                let correlation_id = req.header.correlation_id;
                let api_key = req.api_key;
                let (produce_done, after) = if api_key == ApiKey::Produce {
                    let (done, next) = oneshot::channel::<()>();
                    (Some(done), std::mem::replace(&mut last_produce, Some(next)))
                } else {
                    (None, None)
                };
                tokio::spawn(async move {
                    if let Some(previous) = after {
                        // Err: that task ended without finishing (it panicked); go on.
                        let _ = previous.await;
                    }
                    let version = ctx.version;
                    let started = std::time::Instant::now();
                    let response = handlers::dispatch(&ctx, req.body).await;
                    let failed = response.as_ref().is_some_and(crate::metrics::has_error);
                    ctx.metrics.request(api_key, started.elapsed(), failed);
                    if let Some(done) = produce_done {
                        let _ = done.send(());
                    }
                    match response {
                        None => {
                            let _ = done_tx.send(None);
                        }
                        // A response we cannot encode closes the connection (done_tx dropped).
                        Some(body) => {
                            if let Some(parts) = encode(&ctx, api_key, version, correlation_id, &body) {
                                let _ = done_tx.send(Some(parts));
                            }
                        }
                    }
                });
            }
            Err(ProtocolError::UnsupportedVersion { key, version }) if key == ApiKey::ApiVersions as i16 => {
                metrics.refused(api_name(ApiKey::ApiVersions));
                let (_, _, correlation_id) = runnel_protocol::codec::peek_header(&frame).unwrap_or_default();
                tracing::debug!(%peer, version, "ApiVersions version too new; answering v0 UNSUPPORTED_VERSION");
                let bytes = encode_unsupported_api_versions(correlation_id, handlers::api_versions::table()).ok();
                let _ = done_tx.send(bytes.map(|b| vec![FramePart::Bytes(b)]));
            }
            Err(e) => {
                let api = runnel_protocol::codec::peek_header(&frame)
                    .and_then(|(k, _, _)| ApiKey::try_from(k).ok())
                    .map_or("Unknown", api_name);
                metrics.refused(api);
                let client_id = runnel_protocol::codec::peek_client_id(&frame).unwrap_or("");
                tracing::warn!(%peer, client_id, error = %e, "bad request; closing connection");
                drop(done_tx);
                break;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

fn encode(ctx: &Ctx, api_key: ApiKey, version: i16, correlation_id: i32, body: &ResponseKind) -> Option<Outgoing> {
    let splices = std::mem::take(&mut *ctx.splices.lock().unwrap_or_else(|p| p.into_inner()));
    let encoded = encode_response(api_key, version, correlation_id, body)
        .and_then(|frame| splice_records(frame, api_key.response_header_version(version) >= 1, splices));
    match encoded {
        Ok(parts) => Some(parts),
        Err(e) => {
            tracing::error!(peer = %ctx.peer, client_id = %ctx.client_id, ?api_key, version, error = %e, "could not encode response");
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

/// Writes one response: encoded pieces with `write_all`, record sections with `sendfile`.
async fn write_parts(wr: &mut OwnedWriteHalf, parts: Outgoing) -> std::io::Result<()> {
    for part in parts {
        match part {
            FramePart::Bytes(b) => wr.write_all(&b).await?,
            FramePart::Splice(slice) => {
                for s in &slice.slices {
                    send_file(wr.as_ref(), s).await?;
                }
            }
        }
    }
    Ok(())
}

/// `sendfile(2)` of one file range to the socket, waiting for writability as needed.
/// A file shorter than the range (truncated since it was read) is an error: the frame
/// would be short, so the connection must close.
async fn send_file(stream: &TcpStream, slice: &runnel_storage::FileSlice) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut offset = slice.position as libc::off_t;
    let mut left = slice.len;
    while left > 0 {
        stream.writable().await?;
        let sent = stream.try_io(tokio::io::Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the duration of the call (the socket is
            // borrowed, the file is held by its Arc); `offset` is a valid pointer.
            let n = unsafe { libc::sendfile(stream.as_raw_fd(), slice.file.as_raw_fd(), &mut offset, left) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "segment file shorter than the range to send")),
            Ok(n) => left -= n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Why no frame could be read.
enum FrameError {
    /// The connection failed or closed.
    Io(String),
    /// The client sent a length we refuse.
    Refused(String),
}

/// Reads one frame. `Ok(None)` at a clean end of stream; `Err` for a frame we refuse.
/// Before reading a body, takes its length from the connection's in-flight `budget`
/// (waiting, without reading, until earlier requests are answered).
async fn read_frame(
    rd: &mut (impl AsyncReadExt + Unpin),
    max: usize,
    budget: &Arc<Semaphore>,
) -> Result<Option<(Bytes, OwnedSemaphorePermit)>, FrameError> {
    let mut len = [0u8; 4];
    match rd.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(FrameError::Io(e.to_string())),
    }
    let len = i32::from_be_bytes(len);
    if len < 0 || len as usize > max {
        return Err(FrameError::Refused(format!("frame length {len} is outside 0..={max} (socket.request.max.bytes)")));
    }
    // `len <= max` = the budget's size, so this always completes once earlier requests are
    // answered; it fails only if the semaphore were closed, which we never do.
    let permit = budget.clone().acquire_many_owned(len as u32).await.map_err(|e| FrameError::Io(e.to_string()))?;
    // Read into uninitialised capacity: no memset of what the socket overwrites anyway.
    let mut buf = BytesMut::with_capacity(len as usize);
    while buf.len() < len as usize {
        let remaining = len as usize - buf.len();
        match rd.read_buf(&mut (&mut buf).limit(remaining)).await {
            Ok(0) => return Err(FrameError::Io("connection closed mid-frame".into())),
            Ok(_) => {}
            Err(e) => return Err(FrameError::Io(format!("connection closed mid-frame: {e}"))),
        }
    }
    Ok(Some((buf.freeze(), permit)))
}
