//! The log cleaner: background loops that apply retention to `cleanup.policy=delete`
//! partitions (every `log.retention.check.interval.ms`) and compact
//! `cleanup.policy=compact` partitions (every `log.cleaner.backoff.ms`).
//!
//! Each pass reads every partition's current settings, so AlterConfigs and
//! IncrementalAlterConfigs take effect at the next pass without a restart. The work itself
//! belongs to `runnel-storage` (`apply_retention`, `plan_compaction` / `run` /
//! `prepare_install` / `commit` / `finish_install`); this module only schedules it. A
//! compaction holds the partition's lock only to plan, to check what it will install and
//! to put the new segments in place, never while it reads, writes, renames or fsyncs
//! files; its install holds the partition's maintenance lock, as retention does.
//! Retention likewise holds the log's lock only to take expired segments out of the log,
//! not while their files are deleted and the log start checkpointed.
//! Errors are logged and the next pass tries again; nothing here panics.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::now_ms;
use crate::state::Broker;


/// Applies retention to every partition whose policy includes `delete` (and, for every
/// partition, deletes segments wholly below a log start moved by DeleteRecords).
pub fn retention_pass(broker: &Broker) {
    let now = now_ms();
    for part in broker.all_partitions() {
        let settings = part.settings();
        let cfg = if settings.delete { settings.retention } else { Default::default() };
        let _maintenance = part.maintenance();
        // The log's lock only to take the segments out; their files go without it.
        let deletion = part.log().plan_retention(&cfg, now);
        match deletion.run() {
            Ok(out) if out.segments_deleted > 0 => tracing::info!(
                topic = %part.topic, partition = part.index, segments = out.segments_deleted,
                bytes = out.bytes_deleted, "retention deleted old segments"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(topic = %part.topic, partition = part.index, error = %e, "retention failed"),
        }
    }
}

/// Forgets producers idle for `producer.id.expiration.ms` in every partition.
pub fn producer_expiry_pass(broker: &Broker) {
    // Dynamic: the value in effect now (static, or set by AlterConfigs).
    let (now, ttl) = (now_ms(), broker.effective_config().producer_id_expiration_ms());
    for part in broker.all_partitions() {
        let n = part.log().remove_expired_producers(now, ttl);
        if n > 0 {
            tracing::debug!(topic = %part.topic, partition = part.index, producers = n, "expired idle producers");
        }
    }
}

/// Compacts every partition whose policy includes `compact` and that is due.
pub fn compaction_pass(broker: &Broker) {
    for part in broker.all_partitions() {
        let settings = part.settings();
        if !settings.compact {
            continue;
        }
        let Some(job) = part.log().plan_compaction(&settings.compaction, now_ms(), false) else {
            continue;
        };
        let result = job.run().and_then(|out| {
            let _maintenance = part.maintenance();
            let mut install = part.log().prepare_install(out);
            let committed = install.commit();
            part.log().finish_install(install, committed)
        });
        match result {
            Ok(s) => tracing::info!(
                topic = %part.topic, partition = part.index, removed = s.records_removed,
                bytes_before = s.bytes_before, bytes_after = s.bytes_after,
                segments_before = s.segments_before, segments_after = s.segments_after, "compacted"
            ),
            Err(e) => tracing::error!(topic = %part.topic, partition = part.index, error = %e, "compaction failed"),
        }
    }
}

/// Runs `pass` on a blocking thread every `every` until shutdown.
pub async fn run_every(broker: Arc<Broker>, every: Duration, shutdown: CancellationToken, pass: fn(&Broker)) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || pass(&b)).await;
            }
        }
    }
}
