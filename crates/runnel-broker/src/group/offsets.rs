//! The committed offsets of one group: (topic, partition) → offset, leader epoch, metadata
//! and when it was committed; and which of them have expired (Kafka's KIP-211 rules).
//! Owns no I/O: the coordinator writes each change to `__consumer_offsets` first.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One committed offset, as stored in `__consumer_offsets` (JSON value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    /// Wall-clock milliseconds of the commit.
    pub commit_timestamp: i64,
    /// Set only by OffsetCommit v2–v4 with an explicit `retention_time_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_timestamp: Option<i64>,
}

#[derive(Debug, Default, Clone)]
pub struct OffsetStore {
    offsets: BTreeMap<(String, i32), CommittedOffset>,
}

impl OffsetStore {
    pub fn get(&self, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.offsets.get(&(topic.to_string(), partition))
    }

    pub fn put(&mut self, topic: String, partition: i32, offset: CommittedOffset) {
        self.offsets.insert((topic, partition), offset);
    }

    pub fn remove(&mut self, topic: &str, partition: i32) -> Option<CommittedOffset> {
        self.offsets.remove(&(topic.to_string(), partition))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&(String, i32), &CommittedOffset)> {
        self.offsets.iter()
    }

    /// Partitions whose offsets have expired at `now_ms`. `base` is when the group became
    /// Empty (a consumer group); `None` for a simple group, whose offsets age from their
    /// own commit. An explicit expire timestamp (old clients) wins.
    pub fn expired(&self, now_ms: i64, retention_ms: i64, base: Option<i64>) -> Vec<(String, i32)> {
        self.offsets
            .iter()
            .filter(|(_, o)| match o.expire_timestamp {
                Some(t) => now_ms >= t,
                None => now_ms - base.unwrap_or(o.commit_timestamp) >= retention_ms,
            })
            .map(|(k, _)| k.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ts: i64) -> CommittedOffset {
        CommittedOffset { offset: 1, leader_epoch: -1, metadata: String::new(), commit_timestamp: ts, expire_timestamp: None }
    }

    #[test]
    fn expiry_from_empty_since_or_commit_time() {
        let mut s = OffsetStore::default();
        s.put("t".into(), 0, at(100));
        s.put("t".into(), 1, at(500));
        s.put("t".into(), 2, CommittedOffset { expire_timestamp: Some(50), ..at(0) });
        // Simple group: each offset ages from its commit.
        assert_eq!(s.expired(600, 200, None), vec![("t".into(), 0), ("t".into(), 2)]);
        // Consumer group empty since 450: all or nothing (except explicit expiry).
        assert_eq!(s.expired(600, 200, Some(450)), vec![("t".into(), 2)]);
        assert_eq!(s.expired(650, 200, Some(450)).len(), 3);
    }
}
