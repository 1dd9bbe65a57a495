//! Property test: random appends, reopens (clean or crashed), torn tails, truncations and
//! flushes, checked against an in-memory model of the batches.

mod common;

use std::fs;

use common::*;
use proptest::prelude::*;
use runnel_protocol::batch::BatchHeader;
use runnel_storage::{LogConfig, OpenFiles, PartitionLog};

#[derive(Debug, Clone)]
enum Op {
    /// One append of several batches: (records, value bytes) each.
    Append(Vec<(usize, usize)>),
    Reopen {
        clean: bool,
    },
    /// Crash, then cut this many bytes (bounded by the last segment) off the last segment.
    TearTail(usize),
    Truncate(prop::sample::Index),
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((1usize..5, 0usize..80), 1..4).prop_map(Op::Append),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => (1usize..150).prop_map(Op::TearTail),
        1 => any::<prop::sample::Index>().prop_map(Op::Truncate),
        1 => Just(Op::Flush),
    ]
}

fn last_log_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

fn end_of(model: &[Vec<u8>]) -> i64 {
    model
        .last()
        .map_or(0, |b| BatchHeader::parse(b).unwrap().last_offset() + 1)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(segment_bytes in 100u64..700, interval in 0u64..200, ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { segment_bytes, index_interval_bytes: interval, ..LogConfig::default() };
        // Two open segments at most: every step also runs with sealed segments closed and
        // their indexes dropped, then opened and loaded again.
        let files = OpenFiles::new(2);
        let mut log = Some(PartitionLog::open_with(dir.path(), cfg.clone(), &files).unwrap());
        let mut model: Vec<Vec<u8>> = Vec::new();
        for op in ops {
            let l = log.as_mut().unwrap();
            match op {
                Op::Append(specs) => {
                    let mut bytes: Vec<u8> = specs.iter().flat_map(|&(n, v)| batch(n, v)).collect();
                    let info = l.append(&mut bytes).unwrap();
                    prop_assert_eq!(info.base_offset, end_of(&model));
                    model.extend(runnel_protocol::batch::batches(&bytes).map(|b| bytes[b.unwrap().1].to_vec()));
                    prop_assert_eq!(info.last_offset + 1, end_of(&model));
                }
                Op::Reopen { clean } => {
                    let l = log.take().unwrap();
                    if clean { l.close().unwrap() } else { drop(l) }
                    log = Some(PartitionLog::open_with(dir.path(), cfg.clone(), &files).unwrap());
                }
                Op::TearTail(cut) => {
                    drop(log.take());
                    let path = last_log_file(dir.path());
                    let size = fs::metadata(&path).unwrap().len() as usize;
                    let cut = cut.min(size);
                    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len((size - cut) as u64).unwrap();
                    // Segments partition the batch sequence, so the cut removes the last
                    // `cut` bytes of the whole log: keep the batches that end before it.
                    let keep = model.iter().map(Vec::len).sum::<usize>() - cut;
                    while model.iter().map(Vec::len).sum::<usize>() > keep {
                        model.pop();
                    }
                    log = Some(PartitionLog::open_with(dir.path(), cfg.clone(), &files).unwrap());
                }
                Op::Truncate(i) => {
                    let offset = i.index(end_of(&model) as usize + 1) as i64;
                    l.truncate_to(offset).unwrap();
                    while model.last().is_some_and(|b| BatchHeader::parse(b).unwrap().last_offset() >= offset) {
                        model.pop();
                    }
                }
                Op::Flush => l.flush().unwrap(),
            }
            let l = log.as_ref().unwrap();
            prop_assert!(files.open_files() <= 2, "{} segment files open", files.open_files());
            prop_assert_eq!(l.log_end_offset(), end_of(&model));
            prop_assert_eq!(l.log_start_offset(), 0);
            let all: Vec<u8> = model.concat();
            prop_assert_eq!(&read_all(l, 0), &all);
            prop_assert_eq!(l.size_bytes(), model.iter().map(Vec::len).sum::<usize>() as u64);
            let budget = all.len() / 3;
            let mut expect = Vec::new();
            for b in &model {
                if !expect.is_empty() && expect.len() + b.len() > budget { break; }
                expect.extend_from_slice(b);
            }
            prop_assert_eq!(l.read(0, budget, true).unwrap().read_to_vec().unwrap(), expect);
            if let Some(b) = model.get(model.len() / 2) {
                let h = BatchHeader::parse(b).unwrap();
                let got = l.read(h.last_offset(), 1, true).unwrap().read_to_vec().unwrap();
                prop_assert_eq!(&got, b);
            }
        }
    }
}
