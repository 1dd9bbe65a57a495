//! Access control lists with Kafka's model: a binding allows or denies one principal,
//! from one host, one operation on the resources a pattern names. Bindings are metadata
//! (created and deleted by records, shared by the cluster); deciding what a request may
//! do is the broker's authorizer's business, not this module's.
//!
//! Every enum carries Kafka's wire codes (`code`, `from_code`), so the CreateAcls,
//! DescribeAcls and DeleteAcls handlers and the records agree on one meaning.

use serde::{Deserialize, Serialize};

/// What a binding protects (Kafka's ResourceType; wire codes 2–5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

impl ResourceType {
    /// The operations that mean something on this kind of resource (Kafka 4's
    /// `AclEntry.supportedOperations`, checked by the differential test): what an
    /// `authorized_operations` field can list.
    pub fn supported_operations(self) -> &'static [AclOperation] {
        use AclOperation::*;
        match self {
            ResourceType::Topic => &[Read, Write, Create, Describe, Delete, Alter, DescribeConfigs, AlterConfigs],
            // Kafka 4 adds group configs (KIP-848), so their operations too.
            ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[Create, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, Alter, Describe],
            ResourceType::TransactionalId => &[Describe, Write],
        }
    }
}

/// The one name a CLUSTER resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// A literal resource name or principal that matches every one.
pub const WILDCARD: &str = "*";

impl ResourceType {
    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            2 => ResourceType::Topic,
            3 => ResourceType::Group,
            4 => ResourceType::Cluster,
            5 => ResourceType::TransactionalId,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Topic => "TOPIC",
            ResourceType::Group => "GROUP",
            ResourceType::Cluster => "CLUSTER",
            ResourceType::TransactionalId => "TRANSACTIONAL_ID",
        }
    }
}

/// How a binding's resource name matches (Kafka's PatternType; wire codes 3, 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternType {
    /// The name exactly, or every name when it is `*`.
    Literal,
    /// Every name that starts with it.
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            3 => Some(PatternType::Literal),
            4 => Some(PatternType::Prefixed),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PatternType::Literal => "LITERAL",
            PatternType::Prefixed => "PREFIXED",
        }
    }
}

/// What a binding allows or denies (Kafka's AclOperation; wire codes 2–14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclOperation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    CreateTokens,
    DescribeTokens,
}

impl AclOperation {
    pub const ALL: [AclOperation; 13] = [
        AclOperation::All,
        AclOperation::Read,
        AclOperation::Write,
        AclOperation::Create,
        AclOperation::Delete,
        AclOperation::Alter,
        AclOperation::Describe,
        AclOperation::ClusterAction,
        AclOperation::DescribeConfigs,
        AclOperation::AlterConfigs,
        AclOperation::IdempotentWrite,
        AclOperation::CreateTokens,
        AclOperation::DescribeTokens,
    ];

    pub fn code(self) -> i8 {
        AclOperation::ALL.iter().position(|o| *o == self).expect("every operation is listed") as i8 + 2
    }

    pub fn from_code(code: i8) -> Option<Self> {
        usize::try_from(code - 2).ok().and_then(|i| AclOperation::ALL.get(i)).copied()
    }

    /// Kafka's name: `READ`, `ALTER_CONFIGS` …
    pub fn name(self) -> &'static str {
        match self {
            AclOperation::All => "ALL",
            AclOperation::Read => "READ",
            AclOperation::Write => "WRITE",
            AclOperation::Create => "CREATE",
            AclOperation::Delete => "DELETE",
            AclOperation::Alter => "ALTER",
            AclOperation::Describe => "DESCRIBE",
            AclOperation::ClusterAction => "CLUSTER_ACTION",
            AclOperation::DescribeConfigs => "DESCRIBE_CONFIGS",
            AclOperation::AlterConfigs => "ALTER_CONFIGS",
            AclOperation::IdempotentWrite => "IDEMPOTENT_WRITE",
            AclOperation::CreateTokens => "CREATE_TOKENS",
            AclOperation::DescribeTokens => "DESCRIBE_TOKENS",
        }
    }

    /// Parses Kafka's name, case-insensitive, `-` or `_` between words.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.to_ascii_uppercase().replace('-', "_");
        AclOperation::ALL.iter().copied().find(|o| o.name() == s)
    }

    /// Whether an ALLOW binding for `self` also allows `wanted` (Kafka: ALL allows
    /// everything; READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies
    /// DESCRIBE_CONFIGS). A DENY binding denies only its own operation (or all, for ALL).
    pub fn allows(self, wanted: AclOperation) -> bool {
        use AclOperation::*;
        self == All
            || self == wanted
            || (wanted == Describe && matches!(self, Read | Write | Delete | Alter))
            || (wanted == DescribeConfigs && self == AlterConfigs)
    }
}

/// Allow or deny (Kafka's AclPermissionType; wire codes 2, 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Deny,
    Allow,
}

impl Permission {
    pub fn code(self) -> i8 {
        match self {
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            2 => Some(Permission::Deny),
            3 => Some(Permission::Allow),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Permission::Deny => "DENY",
            Permission::Allow => "ALLOW",
        }
    }
}

/// One ACL: `permission` for `principal` (`User:alice`, or `User:*`) from `host` (an IP
/// address, or `*`) to do `operation` on the resources of `resource_type` that
/// `resource_name` matches under `pattern_type`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: AclOperation,
    pub permission: Permission,
}

impl AclBinding {
    /// Whether this binding's pattern covers the resource `name` (of its type).
    pub fn covers(&self, name: &str) -> bool {
        match self.pattern_type {
            PatternType::Literal => self.resource_name == name || self.resource_name == WILDCARD,
            PatternType::Prefixed => name.starts_with(&self.resource_name),
        }
    }
}

/// Which bindings a DescribeAcls or DeleteAcls names (Kafka's AclBindingFilter): `None`
/// fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<AclOperation>,
    pub permission: Option<Permission>,
}

/// The pattern part of a filter (Kafka's PatternType as a filter: ANY=1, MATCH=2,
/// LITERAL=3, PREFIXED=4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PatternFilter {
    /// Bindings of either pattern type whose name is exactly the filter's name.
    #[default]
    Any,
    /// Bindings that would apply to a resource with the filter's name: literal equal,
    /// the wildcard, or prefixed bindings whose prefix it starts with.
    Match,
    Exactly(PatternType),
}

impl PatternFilter {
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(PatternFilter::Any),
            2 => Some(PatternFilter::Match),
            c => PatternType::from_code(c).map(PatternFilter::Exactly),
        }
    }
}

impl AclFilter {
    /// Whether `b` is one of the bindings this filter names.
    pub fn matches(&self, b: &AclBinding) -> bool {
        let same = |want: &Option<String>, got: &str| want.as_deref().is_none_or(|w| w == got);
        if self.resource_type.is_some_and(|t| t != b.resource_type) {
            return false;
        }
        let name_ok = match (self.pattern, &self.resource_name) {
            (PatternFilter::Exactly(p), _) if p != b.pattern_type => false,
            (_, None) => true,
            (PatternFilter::Match, Some(name)) => b.covers(name),
            (_, Some(name)) => *name == b.resource_name,
        };
        name_ok
            && same(&self.principal, &b.principal)
            && same(&self.host, &b.host)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.permission.is_none_or(|p| p == b.permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(name: &str, pattern_type: PatternType) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: AclOperation::Read,
            permission: Permission::Allow,
        }
    }

    #[test]
    fn codes_round_trip_and_implications_follow_kafka() {
        for op in AclOperation::ALL {
            assert_eq!(AclOperation::from_code(op.code()), Some(op));
            assert_eq!(AclOperation::parse(op.name()), Some(op));
        }
        assert_eq!(AclOperation::Read.code(), 3);
        assert_eq!(AclOperation::IdempotentWrite.code(), 12);
        assert_eq!(AclOperation::from_code(1), None);
        assert!(AclOperation::Write.allows(AclOperation::Describe));
        assert!(AclOperation::AlterConfigs.allows(AclOperation::DescribeConfigs));
        assert!(!AclOperation::Describe.allows(AclOperation::Read));
        assert!(!AclOperation::Create.allows(AclOperation::Describe));
        assert!(AclOperation::All.allows(AclOperation::ClusterAction));
    }

    #[test]
    fn filters_match_as_kafka_does() {
        let prefixed = acl("ord", PatternType::Prefixed);
        let literal = acl("orders", PatternType::Literal);
        let wildcard = acl("*", PatternType::Literal);
        let named = |pattern, name: &str| AclFilter { resource_name: Some(name.into()), pattern, ..Default::default() };
        let m = named(PatternFilter::Match, "orders");
        assert!(m.matches(&prefixed) && m.matches(&literal) && m.matches(&wildcard));
        assert!(!named(PatternFilter::Match, "or").matches(&prefixed));
        let any = named(PatternFilter::Any, "orders");
        assert!(any.matches(&literal) && !any.matches(&prefixed) && !any.matches(&wildcard));
        let exact = named(PatternFilter::Exactly(PatternType::Prefixed), "ord");
        assert!(exact.matches(&prefixed) && !exact.matches(&literal));
        let by_principal = AclFilter { principal: Some("User:bob".into()), ..Default::default() };
        assert!(!by_principal.matches(&literal));
        assert!(AclFilter::default().matches(&literal));
    }
}
