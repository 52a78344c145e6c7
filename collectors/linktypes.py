"""Link-layer decoders, one per LINKTYPE, registered in :data:`LINKTYPES`.

Each decoder works on a whole batch at once: given the indices of the packets of its link type,
it fills the layer-3 offset, the EtherType (0x0800 IPv4, 0x86DD IPv6, 0x0806 ARP, …), VLAN ids
and MACs, and marks packets too short for their link header as weird. Adding a link type is one
function and one ``@LINKTYPES.add(n)`` line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from parkwatch.registry import Registry

if TYPE_CHECKING:
    from collectors.decode import Work

LinkDecoder = Callable[["Work", np.ndarray], None]
LINKTYPES: Registry[LinkDecoder] = Registry("link type")

ETH_IPV4, ETH_IPV6, ETH_ARP = 0x0800, 0x86DD, 0x0806
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
ETH_HDR = np.dtype([("dhi", ">u2"), ("dlo", ">u4"), ("shi", ">u2"), ("slo", ">u4"), ("et", ">u2")])
_ETH_WORDS = np.dtype({"names": ["d8", "s8"], "formats": [">u8", ">u8"], "offsets": [0, 6]})
"""The same 14 bytes as two overlapping 8-byte words: MAC << 16 | next two bytes."""


@LINKTYPES.add(1)
def ethernet(w: Work, idx: np.ndarray) -> None:
    """DLT_EN10MB: 14-byte header, then up to three 802.1Q/802.1ad tags."""
    every = len(idx) == w.n  # the whole batch (idx is sorted and unique): no scatters
    ok = (w.caplen if every else w.caplen[idx]) >= 14
    if not ok.all():
        w.weird_at(idx[~ok], "truncated_ethernet_header")
        idx = idx[ok]
        every = False
    base = w.off if every else w.off[idx]
    h = w.head(_ETH_WORDS, 0) if every else w.rows(base, ETH_HDR).view(_ETH_WORDS)
    dst = h["d8"] >> np.uint64(16)
    s8 = h["s8"].astype(np.int64)  # bit 63 wraps; the shift below is logical again
    src = s8.view(np.uint64) >> np.uint64(16)
    et = s8 & 0xFFFF
    l3 = base + 14
    for depth in range(3):
        tagged = (et == 0x8100) | (et == 0x88A8) | (et == 0x9100)
        if not tagged.any():
            break
        t = np.nonzero(tagged)[0]
        it = idx[t]
        room = (w.off[it] + w.caplen[it]) - l3[t] >= 4
        w.weird_at(it[~room], "truncated_vlan_tag")
        et[t[~room]] = 0xFFFF
        t = t[room]
        vid = (w.be16(l3[t]) & 0x0FFF).astype(np.int32)
        if depth == 0:
            w.vlan[idx[t]] = vid
        elif depth == 1:
            w.vlan_inner[idx[t]] = vid
        et[t] = w.be16(l3[t] + 2)
        l3[t] += 4
    if every:
        w.dst_mac, w.src_mac, w.ethertype, w.l3 = dst, src, et, l3
        w.has_mac[:] = True
    else:
        w.dst_mac[idx] = dst
        w.src_mac[idx] = src
        w.has_mac[idx] = True
        w.ethertype[idx] = et
        w.l3[idx] = l3


def _sll(
    w: Work, idx: np.ndarray, hdr: int, proto_at: int, halen_at: int, addr_at: int, halen_size: int
) -> None:
    ok = w.caplen[idx] >= hdr
    w.weird_at(idx[~ok], "truncated_sll_header")
    idx = idx[ok]
    base = w.off[idx]
    w.ethertype[idx] = w.be16(base + proto_at)
    halen = w.be16(base + halen_at) if halen_size == 2 else w.u8[base + halen_at]
    mac = halen == 6
    w.src_mac[idx[mac]] = w.be48(base[mac] + addr_at)
    w.has_mac[idx[mac]] = True
    w.l3[idx] = base + hdr


@LINKTYPES.add(113)
def linux_sll(w: Work, idx: np.ndarray) -> None:
    """Linux cooked capture v1: 16 bytes, source link address only."""
    _sll(w, idx, 16, 14, 4, 6, 2)


@LINKTYPES.add(276)
def linux_sll2(w: Work, idx: np.ndarray) -> None:
    """Linux cooked capture v2: 20 bytes, protocol first, source link address at 12."""
    _sll(w, idx, 20, 0, 11, 12, 1)


def _family_to_ethertype(w: Work, idx: np.ndarray, fam: np.ndarray) -> None:
    et = np.full(len(idx), 0xFFFF, dtype=np.int64)
    et[fam == 2] = ETH_IPV4
    et[np.isin(fam, (10, 24, 28, 30))] = ETH_IPV6
    w.ethertype[idx] = et
    w.l3[idx] = w.off[idx] + 4


@LINKTYPES.add(0)
def bsd_null(w: Work, idx: np.ndarray) -> None:
    """DLT_NULL: 4-byte address family in the capturing host's byte order (either)."""
    ok = w.caplen[idx] >= 4
    w.weird_at(idx[~ok], "truncated_null_header")
    idx = idx[ok]
    base = w.off[idx]
    le = w.le32(base)
    fam = np.where(le > 0xFFFF, w.be32(base), le)
    _family_to_ethertype(w, idx, fam)


@LINKTYPES.add(108)
def openbsd_loop(w: Work, idx: np.ndarray) -> None:
    """DLT_LOOP: 4-byte address family in network byte order."""
    ok = w.caplen[idx] >= 4
    w.weird_at(idx[~ok], "truncated_null_header")
    idx = idx[ok]
    _family_to_ethertype(w, idx, w.be32(w.off[idx]))


def raw_ip(w: Work, idx: np.ndarray) -> None:
    """Raw IP (LINKTYPE_RAW 101, DLT 12/14, IPV4 228, IPV6 229): version nibble picks."""
    ok = w.caplen[idx] >= 1
    w.weird_at(idx[~ok], "truncated_ip_header")
    idx = idx[ok]
    ver = w.u8[w.off[idx]] >> 4
    et = np.full(len(idx), 0xFFFF, dtype=np.int64)
    et[ver == 4] = ETH_IPV4
    et[ver == 6] = ETH_IPV6
    w.weird_at(idx[(ver != 4) & (ver != 6)], "bad_ip_version")
    w.ethertype[idx] = et
    w.l3[idx] = w.off[idx]


for _dlt in (101, 12, 14, 228, 229):
    LINKTYPES.register(_dlt, raw_ip)
