//! What incremental fetch sessions (KIP-227) save: the Java consumer (Kafka's
//! `kafka-consumer-perf-test`, which uses fetch sessions by default) tails a topic of 1,000
//! partitions while Kafka's producer perf tool writes 100 B records to it at a fixed rate,
//! so that each fetch finds new records on a few partitions only. The same run against a
//! broker with `max.incremental.fetch.session.cache.slots=0` (every fetch is full: 1,000
//! partitions asked and answered) and with the default 1,000 slots (incremental fetches
//! name and are answered only what changed), alternated, each on a fresh broker. Broker
//! CPU per Fetch comes from the broker's CPU time and its own Fetch count (`/metrics`).

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::broker::{Kind, OwnBroker};
use crate::procstat::{Meter, RunUsage};
use crate::report::{self, Group, Row};
use crate::{clients, perftest, Bench};

const PARTITIONS: i32 = 1000;
/// Records per second the producer writes, and for how long.
const RATE: u64 = 5_000;
const SECONDS: u64 = 10;
/// Runs of each setting, alternated.
const ROUNDS: usize = 3;

/// A `runnel broker` with its admin listener, for one run. Dropping it kills it.
struct SessionBroker {
    proc: OwnBroker,
    addr: String,
    admin: String,
}

impl SessionBroker {
    fn start(bin: &Path, root: &Path, slots: u32) -> Result<SessionBroker> {
        let args = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "-o", "group.initial.rebalance.delay.ms=0", "-o"];
        let mut args: Vec<String> = args.into_iter().map(String::from).collect();
        args.push(format!("max.incremental.fetch.session.cache.slots={slots}"));
        let proc = OwnBroker::start(bin, root, &args)?;
        Ok(SessionBroker { addr: proc.after("Kafka listener on ")?, admin: proc.after("admin on ")?, proc })
    }

    /// One sample of `/metrics` (0 when absent).
    fn metric(&self, name: &str) -> Result<f64> {
        let mut s = std::net::TcpStream::connect(&self.admin)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(s, "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.admin)?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0))
    }
}

impl Bench {
    /// Full against incremental fetches of a 1,000-partition consumer, alternated.
    pub(crate) fn sessions(&mut self) -> Result<()> {
        let Kind::Runnel { bin } = &self.kind else { return Ok(()) };
        let bin = bin.clone();
        for round in 0..ROUNDS {
            for slots in [0, 1000] {
                let root = self.root.path().join(format!("sessions-{round}-{slots}"));
                let b = SessionBroker::start(&bin, &root, slots)?;
                let topic = "bench-sessions";
                clients::create_topic(&b.addr, topic, PARTITIONS, &[])?;
                let label = format!(
                    "1,000 partitions, Java consumer tailing {} rec/s, sessions {} (slots {slots}), run {}",
                    report::thousands(RATE),
                    if slots == 0 { "off" } else { "on" },
                    round + 1
                );
                self.progress.begin(&label);
                let records = RATE * SECONDS;
                let (fetches0, incremental0) = (b.metric("runnel_requests_total{api=\"Fetch\"}")?, b.metric("runnel_fetch_session_incremental_requests_total")?);
                let meter = Meter::start(b.proc.child.id());
                let addr = b.addr.clone();
                let consumer = std::thread::spawn(move || perftest::consume(&addr, topic, records, &[]));
                // The consumer joins its group and starts polling the empty partitions.
                std::thread::sleep(Duration::from_secs(3));
                perftest::run_at(&b.addr, topic, records, 100, RATE as i64, &[])?;
                let consumed = consumer.join().map_err(|_| anyhow!("consumer thread panicked"))?;
                let usage = meter.stop();
                consumed?;
                let fetches = b.metric("runnel_requests_total{api=\"Fetch\"}")? - fetches0;
                let incremental = b.metric("runnel_fetch_session_incremental_requests_total")? - incremental0;
                let mut row = Row::new(Group::Sessions, label);
                row.rec_s = Some(RATE as f64);
                row.usage = Some(RunUsage { broker: Some(usage), client_cpu_s: f64::NAN });
                row.requests = Some(fetches as u64);
                row.result = Some(format!(
                    "{} fetches ({} incremental), {:.0} µs broker CPU per fetch",
                    report::thousands(fetches as u64),
                    report::thousands(incremental as u64),
                    usage.cpu_s * 1e6 / fetches.max(1.0)
                ));
                self.push(row)?;
            }
        }
        Ok(())
    }
}
