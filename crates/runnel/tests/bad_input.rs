//! Bad input never hurts the broker. Each case talks to a real `runnel broker` over a raw
//! `TcpStream` and must end in an error response or a closed connection (EOF or reset
//! within a deadline, never a hang); afterwards the process is still alive and a second,
//! well-behaved connection is served.
//!
//! Covered: junk bytes; negative, oversized (> socket.request.max.bytes) and
//! shorter-than-a-header frames; a truncated header; an unknown api key; known apis at
//! unsupported versions; requests claiming 2^31 / 2^32-element arrays and byte runs right
//! after the header (the `kafka-protocol` pre-allocation abort); ApiVersions from the
//! future (KIP-511 v0 answer); produce batches with a bad CRC, bad magic, a record count
//! that disagrees with lastOffsetDelta, and above max.message.bytes (nothing stored);
//! hundreds of pipelined requests answered in order; and 50 half-frame connections that
//! hang while others are served (and the broker still stops cleanly).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::Broker;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use runnel_protocol::batch::{self, encode_batch, NewRecord};

/// How long a refused connection may stay open, or a response take.
const DEADLINE: Duration = Duration::from_secs(15);

// Kafka error codes.
const CORRUPT_MESSAGE: i16 = 2;
const MESSAGE_TOO_LARGE: i16 = 10;
const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_RECORD: i16 = 87;

/// A u32::MAX unsigned varint: a compact array/string/bytes claiming 2^32 - 2 entries.
const HUGE_UVARINT: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];
/// An int32 array/bytes length of 2^31 - 1.
const HUGE_I32: [u8; 4] = [0x7f, 0xff, 0xff, 0xff];

// ---------------------------------------------------------------------------------------
// Wire helpers

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A request frame with its length prefix, encoded by `kafka-protocol`.
fn request(key: ApiKey, version: i16, correlation_id: i32, body: &impl Encodable) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(sb("bad-input-test")))
        .encode(&mut buf, key.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap_or_else(|e| panic!("encode {key:?} v{version}: {e}"));
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

/// A hand-made header (null client id) for frames whose body is the point.
fn raw_header(key: i16, version: i16, correlation_id: i32, flexible: bool) -> Vec<u8> {
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
fn prefixed(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// Reads one response frame (without its length prefix).
fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    assert!(len >= 4, "response length {len}");
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body)?;
    Ok(body)
}

/// Splits a response frame into its correlation id and decoded body.
fn parse<R: Decodable>(key: ApiKey, version: i16, frame: Vec<u8>) -> (i32, R) {
    let mut b = Bytes::from(frame);
    let h = ResponseHeader::decode(&mut b, key.response_header_version(version)).expect("response header");
    let r = R::decode(&mut b, version).unwrap_or_else(|e| panic!("decode {key:?} v{version} response: {e}"));
    assert!(b.is_empty(), "{} bytes left after the {key:?} v{version} response", b.len());
    (h.correlation_id, r)
}

/// One request, one response.
fn call<R: Decodable>(s: &mut TcpStream, key: ApiKey, version: i16, body: &impl Encodable) -> R {
    s.write_all(&request(key, version, 4242, body)).expect("write request");
    let frame = read_frame(s).unwrap_or_else(|e| panic!("no {key:?} v{version} response: {e}"));
    let (corr, r) = parse(key, version, frame);
    assert_eq!(corr, 4242);
    r
}

/// Reads until the broker closes the connection (EOF or reset); fails the test if it is
/// still open after [`DEADLINE`]. Returns whatever arrived before the close.
fn expect_closed(s: &mut TcpStream, what: &str) -> Vec<u8> {
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
fn expect_refused(addr: &str, what: &str, bytes: &[u8], half_close: bool) {
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
fn assert_serving(b: &mut Broker) {
    assert!(b.is_running(), "broker process died");
    let mut s = connect(&b.addr);
    let av: ApiVersionsResponse = call(
        &mut s,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default().with_client_software_name(sb("bad-input")).with_client_software_version(sb("1")),
    );
    assert_eq!(av.error_code, 0);
    assert!(av.api_keys.iter().any(|k| k.api_key == ApiKey::Metadata as i16));
    let md: MetadataResponse = call(&mut s, ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(None));
    assert_eq!(md.brokers.len(), 1);
    assert!(b.is_running(), "broker process died");
}

/// The broker's own ApiVersions table: (api key, min, max).
fn advertised(addr: &str) -> Vec<(i16, i16, i16)> {
    let mut s = connect(addr);
    let r: ApiVersionsResponse = call(&mut s, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
    r.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect()
}

// ---------------------------------------------------------------------------------------
// Framing

/// A deterministic byte stream (xorshift), so failures reproduce.
fn junk(seed: u64, n: usize) -> Vec<u8> {
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

#[test]
fn junk_bytes_close_the_connection() {
    let mut b = Broker::start(&[]);
    for seed in 1..=20u64 {
        // Any first four bytes, then junk, then EOF from our side: the broker must close
        // (a partial frame at EOF, or a frame that does not decode).
        let bytes = junk(seed, 1 + (seed as usize * 97) % 3000);
        let mut s = connect(&b.addr);
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(Shutdown::Write);
        expect_closed(&mut s, &format!("junk seed {seed}"));
    }
    let served = advertised(&b.addr);
    for seed in 100..130u64 {
        // A whole frame of junk behind a served api key: reaches the body decoders.
        let j = junk(seed, 300);
        let (key, min, max) = served[seed as usize % served.len()];
        let version = min + (j[0] as i16) % (max - min + 1);
        let mut body = raw_header(key, version, seed as i32, false);
        body.extend_from_slice(&j[1..1 + (j[2] as usize)]);
        let mut s = connect(&b.addr);
        let _ = s.write_all(&prefixed(&body));
        // Junk may happen to decode (and be answered); either way the connection ends or
        // answers within the deadline, and then ends at our EOF.
        let _ = s.shutdown(Shutdown::Write);
        expect_closed(&mut s, &format!("junk frame seed {seed} key {key} v{version}"));
    }
    assert_serving(&mut b);
}

#[test]
fn bad_length_prefixes_close_the_connection() {
    let mut b = Broker::start(&[]);
    // Negative lengths: refused without waiting for a body.
    for len in [-1i32, -2, i32::MIN] {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff]);
        expect_refused(&b.addr, &format!("length {len}"), &bytes, false);
    }
    // Above socket.request.max.bytes (100 MiB): refused at once, nothing allocated or
    // waited for.
    for len in [100 * 1024 * 1024 + 1, 1 << 30, i32::MAX] {
        expect_refused(&b.addr, &format!("length {len}"), &len.to_be_bytes(), false);
    }
    assert_serving(&mut b);
}

#[test]
fn oversized_frames_respect_a_configured_limit() {
    let mut b = Broker::start(&["-o", "socket.request.max.bytes=1000"]);
    // 1001 bytes claimed: refused before the body arrives.
    let mut bytes = 1001i32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&raw_header(18, 0, 1, false));
    expect_refused(&b.addr, "1001 > socket.request.max.bytes", &bytes, false);
    // A real request under the limit is served.
    let mut s = connect(&b.addr);
    let md: MetadataResponse = call(&mut s, ApiKey::Metadata, 1, &MetadataRequest::default().with_topics(None));
    assert_eq!(md.brokers.len(), 1);
    // Frames of exactly the limit, three pipelined: each waits for the one before it to
    // be answered (the in-flight budget is one limit's worth), and all are answered.
    let at_limit = |corr| {
        (0..1000)
            .map(|n| request(ApiKey::ApiVersions, 3, corr, &ApiVersionsRequest::default().with_client_software_name(sb(&"a".repeat(n)))))
            .find(|f| f.len() == 4 + 1000)
            .expect("a 1000-byte ApiVersions")
    };
    let burst: Vec<u8> = (1..=3).flat_map(at_limit).collect();
    s.write_all(&burst).unwrap();
    for corr in 1..=3 {
        let (got, r): (i32, ApiVersionsResponse) = parse(ApiKey::ApiVersions, 3, read_frame(&mut s).expect("answered"));
        assert_eq!((got, r.error_code), (corr, 0));
    }
    assert_serving(&mut b);
}

/// The bytes of one connection's unanswered requests are bounded by
/// socket.request.max.bytes: past it the broker stops reading until answers go out. Seen
/// here as time: 40 long-polling fetches of ~100 bytes under a 1000-byte limit cannot all
/// wait at once. (Slowness can only lengthen the run, so this cannot fail spuriously.)
#[test]
fn in_flight_request_bytes_are_bounded_per_connection() {
    let mut b = Broker::start(&["-o", "socket.request.max.bytes=1000"]);
    let mut s = connect(&b.addr);
    create_topic(&mut s, "idle", &[]);
    const WAIT_MS: i32 = 300;
    let fetch_frame = |corr| {
        let p = fetch_request::FetchPartition::default().with_partition(0).with_partition_max_bytes(1000);
        let t = fetch_request::FetchTopic::default().with_topic(TopicName(sb("idle"))).with_partitions(vec![p]);
        let req = FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_wait_ms(WAIT_MS).with_min_bytes(1).with_max_bytes(1000).with_topics(vec![t]);
        request(ApiKey::Fetch, 12, corr, &req)
    };
    let one = fetch_frame(0).len();
    let n = 40;
    let burst: Vec<u8> = (0..n).flat_map(fetch_frame).collect();
    let in_flight = 1000 / (one - 4);
    let start = Instant::now();
    s.write_all(&burst).unwrap();
    for corr in 0..n {
        let (got, _): (i32, FetchResponse) = parse(ApiKey::Fetch, 12, read_frame(&mut s).expect("answered"));
        assert_eq!(got, corr);
    }
    let waves = (n as usize).div_ceil(in_flight) as u32;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(WAIT_MS as u64) * (waves - 1),
        "{n} fetches of {one} bytes, at most {in_flight} in flight, answered in {elapsed:?}: all waited at once"
    );
    assert_serving(&mut b);
}

#[test]
fn frames_shorter_than_a_header_close_the_connection() {
    let mut b = Broker::start(&[]);
    // Complete frames of 0, 1, 3, 5 and 8 bytes (a header needs at least 10).
    for n in [0usize, 1, 3, 5, 8] {
        let body = &[0, 18, 0, 3, 0, 0, 0, 9][..n];
        expect_refused(&b.addr, &format!("{n}-byte frame"), &prefixed(body), false);
    }
    // A truncated header: ApiVersions v3 whose client id claims 50 bytes but has 3, and a
    // flexible header missing its tagged-field count.
    let mut h = vec![0, 18, 0, 3, 0, 0, 0, 9, 0, 50];
    h.extend_from_slice(b"abc");
    expect_refused(&b.addr, "client id past the frame", &prefixed(&h), false);
    expect_refused(&b.addr, "no tagged fields", &prefixed(&[0, 3, 0, 12, 0, 0, 0, 9, 0xff, 0xff]), false);
    // Half a length prefix, then EOF; a frame cut short by EOF.
    expect_refused(&b.addr, "2-byte prefix then EOF", &[0, 0], true);
    expect_refused(&b.addr, "frame cut by EOF", &[0, 0, 0, 20, 0, 18, 0, 0], true);
    assert_serving(&mut b);
}

#[test]
fn unknown_apis_and_unsupported_versions_close_the_connection() {
    let mut b = Broker::start(&[]);
    let cases: &[(&str, i16, i16)] = &[
        ("api key 9999", 9999, 0),
        ("api key -1", -1, 0),
        ("api key 93 (unknown)", 93, 0),
        ("Produce v1", 0, 1),
        ("Produce v0", 0, 0),
        ("Fetch v99", 1, 99),
        ("Fetch v-1", 1, -1),
    ];
    let mut cases: Vec<(String, i16, i16)> = cases.iter().map(|(w, k, v)| (w.to_string(), *k, *v)).collect();
    // Every api kafka-protocol knows that this broker does not advertise, and one version
    // past the newest of every api it does (ApiVersions aside: it answers those, KIP-511).
    let served = advertised(&b.addr);
    for key in ApiKey::iter() {
        match served.iter().find(|(k, _, _)| *k == key as i16) {
            None => cases.push((format!("{key:?} (not served)"), key as i16, key.valid_versions().max)),
            Some(_) if key == ApiKey::ApiVersions => {}
            Some((_, _, max)) => cases.push((format!("{key:?} v{}", max + 1), key as i16, max + 1)),
        }
    }
    for (what, key, version) in &cases {
        let mut body = raw_header(*key, *version, 5, false);
        body.extend_from_slice(&[0; 16]);
        expect_refused(&b.addr, what, &prefixed(&body), false);
    }
    assert_serving(&mut b);
}

// ---------------------------------------------------------------------------------------
// Requests claiming absurd sizes right after the header

#[test]
fn absurd_array_lengths_do_not_abort_the_broker() {
    let mut b = Broker::start(&[]);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();

    // Metadata v1: the 14-byte request from DESIGN.md, 2^31-1 topics.
    let mut f = raw_header(3, 1, 1, false);
    f.extend_from_slice(&HUGE_I32);
    assert_eq!(f.len(), 14);
    cases.push(("Metadata v1, 2^31-1 topics", f));
    // Metadata v9 and v12 (flexible): compact array length u32::MAX.
    for v in [9, 12] {
        let mut f = raw_header(3, v, 1, true);
        f.extend_from_slice(&HUGE_UVARINT);
        cases.push((if v == 9 { "Metadata v9, 2^32-2 topics" } else { "Metadata v12, 2^32-2 topics" }, f));
    }
    // Produce v9: one topic "t", one partition, records claiming 2^32-2 bytes.
    let mut f = raw_header(0, 9, 1, true);
    f.extend_from_slice(&[0, 0, 1, 0, 0, 0x03, 0xe8, 2, 2, b't', 2, 0, 0, 0, 0]);
    f.extend_from_slice(&HUGE_UVARINT);
    cases.push(("Produce v9, huge records", f));
    // Produce v3: records claiming 2^31-1 bytes; and 2^31-1 topics.
    let mut f = raw_header(0, 3, 1, false);
    f.extend_from_slice(&[0xff, 0xff, 0, 1, 0, 0, 0x03, 0xe8, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0]);
    f.extend_from_slice(&HUGE_I32);
    cases.push(("Produce v3, huge records", f));
    let mut f = raw_header(0, 3, 1, false);
    f.extend_from_slice(&[0xff, 0xff, 0, 1, 0, 0, 0x03, 0xe8]);
    f.extend_from_slice(&HUGE_I32);
    cases.push(("Produce v3, 2^31-1 topics", f));
    // CreateTopics v5: one topic whose configs array claims 2^32-2 entries.
    let mut f = raw_header(19, 5, 1, true);
    f.extend_from_slice(&[2, 2, b't', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1]);
    f.extend_from_slice(&HUGE_UVARINT);
    cases.push(("CreateTopics v5, huge configs", f));
    // Fetch v12 (flexible): replica id, max wait, min bytes, max bytes, isolation,
    // session id/epoch, then 2^32-2 topics.
    let mut f = raw_header(1, 12, 1, true);
    f.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 100, 0, 0, 0, 1, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&HUGE_UVARINT);
    cases.push(("Fetch v12, huge topics", f));
    // Every served api at every served version, a huge length right after the header.
    let served = advertised(&b.addr);
    let mut every = Vec::new();
    for &(key, min, max) in &served {
        for v in min..=max {
            let k = ApiKey::try_from(key).unwrap();
            let flexible = k.request_header_version(v) >= 2;
            let mut f = raw_header(key, v, 1, flexible);
            f.extend_from_slice(if flexible { &HUGE_UVARINT[..] } else { &HUGE_I32[..] });
            every.push(f);
        }
    }

    for (what, body) in &cases {
        let mut s = connect(&b.addr);
        let _ = s.write_all(&prefixed(body));
        let got = expect_closed(&mut s, what);
        assert!(got.is_empty(), "{what}: answered {} bytes", got.len());
        assert!(b.is_running(), "{what} killed the broker");
    }
    for body in &every {
        // Some of these may decode (e.g. a huge scalar) and be answered; what matters is
        // an answer or a close, and a live broker.
        let mut s = connect(&b.addr);
        let _ = s.write_all(&prefixed(body));
        let _ = s.shutdown(Shutdown::Write);
        expect_closed(&mut s, &format!("huge length after header {:02x?}", &body[..4]));
        assert!(b.is_running(), "{:02x?} killed the broker", &body[..4]);
    }
    // Many at once, from many connections.
    let addr = b.addr.clone();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let addr = addr.clone();
            let cases = cases.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    for (what, body) in &cases {
                        let mut s = connect(&addr);
                        let _ = s.write_all(&prefixed(body));
                        expect_closed(&mut s, what);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_serving(&mut b);
}

// ---------------------------------------------------------------------------------------
// ApiVersions from the future (KIP-511)

#[test]
fn api_versions_too_new_gets_a_v0_unsupported_version_answer() {
    let mut b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    for (version, corr) in [(127i16, 77i32), (5, 78)] {
        // The body is whatever a future client sends; the broker must not decode it.
        let mut body = raw_header(18, version, corr, true);
        body.extend_from_slice(&[0x07, b'f', b'u', b't', b'u', b'r', b'e', 0x02, b'9', 0x00, 0xde, 0xad]);
        s.write_all(&prefixed(&body)).unwrap();
        let frame = read_frame(&mut s).expect("a v0 response, not a close");
        let (got_corr, r): (i32, ApiVersionsResponse) = parse(ApiKey::ApiVersions, 0, frame);
        assert_eq!(got_corr, corr);
        assert_eq!(r.error_code, UNSUPPORTED_VERSION, "v{version}");
        let av = r.api_keys.iter().find(|k| k.api_key == ApiKey::ApiVersions as i16).expect("ApiVersions listed");
        assert_eq!((av.min_version, av.max_version), (0, 4));
        for key in [ApiKey::Produce, ApiKey::Fetch, ApiKey::Metadata, ApiKey::ListOffsets] {
            assert!(r.api_keys.iter().any(|k| k.api_key == key as i16), "{key:?} listed");
        }
    }
    // The connection stays usable: the client retries with a version we serve.
    let r: ApiVersionsResponse = call(&mut s, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
    assert_serving(&mut b);
}

// ---------------------------------------------------------------------------------------
// Produce: bad batches are refused per partition and nothing is stored

fn create_topic(s: &mut TcpStream, name: &str, configs: &[(&str, &str)]) {
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
fn produce(s: &mut TcpStream, version: i16, topic: &str, records: Vec<u8>) -> produce_response::PartitionProduceResponse {
    let p = produce_request::PartitionProduceData::default().with_index(0).with_records(Some(records.into()));
    let t = produce_request::TopicProduceData::default().with_name(TopicName(sb(topic))).with_partition_data(vec![p]);
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![t]);
    let mut r: ProduceResponse = call(s, ApiKey::Produce, version, &req);
    r.responses.remove(0).partition_responses.remove(0)
}

/// ListOffsets v7 latest offset of partition 0.
fn log_end(s: &mut TcpStream, topic: &str) -> i64 {
    let p = list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1);
    let t = list_offsets_request::ListOffsetsTopic::default().with_name(TopicName(sb(topic))).with_partitions(vec![p]);
    let r: ListOffsetsResponse =
        call(s, ApiKey::ListOffsets, 7, &ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![t]));
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

/// Fetch v12 of partition 0 from `offset`: (high watermark, record bytes).
fn fetch(s: &mut TcpStream, topic: &str, offset: i64, max_wait_ms: i32) -> (i64, Bytes) {
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

fn one_record_batch(value: &[u8]) -> Vec<u8> {
    encode_batch(0, 0, &[NewRecord { timestamp: 1_700_000_000_000, key: Some(b"key"), value: Some(value), headers: &[] }])
}

fn assert_nothing_stored(s: &mut TcpStream, topic: &str, what: &str) {
    assert_eq!(log_end(s, topic), 0, "{what}: ListOffsets shows something was stored");
    let (hw, records) = fetch(s, topic, 0, 0);
    assert_eq!((hw, records.len()), (0, 0), "{what}: Fetch shows something was stored");
}

#[test]
fn bad_batches_are_refused_per_partition_and_nothing_is_stored() {
    let mut b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    create_topic(&mut s, "bad", &[("max.message.bytes", "1000")]);
    let good = one_record_batch(b"hello");
    batch::validate_batch(&good).expect("test batch is valid");

    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x55; // a value byte: the CRC no longer matches
    let mut bad_crc_field = good.clone();
    bad_crc_field[17] ^= 0xff; // the CRC field itself
    let mut bad_magic = good.clone();
    bad_magic[16] = 1; // outside the CRC
    let mut wrong_count = good.clone();
    wrong_count[57..61].copy_from_slice(&2i32.to_be_bytes()); // 2 records, lastOffsetDelta 0
    batch::update_crc(&mut wrong_count);
    let mut wrong_delta = encode_batch(
        0,
        0,
        &[NewRecord { timestamp: 1, key: None, value: Some(b"a"), headers: &[] }, NewRecord { timestamp: 2, key: None, value: Some(b"b"), headers: &[] }],
    );
    wrong_delta[23..27].copy_from_slice(&5i32.to_be_bytes()); // lastOffsetDelta 5, 2 records
    batch::update_crc(&mut wrong_delta);
    let too_large = one_record_batch(&[7u8; 2000]);
    let good_then_bad = [good.clone(), bad_crc.clone()].concat();

    // Produce v3 (oldest served) and v9 (flexible) alike.
    for version in [3i16, 9, 11] {
        let cases: &[(&str, &Vec<u8>, &[i16])] = &[
            ("bad CRC (payload)", &bad_crc, &[CORRUPT_MESSAGE]),
            ("bad CRC (field)", &bad_crc_field, &[CORRUPT_MESSAGE]),
            // Kafka reports a magic other than 2 on Produce v3+ as corrupt or invalid.
            ("bad magic", &bad_magic, &[CORRUPT_MESSAGE, INVALID_RECORD]),
            ("record count disagrees with lastOffsetDelta", &wrong_count, &[INVALID_RECORD]),
            ("lastOffsetDelta disagrees with the records", &wrong_delta, &[INVALID_RECORD]),
            ("above max.message.bytes", &too_large, &[MESSAGE_TOO_LARGE]),
            ("a good batch followed by a corrupt one", &good_then_bad, &[CORRUPT_MESSAGE]),
        ];
        for (what, records, codes) in cases {
            let r = produce(&mut s, version, "bad", (*records).clone());
            assert!(codes.contains(&r.error_code), "Produce v{version} {what}: error {} ({:?}), expected {codes:?}", r.error_code, r.error_message);
            assert_eq!(r.base_offset, -1, "{what}");
            assert_nothing_stored(&mut s, "bad", what);
        }
    }

    // The same connection then stores a good batch, byte for byte.
    let r = produce(&mut s, 9, "bad", good.clone());
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    assert_eq!(log_end(&mut s, "bad"), 1);
    let (hw, records) = fetch(&mut s, "bad", 0, 0);
    assert_eq!(hw, 1);
    let mut expect = good.clone();
    let mut got = records.to_vec();
    // partitionLeaderEpoch is the broker's to stamp (outside the CRC).
    expect[12..16].fill(0);
    got[12..16].fill(0);
    assert_eq!(got, expect, "the stored batch is the produced batch");
    assert_serving(&mut b);
}

// ---------------------------------------------------------------------------------------
// Pipelining

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut b = Broker::start(&[]);
    let mut setup = connect(&b.addr);
    create_topic(&mut setup, "pipe", &[]);
    let r = produce(&mut setup, 9, "pipe", one_record_batch(b"x"));
    assert_eq!(r.error_code, 0);

    // 300 requests of five kinds in one write (more than the broker's in-flight limit);
    // the long-polling fetches (nothing past offset 1) finish last but must be answered
    // in their place.
    const N: i32 = 300;
    let kinds = [ApiKey::ApiVersions, ApiKey::Metadata, ApiKey::Fetch, ApiKey::ListOffsets, ApiKey::Fetch];
    let mut out = Vec::new();
    for corr in 0..N {
        let key = kinds[corr as usize % kinds.len()];
        let frame = match (key, corr as usize % kinds.len()) {
            (ApiKey::ApiVersions, _) => request(key, 3, corr, &ApiVersionsRequest::default()),
            (ApiKey::Metadata, _) => request(
                key,
                12,
                corr,
                &MetadataRequest::default().with_topics(Some(vec![metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(sb("pipe"))))])),
            ),
            (ApiKey::ListOffsets, _) => {
                let p = list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1);
                let t = list_offsets_request::ListOffsetsTopic::default().with_name(TopicName(sb("pipe"))).with_partitions(vec![p]);
                request(key, 7, corr, &ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![t]))
            }
            (ApiKey::Fetch, i) => {
                // One fetch returns data at once, the other waits up to 20 ms for more.
                let offset = if i == 2 { 0 } else { 1 };
                let p = fetch_request::FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1 << 20);
                let t = fetch_request::FetchTopic::default().with_topic(TopicName(sb("pipe"))).with_partitions(vec![p]);
                let req = FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_wait_ms(20).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![t]);
                request(key, 12, corr, &req)
            }
            _ => unreachable!(),
        };
        out.extend_from_slice(&frame);
    }
    let mut s = connect(&b.addr);
    let mut writer = s.try_clone().unwrap();
    let w = std::thread::spawn(move || writer.write_all(&out));
    for corr in 0..N {
        let frame = read_frame(&mut s).unwrap_or_else(|e| panic!("response {corr}: {e}"));
        let i = corr as usize % kinds.len();
        let got = match kinds[i] {
            ApiKey::ApiVersions => {
                let (c, r): (i32, ApiVersionsResponse) = parse(ApiKey::ApiVersions, 3, frame);
                assert_eq!(r.error_code, 0);
                c
            }
            ApiKey::Metadata => {
                let (c, r): (i32, MetadataResponse) = parse(ApiKey::Metadata, 12, frame);
                assert_eq!(r.topics[0].error_code, 0);
                c
            }
            ApiKey::ListOffsets => {
                let (c, r): (i32, ListOffsetsResponse) = parse(ApiKey::ListOffsets, 7, frame);
                assert_eq!(r.topics[0].partitions[0].offset, 1);
                c
            }
            _ => {
                let (c, r): (i32, FetchResponse) = parse(ApiKey::Fetch, 12, frame);
                let records = r.responses[0].partitions[0].records.clone().unwrap_or_default();
                assert_eq!(records.is_empty(), i != 2, "fetch {corr}");
                c
            }
        };
        assert_eq!(got, corr, "responses in request order");
    }
    w.join().unwrap().expect("write pipelined requests");
    assert_serving(&mut b);
}

// ---------------------------------------------------------------------------------------
// Slow and stuck clients

#[test]
fn connections_stuck_mid_frame_do_not_stop_others() {
    let mut b = Broker::start(&[]);
    let mut stuck = Vec::new();
    for i in 0..50 {
        let mut s = connect(&b.addr);
        let bytes: &[u8] = match i % 3 {
            0 => &[0, 0, 0, 100, 0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff], // 10 of 100 bytes
            1 => &[0, 0], // half a length prefix
            _ => &[0x00, 0x10, 0x00, 0x00], // a 1 MiB frame, none of its body
        };
        s.write_all(bytes).unwrap();
        stuck.push(s);
    }
    let start = Instant::now();
    assert_serving(&mut b);
    // And real work: a topic, a produce and a fetch.
    let mut s = connect(&b.addr);
    create_topic(&mut s, "busy", &[]);
    let good = one_record_batch(b"still here");
    assert_eq!(produce(&mut s, 9, "busy", good).error_code, 0);
    let (hw, records) = fetch(&mut s, "busy", 0, 0);
    assert_eq!((hw, records.is_empty()), (1, false));
    assert!(start.elapsed() < Duration::from_secs(10), "served in {:?} with 50 stuck connections", start.elapsed());
    // The stuck connections are still open (no response, no close) ...
    for s in &mut stuck[..3] {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buf = [0u8; 1];
        let e = s.read(&mut buf).expect_err("no response to half a frame");
        assert!(matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{e}");
    }
    // ... and do not keep the broker from stopping cleanly.
    assert!(b.stop(), "clean stop with 50 stuck connections");
}

// ---------------------------------------------------------------------------------------
// After all of it, a real client

#[test]
fn a_real_client_is_served_after_a_barrage_of_bad_input() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

    let mut b = Broker::start(&[]);
    // A well-behaved connection opened before the barrage keeps working through it.
    let mut early = connect(&b.addr);
    create_topic(&mut early, "after", &[]);

    let mut barrage: Vec<Vec<u8>> = vec![
        (-1i32).to_be_bytes().to_vec(),
        (200 * 1024 * 1024i32).to_be_bytes().to_vec(),
        prefixed(&[0, 3]),
        prefixed(&raw_header(9999, 0, 1, false)),
        prefixed(&raw_header(0, 1, 1, false)),
    ];
    let mut f = raw_header(3, 1, 1, false);
    f.extend_from_slice(&HUGE_I32);
    barrage.push(prefixed(&f));
    let mut f = raw_header(3, 12, 1, true);
    f.extend_from_slice(&HUGE_UVARINT);
    barrage.push(prefixed(&f));
    for seed in 0..10 {
        barrage.push(junk(seed + 1000, 64));
    }
    for bytes in &barrage {
        let mut s = connect(&b.addr);
        let _ = s.write_all(bytes);
        let _ = s.shutdown(Shutdown::Write);
        expect_closed(&mut s, "barrage");
        let _: ApiVersionsResponse = call(&mut early, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    }
    assert!(b.is_running());

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &b.addr)
        .set("broker.address.family", "v4")
        .set("message.timeout.ms", "15000")
        .set("acks", "all")
        .create()
        .expect("producer");
    let values: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 10 + i as usize * 100]).collect();
    for (i, v) in values.iter().enumerate() {
        let key = format!("k{i}");
        let rec = FutureRecord::to("after").partition(0).key(&key).payload(v);
        let d = rt.block_on(producer.send(rec, Duration::from_secs(15))).map_err(|(e, _)| e).expect("delivered");
        assert_eq!((d.partition, d.offset), (0, i as i64));
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b.addr)
        .set("broker.address.family", "v4")
        .set("group.id", "bad-input")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("after", 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < values.len() {
        assert!(Instant::now() < deadline, "consumed only {} records", got.len());
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => got.push((m.offset(), m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec))),
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    for (i, (o, k, v)) in got.iter().enumerate() {
        assert_eq!(*o, i as i64);
        assert_eq!(k.as_deref(), Some(format!("k{i}").as_bytes()));
        assert_eq!(v.as_deref(), Some(&values[i][..]), "record {i} intact");
    }
    assert_serving(&mut b);
}

// ---------------------------------------------------------------------------------------
// Absurd but well-formed admin requests

const INVALID_PARTITIONS: i16 = 37;

/// One int32 on the wire asks for 2^31 - 1 partitions: every partition is a directory
/// and open files, so granting it ran the broker out of file descriptors (it could no
/// longer accept a connection) with the metadata claiming the whole count. Refused up
/// front now; the broker keeps serving and restarts.
#[test]
fn absurd_partition_counts_are_refused() {
    let mut b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    for (name, count) in [("huge", i32::MAX), ("just-over", 10_001)] {
        let t = create_topics_request::CreatableTopic::default().with_name(TopicName(sb(name))).with_num_partitions(count).with_replication_factor(1);
        let start = Instant::now();
        let r: CreateTopicsResponse =
            call(&mut s, ApiKey::CreateTopics, 5, &CreateTopicsRequest::default().with_topics(vec![t]).with_timeout_ms(10_000));
        assert_eq!(r.topics[0].error_code, INVALID_PARTITIONS, "{count} partitions: {:?}", r.topics[0].error_message);
        assert!(start.elapsed() < Duration::from_secs(5), "refused in {:?}", start.elapsed());
    }
    create_topic(&mut s, "grow", &[]);
    let t = create_partitions_request::CreatePartitionsTopic::default().with_name(TopicName(sb("grow"))).with_count(i32::MAX);
    let r: CreatePartitionsResponse =
        call(&mut s, ApiKey::CreatePartitions, 3, &CreatePartitionsRequest::default().with_topics(vec![t]).with_timeout_ms(10_000));
    assert_eq!(r.results[0].error_code, INVALID_PARTITIONS, "{:?}", r.results[0].error_message);
    assert_serving(&mut b);
    b.kill9();
    b.restart();
    assert_serving(&mut b);
    let mut s = connect(&b.addr);
    let md: MetadataResponse = call(&mut s, ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(None));
    let names: Vec<String> = md.topics.iter().map(|t| t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default()).collect();
    assert!(!names.iter().any(|n| n == "huge" || n == "just-over"), "{names:?}");
    let grow = md.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "grow")).expect("grow");
    assert_eq!(grow.partitions.len(), 1);
}

/// Well-formed requests with nonsense values get error answers, not a dead connection.
#[test]
fn nonsense_values_get_error_answers() {
    let mut b = Broker::start(&["-o", "auto.create.topics.enable=false"]);
    let mut s = connect(&b.addr);
    create_topic(&mut s, "t", &[]);
    // Produce: unknown topic, partition -1 and 7, no records, empty records, a truncated batch.
    let good = one_record_batch(b"v");
    for (topic, part, records) in [
        ("nope", 0, Some(good.clone())),
        ("t", -1, Some(good.clone())),
        ("t", 7, Some(good.clone())),
        ("t", 0, None),
        ("t", 0, Some(Vec::new())),
        ("t", 0, Some(good[..30].to_vec())),
        ("t", 0, Some(vec![0xff; 100])),
    ] {
        let p = produce_request::PartitionProduceData::default().with_index(part).with_records(records.map(Into::into));
        let td = produce_request::TopicProduceData::default().with_name(TopicName(sb(topic))).with_partition_data(vec![p]);
        let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &ProduceRequest::default().with_acks(1).with_timeout_ms(1000).with_topic_data(vec![td]));
        assert_ne!(r.responses[0].partition_responses[0].error_code, 0, "{topic}/{part}");
    }
    assert_nothing_stored(&mut s, "t", "nonsense produce");
    // Fetch: offsets before, far after and at the end; negative and zero byte limits.
    for (offset, max_bytes) in [(-1i64, 1 << 20), (i64::MAX, 1 << 20), (i64::MIN, 1 << 20), (0, -1), (0, 0), (5, i32::MAX)] {
        let p = fetch_request::FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(max_bytes);
        let t = fetch_request::FetchTopic::default().with_topic(TopicName(sb("t"))).with_partitions(vec![p]);
        let req = FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_wait_ms(-5).with_min_bytes(-1).with_max_bytes(max_bytes).with_topics(vec![t]);
        let _: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &req);
    }
    // Fetch and ListOffsets of a partition that does not exist.
    let p = fetch_request::FetchPartition::default().with_partition(i32::MAX).with_partition_max_bytes(100);
    let t = fetch_request::FetchTopic::default().with_topic(TopicName(sb("t"))).with_partitions(vec![p]);
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_bytes(100).with_topics(vec![t]));
    assert_ne!(r.responses[0].partitions[0].error_code, 0);
    for ts in [-1i64, -2, -3, i64::MIN, i64::MAX] {
        let p = list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(ts);
        let t = list_offsets_request::ListOffsetsTopic::default().with_name(TopicName(sb("t"))).with_partitions(vec![p]);
        let _: ListOffsetsResponse = call(&mut s, ApiKey::ListOffsets, 7, &ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![t]));
    }
    // Metadata for names no topic may have (auto-create is off; with it on they are refused).
    let bad_names = ["", ".", "..", "../../etc", "a/b", &"x".repeat(300)];
    let topics = bad_names.iter().map(|n| metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(sb(n))))).collect();
    let md: MetadataResponse = call(&mut s, ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(Some(topics)));
    assert!(md.topics.iter().all(|t| t.error_code != 0));
    // CreateTopics with bad names and counts.
    for (name, parts, rf) in [("", 1, 1), ("..", 1, 1), ("a/b", 1, 1), ("ok", 0, 1), ("ok", -7, 1), ("ok", 1, 0), ("ok", 1, 3)] {
        let t = create_topics_request::CreatableTopic::default().with_name(TopicName(sb(name))).with_num_partitions(parts).with_replication_factor(rf);
        let r: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 5, &CreateTopicsRequest::default().with_topics(vec![t]));
        assert_ne!(r.topics[0].error_code, 0, "{name:?} {parts} {rf}");
    }
    assert!(!b.data_dir.parent().unwrap().join("etc-0").exists());
    assert_serving(&mut b);
    let mut b2 = b;
    b2.kill9();
    b2.restart();
    assert_serving(&mut b2);
}
