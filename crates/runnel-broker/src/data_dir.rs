//! The data dir's layout and its guard rails: `meta.properties`, partition directories
//! (`<topic>-<partition>`, each with a `partition.metadata` file naming its topic id, as
//! Kafka writes it), and the startup sweep that decides what every directory is.
//!
//! Nothing is deleted on a guess: only a directory whose topic id a committed DeleteTopic
//! names (or a `*-delete` dir, renamed after such a commit) is removed. A directory the
//! metadata does not know is quarantined: renamed to `<name>.<uuid>-stray` (Kafka's
//! suffix for stray logs), logged, and counted in `/metrics`. Directories written before
//! `partition.metadata` existed are adopted by name once, with a log line.
//!
//! New directories and files here are fsynced together with their parent, so a power loss
//! can neither lose a partition directory nor give the node a new cluster id.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use runnel_metadata::{MetadataImage, Uuid};

pub const METADATA_DIR: &str = "__cluster_metadata-0";
const META_PROPERTIES: &str = "meta.properties";
const PARTITION_METADATA: &str = "partition.metadata";
const DELETE_SUFFIX: &str = "-delete";
const STRAY_SUFFIX: &str = "-stray";
/// Longest file name on common file systems.
const NAME_MAX: usize = 255;

pub fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

/// fsyncs a directory's entries.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `text` to `dir/name` atomically: temp file, fsync, rename, fsync `dir`.
fn write_atomically(dir: &Path, name: &str, text: &str) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Creates `dir` (and missing parents) and fsyncs it and its parent.
pub fn create_dir_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durably(parent)?;
    }
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    sync_dir(dir)?;
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Creates a new partition's directory with its `partition.metadata` (written atomically:
/// the fsync of the directory after the rename also makes the directory's own new entries
/// durable). The new directory's entry in its parent is the caller's to sync, once for a
/// whole batch ([`sync_dir`] of the data dir): two fsyncs per new partition instead of four.
/// A crash before that can lose only the new, empty directory, which the next start
/// creates again from the metadata log.
pub fn create_partition_dir(dir: &Path, topic_id: &Uuid) -> io::Result<()> {
    if !dir.is_dir() {
        fs::create_dir_all(dir)?;
    }
    if read_topic_id(dir)? != Some(*topic_id) {
        write_topic_id(dir, topic_id)?;
    }
    Ok(())
}

fn write_topic_id(dir: &Path, topic_id: &Uuid) -> io::Result<()> {
    write_atomically(dir, PARTITION_METADATA, &format!("version: 0\ntopic_id: {topic_id}\n"))
}

/// The topic id in `dir/partition.metadata`; `None` if the file is missing or unreadable.
pub fn read_topic_id(dir: &Path) -> io::Result<Option<Uuid>> {
    match fs::read_to_string(dir.join(PARTITION_METADATA)) {
        Ok(text) => Ok(text.lines().find_map(|l| l.strip_prefix("topic_id:")).and_then(|id| Uuid::parse_str(id.trim()).ok())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `<name>.<uuid><suffix>`, with `name` shortened so the whole fits a file name (as Kafka
/// caps its `-delete` and `-stray` names).
fn renamed(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tail = format!(".{}{suffix}", Uuid::new_v4().simple());
    let mut keep = NAME_MAX.saturating_sub(tail.len()).min(name.len());
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    dir.with_file_name(format!("{}{tail}", &name[..keep]))
}

/// Where a deleted partition's directory goes before it is removed.
pub fn doomed_name(dir: &Path) -> PathBuf {
    renamed(dir, DELETE_SUFFIX)
}

/// Removes a `*-delete` directory (its deletion is committed).
pub fn remove_doomed(dir: &Path) -> io::Result<()> {
    fs::remove_dir_all(dir)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Moves `dir` aside as `<name>.<uuid>-stray` and fsyncs the parent.
fn quarantine(dir: &Path, why: &str) -> io::Result<()> {
    let to = renamed(dir, STRAY_SUFFIX);
    tracing::warn!(dir = %dir.display(), moved_to = %to.display(), reason = why, "quarantined a directory the metadata does not know; it is kept, not deleted");
    fs::rename(dir, &to)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// What the startup sweep found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    /// Quarantined (`-stray`) directories in the data dir, old and new.
    pub stray: usize,
}

/// Decides what every directory in the data dir is (see the module docs): keeps live
/// partitions (adopting pre-`partition.metadata` ones by name), removes committed
/// deletions, quarantines the rest.
pub fn sweep(data_dir: &Path, image: &MetadataImage) -> io::Result<Sweep> {
    let mut out = Sweep::default();
    let mut changed = false;
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name == METADATA_DIR {
            continue;
        }
        if name.ends_with(STRAY_SUFFIX) {
            out.stray += 1;
            continue;
        }
        if name.ends_with(DELETE_SUFFIX) {
            tracing::info!(dir = %path.display(), "finishing the removal of a deleted partition");
            fs::remove_dir_all(&path)?;
            changed = true;
            continue;
        }
        let parsed = name.rsplit_once('-').and_then(|(t, p)| Some((t, p.parse::<u32>().ok()?)));
        let live = parsed.and_then(|(t, p)| image.topic(t).filter(|t| p < t.partitions));
        match (read_topic_id(&path)?, live) {
            (Some(id), Some(t)) if id == t.topic_id => {}
            (Some(id), _) if image.was_deleted(&id) => {
                tracing::info!(dir = %path.display(), topic_id = %id, "removing the partition dir of a deleted topic");
                fs::remove_dir_all(&path)?;
                changed = true;
            }
            (None, Some(t)) => {
                tracing::info!(dir = %path.display(), topic_id = %t.topic_id, "migrating a partition dir: writing its partition.metadata (once)");
                write_topic_id(&path, &t.topic_id)?;
            }
            (Some(id), Some(t)) => {
                quarantine(&path, &format!("its topic id {id} is not the live topic's {}", t.topic_id))?;
                out.stray += 1;
            }
            (_, None) => {
                quarantine(&path, "no live topic partition has this name")?;
                out.stray += 1;
            }
        }
    }
    if changed {
        sync_dir(data_dir)?;
    }
    Ok(out)
}

/// Reads `meta.properties` (cluster.id, node.id), creating it durably on first start.
pub fn load_or_create_cluster_id(data_dir: &Path, node_id: i32) -> io::Result<String> {
    let path = data_dir.join(META_PROPERTIES);
    if let Ok(text) = fs::read_to_string(&path) {
        if let Some(id) = text.lines().find_map(|l| l.strip_prefix("cluster.id=")) {
            return Ok(id.trim().to_string());
        }
    }
    let id = Uuid::new_v4().simple().to_string()[..22].to_string();
    write_atomically(data_dir, META_PROPERTIES, &format!("version=1\ncluster.id={id}\nnode.id={node_id}\n"))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::state::Broker;
    use crate::BrokerConfig;

    /// After DeleteTopics, a handle to the old partition (a cleaner pass, an in-flight
    /// produce) can no longer write, roll, delete or compact anything, and a new topic of
    /// the same name gets a directory of its own.
    #[test]
    fn old_handles_never_touch_a_same_name_replacement() {
        let tmp = tempfile::tempdir().unwrap();
        let config = BrokerConfig { data_dir: tmp.path().to_path_buf(), ..BrokerConfig::default() };
        let broker = Broker::open(config, crate::listeners::Endpoints::plaintext("127.0.0.1", 9092), None).unwrap();
        let small = BTreeMap::from([("segment.bytes".to_string(), "14".to_string())]);
        broker.create_topic("t", 1, small.clone()).unwrap();
        let old = broker.partition("t", 0).unwrap();
        let batch = || runnel_protocol::batch::encode_batch(0, 0, &[runnel_protocol::batch::NewRecord { timestamp: 1, key: Some(b"k"), value: Some(b"v"), headers: &[] }]);
        old.log().append(&mut batch()).unwrap();
        broker.delete_topic("t").unwrap();
        let new_id = broker.create_topic("t", 1, small).unwrap();
        let new_dir = partition_dir(tmp.path(), "t", 0);
        let listing = || {
            let mut v: Vec<String> = fs::read_dir(&new_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            v.sort();
            v
        };
        let before = listing();
        // The old handle: an append (which would roll a segment), retention, DeleteRecords,
        // truncation, compaction and a flush all refuse, and the new dir is unchanged.
        assert!(old.log().append(&mut batch()).is_err());
        assert!(old.log().delete_records_before(1).is_err());
        assert!(old.log().truncate_to(0).is_err());
        assert!(old.log().flush().is_err());
        let _ = old.log().apply_retention(&runnel_storage::RetentionConfig { retention_bytes: Some(0), ..Default::default() }, 0);
        assert!(old.log().plan_compaction(&runnel_storage::CompactionConfig::default(), 0, true).is_none());
        assert_eq!(listing(), before);
        assert_eq!(read_topic_id(&new_dir).unwrap(), Some(new_id));
        let new = broker.partition("t", 0).unwrap();
        assert_eq!(new.log().log_end_offset(), 0);
        assert_eq!(new.log().append(&mut batch()).unwrap().base_offset, 0);
    }

    #[test]
    fn long_names_are_capped() {
        let dir = PathBuf::from("/d").join(format!("{}-0", "t".repeat(249)));
        let stray = renamed(&dir, STRAY_SUFFIX);
        let name = stray.file_name().unwrap().to_str().unwrap();
        assert!(name.len() <= NAME_MAX && name.ends_with("-stray"), "{name}");
    }
}
