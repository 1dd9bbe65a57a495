//! librdkafka clients tuned for throughput, the admin calls the benchmark needs (create and
//! delete topics, metadata), and the payloads it sends.
//!
//! Producers: `linger.ms=5`, `batch.size` 1 MB, a large local queue, errors-only delivery
//! reports (success is known from `flush`). Consumers: explicit `assign()` at offset 0 (no
//! group is joined), large fetches, `fetch.wait.max.ms=10`, a large prefetch queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext};

pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Base config: the bootstrap address, IPv4, quiet logs.
pub fn base(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers).set("broker.address.family", "v4").set("log_level", "3");
    c
}

/// Producer settings for throughput runs; `extra` overrides.
pub fn producer_config(brokers: &str, acks: &str, compression: &str, extra: &[(&str, &str)]) -> ClientConfig {
    let mut c = base(brokers);
    c.set("acks", acks)
        .set("compression.type", compression)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "1000000")
        .set("message.max.bytes", "1000000")
        .set("queue.buffering.max.kbytes", "2097152")
        .set("queue.buffering.max.messages", "10000000")
        .set("message.timeout.ms", "120000")
        .set("delivery.report.only.error", "true")
        .set("enable.idempotence", "false");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c
}

/// Consumer settings: assign-only (a `group.id` is required by librdkafka for `assign()`,
/// but no group is joined and nothing is committed).
pub fn consumer_config(brokers: &str, extra: &[(&str, &str)]) -> ClientConfig {
    let mut c = base(brokers);
    c.set("group.id", "runnel-bench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("check.crcs", "false")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.min.bytes", "1")
        .set("max.partition.fetch.bytes", "16777216")
        .set("fetch.max.bytes", "67108864")
        .set("receive.message.max.bytes", "134217728")
        .set("queued.min.messages", "1000000")
        .set("queued.max.messages.kbytes", "1048576")
        .set("fetch.queue.backoff.ms", "10");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c
}

/// `statistics.interval.ms` for clients that count their requests ([`RequestCount`]).
pub const STATS_INTERVAL: (&str, &str) = ("statistics.interval.ms", "100");

/// The requests a client has sent to the brokers (the sum of librdkafka's per-connection
/// `tx` statistic), so that the broker's CPU time can be divided by the requests it served
/// with a count that does not depend on the broker's own metrics. Needs [`STATS_INTERVAL`];
/// the figure is as fresh as the last statistics callback (served by `poll`).
#[derive(Default)]
pub struct RequestCount(AtomicU64);

impl RequestCount {
    pub fn update(&self, s: &Statistics) {
        self.0.store(s.brokers.values().map(|b| b.tx).sum(), Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl ClientContext for RequestCount {
    fn stats(&self, s: Statistics) {
        self.update(&s);
    }
}

impl ConsumerContext for RequestCount {}

/// Polls for a little longer than the statistics interval, so that the request counts
/// include the end of the run.
pub fn settle_stats(mut poll: impl FnMut()) {
    let until = std::time::Instant::now() + Duration::from_millis(250);
    while std::time::Instant::now() < until {
        poll();
    }
}

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>> {
    Ok(base(brokers).create()?)
}

fn opts() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(TIMEOUT)).operation_timeout(Some(TIMEOUT))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime").block_on(f)
}

/// Creates a topic with `partitions` and topic `configs`.
pub fn create_topic(brokers: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) -> Result<()> {
    create_replicated_topic(brokers, name, partitions, 1, configs)
}

/// Creates a topic with `partitions` of `replicas` replicas each, and topic `configs`.
pub fn create_replicated_topic(brokers: &str, name: &str, partitions: i32, replicas: i32, configs: &[(&str, &str)]) -> Result<()> {
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(replicas));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let res = block_on(admin(brokers)?.create_topics([&t], &opts()))?;
    match res.into_iter().next() {
        Some(Ok(_)) => Ok(()),
        Some(Err((_, code))) => bail!("creating topic {name}: {code}"),
        None => bail!("creating topic {name}: no result"),
    }
}

/// Deletes a topic (its data leaves the disk and the page cache).
pub fn delete_topic(brokers: &str, name: &str) -> Result<()> {
    let res = block_on(admin(brokers)?.delete_topics(&[name], &opts()))?;
    match res.into_iter().next() {
        Some(Ok(_)) => Ok(()),
        Some(Err((_, code))) => bail!("deleting topic {name}: {code}"),
        None => bail!("deleting topic {name}: no result"),
    }
}

/// Asks for the metadata of `topic` and returns its partition count.
pub fn partition_count(brokers: &str, topic: &str, timeout: Duration) -> Result<usize> {
    let c: BaseConsumer = base(brokers).create()?;
    let md = c.fetch_metadata(Some(topic), timeout)?;
    let t = md.topics().iter().find(|t| t.name() == topic).ok_or_else(|| anyhow!("topic {topic} not in metadata"))?;
    if let Some(e) = t.error() {
        bail!("metadata for {topic}: {e:?}");
    }
    Ok(t.partitions().len())
}

/// A pool of text-like bytes that lz4 compresses to roughly half, so that compressed
/// runs neither get free compression (zeros) nor none at all (random bytes). Record `i`
/// of size `n` is a window into it.
pub struct Payloads {
    pool: Vec<u8>,
}

impl Payloads {
    pub fn new(len: usize) -> Payloads {
        const WORDS: &[&str] = &[
            "runnel", "broker", "partition", "offset", "segment", "record", "batch", "fetch", "produce", "consumer",
            "topic", "leader", "epoch", "index", "cache", "stream", "log", "event", "commit", "group",
        ];
        let mut pool = Vec::with_capacity(len + 64);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        while pool.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 3 == 0 {
                // a random number: the incompressible part
                pool.extend_from_slice(format!("{} ", x % 1_000_000_007).as_bytes());
            } else {
                pool.extend_from_slice(WORDS[(x >> 32) as usize % WORDS.len()].as_bytes());
                pool.push(b' ');
            }
        }
        pool.truncate(len);
        Payloads { pool }
    }

    /// The value of record `i`, `size` bytes long (`size` ≤ the pool length).
    pub fn get(&self, i: u64, size: usize) -> &[u8] {
        let span = self.pool.len() - size;
        let start = if span == 0 { 0 } else { (i.wrapping_mul(7919) % span as u64) as usize };
        &self.pool[start..start + size]
    }
}

/// The low and high watermarks of partition 0 of `topic`.
pub fn watermarks(brokers: &str, topic: &str) -> Result<(i64, i64)> {
    let c: BaseConsumer = consumer_config(brokers, &[]).create()?;
    Ok(c.fetch_watermarks(topic, 0, Duration::from_secs(10))?)
}
