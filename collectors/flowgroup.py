"""Group a batch's IP packets by bidirectional flow key (step one of the flow table).

The canonical key is (A address, B address, A port, B port, protocol, VLAN, inner VLAN) with
A the smaller (address, port) endpoint; ICMP request/reply types are keyed as (type,
counterpart type) so an echo and its reply share a flow. Packets are grouped with one sort of
a 64-bit key hash whose low bits are replaced by the packet index (unique keys: numpy's SIMD
sort, stable in effect); every group is then checked against the full key, and a batch where
two keys share a hash is grouped exactly instead.
"""

from __future__ import annotations

import numpy as np

from collectors.communityid import ICMP4_PAIRS, ICMP6_PAIRS
from collectors.decode import Decoded
from collectors.slots import NL

FIN, SYN, RST, ACK = 1, 2, 4, 16
_M1, _M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9)
_S16, _S32 = np.uint64(16), np.uint64(32)
_LO_MASK = np.uint64((1 << 24) - 1)  # packet index bits of the sort key
_HI_MASK = ~_LO_MASK
_COUNTER = np.arange(256, dtype=np.int64)
for _t, _c in ICMP4_PAIRS.items():
    _COUNTER[_t] = _c
_COUNTER6 = np.arange(256, dtype=np.int64)
for _t, _c in ICMP6_PAIRS.items():
    _COUNTER6[_t] = _c
_PAIRED4 = np.isin(np.arange(256), list(ICMP4_PAIRS))
_PAIRED6 = np.isin(np.arange(256), list(ICMP6_PAIRS))


def group_packets(d: Decoded, sel: np.ndarray) -> Packets:
    """The IP packets ``sel`` of ``d`` in flow-key order, grouped (see module doc)."""
    whole = len(sel) == len(d)  # the usual batch: every packet is IP, no gathers needed

    def rows(col: np.ndarray) -> np.ndarray:
        return col if whole else col[sel]

    proto = rows(d.proto).astype(np.uint64)
    shi, slo, dhi, dlo = rows(d.src_hi), rows(d.src_lo), rows(d.dst_hi), rows(d.dst_lo)
    sp, dp = rows(d.sport), rows(d.dport)
    icmp4, icmp6 = proto == 1, proto == 58
    if icmp4.any() or icmp6.any():  # key request/reply as one flow (type, counterpart)
        sp, dp = sp.copy(), dp.copy()
        for m, ctr, paired in ((icmp4, _COUNTER, _PAIRED4), (icmp6, _COUNTER6, _PAIRED6)):
            pm = m & paired[sp & 0xFF]
            dp[pm] = ctr[sp[pm] & 0xFF]
    fwd = (shi < dhi) | ((shi == dhi) & ((slo < dlo) | ((slo == dlo) & (sp <= dp))))
    a_hi, b_hi = np.where(fwd, shi, dhi), np.where(fwd, dhi, shi)
    a_lo, b_lo = np.where(fwd, slo, dlo), np.where(fwd, dlo, slo)
    sp, dp = sp.astype(np.uint64), dp.astype(np.uint64)
    ports = np.where(fwd, (sp << _S32) | (dp << _S16), (dp << _S32) | (sp << _S16)) | proto
    vlans = ((rows(d.vlan).astype(np.int64) + 1) << 16) | (rows(d.vlan_inner) + 1)
    vlans = vlans.astype(np.uint64)
    h = a_hi * _M1
    for part in (a_lo, b_hi, b_lo, ports, vlans):
        h = (h ^ part) * _M2
        h ^= h >> np.uint64(31)
    n = len(h)
    if n <= _LO_MASK:  # sort unique keys (hash high bits | packet index): SIMD sort,
        sk = np.sort((h & _HI_MASK) | np.arange(n, dtype=np.uint64))  # stable in effect
        order = (sk & _LO_MASK).astype(np.int64)
        hs = sk & _HI_MASK
    else:
        order = np.argsort(h, kind="stable")
        hs = h[order]
    brk = np.empty(n, dtype=bool)
    brk[0] = True
    np.not_equal(hs[1:], hs[:-1], out=brk[1:])
    keys = [c[order] for c in (a_hi, a_lo, b_hi, b_lo, ports, vlans)]
    differs = np.zeros(n, dtype=bool)  # key differs from the packet before it
    for c in keys:
        differs[1:] |= c[1:] != c[:-1]
    unique_hashes = not (differs & ~brk).any()
    if not unique_hashes:  # 64-bit hash collision inside the batch: exact grouping instead
        st = np.rec.fromarrays(keys)
        _, inv = np.unique(st, return_inverse=True)
        by_key = np.argsort(inv.ravel(), kind="stable")
        order = order[by_key]
        keys = [c[by_key] for c in keys]
        brk[1:] = np.any([c[1:] != c[:-1] for c in keys], axis=0)
    gstart = np.flatnonzero(brk)
    gid = np.cumsum(brk) - 1
    psel = order if whole else sel[order]
    pk = Packets(d, psel, fwd[order], keys, gstart, gid)
    pk.hg = h[order[gstart]]
    pk.unique_hashes = unique_hashes
    return pk


class Packets:
    """The IP packets of a batch in flow-grouped order, with the columns folding needs.

    The flow key is kept packed per packet (addresses, ``ports`` = A port << 32 | B port << 16
    | protocol, ``vlans`` = (VLAN + 1) << 16 | inner VLAN + 1); :meth:`key_cols` unpacks it
    for the few packets where a flow starts.
    """

    def __init__(
        self,
        d: Decoded,
        psel: np.ndarray,
        fwd: np.ndarray,
        keys: list[np.ndarray],
        gstart: np.ndarray,
        gid: np.ndarray,
    ) -> None:
        raw = d.raw
        self.d = d
        self.psel = psel  # batch row of each packet
        self.fwd, self.keys, self.gstart, self.gid = fwd, keys, gstart, gid
        self.proto = (keys[4] & np.uint64(0xFF)).astype(np.int64)
        self.ts = raw.ts_ns[psel].astype(np.int64)
        self.frame = raw.first_frame + psel
        self.wirelen = raw.wirelen[psel].astype(np.int64)
        self.flags = d.flags[psel].astype(np.int64) * (self.proto == 6)
        self.ip_len = d.ip_len[psel]
        self.payload = d.payload[psel]
        self.letters = _letters(self.flags, self.payload, self.proto == 6, fwd)
        self.hg = np.zeros(0, dtype=np.uint64)  # 64-bit key hash of each group
        self.unique_hashes = True  # False when two keys of the batch shared a hash

    def key_cols(self, at: np.ndarray) -> list[np.ndarray]:
        """The key of the packets at positions ``at``, as the flow table stores it: A and B
        address halves (uint64), A port, B port, protocol, VLAN, inner VLAN (int64)."""
        a_hi, a_lo, b_hi, b_lo, ports, vlans = (c[at] for c in self.keys)
        ports, vlans = ports.astype(np.int64), vlans.astype(np.int64)
        return [
            a_hi,
            a_lo,
            b_hi,
            b_lo,
            ports >> 32,
            (ports >> 16) & 0xFFFF,
            ports & 0xFF,
            (vlans >> 16) - 1,
            (vlans & 0xFFFF) - 1,
        ]

    def at(self, col: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Column ``col`` of the decoded batch at packet positions ``at``."""
        return col[self.psel[at]]


def _letters(
    flags: np.ndarray, payload: np.ndarray, tcp: np.ndarray, fwd: np.ndarray
) -> np.ndarray:
    """Per packet, a bit per (direction, history letter) it contributes."""
    syn, ack = (flags & SYN) != 0, (flags & ACK) != 0
    fin, rst = (flags & FIN) != 0, (flags & RST) != 0
    bits = np.zeros(len(flags), dtype=np.int64)
    odd_syn = syn & (fin | rst)
    for k, m in enumerate(
        (
            tcp & syn & ~ack & ~odd_syn,
            tcp & syn & ack & ~odd_syn,
            tcp & ack & ~syn & ~fin & ~rst & (payload == 0),
            payload > 0,
            tcp & fin & ~syn,
            tcp & rst & ~syn,
            tcp & syn & fin,
            tcp & syn & rst & ~fin,
        )
    ):
        bits |= m.astype(np.int64) << k
    return np.where(fwd, bits, bits << NL)
