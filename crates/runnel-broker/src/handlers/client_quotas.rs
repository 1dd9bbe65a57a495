//! DescribeClientQuotas (key 48) and AlterClientQuotas (key 49), v0–v1: client quotas
//! (`producer_byte_rate`, `consumer_byte_rate`, `request_percentage`) of user and client-id entities, kept in the
//! metadata log so every broker enforces the same ones (see `crate::quota`). As Kafka:
//! describing needs DESCRIBE_CONFIGS on the cluster, altering ALTER_CONFIGS
//! (CLUSTER_AUTHORIZATION_FAILED); an unknown entity type or key, a negative value, or an
//! entity naming a type twice is INVALID_REQUEST; `validate_only` writes nothing.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_client_quotas_response::{EntityData as AlteredEntity, EntryData as AlteredEntry};
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use runnel_metadata::acl::AclOperation;
use runnel_metadata::quota::{QuotaEntity, QuotaValue, CLIENT_ID, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE, USER};
use runnel_metadata::MetadataRecord;

use super::{blocking, sb, Ctx};
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 1;

/// The keys enforced.
const KEYS: [&str; 3] = [PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE];

/// DescribeClientQuotas match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

pub fn describe(ctx: &Ctx, req: DescribeClientQuotasRequest) -> DescribeClientQuotasResponse {
    let refuse = |e: KafkaError, m: String| DescribeClientQuotasResponse::default().with_error_code(code(e)).with_error_message(Some(sb(m)));
    if !ctx.may_cluster(AclOperation::DescribeConfigs) {
        return refuse(KafkaError::ClusterAuthorizationFailed, "not authorized to describe client quotas".into());
    }
    let mut filters: BTreeMap<String, (i8, Option<String>)> = BTreeMap::new();
    for c in &req.components {
        let t = c.entity_type.to_string();
        if t != USER && t != CLIENT_ID {
            return refuse(KafkaError::InvalidRequest, format!("unknown entity type '{t}' (user or client-id)"));
        }
        if !matches!(c.match_type, MATCH_EXACT | MATCH_DEFAULT | MATCH_ANY) {
            return refuse(KafkaError::InvalidRequest, format!("unknown match type {}", c.match_type));
        }
        if filters.insert(t.clone(), (c.match_type, c._match.as_ref().map(|m| m.to_string()))).is_some() {
            return refuse(KafkaError::InvalidRequest, format!("entity type '{t}' filtered twice"));
        }
    }
    let view = ctx.broker.security();
    let entries = view
        .quotas
        .iter()
        .filter(|(entity, _)| {
            let matched = filters.iter().all(|(t, (m, name))| match (entity.get(t), *m) {
                (None, _) => false,
                (Some(_), MATCH_ANY) => true,
                (Some(got), MATCH_DEFAULT) => got.is_none(),
                (Some(got), _) => got == name,
            });
            matched && (!req.strict || entity.len() == filters.len())
        })
        .map(|(entity, values)| {
            EntryData::default()
                .with_entity(
                    entity.iter().map(|(t, n)| EntityData::default().with_entity_type(sb(t.clone())).with_entity_name(n.clone().map(sb))).collect(),
                )
                .with_values(values.iter().map(|(k, v)| ValueData::default().with_key(sb(k.clone())).with_value(*v)).collect())
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

pub async fn alter(ctx: &Ctx, req: AlterClientQuotasRequest) -> AlterClientQuotasResponse {
    let allowed = ctx.may_cluster(AclOperation::AlterConfigs);
    let mut results = Vec::with_capacity(req.entries.len());
    for e in req.entries {
        let echo: Vec<AlteredEntity> =
            e.entity.iter().map(|x| AlteredEntity::default().with_entity_type(x.entity_type.clone()).with_entity_name(x.entity_name.clone())).collect();
        let outcome = if !allowed {
            Err((KafkaError::ClusterAuthorizationFailed, "not authorized to alter client quotas".to_string()))
        } else {
            match checked(&e) {
                Err(m) => Err((KafkaError::InvalidRequest, m)),
                Ok(_) if req.validate_only => Ok(()),
                Ok((entity, ops)) => {
                    let broker = ctx.broker.clone();
                    blocking(move || broker.commit_metadata(MetadataRecord::AlterClientQuota { entity, ops }))
                        .await
                        .map_err(|err| (KafkaError::UnknownServerError, err.to_string()))
                }
            }
        };
        let r = AlteredEntry::default().with_entity(echo);
        results.push(match outcome {
            Ok(()) => r,
            Err((err, m)) => r.with_error_code(code(err)).with_error_message(Some(sb(m))),
        });
    }
    AlterClientQuotasResponse::default().with_entries(results)
}

type Ops = Vec<(String, Option<QuotaValue>)>;

/// The entity and the changes of one entry, or why they are invalid.
fn checked(e: &kafka_protocol::messages::alter_client_quotas_request::EntryData) -> Result<(QuotaEntity, Ops), String> {
    let mut entity = QuotaEntity::new();
    for x in &e.entity {
        let t = x.entity_type.to_string();
        if t != USER && t != CLIENT_ID {
            return Err(format!("unknown entity type '{t}' (user or client-id)"));
        }
        if entity.insert(t.clone(), x.entity_name.as_ref().map(|n| n.to_string())).is_some() {
            return Err(format!("entity type '{t}' given twice"));
        }
    }
    if entity.is_empty() {
        return Err("an entity needs a user, a client-id or both".into());
    }
    let mut ops = Vec::with_capacity(e.ops.len());
    for o in &e.ops {
        let key = o.key.to_string();
        if !KEYS.contains(&key.as_str()) {
            return Err(format!("unknown or unsupported quota key '{key}' (one of {})", KEYS.join(", ")));
        }
        if !o.remove && !(o.value.is_finite() && o.value > 0.0) {
            return Err(format!("{key} must be a positive number, got {}", o.value));
        }
        ops.push((key, (!o.remove).then_some(QuotaValue(o.value))));
    }
    Ok((entity, ops))
}
