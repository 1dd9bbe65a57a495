//! The metadata log seam and its single-node implementation: a local append-only file.
//!
//! File format: a sequence of frames `[len: u32 BE][crc32c(payload): u32 BE][payload]`,
//! the payload a JSON-encoded [`MetadataRecord`]. Every append is fsynced before it
//! returns (metadata changes are rare and must not be lost). On open, a torn or
//! CRC-failing tail is cut off: it was never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

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
}

const FILE_NAME: &str = "metadata.log";

impl LocalMetadataLog {
    /// Opens the log in `dir` (creating both if needed) and returns the records in it.
    pub fn open(dir: &Path) -> Result<(Self, Vec<MetadataRecord>), MetadataError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, valid_len) = parse_frames(&bytes);
        if valid_len < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                kept = valid_len,
                dropped = bytes.len() - valid_len,
                "metadata log had a torn or corrupt tail; truncating it"
            );
            file.set_len(valid_len as u64)?;
            file.sync_all()?;
        }
        Ok((Self { file }, records))
    }
}

impl MetadataLog for LocalMetadataLog {
    fn append(&mut self, record: &MetadataRecord) -> Result<(), MetadataError> {
        let payload = serde_json::to_vec(record)?;
        let mut frame = Vec::with_capacity(payload.len() + 8);
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        frame.extend_from_slice(&payload);
        self.file.write_all(&frame)?;
        self.file.sync_data()?;
        Ok(())
    }
}

/// Parses whole, intact frames; returns them and the length of the valid prefix.
fn parse_frames(bytes: &[u8]) -> (Vec<MetadataRecord>, usize) {
    let mut records = Vec::new();
    let mut pos = 0;
    while bytes.len() - pos >= 8 {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().unwrap());
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else { break };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let Ok(record) = serde_json::from_slice(payload) else { break };
        records.push(record);
        pos += 8 + len;
    }
    (records, pos)
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
        let names: Vec<_> = records
            .iter()
            .map(|r| match r {
                MetadataRecord::CreateTopic { name, .. } => name.clone(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(names, ["a", "c"]);
    }
}
