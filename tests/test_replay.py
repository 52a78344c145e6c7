"""``parkwatch replay``, ``report`` and ``incident`` end to end on the scenario captures."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from correlator.labels import load_labels
from parkwatch.schema import Alert, FlowRecord, Incident

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "replay_pcaps"
PARK = PCAPS / "park.yaml"
CAPS = ["modbus_unauthorized_write.pcap", "it_ftp_brute_force.pcap", "sample_park.pcap"]


def pw(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "parkwatch.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)


def lines(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("replay")
    caps = [str(PCAPS / c) for c in CAPS]
    res = pw("replay", *caps, "--topology", str(PARK), "--vantage", "park-gw", "--out", str(out))
    assert res.returncode == 0, res.stderr
    return out, res


def test_replay_writes_every_output_with_the_auditors_fields(run):
    out, res = run
    for name in ("flows", "events", "alerts", "incidents", "campaigns"):
        assert (out / f"{name}.jsonl").exists(), name
    flows = lines(out / "flows.jsonl")
    assert len(flows) > 40 and all(FlowRecord.from_dict(f) for f in flows)
    assert all(Alert.from_dict(a) for a in lines(out / "alerts.jsonl"))
    incs = lines(out / "incidents.jsonl")
    assert incs, res.stderr
    need = {
        "id",
        "first_seen",
        "last_seen",
        "category",
        "severity",
        "techniques",
        "attackers",
        "targets",
        "enterprises",
        "defended",
        "alert_count",
    }
    for d in incs:
        assert need <= set(d) and Incident.from_dict(d).alert_count >= 1
    assert "parkwatch replay: 3 captures" in res.stderr


def test_scorecard_follows_labels_md_and_the_manifest_traces_every_input(run):
    out, _ = run
    card = orjson.loads((out / "scorecard.json").read_bytes())
    assert card["labelled_captures"] == 3
    attacks = sum(
        len(load_labels(PCAPS / c.replace(".pcap", ".labels.yaml")).attacks) for c in CAPS
    )
    assert card["total"]["attacks"] == attacks
    for key in (
        "attack_recall",
        "category_recall",
        "incident_precision",
        "time_to_detect_s",
        "false_incidents_per_hour",
        "defended_ratio_check",
        "per_category",
    ):
        assert key in card["total"]
    per = card["captures"][str(PCAPS / CAPS[0])]
    assert per["score"]["attacks"] == 2
    man = orjson.loads((out / "manifest.json").read_bytes())
    for c in CAPS:
        digest = hashlib.sha256((PCAPS / c).read_bytes()).hexdigest()
        assert man["captures"][str(PCAPS / c)] == digest
    assert any(p.endswith(".yml") for p in man["rules"]) and man["tool"]["parkwatch"]
    assert man["topology"] == {str(PARK): hashlib.sha256(PARK.read_bytes()).hexdigest()}


def test_report_html_is_readable_and_self_contained(run):
    out, _ = run
    page = (out / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page
    assert "Incident timeline" in page and "defended ratio (indicator 10)" in page
    assert "http://" not in page and "https://" not in page


def test_two_runs_give_identical_incidents(run, tmp_path):
    out, _ = run
    caps = [str(PCAPS / c) for c in CAPS]
    res = pw(
        "replay", *caps, "--topology", str(PARK), "--vantage", "park-gw", "--out", str(tmp_path)
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "incidents.jsonl").read_bytes() == (out / "incidents.jsonl").read_bytes()
    assert (tmp_path / "alerts.jsonl").read_bytes() == (out / "alerts.jsonl").read_bytes()


def test_labels_for_other_bytes_are_refused(tmp_path):
    cap = tmp_path / CAPS[0]
    data = bytearray((PCAPS / CAPS[0]).read_bytes())
    data[-1] ^= 0xFF
    cap.write_bytes(bytes(data))
    shutil.copy(PCAPS / CAPS[0].replace(".pcap", ".labels.yaml"), tmp_path)
    res = pw(
        "replay",
        str(cap),
        "--topology",
        str(PARK),
        "--vantage",
        "park-gw",
        "--out",
        str(tmp_path / "o"),
    )
    assert res.returncode == 2
    assert "does not match" in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "o" / "scorecard.json").exists()


def test_indicator_report_and_operator_workflow(run, tmp_path):
    out, _ = run
    db = tmp_path / "p.db"
    shutil.copy(out / "parkwatch.db", db)
    first = lines(out / "incidents.jsonl")[0]
    assert (
        pw(
            "incidents", "ack", first["id"], "--store", str(db), "--at", "2030-01-01T00:00:00Z"
        ).returncode
        == 0
    )
    assert pw("incidents", "resolve", first["id"], "--store", str(db)).returncode == 0
    rep = pw("report", "--store", str(db), "--format", "json")
    assert rep.returncode == 0, rep.stderr
    doc = orjson.loads(rep.stdout)
    speed = doc["indicator_13_response_speed"]
    assert speed["to_acknowledge"]["count"] == 1 and speed["to_resolve"]["count"] == 1
    assert doc["indicator_10_defended_ratio"]["park"]["attacks"] == doc["incidents"]
    text = pw("report", "--store", str(db)).stdout
    assert "[10] defended-attack ratio" in text and "[13] time to acknowledge" in text
