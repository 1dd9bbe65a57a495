"""Interop with kafka-python (pure Python client), against a real Runnel broker.

Client notes:
- kafka-python 3.x enables idempotence by default (InitProducerId, producer ids and
  sequence numbers); every producer here uses that default.
- These tests consume with `group_id=None` and manual `assign()`; group consumers are
  covered in test_groups.py.
"""

import time
from pathlib import Path

import kafka.errors as Errors
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource

CODECS = ["gzip", "snappy", "lz4", "zstd"]


@pytest.fixture(scope="module")
def admin(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="runnel-py-admin")
    yield a
    a.close()


def producer(bootstrap, **kw):
    kw.setdefault("linger_ms", 5)
    return KafkaProducer(bootstrap_servers=bootstrap, **kw)


def consumer(bootstrap, **kw):
    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **kw)


def create(admin, name, partitions=1, configs=None):
    admin.create_topics({name: {"num_partitions": partitions, "configs": configs or {}}})
    return name


def consume(c, n, timeout=15):
    """Polls until `n` records arrived (or the deadline); returns them in arrival order."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=200).values():
            out.extend(recs)
    return out


def read_partitions(bootstrap, topic, partitions, n, **kw):
    c = consumer(bootstrap, **kw)
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, 0)
        return consume(c, n)
    finally:
        c.close()


def test_broker_version_detection_is_modern(bootstrap):
    # api_version=None (auto): the client infers a broker version from ApiVersions. A broken
    # ApiVersions answer makes it fall back to (0, 10, 0) or older, disabling v2 batches,
    # headers and the admin APIs.
    c = consumer(bootstrap)
    p = producer(bootstrap)
    try:
        for client in (c, p):
            v = client.config["api_version"]
            assert isinstance(v, tuple) and v >= (3, 8), f"kafka-python inferred broker version {v}"
    finally:
        c.close()
        p.close()


def test_keys_headers_null_keys_empty_values(bootstrap, admin, topic_name):
    t = create(admin, topic_name())
    sent = [
        (b"k1", b"v1", [("h1", b"a"), ("h2", b"")]),
        (None, b"no key", []),
        (b"k-empty", b"", [("only-header", b"\x00\xff")]),
        (b"tombstone", None, []),
        (b"", b"empty key", [("dup", b"1"), ("dup", b"2")]),
    ]
    p = producer(bootstrap)
    metas = [p.send(t, key=k, value=v, headers=h).get(timeout=10) for k, v, h in sent]
    p.close()
    assert [m.offset for m in metas] == list(range(len(sent)))
    got = read_partitions(bootstrap, t, [0], len(sent))
    assert [(r.key, r.value, list(r.headers)) for r in got] == [(k, v, h) for k, v, h in sent]
    assert [r.offset for r in got] == list(range(len(sent)))


@pytest.mark.parametrize("codec", CODECS)
def test_compression_roundtrip_stays_compressed(broker, admin, topic_name, codec):
    t = create(admin, topic_name())
    value = b"runnel " * 2000  # 14 kB, very compressible
    p = producer(broker.bootstrap, compression_type=codec, linger_ms=50)
    futures = [p.send(t, key=b"k%d" % i, value=value, headers=[("i", b"%d" % i)]) for i in range(20)]
    p.flush(timeout=15)
    offsets = [f.get(timeout=10).offset for f in futures]
    p.close()
    assert offsets == list(range(20))
    got = read_partitions(broker.bootstrap, t, [0], 20)
    assert [(r.offset, r.key, r.value, list(r.headers)) for r in got] == [
        (i, b"k%d" % i, value, [("i", b"%d" % i)]) for i in range(20)
    ]
    # Reading from the middle of a compressed batch: the client skips the earlier records.
    c = consumer(broker.bootstrap)
    try:
        tp = TopicPartition(t, 0)
        c.assign([tp])
        c.seek(tp, 7)
        assert [r.offset for r in consume(c, 13)] == list(range(7, 20))
    finally:
        c.close()
    # The broker stores what the producer sent: 280 kB of payload stays a few kB on disk.
    on_disk = sum(f.stat().st_size for f in Path(broker.data_dir, f"{t}-0").glob("*.log"))
    assert 0 < on_disk < 20_000, f"{codec}: {on_disk} bytes on disk for 280 kB of compressible data"


def test_partition_order_and_dense_offsets(bootstrap, admin, topic_name):
    t = create(admin, topic_name(), partitions=3)
    # ~One record per batch, so that several produce requests are in flight at once.
    p = producer(bootstrap, linger_ms=2, batch_size=4096)
    keys = [b"key-%d" % i for i in range(12)]
    pad = b"." * 3000
    futures = []
    for seq in range(600):
        k = keys[seq % len(keys)]
        futures.append((k, seq, p.send(t, key=k, value=b"%06d" % seq + pad)))
    p.flush(timeout=30)
    acked = [(k, seq, f.get(timeout=10)) for k, seq, f in futures]
    p.close()
    # Same key -> same partition (the client's partitioner), and more than one partition used.
    key_part = {}
    for k, _, m in acked:
        assert key_part.setdefault(k, m.partition) == m.partition
    assert len(set(key_part.values())) > 1
    got = read_partitions(bootstrap, t, [0, 1, 2], 600, max_partition_fetch_bytes=2048)
    assert len(got) == 600
    by_part = {0: [], 1: [], 2: []}
    for r in got:
        by_part[r.partition].append(r)
    for part, recs in by_part.items():
        # Dense offsets from 0, in the order the producer acknowledged them.
        assert [r.offset for r in recs] == list(range(len(recs))), f"partition {part}"
        expected = sorted((m.offset, seq) for _, seq, m in acked if m.partition == part)
        assert [(r.offset, int(r.value[:6])) for r in recs] == expected
        assert expected == sorted(expected, key=lambda x: x[1]), f"partition {part}: log order is not send order"
    # Per key, values arrive in the order they were sent.
    for k in keys:
        seqs = [int(r.value[:6]) for r in got if r.key == k]
        assert seqs == sorted(seqs) and len(seqs) == 50


def test_list_offsets_by_time_and_beginning_end(bootstrap, admin, topic_name):
    t = create(admin, topic_name(), partitions=2)
    base = int(time.time() * 1000) - 60_000
    p = producer(bootstrap)
    for i in range(10):
        p.send(t, value=b"%d" % i, partition=0, timestamp_ms=base + i * 1000)
    p.flush(timeout=10)
    p.close()
    tp0, tp1 = TopicPartition(t, 0), TopicPartition(t, 1)
    c = consumer(bootstrap)
    try:
        assert c.beginning_offsets([tp0, tp1]) == {tp0: 0, tp1: 0}
        assert c.end_offsets([tp0, tp1]) == {tp0: 10, tp1: 0}
        found = c.offsets_for_times({tp0: base + 3000})
        assert (found[tp0].offset, found[tp0].timestamp) == (3, base + 3000)
        # Between two records: the first one at or after the time.
        found = c.offsets_for_times({tp0: base + 4500, tp1: base})
        assert (found[tp0].offset, found[tp0].timestamp) == (5, base + 5000)
        assert found[tp1] is None  # empty partition
        assert c.offsets_for_times({tp0: base - 10_000})[tp0].offset == 0
        assert c.offsets_for_times({tp0: base + 60_000})[tp0] is None  # after the last record
        # Read from the offset found for a time.
        c.assign([tp0])
        c.seek(tp0, c.offsets_for_times({tp0: base + 7000})[tp0].offset)
        got = consume(c, 3)
        assert [(r.offset, r.timestamp, r.value) for r in got] == [
            (7, base + 7000, b"7"), (8, base + 8000, b"8"), (9, base + 9000, b"9")
        ]
    finally:
        c.close()


def test_out_of_range_offset_resets(bootstrap, admin, topic_name):
    t = create(admin, topic_name())
    p = producer(bootstrap)
    for i in range(3):
        p.send(t, value=b"%d" % i)
    p.flush(timeout=10)
    p.close()
    tp = TopicPartition(t, 0)
    for reset, want in (("earliest", [b"0", b"1", b"2"]), ("latest", [b"3"])):
        c = consumer(bootstrap, auto_offset_reset=reset)
        try:
            c.assign([tp])
            c.seek(tp, 100)  # beyond the log end: OFFSET_OUT_OF_RANGE, then the reset policy
            if reset == "latest":
                deadline = time.monotonic() + 10
                while c.position(tp) != 3 and time.monotonic() < deadline:
                    c.poll(timeout_ms=100)
                assert c.position(tp) == 3
                p = producer(bootstrap)
                p.send(t, value=b"3").get(timeout=10)
                p.close()
            assert [r.value for r in consume(c, len(want))] == want
        finally:
            c.close()


def test_record_larger_than_fetch_limits_is_returned(bootstrap, admin, topic_name):
    # KIP-74: the first batch is returned whole even if it exceeds the fetch limits.
    t = create(admin, topic_name())
    big = bytes(range(256)) * 400  # 100 kB
    p = producer(bootstrap)
    p.send(t, value=big).get(timeout=10)
    p.send(t, value=b"after").get(timeout=10)
    p.close()
    got = read_partitions(bootstrap, t, [0], 2, max_partition_fetch_bytes=1024, fetch_max_bytes=2048)
    assert [r.value for r in got] == [big, b"after"]


def test_log_append_time_topic(bootstrap, admin, topic_name):
    t = create(admin, topic_name(), configs={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    p = producer(bootstrap)
    p.send(t, value=b"x", timestamp_ms=1_000).get(timeout=10)
    p.close()
    (r,) = read_partitions(bootstrap, t, [0], 1)
    assert r.timestamp_type == 1, "LogAppendTime expected"
    assert before - 1000 <= r.timestamp <= int(time.time() * 1000) + 1000


def test_produce_over_max_message_bytes_refused(bootstrap, admin, topic_name):
    t = create(admin, topic_name(), configs={"max.message.bytes": "1000"})
    p = producer(bootstrap, retries=0)
    try:
        with pytest.raises(Errors.MessageSizeTooLargeError) as e:
            p.send(t, value=b"x" * 5000).get(timeout=10)
        assert e.value.errno == 10
        assert p.send(t, value=b"small").get(timeout=10).offset == 0
    finally:
        p.close()


def test_fetch_long_poll_wakes_on_append(bootstrap, admin, topic_name):
    t = create(admin, topic_name())
    c = consumer(bootstrap, fetch_max_wait_ms=10_000)
    try:
        tp = TopicPartition(t, 0)
        c.assign([tp])
        c.seek(tp, 0)
        assert c.poll(timeout_ms=300) == {}
        p = producer(bootstrap)
        start = time.monotonic()
        p.send(t, value=b"wake").get(timeout=10)
        got = consume(c, 1, timeout=8)
        p.close()
        assert [r.value for r in got] == [b"wake"]
        assert time.monotonic() - start < 5, "fetch waited for max_wait instead of waking on the append"
    finally:
        c.close()


# --- admin -----------------------------------------------------------------------------


def test_create_topic_and_refusals(admin, topic_name):
    t = topic_name()
    r = admin.create_topics({t: {"num_partitions": 4, "configs": {"segment.bytes": "1048576"}}})
    (res,) = r["topics"]
    assert (res["name"], res["error_code"], res["num_partitions"]) == (t, 0, 4)
    (desc,) = admin.describe_topics([t])
    assert sorted(p["partition_index"] for p in desc["partitions"]) == [0, 1, 2, 3]

    refusals = [
        ({t: {"num_partitions": 1}}, Errors.TopicAlreadyExistsError, 36),
        ({"bad name!": {"num_partitions": 1}}, Errors.InvalidTopicError, 17),
        ({"x" * 250: {"num_partitions": 1}}, Errors.InvalidTopicError, 17),
        ({topic_name("-zero"): {"num_partitions": 0}}, Errors.InvalidPartitionsError, 37),
        ({topic_name("-neg"): {"num_partitions": -5}}, Errors.InvalidPartitionsError, 37),
        ({topic_name("-cfg"): {"configs": {"no.such.config": "1"}}}, Errors.InvalidConfigurationError, 40),
        ({topic_name("-val"): {"configs": {"cleanup.policy": "bogus"}}}, Errors.InvalidConfigurationError, 40),
        ({topic_name("-rf"): {"num_partitions": 1, "replication_factor": 3}}, Errors.InvalidReplicationFactorError, 38),
        ({topic_name("-ra"): {"assignments": {0: [2]}}}, Errors.InvalidReplicationAssignmentError, 39),
    ]
    for req, err, code in refusals:
        with pytest.raises(err) as e:
            admin.create_topics(req)
        assert e.value.errno == code, req
    # None of the refused topics exists afterwards.
    names = set(admin.list_topics())
    assert t in names
    assert not any(n in names for req, _, _ in refusals[1:] for n in req)

    # Explicit replica assignments naming this broker are accepted.
    ra = topic_name("-assigned")
    (res,) = admin.create_topics({ra: {"assignments": {0: [1], 1: [1]}}})["topics"]
    assert (res["error_code"], res["num_partitions"]) == (0, 2)

    # validate_only checks but creates nothing.
    v = topic_name("-validate")
    admin.create_topics({v: {"num_partitions": 2}}, validate_only=True)
    assert v not in set(admin.list_topics())


def test_describe_and_alter_configs(admin, topic_name):
    t = create(admin, topic_name(), configs={"segment.bytes": "1048576"})
    res = ConfigResource("topic", t)
    full = admin.describe_configs([res], config_filter="all")["topic"][t]
    assert full["segment.bytes"]["value"] == "1048576"
    assert full["segment.bytes"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert full["cleanup.policy"]["value"] == "delete"
    assert full["cleanup.policy"]["config_source"] == "DEFAULT_CONFIG"
    assert full["max.message.bytes"]["value"] == "1048588"

    # Incremental (the default against a broker serving IncrementalAlterConfigs).
    r = admin.alter_configs([ConfigResource("topic", t, {"max.message.bytes": "5000", "segment.ms": "60000"})])
    assert r == {"topic": {t: "OK"}}
    modified = admin.describe_configs([ConfigResource("topic", t)])["topic"][t]
    assert {k: v["value"] for k, v in modified.items()} == {
        "segment.bytes": "1048576", "max.message.bytes": "5000", "segment.ms": "60000"
    }
    # Legacy AlterConfigs (the client re-sends the other overrides itself).
    r = admin.alter_configs([ConfigResource("topic", t, {"segment.ms": "120000"})], incremental=False)
    assert r == {"topic": {t: "OK"}}
    modified = admin.describe_configs([ConfigResource("topic", t)])["topic"][t]
    assert modified["segment.ms"]["value"] == "120000"
    assert modified["max.message.bytes"]["value"] == "5000"
    # Delete an override: back to the default.
    admin.alter_configs([ConfigResource("topic", t, {"segment.ms": ("DELETE", None)})])
    full = admin.describe_configs([res], config_filter="all")["topic"][t]
    assert (full["segment.ms"]["value"], full["segment.ms"]["config_source"]) == ("604800000", "DEFAULT_CONFIG")

    # Refusals: a bad value, and validate_only stores nothing.
    r = admin.alter_configs([ConfigResource("topic", t, {"segment.bytes": "-1"})])
    assert "InvalidConfigurationError" in r["topic"][t] and "[Error 40]" in r["topic"][t]
    r = admin.alter_configs([ConfigResource("topic", t, {"segment.bytes": "2097152"})], validate_only=True)
    assert r == {"topic": {t: "OK"}}
    modified = admin.describe_configs([ConfigResource("topic", t)])["topic"][t]
    assert modified["segment.bytes"]["value"] == "1048576"
    # Unknown topic: kafka-python drops per-resource describe errors (an empty dict), but
    # shows the alter error.
    missing = topic_name("-missing")
    assert admin.describe_configs([ConfigResource("topic", missing)], config_filter="all") == {"topic": {missing: {}}}
    r = admin.alter_configs([ConfigResource("topic", missing, {"segment.ms": "1000"})], raise_on_unknown=False)
    assert "UnknownTopicOrPartitionError" in r["topic"][missing] and "[Error 3]" in r["topic"][missing]


def test_create_partitions(bootstrap, admin, topic_name):
    t = create(admin, topic_name(), partitions=2)
    admin.create_partitions({t: 5})
    (desc,) = admin.describe_topics([t])
    assert len(desc["partitions"]) == 5
    # The new partitions take writes and reads.
    p = producer(bootstrap)
    assert p.send(t, value=b"p4", partition=4).get(timeout=10).offset == 0
    p.close()
    assert [r.value for r in read_partitions(bootstrap, t, [4], 1)] == [b"p4"]
    with pytest.raises(Errors.InvalidPartitionsError) as e:
        admin.create_partitions({t: 3})
    assert e.value.errno == 37
    with pytest.raises(Errors.UnknownTopicOrPartitionError):
        admin.create_partitions({topic_name("-missing"): 3})
    admin.create_partitions({t: 8}, validate_only=True)
    assert len(admin.describe_topics([t])[0]["partitions"]) == 5


def test_delete_topic(broker, admin, topic_name):
    t = create(admin, topic_name(), partitions=2)
    p = producer(broker.bootstrap)
    p.send(t, value=b"old", partition=0).get(timeout=10)
    p.close()
    r = admin.delete_topics([t])
    assert [(x["name"], x["error_code"]) for x in r["topics"]] == [(t, 0)]
    assert t not in set(admin.list_topics())
    assert not list(Path(broker.data_dir).glob(f"{t}-*")), "partition directories left on disk"
    with pytest.raises(Errors.UnknownTopicOrPartitionError):
        admin.delete_topics([t])
    # Re-created under the same name, the topic starts empty.
    create(admin, t)
    c = consumer(broker.bootstrap)
    try:
        assert c.end_offsets([TopicPartition(t, 0)]) == {TopicPartition(t, 0): 0}
    finally:
        c.close()
