//! The committed offsets of one group: (topic, partition) → offset, leader epoch, metadata
//! and when it was committed; and which of them have expired (Kafka's KIP-211 rules).
//! Owns no I/O: the coordinator writes each change to `__consumer_offsets` first.

use std::collections::{BTreeMap, HashSet};

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
    /// The `__consumer_offsets` offset each was written at, when known (see
    /// [`put_written`](Self::put_written)).
    written_at: BTreeMap<(String, i32), i64>,
}

impl OffsetStore {
    pub fn get(&self, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.offsets.get(&(topic.to_string(), partition))
    }

    pub fn put(&mut self, topic: String, partition: i32, offset: CommittedOffset) {
        self.written_at.remove(&(topic.clone(), partition));
        self.offsets.insert((topic, partition), offset);
    }

    /// Puts an offset written at `log_offset` in `__consumer_offsets`, unless one written
    /// later is already there (commits are applied once replicated, which may end out of
    /// order).
    pub fn put_written(&mut self, topic: String, partition: i32, offset: CommittedOffset, log_offset: i64) {
        let key = (topic, partition);
        if self.written_at.get(&key).is_some_and(|at| *at > log_offset) {
            return;
        }
        self.written_at.insert(key.clone(), log_offset);
        self.offsets.insert(key, offset);
    }

    pub fn remove(&mut self, topic: &str, partition: i32) -> Option<CommittedOffset> {
        self.written_at.remove(&(topic.to_string(), partition));
        self.offsets.remove(&(topic.to_string(), partition))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&(String, i32), &CommittedOffset)> {
        self.offsets.iter()
    }

    /// The partitions with a committed offset whose topic matches `pred`.
    pub fn partitions_where(&self, pred: impl Fn(&str) -> bool) -> Vec<(String, i32)> {
        self.offsets.keys().filter(|(t, _)| pred(t)).cloned().collect()
    }

    /// Partitions whose offsets have expired at `now_ms`. `base` is when the group became
    /// Empty (a consumer group); `None` for a simple group or a Stable one, whose offsets
    /// age from their own commit. Offsets of the `keep` topics (what a Stable group
    /// subscribes to) never expire. An explicit expire timestamp (old clients) wins.
    pub fn expired(&self, now_ms: i64, retention_ms: i64, base: Option<i64>, keep: &HashSet<String>) -> Vec<(String, i32)> {
        self.offsets
            .iter()
            .filter(|((t, _), _)| !keep.contains(t))
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
        let none = HashSet::new();
        // Simple group: each offset ages from its commit.
        assert_eq!(s.expired(600, 200, None, &none), vec![("t".into(), 0), ("t".into(), 2)]);
        // Consumer group empty since 450: all or nothing (except explicit expiry).
        assert_eq!(s.expired(600, 200, Some(450), &none), vec![("t".into(), 2)]);
        assert_eq!(s.expired(650, 200, Some(450), &none).len(), 3);
    }

    #[test]
    fn a_later_write_wins_whichever_is_applied_first() {
        let mut s = OffsetStore::default();
        s.put_written("t".into(), 0, CommittedOffset { offset: 9, ..at(0) }, 20);
        s.put_written("t".into(), 0, CommittedOffset { offset: 5, ..at(0) }, 10);
        assert_eq!(s.get("t", 0).unwrap().offset, 9);
        s.put_written("t".into(), 0, CommittedOffset { offset: 12, ..at(0) }, 30);
        assert_eq!(s.get("t", 0).unwrap().offset, 12);
    }

    #[test]
    fn subscribed_topics_never_expire() {
        let mut s = OffsetStore::default();
        s.put("sub".into(), 0, at(0));
        s.put("old".into(), 0, at(0));
        s.put("old".into(), 1, at(500));
        let keep: HashSet<String> = ["sub".to_string()].into();
        // A Stable group (KIP-211): offsets of topics it no longer subscribes to age from
        // their commit; those of its subscription stay.
        assert_eq!(s.expired(600, 200, None, &keep), vec![("old".into(), 0)]);
        assert_eq!(s.expired(10_000, 200, None, &keep).len(), 2);
        assert_eq!(s.partitions_where(|t| t == "old"), vec![("old".into(), 0), ("old".into(), 1)]);
    }
}
