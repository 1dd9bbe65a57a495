//! `runnel-bench`: drives a Runnel broker with librdkafka and prints one table of
//! producer and consumer throughput, end-to-end latency, the broker's CPU and memory per
//! run, idle-partition costs, and this machine's limits (loopback TCP, disk write+fsync)
//! as reference points; the table is also appended to `bench/RESULTS.md`.
//!
//! By default it starts `target/release/runnel broker` itself on 127.0.0.1:0 with a temp
//! data dir; `--brokers` points it at a running broker instead. See `bench/README.md`.

mod broker;
mod clients;
mod cluster;
mod idle;
mod latency;
mod latency_rows;
mod limits;
mod perftest;
mod procstat;
mod report;
mod sessions;
mod throughput;
mod tls;
#[path = "../../crates/runnel/tests/common/certs.rs"]
mod certs;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use broker::{BrokerProc, Kind, Target as Broker};
use report::{Group, Row, Target};
use throughput::{ProduceRun, Throughput};

/// Broker settings of the broker the bench starts itself: see `latency_while_cleaning`.
const CLEANER_OFTEN: [&str; 4] = ["-o", "log.cleaner.backoff.ms=200", "-o", "log.retention.check.interval.ms=200"];

#[derive(Parser, Clone)]
#[command(name = "runnel-bench", about = "Benchmark a Runnel broker with librdkafka (see bench/README.md)")]
struct Args {
    /// The broker to start and measure: runnel, or apache-kafka (through scripts/apache-kafka).
    #[arg(long, value_enum, default_value = "runnel")]
    broker: BrokerChoice,
    /// Measure Runnel, then Apache Kafka, with the same plan and client, and add a table
    /// of the two side by side.
    #[arg(long, conflicts_with_all = ["broker", "brokers"])]
    compare: bool,
    /// Small counts and short runs: a smoke run of under a minute.
    #[arg(long)]
    quick: bool,
    /// Run only these groups (comma-separated). `consume` produces its data first.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Group>,
    /// Run only the produce/consume and latency cases whose label contains this text, e.g. "100 B acks=1 p=1 none".
    #[arg(long)]
    filter: Option<String>,
    /// Seconds: the cap of each throughput run and the measured length of each latency run
    /// [default: 20 / 10; --quick: 3 / 2].
    #[arg(long)]
    duration: Option<f64>,
    /// Records per producer run of 100 B records; larger sizes send the same bytes × 2
    /// (at most this many records) [default: 5,000,000; --quick: 200,000].
    #[arg(long)]
    records: Option<u64>,
    /// Use this running broker (HOST:PORT) instead of starting one.
    #[arg(long)]
    brokers: Option<String>,
    /// With --brokers: the broker's pid, for its CPU and memory figures.
    #[arg(long, requires = "brokers")]
    broker_pid: Option<u32>,
    /// The runnel binary [default: `runnel` beside this binary, i.e. target/release/runnel].
    #[arg(long)]
    runnel_bin: Option<PathBuf>,
    /// Parent directory for the broker's data dirs and the disk probe [default: the system temp dir].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where to append the markdown results [default: bench/RESULTS.md of this workspace].
    #[arg(long)]
    results: Option<PathBuf>,
    /// Do not append to the results file.
    #[arg(long)]
    no_record: bool,
    /// Runs of each latency row; the row reports the worst of them (each percentile's
    /// highest) [default: 5; --quick: 1].
    #[arg(long)]
    repetitions: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BrokerChoice {
    Runnel,
    ApacheKafka,
}

/// Counts and durations of one invocation.
struct Plan {
    records_small: u64,
    max_time: Duration,
    latency_time: Duration,
    latency_runs: u32,
    /// The pause before the latency rows when groups before them deleted their topics.
    settle: Duration,
    loopback_time: Duration,
    disk_bytes: u64,
    large_records: u64,
    idle_partitions: i32,
    idle_segments: usize,
}

impl Plan {
    fn new(a: &Args) -> Plan {
        let q = a.quick;
        let records_small = a.records.unwrap_or(if q { 200_000 } else { 5_000_000 });
        let large_records = (records_small * 200 * 2 / 1_000_000).max(10);
        Plan {
            records_small,
            max_time: Duration::from_secs_f64(a.duration.unwrap_or(if q { 3.0 } else { 20.0 })),
            latency_time: Duration::from_secs_f64(a.duration.unwrap_or(if q { 2.0 } else { 10.0 })),
            latency_runs: a.repetitions.unwrap_or(if q { 1 } else { 5 }).max(1),
            settle: Duration::from_secs(if q { 0 } else { 30 }),
            loopback_time: Duration::from_secs(if q { 1 } else { 3 }),
            disk_bytes: if q { 64 << 20 } else { 512 << 20 },
            large_records,
            idle_partitions: 1000,
            idle_segments: 10,
        }
    }

    /// Records of one producer run for `size`-byte values: `records_small` of 100 B, and
    /// the same bytes × 2 for larger values.
    fn records_for(&self, size: usize) -> u64 {
        if size <= 100 {
            self.records_small
        } else {
            (self.records_small * 200 / size as u64).clamp(10, self.records_small)
        }
    }
}

/// Progress on stderr: one line per step, with its result.
struct Progress {
    total: usize,
    done: usize,
    start: Instant,
}

impl Progress {
    fn begin(&mut self, what: &str) {
        self.done += 1;
        eprint!("[{:>2}/{}  {:>5.0}s] {what} … ", self.done, self.total, self.start.elapsed().as_secs_f64());
        let _ = std::io::stderr().flush();
    }
    fn end(&self, row: &Row) {
        eprintln!("{}", row.summary());
    }
}

struct Bench {
    args: Args,
    plan: Plan,
    broker: Broker,
    kind: Kind,
    root: tempfile::TempDir,
    rows: Vec<Row>,
    progress: Progress,
    loopback_mb_s: Option<f64>,
    disk_mb_s: Option<f64>,
    payloads: clients::Payloads,
}

const SIZES: [usize; 3] = [100, 1_000, 100_000];
const LARGE: usize = 1_000_000;
const PARTITIONS: [i32; 2] = [1, 8];
const COMPRESSION: [&str; 2] = ["none", "lz4"];
const ACKS: [&str; 2] = ["1", "all"];

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("\nrunnel-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let bin = match &args.runnel_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("runnel"),
    };
    let runnel = Kind::Runnel { bin };
    let kinds = match (args.compare, args.broker) {
        (true, _) => vec![runnel, Kind::ApacheKafka],
        (false, BrokerChoice::Runnel) => vec![runnel],
        (false, BrokerChoice::ApacheKafka) => vec![Kind::ApacheKafka],
    };
    let machine = machine();
    eprintln!("runnel-bench: {machine}");
    let mut tables = Vec::new();
    for kind in kinds {
        let name = kind.name();
        let rows = measure(args.clone(), kind, &machine)?;
        tables.push((name, rows));
    }
    if let [(a, ours), (b, theirs)] = &tables[..] {
        let table = report::comparison_table(a, ours, b, theirs);
        println!("\n{a} and {b} side by side (same client, same plan, same machine)\n{table}");
        if !args.no_record {
            let path = results_path(&args);
            let text = format!("\n### {a} and {b} side by side (the two tables above)\n\n{}", report::comparison_markdown(a, ours, b, theirs));
            std::fs::OpenOptions::new().append(true).open(&path)?.write_all(text.as_bytes())?;
        }
    }
    Ok(())
}

/// Runs every selected group against one broker and returns the rows (also printed, and
/// appended to the results file).
fn measure(args: Args, kind: Kind, machine: &str) -> Result<Vec<Row>> {
    let plan = Plan::new(&args);
    let root = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::Builder::new().prefix("runnel-bench-").tempdir_in(d)?
        }
        None => tempfile::Builder::new().prefix("runnel-bench-").tempdir()?,
    };
    let broker = match &args.brokers {
        Some(addr) => Broker::External { addr: addr.clone(), pid: args.broker_pid },
        // The cleaner and retention look often, so that the latency-under-cleaning row
        // sees them run (they only touch topics that ask for them).
        // (Runnel's settings: Apache Kafka keeps its own defaults.)
        None => Broker::Ours(BrokerProc::start(&kind, &root.path().join("broker"), &CLEANER_OFTEN.map(String::from))?),
    };
    let load_at_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "{} broker {} ({}), data under {}",
        kind.name(),
        broker.addr(),
        if args.brokers.is_some() { "external" } else { "started here" },
        root.path().display()
    );
    let mut b = Bench {
        progress: Progress { total: 0, done: 0, start: Instant::now() },
        args,
        plan,
        broker,
        kind,
        root,
        rows: Vec::new(),
        loopback_mb_s: None,
        disk_mb_s: None,
        payloads: clients::Payloads::new(8 << 20),
    };
    b.progress.total = b.step_count();
    let started = Instant::now();
    if b.wants(Group::Limits) {
        b.limits()?;
    }
    if b.wants(Group::Produce) || b.wants(Group::Consume) {
        b.matrix()?;
    }
    if b.wants(Group::Large) {
        b.large()?;
    }
    if b.wants(Group::Latency) {
        if b.wants(Group::Produce) || b.wants(Group::Consume) || b.wants(Group::Large) {
            b.settle();
        }
        b.latency()?;
    }
    if b.wants(Group::Perftest) {
        b.perftest()?;
    }
    if b.wants(Group::Idle) {
        b.idle()?;
    }
    if b.runs_cluster() {
        b.cluster()?;
    }
    if b.runs_tls() {
        b.tls()?;
    }
    if b.runs_own(Group::Sessions) {
        b.sessions()?;
    }
    if let Broker::Ours(broker) = &mut b.broker {
        broker.stop()?;
    }
    b.rows.sort_by_key(|r| r.group);
    let table = report::text_table(&b.rows);
    println!("\n{}\n{table}", b.kind.name());
    eprintln!("total {:.0} s", started.elapsed().as_secs_f64());
    if !b.args.no_record {
        let path = b.record(machine, &load_at_start)?;
        eprintln!("appended to {}", path.display());
    }
    Ok(b.rows)
}

fn results_path(args: &Args) -> PathBuf {
    match &args.results {
        Some(p) => p.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md"),
    }
}

impl Bench {
    fn wants(&self, g: Group) -> bool {
        self.args.only.is_empty() || self.args.only.contains(&g)
    }

    /// Waits before the latency rows after groups that deleted gigabytes of topics. On this
    /// kind of VM (ext4 mounted with `discard`) a large deletion slows every process for
    /// 10–20 s, whatever wrote the files (measured: bench/RESULTS.md, 2026-12-02 10:00),
    /// which would put the deletion, not the broker, in the first latency runs.
    fn settle(&mut self) {
        if self.plan.settle.is_zero() {
            return;
        }
        eprintln!("waiting {} s before the latency rows: the groups before deleted their topics (see bench/README.md)", self.plan.settle.as_secs());
        std::thread::sleep(self.plan.settle);
    }

    fn selected(&self, label: &str) -> bool {
        self.args.filter.as_deref().map_or(true, |f| label.contains(f))
    }

    fn step_count(&self) -> usize {
        let mut n = 0;
        if self.wants(Group::Limits) {
            n += 4;
        }
        for size in SIZES {
            for p in PARTITIONS {
                for c in COMPRESSION {
                    for acks in ACKS {
                        let label = produce_label(size, acks, p, c);
                        if self.selected(&label) {
                            n += usize::from(self.wants(Group::Produce)) + usize::from(acks == "1" && self.wants(Group::Consume));
                        }
                    }
                }
            }
        }
        if self.wants(Group::Large) {
            n += 2;
        }
        if self.wants(Group::Latency) {
            n += self.latency_labels().iter().filter(|l| self.selected(l)).count() * self.plan.latency_runs as usize;
        }
        if self.wants(Group::Perftest) {
            n += 1;
        }
        if self.wants(Group::Idle) {
            n += 2;
        }
        if self.runs_cluster() {
            n += 4;
        }
        if self.runs_tls() {
            n += 4;
        }
        if self.runs_own(Group::Sessions) {
            n += 6;
        }
        n
    }

    /// The cluster group runs on Runnel nodes the bench starts itself (Apache Kafka's
    /// script runs one node; an external broker is one broker).
    fn runs_cluster(&self) -> bool {
        self.wants(Group::Cluster) && matches!(self.kind, Kind::Runnel { .. }) && self.args.brokers.is_none()
    }

    /// The TLS rows start their own Runnel broker with an SSL listener.
    fn runs_tls(&self) -> bool {
        self.wants(Group::Tls) && matches!(self.kind, Kind::Runnel { .. }) && self.args.brokers.is_none()
    }

    /// Groups that start their own Runnel broker run on Runnel only, without --brokers.
    fn runs_own(&self, g: Group) -> bool {
        self.wants(g) && matches!(self.kind, Kind::Runnel { .. }) && self.args.brokers.is_none()
    }

    fn push(&mut self, row: Row) -> Result<()> {
        self.progress.end(&row);
        self.rows.push(row);
        self.broker.check_alive()
    }

    fn meter(&self) -> procstat::RunMeter {
        procstat::RunMeter::start(self.broker.pid())
    }

    /// Fills the fractions of the limits: loopback for every transfer, the disk for
    /// writes only (consumers read the page cache).
    fn fractions(&self, row: &mut Row, writes: bool) {
        if let Some(mb) = row.mb_s {
            row.of_loopback = self.loopback_mb_s.map(|l| mb / l);
            if writes {
                row.of_disk = self.disk_mb_s.map(|d| mb / d);
            }
        }
    }

    fn limits(&mut self) -> Result<()> {
        self.progress.begin("loopback TCP throughput");
        let t = limits::loopback_tcp(self.plan.loopback_time)?;
        self.loopback_mb_s = Some(t.mb_per_s());
        let mut row = Row::new(Group::Limits, "loopback TCP, 1 connection, 1 MiB writes");
        row.mb_s = Some(t.mb_per_s());
        row.of_loopback = Some(1.0);
        self.push(row)?;

        for rate in [10_000u64, 20_000] {
            self.progress.begin(&format!("request/response floor at {} req/s", report::thousands(rate)));
            let us = limits::request_floor(rate, self.plan.loopback_time)?;
            let mut row = Row::new(Group::Limits, format!("loopback request/response floor, 100 B each way, {} req/s", report::thousands(rate)));
            row.rec_s = Some(rate as f64);
            row.result = Some(format!("server thread CPU {us:.1} µs/request (one read + one write, blocking)"));
            self.push(row)?;
        }

        self.progress.begin("disk sequential write + fsync");
        let dir = match &self.broker {
            Broker::Ours(b) => b.data_dir.clone(),
            Broker::External { .. } => self.root.path().to_path_buf(),
        };
        let (cached, synced) = limits::disk_write(&dir, self.plan.disk_bytes)?;
        self.disk_mb_s = Some(synced.mb_per_s());
        let mut row = Row::new(Group::Limits, format!("disk write+fsync, {} MiB in data dir", synced.bytes >> 20));
        row.mb_s = Some(synced.mb_per_s());
        row.of_disk = Some(1.0);
        row.result = Some(format!("write phase alone (page cache): {:.0} MB/s", cached.mb_per_s()));
        self.push(row)
    }

    /// Producer runs over sizes × partitions × compression × acks; each acks=1 data set is
    /// then read back by a fresh consumer. Topics are deleted once measured.
    fn matrix(&mut self) -> Result<()> {
        let report_produce = self.wants(Group::Produce);
        let consume = self.wants(Group::Consume);
        for size in SIZES {
            for partitions in PARTITIONS {
                for compression in COMPRESSION {
                    for acks in ACKS {
                        let label = produce_label(size, acks, partitions, compression);
                        if !self.selected(&label) || !(report_produce || (consume && acks == "1")) {
                            continue;
                        }
                        let topic = format!("bench-{size}-p{partitions}-{compression}-acks{acks}");
                        let records = self.plan.records_for(size);
                        let config = clients::producer_config(self.broker.addr(), acks, compression, &[]);
                        let target = (acks == "1" && size == 100 && partitions == 1 && compression == "none")
                            .then_some(|r: &Row| Target { text: "≥ 1,000,000 rec/s".into(), met: r.rec_s.map(|v| v >= 1e6) });
                        let tp = self.produce_step(&label, &topic, partitions, size, records, config, report_produce, target)?;
                        if consume && acks == "1" {
                            let label = consume_label(size, partitions, compression);
                            let target = (size == 100 && partitions == 1 && compression == "none")
                                .then_some(|r: &Row| Target { text: "≥ 2,000,000 rec/s".into(), met: r.rec_s.map(|v| v >= 2e6) });
                            self.consume_step(Group::Consume, &label, &topic, partitions, tp.records, target)?;
                        }
                        clients::delete_topic(self.broker.addr(), &topic)?;
                    }
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn produce_step(
        &mut self,
        label: &str,
        topic: &str,
        partitions: i32,
        size: usize,
        records: u64,
        config: rdkafka::ClientConfig,
        report: bool,
        target: Option<impl Fn(&Row) -> Target>,
    ) -> Result<Throughput> {
        if report {
            self.progress.begin(label);
        }
        clients::create_topic(self.broker.addr(), topic, partitions, &[])?;
        let run = ProduceRun { config, topic, partitions, size, records, max_time: self.plan.max_time };
        let meter = self.meter();
        let tp = throughput::produce(&run, &self.payloads).with_context(|| label.to_string())?;
        let usage = meter.stop();
        if report {
            let mut row = Row::new(Group::Produce, label);
            row.rec_s = Some(tp.records_per_s());
            row.mb_s = Some(tp.mb_per_s());
            row.usage = Some(usage);
            self.fractions(&mut row, true);
            row.target = target.map(|t| t(&row));
            self.push(row)?;
        }
        Ok(tp)
    }

    fn consume_step(
        &mut self,
        group: Group,
        label: &str,
        topic: &str,
        partitions: i32,
        expected: u64,
        target: Option<impl Fn(&Row) -> Target>,
    ) -> Result<()> {
        self.progress.begin(label);
        let config = clients::consumer_config(self.broker.addr(), &[]);
        let meter = self.meter();
        let max_time = self.plan.max_time * 3 + Duration::from_secs(30);
        let tp = throughput::consume(&config, topic, partitions, expected, max_time).with_context(|| label.to_string())?;
        let usage = meter.stop();
        let mut row = Row::new(group, label);
        row.rec_s = Some(tp.records_per_s());
        row.mb_s = Some(tp.mb_per_s());
        row.usage = Some(usage);
        row.requests = tp.requests;
        if let Some(n) = tp.requests {
            row.result = Some(format!("{} requests", report::thousands(n)));
        }
        self.fractions(&mut row, false);
        row.target = target.map(|t| t(&row));
        self.push(row)
    }

    /// 1 MB records, 1 partition, uncompressed, acks=1: produce, then consume.
    fn large(&mut self) -> Result<()> {
        let topic = "bench-1mb";
        let max = "10485760";
        let config = clients::producer_config(
            self.broker.addr(),
            "1",
            "none",
            &[("message.max.bytes", max), ("batch.size", "8000000")],
        );
        let records = self.plan.large_records;
        let label = "1 MB records, acks=1, p=1, none";
        self.progress.begin(&format!("produce {label}"));
        clients::create_topic(self.broker.addr(), topic, 1, &[("max.message.bytes", max)])?;
        let run = ProduceRun { config, topic, partitions: 1, size: LARGE, records, max_time: self.plan.max_time };
        let meter = self.meter();
        let tp = throughput::produce(&run, &self.payloads)?;
        let usage = meter.stop();
        let target = |mb: f64, loopback: Option<f64>| Target {
            text: "≥ 50% of loopback".into(),
            met: loopback.map(|l| mb >= 0.5 * l),
        };
        let mut row = Row::new(Group::Large, format!("produce {label}"));
        row.rec_s = Some(tp.records_per_s());
        row.mb_s = Some(tp.mb_per_s());
        row.usage = Some(usage);
        row.target = Some(target(tp.mb_per_s(), self.loopback_mb_s));
        self.fractions(&mut row, true);
        self.push(row)?;

        let loopback = self.loopback_mb_s;
        let consume_target = Some(move |r: &Row| target(r.mb_s.unwrap_or(0.0), loopback));
        self.consume_step(Group::Large, &format!("consume {label}"), topic, 1, tp.records, consume_target)?;
        clients::delete_topic(self.broker.addr(), topic)
    }

    /// Kafka's own `kafka-producer-perf-test` (the Java producer with its defaults:
    /// acks=all, idempotent) against the broker under test.
    fn perftest(&mut self) -> Result<()> {
        let records = self.plan.records_small;
        let label = format!("kafka-producer-perf-test, {} × 100 B, Java producer defaults", report::thousands(records));
        self.progress.begin(&label);
        let topic = "bench-perftest";
        clients::create_topic(self.broker.addr(), topic, 1, &[])?;
        let meter = self.meter();
        let p = perftest::run(self.broker.addr(), topic, records, 100, &[])?;
        let usage = meter.stop();
        let mut row = Row::new(Group::Perftest, label);
        row.rec_s = Some(p.records_per_s);
        row.mb_s = Some(p.mb_per_s);
        row.result = Some(format!("producer latency ms p50 {} / p99 {} / p99.9 {} / max {}", p.p50, p.p99, p.p999, p.max));
        row.usage = Some(usage);
        self.push(row)?;
        clients::delete_topic(self.broker.addr(), topic)
    }

    fn idle(&mut self) -> Result<()> {
        if let Kind::Runnel { bin } = &self.kind {
            if !bin.exists() {
                bail!("the idle checks start their own brokers and need {} (or --runnel-bin)", bin.display());
            }
        }
        let n = self.plan.idle_partitions;
        self.progress.begin(&format!("{n} idle partitions on a fresh broker"));
        let m = idle::idle_memory(&self.kind, &self.root.path().join("idle"), n)?;
        let mut row = Row::new(Group::Idle, format!("{n} empty partitions, fresh broker"));
        row.result = Some(format!(
            "RSS {:.0} MB (empty broker {:.0} MB), {} fds, clean stop {:.1} s",
            m.rss as f64 / 1e6,
            m.rss_empty as f64 / 1e6,
            m.fds,
            m.stop.as_secs_f64()
        ));
        row.usage = Some(procstat::RunUsage {
            broker: Some(procstat::Usage { cpu_s: m.cpu_s, rss: m.rss, peak: m.peak }),
            client_cpu_s: 0.0,
        });
        row.target = Some(Target { text: "RSS ≤ 150 MB".into(), met: Some(m.rss as f64 <= 150e6) });
        self.push(row)?;

        let segs = self.plan.idle_segments;
        self.progress.begin(&format!("restart with {n} partitions × {segs} segments"));
        let target = |met| Some(Target { text: "Metadata ≤ 2 s".into(), met: Some(met) });
        let row = match idle::restart_with_segments(&self.kind, &self.root.path().join("restart"), n, segs) {
            Ok(r) => {
                let mut row = Row::new(Group::Idle, format!("restart, {n} partitions × {segs} segments ({} files)", r.segments));
                row.result = Some(format!(
                    "Metadata after {:.2} s (listening {:.2} s); {} fds before",
                    r.metadata.as_secs_f64(),
                    r.listening.as_secs_f64(),
                    r.fds
                ));
                row.usage = Some(procstat::RunUsage {
                    broker: Some(procstat::Usage { cpu_s: r.cpu_s, rss: r.rss, peak: r.peak }),
                    client_cpu_s: 0.0,
                });
                row.target = target(r.metadata.as_secs_f64() <= 2.0);
                row
            }
            // A broker that cannot hold the segments is a result, not a broken benchmark.
            Err(e) => {
                let mut row = Row::new(Group::Idle, format!("restart, {n} partitions × {segs} segments"));
                row.result = Some(format!("FAILED: {e:#}"));
                row.target = target(false);
                row
            }
        };
        self.push(row)
    }

    /// Appends the markdown table under a heading with date, commit, command and machine.
    fn record(&self, machine: &str, load_at_start: &str) -> Result<PathBuf> {
        let path = results_path(&self.args);
        let date = command_out("date", &["-u"]).unwrap_or_else(|| "unknown date".into());
        let commit = commit();
        let cmd: Vec<String> = std::env::args().collect();
        let mut text = String::new();
        if !path.exists() {
            text.push_str("# Benchmark results\n\nAppended by `runnel-bench` (see README.md in this folder for what each row means).\n");
        }
        text.push_str(&format!("\n## {date} — {commit}{}\n\n", if self.args.quick { " (quick)" } else { "" }));
        text.push_str(&format!("- command: `cargo build --release -p runnel -p runnel-bench && {}`\n", shell_join(&cmd)));
        text.push_str(&format!("- machine: {machine}\n"));
        let load: Vec<&str> = load_at_start.split_whitespace().take(3).collect();
        text.push_str(&format!("- load average at start (1/5/15 min): {} — other work shares these cores\n", load.join(" ")));
        let broker = match (&self.kind, self.args.brokers.is_some()) {
            (_, true) => "external (--brokers)".to_string(),
            (Kind::Runnel { .. }, false) => "Runnel: target/release/runnel, started by the benchmark".to_string(),
            (Kind::ApacheKafka, false) => format!(
                "Apache Kafka {}: scripts/apache-kafka (one KRaft node, kafka-server-start.sh's JVM options), started by the benchmark",
                perftest::kafka_version()
            ),
        };
        text.push_str(&format!("- broker: {broker}\n\n"));
        text.push_str(&report::markdown_table(&self.rows));
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        f.write_all(text.as_bytes())?;
        Ok(path)
    }
}

fn produce_label(size: usize, acks: &str, partitions: i32, compression: &str) -> String {
    format!("{} acks={acks} p={partitions} {compression}", size_label(size))
}

fn consume_label(size: usize, partitions: i32, compression: &str) -> String {
    format!("{} p={partitions} {compression}, from offset 0", size_label(size))
}

fn size_label(size: usize) -> String {
    match size {
        s if s >= 1_000_000 => format!("{} MB", s / 1_000_000),
        s if s >= 1_000 => format!("{} KB", s / 1_000),
        s => format!("{s} B"),
    }
}

fn command_out(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `git rev-parse --short HEAD`, with "+ uncommitted changes" when the tree differs.
fn commit() -> String {
    let Some(head) = command_out("git", &["rev-parse", "--short", "HEAD"]) else {
        return "unknown commit".into();
    };
    let dirty = std::process::Command::new("git")
        .args(["diff-index", "--quiet", "HEAD", "--"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .map(|s| !s.success())
        .unwrap_or(false);
    if dirty {
        format!("{head} + uncommitted changes")
    } else {
        head
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |m| m.trim().to_string());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<u64>().ok()))
        .map_or("? GB".to_string(), |kb| format!("{:.0} GB", kb as f64 / 1024.0 / 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs (nproc), {model}, {mem} RAM, Linux {}", kernel.trim())
}

fn shell_join(args: &[String]) -> String {
    let mut parts = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let a = if i == 0 {
            // Show the binary as the documented path.
            Path::new(a).file_name().map_or(a.clone(), |f| format!("target/release/{}", f.to_string_lossy()))
        } else {
            a.clone()
        };
        if a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,".contains(c)) {
            parts.push(a);
        } else {
            parts.push(format!("'{}'", a.replace('\'', "'\\''")));
        }
    }
    parts.join(" ")
}
