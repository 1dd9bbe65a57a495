//! Client-side helpers for the integration tests: rdkafka producers, consumers (explicit
//! `assign()`, no group protocol) and admin clients pointed at a test [`Broker`], reading
//! everything back with a deadline instead of sleeps, a raw request for the few error
//! codes librdkafka does not surface, and a walker over a partition's segment files.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::Broker;

/// How long any single client operation may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Runs a future to completion on a fresh current-thread runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

/// A client config for `b`, with `extra` applied last (so it overrides the defaults).
pub fn config(b: &Broker, defaults: &[(&str, &str)], extra: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &b.addr).set("broker.address.family", "v4");
    for (k, v) in defaults.iter().chain(extra) {
        c.set(*k, *v);
    }
    c
}

/// A producer (acks=all unless `extra` says otherwise).
pub fn producer(b: &Broker, extra: &[(&str, &str)]) -> FutureProducer {
    config(b, &[("message.timeout.ms", "15000"), ("linger.ms", "5"), ("acks", "all")], extra)
        .create()
        .expect("create producer")
}

/// A consumer that reads explicitly assigned partitions. librdkafka refuses `assign()`
/// without a `group.id` ("Local: Unknown group"), so one is set; groups are never joined
/// and nothing is committed.
pub fn consumer(b: &Broker, extra: &[(&str, &str)]) -> BaseConsumer {
    config(
        b,
        &[
            ("group.id", "runnel-tests"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "error"),
            ("check.crcs", "true"),
            ("fetch.wait.max.ms", "100"),
        ],
        extra,
    )
    .create()
    .expect("create consumer")
}

pub fn admin(b: &Broker) -> AdminClient<DefaultClientContext> {
    config(b, &[], &[]).create().expect("create admin client")
}

pub fn admin_opts() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(TIMEOUT)).operation_timeout(Some(TIMEOUT))
}

/// Creates a topic and asserts that it worked.
pub fn create_topic(b: &Broker, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let admin = admin(b);
    let res = block_on(admin.create_topics([&t], &admin_opts())).expect("create_topics request");
    assert_eq!(res, vec![Ok(name.to_string())], "creating topic {name}");
}

/// One consumed record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Timestamp,
}

impl Rec {
    pub fn from_msg<M: Message>(m: &M) -> Rec {
        Rec {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers: m
                .headers()
                .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
                .unwrap_or_default(),
            timestamp: m.timestamp(),
        }
    }
}

/// Reads `partition` of `topic` from `from` until offset `until` (exclusive) has been
/// passed, failing the test at the deadline. Returns the records in offset order and
/// checks that each offset is above the previous one.
pub fn consume_range(b: &Broker, topic: &str, partition: i32, from: i64, until: i64) -> Vec<Rec> {
    let mut ranges = BTreeMap::new();
    ranges.insert(partition, (from, until));
    consume_ranges(b, topic, &ranges).remove(&partition).unwrap_or_default()
}

/// Like [`consume_range`] for several partitions at once: partition → (from, until).
pub fn consume_ranges(b: &Broker, topic: &str, ranges: &BTreeMap<i32, (i64, i64)>) -> BTreeMap<i32, Vec<Rec>> {
    consume_ranges_with(b, topic, ranges, &[])
}

/// [`consume_ranges`] with a consumer given `extra` settings.
fn consume_ranges_with(b: &Broker, topic: &str, ranges: &BTreeMap<i32, (i64, i64)>, extra: &[(&str, &str)]) -> BTreeMap<i32, Vec<Rec>> {
    let c = consumer(b, extra);
    let mut tpl = TopicPartitionList::new();
    let mut out: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    for (&p, &(from, until)) in ranges {
        out.insert(p, Vec::new());
        if from < until {
            tpl.add_partition_offset(topic, p, Offset::Offset(from)).expect("tpl");
        }
    }
    if tpl.count() == 0 {
        return out;
    }
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + TIMEOUT;
    let done = |out: &BTreeMap<i32, Vec<Rec>>| {
        ranges.iter().all(|(p, &(from, until))| from >= until || out[p].last().is_some_and(|r| r.offset >= until - 1))
    };
    let mut errors = Vec::new();
    while !done(&out) {
        assert!(
            Instant::now() < deadline,
            "timed out consuming {topic} {ranges:?}; got {:?}; errors: {errors:?}",
            out.iter().map(|(p, v)| (p, v.len(), v.last().map(|r| r.offset))).collect::<Vec<_>>()
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let r = Rec::from_msg(&m);
                let list = out.get_mut(&r.partition).expect("record from an unassigned partition");
                if let Some(prev) = list.last() {
                    assert!(r.offset > prev.offset, "offsets go backwards: {} after {}", r.offset, prev.offset);
                }
                if r.offset < ranges[&r.partition].1 {
                    list.push(r);
                }
            }
            Some(Err(e)) => errors.push(e.to_string()),
            None => {}
        }
    }
    out
}

/// (low, high) watermarks of a partition.
pub fn watermarks(b: &Broker, topic: &str, partition: i32) -> (i64, i64) {
    consumer(b, &[]).fetch_watermarks(topic, partition, TIMEOUT).expect("fetch_watermarks")
}

/// Everything in a partition, from the low to the high watermark.
pub fn consume_all(b: &Broker, topic: &str, partition: i32) -> Vec<Rec> {
    let (lo, hi) = watermarks(b, topic, partition);
    consume_range(b, topic, partition, lo, hi)
}

/// Like [`consume_all`], for a log whose start may move while it is read (retention of a
/// `compact,delete` topic deletes the segments compaction emptied): a fetch below the new
/// log start goes on from it (`auto.offset.reset=earliest`) instead of failing.
pub fn consume_all_from_moving_start(b: &Broker, topic: &str, partition: i32) -> Vec<Rec> {
    let (lo, hi) = watermarks(b, topic, partition);
    let ranges = BTreeMap::from([(partition, (lo, hi))]);
    consume_ranges_with(b, topic, &ranges, &[("auto.offset.reset", "earliest")]).remove(&partition).unwrap_or_default()
}

/// Sends every record without waiting in between (so librdkafka batches them), then
/// waits for all deliveries. Returns (partition, offset) per record, in send order.
pub async fn send_all<'a>(
    p: &FutureProducer,
    records: impl IntoIterator<Item = FutureRecord<'a, [u8], [u8]>>,
) -> Vec<(i32, i64)> {
    let mut futures = Vec::new();
    for r in records {
        match p.send_result(r) {
            Ok(f) => futures.push(f),
            Err((e, _)) => panic!("enqueue failed: {e}"),
        }
    }
    let mut out = Vec::with_capacity(futures.len());
    for f in futures {
        match f.await.expect("delivery future canceled") {
            Ok(d) => out.push((d.partition, d.offset)),
            Err((e, _)) => panic!("delivery failed: {e}"),
        }
    }
    out
}

/// Sends one record and waits for it: each call is its own batch.
pub async fn send_one(p: &FutureProducer, r: FutureRecord<'_, [u8], [u8]>) -> (i32, i64) {
    match p.send(r, TIMEOUT).await {
        Ok(d) => (d.partition, d.offset),
        Err((e, _)) => panic!("delivery failed: {e}"),
    }
}

/// A deterministic pseudo-random byte string (incompressible enough to defeat codecs).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

// ---- on-disk layout -------------------------------------------------------------------

/// `<data-dir>/<topic>-<partition>`.
pub fn partition_dir(b: &Broker, topic: &str, partition: i32) -> PathBuf {
    b.data_dir.join(format!("{topic}-{partition}"))
}

/// The partition's `.log` segment files, in offset order.
pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// A v2 record batch as laid out in a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskBatch {
    pub position: u64,
    pub len: u64,
    pub base_offset: i64,
    pub last_offset_delta: i32,
    pub attributes: i16,
    pub record_count: i32,
}

impl DiskBatch {
    pub fn next_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64 + 1
    }
    /// 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn codec(&self) -> i16 {
        self.attributes & 7
    }
}

/// Walks the whole batches of a segment file (stopping at a torn tail).
pub fn disk_batches(path: &Path) -> Vec<DiskBatch> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut out = Vec::new();
    let mut pos = 0usize;
    while bytes.len() - pos >= 61 {
        let h = &bytes[pos..];
        let i64_at = |o: usize| i64::from_be_bytes(h[o..o + 8].try_into().unwrap());
        let i32_at = |o: usize| i32::from_be_bytes(h[o..o + 4].try_into().unwrap());
        let len = 12 + i32_at(8) as u64;
        assert_eq!(h[16], 2, "magic at {pos} in {}", path.display());
        if pos as u64 + len > bytes.len() as u64 {
            break;
        }
        out.push(DiskBatch {
            position: pos as u64,
            len,
            base_offset: i64_at(0),
            attributes: i16::from_be_bytes([h[21], h[22]]),
            last_offset_delta: i32_at(23),
            record_count: i32_at(57),
        });
        pos += len as usize;
    }
    out
}

// ---- raw requests ---------------------------------------------------------------------

/// Sends one request encoded by the `kafka-protocol` crate on a fresh connection and
/// decodes the response: for the few things librdkafka hides (per-resource error codes,
/// batches it will not build).
pub fn request<R: kafka_protocol::protocol::Request>(b: &Broker, req: &R, version: i16) -> R::Response {
    use kafka_protocol::messages::{RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("raw-test")));
    let mut frame = bytes::BytesMut::new();
    header.encode(&mut frame, R::header_version(version)).expect("encode header");
    req.encode(&mut frame, version).expect("encode request");
    let mut s = TcpStream::connect(&b.addr).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(&(frame.len() as i32).to_be_bytes()).unwrap();
    s.write_all(&frame).expect("write request");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("read response length");
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).expect("read response");
    let mut buf = bytes::Bytes::from(resp);
    let h = ResponseHeader::decode(&mut buf, R::Response::header_version(version)).expect("response header");
    assert_eq!(h.correlation_id, 7);
    R::Response::decode(&mut buf, version).expect("decode response")
}
