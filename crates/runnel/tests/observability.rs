//! The admin HTTP listener: /healthz and /readyz answer, and /metrics, scraped after
//! real produce and consume traffic, has counters that match what was sent.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::admin::{get, samples};
use common::kafka::{block_on, consumer, create_topic, producer};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

#[test]
fn health_endpoints_and_metrics_match_traffic() {
    let mut b = common::Broker::start(&[]);
    let admin = b.admin_addr.clone().expect("startup line names the admin listener");
    assert_eq!(get(&admin, "/healthz").0, 200);
    assert_eq!(get(&admin, "/readyz").0, 200);
    assert_eq!(get(&admin, "/nope").0, 404);

    create_topic(&b, "metered", 3, &[]);
    // A topic that fsyncs every batch feeds the fsync latency histogram.
    create_topic(&b, "synced", 1, &[("flush.messages", "1")]);
    let p = producer(&b, &[]);
    for i in 0..3 {
        block_on(p.send(FutureRecord::to("synced").key("k").payload(&format!("v{i}")), Duration::from_secs(10))).expect("produce");
    }
    let value = vec![b'v'; 1000];
    for i in 0..30 {
        let key = format!("k{i}");
        block_on(p.send(FutureRecord::to("metered").partition(i % 3).key(&key).payload(&value), Duration::from_secs(10)))
            .expect("produce");
    }
    // A group consumer reads partition 0 and commits 4 of its 10 records: lag 6.
    let c = consumer(&b, &[("group.id", "metrics-group")]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("metered", 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let mut got = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while got < 10 && std::time::Instant::now() < deadline {
        if let Some(Ok(_)) = c.poll(Duration::from_millis(200)) {
            got += 1;
        }
    }
    assert_eq!(got, 10);
    let mut commit = TopicPartitionList::new();
    commit.add_partition_offset("metered", 0, Offset::Offset(4)).unwrap();
    c.commit(&commit, CommitMode::Sync).expect("commit");

    let (status, body) = get(&admin, "/metrics");
    assert_eq!(status, 200);
    let m = samples(&body);
    let val = |k: &str| *m.get(k).unwrap_or_else(|| panic!("metric {k} missing in:\n{body}"));
    assert!(val("runnel_requests_total{api=\"Produce\"}") >= 1.0);
    assert!(val("runnel_requests_total{api=\"Fetch\"}") >= 1.0);
    assert!(val("runnel_requests_total{api=\"Metadata\"}") >= 1.0);
    assert!(val("runnel_request_duration_seconds_count{api=\"Produce\"}") >= 1.0);
    // 30 records of 1000-byte values came in; 10 went out.
    assert!(val("runnel_received_bytes_total") >= 30_000.0);
    assert!(val("runnel_sent_bytes_total") >= 10_000.0);
    assert!(val("runnel_connections") >= 1.0);
    assert!(val("runnel_connections_accepted_total") >= 1.0);
    let ends: f64 = (0..3).map(|p| val(&format!("runnel_partition_log_end_offset{{topic=\"metered\",partition=\"{p}\"}}"))).sum();
    assert_eq!(ends, 30.0);
    assert_eq!(val("runnel_partition_log_start_offset{topic=\"metered\",partition=\"1\"}"), 0.0);
    assert!(val("runnel_partition_size_bytes{topic=\"metered\",partition=\"2\"}") >= 10_000.0);
    assert_eq!(val("runnel_consumer_group_lag{group=\"metrics-group\",topic=\"metered\",partition=\"0\"}"), 6.0);
    assert!(val("runnel_fsync_seconds_count") >= 3.0, "one fsync per batch of the flush.messages=1 topic");
    assert!(m.contains_key("runnel_fsync_seconds_bucket{le=\"+Inf\"}"));
    assert!(body.trim_end().ends_with("# EOF"));

    // A request the broker refuses is counted as an error of its API.
    let mut raw = TcpStream::connect(&b.addr).unwrap();
    raw.write_all(&[0, 0, 0, 10, 0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff]).unwrap(); // Produce v1
    let mut sink = [0u8; 16];
    let _ = raw.read(&mut sink);
    let m = samples(&get(&admin, "/metrics").1);
    assert!(m.get("runnel_request_errors_total{api=\"Produce\"}").copied().unwrap_or(0.0) >= 1.0);

    drop(c);
    drop(p);
    assert!(b.stop());
    assert!(TcpStream::connect(&admin).is_err(), "admin listener closes with the broker");
}

/// /readyz is 503 while the broker opens its data dir and while it shuts down, and 200 in
/// between; /healthz is 200 throughout. The failpoints hold each phase for a while.
#[test]
fn readiness_during_startup_and_shutdown() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let admin = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["broker", "--listen", "127.0.0.1:0", "--admin-listen", &admin, "--log-level", "error", "--data-dir"])
        .arg(dir.path())
        .env("RUNNEL_FAILPOINT_OPEN_DELAY_MS", "1500")
        .env("RUNNEL_FAILPOINT_SHUTDOWN_DELAY_MS", "1500")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&admin).is_err() {
        assert!(std::time::Instant::now() < deadline, "admin listener never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(&admin, "/readyz").0, 503, "not ready while opening the data dir");
    assert_eq!(get(&admin, "/healthz").0, 200);
    while get(&admin, "/readyz").0 != 200 {
        assert!(std::time::Instant::now() < deadline, "never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    let mut saw_503 = false;
    while TcpStream::connect(&admin).is_ok() {
        if get(&admin, "/readyz").0 == 503 {
            saw_503 = true;
            assert_eq!(get(&admin, "/healthz").0, 200);
            break;
        }
        assert!(std::time::Instant::now() < deadline + Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(saw_503, "not ready while shutting down");
    assert!(child.wait().unwrap().success());
}

/// `admin.basic.auth.file`: /metrics needs the HTTP basic credentials (401 without or with
/// wrong ones); the health probes stay open.
#[test]
fn metrics_can_require_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin.auth");
    std::fs::write(&file, "ops:s3cret\n").unwrap();
    let b = common::Broker::start(&["-o", &format!("admin.basic.auth.file={}", file.display())]);
    let admin = b.admin_addr.clone().expect("admin listener");
    let get_metrics = |auth: Option<&str>| {
        let mut s = TcpStream::connect(&admin).unwrap();
        let header = auth.map_or(String::new(), |a| format!("Authorization: Basic {a}\r\n"));
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n{header}Connection: close\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    };
    assert!(get_metrics(None).starts_with("HTTP/1.1 401"), "{}", get_metrics(None));
    // base64("ops:wrong") and base64("ops:s3cret").
    assert!(get_metrics(Some("b3BzOndyb25n")).starts_with("HTTP/1.1 401"));
    let ok = get_metrics(Some("b3BzOnMzY3JldA=="));
    assert!(ok.starts_with("HTTP/1.1 200") && ok.contains("runnel_connections"), "{ok}");
    assert_eq!(get(&admin, "/healthz").0, 200);
}
