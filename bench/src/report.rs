//! The results table: one row per measurement, printed aligned on the terminal and as a
//! markdown table for `bench/RESULTS.md`. Presentation only; no measuring here.

use crate::latency::Latency;
use crate::procstat::RunUsage;

/// The groups, in table order (also the values of `--only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Group {
    /// Loopback TCP and disk write+fsync: this machine's limits.
    Limits,
    /// Producer throughput: 3 sizes × acks 1/all × 1/8 partitions × none/lz4.
    Produce,
    /// Consumer throughput reading each produced data set from offset 0.
    Consume,
    /// 1 MB records, produce and consume.
    Large,
    /// End-to-end latency at 10,000 and 100,000 records/s.
    Latency,
    /// Kafka's own kafka-producer-perf-test (the Java producer) against the broker.
    Perftest,
    /// 1,000 idle partitions (RSS); restart with 1,000 × 10 segments (time to Metadata).
    Idle,
    /// Three Runnel nodes on this machine, replication factor 3: acks=all throughput (100 B,
    /// 1 MB) and latency, and the leader killed while producing (Runnel only).
    Cluster,
    /// Kafka's perf tools (the Java client) producing and consuming 1,000 B records over a
    /// PLAINTEXT and an SSL listener of one broker (Runnel only).
    Tls,
    /// Incremental fetch sessions: a Java consumer tailing 1,000 partitions, with sessions
    /// off (cache slots 0) and on, alternated (Runnel only).
    Sessions,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Limits => "limit",
            Group::Produce => "produce",
            Group::Consume => "consume",
            Group::Large => "1MB",
            Group::Latency => "e2e",
            Group::Perftest => "perf-test",
            Group::Idle => "idle",
            Group::Cluster => "cluster",
            Group::Tls => "tls",
            Group::Sessions => "sessions",
        }
    }
}

/// A target and whether it was met (`None`: could not be judged, e.g. no reference).
#[derive(Debug, Clone)]
pub struct Target {
    pub text: String,
    pub met: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub group: Group,
    pub case: String,
    pub rec_s: Option<f64>,
    pub mb_s: Option<f64>,
    /// Fractions of the loopback and disk limits (0.42 = 42 %).
    pub of_loopback: Option<f64>,
    pub of_disk: Option<f64>,
    pub latency: Option<Latency>,
    /// A free-form result where the row measures something else (idle checks).
    pub result: Option<String>,
    pub usage: Option<RunUsage>,
    pub target: Option<Target>,
    /// Requests the clients sent during the run (latency and consume rows).
    pub requests: Option<u64>,
}

impl Row {
    pub fn new(group: Group, case: impl Into<String>) -> Row {
        Row {
            group,
            case: case.into(),
            rec_s: None,
            mb_s: None,
            of_loopback: None,
            of_disk: None,
            latency: None,
            result: None,
            usage: None,
            target: None,
            requests: None,
        }
    }

    /// One-line summary for the progress output.
    pub fn summary(&self) -> String {
        let cells = self.cells();
        let mut parts = Vec::new();
        for (h, c) in HEADERS.iter().zip(cells).skip(2) {
            if c != "-" {
                parts.push(if h.is_empty() { c } else { format!("{h} {c}") });
            }
        }
        parts.join(", ").replace(", met", ": met").replace(", MISSED", ": MISSED")
    }

    /// The broker's CPU time divided by the requests the clients sent (latency and consume rows).
    fn broker_us_per_request(&self) -> Option<f64> {
        let b = self.usage.and_then(|u| u.broker)?;
        let n = self.requests.filter(|n| *n > 0)?;
        Some(b.cpu_s * 1e6 / n as f64)
    }

    fn cells(&self) -> Vec<String> {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let broker = self.usage.and_then(|u| u.broker);
        vec![
            self.group.name().to_string(),
            self.case.clone(),
            opt(self.rec_s.map(|v| thousands(v.round() as u64))),
            opt(self.mb_s.map(|v| format!("{v:.1}"))),
            opt(self.of_loopback.map(percent)),
            opt(self.of_disk.map(percent)),
            opt(self.latency.map(|l| format!("{} / {} / {} / {}", ms(l.p50), ms(l.p99), ms(l.p999), ms(l.max)))),
            opt(self.result.clone()),
            opt(broker.map(|b| format!("{:.2}", b.cpu_s))),
            opt(self.broker_us_per_request().map(|us| format!("{us:.0}"))),
            opt(self.usage.map(|u| u.client_cpu_s).filter(|c| c.is_finite()).map(|c| format!("{c:.2}"))),
            opt(broker.map(|b| format!("{:.0}", b.rss as f64 / 1e6))),
            opt(broker.map(|b| format!("{:.0}", b.peak as f64 / 1e6))),
            opt(self.target.as_ref().map(|t| t.text.clone())),
            opt(self.target.as_ref().map(|t| match t.met {
                Some(true) => "met".to_string(),
                Some(false) => "MISSED".to_string(),
                None => "n/a".to_string(),
            })),
        ]
    }
}

const HEADERS: [&str; 15] = [
    "group",
    "case",
    "records/s",
    "MB/s",
    "% loop",
    "% disk",
    "latency ms p50 / p99 / p99.9 / max",
    "result",
    "broker CPU s",
    "broker µs/request",
    "client CPU s",
    "broker RSS MB",
    "broker peak MB",
    "target",
    "",
];

/// Right-aligned columns (numbers).
const RIGHT: [bool; 15] = [false, false, true, true, true, true, true, false, true, true, true, true, true, false, false];

/// `1234567` → `1,234,567`.
pub fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn percent(f: f64) -> String {
    if f < 0.1 {
        format!("{:.1}%", f * 100.0)
    } else {
        format!("{:.0}%", f * 100.0)
    }
}

pub fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

/// The aligned text table.
pub fn text_table(rows: &[Row]) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(Row::cells).collect();
    let mut width: Vec<usize> = HEADERS.iter().map(|h| h.chars().count()).collect();
    for r in &cells {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |r: &[String]| -> String {
        let mut out = String::new();
        for (i, c) in r.iter().enumerate() {
            let pad = width[i] - c.chars().count();
            if i > 0 {
                out.push_str("  ");
            }
            if RIGHT[i] {
                out.push_str(&" ".repeat(pad));
                out.push_str(c);
            } else {
                out.push_str(c);
                out.push_str(&" ".repeat(pad));
            }
        }
        out.trim_end().to_string()
    };
    let header: Vec<String> = HEADERS.iter().map(|h| h.to_string()).collect();
    let mut out = line(&header);
    out.push('\n');
    out.push_str(&"-".repeat(width.iter().sum::<usize>() + 2 * (width.len() - 1)));
    out.push('\n');
    let mut last_group = None;
    for (row, c) in rows.iter().zip(&cells) {
        if last_group.is_some_and(|g| g != row.group) {
            out.push('\n');
        }
        last_group = Some(row.group);
        out.push_str(&line(c));
        out.push('\n');
    }
    out
}

/// The same table in markdown.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(&format!("| {} |\n", HEADERS.join(" | ")));
    out.push_str(&format!("|{}|\n", RIGHT.iter().map(|r| if *r { "---:" } else { "---" }).collect::<Vec<_>>().join("|")));
    for row in rows {
        let cells: Vec<String> = row.cells().into_iter().map(|c| c.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// One figure per row for the side-by-side table: what the row measures (records/s,
/// latency percentiles, or its result), then the broker's CPU and RSS.
fn headline(r: &Row) -> String {
    let mut parts = Vec::new();
    if let Some(l) = r.latency {
        parts.push(format!("p50 {} / p99 {} / p99.9 {} ms", ms(l.p50), ms(l.p99), ms(l.p999)));
    } else if let Some(v) = r.rec_s {
        parts.push(format!("{} rec/s", thousands(v.round() as u64)));
    } else if let Some(t) = &r.result {
        parts.push(t.clone());
    }
    if let Some(b) = r.usage.and_then(|u| u.broker) {
        parts.push(format!("CPU {:.2} s, RSS {:.0} MB", b.cpu_s, b.rss as f64 / 1e6));
    }
    if let Some(us) = r.broker_us_per_request() {
        parts.push(format!("{us:.0} µs/request"));
    }
    parts.join("; ")
}

/// How the first broker compares with the second on the row's own figure.
fn versus(a: &Row, b: &Row) -> String {
    match (a.latency, b.latency, a.rec_s, b.rec_s) {
        (Some(x), Some(y), _, _) if x.p99 > 0.0 && y.p99 > 0.0 => format!("p99 {} as long", ratio(x.p99 / y.p99)),
        (None, None, Some(x), Some(y)) if y > 0.0 => format!("{} the records/s", ratio(x / y)),
        _ => "-".into(),
    }
}

/// A ratio that stays readable at both ends: "1.38×", and "1/7219×" rather than "0.00×".
fn ratio(r: f64) -> String {
    if r >= 0.1 || r <= 0.0 { format!("{r:.2}×") } else { format!("1/{:.0}×", 1.0 / r) }
}

fn comparison_rows(ours: &[Row], theirs: &[Row]) -> Vec<[String; 5]> {
    ours.iter()
        .map(|a| {
            let b = theirs.iter().find(|b| b.group == a.group && b.case == a.case);
            [
                a.group.name().to_string(),
                a.case.clone(),
                headline(a),
                b.map_or("-".into(), headline),
                b.map_or("-".into(), |b| versus(a, b)),
            ]
        })
        .collect()
}

/// Two brokers' rows side by side (rows matched by group and case), as text.
pub fn comparison_table(a: &str, ours: &[Row], b: &str, theirs: &[Row]) -> String {
    let mut out = format!("{:<10} {:<55} | {a} | {b} | {a} vs {b}\n", "group", "case");
    for r in comparison_rows(ours, theirs) {
        out.push_str(&format!("{:<10} {:<55} | {} | {} | {}\n", r[0], r[1], r[2], r[3], r[4]));
    }
    out
}

/// The same in markdown.
pub fn comparison_markdown(a: &str, ours: &[Row], b: &str, theirs: &[Row]) -> String {
    let mut out = format!("| group | case | {a} | {b} | {a} vs {b} |\n|---|---|---|---|---|\n");
    for r in comparison_rows(ours, theirs) {
        let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        let mut r = Row::new(Group::Produce, "100 B");
        r.rec_s = Some(1_000_000.4);
        r.target = Some(Target { text: "≥ 1,000,000 rec/s".into(), met: Some(true) });
        let t = text_table(&[r.clone()]);
        assert!(t.contains("1,000,000") && t.contains("met"), "{t}");
        let m = markdown_table(&[r]);
        assert_eq!(m.lines().count(), 3);
    }

    #[test]
    fn ratios_stay_readable_when_far_apart() {
        assert_eq!(ratio(1.5), "1.50×");
        assert_eq!(ratio(1.38 / 9962.0), "1/7219×");
        assert_eq!(ratio(0.0), "0.00×");
    }
}
