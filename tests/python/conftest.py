"""Fixtures for the Python interop suite: a real `runnel broker` on 127.0.0.1:0.

The broker binary comes from $RUNNEL_BIN (default: target/debug/runnel under the repo).
Each test module gets its own broker with a fresh data dir (`broker`); tests inside a
module keep apart by using their own topics (`topic_name`). `start_broker` starts extra
brokers with their own settings. Every broker is stopped with SIGTERM (SIGKILL after a
grace period) and must exit 0: a broker that crashes or hangs on shutdown fails the test
that owned it. A test may `kill9()` a broker and `restart()` it on the same data dir (and
port) to check what survives a crash.
"""

import os
import re
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNEL_BIN = os.environ.get("RUNNEL_BIN", str(REPO / "target" / "debug" / "runnel"))
LISTENER_RE = re.compile(r"Kafka listener on (\S+):(\d+) ")
LISTENERS_RE = re.compile(r"listeners \[([^\]]*)\]")


class Broker:
    """A running `runnel broker` process."""

    def __init__(self, data_dir, settings=(), advertised=None):
        self.data_dir = Path(data_dir)
        self.advertised = advertised
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir.parent / (self.data_dir.name + ".stderr.log")
        self.settings = list(settings)
        self.killed = False
        if not os.access(RUNNEL_BIN, os.X_OK):
            pytest.fail(f"runnel binary not found at {RUNNEL_BIN}: build it or set RUNNEL_BIN")
        self._log = open(self.log_path, "wb")
        self._spawn("127.0.0.1:0")

    def _spawn(self, listen):
        # With Kafka's `listeners` among the settings, its shorthand --listen must go.
        with_listeners = any(kv.startswith("listeners=") for kv in self.settings)
        args = [RUNNEL_BIN, "broker"] + ([] if with_listeners else ["--listen", listen]) + ["--data-dir", str(self.data_dir)]
        for kv in self.settings:
            args += ["-o", kv]
        if self.advertised:
            args += ["--advertised-listener", self.advertised]
        env = dict(os.environ, RUNNEL_LOG_LEVEL=os.environ.get("RUNNEL_TEST_LOG", "warn"), RUNNEL_ADMIN_LISTEN="127.0.0.1:0")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log, env=env)
        line = self._first_line(timeout=30)
        m = LISTENER_RE.search(line)
        if not m:
            self.kill()
            pytest.fail(f"unexpected broker startup line: {line!r}; stderr: {self.stderr_tail()}")
        self.host, self.port = m.group(1), int(m.group(2))
        # Every listener: {"PLAINTEXT": "127.0.0.1:40001", "SASL_SSL": "127.0.0.1:40002", …}
        ls = LISTENERS_RE.search(line)
        self.listeners = dict(l.split("://", 1) for l in ls.group(1).split()) if ls else {}
        self.bootstrap = f"{self.host}:{self.port}"
        # Keep draining stdout so the broker never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    def kill9(self):
        """SIGKILL, as a crash: no flush, no clean shutdown. `restart()` brings it back."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._log.close()
        self.killed = True

    def restart(self):
        """Starts the broker again on the same data dir, settings and port (after `kill9()`
        or `stop()`)."""
        if self.proc.poll() is None:
            pytest.fail("restart() of a running broker: kill9() or stop() it first")
        self._log = open(self.log_path, "ab")
        self._spawn(self.bootstrap)
        self.killed = False

    def _first_line(self, timeout):
        box = []
        t = threading.Thread(target=lambda: box.append(self.proc.stdout.readline().decode(errors="replace")), daemon=True)
        t.start()
        t.join(timeout)
        if not box:
            self.kill()
            pytest.fail(f"broker printed no startup line within {timeout}s; stderr: {self.stderr_tail()}")
        return box[0]

    def _drain(self):
        for _ in self.proc.stdout:
            pass

    def stderr_tail(self, n=4000):
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout=20):
        """SIGTERM, then SIGKILL after `timeout` seconds. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self._log.close()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def _stop_checked(b):
    if b.killed:
        return  # killed on purpose and not restarted
    alive_before = b.proc.poll() is None
    rc = b.stop()
    if not alive_before:
        pytest.fail(f"broker had died during the test (exit {rc}); stderr:\n{b.stderr_tail()}")
    if rc != 0:
        pytest.fail(f"broker did not exit 0 on SIGTERM (got {rc}); stderr:\n{b.stderr_tail()}")


@pytest.fixture(scope="module")
def broker(request, tmp_path_factory):
    """One broker per test module, with default settings or the module's
    `BROKER_SETTINGS` (a list of "key=value")."""
    settings = getattr(request.module, "BROKER_SETTINGS", ())
    b = Broker(tmp_path_factory.mktemp("broker") / "data", settings)
    yield b
    _stop_checked(b)


@pytest.fixture
def start_broker(tmp_path):
    """Starts a broker for this test only: start_broker(["num.partitions=3", ...]),
    optionally advertised at another address (advertised="host:port", e.g. a proxy)."""
    started = []

    def start(settings=(), advertised=None):
        b = Broker(tmp_path / f"data{len(started)}", settings, advertised)
        started.append(b)
        return b

    yield start
    for b in started:
        _stop_checked(b)


@pytest.fixture
def bootstrap(broker):
    return broker.bootstrap


@pytest.fixture
def topic_name(request):
    """A fresh topic-name factory: topic_name() -> 't-<test>-<random>'."""
    base = re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:80]

    def make(suffix=""):
        return f"t-{base}{suffix}-{uuid.uuid4().hex[:8]}"

    return make
