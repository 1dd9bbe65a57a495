//! Producer state through the partition log: idempotent appends, and the state surviving a
//! crash (rebuilt from the log tail), a clean close (snapshot at the log end), segment
//! rolls with retention (snapshots kept), and truncation.

mod common;

use common::{batch, small_config};
use runnel_protocol::batch::{encode_marker, set_producer, set_transactional, ControlType, Marker};
use runnel_storage::{AppendOrigin, PartitionLog, ProducerError, RetentionConfig, StorageError};

/// A batch of `n` records from producer `pid`/`epoch` starting at sequence `seq`.
fn pbatch(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let mut b = batch(n, 20);
    set_producer(&mut b, pid, epoch, seq);
    b
}

fn append(log: &mut PartitionLog, b: &[u8]) -> Result<runnel_storage::AppendInfo, StorageError> {
    log.append(&mut b.to_vec())
}

fn snapshots(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".snapshot"))
        .collect();
    v.sort();
    v
}

#[test]
fn retries_are_answered_with_the_original_offsets_and_gaps_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    append(&mut log, &batch(2, 10)).unwrap();
    let first = append(&mut log, &pbatch(9, 0, 0, 3)).unwrap();
    assert_eq!((first.base_offset, first.duplicate), (2, false));
    let retry = append(&mut log, &pbatch(9, 0, 0, 3)).unwrap();
    assert_eq!((retry.base_offset, retry.last_offset, retry.duplicate), (2, 4, true));
    assert_eq!(log.log_end_offset(), 5, "the retry was not written");
    let gap = append(&mut log, &pbatch(9, 0, 5, 1)).unwrap_err();
    assert!(matches!(gap, StorageError::Producer(ProducerError::OutOfOrder { last: 2, .. })), "{gap}");
    append(&mut log, &pbatch(9, 1, 0, 1)).unwrap();
    let fenced = append(&mut log, &pbatch(9, 0, 3, 1)).unwrap_err();
    assert!(matches!(fenced, StorageError::Producer(ProducerError::InvalidEpoch { .. })), "{fenced}");
    assert_eq!(log.log_end_offset(), 6);
}

#[test]
fn state_is_rebuilt_from_the_log_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
        for i in 0..10 {
            append(&mut log, &pbatch(3, 0, i * 2, 2)).unwrap();
        }
        assert!(log.segment_count() > 2, "small segments roll");
        // Dropped without close: a crash (the roll snapshots stay, the tail is replayed).
    }
    assert!(!snapshots(dir.path()).is_empty(), "a snapshot per roll");
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let e = log.producer_state().producer(3).unwrap().clone();
    assert_eq!((e.epoch, e.last_seq(), e.last_offset()), (0, 19, 19));
    assert!(append(&mut log, &pbatch(3, 0, 18, 2)).unwrap().duplicate);
    assert!(append(&mut log, &pbatch(3, 0, 22, 1)).is_err());
    append(&mut log, &pbatch(3, 0, 20, 1)).unwrap();

    // Without any snapshot the whole log is replayed.
    drop(log);
    for s in snapshots(dir.path()) {
        std::fs::remove_file(dir.path().join(s)).unwrap();
    }
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.producer_state().producer(3).unwrap().last_seq(), 20);
}

#[test]
fn a_clean_close_snapshots_at_the_log_end_and_retention_keeps_the_newest_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    append(&mut log, &pbatch(1, 0, 0, 2)).unwrap();
    for _ in 0..8 {
        append(&mut log, &batch(2, 20)).unwrap();
    }
    let end = log.log_end_offset();
    log.close().unwrap();
    assert!(snapshots(dir.path()).contains(&format!("{end:020}.snapshot")));

    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.producer_state().producer(1).unwrap().last_seq(), 1);
    // Retention deletes every closed segment, the producer's batches with them.
    let cfg = RetentionConfig { retention_ms: Some(1), retention_bytes: None };
    append(&mut log, &batch(1, 20)).unwrap();
    let out = log.apply_retention(&cfg, i64::MAX / 2).unwrap();
    assert!(out.segments_deleted > 0);
    assert!(!snapshots(dir.path()).is_empty());
    drop(log);
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let e = log.producer_state().producer(1).expect("state outlives its batches");
    assert_eq!(e.last_seq(), 1);
    assert!(append(&mut log, &pbatch(1, 0, 5, 1)).is_err(), "the sequence is still known");
    append(&mut log, &pbatch(1, 0, 2, 1)).unwrap();
}

#[test]
fn truncation_reloads_the_state_and_drops_later_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    for i in 0..6 {
        append(&mut log, &pbatch(4, 0, i, 1)).unwrap();
    }
    log.truncate_to(3).unwrap();
    assert_eq!(log.producer_state().producer(4).unwrap().last_seq(), 2);
    append(&mut log, &pbatch(4, 0, 3, 1)).unwrap();
    assert!(snapshots(dir.path()).iter().all(|s| s[..20].parse::<i64>().unwrap() <= log.log_end_offset()));
}

#[test]
fn markers_close_transactions_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let mut t = pbatch(7, 0, 0, 2);
    set_transactional(&mut t);
    append(&mut log, &t).unwrap();
    append(&mut log, &batch(1, 10)).unwrap();
    assert_eq!(log.producer_state().first_unstable_offset(), Some(0));
    drop(log);
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.producer_state().first_unstable_offset(), Some(0), "open transaction found again");
    let mut m = encode_marker(7, 0, Marker { control: ControlType::Abort, coordinator_epoch: 1 }, 5);
    log.append_as(&mut m, AppendOrigin::Coordinator).unwrap();
    assert_eq!(log.producer_state().first_unstable_offset(), None);
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.producer_state().first_unstable_offset(), None);
    assert_eq!(log.producer_state().producer(7).unwrap().coordinator_epoch, 1);
}
