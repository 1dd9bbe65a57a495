//! ApiVersions (key 18) v0–v4: the table of what we serve, derived from `SUPPORTED_APIS`.
//! A request newer than v4 is answered by the connection with a v0-format
//! UNSUPPORTED_VERSION response carrying this table (KIP-511).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::{Ctx, SUPPORTED_APIS};
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 4;

pub fn handle(ctx: &Ctx, req: ApiVersionsRequest) -> ApiVersionsResponse {
    // v3+ names the client software; Kafka refuses names outside this pattern (KIP-511).
    if ctx.version >= 3 && !(valid_software_field(&req.client_software_name) && valid_software_field(&req.client_software_version)) {
        return ApiVersionsResponse::default().with_error_code(code(KafkaError::InvalidRequest));
    }
    table()
}

/// `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`, as Kafka checks client software names and versions.
fn valid_software_field(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_alphanumeric();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => edge(first) && edge(last) && b.iter().all(|c| edge(c) || *c == b'-' || *c == b'.'),
        _ => false,
    }
}

/// Our ApiVersions response body.
pub fn table() -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|(k, min, max)| ApiVersion::default().with_api_key(*k as i16).with_min_version(*min).with_max_version(*max))
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys).with_finalized_features_epoch(-1)
}
