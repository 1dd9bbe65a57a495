//! Groups and committed offsets as records of the internal topic `__consumer_offsets`:
//! how they are keyed and encoded, how a change is appended (one uncompressed batch per
//! change), and how the partition is replayed at startup (last record per key wins; a
//! null value is a tombstone).
//!
//! Keys and values are JSON, so they are readable with any consumer:
//! `{"offset":{"group":…,"topic":…,"partition":…}}` → [`CommittedOffset`], and
//! `{"group":{"group":…}}` → [`GroupValue`]. The log is not compacted yet; replay reads it
//! all. Never decides group semantics: it only stores and restores.

use std::collections::HashMap;

use bytes::Bytes;
use runnel_protocol::batch::{self, encode_batch, NewRecord};
use runnel_storage::StorageError;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::member::Member;
use super::offsets::CommittedOffset;
use super::state::{Group, GroupState};
use crate::partition::{NotServing, Partition};

/// The internal topic's name.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKey {
    Offset { group: String, topic: String, partition: i32 },
    Group { group: String },
}

/// A group's metadata as stored: enough to resume a Stable group after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupValue {
    pub protocol_type: Option<String>,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberValue {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// Metadata for the group's protocol, hex.
    pub subscription: String,
    /// The member's assignment, hex.
    pub assignment: String,
}

/// One record to write: key and value (None = tombstone).
pub struct Record {
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

impl Record {
    /// A record of another internal topic (`__transaction_state`), its key and value encoded.
    pub fn new(key: Vec<u8>, value: Option<Vec<u8>>) -> Record {
        Record { key, value }
    }
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("plain data serializes")
}

pub fn offset_record(group: &str, topic: &str, partition: i32, offset: Option<&CommittedOffset>) -> Record {
    let key = RecordKey::Offset { group: group.into(), topic: topic.into(), partition };
    Record { key: json(&key), value: offset.map(json) }
}

/// The tombstone of a group's record (the group is gone).
pub fn group_tombstone(group: &str) -> Record {
    Record { key: json(&RecordKey::Group { group: group.into() }), value: None }
}

/// The group's record, or its tombstone once it is Dead.
pub fn group_record(g: &Group) -> Record {
    if g.state == GroupState::Dead {
        return group_tombstone(&g.id);
    }
    let key = json(&RecordKey::Group { group: g.id.clone() });
    // Only a Stable group's members are worth resuming; otherwise members rejoin.
    let members = if g.state == GroupState::Stable {
        let protocol = g.protocol.clone().unwrap_or_default();
        g.members
            .values()
            .map(|m| MemberValue {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                subscription: hex(&m.metadata(&protocol)),
                assignment: hex(&m.assignment),
            })
            .collect()
    } else {
        Vec::new()
    };
    let value = GroupValue {
        protocol_type: g.protocol_type.clone(),
        generation: g.generation,
        protocol: if members.is_empty() { None } else { g.protocol.clone() },
        leader: if members.is_empty() { None } else { g.leader.clone() },
        state_timestamp: g.state_timestamp,
        members,
    };
    Record { key, value: Some(json(&value)) }
}

/// Why a write to `__consumer_offsets` failed.
#[derive(Debug)]
pub enum WriteError {
    /// This broker does not lead the partition (any more).
    NotLeader,
    /// acks=all and the ISR is below `min.insync.replicas`.
    NotEnoughReplicas,
    /// A transactional producer's epoch is older than the partition's.
    ProducerFenced,
    Storage(StorageError),
}

impl From<StorageError> for WriteError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Producer(runnel_storage::ProducerError::InvalidEpoch { .. }) => WriteError::ProducerFenced,
            e => WriteError::Storage(e),
        }
    }
}

/// Appends the records as one uncompressed batch, as the partition's leader (cluster
/// mode: its leader epoch stamped on the batch, refused below `min.insync.replicas`),
/// and wakes fetches of the partition. Returns the last record's offset (None: nothing
/// to write); the caller waits for replication if it must.
pub fn append(part: &Partition, records: &[Record]) -> Result<Option<i64>, WriteError> {
    append_batch(part, records, None)
}

/// Appends offset records of a transaction (TxnOffsetCommit): a transactional batch of
/// `producer` (id, epoch), checked against the partition's producer state as the
/// coordinator's; they count once the transaction's COMMIT marker follows.
pub fn append_txn(part: &Partition, records: &[Record], producer: (i64, i16)) -> Result<Option<i64>, WriteError> {
    append_batch(part, records, Some(producer))
}

fn append_batch(part: &Partition, records: &[Record], producer: Option<(i64, i16)>) -> Result<Option<i64>, WriteError> {
    if records.is_empty() {
        return Ok(None);
    }
    let epoch = part.check_produce(-1).map_err(|e| match e {
        NotServing::NotEnoughReplicas => WriteError::NotEnoughReplicas,
        _ => WriteError::NotLeader,
    })?;
    let now = super::now_ms();
    let new: Vec<NewRecord<'_>> = records
        .iter()
        .map(|r| NewRecord { timestamp: now, key: Some(&r.key), value: r.value.as_deref(), headers: &[] })
        .collect();
    let (mut buf, origin) = match producer {
        None => (encode_batch(0, 0, &new), runnel_storage::AppendOrigin::Client),
        Some((id, producer_epoch)) => {
            let mut buf = encode_batch(0, batch::TRANSACTIONAL_BIT, &new);
            batch::set_producer(&mut buf, id, producer_epoch, -1);
            (buf, runnel_storage::AppendOrigin::Coordinator)
        }
    };
    if let Some(epoch) = epoch {
        batch::set_partition_leader_epoch(&mut buf, epoch);
    }
    let info = part.append_as_leader(epoch, |log| log.append_as(&mut buf, origin)).map_err(|_| WriteError::NotLeader)??;
    part.on_append();
    Ok(Some(info.last_offset))
}

/// Offsets of transactions not yet decided when a replay ended: producer id → (group,
/// topic, partition) → offset.
pub type PendingOffsets = HashMap<i64, HashMap<(String, String, i32), CommittedOffset>>;

/// Reads the whole partition and rebuilds every group: Stable with its stored members
/// (their sessions start now), or Empty. Offsets written in a transaction count when its
/// COMMIT marker is read, and go with an ABORT; those still undecided are returned.
pub fn replay(part: &Partition, now: Instant) -> Result<(HashMap<String, Group>, PendingOffsets), StorageError> {
    let mut metas: HashMap<String, GroupValue> = HashMap::new();
    let mut offsets: HashMap<String, HashMap<(String, i32), CommittedOffset>> = HashMap::new();
    let mut pending = PendingOffsets::new();
    let mut records = 0u64;
    part.replay_batches(|header, bytes| {
        if header.is_control() {
            let marker = batch::read_marker(bytes);
            let decided = pending.remove(&header.producer_id).unwrap_or_default();
            if marker.is_some_and(|m| m.control == batch::ControlType::Commit) {
                for ((group, topic, partition), o) in decided {
                    offsets.entry(group).or_default().insert((topic, partition), o);
                }
            }
            return;
        }
        let txn = header.is_transactional().then_some(header.producer_id);
        let recs = match batch::records(bytes) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(topic = OFFSETS_TOPIC, base_offset = header.base_offset, error = %e, "skipping unreadable batch");
                return;
            }
        };
        for rec in recs {
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(topic = OFFSETS_TOPIC, error = %e, "skipping unreadable record");
                    break;
                }
            };
            records += 1;
            let Some(key) = rec.key.and_then(|k| serde_json::from_slice::<RecordKey>(k).ok()) else {
                tracing::warn!(topic = OFFSETS_TOPIC, offset = rec.offset, "skipping record with an unknown key");
                continue;
            };
            match key {
                RecordKey::Offset { group, topic, partition } if txn.is_some() => {
                    if let Some(Ok(v)) = rec.value.map(serde_json::from_slice::<CommittedOffset>) {
                        pending.entry(txn.unwrap_or(-1)).or_default().insert((group, topic, partition), v);
                    }
                }
                RecordKey::Offset { group, topic, partition } => {
                    let entry = offsets.entry(group).or_default();
                    match rec.value.map(serde_json::from_slice::<CommittedOffset>) {
                        Some(Ok(v)) => {
                            entry.insert((topic, partition), v);
                        }
                        None => {
                            entry.remove(&(topic, partition));
                        }
                        Some(Err(e)) => tracing::warn!(offset = rec.offset, error = %e, "skipping bad offset record"),
                    }
                }
                RecordKey::Group { group } => match rec.value.map(serde_json::from_slice::<GroupValue>) {
                    Some(Ok(v)) => {
                        metas.insert(group, v);
                    }
                    None => {
                        metas.remove(&group);
                    }
                    Some(Err(e)) => tracing::warn!(offset = rec.offset, error = %e, "skipping bad group record"),
                },
            }
        }
    })?;
    let mut groups = HashMap::new();
    let ids: std::collections::HashSet<String> =
        metas.keys().cloned().chain(offsets.iter().filter(|(_, o)| !o.is_empty()).map(|(g, _)| g.clone())).collect();
    for id in ids {
        let mut g = Group::new(id.clone(), super::now_ms());
        if let Some(meta) = metas.remove(&id) {
            restore(&mut g, meta, now);
        }
        for ((topic, partition), o) in offsets.remove(&id).unwrap_or_default() {
            g.offsets.put(topic, partition, o);
        }
        groups.insert(id, g);
    }
    tracing::info!(groups = groups.len(), records, pending_transactions = pending.len(), "replayed {OFFSETS_TOPIC}");
    Ok((groups, pending))
}

fn restore(g: &mut Group, meta: GroupValue, now: Instant) {
    g.generation = meta.generation;
    g.protocol_type = meta.protocol_type;
    g.state_timestamp = meta.state_timestamp;
    if meta.members.is_empty() {
        return;
    }
    let protocol = meta.protocol.clone().unwrap_or_default();
    for m in meta.members {
        g.add_member(Member {
            id: m.member_id,
            instance_id: m.instance_id,
            client_id: m.client_id,
            client_host: m.client_host,
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            session_timeout_ms: m.session_timeout_ms,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocols: vec![(protocol.clone(), Bytes::from(unhex(&m.subscription)))],
            assignment: Bytes::from(unhex(&m.assignment)),
            awaiting_join: None,
            awaiting_sync: None,
            is_new: false,
            heartbeat_deadline: now + std::time::Duration::from_millis(m.session_timeout_ms.max(0) as u64),
        });
    }
    g.protocol = meta.protocol;
    if meta.leader.as_ref().is_some_and(|l| g.members.contains_key(l)) {
        g.leader = meta.leader;
    }
    g.state = GroupState::Stable;
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).filter_map(|i| s.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_json() {
        let k = RecordKey::Offset { group: "g".into(), topic: "t".into(), partition: 3 };
        assert_eq!(String::from_utf8(json(&k)).unwrap(), r#"{"offset":{"group":"g","topic":"t","partition":3}}"#);
        let k = RecordKey::Group { group: "g".into() };
        assert_eq!(String::from_utf8(json(&k)).unwrap(), r#"{"group":{"group":"g"}}"#);
        assert_eq!(unhex(&hex(&[0, 1, 0xab, 0xff])), vec![0, 1, 0xab, 0xff]);
    }
}
