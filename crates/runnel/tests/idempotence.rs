//! Idempotent producers: InitProducerId at every version hands out ids that stay unique
//! across restarts; raw produce requests with producer ids get Kafka's answers to a retry
//! (the original offset, nothing written), a sequence gap (OUT_OF_ORDER_SEQUENCE_NUMBER)
//! and an old epoch (INVALID_PRODUCER_EPOCH), also after kill -9 and clean restarts; and
//! librdkafka's idempotent producer writes through the broker.

mod common;

use common::kafka::{block_on, consume_range, producer, TIMEOUT};
use common::wire::{call, connect, create_topic, log_end, one_record_batch, produce};
use common::Broker;
use kafka_protocol::messages::*;
use rdkafka::producer::FutureRecord;
use runnel_protocol::batch::{encode_batch, set_producer, set_transactional, NewRecord};

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_RECORD: i16 = 87;
const INVALID_TXN_STATE: i16 = 48;

fn init_producer_id(addr: &str, version: i16) -> (i64, i16) {
    let mut s = connect(addr);
    let r: InitProducerIdResponse = call(
        &mut s,
        ApiKey::InitProducerId,
        version,
        &InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000).with_producer_id(ProducerId(-1)).with_producer_epoch(-1),
    );
    assert_eq!(r.error_code, 0, "InitProducerId v{version}");
    (r.producer_id.0, r.producer_epoch)
}

/// A batch of `n` records of producer `pid`/`epoch` from sequence `seq`.
fn pbatch(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let recs = vec![NewRecord { timestamp: 1_700_000_000_000, key: Some(b"k"), value: Some(b"v"), headers: &[] }; n];
    let mut b = encode_batch(0, 0, &recs);
    set_producer(&mut b, pid, epoch, seq);
    b
}

#[test]
fn producer_ids_are_unique_across_versions_and_restarts() {
    let mut b = Broker::start(&[]);
    let mut seen = std::collections::BTreeSet::new();
    for v in 0..=5 {
        let (id, epoch) = init_producer_id(&b.addr, v);
        assert_eq!(epoch, 0);
        assert!(seen.insert(id), "id {id} handed out twice");
    }
    b.kill9();
    b.restart();
    for _ in 0..3 {
        assert!(seen.insert(init_producer_id(&b.addr, 4).0), "an id repeated after kill -9");
    }
    assert!(b.stop());
    b.restart();
    assert!(seen.insert(init_producer_id(&b.addr, 4).0), "an id repeated after a clean restart");
}

#[test]
fn retries_gaps_and_old_epochs_get_kafkas_answers_across_restarts() {
    let mut b = Broker::start(&["-o", "log.segment.bytes=2000"]);
    let mut s = connect(&b.addr);
    create_topic(&mut s, "idem", &[]);
    let (pid, _) = init_producer_id(&b.addr, 4);
    let mut seq = 0;
    for i in 0..20 {
        let r = produce(&mut s, 9, "idem", pbatch(pid, 0, seq, 3));
        assert_eq!((r.error_code, r.base_offset), (0, i * 3));
        seq += 3;
    }
    // A retry of the last batch: its original offset, nothing written.
    let r = produce(&mut s, 9, "idem", pbatch(pid, 0, seq - 3, 3));
    assert_eq!((r.error_code, r.base_offset), (0, 57));
    assert_eq!(log_end(&mut s, "idem"), 60);
    // A gap.
    let r = produce(&mut s, 9, "idem", pbatch(pid, 0, seq + 1, 1));
    assert_eq!(r.error_code, OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert_eq!(log_end(&mut s, "idem"), 60);

    // kill -9: the state is rebuilt from the log tail after the last roll's snapshot.
    b.kill9();
    b.restart();
    let mut s = connect(&b.addr);
    let r = produce(&mut s, 9, "idem", pbatch(pid, 0, seq - 3, 3));
    assert_eq!((r.error_code, r.base_offset), (0, 57), "retry after kill -9");
    let r = produce(&mut s, 9, "idem", pbatch(pid, 0, seq + 1, 1));
    assert_eq!(r.error_code, OUT_OF_ORDER_SEQUENCE_NUMBER);
    // A new epoch starts at 0 and fences the old one.
    let r = produce(&mut s, 9, "idem", pbatch(pid, 1, 0, 1));
    assert_eq!((r.error_code, r.base_offset), (0, 60));
    let r = produce(&mut s, 9, "idem", pbatch(pid, 0, seq, 1));
    assert_eq!(r.error_code, INVALID_PRODUCER_EPOCH);

    // A clean restart: the snapshot written at shutdown.
    assert!(b.stop());
    b.restart();
    let mut s = connect(&b.addr);
    let r = produce(&mut s, 9, "idem", pbatch(pid, 1, 0, 1));
    assert_eq!((r.error_code, r.base_offset), (0, 60), "retry after a clean restart");
    let r = produce(&mut s, 9, "idem", pbatch(pid, 0, seq, 1));
    assert_eq!(r.error_code, INVALID_PRODUCER_EPOCH);
    assert_eq!(log_end(&mut s, "idem"), 61);
    // DescribeProducers shows the producer as the partition knows it.
    let t = describe_producers_request::TopicRequest::default().with_name(TopicName(common::wire::sb("idem"))).with_partition_indexes(vec![0, 7]);
    let r: DescribeProducersResponse =
        call(&mut s, ApiKey::DescribeProducers, 0, &DescribeProducersRequest::default().with_topics(vec![t]));
    let parts = &r.topics[0].partitions;
    assert_eq!(parts[0].error_code, 0);
    let p = &parts[0].active_producers;
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].producer_id.0, p[0].producer_epoch, p[0].last_sequence, p[0].current_txn_start_offset), (pid, 1, 0, -1));
    assert_eq!(parts[1].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    assert!(std::fs::read_dir(b.data_dir.join("idem-0"))
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".snapshot")));
}

#[test]
fn control_and_stray_transactional_batches_are_refused() {
    let b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    create_topic(&mut s, "ctl", &[]);
    let mut control = one_record_batch(b"x");
    control[22] |= 0x20;
    runnel_protocol::batch::update_crc(&mut control);
    assert_eq!(produce(&mut s, 9, "ctl", control).error_code, INVALID_RECORD);
    let mut t = pbatch(5, 0, 0, 1);
    set_transactional(&mut t);
    assert_eq!(produce(&mut s, 9, "ctl", t).error_code, INVALID_TXN_STATE);
    assert_eq!(log_end(&mut s, "ctl"), 0);
}

#[test]
fn librdkafka_idempotent_producer_writes_in_order() {
    let b = Broker::start(&[]);
    let p = producer(&b, &[("enable.idempotence", "true"), ("linger.ms", "2")]);
    let n = 2000;
    block_on(async {
        let sends: Vec<_> = (0..n)
            .map(|i| {
                let v = format!("{i}");
                p.send_result(FutureRecord::<(), _>::to("librd-idem").payload(&v).partition(0)).expect("queue")
            })
            .collect();
        for (i, f) in sends.into_iter().enumerate() {
            let d = tokio::time::timeout(TIMEOUT, f).await.expect("ack in time").expect("sent").expect("delivered");
            assert_eq!(d.offset, i as i64);
        }
    });
    let recs = consume_range(&b, "librd-idem", 0, 0, n);
    let values: Vec<String> = recs.iter().map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap()).collect();
    assert_eq!(values, (0..n).map(|i| i.to_string()).collect::<Vec<_>>());
}
