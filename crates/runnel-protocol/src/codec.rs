//! Request decoding and response encoding for one frame (the 4-byte length prefix is
//! handled by the connection, which reads it; responses are returned with their prefix).
//!
//! Decoding goes through `kafka-protocol`. Its decoders pre-allocate arrays from lengths
//! read off the wire, so the binary installs an allocator under which an absurd
//! reservation costs nothing until touched; decoding then fails cleanly on the short
//! frame. Decoding is also run under `catch_unwind` so a panic inside the crate is a
//! malformed frame, not a dead broker.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::ProtocolError;

/// A decoded request: its header and body.
#[derive(Debug)]
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub body: RequestKind,
}

/// The smallest request header: api key, api version, correlation id, client id length.
const MIN_HEADER_LEN: usize = 10;

/// Reads api key, version and correlation id from the first bytes of a frame without
/// decoding anything else, so even a frame we refuse can be answered or logged.
pub fn peek_header(frame: &[u8]) -> Option<(i16, i16, i32)> {
    if frame.len() < 8 {
        return None;
    }
    let mut b = &frame[..8];
    Some((b.get_i16(), b.get_i16(), b.get_i32()))
}

/// Decodes one request frame (without its length prefix). `supported` tells whether this
/// broker serves (api key, version); unsupported versions are refused before the body is
/// decoded (ApiVersions is the caller's special case, see [`encode_unsupported_api_versions`]).
pub fn decode_request(
    frame: Bytes,
    supported: impl Fn(ApiKey, i16) -> bool,
) -> Result<Request, ProtocolError> {
    if frame.len() < MIN_HEADER_LEN {
        return Err(ProtocolError::ShortFrame(frame.len()));
    }
    let (key, version, _) = peek_header(&frame).ok_or(ProtocolError::ShortFrame(frame.len()))?;
    let api_key = ApiKey::try_from(key).map_err(|_| ProtocolError::UnknownApiKey(key))?;
    if !supported(api_key, version) {
        return Err(ProtocolError::UnsupportedVersion { key, version });
    }
    let malformed = |reason: String| ProtocolError::Malformed { key, version, reason };
    let decoded = std::panic::catch_unwind(move || {
        let mut buf = frame;
        let header_version = api_key.request_header_version(version);
        let header = RequestHeader::decode(&mut buf, header_version)?;
        let body = RequestKind::decode(api_key, &mut buf, version)?;
        Ok::<_, anyhow::Error>((header, body))
    });
    match decoded {
        Ok(Ok((header, body))) => Ok(Request { header, api_key, body }),
        Ok(Err(e)) => Err(malformed(e.to_string())),
        Err(_) => Err(malformed("decoder panicked".into())),
    }
}

/// Encodes a response body with its header and 4-byte length prefix.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, ProtocolError> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| ProtocolError::Encode(e.to_string()))?;
    body.encode(&mut buf, version).map_err(|e| ProtocolError::Encode(e.to_string()))?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// The answer to an ApiVersions request of a version newer than we serve: a v0-format
/// response with UNSUPPORTED_VERSION and our version table, as Kafka sends (KIP-511), so
/// the client retries with a version we serve.
pub fn encode_unsupported_api_versions(
    correlation_id: i32,
    mut response: ApiVersionsResponse,
) -> Result<Bytes, ProtocolError> {
    response.error_code = 35; // UNSUPPORTED_VERSION
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &ResponseKind::ApiVersions(response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::MetadataRequest;

    fn frame_of(key: i16, version: i16, header_version: i16, body: &impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key)
            .with_request_api_version(version)
            .with_correlation_id(7);
        header.encode(&mut buf, header_version).unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_a_metadata_request() {
        let frame = frame_of(3, 12, 2, &MetadataRequest::default());
        let req = decode_request(frame, |_, _| true).unwrap();
        assert_eq!(req.api_key, ApiKey::Metadata);
        assert_eq!(req.header.correlation_id, 7);
        assert!(matches!(req.body, RequestKind::Metadata(_)));
    }

    #[test]
    fn refuses_short_unknown_and_unsupported() {
        assert!(matches!(decode_request(Bytes::from_static(&[0, 3]), |_, _| true), Err(ProtocolError::ShortFrame(2))));
        let junk = Bytes::from_static(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert!(matches!(decode_request(junk, |_, _| true), Err(ProtocolError::UnknownApiKey(_))));
        let frame = frame_of(3, 12, 2, &MetadataRequest::default());
        assert!(matches!(decode_request(frame, |_, _| false), Err(ProtocolError::UnsupportedVersion { .. })));
    }

    #[test]
    fn truncated_body_is_malformed() {
        let frame = frame_of(3, 12, 2, &MetadataRequest::default().with_topics(Some(vec![Default::default()])));
        let cut = frame.slice(..frame.len() - 3);
        assert!(matches!(decode_request(cut, |_, _| true), Err(ProtocolError::Malformed { .. })));
    }
}
