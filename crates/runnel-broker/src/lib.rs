//! The Runnel broker: the Kafka listener and its connections, one handler per Kafka API,
//! fetch waiters, the group coordinator, topic configs and the broker config.
//!
//! It never parses bytes by hand that `runnel-protocol` parses, and never lays out files:
//! partition data belongs to `runnel-storage`, metadata records to `runnel-metadata`.

mod admin;
pub mod auth;
mod authorizer;
mod cleaner;
mod cluster;
pub mod config;
mod connection;
mod data_dir;
mod dynamic_config;
mod errors;
mod fetch_session;
mod fetcher;
mod group;
mod handlers;
mod limits;
pub mod listeners;
mod metrics;
mod partition;
mod peer;
mod quota;
mod replica;
mod replication;
mod server;
#[cfg(test)]
mod sim;
mod state;
pub mod topic_config;
mod topic_name;
mod transport;
mod txn;

pub use config::BrokerConfig;
pub use handlers::SUPPORTED_APIS;
pub use server::{start, BoundListener, BrokerHandle};

/// Wall-clock milliseconds since the Unix epoch (Kafka's timestamps).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
