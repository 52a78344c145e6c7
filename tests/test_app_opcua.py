"""OPC UA binary decoder: crafted chunks, and golden comparison with tshark 4.0.

Golden: for ``replay_pcaps/opcua_*.pcap`` the sequence of (frame time, src ip, dst ip,
message type) equals tshark's ``opcua.transport.type``, and (…, service id) of every decoded
service equals ``opcua.servicenodeid.numeric``; the OPN security policy equals
``opcua.security.spu``. No differences from tshark were found on this capture (the shared
set holds no OPC UA capture).
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
from collectors.apps.opcua import POLICY_NONE, OpcuaDecoder
from replay_pcaps.scenarios.opcua import (
    i32,
    nodeid,
    request_header,
    response_header,
    string,
    string_nodeid,
    u32,
    with_size,
)

ROOT = Path(__file__).resolve().parents[1]
TSHARK = shutil.which("tshark")
REPLAY = sorted((ROOT / "replay_pcaps").glob("opcua_*.pcap"))
T = 1_763_830_000.0


def msg(service: int, body: bytes, req_id: int, chunk: bytes = b"F", kind: bytes = b"MSG") -> bytes:
    inner = u32(5) + u32(1) + u32(100 + req_id) + u32(req_id) + nodeid(service) + body
    return kind + chunk + u32(len(inner) + 8) + inner


def request(service: int, params: bytes, req_id: int) -> bytes:
    return msg(service, request_header(T, req_id) + params, req_id)


def response(service: int, params: bytes, req_id: int, status: int = 0) -> bytes:
    head = response_header(T, req_id)
    head = head[:12] + u32(status) + head[16:]
    return msg(service, head + params, req_id)


def hello() -> bytes:
    return with_size(b"HEL", u32(0) + u32(65536) * 2 + u32(0) * 2 + string(b"opc.tcp://plc:4840"))


def opn(policy: str, mode: int) -> bytes:
    sec = u32(0) + string(policy.encode()) + string(None) + string(None) + u32(1) + u32(1)
    body = (
        nodeid(446) + request_header(T, 1) + u32(0) + u32(0) + u32(mode) + string(b"") + u32(60000)
    )
    return with_size(b"OPN", sec + body)


def username_activate(user: bytes) -> bytes:
    token_body = string(b"user-policy") + string(user) + string(b"\x01\x02") + string(None)
    token = nodeid(324) + b"\x01" + i32(len(token_body)) + token_body
    return string(None) * 2 + i32(0) + i32(0) + token + string(None) * 2


# -- crafted bytes --------------------------------------------------------------------------------
def test_hello_opn_and_several_messages_in_one_buffer() -> None:
    d = OpcuaDecoder()
    buf = hello() + opn(POLICY_NONE, 1) + request(631, b"", 2)
    used, msgs = d.parse(buf, True)
    assert used == len(buf)
    assert [(m.function_code, m.function_name) for m in msgs] == [
        (None, "HEL"), (446, "OpenSecureChannelRequest"), (631, "ReadRequest"),
    ]  # fmt: skip
    assert msgs[0].attrs["endpoint_url"] == "opc.tcp://plc:4840"
    assert msgs[1].attrs["security_policy"] == POLICY_NONE
    assert msgs[1].attrs["security_mode"] == "None" and msgs[1].attrs["request_type"] == "issue"
    _, [signed] = OpcuaDecoder().parse(opn(POLICY_NONE, 3), True)
    assert signed.attrs["security_mode"] == "SignAndEncrypt"


def test_split_message_left_unconsumed() -> None:
    d = OpcuaDecoder()
    m = request(631, struct.pack("<d", 0) + u32(2) + i32(0), 3)
    for cut in (1, 7, 8, len(m) - 1):
        assert d.parse(m[:cut], True) == (0, [])
    used, [ev] = d.parse(m + m[:9], True)
    assert used == len(m) and ev.match == 3 and ev.quantity == 0


def test_read_write_browse_details_and_faults() -> None:
    d = OpcuaDecoder()
    nodes = [string_nodeid(3, b"FurnaceTemp"), nodeid(2258)]
    read = struct.pack("<d", 0) + u32(2) + i32(2)
    for n in nodes:
        read += n + u32(13) + string(None) + struct.pack("<H", 0) + string(None)
    _, [r] = d.parse(request(631, read, 4), True)
    assert (r.quantity, r.data_area, r.attrs["nodes"]) == (
        2,
        "ns=3;s=FurnaceTemp",
        ["ns=3;s=FurnaceTemp", "i=2258"],
    )
    write = i32(1) + nodes[0] + u32(13) + string(None) + b"\x01\x0b" + struct.pack("<d", 1500.0)
    _, [w] = d.parse(request(673, write, 5), True)
    assert (w.function_name, w.values, w.direction) == ("WriteRequest", (1500.0,), "request")
    _, [wr] = d.parse(response(676, i32(1) + u32(0x801F0000) + i32(0), 5), False)
    assert wr.exception_code == 0x801F0000 and wr.match == w.match
    _, [fault] = d.parse(response(397, b"", 6, status=0x80340000), False)
    assert (fault.direction, fault.exception_code) == ("response", 0x80340000)
    _, [ok] = d.parse(response(634, i32(0) + i32(0), 4), False)
    assert ok.exception_code is None and ok.attrs["status"] == 0


def test_activate_session_identity() -> None:
    d = OpcuaDecoder()
    _, [a] = d.parse(request(467, username_activate(b"operator"), 7), True)
    assert a.attrs["identity_token"] == "username" and a.attrs["user_name"] == "operator"
    anon = string(None) * 2 + i32(0) + i32(0) + nodeid(321) + b"\x01" + i32(4) + string(b"")
    _, [b] = d.parse(request(467, anon + string(None) * 2, 8), True)
    assert b.attrs["identity_token"] == "anonymous" and "user_name" not in b.attrs


def test_encrypted_chunked_unknown_and_errors() -> None:
    d = OpcuaDecoder()
    _, [enc] = d.parse(opn("http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256", 3), True)
    assert enc.function_code is None and enc.attrs["encrypted"] is True
    garbage = (
        b"MSGF" + u32(8 + 16 + 32) + u32(5) + u32(1) + u32(9) + u32(9) + bytes(range(200, 232))
    )
    _, [g] = d.parse(garbage, True)
    assert g.function_code is None and g.attrs["encrypted"] is True
    first = msg(631, request_header(T, 10)[:10], 10, chunk=b"C")
    rest = b"MSGF" + u32(8 + 16 + 4) + u32(5) + u32(1) + u32(111) + u32(10) + b"\x00\x00\x00\x00"
    used, msgs = d.parse(first + rest, True)
    assert used == len(first + rest) and [(m.function_code, m.attrs["chunks"]) for m in msgs] == [
        (631, 2)
    ]
    assert OpcuaDecoder.fname(9999) == "unknown-9999"
    err = with_size(b"ERR", u32(0x80820000) + string(b"too many sessions"))
    _, [e] = d.parse(err, False)
    assert e.exception_code == 0x80820000 and e.attrs["reason"] == "too many sessions"
    with pytest.raises(DecodeError) as exc:
        d.parse(b"XYZF\x10\x00\x00\x00" + bytes(8), True)
    assert exc.value.reason == "bad_message_header"


def test_probe_and_fuzz() -> None:
    assert OpcuaDecoder.probe(hello(), True)
    assert OpcuaDecoder.probe(opn(POLICY_NONE, 1), True)
    assert not OpcuaDecoder.probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True)
    assert not OpcuaDecoder.probe(b"\x68\x04\x07\x00\x00\x00", True)
    rng = random.Random(4840)
    assert not any(
        OpcuaDecoder.probe(rng.randbytes(rng.randint(8, 64)), True) for _ in range(20000)
    )
    seeds = [opn(POLICY_NONE, 1), request(467, username_activate(b"u"), 2), hello()]
    for _ in range(5000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(8, len(data))] = rng.randrange(256)
        with contextlib.suppress(DecodeError):
            OpcuaDecoder().parse(bytes(data), rng.random() < 0.5)


# -- golden against tshark ------------------------------------------------------------------------
def _ns(epoch: str) -> int:
    sec, _, frac = epoch.partition(".")
    return int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])


@pytest.mark.tshark
@pytest.mark.skipif(TSHARK is None or not REPLAY, reason="tshark or captures absent")
@pytest.mark.parametrize("path", REPLAY, ids=lambda p: p.name)
def test_golden_against_tshark(path: Path) -> None:
    from collectors.apps.engine import decode_capture

    assert TSHARK
    out = subprocess.run(
        [TSHARK, "-r", str(path), "-Y", "opcua", "-T", "fields", "-E", "occurrence=a",
         "-e", "frame.time_epoch", "-e", "ip.src", "-e", "ip.dst", "-e", "opcua.transport.type",
         "-e", "opcua.servicenodeid.numeric", "-e", "opcua.security.spu"],
        capture_output=True, text=True, check=True, env={**os.environ, "LC_ALL": "C"},
    ).stdout  # fmt: skip
    rows = [line.split("\t") for line in out.splitlines()]
    res = decode_capture(path, protocols={"opcua"})
    assert res.weirds == []
    ev = [e for e in res.events if e.protocol == "opcua"]
    assert [(e.ts, e.src_ip, e.dst_ip, e.attrs["message_type"]) for e in ev] == [
        (_ns(r[0]), r[1], r[2], t) for r in rows for t in r[3].split(",")
    ]
    assert [(e.ts, e.function_code) for e in ev if e.function_code is not None] == [
        (_ns(r[0]), int(v)) for r in rows if r[4] for v in r[4].split(",")
    ]
    assert [e.attrs["security_policy"] for e in ev if "security_policy" in e.attrs] == [
        r[5] for r in rows if r[5]
    ]
    responses = [e for e in ev if e.direction == "response"]
    assert responses and all(e.request_uid is not None for e in responses)


def test_scenario_rogue_session_decoded() -> None:
    from collectors.apps.engine import decode_capture
    from replay_pcaps.scenarios import opcua as scen

    res = decode_capture(
        ROOT / "replay_pcaps" / "opcua_unsecured_session.pcap", protocols={"opcua"}
    )
    rogue = [e for e in res.events if e.src_ip == scen.ROGUE]
    [activate] = [e for e in rogue if e.function_code == scen.ACTIVATE_REQ]
    assert activate.attrs["identity_token"] == "anonymous"
    [opn_req] = [e for e in rogue if e.function_code == scen.OPN_REQ]
    assert opn_req.attrs["security_mode"] == "None"
    [browse] = [e for e in rogue if e.function_code == scen.BROWSE_REQ]
    assert browse.data_area == "i=85"
    [read] = [e for e in rogue if e.function_code == scen.READ_REQ]
    assert read.quantity == len(scen.TAGS) and read.attrs["nodes"] == [
        f"ns=3;s={t}" for t in scen.TAGS
    ]
