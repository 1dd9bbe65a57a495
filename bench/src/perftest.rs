//! Kafka's own producer and consumer benchmarks, `kafka-producer-perf-test` and
//! `kafka-consumer-perf-test` (run through `scripts/apache-kafka tool`), against whichever
//! broker is under test, and the version of the Apache Kafka that script runs.

use anyhow::{bail, Context, Result};

use crate::broker::apache_kafka_script;

pub struct PerfTest {
    pub records_per_s: f64,
    pub mb_per_s: f64,
    /// The tool's own producer-side latency percentiles, in ms.
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Sends `records` records of `size` bytes as fast as the Java producer can, with its
/// default settings and `props` (`key=value`), and parses the tool's summary line.
pub fn run(addr: &str, topic: &str, records: u64, size: usize, props: &[String]) -> Result<PerfTest> {
    run_at(addr, topic, records, size, -1, props)
}

/// [`run`] at `throughput` records/s at most (-1: as fast as it can).
pub fn run_at(addr: &str, topic: &str, records: u64, size: usize, throughput: i64, props: &[String]) -> Result<PerfTest> {
    let mut args = vec!["--topic".to_string(), topic.to_string(), "--num-records".into(), records.to_string()];
    args.extend(["--record-size".into(), size.to_string(), "--throughput".into(), throughput.to_string()]);
    args.extend(["--producer-props".into(), format!("bootstrap.servers={addr}")]);
    args.extend(props.iter().cloned());
    let text = tool("kafka-producer-perf-test", &args)?;
    let summary = text.lines().rev().find(|l| l.contains("records sent")).context("no summary line")?;
    parse_summary(summary).with_context(|| format!("cannot read the summary line: {summary}"))
}

/// Consumer throughput as `kafka-consumer-perf-test` reports it (fetch time only, without
/// the group's join).
pub struct ConsumeTest {
    pub records_per_s: f64,
    pub mb_per_s: f64,
}

/// Reads `records` records of `topic` from offset 0 with the Java consumer (its defaults
/// and `props`), and parses the tool's result line.
pub fn consume(addr: &str, topic: &str, records: u64, props: &[String]) -> Result<ConsumeTest> {
    let mut args = vec!["--bootstrap-server".to_string(), addr.to_string(), "--topic".into(), topic.to_string()];
    args.extend(["--num-records".into(), records.to_string(), "--timeout".into(), "60000".into(), "--hide-header".into()]);
    for p in props {
        args.extend(["--command-property".into(), p.clone()]);
    }
    let text = tool("kafka-consumer-perf-test", &args)?;
    // start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
    // rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
    let line = text.lines().rev().find(|l| l.split(',').count() >= 10).context("no result line")?;
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let consumed: f64 = fields[4].parse().with_context(|| format!("cannot read: {line}"))?;
    if consumed < records as f64 {
        bail!("kafka-consumer-perf-test read {consumed} of {records} records: {line}");
    }
    Ok(ConsumeTest { mb_per_s: fields[8].parse().with_context(|| format!("cannot read: {line}"))?, records_per_s: fields[9].parse().with_context(|| format!("cannot read: {line}"))? })
}

/// Runs one of Kafka's tools and returns its standard output. `scripts/apache-kafka` starts
/// tools with the C1 compiler only (quick to start); with `security.protocol` among the
/// arguments C2 is allowed too, as the JDK's AES-GCM and GHASH intrinsics that TLS needs are
/// C2's (under C1 the client, not the broker, sets the pace of a TLS run).
fn tool(name: &str, args: &[String]) -> Result<String> {
    let tls = args.iter().any(|a| a.starts_with("security.protocol="));
    let mut cmd = std::process::Command::new(apache_kafka_script());
    if tls {
        let opts = std::env::var("APACHE_KAFKA_JVM_OPTS").unwrap_or_default();
        cmd.env("APACHE_KAFKA_JVM_OPTS", format!("{opts} -XX:TieredStopAtLevel=4"));
    }
    let out = cmd
        .args(["tool", name])
        .args(args)
        .output()
        .with_context(|| format!("run scripts/apache-kafka tool {name}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("{name} failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
    }
    Ok(text)
}

/// `5000000 records sent, 812345.6 records/sec (77.47 MB/sec), 12.34 ms avg latency,
/// 456.00 ms max latency, 5 ms 50th, 20 ms 95th, 30 ms 99th, 50 ms 99.9th.`
fn parse_summary(line: &str) -> Option<PerfTest> {
    let number_before = |suffix: &str| -> Option<f64> {
        let at = line.find(suffix)?;
        line[..at].trim_end().rsplit([' ', '(']).next()?.parse().ok()
    };
    Some(PerfTest {
        records_per_s: number_before(" records/sec")?,
        mb_per_s: number_before(" MB/sec")?,
        max: number_before(" ms max latency")?,
        p50: number_before(" ms 50th")?,
        p99: number_before(" ms 99th")?,
        p999: number_before(" ms 99.9th")?,
    })
}

/// The Apache Kafka version `scripts/apache-kafka` runs (from its pom).
pub fn kafka_version() -> String {
    let pom = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/apache-kafka/pom.xml");
    std::fs::read_to_string(pom)
        .ok()
        .and_then(|t| Some(t.split("<kafka.version>").nth(1)?.split('<').next()?.to_string()))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_summary_line() {
        let l = "5000000 records sent, 812345.6 records/sec (77.47 MB/sec), 12.34 ms avg latency, 456.00 ms max latency, 5 ms 50th, 20 ms 95th, 30 ms 99th, 50 ms 99.9th.";
        let p = super::parse_summary(l).unwrap();
        assert_eq!((p.records_per_s, p.mb_per_s, p.max, p.p50, p.p99, p.p999), (812345.6, 77.47, 456.0, 5.0, 30.0, 50.0));
        assert!(super::kafka_version().starts_with('4'), "{}", super::kafka_version());
    }
}
