"""Fast/per-packet rounds within one batch, and the HTTP body shape of the fast path.

Short web sessions start, handshake and carry their bulk (encrypted TLS records, HTTP body
segments) within a single batch: the engine's rounds hand a flow back to the fast path as soon
as its per-packet run reaches a segment that looks fast-ready. Every capture here is decoded
with the fast path on and off and must give the same JSON lines (events, weirds, flows).
"""

from __future__ import annotations

import struct
from pathlib import Path

from tests.test_app_fast import SMALL, Conn, _pcap, compare, run


def _tls_record(ctype: int, body: bytes) -> bytes:
    return struct.pack(">BBBH", ctype, 3, 3, len(body)) + body


def _client_hello(sni: str) -> bytes:
    name = sni.encode()
    sn = struct.pack(">HBH", len(name) + 3, 0, len(name)) + name
    ext = struct.pack(">HH", 0, len(sn)) + sn
    ext += struct.pack(">HHB", 43, 3, 2) + b"\x03\x04"
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += struct.pack(">H", len(ext)) + ext
    return _tls_record(22, b"\x01" + struct.pack(">I", len(body))[1:] + body)


def _server_hello() -> bytes:
    ext = struct.pack(">HH", 43, 2) + b"\x03\x04"
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x13\x01" + b"\x00"
    body += struct.pack(">H", len(ext)) + ext
    return _tls_record(22, b"\x02" + struct.pack(">I", len(body))[1:] + body)


def web(path: Path, sessions: int = 40) -> None:
    """Interleaved TLS 1.3 and HTTP sessions: bodies by length, chunked, to the close."""
    out = []
    for k in range(sessions):
        t0 = 1_709_539_200.0 + k * 0.0005
        t = Conn(f"10.2.0.{k + 1}", "192.0.2.10", 50000 + k, 443, t0).handshake()
        t.seg(True, _client_hello(f"host{k}.example"))
        t.seg(False, _server_hello() + _tls_record(23, bytes(300)))
        t.seg(False, _tls_record(23, bytes(900)))
        t.seg(True, _tls_record(20, b"\x01") + _tls_record(23, bytes(50)))
        for r in range(k % 4 + 1):
            t.seg(True, _tls_record(23, bytes(200 + r)))
            t.seg(False, _tls_record(23, bytes(1400)) + _tls_record(23, bytes(100 + r)))
            t.seg(False, _tls_record(23, bytes(700)))
        if k % 5 == 0:
            t.seg(False, _tls_record(21, b"\x01\x00"))  # encrypted alert: an event
        if k % 7 == 0:
            t.seg(False, b"\x17\x03\x03\x00")  # cut record: buffered, rest per packet
            t.seg(False, b"\x05" + bytes(5))
        t.fin()
        out += t.out
        h = Conn(f"10.2.1.{k + 1}", "192.0.2.20", 51000 + k, 80, t0 + 0.0002).handshake()
        for r in range(k % 3 + 1):
            h.seg(True, f"GET /r{r} HTTP/1.1\r\nHost: web{k}\r\n\r\n".encode())
            size = 3000 + 100 * k
            h.seg(False, f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
            for lo in range(0, size, 1000):
                h.seg(False, bytes(min(1000, size - lo)))
        h.seg(True, b"POST /up HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n")
        h.seg(True, b"800\r\n" + bytes(700))
        h.seg(True, bytes(700))
        h.seg(True, bytes(648) + b"\r\n0\r\n\r\n")
        h.seg(False, b"HTTP/1.0 200 OK\r\n\r\n")  # body to the end of the connection
        h.seg(False, bytes(1200))
        h.seg(False, bytes(800))
        if k % 6 == 0:  # a lost body segment: the hole goes per packet
            h.seg(False, bytes(500), send=False)
            h.seg(False, bytes(500))
        h.fin()
        out += h.out
    _pcap(path, sorted(out, key=lambda p: p[0]))


def test_web_sessions_fast_equals_per_packet(tmp_path: Path) -> None:
    path = tmp_path / "web.pcap"
    web(path)
    engine = compare(path)  # one batch: every session starts and ends inside it
    assert engine.stats.fast > 0.5 * engine.stats.candidates
    by = engine.stats.by_protocol
    assert by["tls"] >= 80 and by["http"] >= 160
    compare(path, SMALL)


def test_http_body_shape_keeps_body_len(tmp_path: Path) -> None:
    path = tmp_path / "web.pcap"
    web(path, sessions=6)
    fast = run(path, True)
    lines = [x for x in fast["events"] if b'"protocol":"http"' in x]
    assert any(b'"body_len":2048' in x for x in lines)  # the chunked POST
    assert any(b'"body_len":3000' in x for x in lines)
    assert fast["engine"].fast.packets > 0
