//! Requests from this broker to another (cluster mode): where a broker is reached, and one
//! request/response exchange over a plain TCP connection with a kafka-protocol message.
//! Used by the replica fetchers and the transaction coordinator's marker sender. Owns no
//! retry policy: callers decide what a failure means.

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::state::Broker;

/// Largest response accepted from another broker.
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
}

/// The inter-broker address of broker `id`, if the image lists it as a live broker.
pub fn address(broker: &Broker, id: i32) -> Option<String> {
    let c = broker.cluster()?;
    c.live_brokers().into_iter().find(|b| b.broker_id == id).map(|b| format!("{}:{}", b.host, b.port))
}

/// Sends `req` (API `key` at `version`) and reads its response (`timeout` for the whole
/// exchange).
pub async fn call<R: Decodable>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    correlation: i32,
    client_id: &'static str,
    req: &impl Encodable,
    timeout: Duration,
) -> Result<R, PeerError> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str(client_id)))
        .encode(&mut buf, key.request_header_version(version))
        .map_err(|e| PeerError::Protocol(e.to_string()))?;
    req.encode(&mut buf, version).map_err(|e| PeerError::Protocol(e.to_string()))?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    let exchange = async {
        stream.write_all(&buf).await?;
        let len = stream.read_i32().await?;
        if len < 0 || len as usize > MAX_RESPONSE {
            return Err(PeerError::Protocol(format!("response of {len} bytes")));
        }
        let mut frame = vec![0u8; len as usize];
        stream.read_exact(&mut frame).await?;
        Ok(frame)
    };
    let frame = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| PeerError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "the broker did not answer")))??;
    let mut body = bytes::Bytes::from(frame);
    let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
        .map_err(|e| PeerError::Protocol(e.to_string()))?;
    if header.correlation_id != correlation {
        return Err(PeerError::Protocol("response to another request".into()));
    }
    let resp = R::decode(&mut body, version).map_err(|e| PeerError::Protocol(e.to_string()))?;
    if body.has_remaining() {
        return Err(PeerError::Protocol("trailing bytes after the response".into()));
    }
    Ok(resp)
}
