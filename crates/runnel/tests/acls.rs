//! Authorization with Kafka's model (StandardAuthorizer): each API refuses a principal
//! without the ACL it needs with Kafka's error and serves it with the ACL; prefixed ACLs;
//! a DENY beats an ALLOW; a super user passes everything; Metadata hides the topics the
//! principal may not describe; ACLs persist in the metadata log across a restart; the ACL
//! APIs answer SECURITY_DISABLED without an authorizer. ACLs are managed with
//! `runnel acl create|list|delete`.
//!
//! The principal is the one a PLAINTEXT connection has, `User:ANONYMOUS`: the test first
//! runs the broker with it as a super user (to create topics and grant it ALTER on the
//! cluster, so it may manage ACLs), then restarts the broker without `super.users`.

mod common;

use common::wire::*;
use common::Broker;
use kafka_protocol::messages::*;

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const SECURITY_DISABLED: i16 = 54;

const AUTHORIZER: &str = "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer";

/// Runs `runnel acl ARGS` against `b`; returns stdout, panicking with stderr on failure.
fn acl(b: &Broker, args: &[&str]) -> String {
    common::acl(&b.addr, args)
}

fn allow(b: &Broker, op: &str, resource: &[&str]) {
    let mut args = vec!["create", "--allow-principal", "User:ANONYMOUS", "--operation", op];
    args.extend_from_slice(resource);
    acl(b, &args);
}

fn metadata(s: &mut std::net::TcpStream, topics: Option<&[&str]>) -> MetadataResponse {
    let topics = topics.map(|ts| ts.iter().map(|t| metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(sb(t))))).collect());
    call(s, ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(topics).with_allow_auto_topic_creation(false))
}

fn fetch_error(s: &mut std::net::TcpStream, topic: &str) -> i16 {
    let p = fetch_request::FetchPartition::default().with_partition(0).with_partition_max_bytes(1 << 20);
    let t = fetch_request::FetchTopic::default().with_topic(TopicName(sb(topic))).with_partitions(vec![p]);
    let req = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![t]).with_replica_id(BrokerId(-1));
    let r: FetchResponse = call(s, ApiKey::Fetch, 12, &req);
    r.responses[0].partitions[0].error_code
}

fn list_offsets_error(s: &mut std::net::TcpStream, topic: &str) -> i16 {
    let p = list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1);
    let t = list_offsets_request::ListOffsetsTopic::default().with_name(TopicName(sb(topic))).with_partitions(vec![p]);
    let r: ListOffsetsResponse = call(s, ApiKey::ListOffsets, 7, &ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![t]));
    r.topics[0].partitions[0].error_code
}

fn commit_error(s: &mut std::net::TcpStream, group: &str, topic: &str) -> i16 {
    let p = offset_commit_request::OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(0);
    let t = offset_commit_request::OffsetCommitRequestTopic::default().with_name(TopicName(sb(topic))).with_partitions(vec![p]);
    let req = OffsetCommitRequest::default().with_group_id(GroupId(sb(group))).with_generation_id_or_member_epoch(-1).with_topics(vec![t]);
    let r: OffsetCommitResponse = call(s, ApiKey::OffsetCommit, 8, &req);
    r.topics[0].partitions[0].error_code
}

fn find_group_coordinator_error(s: &mut std::net::TcpStream, group: &str) -> i16 {
    let r: FindCoordinatorResponse = call(s, ApiKey::FindCoordinator, 3, &FindCoordinatorRequest::default().with_key(sb(group)));
    r.error_code
}

fn create_topic_error(s: &mut std::net::TcpStream, name: &str) -> i16 {
    let t = create_topics_request::CreatableTopic::default().with_name(TopicName(sb(name))).with_num_partitions(1).with_replication_factor(1);
    let r: CreateTopicsResponse = call(s, ApiKey::CreateTopics, 5, &CreateTopicsRequest::default().with_topics(vec![t]).with_timeout_ms(10_000));
    r.topics[0].error_code
}

fn delete_topic_error(s: &mut std::net::TcpStream, name: &str) -> i16 {
    let r: DeleteTopicsResponse =
        call(s, ApiKey::DeleteTopics, 4, &DeleteTopicsRequest::default().with_topic_names(vec![TopicName(sb(name))]).with_timeout_ms(10_000));
    r.responses[0].error_code
}

fn describe_configs_error(s: &mut std::net::TcpStream, resource_type: i8, name: &str) -> i16 {
    let r = describe_configs_request::DescribeConfigsResource::default().with_resource_type(resource_type).with_resource_name(sb(name));
    let resp: DescribeConfigsResponse = call(s, ApiKey::DescribeConfigs, 4, &DescribeConfigsRequest::default().with_resources(vec![r]));
    resp.results[0].error_code
}

fn init_producer_id_error(s: &mut std::net::TcpStream, transactional_id: Option<&str>) -> i16 {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(transactional_id.map(|t| TransactionalId(sb(t))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r: InitProducerIdResponse = call(s, ApiKey::InitProducerId, 4, &req);
    r.error_code
}

fn names(m: &MetadataResponse) -> Vec<String> {
    let mut n: Vec<String> = m.topics.iter().filter_map(|t| t.name.as_ref().map(|n| n.0.to_string())).collect();
    n.sort();
    n
}

#[test]
fn each_api_refuses_without_its_acl_and_serves_with_it() {
    let mut b = Broker::start(&["-o", AUTHORIZER, "-o", "super.users=User:ANONYMOUS"]);
    // As a super user: everything passes, with no ACL at all.
    let mut s = connect(&b.addr);
    create_topic(&mut s, "orders", &[]);
    create_topic(&mut s, "hidden", &[]);
    assert_eq!(produce(&mut s, 9, "hidden", one_record_batch(b"x")).error_code, 0);
    allow(&b, "alter", &["--cluster"]);
    allow(&b, "describe", &["--cluster"]);
    drop(s);
    // The same data dir without super.users: only the two cluster ACLs.
    b.stop();
    let b2 = Broker::start_in(&b.data_dir, &["-o", AUTHORIZER]);
    let mut s = connect(&b2.addr);

    // Metadata: nothing is describable yet; a named topic is refused whether it exists or not.
    assert!(names(&metadata(&mut s, None)).is_empty());
    let m = metadata(&mut s, Some(&["orders", "no-such-topic"]));
    assert!(m.topics.iter().all(|t| t.error_code == TOPIC_AUTHORIZATION_FAILED), "{m:?}");
    assert_eq!(list_offsets_error(&mut s, "orders"), TOPIC_AUTHORIZATION_FAILED);
    allow(&b2, "describe", &["--topic", "orders"]);
    assert_eq!(names(&metadata(&mut s, None)), ["orders"], "Metadata hides the topics it may not describe");
    assert_eq!(metadata(&mut s, Some(&["orders"])).topics[0].error_code, 0);
    assert_eq!(list_offsets_error(&mut s, "orders"), 0);
    assert_eq!(list_offsets_error(&mut s, "hidden"), TOPIC_AUTHORIZATION_FAILED);

    // Produce and Fetch: WRITE and READ on the topic.
    assert_eq!(produce(&mut s, 9, "orders", one_record_batch(b"v")).error_code, TOPIC_AUTHORIZATION_FAILED);
    allow(&b2, "write", &["--topic", "orders"]);
    assert_eq!(produce(&mut s, 9, "orders", one_record_batch(b"v")).error_code, 0);
    assert_eq!(fetch_error(&mut s, "orders"), TOPIC_AUTHORIZATION_FAILED);
    allow(&b2, "read", &["--topic", "orders"]);
    assert_eq!(fetch_error(&mut s, "orders"), 0);

    // Metadata v8-v10 asked for authorized operations lists exactly what the ACLs grant
    // (bit = Kafka's operation code): READ, WRITE, DESCRIBE on orders; ALTER, DESCRIBE on
    // the cluster.
    let t = metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(sb("orders"))));
    let req = MetadataRequest::default().with_topics(Some(vec![t])).with_include_topic_authorized_operations(true);
    let m: MetadataResponse = call(&mut s, ApiKey::Metadata, 10, &req.with_include_cluster_authorized_operations(true));
    assert_eq!(m.topics[0].topic_authorized_operations, 1 << 3 | 1 << 4 | 1 << 8, "{m:?}");
    assert_eq!(m.cluster_authorized_operations, 1 << 7 | 1 << 8, "{m:?}");
    assert_eq!(metadata(&mut s, Some(&["orders"])).topics[0].topic_authorized_operations, i32::MIN, "not asked: not computed");

    // A real client is refused the same way (librdkafka's TopicAuthorizationFailed).
    let producer = common::kafka::producer(&b2, &[("message.timeout.ms", "5000")]);
    let sent = common::kafka::block_on(producer.send(
        rdkafka::producer::FutureRecord::<(), [u8]>::to("hidden").payload(b"no"),
        std::time::Duration::from_secs(5),
    ));
    let err = sent.expect_err("a write to a topic without WRITE").0;
    assert_eq!(err.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed), "{err}");

    // Groups: READ on the group for commits (and, implied, DESCRIBE for FindCoordinator).
    assert_eq!(find_group_coordinator_error(&mut s, "billing"), GROUP_AUTHORIZATION_FAILED);
    assert_eq!(commit_error(&mut s, "billing", "orders"), GROUP_AUTHORIZATION_FAILED);
    allow(&b2, "read", &["--group", "billing"]);
    assert_eq!(find_group_coordinator_error(&mut s, "billing"), 0);
    assert_eq!(commit_error(&mut s, "billing", "orders"), 0);
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(sb("billing"))]).with_include_authorized_operations(true);
    let d: DescribeGroupsResponse = call(&mut s, ApiKey::DescribeGroups, 5, &req);
    assert_eq!(d.groups[0].authorized_operations, 1 << 3 | 1 << 8, "READ and (implied) DESCRIBE: {d:?}");
    // With the group but not the topic: TOPIC_AUTHORIZATION_FAILED for that topic.
    assert_eq!(commit_error(&mut s, "billing", "hidden"), TOPIC_AUTHORIZATION_FAILED);

    // CreateTopics and DeleteTopics through a PREFIXED ACL.
    assert_eq!(create_topic_error(&mut s, "team-a.events"), TOPIC_AUTHORIZATION_FAILED);
    acl(&b2, &["create", "--allow-principal", "User:ANONYMOUS", "--operation", "create", "--operation", "delete", "--topic", "team-a.", "--prefixed"]);
    assert_eq!(create_topic_error(&mut s, "team-a.events"), 0);
    assert_eq!(create_topic_error(&mut s, "team-b.events"), TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(delete_topic_error(&mut s, "hidden"), TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(delete_topic_error(&mut s, "team-a.events"), 0);

    // Configs: DESCRIBE_CONFIGS on the topic, and on the cluster for the broker.
    assert_eq!(describe_configs_error(&mut s, 2, "orders"), TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(describe_configs_error(&mut s, 4, ""), CLUSTER_AUTHORIZATION_FAILED);
    allow(&b2, "alter-configs", &["--topic", "orders"]);
    assert_eq!(describe_configs_error(&mut s, 2, "orders"), 0, "ALTER_CONFIGS implies DESCRIBE_CONFIGS");

    // InitProducerId: WRITE on the transactional id; an idempotent producer needs
    // IDEMPOTENT_WRITE or WRITE on some topic (it has WRITE on orders).
    assert_eq!(init_producer_id_error(&mut s, Some("tx-1")), TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    assert_eq!(init_producer_id_error(&mut s, None), 0);
    allow(&b2, "write", &["--transactional-id", "tx-1"]);
    assert_eq!(init_producer_id_error(&mut s, Some("tx-1")), 0);

    // A DENY beats every ALLOW; deleting it restores the ALLOW.
    acl(&b2, &["create", "--deny-principal", "User:ANONYMOUS", "--operation", "read", "--topic", "orders"]);
    assert_eq!(fetch_error(&mut s, "orders"), TOPIC_AUTHORIZATION_FAILED);
    let listed = acl(&b2, &["list", "--topic", "orders"]);
    assert!(listed.contains("deny") && listed.contains("read") && listed.contains("alter-configs"), "{listed}");
    let deleted = acl(&b2, &["delete", "--deny-principal", "User:ANONYMOUS", "--topic", "orders"]);
    assert!(deleted.contains("deny"), "{deleted}");
    assert_eq!(fetch_error(&mut s, "orders"), 0);

    // Every ACL created and not deleted is listed (the cluster ones came through the
    // restart: they are in the metadata log).
    let json = acl(&b2, &["list", "--json"]);
    let all: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 10, "{json}");
}

#[test]
fn acl_apis_answer_security_disabled_without_an_authorizer() {
    let b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    let r: DescribeAclsResponse = call(
        &mut s,
        ApiKey::DescribeAcls,
        3,
        &DescribeAclsRequest::default().with_resource_type_filter(1).with_pattern_type_filter(1).with_operation(1).with_permission_type(1),
    );
    assert_eq!(r.error_code, SECURITY_DISABLED);
    // And everything is allowed, as before.
    create_topic(&mut s, "open", &[]);
    assert_eq!(produce(&mut s, 9, "open", one_record_batch(b"v")).error_code, 0);
}

/// Two SASL/PLAIN users (from `sasl.plain.users`) with librdkafka clients: alice, with READ
/// and WRITE on `orders`, produces and consumes it; bob, with none, is refused and does
/// not see it in Metadata; a PREFIXED ACL lets bob write `bob.` topics; ACLs are managed
/// by `User:ANONYMOUS`, a super user, on the PLAINTEXT listener.
#[test]
fn sasl_principals_get_their_own_acls() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("plain.users");
    std::fs::write(&users, "alice=alice-pw\nbob=bob-pw\n").unwrap();
    let b = Broker::start(&[
        "-o",
        "listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
        "-o",
        AUTHORIZER,
        "-o",
        "super.users=User:ANONYMOUS",
        "-o",
        &format!("sasl.plain.users={}", users.display()),
    ]);
    let admin = b.listener("PLAINTEXT").to_string();
    let mut s = connect(&admin);
    create_topic(&mut s, "orders", &[]);
    create_topic(&mut s, "bob.events", &[]);
    let as_admin = |args: &[&str]| {
        common::acl(&admin, args);
    };
    as_admin(&["create", "--allow-principal", "User:alice", "--operation", "read", "--operation", "write", "--topic", "orders"]);
    as_admin(&["create", "--allow-principal", "User:bob", "--operation", "write", "--topic", "bob.", "--prefixed"]);
    let client = |user: &'static str, pw: &'static str| {
        [
            ("bootstrap.servers", b.listener("SASL_PLAINTEXT")),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.username", user),
            ("sasl.password", pw),
        ]
    };
    let send = |user, pw, topic: &str| {
        let p = common::kafka::producer(&b, &[&client(user, pw)[..], &[("message.timeout.ms", "5000")]].concat());
        common::kafka::block_on(p.send(rdkafka::producer::FutureRecord::<(), [u8]>::to(topic).payload(b"v"), std::time::Duration::from_secs(5)))
            .map(|_| ())
            .map_err(|(e, _)| e.rdkafka_error_code())
    };
    let denied = Err(Some(rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed));
    assert_eq!(send("alice", "alice-pw", "orders"), Ok(()));
    assert_eq!(send("bob", "bob-pw", "orders"), denied);
    assert_eq!(send("bob", "bob-pw", "bob.events"), Ok(()), "prefixed ACL");
    assert_eq!(send("alice", "alice-pw", "bob.events"), denied);
    // Metadata as each user: alice sees orders (READ implies DESCRIBE), bob only his own.
    let topics = |user, pw| {
        let c: rdkafka::consumer::BaseConsumer = common::kafka::consumer(&b, &client(user, pw));
        let m = rdkafka::consumer::Consumer::fetch_metadata(&c, None, std::time::Duration::from_secs(10)).unwrap();
        let mut names: Vec<String> = m.topics().iter().map(|t| t.name().to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(topics("alice", "alice-pw"), ["orders"]);
    assert_eq!(topics("bob", "bob-pw"), ["bob.events"]);
    // alice reads what she wrote (librdkafka looks up its group: READ on it too).
    as_admin(&["create", "--allow-principal", "User:alice", "--operation", "read", "--group", "runnel-tests"]);
    let c: rdkafka::consumer::BaseConsumer = common::kafka::consumer(&b, &client("alice", "alice-pw"));
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("orders", 0, rdkafka::Offset::Beginning).unwrap();
    rdkafka::consumer::Consumer::assign(&c, &tpl).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        assert!(std::time::Instant::now() < deadline, "alice read nothing");
        if let Some(m) = c.poll(std::time::Duration::from_millis(200)) {
            assert_eq!(rdkafka::Message::payload(&m.expect("alice may read orders")), Some(&b"v"[..]));
            break;
        }
    }
}
