//! Admin through librdkafka's AdminClient against a real broker: CreateTopics (and every
//! refusal with its Kafka error), validate_only, DescribeConfigs, AlterConfigs,
//! CreatePartitions, DeleteTopics (and its files), Metadata auto-creation on and off, and
//! UNKNOWN_TOPIC_OR_PARTITION wherever a missing topic or partition is named.
//!
//! rdkafka 0.39 does not expose IncrementalAlterConfigs and drops the per-resource errors
//! of DescribeConfigs and AlterConfigs; those are checked with raw requests.

mod common;

use common::kafka::*;
use common::Broker;
use rdkafka::admin::{AlterConfig, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode as E};
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureRecord, Producer};

/// Names of the user topics the broker lists (a Metadata request for all topics, which
/// never auto-creates); internal `__*` topics are left out.
fn listed_topics(b: &Broker) -> Vec<String> {
    let md = admin(b).inner().fetch_metadata(None, TIMEOUT).expect("metadata");
    let mut v: Vec<String> = md.topics().iter().map(|t| t.name().to_string()).filter(|n| !n.starts_with("__")).collect();
    v.sort();
    v
}

fn partition_count(b: &Broker, topic: &str) -> usize {
    let md = consumer(b, &[]).fetch_metadata(Some(topic), TIMEOUT).expect("metadata");
    let t = &md.topics()[0];
    assert_eq!(t.error(), None, "metadata error for {topic}");
    t.partitions().len()
}

fn create(b: &Broker, t: &NewTopic, validate_only: bool) -> Result<String, (String, E)> {
    let admin = admin(b);
    let mut res = block_on(admin.create_topics([t], &admin_opts().validate_only(validate_only))).expect("create_topics");
    assert_eq!(res.len(), 1);
    res.remove(0)
}

#[test]
fn create_topics_and_validate_only() {
    let b = Broker::start(&[]);
    let t = NewTopic::new("created", 3, TopicReplication::Fixed(1)).set("segment.bytes", "100000");
    assert_eq!(create(&b, &t, false), Ok("created".into()));
    assert_eq!(partition_count(&b, "created"), 3);
    for p in 0..3 {
        assert!(partition_dir(&b, "created", p).is_dir(), "partition dir {p}");
    }
    assert!(!partition_dir(&b, "created", 3).exists());
    // Broker default partition count (-1).
    assert_eq!(create(&b, &NewTopic::new("defaulted", -1, TopicReplication::Fixed(-1)), false), Ok("defaulted".into()));
    assert_eq!(partition_count(&b, "defaulted"), 1);

    // validate_only: the answer of a real create, but nothing is created.
    let v = NewTopic::new("only-validated", 2, TopicReplication::Fixed(1));
    assert_eq!(create(&b, &v, true), Ok("only-validated".into()));
    assert!(!listed_topics(&b).contains(&"only-validated".to_string()));
    assert!(!partition_dir(&b, "only-validated", 0).exists());
    // …and validate_only still refuses what a real create would.
    assert_eq!(create(&b, &t, true), Err(("created".into(), E::TopicAlreadyExists)));
    let bad = NewTopic::new("bad-validate", 1, TopicReplication::Fixed(1)).set("segment.bytes", "x");
    assert_eq!(create(&b, &bad, true), Err(("bad-validate".into(), E::InvalidConfig)));
    // The name is still free.
    assert_eq!(create(&b, &v, false), Ok("only-validated".into()));
    assert_eq!(listed_topics(&b), vec!["created", "defaulted", "only-validated"]);
}

#[test]
fn create_topics_refusals_carry_kafka_errors() {
    let b = Broker::start(&[]);
    create_topic(&b, "exists", 1, &[]);
    let long = "x".repeat(250);
    let ok_249 = "y".repeat(249);
    let r1 = || TopicReplication::Fixed(1);
    let cases: Vec<(NewTopic, E)> = vec![
        (NewTopic::new("exists", 1, r1()), E::TopicAlreadyExists),
        (NewTopic::new("bad name!", 1, r1()), E::InvalidTopic),
        (NewTopic::new("ünicode", 1, r1()), E::InvalidTopic),
        (NewTopic::new(&long, 1, r1()), E::InvalidTopic),
        (NewTopic::new(".", 1, r1()), E::InvalidTopic),
        (NewTopic::new("..", 1, r1()), E::InvalidTopic),
        (NewTopic::new("zero-partitions", 0, r1()), E::InvalidPartitions),
        (NewTopic::new("rf3", 1, TopicReplication::Fixed(3)), E::InvalidReplicationFactor),
        (NewTopic::new("unknown-config", 1, r1()).set("no.such.config", "1"), E::InvalidConfig),
        (NewTopic::new("bad-number", 1, r1()).set("segment.bytes", "abc"), E::InvalidConfig),
        (NewTopic::new("too-small", 1, r1()).set("segment.bytes", "10"), E::InvalidConfig),
        (NewTopic::new("bad-enum", 1, r1()).set("message.timestamp.type", "Later"), E::InvalidConfig),
    ];
    for (t, want) in &cases {
        assert_eq!(create(&b, t, false), Err((t.name.to_string(), *want)), "creating {:?}", t.name);
    }
    // Nothing was created by the refusals; the longest legal name works.
    assert_eq!(listed_topics(&b), vec!["exists"]);
    assert_eq!(create(&b, &NewTopic::new(&ok_249, 1, r1()), false), Ok(ok_249.clone()));
    let mut dirs: Vec<String> = std::fs::read_dir(&b.data_dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("__"))
        .collect();
    dirs.sort();
    assert_eq!(dirs, vec!["exists-0".to_string(), format!("{ok_249}-0")], "only the created topics have data dirs");
}

#[test]
fn describe_and_alter_configs() {
    let b = Broker::start(&[]);
    create_topic(&b, "cfg", 1, &[("segment.bytes", "2048"), ("message.timestamp.type", "LogAppendTime")]);
    let admin = admin(&b);
    let describe = |topic: &str| {
        let mut res = block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &admin_opts())).expect("describe_configs");
        res.remove(0).expect("describe result")
    };
    let d = describe("cfg");
    let seg = d.get("segment.bytes").expect("segment.bytes described");
    assert_eq!((seg.value.as_deref(), &seg.source, seg.is_default), (Some("2048"), &ConfigSource::DynamicTopic, false));
    let ts = d.get("message.timestamp.type").unwrap();
    assert_eq!((ts.value.as_deref(), &ts.source), (Some("LogAppendTime"), &ConfigSource::DynamicTopic));
    let max = d.get("max.message.bytes").expect("max.message.bytes described");
    assert_eq!((max.value.as_deref(), &max.source, max.is_default), (Some("1048588"), &ConfigSource::Default, true));
    assert_eq!(d.get("cleanup.policy").and_then(|e| e.value.as_deref()), Some("delete"));

    // AlterConfigs replaces the whole override set.
    let alter = |a: &AlterConfig, validate_only: bool| {
        let mut res = block_on(admin.alter_configs([a], &admin_opts().validate_only(validate_only))).expect("alter_configs");
        res.remove(0).map(|_| ()).map_err(|(_, e)| e)
    };
    assert_eq!(alter(&AlterConfig::new(ResourceSpecifier::Topic("cfg")).set("max.message.bytes", "5000"), false), Ok(()));
    let d = describe("cfg");
    let max = d.get("max.message.bytes").unwrap();
    assert_eq!((max.value.as_deref(), &max.source), (Some("5000"), &ConfigSource::DynamicTopic));
    let seg = d.get("segment.bytes").unwrap();
    assert_eq!((seg.value.as_deref(), &seg.source), (Some("1073741824"), &ConfigSource::Default), "previous override dropped");
    assert_eq!(d.get("message.timestamp.type").unwrap().value.as_deref(), Some("CreateTime"));

    // The new limit is enforced at once.
    let p = producer(&b, &[]);
    let big = noise(6000, 3);
    match block_on(p.send(FutureRecord::<[u8], [u8]>::to("cfg").payload(&big), TIMEOUT)) {
        Err((KafkaError::MessageProduction(E::MessageSizeTooLarge), _)) => {}
        other => panic!("expected MESSAGE_TOO_LARGE, got {:?}", other.map(|d| d.offset).map_err(|e| e.0)),
    }
    assert_eq!(block_on(send_one(&p, FutureRecord::to("cfg").payload(&big[..1000]))), (0, 0));

    // Refusals, and validate_only changes nothing. rdkafka 0.39 drops the per-resource
    // error of AlterConfigs (every result is Ok), so the codes are checked on the wire.
    assert_eq!(raw_alter(&b, "cfg", &[("max.message.bytes", "lots")], false), E::InvalidConfig as i16);
    assert_eq!(raw_alter(&b, "cfg", &[("max.message.bytes", "-1")], false), E::InvalidConfig as i16);
    assert_eq!(raw_alter(&b, "cfg", &[("no.such.config", "1")], false), E::InvalidConfig as i16);
    assert_eq!(raw_alter(&b, "missing", &[("segment.bytes", "4096")], false), E::UnknownTopicOrPartition as i16);
    assert_eq!(raw_alter(&b, "cfg", &[("segment.bytes", "4096")], true), 0);
    let dry = AlterConfig::new(ResourceSpecifier::Topic("cfg")).set("segment.bytes", "8192");
    assert_eq!(alter(&dry, true), Ok(()));
    let d = describe("cfg");
    assert_eq!(d.get("max.message.bytes").unwrap().value.as_deref(), Some("5000"), "unchanged by refusals and validate_only");
    assert_eq!(d.get("segment.bytes").unwrap().value.as_deref(), Some("1073741824"));

    // Broker resource: described, read-only.
    let mut res = block_on(admin.describe_configs([&ResourceSpecifier::Broker(1)], &admin_opts())).unwrap();
    let broker = res.remove(0).unwrap();
    let auto = broker.get("auto.create.topics.enable").expect("broker setting described");
    assert_eq!((auto.value.as_deref(), auto.is_read_only), (Some("true"), true));

    // A new segment.bytes applies to the live log at once…
    let tiny = AlterConfig::new(ResourceSpecifier::Topic("cfg")).set("segment.bytes", "1024").set("max.message.bytes", "5000");
    assert_eq!(alter(&tiny, false), Ok(()));
    block_on(async {
        for _ in 0..10 {
            send_one(&p, FutureRecord::to("cfg").payload(&big[..400])).await;
        }
    });
    let segments = log_files(&partition_dir(&b, "cfg", 0)).len();
    assert!(segments >= 4, "segment.bytes=1024 rolls the active log: {segments} segments");
    drop((p, admin));
    // …and overrides survive a restart (they are in the metadata log).
    let mut b = b;
    b.kill9();
    b.restart();
    let admin = common::kafka::admin(&b);
    let d = block_on(admin.describe_configs([&ResourceSpecifier::Topic("cfg")], &admin_opts())).unwrap().remove(0).unwrap();
    assert_eq!(d.get("segment.bytes").unwrap().value.as_deref(), Some("1024"));
    assert_eq!(d.get("max.message.bytes").unwrap().value.as_deref(), Some("5000"));
    assert_eq!(d.get("max.message.bytes").unwrap().source, ConfigSource::DynamicTopic);
    let p = producer(&b, &[]);
    match block_on(p.send(FutureRecord::<[u8], [u8]>::to("cfg").payload(&big), TIMEOUT)) {
        Err((KafkaError::MessageProduction(E::MessageSizeTooLarge), _)) => {}
        other => panic!("limit lost on restart: {:?}", other.map(|d| d.offset).map_err(|e| e.0)),
    }
    assert_eq!(watermarks(&b, "cfg", 0), (0, 11));
}

/// AlterConfigs on the wire: the error code of the one resource.
fn raw_alter(b: &Broker, topic: &str, configs: &[(&str, &str)], validate_only: bool) -> i16 {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::AlterConfigsRequest;
    use kafka_protocol::protocol::StrBytes;
    let req = AlterConfigsRequest::default().with_validate_only(validate_only).with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_string(topic.into()))
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| AlterableConfig::default().with_name(StrBytes::from_string(k.to_string())).with_value(Some(StrBytes::from_string(v.to_string()))))
                .collect(),
        )]);
    let resp = request(b, &req, 1);
    assert_eq!(resp.responses.len(), 1);
    resp.responses[0].error_code
}

/// rdkafka 0.39 has no IncrementalAlterConfigs; librdkafka's users (and the Java admin
/// client) do, so the wire request is checked: SET and DELETE touch only their keys.
#[test]
fn incremental_alter_configs_on_the_wire() {
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::IncrementalAlterConfigsRequest;
    use kafka_protocol::protocol::StrBytes;
    let b = Broker::start(&[]);
    create_topic(&b, "inc", 1, &[("segment.bytes", "2048"), ("message.timestamp.type", "LogAppendTime")]);
    let inc = |ops: &[(&str, i8, Option<&str>)]| {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("inc"))
            .with_configs(
                ops.iter()
                    .map(|(k, op, v)| {
                        AlterableConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_config_operation(*op)
                            .with_value(v.map(|v| StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )]);
        request(&b, &req, 1).responses[0].error_code
    };
    assert_eq!(inc(&[("max.message.bytes", 0, Some("7000")), ("message.timestamp.type", 1, None)]), 0);
    let admin = admin(&b);
    let d = block_on(admin.describe_configs([&ResourceSpecifier::Topic("inc")], &admin_opts())).unwrap().remove(0).unwrap();
    let value = |k: &str| d.get(k).and_then(|e| e.value.clone());
    assert_eq!(value("max.message.bytes").as_deref(), Some("7000"), "SET");
    assert_eq!(value("segment.bytes").as_deref(), Some("2048"), "untouched override kept");
    assert_eq!(value("message.timestamp.type").as_deref(), Some("CreateTime"), "DELETE reverts to the default");
    assert_eq!(inc(&[("segment.bytes", 0, Some("nope"))]), E::InvalidConfig as i16);
    assert_eq!(inc(&[("segment.bytes", 2, Some("1"))]), E::InvalidConfig as i16, "APPEND to a non-list config");
}

#[test]
fn describe_configs_of_a_missing_topic_is_unknown_topic() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::DescribeConfigsRequest;
    use kafka_protocol::protocol::StrBytes;
    let b = Broker::start(&[]);
    // librdkafka (through rdkafka 0.39) drops per-resource errors: the result is just empty.
    let admin = admin(&b);
    let mut res = block_on(admin.describe_configs([&ResourceSpecifier::Topic("missing")], &admin_opts())).unwrap();
    assert!(res.remove(0).map(|r| r.entries.is_empty()).unwrap_or(true));
    // The wire answer carries the error.
    let req = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_static_str("missing"))]);
    let resp = request(&b, &req, 4);
    assert_eq!(resp.results[0].error_code, E::UnknownTopicOrPartition as i16);
    assert!(resp.results[0].configs.is_empty());
}

#[test]
fn create_partitions_grows_a_topic_and_refuses_shrinking() {
    let b = Broker::start(&[]);
    create_topic(&b, "grow", 1, &[]);
    let p = producer(&b, &[]);
    assert_eq!(block_on(send_one(&p, FutureRecord::to("grow").partition(0).payload(&b"before"[..]))), (0, 0));
    let admin = admin(&b);
    let grow = |t: &str, n: usize, validate_only: bool| {
        let mut res = block_on(admin.create_partitions([&NewPartitions::new(t, n)], &admin_opts().validate_only(validate_only))).unwrap();
        res.remove(0).map(|_| ()).map_err(|(_, e)| e)
    };
    assert_eq!(grow("grow", 4, true), Ok(()));
    assert_eq!(partition_count(&b, "grow"), 1, "validate_only grows nothing");
    assert_eq!(grow("grow", 3, false), Ok(()));
    assert_eq!(partition_count(&b, "grow"), 3);
    assert!(partition_dir(&b, "grow", 2).is_dir());
    // The new partitions are writable (a fresh producer sees the new metadata).
    let p2 = producer(&b, &[]);
    assert_eq!(block_on(send_one(&p2, FutureRecord::to("grow").partition(2).payload(&b"new"[..]))), (2, 0));
    assert_eq!(block_on(send_one(&p2, FutureRecord::to("grow").partition(1).payload(&b"new1"[..]))), (1, 0));
    assert_eq!(consume_all(&b, "grow", 2).iter().map(|r| r.value.clone().unwrap()).collect::<Vec<_>>(), vec![b"new".to_vec()]);
    assert_eq!(consume_all(&b, "grow", 0)[0].value.as_deref(), Some(&b"before"[..]), "old partition untouched");

    assert_eq!(grow("grow", 3, false), Err(E::InvalidPartitions), "same count");
    assert_eq!(grow("grow", 2, false), Err(E::InvalidPartitions), "fewer");
    assert_eq!(grow("missing", 2, false), Err(E::UnknownTopicOrPartition));
    assert_eq!(partition_count(&b, "grow"), 3);

    // The new partitions survive a crash.
    drop((p, p2, admin));
    let mut b = b;
    b.kill9();
    b.restart();
    assert_eq!(partition_count(&b, "grow"), 3);
    assert_eq!(consume_all(&b, "grow", 2).len(), 1);
    assert_eq!(consume_all(&b, "grow", 1).len(), 1);
}

#[test]
fn delete_topics_removes_data_and_unknown_topics_are_refused() {
    let mut b = Broker::start(&[]);
    create_topic(&b, "doomed", 2, &[]);
    create_topic(&b, "kept", 1, &[]);
    let p = producer(&b, &[]);
    block_on(send_all(&p, (0..20).map(|i| FutureRecord::to("doomed").partition(i % 2).payload(&b"data"[..]))));
    block_on(send_one(&p, FutureRecord::to("kept").payload(&b"stay"[..])));
    assert!(partition_dir(&b, "doomed", 0).is_dir() && partition_dir(&b, "doomed", 1).is_dir());
    let admin = admin(&b);
    let delete = |t: &str| block_on(admin.delete_topics(&[t], &admin_opts())).unwrap().remove(0);
    assert_eq!(delete("doomed"), Ok("doomed".into()));
    assert!(!partition_dir(&b, "doomed", 0).exists() && !partition_dir(&b, "doomed", 1).exists(), "partition dirs removed");
    let leftovers: Vec<String> = std::fs::read_dir(&b.data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("doomed"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(listed_topics(&b), vec!["kept"]);
    assert_eq!(delete("doomed"), Err(("doomed".into(), E::UnknownTopicOrPartition)), "already deleted");
    assert_eq!(delete("never-was"), Err(("never-was".into(), E::UnknownTopicOrPartition)));

    // Still gone after a restart; a new topic of the same name starts empty.
    assert!(b.stop());
    b.restart();
    assert_eq!(listed_topics(&b), vec!["kept"]);
    assert_eq!(consume_all(&b, "kept", 0).len(), 1);
    create_topic(&b, "doomed", 1, &[]);
    assert_eq!(watermarks(&b, "doomed", 0), (0, 0));
}

#[test]
fn produce_to_a_missing_partition_or_topic_is_unknown_topic_or_partition() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let b = Broker::start(&[]);
    create_topic(&b, "one", 1, &[]);
    // librdkafka knows the partition count and refuses locally.
    let p = producer(&b, &[]);
    match block_on(p.send(FutureRecord::<[u8], [u8]>::to("one").partition(5).payload(&b"x"[..]), TIMEOUT)) {
        Err((KafkaError::MessageProduction(E::UnknownPartition), _)) => {}
        other => panic!("expected unknown partition, got {:?}", other.map(|d| d.offset).map_err(|e| e.0)),
    }
    // The broker's own answer, to a raw request (a valid batch, so only the target is wrong).
    for (topic, partition) in [("one", 5), ("one", -1), ("no-such-topic", 0)] {
        let mut batch = bytes::BytesMut::new();
        let rec = kafka_protocol::records::Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: kafka_protocol::records::TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: now_ms(),
            key: None,
            value: Some(bytes::Bytes::from_static(b"x")),
            headers: Default::default(),
        };
        kafka_protocol::records::RecordBatchEncoder::encode(
            &mut batch,
            [&rec],
            &kafka_protocol::records::RecordEncodeOptions { version: 2, compression: kafka_protocol::records::Compression::None },
        )
        .unwrap();
        let req = ProduceRequest::default().with_acks(1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(batch.freeze()))])]);
        let resp = request(&b, &req, 7);
        let pr = &resp.responses[0].partition_responses[0];
        assert_eq!((pr.index, pr.error_code, pr.base_offset), (partition, E::UnknownTopicOrPartition as i16, -1), "{topic}/{partition}");
    }
    assert_eq!(watermarks(&b, "one", 0), (0, 0));
    assert_eq!(listed_topics(&b), vec!["one"], "produce never auto-creates");
}

#[test]
fn metadata_auto_creates_topics_by_default() {
    let b = Broker::start(&["-o", "num.partitions=2"]);
    // A producer asks for the topic with allow_auto_topic_creation: it is created with
    // num.partitions partitions.
    let p = producer(&b, &[]);
    let d = block_on(send_one(&p, FutureRecord::to("auto-produced").key(&b"k"[..]).payload(&b"hello"[..])));
    assert_eq!(d.1, 0);
    assert_eq!(partition_count(&b, "auto-produced"), 2);
    assert!(partition_dir(&b, "auto-produced", 0).is_dir() && partition_dir(&b, "auto-produced", 1).is_dir());
    assert_eq!(consume_all(&b, "auto-produced", d.0)[0].value.as_deref(), Some(&b"hello"[..]));
    // A consumer's metadata request does not allow auto-creation (librdkafka's default
    // allow.auto.create.topics=false for consumers): the topic stays unknown.
    let md = consumer(&b, &[]).fetch_metadata(Some("asked-by-consumer"), TIMEOUT).unwrap();
    assert_eq!(md.topics()[0].error().map(E::from), Some(E::UnknownTopicOrPartition));
    assert_eq!(listed_topics(&b), vec!["auto-produced"]);
}

#[test]
fn auto_create_disabled_refuses_unknown_topics() {
    let b = Broker::start(&["-o", "auto.create.topics.enable=false"]);
    let p = producer(&b, &[("message.timeout.ms", "3000"), ("topic.metadata.propagation.max.ms", "500")]);
    let md = p.client().fetch_metadata(Some("nope"), TIMEOUT).unwrap();
    assert_eq!(md.topics()[0].error().map(E::from), Some(E::UnknownTopicOrPartition), "metadata reports the topic unknown");
    match block_on(p.send(FutureRecord::<[u8], [u8]>::to("nope").payload(&b"x"[..]), TIMEOUT)) {
        Err((KafkaError::MessageProduction(e), _)) => {
            // librdkafka fails the record with the broker's metadata error after
            // topic.metadata.propagation.max.ms.
            assert_eq!(e, E::UnknownTopicOrPartition)
        }
        other => panic!("produce to a missing topic succeeded: {:?}", other.map(|d| d.offset).map_err(|e| e.0)),
    }
    assert!(listed_topics(&b).is_empty());
    assert!(!partition_dir(&b, "nope", 0).exists());
    // Explicit creation still works.
    create_topic(&b, "explicit", 1, &[]);
    assert_eq!(block_on(send_one(&p, FutureRecord::to("explicit").payload(&b"x"[..]))), (0, 0));
}

#[test]
fn metadata_by_topic_id_ignores_an_empty_name() {
    use kafka_protocol::messages::{metadata_request::MetadataRequestTopic, MetadataRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let b = Broker::start(&[]);
    create_topic(&b, "by-id", 2, &[]);
    let all = request(&b, &MetadataRequest::default().with_topics(None), 12);
    let id = all.topics.iter().find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("by-id")).unwrap().topic_id;
    // The Java AdminClient's describeTopics(TopicCollection.ofTopicIds(…)) sends the id with
    // the name "" (its default), not null: the id decides.
    let topic = MetadataRequestTopic::default().with_topic_id(id).with_name(Some(TopicName(StrBytes::from_static_str(""))));
    let resp = request(&b, &MetadataRequest::default().with_topics(Some(vec![topic])).with_allow_auto_topic_creation(true), 12);
    assert_eq!(resp.topics.len(), 1);
    let t = &resp.topics[0];
    assert_eq!((t.error_code, t.topic_id, t.name.as_ref().map(|n| n.0.to_string())), (0, id, Some("by-id".to_string())));
    assert_eq!(t.partitions.len(), 2);
    assert_eq!(listed_topics(&b), vec!["by-id"], "nothing auto-created under the empty name");
}
