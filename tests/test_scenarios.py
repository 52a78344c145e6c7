"""Contract over every scenario capture the project generates (replay_pcaps).

Each registered scenario regenerates byte for byte into the committed capture, and its labels
follow shared/LABELS.md: format, matching sha256, closed categories, attack windows inside the
capture, attackers that really send packets in it. The flow pipeline reads every capture
without a weird.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from scapy.utils import RawPcapReader

from parkwatch.schema import CATEGORIES, parse_ts
from replay_pcaps.generate import all_scenarios, generate
from tests.helpers import run_capture

ROOT = Path(__file__).resolve().parents[1] / "replay_pcaps"
NAMES = sorted(all_scenarios())


def senders(path: Path) -> set[str]:
    """IPv4 source addresses and ARP sender addresses of every packet (Ethernet captures)."""
    out: set[str] = set()
    for data, _meta in RawPcapReader(str(path)):
        et = int.from_bytes(data[12:14], "big")
        if et == 0x0800 and len(data) >= 34:
            out.add(".".join(map(str, data[26:30])))
        elif et == 0x0806 and len(data) >= 32:
            out.add(".".join(map(str, data[28:32])))
    return out


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("regen")
    generate(out)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_committed_capture_is_what_the_generator_writes(name, regenerated):
    committed = ROOT / name
    assert committed.exists(), f"run python -m replay_pcaps.generate and commit {name}"
    assert committed.read_bytes() == (regenerated / name).read_bytes()
    labels = committed.with_name(name.rsplit(".", 1)[0] + ".labels.yaml")
    fresh = (regenerated / name).with_name(labels.name)
    assert labels.exists() == fresh.exists()
    if fresh.exists():
        assert labels.read_text() == fresh.read_text()


@pytest.mark.parametrize("name", NAMES)
def test_labels_follow_the_auditors_contract(name):
    path = ROOT / name
    labels_path = path.with_name(name.rsplit(".", 1)[0] + ".labels.yaml")
    if not labels_path.exists():
        pytest.skip(f"{name} has no labels (demo capture)")
    doc = yaml.safe_load(labels_path.read_text())
    assert doc["format"] == "parkwatch-labels/1"
    assert doc["capture"] == name
    assert doc["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert doc["description"] and doc["source"]
    times = [meta.sec + meta.usec / 1e6 for _d, meta in RawPcapReader(str(path))]
    first, last = min(times), max(times)
    sent = senders(path)
    ids = [a["id"] for a in doc["attacks"]]
    assert len(ids) == len(set(ids))
    for attack in doc["attacks"]:
        assert attack["category"] in CATEGORIES, attack
        start, end = parse_ts(attack["start"]) / 1e9, parse_ts(attack["end"]) / 1e9
        assert first - 1 <= start <= end <= last + 1, attack["id"]
        for ip in attack.get("attackers", []):
            assert ip in sent, (attack["id"], ip)
        assert attack.get("outcome", "unknown") in ("succeeded", "defended", "unknown")


@pytest.mark.parametrize("name", NAMES)
def test_every_scenario_flows_without_weirds(name):
    res = run_capture(str(ROOT / name))
    assert res.stats is not None
    assert res.weird == [] and res.stats.packets > 0
    assert res.stats.ip + res.stats.arp + res.stats.other == res.stats.packets
