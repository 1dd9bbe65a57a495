//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka runs them (KIP-84):
//! the credential kept for a user (salt, iterations, stored key, server key; never the
//! password), and the server side of one exchange. Messages are bytes from the client:
//! every malformed one is an error, never a panic.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256, Sha512};

/// Kafka's bounds on the iteration count of a SCRAM credential.
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

/// The characters of the server's nonce.
const ALPHANUMERIC: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Longest SCRAM message accepted from a client.
const MAX_MESSAGE: usize = 8192;

/// A SCRAM mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name: `SCRAM-SHA-256`, `SCRAM-SHA-512`.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The wire code of DescribeUserScramCredentials / AlterUserScramCredentials.
    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.code() == code)
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut m = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// `Hi(password, salt, iterations)`: PBKDF2 with HMAC of this hash.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec(),
            ScramMechanism::Sha512 => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec(),
        }
    }
}

/// What is stored for one user and mechanism.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl ScramCredential {
    /// The credential for a salted password (what AlterUserScramCredentials carries).
    pub fn from_salted_password(mech: ScramMechanism, salt: Vec<u8>, salted: &[u8], iterations: i32) -> Self {
        let client_key = mech.hmac(salted, b"Client Key");
        ScramCredential {
            salt,
            stored_key: mech.hash(&client_key),
            server_key: mech.hmac(salted, b"Server Key"),
            iterations,
        }
    }

    /// A credential for `password` with a fresh random salt.
    pub fn from_password(mech: ScramMechanism, password: &[u8], iterations: i32) -> Self {
        let salt = random_bytes(32);
        let salted = mech.salted_password(password, &salt, iterations.max(1) as u32);
        Self::from_salted_password(mech, salt, &salted, iterations)
    }

    /// Whether `password` is the one this credential was made from (SASL/PLAIN).
    /// Costs one PBKDF2: call it off the async workers.
    pub fn matches_password(&self, mech: ScramMechanism, password: &[u8]) -> bool {
        let salted = mech.salted_password(password, &self.salt, self.iterations.max(1) as u32);
        let stored = mech.hash(&mech.hmac(&salted, b"Client Key"));
        constant_time_eq(&stored, &self.stored_key)
    }
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut b);
    b
}

use super::constant_time_eq;

/// Why an exchange failed. The client is told only that authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("unknown user or wrong password")]
    InvalidCredentials,
    #[error("unsupported SCRAM feature: {0}")]
    Unsupported(&'static str),
}

/// The server side of one SCRAM exchange: client-first → server-first, client-final →
/// server-final.
pub struct ScramServer {
    mech: ScramMechanism,
    state: State,
}

enum State {
    First,
    Final {
        user: String,
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        client_nonce: String,
        nonce: String,
        cred: ScramCredential,
    },
    Done,
}

impl ScramServer {
    pub fn new(mech: ScramMechanism) -> Self {
        ScramServer { mech, state: State::First }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mech
    }

    /// The user named by the client-first message (after [`Self::client_first`] succeeded).
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            State::Final { user, .. } => Some(user),
            _ => None,
        }
    }

    /// Handles client-first; `lookup` finds the user's credential. Returns server-first.
    pub fn client_first(
        &mut self,
        msg: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::First) {
            return Err(ScramError::Malformed("client-first message out of order"));
        }
        self.state = State::Done;
        let msg = text(msg)?;
        // gs2-header: cbind-flag "," [authzid] ","
        let (flag, rest) = msg.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::Unsupported("channel binding")),
            _ => return Err(ScramError::Malformed("bad channel-binding flag")),
        }
        let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
        let authzid = match authzid {
            "" => None,
            a => Some(sasl_name(a.strip_prefix("a=").ok_or(ScramError::Malformed("bad authzid"))?)?),
        };
        let gs2_header = format!("{flag},{authzid_raw},", authzid_raw = rest.split_once(',').map_or("", |(a, _)| a));
        let mut attrs = bare.split(',');
        let user = attrs
            .next()
            .and_then(|a| a.strip_prefix("n="))
            .ok_or(ScramError::Malformed("client-first lacks n=username"))?;
        let user = sasl_name(user)?;
        let cnonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .filter(|n| valid_nonce(n))
            .ok_or(ScramError::Malformed("client-first lacks r=nonce"))?;
        for ext in attrs {
            let (k, v) = ext.split_once('=').ok_or(ScramError::Malformed("bad extension"))?;
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(ScramError::Malformed("bad extension name"));
            }
            if k == "m" {
                return Err(ScramError::Unsupported("mandatory extension"));
            }
            if k == "tokenauth" && v.eq_ignore_ascii_case("true") {
                return Err(ScramError::Unsupported("delegation tokens"));
            }
        }
        if user.is_empty() {
            return Err(ScramError::Malformed("empty username"));
        }
        if authzid.as_ref().is_some_and(|a| *a != user) {
            return Err(ScramError::InvalidCredentials);
        }
        let cred = lookup(&user).ok_or(ScramError::InvalidCredentials)?;
        // Alphanumeric, as Kafka's (some clients mishandle `+` and `/` in the nonce).
        let server_nonce: String = random_bytes(32).iter().map(|b| ALPHANUMERIC[usize::from(*b) % ALPHANUMERIC.len()] as char).collect();
        let nonce = format!("{cnonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={}", B64.encode(&cred.salt), cred.iterations);
        let out = server_first.clone().into_bytes();
        let client_nonce = cnonce.to_string();
        self.state = State::Final { user, gs2_header, client_first_bare: bare.to_string(), server_first, client_nonce, nonce, cred };
        Ok(out)
    }

    /// Handles client-final; returns server-final and the authenticated user.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<(Vec<u8>, String), ScramError> {
        let State::Final { user, gs2_header, client_first_bare, server_first, client_nonce, nonce, cred } =
            std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramError::Malformed("client-final message out of order"));
        };
        let msg = text(msg)?;
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(ScramError::Malformed("client-final lacks p=proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("client-final lacks c=binding"))?;
        let binding = B64.decode(binding).map_err(|_| ScramError::Malformed("c= is not base64"))?;
        if binding != gs2_header.as_bytes() {
            return Err(ScramError::Malformed("channel binding does not match the GS2 header"));
        }
        let r = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("client-final lacks r=nonce"))?;
        // librdkafka before 2.6.1 sends the client nonce twice (its nonce, then the whole
        // server nonce, confluentinc/librdkafka#4895); Kafka 3.8.1–3.9 accepted that, and
        // so do we, since it still proves the client saw this exchange's server nonce.
        let old_librdkafka = r.len() == client_nonce.len() + nonce.len() && r.starts_with(&client_nonce) && r.ends_with(&nonce);
        if r != nonce && !old_librdkafka {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed("p= is not base64"))?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = self.mech.hmac(&cred.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::InvalidCredentials);
        }
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(a, b)| a ^ b).collect();
        if !constant_time_eq(&self.mech.hash(&client_key), &cred.stored_key) {
            return Err(ScramError::InvalidCredentials);
        }
        let server_signature = self.mech.hmac(&cred.server_key, auth_message.as_bytes());
        Ok((format!("v={}", B64.encode(server_signature)).into_bytes(), user))
    }
}

fn text(msg: &[u8]) -> Result<&str, ScramError> {
    if msg.len() > MAX_MESSAGE {
        return Err(ScramError::Malformed("message too long"));
    }
    std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))
}

/// A printable nonce without commas (RFC 5802 `printable`).
fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Decodes a `saslname`: `=2C` is `,`, `=3D` is `=`; any other `=` is malformed.
fn sasl_name(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in a name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Encodes a name as a `saslname` (the client side, for tests and tools).
pub fn escape_name(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// The client side of one exchange, for the CLI's tests and the broker's own tests.
pub mod client {
    use super::*;

    /// client-first with a fresh nonce: returns (message, client-first-bare).
    pub fn first(user: &str) -> (String, String) {
        let bare = format!("n={},r={}", escape_name(user), B64.encode(random_bytes(18)));
        (format!("n,,{bare}"), bare)
    }

    /// client-final for `server_first`; returns (message, expected server signature).
    pub fn last(
        mech: ScramMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> Option<(String, Vec<u8>)> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for a in server_first.split(',') {
            match a.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = B64.decode(v).ok(),
                Some(("i", v)) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (nonce, salt, iterations) = (nonce?, salt?, iterations?);
        let salted = mech.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = mech.hmac(&salted, b"Client Key");
        let stored_key = mech.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = mech.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let server_key = mech.hmac(&salted, b"Server Key");
        Some((format!("{without_proof},p={}", B64.encode(proof)), mech.hmac(&server_key, auth_message.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(mech: ScramMechanism, stored_pw: &str, given_pw: &str) -> Result<String, ScramError> {
        let cred = ScramCredential::from_password(mech, stored_pw.as_bytes(), 4096);
        let mut server = ScramServer::new(mech);
        let (first, bare) = client::first("ali,ce");
        let server_first = server.client_first(first.as_bytes(), |u| (u == "ali,ce").then(|| cred.clone()))?;
        let server_first = String::from_utf8(server_first).unwrap();
        let (last, expected) = client::last(mech, given_pw, &bare, &server_first).unwrap();
        let (server_final, user) = server.client_final(last.as_bytes())?;
        assert_eq!(server_final, format!("v={}", B64.encode(expected)).into_bytes());
        Ok(user)
    }

    #[test]
    fn a_full_exchange_authenticates_the_right_password_only() {
        for mech in ScramMechanism::ALL {
            assert_eq!(exchange(mech, "s3cret", "s3cret").unwrap(), "ali,ce");
            assert_eq!(exchange(mech, "s3cret", "wrong"), Err(ScramError::InvalidCredentials));
        }
    }

    #[test]
    fn rfc7677_test_vector() {
        // RFC 7677 section 3: user "user", password "pencil".
        let mech = ScramMechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = mech.salted_password(b"pencil", &salt, 4096);
        let cred = ScramCredential::from_salted_password(mech, salt, &salted, 4096);
        let bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let (last, sig) = client::last(mech, "pencil", bare, server_first).unwrap();
        assert_eq!(last, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        assert_eq!(B64.encode(sig), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert!(cred.matches_password(mech, b"pencil"));
        assert!(!cred.matches_password(mech, b"pencil2"));
    }

    #[test]
    fn malformed_messages_are_refused() {
        let cred = ScramCredential::from_password(ScramMechanism::Sha256, b"pw", 4096);
        for bad in [
            &b""[..], b"n", b"n,", b"x,,n=u,r=abc", b"p=tls-unique,,n=u,r=abc", b"n,,r=abc", b"n,,n=u", b"n,,n=u,r=",
            b"n,,n=u=,r=abc", b"n,,n=u=zz,r=abc", b"n,,n=u,r=a,m=x", b"n,,n=u,r=a,tokenauth=true", b"n,a=v,n=u,r=a",
            b"n,,n=,r=a", b"\xff\xfe", b"n,,n=nobody,r=abc", b"n,,n=u,r=abc,=",
        ] {
            let mut s = ScramServer::new(ScramMechanism::Sha256);
            assert!(s.client_first(bad, |u| (u == "u").then(|| cred.clone())).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut s = ScramServer::new(ScramMechanism::Sha256);
        s.client_first(b"n,,n=u,r=abc", |_| Some(cred.clone())).unwrap();
        assert!(s.client_final(b"c=biws,r=abc,p=AAAA").is_err());
        let mut s = ScramServer::new(ScramMechanism::Sha256);
        s.client_first(b"n,,n=u,r=abc", |_| Some(cred.clone())).unwrap();
        assert_eq!(s.client_final(b"c=biws,r=abcabc,p=AAAA"), Err(ScramError::Malformed("nonce does not match")));
        // Out of order.
        assert!(s.client_final(b"c=biws,r=abc,p=AAAA").is_err());
        assert!(s.client_first(b"n,,n=u,r=abc", |_| Some(cred.clone())).is_err());
    }
}
