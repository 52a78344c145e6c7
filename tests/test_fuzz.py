"""Fuzz tests: no exception escapes the capture reader, the decoder or the flow table.

Two halves:

1. *Mutated real packets.* A seed corpus (crafted with scapy: Ethernet, 802.1Q/QinQ, IPv4 with
   options and fragments, IPv6 with extension headers and fragments, TCP, UDP, SCTP, ICMP,
   ICMPv6, ARP, non-IP L2; plus packets from a few shared captures when ``../shared/pcaps``
   exists) is re-framed for several link types and mutated deterministically (numpy
   generators with fixed seeds): bit flips, byte overwrites (mostly in header bytes 0..80),
   length/type fields set to extremes, truncation (caplen < wirelen and caplen == wirelen),
   insertions and deletions, splices, garbage and odd wire lengths. The mutants are written
   with ``struct`` into pcap/pcapng files and run through :class:`FlowPipeline` with small
   batches, tiny flow tables and short timeouts; every packet must be accounted for.
2. *Damaged capture files.* A small valid pcap and pcapng are truncated at every offset,
   their record/block length fields corrupted, bytes flipped, and random tails appended
   (hypothesis). The reader may raise :class:`CaptureError` only for a bad file header;
   otherwise it yields packets plus :class:`CaptureWeird` records, and every packet that
   lies wholly before the damage is yielded exactly.
"""

from __future__ import annotations

import functools
import gzip
import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP, IPOption_RR, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.l2 import ARP, LLC, STP, Dot1AD, Dot1Q, Dot3, Ether
from scapy.layers.sctp import SCTP, SCTPChunkInit
from scapy.packet import Packet, Raw

from collectors.decode import KIND_IP, KIND_WEIRD, WEIRD_NAMES, decode
from collectors.pcapio import CaptureReader, RawBatch
from parkwatch.errors import CaptureError
from parkwatch.schema import CONN_STATES, END_REASONS, ArpEvent, FlowRecord, Weird
from tests.helpers import Session, run_capture, udp

SHARED = Path(__file__).resolve().parents[2] / "shared" / "pcaps"
NS = 1_000_000_000
T0 = 1_700_000_000 * NS
HEADER_BYTES = 80  # most mutations land in the first 80 bytes, where the headers are

CAPTURE_WEIRDS = {
    "truncated_file_header",
    "truncated_record",
    "bad_record_length",
    "bad_block_length",
    "unknown_interface",
    "missing_section_header",
    "bad_section_header",
    "bad_interface_option",
    "truncated_gzip",
    "bad_gzip",
    "read_error",
}

# ================================================================ seed corpus

Field = tuple[int, int]  # (offset, width in bytes) of a length/type field worth pushing to extremes


@dataclass(frozen=True)
class Seed:
    data: bytes
    fields: tuple[Field, ...]


def _l4_fields(data: bytes, l4: int, proto: int) -> list[Field]:
    if proto == 6:
        return [(l4 + 12, 1), (l4 + 13, 1), (l4, 2), (l4 + 2, 2)]
    if proto == 17:
        return [(l4 + 4, 2), (l4, 2), (l4 + 2, 2)]
    if proto in (1, 58):
        return [(l4, 1), (l4 + 1, 1)]
    if proto == 132:
        return [(l4, 2), (l4 + 2, 2)]
    return []


def _l3_fields(data: bytes, l3: int, ethertype: int) -> list[Field]:
    """Offsets of the length, version, next-header and fragment fields from l3 on."""
    out: list[Field] = []
    n = len(data)
    if ethertype == 0x0800 and n >= l3 + 20:
        ihl = (data[l3] & 15) * 4
        out += [(l3, 1), (l3 + 2, 2), (l3 + 6, 2), (l3 + 9, 1)]
        frag = int.from_bytes(data[l3 + 6 : l3 + 8], "big") & 0x1FFF
        if not frag:
            out += _l4_fields(data, l3 + ihl, data[l3 + 9])
    elif ethertype == 0x86DD and n >= l3 + 40:
        out += [(l3, 1), (l3 + 4, 2), (l3 + 6, 1)]
        nh, at, stop = data[l3 + 6], l3 + 40, n
        for _ in range(8):
            if nh not in (0, 43, 44, 60, 51) or at + 8 > stop:
                break
            out += [(at, 1), (at + 1, 1)]
            if nh == 44:
                out.append((at + 2, 2))
                hl = 8
            elif nh == 51:
                hl = (data[at + 1] + 2) * 4
            else:
                hl = (data[at + 1] + 1) * 8
            nh, at = data[at], at + hl
        out += _l4_fields(data, at, nh)
    elif ethertype == 0x0806:
        out += [(l3, 2), (l3 + 2, 2), (l3 + 4, 1), (l3 + 5, 1), (l3 + 6, 2)]
    return [(o, w) for o, w in out if o + w <= n]


def _strip_ethernet(frame: bytes) -> tuple[int, bytes, list[Field]] | None:
    """(ethertype, layer-3 bytes, link fields) of an Ethernet frame, VLAN tags skipped."""
    if len(frame) < 14:
        return None
    fields: list[Field] = [(12, 2)]
    et, o = int.from_bytes(frame[12:14], "big"), 14
    while et in (0x8100, 0x88A8, 0x9100) and len(frame) >= o + 4:
        fields += [(o, 2), (o + 2, 2)]
        et, o = int.from_bytes(frame[o + 2 : o + 4], "big"), o + 4
    return et, frame[o:], fields


def _reframe(ethertype: int, l3: bytes, lt: int, i: int) -> bytes | None:
    """Wrap layer-3 bytes in the link header of ``lt`` (None: not representable)."""
    mac = bytes([2, 0, 0, 0, i >> 8 & 255, i & 255])
    is_ip = ethertype in (0x0800, 0x86DD)
    if lt == 113:  # SLL: packet type, ARPHRD, halen, 8-byte address, protocol
        return struct.pack(">HHH8sH", i % 5, 1, 6, mac, ethertype) + l3
    if lt == 276:  # SLL2: protocol, reserved, ifindex, ARPHRD, packet type, halen, address
        return struct.pack(">HHIHBB8s", ethertype, 0, 1 + i % 3, 1, i % 5, 6, mac) + l3
    if lt == 0 and is_ip:  # BSD null: address family in host byte order (either)
        fam = 2 if ethertype == 0x0800 else (24, 28, 30, 10)[i % 4]
        return struct.pack("<I" if i % 2 else ">I", fam) + l3
    if lt == 101 and is_ip:
        return l3
    return None


def _link_fields(lt: int, link: list[Field]) -> list[Field]:
    return {1: link, 113: [(0, 2), (2, 2), (4, 2), (14, 2)], 276: [(0, 2), (10, 1), (11, 1)]}.get(
        lt, [(0, 4)] if lt == 0 else []
    )


def _crafted() -> list[Packet]:
    """Ethernet frames covering every decoder path (scapy builds them once per session)."""
    mac = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
    a6, b6 = "2001:db8::1", "2001:db8::2"
    pk: list[Packet] = []
    pk += Session().http().pkts
    pk += Session(cport=40001, sport=502).handshake().c2s("PA", b"\x00\x01" * 6).s2c("R").pkts
    pk += Session(client="10.1.1.21", cport=40002).c2s("S").s2c("RA").pkts
    pk += Session(cport=40003).c2s("FSRPAUEC").c2s("SF").c2s("SR").pkts
    dns = DNS(rd=1, qd=DNSQR(qname="plc.example"))
    pk += [udp("10.1.1.20", "10.1.2.53", 5353, 53, 0, bytes(dns))]
    pk += [udp("10.1.2.53", "10.1.1.20", 53, 5353, 0, bytes(dns))]
    ping = ICMP(id=7, seq=1) / b"ping"
    pk += [Ether(**mac) / IP(src="10.1.1.20", dst="10.1.2.10") / ping]
    pk += [Ether(**mac) / IP(src="10.1.2.10", dst="10.1.1.20") / ICMP(type=0) / ping]
    pk += [Ether(**mac) / IP(src="10.1.1.20", dst="10.1.2.10") / ICMP(type=13)]
    pk += [
        Ether(**mac) / IP(src="10.1.2.10", dst="10.1.1.20") / ICMP(type=3, code=3) / IP() / UDP()
    ]
    pk += [Ether(**mac) / IP(src="10.1.1.22", dst="10.1.2.10", options=[IPOption_RR()]) / TCP()]
    pk += [Ether(**mac) / IP(src="10.1.1.23", dst="10.1.2.10", len=0) / TCP(flags="S")]
    pk += [Ether(**mac) / IP(src="10.1.1.24", dst="10.1.2.10") / GRE() / IP() / UDP()]
    pk += [Ether(**mac) / IP(src="10.1.1.25", dst="10.1.2.10", proto=200) / Raw(b"x" * 20)]
    pk += [Ether(**mac) / IP(src="10.1.1.26", dst="10.1.2.10") / SCTP(sport=9, dport=9)]
    pk[-1] = pk[-1] / SCTPChunkInit()
    big = IP(src="10.1.1.27", dst="10.1.2.10", id=77) / UDP(sport=1, dport=2) / (b"F" * 200)
    pk += [Ether(**mac) / f for f in fragment(big, fragsize=64)]
    pk += [Ether(**mac) / Dot1Q(vlan=10) / IP(src="10.1.1.28", dst="10.1.2.10") / TCP(flags="S")]
    pk += [Ether(**mac) / Dot1AD(vlan=20) / Dot1Q(vlan=30) / IPv6(src=a6, dst=b6) / UDP()]
    pk += [Ether(**mac) / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IP() / ICMP()]
    pk += [Ether(**mac) / Dot1Q(vlan=5) / ARP(psrc="10.1.1.1", pdst="10.1.1.2")]
    pk += [Ether(**mac) / IPv6(src=a6, dst=b6) / TCP(sport=40000, dport=443, flags="S")]
    pk += [Ether(**mac) / IPv6(src=b6, dst=a6) / TCP(sport=443, dport=40000, flags="SA")]
    ext = IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt()
    pk += [Ether(**mac) / IPv6(src=a6, dst=b6) / ext / UDP(sport=7, dport=7) / b"ext"]
    pk += [Ether(**mac) / IPv6(src=a6, dst=b6, nh=51) / Raw(bytes([17, 1]) + b"\0" * 10)]
    pk[-1] = pk[-1] / UDP(sport=8, dport=8)
    big6 = IPv6(src=a6, dst=b6) / IPv6ExtHdrFragment(id=9) / UDP(sport=3, dport=4) / (b"G" * 300)
    pk += [Ether(**mac) / f for f in fragment6(big6, 120)]
    pk += [Ether(**mac) / IPv6(src=a6, dst=b6) / ICMPv6EchoRequest(id=1, seq=1)]
    pk += [Ether(**mac) / IPv6(src=b6, dst=a6) / ICMPv6EchoReply(id=1, seq=1)]
    pk += [Ether(**mac) / IPv6(src=a6, dst="ff02::1:ff00:2") / ICMPv6ND_NS(tgt=b6)]
    pk += [Ether(**mac) / ARP(op=1, psrc="10.1.1.20", pdst="10.1.1.1")]
    pk += [Ether(**mac) / ARP(op=2, psrc="10.1.1.1", hwsrc="02:00:00:00:00:09")]
    pk += [Ether(**mac) / ARP(op=1, psrc="10.1.1.9", pdst="10.1.1.9")]
    pk += [Dot3(src=mac["src"], dst="01:80:c2:00:00:00") / LLC() / STP()]
    pk += [Ether(dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x02\x07\x04" + b"\0" * 30)]
    pk += [Ether(**mac, type=0x8892) / Raw(b"profinet" * 4)]
    return pk


def _shared(limit_per_file: int = 60, max_len: int = 600) -> list[tuple[int, bytes]]:
    """(link type, frame) of the first packets of a few shared captures, when present."""
    names = (
        "chrissanders_packets/arppoison.pcapng",
        "chrissanders_packets/dns_axfr.pcapng",
        "chrissanders_packets/ppa1e_history_5bf3c57/portscan.pcap",
        "stratosphere_slips/test12-icmp-portscan.pcap",
        "suricata_verify/modbus/modbus.pcap",
        "suricata_verify/dnp3-flood/input.pcap",
        "iti_ics_security_tools/s7/snap7_s300_everything.pcapng",
    )
    out: list[tuple[int, bytes]] = []
    for name in names:
        path = SHARED / name
        if not path.is_file():
            continue
        got = 0
        with CaptureReader(path) as cap:
            for b in cap.batches():
                buf = bytes(b.buf)
                for o, cl, lt in zip(
                    b.data_off.tolist(), b.caplen.tolist(), b.linktype.tolist(), strict=True
                ):
                    if cl <= max_len and got < limit_per_file:
                        out.append((int(lt), buf[o : o + cl]))
                        got += 1
    return out


@functools.cache
def seed_corpus() -> dict[int, tuple[Seed, ...]]:
    """Seeds per link type: 1, 113, 276, 0, 101 and the unsupported 147."""
    frames = [(1, bytes(p)) for p in _crafted()] + _shared()
    l3s: list[tuple[int, bytes, list[Field]]] = []
    by_lt: dict[int, list[Seed]] = {lt: [] for lt in (1, 113, 276, 0, 101, 147)}
    for lt, data in frames:
        if lt == 1:
            by_lt[1].append(Seed(data, tuple(_field_list(1, data))))
            by_lt[147].append(Seed(data, ()))
            got = _strip_ethernet(data)
            if got is not None:
                l3s.append(got)
        elif lt in (101, 228):  # raw IPv4 (the dnp3 flood capture)
            et = 0x86DD if data and data[0] >> 4 == 6 else 0x0800
            l3s.append((et, data, []))
    for i, (et, l3, _) in enumerate(l3s):
        for lt in (113, 276, 0, 101):
            framed = _reframe(et, l3, lt, i)
            if framed is not None:
                by_lt[lt].append(Seed(framed, tuple(_field_list(lt, framed))))
    return {lt: tuple(s) for lt, s in by_lt.items()}


def _field_list(lt: int, data: bytes) -> list[Field]:
    if lt == 1:
        got = _strip_ethernet(data)
        if got is None:
            return []
        et, l3, link = got
        return link + _l3_fields(data, len(data) - len(l3), et)
    hdr = {113: 16, 276: 20, 0: 4, 101: 0}[lt]
    if lt in (113, 276):
        et = int.from_bytes(data[14:16] if lt == 113 else data[0:2], "big")
    else:
        et = 0x86DD if len(data) > hdr and data[hdr] >> 4 == 6 else 0x0800
    return _link_fields(lt, []) + _l3_fields(data, hdr, et)


# ================================================================ mutation

EXTREMES = {
    1: (0x00, 0x01, 0x0F, 0x40, 0x45, 0x4F, 0x60, 0x7F, 0x80, 0xFF, 0x06, 0x11, 0x2C, 0x3A),
    2: (0, 1, 7, 8, 19, 20, 40, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF, 0x0800, 0x86DD, 0x8100, 0x2000),
    4: (0, 1, 2, 10, 24, 30, 0x02000000, 0x7FFFFFFF, 0xFFFFFFFF),
}


def mutants(seeds: tuple[Seed, ...], n: int, seed: int) -> list[tuple[bytes, int]]:
    """``n`` deterministic mutants of ``seeds`` as (captured bytes, wire length)."""
    rng = np.random.default_rng(seed)
    rows: list[list[int]] = rng.integers(0, 1 << 30, size=(n, 12), dtype=np.int64).tolist()
    pool = rng.bytes(1 << 16)
    npool, nseeds = len(pool) - 512, len(seeds)
    out: list[tuple[bytes, int]] = []
    for r in rows:
        s = seeds[r[0] % nseeds]
        b = bytearray(s.data)
        wl = -1  # -1: wire length = captured length at the end
        n_ops = 1 + (r[1] % 4 == 0) + (r[1] % 16 == 0)
        for k in range(n_ops):
            x, y, z = r[2 + 3 * k], r[3 + 3 * k], r[4 + 3 * k]
            op = x % 100
            hdr = min(len(b), HEADER_BYTES) if y % 8 else len(b)
            if op < 8:  # untouched: keeps real flows alive between the mutants
                pass
            elif op < 28 and hdr:  # bit flips
                for j in range(1 + z % 3):
                    pos = (y >> (4 * j)) % hdr
                    b[pos] ^= 1 << ((z >> (3 * j + 2)) & 7)
            elif op < 42 and hdr:  # byte overwrites: random or interesting values
                for j in range(1 + z % 4):
                    pos = (y >> (3 * j)) % hdr
                    b[pos] = pool[(z + j) % npool] if (z >> 8) & 1 else EXTREMES[1][(z >> j) % 14]
            elif op < 58 and s.fields:  # a length/type/fragment field set to an extreme
                off, width = s.fields[y % len(s.fields)]
                if off + width <= len(b):
                    vals = EXTREMES[width]
                    old = int.from_bytes(b[off : off + width], "big")
                    choice = z % (len(vals) + 4)
                    if choice < len(vals):
                        v = vals[choice]
                    elif choice == len(vals):
                        v = old + 1
                    elif choice == len(vals) + 1:
                        v = old - 1
                    else:
                        v = (z >> 5) ^ old
                    b[off : off + width] = (v % (1 << 8 * width)).to_bytes(width, "big")
            elif op < 68:  # snap truncation: caplen < wirelen
                if wl < 0:
                    wl = len(b)
                del b[y % (len(b) + 1) :]
            elif op < 76:  # real truncation: caplen == wirelen, headers lie
                del b[y % (len(b) + 1) :]
                wl = -1
            elif op < 80:  # garbage
                ln = y % 160
                b = bytearray(pool[z % npool : z % npool + ln])
                wl = -1 if z & 1 else ln + (z >> 3) % 2000
            elif op < 86 and hdr:  # insert or delete a few header bytes (shifts everything)
                pos, ln = y % hdr, 1 + z % 8
                if z & 16:
                    del b[pos : pos + ln]
                else:
                    b[pos:pos] = pool[(z >> 5) % npool : (z >> 5) % npool + ln]
            elif op < 92:  # splice: this seed's head, another seed's tail
                other = seeds[z % nseeds].data
                b = b[: y % (len(b) + 1)] + other[(z >> 7) % (len(other) + 1) :]
            elif op < 97:  # odd wire lengths: shorter than captured, or far longer
                wl = (len(b) // (1 + z % 4)) if y & 1 else len(b) + 1 + z % 70000
                if y & 2:
                    wl = 0
            else:  # overwrite a whole run of header bytes with zeros or ones
                pos, ln = y % (hdr + 1), 1 + z % 24
                b[pos : pos + ln] = (b"\xff" if z & 32 else b"\0") * len(b[pos : pos + ln])
        out.append((bytes(b), len(b) if wl < 0 else wl))
    return out


def timestamps(n: int, seed: int) -> list[int]:
    """Non-decreasing capture times: small gaps, repeats, and jumps past every timeout."""
    rng = np.random.default_rng(seed)
    gap = rng.exponential(0.02, n)
    gap[rng.random(n) < 0.05] = 0.0
    jump = rng.random(n) < 0.01
    gap[jump] = rng.uniform(0.6, 8.0, int(jump.sum()))
    us = np.cumsum((gap * 1e6).astype(np.int64))
    return (T0 + us * 1000).tolist()


# ================================================================ writers (struct, fast)


def write_pcap(path: Path, lt: int, pkts: list[tuple[bytes, int]], ts: list[int]) -> None:
    pack = struct.Struct("<IIII").pack
    parts = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, lt)]
    for (data, wl), t in zip(pkts, ts, strict=True):
        sec, frac = divmod(t, NS)
        parts += (pack(sec, frac // 1000, len(data), wl), data)
    path.write_bytes(b"".join(parts))


def ng_block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def ng_header(lts: list[int]) -> bytes:
    shb = ng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    return shb + b"".join(ng_block(1, struct.pack("<HHI", lt, 0, 0)) for lt in lts)


def epb(iface: int, ts_ns: int, data: bytes, wl: int) -> bytes:
    us = ts_ns // 1000
    pad = b"\0" * (-len(data) % 4)
    n = 32 + len(data) + len(pad)
    head = struct.pack("<IIIIIII", 6, n, iface, us >> 32, us & 0xFFFFFFFF, len(data), wl)
    return head + data + pad + struct.pack("<I", n)


def write_pcapng(
    path: Path, lts: list[int], pkts: list[tuple[int, bytes, int]], ts: list[int]
) -> None:
    """pcapng with one interface per link type; pkts are (interface, data, wirelen)."""
    parts = [ng_header(lts)]
    parts += [epb(i, t, d, wl) for (i, d, wl), t in zip(pkts, ts, strict=True)]
    path.write_bytes(b"".join(parts))


# ================================================================ part 1: pipeline fuzz


@dataclass(frozen=True)
class Case:
    name: str
    fmt: str  # pcap or pcapng
    lts: tuple[int, ...]  # one link type for pcap; one interface each for pcapng
    count: int
    seed: int
    flows: tuple[tuple[str, Any], ...]  # FlowSettings overrides


SHORT = (
    ("tcp_idle", 2.0),
    ("udp_idle", 1.0),
    ("icmp_idle", 1.0),
    ("other_idle", 1.0),
    ("tcp_close_linger", 0.5),
    ("active_timeout", 5.0),
)
CASES = [
    Case(
        "ethernet", "pcap", (1,), 30_000, 1, (*SHORT, ("max_flows", 16), ("batch_bytes", 1 << 16))
    ),
    Case(
        "mixed-pcapng",
        "pcapng",
        (1, 113, 276, 0, 101, 147),
        30_000,
        2,
        (*SHORT, ("max_flows", 64), ("batch_bytes", 70_001)),
    ),
    Case("sll", "pcap", (113,), 20_000, 3, (*SHORT, ("max_flows", 32), ("batch_bytes", 1 << 17))),
    Case("sll2", "pcap", (276,), 15_000, 4, (("max_flows", 16), ("batch_bytes", 100_003))),
    Case("raw", "pcap", (101,), 15_000, 5, (*SHORT, ("max_flows", 1000), ("batch_bytes", 1 << 16))),
    Case("null", "pcap", (0,), 10_000, 6, (*SHORT, ("max_flows", 16), ("batch_bytes", 1 << 18))),
    Case("unknown-147", "pcap", (147,), 2_000, 7, (("batch_bytes", 1 << 16),)),
]


def test_enough_cases() -> None:
    assert sum(c.count for c in CASES) >= 120_000


def build_case(case: Case, tmp_path: Path) -> Path:
    corpus = seed_corpus()
    ts = timestamps(case.count, case.seed)
    path = tmp_path / f"{case.name}.{case.fmt}"
    if case.fmt == "pcap":
        (lt,) = case.lts
        write_pcap(path, lt, mutants(corpus[lt], case.count, case.seed), ts)
        return path
    share = [case.count // len(case.lts)] * len(case.lts)
    share[0] += case.count - sum(share)
    tagged: list[tuple[int, bytes, int]] = []
    for i, (lt, k) in enumerate(zip(case.lts, share, strict=True)):
        tagged += [(i, d, wl) for d, wl in mutants(corpus[lt], k, case.seed * 100 + i)]
    order = np.random.default_rng(case.seed).permutation(len(tagged)).tolist()
    write_pcapng(path, list(case.lts), [tagged[j] for j in order], ts)
    return path


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_mutated_packets_through_pipeline(case: Case, tmp_path: Path) -> None:
    path = build_case(case, tmp_path)
    res = run_capture(str(path), **dict(case.flows))
    st = res.stats
    assert st is not None
    n = case.count
    # every packet read, and in exactly one bucket
    assert st.packets == n
    assert st.ip + st.arp + st.other + st.weird == n
    assert st.capture_weird == 0
    assert sum(f.orig_pkts + f.resp_pkts for f in res.flows) == st.ip
    assert st.flows == len(res.flows)
    assert len(res.arp) == st.arp
    assert len(res.weird) == st.weird
    # weirds are named, layered and point at a real frame
    for w in res.weird:
        assert w.name and w.layer and w.file == str(path)
        assert w.frame is not None and 1 <= w.frame <= n
    assert len({w.frame for w in res.weird}) == len(res.weird)
    # flows: valid states and reasons, released in end order
    ends = [f.end for f in res.flows]
    assert ends == sorted(ends)
    for f in res.flows:
        assert f.conn_state in CONN_STATES, f
        assert f.end_reason in END_REASONS, f
        assert f.start <= f.end and f.orig_pkts >= 0 and f.resp_pkts >= 0
        assert f.orig_pkts + f.resp_pkts > 0
    if "tcp_idle" not in dict(case.flows) and st.ip:  # long timeouts, 16 slots: bound bites
        assert st.evicted > 0
    if case.lts == (147,):
        assert st.weird == n and {w.name for w in res.weird} == {"unsupported_link_type_147"}
    # JSON round trips on a sample
    for f in res.flows[:: max(1, len(res.flows) // 500)]:
        assert FlowRecord.from_json(f.to_json()) == f
    for w in res.weird[:: max(1, len(res.weird) // 200)]:
        assert Weird.from_json(w.to_json()) == w
    for a in res.arp[:: max(1, len(res.arp) // 100)]:
        assert ArpEvent.from_json(a.to_json()) == a


def test_decoder_on_tight_buffers() -> None:
    """Decode mutants whose buffer ends exactly at the packet: any over-read would raise."""
    corpus = seed_corpus()
    total = 0
    for k, lt in enumerate((1, 113, 276, 0, 101)):
        for data, wl in mutants(corpus[lt], 600, 1000 + k):
            raw = RawBatch(
                data,
                np.zeros(1, np.int64),
                np.array([len(data)], np.int64),
                np.array([wl], np.int64),
                np.array([T0], np.int64),
                np.array([lt], np.int64),
                1,
            )
            d = decode(raw)
            kind = int(d.kind[0])
            assert 0 <= kind <= 3
            assert (kind == KIND_WEIRD) == (int(d.weird[0]) != 0)
            if kind == KIND_WEIRD:
                assert WEIRD_NAMES[int(d.weird[0])]
            if kind == KIND_IP:
                assert int(d.ver[0]) in (4, 6)
            total += 1
    assert total == 3000


def test_disordered_timestamps_still_account_for_every_packet(tmp_path: Path) -> None:
    """Timestamps jumping back and forth (and absurd ones): no crash, nothing lost.

    End order is not asserted here: with time running backwards across batches a flow can
    end before one already released, and the table cannot know without unbounded buffering.
    """
    n = 15_000
    rng = np.random.default_rng(11)
    pkts = mutants(seed_corpus()[1], n, 11)
    us = np.cumsum(rng.integers(-300_000, 400_000, n))
    ts = T0 + us * 1000
    ts[rng.random(n) < 0.002] = 0
    ts[rng.random(n) < 0.002] = 0xFFFFFFFF * NS
    path = tmp_path / "disorder.pcap"
    write_pcap(path, 1, pkts, ts.tolist())
    res = run_capture(str(path), **dict(SHORT), max_flows=16, batch_bytes=1 << 16)
    st = res.stats
    assert st is not None
    assert st.packets == n == st.ip + st.arp + st.other + st.weird
    assert sum(f.orig_pkts + f.resp_pkts for f in res.flows) == st.ip
    for f in res.flows:
        assert f.conn_state in CONN_STATES and f.end_reason in END_REASONS
        assert f.start <= f.end
    for f in res.flows[:: max(1, len(res.flows) // 300)]:
        assert FlowRecord.from_json(f.to_json()) == f


# ================================================================ part 2: damaged capture files

Pkt = tuple[int, int, int, int, bytes, int]  # frame, ts_ns, caplen, wirelen, data, linktype


@dataclass(frozen=True)
class Built:
    """A small valid capture and where its pieces end."""

    data: bytes
    ends: tuple[int, ...]  # end offset of each packet's record / block
    bounds: frozenset[int]  # offsets where the file may end cleanly
    starts: tuple[int, ...]  # start offset of every record / block after the file header
    packets: tuple[Pkt, ...]  # what the reader yields for the whole file


def _payload(i: int, n: int) -> bytes:
    return bytes((i * 31 + k * 7) & 0xFF for k in range(n))


SMALL = [
    (_payload(i, n), wl)
    for i, (n, wl) in enumerate(
        [(60, 60), (1, 1), (0, 60), (131, 1514), (17, 17), (200, 200), (3, 64)]
    )
]


def small_pcap(order: str = "<", nano: bool = False) -> Built:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)]
    pos, ends, starts = 24, [], []
    for i, (d, wl) in enumerate(SMALL):
        ts = T0 + i * 1_234_567_000 + (789 if nano else 0)
        sec, frac = divmod(ts, NS)
        out.append(struct.pack(order + "IIII", sec, frac if nano else frac // 1000, len(d), wl))
        out.append(d)
        starts.append(pos)
        pos += 16 + len(d)
        ends.append(pos)
    return _built(b"".join(out), ends, {24, *ends}, starts)


def _blk(order: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def _opt(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def small_pcapng() -> Built:
    """Two sections (little then big endian), three interfaces, EPB/SPB/PB, skipped blocks."""
    blocks: list[tuple[bytes, bool]] = []  # (block, carries a packet)
    for order, section in (("<", 0), (">", 1)):
        shb = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)
        shb += _opt(order, 4, b"fuzz") + _opt(order, 0, b"")  # shb_userappl
        blocks.append((_blk(order, 0x0A0D0D0A, shb), False))
        if section == 0:
            name = _opt(order, 2, b"eth0") + _opt(order, 0, b"")
            blocks.append((_blk(order, 1, struct.pack(order + "HHI", 1, 0, 0) + name), False))
            ns = _opt(order, 9, b"\x09") + _opt(order, 0, b"")
            blocks.append((_blk(order, 1, struct.pack(order + "HHI", 101, 0, 96) + ns), False))
        else:
            blocks.append((_blk(order, 1, struct.pack(order + "HHI", 113, 0, 0)), False))
        for i, (d, wl) in enumerate(SMALL):
            iface = (i // 2) % 2 if section == 0 else 0
            ts_ns = T0 + (i + 7 * section) * 1_000_000
            ticks = ts_ns if section == 0 and iface == 1 else ts_ns // 1000
            kind = i % 4 if section == 0 else 0
            if kind == 1 and section == 0:  # Simple Packet Block: interface 0
                body = struct.pack(order + "I", wl) + d
                blocks.append((_blk(order, 3, body), True))
            elif kind == 3:  # obsolete Packet Block, 16-bit interface id
                head = struct.pack(
                    order + "HHIIII", iface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(d), wl
                )
                blocks.append((_blk(order, 2, head + d), True))
            else:
                head = struct.pack(
                    order + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(d), wl
                )
                blocks.append((_blk(order, 6, head + d), True))
            if i == 2:
                nrb = struct.pack(order + "HH", 1, 8) + bytes([10, 0, 0, 1]) + b"h.l\0"
                blocks.append((_blk(order, 4, nrb + struct.pack(order + "HH", 0, 0)), False))
            if i == 4:
                blocks.append((_blk(order, 0xBAD, struct.pack(order + "I", 32473) + b"x"), False))
                blocks.append((_blk(order, 5, struct.pack(order + "III", 0, 0, 0)), False))
    pos, ends, starts, bounds = 0, [], [], set()
    for b, is_pkt in blocks:
        starts.append(pos)
        pos += len(b)
        bounds.add(pos)
        if is_pkt:
            ends.append(pos)
    return _built(b"".join(b for b, _ in blocks), ends, bounds, starts[1:])


def _built(data: bytes, ends: list[int], bounds: set[int], starts: list[int]) -> Built:
    pkts, cap = read_all(data)
    assert cap.weirds == [] and len(pkts) == len(ends)
    return Built(data, tuple(ends), frozenset(bounds), tuple(starts), tuple(pkts))


class Trickle(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes per read (a slow pipe)."""

    def __init__(self, data: bytes, step: int) -> None:
        self._b = io.BytesIO(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, mv: Any) -> int:
        chunk = self._b.read(min(len(mv), self._step))
        mv[: len(chunk)] = chunk
        return len(chunk)


def read_all(data: bytes, batch_bytes: int = 1 << 16, step: int = 0) -> tuple[list[Pkt], Any]:
    """Every packet as a Pkt, and the reader; batches are checked as they come."""
    out: list[Pkt] = []
    src = Trickle(data, step) if step else io.BytesIO(data)
    with CaptureReader(src, batch_bytes=batch_bytes) as cap:
        last = 0
        for b in cap.batches():
            n = len(b)
            assert n > 0 and b.first_frame > last
            for col in (b.data_off, b.caplen, b.wirelen, b.ts_ns, b.linktype):
                assert col.shape == (n,)
            assert int((b.data_off + b.caplen).max()) <= len(b.buf)
            assert int(b.data_off.min()) >= 0 and int(b.caplen.min()) >= 0
            buf = bytes(b.buf)
            for i, (o, cl, wl, ts, lt) in enumerate(
                zip(
                    b.data_off.tolist(),
                    b.caplen.tolist(),
                    b.wirelen.tolist(),
                    b.ts_ns.tolist(),
                    b.linktype.tolist(),
                    strict=True,
                )
            ):
                out.append((b.first_frame + i, ts, cl, wl, buf[o : o + cl], lt))
            last = b.first_frame + n - 1
        assert cap.packets == len(out)
    for w in cap.weirds:
        assert w.name in CAPTURE_WEIRDS and w.frame >= 1 and w.detail
    assert sum(cap.weird_counts.values()) >= len(cap.weirds)
    return out, cap


def before(built: Built, offset: int) -> list[Pkt]:
    """The packets whose record/block ends at or before ``offset`` (the undamaged ones)."""
    return [p for p, e in zip(built.packets, built.ends, strict=True) if e <= offset]


@functools.cache
def samples() -> dict[str, Built]:
    return {
        "pcap-le-us": small_pcap("<", False),
        "pcap-be-ns": small_pcap(">", True),
        "pcapng": small_pcapng(),
    }


SAMPLE_NAMES = ["pcap-le-us", "pcap-be-ns", "pcapng"]
BATCHES = [(90, 0), (1 << 16, 0), (1 << 16, 7)]  # (batch_bytes, stream read size)


def test_samples_are_what_was_written() -> None:
    for name, built in samples().items():
        want = [(d, wl) for d, wl in SMALL]
        if name == "pcapng":
            want = want * 2
            assert [p[5] for p in built.packets] == [1, 1, 101, 101, 1, 1, 101] + [113] * 7
        assert [(p[4], p[3]) for p in built.packets] == want
        ts = [p[1] for p in built.packets]
        assert ts == sorted(ts) and ts[0] >= T0
        assert [p[0] for p in built.packets] == list(range(1, len(built.packets) + 1))


@pytest.mark.parametrize("name", SAMPLE_NAMES)
@pytest.mark.parametrize("batch,step", BATCHES)
def test_truncated_at_every_offset(name: str, batch: int, step: int) -> None:
    built = samples()[name]
    for k in range(len(built.data) + 1):
        data = built.data[:k]
        if k < 4:
            with pytest.raises(CaptureError):
                read_all(data, batch, step)
            continue
        pkts, cap = read_all(data, batch, step)
        assert pkts == before(built, k), k
        if k in built.bounds:
            assert cap.weirds == [], k
        else:
            assert [w.name for w in cap.weirds] in (
                ["truncated_record"],
                ["truncated_file_header"],
            ), (k, cap.weirds)
            assert cap.weirds[0].frame == len(pkts) + 1


def test_gzip_truncated_at_every_offset() -> None:
    built = samples()["pcapng"]
    gz = gzip.compress(built.data, mtime=0)
    for k in range(len(gz) + 1):
        try:
            pkts, cap = read_all(gz[:k], 128)
        except CaptureError:
            assert k < len(gz)
            continue
        assert pkts == list(built.packets[: len(pkts)]), k
        if k < len(gz):
            assert cap.weirds, k
        else:
            assert cap.weirds == [] and pkts == list(built.packets)


PCAP_LIMIT = 65535 + (64 << 10)  # snaplen + 64 KiB
CAPLENS = (0, 1, 15, 16, 17, PCAP_LIMIT, PCAP_LIMIT + 1, 1 << 20, 0x7FFFFFFF, 0xFFFFFFFF)


@pytest.mark.parametrize("name", ["pcap-le-us", "pcap-be-ns"])
def test_pcap_record_length_fields_corrupted(name: str) -> None:
    built = samples()[name]
    order = "<" if name.startswith("pcap-le") else ">"
    for i, start in enumerate(built.starts):
        cl = built.packets[i][2]
        for v in (*CAPLENS, cl - 1, cl + 1, cl + 16, len(built.data)):
            if v < 0 or v == cl:
                continue
            data = bytearray(built.data)
            struct.pack_into(order + "I", data, start + 8, v)
            for batch, step in BATCHES:
                pkts, cap = read_all(bytes(data), batch, step)
                assert pkts[:i] == list(built.packets[:i]), (i, v)
                if v > PCAP_LIMIT:
                    assert pkts == list(built.packets[:i])
                    assert [(w.frame, w.name) for w in cap.weirds] == [(i + 1, "bad_record_length")]
                # (a plausible wrong length can realign by chance: pcap has no redundancy)
        # the wire length and timestamps are data, not structure: nothing is lost
        for off in (0, 4, 12):
            data = bytearray(built.data)
            struct.pack_into(order + "I", data, start + off, 0xFFFFFFFF)
            pkts, cap = read_all(bytes(data))
            assert cap.weirds == [] and len(pkts) == len(built.packets)
            assert [p[4] for p in pkts] == [p[4] for p in built.packets]


BLOCK_LENGTHS = (0, 4, 8, 11, 12, 13, 28, 0x7FFFFFFC, 0xFFFFFFFF, (32 << 20) + 4)


def _ng_order(built: Built, pos: int) -> str:
    """Byte order of the section the block at ``pos`` is in (the sample's 2nd is big endian)."""
    second = built.data.index(b"\x0a\x0d\x0d\x0a", 4)
    return "<" if pos < second else ">"


def test_pcapng_block_length_fields_corrupted() -> None:
    built = samples()["pcapng"]
    data0 = built.data
    for start in (0, *built.starts):
        order = _ng_order(built, start) if start else "<"
        bl = struct.unpack_from(order + "I", data0, start + 4)[0]
        undamaged = before(built, start)
        for where, v in [(4, x) for x in (*BLOCK_LENGTHS, bl - 4, bl + 4, bl + 1, bl + 2)] + [
            (bl - 4, x) for x in (0, bl - 4, bl + 4, 0xFFFFFFFF)
        ]:
            if v == bl:
                continue
            data = bytearray(data0)
            struct.pack_into(order + "I", data, start + where, v)
            for batch, step in BATCHES:
                pkts, cap = read_all(bytes(data), batch, step)
                assert pkts[: len(undamaged)] == undamaged, (start, where, v)
                if len(pkts) < len(built.packets):
                    assert cap.weirds, (start, where, v)  # never a silent loss


SPB_FRAMES = (2, 6)  # Simple Packet Blocks of the pcapng sample (no timestamp of their own)


def _no_spb_ts(pkts: list[Pkt]) -> list[Pkt]:
    """Packets with the inherited timestamp of Simple Packet Blocks blanked.

    An SPB takes the timestamp of the packet before it; when that one was skipped as broken,
    the reader falls back to an older one (0 at the start of the file).
    """
    return [(f, -1 if f in SPB_FRAMES else t, *rest) for f, t, *rest in pkts]


def test_pcapng_packet_fields_corrupted_skip_only_that_packet() -> None:
    """A captured length beyond the block or an unknown interface skips just that packet."""
    built = samples()["pcapng"]
    data0 = built.data
    checked = 0
    for start in built.starts:
        order = _ng_order(built, start)
        btype, bl = struct.unpack_from(order + "II", data0, start)
        if btype not in (2, 6):
            continue
        frame = next(i for i, e in enumerate(built.ends) if e == start + bl) + 1
        others = [p for p in built.packets if p[0] != frame]
        room = bl - 32
        for at, width, v, weird in (
            (20, 4, room + 1, "bad_record_length"),
            (20, 4, 0xFFFFFFFF, "bad_record_length"),
            (8, 2 if btype == 2 else 4, 7, "unknown_interface"),
            (8, 2 if btype == 2 else 4, 0xFFFF if btype == 2 else 0xFFFFFFFF, "unknown_interface"),
        ):
            data = bytearray(data0)
            data[start + at : start + at + width] = v.to_bytes(
                width, "big" if order == ">" else "little"
            )
            for batch, step in BATCHES:
                pkts, cap = read_all(bytes(data), batch, step)
                assert _no_spb_ts(pkts) == _no_spb_ts(others), (start, at, v)
                assert [(w.frame, w.name) for w in cap.weirds] == [(frame, weird)]
            checked += 1
        # a captured length shorter than written just captures less
        data = bytearray(data0)
        struct.pack_into(order + "I", data, start + 20, 0)
        pkts, cap = read_all(bytes(data))
        assert cap.weirds == [] and pkts[frame - 1][2] == 0 and len(pkts) == len(built.packets)
    assert checked >= 4 * 10


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_random_byte_damage(name: str) -> None:
    """Seeded flips and overwrites anywhere in the file: only a bad file header may raise."""
    built = samples()[name]
    size = len(built.data)
    rng = np.random.default_rng(sum(name.encode()))
    n = 3000
    rows = rng.integers(0, 1 << 30, size=(n, 9), dtype=np.int64).tolist()
    head_end = 24 if name.startswith("pcap") else 12
    raised = 0
    for r in rows:
        data = bytearray(built.data)
        k = 1 + r[0] % 4
        positions = []
        for j in range(k):
            pos = r[1 + j] % (size if r[0] & 32 else min(size, 64))
            positions.append(pos)
            if r[5 + j] & 1:
                data[pos] ^= 1 << ((r[5 + j] >> 1) & 7)
            else:
                data[pos] = (r[5 + j] >> 1) & 0xFF
        if r[0] & 64:  # and cut the end off
            del data[r[8] % (size + 1) :]
        first = min(positions)
        batch, step = BATCHES[r[8] % len(BATCHES)]
        try:
            pkts, _ = read_all(bytes(data), batch, step)
        except CaptureError:
            raised += 1
            assert first < head_end or len(data) < 4, (positions, bytes(data[:12]).hex())
            continue
        if first >= head_end:  # the header survived: everything before the damage is intact
            cut = min(first, len(data))
            want = before(built, cut)
            assert pkts[: len(want)] == want, positions
    assert raised < n // 4


FUZZ = settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@FUZZ
@given(
    name=st.sampled_from(SAMPLE_NAMES),
    keep=st.integers(0, 14),
    tail=st.binary(max_size=300),
    how=st.sampled_from(BATCHES),
)
def test_random_tail_after_valid_packets(
    name: str, keep: int, tail: bytes, how: tuple[int, int]
) -> None:
    """Valid header and packets, then random bytes: the valid packets come out exactly."""
    built = samples()[name]
    keep = min(keep, len(built.ends))
    # cut after the file header (and, for pcapng, the first section's interfaces) or a packet
    head = 24 if name.startswith("pcap") else built.starts[2]
    cut = built.ends[keep - 1] if keep else head
    pkts, _ = read_all(built.data[:cut] + tail, *how)
    assert pkts[:keep] == list(built.packets[:keep])


MAGICS = [
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\xc3\xd4",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x0a\x0d\x0d\x0a",
    b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a",
    b"\x0a\x0d\x0d\x0a\x00\x00\x00\x1c\x1a\x2b\x3c\x4d",
    b"\x1f\x8b",
    b"",
]


@FUZZ
@given(magic=st.sampled_from(MAGICS), rest=st.binary(max_size=200), how=st.sampled_from(BATCHES))
def test_random_file_after_magic(magic: bytes, rest: bytes, how: tuple[int, int]) -> None:
    """Anything after a capture magic: a CaptureError from the constructor, or weirds."""
    data = magic + rest
    if magic == b"\x1f\x8b":  # a gzip stream of random bytes, or of a random capture
        data = magic + rest if len(rest) % 2 else gzip.compress(MAGICS[len(rest) % 7] + rest)
    try:
        read_all(data, *how)
    except CaptureError:
        assert magic == b"\x1f\x8b" or not header_ok(data), data[:12].hex()
    else:
        assert magic == b"\x1f\x8b" or header_ok(data), data[:12].hex()


def header_ok(data: bytes) -> bool:
    """Whether a plain capture starts with a pcap magic, or a pcapng one with a valid BOM."""
    if data[:4] in MAGICS[:4]:
        return True
    bom = data[8:12]
    return data[:4] == MAGICS[4] and (len(data) < 12 or bom in (MAGICS[5][8:], MAGICS[6][8:]))


TICKS = (0, 1, (1 << 64) - 1, 1 << 63, (1 << 63) - 1, 1 << 32, 1_700_000_000_000_000)
TSOFFSETS = (0, 1, -1, (1 << 32) - 1, -(1 << 32) + 1, 1 << 31, -(1 << 31), 1 << 40)


def test_pcapng_timestamp_options_at_extremes(tmp_path: Path) -> None:
    """if_tsresol over 0..255, odd if_tsoffset, extreme ticks: the pipeline and JSON hold up."""
    seeds = [s.data for s in seed_corpus()[1][:40]]
    rng = np.random.default_rng(21)
    for trial in range(64):
        nif = 1 + trial % 3
        blocks = [_blk("<", 0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
        for i in range(nif):
            opts = _opt("<", 9, bytes([(trial * 4 + i) % 256]))
            if (trial + i) % 2:
                off = TSOFFSETS[(trial + i) % len(TSOFFSETS)]
                opts += _opt("<", 14, struct.pack("<q", off))
            opts += _opt("<", 0, b"")
            blocks.append(_blk("<", 1, struct.pack("<HHI", 1, 0, 0) + opts))
        picks = rng.integers(0, 1 << 30, size=(100, 2)).tolist()
        for k, (a, b) in enumerate(picks):
            d = seeds[a % len(seeds)]
            ticks = TICKS[b % len(TICKS)] + (k if b % len(TICKS) == 6 else 0)
            head = struct.pack("<IIIII", k % nif, ticks >> 32, ticks & 0xFFFFFFFF, len(d), len(d))
            blocks.append(_blk("<", 6, head + d))
        path = tmp_path / f"ts{trial}.pcapng"
        path.write_bytes(b"".join(blocks))
        res = run_capture(str(path), tcp_idle=2.0, udp_idle=1.0, max_flows=16)
        st = res.stats
        assert st is not None
        assert st.packets == 100 == st.ip + st.arp + st.other + st.weird
        assert st.capture_weird == sum(w.name == "bad_interface_option" for w in res.weird)
        assert sum(f.orig_pkts + f.resp_pkts for f in res.flows) == st.ip
        for f in res.flows:
            assert f.conn_state in CONN_STATES and f.end_reason in END_REASONS
            assert FlowRecord.from_json(f.to_json()) == f
        for w in res.weird:
            assert Weird.from_json(w.to_json()) == w
