//! Incremental fetch sessions (KIP-227) on the wire: a full fetch opens a session, an
//! incremental one is answered only the partitions that changed, partitions are added and
//! forgotten, a session request still long-polls, epoch -1 closes; the session errors
//! (FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH, FETCH_SESSION_TOPIC_ID_ERROR);
//! the cache's bound and eviction, the bound per connection, and sessions turned off.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::wire::*;
use common::Broker;
use kafka_protocol::messages::*;
use uuid::Uuid;

const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
const FETCH_SESSION_TOPIC_ID_ERROR: i16 = 106;

fn create(s: &mut TcpStream, name: &str, partitions: i32) -> Uuid {
    let t = create_topics_request::CreatableTopic::default().with_name(TopicName(sb(name))).with_num_partitions(partitions).with_replication_factor(1);
    let r: CreateTopicsResponse = call(s, ApiKey::CreateTopics, 7, &CreateTopicsRequest::default().with_topics(vec![t]).with_timeout_ms(10_000));
    assert_eq!(r.topics[0].error_code, 0);
    r.topics[0].topic_id
}

fn produce_to(s: &mut TcpStream, topic: &str, partition: i32, value: &[u8]) {
    let p = produce_request::PartitionProduceData::default().with_index(partition).with_records(Some(one_record_batch(value).into()));
    let t = produce_request::TopicProduceData::default().with_name(TopicName(sb(topic))).with_partition_data(vec![p]);
    let r: ProduceResponse = call(s, ApiKey::Produce, 9, &ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![t]));
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}

/// A Fetch of `parts` (partition, fetch offset) of `topic`, forgetting `forget`.
fn fetch_req(topic: &str, id: Uuid, session: (i32, i32), parts: &[(i32, i64)], forget: &[i32], max_wait_ms: i32) -> FetchRequest {
    let ps = parts.iter().map(|&(p, o)| fetch_request::FetchPartition::default().with_partition(p).with_fetch_offset(o).with_partition_max_bytes(1 << 20)).collect::<Vec<_>>();
    let topics = if ps.is_empty() { vec![] } else { vec![fetch_request::FetchTopic::default().with_topic(TopicName(sb(topic))).with_topic_id(id).with_partitions(ps)] };
    let forgotten = if forget.is_empty() {
        vec![]
    } else {
        vec![fetch_request::ForgottenTopic::default().with_topic(TopicName(sb(topic))).with_topic_id(id).with_partitions(forget.to_vec())]
    };
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(session.0)
        .with_session_epoch(session.1)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten)
}

/// The partitions answered: (partition, error, high watermark, record bytes).
fn answered(r: &FetchResponse) -> Vec<(i32, i16, i64, usize)> {
    let mut v: Vec<_> = r.responses.iter().flat_map(|t| &t.partitions).map(|p| (p.partition_index, p.error_code, p.high_watermark, p.records.as_ref().map_or(0, |r| r.len()))).collect();
    v.sort();
    v
}

fn metric(b: &Broker, name: &str) -> f64 {
    common::admin::metrics(b).get(name).copied().unwrap_or_else(|| panic!("no metric {name}"))
}

#[test]
fn incremental_fetches_answer_only_what_changed() {
    let b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    let mut producer = connect(&b.addr);
    create(&mut s, "inc", 3);
    for p in 0..3 {
        produce_to(&mut producer, "inc", p, b"first");
    }
    let v = 12;
    // A full fetch (epoch 0) opens a session and is answered in full.
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, v, &fetch_req("inc", Uuid::nil(), (0, 0), &[(0, 0), (1, 0), (2, 0)], &[], 0));
    assert_eq!(r.error_code, 0);
    let id = r.session_id;
    assert_ne!(id, 0, "a full fetch with epoch 0 opens a session");
    assert_eq!(answered(&r).iter().map(|a| (a.0, a.2)).collect::<Vec<_>>(), vec![(0, 1), (1, 1), (2, 1)]);
    assert!(answered(&r).iter().all(|a| a.3 > 0));
    // The fetcher moves on past what it read: only the new offsets are sent, no partition
    // has anything new, so the answer has none.
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, v, &fetch_req("inc", Uuid::nil(), (id, 1), &[(0, 1), (1, 1), (2, 1)], &[], 0));
    assert_eq!((r.error_code, r.session_id), (0, id));
    assert_eq!(answered(&r), vec![], "nothing changed, nothing answered");
    // A record on partition 1 only: an incremental fetch naming no partition gets it alone.
    produce_to(&mut producer, "inc", 1, b"second");
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, v, &fetch_req("inc", Uuid::nil(), (id, 2), &[], &[], 0));
    let a = answered(&r);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!((a[0].0, a[0].1, a[0].2), (1, 0, 2));
    assert!(a[0].3 > 0);
    // Partition 0 forgotten: its new records are not sent.
    produce_to(&mut producer, "inc", 0, b"third");
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, v, &fetch_req("inc", Uuid::nil(), (id, 3), &[(1, 2)], &[0], 0));
    assert_eq!(answered(&r), vec![], "partition 0 was forgotten, 1 moved past its records");
    // Added again, it is answered (it is new to the session).
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, v, &fetch_req("inc", Uuid::nil(), (id, 4), &[(0, 1)], &[], 0));
    let a = answered(&r);
    assert_eq!(a.iter().map(|a| (a.0, a.2)).collect::<Vec<_>>(), vec![(0, 2)]);
    assert!(a[0].3 > 0);
    // A partition that does not exist is answered with its error every time.
    for epoch in [5, 6] {
        let r: FetchResponse = call(&mut s, ApiKey::Fetch, v, &fetch_req("inc", Uuid::nil(), (id, epoch), if epoch == 5 { &[(0, 2), (7, 0)] } else { &[] }, &[], 0));
        assert_eq!(answered(&r).iter().map(|a| (a.0, a.1)).collect::<Vec<_>>(), vec![(7, 3)], "epoch {epoch}");
    }
    // A session request still long-polls: it waits for a record on any of its partitions.
    let started = Instant::now();
    let waker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        produce_to(&mut producer, "inc", 2, b"late");
    });
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, v, &fetch_req("inc", Uuid::nil(), (id, 7), &[], &[7], 10_000));
    waker.join().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250), "answered before the record came");
    assert!(started.elapsed() < Duration::from_secs(9), "not woken by the record");
    let a = answered(&r);
    assert_eq!(a.iter().map(|a| (a.0, a.2)).collect::<Vec<_>>(), vec![(2, 2)]);
    assert!(metric(&b, "runnel_fetch_session_incremental_requests_total") >= 7.0);
    assert_eq!(metric(&b, "runnel_fetch_sessions"), 1.0);
    assert_eq!(metric(&b, "runnel_fetch_session_partitions"), 3.0);
    // Epoch -1 closes the session and opens none.
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, v, &fetch_req("inc", Uuid::nil(), (id, -1), &[(0, 0)], &[], 0));
    assert_eq!((r.error_code, r.session_id), (0, 0));
    assert_eq!(answered(&r).len(), 1);
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, v, &fetch_req("inc", Uuid::nil(), (id, 8), &[], &[], 0));
    assert_eq!((r.error_code, r.session_id, r.responses.len()), (FETCH_SESSION_ID_NOT_FOUND, 0, 0));
    assert_eq!(metric(&b, "runnel_fetch_sessions"), 0.0);
}

#[test]
fn session_errors() {
    let b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    let topic_id = create(&mut s, "errs", 2);
    produce_to(&mut s, "errs", 0, b"x");
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch_req("errs", Uuid::nil(), (0, 0), &[(0, 0), (1, 0)], &[], 0));
    let id = r.session_id;
    assert_ne!(id, 0);
    // An unknown session.
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch_req("errs", Uuid::nil(), (id ^ 1, 1), &[], &[], 0));
    assert_eq!((r.error_code, r.session_id, r.responses.len()), (FETCH_SESSION_ID_NOT_FOUND, 0, 0));
    // The wrong epoch (a repeat of an answered request, or one from the future); the
    // session stays.
    for epoch in [2, 0x7fff_0000] {
        let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch_req("errs", Uuid::nil(), (id, epoch), &[], &[], 0));
        assert_eq!((r.error_code, r.session_id, r.responses.len()), (INVALID_FETCH_SESSION_EPOCH, 0, 0), "epoch {epoch}");
    }
    // Topic ids (v13) in a session made with names (v12).
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 13, &fetch_req("errs", topic_id, (id, 1), &[], &[], 0));
    assert_eq!((r.error_code, r.responses.len()), (FETCH_SESSION_TOPIC_ID_ERROR, 0));
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch_req("errs", Uuid::nil(), (id, 1), &[(0, 1)], &[], 0));
    assert_eq!((r.error_code, r.session_id), (0, id), "the session survives the refused requests");
    // A full fetch naming the session closes it and opens another.
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch_req("errs", Uuid::nil(), (id, 0), &[(0, 0)], &[], 0));
    let id2 = r.session_id;
    assert!(id2 != 0 && id2 != id);
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch_req("errs", Uuid::nil(), (id, 2), &[], &[], 0));
    assert_eq!(r.error_code, FETCH_SESSION_ID_NOT_FOUND);
    // A session by topic id (v13+): names in it are refused, ids answered.
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 13, &fetch_req("errs", topic_id, (0, 0), &[(0, 0)], &[], 0));
    let id3 = r.session_id;
    assert_eq!((r.error_code, r.responses[0].topic_id), (0, topic_id));
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch_req("errs", Uuid::nil(), (id3, 1), &[], &[], 0));
    assert_eq!(r.error_code, FETCH_SESSION_TOPIC_ID_ERROR);
    produce_to(&mut s, "errs", 0, b"y");
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 16, &fetch_req("errs", topic_id, (id3, 1), &[(0, 1)], &[], 0));
    assert_eq!((r.error_code, r.responses.len(), r.responses[0].topic_id), (0, 1, topic_id));
    // Forgetting every partition closes the session.
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 16, &fetch_req("errs", topic_id, (id3, 2), &[], &[0], 0));
    assert_eq!((r.error_code, r.session_id), (0, 0));
    assert!(metric(&b, "runnel_fetch_session_errors_total") >= 6.0);
}

#[test]
fn the_cache_is_bounded_and_evicts_like_kafka() {
    let b = Broker::start(&["-o", "max.incremental.fetch.session.cache.slots=2", "-o", "min.incremental.fetch.session.eviction.ms=1500"]);
    let mut admin = connect(&b.addr);
    create(&mut admin, "evict", 3);
    let full = |s: &mut TcpStream, n: i32| -> i32 {
        let parts: Vec<(i32, i64)> = (0..n).map(|p| (p, 0)).collect();
        let r: FetchResponse = call(s, ApiKey::Fetch, 12, &fetch_req("evict", Uuid::nil(), (0, 0), &parts, &[], 0));
        assert_eq!(r.error_code, 0);
        r.session_id
    };
    let (mut c1, mut c2, mut c3) = (connect(&b.addr), connect(&b.addr), connect(&b.addr));
    let one = full(&mut c1, 1);
    let two = full(&mut c2, 2);
    assert!(one != 0 && two != 0);
    // Full, and both sessions young: a consumer's new session, even a larger one, gets none.
    assert_eq!(full(&mut c3, 3), 0, "a young session is not evicted by a consumer's");
    assert_eq!(metric(&b, "runnel_fetch_session_evictions_total"), 0.0);
    // Once the eviction time has passed, the least recently used session goes first.
    std::thread::sleep(Duration::from_millis(1700));
    let r: FetchResponse = call(&mut c2, ApiKey::Fetch, 12, &fetch_req("evict", Uuid::nil(), (two, 1), &[], &[], 0));
    assert_eq!(r.error_code, 0);
    let three = full(&mut c3, 3);
    assert_ne!(three, 0);
    assert_eq!(metric(&b, "runnel_fetch_session_evictions_total"), 1.0);
    let r: FetchResponse = call(&mut c1, ApiKey::Fetch, 12, &fetch_req("evict", Uuid::nil(), (one, 1), &[], &[], 0));
    assert_eq!(r.error_code, FETCH_SESSION_ID_NOT_FOUND, "the stale session was evicted");
    // Past the eviction time a larger session evicts a smaller one that is still in use…
    std::thread::sleep(Duration::from_millis(1700));
    for (s, session) in [(&mut c2, (two, 2)), (&mut c3, (three, 1))] {
        let r: FetchResponse = call(s, ApiKey::Fetch, 12, &fetch_req("evict", Uuid::nil(), session, &[], &[], 0));
        assert_eq!(r.error_code, 0);
    }
    // …a smaller one does not…
    assert_eq!(full(&mut c1, 1), 0);
    // …a larger one does: the smallest session goes.
    assert_ne!(full(&mut c1, 3), 0);
    assert_eq!(metric(&b, "runnel_fetch_session_evictions_total"), 2.0);
    let r: FetchResponse = call(&mut c2, ApiKey::Fetch, 12, &fetch_req("evict", Uuid::nil(), (two, 3), &[], &[], 0));
    assert_eq!(r.error_code, FETCH_SESSION_ID_NOT_FOUND, "the smaller session was evicted");
    let r: FetchResponse = call(&mut c3, ApiKey::Fetch, 12, &fetch_req("evict", Uuid::nil(), (three, 2), &[], &[], 0));
    assert_eq!(r.error_code, 0, "the larger one stays");
}

#[test]
fn a_connection_holds_few_sessions_and_zero_slots_turn_sessions_off() {
    let b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    create(&mut s, "conn", 1);
    let ids: Vec<i32> = (0..10)
        .map(|_| {
            let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch_req("conn", Uuid::nil(), (0, 0), &[(0, 0)], &[], 0));
            r.session_id
        })
        .collect();
    assert!(ids.iter().all(|&id| id != 0));
    assert_eq!(metric(&b, "runnel_fetch_sessions"), 4.0, "one connection keeps at most 4 sessions");
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch_req("conn", Uuid::nil(), (ids[0], 1), &[], &[], 0));
    assert_eq!(r.error_code, FETCH_SESSION_ID_NOT_FOUND, "its oldest went");
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch_req("conn", Uuid::nil(), (ids[9], 1), &[], &[], 0));
    assert_eq!(r.error_code, 0);

    let off = Broker::start(&["-o", "max.incremental.fetch.session.cache.slots=0"]);
    let mut s = connect(&off.addr);
    create(&mut s, "off", 1);
    produce_to(&mut s, "off", 0, b"x");
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch_req("off", Uuid::nil(), (0, 0), &[(0, 0)], &[], 0));
    assert_eq!((r.error_code, r.session_id, answered(&r).len()), (0, 0, 1), "no slots: answered in full, no session");
}
