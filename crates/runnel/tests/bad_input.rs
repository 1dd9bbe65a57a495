//! Bad input never hurts the broker, part one: frames. Each case talks to a real
//! `runnel broker` over a raw `TcpStream` and must end in an error response or a closed
//! connection (EOF or reset within a deadline, never a hang); afterwards the process is
//! still alive and a second, well-behaved connection is served.
//!
//! Covered: junk bytes; negative, oversized (> socket.request.max.bytes) and
//! shorter-than-a-header frames; a truncated header; an unknown api key; known apis at
//! unsupported versions; requests claiming 2^31 / 2^32-element arrays and byte runs right
//! after the header (the `kafka-protocol` pre-allocation abort); ApiVersions from the
//! future (KIP-511 v0 answer). Bad requests inside good frames are in `bad_requests.rs`.

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::Broker;
use kafka_protocol::messages::*;
use common::wire::*;

// ---------------------------------------------------------------------------------------
// Framing


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
            .map(|n| request(ApiKey::ApiVersions, 3, corr, &api_versions_req().with_client_software_name(sb(&"a".repeat(n.max(1))))))
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
    let r: ApiVersionsResponse = call(&mut s, ApiKey::ApiVersions, 3, &api_versions_req());
    assert_eq!(r.error_code, 0);
    // v3+ names the client; a name Kafka would refuse gets INVALID_REQUEST (42), as from Kafka.
    for (name, version) in [("", "1.0"), ("with space", "1.0"), ("ok", "-1"), ("ok", "")] {
        let req = ApiVersionsRequest::default().with_client_software_name(sb(name)).with_client_software_version(sb(version));
        let r: ApiVersionsResponse = call(&mut s, ApiKey::ApiVersions, 3, &req);
        assert_eq!((r.error_code, r.api_keys.len()), (42, 0), "software {name:?} {version:?}");
    }
    assert_serving(&mut b);
}
