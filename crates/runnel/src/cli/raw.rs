//! A small blocking Kafka client for the admin APIs that librdkafka's Rust binding does not
//! offer (ListTransactions, DescribeTransactions, and the like). It never encodes or parses
//! a message by hand: the `kafka-protocol` crate does; this module only frames requests
//! (`length | header | body`), picks for each API the highest version both sides know (from
//! ApiVersions), matches correlation ids, and finds the brokers to ask (Metadata).
//! Plaintext listeners only.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use super::client::ClientArgs;

/// Largest response this client accepts (admin answers are small).
const MAX_RESPONSE: usize = 64 << 20;

/// One connection to one broker, with the API versions it serves.
pub struct Conn {
    stream: TcpStream,
    addr: String,
    correlation: i32,
    versions: HashMap<i16, (i16, i16)>,
}

impl Conn {
    /// Connects to `addr` (HOST:PORT) and asks for its API versions.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Conn> {
        let sock = addr
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {addr}"))?
            .next()
            .ok_or_else(|| anyhow!("{addr} resolves to no address"))?;
        let stream = TcpStream::connect_timeout(&sock, timeout)
            .with_context(|| format!("cannot reach broker at {addr}: is `runnel broker` running? set --brokers or RUNNEL_BROKERS"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn { stream, addr: addr.to_string(), correlation: 0, versions: HashMap::new() };
        // v0 of ApiVersions is understood by every broker; its answer lists the rest.
        let resp = conn.exchange(ApiVersionsRequest::default(), 0)?;
        if resp.error_code != 0 {
            bail!("{addr}: ApiVersions failed with error code {}", resp.error_code);
        }
        conn.versions = resp.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(conn)
    }

    /// The broker this connection talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `req` at the highest version both this client and the broker know.
    pub fn send<R: Request>(&mut self, req: R) -> Result<R::Response> {
        self.send_at_most(req, i16::MAX)
    }

    /// Sends `req` at the highest version both sides know, but not above `cap` (for a
    /// request whose fields are filled for the versions up to `cap`).
    pub fn send_at_most<R: Request>(&mut self, req: R, cap: i16) -> Result<R::Response> {
        let (lo, hi) = *self
            .versions
            .get(&R::KEY)
            .ok_or_else(|| anyhow!("{} does not serve API key {} (needed here)", self.addr, R::KEY))?;
        let version = hi.min(R::VERSIONS.max).min(cap);
        if version < lo.max(R::VERSIONS.min) {
            bail!("{} serves API key {} at versions {lo}..={hi}, which this client cannot speak", self.addr, R::KEY);
        }
        self.exchange(req, version)
    }

    fn exchange<R: Request>(&mut self, req: R, version: i16) -> Result<R::Response> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("runnel-cli")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version)).map_err(|e| anyhow!("encoding a request header: {e}"))?;
        req.encode(&mut body, version).map_err(|e| anyhow!("encoding API key {} v{version}: {e}", R::KEY))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_u32(body.len() as u32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).with_context(|| format!("sending to {}", self.addr))?;

        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).with_context(|| format!("no answer from {}", self.addr))?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_RESPONSE {
            bail!("{} answered with a {len}-byte frame: is it a Kafka broker?", self.addr);
        }
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf).with_context(|| format!("reading the answer of {}", self.addr))?;
        let mut buf = Bytes::from(buf);
        let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .map_err(|e| anyhow!("{}: bad response header: {e}", self.addr))?;
        if header.correlation_id != self.correlation {
            bail!("{}: answer to request {} where {} was expected", self.addr, header.correlation_id, self.correlation);
        }
        let resp = R::Response::decode(&mut buf, version).map_err(|e| anyhow!("{}: bad response to API key {}: {e}", self.addr, R::KEY))?;
        if buf.has_remaining() {
            bail!("{}: {} bytes left over after the response to API key {}", self.addr, buf.remaining(), R::KEY);
        }
        Ok(resp)
    }
}

/// A connection to the first reachable broker of `--brokers`.
pub fn bootstrap(args: &ClientArgs) -> Result<Conn> {
    let mut last = None;
    for hp in args.brokers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match Conn::connect(hp, args.timeout()) {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("no broker address given: set --brokers or RUNNEL_BROKERS")))
}

/// Every broker of the cluster: (node id, HOST:PORT), from Metadata.
pub fn brokers(conn: &mut Conn) -> Result<Vec<(i32, String)>> {
    let md = conn.send(MetadataRequest::default().with_topics(Some(Vec::new())))?;
    Ok(md.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port))).collect())
}

/// A Kafka error code as Kafka names it, e.g. `TRANSACTIONAL_ID_NOT_FOUND (105)`.
pub fn error_name(code: i16) -> String {
    let Some(err) = kafka_protocol::ResponseError::try_from_code(code) else { return format!("error code {code}") };
    // The crate's variant names are Kafka's in CamelCase.
    let mut name = String::new();
    for (i, c) in format!("{err:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    format!("{name} ({code})")
}
