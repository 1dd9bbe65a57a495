//! ACLs in a cluster with the authorizer on: an ACL created through one broker is a
//! metadata record the quorum replicates, so every broker authorizes with it, and one
//! deleted through another broker is gone everywhere. The brokers reach each other on their
//! PLAINTEXT listener (listed after the SASL one: the first PLAINTEXT listener, not the first
//! listener) as `User:ANONYMOUS`, a super user as a Kafka operator would set it, so follower
//! fetches (CLUSTER_ACTION) keep acks=all writes replicated, ISR of 3.

use kafka_protocol::messages::*;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use runnel_broker::auth::scram::ScramMechanism;

use super::{client, create, leaders, metadata, read_values, start_cluster_with, wait_until};
use crate::common::kafka::{block_on, TIMEOUT};
use crate::common::sasl::{scram_login, set_scram};
use crate::common::{acl, wire};

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;

/// The error code of `topic` in a Metadata answer to `user`, logged in with SCRAM on `addr`.
fn topic_error_as(addr: &str, user: &str, topic: &str) -> i16 {
    let mut s = wire::connect(addr);
    assert_eq!(scram_login(&mut s, ScramMechanism::Sha512, user, &format!("{user}-pw")), 0, "{user} logs in on {addr}");
    let t = metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(wire::sb(topic))));
    let req = MetadataRequest::default().with_topics(Some(vec![t])).with_allow_auto_topic_creation(false);
    let m: MetadataResponse = wire::call(&mut s, ApiKey::Metadata, 12, &req);
    m.topics[0].error_code
}

/// A librdkafka client config for `user` bootstrapped on `addr` only. PLAIN, checked against
/// the SCRAM credential (the bundled librdkafka is built without SCRAM).
fn sasl_client(addr: &str, user: &str) -> rdkafka::ClientConfig {
    let mut c = client(addr);
    c.set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", "PLAIN")
        .set("sasl.username", user)
        .set("sasl.password", format!("{user}-pw"));
    c
}

/// acks=all sends of `user` through `addr` to each partition of `topic`: each one's result.
fn send_each(addr: &str, user: &str, topic: &str, partitions: i32) -> Vec<Result<(), Option<RDKafkaErrorCode>>> {
    let p: FutureProducer = sasl_client(addr, user).set("acks", "all").set("message.timeout.ms", "10000").create().unwrap();
    (0..partitions)
        .map(|i| {
            let r = FutureRecord::<(), str>::to(topic).partition(i).payload(user);
            block_on(p.send(r, TIMEOUT)).map(|_| ()).map_err(|(e, _)| e.rdkafka_error_code())
        })
        .collect()
}

#[test]
fn acls_span_the_cluster_and_replication_stays_authorized() {
    let c = start_cluster_with(
        [0, 1, 2],
        "listeners=SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0,\
         authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer,super.users=User:admin;User:ANONYMOUS",
    );
    let plain: Vec<String> = c.nodes.iter().map(|n| n.listener("PLAINTEXT").to_string()).collect();
    let sasl: Vec<String> = c.nodes.iter().map(|n| n.listener("SASL_PLAINTEXT").to_string()).collect();
    for user in ["admin", "alice", "bob"] {
        assert_eq!(set_scram(&plain[0], user, ScramMechanism::Sha512, &format!("{user}-pw")), 0);
    }
    // The admin (a super user over SCRAM) creates an RF 3 topic, one partition led by each broker.
    let admin: rdkafka::admin::AdminClient<_> = sasl_client(&sasl[1], "admin").create().unwrap();
    create(&admin, "orders", 3, 3).expect("the admin creates orders");
    for a in &plain {
        wait_until("every broker sees orders with a leader per partition", || {
            let mut l = leaders(a, "orders");
            l.sort();
            l == [1, 2, 3]
        });
    }

    // Without an ACL alice may do nothing, on any broker.
    for a in &sasl {
        wait_until("alice's credential reaches every broker", || topic_error_as(a, "alice", "orders") == TOPIC_AUTHORIZATION_FAILED);
    }
    // ACLs created through node 1 (its PLAINTEXT listener: a super user).
    acl(&plain[0], &["create", "--allow-principal", "User:alice", "--operation", "write", "--operation", "describe", "--operation", "read", "--topic", "orders"]);
    acl(&plain[0], &["create", "--allow-principal", "User:alice", "--operation", "read", "--group", "alice-group"]);
    for a in &sasl[1..] {
        wait_until("the ACL reaches nodes 2 and 3", || topic_error_as(a, "alice", "orders") == 0);
        assert_eq!(topic_error_as(a, "bob", "orders"), TOPIC_AUTHORIZATION_FAILED, "bob has no ACL on {a}");
    }

    // alice writes with acks=all to every partition (so through every broker's authorizer,
    // each leader waiting for its two followers' authorized fetches); bob is refused.
    for a in &sasl[1..] {
        assert_eq!(send_each(a, "alice", "orders", 3), [Ok(()), Ok(()), Ok(())], "alice produces through {a}");
        let denied = Err(Some(RDKafkaErrorCode::TopicAuthorizationFailed));
        assert_eq!(send_each(a, "bob", "orders", 3), [denied, denied, denied], "bob is refused through {a}");
    }
    // Replicated: every partition's ISR is all three brokers, as every broker reports it.
    for a in &plain {
        wait_until("ISR of 3 on every partition", || {
            let m = metadata(a);
            let t = m.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "orders"));
            t.is_some_and(|t| t.partitions.len() == 3 && t.partitions.iter().all(|p| p.isr_nodes.len() == 3))
        });
    }

    // alice reads back the six records through node 3, in her group.
    assert_eq!(read_values(sasl_client(&sasl[2], "alice"), "alice-group", "orders", 3, 6), vec!["alice"; 6]);

    // DeleteAcls through node 3 takes effect on node 1.
    let deleted = acl(&plain[2], &["delete", "--allow-principal", "User:alice", "--topic", "orders"]);
    assert!(deleted.contains("write") && deleted.contains("describe"), "{deleted}");
    wait_until("the deletion reaches node 1", || topic_error_as(&sasl[0], "alice", "orders") == TOPIC_AUTHORIZATION_FAILED);
}

/// The brokers speak neither TLS nor SASL among themselves: a cluster node with no
/// PLAINTEXT listener for them, or an `inter.broker.listener.name` naming a SASL one, refuses
/// to start and says why (before, its followers fetched from the first listener, unanswered).
#[test]
fn a_cluster_node_needs_a_plaintext_inter_broker_listener() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (listen, quorum) = (format!("127.0.0.1:{port}"), format!("1@127.0.0.1:{port}"));
    let node = ["--node-id", "1", "--controller-listen", &listen, "--controller-quorum", &quorum, "-o"];
    let refused = crate::common::run_broker_expecting_failure(&[&node[..], &["listeners=SASL_PLAINTEXT://127.0.0.1:0"]].concat());
    assert!(refused.contains("needs a PLAINTEXT listener"), "{refused}");
    let settings = "listeners=SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0,inter.broker.listener.name=SASL_PLAINTEXT";
    let refused = crate::common::run_broker_expecting_failure(&[&node[..], &[settings]].concat());
    assert!(refused.contains("SASL_PLAINTEXT is not a PLAINTEXT listener"), "{refused}");
}
