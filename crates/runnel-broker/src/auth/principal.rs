//! Kafka's principal: `TYPE:NAME`, almost always `User:NAME` (`User:alice`,
//! `User:CN=client,O=acme` from a certificate, `User:ANONYMOUS` when nobody
//! authenticated). The form ACLs, `super.users` and quotas are written in.

use std::fmt;
use std::str::FromStr;

/// A principal: its type (`User`) and name. Compared exactly, case-sensitive, as Kafka does.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KafkaPrincipal {
    pub principal_type: String,
    pub name: String,
}

/// The type of every principal Kafka's authenticators produce.
pub const USER_TYPE: &str = "User";

/// The name of the principal of an unauthenticated client.
pub const ANONYMOUS: &str = "ANONYMOUS";

/// A principal string that is not `TYPE:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid principal '{0}': expected TYPE:NAME, e.g. User:alice")]
pub struct PrincipalError(pub String);

impl KafkaPrincipal {
    /// `User:NAME`.
    pub fn user(name: impl Into<String>) -> Self {
        KafkaPrincipal { principal_type: USER_TYPE.to_string(), name: name.into() }
    }

    /// `User:ANONYMOUS`, the principal of a client that did not authenticate.
    pub fn anonymous() -> Self {
        Self::user(ANONYMOUS)
    }

    pub fn is_anonymous(&self) -> bool {
        self.principal_type == USER_TYPE && self.name == ANONYMOUS
    }

    /// Parses `TYPE:NAME`; the name may itself hold colons (`User:CN=a:b`), the type not.
    /// Both parts must be non-empty.
    pub fn parse(s: &str) -> Result<Self, PrincipalError> {
        match s.split_once(':') {
            Some((t, n)) if !t.is_empty() && !n.is_empty() && !t.trim().is_empty() => {
                Ok(KafkaPrincipal { principal_type: t.to_string(), name: n.to_string() })
            }
            _ => Err(PrincipalError(s.to_string())),
        }
    }
}

impl Default for KafkaPrincipal {
    fn default() -> Self {
        Self::anonymous()
    }
}

impl fmt::Display for KafkaPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

impl FromStr for KafkaPrincipal {
    type Err = PrincipalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_kafka_principals() {
        let p: KafkaPrincipal = "User:alice".parse().unwrap();
        assert_eq!(p, KafkaPrincipal::user("alice"));
        assert_eq!(p.to_string(), "User:alice");
        let cert = KafkaPrincipal::parse("User:CN=client,O=acme:x").unwrap();
        assert_eq!(cert.name, "CN=client,O=acme:x");
        assert_eq!(KafkaPrincipal::default().to_string(), "User:ANONYMOUS");
        assert!(KafkaPrincipal::default().is_anonymous());
        assert!(!p.is_anonymous());
        for bad in ["", "alice", ":alice", "User:", " :x"] {
            assert!(KafkaPrincipal::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
