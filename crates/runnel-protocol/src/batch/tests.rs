//! Tests of the batch view, with real batches from our encoder and from `kafka-protocol`.

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
    for compression in [KC::None, KC::Gzip, KC::Snappy, KC::Lz4, KC::Zstd] {
        let mut buf = bytes::BytesMut::new();
        let opts = RecordEncodeOptions { version: 2, compression };
        RecordBatchEncoder::encode(&mut buf, &recs, &opts).unwrap();
        let h = validate_batch(&buf).unwrap();
        // A header that claims fewer records than the (compressed) section holds is
        // refused even with a correct CRC: the records are walked after decompression.
        let mut lying = buf.to_vec();
        lying[23..27].copy_from_slice(&3i32.to_be_bytes());
        lying[57..61].copy_from_slice(&4i32.to_be_bytes());
        update_crc(&mut lying);
        assert!(matches!(validate_batch(&lying), Err(BatchError::InvalidRecord(_))), "{compression:?}");
        assert_eq!((h.records_count, h.last_offset(), h.max_timestamp), (5, 4, 104));
        if compression == KC::None {
            assert_eq!(record_timestamps(&buf).unwrap()[4], (4, 104));
        } else {
            assert_ne!(h.compression(), Ok(Compression::None));
            assert!(matches!(record_timestamps(&buf), Err(BatchError::Compressed(_))));
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

/// Every way the broker reads a produced batch: validation, then what produce and the
/// cleaner do with a valid one. None may panic, whatever the bytes.
fn read_every_way(b: &[u8]) {
    let _ = batches(b).count();
    if validate_batch(b).is_ok() {
        let _ = keyless_records(b);
        let _ = record_timestamps(b);
        let mut n = 0;
        let _ = filter_batch(b, |_| {
            n += 1;
            n % 2 == 0
        });
        for codec in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let _ = recompress(b, codec);
        }
    } else if let Ok(r) = records(b) {
        let _ = r.count();
    }
}

/// Re-frames `b` with its length and CRC fixed up, so a mutation gets past the CRC check
/// and reaches the record walker and the decompressors.
fn refit(mut b: Vec<u8>) -> Vec<u8> {
    if b.len() >= BATCH_HEADER_LEN {
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[MAGIC_OFFSET] = MAGIC_V2 as u8;
        update_crc(&mut b);
    }
    b
}

fn any_codec() -> impl Strategy<Value = Compression> {
    prop::sample::select(vec![Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd])
}

proptest! {
    // The batch parser's fuzz test on stable Rust (see fuzz/README.md for the cargo-fuzz
    // targets): batches of every codec, mutated after the header, re-framed with a valid
    // CRC so the mutation reaches the walker and the decompressors.
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn mutated_records_behind_a_valid_crc_never_panic(
        b in arb_batch(),
        codec in any_codec(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6),
    ) {
        let mut b = recompress(&b, codec).unwrap().unwrap_or(b);
        for (i, x, kind) in edits {
            let body = b.len() - BATCH_HEADER_LEN;
            let at = BATCH_HEADER_LEN + i.index(body.max(1)).min(body.saturating_sub(1));
            match kind {
                0 if body > 0 => b[at] ^= x | 1,
                1 => b.insert(at.min(b.len()), x),
                2 if body > 0 => { b.remove(at); }
                _ => b.truncate(at.max(BATCH_HEADER_LEN)),
            }
        }
        read_every_way(&refit(b));
    }

    #[test]
    fn junk_records_of_every_codec_never_panic(
        codec in any_codec(),
        count in 1i32..50,
        junk in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut b = encode_batch(0, codec.code(), &[rec(1, b"x")]);
        b.truncate(BATCH_HEADER_LEN);
        b[57..61].copy_from_slice(&count.to_be_bytes());
        b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        b.extend_from_slice(&junk);
        read_every_way(&refit(b));
    }
}
