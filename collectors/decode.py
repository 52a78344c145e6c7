"""Batch packet decoder: link layer, VLAN, IPv4/IPv6, TCP/UDP/ICMP, ARP — all at once.

The decoder never builds a Python object per packet. It gathers header bytes for a whole batch
with numpy fancy indexing and produces a :class:`Decoded` struct of arrays (one row a packet).
A packet that violates its headers' rules is marked ``KIND_WEIRD`` with a reason code; nothing
raises. Every packet ends in exactly one kind, so counts always add up (no silent loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from collectors.linktypes import ETH_ARP, ETH_IPV4, ETH_IPV6, LINKTYPES
from collectors.pcapio import RawBatch

KIND_IP, KIND_ARP, KIND_OTHER, KIND_WEIRD = 0, 1, 2, 3
"""Packet kinds: IP (goes to the flow table), ARP (an event), other L2 (counted), weird."""

FRAG_NONE, FRAG_FIRST, FRAG_LATER = 0, 1, 2

WEIRD_NAMES: list[str] = [""]
_WEIRD_CODE: dict[str, int] = {}


def weird_code(name: str) -> int:
    """Small integer code of a weird name (names are registered on first use)."""
    code = _WEIRD_CODE.get(name)
    if code is None:
        code = _WEIRD_CODE[name] = len(WEIRD_NAMES)
        WEIRD_NAMES.append(name)
    return code


V4_MAPPED = np.uint64(0xFFFF_0000_0000)
IPV4_HDR = np.dtype(
    [
        ("vihl", "u1"),
        ("tos", "u1"),
        ("len", ">u2"),
        ("id", ">u2"),
        ("frag", ">u2"),
        ("ttl", "u1"),
        ("proto", "u1"),
        ("csum", ">u2"),
        ("src", ">u4"),
        ("dst", ">u4"),
    ]
)
IPV6_HDR = np.dtype(
    [
        ("vtc", "u1"),
        ("tcfl", "u1"),
        ("fl", ">u2"),
        ("plen", ">u2"),
        ("nh", "u1"),
        ("hlim", "u1"),
        ("shi", ">u8"),
        ("slo", ">u8"),
        ("dhi", ">u8"),
        ("dlo", ">u8"),
    ]
)
L4_HDR = np.dtype(
    [
        ("sport", ">u2"),
        ("dport", ">u2"),
        ("w1", ">u4"),
        ("w2", ">u4"),
        ("doff", "u1"),
        ("flags", "u1"),
    ]
)
"""First 14 transport bytes: TCP ports/seq/ack/offset/flags; UDP length = w1 >> 16."""
IPV6_EXT = (0, 43, 60, 135, 139, 140)  # hop-by-hop, routing, dest opts, mobility, HIP, shim6
PORTED = (6, 17, 132)  # TCP, UDP, SCTP carry ports in the first 4 bytes
_NEED = np.zeros(256, dtype=np.int64)  # transport header bytes needed per IP protocol
_NEED[6], _NEED[17], _NEED[1], _NEED[58], _NEED[132] = 20, 8, 4, 4, 12


class Work:
    """Input buffer, per-packet metadata and the output columns filled by the decoders."""

    def __init__(self, raw: RawBatch) -> None:
        n = len(raw)
        self.n = n
        self.u8 = np.frombuffer(raw.buf, dtype=np.uint8)
        self.off = raw.data_off.astype(np.int64, copy=False)
        self.caplen = raw.caplen.astype(np.int64, copy=False)
        self.end = self.off + self.caplen
        self.kind = np.full(n, KIND_OTHER, dtype=np.uint8)
        self.weird = np.zeros(n, dtype=np.uint8)
        self.ethertype = np.full(n, 0xFFFF, dtype=np.int64)
        self.l3 = np.zeros(n, dtype=np.int64)
        self.vlan = np.full(n, -1, dtype=np.int32)
        self.vlan_inner = np.full(n, -1, dtype=np.int32)
        self.src_mac = np.zeros(n, dtype=np.uint64)
        self.dst_mac = np.zeros(n, dtype=np.uint64)
        self.has_mac = np.zeros(n, dtype=bool)
        self._win: dict[int, np.ndarray] = {}

    # -- byte gathers (callers guarantee bounds) --------------------------------------------
    def be16(self, at: np.ndarray) -> np.ndarray:
        u8 = self.u8
        return (u8[at].astype(np.int64) << 8) | u8[at + 1]

    def be32(self, at: np.ndarray) -> np.ndarray:
        return (self.be16(at) << 16) | self.be16(at + 2)

    def le32(self, at: np.ndarray) -> np.ndarray:
        u8 = self.u8
        return (
            u8[at].astype(np.int64)
            | (u8[at + 1].astype(np.int64) << 8)
            | (u8[at + 2].astype(np.int64) << 16)
            | (u8[at + 3].astype(np.int64) << 24)
        )

    def be48(self, at: np.ndarray) -> np.ndarray:
        return ((self.be16(at) << 32) | self.be32(at + 2)).astype(np.uint64)

    def be64(self, at: np.ndarray) -> np.ndarray:
        return (self.be32(at).astype(np.uint64) << np.uint64(32)) | self.be32(at + 4).astype(
            np.uint64
        )

    def rows(self, at: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Gather ``dtype.itemsize`` bytes at each offset as one structured record each.

        Reads up to the width past short packets (the fields the caller uses are bounds
        checked); a buffer without slack at its end is padded once per batch.
        """
        width = dtype.itemsize
        if not len(at):
            return np.zeros(0, dtype)
        if int(at.max()) + width > len(self.u8):
            self.u8 = np.concatenate([self.u8, np.zeros(64, np.uint8)])
            self._win.clear()
        win = self._win.get(width)
        if win is None:
            win = self._win[width] = sliding_window_view(self.u8, width)
        return win[at].view(dtype).ravel()

    def weird_at(self, idx: np.ndarray, name: str) -> None:
        if len(idx):
            self.kind[idx] = KIND_WEIRD
            self.weird[idx] = weird_code(name)


@dataclass
class Decoded:
    """Decoded columns of one batch; row i is packet ``first_frame + i``."""

    raw: RawBatch
    kind: np.ndarray  # uint8 KIND_*
    weird: np.ndarray  # uint8 code into WEIRD_NAMES (0 = not weird)
    ethertype: np.ndarray
    l3: np.ndarray  # offset of the IP/ARP header in raw.buf
    l4: np.ndarray  # offset of the transport header (IP packets, not later fragments)
    vlan: np.ndarray  # int32, -1 untagged
    vlan_inner: np.ndarray
    src_mac: np.ndarray  # uint64 (48-bit value), valid where has_mac
    dst_mac: np.ndarray
    has_mac: np.ndarray
    ver: np.ndarray  # 4 or 6 (IP packets)
    src_hi: np.ndarray  # uint64 halves of the address; IPv4 as ::ffff:a.b.c.d
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    proto: np.ndarray  # IP protocol of the transport (after IPv6 extension headers)
    sport: np.ndarray  # port, or ICMP type
    dport: np.ndarray  # port, or ICMP code
    flags: np.ndarray  # TCP flags byte (FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32 ECE=64 CWR=128)
    ip_len: np.ndarray  # IP-layer bytes of the packet on the wire
    payload: np.ndarray  # transport payload bytes
    frag: np.ndarray  # FRAG_NONE / FRAG_FIRST / FRAG_LATER
    ip_id: np.ndarray  # IPv4 id or IPv6 fragment id (fragments only)

    def __len__(self) -> int:
        return len(self.kind)


def decode(raw: RawBatch) -> Decoded:
    """Decode every packet of ``raw``; see :class:`Decoded` for the columns."""
    w = Work(raw)
    lt = raw.linktype
    single = len(lt) and lt[0] == lt[-1] and bool((lt == lt[0]).all())
    for code in [int(lt[0])] if single else np.unique(lt).tolist():
        idx = np.arange(len(lt)) if single else np.nonzero(lt == code)[0]
        dec = LINKTYPES.find(int(code))
        if dec is None:
            w.weird_at(idx, f"unsupported_link_type_{int(code)}")
        else:
            dec(w, idx)
    n = w.n
    cols = _IpCols(n)
    ok = w.kind != KIND_WEIRD
    _ipv4(w, cols, np.nonzero(ok & (w.ethertype == ETH_IPV4))[0], raw)
    _ipv6(w, cols, np.nonzero(ok & (w.ethertype == ETH_IPV6))[0], raw)
    arp = np.nonzero((w.kind != KIND_WEIRD) & (w.ethertype == ETH_ARP))[0]
    short = w.end[arp] - w.l3[arp] < 28
    w.weird_at(arp[short], "truncated_arp")
    w.kind[arp[~short]] = KIND_ARP
    _transport(w, cols, raw)
    return Decoded(
        raw,
        w.kind,
        w.weird,
        w.ethertype,
        w.l3,
        cols.l4,
        w.vlan,
        w.vlan_inner,
        w.src_mac,
        w.dst_mac,
        w.has_mac,
        cols.ver,
        cols.src_hi,
        cols.src_lo,
        cols.dst_hi,
        cols.dst_lo,
        cols.proto,
        cols.sport,
        cols.dport,
        cols.flags,
        cols.ip_len,
        cols.payload,
        cols.frag,
        cols.ip_id,
    )


class _IpCols:
    def __init__(self, n: int) -> None:
        z64 = np.zeros(n, dtype=np.int64)
        self.l4 = z64.copy()
        self.ver = np.zeros(n, dtype=np.uint8)
        self.src_hi = np.zeros(n, dtype=np.uint64)
        self.src_lo = np.zeros(n, dtype=np.uint64)
        self.dst_hi = np.zeros(n, dtype=np.uint64)
        self.dst_lo = np.zeros(n, dtype=np.uint64)
        self.proto = np.zeros(n, dtype=np.uint8)
        self.sport = np.zeros(n, dtype=np.int64)
        self.dport = np.zeros(n, dtype=np.int64)
        self.flags = np.zeros(n, dtype=np.uint8)
        self.ip_len = z64.copy()
        self.l4_len = z64.copy()  # bytes from the transport header to the IP payload end
        self.payload = z64.copy()
        self.frag = np.zeros(n, dtype=np.uint8)
        self.ip_id = z64.copy()


def _ipv4(w: Work, c: _IpCols, idx: np.ndarray, raw: RawBatch) -> None:
    short = w.end[idx] - w.l3[idx] < 20
    if short.any():
        w.weird_at(idx[short], "truncated_ipv4_header")
        idx = idx[~short]
    o = w.l3[idx]
    h = w.rows(o, IPV4_HDR)
    vihl = h["vihl"]
    ihl = (vihl & 0x0F).astype(np.int64) * 4
    bad = (vihl >> 4) != 4
    badihl = ~bad & (ihl < 20)
    tot = h["len"].astype(np.int64)
    wire_room = raw.wirelen[idx].astype(np.int64) - (o - w.off[idx])
    tot = np.where(tot == 0, wire_room, tot)  # TSO/offloaded packets carry 0
    badlen = ~bad & ~badihl & ((tot < ihl) | (tot > wire_room))
    trunc = ~bad & ~badihl & ~badlen & (w.end[idx] - o < ihl)
    keep = ~(bad | badihl | badlen | trunc)
    if not keep.all():
        w.weird_at(idx[bad], "bad_ip_version")
        w.weird_at(idx[badihl], "bad_ipv4_header_length")
        w.weird_at(idx[badlen], "bad_ipv4_total_length")
        w.weird_at(idx[trunc], "truncated_ipv4_options")
        idx, o, ihl, tot, h = idx[keep], o[keep], ihl[keep], tot[keep], h[keep]
    w.kind[idx] = KIND_IP
    c.ver[idx] = 4
    c.src_lo[idx] = h["src"].astype(np.uint64) | V4_MAPPED
    c.dst_lo[idx] = h["dst"].astype(np.uint64) | V4_MAPPED
    c.proto[idx] = h["proto"]
    c.ip_len[idx] = tot
    c.l4[idx] = o + ihl
    c.l4_len[idx] = tot - ihl
    fr = h["frag"]
    isfrag = (fr & 0x3FFF) != 0
    if isfrag.any():
        mf = (fr & 0x2000) != 0
        foff = fr & 0x1FFF
        c.frag[idx[foff > 0]] = FRAG_LATER
        c.frag[idx[(foff == 0) & mf]] = FRAG_FIRST
        c.ip_id[idx[isfrag]] = h["id"][isfrag]


def _ipv6(w: Work, c: _IpCols, idx: np.ndarray, raw: RawBatch) -> None:
    short = w.end[idx] - w.l3[idx] < 40
    w.weird_at(idx[short], "truncated_ipv6_header")
    idx = idx[~short]
    o = w.l3[idx]
    h = w.rows(o, IPV6_HDR)
    bad = (h["vtc"] >> 4) != 6
    w.weird_at(idx[bad], "bad_ip_version")
    idx, o, h = idx[~bad], o[~bad], h[~bad]
    plen = h["plen"].astype(np.int64)
    wire_room = raw.wirelen[idx].astype(np.int64) - (o - w.off[idx])
    plen = np.where(plen == 0, wire_room - 40, plen)  # jumbogram / offload
    badlen = plen + 40 > wire_room
    w.weird_at(idx[badlen], "bad_ipv6_payload_length")
    idx, o, plen, h = idx[~badlen], o[~badlen], plen[~badlen], h[~badlen]
    w.kind[idx] = KIND_IP
    c.ver[idx] = 6
    c.src_hi[idx] = h["shi"]
    c.src_lo[idx] = h["slo"]
    c.dst_hi[idx] = h["dhi"]
    c.dst_lo[idx] = h["dlo"]
    c.ip_len[idx] = plen + 40
    nh = h["nh"].astype(np.int64)
    at = o + 40
    stop = o + 40 + plen
    live = np.ones(len(idx), dtype=bool)
    for _ in range(8):  # extension-header chain, bounded
        ext = live & (np.isin(nh, IPV6_EXT) | (nh == 44) | (nh == 51))
        if not ext.any():
            break
        e = np.nonzero(ext)[0]
        room = np.minimum(w.end[idx[e]], stop[e]) - at[e] >= 8
        w.weird_at(idx[e[~room]], "truncated_ipv6_extension_header")
        live[e[~room]] = False
        e = e[room]
        a = at[e]
        hl = (w.u8[a + 1].astype(np.int64) + 1) * 8
        hl = np.where(nh[e] == 51, (w.u8[a + 1].astype(np.int64) + 2) * 4, hl)
        hl = np.where(nh[e] == 44, 8, hl)
        isfrag = nh[e] == 44
        if isfrag.any():
            f = e[isfrag]
            fo = w.be16(at[f] + 2)
            c.ip_id[idx[f]] = w.be32(at[f] + 4)
            later = (fo >> 3) > 0
            c.frag[idx[f[later]]] = FRAG_LATER
            c.frag[idx[f[~later & ((fo & 1) == 1)]]] = FRAG_FIRST
        nh[e] = w.u8[a]
        at[e] = a + hl
        over = at[e] > stop[e]
        w.weird_at(idx[e[over]], "bad_ipv6_extension_length")
        live[e[over]] = False
    keep = live & (w.kind[idx] == KIND_IP)
    idx, nh, at, stop = idx[keep], nh[keep], at[keep], stop[keep]
    c.proto[idx] = nh
    c.l4[idx] = at
    c.l4_len[idx] = stop - at


def _transport(w: Work, c: _IpCols, raw: RawBatch) -> None:
    ip = (w.kind == KIND_IP) & (c.frag != FRAG_LATER)
    c.payload[w.kind == KIND_IP] = c.l4_len[w.kind == KIND_IP]  # later fragments: all payload
    proto = c.proto
    need = _NEED[proto]
    idx = np.nonzero(ip & (need > 0))[0]
    if not len(idx):
        return
    l4 = c.l4[idx]
    have = np.minimum(w.end[idx], l4 + c.l4_len[idx]) - l4
    short = have < need[idx]
    names = {
        6: "truncated_tcp_header",
        17: "truncated_udp_header",
        1: "truncated_icmp_header",
        58: "truncated_icmp_header",
        132: "truncated_sctp_header",
    }
    if short.any():
        for pn, name in names.items():
            w.weird_at(idx[short & (proto[idx] == pn)], name)
        idx, l4 = idx[~short], l4[~short]
    h = w.rows(l4, L4_HDR)
    p: np.ndarray = proto[idx]
    ported = np.isin(p, PORTED)
    sp = h["sport"].astype(np.int64)
    dp = h["dport"].astype(np.int64)
    icmp = ~ported
    if icmp.any():  # ICMP: type and code are the first two bytes
        dp = np.where(icmp, sp & 0xFF, dp)
        sp = np.where(icmp, sp >> 8, sp)
        ii = idx[icmp]
        c.payload[ii] = np.maximum(c.l4_len[ii] - 8, 0)
    c.sport[idx] = sp
    c.dport[idx] = dp
    tcp = p == 6
    ti = idx[tcp]
    ht = h[tcp]
    c.flags[ti] = ht["flags"]
    doff = (ht["doff"] >> 4).astype(np.int64) * 4
    l4len = c.l4_len[ti]
    bad = (doff < 20) | ((doff > l4len) & (c.frag[ti] != FRAG_FIRST))
    if bad.any():
        w.weird_at(ti[bad], "bad_tcp_data_offset")
    c.payload[ti] = np.maximum(l4len - doff, 0)
    udp = p == 17
    if udp.any():
        ui = idx[udp]
        ulen = (h["w1"][udp] >> 16).astype(np.int64)
        # a first fragment holds only part of the datagram its UDP length describes
        badu = (ulen < 8) | ((ulen > c.l4_len[ui]) & (c.frag[ui] != FRAG_FIRST))
        w.weird_at(ui[badu], "bad_udp_length")
        c.payload[ui] = np.maximum(c.l4_len[ui] - 8, 0)
    sctp = p == 132
    if sctp.any():
        c.payload[idx[sctp]] = np.maximum(c.l4_len[idx[sctp]] - 12, 0)
