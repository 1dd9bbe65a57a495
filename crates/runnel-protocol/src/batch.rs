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
const TRANSACTIONAL_BIT: i16 = 0x10;
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
        self.base_offset + i64::from(self.last_offset_delta)
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
/// `recordsCount > 0`, `recordsCount == lastOffsetDelta + 1`, and for uncompressed
/// batches a walk of every record (dense offset deltas, exact lengths, exact count).
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
    if compression == Compression::None {
        let mut n: i32 = 0;
        for record in Records::new(&header, &batch[BATCH_HEADER_LEN..]) {
            let record = record?;
            if record.offset - header.base_offset != i64::from(n) {
                return Err(invalid(format!("record {n} has offset delta {}", record.offset - header.base_offset)));
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

/// One record of an uncompressed batch, borrowed from the batch bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Absolute offset (`baseOffset + offsetDelta`).
    pub offset: i64,
    /// Absolute timestamp (`maxTimestamp` for LogAppendTime batches).
    pub timestamp: i64,
    pub attributes: i8,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers_count: i32,
    /// The raw, already length-checked headers section.
    pub headers: &'a [u8],
}

/// Walks the records of an uncompressed batch (whole batch bytes, checked framing).
/// Compressed batches are `Compressed`; they answer at batch granularity.
pub fn records(batch: &[u8]) -> Result<Records<'_>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_len() != batch.len() {
        return Err(BatchError::LengthMismatch { declared: header.total_len() as i64, actual: batch.len() });
    }
    match header.compression()? {
        Compression::None => Ok(Records::new(&header, &batch[BATCH_HEADER_LEN..])),
        other => Err(BatchError::Compressed(other)),
    }
}

/// `(offset, timestamp)` of every record of an uncompressed batch.
pub fn record_timestamps(batch: &[u8]) -> Result<Vec<(i64, i64)>, BatchError> {
    records(batch)?.map(|r| r.map(|r| (r.offset, r.timestamp))).collect()
}

/// Iterator over the records section; see [`records`]. Stops after `recordsCount`
/// records; trailing bytes are reported as an error item.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    cur: Cursor<'a>,
    remaining: i32,
    base_offset: i64,
    base_timestamp: i64,
    append_time: Option<i64>,
    failed: bool,
}

impl<'a> Records<'a> {
    fn new(header: &BatchHeader, section: &'a [u8]) -> Self {
        Records {
            cur: Cursor { buf: section, pos: 0 },
            remaining: header.records_count.max(0),
            base_offset: header.base_offset,
            base_timestamp: header.base_timestamp,
            append_time: header.is_log_append_time().then_some(header.max_timestamp),
            failed: false,
        }
    }

    fn next_record(&mut self) -> Result<RecordView<'a>, BatchError> {
        let len = self.cur.varint()?;
        if len < 0 {
            return Err(invalid(format!("negative record length {len}")));
        }
        let body = self.cur.take(len as usize)?;
        let mut c = Cursor { buf: body, pos: 0 };
        let attributes = c.take(1)?[0] as i8;
        let ts_delta = c.varlong()?;
        let offset_delta = c.varint()?;
        let key = c.nullable_bytes("key")?;
        let value = c.nullable_bytes("value")?;
        let headers_count = c.varint()?;
        if headers_count < 0 {
            return Err(invalid(format!("negative header count {headers_count}")));
        }
        let headers_start = c.pos;
        for _ in 0..headers_count {
            let key_len = c.varint()?;
            if key_len < 0 {
                return Err(invalid("null header key"));
            }
            c.take(key_len as usize)?;
            c.nullable_bytes("header value")?;
        }
        if c.pos != body.len() {
            return Err(invalid(format!("record length {len} but {} bytes used", c.pos)));
        }
        Ok(RecordView {
            offset: self.base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp: self.append_time.unwrap_or(self.base_timestamp.wrapping_add(ts_delta)),
            attributes,
            key,
            value,
            headers_count,
            headers: &body[headers_start..],
        })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = if self.remaining == 0 {
            if self.cur.pos == self.cur.buf.len() {
                return None;
            }
            Err(invalid(format!("{} bytes after the last record", self.cur.buf.len() - self.cur.pos)))
        } else {
            self.remaining -= 1;
            self.next_record()
        };
        self.failed = item.is_err();
        Some(item)
    }
}

/// Bounds-checked reader for varints and byte runs; never panics.
#[derive(Debug, Clone)]
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| invalid("record extends past its section"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Unsigned LEB128 of at most `max_bytes` bytes.
    fn uvarint(&mut self, max_bytes: u32) -> Result<u64, BatchError> {
        let mut value: u64 = 0;
        for i in 0..max_bytes {
            let b = self.take(1)?[0];
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(invalid("varint too long"))
    }

    fn varint(&mut self) -> Result<i32, BatchError> {
        let u = self.uvarint(5)?;
        let u = u32::try_from(u).map_err(|_| invalid("varint overflows i32"))?;
        Ok(((u >> 1) as i32) ^ -((u & 1) as i32))
    }

    fn varlong(&mut self) -> Result<i64, BatchError> {
        let u = self.uvarint(10)?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn nullable_bytes(&mut self, what: &str) -> Result<Option<&'a [u8]>, BatchError> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < 0 => Err(invalid(format!("negative {what} length {n}"))),
            n => self.take(n as usize).map(Some),
        }
    }
}

/// A record for [`encode_batch`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NewRecord<'a> {
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a [u8], Option<&'a [u8]>)],
}

/// Encodes an uncompressed v2 batch (no producer id, epoch or sequence) with a valid CRC.
/// `attributes` are stored as given: a caller that sets compression bits gets a batch whose
/// (uncompressed) records only that caller can interpret, which is handy in tests.
/// Used for the broker's own records and in tests.
pub fn encode_batch(base_offset: i64, attributes: i16, records: &[NewRecord<'_>]) -> Vec<u8> {
    let base_ts = records.first().map_or(-1, |r| r.timestamp);
    let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(-1);
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records.len() * 16);
    out.extend_from_slice(&base_offset.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // batchLength, patched below
    out.extend_from_slice(&0i32.to_be_bytes()); // partitionLeaderEpoch
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, patched below
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&(records.len() as i32 - 1).to_be_bytes());
    out.extend_from_slice(&base_ts.to_be_bytes());
    out.extend_from_slice(&max_ts.to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes());
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out.extend_from_slice(&(records.len() as i32).to_be_bytes());
    let mut body = Vec::new();
    for (i, r) in records.iter().enumerate() {
        body.clear();
        body.push(0);
        put_varlong(&mut body, r.timestamp.wrapping_sub(base_ts));
        put_varlong(&mut body, i as i64);
        put_nullable(&mut body, r.key);
        put_nullable(&mut body, r.value);
        put_varlong(&mut body, r.headers.len() as i64);
        for (k, v) in r.headers {
            put_nullable(&mut body, Some(k));
            put_nullable(&mut body, *v);
        }
        put_varlong(&mut out, body.len() as i64);
        out.extend_from_slice(&body);
    }
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    update_crc(&mut out);
    out
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    while u >= 0x80 {
        out.push((u as u8) | 0x80);
        u >>= 7;
    }
    out.push(u as u8);
}

fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(ts: i64, value: &[u8]) -> NewRecord<'_> {
        NewRecord { timestamp: ts, key: None, value: Some(value), headers: &[] }
    }

    fn sample() -> Vec<u8> {
        let h: &[(&[u8], Option<&[u8]>)] = &[(b"h", Some(b"v")), (b"n", None)];
        encode_batch(
            0,
            0,
            &[
                NewRecord { timestamp: 1000, key: Some(b"k1"), value: Some(b"hello"), headers: h },
                rec(990, b"world"),
                NewRecord { timestamp: 1005, key: Some(b""), value: None, headers: &[] },
            ],
        )
    }

    #[test]
    fn parses_and_validates_own_encoding() {
        let b = sample();
        let h = validate_batch(&b).unwrap();
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset(), 2);
        assert_eq!(h.total_len(), b.len());
        assert_eq!(h.max_timestamp, 1005);
        assert_eq!(h.compression(), Ok(Compression::None));
        assert!(!h.is_log_append_time() && !h.is_transactional() && !h.is_control());
        assert_eq!(record_timestamps(&b).unwrap(), vec![(0, 1000), (1, 990), (2, 1005)]);
        let first = records(&b).unwrap().next().unwrap().unwrap();
        assert_eq!((first.key, first.value, first.headers_count), (Some(&b"k1"[..]), Some(&b"hello"[..]), 2));
    }

    #[test]
    fn validates_kafka_protocol_encoding() {
        use kafka_protocol::records::{
            Compression as KC, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let recs: Vec<Record> = (0..5)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32,
                timestamp: 100 + i,
                key: Some(bytes::Bytes::from(format!("key{i}"))),
                value: Some(bytes::Bytes::from(vec![i as u8; 10 * i as usize])),
                headers: Default::default(),
            })
            .collect();
        for compression in [KC::None, KC::Gzip] {
            let mut buf = bytes::BytesMut::new();
            let opts = RecordEncodeOptions { version: 2, compression };
            RecordBatchEncoder::encode(&mut buf, &recs, &opts).unwrap();
            let h = validate_batch(&buf).unwrap();
            assert_eq!((h.records_count, h.last_offset(), h.max_timestamp), (5, 4, 104));
            if compression == KC::None {
                assert_eq!(record_timestamps(&buf).unwrap()[4], (4, 104));
            } else {
                assert_eq!(h.compression(), Ok(Compression::Gzip));
                assert_eq!(record_timestamps(&buf), Err(BatchError::Compressed(Compression::Gzip)));
            }
        }
    }

    #[test]
    fn count_and_codec_checks_are_invalid_record() {
        let mut b = sample();
        b[57..61].copy_from_slice(&4i32.to_be_bytes());
        update_crc(&mut b);
        let e = validate_batch(&b).unwrap_err();
        assert!(matches!(e, BatchError::InvalidRecord(_)) && !e.is_corrupt());

        let mut b = sample();
        b[22] = 5; // codec 5
        update_crc(&mut b);
        assert!(matches!(validate_batch(&b), Err(BatchError::InvalidRecord(_))));

        let mut b = encode_batch(0, 0, &[]);
        update_crc(&mut b);
        assert!(matches!(validate_batch(&b), Err(BatchError::InvalidRecord(_))));

        // Record walk mismatch: claim 2 records with lastOffsetDelta 1 while 3 are present.
        let mut b = sample();
        b[23..27].copy_from_slice(&1i32.to_be_bytes());
        b[57..61].copy_from_slice(&2i32.to_be_bytes());
        update_crc(&mut b);
        assert!(matches!(validate_batch(&b), Err(BatchError::InvalidRecord(_))));
    }

    #[test]
    fn framing_errors_are_corrupt() {
        let b = sample();
        let mut bad_magic = b.clone();
        bad_magic[16] = 1;
        assert_eq!(validate_batch(&bad_magic), Err(BatchError::BadMagic(1)));
        let mut longer = b.clone();
        longer.push(0);
        assert!(matches!(validate_batch(&longer), Err(BatchError::LengthMismatch { .. })));
        assert_eq!(validate_batch(&b[..30]), Err(BatchError::Truncated));
        for e in [BatchError::Truncated, BatchError::BadMagic(0), BatchError::CrcMismatch { expected: 0, actual: 1 }] {
            assert!(e.is_corrupt());
        }
    }

    #[test]
    fn patches_keep_crc_valid() {
        let mut b = sample();
        set_base_offset(&mut b, 42);
        set_partition_leader_epoch(&mut b, 7);
        let h = validate_batch(&b).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch, h.last_offset()), (42, 7, 44));
        set_log_append_time(&mut b, 5000);
        let h = validate_batch(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 5000);
        assert_eq!(record_timestamps(&b).unwrap(), vec![(42, 5000), (43, 5000), (44, 5000)]);
    }

    #[test]
    fn batches_splits_and_reports_truncation() {
        let a = sample();
        let b = encode_batch(3, 0, &[rec(1, b"x")]);
        let mut buf = [a.clone(), b.clone()].concat();
        let got: Vec<_> = batches(&buf).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].as_ref().unwrap().1, a.len()..a.len() + b.len());
        buf.truncate(buf.len() - 1);
        let got: Vec<_> = batches(&buf).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], Err(BatchError::Truncated));
        assert_eq!(batches(&[]).count(), 0);
        assert_eq!(batches(&[0u8; 5]).collect::<Vec<_>>(), vec![Err(BatchError::Truncated)]);
    }

    fn arb_batch() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            (any::<i32>(), prop::option::of(prop::collection::vec(any::<u8>(), 0..40)), 0usize..3),
            1..8,
        )
        .prop_map(|recs| {
            let hdr: &[(&[u8], Option<&[u8]>)] = &[(b"hk", Some(b"hv"))];
            let rs: Vec<NewRecord> = recs
                .iter()
                .map(|(ts, v, nh)| NewRecord {
                    timestamp: i64::from(*ts),
                    key: v.as_deref().filter(|v| v.len() % 2 == 0),
                    value: v.as_deref(),
                    headers: &hdr[..(*nh).min(1)],
                })
                .collect();
            encode_batch(0, 0, &rs)
        })
    }

    proptest! {
        #[test]
        fn any_flipped_byte_after_magic_is_rejected(b in arb_batch(), i in any::<prop::sample::Index>(), x in 1u8..=255) {
            prop_assert!(validate_batch(&b).is_ok());
            let at = 16 + i.index(b.len() - 16);
            let mut bad = b.clone();
            bad[at] ^= x;
            prop_assert!(validate_batch(&bad).is_err());
        }

        #[test]
        fn truncations_are_rejected(b in arb_batch(), i in any::<prop::sample::Index>()) {
            let cut = i.index(b.len());
            prop_assert!(validate_batch(&b[..cut]).is_err());
            let items: Vec<_> = batches(&b[..cut]).collect();
            prop_assert!(cut == 0 || (items.len() == 1 && items[0].is_err()));
        }

        #[test]
        fn garbage_never_panics(b in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = validate_batch(&b);
            let _ = batches(&b).count();
            if let Ok(r) = records(&b) { let _ = r.count(); }
        }
    }
}
