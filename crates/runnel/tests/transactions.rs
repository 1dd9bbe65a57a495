//! Transactions through librdkafka's transactional producer (the rdkafka crate) and raw
//! requests: open transactions across kill -9 and clean restarts (the coordinator reloads
//! them from `__transaction_state`, a new producer with the same transactional.id aborts
//! them, read_committed consumers never see aborted records), read_committed fetches
//! bounded by the last stable offset with the aborted transactions listed (from the
//! `.txnindex` files), and the admin APIs (DescribeTransactions, ListTransactions).

mod common;

use std::time::Duration;

use common::kafka::{config, consumer, request, TIMEOUT};
use common::wire::sb;
use common::Broker;
use kafka_protocol::messages::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

const TOPIC: &str = "txn-restarts";

fn txn_producer(b: &Broker, id: &str) -> BaseProducer {
    let p: BaseProducer = config(b, &[("transactional.id", id), ("linger.ms", "1"), ("message.timeout.ms", "15000")], &[])
        .create()
        .expect("create transactional producer");
    p.init_transactions(TIMEOUT).expect("init_transactions");
    p
}

/// Sends `values` to partition 0 in the producer's open transaction and waits for them.
fn send(p: &BaseProducer, values: &[&str]) {
    for v in values {
        p.send(BaseRecord::<(), str>::to(TOPIC).payload(v).partition(0)).expect("enqueue");
    }
    p.flush(TIMEOUT).expect("flush");
}

/// Every value of partition 0 with `isolation`, read until nothing new arrives.
fn read(b: &Broker, isolation: &str) -> Vec<String> {
    let c: BaseConsumer = consumer(b, &[("isolation.level", isolation), ("enable.partition.eof", "true")]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap()),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => panic!("consume: {e}"),
            None => {}
        }
    }
    out
}

fn describe(b: &Broker, id: &str) -> describe_transactions_response::TransactionState {
    let req = DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(sb(id))]);
    request(b, &req, 0).transaction_states.remove(0)
}

fn last_stable_offset(b: &Broker) -> i64 {
    let c = consumer(b, &[("isolation.level", "read_committed")]);
    c.fetch_watermarks(TOPIC, 0, TIMEOUT).expect("watermarks").1
}

#[test]
fn open_transactions_survive_kill9_and_clean_restarts() {
    let mut b = Broker::start(&["-o", "transaction.state.log.num.partitions=3", "-o", "num.partitions=1"]);
    let p = txn_producer(&b, "restarts");
    p.begin_transaction().unwrap();
    send(&p, &["a1", "a2", "a3"]);
    let before = describe(&b, "restarts");
    assert_eq!((before.error_code, before.transaction_state.as_str()), (0, "Ongoing"));
    assert_eq!(before.topics[0].partitions, vec![0]);
    drop(p);

    // kill -9 with the transaction open: it is found again, and still holds back readers.
    b.kill9();
    b.restart();
    let after = describe(&b, "restarts");
    assert_eq!((after.transaction_state.as_str(), after.producer_id, after.producer_epoch), ("Ongoing", before.producer_id, before.producer_epoch));
    assert_eq!(last_stable_offset(&b), 0, "the open transaction's first offset");
    assert_eq!(read(&b, "read_committed"), Vec::<String>::new());

    // A new producer with the same transactional.id aborts it (and is the next epoch).
    let p = txn_producer(&b, "restarts");
    let fenced = describe(&b, "restarts");
    assert_eq!((fenced.transaction_state.as_str(), fenced.producer_epoch), ("Empty", before.producer_epoch + 2));
    p.begin_transaction().unwrap();
    send(&p, &["b1", "b2"]);
    p.commit_transaction(TIMEOUT).unwrap();
    assert_eq!(read(&b, "read_committed"), vec!["b1", "b2"]);
    assert_eq!(read(&b, "read_uncommitted"), vec!["a1", "a2", "a3", "b1", "b2"]);

    // The aborted transaction is in the partition's .txnindex and in read_committed fetches.
    let dir = b.data_dir.join(format!("{TOPIC}-0"));
    assert!(std::fs::read_dir(&dir).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".txnindex")));
    let fetched = fetch_committed(&b);
    let aborted = fetched.aborted_transactions.clone().unwrap_or_default();
    assert_eq!(aborted.len(), 1);
    assert_eq!((aborted[0].producer_id.0, aborted[0].first_offset), (before.producer_id.0, 0));
    assert_eq!(fetched.last_stable_offset, fetched.high_watermark);

    // A clean restart with another transaction open: found again, then aborted by a new producer.
    p.begin_transaction().unwrap();
    send(&p, &["c1"]);
    drop(p);
    assert!(b.stop());
    b.restart();
    assert_eq!(describe(&b, "restarts").transaction_state.as_str(), "Ongoing");
    let listed = request(&b, &ListTransactionsRequest::default().with_state_filters(vec![sb("Ongoing"), sb("Bogus")]), 1);
    assert_eq!(listed.transaction_states.len(), 1);
    assert_eq!(listed.transaction_states[0].transactional_id.0.as_str(), "restarts");
    assert_eq!(listed.unknown_state_filters, vec![sb("Bogus")]);
    let p = txn_producer(&b, "restarts");
    p.begin_transaction().unwrap();
    send(&p, &["d1"]);
    p.commit_transaction(TIMEOUT).unwrap();
    assert_eq!(read(&b, "read_committed"), vec!["b1", "b2", "d1"]);
    assert_eq!(fetch_committed(&b).aborted_transactions.unwrap_or_default().len(), 2, "both aborts, after a restart");
    let unknown = describe(&b, "nobody");
    assert_eq!(unknown.error_code, 105, "TRANSACTIONAL_ID_NOT_FOUND");
}

/// A read_committed Fetch (v11) of partition 0 from offset 0.
fn fetch_committed(b: &Broker) -> fetch_response::PartitionData {
    let part = fetch_request::FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20);
    let topic = fetch_request::FetchTopic::default().with_topic(TopicName(sb(TOPIC))).with_partitions(vec![part]);
    let req = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_isolation_level(1).with_topics(vec![topic]);
    let mut r = request(b, &req, 11);
    r.responses.remove(0).partitions.remove(0)
}
