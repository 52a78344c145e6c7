"""Fixtures of the console tests (registered in ``tests/conftest.py``): one real replay per
session into a store with users of every role, a fresh copy of it per test, and ``login(name)``
returning a test client signed in through the real login form."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from correlator.replay_cli import replay_command
from parkwatch.console.app import create_app
from parkwatch.store import accounts
from parkwatch.store.sqlite import SqliteStore

CAPTURES = [
    "replay_pcaps/modbus_unauthorized_write.pcap",  # ent-a only
    "replay_pcaps/dnp3_restart_and_stop.pcap",  # ent-b only
    "replay_pcaps/sample_park.pcap",  # both (a campaign)
]
PW = "correct horse battery"
USERS = [("op", "operator", None), ("op2", "operator", None), ("aud", "auditor", None),
         ("enta", "enterprise", "ent-a")]
XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="session")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("replay")
    res = CliRunner().invoke(replay_command, [
        *CAPTURES, "--topology", "replay_pcaps/park.yaml", "--vantage", "park-gw",
        "--out", str(out), "--no-progress",
    ])
    assert res.exit_code == 0, res.output
    db = out / "parkwatch.db"
    with SqliteStore.open(db) as st:
        for name, role, ent in USERS:
            accounts.add_user(st, name, role, PW, ent)
    return db


@pytest.fixture()
def db(replayed: Path, tmp_path: Path) -> Path:
    """A fresh copy of the replayed store for each test (triage changes it)."""
    path = tmp_path / "pw.db"
    shutil.copy(replayed, path)
    return path


@pytest.fixture()
def st(db: Path) -> Iterator[SqliteStore]:
    with SqliteStore.open(db) as store:
        yield store


@pytest.fixture()
def login(db: Path) -> Callable[[str], TestClient]:
    app = create_app(db, secure_cookies=False)

    def _login(name: str) -> TestClient:
        c = TestClient(app)
        page = c.get("/login")
        r = c.post("/login", data={"username": name, "password": PW, "csrf": _csrf(page.text),
                                   "next": "/incidents"}, follow_redirects=False)
        assert r.status_code == 303, r.text
        return c

    return _login


def _csrf(text: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', text)
    assert m, "no csrf field"
    return m[1]


