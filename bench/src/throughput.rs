//! Producer and consumer throughput runs. A producer run sends `records` values of one
//! size (or stops sending when its time cap is reached) as fast as librdkafka accepts them,
//! spread round-robin over the topic's partitions, and is timed from the first send until
//! `flush` returns, i.e. until every record is acknowledged with the run's acks. A
//! consumer run starts a new consumer (cold: new connection, metadata, no prefetch) that
//! reads every partition from offset 0 and is timed until it has the expected count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::clients::{settle_stats, Payloads, RequestCount, STATS_INTERVAL};

/// Records and payload bytes moved, and the seconds it took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Throughput {
    pub records: u64,
    pub bytes: u64,
    pub secs: f64,
    /// Requests the client sent, where it counted them (consumers do).
    pub requests: Option<u64>,
}

impl Throughput {
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.secs
    }
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs
    }
}

/// Counts failed deliveries (success reports are turned off), and the requests sent where
/// the producer has statistics on.
#[derive(Default)]
pub struct Failures {
    count: AtomicU64,
    first: Mutex<Option<String>>,
    pub requests: RequestCount,
}

impl ClientContext for Failures {
    fn stats(&self, s: rdkafka::statistics::Statistics) {
        self.requests.update(&s);
    }
}

impl ProducerContext for Failures {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.count.fetch_add(1, Ordering::Relaxed);
            self.first.lock().unwrap().get_or_insert_with(|| e.to_string());
        }
    }
}

impl Failures {
    pub fn check(&self) -> Result<()> {
        let n = self.count.load(Ordering::Relaxed);
        if n > 0 {
            bail!("{n} records failed to be delivered; first error: {}", self.first.lock().unwrap().clone().unwrap_or_default());
        }
        Ok(())
    }
}

/// Hands `record` to the producer, serving delivery reports while its queue is full.
pub fn send<C: ProducerContext<DeliveryOpaque = ()>>(producer: &BaseProducer<C>, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => bail!("send failed: {e}"),
        }
    }
}

pub struct ProduceRun<'a> {
    pub config: ClientConfig,
    pub topic: &'a str,
    pub partitions: i32,
    pub size: usize,
    pub records: u64,
    pub max_time: Duration,
}

/// Sends the run's records and waits for all acknowledgements.
pub fn produce(run: &ProduceRun, payloads: &Payloads) -> Result<Throughput> {
    let producer: BaseProducer<Failures> = run.config.create_with_context(Failures::default())?;
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < run.records {
        if sent % 4096 == 0 {
            producer.poll(Duration::ZERO);
            if start.elapsed() > run.max_time {
                break;
            }
        }
        let record =
            BaseRecord::to(run.topic).payload(payloads.get(sent, run.size)).partition((sent % run.partitions as u64) as i32);
        send(&producer, record)?;
        sent += 1;
    }
    producer.flush(Duration::from_secs(300))?;
    let secs = start.elapsed().as_secs_f64();
    producer.poll(Duration::ZERO);
    producer.context().check()?;
    Ok(Throughput { records: sent, bytes: sent * run.size as u64, secs, requests: None })
}

/// Reads `partitions` of `topic` from offset 0 until `expected` records have arrived.
pub fn consume(config: &ClientConfig, topic: &str, partitions: i32, expected: u64, max_time: Duration) -> Result<Throughput> {
    let start = Instant::now();
    let consumer: BaseConsumer<RequestCount> =
        config.clone().set(STATS_INTERVAL.0, STATS_INTERVAL.1).create_with_context(RequestCount::default())?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Offset(0))?;
    }
    consumer.assign(&tpl)?;
    let (mut records, mut bytes) = (0u64, 0u64);
    while records < expected {
        if start.elapsed() > max_time {
            bail!("consumer timed out after {:?}: {records} of {expected} records", max_time);
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => bail!("consumer error after {records} records: {e}"),
            None => {}
        }
    }
    let secs = start.elapsed().as_secs_f64();
    settle_stats(|| {
        consumer.poll(Duration::from_millis(20));
    });
    Ok(Throughput { records, bytes, secs, requests: Some(consumer.context().get()) })
}
