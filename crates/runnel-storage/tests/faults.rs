//! Fault injection at the file-system boundary (the `failpoints` feature, enabled for this
//! crate's tests): writes, fsyncs, renames, removes, truncations and opens fail at chosen or
//! random calls while a partition log appends, rolls, flushes, compacts, applies retention
//! and DeleteRecords and restarts. Checked after every restart: every acknowledged record
//! that no deletion could have removed is readable at its offset with its bytes, and
//! nothing is served that was not appended (a failed append may or may not survive).

mod common;

use std::collections::BTreeMap;

use common::*;
use runnel_protocol::batch::Compression;
use runnel_storage::failpoints::{self, Op};
use runnel_storage::{CompactionConfig, FlushJob, LogConfig, PartitionLog, RetentionConfig, StorageError};

#[test]
fn a_failed_fsync_takes_the_log_offline_and_the_recovery_point_stays() {
    failpoints::clear();
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    append(&mut log, &batch(3, 10));
    log.flush().unwrap();
    assert_eq!(log.recovery_point(), 3);
    append(&mut log, &batch(2, 10));
    failpoints::fail_nth(Op::Fsync, 1);
    assert!(log.flush().is_err());
    assert_eq!(log.recovery_point(), 3, "the recovery point never passes unsynced data");
    assert!(log.offline_reason().is_some());
    assert!(matches!(log.read(0, usize::MAX, true), Err(StorageError::Offline(_))), "nothing is served after a failed fsync");
    let mut more = batch(1, 10);
    assert!(matches!(log.append(&mut more), Err(StorageError::Offline(_))), "nothing more is acknowledged");
    assert_eq!(log.log_end_offset(), 5);
    drop(log);
    failpoints::clear();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert!(log.offline_reason().is_none(), "a restart recovers the log");
    assert_eq!(read_records(&log, 0).len(), 5);
}

/// The clean-shutdown flush of many logs at once (two syncfs calls): it moves every
/// recovery point when it works; when the first syncfs fails, no checkpoint is written, every
/// log goes offline with its recovery point where it was, and a restart recovers them all.
#[test]
fn a_batched_flush_moves_every_recovery_point_or_none() {
    failpoints::clear();
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..3).map(|i| root.path().join(format!("t-{i}"))).collect();
    let mut logs: Vec<PartitionLog> = dirs
        .iter()
        .map(|d| {
            std::fs::create_dir(d).unwrap();
            PartitionLog::open(d, small_config()).unwrap()
        })
        .collect();
    for (i, log) in logs.iter_mut().enumerate() {
        append(log, &batch(2 + i, 10));
    }
    let jobs: Vec<FlushJob> = logs.iter().map(|l| l.begin_flush().unwrap()).collect();
    let ran = FlushJob::run_batch(&jobs, root.path());
    for (log, job) in logs.iter_mut().zip(jobs) {
        log.finish_flush(job, ran.as_ref().map(|_| ()).map_err(|e| std::io::Error::new(e.kind(), e.to_string()))).unwrap();
    }
    assert_eq!(logs.iter().map(|l| l.recovery_point()).collect::<Vec<_>>(), vec![2, 3, 4]);

    for log in logs.iter_mut() {
        append(log, &batch(1, 10));
    }
    let jobs: Vec<FlushJob> = logs.iter().map(|l| l.begin_flush().unwrap()).collect();
    failpoints::fail_nth(Op::Fsync, 1);
    let ran = FlushJob::run_batch(&jobs, root.path());
    assert!(ran.is_err(), "the injected syncfs failure is reported");
    for (log, job) in logs.iter_mut().zip(jobs) {
        assert!(log.finish_flush(job, Err(std::io::Error::other("syncfs failed"))).is_err());
        assert!(log.offline_reason().is_some(), "a log whose data may be lost serves nothing more");
    }
    assert_eq!(logs.iter().map(|l| l.recovery_point()).collect::<Vec<_>>(), vec![2, 3, 4], "no checkpoint names unsynced data");
    drop(logs);
    failpoints::clear();
    for (i, d) in dirs.iter().enumerate() {
        let log = PartitionLog::open(d, small_config()).unwrap();
        assert_eq!(log.recovery_point(), 2 + i as i64, "the checkpoint on disk still names only synced data");
        assert_eq!(read_records(&log, 0).len(), 3 + i, "a restart recovers every record");
    }
}

#[test]
fn a_failed_flush_inside_an_append_is_not_acknowledged() {
    failpoints::clear();
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { flush_messages: 1, ..small_config() };
    let mut log = PartitionLog::open(dir.path(), cfg).unwrap();
    append(&mut log, &batch(2, 10));
    failpoints::fail_nth(Op::Fsync, 1);
    let mut b = batch(2, 10);
    assert!(log.append(&mut b).is_err());
    assert!(log.read(0, usize::MAX, true).is_err());
    failpoints::clear();
}

/// What the test knows about one offset.
#[derive(Debug, Clone, PartialEq)]
struct Rec {
    key: Vec<u8>,
    value: Vec<u8>,
    /// Acknowledged (append returned Ok), or only maybe stored (append failed).
    acked: bool,
}

struct Run {
    seed: u64,
    rng: u64,
    dir: tempfile::TempDir,
    cfg: LogConfig,
    model: BTreeMap<i64, Rec>,
    /// Records below this may have been deleted (by retention or DeleteRecords).
    deletable_below: i64,
    next_key: u64,
}

impl Run {
    fn rand(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 16
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rand() % n
    }

    /// Checks what `log` serves against the model; `restarted` also requires every
    /// acknowledged record that may not have been deleted.
    fn check(&self, log: &PartitionLog, restarted: bool) {
        let seed = self.seed;
        let start = log.log_start_offset();
        let served = read_records(log, start);
        let mut seen = std::collections::BTreeSet::new();
        for (offset, key, value) in &served {
            let rec = self.model.get(offset).unwrap_or_else(|| panic!("seed {seed}: offset {offset} served but never appended"));
            assert_eq!((key.as_deref(), value.as_deref()), (Some(&rec.key[..]), Some(&rec.value[..])), "seed {seed}: offset {offset} bytes differ");
            seen.insert(*offset);
        }
        if restarted {
            assert!(start <= self.deletable_below.max(0), "seed {seed}: log start {start} moved past what was deleted ({})", self.deletable_below);
            for (offset, rec) in self.model.range(self.deletable_below.max(start)..) {
                assert!(!rec.acked || seen.contains(offset), "seed {seed}: acknowledged offset {offset} lost (log {start}..{})", log.log_end_offset());
            }
        }
    }

    fn open(&mut self) -> PartitionLog {
        loop {
            let r = PartitionLog::open(self.dir.path(), self.cfg.clone());
            if std::env::var_os("RUNNEL_FAULT_TRACE").is_some() {
                eprintln!("open: {:?}", r.as_ref().map(|l| (l.log_start_offset(), l.log_end_offset())).err());
                if let Ok(l) = &r { eprintln!("  opened {}..{}", l.log_start_offset(), l.log_end_offset()); }
            }
            match r {
                Ok(log) => return log,
                // An injected fault while opening: try again (as an operator restarting).
                Err(_) => continue,
            }
        }
    }

    /// Forgets what a failed append may have stored but a restart cut off.
    fn settle(&mut self, log: &PartitionLog) {
        let end = log.log_end_offset();
        self.model.retain(|o, r| r.acked || *o < end);
        // A maybe-record that survived is now plain data.
        for r in self.model.values_mut() {
            r.acked = true;
        }
        let lost: Vec<i64> = self.model.range(end..).map(|(o, _)| *o).collect();
        assert!(lost.is_empty(), "seed {}: acknowledged offsets {lost:?} past the log end {end}", self.seed);
    }

    fn step(&mut self, log: &mut PartitionLog) -> Result<(), StorageError> {
        match self.below(20) {
            0..=10 => {
                let n = 1 + self.below(4) as usize;
                let keys: Vec<String> = (0..n).map(|_| { self.next_key += 1; format!("k{}", self.next_key) }).collect();
                let vals: Vec<String> = (0..n).map(|i| format!("v{}-{}", i, "x".repeat(self.below(60) as usize))).collect();
                let recs: Vec<(&str, Option<&str>)> = keys.iter().zip(&vals).map(|(k, v)| (k.as_str(), Some(v.as_str()))).collect();
                let mut b = kv_batch(&recs, 1_000 + self.next_key as i64, Compression::None);
                let base = log.log_end_offset();
                let result = log.append(&mut b);
                let acked = result.is_ok();
                if let Ok(info) = &result {
                    assert_eq!(info.base_offset, base);
                }
                for (i, (k, v)) in keys.iter().zip(&vals).enumerate() {
                    self.model.insert(base + i as i64, Rec { key: k.clone().into_bytes(), value: v.clone().into_bytes(), acked });
                }
                result.map(|_| ())
            }
            11 | 12 => log.flush(),
            13 => {
                let cfg = CompactionConfig { min_compaction_lag_ms: 0, ..CompactionConfig::default() };
                log.compact(&cfg, 10_000, true).map(|_| ())
            }
            14 => {
                let cfg = RetentionConfig { retention_bytes: Some(1_500), ..RetentionConfig::default() };
                let r = log.apply_retention(&cfg, 10_000);
                self.deletable_below = self.deletable_below.max(log.log_start_offset());
                r.map(|_| ())
            }
            15 => {
                let end = log.log_end_offset();
                let start = log.log_start_offset();
                let to = start + self.below((end - start + 1) as u64 / 4 + 1) as i64;
                self.deletable_below = self.deletable_below.max(to);
                log.delete_records_before(to).map(|_| ())
            }
            _ => {
                self.check(log, false);
                Ok(())
            }
        }
    }
}

fn run_seed(seed: u64, steps: usize) {
    if std::env::var_os("RUNNEL_FAULT_TRACE").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter("debug").with_test_writer().try_init();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run {
        seed,
        rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        dir,
        cfg: LogConfig { segment_bytes: 600, index_interval_bytes: 64, ..LogConfig::default() },
        model: BTreeMap::new(),
        deletable_below: 0,
        next_key: 0,
    };
    if seed % 3 == 0 {
        run.cfg.flush_messages = 1 + seed % 7;
    }
    failpoints::clear();
    let mut log = run.open();
    let ops = [Op::Write, Op::Fsync, Op::Rename, Op::Remove, Op::Truncate, Op::Open];
    for (i, op) in ops.iter().enumerate() {
        failpoints::fail_randomly(*op, 8_000 + 4_000 * (i as u32 % 3), seed);
    }
    for _ in 0..steps {
        if run.below(25) == 0 {
            // Restart: a crash (drop) or a clean close.
            if run.below(2) == 0 {
                let _ = log.close();
            } else {
                drop(log);
            }
            log = run.open();
            run.settle(&log);
            run.check(&log, true);
            continue;
        }
        let before = failpoints::injected();
        let result = run.step(&mut log);
        if std::env::var_os("RUNNEL_FAULT_TRACE").is_some() {
            eprintln!("step: {:?} injected {} end {} offline {:?}", result.as_ref().err(), failpoints::injected() - before, log.log_end_offset(), log.offline_reason());
        }
        if log.offline_reason().is_some() {
            assert!(result.is_err(), "seed {seed}: an operation that took the log offline reported success");
            assert!(log.read(log.log_start_offset(), 1, true).is_err(), "seed {seed}: an offline log served a read");
            drop(log);
            log = run.open();
            run.settle(&log);
            run.check(&log, true);
        }
    }
    let injected = failpoints::injected();
    failpoints::clear();
    drop(log);
    let log = run.open();
    run.settle(&log);
    run.check(&log, true);
    assert!(injected > 0, "seed {seed}: no fault was injected");
}

#[test]
fn random_faults_never_lose_acknowledged_records_nor_serve_garbage() {
    let seeds: u64 = std::env::var("RUNNEL_FAULT_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    for seed in 1..=seeds {
        run_seed(seed, 300);
    }
}

#[test]
fn a_damaged_batch_in_a_flushed_segment_costs_only_that_segment() {
    failpoints::clear();
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config()).unwrap();
    for _ in 0..12 {
        append(&mut log, &batch(2, 60));
    }
    assert!(log.segment_count() >= 3, "several segments");
    log.flush().unwrap();
    let end = log.log_end_offset();
    drop(log);
    // One flipped bit in the first segment's second batch header (its length field).
    let first = dir.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&first).unwrap();
    let second = 12 + u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
    bytes[second + 9] ^= 0x40;
    std::fs::write(&first, &bytes).unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_end_offset(), end, "later segments are kept");
    let offsets: Vec<i64> = read_records(&log, 0).iter().map(|r| r.0).collect();
    assert_eq!(offsets[..2], [0, 1], "the batch before the damage is kept");
    assert!(offsets.contains(&(end - 1)) && offsets.len() as i64 >= end - 4, "only the damaged segment's tail is lost: {offsets:?}");
    let kept: Vec<_> = std::fs::read_dir(dir.path()).unwrap().filter_map(|e| e.unwrap().file_name().into_string().ok()).filter(|n| n.contains(".damaged-")).collect();
    assert_eq!(kept.len(), 1, "the cut bytes are kept aside");
}

/// A log of small segments holding 8 batches of 3 records, behind the mutex a broker holds
/// it in, with no failpoint set.
fn shared_log_of_eight_batches() -> (tempfile::TempDir, std::sync::Arc<std::sync::Mutex<PartitionLog>>) {
    failpoints::clear();
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(PartitionLog::open(dir.path(), small_config()).unwrap()));
    for _ in 0..8 {
        append(&mut log.lock().unwrap(), &batch(3, 100));
    }
    (dir, log)
}

/// Retention takes its segments out of the log under the lock a request waits on and
/// deletes their files without it: while every delete stalls (a slow disk), appends and
/// reads on the same log, behind the mutex a broker holds it in, are answered at once.
#[test]
fn retention_deletes_files_without_the_log_lock() {
    let (_dir, log) = shared_log_of_eight_batches();
    let segments = log.lock().unwrap().segment_count();
    assert!(segments >= 6, "{segments} segments");
    let l = log.clone();
    let cleaner = std::thread::spawn(move || {
        failpoints::stall(Op::Remove, std::time::Duration::from_millis(50));
        let deletion = l.lock().unwrap().plan_retention(&RetentionConfig { retention_ms: None, retention_bytes: Some(0) }, 0);
        deletion.run().unwrap()
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    let t = std::time::Instant::now();
    let end = append(&mut log.lock().unwrap(), &batch(1, 10)).last_offset;
    let start = log.lock().unwrap().log_start_offset();
    assert!(!log.lock().unwrap().read(start, usize::MAX, true).unwrap().is_empty());
    let waited = t.elapsed();
    assert!(!cleaner.is_finished(), "the deletes finished before the check");
    let out = cleaner.join().unwrap();
    assert_eq!(out.segments_deleted, segments - 1);
    assert!(waited < std::time::Duration::from_millis(40), "an append and a read waited {waited:?} for {} stalled deletes", out.segments_deleted * 4);
    assert_eq!(log.lock().unwrap().log_end_offset(), end + 1);
    failpoints::clear();
}

/// DeleteRecords in steps: its checkpoint's fsyncs and its deletes run without the log's
/// lock, so while they stall, an append and a read on the same log are answered at once;
/// the records below the new log start are gone after a restart.
#[test]
fn delete_records_syncs_and_deletes_without_the_log_lock() {
    let (dir, log) = shared_log_of_eight_batches();
    let l = log.clone();
    let deleter = std::thread::spawn(move || {
        failpoints::stall(Op::Fsync, std::time::Duration::from_millis(100));
        failpoints::stall(Op::Remove, std::time::Duration::from_millis(50));
        let mv = l.lock().unwrap().plan_delete_records(20).unwrap().expect("the log start moves");
        mv.write().unwrap();
        let deletion = l.lock().unwrap().finish_delete_records(mv);
        deletion.run().unwrap()
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    let t = std::time::Instant::now();
    append(&mut log.lock().unwrap(), &batch(1, 10));
    assert!(!log.lock().unwrap().read(20, usize::MAX, true).unwrap().is_empty());
    let waited = t.elapsed();
    assert!(!deleter.is_finished(), "the checkpoint and deletes finished before the check");
    let out = deleter.join().unwrap();
    assert!(out.segments_deleted >= 2, "{out:?}");
    assert!(waited < std::time::Duration::from_millis(40), "an append and a read waited {waited:?}");
    failpoints::clear();
    let reopened = {
        let mut l = log.lock().unwrap();
        l.flush().unwrap();
        drop(l);
        PartitionLog::open(dir.path(), small_config()).unwrap()
    };
    assert_eq!(reopened.log_start_offset(), 20, "the log start survives a restart");
}
