//! Transactions on three real broker processes: `__transaction_state` is created at the
//! first FindCoordinator for a transactional id, with three replicas, and every broker
//! names the same coordinator (the leader of the id's partition). A transactional producer
//! (librdkafka) writes to partitions led by all three brokers (of a topic with three
//! replicas, and of one with one replica, so some are not on the coordinator at all), so
//! the coordinator writes markers here and through WriteTxnMarkers on the others; commits
//! and aborts alternate and a read_committed consumer sees exactly the committed records. Then the coordinator is
//! killed with SIGKILL in the middle of a transaction: the new coordinator (the next leader
//! of the partition) ends it — committed or aborted, its state says which, and the consumer
//! agrees — and nothing committed before is lost, nothing aborted is visible. A marker sent
//! with the killed coordinator's epoch is refused (TRANSACTION_COORDINATOR_FENCED). Last,
//! with the killed broker back, a transaction left open by its producer outlives the next
//! coordinator's SIGKILL and is aborted at its timeout by the one after.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{
    ApiKey, DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName, TransactionalId, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::common::wire;
use super::{broker_ids, client, create, find_coordinator, leaders, metadata, start_cluster_with, wait_until};

const TOPIC: &str = "txn-spread";
/// One replica per partition: the coordinator holds no replica of two of them.
const SINGLE: &str = "txn-single";
const PARTITIONS: i32 = 3;
const TXN_ID: &str = "spread-txn";
// Kafka's error codes.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const NOT_COORDINATOR: i32 = 16;
const TRANSACTION_COORDINATOR_FENCED: i16 = 52;

fn txn_producer(bootstrap: &str) -> BaseProducer {
    txn_producer_timing_out(bootstrap, 30_000)
}

fn txn_producer_timing_out(bootstrap: &str, timeout_ms: u32) -> BaseProducer {
    let p: BaseProducer = client(bootstrap)
        .set("transactional.id", TXN_ID)
        .set("linger.ms", "1")
        .set("message.timeout.ms", timeout_ms.to_string())
        .set("transaction.timeout.ms", timeout_ms.to_string())
        .create()
        .expect("create the transactional producer");
    p.init_transactions(Duration::from_secs(30)).expect("init_transactions");
    p
}

/// Sends `{prefix}-{partition}-{i}` to every partition of `topics` in the open
/// transaction and waits for them; the values sent.
fn send(p: &BaseProducer, topics: &[&str], prefix: &str, per_partition: usize) -> BTreeSet<String> {
    let mut sent = BTreeSet::new();
    for topic in topics {
        for part in 0..PARTITIONS {
            for i in 0..per_partition {
                let v = format!("{prefix}-{topic}-{part}-{i}");
                p.send(BaseRecord::<(), str>::to(topic).payload(&v).partition(part)).expect("enqueue");
                sent.insert(v);
            }
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    sent
}

/// Every value of `topics` with `isolation`, read to the end of each partition.
fn read(bootstrap: &str, topics: &[&str], isolation: &str) -> BTreeSet<String> {
    topics.iter().flat_map(|t| read_topic(bootstrap, t, isolation)).collect()
}

fn read_topic(bootstrap: &str, topic: &str, isolation: &str) -> BTreeSet<String> {
    let c: BaseConsumer = client(bootstrap)
        .set("group.id", format!("reader-{isolation}"))
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = BTreeSet::new();
    let mut at_end = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while at_end.len() < PARTITIONS as usize {
        assert!(Instant::now() < deadline, "partitions not read to their end: {at_end:?}");
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                assert!(out.insert(String::from_utf8(m.payload().unwrap().to_vec()).unwrap()), "a record delivered twice");
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => eprintln!("consume: {e}"),
            None => {}
        }
    }
    out
}

/// The transaction's state as `addr` describes it: (error code, state name).
fn describe(addr: &str) -> (i16, String) {
    let s = describe_state(addr);
    (s.error_code, s.transaction_state.to_string())
}

fn describe_state(addr: &str) -> TransactionState {
    let req = DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(wire::sb(TXN_ID))]);
    let mut r: DescribeTransactionsResponse = wire::call(&mut wire::connect(addr), ApiKey::DescribeTransactions, 0, &req);
    r.transaction_states.remove(0)
}

/// A WriteTxnMarkers (v1) COMMIT for one partition, as a coordinator sends it: the error code.
fn write_marker(addr: &str, topic: &str, partition: i32, producer: (i64, i16), coordinator_epoch: i32) -> i16 {
    let t = WritableTxnMarkerTopic::default().with_name(TopicName(wire::sb(topic))).with_partition_indexes(vec![partition]);
    let m = WritableTxnMarker::default()
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_transaction_result(true)
        .with_coordinator_epoch(coordinator_epoch)
        .with_topics(vec![t]);
    let req = WriteTxnMarkersRequest::default().with_markers(vec![m]);
    let r: WriteTxnMarkersResponse = wire::call(&mut wire::connect(addr), ApiKey::WriteTxnMarkers, 1, &req);
    r.markers[0].topics[0].partitions[0].error_code
}

#[test]
fn transactions_span_brokers_and_survive_their_coordinator() {
    let started = Instant::now();
    let mut c = start_cluster_with([0, 1, 2], "transaction.state.log.num.partitions=3,transaction.abort.timed.out.transaction.cleanup.interval.ms=1000");
    let addrs: Vec<String> = c.nodes.iter().map(|b| b.addr.clone()).collect();
    let all = addrs.join(",");
    wait_until("all three brokers registered", || addrs.iter().all(|a| broker_ids(&metadata(a)) == [1, 2, 3]));
    let admin: AdminClient<DefaultClientContext> = client(&addrs[0]).create().unwrap();
    create(&admin, TOPIC, PARTITIONS, 3).expect("create the topic");
    create(&admin, SINGLE, PARTITIONS, 1).expect("create the topic");
    for topic in [TOPIC, SINGLE] {
        let mut led: Vec<i32> = leaders(&addrs[0], topic);
        led.sort();
        assert_eq!(led, [1, 2, 3], "the partitions of {topic} are led by the three brokers");
    }

    // The first lookup creates __transaction_state; every broker names the same coordinator.
    wait_until("a transaction coordinator", || find_coordinator(&addrs[0], 1, TXN_ID) > 0);
    wait_until("every broker names it", || addrs.iter().all(|a| find_coordinator(a, 1, TXN_ID) == find_coordinator(&addrs[0], 1, TXN_ID)));
    let coordinator = find_coordinator(&addrs[0], 1, TXN_ID);
    let t = metadata(&addrs[0]);
    let state = t.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "__transaction_state")).expect("__transaction_state");
    assert_eq!(state.partitions.len(), 3);
    assert!(state.partitions.iter().all(|p| p.replica_nodes.len() == 3), "three replicas of each partition");

    // Commit, abort, commit, over both topics: read_committed sees exactly the committed
    // records.
    let p = txn_producer(&all);
    let mut committed = BTreeSet::new();
    let mut everything = BTreeSet::new();
    p.begin_transaction().unwrap();
    let both = [TOPIC, SINGLE];
    let c1 = send(&p, &both, "c1", 20);
    p.commit_transaction(Duration::from_secs(30)).expect("commit");
    committed.extend(c1.iter().cloned());
    everything.extend(c1);
    p.begin_transaction().unwrap();
    everything.extend(send(&p, &both, "a1", 20));
    p.abort_transaction(Duration::from_secs(30)).expect("abort");
    p.begin_transaction().unwrap();
    let c2 = send(&p, &both, "c2", 20);
    p.commit_transaction(Duration::from_secs(30)).expect("commit");
    committed.extend(c2.iter().cloned());
    everything.extend(c2);
    assert_eq!(read(&all, &both, "read_committed"), committed);
    assert_eq!(read(&all, &both, "read_uncommitted"), everything);
    // Only the coordinator answers for the id; it has completed the last transaction.
    let at = |id: i32| addrs[(id - 1) as usize].clone();
    assert_eq!(describe(&at(coordinator)), (0, "CompleteCommit".to_string()));
    let other = (1..=3).find(|id| *id != coordinator).unwrap();
    assert_eq!(i32::from(describe(&at(other)).0), NOT_COORDINATOR);

    // A transaction is open on every partition of the replicated topic when its
    // coordinator is killed.
    let replicated = format!("-{TOPIC}-");
    committed.retain(|v| v.contains(&replicated));
    everything.retain(|v| v.contains(&replicated));
    p.begin_transaction().unwrap();
    let open = send(&p, &[TOPIC], "k", 20);
    everything.extend(open.iter().cloned());
    c.nodes[(coordinator - 1) as usize].kill9();
    let survivors: Vec<String> = (1..=3).filter(|id| *id != coordinator).map(at).collect();
    let survivors_all = survivors.join(",");
    wait_until("another coordinator", || {
        let id = find_coordinator(&survivors[0], 1, TXN_ID);
        id > 0 && id != coordinator
    });
    let next = find_coordinator(&survivors[0], 1, TXN_ID);
    // The producer commits through the new coordinator; if librdkafka gives up on the
    // commit, it aborts (or a new producer fences it, aborting the transaction).
    let ended = p.commit_transaction(Duration::from_secs(60));
    let outcome = match ended {
        Ok(()) => "CompleteCommit",
        Err(e) => {
            eprintln!("commit across the coordinator's loss failed: {e}");
            let aborted = match &e {
                KafkaError::Transaction(t) if t.txn_requires_abort() => p.abort_transaction(Duration::from_secs(60)).is_ok(),
                _ => false,
            };
            if !aborted {
                drop(p);
                let fresh = txn_producer(&survivors_all);
                drop(fresh);
            }
            "CompleteAbort"
        }
    };
    if outcome == "CompleteCommit" {
        committed.extend(open);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = describe(&at(next));
        if d == (0, outcome.to_string()) || (outcome == "CompleteAbort" && d == (0, "Empty".to_string())) {
            break;
        }
        assert!(Instant::now() < deadline, "the new coordinator's state: {d:?}, expected {outcome}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(read(&survivors_all, &[TOPIC], "read_committed"), committed, "after {outcome}");
    assert_eq!(read(&survivors_all, &[TOPIC], "read_uncommitted"), everything);

    // WriteTxnMarkers as the killed coordinator would send it (coordinator epoch 0, where the
    // partition saw the new coordinator's, the partition leader epoch it was elected in):
    // fenced. To a broker that does not lead the partition, or for no such topic: refused.
    let s = describe_state(&at(next));
    let producer = (s.producer_id.0, s.producer_epoch);
    let now_led = leaders(&survivors[0], TOPIC);
    let (partition, leader) = now_led.iter().enumerate().find(|(_, l)| **l > 0).map(|(p, l)| (p as i32, *l)).expect("a led partition");
    let follower = (1..=3).find(|id| *id != coordinator && *id != leader).unwrap();
    let watermarks: BaseConsumer = client(&survivors_all).create().unwrap();
    let end = || watermarks.fetch_watermarks(TOPIC, partition, Duration::from_secs(10)).expect("watermarks").1;
    let before = end();
    assert_eq!(write_marker(&at(leader), TOPIC, partition, producer, 0), TRANSACTION_COORDINATOR_FENCED);
    assert_eq!(write_marker(&at(follower), TOPIC, partition, producer, 1), NOT_LEADER_OR_FOLLOWER);
    assert_eq!(write_marker(&at(leader), "no-such-topic", 0, producer, 1), UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(end(), before, "a refused marker is not appended");
    drop(watermarks);

    // The killed broker returns (and is in sync again); a transaction whose producer went
    // away is open when its coordinator is killed too: the next coordinator aborts it once
    // its transaction.timeout.ms passes, markers and all.
    c.nodes[(coordinator - 1) as usize].restart();
    let addrs: Vec<String> = c.nodes.iter().map(|b| b.addr.clone()).collect();
    let at = |id: i32| addrs[(id - 1) as usize].clone();
    wait_until("the restarted broker in sync", || {
        let m = metadata(&at(next));
        m.topics.iter().filter(|t| t.name.as_ref().is_some_and(|n| n.as_str() == TOPIC || n.as_str() == "__transaction_state")).all(|t| {
            t.partitions.iter().all(|p| p.isr_nodes.iter().any(|b| b.0 == coordinator))
        })
    });
    let p = txn_producer_timing_out(&addrs.join(","), 3000);
    p.begin_transaction().unwrap();
    everything.extend(send(&p, &[TOPIC], "t", 10));
    drop(p);
    assert_eq!(describe(&at(next)), (0, "Ongoing".to_string()));
    c.nodes[(next - 1) as usize].kill9();
    let alive: Vec<String> = (1..=3).filter(|id| *id != next).map(at).collect();
    wait_until("a third coordinator", || {
        let id = find_coordinator(&alive[0], 1, TXN_ID);
        id > 0 && id != next
    });
    let third = find_coordinator(&alive[0], 1, TXN_ID);
    wait_until("the timed-out transaction aborted by the new coordinator", || describe(&at(third)) == (0, "CompleteAbort".to_string()));
    let alive_all = alive.join(",");
    assert_eq!(read(&alive_all, &[TOPIC], "read_committed"), committed, "after the abort");
    assert_eq!(read(&alive_all, &[TOPIC], "read_uncommitted"), everything);
    eprintln!("transactions test: {} ms, outcome {outcome}", started.elapsed().as_millis());
}
