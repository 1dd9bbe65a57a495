//! A load test on real sockets: 1,000 connections at once — polite clients that stay
//! connected, slow readers that pipeline Fetches of a megabyte and never read the
//! answers, and clients that send garbage — while one well-behaved client produces and
//! fetches. The broker must keep answering it promptly, close the garbage, hold every
//! other connection, and keep its memory bounded (slow readers cost a few queued
//! responses each, never the data they asked for).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::wire::*;
use common::{raise_fd_limit, Broker};
use kafka_protocol::messages::*;

const POLITE: usize = 600;
const SLOW_READERS: usize = 300;
const GARBAGE: usize = 100;
/// Fetches each slow reader pipelines (about 1 MiB each) without reading.
const PIPELINED: usize = 20;

fn fetch_frame(corr: i32, topic: &str) -> Vec<u8> {
    let p = fetch_request::FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20);
    let t = fetch_request::FetchTopic::default().with_topic(TopicName(sb(topic))).with_partitions(vec![p]);
    let req = FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_wait_ms(0).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![t]);
    request(ApiKey::Fetch, 12, corr, &req)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[test]
fn a_thousand_connections_do_not_stall_a_well_behaved_client() {
    raise_fd_limit(4096);
    let mut b = Broker::start(&[]);
    let pid = b.pid();
    let mut s = connect(&b.addr);
    create_topic(&mut s, "load", &[]);
    let value = vec![b'x'; 16 * 1024];
    for _ in 0..64 {
        assert_eq!(produce(&mut s, 9, "load", one_record_batch(&value)).error_code, 0);
    }

    let polite = ApiVersionsRequest::default().with_client_software_name(sb("load")).with_client_software_version(sb("1"));
    let mut held: Vec<TcpStream> = Vec::new();
    let mut garbage: Vec<TcpStream> = Vec::new();
    for i in 0..POLITE + SLOW_READERS + GARBAGE {
        let mut c = connect(&b.addr);
        if i < POLITE {
            let av: ApiVersionsResponse = call(&mut c, ApiKey::ApiVersions, 3, &polite);
            assert_eq!(av.error_code, 0);
            held.push(c);
        } else if i < POLITE + SLOW_READERS {
            let frames: Vec<u8> = (0..PIPELINED).flat_map(|k| fetch_frame(k as i32, "load")).collect();
            c.write_all(&frames).expect("pipeline fetches");
            held.push(c);
        } else {
            // Half claim a 1 GiB frame, half send a frame of junk.
            let bytes = if i % 2 == 0 { [&(1i32 << 30).to_be_bytes()[..], &junk(i as u64, 60)].concat() } else { prefixed(&junk(i as u64, 200)) };
            let _ = c.write_all(&bytes);
            garbage.push(c);
        }
    }
    let total = POLITE + SLOW_READERS + GARBAGE;

    // The well-behaved client: produce then fetch, 50 rounds, each answered promptly.
    let mut worst = Duration::ZERO;
    let mut took = Vec::new();
    for round in 0..50 {
        let t = Instant::now();
        assert_eq!(produce(&mut s, 9, "load", one_record_batch(b"ping")).error_code, 0, "round {round}");
        let (hw, records) = fetch(&mut s, "load", 64 + round, 0);
        assert_eq!(hw, 65 + round, "round {round}");
        assert!(!records.is_empty(), "round {round}");
        let e = t.elapsed();
        worst = worst.max(e);
        took.push(e);
    }
    took.sort();
    let p99 = took[took.len() * 99 / 100 - 1];
    for (i, mut g) in garbage.into_iter().enumerate() {
        let got = expect_closed(&mut g, &format!("garbage connection {i}"));
        assert!(got.is_empty(), "garbage connection {i} got an answer");
    }
    let fds = open_fds(pid);
    let peak = b.peak_rss_mib();
    eprintln!("load: {total} connections; well-behaved produce+fetch p99 {p99:?}, max {worst:?}; broker fds {fds}, peak RSS {peak} MiB");
    assert!(worst < Duration::from_secs(2), "a round trip took {worst:?}");
    assert!(fds >= POLITE + SLOW_READERS, "the broker holds every connection that behaves ({fds} fds)");
    // 300 slow readers asked for 6 GB in all: they may cost a couple of queued responses
    // each, never the data (it is sent from the page cache, or not at all).
    assert!(peak < 150, "peak RSS {peak} MiB");
    drop(held);
    assert_serving(&mut b);
}
