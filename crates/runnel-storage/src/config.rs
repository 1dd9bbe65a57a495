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
