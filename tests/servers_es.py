"""Pytest fixture: an Elasticsearch-API test server (noida-db) on a free port.

Import the fixture into a test module (``from tests.servers_es import es_url  # noqa: F401``);
tests that use it are skipped when the ``noida-db`` console script is not installed. The server
runs in its own process group with a temporary data directory and is stopped at session end.
noida-db speaks the Elasticsearch 8 REST API (it reports version 8.15.3 and sends
``X-Elastic-Product: Elasticsearch``); it has no data streams, ILM, EQL or ES|QL, so ParkWatch's
ES layer keeps to index templates, aliases, bulk and term/range queries.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def noida_binary() -> str | None:
    """The noida-db console script of this venv, else one on PATH."""
    local = Path(sys.executable).parent / "noida-db"
    if local.exists():
        return str(local)
    return shutil.which("noida-db")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EsServer:
    """A running noida-db Elasticsearch service (``url``), stopped by :meth:`stop`."""

    def __init__(self, binary: str, data_dir: str, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(data_dir, "server.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [binary, "start", "--only", "elasticsearch", "--elasticsearch-port", str(port),
             "--data-dir", data_dir],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"noida-db exited with status {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError(f"noida-db did not answer on {self.url} within {timeout}s")

    def stop(self) -> None:
        # the console script runs the server binary as a child: signal our own process group
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                continue
            if _group_gone(self.proc.pid, 10.0):  # the server child too, not just the script
                break
        self.log.close()


def _group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no process of group ``pgid`` is left (its data directory is then quiet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def es_url() -> Iterator[str]:
    """Base URL of a fresh noida-db Elasticsearch service for this test session."""
    binary = noida_binary()
    if binary is None:
        pytest.skip("noida-db is not installed (pip install noida-db)")
    with tempfile.TemporaryDirectory(prefix="pw-noida-") as data_dir:
        server = EsServer(binary, data_dir, free_port())
        try:
            server.wait_ready()
            yield server.url
        finally:
            server.stop()
