//! The differential test (issue 12): one scripted conversation of raw Kafka requests is
//! sent to Apache Kafka and to Runnel, and every response is compared field by field.
//! What may legitimately differ (cluster ids, node ids, ports, throttle times, …) and every
//! intended difference is listed, with its reason, in `differences.txt` beside this file.
//! An intended difference that no longer occurs fails the test too, so the list stays true.
//!
//! It needs Apache Kafka (`scripts/apache-kafka`: Java and Kafka's jars from Maven
//! Central), so it is `#[ignore]`d in a plain `cargo test`; `scripts/test` runs it after
//! installing the tools: `cargo test -p runnel --test differential -- --ignored`.

#[path = "../common/mod.rs"]
mod common;
mod tree;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Request, StrBytes};
use runnel_protocol::batch::{encode_batch, NewRecord};

use common::{wire, Broker};
use tree::{flatten, glob};

const TOPIC: &str = "diff-orders";
const GROUP: &str = "diff-group";
const TS: i64 = 1_700_000_000_000;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Apache Kafka, started by `scripts/apache-kafka start`, stopped on drop.
struct ApacheKafka {
    bootstrap: String,
    dir: String,
}

impl ApacheKafka {
    fn start() -> ApacheKafka {
        let script = repo_root().join("scripts/apache-kafka");
        let out = Command::new(&script)
            .arg("start")
            .env("APACHE_KAFKA_REBALANCE_DELAY_MS", "0")
            .output()
            .expect("run scripts/apache-kafka");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "scripts/apache-kafka start failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let field = |k: &str| {
            text.lines().find_map(|l| l.strip_prefix(k)).unwrap_or_else(|| panic!("no {k} in {text}")).to_string()
        };
        ApacheKafka { bootstrap: field("BOOTSTRAP="), dir: field("DIR=") }
    }
}

impl Drop for ApacheKafka {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/apache-kafka")).arg("stop").arg(&self.dir).status();
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One broker under comparison: a connection and its ApiVersions table.
struct Side {
    name: &'static str,
    conn: TcpStream,
    versions: BTreeMap<i16, (i16, i16)>,
    correlation: i32,
}

impl Side {
    fn connect(name: &'static str, addr: &str) -> Side {
        let conn = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {name} at {addr}: {e}"));
        conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        conn.set_nodelay(true).unwrap();
        let mut side = Side { name, conn, versions: BTreeMap::new(), correlation: 0 };
        let av: ApiVersionsResponse = side.call(3, &api_versions_req("differential-test"));
        side.versions = av.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        side
    }

    /// One request and its decoded response, framed by the bad-input tests' wire helpers.
    fn call<Q: Request>(&mut self, version: i16, req: &Q) -> Q::Response {
        self.correlation += 1;
        let key = ApiKey::try_from(Q::KEY).unwrap_or_else(|_| panic!("unknown api key {}", Q::KEY));
        self.conn.write_all(&wire::request(key, version, self.correlation, req)).expect("write request");
        let frame = wire::read_frame(&mut self.conn).unwrap_or_else(|e| panic!("{}: no response to {key:?}: {e}", self.name));
        let (correlation, response) = wire::parse::<Q::Response>(key, version, frame);
        assert_eq!(correlation, self.correlation, "{}: correlation id", self.name);
        response
    }
}

/// An entry of differences.txt.
struct Allowed {
    step: String,
    path: String,
    reason: String,
    used: bool,
}

fn load_differences() -> Vec<Allowed> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/differential/differences.txt");
    let text = std::fs::read_to_string(&file).expect("read differences.txt");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut words = l.split_whitespace();
            let step = words.next().unwrap().to_string();
            let path = words.next().unwrap_or_default().to_string();
            let reason = words.collect::<Vec<_>>().join(" ");
            assert!(!path.is_empty() && !reason.is_empty(), "differences.txt: `{l}` needs STEP PATH REASON");
            Allowed { step, path, reason, used: false }
        })
        .collect()
}

/// The conversation: both sides, the allowed differences, and what went wrong.
struct Dialog {
    runnel: Side,
    kafka: Side,
    allowed: Vec<Allowed>,
    unexpected: Vec<String>,
    steps: usize,
}

impl Dialog {
    /// The highest version both brokers support, at most `cap`.
    fn version(&self, key: i16, cap: i16) -> i16 {
        let r = self.runnel.versions.get(&key).unwrap_or_else(|| panic!("Runnel does not advertise api {key}"));
        let k = self.kafka.versions.get(&key).unwrap_or_else(|| panic!("Apache Kafka does not advertise api {key}"));
        let v = r.1.min(k.1).min(cap);
        assert!(v >= r.0.max(k.0), "api {key}: no common version ({r:?} vs {k:?})");
        v
    }

    /// Sends the same request to both and compares the answers.
    fn step<Q: Request + Clone>(&mut self, name: &str, cap: i16, req: Q) -> [Q::Response; 2]
    where
        Q::Response: std::fmt::Debug,
    {
        self.step_each(name, cap, |_| req.clone())
    }

    /// Sends each side its own request (`build(0)` to Runnel, `build(1)` to Kafka: for
    /// member ids and the like) and compares the answers.
    fn step_each<Q: Request>(&mut self, name: &str, cap: i16, build: impl Fn(usize) -> Q) -> [Q::Response; 2]
    where
        Q::Response: std::fmt::Debug,
    {
        let v = self.version(Q::KEY, cap);
        let r = self.runnel.call(v, &build(0));
        let k = self.kafka.call(v, &build(1));
        self.compare(name, v, &format!("{r:#?}"), &format!("{k:#?}"));
        self.steps += 1;
        [r, k]
    }

    fn compare(&mut self, name: &str, version: i16, runnel: &str, kafka: &str) {
        let (r, k) = (flatten(runnel), flatten(kafka));
        let paths: std::collections::BTreeSet<&String> = r.keys().chain(k.keys()).collect();
        for path in paths {
            let (rv, kv) = (r.get(path), k.get(path));
            if rv == kv {
                continue;
            }
            let hit = self.allowed.iter_mut().find(|a| glob(&a.step, name) && glob(&a.path, path));
            match hit {
                Some(a) => a.used = true,
                None => self.unexpected.push(format!(
                    "{name} (v{version}) {path}: runnel {} / apache-kafka {}",
                    rv.map_or("(absent)", String::as_str),
                    kv.map_or("(absent)", String::as_str)
                )),
            }
        }
    }

    /// Repeats `req` to Apache Kafka alone (nothing compared) until `ready` holds: Kafka's
    /// metadata reaches its brokers' caches a moment after a change is acknowledged, and
    /// the group coordinator exists only once `__consumer_offsets` is made and loaded.
    fn kafka_until<Q: Request>(&mut self, what: &str, cap: i16, req: Q, ready: impl Fn(&Q::Response) -> bool) {
        let v = self.version(Q::KEY, cap);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !ready(&self.kafka.call(v, &req)) {
            assert!(std::time::Instant::now() < deadline, "Apache Kafka: {what} not seen after 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kafka_knows_topics(&mut self, topics: &[&str], known: bool) {
        self.kafka_until("topics in metadata", 12, metadata_req(topics, false), |r| {
            r.topics.iter().all(|t| (t.error_code == 0) == known)
        });
    }

    /// Waits until Kafka's DescribeConfigs shows `key` = `value` for `TOPIC`.
    fn kafka_shows_config(&mut self, key: &str, value: &str) {
        self.kafka_until("a config change", 4, describe_configs_req(2, TOPIC, &[key]), |r| {
            r.results[0].configs.iter().any(|c| c.name.as_str() == key && c.value.as_deref() == Some(value))
        });
    }

    fn finish(self) {
        let stale: Vec<String> = self
            .allowed
            .iter()
            .filter(|a| a.step != "*" && !a.used)
            .map(|a| format!("{} {} ({})", a.step, a.path, a.reason))
            .collect();
        println!("differential test: {} steps compared", self.steps);
        let mut problems = String::new();
        if !self.unexpected.is_empty() {
            problems += &format!(
                "{} unexpected differences (fix Runnel, or list them with a reason in differences.txt):\n  {}\n",
                self.unexpected.len(),
                self.unexpected.join("\n  ")
            );
        }
        if !stale.is_empty() {
            problems += &format!(
                "{} intended differences no longer occur (remove them from differences.txt):\n  {}\n",
                stale.len(),
                stale.join("\n  ")
            );
        }
        assert!(problems.is_empty(), "{problems}");
    }
}

fn api_versions_req(software: &str) -> ApiVersionsRequest {
    ApiVersionsRequest::default().with_client_software_name(sb(software)).with_client_software_version(sb("1.0"))
}

fn batch(values: &[&str]) -> Vec<u8> {
    let records: Vec<NewRecord> = values
        .iter()
        .enumerate()
        .map(|(i, v)| NewRecord { timestamp: TS + i as i64, key: Some(b"k"), value: Some(v.as_bytes()), headers: &[] })
        .collect();
    encode_batch(0, 0, &records)
}

fn produce_req(topic: &str, partition: i32, records: Vec<u8>) -> ProduceRequest {
    let p = produce_request::PartitionProduceData::default().with_index(partition).with_records(Some(records.into()));
    let t = produce_request::TopicProduceData::default().with_name(TopicName(sb(topic))).with_partition_data(vec![p]);
    ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![t])
}

fn fetch_req(topic: &str, partition: i32, offset: i64, partition_max: i32, max_bytes: i32) -> FetchRequest {
    let p = fetch_request::FetchPartition::default()
        .with_partition(partition)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(partition_max);
    let t = fetch_request::FetchTopic::default().with_topic(TopicName(sb(topic))).with_partitions(vec![p]);
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![t])
}

fn list_offsets_req(topic: &str, timestamps: &[i64]) -> ListOffsetsRequest {
    let ps = timestamps
        .iter()
        .map(|&ts| list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(ts))
        .collect();
    let t = list_offsets_request::ListOffsetsTopic::default().with_name(TopicName(sb(topic))).with_partitions(ps);
    ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![t])
}

fn creatable(name: &str, partitions: i32, rf: i16, configs: &[(&str, &str)]) -> create_topics_request::CreatableTopic {
    let configs = configs
        .iter()
        .map(|(k, v)| create_topics_request::CreatableTopicConfig::default().with_name(sb(k)).with_value(Some(sb(v))))
        .collect();
    create_topics_request::CreatableTopic::default()
        .with_name(TopicName(sb(name)))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
        .with_configs(configs)
}

fn create_req(topics: Vec<create_topics_request::CreatableTopic>, validate_only: bool) -> CreateTopicsRequest {
    CreateTopicsRequest::default().with_topics(topics).with_timeout_ms(10_000).with_validate_only(validate_only)
}

fn metadata_req(topics: &[&str], auto_create: bool) -> MetadataRequest {
    let ts = topics.iter().map(|t| metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(sb(t))))).collect();
    MetadataRequest::default().with_topics(Some(ts)).with_allow_auto_topic_creation(auto_create)
}

fn describe_configs_req(kind: i8, name: &str, keys: &[&str]) -> DescribeConfigsRequest {
    let r = describe_configs_request::DescribeConfigsResource::default()
        .with_resource_type(kind)
        .with_resource_name(sb(name))
        .with_configuration_keys(Some(keys.iter().map(|k| sb(k)).collect()));
    DescribeConfigsRequest::default().with_resources(vec![r])
}

fn alter_configs_req(topic: &str, sets: &[(&str, i8, Option<&str>)]) -> IncrementalAlterConfigsRequest {
    let configs = sets
        .iter()
        .map(|(k, op, v)| {
            incremental_alter_configs_request::AlterableConfig::default()
                .with_name(sb(k))
                .with_config_operation(*op)
                .with_value(v.map(sb))
        })
        .collect();
    let r = incremental_alter_configs_request::AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(sb(topic))
        .with_configs(configs);
    IncrementalAlterConfigsRequest::default().with_resources(vec![r])
}

fn delete_records_req(topic: &str, offset: i64) -> DeleteRecordsRequest {
    let p = delete_records_request::DeleteRecordsPartition::default().with_partition_index(0).with_offset(offset);
    let t = delete_records_request::DeleteRecordsTopic::default().with_name(TopicName(sb(topic))).with_partitions(vec![p]);
    DeleteRecordsRequest::default().with_topics(vec![t]).with_timeout_ms(10_000)
}

/// A consumer-protocol subscription to `TOPIC` (version 0).
fn subscription() -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(1);
    b.put_i16(TOPIC.len() as i16);
    b.put_slice(TOPIC.as_bytes());
    b.put_i32(-1); // no user data
    b.freeze()
}

/// A consumer-protocol assignment of partitions 0..3 of `TOPIC` (version 0).
fn assignment() -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(1);
    b.put_i16(TOPIC.len() as i16);
    b.put_slice(TOPIC.as_bytes());
    b.put_i32(3);
    for p in 0..3 {
        b.put_i32(p);
    }
    b.put_i32(-1);
    b.freeze()
}

fn join_req(member: &str) -> JoinGroupRequest {
    let proto = join_group_request::JoinGroupRequestProtocol::default().with_name(sb("range")).with_metadata(subscription());
    JoinGroupRequest::default()
        .with_group_id(GroupId(sb(GROUP)))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(sb(member))
        .with_protocol_type(sb("consumer"))
        .with_protocols(vec![proto])
}

fn offset_commit_req(member: &str, generation: i32, offset: i64) -> OffsetCommitRequest {
    let p = offset_commit_request::OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(offset)
        .with_committed_metadata(Some(sb("diff")));
    let t = offset_commit_request::OffsetCommitRequestTopic::default().with_name(TopicName(sb(TOPIC))).with_partitions(vec![p]);
    OffsetCommitRequest::default()
        .with_group_id(GroupId(sb(GROUP)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(sb(member))
        .with_retention_time_ms(-1)
        .with_topics(vec![t])
}

/// OffsetFetch for partitions 0 and 1 of `TOPIC` (v7 and below: one group per request).
fn offset_fetch_req() -> OffsetFetchRequest {
    let t = offset_fetch_request::OffsetFetchRequestTopic::default().with_name(TopicName(sb(TOPIC))).with_partition_indexes(vec![0, 1]);
    OffsetFetchRequest::default().with_group_id(GroupId(sb(GROUP))).with_topics(Some(vec![t]))
}

fn describe_groups_req() -> DescribeGroupsRequest {
    DescribeGroupsRequest::default().with_groups(vec![GroupId(sb(GROUP)), GroupId(sb("diff-no-such-group"))])
}

#[test]
#[ignore = "needs Apache Kafka (Java + scripts/apache-kafka); scripts/test runs it with --ignored"]
fn runnel_answers_as_apache_kafka_does() {
    if std::env::var_os("RUNNEL_SKIP_APACHE_KAFKA").is_some() {
        println!("differential test skipped: RUNNEL_SKIP_APACHE_KAFKA is set");
        return;
    }
    let kafka = ApacheKafka::start();
    let runnel = Broker::start(&[]);
    let mut d = Dialog {
        runnel: Side::connect("runnel", &runnel.addr),
        kafka: Side::connect("apache-kafka", &kafka.bootstrap),
        allowed: load_differences(),
        unexpected: Vec::new(),
        steps: 0,
    };

    // ApiVersions and Metadata before anything exists.
    d.step("api-versions", 3, api_versions_req("diff"));
    d.step("api-versions-bad-software-name", 3, api_versions_req("no spaces allowed"));
    d.step("metadata-unknown-topic", 12, metadata_req(&[TOPIC], false));

    // CreateTopics: good, validate-only, and each kind of bad argument.
    d.step("create-validate-only", 7, create_req(vec![creatable(TOPIC, 3, 1, &[])], true));
    d.step("create", 7, create_req(vec![creatable(TOPIC, 3, 1, &[("retention.ms", "3600000")])], false));
    d.step("create-exists", 7, create_req(vec![creatable(TOPIC, 3, 1, &[])], false));
    d.step("create-zero-partitions", 7, create_req(vec![creatable("diff-zero", 0, 1, &[])], false));
    d.step("create-replication-too-high", 7, create_req(vec![creatable("diff-rf", 1, 5, &[])], false));
    d.step("create-bad-name", 7, create_req(vec![creatable("bad/name", 1, 1, &[])], false));
    d.step("create-bad-config-value", 7, create_req(vec![creatable("diff-badcfg", 1, 1, &[("retention.ms", "soon")])], false));
    d.step("create-unknown-config", 7, create_req(vec![creatable("diff-unknowncfg", 1, 1, &[("no.such.config", "1")])], false));
    d.step("create-compact", 7, create_req(vec![creatable("diff-compact", 1, 1, &[("cleanup.policy", "compact")])], false));
    d.kafka_knows_topics(&[TOPIC, "diff-compact"], true);
    d.step("metadata", 12, metadata_req(&[TOPIC, "diff-compact"], false));
    // v8-v10 can ask for the cluster's and each topic's operations the principal may do.
    let asking = metadata_req(&[TOPIC, "diff-no-such-topic"], false).with_include_topic_authorized_operations(true);
    d.step("metadata-authorized-operations", 10, asking.with_include_cluster_authorized_operations(true));
    d.step("describe-cluster-authorized-operations", 1, DescribeClusterRequest::default().with_include_cluster_authorized_operations(true));

    // Produce: good batches, a broken one, an unknown partition and topic.
    d.step("produce", 11, produce_req(TOPIC, 0, batch(&["a", "b", "c"])));
    d.step("produce-second", 11, produce_req(TOPIC, 0, batch(&["d", "e"])));
    let mut broken = batch(&["x"]);
    let last = broken.len() - 1;
    broken[last] ^= 0xff;
    d.step("produce-bad-crc", 11, produce_req(TOPIC, 0, broken));
    d.step("produce-unknown-partition", 11, produce_req(TOPIC, 7, batch(&["x"])));
    d.step("produce-unknown-topic", 11, produce_req("diff-no-such-topic", 0, batch(&["x"])));
    d.step("produce-compact-without-key", 11, {
        let rec = [NewRecord { timestamp: TS, key: None, value: Some(b"v"), headers: &[] }];
        produce_req("diff-compact", 0, encode_batch(0, 0, &rec))
    });

    // Fetch at the edges.
    d.step("fetch", 12, fetch_req(TOPIC, 0, 0, 1 << 20, 1 << 20));
    d.step("fetch-middle-of-batch", 12, fetch_req(TOPIC, 0, 4, 1 << 20, 1 << 20));
    d.step("fetch-at-end", 12, fetch_req(TOPIC, 0, 5, 1 << 20, 1 << 20));
    d.step("fetch-out-of-range", 12, fetch_req(TOPIC, 0, 1000, 1 << 20, 1 << 20));
    d.step("fetch-max-bytes-zero", 12, fetch_req(TOPIC, 0, 0, 0, 0));
    d.step("fetch-unknown-partition", 12, fetch_req(TOPIC, 9, 0, 1 << 20, 1 << 20));
    d.step("fetch-unknown-topic-id", 13, {
        let mut r = fetch_req(TOPIC, 0, 0, 1 << 20, 1 << 20);
        r.topics[0].topic_id = uuid::Uuid::from_u128(0x1234);
        r
    });

    // Fetch sessions (KIP-227): a full fetch opens one; an incremental fetch with nothing
    // new is answered no partition; the wrong epoch and an unknown session are refused;
    // epoch -1 closes it.
    let session = |mut r: FetchRequest, id: i32, epoch: i32, topics: bool| {
        r.session_id = id;
        r.session_epoch = epoch;
        if !topics {
            r.topics.clear();
        }
        r
    };
    let at_end = || fetch_req(TOPIC, 0, 5, 1 << 20, 1 << 20);
    let [r, k] = d.step("fetch-session-open", 12, session(at_end(), 0, 0, true));
    assert!(r.session_id != 0 && k.session_id != 0, "both brokers open a session: {} / {}", r.session_id, k.session_id);
    let ids = [r.session_id, k.session_id];
    d.step_each("fetch-session-incremental", 12, |i| session(at_end(), ids[i], 1, false));
    d.step_each("fetch-session-wrong-epoch", 12, |i| session(at_end(), ids[i], 7, false));
    d.step("fetch-session-unknown", 12, session(at_end(), 0x7fff_fff0, 1, false));
    d.step_each("fetch-session-close", 12, |i| session(at_end(), ids[i], -1, true));
    d.step_each("fetch-session-after-close", 12, |i| session(at_end(), ids[i], 2, false));

    // ListOffsets with timestamps.
    d.step("list-offsets-earliest", 7, list_offsets_req(TOPIC, &[-2]));
    d.step("list-offsets-latest", 7, list_offsets_req(TOPIC, &[-1]));
    d.step("list-offsets-timestamp", 7, list_offsets_req(TOPIC, &[TS + 1]));
    d.step("list-offsets-future-timestamp", 7, list_offsets_req(TOPIC, &[TS + 100]));
    d.step("list-offsets-max-timestamp", 7, list_offsets_req(TOPIC, &[-3]));
    d.step("list-offsets-duplicate-partitions", 7, list_offsets_req(TOPIC, &[-2, -1]));

    // Configs.
    let keys = ["cleanup.policy", "retention.ms", "segment.bytes", "max.message.bytes", "min.insync.replicas"];
    d.step("describe-configs", 4, describe_configs_req(2, TOPIC, &keys));
    d.step("alter-configs", 1, alter_configs_req(TOPIC, &[("retention.ms", 0, Some("7200000")), ("segment.bytes", 0, Some("1048576"))]));
    d.kafka_shows_config("retention.ms", "7200000");
    d.step("describe-configs-after-alter", 4, describe_configs_req(2, TOPIC, &keys));
    d.step("alter-configs-bad-value", 1, alter_configs_req(TOPIC, &[("retention.ms", 0, Some("soon"))]));
    d.step("alter-configs-duplicate-keys", 1, alter_configs_req(TOPIC, &[("retention.ms", 0, Some("7200000")), ("retention.ms", 1, None)]));
    d.step("describe-configs-group-without-a-name", 4, describe_configs_req(32, "", &["consumer.session.timeout.ms"]));
    d.step("alter-configs-delete", 1, alter_configs_req(TOPIC, &[("retention.ms", 1, None)]));
    d.kafka_shows_config("retention.ms", "604800000");
    d.step("describe-configs-after-delete", 4, describe_configs_req(2, TOPIC, &keys));
    d.step("alter-configs-unknown-topic", 1, alter_configs_req("diff-no-such-topic", &[("retention.ms", 0, Some("1"))]));
    d.step("describe-configs-unknown-topic", 4, describe_configs_req(2, "diff-no-such-topic", &keys));

    // A consumer group through its life cycle (once Kafka has made __consumer_offsets).
    d.kafka_until("the group coordinator", 3, FindCoordinatorRequest::default().with_key(sb(GROUP)), |r| r.error_code == 0);
    d.kafka_until("the group coordinator loaded", 5, describe_groups_req(), |r| r.groups[0].error_code == 0);
    d.step("find-coordinator", 3, FindCoordinatorRequest::default().with_key(sb(GROUP)).with_key_type(0));
    let [r, k] = d.step("join-group-first", 9, join_req(""));
    let members = [r.member_id.to_string(), k.member_id.to_string()];
    let [r, k] = d.step_each("join-group", 9, |i| join_req(&members[i]));
    let generation = [r.generation_id, k.generation_id];
    d.step_each("sync-group", 5, |i| {
        let a = sync_group_request::SyncGroupRequestAssignment::default().with_member_id(sb(&members[i])).with_assignment(assignment());
        SyncGroupRequest::default()
            .with_group_id(GroupId(sb(GROUP)))
            .with_generation_id(generation[i])
            .with_member_id(sb(&members[i]))
            .with_protocol_type(Some(sb("consumer")))
            .with_protocol_name(Some(sb("range")))
            .with_assignments(vec![a])
    });
    d.step_each("heartbeat", 4, |i| {
        HeartbeatRequest::default().with_group_id(GroupId(sb(GROUP))).with_generation_id(generation[i]).with_member_id(sb(&members[i]))
    });
    d.step_each("heartbeat-stale-generation", 4, |i| {
        HeartbeatRequest::default().with_group_id(GroupId(sb(GROUP))).with_generation_id(generation[i] + 5).with_member_id(sb(&members[i]))
    });
    d.step_each("offset-commit", 8, |i| offset_commit_req(&members[i], generation[i], 3));
    d.step_each("offset-commit-unknown-member", 8, |i| offset_commit_req("not-a-member", generation[i], 4));
    d.step("offset-fetch", 7, offset_fetch_req());
    d.step("describe-groups", 5, describe_groups_req());
    d.step("describe-groups-authorized-operations", 5, describe_groups_req().with_include_authorized_operations(true));
    d.step("list-groups", 4, ListGroupsRequest::default());
    d.step_each("leave-group", 4, |i| {
        let m = leave_group_request::MemberIdentity::default().with_member_id(sb(&members[i]));
        LeaveGroupRequest::default().with_group_id(GroupId(sb(GROUP))).with_members(vec![m])
    });
    d.step("describe-groups-empty", 5, describe_groups_req());
    d.step("delete-groups", 2, DeleteGroupsRequest::default().with_groups_names(vec![GroupId(sb(GROUP)), GroupId(sb("diff-no-such-group"))]));
    d.step("offset-fetch-after-delete", 7, offset_fetch_req());

    // DeleteRecords, then DeleteTopics.
    d.step("delete-records", 2, delete_records_req(TOPIC, 2));
    d.step("delete-records-beyond-end", 2, delete_records_req(TOPIC, 100));
    d.step("list-offsets-after-delete-records", 7, list_offsets_req(TOPIC, &[-2]));
    d.step("fetch-below-log-start", 12, fetch_req(TOPIC, 0, 0, 1 << 20, 1 << 20));
    let names = |ns: &[&str]| ns.iter().map(|n| TopicName(sb(n))).collect::<Vec<_>>();
    d.step("delete-topics", 5, DeleteTopicsRequest::default().with_topic_names(names(&[TOPIC, "diff-compact"])).with_timeout_ms(10_000));
    d.step("delete-topics-unknown", 5, DeleteTopicsRequest::default().with_topic_names(names(&["diff-no-such-topic"])).with_timeout_ms(10_000));
    d.kafka_knows_topics(&[TOPIC], false);
    d.step("metadata-after-delete", 12, metadata_req(&[TOPIC], false));

    d.finish();
}
