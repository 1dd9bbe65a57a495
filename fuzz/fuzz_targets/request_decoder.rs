//! Any frame: decoding answers Ok or Err, never panics or aborts; the length walker accepts
//! it exactly when `kafka-protocol` decodes it; and decoding it through `decode_request`
//! (walk first, as the broker does) never asks the allocator for a block larger than a small
//! multiple of the frame. libFuzzer reports a panic even where the broker's `catch_unwind`
//! would turn it into a malformed frame, so a panic inside kafka-protocol is found too.
//!
//! The allocator underneath is `NoReserveHuge` only so that the comparison run of
//! `kafka-protocol` *without* the walk survives hostile frames; the bound is checked on the
//! walked decode, whatever serves the blocks.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use runnel_protocol::codec::{decode_unwalked, peek_header};
use runnel_protocol::kafka_protocol::messages::ApiKey;
use runnel_protocol::testing::{largest_allocation_during, Counting};
use runnel_protocol::{alloc::NoReserveHuge, decode_request, walk, ProtocolError};

#[global_allocator]
static ALLOC: Counting<NoReserveHuge> = Counting(NoReserveHuge);

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    let (decoded, largest) = largest_allocation_during(|| decode_request(frame.clone(), walk::covers));
    assert!(largest <= 64 * data.len() + 4096, "asked for {largest} bytes decoding a {}-byte frame", data.len());
    if let Err(ProtocolError::Malformed { reason, .. }) = &decoded {
        assert!(reason != "decoder panicked", "kafka-protocol panicked");
    }
    // The walker against the decoder, for the versions the walker covers (the others are
    // refused before either runs).
    let Some((key, version, _)) = peek_header(data) else { return };
    let Ok(api_key) = ApiKey::try_from(key) else { return };
    if data.len() < 10 || !walk::covers(api_key, version) {
        return;
    }
    let walked = walk::request(data);
    let unwalked = decode_unwalked(frame, api_key, version);
    assert_eq!(walked.is_ok(), unwalked.is_ok(), "walker {walked:?}, decoder {:?}", unwalked.err());
    assert_eq!(decoded.is_ok(), unwalked.is_ok());
});
