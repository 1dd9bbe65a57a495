//! Memory from sizes a client chooses: a snappy block's claimed length, a batch's
//! timestamps (which drive the time index and retention), the number of batches (which
//! drives the indexes), and config values. Each is bounded: the broker answers with a
//! Kafka error, keeps serving, and its peak memory stays small.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::wire::*;
use common::Broker;
use kafka_protocol::messages::*;
use runnel_protocol::batch::{encode_batch, update_crc, NewRecord, BATCH_HEADER_LEN};

const INVALID_TIMESTAMP: i16 = 32;
const INVALID_CONFIG: i16 = 40;
/// Peak memory a debug broker stays under in these tests (it idles at ~20-40 MiB); a
/// 128 MiB allocation driven by one request breaks it.
const PEAK_RSS_MIB: u64 = 110;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn batch_at(ts: i64) -> Vec<u8> {
    encode_batch(0, 0, &[NewRecord { timestamp: ts, key: Some(b"k"), value: Some(b"v"), headers: &[] }])
}

/// A snappy batch whose records are one raw block whose header claims 128 MiB, followed
/// by 32 bytes: a client's word, which decompression used to zero-fill before decoding.
fn snappy_bomb() -> Vec<u8> {
    let mut b = encode_batch(0, 2, &[NewRecord { timestamp: now_ms(), key: Some(b"k"), value: Some(b"v"), headers: &[] }]);
    b.truncate(BATCH_HEADER_LEN);
    b.extend_from_slice(&[0x80, 0x80, 0x80, 0x40]);
    b.extend_from_slice(&[0; 32]);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    update_crc(&mut b);
    b
}

#[test]
fn a_snappy_length_claiming_128_mib_is_refused_without_allocating_it() {
    let mut b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    create_topic(&mut s, "snappy", &[]);
    let addr = b.addr.clone();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = connect(&addr);
                (0..4).map(|_| produce(&mut s, 9, "snappy", snappy_bomb()).error_code).collect::<Vec<i16>>()
            })
        })
        .collect();
    for c in clients {
        for code in c.join().unwrap() {
            assert!(code == CORRUPT_MESSAGE || code == INVALID_RECORD, "error code {code}");
        }
    }
    assert_nothing_stored(&mut s, "snappy", "snappy bombs");
    assert_eq!(produce(&mut s, 9, "snappy", batch_at(now_ms())).error_code, 0);
    assert_serving(&mut b);
    let peak = b.peak_rss_mib();
    assert!(peak < PEAK_RSS_MIB, "peak RSS {peak} MiB after 16 snappy bombs");
}

/// A CreateTime batch whose maxTimestamp is i64::MAX used to be stored, and time retention
/// then never deleted its segment. Kafka's `message.timestamp.after.max.ms` (default 1
/// hour) refuses it, as does `message.timestamp.before.max.ms` for the past.
#[test]
fn far_future_timestamps_are_invalid_timestamp() {
    let mut b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    create_topic(&mut s, "times", &[]);
    for ts in [i64::MAX, now_ms() + 2 * 3_600_000] {
        let r = produce(&mut s, 9, "times", batch_at(ts));
        assert_eq!(r.error_code, INVALID_TIMESTAMP, "timestamp {ts}: {:?}", r.error_message);
    }
    assert_nothing_stored(&mut s, "times", "future timestamps");
    assert_eq!(produce(&mut s, 9, "times", batch_at(now_ms() + 60_000)).error_code, 0);
    assert_eq!(produce(&mut s, 9, "times", batch_at(-1)).error_code, 0, "no timestamp passes, as in Kafka");

    create_topic(&mut s, "recent", &[("message.timestamp.before.max.ms", "86400000")]);
    assert_eq!(produce(&mut s, 9, "recent", batch_at(now_ms() - 2 * 86_400_000)).error_code, INVALID_TIMESTAMP);
    create_topic(&mut s, "anytime", &[("message.timestamp.after.max.ms", "9223372036854775807")]);
    assert_eq!(produce(&mut s, 9, "anytime", batch_at(i64::MAX)).error_code, 0);
    create_topic(&mut s, "stamped", &[("message.timestamp.type", "LogAppendTime")]);
    assert_eq!(produce(&mut s, 9, "stamped", batch_at(i64::MAX)).error_code, 0, "the broker's clock replaces it");
    assert_serving(&mut b);
}

/// One produce of 3,000 tiny batches with growing timestamps: the time index gains an
/// entry per `index.interval.bytes` of log (it had one per batch, ~17 % of the bytes
/// written), and timestamp lookups stay exact, before and after a restart.
#[test]
fn the_time_index_grows_once_per_index_interval() {
    let mut b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    create_topic(&mut s, "tiny", &[]);
    let base = now_ms() - 10_000_000;
    let n = 3_000i64;
    let batches: Vec<u8> = (0..n).flat_map(|i| batch_at(base + i * 10)).collect();
    let log_bytes = batches.len() as u64;
    assert_eq!(produce(&mut s, 9, "tiny", batches).error_code, 0);
    let check = |s: &mut std::net::TcpStream| {
        for (i, ts) in [(0, base), (1234, base + 12_340), (1234, base + 12_335), (n - 1, base + (n - 1) * 10)] {
            assert_eq!(offset_for(s, "tiny", ts), (0, i), "offset for timestamp {ts}");
        }
        assert_eq!(offset_for(s, "tiny", base + n * 10).1, -1, "past the newest timestamp");
        assert_eq!(offset_for(s, "tiny", -3), (0, n - 1), "the max timestamp's offset");
    };
    check(&mut s);
    let timeindex = b.data_dir.join("tiny-0").join("00000000000000000000.timeindex");
    let entries = std::fs::metadata(&timeindex).unwrap().len() / 12;
    assert!(entries <= log_bytes / 4096 + 1, "{entries} time index entries for {log_bytes} bytes of log");
    drop(s);
    assert!(b.stop());
    b.restart();
    check(&mut connect(&b.addr));
}

/// ListOffsets v7 for partition 0 at `timestamp`: (error code, offset).
fn offset_for(s: &mut std::net::TcpStream, topic: &str, timestamp: i64) -> (i16, i64) {
    let p = list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(timestamp);
    let t = list_offsets_request::ListOffsetsTopic::default().with_name(TopicName(sb(topic))).with_partitions(vec![p]);
    let r: ListOffsetsResponse =
        call(s, ApiKey::ListOffsets, 7, &ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![t]));
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset)
}

/// Config values were checked with `trim().parse`, so a value of any size was stored (in
/// the metadata log, and echoed by DescribeConfigs). Now at most 1 KiB is accepted.
#[test]
fn config_values_are_bounded() {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource as IncResource, AlterableConfig as IncConfig};
    let mut b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    let padded = format!("{}1000", " ".repeat(1 << 20));
    let t = create_topics_request::CreatableTopic::default()
        .with_name(TopicName(sb("padded")))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![create_topics_request::CreatableTopicConfig::default().with_name(sb("retention.ms")).with_value(Some(sb(&padded)))]);
    let r: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 5, &CreateTopicsRequest::default().with_topics(vec![t]).with_timeout_ms(10_000));
    assert_eq!(r.topics[0].error_code, INVALID_CONFIG);
    assert!(r.topics[0].error_message.as_ref().unwrap().len() < 200, "the refusal does not echo the value");

    create_topic(&mut s, "kept", &[("retention.ms", "5000")]);
    let req = AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(sb("kept"))
        .with_configs(vec![AlterableConfig::default().with_name(sb("retention.ms")).with_value(Some(sb(&padded)))])]);
    let r: AlterConfigsResponse = call(&mut s, ApiKey::AlterConfigs, 2, &req);
    assert_eq!(r.responses[0].error_code, INVALID_CONFIG);
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![IncResource::default()
        .with_resource_type(2)
        .with_resource_name(sb("kept"))
        .with_configs(vec![IncConfig::default().with_name(sb("retention.ms")).with_config_operation(0).with_value(Some(sb(&padded)))])]);
    let r: IncrementalAlterConfigsResponse = call(&mut s, ApiKey::IncrementalAlterConfigs, 1, &req);
    assert_eq!(r.responses[0].error_code, INVALID_CONFIG);

    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let req = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(sb("kept"))
        .with_configuration_keys(Some(vec![sb("retention.ms")]))]);
    let r: DescribeConfigsResponse = call(&mut s, ApiKey::DescribeConfigs, 4, &req);
    assert_eq!(r.results[0].configs[0].value.as_deref(), Some("5000"));
    assert_serving(&mut b);
}
