//! Test certificates made with rcgen: a CA, a server certificate for 127.0.0.1 and
//! localhost (its key and chain in one PEM, as `ssl.keystore.location` wants), a client
//! certificate (CN=alice,O=acme) signed by the CA, and one signed by another CA. Also
//! used by `examples/test_certs.rs`, which writes them for the Python suite.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

pub struct Certs {
    pub dir: PathBuf,
    /// CA certificate (the truststore).
    pub ca: PathBuf,
    /// Server key + certificate + CA (the keystore).
    pub keystore: PathBuf,
    /// Client certificate (CN=alice,O=acme) and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate and key from a CA the broker does not trust.
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    Ca { cert: p.self_signed(&key).unwrap(), key }
}

fn leaf(ca: &Ca, sans: &[&str], cn: &str, org: Option<&str>) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    if let Some(o) = org {
        p.distinguished_name.push(DnType::OrganizationName, o);
    }
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Writes a fresh set of certificates into `dir`.
pub fn make(dir: &Path) -> Certs {
    std::fs::create_dir_all(dir).unwrap();
    let ca1 = ca("Runnel test CA");
    let (server_cert, server_key) = leaf(&ca1, &["127.0.0.1", "localhost"], "localhost", None);
    let (client_cert, client_key) = leaf(&ca1, &[], "alice", Some("acme"));
    let rogue_ca = ca("Rogue CA");
    let (rogue_cert, rogue_key) = leaf(&rogue_ca, &[], "mallory", None);
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Certs {
        dir: dir.to_path_buf(),
        ca: write("ca.pem", &ca1.cert.pem()),
        keystore: write("server.pem", &format!("{server_key}{server_cert}{}", ca1.cert.pem())),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
        rogue_cert: write("rogue.pem", &rogue_cert),
        rogue_key: write("rogue.key", &rogue_key),
    }
}

/// Replaces the server certificate in `certs.keystore` with a new one from the same CA
/// whose CN is `cn` (a renewal).
pub fn renew_server(certs: &Certs, cn: &str) {
    // The CA key is not kept; a renewal signed by a new CA would fail verification, so
    // renewals in tests are checked by the new certificate's CN with the CA re-trusted.
    let ca1 = ca("Runnel test CA (renewed)");
    let (server_cert, server_key) = leaf(&ca1, &["127.0.0.1", "localhost"], cn, None);
    std::fs::write(&certs.ca, ca1.cert.pem()).unwrap();
    let tmp = certs.keystore.with_extension("tmp");
    std::fs::write(&tmp, format!("{server_key}{server_cert}{}", ca1.cert.pem())).unwrap();
    std::fs::rename(&tmp, &certs.keystore).unwrap();
}
