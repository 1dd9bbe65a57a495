//! The library is safe against hostile frames on its own: this test binary runs under the
//! plain system allocator (counted, no `NoReserveHuge`), where a `kafka-protocol`
//! reservation of hundreds of GiB aborts the process. Every covered (api key, version):
//! frames generated from the walker's schema with a huge count or length (2^31-1 as an
//! int32, 2^32-1 as a varint, 0xff bytes) at every offset decode to `Ok` or `Err`, and never
//! ask the allocator for more than a small multiple of the frame. With the walk taken out
//! of `decode_request` it fails at once (Produce v3: a 24 GB block asked for by a 27-byte
//! frame), and claims beyond what the kernel's overcommit allows abort the process.

use std::alloc::System;

use bytes::Bytes;
use runnel_protocol::testing::{generated_frame, largest_allocation_during, Counting};
use runnel_protocol::{decode_request, walk};

#[global_allocator]
static ALLOC: Counting<System> = Counting(System);

const HUGE_I32: [u8; 4] = 0x7fff_ffffu32.to_be_bytes();
const HUGE_UVARINT: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];

#[test]
fn hostile_frames_of_every_covered_version_stay_within_a_small_multiple_of_the_frame() {
    let mut frames = 0;
    for (key, min, max) in walk::covered() {
        for version in min..=max {
            for seed in 0..3 {
                let frame = generated_frame(key, version, seed);
                for at in 8..=frame.len() {
                    let end = (at + 4).min(frame.len());
                    let mut a = frame.clone();
                    a[at..end].copy_from_slice(&HUGE_I32[..end - at]);
                    a.extend_from_slice(&HUGE_I32[..4 - (end - at)]);
                    let mut b = frame.clone();
                    b.splice(at..at, HUGE_UVARINT);
                    let mut c = frame.clone();
                    c[at..end].fill(0xff);
                    for f in [a, b, c] {
                        let len = f.len();
                        let (_, largest) = largest_allocation_during(|| decode_request(Bytes::from(f), walk::covers));
                        assert!(largest <= 64 * len + 4096, "{key:?} v{version} at {at}: {largest} bytes for a {len}-byte frame");
                        frames += 1;
                    }
                }
            }
        }
    }
    assert!(frames > 10_000, "{frames} frames");
}

/// A dense valid request: DescribeGroups v5 naming 100,000 empty groups, one byte each on
/// the wire and a 32-byte `StrBytes` each once decoded, so `kafka-protocol` rightly
/// reserves 32 bytes per frame byte (a string array of one-byte compact strings is the
/// densest element the served requests have): the factor behind the bound above (64, twice
/// that).
#[test]
fn a_dense_valid_frame_reserves_32_bytes_per_frame_byte() {
    let n = 100_000u32;
    let mut f = vec![0, 15, 0, 5, 0, 0, 0, 1, 0xff, 0xff, 0]; // DescribeGroups v5, null client id, no tags
    let mut count = n + 1;
    while count >= 0x80 {
        f.push(count as u8 | 0x80);
        count >>= 7;
    }
    f.push(count as u8);
    f.extend(std::iter::repeat_n(1u8, n as usize)); // n compact empty strings
    f.extend_from_slice(&[0, 0]); // include_authorized_operations, no tags
    let len = f.len();
    let (r, largest) = largest_allocation_during(|| decode_request(Bytes::from(f), walk::covers));
    assert!(r.is_ok(), "{:?}", r.err());
    assert_eq!(largest, 32 * n as usize, "for a {len}-byte frame");
    assert!(largest <= 64 * len + 4096);
}
