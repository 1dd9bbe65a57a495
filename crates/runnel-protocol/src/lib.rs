//! Runnel's Kafka wire protocol: frames, request/response headers, decoding by
//! (api key, version) through the `kafka-protocol` crate, and the v2 record batch view.
//!
//! This crate does no I/O: it turns frame bytes into typed requests and typed responses
//! into frame bytes. It never decides what a request means.

pub mod batch;
pub mod codec;
pub mod error;

pub use codec::{decode_request, encode_response, encode_unsupported_api_versions, Request};
pub use error::ProtocolError;
pub use kafka_protocol;
