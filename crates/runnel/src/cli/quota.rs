//! `runnel quota set|list`: client quotas (byte rates per user and client id), as Kafka's
//! `kafka-configs.sh --entity-type users/clients` manages them (AlterClientQuotas,
//! DescribeClientQuotas). librdkafka has neither API, so they go through [`super::raw`];
//! they work against Apache Kafka too.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use super::client::ClientArgs;
use super::output::{emit, Table};
use super::raw::{self, error_name};

#[derive(Args)]
pub struct QuotaCmd {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    cmd: QuotaSub,
}

#[derive(Subcommand)]
enum QuotaSub {
    /// Set or remove the quotas of a user, a client id, or both together
    Set {
        #[command(flatten)]
        entity: Entity,
        /// Bytes per second the entity may produce
        #[arg(long = "producer-byte-rate", value_name = "BYTES")]
        producer: Option<f64>,
        /// Bytes per second the entity may fetch
        #[arg(long = "consumer-byte-rate", value_name = "BYTES")]
        consumer: Option<f64>,
        /// Share of one broker thread the entity's requests may take, in percent (200 = two threads)
        #[arg(long = "request-percentage", value_name = "PERCENT")]
        request: Option<f64>,
        /// Remove a quota (repeatable): producer_byte_rate, consumer_byte_rate, request_percentage
        #[arg(long)]
        delete: Vec<String>,
    },
    /// List the quotas (all, or those of the entity given)
    List {
        #[command(flatten)]
        entity: Entity,
    },
}

#[derive(Args)]
struct Entity {
    /// The user (the principal's name: alice for User:alice)
    #[arg(long, conflicts_with = "default_user")]
    user: Option<String>,
    /// The default user (every user without a quota of its own)
    #[arg(long)]
    default_user: bool,
    /// The client id
    #[arg(long = "client-id", conflicts_with = "default_client_id")]
    client_id: Option<String>,
    /// The default client id
    #[arg(long)]
    default_client_id: bool,
}

impl Entity {
    /// (entity type, name; None for the default) of each part given.
    fn parts(&self) -> Vec<(&'static str, Option<String>)> {
        let mut out = Vec::new();
        if self.user.is_some() || self.default_user {
            out.push(("user", self.user.clone()));
        }
        if self.client_id.is_some() || self.default_client_id {
            out.push(("client-id", self.client_id.clone()));
        }
        out
    }
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub fn run(cmd: QuotaCmd) -> Result<()> {
    match cmd.cmd {
        QuotaSub::Set { entity, producer, consumer, request, delete } => set(&cmd.client, &entity, [producer, consumer, request], &delete),
        QuotaSub::List { entity } => list(&cmd.client, &entity),
    }
}

/// `values`: producer_byte_rate, consumer_byte_rate, request_percentage.
fn set(args: &ClientArgs, entity: &Entity, values: [Option<f64>; 3], delete: &[String]) -> Result<()> {
    let parts = entity.parts();
    if parts.is_empty() {
        bail!("name an entity: --user, --default-user, --client-id and/or --default-client-id");
    }
    let mut ops = Vec::new();
    for (key, v) in ["producer_byte_rate", "consumer_byte_rate", "request_percentage"].into_iter().zip(values) {
        if let Some(v) = v {
            ops.push(OpData::default().with_key(s(key)).with_value(v));
        }
    }
    for key in delete {
        ops.push(OpData::default().with_key(s(key.clone())).with_remove(true));
    }
    if ops.is_empty() {
        bail!("nothing to change: give --producer-byte-rate, --consumer-byte-rate, --request-percentage or --delete");
    }
    let entry = EntryData::default()
        .with_entity(parts.iter().map(|(t, n)| EntityData::default().with_entity_type(s(*t)).with_entity_name(n.clone().map(s))).collect())
        .with_ops(ops);
    let mut conn = raw::bootstrap(args)?;
    let resp = conn.send(AlterClientQuotasRequest::default().with_entries(vec![entry]))?;
    for e in &resp.entries {
        if e.error_code != 0 {
            let msg = e.error_message.as_ref().map_or(String::new(), |m| format!(": {m}"));
            bail!("could not set the quotas: {}{msg}", error_name(e.error_code));
        }
    }
    if !args.json {
        eprintln!("quotas set");
    }
    Ok(())
}

#[derive(Serialize)]
struct Listed {
    user: Option<String>,
    client_id: Option<String>,
    quotas: std::collections::BTreeMap<String, f64>,
}

fn list(args: &ClientArgs, entity: &Entity) -> Result<()> {
    let components = entity
        .parts()
        .into_iter()
        .map(|(t, n)| {
            // Match type: 0 exact name, 1 the default entity.
            let c = ComponentData::default().with_entity_type(s(t));
            match n {
                Some(n) => c.with_match_type(0).with_match(Some(s(n))),
                None => c.with_match_type(1).with_match(None),
            }
        })
        .collect();
    let mut conn = raw::bootstrap(args)?;
    let resp = conn.send(DescribeClientQuotasRequest::default().with_components(components))?;
    if resp.error_code != 0 {
        let msg = resp.error_message.as_ref().map_or(String::new(), |m| format!(": {m}"));
        bail!("could not list the quotas: {}{msg}", error_name(resp.error_code));
    }
    let name = |n: &Option<StrBytes>| n.as_ref().map_or("<default>".to_string(), |n| n.to_string());
    let rows: Vec<Listed> = resp
        .entries
        .unwrap_or_default()
        .iter()
        .map(|e| Listed {
            user: e.entity.iter().find(|x| x.entity_type.as_str() == "user").map(|x| name(&x.entity_name)),
            client_id: e.entity.iter().find(|x| x.entity_type.as_str() == "client-id").map(|x| name(&x.entity_name)),
            quotas: e.values.iter().map(|v| (v.key.to_string(), v.value)).collect(),
        })
        .collect();
    emit(args.json, &rows, |rows| {
        if rows.is_empty() {
            return "no quotas\n".into();
        }
        let mut t = Table::new(&["USER", "CLIENT ID", "QUOTAS"]);
        for r in rows.iter() {
            let q: Vec<String> = r.quotas.iter().map(|(k, v)| format!("{k}={v}")).collect();
            t.row(vec![r.user.clone().unwrap_or_default(), r.client_id.clone().unwrap_or_default(), q.join(",")]);
        }
        t.render()
    })
}
