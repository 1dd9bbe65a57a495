//! Client quotas: a librdkafka producer whose client id is limited to 1 MiB/s (set with
//! `runnel quota set`) is held to within 10 % of it over 10 s, while an unlimited producer
//! on the same broker keeps a rate many times higher; the quota is listed by `runnel quota
//! list`, and refused values get INVALID_REQUEST. Fetch is held the same way: a consumer
//! limited to 1 MiB/s of fetched bytes reads at that rate while an unlimited one reads the
//! same data many times faster. A client limited to 0.5 % of a broker thread
//! (`request_percentage`) gets `throttle_time_ms` and a muted connection, and completes a
//! fraction of the requests of an unlimited client on the same broker.

mod common;

use std::collections::VecDeque;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Broker;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

const QUOTA: f64 = 1_048_576.0;
const RUN: Duration = Duration::from_secs(10);

fn runnel(b: &Broker, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_runnel")).args(args).args(["--brokers", &b.addr]).output().expect("run runnel")
}

/// Produces 10 KiB records as fast as the broker lets it (64 in flight) for `RUN`; returns
/// the bytes acknowledged per second.
fn produce_flat_out(b: &Broker, client_id: &str) -> f64 {
    let producer: FutureProducer = common::kafka::producer(b, &[("client.id", client_id), ("acks", "1"), ("linger.ms", "2"), ("message.timeout.ms", "60000"), ("batch.size", "16384")]);
    let value = vec![7u8; 10 * 1024];
    common::kafka::block_on(async {
        let start = Instant::now();
        let mut in_flight = VecDeque::new();
        let mut acked = 0usize;
        while start.elapsed() < RUN {
            while in_flight.len() < 64 {
                match producer.send_result(FutureRecord::<(), [u8]>::to("quota").payload(&value)) {
                    Ok(f) => in_flight.push_back(f),
                    Err(_) => break,
                }
            }
            if let Some(f) = in_flight.pop_front() {
                if let Ok(Ok(_)) = f.await {
                    acked += value.len();
                }
            }
        }
        acked as f64 / start.elapsed().as_secs_f64()
    })
}

#[test]
fn a_limited_client_is_held_to_its_quota_and_others_keep_their_rate() {
    // Two windows of 1 s: the rate is measured over 1-2 s, so a new client's allowance
    // (one window) is small next to the run (with Kafka's default of 11 windows a client
    // may first send 10 s worth at once, and 10 s of measuring would mostly see that).
    let b = Broker::start(&["-o", "quota.window.num=2"]);
    common::kafka::create_topic(&b, "quota", 1, &[]);
    let set = runnel(&b, &["quota", "set", "--client-id", "limited", "--producer-byte-rate", "1048576"]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let listed = String::from_utf8_lossy(&runnel(&b, &["quota", "list"]).stdout).into_owned();
    assert!(listed.contains("limited") && listed.contains("producer_byte_rate=1048576"), "{listed}");
    let bad = runnel(&b, &["quota", "set", "--user", "x", "--producer-byte-rate=-5"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("INVALID_REQUEST"), "{}", String::from_utf8_lossy(&bad.stderr));

    let free = std::thread::scope(|s| {
        let limited = s.spawn(|| produce_flat_out(&b, "limited"));
        let free = produce_flat_out(&b, "free");
        let limited = limited.join().unwrap();
        eprintln!("limited: {:.0} B/s ({:.3} of the quota), free: {:.0} B/s", limited, limited / QUOTA, free);
        assert!((limited - QUOTA).abs() <= QUOTA * 0.10, "limited client at {limited:.0} B/s, quota {QUOTA}");
        free
    });
    assert!(free > 4.0 * QUOTA, "the unlimited client slowed to {free:.0} B/s");
}

/// Reads partition 0 of `topic` from offset 0 for `RUN` (or until `total` bytes of values
/// arrived) with 64 KiB fetches; returns the value bytes read per second.
fn consume_flat_out(b: &Broker, topic: &str, client_id: &str, total: usize) -> f64 {
    let consumer = common::kafka::consumer(
        b,
        &[("client.id", client_id), ("message.max.bytes", "65536"), ("fetch.max.bytes", "65536"), ("max.partition.fetch.bytes", "65536"), ("fetch.wait.max.ms", "10")],
    );
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(0)).unwrap();
    consumer.assign(&tpl).unwrap();
    let (start, mut read) = (Instant::now(), 0usize);
    while start.elapsed() < RUN && read < total {
        if let Some(m) = consumer.poll(Duration::from_millis(50)) {
            read += m.expect("consume").payload().map_or(0, <[u8]>::len);
        }
    }
    read as f64 / start.elapsed().as_secs_f64()
}

#[test]
fn a_limited_consumer_is_held_to_its_fetch_quota_and_others_keep_their_rate() {
    let b = Broker::start(&["-o", "quota.window.num=2"]);
    common::kafka::create_topic(&b, "fetched", 1, &[]);
    // 32 MiB to read: more than the limited consumer may fetch in the run.
    let producer = common::kafka::producer(&b, &[("acks", "1"), ("linger.ms", "20")]);
    let value = vec![3u8; 8 * 1024];
    let total = 32 << 20;
    common::kafka::block_on(async {
        let sends: Vec<_> = (0..total / value.len())
            .map(|_| producer.send_result(FutureRecord::<(), [u8]>::to("fetched").payload(&value)).expect("queue"))
            .collect();
        for f in sends {
            f.await.expect("delivery").expect("acknowledged");
        }
    });
    let set = runnel(&b, &["quota", "set", "--client-id", "slow-reader", "--consumer-byte-rate", "1048576"]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));

    let free = std::thread::scope(|s| {
        let limited = s.spawn(|| consume_flat_out(&b, "fetched", "slow-reader", total));
        let free = consume_flat_out(&b, "fetched", "fast-reader", total);
        let limited = limited.join().unwrap();
        eprintln!("limited: {:.0} B/s ({:.3} of the quota), free: {:.0} B/s", limited, limited / QUOTA, free);
        // Kafka's quota is a rate over the sampled windows: a new client may take one
        // window's worth (1 s here) at once, and bytes in a window that has just expired are
        // forgotten; with 64 KiB fetches that is the allowance over a 10 s run, so the bound
        // is 10 % over the quota for the run plus one window.
        let most = QUOTA * 1.10 * (RUN.as_secs_f64() + 1.0) / RUN.as_secs_f64();
        assert!(limited >= QUOTA * 0.90 && limited <= most, "limited consumer at {limited:.0} B/s, quota {QUOTA}, at most {most:.0}");
        free
    });
    assert!(free > 4.0 * QUOTA, "the unlimited consumer slowed to {free:.0} B/s");
}


/// Sends Metadata requests (every topic) one after the other on one connection as
/// `client_id` for `run`. Returns the responses, and each throttled response's
/// `throttle_time_ms` with the time until the next response arrived.
fn metadata_flat_out(addr: &str, client_id: &str, run: Duration) -> (u64, Vec<(i32, Duration)>) {
    use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
    let mut s = common::wire::connect(addr);
    let (start, mut answered, mut throttled) = (Instant::now(), 0u64, Vec::new());
    let mut last: Option<(i32, Instant)> = None;
    while start.elapsed() < run {
        let frame = common::wire::request_as(client_id, ApiKey::Metadata, 12, answered as i32, &MetadataRequest::default());
        std::io::Write::write_all(&mut s, &frame).expect("write Metadata");
        let (_, r): (i32, MetadataResponse) = common::wire::parse(ApiKey::Metadata, 12, common::wire::read_frame(&mut s).expect("Metadata answer"));
        let now = Instant::now();
        if let Some((ms, at)) = last.take() {
            throttled.push((ms, now - at));
        }
        if r.throttle_time_ms > 0 {
            last = Some((r.throttle_time_ms, now));
        }
        answered += 1;
    }
    (answered, throttled)
}

#[test]
fn a_client_over_its_request_time_quota_is_throttled_and_others_are_not() {
    let b = Broker::start(&["-o", "quota.window.num=2"]);
    for t in 0..20 {
        common::kafka::create_topic(&b, &format!("meta-{t}"), 20, &[]);
    }
    let set = runnel(&b, &["quota", "set", "--client-id", "busy", "--request-percentage", "0.5"]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let listed = String::from_utf8_lossy(&runnel(&b, &["quota", "list"]).stdout).into_owned();
    assert!(listed.contains("busy") && listed.contains("request_percentage=0.5"), "{listed}");

    let run = Duration::from_secs(8);
    let ((busy, throttled), (free, free_throttled)) = std::thread::scope(|s| {
        let busy = s.spawn(|| metadata_flat_out(&b.addr, "busy", run));
        let free = metadata_flat_out(&b.addr, "free", run);
        (busy.join().unwrap(), free)
    });
    eprintln!("busy: {busy} answers, {} throttled; free: {free} answers", throttled.len());
    assert!(free_throttled.is_empty(), "the unlimited client was throttled: {free_throttled:?}");
    assert!(!throttled.is_empty(), "the limited client was never throttled ({busy} answers)");
    // Throttled: the broker handled nothing more on that connection for the throttle time.
    // (Summed: one gap is short by however late this thread read the throttled answer.)
    let throttle: Duration = throttled.iter().map(|(ms, _)| Duration::from_millis(*ms as u64)).sum();
    let gaps: Duration = throttled.iter().map(|(_, gap)| *gap).sum();
    assert!(gaps >= throttle.mul_f64(0.9), "{} throttled answers: next answers {gaps:?} after them, throttles {throttle:?}", throttled.len());
    assert!(free >= 5 * busy, "limited client {busy} answers, unlimited {free}");
}
