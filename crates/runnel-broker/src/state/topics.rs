//! Topic changes on the broker's state: create (with its partitions), add partitions,
//! change configs, delete. Each commits its metadata record first (through the quorum
//! in cluster mode), then applies it to the partition directories (see the parent
//! module).

use super::*;

impl Broker {
    /// Creates a topic (already validated by the caller) and its partition logs, one
    /// replica each.
    pub fn create_topic(&self, name: &str, partitions: u32, configs: BTreeMap<String, String>) -> Result<Uuid, StateError> {
        self.create_replicated_topic(name, partitions, 1, configs)
    }

    /// Creates a topic with `rf` replicas per partition (cluster mode; a single node
    /// holds one).
    pub fn create_replicated_topic(
        &self,
        name: &str,
        partitions: u32,
        rf: usize,
        configs: BTreeMap<String, String>,
    ) -> Result<Uuid, StateError> {
        let topic_id = Uuid::new_v4();
        if let Some(c) = self.cluster() {
            self.with_image(|i| self.check_partition_limit(i, u64::from(partitions)))?;
            let assignments = c.place(topic_id, 0, partitions, rf)?;
            let record = MetadataRecord::CreateTopic { name: name.into(), topic_id, partitions, configs };
            c.commit_topic(topic_id, record, assignments).map_err(|e| match e {
                StateError::TopicExists(_) => StateError::TopicExists(name.into()),
                e => e,
            })?;
            return Ok(topic_id);
        }
        let mut md = self.local_settled(name);
        if md.image().topic(name).is_some() {
            return Err(StateError::TopicExists(name.into()));
        }
        self.check_partition_limit(md.image(), u64::from(partitions))?;
        md.commit(MetadataRecord::CreateTopic { name: name.into(), topic_id, partitions, configs })?;
        self.open_committed_partitions(md, &(name, topic_id), 0..partitions as i32)?;
        Ok(topic_id)
    }

    /// The local metadata, locked, once no partition of `name` is being created.
    fn local_settled(&self, name: &str) -> std::sync::MutexGuard<'_, MetadataStore> {
        loop {
            let md = self.local();
            if !self.creating.lock().unwrap_or_else(|p| p.into_inner()).contains(name) {
                return md;
            }
            drop(md);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Opens partitions `range` of a topic whose record `md` just committed. Their
    /// directories (up to `max.broker.partitions` of them, each fsynced with its parent)
    /// are created without the metadata lock, so they do not stall every request that
    /// reads the image; meanwhile the topic is marked as being created, which holds back
    /// a delete or partition increase of it (so its name cannot be reused for a directory
    /// still being made). They are put in place under the lock, with the topic's configs
    /// as they are then.
    fn open_committed_partitions(&self, md: std::sync::MutexGuard<'_, MetadataStore>, topic: &TopicRef, range: std::ops::Range<i32>) -> Result<(), StateError> {
        let configs = md.image().topic(topic.0).map(|t| t.configs.clone()).unwrap_or_default();
        self.creating.lock().unwrap_or_else(|p| p.into_inner()).insert(topic.0.to_string());
        drop(md);
        let settings = TopicSettings::resolve(&configs, &self.settings().merged);
        let (mut opened, mut failed) = (Vec::with_capacity(range.len()), Ok(()));
        for p in range {
            match open_partition(&self.config.data_dir, topic, p, &settings) {
                Ok(part) => opened.push((p, Arc::new(part))),
                Err(e) => {
                    failed = Err(e);
                    break;
                }
            }
        }
        if failed.is_ok() {
            // The new directories' entries (see `data_dir::create_partition_dir`).
            failed = data_dir::sync_dir(&self.config.data_dir).map_err(StateError::from);
        }
        let md = self.local();
        self.creating.lock().unwrap_or_else(|p| p.into_inner()).remove(topic.0);
        let configs = md.image().topic(topic.0).map(|t| t.configs.clone()).unwrap_or_default();
        let settings = TopicSettings::resolve(&configs, &self.settings().merged);
        let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
        for (p, part) in opened {
            part.set_settings(settings.clone());
            map.insert((topic.0.into(), p), part);
        }
        failed
    }

    /// Grows a topic to `total` partitions.
    pub fn create_partitions(&self, name: &str, total: u32) -> Result<(), StateError> {
        if let Some(c) = self.cluster() {
            let Some(t) = self.topic(name) else { return Ok(()) };
            self.with_image(|i| self.check_partition_limit(i, u64::from(total.saturating_sub(t.partitions))))?;
            let assignments = c.place(t.topic_id, t.partitions, total.saturating_sub(t.partitions), c.replication_factor(&t.topic_id))?;
            return c.commit_topic(t.topic_id, MetadataRecord::CreatePartitions { name: name.into(), total }, assignments);
        }
        let mut md = self.local_settled(name);
        let Some(topic) = md.image().topic(name).cloned() else { return Ok(()) };
        self.check_partition_limit(md.image(), u64::from(total.saturating_sub(topic.partitions)))?;
        md.commit(MetadataRecord::CreatePartitions { name: name.into(), total })?;
        self.open_committed_partitions(md, &(name, topic.topic_id), topic.partitions as i32..total as i32)
    }

    /// Opens (creating if needed) partitions `indexes` of topic `name`.
    pub(crate) fn open_partitions(&self, topic: &TopicRef, indexes: Vec<i32>, configs: &BTreeMap<String, String>) -> Result<(), StateError> {
        let settings = TopicSettings::resolve(configs, &self.settings().merged);
        self.open_new_partitions(topic, indexes, &settings)
    }

    /// Names of the topics with partitions open here.
    pub(crate) fn open_topic_names(&self) -> Vec<String> {
        let parts = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = parts.keys().map(|(t, _)| t.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    fn open_new_partitions(
        &self,
        topic: &TopicRef,
        range: impl IntoIterator<Item = i32>,
        settings: &TopicSettings,
    ) -> Result<(), StateError> {
        for p in range {
            let part = open_partition(&self.config.data_dir, topic, p, settings)?;
            if self.cluster().is_some() {
                // Serves nothing until the publisher hands it its assignment.
                let stored = self.stored_hw.lock().unwrap_or_else(|p| p.into_inner()).remove(&(topic.0.to_string(), p));
                part.await_assignment(self.config.node_id, stored);
            }
            self.partitions.write().unwrap_or_else(|p| p.into_inner()).insert((topic.0.into(), p), Arc::new(part));
        }
        // The new directories' entries (see `data_dir::create_partition_dir`).
        data_dir::sync_dir(&self.config.data_dir)?;
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
    /// apply to the topic's open partitions. Cluster mode: see `Broker::alter_in_cluster`.
    pub fn update_topic_configs<E>(
        &self,
        name: &str,
        edit: impl Fn(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, E>,
    ) -> Result<Result<(), E>, StateError> {
        if let Some(c) = self.cluster() {
            return self.alter_in_cluster(
                || self.topic(name).map(|t| (t.topic_id, t.configs)).ok_or_else(|| StateError::UnknownTopic(name.into())),
                edit,
                |topic_id, configs, expected| {
                    let record = MetadataRecord::SetTopicConfigs { name: name.into(), configs, expected: Some(expected) };
                    c.commit_topic(topic_id, record, Vec::new())
                },
            );
        }
        let mut md = self.local();
        let Some(current) = md.image().topic(name).map(|t| t.configs.clone()) else {
            return Err(StateError::UnknownTopic(name.into()));
        };
        let configs = match edit(&current) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        md.commit(MetadataRecord::SetTopicConfigs { name: name.into(), configs, expected: None })?;
        drop(md);
        self.apply_topic_configs(name);
        Ok(Ok(()))
    }

    /// Applies a topic's config overrides, as the image holds them now, to its open
    /// partitions (serialized with `refresh_dynamic_configs`, see `config_refresh`).
    pub(crate) fn apply_topic_configs(&self, name: &str) {
        let _serial = self.config_refresh.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = self.topic(name) {
            self.apply_topic_image(&t);
        }
    }

    /// Applies the overrides of `t` (read from the image under `config_refresh`, which the
    /// caller holds) to its open partitions.
    pub(crate) fn apply_topic_image(&self, t: &TopicImage) {
        let settings = TopicSettings::resolve(&t.configs, &self.settings().merged);
        for p in 0..t.partitions as i32 {
            if let Some(part) = self.partition(&t.name, p) {
                part.set_settings(settings.clone());
            }
        }
    }

    /// Deletes a topic: the record first, then its data from disk. Before the name can be
    /// reused, every partition log is retired: its directory renamed to `*-delete` (and
    /// its parent fsynced) and the log taken offline, so a cleaner pass or a produce still
    /// holding it can never touch a new topic's files. The renames run without the
    /// metadata lock, which every request reading the image waits on; meanwhile the name
    /// is marked busy, so creating it again waits (`local_settled`).
    pub fn delete_topic(&self, name: &str) -> Result<(), StateError> {
        if let Some(c) = self.cluster() {
            let Some(t) = self.topic(name) else { return Err(StateError::UnknownTopic(name.into())) };
            let record = MetadataRecord::DeleteTopic { name: name.into() };
            // Of two concurrent deletes the controller commits one; the other is refused.
            return c.commit_topic(t.topic_id, record, Vec::new()).map_err(|e| match e {
                StateError::Refused(_) => StateError::UnknownTopic(name.into()),
                e => e,
            });
        }
        let mut md = self.local_settled(name);
        // Checked under the lock: of two concurrent deletes only one commits a record.
        if md.image().topic(name).is_none() {
            return Err(StateError::UnknownTopic(name.into()));
        }
        md.commit(MetadataRecord::DeleteTopic { name: name.into() })?;
        let removed = self.take_topic_partitions(name);
        self.creating.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string());
        drop(md);
        let retired = Self::retire_partitions(&removed);
        self.creating.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        Self::remove_partition_data(removed, retired)
    }

    /// Closes topic `name`'s open partitions and removes their data (its deletion is
    /// committed; cluster mode's publisher).
    pub(crate) fn remove_topic_partitions(&self, name: &str) -> Result<(), StateError> {
        let removed = self.take_topic_partitions(name);
        let retired = Self::retire_partitions(&removed);
        Self::remove_partition_data(removed, retired)
    }

    fn take_topic_partitions(&self, name: &str) -> Vec<Arc<Partition>> {
        let removed: Vec<Arc<Partition>> = {
            let mut parts = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<_> = parts.keys().filter(|(t, _)| t == name).cloned().collect();
            keys.into_iter().filter_map(|k| parts.remove(&k)).collect()
        };
        removed
    }

    /// Retires each removed partition: its directory renamed to `*-delete` and its log
    /// taken offline (call it before the name can be reused). Returns the renamed dirs.
    fn retire_partitions(removed: &[Arc<Partition>]) -> (Vec<std::path::PathBuf>, Result<(), runnel_storage::StorageError>) {
        let mut doomed = Vec::with_capacity(removed.len());
        let mut failed = Ok(());
        for part in removed {
            let _maintenance = part.maintenance();
            let mut log = part.log();
            let to = data_dir::doomed_name(log.dir());
            match log.retire(&to) {
                Ok(()) => doomed.push(to),
                // Left in place, the dir is removed by the next startup's sweep (its
                // topic id is deleted in the committed image).
                Err(e) => failed = Err(e),
            }
        }
        (doomed, failed)
    }

    /// Wakes the retired partitions' waiters and removes their directories.
    fn remove_partition_data(
        removed: Vec<Arc<Partition>>,
        (doomed, failed): (Vec<std::path::PathBuf>, Result<(), runnel_storage::StorageError>),
    ) -> Result<(), StateError> {
        for part in &removed {
            part.wake_waiters();
        }
        for dir in doomed {
            data_dir::remove_doomed(&dir)?;
        }
        Ok(failed?)
    }
}
