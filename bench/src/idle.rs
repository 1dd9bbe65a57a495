//! What many partitions cost when nothing happens, each on a fresh broker of its own:
//! - the resident memory of a broker holding 1,000 empty partitions;
//! - the time a broker needs after a restart with 1,000 partitions × 10 segments (tiny
//!   `segment.bytes`, one small batch per segment) until it answers Metadata for them.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::broker::{BrokerProc, Kind};
use crate::clients;
use crate::procstat;
use crate::throughput::Failures;

pub struct IdleMemory {
    /// RSS of the fresh, empty broker, and after the partitions exist.
    pub rss_empty: u64,
    pub rss: u64,
    /// Peak RSS over the broker's life (VmHWM).
    pub peak: u64,
    pub cpu_s: f64,
    /// Open file descriptors with the partitions in place.
    pub fds: usize,
    /// How long a clean stop (SIGTERM until exit) took.
    pub stop: Duration,
}

/// Starts a broker, creates one topic with `partitions`, waits a moment, reads its RSS.
pub fn idle_memory(kind: &Kind, dir: &Path, partitions: i32) -> Result<IdleMemory> {
    let mut b = BrokerProc::start(kind, dir, &[])?;
    std::thread::sleep(Duration::from_millis(300));
    let (rss_empty, _) = procstat::memory(b.pid()).unwrap_or_default();
    clients::create_topic(&b.addr, "idle", partitions, &[])?;
    if clients::partition_count(&b.addr, "idle", clients::TIMEOUT)? != partitions as usize {
        bail!("idle topic does not have {partitions} partitions");
    }
    std::thread::sleep(Duration::from_secs(2));
    b.check_alive()?;
    let (rss, peak) = procstat::memory(b.pid()).unwrap_or_default();
    let cpu_s = procstat::cpu_seconds(b.pid()).unwrap_or(0.0);
    let fds = procstat::open_fds(b.pid()).unwrap_or(0);
    let t = Instant::now();
    b.stop()?;
    Ok(IdleMemory { rss_empty, rss, peak, cpu_s, fds, stop: t.elapsed() })
}

pub struct Restart {
    pub segments: usize,
    /// Open file descriptors of the broker before the restart.
    pub fds: usize,
    /// From spawn to the startup line, and to the first full Metadata answer.
    pub listening: Duration,
    pub metadata: Duration,
    pub rss: u64,
    pub peak: u64,
    pub cpu_s: f64,
}

/// Fills `partitions` × `segments` tiny segments, restarts the broker (SIGTERM, new
/// process) and times it until Metadata lists every partition.
pub fn restart_with_segments(kind: &Kind, dir: &Path, partitions: i32, segments: usize) -> Result<Restart> {
    const SEGMENT_BYTES: usize = 1024;
    let topic = "segs";
    let mut b = BrokerProc::start(kind, dir, &[])?;
    // Kafka 4 refuses segment.bytes below 1 MiB (KIP-1030): there a segment rolls by age
    // instead (segment.ms=1, and the rounds are more than 1 ms apart).
    let roll = match kind {
        Kind::Runnel { .. } => ("segment.bytes", SEGMENT_BYTES.to_string()),
        Kind::ApacheKafka => ("segment.ms", "1".to_string()),
    };
    clients::create_topic(&b.addr, topic, partitions, &[(roll.0, &roll.1)])?;
    // One batch of one record per partition per round; a batch is bigger than
    // segment.bytes, so every round after the first rolls a new segment.
    let producer: BaseProducer<Failures> =
        clients::producer_config(&b.addr, "1", "none", &[]).create_with_context(Failures::default())?;
    let value = vec![b'v'; SEGMENT_BYTES];
    for _ in 0..segments {
        for p in 0..partitions {
            let mut rec = BaseRecord::to(topic).payload(&value[..]).partition(p);
            while let Err((e, r)) = producer.send::<[u8], [u8]>(rec) {
                rec = r;
                if !matches!(e, rdkafka::error::KafkaError::MessageProduction(rdkafka::error::RDKafkaErrorCode::QueueFull)) {
                    bail!("send failed: {e}");
                }
                producer.poll(Duration::from_millis(1));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
        // Flush, watching the broker's log: a broker that runs out of file descriptors
        // answers KAFKA_STORAGE_ERROR, which librdkafka would retry until its timeout.
        let deadline = Instant::now() + Duration::from_secs(120);
        while producer.flush(Duration::from_millis(500)).is_err() {
            if b.log_contains("Too many open files") || Instant::now() > deadline {
                let segs = count_segments(dir, topic).unwrap_or(0);
                let fds = procstat::open_fds(b.pid()).unwrap_or(0);
                let limit = procstat::fd_limit(b.pid()).map_or("?".into(), |l| l.to_string());
                bail!("broker ran out of fds (EMFILE) at {segs} segments: {fds} open, limit {limit}");
            }
        }
    }
    producer.context().check()?;
    drop(producer);
    let count = count_segments(dir, topic)?;
    let fds = procstat::open_fds(b.pid()).unwrap_or(0);
    b.restart()?;
    let started = b.spawned_at;
    let listening = b.listening_at - started;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match clients::partition_count(&b.addr, topic, Duration::from_secs(10)) {
            Ok(n) if n == partitions as usize => break,
            Ok(n) if Instant::now() > deadline => bail!("after restart Metadata lists {n} of {partitions} partitions"),
            Err(e) if Instant::now() > deadline => bail!("no Metadata after restart: {e}"),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let metadata = started.elapsed();
    b.check_alive()?;
    let (rss, peak) = procstat::memory(b.pid()).unwrap_or_default();
    let cpu_s = procstat::cpu_seconds(b.pid()).unwrap_or(0.0);
    b.stop()?;
    Ok(Restart { peak, segments: count, fds, listening, metadata, rss, cpu_s })
}

/// Counts `.log` files in the topic's partition directories (Kafka's are in `data/`).
fn count_segments(dir: &Path, topic: &str) -> Result<usize> {
    let kafka_dir = dir.join("data");
    let dir = if kafka_dir.is_dir() { kafka_dir.as_path() } else { dir };
    let prefix = format!("{topic}-");
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            for f in std::fs::read_dir(entry.path())? {
                if f?.path().extension().is_some_and(|e| e == "log") {
                    n += 1;
                }
            }
        }
    }
    Ok(n)
}
