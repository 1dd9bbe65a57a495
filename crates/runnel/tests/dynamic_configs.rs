//! Dynamic broker configs and group configs against a real broker, as Kafka 4.3 answers
//! them: AlterConfigs and IncrementalAlterConfigs on BROKER resources (this broker's id,
//! and the cluster-wide default ""), DescribeConfigs with each source (dynamic broker,
//! dynamic default, static, default), read-only flags and synonyms; a dynamic topic
//! default that takes effect on a live topic at once, as does a dynamic
//! `producer.id.expiration.ms`; GROUP resources (KIP-848);
//! refusals with Kafka's codes and messages; validate_only; and all of it kept over a
//! restart (it is in the metadata log).

mod common;

use common::configs::*;
use common::kafka::*;
use common::Broker;
use rdkafka::admin::{AlterConfig, ConfigSource, ResourceSpecifier};
use rdkafka::error::{KafkaError, RDKafkaErrorCode as E};
use rdkafka::producer::FutureRecord;

const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;

#[test]
fn broker_configs_are_dynamic_per_broker_and_cluster_wide_and_survive_a_restart() {
    let mut b = Broker::start(&["-o", "log.retention.ms=7200000"]);
    let addr = b.addr.clone();
    create_topic(&b, "t", 1, &[]);

    // The cluster-wide default through rdkafka's AlterConfigs ("" is not a broker id
    // rdkafka can name, so the wire request), then this broker's own value over it.
    assert_eq!(alter(&addr, BROKER, "", &[("log.retention.ms", "3600000"), ("background.threads", "9")], false), (0, String::new()));
    let admin = admin(&b);
    let one = AlterConfig::new(ResourceSpecifier::Broker(1)).set("sasl.kerberos.min.time.before.relogin", "58000").set("log.retention.ms", "1800000");
    let res = block_on(admin.alter_configs([&one], &admin_opts())).expect("alter_configs");
    assert!(res[0].is_ok());
    let described = |b: &Broker| block_on(common::kafka::admin(b).describe_configs([&ResourceSpecifier::Broker(1)], &admin_opts())).unwrap().remove(0).unwrap();
    let d = described(&b);
    let relogin = d.get("sasl.kerberos.min.time.before.relogin").expect("described");
    assert_eq!((relogin.value.as_deref(), &relogin.source, relogin.is_read_only), (Some("58000"), &ConfigSource::DynamicBroker, false));
    let retention = d.get("log.retention.ms").unwrap();
    assert_eq!((retention.value.as_deref(), &retention.source), (Some("1800000"), &ConfigSource::DynamicBroker));
    let threads = d.get("background.threads").unwrap();
    assert_eq!((threads.value.as_deref(), &threads.source), (Some("9"), &ConfigSource::DynamicDefaultBroker));
    let auto = d.get("auto.create.topics.enable").unwrap();
    assert_eq!((auto.value.as_deref(), &auto.source, auto.is_read_only), (Some("true"), &ConfigSource::Default, true));
    assert!(!d.get("log.segment.bytes").unwrap().is_read_only, "topic defaults are dynamic");

    // Synonyms, most specific first, as Kafka lists them.
    let r = describe(&addr, BROKER, "1");
    let (_, _, _, synonyms) = entry(&r, "log.retention.ms").unwrap();
    let levels: Vec<(&str, i8)> = synonyms.iter().map(|(_, v, s)| (v.as_str(), *s)).collect();
    assert_eq!(levels, [("1800000", DYNAMIC_BROKER), ("3600000", DYNAMIC_DEFAULT_BROKER), ("7200000", STATIC_BROKER), ("604800000", DEFAULT)]);
    // The default resource lists only what is set at that level.
    let r = describe(&addr, BROKER, "");
    let mut names: Vec<&str> = r.configs.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["background.threads", "log.retention.ms"]);
    assert_eq!(entry(&r, "log.retention.ms").unwrap().1, DYNAMIC_DEFAULT_BROKER);

    // A topic without an override resolves its default through the dynamic levels.
    let t = describe(&addr, TOPIC, "t");
    let (value, source, _, _) = entry(&t, "retention.ms").unwrap();
    assert_eq!((value.as_str(), source), ("1800000", DYNAMIC_BROKER));

    // IncrementalAlterConfigs: APPEND and SUBTRACT on a list, DELETE back to the level below.
    assert_eq!(incremental(&addr, BROKER, "1", &[("log.cleanup.policy", APPEND, Some("compact"))], false).0, 0);
    assert_eq!(entry(&describe(&addr, BROKER, "1"), "log.cleanup.policy").unwrap().0, "delete,compact");
    // A broker id is read as a number, as Kafka reads it: "01" is broker 1.
    assert_eq!(entry(&describe(&addr, BROKER, "01"), "log.cleanup.policy").unwrap().0, "delete,compact");
    assert_eq!(incremental(&addr, BROKER, "01", &[("log.cleanup.policy", SUBTRACT, Some("compact")), ("log.retention.ms", DELETE, None)], false).0, 0);
    let r = describe(&addr, BROKER, "1");
    assert_eq!(entry(&r, "log.cleanup.policy").unwrap().0, "delete");
    assert_eq!(entry(&r, "log.retention.ms").unwrap().0, "3600000", "DELETE falls back to the cluster default");

    // Kept in the metadata log: the same after kill -9 and a restart.
    drop(admin);
    b.kill9();
    b.restart();
    let addr = b.addr.clone();
    let d = described(&b);
    assert_eq!(d.get("sasl.kerberos.min.time.before.relogin").unwrap().value.as_deref(), Some("58000"));
    assert_eq!(d.get("background.threads").unwrap().source, ConfigSource::DynamicDefaultBroker);
    let (value, source, _, _) = entry(&describe(&addr, TOPIC, "t"), "retention.ms").unwrap();
    assert_eq!((value.as_str(), source), ("3600000", DYNAMIC_DEFAULT_BROKER));
}

#[test]
fn a_dynamic_topic_default_takes_effect_on_a_live_topic() {
    let b = Broker::start(&[]);
    create_topic(&b, "live", 1, &[]);
    create_topic(&b, "own", 1, &[("max.message.bytes", "100000")]);
    let p = producer(&b, &[]);
    let big = noise(6000, 1);
    assert_eq!(block_on(send_one(&p, FutureRecord::to("live").payload(&big))), (0, 0));
    assert_eq!(incremental(&b.addr, BROKER, "", &[("message.max.bytes", SET, Some("5000"))], false).0, 0);
    match block_on(p.send(FutureRecord::<[u8], [u8]>::to("live").payload(&big), TIMEOUT)) {
        Err((KafkaError::MessageProduction(E::MessageSizeTooLarge), _)) => {}
        other => panic!("expected MESSAGE_TOO_LARGE under the dynamic default, got {:?}", other.map(|d| d.offset).map_err(|e| e.0)),
    }
    // A topic override still wins over the dynamic default.
    assert_eq!(block_on(send_one(&p, FutureRecord::to("own").payload(&big))), (0, 0));
    // Deleting the dynamic default restores the built-in one.
    assert_eq!(incremental(&b.addr, BROKER, "", &[("message.max.bytes", DELETE, None)], false).0, 0);
    assert_eq!(block_on(send_one(&p, FutureRecord::to("live").payload(&big))), (0, 1));
}

#[test]
fn bad_broker_configs_are_refused_as_kafka_refuses_them() {
    let b = Broker::start(&[]);
    let addr = b.addr.as_str();
    let cases: &[(&str, &str, &str)] = &[
        ("log.retention.ms", "abc", "Invalid value abc for configuration log.retention.ms"),
        ("background.threads", "0", "Invalid value 0 for configuration background.threads: Value must be at least 1"),
        ("message.max.bytes", "-5", "Invalid value -5 for configuration message.max.bytes"),
        ("num.partitions", "3", "Cannot update these configs dynamically: [num.partitions]"),
        ("group.min.session.timeout.ms", "100", "Cannot update these configs dynamically"),
        ("log.dirs", "/x", "Cannot update these configs dynamically: [log.dirs]"),
        ("foo.bar", "1", "Unknown broker config name: foo.bar"),
    ];
    for (name, value, message) in cases {
        for resource in ["1", ""] {
            let (code, msg) = incremental(addr, BROKER, resource, &[(name, SET, Some(value))], false);
            assert_eq!(code, INVALID_REQUEST, "{name}={value} on broker '{resource}': {msg}");
            assert!(msg.starts_with(message), "{name}={value}: {msg}");
            assert_eq!(alter(addr, BROKER, resource, &[(name, value)], false).0, INVALID_REQUEST, "AlterConfigs {name}={value}");
        }
    }
    let (code, msg) = incremental(addr, BROKER, "7", &[("background.threads", SET, Some("9"))], false);
    assert_eq!(code, INVALID_REQUEST, "another broker's id: {msg}");
    // validate_only answers as a real alter would and stores nothing.
    assert_eq!(incremental(addr, BROKER, "1", &[("background.threads", SET, Some("0"))], true).0, INVALID_REQUEST);
    assert_eq!(incremental(addr, BROKER, "1", &[("background.threads", SET, Some("4"))], true).0, 0);
    assert_eq!(alter(addr, BROKER, "", &[("log.retention.ms", "1000")], true).0, 0);
    let r = describe(addr, BROKER, "1");
    assert_eq!(entry(&r, "background.threads").unwrap(), ("10".into(), DEFAULT, false, vec![("background.threads".into(), "10".into(), DEFAULT)]));
    assert_eq!(entry(&r, "log.retention.ms").unwrap().1, DEFAULT);
    // Nothing refused was stored either.
    assert!(describe(addr, BROKER, "").configs.is_empty());
}

#[test]
fn group_configs_are_stored_checked_and_described() {
    let mut b = Broker::start(&[]);
    let addr = b.addr.clone();
    // A group that does not exist yet has the defaults.
    let r = describe(&addr, GROUP, "g1");
    assert_eq!(r.error_code, 0);
    let (value, source, read_only, synonyms) = entry(&r, "consumer.session.timeout.ms").unwrap();
    assert_eq!((value.as_str(), source, read_only), ("45000", DEFAULT, false));
    assert_eq!(synonyms, [("group.consumer.session.timeout.ms".into(), "45000".into(), DEFAULT)]);
    assert_eq!(entry(&r, "consumer.heartbeat.interval.ms").unwrap().0, "5000");

    assert_eq!(incremental(&addr, GROUP, "g1", &[("consumer.session.timeout.ms", SET, Some("50000"))], false), (0, String::new()));
    assert_eq!(alter(&addr, GROUP, "g2", &[("consumer.heartbeat.interval.ms", "6000")], false).0, 0);
    let refusals: &[(&str, &str, &str)] = &[
        ("consumer.session.timeout.ms", "1000", "consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms"),
        ("consumer.session.timeout.ms", "70000", "consumer.session.timeout.ms must be less than or equal to group.consumer.max.session.timeout.ms"),
        ("consumer.session.timeout.ms", "abc", "Invalid value abc for configuration consumer.session.timeout.ms: Not a number of type INT"),
        ("consumer.heartbeat.interval.ms", "20000", "consumer.heartbeat.interval.ms must be less than or equal to group.consumer.max.heartbeat.interval.ms"),
        ("foo.bar", "1", "Unknown group config name: foo.bar"),
    ];
    for (name, value, message) in refusals {
        assert_eq!(incremental(&addr, GROUP, "g1", &[(name, SET, Some(value))], false), (INVALID_CONFIG, message.to_string()));
    }
    assert_eq!(incremental(&addr, GROUP, "g1", &[("consumer.session.timeout.ms", SET, Some("55000"))], true).0, 0, "validate_only");
    // A key named twice in one resource is refused, as Kafka refuses it, and changes nothing.
    let twice = [("consumer.session.timeout.ms", SET, Some("51000")), ("consumer.session.timeout.ms", DELETE, None)];
    assert_eq!(incremental(&addr, GROUP, "g1", &twice, false), (INVALID_REQUEST, "Error due to duplicate config keys".into()));
    // Group configs stay bounded: a group id longer than 255 bytes gets none.
    let long = "g".repeat(256);
    assert_eq!(incremental(&addr, GROUP, &long, &[("consumer.session.timeout.ms", SET, Some("50000"))], false).0, INVALID_REQUEST);
    assert_eq!(incremental(&addr, GROUP, &long[..255], &[("consumer.session.timeout.ms", SET, Some("50000"))], false).0, 0);
    // A group resource names a group (Kafka refuses an empty name).
    assert_eq!(describe(&addr, GROUP, "").error_code, INVALID_REQUEST);

    b.kill9();
    b.restart();
    let addr = b.addr.clone();
    let r = describe(&addr, GROUP, "g1");
    let (value, source, _, synonyms) = entry(&r, "consumer.session.timeout.ms").unwrap();
    assert_eq!((value.as_str(), source), ("50000", GROUP_CONFIG), "kept over a restart, validate_only stored nothing");
    assert_eq!(synonyms[0], ("consumer.session.timeout.ms".into(), "50000".into(), GROUP_CONFIG));
    assert_eq!(entry(&describe(&addr, GROUP, "g2"), "consumer.heartbeat.interval.ms").unwrap().0, "6000");
    assert_eq!(incremental(&addr, GROUP, "g1", &[("consumer.session.timeout.ms", DELETE, None)], false).0, 0);
    assert_eq!(entry(&describe(&addr, GROUP, "g1"), "consumer.session.timeout.ms").unwrap().1, DEFAULT);
}

/// Alters of the cluster-wide default sent at once, each setting its own key, all take
/// effect: each recomputation of the settings in effect reads the latest stored values, so
/// a slower one never puts an older set back.
#[test]
fn alters_sent_at_once_all_take_effect() {
    let b = Broker::start(&[]);
    let addr = b.addr.clone();
    let keys = ["log.retention.bytes", "log.roll.ms", "log.flush.interval.messages", "log.retention.ms", "background.threads", "log.cleaner.delete.retention.ms"];
    std::thread::scope(|s| {
        for (i, key) in keys.iter().enumerate() {
            let addr = &addr;
            s.spawn(move || {
                for round in 0..5 {
                    let value = (3_600_000 + 1000 * i + round).to_string();
                    assert_eq!(incremental(addr, BROKER, "", &[(key, SET, Some(&value))], false), (0, String::new()), "{key}");
                }
            });
        }
    });
    let r = describe(&addr, BROKER, "1");
    for (i, key) in keys.iter().enumerate() {
        let e = entry(&r, key).unwrap_or_else(|| panic!("{key} described"));
        assert_eq!((e.0.clone(), e.1), ((3_600_004 + 1000 * i).to_string(), DYNAMIC_DEFAULT_BROKER), "{key} in effect");
    }
}

/// `producer.id.expiration.ms` is read afresh by each expiry pass: a dynamic value makes an
/// idle idempotent producer forgotten without a restart.
#[test]
fn a_dynamic_producer_id_expiration_applies_at_the_next_pass() {
    use kafka_protocol::messages::{describe_producers_request::TopicRequest, DescribeProducersRequest, TopicName};
    let b = Broker::start(&["-o", "producer.id.expiration.check.interval.ms=100"]);
    create_topic(&b, "idem", 1, &[]);
    let p = producer(&b, &[("enable.idempotence", "true")]);
    assert_eq!(block_on(send_one(&p, FutureRecord::to("idem").payload(&b"x"[..]))), (0, 0));
    let producers = || {
        let t = TopicRequest::default().with_name(TopicName(common::wire::sb("idem"))).with_partition_indexes(vec![0]);
        request(&b, &DescribeProducersRequest::default().with_topics(vec![t]), 0).topics[0].partitions[0].active_producers.len()
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(producers(), 1, "kept under the static default (one day)");
    assert_eq!(incremental(&b.addr, BROKER, "1", &[("producer.id.expiration.ms", SET, Some("0"))], false).0, INVALID_REQUEST);
    assert_eq!(incremental(&b.addr, BROKER, "1", &[("producer.id.expiration.ms", SET, Some("200"))], false).0, 0);
    let r = describe(&b.addr, BROKER, "1");
    let (value, source, read_only, _) = entry(&r, "producer.id.expiration.ms").unwrap();
    assert_eq!((value.as_str(), source, read_only), ("200", DYNAMIC_BROKER, false));
    let deadline = std::time::Instant::now() + TIMEOUT;
    while producers() > 0 {
        assert!(std::time::Instant::now() < deadline, "the idle producer was not forgotten under the dynamic value");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
