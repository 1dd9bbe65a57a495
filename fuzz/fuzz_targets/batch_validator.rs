//! Produced record batches: framing, validation, and what produce and the cleaner do with
//! a valid batch (keys, timestamps, filtering, recompression). The CRC is fixed up first
//! (when the input is long enough) so that mutations reach the record walker and the
//! decompressors instead of stopping at the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runnel_protocol::batch::{self, Compression, BATCH_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let mut b = data.to_vec();
    if b.len() >= BATCH_HEADER_LEN {
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[16] = 2;
        batch::update_crc(&mut b);
    }
    let _ = batch::batches(&b).count();
    if batch::validate_batch(&b).is_ok() {
        let _ = batch::keyless_records(&b);
        let _ = batch::record_timestamps(&b);
        let _ = batch::filter_batch(&b, |r| r.key.is_some());
        for codec in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let _ = batch::recompress(&b, codec);
        }
    }
});
