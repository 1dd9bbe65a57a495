//! What TLS costs: Kafka's own perf tools (the Java client) against one Runnel broker with a
//! PLAINTEXT and an SSL listener (rustls; the certificates are made for the run by rcgen,
//! as the tests make theirs), producing and then consuming the same records over each.
//! PLAINTEXT fetches send record sections with sendfile; over SSL they are read, encrypted
//! and written from user space (Runnel has no kTLS), which is the difference these rows show.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Result};

use crate::broker::{Kind, OwnBroker};
use crate::procstat::cpu_seconds;
use crate::report::{self, Group, Row};
use crate::{certs, clients, perftest, Bench};

/// Record size of the TLS rows: large enough that bytes, not requests, set the pace.
const SIZE: usize = 1000;

/// A `runnel broker` with a PLAINTEXT and an SSL listener. Dropping it kills it.
struct TlsBroker {
    proc: OwnBroker,
    plaintext: String,
    ssl: String,
    /// The CA certificate (a PEM truststore) the clients trust.
    ca: PathBuf,
}

impl TlsBroker {
    fn start(bin: &Path, root: &Path) -> Result<TlsBroker> {
        std::fs::create_dir_all(root)?;
        let c = certs::make(&root.join("certs"));
        let args = ["--admin-listen", "off", "-o", "listeners=PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0", "-o", "ssl.keystore.type=PEM", "-o"];
        let mut args: Vec<String> = args.into_iter().map(String::from).collect();
        args.push(format!("ssl.keystore.location={}", c.keystore.display()));
        let proc = OwnBroker::start(bin, root, &args)?;
        let line = &proc.line;
        let listener = |name: &str| {
            line.split("listeners [")
                .nth(1)
                .and_then(|rest| rest.split(']').next())
                .and_then(|list| list.split_whitespace().find_map(|l| l.strip_prefix(&format!("{name}://")).map(str::to_string)))
                .ok_or_else(|| anyhow!("no {name} listener in: {line}"))
        };
        Ok(TlsBroker { plaintext: listener("PLAINTEXT")?, ssl: listener("SSL")?, ca: c.ca, proc })
    }
}

impl Bench {
    /// kafka-producer-perf-test and kafka-consumer-perf-test of 1,000 B records over
    /// PLAINTEXT and over SSL against one broker, with the broker's CPU for each.
    pub(crate) fn tls(&mut self) -> Result<()> {
        let Kind::Runnel { bin } = &self.kind else { return Ok(()) };
        let b = TlsBroker::start(bin, &self.root.path().join("tls"))?;
        let records = (self.plan.records_small / 10).max(10_000);
        let ssl = [
            "security.protocol=SSL".to_string(),
            "ssl.truststore.type=PEM".to_string(),
            format!("ssl.truststore.location={}", b.ca.display()),
        ];
        for (name, addr, props) in [("PLAINTEXT", &b.plaintext, &[][..]), ("SSL", &b.ssl, &ssl[..])] {
            let topic = format!("bench-tls-{}", name.to_lowercase());
            clients::create_topic(&b.plaintext, &topic, 1, &[])?;

            let label = format!("kafka-producer-perf-test over {name}, {} × 1,000 B", report::thousands(records));
            self.progress.begin(&label);
            let (cpu0, t0) = (cpu_seconds(b.proc.child.id()).unwrap_or(0.0), Instant::now());
            let p = perftest::run(addr, &topic, records, SIZE, props)?;
            let mut row = Row::new(Group::Tls, label);
            row.rec_s = Some(p.records_per_s);
            row.mb_s = Some(p.mb_per_s);
            row.result = Some(format!("broker CPU {}; producer latency ms p50 {} / p99 {}", cores(&b, cpu0, t0), p.p50, p.p99));
            self.push(row)?;

            let label = format!("kafka-consumer-perf-test over {name}, {} × 1,000 B from offset 0", report::thousands(records));
            self.progress.begin(&label);
            let (cpu0, t0) = (cpu_seconds(b.proc.child.id()).unwrap_or(0.0), Instant::now());
            let c = perftest::consume(addr, &topic, records, props)?;
            let mut row = Row::new(Group::Tls, label);
            row.rec_s = Some(c.records_per_s);
            row.mb_s = Some(c.mb_per_s);
            row.result = Some(format!("broker CPU {}", cores(&b, cpu0, t0)));
            self.push(row)?;
        }
        Ok(())
    }
}

/// The broker's CPU since `(cpu0, t0)`, in cores.
fn cores(b: &TlsBroker, cpu0: f64, t0: Instant) -> String {
    let cpu = cpu_seconds(b.proc.child.id()).unwrap_or(cpu0) - cpu0;
    format!("{:.2} cores", cpu / t0.elapsed().as_secs_f64())
}
