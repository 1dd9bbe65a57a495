//! Shared helpers for the storage integration tests.
#![allow(dead_code)]

use runnel_protocol::batch::{encode_batch, update_crc, Compression, NewRecord};
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

/// A batch of keyed records (`None` value = tombstone) with timestamps from `ts`, its
/// records section compressed with `codec`.
pub fn kv_batch(records: &[(&str, Option<&str>)], ts: i64, codec: Compression) -> Vec<u8> {
    let recs: Vec<NewRecord> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| NewRecord {
            timestamp: ts + i as i64,
            key: Some(k.as_bytes()),
            value: v.map(str::as_bytes),
            headers: &[],
        })
        .collect();
    let plain = encode_batch(0, 0, &recs);
    if codec == Compression::None {
        return plain;
    }
    let code: u8 = match codec {
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
        Compression::None => 0,
    };
    let mut out = plain[..61].to_vec();
    out.extend(runnel_protocol::batch::compress(codec, &plain[61..]).unwrap());
    let len = (out.len() - 12) as i32;
    out[8..12].copy_from_slice(&len.to_be_bytes());
    out[22] |= code;
    update_crc(&mut out);
    runnel_protocol::batch::validate_batch(&out).unwrap();
    out
}

/// One record as read back: (offset, key, value).
pub type Kv = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Every record readable from `from` (records of the first batch below `from` skipped),
/// decompressing as needed.
pub fn read_records(log: &PartitionLog, from: i64) -> Vec<Kv> {
    let bytes = read_all(log, from);
    let mut out = Vec::new();
    for item in runnel_protocol::batch::batches(&bytes) {
        let (_, range) = item.unwrap();
        let b = &bytes[range];
        runnel_protocol::batch::check_integrity(b).unwrap();
        let (h, section) = runnel_protocol::batch::records_section(b).unwrap();
        for r in runnel_protocol::batch::walk(&h, &section) {
            let r = r.unwrap();
            if r.offset >= from {
                out.push((r.offset, r.key.map(<[u8]>::to_vec), r.value.map(<[u8]>::to_vec)));
            }
        }
    }
    out
}

/// Latest value per key (None = tombstone) of a list of records.
pub fn latest_by_key(records: &[Kv]) -> std::collections::BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> {
    let mut m = std::collections::BTreeMap::new();
    for (o, k, v) in records {
        if let Some(k) = k {
            m.insert(k.clone(), (*o, v.clone()));
        }
    }
    m
}
