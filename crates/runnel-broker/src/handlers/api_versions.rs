//! ApiVersions (key 18) v0–v4: the table of what we serve, derived from `SUPPORTED_APIS`.
//! A request newer than v4 is answered by the connection with a v0-format
//! UNSUPPORTED_VERSION response carrying this table (KIP-511).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::{Ctx, SUPPORTED_APIS};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 4;

pub fn handle(_ctx: &Ctx, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    table()
}

/// Our ApiVersions response body.
pub fn table() -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|(k, min, max)| ApiVersion::default().with_api_key(*k as i16).with_min_version(*min).with_max_version(*max))
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys).with_finalized_features_epoch(-1)
}
