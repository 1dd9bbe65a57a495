//! Runnel's Kafka wire protocol: frames, request/response headers, decoding by
//! (api key, version) through the `kafka-protocol` crate, and the v2 record batch view.
//!
//! This crate does no I/O: it turns frame bytes into typed requests and typed responses
//! into frame bytes. It never decides what a request means. It also owns the process
//! allocator policy ([`alloc::NoReserveHuge`], which only reserves address space) that
//! makes decoding hostile frames through `kafka-protocol` safe.

pub mod alloc;
pub mod batch;
pub mod codec;
pub mod error;
pub mod splice;

pub use codec::{decode_request, encode_response, encode_unsupported_api_versions, Request};
pub use error::ProtocolError;
pub use kafka_protocol;

/// This crate's tests decode hostile frames, so they run under the allocator the binary
/// installs (see [`alloc`]).
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: alloc::NoReserveHuge = alloc::NoReserveHuge;
