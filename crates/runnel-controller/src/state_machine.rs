//! The controller's state machine (openraft's `RaftStateMachine`): applies committed
//! records to the [`ClusterImage`], hands each applied record to the publisher channel,
//! and keeps the image's snapshot durable in the metadata dir (`raft.snapshot`), so a
//! restarted node starts from the snapshot and replays only the log's tail, and a node
//! that lags behind a purged log receives the snapshot instead.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{BasicNode, EntryPayload, ErrorSubject, ErrorVerb, StoredMembership};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::files::{self, blocking};
use crate::image::{ClusterImage, ImageSnapshot};
use crate::types::{ControllerRecord, Entry, LogId, NodeId, Outcome, StorageError, TypeConfig};

const SNAPSHOT: &str = "raft.snapshot";

/// What the publisher receives, in log order, for every record this node applies.
#[derive(Debug, Clone)]
pub enum Published {
    /// A committed record was applied at `offset` (its Raft index) in `epoch` (its term).
    Record { offset: u64, epoch: u64, record: ControllerRecord, outcome: Outcome },
    /// The image was replaced by a snapshot from the leader, as of `offset`: the
    /// receiver reconciles its local state with the whole image.
    Snapshot { offset: u64 },
}

/// The snapshot file: its openraft metadata and the image.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, BasicNode>,
    image: ImageSnapshot,
}

struct Applied {
    last: Option<LogId>,
    membership: StoredMembership<NodeId, BasicNode>,
    snapshot: Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
}

pub(crate) struct Shared {
    dir: PathBuf,
    pub(crate) image: RwLock<ClusterImage>,
    applied: Mutex<Applied>,
    /// The offset of the last record applied (0: none).
    pub(crate) applied_offset: watch::Sender<u64>,
    events: mpsc::UnboundedSender<Published>,
}

/// The state machine; clones share it (a clone is the snapshot builder).
#[derive(Clone)]
pub struct StateMachine {
    pub(crate) shared: Arc<Shared>,
}

fn sm_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::from_io_error(ErrorSubject::StateMachine, ErrorVerb::Write, std::io::Error::other(e.to_string()))
}

impl StateMachine {
    /// Opens the state machine in `dir`, starting from its snapshot if there is one.
    pub fn open(dir: &Path) -> std::io::Result<(Self, mpsc::UnboundedReceiver<Published>)> {
        std::fs::create_dir_all(dir)?;
        let mut image = ClusterImage::default();
        let mut applied = Applied { last: None, membership: StoredMembership::default(), snapshot: None, snapshots_built: 0 };
        if let Some(file) = files::read_json::<SnapshotFile>(dir, SNAPSHOT)? {
            let (offset, epoch) = file.meta.last_log_id.map(|l| (l.index, l.leader_id.term)).unwrap_or((0, 0));
            image = ClusterImage::from_snapshot(&file.image, offset, epoch);
            applied.last = file.meta.last_log_id;
            applied.membership = file.meta.last_membership.clone();
            let bytes = serde_json::to_vec(&file.image).map_err(std::io::Error::other)?;
            applied.snapshot = Some((file.meta, bytes));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (offset, _) = watch::channel(image.offset);
        let shared =
            Shared { dir: dir.to_path_buf(), image: RwLock::new(image), applied: Mutex::new(applied), applied_offset: offset, events: tx };
        Ok((Self { shared: Arc::new(shared) }, rx))
    }

    fn applied(&self) -> std::sync::MutexGuard<'_, Applied> {
        self.shared.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn image_mut(&self) -> std::sync::RwLockWriteGuard<'_, ClusterImage> {
        self.shared.image.write().unwrap_or_else(|p| p.into_inner())
    }

    async fn persist(&self, meta: SnapshotMeta<NodeId, BasicNode>, image: ImageSnapshot) -> Result<(), StorageError> {
        let dir = self.shared.dir.clone();
        let file = SnapshotFile { meta, image };
        blocking(move || files::write_json(&dir, SNAPSHOT, &file, true)).await.map_err(|e| {
            StorageError::from_io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e)
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (meta, image) = {
            let mut applied = self.applied();
            let image = self.shared.image.read().unwrap_or_else(|p| p.into_inner()).to_snapshot();
            applied.snapshots_built += 1;
            let id = match applied.last {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, applied.snapshots_built),
                None => format!("0-0-{}", applied.snapshots_built),
            };
            let meta = SnapshotMeta { last_log_id: applied.last, last_membership: applied.membership.clone(), snapshot_id: id };
            (meta, image)
        };
        let bytes = serde_json::to_vec(&image).map_err(sm_err)?;
        self.persist(meta.clone(), image).await?;
        self.applied().snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership<NodeId, BasicNode>), StorageError> {
        let a = self.applied();
        Ok((a.last, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut outcomes = Vec::new();
        let mut last_offset = None;
        {
            let mut applied = self.applied();
            let mut image = self.image_mut();
            for entry in entries {
                let (offset, epoch) = (entry.log_id.index, entry.log_id.leader_id.term);
                applied.last = Some(entry.log_id);
                let outcome = match entry.payload {
                    EntryPayload::Blank => {
                        image.offset = offset;
                        image.epoch = epoch;
                        Outcome::Applied
                    }
                    EntryPayload::Normal(record) => {
                        let outcome = image.apply(offset, epoch, &record);
                        let _ = self.shared.events.send(Published::Record { offset, epoch, record, outcome: outcome.clone() });
                        outcome
                    }
                    EntryPayload::Membership(m) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), m);
                        image.offset = offset;
                        image.epoch = epoch;
                        Outcome::Applied
                    }
                };
                last_offset = Some(offset);
                outcomes.push(outcome);
            }
        }
        if let Some(o) = last_offset {
            self.shared.applied_offset.send_replace(o);
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let data: ImageSnapshot = serde_json::from_slice(&bytes).map_err(sm_err)?;
        let (offset, epoch) = meta.last_log_id.map(|l| (l.index, l.leader_id.term)).unwrap_or((0, 0));
        self.persist(meta.clone(), data.clone()).await?;
        {
            let mut applied = self.applied();
            let mut image = self.image_mut();
            *image = ClusterImage::from_snapshot(&data, offset, epoch);
            applied.last = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
            applied.snapshot = Some((meta.clone(), bytes));
        }
        tracing::info!(offset, epoch, "installed a metadata snapshot from the leader");
        let _ = self.shared.events.send(Published::Snapshot { offset });
        self.shared.applied_offset.send_replace(offset);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self
            .applied()
            .snapshot
            .as_ref()
            .map(|(meta, bytes)| Snapshot { meta: meta.clone(), snapshot: Box::new(Cursor::new(bytes.clone())) }))
    }
}
