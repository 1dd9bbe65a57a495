//! PartitionLog behaviour: append/read, rolls, limits, timestamps, reopen and recovery.

mod common;

use std::fs;

use common::*;
use runnel_protocol::batch::{validate_batch, BatchHeader};
use runnel_storage::{LogConfig, PartitionLog, StorageError};

#[test]
fn append_read_round_trip_across_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let mut expected = Vec::new();
    for i in 0..20 {
        let mut b = batch(1 + i % 3, 30);
        let info = log.append(&mut b).unwrap();
        assert_eq!(
            info.base_offset,
            expected.iter().map(|(_, n)| n).sum::<i64>()
        );
        assert_eq!(info.last_offset, info.base_offset + (i % 3) as i64);
        assert_eq!(validate_batch(&b).unwrap().base_offset, info.base_offset);
        expected.push((b, 1 + (i % 3) as i64));
    }
    assert!(log.segment_count() > 3, "tiny segments must roll");
    let all: Vec<u8> = expected.iter().flat_map(|(b, _)| b.clone()).collect();
    assert_eq!(read_all(&log, 0), all);
    assert_eq!(log.size_bytes(), all.len() as u64);
    assert_eq!(log.log_end_offset(), 39);
    for f in fs::read_dir(dir.path()).unwrap() {
        let name = f.unwrap().file_name().into_string().unwrap();
        assert!(
            name.len() == 24 || name.len() == 26 || name.len() == 30 || name.ends_with(".snapshot"),
            "{name}"
        );
    }
    assert!(dir.path().join("00000000000000000000.log").exists());
}

#[test]
fn read_inside_a_batch_returns_that_batch_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    append(&mut log, &batch(2, 10));
    append(&mut log, &batch(5, 10));
    append(&mut log, &batch(1, 10));
    for offset in 2..7 {
        let got = read_all(&log, offset);
        assert_eq!(bases(&got), vec![2, 7], "offset {offset}");
    }
    assert_eq!(bases(&read_all(&log, 7)), vec![7]);
}

/// A follower appends the leader's batches as a replay: they keep their offsets, with
/// the gaps a compacted leader's log has; a client's append after them continues there.
#[test]
fn a_replay_keeps_offsets_with_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let mut first = batch(2, 10);
    runnel_protocol::batch::set_base_offset(&mut first, 0);
    let mut later = batch(1, 10);
    runnel_protocol::batch::set_base_offset(&mut later, 5);
    let mut both = [first, later].concat();
    let info = log.append_as(&mut both, runnel_storage::AppendOrigin::Replay).unwrap();
    assert_eq!(info.last_offset, 5);
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(bases(&read_all(&log, 2)), vec![5], "a read in the gap starts at the next batch");
    assert_eq!(append(&mut log, &batch(1, 10)).base_offset, 6);
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(bases(&read_all(&log, 0)), vec![0, 5, 6], "recovery keeps the gap");
}

#[test]
fn max_bytes_and_min_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(
        dir.path(),
        LogConfig {
            index_interval_bytes: 100,
            ..LogConfig::default()
        },
    )
    .unwrap();
    let len = batch(1, 100).len();
    for _ in 0..10 {
        append(&mut log, &batch(1, 100));
    }
    assert_eq!(log.read(0, len * 3, false).unwrap().len(), len * 3);
    assert_eq!(
        log.read(0, len * 3 + len / 2, false).unwrap().len(),
        len * 3
    );
    assert_eq!(log.read(4, len - 1, false).unwrap().len(), 0);
    let one = log.read(4, len - 1, true).unwrap();
    assert_eq!(one.len(), len);
    assert_eq!(bases(&one.read_to_vec().unwrap()), vec![4]);
    assert_eq!(log.read(0, 0, true).unwrap().len(), len);
    assert_eq!(log.read(3, usize::MAX, false).unwrap().len(), len * 7);
}

#[test]
fn out_of_range_and_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert!(log.read(0, 100, true).unwrap().is_empty());
    append(&mut log, &batch(3, 5));
    assert!(log.read(3, 100, true).unwrap().is_empty());
    assert!(matches!(
        log.read(4, 100, true),
        Err(StorageError::OffsetOutOfRange {
            requested: 4,
            log_start: 0,
            log_end: 3
        })
    ));
    assert!(matches!(
        log.read(-1, 100, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    log.truncate_to(0).unwrap();
    assert!(log.append(&mut []).is_err());
    let mut torn = batch(1, 5);
    torn.pop();
    assert!(matches!(
        log.append(&mut torn),
        Err(StorageError::InvalidBatch(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn offset_for_timestamp_and_max_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    assert_eq!(log.max_timestamp().unwrap(), None);
    append(&mut log, &batch_with(&[100, 300, 200], 5)); // 0..=2
    append(&mut log, &batch_with(&[150, 250], 5)); // 3..=4
    append(&mut log, &fake_compressed(&[400, 500, 450])); // 5..=7
    append(&mut log, &batch_with(&[500, 120], 5)); // 8..=9
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 100)));
    assert_eq!(log.offset_for_timestamp(101).unwrap(), Some((1, 300)));
    assert_eq!(log.offset_for_timestamp(300).unwrap(), Some((1, 300)));
    assert_eq!(log.offset_for_timestamp(301).unwrap(), Some((5, 500)));
    assert_eq!(log.offset_for_timestamp(501).unwrap(), None);
    // Ties: the compressed batch reached 500 first; it answers with its last offset.
    assert_eq!(log.max_timestamp().unwrap(), Some((500, 7)));
    append(&mut log, &batch_with(&[10, 900, 900], 5)); // 10..=12
    assert_eq!(log.max_timestamp().unwrap(), Some((900, 11)));
    assert_eq!(log.offset_for_timestamp(600).unwrap(), Some((11, 900)));
    // The same answers after reopening with rebuilt indexes.
    drop(log);
    for ext in ["index", "timeindex"] {
        for f in fs::read_dir(dir.path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == ext) {
                fs::remove_file(p).unwrap();
            }
        }
    }
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.max_timestamp().unwrap(), Some((900, 11)));
    assert_eq!(log.offset_for_timestamp(301).unwrap(), Some((5, 500)));
}

#[test]
fn log_append_time_batches_use_max_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    let mut b = batch_with(&[1, 2, 3], 5);
    runnel_protocol::batch::set_log_append_time(&mut b, 7000);
    let info = log.append(&mut b).unwrap();
    assert_eq!(info.max_timestamp, 7000);
    assert_eq!(log.offset_for_timestamp(5).unwrap(), Some((0, 7000)));
    assert_eq!(log.max_timestamp().unwrap(), Some((7000, 0)));
}

fn fill(log: &mut PartitionLog, n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            let mut b = batch(1 + i % 4, 20);
            log.append(&mut b).unwrap();
            b
        })
        .collect()
}

#[test]
fn reopen_after_close_and_after_crash_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let mut all = fill(&mut log, 15);
    let (end, segs) = (log.log_end_offset(), log.segment_count());
    log.close().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!((log.log_end_offset(), log.segment_count()), (end, segs));
    assert_eq!(read_all(&log, 0), all);
    all.extend(fill(&mut log, 5));
    log.flush().unwrap();
    all.extend(fill(&mut log, 5));
    let end = log.log_end_offset();
    drop(log); // crash: no close, checkpoint behind
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log, 0), all);
    assert_eq!(append(&mut log, &batch(1, 1)).base_offset, end);
}

fn last_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn log_cut_mid_batch_recovers_to_last_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        index_interval_bytes: 64,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    let all = fill(&mut log, 6);
    let last = runnel_protocol::batch::batches(&all)
        .last()
        .unwrap()
        .unwrap();
    log.close().unwrap(); // even a clean marker must not hide a torn tail
    let path = last_segment(dir.path());
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len((last.1.start + 30) as u64).unwrap();
    let mut log = PartitionLog::open(dir.path(), cfg).unwrap();
    assert_eq!(log.log_end_offset(), last.0.base_offset);
    assert_eq!(read_all(&log, 0), all[..last.1.start]);
    let info = append(&mut log, &batch(2, 5));
    assert_eq!(info.base_offset, last.0.base_offset);
    assert_eq!(bases(&read_all(&log, 0)).last(), Some(&last.0.base_offset));
}

#[test]
fn corrupted_byte_in_last_batch_truncates_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let all = fill(&mut log, 12);
    let end = log.log_end_offset();
    drop(log);
    let path = last_segment(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let last_start = runnel_protocol::batch::batches(&bytes)
        .last()
        .unwrap()
        .unwrap()
        .1
        .start;
    let last_header = BatchHeader::parse(&bytes[last_start..]).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_end_offset(), last_header.base_offset);
    assert!(log.log_end_offset() < end);
    assert_eq!(
        read_all(&log, 0),
        all[..all.len() - last_header.total_len()]
    );
}

#[test]
fn damaged_or_missing_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let all = fill(&mut log, 30);
    log.close().unwrap();
    for (n, f) in fs::read_dir(dir.path()).unwrap().enumerate() {
        let p = f.unwrap().path();
        match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
            "index" if n % 2 == 0 => fs::remove_file(&p).unwrap(),
            "index" => fs::write(&p, [0xff; 16]).unwrap(),
            "timeindex" => fs::write(&p, [1u8; 13]).unwrap(),
            _ => {}
        }
    }
    fs::write(dir.path().join("junk.tmp"), b"x").unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert!(!dir.path().join("junk.tmp").exists());
    assert_eq!(read_all(&log, 0), all);
    let mut offset = 0;
    for (h, _) in runnel_protocol::batch::batches(&all).map(Result::unwrap) {
        for o in h.base_offset..=h.last_offset() {
            assert_eq!(
                bases(&log.read(o, 1, true).unwrap().read_to_vec().unwrap()),
                vec![h.base_offset]
            );
        }
        offset = h.last_offset() + 1;
    }
    assert_eq!(log.log_end_offset(), offset);
    assert_eq!(
        log.offset_for_timestamp(1003).unwrap().map(|(_, t)| t),
        Some(1003)
    );
}

#[test]
fn truncate_to_drops_the_containing_batch_and_later() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let all = fill(&mut log, 20);
    let segs = log.segment_count();
    let batches: Vec<_> = runnel_protocol::batch::batches(&all)
        .map(Result::unwrap)
        .collect();
    let (h, range) = &batches[5];
    log.truncate_to(h.base_offset + 1.min(h.last_offset_delta as i64))
        .unwrap();
    assert_eq!(log.log_end_offset(), h.base_offset);
    assert!(log.segment_count() < segs);
    assert_eq!(read_all(&log, 0), all[..range.start]);
    assert_eq!(append(&mut log, &batch(1, 1)).base_offset, h.base_offset);
    drop(log);
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_end_offset(), h.base_offset + 1);
    log.truncate_to(0).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_count()
        ),
        (0, 0, 1)
    );
    log.delete().unwrap();
    assert!(!dir.path().exists());
}

#[test]
fn flush_messages_and_maybe_flush_move_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        flush_messages: 5,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    append(&mut log, &batch(3, 1));
    assert_eq!(log.recovery_point(), 0);
    append(&mut log, &batch(3, 1));
    assert_eq!(log.recovery_point(), 6);
    append(&mut log, &batch(1, 1));
    log.set_config(LogConfig { flush_ms: 0, ..cfg });
    log.maybe_flush().unwrap();
    assert_eq!(log.recovery_point(), 7);
}

#[test]
fn segment_ms_rolls_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(
        dir.path(),
        LogConfig {
            segment_ms: 0,
            ..LogConfig::default()
        },
    )
    .unwrap();
    for _ in 0..3 {
        append(&mut log, &batch(1, 1));
    }
    assert_eq!(log.segment_count(), 3);
}

#[test]
fn read_up_to_stops_before_the_upper_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let all = fill(&mut log, 20); // batches of 1,2,3,4 records, rolling often
    let batches: Vec<_> = runnel_protocol::batch::batches(&all)
        .map(Result::unwrap)
        .collect();
    for (h, range) in &batches {
        // Upper at a batch's base: everything before it. Inside it: the same.
        for upper in [h.base_offset, h.last_offset()] {
            let got = log
                .read_up_to(0, usize::MAX, true, upper)
                .unwrap()
                .read_to_vec()
                .unwrap();
            let expect = if upper == h.base_offset || h.last_offset_delta > 0 {
                &all[..range.start]
            } else {
                &all[..range.end]
            };
            assert_eq!(got, expect, "upper {upper}");
        }
    }
    let (h, _) = &batches[3];
    assert!(log
        .read_up_to(h.base_offset, 1000, true, h.base_offset)
        .unwrap()
        .is_empty());
    assert_eq!(
        log.read_up_to(0, usize::MAX, true, i64::MAX).unwrap().len(),
        all.len()
    );
}

/// A fetch reads from one segment at a time (as Kafka's does), so a response in flight holds
/// one open file per partition: reading on from where each read ended gives the whole log.
#[test]
fn a_fetch_read_stays_in_one_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let all = fill(&mut log, 20);
    assert!(log.segment_count() > 3);
    let (mut offset, mut got, mut reads) = (0, Vec::new(), 0);
    while offset < log.log_end_offset() {
        let slice = log.read_for_fetch(offset, usize::MAX, true, i64::MAX).unwrap();
        assert_eq!(slice.slices.len(), 1, "one segment per read");
        let bytes = slice.read_to_vec().unwrap();
        offset = runnel_protocol::batch::batches(&bytes).last().unwrap().unwrap().0.last_offset() + 1;
        got.extend_from_slice(&bytes);
        reads += 1;
    }
    assert_eq!(got, all);
    assert_eq!(reads, log.segment_count(), "the active segment is not empty after appends");
}
