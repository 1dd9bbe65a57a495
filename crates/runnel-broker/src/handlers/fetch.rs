//! Fetch (key 1) v4–v16. Topics by name, or by topic id (v13+).
//!
//! Fetch sessions (KIP-227, v7+; the cache is `crate::fetch_session`): a full fetch with
//! epoch 0 is answered in full and creates a session when the cache has room (its id in
//! the answer; 0 when none was made), closing the session it names if any; epoch -1 closes
//! it and makes none. An incremental fetch (session id, epoch n) updates the session with
//! the partitions it names and the ones it forgets (`forgotten_topics_data`), reads every
//! partition of the session, and answers only those with records, an error, or a high
//! watermark, last stable offset or log start offset that moved. Refused as a whole, with
//! no partitions: an unknown session (FETCH_SESSION_ID_NOT_FOUND), an epoch other than
//! the session's next (INVALID_FETCH_SESSION_EPOCH), names where the session has topic
//! ids or the reverse (FETCH_SESSION_TOPIC_ID_ERROR). Partition errors
//! (NOT_LEADER_OR_FOLLOWER after a leader change …) are always sent and re-send the
//! partition once they clear, as in Kafka; the fetcher then moves the partition to its
//! new leader and forgets it here.
//!
//! A partition named more than once is answered once (the last entry's offset and limits
//! count), as Kafka merges its fetch map; so is a topic named more than once.
//!
//! Long poll: if fewer than `min_bytes` are available the request parks a waiter on each
//! partition it reads and sleeps until an append wakes it, `max_wait_ms` passes, or the
//! broker shuts down — never a busy loop. Limits: `max_bytes` for the response and
//! `partition_max_bytes` per partition, except that the first batch found is always
//! returned whole, as Kafka does, so a consumer can always make progress.
//!
//! Cluster mode: a fetch with a replica id (v4–v14 `replica_id`, v15+ `replica_state`,
//! KIP-903) is a follower's: it reads up to the log end, tells the leader the follower's
//! log end (its fetch offset), which moves the high watermark and may bring the follower
//! back into the ISR, and waits for appends. A consumer's fetch reads only below the high
//! watermark and waits for it to move. Both are served by the leader only
//! (NOT_LEADER_OR_FOLLOWER, with the current leader from v12), and a
//! `current_leader_epoch` (v9+) older than ours is FENCED_LEADER_EPOCH, newer
//! UNKNOWN_LEADER_EPOCH.
//! Isolation (v4+): a consumer with `read_uncommitted` reads below the high watermark;
//! with `read_committed` only below the last stable offset (never above the high watermark) (below it every transaction is decided) and gets the aborted
//! transactions overlapping what it reads (from the `.txnindex` files), so the client can
//! drop their records. Every answer carries the last stable offset.
//!
//! Zero copy: record bytes are never read into memory here. Each partition's records field
//! is encoded as a placeholder, and the connection `sendfile`s the segment ranges in its
//! place (see `runnel_protocol::splice`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};
use runnel_metadata::Uuid;
use runnel_protocol::splice::{Placeholder, TOKEN_LEN};
use runnel_storage::{ReadSlice, StorageError};
use tokio::sync::futures::Notified;
use tokio::time::Instant;

use runnel_metadata::acl::AclOperation;

use super::Ctx;
use crate::errors::{code, KafkaError};
use crate::fetch_session::{Answered, Params, PartitionKey, Session, TopicKey, FINAL_EPOCH, INITIAL_EPOCH, INVALID_SESSION_ID};
use crate::partition::{NotServing, Partition};

pub const MIN_VERSION: i16 = 4;
pub const MAX_VERSION: i16 = 16;

/// `isolation_level` of a read_committed consumer.
const READ_COMMITTED: i8 = 1;

/// Topic ids are used from this version on (KIP-516).
const TOPIC_ID_VERSION: i16 = 13;

/// Fetch sessions (KIP-227) from this version on.
const SESSION_VERSION: i16 = 7;

/// One partition of the request (or of its session), resolved.
struct Wanted {
    key: PartitionKey,
    topic_slot: usize,
    params: Params,
    /// The error to answer when the partition does not exist or is not served here.
    part: Result<Arc<Partition>, KafkaError>,
    /// With NOT_LEADER_OR_FOLLOWER: the leader and its epoch.
    current_leader: Option<(i32, i32)>,
}

/// A topic of the request, looked up once.
struct TopicSlot {
    slot: usize,
    name: Option<String>,
    denied: bool,
}

/// How the request stands to fetch sessions (KIP-227, Fetch v7+).
enum Mode {
    /// No session: epoch -1 (or before v7), or no session is kept.
    Sessionless,
    /// Epoch 0: answered in full, and a session is created if the cache has room.
    Full,
    /// An incremental fetch in this session, which must still be at `epoch` when answered.
    Incremental { session: Arc<Mutex<Session>>, epoch: i32 },
}

/// Who fetches: a consumer (-1) or the follower replica with this broker id.
pub(crate) fn replica_id(req: &FetchRequest, version: i16) -> i32 {
    if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    }
}

/// The one place a partition's refusal becomes a Kafka error.
pub(crate) fn not_serving_code(e: NotServing) -> KafkaError {
    match e {
        NotServing::NotLeader { .. } | NotServing::NotEnoughReplicas => KafkaError::NotLeaderOrFollower,
        NotServing::FencedEpoch => KafkaError::FencedLeaderEpoch,
        NotServing::UnknownEpoch => KafkaError::UnknownLeaderEpoch,
    }
}

pub async fn handle(ctx: &Ctx, req: FetchRequest) -> FetchResponse {
    let use_ids = ctx.version >= TOPIC_ID_VERSION;
    let replica = replica_id(&req, ctx.version);
    let follower = replica >= 0;
    let topic_key = |name: &TopicName, id: Uuid| if use_ids { TopicKey::Id(id) } else { TopicKey::Name(name.0.clone()) };
    // The partitions the request names, each once: a partition named more than once is
    // merged, as Kafka's fetch map does (one answer, at its first place, with the last
    // entry's offset and limit).
    let mut named: Vec<(PartitionKey, Params)> = Vec::new();
    let mut named_slots: HashMap<PartitionKey, usize> = HashMap::new();
    for t in &req.topics {
        let topic = topic_key(&t.topic, t.topic_id);
        for p in &t.partitions {
            let leader_epoch = if ctx.version >= 9 { p.current_leader_epoch } else { -1 };
            let params = Params { fetch_offset: p.fetch_offset, max_bytes: p.partition_max_bytes.max(0) as usize, leader_epoch };
            let key = (topic.clone(), p.partition);
            match named_slots.get(&key) {
                Some(&i) => named[i].1 = params,
                None => {
                    named_slots.insert(key.clone(), named.len());
                    named.push((key, params));
                }
            }
        }
    }
    let cache = ctx.broker.fetch_sessions();
    let (session_id, epoch) = if ctx.version >= SESSION_VERSION { (req.session_id, req.session_epoch) } else { (INVALID_SESSION_ID, FINAL_EPOCH) };
    let mode = if epoch == INITIAL_EPOCH || epoch == FINAL_EPOCH {
        // A full fetch closes the session it names.
        cache.remove(session_id);
        if epoch == INITIAL_EPOCH { Mode::Full } else { Mode::Sessionless }
    } else {
        let cap = cache.max_partitions();
        let updated = cache.incremental(session_id, epoch, use_ids, std::time::Instant::now(), |s| {
            for (key, params) in &named {
                // Past the bound the session is closed anyway: stop growing it (under the
                // cache's lock) now rather than after millions of names.
                if s.len() > cap {
                    return;
                }
                s.upsert(key.clone(), *params);
            }
            for f in &req.forgotten_topics_data {
                let topic = topic_key(&f.topic, f.topic_id);
                for &p in &f.partitions {
                    s.forget(&(topic.clone(), p));
                }
            }
        });
        match updated {
            Err(e) => return session_error(e.kafka(), INVALID_SESSION_ID),
            // Nothing left in the session: it is closed, the request answered as it is.
            Ok(None) => Mode::Sessionless,
            Ok(Some(session)) => {
                let s = lock(&session);
                named = s.partitions().map(|(k, p)| (k.clone(), p)).collect();
                let epoch = s.epoch();
                drop(s);
                Mode::Incremental { session, epoch }
            }
        }
    };
    let wanted = resolve(ctx, named, replica);
    let max_bytes = req.max_bytes.max(0) as usize;
    let committed = req.isolation_level == READ_COMMITTED;
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let results = loop {
        // Register before reading: an append after the read still wakes us.
        let mut appended: Vec<Pin<Box<Notified<'_>>>> =
            wanted.iter().filter_map(|w| w.part.as_ref().ok()).map(|p| Box::pin(p.next_change(follower))).collect();
        let results = read_all(&wanted, max_bytes, follower, committed);
        let total: usize = results.iter().map(|(_, slice)| slice.as_ref().map_or(0, |s| s.len())).sum();
        let has_error = results.iter().any(|(r, _)| r.error_code != 0);
        if total >= min_bytes || has_error || Instant::now() >= deadline {
            break results;
        }
        ctx.metrics.fetch_waiters.inc();
        let any_append = std::future::poll_fn(|cx| {
            if appended.iter_mut().any(|n| n.as_mut().poll(cx).is_ready()) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        });
        tokio::select! {
            _ = any_append => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = ctx.shutdown.cancelled() => {}
        }
        ctx.metrics.fetch_waiters.dec();
        if ctx.shutdown.is_cancelled() || Instant::now() >= deadline {
            break read_all(&wanted, max_bytes, follower, committed);
        }
    };
    let answered = |r: &PartitionData| Answered {
        high_watermark: r.high_watermark,
        last_stable_offset: r.last_stable_offset,
        log_start_offset: r.log_start_offset,
    };
    // Which answers are sent: all, except in an incremental fetch those that tell the
    // fetcher nothing new.
    let mut response_session = INVALID_SESSION_ID;
    let mut send = vec![true; wanted.len()];
    match mode {
        Mode::Sessionless => {}
        Mode::Full => {
            let parts = wanted.iter().zip(&results).map(|(w, (r, _))| (w.key.clone(), w.params, answered(r)));
            response_session = cache.create(std::time::Instant::now(), follower, use_ids, parts);
            if response_session != INVALID_SESSION_ID {
                ctx.fetch_sessions.created(cache, response_session);
            }
        }
        Mode::Incremental { session, epoch } => {
            let mut s = lock(&session);
            // Another request of this session was answered meanwhile (a duplicate).
            if s.epoch() != epoch {
                return session_error(KafkaError::InvalidFetchSessionEpoch, s.id());
            }
            response_session = s.id();
            for ((w, (r, slice)), send) in wanted.iter().zip(&results).zip(&mut send) {
                let has_records = slice.as_ref().is_some_and(|s| !s.is_empty());
                *send = s.answer(&w.key, answered(r), has_records, r.error_code != 0);
            }
        }
    }
    let mut topics = topic_slots(&wanted);
    let mut splices = Vec::new();
    for ((w, (mut r, slice)), send) in wanted.iter().zip(results).zip(send) {
        if !send {
            continue;
        }
        if let Some(slice) = slice.filter(|s| !s.is_empty()) {
            let token = placeholder_token(splices.len());
            r.records = Some(Bytes::copy_from_slice(&token));
            splices.push(Placeholder { token, len: slice.len(), payload: slice });
        }
        topics[w.topic_slot].partitions.push(r);
    }
    topics.retain(|t| !t.partitions.is_empty());
    *ctx.splices.lock().unwrap_or_else(|p| p.into_inner()) = splices;
    FetchResponse::default().with_responses(topics).with_session_id(response_session)
}

/// The answer to a fetch refused as a whole for its session.
fn session_error(e: KafkaError, session_id: i32) -> FetchResponse {
    FetchResponse::default().with_error_code(code(e)).with_session_id(session_id)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Looks up each partition: its topic (once per topic), the ACL, whether it is served
/// here and led at the fetcher's epoch. A follower's fetch offset is taken as its log
/// end for every partition it fetches (those of its session included).
fn resolve(ctx: &Ctx, named: Vec<(PartitionKey, Params)>, replica: i32) -> Vec<Wanted> {
    let follower = replica >= 0;
    // Followers need CLUSTER_ACTION on the cluster, consumers READ on each topic.
    let cluster_action = follower && ctx.may_cluster(AclOperation::ClusterAction);
    let mut topics: HashMap<TopicKey, TopicSlot> = HashMap::new();
    let mut wanted = Vec::with_capacity(named.len());
    for (key, params) in named {
        let next_slot = topics.len();
        let topic = topics.entry(key.0.clone()).or_insert_with(|| {
            let name = match &key.0 {
                TopicKey::Name(n) => Some(n.to_string()),
                TopicKey::Id(id) => ctx.broker.topic_name_by_id(id),
            };
            let denied = name.as_deref().is_some_and(|n| if follower { !cluster_action } else { !ctx.may_topic(AclOperation::Read, n) });
            TopicSlot { slot: next_slot, name, denied }
        });
        let index = key.1;
        let mut part = match &topic.name {
            _ if topic.denied => Err(KafkaError::TopicAuthorizationFailed),
            None => Err(KafkaError::UnknownTopicId),
            Some(n) => ctx.broker.partition(n, index).ok_or_else(|| match ctx.broker.offline_reason(n, index) {
                Some(_) => KafkaError::KafkaStorageError,
                None => KafkaError::UnknownTopicOrPartition,
            }),
        };
        let mut current_leader = None;
        if let Ok(pt) = &part {
            match pt.check_leader(params.leader_epoch) {
                Err(e) => {
                    if let NotServing::NotLeader { leader, leader_epoch } = e {
                        current_leader = Some((leader, leader_epoch));
                    }
                    part = Err(not_serving_code(e));
                }
                Ok(_) if follower => {
                    if let Some(change) = pt.follower_fetched(replica, params.fetch_offset) {
                        crate::replication::propose_isr(&ctx.broker, pt.clone(), change);
                    }
                }
                Ok(_) => {}
            }
        }
        wanted.push(Wanted { key, topic_slot: topic.slot, params, part, current_leader });
    }
    wanted
}

/// One empty answer per topic of `wanted`, in the order the topics first come.
fn topic_slots(wanted: &[Wanted]) -> Vec<FetchableTopicResponse> {
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for w in wanted {
        if w.topic_slot == topics.len() {
            let t = FetchableTopicResponse::default();
            topics.push(match &w.key.0 {
                TopicKey::Name(n) => t.with_topic(TopicName(n.clone())),
                TopicKey::Id(id) => t.with_topic_id(*id),
            });
        }
    }
    topics
}

/// A partition's answer without records: `e`, with the current leader where known. Kafka
/// sends an empty (not null) aborted list when it does not read at all.
fn refused(d: PartitionData, e: KafkaError, current: Option<(i32, i32)>) -> (PartitionData, Option<ReadSlice>) {
    let mut d = d.with_error_code(code(e)).with_aborted_transactions(Some(Vec::new()));
    if let Some((leader, epoch)) = current {
        d.current_leader = LeaderIdAndEpoch::default().with_leader_id(BrokerId(leader)).with_leader_epoch(epoch);
    }
    (d, None)
}

/// The placeholder for the `n`th record section of a response: 16 random bytes drawn once
/// per process, its last four varied by `n` so that one response's placeholders differ.
/// No client can guess it, so nothing encoded before a placeholder matches it (as with a
/// fresh random token each time, which cost a `getrandom(2)` call per placeholder).
fn placeholder_token(n: usize) -> [u8; TOKEN_LEN] {
    static BASE: std::sync::OnceLock<[u8; TOKEN_LEN]> = std::sync::OnceLock::new();
    let mut token = *BASE.get_or_init(|| *Uuid::new_v4().as_bytes());
    for (t, b) in token[TOKEN_LEN - 4..].iter_mut().zip((n as u32).to_be_bytes()) {
        *t ^= b;
    }
    token
}

/// Finds what to send of every wanted partition within the limits: the partition's
/// answer (records still empty) and the file ranges of its records. Reads only batch
/// headers (from the page cache, normally), never record bytes, so it runs on the
/// request's task: a hand-off to the blocking pool would cost more than the reads.
fn read_all(wanted: &[Wanted], max_bytes: usize, follower: bool, committed: bool) -> Vec<(PartitionData, Option<ReadSlice>)> {
    let mut remaining = max_bytes;
    let mut min_one = true;
    wanted
        .iter()
        .map(|w| {
            let mut d = PartitionData::default()
                .with_partition_index(w.key.1)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_aborted_transactions(None)
                .with_records(Some(Bytes::new()));
            let part = match &w.part {
                Ok(p) => p,
                Err(e) => return refused(d, *e, w.current_leader),
            };
            // Leadership is checked again at every read, as Kafka does: a fetch that waited
            // may have outlived this broker's leadership, and the log may since hold a new
            // leader's records above a cut, which a follower still in the old epoch would
            // take on top of records the new leader does not have.
            if let Err(e) = part.check_leader(w.params.leader_epoch) {
                let current = if let NotServing::NotLeader { leader, leader_epoch } = e { Some((leader, leader_epoch)) } else { None };
                return refused(d, not_serving_code(e), current);
            }
            let limit = w.params.max_bytes.min(remaining);
            // Before the log lock (lock order: replica state, then log).
            let hw = part.high_watermark();
            let log = part.log();
            let start = log.log_start_offset();
            // A follower reads to the log end; a consumer below the high watermark, and
            // with read_committed below the last stable offset too.
            let stable = log.last_stable_offset().min(hw);
            let upper = if follower { i64::MAX } else if committed { stable } else { hw };
            match log.read_for_fetch(w.params.fetch_offset, limit, min_one, upper) {
                Ok(slice) => {
                    // As Kafka: the offsets are sent only with a successful read (-1 on errors).
                    d = d.with_high_watermark(hw).with_last_stable_offset(stable).with_log_start_offset(start);
                    if committed && !follower {
                        let aborted = log.aborted_transactions(w.params.fetch_offset, upper).into_iter().map(|t| {
                            AbortedTransaction::default().with_producer_id(ProducerId(t.producer_id)).with_first_offset(t.first_offset)
                        });
                        d = d.with_aborted_transactions(Some(aborted.collect()));
                    }
                    if !slice.is_empty() {
                        min_one = false;
                        remaining = remaining.saturating_sub(slice.len());
                    }
                    (d, Some(slice))
                }
                // A follower is told where the log starts and the high watermark, to cut
                // back or start over (Kafka's follower asks ListOffsets instead).
                Err(StorageError::OffsetOutOfRange { .. }) if follower => {
                    let d = d.with_high_watermark(hw).with_log_start_offset(start);
                    (d.with_error_code(code(KafkaError::OffsetOutOfRange)), None)
                }
                Err(StorageError::OffsetOutOfRange { .. }) => (d.with_error_code(code(KafkaError::OffsetOutOfRange)), None),
                Err(e) => {
                    tracing::error!(topic = %part.topic, partition = part.index, error = %e, "fetch read failed");
                    (d.with_error_code(code(KafkaError::KafkaStorageError)), None)
                }
            }
        })
        .collect()
}

