//! Replication across three real broker processes: an RF=3 topic is on every node, acks=all
//! produces are answered once the ISR has them, and every replica ends with the same
//! bytes; kill -9 of the leader under continuous acks=all load loses no acknowledged
//! record (a new leader comes from the ISR, the old one rejoins as a follower and is cut
//! back to what the others hold); an ISR below min.insync.replicas refuses acks=all
//! with NOT_ENOUGH_REPLICAS, and a non-leader refuses produce with NOT_LEADER_OR_FOLLOWER.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::common::kafka::{disk_batches, log_files, partition_dir};
use super::common::wire;
use super::{client, create_with, metadata, start_cluster, wait_until, Load};

// Kafka error codes.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const NOT_ENOUGH_REPLICAS: i16 = 19;
const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;

/// Partition 0 of `topic` as `addr` reports it: (leader, replicas, ISR).
fn state(addr: &str, topic: &str) -> Option<(i32, Vec<i32>, Vec<i32>)> {
    let m = metadata(addr);
    let t = m.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))?;
    let p = t.partitions.iter().find(|p| p.partition_index == 0)?;
    let sorted = |v: &[kafka_protocol::messages::BrokerId]| {
        let mut v: Vec<i32> = v.iter().map(|b| b.0).collect();
        v.sort();
        v
    };
    Some((p.leader_id.0, sorted(&p.replica_nodes), sorted(&p.isr_nodes)))
}

/// OffsetForLeaderEpoch (v3) of partition 0 at the broker `addr`: (epoch, end offset).
fn epoch_end(addr: &str, topic: &str, epoch: i32) -> (i32, i64) {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
    use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName};
    let p = OffsetForLeaderPartition::default().with_partition(0).with_current_leader_epoch(-1).with_leader_epoch(epoch);
    let t = OffsetForLeaderTopic::default().with_topic(TopicName(wire::sb(topic))).with_partitions(vec![p]);
    let req = OffsetForLeaderEpochRequest::default().with_replica_id(kafka_protocol::messages::BrokerId(-1)).with_topics(vec![t]);
    let r: OffsetForLeaderEpochResponse = wire::call(&mut wire::connect(addr), ApiKey::OffsetForLeaderEpoch, 3, &req);
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (p.leader_epoch, p.end_offset)
}

/// The whole batches of a replica's partition 0, as bytes.
pub(super) fn replica_bytes(b: &super::common::Broker, topic: &str, partition: i32) -> Vec<u8> {
    let mut out = Vec::new();
    for f in log_files(&partition_dir(b, topic, partition)) {
        let bytes = std::fs::read(&f).unwrap();
        let end = disk_batches(&f).last().map_or(0, |d| (d.position + d.len) as usize);
        out.extend_from_slice(&bytes[..end]);
    }
    out
}

/// Partition 0 of `topic` in the node's `replication-offset-checkpoint` (Kafka's format:
/// version, count, then `topic partition offset` lines).
fn stored_hw(b: &super::common::Broker, topic: &str) -> Option<i64> {
    let text = std::fs::read_to_string(b.data_dir.join("replication-offset-checkpoint")).ok()?;
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("0"), "checkpoint version");
    let count: usize = lines.next()?.parse().ok()?;
    let entries: Vec<&str> = lines.collect();
    assert_eq!(entries.len(), count, "checkpoint entry count");
    entries.iter().find_map(|l| l.strip_prefix(&format!("{topic} 0 "))?.parse().ok())
}

/// Every value in `topic` partition 0, read from the start up to its high watermark.
fn consume_all(bootstrap: &str, topic: &str, until: usize) -> Vec<String> {
    let consumer: BaseConsumer = client(bootstrap).set("group.id", "replication-check").set("enable.auto.commit", "false").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < until && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            got.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
        }
    }
    got
}

#[test]
fn replicated_partitions_survive_the_loss_of_their_leader() {
    let mut c = start_cluster([0, 1, 2]);
    let addrs: Vec<String> = c.nodes.iter().map(|b| b.addr.clone()).collect();
    wait_until("all three brokers registered", || addrs.iter().all(|a| super::broker_ids(&metadata(a)) == [1, 2, 3]));
    let admin: AdminClient<DefaultClientContext> = client(&addrs[0]).create().unwrap();
    create_with(&admin, "replicated", 1, 3, &[("min.insync.replicas", "2")]).expect("create RF 3");
    // (CreateTopics may have gone to another broker: node 1 applies the record a moment later.)
    wait_until("node 1 sees the topic", || state(&addrs[0], "replicated").is_some());
    let (first_leader, replicas, isr) = state(&addrs[0], "replicated").unwrap();
    assert_eq!((replicas.as_slice(), isr.as_slice()), ([1, 2, 3].as_slice(), [1, 2, 3].as_slice()));

    // Continuous acks=all load from an idempotent producer; only answered sends count.
    let all = addrs.join(",");
    let load = Load::start(&all, "replicated", 1);
    wait_until("acks=all records before the kill", || load.count() >= 300);

    // kill -9 of the leader: a new one comes from the ISR and the load carries on.
    let leader_node = (first_leader - 1) as usize;
    let survivor = addrs[(leader_node + 1) % 3].clone();
    c.nodes[leader_node].kill9();
    wait_until("a new leader", || state(&survivor, "replicated").is_some_and(|(l, _, _)| l > 0 && l != first_leader));
    let at_kill = load.count();
    load.more(300, "acks=all records after the kill");
    let acked: Vec<String> = load.finish().into_iter().map(|(_, _, seq)| seq.to_string()).collect();

    // Not one acknowledged record is missing, and none is there twice.
    let got = consume_all(&survivor, "replicated", acked.len());
    let have: HashSet<&String> = got.iter().collect();
    let missing: Vec<&String> = acked.iter().filter(|v| !have.contains(v)).collect();
    assert!(missing.is_empty(), "{} acknowledged records missing, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
    assert_eq!(have.len(), got.len(), "duplicates in the log");
    eprintln!("acks=all: {} acknowledged ({at_kill} before the kill of leader {first_leader}), {} in the log, 0 missing", acked.len(), got.len());

    // The new leader's log knows where the first leader's epoch (0) ended: at the start of
    // its own epoch, which holds what was appended since (OffsetForLeaderEpoch, KIP-101).
    let (epoch, end) = epoch_end(&survivor, "replicated", 0);
    assert_eq!(epoch, 0);
    assert!(end > 0 && end < got.len() as i64, "epoch 0 ends at {end} of {}", got.len());

    // The old leader returns as a follower, is cut back, catches up and rejoins the ISR;
    // then all three replicas hold the same bytes.
    c.nodes[leader_node].restart();
    let addrs: Vec<String> = c.nodes.iter().map(|b| b.addr.clone()).collect();
    wait_until("the old leader back in the ISR", || state(&survivor, "replicated").is_some_and(|(_, _, isr)| isr == [1, 2, 3]));
    wait_until("identical replicas", || {
        let b: Vec<Vec<u8>> = c.nodes.iter().map(|n| replica_bytes(n, "replicated", 0)).collect();
        !b[0].is_empty() && b[0] == b[1] && b[1] == b[2]
    });
    // Every replica's high watermark is checkpointed in its data dir, in Kafka's format.
    let end = got.len() as i64;
    wait_until("the high watermark checkpointed on every node", || c.nodes.iter().all(|n| stored_hw(n, "replicated") == Some(end)));

    // min.insync.replicas=3 with one node down: acks=all is refused before appending;
    // a broker that does not lead refuses produce.
    // (A fresh admin client: librdkafka keeps sending CreateTopics to the controller it
    // knew, which may be the restarted node.)
    let admin: AdminClient<DefaultClientContext> = client(&survivor).create().unwrap();
    create_with(&admin, "strict", 1, 3, &[("min.insync.replicas", "3")]).expect("create strict");
    wait_until("strict fully replicated, as every broker sees it", || {
        addrs.iter().all(|a| state(a, "strict").is_some_and(|(l, _, isr)| l > 0 && isr.len() == 3))
    });
    let (leader, _, _) = state(&addrs[0], "strict").unwrap();
    let follower = (leader % 3) as usize; // node index of broker id leader+1 (mod 3)
    let mut s = wire::connect(&addrs[follower]);
    let r = wire::produce(&mut s, 9, "strict", wire::one_record_batch(b"to a follower"));
    assert_eq!(r.error_code, NOT_LEADER_OR_FOLLOWER);
    let down = ((leader + 1) % 3) as usize; // neither the leader nor `follower`
    assert!(down != follower && down != (leader - 1) as usize);
    c.nodes[down].kill9();
    let leader_addr = addrs[(leader - 1) as usize].clone();
    wait_until("the ISR shrinks", || state(&leader_addr, "strict").is_some_and(|(_, _, isr)| isr.len() == 2));
    // (The leader acts on the committed ISR a moment after Metadata shows it: a produce in
    // between is appended and answered NOT_ENOUGH_REPLICAS_AFTER_APPEND.)
    let mut s = wire::connect(&leader_addr);
    let mut last = 0;
    wait_until("acks=all refused before appending", || {
        last = wire::produce(&mut s, 9, "strict", wire::one_record_batch(b"too few replicas")).error_code;
        assert!(last == NOT_ENOUGH_REPLICAS || last == NOT_ENOUGH_REPLICAS_AFTER_APPEND, "produce answered {last}");
        last == NOT_ENOUGH_REPLICAS
    });
    assert_eq!(state(&leader_addr, "strict").unwrap().0, leader);
    drop(c);
}
