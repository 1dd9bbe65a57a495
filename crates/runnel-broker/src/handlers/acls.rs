//! CreateAcls (key 30), DescribeAcls (key 29) and DeleteAcls (key 31), v1–v3: ACL
//! bindings kept in the metadata log (records applied to the image, so every broker of a
//! cluster has them). As in Kafka: without an authorizer (`authorizer.class.name` unset)
//! each answers SECURITY_DISABLED; creating and deleting need ALTER on the cluster,
//! describing DESCRIBE on the cluster (else CLUSTER_AUTHORIZATION_FAILED). A binding is
//! checked before anything is written (INVALID_REQUEST: an ANY or unknown type, pattern,
//! operation or permission, an empty name, a cluster resource not named `kafka-cluster`,
//! a principal that is not `TYPE:NAME`); the valid ones of a request are written as one
//! record. DeleteAcls resolves its filters against the image (MATCH and ANY included) and
//! removes what they name with one record.

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use runnel_metadata::acl::{
    AclBinding, AclFilter, AclOperation, PatternFilter, PatternType, Permission, ResourceType, CLUSTER_NAME,
};
use runnel_metadata::MetadataRecord;

use super::{blocking, sb, Ctx};
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 3;

/// Most bindings one CreateAcls or DeleteAcls may change (Kafka's per-operation bound).
const MAX_BINDINGS: usize = 10_000;

/// Why a request was refused before anything was looked at.
fn gate(ctx: &Ctx, op: AclOperation) -> Option<(KafkaError, &'static str)> {
    if !ctx.broker.authorizer().enabled() {
        return Some((KafkaError::SecurityDisabled, "no authorizer is configured (set authorizer.class.name)"));
    }
    if !ctx.may_cluster(op) {
        return Some((KafkaError::ClusterAuthorizationFailed, "not authorized on the cluster"));
    }
    None
}

pub async fn create(ctx: &Ctx, req: CreateAclsRequest) -> CreateAclsResponse {
    let n = req.creations.len();
    let failed = |e: KafkaError, m: &str| {
        (0..n).map(|_| AclCreationResult::default().with_error_code(code(e)).with_error_message(Some(sb(m)))).collect()
    };
    if let Some((e, m)) = gate(ctx, AclOperation::Alter) {
        return CreateAclsResponse::default().with_results(failed(e, m));
    }
    if n > MAX_BINDINGS {
        return CreateAclsResponse::default().with_results(failed(KafkaError::InvalidRequest, "too many ACLs in one request"));
    }
    let checked: Vec<Result<AclBinding, String>> = req
        .creations
        .iter()
        .map(|c| {
            binding(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclBinding> = checked.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
    let written = if valid.is_empty() {
        Ok(())
    } else {
        let broker = ctx.broker.clone();
        let acls = valid.clone();
        blocking(move || broker.commit_metadata(MetadataRecord::CreateAcls { acls })).await
    };
    if let Err(e) = &written {
        tracing::warn!(error = %e, "could not write ACLs");
    } else if !valid.is_empty() {
        tracing::info!(count = valid.len(), principal = %ctx.principal(), "ACLs created");
    }
    let results = checked
        .into_iter()
        .map(|r| match (r, &written) {
            (Err(m), _) => AclCreationResult::default().with_error_code(code(KafkaError::InvalidRequest)).with_error_message(Some(sb(m))),
            (Ok(_), Err(e)) => AclCreationResult::default()
                .with_error_code(code(KafkaError::UnknownServerError))
                .with_error_message(Some(sb(e.to_string()))),
            (Ok(_), Ok(())) => AclCreationResult::default(),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

pub fn describe(ctx: &Ctx, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let refuse = |e: KafkaError, m: String| DescribeAclsResponse::default().with_error_code(code(e)).with_error_message(Some(sb(m)));
    if let Some((e, m)) = gate(ctx, AclOperation::Describe) {
        return refuse(e, m.into());
    }
    let filter = match filter(
        req.resource_type_filter,
        req.resource_name_filter.as_ref(),
        req.pattern_type_filter,
        req.principal_filter.as_ref(),
        req.host_filter.as_ref(),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(m) => return refuse(KafkaError::InvalidRequest, m),
    };
    let found = ctx.broker.acls_matching(&filter);
    // One entry per resource pattern, with its bindings.
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for a in found {
        let entry = AclDescription::default()
            .with_principal(sb(a.principal.clone()))
            .with_host(sb(a.host.clone()))
            .with_operation(a.operation.code())
            .with_permission_type(a.permission.code());
        match resources.last_mut() {
            Some(r)
                if r.resource_type == a.resource_type.code()
                    && r.pattern_type == a.pattern_type.code()
                    && r.resource_name.as_str() == a.resource_name =>
            {
                r.acls.push(entry)
            }
            _ => resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(a.resource_type.code())
                    .with_resource_name(sb(a.resource_name.clone()))
                    .with_pattern_type(a.pattern_type.code())
                    .with_acls(vec![entry]),
            ),
        }
    }
    DescribeAclsResponse::default().with_resources(resources)
}

pub async fn delete(ctx: &Ctx, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let n = req.filters.len();
    let failed = |e: KafkaError, m: &str| {
        (0..n).map(|_| DeleteAclsFilterResult::default().with_error_code(code(e)).with_error_message(Some(sb(m)))).collect()
    };
    if let Some((e, m)) = gate(ctx, AclOperation::Alter) {
        return DeleteAclsResponse::default().with_filter_results(failed(e, m));
    }
    let filters: Vec<Result<AclFilter, String>> = req
        .filters
        .iter()
        .map(|f| {
            filter(
                f.resource_type_filter,
                f.resource_name_filter.as_ref(),
                f.pattern_type_filter,
                f.principal_filter.as_ref(),
                f.host_filter.as_ref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let matched: Vec<Vec<AclBinding>> =
        filters.iter().map(|f| f.as_ref().map(|f| ctx.broker.acls_matching(f)).unwrap_or_default()).collect();
    let mut doomed: Vec<AclBinding> = matched.iter().flatten().cloned().collect();
    doomed.sort();
    doomed.dedup();
    if doomed.len() > MAX_BINDINGS {
        return DeleteAclsResponse::default()
            .with_filter_results(failed(KafkaError::InvalidRequest, "the filters name too many ACLs for one request"));
    }
    let written = if doomed.is_empty() {
        Ok(())
    } else {
        let broker = ctx.broker.clone();
        let acls = doomed.clone();
        blocking(move || broker.commit_metadata(MetadataRecord::DeleteAcls { acls })).await
    };
    if written.is_ok() && !doomed.is_empty() {
        tracing::info!(count = doomed.len(), principal = %ctx.principal(), "ACLs deleted");
    }
    let results = filters
        .into_iter()
        .zip(matched)
        .map(|(f, found)| match (f, &written) {
            (Err(m), _) => DeleteAclsFilterResult::default().with_error_code(code(KafkaError::InvalidRequest)).with_error_message(Some(sb(m))),
            (Ok(_), Err(e)) => DeleteAclsFilterResult::default()
                .with_error_code(code(KafkaError::UnknownServerError))
                .with_error_message(Some(sb(e.to_string()))),
            (Ok(_), Ok(())) => DeleteAclsFilterResult::default().with_matching_acls(
                found
                    .into_iter()
                    .map(|a| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(a.resource_type.code())
                            .with_resource_name(sb(a.resource_name))
                            .with_pattern_type(a.pattern_type.code())
                            .with_principal(sb(a.principal))
                            .with_host(sb(a.host))
                            .with_operation(a.operation.code())
                            .with_permission_type(a.permission.code())
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

/// A binding from CreateAcls' fields, or why it is invalid.
fn binding(rtype: i8, name: &StrBytes, pattern: i8, principal: &StrBytes, host: &StrBytes, op: i8, perm: i8) -> Result<AclBinding, String> {
    let resource_type = ResourceType::from_code(rtype).ok_or_else(|| format!("invalid resource type {rtype}"))?;
    let pattern_type = PatternType::from_code(pattern).ok_or_else(|| format!("invalid pattern type {pattern} (LITERAL or PREFIXED)"))?;
    let operation = AclOperation::from_code(op).ok_or_else(|| format!("invalid operation {op}"))?;
    let permission = Permission::from_code(perm).ok_or_else(|| format!("invalid permission type {perm} (ALLOW or DENY)"))?;
    if name.is_empty() {
        return Err("invalid empty resource name".into());
    }
    if resource_type == ResourceType::Cluster && name.as_str() != CLUSTER_NAME {
        return Err(format!("the only valid name for the CLUSTER resource is {CLUSTER_NAME}"));
    }
    check_principal(principal)?;
    if host.is_empty() {
        return Err("invalid empty host (use * for any host)".into());
    }
    Ok(AclBinding {
        resource_type,
        resource_name: name.to_string(),
        pattern_type,
        principal: principal.to_string(),
        host: host.to_string(),
        operation,
        permission,
    })
}

fn check_principal(p: &str) -> Result<(), String> {
    match p.split_once(':') {
        Some((t, n)) if !t.is_empty() && !n.is_empty() => Ok(()),
        _ => Err(format!("invalid principal '{p}': expected TYPE:NAME, e.g. User:alice")),
    }
}

/// A filter from DescribeAcls' or DeleteAcls' fields (ANY = 1 matches every value), or
/// why it is invalid.
fn filter(
    rtype: i8,
    name: Option<&StrBytes>,
    pattern: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    op: i8,
    perm: i8,
) -> Result<AclFilter, String> {
    fn any_or<T>(parsed: Option<T>, code: i8, what: &str) -> Result<Option<T>, String> {
        match parsed {
            Some(v) => Ok(Some(v)),
            None if code == 1 => Ok(None),
            None => Err(format!("invalid {what} filter {code}")),
        }
    }
    Ok(AclFilter {
        resource_type: any_or(ResourceType::from_code(rtype), rtype, "resource type")?,
        resource_name: name.map(|n| n.to_string()),
        pattern: PatternFilter::from_code(pattern).ok_or_else(|| format!("invalid pattern type filter {pattern}"))?,
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| h.to_string()),
        operation: any_or(AclOperation::from_code(op), op, "operation")?,
        permission: any_or(Permission::from_code(perm), perm, "permission type")?,
    })
}
