//! Produce and consume through librdkafka against a real broker: record shapes (keys,
//! headers, null keys, empty and null values, 1 MB values), every compression codec,
//! per-partition order with dense offsets, the three acks levels, ListOffsets by time and
//! the watermarks, and LogAppendTime topics.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::kafka::*;
use common::Broker;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders, Timestamp};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

type Headers = Vec<(String, Option<Vec<u8>>)>;

fn headers(list: &[(&str, Option<&[u8]>)]) -> OwnedHeaders {
    list.iter().fold(OwnedHeaders::new(), |h, (k, v)| h.insert(Header { key: k, value: *v }))
}

fn owned(list: &[(&str, Option<&[u8]>)]) -> Headers {
    list.iter().map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec))).collect()
}

#[test]
fn record_shapes_round_trip_byte_exact() {
    let b = Broker::start(&[]);
    create_topic(&b, "shapes", 1, &[("max.message.bytes", "3000000")]);
    let p = producer(&b, &[("message.max.bytes", "3000000")]);
    let big = noise(1024 * 1024, 1);
    let bigger = noise(1024 * 1024 + 4321, 2);
    let hdrs: &[(&str, Option<&[u8]>)] = &[("h1", Some(b"x")), ("nul", None), ("h1", Some(b"again")), ("empty", Some(b""))];
    // (key, value, headers)
    let cases: Vec<(Option<&[u8]>, Option<&[u8]>, &[(&str, Option<&[u8]>)])> = vec![
        (Some(b"k1"), Some(b"v1"), hdrs),
        (None, Some(b"no key"), &[]),
        (Some(b"k-empty-value"), Some(b""), &[]),
        (Some(b"k-null-value"), None, &[("only", Some(b"header"))]),
        (Some(b""), Some(b"empty key"), &[]),
        (None, None, &[]),
        (None, Some(&big), &[]),
        (Some(b"bigger"), Some(&bigger), hdrs),
        (Some(&[0, 255, 1, 254]), Some(&[0, 0, 0]), &[]),
    ];
    let delivered = block_on(send_all(
        &p,
        cases.iter().map(|(k, v, h)| {
            let mut r = FutureRecord::<[u8], [u8]>::to("shapes").partition(0).headers(headers(h));
            if let Some(k) = k {
                r = r.key(*k);
            }
            if let Some(v) = v {
                r = r.payload(*v);
            }
            r
        }),
    ));
    assert_eq!(delivered, (0..cases.len() as i64).map(|o| (0, o)).collect::<Vec<_>>(), "dense offsets from 0");
    let got = consume_all(&b, "shapes", 0);
    assert_eq!(got.len(), cases.len());
    for (i, (r, (k, v, h))) in got.iter().zip(&cases).enumerate() {
        assert_eq!(r.offset, i as i64);
        assert_eq!(r.key.as_deref(), *k, "key of record {i}");
        assert_eq!(r.value.as_deref(), *v, "value of record {i} ({} bytes expected)", v.map_or(0, |v| v.len()));
        assert_eq!(r.headers, owned(h), "headers of record {i}");
        assert!(matches!(r.timestamp, Timestamp::CreateTime(t) if (t - now_ms()).abs() < 60_000), "{:?}", r.timestamp);
    }

    // Over the topic's max.message.bytes: refused with MESSAGE_TOO_LARGE, nothing stored.
    create_topic(&b, "small-limit", 1, &[("max.message.bytes", "100000")]);
    let res = block_on(p.send(FutureRecord::<[u8], [u8]>::to("small-limit").payload(&bigger[..200_000]), TIMEOUT));
    match res {
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {}
        other => panic!("expected MESSAGE_TOO_LARGE, got {:?}", other.map(|d| (d.partition, d.offset)).map_err(|e| e.0)),
    }
    assert_eq!(watermarks(&b, "small-limit", 0), (0, 0));
}

/// Produces 300 records with `compression.type=codec`, reads them back byte-exact, and
/// checks that the broker stored the batches still compressed with codec `id`.
fn codec_round_trip(codec: &str, id: i16) {
    let b = Broker::start(&[]);
    let topic = format!("codec-{codec}");
    create_topic(&b, &topic, 1, &[]);
    let p = producer(&b, &[("compression.type", codec), ("linger.ms", "50")]);
    // Every value compresses well (text plus a little noise): librdkafka sends a batch
    // uncompressed when compressing would not make it smaller.
    let values: Vec<Vec<u8>> = (0..300u64)
        .map(|i| {
            let mut v = format!("{codec} record {i} ").repeat(20).into_bytes();
            v.extend(noise((i % 50) as usize, i));
            v
        })
        .collect();
    let keys: Vec<String> = (0..300).map(|i| format!("key-{i}")).collect();
    let delivered = block_on(send_all(
        &p,
        values.iter().zip(&keys).map(|(v, k)| {
            FutureRecord::to(&topic)
                .partition(0)
                .key(k.as_bytes())
                .payload(&v[..])
                .headers(headers(&[("codec", Some(codec.as_bytes()))]))
        }),
    ));
    assert_eq!(delivered.last(), Some(&(0, 299)), "{codec}");
    let got = consume_all(&b, &topic, 0);
    assert_eq!(got.len(), 300, "{codec}");
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as i64, "{codec}");
        assert_eq!(r.key.as_deref(), Some(keys[i].as_bytes()), "{codec} key {i}");
        assert!(r.value.as_deref() == Some(&values[i][..]), "{codec} value {i} differs");
        assert_eq!(r.headers, owned(&[("codec", Some(codec.as_bytes()))]), "{codec}");
    }
    // The broker stores what the producer sent: the batches are still compressed.
    let files = log_files(&partition_dir(&b, &topic, 0));
    let batches: Vec<DiskBatch> = files.iter().flat_map(|f| disk_batches(f)).collect();
    assert!(!batches.is_empty());
    assert!(
        batches.iter().all(|d| d.codec() == id),
        "{codec}: codecs on disk {:?}",
        batches.iter().map(DiskBatch::codec).collect::<Vec<_>>()
    );
    assert!(batches.iter().any(|d| d.record_count > 1), "{codec}: expected multi-record batches");
    assert_eq!(batches.last().unwrap().next_offset(), 300);
    // Reading from inside a compressed batch starts at the asked offset.
    let inner = batches.iter().find(|d| d.record_count > 2).unwrap();
    let from = inner.base_offset + 1;
    let tail = consume_range(&b, &topic, 0, from, 300);
    assert_eq!(tail.first().map(|r| r.offset), Some(from), "{codec}");
    assert_eq!(tail.len() as i64, 300 - from, "{codec}");
}

#[test]
fn gzip_round_trips_and_stays_compressed() {
    codec_round_trip("gzip", 1);
}

#[test]
fn snappy_round_trips_and_stays_compressed() {
    codec_round_trip("snappy", 2);
}

/// librdkafka compresses with lz4 only if the broker advertises FindCoordinator (its marker
/// for Kafka >= 0.8.2); without it the batches go out uncompressed and this test fails on
/// the codec found on disk.
#[test]
fn lz4_round_trips_and_stays_compressed() {
    codec_round_trip("lz4", 3);
}

#[test]
fn zstd_round_trips_and_stays_compressed() {
    codec_round_trip("zstd", 4);
}

/// A v2 batch of `n` records compressed with `compression`, built by the `kafka-protocol`
/// crate (record i: key "k{i}", a header, a value that mixes text and noise).
fn encoded_batch(compression: kafka_protocol::records::Compression, first: i64, n: i64) -> (bytes::Bytes, Vec<Vec<u8>>) {
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let values: Vec<Vec<u8>> = (first..first + n)
        .map(|i| {
            let mut v = format!("value {i} ").repeat(10).into_bytes();
            v.extend(noise(64, i as u64));
            v
        })
        .collect();
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(j, v)| {
            let mut headers = kafka_protocol::indexmap::IndexMap::new();
            headers.insert(StrBytes::from_static_str("h"), Some(bytes::Bytes::from_static(b"hv")));
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: j as i64,
                sequence: j as i32, // offset − sequence constant: one batch
                timestamp: now_ms(),
                key: Some(bytes::Bytes::from(format!("k{}", first + j as i64))),
                value: Some(bytes::Bytes::from(v.clone())),
                headers,
            }
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression }).expect("encode batch");
    (buf.freeze(), values)
}

/// Every codec produced as raw batches built by the `kafka-protocol` crate (independent of
/// what librdkafka chooses to build) and consumed back through librdkafka.
#[test]
fn raw_batches_of_every_codec_are_stored_as_sent_and_consumable() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::Compression;
    let b = Broker::start(&[]);
    create_topic(&b, "raw-codecs", 1, &[]);
    let codecs = [(Compression::None, 0), (Compression::Gzip, 1), (Compression::Snappy, 2), (Compression::Lz4, 3), (Compression::Zstd, 4)];
    let mut all_values = Vec::new();
    for (i, (compression, _)) in codecs.iter().enumerate() {
        let first = i as i64 * 20;
        let (batch, values) = encoded_batch(*compression, first, 20);
        all_values.extend(values);
        let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("raw-codecs")))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))])]);
        let resp = request(&b, &req, 9);
        let pr = &resp.responses[0].partition_responses[0];
        assert_eq!((pr.error_code, pr.base_offset), (0, first), "{compression:?}");
    }
    let batches = disk_batches(&log_files(&partition_dir(&b, "raw-codecs", 0))[0]);
    assert_eq!(batches.iter().map(DiskBatch::codec).collect::<Vec<_>>(), codecs.iter().map(|c| c.1).collect::<Vec<_>>());
    assert!(batches.iter().all(|d| d.record_count == 20));
    let got = consume_all(&b, "raw-codecs", 0);
    assert_eq!(got.len(), 100);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as i64);
        assert_eq!(r.key, Some(format!("k{i}").into_bytes()));
        assert!(r.value.as_deref() == Some(&all_values[i][..]), "value {i} differs");
        assert_eq!(r.headers, owned(&[("h", Some(b"hv"))]));
    }
}

#[test]
fn per_partition_order_and_dense_offsets() {
    let b = Broker::start(&[]);
    create_topic(&b, "ordered", 3, &[]);
    let p = producer(&b, &[("linger.ms", "10"), ("batch.size", "16384")]);
    const N: usize = 4000;
    let keys: Vec<String> = (0..N).map(|i| format!("key-{}", i % 37)).collect();
    let values: Vec<String> = (0..N).map(|i| format!("{i}")).collect();
    let delivered = block_on(send_all(
        &p,
        (0..N).map(|i| FutureRecord::to("ordered").key(keys[i].as_bytes()).payload(values[i].as_bytes())),
    ));
    // Delivery reports: per partition the offsets are exactly 0..n, in send order.
    let mut per_partition: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
    for (i, &(part, off)) in delivered.iter().enumerate() {
        per_partition.entry(part).or_default().push((off, i));
    }
    assert_eq!(per_partition.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2], "all partitions used");
    for (part, list) in &per_partition {
        let offsets: Vec<i64> = list.iter().map(|x| x.0).collect();
        assert_eq!(offsets, (0..list.len() as i64).collect::<Vec<_>>(), "partition {part}: delivery offsets in send order, dense");
    }
    // What a consumer reads agrees, and keys stick to one partition in send order.
    let ranges: BTreeMap<i32, (i64, i64)> = per_partition.iter().map(|(p, l)| (*p, (0, l.len() as i64))).collect();
    let got = consume_ranges(&b, "ordered", &ranges);
    let mut key_partition: HashMap<Vec<u8>, i32> = HashMap::new();
    let mut last_seq: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut total = 0;
    for (part, recs) in &got {
        assert_eq!(watermarks(&b, "ordered", *part), (0, recs.len() as i64));
        for (expect_off, r) in recs.iter().enumerate() {
            assert_eq!(r.offset, expect_off as i64, "partition {part}: gap or reorder");
            let seq: usize = String::from_utf8(r.value.clone().unwrap()).unwrap().parse().unwrap();
            assert_eq!(per_partition[part][expect_off].1, seq, "partition {part} offset {expect_off}: value matches the delivery report");
            let key = r.key.clone().unwrap();
            assert_eq!(key, keys[seq].as_bytes());
            assert_eq!(*key_partition.entry(key.clone()).or_insert(*part), *part, "a key in two partitions");
            if let Some(prev) = last_seq.insert(key, seq) {
                assert!(prev < seq, "per-key order broken: {prev} then {seq}");
            }
            total += 1;
        }
    }
    assert_eq!(total, N);
}

#[test]
fn acks_zero_one_and_all_deliver_everything() {
    let b = Broker::start(&[]);
    for acks in ["0", "1", "-1"] {
        let topic = format!("acks{acks}");
        create_topic(&b, &topic, 2, &[]);
        let p = producer(&b, &[("acks", acks)]);
        let values: Vec<String> = (0..300).map(|i| format!("acks={acks} #{i}")).collect();
        let delivered = block_on(send_all(&p, values.iter().map(|v| FutureRecord::to(&topic).key(v.as_bytes()).payload(v.as_bytes()))));
        if acks == "0" {
            // No response, so librdkafka cannot know the offsets.
            assert!(delivered.iter().all(|&(_, o)| o < 0), "acks=0 offsets: {:?}", &delivered[..3]);
        } else {
            assert!(delivered.iter().all(|&(_, o)| o >= 0));
        }
        // acks=0 records still arrive: wait (with a deadline) until both logs hold all 300.
        let deadline = std::time::Instant::now() + TIMEOUT;
        let highs = loop {
            let highs: Vec<i64> = (0..2).map(|part| watermarks(&b, &topic, part).1).collect();
            if highs.iter().sum::<i64>() >= 300 || std::time::Instant::now() > deadline {
                break highs;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(highs.iter().sum::<i64>(), 300, "acks={acks}: records in the log");
        let ranges = (0..2).map(|part| (part, (0, highs[part as usize]))).collect();
        let got = consume_ranges(&b, &topic, &ranges);
        let mut seen: Vec<String> = got.values().flatten().map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap()).collect();
        seen.sort();
        let mut want = values.clone();
        want.sort();
        assert_eq!(seen, want, "acks={acks}");
        if acks != "0" {
            for (i, &(part, off)) in delivered.iter().enumerate() {
                assert_eq!(got[&part][off as usize].value.as_deref(), Some(values[i].as_bytes()));
            }
        }
    }
}

/// The offset ListOffsets returns for `ts` (None: no record at or after it).
fn offset_for_time(c: &rdkafka::consumer::BaseConsumer, topic: &str, ts: i64) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(ts)).unwrap();
    let res = c.offsets_for_times(tpl, TIMEOUT).expect("offsets_for_times");
    let e = res.find_partition(topic, 0).expect("partition in result");
    assert!(e.error().is_ok(), "{:?}", e.error());
    match e.offset() {
        Offset::Offset(o) => Some(o),
        Offset::End | Offset::Invalid => None,
        other => panic!("unexpected offset {other:?}"),
    }
}

#[test]
fn list_offsets_by_time_and_watermarks() {
    let b = Broker::start(&[]);
    create_topic(&b, "times", 1, &[]);
    let p = producer(&b, &[("linger.ms", "100")]);
    let t0 = now_ms() - 3_600_000;
    assert_eq!(watermarks(&b, "times", 0), (0, 0), "empty log");
    block_on(async {
        // Offsets 0..=5, one batch each, timestamps t0, t0+1s, …
        for i in 0..6i64 {
            let v = format!("{i}");
            let d = send_one(&p, FutureRecord::to("times").partition(0).payload(v.as_bytes()).timestamp(t0 + 1000 * i)).await;
            assert_eq!(d, (0, i));
        }
        // Offsets 6..=8 together (likely one batch): t0+6s, t0+7s, t0+8s.
        let vs = ["6", "7", "8"];
        let d = send_all(&p, (0..3).map(|j| FutureRecord::to("times").partition(0).payload(vs[j].as_bytes()).timestamp(t0 + 6000 + 1000 * j as i64))).await;
        assert_eq!(d, vec![(0, 6), (0, 7), (0, 8)]);
    });
    let mut b = b;
    for restart in ["none", "clean stop", "sigkill"] {
        match restart {
            "clean stop" => {
                assert!(b.stop());
                b.restart();
            }
            "sigkill" => {
                b.kill9();
                b.restart();
            }
            _ => {}
        }
        check_time_lookups(&b, t0, restart);
    }
}

/// The time lookups of [`list_offsets_by_time_and_watermarks`] (after `restart`).
fn check_time_lookups(b: &Broker, t0: i64, restart: &str) {
    let c = consumer(b, &[]);
    for (ts, want) in [
        (0, Some(0)),
        (t0 - 1, Some(0)),
        (t0, Some(0)),
        (t0 + 1, Some(1)),
        (t0 + 2500, Some(3)),
        (t0 + 5000, Some(5)),
        (t0 + 5001, Some(6)),
        (t0 + 7000, Some(7)),
        (t0 + 7001, Some(8)),
        (t0 + 8000, Some(8)),
        (t0 + 8001, None),
    ] {
        assert_eq!(offset_for_time(&c, "times", ts), want, "first offset at or after t0{:+} (restart: {restart})", ts - t0);
    }
    assert_eq!(c.fetch_watermarks("times", 0, TIMEOUT).unwrap(), (0, 9), "earliest and latest (restart: {restart})");
    let recs = consume_range(b, "times", 0, 3, 9);
    let stamps: Vec<Timestamp> = recs.iter().map(|r| r.timestamp).collect();
    assert_eq!(stamps, (3..9).map(|i| Timestamp::CreateTime(t0 + 1000 * i)).collect::<Vec<_>>(), "CreateTime kept");
}

#[test]
fn log_append_time_topic_uses_the_broker_clock() {
    let b = Broker::start(&[]);
    create_topic(&b, "lat", 1, &[("message.timestamp.type", "LogAppendTime")]);
    create_topic(&b, "ct", 1, &[]);
    let p = producer(&b, &[]);
    let gz = producer(&b, &[("compression.type", "gzip"), ("linger.ms", "20")]);
    let old = now_ms() - 86_400_000;
    let before = now_ms();
    block_on(async {
        for topic in ["lat", "ct"] {
            send_all(&p, (0..10).map(|_| FutureRecord::to(topic).partition(0).payload(&b"x"[..]).timestamp(old))).await;
            send_one(&p, FutureRecord::to(topic).partition(0).payload(&b"y"[..]).timestamp(old)).await;
            // A compressed batch: the broker stamps the batch header, never the records inside.
            send_all(&gz, (0..10).map(|_| FutureRecord::to(topic).partition(0).payload(&b"zzzzzzzzzzzzzzzz"[..]).timestamp(old))).await;
        }
    });
    let after = now_ms();
    let lat = consume_all(&b, "lat", 0);
    assert_eq!(lat.len(), 21);
    for r in &lat {
        match r.timestamp {
            Timestamp::LogAppendTime(t) => assert!(t >= before - 1000 && t <= after + 1000, "append time {t} not within [{before}, {after}]"),
            other => panic!("expected LogAppendTime, got {other:?}"),
        }
    }
    let ct = consume_all(&b, "ct", 0);
    assert_eq!(ct.len(), 21);
    assert!(ct.iter().all(|r| r.timestamp == Timestamp::CreateTime(old)), "CreateTime topic keeps the producer's timestamp");
    // Time lookups on the LogAppendTime topic use the broker's timestamps.
    let c = consumer(&b, &[]);
    assert_eq!(offset_for_time(&c, "lat", old + 1), Some(0));
    assert_eq!(offset_for_time(&c, "lat", after + 60_000), None);
    assert_eq!(offset_for_time(&c, "ct", old + 1), None, "CreateTime topic: all records are older");
}

#[test]
fn a_waiting_fetch_is_woken_by_a_produce() {
    use rdkafka::consumer::Consumer;
    let b = Broker::start(&[]);
    create_topic(&b, "wake", 1, &[]);
    let p = producer(&b, &[("linger.ms", "0")]);
    block_on(send_one(&p, FutureRecord::to("wake").payload(&b"first"[..])));
    // The broker may hold a fetch for 10 s; an append must answer it at once.
    let c = consumer(&b, &[("fetch.wait.max.ms", "10000")]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("wake", 0, Offset::Offset(1)).unwrap();
    c.assign(&tpl).unwrap();
    // Let the consumer park its fetch at the log end.
    assert!(c.poll(std::time::Duration::from_millis(1000)).is_none());
    let sent = std::time::Instant::now();
    block_on(send_one(&p, FutureRecord::to("wake").payload(&b"second"[..])));
    let deadline = sent + TIMEOUT;
    let m = loop {
        assert!(std::time::Instant::now() < deadline, "no record");
        match c.poll(std::time::Duration::from_millis(100)) {
            Some(Ok(m)) => break Rec::from_msg(&m),
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    };
    let waited = sent.elapsed();
    assert_eq!((m.offset, m.value.as_deref()), (1, Some(&b"second"[..])));
    assert!(waited < std::time::Duration::from_secs(5), "fetch answered after {waited:?}: not woken by the append");
}
