//! One connection pipelining acks=all produces to a replicated partition: each is appended
//! in request order, its wait for the in-sync replicas overlaps the requests read behind
//! it, and every response comes back in request order with the offsets of that order.

use std::io::Write;
use std::process::Command;

use kafka_protocol::messages::*;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;

use super::common::wire;
use super::{broker_ids, client, create_with, metadata, start_cluster_with, wait_until};

/// An acks=all Produce (v9) of one record to `partition` of `topic`, timeout 60 s.
fn produce(correlation_id: i32, topic: &str, partition: i32, value: &[u8]) -> Vec<u8> {
    let p = produce_request::PartitionProduceData::default().with_index(partition).with_records(Some(wire::one_record_batch(value).into()));
    let t = produce_request::TopicProduceData::default().with_name(TopicName(wire::sb(topic))).with_partition_data(vec![p]);
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(60_000).with_topic_data(vec![t]);
    wire::request(ApiKey::Produce, 9, correlation_id, &req)
}

/// Reads the next response, which must be the Produce with this correlation id: (error
/// code, base offset) of its one partition.
fn produced(s: &mut std::net::TcpStream, correlation_id: i32) -> (i16, i64) {
    let frame = wire::read_frame(s).unwrap_or_else(|e| panic!("no response to request {correlation_id}: {e}"));
    let (corr, r): (i32, ProduceResponse) = wire::parse(ApiKey::Produce, 9, frame);
    assert_eq!(corr, correlation_id, "responses out of request order");
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// The latest offset of `partition` of `topic` at `addr` (ListOffsets v7: the high
/// watermark).
fn latest(addr: &str, topic: &str, partition: i32) -> i64 {
    let p = list_offsets_request::ListOffsetsPartition::default().with_partition_index(partition).with_timestamp(-1);
    let t = list_offsets_request::ListOffsetsTopic::default().with_name(TopicName(wire::sb(topic))).with_partitions(vec![p]);
    let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![t]);
    let r: ListOffsetsResponse = wire::call(&mut wire::connect(addr), ApiKey::ListOffsets, 7, &req);
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

/// (leader, ISR) of each partition of `topic` as `addr` reports it, by partition index.
fn partitions(addr: &str, topic: &str) -> Vec<(i32, Vec<i32>)> {
    let m = metadata(addr);
    let Some(t) = m.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic)) else { return Vec::new() };
    let mut ps: Vec<(i32, i32, Vec<i32>)> = t
        .partitions
        .iter()
        .map(|p| {
            let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
            isr.sort();
            (p.partition_index, p.leader_id.0, isr)
        })
        .collect();
    ps.sort();
    ps.into_iter().map(|(_, l, isr)| (l, isr)).collect()
}

/// Sends a signal to a broker process.
fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([sig, &pid.to_string()]).status().expect("run kill").success();
    assert!(ok, "kill {sig} {pid}");
}

/// Resumes a stopped broker, also when the test fails while it is stopped.
struct Stopped(u32);

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

#[test]
fn one_connection_pipelines_acks_all_produces_and_answers_in_order() {
    // A follower stopped for a few seconds stays registered and in the ISR.
    let c = start_cluster_with([0, 1, 2], "broker.session.timeout.ms=120000,replica.lag.time.max.ms=120000");
    let addrs: Vec<String> = c.nodes.iter().map(|b| b.addr.clone()).collect();
    wait_until("all three brokers registered", || addrs.iter().all(|a| broker_ids(&metadata(a)) == [1, 2, 3]));
    let admin: AdminClient<DefaultClientContext> = client(&addrs[0]).create().unwrap();
    create_with(&admin, "pipelined", 1, 3, &[]).expect("create RF 3");
    create_with(&admin, "beside", 3, 1, &[]).expect("create RF 1");
    wait_until("pipelined fully replicated", || partitions(&addrs[0], "pipelined").first().is_some_and(|(l, isr)| *l > 0 && isr == &[1, 2, 3]));
    let leader = partitions(&addrs[0], "pipelined")[0].0;
    let leader_addr = addrs[(leader - 1) as usize].clone();
    wait_until("the leader knows both topics", || {
        partitions(&leader_addr, "pipelined").first().is_some_and(|(l, _)| *l == leader)
            && partitions(&leader_addr, "beside").iter().filter(|(l, _)| *l > 0).count() == 3
    });
    // A partition of the RF 1 topic that the same broker leads.
    let beside = partitions(&leader_addr, "beside").iter().position(|(l, _)| *l == leader).expect("an RF 1 partition on the leader") as i32;

    // Three acks=all produces and a Metadata request in one write, on one connection:
    // answered in request order, the produces at consecutive offsets.
    let mut s = wire::connect(&leader_addr);
    let mut frames = Vec::new();
    frames.extend(produce(1, "pipelined", 0, b"a"));
    frames.extend(produce(2, "pipelined", 0, b"b"));
    frames.extend(wire::request(ApiKey::Metadata, 12, 3, &MetadataRequest::default().with_topics(None)));
    frames.extend(produce(4, "pipelined", 0, b"c"));
    s.write_all(&frames).unwrap();
    assert_eq!(produced(&mut s, 1), (0, 0));
    assert_eq!(produced(&mut s, 2), (0, 1));
    let (corr, md): (i32, MetadataResponse) = wire::parse(ApiKey::Metadata, 12, wire::read_frame(&mut s).expect("metadata response"));
    assert_eq!(corr, 3, "responses out of request order");
    assert_eq!(broker_ids(&md), [1, 2, 3]);
    assert!(md.topics.iter().any(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "pipelined")));
    assert_eq!(produced(&mut s, 4), (0, 2));

    // The overlap itself: with a follower stopped, an acks=all produce to the RF 3
    // partition cannot be answered (the high watermark waits for every ISR member); the
    // produce read behind it on the same connection still takes effect meanwhile.
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let stopped = Stopped(c.nodes[(follower - 1) as usize].pid());
    signal(stopped.0, "-STOP");
    let mut frames = produce(5, "pipelined", 0, b"d");
    frames.extend(produce(6, "beside", beside, b"e"));
    s.write_all(&frames).unwrap();
    wait_until("the second produce appended while the first waits for the ISR", || latest(&leader_addr, "beside", beside) == 1);
    // The stopped follower is still in the ISR: the first produce cannot have been
    // answered before the second was read.
    assert_eq!(partitions(&leader_addr, "pipelined")[0].1, [1, 2, 3]);
    assert_eq!(latest(&leader_addr, "pipelined", 0), 3, "the high watermark passed a batch a stopped ISR member lacks");
    drop(stopped);
    assert_eq!(produced(&mut s, 5), (0, 3));
    assert_eq!(produced(&mut s, 6), (0, 0));
}
