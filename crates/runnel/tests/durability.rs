//! Durability and recovery against a real broker process: acknowledged (acks=all) records
//! survive SIGKILL and a clean stop; a segment cut mid-batch is recovered to the last
//! whole batch; tiny segments roll and read back in order across restarts.

mod common;

use std::collections::BTreeMap;

use common::kafka::*;
use common::Broker;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;

/// Produces `n` keyed records with acks=all over the topic; returns, per partition, the
/// values by offset as the delivery reports gave them.
fn produce_acked(b: &Broker, topic: &str, n: usize, tag: &str) -> BTreeMap<i32, BTreeMap<i64, Vec<u8>>> {
    let p = producer(b, &[("acks", "all")]);
    let values: Vec<Vec<u8>> = (0..n).map(|i| format!("{tag}-{i}-").into_bytes().into_iter().chain(noise(50, i as u64)).collect()).collect();
    let keys: Vec<String> = (0..n).map(|i| format!("k{}", i % 17)).collect();
    let delivered = block_on(send_all(&p, values.iter().zip(&keys).map(|(v, k)| FutureRecord::to(topic).key(k.as_bytes()).payload(&v[..]))));
    let mut out: BTreeMap<i32, BTreeMap<i64, Vec<u8>>> = BTreeMap::new();
    for ((part, off), v) in delivered.into_iter().zip(values) {
        assert!(off >= 0);
        assert!(out.entry(part).or_default().insert(off, v).is_none(), "offset {off} acknowledged twice");
    }
    out
}

/// Everything the log holds is exactly what was acknowledged: same offsets, same values.
fn assert_log_holds(b: &Broker, topic: &str, partitions: i32, acked: &BTreeMap<i32, BTreeMap<i64, Vec<u8>>>) {
    let md = consumer(b, &[]).fetch_metadata(Some(topic), TIMEOUT).expect("metadata");
    assert_eq!(md.topics()[0].error(), None, "topic {topic} exists");
    assert_eq!(md.topics()[0].partitions().len(), partitions as usize);
    for p in 0..partitions {
        let want = acked.get(&p).cloned().unwrap_or_default();
        assert_eq!(watermarks(b, topic, p), (0, want.len() as i64), "partition {p} watermarks");
        let got: BTreeMap<i64, Vec<u8>> = consume_all(b, topic, p).into_iter().map(|r| (r.offset, r.value.unwrap())).collect();
        assert_eq!(got.len(), want.len(), "partition {p} record count");
        assert!(got == want, "partition {p}: content differs from what was acknowledged");
    }
}

fn survives_restart(kill: bool) {
    let mut b = Broker::start(&[]);
    create_topic(&b, "durable", 3, &[("segment.bytes", "20000")]);
    let mut acked = produce_acked(&b, "durable", 1500, "first");
    if kill {
        b.kill9();
    } else {
        assert!(b.stop(), "clean exit");
    }
    assert!(!b.is_running());
    b.restart();
    assert_log_holds(&b, "durable", 3, &acked);
    // The log continues at the next offsets.
    let more = produce_acked(&b, "durable", 300, "second");
    for (p, recs) in more {
        let base = acked.get(&p).map_or(0, |m| m.len() as i64);
        assert_eq!(recs.keys().next().copied(), Some(base), "partition {p} continues at its old log end");
        acked.entry(p).or_default().extend(recs);
    }
    // And everything survives a second crash (or stop) as well.
    if kill {
        b.kill9();
    } else {
        assert!(b.stop());
    }
    b.restart();
    assert_log_holds(&b, "durable", 3, &acked);
}

#[test]
fn acknowledged_records_survive_sigkill() {
    survives_restart(true);
}

#[test]
fn acknowledged_records_survive_clean_stop() {
    survives_restart(false);
}

/// Produces `batches` batches of `per_batch` records (one flush each) on partition 0.
fn produce_batches(b: &Broker, topic: &str, batches: usize, per_batch: usize) {
    let p = producer(b, &[("linger.ms", "50")]);
    block_on(async {
        for i in 0..batches {
            let values: Vec<String> = (0..per_batch).map(|j| format!("batch {i} record {j}")).collect();
            send_all(&p, values.iter().map(|v| FutureRecord::to(topic).partition(0).payload(v.as_bytes()))).await;
        }
    });
}

/// Cuts the last segment of `topic`-0 at `cut(last batch)` bytes, restarts, and checks the
/// log ends at the last whole batch and accepts new records at the next offset.
fn recovers_torn_tail(kill: bool, segment_bytes: &str, cut: impl Fn(&DiskBatch) -> u64) {
    let mut b = Broker::start(&[]);
    create_topic(&b, "torn", 1, &[("segment.bytes", segment_bytes)]);
    produce_batches(&b, "torn", 6, 5);
    let before = consume_all(&b, "torn", 0);
    if kill {
        b.kill9();
    } else {
        assert!(b.stop());
    }
    let dir = partition_dir(&b, "torn", 0);
    let files = log_files(&dir);
    let last_file = files.last().expect("a segment").clone();
    let batches: Vec<DiskBatch> = files.iter().flat_map(|f| disk_batches(f)).collect();
    assert!(batches.len() >= 6, "at least one batch per flush: {batches:?}");
    let last = *disk_batches(&last_file).last().expect("last segment holds a batch");
    assert_eq!(last.next_offset(), before.len() as i64);
    let new_len = cut(&last);
    assert!(new_len > last.position && new_len < last.position + last.len, "cut inside the last batch");
    std::fs::OpenOptions::new().write(true).open(&last_file).unwrap().set_len(new_len).unwrap();

    b.restart();
    let end = last.base_offset;
    assert_eq!(watermarks(&b, "torn", 0), (0, end), "log ends at the last whole batch");
    assert_eq!(std::fs::metadata(&last_file).unwrap().len(), last.position, "torn bytes removed from the file");
    let after = consume_all(&b, "torn", 0);
    assert_eq!(after, before[..end as usize].to_vec(), "exactly the whole batches, unchanged");
    // Nothing past the end either: a read at the log end returns no records.
    let c = consumer(&b, &[]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("torn", 0, rdkafka::Offset::Offset(end)).unwrap();
    c.assign(&tpl).unwrap();
    assert!(matches!(c.poll(std::time::Duration::from_millis(500)), None), "no record at or past the recovered end");

    let p = producer(&b, &[]);
    let d = block_on(send_one(&p, FutureRecord::to("torn").partition(0).payload(&b"after recovery"[..])));
    assert_eq!(d, (0, end), "next produce gets the next offset");
    let tail = consume_range(&b, "torn", 0, end, end + 1);
    assert_eq!(tail[0].value.as_deref(), Some(&b"after recovery"[..]));
    assert_eq!(consume_all(&b, "torn", 0).len() as i64, end + 1);
}

#[test]
fn torn_batch_after_clean_stop_is_cut_off() {
    // A few bytes short of the end: the CRC-covered body is torn.
    recovers_torn_tail(false, "1073741824", |last| last.position + last.len - 3);
}

#[test]
fn torn_batch_header_after_sigkill_is_cut_off() {
    // Only part of the 61-byte batch header is left.
    recovers_torn_tail(true, "1073741824", |last| last.position + 30);
}

#[test]
fn torn_only_batch_of_the_last_segment_leaves_an_empty_active_segment() {
    // Tiny segments: every batch has a segment of its own, so the cut empties the last one.
    recovers_torn_tail(true, "100", |last| {
        assert_eq!(last.position, 0);
        last.len / 2
    });
}

#[test]
fn segments_roll_at_segment_bytes_and_read_back_after_restarts() {
    let mut b = Broker::start(&[]);
    create_topic(&b, "rolling", 1, &[("segment.bytes", "1024")]);
    let p = producer(&b, &[("batch.size", "600"), ("linger.ms", "20")]);
    let values: Vec<String> = (0..400).map(|i| format!("record {i:04} {}", "x".repeat(40))).collect();
    let delivered = block_on(send_all(&p, values.iter().map(|v| FutureRecord::to("rolling").partition(0).payload(v.as_bytes()))));
    assert_eq!(delivered, (0..400).map(|o| (0, o)).collect::<Vec<_>>());

    let check_files = |b: &Broker| {
        let files = log_files(&partition_dir(b, "rolling", 0));
        assert!(files.len() >= 10, "expected many segments, got {}", files.len());
        let mut next = 0;
        let mut multi = false;
        for f in &files {
            let name: i64 = f.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            assert_eq!(f.file_stem().unwrap().len(), 20, "Kafka's 20-digit segment names");
            assert_eq!(name, next, "segment {} starts where the previous one ended", f.display());
            let batches = disk_batches(f);
            let size = std::fs::metadata(f).unwrap().len();
            assert_eq!(batches.iter().map(|d| d.len).sum::<u64>(), size, "whole batches only");
            assert!(size <= 1024 || batches.len() == 1, "segment {} is {size} bytes with {} batches", f.display(), batches.len());
            multi |= batches.len() > 1;
            if let Some(l) = batches.last() {
                next = l.next_offset();
            }
        }
        assert!(multi, "some segment holds several batches");
        assert_eq!(next, 400);
    };
    let check_records = |b: &Broker| {
        let got = consume_all(b, "rolling", 0);
        let vals: Vec<String> = got.iter().map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap()).collect();
        assert_eq!(vals, values);
        assert!(got.iter().enumerate().all(|(i, r)| r.offset == i as i64));
    };
    check_files(&b);
    check_records(&b);
    // Reads from the middle of a middle segment.
    let mid = consume_range(&b, "rolling", 0, 217, 230);
    assert_eq!(mid.first().map(|r| r.offset), Some(217));
    assert_eq!(mid.len(), 13);

    assert!(b.stop());
    b.restart();
    check_files(&b);
    check_records(&b);
    b.kill9();
    b.restart();
    check_files(&b);
    check_records(&b);
    // Time lookups still work across segments after recovery.
    let c = consumer(&b, &[]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("rolling", 0, rdkafka::Offset::Offset(0)).unwrap();
    let res = c.offsets_for_times(tpl, TIMEOUT).unwrap();
    assert_eq!(res.find_partition("rolling", 0).unwrap().offset(), rdkafka::Offset::Offset(0));
}

#[test]
fn records_acknowledged_before_a_mid_stream_sigkill_survive() {
    use std::sync::{Arc, Mutex};
    let mut b = Broker::start(&[]);
    create_topic(&b, "midstream", 2, &[("segment.bytes", "50000")]);
    let acked: Arc<Mutex<Vec<(i32, i64, Vec<u8>)>>> = Arc::default();
    let p = producer(&b, &[("acks", "all"), ("message.timeout.ms", "3000"), ("linger.ms", "2"), ("batch.size", "4000")]);
    let writer = {
        let acked = acked.clone();
        std::thread::spawn(move || {
            block_on(async {
                let values: Vec<Vec<u8>> = (0..20_000).map(|i: u64| format!("mid-{i}-").into_bytes().into_iter().chain(noise(40, i)).collect()).collect();
                let mut pending = Vec::new();
                for (i, v) in values.iter().enumerate() {
                    let rec = FutureRecord::<[u8], [u8]>::to("midstream").partition((i % 2) as i32).payload(&v[..]);
                    match p.send_result(rec) {
                        Ok(f) => pending.push((f, v.clone())),
                        Err(_) => break,
                    }
                    // Keep a few hundred in flight, recording acks as they come.
                    if pending.len() >= 200 {
                        let (f, v) = pending.remove(0);
                        match f.await {
                            Ok(Ok(d)) => acked.lock().unwrap().push((d.partition, d.offset, v)),
                            _ => break,
                        }
                    }
                }
                for (f, v) in pending {
                    if let Ok(Ok(d)) = f.await {
                        acked.lock().unwrap().push((d.partition, d.offset, v));
                    }
                }
            })
        })
    };
    let deadline = std::time::Instant::now() + TIMEOUT;
    while acked.lock().unwrap().len() < 3000 {
        assert!(std::time::Instant::now() < deadline, "producer too slow");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    b.kill9();
    writer.join().expect("writer thread");
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= 3000 && acked.len() < 20_000, "killed mid-stream after {} acks", acked.len());
    b.restart();
    for part in 0..2 {
        let got = consume_all(&b, "midstream", part);
        assert!(got.iter().enumerate().all(|(i, r)| r.offset == i as i64), "partition {part}: dense from 0");
        for (_, off, v) in acked.iter().filter(|a| a.0 == part) {
            let r = got.get(*off as usize).unwrap_or_else(|| panic!("acknowledged {part}/{off} lost (log has {})", got.len()));
            assert!(r.value.as_deref() == Some(&v[..]), "acknowledged {part}/{off} changed");
        }
    }
}

/// `flush.messages`: the append that reaches the count is acknowledged only once its
/// fsync is done (each fsync is made 1.5 s slower here), the appends before it at once;
/// and the fsync holds no reader up: a consumer reads that record before its
/// acknowledgement.
#[test]
fn flush_messages_acknowledges_after_the_fsync_which_blocks_no_reader() {
    use std::time::{Duration, Instant};
    let delay = Duration::from_millis(1500);
    let b = Broker::start_with_env(&[], &[("RUNNEL_FAILPOINT_FLUSH_DELAY_MS", "1500")]);
    create_topic(&b, "synced", 1, &[("flush.messages", "3")]);
    let p = producer(&b, &[("acks", "1"), ("linger.ms", "0")]);
    // A long poll: woken by the append, not ended by its time.
    let c = consumer(&b, &[("fetch.wait.max.ms", "10000")]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("synced", 0, rdkafka::Offset::Offset(0)).unwrap();
    c.assign(&tpl).unwrap();
    for i in 0..2 {
        let sent = Instant::now();
        block_on(p.send(FutureRecord::<(), _>::to("synced").payload(&format!("v{i}")), TIMEOUT)).expect("produce");
        assert!(sent.elapsed() < delay, "record {i} is below flush.messages: acknowledged without a flush ({:?})", sent.elapsed());
    }
    // The third reaches flush.messages.
    let start = Instant::now();
    let third = p.send(FutureRecord::<(), _>::to("synced").payload("v2"), TIMEOUT);
    let (read, read_at, (third, acked)) = std::thread::scope(|scope| {
        let ack = scope.spawn(move || (block_on(third).expect("produce v2"), start.elapsed()));
        let mut read = Vec::new();
        while read.len() < 3 {
            assert!(start.elapsed() < Duration::from_secs(20), "read only {read:?}");
            if let Some(m) = c.poll(Duration::from_millis(50)) {
                let m = m.expect("fetch");
                read.push(String::from_utf8(rdkafka::Message::payload(&m).unwrap().to_vec()).unwrap());
            }
        }
        (read, start.elapsed(), ack.join().unwrap())
    });
    assert_eq!(read, ["v0", "v1", "v2"]);
    assert_eq!(third.offset, 2);
    assert!(acked >= delay, "the record reaching flush.messages was acknowledged after {acked:?}, before its fsync");
    assert!(read_at < acked, "the consumer waited for the fsync: read at {read_at:?}, acknowledged at {acked:?}");
}
