//! One partition as the broker holds it: its log (behind a lock), its topic settings, and
//! the fetch waiters parked on it.
//!
//! Invariant: a waiter registered before a read that found too little data is woken by
//! the next append (it registers first, then reads, then waits), so no append is missed.

use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use runnel_storage::PartitionLog;
use tokio::sync::Notify;

use crate::topic_config::TopicSettings;

pub struct Partition {
    pub topic: String,
    pub index: i32,
    log: Mutex<PartitionLog>,
    settings: RwLock<TopicSettings>,
    waiters: Mutex<Vec<Weak<Notify>>>,
}

impl Partition {
    pub fn new(topic: String, index: i32, log: PartitionLog, settings: TopicSettings) -> Self {
        Self { topic, index, log: Mutex::new(log), settings: RwLock::new(settings), waiters: Mutex::new(Vec::new()) }
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

    /// Parks `waiter` until the next append to this partition.
    pub fn add_waiter(&self, waiter: &Arc<Notify>) {
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        w.retain(|x| x.strong_count() > 0);
        w.push(Arc::downgrade(waiter));
    }

    /// Wakes every fetch parked on this partition (after an append).
    pub fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|p| p.into_inner()));
        for w in waiters {
            if let Some(n) = w.upgrade() {
                n.notify_one();
            }
        }
    }
}
