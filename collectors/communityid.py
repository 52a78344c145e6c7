"""Community ID v1 flow hashing (https://github.com/corelight/community-id-spec).

Hand-written because it runs once per emitted flow on the hot path; tests check it against the
``communityid`` reference package and tshark's ``communityid`` field. :func:`community_id` is
the reference form (one flow), :func:`community_ids` the batch form the flow emitter uses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from types import SimpleNamespace
from typing import Any

import numpy as np

ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
ICMP6_PAIRS = {
    128: 129,
    129: 128,
    133: 134,
    134: 133,
    135: 136,
    136: 135,
    130: 131,
    131: 130,
    139: 140,
    140: 139,
    144: 145,
    145: 144,
}
ICMP4_REQUESTS = frozenset({8, 13, 15, 10, 17})
ICMP6_REQUESTS = frozenset({128, 133, 135, 130, 139, 144})
_PORTED = frozenset({6, 17, 132})
_HH = struct.Struct("!HH")


def icmp_pairs(proto: int) -> dict[int, int] | None:
    return ICMP4_PAIRS if proto == 1 else ICMP6_PAIRS if proto == 58 else None


def community_id(
    saddr: bytes, daddr: bytes, proto: int, sport: int, dport: int, seed: int = 0
) -> str:
    """Community ID v1 of a flow; ``saddr``/``daddr`` are 4 or 16 packed bytes.

    For ICMP/ICMPv6 pass the ICMP type as ``sport`` and the code as ``dport`` (or, as the flow
    table does, the counterpart type for request/reply pairs: both give the same hash).
    """
    one_way = False
    pairs = icmp_pairs(proto)
    if pairs is not None:
        if sport in pairs:
            dport = pairs[sport]
        else:
            one_way = True
    if not one_way and (saddr > daddr or (saddr == daddr and sport > dport)):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    data = struct.pack("!H", seed) + saddr + daddr + bytes((proto, 0))
    if proto in _PORTED or pairs is not None:
        data += _HH.pack(sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


_CID_V4 = np.dtype(
    [
        ("seed", ">u2"),
        ("a", ">u4"),
        ("b", ">u4"),
        ("proto", "u1"),
        ("pad", "u1"),
        ("pa", ">u2"),
        ("pb", ">u2"),
    ]
)
_CID_V6 = np.dtype(
    [
        ("seed", ">u2"),
        ("ahi", ">u8"),
        ("alo", ">u8"),
        ("bhi", ">u8"),
        ("blo", ">u8"),
        ("proto", "u1"),
        ("pad", "u1"),
        ("pa", ">u2"),
        ("pb", ">u2"),
    ]
)
_sha1 = hashlib.sha1
_b64 = binascii.b2a_base64


def community_ids(s: Any, idx: np.ndarray, orig_b: np.ndarray) -> list[str]:
    """Community ID v1 of flow-table rows ``idx`` of ``s`` (slots: canonical A/B endpoints;
    ``orig_b``: B is the originator): inputs packed with numpy, one sha1 per flow."""
    proto = s.proto[idx]
    a_port, b_port = s.a_port[idx], s.b_port[idx]
    icmp = (proto == 1) | (proto == 58)
    paired = (icmp & (proto == 1) & np.isin(a_port, list(ICMP4_PAIRS))) | (
        icmp & (proto == 58) & np.isin(a_port, list(ICMP6_PAIRS))
    )
    one_way = icmp & ~paired
    swap = one_way & orig_b  # one-way ICMP: the sender first, not the smaller address
    ports = np.isin(proto, (6, 17, 132)) | icmp
    ver4 = s.ver[idx] == 4
    out: list[str] = [""] * len(idx)
    for v4 in (True, False):
        for with_ports in (True, False):
            m = np.nonzero((ver4 == v4) & (ports == with_ports))[0]
            if not len(m):
                continue
            dt = _CID_V4 if v4 else _CID_V6
            rec = np.zeros(len(m), dtype=dt)
            j = idx[m]
            sw = swap[m]
            if v4:
                a = (s.a_lo[j] & np.uint64(0xFFFFFFFF)).astype(np.uint32)
                b = (s.b_lo[j] & np.uint64(0xFFFFFFFF)).astype(np.uint32)
                rec["a"], rec["b"] = np.where(sw, b, a), np.where(sw, a, b)
            else:
                for part in ("hi", "lo"):
                    a, b = getattr(s, "a_" + part)[j], getattr(s, "b_" + part)[j]
                    rec["a" + part] = np.where(sw, b, a)
                    rec["b" + part] = np.where(sw, a, b)
            rec["proto"] = proto[m]
            rec["pa"] = np.where(sw, b_port[m], a_port[m])
            rec["pb"] = np.where(sw, a_port[m], b_port[m])
            width = dt.itemsize - (0 if with_ports else 4)
            blob = rec.tobytes()
            step = dt.itemsize
            for k, pos in enumerate(m.tolist()):
                digest = _sha1(blob[k * step : k * step + width]).digest()
                out[pos] = "1:" + _b64(digest, newline=False).decode("ascii")
    return out


def packet_community_ids(d: Any, idx: np.ndarray) -> list[str]:
    """Community ID v1 of the flows of TCP/UDP packets ``idx`` of decoded batch ``d``
    (either direction gives the same ID): the packets' endpoints ordered as the spec
    orders them, then :func:`community_ids`."""
    s_hi, s_lo, t_hi, t_lo = d.src_hi[idx], d.src_lo[idx], d.dst_hi[idx], d.dst_lo[idx]
    sp, dp = d.sport[idx] & 0xFFFF, d.dport[idx] & 0xFFFF
    same = (s_hi == t_hi) & (s_lo == t_lo)
    swap = (s_hi > t_hi) | ((s_hi == t_hi) & (s_lo > t_lo)) | (same & (sp > dp))
    ends = SimpleNamespace(
        proto=d.proto[idx], ver=d.ver[idx],
        a_hi=np.where(swap, t_hi, s_hi), a_lo=np.where(swap, t_lo, s_lo),
        b_hi=np.where(swap, s_hi, t_hi), b_lo=np.where(swap, s_lo, t_lo),
        a_port=np.where(swap, dp, sp), b_port=np.where(swap, sp, dp),
    )  # fmt: skip
    n = len(idx)
    return community_ids(ends, np.arange(n), np.zeros(n, dtype=bool))
