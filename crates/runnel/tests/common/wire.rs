//! Raw wire helpers for the bad-input tests: encode requests with `kafka-protocol`, write
//! them to a `TcpStream`, read frames back, and check that the broker still serves.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use super::Broker;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use runnel_protocol::batch::{encode_batch, NewRecord};

/// How long a refused connection may stay open, or a response take.
pub const DEADLINE: Duration = Duration::from_secs(15);

// Kafka error codes.
pub const CORRUPT_MESSAGE: i16 = 2;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const INVALID_RECORD: i16 = 87;

/// A u32::MAX unsigned varint: a compact array/string/bytes claiming 2^32 - 2 entries.
pub const HUGE_UVARINT: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];
/// An int32 array/bytes length of 2^31 - 1.
pub const HUGE_I32: [u8; 4] = [0x7f, 0xff, 0xff, 0xff];

// ---------------------------------------------------------------------------------------
// Wire helpers

pub fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

pub fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A request frame with its length prefix, encoded by `kafka-protocol`.
pub fn request(key: ApiKey, version: i16, correlation_id: i32, body: &impl Encodable) -> Vec<u8> {
    request_as("bad-input-test", key, version, correlation_id, body)
}

/// [`request`] with the client id given.
pub fn request_as(client_id: &str, key: ApiKey, version: i16, correlation_id: i32, body: &impl Encodable) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(sb(client_id)))
        .encode(&mut buf, key.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap_or_else(|e| panic!("encode {key:?} v{version}: {e}"));
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

/// A hand-made header (null client id) for frames whose body is the point.
pub fn raw_header(key: i16, version: i16, correlation_id: i32, flexible: bool) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&key.to_be_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(&correlation_id.to_be_bytes());
    h.extend_from_slice(&[0xff, 0xff]);
    if flexible {
        h.push(0);
    }
    h
}

/// Prefixes `body` with its length.
pub fn prefixed(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// Reads one response frame (without its length prefix).
pub fn read_frame(s: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    assert!(len >= 4, "response length {len}");
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body)?;
    Ok(body)
}

/// Splits a response frame into its correlation id and decoded body.
pub fn parse<R: Decodable>(key: ApiKey, version: i16, frame: Vec<u8>) -> (i32, R) {
    let mut b = Bytes::from(frame);
    let h = ResponseHeader::decode(&mut b, key.response_header_version(version)).expect("response header");
    let r = R::decode(&mut b, version).unwrap_or_else(|e| panic!("decode {key:?} v{version} response: {e}"));
    assert!(b.is_empty(), "{} bytes left after the {key:?} v{version} response", b.len());
    (h.correlation_id, r)
}

/// One request, one response.
pub fn call<R: Decodable>(s: &mut (impl Read + Write), key: ApiKey, version: i16, body: &impl Encodable) -> R {
    s.write_all(&request(key, version, 4242, body)).expect("write request");
    let frame = read_frame(s).unwrap_or_else(|e| panic!("no {key:?} v{version} response: {e}"));
    let (corr, r) = parse(key, version, frame);
    assert_eq!(corr, 4242);
    r
}

/// Reads until the broker closes the connection (EOF or reset); fails the test if it is
/// still open after [`DEADLINE`]. Returns whatever arrived before the close.
pub fn expect_closed(s: &mut impl Read, what: &str) -> Vec<u8> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe) => {
                return got
            }
            Err(e) => panic!("{what}: connection still open after {:?} ({e})", start.elapsed()),
        }
    }
}

/// Sends `bytes` (write errors are fine: the broker may close first), optionally
/// half-closes, and expects the broker to close the connection without answering.
pub fn expect_refused(addr: &str, what: &str, bytes: &[u8], half_close: bool) {
    let mut s = connect(addr);
    let _ = s.write_all(bytes);
    if half_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    let got = expect_closed(&mut s, what);
    assert!(got.is_empty(), "{what}: expected a close without a response, got {} bytes", got.len());
}

/// The process is alive and a fresh, well-behaved connection is served: ApiVersions v3
/// and a Metadata v12 round trip.
pub fn assert_serving(b: &mut Broker) {
    assert!(b.is_running(), "broker process died");
    let mut s = connect(&b.addr);
    let av: ApiVersionsResponse = call(
        &mut s,
        ApiKey::ApiVersions,
        3,
        &api_versions_req(),
    );
    assert_eq!(av.error_code, 0);
    assert!(av.api_keys.iter().any(|k| k.api_key == ApiKey::Metadata as i16));
    let md: MetadataResponse = call(&mut s, ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(None));
    assert_eq!(md.brokers.len(), 1);
    assert!(b.is_running(), "broker process died");
}

/// An ApiVersions request with a client software name and version that Kafka accepts (v3+
/// refuses names outside `[a-zA-Z0-9](?:[a-zA-Z0-9\\-.]*[a-zA-Z0-9])?`, empty ones too).
pub fn api_versions_req() -> ApiVersionsRequest {
    ApiVersionsRequest::default().with_client_software_name(sb("runnel-test")).with_client_software_version(sb("1.0"))
}

/// The broker's own ApiVersions table: (api key, min, max).
pub fn advertised(addr: &str) -> Vec<(i16, i16, i16)> {
    let mut s = connect(addr);
    let r: ApiVersionsResponse = call(&mut s, ApiKey::ApiVersions, 3, &api_versions_req());
    assert_eq!(r.error_code, 0);
    r.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect()
}

// Produce helpers

pub fn create_topic(s: &mut TcpStream, name: &str, configs: &[(&str, &str)]) {
    let configs = configs
        .iter()
        .map(|(k, v)| create_topics_request::CreatableTopicConfig::default().with_name(sb(k)).with_value(Some(sb(v))))
        .collect();
    let t = create_topics_request::CreatableTopic::default()
        .with_name(TopicName(sb(name)))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(configs);
    let r: CreateTopicsResponse =
        call(s, ApiKey::CreateTopics, 5, &CreateTopicsRequest::default().with_topics(vec![t]).with_timeout_ms(10_000));
    assert_eq!(r.topics[0].error_code, 0, "create {name}: {:?}", r.topics[0].error_message);
}

/// Produces `records` to partition 0 of `topic` (v9 unless said otherwise) and returns
/// the partition response.
pub fn produce(s: &mut TcpStream, version: i16, topic: &str, records: Vec<u8>) -> produce_response::PartitionProduceResponse {
    produce_within(s, version, topic, records, 10_000)
}

/// [`produce`] (acks=all) that the broker must answer within `timeout_ms` (REQUEST_TIMED_OUT
/// once the in-sync replicas have not confirmed the batch by then).
pub fn produce_within(s: &mut TcpStream, version: i16, topic: &str, records: Vec<u8>, timeout_ms: i32) -> produce_response::PartitionProduceResponse {
    let p = produce_request::PartitionProduceData::default().with_index(0).with_records(Some(records.into()));
    let t = produce_request::TopicProduceData::default().with_name(TopicName(sb(topic))).with_partition_data(vec![p]);
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(timeout_ms).with_topic_data(vec![t]);
    let mut r: ProduceResponse = call(s, ApiKey::Produce, version, &req);
    r.responses.remove(0).partition_responses.remove(0)
}

/// ListOffsets v7 latest offset of partition 0.
pub fn log_end(s: &mut TcpStream, topic: &str) -> i64 {
    let p = list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1);
    let t = list_offsets_request::ListOffsetsTopic::default().with_name(TopicName(sb(topic))).with_partitions(vec![p]);
    let r: ListOffsetsResponse =
        call(s, ApiKey::ListOffsets, 7, &ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![t]));
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

/// Fetch v12 of partition 0 from `offset`: (high watermark, record bytes).
pub fn fetch(s: &mut TcpStream, topic: &str, offset: i64, max_wait_ms: i32) -> (i64, Bytes) {
    let p = fetch_request::FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1 << 20);
    let t = fetch_request::FetchTopic::default().with_topic(TopicName(sb(topic))).with_partitions(vec![p]);
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![t]);
    let r: FetchResponse = call(s, ApiKey::Fetch, 12, &req);
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (p.high_watermark, p.records.clone().unwrap_or_default())
}

pub fn one_record_batch(value: &[u8]) -> Vec<u8> {
    encode_batch(0, 0, &[NewRecord { timestamp: 1_700_000_000_000, key: Some(b"key"), value: Some(value), headers: &[] }])
}

pub fn assert_nothing_stored(s: &mut TcpStream, topic: &str, what: &str) {
    assert_eq!(log_end(s, topic), 0, "{what}: ListOffsets shows something was stored");
    let (hw, records) = fetch(s, topic, 0, 0);
    assert_eq!((hw, records.len()), (0, 0), "{what}: Fetch shows something was stored");
}

/// A deterministic byte stream (xorshift), so failures reproduce.
pub fn junk(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
