//! Log lifecycle against a real broker: retention by size and by time through topic
//! configs (changed at runtime with AlterConfigs), DeleteRecords, compaction of the CEO
//! table (and keys required on compacted topics), SIGKILL during compaction, and a full
//! disk (a small tmpfs; skipped where `mount -t tmpfs` is not allowed).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::kafka::*;
use common::Broker;
use rdkafka::admin::{AlterConfig, ResourceSpecifier};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const FAST_CLEANER: &[&str] = &["-o", "log.retention.check.interval.ms=200", "-o", "log.cleaner.backoff.ms=200"];

/// Polls `f` until it returns Some, failing the test after `TIMEOUT`.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `n` records of ~`len` bytes, one batch each (so tiny segments roll often).
fn produce_values(b: &Broker, topic: &str, n: usize, len: usize, tag: &str) -> BTreeMap<i64, Vec<u8>> {
    let p = producer(b, &[("linger.ms", "0")]);
    let mut out = BTreeMap::new();
    for i in 0..n {
        let v: Vec<u8> = format!("{tag}-{i}-").into_bytes().into_iter().chain(noise(len, i as u64)).collect();
        let (_, off) = block_on(send_one(&p, FutureRecord::to(topic).key(&b"k"[..]).payload(&v[..])));
        out.insert(off, v);
    }
    out
}

/// The first offset a consumer assigned at `from` gets, with `auto.offset.reset=earliest`.
fn first_offset_from(b: &Broker, topic: &str, from: i64) -> i64 {
    let c = consumer(b, &[("auto.offset.reset", "earliest")]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(from)).unwrap();
    c.assign(&tpl).unwrap();
    wait_for("a record", || match c.poll(Duration::from_millis(100)) {
        Some(Ok(m)) => Some(rdkafka::Message::offset(&m)),
        _ => None,
    })
}

/// A consumer assigned at `from` with `auto.offset.reset=error` gets an error.
fn out_of_range_from(b: &Broker, topic: &str, from: i64) -> String {
    let c: BaseConsumer = consumer(b, &[]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(from)).unwrap();
    c.assign(&tpl).unwrap();
    wait_for("a consumer error", || match c.poll(Duration::from_millis(100)) {
        Some(Err(e)) => Some(e.to_string()),
        Some(Ok(m)) => panic!("read offset {} below the log start", rdkafka::Message::offset(&m)),
        None => None,
    })
}

/// Fetching below the log start is OFFSET_OUT_OF_RANGE, which librdkafka reports (with
/// `auto.offset.reset=error`) as "no offset to automatically reset to".
fn assert_out_of_range(b: &Broker, topic: &str, from: i64) {
    let e = out_of_range_from(b, topic, from);
    assert!(e.contains("AutoOffsetReset") || e.to_lowercase().contains("out of range"), "{e}");
}

fn assert_tail_intact(b: &Broker, topic: &str, produced: &BTreeMap<i64, Vec<u8>>) -> i64 {
    let (lo, hi) = watermarks(b, topic, 0);
    assert_eq!(hi, produced.len() as i64);
    let got: BTreeMap<i64, Vec<u8>> = consume_range(b, topic, 0, lo, hi).into_iter().map(|r| (r.offset, r.value.unwrap())).collect();
    let want: BTreeMap<i64, Vec<u8>> = produced.range(lo..).map(|(k, v)| (*k, v.clone())).collect();
    assert!(got == want, "records above the low watermark {lo} are intact");
    lo
}

/// Waits until retention has moved the low watermark above `above` and then left it alone
/// for a few cleaner passes, so a read from it cannot race the next deletion.
fn settled_low_watermark(b: &Broker, topic: &str, above: i64) -> i64 {
    let mut last = -1;
    wait_for("retention to move the low watermark and settle", || {
        let lo = watermarks(b, topic, 0).0;
        let settled = lo > above && lo == last;
        last = lo;
        if !settled {
            std::thread::sleep(Duration::from_millis(700));
        }
        settled.then_some(lo)
    })
}

#[test]
fn retention_by_size_and_by_time_through_topic_configs() {
    let b = Broker::start(FAST_CLEANER);
    create_topic(&b, "by-size", 1, &[("segment.bytes", "2000"), ("retention.bytes", "6000")]);
    let produced = produce_values(&b, "by-size", 120, 200, "s");
    let lo = settled_low_watermark(&b, "by-size", 0);
    let lo = lo.max(assert_tail_intact(&b, "by-size", &produced));
    assert!(lo >= 60, "about 6000 of ~33000 bytes stay: low watermark {lo}");
    assert!(first_offset_from(&b, "by-size", 0) >= lo, "a consumer below the start is reset to it");
    assert_out_of_range(&b, "by-size", 0);

    create_topic(&b, "by-time", 1, &[("segment.bytes", "2000")]);
    let produced = produce_values(&b, "by-time", 60, 200, "t");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(watermarks(&b, "by-time", 0).0, 0, "7 days of retention keep everything");
    let admin = admin(&b);
    let alter = AlterConfig::new(ResourceSpecifier::Topic("by-time")).set("segment.bytes", "2000").set("retention.ms", "500");
    let res = block_on(admin.alter_configs([&alter], &admin_opts())).expect("alter_configs");
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    let lo = settled_low_watermark(&b, "by-time", 0);
    assert_tail_intact(&b, "by-time", &produced);
    // Only the active segment is left, and appends go on.
    let lo = wait_for("every closed segment to go", || Some(watermarks(&b, "by-time", 0).0).filter(|&l| l >= lo && l > 45));
    assert!(lo < 60);
    let more = produce_values(&b, "by-time", 1, 10, "after");
    assert_eq!(more.keys().next(), Some(&60));
}

#[test]
fn delete_records_moves_the_low_watermark() {
    let mut b = Broker::start(&[]);
    create_topic(&b, "trim", 1, &[("segment.bytes", "3000")]);
    let produced = produce_values(&b, "trim", 100, 100, "d");
    let admin = admin(&b);
    let delete = |offset: Offset| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("trim", 0, offset).unwrap();
        let res = block_on(admin.delete_records(&tpl, &admin_opts())).expect("delete_records request");
        let e = res.elements();
        (e[0].offset(), e[0].error())
    };
    let (low, err) = delete(Offset::Offset(40));
    assert!(err.is_ok(), "{err:?}");
    assert_eq!(low, Offset::Offset(40));
    assert_eq!(watermarks(&b, "trim", 0), (40, 100), "ListOffsets earliest moved");
    assert_eq!(first_offset_from(&b, "trim", 10), 40);
    assert_out_of_range(&b, "trim", 39);
    assert_eq!(consume_range(&b, "trim", 0, 40, 100).len(), 60);
    let (_, err) = delete(Offset::Offset(500));
    assert!(format!("{err:?}").contains("OffsetOutOfRange"), "{err:?}");
    assert_eq!(watermarks(&b, "trim", 0), (40, 100));
    // Survives a crash.
    b.kill9();
    b.restart();
    assert_eq!(watermarks(&b, "trim", 0), (40, 100));
    assert_tail_intact(&b, "trim", &produced);
    // -1: up to the high watermark.
    let admin = common::kafka::admin(&b);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("trim", 0, Offset::End).unwrap();
    let res = block_on(admin.delete_records(&tpl, &admin_opts())).expect("delete_records");
    assert_eq!(res.elements()[0].offset(), Offset::Offset(100));
    assert_eq!(watermarks(&b, "trim", 0), (100, 100));
}

const CEOS: [&str; 4] = ["microsoft", "apple", "google", "yahoo"];

/// Produces `rounds` of PUTs for the four companies (acks=all), rotating codecs; returns
/// the last acknowledged value of each key.
fn produce_ceos(b: &Broker, topic: &str, rounds: std::ops::Range<usize>, latest: &mut BTreeMap<String, (i64, String)>) {
    let codecs = ["none", "gzip", "lz4", "zstd", "snappy"];
    let producers: Vec<FutureProducer> = codecs.iter().map(|c| producer(b, &[("compression.type", c), ("linger.ms", "0")])).collect();
    for r in rounds {
        let p = &producers[r % codecs.len()];
        let values: Vec<String> = CEOS.iter().map(|k| format!("{k}-ceo-{r}-{}", "x".repeat(r % 40))).collect();
        let acked = block_on(send_all(p, CEOS.iter().zip(&values).map(|(k, v)| FutureRecord::to(topic).key(k.as_bytes()).payload(v.as_bytes()))));
        for ((k, v), (_, off)) in CEOS.iter().zip(values).zip(acked) {
            let e = latest.entry(k.to_string()).or_insert((-1, String::new()));
            if off > e.0 {
                *e = (off, v);
            }
        }
    }
}

fn latest_read(b: &Broker, topic: &str) -> (usize, BTreeMap<String, (i64, String)>) {
    // The cleaner may move the log start between the watermarks and the fetch.
    let recs = consume_all_from_moving_start(b, topic, 0);
    let mut m = BTreeMap::new();
    for r in &recs {
        let k = String::from_utf8(r.key.clone().expect("compacted records have keys")).unwrap();
        m.insert(k, (r.offset, String::from_utf8(r.value.clone().unwrap()).unwrap()));
    }
    (recs.len(), m)
}

#[test]
fn compaction_keeps_the_latest_ceo_and_refuses_keyless_records() {
    let b = Broker::start(FAST_CLEANER);
    create_topic(&b, "ceo", 1, &[("cleanup.policy", "compact"), ("segment.bytes", "1500")]);
    let mut latest = BTreeMap::new();
    produce_ceos(&b, "ceo", 0..150, &mut latest);
    let written = 150 * CEOS.len();
    let (n, got) = wait_for("the cleaner", || {
        let (n, got) = latest_read(&b, "ceo");
        (n * 4 < written).then_some((n, got))
    });
    assert_eq!(got, latest, "each company's latest CEO, at its original offset ({n} of {written} records left)");
    // A record without a key is refused on a compacted topic.
    let p = producer(&b, &[("retries", "0")]);
    let err = block_on(p.send(FutureRecord::<[u8], [u8]>::to("ceo").payload(&b"no key"[..]), TIMEOUT)).expect_err("keyless record accepted");
    assert_eq!(err.0, KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord), "{err:?}");
    // A delete-policy topic switched to compact,delete at runtime gets compacted too.
    create_topic(&b, "ceo2", 1, &[("segment.bytes", "1500")]);
    let mut latest2 = BTreeMap::new();
    produce_ceos(&b, "ceo2", 0..60, &mut latest2);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(latest_read(&b, "ceo2").0, 240, "not compacted under cleanup.policy=delete");
    let alter = AlterConfig::new(ResourceSpecifier::Topic("ceo2")).set("segment.bytes", "1500").set("cleanup.policy", "compact,delete");
    assert!(block_on(common::kafka::admin(&b).alter_configs([&alter], &admin_opts())).unwrap().iter().all(Result::is_ok));
    let got = wait_for("the cleaner", || Some(latest_read(&b, "ceo2")).filter(|(n, _)| *n < 120)).1;
    assert_eq!(got, latest2);
}

#[test]
fn sigkill_during_compaction_loses_no_latest_value() {
    let mut b = Broker::start(&["-o", "log.cleaner.backoff.ms=20"]);
    create_topic(&b, "ceo", 1, &[("cleanup.policy", "compact"), ("segment.bytes", "600"), ("min.cleanable.dirty.ratio", "0.01")]);
    let seed = now_ms() as u64;
    let mut rng = noise(64, seed).into_iter();
    let mut latest = BTreeMap::new();
    let mut round = 0;
    for kill in 0..8 {
        let rounds = 20 + rng.next().unwrap() as usize % 40;
        produce_ceos(&b, "ceo", round..round + rounds, &mut latest);
        round += rounds;
        std::thread::sleep(Duration::from_millis(u64::from(rng.next().unwrap()) % 300));
        b.kill9();
        b.restart();
        let (_, got) = latest_read(&b, "ceo");
        assert_eq!(got, latest, "after kill {kill} (seed {seed})");
    }
    let written = round * CEOS.len();
    let (n, got) = wait_for("the cleaner", || Some(latest_read(&b, "ceo")).filter(|(n, _)| n * 2 < written));
    assert_eq!(got, latest, "{n} of {written} records left (seed {seed})");
    assert!(b.stop(), "clean exit");
    let leftovers: Vec<String> = std::fs::read_dir(partition_dir(&b, "ceo", 0))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".swap") || n.ends_with(".cleaned"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A tmpfs mounted for the test and unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { path, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn fill(path: &Path, bytes: usize) {
    std::fs::write(path, vec![1u8; bytes]).expect("filler fits");
}

#[test]
fn a_full_disk_refuses_produce_keeps_reads_and_recovers() {
    let Some(disk) = Tmpfs::mount("4m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)");
        return;
    };
    let data = disk.path.join("data");
    let filler = disk.path.join("filler");
    let b = Broker::start_in(&data, &[]);
    create_topic(&b, "full", 1, &[("segment.bytes", "262144")]);
    // Leave well under a megabyte free.
    let free = || {
        let out = Command::new("df").arg("-B1").arg("--output=avail").arg(&disk.path).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse::<usize>().unwrap()
    };
    fill(&filler, free().saturating_sub(600 << 10));
    let p = producer(&b, &[("retries", "0"), ("linger.ms", "0"), ("message.timeout.ms", "10000")]);
    let mut acked: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
    let mut refused = None;
    for i in 0..2000u64 {
        let v = noise(4000, i);
        match block_on(p.send(FutureRecord::<[u8], [u8]>::to("full").key(&b"k"[..]).payload(&v[..]), TIMEOUT)) {
            Ok(d) => {
                acked.insert(d.offset, v);
            }
            Err((e, _)) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("the disk never filled up");
    assert_eq!(refused, KafkaError::MessageProduction(RDKafkaErrorCode::KafkaStorageError), "{refused:?}");
    assert!(acked.len() > 50);
    // Everything acknowledged is readable, nothing else is.
    let hi = acked.len() as i64;
    assert_eq!(watermarks(&b, "full", 0), (0, hi));
    let got: BTreeMap<i64, Vec<u8>> = consume_range(&b, "full", 0, 0, hi).into_iter().map(|r| (r.offset, r.value.unwrap())).collect();
    assert!(got == acked, "reads of existing data keep working");
    // Space back: appends resume at the next offset.
    std::fs::remove_file(&filler).unwrap();
    let v = b"after".to_vec();
    let (_, off) = block_on(send_one(&p, FutureRecord::to("full").key(&b"k"[..]).payload(&v[..])));
    assert_eq!(off, hi);
    acked.insert(off, v);
    let got: BTreeMap<i64, Vec<u8>> = consume_all(&b, "full", 0).into_iter().map(|r| (r.offset, r.value.unwrap())).collect();
    assert!(got == acked);
    drop(b);
}
