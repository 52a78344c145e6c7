"""The ``parkwatch`` command as an auditor or operator runs it: real processes, real files."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parkwatch import __version__
from parkwatch.config import load_settings
from parkwatch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "replay_pcaps" / "sample_park.pcap"
PARK = ROOT / "replay_pcaps" / "park.yaml"
GOLDEN = ROOT / "tests" / "golden" / "sample_park.flows.jsonl"
AUDITOR_KEYS = {
    "start",
    "end",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "proto",
    "orig_pkts",
    "orig_bytes",
    "resp_pkts",
    "resp_bytes",
    "conn_state",
    "community_id",
    "vantage",
    "end_reason",
}


def pw(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "parkwatch.cli", *args],
        input=stdin,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def lines(out: bytes) -> list[dict]:
    return [json.loads(x) for x in out.splitlines()]


def test_version():
    res = pw("--version")
    assert res.returncode == 0
    assert res.stdout.decode().strip() == f"parkwatch, version {__version__}"


def test_flows_jsonl_has_auditor_keys_and_summary_line():
    res = pw("flows", str(SAMPLE), "--topology", str(PARK), "--vantage", "park-gw")
    assert res.returncode == 0, res.stderr
    flows = lines(res.stdout)
    assert len(flows) == 35
    assert all(set(f) >= AUDITOR_KEYS for f in flows)
    assert {f["vantage"] for f in flows} == {"park-gw"}
    modbus = [f for f in flows if f["dst_port"] == 502 and f["src_ip"] == "10.1.2.20"]
    assert len(modbus) == 2
    assert modbus[0]["src_role"] == "hmi" and modbus[0]["dst_role"] == "plc"
    assert modbus[0]["src_zone"] == "ent-a-ot" and modbus[0]["dst_enterprise"] == "ent-a"
    summary = res.stderr.decode().strip().splitlines()[-1]
    assert summary.startswith("parkwatch flows: 842 packets (840 ip, 2 arp, 0 other), 35 flows,")
    assert "0 weird" in summary and "packets/s" in summary


def test_golden_sample_park():
    """pcap in, JSON out: any change to a flow field shows up here (regenerate knowingly)."""
    res = pw("flows", str(SAMPLE), "--topology", str(PARK), "--vantage", "park-gw")
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode() == GOLDEN.read_text()


def test_stdin_and_gzip_give_the_same_flows(tmp_path):
    plain = pw("flows", str(SAMPLE))
    piped = pw("flows", "-", stdin=SAMPLE.read_bytes())
    gz = tmp_path / "s.pcap.gz"
    gz.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    zipped = pw("flows", str(gz))
    assert plain.returncode == piped.returncode == zipped.returncode == 0
    assert plain.stdout == piped.stdout == zipped.stdout
    assert len(plain.stdout.splitlines()) == 35


def test_out_table_and_events_files(tmp_path):
    out, ev = tmp_path / "flows.txt", tmp_path / "events.jsonl"
    res = pw("flows", str(SAMPLE), "--format", "table", "--out", str(out), "--events", str(ev))
    assert res.returncode == 0, res.stderr
    table = out.read_text().splitlines()
    assert table[0].split()[:4] == ["start", "duration", "proto", "src"]
    assert len(table) == 36
    events = lines(ev.read_bytes())
    assert [(e["schema"], e["op"]) for e in events] == [
        ("parkwatch.arp/1", "who-has"),
        ("parkwatch.arp/1", "is-at"),
    ]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["flows", "/nonexistent.pcap"], "/nonexistent.pcap: no such capture file"),
        (["flows", str(PARK)], "not a pcap or pcapng file"),
        (
            ["flows", str(SAMPLE), "--topology", str(PARK), "--vantage", "nope"],
            "unknown vantage point 'nope': expected one of park-gw, ent-a-fw, ent-b-fw",
        ),
        (["flows", str(SAMPLE), "--topology", "/nonexistent.yaml"], "/nonexistent.yaml"),
    ],
)
def test_errors_are_one_line_with_what_to_do(args, needle):
    res = pw(*args)
    assert res.returncode == 2
    err = res.stderr.decode().strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("parkwatch: error: ")
    assert needle in err
    assert "(" in err and err.endswith(")")  # the hint


def test_a_broken_second_capture_fails_before_any_output(tmp_path):
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture")
    res = pw("flows", str(SAMPLE), str(junk))
    assert res.returncode == 2
    assert res.stdout == b""
    assert f"{junk}: not a pcap or pcapng file" in res.stderr.decode()


def test_broken_topology_names_file_line_and_field(tmp_path):
    bad = tmp_path / "park.yaml"
    bad.write_text("park: p\nenterprises:\n  - id: a\n    name: A\n    cidrs: [10.1.300.0/16]\n")
    res = pw("flows", str(SAMPLE), "--topology", str(bad))
    assert res.returncode == 2
    assert f"{bad}:5, field 'enterprises[0].cidrs[0]'" in res.stderr.decode()


def test_settings_layers_defaults_file_env_cli(tmp_path, monkeypatch):
    cfg = tmp_path / "pw.yaml"
    cfg.write_text("vantage: from-file\nflows:\n  tcp_idle: 10\n  udp_idle: 20\n")
    monkeypatch.delenv("PARKWATCH_CONFIG", raising=False)
    assert load_settings(None).flows.tcp_idle == 300
    s = load_settings(cfg)
    assert (s.vantage, s.flows.tcp_idle, s.flows.udp_idle) == ("from-file", 10, 20)
    monkeypatch.setenv("PARKWATCH_FLOWS__TCP_IDLE", "30")
    monkeypatch.setenv("PARKWATCH_VANTAGE", "from-env")
    s = load_settings(cfg)
    assert (s.vantage, s.flows.tcp_idle, s.flows.udp_idle) == ("from-env", 30, 20)
    s = load_settings(cfg, vantage="from-cli", flows={"tcp_idle": 40})
    assert (s.vantage, s.flows.tcp_idle, s.flows.udp_idle) == ("from-cli", 40, 20)


def test_settings_errors_name_the_field(tmp_path, monkeypatch):
    cfg = tmp_path / "pw.yaml"
    cfg.write_text("flows:\n  tcp_idel: 10\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert err.value.field == "flows.tcp_idel" and err.value.file == str(cfg)
    cfg.write_text("flows: [\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert err.value.line is not None
    monkeypatch.setenv("PARKWATCH_FLOWS__MAX_FLOWS", "lots")
    res = pw("flows", str(SAMPLE), env={"PARKWATCH_FLOWS__MAX_FLOWS": "lots"})
    assert res.returncode == 2
    assert "field 'flows.max_flows'" in res.stderr.decode()
