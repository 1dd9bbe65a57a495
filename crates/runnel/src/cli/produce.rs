//! `runnel produce TOPIC`: one record per line of stdin (or `--file`), optionally split
//! into key and value at `--key-separator`, with the same `-H` headers on each; then a
//! report of what was written (records per partition and their offsets). librdkafka does
//! the batching, compression and retries; this file only feeds it and counts receipts.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message};
use serde::Serialize;

use super::client::{key_value, partitions_of, ClientArgs};
use super::output::{emit, Progress, Table};

#[derive(Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Topic to write to
    topic: String,
    /// Read records from this file instead of stdin
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// Split each line at the first SEP into key and value (a line without SEP has no key)
    #[arg(short = 'K', long, value_name = "SEP")]
    key_separator: Option<String>,
    /// A header on every record, KEY=VALUE (repeatable)
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Write every record to this partition [default: by key hash; spread when no key]
    #[arg(short, long)]
    partition: Option<i32>,
    /// Batch compression
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    compression: String,
    /// Acknowledgements to wait for: 0 (none), 1 (the leader) or all
    #[arg(long, default_value = "all", value_parser = ["0", "1", "all", "-1"])]
    acks: String,
}

/// Delivery receipts, counted per partition.
#[derive(Default)]
struct Receipts {
    by_partition: BTreeMap<i32, (i64, i64, u64)>,
    failed: u64,
    first_error: Option<KafkaError>,
}

#[derive(Default)]
struct Ctx(Mutex<Receipts>);

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut r = self.0.lock().expect("receipts lock");
        match result {
            Ok(m) => {
                let e = r.by_partition.entry(m.partition()).or_insert((i64::MAX, i64::MIN, 0));
                // acks=0 has no offsets (-1).
                e.0 = e.0.min(m.offset());
                e.1 = e.1.max(m.offset());
                e.2 += 1;
            }
            Err((e, _)) => {
                r.failed += 1;
                r.first_error.get_or_insert_with(|| e.clone());
            }
        }
    }
}

#[derive(Serialize)]
struct Report {
    topic: String,
    records: u64,
    failed: u64,
    partitions: Vec<Written>,
}

#[derive(Serialize)]
struct Written {
    partition: i32,
    records: u64,
    first_offset: Option<i64>,
    last_offset: Option<i64>,
}

pub fn run(a: ProduceArgs) -> Result<()> {
    let args = &a.client;
    let headers: Vec<(String, String)> = a.headers.iter().map(|h| key_value(h, "-H/--header")).collect::<Result<_>>()?;
    let input: Box<dyn BufRead> = match &a.file {
        Some(p) => Box::new(BufReader::new(File::open(p).with_context(|| format!("cannot open {}", p.display()))?)),
        None => Box::new(BufReader::new(std::io::stdin())),
    };
    args.check_reachable()?;
    let acks = if a.acks == "-1" { "all" } else { &a.acks };
    let producer: BaseProducer<Ctx> = args
        .config()
        .set("acks", acks)
        .set("compression.type", &a.compression)
        .set("linger.ms", "5")
        .set("message.timeout.ms", (args.timeout().as_millis().max(1000)).to_string())
        .create_with_context(Ctx::default())
        .context("cannot create the Kafka producer")?;
    // Asking for the topic by name auto-creates it where the broker allows that.
    let md = producer.client().fetch_metadata(Some(&a.topic), args.timeout()).map_err(|e| args.explain(e, "cannot read cluster metadata"))?;
    let parts = partitions_of(&md, &a.topic).ok().filter(|p| !p.is_empty());
    let Some(parts) = parts else {
        bail!("topic '{}' does not exist and the broker did not create it: create it with `runnel topic create {}`", a.topic, a.topic);
    };
    if let Some(p) = a.partition {
        if !parts.contains(&p) {
            bail!("topic '{}' has no partition {p} (it has {}: 0..{})", a.topic, parts.len(), parts.len());
        }
    }

    let mut progress = Progress::new();
    let mut sent = 0u64;
    let mut line = Vec::new();
    let mut input = input;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).context("cannot read input")? == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let (key, value) = split(&line, a.key_separator.as_deref());
        let mut hs = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in &headers {
            hs = hs.insert(Header { key: k, value: Some(v) });
        }
        let mut rec = BaseRecord::<[u8], [u8]>::to(&a.topic).payload(value).headers(hs);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(p) = a.partition {
            rec = rec.partition(p);
        }
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(args.explain(e, "cannot send a record")),
            }
        }
        sent += 1;
        producer.poll(Duration::ZERO);
        progress.update(|| format!("sent {sent} records…"));
    }
    progress.update(|| format!("sent {sent} records, waiting for acknowledgements…"));
    let flushed = producer.flush(args.timeout() + Duration::from_secs(5));
    progress.finish();
    let r = std::mem::take(&mut *producer.context().0.lock().expect("receipts lock"));
    let report = Report {
        topic: a.topic.clone(),
        records: r.by_partition.values().map(|e| e.2).sum(),
        failed: r.failed,
        partitions: r
            .by_partition
            .iter()
            .map(|(&p, &(first, last, n))| Written {
                partition: p,
                records: n,
                first_offset: (first >= 0).then_some(first),
                last_offset: (last >= 0).then_some(last),
            })
            .collect(),
    };
    if report.records > 0 || report.failed == 0 {
        emit(args.json, &report, human)?;
    }
    if let Some(e) = r.first_error {
        bail!("{} of {sent} records were not written: {}", r.failed, args.explain(e, "delivery failed"));
    }
    if let Err(e) = flushed {
        bail!("{}", args.explain(e, &format!("{} records were still unacknowledged", sent - report.records)));
    }
    Ok(())
}

/// Key and value of one line: split at the first separator, if one is configured and found.
fn split<'a>(line: &'a [u8], sep: Option<&str>) -> (Option<&'a [u8]>, &'a [u8]) {
    let Some(sep) = sep.map(str::as_bytes).filter(|s| !s.is_empty()) else { return (None, line) };
    match line.windows(sep.len()).position(|w| w == sep) {
        Some(i) => (Some(&line[..i]), &line[i + sep.len()..]),
        None => (None, line),
    }
}

fn human(r: &Report) -> String {
    let mut out = format!("wrote {} record(s) to {}\n", r.records, r.topic);
    if !r.partitions.is_empty() {
        let mut t = Table::new(&["PARTITION", "RECORDS", "OFFSETS"]);
        for w in &r.partitions {
            let offsets = match (w.first_offset, w.last_offset) {
                (Some(a), Some(b)) if a == b => a.to_string(),
                (Some(a), Some(b)) => format!("{a}-{b}"),
                _ => "-".into(),
            };
            t.row(vec![w.partition.to_string(), w.records.to_string(), offsets]);
        }
        out.push_str(&t.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_at_the_first_separator() {
        assert_eq!(split(b"k:v:w", Some(":")), (Some(&b"k"[..]), &b"v:w"[..]));
        assert_eq!(split(b"novalue", Some(":")), (None, &b"novalue"[..]));
        assert_eq!(split(b"k::v", Some("::")), (Some(&b"k"[..]), &b"v"[..]));
        assert_eq!(split(b"a:b", None), (None, &b"a:b"[..]));
    }
}
