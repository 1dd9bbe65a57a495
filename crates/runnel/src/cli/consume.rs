//! `runnel consume TOPIC`: prints records as they arrive, like `tail -f`, until Ctrl-C,
//! `-n COUNT` records, or (with `-e`/`--no-follow`) the end of every partition.
//!
//! Without `--group` it reads the partitions it is given (all by default) from
//! `--offset`, joins no group and commits nothing. With `--group` it subscribes as a member
//! of that group, starts from the group's committed offsets (`--offset start|end` applies
//! where there is none) and commits what it printed.
//!
//! Output: the `--format` template per record (default `%v`), or one JSON object per line
//! with `--json`. Template fields: `%k` key, `%v` value, `%p` partition, `%o` offset,
//! `%t` timestamp (ms since the epoch), `%h` headers (`k1=v1,k2=v2`), `%T` topic, `%%` a
//! percent sign; `\n` and `\t` are a newline and a tab. Each record's text ends with a
//! newline. Keys, values and headers are printed as UTF-8 (invalid bytes become U+FFFD).

use std::collections::BTreeSet;
use std::io::{BufWriter, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;

use super::client::{partitions_of, resolve_offsets, ClientArgs, OffsetSpec};

#[derive(Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Topic to read
    topic: String,
    /// Where to start: start, end, N (an offset), -N (N before the end) or @TIME (ms since
    /// the epoch, or 2024-05-01T12:00:00Z) [default: start; with --group: the committed
    /// offset, else start]
    #[arg(short, long, value_name = "WHERE", allow_hyphen_values = true)]
    offset: Option<OffsetSpec>,
    /// Read as a member of this consumer group and commit the offsets read
    #[arg(short, long)]
    group: Option<String>,
    /// Stop after COUNT records
    #[arg(short = 'n', long, value_name = "COUNT")]
    count: Option<u64>,
    /// Read only this partition (repeatable) [default: all]
    #[arg(short, long)]
    partition: Vec<i32>,
    /// Exit at the end of the partitions instead of waiting for new records
    #[arg(short = 'e', long = "no-follow")]
    no_follow: bool,
    /// Output template: %k key, %v value, %p partition, %o offset, %t timestamp (ms),
    /// %h headers, %T topic, %% percent; \n, \t
    #[arg(short, long, default_value = "%v")]
    format: String,
}

/// One record for `--json`.
#[derive(Serialize)]
struct Record<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<HeaderOut>,
}

#[derive(Serialize)]
struct HeaderOut {
    key: String,
    value: Option<String>,
}

fn text(b: Option<&[u8]>) -> Option<String> {
    b.map(|b| String::from_utf8_lossy(b).into_owned())
}

fn headers(m: &BorrowedMessage<'_>) -> Vec<HeaderOut> {
    m.headers().map(|h| h.iter().map(|h| HeaderOut { key: h.key.to_string(), value: text(h.value) }).collect()).unwrap_or_default()
}

/// Renders one record through the `--format` template.
fn render(fmt: &str, m: &BorrowedMessage<'_>, out: &mut Vec<u8>) {
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('k') => out.extend_from_slice(m.key().unwrap_or_default()),
                Some('v') => out.extend_from_slice(m.payload().unwrap_or_default()),
                Some('p') => out.extend_from_slice(m.partition().to_string().as_bytes()),
                Some('o') => out.extend_from_slice(m.offset().to_string().as_bytes()),
                Some('t') => out.extend_from_slice(m.timestamp().to_millis().map_or("-".into(), |t| t.to_string()).as_bytes()),
                Some('T') => out.extend_from_slice(m.topic().as_bytes()),
                Some('h') => {
                    let hs: Vec<String> = headers(m).into_iter().map(|h| format!("{}={}", h.key, h.value.unwrap_or_default())).collect();
                    out.extend_from_slice(hs.join(",").as_bytes());
                }
                Some('%') => out.push(b'%'),
                Some(other) => {
                    out.push(b'%');
                    out.extend_from_slice(other.to_string().as_bytes());
                }
                None => out.push(b'%'),
            },
            '\\' => match chars.next() {
                Some('n') => out.push(b'\n'),
                Some('t') => out.push(b'\t'),
                Some('\\') => out.push(b'\\'),
                Some(other) => {
                    out.push(b'\\');
                    out.extend_from_slice(other.to_string().as_bytes());
                }
                None => out.push(b'\\'),
            },
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out.push(b'\n');
}

/// Ctrl-C and SIGTERM set the flag, so a group member can commit and leave cleanly.
fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut term) = signal(SignalKind::terminate()) else { return };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        flag.store(true, Ordering::SeqCst);
    });
    stop
}

pub fn run(a: ConsumeArgs) -> Result<()> {
    let args = &a.client;
    if a.group.is_some() {
        if !a.partition.is_empty() {
            bail!("--partition cannot be used with --group: the group assigns partitions to its members");
        }
        if let Some(OffsetSpec::At(_) | OffsetSpec::FromEnd(_) | OffsetSpec::Time(_)) = a.offset {
            bail!("with --group, --offset is only start or end (where the group has no committed offset); move a group with `runnel group reset-offsets`");
        }
    }
    let reset = match a.offset {
        Some(OffsetSpec::End) => "latest",
        _ => "earliest",
    };
    let consumer = args.consumer(
        a.group.as_deref(),
        &[
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", reset),
            ("enable.auto.commit", if a.group.is_some() { "true" } else { "false" }),
            ("enable.auto.offset.store", "false"),
            ("fetch.wait.max.ms", "200"),
        ],
    )?;
    let md = args.metadata(consumer.client())?;
    let all = partitions_of(&md, &a.topic)?;
    // Partitions known to be at their end (none to read now).
    let mut at_end = BTreeSet::new();
    let wanted: Option<BTreeSet<i32>> = match &a.group {
        Some(_) => {
            consumer.subscribe(&[&a.topic]).map_err(|e| args.explain(e, "cannot subscribe"))?;
            None
        }
        None => {
            let parts = if a.partition.is_empty() { all.clone() } else { a.partition.clone() };
            if let Some(p) = parts.iter().find(|p| !all.contains(p)) {
                bail!("topic '{}' has no partition {p} (it has {})", a.topic, all.len());
            }
            let starts = resolve_offsets(args, &consumer, &a.topic, &parts, a.offset.unwrap_or(OffsetSpec::Start))?;
            let mut tpl = TopicPartitionList::new();
            for &(p, o) in &starts {
                tpl.add_partition_offset(&a.topic, p, Offset::Offset(o)).expect("valid offset");
            }
            consumer.assign(&tpl).map_err(|e| args.explain(e, "cannot assign partitions"))?;
            Some(parts.into_iter().collect())
        }
    };
    let result = consume_loop(&a, &consumer, wanted, &mut at_end);
    if a.group.is_some() {
        // Commit what was printed; "no offset" just means nothing was read.
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => eprintln!("runnel: warning: {}", args.explain(e, "cannot commit offsets")),
        }
        consumer.unsubscribe();
    }
    result
}

fn consume_loop(a: &ConsumeArgs, consumer: &BaseConsumer, wanted: Option<BTreeSet<i32>>, at_end: &mut BTreeSet<i32>) -> Result<()> {
    let args = &a.client;
    let stop = stop_flag();
    let tty = std::io::stdout().is_terminal();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut buf = Vec::new();
    let mut printed = 0u64;
    if a.count == Some(0) {
        return Ok(());
    }
    let finished = |at_end: &BTreeSet<i32>| -> bool {
        if !a.no_follow {
            return false;
        }
        match &wanted {
            Some(w) => w.is_subset(at_end),
            None => consumer.assignment().is_ok_and(|tpl| {
                let assigned: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                !assigned.is_empty() && assigned.iter().all(|p| at_end.contains(p))
            }),
        }
    };
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(100)) {
            None => out.flush()?,
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
                if finished(at_end) {
                    break;
                }
            }
            // librdkafka reconnects by itself: say so, and keep following.
            Some(Err(e))
                if matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::Resolve)
                ) =>
            {
                eprintln!("runnel: warning: {} (retrying)", args.explain(e, "lost the broker"));
            }
            Some(Err(e)) => return Err(args.explain(e, "cannot read")),
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                buf.clear();
                if args.json {
                    let r = Record {
                        topic: m.topic(),
                        partition: m.partition(),
                        offset: m.offset(),
                        timestamp: m.timestamp().to_millis(),
                        key: text(m.key()),
                        value: text(m.payload()),
                        headers: headers(&m),
                    };
                    serde_json::to_writer(&mut buf, &r)?;
                    buf.push(b'\n');
                } else {
                    render(&a.format, &m, &mut buf);
                }
                out.write_all(&buf)?;
                if tty {
                    out.flush()?;
                }
                if a.group.is_some() {
                    consumer.store_offset_from_message(&m).map_err(|e| args.explain(e, "cannot store the offset"))?;
                }
                printed += 1;
                if a.count.is_some_and(|n| printed >= n) {
                    break;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}
