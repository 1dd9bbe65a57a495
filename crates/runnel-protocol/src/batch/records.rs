//! Walking the records of an uncompressed batch without allocating.

use super::*;

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
    pub(super) fn new(header: &BatchHeader, section: &'a [u8]) -> Self {
        Records {
            cur: Cursor { buf: section, pos: 0 },
            remaining: header.records_count.max(0),
            base_offset: header.base_offset,
            base_timestamp: header.base_timestamp,
            append_time: header.is_log_append_time().then_some(header.max_timestamp),
            failed: false,
        }
    }

    /// Bytes of the records section consumed so far (the end of the last record read).
    pub(super) fn position(&self) -> usize {
        self.cur.pos
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
