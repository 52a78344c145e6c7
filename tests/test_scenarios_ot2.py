"""tshark reads the S7comm, EtherNet/IP, OPC UA, MQTT and BACnet scenario captures as intended.

Each scenario module records, for every OT frame it writes, the values its ``TSHARK_FIELDS``
should take (``INTENDED``); tshark must show exactly that sequence under ``TSHARK_FILTER`` and
raise no malformed-packet or error-severity expert item. Also checked without tshark: the
labels' attack windows lie inside the capture and each attacker sends in its window, the
committed captures in ``replay_pcaps/`` equal this run's (deterministic and current).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from datetime import datetime
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from scapy.compat import raw
from scapy.layers.inet import IP
from scapy.packet import Packet

from replay_pcaps import generate
from replay_pcaps.scenarios import bacnet, enip, mqtt, opcua, s7comm

TSHARK = shutil.which("tshark")
REPLAY = Path(generate.__file__).parent
MODULES: list[ModuleType] = [s7comm, enip, opcua, mqtt, bacnet]
CASES = [pytest.param(module, name, id=name) for module in MODULES for name in module.SCENARIOS]
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ot2")
    generate.generate(out, only=[name for m in MODULES for name in m.SCENARIOS])
    return out


@cache
def built(module: ModuleType, name: str) -> tuple[list[Packet], dict[str, Any], list[Any]]:
    """One run of the scenario: packets, labels and intended values (shared by the tests)."""
    packets, labels = module.SCENARIOS[name]()
    assert labels is not None
    return packets, labels, module.INTENDED[name]()


def tshark(path: Path, *args: str) -> list[str]:
    assert TSHARK is not None
    done = subprocess.run(
        [TSHARK, "-n", "-r", str(path), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.splitlines()


def norm(value: object) -> int | str | None:
    """A tshark cell or an intended value: None when empty, an int when it reads as one."""
    text = "" if value is None else str(value)
    if text == "":
        return None
    try:
        return int(text, 0)
    except ValueError:
        return text


@pytest.mark.tshark
@needs_tshark
@pytest.mark.parametrize(("module", "name"), CASES)
def test_dissects_as_intended(captures: Path, module: ModuleType, name: str) -> None:
    fields = [arg for f in module.TSHARK_FIELDS for arg in ("-e", f)]
    rows = tshark(captures / name, "-Y", module.TSHARK_FILTER, "-T", "fields", *fields)
    got = [tuple(norm(cell) for cell in row.split("\t")) for row in rows]
    want = [tuple(norm(v) for v in values) for values in built(module, name)[2]]
    assert len(got) == len(want)
    assert got == want


@pytest.mark.tshark
@needs_tshark
@pytest.mark.parametrize(("module", "name"), CASES)
def test_no_malformed_or_error(captures: Path, module: ModuleType, name: str) -> None:
    bad = "_ws.malformed || _ws.expert.severity == error"
    assert tshark(captures / name, "-Y", bad) == []


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize(("module", "name"), CASES)
def test_labels_match_packets(module: ModuleType, name: str) -> None:
    packets, labels, _ = built(module, name)
    times = [float(p.time) for p in packets]
    assert times == sorted(times)
    assert labels["source"] == "parkwatch replay_pcaps generator"
    assert labels["attacks"], "every OT scenario here holds at least one attack"
    ids: set[str] = set()
    for att in labels["attacks"]:
        assert att["id"] not in ids
        ids.add(att["id"])
        start, end = ts(att["start"]), ts(att["end"])
        assert times[0] - 1 <= start <= end <= times[-1] + 1
        sent = {p[IP].src for p in packets if start <= float(p.time) <= end}
        assert set(att["attackers"]) <= sent, att["id"]
        assert att["outcome"] in {"succeeded", "defended", "unknown"}
    assert sum(len(raw(p)) + 16 for p in packets) < 100_000


@pytest.mark.parametrize(("module", "name"), CASES)
def test_deterministic_and_committed(captures: Path, module: ModuleType, name: str) -> None:
    """The committed capture (another process) equals this run's: fixed bytes, current file."""
    labels = built(module, name)[1]
    committed = REPLAY / name
    if not committed.exists():
        pytest.skip(f"{name} not generated yet (python -m replay_pcaps.generate)")
    assert committed.read_bytes() == (captures / name).read_bytes(), "regenerate the captures"
    doc: dict[str, Any] = yaml.safe_load(committed.with_suffix(".labels.yaml").read_text())
    assert doc["sha256"] == hashlib.sha256(committed.read_bytes()).hexdigest()
    assert {k: v for k, v in doc.items() if k not in ("format", "capture", "sha256")} == labels
