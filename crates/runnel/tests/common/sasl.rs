//! SASL from tests: store a SCRAM credential (AlterUserScramCredentials), SaslHandshake,
//! SaslAuthenticate, and a whole SCRAM login with the client side of
//! `runnel_broker::auth::scram`, over any stream (plain TCP or TLS).
#![allow(dead_code)]

use std::io::{Read, Write};

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::messages::*;
use runnel_broker::auth::scram::{client as scram_client, ScramMechanism};

use super::wire::{call, connect, sb};

/// Stores `user`'s SCRAM credential through AlterUserScramCredentials on `addr`.
pub fn set_scram(addr: &str, user: &str, mech: ScramMechanism, password: &str) -> i16 {
    let salt = b"0123456789abcdef".to_vec();
    let salted = mech.salted_password(password.as_bytes(), &salt, 4096);
    let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![ScramCredentialUpsertion::default()
        .with_name(sb(user))
        .with_mechanism(mech.code())
        .with_iterations(4096)
        .with_salt(Bytes::from(salt))
        .with_salted_password(Bytes::from(salted))]);
    let r: AlterUserScramCredentialsResponse = call(&mut connect(addr), ApiKey::AlterUserScramCredentials, 0, &req);
    r.results[0].error_code
}

pub fn handshake(s: &mut (impl Read + Write), mechanism: &str) -> SaslHandshakeResponse {
    call(s, ApiKey::SaslHandshake, 1, &SaslHandshakeRequest::default().with_mechanism(sb(mechanism)))
}

pub fn authenticate(s: &mut (impl Read + Write), token: &[u8]) -> SaslAuthenticateResponse {
    call(s, ApiKey::SaslAuthenticate, 2, &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token)))
}

/// A whole SCRAM login; returns the error code of the step that failed (0: logged in).
pub fn scram_login(s: &mut (impl Read + Write), mech: ScramMechanism, user: &str, password: &str) -> i16 {
    let hs = handshake(s, mech.name());
    if hs.error_code != 0 {
        return hs.error_code;
    }
    let (first, bare) = scram_client::first(user);
    let r = authenticate(s, first.as_bytes());
    if r.error_code != 0 {
        return r.error_code;
    }
    let server_first = String::from_utf8(r.auth_bytes.to_vec()).unwrap();
    let (last, expected) = scram_client::last(mech, password, &bare, &server_first).unwrap();
    let r = authenticate(s, last.as_bytes());
    if r.error_code == 0 {
        use base64::Engine;
        let sig = base64::engine::general_purpose::STANDARD.encode(expected);
        assert_eq!(String::from_utf8_lossy(&r.auth_bytes), format!("v={sig}"), "the server proves it knows the key");
    }
    r.error_code
}

