"""Batch packet decoder: link layer, VLAN, IPv4/IPv6, TCP/UDP/ICMP, ARP — all at once.

The decoder never builds a Python object per packet. It gathers header bytes for a whole batch
with numpy fancy indexing and produces a :class:`Decoded` struct of arrays (one row a packet).
A packet that violates its headers' rules is marked ``KIND_WEIRD`` with a reason code; nothing
raises. Every packet ends in exactly one kind, so counts always add up (no silent loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
_IHL = (np.arange(256, dtype=np.int64) & 0x0F) * 4  # IPv4 header length by first byte
_VER4 = (np.arange(256) >> 4) == 4
_PORTED = np.zeros(256, dtype=bool)
_PORTED[list(PORTED)] = True
_IPV6_EXT = np.zeros(256, dtype=bool)  # extension headers the chain walk steps over
_IPV6_EXT[[*IPV6_EXT, 44, 51]] = True


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
        self._head: np.ndarray | None = None

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

    def rows(self, at: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Gather ``dtype.itemsize`` bytes at each offset as one structured record each.

        Reads up to the width past short packets (the fields the caller uses are bounds
        checked); records running past the end of the buffer read zeros there.
        """
        width = dtype.itemsize
        if not len(at):
            return np.zeros(0, dtype)
        vdt = np.dtype(f"V{width}")
        lim = len(self.u8) - width  # the last offset with a whole record in the buffer
        if int(at.max()) <= lim:
            return self._window(self.u8, vdt)[at].view(dtype)
        over = at > lim  # read these from a zero-padded copy of the buffer's tail
        lo = int(at[over].min())
        tail = np.zeros(len(self.u8) - lo + width, np.uint8)
        tail[: len(self.u8) - lo] = self.u8[lo:]
        out = np.empty(len(at), vdt)
        out[over] = self._window(tail, vdt)[at[over] - lo]
        inside = ~over
        if inside.any():
            out[inside] = self._window(self.u8, vdt)[at[inside]]
        return out.view(dtype)

    def _window(self, u8: np.ndarray, vdt: np.dtype) -> np.ndarray:
        """One opaque record starting at every byte of ``u8``: a 1-D gather of records is a
        copy per packet, far cheaper than a 2-D sliding-window gather."""
        width = vdt.itemsize
        if u8 is not self.u8:
            return np.ndarray((len(u8) - width + 1,), vdt, u8, 0, (1,))
        win = self._win.get(width)
        if win is None:
            win = self._win[width] = np.ndarray((len(u8) - width + 1,), vdt, u8, 0, (1,))
        return win

    def head(self, dtype: np.dtype, rel: int) -> np.ndarray:
        """Records of ``dtype`` at byte ``rel`` of every packet, as a strided view of the
        batch's head: the first HEAD bytes of every packet, gathered once per batch (one
        gather for the link, IP and transport headers of the usual packet)."""
        if self._head is None:
            self._head = self.rows(self.off, _HEAD_DTYPE).view(np.uint8)
        return np.ndarray((self.n,), dtype, self._head, rel, (HEAD,))

    def fields(self, at: np.ndarray, dtype: np.dtype, sel: np.ndarray) -> Fields:
        """The records of ``dtype`` at ``at`` (one offset per packet) of the ``sel`` rows."""
        return Fields(self, at, dtype, sel)

    def weird_at(self, idx: np.ndarray, name: str) -> None:
        if len(idx):
            self.kind[idx] = KIND_WEIRD
            self.weird[idx] = weird_code(name)

    def weird_mask(self, mask: np.ndarray, name: str) -> None:
        """:meth:`weird_at` for a boolean mask over the whole batch."""
        if mask.any():
            self.kind[mask] = KIND_WEIRD
            self.weird[mask] = weird_code(name)


HEAD = 64
_HEAD_DTYPE = np.dtype(f"V{HEAD}")


class Fields:
    """Columns of records at one offset per packet, read from the batch head where the
    record sits at the usual place in the packet, and gathered from the buffer elsewhere.

    Rows outside ``sel`` hold arbitrary values (the caller masks them).
    """

    def __init__(self, w: Work, at: np.ndarray, dtype: np.dtype, sel: np.ndarray) -> None:
        width = dtype.itemsize
        rel = at - w.off
        top = HEAD - width + 1
        r0 = int(rel[int(np.argmax(sel))])  # guess: where the first row has its record
        exc = np.nonzero(sel & (rel != r0))[0] if 0 <= r0 < top else None
        if exc is None or 2 * len(exc) > len(rel):  # a poor guess: take the commonest place
            spot = np.where(sel & (rel >= 0) & (rel < top), rel, top)
            r0 = int(np.bincount(spot, minlength=top + 1)[:top].argmax())
            exc = np.nonzero(sel & (rel != r0))[0]
        self.base = w.head(dtype, r0)
        self.exc = exc
        self.rows = w.rows(at[self.exc], dtype) if len(self.exc) else None

    def __getitem__(self, name: str) -> np.ndarray:
        return self.col(name, self.base.dtype[name].newbyteorder("="))

    def col(self, name: str, dtype: type | np.dtype) -> np.ndarray:
        """Field ``name`` of every row as a new array of ``dtype`` (one cast pass)."""
        v: np.ndarray = self.base[name].astype(dtype)
        if self.rows is not None:
            v[self.exc] = self.rows[name]
        return v


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
    _ipv4(w, cols, ok & (w.ethertype == ETH_IPV4), raw)
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
        self.any_frag = False  # set when some packet may have a FRAG_* other than FRAG_NONE
        self.l4 = np.zeros(n, dtype=np.int64)
        self.ver = np.zeros(n, dtype=np.uint8)
        self.src_hi = np.zeros(n, dtype=np.uint64)
        self.src_lo = np.zeros(n, dtype=np.uint64)
        self.dst_hi = np.zeros(n, dtype=np.uint64)
        self.dst_lo = np.zeros(n, dtype=np.uint64)
        self.proto = np.zeros(n, dtype=np.uint8)
        self.sport = np.zeros(n, dtype=np.int64)
        self.dport = np.zeros(n, dtype=np.int64)
        self.flags = np.zeros(n, dtype=np.uint8)
        self.ip_len = np.zeros(n, dtype=np.int64)
        self.l4_len = np.zeros(n, dtype=np.int64)  # transport header to IP payload end
        self.payload = np.zeros(n, dtype=np.int64)
        self.frag = np.zeros(n, dtype=np.uint8)
        self.ip_id = np.zeros(n, dtype=np.int64)


def _ipv4(w: Work, c: _IpCols, sel: np.ndarray, raw: RawBatch) -> None:
    """IPv4 headers of the packets of mask ``sel``, computed for the whole batch at once.

    Every column is computed for every row (rows outside ``sel`` read harmless bytes of the
    buffer) and stored where the packet is a valid IPv4 packet: masked full-width passes
    instead of index gathers and scatters.
    """
    l3 = w.l3
    room = w.end - l3
    short = sel & (room < 20)
    if short.any():
        w.weird_mask(short, "truncated_ipv4_header")
        sel = sel & ~short
    if not sel.any():
        return
    h = w.fields(l3, IPV4_HDR, sel)
    vihl = h["vihl"]
    ihl = _IHL[vihl]
    ver4 = _VER4[vihl]
    tot = h.col("len", np.int64)
    wire_room = raw.wirelen.astype(np.int64, copy=False) - (l3 - w.off)
    tot = np.where(tot == 0, wire_room, tot)  # TSO/offloaded packets carry 0
    keep = sel & ver4 & (ihl >= 20) & (tot >= ihl) & (tot <= wire_room) & (room >= ihl)
    if not np.array_equal(keep, sel):
        bad = sel & ~ver4
        badihl = sel & ~bad & (ihl < 20)
        badlen = sel & ~bad & ~badihl & ((tot < ihl) | (tot > wire_room))
        trunc = sel & ~bad & ~badihl & ~badlen & (room < ihl)
        w.weird_mask(bad, "bad_ip_version")
        w.weird_mask(badihl, "bad_ipv4_header_length")
        w.weird_mask(badlen, "bad_ipv4_total_length")
        w.weird_mask(trunc, "truncated_ipv4_options")
    src = h.col("src", np.uint64)
    src |= V4_MAPPED
    dst = h.col("dst", np.uint64)
    dst |= V4_MAPPED
    l4 = ihl + l3
    if keep.all():  # every row is IPv4: take the arrays as they are
        w.kind[:] = KIND_IP
        c.ver[:] = 4
        c.src_lo, c.dst_lo, c.proto, c.ip_len = src, dst, h["proto"], tot
        c.l4_len, c.l4 = tot - ihl, l4
    else:
        np.copyto(w.kind, KIND_IP, where=keep)
        np.copyto(c.ver, 4, where=keep)
        np.copyto(c.src_lo, src, where=keep)
        np.copyto(c.dst_lo, dst, where=keep)
        np.copyto(c.proto, h["proto"], where=keep)
        np.copyto(c.ip_len, tot, where=keep)
        tot -= ihl
        np.copyto(c.l4_len, tot, where=keep)
        np.copyto(c.l4, l4, where=keep)
    fr = h["frag"]
    isfrag = keep & ((fr & 0x3FFF) != 0)
    if isfrag.any():
        c.any_frag = True
        mf = (fr & 0x2000) != 0
        foff = fr & 0x1FFF
        c.frag[keep & (foff > 0)] = FRAG_LATER
        c.frag[keep & (foff == 0) & mf] = FRAG_FIRST
        c.ip_id[isfrag] = h["id"][isfrag]


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
        ext = live & _IPV6_EXT[nh]
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
            c.any_frag = True
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
    isip = w.kind == KIND_IP
    np.copyto(c.payload, c.l4_len, where=isip)  # later fragments: all payload
    proto = c.proto
    need = _NEED[proto]
    ip = isip & (need > 0)
    if c.any_frag:
        ip &= c.frag != FRAG_LATER
    if not ip.any():
        return
    l4 = c.l4
    l4_len = c.l4_len
    have = np.minimum(w.end, l4 + l4_len) - l4
    short = ip & (have < need)
    names = {
        6: "truncated_tcp_header",
        17: "truncated_udp_header",
        1: "truncated_icmp_header",
        58: "truncated_icmp_header",
        132: "truncated_sctp_header",
    }
    if short.any():
        for pn, name in names.items():
            w.weird_mask(short & (proto == pn), name)
        ip &= ~short
    h = w.fields(l4, L4_HDR, ip)
    sp = h.col("sport", np.int64)
    dp = h.col("dport", np.int64)
    icmp = ip & ~_PORTED[proto]
    ii = np.nonzero(icmp)[0]
    if len(ii):  # ICMP: type and code are the first two bytes
        first = sp[ii]
        dp[ii] = first & 0xFF
        sp[ii] = first >> 8
        c.payload[ii] = np.maximum(l4_len[ii] - 8, 0)
    if ip.all():  # every row is set: take the arrays as they are
        c.sport, c.dport = sp, dp
    else:
        np.copyto(c.sport, sp, where=ip)
        np.copyto(c.dport, dp, where=ip)
    tcp = ip & (proto == 6)
    np.copyto(c.flags, h["flags"], where=tcp)
    doff = (h["doff"] >> 4).astype(np.int64) * 4
    over = doff > l4_len
    if c.any_frag:
        over &= c.frag != FRAG_FIRST
    bad = tcp & ((doff < 20) | over)
    if bad.any():
        w.weird_mask(bad, "bad_tcp_data_offset")
    np.copyto(c.payload, np.maximum(l4_len - doff, 0), where=tcp)
    udp = ip & (proto == 17)
    if udp.any():
        ulen = (h["w1"] >> 16).astype(np.int64)
        # a first fragment holds only part of the datagram its UDP length describes
        over = ulen > l4_len
        if c.any_frag:
            over &= c.frag != FRAG_FIRST
        w.weird_mask(udp & ((ulen < 8) | over), "bad_udp_length")
        np.copyto(c.payload, np.maximum(l4_len - 8, 0), where=udp)
    sctp = ip & (proto == 132)
    if sctp.any():
        np.copyto(c.payload, np.maximum(l4_len - 12, 0), where=sctp)
