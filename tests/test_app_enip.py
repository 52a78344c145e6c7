"""EtherNet/IP + CIP decoder: crafted messages, and golden comparison with tshark 4.0.

Golden: per capture, (frame time, src ip, dst ip, CIP service) of every CIP event (embedded
Unconnected Send and Multiple Service Packet services included, in order) equals tshark's
``cip.sc`` list, and (…, encapsulation command) of every non-embedded event equals
``enip.command``. The ListIdentity identity in ``enip_test1.pcap`` equals ``enip.lir.*``.
No differences from tshark were found on these captures.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from collectors.apps.base import DecodeError
from collectors.apps.enip import EnipDecoder
from replay_pcaps.scenarios.enip import encap, identity_item, path, send_rr

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "pcaps"
TSHARK = shutil.which("tshark")


def cip_reply(service: int, status: int = 0, data: bytes = b"", ext: bytes = b"") -> bytes:
    return bytes([service | 0x80, 0, status, len(ext) // 2]) + ext + data


def symbol(name: bytes) -> bytes:
    seg = bytes([0x91, len(name)]) + name + (b"\x00" if len(name) & 1 else b"")
    return bytes([len(seg) // 2]) + seg


def unconnected_send(embedded: bytes) -> bytes:
    body = b"\x0a\xf0" + struct.pack("<H", len(embedded)) + embedded
    body += b"\x00" if len(embedded) & 1 else b""
    return b"\x52" + path(0x06, 1) + body + b"\x01\x00\x01\x00"  # route: port 1, slot 0


def multiple(services: list[bytes], reply: bool = False) -> bytes:
    offs, at = [], 2 + 2 * len(services)
    for s in services:
        offs.append(at)
        at += len(s)
    body = struct.pack(f"<H{len(services)}H", len(services), *offs) + b"".join(services)
    return (cip_reply(0x0A) + body) if reply else (b"\x0a" + path(0x02, 1) + body)


# -- crafted bytes --------------------------------------------------------------------------------
def test_several_messages_and_split() -> None:
    d = EnipDecoder()
    reg = encap(0x65, struct.pack("<HH", 1, 0))
    get = send_rr(0x11, 7, b"\x0e" + path(0x01, 1, 5))
    buf = reg + get
    for cut in (1, 23, 24, len(reg) + 10, len(buf) - 1):
        used, msgs = d.parse(buf[:cut], True)
        assert used == (len(reg) if cut >= len(reg) else 0)
    used, msgs = d.parse(buf, True)
    assert used == len(buf)
    assert [(m.function_code, m.function_name) for m in msgs] == [
        (None, "register_session"),
        (0x0E, "get_attribute_single"),
    ]
    assert msgs[0].attrs["protocol_version"] == 1
    get_msg = msgs[1]
    assert get_msg.data_area == "class 0x01, instance 1, attribute 5"
    assert get_msg.attrs["class_name"] == "identity" and get_msg.attrs["session"] == 0x11
    _, [rsp] = d.parse(send_rr(0x11, 7, cip_reply(0x0E, data=b"\x60\x00")), False)
    assert (rsp.direction, rsp.function_code, rsp.match) == ("response", 0x0E, get_msg.match)
    assert rsp.exception_code is None and rsp.attrs["data_len"] == 2


def test_unconnected_send_embeds_request() -> None:
    d = EnipDecoder()
    inner = b"\x4c" + symbol(b"Motor_Speed") + b"\x01\x00"
    _, msgs = d.parse(send_rr(1, 42, unconnected_send(inner)), True)
    outer, tag = msgs
    assert (outer.function_name, outer.link, outer.attrs["route"]) == (
        "unconnected_send",
        False,
        [[1, 0]],
    )
    assert (tag.function_code, tag.function_name, tag.data_area) == (
        0x4C,
        "read_tag",
        "symbol Motor_Speed",
    )
    assert tag.attrs["embedded"] and tag.attrs["via"] == "unconnected_send"
    _, [rsp] = d.parse(send_rr(1, 42, cip_reply(0x4C, data=b"\xc4\x00\x10\x00\x00\x00")), False)
    assert (rsp.function_name, rsp.match) == ("read_tag", tag.match)


def test_multiple_service_packet_and_errors() -> None:
    d = EnipDecoder()
    services = [
        b"\x03" + path(0x01, 1) + b"\x01\x00\x05\x00",
        b"\x10" + path(0x04, 0x96, 3) + b"\xff",
    ]
    _, msgs = d.parse(send_rr(1, 9, multiple(services)), True)
    assert [(m.function_code, m.attrs.get("embedded", False)) for m in msgs] == [
        (0x0A, False), (0x03, True), (0x10, True),
    ]  # fmt: skip
    assert (
        msgs[2].values == ("ff",) and msgs[2].data_area == "class 0x04, instance 150, attribute 3"
    )
    replies = [cip_reply(0x03, data=b"\x00\x00"), cip_reply(0x10, status=0x0E)]
    _, rsp = d.parse(send_rr(1, 9, multiple(replies, reply=True)), False)
    assert [(m.function_code, m.exception_code) for m in rsp] == [
        (0x0A, None),
        (0x03, None),
        (0x10, 0x0E),
    ]
    assert [m.match for m in rsp] == [m.match for m in msgs]
    assert rsp[2].attrs["status_name"] == "attribute_not_settable"
    ext = struct.pack("<H", 0x0107)
    _, [bad] = d.parse(send_rr(1, 10, cip_reply(0x33, status=0x08, ext=ext)), False)
    assert (bad.function_name, bad.exception_code, bad.attrs["extended_status"]) == (
        "unknown-51",
        8,
        [0x0107],
    )


def test_list_identity_and_bad_command() -> None:
    d = EnipDecoder()
    _, [m] = d.parse(encap(0x63, identity_item("10.1.2.11")), False)
    assert (m.function_name, m.direction) == ("list_identity", "response")
    assert m.attrs["product_name"] == "1756-L83E/B" and m.attrs["vendor_id"] == 1
    assert m.attrs["device_ip"] == "10.1.2.11" and m.attrs["revision"] == "32.11"
    with pytest.raises(DecodeError) as exc:
        d.parse(encap(0x0099, b""), True)
    assert exc.value.reason == "unknown_command"
    _, [err] = d.parse(struct.pack("<HHII8sI", 0x6F, 0, 1, 0x64, b"\x00" * 8, 0), False)
    assert err.exception_code == 0x64 and err.attrs["encap_status_name"] == "invalid_session_handle"


def test_udp_list_identity_and_io() -> None:
    d = EnipDecoder()
    [req] = d.datagram(encap(0x63, b""), True)
    assert req.function_name == "list_identity" and req.direction == "request"
    io = struct.pack("<HHHII HH", 2, 0x8002, 8, 0x1234, 77, 0x00B1, 6) + b"\x01\x00abcd"
    [ev] = EnipDecoder().datagram(io, True)
    assert (ev.function_name, ev.link, ev.attrs["connection_id"], ev.attrs["sequence"]) == (
        "io_data",
        False,
        0x1234,
        77,
    )
    with pytest.raises(DecodeError):
        d.datagram(encap(0x63, b"") + b"\x00", True)


def test_probe_and_fuzz() -> None:
    assert EnipDecoder.probe(encap(0x65, struct.pack("<HH", 1, 0)), True)
    assert EnipDecoder.probe(encap(0x63, b""), True)
    assert not EnipDecoder.probe(b"\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x0a" * 3, True)
    assert not EnipDecoder.probe(b"GET /index.html HTTP/1.1\r\nHost: plc\r\n\r\n", True)
    rng = random.Random(44818)
    assert not any(
        EnipDecoder.probe(rng.randbytes(rng.randint(24, 80)), True) for _ in range(20000)
    )
    seeds = [
        send_rr(1, 2, unconnected_send(b"\x4c" + symbol(b"T") + b"\x01\x00")),
        send_rr(1, 3, multiple([b"\x0e" + path(1, 1, 1)])),
        encap(0x63, identity_item("10.0.0.1")),
    ]
    for _ in range(5000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(24, len(data))] = rng.randrange(256)
        with contextlib.suppress(DecodeError):
            EnipDecoder().parse(bytes(data), rng.random() < 0.5)


# -- golden against tshark ------------------------------------------------------------------------
def _ns(epoch: str) -> int:
    sec, _, frac = epoch.partition(".")
    return int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])


def _tshark(path: Path, *fields: str) -> list[list[str]]:
    assert TSHARK
    args = [a for f in fields for a in ("-e", f)]
    out = subprocess.run(
        [TSHARK, "-r", str(path), "-Y", "enip", "-T", "fields", "-E", "occurrence=a",
         "-e", "frame.time_epoch", "-e", "ip.src", "-e", "ip.dst", *args],
        capture_output=True, text=True, check=True, env={**os.environ, "LC_ALL": "C"},
    ).stdout  # fmt: skip
    return [line.split("\t") for line in out.splitlines()]


def _expand(rows: list[list[str]], col: int) -> list[tuple[int, str, str, int]]:
    return [(_ns(r[0]), r[1], r[2], int(v, 0)) for r in rows if r[col] for v in r[col].split(",")]


def _captures() -> list[Path]:
    shared = sorted((SHARED / "iti_ics_security_tools" / "quickdraw").glob("CL5000EIP-*.pcap"))
    shared += sorted((SHARED / "suricata_verify" / "enip-alert").glob("*.pcap"))
    return shared + sorted((ROOT / "replay_pcaps").glob("enip_*.pcap"))


@pytest.mark.tshark
@pytest.mark.shared
@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize("path", _captures(), ids=lambda p: p.name)
def test_golden_against_tshark(path: Path) -> None:
    from collectors.apps.engine import decode_capture

    res = decode_capture(path, protocols={"enip"})
    assert res.weirds == []
    events = [e for e in res.events if e.protocol == "enip"]
    rows = _tshark(path, "cip.sc", "enip.command")
    ours = [
        (e.ts, e.src_ip, e.dst_ip, e.function_code) for e in events if e.function_code is not None
    ]
    assert ours == _expand(rows, 3)
    cmds = [
        (e.ts, e.src_ip, e.dst_ip, e.attrs["command"])
        for e in events
        if not e.attrs.get("embedded")
    ]
    assert cmds == _expand(rows, 4)
    responses = [e for e in events if e.direction == "response" and e.function_code is not None]
    assert sum(e.request_uid is not None for e in responses) >= 0.9 * len(responses)


@pytest.mark.tshark
@pytest.mark.shared
@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_list_identity_matches_tshark() -> None:
    from collectors.apps.engine import decode_capture

    cap = SHARED / "suricata_verify" / "enip-alert" / "enip_test1.pcap"
    if not cap.exists():
        pytest.skip("shared captures absent")
    res = decode_capture(cap, protocols={"enip"})
    replies = [e for e in res.events if "product_name" in e.attrs]
    rows = [r for r in _tshark(cap, "enip.lir.name", "enip.lir.vendor", "enip.lir.serial") if r[3]]
    assert [
        (e.attrs["product_name"], e.attrs["vendor_id"], e.attrs["serial"]) for e in replies
    ] == [(r[3], int(r[4], 0), int(r[5], 0)) for r in rows]


def test_scenario_attacks_decoded() -> None:
    from collectors.apps.engine import decode_capture
    from replay_pcaps.scenarios import enip as scen

    res = decode_capture(ROOT / "replay_pcaps" / "enip_cip_attacks.pcap", protocols={"enip"})
    rogue = [e for e in res.events if e.src_ip == scen.ATTACKER and e.function_code is not None]
    sets = [e for e in rogue if e.function_code == scen.SET_SINGLE]
    assert [e.values for e in sets] == [(bytes([0xFF] * 7 + [k]).hex(),) for k in range(3)]
    assert {e.data_area for e in sets} == {"class 0x04, instance 150, attribute 3"}
    [reset] = [e for e in rogue if e.function_code == scen.RESET]
    assert reset.function_name == "reset" and reset.data_area == "class 0x01, instance 1"
    sweep = [
        e for e in res.events if e.function_name == "list_identity" and e.direction == "request"
    ]
    assert len({e.dst_ip for e in sweep}) == 30
