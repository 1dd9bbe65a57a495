//! The broker's metrics, in Prometheus text format: requests, errors and latency per
//! Kafka API, bytes in and out, connections, fetch waiters (counted as they happen), and
//! per-partition offsets and sizes, consumer group lag and fsyncs (read at scrape time).
//!
//! Metrics are plain values owned by the running broker (no global registry); the admin
//! HTTP listener renders them.

use std::sync::OnceLock;
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
    /// Each API's series in the three families above, by api key: resolved on its first
    /// request, not looked up by label on every one.
    per_api: Box<[OnceLock<ApiSeries>]>,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub connections: Gauge,
    pub connections_total: Counter,
    pub fetch_waiters: Gauge,
    /// Bytes of requests read and not yet handled, all connections (`queued.max.request.bytes`).
    pub queued_request_bytes: Gauge,
    refused_connections: Family<ReasonLabels, Counter>,
    closed_connections: Family<ReasonLabels, Counter>,
    /// Seconds the listener spent not accepting because `max.connections` were open.
    acceptor_blocked: Counter<f64, std::sync::atomic::AtomicU64>,
    /// Successful SASL authentications.
    pub authentications: Counter,
    /// SASL authentications that failed (the connection was closed).
    pub authentication_failures: Counter,
}

/// One API's request series (shared with their families, which render them).
struct ApiSeries {
    requests: Counter,
    latency: Histogram,
    /// Made on the API's first error: an API without errors shows no error series.
    errors: OnceLock<Counter>,
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
        let acceptor_blocked = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register("acceptor_blocked_seconds", "Time the listener stopped accepting because max.connections were open", acceptor_blocked.clone());
        let (authentications, authentication_failures) = (Counter::default(), Counter::default());
        registry.register("sasl_authentications", "Successful SASL authentications", authentications.clone());
        registry.register("sasl_authentication_failures", "Failed SASL authentications (each closed its connection)", authentication_failures.clone());
        Self {
            registry,
            requests,
            errors,
            latency,
            per_api: (0..=ApiKey::iter().map(|k| k as i16).max().unwrap_or(0).max(0)).map(|_| OnceLock::new()).collect(),
            bytes_in,
            bytes_out,
            connections,
            connections_total,
            fetch_waiters,
            queued_request_bytes,
            refused_connections,
            closed_connections,
            acceptor_blocked,
            authentications,
            authentication_failures,
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
        let labels = || ApiLabels { api: api_name(key) };
        let Some(slot) = usize::try_from(key as i16).ok().and_then(|i| self.per_api.get(i)) else {
            // Not reached: every key has a slot.
            self.requests.get_or_create(&labels()).inc();
            self.latency.get_or_create(&labels()).observe(took.as_secs_f64());
            if error {
                self.errors.get_or_create(&labels()).inc();
            }
            return;
        };
        let series = slot.get_or_init(|| ApiSeries {
            requests: self.requests.get_or_create(&labels()).clone(),
            latency: self.latency.get_or_create(&labels()).clone(),
            errors: OnceLock::new(),
        });
        series.requests.inc();
        series.latency.observe(took.as_secs_f64());
        if error {
            series.errors.get_or_init(|| self.errors.get_or_create(&labels()).clone()).inc();
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

    /// Adds time the listener waited at `max.connections`.
    pub fn acceptor_blocked(&self, took: Duration) {
        self.acceptor_blocked.inc_by(took.as_secs_f64());
    }

    /// Counts a connection the broker closed (idle, refused frame, bad request …).
    pub fn connection_closed(&self, reason: &'static str) {
        self.closed_connections.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Renders everything in Prometheus text format. `broker` is None while starting.
    /// Every series, the per-partition and per-group ones read at scrape time included,
    /// goes through a prometheus-client registry, so client-chosen strings (group ids) in
    /// label values are escaped.
    pub fn render(&self, broker: Option<&Broker>) -> String {
        let mut out = String::new();
        let mut scrape = Registry::with_prefix("runnel");
        if let Some(b) = broker {
            register_storage_health(&mut scrape, b);
            register_replication(&mut scrape, b);
            register_partitions(&mut scrape, b);
            register_groups(&mut scrape, b);
            register_transactions(&mut scrape, b);
            register_fetch_sessions(&mut scrape, b);
        }
        let encoded = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)
            .and_then(|_| prometheus_client::encoding::text::encode_registry(&mut out, &scrape));
        if encoded.is_err() {
            out.clear();
        }
        out.push_str("# EOF\n");
        out
    }
}

/// Offline partitions and quarantined directories (see `data_dir`), and the descriptors
/// held: segment files (bounded by `log.max.open.segments`) and the whole process's.
fn register_storage_health(registry: &mut Registry, b: &Broker) {
    let (offline, stray) = b.storage_health();
    let files = runnel_storage::OpenFiles::process();
    let (reopened, index_loads) = files.reloads();
    let process_fds = std::fs::read_dir("/proc/self/fd").map_or(-1, |d| d.count() as i64);
    for (name, help, v) in [
        ("offline_partitions", "Partitions that cannot serve (failed fsync, or could not be opened) until a restart", offline as i64),
        ("quarantined_dirs", "Directories in the data dir moved aside as -stray because the metadata does not know them", stray as i64),
        ("open_segment_files", "Segment files open now (held by the open-segment cache or by a read in flight)", files.open_files() as i64),
        ("open_segments_max", "Segments held open at most by the cache (log.max.open.segments)", files.capacity() as i64),
        ("segment_reopens", "Times a segment closed by the cache was opened again", reopened as i64),
        ("segment_index_loads", "Times a sealed segment's indexes were read again from their files", index_loads as i64),
        ("open_fds", "File descriptors the broker process has open (sockets included)", process_fds),
    ] {
        let g = Gauge::<i64>::default();
        g.set(v);
        registry.register(name, help, g);
    }
}

/// Cluster mode: partitions led here, those with fewer in-sync replicas than replicas, and
/// the largest follower lag (records) over the partitions led here.
fn register_replication(registry: &mut Registry, b: &Broker) {
    if b.cluster().is_none() {
        return;
    }
    let (mut leaders, mut under, mut lag) = (0i64, 0i64, 0i64);
    for part in b.all_partitions() {
        if let Some((leads, isr, replicas, follower_lag)) = part.replica_summary() {
            if leads {
                leaders += 1;
                under += i64::from(isr < replicas);
                lag = lag.max(follower_lag);
            }
        }
    }
    for (name, help, v) in [
        ("leader_partitions", "Partitions this broker leads", leaders),
        ("under_replicated_partitions", "Partitions led here whose ISR is smaller than their replica set", under),
        ("max_follower_lag_records", "Largest lag of a follower behind this broker's log end, over the partitions it leads", lag),
    ] {
        let g = Gauge::<i64>::default();
        g.set(v);
        registry.register(name, help, g);
    }
}

/// A client-chosen string (group id, topic name) as a label value, escaped as the
/// OpenMetrics text format requires: prometheus-client writes label values verbatim, so a
/// group id holding `"`, `\` or a newline could otherwise forge series.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Escaped(String);

impl prometheus_client::encoding::EncodeLabelValue for Escaped {
    fn encode(&self, encoder: &mut prometheus_client::encoding::LabelValueEncoder) -> std::fmt::Result {
        use std::fmt::Write;
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: Escaped,
    partition: i32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    group: Escaped,
    topic: Escaped,
    partition: i32,
}

fn register_partitions(registry: &mut Registry, b: &Broker) {
    let start = Family::<PartitionLabels, Gauge>::default();
    let end = Family::<PartitionLabels, Gauge>::default();
    let size = Family::<PartitionLabels, Gauge>::default();
    let producers = Family::<PartitionLabels, Gauge>::default();
    let mut fsyncs = runnel_storage::FsyncStats::default();
    for p in b.all_partitions() {
        let log = p.log();
        let stats = log.fsync_stats();
        fsyncs.count += stats.count;
        fsyncs.total += stats.total;
        for (sum, n) in fsyncs.buckets.iter_mut().zip(stats.buckets) {
            *sum += n;
        }
        let labels = PartitionLabels { topic: Escaped(p.topic.clone()), partition: p.index };
        start.get_or_create(&labels).set(log.log_start_offset());
        end.get_or_create(&labels).set(log.log_end_offset());
        size.get_or_create(&labels).set(i64::try_from(log.size_bytes()).unwrap_or(i64::MAX));
        producers.get_or_create(&labels).set(log.producer_state().len() as i64);
    }
    registry.register("partition_log_start_offset", "First offset of the partition's log", start);
    registry.register("partition_log_end_offset", "Next offset of the partition's log (the high watermark)", end);
    registry.register("partition_size_bytes", "Bytes of the partition's segment files", size);
    registry.register("partition_producers", "Idempotent and transactional producers the partition keeps state for", producers);
    registry.register("fsync_seconds", "Log flush (fsync) latency", FsyncHistogram(fsyncs));
}

/// The fsync latency of all partitions (counted by the storage, in its own buckets).
#[derive(Debug)]
struct FsyncHistogram(runnel_storage::FsyncStats);

impl prometheus_client::encoding::EncodeMetric for FsyncHistogram {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), std::fmt::Error> {
        let f = &self.0;
        let mut buckets: Vec<(f64, u64)> = runnel_storage::FSYNC_BUCKETS.iter().map(|b| b.as_secs_f64()).zip(f.buckets.iter().copied()).collect();
        let counted: u64 = buckets.iter().map(|(_, n)| n).sum();
        buckets.push((f64::MAX, f.count.saturating_sub(counted)));
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(f.total.as_secs_f64(), f.count, &buckets, None)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

fn register_groups(registry: &mut Registry, b: &Broker) {
    let lag = Family::<LagLabels, Gauge>::default();
    let coordinator = b.groups();
    for g in coordinator.list() {
        for (topic, partitions) in coordinator.fetch_offsets(&g.group_id, None).unwrap_or_default() {
            for (p, committed) in partitions {
                let (Some(c), Some(part)) = (committed, b.partition(&topic, p)) else { continue };
                let value = (part.log().log_end_offset() - c.offset).max(0);
                lag.get_or_create(&LagLabels { group: Escaped(g.group_id.clone()), topic: Escaped(topic.clone()), partition: p }).set(value);
            }
        }
    }
    registry.register("consumer_group_lag", "Records between a group's committed offset and the partition's log end", lag);
}

/// Transactions open now (ongoing or being completed).
fn register_transactions(registry: &mut Registry, b: &Broker) {
    let open = Gauge::<i64>::default();
    open.set(b.txns().open_transactions() as i64);
    registry.register("open_transactions", "Transactions ongoing or being completed (this broker is their coordinator)", open);
}

/// The fetch session cache (KIP-227): sessions and partitions cached now, and counts of
/// sessions created, incremental fetches served and refused, and evictions.
fn register_fetch_sessions(registry: &mut Registry, b: &Broker) {
    let cache = b.fetch_sessions();
    let (sessions, partitions) = cache.sizes();
    for (name, help, v) in [
        ("fetch_sessions", "Incremental fetch sessions cached (max.incremental.fetch.session.cache.slots)", sessions),
        ("fetch_session_partitions", "Partitions held by all cached fetch sessions", partitions),
    ] {
        let g = Gauge::<i64>::default();
        g.set(v as i64);
        registry.register(name, help, g);
    }
    for (name, help, c) in [
        ("fetch_sessions_created", "Full fetches that created a fetch session", &cache.created),
        ("fetch_session_incremental_requests", "Incremental fetches served from a session", &cache.incremental),
        ("fetch_session_errors", "Incremental fetches refused (session not found, wrong epoch, topic id use changed)", &cache.refused),
        ("fetch_session_evictions", "Fetch sessions evicted to make room for a new one", &cache.evictions),
    ] {
        registry.register(name, help, c.clone());
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
        ResponseKind::InitProducerId(r) => r.error_code != 0,
        ResponseKind::AddPartitionsToTxn(r) => {
            let failed = |ts: &[kafka_protocol::messages::add_partitions_to_txn_response::AddPartitionsToTxnTopicResult]| {
                ts.iter().any(|t| t.results_by_partition.iter().any(|p| p.partition_error_code != 0))
            };
            r.error_code != 0 || failed(&r.results_by_topic_v3_and_below) || r.results_by_transaction.iter().any(|t| failed(&t.topic_results))
        }
        ResponseKind::AddOffsetsToTxn(r) => r.error_code != 0,
        ResponseKind::EndTxn(r) => r.error_code != 0,
        ResponseKind::TxnOffsetCommit(r) => r.topics.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0)),
        ResponseKind::DescribeTransactions(r) => r.transaction_states.iter().any(|t| t.error_code != 0),
        ResponseKind::ListTransactions(r) => r.error_code != 0,
        _ => false,
    }
}
