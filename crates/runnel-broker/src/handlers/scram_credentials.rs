//! DescribeUserScramCredentials (key 50) v0 and AlterUserScramCredentials (key 51) v0
//! (KIP-554): the SCRAM users of the metadata log. Alter takes the salted password the
//! client computed and stores only the salt, the iteration count and the derived keys.
//! Errors are per user, as Kafka answers them: a user named twice, an empty name, an
//! unknown mechanism, iterations outside 4096..=16384, deleting what does not exist.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{CredentialInfo, DescribeUserScramCredentialsResult};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
};
use runnel_metadata::acl::AclOperation;
use runnel_metadata::MetadataRecord;

use super::{blocking, sb, Ctx};
use crate::auth::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::errors::{code, KafkaError};

pub const DESCRIBE_MIN_VERSION: i16 = 0;
pub const DESCRIBE_MAX_VERSION: i16 = 0;
pub const ALTER_MIN_VERSION: i16 = 0;
pub const ALTER_MAX_VERSION: i16 = 0;

type Failure = (KafkaError, &'static str);

pub fn describe(ctx: &Ctx, req: DescribeUserScramCredentialsRequest) -> DescribeUserScramCredentialsResponse {
    // DESCRIBE on the cluster, as Kafka.
    if !ctx.may_cluster(AclOperation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(code(KafkaError::ClusterAuthorizationFailed))
            .with_error_message(Some(sb("not authorized to describe SCRAM credentials")));
    }
    let all = ctx.broker.scram_users();
    let result = |user: &str, infos: Result<&Vec<(ScramMechanism, i32)>, Failure>| {
        let r = DescribeUserScramCredentialsResult::default().with_user(sb(user));
        match infos {
            Ok(infos) => r.with_credential_infos(
                infos.iter().map(|(m, i)| CredentialInfo::default().with_mechanism(m.code()).with_iterations(*i)).collect(),
            ),
            Err((e, msg)) => r.with_error_code(code(e)).with_error_message(Some(sb(msg))),
        }
    };
    let results = match req.users {
        Some(users) if !users.is_empty() => {
            let mut seen = BTreeMap::new();
            for u in &users {
                *seen.entry(u.name.to_string()).or_insert(0) += 1;
            }
            seen.iter()
                .map(|(user, n)| {
                    if *n > 1 {
                        return result(user, Err((KafkaError::DuplicateResource, "Cannot describe SCRAM credentials for the same user twice in a single request")));
                    }
                    match all.get(user) {
                        Some(infos) => result(user, Ok(infos)),
                        None => result(user, Err((KafkaError::ResourceNotFound, "Attempt to describe a user credential that does not exist"))),
                    }
                })
                .collect()
        }
        _ => all.iter().map(|(user, infos)| result(user, Ok(infos))).collect(),
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

pub async fn alter(ctx: &Ctx, req: AlterUserScramCredentialsRequest) -> AlterUserScramCredentialsResponse {
    // ALTER on the cluster (every user refused), as Kafka.
    if !ctx.may_cluster(AclOperation::Alter) {
        let users: BTreeSet<String> =
            req.deletions.iter().map(|d| d.name.to_string()).chain(req.upsertions.iter().map(|u| u.name.to_string())).collect();
        let results = users
            .into_iter()
            .map(|u| {
                AlterUserScramCredentialsResult::default()
                    .with_user(sb(u))
                    .with_error_code(code(KafkaError::ClusterAuthorizationFailed))
                    .with_error_message(Some(sb("not authorized to alter SCRAM credentials")))
            })
            .collect();
        return AlterUserScramCredentialsResponse::default().with_results(results);
    }
    // Each user's changes, in request order; a user with any invalid change gets only
    // that error and none of its changes is applied.
    let mut changes: BTreeMap<String, Result<Vec<MetadataRecord>, Failure>> = BTreeMap::new();
    let mut pairs = BTreeSet::new();
    let mut duplicated = BTreeSet::new();
    let existing = ctx.broker.scram_users();
    let mut add = |user: &str, mech: i8, record: Result<MetadataRecord, Failure>| {
        if !pairs.insert((user.to_string(), mech)) {
            duplicated.insert(user.to_string());
        }
        let entry = changes.entry(user.to_string()).or_insert(Ok(Vec::new()));
        match (entry.as_mut(), record) {
            (Ok(records), Ok(r)) => records.push(r),
            (Ok(_), Err(e)) => *entry = Err(e),
            (Err(_), _) => {}
        }
    };
    for d in &req.deletions {
        let user = d.name.as_str();
        let record = match ScramMechanism::from_code(d.mechanism) {
            _ if user.is_empty() => Err((KafkaError::UnacceptableCredential, "Username must not be empty")),
            None => Err((KafkaError::UnsupportedSaslMechanism, "Unknown SCRAM mechanism")),
            Some(m) if !existing.get(user).is_some_and(|c| c.iter().any(|(x, _)| *x == m)) => {
                Err((KafkaError::ResourceNotFound, "Attempt to delete a user credential that does not exist"))
            }
            Some(m) => Ok(MetadataRecord::DeleteScramCredential { name: user.to_string(), mechanism: m.name().to_string() }),
        };
        add(user, d.mechanism, record);
    }
    for u in &req.upsertions {
        let user = u.name.as_str();
        let record = match ScramMechanism::from_code(u.mechanism) {
            _ if user.is_empty() => Err((KafkaError::UnacceptableCredential, "Username must not be empty")),
            None => Err((KafkaError::UnsupportedSaslMechanism, "Unknown SCRAM mechanism")),
            Some(_) if u.iterations < MIN_ITERATIONS => Err((KafkaError::UnacceptableCredential, "Too few iterations")),
            Some(_) if u.iterations > MAX_ITERATIONS => Err((KafkaError::UnacceptableCredential, "Too many iterations")),
            Some(_) if u.salt.is_empty() || u.salt.len() > 1024 => {
                Err((KafkaError::UnacceptableCredential, "The salt must hold 1 to 1024 bytes"))
            }
            Some(_) if u.salted_password.is_empty() || u.salted_password.len() > 1024 => {
                Err((KafkaError::UnacceptableCredential, "The salted password must hold 1 to 1024 bytes"))
            }
            Some(m) => {
                let c = ScramCredential::from_salted_password(m, u.salt.to_vec(), &u.salted_password, u.iterations);
                Ok(MetadataRecord::ScramCredential {
                    name: user.to_string(),
                    mechanism: m.name().to_string(),
                    salt: c.salt,
                    stored_key: c.stored_key,
                    server_key: c.server_key,
                    iterations: c.iterations,
                })
            }
        };
        add(user, u.mechanism, record);
    }
    let mut results = Vec::new();
    for (user, change) in changes {
        let outcome = match change {
            _ if duplicated.contains(&user) => {
                Err((KafkaError::DuplicateResource, "A user credential cannot be altered twice in the same request".to_string()))
            }
            Err((e, msg)) => Err((e, msg.to_string())),
            Ok(records) => {
                let b = ctx.broker.clone();
                blocking(move || records.into_iter().try_for_each(|r| b.commit_cluster_wide(r)))
                    .await
                    .map_err(|e| (KafkaError::UnknownServerError, e.to_string()))
            }
        };
        let r = AlterUserScramCredentialsResult::default().with_user(sb(user.as_str()));
        results.push(match outcome {
            Ok(()) => {
                tracing::info!(user = %crate::auth::sasl::escape(&user), peer = %ctx.peer, principal = %ctx.session.principal, "SCRAM credentials altered");
                r
            }
            Err((e, msg)) => r.with_error_code(code(e)).with_error_message(Some(sb(msg))),
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}
