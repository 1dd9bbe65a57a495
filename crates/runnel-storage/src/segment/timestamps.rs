//! Timestamp lookups inside one segment: the time index says where to start, then batch
//! headers (and, for uncompressed batches, the records) give the exact answer.

use runnel_protocol::batch::{self, BatchHeader, Compression};

use super::Segment;
use crate::error::StorageError;

impl Segment {
    /// The largest batch `maxTimestamp` here and the first batch that reached it.
    pub fn max_time_entry(&self) -> Option<(i64, i64)> {
        self.max_ts
    }

    /// The first batch's `maxTimestamp`.
    pub fn first_timestamp(&self) -> Option<i64> {
        self.first_ts
    }

    /// Earliest `(offset, timestamp)` with timestamp `>= ts` in this segment.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, StorageError> {
        if !matches!(self.max_time_entry(), Some((max, _)) if max >= ts) {
            return Ok(None);
        }
        let mut pos = match self.time_last_below(ts) {
            Some(e) => self
                .find_batch(self.base_offset + i64::from(e.rel_offset))?
                .map_or(0, |(p, _)| p),
            None => 0,
        };
        while pos < self.size {
            let h = self.read_header(pos)?;
            if h.max_timestamp >= ts {
                if let Some(found) = self.first_record_where(pos, &h, |t| t >= ts)? {
                    return Ok(Some(found));
                }
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// `(timestamp, offset)` of the earliest record with the segment's largest timestamp.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, StorageError> {
        let Some((max, offset)) = self.max_time_entry() else {
            return Ok(None);
        };
        let Some((pos, h)) = self.find_batch(offset)? else {
            return Err(StorageError::Corrupt(format!(
                "time index names offset {offset} not in segment {}",
                self.base_offset
            )));
        };
        Ok(Some(
            match self.first_record_where(pos, &h, |t| t == max)? {
                Some((o, _)) if h.compression() == Ok(Compression::None) => (max, o),
                _ => (max, h.last_offset()),
            },
        ))
    }

    /// The first record of the batch at `pos` whose timestamp satisfies `pred`, as
    /// `(offset, timestamp)`. Compressed (or unwalkable) batches answer at batch
    /// granularity: `(base offset, maxTimestamp)`.
    fn first_record_where(
        &self,
        pos: u64,
        h: &BatchHeader,
        pred: impl Fn(i64) -> bool,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let batch_level = Some((h.base_offset, h.max_timestamp));
        if h.compression() != Ok(Compression::None) {
            return Ok(batch_level.filter(|&(_, t)| pred(t)));
        }
        let bytes = self.read_batch(pos, h)?;
        let Ok(records) = batch::records(&bytes) else {
            return Ok(batch_level.filter(|&(_, t)| pred(t)));
        };
        for r in records {
            match r {
                Ok(r) if pred(r.timestamp) => return Ok(Some((r.offset, r.timestamp))),
                Ok(_) => {}
                Err(_) => return Ok(batch_level.filter(|&(_, t)| pred(t))),
            }
        }
        Ok(None)
    }
}
