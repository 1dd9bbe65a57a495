//! Kafka's offset checkpoint files, one per data directory: `replication-offset-checkpoint`
//! keeps each replica's high watermark, so that a restarted broker starts from the high
//! watermark it had rather than from its log start (consumers of a restarted leader do not
//! see the high watermark go back, and a follower whose log has no leader epochs cuts only
//! what is above it). Written whole, periodically and at a clean stop; read at start.
//!
//! File format (Kafka's `CheckpointFile`): a version line (`0`), an entry count, then
//! `topic partition offset` per line. Rewritten whole (temp file, fsync, rename, fsync
//! dir), like the leader-epoch checkpoint ([`write_durably`]). Blocking I/O: call it off
//! async workers.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// The high watermark checkpoint's file name in a data directory.
pub const REPLICATION_OFFSET_CHECKPOINT: &str = "replication-offset-checkpoint";

/// (topic, partition) → offset.
pub type Offsets = BTreeMap<(String, i32), i64>;

/// Reads a checkpoint file: none is empty; one that does not parse is an error (the
/// caller decides: a high watermark checkpoint can be ignored, it only saves work).
pub fn read(path: &Path) -> io::Result<Offsets> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Offsets::new()),
        Err(e) => return Err(e),
    };
    parse(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{}: not an offset checkpoint", path.display())))
}

/// Replaces the checkpoint file with `offsets`.
pub fn write(path: &Path, offsets: &Offsets) -> io::Result<()> {
    let mut text = format!("0\n{}\n", offsets.len());
    for ((topic, partition), offset) in offsets {
        text.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    write_durably(path, &text)
}

/// Writes `text` as the whole of `path`: to a temp file, fsynced, renamed over `path`, and
/// the directory fsynced, so a crash leaves the old file or the new one.
pub(crate) fn write_durably(path: &Path, text: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn parse(text: &str) -> Option<Offsets> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut out = Offsets::new();
    for line in lines.take(count) {
        // Topic names have no spaces (Kafka's legal characters), so split from the right.
        let mut parts = line.trim().rsplitn(3, ' ');
        let offset: i64 = parts.next()?.parse().ok()?;
        let partition: i32 = parts.next()?.parse().ok()?;
        let topic = parts.next()?;
        if topic.is_empty() {
            return None;
        }
        out.insert((topic.to_string(), partition), offset);
    }
    (out.len() == count).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REPLICATION_OFFSET_CHECKPOINT);
        assert!(read(&path).unwrap().is_empty(), "no file: nothing checkpointed");
        let offsets = Offsets::from([(("orders".to_string(), 0), 42), (("__consumer_offsets".to_string(), 7), 3)]);
        write(&path, &offsets).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "0\n2\n__consumer_offsets 7 3\norders 0 42\n");
        assert_eq!(read(&path).unwrap(), offsets);
        fs::write(&path, "0\n2\norders 0 42\n").unwrap();
        assert!(read(&path).is_err(), "a short file is refused");
        fs::write(&path, "1\n0\n").unwrap();
        assert!(read(&path).is_err(), "an unknown version is refused");
    }
}
