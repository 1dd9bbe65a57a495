//! `runnel broker`: the broker's flags, `RUNNEL_*` environment variables and an optional
//! TOML file (`--config`). Precedence: flag > environment > file > default. Owns logging
//! setup and signal handling for the broker process; the broker itself is the
//! `runnel-broker` crate, and this file must never hold broker logic.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use runnel_broker::BrokerConfig;

#[derive(clap::Args)]
pub struct BrokerArgs {
    /// TOML config file: the keys below (data-dir, listen, advertised-listener, node-id,
    /// admin-listen, controller-listen, controller-quorum)
    /// and any Kafka broker setting by its Kafka name, e.g. "log.segment.bytes" = 1048576.
    #[arg(long, env = "RUNNEL_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for partition logs and metadata [default: ./runnel-data]
    #[arg(long, env = "RUNNEL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the Kafka listener, HOST:PORT (port 0 picks a free port) [default: 127.0.0.1:9092].
    /// The one-listener shorthand of Kafka's `listeners` (-o listeners=PLAINTEXT://…,SASL_SSL://…)
    #[arg(long, env = "RUNNEL_LISTEN")]
    listen: Option<String>,
    /// Address clients are told to connect to, HOST:PORT [default: the listen address].
    /// With several listeners: -o advertised.listeners=NAME://HOST:PORT,…
    #[arg(long, env = "RUNNEL_ADVERTISED_LISTENER")]
    advertised_listener: Option<String>,
    /// Address of the admin HTTP listener serving /metrics, /healthz and /readyz,
    /// HOST:PORT, or "off" [default: 127.0.0.1:9644]
    #[arg(long, env = "RUNNEL_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// This broker's node id [default: 1]
    #[arg(long, env = "RUNNEL_NODE_ID")]
    node_id: Option<i32>,
    /// Cluster mode: address of this node's controller listener (the metadata quorum's
    /// RPC), HOST:PORT. Needs --controller-quorum.
    #[arg(long, env = "RUNNEL_CONTROLLER_LISTEN")]
    controller_listen: Option<String>,
    /// Cluster mode: every voter of the metadata quorum, ID@HOST:PORT,… (this node's
    /// --node-id among them), e.g. 1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293
    #[arg(long, env = "RUNNEL_CONTROLLER_QUORUM")]
    controller_quorum: Option<String>,
    /// A Kafka broker setting, KEY=VALUE (repeatable), e.g. -o log.segment.bytes=1048576.
    /// Several at once: -o k1=v1,k2=v2; a value may hold commas
    /// (-o listeners=PLAINTEXT://:9092,SSL://:9093, max.connections.per.ip.overrides=10.0.0.1:5,10.0.0.2:5).
    /// Environment: RUNNEL_SET="k1=v1,k2=v2".
    #[arg(short = 'o', long = "set", value_name = "KEY=VALUE", env = "RUNNEL_SET")]
    set: Vec<String>,
    /// Log level or filter (trace, debug, info, warn, error; or a RUST_LOG-style filter)
    #[arg(long, env = "RUNNEL_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log format: human-readable lines, or one JSON object per line
    #[arg(long, env = "RUNNEL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// The config file: our keys, plus Kafka settings by their Kafka names.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    advertised_listener: Option<String>,
    node_id: Option<i32>,
    admin_listen: Option<String>,
    controller_listen: Option<String>,
    controller_quorum: Option<String>,
    #[serde(flatten)]
    kafka: BTreeMap<String, toml::Value>,
}

fn broker_config(args: &BrokerArgs) -> Result<BrokerConfig> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str::<FileConfig>(&text).with_context(|| format!("config file {} is not valid", path.display()))?
        }
        None => FileConfig::default(),
    };
    let defaults = BrokerConfig::default();
    let mut settings = BTreeMap::new();
    for (k, v) in file.kafka {
        let v = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => bail!("config file: {k} must be a string, number or boolean, got {other}"),
        };
        settings.insert(k, v);
    }
    for kv in args.set.iter().flat_map(|s| split_settings(s)) {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--set expects KEY=VALUE, got '{kv}'");
        };
        settings.insert(k.trim().to_string(), v.trim().to_string());
    }
    let listen = args.listen.clone().or(file.listen);
    if listen.is_some() && settings.contains_key("listeners") {
        bail!("both --listen and listeners are set: give the listeners with one of them (--listen is the one-listener shorthand of listeners=PLAINTEXT://HOST:PORT)");
    }
    let advertised_listener = args.advertised_listener.clone().or(file.advertised_listener);
    if advertised_listener.is_some() && settings.contains_key("advertised.listeners") {
        bail!("both --advertised-listener and advertised.listeners are set: give one of them");
    }
    Ok(BrokerConfig {
        node_id: args.node_id.or(file.node_id).unwrap_or(defaults.node_id),
        listen: listen.unwrap_or(defaults.listen),
        advertised_listener,
        data_dir: args.data_dir.clone().or(file.data_dir).unwrap_or(defaults.data_dir),
        admin_listen: match args.admin_listen.clone().or(file.admin_listen) {
            Some(a) if a == "off" => None,
            Some(a) => Some(a),
            None => defaults.admin_listen,
        },
        controller_listen: args.controller_listen.clone().or(file.controller_listen),
        controller_quorum: args.controller_quorum.clone().or(file.controller_quorum),
        settings,
    })
}

/// Splits `k1=v1,k2=v2` into settings. A comma starts a new setting only when a Kafka
/// setting name and `=` follow it; otherwise it belongs to the value
/// (`listeners=PLAINTEXT://:9092,SSL://:9093` is one setting).
fn split_settings(s: &str) -> Vec<String> {
    let starts_setting = |piece: &str| {
        piece.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
        })
    };
    let mut out: Vec<String> = Vec::new();
    for piece in s.split(',') {
        match out.last_mut() {
            Some(last) if !starts_setting(piece) => {
                last.push(',');
                last.push_str(piece);
            }
            _ => out.push(piece.to_string()),
        }
    }
    out
}

pub fn run_broker(args: BrokerArgs) -> Result<()> {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| args.log_level.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).context("invalid --log-level")?;
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    raise_open_files_limit();
    let config = broker_config(&args)?;
    config.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let data_dir = config.data_dir.clone();
        let node_id = config.node_id;
        let handle = runnel_broker::start(config).await?;
        let admin = handle.admin_addr.map_or_else(|| "admin listener off".to_string(), |a| format!("admin on {a}"));
        let listeners: Vec<String> = handle.listeners.iter().map(|l| format!("{}://{}", l.name, l.local_addr)).collect();
        println!(
            "runnel broker {} (node id {node_id}, cluster {}): Kafka listener on {} (advertised as {}), listeners [{}], data in {}, {admin}",
            env!("CARGO_PKG_VERSION"),
            handle.cluster_id,
            handle.local_addr,
            handle.advertised,
            listeners.join(" "),
            data_dir.display()
        );
        for l in &handle.listeners {
            tracing::info!(listener = %l.name, protocol = %l.protocol, bound = %l.local_addr, advertised = %l.advertised, "Kafka listener up");
        }
        let token = handle.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received; stopping");
            token.cancel();
        });
        handle.wait().await;
        anyhow::Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Raises the soft limit on open files to the hard limit: a broker holds one descriptor
/// per segment plus one per connection, and the usual soft limit (1024) is far too low.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
                tracing::warn!("could not raise the open-files limit above {}", lim.rlim_cur);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_settings;

    #[test]
    fn settings_split_on_commas_that_start_a_setting() {
        assert_eq!(split_settings("a.b=1,c=2"), ["a.b=1", "c=2"]);
        assert_eq!(
            split_settings("listeners=PLAINTEXT://:9092,SSL://:9093,num.partitions=3"),
            ["listeners=PLAINTEXT://:9092,SSL://:9093", "num.partitions=3"]
        );
        assert_eq!(split_settings("ssl.principal.mapping.rules=RULE:^CN=(.*)$/$1/,DEFAULT"), ["ssl.principal.mapping.rules=RULE:^CN=(.*)$/$1/,DEFAULT"]);
        assert_eq!(split_settings("oops"), ["oops"]);
    }
}
