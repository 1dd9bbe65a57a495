//! Log lifecycle: retention by time and size, DeleteRecords (the log start offset and its
//! checkpoint), compaction (latest value per key, offsets preserved, tombstones, codecs,
//! dirty ratio and lag) and crash safety of the compaction swap at every step.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use runnel_protocol::batch::{self, Compression};
use runnel_storage::{CompactionConfig, LogConfig, PartitionLog, RetentionConfig, StorageError};

const DAY: i64 = 24 * 60 * 60 * 1000;
const NOW: i64 = 1_700_000_000_000;

fn tiny() -> LogConfig {
    LogConfig { segment_bytes: 600, index_interval_bytes: 64, ..LogConfig::default() }
}

fn refused(log: &PartitionLog, offset: i64) -> bool {
    matches!(log.read(offset, 1000, true), Err(StorageError::OffsetOutOfRange { .. }))
}

/// 40 batches of 3 records (offsets 0..120): the first 20 batches 10 days old, the rest new.
fn aged_log(dir: &Path) -> PartitionLog {
    let mut log = PartitionLog::open(dir, tiny()).unwrap();
    for i in 0..40 {
        let ts = if i < 20 { NOW - 10 * DAY } else { NOW - 1000 };
        append(&mut log, &batch_with(&[ts, ts + 1, ts + 2], 40));
    }
    assert!(log.segment_count() > 8);
    log
}

#[test]
fn retention_by_time_deletes_old_closed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = aged_log(dir.path());
    let all = read_records(&log, 0);
    let before = log.segment_count();
    let none = RetentionConfig::default();
    assert_eq!(log.apply_retention(&none, NOW).unwrap().segments_deleted, 0);
    let cfg = RetentionConfig { retention_ms: Some(7 * DAY as u64), retention_bytes: None };
    let out = log.apply_retention(&cfg, NOW).unwrap();
    assert!(out.segments_deleted > 0 && out.bytes_deleted > 0);
    assert_eq!(log.segment_count(), before - out.segments_deleted);
    let start = log.log_start_offset();
    assert!(start > 0 && start <= 60, "only segments wholly made of old batches go: start {start}");
    assert!(refused(&log, start - 1) && refused(&log, 0));
    assert_eq!(read_records(&log, start), all[start as usize..].to_vec(), "records above intact");
    // Everything expired: the active segment still stays.
    let out = log.apply_retention(&cfg, NOW + 30 * DAY).unwrap();
    assert!(out.segments_deleted > 0);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_end_offset(), 120);
    let start = log.log_start_offset();
    assert_eq!(read_records(&log, start), all[start as usize..].to_vec());
    drop(log);
    let log = PartitionLog::open(dir.path(), tiny()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, 120));
}

#[test]
fn retention_by_size_keeps_at_least_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = aged_log(dir.path());
    let all = read_records(&log, 0);
    let total = log.size_bytes();
    let limit = total / 2;
    let cfg = RetentionConfig { retention_ms: None, retention_bytes: Some(limit) };
    let out = log.apply_retention(&cfg, NOW).unwrap();
    assert!(out.segments_deleted > 0);
    assert!(log.size_bytes() >= limit, "{} < {limit}", log.size_bytes());
    assert!(log.size_bytes() < limit + 600, "deleted as much as allowed");
    let start = log.log_start_offset();
    assert!(start > 0 && refused(&log, start - 1));
    assert_eq!(read_records(&log, start), all[start as usize..].to_vec());
    // A second pass changes nothing; reopening keeps the low watermark.
    assert_eq!(log.apply_retention(&cfg, NOW).unwrap().segments_deleted, 0);
    log.close().unwrap();
    let mut log = PartitionLog::open(dir.path(), tiny()).unwrap();
    assert_eq!(log.log_start_offset(), start);
    // Appends continue at the old log end.
    assert_eq!(append(&mut log, &batch(1, 5)).base_offset, 120);
}

#[test]
fn delete_records_moves_the_log_start_inside_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = aged_log(dir.path());
    let all = read_records(&log, 0);
    let segments = log.segment_count();
    assert!(matches!(log.delete_records_before(121), Err(StorageError::OffsetOutOfRange { .. })));
    assert_eq!(log.delete_records_before(0).unwrap(), 0);
    assert_eq!(log.delete_records_before(50).unwrap(), 50);
    assert!(log.segment_count() < segments, "segments wholly below 50 are deleted");
    assert!(refused(&log, 49));
    assert_eq!(read_records(&log, 50), all[50..].to_vec());
    // The first batch returned may start below the log start (as in Kafka).
    assert!(bases(&read_all(&log, 50))[0] <= 50);
    assert_eq!(log.delete_records_before(10).unwrap(), 50, "never moves back");
    assert!(log.offset_for_timestamp(0).unwrap().unwrap().0 >= 50);
    drop(log); // crash: no clean shutdown
    let mut log = PartitionLog::open(dir.path(), tiny()).unwrap();
    assert_eq!(log.log_start_offset(), 50);
    assert!(refused(&log, 49));
    // Up to the log end: nothing readable, appends continue.
    assert_eq!(log.delete_records_before(120).unwrap(), 120);
    assert!(log.read(120, 100, true).unwrap().is_empty());
    assert_eq!(append(&mut log, &batch(2, 5)).base_offset, 120);
    assert_eq!(read_records(&log, 120).len(), 2);
}

const CEOS: [&str; 4] = ["microsoft", "apple", "google", "yahoo"];
const CODECS: [Compression; 5] =
    [Compression::None, Compression::Gzip, Compression::Lz4, Compression::Zstd, Compression::Snappy];

/// Rounds of PUTs of the CEO table: one batch per round (codecs rotating), some rounds
/// updating only some keys.
fn ceo_log(dir: &Path, rounds: usize) -> PartitionLog {
    let mut log = PartitionLog::open(dir, tiny()).unwrap();
    for r in 0..rounds {
        let values: Vec<String> = CEOS.iter().map(|k| format!("{k}-ceo-{r}")).collect();
        let recs: Vec<(&str, Option<&str>)> = CEOS
            .iter()
            .zip(&values)
            .filter(|(k, _)| r % 3 != 0 || **k != "yahoo")
            .map(|(k, v)| (*k, Some(v.as_str())))
            .collect();
        append(&mut log, &kv_batch(&recs, NOW - DAY + r as i64, CODECS[r % CODECS.len()]));
    }
    log
}

/// (base offset, codec) of every stored batch.
fn codecs_in(log: &PartitionLog) -> Vec<(i64, i16)> {
    let bytes = read_all(log, log.log_start_offset());
    batch::batches(&bytes).map(|b| b.unwrap().0).map(|h| (h.base_offset, h.attributes & 7)).collect()
}

#[test]
fn compaction_keeps_the_latest_ceo_of_each_company() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = ceo_log(dir.path(), 60);
    let before = read_records(&log, 0);
    let want = latest_by_key(&before);
    let (end, segments) = (log.log_end_offset(), log.segment_count());
    let codecs = codecs_in(&log);
    let stats = log.compact(&CompactionConfig::default(), NOW, false).unwrap().expect("a first pass is due");
    assert!(stats.records_removed > 0 && stats.bytes_after < stats.bytes_before);
    assert!(log.segment_count() <= segments);
    let cleaned_segments = log.segment_count();
    log.compact(&CompactionConfig::default(), NOW, true).unwrap().unwrap();
    assert!(log.segment_count() < cleaned_segments, "small cleaned segments are merged");
    let after = read_records(&log, 0);
    assert_eq!(latest_by_key(&after), want, "every key's latest value, at its original offset");
    assert!(after.len() * 4 < before.len(), "{} of {} records left", after.len(), before.len());
    assert!(after.windows(2).all(|w| w[0].0 < w[1].0), "offsets increase");
    for r in &after {
        assert!(before.contains(r), "{r:?} was never written at that offset");
    }
    assert_eq!(log.log_end_offset(), end);
    let kept = codecs_in(&log);
    assert!(kept.iter().all(|c| codecs.contains(c)), "batches keep their base offset and codec");
    assert!(kept.iter().any(|c| c.1 != 0));
    // Nothing new: no pass is due; reads at any offset work, also in the gaps.
    assert!(log.compact(&CompactionConfig::default(), NOW, false).unwrap().is_none());
    for o in 0..end {
        let got = read_records(&log, o);
        assert_eq!(got, after.iter().filter(|r| r.0 >= o).cloned().collect::<Vec<_>>(), "from {o}");
    }
    // Appends continue, and everything survives a reopen (crash) and a clean reopen.
    let info = append(&mut log, &kv_batch(&[("apple", Some("tim"))], NOW, Compression::Zstd));
    assert_eq!(info.base_offset, end);
    drop(log);
    let log = PartitionLog::open(dir.path(), tiny()).unwrap();
    let mut want = want;
    want.insert(b"apple".to_vec(), (end, Some(b"tim".to_vec())));
    assert_eq!(latest_by_key(&read_records(&log, 0)), want);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), tiny()).unwrap();
    assert_eq!(latest_by_key(&read_records(&log, 0)), want);
}

#[test]
fn compaction_keeps_gaps_after_a_middle_record_goes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), tiny()).unwrap();
    for codec in CODECS {
        append(&mut log, &kv_batch(&[("a", Some("1")), ("b", Some("1")), ("c", Some("1"))], NOW, codec));
        append(&mut log, &kv_batch(&[("b", Some("2"))], NOW, Compression::None));
        let start = log.log_end_offset();
        append(&mut log, &kv_batch(&[("pad", Some(&"x".repeat(600)))], NOW, Compression::None));
        log.compact(&CompactionConfig::default(), NOW, true).unwrap();
        let got: Vec<(i64, Vec<u8>)> =
            read_records(&log, start - 4).into_iter().map(|(o, k, _)| (o, k.unwrap())).collect();
        assert_eq!(
            got,
            vec![(start - 4, b"a".to_vec()), (start - 2, b"c".to_vec()), (start - 1, b"b".to_vec()), (start, b"pad".to_vec())],
            "{codec:?}"
        );
    }
}

#[test]
fn tombstones_stay_for_delete_retention_ms_then_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), tiny()).unwrap();
    append(&mut log, &kv_batch(&[("gone", Some("v1")), ("kept", Some("k1"))], NOW, Compression::None));
    append(&mut log, &kv_batch(&[("gone", Some("v2"))], NOW, Compression::Lz4));
    append(&mut log, &kv_batch(&[("gone", None)], NOW + 10, Compression::None));
    for i in 0..12 {
        append(&mut log, &kv_batch(&[("other", Some(&format!("{i:0100}")))], NOW + 20, Compression::None));
    }
    let cfg = CompactionConfig { delete_retention_ms: DAY as u64, ..CompactionConfig::default() };
    log.compact(&cfg, NOW + DAY / 2, true).unwrap().unwrap();
    let m = latest_by_key(&read_records(&log, 0));
    assert_eq!(m[&b"gone".to_vec()], (3, None), "the tombstone is readable within delete.retention.ms");
    assert_eq!(read_records(&log, 0).iter().filter(|r| r.1.as_deref() == Some(b"gone")).count(), 1);
    log.compact(&cfg, NOW + 2 * DAY, true).unwrap().unwrap();
    let after = read_records(&log, 0);
    assert!(after.iter().all(|r| r.1.as_deref() != Some(b"gone")), "{after:?}");
    assert_eq!(latest_by_key(&after)[&b"kept".to_vec()], (1, Some(b"k1".to_vec())));
}

#[test]
fn dirty_ratio_and_lag_decide_when_to_clean() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), tiny()).unwrap();
    for i in 0..200 {
        append(&mut log, &kv_batch(&[(&format!("key-{i}"), Some("distinct keys: nothing to remove"))], NOW, Compression::None));
    }
    let lagging = CompactionConfig { min_compaction_lag_ms: 10 * DAY as u64, ..CompactionConfig::default() };
    assert!(log.plan_compaction(&lagging, NOW, false).is_none(), "records too new to clean");
    let cfg = CompactionConfig::default();
    log.compact(&cfg, NOW, false).unwrap().unwrap();
    // A little new data: dirty ratio far below 0.5.
    for r in 0..2 {
        append(&mut log, &kv_batch(&[("key-1", Some(&format!("new-{r}{}", "x".repeat(500))))], NOW, Compression::None));
    }
    assert!(log.plan_compaction(&cfg, NOW, false).is_none());
    let eager = CompactionConfig { min_cleanable_dirty_ratio: 0.01, ..cfg };
    assert!(log.plan_compaction(&eager, NOW, false).is_some());
    let overdue = CompactionConfig { max_compaction_lag_ms: 1, ..cfg };
    assert!(log.plan_compaction(&overdue, NOW + DAY, false).is_some(), "max.compaction.lag.ms forces a pass");
}

/// Where a simulated crash stops the swap of every cleaned group.
#[derive(Debug, Clone, Copy)]
enum Crash {
    /// `.cleaned` files written (here also half-written: truncated).
    Cleaned { torn: bool },
    /// Renamed to `.swap` (committed), nothing replaced yet.
    Swapped,
    /// Committed and the replaced segments' indexes and later logs deleted.
    HalfReplaced,
    /// The swap file renamed to `<base>.log`; the in-memory log never knew.
    Replaced,
}

fn files(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// Leaves the partition dir as a crash at `crash` would, using a real run's cleaned files.
fn crash_during_compaction(dir: &Path, crash: Crash) {
    let log = PartitionLog::open(dir, tiny()).unwrap();
    let job = log.plan_compaction(&CompactionConfig::default(), NOW, true).unwrap();
    drop(job.run().unwrap()); // cleaned files stay: nothing installs them
    drop(log);
    let cleaned = files(dir, ".log.cleaned");
    assert!(!cleaned.is_empty());
    for name in cleaned {
        let (base, end) = name.strip_suffix(".log.cleaned").unwrap().split_once('-').unwrap();
        let (base, end): (i64, i64) = (base.parse().unwrap(), end.parse().unwrap());
        let path = dir.join(&name);
        if let Crash::Cleaned { torn } = crash {
            if torn {
                let len = fs::metadata(&path).unwrap().len();
                fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
            }
            continue;
        }
        let swap = dir.join(name.replace(".cleaned", ".swap"));
        fs::rename(&path, &swap).unwrap();
        if matches!(crash, Crash::Swapped) {
            continue;
        }
        for f in files(dir, "") {
            let Some((stem, ext)) = f.split_once('.') else { continue };
            let Ok(b) = stem.parse::<i64>() else { continue };
            if stem.len() == 20 && (base..end).contains(&b) && (ext != "log" || b != base) {
                fs::remove_file(dir.join(&f)).unwrap();
            }
        }
        if matches!(crash, Crash::Replaced) {
            fs::rename(&swap, dir.join(format!("{base:020}.log"))).unwrap();
        }
    }
}

#[test]
fn a_crash_at_any_step_of_the_swap_loses_no_latest_value() {
    for crash in [
        Crash::Cleaned { torn: false },
        Crash::Cleaned { torn: true },
        Crash::Swapped,
        Crash::HalfReplaced,
        Crash::Replaced,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = ceo_log(dir.path(), 50);
        let before = read_records(&log, 0);
        let want = latest_by_key(&before);
        let end = log.log_end_offset();
        drop(log);
        crash_during_compaction(dir.path(), crash);
        let mut log = PartitionLog::open(dir.path(), tiny()).unwrap();
        let got = read_records(&log, 0);
        assert_eq!(latest_by_key(&got), want, "{crash:?}");
        assert_eq!(log.log_end_offset(), end, "{crash:?}");
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "{crash:?}");
        assert!(got.iter().all(|r| before.contains(r)), "{crash:?}");
        if matches!(crash, Crash::Cleaned { .. }) {
            assert_eq!(got, before, "an uncommitted clean is rolled back");
        } else {
            assert!(got.len() < before.len(), "a committed swap is finished: {crash:?}");
        }
        assert!(files(dir.path(), ".cleaned").is_empty() && files(dir.path(), ".swap").is_empty());
        // The log works normally afterwards: compact again, append, reopen.
        log.compact(&CompactionConfig::default(), NOW, true).unwrap();
        append(&mut log, &kv_batch(&[("yahoo", Some("last"))], NOW, Compression::None));
        drop(log);
        let log = PartitionLog::open(dir.path(), tiny()).unwrap();
        let mut want = want;
        want.insert(b"yahoo".to_vec(), (end, Some(b"last".to_vec())));
        assert_eq!(latest_by_key(&read_records(&log, 0)), want, "{crash:?}");
    }
}

#[test]
fn a_plan_made_stale_by_retention_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = ceo_log(dir.path(), 50);
    let job = log.plan_compaction(&CompactionConfig::default(), NOW, true).unwrap();
    let out = job.run().unwrap();
    let start = log.delete_records_before(100).unwrap();
    let want = latest_by_key(&read_records(&log, start));
    log.install_compaction(out).unwrap();
    assert!(files(dir.path(), ".cleaned").is_empty());
    assert_eq!(log.log_start_offset(), 100);
    assert_eq!(latest_by_key(&read_records(&log, start)), want);
}
