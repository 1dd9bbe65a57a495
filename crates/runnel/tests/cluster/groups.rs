//! Consumer groups on three real broker processes: `__consumer_offsets` is created at the
//! first FindCoordinator with `offsets.topic.num.partitions` partitions of three replicas;
//! every broker names the same coordinator for a group (the leader of its partition); a
//! consumer group (librdkafka) commits offsets, its coordinator is killed with SIGKILL,
//! and the group carries on with another coordinator: every acknowledged commit is there,
//! no record below an acknowledged commit is delivered again, none is skipped.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::common::kafka::block_on;
use super::{client, create_with, find_coordinator, metadata, start_cluster, wait_until};

const GROUP: &str = "survivors";
const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;
const RECORDS: i64 = 3000;

/// The positions to commit: for each partition, the offset after the last record polled.
fn positions(next: &BTreeMap<i32, i64>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in next {
        tpl.add_partition_offset(TOPIC, *p, Offset::Offset(*o))
            .unwrap();
    }
    tpl
}

/// The group's committed offsets as the consumer's coordinator answers them.
fn committed(consumer: &BaseConsumer) -> BTreeMap<i32, i64> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(TOPIC, p);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(5)) {
            Ok(c) => {
                return c
                    .elements()
                    .iter()
                    .map(|e| {
                        (
                            e.partition(),
                            if let Offset::Offset(o) = e.offset() {
                                o
                            } else {
                                -1
                            },
                        )
                    })
                    .collect();
            }
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "committed offsets not readable: {e}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

#[test]
fn a_group_carries_on_when_its_coordinator_is_killed() {
    let mut c = start_cluster([0, 1, 2]);
    let addrs: Vec<String> = c.nodes.iter().map(|b| b.addr.clone()).collect();
    wait_until("all three brokers registered", || {
        addrs
            .iter()
            .all(|a| super::broker_ids(&metadata(a)) == [1, 2, 3])
    });
    let admin: AdminClient<DefaultClientContext> = client(&addrs[0]).create().unwrap();
    create_with(
        &admin,
        TOPIC,
        PARTITIONS,
        3,
        &[("min.insync.replicas", "2")],
    )
    .expect("create the topic");
    let all = addrs.join(",");
    let producer: FutureProducer = client(&all)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    let sends: Vec<_> = (0..RECORDS)
        .map(|i| {
            let v = format!("r{i}");
            producer
                .send_result(
                    FutureRecord::to(TOPIC)
                        .partition((i % i64::from(PARTITIONS)) as i32)
                        .key("k")
                        .payload(&v),
                )
                .expect("queue")
        })
        .collect();
    for f in sends {
        block_on(f).expect("delivery").expect("acks=all produce");
    }
    let end: BTreeMap<i32, i64> = (0..PARTITIONS)
        .map(|p| (p, RECORDS / i64::from(PARTITIONS)))
        .collect();

    // The first lookup creates __consumer_offsets: 5 partitions of 3 replicas; every broker
    // names the same coordinator, the leader of the group's partition.
    wait_until("a group coordinator", || {
        find_coordinator(&addrs[0], 0, GROUP) > 0
    });
    wait_until("every broker names the coordinator", || {
        let ids: Vec<i32> = addrs.iter().map(|a| find_coordinator(a, 0, GROUP)).collect();
        ids.iter().all(|id| *id == ids[0])
    });
    let first = find_coordinator(&addrs[0], 0, GROUP);
    let m = metadata(&addrs[0]);
    let offsets_topic = m
        .topics
        .iter()
        .find(|t| {
            t.name
                .as_ref()
                .is_some_and(|n| n.as_str() == "__consumer_offsets")
        })
        .expect("__consumer_offsets");
    assert!(offsets_topic.is_internal);
    assert_eq!(offsets_topic.partitions.len(), 5);
    assert!(
        offsets_topic
            .partitions
            .iter()
            .all(|p| p.replica_nodes.len() == 3),
        "offsets partitions not on three replicas"
    );

    let consumer: BaseConsumer = client(&all)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "30000")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    let mut delivered: HashMap<(i32, i64), u32> = HashMap::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut acked: BTreeMap<i32, i64> = BTreeMap::new();
    let poll = |consumer: &BaseConsumer,
                delivered: &mut HashMap<(i32, i64), u32>,
                next: &mut BTreeMap<i32, i64>| {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            *delivered.entry((m.partition(), m.offset())).or_default() += 1;
            next.insert(m.partition(), m.offset() + 1);
            return true;
        }
        false
    };

    // Half the records, each 50 committed (synchronously: an Ok is an acknowledged commit).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut since_commit = 0;
    while delivered.len() < (RECORDS / 2) as usize {
        assert!(
            Instant::now() < deadline,
            "only {} records consumed before the kill",
            delivered.len()
        );
        if poll(&consumer, &mut delivered, &mut next) {
            since_commit += 1;
        }
        if since_commit >= 50 {
            consumer
                .commit(&positions(&next), CommitMode::Sync)
                .expect("commit before the kill");
            acked.extend(next.iter().map(|(p, o)| (*p, *o)));
            since_commit = 0;
        }
    }
    assert_eq!(committed(&consumer), acked_or_none(&acked));

    // kill -9 of the coordinator: another broker takes the group's partition over, loads
    // the group and its offsets, and every acknowledged commit is there.
    let killed = (first - 1) as usize;
    c.nodes[killed].kill9();
    let survivor = addrs[(killed + 1) % 3].clone();
    wait_until("another coordinator", || {
        let id = find_coordinator(&survivor, 0, GROUP);
        id > 0 && id != first
    });
    let second = find_coordinator(&survivor, 0, GROUP);
    assert_eq!(
        committed(&consumer),
        acked_or_none(&acked),
        "acknowledged commits lost with the coordinator"
    );
    let acked_at_kill = acked.clone();

    // The group carries on to the end, committing on the way (a commit may fail while the
    // coordinator moves; only acknowledged ones count).
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = |next: &BTreeMap<i32, i64>| end.iter().all(|(p, e)| next.get(p) == Some(e));
    while !done(&next) {
        assert!(
            Instant::now() < deadline,
            "stuck at {next:?} of {end:?} after the kill"
        );
        if poll(&consumer, &mut delivered, &mut next) {
            since_commit += 1;
        }
        if since_commit >= 50 && consumer.commit(&positions(&next), CommitMode::Sync).is_ok() {
            since_commit = 0;
        }
    }
    let final_commit = Instant::now() + Duration::from_secs(30);
    while let Err(e) = consumer.commit(&positions(&next), CommitMode::Sync) {
        assert!(
            Instant::now() < final_commit,
            "the final commit failed: {e}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        committed(&consumer),
        end,
        "the final commit is not what the coordinator holds"
    );

    // None skipped; a record delivered twice only at or after the last acknowledged commit.
    for (p, e) in &end {
        for o in 0..*e {
            assert!(
                delivered.contains_key(&(*p, o)),
                "partition {p} offset {o} never delivered"
            );
        }
    }
    let again: Vec<(i32, i64)> = delivered
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| *k)
        .collect();
    for (p, o) in &again {
        let from = acked_at_kill.get(p).copied().unwrap_or(0);
        assert!(
            *o >= from,
            "partition {p} offset {o} delivered again although committed up to {from}"
        );
    }
    drop(consumer);

    // A new member of the group starts from the committed offsets: nothing is left to read.
    let fresh: BaseConsumer = client(&survivor)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    assert_eq!(committed(&fresh), end);
    eprintln!(
        "coordinator {first} killed, {second} took over; {} records delivered ({} twice), commits at the kill {acked_at_kill:?}",
        delivered.len(),
        again.len()
    );
}

/// What OffsetFetch answers for the partitions: the acknowledged commit, or -1 (none).
fn acked_or_none(acked: &BTreeMap<i32, i64>) -> BTreeMap<i32, i64> {
    (0..PARTITIONS)
        .map(|p| (p, acked.get(&p).copied().unwrap_or(-1)))
        .collect()
}
