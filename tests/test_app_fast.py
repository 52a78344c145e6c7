"""The engine's fast path (collectors/apps/fast) gives exactly what the per-packet path gives.

Every capture is decoded twice — fast path on and off — and the JSON lines of the events, the
weirds and the flow records must be equal line by line (uids, request links, summaries
included). The corpus slice (benchmarks/corpus.py, the benchmark's traffic mix) and crafted
streams (pipelined, split, out-of-order, retransmitted and lost segments, exceptions,
responses whose requests came batches earlier) run with the smallest batch size, so state
crosses many batch boundaries. The events-as-columns output (``FlowPipeline.run(events=…)``)
must render the same JSON lines as the records.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from collectors.apps.engine import AppEngine
from collectors.pipeline import FlowPipeline
from parkwatch.config import load_settings
from parkwatch.schema import OtEvent, Weird
from parkwatch.schema.columns import Columns
from parkwatch.topology import default_topology

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "pcaps"
OT_DIRS = ("iti_ics_security_tools", "lemay_modbus", "suricata_verify")
SMALL = 1 << 16  # smallest batch_bytes: many batch boundaries


def run(path: Path | str, fast: bool, batch: int | None = None, columns: bool = False) -> dict:
    """Decode ``path``: JSON lines of events, weirds and flows, and the engine."""
    settings = load_settings()
    if batch:
        settings.flows.batch_bytes = batch
    pipe = FlowPipeline(settings, default_topology(), apps="all")
    assert pipe.apps is not None
    if not fast:
        pipe.apps.fast = None
    ev: list[bytes] = []
    wd: list[bytes] = []
    fl: list[bytes] = []

    def emit(rec: object) -> None:
        if isinstance(rec, OtEvent):
            ev.append(rec.to_json())
        elif isinstance(rec, Weird):
            wd.append(rec.to_json())

    def events(cols: Columns[OtEvent]) -> None:
        ev.extend(cols.jsonl().splitlines())

    def flows(cols: Columns) -> None:
        fl.extend(cols.jsonl().splitlines())

    pipe.run([str(path)], emit, flows, events=events if columns else None)
    return {"events": ev, "weirds": wd, "flows": fl, "engine": pipe.apps}


def compare(path: Path | str, batch: int | None = None) -> AppEngine:
    """Assert fast == per-packet (and columns == records) for ``path``; the fast engine."""
    slow = run(path, False, batch)
    fast = run(path, True, batch, columns=True)
    for key in ("events", "weirds", "flows"):
        a, b = slow[key], fast[key]
        for n, (x, y) in enumerate(zip(a, b, strict=False)):
            assert x == y, f"{path}: {key} line {n + 1} differs:\n{x.decode()}\n{y.decode()}"
        assert len(a) == len(b), f"{path}: {key}: {len(a)} per-packet vs {len(b)} fast"
    return fast["engine"]


# -- crafted captures ------------------------------------------------------------------------


def _pcap(path: Path, packets: list[tuple[float, bytes]]) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for ts, frame in packets:
        sec, usec = int(ts), round((ts % 1) * 1e6)
        out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def _tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
         payload: bytes = b"") -> bytes:  # fmt: skip
    import socket

    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))  # fmt: skip
    eth = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00"
    return eth + ip + tcp + payload


class Conn:
    """One TCP connection with its own sequence numbers (client c, server s)."""

    def __init__(self, cli: str, srv: str, cport: int, sport: int, t0: float) -> None:
        self.a, self.b, self.cp, self.sp, self.t = cli, srv, cport, sport, t0
        self.cs, self.ss = 1000, 5000
        self.out: list[tuple[float, bytes]] = []

    def _tick(self) -> float:
        self.t += 0.001
        return self.t

    def handshake(self) -> Conn:
        self.out.append((self._tick(), _tcp(self.a, self.b, self.cp, self.sp, self.cs, 0, 2)))
        self.out.append(
            (self._tick(), _tcp(self.b, self.a, self.sp, self.cp, self.ss, self.cs + 1, 18))
        )
        self.cs += 1
        self.ss += 1
        return self

    def seg(self, client: bool, data: bytes, seq: int | None = None, send: bool = True) -> int:
        """A data segment (``seq`` overrides the next sequence number); returns its seq."""
        if client:
            s = self.cs if seq is None else seq
            frame = _tcp(self.a, self.b, self.cp, self.sp, s, self.ss, 0x18, data)
            if seq is None:
                self.cs += len(data)
        else:
            s = self.ss if seq is None else seq
            frame = _tcp(self.b, self.a, self.sp, self.cp, s, self.cs, 0x18, data)
            if seq is None:
                self.ss += len(data)
        if send:
            self.out.append((self._tick(), frame))
        return s

    def fin(self) -> None:
        self.out.append(
            (self._tick(), _tcp(self.a, self.b, self.cp, self.sp, self.cs, self.ss, 0x11))
        )


def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def s7_read(ref: int, db: int) -> bytes:
    param = bytes([4, 1, 0x12, 10, 0x10, 2]) + struct.pack(">HHB", 10, db, 0x84) + b"\0\0\x40"
    s7 = struct.pack(">BBHHHH", 0x32, 1, 0, ref, len(param), 0) + param
    return struct.pack(">BBH", 3, 0, 7 + len(s7)) + b"\x02\xf0\x80" + s7


def s7_ack(ref: int, rc: int = 0xFF, err: int = 0) -> bytes:
    data = bytes([rc, 4]) + struct.pack(">H", 16) + b"\x01\x02"
    s7 = struct.pack(">BBHHHHH", 0x32, 3, 0, ref, 2, len(data), err) + bytes([4, 1]) + data
    return struct.pack(">BBH", 3, 0, 7 + len(s7)) + b"\x02\xf0\x80" + s7


def crafted(path: Path) -> None:
    """Modbus and S7 connections with every irregularity the fast path must hand over."""
    m = Conn("10.1.1.10", "10.1.2.10", 40000, 502, 1_709_539_200.0).handshake()
    for tid in range(1, 400):  # long polling: requests answered batches later too
        m.seg(True, mbap(tid, 1, struct.pack(">BHH", 3, tid % 100, 10)))
        m.seg(False, mbap(tid, 1, bytes([3, 20]) + bytes(20)))
        if tid % 37 == 0:  # two pipelined requests in one segment, answered together
            two = mbap(9000 + tid, 1, b"\x04\0\0\0\1") + mbap(9001 + tid, 1, b"\x01\0\0\0\x08")
            m.seg(True, two)
            m.seg(False, mbap(9000 + tid, 1, b"\x04\x02\0\0") + mbap(9001 + tid, 1, b"\x01\1\1"))
        if tid % 41 == 0:  # a request split over two segments
            req = mbap(tid, 2, struct.pack(">BHH", 4, 1, 2))
            m.seg(True, req[:5])
            m.seg(True, req[5:])
            m.seg(False, mbap(tid, 2, b"\x84\x02"))  # exception
        if tid % 43 == 0:  # retransmission of the last response
            m.seg(False, mbap(tid, 1, bytes([3, 20]) + bytes(20)), seq=m.ss - 27)
        if tid % 47 == 0:  # out of order: the second segment first
            r1, r2 = mbap(tid, 1, b"\x06\0\x05\0\x07"), mbap(tid + 1, 1, b"\x05\0\x01\xff\0")
            s1 = m.seg(True, r1, send=False)
            m.seg(True, r2)
            m.seg(True, r1, seq=s1)
            m.seg(False, mbap(tid, 1, b"\x06\0\x05\0\x07") + mbap(tid + 1, 1, b"\x05\0\x01\xff\0"))
        if tid % 53 == 0:  # a lost request: the next one shows a hole
            m.seg(True, mbap(tid, 3, b"\x03\0\0\0\1"), send=False)
        if tid % 59 == 0:  # garbage: decode error weird
            m.seg(False, b"\x00\x01\x00\x07\x00\x02\x01\x03")
        if tid % 61 == 0:  # unknown function, response without request
            m.seg(True, mbap(tid, 1, b"\x41\x00"))
            m.seg(False, mbap(tid + 5000, 1, b"\x10\0\x01\0\x02"))
    s = Conn("10.1.1.11", "10.1.2.11", 40001, 102, 1_709_539_200.5).handshake()
    for ref in range(1, 300):
        s.seg(True, s7_read(ref, ref % 7 + 1))
        if ref % 5:
            s.seg(False, s7_ack(ref, 0xFF if ref % 11 else 0x0A, 0 if ref % 13 else 0x8104))
        if ref % 31 == 0:
            s.seg(True, s7_read(ref + 1000, 1) + s7_read(ref + 1001, 2))
            s.seg(False, s7_ack(ref + 1001) + s7_ack(ref + 1000))
    m.fin()
    _pcap(path, sorted(m.out + s.out, key=lambda p: p[0]))


def test_crafted_streams_fast_equals_per_packet(tmp_path: Path) -> None:
    path = tmp_path / "crafted.pcap"
    crafted(path)
    engine = compare(path, SMALL)
    assert engine.stats.fast > 300  # segments after the first batch took the fast path
    assert engine.stats.fast < engine.stats.candidates  # irregular ones did not
    assert engine.stats.weird > 0 and engine.stats.events > 1400
    compare(path)  # one batch


def test_corpus_slice_fast_equals_per_packet(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from corpus import write_corpus
    finally:
        sys.path.pop(0)
    path = tmp_path / "corpus.pcap"
    write_corpus(path, packets=40_000, seed=7)
    engine = compare(path, SMALL)
    assert engine.stats.fast > 0.4 * engine.stats.candidates
    by = engine.stats.by_protocol
    assert {"modbus", "s7comm", "dnp3", "http", "tls", "dns"} <= set(by)


@pytest.mark.parametrize("path", sorted(ROOT.glob("replay_pcaps/*.pcap")), ids=lambda p: p.name)
def test_replay_captures_fast_equals_per_packet(path: Path) -> None:
    compare(path, SMALL)


def _shared() -> list[Path]:
    if not SHARED.is_dir():
        return []
    out = []
    for d in OT_DIRS:
        for p in sorted((SHARED / d).rglob("*")):
            if p.suffix in (".pcap", ".pcapng") and p.stat().st_size < 5_000_000:
                out.append(p)
    return out


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs /work/shared/pcaps")
@pytest.mark.parametrize("path", _shared(), ids=lambda p: p.name)
def test_shared_ot_captures_fast_equals_per_packet(path: Path) -> None:
    compare(path, SMALL)


def test_fast_links_requests_from_earlier_batches(tmp_path: Path) -> None:
    """Responses a whole batch after their requests still link (fast on both sides)."""
    c = Conn("10.1.1.12", "10.1.2.12", 40002, 502, 1_709_539_300.0).handshake()
    for tid in range(1, 3000):
        c.seg(True, mbap(tid, 1, struct.pack(">BHH", 3, 0, 4)))
    for tid in range(1, 3000):
        c.seg(False, mbap(tid, 1, bytes([3, 8]) + bytes(8)))
    path = tmp_path / "late.pcap"
    _pcap(path, c.out)
    fast = run(path, True, SMALL, columns=True)
    assert fast["engine"].stats.fast >= 5000
    lines = [OtEvent.from_json(x) for x in fast["events"]]
    reqs = {e.attrs["transaction_id"]: e.uid for e in lines if e.direction == "request"}
    rsps = [e for e in lines if e.direction == "response"]
    assert len(rsps) == 2999 and all(e.request_uid == reqs[e.attrs["transaction_id"]] for e in rsps)
    assert compare(path, SMALL).stats.fast >= 5000


def test_columns_output_equals_records(tmp_path: Path) -> None:
    path = ROOT / "replay_pcaps" / "s7comm_plc_attacks.pcap"
    a = run(path, True, SMALL, columns=True)["events"]
    b = run(path, True, SMALL, columns=False)["events"]
    assert a == b and len(a) > 10
    assert np.all([x.startswith(b'{"schema":"parkwatch.ot_event/2"') for x in a])
