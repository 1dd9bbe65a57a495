//! The broker under test: either one this benchmark starts (`runnel broker --listen
//! 127.0.0.1:0 --data-dir <dir>`, address read from its first stdout line, its log kept in
//! a file beside the data dir; or Apache Kafka through `scripts/apache-kafka`) or an
//! external one given with `--brokers`, whose process is not ours (no restart; resource
//! figures only if its pid is given).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// Which broker the benchmark starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `BIN broker --listen 127.0.0.1:0 --data-dir DIR`.
    Runnel { bin: PathBuf },
    /// Apache Kafka through `scripts/apache-kafka` (a single KRaft node, `format` then
    /// `server`), with the JVM options of Kafka's own start script.
    ApacheKafka,
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Runnel { .. } => "Runnel",
            Kind::ApacheKafka => "Apache Kafka",
        }
    }
}

/// The JVM options `kafka-server-start.sh` uses (heap 1 GB, G1 with its pause target).
const KAFKA_JVM_OPTS: &str = "-Xms1g -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true";

pub fn apache_kafka_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/apache-kafka")
}

/// A broker process started by the benchmark. Dropping it kills the process.
pub struct BrokerProc {
    pub addr: String,
    pub data_dir: PathBuf,
    kind: Kind,
    extra: Vec<String>,
    log: PathBuf,
    child: Child,
    /// When the process was spawned and when it printed its startup line.
    pub spawned_at: Instant,
    pub listening_at: Instant,
}

impl BrokerProc {
    /// Starts a broker of `kind` on `data_dir` with a free loopback port; `extra` are
    /// further `runnel broker` arguments (e.g. `-o key=value`; Runnel only).
    pub fn start(kind: &Kind, data_dir: &Path, extra: &[String]) -> Result<BrokerProc> {
        std::fs::create_dir_all(data_dir)?;
        let log = data_dir.with_extension("log");
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        // Kafka: formatted once (free ports written into server.properties), then run.
        let (mut cmd, ready, known_addr): (Command, fn(&str) -> Option<String>, Option<String>) = match kind {
            Kind::Runnel { bin } => {
                let mut c = Command::new(bin);
                c.arg("broker").arg("--listen").arg("127.0.0.1:0").arg("--data-dir").arg(data_dir).args(extra);
                c.env("RUST_LOG", std::env::var("RUNNEL_BENCH_BROKER_LOG").unwrap_or_else(|_| "warn".into()));
                // Several brokers may run side by side (the idle checks): the admin HTTP
                // listener takes a free port too.
                c.env("RUNNEL_ADMIN_LISTEN", "127.0.0.1:0");
                (c, parse_listener, None)
            }
            Kind::ApacheKafka => {
                let props = data_dir.join("server.properties");
                if !props.exists() {
                    let out = Command::new(apache_kafka_script()).arg("format").arg(data_dir).output()?;
                    if !out.status.success() {
                        bail!("scripts/apache-kafka format failed: {}", String::from_utf8_lossy(&out.stderr));
                    }
                }
                let text = std::fs::read_to_string(&props)?;
                let addr = text.lines().find_map(|l| l.strip_prefix("advertised.listeners=PLAINTEXT://")).map(str::to_string);
                let mut c = Command::new(apache_kafka_script());
                c.arg("server").arg(&props).env("APACHE_KAFKA_JVM_OPTS", KAFKA_JVM_OPTS);
                let started = |line: &str| line.contains("Kafka Server started").then(String::new);
                (c, started, Some(addr.ok_or_else(|| anyhow!("no listener in {}", props.display()))?))
            }
        };
        let spawned_at = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .with_context(|| format!("cannot start {kind:?} (Runnel: cargo build --release -p runnel)"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(found) = ready(&line) {
                        let _ = tx.send((line, found));
                        sent = true;
                    }
                }
            }
        });
        let (line, found) = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(got) => got,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("broker printed no startup line; its log:\n{}", tail(&log));
            }
        };
        let listening_at = Instant::now();
        let addr = known_addr.unwrap_or(found);
        if addr.is_empty() {
            bail!("unexpected broker startup line: {line}");
        }
        Ok(BrokerProc {
            addr,
            data_dir: data_dir.to_path_buf(),
            kind: kind.clone(),
            extra: extra.to_vec(),
            log,
            child,
            spawned_at,
            listening_at,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the broker's log if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("broker exited ({status}); its log:\n{}", tail(&self.log));
        }
        Ok(())
    }

    /// Whether the broker's log (stderr) contains `needle`.
    pub fn log_contains(&self, needle: &str) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|t| t.contains(needle))
    }

    /// SIGTERM, then waits for a clean exit (SIGKILL after 60 s).
    pub fn stop(&mut self) -> Result<()> {
        // SAFETY: signalling our own child by pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                // The JVM ends with 143 (128 + SIGTERM) after its shutdown hooks ran.
                let clean = status.success() || (self.kind == Kind::ApacheKafka && status.code() == Some(143));
                if !clean {
                    bail!("broker stopped with {status}; its log:\n{}", tail(&self.log));
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("broker did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the broker cleanly and starts a new process on the same data dir.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        let next = BrokerProc::start(&self.kind, &self.data_dir, &self.extra)?;
        *self = next;
        Ok(())
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `… Kafka listener on HOST:PORT (advertised …` → `HOST:PORT`.
/// Reads `child`'s standard output on a thread and sends what `wanted` finds in the first
/// line it accepts; the rest of the output is drained so that the child never blocks.
pub fn first_line(child: &mut Child, wanted: fn(&str) -> Option<String>) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        if let Some(found) = lines.by_ref().find_map(|l| wanted(&l)) {
            let _ = tx.send(found);
        }
        lines.for_each(drop);
    });
    rx
}

/// A `runnel broker` a group of the bench starts for itself (`BIN broker --data-dir
/// ROOT/data ARGS`, its log in ROOT/broker.log), with its startup line. Dropping it kills it.
pub struct OwnBroker {
    pub child: Child,
    pub line: String,
}

impl OwnBroker {
    pub fn start(bin: &Path, root: &Path, args: &[String]) -> Result<OwnBroker> {
        std::fs::create_dir_all(root)?;
        let mut child = Command::new(bin)
            .arg("broker")
            .arg("--data-dir")
            .arg(root.join("data"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(root.join("broker.log"))?))
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let rx = first_line(&mut child, |l| l.contains("listeners [").then(|| l.to_string()));
        let line = rx.recv_timeout(Duration::from_secs(60)).map_err(|_| anyhow!("the broker printed no startup line; see {}/broker.log", root.display()))?;
        Ok(OwnBroker { child, line })
    }

    /// The word of the startup line after `marker` (e.g. `admin on `).
    pub fn after(&self, marker: &str) -> Result<String> {
        let word = self.line.split(marker).nth(1).and_then(|r| r.split([' ', ',', ')']).next());
        word.map(str::to_string).ok_or_else(|| anyhow!("no `{marker}` in: {}", self.line))
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn parse_listener(line: &str) -> Option<String> {
    line.split("Kafka listener on ").nth(1)?.split_whitespace().next().map(str::to_string)
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The broker the benchmark talks to.
pub enum Target {
    Ours(BrokerProc),
    External { addr: String, pid: Option<u32> },
}

impl Target {
    pub fn addr(&self) -> &str {
        match self {
            Target::Ours(b) => &b.addr,
            Target::External { addr, .. } => addr,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            Target::Ours(b) => Some(b.pid()),
            Target::External { pid, .. } => *pid,
        }
    }

    pub fn check_alive(&mut self) -> Result<()> {
        match self {
            Target::Ours(b) => b.check_alive(),
            Target::External { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_startup_line() {
        let line = "runnel broker 0.1.0 (node id 1, cluster abc): Kafka listener on 127.0.0.1:40123 (advertised as 127.0.0.1:40123), data in /tmp/x";
        assert_eq!(super::parse_listener(line).as_deref(), Some("127.0.0.1:40123"));
        assert_eq!(super::parse_listener("something else"), None);
    }
}
