//! One partition as the broker holds it: its log (behind a lock), its topic settings, and
//! the fetch waiters parked on it.
//!
//! Invariant: a waiter registered before a read that found too little data is woken by
//! the next append (it registers first, then reads, then waits), so no append is missed.
//! Registering is O(1) (an entry in `Notify`'s intrusive list, removed when dropped),
//! whatever the number of fetches parked on the partition.

use std::sync::{Mutex, MutexGuard, RwLock};

use runnel_storage::PartitionLog;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::topic_config::TopicSettings;

pub struct Partition {
    pub topic: String,
    pub index: i32,
    log: Mutex<PartitionLog>,
    settings: RwLock<TopicSettings>,
    appended: Notify,
}

impl Partition {
    pub fn new(topic: String, index: i32, log: PartitionLog, settings: TopicSettings) -> Self {
        Self { topic, index, log: Mutex::new(log), settings: RwLock::new(settings), appended: Notify::new() }
    }

    /// The log, locked. Hold it only for one storage call.
    pub fn log(&self) -> MutexGuard<'_, PartitionLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn settings(&self) -> TopicSettings {
        self.settings.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_settings(&self, settings: TopicSettings) {
        self.log().set_config(settings.log.clone());
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
    }

    /// A future that completes at the next append to this partition: registered as it is
    /// created, so an append between this call and the first poll is not missed.
    pub fn next_append(&self) -> Notified<'_> {
        self.appended.notified()
    }

    /// Wakes every fetch parked on this partition (after an append).
    pub fn wake_waiters(&self) {
        self.appended.notify_waiters();
    }
}
