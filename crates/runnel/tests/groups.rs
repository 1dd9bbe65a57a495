//! Consumer groups against a real broker with real clients (librdkafka through rdkafka):
//! members split a topic with no overlap and no gap; a member that leaves, or dies without
//! leaving, has its partitions taken over; cooperative-sticky moves only what it must;
//! static members restart without a rebalance; committed offsets survive `kill -9`; and
//! raw requests get Kafka's errors.
//!
//! The broker runs with a low `group.min.session.timeout.ms` and a short initial
//! rebalance delay so the suite stays fast.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::kafka::*;
use common::Broker;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

const BROKER_ARGS: &[&str] = &["-o", "group.min.session.timeout.ms=100", "-o", "group.initial.rebalance.delay.ms=200"];

/// Client settings that keep rebalances quick.
const FAST: &[(&str, &str)] = &[
    ("session.timeout.ms", "3000"),
    ("heartbeat.interval.ms", "200"),
    ("max.poll.interval.ms", "10000"),
    ("enable.auto.commit", "false"),
    ("auto.offset.reset", "earliest"),
    ("fetch.wait.max.ms", "100"),
    ("topic.metadata.refresh.interval.ms", "1000"),
];

fn start() -> Broker {
    Broker::start(BROKER_ARGS)
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- in-process members ---------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Assign(Vec<i32>),
    Revoke(Vec<i32>),
}

struct Recorder(Arc<Mutex<Vec<Ev>>>);

impl ClientContext for Recorder {}

fn parts(l: &TopicPartitionList) -> Vec<i32> {
    let mut v: Vec<i32> = l.elements().iter().map(|e| e.partition()).collect();
    v.sort();
    v
}

impl ConsumerContext for Recorder {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Assign(l) => self.0.lock().unwrap().push(Ev::Assign(parts(l))),
            Rebalance::Revoke(l) => self.0.lock().unwrap().push(Ev::Revoke(parts(l))),
            Rebalance::Error(_) => {}
        }
    }
}

/// A group member polling on its own thread; its assignment and rebalance events are
/// visible to the test. Dropping it closes the consumer (LeaveGroup unless static).
struct Member {
    assigned: Arc<Mutex<BTreeSet<i32>>>,
    events: Arc<Mutex<Vec<Ev>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    fn join(b: &Broker, group: &str, topic: &str, extra: &[(&str, &str)]) -> Member {
        let mut c = config(b, FAST, extra);
        c.set("group.id", group);
        let events = Arc::new(Mutex::new(Vec::new()));
        let consumer: BaseConsumer<Recorder> = c.create_with_context(Recorder(events.clone())).expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let assigned = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (assigned.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let _ = consumer.poll(Duration::from_millis(50));
                let now: BTreeSet<i32> = consumer.assignment().map(|l| parts(&l).into_iter().collect()).unwrap_or_default();
                *a.lock().unwrap() = now;
            }
            drop(consumer);
        });
        Member { assigned, events, stop, thread: Some(thread) }
    }

    fn assigned(&self) -> BTreeSet<i32> {
        self.assigned.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<Ev> {
        self.events.lock().unwrap().clone()
    }

    /// Closes the consumer (and waits for it).
    fn close(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until the assignments are disjoint, non-empty and cover 0..n exactly.
fn wait_split(what: &str, members: &[&dyn Fn() -> BTreeSet<i32>], n: i32) -> Vec<BTreeSet<i32>> {
    let mut last = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sets: Vec<BTreeSet<i32>> = members.iter().map(|f| f()).collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
        if total == n as usize && union == (0..n).collect() && sets.iter().all(|s| !s.is_empty()) {
            // Hold for a moment: a split that is still moving is not a split.
            std::thread::sleep(Duration::from_millis(300));
            let again: Vec<BTreeSet<i32>> = members.iter().map(|f| f()).collect();
            if again == sets {
                return sets;
            }
        }
        if sets != last {
            last = sets;
        }
        assert!(Instant::now() < deadline, "{what}: no clean split of {n} partitions; last seen {last:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_then_three_members_split_and_take_over_on_leave() {
    let b = start();
    create_topic(&b, "split", 6, &[]);
    let m1 = Member::join(&b, "g-split", "split", &[]);
    let m2 = Member::join(&b, "g-split", "split", &[]);
    let s = wait_split("two members", &[&|| m1.assigned(), &|| m2.assigned()], 6);
    assert_eq!(s.iter().map(BTreeSet::len).collect::<Vec<_>>(), vec![3, 3]);
    // A new member triggers a rebalance: three ways.
    let m3 = Member::join(&b, "g-split", "split", &[]);
    let s = wait_split("three members", &[&|| m1.assigned(), &|| m2.assigned(), &|| m3.assigned()], 6);
    assert_eq!(s.iter().map(BTreeSet::len).collect::<Vec<_>>(), vec![2, 2, 2]);
    // One leaves (close sends LeaveGroup): the other two take over at once.
    let started = Instant::now();
    m2.close();
    wait_split("after a leave", &[&|| m1.assigned(), &|| m3.assigned()], 6);
    assert!(started.elapsed() < Duration::from_secs(2), "leave rebalanced without waiting for a session timeout");
}

#[test]
fn roundrobin_assignor_splits() {
    let b = start();
    create_topic(&b, "rr", 6, &[]);
    let rr = [("partition.assignment.strategy", "roundrobin")];
    let m1 = Member::join(&b, "g-rr", "rr", &rr);
    let m2 = Member::join(&b, "g-rr", "rr", &rr);
    let m3 = Member::join(&b, "g-rr", "rr", &rr);
    wait_split("roundrobin", &[&|| m1.assigned(), &|| m2.assigned(), &|| m3.assigned()], 6);
}

// ---- a member in another process, for kill -9 -----------------------------------------

/// Not a test on its own: the body of the child process `killed_member_*` spawns (it does
/// nothing unless `RUNNEL_GROUP_CHILD` names a broker). Prints `ASSIGNED p,p,…` on change.
#[test]
#[ignore]
fn child_group_member() {
    let Ok(addr) = std::env::var("RUNNEL_GROUP_CHILD") else { return };
    let group = std::env::var("RUNNEL_GROUP_CHILD_GROUP").unwrap();
    let topic = std::env::var("RUNNEL_GROUP_CHILD_TOPIC").unwrap();
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", &addr).set("broker.address.family", "v4").set("group.id", &group);
    for (k, v) in FAST {
        c.set(*k, *v);
    }
    let consumer: BaseConsumer = c.create().unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut last = String::new();
    loop {
        let _ = consumer.poll(Duration::from_millis(50));
        let now = consumer.assignment().map(|l| parts(&l)).unwrap_or_default();
        let line = now.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",");
        if line != last {
            println!("ASSIGNED {line}");
            last = line;
        }
    }
}

struct ChildMember {
    child: Child,
    assigned: Arc<Mutex<BTreeSet<i32>>>,
}

impl ChildMember {
    fn spawn(b: &Broker, group: &str, topic: &str) -> ChildMember {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "child_group_member", "--nocapture", "--test-threads=1"])
            .env("RUNNEL_GROUP_CHILD", &b.addr)
            .env("RUNNEL_GROUP_CHILD_GROUP", group)
            .env("RUNNEL_GROUP_CHILD_TOPIC", topic)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let assigned = Arc::new(Mutex::new(BTreeSet::new()));
        let a = assigned.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                // libtest may print "test child_group_member ... " on the same line first.
                if let Some((_, rest)) = line.split_once("ASSIGNED ") {
                    *a.lock().unwrap() = rest.split(',').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
                }
            }
        });
        ChildMember { child, assigned }
    }

    fn assigned(&self) -> BTreeSet<i32> {
        self.assigned.lock().unwrap().clone()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildMember {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[test]
fn killed_member_is_replaced_after_its_session_timeout() {
    let b = start();
    create_topic(&b, "killed", 6, &[]);
    let m1 = Member::join(&b, "g-kill", "killed", &[]);
    let mut child = ChildMember::spawn(&b, "g-kill", "killed");
    wait_split("member and child", &[&|| m1.assigned(), &|| child.assigned()], 6);
    let killed_at = Instant::now();
    child.kill9();
    // session.timeout.ms is 3000: not before it (no LeaveGroup was sent), but after it
    // (within the wait's generous bound, for a loaded CI machine).
    wait_until("the survivor owns all six", Duration::from_secs(30), || m1.assigned().len() == 6);
    let took = killed_at.elapsed();
    assert!(took >= Duration::from_millis(2500), "took over after {took:?}, before the session timeout");
}

#[test]
fn cooperative_sticky_moves_only_what_it_must() {
    let b = start();
    create_topic(&b, "coop", 6, &[]);
    let coop = [("partition.assignment.strategy", "cooperative-sticky")];
    let m1 = Member::join(&b, "g-coop", "coop", &coop);
    wait_until("first member owns all", Duration::from_secs(20), || m1.assigned().len() == 6);
    let before = m1.events();
    let m2 = Member::join(&b, "g-coop", "coop", &coop);
    let s = wait_split("cooperative", &[&|| m1.assigned(), &|| m2.assigned()], 6);
    assert_eq!(s[0].len(), 3);
    let after: Vec<Ev> = m1.events()[before.len()..].to_vec();
    // Only the three partitions that moved were revoked from the first member; it kept
    // the rest throughout.
    let revoked: BTreeSet<i32> =
        after.iter().filter_map(|e| if let Ev::Revoke(p) = e { Some(p.clone()) } else { None }).flatten().collect();
    assert_eq!(revoked.len(), 3, "events of the first member: {after:?}");
    assert!(revoked.is_disjoint(&s[0]));
    let m2_assigned: BTreeSet<i32> =
        m2.events().iter().filter_map(|e| if let Ev::Assign(p) = e { Some(p.clone()) } else { None }).flatten().collect();
    assert_eq!(m2_assigned, s[1]);
}

#[test]
fn static_member_restart_keeps_assignment_without_rebalance() {
    let b = start();
    create_topic(&b, "static", 6, &[]);
    let slow = [("session.timeout.ms", "6000")];
    let a = Member::join(&b, "g-static", "static", &[slow[0], ("group.instance.id", "inst-a")]);
    let other = Member::join(&b, "g-static", "static", &[slow[0], ("group.instance.id", "inst-b")]);
    let s = wait_split("static members", &[&|| a.assigned(), &|| other.assigned()], 6);
    let events_before = other.events();
    // A restarts: a static member's close sends no LeaveGroup.
    a.close();
    let a2 = Member::join(&b, "g-static", "static", &[slow[0], ("group.instance.id", "inst-a")]);
    wait_until("restarted static member gets its partitions back", Duration::from_secs(10), || a2.assigned() == s[0]);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(other.assigned(), s[1]);
    assert_eq!(other.events(), events_before, "the other member saw no rebalance");
    // A new member id for the same instance fences nobody else; describe shows two members.
    let d = request(&b, &DescribeGroupsRequest::default().with_groups(vec![GroupId(sb("g-static"))]), 5);
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
    assert_eq!(d.groups[0].members.len(), 2);
}

#[test]
fn committed_offsets_survive_kill9() {
    let mut b = start();
    create_topic(&b, "resume", 2, &[]);
    let p = producer(&b, &[]);
    for i in 0..20 {
        let v = format!("v{i}");
        block_on(p.send(FutureRecord::<(), _>::to("resume").partition(i % 2).payload(&v), Duration::from_secs(10))).unwrap();
    }
    drop(p);
    let group_cfg = |b: &Broker| {
        let mut c = config(b, FAST, &[]);
        c.set("group.id", "g-resume");
        c
    };
    {
        let c: BaseConsumer = group_cfg(&b).create().unwrap();
        c.subscribe(&["resume"]).unwrap();
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen < 20 {
            assert!(Instant::now() < deadline, "consumed only {seen}");
            if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
                seen += 1;
            }
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("resume", 0, Offset::Offset(4)).unwrap();
        tpl.add_partition_offset("resume", 1, Offset::Offset(7)).unwrap();
        tpl.find_partition("resume", 0).unwrap().set_metadata("meta-0");
        c.commit(&tpl, CommitMode::Sync).expect("commit");
        let committed = c.committed(TIMEOUT).unwrap();
        assert_eq!(committed.find_partition("resume", 0).unwrap().offset(), Offset::Offset(4));
        // Kill the broker with the consumer still in the group.
        b.kill9();
    }
    b.restart();
    let c: BaseConsumer = group_cfg(&b).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("resume", 0);
    tpl.add_partition("resume", 1);
    let committed = c.committed_offsets(tpl, TIMEOUT).unwrap();
    let p0 = committed.find_partition("resume", 0).unwrap();
    assert_eq!(p0.offset(), Offset::Offset(4));
    assert_eq!(p0.metadata(), "meta-0");
    assert_eq!(committed.find_partition("resume", 1).unwrap().offset(), Offset::Offset(7));
    c.subscribe(&["resume"]).unwrap();
    let mut first = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while first.len() < 2 {
        assert!(Instant::now() < deadline, "did not resume on both partitions: {first:?}");
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            first.entry(m.partition()).or_insert(m.offset());
        }
    }
    assert_eq!(first, [(0, 4), (1, 7)].into_iter().collect());
}

// ---- raw requests ---------------------------------------------------------------------

const V_JOIN: i16 = 5;

fn join_req(group: &str, member: &str, instance: Option<&str>, session_ms: i32) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(5000)
        .with_member_id(sb(member))
        .with_group_instance_id(instance.map(sb))
        .with_protocol_type(sb("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default()
            .with_name(sb("range"))
            .with_metadata(bytes::Bytes::from_static(b"\x00\x00\x00\x00\x00\x01\x00\x03raw\xff\xff\xff\xff"))])
}

/// Joins `group` as a new dynamic member (MEMBER_ID_REQUIRED first) and syncs as leader;
/// returns (member id, generation).
fn raw_member(b: &Broker, group: &str) -> (String, i32) {
    let first = request(b, &join_req(group, "", None, 10_000), V_JOIN);
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let member = first.member_id.to_string();
    assert!(!member.is_empty());
    let joined = request(b, &join_req(group, &member, None, 10_000), V_JOIN);
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.leader.as_str(), member);
    let assignment = sync_group_request::SyncGroupRequestAssignment::default()
        .with_member_id(sb(&member))
        .with_assignment(bytes::Bytes::from_static(b"assigned"));
    let s = request(b, &sync(group, &member, joined.generation_id).with_assignments(vec![assignment]), 3);
    assert_eq!(s.error_code, 0);
    assert_eq!(&s.assignment[..], b"assigned");
    (member, joined.generation_id)
}

fn sync(group: &str, member: &str, generation: i32) -> SyncGroupRequest {
    SyncGroupRequest::default().with_group_id(GroupId(sb(group))).with_member_id(sb(member)).with_generation_id(generation)
}

fn heartbeat(b: &Broker, group: &str, member: &str, generation: i32) -> i16 {
    let r = HeartbeatRequest::default().with_group_id(GroupId(sb(group))).with_member_id(sb(member)).with_generation_id(generation);
    request(b, &r, 3).error_code
}

fn commit(b: &Broker, group: &str, member: &str, generation: i32, parts: &[(&str, i32)], version: i16) -> Vec<i16> {
    let mut topics: Vec<offset_commit_request::OffsetCommitRequestTopic> = Vec::new();
    for (t, p) in parts {
        let part = offset_commit_request::OffsetCommitRequestPartition::default().with_partition_index(*p).with_committed_offset(3);
        topics.push(offset_commit_request::OffsetCommitRequestTopic::default().with_name(TopicName(sb(t))).with_partitions(vec![part]));
    }
    let r = OffsetCommitRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_member_id(sb(member))
        .with_generation_id_or_member_epoch(generation)
        .with_topics(topics);
    request(b, &r, version).topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
}

#[test]
fn raw_group_errors() {
    let b = start();
    create_topic(&b, "raw", 2, &[]);
    let (member, generation) = raw_member(&b, "g-raw");
    assert_eq!(generation, 1);

    // Heartbeats: good, stale generation, unknown member, unknown group.
    assert_eq!(heartbeat(&b, "g-raw", &member, generation), 0);
    assert_eq!(heartbeat(&b, "g-raw", &member, generation - 1), 22, "ILLEGAL_GENERATION");
    assert_eq!(heartbeat(&b, "g-raw", "nobody", generation), 25, "UNKNOWN_MEMBER_ID");
    assert_eq!(heartbeat(&b, "no-such-group", "nobody", 1), 25, "UNKNOWN_MEMBER_ID for an unknown group");

    // SyncGroup: stale generation, unknown member; Stable: the current assignment.
    assert_eq!(request(&b, &sync("g-raw", &member, 0), 3).error_code, 22);
    assert_eq!(request(&b, &sync("g-raw", "nobody", generation), 3).error_code, 25);
    let again = request(&b, &sync("g-raw", &member, generation), 3);
    assert_eq!((again.error_code, &again.assignment[..]), (0, &b"assigned"[..]));

    // OffsetCommit: missing partition and missing topic refused per partition; stale
    // generation; unknown member; a simple commit to a live group is refused.
    assert_eq!(commit(&b, "g-raw", &member, generation, &[("raw", 0), ("raw", 9), ("nope", 0)], 8), vec![0, 3, 3]);
    assert_eq!(commit(&b, "g-raw", &member, generation + 1, &[("raw", 0)], 8), vec![22]);
    assert_eq!(commit(&b, "g-raw", "nobody", generation, &[("raw", 0)], 8), vec![25]);
    assert_eq!(commit(&b, "g-raw", "", -1, &[("raw", 0)], 8), vec![25]);
    // A generation for a group that does not exist: ILLEGAL_GENERATION, GROUP_ID_NOT_FOUND from v9.
    assert_eq!(commit(&b, "g-none", "m", 3, &[("raw", 0)], 8), vec![22]);
    assert_eq!(commit(&b, "g-none", "m", 3, &[("raw", 0)], 9), vec![69]);
    // A simple commit (no member, generation -1) creates a simple group.
    assert_eq!(commit(&b, "g-simple", "", -1, &[("raw", 1)], 8), vec![0]);

    // OffsetFetch, multi-group form (v8).
    let q = |g: &str| {
        offset_fetch_request::OffsetFetchRequestGroup::default().with_group_id(GroupId(sb(g))).with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopics::default().with_name(TopicName(sb("raw"))).with_partition_indexes(vec![0, 1]),
        ]))
    };
    let f = request(&b, &OffsetFetchRequest::default().with_groups(vec![q("g-raw"), q("g-simple"), q("g-none")]), 8);
    let offsets: Vec<Vec<i64>> =
        f.groups.iter().map(|g| g.topics[0].partitions.iter().map(|p| p.committed_offset).collect()).collect();
    assert_eq!(offsets, vec![vec![3, -1], vec![-1, 3], vec![-1, -1]]);

    // JoinGroup refusals.
    assert_eq!(request(&b, &join_req("", "", None, 10_000), V_JOIN).error_code, 24, "INVALID_GROUP_ID");
    assert_eq!(request(&b, &join_req("g-x", "", None, 10), V_JOIN).error_code, 26, "INVALID_SESSION_TIMEOUT");
    let other_type = join_req("g-raw", "", None, 10_000).with_protocol_type(sb("connect"));
    assert_eq!(request(&b, &other_type, 3).error_code, 23, "INCONSISTENT_GROUP_PROTOCOL");
    assert_eq!(request(&b, &join_req("g-unknown", "ghost", None, 10_000), V_JOIN).error_code, 25);

    // DescribeGroups, ListGroups (state filter).
    let d = request(&b, &DescribeGroupsRequest::default().with_groups(vec![GroupId(sb("g-raw")), GroupId(sb("g-none"))]), 5);
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
    assert_eq!(d.groups[0].protocol_data.as_str(), "range");
    assert_eq!(d.groups[0].members.len(), 1);
    assert_eq!(&d.groups[0].members[0].member_assignment[..], b"assigned");
    assert_eq!((d.groups[1].error_code, d.groups[1].group_state.as_str()), (0, "Dead"));
    let l = request(&b, &ListGroupsRequest::default().with_states_filter(vec![sb("Stable")]), 4);
    assert_eq!(l.groups.iter().map(|g| g.group_id.0.as_str()).collect::<Vec<_>>(), vec!["g-raw"]);
    let l = request(&b, &ListGroupsRequest::default(), 4);
    assert_eq!(l.groups.len(), 2, "g-raw and g-simple: {:?}", l.groups);

    // DeleteGroups: a live group is refused; unknown is not found; the simple group goes.
    let del = |g: &str| request(&b, &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(sb(g))]), 2).results[0].error_code;
    assert_eq!(del("g-raw"), 68, "NON_EMPTY_GROUP");
    assert_eq!(del("g-none"), 69, "GROUP_ID_NOT_FOUND");
    assert_eq!(del("g-simple"), 0);
    assert_eq!(del("g-simple"), 69);

    // OffsetDelete on a live group subscribed to "raw": refused per partition.
    let od = OffsetDeleteRequest::default().with_group_id(GroupId(sb("g-raw"))).with_topics(vec![
        offset_delete_request::OffsetDeleteRequestTopic::default()
            .with_name(TopicName(sb("raw")))
            .with_partitions(vec![offset_delete_request::OffsetDeleteRequestPartition::default().with_partition_index(0)]),
    ]);
    let r = request(&b, &od, 0);
    assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 86), "GROUP_SUBSCRIBED_TO_TOPIC");

    // LeaveGroup v3, batched: the member leaves, an unknown one is refused.
    let leave = LeaveGroupRequest::default().with_group_id(GroupId(sb("g-raw"))).with_members(vec![
        leave_group_request::MemberIdentity::default().with_member_id(sb(&member)),
        leave_group_request::MemberIdentity::default().with_member_id(sb("nobody")),
    ]);
    let r = request(&b, &leave, 3);
    assert_eq!(r.members.iter().map(|m| m.error_code).collect::<Vec<_>>(), vec![0, 25]);
    assert_eq!(heartbeat(&b, "g-raw", &member, generation), 25);
    // Now empty: offsets can be deleted, then the group.
    let r = request(&b, &od, 0);
    assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0));
    assert_eq!(del("g-raw"), 0);
}

#[test]
fn raw_static_member_fencing_and_find_coordinator() {
    let b = start();
    // FindCoordinator: v0 single key, v4 batched keys, transactional ids (this broker too).
    let f = request(&b, &FindCoordinatorRequest::default().with_key(sb("g")), 0);
    assert_eq!((f.error_code, f.port), (0, b.addr.rsplit(':').next().unwrap().parse().unwrap()));
    let f = request(&b, &FindCoordinatorRequest::default().with_coordinator_keys(vec![sb("a"), sb("b")]), 4);
    assert_eq!(f.coordinators.iter().map(|c| (c.key.as_str(), c.error_code, c.node_id.0)).collect::<Vec<_>>(), vec![("a", 0, 1), ("b", 0, 1)]);
    let f = request(&b, &FindCoordinatorRequest::default().with_key_type(1).with_coordinator_keys(vec![sb("tx")]), 4);
    assert_eq!((f.coordinators[0].error_code, f.coordinators[0].node_id.0), (0, 1));

    // A static member joins (no MEMBER_ID_REQUIRED for static members).
    let j = request(&b, &join_req("g-fence", "", Some("inst"), 10_000), V_JOIN);
    assert_eq!(j.error_code, 0);
    let member = j.member_id.to_string();
    let s = request(&b, &sync("g-fence", &member, j.generation_id).with_group_instance_id(Some(sb("inst"))), 3);
    assert_eq!(s.error_code, 0);
    // Same instance id with another member id: fenced.
    let fenced = request(&b, &join_req("g-fence", "someone-else", Some("inst"), 10_000), V_JOIN);
    assert_eq!(fenced.error_code, 82, "FENCED_INSTANCE_ID");
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(sb("g-fence")))
        .with_member_id(sb("someone-else"))
        .with_group_instance_id(Some(sb("inst")))
        .with_generation_id(j.generation_id);
    assert_eq!(request(&b, &hb, 3).error_code, 82);
    // The instance restarts: a new member id, the same generation, no rebalance; the old id is fenced.
    let again = request(&b, &join_req("g-fence", "", Some("inst"), 10_000), V_JOIN);
    assert_eq!(again.error_code, 0);
    assert_eq!(again.generation_id, j.generation_id);
    assert_ne!(again.member_id.as_str(), member);
    let hb_old = hb.clone().with_member_id(sb(&member));
    assert_eq!(request(&b, &hb_old, 3).error_code, 82);
    // LeaveGroup by instance id alone.
    let leave = LeaveGroupRequest::default().with_group_id(GroupId(sb("g-fence"))).with_members(vec![
        leave_group_request::MemberIdentity::default().with_member_id(sb("")).with_group_instance_id(Some(sb("inst"))),
    ]);
    assert_eq!(request(&b, &leave, 4).members[0].error_code, 0);
    let d = request(&b, &DescribeGroupsRequest::default().with_groups(vec![GroupId(sb("g-fence"))]), 5);
    assert_eq!(d.groups[0].group_state.as_str(), "Empty");
}

// ---- the internal topic and deleted topics ----------------------------------------------

fn fetch_all_offsets(b: &Broker, group: &str) -> Vec<(String, i32, i64)> {
    let q = offset_fetch_request::OffsetFetchRequestGroup::default().with_group_id(GroupId(sb(group))).with_topics(None);
    let f = request(b, &OffsetFetchRequest::default().with_groups(vec![q]), 8);
    assert_eq!(f.groups[0].error_code, 0);
    let mut out: Vec<(String, i32, i64)> = f.groups[0]
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), p.partition_index, p.committed_offset)))
        .collect();
    out.sort();
    out
}

fn list_group_ids(b: &Broker) -> Vec<String> {
    request(b, &ListGroupsRequest::default(), 4).groups.iter().map(|g| g.group_id.0.to_string()).collect()
}

#[test]
fn internal_topic_cannot_be_deleted_grown_recreated_or_produced_to() {
    let mut b = start();
    create_topic(&b, "kept", 1, &[]);
    assert_eq!(commit(&b, "g-kept", "", -1, &[("kept", 0)], 8), vec![0]);

    // DeleteTopics by name and by id: INVALID_REQUEST.
    let by_name = request(&b, &DeleteTopicsRequest::default().with_topic_names(vec![TopicName(sb("__consumer_offsets"))]), 5);
    assert_eq!(by_name.responses[0].error_code, 42, "INVALID_REQUEST: {:?}", by_name.responses[0].error_message);
    let md = request(&b, &MetadataRequest::default().with_topics(None), 12);
    let internal = md.topics.iter().find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("__consumer_offsets")).unwrap();
    assert!(internal.is_internal);
    let by_id = DeleteTopicsRequest::default()
        .with_topics(vec![delete_topics_request::DeleteTopicState::default().with_topic_id(internal.topic_id)]);
    assert_eq!(request(&b, &by_id, 6).responses[0].error_code, 42);

    // CreatePartitions: INVALID_REQUEST, also with validate_only.
    for validate_only in [false, true] {
        let grow = CreatePartitionsRequest::default().with_validate_only(validate_only).with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default().with_name(TopicName(sb("__consumer_offsets"))).with_count(3),
        ]);
        assert_eq!(request(&b, &grow, 3).results[0].error_code, 42);
    }

    // CreateTopics of the name: TOPIC_ALREADY_EXISTS.
    let create = CreateTopicsRequest::default().with_topics(vec![create_topics_request::CreatableTopic::default()
        .with_name(TopicName(sb("__consumer_offsets")))
        .with_num_partitions(1)
        .with_replication_factor(1)]);
    assert_eq!(request(&b, &create, 7).topics[0].error_code, 36);

    // Produce to it: INVALID_TOPIC_EXCEPTION, as Kafka answers clients.
    let batch = runnel_protocol::batch::encode_batch(0, 0, &[runnel_protocol::batch::NewRecord {
        timestamp: now_ms(),
        key: Some(br#"{"offset":{"group":"g-kept","topic":"kept","partition":0}}"#),
        value: None,
        headers: &[],
    }]);
    let produce = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
        produce_request::TopicProduceData::default().with_name(TopicName(sb("__consumer_offsets"))).with_partition_data(vec![
            produce_request::PartitionProduceData::default().with_index(0).with_records(Some(bytes::Bytes::from(batch))),
        ]),
    ]);
    assert_eq!(request(&b, &produce, 9).responses[0].partition_responses[0].error_code, 17);

    // Still there, with its offsets, after a crash.
    b.kill9();
    b.restart();
    assert_eq!(fetch_all_offsets(&b, "g-kept"), vec![("kept".to_string(), 0, 3)]);
}

#[test]
fn deleting_a_topic_deletes_its_committed_offsets() {
    let mut b = start();
    create_topic(&b, "doomed", 2, &[]);
    create_topic(&b, "stays", 1, &[]);
    assert_eq!(commit(&b, "g-both", "", -1, &[("doomed", 0), ("doomed", 1), ("stays", 0)], 8), vec![0, 0, 0]);
    assert_eq!(commit(&b, "g-doomed", "", -1, &[("doomed", 1)], 8), vec![0]);
    // A live consumer group with offsets of both topics.
    let (member, generation) = raw_member(&b, "g-live");
    assert_eq!(commit(&b, "g-live", &member, generation, &[("doomed", 0), ("stays", 0)], 8), vec![0, 0]);

    let del = request(&b, &DeleteTopicsRequest::default().with_topic_names(vec![TopicName(sb("doomed"))]), 5);
    assert_eq!(del.responses[0].error_code, 0);
    assert_eq!(fetch_all_offsets(&b, "g-both"), vec![("stays".to_string(), 0, 3)]);
    assert_eq!(fetch_all_offsets(&b, "g-live"), vec![("stays".to_string(), 0, 3)]);
    // A group left empty without offsets is gone.
    assert_eq!(fetch_all_offsets(&b, "g-doomed"), vec![]);
    let mut ids = list_group_ids(&b);
    ids.sort();
    assert_eq!(ids, vec!["g-both", "g-live"]);

    // A new topic of the same name starts with no committed offsets, also after a crash.
    create_topic(&b, "doomed", 2, &[]);
    b.kill9();
    b.restart();
    assert_eq!(fetch_all_offsets(&b, "g-both"), vec![("stays".to_string(), 0, 3)]);
    assert!(!list_group_ids(&b).contains(&"g-doomed".to_string()));
}

/// librdkafka's 0081 (DescribeConsumerGroups): static members (6 s sessions: the test asks
/// for 5 s but its `test_create_consumer` sets 6 s; librdkafka's default heartbeats and auto
/// commit) each consume their group's records and close without leaving; one session
/// timeout after the last close every group must be Empty and deletable. The close commits
/// offsets, which extends the session (Kafka's rule), so the margin is only the time from
/// that commit to the end of the close; the raw test below pins that race exactly.
#[test]
fn closed_static_members_expire_and_their_groups_can_be_deleted() {
    let b = Broker::start(&["-o", "group.initial.rebalance.delay.ms=0"]);
    create_topic(&b, "expire", 2, &[]);
    let p = producer(&b, &[]);
    block_on(send_all(&p, (0..100).map(|i| FutureRecord::to("expire").key(&b"k"[..]).payload(if i % 2 == 0 { &b"a"[..] } else { &b"b"[..] }))));
    let groups: Vec<String> = (0..3).map(|i| format!("g-expire-{i}")).collect();
    let consumers: Vec<BaseConsumer> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let c: BaseConsumer = config(
                &b,
                &[
                    ("group.id", g),
                    ("group.instance.id", &format!("inst-{i}")),
                    ("session.timeout.ms", "6000"),
                    ("auto.offset.reset", "earliest"),
                ],
                &[],
            )
            .create()
            .expect("consumer");
            c.subscribe(&["expire"]).expect("subscribe");
            let (mut n, mut err) = (0, None);
            let deadline = Instant::now() + Duration::from_secs(60);
            while n < 100 {
                assert!(Instant::now() < deadline, "{g}: consumed {n} of 100; {err:?}");
                match c.poll(Duration::from_millis(100)) {
                    Some(Ok(_)) => n += 1,
                    Some(Err(e)) => err = Some(e),
                    None => {}
                }
            }
            c
        })
        .collect();
    let described = request(&b, &DescribeGroupsRequest::default().with_groups(groups.iter().map(|g| GroupId(sb(g))).collect()), 5);
    assert!(described.groups.iter().all(|g| g.group_state.as_str() == "Stable" && g.members.len() == 1), "{described:?}");
    let mut closed = Instant::now();
    for c in consumers {
        drop(c);
        closed = Instant::now();
    }
    std::thread::sleep(Duration::from_secs(6).saturating_sub(closed.elapsed()));
    let del = request(&b, &DeleteGroupsRequest::default().with_groups_names(groups.iter().map(|g| GroupId(sb(g))).collect()), 2);
    let d = request(&b, &DescribeGroupsRequest::default().with_groups(groups.iter().map(|g| GroupId(sb(g))).collect()), 5);
    let states: Vec<(&str, usize)> = d.groups.iter().map(|g| (g.group_state.as_str(), g.members.len())).collect();
    assert!(del.results.iter().all(|r| r.error_code == 0), "DeleteGroups {:?} {} s after the last close; groups then: {states:?}", del.results.iter().map(|r| r.error_code).collect::<Vec<_>>(), closed.elapsed().as_secs_f32());
}

/// A static member's session ends at its last heartbeat plus its session timeout, for
/// every request after that instant, whenever the coordinator's timer task gets to run:
/// DeleteGroups sent just after the deadline (as librdkafka's 0081 does) finds the
/// groups Empty.
#[test]
fn raw_requests_after_a_session_deadline_see_the_member_expired() {
    let b = start();
    let session = 1000;
    for round in 0..10 {
        let groups: Vec<String> = (0..3).map(|i| format!("g-deadline-{round}-{i}")).collect();
        let mut members = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            let instance = format!("inst-{i}");
            let j = request(&b, &join_req(g, "", Some(&instance), session), V_JOIN);
            assert_eq!(j.error_code, 0);
            let member = j.member_id.to_string();
            let s = request(&b, &sync(g, &member, j.generation_id).with_group_instance_id(Some(sb(&instance))), 3);
            assert_eq!(s.error_code, 0);
            members.push((member, j.generation_id));
        }
        // The last contact of each member: the broker set its deadline before answering.
        let mut last = Instant::now();
        for (g, (member, generation)) in groups.iter().zip(&members) {
            assert_eq!(heartbeat(&b, g, member, *generation), 0);
            last = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(session as u64).saturating_sub(last.elapsed()));
        let del = request(&b, &DeleteGroupsRequest::default().with_groups_names(groups.iter().map(|g| GroupId(sb(g))).collect()), 2);
        let codes: Vec<i16> = del.results.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, vec![0; 3], "round {round}: DeleteGroups {:?} after the last heartbeat", last.elapsed());
    }
}
