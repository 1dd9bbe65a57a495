//! Bad input never hurts the broker, part two: well-framed but bad requests. Produce
//! batches with a bad CRC, bad magic, a record count that disagrees with lastOffsetDelta,
//! and above max.message.bytes (nothing stored); hundreds of pipelined requests answered in
//! order; 50 half-frame connections that hang while others are served (and the broker
//! still stops cleanly); a real client served after a barrage; absurd admin requests; the
//! request fuzz target's seed corpus and its mutations; every advertised version has a
//! request schema for the length walker.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::Broker;
use kafka_protocol::messages::*;
use runnel_protocol::batch::{self, encode_batch, NewRecord};
use common::wire::*;

// ---------------------------------------------------------------------------------------
// Produce: bad batches are refused per partition and nothing is stored

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
            (ApiKey::ApiVersions, _) => request(key, 3, corr, &api_versions_req()),
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
        let _: ApiVersionsResponse = call(&mut early, ApiKey::ApiVersions, 3, &api_versions_req());
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

/// `decode_request` refuses a request the length walker has no schema for, so every
/// version the broker advertises must have one (runnel-protocol's own tests check the
/// schema against `kafka-protocol` for its copy of the served table; this checks that copy
/// against the broker's). And a frame generated from each schema is answered.
#[test]
fn every_advertised_version_is_walked() {
    let b = Broker::start(&[]);
    let apis = advertised(&b.addr);
    assert!(apis.len() > 40, "{} apis", apis.len());
    for (key, min, max) in apis {
        let key = ApiKey::try_from(key).unwrap();
        for v in min..=max {
            assert!(runnel_protocol::walk::covers(key, v), "{key:?} v{v} is advertised but not walked");
        }
    }
    let mut s = connect(&b.addr);
    // One generated frame of each advertised Metadata version: decoded (walked), answered.
    for v in 0..=13 {
        let frame = runnel_protocol::testing::generated_frame(ApiKey::Metadata, v, 1);
        let mut f = (frame.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(&frame);
        s.write_all(&f).unwrap();
        read_frame(&mut s).unwrap_or_else(|e| panic!("Metadata v{v}: {e}"));
    }
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

// ---------------------------------------------------------------------------------------
// The fuzz target's seed corpus, and mutations of it, against a live broker

/// A seeded xorshift64* generator (the seed is in every failure message).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of a request frame (without its length prefix), of the kinds that reach the
/// decoder's length and count fields: flipped bits, a 16- or 32-bit field set to an extreme
/// value, a cut, a repeated slice. The api key and version usually stay, so decoding goes deep.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut f = seed.to_vec();
    let keep = if rng.below(8) == 0 { 0 } else { 4.min(f.len()) };
    let at = |rng: &mut Rng, f: &Vec<u8>| keep + rng.below(f.len().saturating_sub(keep));
    for _ in 0..1 + rng.below(3) {
        if f.len() <= keep {
            break;
        }
        match rng.below(5) {
            0 => {
                let i = at(rng, &f);
                f[i] ^= 1 << rng.below(8);
            }
            1 | 2 => {
                let extreme: [i32; 6] = [-1, 0, 0x7fff_ffff, i32::MIN, 0x7fff, 0x0100_0000];
                let v = extreme[rng.below(extreme.len())];
                let i = at(rng, &f);
                let bytes = if rng.below(2) == 0 { v.to_be_bytes().to_vec() } else { (v as i16).to_be_bytes().to_vec() };
                for (k, b) in bytes.into_iter().enumerate() {
                    if let Some(x) = f.get_mut(i + k) {
                        *x = b;
                    }
                }
            }
            3 => {
                let cut = at(rng, &f);
                f.truncate(cut);
            }
            _ => {
                let i = at(rng, &f);
                let n = rng.below(64).min(f.len() - i);
                let slice = f[i..i + n].to_vec();
                let j = at(rng, &f);
                f.splice(j..j, slice);
            }
        }
    }
    f
}

/// The seed corpus of the `request_decoder` fuzz target (fuzz/seeds/request_decoder: frames of
/// librdkafka's kcat and of runnel's CLI, recorded through a proxy: Produce in every codec,
/// Fetch, Metadata, group and admin APIs), each as sent and with 30 mutations, against a live
/// broker, one connection per frame: the process never panics or dies, and a connection
/// opened at the start keeps being answered, as does a new one.
#[test]
fn fuzz_seeds_and_their_mutations_never_stop_the_broker() {
    let seed = 0x5eed_u64;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/request_decoder");
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 20, "only {} seeds", seeds.len());
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut b = Broker::start_logging_to(&[], log.path());
    let mut steady = connect(&b.addr);
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut sent = 0;
    for (name, frame) in &seeds {
        for m in 0..=30 {
            let body = if m == 0 { frame.clone() } else { mutate(frame, &mut rng) };
            let mut s = connect(&b.addr);
            let _ = s.write_all(&prefixed(&body));
            let _ = s.shutdown(Shutdown::Write);
            // Whatever comes back (an answer, a close); a long-poll Fetch may still wait.
            s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            let mut sink = [0u8; 4096];
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
            sent += 1;
            assert!(b.is_running(), "seed {seed:#x}: the broker died after {name} mutation {m}");
        }
        let md: MetadataResponse = call(&mut steady, ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(None));
        assert_eq!(md.brokers.len(), 1, "seed {seed:#x}: after {name}");
    }
    assert_serving(&mut b);
    let stderr = std::fs::read_to_string(log.path()).unwrap();
    assert!(!stderr.contains("panicked"), "seed {seed:#x}: the broker panicked:\n{stderr}");
    eprintln!("{sent} frames from {} seeds in {:?}", seeds.len(), started.elapsed());
}
