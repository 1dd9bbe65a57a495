//! The broker's shared state: config, the metadata store, and the open partitions.
//! Topic changes go through here so that the metadata record and the partition
//! directories change together: a record is committed first, then applied to the files.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use runnel_metadata::{MetadataImage, MetadataRecord, MetadataStore, TopicImage, Uuid};
use runnel_storage::PartitionLog;

use crate::group::{Coordinator, OFFSETS_TOPIC};
use crate::partition::Partition;
use crate::topic_config::TopicSettings;
use crate::data_dir;
use crate::BrokerConfig;

pub type Partitions = HashMap<(String, i32), Arc<Partition>>;

pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    /// The advertised host and port.
    pub advertised: (String, i32),
    metadata: Mutex<MetadataStore>,
    partitions: RwLock<Partitions>,
    /// The group coordinator; set once `__consumer_offsets` is open (in [`Broker::open`]).
    groups: Option<Arc<Coordinator>>,
    /// Producer ids this broker reserved and has not handed out yet: `[next, end)`.
    producer_ids: Mutex<(i64, i64)>,
    /// Partitions that could not be opened at startup, with why.
    offline_at_open: HashMap<(String, i32), String>,
    /// Quarantined (`-stray`) directories in the data dir.
    stray_dirs: usize,
}

/// How many producer ids a broker reserves with one metadata record (Kafka's block size).
pub const PRODUCER_ID_BLOCK: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("metadata: {0}")]
    Metadata(#[from] runnel_metadata::MetadataError),
    #[error("storage: {0}")]
    Storage(#[from] runnel_storage::StorageError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{OFFSETS_TOPIC}: partition 0 is missing")]
    NoOffsetsPartition,
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("this broker would hold {total} partitions, over max.broker.partitions ({limit})")]
    PartitionLimit { total: u64, limit: u64 },
}


impl Broker {
    /// Opens the data dir: metadata first, then every partition log (recovering each).
    pub fn open(config: BrokerConfig, advertised: (String, i32)) -> Result<Self, StateError> {
        data_dir::create_dir_durably(&config.data_dir)?;
        let cluster_id = data_dir::load_or_create_cluster_id(&config.data_dir, config.node_id)?;
        let metadata = MetadataStore::open_local(&config.data_dir.join(data_dir::METADATA_DIR))?;
        let sweep = data_dir::sweep(&config.data_dir, metadata.image())?;
        let mut partitions = HashMap::new();
        let mut offline = HashMap::new();
        for topic in metadata.image().topics() {
            let settings = TopicSettings::resolve(&topic.configs, &config.settings);
            for p in 0..topic.partitions as i32 {
                // One partition that cannot be opened (EIO, damage recovery cannot cut
                // away) goes offline; the others serve.
                match open_partition(&config.data_dir, &(&topic.name, topic.topic_id), p, &settings) {
                    Ok(part) => {
                        partitions.insert((topic.name.clone(), p), Arc::new(part));
                    }
                    Err(e) if topic.name != OFFSETS_TOPIC => {
                        tracing::error!(topic = %topic.name, partition = p, error = %e, "cannot open the partition; it is offline until a restart opens it");
                        offline.insert((topic.name.clone(), p), e.to_string());
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let mut broker = Self {
            config,
            cluster_id,
            advertised,
            metadata: Mutex::new(metadata),
            partitions: RwLock::new(partitions),
            groups: None,
            offline_at_open: offline,
            stray_dirs: sweep.stray,
            producer_ids: Mutex::new((0, 0)),
        };
        if broker.topic(OFFSETS_TOPIC).is_none() {
            broker.create_topic(OFFSETS_TOPIC, 1, BTreeMap::from([("cleanup.policy".into(), "compact".into())]))?;
            tracing::info!(topic = OFFSETS_TOPIC, "created the internal topic");
        }
        let log = broker.partition(OFFSETS_TOPIC, 0).ok_or(StateError::NoOffsetsPartition)?;
        broker.groups = Some(Arc::new(Coordinator::load(log, &broker.config)?));
        // Offsets of a topic whose deletion a crash interrupted before they went.
        broker.groups().remove_offsets_of_missing_topics(|t| broker.topic(t).is_some());
        Ok(broker)
    }

    /// The group coordinator.
    pub fn groups(&self) -> &Arc<Coordinator> {
        self.groups.as_ref().expect("the coordinator is set in Broker::open")
    }

    /// A producer id never handed out before, by any broker or before any restart: taken
    /// from this broker's reserved block, reserving the next block (a metadata record,
    /// fsynced) when it runs out. Blocking: call it off the async workers.
    pub fn next_producer_id(&self) -> Result<i64, StateError> {
        let mut ids = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.0 >= ids.1 {
            let mut md = self.metadata.lock().unwrap_or_else(|p| p.into_inner());
            let start = md.image().next_producer_id();
            let end = start + PRODUCER_ID_BLOCK;
            md.commit(MetadataRecord::ProducerIds { broker_id: self.config.node_id, next_producer_id: end })?;
            tracing::debug!(start, end, "reserved a block of producer ids");
            *ids = (start, end);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// A consistent copy of the metadata image.
    pub fn image(&self) -> MetadataImage {
        self.metadata.lock().unwrap_or_else(|p| p.into_inner()).image().clone()
    }

    pub fn topic(&self, name: &str) -> Option<TopicImage> {
        self.metadata.lock().unwrap_or_else(|p| p.into_inner()).image().topic(name).cloned()
    }

    /// One topic by its id, without copying the whole image.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<TopicImage> {
        self.metadata.lock().unwrap_or_else(|p| p.into_inner()).image().topic_by_id(id).cloned()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner()).get(&(topic.to_string(), index)).cloned()
    }

    /// Why a partition of a live topic is offline (it could not be opened at startup, or
    /// its log went offline after a failed fsync); `None` if it serves.
    pub fn offline_reason(&self, topic: &str, index: i32) -> Option<String> {
        if let Some(why) = self.offline_at_open.get(&(topic.to_string(), index)) {
            return Some(why.clone());
        }
        self.partition(topic, index).and_then(|p| p.log().offline_reason().map(str::to_string))
    }

    /// How many partitions are offline and how many quarantined directories the data dir
    /// holds (for `/metrics`).
    pub fn storage_health(&self) -> (usize, usize) {
        let offline = self.all_partitions().iter().filter(|p| p.log().offline_reason().is_some()).count();
        (self.offline_at_open.len() + offline, self.stray_dirs)
    }

    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Creates a topic (already validated by the caller) and its partition logs.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<Uuid, StateError> {
        let topic_id = Uuid::new_v4();
        let settings = TopicSettings::resolve(&configs, &self.config.settings);
        let mut md = self.metadata.lock().unwrap_or_else(|p| p.into_inner());
        if md.image().topic(name).is_some() {
            return Err(StateError::TopicExists(name.into()));
        }
        self.check_partition_limit(md.image(), u64::from(partitions))?;
        md.commit(MetadataRecord::CreateTopic { name: name.into(), topic_id, partitions, configs })?;
        self.open_new_partitions(&(name, topic_id), 0..partitions as i32, &settings)?;
        Ok(topic_id)
    }

    /// Grows a topic to `total` partitions.
    pub fn create_partitions(&self, name: &str, total: u32) -> Result<(), StateError> {
        let mut md = self.metadata.lock().unwrap_or_else(|p| p.into_inner());
        let Some(topic) = md.image().topic(name).cloned() else { return Ok(()) };
        self.check_partition_limit(md.image(), u64::from(total.saturating_sub(topic.partitions)))?;
        md.commit(MetadataRecord::CreatePartitions { name: name.into(), total })?;
        let settings = TopicSettings::resolve(&topic.configs, &self.config.settings);
        self.open_new_partitions(&(name, topic.topic_id), topic.partitions as i32..total as i32, &settings)
    }

    fn open_new_partitions(
        &self,
        topic: &TopicRef,
        range: std::ops::Range<i32>,
        settings: &TopicSettings,
    ) -> Result<(), StateError> {
        for p in range {
            let part = open_partition(&self.config.data_dir, topic, p, settings)?;
            self.partitions.write().unwrap_or_else(|p| p.into_inner()).insert((topic.0.into(), p), Arc::new(part));
        }
        Ok(())
    }

    /// `max.broker.partitions`: refuses `more` partitions if the broker would then hold
    /// more than that (checked under the metadata lock, so concurrent creates add up).
    fn check_partition_limit(&self, image: &MetadataImage, more: u64) -> Result<(), StateError> {
        let limit = self.config.max_broker_partitions();
        let total = image.topics().map(|t| u64::from(t.partitions)).sum::<u64>() + more;
        if total > limit {
            return Err(StateError::PartitionLimit { total, limit });
        }
        Ok(())
    }

    /// Read-modify-write of a topic's config overrides under the metadata lock, so two
    /// concurrent alters never lose each other's changes: `edit` maps the current
    /// overrides to the new ones, or refuses (then nothing is committed). The new overrides
    /// apply to the topic's open partitions.
    pub fn update_topic_configs<E>(
        &self,
        name: &str,
        edit: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, E>,
    ) -> Result<Result<(), E>, StateError> {
        let mut md = self.metadata.lock().unwrap_or_else(|p| p.into_inner());
        let Some(current) = md.image().topic(name).map(|t| t.configs.clone()) else {
            return Err(StateError::UnknownTopic(name.into()));
        };
        let configs = match edit(&current) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let settings = TopicSettings::resolve(&configs, &self.config.settings);
        md.commit(MetadataRecord::SetTopicConfigs { name: name.into(), configs })?;
        let count = md.image().topic(name).map(|t| t.partitions).unwrap_or(0);
        drop(md);
        for p in 0..count as i32 {
            if let Some(part) = self.partition(name, p) {
                part.set_settings(settings.clone());
            }
        }
        Ok(Ok(()))
    }

    /// Deletes a topic: the record first, then its data from disk. Before the metadata
    /// lock is released (so before the name can be reused), every partition log is
    /// retired: its directory renamed to `*-delete` and the log taken offline, so a
    /// cleaner pass or a produce still holding it can never touch a new topic's files.
    pub fn delete_topic(&self, name: &str) -> Result<(), StateError> {
        let mut md = self.metadata.lock().unwrap_or_else(|p| p.into_inner());
        // Checked under the lock: of two concurrent deletes only one commits a record.
        if md.image().topic(name).is_none() {
            return Err(StateError::UnknownTopic(name.into()));
        }
        md.commit(MetadataRecord::DeleteTopic { name: name.into() })?;
        let removed: Vec<Arc<Partition>> = {
            let mut parts = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<_> = parts.keys().filter(|(t, _)| t == name).cloned().collect();
            keys.into_iter().filter_map(|k| parts.remove(&k)).collect()
        };
        let mut doomed = Vec::with_capacity(removed.len());
        let mut failed = Ok(());
        for part in &removed {
            let mut log = part.log();
            let to = data_dir::doomed_name(log.dir());
            match log.retire(&to) {
                Ok(()) => doomed.push(to),
                // Left in place, the dir is removed by the next startup's sweep (its
                // topic id is deleted in the committed image).
                Err(e) => failed = Err(e),
            }
        }
        drop(md);
        for part in &removed {
            part.wake_waiters();
        }
        for dir in doomed {
            data_dir::remove_doomed(&dir)?;
        }
        Ok(failed?)
    }

    /// Flushes every partition whose `flush.ms` has elapsed.
    pub fn flush_due(&self) {
        for part in self.all_partitions() {
            if let Err(e) = part.log().maybe_flush() {
                tracing::error!(topic = %part.topic, partition = part.index, error = %e, "periodic flush failed");
            }
        }
    }

    /// Flushes every partition and writes its recovery checkpoint (clean shutdown).
    pub fn flush_all(&self) {
        for part in self.all_partitions() {
            let mut log = part.log();
            if let Err(e) = log.flush().and_then(|()| log.snapshot_producer_state()) {
                tracing::error!(topic = %part.topic, partition = part.index, error = %e, "flush at shutdown failed");
            }
        }
    }
}

fn open_partition(data_dir: &Path, topic: &TopicRef, index: i32, settings: &TopicSettings) -> Result<Partition, StateError> {
    let dir = data_dir::partition_dir(data_dir, topic.0, index);
    data_dir::create_partition_dir(&dir, &topic.1)?;
    let log = PartitionLog::open(&dir, settings.log.clone())?;
    Ok(Partition::new(topic.0.into(), index, log, settings.clone()))
}

/// A topic's name and id.
type TopicRef<'a> = (&'a str, Uuid);
