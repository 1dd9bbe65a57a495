//! `runnel topic create|list|describe|delete|add-partitions|alter-config` through
//! librdkafka's AdminClient and Metadata. `describe` adds each partition's watermarks and
//! the topic's configs.
//!
//! rdkafka 0.39 has no IncrementalAlterConfigs, so `alter-config` reads the topic's
//! overrides, applies the changes and writes the whole set back with AlterConfigs; since
//! rdkafka drops AlterConfigs' per-resource errors, it reads the configs again to check
//! that the broker applied them.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use clap::{ArgGroup, Args, Subcommand};
use rdkafka::admin::{AlterConfig, ConfigResource, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::admin::AdminClient;
use serde::Serialize;

use super::client::{block_on, key_value, partitions_of, ClientArgs};
use super::output::{emit, fields, Table};

#[derive(Args)]
pub struct TopicCmd {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    cmd: TopicSub,
}

#[derive(Subcommand)]
enum TopicSub {
    /// Create a topic
    Create {
        name: String,
        /// Number of partitions [default: the broker's num.partitions]
        #[arg(short, long)]
        partitions: Option<i32>,
        /// Replication factor [default: the broker's default.replication.factor]
        #[arg(short, long)]
        replicas: Option<i32>,
        /// A topic config, KEY=VALUE (repeatable), e.g. -c retention.ms=3600000
        #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics with their partition counts
    List {
        /// Include internal topics (names starting with "__")
        #[arg(long)]
        internal: bool,
    },
    /// Show partitions, leaders, low/high watermarks and configs of a topic
    Describe {
        name: String,
        /// Show every config, not only the topic's own overrides
        #[arg(long)]
        all_configs: bool,
    },
    /// Delete topics and their data
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Add partitions to a topic (existing records stay where they are)
    #[command(group(ArgGroup::new("how").required(true).args(["count", "total"])))]
    AddPartitions {
        name: String,
        /// How many partitions to add
        #[arg(long)]
        count: Option<i32>,
        /// The partition count to grow to
        #[arg(long)]
        total: Option<i32>,
    },
    /// Set or remove per-topic configs (others are kept)
    #[command(group(ArgGroup::new("change").required(true).multiple(true).args(["set", "delete"])))]
    AlterConfig {
        name: String,
        /// Set a config, KEY=VALUE (repeatable)
        #[arg(short = 's', long, value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Remove an override so the broker default applies again (repeatable)
        #[arg(short = 'd', long, value_name = "KEY")]
        delete: Vec<String>,
    },
}

pub fn run(cmd: TopicCmd) -> Result<()> {
    let args = &cmd.client;
    match cmd.cmd {
        TopicSub::Create { name, partitions, replicas, configs } => create(args, &name, partitions, replicas, &configs),
        TopicSub::List { internal } => list(args, internal),
        TopicSub::Describe { name, all_configs } => describe(args, &name, all_configs),
        TopicSub::Delete { names } => delete(args, &names),
        TopicSub::AddPartitions { name, count, total } => add_partitions(args, &name, count, total),
        TopicSub::AlterConfig { name, set, delete } => alter_config(args, &name, &set, &delete),
    }
}

type Admin = AdminClient<DefaultClientContext>;

/// What went wrong with a topic, and what to try.
fn topic_error(topic: &str, doing: &str, code: RDKafkaErrorCode) -> anyhow::Error {
    let hint = match code {
        RDKafkaErrorCode::TopicAlreadyExists => " (see `runnel topic describe`)".to_string(),
        RDKafkaErrorCode::UnknownTopicOrPartition => " (see `runnel topic list`)".to_string(),
        RDKafkaErrorCode::InvalidConfig => " (check the config names and values)".to_string(),
        RDKafkaErrorCode::InvalidTopic => " (names are up to 249 characters of a-z A-Z 0-9 . _ -)".to_string(),
        _ => String::new(),
    };
    anyhow!("cannot {doing} topic '{topic}': {code}{hint}")
}

#[derive(Serialize)]
struct Created {
    topic: String,
    partitions: usize,
    configs: BTreeMap<String, String>,
}

fn create(args: &ClientArgs, name: &str, partitions: Option<i32>, replicas: Option<i32>, configs: &[String]) -> Result<()> {
    let configs: BTreeMap<String, String> = configs.iter().map(|kv| key_value(kv, "--config")).collect::<Result<_>>()?;
    let admin = args.admin()?;
    let mut t = NewTopic::new(name, partitions.unwrap_or(-1), TopicReplication::Fixed(replicas.unwrap_or(-1)));
    for (k, v) in &configs {
        t = t.set(k, v);
    }
    let res = block_on(admin.create_topics([&t], &args.admin_opts())).map_err(|e| args.explain(e, "cannot create topic"))?;
    for r in res {
        r.map_err(|(_, code)| topic_error(name, "create", code))?;
    }
    let md = args.metadata(admin.inner())?;
    let created = Created { topic: name.to_string(), partitions: partitions_of(&md, name).map(|p| p.len()).unwrap_or(0), configs };
    emit(args.json, &created, |c| format!("created topic {} with {} partition(s)\n", c.topic, c.partitions))
}

#[derive(Serialize)]
struct Listed {
    name: String,
    partitions: usize,
    replication_factor: usize,
}

fn list(args: &ClientArgs, internal: bool) -> Result<()> {
    let admin = args.admin()?;
    let md = args.metadata(admin.inner())?;
    let mut topics: Vec<Listed> = md
        .topics()
        .iter()
        .filter(|t| internal || !t.name().starts_with("__"))
        .map(|t| Listed {
            name: t.name().to_string(),
            partitions: t.partitions().len(),
            replication_factor: t.partitions().first().map_or(0, |p| p.replicas().len()),
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    emit(args.json, &topics, |ts| {
        if ts.is_empty() {
            return "no topics (create one with `runnel topic create NAME`)\n".into();
        }
        let mut t = Table::new(&["TOPIC", "PARTITIONS", "REPLICAS"]);
        for l in ts {
            t.row(vec![l.name.clone(), l.partitions.to_string(), l.replication_factor.to_string()]);
        }
        t.render()
    })
}

#[derive(Serialize)]
struct Described {
    topic: String,
    partitions: Vec<PartitionInfo>,
    configs: Vec<ConfigInfo>,
}

#[derive(Serialize)]
struct PartitionInfo {
    partition: i32,
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    low_watermark: i64,
    high_watermark: i64,
    error: Option<String>,
}

#[derive(Serialize)]
struct ConfigInfo {
    name: String,
    value: Option<String>,
    source: &'static str,
    is_default: bool,
}

fn source_name(s: &ConfigSource) -> &'static str {
    match s {
        ConfigSource::DynamicTopic => "topic",
        ConfigSource::DynamicBroker | ConfigSource::DynamicDefaultBroker | ConfigSource::StaticBroker => "broker",
        ConfigSource::Default => "default",
        ConfigSource::Unknown => "unknown",
    }
}

fn topic_configs(args: &ClientArgs, admin: &Admin, name: &str) -> Result<ConfigResource> {
    let mut res = block_on(admin.describe_configs([&ResourceSpecifier::Topic(name)], &args.admin_opts()))
        .map_err(|e| args.explain(e, &format!("cannot read the configs of topic '{name}'")))?;
    if res.is_empty() {
        bail!("cannot read the configs of topic '{name}': empty answer");
    }
    res.remove(0).map_err(|code| topic_error(name, "read the configs of", code))
}

fn describe(args: &ClientArgs, name: &str, all_configs: bool) -> Result<()> {
    let admin = args.admin()?;
    let client = admin.inner();
    let md = args.metadata(client)?;
    partitions_of(&md, name)?;
    let t = md.topics().iter().find(|t| t.name() == name).expect("checked above");
    let mut partitions = Vec::new();
    for p in t.partitions() {
        let (low, high) =
            client.fetch_watermarks(name, p.id(), args.timeout()).map_err(|e| args.explain(e, &format!("cannot read offsets of {name}/{}", p.id())))?;
        partitions.push(PartitionInfo {
            partition: p.id(),
            leader: p.leader(),
            replicas: p.replicas().to_vec(),
            isr: p.isr().to_vec(),
            low_watermark: low,
            high_watermark: high,
            error: p.error().map(|e| format!("{:?}", RDKafkaErrorCode::from(e))),
        });
    }
    partitions.sort_by_key(|p| p.partition);
    let mut configs: Vec<ConfigInfo> = topic_configs(args, &admin, name)?
        .entries
        .into_iter()
        .filter(|e| all_configs || e.source == ConfigSource::DynamicTopic)
        .map(|e| ConfigInfo { source: source_name(&e.source), name: e.name, value: e.value, is_default: e.is_default })
        .collect();
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    let d = Described { topic: name.to_string(), partitions, configs };
    emit(args.json, &d, |d| {
        let records: i64 = d.partitions.iter().map(|p| p.high_watermark - p.low_watermark).sum();
        let mut out = fields(&[("topic", d.topic.clone()), ("partitions", d.partitions.len().to_string()), ("records", records.to_string())]);
        let ids = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
        let mut t = Table::new(&["PARTITION", "LEADER", "REPLICAS", "ISR", "LOW", "HIGH", "RECORDS"]);
        for p in &d.partitions {
            t.row(vec![
                p.partition.to_string(),
                p.leader.to_string(),
                ids(&p.replicas),
                ids(&p.isr),
                p.low_watermark.to_string(),
                p.high_watermark.to_string(),
                (p.high_watermark - p.low_watermark).to_string(),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render());
        out.push('\n');
        if d.configs.is_empty() {
            out.push_str("configs: broker defaults (--all-configs shows them)\n");
        } else {
            let mut c = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
            for e in &d.configs {
                c.row(vec![e.name.clone(), e.value.clone().unwrap_or_else(|| "-".into()), e.source.into()]);
            }
            out.push_str(&c.render());
        }
        out
    })
}

#[derive(Serialize)]
struct Deleted {
    deleted: Vec<String>,
}

fn delete(args: &ClientArgs, names: &[String]) -> Result<()> {
    let admin = args.admin()?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let res = block_on(admin.delete_topics(&refs, &args.admin_opts())).map_err(|e| args.explain(e, "cannot delete topics"))?;
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for r in res {
        match r {
            Ok(t) => deleted.push(t),
            Err((t, code)) => errors.push(topic_error(&t, "delete", code)),
        }
    }
    if !deleted.is_empty() || errors.is_empty() {
        emit(args.json, &Deleted { deleted }, |d| d.deleted.iter().map(|t| format!("deleted topic {t}\n")).collect())?;
    }
    match errors.into_iter().reduce(|a, b| anyhow!("{a:#}; {b:#}")) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[derive(Serialize)]
struct Grown {
    topic: String,
    partitions_before: usize,
    partitions: usize,
}

fn add_partitions(args: &ClientArgs, name: &str, count: Option<i32>, total: Option<i32>) -> Result<()> {
    let admin = args.admin()?;
    let before = partitions_of(&args.metadata(admin.inner())?, name)?.len();
    let target = match (count, total) {
        (Some(c), _) if c < 1 => bail!("--count must be at least 1"),
        (Some(c), _) => before + c as usize,
        (None, Some(t)) if t as usize <= before => bail!("topic '{name}' already has {before} partition(s): --total must be larger"),
        (None, Some(t)) => t as usize,
        (None, None) => unreachable!("clap requires --count or --total"),
    };
    let np = NewPartitions::new(name, target);
    let res = block_on(admin.create_partitions([&np], &args.admin_opts())).map_err(|e| args.explain(e, "cannot add partitions"))?;
    for r in res {
        r.map_err(|(_, code)| topic_error(name, "add partitions to", code))?;
    }
    let g = Grown { topic: name.into(), partitions_before: before, partitions: target };
    emit(args.json, &g, |g| format!("topic {} now has {} partitions (was {})\n", g.topic, g.partitions, g.partitions_before))
}

#[derive(Serialize)]
struct Altered {
    topic: String,
    configs: BTreeMap<String, String>,
}

fn alter_config(args: &ClientArgs, name: &str, set: &[String], delete: &[String]) -> Result<()> {
    let set: BTreeMap<String, String> = set.iter().map(|kv| key_value(kv, "--set")).collect::<Result<_>>()?;
    let admin = args.admin()?;
    partitions_of(&args.metadata(admin.inner())?, name)?;
    let overrides = |c: ConfigResource| -> BTreeMap<String, String> {
        c.entries.into_iter().filter(|e| e.source == ConfigSource::DynamicTopic).filter_map(|e| Some((e.name, e.value?))).collect()
    };
    let mut wanted = overrides(topic_configs(args, &admin, name)?);
    for k in delete {
        wanted.remove(k);
    }
    wanted.extend(set.clone());
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
    for (k, v) in &wanted {
        alter = alter.set(k, v);
    }
    let res = block_on(admin.alter_configs([&alter], &args.admin_opts())).map_err(|e| args.explain(e, "cannot alter configs"))?;
    for r in res {
        r.map_err(|(_, code)| topic_error(name, "alter the configs of", code))?;
    }
    let now = overrides(topic_configs(args, &admin, name)?);
    let refused: Vec<String> = set.iter().filter(|(k, v)| now.get(*k) != Some(*v)).map(|(k, v)| format!("{k}={v}")).collect();
    if !refused.is_empty() {
        bail!(
            "the broker did not apply {} to topic '{name}': check the config names and values (`runnel topic describe {name} --all-configs` lists them)",
            refused.join(", ")
        );
    }
    if let Some(k) = delete.iter().find(|k| now.contains_key(*k)) {
        bail!("the broker kept the override {k} of topic '{name}'");
    }
    let a = Altered { topic: name.into(), configs: now };
    emit(args.json, &a, |a| {
        let mut out = format!("updated configs of topic {}\n", a.topic);
        if a.configs.is_empty() {
            out.push_str("no overrides left: broker defaults apply\n");
        } else {
            let mut t = Table::new(&["CONFIG", "VALUE"]);
            for (k, v) in &a.configs {
                t.row(vec![k.clone(), v.clone()]);
            }
            out.push_str(&t.render());
        }
        out
    })
}
