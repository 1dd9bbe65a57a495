//! Config requests on the wire, for what librdkafka (through rdkafka 0.39) hides: the
//! per-resource errors and messages of AlterConfigs, IncrementalAlterConfigs and
//! DescribeConfigs, GROUP resources, and config sources rdkafka does not know.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::*;

use super::wire::{call, connect, sb};

pub const TOPIC: i8 = 2;
pub const BROKER: i8 = 4;
pub const GROUP: i8 = 32;

pub const SET: i8 = 0;
pub const DELETE: i8 = 1;
pub const APPEND: i8 = 2;
pub const SUBTRACT: i8 = 3;

/// IncrementalAlterConfigs of one resource with `ops` (name, operation, value): its error
/// code and message.
pub fn incremental(addr: &str, rtype: i8, name: &str, ops: &[(&str, i8, Option<&str>)], validate_only: bool) -> (i16, String) {
    use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let configs = ops
        .iter()
        .map(|(k, op, v)| AlterableConfig::default().with_name(sb(k)).with_config_operation(*op).with_value(v.map(sb)))
        .collect();
    let req = IncrementalAlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![AlterConfigsResource::default().with_resource_type(rtype).with_resource_name(sb(name)).with_configs(configs)]);
    let resp: IncrementalAlterConfigsResponse = call(&mut connect(addr), ApiKey::IncrementalAlterConfigs, 1, &req);
    let r = &resp.responses[0];
    (r.error_code, r.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
}

/// AlterConfigs (the whole set of the resource replaced) of one resource: its error code
/// and message.
pub fn alter(addr: &str, rtype: i8, name: &str, configs: &[(&str, &str)], validate_only: bool) -> (i16, String) {
    use alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let configs = configs.iter().map(|(k, v)| AlterableConfig::default().with_name(sb(k)).with_value(Some(sb(v)))).collect();
    let req = AlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![AlterConfigsResource::default().with_resource_type(rtype).with_resource_name(sb(name)).with_configs(configs)]);
    let resp: AlterConfigsResponse = call(&mut connect(addr), ApiKey::AlterConfigs, 2, &req);
    let r = &resp.responses[0];
    (r.error_code, r.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
}

/// DescribeConfigs v4 of one resource, with synonyms.
pub fn describe(addr: &str, rtype: i8, name: &str) -> DescribeConfigsResult {
    let req = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_resources(vec![DescribeConfigsResource::default().with_resource_type(rtype).with_resource_name(sb(name))]);
    let mut resp: DescribeConfigsResponse = call(&mut connect(addr), ApiKey::DescribeConfigs, 4, &req);
    resp.results.remove(0)
}

/// One described config: (value, source, read_only, synonyms as (name, value, source)).
pub type Described = (String, i8, bool, Vec<(String, String, i8)>);

/// Config `key` of a DescribeConfigs result.
pub fn entry(r: &DescribeConfigsResult, key: &str) -> Option<Described> {
    r.configs.iter().find(|c| c.name.as_str() == key).map(|c| {
        let synonyms = c
            .synonyms
            .iter()
            .map(|s| (s.name.to_string(), s.value.as_ref().map(|v| v.to_string()).unwrap_or_default(), s.source))
            .collect();
        (c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(), c.config_source, c.read_only, synonyms)
    })
}

/// Kafka's config sources (DescribeConfigs `config_source`).
pub const DYNAMIC_TOPIC: i8 = 1;
pub const DYNAMIC_BROKER: i8 = 2;
pub const DYNAMIC_DEFAULT_BROKER: i8 = 3;
pub const STATIC_BROKER: i8 = 4;
pub const DEFAULT: i8 = 5;
pub const GROUP_CONFIG: i8 = 8;
