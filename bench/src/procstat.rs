//! Resource use of a process from `/proc`: CPU seconds (`utime + stime` of `/proc/<pid>/stat`)
//! and memory (`VmRSS`, `VmHWM` of `/proc/<pid>/status`). A [`Meter`] brackets one run:
//! it resets the peak (`echo 5 > /proc/<pid>/clear_refs`, where allowed) and reports the
//! CPU spent, the resident set at the end and the peak during the run. Reads only; never
//! signals or changes the process beyond resetting its peak-RSS counter.

use std::fs;

/// CPU seconds (user + system) a process has used so far; `None` if it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2 (comm) may contain spaces; everything after the last ')' is space-separated,
    // starting with field 3 (state). utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// `VmRSS` and `VmHWM` in bytes.
pub fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|v| v * 1024)
    };
    Some((kb("VmRSS:")?, kb("VmHWM:")?))
}

/// Number of open file descriptors of a process.
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The soft limit on open files (`Max open files` of `/proc/<pid>/limits`).
pub fn fd_limit(pid: u32) -> Option<u64> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// Resets the peak resident set (`VmHWM`) to the current one. Returns whether it worked
/// (it needs Linux ≥ 4.0 and permission to write the process's `clear_refs`).
pub fn reset_peak(pid: u32) -> bool {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// What a process used during one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_s: f64,
    pub rss: u64,
    /// Peak resident set during the run (or since process start if the reset failed).
    pub peak: u64,
}

/// Brackets a run of one process.
pub struct Meter {
    pid: u32,
    cpu0: f64,
}

impl Meter {
    pub fn start(pid: u32) -> Meter {
        reset_peak(pid);
        Meter { pid, cpu0: cpu_seconds(pid).unwrap_or(0.0) }
    }

    pub fn stop(&self) -> Usage {
        let cpu = cpu_seconds(self.pid).unwrap_or(self.cpu0);
        let (rss, peak) = memory(self.pid).unwrap_or((0, 0));
        Usage { cpu_s: cpu - self.cpu0, rss, peak }
    }
}

/// Meters the broker (when its pid is known) and this benchmark process together.
pub struct RunMeter {
    broker: Option<Meter>,
    client: Meter,
}

/// Usage of the broker (if known) and of the client side (this process: librdkafka and
/// the benchmark loop).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunUsage {
    pub broker: Option<Usage>,
    pub client_cpu_s: f64,
}

impl RunUsage {
    /// Two runs together: CPU times added, memory the larger.
    pub fn plus(&self, other: &RunUsage) -> RunUsage {
        let broker = match (self.broker, other.broker) {
            (Some(a), Some(b)) => Some(Usage { cpu_s: a.cpu_s + b.cpu_s, rss: a.rss.max(b.rss), peak: a.peak.max(b.peak) }),
            (a, b) => a.or(b),
        };
        RunUsage { broker, client_cpu_s: self.client_cpu_s + other.client_cpu_s }
    }
}

impl RunMeter {
    pub fn start(broker_pid: Option<u32>) -> RunMeter {
        let me = std::process::id();
        RunMeter { broker: broker_pid.map(Meter::start), client: Meter { pid: me, cpu0: cpu_seconds(me).unwrap_or(0.0) } }
    }

    pub fn stop(&self) -> RunUsage {
        RunUsage { broker: self.broker.as_ref().map(Meter::stop), client_cpu_s: self.client.stop().cpu_s }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some());
        let (rss, peak) = memory(me).unwrap();
        assert!(rss > 0 && peak >= rss);
        assert!(open_fds(me).unwrap() >= 3);
        assert!(fd_limit(me).unwrap() > 0);
    }
}
