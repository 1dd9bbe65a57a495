//! The broker's metrics, in Prometheus text format: requests, errors and latency per
//! Kafka API, bytes in and out, connections, fetch waiters (counted as they happen), and
//! per-partition offsets and sizes, consumer group lag and fsyncs (read at scrape time).
//!
//! Metrics are plain values owned by the running broker (no global registry); the admin
//! HTTP listener renders them.

use std::fmt::Write;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, ResponseKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::state::Broker;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: &'static str,
}

/// Counters and gauges updated on the request path.
pub struct Metrics {
    registry: Registry,
    requests: Family<ApiLabels, Counter>,
    errors: Family<ApiLabels, Counter>,
    latency: Family<ApiLabels, Histogram, fn() -> Histogram>,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub connections: Gauge,
    pub connections_total: Counter,
    pub fetch_waiters: Gauge,
    /// Bytes of requests read and not yet handled, all connections (`queued.max.request.bytes`).
    pub queued_request_bytes: Gauge,
    refused_connections: Family<ReasonLabels, Counter>,
    closed_connections: Family<ReasonLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs … ~1.6 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("runnel");
        let requests = Family::<ApiLabels, Counter>::default();
        let errors = Family::<ApiLabels, Counter>::default();
        let latency = Family::<ApiLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let (bytes_in, bytes_out, connections_total) = (Counter::default(), Counter::default(), Counter::default());
        let (connections, fetch_waiters) = (Gauge::default(), Gauge::default());
        registry.register("requests", "Kafka requests handled, by API", requests.clone());
        registry.register("request_errors", "Kafka requests refused or answered with an error, by API", errors.clone());
        registry.register("request_duration_seconds", "Time from a decoded request to its encoded response, by API", latency.clone());
        registry.register("received_bytes", "Bytes of request frames received", bytes_in.clone());
        registry.register("sent_bytes", "Bytes of response frames sent", bytes_out.clone());
        registry.register("connections", "Open client connections", connections.clone());
        registry.register("connections_accepted", "Client connections accepted", connections_total.clone());
        registry.register("fetch_waiters", "Fetch requests parked waiting for data", fetch_waiters.clone());
        let queued_request_bytes = Gauge::default();
        let refused_connections = Family::<ReasonLabels, Counter>::default();
        let closed_connections = Family::<ReasonLabels, Counter>::default();
        registry.register("queued_request_bytes", "Bytes of requests read and not yet handled, over all connections (bounded by queued.max.request.bytes)", queued_request_bytes.clone());
        registry.register("connections_refused", "Client connections closed at once by a limit, by the limit's name", refused_connections.clone());
        registry.register("connections_closed", "Client connections the broker closed, by reason", closed_connections.clone());
        Self {
            registry,
            requests,
            errors,
            latency,
            bytes_in,
            bytes_out,
            connections,
            connections_total,
            fetch_waiters,
            queued_request_bytes,
            refused_connections,
            closed_connections,
        }
    }
}

/// The label for an API.
pub fn api_name(key: ApiKey) -> &'static str {
    // The Debug form of the enum is the API's name (Produce, Fetch, …); leak-free because
    // there is a fixed set of keys, cached here.
    static NAMES: std::sync::OnceLock<std::collections::HashMap<i16, &'static str>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| {
        ApiKey::iter().map(|k| (k as i16, &*Box::leak(format!("{k:?}").into_boxed_str()))).collect()
    });
    names.get(&(key as i16)).copied().unwrap_or("Unknown")
}

impl Metrics {
    /// Records one handled request.
    pub fn request(&self, key: ApiKey, took: Duration, error: bool) {
        let labels = ApiLabels { api: api_name(key) };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(took.as_secs_f64());
        if error {
            self.errors.get_or_create(&labels).inc();
        }
    }

    /// Records a request refused before a handler saw it (malformed, unsupported).
    pub fn refused(&self, api: &'static str) {
        self.errors.get_or_create(&ApiLabels { api }).inc();
    }

    /// Counts a connection refused by the limit `reason` (its config name).
    pub fn connection_refused(&self, reason: &'static str) {
        self.refused_connections.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts a connection the broker closed (idle, refused frame, bad request …).
    pub fn connection_closed(&self, reason: &'static str) {
        self.closed_connections.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Renders everything in Prometheus text format. `broker` is None while starting.
    pub fn render(&self, broker: Option<&Broker>) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut out, &self.registry).is_err() {
            out.clear();
        }
        if let Some(b) = broker {
            render_partitions(&mut out, b);
            render_groups(&mut out, b);
        }
        out.push_str("# EOF\n");
        out
    }
}

fn render_partitions(out: &mut String, b: &Broker) {
    let mut parts = b.all_partitions();
    parts.sort_by(|x, y| (&x.topic, x.index).cmp(&(&y.topic, y.index)));
    let mut rows = Vec::with_capacity(parts.len());
    let mut fsyncs = runnel_storage::FsyncStats::default();
    for p in &parts {
        let log = p.log();
        let stats = log.fsync_stats();
        fsyncs.count += stats.count;
        fsyncs.total += stats.total;
        for (sum, n) in fsyncs.buckets.iter_mut().zip(stats.buckets) {
            *sum += n;
        }
        rows.push((p.topic.clone(), p.index, log.log_start_offset(), log.log_end_offset(), log.size_bytes()));
    }
    let gauges: [(&str, &str, fn(&(String, i32, i64, i64, u64)) -> String); 3] = [
        ("runnel_partition_log_start_offset", "First offset of the partition's log", |r| r.2.to_string()),
        ("runnel_partition_log_end_offset", "Next offset of the partition's log (the high watermark)", |r| r.3.to_string()),
        ("runnel_partition_size_bytes", "Bytes of the partition's segment files", |r| r.4.to_string()),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} gauge");
        for r in &rows {
            let _ = writeln!(out, "{name}{{topic=\"{}\",partition=\"{}\"}} {}", r.0, r.1, value(r));
        }
    }
    render_fsync_histogram(out, &fsyncs);
}

/// The fsync latency histogram of all partitions, in Prometheus form (cumulative buckets).
fn render_fsync_histogram(out: &mut String, f: &runnel_storage::FsyncStats) {
    let name = "runnel_fsync_seconds";
    let _ = writeln!(out, "# HELP {name} Log flush (fsync) latency.\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (bound, n) in runnel_storage::FSYNC_BUCKETS.iter().zip(f.buckets) {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", bound.as_secs_f64());
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", f.count);
    let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", f.total.as_secs_f64(), f.count);
}

fn render_groups(out: &mut String, b: &Broker) {
    let name = "runnel_consumer_group_lag";
    let _ = writeln!(out, "# HELP {name} Records between a group's committed offset and the partition's log end.\n# TYPE {name} gauge");
    let coordinator = b.groups();
    for g in coordinator.list() {
        for (topic, partitions) in coordinator.fetch_offsets(&g.group_id, None) {
            for (p, committed) in partitions {
                let (Some(c), Some(part)) = (committed, b.partition(&topic, p)) else { continue };
                let lag = (part.log().log_end_offset() - c.offset).max(0);
                let _ = writeln!(out, "{name}{{group=\"{}\",topic=\"{topic}\",partition=\"{p}\"}} {lag}", g.group_id);
            }
        }
    }
}

/// Whether a response carries an error code (top level or in any partition or resource).
pub fn has_error(r: &ResponseKind) -> bool {
    match r {
        ResponseKind::Produce(r) => r.responses.iter().any(|t| t.partition_responses.iter().any(|p| p.error_code != 0)),
        ResponseKind::Fetch(r) => r.error_code != 0 || r.responses.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0)),
        ResponseKind::ListOffsets(r) => r.topics.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0)),
        ResponseKind::Metadata(r) => r.topics.iter().any(|t| t.error_code != 0),
        ResponseKind::CreateTopics(r) => r.topics.iter().any(|t| t.error_code != 0),
        ResponseKind::DeleteTopics(r) => r.responses.iter().any(|t| t.error_code != 0),
        ResponseKind::CreatePartitions(r) => r.results.iter().any(|t| t.error_code != 0),
        ResponseKind::DescribeConfigs(r) => r.results.iter().any(|t| t.error_code != 0),
        ResponseKind::AlterConfigs(r) => r.responses.iter().any(|t| t.error_code != 0),
        ResponseKind::IncrementalAlterConfigs(r) => r.responses.iter().any(|t| t.error_code != 0),
        ResponseKind::DescribeCluster(r) => r.error_code != 0,
        ResponseKind::ApiVersions(r) => r.error_code != 0,
        ResponseKind::FindCoordinator(r) => r.error_code != 0 || r.coordinators.iter().any(|c| c.error_code != 0),
        ResponseKind::JoinGroup(r) => r.error_code != 0,
        ResponseKind::SyncGroup(r) => r.error_code != 0,
        ResponseKind::Heartbeat(r) => r.error_code != 0,
        ResponseKind::LeaveGroup(r) => r.error_code != 0 || r.members.iter().any(|m| m.error_code != 0),
        ResponseKind::OffsetCommit(r) => r.topics.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0)),
        ResponseKind::OffsetFetch(r) => r.error_code != 0 || r.groups.iter().any(|g| g.error_code != 0),
        ResponseKind::DescribeGroups(r) => r.groups.iter().any(|g| g.error_code != 0),
        ResponseKind::ListGroups(r) => r.error_code != 0,
        ResponseKind::DeleteGroups(r) => r.results.iter().any(|g| g.error_code != 0),
        ResponseKind::OffsetDelete(r) => r.error_code != 0,
        ResponseKind::DeleteRecords(r) => r.topics.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0)),
        _ => false,
    }
}
