//! Unit tests of segment append, lookup, truncation and loading.

use super::*;
use runnel_protocol::batch::{encode_batch, NewRecord};

fn batch_at(base: i64, n: usize, ts: i64) -> Vec<u8> {
    let recs: Vec<NewRecord> = (0..n)
        .map(|i| NewRecord {
            timestamp: ts + i as i64,
            value: Some(b"v"),
            ..Default::default()
        })
        .collect();
    encode_batch(base, 0, &recs)
}

fn append(seg: &mut Segment, base: i64, n: usize, ts: i64) -> Vec<u8> {
    let b = batch_at(base, n, ts);
    let metas: Vec<_> = batch::batches(&b).map(Result::unwrap).collect();
    seg.append(&b, &metas, 1).unwrap();
    b
}

#[test]
fn append_find_truncate_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = Segment::create(dir.path(), 10, &OpenFiles::new(16)).unwrap();
    let a = append(&mut seg, 10, 3, 100);
    append(&mut seg, 13, 2, 50);
    append(&mut seg, 15, 1, 200);
    assert_eq!(
        (seg.next_offset(), seg.offset_index.entries().len()),
        (16, 2)
    );
    assert_eq!(
        seg.time_index.entries().len(),
        2,
        "only increasing max timestamps are indexed"
    );
    assert_eq!(
        seg.find_batch(14).unwrap().map(|(p, h)| (p, h.base_offset)),
        Some((a.len() as u64, 13))
    );
    assert!(seg.find_batch(16).unwrap().is_none() && seg.find_batch(9).unwrap().is_none());
    assert_eq!(seg.offset_for_timestamp(101).unwrap(), Some((11, 101)));
    assert_eq!(seg.offset_for_timestamp(103).unwrap(), Some((15, 200)));
    assert_eq!(seg.max_timestamp().unwrap(), Some((200, 15)));

    let (loaded, outcome) = Segment::load(dir.path(), 10, true, 1, &OpenFiles::new(16)).unwrap();
    assert_eq!(
        (loaded.next_offset(), loaded.size(), outcome),
        (16, seg.size(), LoadOutcome::Clean)
    );
    assert_eq!(loaded.offset_index.entries(), seg.offset_index.entries());

    seg.truncate_to(14).unwrap();
    assert_eq!(
        (
            seg.next_offset(),
            seg.offset_index.entries().len(),
            seg.time_index.entries().len()
        ),
        (13, 0, 1)
    );
    let (rebuilt, _) = Segment::load(dir.path(), 10, false, 1, &OpenFiles::new(16)).unwrap();
    assert_eq!(
        (rebuilt.next_offset(), rebuilt.size()),
        (13, a.len() as u64)
    );
}

#[test]
fn untrusted_load_cuts_at_offset_overlap_and_keeps_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = Segment::create(dir.path(), 0, &OpenFiles::new(16)).unwrap();
    let a = append(&mut seg, 0, 2, 1);
    // A CRC-valid batch that goes back in offsets is not part of the log.
    let stray = batch_at(1, 1, 1);
    seg.file().unwrap().write_all_at(&stray, a.len() as u64).unwrap();
    let (seg, outcome) = Segment::load(dir.path(), 0, false, 1, &OpenFiles::new(16)).unwrap();
    assert_eq!(
        (seg.next_offset(), seg.size(), outcome),
        (2, a.len() as u64, LoadOutcome::Truncated)
    );
    // A gap (as compaction leaves) is fine.
    let later = batch_at(7, 1, 1);
    seg.file().unwrap().write_all_at(&later, a.len() as u64).unwrap();
    let (seg, outcome) = Segment::load(dir.path(), 0, false, 1, &OpenFiles::new(16)).unwrap();
    assert_eq!(
        (seg.next_offset(), seg.size(), outcome),
        (8, (a.len() + later.len()) as u64, LoadOutcome::Clean)
    );
    assert_eq!(seg.find_batch(3).unwrap().unwrap().1.base_offset, 7);
}

#[test]
fn garbage_reads_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(segment_path(dir.path(), 0, LOG_EXT), [0xffu8; 100]).unwrap();
    let (seg, outcome) = Segment::load(dir.path(), 0, true, 1, &OpenFiles::new(16)).unwrap();
    assert_eq!((seg.size(), outcome), (0, LoadOutcome::Truncated));
    assert!(seg.read_header(0).is_err());
}

/// A sealed segment gives up its descriptor and its index entries when the cache of open
/// segments needs room, and loads them again at its next use, with the same answers; a
/// truncation makes it active again with its entries back.
#[test]
fn a_sealed_segment_closed_by_the_cache_answers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let files = OpenFiles::new(1);
    let mut seg = Segment::create(dir.path(), 10, &files).unwrap();
    let a = append(&mut seg, 10, 3, 100);
    append(&mut seg, 13, 2, 50);
    append(&mut seg, 15, 1, 200);
    let answers = |seg: &Segment| {
        (
            seg.find_batch(14).unwrap().map(|(p, h)| (p, h.base_offset)),
            seg.offset_for_timestamp(101).unwrap(),
            seg.indexed_boundary(0, seg.size()),
            seg.max_timestamp().unwrap(),
        )
    };
    let before = answers(&seg);
    assert_eq!(before.0, Some((a.len() as u64, 13)));
    seg.seal();
    assert!(seg.offset_index.entries().is_empty(), "a sealed segment's entries live in the cache");
    let active = Segment::create(dir.path(), 100, &files).unwrap();
    assert_eq!((files.open_files(), files.cached_segments()), (1, 1), "the sealed segment was closed for the new one");
    assert_eq!(answers(&seg), before);
    assert_eq!(files.reloads(), (1, 1), "its file opened again once and its indexes read once");
    assert_eq!(files.open_files(), 1, "the idle active segment was closed in turn");
    assert_eq!(active.file().unwrap().metadata().unwrap().len(), 0);
    assert_eq!(files.reloads().0, 2);

    seg.truncate_to(14).unwrap();
    assert_eq!((seg.next_offset(), seg.offset_index.entries().len(), seg.time_index.entries().len()), (13, 0, 1));
}

/// The positions of the latest batches answer exactly as the file scan does (a segment
/// loaded from the same files has none remembered), for every offset, with more batches
/// than are remembered, several batches in one append, and after a cut.
#[test]
fn remembered_batch_positions_answer_as_the_file_scan() {
    let dir = tempfile::tempdir().unwrap();
    let files = OpenFiles::new(16);
    let mut seg = Segment::create(dir.path(), 0, &files).unwrap();
    let mut next = 0;
    let mut sizes = (1..=7).cycle();
    let check = |seg: &Segment| {
        let (scanned, _) = Segment::load(dir.path(), 0, true, 4096, &OpenFiles::new(16)).unwrap();
        assert!(scanned.recent.is_empty());
        let mut hits = 0;
        for offset in 0..seg.next_offset() + 2 {
            let found = seg.find_batch(offset).unwrap().map(|(p, h)| (p, h.base_offset));
            assert_eq!(found, scanned.find_batch(offset).unwrap().map(|(p, h)| (p, h.base_offset)), "offset {offset}");
            assert_eq!(seg.find_position(offset).unwrap(), found.map(|(p, _)| p), "offset {offset}");
            hits += usize::from(seg.recent_position(offset).is_some());
        }
        hits
    };
    for _ in 0..(RECENT_BATCHES + 40) {
        let n = sizes.next().unwrap();
        append(&mut seg, next, n, 1000 + next);
        next += n as i64;
    }
    // Two batches in one append.
    let mut two = batch_at(next, 3, 5000);
    two.extend(batch_at(next + 3, 2, 5003));
    let metas: Vec<_> = batch::batches(&two).map(Result::unwrap).collect();
    seg.append(&two, &metas, 4096).unwrap();
    assert_eq!(seg.recent.len(), RECENT_BATCHES);
    let hits = check(&seg);
    assert!(hits > RECENT_BATCHES, "the latest batches are found without a scan ({hits} offsets)");
    // A cut forgets them; later appends are remembered again.
    seg.truncate_to(next - 10).unwrap();
    assert!(seg.recent.is_empty());
    let end = seg.next_offset();
    append(&mut seg, end, 4, 9000);
    assert_eq!(seg.recent.len(), 1);
    check(&seg);
}
