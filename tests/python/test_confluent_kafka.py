"""Interop with confluent-kafka (librdkafka), against a real Runnel broker.

Client notes:
- confluent-kafka refuses to build a Consumer without `group.id` (ValueError), even for
  manual assignment. With a `group.id`, `enable.auto.commit=false` and explicit offsets in
  `assign()`, librdkafka never needs the group coordinator, so this works before Runnel has
  consumer groups.
"""

import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

CODECS = ["gzip", "snappy", "lz4", "zstd"]


@pytest.fixture(scope="module")
def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def producer(bootstrap, **conf):
    conf = {"bootstrap.servers": bootstrap, "linger.ms": 5, **conf}
    return Producer(conf)


def consumer(bootstrap, **conf):
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": "runnel-py-unused",  # required by the client; never used with assign()
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        **conf,
    }
    return Consumer(conf)


def produce_all(p, msgs, timeout=20):
    """Produces each (topic, kwargs) and returns the delivered messages in send order."""
    reports = [None] * len(msgs)

    def cb(i):
        return lambda err, msg: reports.__setitem__(i, (err, msg))

    for i, (topic, kw) in enumerate(msgs):
        p.produce(topic, on_delivery=cb(i), **kw)
        p.poll(0)
    assert p.flush(timeout) == 0, "messages still in the producer queue"
    errors = [(i, r[0]) for i, r in enumerate(reports) if r[0] is not None]
    assert not errors, errors
    return [r[1] for r in reports]


def consume(c, n, timeout=15):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        assert m.error() is None, m.error()
        out.append(m)
    return out


def read_partitions(bootstrap, topic, partitions, n, **conf):
    c = consumer(bootstrap, **conf)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        return consume(c, n)
    finally:
        c.close()


def create(admin, name, partitions=1, config=None):
    admin.create_topics([NewTopic(name, partitions, config=config or {})])[name].result(10)
    return name


def kafka_error(fn):
    """Runs fn, which must raise KafkaException; returns its KafkaError."""
    with pytest.raises(KafkaException) as e:
        fn()
    return e.value.args[0]


def test_consumer_needs_group_id_but_not_a_coordinator(bootstrap, admin, topic_name):
    with pytest.raises(ValueError, match="group.id"):
        Consumer({"bootstrap.servers": bootstrap})
    t = create(admin, topic_name())
    produce_all(producer(bootstrap), [(t, {"value": b"a"}), (t, {"value": b"b"}), (t, {"value": b"c"})])
    c = consumer(bootstrap)
    try:
        start = time.monotonic()
        c.assign([TopicPartition(t, 0, 1)])
        got = consume(c, 2)
        assert [(m.offset(), m.value()) for m in got] == [(1, b"b"), (2, b"c")]
        assert time.monotonic() - start < 5
        # seek within the assignment
        c.seek(TopicPartition(t, 0, 0))
        assert [m.value() for m in consume(c, 1)] == [b"a"]
    finally:
        c.close()


def test_keys_headers_null_keys_empty_values(bootstrap, admin, topic_name):
    t = create(admin, topic_name())
    sent = [
        {"key": b"k1", "value": b"v1", "headers": [("h1", b"a"), ("h2", b"")]},
        {"key": None, "value": b"no key"},
        {"key": b"k-empty", "value": b"", "headers": [("only-header", b"\x00\xff")]},
        {"key": b"tombstone", "value": None},
        {"key": b"", "value": b"empty key", "headers": [("dup", b"1"), ("dup", b"2")]},
    ]
    delivered = produce_all(producer(bootstrap), [(t, dict(kw, partition=0)) for kw in sent])
    assert [m.offset() for m in delivered] == list(range(len(sent)))
    got = read_partitions(bootstrap, t, [0], len(sent))
    assert [(m.offset(), m.key(), m.value(), m.headers()) for m in got] == [
        (i, kw["key"], kw["value"], kw.get("headers")) for i, kw in enumerate(sent)
    ]
    assert all(m.timestamp()[0] == TIMESTAMP_CREATE_TIME for m in got)


@pytest.mark.parametrize("codec", CODECS)
def test_compression_roundtrip(bootstrap, admin, topic_name, codec):
    t = create(admin, topic_name())
    value = b"runnel " * 2000
    msgs = [(t, {"key": b"k%d" % i, "value": value, "headers": [("i", b"%d" % i)], "partition": 0}) for i in range(20)]
    delivered = produce_all(producer(bootstrap, **{"compression.type": codec, "linger.ms": 50}), msgs)
    assert [m.offset() for m in delivered] == list(range(20))
    got = read_partitions(bootstrap, t, [0], 20)
    assert [(m.offset(), m.key(), m.value(), m.headers()) for m in got] == [
        (i, b"k%d" % i, value, [("i", b"%d" % i)]) for i in range(20)
    ]


def test_partition_order_and_dense_offsets(bootstrap, admin, topic_name):
    t = create(admin, topic_name(), partitions=3)
    keys = [b"key-%d" % i for i in range(12)]
    # Small batches and no in-flight limit: many produce requests pipelined per connection.
    p = producer(bootstrap, **{"linger.ms": 1, "batch.size": 2048})
    delivered = produce_all(p, [(t, {"key": keys[s % 12], "value": b"%06d" % s}) for s in range(1500)])
    part_of = {}
    for m in delivered:
        assert part_of.setdefault(m.key(), m.partition()) == m.partition()
    assert len(set(part_of.values())) > 1
    got = read_partitions(bootstrap, t, [0, 1, 2], 1500, **{"max.partition.fetch.bytes": 4096})
    assert len(got) == 1500
    for part in range(3):
        recs = [m for m in got if m.partition() == part]
        assert [m.offset() for m in recs] == list(range(len(recs))), f"partition {part}: offsets not dense"
        # Acknowledged offsets match what is read, and send order is log order.
        sent = [m for m in delivered if m.partition() == part]
        assert [(m.offset(), m.value()) for m in recs] == [(m.offset(), m.value()) for m in sent]
        assert [m.value() for m in recs] == sorted(m.value() for m in recs), f"partition {part}: reordered"


def test_offsets_for_times_and_watermarks(bootstrap, admin, topic_name):
    t = create(admin, topic_name(), partitions=2)
    base = int(time.time() * 1000) - 60_000
    produce_all(producer(bootstrap), [(t, {"value": b"%d" % i, "partition": 0, "timestamp": base + i * 1000}) for i in range(10)])
    c = consumer(bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(t, 0), timeout=10) == (0, 10)
        assert c.get_watermark_offsets(TopicPartition(t, 1), timeout=10) == (0, 0)
        q = [TopicPartition(t, 0, base + 3000), TopicPartition(t, 0, base + 4500), TopicPartition(t, 1, base)]
        found = c.offsets_for_times([q[0]], timeout=10) + c.offsets_for_times(q[1:], timeout=10)
        assert [(x.partition, x.offset, x.error) for x in found] == [(0, 3, None), (0, 5, None), (1, -1, None)]
        (after,) = c.offsets_for_times([TopicPartition(t, 0, base + 60_000)], timeout=10)
        assert after.offset == -1  # nothing at or after that time
        c.assign([TopicPartition(t, 0, found[1].offset)])
        got = consume(c, 5)
        assert [(m.offset(), m.timestamp()) for m in got] == [
            (i, (TIMESTAMP_CREATE_TIME, base + i * 1000)) for i in range(5, 10)
        ]
    finally:
        c.close()


def test_admin_list_offsets(bootstrap, admin, topic_name):
    t = create(admin, topic_name())
    base = int(time.time() * 1000) - 60_000
    stamps = [base + 5000, base, base + 9000, base + 1000]  # max timestamp at offset 2
    produce_all(producer(bootstrap), [(t, {"value": b"x", "partition": 0, "timestamp": s}) for s in stamps])
    tp = TopicPartition(t, 0)
    specs = {
        "earliest": OffsetSpec.earliest(),
        "latest": OffsetSpec.latest(),
        "max": OffsetSpec.max_timestamp(),
        "time": OffsetSpec.for_timestamp(base + 2000),
    }
    out = {}
    for name, spec in specs.items():
        res = admin.list_offsets({tp: spec}, request_timeout=10)[tp].result(10)
        out[name] = (res.offset, res.timestamp)
    assert out["earliest"][0] == 0
    assert out["latest"][0] == 4
    assert out["max"] == (2, base + 9000)
    assert out["time"] == (0, base + 5000)  # first record (by offset) with timestamp >= base+2000


def test_out_of_range_offset_resets_to_earliest(bootstrap, admin, topic_name):
    t = create(admin, topic_name())
    produce_all(producer(bootstrap), [(t, {"value": b"%d" % i}) for i in range(3)])
    c = consumer(bootstrap, **{"auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(t, 0, 100)])
        assert [(m.offset(), m.value()) for m in consume(c, 3)] == [(0, b"0"), (1, b"1"), (2, b"2")]
    finally:
        c.close()


def test_auto_create_follows_broker_settings(start_broker, topic_name):
    b = start_broker(["num.partitions=3"])
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    auto = topic_name("-auto")
    (m,) = produce_all(producer(b.bootstrap), [(auto, {"value": b"x", "partition": 2})])
    assert (m.partition(), m.offset()) == (2, 0)
    assert sorted(a.list_topics(auto, timeout=10).topics[auto].partitions) == [0, 1, 2]
    dflt = topic_name("-default")
    a.create_topics([NewTopic(dflt)])[dflt].result(10)  # -1: the broker's num.partitions
    assert len(a.list_topics(dflt, timeout=10).topics[dflt].partitions) == 3

    off = start_broker(["auto.create.topics.enable=false"])
    a = AdminClient({"bootstrap.servers": off.bootstrap})
    md = a.list_topics(auto, timeout=10).topics[auto]
    assert md.error is not None and md.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert auto not in a.list_topics(timeout=10).topics


def test_log_append_time_topic(bootstrap, admin, topic_name):
    t = create(admin, topic_name(), config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce_all(producer(bootstrap), [(t, {"value": b"x", "timestamp": 1_000})])
    (m,) = read_partitions(bootstrap, t, [0], 1)
    kind, ts = m.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME
    assert before - 1000 <= ts <= int(time.time() * 1000) + 1000


def test_produce_over_max_message_bytes_refused(bootstrap, admin, topic_name):
    t = create(admin, topic_name(), config={"max.message.bytes": "1000"})
    p = producer(bootstrap, **{"retries": 0})
    errs = []
    p.produce(t, value=b"x" * 5000, on_delivery=lambda e, m: errs.append(e))
    p.flush(10)
    assert len(errs) == 1 and errs[0] is not None and errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    (ok,) = produce_all(p, [(t, {"value": b"small"})])
    assert ok.offset() == 0


def test_fetch_long_poll_wakes_on_append(bootstrap, admin, topic_name):
    t = create(admin, topic_name())
    c = consumer(bootstrap, **{"fetch.wait.max.ms": 10_000})
    try:
        c.assign([TopicPartition(t, 0, OFFSET_END)])
        assert c.poll(0.5) is None
        start = time.monotonic()
        produce_all(producer(bootstrap), [(t, {"value": b"wake"})])
        got = consume(c, 1, timeout=8)
        assert [m.value() for m in got] == [b"wake"]
        assert time.monotonic() - start < 5, "fetch waited for fetch.wait.max.ms instead of waking on the append"
    finally:
        c.close()


# --- admin -----------------------------------------------------------------------------


def test_describe_cluster(admin, broker):
    d = admin.describe_cluster(request_timeout=10).result(10)
    assert [(n.id, n.host, n.port) for n in d.nodes] == [(1, broker.host, broker.port)]
    assert d.controller.id == 1 and d.cluster_id


def test_create_topic_and_refusals(admin, topic_name):
    t = topic_name()
    admin.create_topics([NewTopic(t, 4, config={"segment.bytes": "1048576"})])[t].result(10)
    md = admin.list_topics(t, timeout=10).topics[t]
    assert md.error is None and sorted(md.partitions) == [0, 1, 2, 3]
    assert all(p.leader == 1 and p.replicas == [1] for p in md.partitions.values())

    refusals = [
        (NewTopic(t, 1), KafkaError.TOPIC_ALREADY_EXISTS),
        (NewTopic("bad name!", 1), KafkaError.TOPIC_EXCEPTION),
        (NewTopic("..", 1), KafkaError.TOPIC_EXCEPTION),
        (NewTopic(topic_name("-zero"), 0), KafkaError.INVALID_PARTITIONS),
        (NewTopic(topic_name("-cfg"), 1, config={"no.such.config": "1"}), KafkaError.INVALID_CONFIG),
        (NewTopic(topic_name("-val"), 1, config={"segment.bytes": "lots"}), KafkaError.INVALID_CONFIG),
        (NewTopic(topic_name("-rf"), 1, replication_factor=3), KafkaError.INVALID_REPLICATION_FACTOR),
    ]
    for nt, code in refusals:
        err = kafka_error(lambda: admin.create_topics([nt])[nt.topic].result(10))
        assert err.code() == code, (nt.topic, err)
        assert err.str(), "refusal without a message"
    names = set(admin.list_topics(timeout=10).topics)
    assert not any(nt.topic in names for nt, _ in refusals[1:])

    v = topic_name("-validate")
    admin.create_topics([NewTopic(v, 2)], validate_only=True)[v].result(10)
    assert v not in admin.list_topics(timeout=10).topics


def describe(admin, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([res])[res].result(10)


def test_describe_and_alter_configs(admin, topic_name):
    t = create(admin, topic_name(), config={"segment.bytes": "1048576"})
    d = describe(admin, t)
    assert (d["segment.bytes"].value, d["segment.bytes"].source) == ("1048576", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert (d["cleanup.policy"].value, d["cleanup.policy"].source) == ("delete", ConfigSource.DEFAULT_CONFIG.value)
    assert d["message.timestamp.type"].value == "CreateTime"

    # IncrementalAlterConfigs: SET and DELETE touch only the named keys.
    res = ConfigResource(ResourceType.TOPIC, t, incremental_configs=[
        ConfigEntry("max.message.bytes", "5000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("segment.ms", "60000", incremental_operation=AlterConfigOpType.SET),
    ])
    admin.incremental_alter_configs([res])[res].result(10)
    d = describe(admin, t)
    assert (d["segment.bytes"].value, d["max.message.bytes"].value, d["segment.ms"].value) == ("1048576", "5000", "60000")
    res = ConfigResource(ResourceType.TOPIC, t, incremental_configs=[
        ConfigEntry("segment.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    admin.incremental_alter_configs([res])[res].result(10)
    d = describe(admin, t)
    assert (d["segment.ms"].value, d["segment.ms"].source) == ("604800000", ConfigSource.DEFAULT_CONFIG.value)
    assert d["max.message.bytes"].value == "5000"

    # Legacy AlterConfigs replaces the whole set of overrides.
    res = ConfigResource(ResourceType.TOPIC, t, set_config={"segment.ms": "120000"})
    with pytest.warns(DeprecationWarning):
        admin.alter_configs([res])[res].result(10)
    d = describe(admin, t)
    assert d["segment.ms"].value == "120000"
    assert (d["segment.bytes"].value, d["segment.bytes"].source) == ("1073741824", ConfigSource.DEFAULT_CONFIG.value)
    assert d["max.message.bytes"].source == ConfigSource.DEFAULT_CONFIG.value

    # Refusals carry INVALID_CONFIG; validate_only stores nothing; unknown topics are named.
    bad = ConfigResource(ResourceType.TOPIC, t, incremental_configs=[
        ConfigEntry("segment.bytes", "-1", incremental_operation=AlterConfigOpType.SET),
    ])
    assert kafka_error(lambda: admin.incremental_alter_configs([bad])[bad].result(10)).code() == KafkaError.INVALID_CONFIG
    unknown = ConfigResource(ResourceType.TOPIC, t, incremental_configs=[
        ConfigEntry("retention.bogus", "1", incremental_operation=AlterConfigOpType.SET),
    ])
    assert kafka_error(lambda: admin.incremental_alter_configs([unknown])[unknown].result(10)).code() == KafkaError.INVALID_CONFIG
    dry = ConfigResource(ResourceType.TOPIC, t, incremental_configs=[
        ConfigEntry("segment.ms", "1", incremental_operation=AlterConfigOpType.SET),
    ])
    admin.incremental_alter_configs([dry], validate_only=True)[dry].result(10)
    assert describe(admin, t)["segment.ms"].value == "120000"
    missing = ConfigResource(ResourceType.TOPIC, topic_name("-missing"))
    err = kafka_error(lambda: admin.describe_configs([missing])[missing].result(10))
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_describe_broker_config(admin):
    res = ConfigResource(ResourceType.BROKER, "1")
    d = admin.describe_configs([res])[res].result(10)
    assert d["num.partitions"].value == "1"
    assert d["auto.create.topics.enable"].value == "true"
    # Static settings are read-only; the topic defaults are dynamic, as in Kafka.
    assert d["num.partitions"].is_read_only and d["auto.create.topics.enable"].is_read_only
    assert not d["log.retention.ms"].is_read_only and not d["message.max.bytes"].is_read_only


def test_create_partitions(bootstrap, admin, topic_name):
    t = create(admin, topic_name(), partitions=2)
    admin.create_partitions([NewPartitions(t, 5)])[t].result(10)
    assert sorted(admin.list_topics(t, timeout=10).topics[t].partitions) == [0, 1, 2, 3, 4]
    (m,) = produce_all(producer(bootstrap), [(t, {"value": b"p4", "partition": 4})])
    assert (m.partition(), m.offset()) == (4, 0)
    assert [m.value() for m in read_partitions(bootstrap, t, [4], 1)] == [b"p4"]
    err = kafka_error(lambda: admin.create_partitions([NewPartitions(t, 3)])[t].result(10))
    assert err.code() == KafkaError.INVALID_PARTITIONS
    missing = topic_name("-missing")
    err = kafka_error(lambda: admin.create_partitions([NewPartitions(missing, 3)])[missing].result(10))
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    admin.create_partitions([NewPartitions(t, 9)], validate_only=True)[t].result(10)
    assert len(admin.list_topics(t, timeout=10).topics[t].partitions) == 5


def test_delete_topic(bootstrap, admin, topic_name):
    t = create(admin, topic_name(), partitions=2)
    produce_all(producer(bootstrap), [(t, {"value": b"old", "partition": 1})])
    admin.delete_topics([t])[t].result(10)
    assert t not in admin.list_topics(timeout=10).topics
    err = kafka_error(lambda: admin.delete_topics([t])[t].result(10))
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    create(admin, t, partitions=2)
    c = consumer(bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(t, 1), timeout=10) == (0, 0)
    finally:
        c.close()
