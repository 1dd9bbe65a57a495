"""Listeners, TLS and SASL with real clients: confluent-kafka (librdkafka) and kcat over SSL
and SASL_SSL with SCRAM-SHA-512, kafka-python over SASL_PLAINTEXT with PLAIN and SCRAM.
A wrong password, an untrusted client certificate and a plaintext client on a TLS port are
refused, and the broker keeps serving everyone else.

The certificates are made by the test itself (rcgen, through the `test_certs` example
binary built beside `runnel`); the SCRAM users are created with `runnel user create`
through the loopback PLAINTEXT listener, as an operator creates the first users.
"""

import subprocess
import time
import uuid
from pathlib import Path

import kafka.errors as Errors
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition as CTopicPartition
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from conftest import RUNNEL_BIN

PASSWORDS = {"alice": "alice-Secret!", "bob": "bob,secret=2"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    tool = Path(RUNNEL_BIN).parent / "examples" / "test_certs"
    subprocess.run([str(tool), str(d)], check=True, capture_output=True, timeout=60)
    return d


@pytest.fixture(scope="module")
def secure(certs, tmp_path_factory):
    """A broker with a listener of each security protocol, and two SCRAM users."""
    from conftest import Broker, _stop_checked

    plain_users = certs / "plain-users"
    plain_users.write_text("plainuser=plain-pw\n")
    b = Broker(
        tmp_path_factory.mktemp("secure") / "data",
        [
            "listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
            f"ssl.keystore.location={certs / 'server.pem'}",
            f"ssl.truststore.location={certs / 'ca.pem'}",
            "ssl.client.auth=required",
            f"sasl.plain.users={plain_users}",
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER",
            "connection.failed.authentication.delay.ms=20",
        ],
    )
    for user, mech in [("alice", "SCRAM-SHA-512"), ("bob", "SCRAM-SHA-256")]:
        pw = certs / f"{user}.pw"
        pw.write_text(PASSWORDS[user] + "\n")
        out = subprocess.run(
            [RUNNEL_BIN, "user", "create", user, "--mechanism", mech, "--password-file", str(pw), "-b", b.listeners["PLAINTEXT"]],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
    yield b
    _stop_checked(b)


def ck_config(b, certs, listener, **extra):
    c = {"bootstrap.servers": b.listeners[listener], "broker.address.family": "v4"}
    if "SSL" in listener:
        c["ssl.ca.location"] = str(certs / "ca.pem")
    c.update(extra)
    return c


def ck_roundtrip(config, topic, n=20):
    """Produces `n` records with confluent-kafka and reads them back; returns the values."""
    p = Producer({**config, "acks": "all", "message.timeout.ms": 15000})
    for i in range(n):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i)
    assert p.flush(20) == 0, "every record delivered"
    c = Consumer({**config, "group.id": "sec-" + uuid.uuid4().hex[:6], "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([CTopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    return got


def expected(n=20):
    return [b"v%d" % i for i in range(n)]


def test_confluent_kafka_over_ssl_with_a_client_certificate(secure, certs, topic_name):
    config = ck_config(
        secure,
        certs,
        "SSL",
        **{"security.protocol": "SSL", "ssl.certificate.location": str(certs / "client.pem"), "ssl.key.location": str(certs / "client.key")},
    )
    assert ck_roundtrip(config, topic_name()) == expected()


def test_confluent_kafka_over_sasl_ssl_with_scram_sha_512(secure, certs, topic_name):
    config = ck_config(
        secure,
        certs,
        "SASL_SSL",
        **{"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "alice", "sasl.password": PASSWORDS["alice"]},
    )
    assert ck_roundtrip(config, topic_name()) == expected()


@pytest.mark.parametrize(
    "mechanism,user,password",
    [
        ("PLAIN", "plainuser", "plain-pw"),  # from sasl.plain.users
        ("PLAIN", "alice", PASSWORDS["alice"]),  # checked against alice's SCRAM credential
        ("SCRAM-SHA-256", "bob", PASSWORDS["bob"]),
        ("SCRAM-SHA-512", "alice", PASSWORDS["alice"]),
    ],
)
def test_kafka_python_over_sasl_plaintext(secure, topic_name, mechanism, user, password):
    sasl = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism, sasl_plain_username=user, sasl_plain_password=password)
    topic = topic_name()
    p = KafkaProducer(bootstrap_servers=secure.listeners["SASL_PLAINTEXT"], **sasl)
    for i in range(10):
        p.send(topic, key=b"k", value=b"m%d" % i)
    p.flush(20)
    p.close()
    c = KafkaConsumer(bootstrap_servers=secure.listeners["SASL_PLAINTEXT"], group_id=None, enable_auto_commit=False, **sasl)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek(tp, 0)
    got = []
    deadline = time.monotonic() + 15
    while len(got) < 10 and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=200).values():
            got.extend(r.value for r in recs)
    c.close()
    assert got == [b"m%d" % i for i in range(10)]


def test_confluent_kafka_with_an_unsecured_oauthbearer_token(secure, certs, topic_name):
    config = ck_config(
        secure,
        certs,
        "SASL_PLAINTEXT",
        **{
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "OAUTHBEARER",
            "enable.sasl.oauthbearer.unsecure.jwt": True,
            "sasl.oauthbearer.config": "principal=olga lifeSeconds=600",
        },
    )
    assert ck_roundtrip(config, topic_name(), n=3) == expected(3)


def kcat(*args, stdin=None):
    return subprocess.run(["kcat", *args], input=stdin, capture_output=True, timeout=60)


def test_kcat_over_ssl_and_sasl_ssl_with_scram_sha_512(secure, certs, topic_name):
    ca = ["-X", f"ssl.ca.location={certs / 'ca.pem'}"]
    modes = {
        "SSL": ["-X", "security.protocol=SSL", "-X", f"ssl.certificate.location={certs / 'client.pem'}", "-X", f"ssl.key.location={certs / 'client.key'}"],
        "SASL_SSL": ["-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=alice", "-X", f"sasl.password={PASSWORDS['alice']}"],
    }
    for listener, opts in modes.items():
        topic = topic_name(listener.lower())
        common = ["-b", secure.listeners[listener], *ca, *opts]
        out = kcat(*common, "-t", topic, "-P", "-K:", stdin=b"a:one\nb:two\nc:three\n")
        assert out.returncode == 0, out.stderr
        out = kcat(*common, "-t", topic, "-C", "-e", "-f", "%k=%s\n")
        assert out.returncode == 0, out.stderr
        assert out.stdout.decode().splitlines() == ["a=one", "b=two", "c=three"], (listener, out.stderr)


def test_wrong_password_untrusted_certificate_and_plaintext_on_tls_are_refused(secure, certs, topic_name):
    # A wrong password (SCRAM and PLAIN) over SASL_PLAINTEXT.
    for mechanism in ["SCRAM-SHA-512", "PLAIN"]:
        with pytest.raises(Errors.KafkaError):
            KafkaProducer(
                bootstrap_servers=secure.listeners["SASL_PLAINTEXT"],
                security_protocol="SASL_PLAINTEXT",
                sasl_mechanism=mechanism,
                sasl_plain_username="alice",
                sasl_plain_password="wrong",
                api_version=(2, 8),
                max_block_ms=3000,
            ).partitions_for("x")
    # A wrong password over SASL_SSL; no client certificate, or an untrusted one, on the
    # SSL listener (ssl.client.auth=required); a plaintext client on the TLS port.
    bad_password = ck_config(secure, certs, "SASL_SSL", **{"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "alice", "sasl.password": "wrong"})
    no_cert = ck_config(secure, certs, "SSL", **{"security.protocol": "SSL"})
    rogue = ck_config(secure, certs, "SSL", **{"security.protocol": "SSL", "ssl.certificate.location": str(certs / "rogue.pem"), "ssl.key.location": str(certs / "rogue.key")})
    plain_on_tls = {"bootstrap.servers": secure.listeners["SSL"], "broker.address.family": "v4"}
    for name, config in [("wrong password", bad_password), ("no certificate", no_cert), ("untrusted certificate", rogue), ("plaintext on TLS", plain_on_tls)]:
        c = Consumer({**config, "group.id": "x", "reconnect.backoff.ms": 1000, "log_level": 0})
        try:
            with pytest.raises(KafkaException):
                c.list_topics(timeout=2)
                pytest.fail(f"{name}: metadata was served")
        finally:
            c.close()
    # Everyone else is still served.
    good = ck_config(secure, certs, "SASL_SSL", **{"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "alice", "sasl.password": PASSWORDS["alice"]})
    assert ck_roundtrip(good, topic_name(), n=3) == expected(3)
    assert secure.proc.poll() is None
