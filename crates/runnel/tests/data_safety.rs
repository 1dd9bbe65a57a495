//! The metadata log decides what is deleted, and a fault in one place never widens: an
//! unknown directory is quarantined (kept, counted in /metrics), corruption in the middle
//! of the metadata log stops startup loudly, a partition that cannot be opened is offline
//! while the others serve, internal topics refuse what Kafka refuses, and partition dirs
//! carry their topic id (dirs from earlier versions are adopted once).

mod common;

use std::process::{Command, Stdio};

use common::admin::{get, samples};
use common::wire::*;
use common::Broker;
use kafka_protocol::messages::*;

const KAFKA_STORAGE_ERROR: i16 = 56;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const INVALID_CONFIG: i16 = 40;

fn metric(b: &Broker, name: &str) -> f64 {
    let (_, body) = get(b.admin_addr.as_deref().expect("admin listener"), "/metrics");
    *samples(&body).get(name).unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

fn dirs(b: &Broker) -> Vec<String> {
    let mut d: Vec<String> = std::fs::read_dir(&b.data_dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    d.sort();
    d
}

/// A broker that created `topics` and stored one record in each, stopped cleanly.
fn stopped_broker_with(topics: &[&str]) -> Broker {
    let mut b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    for t in topics {
        create_topic(&mut s, t, &[]);
        assert_eq!(produce(&mut s, 9, t, one_record_batch(b"v")).error_code, 0);
    }
    drop(s);
    assert!(b.stop());
    b
}

#[test]
fn unknown_directories_are_quarantined_not_deleted() {
    let mut b = stopped_broker_with(&["kept"]);
    // A partition dir the metadata does not know (say, restored by hand, or written under
    // a metadata log that lost its tail): it must survive.
    let ghost = b.data_dir.join("ghost-0");
    std::fs::create_dir(&ghost).unwrap();
    std::fs::write(ghost.join("00000000000000000000.log"), b"precious").unwrap();
    b.restart();
    let d = dirs(&b);
    assert!(!d.contains(&"ghost-0".to_string()), "{d:?}");
    let stray: Vec<&String> = d.iter().filter(|n| n.starts_with("ghost-0.") && n.ends_with("-stray")).collect();
    assert_eq!(stray.len(), 1, "moved aside as -stray: {d:?}");
    assert_eq!(std::fs::read(b.data_dir.join(stray[0]).join("00000000000000000000.log")).unwrap(), b"precious");
    assert_eq!(metric(&b, "runnel_quarantined_dirs"), 1.0);
    let mut s = connect(&b.addr);
    assert_eq!(log_end(&mut s, "kept"), 1, "the live topic is untouched");
    assert!(b.data_dir.join("kept-0").join("partition.metadata").exists(), "a partition dir names its topic id");
}

#[test]
fn corruption_inside_the_metadata_log_stops_startup_and_deletes_nothing() {
    let b = stopped_broker_with(&["first", "second", "third"]);
    let log = b.data_dir.join("__cluster_metadata-0").join("metadata.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[20] ^= 0x01; // inside the first record
    std::fs::write(&log, &bytes).unwrap();
    let before = dirs(&b);
    let out = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["broker", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&b.data_dir)
        .env("RUNNEL_ADMIN_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the broker must refuse to start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metadata log") && err.contains("corrupt at byte"), "a clear message: {err}");
    assert_eq!(dirs(&b), before, "no directory deleted or moved");
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "the metadata log is not cut");
}

#[test]
fn a_partition_that_cannot_be_opened_is_offline_while_others_serve() {
    let mut b = stopped_broker_with(&["broken", "healthy"]);
    // Opening the segment fails (EISDIR stands in for EIO).
    let seg = b.data_dir.join("broken-0").join("00000000000000000000.log");
    std::fs::remove_file(&seg).unwrap();
    std::fs::create_dir(&seg).unwrap();
    b.restart();
    let mut s = connect(&b.addr);
    assert_eq!(produce(&mut s, 9, "healthy", one_record_batch(b"w")).error_code, 0);
    assert_eq!(log_end(&mut s, "healthy"), 2);
    assert_eq!(produce(&mut s, 9, "broken", one_record_batch(b"w")).error_code, KAFKA_STORAGE_ERROR);
    assert_eq!(metric(&b, "runnel_offline_partitions"), 1.0);
    assert!(b.data_dir.join("broken-0").exists(), "an offline partition keeps its data");
}

#[test]
fn internal_topics_refuse_delete_records_and_dropping_compaction() {
    use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
    let b = Broker::start(&[]);
    let mut s = connect(&b.addr);
    let req = DeleteRecordsRequest::default().with_timeout_ms(5_000).with_topics(vec![DeleteRecordsTopic::default()
        .with_name(TopicName(sb("__consumer_offsets")))
        .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(0).with_offset(-1)])]);
    let r: DeleteRecordsResponse = call(&mut s, ApiKey::DeleteRecords, 2, &req);
    assert_eq!(r.topics[0].partitions[0].error_code, INVALID_TOPIC_EXCEPTION);

    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let alter = |s: &mut std::net::TcpStream, policy: &str| -> i16 {
        let req = AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(sb("__consumer_offsets"))
            .with_configs(vec![AlterableConfig::default().with_name(sb("cleanup.policy")).with_value(Some(sb(policy)))])]);
        let r: AlterConfigsResponse = call(s, ApiKey::AlterConfigs, 2, &req);
        r.responses[0].error_code
    };
    assert_eq!(alter(&mut s, "delete"), INVALID_CONFIG);
    assert_eq!(alter(&mut s, "compact"), 0);
}

#[test]
fn partition_dirs_from_before_topic_ids_are_adopted_once() {
    let mut b = stopped_broker_with(&["old"]);
    let meta = b.data_dir.join("old-0").join("partition.metadata");
    std::fs::remove_file(&meta).unwrap();
    b.restart();
    let mut s = connect(&b.addr);
    assert_eq!(log_end(&mut s, "old"), 1);
    assert!(std::fs::read_to_string(&meta).unwrap().contains("topic_id:"));
}
