//! Bounded decompression of a batch's records section, for validation.
//!
//! `kafka-protocol`'s decompressors have no output cap, so a few KiB of zeros compressed
//! with zstd could expand to gigabytes. Here every codec is read through `Read::take`, and
//! output beyond [`MAX_DECOMPRESSED`] is an INVALID_RECORD refusal.

use std::io::Read;

use super::{invalid, BatchError, Compression};

/// The most a single batch may expand to when decompressed.
pub const MAX_DECOMPRESSED: usize = 128 << 20;

/// The most one raw snappy block can expand: its densest element is a 3-byte copy of 64
/// bytes, so no valid block decodes to more than 22 times its own length. A block whose
/// header claims more is refused before any output is allocated (the header is the
/// client's to choose: trusting it made a few bytes claim, and zero-fill, 128 MiB).
const SNAPPY_MAX_RATIO: usize = 22;

/// Kafka's snappy framing (xerial `SnappyOutputStream`): magic, version, compatible version.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// Decompresses `data` written with `codec`, refusing output above `cap` bytes.
pub fn decompress(codec: Compression, data: &[u8], cap: usize) -> Result<Vec<u8>, BatchError> {
    let fail = |what: &str, e: std::io::Error| invalid(format!("{what} records do not decompress: {e}"));
    let mut out = Vec::new();
    match codec {
        Compression::None => out.extend_from_slice(data),
        Compression::Gzip => {
            read_capped(flate2::read::GzDecoder::new(data), cap, &mut out).map_err(|e| fail("gzip", e))?;
        }
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(data).map_err(|e| fail("lz4", e))?;
            read_capped(decoder, cap, &mut out).map_err(|e| fail("lz4", e))?;
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| fail("zstd", e))?;
            read_capped(decoder, cap, &mut out).map_err(|e| fail("zstd", e))?;
        }
        Compression::Snappy => snappy(data, cap, &mut out)?,
    }
    if out.len() > cap {
        return Err(invalid(format!("records decompress to more than {cap} bytes")));
    }
    Ok(out)
}

fn read_capped(r: impl Read, cap: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    r.take(cap as u64 + 1).read_to_end(out).map(|_| ())
}

/// Snappy as Kafka clients write it: xerial-framed blocks `[len u32][raw snappy block]`
/// after a 16-byte header, or one raw block without the header (as Java reads it too).
fn snappy(data: &[u8], cap: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    let block = |raw: &[u8], out: &mut Vec<u8>| -> Result<(), BatchError> {
        let len = snap::raw::decompress_len(raw).map_err(|e| invalid(format!("snappy records do not decompress: {e}")))?;
        if len > raw.len().saturating_mul(SNAPPY_MAX_RATIO) {
            return Err(invalid(format!("a snappy block of {} bytes claims to decompress to {len}", raw.len())));
        }
        if out.len() + len > cap {
            return Err(invalid(format!("records decompress to more than {cap} bytes")));
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(raw, &mut out[start..])
            .map_err(|e| invalid(format!("snappy records do not decompress: {e}")))?;
        Ok(())
    };
    if !data.starts_with(XERIAL_MAGIC) {
        return block(data, out);
    }
    let mut rest = data.get(XERIAL_HEADER_LEN..).ok_or_else(|| invalid("truncated snappy header"))?;
    while !rest.is_empty() {
        let len = rest.get(..4).map(|b| u32::from_be_bytes(b.try_into().unwrap()) as usize).ok_or_else(|| invalid("truncated snappy block length"))?;
        let raw = rest.get(4..4 + len).ok_or_else(|| invalid("truncated snappy block"))?;
        block(raw, out)?;
        rest = &rest[4 + len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn caps_output_of_a_compression_bomb() {
        let zeros = vec![0u8; 4 << 20];
        let bomb = zstd::encode_all(&zeros[..], 19).unwrap();
        assert!(bomb.len() < 4096);
        assert!(decompress(Compression::Zstd, &bomb, 1 << 20).is_err());
        assert_eq!(decompress(Compression::Zstd, &bomb, 8 << 20).unwrap().len(), 4 << 20);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&zeros).unwrap();
        let gz = gz.finish().unwrap();
        assert!(decompress(Compression::Gzip, &gz, 1 << 20).is_err());
        let raw = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
        assert!(decompress(Compression::Snappy, &raw, 1 << 20).is_err());
        assert_eq!(decompress(Compression::Snappy, &raw, 8 << 20).unwrap(), zeros);
    }

    /// A raw block is a varint of its decompressed length, then elements: a header claiming
    /// 128 MiB over a few bytes is refused before anything is allocated for it.
    #[test]
    fn a_snappy_length_the_block_cannot_hold_is_refused() {
        let mut lying = vec![0x80, 0x80, 0x80, 0x40]; // varint 128 MiB
        lying.extend_from_slice(&[0; 16]);
        let err = decompress(Compression::Snappy, &lying, MAX_DECOMPRESSED).unwrap_err();
        assert!(err.to_string().contains("claims to decompress"), "{err}");
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        framed.extend_from_slice(&(lying.len() as u32).to_be_bytes());
        framed.extend_from_slice(&lying);
        assert!(decompress(Compression::Snappy, &framed, MAX_DECOMPRESSED).is_err());
        // The densest real block (all copies) stays within the ratio.
        let zeros = vec![0u8; 1 << 20];
        let dense = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
        assert!(zeros.len() <= dense.len() * SNAPPY_MAX_RATIO);
        assert_eq!(decompress(Compression::Snappy, &dense, MAX_DECOMPRESSED).unwrap(), zeros);
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            assert!(decompress(codec, b"\x82SNAPPY\x00garbage-garbage-garbage", 1 << 20).is_err());
        }
    }
}
