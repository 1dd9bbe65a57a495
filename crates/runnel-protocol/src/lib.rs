//! Runnel's Kafka wire protocol: frames, request/response headers, decoding by
//! (api key, version) through the `kafka-protocol` crate, and the v2 record batch view.
//!
//! This crate does no I/O: it turns frame bytes into typed requests and typed responses
//! into frame bytes. It never decides what a request means. Decoding is safe against
//! hostile frames on its own: [`walk`] checks every length in a request against the frame
//! before `kafka-protocol` pre-allocates from it. [`alloc::NoReserveHuge`] (an allocator
//! policy that only reserves address space for huge blocks) stays available as defence in
//! depth for binaries.

pub mod alloc;
pub mod batch;
pub mod codec;
pub mod error;
pub mod splice;
#[doc(hidden)]
pub mod testing;
pub mod walk;

pub use codec::{decode_request, encode_response, encode_unsupported_api_versions, Request};
pub use error::ProtocolError;
pub use kafka_protocol;

/// This crate's tests record the largest allocation each test asks for
/// ([`testing::Counting`]) and assert that decoding a hostile frame never asks for more than
/// a small multiple of the frame. Underneath is [`alloc::NoReserveHuge`] only because some
/// tests also run `kafka-protocol` *without* the walk, to compare, and its own tests use it;
/// `tests/system_allocator.rs` runs the hostile frames under the plain system allocator.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: testing::Counting<alloc::NoReserveHuge> = testing::Counting(alloc::NoReserveHuge);
