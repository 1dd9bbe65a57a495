//! `runnel group list|describe|delete|reset-offsets`. rdkafka 0.39's AdminClient cannot
//! list or describe groups, so: ListGroups/DescribeGroups through
//! `fetch_group_list`, members' assignments decoded from their consumer-protocol bytes
//! with `kafka-protocol`, committed offsets through a consumer named after the group
//! (which never joins it), lag from the high watermarks, DeleteGroups through the
//! AdminClient, and resets as a plain commit, only while the group has no members.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use bytes::{Buf, Bytes};
use clap::{ArgGroup, Args, Subcommand};
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::client::{block_on, partitions_of, resolve_offsets, ClientArgs, OffsetSpec};
use super::output::{emit, fields, Table};

#[derive(Args)]
pub struct GroupCmd {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    cmd: GroupSub,
}

#[derive(Subcommand)]
enum GroupSub {
    /// List consumer groups
    List,
    /// Show a group's members, their assignments, committed offsets and lag
    Describe { group: String },
    /// Delete groups that have no active members (and their committed offsets)
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Move a group's committed offsets (the group must have no active members)
    #[command(group(ArgGroup::new("which").required(true).args(["topic", "all_topics"])))]
    ResetOffsets {
        group: String,
        /// A topic to reset (repeatable)
        #[arg(short, long)]
        topic: Vec<String>,
        /// Every topic the group has committed offsets for
        #[arg(long)]
        all_topics: bool,
        /// Only these partitions (repeatable; with a single --topic)
        #[arg(short, long)]
        partition: Vec<i32>,
        /// The new position: earliest, latest, N (an offset), -N (N before the end) or
        /// @TIME (ms since the epoch, or 2024-05-01T12:00:00Z)
        #[arg(long, value_name = "WHERE", allow_hyphen_values = true)]
        to: OffsetSpec,
        /// Show what would change without committing
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(cmd: GroupCmd) -> Result<()> {
    let args = &cmd.client;
    match cmd.cmd {
        GroupSub::List => list(args),
        GroupSub::Describe { group } => describe(args, &group),
        GroupSub::Delete { groups } => delete(args, &groups),
        GroupSub::ResetOffsets { group, topic, all_topics, partition, to, dry_run } => {
            reset(args, &group, &topic, all_topics, &partition, to, dry_run)
        }
    }
}

#[derive(Serialize)]
struct Listed {
    group: String,
    state: String,
    protocol_type: String,
    members: usize,
}

fn list(args: &ClientArgs) -> Result<()> {
    let c = args.consumer(None, &[])?;
    let groups = c.fetch_group_list(None, args.timeout()).map_err(|e| args.explain(e, "cannot list groups"))?;
    let mut listed: Vec<Listed> = groups
        .groups()
        .iter()
        .map(|g| Listed { group: g.name().into(), state: g.state().into(), protocol_type: g.protocol_type().into(), members: g.members().len() })
        .collect();
    listed.sort_by(|a, b| a.group.cmp(&b.group));
    emit(args.json, &listed, |ls| {
        if ls.is_empty() {
            return "no consumer groups\n".into();
        }
        let mut t = Table::new(&["GROUP", "STATE", "TYPE", "MEMBERS"]);
        for l in ls {
            t.row(vec![l.group.clone(), l.state.clone(), l.protocol_type.clone(), l.members.to_string()]);
        }
        t.render()
    })
}

#[derive(Serialize)]
struct Described {
    group: String,
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<Member>,
    offsets: Vec<PartitionOffset>,
}

#[derive(Serialize)]
struct Member {
    member_id: String,
    client_id: String,
    host: String,
    assignment: BTreeMap<String, Vec<i32>>,
}

#[derive(Serialize)]
struct PartitionOffset {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    log_end: i64,
    lag: Option<i64>,
    member: Option<String>,
}

/// The group as DescribeGroups tells it (an unknown group comes back "Dead").
fn describe_group(args: &ClientArgs, c: &BaseConsumer, group: &str) -> Result<Described> {
    let list = c.fetch_group_list(Some(group), args.timeout()).map_err(|e| args.explain(e, &format!("cannot describe group '{group}'")))?;
    let Some(g) = list.groups().iter().find(|g| g.name() == group) else {
        // librdkafka leaves out groups the broker calls Dead (unknown).
        let dead = Described {
            group: group.into(),
            state: "Dead".into(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
            offsets: Vec::new(),
        };
        return Ok(dead);
    };
    let members = g
        .members()
        .iter()
        .map(|m| Member {
            member_id: m.id().into(),
            client_id: m.client_id().into(),
            host: m.client_host().into(),
            assignment: if g.protocol_type() == "consumer" { decode_assignment(m.assignment()) } else { BTreeMap::new() },
        })
        .collect();
    Ok(Described {
        group: group.into(),
        state: g.state().into(),
        protocol_type: g.protocol_type().into(),
        protocol: g.protocol().into(),
        members,
        offsets: Vec::new(),
    })
}

/// Committed offsets of `group` for the given partitions (None where nothing is committed).
fn committed(args: &ClientArgs, c: &BaseConsumer, parts: &[(String, i32)]) -> Result<BTreeMap<(String, i32), i64>> {
    let mut tpl = TopicPartitionList::new();
    for (t, p) in parts {
        tpl.add_partition(t, *p);
    }
    if tpl.count() == 0 {
        return Ok(BTreeMap::new());
    }
    let got = c.committed_offsets(tpl, args.timeout()).map_err(|e| args.explain(e, "cannot read committed offsets"))?;
    Ok(got
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
            _ => None,
        })
        .collect())
}

/// Every partition of every user topic.
fn all_partitions(args: &ClientArgs, c: &BaseConsumer) -> Result<Vec<(String, i32)>> {
    let md = args.metadata(c.client())?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| !t.name().starts_with("__"))
        .flat_map(|t| t.partitions().iter().map(move |p| (t.name().to_string(), p.id())))
        .collect())
}

fn describe(args: &ClientArgs, group: &str) -> Result<()> {
    let c = args.consumer(Some(group), &[])?;
    let mut d = describe_group(args, &c, group)?;
    let offsets = committed(args, &c, &all_partitions(args, &c)?)?;
    if d.state == "Dead" && d.members.is_empty() && offsets.is_empty() {
        bail!("no consumer group named '{group}' (see `runnel group list`)");
    }
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for m in &d.members {
        for (t, ps) in &m.assignment {
            for p in ps {
                owner.insert((t.clone(), *p), m.client_id.clone());
            }
        }
    }
    let mut keys: Vec<(String, i32)> = offsets.keys().chain(owner.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    for (t, p) in keys {
        let (_, high) = c.fetch_watermarks(&t, p, args.timeout()).map_err(|e| args.explain(e, &format!("cannot read offsets of {t}/{p}")))?;
        let committed = offsets.get(&(t.clone(), p)).copied();
        let member = owner.get(&(t.clone(), p)).cloned();
        d.offsets.push(PartitionOffset { topic: t, partition: p, committed, log_end: high, lag: committed.map(|o| (high - o).max(0)), member });
    }
    emit(args.json, &d, |d| {
        let lag: i64 = d.offsets.iter().filter_map(|o| o.lag).sum();
        let mut out = fields(&[
            ("group", d.group.clone()),
            ("state", d.state.clone()),
            ("protocol", if d.protocol.is_empty() { "-".into() } else { format!("{} ({})", d.protocol, d.protocol_type) }),
            ("members", d.members.len().to_string()),
            ("total lag", lag.to_string()),
        ]);
        if !d.members.is_empty() {
            let mut t = Table::new(&["MEMBER", "CLIENT", "HOST", "ASSIGNMENT"]);
            for m in &d.members {
                let a: Vec<String> = m
                    .assignment
                    .iter()
                    .map(|(t, ps)| format!("{t}:{}", ps.iter().map(i32::to_string).collect::<Vec<_>>().join(",")))
                    .collect();
                t.row(vec![m.member_id.clone(), m.client_id.clone(), m.host.clone(), a.join(" ")]);
            }
            out.push('\n');
            out.push_str(&t.render());
        }
        if !d.offsets.is_empty() {
            let mut t = Table::new(&["TOPIC", "PARTITION", "COMMITTED", "LOG END", "LAG", "MEMBER"]);
            let dash = |v: Option<i64>| v.map_or("-".into(), |v| v.to_string());
            for o in &d.offsets {
                t.row(vec![
                    o.topic.clone(),
                    o.partition.to_string(),
                    dash(o.committed),
                    o.log_end.to_string(),
                    dash(o.lag),
                    o.member.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            out.push('\n');
            out.push_str(&t.render());
        }
        out
    })
}

#[derive(Serialize)]
struct Deleted {
    deleted: Vec<String>,
}

fn delete(args: &ClientArgs, groups: &[String]) -> Result<()> {
    let admin = args.admin()?;
    let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    let res = block_on(admin.delete_groups(&refs, &args.admin_opts())).map_err(|e| args.explain(e, "cannot delete groups"))?;
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for r in res {
        match r {
            Ok(g) => deleted.push(g),
            Err((g, code)) => {
                let hint = match code {
                    RDKafkaErrorCode::NonEmptyGroup => " (it has active members: stop its consumers first)",
                    RDKafkaErrorCode::GroupIdNotFound => " (see `runnel group list`)",
                    _ => "",
                };
                errors.push(format!("cannot delete group '{g}': {code}{hint}"));
            }
        }
    }
    if !deleted.is_empty() || errors.is_empty() {
        emit(args.json, &Deleted { deleted }, |d| d.deleted.iter().map(|g| format!("deleted group {g}\n")).collect())?;
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(())
}

#[derive(Serialize)]
struct Reset {
    group: String,
    dry_run: bool,
    offsets: Vec<Move>,
}

#[derive(Serialize)]
struct Move {
    topic: String,
    partition: i32,
    current: Option<i64>,
    new: i64,
}

fn reset(args: &ClientArgs, group: &str, topics: &[String], all_topics: bool, only: &[i32], to: OffsetSpec, dry_run: bool) -> Result<()> {
    if !only.is_empty() && topics.len() != 1 {
        bail!("--partition needs exactly one --topic");
    }
    let c = args.consumer(Some(group), &[])?;
    let d = describe_group(args, &c, group)?;
    if !d.members.is_empty() {
        let msg = format!(
            "group '{group}' has {} active member(s) (state {}): stop its consumers first; offsets can only be reset while the group is empty",
            d.members.len(),
            d.state
        );
        if !dry_run {
            bail!(msg);
        }
        eprintln!("runnel: warning: {msg}");
    }
    let current = committed(args, &c, &all_partitions(args, &c)?)?;
    let md = args.metadata(c.client())?;
    let mut targets: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    if all_topics {
        for (t, p) in current.keys() {
            targets.entry(t.clone()).or_default().push(*p);
        }
        if targets.is_empty() {
            bail!("group '{group}' has no committed offsets: name the topics with --topic");
        }
    }
    for t in topics {
        let ps = partitions_of(&md, t)?;
        if let Some(p) = only.iter().find(|p| !ps.contains(p)) {
            bail!("topic '{t}' has no partition {p}");
        }
        targets.insert(t.clone(), if only.is_empty() { ps } else { only.to_vec() });
    }
    let mut moves = Vec::new();
    let mut tpl = TopicPartitionList::new();
    for (t, ps) in &targets {
        for (p, new) in resolve_offsets(args, &c, t, ps, to)? {
            tpl.add_partition_offset(t, p, Offset::Offset(new)).expect("valid offset");
            moves.push(Move { topic: t.clone(), partition: p, current: current.get(&(t.clone(), p)).copied(), new });
        }
    }
    if !dry_run {
        c.commit(&tpl, CommitMode::Sync).map_err(|e| args.explain(e, &format!("cannot commit the new offsets of group '{group}'")))?;
    }
    let r = Reset { group: group.into(), dry_run, offsets: moves };
    emit(args.json, &r, |r| {
        let mut out = if r.dry_run {
            format!("dry run: group {} would be moved as below (nothing committed)\n", r.group)
        } else {
            format!("reset offsets of group {}\n", r.group)
        };
        let mut t = Table::new(&["TOPIC", "PARTITION", "CURRENT", "NEW"]);
        for m in &r.offsets {
            t.row(vec![m.topic.clone(), m.partition.to_string(), m.current.map_or("-".into(), |o| o.to_string()), m.new.to_string()]);
        }
        out.push_str(&t.render());
        out
    })
}

/// A member's assigned partitions, decoded from the consumer protocol's assignment bytes.
fn decode_assignment(bytes: Option<&[u8]>) -> BTreeMap<String, Vec<i32>> {
    let mut out = BTreeMap::new();
    let Some(b) = bytes.filter(|b| b.len() >= 2) else { return out };
    let mut buf = Bytes::copy_from_slice(b);
    // Newer versions only add fields at the end, so read them as the newest we know.
    let version = buf.get_i16().clamp(0, 3);
    if let Ok(a) = ConsumerProtocolAssignment::decode(&mut buf, version) {
        for tp in a.assigned_partitions {
            let mut ps = tp.partitions;
            ps.sort_unstable();
            out.entry(tp.topic.to_string()).or_insert_with(Vec::new).extend(ps);
        }
    }
    out
}
