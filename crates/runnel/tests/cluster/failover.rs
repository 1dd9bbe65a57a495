//! Failover of the metadata quorum and a rolling restart, under continuous acks=all load
//! from an idempotent producer (three real broker processes): kill -9 of the active
//! controller elects another and produce carries on; then each broker in turn is stopped
//! and started again. Afterwards every acknowledged record is at its acknowledged offset,
//! once, and each partition holds the producer's records in the order it sent them.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::replication::replica_bytes;
use super::{broker_ids, client, create_with, leaders, metadata, start_cluster, wait_until, Load};

pub(super) const TOPIC: &str = "rolling";
pub(super) const PARTITIONS: i32 = 3;

/// Each partition of `topic` as `addr` reports it: (leader, ISR sorted).
fn partitions(addr: &str, topic: &str) -> Vec<(i32, Vec<i32>)> {
    let m = metadata(addr);
    let Some(t) = m.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic)) else { return Vec::new() };
    let mut ps: Vec<_> = t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0, p.isr_nodes.iter().map(|b| b.0).collect::<Vec<i32>>())).collect();
    ps.sort();
    ps.into_iter()
        .map(|(_, l, mut isr)| {
            isr.sort();
            (l, isr)
        })
        .collect()
}

pub(super) fn fully_replicated(addr: &str) -> bool {
    let ps = partitions(addr, TOPIC);
    ps.len() == PARTITIONS as usize && ps.iter().all(|(l, isr)| *l > 0 && isr == &[1, 2, 3])
}

/// Every record of every partition, read from the start up to the high watermark:
/// partition → [(offset, sequence number)].
pub(super) fn read_back(bootstrap: &str) -> BTreeMap<i32, Vec<(i64, u64)>> {
    let consumer: BaseConsumer = client(bootstrap).set("group.id", "failover-check").set("enable.auto.commit", "false").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning).unwrap();
        let (_, high) = consumer.fetch_watermarks(TOPIC, p, Duration::from_secs(10)).expect("watermarks");
        ends.insert(p, high);
    }
    consumer.assign(&tpl).unwrap();
    let mut got: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
    let done = |got: &BTreeMap<i32, Vec<(i64, u64)>>| ends.iter().all(|(p, e)| *e == 0 || got.get(p).and_then(|v| v.last()).is_some_and(|(o, _)| o + 1 >= *e));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&got) {
        assert!(Instant::now() < deadline, "could not read back up to {ends:?}");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            let seq: u64 = std::str::from_utf8(m.payload().unwrap()).unwrap().parse().unwrap();
            got.entry(m.partition()).or_default().push((m.offset(), seq));
        }
    }
    got
}

#[test]
fn controller_failover_and_a_rolling_restart_lose_no_acknowledged_record() {
    let mut c = start_cluster([1, 2, 0]);
    let addrs: Vec<String> = c.nodes.iter().map(|b| b.addr.clone()).collect();
    wait_until("all three brokers registered", || addrs.iter().all(|a| broker_ids(&metadata(a)) == [1, 2, 3]));
    let admin: AdminClient<DefaultClientContext> = client(&addrs[0]).create().unwrap();
    create_with(&admin, TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]).expect("create");
    wait_until("the topic fully replicated", || fully_replicated(&addrs[0]));

    // acks=all load, idempotent, one sequence number per record over the partitions.
    let load = Load::start(&addrs.join(","), TOPIC, PARTITIONS);
    let more = |n: usize, what: &str| load.more(n, what);
    more(150, "acks=all records before the controller is killed");

    // kill -9 of the active controller: the other two elect one, metadata changes commit
    // again, and the load carries on.
    let controller = metadata(&addrs[0]).controller_id.0;
    assert!((1..=3).contains(&controller));
    let killed = (controller - 1) as usize;
    c.nodes[killed].kill9();
    let survivor = addrs[(killed + 1) % 3].clone();
    wait_until("another controller", || {
        let id = metadata(&survivor).controller_id.0;
        id > 0 && id != controller
    });
    let admin: AdminClient<DefaultClientContext> = client(&survivor).create().unwrap();
    create_with(&admin, "after-failover", 1, 2, &[]).expect("a metadata change through the new controller");
    more(150, "acks=all records after the controller failover");
    c.nodes[killed].restart();
    let mut addrs: Vec<String> = c.nodes.iter().map(|b| b.addr.clone()).collect();
    wait_until("the killed controller back in every ISR", || fully_replicated(&addrs[(killed + 1) % 3]));

    // Rolling restart: each broker stopped cleanly and started again, in turn; the next
    // one goes only once the restarted one is back in every ISR.
    for i in 0..3 {
        let other = addrs[(i + 1) % 3].clone();
        assert!(c.nodes[i].stop(), "node {} did not stop cleanly", i + 1);
        more(60, "acks=all records while a broker is down");
        c.nodes[i].restart();
        addrs[i] = c.nodes[i].addr.clone();
        wait_until("the restarted broker back in every ISR", || fully_replicated(&other));
        more(60, "acks=all records after the restart");
    }
    let acked = load.finish();
    let total = check_log(&read_back(&addrs.join(",")), &acked);
    eprintln!("controller {controller} killed, then a rolling restart: {} acknowledged, {total} in the log, 0 missing", acked.len());
}

/// Every acknowledged record at its offset, each record once, in the order sent; returns
/// the records in the log.
pub(super) fn check_log(log: &BTreeMap<i32, Vec<(i64, u64)>>, acked: &[(i32, i64, u64)]) -> usize {
    for (p, o, seq) in acked {
        let at = log.get(p).and_then(|v| v.iter().find(|(off, _)| off == o));
        assert_eq!(at.map(|(_, s)| s), Some(seq), "acknowledged record {seq} missing at partition {p} offset {o}");
    }
    for (p, records) in log {
        let seqs: Vec<u64> = records.iter().map(|(_, s)| *s).collect();
        let distinct: HashSet<u64> = seqs.iter().copied().collect();
        assert_eq!(distinct.len(), seqs.len(), "partition {p} holds a record twice");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "partition {p} is out of the order sent");
    }
    log.values().map(Vec::len).sum()
}

/// A leader that stops without dying (SIGSTOP: what the others see of a network partition
/// or a long pause), under the same acks=all load. The others fence it and elect new
/// leaders, and the load carries on. On SIGCONT it wakes still holding its old leaderships
/// and whatever produce requests were waiting in its sockets. It must acknowledge none of
/// them as leader, must learn that it was fenced, must cut what it appended alone, and must
/// rejoin every ISR. Afterwards every acknowledged record is at its offset, once, in order,
/// and the three replicas of each partition are byte for byte the same.
#[test]
fn a_paused_leader_wakes_as_a_follower_and_loses_no_acknowledged_record() {
    let c = start_cluster([0, 1, 2]);
    let addrs: Vec<String> = c.nodes.iter().map(|b| b.addr.clone()).collect();
    wait_until("all three brokers registered", || addrs.iter().all(|a| broker_ids(&metadata(a)) == [1, 2, 3]));
    let admin: AdminClient<DefaultClientContext> = client(&addrs[0]).create().unwrap();
    create_with(&admin, TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]).expect("create");
    wait_until("the topic fully replicated", || fully_replicated(&addrs[0]));
    // A request to the paused node gets no answer: the client gives up on it after
    // request.timeout.ms (30 s by default, as a Kafka client would wait) and retries it
    // at the new leader.
    let load = Load::start_with(&addrs.join(","), TOPIC, PARTITIONS, &[("request.timeout.ms", "3000"), ("socket.timeout.ms", "3000")]);
    load.more(150, "acks=all records before the pause");

    let paused = leaders(&addrs[0], TOPIC)[0];
    let (i, other) = ((paused - 1) as usize, addrs[paused as usize % 3].clone());
    signal(c.nodes[i].pid(), libc::SIGSTOP);
    wait_until("new leaders for the paused node's partitions", || {
        let ls = leaders(&other, TOPIC);
        ls.len() == PARTITIONS as usize && ls.iter().all(|l| *l > 0 && *l != paused)
    });
    load.more(150, "acks=all records while the old leader is paused");
    signal(c.nodes[i].pid(), libc::SIGCONT);
    wait_until("the paused node back in every ISR", || fully_replicated(&other));
    load.more(150, "acks=all records after the pause");
    let acked = load.finish();

    let total = check_log(&read_back(&addrs.join(",")), &acked);
    // The woken node's copy of each partition is the others' copy, byte for byte: what it
    // appended alone is gone.
    for p in 0..PARTITIONS {
        wait_until("identical replicas", || {
            let b: Vec<Vec<u8>> = c.nodes.iter().map(|n| replica_bytes(n, TOPIC, p)).collect();
            !b[0].is_empty() && b[0] == b[1] && b[1] == b[2]
        });
    }
    eprintln!("node {paused} paused as leader and woken: {} acknowledged, {total} in the log, 0 missing", acked.len());
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: signalling a child process of this test by its pid.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0, "kill({pid}, {sig})");
}
