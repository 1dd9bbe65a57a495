//! This machine's limits, measured in the same run as reference points: loopback TCP
//! throughput (one sender thread, one receiver thread, 1 MiB writes and reads over
//! 127.0.0.1), the CPU cost of the cheapest request/response exchange over loopback, and
//! sequential write throughput of the data dir's disk (1 MiB writes, then one fsync,
//! counted in the time).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Bytes moved and the seconds it took.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    pub bytes: u64,
    pub secs: f64,
}

impl Transfer {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs
    }
}

const CHUNK: usize = 1 << 20;

/// Streams bytes over one loopback TCP connection for about `duration`.
pub fn loopback_tcp(duration: Duration) -> Result<Transfer> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> std::io::Result<(u64, Instant)> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok((total, Instant::now()));
            }
            total += n as u64;
        }
    });
    let mut s = TcpStream::connect(addr)?;
    let buf: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let start = Instant::now();
    while start.elapsed() < duration {
        for _ in 0..16 {
            s.write_all(&buf)?;
        }
    }
    s.shutdown(std::net::Shutdown::Write)?;
    let (bytes, end) = receiver.join().expect("receiver thread").context("loopback receiver")?;
    Ok(Transfer { bytes, secs: (end - start).as_secs_f64() })
}

/// Writes `bytes` sequentially to a new file in `dir`, fsyncs it, and removes it.
/// Returns the write phase alone (into the page cache, what a broker that does not fsync
/// pays) and write + fsync (the disk's sustained rate).
pub fn disk_write(dir: &Path, bytes: u64) -> Result<(Transfer, Transfer)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("runnel-bench-disk-probe.tmp");
    let buf: Vec<u8> = (0..CHUNK).map(|i| (i * 131 % 253) as u8).collect();
    let mut f = std::fs::File::create(&path).with_context(|| format!("create {}", path.display()))?;
    let start = Instant::now();
    let mut written = 0u64;
    while written < bytes {
        f.write_all(&buf)?;
        written += CHUNK as u64;
    }
    let write_secs = start.elapsed().as_secs_f64();
    f.sync_all()?;
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok((Transfer { bytes: written, secs: write_secs }, Transfer { bytes: written, secs }))
}

/// The request/response floor: a client thread sends a 100-byte request over loopback on a
/// fixed schedule (`rate` per second) and waits for its 100-byte answer; the server thread
/// only reads one and writes one back (blocking calls: no event loop, no work, nothing
/// else). Returns the server thread's CPU time per request in µs: what one read, one write
/// and the wake-ups between them cost here, the floor under any broker's "µs/request" at
/// that rate (a broker adds its event loop and its work).
pub fn request_floor(rate: u64, duration: Duration) -> Result<f64> {
    const SIZE: usize = 100;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<(u64, Duration)> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; SIZE];
        let cpu0 = thread_cpu();
        let mut n = 0u64;
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf)?;
            n += 1;
        }
        Ok((n, thread_cpu().saturating_sub(cpu0)))
    });
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut buf = [7u8; SIZE];
    let start = Instant::now();
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    for i in 0..total {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        s.write_all(&buf)?;
        s.read_exact(&mut buf)?;
    }
    drop(s);
    let (n, cpu) = server.join().expect("server thread").context("request floor server")?;
    Ok(cpu.as_secs_f64() * 1e6 / n.max(1) as f64)
}

/// The calling thread's CPU time (user + system).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
