//! The broker's shared state: config, the metadata store, and the open partitions.
//! Topic changes go through here so that the metadata record and the partition
//! directories change together: a record is committed first, then applied to the files.
//! In cluster mode the record is committed by the metadata quorum and applied to the
//! files by the publisher (`crate::cluster`), on this broker as on every other.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use runnel_metadata::{MetadataImage, MetadataRecord, MetadataStore, TopicImage, Uuid};
use runnel_storage::PartitionLog;

use crate::cluster::Cluster;
use crate::group::{Coordinator, OFFSETS_TOPIC};
use crate::partition::Partition;
use crate::topic_config::TopicSettings;
use crate::txn::TxnCoordinator;
use crate::data_dir;
use crate::BrokerConfig;

mod topics;

pub type Partitions = HashMap<(String, i32), Arc<Partition>>;

/// A `(topic, index)` key of [`Partitions`] as borrowed parts, so that a lookup by
/// `(&str, i32)` builds no `String` (one runs for every partition of every Produce and
/// Fetch). Hashes as the owned key does: a `String` hashes as its `str`.
trait PartitionKeyRef {
    fn parts(&self) -> (&str, i32);
}

impl PartitionKeyRef for (String, i32) {
    fn parts(&self) -> (&str, i32) {
        (&self.0, self.1)
    }
}

impl PartitionKeyRef for (&str, i32) {
    fn parts(&self) -> (&str, i32) {
        (self.0, self.1)
    }
}

impl<'a> std::borrow::Borrow<dyn PartitionKeyRef + 'a> for (String, i32) {
    fn borrow(&self) -> &(dyn PartitionKeyRef + 'a) {
        self
    }
}

impl std::hash::Hash for dyn PartitionKeyRef + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn PartitionKeyRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn PartitionKeyRef + '_ {}

/// Looks `(topic, index)` up in a map keyed by `(String, i32)` without allocating.
fn by_partition<'m, V>(map: &'m HashMap<(String, i32), V>, topic: &str, index: i32) -> Option<&'m V> {
    map.get(&(topic, index) as &dyn PartitionKeyRef)
}

/// The image's ACLs and client quotas, read by every request when the authorizer or
/// quotas are on.
#[derive(Debug, Default)]
pub struct SecurityView {
    pub acls: Vec<runnel_metadata::acl::AclBinding>,
    pub quotas: BTreeMap<runnel_metadata::quota::QuotaEntity, BTreeMap<String, f64>>,
}

pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    /// The advertised host and port of each listener.
    pub endpoints: crate::listeners::Endpoints,
    metadata: Metadata,
    partitions: RwLock<Partitions>,
    /// The group coordinator (single node: loaded in [`Broker::open`]; cluster mode: it
    /// loads a `__consumer_offsets` partition when this broker becomes its leader).
    groups: Arc<Coordinator>,
    /// The transaction coordinator (its topic is created at the first transactional request).
    txns: Arc<TxnCoordinator>,
    /// Producer ids this broker reserved and has not handed out yet: `[next, end)`.
    producer_ids: Mutex<(i64, i64)>,
    /// Partitions that could not be opened at startup, with why.
    offline_at_open: HashMap<(String, i32), String>,
    /// Quarantined (`-stray`) directories in the data dir.
    stray_dirs: usize,
    /// Cluster mode: the high watermarks of `replication-offset-checkpoint` as read at
    /// start, for the partitions opened then (emptied once they are).
    stored_hw: Mutex<runnel_storage::offset_checkpoint::Offsets>,
    /// Decides what each principal may do, from the ACLs in the image.
    authorizer: crate::authorizer::Authorizer,
    /// The ACLs and client quotas of the image, copied out after each change of them, so
    /// requests read them without the metadata lock (held across metadata fsyncs).
    security: RwLock<Arc<SecurityView>>,
    /// The broker settings in effect (static, then the image's dynamic configs), copied
    /// out after each change of the dynamic ones.
    settings: RwLock<Arc<crate::dynamic_config::BrokerSettings>>,
    /// Held while the settings in effect (broker and topic) are recomputed from the image:
    /// each recomputation reads the image under it, so a slower one never puts older
    /// values back over a newer one's.
    config_refresh: Mutex<()>,
    /// Cluster mode: held across the read, edit and commit of a config change made through
    /// this broker, so two alters made here never lose each other's changes.
    config_writes: Mutex<()>,
    /// Client quota budgets (produce and fetch byte rates).
    quotas: crate::quota::Quotas,
    /// Topics whose partition directories are being created, or retired by a delete,
    /// outside the metadata lock (one node): a create, delete or partition increase of
    /// such a topic waits until they are in place (or renamed away).
    creating: Mutex<HashSet<String>>,
    /// Incremental fetch sessions (KIP-227), of consumers and followers.
    fetch_sessions: crate::fetch_session::FetchSessionCache,
}

/// How many producer ids a broker reserves with one metadata record (Kafka's block size).
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// Where the metadata image comes from: the local metadata log (one node), or the
/// metadata quorum (cluster mode).
enum Metadata {
    Local(Mutex<MetadataStore>),
    Quorum(Arc<Cluster>),
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("metadata quorum: {0}")]
    Quorum(String),
    #[error("refused by the controller: {0}")]
    Refused(String),
    #[error("the configs kept changing while this alter was applied (other alters through other brokers); send it again")]
    StaleConfigs,
    #[error("metadata: {0}")]
    Metadata(#[from] runnel_metadata::MetadataError),
    #[error("storage: {0}")]
    Storage(#[from] runnel_storage::StorageError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Config(String),
    #[error("{OFFSETS_TOPIC}: a partition is missing")]
    NoOffsetsPartition,
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("replication factor {rf} is larger than the number of live brokers ({live})")]
    ReplicationFactor { rf: usize, live: usize },
    #[error("this broker would hold {total} partitions, over max.broker.partitions ({limit})")]
    PartitionLimit { total: u64, limit: u64 },
}


impl Broker {
    /// Opens the data dir: metadata first, then every partition log (recovering each).
    /// In cluster mode (`cluster`), waits for the metadata quorum and opens the
    /// partitions this broker hosts.
    pub fn open(config: BrokerConfig, endpoints: crate::listeners::Endpoints, cluster: Option<Arc<Cluster>>) -> Result<Self, StateError> {
        data_dir::create_dir_durably(&config.data_dir)?;
        // Before any partition opens: how many segments stay open at once.
        runnel_storage::OpenFiles::process().set_capacity(config.max_open_segments());
        let cluster_id = data_dir::load_or_create_cluster_id(&config.data_dir, config.node_id)?;
        if let Some(c) = cluster {
            return Self::open_clustered(config, endpoints, cluster_id, c);
        }
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
                    Err(e) if topic.name != OFFSETS_TOPIC && topic.name != crate::txn::TXN_TOPIC => {
                        tracing::error!(topic = %topic.name, partition = p, error = %e, "cannot open the partition; it is offline until a restart opens it");
                        offline.insert((topic.name.clone(), p), e.to_string());
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // The entries of partition directories created above (see `create_partition_dir`).
        data_dir::sync_dir(&config.data_dir)?;
        let txns = Arc::new(TxnCoordinator::new(&config, false));
        let groups = Arc::new(Coordinator::new(&config));
        let authorizer = crate::authorizer::Authorizer::from_config(&config).map_err(|e| StateError::Config(e.to_string()))?;
        let quotas = crate::quota::Quotas::new(&config);
        let static_settings = config.settings.clone();
        let fetch_sessions = config.fetch_session_cache();
        let broker = Self {
            config,
            cluster_id,
            endpoints,
            metadata: Metadata::Local(Mutex::new(metadata)),
            partitions: RwLock::new(partitions),
            groups,
            txns,
            offline_at_open: offline,
            stored_hw: Mutex::default(),
            stray_dirs: sweep.stray,
            authorizer,
            security: RwLock::default(),
            settings: RwLock::new(Arc::new(crate::dynamic_config::BrokerSettings::new(static_settings, BTreeMap::new(), BTreeMap::new()))),
            config_refresh: Mutex::new(()),
            config_writes: Mutex::new(()),
            quotas,
            creating: Mutex::default(),
            producer_ids: Mutex::new((0, 0)),
            fetch_sessions,
        };
        broker.refresh_dynamic_configs();
        if broker.topic(OFFSETS_TOPIC).is_none() {
            // One partition unless `offsets.topic.num.partitions` is set: a single broker
            // coordinates every group either way.
            let (n, set) = broker.config.offsets_topic_num_partitions();
            broker.create_topic(OFFSETS_TOPIC, if set { n } else { 1 }, offsets_topic_configs())?;
            tracing::info!(topic = OFFSETS_TOPIC, "created the internal topic");
        }
        // This broker leads every partition: it coordinates every group.
        let count = broker.topic(OFFSETS_TOPIC).map_or(0, |t| t.partitions as i32);
        broker.groups.set_partition_count(count);
        for p in 0..count {
            let log = broker.partition(OFFSETS_TOPIC, p).ok_or(StateError::NoOffsetsPartition)?;
            broker.groups.elect(p, 0, log)?;
        }
        // Offsets of a topic whose deletion a crash interrupted before they went.
        broker.groups.remove_offsets_of_missing_topics(|t| broker.topic(t).is_some());
        broker.txns.load_if_present(&broker)?;
        broker.refresh_security();
        Ok(broker)
    }

    /// Cluster mode: nothing is removed at start (the image may still be catching up);
    /// the publisher applies what is committed from here on.
    fn open_clustered(config: BrokerConfig, endpoints: crate::listeners::Endpoints, ours: String, c: Arc<Cluster>) -> Result<Self, StateError> {
        c.register(&endpoints, None);
        let cluster_id = c.agree_cluster_id(&ours)?;
        c.wait_registered();
        // `__consumer_offsets` is created at the first FindCoordinator for a group (as in
        // Kafka), when the brokers that will hold its replicas are up.
        let (hosted, offset) = c.hosted();
        let txns = Arc::new(TxnCoordinator::new(&config, true));
        let groups = Arc::new(Coordinator::new(&config));
        let stored_hw = Mutex::new(read_stored_hw(&config.data_dir));
        let authorizer = crate::authorizer::Authorizer::from_config(&config).map_err(|e| StateError::Config(e.to_string()))?;
        let quotas = crate::quota::Quotas::new(&config);
        let static_settings = config.settings.clone();
        let fetch_sessions = config.fetch_session_cache();
        let broker = Self {
            config,
            cluster_id,
            endpoints,
            metadata: Metadata::Quorum(c.clone()),
            partitions: RwLock::new(HashMap::new()),
            groups,
            txns,
            offline_at_open: HashMap::new(),
            stored_hw,
            stray_dirs: 0,
            authorizer,
            security: RwLock::default(),
            settings: RwLock::new(Arc::new(crate::dynamic_config::BrokerSettings::new(static_settings, BTreeMap::new(), BTreeMap::new()))),
            config_refresh: Mutex::new(()),
            config_writes: Mutex::new(()),
            quotas,
            creating: Mutex::default(),
            producer_ids: Mutex::new((0, 0)),
            fetch_sessions,
        };
        for (name, (topic_id, parts, configs)) in &hosted {
            broker.open_partitions(&(name, *topic_id), parts.clone(), configs)?;
        }
        // Partitions created later start at their log start.
        broker.stored_hw.lock().unwrap_or_else(|p| p.into_inner()).clear();
        broker.refresh_security();
        broker.refresh_dynamic_configs();
        c.set_publish_from(offset);
        // The group coordinator loads the `__consumer_offsets` partitions this broker
        // leads once the publisher gives them their roles (`crate::replication`).
        Ok(broker)
    }

    /// Cluster mode: creates `__consumer_offsets` if it does not exist yet (the first
    /// FindCoordinator for a group, as in Kafka): `offsets.topic.num.partitions`
    /// partitions of `offsets.topic.replication.factor` replicas (unset: 3, or the live
    /// brokers if fewer). Blocking.
    pub fn ensure_offsets_topic(&self) -> Result<(), StateError> {
        let Some(c) = self.cluster() else { return Ok(()) };
        if self.topic(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let live = c.live_brokers().len();
        let rf = self.config.offsets_topic_replication_factor().unwrap_or_else(|| live.clamp(1, 3));
        let (partitions, _) = self.config.offsets_topic_num_partitions();
        match self.create_replicated_topic(OFFSETS_TOPIC, partitions, rf, offsets_topic_configs()) {
            Ok(_) => {
                tracing::info!(topic = OFFSETS_TOPIC, partitions, replication_factor = rf, "created the internal topic");
                Ok(())
            }
            Err(StateError::TopicExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The cluster this broker belongs to (None: single node).
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match &self.metadata {
            Metadata::Quorum(c) => Some(c),
            Metadata::Local(_) => None,
        }
    }

    /// The authorizer (off unless `authorizer.class.name` is set).
    pub fn authorizer(&self) -> &crate::authorizer::Authorizer {
        &self.authorizer
    }

    /// Answers `f` with the authorizer and the current ACLs (several checks, one look).
    pub fn with_acls<T>(&self, f: impl FnOnce(&crate::authorizer::Authorizer, &[runnel_metadata::acl::AclBinding]) -> T) -> T {
        f(&self.authorizer, &self.security().acls)
    }

    /// Client quota budgets.
    pub fn quotas(&self) -> &crate::quota::Quotas {
        &self.quotas
    }

    /// The ACLs and client quotas as of the last change.
    pub fn security(&self) -> Arc<SecurityView> {
        self.security.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The ACL bindings `filter` names.
    pub fn acls_matching(&self, filter: &runnel_metadata::acl::AclFilter) -> Vec<runnel_metadata::acl::AclBinding> {
        self.security().acls.iter().filter(|a| filter.matches(a)).cloned().collect()
    }

    /// Copies the image's ACLs and client quotas into the view requests read. Called when
    /// the broker opens and after each record that changes them (here or, in cluster
    /// mode, by the publisher).
    pub fn refresh_security(&self) {
        let view = self.with_image(|i| SecurityView { acls: i.acls().cloned().collect(), quotas: i.client_quotas().clone() });
        *self.security.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(view);
    }

    /// Commits a record that is not about one topic (ACLs, client quotas): through the
    /// quorum in cluster mode (answered once this broker applied it), else to the local
    /// metadata log. Blocking (an fsync).
    pub fn commit_metadata(&self, record: MetadataRecord) -> Result<(), StateError> {
        self.commit_cluster_wide(record)?;
        self.refresh_security();
        Ok(())
    }

    /// The broker settings in effect: static settings overlaid with the dynamic configs.
    pub fn settings(&self) -> Arc<crate::dynamic_config::BrokerSettings> {
        self.settings.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The broker config with the dynamic configs in effect in place of the static ones,
    /// for settings read afresh at each use (`dynamic_config::RUNNEL_DYNAMIC`).
    pub fn effective_config(&self) -> crate::config::BrokerConfig {
        let mut c = self.config.clone();
        c.settings = self.settings().merged.clone();
        c
    }

    /// Copies the image's dynamic broker configs (cluster-wide default and this broker's)
    /// into the settings requests read, and re-resolves the topic settings of every open
    /// partition when the merged values changed. Called when the broker opens and after
    /// each record that sets them (here or, in cluster mode, by the publisher). Must not
    /// be called under the metadata lock.
    pub fn refresh_dynamic_configs(&self) {
        use runnel_metadata::ConfigResource;
        let _serial = self.config_refresh.lock().unwrap_or_else(|p| p.into_inner());
        let node = self.config.node_id.to_string();
        let (default, mine) = self.with_image(|i| (i.resource_configs(ConfigResource::Broker, ""), i.resource_configs(ConfigResource::Broker, &node)));
        let new = Arc::new(crate::dynamic_config::BrokerSettings::new(self.config.settings.clone(), default, mine));
        let changed = {
            let mut current = self.settings.write().unwrap_or_else(|p| p.into_inner());
            let changed = current.merged != new.merged;
            *current = new;
            changed
        };
        if changed {
            for t in self.with_image(|i| i.topics().cloned().collect::<Vec<_>>()) {
                self.apply_topic_image(&t);
            }
        }
    }

    /// Read-modify-write of a broker's (or the cluster default's) or a group's dynamic
    /// configs under the metadata lock (one node) or through the quorum: `edit` maps the
    /// current configs to the new ones, or refuses (then nothing is committed). Blocking.
    /// A change that changes nothing writes no record. Cluster mode: see
    /// [`Self::alter_in_cluster`] (no alter through any broker is lost).
    pub fn update_resource_configs<E>(
        &self,
        resource: runnel_metadata::ConfigResource,
        name: &str,
        edit: impl Fn(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, E>,
    ) -> Result<Result<(), E>, StateError> {
        let record = |configs, expected| MetadataRecord::SetResourceConfigs { resource, name: name.to_string(), configs, expected };
        if let Some(c) = self.cluster() {
            return self.alter_in_cluster(
                || Ok((Uuid::nil(), self.with_image(|i| i.resource_configs(resource, name)))),
                edit,
                |id, configs, expected| c.commit_topic(id, record(configs, Some(expected)), Vec::new()),
            );
        }
        let mut md = self.local();
        let current = md.image().resource_configs(resource, name);
        let configs = match edit(&current) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        if configs == current {
            return Ok(Ok(()));
        }
        md.commit(record(configs, None))?;
        drop(md);
        self.refresh_dynamic_configs();
        Ok(Ok(()))
    }

    /// Cluster mode: a read-modify-write of a resource's configs through the quorum.
    /// `read` gives the record's key and the current values (this node's image), `edit` the
    /// new ones, and `commit` proposes them with the values read as the ones expected. If
    /// another alter committed in between (through any broker), the controller refuses the
    /// record and this reads again, once this node's image has caught up. Alters through
    /// this broker are serialized besides, so they do not refuse each other. A change that
    /// changes nothing writes no record. The publisher applies a committed record here
    /// before `commit` returns.
    pub(crate) fn alter_in_cluster<E>(
        &self,
        read: impl Fn() -> Result<(Uuid, BTreeMap<String, String>), StateError>,
        edit: impl Fn(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, E>,
        commit: impl Fn(Uuid, BTreeMap<String, String>, BTreeMap<String, String>) -> Result<(), StateError>,
    ) -> Result<Result<(), E>, StateError> {
        const ATTEMPTS: u32 = 10;
        let _serial = self.config_writes.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 1..=ATTEMPTS {
            let (id, current) = read()?;
            let configs = match edit(&current) {
                Ok(c) => c,
                Err(e) => return Ok(Err(e)),
            };
            if configs == current {
                return Ok(Ok(()));
            }
            match commit(id, configs, current) {
                Err(StateError::StaleConfigs) if attempt < ATTEMPTS => std::thread::sleep(std::time::Duration::from_millis(10 * u64::from(attempt))),
                done => return done.map(Ok),
            }
        }
        Err(StateError::StaleConfigs)
    }

    pub(crate) fn with_image<T>(&self, f: impl FnOnce(&MetadataImage) -> T) -> T {
        match &self.metadata {
            Metadata::Local(m) => f(m.lock().unwrap_or_else(|p| p.into_inner()).image()),
            Metadata::Quorum(c) => f(&c.controller.image().topics),
        }
    }

    /// Commits a record that changes no topic (credentials …): through the quorum in
    /// cluster mode (keyed by the nil topic id), else to the local metadata log.
    /// Blocking: call it off the async workers.
    pub(crate) fn commit_cluster_wide(&self, record: MetadataRecord) -> Result<(), StateError> {
        debug_assert!(record.is_cluster_wide());
        match self.cluster() {
            Some(c) => c.commit_topic(Uuid::nil(), record, Vec::new()),
            None => Ok(self.local().commit(record)?),
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, MetadataStore> {
        match &self.metadata {
            Metadata::Local(m) => m.lock().unwrap_or_else(|p| p.into_inner()),
            Metadata::Quorum(_) => unreachable!("cluster-mode changes go through the quorum"),
        }
    }

    /// The transaction coordinator.
    pub fn txns(&self) -> &Arc<TxnCoordinator> {
        &self.txns
    }

    /// The group coordinator.
    pub fn groups(&self) -> &Arc<Coordinator> {
        &self.groups
    }

    /// A producer id never handed out before, by any broker or before any restart: taken
    /// from this broker's reserved block, reserving the next block (a metadata record,
    /// fsynced) when it runs out. Blocking: call it off the async workers.
    pub fn next_producer_id(&self) -> Result<i64, StateError> {
        let mut ids = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.0 >= ids.1 {
            if let Some(c) = self.cluster() {
                // The quorum refuses a block that is not above every block taken so far,
                // so two brokers racing for one block get different ones.
                loop {
                    let start = self.with_image(|i| i.next_producer_id());
                    let end = start + PRODUCER_ID_BLOCK;
                    let record = MetadataRecord::ProducerIds { broker_id: self.config.node_id, next_producer_id: end };
                    match c.commit_topic(Uuid::nil(), record, Vec::new()) {
                        Ok(()) => {
                            *ids = (start, end);
                            break;
                        }
                        Err(StateError::Refused(_)) => continue,
                        Err(e) => return Err(e),
                    }
                }
                let id = ids.0;
                ids.0 += 1;
                return Ok(id);
            }
            let mut md = self.local();
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
        self.with_image(|i| i.clone())
    }

    pub fn topic(&self, name: &str) -> Option<TopicImage> {
        self.with_image(|i| i.topic(name).cloned())
    }

    /// One topic by its id, without copying the whole image.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<TopicImage> {
        self.with_image(|i| i.topic_by_id(id).cloned())
    }

    /// The fetch session cache.
    pub(crate) fn fetch_sessions(&self) -> &crate::fetch_session::FetchSessionCache {
        &self.fetch_sessions
    }

    /// A topic's name by its id, without copying its image.
    pub fn topic_name_by_id(&self, id: &Uuid) -> Option<String> {
        self.with_image(|i| i.topic_by_id(id).map(|t| t.name.clone()))
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        by_partition(&self.partitions.read().unwrap_or_else(|p| p.into_inner()), topic, index).cloned()
    }

    /// Why a partition of a live topic is offline (it could not be opened at startup, or
    /// its log went offline after a failed fsync); `None` if it serves.
    pub fn offline_reason(&self, topic: &str, index: i32) -> Option<String> {
        if let Some(why) = by_partition(&self.offline_at_open, topic, index) {
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

    /// Flushes every partition whose `flush.ms` has elapsed.
    pub fn flush_due(&self) {
        for part in self.all_partitions() {
            if let Err(e) = part.maybe_flush() {
                tracing::error!(topic = %part.topic, partition = part.index, error = %e, "periodic flush failed");
            }
        }
    }

    /// Flushes every partition, snapshots its producer state and writes its recovery
    /// checkpoint (clean shutdown). The partitions share the data dir's filesystem, so
    /// their files are made durable together ([`FlushJob::run_batch`]: two syncfs calls)
    /// rather than by an fsync per file, which cost seconds per thousand partitions.
    pub fn flush_all(&self) {
        let mut jobs = Vec::new();
        for part in self.all_partitions() {
            let mut log = part.log();
            match log.begin_flush().and_then(|job| log.snapshot_producer_state(false).map(|()| job)) {
                Ok(job) => jobs.push((part.clone(), job)),
                Err(e) => tracing::error!(topic = %part.topic, partition = part.index, error = %e, "flush at shutdown failed"),
            }
        }
        let ran = runnel_storage::FlushJob::run_batch(jobs.iter().map(|(_, job)| job), &self.config.data_dir);
        if let Err(e) = &ran {
            tracing::error!(error = %e, partitions = jobs.len(), "flush at shutdown failed: the partitions recover on the next start");
        }
        for (part, job) in jobs {
            let ran = ran.as_ref().map(|_| ()).map_err(|e| std::io::Error::new(e.kind(), e.to_string()));
            let _ = part.log().finish_flush(job, ran);
        }
    }
}

/// The high watermarks in the data dir's `replication-offset-checkpoint` (cluster mode);
/// an unreadable file is ignored (the replicas then start from their log start).
fn read_stored_hw(data_dir: &Path) -> runnel_storage::offset_checkpoint::Offsets {
    let path = data_dir.join(runnel_storage::offset_checkpoint::REPLICATION_OFFSET_CHECKPOINT);
    runnel_storage::offset_checkpoint::read(&path).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "ignoring the high watermark checkpoint");
        Default::default()
    })
}

/// Writes every replica's high watermark to the data dir's `replication-offset-checkpoint`
/// (cluster mode). Blocking I/O.
pub fn checkpoint_hw(broker: &Broker) {
    let offsets: runnel_storage::offset_checkpoint::Offsets =
        broker.all_partitions().iter().filter_map(|p| Some(((p.topic.clone(), p.index), p.checkpoint_hw()?))).collect();
    let path = broker.config.data_dir.join(runnel_storage::offset_checkpoint::REPLICATION_OFFSET_CHECKPOINT);
    if let Err(e) = runnel_storage::offset_checkpoint::write(&path, &offsets) {
        tracing::error!(error = %e, "could not write the high watermark checkpoint");
    }
}

fn offsets_topic_configs() -> BTreeMap<String, String> {
    BTreeMap::from([("cleanup.policy".into(), "compact".into())])
}

fn open_partition(data_dir: &Path, topic: &TopicRef, index: i32, settings: &TopicSettings) -> Result<Partition, StateError> {
    let dir = data_dir::partition_dir(data_dir, topic.0, index);
    data_dir::create_partition_dir(&dir, &topic.1)?;
    let log = PartitionLog::open(&dir, settings.log.clone())?;
    Ok(Partition::new(topic.0.into(), index, log, settings.clone()))
}

/// A topic's name and id.
pub(crate) type TopicRef<'a> = (&'a str, Uuid);

#[cfg(test)]
mod tests {
    use super::*;

    /// A lookup by borrowed parts finds exactly what a lookup by the owned key finds.
    #[test]
    fn partition_lookup_by_borrowed_parts_matches_the_owned_key() {
        let names = ["", "a", "ab", "a.b", "ab-", "topic", "topic-1", "tópico"];
        let mut map: HashMap<(String, i32), usize> = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            for index in [0, 1, 7] {
                map.insert((name.to_string(), index), i * 10 + index as usize);
            }
        }
        for name in names.iter().chain(&["b", "topic-2", "tópic"]) {
            for index in [-1, 0, 1, 2, 7, i32::MAX] {
                assert_eq!(by_partition(&map, name, index), map.get(&(name.to_string(), index)), "{name:?} {index}");
            }
        }
    }
}
