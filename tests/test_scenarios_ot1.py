"""OT protocol scenario captures (Modbus/TCP, DNP3, IEC 104) against tshark's dissectors.

For every capture of ``replay_pcaps.scenarios.{modbus,dnp3,iec104}``: the frames tshark
dissects as the protocol, their IP sources and their function codes / type ids / exception
codes / IIN are exactly the PDUs the generator recorded while building the capture
(``Capture.marks``), and tshark reports no malformed packet and no expert error (bad DNP3 CRCs
are expert errors). The committed capture is read, so this also checks what is shipped.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from replay_pcaps.scenarios import dnp3, iec104, modbus

pytestmark = pytest.mark.tshark

TSHARK = shutil.which("tshark")
ROOT = Path(__file__).resolve().parents[1] / "replay_pcaps"
PROTOCOLS: dict[str, tuple[str, tuple[str, ...], dict[str, Callable[[], Any]]]] = {
    "modbus": ("mbtcp", modbus.FIELDS, dict(modbus.CAPTURES)),
    "dnp3": ("dnp3", dnp3.FIELDS, dict(dnp3.CAPTURES)),
    "iec104": ("iec60870_104", iec104.FIELDS, dict(iec104.CAPTURES)),
}
CASES = [(proto, name) for proto, (_f, _x, caps) in PROTOCOLS.items() for name in caps]

needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")


def tshark(path: Path, *args: str) -> list[str]:
    assert TSHARK is not None
    proc = subprocess.run(
        [TSHARK, "-n", "-r", str(path), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return proc.stdout.splitlines()


def normalise(value: str) -> str:
    """tshark prints some integer fields in hex (``0x00000003``): compare them as decimals."""
    return str(int(value, 0)) if value else ""


@needs_tshark
@pytest.mark.parametrize(("proto", "name"), CASES)
def test_tshark_dissects_what_the_generator_intended(proto: str, name: str) -> None:
    layer, fields, captures = PROTOCOLS[proto]
    cap = captures[name]()
    expected = cap.expected()
    assert expected, name
    rows = tshark(
        ROOT / name,
        "-Y",
        layer,
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-e",
        "frame.number",
        "-e",
        "ip.src",
        *[a for f in fields for a in ("-e", f)],
    )
    got = []
    for row in rows:
        frame, src, *values = row.split("\t")
        assert "," not in "".join(values), f"{name} frame {frame}: one PDU per frame: {row}"
        got.append((int(frame), src, tuple(normalise(v) for v in values)))
    assert got == expected


@needs_tshark
@pytest.mark.parametrize(("proto", "name"), CASES)
def test_no_malformed_packet_or_expert_error(proto: str, name: str) -> None:
    bad = tshark(ROOT / name, "-Y", "_ws.malformed || _ws.expert.severity == error")
    assert bad == []


@needs_tshark
def test_attack_pdus_come_from_the_labelled_attackers() -> None:
    """The scenarios' attack traffic (function codes the HMI never sends) is the attackers'."""
    hmi_fcs = {"1", "3"}
    for name, build in modbus.CAPTURES.items():
        cap = build()
        attackers = {ip for a in cap.labels["attacks"] for ip in a["attackers"]}
        clients = {src for _n, src, f in cap.expected() if src not in (modbus.PLC1, modbus.PLC2)}
        odd = {src for _n, src, f in cap.expected() if f[1] not in hmi_fcs or f[0] != "1"}
        assert odd <= attackers | {modbus.PLC1, modbus.PLC2}, name
        assert clients == {modbus.HMI} | attackers, name
