//! Produce as Kafka answers it: per-record errors (KIP-467), acks validation, the topic
//! config `compression.type`, and Kafka topic configs not served yet.

mod common;

use common::kafka::consume_all;
use common::wire::*;
use common::Broker;
use kafka_protocol::messages::*;
use runnel_protocol::batch::{encode_batch, recompress, Compression, NewRecord};

const INVALID_REQUIRED_ACKS: i16 = 21;
const INVALID_CONFIG: i16 = 40;

fn batch(keys: &[Option<&str>]) -> Vec<u8> {
    let recs: Vec<NewRecord> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| NewRecord { timestamp: 1_700_000_000_000 + i as i64, key: k.map(str::as_bytes), value: Some(b"value"), headers: &[] })
        .collect();
    encode_batch(0, 0, &recs)
}

fn produce_acks(s: &mut std::net::TcpStream, version: i16, topic: &str, acks: i16, records: Vec<u8>) -> produce_response::PartitionProduceResponse {
    let p = produce_request::PartitionProduceData::default().with_index(0).with_records(Some(records.into()));
    let t = produce_request::TopicProduceData::default().with_name(TopicName(sb(topic))).with_partition_data(vec![p]);
    let mut r: ProduceResponse = call(s, ApiKey::Produce, version, &ProduceRequest::default().with_acks(acks).with_timeout_ms(10_000).with_topic_data(vec![t]));
    r.responses.remove(0).partition_responses.remove(0)
}

/// KIP-467: records without a key on a compacted topic are named in `record_errors` with
/// their index in the batch (librdkafka's test 0011 fails only those records).
#[test]
fn keyless_records_on_a_compacted_topic_are_named() {
    let b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    create_topic(&mut s, "compacted", &[("cleanup.policy", "compact")]);
    let r = produce_acks(&mut s, 8, "compacted", -1, batch(&[Some("a"), None, Some("c"), None]));
    assert_eq!(r.error_code, INVALID_RECORD);
    let errors: Vec<(i32, String)> =
        r.record_errors.iter().map(|e| (e.batch_index, e.batch_index_error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())).collect();
    assert_eq!(errors.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 3], "{errors:?}");
    assert!(errors.iter().all(|(_, m)| m.contains("without key")), "{errors:?}");
    assert_nothing_stored(&mut s, "compacted", "a batch with keyless records");
    assert_eq!(produce_acks(&mut s, 8, "compacted", -1, batch(&[Some("a"), Some("b")])).error_code, 0);
}

/// acks other than -1, 0, 1 is INVALID_REQUIRED_ACKS, and nothing is stored.
#[test]
fn invalid_acks_are_refused() {
    let b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    create_topic(&mut s, "acks", &[]);
    for acks in [2, -7, i16::MAX] {
        let r = produce_acks(&mut s, 9, "acks", acks, one_record_batch(b"v"));
        assert_eq!(r.error_code, INVALID_REQUIRED_ACKS, "acks={acks}");
    }
    assert_nothing_stored(&mut s, "acks", "produce with invalid acks");
    for acks in [1, -1] {
        assert_eq!(produce_acks(&mut s, 9, "acks", acks, one_record_batch(b"v")).error_code, 0);
    }
}

/// `compression.type`: `producer` keeps a batch's codec; a codec or `uncompressed`
/// makes the broker recompress batches that differ; consumers read them all.
#[test]
fn compression_type_recompresses_batches_that_differ() {
    let b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    let gzip = recompress(&batch(&[Some("k"), Some("l")]), Compression::Gzip).unwrap().unwrap();
    for (topic, config, sent, stored) in [
        ("as-sent", "producer", gzip.clone(), 1),
        ("to-lz4", "lz4", batch(&[Some("k"), Some("l")]), 3),
        ("to-zstd", "zstd", gzip.clone(), 4),
        ("to-plain", "uncompressed", gzip.clone(), 0),
    ] {
        create_topic(&mut s, topic, &[("compression.type", config)]);
        let r = produce_acks(&mut s, 9, topic, -1, sent);
        assert_eq!(r.error_code, 0, "{topic}: {:?}", r.error_message);
        let (hw, records) = fetch(&mut s, topic, 0, 0);
        assert_eq!(hw, 2);
        assert_eq!(records[22] & 7, stored, "{topic}: codec of the stored batch");
        let got = consume_all(&b, topic, 0);
        assert_eq!(got.len(), 2, "{topic}");
        assert_eq!(got[1].key.as_deref(), Some(&b"l"[..]));
    }
}

/// Kafka's topic configs that are not served yet are refused with a message that says so.
#[test]
fn kafka_configs_not_served_are_refused_as_such() {
    let b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    let t = create_topics_request::CreatableTopic::default()
        .with_name(TopicName(sb("pre")))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![create_topics_request::CreatableTopicConfig::default().with_name(sb("preallocate")).with_value(Some(sb("true")))]);
    let r: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 5, &CreateTopicsRequest::default().with_topics(vec![t]));
    assert_eq!(r.topics[0].error_code, INVALID_CONFIG);
    let msg = r.topics[0].error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
    assert!(msg.contains("not support yet"), "{msg}");
}
