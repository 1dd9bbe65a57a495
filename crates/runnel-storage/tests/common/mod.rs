//! Shared helpers for the storage integration tests.
#![allow(dead_code)]

use runnel_protocol::batch::{encode_batch, update_crc, NewRecord};
use runnel_storage::{LogConfig, PartitionLog};

/// An uncompressed batch of `values.len()` records with the given timestamps.
pub fn batch_with(timestamps: &[i64], value_len: usize) -> Vec<u8> {
    let value = vec![7u8; value_len];
    let recs: Vec<NewRecord> = timestamps
        .iter()
        .map(|&t| NewRecord {
            timestamp: t,
            key: None,
            value: Some(&value),
            headers: &[],
        })
        .collect();
    encode_batch(0, 0, &recs)
}

/// `n` records of `value_len` bytes, timestamps 1000, 1001, ...
pub fn batch(n: usize, value_len: usize) -> Vec<u8> {
    let ts: Vec<i64> = (0..n as i64).map(|i| 1000 + i).collect();
    batch_with(&ts, value_len)
}

/// A batch flagged gzip (its records are not really compressed; storage never looks).
pub fn fake_compressed(timestamps: &[i64]) -> Vec<u8> {
    let mut b = batch_with(timestamps, 3);
    b[22] |= 1;
    update_crc(&mut b);
    b
}

pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 64,
        ..LogConfig::default()
    }
}

pub fn append(log: &mut PartitionLog, b: &[u8]) -> runnel_storage::AppendInfo {
    let mut b = b.to_vec();
    log.append(&mut b).expect("append")
}

/// Reads everything from `offset` as bytes.
pub fn read_all(log: &PartitionLog, offset: i64) -> Vec<u8> {
    log.read(offset, usize::MAX, true)
        .unwrap()
        .read_to_vec()
        .unwrap()
}

/// Base offsets of the batches in `bytes`.
pub fn bases(bytes: &[u8]) -> Vec<i64> {
    runnel_protocol::batch::batches(bytes)
        .map(|b| b.unwrap().0.base_offset)
        .collect()
}
