//! `runnel txn list|describe`: the transactions the coordinators know, as Kafka's
//! `kafka-transactions.sh list|describe` shows them. ListTransactions goes to every broker
//! (each answers for the transactional ids it coordinates); describe finds the id's
//! coordinator (FindCoordinator, key type 1) and asks it (DescribeTransactions). librdkafka
//! has neither API, so they go through [`super::raw`].

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use kafka_protocol::messages::{DescribeTransactionsRequest, FindCoordinatorRequest, ListTransactionsRequest, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use super::client::ClientArgs;
use super::output::{emit, fields, Table};
use super::raw::{self, error_name, Conn};

#[derive(Args)]
pub struct TxnCmd {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    cmd: TxnSub,
}

#[derive(Subcommand)]
enum TxnSub {
    /// List the transactional ids the coordinators know, with their producer and state
    List {
        /// Only transactions in this state (repeatable): Empty, Ongoing, PrepareCommit,
        /// PrepareAbort, CompleteCommit, CompleteAbort, PrepareEpochFence
        #[arg(long)]
        state: Vec<String>,
    },
    /// Show one transactional id: its coordinator, producer, state, timeout, start and partitions
    Describe { transactional_id: String },
}

pub fn run(cmd: TxnCmd) -> Result<()> {
    match cmd.cmd {
        TxnSub::List { state } => list(&cmd.client, &state),
        TxnSub::Describe { transactional_id } => describe(&cmd.client, &transactional_id),
    }
}

#[derive(Serialize)]
struct Listed {
    transactional_id: String,
    coordinator: i32,
    producer_id: i64,
    state: String,
}

fn list(args: &ClientArgs, states: &[String]) -> Result<()> {
    let mut boot = raw::bootstrap(args)?;
    let mut out = Vec::new();
    for (node, addr) in raw::brokers(&mut boot)? {
        let mut conn = if addr == boot.addr() { None } else { Some(Conn::connect(&addr, args.timeout())?) };
        let conn = conn.as_mut().unwrap_or(&mut boot);
        let req = ListTransactionsRequest::default().with_state_filters(states.iter().map(|s| StrBytes::from_string(s.clone())).collect());
        let resp = conn.send(req)?;
        if resp.error_code != 0 {
            bail!("broker {node} ({addr}) could not list its transactions: {}", error_name(resp.error_code));
        }
        if !resp.unknown_state_filters.is_empty() {
            let unknown: Vec<&str> = resp.unknown_state_filters.iter().map(|s| s.as_str()).collect();
            bail!("unknown transaction state {}: see `runnel txn list --help`", unknown.join(", "));
        }
        out.extend(resp.transaction_states.into_iter().map(|t| Listed {
            transactional_id: t.transactional_id.to_string(),
            coordinator: node,
            producer_id: t.producer_id.0,
            state: t.transaction_state.to_string(),
        }));
    }
    out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
    emit(args.json, &out, |rows| {
        if rows.is_empty() {
            return "no transactions\n".into();
        }
        let mut t = Table::new(&["TRANSACTIONAL ID", "COORDINATOR", "PRODUCER ID", "STATE"]);
        for r in rows {
            t.row(vec![r.transactional_id.clone(), r.coordinator.to_string(), r.producer_id.to_string(), r.state.clone()]);
        }
        t.render()
    })
}

#[derive(Serialize)]
struct Described {
    transactional_id: String,
    coordinator: i32,
    state: String,
    producer_id: i64,
    producer_epoch: i16,
    timeout_ms: i32,
    /// Milliseconds since the epoch; -1 when no transaction is open.
    start_time_ms: i64,
    partitions: Vec<String>,
}

fn describe(args: &ClientArgs, id: &str) -> Result<()> {
    let mut boot = raw::bootstrap(args)?;
    // Versions 0-3 name the key in `key`; that is enough to find one coordinator.
    let find = FindCoordinatorRequest::default().with_key(StrBytes::from_string(id.to_string())).with_key_type(1);
    let found = boot.send_at_most(find, 3)?;
    if found.error_code != 0 {
        bail!("no coordinator for transactional id {id:?}: {}", error_name(found.error_code));
    }
    let addr = format!("{}:{}", found.host, found.port);
    let mut conn = if addr == boot.addr() { boot } else { Conn::connect(&addr, args.timeout())? };
    let resp = conn.send(DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(StrBytes::from_string(id.to_string()))]))?;
    let Some(t) = resp.transaction_states.into_iter().next() else { bail!("{addr} answered DescribeTransactions with no entry") };
    if t.error_code != 0 {
        bail!("cannot describe transactional id {id:?}: {}", error_name(t.error_code));
    }
    let mut partitions: Vec<String> =
        t.topics.iter().flat_map(|tp| tp.partitions.iter().map(move |p| format!("{}-{p}", tp.topic.as_str()))).collect();
    partitions.sort();
    let d = Described {
        transactional_id: id.to_string(),
        coordinator: found.node_id.0,
        state: t.transaction_state.to_string(),
        producer_id: t.producer_id.0,
        producer_epoch: t.producer_epoch,
        timeout_ms: t.transaction_timeout_ms,
        start_time_ms: t.transaction_start_time_ms,
        partitions,
    };
    emit(args.json, &d, |d| {
        fields(&[
            ("transactional id", d.transactional_id.clone()),
            ("coordinator", d.coordinator.to_string()),
            ("state", d.state.clone()),
            ("producer id", d.producer_id.to_string()),
            ("producer epoch", d.producer_epoch.to_string()),
            ("timeout ms", d.timeout_ms.to_string()),
            ("start time ms", d.start_time_ms.to_string()),
            ("partitions", if d.partitions.is_empty() { "-".into() } else { d.partitions.join(", ") }),
        ])
    })
}
