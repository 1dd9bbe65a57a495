//! Response frames with spliced record sections: the Fetch encoder that lets the
//! connection `sendfile(2)` segment bytes instead of copying them through user space.
//!
//! The response is encoded by `kafka-protocol` with a 16-byte placeholder token in each
//! records field; [`splice_records`] then cuts the frame at each placeholder, writes the
//! real length prefix, and leaves a [`FramePart::Splice`] where the bytes go. No I/O here:
//! the caller sends the parts.

use bytes::{BufMut, Bytes, BytesMut};

use crate::ProtocolError;

/// Length of a placeholder token.
pub const TOKEN_LEN: usize = 16;

/// A piece of a response frame: bytes we have, or `len` bytes the caller supplies.
#[derive(Debug)]
pub enum FramePart<T> {
    Bytes(Bytes),
    Splice(T),
}

/// One records field to splice: its placeholder token, the real length, and what the
/// caller sends there.
pub struct Placeholder<T> {
    pub token: [u8; TOKEN_LEN],
    pub len: usize,
    pub payload: T,
}

/// Replaces each placeholder in `frame` (a whole response frame, length prefix included,
/// whose records fields hold the tokens in order) by its real length prefix and a splice.
/// `flexible`: the records fields are compact bytes (uvarint length + 1), else i32 length.
pub fn splice_records<T>(
    frame: Bytes,
    flexible: bool,
    placeholders: Vec<Placeholder<T>>,
) -> Result<Vec<FramePart<T>>, ProtocolError> {
    if placeholders.is_empty() {
        return Ok(vec![FramePart::Bytes(frame)]);
    }
    let placeholder_prefix = length_prefix(flexible, TOKEN_LEN)?;
    // Find every token (in order) and check the prefix before it.
    let mut cuts = Vec::with_capacity(placeholders.len());
    let mut from = 4;
    for p in &placeholders {
        let at = frame[from..]
            .windows(TOKEN_LEN)
            .position(|w| w == p.token)
            .map(|i| from + i)
            .ok_or_else(|| ProtocolError::Encode("records placeholder not found in the response".into()))?;
        let start = at
            .checked_sub(placeholder_prefix.len())
            .filter(|s| frame[*s..at] == placeholder_prefix[..])
            .ok_or_else(|| ProtocolError::Encode("records placeholder without its length prefix".into()))?;
        cuts.push((start, at + TOKEN_LEN));
        from = at + TOKEN_LEN;
    }
    let mut body_len = frame.len() - 4;
    let mut prefixes = Vec::with_capacity(placeholders.len());
    for p in &placeholders {
        let prefix = length_prefix(flexible, p.len)?;
        body_len = body_len - placeholder_prefix.len() - TOKEN_LEN + prefix.len() + p.len;
        prefixes.push(prefix);
    }
    let body_len = i32::try_from(body_len).map_err(|_| ProtocolError::Encode("response larger than 2 GiB".into()))?;
    let mut head = BytesMut::from(&frame[..]);
    head[..4].copy_from_slice(&body_len.to_be_bytes());
    let frame = head.freeze();
    let mut parts = Vec::with_capacity(placeholders.len() * 2 + 1);
    let mut pos = 0;
    for ((start, end), (p, prefix)) in cuts.into_iter().zip(placeholders.into_iter().zip(prefixes)) {
        let mut piece = BytesMut::with_capacity(start - pos + prefix.len());
        piece.put_slice(&frame[pos..start]);
        piece.put_slice(&prefix);
        parts.push(FramePart::Bytes(piece.freeze()));
        parts.push(FramePart::Splice(p.payload));
        pos = end;
    }
    parts.push(FramePart::Bytes(frame.slice(pos..)));
    Ok(parts)
}

fn length_prefix(flexible: bool, len: usize) -> Result<Vec<u8>, ProtocolError> {
    let too_big = || ProtocolError::Encode(format!("records of {len} bytes are too large"));
    if flexible {
        let mut v = u32::try_from(len).ok().and_then(|l| l.checked_add(1)).ok_or_else(too_big)?;
        let mut out = Vec::with_capacity(5);
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        Ok(out)
    } else {
        Ok(i32::try_from(len).map_err(|_| too_big())?.to_be_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode_response;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseKind, TopicName};
    use kafka_protocol::protocol::{Decodable, StrBytes};

    /// Splicing placeholders must give exactly the frame that encoding the real records
    /// would have given, for flexible and non-flexible versions.
    #[test]
    fn spliced_frame_equals_directly_encoded_frame() {
        let records: Vec<Vec<u8>> = vec![vec![7u8; 300], vec![], vec![1, 2, 3]];
        for version in [4i16, 11, 12, 16] {
            let make = |recs: Vec<Bytes>| {
                let parts = recs
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| PartitionData::default().with_partition_index(i as i32).with_records(Some(r)))
                    .collect();
                let topic = FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(parts);
                ResponseKind::Fetch(FetchResponse::default().with_responses(vec![topic]))
            };
            let direct = encode_response(ApiKey::Fetch, version, 9, &make(records.iter().map(|r| Bytes::from(r.clone())).collect())).unwrap();
            let tokens: Vec<[u8; TOKEN_LEN]> = (0..records.len()).map(|i| [0xA0 + i as u8; TOKEN_LEN]).collect();
            let with_tokens = encode_response(ApiKey::Fetch, version, 9, &make(tokens.iter().map(|t| Bytes::copy_from_slice(t)).collect())).unwrap();
            let placeholders = tokens
                .iter()
                .zip(&records)
                .map(|(t, r)| Placeholder { token: *t, len: r.len(), payload: r.clone() })
                .collect();
            let parts = splice_records(with_tokens, version >= 12, placeholders).unwrap();
            let mut joined = Vec::new();
            for p in parts {
                match p {
                    FramePart::Bytes(b) => joined.extend_from_slice(&b),
                    FramePart::Splice(r) => joined.extend_from_slice(&r),
                }
            }
            assert_eq!(joined, direct.to_vec(), "version {version}");
            // And it decodes.
            let mut body = Bytes::from(joined).slice(4..);
            let _header = kafka_protocol::messages::ResponseHeader::decode(&mut body, ApiKey::Fetch.response_header_version(version)).unwrap();
            let resp = FetchResponse::decode(&mut body, version).unwrap();
            assert_eq!(resp.responses[0].partitions[0].records.as_ref().unwrap().len(), 300);
        }
    }

    #[test]
    fn a_missing_placeholder_is_an_error() {
        let frame = Bytes::from_static(&[0, 0, 0, 4, 1, 2, 3, 4]);
        let p = vec![Placeholder { token: [9; TOKEN_LEN], len: 3, payload: () }];
        assert!(splice_records(frame, false, p).is_err());
    }
}
