//! Per-partition log configuration, with Kafka's setting names in the docs and Kafka's
//! defaults.

/// Settings of one partition log. Kafka names in brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll the active segment before it would exceed this size [`segment.bytes`].
    pub segment_bytes: u64,
    /// Roll the active segment once its first append is this old, in ms [`segment.ms`].
    pub segment_ms: u64,
    /// Bytes of log between two sparse offset-index entries [`index.interval.bytes`].
    pub index_interval_bytes: u64,
    /// fsync after this many records since the last flush [`flush.messages`].
    pub flush_messages: u64,
    /// `maybe_flush` fsyncs when this many ms passed since the last flush [`flush.ms`].
    pub flush_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            flush_messages: u64::MAX,
            flush_ms: u64::MAX,
        }
    }
}

/// Retention of a `cleanup.policy=delete` log: whole closed segments go once they are too
/// old or the log is too big. `None` means no limit (Kafka's -1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionConfig {
    /// Delete a closed segment whose largest timestamp is older than this [`retention.ms`].
    pub retention_ms: Option<u64>,
    /// Delete the oldest closed segments while the log stays at least this big without
    /// them [`retention.bytes`].
    pub retention_bytes: Option<u64>,
}

/// Settings of compaction (`cleanup.policy=compact`), Kafka names in brackets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionConfig {
    /// Tombstones stay readable this long (by their batch's timestamp) [`delete.retention.ms`].
    pub delete_retention_ms: u64,
    /// Clean only when dirty bytes / cleanable bytes reach this [`min.cleanable.dirty.ratio`].
    pub min_cleanable_dirty_ratio: f64,
    /// Segments with records newer than this are not cleaned yet [`min.compaction.lag.ms`].
    pub min_compaction_lag_ms: u64,
    /// Dirty records older than this force a clean whatever the ratio [`max.compaction.lag.ms`].
    pub max_compaction_lag_ms: u64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX as u64,
        }
    }
}
