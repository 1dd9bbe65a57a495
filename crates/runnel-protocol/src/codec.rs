//! Request decoding and response encoding for one frame (the 4-byte length prefix is
//! handled by the connection, which reads it; responses are returned with their prefix).
//!
//! Decoding goes through `kafka-protocol`, whose decoders pre-allocate arrays from lengths
//! read off the wire. So every frame is first walked by its schema ([`crate::walk`]): a
//! frame whose lengths claim more than it holds is refused as malformed before
//! `kafka-protocol` sees it, and what the decoder then reserves is bounded by the frame's
//! size. Decoding is also run under `catch_unwind` so a panic inside the crate is a
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

/// Reads the client id that follows api key, version and correlation id in every request
/// header (v1+: a nullable string with an i16 length), for logging a refused request.
/// None when it is absent, null, cut short or not UTF-8.
pub fn peek_client_id(frame: &[u8]) -> Option<&str> {
    let len = i16::from_be_bytes(frame.get(8..10)?.try_into().ok()?);
    let bytes = frame.get(10..10 + usize::try_from(len).ok()?)?;
    std::str::from_utf8(bytes).ok()
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
    crate::walk::request(&frame).map_err(|refused| ProtocolError::Malformed { key, version, reason: refused.to_string() })?;
    decode_unwalked(frame, api_key, version)
}

/// `kafka-protocol`'s decoding of a frame of (`api_key`, `version`), without the walk:
/// only safe on frames [`crate::walk::request`] accepted (or under
/// [`crate::alloc::NoReserveHuge`]). Public for the tests and the fuzz target, which
/// compare it with the walker.
#[doc(hidden)]
pub fn decode_unwalked(frame: Bytes, api_key: ApiKey, version: i16) -> Result<Request, ProtocolError> {
    let malformed = |reason: String| ProtocolError::Malformed { key: api_key as i16, version, reason };
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
pub(crate) mod tests {
    //! Decoding must turn any frame into `Ok` or `Err` — never a panic, never an abort.
    //! Frames claiming 2^31-element arrays are refused by the walker before
    //! `kafka-protocol` reserves anything for them (see `walk::tests` for the allocation
    //! bound).
    use super::*;
    use crate::batch::{encode_batch, NewRecord};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

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
    fn peeks_the_client_id_of_any_frame() {
        let frame = [0, 3, 0, 1, 0, 0, 0, 7, 0, 3, b'c', b'l', b'i', 0xff];
        assert_eq!(peek_client_id(&frame), Some("cli"));
        assert_eq!(peek_client_id(&frame[..11]), None);
        assert_eq!(peek_client_id(&[0, 3, 0, 1, 0, 0, 0, 7, 0xff, 0xff]), None);
        assert_eq!(peek_client_id(&[0, 3]), None);
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

    /// What the broker serves: a copy of `runnel_broker::handlers::SUPPORTED_APIS` (that
    /// crate depends on this one). Keep in step (`walk::tests` checks the walker's schema
    /// covers exactly these); `every_served_version_has_a_valid_frame`
    /// fails if a version here cannot be encoded by `kafka-protocol`.
    pub(crate) const SERVED: &[(ApiKey, i16, i16)] = &[
        (ApiKey::Produce, 3, 11),
        (ApiKey::Fetch, 4, 16),
        (ApiKey::ListOffsets, 1, 10),
        (ApiKey::Metadata, 0, 13),
        (ApiKey::ApiVersions, 0, 4),
        (ApiKey::CreateTopics, 2, 7),
        (ApiKey::DeleteTopics, 1, 6),
        (ApiKey::DeleteRecords, 0, 2),
        (ApiKey::DescribeConfigs, 1, 4),
        (ApiKey::AlterConfigs, 0, 2),
        (ApiKey::CreatePartitions, 0, 3),
        (ApiKey::IncrementalAlterConfigs, 0, 1),
        (ApiKey::DescribeCluster, 0, 2),
        (ApiKey::FindCoordinator, 0, 6),
        (ApiKey::JoinGroup, 0, 9),
        (ApiKey::SyncGroup, 0, 5),
        (ApiKey::Heartbeat, 0, 4),
        (ApiKey::LeaveGroup, 0, 5),
        (ApiKey::OffsetCommit, 2, 9),
        (ApiKey::OffsetFetch, 1, 9),
        (ApiKey::DescribeGroups, 0, 6),
        (ApiKey::ListGroups, 0, 5),
        (ApiKey::DeleteGroups, 0, 2),
        (ApiKey::OffsetDelete, 0, 0),
        (ApiKey::InitProducerId, 0, 5),
        (ApiKey::DescribeProducers, 0, 0),
        (ApiKey::OffsetForLeaderEpoch, 2, 4),
        (ApiKey::AddPartitionsToTxn, 0, 5),
        (ApiKey::AddOffsetsToTxn, 0, 4),
        (ApiKey::EndTxn, 0, 4),
        (ApiKey::TxnOffsetCommit, 0, 4),
        (ApiKey::WriteTxnMarkers, 1, 1),
        (ApiKey::DescribeTransactions, 0, 0),
        (ApiKey::ListTransactions, 0, 1),
        (ApiKey::SaslHandshake, 0, 1),
        (ApiKey::SaslAuthenticate, 0, 2),
        (ApiKey::DescribeUserScramCredentials, 0, 0),
        (ApiKey::AlterUserScramCredentials, 0, 0),
        (ApiKey::DescribeAcls, 1, 3),
        (ApiKey::CreateAcls, 1, 3),
        (ApiKey::DeleteAcls, 1, 3),
        (ApiKey::DescribeClientQuotas, 0, 1),
        (ApiKey::AlterClientQuotas, 0, 1),
    ];

    pub(crate) fn served(key: ApiKey, version: i16) -> bool {
        SERVED.iter().any(|(k, min, max)| *k == key && (*min..=*max).contains(&version))
    }

    pub(crate) fn served_pairs() -> Vec<(ApiKey, i16)> {
        SERVED.iter().flat_map(|(k, min, max)| (*min..=*max).map(move |v| (*k, v))).collect()
    }

    fn sb(s: &str) -> StrBytes {
        StrBytes::from_string(s.to_string())
    }

    fn topic(s: &str) -> TopicName {
        TopicName(sb(s))
    }

    /// A request of `key` at `version` with every array non-empty where the version
    /// allows, so mutations hit nested lengths too.
    pub(crate) fn sample(key: ApiKey, version: i16) -> RequestKind {
        use kafka_protocol::messages::*;
        match key {
            ApiKey::Produce => {
                let records = encode_batch(0, 0, &[NewRecord { timestamp: 1, key: Some(b"k"), value: Some(b"value"), headers: &[] }]);
                let part = produce_request::PartitionProduceData::default().with_index(0).with_records(Some(records.into()));
                let t = produce_request::TopicProduceData::default().with_name(topic("t")).with_partition_data(vec![part]);
                RequestKind::Produce(ProduceRequest::default().with_acks(1).with_timeout_ms(1000).with_topic_data(vec![t]))
            }
            ApiKey::Fetch => {
                let p = fetch_request::FetchPartition::default().with_partition(0).with_fetch_offset(5).with_partition_max_bytes(1 << 20);
                let mut t = fetch_request::FetchTopic::default().with_partitions(vec![p]);
                let mut f = fetch_request::ForgottenTopic::default().with_partitions(vec![1, 2]);
                if version >= 13 {
                    t.topic_id = uuid_of(1);
                    f.topic_id = uuid_of(2);
                } else {
                    t.topic = topic("t");
                    f.topic = topic("u");
                }
                let mut r = FetchRequest::default().with_max_wait_ms(100).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![t]);
                if version >= 7 {
                    r.forgotten_topics_data = vec![f];
                }
                RequestKind::Fetch(r)
            }
            ApiKey::ListOffsets => {
                let p = list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1);
                let t = list_offsets_request::ListOffsetsTopic::default().with_name(topic("t")).with_partitions(vec![p]);
                RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![t]))
            }
            ApiKey::Metadata => {
                let t = |n: &str| metadata_request::MetadataRequestTopic::default().with_name(Some(topic(n)));
                RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![t("a"), t("bb")])))
            }
            ApiKey::ApiVersions => {
                let mut r = ApiVersionsRequest::default();
                if version >= 3 {
                    r = r.with_client_software_name(sb("runnel-test")).with_client_software_version(sb("1.0"));
                }
                RequestKind::ApiVersions(r)
            }
            ApiKey::CreateTopics => {
                let a = create_topics_request::CreatableReplicaAssignment::default().with_partition_index(0).with_broker_ids(vec![BrokerId(1)]);
                let c = create_topics_request::CreatableTopicConfig::default().with_name(sb("retention.ms")).with_value(Some(sb("1000")));
                let t = create_topics_request::CreatableTopic::default()
                    .with_name(topic("t"))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_assignments(vec![a])
                    .with_configs(vec![c]);
                RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![t]).with_timeout_ms(1000))
            }
            ApiKey::DeleteTopics => {
                let r = if version >= 6 {
                    DeleteTopicsRequest::default().with_topics(vec![delete_topics_request::DeleteTopicState::default().with_name(Some(topic("t")))])
                } else {
                    DeleteTopicsRequest::default().with_topic_names(vec![topic("t"), topic("u")])
                };
                RequestKind::DeleteTopics(r.with_timeout_ms(1000))
            }
            ApiKey::DeleteRecords => {
                let p = delete_records_request::DeleteRecordsPartition::default().with_partition_index(0).with_offset(5);
                let t = delete_records_request::DeleteRecordsTopic::default().with_name(topic("t")).with_partitions(vec![p]);
                RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![t]).with_timeout_ms(1000))
            }
            ApiKey::DescribeConfigs => {
                let res = describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(sb("t"))
                    .with_configuration_keys(Some(vec![sb("retention.ms"), sb("cleanup.policy")]));
                RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![res]))
            }
            ApiKey::AlterConfigs => {
                let c = alter_configs_request::AlterableConfig::default().with_name(sb("retention.ms")).with_value(Some(sb("1")));
                let res = alter_configs_request::AlterConfigsResource::default().with_resource_type(2).with_resource_name(sb("t")).with_configs(vec![c]);
                RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![res]))
            }
            ApiKey::CreatePartitions => {
                let a = create_partitions_request::CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1)]);
                let t = create_partitions_request::CreatePartitionsTopic::default().with_name(topic("t")).with_count(2).with_assignments(Some(vec![a]));
                RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_topics(vec![t]).with_timeout_ms(1000))
            }
            ApiKey::IncrementalAlterConfigs => {
                let c = incremental_alter_configs_request::AlterableConfig::default().with_name(sb("retention.ms")).with_value(Some(sb("1")));
                let res = incremental_alter_configs_request::AlterConfigsResource::default().with_resource_type(2).with_resource_name(sb("t")).with_configs(vec![c]);
                RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default().with_resources(vec![res]))
            }
            ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
            // Group APIs: default bodies (their arrays are empty, their lengths still there
            // for the mutations to blow up).
            ApiKey::FindCoordinator => RequestKind::FindCoordinator(Default::default()),
            ApiKey::JoinGroup => RequestKind::JoinGroup(Default::default()),
            ApiKey::SyncGroup => RequestKind::SyncGroup(Default::default()),
            ApiKey::Heartbeat => RequestKind::Heartbeat(Default::default()),
            ApiKey::LeaveGroup => RequestKind::LeaveGroup(Default::default()),
            ApiKey::OffsetCommit => RequestKind::OffsetCommit(Default::default()),
            ApiKey::OffsetFetch => RequestKind::OffsetFetch(Default::default()),
            ApiKey::DescribeGroups => RequestKind::DescribeGroups(Default::default()),
            ApiKey::ListGroups => RequestKind::ListGroups(Default::default()),
            ApiKey::DeleteGroups => RequestKind::DeleteGroups(Default::default()),
            ApiKey::OffsetDelete => RequestKind::OffsetDelete(Default::default()),
            ApiKey::DescribeProducers => RequestKind::DescribeProducers(Default::default()),
            ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(Default::default()),
            ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default().with_transaction_timeout_ms(60_000)),
            // Transaction APIs: default bodies, with one topic and partition where they list some.
            ApiKey::AddPartitionsToTxn => {
                let t = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default().with_name(topic("t")).with_partitions(vec![0, 1]);
                let r = if version >= 4 {
                    let txn = add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default().with_topics(vec![t]);
                    AddPartitionsToTxnRequest::default().with_transactions(vec![txn])
                } else {
                    AddPartitionsToTxnRequest::default().with_v3_and_below_topics(vec![t])
                };
                RequestKind::AddPartitionsToTxn(r)
            }
            ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(Default::default()),
            ApiKey::EndTxn => RequestKind::EndTxn(Default::default()),
            ApiKey::TxnOffsetCommit => {
                let p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default().with_committed_offset(5);
                let t = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default().with_name(topic("t")).with_partitions(vec![p]);
                RequestKind::TxnOffsetCommit(TxnOffsetCommitRequest::default().with_topics(vec![t]))
            }
            ApiKey::WriteTxnMarkers => {
                let t = write_txn_markers_request::WritableTxnMarkerTopic::default().with_name(topic("t")).with_partition_indexes(vec![0, 1]);
                let m = write_txn_markers_request::WritableTxnMarker::default().with_producer_id(ProducerId(7)).with_topics(vec![t]);
                RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default().with_markers(vec![m]))
            }
            ApiKey::DescribeTransactions => RequestKind::DescribeTransactions(Default::default()),
            ApiKey::ListTransactions => RequestKind::ListTransactions(Default::default()),
            ApiKey::DescribeAcls => RequestKind::DescribeAcls(DescribeAclsRequest::default().with_resource_name_filter(Some(sb("t")))),
            ApiKey::CreateAcls => {
                let c = create_acls_request::AclCreation::default().with_resource_name(sb("t")).with_principal(sb("User:a"));
                RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(vec![c]))
            }
            ApiKey::DeleteAcls => {
                let f = delete_acls_request::DeleteAclsFilter::default().with_principal_filter(Some(sb("User:a")));
                RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(vec![f]))
            }
            ApiKey::DescribeClientQuotas => {
                let c = describe_client_quotas_request::ComponentData::default().with_entity_type(sb("user"));
                RequestKind::DescribeClientQuotas(DescribeClientQuotasRequest::default().with_components(vec![c]))
            }
            ApiKey::AlterClientQuotas => {
                let e = alter_client_quotas_request::EntityData::default().with_entity_type(sb("user"));
                let o = alter_client_quotas_request::OpData::default().with_key(sb("producer_byte_rate")).with_value(1.0);
                let entry = alter_client_quotas_request::EntryData::default().with_entity(vec![e]).with_ops(vec![o]);
                RequestKind::AlterClientQuotas(AlterClientQuotasRequest::default().with_entries(vec![entry]))
            }
            ApiKey::SaslHandshake => RequestKind::SaslHandshake(SaslHandshakeRequest::default().with_mechanism(sb("PLAIN"))),
            ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0u\0p"))),
            ApiKey::DescribeUserScramCredentials => {
                let u = describe_user_scram_credentials_request::UserName::default().with_name(sb("alice"));
                RequestKind::DescribeUserScramCredentials(DescribeUserScramCredentialsRequest::default().with_users(Some(vec![u])))
            }
            ApiKey::AlterUserScramCredentials => {
                let d = alter_user_scram_credentials_request::ScramCredentialDeletion::default().with_name(sb("bob")).with_mechanism(1);
                let u = alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                    .with_name(sb("alice"))
                    .with_mechanism(2)
                    .with_iterations(4096)
                    .with_salt(Bytes::from_static(b"salt"))
                    .with_salted_password(Bytes::from_static(b"pw"));
                RequestKind::AlterUserScramCredentials(AlterUserScramCredentialsRequest::default().with_deletions(vec![d]).with_upsertions(vec![u]))
            }
            other => panic!("no sample for {other:?}"),
        }
    }

    fn uuid_of(n: u8) -> uuid::Uuid {
        uuid::Uuid::from_bytes([n; 16])
    }

    /// A valid frame (no length prefix) for a served (key, version), and where its body
    /// starts.
    pub(crate) fn valid_frame(key: ApiKey, version: i16) -> (Bytes, usize) {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(0x1234)
            .with_client_id(Some(sb("fuzz")));
        header.encode(&mut buf, key.request_header_version(version)).unwrap();
        let body_at = buf.len();
        sample(key, version)
            .encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("sample {key:?} v{version} does not encode: {e}"));
        (buf.freeze(), body_at)
    }

    /// Decodes under the broker's rules; a panic inside `kafka-protocol` (caught by
    /// `decode_request`) is reported as a failure too, so we learn about it.
    fn must_not_panic(frame: Bytes) -> Result<Request, ProtocolError> {
        let r = decode_request(frame.clone(), served);
        if let Err(ProtocolError::Malformed { reason, .. }) = &r {
            assert!(reason != "decoder panicked", "kafka-protocol panicked on {:02x?}", &frame[..]);
        }
        r
    }

    #[test]
    fn every_served_version_has_a_valid_frame() {
        for (key, version) in served_pairs() {
            let (frame, _) = valid_frame(key, version);
            let req = decode_request(frame.clone(), served).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
            assert_eq!((req.api_key, req.header.correlation_id), (key, 0x1234));
            // And it round-trips.
            let mut again = BytesMut::new();
            req.body.encode(&mut again, version).unwrap();
            assert_eq!(&again[..], &frame[frame.len() - again.len()..], "{key:?} v{version}");
        }
    }

    /// A varint claiming `u32::MAX`: a compact array/string/bytes of 2^32 - 2 elements.
    pub(crate) const HUGE_UVARINT: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];
    pub(crate) const HUGE_I32: [u8; 4] = 0x7fff_ffffu32.to_be_bytes();

    pub(crate) fn header(key: ApiKey, version: i16) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&(key as i16).to_be_bytes());
        h.extend_from_slice(&version.to_be_bytes());
        h.extend_from_slice(&99i32.to_be_bytes());
        h.extend_from_slice(&[0xff, 0xff]); // null client id
        if key.request_header_version(version) >= 2 {
            h.push(0); // no tagged fields
        }
        h
    }

    fn assert_malformed(frame: Vec<u8>) {
        match must_not_panic(Bytes::from(frame.clone())) {
            Err(ProtocolError::Malformed { .. }) => {}
            other => panic!("expected Malformed for {frame:02x?}, got {other:?}"),
        }
    }

    #[test]
    fn metadata_v1_claiming_two_billion_topics() {
        // The 14-byte request from DESIGN.md.
        let mut f = header(ApiKey::Metadata, 1);
        f.extend_from_slice(&HUGE_I32);
        assert_eq!(f.len(), 14);
        assert_malformed(f);
    }

    #[test]
    fn metadata_v12_claiming_four_billion_topics() {
        let mut f = header(ApiKey::Metadata, 12);
        f.extend_from_slice(&HUGE_UVARINT);
        assert_malformed(f);
    }

    #[test]
    fn produce_with_a_huge_records_length() {
        // v9 (flexible): null transactional id, acks, timeout, 1 topic "t", 1 partition 0,
        // records compact bytes claiming 2^32 - 2 bytes.
        let mut f = header(ApiKey::Produce, 9);
        f.extend_from_slice(&[0, 0, 1, 0, 0, 0x03, 0xe8, 2, 2, b't', 2, 0, 0, 0, 0]);
        f.extend_from_slice(&HUGE_UVARINT);
        assert_malformed(f);
        // v3: the same with int32 lengths.
        let mut f = header(ApiKey::Produce, 3);
        f.extend_from_slice(&[0xff, 0xff, 0, 1, 0, 0, 0x03, 0xe8, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0]);
        f.extend_from_slice(&HUGE_I32);
        assert_malformed(f);
        // v9 claiming 2^32 - 2 topics and, separately, partitions.
        let mut f = header(ApiKey::Produce, 9);
        f.extend_from_slice(&[0, 0, 1, 0, 0, 0x03, 0xe8]);
        f.extend_from_slice(&HUGE_UVARINT);
        assert_malformed(f);
        let mut f = header(ApiKey::Produce, 9);
        f.extend_from_slice(&[0, 0, 1, 0, 0, 0x03, 0xe8, 2, 2, b't']);
        f.extend_from_slice(&HUGE_UVARINT);
        assert_malformed(f);
    }

    #[test]
    fn create_topics_with_a_huge_configs_array() {
        // v5 (flexible): 1 topic "t", partitions -1, replication -1, no assignments,
        // configs compact array claiming 2^32 - 2 entries.
        let mut f = header(ApiKey::CreateTopics, 5);
        f.extend_from_slice(&[2, 2, b't', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1]);
        f.extend_from_slice(&HUGE_UVARINT);
        assert_malformed(f);
        // v2: the same with int32 lengths.
        let mut f = header(ApiKey::CreateTopics, 2);
        f.extend_from_slice(&[0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(&HUGE_I32);
        assert_malformed(f);
    }

    #[test]
    fn huge_lengths_right_after_the_header_of_every_served_version() {
        for (key, version) in served_pairs() {
            let flexible = key.request_header_version(version) >= 2;
            let mut f = header(key, version);
            if flexible {
                f.extend_from_slice(&HUGE_UVARINT);
            } else {
                f.extend_from_slice(&HUGE_I32);
            }
            // Ok is possible (e.g. a leading scalar field), but never a panic or abort.
            let _ = must_not_panic(Bytes::from(f));
        }
    }

    /// Every offset of every served valid frame, overwritten with a 2^31-1 int32 and
    /// (separately) with a u32::MAX varint spliced in: whatever length field lands there
    /// claims a huge array, string or byte run.
    #[test]
    fn huge_lengths_at_every_offset_of_every_served_version() {
        for (key, version) in served_pairs() {
            let (frame, body_at) = valid_frame(key, version);
            for at in body_at..frame.len() {
                let mut f = frame.to_vec();
                let end = (at + 4).min(f.len());
                f[at..end].copy_from_slice(&HUGE_I32[..end - at]);
                let _ = must_not_panic(Bytes::from(f));

                let mut f = frame.to_vec();
                f.splice(at..at, HUGE_UVARINT);
                let _ = must_not_panic(Bytes::from(f));

                let mut f = frame.to_vec();
                f[at..end].fill(0xff); // -1 lengths, or 2^32 - 1 varint prefixes
                let _ = must_not_panic(Bytes::from(f));
            }
        }
    }

    #[test]
    fn every_truncation_of_every_served_version_is_refused() {
        for (key, version) in served_pairs() {
            let (frame, _) = valid_frame(key, version);
            for cut in 0..frame.len() {
                let r = must_not_panic(frame.slice(..cut));
                // A cut that leaves trailing optional tagged fields out may still decode
                // for some versions; anything else must be an error.
                if let Ok(req) = r {
                    panic!("{key:?} v{version} cut at {cut}/{} decoded: {:?}", frame.len(), req.body);
                }
            }
        }
    }

    /// One mutation of a valid frame.
    #[derive(Debug, Clone)]
    pub(crate) enum Mutation {
        Flip { at: prop::sample::Index, xor: u8 },
        Overwrite { at: prop::sample::Index, bytes: Vec<u8> },
        Insert { at: prop::sample::Index, bytes: Vec<u8> },
        Remove { at: prop::sample::Index, n: usize },
        Truncate { at: prop::sample::Index },
    }

    fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(HUGE_I32.to_vec()),
            Just(HUGE_UVARINT.to_vec()),
            Just(vec![0xff; 4]),
            Just(vec![0x80; 5]),
            Just(vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), // over-long varint
            Just(vec![0, 0]),
            Just((-2i32).to_be_bytes().to_vec()),
            Just(0x8000_0000u32.to_be_bytes().to_vec()),
            prop::collection::vec(any::<u8>(), 1..8),
        ]
    }

    pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            3 => (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
            3 => (any::<prop::sample::Index>(), interesting_bytes()).prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
            2 => (any::<prop::sample::Index>(), interesting_bytes()).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
            1 => (any::<prop::sample::Index>(), 1usize..6).prop_map(|(at, n)| Mutation::Remove { at, n }),
            1 => any::<prop::sample::Index>().prop_map(|at| Mutation::Truncate { at }),
        ]
    }

    /// Applies `m` to the body part (`body_at..`) of `f`, or to the header if `header`.
    pub(crate) fn apply(f: &mut Vec<u8>, body_at: usize, m: &Mutation) {
        if f.len() <= body_at {
            return;
        }
        let span = f.len() - body_at;
        match m {
            Mutation::Flip { at, xor } => {
                let i = body_at + at.index(span);
                f[i] ^= xor;
            }
            Mutation::Overwrite { at, bytes } => {
                let i = body_at + at.index(span);
                let n = bytes.len().min(f.len() - i);
                f[i..i + n].copy_from_slice(&bytes[..n]);
            }
            Mutation::Insert { at, bytes } => {
                let i = body_at + at.index(span + 1);
                f.splice(i..i, bytes.iter().copied());
            }
            Mutation::Remove { at, n } => {
                let i = body_at + at.index(span);
                let end = (i + n).min(f.len());
                f.drain(i..end);
            }
            Mutation::Truncate { at } => f.truncate(body_at + at.index(span)),
        }
    }

    fn served_pair() -> impl Strategy<Value = (ApiKey, i16)> {
        prop::sample::select(served_pairs())
    }

    fn any_known_pair() -> impl Strategy<Value = (ApiKey, i16)> {
        let pairs: Vec<(ApiKey, i16)> = ApiKey::iter()
            .flat_map(|k| {
                let r = k.valid_versions();
                (r.min - 1..=r.max + 1).map(move |v| (k, v))
            })
            .collect();
        prop::sample::select(pairs)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// Valid frames of served versions, mutated one to four times in the body.
        #[test]
        fn mutated_valid_frames_never_panic(
            (key, version) in served_pair(),
            muts in prop::collection::vec(mutation(), 1..5),
        ) {
            let (frame, body_at) = valid_frame(key, version);
            let mut f = frame.to_vec();
            for m in &muts {
                apply(&mut f, body_at, m);
            }
            let _ = must_not_panic(Bytes::from(f));
        }

        /// Mutations that reach into the header too (api key, version, client id, tags).
        #[test]
        fn mutated_headers_never_panic(
            (key, version) in served_pair(),
            muts in prop::collection::vec(mutation(), 1..4),
        ) {
            let (frame, _) = valid_frame(key, version);
            let mut f = frame.to_vec();
            for m in &muts {
                apply(&mut f, 0, m);
            }
            let _ = must_not_panic(Bytes::from(f));
        }

        /// A valid header of any (key, version) the crate knows, then random bytes; decoded
        /// as if every version were served, so every body decoder in the crate is reached.
        #[test]
        fn random_bodies_for_every_known_api_never_panic(
            (key, version) in any_known_pair(),
            body in prop::collection::vec(any::<u8>(), 0..64),
            huge_first in any::<bool>(),
        ) {
            let hv = key.request_header_version(version);
            let mut f = header(key, version);
            if hv < 2 && !(1..=2).contains(&hv) { f.truncate(10); }
            if huge_first {
                f.extend_from_slice(if hv >= 2 { &HUGE_UVARINT[..] } else { &HUGE_I32[..] });
            }
            f.extend_from_slice(&body);
            let r = decode_request(Bytes::from(f.clone()), |_, _| true);
            if let Err(ProtocolError::Malformed { reason, .. }) = &r {
                prop_assert!(reason != "decoder panicked", "{key:?} v{version}: {f:02x?}");
            }
        }

        /// Pure junk.
        #[test]
        fn random_frames_never_panic(f in prop::collection::vec(any::<u8>(), 0..128)) {
            let _ = must_not_panic(Bytes::from(f.clone()));
            let _ = decode_request(Bytes::from(f), |_, _| true);
        }
    }
}
