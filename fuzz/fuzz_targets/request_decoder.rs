//! Any frame, for any (api key, version) kafka-protocol declares valid: decoding answers
//! Ok or Err, never panics or aborts. Runs under the broker's allocator, as the broker
//! does (libFuzzer reports a panic even where the broker's `catch_unwind` would turn it
//! into a malformed frame, so a panic inside kafka-protocol is found too).
#![no_main]

use libfuzzer_sys::fuzz_target;
use runnel_protocol::decode_request;

#[global_allocator]
static ALLOC: runnel_protocol::alloc::NoReserveHuge = runnel_protocol::alloc::NoReserveHuge;

fuzz_target!(|data: &[u8]| {
    let _ = decode_request(bytes::Bytes::copy_from_slice(data), |key, version| {
        let range = key.valid_versions();
        (range.min..=range.max).contains(&version)
    });
});
