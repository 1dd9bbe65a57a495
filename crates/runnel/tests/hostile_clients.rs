//! One client must not stall, sink or reorder the broker: requests of one connection take
//! effect in order; limits on connections, idle time and memory held for requests; a
//! Fetch naming one partition many times.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::wire::*;
use common::Broker;
use kafka_protocol::messages::*;

/// Writes all `frames` in one go (from a thread, so a full socket cannot block us) and
/// reads as many responses.
fn pipeline(addr: &str, frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut s = connect(addr);
    let n = frames.len();
    let mut writer = s.try_clone().unwrap();
    let w = std::thread::spawn(move || writer.write_all(&frames.concat()));
    let got = (0..n).map(|i| read_frame(&mut s).unwrap_or_else(|e| panic!("response {i}: {e}"))).collect();
    w.join().unwrap().expect("write pipelined requests");
    got
}

/// A broker with `topic` holding `records` one-record batches, and a connection to it.
fn broker_with_topic(topic: &str, records: usize) -> (Broker, std::net::TcpStream) {
    let b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    create_topic(&mut s, topic, &[]);
    for _ in 0..records {
        assert_eq!(produce(&mut s, 9, topic, one_record_batch(b"v")).error_code, 0);
    }
    (b, s)
}

fn commit(corr: i32, group: &str, topic: &str, offset: i64) -> Vec<u8> {
    let p = offset_commit_request::OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(offset);
    let t = offset_commit_request::OffsetCommitRequestTopic::default().with_name(TopicName(sb(topic))).with_partitions(vec![p]);
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![t]);
    request(ApiKey::OffsetCommit, 8, corr, &req)
}

fn committed(addr: &str, group: &str, topic: &str) -> i64 {
    let mut s = connect(addr);
    let t = offset_fetch_request::OffsetFetchRequestTopic::default().with_name(TopicName(sb(topic))).with_partition_indexes(vec![0]);
    let r: OffsetFetchResponse =
        call(&mut s, ApiKey::OffsetFetch, 7, &OffsetFetchRequest::default().with_group_id(GroupId(sb(group))).with_topics(Some(vec![t])));
    assert_eq!(r.error_code, 0);
    r.topics[0].partitions[0].committed_offset
}

/// librdkafka pipelines asynchronous OffsetCommits on one connection; Kafka applies them
/// one at a time, so the last one sent is the one that stays (librdkafka's test 0030).
/// Each commit used to run in its own task, and an earlier one could land last.
#[test]
fn pipelined_offset_commits_take_effect_in_order() {
    let (b, _s) = broker_with_topic("commits", 0);
    for round in 0..5 {
        let group = format!("g{round}");
        let frames = (1..=100).map(|i| commit(i, &group, "commits", i as i64)).collect();
        for (i, f) in pipeline(&b.addr, frames).into_iter().enumerate() {
            let (corr, r): (i32, OffsetCommitResponse) = parse(ApiKey::OffsetCommit, 8, f);
            assert_eq!(corr, i as i32 + 1);
            assert_eq!(r.topics[0].partitions[0].error_code, 0);
        }
        assert_eq!(committed(&b.addr, &group, "commits"), 100, "round {round}: the last commit sent wins");
    }
}

/// A request sees the effects of every request before it on its connection: a Produce
/// right behind the CreateTopics of its topic finds the topic.
#[test]
fn a_request_sees_the_effects_of_the_ones_before_it() {
    let b = Broker::start(&["-o", "auto.create.topics.enable=false"]);
    let mut frames = Vec::new();
    for i in 0..20 {
        let name = format!("seq-{i}");
        let t = create_topics_request::CreatableTopic::default().with_name(TopicName(sb(&name))).with_num_partitions(1).with_replication_factor(1);
        frames.push(request(ApiKey::CreateTopics, 5, 2 * i, &CreateTopicsRequest::default().with_topics(vec![t]).with_timeout_ms(10_000)));
        let p = produce_request::PartitionProduceData::default().with_index(0).with_records(Some(one_record_batch(b"v").into()));
        let td = produce_request::TopicProduceData::default().with_name(TopicName(sb(&name))).with_partition_data(vec![p]);
        frames.push(request(ApiKey::Produce, 9, 2 * i + 1, &ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![td])));
    }
    for (i, f) in pipeline(&b.addr, frames).into_iter().enumerate() {
        if i % 2 == 0 {
            let (_, r): (i32, CreateTopicsResponse) = parse(ApiKey::CreateTopics, 5, f);
            assert_eq!(r.topics[0].error_code, 0);
        } else {
            let (_, r): (i32, ProduceResponse) = parse(ApiKey::Produce, 9, f);
            let p = &r.responses[0].partition_responses[0];
            assert_eq!((p.error_code, p.base_offset), (0, 0), "produce {i} right after its CreateTopics: {:?}", p.error_message);
        }
    }
}

/// The connection reads frames into one buffer: frames cut anywhere (inside the length
/// prefix, inside a body) and several in one write are each read whole and answered in
/// order; a Fetch whose records the connection copies into the response (small) and one
/// it sends with `sendfile` (large) both answer the bytes stored.
#[test]
fn frames_cut_anywhere_are_answered_in_order() {
    let (b, mut s) = broker_with_topic("cuts", 0);
    let big = vec![b'y'; 200 * 1024];
    assert_eq!(produce(&mut s, 9, "cuts", one_record_batch(b"small")).error_code, 0);
    let (_, small) = fetch(&mut s, "cuts", 0, 0);
    assert_eq!(produce(&mut s, 9, "cuts", one_record_batch(&big)).error_code, 0);
    let (_, large) = fetch(&mut s, "cuts", 1, 0);
    assert_eq!(small.as_ref(), &one_record_batch(b"small")[..], "copied record section");
    // The value ends one byte before the batch (the record's empty header count follows).
    assert!(large.len() > 200 * 1024 && large[large.len() - 101..large.len() - 1] == big[..100], "sendfile record section of {} bytes", large.len());
    let frames: Vec<u8> = (0..30).flat_map(|i| request(ApiKey::ApiVersions, 3, i, &api_versions_req())).collect();
    let mut c = connect(&b.addr);
    let mut at = 0;
    for cut in [1, 3, 2, 7, 50, 1, 400, 9] {
        let end = (at + cut).min(frames.len());
        c.write_all(&frames[at..end]).unwrap();
        c.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        at = end;
    }
    c.write_all(&frames[at..]).unwrap();
    for i in 0..30 {
        let (corr, r): (i32, ApiVersionsResponse) = parse(ApiKey::ApiVersions, 3, read_frame(&mut c).unwrap());
        assert_eq!((corr, r.error_code), (i, 0));
    }
}

fn api_versions(s: &mut std::net::TcpStream) {
    let r: ApiVersionsResponse = call(s, ApiKey::ApiVersions, 3, &api_versions_req());
    assert_eq!(r.error_code, 0);
}

/// Whether `s` gets nothing (neither data nor a close) for `wait`.
fn silent_for(s: &mut std::net::TcpStream, wait: Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1];
    let silent = matches!(s.read(&mut buf), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    silent
}

/// `connections.max.idle.ms`: an idle connection and one whose frame stopped arriving
/// are closed; one with a request in flight longer than that is answered, not closed.
#[test]
fn idle_connections_are_closed() {
    let b = Broker::start(&["-o", "connections.max.idle.ms=400"]);
    let mut s = connect(&b.addr);
    create_topic(&mut s, "idle", &[]);
    let mut idle = connect(&b.addr);
    let mut mid_frame = connect(&b.addr);
    mid_frame.write_all(&[0, 0, 0, 100, 0, 18, 0, 3]).unwrap();
    let start = Instant::now();
    // A long poll of 1.5 s, well past the idle time, on a third connection.
    let (hw, records) = fetch(&mut s, "idle", 0, 1500);
    assert_eq!((hw, records.len()), (0, 0));
    assert!(start.elapsed() >= Duration::from_millis(1400), "the fetch waited {:?}", start.elapsed());
    expect_closed(&mut idle, "idle connection");
    expect_closed(&mut mid_frame, "connection stalled mid-frame");
    assert!(start.elapsed() < Duration::from_secs(10));
    api_versions(&mut s);
    let m = common::admin::metrics(&b);
    assert!(m["runnel_connections_closed_total{reason=\"connections.max.idle.ms\"}"] >= 2.0, "{m:?}");
}

/// `max.connections.per.ip`: a connection over it is closed at once and counted.
#[test]
fn connections_per_ip_are_capped() {
    let b = Broker::start(&["-o", "max.connections.per.ip=3"]);
    let mut open: Vec<_> = (0..3).map(|_| connect(&b.addr)).collect();
    for s in &mut open {
        api_versions(s);
    }
    let mut over = connect(&b.addr);
    expect_closed(&mut over, "fourth connection from one address");
    drop(open.pop());
    // The freed place is usable (the broker notices the close asynchronously).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = connect(&b.addr);
        let ok = s.write_all(&request(ApiKey::ApiVersions, 3, 1, &api_versions_req())).is_ok() && read_frame(&mut s).is_ok();
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "a connection after one closed was never served");
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = common::admin::metrics(&b);
    assert!(m["runnel_connections_refused_total{reason=\"max.connections.per.ip\"}"] >= 1.0, "{m:?}");
}

/// `max.connections.per.ip.overrides`: an address with an override gets its own cap, here
/// above a `max.connections.per.ip` of 0 that refuses every other address.
#[test]
fn per_ip_overrides_replace_the_cap() {
    let b = Broker::start(&["-o", "max.connections.per.ip=0", "-o", "max.connections.per.ip.overrides=127.0.0.1:2,10.9.9.9:0"]);
    let mut open: Vec<_> = (0..2).map(|_| connect(&b.addr)).collect();
    for s in &mut open {
        api_versions(s);
    }
    let mut over = connect(&b.addr);
    expect_closed(&mut over, "third connection from 127.0.0.1 (override 2)");
    let m = common::admin::metrics(&b);
    assert!(m["runnel_connections_refused_total{reason=\"max.connections.per.ip\"}"] >= 1.0, "{m:?}");
    // Without an override for the address, max.connections.per.ip=0 is refused at start.
    let refused = common::run_broker_expecting_failure(&["-o", "max.connections.per.ip=0"]);
    assert!(refused.contains("max.connections.per.ip.overrides"), "{refused}");
}

/// `max.connections`: at the cap, a new client waits (not served) until one closes.
#[test]
fn connections_are_capped() {
    let b = Broker::start(&["-o", "max.connections=2"]);
    let mut first = connect(&b.addr);
    let mut second = connect(&b.addr);
    api_versions(&mut first);
    api_versions(&mut second);
    let mut third = connect(&b.addr);
    third.write_all(&request(ApiKey::ApiVersions, 3, 7, &api_versions_req())).unwrap();
    assert!(silent_for(&mut third, Duration::from_millis(700)), "a third connection was served over max.connections=2");
    drop(first);
    let (corr, r): (i32, ApiVersionsResponse) = parse(ApiKey::ApiVersions, 3, read_frame(&mut third).expect("served once a place is free"));
    assert_eq!((corr, r.error_code), (7, 0));
    let m = common::admin::metrics(&b);
    assert_eq!(m["runnel_connections"], 2.0);
    assert!(m["runnel_acceptor_blocked_seconds_total"] >= 0.5, "{m:?}");
}

/// `queued.max.request.bytes` bounds what all connections together hold for requests:
/// with the budget claimed by two stalled 1 MiB frames, nothing more is read (the gauge
/// shows the claims) until the stalled connections are closed; then others are served.
#[test]
fn request_memory_is_bounded_across_connections() {
    let b = Broker::start(&[
        "-o",
        "socket.request.max.bytes=1048576",
        "-o",
        "queued.max.request.bytes=2097152",
        "-o",
        "connections.max.idle.ms=1500",
    ]);
    let mut stalled: Vec<_> = (0..2).map(|_| connect(&b.addr)).collect();
    for s in &mut stalled {
        s.write_all(&[0x00, 0x10, 0x00, 0x00, 0, 18]).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(common::admin::metrics(&b)["runnel_queued_request_bytes"], 2097152.0);
    let mut s = connect(&b.addr);
    let start = Instant::now();
    api_versions(&mut s);
    assert!(start.elapsed() >= Duration::from_millis(800), "served in {:?} with the budget taken", start.elapsed());
    for s in &mut stalled {
        expect_closed(s, "stalled claim");
    }
    api_versions(&mut s);
    assert_eq!(common::admin::metrics(&b)["runnel_queued_request_bytes"], 0.0);
}

/// One Fetch naming the same partition 300,000 times (a 7 MB frame) is answered at once,
/// with the partition once and the last entry's offset, as Kafka merges its fetch map.
/// Each entry used to register a waiter by scanning all the earlier ones: ~10^11 steps.
#[test]
fn a_fetch_naming_one_partition_many_times_is_merged() {
    let b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    create_topic(&mut s, "dup", &[]);
    for v in [b"a", b"b"] {
        assert_eq!(produce(&mut s, 9, "dup", one_record_batch(v)).error_code, 0);
    }
    let entry = |offset| fetch_request::FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1 << 20);
    let mut parts = vec![entry(0); 300_000];
    parts.push(entry(1));
    let t = fetch_request::FetchTopic::default().with_topic(TopicName(sb("dup"))).with_partitions(parts);
    let t2 = fetch_request::FetchTopic::default().with_topic(TopicName(sb("dup"))).with_partitions(vec![entry(1)]);
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1 << 30)
        .with_max_bytes(1 << 20)
        .with_topics(vec![t, t2]);
    let start = Instant::now();
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &req);
    assert!(start.elapsed() < Duration::from_secs(10), "answered in {:?}", start.elapsed());
    assert_eq!(r.responses.len(), 1, "the topic named twice is answered once");
    assert_eq!(r.responses[0].partitions.len(), 1, "the partition named 300,001 times is answered once");
    let p = &r.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 2));
    let batches = p.records.clone().unwrap_or_default();
    assert_eq!(i64::from_be_bytes(batches[..8].try_into().unwrap()), 1, "the last entry's offset counts");
}

/// Runs `frame_for(i)` on `n` connections at once; returns the responses in order.
fn concurrently(addr: &str, n: usize, frame_for: impl Fn(usize) -> Vec<u8>) -> Vec<Vec<u8>> {
    let mut conns: Vec<_> = (0..n).map(|_| connect(addr)).collect();
    let frames: Vec<_> = (0..n).map(frame_for).collect();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let threads: Vec<_> = conns
        .drain(..)
        .zip(frames)
        .map(|(mut s, f)| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                s.write_all(&f).unwrap();
                read_frame(&mut s).unwrap()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// IncrementalAlterConfigs reads, edits and writes a topic's overrides under one lock:
/// eight alters of different configs at once all stay (one used to overwrite another).
#[test]
fn concurrent_config_alters_lose_nothing() {
    let b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    let keys = ["retention.ms", "retention.bytes", "segment.ms", "flush.ms", "delete.retention.ms", "min.compaction.lag.ms", "max.message.bytes", "index.interval.bytes"];
    for round in 0..5 {
        let topic = format!("alter-{round}");
        create_topic(&mut s, &topic, &[]);
        let responses = concurrently(&b.addr, keys.len(), |i| {
            let c = incremental_alter_configs_request::AlterableConfig::default().with_name(sb(keys[i])).with_config_operation(0).with_value(Some(sb(&format!("{}", 100_000 + i))));
            let r = incremental_alter_configs_request::AlterConfigsResource::default().with_resource_type(2).with_resource_name(sb(&topic)).with_configs(vec![c]);
            request(ApiKey::IncrementalAlterConfigs, 1, i as i32, &IncrementalAlterConfigsRequest::default().with_resources(vec![r]))
        });
        for f in responses {
            let (_, r): (i32, IncrementalAlterConfigsResponse) = parse(ApiKey::IncrementalAlterConfigs, 1, f);
            assert_eq!(r.responses[0].error_code, 0, "{:?}", r.responses[0].error_message);
        }
        let res = describe_configs_request::DescribeConfigsResource::default().with_resource_type(2).with_resource_name(sb(&topic)).with_configuration_keys(None);
        let d: DescribeConfigsResponse = call(&mut s, ApiKey::DescribeConfigs, 4, &DescribeConfigsRequest::default().with_resources(vec![res]));
        for (i, k) in keys.iter().enumerate() {
            let c = d.results[0].configs.iter().find(|c| c.name.as_str() == *k).unwrap_or_else(|| panic!("{k} described: {:?}", d.results[0]));
            assert_eq!(c.value.as_deref(), Some(format!("{}", 100_000 + i).as_str()), "round {round}: {k} was lost");
        }
    }
}

/// Of concurrent DeleteTopics of one topic, exactly one deletes it; the others find no
/// topic and commit nothing (each used to commit a DeleteTopic record).
#[test]
fn concurrent_deletes_of_one_topic_commit_once() {
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    let b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    for round in 0..5 {
        let topic = format!("del-{round}");
        create_topic(&mut s, &topic, &[]);
        let responses = concurrently(&b.addr, 8, |i| {
            request(ApiKey::DeleteTopics, 5, i as i32, &DeleteTopicsRequest::default().with_topic_names(vec![TopicName(sb(&topic))]).with_timeout_ms(10_000))
        });
        let codes: Vec<i16> = responses.into_iter().map(|f| parse::<DeleteTopicsResponse>(ApiKey::DeleteTopics, 5, f).1.responses[0].error_code).collect();
        assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "round {round}: {codes:?}");
        assert!(codes.iter().all(|c| *c == 0 || *c == UNKNOWN_TOPIC_OR_PARTITION), "{codes:?}");
    }
}

/// A group id is the client's to choose: in /metrics it is an escaped label value, so it
/// cannot end its label set and forge series of its own.
#[test]
fn group_ids_in_metrics_are_escaped() {
    let (b, _s) = broker_with_topic("lagged", 3);
    let evil = "evil\"} 1\nrunnel_forged 1\n#\\";
    let (_, r): (i32, OffsetCommitResponse) = parse(ApiKey::OffsetCommit, 8, pipeline(&b.addr, vec![commit(1, evil, "lagged", 1)]).remove(0));
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let (status, text) = common::admin::get(b.admin_addr.as_deref().unwrap(), "/metrics");
    assert_eq!(status, 200);
    assert!(!text.lines().any(|l| l.starts_with("runnel_forged")), "a group id forged a series:\n{text}");
    let line = text.lines().find(|l| l.starts_with("runnel_consumer_group_lag{")).expect("a lag series");
    assert!(line.contains(r#"group="evil\"} 1\nrunnel_forged 1\n#\\""#), "{line}");
    assert!(line.ends_with(" 2"), "{line}");
}

/// Request values near the integer limits are answered, never wrapped or a panic: an
/// OffsetCommit v2 with retention_time_ms = i64::MAX (now + retention overflowed), a
/// batch whose baseOffset is i64::MAX (the broker assigns offsets).
#[test]
fn values_at_the_integer_limits_are_answered() {
    let (b, mut s) = broker_with_topic("limits", 0);
    let p = offset_commit_request::OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(7);
    let t = offset_commit_request::OffsetCommitRequestTopic::default().with_name(TopicName(sb("limits"))).with_partitions(vec![p]);
    let req = OffsetCommitRequest::default().with_group_id(GroupId(sb("far"))).with_generation_id_or_member_epoch(-1).with_retention_time_ms(i64::MAX).with_topics(vec![t]);
    let r: OffsetCommitResponse = call(&mut s, ApiKey::OffsetCommit, 2, &req);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    assert_eq!(committed(&b.addr, "far", "limits"), 7);
    let recs: Vec<runnel_protocol::batch::NewRecord> =
        (0..3).map(|_| runnel_protocol::batch::NewRecord { timestamp: 1, key: Some(b"k"), value: Some(b"v"), headers: &[] }).collect();
    let batch = runnel_protocol::batch::encode_batch(i64::MAX, 0, &recs);
    let r = produce(&mut s, 9, "limits", batch);
    assert_eq!((r.error_code, r.base_offset), (0, 0), "{:?}", r.error_message);
    assert_eq!(log_end(&mut s, "limits"), 3);
}

/// `max.broker.partitions` caps what CreateTopics, CreatePartitions and auto-creation may
/// add up to (every partition is a directory and open files).
#[test]
fn partitions_are_capped_broker_wide() {
    const POLICY_VIOLATION: i16 = 44;
    // __consumer_offsets holds one of the five.
    let mut b = Broker::start(&["-o", "max.broker.partitions=5"]);
    let mut s = connect(&b.addr);
    let create = |s: &mut std::net::TcpStream, name: &str, n: i32| -> i16 {
        let t = create_topics_request::CreatableTopic::default().with_name(TopicName(sb(name))).with_num_partitions(n).with_replication_factor(1);
        let r: CreateTopicsResponse = call(s, ApiKey::CreateTopics, 5, &CreateTopicsRequest::default().with_topics(vec![t]).with_timeout_ms(10_000));
        r.topics[0].error_code
    };
    assert_eq!(create(&mut s, "three", 3), 0);
    assert_eq!(create(&mut s, "two", 2), POLICY_VIOLATION);
    let t = create_partitions_request::CreatePartitionsTopic::default().with_name(TopicName(sb("three"))).with_count(5).with_assignments(None);
    let r: CreatePartitionsResponse = call(&mut s, ApiKey::CreatePartitions, 3, &CreatePartitionsRequest::default().with_topics(vec![t]).with_timeout_ms(10_000));
    assert_eq!(r.results[0].error_code, POLICY_VIOLATION, "{:?}", r.results[0].error_message);
    let md = |s: &mut std::net::TcpStream, name: &str| -> i16 {
        let t = metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(sb(name))));
        let r: MetadataResponse = call(s, ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(Some(vec![t])).with_allow_auto_topic_creation(true));
        r.topics[0].error_code
    };
    assert_eq!(md(&mut s, "auto-one"), 0, "the fifth partition is auto-created");
    assert_ne!(md(&mut s, "auto-two"), 0, "a sixth is not");
    b.kill9();
    b.restart();
    assert_serving(&mut b);
}

/// Runs `admin` (an admin request) on a connection of its own, timed,
/// while another connection sends Metadata every `every`: returns how many Metadata requests
/// were answered meanwhile, the slowest one, and how long `admin` took.
fn metadata_while(b: &Broker, every: Duration, admin: impl FnOnce(&mut std::net::TcpStream) + Send + 'static) -> (usize, Duration, Duration) {
    let addr = b.addr.clone();
    let job = std::thread::spawn(move || {
        let started = Instant::now();
        admin(&mut connect(&addr));
        started.elapsed()
    });
    std::thread::sleep(every);
    let mut s = connect(&b.addr);
    let (mut worst, mut during) = (Duration::ZERO, 0);
    while !job.is_finished() {
        let t = Instant::now();
        let md: MetadataResponse = call(&mut s, ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(None));
        assert!(md.topics.iter().any(|t| t.name.as_deref().map(|n| &**n) == Some("other")));
        worst = worst.max(t.elapsed());
        during += 1;
        std::thread::sleep(every);
    }
    (during, worst, job.join().unwrap())
}

fn create_wide(s: &mut std::net::TcpStream, partitions: i32) {
    let t = create_topics_request::CreatableTopic::default().with_name(TopicName(sb("wide"))).with_num_partitions(partitions).with_replication_factor(1);
    let r: CreateTopicsResponse = call(s, ApiKey::CreateTopics, 5, &CreateTopicsRequest::default().with_topics(vec![t]).with_timeout_ms(60_000));
    assert_eq!(r.topics[0].error_code, 0);
}

/// Creating many partitions (a directory each, fsynced with its parent) held the metadata
/// lock throughout, so every request that reads the metadata waited for all of them.
#[test]
fn creating_many_partitions_does_not_stall_metadata_requests() {
    common::raise_fd_limit(4096);
    let (b, _s) = broker_with_topic("other", 0);
    let (during, worst, took) = metadata_while(&b, Duration::from_millis(20), |s| create_wide(s, 200));
    assert!(during >= 3 && worst < took / 3, "{during} Metadata requests while 200 partitions were created in {took:?}; the slowest took {worst:?}");
}

/// DeleteTopics renames each partition directory away (and fsyncs its parent) without the
/// metadata lock: Metadata requests keep being answered while a 400-partition topic is
/// deleted (before, they waited for every rename: a fifth of the deletion), and the name can
/// be created again at once.
#[test]
fn deleting_many_partitions_does_not_stall_metadata_requests() {
    common::raise_fd_limit(4096);
    let (b, _s) = broker_with_topic("other", 0);
    create_wide(&mut connect(&b.addr), 400);
    let (during, worst, took) = metadata_while(&b, Duration::from_millis(10), |s| {
        let req = DeleteTopicsRequest::default().with_topic_names(vec![TopicName(sb("wide"))]).with_timeout_ms(60_000);
        let r: DeleteTopicsResponse = call(s, ApiKey::DeleteTopics, 4, &req);
        assert_eq!(r.responses[0].error_code, 0);
    });
    eprintln!("{during} Metadata requests while 400 partitions were deleted in {took:?}; the slowest took {worst:?}");
    assert!(during >= 3 && worst < took / 10, "{during} Metadata requests while 400 partitions were deleted in {took:?}; the slowest took {worst:?}");
    create_wide(&mut connect(&b.addr), 400);
}
