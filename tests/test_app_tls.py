"""TLS decoder: crafted records, then golden comparison with tshark 4.0.

Golden: per frame (time, src, dst) the handshake types equal tshark's ``tls.handshake.type``
(all occurrences: several messages in one frame are compared as a list); for ClientHellos the
SNI, ``tls.handshake.ja3_full`` and ``tls.handshake.ja3`` equal ours, for ServerHellos
``tls.handshake.ja3s_full``. No differences are known on these captures.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import shutil
from pathlib import Path

import pytest

from collectors.apps.base import DecodeError
from collectors.apps.tls import Tls
from tests import helpers

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "pcaps"
TSHARK = shutil.which("tshark")


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def ext(kind: int, body: bytes) -> bytes:
    return u16(kind) + u16(len(body)) + body


def record(ctype: int, body: bytes, version: int = 0x0303) -> bytes:
    return bytes([ctype]) + u16(version) + u16(len(body)) + body


def hs(htype: int, body: bytes) -> bytes:
    return bytes([htype]) + len(body).to_bytes(3, "big") + body


EXTS = (
    ext(0x1A1A, b"")  # GREASE
    + ext(0, u16(13) + b"\x00" + u16(10) + b"example.io")
    + ext(10, u16(6) + u16(0x2A2A) + u16(29) + u16(23))
    + ext(11, b"\x01\x00")
    + ext(16, u16(12) + b"\x02h2\x08http/1.1")
    + ext(43, b"\x06" + u16(0x3A3A) + u16(0x0304) + u16(0x0303))
)
CIPHERS = u16(0x0A0A) + u16(0x1301) + u16(0xC02F)  # the first is GREASE
CH_BODY = u16(0x0303) + bytes(32) + b"\x00" + u16(6) + CIPHERS + b"\x01\x00" + u16(len(EXTS)) + EXTS
CH = hs(1, CH_BODY)
JA3 = "771,4865-49199,0-10-11-16-43,29-23,0"
SH_HEAD = u16(0x0303) + bytes(32) + b"\x00"
SH12 = hs(2, SH_HEAD + u16(0xC02F) + b"\x00" + u16(5) + ext(0xFF01, b"\x00"))
SH13 = hs(2, SH_HEAD + u16(0x1301) + b"\x00" + u16(6) + ext(43, u16(0x0304)))


def test_client_hello_ja3_and_attrs():
    data = record(22, CH, 0x0301)
    used, msgs = Tls().parse(data, True)
    assert used == len(data) and len(msgs) == 1
    m = msgs[0]
    assert (m.direction, m.function_code, m.function_name) == ("request", 1, "client_hello")
    a = m.attrs
    assert a["sni"] == "example.io" and a["alpn"] == ["h2", "http/1.1"]
    assert a["tls_version"] == "TLS 1.3" and a["legacy_version"] == "TLS 1.2"
    assert a["supported_versions"] == ["TLS 1.3", "TLS 1.2"] and a["cipher_suites"] == 3
    assert a["ja3"] == JA3 and a["ja3_hash"] == hashlib.md5(JA3.encode()).hexdigest()


def test_several_messages_per_record_and_spanning_records():
    cert = hs(11, bytes(3000))
    flight = SH12 + cert + hs(14, b"")
    data = record(22, flight[:1000]) + record(22, flight[1000:])
    dec = Tls()
    dec.parse(record(22, CH), True)
    used, msgs = dec.parse(data[:700], False)  # record split across segments
    assert (used, msgs) == (0, [])
    used, msgs = dec.parse(data, False)
    assert used == len(data)
    assert [m.function_name for m in msgs] == ["server_hello", "certificate", "server_hello_done"]
    assert [m.link for m in msgs] == [True, False, False]
    sh = msgs[0].attrs
    assert sh["cipher"] == 0xC02F and sh["tls_version"] == "TLS 1.2"
    assert sh["ja3s"] == "771,49199,65281"
    # after ChangeCipherSpec the Finished handshake record is encrypted: not decoded
    used, msgs = dec.parse(record(20, b"\x01") + record(22, b"\x14\x00\x00\x0c" + bytes(40)), True)
    assert msgs == []


def test_tls13_server_flight_is_encrypted_after_server_hello():
    dec = Tls()
    _used, msgs = dec.parse(record(22, SH13 + hs(8, b"\x00\x00")), False)
    assert [m.function_name for m in msgs] == ["server_hello"]
    assert msgs[0].attrs["tls_version"] == "TLS 1.3"


def test_alert_heartbeat_unknown_and_errors():
    dec = Tls()
    _, msgs = dec.parse(record(21, b"\x02\x28") + record(22, hs(99, b"ab")), False)
    assert (msgs[0].function_name, msgs[0].exception_code) == ("alert", 40)
    assert msgs[0].attrs["alert"] == "handshake_failure"
    assert (msgs[1].function_code, msgs[1].function_name) == (99, "unknown-99")
    _used, msgs = Tls().parse(record(24, b"\x01\x40\x00" + b"A"), True)  # Heartbleed shape
    assert msgs[0].function_name == "heartbeat" and msgs[0].attrs["heartbeat_overlong"]
    for bad in (b"\x17\x09\x09\x00\x01x", b"\x63\x03\x03\x00\x01x", b"\x17\x03\x03\xff\xffx"):
        with pytest.raises(DecodeError):
            Tls().parse(bad, True)
    m = Tls().parse(record(22, hs(1, CH_BODY[:50])), True)[1][0]
    assert m.attrs["malformed"] == "truncated_hello"


def test_probe():
    assert Tls.probe(record(22, CH, 0x0301), True) and Tls.probe(record(22, SH12), False)
    assert not Tls.probe(record(23, bytes(40)), True)
    assert not Tls.probe(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", True)
    assert not Tls.probe(b"SSH-2.0-OpenSSH_9.2\r\n", True)
    rng = random.Random(443)
    assert not any(Tls.probe(rng.randbytes(80), True) for _ in range(5000))


def test_fuzz_only_decode_errors():
    rng = random.Random(8443)
    seeds = [record(22, CH), record(22, SH12 + hs(14, b"")), record(21, b"\x01\x00")]
    for _ in range(3000):
        b = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        with contextlib.suppress(DecodeError):
            Tls().parse(bytes(b[: rng.randint(0, len(b))]), rng.random() < 0.5)


# -- golden ----------------------------------------------------------------------------------


def tshark_rows(path: Path, display: str, *fields: str) -> list[tuple]:
    return helpers.tshark_rows(path, display, *fields)


CAPTURES = [
    ROOT / "replay_pcaps" / "it_tls_browsing.pcap",
    ROOT / "replay_pcaps" / "it_tls_beacon.pcap",
    SHARED / "stratosphere_slips" / "test-cc" / "test-cc-capture-1.pcap",
    SHARED / "stratosphere_slips" / "test-cc" / "test-cc-capture-2.pcap",
]


@pytest.mark.tshark
@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_golden_tshark(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} absent")
    from collectors.apps.engine import decode_capture

    res = decode_capture(path, protocols={"tls"})
    hello = [e for e in res.events if e.function_code is not None]
    assert hello and not res.weirds
    frames: dict[tuple, list[str]] = {}
    for e in hello:
        frames.setdefault((round(e.ts / 1e9, 6), e.src_ip, e.dst_ip), []).append(
            str(e.function_code)
        )
    got = [(*k, "|".join(v)) for k, v in frames.items()]
    assert got == tshark_rows(path, "tls.handshake.type", "tls.handshake.type")
    fields = ("tls.handshake.extensions_server_name", "tls.handshake.ja3_full", "tls.handshake.ja3")
    want = tshark_rows(path, "tls.handshake.type==1", *fields)
    got = [
        (round(e.ts / 1e9, 6), e.src_ip, e.dst_ip, e.attrs.get("sni", ""), e.attrs["ja3"],
         e.attrs["ja3_hash"])
        for e in hello if e.function_code == 1
    ]  # fmt: skip
    assert got == want
    want = tshark_rows(path, "tls.handshake.type==2", "tls.handshake.ja3s_full")
    got = [
        (round(e.ts / 1e9, 6), e.src_ip, e.dst_ip, e.attrs["ja3s"])
        for e in hello
        if e.function_code == 2
    ]
    assert got == want
    flows = {f.community_id: f for f in res.flows}
    for e in hello:
        if e.function_code == 1:
            assert flows[e.community_id].sni == e.attrs.get("sni")
        else:
            assert e.request_uid is not None
