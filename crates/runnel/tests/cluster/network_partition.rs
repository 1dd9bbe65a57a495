//! A network partition between real hosts: each broker runs in a network namespace of its
//! own (`ip netns`, root only), the three joined by veth pairs, and the partition leader is
//! cut off from the other two with `ip link set … down`. The isolated leader still holds its
//! leaderships and takes produce requests, but acknowledges no acks=all write; the majority
//! elects a new leader (a higher leader epoch) and acks=all load carries on there. Healed,
//! the old leader follows the new one and cuts what it appended alone: every replica is byte
//! for byte the new leader's and every acknowledged record is there, once, in order.
//! Where namespaces cannot be made (not root, no `ip`, EPERM) the test says so and passes.
//!
//! The network: namespace `rn<pid>-N` holds node N on its service address (a /32 on its
//! loopback, from 198.18.0.0/15, RFC 2544's test range, a block of 4 per test process)
//! and a veth link `toM` to each other namespace M, with a /32 route over it; a fourth veth
//! from each namespace to the root namespace (`rn<pid>rN` there, with the clients' address
//! on it) carries this test's clients and stays up, so the test still reaches the isolated
//! node. Deleting a namespace deletes its links, so dropping [`Net`] (also when the test
//! panics) removes everything; namespaces left by a killed earlier run are removed at start.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Instant;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;

use super::common::wire;
use super::failover::{check_log, fully_replicated, read_back, PARTITIONS, TOPIC};
use super::replication::replica_bytes;
use super::{broker_ids, client, create_with, metadata, start_cluster_on, wait_until, Host, Load};

/// Namespaces are `rn<pid>-<node>`; the root ends of the client links `rn<pid>r<node>`.
const PREFIX: &str = "rn";
// Kafka error codes an acks=all produce to the isolated leader may get: none is an ack.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const REQUEST_TIMED_OUT: i16 = 7;
const NOT_ENOUGH_REPLICAS: i16 = 19;
const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;

/// Runs `ip ARGS`; the error says what failed and why.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
}

/// Three network namespaces joined as the module doc says; dropped, they are deleted.
struct Net {
    pid: u32,
    names: Vec<String>,
    /// Node N's address is `base + N`, the clients' `base`.
    base: u32,
}

impl Net {
    /// The namespaces and their links, or why they cannot be made here.
    fn new() -> Result<Net, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".into());
        }
        remove_leftovers();
        let pid = std::process::id();
        let names: Vec<String> = (1..=3).map(|n| format!("{PREFIX}{pid}-{n}")).collect();
        for n in &names {
            let _ = ip(&["netns", "del", n]); // an earlier process with this pid
        }
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (pid % 32768) * 4;
        let net = Net { pid, names, base };
        for n in &net.names {
            ip(&["netns", "add", n])?;
        }
        if let Err(e) = net.join() {
            panic!("the network namespaces were made but could not be joined: {e}");
        }
        Ok(net)
    }

    fn addr(&self, k: u32) -> String {
        Ipv4Addr::from(self.base + k).to_string()
    }

    /// Node `n`'s service address.
    fn node(&self, n: usize) -> String {
        self.addr(n as u32)
    }

    fn ns(&self, n: usize) -> &str {
        &self.names[n - 1]
    }

    fn join(&self) -> Result<(), String> {
        let client = self.addr(0);
        for n in 1..=3 {
            let (ns, node) = (self.ns(n), self.node(n));
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{node}/32"), "dev", "lo"])?;
            for m in n + 1..=3 {
                ip(&["link", "add", &format!("to{m}"), "netns", ns, "type", "veth", "peer", "name", &format!("to{n}"), "netns", self.ns(m)])?;
            }
            let root_end = format!("{PREFIX}{}r{n}", self.pid);
            ip(&["link", "add", &root_end, "type", "veth", "peer", "name", "root", "netns", ns])?;
            ip(&["link", "set", &root_end, "up"])?;
            ip(&["addr", "add", &format!("{client}/32"), "dev", &root_end])?;
            ip(&["route", "add", &format!("{node}/32"), "dev", &root_end, "src", &client])?;
            ip(&["-n", ns, "link", "set", "root", "up"])?;
            ip(&["-n", ns, "route", "add", &format!("{client}/32"), "dev", "root", "src", &node])?;
        }
        for n in 1..=3 {
            for m in (1..=3).filter(|&m| m != n) {
                ip(&["-n", self.ns(n), "link", "set", &format!("to{m}"), "up"])?;
            }
        }
        for n in 1..=3 {
            self.links(n, "up")?;
        }
        Ok(())
    }

    /// Sets node `n`'s links to the other two nodes `up` or `down`; up, with their routes
    /// (the kernel drops a link's routes when it goes down).
    fn links(&self, n: usize, state: &str) -> Result<(), String> {
        for m in (1..=3).filter(|&m| m != n) {
            ip(&["-n", self.ns(n), "link", "set", &format!("to{m}"), state])?;
            if state == "up" {
                ip(&["-n", self.ns(n), "route", "replace", &format!("{}/32", self.node(m)), "dev", &format!("to{m}"), "src", &self.node(n)])?;
                ip(&["-n", self.ns(m), "route", "replace", &format!("{}/32", self.node(n)), "dev", &format!("to{n}"), "src", &self.node(m)])?;
            }
        }
        Ok(())
    }

    /// Where node `n` runs: its namespace, on its service address.
    fn host(&self, n: usize) -> Host {
        // Each namespace has ports of its own: a fixed controller port cannot clash.
        Host { ip: self.node(n), controller_port: 9093, wrapper: ["ip", "netns", "exec", self.ns(n)].map(String::from).to_vec() }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The links first: a deleted namespace lives on, with its links and the root
        // namespace's routes over them, while a closed connection's socket in it still
        // retransmits (up to minutes); deleting one end of a veth pair deletes both.
        for n in 1..=3 {
            let _ = ip(&["link", "del", &format!("{PREFIX}{}r{n}", self.pid)]);
            for m in n + 1..=3 {
                let _ = ip(&["-n", self.ns(n), "link", "del", &format!("to{m}")]);
            }
        }
        for n in &self.names {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

/// Deletes the namespaces and root-namespace links of earlier runs whose process is gone
/// (killed before it could).
fn remove_leftovers() {
    let gone = |name: &str, sep: char| {
        let pid = name.strip_prefix(PREFIX).and_then(|r| r.split_once(sep)).and_then(|(pid, _)| pid.parse::<u32>().ok());
        pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
        // `26: rn123r1@if4: <…`
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split(": ").nth(1).and_then(|n| n.split('@').next()).unwrap_or("");
            if gone(name, 'r') {
                let _ = ip(&["link", "del", name]);
            }
        }
    }
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if gone(name, '-') {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
}

/// Partition 0 of the topic as `addr` reports it: (leader, leader epoch, ISR sorted).
fn partition0(addr: &str) -> Option<(i32, i32, Vec<i32>)> {
    let m = metadata(addr);
    let t = m.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == TOPIC))?;
    let p = t.partitions.iter().find(|p| p.partition_index == 0)?;
    let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
    isr.sort();
    Some((p.leader_id.0, p.leader_epoch, isr))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn an_isolated_leader_acknowledges_nothing_and_is_cut_back_on_healing() {
    let net = match Net::new() {
        Ok(net) => net,
        Err(why) => {
            eprintln!("SKIPPED an_isolated_leader_acknowledges_nothing_and_is_cut_back_on_healing: network namespaces cannot be made here ({why}); it needs root and iproute2");
            return;
        }
    };
    let started = Instant::now();
    let hosts: Vec<Host> = (1..=3).map(|n| net.host(n)).collect();
    let c = start_cluster_on([0, 1, 2], "", &hosts);
    let addrs: Vec<String> = c.nodes.iter().map(|b| b.addr.clone()).collect();
    wait_until("all three brokers registered", || addrs.iter().all(|a| broker_ids(&metadata(a)) == [1, 2, 3]));
    let admin: AdminClient<DefaultClientContext> = client(&addrs[0]).create().unwrap();
    create_with(&admin, TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]).expect("create");
    wait_until("the topic fully replicated", || fully_replicated(&addrs[0]));
    // acks=all loads one after another, each with sequence numbers above the last one's:
    // before the partition, on its majority side, and after healing.
    let mut acked = Vec::new();
    let before = Load::start(&addrs.join(","), TOPIC, PARTITIONS);
    before.more(150, "acks=all records before the partition");
    acked.extend(before.finish());

    // Partition 0's leader is cut off from the other two; this test still reaches it.
    let (old, old_epoch, _) = partition0(&addrs[0]).unwrap();
    let i = (old - 1) as usize;
    let majority: Vec<String> = (0..3).filter(|&j| j != i).map(|j| addrs[j].clone()).collect();
    net.links(old as usize, "down").unwrap();

    // It takes acks=all writes (it still thinks it leads) and acknowledges none of them.
    let mut s = wire::connect(&addrs[i]);
    let mut refused = Vec::new();
    for k in 0..3 {
        let value = format!("written-to-the-isolated-leader-{k}");
        let r = wire::produce_within(&mut s, 9, TOPIC, wire::one_record_batch(value.as_bytes()), 2000);
        assert!(
            [REQUEST_TIMED_OUT, NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS, NOT_ENOUGH_REPLICAS_AFTER_APPEND].contains(&r.error_code),
            "the isolated leader answered an acks=all produce with error {} (offset {})",
            r.error_code,
            r.base_offset
        );
        refused.push(r.error_code);
    }
    // The majority elects a new leader in a later epoch, and acks=all goes on there (a
    // producer that knows only the majority: one already talking to the isolated leader
    // retries there, as REQUEST_TIMED_OUT asks no client to look for another leader).
    let mut new = (0, 0);
    wait_until("a new leader on the majority side", || match partition0(&majority[0]) {
        Some((l, e, _)) if l > 0 && l != old && e > old_epoch => {
            new = (l, e);
            true
        }
        _ => false,
    });
    let during = Load::start_after(1_000_000, &majority.join(","), TOPIC, PARTITIONS, &[]);
    during.more(150, "acks=all records on the majority side");
    let in_partition = during.finish();
    assert!(in_partition.iter().any(|(p, _, _)| *p == 0), "nothing acknowledged in the partition that changed leader");
    acked.extend(in_partition);
    // What the isolated leader appended alone is in its log (and only there).
    let alone = b"written-to-the-isolated-leader-0";
    assert!(contains(&replica_bytes(&c.nodes[i], TOPIC, 0), alone), "the isolated leader did not append the produce it got");
    assert!(!contains(&replica_bytes(&c.nodes[(i + 1) % 3], TOPIC, 0), alone), "a majority node has what only the isolated leader got");
    let still = partition0(&addrs[i]).map(|(l, _, _)| l);

    // Healed: the old leader learns the new epoch, follows, cuts its tail and rejoins the ISR.
    net.links(old as usize, "up").unwrap();
    wait_until("the old leader follows the new one, and every ISR is whole again", || {
        partition0(&addrs[i]).is_some_and(|(l, e, _)| (l, e) == new) && fully_replicated(&majority[0])
    });
    let after = Load::start_after(2_000_000, &addrs.join(","), TOPIC, PARTITIONS, &[]);
    after.more(150, "acks=all records after healing");
    acked.extend(after.finish());

    for p in 0..PARTITIONS {
        wait_until("identical replicas", || {
            let b: Vec<Vec<u8>> = c.nodes.iter().map(|n| replica_bytes(n, TOPIC, p)).collect();
            !b[0].is_empty() && b[0] == b[1] && b[1] == b[2]
        });
    }
    assert!(!contains(&replica_bytes(&c.nodes[i], TOPIC, 0), alone), "the old leader kept what it appended alone");
    let total = check_log(&read_back(&addrs.join(",")), &acked);
    eprintln!(
        "node {old} (leader of partition 0 in epoch {old_epoch}) cut off, still leader in its own view: {}, acks=all produce to it \
         answered {refused:?}; node {} leader in epoch {}; {} acknowledged, {total} in the log, 0 missing; {:.1} s",
        still == Some(old),
        new.0,
        new.1,
        acked.len(),
        started.elapsed().as_secs_f64()
    );
}
