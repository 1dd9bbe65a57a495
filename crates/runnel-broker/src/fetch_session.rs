//! Incremental fetch sessions (KIP-227): the broker-wide cache of what each fetcher asked
//! for and was last told, so that a fetcher with many partitions sends only the partitions
//! whose request changed, and is answered only the partitions whose answer changed.
//!
//! A session holds, per partition, the request's parameters (fetch offset, partition max
//! bytes, current leader epoch) and what the last answer said (high watermark, last
//! stable offset, log start offset). A full fetch (epoch 0) creates one when the cache
//! has room; each incremental fetch (epoch n, the session's next) adds or updates the
//! partitions it names, drops those it forgets, and the answer leaves out every partition
//! without records, without an error and whose offsets did not move. An answer that
//! carries a partition moves it to the end of the session's order, so that the
//! response's byte limit is shared out in turn (Kafka does the same).
//!
//! Bounded: at most `max.incremental.fetch.session.cache.slots` sessions (Kafka's
//! default, 1,000) on the whole broker, at most [`SESSIONS_PER_CONNECTION`] created by
//! one connection (its oldest goes when it makes another), and at most
//! `max.broker.partitions` partitions in one session (a larger one is not kept: Kafka has
//! no such bound, but a session naming more partitions than the broker holds is bogus). A new session takes a full
//! cache's slot as Kafka's `FetchSessionCache.tryEvict` does: a session unused for
//! `min.incremental.fetch.session.eviction.ms` goes first; otherwise the least valuable
//! one, if the new one is worth more — a follower's (privileged) session is worth more
//! than a consumer's, then more partitions are worth more; a session younger than the
//! eviction time is safe from consumers' sessions (and a follower's from everyone's).
//!
//! Costs: finding a session and updating it take the cache lock for O(log sessions) and
//! the session's own lock for O(partitions named in the request) (lock order: cache, then
//! session). Reading the partitions of an incremental fetch is O(session) as in Kafka,
//! under no lock of this module.
//!
//! This module owns no I/O and knows nothing of Kafka's wire format; `handlers::fetch`
//! turns requests into its calls and its answers into responses.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kafka_protocol::protocol::StrBytes;
use prometheus_client::metrics::counter::Counter;
use runnel_metadata::Uuid;

use crate::errors::KafkaError;

/// The session id of a fetch outside any session.
pub const INVALID_SESSION_ID: i32 = 0;
/// Epoch of a full fetch that opens a session.
pub const INITIAL_EPOCH: i32 = 0;
/// Epoch of a full fetch that closes its session and opens none.
pub const FINAL_EPOCH: i32 = -1;

/// Sessions one connection may have created and still hold in the cache: a consumer or
/// a follower fetcher keeps one per broker connection; this leaves room for a client
/// starting over a few times before its old session is dropped.
pub const SESSIONS_PER_CONNECTION: usize = 4;

/// The epoch after `epoch` (Kafka's `FetchMetadata.nextEpoch`): wraps to 1.
pub fn next_epoch(epoch: i32) -> i32 {
    match epoch {
        e if e < 0 => FINAL_EPOCH,
        i32::MAX => 1,
        e => e + 1,
    }
}

/// A topic as a fetch names it: by name before Fetch v13, by id from v13.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum TopicKey {
    Name(StrBytes),
    Id(Uuid),
}

/// One partition of a session.
pub type PartitionKey = (TopicKey, i32);

/// What the fetcher asks of a partition.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Params {
    pub fetch_offset: i64,
    pub max_bytes: usize,
    /// `current_leader_epoch` (-1: none).
    pub leader_epoch: i32,
}

/// What the last answer told the fetcher of a partition (-1: nothing, or an error).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Answered {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
}

impl Answered {
    pub const NONE: Answered = Answered { high_watermark: -1, last_stable_offset: -1, log_start_offset: -1 };
}

struct Cached {
    params: Params,
    answered: Answered,
    /// Place in the session's order.
    seq: u64,
}

/// One fetch session: its partitions in the order they are read.
pub struct Session {
    id: i32,
    /// The epoch the next incremental fetch must carry.
    epoch: i32,
    uses_topic_ids: bool,
    parts: HashMap<PartitionKey, Cached>,
    order: BTreeMap<u64, PartitionKey>,
    next_seq: u64,
}

impl Session {
    fn new(id: i32, uses_topic_ids: bool) -> Self {
        Session { id, epoch: next_epoch(INITIAL_EPOCH), uses_topic_ids, parts: HashMap::new(), order: BTreeMap::new(), next_seq: 0 }
    }

    pub fn id(&self) -> i32 {
        self.id
    }

    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Adds a partition at the end of the order, or updates its parameters in place. A
    /// new key's topic name is copied: the request's is a slice of the whole request frame,
    /// which the session would otherwise keep in memory for as long as it lives.
    pub fn upsert(&mut self, key: PartitionKey, params: Params) {
        if let Some(c) = self.parts.get_mut(&key) {
            c.params = params;
            return;
        }
        let key = match key {
            (TopicKey::Name(name), index) => (TopicKey::Name(StrBytes::from_string(name.to_string())), index),
            id => id,
        };
        let seq = self.bump();
        self.order.insert(seq, key.clone());
        self.parts.insert(key, Cached { params, answered: Answered::NONE, seq });
    }

    /// Drops a partition the fetcher forgot.
    pub fn forget(&mut self, key: &PartitionKey) {
        if let Some(c) = self.parts.remove(key) {
            self.order.remove(&c.seq);
        }
    }

    /// The partitions in reading order, with what is asked of each.
    pub fn partitions(&self) -> impl Iterator<Item = (&PartitionKey, Params)> {
        self.order.values().map(|k| (k, self.parts[k].params))
    }

    /// Records a partition's answer; returns whether the fetcher must be told (records,
    /// an error, or offsets that moved), and if so moves the partition to the end of the
    /// order. An error is remembered as offsets -1, so the partition is sent again once
    /// the error is gone.
    pub fn answer(&mut self, key: &PartitionKey, answered: Answered, has_records: bool, error: bool) -> bool {
        let Some(c) = self.parts.get_mut(key) else { return true };
        let answered = if error { Answered::NONE } else { answered };
        let must = has_records || error || c.answered != answered;
        c.answered = answered;
        if must {
            let old = c.seq;
            let seq = self.next_seq;
            self.next_seq += 1;
            if let Some(c) = self.parts.get_mut(key) {
                c.seq = seq;
            }
            if let Some(k) = self.order.remove(&old) {
                self.order.insert(seq, k);
            }
        }
        must
    }

    fn bump(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }
}

/// How the cache ranks a session for eviction: (privileged, partitions, id), least
/// valuable first (Kafka's `EvictableKey`).
type EvictKey = (bool, usize, i32);

struct Entry {
    id: i32,
    session: Arc<Mutex<Session>>,
    privileged: bool,
    created: Instant,
    last_used: Instant,
    /// Partitions when last touched.
    size: usize,
}

impl Entry {
    fn evict_key(&self) -> EvictKey {
        (self.privileged, self.size, self.id)
    }
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<i32, Entry>,
    by_last_use: BTreeSet<(Instant, i32)>,
    /// Sessions a follower's new session may evict: consumers', and followers' older
    /// than the eviction time.
    evictable_by_privileged: BTreeSet<EvictKey>,
    /// Sessions any new session may evict: those older than the eviction time.
    evictable_by_all: BTreeSet<EvictKey>,
    partitions: usize,
}

/// The broker's fetch sessions.
pub struct FetchSessionCache {
    slots: usize,
    /// Most partitions one session may hold (`max.broker.partitions`: a session naming more
    /// than the broker holds is bogus); a larger one is not created, or is closed.
    max_partitions: usize,
    eviction: Duration,
    inner: Mutex<Inner>,
    /// Sessions evicted to make room for another.
    pub evictions: Counter,
    /// Full fetches that created a session.
    pub created: Counter,
    /// Incremental fetches served.
    pub incremental: Counter,
    /// Incremental fetches refused (unknown session, wrong epoch, topic id mismatch).
    pub refused: Counter,
}

/// Why an incremental fetch is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    NotFound,
    InvalidEpoch,
    TopicIdMismatch,
}

impl SessionError {
    pub fn kafka(self) -> KafkaError {
        match self {
            SessionError::NotFound => KafkaError::FetchSessionIdNotFound,
            SessionError::InvalidEpoch => KafkaError::InvalidFetchSessionEpoch,
            SessionError::TopicIdMismatch => KafkaError::FetchSessionTopicIdError,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FetchSessionCache {
    /// A cache of at most `slots` sessions (0: fetch sessions are off); a session unused
    /// for `eviction` may be evicted by any other.
    pub fn new(slots: usize, eviction: Duration, max_partitions: usize) -> Self {
        FetchSessionCache {
            slots,
            max_partitions,
            eviction,
            inner: Mutex::default(),
            evictions: Counter::default(),
            created: Counter::default(),
            incremental: Counter::default(),
            refused: Counter::default(),
        }
    }

    /// Sessions cached, and their partitions.
    /// The most partitions a session may hold.
    pub fn max_partitions(&self) -> usize {
        self.max_partitions
    }

    pub fn sizes(&self) -> (usize, usize) {
        let inner = lock(&self.inner);
        (inner.sessions.len(), inner.partitions)
    }

    /// Removes a session (a full fetch naming it, epoch -1, or its connection's bound).
    pub fn remove(&self, id: i32) {
        if id != INVALID_SESSION_ID {
            lock(&self.inner).remove(id);
        }
    }

    /// Tries to create a session of `parts` (in order, each with what was asked and
    /// answered). Returns its id, or [`INVALID_SESSION_ID`] when there is no room.
    pub fn create(
        &self,
        now: Instant,
        privileged: bool,
        uses_topic_ids: bool,
        parts: impl ExactSizeIterator<Item = (PartitionKey, Params, Answered)>,
    ) -> i32 {
        let size = parts.len();
        let mut inner = lock(&self.inner);
        if self.slots == 0 || size > self.max_partitions || (inner.sessions.len() >= self.slots && !self.try_evict(&mut inner, privileged, size, now)) {
            return INVALID_SESSION_ID;
        }
        let id = loop {
            let id = rand::random::<i32>() & i32::MAX;
            if id != INVALID_SESSION_ID && !inner.sessions.contains_key(&id) {
                break id;
            }
        };
        let mut session = Session::new(id, uses_topic_ids);
        for (key, params, answered) in parts {
            session.upsert(key.clone(), params);
            if let Some(c) = session.parts.get_mut(&key) {
                c.answered = answered;
            }
        }
        let entry = Entry { id, session: Arc::new(Mutex::new(session)), privileged, created: now, last_used: now, size: 0 };
        inner.sessions.insert(id, entry);
        self.touch(&mut inner, id, now);
        self.created.inc();
        id
    }

    /// Finds session `id` for an incremental fetch at `epoch`, applies `update` to it
    /// (the partitions the request names and forgets), and moves it to the next epoch.
    /// Returns the session, or None when the update left it empty (it is then removed,
    /// and the fetch is answered outside any session, as Kafka does) or with more than
    /// `max_partitions` (removed too: the fetcher starts over and is answered in full).
    pub fn incremental(
        &self,
        id: i32,
        epoch: i32,
        uses_topic_ids: bool,
        now: Instant,
        update: impl FnOnce(&mut Session),
    ) -> Result<Option<Arc<Mutex<Session>>>, SessionError> {
        let mut inner = lock(&self.inner);
        let result = (|| {
            let entry = inner.sessions.get(&id).ok_or(SessionError::NotFound)?;
            let shared = entry.session.clone();
            let mut session = lock(&shared);
            if session.epoch != epoch {
                return Err(SessionError::InvalidEpoch);
            }
            if session.uses_topic_ids != uses_topic_ids {
                return Err(SessionError::TopicIdMismatch);
            }
            update(&mut session);
            session.epoch = next_epoch(session.epoch);
            let close = session.parts.is_empty() || session.parts.len() > self.max_partitions;
            drop(session);
            Ok((shared, close))
        })();
        match result {
            Err(e) => {
                self.refused.inc();
                Err(e)
            }
            Ok((_, true)) => {
                inner.remove(id);
                Ok(None)
            }
            Ok((shared, false)) => {
                self.touch(&mut inner, id, now);
                self.incremental.inc();
                Ok(Some(shared))
            }
        }
    }

    /// Marks a session used now and re-ranks it by its size.
    fn touch(&self, inner: &mut Inner, id: i32, now: Instant) {
        let Some(e) = inner.sessions.get_mut(&id) else { return };
        let old = (e.last_used, e.evict_key());
        let old_size = e.size;
        e.last_used = now;
        e.size = lock(&e.session).len();
        let (key, privileged, young, size) = (e.evict_key(), e.privileged, now.duration_since(e.created) <= self.eviction, e.size);
        inner.by_last_use.remove(&(old.0, id));
        inner.by_last_use.insert((now, id));
        inner.evictable_by_privileged.remove(&old.1);
        inner.evictable_by_all.remove(&old.1);
        if !privileged || !young {
            inner.evictable_by_privileged.insert(key);
        }
        if !young {
            inner.evictable_by_all.insert(key);
        }
        inner.partitions = inner.partitions - old_size + size;
    }

    /// Makes room for a new session of `size` partitions, if one may go (see the module
    /// doc). Returns whether one was evicted.
    fn try_evict(&self, inner: &mut Inner, privileged: bool, size: usize, now: Instant) -> bool {
        let Some(&(last_used, oldest)) = inner.by_last_use.first() else { return false };
        let victim = if now.duration_since(last_used) > self.eviction {
            oldest
        } else {
            let candidates = if privileged { &inner.evictable_by_privileged } else { &inner.evictable_by_all };
            match candidates.first() {
                // Less valuable than the new session; on a tie the old one stays, as in
                // Kafka (its new key, id 0, ranks below every existing one).
                Some(&(p, s, id)) if (p, s) < (privileged, size) => id,
                _ => return false,
            }
        };
        inner.remove(victim);
        self.evictions.inc();
        true
    }
}

impl Inner {
    fn remove(&mut self, id: i32) {
        if let Some(e) = self.sessions.remove(&id) {
            self.by_last_use.remove(&(e.last_used, id));
            self.evictable_by_privileged.remove(&e.evict_key());
            self.evictable_by_all.remove(&e.evict_key());
            self.partitions -= e.size;
        }
    }
}

/// The sessions one connection created, oldest first (bounded by
/// [`SESSIONS_PER_CONNECTION`]).
#[derive(Default)]
pub struct ConnectionSessions(Mutex<VecDeque<i32>>);

impl ConnectionSessions {
    /// Records a session this connection created; removes its oldest from `cache` if it
    /// now holds too many.
    pub fn created(&self, cache: &FetchSessionCache, id: i32) {
        let mut ids = lock(&self.0);
        ids.retain(|&i| i != id);
        ids.push_back(id);
        while ids.len() > SESSIONS_PER_CONNECTION {
            if let Some(old) = ids.pop_front() {
                cache.remove(old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> PartitionKey {
        (TopicKey::Name(StrBytes::from_static_str("t")), p)
    }

    fn params(offset: i64) -> Params {
        Params { fetch_offset: offset, max_bytes: 1024, leader_epoch: -1 }
    }

    fn parts(n: i32) -> impl ExactSizeIterator<Item = (PartitionKey, Params, Answered)> {
        (0..n).map(|p| (key(p), params(0), Answered::NONE))
    }

    #[test]
    fn incremental_epochs_and_errors() {
        let cache = FetchSessionCache::new(10, Duration::from_secs(120), 4);
        let now = Instant::now();
        let id = cache.create(now, false, false, parts(3));
        assert_ne!(id, INVALID_SESSION_ID);
        assert_eq!(cache.sizes(), (1, 3));
        assert_eq!(cache.incremental(id + 1, 1, false, now, |_| {}).err(), Some(SessionError::NotFound));
        assert_eq!(cache.incremental(id, 2, false, now, |_| {}).err(), Some(SessionError::InvalidEpoch));
        assert_eq!(cache.incremental(id, 1, true, now, |_| {}).err(), Some(SessionError::TopicIdMismatch));
        let s = cache.incremental(id, 1, false, now, |s| {
            s.upsert(key(5), params(7));
            s.forget(&key(0));
        });
        let s = s.expect("epoch 1 is right").expect("not empty");
        let order: Vec<i32> = lock(&s).partitions().map(|(k, _)| k.1).collect();
        assert_eq!(order, vec![1, 2, 5]);
        assert_eq!(lock(&s).epoch(), 2);
        assert_eq!(cache.sizes(), (1, 3));
        assert_eq!(cache.create(now, false, false, parts(5)), INVALID_SESSION_ID, "more partitions than a session may hold");
        let grown = cache.incremental(id, 2, false, now, |s| {
            for p in 10..12 {
                s.upsert(key(p), params(0));
            }
        });
        assert!(matches!(grown, Ok(None)), "a session grown past the bound is closed");
        let id = cache.create(now, false, false, parts(3));
        // Forgetting everything closes the session.
        let closed = cache.incremental(id, 1, false, now, |s| {
            for p in [0, 1, 2] {
                s.forget(&key(p));
            }
        });
        assert!(matches!(closed, Ok(None)));
        assert_eq!(cache.sizes(), (0, 0));
    }

    #[test]
    fn answers_only_what_changed_and_rotates() {
        let mut s = Session::new(1, false);
        for p in 0..3 {
            s.upsert(key(p), params(0));
        }
        let a = Answered { high_watermark: 5, last_stable_offset: 5, log_start_offset: 0 };
        assert!(s.answer(&key(0), a, false, false), "new offsets are sent");
        assert!(!s.answer(&key(0), a, false, false), "the same offsets are not");
        assert!(s.answer(&key(0), a, true, false), "records always are");
        assert!(s.answer(&key(0), a, false, true), "errors always are");
        assert!(s.answer(&key(0), a, false, false), "and the partition again after an error");
        let order: Vec<i32> = s.partitions().map(|(k, _)| k.1).collect();
        assert_eq!(order, vec![1, 2, 0], "a partition answered goes to the end");
    }

    #[test]
    fn eviction_prefers_stale_then_privileged_then_larger() {
        let eviction = Duration::from_secs(120);
        let cache = FetchSessionCache::new(2, eviction, 100);
        let t0 = Instant::now();
        let small = cache.create(t0, false, false, parts(1));
        let large = cache.create(t0, false, false, parts(5));
        // Both young: a consumer's new session evicts nothing, a follower's the smaller.
        assert_eq!(cache.create(t0, false, false, parts(10)), INVALID_SESSION_ID);
        let follower = cache.create(t0, true, false, parts(1));
        assert_ne!(follower, INVALID_SESSION_ID);
        assert!(cache.incremental(small, 1, false, t0, |_| {}).is_err(), "the small consumer session went");
        assert_eq!(cache.evictions.get(), 1);
        // Past the eviction time the larger consumer session may be evicted by a larger one…
        let later = t0 + eviction + Duration::from_secs(1);
        assert!(cache.incremental(follower, 1, false, later, |_| {}).is_ok());
        assert!(cache.incremental(large, 1, false, later, |_| {}).is_ok());
        assert_eq!(cache.create(later, false, false, parts(2)), INVALID_SESSION_ID, "not by a smaller one");
        assert_eq!(cache.create(later, false, false, parts(5)), INVALID_SESSION_ID, "nor by one of the same size (Kafka keeps the old)");
        let larger = cache.create(later, false, false, parts(6));
        assert_ne!(larger, INVALID_SESSION_ID);
        assert!(cache.incremental(large, 2, false, later, |_| {}).is_err());
        // …and an unused one is evicted first, whatever its rank.
        let much_later = later + eviction + Duration::from_secs(1);
        assert!(cache.incremental(larger, 1, false, much_later, |_| {}).is_ok());
        assert_ne!(cache.create(much_later, false, false, parts(1)), INVALID_SESSION_ID);
        assert!(cache.incremental(follower, 2, false, much_later, |_| {}).is_err(), "the stale follower session went");
        assert_eq!(cache.evictions.get(), 3);
    }

    #[test]
    fn a_session_keeps_no_part_of_the_request_frame() {
        // A decoded topic name is a slice of its request's frame.
        let frame = bytes::Bytes::from(vec![b't'; 1 << 20]);
        let name = StrBytes::from_utf8(frame.slice(10..11)).unwrap();
        let mut s = Session::new(1, false);
        s.upsert((TopicKey::Name(name.clone()), 0), params(0));
        s.upsert((TopicKey::Name(name), 0), params(5));
        let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        let stored: Vec<_> = s.partitions().map(|(k, p)| (k.clone(), p.fetch_offset)).collect();
        assert_eq!(stored.len(), 1);
        let (TopicKey::Name(n), offset) = (&stored[0].0 .0, stored[0].1) else { panic!("a name key") };
        assert_eq!((&**n, offset), ("t", 5), "found by the request's name, updated in place");
        assert!(!frame_range.contains(&(n.as_ptr() as usize)), "the session holds its own copy of the name");
    }

    #[test]
    fn a_connection_holds_a_bounded_number() {
        let cache = FetchSessionCache::new(100, Duration::from_secs(120), 100);
        let conn = ConnectionSessions::default();
        let now = Instant::now();
        let ids: Vec<i32> = (0..SESSIONS_PER_CONNECTION + 2).map(|_| cache.create(now, false, false, parts(1))).collect();
        for &id in &ids {
            conn.created(&cache, id);
        }
        assert_eq!(cache.sizes().0, SESSIONS_PER_CONNECTION);
        assert!(cache.incremental(ids[0], 1, false, now, |_| {}).is_err());
        assert!(cache.incremental(ids[ids.len() - 1], 1, false, now, |_| {}).is_ok());
    }

    #[test]
    fn no_slots_no_sessions() {
        let cache = FetchSessionCache::new(0, Duration::from_secs(120), 100);
        assert_eq!(cache.create(Instant::now(), true, false, parts(1)), INVALID_SESSION_ID);
    }
}
