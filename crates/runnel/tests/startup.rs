//! The broker starts on an ephemeral port, answers a raw ApiVersions, and stops cleanly
//! on SIGTERM; it restarts and serves with more segments than it may open files.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;

use common::admin::metrics;
use common::kafka::{block_on, consume_ranges, create_topic, noise, producer, send_all};
use common::Broker;
use rdkafka::producer::FutureRecord;

#[test]
fn starts_answers_and_stops_cleanly() {
    let mut b = common::Broker::start(&[]);
    let mut s = TcpStream::connect(&b.addr).unwrap();
    // ApiVersions v0: key 18, version 0, correlation id 42, null client id.
    let req = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 42, 0xff, 0xff];
    s.write_all(&req).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    assert_eq!(&body[..4], &42i32.to_be_bytes(), "correlation id echoed");
    assert_eq!(&body[4..6], &[0, 0], "no error");
    assert!(b.data_dir.join("meta.properties").exists());
    assert!(b.stop(), "clean exit on SIGTERM");
}

/// A data dir holding more segments than the broker may open files: the restarted broker
/// (RLIMIT_NOFILE 160, so `log.max.open.segments` resolves to 80) opens them on demand and
/// closes idle ones, serves every record to a real client, and says so in /metrics. Before
/// segments were opened on demand, the partitions past the limit could not be opened.
#[test]
fn restarts_and_serves_with_more_segments_than_open_files() {
    const PARTITIONS: i32 = 24;
    const PER_PARTITION: usize = 20;
    const NOFILE: u64 = 160;
    let mut b = Broker::start(&[]);
    // One 700-byte record per batch and at most one batch per 1 KiB segment: a segment per record.
    create_topic(&b, "many", PARTITIONS, &[("segment.bytes", "1024")]);
    let p = producer(&b, &[("batch.num.messages", "1"), ("linger.ms", "0"), ("compression.type", "none")]);
    let values: Vec<(i32, Vec<u8>)> = (0..PER_PARTITION).flat_map(|i| (0..PARTITIONS).map(move |p| (p, noise(700, (p as u64) << 32 | i as u64)))).collect();
    block_on(send_all(&p, values.iter().map(|(p, v)| FutureRecord::to("many").partition(*p).payload(&v[..]))));
    drop(p);
    let segments: usize = std::fs::read_dir(&b.data_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|d| d.file_name().unwrap().to_string_lossy().starts_with("many-"))
        .map(|d| common::kafka::log_files(&d).len())
        .sum();
    assert!(segments as u64 > 2 * NOFILE, "only {segments} segments");
    assert!(b.stop());

    let b2 = Broker::start_with_fd_limit(&b.data_dir, &[], NOFILE);
    let ranges: BTreeMap<i32, (i64, i64)> = (0..PARTITIONS).map(|p| (p, (0, PER_PARTITION as i64))).collect();
    let got = consume_ranges(&b2, "many", &ranges);
    for (p, recs) in &got {
        let sent: Vec<&[u8]> = values.iter().filter(|(q, _)| q == p).map(|(_, v)| &v[..]).collect();
        let read: Vec<&[u8]> = recs.iter().map(|r| r.value.as_deref().unwrap_or_default()).collect();
        assert!(read == sent, "partition {p}: read {} records, not the {} sent", read.len(), sent.len());
    }
    let m = metrics(&b2);
    let (open, max, fds) = (m["runnel_open_segment_files"], m["runnel_open_segments_max"], m["runnel_open_fds"]);
    assert_eq!(max, (NOFILE / 2) as f64);
    assert!(open >= 1.0 && open <= max, "{open} segment files open, {max} at most");
    assert!(fds < NOFILE as f64, "{fds} descriptors open");
    assert!(m["runnel_segment_reopens"] > 0.0, "no segment was closed and opened again");
    eprintln!("{segments} segments; restarted under RLIMIT_NOFILE {NOFILE}: {open} segment files and {fds} descriptors open after reading all");
}
