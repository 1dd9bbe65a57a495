//! Property test of the log lifecycle: random keyed appends (tombstones, codecs), forced
//! compactions (tombstones kept or expired), crashes at random steps of a compaction swap,
//! retention by size, DeleteRecords and reopens, against a model of every record written.
//!
//! Checked after every step: the log end; the log start never goes back; every readable
//! record is one that was written at that offset; offsets increase; the latest record of
//! every key at or above the log start is readable unless it is a tombstone that expired,
//! and an expired tombstone never lets an older value of its key reappear.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::*;
use proptest::prelude::*;
use runnel_protocol::batch::Compression;
use runnel_storage::{CompactionConfig, LogConfig, OpenFiles, PartitionLog, RetentionConfig};

const NOW: i64 = 1_700_000_000_000;
const CODECS: [Compression; 5] =
    [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

#[derive(Debug, Clone)]
enum Op {
    /// One batch: (key index, value or tombstone), codec index.
    Append(Vec<(u8, Option<u16>)>, usize),
    /// Forced compaction; `expire` removes every tombstone.
    Compact { expire: bool },
    /// A compaction that crashes after step 0..4 of its swap (see `crash_at`).
    CrashCompact(u8),
    Retain(prop::sample::Index),
    DeleteRecords(prop::sample::Index),
    Reopen { clean: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (prop::collection::vec((0u8..6, prop::option::weighted(0.85, any::<u16>())), 1..5), 0usize..5)
            .prop_map(|(r, c)| Op::Append(r, c)),
        2 => any::<bool>().prop_map(|expire| Op::Compact { expire }),
        2 => (0u8..4).prop_map(Op::CrashCompact),
        1 => any::<prop::sample::Index>().prop_map(Op::Retain),
        1 => any::<prop::sample::Index>().prop_map(Op::DeleteRecords),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

/// Leaves the cleaned files of a compaction as a crash after `step` would: 0 written,
/// 1 committed (`.swap`), 2 replaced segments deleted, 3 swap renamed into place.
fn crash_at(dir: &Path, step: u8) {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    for name in names.iter().filter(|n| n.ends_with(".log.cleaned")) {
        if step == 0 {
            continue;
        }
        let (base, end) = name.strip_suffix(".log.cleaned").unwrap().split_once('-').unwrap();
        let (base, end): (i64, i64) = (base.parse().unwrap(), end.parse().unwrap());
        let swap = dir.join(name.replace(".cleaned", ".swap"));
        fs::rename(dir.join(name), &swap).unwrap();
        if step == 1 {
            continue;
        }
        for f in &names {
            let Some((stem, ext)) = f.split_once('.') else { continue };
            let Ok(b) = stem.parse::<i64>() else { continue };
            if stem.len() == 20 && (base..end).contains(&b) && (ext != "log" || b != base) {
                let _ = fs::remove_file(dir.join(f));
            }
        }
        if step == 3 {
            fs::rename(&swap, dir.join(format!("{base:020}.log"))).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn lifecycle_matches_model(segment_bytes in 150u64..600, ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { segment_bytes, index_interval_bytes: 64, ..LogConfig::default() };
        let keep_tombstones = CompactionConfig { delete_retention_ms: u64::MAX / 4, ..CompactionConfig::default() };
        let expire_tombstones = CompactionConfig { delete_retention_ms: 0, ..CompactionConfig::default() };
        // Two open segments at most: every step also runs with sealed segments closed and
        // their indexes dropped, then opened and loaded again.
        let files = OpenFiles::new(2);
        let mut log = Some(PartitionLog::open_with(dir.path(), cfg.clone(), &files).unwrap());
        // Every record written: offset -> (key, value).
        let mut written: BTreeMap<i64, (Vec<u8>, Option<Vec<u8>>)> = BTreeMap::new();
        // Keys whose tombstone may have expired, with the tombstone's offset.
        let mut expired: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        let mut start = 0i64;
        for op in ops {
            let l = log.as_mut().unwrap();
            match op {
                Op::Append(recs, codec) => {
                    let owned: Vec<(String, Option<String>)> =
                        recs.iter().map(|(k, v)| (format!("key-{k}"), v.map(|v| format!("value-{v}")))).collect();
                    let refs: Vec<(&str, Option<&str>)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
                    let info = append(l, &kv_batch(&refs, NOW, CODECS[codec]));
                    for (i, (k, v)) in owned.into_iter().enumerate() {
                        written.insert(info.base_offset + i as i64, (k.into_bytes(), v.map(String::into_bytes)));
                    }
                }
                Op::Compact { expire } => {
                    let c = if expire { &expire_tombstones } else { &keep_tombstones };
                    // Tombstones can only expire if compaction reaches them: remember the
                    // latest tombstones before the pass.
                    if expire {
                        for (k, (o, v)) in latest_of(&written) {
                            if v.is_none() { expired.insert(k, o); }
                        }
                    }
                    l.compact(c, NOW + 1000, true).unwrap();
                }
                Op::CrashCompact(step) => {
                    if let Some(job) = l.plan_compaction(&keep_tombstones, NOW + 1000, true) {
                        drop(job.run().unwrap());
                    }
                    drop(log.take());
                    crash_at(dir.path(), step);
                    log = Some(PartitionLog::open_with(dir.path(), cfg.clone(), &files).unwrap());
                }
                Op::Retain(i) => {
                    let limit = i.index(l.size_bytes() as usize + 1) as u64;
                    l.apply_retention(&RetentionConfig { retention_ms: None, retention_bytes: Some(limit) }, NOW).unwrap();
                }
                Op::DeleteRecords(i) => {
                    let lo = l.log_start_offset();
                    let offset = lo + i.index((l.log_end_offset() - lo + 1) as usize) as i64;
                    prop_assert_eq!(l.delete_records_before(offset).unwrap(), offset);
                }
                Op::Reopen { clean } => {
                    let l = log.take().unwrap();
                    if clean { l.close().unwrap() } else { drop(l) }
                    log = Some(PartitionLog::open_with(dir.path(), cfg.clone(), &files).unwrap());
                }
            }
            let l = log.as_ref().unwrap();
            prop_assert!(files.open_files() <= 2, "{} segment files open", files.open_files());
            let end = written.keys().next_back().map_or(0, |o| o + 1);
            prop_assert_eq!(l.log_end_offset(), end);
            prop_assert!(l.log_start_offset() >= start, "the log start went back");
            start = l.log_start_offset();
            let got = read_records(l, start);
            prop_assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "offsets increase");
            for (o, k, v) in &got {
                let w = written.get(o);
                prop_assert!(w.is_some_and(|(wk, wv)| Some(wk) == k.as_ref() && wv == v), "record at {} was not written so", o);
            }
            let read = latest_by_key(&got);
            for (k, (o, v)) in latest_of(&written) {
                if o < start {
                    continue;
                }
                match (&v, read.get(&k)) {
                    (_, Some((ro, rv))) => {
                        prop_assert_eq!((*ro, rv), (o, &v), "key {:?}: latest record", String::from_utf8_lossy(&k));
                    }
                    (None, None) => prop_assert!(expired.get(&k) == Some(&o), "tombstone of {:?} at {} gone too early", String::from_utf8_lossy(&k), o),
                    (Some(_), None) => prop_assert!(false, "latest value of {:?} at {} lost", String::from_utf8_lossy(&k), o),
                }
            }
        }
    }
}

/// Latest (offset, value) per key of everything written.
fn latest_of(written: &BTreeMap<i64, (Vec<u8>, Option<Vec<u8>>)>) -> BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> {
    let mut m = BTreeMap::new();
    for (o, (k, v)) in written {
        m.insert(k.clone(), (*o, v.clone()));
    }
    m
}
