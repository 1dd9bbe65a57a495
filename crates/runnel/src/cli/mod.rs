//! The `runnel` command line: the top-level clap definition and dispatch to one module per
//! command. `runnel broker` runs a broker; every other command is a Kafka client (through
//! librdkafka, or `raw` for the admin APIs librdkafka's binding lacks), so it works against
//! Apache Kafka too.
//!
//! Exit codes: 0 success, 1 an error (printed as `runnel: error: …` with a hint), 2 a usage
//! error (clap's). Human output goes to stdout, progress and errors to stderr.

mod acl;
mod broker;
mod client;
mod cluster;
mod completions;
mod consume;
mod group;
mod output;
mod produce;
mod quota;
mod raw;
mod topic;
mod txn;
mod user;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "runnel",
    version,
    about = "A distributed commit log that speaks the Apache Kafka protocol",
    long_about = "A distributed commit log that speaks the Apache Kafka protocol.\n\n\
        `runnel broker` runs a broker; the other commands are a Kafka client (they work \
        against Apache Kafka too). Client commands take --brokers (or RUNNEL_BROKERS) and \
        --json."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker. With no flags: Kafka listener on 127.0.0.1:9092, data in ./runnel-data, node id 1.
    Broker(broker::BrokerArgs),
    /// Show the cluster: id, brokers, controller, topic count
    Cluster(cluster::ClusterCmd),
    /// Create, list, describe, alter and delete topics
    Topic(topic::TopicCmd),
    /// Write records read from stdin (or --file), one per line
    Produce(produce::ProduceArgs),
    /// Read records and print them; follows new records like `tail -f` unless -e
    Consume(consume::ConsumeArgs),
    /// List, describe, delete consumer groups and reset their offsets
    Group(group::GroupCmd),
    /// List and describe transactions (transactional ids, their producers and states)
    Txn(txn::TxnCmd),
    /// Create, list and delete SCRAM users (SASL/SCRAM credentials)
    User(user::UserCmd),
    /// Create, list and delete ACLs (the broker needs authorizer.class.name set)
    Acl(acl::AclCmd),
    /// Set and list client quotas (produce and fetch byte rates per user and client id)
    Quota(quota::QuotaCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(completions::CompletionsArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Broker(args) => broker::run_broker(args),
        Command::Cluster(cmd) => cluster::run(cmd),
        Command::Topic(cmd) => topic::run(cmd),
        Command::Produce(args) => produce::run(args),
        Command::Consume(args) => consume::run(args),
        Command::Group(cmd) => group::run(cmd),
        Command::Txn(cmd) => txn::run(cmd),
        Command::User(cmd) => user::run(cmd),
        Command::Acl(cmd) => acl::run(cmd),
        Command::Quota(cmd) => quota::run(cmd),
        Command::Completions(args) => completions::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runnel: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
