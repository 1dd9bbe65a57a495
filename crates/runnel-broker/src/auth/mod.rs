//! Who is on the other end of a connection: the principal a listener authenticated (or
//! `User:ANONYMOUS`), the listener it came through, and that listener's security
//! protocol. Authentication (SASL, TLS client certificates) produces a [`Session`];
//! authorization reads it. Nothing here touches sockets.

mod credentials;
pub mod oauthbearer;
mod principal;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

pub use principal::{KafkaPrincipal, PrincipalError};

/// A listener's security protocol, with Kafka's names (`listener.security.protocol.map`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Parses Kafka's name (case-insensitive, as Kafka does).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    /// Whether the listener runs TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether clients must authenticate with SASL before anything else is served.
    pub fn is_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

impl std::fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a handler may know about who sent its request. One per request; the principal
/// is the one authenticated on the connection when the request was read.
#[derive(Clone, Debug)]
pub struct Session {
    /// The authenticated principal; `User:ANONYMOUS` on PLAINTEXT listeners and on SSL
    /// listeners without a client certificate.
    pub principal: KafkaPrincipal,
    /// The listener's name (`PLAINTEXT`, `SASL_SSL`, or a custom name).
    pub listener: Arc<str>,
    /// The listener's security protocol.
    pub protocol: SecurityProtocol,
    /// The client's address (for ACL host matching and logs).
    pub peer: SocketAddr,
}

impl Session {
    /// An anonymous client on a plaintext listener named `PLAINTEXT`.
    pub fn anonymous(peer: SocketAddr) -> Self {
        Session {
            principal: KafkaPrincipal::anonymous(),
            listener: Arc::from("PLAINTEXT"),
            protocol: SecurityProtocol::Plaintext,
            peer,
        }
    }
}

/// Compares secrets in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
