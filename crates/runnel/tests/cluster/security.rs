//! SCRAM credentials and listeners in a cluster: a user created through one broker is a
//! metadata record the quorum replicates, so every broker's SASL listener accepts it; each
//! broker registers every listener, and Metadata asked on a SASL listener lists each
//! broker at its address for that listener.

use std::io::{Read, Write};

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use runnel_broker::auth::scram::{client as scram_client, ScramMechanism};

use super::{start_cluster_with, wait_until};
use crate::common::wire;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A SCRAM-SHA-512 login on `s`; whether it succeeded.
fn login(s: &mut (impl Read + Write), user: &str, password: &str) -> bool {
    let mech = ScramMechanism::Sha512;
    let hs: SaslHandshakeResponse = wire::call(s, ApiKey::SaslHandshake, 1, &SaslHandshakeRequest::default().with_mechanism(sb(mech.name())));
    assert_eq!(hs.error_code, 0);
    let (first, bare) = scram_client::first(user);
    let r = auth(s, first.as_bytes());
    if r.error_code != 0 {
        return false;
    }
    let (last, _) = scram_client::last(mech, password, &bare, &String::from_utf8_lossy(&r.auth_bytes)).unwrap();
    auth(s, last.as_bytes()).error_code == 0
}

fn auth(s: &mut (impl Read + Write), token: &[u8]) -> SaslAuthenticateResponse {
    wire::call(s, ApiKey::SaslAuthenticate, 2, &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token)))
}

#[test]
fn scram_users_and_listeners_span_the_cluster() {
    let c = start_cluster_with([0, 1, 2], "listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0");
    let salt = b"cluster-salt".to_vec();
    let salted = ScramMechanism::Sha512.salted_password(b"pw-in-cluster", &salt, 4096);
    let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![ScramCredentialUpsertion::default()
        .with_name(sb("carl"))
        .with_mechanism(ScramMechanism::Sha512.code())
        .with_iterations(4096)
        .with_salt(Bytes::from(salt))
        .with_salted_password(Bytes::from(salted))]);
    let r: AlterUserScramCredentialsResponse = wire::call(&mut wire::connect(c.nodes[0].listener("PLAINTEXT")), ApiKey::AlterUserScramCredentials, 0, &req);
    assert_eq!(r.results[0].error_code, 0);
    let sasl_ports: Vec<i32> = c.nodes.iter().map(|n| n.listener("SASL_PLAINTEXT").rsplit_once(':').unwrap().1.parse().unwrap()).collect();
    for node in &c.nodes {
        let addr = node.listener("SASL_PLAINTEXT").to_string();
        wait_until("the credential reaches every broker", || login(&mut wire::connect(&addr), "carl", "pw-in-cluster"));
        let mut s = wire::connect(&addr);
        assert!(!login(&mut s, "carl", "wrong"), "a wrong password is refused on {addr}");
        let mut s = wire::connect(&addr);
        assert!(login(&mut s, "carl", "pw-in-cluster"));
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
