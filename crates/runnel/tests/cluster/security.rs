//! SCRAM credentials and listeners in a cluster: a user created through one broker is a
//! metadata record the quorum replicates, so every broker's SASL listener accepts it; each
//! broker registers every listener, and Metadata asked on a SASL listener lists each
//! broker at its address for that listener.

use kafka_protocol::messages::*;
use runnel_broker::auth::scram::ScramMechanism;

use super::{start_cluster_with, wait_until};
use crate::common::sasl::{scram_login, set_scram};
use crate::common::wire;

/// A SCRAM-SHA-512 login on a fresh connection to `addr`; whether it succeeded.
fn login(addr: &str, user: &str, password: &str) -> bool {
    scram_login(&mut wire::connect(addr), ScramMechanism::Sha512, user, password) == 0
}

#[test]
fn scram_users_and_listeners_span_the_cluster() {
    let c = start_cluster_with([0, 1, 2], "listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0");
    assert_eq!(set_scram(c.nodes[0].listener("PLAINTEXT"), "carl", ScramMechanism::Sha512, "pw-in-cluster"), 0);
    let sasl_ports: Vec<i32> = c.nodes.iter().map(|n| n.listener("SASL_PLAINTEXT").rsplit_once(':').unwrap().1.parse().unwrap()).collect();
    for node in &c.nodes {
        let addr = node.listener("SASL_PLAINTEXT").to_string();
        wait_until("the credential reaches every broker", || login(&addr, "carl", "pw-in-cluster"));
        assert!(!login(&addr, "carl", "wrong"), "a wrong password is refused on {addr}");
        let mut s = wire::connect(&addr);
        assert_eq!(scram_login(&mut s, ScramMechanism::Sha512, "carl", "pw-in-cluster"), 0);
        wait_until("Metadata lists every broker at its SASL_PLAINTEXT address", || {
            let md: MetadataResponse = wire::call(&mut s, ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(None));
            let mut ports: Vec<i32> = md.brokers.iter().map(|b| b.port).collect();
            ports.sort();
            let mut want = sasl_ports.clone();
            want.sort();
            ports == want
        });
    }
}
