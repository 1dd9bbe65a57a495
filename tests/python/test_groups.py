"""Consumer groups with kafka-python and confluent-kafka against a real Runnel broker.

- Members of one group split a 6-partition topic with no overlap and no gap (2, then 3
  members); when one leaves (close → LeaveGroup) the others take its partitions; across
  those rebalances every record is consumed once.
- Committed offsets survive a SIGKILL of the broker: the reopened group resumes exactly at
  them (nothing committed is re-delivered, nothing is skipped).
- The admin APIs: kafka-python's list/describe/offsets/delete of groups (named
  `list_groups`, `describe_groups`, `list_group_offsets`, `delete_groups` in kafka-python
  3.x; `list_consumer_groups` … in 2.x), and confluent-kafka's AdminClient group calls.

The broker runs with a low `group.min.session.timeout.ms` and a short initial rebalance
delay, and clients heartbeat every 200 ms, so rebalances take well under a second.
"""

import threading
import time

import pytest
from confluent_kafka import (
    Consumer,
    KafkaError,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Producer,
)
from confluent_kafka import TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

BROKER_SETTINGS = ["group.min.session.timeout.ms=100", "group.initial.rebalance.delay.ms=200"]
PARTITIONS = 6

# Quick rebalances. kafka-python's rebalance timeout is max_poll_interval_ms.
KP_FAST = dict(
    session_timeout_ms=3000,
    heartbeat_interval_ms=200,
    max_poll_interval_ms=10000,
    auto_offset_reset="earliest",
    fetch_max_wait_ms=100,
    metadata_max_age_ms=1000,
)
CK_FAST = {
    "session.timeout.ms": 3000,
    "heartbeat.interval.ms": 200,
    "max.poll.interval.ms": 10000,
    "auto.offset.reset": "earliest",
    "fetch.wait.max.ms": 100,
    "topic.metadata.refresh.interval.ms": 1000,
}


def wait_until(what, cond, timeout=20):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for: {what}")
        time.sleep(0.05)


def create_topic(bootstrap, name, partitions=PARTITIONS):
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(name, partitions)])[name].result(15)
    return name


def produce(bootstrap, topic, per_partition, partitions=PARTITIONS):
    """`per_partition` records to each partition; returns nothing (offsets are dense)."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for part in range(partitions):
        for i in range(per_partition):
            p.produce(topic, value=f"{part}-{i}".encode(), partition=part)
    assert p.flush(15) == 0, "unflushed records"


# ---- members polling on their own threads -------------------------------------------------


class Member:
    """A group member on its own thread (the clients are not thread-safe: only that thread
    touches the consumer). The test reads its current assignment and what it consumed.
    `close()` closes the consumer (a LeaveGroup)."""

    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.records = []  # (partition, offset)
        self._assigned = frozenset()
        self._stop = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def assigned(self):
        with self.lock:
            return self._assigned

    def consumed(self):
        with self.lock:
            return list(self.records)

    def _run(self):
        try:
            c = self.open()
            try:
                while not self._stop.is_set():
                    recs = self.poll(c)
                    assigned = self.assignment(c)
                    with self.lock:
                        self.records.extend(recs)
                        self._assigned = assigned
            finally:
                c.close()
        except Exception as e:  # surfaced by close()
            self.error = e

    def close(self):
        self._stop.set()
        self.thread.join(20)
        assert not self.thread.is_alive(), f"{self.name} did not close"
        if self.error:
            raise self.error


class KpMember(Member):
    """kafka-python KafkaConsumer(group_id=…) with subscribe(); auto-commit, so positions are
    committed before each rebalance and on close."""

    def __init__(self, name, bootstrap, group, topic):
        self.args = (bootstrap, group, topic)
        super().__init__(name)

    def open(self):
        bootstrap, group, topic = self.args
        c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, client_id=self.name,
                          enable_auto_commit=True, auto_commit_interval_ms=200, **KP_FAST)
        c.subscribe([topic])
        return c

    def poll(self, c):
        return [(r.partition, r.offset) for recs in c.poll(timeout_ms=50).values() for r in recs]

    def assignment(self, c):
        return frozenset(tp.partition for tp in c.assignment())


class CkMember(Member):
    """confluent-kafka Consumer({'group.id': …}) with subscribe(); auto-commit (librdkafka
    commits on revoke and on close)."""

    def __init__(self, name, bootstrap, group, topic):
        self.args = (bootstrap, group, topic)
        super().__init__(name)

    def open(self):
        bootstrap, group, topic = self.args
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": self.name,
                      "enable.auto.commit": True, "auto.commit.interval.ms": 200, **CK_FAST})
        c.subscribe([topic])
        return c

    def poll(self, c):
        out = []
        for m in c.consume(num_messages=100, timeout=0.05):
            if m.error() is None:
                out.append((m.partition(), m.offset()))
        return out

    def assignment(self, c):
        return frozenset(tp.partition for tp in c.assignment())


def wait_split(members, partitions=PARTITIONS, timeout=20):
    """Waits until the members' assignments cover every partition, with no overlap, each
    member holding its fair share (range assignor)."""
    n = len(members)
    fair = sorted([partitions // n + (1 if i < partitions % n else 0) for i in range(n)])

    def split():
        a = [m.assigned() for m in members]
        union = frozenset().union(*a)
        return union == frozenset(range(partitions)) and sum(map(len, a)) == partitions and sorted(map(len, a)) == fair

    deadline = time.monotonic() + timeout
    while not split():
        if time.monotonic() > deadline:
            pytest.fail(f"no clean split among {n}: {[(m.name, sorted(m.assigned())) for m in members]}")
        for m in members:
            if m.error:
                raise m.error
        time.sleep(0.05)
    return [m.assigned() for m in members]


def wait_consumed(members, expected, timeout=20):
    """Waits until the members together consumed every record of `expected` (a set of
    (partition, offset)); checks none was consumed twice and nothing else."""

    def got():
        return [r for m in members for r in m.consumed()]

    wait_until(f"{len(expected)} records consumed", lambda: set(got()) >= expected, timeout)
    recs = got()
    assert set(recs) == expected, f"unexpected records: {sorted(set(recs) - expected)[:10]}"
    dupes = sorted({r for r in recs if recs.count(r) > 1})
    assert not dupes, f"consumed twice: {dupes[:10]}"


def records(per_partition, start=0):
    return {(p, o) for p in range(PARTITIONS) for o in range(start, start + per_partition)}


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_members_split_partitions_and_take_over_on_leave(broker, topic_name, client):
    member = {"kafka-python": KpMember, "confluent-kafka": CkMember}[client]
    topic = create_topic(broker.bootstrap, topic_name())
    group = f"g-split-{topic}"
    produce(broker.bootstrap, topic, 5)
    a = member("a", broker.bootstrap, group, topic)
    b = member("b", broker.bootstrap, group, topic)
    c = None
    try:
        wait_split([a, b])
        wait_consumed([a, b], records(5))

        produce(broker.bootstrap, topic, 5)
        c = member("c", broker.bootstrap, group, topic)
        wait_split([a, b, c])
        wait_consumed([a, b, c], records(10))

        # b leaves: a and c take its partitions and go on from b's committed positions.
        b.close()
        wait_split([a, c])
        produce(broker.bootstrap, topic, 5)
        wait_consumed([a, b, c], records(15))
    finally:
        for m in (a, b, c):
            if m is not None:
                m.close()


# ---- committed offsets survive kill -9 ------------------------------------------------------


def test_kafka_python_commit_survives_kill9(start_broker, topic_name):
    b = start_broker(BROKER_SETTINGS)
    topic = create_topic(b.bootstrap, topic_name())
    group = "g-kill9-kp"
    produce(b.bootstrap, topic, 10)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    def consumer():
        c = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id=group, enable_auto_commit=False, **KP_FAST)
        c.subscribe([topic])
        return c

    c = consumer()
    seen = []
    deadline = time.monotonic() + 20
    while len(seen) < 60 and time.monotonic() < deadline:
        seen += [(r.partition, r.offset) for recs in c.poll(timeout_ms=100).values() for r in recs]
    assert sorted(seen) == sorted(records(10))
    c.commit()  # synchronous: every position (10)
    assert all(c.committed(tp) == 10 for tp in tps)
    # Then commit explicit offsets back in the log: partition p resumes at 3 + p.
    c.commit({tp: OffsetAndMetadata(3 + tp.partition, f"m{tp.partition}", -1) for tp in tps})
    c.close()
    produce(b.bootstrap, topic, 2)  # offsets 10, 11 arrive while the group is empty

    b.kill9()
    b.restart()

    c = consumer()
    try:
        committed = {tp.partition: c.committed(tp, metadata=True) for tp in tps}
        assert {p: (o.offset, o.metadata) for p, o in committed.items()} == {p: (3 + p, f"m{p}") for p in range(PARTITIONS)}
        expected = {(p, o) for p in range(PARTITIONS) for o in range(3 + p, 12)}
        got = []
        deadline = time.monotonic() + 20
        while len(got) < len(expected) and time.monotonic() < deadline:
            got += [(r.partition, r.offset) for recs in c.poll(timeout_ms=100).values() for r in recs]
        # Nothing more turns up.
        for _ in range(3):
            got += [(r.partition, r.offset) for recs in c.poll(timeout_ms=100).values() for r in recs]
        assert sorted(got) == sorted(expected), "resumed elsewhere than the committed offsets"
    finally:
        c.close()


def test_confluent_commit_survives_kill9(start_broker, topic_name):
    b = start_broker(BROKER_SETTINGS)
    topic = create_topic(b.bootstrap, topic_name())
    group = "g-kill9-ck"
    produce(b.bootstrap, topic, 10)

    def consumer():
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False, **CK_FAST})
        c.subscribe([topic])
        return c

    c = consumer()
    seen = []
    deadline = time.monotonic() + 20
    while len(seen) < 60 and time.monotonic() < deadline:
        seen += [(m.partition(), m.offset()) for m in c.consume(100, 0.1) if m.error() is None]
    assert sorted(seen) == sorted(records(10))
    # Synchronous commit of explicit offsets: partition p resumes at 2 * p.
    done = c.commit(offsets=[CTopicPartition(topic, p, 2 * p, metadata=f"c{p}") for p in range(PARTITIONS)], asynchronous=False)
    assert all(tp.error is None for tp in done)
    c.close()
    produce(b.bootstrap, topic, 3)

    b.kill9()
    b.restart()

    c = consumer()
    try:
        committed = c.committed([CTopicPartition(topic, p) for p in range(PARTITIONS)], timeout=15)
        assert {tp.partition: (tp.offset, tp.metadata) for tp in committed} == {p: (2 * p, f"c{p}") for p in range(PARTITIONS)}
        expected = {(p, o) for p in range(PARTITIONS) for o in range(2 * p, 13)}
        got = []
        deadline = time.monotonic() + 20
        while len(got) < len(expected) and time.monotonic() < deadline:
            got += [(m.partition(), m.offset()) for m in c.consume(100, 0.1) if m.error() is None]
        got += [(m.partition(), m.offset()) for m in c.consume(100, 0.3) if m.error() is None]
        assert sorted(got) == sorted(expected), "resumed elsewhere than the committed offsets"
    finally:
        c.close()


# ---- admin ----------------------------------------------------------------------------------


def test_kafka_python_admin_groups(broker, topic_name):
    topic = create_topic(broker.bootstrap, topic_name(), partitions=2)
    group = f"g-admin-kp-{topic}"
    produce(broker.bootstrap, topic, 3, partitions=2)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, client_id="kp-admin-member",
                      enable_auto_commit=False, **KP_FAST)
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 20
        while len(c.assignment()) < 2 and time.monotonic() < deadline:
            c.poll(timeout_ms=100)
        assert {tp.partition for tp in c.assignment()} == {0, 1}
        c.commit({TopicPartition(topic, 0): OffsetAndMetadata(1, "one", -1),
                  TopicPartition(topic, 1): OffsetAndMetadata(2, "", -1)})

        listed = {g["group_id"]: g for g in admin.list_groups()}
        assert listed[group]["protocol_type"] == "consumer"
        assert listed[group]["group_state"] == "Stable"
        assert group in {g["group_id"] for g in admin.list_groups(states_filter=["Stable"])}
        assert group not in {g["group_id"] for g in admin.list_groups(states_filter=["Empty"])}

        d = admin.describe_groups([group])[group]
        assert d["error"] is None
        assert (d["group_state"], d["protocol_type"], d["protocol_data"]) == ("Stable", "consumer", "range")
        [m] = d["members"]
        assert m["client_id"] == "kp-admin-member"
        assert m["member_metadata"]["topics"] == [topic]
        assignment = {t["topic"]: sorted(t["partitions"]) for t in m["member_assignment"]["assigned_partitions"]}
        assert assignment == {topic: [0, 1]}

        offsets = admin.list_group_offsets(group)[group]
        assert {tp.partition: (o.offset, o.metadata) for tp, o in offsets.items()} == {0: (1, "one"), 1: (2, "")}

        # A group with a member cannot be deleted.
        assert admin.delete_groups([group]) == {group: "NonEmptyGroupError"}
    finally:
        c.close()
    try:
        wait_until("group empty", lambda: admin.describe_groups([group])[group]["group_state"] == "Empty")
        assert admin.describe_groups([group])[group]["members"] == []
        assert admin.delete_groups([group, "g-no-such-group"]) == {group: "OK", "g-no-such-group": "GroupIdNotFoundError"}
        assert group not in {g["group_id"] for g in admin.list_groups()}
        assert admin.list_group_offsets(group)[group] == {}
        assert admin.describe_groups([group])[group]["group_state"] == "Dead"
    finally:
        admin.close()


def test_confluent_admin_groups(broker, topic_name):
    topic = create_topic(broker.bootstrap, topic_name(), partitions=2)
    live, simple = f"g-admin-ck-live-{topic}", f"g-admin-ck-simple-{topic}"
    produce(broker.bootstrap, topic, 3, partitions=2)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    m = CkMember("ck-admin-member", broker.bootstrap, live, topic)
    try:
        wait_until("assignment", lambda: m.assigned() == {0, 1})
        wait_until("records", lambda: len(m.consumed()) == 6)

        # alter_consumer_group_offsets: commits to a group nobody has joined (a simple group).
        req = ConsumerGroupTopicPartitions(simple, [CTopicPartition(topic, 0, 5), CTopicPartition(topic, 1, 7)])
        res = admin.alter_consumer_group_offsets([req])[simple].result(15)
        assert res.group_id == simple
        assert {(tp.partition, tp.offset) for tp in res.topic_partitions} == {(0, 5), (1, 7)}
        assert all(tp.error is None for tp in res.topic_partitions)
        # … but not to a group with members (Kafka: UNKNOWN_MEMBER_ID).
        res = admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(live, [CTopicPartition(topic, 0, 0)])])[live]
        [tp] = res.result(15).topic_partitions
        assert tp.error is not None and tp.error.code() == KafkaError.UNKNOWN_MEMBER_ID

        # list_consumer_groups, with a state filter.
        def listed(**kw):
            r = admin.list_consumer_groups(request_timeout=15, **kw).result(15)
            assert not r.errors
            return {g.group_id: g for g in r.valid}

        everything = listed()
        assert everything[live].state == ConsumerGroupState.STABLE
        assert everything[simple].state == ConsumerGroupState.EMPTY
        assert not everything[live].is_simple_consumer_group
        assert everything[simple].is_simple_consumer_group
        stable = listed(states={ConsumerGroupState.STABLE})
        assert live in stable and simple not in stable
        empty = listed(states={ConsumerGroupState.EMPTY})
        assert simple in empty and live not in empty

        # describe_consumer_groups.
        d = admin.describe_consumer_groups([live])[live].result(15)
        assert d.group_id == live and d.state == ConsumerGroupState.STABLE
        assert d.partition_assignor == "range"
        assert d.coordinator.port == broker.port
        [member] = d.members
        assert member.client_id == "ck-admin-member"
        assert sorted(tp.partition for tp in member.assignment.topic_partitions) == [0, 1]

        # list_consumer_group_offsets: the member auto-commits its positions (3 each).
        def offsets(g):
            r = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)])[g].result(15)
            return {tp.partition: tp.offset for tp in r.topic_partitions}

        wait_until("auto-commit", lambda: offsets(live) == {0: 3, 1: 3})
        assert offsets(simple) == {0: 5, 1: 7}
        r = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(simple, [CTopicPartition(topic, 1)])])[simple].result(15)
        assert [(tp.partition, tp.offset) for tp in r.topic_partitions] == [(1, 7)]

        # delete_consumer_groups: refused while the group has a member.
        with pytest.raises(KafkaException) as e:
            admin.delete_consumer_groups([live], request_timeout=15)[live].result(15)
        assert "NON_EMPTY_GROUP" in str(e.value)
    finally:
        m.close()
    wait_until("empty", lambda: admin.describe_consumer_groups([live])[live].result(15).state == ConsumerGroupState.EMPTY)
    fs = admin.delete_consumer_groups([live, simple], request_timeout=15)
    for f in fs.values():
        f.result(15)
    with pytest.raises(KafkaException) as e:
        admin.delete_consumer_groups([simple], request_timeout=15)[simple].result(15)
    assert "GROUP_ID_NOT_FOUND" in str(e.value)
    left = {g.group_id for g in admin.list_consumer_groups(request_timeout=15).result(15).valid}
    assert live not in left and simple not in left
    r = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(live)])[live].result(15)
    assert r.topic_partitions == []
