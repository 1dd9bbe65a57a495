"""Idempotent producers against Runnel: the clients' default idempotent producers
(kafka-python 3.x's default KafkaProducer, confluent-kafka with enable.idempotence=true)
write exactly their records, in order and without duplicates, while a proxy between them
and the broker cuts every connection mid-flight and the broker is killed (-9) and
restarted. The broker is advertised at the proxy's address, so every connection of the
client goes through it.
"""

import collections
import logging
import socket
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from kafka import KafkaProducer

N = 100_000


class CuttingProxy:
    """A TCP proxy on 127.0.0.1:0 that forwards to `target` and can cut every
    connection at once (both sides closed, whatever is in flight is lost)."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.target = None
        self.conns = []
        self.lock = threading.Lock()
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            host, port = self.target.rsplit(":", 1)
            try:
                upstream = socket.create_connection((host, int(port)), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
        self.cuts += 1

    def close(self):
        self.listener.close()
        self.cut()


@pytest.fixture
def proxied(start_broker):
    proxy = CuttingProxy()
    broker = start_broker(advertised=proxy.address)
    proxy.target = broker.bootstrap
    yield proxy, broker
    proxy.close()


def disturb(proxy, broker, stop, progress, calm_after=15.0):
    """Cuts the connections every 0.4 s; kills and restarts the broker once, when a
    third of the records are acknowledged. `calm_after` seconds after the restart the
    cuts stop (a producing run takes about that long): a client whose every connection
    dies within 0.4 s may never finish its ProducerId handshake, which would test the
    client's luck rather than the broker, and records still unacknowledged then must
    still be written exactly once. For the same reason the cuts pause while no record has
    been acknowledged for 5 s, until one is: librdkafka drops every broker it learned when
    all its connections are down (re-bootstrap), and on a slow machine may not get from the
    bootstrap connection to its first produce within 0.4 s, before or after the restart."""
    restarted_at = None
    acked, acked_at = progress(), time.monotonic()
    while not stop.is_set():
        time.sleep(0.4)
        now = time.monotonic()
        if progress() != acked:
            acked, acked_at = progress(), now
        if restarted_at is not None and now - restarted_at > calm_after:
            continue
        if now - acked_at > 5.0:
            continue
        proxy.cut()
        if restarted_at is None and progress() > N // 3:
            broker.kill9()
            time.sleep(0.5)
            broker.restart()
            proxy.target = broker.bootstrap
            restarted_at = time.monotonic()


class RecentLog(logging.Handler):
    """Keeps the client's last debug lines, printed only when the test fails."""

    def __init__(self, n=400):
        super().__init__()
        self.lines = collections.deque(maxlen=n)

    def emit(self, record):
        self.lines.append(record.getMessage())

    def logger(self, name):
        log = logging.getLogger(name)
        log.setLevel(logging.DEBUG)
        log.propagate = False
        log.addHandler(self)
        return log

    def dump(self):
        return "\n".join(self.lines)


def read_values(bootstrap, topic, n, timeout=120):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "verify", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error():
                    raise KafkaException(m.error())
                out.append(int(m.value()))
        # Anything beyond n would be a duplicate: read a little longer.
        for m in c.consume(num_messages=10000, timeout=1.0):
            if not m.error():
                out.append(int(m.value()))
    finally:
        c.close()
    return out


def check_exactly_once(values):
    assert len(values) == N, f"{len(values)} records, expected {N} (duplicates: {len(values) - len(set(values))})"
    assert values == list(range(N)), "records out of order or altered"


@pytest.mark.timeout(300)
def test_confluent_idempotent_producer_across_cuts_and_kill9(proxied, topic_name):
    proxy, broker = proxied
    topic = topic_name()
    acked = [0]
    errors = []

    def delivered(err, _msg):
        if err:
            errors.append(err)
        else:
            acked[0] += 1

    recent = RecentLog()
    p = Producer({
        "bootstrap.servers": proxy.address,
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.num.messages": 500,
        "message.timeout.ms": 120000,
        "debug": "eos,broker",
        "logger": recent.logger("idempotent-producer"),
    })
    stop = threading.Event()
    t = threading.Thread(target=disturb, args=(proxy, broker, stop, lambda: acked[0]), daemon=True)
    t.start()
    try:
        for i in range(N):
            while True:
                try:
                    p.produce(topic, str(i).encode(), partition=0, on_delivery=delivered)
                    break
                except BufferError:
                    p.poll(0.05)
            if i % 1000 == 0:
                p.poll(0)
        left = p.flush(180)
    finally:
        stop.set()
        t.join()
    diagnosis = f"\nclient's last lines:\n{recent.dump()}\nbroker's stderr:\n{broker.stderr_tail()}"
    assert left == 0, "records still unacknowledged" + diagnosis
    assert not errors, str(errors[:3]) + diagnosis
    assert acked[0] == N
    assert proxy.cuts >= 3, "the proxy cut connections while producing"
    check_exactly_once(read_values(broker.bootstrap, topic, N))


@pytest.mark.timeout(300)
def test_kafka_python_default_producer_across_cuts_and_kill9(proxied, topic_name):
    proxy, broker = proxied
    topic = topic_name()
    # The default KafkaProducer: idempotent in kafka-python 3.x.
    p = KafkaProducer(bootstrap_servers=proxy.address, linger_ms=5)
    assert p.config["enable_idempotence"], "kafka-python's default producer is idempotent"
    acked = [0]
    lock = threading.Lock()

    def ok(_md):
        with lock:
            acked[0] += 1

    stop = threading.Event()
    t = threading.Thread(target=disturb, args=(proxy, broker, stop, lambda: acked[0]), daemon=True)
    t.start()
    failures = []
    try:
        for i in range(N):
            p.send(topic, str(i).encode(), partition=0).add_callback(ok).add_errback(failures.append)
        p.flush(timeout=180)
    finally:
        stop.set()
        t.join()
        p.close(timeout=10)
    assert not failures, failures[:3]
    assert acked[0] == N
    check_exactly_once(read_values(broker.bootstrap, topic, N))
