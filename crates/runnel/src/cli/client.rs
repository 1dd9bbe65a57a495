//! What every client command shares: the connection flags (`--brokers`, `--json`,
//! `--timeout`), building librdkafka clients from them, a reachability check that turns
//! "nothing listens there" into an error with a hint, error hints for librdkafka errors,
//! and offset specs (`start`, `end`, `N`, `-N`, `@TIME`) resolved against watermarks.
//! It must never speak the Kafka protocol by hand: librdkafka does that.

use std::future::Future;
use std::net::{TcpStream, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::{Client, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

/// Connection and output flags of every client command.
#[derive(clap::Args, Clone, Debug)]
pub struct ClientArgs {
    /// Bootstrap brokers, HOST:PORT[,HOST:PORT…]
    #[arg(short = 'b', long, env = "RUNNEL_BROKERS", default_value = "127.0.0.1:9092", global = true, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub brokers: String,
    /// Print JSON instead of human-readable text
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to wait for the cluster before giving up, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 10.0, global = true)]
    pub timeout: f64,
}

impl ClientArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout.max(0.1))
    }

    /// A librdkafka config pointed at `--brokers`.
    pub fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers).set("client.id", "runnel-cli");
        c
    }

    /// Fails fast, with a hint, when no bootstrap broker accepts a TCP connection; else
    /// librdkafka would retry silently until the timeout.
    pub fn check_reachable(&self) -> Result<()> {
        let wait = self.timeout().min(Duration::from_secs(5));
        let mut last = String::from("no address given");
        for hp in self.brokers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let addrs = match hp.to_socket_addrs() {
                Ok(a) => a,
                Err(e) => {
                    last = format!("{hp}: {e}");
                    continue;
                }
            };
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, wait) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = format!("{e}"),
                }
            }
        }
        bail!(
            "cannot reach broker at {} ({last}): is `runnel broker` running? set --brokers or RUNNEL_BROKERS",
            self.brokers
        )
    }

    pub fn admin(&self) -> Result<AdminClient<DefaultClientContext>> {
        self.check_reachable()?;
        self.config().create().context("cannot create the Kafka admin client")
    }

    pub fn admin_opts(&self) -> AdminOptions {
        AdminOptions::new().request_timeout(Some(self.timeout())).operation_timeout(Some(self.timeout()))
    }

    /// A consumer that joins no group until told to: `group` is the group whose offsets it
    /// reads or commits (a placeholder when None; librdkafka wants one for `assign`).
    pub fn consumer(&self, group: Option<&str>, extra: &[(&str, &str)]) -> Result<BaseConsumer> {
        self.check_reachable()?;
        let mut c = self.config();
        c.set("group.id", group.unwrap_or("runnel-cli"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        for (k, v) in extra {
            c.set(*k, *v);
        }
        c.create().context("cannot create the Kafka consumer")
    }

    /// Metadata for every topic (never auto-creates one).
    pub fn metadata<X: ClientContext>(&self, client: &Client<X>) -> Result<Metadata> {
        client.fetch_metadata(None, self.timeout()).map_err(|e| self.explain(e, "cannot read cluster metadata"))
    }

    /// Wraps a librdkafka error with what we were doing and, for the usual suspects, a hint.
    pub fn explain(&self, e: KafkaError, doing: &str) -> anyhow::Error {
        let hint = match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::OperationTimedOut | RDKafkaErrorCode::RequestTimedOut) => {
                format!(": no answer from {} within {:?} (is it a Kafka broker? try a longer --timeout)", self.brokers, self.timeout())
            }
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure) => {
                format!(": lost the connection to {} (is `runnel broker` running? set --brokers)", self.brokers)
            }
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                ": no such topic (see `runnel topic list`)".to_string()
            }
            _ => String::new(),
        };
        anyhow!("{doing}: {e}{hint}")
    }
}

/// Runs an admin future on a small runtime (librdkafka does the I/O on its own threads).
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime").block_on(f)
}

/// The partitions of `topic` in the metadata, or an error naming the topic.
pub fn partitions_of(md: &Metadata, topic: &str) -> Result<Vec<i32>> {
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| anyhow!("topic '{topic}' does not exist (see `runnel topic list`, or create it with `runnel topic create {topic}`)"))?;
    let mut ps: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ps.sort_unstable();
    Ok(ps)
}

/// Splits `KEY=VALUE`.
pub fn key_value(kv: &str, what: &str) -> Result<(String, String)> {
    let (k, v) = kv.split_once('=').ok_or_else(|| anyhow!("{what} expects KEY=VALUE, got '{kv}'"))?;
    if k.is_empty() {
        bail!("{what} expects KEY=VALUE, got '{kv}' (empty key)");
    }
    Ok((k.to_string(), v.to_string()))
}

/// Where to start reading, or what to reset to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start (low watermark): `start`, `earliest`, `beginning`.
    Start,
    /// The log end (high watermark): `end`, `latest`.
    End,
    /// An absolute offset `N` (clamped into the log).
    At(i64),
    /// `-N`: N records before the end.
    FromEnd(i64),
    /// `@TIME`: the first record with a timestamp at or after TIME (ms since the epoch, or
    /// `YYYY-MM-DDTHH:MM:SS[.mmm]Z`).
    Time(i64),
}

impl FromStr for OffsetSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "start" | "earliest" | "beginning" => return Ok(OffsetSpec::Start),
            "end" | "latest" => return Ok(OffsetSpec::End),
            _ => {}
        }
        if let Some(t) = s.strip_prefix('@') {
            return parse_time(t).map(OffsetSpec::Time);
        }
        match s.parse::<i64>() {
            Ok(n) if n < 0 => Ok(OffsetSpec::FromEnd(-n)),
            Ok(n) => Ok(OffsetSpec::At(n)),
            Err(_) => Err(format!("'{s}' is not an offset: use start, end, N, -N or @TIME (ms since the epoch or 2024-05-01T12:00:00Z)")),
        }
    }
}

/// Milliseconds since the epoch from `1714564800000` or `2024-05-01T12:00:00[.123]Z`.
fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || format!("'{s}' is not a time: use ms since the epoch or YYYY-MM-DDTHH:MM:SS[.mmm]Z (UTC)");
    let s2 = s.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = s2.split_once('T').ok_or_else(bad)?;
    let d: Vec<i64> = date.split('-').map(|x| x.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    if d.len() != 3 || t.len() != 3 || frac.is_empty() || frac.len() > 3 {
        return Err(bad());
    }
    let ms_frac: i64 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
    let days = days_from_civil(d[0], d[1], d[2]);
    Ok(((days * 24 + t[0]) * 60 + t[1]) * 60_000 + t[2] * 1000 + ms_frac)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Resolves `spec` to a concrete offset for each partition, inside `[low, high]`.
pub fn resolve_offsets(args: &ClientArgs, c: &BaseConsumer, topic: &str, partitions: &[i32], spec: OffsetSpec) -> Result<Vec<(i32, i64)>> {
    let by_time = match spec {
        OffsetSpec::Time(ts) => {
            let mut tpl = TopicPartitionList::new();
            for &p in partitions {
                tpl.add_partition_offset(topic, p, Offset::Offset(ts)).expect("valid offset");
            }
            Some(c.offsets_for_times(tpl, args.timeout()).map_err(|e| args.explain(e, "cannot look up offsets by time"))?)
        }
        _ => None,
    };
    let mut out = Vec::with_capacity(partitions.len());
    for &p in partitions {
        let (low, high) =
            c.fetch_watermarks(topic, p, args.timeout()).map_err(|e| args.explain(e, &format!("cannot read offsets of {topic}/{p}")))?;
        let off = match spec {
            OffsetSpec::Start => low,
            OffsetSpec::End => high,
            OffsetSpec::At(n) => n.clamp(low, high),
            OffsetSpec::FromEnd(n) => (high - n).max(low),
            OffsetSpec::Time(_) => {
                let found = by_time.as_ref().and_then(|t| t.find_partition(topic, p)).map(|e| e.offset());
                match found {
                    Some(Offset::Offset(o)) => o.clamp(low, high),
                    _ => high, // no record at or after that time
                }
            }
        };
        out.push((p, off));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_specs() {
        assert_eq!("start".parse(), Ok(OffsetSpec::Start));
        assert_eq!("latest".parse(), Ok(OffsetSpec::End));
        assert_eq!("42".parse(), Ok(OffsetSpec::At(42)));
        assert_eq!("-3".parse(), Ok(OffsetSpec::FromEnd(3)));
        assert_eq!("@1714564800000".parse(), Ok(OffsetSpec::Time(1_714_564_800_000)));
        assert_eq!("@2024-05-01T12:00:00Z".parse(), Ok(OffsetSpec::Time(1_714_564_800_000)));
        assert_eq!("@2024-05-01T12:00:00.5Z".parse(), Ok(OffsetSpec::Time(1_714_564_800_500)));
        assert_eq!("@1970-01-01T00:00:00Z".parse(), Ok(OffsetSpec::Time(0)));
        assert!("soon".parse::<OffsetSpec>().is_err());
        assert!("@yesterday".parse::<OffsetSpec>().is_err());
    }
}
