//! Test harness: starts the real `runnel` binary on 127.0.0.1:0 with a temp data dir,
//! reads the bound address from its startup line, and can stop it cleanly, kill it with
//! SIGKILL, and restart it on the same data dir.
#![allow(dead_code)]

pub mod admin;
pub mod certs;
pub mod configs;
pub mod kafka;
pub mod sasl;
pub mod wire;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Broker {
    pub addr: String,
    /// Every Kafka listener from the startup line: (NAME, HOST:PORT), in `listeners` order.
    pub listeners: Vec<(String, String)>,
    /// The admin HTTP listener's address, when the startup line names one.
    pub admin_addr: Option<String>,
    pub data_dir: PathBuf,
    child: Child,
    extra: Vec<String>,
    /// The command the process runs under (e.g. `ip netns exec NS`); empty: none.
    wrapper: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl Broker {
    /// Starts a broker with a fresh temp data dir and extra `runnel broker` arguments.
    pub fn start(extra: &[&str]) -> Broker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut b = Self::start_in(&dir, extra);
        b._tmp = Some(tmp);
        b
    }

    /// Starts a broker on an existing data dir.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Broker {
        Self::spawn_in(data_dir, extra).wait()
    }

    /// Starts a broker process without waiting for it to serve (a cluster node waits
    /// for its quorum before it prints its startup line).
    pub fn spawn_in(data_dir: &Path, extra: &[&str]) -> Starting {
        Self::spawn_limited(data_dir, extra, None, None, &[], &[])
    }

    /// [`Broker::spawn_in`] with the process started by `wrapper` (a command that runs the
    /// rest of its command line, e.g. `ip netns exec NS`: the broker in a network namespace).
    /// The wrapper must exec the broker, so the child is the broker process itself.
    pub fn spawn_wrapped(wrapper: &[&str], data_dir: &Path, extra: &[&str]) -> Starting {
        Self::spawn_limited(data_dir, extra, None, None, &wrapper.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &[])
    }

    /// Starts a broker with a fresh temp data dir whose stderr (its log, and any panic
    /// message) goes to the file `log` instead of the test's.
    pub fn start_logging_to(extra: &[&str], log: &Path) -> Broker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut b = Self::spawn_limited(tmp.path(), extra, None, Some(log), &[], &[]).wait();
        b._tmp = Some(tmp);
        b
    }

    /// Starts a broker on an existing data dir whose process may open at most `nofile`
    /// files (its RLIMIT_NOFILE, soft and hard; the test process keeps its own).
    pub fn start_with_fd_limit(data_dir: &Path, extra: &[&str], nofile: u64) -> Broker {
        Self::spawn_limited(data_dir, extra, Some(nofile), None, &[], &[]).wait()
    }

    /// Starts a broker with a fresh temp data dir and these environment variables set in its
    /// process (failpoints, e.g. `RUNNEL_FAILPOINT_FLUSH_DELAY_MS`).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Broker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut b = Self::spawn_limited(tmp.path(), extra, None, None, &[], env).wait();
        b._tmp = Some(tmp);
        b
    }

    fn spawn_limited(data_dir: &Path, extra: &[&str], nofile: Option<u64>, stderr: Option<&Path>, wrapper: &[String], env: &[(&str, &str)]) -> Starting {
        use std::os::unix::process::CommandExt;
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let wrapper = wrapper.to_vec();
        // With Kafka's `listeners` among the settings, or a --listen of the caller's, ours must go.
        let listen: &[&str] = if extra.iter().any(|a| a == "--listen" || a.starts_with("listeners=") || a.contains(",listeners=")) {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_runnel"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_runnel")),
        };
        if let Some(n) = nofile {
            let lim = libc::rlimit { rlim_cur: n, rlim_max: n };
            // SAFETY: setrlimit is async-signal-safe; `lim` is a plain struct copied in.
            unsafe {
                cmd.pre_exec(move || if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) });
            }
        }
        let mut child = cmd
            .arg("broker")
            .args(listen)
            .arg("--data-dir")
            .arg(data_dir)
            .args(&extra)
            .env("RUST_LOG", std::env::var("RUNNEL_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            // Tests run brokers side by side: the admin listener too takes a free port.
            .env("RUNNEL_ADMIN_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr.map_or_else(Stdio::inherit, |p| Stdio::from(std::fs::File::create(p).expect("broker log file"))))
            .spawn()
            .expect("spawn runnel");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        Starting { child, data_dir: data_dir.to_path_buf(), extra, wrapper, rx }
    }
}

/// Runs `runnel broker` with `extra` arguments that must keep it from starting; returns
/// what it printed on stderr (the reason).
pub fn run_broker_expecting_failure(extra: &[&str]) -> String {
    let tmp = tempfile::tempdir().expect("tempdir");
    // With Kafka's `listeners` among the settings, --listen must go (as in `spawn_limited`).
    let listen: &[&str] = if extra.iter().any(|a| a.starts_with("listeners=")) { &[] } else { &["--listen", "127.0.0.1:0"] };
    let out = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .arg("broker")
        .args(listen)
        .args(["--admin-listen", "off", "--data-dir"])
        .arg(tmp.path())
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("spawn runnel");
    assert!(!out.status.success(), "the broker started with {extra:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `runnel acl ARGS --brokers ADDR`; returns stdout, panicking with stderr on failure.
pub fn acl(addr: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_runnel")).arg("acl").args(args).args(["--brokers", addr]).output().expect("run runnel acl");
    assert!(out.status.success(), "runnel acl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A broker process that has not printed its startup line yet.
pub struct Starting {
    child: Child,
    data_dir: PathBuf,
    extra: Vec<String>,
    wrapper: Vec<String>,
    rx: std::sync::mpsc::Receiver<String>,
}

impl Starting {
    /// Waits for the startup line and returns the serving broker.
    pub fn wait(self) -> Broker {
        self.wait_for_start().unwrap_or_else(|e| panic!("broker did not print its startup line: {e}"))
    }

    /// [`Starting::wait`], or why no startup line came (the process is gone then).
    pub fn wait_for_start(self) -> Result<Broker, std::sync::mpsc::RecvTimeoutError> {
        let Starting { mut child, data_dir, extra, wrapper, rx } = self;
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let addr = line
            .split("Kafka listener on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected startup line: {line}"))
            .to_string();
        let admin_addr = line
            .split("admin on ")
            .nth(1)
            .and_then(|rest| rest.split([' ', ',', ')']).next())
            .map(str::to_string);
        let listeners = line
            .split("listeners [")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .map(|list| {
                list.split_whitespace()
                    .filter_map(|l| l.split_once("://"))
                    .map(|(n, a)| (n.to_string(), a.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Broker { addr, listeners, admin_addr, data_dir, child, extra, wrapper, _tmp: None })
    }
}

impl Broker {
    /// The bound address of the listener named `name`.
    pub fn listener(&self, name: &str) -> &str {
        self.listeners.iter().find(|(n, _)| n == name).map(|(_, a)| a.as_str()).unwrap_or_else(|| panic!("no listener {name} in {:?}", self.listeners))
    }

    /// SIGKILL: no flush, no checkpoint.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        unsafe_sigterm(self.child.id());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            if std::time::Instant::now() > deadline {
                self.kill9();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a new broker process on the same data dir (after `kill9` or `stop`),
    /// keeping the temp dir alive.
    ///
    /// The new process binds the same ports again. Tests run side by side, and another
    /// test's outgoing connection may hold one of them as its local port for a moment
    /// ("Address already in use"): for that reason only, the start is tried again, up to 20
    /// times a quarter of a second apart. Its stderr goes to `<data dir>.restart.log`.
    pub fn restart(&mut self) {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let log = PathBuf::from(format!("{}.restart.log", self.data_dir.display()));
        let mut attempt = 0;
        let mut next = loop {
            match Broker::spawn_limited(&self.data_dir, &extra, None, Some(&log), &self.wrapper, &[]).wait_for_start() {
                Ok(b) => break b,
                Err(e) => {
                    let reason = std::fs::read_to_string(&log).unwrap_or_default();
                    attempt += 1;
                    if attempt < 20 && reason.contains("Address already in use") {
                        eprintln!("restart attempt {attempt}: {}", reason.trim());
                        std::thread::sleep(Duration::from_millis(250));
                        continue;
                    }
                    panic!("broker did not restart ({e}); its stderr:\n{reason}");
                }
            }
        };
        eprintln!("restarted broker's stderr: {}", log.display());
        std::mem::swap(&mut self.addr, &mut next.addr);
        std::mem::swap(&mut self.listeners, &mut next.listeners);
        std::mem::swap(&mut self.admin_addr, &mut next.admin_addr);
        std::mem::swap(&mut self.child, &mut next.child);
        // `next` now holds the dead child; forget it without killing anything live.
        next._tmp = None;
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The broker process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The broker process's peak resident memory so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kib / 1024
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

/// Raises this process's open-file limit (brokers started after it inherit it) to `need`.
pub fn raise_fd_limit(need: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_cur < need {
        assert!(lim.rlim_max >= need, "the hard open-file limit {} is below the {need} this test needs", lim.rlim_max);
        lim.rlim_cur = need;
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    }
}
