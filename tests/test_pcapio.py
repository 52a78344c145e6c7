"""Tests for collectors.pcapio: pcap/pcapng (plain, gzip, pipes) into numpy batches."""

from __future__ import annotations

import gzip
import io
import itertools
import os
import random
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from collectors.pcapio import CaptureReader, RawBatch
from parkwatch.errors import CaptureError, CaptureFormatError

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "pcaps"
NS = 1_000_000_000
T0 = 1_700_000_000 * NS  # 2023-11-14

Pkt = tuple[int, int, int, int, bytes, int]  # frame, ts_ns, caplen, wirelen, data, linktype


# ---------------------------------------------------------------- writers (struct, exact)


def pcap_file(
    records: list[tuple[int, bytes, int]],
    *,
    order: str = "<",
    nano: bool = False,
    snaplen: int = 65535,
    linktype: int = 1,
) -> bytes:
    """Classic pcap bytes; records are (ts_ns, data, wirelen)."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for ts, data, wirelen in records:
        sec, frac = divmod(ts, NS)
        out.append(
            struct.pack(order + "IIII", sec, frac if nano else frac // 1000, len(data), wirelen)
        )
        out.append(data)
    return b"".join(out)


def _pad(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def block(order: str, btype: int, body: bytes) -> bytes:
    """One pcapng block with both length fields."""
    body = _pad(body)
    n = 12 + len(body)
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def opt(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + _pad(value)


def shb(order: str, options: bytes = b"") -> bytes:
    body = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    if options:
        body += options + opt(order, 0, b"")
    return block(order, 0x0A0D0D0A, body)


def idb(
    order: str, linktype: int, snaplen: int = 0, *, tsresol: int | None = None, tsoffset: int = 0
) -> bytes:
    opts = opt(order, 2, b"eth0")  # if_name, to be skipped
    if tsresol is not None:
        opts += opt(order, 9, bytes([tsresol]))
    if tsoffset:
        opts += opt(order, 14, struct.pack(order + "q", tsoffset))
    opts += opt(order, 0, b"")
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts)


def epb(
    order: str,
    iface: int,
    ticks: int,
    data: bytes,
    wirelen: int | None = None,
    *,
    comment: bool = False,
) -> bytes:
    head = struct.pack(
        order + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), wirelen or len(data)
    )
    opts = opt(order, 1, b"a comment") + opt(order, 0, b"") if comment else b""
    return block(order, 6, head + _pad(data) + opts)


def spb(order: str, data: bytes, wirelen: int) -> bytes:
    return block(order, 3, struct.pack(order + "I", wirelen) + data)


def pb(order: str, iface: int, ticks: int, data: bytes) -> bytes:
    head = struct.pack(
        order + "HHIIII", iface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)
    )
    return block(order, 2, head + data)


def nrb(order: str) -> bytes:
    rec = struct.pack(order + "HH", 1, 4 + 9) + _pad(bytes([10, 0, 0, 1]) + b"host.lan\0")
    return block(order, 4, rec + struct.pack(order + "HH", 0, 0))


def isb(order: str) -> bytes:
    return block(order, 5, struct.pack(order + "III", 0, 0, 0))


def custom(order: str) -> bytes:
    return block(order, 0x00000BAD, struct.pack(order + "I", 32473) + b"private stuff")


def payload(i: int, n: int = 60) -> bytes:
    return bytes((i * 7 + k) & 0xFF for k in range(n))


# ---------------------------------------------------------------- reading helpers


def read_all(source: Any, **kw: Any) -> tuple[list[Pkt], CaptureReader]:
    """Every packet as (frame, ts, caplen, wirelen, data, linktype), and the closed reader."""
    out: list[Pkt] = []
    with CaptureReader(source, **kw) as cap:
        for b in cap.batches():
            check_batch(b)
            buf = memoryview(b.buf)
            for i in range(len(b)):
                o, n = int(b.data_off[i]), int(b.caplen[i])
                row = (
                    b.first_frame + i,
                    int(b.ts_ns[i]),
                    n,
                    int(b.wirelen[i]),
                    bytes(buf[o : o + n]),
                )
                out.append((*row, int(b.linktype[i])))
        assert cap.packets == len(out)
    return out, cap


def check_batch(b: RawBatch) -> None:
    n = len(b)
    assert n > 0
    for col in (b.data_off, b.caplen, b.wirelen, b.ts_ns, b.linktype):
        assert isinstance(col, np.ndarray) and col.dtype == np.int64 and col.shape == (n,)
    assert int((b.data_off + b.caplen).max()) <= len(b.buf)
    assert b.first_frame >= 1


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def names(cap: CaptureReader) -> list[tuple[int, str]]:
    return [(w.frame, w.name) for w in cap.weirds]


# ---------------------------------------------------------------- classic pcap


RECS = [
    (T0 + 123_456_000, payload(0), 60),
    (T0 + 2 * NS + 999_999_000, payload(1, 14), 1514),  # snapped: wirelen > caplen
    (T0 + 3 * NS, b"", 0),
    (T0 + 4 * NS + 1_000, payload(3, 1500), 1500),
]


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path: Path, order: str, nano: bool) -> None:
    recs = [(ts + (789 if nano else 0), d, w) for ts, d, w in RECS]
    path = write(tmp_path, "a.pcap", pcap_file(recs, order=order, nano=nano, linktype=101))
    pkts, cap = read_all(path)
    assert cap.fmt == "pcap" and cap.name == str(path) and cap.weirds == []
    assert pkts == [(i + 1, ts, len(d), w, d, 101) for i, (ts, d, w) in enumerate(recs)]


def test_pcap_linktype_fcs_bits_ignored(tmp_path: Path) -> None:
    lt = 1 | 0x04000000 | (4 << 28)  # Ethernet, "FCS length present", 4 bytes of FCS
    pkts, _ = read_all(write(tmp_path, "f.pcap", pcap_file(RECS[:1], linktype=lt)))
    assert [p[5] for p in pkts] == [1]


def test_pcap_written_by_scapy(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    pkts = []
    for i in range(5):
        p = Ether() / IP(dst="10.0.0.1") / UDP(dport=502 + i)
        p.time = 1_700_000_000 + i + 0.25
        pkts.append(p)
    path = tmp_path / "s.pcap"
    wrpcap(str(path), pkts)
    got, _ = read_all(path)
    assert [g[1] for g in got] == [T0 + i * NS + 250_000_000 for i in range(5)]
    assert [g[4] for g in got] == [bytes(p) for p in pkts]
    assert {g[5] for g in got} == {1}


def test_header_only_and_truncated_header(tmp_path: Path) -> None:
    pkts, cap = read_all(write(tmp_path, "h.pcap", pcap_file([])))
    assert pkts == [] and cap.weirds == []
    pkts, cap = read_all(write(tmp_path, "t.pcap", pcap_file([])[:10]))
    assert pkts == [] and names(cap) == [(1, "truncated_file_header")]


@pytest.mark.parametrize("cut", [1, 8, 15, 16, 17, 70])
def test_pcap_cut_mid_record(tmp_path: Path, cut: int) -> None:
    data = pcap_file(RECS)
    end3 = len(pcap_file(RECS[:3]))
    pkts, cap = read_all(write(tmp_path, "c.pcap", data[: end3 + cut]))
    assert [p[0] for p in pkts] == [1, 2, 3]
    assert [p[4] for p in pkts] == [d for _, d, _ in RECS[:3]]
    assert names(cap) == [(4, "truncated_record")]


def test_pcap_garbage_after_header(tmp_path: Path) -> None:
    pkts, cap = read_all(write(tmp_path, "g.pcap", pcap_file([]) + b"\xff" * 100))
    assert pkts == [] and names(cap) == [(1, "bad_record_length")]


def test_pcap_absurd_length_mid_file_stops(tmp_path: Path) -> None:
    bad = struct.pack("<IIII", 1, 2, 300_000, 300_000) + b"x" * 400_000
    data = pcap_file(RECS[:2]) + bad + pcap_file(RECS[:1])[24:]
    pkts, cap = read_all(write(tmp_path, "b.pcap", data))
    assert len(pkts) == 2 and names(cap) == [(3, "bad_record_length")]
    # longer than snaplen + 64 KiB is absurd too
    data = pcap_file([(T0, b"x" * 70_000, 70_000)], snaplen=1000)
    pkts, cap = read_all(write(tmp_path, "s.pcap", data))
    assert pkts == [] and names(cap) == [(1, "bad_record_length")]


def test_record_larger_than_chunk(tmp_path: Path) -> None:
    recs = [(T0 + i * 1000, payload(i, n), n) for i, n in enumerate([10, 5000, 3, 70_000, 64])]
    path = write(tmp_path, "big.pcap", pcap_file(recs, snaplen=262144))
    pkts, cap = read_all(path, batch_bytes=100)
    assert [(p[1], p[4]) for p in pkts] == [(ts, d) for ts, d, _ in recs] and cap.weirds == []


# ---------------------------------------------------------------- pcapng


def two_interface_ng(order: str = "<") -> tuple[bytes, list[Pkt]]:
    """SHB, Ethernet IDB (ns), raw-IP IDB (2^-20 s, +10 s offset), mixed blocks."""
    data = [shb(order, opt(order, 4, b"parkwatch tests")), idb(order, 1, 0, tsresol=9)]
    data.append(idb(order, 101, 65535, tsresol=0x80 | 20, tsoffset=10))
    want: list[Pkt] = []
    for i in range(6):
        d = payload(i, 40 + i)
        if i % 2 == 0:
            ticks = T0 + i * 1_000_000_007
            data.append(epb(order, 0, ticks, d, 1000 + i, comment=i == 2))
            want.append((i + 1, ticks, len(d), 1000 + i, d, 1))
        else:
            ticks = (1_700_000_000 << 20) + i * 123_457  # units of 2^-20 s
            data.append(epb(order, 1, ticks, d))
            want.append((i + 1, (ticks * NS >> 20) + 10 * NS, len(d), len(d), d, 101))
        data.append([nrb, isb, custom][i % 3](order))
    return b"".join(data), want


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_two_interfaces(tmp_path: Path, order: str) -> None:
    data, want = two_interface_ng(order)
    pkts, cap = read_all(write(tmp_path, "two.pcapng", data))
    assert cap.fmt == "pcapng" and cap.weirds == []
    assert pkts == want


def test_pcapng_resolutions() -> None:
    from collectors.pcapng import ticks_to_ns

    t = np.array([0, 1, 1_234_567_891, (1 << 63) + 5], np.uint64)
    for base, exp in [
        (10, 0),
        (10, 3),
        (10, 6),
        (10, 9),
        (10, 12),
        (2, 0),
        (2, 10),
        (2, 30),
        (2, 34),
    ]:
        got = ticks_to_ns(t[:3], base, exp).tolist()
        assert got == [int(x) * NS // base**exp for x in t[:3].tolist()], (base, exp)
    assert ticks_to_ns(t[3:], 2, 32).tolist() == [int(t[3]) * NS >> 32]


def test_pcapng_two_sections_of_different_byte_order(tmp_path: Path) -> None:
    le = shb("<") + idb("<", 1) + epb("<", 0, T0 // 1000 + 1, payload(1))  # default: µs
    be = shb(">") + idb(">", 101, tsresol=3) + epb(">", 0, T0 // NS * 1000 + 5, payload(2, 20))
    be += pb(">", 0, T0 // NS * 1000 + 6, payload(3, 30))  # obsolete Packet Block
    pkts, cap = read_all(io.BytesIO(le + be + le))
    assert cap.weirds == [] and cap.name == "<stream>"
    assert pkts == [
        (1, T0 + 1000, 60, 60, payload(1), 1),
        (2, T0 + 5_000_000, 20, 20, payload(2, 20), 101),
        (3, T0 + 6_000_000, 30, 30, payload(3, 30), 101),
        (4, T0 + 1000, 60, 60, payload(1), 1),
    ]


def test_pcapng_simple_packet_blocks(tmp_path: Path) -> None:
    o = "<"
    data = shb(o) + idb(o, 1, 64, tsresol=9) + spb(o, payload(0, 40), 40)  # no timestamp yet: 0
    data += epb(o, 0, T0 + 7, payload(1)) + spb(o, payload(2, 64), 1514)  # snapped to 64
    data += spb(o, payload(3, 20), 30)  # wire 30 > room 20 -> caplen 20
    pkts, cap = read_all(write(tmp_path, "spb.pcapng", data))
    assert cap.weirds == []
    assert pkts == [
        (1, 0, 40, 40, payload(0, 40), 1),
        (2, T0 + 7, 60, 60, payload(1), 1),
        (3, T0 + 7, 64, 1514, payload(2, 64), 1),
        (4, T0 + 7, 20, 30, payload(3, 20), 1),
    ]


def test_pcapng_unknown_interface_is_skipped_and_counted(tmp_path: Path) -> None:
    o = "<"
    data = shb(o) + idb(o, 1, tsresol=9) + epb(o, 0, T0 + 1, payload(1))
    data += epb(o, 3, T0 + 2, payload(2)) + epb(o, 0, T0 + 3, payload(3))
    data += idb(o, 101, tsresol=9) + epb(o, 1, T0 + 4, payload(4))
    with CaptureReader(io.BytesIO(data)) as cap:
        batches = list(cap.batches())
    assert [(b.first_frame, len(b)) for b in batches] == [(1, 1), (3, 2)]
    assert batches[1].ts_ns.tolist() == [T0 + 3, T0 + 4]
    assert batches[1].linktype.tolist() == [1, 101]
    assert names(cap) == [(2, "unknown_interface")] and cap.packets == 3


def test_pcapng_epb_before_its_interface_is_unknown(tmp_path: Path) -> None:
    o = "<"
    data = shb(o) + idb(o, 1) + epb(o, 1, 5, payload(1)) + idb(o, 105) + epb(o, 1, 6, payload(2))
    pkts, cap = read_all(io.BytesIO(data))
    assert [(p[0], p[5]) for p in pkts] == [(2, 105)]
    assert names(cap) == [(1, "unknown_interface")]


def test_pcapng_captured_length_beyond_block_is_skipped(tmp_path: Path) -> None:
    o = "<"
    bad = bytearray(epb(o, 0, 9, payload(1)))
    struct.pack_into("<I", bad, 20, 500)  # caplen 500 in a 92-byte block
    data = shb(o) + idb(o, 1) + bytes(bad) + epb(o, 0, 10, payload(2))
    pkts, cap = read_all(io.BytesIO(data))
    assert [(p[0], p[4]) for p in pkts] == [(2, payload(2))]
    assert names(cap) == [(1, "bad_record_length")]


@pytest.mark.parametrize("cut", [1, 7, 12, 30, 70])
def test_pcapng_cut_mid_block(tmp_path: Path, cut: int) -> None:
    data, want = two_interface_ng()
    # cut inside the 5th EPB
    end = data.index(epb("<", 0, T0 + 4 * 1_000_000_007, payload(4, 44), 1004))
    pkts, cap = read_all(write(tmp_path, "cut.pcapng", data[: end + cut]))
    assert pkts == want[:4]
    assert names(cap) == [(5, "truncated_record")]


def test_pcapng_bad_block_lengths_stop(tmp_path: Path) -> None:
    o = "<"
    head = shb(o) + idb(o, 1)
    good = epb(o, 0, 1, payload(1))
    for bad in (
        struct.pack("<II", 6, 30) + b"\0" * 30,  # not a multiple of 4
        struct.pack("<II", 6, 8) + b"\0" * 40,  # shorter than a block can be
        struct.pack("<II", 6, 0) + b"\0" * 40,  # zero: must not loop forever
        struct.pack("<II", 6, 1 << 30) + b"\0" * 40,  # absurd
        good[:-4] + struct.pack("<I", 99),  # trailing length differs
    ):
        pkts, cap = read_all(io.BytesIO(head + good + bad + good))
        assert [p[0] for p in pkts] == [1]
        assert names(cap) == [(2, "bad_block_length")], bad[:8]


def test_pcapng_garbage_after_section_header(tmp_path: Path) -> None:
    pkts, cap = read_all(write(tmp_path, "g.pcapng", shb("<") + os.urandom(3) + b"\xff" * 60))
    assert pkts == [] and names(cap) == [(1, "bad_block_length")]
    pkts, cap = read_all(write(tmp_path, "h.pcapng", shb("<")[:20]))
    assert pkts == [] and names(cap) == [(1, "truncated_file_header")]


def test_pcapng_written_by_scapy(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcapng

    pkts = []
    for i in range(4):
        p = Ether() / IP(dst="10.0.0.2") / TCP(dport=102)
        p.time = 1_700_000_000 + i + 0.5
        pkts.append(p)
    path = tmp_path / "s.pcapng"
    wrpcapng(str(path), pkts)
    got, cap = read_all(path)
    assert cap.fmt == "pcapng" and cap.weirds == []
    assert [(g[1], g[4], g[5]) for g in got] == [
        (T0 + i * NS + NS // 2, bytes(p), 1) for i, p in enumerate(pkts)
    ]


# ---------------------------------------------------------------- gzip and pipes


def test_gzip_pcap_and_pcapng(tmp_path: Path) -> None:
    classic = pcap_file(RECS)
    ng, want = two_interface_ng(">")
    for name, raw in (("x.cap", classic), ("y.bin", ng)):  # names do not say gzip
        plain, _ = read_all(write(tmp_path, name + ".plain", raw))
        for bb in (64, 16 << 20):
            got, cap = read_all(write(tmp_path, name, gzip.compress(raw)), batch_bytes=bb)
            assert got == plain and cap.weirds == []
    assert read_all(io.BytesIO(gzip.compress(ng)))[0] == want


def test_gzip_multi_member_and_truncated(tmp_path: Path) -> None:
    raw = pcap_file(RECS)
    two = gzip.compress(raw[:50]) + gzip.compress(raw[50:])
    got, cap = read_all(io.BytesIO(two), batch_bytes=64)
    assert len(got) == 4 and cap.weirds == []
    cut = gzip.compress(raw + pcap_file(RECS)[24:], compresslevel=0)
    got, cap = read_all(io.BytesIO(cut[: len(cut) // 2 + 700]))
    assert 4 <= len(got) < 8
    assert names(cap) == [(len(got) + 1, "truncated_record"), (len(got) + 1, "truncated_gzip")]
    with pytest.raises(CaptureFormatError, match="gzip"):
        CaptureReader(io.BytesIO(b"\x1f\x8b" + b"\x00" * 30))


class Trickle(io.RawIOBase):
    """A non-seekable stream that hands out at most 7 bytes per read, like a slow pipe."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), 7, len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n

    def seek(self, *a: Any) -> int:
        raise AssertionError("a pipe cannot seek")


def test_pipes_with_records_straddling_chunks(tmp_path: Path) -> None:
    ng, want = two_interface_ng()
    path = write(tmp_path, "p.pcapng", ng)
    proc = subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    got, cap = read_all(proc.stdout, batch_bytes=64)
    proc.wait()
    assert got == want and cap.weirds == []
    got, _ = read_all(Trickle(gzip.compress(ng)), batch_bytes=64)
    assert got == want

    r, w = os.pipe()
    raw = pcap_file(RECS, order=">", nano=True)

    def writer() -> None:
        with os.fdopen(w, "wb") as f:
            for i in range(0, len(raw), 5):
                f.write(raw[i : i + 5])
                f.flush()

    t = threading.Thread(target=writer)
    t.start()
    with os.fdopen(r, "rb", buffering=0) as src:
        got2, cap = read_all(src, batch_bytes=64)
    t.join()
    assert [(p[1], p[4]) for p in got2] == [(ts, d) for ts, d, _ in RECS] and cap.weirds == []


def batch_rows(b: RawBatch) -> list[tuple[int, ...] | bytes]:
    """Everything a batch says: its frame numbers, columns and packet bytes."""
    buf = memoryview(b.buf)
    cols = (b.data_off, b.caplen, b.wirelen, b.ts_ns, b.linktype)
    rows: list[tuple[int, ...] | bytes] = [(b.first_frame, len(b))]
    for i in range(len(b)):
        o, n = int(b.data_off[i]), int(b.caplen[i])
        rows += [tuple(int(c[i]) for c in cols), bytes(buf[o : o + n])]
    return rows


def mapped_captures() -> list[bytes]:
    ng, _ = two_interface_ng()
    many = [(T0 + i * 1000, payload(i, 20 + i * 37 % 300), 400) for i in range(300)]
    big = pcap_file(many)
    return [
        pcap_file(RECS),
        pcap_file(RECS, order=">", nano=True),
        pcap_file(RECS)[:-700],  # truncated record
        pcap_file(RECS[:2]) + struct.pack("<IIII", 1, 2, 300_000, 300_000) + b"x" * 99,
        big,
        ng,
        ng[:-5],
        ng + shb(">") + idb(">", 1, 64) + spb(">", payload(1, 64), 100),
        pcap_file(RECS)[:30],
    ]


@pytest.mark.parametrize("batch_bytes", [64, 100, 1000, 16 << 20])
def test_mapped_file_reads_like_a_stream(tmp_path: Path, batch_bytes: int) -> None:
    for k, data in enumerate(mapped_captures()):
        path = write(tmp_path, f"m{k}.cap", data)
        with CaptureReader(path, batch_bytes=batch_bytes, use_mmap=True) as cap:
            assert type(cap._stream).__name__ == "_MappedFile"
            mapped = [batch_rows(b) for b in cap.batches()]
            assert cap.consumed == len(data) or cap.weirds
        with path.open("rb") as f, CaptureReader(f, batch_bytes=batch_bytes) as ref:
            assert type(ref._stream).__name__ == "_PlainStream"
            streamed = [batch_rows(b) for b in ref.batches()]
        assert mapped == streamed, k
        assert names(cap) == names(ref) and cap.packets == ref.packets
        assert cap.packets > 0 or k == len(mapped_captures()) - 1


def test_mapped_batches_outlive_the_reader(tmp_path: Path) -> None:
    recs = [(T0 + i, payload(i, 40 + i % 200), 1000) for i in range(2000)]
    path = write(tmp_path, "keep.pcap", pcap_file(recs))
    cap = CaptureReader(path, batch_bytes=4096, use_mmap=True)
    batches = list(cap.batches())
    cap.close()
    assert cap._own is None and len(batches) > 10
    del cap
    got = [
        bytes(memoryview(b.buf)[o : o + n])
        for b in batches
        for o, n in zip(b.data_off.tolist(), b.caplen.tolist(), strict=True)
    ]
    assert got == [d for _, d, _ in recs]
    with CaptureReader(path, use_mmap=True) as cap2:  # closed before reading: nothing
        pass
    assert list(cap2.batches()) == []


@pytest.mark.parametrize("size", [24 + 16 + 10, 3 << 20])
def test_mapped_file_ending_with_a_packet_still_has_slack(tmp_path: Path, size: int) -> None:
    n = (size - 24) // 1000
    recs = [(T0 + i, bytes([i % 251 + 1]) * 984, 984) for i in range(n)] or [(T0, b"x" * 10, 10)]
    data = pcap_file(recs)
    path = write(tmp_path, "exact.pcap", data)
    for batch_bytes, use_mmap in itertools.product((64, 5000, 1 << 20, 16 << 20), (False, True)):
        with CaptureReader(path, batch_bytes=batch_bytes, use_mmap=use_mmap) as cap:
            batches = list(cap.batches())
        assert sum(len(b) for b in batches) == len(recs) and cap.weirds == []
        last = batches[-1]
        end = int((last.data_off + last.caplen)[-1])
        assert len(last.buf) >= end + 64
        assert bytes(memoryview(last.buf)[end : end + 64]) == bytes(64)  # past EOF: zeros
        for b in batches:
            assert int((b.data_off + b.caplen).max()) + 64 <= len(b.buf)
            np.frombuffer(b.buf, np.uint8)  # decode's view of it


def test_stdin_dash(tmp_path: Path) -> None:
    path = write(tmp_path, "in.pcap.gz", gzip.compress(pcap_file(RECS)))
    code = (
        "from collectors.pcapio import CaptureReader\n"
        "c = CaptureReader('-')\n"
        "print(c.name, c.fmt, sum(len(b) for b in c.batches()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with path.open("rb") as f:
        out = subprocess.run(
            [sys.executable, "-c", code], stdin=f, capture_output=True, env=env, check=True
        )
    assert out.stdout.split() == [b"<stdin>", b"pcap", b"4"]


# ---------------------------------------------------------------- errors


def test_bad_magic_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "notes.pcap", b"hello, this is not a capture\n")
    with pytest.raises(CaptureFormatError) as ei:
        CaptureReader(path)
    assert ei.value.file == str(path) and str(path) in str(ei.value)
    assert "not a pcap or pcapng" in str(ei.value)
    bad_bom = shb("<")[:8] + b"\x01\x02\x03\x04" + shb("<")[12:]
    with pytest.raises(CaptureFormatError, match="byte-order"):
        CaptureReader(write(tmp_path, "bom.pcapng", bad_bom))


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.pcap", b"")
    with pytest.raises(CaptureFormatError, match="empty") as ei:
        CaptureReader(path)
    assert ei.value.file == str(path)
    with pytest.raises(CaptureFormatError, match="empty"):
        CaptureReader(io.BytesIO(gzip.compress(b"")))


def test_missing_file_and_directory(tmp_path: Path) -> None:
    for p in (tmp_path / "nope.pcap", tmp_path):
        with pytest.raises(CaptureError) as ei:
            CaptureReader(p)
        assert ei.value.file == str(p) and str(p) in str(ei.value)


def test_reader_closes_only_what_it_opened(tmp_path: Path) -> None:
    path = write(tmp_path, "a.pcap", pcap_file(RECS))
    with path.open("rb") as f:
        read_all(f)
        assert not f.closed
    with CaptureReader(path) as cap:
        own = cap._own
        assert own is not None and not own.closed
    assert own.closed


def test_corrupted_captures_never_raise_after_the_magic() -> None:
    rng = random.Random(7)
    ng, _ = two_interface_ng()
    ng2 = ng + shb(">") + idb(">", 1, 64) + spb(">", payload(1, 64), 100) + pb(">", 0, 5, b"x")
    bases = [pcap_file(RECS), pcap_file(RECS, order=">", nano=True), ng, ng2]
    for _ in range(300):
        b = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            if rng.random() < 0.5:
                b[i] = rng.randrange(256)
            else:
                v = rng.choice([0, 3, 12, 0xFFFFFFFF, rng.randrange(1 << 32)])
                b[i : i + 4] = v.to_bytes(4, "little")
        if rng.random() < 0.3:
            b = b[: rng.randrange(1, len(b))]
        data = gzip.compress(bytes(b)) if rng.random() < 0.2 else bytes(b)
        try:
            cap = CaptureReader(io.BytesIO(data), batch_bytes=rng.choice([64, 1 << 20]))
        except CaptureFormatError:
            continue  # the magic itself was hit
        last = 0
        with cap:
            for batch in cap.batches():
                check_batch(batch)
                assert batch.first_frame > last
                last = batch.first_frame + len(batch) - 1


def test_modified_pcap_is_refused_clearly(tmp_path: Path) -> None:
    data = struct.pack("<I", 0xA1B2CD34) + pcap_file(RECS)[4:]
    with pytest.raises(CaptureFormatError, match="Kuznetzov"):
        CaptureReader(write(tmp_path, "k.pcap", data))


# ---------------------------------------------------------------- against other readers


SHARED_SAMPLES = [
    "chrissanders_packets/arppoison.pcapng",
    "chrissanders_packets/cryptowall4_c2.pcapng",
    "chrissanders_packets/dns_axfr.pcapng",
    "chrissanders_packets/ratinfected.pcapng",
    "iti_ics_security_tools/s7/snap7_s300_everything.pcapng",  # really a classic pcap
    "suricata_verify/modbus/modbus.pcap",
    "lemay_modbus/moving_two_files_modbus_6RTU.pcap",
    "stratosphere_slips/test-cc/test-cc-capture-2.pcap",
]


def scapy_packets(path: Path) -> list[tuple[int, int, int, bytes, int]]:
    """(ts_ns, caplen, wirelen, data, linktype) of every packet, as scapy reads them."""
    from scapy.utils import RawPcapNgReader, RawPcapReader

    out = []
    with RawPcapReader(str(path)) as r:
        ng = isinstance(r, RawPcapNgReader)
        while True:
            try:
                data, m = r._read_packet(size=1 << 20)
            except EOFError:
                break
            if ng:
                ts, lt = ((m.tshigh << 32) + m.tslow) * NS // m.tsresol, m.linktype
            else:
                ts, lt = m.sec * NS + m.usec * (1 if r.nano else 1000), r.linktype
            out.append((ts, len(data), m.wirelen, data, lt))
    return out


@pytest.mark.shared
@pytest.mark.parametrize("rel", SHARED_SAMPLES)
def test_matches_scapy_on_shared_captures(rel: str) -> None:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} absent (the ../shared capture set is not here)")
    want = scapy_packets(path)
    assert want
    for bb in (16 << 20, 4096):
        got, cap = read_all(path, batch_bytes=bb)
        assert cap.weirds == []
        assert [p[0] for p in got] == list(range(1, len(want) + 1))
        assert [p[1:] for p in got] == want
