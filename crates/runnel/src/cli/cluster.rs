//! `runnel cluster info`: the cluster id, its brokers, the controller and how many topics
//! there are, as librdkafka sees them through Metadata.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::client::ClientArgs;
use super::output::{emit, fields, Table};

#[derive(Args)]
pub struct ClusterCmd {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    cmd: ClusterSub,
}

#[derive(Subcommand)]
enum ClusterSub {
    /// Cluster id, brokers, controller and topic count
    Info,
}

#[derive(Serialize)]
struct Info {
    cluster_id: Option<String>,
    controller_id: Option<i32>,
    brokers: Vec<BrokerInfo>,
    topics: usize,
    internal_topics: usize,
}

#[derive(Serialize)]
struct BrokerInfo {
    id: i32,
    host: String,
    port: i32,
    controller: bool,
}

pub fn run(cmd: ClusterCmd) -> Result<()> {
    let ClusterSub::Info = cmd.cmd;
    let args = &cmd.client;
    let admin = args.admin()?;
    let client = admin.inner();
    let md = args.metadata(client)?;
    let cluster_id = client.fetch_cluster_id(args.timeout());
    // rdkafka exposes no safe call for the controller; librdkafka's own is one line.
    let timeout_ms = args.timeout().as_millis().min(i32::MAX as u128) as i32;
    let controller = unsafe { rdkafka::bindings::rd_kafka_controllerid(client.native_ptr(), timeout_ms) };
    let controller_id = (controller >= 0).then_some(controller);
    let mut brokers: Vec<BrokerInfo> = md
        .brokers()
        .iter()
        .map(|b| BrokerInfo { id: b.id(), host: b.host().to_string(), port: b.port(), controller: Some(b.id()) == controller_id })
        .collect();
    brokers.sort_by_key(|b| b.id);
    let internal_topics = md.topics().iter().filter(|t| t.name().starts_with("__")).count();
    let info = Info { cluster_id, controller_id, brokers, topics: md.topics().len() - internal_topics, internal_topics };
    emit(args.json, &info, |i| {
        let mut out = fields(&[
            ("cluster id", i.cluster_id.clone().unwrap_or_else(|| "-".into())),
            ("controller", i.controller_id.map_or("-".into(), |c| c.to_string())),
            ("brokers", i.brokers.len().to_string()),
            ("topics", format!("{} (+{} internal)", i.topics, i.internal_topics)),
        ]);
        let mut t = Table::new(&["ID", "ADDRESS", "ROLE"]);
        for b in &i.brokers {
            t.row(vec![b.id.to_string(), format!("{}:{}", b.host, b.port), if b.controller { "controller".into() } else { String::new() }]);
        }
        out.push('\n');
        out.push_str(&t.render());
        out
    })
}
