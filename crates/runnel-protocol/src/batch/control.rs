//! Transaction markers: control batches (attribute bit 5) whose one record has the key
//! `version: i16 = 0, type: i16` (0 = ABORT, 1 = COMMIT) and the value
//! `version: i16 = 0, coordinatorEpoch: i32`. Also the producer-sequence arithmetic of
//! idempotent batches. Never does I/O.

use super::*;

/// What a transaction marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

/// A decoded transaction marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub control: ControlType,
    pub coordinator_epoch: i32,
}

/// The marker in a whole control batch; `None` for a control batch of another kind
/// (Kafka reserves other types) or one whose record cannot be read.
pub fn read_marker(batch: &[u8]) -> Option<Marker> {
    let mut recs = records(batch).ok()?;
    let r = recs.next()?.ok()?;
    let key = r.key?;
    if key.len() < 4 {
        return None;
    }
    let control = match i16::from_be_bytes([key[2], key[3]]) {
        0 => ControlType::Abort,
        1 => ControlType::Commit,
        _ => return None,
    };
    let coordinator_epoch = r
        .value
        .filter(|v| v.len() >= 6)
        .map_or(-1, |v| i32::from_be_bytes([v[2], v[3], v[4], v[5]]));
    Some(Marker { control, coordinator_epoch })
}

/// Encodes a marker batch for `producer_id`/`producer_epoch` (transactional and control
/// bits set, sequence -1), to be appended by the broker.
pub fn encode_marker(producer_id: i64, producer_epoch: i16, marker: Marker, timestamp: i64) -> Vec<u8> {
    let ty: i16 = match marker.control {
        ControlType::Abort => 0,
        ControlType::Commit => 1,
    };
    let mut key = [0u8; 4];
    key[2..4].copy_from_slice(&ty.to_be_bytes());
    let mut value = [0u8; 6];
    value[2..6].copy_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let rec = NewRecord { timestamp, key: Some(&key), value: Some(&value), headers: &[] };
    let mut b = encode_batch(0, TRANSACTIONAL_BIT | CONTROL_BIT, &[rec]);
    set_producer(&mut b, producer_id, producer_epoch, -1);
    b
}

/// Sets the producer fields of a whole batch and recomputes the CRC.
pub fn set_producer(batch: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    update_crc(batch);
}

/// Sets the transactional attribute bit of a whole batch and recomputes the CRC (tests).
pub fn set_transactional(batch: &mut [u8]) {
    let attrs = be_i16(batch, ATTRIBUTES_OFFSET) | TRANSACTIONAL_BIT;
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
    update_crc(batch);
}

impl BatchHeader {
    /// Whether the batch carries a producer id (idempotent or transactional).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// The sequence of the batch's last record; sequences wrap from `i32::MAX` to 0.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let delta = self.last_offset_delta.max(0);
        if self.base_sequence > i32::MAX - delta {
            delta - (i32::MAX - self.base_sequence) - 1
        } else {
            self.base_sequence + delta
        }
    }
}

/// Whether `next` directly follows `last` (with the wrap after `i32::MAX`).
pub fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trip() {
        let m = Marker { control: ControlType::Commit, coordinator_epoch: 7 };
        let b = encode_marker(42, 3, m, 1000);
        let h = check_integrity(&b).unwrap();
        assert!(h.is_control() && h.is_transactional());
        assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (42, 3, -1));
        assert_eq!(read_marker(&b), Some(m));
        let a = encode_marker(1, 0, Marker { control: ControlType::Abort, coordinator_epoch: 0 }, 0);
        assert_eq!(read_marker(&a).unwrap().control, ControlType::Abort);
    }

    #[test]
    fn sequences_wrap() {
        let mut b = encode_batch(0, 0, &[NewRecord::default(), NewRecord::default(), NewRecord::default()]);
        set_producer(&mut b, 1, 0, i32::MAX - 1);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.last_sequence(), 0);
        assert!(in_sequence(i32::MAX, 0));
        assert!(in_sequence(4, 5));
        assert!(!in_sequence(4, 6));
        assert!(!in_sequence(-1, 1));
        assert!(in_sequence(-1, 0));
    }
}
