//! The operator CLI end to end: the real `runnel` binary as a client of a real broker,
//! checking human and `--json` output: topic create/list/describe/alter-config/
//! add-partitions/delete, cluster info, produce from stdin (key separator, headers) and
//! consume (`--format`, `--json`, `--offset N|-N|@TIME`, follow mode), consumer groups
//! (list, describe with lag, reset-offsets dry run vs real, refusal while a member is
//! active, delete), transactions (list with a state filter, describe an open and a committed
//! one, an unknown id), completions, `--help`, usage errors (exit 2) and an unreachable broker
//! (exit 1 with a hint).

mod common;

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::kafka::config;
use common::Broker;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{json, Value};

const GROUP_BROKER_ARGS: &[&str] = &["-o", "group.min.session.timeout.ms=100", "-o", "group.initial.rebalance.delay.ms=100"];

fn cmd(brokers: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runnel"));
    c.args(args).env("RUNNEL_BROKERS", brokers).env_remove("RUST_LOG");
    c
}

/// Runs `runnel ARGS` against `b` with `stdin`, returning the whole output.
fn run_in(b: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = cmd(b, args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn runnel");
    // A command that does not read stdin may already have exited.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().expect("wait runnel")
}

/// Runs `runnel ARGS` and asserts success; returns stdout.
fn ok(b: &Broker, args: &[&str]) -> String {
    ok_in(b, args, "")
}

fn ok_in(b: &Broker, args: &[&str], stdin: &str) -> String {
    let out = run_in(&b.addr, args, stdin);
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    assert!(out.status.success(), "runnel {args:?} failed ({}): {}{stdout}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Runs `runnel ARGS --json` and parses its output.
fn json(b: &Broker, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let s = ok(b, &a);
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("runnel {a:?}: not JSON ({e}): {s}"))
}

/// Runs `runnel ARGS`, expecting exit code `code`; returns stderr.
fn fails(b: &str, args: &[&str], code: i32) -> String {
    let out = run_in(b, args, "");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "runnel {args:?}: stdout {} stderr {stderr}", String::from_utf8_lossy(&out.stdout));
    stderr
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn topics_and_cluster() {
    let b = Broker::start(&[]);
    let info = ok(&b, &["cluster", "info"]);
    assert!(info.contains("controller: 1"), "{info}");
    assert!(info.contains(&b.addr), "{info}");
    let info = json(&b, &["cluster", "info"]);
    assert_eq!(info["controller_id"], 1);
    assert_eq!(info["topics"], 0);
    assert_eq!(info["brokers"][0]["port"].as_i64().unwrap().to_string(), b.addr.rsplit(':').next().unwrap());

    let out = ok(&b, &["topic", "create", "events", "--partitions", "3", "--replicas", "1", "-c", "segment.bytes=100000"]);
    assert_eq!(out, "created topic events with 3 partition(s)\n");
    let created = json(&b, &["topic", "create", "logs", "-c", "max.message.bytes=5000", "-c", "flush.messages=1"]);
    assert_eq!(created, json!({"topic": "logs", "partitions": 1, "configs": {"max.message.bytes": "5000", "flush.messages": "1"}}));
    let err = fails(&b.addr, &["topic", "create", "events"], 1);
    assert!(err.contains("cannot create topic 'events'") && err.contains("already exists"), "{err}");
    let err = fails(&b.addr, &["topic", "create", "bad", "-c", "segment.bytes=x"], 1);
    assert!(err.contains("check the config"), "{err}");

    assert_eq!(ok(&b, &["topic", "list"]), "TOPIC   PARTITIONS  REPLICAS\nevents  3           1\nlogs    1           1\n");
    assert_eq!(
        json(&b, &["topic", "list"]),
        json!([{"name": "events", "partitions": 3, "replication_factor": 1}, {"name": "logs", "partitions": 1, "replication_factor": 1}])
    );
    assert!(ok(&b, &["topic", "list", "--internal"]).contains("__consumer_offsets"));

    ok_in(&b, &["produce", "events", "--partition", "2"], "a\nb\n");
    let d = ok(&b, &["topic", "describe", "events"]);
    assert!(d.contains("partitions: 3") && d.contains("records:    2"), "{d}");
    assert!(d.contains("2          1       1         1    0    2     2"), "{d}");
    assert!(d.contains("segment.bytes  100000  topic"), "{d}");
    let d = json(&b, &["topic", "describe", "events"]);
    assert_eq!(d["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(d["partitions"][2], json!({"partition": 2, "leader": 1, "replicas": [1], "isr": [1], "low_watermark": 0, "high_watermark": 2, "error": null}));
    assert_eq!(d["configs"], json!([{"name": "segment.bytes", "value": "100000", "source": "topic", "is_default": false}]));
    let all = json(&b, &["topic", "describe", "events", "--all-configs"]);
    assert!(all["configs"].as_array().unwrap().iter().any(|c| c["name"] == "max.message.bytes" && c["source"] == "default"));

    // alter-config keeps other overrides, sets and deletes, and reports refusals.
    let a = json(&b, &["topic", "alter-config", "logs", "--set", "max.message.bytes=7000", "--delete", "flush.messages"]);
    assert_eq!(a, json!({"topic": "logs", "configs": {"max.message.bytes": "7000"}}));
    let out = ok(&b, &["topic", "alter-config", "logs", "-s", "segment.bytes=200000"]);
    assert!(out.contains("max.message.bytes  7000") && out.contains("segment.bytes      200000"), "{out}");
    let err = fails(&b.addr, &["topic", "alter-config", "logs", "-s", "segment.bytes=nope"], 1);
    assert!(err.contains("did not apply segment.bytes=nope"), "{err}");
    let d = json(&b, &["topic", "describe", "logs"]);
    assert_eq!(d["configs"].as_array().unwrap().len(), 2, "a refused change leaves the overrides: {d}");

    assert_eq!(ok(&b, &["topic", "add-partitions", "events", "--count", "2"]), "topic events now has 5 partitions (was 3)\n");
    assert_eq!(json(&b, &["topic", "add-partitions", "events", "--total", "6"]), json!({"topic": "events", "partitions_before": 5, "partitions": 6}));
    let err = fails(&b.addr, &["topic", "add-partitions", "events", "--total", "6"], 1);
    assert!(err.contains("already has 6"), "{err}");
    fails(&b.addr, &["topic", "add-partitions", "events"], 2);

    assert_eq!(ok(&b, &["topic", "delete", "events"]), "deleted topic events\n");
    assert_eq!(json(&b, &["topic", "delete", "logs"]), json!({"deleted": ["logs"]}));
    assert_eq!(json(&b, &["topic", "list"]), json!([]));
    let err = fails(&b.addr, &["topic", "describe", "events"], 1);
    assert!(err.contains("topic 'events' does not exist"), "{err}");
    let err = fails(&b.addr, &["topic", "delete", "events"], 1);
    assert!(err.contains("cannot delete topic 'events'"), "{err}");
}

#[test]
fn produce_and_consume() {
    let b = Broker::start(&[]);
    ok(&b, &["topic", "create", "t", "-p", "1"]);
    let report: Value = serde_json::from_str(&ok_in(
        &b,
        &["produce", "t", "--key-separator", ":", "-H", "app=cli", "-H", "v=1", "--json"],
        "k1:hello\nk2:wor:ld\nnokey\n",
    ))
    .unwrap();
    assert_eq!(report, json!({"topic": "t", "records": 3, "failed": 0, "partitions": [{"partition": 0, "records": 3, "first_offset": 0, "last_offset": 2}]}));

    let out = ok(&b, &["consume", "t", "-n", "3", "--format", "%k|%v|%p|%o|%h|%T"]);
    assert_eq!(out, "k1|hello|0|0|app=cli,v=1|t\nk2|wor:ld|0|1|app=cli,v=1|t\n|nokey|0|2|app=cli,v=1|t\n");
    let out = ok(&b, &["consume", "t", "-n", "3", "--json"]);
    let recs: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recs.len(), 3);
    let ts = recs[0]["timestamp"].as_i64().unwrap();
    assert!((now_ms() - ts).abs() < 60_000, "a CreateTime near now: {ts}");
    let mut first = recs[0].clone();
    first.as_object_mut().unwrap().remove("timestamp");
    assert_eq!(
        first,
        json!({"topic": "t", "partition": 0, "offset": 0, "key": "k1", "value": "hello",
               "headers": [{"key": "app", "value": "cli"}, {"key": "v", "value": "1"}]})
    );
    assert_eq!(recs[2]["key"], Value::Null);

    // --offset N, -N, and -e at the end.
    assert_eq!(ok(&b, &["consume", "t", "--offset", "1", "-e", "-f", "%o %v"]), "1 wor:ld\n2 nokey\n");
    assert_eq!(ok(&b, &["consume", "t", "-o", "-1", "--no-follow"]), "nokey\n");
    assert_eq!(ok(&b, &["consume", "t", "-o", "end", "-e"]), "");

    // --offset @TIME: records at or after a moment between two produce runs.
    std::thread::sleep(Duration::from_millis(30));
    let mid = now_ms();
    std::thread::sleep(Duration::from_millis(30));
    let out = ok_in(&b, &["produce", "t", "--file", "/dev/stdin", "--compression", "zstd", "--acks", "1"], "later1\nlater2\n");
    assert_eq!(out, "wrote 2 record(s) to t\nPARTITION  RECORDS  OFFSETS\n0          2        3-4\n");
    assert_eq!(ok(&b, &["consume", "t", "-o", &format!("@{mid}"), "-e", "-f", "%o:%v"]), "3:later1\n4:later2\n");
    assert_eq!(ok(&b, &["consume", "t", "-o", "@2999-01-01T00:00:00Z", "-e"]), "");

    // Follow mode (the default) waits for new records.
    // (From offset 5, the next one, rather than `end`, so a slow start cannot miss it.)
    let mut child = cmd(&b.addr, &["consume", "t", "-o", "5", "-n", "1", "-f", "%v"]).stdout(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "follow mode waits at the end");
    ok_in(&b, &["produce", "t"], "fresh\n");
    let mut s = String::new();
    child.stdout.take().unwrap().read_to_string(&mut s).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(s, "fresh\n");

    // A partition that does not exist, a topic that does not exist.
    let err = fails(&b.addr, &["consume", "t", "-p", "7", "-e"], 1);
    assert!(err.contains("has no partition 7"), "{err}");
    let err = fails(&b.addr, &["consume", "missing", "-e"], 1);
    assert!(err.contains("topic 'missing' does not exist"), "{err}");
    fails(&b.addr, &["consume", "t", "-o", "soon"], 2);
}

/// Waits until `f` holds, failing after 20 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn consumer_groups() {
    let b = Broker::start(GROUP_BROKER_ARGS);
    ok(&b, &["topic", "create", "orders", "-p", "1"]);
    ok_in(&b, &["produce", "orders"], "o1\no2\no3\no4\no5\n");
    assert_eq!(ok(&b, &["group", "list"]), "no consumer groups\n");

    assert_eq!(ok(&b, &["consume", "orders", "--group", "billing", "-n", "3"]), "o1\no2\no3\n");
    assert_eq!(json(&b, &["group", "list"]), json!([{"group": "billing", "state": "Empty", "protocol_type": "consumer", "members": 0}]));
    let d = json(&b, &["group", "describe", "billing"]);
    assert_eq!(d["state"], "Empty");
    assert_eq!(d["offsets"], json!([{"topic": "orders", "partition": 0, "committed": 3, "log_end": 5, "lag": 2, "member": null}]));
    let human = ok(&b, &["group", "describe", "billing"]);
    assert!(human.contains("total lag: 2") && human.contains("orders  0          3          5        2    -"), "{human}");

    // A dry run changes nothing; the real reset does.
    let dry = json(&b, &["group", "reset-offsets", "billing", "--topic", "orders", "--to", "earliest", "--dry-run"]);
    assert_eq!(dry, json!({"group": "billing", "dry_run": true, "offsets": [{"topic": "orders", "partition": 0, "current": 3, "new": 0}]}));
    assert_eq!(json(&b, &["group", "describe", "billing"])["offsets"][0]["committed"], 3);
    let out = ok(&b, &["group", "reset-offsets", "billing", "--all-topics", "--to", "1"]);
    assert_eq!(out, "reset offsets of group billing\nTOPIC   PARTITION  CURRENT  NEW\norders  0          3        1\n");
    assert_eq!(json(&b, &["group", "describe", "billing"])["offsets"][0]["committed"], 1);
    assert_eq!(ok(&b, &["consume", "orders", "-g", "billing", "-e", "-f", "%o"]), "1\n2\n3\n4\n");

    // While a member is active, resets are refused; it leaves on SIGTERM.
    let mut member = cmd(&b.addr, &["consume", "orders", "-g", "billing"]).stdout(Stdio::null()).spawn().unwrap();
    eventually("an active member", || {
        let d = json(&b, &["group", "describe", "billing"]);
        d["state"] == "Stable" && d["members"].as_array().is_some_and(|m| m.len() == 1)
    });
    let d = json(&b, &["group", "describe", "billing"]);
    assert_eq!(d["members"][0]["assignment"], json!({"orders": [0]}));
    assert_eq!(d["offsets"][0]["member"], "runnel-cli");
    let err = fails(&b.addr, &["group", "reset-offsets", "billing", "--topic", "orders", "--to", "earliest"], 1);
    assert!(err.contains("has 1 active member") && err.contains("stop its consumers first"), "{err}");
    let err = fails(&b.addr, &["group", "delete", "billing"], 1);
    assert!(err.contains("cannot delete group 'billing'"), "{err}");
    Command::new("kill").arg("-TERM").arg(member.id().to_string()).status().unwrap();
    assert!(member.wait().unwrap().success(), "consume exits cleanly on SIGTERM");
    eventually("the member to leave", || json(&b, &["group", "describe", "billing"])["members"].as_array().is_some_and(|m| m.is_empty()));

    assert_eq!(ok(&b, &["group", "delete", "billing"]), "deleted group billing\n");
    let err = fails(&b.addr, &["group", "describe", "billing"], 1);
    assert!(err.contains("no consumer group named 'billing'"), "{err}");
}

#[test]
fn transactions_list_and_describe() {
    let b = Broker::start(&["-o", "transaction.state.log.num.partitions=3"]);
    ok(&b, &["topic", "create", "payments", "-p", "2"]);
    assert_eq!(json(&b, &["txn", "list"]), json!([]));
    assert_eq!(ok(&b, &["txn", "list"]), "no transactions\n");

    let p: BaseProducer = config(&b, &[("transactional.id", "cli-tx"), ("linger.ms", "1")], &[]).create().unwrap();
    p.init_transactions(Duration::from_secs(30)).unwrap();
    p.begin_transaction().unwrap();
    p.send(BaseRecord::<(), _>::to("payments").payload("42 EUR").partition(1)).unwrap();
    p.flush(Duration::from_secs(30)).unwrap();

    let listed = json(&b, &["txn", "list"]);
    let producer_id = listed[0]["producer_id"].as_i64().expect("a producer id");
    assert!(producer_id >= 0, "{listed}");
    assert_eq!(listed, json!([{"transactional_id": "cli-tx", "coordinator": 1, "producer_id": producer_id, "state": "Ongoing"}]));
    let d = json(&b, &["txn", "describe", "cli-tx"]);
    assert_eq!((&d["state"], &d["partitions"], &d["producer_epoch"]), (&json!("Ongoing"), &json!(["payments-1"]), &json!(0)), "{d}");
    assert!(d["start_time_ms"].as_i64().unwrap() > now_ms() - 60_000, "{d}");
    let human = ok(&b, &["txn", "describe", "cli-tx"]);
    assert!(human.contains("Ongoing") && human.contains("payments-1"), "{human}");

    p.commit_transaction(Duration::from_secs(30)).unwrap();
    let d = json(&b, &["txn", "describe", "cli-tx"]);
    assert_eq!((&d["state"], &d["partitions"]), (&json!("CompleteCommit"), &json!([])), "{d}");
    assert_eq!(json(&b, &["txn", "list", "--state", "Ongoing"]), json!([]));
    assert_eq!(json(&b, &["txn", "list", "--state", "CompleteCommit"]).as_array().map(Vec::len), Some(1));
    let human = ok(&b, &["txn", "list"]);
    assert!(human.starts_with("TRANSACTIONAL ID") && human.contains("cli-tx") && human.contains("CompleteCommit"), "{human}");

    let err = fails(&b.addr, &["txn", "describe", "no-such-id"], 1);
    assert!(err.contains("TRANSACTIONAL_ID_NOT_FOUND (105)") && err.contains("no-such-id"), "{err}");
    let err = fails(&b.addr, &["txn", "list", "--state", "Sleeping"], 1);
    assert!(err.contains("unknown transaction state Sleeping"), "{err}");
}

#[test]
fn help_completions_usage_and_unreachable_broker() {
    let commands: &[&[&str]] = &[
        &[],
        &["broker"],
        &["cluster"],
        &["cluster", "info"],
        &["topic"],
        &["topic", "create"],
        &["topic", "list"],
        &["topic", "describe"],
        &["topic", "delete"],
        &["topic", "add-partitions"],
        &["topic", "alter-config"],
        &["produce"],
        &["consume"],
        &["group"],
        &["group", "list"],
        &["group", "describe"],
        &["group", "delete"],
        &["group", "reset-offsets"],
        &["completions"],
    ];
    for c in commands {
        let mut args = c.to_vec();
        args.push("--help");
        let out = run_in("127.0.0.1:1", &args, "");
        assert!(out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: runnel"), "{args:?}");
    }
    let broker_help = String::from_utf8(run_in("x", &["broker", "--help"], "").stdout).unwrap();
    for flag in ["--config", "--data-dir", "--listen", "--advertised-listener", "--admin-listen", "--node-id", "--set", "--log-level", "RUNNEL_ADMIN_LISTEN"] {
        assert!(broker_help.contains(flag), "broker --help lists {flag}");
    }

    let out = run_in("x", &["completions", "bash"], "");
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("runnel") && script.contains("reset-offsets"), "a bash completion script");
    assert!(!run_in("x", &["completions", "zsh"], "").stdout.is_empty());

    // Usage errors exit 2.
    fails("x", &["frobnicate"], 2);
    fails("x", &["topic", "create"], 2);
    fails("x", &["completions", "tcsh"], 2);

    // Nothing listening: exit 1 with what to try, quickly.
    let started = Instant::now();
    for args in [&["topic", "list"][..], &["cluster", "info"], &["consume", "t"], &["group", "list"]] {
        let err = fails("127.0.0.1:1", args, 1);
        assert!(err.contains("cannot reach broker at 127.0.0.1:1") && err.contains("--brokers"), "{args:?}: {err}");
    }
    let err = String::from_utf8(cmd("x", &["produce", "t", "--brokers", "127.0.0.1:1"]).stdin(Stdio::null()).output().unwrap().stderr).unwrap();
    assert!(err.contains("is `runnel broker` running?"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
