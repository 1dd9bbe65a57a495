//! The broker's configuration: one validated struct, declared once with its defaults.
//! Kafka's names for Kafka's settings live in [`BrokerConfig::settings`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::topic_config;

/// Broker-level settings Runnel understands besides the topic defaults
/// (`log.segment.bytes` …, see [`topic_config::TOPIC_CONFIGS`]).
pub const BROKER_SETTINGS: &[(&str, &str, &str)] = &[
    ("auto.create.topics.enable", "true", "Create a topic when a client asks Metadata for one that does not exist."),
    ("num.partitions", "1", "Partitions of an auto-created topic, or of CreateTopics asking for the default (-1)."),
    ("default.replication.factor", "1", "Replication factor of new topics (CreateTopics asking for the default, auto-creation); at most the live brokers (one broker: 1)."),
    ("replica.lag.time.max.ms", "30000", "Cluster mode: a follower that has not caught up with the leader's log end for this long leaves the ISR."),
    ("replica.fetch.wait.max.ms", "500", "Cluster mode: how long a follower's fetch waits at the leader for new data."),
    ("replica.high.watermark.checkpoint.interval.ms", "5000", "Cluster mode: how often each replica's high watermark is written to replication-offset-checkpoint in the data dir (also at a clean stop; read at start)."),
    ("replica.fetch.max.bytes", "1048576", "Cluster mode: bytes a follower asks for per partition and fetch (the first batch comes whole)."),
    ("max.incremental.fetch.session.cache.slots", "1000", "Most incremental fetch sessions (KIP-227) the broker keeps, for all clients and followers together; 0 turns fetch sessions off (every fetch is then answered in full)."),
    ("min.incremental.fetch.session.eviction.ms", "120000", "A fetch session unused for this long may be evicted by any new one; a younger one only by a more valuable one (a follower's over a consumer's, then more partitions)."),
    ("socket.request.max.bytes", "104857600", "Largest request frame; a larger one closes the connection. Also the most one connection reads ahead of its answers."),
    ("queued.max.request.bytes", "536870912", "Bytes of requests read and not yet handled, over all connections together; past it the broker stops reading until handled requests free some (-1: no limit; Kafka's default is -1)."),
    ("max.connections", "10000", "Most client connections open at once; the listener stops accepting meanwhile (Kafka's default is 2147483647; keep it below the open-file limit)."),
    ("max.connections.per.ip", "2147483647", "Most client connections from one IP address; more are closed at once."),
    ("max.connections.per.ip.overrides", "", "Per-address exceptions to max.connections.per.ip, as IP:COUNT,IP:COUNT (e.g. 127.0.0.1:200,::1:200; a count may be 0)."),
    ("max.broker.partitions", "10000", "Most partitions this broker holds; CreateTopics, CreatePartitions and auto-creation past it are refused with POLICY_VIOLATION (KIP-578's name; Kafka has no such limit)."),
    ("log.max.open.segments", "0", "Most log segments held open at once (their file and, when sealed, their indexes); idle ones are closed and opened again on use, so a broker starts and serves with more segments than it may open files. 0: half the process's open-file limit (RLIMIT_NOFILE). Runnel's setting; Kafka keeps every segment open."),
    ("connections.max.idle.ms", "600000", "A connection with nothing read and nothing in flight for this long is closed, as is one whose response cannot be written for this long."),
    ("authorizer.class.name", "", "Turns ACL checks on: org.apache.kafka.metadata.authorizer.StandardAuthorizer (Kafka's name, accepted as is) or runnel. Empty: no authorizer, every request is allowed."),
    ("inter.broker.listener.name", "", "Cluster mode: the listener the brokers reach each other on (replica fetches, transaction markers); it must be a PLAINTEXT listener, whose principal User:ANONYMOUS needs CLUSTER_ACTION on the cluster (or super.users) with the authorizer on. Empty: the first PLAINTEXT listener."),
    ("super.users", "", "Principals allowed everything whatever the ACLs, separated by ';' (e.g. User:admin;User:ops)."),
    ("admin.basic.auth.file", "", "A file holding USER:PASSWORD: the admin HTTP listener's /metrics then needs these HTTP basic credentials (/healthz and /readyz stay open)."),
    ("quota.window.num", "11", "Client quotas: how many windows a client's rate is measured over."),
    ("quota.window.size.seconds", "1", "Client quotas: the length of one window."),
    ("allow.everyone.if.no.acl.found", "false", "With the authorizer on: allow a request on a resource no ACL names at all (Kafka's default: false, deny)."),
    ("group.min.session.timeout.ms", "6000", "Smallest session timeout a group member may ask for."),
    ("group.max.session.timeout.ms", "1800000", "Largest session timeout a group member may ask for."),
    ("group.initial.rebalance.delay.ms", "3000", "How long the first rebalance of an empty group waits for more members to join."),
    ("offsets.retention.minutes", "10080", "Committed offsets of a group that has been empty this long are removed."),
    ("offsets.retention.check.interval.ms", "600000", "How often expired committed offsets are looked for."),
    ("offset.metadata.max.bytes", "4096", "Largest metadata string of a committed offset."),
    ("offsets.topic.num.partitions", "50", "Partitions of __consumer_offsets when it is created (cluster mode, at the first FindCoordinator; a single node creates 1 unless this is set). A group is coordinated by the leader of partition hash(group) % partitions."),
    ("offsets.topic.replication.factor", "3", "Replicas of each __consumer_offsets partition (cluster mode). Unset: 3, or the live brokers if fewer; set: creation waits until that many brokers are live."),
    ("offsets.commit.timeout.ms", "5000", "Cluster mode: how long an offset commit (and any group write) waits for the in-sync replicas before it fails with COORDINATOR_NOT_AVAILABLE."),
    ("log.retention.check.interval.ms", "300000", "How often the cleaner applies retention (retention.ms, retention.bytes) to every partition."),
    ("log.cleaner.backoff.ms", "15000", "How often the cleaner looks for compacted partitions due for cleaning."),
    ("producer.id.expiration.ms", "86400000", "A partition forgets an idempotent producer that has not written for this long."),
    ("producer.id.expiration.check.interval.ms", "600000", "How often idle producers are looked for."),
    ("broker.session.timeout.ms", "9000", "Cluster mode: a broker the controller has not heard from this long is fenced."),
    ("broker.heartbeat.interval.ms", "2000", "Cluster mode: how often a broker heartbeats to the controller."),
    ("transaction.state.log.num.partitions", "50", "Partitions of the internal topic __transaction_state, created at the first transactional request."),
    ("transaction.state.log.replication.factor", "3", "Replicas of each __transaction_state partition (cluster mode). Unset: 3, or the live brokers if fewer."),
    ("transaction.state.log.min.isr", "2", "min.insync.replicas of __transaction_state (cluster mode; at most its replication factor): a transaction state write needs that many in-sync replicas."),
    ("transaction.max.timeout.ms", "900000", "Largest transaction.timeout.ms a transactional producer may ask for (else INVALID_TRANSACTION_TIMEOUT)."),
    ("transactional.id.expiration.ms", "604800000", "A transactional id with no open transaction and no activity for this long is forgotten."),
    ("transaction.abort.timed.out.transaction.cleanup.interval.ms", "10000", "How often transactions older than their timeout are looked for and aborted."),
    ("transaction.remove.expired.transaction.cleanup.interval.ms", "3600000", "How often expired transactional ids are looked for."),
    ("listeners", "", "The Kafka listeners, NAME://HOST:PORT,… (e.g. PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9094; an empty HOST binds every interface, port 0 a free port). Empty: one PLAINTEXT listener on --listen."),
    ("advertised.listeners", "", "Where clients are told to connect, NAME://HOST:PORT per listener (Metadata answers the addresses of the listener a client came through). A listener not named here advertises its bound address."),
    ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL", "Security protocol of each listener name, NAME:PROTOCOL,… (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL); custom listener names must be mapped here."),
    ("sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512", "SASL mechanisms SASL listeners accept: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, and OAUTHBEARER with unsecured tokens (for tests; not in the default). Kafka's default, GSSAPI, is not supported."),
    ("sasl.plain.users", "", "A file of NAME=PASSWORD lines that SASL/PLAIN also accepts (meant for tests; PLAIN always accepts the SCRAM users with their password)."),
    ("connections.max.reauth.ms", "0", "SASL re-authentication (KIP-368): a session lasts this long, clients re-authenticate on the same connection before it ends, and a connection whose session ended is closed at its next request (0: sessions never end)."),
    ("connection.failed.authentication.delay.ms", "100", "A connection whose authentication failed is closed after this delay (the failure is answered first)."),
    ("ssl.keystore.type", "PEM", "Only PEM: ssl.keystore.location is one PEM file with the private key and the certificate chain."),
    ("ssl.keystore.location", "", "PEM file with the TLS listeners' private key and certificate chain (needed by SSL and SASL_SSL listeners). Re-read when it changes."),
    ("ssl.truststore.type", "PEM", "Only PEM: ssl.truststore.location holds CA certificates."),
    ("ssl.truststore.location", "", "PEM file of the CA certificates that client certificates are checked against (needed for ssl.client.auth requested or required)."),
    ("ssl.client.auth", "none", "Client certificates on SSL listeners: none, requested (checked when sent) or required. A certificate's subject becomes the principal User:CN=…,O=… (see ssl.principal.mapping.rules)."),
    ("ssl.principal.mapping.rules", "DEFAULT", "How a client certificate's subject becomes a principal name: DEFAULT (the whole subject, e.g. CN=alice,O=acme) or Kafka's RULE:pattern/replacement/[LU] rules, comma-separated, first match wins."),
];

/// Settings a listener may override as `listener.name.NAME.SETTING` (Kafka's KIP-103
/// prefix; NAME in lower case).
pub const PER_LISTENER: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.client.auth",
    "ssl.principal.mapping.rules",
    "sasl.enabled.mechanisms",
    "sasl.plain.users",
    "connections.max.reauth.ms",
    "connection.failed.authentication.delay.ms",
];

/// Everything a broker needs to start.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    /// Address to bind the Kafka listener to (`host:port`; port 0 picks a free one).
    pub listen: String,
    /// Address clients are told to connect to; defaults to the bound listen address.
    pub advertised_listener: Option<String>,
    pub data_dir: PathBuf,
    /// Address of the admin HTTP listener (`/metrics`, `/healthz`, `/readyz`); None: off.
    pub admin_listen: Option<String>,
    /// Cluster mode: the controller listener (`--controller-listen`), HOST:PORT.
    pub controller_listen: Option<String>,
    /// Cluster mode: every voter, `ID@HOST:PORT,…` (`--controller-quorum`).
    pub controller_quorum: Option<String>,
    /// Kafka-named broker settings (`auto.create.topics.enable`, `log.segment.bytes` …).
    pub settings: BTreeMap<String, String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            listen: "127.0.0.1:9092".into(),
            advertised_listener: None,
            data_dir: PathBuf::from("runnel-data"),
            admin_listen: Some("127.0.0.1:9644".into()),
            controller_listen: None,
            controller_quorum: None,
            settings: BTreeMap::new(),
        }
    }
}

/// A broker config that failed validation; the message says which setting and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid broker setting: {0}")]
pub struct ConfigError(pub String);

impl BrokerConfig {
    /// Checks every setting: known name, valid value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id < 0 {
            return Err(ConfigError(format!("node.id must be ≥ 0, got {}", self.node_id)));
        }
        for (name, value) in &self.settings {
            if let Some(d) = topic_config::TOPIC_CONFIGS.iter().find(|d| d.broker_name == name) {
                topic_config::validate(d.name, value).map_err(|e| ConfigError(format!("{name}: {e}")))?;
            } else if BROKER_SETTINGS.iter().any(|(n, _, _)| n == name) {
                self.check_broker_setting(name, value)?;
            } else if let Some(rest) = name.strip_prefix("listener.name.") {
                let setting = rest.split_once('.').map(|(_, s)| s).unwrap_or("");
                if !PER_LISTENER.contains(&setting) {
                    return Err(ConfigError(format!(
                        "{name}: a listener may override only {} (listener.name.NAME.SETTING)",
                        PER_LISTENER.join(", ")
                    )));
                }
                self.check_broker_setting(setting, value)?;
            } else {
                return Err(ConfigError(format!(
                    "unknown setting '{name}' (known: {})",
                    known_settings().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        self.check_group_settings()?;
        crate::authorizer::Authorizer::from_config(self)?;
        self.check_cluster_settings()
    }

    /// `--controller-listen` and `--controller-quorum` come together, and this node is
    /// one of the voters (broker-only nodes are not built yet).
    fn check_cluster_settings(&self) -> Result<(), ConfigError> {
        match (&self.controller_listen, &self.controller_quorum) {
            (None, None) => Ok(()),
            (Some(_), None) | (None, Some(_)) => {
                Err(ConfigError("--controller-listen and --controller-quorum must be given together".into()))
            }
            (Some(_), Some(q)) => {
                let voters = runnel_controller::parse_quorum(q).map_err(|e| ConfigError(format!("--controller-quorum: {e}")))?;
                if !voters.contains_key(&(self.node_id as u64)) {
                    return Err(ConfigError(format!(
                        "--node-id {} is not in --controller-quorum {q} (every node is a voter; broker-only nodes are not built yet)",
                        self.node_id
                    )));
                }
                Ok(())
            }
        }
    }

    /// Cluster mode: `broker.session.timeout.ms`.
    pub fn broker_session_timeout_ms(&self) -> u64 {
        self.int_setting("broker.session.timeout.ms", 9000) as u64
    }

    /// Cluster mode: `broker.heartbeat.interval.ms`.
    pub fn broker_heartbeat_interval_ms(&self) -> u64 {
        self.int_setting("broker.heartbeat.interval.ms", 2000) as u64
    }

    /// `default.replication.factor`.
    pub fn default_replication_factor(&self) -> i16 {
        self.int_setting("default.replication.factor", 1).clamp(1, i16::MAX as i64) as i16
    }

    /// Cluster mode: `replica.lag.time.max.ms`.
    pub fn replica_lag_time_max_ms(&self) -> u64 {
        self.int_setting("replica.lag.time.max.ms", 30000) as u64
    }

    /// Cluster mode: `replica.high.watermark.checkpoint.interval.ms`.
    pub fn replica_hw_checkpoint_interval_ms(&self) -> u64 {
        self.int_setting("replica.high.watermark.checkpoint.interval.ms", 5000).max(1) as u64
    }

    /// Cluster mode: `replica.fetch.wait.max.ms`.
    pub fn replica_fetch_wait_max_ms(&self) -> u64 {
        self.int_setting("replica.fetch.wait.max.ms", 500) as u64
    }

    /// Cluster mode: `replica.fetch.max.bytes`.
    pub fn replica_fetch_max_bytes(&self) -> usize {
        self.int_setting("replica.fetch.max.bytes", 1048576) as usize
    }

    pub(crate) fn check_broker_setting(&self, name: &str, value: &str) -> Result<(), ConfigError> {
        let bad = |why: &str| ConfigError(format!("{name}={value}: {why}"));
        match name {
            "auto.create.topics.enable" | "allow.everyone.if.no.acl.found" => value.parse::<bool>().map(|_| ()).map_err(|_| bad("expected true or false")),
            "num.partitions" | "default.replication.factor" | "offsets.topic.replication.factor"
            | "transaction.state.log.replication.factor" | "transaction.state.log.min.isr" => match value.parse::<i32>() {
                Ok(n) if n >= 1 => Ok(()),
                _ => Err(bad("expected a whole number ≥ 1")),
            },
            "socket.request.max.bytes" => match value.parse::<i32>() {
                Ok(n) if n >= 64 => Ok(()),
                _ => Err(bad("expected a whole number of bytes ≥ 64")),
            },
            "queued.max.request.bytes" => match value.parse::<i64>() {
                Ok(-1) => Ok(()),
                Ok(n) if n >= self.socket_request_max_bytes() as i64 => Ok(()),
                _ => Err(bad("expected -1 or a number of bytes ≥ socket.request.max.bytes")),
            },
            "max.connections.per.ip" => match value.parse::<i32>() {
                Ok(0) if self.max_connections_per_ip_overrides().is_empty() => {
                    Err(bad("0 refuses every client; give max.connections.per.ip.overrides for the addresses allowed"))
                }
                Ok(n) if n >= 0 => Ok(()),
                _ => Err(bad("expected a whole number ≥ 0")),
            },
            "quota.window.num" | "quota.window.size.seconds" => match value.parse::<i32>() {
                Ok(n) if n >= 1 && (name != "quota.window.num" || n >= 2) => Ok(()),
                _ => Err(bad("expected a whole number ≥ 1 (quota.window.num: ≥ 2)")),
            },
            "log.max.open.segments" => match value.parse::<i32>() {
                Ok(n) if n >= 0 => Ok(()),
                _ => Err(bad("expected a whole number ≥ 0 (0: half the open-file limit)")),
            },
            "max.incremental.fetch.session.cache.slots" | "min.incremental.fetch.session.eviction.ms" => match value.parse::<i32>() {
                Ok(n) if n >= 0 => Ok(()),
                _ => Err(bad("expected a whole number ≥ 0")),
            },
            "max.connections" | "connections.max.idle.ms" | "max.broker.partitions" => match value.parse::<i32>() {
                Ok(n) if n >= 1 => Ok(()),
                _ => Err(bad("expected a whole number ≥ 1")),
            },
            "max.connections.per.ip.overrides" => parse_ip_overrides(value).map(|_| ()).map_err(|e| bad(&e)),
            "connections.max.reauth.ms" | "connection.failed.authentication.delay.ms" => match value.parse::<i64>() {
                Ok(n) if (0..=i64::from(i32::MAX)).contains(&n) => Ok(()),
                _ => Err(bad("expected a whole number of ms ≥ 0")),
            },
            "group.min.session.timeout.ms" | "group.max.session.timeout.ms" | "group.initial.rebalance.delay.ms"
            | "offset.metadata.max.bytes" => match value.parse::<i32>() {
                Ok(n) if n >= 0 => Ok(()),
                _ => Err(bad("expected a whole number ≥ 0")),
            },
            "log.retention.check.interval.ms" | "log.cleaner.backoff.ms" | "producer.id.expiration.ms"
            | "producer.id.expiration.check.interval.ms" | "broker.session.timeout.ms"
            | "broker.heartbeat.interval.ms" | "replica.lag.time.max.ms" | "replica.fetch.wait.max.ms"
            | "replica.high.watermark.checkpoint.interval.ms"
            | "replica.fetch.max.bytes" => match value.parse::<i64>() {
                Ok(n) if n >= 1 => Ok(()),
                _ => Err(bad("expected a whole number of ms ≥ 1")),
            },
            "transaction.state.log.num.partitions" | "transaction.max.timeout.ms" | "transactional.id.expiration.ms"
            | "transaction.abort.timed.out.transaction.cleanup.interval.ms"
            | "transaction.remove.expired.transaction.cleanup.interval.ms" => match value.parse::<i32>() {
                Ok(n) if n >= 1 => Ok(()),
                _ => Err(bad("expected a whole number ≥ 1")),
            },
            "offsets.retention.minutes" | "offsets.retention.check.interval.ms" | "offsets.topic.num.partitions"
            | "offsets.commit.timeout.ms" => match value.parse::<i32>() {
                Ok(n) if n >= 1 => Ok(()),
                _ => Err(bad("expected a whole number ≥ 1")),
            },
            _ => Ok(()),
        }
    }

    /// Cross-setting checks: the session timeout range must not be empty.
    fn check_group_settings(&self) -> Result<(), ConfigError> {
        let (min, max) = (self.group_min_session_timeout_ms(), self.group_max_session_timeout_ms());
        if min > max {
            return Err(ConfigError(format!(
                "group.min.session.timeout.ms ({min}) is above group.max.session.timeout.ms ({max})"
            )));
        }
        Ok(())
    }

    /// The settings as listener `listener` sees them: its `listener.name.LISTENER.`
    /// overrides in place of the broker-wide values.
    pub fn for_listener(&self, listener: &str) -> BrokerConfig {
        let prefix = format!("listener.name.{}.", listener.to_ascii_lowercase());
        let mut c = self.clone();
        for (k, v) in &self.settings {
            if let Some(setting) = k.strip_prefix(&prefix) {
                c.settings.insert(setting.to_string(), v.clone());
            }
        }
        c
    }

    /// Whether listener `listener` overrides `setting`.
    pub fn has_listener_override(&self, listener: &str, setting: &str) -> bool {
        self.settings.contains_key(&format!("listener.name.{}.{setting}", listener.to_ascii_lowercase()))
    }

    /// A broker setting's value, or its default.
    pub(crate) fn setting(&self, name: &str) -> &str {
        self.settings.get(name).map(String::as_str).unwrap_or_else(|| {
            BROKER_SETTINGS.iter().find(|(n, _, _)| *n == name).map(|(_, d, _)| *d).unwrap_or("")
        })
    }

    /// A broker setting's value (its default when unset), for modules that parse their own.
    pub fn setting_value(&self, name: &str) -> &str {
        self.setting(name)
    }

    pub fn auto_create_topics(&self) -> bool {
        self.setting("auto.create.topics.enable") == "true"
    }

    pub fn num_partitions(&self) -> u32 {
        self.setting("num.partitions").parse().unwrap_or(1)
    }

    pub fn socket_request_max_bytes(&self) -> usize {
        self.setting("socket.request.max.bytes").parse().unwrap_or(104_857_600)
    }

    /// `queued.max.request.bytes`; -1 (no limit) is the most a semaphore can count.
    pub fn queued_max_request_bytes(&self) -> usize {
        match self.int_setting("queued.max.request.bytes", 536_870_912) {
            n if n < 0 => tokio::sync::Semaphore::MAX_PERMITS,
            n => (n as usize).max(self.socket_request_max_bytes()),
        }
    }

    pub fn max_connections(&self) -> usize {
        self.int_setting("max.connections", 10_000).max(1) as usize
    }

    pub fn max_connections_per_ip(&self) -> usize {
        self.int_setting("max.connections.per.ip", i32::MAX as i64).max(0) as usize
    }

    /// `max.connections.per.ip.overrides`, validated at start.
    pub fn max_connections_per_ip_overrides(&self) -> std::collections::HashMap<std::net::IpAddr, usize> {
        parse_ip_overrides(self.setting("max.connections.per.ip.overrides")).unwrap_or_default()
    }

    /// `max.incremental.fetch.session.cache.slots` and
    /// `min.incremental.fetch.session.eviction.ms`: the fetch session cache.
    pub fn fetch_session_cache(&self) -> crate::fetch_session::FetchSessionCache {
        let slots = self.int_setting("max.incremental.fetch.session.cache.slots", 1000).max(0) as usize;
        let eviction = self.int_setting("min.incremental.fetch.session.eviction.ms", 120_000).max(0) as u64;
        crate::fetch_session::FetchSessionCache::new(slots, std::time::Duration::from_millis(eviction), self.max_broker_partitions() as usize)
    }

    pub fn max_broker_partitions(&self) -> u64 {
        self.int_setting("max.broker.partitions", 10_000).max(1) as u64
    }

    /// `log.max.open.segments`, with 0 resolved to half the open-file limit.
    pub fn max_open_segments(&self) -> usize {
        match self.int_setting("log.max.open.segments", 0) {
            n if n > 0 => n as usize,
            _ => runnel_storage::OpenFiles::default_capacity(),
        }
    }

    pub fn connections_max_idle_ms(&self) -> u64 {
        self.int_setting("connections.max.idle.ms", 600_000).max(1) as u64
    }

    fn int_setting(&self, name: &str, default: i64) -> i64 {
        self.setting(name).parse().unwrap_or(default)
    }

    pub fn group_min_session_timeout_ms(&self) -> i32 {
        self.int_setting("group.min.session.timeout.ms", 6000) as i32
    }

    pub fn group_max_session_timeout_ms(&self) -> i32 {
        self.int_setting("group.max.session.timeout.ms", 1_800_000) as i32
    }

    pub fn group_initial_rebalance_delay_ms(&self) -> i32 {
        self.int_setting("group.initial.rebalance.delay.ms", 3000) as i32
    }

    /// `offsets.retention.minutes`, in milliseconds.
    pub fn offsets_retention_ms(&self) -> i64 {
        self.int_setting("offsets.retention.minutes", 10080) * 60_000
    }

    pub fn offsets_retention_check_interval_ms(&self) -> i64 {
        self.int_setting("offsets.retention.check.interval.ms", 600_000)
    }

    /// `offsets.topic.num.partitions`, and whether it was set.
    pub fn offsets_topic_num_partitions(&self) -> (u32, bool) {
        let n = self.int_setting("offsets.topic.num.partitions", 50).clamp(1, 100_000) as u32;
        (n, self.settings.contains_key("offsets.topic.num.partitions"))
    }

    /// `offsets.topic.replication.factor` if it was set (else: min(3, live brokers)).
    pub fn offsets_topic_replication_factor(&self) -> Option<usize> {
        self.settings.contains_key("offsets.topic.replication.factor").then(|| self.int_setting("offsets.topic.replication.factor", 3).max(1) as usize)
    }

    pub fn offsets_commit_timeout_ms(&self) -> u64 {
        self.int_setting("offsets.commit.timeout.ms", 5000).max(1) as u64
    }

    pub fn log_retention_check_interval_ms(&self) -> u64 {
        self.int_setting("log.retention.check.interval.ms", 300_000).max(1) as u64
    }

    pub fn log_cleaner_backoff_ms(&self) -> u64 {
        self.int_setting("log.cleaner.backoff.ms", 15_000).max(1) as u64
    }

    pub fn producer_id_expiration_ms(&self) -> i64 {
        self.int_setting("producer.id.expiration.ms", 86_400_000).max(1)
    }

    pub fn producer_id_expiration_check_interval_ms(&self) -> u64 {
        self.int_setting("producer.id.expiration.check.interval.ms", 600_000).max(1) as u64
    }

    /// `transaction.state.log.replication.factor` if it was set (else: min(3, live brokers)).
    pub fn transaction_state_replication_factor(&self) -> Option<usize> {
        let name = "transaction.state.log.replication.factor";
        self.settings.contains_key(name).then(|| self.int_setting(name, 3).max(1) as usize)
    }

    pub fn transaction_state_min_isr(&self) -> usize {
        self.int_setting("transaction.state.log.min.isr", 2).max(1) as usize
    }

    pub fn transaction_state_partitions(&self) -> u32 {
        self.int_setting("transaction.state.log.num.partitions", 50).clamp(1, 10_000) as u32
    }

    pub fn transaction_max_timeout_ms(&self) -> i32 {
        self.int_setting("transaction.max.timeout.ms", 900_000).clamp(1, i64::from(i32::MAX)) as i32
    }

    pub fn transactional_id_expiration_ms(&self) -> i64 {
        self.int_setting("transactional.id.expiration.ms", 604_800_000).max(1)
    }

    pub fn transaction_abort_interval_ms(&self) -> u64 {
        self.int_setting("transaction.abort.timed.out.transaction.cleanup.interval.ms", 10_000).max(1) as u64
    }

    pub fn transaction_expiry_interval_ms(&self) -> u64 {
        self.int_setting("transaction.remove.expired.transaction.cleanup.interval.ms", 3_600_000).max(1) as u64
    }

    pub fn offset_metadata_max_bytes(&self) -> usize {
        self.int_setting("offset.metadata.max.bytes", 4096) as usize
    }
}

/// Parses Kafka's `max.connections.per.ip.overrides`: `IP:COUNT` entries separated by
/// commas (an IPv6 address keeps its colons: the count follows the last one).
fn parse_ip_overrides(value: &str) -> Result<std::collections::HashMap<std::net::IpAddr, usize>, String> {
    let mut out = std::collections::HashMap::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (host, count) = entry.rsplit_once(':').ok_or_else(|| format!("'{entry}' is not IP:COUNT"))?;
        let ip: std::net::IpAddr = host
            .trim_matches(['[', ']'])
            .parse()
            .map_err(|_| format!("'{host}' is not an IP address (host names are not resolved; give the address)"))?;
        let count: u32 = count.parse().map_err(|_| format!("'{count}' in '{entry}' is not a count ≥ 0"))?;
        out.insert(ip, count as usize);
    }
    Ok(out)
}

/// Names of every broker setting Runnel knows.
pub fn known_settings() -> impl Iterator<Item = &'static str> {
    BROKER_SETTINGS.iter().map(|(n, _, _)| *n).chain(topic_config::TOPIC_CONFIGS.iter().map(|d| d.broker_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_unknown_settings_refused() {
        let mut c = BrokerConfig::default();
        c.validate().unwrap();
        assert!(c.auto_create_topics());
        assert_eq!(c.num_partitions(), 1);
        c.settings.insert("log.segment.bytes".into(), "1048576".into());
        c.validate().unwrap();
        c.settings.insert("num.partitions".into(), "0".into());
        assert!(c.validate().is_err());
        c.settings.remove("num.partitions");
        c.settings.insert("group.min.session.timeout.ms".into(), "10".into());
        c.validate().unwrap();
        assert_eq!(c.group_min_session_timeout_ms(), 10);
        c.settings.insert("group.max.session.timeout.ms".into(), "5".into());
        assert!(c.validate().is_err());
        c.settings.remove("group.max.session.timeout.ms");
        c.settings.insert("offsets.retention.minutes".into(), "0".into());
        assert!(c.validate().is_err());
        c.settings.remove("offsets.retention.minutes");
        c.settings.insert("bogus".into(), "1".into());
        assert!(c.validate().unwrap_err().to_string().contains("bogus"));
        c.settings.remove("bogus");
        // Per-listener overrides (KIP-103): known settings only, validated as the global ones.
        c.settings.insert("listener.name.sasl_ssl.ssl.keystore.location".into(), "/k.pem".into());
        c.settings.insert("listener.name.sasl_ssl.connections.max.reauth.ms".into(), "60000".into());
        c.validate().unwrap();
        assert_eq!(c.for_listener("SASL_SSL").setting("ssl.keystore.location"), "/k.pem");
        assert_eq!(c.for_listener("SSL").setting("ssl.keystore.location"), "");
        assert!(c.has_listener_override("SASL_SSL", "ssl.keystore.location"));
        c.settings.insert("listener.name.sasl_ssl.connections.max.reauth.ms".into(), "-5".into());
        assert!(c.validate().is_err());
        c.settings.remove("listener.name.sasl_ssl.connections.max.reauth.ms");
        c.settings.insert("listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config".into(), "x".into());
        assert!(c.validate().unwrap_err().to_string().contains("may override only"));
    }
}
