//! The Kafka v2 `RecordBatch` view: parse and validate the 61-byte header, walk
//! uncompressed records, split a byte run into whole batches, and patch the few fields
//! the broker owns (`baseOffset`, `partitionLeaderEpoch`, LogAppendTime).
//!
//! Everything here works on borrowed bytes: no I/O, no allocation on the validation path,
//! and no panic on any input (bad bytes are a [`BatchError`]).
//!
//! Header layout (big-endian), offsets in bytes:
//! `baseOffset i64 [0..8)`, `batchLength i32 [8..12)` (bytes after this field),
//! `partitionLeaderEpoch i32 [12..16)`, `magic i8 [16]`, `crc u32 [17..21)` (CRC-32C of
//! `[21..end)`), `attributes i16 [21..23)`, `lastOffsetDelta i32 [23..27)`,
//! `baseTimestamp i64 [27..35)`, `maxTimestamp i64 [35..43)`, `producerId i64 [43..51)`,
//! `producerEpoch i16 [51..53)`, `baseSequence i32 [53..57)`, `recordsCount i32 [57..61)`.

use std::ops::Range;

/// Size of the v2 batch header.
pub const BATCH_HEADER_LEN: usize = 61;
/// `baseOffset` + `batchLength`: the bytes not counted by `batchLength`.
pub const LOG_OVERHEAD: usize = 12;
/// The only record batch format we accept.
pub const MAGIC_V2: i8 = 2;

const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const MAX_TIMESTAMP_OFFSET: usize = 35;
/// Smallest legal `batchLength` (a header with no records).
const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
/// Attribute bit of a batch written inside a transaction.
pub const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Why a batch was rejected. [`BatchError::is_corrupt`] separates Kafka's
/// `CORRUPT_MESSAGE` family from `INVALID_RECORD`.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch truncated")]
    Truncated,
    #[error("record batch length mismatch: header says {declared} bytes, found {actual}")]
    LengthMismatch { declared: i64, actual: usize },
    #[error("unsupported record batch magic {0}")]
    BadMagic(i8),
    #[error("record batch CRC mismatch: header {expected:#010x}, computed {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("records of a {0:?} batch cannot be walked without decompression")]
    Compressed(Compression),
}

impl BatchError {
    /// True for the errors Kafka reports as `CORRUPT_MESSAGE`.
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            Self::Truncated | Self::LengthMismatch { .. } | Self::BadMagic(_) | Self::CrcMismatch { .. }
        )
    }
}

fn invalid(msg: impl Into<String>) -> BatchError {
    BatchError::InvalidRecord(msg.into())
}

/// Compression codec from attribute bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec id of attribute bits 0-2.
    pub fn code(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }

    /// Maps a codec id; unknown ids are `InvalidRecord`.
    pub fn from_code(code: i16) -> Result<Self, BatchError> {
        Ok(match code {
            0 => Self::None,
            1 => Self::Gzip,
            2 => Self::Snappy,
            3 => Self::Lz4,
            4 => Self::Zstd,
            other => return Err(invalid(format!("unknown compression codec {other}"))),
        })
    }
}

/// The decoded 61-byte header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(x)
}

impl BatchHeader {
    /// Parses the header at the start of `buf` (needs at least 61 bytes). Checks that
    /// `batchLength` covers at least the header, so [`total_len`](Self::total_len) is sane;
    /// checks neither magic nor CRC.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(BatchError::Truncated);
        }
        let batch_length = be_i32(buf, 8);
        if batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::LengthMismatch {
                declared: LOG_OVERHEAD as i64 + i64::from(batch_length),
                actual: buf.len(),
            });
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length,
            partition_leader_epoch: be_i32(buf, PARTITION_LEADER_EPOCH_OFFSET),
            magic: buf[MAGIC_OFFSET] as i8,
            crc: u32::from_be_bytes([buf[17], buf[18], buf[19], buf[20]]),
            attributes: be_i16(buf, ATTRIBUTES_OFFSET),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_OFFSET),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        })
    }

    /// Whole batch size on disk/wire: `12 + batchLength`.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// `baseOffset + lastOffsetDelta`.
    pub fn last_offset(&self) -> i64 {
        // Saturating: a client's baseOffset near i64::MAX must not wrap (the broker replaces it).
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    /// The codec in attribute bits 0-2 (unknown codes are `InvalidRecord`).
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_code(self.attributes & COMPRESSION_MASK)
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// CRC-32C over `batch[21..]` (the part the header's `crc` field covers).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(ATTRIBUTES_OFFSET..).unwrap_or(&[]))
}

/// Checks framing and integrity only: `batch` is exactly one batch, magic 2, CRC matches.
/// This is what recovery needs; [`validate_batch`] adds the producer-facing checks.
pub fn check_integrity(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_len() != batch.len() {
        return Err(BatchError::LengthMismatch {
            declared: header.total_len() as i64,
            actual: batch.len(),
        });
    }
    if header.magic != MAGIC_V2 {
        return Err(BatchError::BadMagic(header.magic));
    }
    let actual = compute_crc(batch);
    if actual != header.crc {
        return Err(BatchError::CrcMismatch { expected: header.crc, actual });
    }
    Ok(header)
}

/// Full validation of one produced batch: [`check_integrity`], a known codec,
/// `recordsCount > 0`, `recordsCount == lastOffsetDelta + 1`, and a walk of every record
/// (dense offset deltas, exact lengths, exact count). Compressed batches are decompressed
/// for the walk, with a cap ([`decompress::MAX_DECOMPRESSED`]); only then does validation
/// allocate.
pub fn validate_batch(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = check_integrity(batch)?;
    let compression = header.compression()?;
    if header.records_count <= 0 {
        return Err(invalid(format!("records count {} <= 0", header.records_count)));
    }
    if i64::from(header.records_count) != i64::from(header.last_offset_delta) + 1 {
        return Err(invalid(format!(
            "records count {} != lastOffsetDelta {} + 1",
            header.records_count, header.last_offset_delta
        )));
    }
    let section = &batch[BATCH_HEADER_LEN..];
    let decompressed;
    let records = if compression == Compression::None {
        section
    } else {
        decompressed = decompress::decompress(compression, section, decompress::MAX_DECOMPRESSED)?;
        &decompressed[..]
    };
    {
        let mut n: i32 = 0;
        for record in Records::new(&header, records) {
            let record = record?;
            // Wrapping, as the walker computes offsets: a client's baseOffset may be near i64::MAX.
            let delta = record.offset.wrapping_sub(header.base_offset);
            if delta != i64::from(n) {
                return Err(invalid(format!("record {n} has offset delta {delta}")));
            }
            n += 1;
        }
        if n != header.records_count {
            return Err(invalid(format!("header counts {} records, found {n}", header.records_count)));
        }
    }
    Ok(header)
}

/// Splits bytes laid end to end into whole batches: yields each header with its byte range.
/// Only framing is checked (use [`validate_batch`] on each range). An incomplete or
/// malformed trailing batch yields one error item, then the iterator ends.
pub fn batches(buf: &[u8]) -> Batches<'_> {
    Batches { buf, pos: 0, done: false }
}

/// Iterator returned by [`batches`].
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

impl Iterator for Batches<'_> {
    type Item = Result<(BatchHeader, Range<usize>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let item = BatchHeader::parse(rest).and_then(|h| {
            if h.total_len() > rest.len() {
                Err(BatchError::Truncated)
            } else {
                Ok((h, self.pos..self.pos + h.total_len()))
            }
        });
        match &item {
            Ok((_, range)) => self.pos = range.end,
            Err(_) => self.done = true,
        }
        Some(item)
    }
}

/// Sets `baseOffset` in place (outside the CRC).
pub fn set_base_offset(batch: &mut [u8], offset: i64) {
    batch[0..8].copy_from_slice(&offset.to_be_bytes());
}

/// Sets `partitionLeaderEpoch` in place (outside the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch LogAppendTime with `maxTimestamp = ts` and recomputes the CRC.
/// `batch` must hold a whole batch (at least the 61-byte header).
pub fn set_log_append_time(batch: &mut [u8], ts: i64) {
    let attrs = be_i16(batch, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&ts.to_be_bytes());
    update_crc(batch);
}

/// Recomputes and stores the CRC of a whole batch.
pub fn update_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

mod compact;
mod control;
pub mod decompress;
mod encode;
mod records;
#[cfg(test)]
mod tests;

pub use control::{encode_marker, in_sequence, read_marker, set_producer, set_transactional, ControlType, Marker};
pub use compact::{compress, filter_batch, keyless_records, recompress, records_section, walk, Filtered};
pub use encode::{encode_batch, NewRecord};
pub use records::{record_timestamps, records, RecordView, Records};
