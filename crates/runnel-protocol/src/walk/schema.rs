//! The request schema the walker reads: Runnel's own compact description of every request
//! body the broker serves, written from Kafka's message definitions
//! (`clients/src/main/resources/common/message/*Request.json`, as `kafka-protocol` 0.18
//! generates them from Kafka 4.1). Request types only: responses are encoded by us.
//!
//! Format, one message per block:
//! ```text
//! ApiKeyName min-max [flexible N+]       the versions described, the first flexible one
//!   FieldName type [versions] [tag N]    two spaces of indent per nesting level
//! ```
//! - `type` is one of `bool int8 int16 uint16 int32 int64 uint32 float64 uuid string bytes
//!   records`, `[]T` (an array of that type), `[]` (an array of structs whose fields follow,
//!   indented) or `{}` (one struct, fields indented). A trailing `?` makes it nullable: the
//!   decoder accepts null there in every version (`kafka-protocol` decodes any field with
//!   nullable versions into an `Option`).
//! - `versions` is `N+`, `N-M` or `N`; absent means every version of the message.
//! - `tag N`: a tagged field (flexible versions only), decoded as a typed value in `versions`
//!   and refused in the other flexible versions, as `kafka-protocol` does. The decoder reads
//!   its value without looking at the size the frame gives it; so does the walker.
//!
//! `walk::tests` proves this table against `kafka-protocol` for every served version: frames
//! generated from it decode and re-encode to the same bytes, and the walker accepts exactly
//! what the decoder accepts.

pub(super) const REQUESTS: &str = "
Produce 3-11 flexible 9+
  TransactionalId string?
  Acks int16
  TimeoutMs int32
  TopicData []
    Name string
    PartitionData []
      Index int32
      Records records?
Fetch 4-16 flexible 12+
  ClusterId string? 12+ tag 0
  ReplicaId int32 4-14
  ReplicaState {} 15+ tag 1
    ReplicaId int32 15+
    ReplicaEpoch int64 15+
  MaxWaitMs int32
  MinBytes int32
  MaxBytes int32
  IsolationLevel int8
  SessionId int32 7+
  SessionEpoch int32 7+
  Topics []
    Topic string 4-12
    TopicId uuid 13+
    Partitions []
      Partition int32
      CurrentLeaderEpoch int32 9+
      FetchOffset int64
      LastFetchedEpoch int32 12+
      LogStartOffset int64 5+
      PartitionMaxBytes int32
      ReplicaDirectoryId uuid 17+ tag 0
      HighWatermark int64 18+ tag 1
  ForgottenTopicsData [] 7+
    Topic string 7-12
    TopicId uuid 13+
    Partitions []int32 7+
  RackId string 11+
ListOffsets 1-10 flexible 6+
  ReplicaId int32
  IsolationLevel int8 2+
  Topics []
    Name string
    Partitions []
      PartitionIndex int32
      CurrentLeaderEpoch int32 4+
      Timestamp int64
  TimeoutMs int32 10+
Metadata 0-13 flexible 9+
  Topics []?
    TopicId uuid 10+
    Name string?
  AllowAutoTopicCreation bool 4+
  IncludeClusterAuthorizedOperations bool 8-10
  IncludeTopicAuthorizedOperations bool 8+
ApiVersions 0-4 flexible 3+
  ClientSoftwareName string 3+
  ClientSoftwareVersion string 3+
CreateTopics 2-7 flexible 5+
  Topics []
    Name string
    NumPartitions int32
    ReplicationFactor int16
    Assignments []
      PartitionIndex int32
      BrokerIds []int32
    Configs []
      Name string
      Value string?
  TimeoutMs int32
  ValidateOnly bool
DeleteTopics 1-6 flexible 4+
  Topics [] 6+
    Name string? 6+
    TopicId uuid 6+
  TopicNames []string 1-5
  TimeoutMs int32
DeleteRecords 0-2 flexible 2+
  Topics []
    Name string
    Partitions []
      PartitionIndex int32
      Offset int64
  TimeoutMs int32
DescribeConfigs 1-4 flexible 4+
  Resources []
    ResourceType int8
    ResourceName string
    ConfigurationKeys []string?
  IncludeSynonyms bool
  IncludeDocumentation bool 3+
AlterConfigs 0-2 flexible 2+
  Resources []
    ResourceType int8
    ResourceName string
    Configs []
      Name string
      Value string?
  ValidateOnly bool
CreatePartitions 0-3 flexible 2+
  Topics []
    Name string
    Count int32
    Assignments []?
      BrokerIds []int32
  TimeoutMs int32
  ValidateOnly bool
IncrementalAlterConfigs 0-1 flexible 1+
  Resources []
    ResourceType int8
    ResourceName string
    Configs []
      Name string
      ConfigOperation int8
      Value string?
  ValidateOnly bool
DescribeCluster 0-2 flexible 0+
  IncludeClusterAuthorizedOperations bool
  EndpointType int8 1+
  IncludeFencedBrokers bool 2+
FindCoordinator 0-6 flexible 3+
  Key string 0-3
  KeyType int8 1+
  CoordinatorKeys []string 4+
JoinGroup 0-9 flexible 6+
  GroupId string
  SessionTimeoutMs int32
  RebalanceTimeoutMs int32 1+
  MemberId string
  GroupInstanceId string? 5+
  ProtocolType string
  Protocols []
    Name string
    Metadata bytes
  Reason string? 8+
SyncGroup 0-5 flexible 4+
  GroupId string
  GenerationId int32
  MemberId string
  GroupInstanceId string? 3+
  ProtocolType string? 5+
  ProtocolName string? 5+
  Assignments []
    MemberId string
    Assignment bytes
Heartbeat 0-4 flexible 4+
  GroupId string
  GenerationId int32
  MemberId string
  GroupInstanceId string? 3+
LeaveGroup 0-5 flexible 4+
  GroupId string
  MemberId string 0-2
  Members [] 3+
    MemberId string 3+
    GroupInstanceId string? 3+
    Reason string? 5+
OffsetCommit 2-9 flexible 8+
  GroupId string
  GenerationIdOrMemberEpoch int32
  MemberId string
  GroupInstanceId string? 7+
  RetentionTimeMs int64 2-4
  Topics []
    Name string
    Partitions []
      PartitionIndex int32
      CommittedOffset int64
      CommittedLeaderEpoch int32 6+
      CommittedMetadata string?
OffsetFetch 1-9 flexible 6+
  GroupId string 1-7
  Topics []? 1-7
    Name string 1-7
    PartitionIndexes []int32 1-7
  Groups [] 8+
    GroupId string 8+
    MemberId string? 9+
    MemberEpoch int32 9+
    Topics []? 8+
      Name string 8+
      PartitionIndexes []int32 8+
  RequireStable bool 7+
DescribeGroups 0-6 flexible 5+
  Groups []string
  IncludeAuthorizedOperations bool 3+
ListGroups 0-5 flexible 3+
  StatesFilter []string 4+
  TypesFilter []string 5+
DeleteGroups 0-2 flexible 2+
  GroupsNames []string
OffsetDelete 0
  GroupId string
  Topics []
    Name string
    Partitions []
      PartitionIndex int32
InitProducerId 0-5 flexible 2+
  TransactionalId string?
  TransactionTimeoutMs int32
  ProducerId int64 3+
  ProducerEpoch int16 3+
DescribeProducers 0 flexible 0+
  Topics []
    Name string
    PartitionIndexes []int32
OffsetForLeaderEpoch 2-4 flexible 4+
  ReplicaId int32 3+
  Topics []
    Topic string
    Partitions []
      Partition int32
      CurrentLeaderEpoch int32
      LeaderEpoch int32
AddPartitionsToTxn 0-5 flexible 3+
  Transactions [] 4+
    TransactionalId string 4+
    ProducerId int64 4+
    ProducerEpoch int16 4+
    VerifyOnly bool 4+
    Topics [] 4+
      Name string
      Partitions []int32
  V3AndBelowTransactionalId string 0-3
  V3AndBelowProducerId int64 0-3
  V3AndBelowProducerEpoch int16 0-3
  V3AndBelowTopics [] 0-3
    Name string
    Partitions []int32
AddOffsetsToTxn 0-4 flexible 3+
  TransactionalId string
  ProducerId int64
  ProducerEpoch int16
  GroupId string
EndTxn 0-4 flexible 3+
  TransactionalId string
  ProducerId int64
  ProducerEpoch int16
  Committed bool
TxnOffsetCommit 0-4 flexible 3+
  TransactionalId string
  GroupId string
  ProducerId int64
  ProducerEpoch int16
  GenerationId int32 3+
  MemberId string 3+
  GroupInstanceId string? 3+
  Topics []
    Name string
    Partitions []
      PartitionIndex int32
      CommittedOffset int64
      CommittedLeaderEpoch int32 2+
      CommittedMetadata string?
WriteTxnMarkers 1-1 flexible 1+
  Markers []
    ProducerId int64
    ProducerEpoch int16
    TransactionResult bool
    Topics []
      Name string
      PartitionIndexes []int32
    CoordinatorEpoch int32
DescribeTransactions 0 flexible 0+
  TransactionalIds []string
ListTransactions 0-1 flexible 0+
  StateFilters []string
  ProducerIdFilters []int64
  DurationFilter int64 1+
SaslHandshake 0-1
  Mechanism string
SaslAuthenticate 0-2 flexible 2+
  AuthBytes bytes
DescribeUserScramCredentials 0 flexible 0+
  Users []?
    Name string
AlterUserScramCredentials 0 flexible 0+
  Deletions []
    Name string
    Mechanism int8
  Upsertions []
    Name string
    Mechanism int8
    Iterations int32
    Salt bytes
    SaltedPassword bytes
DescribeAcls 1-3 flexible 2+
  ResourceTypeFilter int8
  ResourceNameFilter string?
  PatternTypeFilter int8
  PrincipalFilter string?
  HostFilter string?
  Operation int8
  PermissionType int8
CreateAcls 1-3 flexible 2+
  Creations []
    ResourceType int8
    ResourceName string
    ResourcePatternType int8
    Principal string
    Host string
    Operation int8
    PermissionType int8
DeleteAcls 1-3 flexible 2+
  Filters []
    ResourceTypeFilter int8
    ResourceNameFilter string?
    PatternTypeFilter int8
    PrincipalFilter string?
    HostFilter string?
    Operation int8
    PermissionType int8
DescribeClientQuotas 0-1 flexible 1+
  Components []
    EntityType string
    MatchType int8
    Match string?
  Strict bool
AlterClientQuotas 0-1 flexible 1+
  Entries []
    Entity []
      EntityType string
      EntityName string?
    Ops []
      Key string
      Value float64
      Remove bool
  ValidateOnly bool
";
