//! The metadata log seam and its single-node implementation: a local append-only file.
//!
//! File format: a sequence of frames `[len: u32 BE][crc32c(payload): u32 BE][payload]`,
//! the payload a JSON-encoded [`MetadataRecord`]. Every append is fsynced before it
//! returns (metadata changes are rare and must not be lost).
//!
//! The metadata log decides what data exists, so damage to it is never repaired by guessing:
//! - an append that fails (a short write on a full disk, a failed fsync) is rolled back:
//!   the file is cut to the last good frame before the error is returned; if even that
//!   fails, the log refuses every later append (a record written after garbage would be
//!   lost at the next open);
//! - on open, a torn last frame (no intact frame follows it) was never acknowledged and is
//!   cut off; a bad frame followed by intact frames is corruption in the middle of the
//!   log, and open fails with [`MetadataError::Corrupt`] naming the byte position.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::{MetadataError, MetadataRecord};

/// Where metadata records are made durable. Contract: when `append` returns `Ok`, the
/// record is durable and will be among the records replayed at the next open, in order.
/// After an error, the record may or may not be durable; the caller must not apply it.
pub trait MetadataLog {
    fn append(&mut self, record: &MetadataRecord) -> Result<(), MetadataError>;
}

/// The metadata log of a single node: one file, `metadata.log`, in the metadata dir.
pub struct LocalMetadataLog {
    file: File,
    path: PathBuf,
    /// Length of the intact frames: where the next frame goes.
    len: u64,
    /// Set when a failed append could not be rolled back.
    broken: bool,
    /// Test hook: the next append writes only this many bytes, then fails.
    #[cfg(test)]
    fail_next_after: Option<usize>,
}

const FILE_NAME: &str = "metadata.log";
/// Frame header: length and CRC.
const FRAME_HEADER: usize = 8;

impl LocalMetadataLog {
    /// Opens the log in `dir` (creating both if needed) and returns the records in it.
    pub fn open(dir: &Path) -> Result<(Self, Vec<MetadataRecord>), MetadataError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            sync_parent(dir)?;
        }
        let path = dir.join(FILE_NAME);
        let created = !path.exists();
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        if created {
            File::open(dir)?.sync_all()?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, valid_len) = parse_frames(&bytes).map_err(|(position, reason)| {
            MetadataError::Corrupt { path: path.clone(), position, reason }
        })?;
        if valid_len < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                kept = valid_len,
                dropped = bytes.len() - valid_len,
                "metadata log ends in a torn frame (never acknowledged); truncating it"
            );
            file.set_len(valid_len as u64)?;
            file.sync_all()?;
        }
        let log = Self {
            file,
            path,
            len: valid_len as u64,
            broken: false,
            #[cfg(test)]
            fail_next_after: None,
        };
        Ok((log, records))
    }

    fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(n) = self.fail_next_after.take() {
            self.file.write_all(&frame[..n.min(frame.len())])?;
            return Err(std::io::Error::other("injected short write"));
        }
        self.file.write_all(frame)?;
        self.file.sync_data()
    }
}

impl MetadataLog for LocalMetadataLog {
    fn append(&mut self, record: &MetadataRecord) -> Result<(), MetadataError> {
        if self.broken {
            return Err(MetadataError::Broken(self.path.clone()));
        }
        let payload = serde_json::to_vec(record)?;
        let mut frame = Vec::with_capacity(payload.len() + FRAME_HEADER);
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        frame.extend_from_slice(&payload);
        if let Err(e) = self.write_frame(&frame) {
            // Cut back to the last good frame, so a later append never follows garbage.
            let rolled_back = self.file.set_len(self.len).and_then(|()| self.file.sync_all());
            if let Err(r) = rolled_back {
                tracing::error!(path = %self.path.display(), error = %r, "could not roll back a failed metadata append; refusing further appends");
                self.broken = true;
            }
            return Err(e.into());
        }
        self.len += frame.len() as u64;
        Ok(())
    }
}

/// fsyncs the parent of `dir`, so that a newly created `dir` survives a power loss.
fn sync_parent(dir: &Path) -> std::io::Result<()> {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => File::open(p)?.sync_all(),
        _ => Ok(()),
    }
}

/// The intact frame at `pos`, if there is one: its record and total length.
fn frame_at(bytes: &[u8], pos: usize) -> Result<(MetadataRecord, usize), String> {
    let rest = &bytes[pos..];
    if rest.len() < FRAME_HEADER {
        return Err(format!("{} bytes, less than a frame header", rest.len()));
    }
    let len = u32::from_be_bytes(rest[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_be_bytes(rest[4..8].try_into().unwrap());
    let Some(payload) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Err(format!("frame of {len} bytes runs past the end of the file"));
    };
    if crc32c::crc32c(payload) != crc {
        return Err("CRC mismatch".into());
    }
    let record = serde_json::from_slice(payload).map_err(|e| format!("intact frame does not hold a known record: {e}"))?;
    Ok((record, FRAME_HEADER + len))
}

/// True if an intact frame starts anywhere after `pos`: then a bad frame at `pos` is not a
/// torn tail but damage in the middle of the log.
fn intact_frame_after(bytes: &[u8], pos: usize) -> bool {
    (pos + 1..bytes.len().saturating_sub(FRAME_HEADER)).any(|q| {
        // Cheap filter first: every payload is a JSON object.
        bytes[q + FRAME_HEADER] == b'{' && frame_at(bytes, q).is_ok()
    })
}

/// Parses the frames; returns the records and the length of the valid prefix (shorter than
/// `bytes` only for a torn tail), or `(position, reason)` of corruption in the middle.
fn parse_frames(bytes: &[u8]) -> Result<(Vec<MetadataRecord>, usize), (u64, String)> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match frame_at(bytes, pos) {
            Ok((record, len)) => {
                records.push(record);
                pos += len;
            }
            Err(reason) => {
                let crc_ok_but_unknown = reason.starts_with("intact frame");
                if crc_ok_but_unknown || intact_frame_after(bytes, pos) {
                    return Err((pos as u64, reason));
                }
                break;
            }
        }
    }
    Ok((records, pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn create(name: &str) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: name.into(),
            topic_id: uuid::Uuid::new_v4(),
            partitions: 2,
            configs: BTreeMap::new(),
        }
    }

    fn names(records: &[MetadataRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| match r {
                MetadataRecord::CreateTopic { name, .. } => name.clone(),
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn replays_in_order_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, records) = LocalMetadataLog::open(dir.path()).unwrap();
            assert!(records.is_empty());
            log.append(&create("a")).unwrap();
            log.append(&create("b")).unwrap();
        }
        let path = dir.path().join(FILE_NAME);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 5).unwrap();
        let (mut log, records) = LocalMetadataLog::open(dir.path()).unwrap();
        assert_eq!(records.len(), 1);
        log.append(&create("c")).unwrap();
        let (_, records) = LocalMetadataLog::open(dir.path()).unwrap();
        assert_eq!(names(&records), ["a", "c"]);
    }

    #[test]
    fn a_failed_append_is_rolled_back_and_later_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = LocalMetadataLog::open(dir.path()).unwrap();
        log.append(&create("a")).unwrap();
        log.fail_next_after = Some(11);
        assert!(log.append(&create("lost")).is_err());
        log.append(&create("b")).unwrap();
        drop(log);
        let (_, records) = LocalMetadataLog::open(dir.path()).unwrap();
        assert_eq!(names(&records), ["a", "b"]);
    }

    #[test]
    fn corruption_in_the_middle_stops_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _) = LocalMetadataLog::open(dir.path()).unwrap();
            for n in ["a", "b", "c"] {
                log.append(&create(n)).unwrap();
            }
        }
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let first_len = FRAME_HEADER + u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
        bytes[first_len + 20] ^= 0x04; // one flipped bit in the second record
        std::fs::write(&path, &bytes).unwrap();
        let err = LocalMetadataLog::open(dir.path()).err().expect("corruption must stop open");
        let msg = err.to_string();
        assert!(msg.contains(&format!("byte {first_len}")), "{msg}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing may be cut");
        // A flipped length field in the middle is caught too.
        bytes[first_len + 20] ^= 0x04;
        bytes[first_len] = 0x7f;
        std::fs::write(&path, &bytes).unwrap();
        assert!(LocalMetadataLog::open(dir.path()).is_err());
    }

    fn frame(record: &MetadataRecord) -> Vec<u8> {
        let payload = serde_json::to_vec(record).unwrap();
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        f.extend_from_slice(&payload);
        f
    }

    proptest::proptest! {
        // The metadata-log parser's fuzz test on stable Rust: a real log, mutated (bytes
        // flipped, inserted, removed, cut), parses to records, a torn tail or a refusal,
        // never a panic; a valid prefix it reports parses again to the same records.
        #![proptest_config(proptest::test_runner::Config { cases: 512, ..Default::default() })]

        #[test]
        fn mutated_metadata_logs_never_panic(
            n in 1usize..6,
            edits in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>(), 0u8..4), 0..6),
        ) {
            let mut bytes: Vec<u8> = (0..n).flat_map(|i| frame(&create(&format!("t{i}")))).collect();
            for (at, x, kind) in edits {
                let at = at % bytes.len().max(1);
                match kind {
                    0 if !bytes.is_empty() => bytes[at] ^= x | 1,
                    1 => bytes.insert(at, x),
                    2 if !bytes.is_empty() => { bytes.remove(at); }
                    _ => bytes.truncate(at),
                }
            }
            if let Ok((records, valid)) = parse_frames(&bytes) {
                proptest::prop_assert!(valid <= bytes.len());
                let again = parse_frames(&bytes[..valid]).map_err(|e| e.1);
                proptest::prop_assert_eq!(again.map(|(r, v)| (r.len(), v)), Ok((records.len(), valid)));
            }
        }

        #[test]
        fn junk_metadata_logs_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_frames(&bytes);
        }
    }
}
