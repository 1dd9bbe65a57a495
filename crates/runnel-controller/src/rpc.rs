//! The controllers' RPC: request/response frames over TCP on `--controller-listen`.
//! A frame is `[len: u32 BE][JSON payload]`; a frame longer than [`MAX_FRAME`] closes the
//! connection. A connection carries one request at a time. This module owns the wire and
//! the connections; what a request does is the handler's business (see `lib.rs`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::types::{ControllerRecord, NodeId, Rejection, TypeConfig};

/// Largest frame either side accepts (snapshot chunks are kept well below it).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Commit this record (sent to the leader; another node answers `NotLeader`).
    Propose(ControllerRecord),
    /// A broker is alive (sent to the leader).
    Heartbeat { broker_id: i32 },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// The record's offset and epoch once a majority committed it and the leader applied it.
    Propose(Result<(u64, u64), ProposeError>),
    Heartbeat(Result<(), ProposeError>),
}

/// Why a proposal was not committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    #[error("node is not the controller leader (leader: {leader:?})")]
    NotLeader { leader: Option<(NodeId, String)> },
    #[error("refused: {0}")]
    Rejected(Rejection),
    #[error("the metadata quorum is unavailable: {0}")]
    Unavailable(String),
}

pub type Handler = Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

async fn read_frame<T: DeserializeOwned>(s: &mut TcpStream) -> io::Result<T> {
    let len = s.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes is over the {MAX_FRAME}-byte limit")));
    }
    let mut buf = vec![0; len];
    s.read_exact(&mut buf).await?;
    serde_json::from_slice(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn write_frame<T: Serialize>(s: &mut TcpStream, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    if bytes.len() > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("frame of {} bytes is over the limit", bytes.len())));
    }
    let mut out = Vec::with_capacity(4 + bytes.len());
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&bytes);
    s.write_all(&out).await
}

/// Serves `listener` until the returned task is aborted (which also closes every
/// connection it accepted).
pub fn serve(listener: TcpListener, handler: Handler) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        conns.spawn(connection(stream, peer, handler.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "controller listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    })
}

async fn connection(mut stream: TcpStream, peer: SocketAddr, handler: Handler) {
    loop {
        let req: Request = match read_frame(&mut stream).await {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "controller connection closed");
                return;
            }
        };
        let resp = handler(req).await;
        if write_frame(&mut stream, &resp).await.is_err() {
            return;
        }
    }
}

/// A connection to one controller, opened on first use and again after an error.
pub struct Client {
    addr: String,
    stream: Option<TcpStream>,
}

impl Client {
    pub fn new(addr: String) -> Self {
        Self { addr, stream: None }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `req` and waits for its response, at most `timeout` in all.
    pub async fn call(&mut self, req: &Request, timeout: Duration) -> io::Result<Response> {
        match tokio::time::timeout(timeout, self.exchange(req)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer from {} in {timeout:?}", self.addr)))
            }
        }
    }

    async fn exchange(&mut self, req: &Request) -> io::Result<Response> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        let s = self.stream.as_mut().expect("connected above");
        write_frame(s, req).await?;
        read_frame(s).await
    }
}
