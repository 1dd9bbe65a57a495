//! The authorizer: decides, from the ACLs of the metadata image, whether a principal from
//! a host may do an operation on a resource, with the rules of Kafka's StandardAuthorizer.
//! It is on when `authorizer.class.name` is set; off, everything is allowed.
//!
//! The rules: a `super.users` principal may do anything. Otherwise the bindings that
//! cover the resource (literal name, the literal `*`, prefixes of the name) and match the
//! principal (or `User:*`) and the host (or `*`) are looked at: any DENY for the
//! operation (or ALL) denies; else any ALLOW for the operation, ALL, or an operation that
//! implies it (READ, WRITE, DELETE, ALTER imply DESCRIBE; ALTER_CONFIGS implies
//! DESCRIBE_CONFIGS) allows; else, if no binding at all covers the resource,
//! `allow.everyone.if.no.acl.found` decides; else it is denied.
//!
//! It never reads or writes bindings itself: they are metadata records, applied to the
//! image by the metadata log; the broker hands it the current bindings.

use std::collections::HashSet;
use std::net::IpAddr;

use runnel_metadata::acl::{AclBinding, AclOperation, Permission, ResourceType, WILDCARD};

use crate::config::ConfigError;
use crate::BrokerConfig;

/// Kafka's authorizer class names, accepted as they are so Kafka config files carry over.
pub const KAFKA_AUTHORIZERS: &[&str] = &[
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

/// The one authorizer Runnel has, by its own name.
pub const RUNNEL_AUTHORIZER: &str = "runnel";

/// The wildcard principal of ACLs.
const WILDCARD_PRINCIPAL: &str = "User:*";

/// What the broker config says about authorization.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    enabled: bool,
    super_users: HashSet<String>,
    allow_if_no_acl: bool,
}

/// Who asks: the principal (`User:alice`) and the client's address.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: IpAddr,
}

impl Authorizer {
    pub fn from_config(config: &BrokerConfig) -> Result<Self, ConfigError> {
        let class = config.setting_value("authorizer.class.name");
        let enabled = match class.trim() {
            "" => false,
            c if c == RUNNEL_AUTHORIZER || KAFKA_AUTHORIZERS.contains(&c) => true,
            other => {
                return Err(ConfigError(format!(
                    "authorizer.class.name={other}: unknown authorizer (use {} or leave it empty for none)",
                    KAFKA_AUTHORIZERS[0]
                )))
            }
        };
        let super_users = parse_super_users(config.setting_value("super.users"))?;
        let allow_if_no_acl = config.setting_value("allow.everyone.if.no.acl.found") == "true";
        Ok(Self { enabled, super_users, allow_if_no_acl })
    }

    /// Whether ACLs are checked at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn is_super_user(&self, principal: &str) -> bool {
        self.super_users.contains(principal)
    }

    /// May `who` do `op` on the resource `(rtype, name)`?
    pub fn authorize(&self, acls: &[AclBinding], who: Requester, op: AclOperation, rtype: ResourceType, name: &str) -> bool {
        if !self.enabled || self.is_super_user(who.principal) {
            return true;
        }
        let host = who.host.to_string();
        let (mut covered, mut allowed) = (false, false);
        for acl in acls.iter().filter(|a| a.resource_type == rtype && a.covers(name)) {
            covered = true;
            if acl.principal != who.principal && acl.principal != WILDCARD_PRINCIPAL {
                continue;
            }
            if acl.host != WILDCARD && acl.host != host {
                continue;
            }
            match acl.permission {
                Permission::Deny if acl.operation == op || acl.operation == AclOperation::All => return false,
                Permission::Allow if acl.operation.allows(op) => allowed = true,
                _ => {}
            }
        }
        allowed || (!covered && self.allow_if_no_acl)
    }

    /// May `who` do `op` on at least one resource of `rtype` (Kafka's
    /// `authorizeByResourceType`, KIP-679): some ALLOW binding for it that no DENY
    /// binding shadows (a DENY of the wildcard, of the same literal name, or of a prefix
    /// of the allowed name).
    pub fn authorize_any(&self, acls: &[AclBinding], who: Requester, op: AclOperation, rtype: ResourceType) -> bool {
        if !self.enabled || self.is_super_user(who.principal) {
            return true;
        }
        let host = who.host.to_string();
        let mine: Vec<_> = acls
            .iter()
            .filter(|a| a.resource_type == rtype)
            .filter(|a| a.principal == who.principal || a.principal == WILDCARD_PRINCIPAL)
            .filter(|a| a.host == WILDCARD || a.host == host)
            .filter(|a| a.operation == op || a.operation == AclOperation::All)
            .collect();
        let denies: Vec<_> = mine.iter().filter(|a| a.permission == Permission::Deny).collect();
        if denies.iter().any(|d| d.pattern_type == runnel_metadata::acl::PatternType::Literal && d.resource_name == WILDCARD) {
            return false;
        }
        let allows = mine.iter().filter(|a| a.permission == Permission::Allow);
        let mut any = false;
        for a in allows {
            if a.pattern_type == runnel_metadata::acl::PatternType::Literal && a.resource_name == WILDCARD {
                return true;
            }
            let shadowed = denies.iter().any(|d| match d.pattern_type {
                runnel_metadata::acl::PatternType::Prefixed => a.resource_name.starts_with(&d.resource_name),
                runnel_metadata::acl::PatternType::Literal => {
                    a.pattern_type == runnel_metadata::acl::PatternType::Literal && d.resource_name == a.resource_name
                }
            });
            any |= !shadowed;
        }
        any || (self.allow_if_no_acl && !acls.iter().any(|a| a.resource_type == rtype))
    }
}

/// Parses `super.users`: principals separated by `;` (Kafka's format), each `TYPE:NAME`.
fn parse_super_users(value: &str) -> Result<HashSet<String>, ConfigError> {
    value
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|p| match p.split_once(':') {
            Some((t, n)) if !t.is_empty() && !n.is_empty() => Ok(p.to_string()),
            _ => Err(ConfigError(format!("super.users: '{p}' is not a principal TYPE:NAME (e.g. User:admin; separate them with ';')"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_metadata::acl::PatternType;

    fn acl(name: &str, pattern_type: PatternType, principal: &str, op: AclOperation, permission: Permission) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission,
        }
    }

    fn authorizer(settings: &[(&str, &str)]) -> Authorizer {
        let mut c = BrokerConfig::default();
        c.settings.insert("authorizer.class.name".into(), KAFKA_AUTHORIZERS[0].into());
        for (k, v) in settings {
            c.settings.insert(k.to_string(), v.to_string());
        }
        Authorizer::from_config(&c).unwrap()
    }

    #[test]
    fn decisions_follow_kafkas_rules() {
        let acls = &[
                acl("orders", PatternType::Literal, "User:alice", AclOperation::Read, Permission::Allow),
                acl("pay-", PatternType::Prefixed, "User:alice", AclOperation::Write, Permission::Allow),
                acl("pay-secret", PatternType::Literal, "User:alice", AclOperation::Write, Permission::Deny),
                acl("*", PatternType::Literal, "User:*", AclOperation::Describe, Permission::Allow),
                acl("logs", PatternType::Literal, "User:bob", AclOperation::All, Permission::Allow),
            ];
        let a = authorizer(&[("super.users", "User:admin;User:root")]);
        let host: IpAddr = "127.0.0.1".parse().unwrap();
        let alice = Requester { principal: "User:alice", host };
        let bob = Requester { principal: "User:bob", host };
        let t = ResourceType::Topic;
        assert!(a.authorize(acls, alice, AclOperation::Read, t, "orders"));
        assert!(!a.authorize(acls, alice, AclOperation::Write, t, "orders"));
        assert!(a.authorize(acls, alice, AclOperation::Write, t, "pay-1"));
        assert!(a.authorize(acls, alice, AclOperation::Describe, t, "pay-1"));
        assert!(!a.authorize(acls, alice, AclOperation::Write, t, "pay-secret"), "deny beats allow");
        assert!(a.authorize(acls, bob, AclOperation::Describe, t, "anything"), "User:* on *");
        assert!(!a.authorize(acls, bob, AclOperation::Read, t, "orders"));
        assert!(a.authorize(acls, bob, AclOperation::Delete, t, "logs"), "ALL");
        assert!(!a.authorize(acls, bob, AclOperation::Read, ResourceType::Group, "g"), "no ACL: denied by default");
        let root = Requester { principal: "User:root", host };
        assert!(a.authorize(acls, root, AclOperation::Alter, ResourceType::Cluster, "kafka-cluster"));
        let open = authorizer(&[("allow.everyone.if.no.acl.found", "true")]);
        assert!(open.authorize(acls, bob, AclOperation::Read, ResourceType::Group, "g"));
        assert!(!open.authorize(acls, bob, AclOperation::Read, t, "orders"), "the resource has ACLs");
        assert!(a.authorize_any(acls, alice, AclOperation::Write, t));
        assert!(!a.authorize_any(acls, bob, AclOperation::Read, ResourceType::Group));
        let mut c = BrokerConfig::default();
        assert!(Authorizer::from_config(&c).unwrap().authorize(acls, bob, AclOperation::Read, t, "orders"), "off");
        c.settings.insert("authorizer.class.name".into(), "com.example.Mine".into());
        assert!(Authorizer::from_config(&c).is_err());
    }
}
