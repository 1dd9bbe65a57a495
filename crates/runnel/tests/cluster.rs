//! Cluster mode with three real broker processes on 127.0.0.1: the metadata quorum forms
//! in any start order; a topic created through one broker is committed by a majority and
//! seen by all; its partitions are spread over the live brokers and clients produce and
//! consume through any of them; DescribeCluster and Metadata list the live brokers and
//! the controller; a killed broker is fenced, comes back and catches up; two of three
//! down, nothing more is committed. Replication (`replication.rs`): RF 3 partitions, acks=all,
//! identical replicas, a killed leader losing no acknowledged record, min.insync.replicas.
//! Groups (`groups.rs`): a replicated `__consumer_offsets`, a group whose coordinator is
//! killed carries on with the next one, its committed offsets intact.
//! Failover (`failover.rs`): kill -9 of the active controller and a rolling restart of all
//! three under acks=all load, no acknowledged record lost, duplicated or reordered.
//! Network partition (`network_partition.rs`): the brokers in three network namespaces
//! (root only; skipped elsewhere), a leader cut off acknowledges nothing, the majority
//! elects another, and on healing the old leader is cut back to the new leader's log.
//! Pipelining (`pipelining.rs`): one connection's acks=all produces wait for the ISR
//! together, answered in request order.
//! Security (`security.rs`): SCRAM users replicated to every broker, listeners registered.
//! ACLs (`acls.rs`): the authorizer on, ACLs created and deleted through different brokers
//! take effect on all; followers' fetches authorized, so acks=all keeps an ISR of 3.
//! Configs (`configs.rs`): dynamic broker and group configs altered through one broker are
//! described by the others.
//! Transactions (`transactions.rs`): a replicated `__transaction_state` whose partition
//! leaders coordinate, markers to partitions led by other brokers (WriteTxnMarkers), a
//! transaction carried on after its coordinator is killed with SIGKILL.

mod common;
#[path = "cluster/acls.rs"]
mod acls;
#[path = "cluster/configs.rs"]
mod configs;
#[path = "cluster/failover.rs"]
mod failover;
#[path = "cluster/groups.rs"]
mod groups;
#[path = "cluster/network_partition.rs"]
mod network_partition;
#[path = "cluster/pipelining.rs"]
mod pipelining;
#[path = "cluster/replication.rs"]
mod replication;
#[path = "cluster/security.rs"]
mod security;
#[path = "cluster/transactions.rs"]
mod transactions;

use std::time::{Duration, Instant};

use common::kafka::{admin_opts, block_on, TIMEOUT};
use common::wire;
use common::Broker;
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, MetadataResponse,
};
use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

struct Cluster {
    _dir: tempfile::TempDir,
    nodes: Vec<Broker>,
}

/// Three nodes started in the order `order` (node ids 1–3).
fn start_cluster(order: [usize; 3]) -> Cluster {
    start_cluster_with(order, "")
}

/// [`start_cluster`] with more broker settings (`name=value,…`). The controller ports are
/// found free and then bound by the nodes, so another process can take one in between
/// (the tests run side by side): a cluster whose node could not start is started again,
/// on new ports, up to three times.
fn start_cluster_with(order: [usize; 3], settings: &str) -> Cluster {
    for attempt in 1..=3 {
        let hosts: Vec<Host> = (0..3)
            .map(|_| Host {
                ip: "127.0.0.1".to_string(),
                controller_port: std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
                wrapper: Vec::new(),
            })
            .collect();
        match try_start_cluster_on(order, settings, &hosts) {
            Ok(c) => return c,
            Err(e) if attempt < 3 => eprintln!("a node did not start ({e}; a port taken meanwhile?): starting the cluster again"),
            Err(e) => panic!("a node did not start three times: {e}"),
        }
    }
    unreachable!()
}

/// Where a node runs: the address its listeners bind (the Kafka listener on a free port),
/// its controller listener's port, and the command its process runs under (none, or
/// `ip netns exec NS`: a network namespace of its own).
struct Host {
    ip: String,
    controller_port: u16,
    wrapper: Vec<String>,
}

/// [`start_cluster_with`] on the given hosts, node `i + 1` on `hosts[i]`.
fn start_cluster_on(order: [usize; 3], settings: &str, hosts: &[Host]) -> Cluster {
    try_start_cluster_on(order, settings, hosts).unwrap_or_else(|e| panic!("broker did not print its startup line: {e}"))
}

/// [`start_cluster_on`], or why a node did not start (the nodes that did are stopped).
fn try_start_cluster_on(order: [usize; 3], settings: &str, hosts: &[Host]) -> Result<Cluster, std::sync::mpsc::RecvTimeoutError> {
    let dir = tempfile::tempdir().unwrap();
    let quorum = hosts.iter().enumerate().map(|(i, h)| format!("{}@{}:{}", i + 1, h.ip, h.controller_port)).collect::<Vec<_>>().join(",");
    let mut starting: Vec<Option<common::Starting>> = (0..3).map(|_| None).collect();
    for &i in &order {
        let data = dir.path().join(format!("node-{}", i + 1));
        // Kafka's `listeners` among the settings replaces --listen.
        let listen = match settings.split(',').any(|kv| kv.starts_with("listeners=")) {
            true => Vec::new(),
            false => vec!["--listen".to_string(), format!("{}:0", hosts[i].ip)],
        };
        let args = [
            "--node-id".to_string(),
            (i + 1).to_string(),
            "--controller-listen".to_string(),
            format!("{}:{}", hosts[i].ip, hosts[i].controller_port),
            "--controller-quorum".to_string(),
            quorum.clone(),
            "-o".to_string(),
            // Five offsets partitions, not Kafka's 50: three debug brokers on two cores.
            format!(
                "broker.session.timeout.ms=2000,broker.heartbeat.interval.ms=300,offsets.topic.num.partitions=5{}{settings}",
                if settings.is_empty() { "" } else { "," }
            ),
        ];
        let args: Vec<&str> = listen.iter().chain(&args).map(String::as_str).collect();
        let wrapper: Vec<&str> = hosts[i].wrapper.iter().map(String::as_str).collect();
        starting[i] = Some(Broker::spawn_wrapped(&wrapper, &data, &args));
        std::thread::sleep(Duration::from_millis(300));
    }
    // Every node is waited for (a failed one's process is gone; the others stop when
    // dropped).
    let started: Vec<_> = starting.into_iter().map(|s| s.unwrap().wait_for_start()).collect();
    let nodes = started.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(Cluster { _dir: dir, nodes })
}

fn metadata(addr: &str) -> MetadataResponse {
    let mut s = wire::connect(addr);
    wire::call(&mut s, ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(None))
}

fn describe_cluster(addr: &str) -> DescribeClusterResponse {
    let mut s = wire::connect(addr);
    wire::call(&mut s, ApiKey::DescribeCluster, 0, &DescribeClusterRequest::default())
}

/// The coordinator of `key` (key type 0: a group, 1: a transactional id) as `addr` answers
/// FindCoordinator (v3): node id, or the error code as a negative number.
fn find_coordinator(addr: &str, key_type: i8, key: &str) -> i32 {
    let req = FindCoordinatorRequest::default().with_key(wire::sb(key)).with_key_type(key_type);
    let r: FindCoordinatorResponse = wire::call(&mut wire::connect(addr), ApiKey::FindCoordinator, 3, &req);
    if r.error_code != 0 {
        return -i32::from(r.error_code);
    }
    r.node_id.0
}

fn broker_ids(m: &MetadataResponse) -> Vec<i32> {
    let mut ids: Vec<i32> = m.brokers.iter().map(|b| b.node_id.0).collect();
    ids.sort();
    ids
}

/// Leaders of `topic`'s partitions as `addr` reports them.
fn leaders(addr: &str, topic: &str) -> Vec<i32> {
    let m = metadata(addr);
    let t = m.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic));
    let Some(t) = t else { return Vec::new() };
    let mut ps: Vec<(i32, i32)> = t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect();
    ps.sort();
    ps.into_iter().map(|(_, l)| l).collect()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap).set("broker.address.family", "v4");
    c
}

/// The values of up to `n` records read from the start of partitions `0..partitions` of
/// `topic` by a consumer of `config` in `group` (nothing committed), sorted; fewer if they
/// do not come within [`TIMEOUT`].
fn read_values(mut config: ClientConfig, group: &str, topic: &str, partitions: i32, n: usize) -> Vec<String> {
    let consumer: BaseConsumer =
        config.set("group.id", group).set("enable.auto.commit", "false").set("auto.offset.reset", "earliest").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while got.len() < n && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            got.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
        }
    }
    got.sort();
    got
}

fn create(admin: &AdminClient<DefaultClientContext>, name: &str, partitions: i32, rf: i32) -> Result<(), RDKafkaErrorCode> {
    create_with(admin, name, partitions, rf, &[])
}

fn create_with(admin: &AdminClient<DefaultClientContext>, name: &str, partitions: i32, rf: i32, configs: &[(&str, &str)]) -> Result<(), RDKafkaErrorCode> {
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(rf));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    match block_on(admin.create_topics([&t], &admin_opts())).expect("create_topics request").remove(0) {
        Ok(_) => Ok(()),
        Err((_, code)) => Err(code),
    }
}

#[test]
fn three_brokers_share_one_metadata_quorum() {
    let mut c = start_cluster([2, 0, 1]);
    let addrs: Vec<String> = c.nodes.iter().map(|b| b.addr.clone()).collect();

    // Every broker lists all three, the same controller, and the same cluster id.
    wait_until("all three brokers registered", || addrs.iter().all(|a| broker_ids(&metadata(a)) == [1, 2, 3]));
    let first = metadata(&addrs[0]);
    assert!((1..=3).contains(&first.controller_id.0), "controller id {:?}", first.controller_id);
    for a in &addrs {
        let m = metadata(a);
        assert_eq!(m.cluster_id, first.cluster_id);
        let d = describe_cluster(a);
        assert_eq!(d.error_code, 0);
        assert_eq!(d.cluster_id, *first.cluster_id.as_ref().unwrap());
        let mut ids: Vec<i32> = d.brokers.iter().map(|b| b.broker_id.0).collect();
        ids.sort();
        assert_eq!(ids, [1, 2, 3]);
        assert!((1..=3).contains(&d.controller_id.0));
    }

    // A topic created through node 2 only: committed, seen by all, spread over all three.
    let admin2: AdminClient<DefaultClientContext> = client(&addrs[1]).create().unwrap();
    create(&admin2, "spread", 3, 1).expect("create through node 2");
    // Answered once node 2 applied it; the others follow.
    let spread = leaders(&addrs[1], "spread");
    let mut distinct = spread.clone();
    distinct.sort();
    assert_eq!(distinct, [1, 2, 3], "partitions not spread over the brokers: {spread:?}");
    for a in &addrs {
        wait_until("every broker sees the topic", || leaders(a, "spread") == spread);
    }
    // The image decides everywhere: the name is taken; RF 4 is more than the live brokers.
    let admin1: AdminClient<DefaultClientContext> = client(&addrs[0]).create().unwrap();
    assert_eq!(create(&admin1, "spread", 1, 1), Err(RDKafkaErrorCode::TopicAlreadyExists));
    assert_eq!(create(&admin1, "rf4", 1, 4), Err(RDKafkaErrorCode::InvalidReplicationFactor));

    // Clients bootstrapped on all three produce to each partition's broker and read back.
    let all = addrs.join(",");
    let producer: FutureProducer = client(&all).set("acks", "all").set("message.timeout.ms", "15000").create().unwrap();
    for i in 0..30 {
        let key = format!("k{i}");
        let value = format!("v{i}");
        let r = FutureRecord::to("spread").partition(i % 3).key(&key).payload(&value);
        block_on(producer.send(r, TIMEOUT)).expect("produce");
    }
    let got = read_values(client(&all), "cluster-test", "spread", 3, 30);
    let mut want: Vec<String> = (0..30).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(got, want);

    // Node 3 is killed: it stops heartbeating and is fenced; the others carry on.
    c.nodes[2].kill9();
    wait_until("the killed broker fenced", || broker_ids(&metadata(&addrs[0])) == [1, 2]);
    wait_until("the fenced broker's partition has no leader", || leaders(&addrs[1], "spread").contains(&-1));
    // (A fresh admin client: librdkafka keeps sending CreateTopics to the controller it
    // knew, which may be the killed node.)
    let admin1: AdminClient<DefaultClientContext> = client(&addrs[0]).create().unwrap();
    create(&admin1, "while-down", 2, 1).expect("two of three still commit");
    let placed = leaders(&addrs[0], "while-down");
    assert!(placed.iter().all(|l| [1, 2].contains(l)), "placed on a fenced broker: {placed:?}");

    // It restarts on its data dir, registers again and catches up.
    c.nodes[2].restart();
    let back = c.nodes[2].addr.clone();
    wait_until("the restarted broker unfenced", || broker_ids(&metadata(&addrs[0])) == [1, 2, 3]);
    wait_until("the restarted broker caught up", || leaders(&back, "while-down") == placed);
    assert_eq!(leaders(&back, "spread"), spread);

    // Two of three down: nothing is committed.
    c.nodes[1].kill9();
    c.nodes[2].kill9();
    let lonely: AdminClient<DefaultClientContext> = client(&addrs[0]).create().unwrap();
    let t = NewTopic::new("lonely", 1, TopicReplication::Fixed(1));
    let opts = admin_opts().request_timeout(Some(Duration::from_secs(5))).operation_timeout(Some(Duration::from_secs(5)));
    let r = block_on(lonely.create_topics([&t], &opts));
    assert!(!matches!(r.as_deref(), Ok([Ok(_)])), "a minority committed a topic: {r:?}");
    assert!(leaders(&addrs[0], "lonely").is_empty());
}

/// Continuous acks=all load from an idempotent producer: record `n` (a sequence number,
/// as its value) goes to partition `n % partitions` of `topic`; only answered sends count.
struct Load {
    /// (partition, offset, sequence number) of every acknowledged record, in answer order.
    acked: std::sync::Arc<std::sync::Mutex<Vec<(i32, i64, u64)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Load {
    fn start(bootstrap: &str, topic: &str, partitions: i32) -> Load {
        Load::start_with(bootstrap, topic, partitions, &[])
    }

    /// [`Load::start`] with more producer settings.
    fn start_with(bootstrap: &str, topic: &str, partitions: i32, settings: &[(&str, &str)]) -> Load {
        Load::start_after(0, bootstrap, topic, partitions, settings)
    }

    /// [`Load::start_with`] whose first sequence number is `last + 1` (a load that follows
    /// another: its records come after that one's in every partition).
    fn start_after(last: u64, bootstrap: &str, topic: &str, partitions: i32, settings: &[(&str, &str)]) -> Load {
        let acked: std::sync::Arc<std::sync::Mutex<Vec<(i32, i64, u64)>>> = Default::default();
        let stop: std::sync::Arc<std::sync::atomic::AtomicBool> = Default::default();
        let (a, s, all, topic) = (acked.clone(), stop.clone(), bootstrap.to_string(), topic.to_string());
        let mut config = client(&all);
        config.set("acks", "all").set("enable.idempotence", "true").set("linger.ms", "2").set("message.timeout.ms", "120000");
        for (k, v) in settings {
            config.set(*k, *v);
        }
        let thread = std::thread::spawn(move || {
            let producer: FutureProducer = config.create().unwrap();
            let mut seq = last;
            while !s.load(std::sync::atomic::Ordering::SeqCst) {
                let sends: Vec<_> = (0..20)
                    .map(|_| {
                        seq += 1;
                        let v = seq.to_string();
                        let p = (seq % partitions as u64) as i32;
                        (seq, producer.send_result(FutureRecord::to(&topic).partition(p).key("k").payload(&v)).expect("queue"))
                    })
                    .collect();
                for (seq, f) in sends {
                    if let Ok(Ok(d)) = block_on(f) {
                        a.lock().unwrap().push((d.partition, d.offset, seq));
                    }
                }
            }
        });
        Load { acked, stop, thread }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until `n` more records are acknowledged.
    fn more(&self, n: usize, what: &str) {
        let at = self.count();
        wait_until(what, || self.count() >= at + n);
    }

    /// Stops the load; every acknowledged record.
    fn finish(self) -> Vec<(i32, i64, u64)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap();
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}
