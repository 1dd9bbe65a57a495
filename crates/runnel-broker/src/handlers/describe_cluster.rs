//! DescribeCluster (key 60) v0–v2: the live brokers and the controller (on a single
//! node: this broker, as the whole cluster and its controller).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use runnel_metadata::acl::{ResourceType, CLUSTER_NAME};

use super::{sb, Ctx};
use crate::errors::{code, KafkaError};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

/// `endpoint_type` 1: brokers. Runnel has no separate controller endpoints.
const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(ctx: &Ctx, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let b = &ctx.broker;
    let mut resp = DescribeClusterResponse::default()
        .with_cluster_id(sb(b.cluster_id.clone()))
        .with_endpoint_type(req.endpoint_type)
        .with_cluster_authorized_operations(match req.include_cluster_authorized_operations {
            true => ctx.authorized_operations(ResourceType::Cluster, CLUSTER_NAME),
            false => i32::MIN,
        });
    if ctx.version >= 1 && req.endpoint_type != ENDPOINT_BROKERS {
        return resp
            .with_error_code(code(KafkaError::UnsupportedEndpointType))
            .with_error_message(Some(sb("this broker only describes broker endpoints (endpoint_type 1)")));
    }
    resp.controller_id = BrokerId(crate::cluster::controller_id(b));
    resp.brokers = crate::cluster::listed_brokers(b, &ctx.session.listener)
        .into_iter()
        .map(|l| {
            DescribeClusterBroker::default().with_broker_id(BrokerId(l.id)).with_host(sb(l.host)).with_port(l.port).with_rack(l.rack.map(sb))
        })
        .collect();
    resp
}
