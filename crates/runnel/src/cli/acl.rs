//! `runnel acl create|list|delete`: ACL bindings, as Kafka's `kafka-acls.sh` manages them
//! (CreateAcls, DescribeAcls, DeleteAcls). librdkafka's Rust binding has no ACL API, so
//! they go through [`super::raw`]; they work against Apache Kafka too.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use super::client::ClientArgs;
use super::output::{emit, Table};
use super::raw::{self, error_name};

#[derive(Args)]
pub struct AclCmd {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    cmd: AclSub,
}

#[derive(Subcommand)]
enum AclSub {
    /// Add ACLs: each --allow-principal/--deny-principal gets each --operation on the resource
    Create {
        #[command(flatten)]
        who: Principals,
        /// Operation (repeatable): read, write, create, delete, alter, describe,
        /// alter-configs, describe-configs, idempotent-write, cluster-action, all
        #[arg(long = "operation", required = true)]
        operations: Vec<String>,
        /// The client address the ACLs apply to (an IP address, or * for any)
        #[arg(long, default_value = "*")]
        host: String,
        #[command(flatten)]
        resource: Resource,
    },
    /// List ACLs (all of them, or those the filters name)
    List {
        /// Only this principal's ACLs
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        resource: Resource,
    },
    /// Delete the ACLs the filters name (with no filter at all: refused, use --all)
    Delete {
        #[command(flatten)]
        who: Principals,
        /// Only this operation (repeatable)
        #[arg(long = "operation")]
        operations: Vec<String>,
        /// Only ACLs for this host
        #[arg(long)]
        host: Option<String>,
        #[command(flatten)]
        resource: Resource,
        /// Delete every ACL the other filters name, even with none given
        #[arg(long)]
        all: bool,
    },
}

#[derive(Args)]
struct Principals {
    /// Principal to allow (repeatable), e.g. User:alice
    #[arg(long = "allow-principal")]
    allow: Vec<String>,
    /// Principal to deny (repeatable); a DENY wins over any ALLOW
    #[arg(long = "deny-principal")]
    deny: Vec<String>,
}

#[derive(Args)]
struct Resource {
    /// The topic (with --prefixed: every topic starting with it; * for all topics)
    #[arg(long, group = "resource")]
    topic: Option<String>,
    /// The consumer group (with --prefixed: every group starting with it)
    #[arg(long, group = "resource")]
    group: Option<String>,
    /// The transactional id (with --prefixed: every id starting with it)
    #[arg(long = "transactional-id", group = "resource")]
    transactional_id: Option<String>,
    /// The cluster (CREATE topics, ALTER/DESCRIBE ACLs, IDEMPOTENT_WRITE, configs of the broker)
    #[arg(long, group = "resource")]
    cluster: bool,
    /// The name is a prefix (Kafka's PREFIXED pattern type)
    #[arg(long)]
    prefixed: bool,
}

/// Kafka's wire codes.
const ANY: i8 = 1;
const MATCH: i8 = 2;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const DENY: i8 = 2;
const ALLOW: i8 = 3;
const OPERATIONS: [&str; 13] = [
    "all",
    "read",
    "write",
    "create",
    "delete",
    "alter",
    "describe",
    "cluster-action",
    "describe-configs",
    "alter-configs",
    "idempotent-write",
    "create-tokens",
    "describe-tokens",
];
const RESOURCE_TYPES: [(i8, &str); 4] = [(2, "topic"), (3, "group"), (4, "cluster"), (5, "transactional-id")];

impl Resource {
    /// (resource type, name) or None when no resource is given.
    fn get(&self) -> Option<(i8, String)> {
        match self {
            Resource { topic: Some(t), .. } => Some((2, t.clone())),
            Resource { group: Some(g), .. } => Some((3, g.clone())),
            Resource { transactional_id: Some(t), .. } => Some((5, t.clone())),
            Resource { cluster: true, .. } => Some((4, "kafka-cluster".into())),
            _ => None,
        }
    }

    fn pattern(&self) -> i8 {
        if self.prefixed {
            PREFIXED
        } else {
            LITERAL
        }
    }
}

fn operation_code(name: &str) -> Result<i8> {
    let n = name.to_ascii_lowercase().replace('_', "-");
    match OPERATIONS.iter().position(|o| *o == n) {
        Some(i) => Ok(i as i8 + 2),
        None => bail!("unknown operation '{name}' (one of: {})", OPERATIONS.join(", ")),
    }
}

fn operation_name(code: i8) -> String {
    usize::try_from(code - 2).ok().and_then(|i| OPERATIONS.get(i)).map_or(format!("unknown({code})"), |o| o.to_string())
}

fn resource_type_name(code: i8) -> String {
    RESOURCE_TYPES.iter().find(|(c, _)| *c == code).map_or(format!("unknown({code})"), |(_, n)| n.to_string())
}

fn pattern_name(code: i8) -> &'static str {
    match code {
        LITERAL => "literal",
        PREFIXED => "prefixed",
        _ => "unknown",
    }
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn check_principal(p: &str) -> Result<()> {
    match p.split_once(':') {
        Some((t, n)) if !t.is_empty() && !n.is_empty() => Ok(()),
        _ => bail!("invalid principal '{p}': expected TYPE:NAME, e.g. User:alice"),
    }
}

pub fn run(cmd: AclCmd) -> Result<()> {
    match cmd.cmd {
        AclSub::Create { who, operations, host, resource } => create(&cmd.client, &who, &operations, &host, &resource),
        AclSub::List { principal, resource } => list(&cmd.client, principal, &resource),
        AclSub::Delete { who, operations, host, resource, all } => delete(&cmd.client, &who, &operations, host, &resource, all),
    }
}

/// One ACL as printed.
#[derive(Serialize)]
struct Acl {
    resource_type: String,
    resource_name: String,
    pattern_type: String,
    principal: String,
    host: String,
    operation: String,
    permission: String,
}

fn print(json: bool, acls: &[Acl], empty: &str) -> Result<()> {
    emit(json, &acls, |acls| {
        if acls.is_empty() {
            return format!("{empty}\n");
        }
        let mut t = Table::new(&["RESOURCE", "NAME", "PATTERN", "PRINCIPAL", "HOST", "OPERATION", "PERMISSION"]);
        for a in acls.iter() {
            t.row(vec![
                a.resource_type.clone(),
                a.resource_name.clone(),
                a.pattern_type.clone(),
                a.principal.clone(),
                a.host.clone(),
                a.operation.clone(),
                a.permission.clone(),
            ]);
        }
        t.render()
    })
}

fn create(args: &ClientArgs, who: &Principals, operations: &[String], host: &str, resource: &Resource) -> Result<()> {
    let Some((rtype, name)) = resource.get() else { bail!("name a resource: --topic, --group, --transactional-id or --cluster") };
    if who.allow.is_empty() && who.deny.is_empty() {
        bail!("name at least one --allow-principal or --deny-principal");
    }
    let ops = operations.iter().map(|o| operation_code(o)).collect::<Result<Vec<_>>>()?;
    let mut creations = Vec::new();
    let mut wanted = Vec::new();
    for (principals, permission) in [(&who.allow, ALLOW), (&who.deny, DENY)] {
        for p in principals {
            check_principal(p)?;
            for &op in &ops {
                creations.push(
                    AclCreation::default()
                        .with_resource_type(rtype)
                        .with_resource_name(s(name.clone()))
                        .with_resource_pattern_type(resource.pattern())
                        .with_principal(s(p.clone()))
                        .with_host(s(host))
                        .with_operation(op)
                        .with_permission_type(permission),
                );
                wanted.push(Acl {
                    resource_type: resource_type_name(rtype),
                    resource_name: name.clone(),
                    pattern_type: pattern_name(resource.pattern()).into(),
                    principal: p.clone(),
                    host: host.to_string(),
                    operation: operation_name(op),
                    permission: if permission == ALLOW { "allow" } else { "deny" }.into(),
                });
            }
        }
    }
    let mut conn = raw::bootstrap(args)?;
    let resp = conn.send(CreateAclsRequest::default().with_creations(creations))?;
    for r in &resp.results {
        if r.error_code != 0 {
            let msg = r.error_message.as_ref().map_or(String::new(), |m| format!(": {m}"));
            bail!("could not create ACLs: {}{msg}", error_name(r.error_code));
        }
    }
    if !args.json {
        eprintln!("created {} ACL(s)", wanted.len());
    }
    print(args.json, &wanted, "no ACLs")
}

/// The resource part of a filter: the named resource (literal or prefixed), else any.
fn resource_filter(resource: &Resource) -> (i8, Option<StrBytes>, i8) {
    match resource.get() {
        Some((rtype, name)) => (rtype, Some(s(name)), resource.pattern()),
        None => (ANY, None, ANY),
    }
}

fn list(args: &ClientArgs, principal: Option<String>, resource: &Resource) -> Result<()> {
    let (rtype, name, pattern) = resource_filter(resource);
    // Without --prefixed, a named resource lists every ACL that applies to it (MATCH).
    let pattern = if name.is_some() && !resource.prefixed { MATCH } else { pattern };
    let req = DescribeAclsRequest::default()
        .with_resource_type_filter(rtype)
        .with_resource_name_filter(name)
        .with_pattern_type_filter(pattern)
        .with_principal_filter(principal.map(s))
        .with_host_filter(None)
        .with_operation(ANY)
        .with_permission_type(ANY);
    let mut conn = raw::bootstrap(args)?;
    let resp = conn.send(req)?;
    if resp.error_code != 0 {
        let msg = resp.error_message.as_ref().map_or(String::new(), |m| format!(": {m}"));
        bail!("could not list ACLs: {}{msg}", error_name(resp.error_code));
    }
    let acls: Vec<Acl> = resp
        .resources
        .iter()
        .flat_map(|r| {
            r.acls.iter().map(move |a| Acl {
                resource_type: resource_type_name(r.resource_type),
                resource_name: r.resource_name.to_string(),
                pattern_type: pattern_name(r.pattern_type).into(),
                principal: a.principal.to_string(),
                host: a.host.to_string(),
                operation: operation_name(a.operation),
                permission: if a.permission_type == ALLOW { "allow" } else { "deny" }.into(),
            })
        })
        .collect();
    print(args.json, &acls, "no ACLs")
}

fn delete(args: &ClientArgs, who: &Principals, operations: &[String], host: Option<String>, resource: &Resource, all: bool) -> Result<()> {
    let (rtype, name, pattern) = resource_filter(resource);
    let ops = operations.iter().map(|o| operation_code(o)).collect::<Result<Vec<_>>>()?;
    let narrowed = name.is_some() || !who.allow.is_empty() || !who.deny.is_empty() || !ops.is_empty() || host.is_some();
    if !narrowed && !all {
        bail!("no filter given: this would delete every ACL; name a resource, principal or operation, or pass --all");
    }
    let principals: Vec<(Option<String>, i8)> = if who.allow.is_empty() && who.deny.is_empty() {
        vec![(None, ANY)]
    } else {
        who.allow.iter().map(|p| (Some(p.clone()), ALLOW)).chain(who.deny.iter().map(|p| (Some(p.clone()), DENY))).collect()
    };
    let ops: Vec<i8> = if ops.is_empty() { vec![ANY] } else { ops };
    let mut filters = Vec::new();
    for (p, permission) in &principals {
        for &op in &ops {
            filters.push(
                DeleteAclsFilter::default()
                    .with_resource_type_filter(rtype)
                    .with_resource_name_filter(name.clone())
                    .with_pattern_type_filter(pattern)
                    .with_principal_filter(p.clone().map(s))
                    .with_host_filter(host.clone().map(s))
                    .with_operation(op)
                    .with_permission_type(*permission),
            );
        }
    }
    let mut conn = raw::bootstrap(args)?;
    let resp = conn.send(DeleteAclsRequest::default().with_filters(filters))?;
    let mut deleted = Vec::new();
    for r in &resp.filter_results {
        if r.error_code != 0 {
            let msg = r.error_message.as_ref().map_or(String::new(), |m| format!(": {m}"));
            bail!("could not delete ACLs: {}{msg}", error_name(r.error_code));
        }
        deleted.extend(r.matching_acls.iter().map(|a| Acl {
            resource_type: resource_type_name(a.resource_type),
            resource_name: a.resource_name.to_string(),
            pattern_type: pattern_name(a.pattern_type).into(),
            principal: a.principal.to_string(),
            host: a.host.to_string(),
            operation: operation_name(a.operation),
            permission: if a.permission_type == ALLOW { "allow" } else { "deny" }.into(),
        }));
    }
    if !args.json {
        eprintln!("deleted {} ACL(s)", deleted.len());
    }
    print(args.json, &deleted, "no ACLs matched")
}
