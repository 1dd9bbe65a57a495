//! The `cluster` group: three Runnel nodes on this machine, each a controller and a broker
//! (as `scripts/cluster` runs them), and a topic with replication factor 3. It measures what
//! replication costs (acks=all throughput and end-to-end latency through the ISR) and what a
//! failover costs: a producer sends at a fixed rate while the partition's leader is killed
//! with SIGKILL, and the row reports the longest time without an acknowledgement and checks,
//! by reading the partition back, that no acknowledged record was lost.
//!
//! The three nodes share the machine's cores with each other and with the clients, so the
//! figures are those of a cluster on one host, not of three machines.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::broker::{first_line, parse_listener, Kind};
use crate::procstat::cpu_seconds;
use crate::report::{self, Group, Row, Target};
use crate::throughput::{self, send, ProduceRun};
use crate::{clients, latency, Bench};

/// Nodes in the cluster, and so the replication factor of its topics.
pub const NODES: i32 = 3;

struct Node {
    id: i32,
    addr: String,
    child: Child,
}

/// Three `runnel broker` processes forming one cluster. Dropping it kills them.
pub struct Cluster {
    nodes: Vec<Node>,
    log_dir: PathBuf,
}

impl Cluster {
    /// Starts nodes 1..=3 under `root` (data in `root/node-N`, logs in `root/node-N.log`) and
    /// waits until each has printed its startup line (the quorum formed, the node registered).
    pub fn start(bin: &Path, root: &Path) -> Result<Cluster> {
        std::fs::create_dir_all(root)?;
        // Free controller ports, known before any node starts (each node is given the quorum).
        let ports: Vec<u16> = (0..NODES)
            .map(|_| TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()))
            .collect::<std::io::Result<_>>()?;
        let quorum: Vec<String> = ports.iter().enumerate().map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1)).collect();
        let mut waiting = Vec::new();
        let mut nodes = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let id = i as i32 + 1;
            let log = std::fs::File::create(root.join(format!("node-{id}.log")))?;
            let mut child = Command::new(bin)
                .args(["broker", "--node-id", &id.to_string(), "--listen", "127.0.0.1:0", "--admin-listen", "off"])
                .arg("--data-dir")
                .arg(root.join(format!("node-{id}")))
                .args(["--controller-listen", &format!("127.0.0.1:{port}"), "--controller-quorum", &quorum.join(",")])
                .env("RUST_LOG", std::env::var("RUNNEL_BENCH_BROKER_LOG").unwrap_or_else(|_| "warn".into()))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log))
                .spawn()
                .with_context(|| format!("cannot start {} (cargo build --release -p runnel)", bin.display()))?;
            waiting.push(first_line(&mut child, parse_listener));
            nodes.push(Node { id, addr: String::new(), child });
        }
        let mut cluster = Cluster { nodes, log_dir: root.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(120);
        for (node, rx) in cluster.nodes.iter_mut().zip(waiting) {
            let left = deadline.saturating_duration_since(Instant::now());
            node.addr = rx.recv_timeout(left).map_err(|_| anyhow!("node {} printed no startup line within 120 s", node.id))?;
        }
        Ok(cluster)
    }

    /// Every live node's address, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.nodes.iter().map(|n| n.addr.as_str()).collect::<Vec<_>>().join(",")
    }

    /// The CPU seconds all nodes have used so far.
    pub fn cpu_seconds(&self) -> f64 {
        self.nodes.iter().filter_map(|n| cpu_seconds(n.child.id())).sum()
    }

    /// SIGKILL to node `id`, which leaves the cluster (its data stays on disk).
    fn kill9(&mut self, id: i32) -> Result<()> {
        let i = self.nodes.iter().position(|n| n.id == id).ok_or_else(|| anyhow!("no node {id}"))?;
        let mut node = self.nodes.remove(i);
        node.child.kill()?;
        node.child.wait()?;
        Ok(())
    }

    /// Fails, with where the logs are, if a node has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for n in &mut self.nodes {
            if let Some(status) = n.child.try_wait()? {
                bail!("cluster node {} exited ({status}); see {}/node-{}.log", n.id, self.log_dir.display(), n.id);
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
    }
}

/// What the failover run saw.
pub struct Failover {
    pub acked: u64,
    pub failed: u64,
    /// Acknowledged records not found when the partition was read back.
    pub lost: u64,
    /// The longest time without an acknowledgement, from the kill on.
    pub longest_gap: Duration,
    pub killed: i32,
}

/// Success reports with their arrival times; failures counted.
#[derive(Default)]
struct Acks {
    acked: Mutex<Vec<(u64, Instant)>>,
    failed: Mutex<u64>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let id = m.payload().and_then(|p| p.get(..8)).map_or(u64::MAX, |b| u64::from_le_bytes(b.try_into().unwrap()));
                self.acked.lock().unwrap().push((id, Instant::now()));
            }
            Err(_) => *self.failed.lock().unwrap() += 1,
        }
    }
}

/// Sends 100 B records numbered from 0 at `rate` records/s to partition 0 of `topic`
/// (acks=all, idempotent) for `before + after`; at `before` kills the partition's leader.
/// Then reads the partition back from the surviving nodes and counts the acknowledged
/// records that are missing.
pub fn failover(cluster: &mut Cluster, topic: &str, rate: u64, before: Duration, after: Duration) -> Result<Failover> {
    let producer: BaseProducer<Acks> = clients::producer_config(
        &cluster.bootstrap(),
        "all",
        "none",
        &[("linger.ms", "1"), ("enable.idempotence", "true"), ("delivery.report.only.error", "false"), ("message.timeout.ms", "60000")],
    )
    .create_with_context(Acks::default())?;
    let start = Instant::now();
    let mut value = [b'x'; 100];
    let mut i = 0u64;
    let mut killed = None;
    while start.elapsed() < before + after {
        if killed.is_none() && start.elapsed() >= before {
            let leader = leader_of(&cluster.bootstrap(), topic)?;
            cluster.kill9(leader)?;
            killed = Some((leader, Instant::now()));
        }
        while start.elapsed().as_secs_f64() * rate as f64 >= i as f64 {
            value[..8].copy_from_slice(&i.to_le_bytes());
            let rec = BaseRecord::to(topic).payload(&value[..]).partition(0);
            send(&producer, rec)?;
            i += 1;
        }
        producer.poll(Duration::from_millis(1));
    }
    producer.flush(Duration::from_secs(90))?;
    let (killed, killed_at) = killed.ok_or_else(|| anyhow!("the run ended before the kill"))?;
    let ctx = producer.context();
    let acked = std::mem::take(&mut *ctx.acked.lock().unwrap());
    let failed = *ctx.failed.lock().unwrap();
    // The longest stretch without an acknowledgement, starting at the kill.
    let mut times: Vec<Instant> = acked.iter().map(|a| a.1).filter(|t| *t >= killed_at).collect();
    times.sort();
    let longest_gap = std::iter::once(killed_at).chain(times.iter().copied()).zip(times.iter()).map(|(a, b)| *b - a).max().unwrap_or_default();
    let found = read_ids(&cluster.bootstrap(), topic, acked.len())?;
    let lost = acked.iter().filter(|(id, _)| !found.contains(id)).count() as u64;
    Ok(Failover { acked: acked.len() as u64, failed, lost, longest_gap, killed })
}

/// The node id leading partition 0 of `topic`.
fn leader_of(brokers: &str, topic: &str) -> Result<i32> {
    let c: BaseConsumer = clients::base(brokers).create()?;
    let md = c.fetch_metadata(Some(topic), clients::TIMEOUT)?;
    let t = md.topics().iter().find(|t| t.name() == topic).ok_or_else(|| anyhow!("{topic} not in metadata"))?;
    let p = t.partitions().iter().find(|p| p.id() == 0).ok_or_else(|| anyhow!("{topic} has no partition 0"))?;
    if p.leader() < 0 {
        bail!("{topic}-0 has no leader");
    }
    Ok(p.leader())
}

/// The record numbers in partition 0 of `topic`, read from offset 0 until `expected` have
/// arrived or nothing more comes for 5 s.
fn read_ids(brokers: &str, topic: &str, expected: usize) -> Result<HashSet<u64>> {
    let consumer: BaseConsumer = clients::consumer_config(brokers, &[]).create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(0))?;
    consumer.assign(&tpl)?;
    let mut ids = HashSet::new();
    let mut last_new = Instant::now();
    while ids.len() < expected && last_new.elapsed() < Duration::from_secs(5) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if let Some(b) = m.payload().and_then(|p| p.get(..8)) {
                    ids.insert(u64::from_le_bytes(b.try_into().unwrap()));
                    last_new = Instant::now();
                }
            }
            Some(Err(e)) => bail!("reading {topic} back: {e}"),
            None => {}
        }
    }
    Ok(ids)
}

impl Bench {
    /// Three nodes, replication factor 3: produce 100 B and 1 MB with acks=all, end-to-end latency at
    /// 10,000 rec/s, then the partition leader killed (SIGKILL) while a producer sends
    /// 5,000 rec/s, with the longest wait for an acknowledgement and the acknowledged
    /// records found afterwards.
    pub(crate) fn cluster(&mut self) -> Result<()> {
        let Kind::Runnel { bin } = &self.kind else { return Ok(()) };
        let mut c = Cluster::start(bin, &self.root.path().join("cluster"))?;
        let bootstrap = c.bootstrap();
        let rf = NODES;

        let label = format!("{rf} nodes, RF={rf}: produce 100 B, acks=all, p=1, none");
        clients::create_replicated_topic(&bootstrap, "bench-cluster-produce", 1, rf, &[])?;
        let config = clients::producer_config(&bootstrap, "all", "none", &[]);
        let run = ProduceRun { config, topic: "bench-cluster-produce", partitions: 1, size: 100, records: self.plan.records_small, max_time: self.plan.max_time };
        let mut row = self.cluster_produce(&mut c, label, &run)?;
        row.target = Some(self.half_of_single_broker(row.rec_s.unwrap_or(0.0)));
        self.push(row)?;

        let label = format!("{rf} nodes, RF={rf}: produce 1 MB, acks=all, p=1, none");
        let max = "10485760";
        clients::create_replicated_topic(&bootstrap, "bench-cluster-1mb", 1, rf, &[("max.message.bytes", max)])?;
        let config = clients::producer_config(&bootstrap, "all", "none", &[("message.max.bytes", max), ("batch.size", "8000000")]);
        let records = self.plan.large_records;
        let run = ProduceRun { config, topic: "bench-cluster-1mb", partitions: 1, size: crate::LARGE, records, max_time: self.plan.max_time };
        let row = self.cluster_produce(&mut c, label, &run)?;
        self.push(row)?;

        let label = format!("{rf} nodes, RF={rf}: 100 B at 10,000 rec/s, acks=all, linger.ms=0, p=1");
        self.progress.begin(&format!("latency {label}"));
        clients::create_replicated_topic(&bootstrap, "bench-cluster-latency", 1, rf, &[])?;
        let (cpu0, t0) = (c.cpu_seconds(), Instant::now());
        let l = latency::run(&bootstrap, "bench-cluster-latency", 10_000, self.plan.latency_time, 0)?;
        let mut row = Row::new(Group::Cluster, label);
        row.rec_s = Some(l.sent_rate);
        row.latency = Some(l);
        row.requests = Some(l.requests);
        row.result = Some(format!("{} samples; {}", l.samples, cluster_cpu(c.cpu_seconds() - cpu0, t0)));
        c.check_alive()?;
        self.push(row)?;

        let label = format!("{rf} nodes, RF={rf}: leader killed (SIGKILL) while producing 5,000 rec/s, acks=all, idempotent");
        self.progress.begin(&label);
        clients::create_replicated_topic(&bootstrap, "bench-cluster-failover", 1, rf, &[])?;
        let before = Duration::from_secs(3);
        let f = failover(&mut c, "bench-cluster-failover", 5_000, before, self.plan.latency_time)?;
        let mut row = Row::new(Group::Cluster, label);
        row.result = Some(format!(
            "node {} killed; longest wait for an ack {} ms; {} acked, {} lost, {} failed",
            f.killed,
            report::thousands(f.longest_gap.as_millis() as u64),
            report::thousands(f.acked),
            f.lost,
            f.failed
        ));
        row.target = Some(Target { text: "no acknowledged record lost".into(), met: Some(f.lost == 0) });
        self.push(row)
    }
}

impl Bench {
    /// One producer throughput run against the cluster, as a row with the cluster's CPU.
    fn cluster_produce(&mut self, c: &mut Cluster, label: String, run: &ProduceRun<'_>) -> Result<Row> {
        self.progress.begin(&label);
        let (cpu0, t0) = (c.cpu_seconds(), Instant::now());
        let tp = throughput::produce(run, &self.payloads).with_context(|| label.clone())?;
        let mut row = Row::new(Group::Cluster, label);
        row.rec_s = Some(tp.records_per_s());
        row.mb_s = Some(tp.mb_per_s());
        row.result = Some(cluster_cpu(c.cpu_seconds() - cpu0, t0));
        c.check_alive()?;
        Ok(row)
    }

    /// The target for the acks=all RF=3 row: at least half of the single-broker
    /// acks=1 figure of the same run (judged only when the produce group ran too).
    fn half_of_single_broker(&self, rec_s: f64) -> Target {
        let single = crate::produce_label(100, "1", 1, "none");
        let reference = self.rows.iter().find(|r| r.group == Group::Produce && r.case == single).and_then(|r| r.rec_s);
        match reference {
            Some(r) => Target { text: format!("≥ half of 1 broker acks=1 ({})", report::thousands(r as u64)), met: Some(rec_s >= r / 2.0) },
            None => Target { text: "≥ half of 1 broker acks=1 (not in this run)".into(), met: None },
        }
    }
}

/// The cluster's CPU over a run, in cores.
fn cluster_cpu(cpu_s: f64, since: Instant) -> String {
    format!("cluster CPU {:.2} cores", cpu_s / since.elapsed().as_secs_f64())
}
