//! End-to-end latency at a fixed rate: one producer sends 100-byte records on a schedule
//! (record `i` is due at `i / rate` seconds), a consumer in another thread reads them, and
//! each record's latency is its arrival time minus its *scheduled* send time (carried in
//! the first 8 bytes of the value), so a sender that falls behind shows up in the figures
//! rather than hiding (no coordinated omission). The first second is warm-up and not
//! counted. The producer uses `linger.ms=0` (a linger would add itself to every figure)
//! and acks=all. Both clients also count the requests they send (librdkafka statistics),
//! so that the broker's CPU time per request can be reported.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::clients::{self, settle_stats, RequestCount, STATS_INTERVAL};
use crate::throughput::{send, Failures};

const SIZE: usize = 100;
const WARMUP: Duration = Duration::from_secs(1);

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// The rate actually achieved by the sender (records/s).
    pub sent_rate: f64,
    /// Requests the producer and the consumer sent during the run (from their statistics).
    pub requests: u64,
}

/// Runs `rate` records/s for `duration` (plus the warm-up) against `topic` partition 0,
/// which must be new and empty. With `keys > 0` record `i` has the key `i % keys` (as a
/// compacted topic requires).
pub fn run(brokers: &str, topic: &str, rate: u64, duration: Duration, keys: u64) -> Result<Latency> {
    let total = WARMUP + duration;
    let expected = (total.as_secs_f64() * rate as f64) as u64;
    let base = Instant::now();

    let consumer: BaseConsumer<RequestCount> = clients::consumer_config(brokers, &[("fetch.wait.max.ms", "100"), STATS_INTERVAL])
        .create_with_context(RequestCount::default())?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(0))?;
    consumer.assign(&tpl)?;
    // Set once the sender is done: how many records it sent.
    let stop = Arc::new(AtomicBool::new(false));
    let sent_total = Arc::new(AtomicU64::new(u64::MAX));
    // Set when the consumer has read its first record (the primer below).
    let primed = Arc::new(AtomicBool::new(false));
    let (stop_c, sent_c, primed_c) = (stop.clone(), sent_total.clone(), primed.clone());
    let reader = std::thread::spawn(move || -> Result<(Vec<u64>, u64)> {
        let mut lat = Vec::with_capacity(expected as usize);
        let mut seen = 0u64;
        let deadline_after_stop = Duration::from_secs(15);
        let mut stopped_at: Option<Instant> = None;
        while seen < sent_c.load(Ordering::Relaxed) {
            if stop_c.load(Ordering::Relaxed) {
                let at = *stopped_at.get_or_insert_with(Instant::now);
                if at.elapsed() > deadline_after_stop {
                    bail!("latency consumer got {seen} of {} records", sent_c.load(Ordering::Relaxed));
                }
            }
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    let now = base.elapsed().as_nanos() as u64;
                    seen += 1;
                    primed_c.store(true, Ordering::Relaxed);
                    // Bytes 0..8: scheduled send time (ns since `base`); byte 8: 1 in warm-up.
                    if let Some(v) = m.payload().filter(|v| v.len() >= 9 && v[8] == 0) {
                        let sched = u64::from_le_bytes(v[..8].try_into().unwrap());
                        lat.push(now.saturating_sub(sched));
                    }
                }
                Some(Err(e)) => bail!("latency consumer: {e}"),
                None => {}
            }
        }
        settle_stats(|| {
            consumer.poll(Duration::from_millis(20));
        });
        Ok((lat, consumer.context().get()))
    });

    let sender = || -> Result<(u64, f64, u64)> {
        let producer: BaseProducer<Failures> = clients::producer_config(
            brokers,
            "all",
            "none",
            &[("linger.ms", "0"), ("sticky.partitioning.linger.ms", "0"), STATS_INTERVAL],
        )
        .create_with_context(Failures::default())?;
        // Before the clock runs: one primer record (a warm-up one), acknowledged and read, so
        // that the topic's leader is known to both clients and the consumer is fetching (a
        // broker that takes long to make a new topic's partition ready is not measured here).
        let mut value = [b'x'; SIZE];
        value[..8].copy_from_slice(&0u64.to_le_bytes());
        value[8] = 1;
        // Keyed when the run is (a compacted topic refuses a record without a key).
        let mut primer = BaseRecord::to(topic).payload(&value[..]).partition(0);
        if keys > 0 {
            primer = primer.key(&b"primer"[..]);
        }
        producer.send::<[u8], [u8]>(primer).map_err(|(e, _)| e)?;
        producer.flush(Duration::from_secs(60))?;
        let primer_deadline = Instant::now() + Duration::from_secs(60);
        while !primed.load(Ordering::Relaxed) {
            if Instant::now() > primer_deadline {
                bail!("the latency consumer did not read the primer record within 60 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let interval_ns = 1e9 / rate as f64;
        let t0 = base.elapsed();
        let mut i = 0u64;
        loop {
            let now = base.elapsed() - t0;
            if now >= total {
                break;
            }
            let due = ((now.as_nanos() as f64 / interval_ns) as u64 + 1).min(expected);
            while i < due {
                let sched = t0.as_nanos() as u64 + (i as f64 * interval_ns) as u64;
                value[..8].copy_from_slice(&sched.to_le_bytes());
                value[8] = u8::from(((i as f64 * interval_ns) as u64) < WARMUP.as_nanos() as u64);
                let key = (i % keys.max(1)).to_be_bytes();
                let mut rec = BaseRecord::to(topic).payload(&value[..]).partition(0);
                if keys > 0 {
                    rec = rec.key(&key[..]);
                }
                send(&producer, rec)?;
                i += 1;
            }
            producer.poll(Duration::ZERO);
            // Sleep until the next record is due (the kernel rounds short sleeps up).
            let next = Duration::from_nanos((i as f64 * interval_ns) as u64);
            let now = base.elapsed() - t0;
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        let sent_secs = (base.elapsed() - t0).as_secs_f64();
        producer.flush(Duration::from_secs(60))?;
        producer.context().check()?;
        settle_stats(|| {
            producer.poll(Duration::from_millis(20));
        });
        // The primer counts as sent: the reader waits for every record.
        Ok((i + 1, sent_secs, producer.context().requests.get()))
    };
    let sent = sender();
    sent_total.store(sent.as_ref().map_or(0, |s| s.0), Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let (mut lat, consumer_requests) = match reader.join() {
        Ok(r) => r?,
        Err(_) => bail!("latency consumer thread panicked"),
    };
    let (sent, sent_secs, producer_requests) = sent?;
    if lat.is_empty() {
        bail!("no latency samples");
    }
    lat.sort_unstable();
    let pct = |q: f64| lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1] as f64 / 1e6;
    Ok(Latency {
        samples: lat.len(),
        p50: pct(0.50),
        p99: pct(0.99),
        p999: pct(0.999),
        max: *lat.last().unwrap() as f64 / 1e6,
        sent_rate: (sent - 1) as f64 / sent_secs,
        requests: producer_requests + consumer_requests,
    })
}

/// The worst of several runs: each percentile's highest and the lowest rate achieved;
/// samples and requests added up.
pub fn worst(runs: &[Latency]) -> Latency {
    let mut w = runs[0];
    for l in &runs[1..] {
        w.p50 = w.p50.max(l.p50);
        w.p99 = w.p99.max(l.p99);
        w.p999 = w.p999.max(l.p999);
        w.max = w.max.max(l.max);
        w.sent_rate = w.sent_rate.min(l.sent_rate);
        w.samples += l.samples;
        w.requests += l.requests;
    }
    w
}
