//! Listeners, SASL and TLS end to end: a real broker with several listeners, driven with
//! raw requests (what a client library would send, down to malformed SCRAM messages),
//! librdkafka over SASL/PLAIN, a rustls client over SSL and SASL_SSL, and `runnel user`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::certs;
use common::sasl::{authenticate, handshake, scram_login, set_scram};
use common::wire::{self, call, connect, expect_closed, read_frame, request};
use common::Broker;
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;
use runnel_broker::auth::scram::{client as scram_client, ScramMechanism};

const SASL_AUTHENTICATION_FAILED: i16 = 58;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A broker with PLAINTEXT and SASL_PLAINTEXT listeners, and `extra` settings.
fn sasl_broker(extra: &[&str]) -> Broker {
    let mut args = vec![
        "-o",
        "listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
        "-o",
        "connection.failed.authentication.delay.ms=20",
    ];
    for e in extra {
        args.extend(["-o", e]);
    }
    Broker::start(&args)
}

fn metadata(s: &mut (impl Read + Write)) -> MetadataResponse {
    call(s, ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(None))
}

#[test]
fn listeners_bind_each_and_answer_their_own_advertised_address() {
    let b = Broker::start(&[
        "-o",
        "listeners=PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0",
        "-o",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT",
        "-o",
        "advertised.listeners=INTERNAL://internal.example:19092",
    ]);
    assert_eq!(b.listeners.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["PLAINTEXT", "INTERNAL"]);
    assert_eq!(b.addr, b.listener("PLAINTEXT"));
    let plain = metadata(&mut connect(b.listener("PLAINTEXT")));
    let (host, port) = b.addr.rsplit_once(':').unwrap();
    assert_eq!((plain.brokers[0].host.as_str(), plain.brokers[0].port), (host, port.parse().unwrap()));
    let internal = metadata(&mut connect(b.listener("INTERNAL")));
    assert_eq!((internal.brokers[0].host.as_str(), internal.brokers[0].port), ("internal.example", 19092));
    // --listen and listeners together are refused with a reason.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["broker", "--listen", "127.0.0.1:0", "-o", "listeners=PLAINTEXT://127.0.0.1:0", "--admin-listen", "off"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("both --listen and listeners"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn scram_and_plain_logins_work_and_wrong_ones_close_the_connection() {
    let mut b = sasl_broker(&[]);
    let (plain_addr, sasl_addr) = (b.listener("PLAINTEXT").to_string(), b.listener("SASL_PLAINTEXT").to_string());
    // The first user comes through the loopback PLAINTEXT listener, with `runnel user`.
    let pw = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pw.path(), "alice-secret\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["user", "create", "alice", "--mechanism", "SCRAM-SHA-512", "--password-file"])
        .arg(pw.path())
        .args(["--brokers", &plain_addr])
        .output()
        .unwrap();
    assert!(out.status.success(), "runnel user create: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(set_scram(&plain_addr, "bob", ScramMechanism::Sha256, "bob-secret"), 0);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runnel")).args(["user", "list", "--json", "--brokers", &plain_addr]).output().unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<(String, String)> = listed.as_array().unwrap().iter().map(|r| (r["user"].as_str().unwrap().into(), r["mechanism"].as_str().unwrap().into())).collect();
    assert_eq!(rows, [("alice".to_string(), "SCRAM-SHA-512".to_string()), ("bob".into(), "SCRAM-SHA-256".into())]);

    // Before authentication only ApiVersions and the SASL APIs are served.
    let mut s = connect(&sasl_addr);
    let av: ApiVersionsResponse = call(&mut s, ApiKey::ApiVersions, 3, &wire::api_versions_req());
    assert_eq!(av.error_code, 0);
    s.write_all(&request(ApiKey::Metadata, 12, 1, &MetadataRequest::default().with_topics(None))).unwrap();
    assert!(expect_closed(&mut s, "Metadata before authentication").is_empty());

    // SCRAM-SHA-512 and -256 with the right passwords; then requests are served.
    let mut s = connect(&sasl_addr);
    assert_eq!(scram_login(&mut s, ScramMechanism::Sha512, "alice", "alice-secret"), 0);
    assert_eq!(metadata(&mut s).brokers.len(), 1);
    // A second handshake after authentication is out of order.
    assert_eq!(handshake(&mut s, "PLAIN").error_code, ILLEGAL_SASL_STATE);
    let mut s = connect(&sasl_addr);
    assert_eq!(scram_login(&mut s, ScramMechanism::Sha256, "bob", "bob-secret"), 0);

    // Wrong password, unknown user, wrong mechanism for the user: refused, then closed.
    for (mech, user, password) in [
        (ScramMechanism::Sha512, "alice", "wrong"),
        (ScramMechanism::Sha512, "nobody", "x"),
        (ScramMechanism::Sha256, "alice", "alice-secret"),
    ] {
        let mut s = connect(&sasl_addr);
        assert_eq!(scram_login(&mut s, mech, user, password), SASL_AUTHENTICATION_FAILED, "{user} via {}", mech.name());
        expect_closed(&mut s, "after a failed SCRAM login");
    }

    // PLAIN checks the same SCRAM store.
    let mut s = connect(&sasl_addr);
    assert_eq!(handshake(&mut s, "PLAIN").error_code, 0);
    assert_eq!(authenticate(&mut s, b"\0alice\0alice-secret").error_code, 0);
    assert_eq!(metadata(&mut s).brokers.len(), 1);
    let mut s = connect(&sasl_addr);
    assert_eq!(handshake(&mut s, "PLAIN").error_code, 0);
    assert_eq!(authenticate(&mut s, b"\0alice\0nope").error_code, SASL_AUTHENTICATION_FAILED);
    expect_closed(&mut s, "after a failed PLAIN login");

    // SaslHandshake v0: the tokens follow as bare frames.
    let mut s = connect(&sasl_addr);
    let r: SaslHandshakeResponse = call(&mut s, ApiKey::SaslHandshake, 0, &SaslHandshakeRequest::default().with_mechanism(sb("PLAIN")));
    assert_eq!(r.error_code, 0);
    let token = b"\0bob\0bob-secret";
    s.write_all(&(token.len() as i32).to_be_bytes()).unwrap();
    s.write_all(token).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    assert_eq!(i32::from_be_bytes(len), 0, "an empty PLAIN answer");
    assert_eq!(metadata(&mut s).brokers.len(), 1);

    // An unknown mechanism is answered with the enabled ones, then closed.
    let mut s = connect(&sasl_addr);
    let r = handshake(&mut s, "GSSAPI");
    assert_eq!(r.error_code, UNSUPPORTED_SASL_MECHANISM);
    assert_eq!(r.mechanisms.iter().map(|m| m.to_string()).collect::<Vec<_>>(), ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
    expect_closed(&mut s, "after an unsupported mechanism");

    // Deleted users cannot log in any more.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runnel")).args(["user", "delete", "alice", "--brokers", &plain_addr]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut s = connect(&sasl_addr);
    assert_eq!(scram_login(&mut s, ScramMechanism::Sha512, "alice", "alice-secret"), SASL_AUTHENTICATION_FAILED);

    // Failures are counted; the broker serves on, and the credentials survive a restart.
    let m = common::admin::metrics(&b);
    assert!(m["runnel_sasl_authentication_failures_total"] >= 6.0, "{m:?}");
    assert!(m["runnel_sasl_authentications_total"] >= 4.0, "{m:?}");
    b.restart();
    let mut s = connect(b.listener("SASL_PLAINTEXT"));
    assert_eq!(scram_login(&mut s, ScramMechanism::Sha256, "bob", "bob-secret"), 0);
    wire::assert_serving(&mut b);
}

#[test]
fn scram_credential_requests_are_validated_per_user() {
    let b = sasl_broker(&[]);
    let addr = b.listener("PLAINTEXT");
    let salted = Bytes::from(vec![1u8; 64]);
    let up = |name: &str, mech: i8, iterations: i32| {
        ScramCredentialUpsertion::default().with_name(sb(name)).with_mechanism(mech).with_iterations(iterations).with_salt(Bytes::from_static(b"salt")).with_salted_password(salted.clone())
    };
    let req = AlterUserScramCredentialsRequest::default()
        .with_upsertions(vec![up("few", 2, 100), up("many", 2, 100_000), up("mech", 9, 4096), up("", 1, 4096), up("twice", 1, 4096), up("twice", 1, 8192), up("ok", 1, 4096)])
        .with_deletions(vec![alter_user_scram_credentials_request::ScramCredentialDeletion::default().with_name(sb("ghost")).with_mechanism(1)]);
    let r: AlterUserScramCredentialsResponse = call(&mut connect(addr), ApiKey::AlterUserScramCredentials, 0, &req);
    let codes: std::collections::BTreeMap<String, i16> = r.results.iter().map(|r| (r.user.to_string(), r.error_code)).collect();
    let expected = [("", 93), ("few", 93), ("ghost", 91), ("many", 93), ("mech", 33), ("ok", 0), ("twice", 92)];
    assert_eq!(codes, expected.iter().map(|(u, c)| (u.to_string(), *c)).collect());
    let d: DescribeUserScramCredentialsResponse = call(
        &mut connect(addr),
        ApiKey::DescribeUserScramCredentials,
        0,
        &DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
            describe_user_scram_credentials_request::UserName::default().with_name(sb("ok")),
            describe_user_scram_credentials_request::UserName::default().with_name(sb("twice")),
        ])),
    );
    let got: Vec<(String, i16, usize)> = d.results.iter().map(|r| (r.user.to_string(), r.error_code, r.credential_infos.len())).collect();
    assert_eq!(got, [("ok".to_string(), 0, 1), ("twice".to_string(), 91, 0)]);
    assert_eq!(d.results[0].credential_infos[0].iterations, 4096);
}

/// Malformed SCRAM messages, as client-first and (after a good client-first) as
/// client-final: each is answered SASL_AUTHENTICATION_FAILED and its connection closed,
/// and the broker serves on.
#[test]
fn malformed_scram_messages_are_refused_and_nothing_panics() {
    let mut b = sasl_broker(&[]);
    assert_eq!(set_scram(b.listener("PLAINTEXT"), "u", ScramMechanism::Sha256, "pw"), 0);
    let sasl_addr = b.listener("SASL_PLAINTEXT").to_string();
    let mut firsts: Vec<Vec<u8>> = [
        "", "n", "n,", "n,,", "y,,n=u", "p=tls-unique,,n=u,r=abc", "x,,n=u,r=abc", "n,,r=abc,n=u", "n,,n=u", "n,,n=u,r=",
        "n,,n=u=,r=abc", "n,,n=u=2,r=abc", "n,,n=u=ZZ,r=abc", "n,,n=u,r=a b", "n,,n=u,r=abc,m=ext", "n,,n=u,r=abc,tokenauth=true",
        "n,a=other,n=u,r=abc", "n,,n=,r=abc", "n,,n=ghost,r=abc", ",,,,,,,,", "n,,n=u,r=abc,=",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    firsts.push(vec![0xff, 0xfe, 0x00]);
    firsts.push(vec![b'a'; 70_000]);
    firsts.extend((0..20).map(|seed| wire::junk(seed, 1 + (seed as usize * 37) % 300)));
    for (i, m) in firsts.iter().enumerate() {
        let mut s = connect(&sasl_addr);
        assert_eq!(handshake(&mut s, "SCRAM-SHA-256").error_code, 0);
        let r = authenticate(&mut s, m);
        assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED, "client-first #{i} {:?}", String::from_utf8_lossy(&m[..m.len().min(60)]));
        expect_closed(&mut s, "after a malformed client-first");
    }
    let finals: Vec<Vec<u8>> = [
        "", "c=biws", "c=biws,r=NONCE", "c=biws,r=NONCE,p=", "c=biws,r=NONCE,p=!!!", "c=biws,r=other,p=AAAA", "c=!!,r=NONCE,p=AAAA",
        "c=eSws,r=NONCE,p=AAAA", "r=NONCE,c=biws,p=AAAA", "c=biws,r=NONCE,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "c=biws,r=NONCE,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    for (i, m) in finals.iter().enumerate() {
        let mut s = connect(&sasl_addr);
        assert_eq!(handshake(&mut s, "SCRAM-SHA-256").error_code, 0);
        let (first, _) = scram_client::first("u");
        let r = authenticate(&mut s, first.as_bytes());
        assert_eq!(r.error_code, 0);
        let nonce = String::from_utf8_lossy(&r.auth_bytes).split(',').next().unwrap().trim_start_matches("r=").to_string();
        let m = String::from_utf8_lossy(m).replace("NONCE", &nonce);
        let r = authenticate(&mut s, m.as_bytes());
        assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED, "client-final #{i} {m:?}");
        expect_closed(&mut s, "after a malformed client-final");
    }
    // A token before the handshake, and a handshake twice.
    let mut s = connect(&sasl_addr);
    assert_eq!(authenticate(&mut s, b"n,,n=u,r=abc").error_code, ILLEGAL_SASL_STATE);
    expect_closed(&mut s, "SaslAuthenticate before SaslHandshake");
    let mut s = connect(&sasl_addr);
    assert_eq!(handshake(&mut s, "SCRAM-SHA-256").error_code, 0);
    assert_eq!(handshake(&mut s, "SCRAM-SHA-256").error_code, ILLEGAL_SASL_STATE);
    expect_closed(&mut s, "a second SaslHandshake");
    let mut s = connect(&sasl_addr);
    assert_eq!(scram_login(&mut s, ScramMechanism::Sha256, "u", "pw"), 0, "a good login still works");
    wire::assert_serving(&mut b);
}

#[test]
fn librdkafka_produces_and_consumes_over_sasl_plain() {
    let b = sasl_broker(&["connections.max.reauth.ms=2000"]);
    assert_eq!(set_scram(b.listener("PLAINTEXT"), "carol", ScramMechanism::Sha512, "carol-pw"), 0);
    let sasl = [
        ("bootstrap.servers", b.listener("SASL_PLAINTEXT")),
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanisms", "PLAIN"),
        ("sasl.username", "carol"),
        ("sasl.password", "carol-pw"),
    ];
    let producer = common::kafka::producer(&b, &sasl);
    common::kafka::block_on(producer.send(FutureRecord::to("secured").key("k").payload("over SASL"), Duration::from_secs(15))).expect("produce over SASL_PLAINTEXT");
    let consumer: BaseConsumer = common::kafka::consumer(&b, &sasl);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("secured", 0, rdkafka::Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let got = loop {
        assert!(Instant::now() < deadline, "nothing consumed over SASL_PLAINTEXT");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            break m.expect("consume over SASL_PLAINTEXT").payload().map(|p| p.to_vec());
        }
    };
    assert_eq!(got.as_deref(), Some(&b"over SASL"[..]));
    // librdkafka re-authenticates its connections before their sessions end (KIP-368):
    // more logins, no new connections, and the producer still delivers.
    let before = common::admin::metrics(&b);
    std::thread::sleep(Duration::from_millis(4500));
    common::kafka::block_on(producer.send(FutureRecord::to("secured").key("k").payload("later"), Duration::from_secs(15))).expect("produce after re-authentication");
    let after = common::admin::metrics(&b);
    let logins = after["runnel_sasl_authentications_total"] - before["runnel_sasl_authentications_total"];
    assert!(logins >= 2.0, "librdkafka re-authenticated ({logins} logins)");
    assert_eq!(after["runnel_connections_accepted_total"], before["runnel_connections_accepted_total"], "on the same connections");
    // A wrong password: librdkafka reports the authentication failure.
    let mut bad = sasl;
    bad[4] = ("sasl.password", "wrong");
    let consumer: BaseConsumer = common::kafka::consumer(&b, &bad);
    let err = consumer.fetch_metadata(None, Duration::from_secs(2)).expect_err("a wrong password must not get metadata");
    drop(err);
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A rustls client connection to `addr` trusting `ca`, optionally with a client certificate.
fn tls_connect(addr: &str, ca: &std::path::Path, client: Option<(&std::path::Path, &std::path::Path)>) -> std::io::Result<Tls> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert).unwrap().map(|c| c.unwrap()).collect();
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap()).unwrap()
        }
    };
    let conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("127.0.0.1").unwrap().to_owned()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, connect(addr));
    // Drive the handshake now, so a refusal shows here (TLS 1.3 reports a refused client
    // certificate on the first read).
    s.conn.complete_io(&mut s.sock)?;
    Ok(s)
}

/// ApiVersions over `s`: whether it was answered.
fn answered(s: &mut Tls) -> bool {
    if s.write_all(&request(ApiKey::ApiVersions, 3, 7, &wire::api_versions_req())).and_then(|_| s.flush()).is_err() {
        return false;
    }
    read_frame(s).is_ok()
}

#[test]
fn tls_listeners_check_certificates_and_serve_fetches_by_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let c = certs::make(tmp.path());
    let mut b = Broker::start(&[
        "-o",
        "listeners=PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
        "-o",
        &format!("ssl.keystore.location={}", c.keystore.display()),
        "-o",
        &format!("ssl.truststore.location={}", c.ca.display()),
        "-o",
        "ssl.client.auth=required",
        "-o",
        "connection.failed.authentication.delay.ms=20",
    ]);
    let (ssl, sasl_ssl) = (b.listener("SSL").to_string(), b.listener("SASL_SSL").to_string());
    // A trusted client certificate is served.
    let mut s = tls_connect(&ssl, &c.ca, Some((&c.client_cert, &c.client_key))).expect("TLS with a trusted client certificate");
    assert!(answered(&mut s));
    // No certificate, or one from another CA: refused.
    for client in [None, Some((c.rogue_cert.as_path(), c.rogue_key.as_path()))] {
        let refused = match tls_connect(&ssl, &c.ca, client) {
            Err(_) => true,
            Ok(mut s) => !answered(&mut s),
        };
        assert!(refused, "a client with certificate {client:?} must be refused");
    }
    // A plaintext client on the TLS port gets no Kafka answer and a closed connection.
    let mut p = connect(&ssl);
    p.write_all(&request(ApiKey::ApiVersions, 3, 1, &wire::api_versions_req())).unwrap();
    let got = expect_closed(&mut p, "plaintext on a TLS port");
    assert!(got.len() < 4 || i32::from_be_bytes(got[..4].try_into().unwrap()) != got.len() as i32 - 4, "no Kafka frame back");

    // Records produced on PLAINTEXT come back byte for byte over TLS (copied, not spliced).
    let mut plain = connect(b.listener("PLAINTEXT"));
    wire::create_topic(&mut plain, "tls-fetch", &[]);
    let value = vec![7u8; 300_000];
    assert_eq!(wire::produce(&mut plain, 9, "tls-fetch", wire::one_record_batch(&value)).error_code, 0);
    let (_, plain_records) = wire::fetch(&mut plain, "tls-fetch", 0, 0);
    let fetch = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(10 << 20).with_topics(vec![fetch_request::FetchTopic::default()
        .with_topic(TopicName(sb("tls-fetch")))
        .with_partitions(vec![fetch_request::FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(10 << 20)])]);
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch);
    let tls_records = r.responses[0].partitions[0].records.clone().unwrap_or_default();
    assert!(tls_records.len() > 300_000);
    assert_eq!(tls_records, plain_records);

    // SASL_SSL: TLS (with the client certificate the listener requires), then SCRAM.
    assert_eq!(set_scram(b.listener("PLAINTEXT"), "dave", ScramMechanism::Sha512, "dave-pw"), 0);
    let mut s = tls_connect(&sasl_ssl, &c.ca, Some((&c.client_cert, &c.client_key))).unwrap();
    assert_eq!(scram_login(&mut s, ScramMechanism::Sha512, "dave", "dave-pw"), 0);
    assert_eq!(metadata(&mut s).brokers.len(), 1);
    let mut s = tls_connect(&sasl_ssl, &c.ca, Some((&c.client_cert, &c.client_key))).unwrap();
    assert_eq!(scram_login(&mut s, ScramMechanism::Sha512, "dave", "nope"), SASL_AUTHENTICATION_FAILED);
    wire::assert_serving(&mut b);
}

#[test]
fn a_renewed_server_certificate_is_served_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let c = certs::make(tmp.path());
    // The keystore given as the listener's own override (listener.name.ssl.…, KIP-103).
    let b = Broker::start(&["-o", "listeners=SSL://127.0.0.1:0", "-o", &format!("listener.name.ssl.ssl.keystore.location={}", c.keystore.display())]);
    let ssl = b.listener("SSL").to_string();
    let old_ca = std::fs::read(&c.ca).unwrap();
    assert!(answered(&mut tls_connect(&ssl, &c.ca, None).unwrap()));
    certs::renew_server(&c, "renewed");
    // The broker polls the files every 5 s; until then the old chain is served.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if tls_connect(&ssl, &c.ca, None).is_ok_and(|mut s| answered(&mut s)) {
            break;
        }
        assert!(Instant::now() < deadline, "the renewed certificate was not picked up");
        std::thread::sleep(Duration::from_millis(250));
    }
    std::fs::write(&c.ca, old_ca).unwrap();
    assert!(tls_connect(&ssl, &c.ca, None).is_err(), "the old certificate is no longer served");
}

/// KIP-368: with `connections.max.reauth.ms` the session lifetime is announced, the client
/// re-authenticates on the same connection (as the same user only), and a connection whose
/// session ended without it is closed at its next request.
#[test]
fn sessions_end_unless_the_client_reauthenticates() {
    let b = sasl_broker(&["connections.max.reauth.ms=1500"]);
    assert_eq!(set_scram(b.listener("PLAINTEXT"), "erin", ScramMechanism::Sha256, "erin-pw"), 0);
    assert_eq!(set_scram(b.listener("PLAINTEXT"), "frank", ScramMechanism::Sha256, "frank-pw"), 0);
    let sasl_addr = b.listener("SASL_PLAINTEXT").to_string();
    // PLAIN: the session lifetime comes with the answer (v1+).
    let mut s = connect(&sasl_addr);
    assert_eq!(handshake(&mut s, "PLAIN").error_code, 0);
    let r = authenticate(&mut s, b"\0erin\0erin-pw");
    assert_eq!((r.error_code, r.session_lifetime_ms), (0, 1500));
    // Re-authenticating before the end (SCRAM this time) keeps the connection going.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(900));
        assert_eq!(scram_login(&mut s, ScramMechanism::Sha256, "erin", "erin-pw"), 0);
        assert_eq!(metadata(&mut s).brokers.len(), 1);
    }
    // Without it, the next request after the end closes the connection.
    std::thread::sleep(Duration::from_millis(1600));
    s.write_all(&request(ApiKey::Metadata, 12, 1, &MetadataRequest::default().with_topics(None))).unwrap();
    assert!(expect_closed(&mut s, "a request after the session ended").is_empty());
    // Re-authenticating as someone else is refused.
    let mut s = connect(&sasl_addr);
    assert_eq!(scram_login(&mut s, ScramMechanism::Sha256, "erin", "erin-pw"), 0);
    assert_eq!(scram_login(&mut s, ScramMechanism::Sha256, "frank", "frank-pw"), SASL_AUTHENTICATION_FAILED);
    expect_closed(&mut s, "re-authentication as another user");
}

/// OAUTHBEARER with unsecured tokens (opt-in, for tests): a token logs in as its subject;
/// signed, expired and malformed tokens are refused. (librdkafka's own unsecured JWT is
/// tried in tests/python/test_security.py: the rdkafka crate here is built without OpenSSL,
/// which librdkafka's OAUTHBEARER needs.)
#[test]
fn oauthbearer_accepts_unsecured_tokens_only() {
    let b = sasl_broker(&["sasl.enabled.mechanisms=SCRAM-SHA-512,OAUTHBEARER"]);
    let sasl_addr = b.listener("SASL_PLAINTEXT").to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let token = runnel_broker::auth::oauthbearer::unsecured_token("olga", now + 600);
    let mut s = connect(&sasl_addr);
    assert_eq!(handshake(&mut s, "OAUTHBEARER").error_code, 0);
    assert_eq!(authenticate(&mut s, format!("n,,\x01auth=Bearer {token}\x01\x01").as_bytes()).error_code, 0);
    assert_eq!(metadata(&mut s).brokers.len(), 1);
    let expired = runnel_broker::auth::oauthbearer::unsecured_token("olga", now - 10);
    for bad in [format!("n,,\x01auth=Bearer {expired}\x01\x01"), format!("n,,\x01auth=Bearer {token}sig\x01\x01"), "n,,\x01auth=Bearer\x01\x01".to_string()] {
        let mut s = connect(&sasl_addr);
        assert_eq!(handshake(&mut s, "OAUTHBEARER").error_code, 0);
        assert_eq!(authenticate(&mut s, bad.as_bytes()).error_code, SASL_AUTHENTICATION_FAILED, "{bad:?}");
        expect_closed(&mut s, "after a refused token");
    }
    // PLAIN is not enabled here.
    let mut s = connect(&sasl_addr);
    assert_eq!(handshake(&mut s, "PLAIN").error_code, UNSUPPORTED_SASL_MECHANISM);
}

/// `ssl.client.auth=requested`: a client without a certificate is served (anonymous), one
/// with a trusted certificate too; an untrusted certificate is refused. The certificate's
/// subject reads as Kafka prints it (RFC 2253, last RDN first).
#[test]
fn requested_client_certificates_are_checked_when_sent() {
    use rustls::pki_types::pem::PemObject;
    let tmp = tempfile::tempdir().unwrap();
    let c = certs::make(tmp.path());
    let b = Broker::start(&[
        "-o",
        "listeners=SSL://127.0.0.1:0",
        "-o",
        &format!("ssl.keystore.location={}", c.keystore.display()),
        "-o",
        &format!("ssl.truststore.location={}", c.ca.display()),
        "-o",
        "ssl.client.auth=requested",
    ]);
    let ssl = b.listener("SSL").to_string();
    assert!(answered(&mut tls_connect(&ssl, &c.ca, None).unwrap()), "no certificate: served");
    assert!(answered(&mut tls_connect(&ssl, &c.ca, Some((&c.client_cert, &c.client_key))).unwrap()), "trusted certificate: served");
    let refused = match tls_connect(&ssl, &c.ca, Some((&c.rogue_cert, &c.rogue_key))) {
        Err(_) => true,
        Ok(mut s) => !answered(&mut s),
    };
    assert!(refused, "an untrusted certificate is refused even when only requested");
    let der = rustls::pki_types::CertificateDer::from_pem_file(&c.client_cert).unwrap();
    assert_eq!(runnel_broker::auth::tls::subject_dn(&der).as_deref(), Some("O=acme,CN=alice"));
}
