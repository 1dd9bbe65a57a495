//! Opening a partition directory: the recovery-point checkpoint, the clean-shutdown
//! marker, stray-file cleanup, and loading segments so that the log ends on the last whole,
//! CRC-valid batch.
//!
//! Rules: a segment wholly below the recovery point (the next segment starts at or below
//! it), or any segment after a clean shutdown, is trusted; every other segment is scanned
//! with CRC checks. At the first torn or corrupt batch the segment is cut there; in an
//! unflushed segment that is a torn write and all later segments are deleted, in a trusted
//! one it is damage: only that segment is cut (the cut bytes kept as `.damaged-<pos>`) and
//! the later segments stay. An empty segment that does not chain (a roll that failed half
//! way) is deleted alone. Segments must chain: each starts at or after the offset
//! where the previous one ends (compaction leaves gaps, never overlaps).
//!
//! A compaction swap interrupted by a crash is finished or rolled back before segments are
//! loaded: a `<base>-<end>.log.swap` file is a committed cleaned segment that replaces every
//! segment with a base offset in `[base, end)`, so the replaced segments are deleted and the
//! swap file takes the name `<base>.log` (its indexes are rebuilt); a `.cleaned` file was
//! never committed and is deleted like any other temp file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::StorageError;
use crate::fsio;
use crate::open_files::OpenFiles;
use crate::segment::{segment_path, LoadOutcome, Segment, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT};
use crate::txn_index::TXN_INDEX_EXT;

/// The recovery checkpoint: offsets below it were fsynced.
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point";
/// Present only between a clean `close` and the next `open`.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
const TEMP_SUFFIXES: [&str; 5] = [".tmp", ".swap", ".deleted", ".cleaned", ".tmp-checkpoint"];

/// The log start checkpoint: offsets below it were deleted (retention, DeleteRecords).
pub(crate) const LOG_START_FILE: &str = "log-start-offset";
/// The cleaner checkpoint: offsets below it were compacted at least once.
pub(crate) const CLEANER_POINT_FILE: &str = "cleaner-offset";

/// Reads an offset checkpoint (`0\n<offset>\n`); `None` if missing or unreadable.
pub(crate) fn read_checkpoint(dir: &Path, name: &str) -> io::Result<Option<i64>> {
    match fs::read_to_string(dir.join(name)) {
        Ok(s) => {
            let mut lines = s.lines();
            let parsed = match (
                lines.next(),
                lines.next().and_then(|l| l.trim().parse::<i64>().ok()),
            ) {
                (Some("0"), Some(offset)) if offset >= 0 => Some(offset),
                _ => None,
            };
            if parsed.is_none() {
                tracing::warn!(dir = %dir.display(), file = name, "unreadable checkpoint; ignoring it");
            }
            Ok(parsed)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes an offset checkpoint atomically: temp file, fsync, rename, fsync the directory.
pub(crate) fn write_checkpoint(dir: &Path, name: &str, offset: i64) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = fsio::create(&tmp)?;
        fsio::write_all(&mut f, format!("0\n{offset}\n").as_bytes())?;
        fsio::sync_all(&f)?;
    }
    fsio::rename(&tmp, &dir.join(name))?;
    sync_dir(dir)
}

/// Reads the recovery point; a missing or unreadable checkpoint means "trust nothing".
pub(crate) fn read_recovery_point(dir: &Path) -> io::Result<i64> {
    Ok(read_checkpoint(dir, RECOVERY_POINT_FILE)?.unwrap_or(0))
}

/// Writes the recovery point atomically.
pub(crate) fn write_recovery_point(dir: &Path, offset: i64) -> io::Result<()> {
    write_checkpoint(dir, RECOVERY_POINT_FILE, offset)
}

/// Writes the recovery point by temp file and rename, without an fsync: for a batch whose
/// caller makes the filesystem durable afterwards ([`crate::fsio::sync_filesystem`]). A crash
/// before that leaves the old checkpoint, or one that reads as missing (trust nothing).
pub(crate) fn write_recovery_point_unsynced(dir: &Path, offset: i64) -> io::Result<()> {
    let tmp = dir.join(format!("{RECOVERY_POINT_FILE}.tmp"));
    {
        let mut f = fsio::create(&tmp)?;
        fsio::write_all(&mut f, format!("0\n{offset}\n").as_bytes())?;
    }
    fsio::rename(&tmp, &dir.join(RECOVERY_POINT_FILE))
}

/// `<base>-<end>.log.<suffix>`: a cleaned segment replacing the segments in `[base, end)`.
pub(crate) fn swap_path(dir: &Path, base: i64, end: i64, suffix: &str) -> PathBuf {
    dir.join(swap_name(base, end, suffix))
}

/// The file name of [`swap_path`].
pub(crate) fn swap_name(base: i64, end: i64, suffix: &str) -> String {
    format!("{base:020}-{end:020}.{LOG_EXT}.{suffix}")
}

fn parse_swap_name(name: &str) -> Option<(i64, i64)> {
    let stem = name.strip_suffix(&format!(".{LOG_EXT}.swap"))?;
    let (base, end) = stem.split_once('-')?;
    (base.len() == 20 && end.len() == 20).then_some(())?;
    Some((base.parse().ok()?, end.parse().ok()?))
}

/// Makes the committed swap `<base>-<end>.log.swap` the segment `<base>.log`: deletes the
/// indexes of every segment in `[base, end)` and the logs of all but `<base>.log`, then
/// renames the swap file over `<base>.log` and fsyncs the directory. Idempotent: a crash
/// at any step leaves the swap file in place, and running it again finishes the job.
pub(crate) fn complete_swap(dir: &Path, base: i64, end: i64) -> io::Result<()> {
    let mut replaced_bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some((stem, ext)) = name.to_str().and_then(|n| n.split_once('.')) else { continue };
        match stem.parse::<i64>() {
            Ok(b) if stem.len() == 20 && ext == LOG_EXT && b != base && (base..end).contains(&b) => replaced_bases.push(b),
            _ => {}
        }
    }
    // The aborted transactions of the replaced segments stay readable from the new one.
    crate::txn_index::merge_into(dir, base, &replaced_bases)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let Some(b) = (stem.len() == 20).then(|| stem.parse::<i64>().ok()).flatten() else {
            continue;
        };
        let replaced = (base..end).contains(&b);
        let doomed = match ext {
            INDEX_EXT | TIME_INDEX_EXT => replaced,
            LOG_EXT => replaced && b != base,
            _ => false,
        };
        if doomed {
            fsio::remove_file(&entry.path())?;
        }
    }
    sync_dir(dir)?;
    fsio::rename(&swap_path(dir, base, end, "swap"), &segment_path(dir, base, LOG_EXT))?;
    sync_dir(dir)
}

/// Finishes every committed swap found in `dir` (see the module docs).
fn finish_swaps(dir: &Path) -> io::Result<()> {
    let mut swaps = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(range) = name.to_str().and_then(parse_swap_name) {
            swaps.push(range);
        }
    }
    swaps.sort_unstable();
    for (base, end) in swaps {
        tracing::info!(dir = %dir.display(), base, end, "finishing an interrupted compaction swap");
        complete_swap(dir, base, end)?;
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fsio::sync_dir(dir)
}

/// Lists segment base offsets (sorted) and deletes temp files and orphan indexes.
fn scan_dir(dir: &Path) -> io::Result<Vec<i64>> {
    let mut bases = Vec::new();
    let mut index_files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if TEMP_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            tracing::info!(file = name, "deleting stray file");
            fsio::remove_file(&entry.path())?;
            continue;
        }
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let Some(base) = (stem.len() == 20)
            .then(|| stem.parse::<i64>().ok())
            .flatten()
        else {
            continue;
        };
        match ext {
            LOG_EXT => bases.push(base),
            INDEX_EXT | TIME_INDEX_EXT | TXN_INDEX_EXT => index_files.push((base, entry.path())),
            _ => {}
        }
    }
    bases.sort_unstable();
    for (base, path) in index_files {
        if bases.binary_search(&base).is_err() {
            tracing::info!(file = %path.display(), "deleting index without a log");
            fsio::remove_file(&path)?;
        }
    }
    Ok(bases)
}

/// Loads the partition directory (creating it if missing). Returns the segments (never
/// empty) and the recovery point, capped at the log end offset.
/// Every segment but the last comes back sealed, its index entries evictable (see
/// [`crate::open_files`]).
pub(crate) fn load(dir: &Path, index_interval: u64, files: &Arc<OpenFiles>) -> Result<(Vec<Segment>, i64), StorageError> {
    if !dir.exists() {
        // A new partition dir must survive a power loss with its parent's entry.
        fs::create_dir_all(dir)?;
        sync_dir(dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    finish_swaps(dir)?;
    let bases = scan_dir(dir)?;
    let recovery_point = read_recovery_point(dir)?;
    let clean_marker = dir.join(CLEAN_SHUTDOWN_FILE);
    let clean = clean_marker.exists();
    if clean {
        fsio::remove_file(&clean_marker)?;
        sync_dir(dir)?;
    }
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        let chained = !matches!(segments.last(), Some(prev) if prev.next_offset() > base);
        if !chained && fs::metadata(segment_path(dir, base, LOG_EXT))?.len() == 0 {
            // An empty segment left by a roll that failed half way: it holds nothing.
            tracing::info!(dir = %dir.display(), base, "deleting an empty segment inside the log");
            delete_from(dir, &[base])?;
            continue;
        }
        if !chained {
            tracing::warn!(dir = %dir.display(), base, "segment does not continue the log; deleting it and later segments");
            delete_from(dir, &bases[i..])?;
            break;
        }
        let trusted = clean || bases.get(i + 1).is_some_and(|&next| next <= recovery_point);
        let (segment, outcome) = Segment::load(dir, base, trusted, index_interval, files)?;
        if let Some(prev) = segments.last_mut() {
            prev.seal();
        }
        segments.push(segment);
        if outcome == LoadOutcome::Truncated && trusted && i + 1 < bases.len() {
            // Damage inside flushed data is not a torn write: cut only this segment (its
            // cut bytes are kept aside) and keep every later segment; offsets may gap.
            tracing::error!(dir = %dir.display(), base, "a flushed segment was damaged; cut it at the damage and kept the later segments");
            continue;
        }
        if outcome == LoadOutcome::Truncated {
            delete_from(dir, &bases[i + 1..])?;
            break;
        }
    }
    if segments.is_empty() {
        segments.push(Segment::create(dir, 0, files)?);
    }
    let log_end = segments.last().map_or(0, Segment::next_offset);
    Ok((segments, recovery_point.min(log_end)))
}

fn delete_from(dir: &Path, bases: &[i64]) -> io::Result<()> {
    for &base in bases {
        for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT, TXN_INDEX_EXT] {
            match fsio::remove_file(&segment_path(dir, base, ext)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_recovery_point(dir.path()).unwrap(), 0);
        write_recovery_point(dir.path(), 1234).unwrap();
        assert_eq!(read_recovery_point(dir.path()).unwrap(), 1234);
        fs::write(dir.path().join(RECOVERY_POINT_FILE), "nonsense").unwrap();
        assert_eq!(read_recovery_point(dir.path()).unwrap(), 0);
    }

    #[test]
    fn strays_orphans_and_unchained_segments_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let recs = vec![runnel_protocol::batch::NewRecord::default(); 60];
        fs::write(
            segment_path(d, 0, LOG_EXT),
            runnel_protocol::batch::encode_batch(0, 0, &recs),
        )
        .unwrap();
        let files = OpenFiles::new(16);
        Segment::create(d, 50, &files).unwrap(); // overlaps the first segment (offsets 0..60)
        fs::write(d.join("00000000000000000009.index"), [0u8; 8]).unwrap();
        fs::write(d.join("00000000000000000000.log.swap"), b"x").unwrap();
        fs::write(d.join("recovery-point.tmp"), b"x").unwrap();
        let (segments, rp) = load(d, 4096, &files).unwrap();
        assert_eq!((segments.len(), rp), (1, 0));
        assert_eq!(segments[0].next_offset(), 60);
        let mut names: Vec<_> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "00000000000000000000.index",
                "00000000000000000000.log",
                "00000000000000000000.timeindex"
            ]
        );
    }
}
