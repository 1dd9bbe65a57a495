//! Record-level access to stored batches for log compaction, and the key check that
//! compacted topics need at produce time.
//!
//! Owns: the decompressed records section of a batch (bounded by
//! [`decompress::MAX_DECOMPRESSED`]), compressing a records section with a batch's own codec,
//! and [`filter_batch`], which keeps a subset of a batch's records. A rewritten batch keeps
//! the original `baseOffset`, `lastOffsetDelta`, timestamps, producer fields and attributes
//! (as Kafka's cleaner does), so every kept record keeps its offset and timestamp: offset
//! gaps appear between records, never renumbering. Never does I/O.

use std::borrow::Cow;
use std::io::Write;

use super::*;

/// The records section of a whole batch, decompressed when needed (capped).
pub fn records_section(batch: &[u8]) -> Result<(BatchHeader, Cow<'_, [u8]>), BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_len() != batch.len() {
        return Err(BatchError::LengthMismatch { declared: header.total_len() as i64, actual: batch.len() });
    }
    let section = &batch[BATCH_HEADER_LEN..];
    Ok(match header.compression()? {
        Compression::None => (header, Cow::Borrowed(section)),
        codec => (header, Cow::Owned(decompress::decompress(codec, section, decompress::MAX_DECOMPRESSED)?)),
    })
}

/// Walks the records of a (decompressed) records section of the batch `header` describes.
pub fn walk<'a>(header: &BatchHeader, section: &'a [u8]) -> Records<'a> {
    Records::new(header, section)
}

/// The indexes (0-based, in the batch) of the records without a key, for a compacted
/// topic's check (Kafka answers them in Produce's `record_errors`). Compressed batches are
/// decompressed (capped); a batch whose records cannot be walked is an error.
pub fn keyless_records(batch: &[u8]) -> Result<Vec<i32>, BatchError> {
    let (header, section) = records_section(batch)?;
    let mut keyless = Vec::new();
    for (i, r) in walk(&header, &section).enumerate() {
        if r?.key.is_none() {
            keyless.push(i as i32);
        }
    }
    Ok(keyless)
}

/// The batch with its records compressed with `codec` instead of its own, for a topic's
/// `compression.type`: the same header and records otherwise, with new codec bits,
/// length and CRC. None when the batch already uses `codec`, or is a control batch.
pub fn recompress(batch: &[u8], codec: Compression) -> Result<Option<Vec<u8>>, BatchError> {
    let (header, section) = records_section(batch)?;
    if header.is_control() || header.compression()? == codec {
        return Ok(None);
    }
    let body = compress(codec, &section)?;
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    out.extend_from_slice(&batch[..BATCH_HEADER_LEN]);
    out.extend_from_slice(&body);
    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| invalid("recompressed batch too large"))?;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = (header.attributes & !COMPRESSION_MASK) | codec.code();
    out[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    update_crc(&mut out);
    Ok(Some(out))
}

/// Compresses a records section with `codec`, in the framing Kafka clients read (gzip
/// stream, xerial-framed snappy, LZ4 frame with independent blocks, zstd frame).
pub fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, BatchError> {
    let fail = |what: &str, e: std::io::Error| invalid(format!("cannot {what}-compress records: {e}"));
    Ok(match codec {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(data).map_err(|e| fail("gzip", e))?;
            enc.finish().map_err(|e| fail("gzip", e))?
        }
        Compression::Snappy => {
            const BLOCK: usize = 32 * 1024;
            let mut out = Vec::with_capacity(data.len() / 2 + 32);
            out.extend_from_slice(b"\x82SNAPPY\x00");
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut enc = snap::raw::Encoder::new();
            for chunk in data.chunks(BLOCK) {
                let block = enc.compress_vec(chunk).map_err(|e| invalid(format!("cannot snappy-compress records: {e}")))?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
        Compression::Lz4 => {
            let mut enc = lz4::EncoderBuilder::new()
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())
                .map_err(|e| fail("lz4", e))?;
            enc.write_all(data).map_err(|e| fail("lz4", e))?;
            let (out, res) = enc.finish();
            res.map_err(|e| fail("lz4", e))?;
            out
        }
        Compression::Zstd => zstd::encode_all(data, 3).map_err(|e| fail("zstd", e))?,
    })
}

/// What [`filter_batch`] made of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Every record is kept: store the original bytes.
    Unchanged,
    /// No record is kept: drop the batch.
    Empty,
    /// Some records are kept: the rewritten batch (same codec, new CRC).
    Rewritten(Vec<u8>),
}

/// Keeps the records of a whole batch for which `keep` is true. A rewritten batch has the
/// original header except `recordsCount`, `batchLength` and the CRC; its records are the
/// kept records' original encodings (so offset and timestamp deltas are unchanged),
/// compressed again with the batch's codec. Control batches are always kept unchanged.
pub fn filter_batch(batch: &[u8], mut keep: impl FnMut(&RecordView<'_>) -> bool) -> Result<Filtered, BatchError> {
    let (header, section) = records_section(batch)?;
    if header.is_control() {
        return Ok(Filtered::Unchanged);
    }
    let mut kept = Vec::with_capacity(section.len());
    let (mut n_kept, mut n_all) = (0i32, 0i32);
    let mut records = walk(&header, &section);
    let mut start = 0;
    while let Some(r) = records.next() {
        let r = r?;
        let end = records.position();
        n_all += 1;
        if keep(&r) {
            kept.extend_from_slice(&section[start..end]);
            n_kept += 1;
        }
        start = end;
    }
    if n_kept == n_all {
        return Ok(Filtered::Unchanged);
    }
    if n_kept == 0 {
        return Ok(Filtered::Empty);
    }
    let body = compress(header.compression()?, &kept)?;
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    out.extend_from_slice(&batch[..BATCH_HEADER_LEN]);
    out.extend_from_slice(&body);
    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| invalid("rewritten batch too large"))?;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    out[57..61].copy_from_slice(&n_kept.to_be_bytes());
    update_crc(&mut out);
    Ok(Filtered::Rewritten(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(keys: &[Option<&str>]) -> Vec<u8> {
        let recs: Vec<NewRecord> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| NewRecord { timestamp: 1000 + i as i64, key: k.map(str::as_bytes), value: Some(b"v"), headers: &[] })
            .collect();
        encode_batch(40, 0, &recs)
    }

    /// Re-encodes an uncompressed batch's records section with `codec`.
    fn recompress_with(batch: &[u8], codec: Compression, code: i16) -> Vec<u8> {
        let mut out = batch[..BATCH_HEADER_LEN].to_vec();
        out.extend(compress(codec, &batch[BATCH_HEADER_LEN..]).unwrap());
        let len = (out.len() - LOG_OVERHEAD) as i32;
        out[8..12].copy_from_slice(&len.to_be_bytes());
        out[22] |= code as u8;
        update_crc(&mut out);
        out
    }

    #[test]
    fn keys_checked_through_compression() {
        assert!(keyless_records(&keyed(&[Some("a"), Some("b")])).unwrap().is_empty());
        assert_eq!(keyless_records(&keyed(&[Some("a"), None, Some("c"), None])).unwrap(), vec![1, 3]);
        let gz = recompress_with(&keyed(&[None]), Compression::Gzip, 1);
        validate_batch(&gz).unwrap();
        assert_eq!(keyless_records(&gz).unwrap(), vec![0]);
    }

    #[test]
    fn recompress_changes_only_the_codec() {
        let plain = keyed(&[Some("a"), None, Some("c")]);
        let codecs = [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];
        for from in codecs {
            let b = match from {
                Compression::None => plain.clone(),
                c => recompress(&plain, c).unwrap().unwrap(),
            };
            for to in codecs {
                let Some(out) = recompress(&b, to).unwrap() else {
                    assert_eq!(from, to);
                    continue;
                };
                let h = validate_batch(&out).unwrap();
                assert_eq!(h.compression().unwrap(), to);
                let orig = BatchHeader::parse(&b).unwrap();
                assert_eq!((h.base_offset, h.last_offset_delta, h.records_count, h.max_timestamp), (orig.base_offset, orig.last_offset_delta, orig.records_count, orig.max_timestamp));
                assert_eq!(records_section(&out).unwrap().1, records_section(&plain).unwrap().1);
            }
        }
    }

    #[test]
    fn filter_keeps_offsets_and_codec() {
        let plain = keyed(&[Some("a"), Some("b"), Some("c"), Some("d")]);
        for (codec, code) in [
            (Compression::None, 0),
            (Compression::Gzip, 1),
            (Compression::Snappy, 2),
            (Compression::Lz4, 3),
            (Compression::Zstd, 4),
        ] {
            let b = if code == 0 { plain.clone() } else { recompress_with(&plain, codec, code) };
            validate_batch(&b).unwrap();
            assert_eq!(filter_batch(&b, |_| true).unwrap(), Filtered::Unchanged);
            assert_eq!(filter_batch(&b, |_| false).unwrap(), Filtered::Empty);
            let Filtered::Rewritten(out) = filter_batch(&b, |r| r.key != Some(b"b")).unwrap() else { panic!() };
            let h = check_integrity(&out).unwrap();
            assert_eq!((h.base_offset, h.last_offset_delta, h.records_count), (40, 3, 3));
            assert_eq!(h.compression().unwrap(), codec);
            let (h, section) = records_section(&out).unwrap();
            let got: Vec<(i64, i64, Vec<u8>)> =
                walk(&h, &section).map(|r| r.unwrap()).map(|r| (r.offset, r.timestamp, r.key.unwrap().to_vec())).collect();
            assert_eq!(got, vec![(40, 1000, b"a".to_vec()), (42, 1002, b"c".to_vec()), (43, 1003, b"d".to_vec())]);
        }
    }
}
