"""Turn ended flow-table slots into :class:`FlowRecord` objects, vectorised over the batch.

Decides the originator (SYN sender; else SYN-ACK receiver; else first sender, flipped when it
spoke from a server port to a client port, Zeek's ``^``), derives Zeek's ``conn_state`` from
per-endpoint TCP states, rebuilds ``history`` from first-occurrence frame numbers, and attaches
Community ID, topology facts and the port-bound application protocol.
"""

from __future__ import annotations

import binascii
import hashlib
import socket
from typing import TYPE_CHECKING, Any

import numpy as np

import collectors.services  # noqa: F401  (port bindings)
from collectors.communityid import ICMP4_PAIRS, ICMP4_REQUESTS, ICMP6_PAIRS, ICMP6_REQUESTS
from collectors.slots import LETTERS, NEVER, NL
from parkwatch.registry import PORT_BINDINGS, app_proto_for
from parkwatch.schema import FlowRecord
from parkwatch.schema.columns import Columns

if TYPE_CHECKING:
    from collectors.slots import Slots
    from parkwatch.topology import Topology

FIN, SYN, RST = 1, 2, 4
_FLAG_TEXT_LIST = [
    "".join(c for b, c in zip((1, 2, 4, 8, 16, 32, 64, 128), "FSRPAUEC", strict=True) if f & b)
    for f in range(256)
]
_FLAG_OBJ = np.array(_FLAG_TEXT_LIST, dtype=object)


def _obj(items: list[Any]) -> np.ndarray:
    """A 1-d object array of ``items`` (tuples stay whole: an (n, k) array for k-tuples)."""
    if items and isinstance(items[0], tuple):
        return np.array(items, dtype=object).reshape(len(items), -1)
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _optional(col: np.ndarray) -> np.ndarray:
    """-1 means absent: an object column of ints and None."""
    out = col.astype(object)
    out[col < 0] = None
    return out


INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)
_L = {c: i for i, c in enumerate(LETTERS)}
_M2 = np.uint64(0xBF58476D1CE4E5B9)
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


def _server_ports() -> np.ndarray:
    table = np.zeros(65536, dtype=bool)
    table[:1024] = True
    for key in PORT_BINDINGS:
        table[int(str(key).split("/")[1])] = True
    return table


class Emitter:
    """Builds records for one vantage point with one topology."""

    def __init__(self, vantage: str, topology: Topology) -> None:
        self.vantage = vantage
        self.topology = topology
        self._ip: dict[Any, tuple[str, str | None, str | None, str | None]] = {}
        self._mac: dict[int, str | None] = {}
        self._hist: dict[bytes, str] = {}
        self._app: dict[int, str | None] = {}
        self._server = _server_ports()
        seed = int.from_bytes(vantage.encode()[:8].ljust(8, b"\0"), "little")
        self._seed = np.uint64(seed ^ 0x5052_4B57_4154_4348)

    def columns(self, s: Slots, idx: np.ndarray, why: str) -> Columns[FlowRecord]:
        """Flow records for slots ``idx`` ending for reason ``why``, as columns.

        ``why`` may be ``expired`` (resolved to rst / fin / idle_timeout) or
        ``end_of_capture`` (rst / fin when the flow had closed, else end_of_capture).
        """
        if not len(idx):
            return Columns.concat(FlowRecord, [])
        hist = s.hist[idx]
        proto = s.proto[idx]
        first_b = s.first_dir[idx] == 1
        orig_b = self._originator(hist, proto, first_b, s.a_port[idx], s.b_port[idx])
        o = orig_b.astype(np.int64)
        r = 1 - o
        rows = np.arange(len(idx))

        def pair(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            v = arr[idx]
            return v[rows, o], v[rows, r]

        def orient(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return np.where(orig_b, b, a), np.where(orig_b, a, b)

        pk_o, pk_r = pair(s.pkts)
        by_o, by_r = pair(s.bytes)
        pl_o, pl_r = pair(s.payload)
        l2_o, l2_r = pair(s.l2bytes)
        fl_o, fl_r = pair(s.flags)
        ver = s.ver[idx]
        ends = [
            self._endpoints(ver, getattr(s, side + "_hi")[idx], getattr(s, side + "_lo")[idx])
            for side in ("a", "b")
        ]
        src, dst = orient(ends[0], ends[1])  # (4, n): text, enterprise, zone, role
        sport, dport = orient(s.a_port[idx], s.b_port[idx])
        macs = [
            self._macs(np.where(s.has_mac[idx], getattr(s, "mac_" + side)[idx], 0))
            for side in ("a", "b")
        ]
        smac, dmac = orient(macs[0], macs[1])
        n = len(idx)
        data: dict[str, np.ndarray] = {
            "uid": _obj(self._uids(s, idx)),
            "start": s.first_ts[idx],
            "end": s.last_ts[idx],
            "vantage": np.full(n, self.vantage, dtype=object),
            "src_ip": src[0],
            "src_port": sport,
            "dst_ip": dst[0],
            "dst_port": dport,
            "proto": proto,
            "community_id": _obj(self._community_ids(s, idx, orig_b)),
            "conn_state": _obj(
                _conn_state(hist, orig_b, proto, pk_o, pk_r, pl_o, pl_r, fl_o, fl_r)
            ),
            "history": _obj(self._history_keys(hist, orig_b, orig_b != first_b)),
            "end_reason": _obj(_reasons(why, fl_o, fl_r)),
            "orig_pkts": pk_o,
            "orig_bytes": by_o,
            "orig_payload_bytes": pl_o,
            "orig_l2_bytes": l2_o,
            "orig_flags": _FLAG_OBJ[fl_o],
            "resp_pkts": pk_r,
            "resp_bytes": by_r,
            "resp_payload_bytes": pl_r,
            "resp_l2_bytes": l2_r,
            "resp_flags": _FLAG_OBJ[fl_r],
            "vlan": _optional(s.vlan[idx]),
            "vlan_inner": _optional(s.vlan_inner[idx]),
            "src_mac": smac,
            "dst_mac": dmac,
            "app_proto": self._app_protos(proto, dport),
            "sni": np.full(n, None, dtype=object),
            "http_host": np.full(n, None, dtype=object),
            "src_enterprise": src[1],
            "src_zone": src[2],
            "src_role": src[3],
            "dst_enterprise": dst[1],
            "dst_zone": dst[2],
            "dst_role": dst[3],
        }
        return Columns(FlowRecord, data)

    # -- pieces -----------------------------------------------------------------------------
    def _originator(
        self,
        hist: np.ndarray,
        proto: np.ndarray,
        first_b: np.ndarray,
        pa: np.ndarray,
        pb: np.ndarray,
    ) -> np.ndarray:
        s_a, s_b, h_a, h_b = hist[:, 0], hist[:, NL], hist[:, 1], hist[:, NL + 1]
        has_s = np.minimum(s_a, s_b) < NEVER
        has_h = np.minimum(h_a, h_b) < NEVER
        ported = np.isin(proto, (6, 17, 132))
        p_first = np.where(first_b, pb, pa) & 0xFFFF
        p_other = np.where(first_b, pa, pb) & 0xFFFF
        flip = ported & self._server[p_first] & ~self._server[p_other]
        guess = first_b ^ flip
        icmp_req_a = np.zeros(len(proto), dtype=bool)
        icmp_req_b = np.zeros(len(proto), dtype=bool)
        for pn, reqs in ((1, ICMP4_REQUESTS), (58, ICMP6_REQUESTS)):
            m = proto == pn
            icmp_req_a |= m & np.isin(pa, list(reqs))
            icmp_req_b |= m & np.isin(pb, list(reqs))
        guess = np.where(icmp_req_a, False, np.where(icmp_req_b, True, guess))
        return np.where(has_s, s_b < s_a, np.where(has_h, h_a < h_b, guess))

    def _history_keys(self, hist: np.ndarray, orig_b: np.ndarray, flipped: np.ndarray) -> list[str]:
        order_key = np.where(hist < NEVER, hist * 16 + (np.arange(2 * NL) % NL), NEVER)
        srt = np.argsort(order_key, axis=1, kind="stable").astype(np.uint8)
        srt[np.take_along_axis(order_key, srt.astype(np.int64), axis=1) == NEVER] = 255
        tail = np.stack([orig_b, flipped], axis=1).astype(np.uint8)
        blob = np.concatenate([srt, tail], axis=1)
        width = blob.shape[1]
        raw = blob.tobytes()
        cache = self._hist
        out = []
        for i in range(len(blob)):
            key = raw[i * width : (i + 1) * width]
            text = cache.get(key)
            if text is None:
                text = cache[key] = _history_text(key)
            out.append(text)
        return out

    def _uids(self, s: Slots, idx: np.ndarray) -> list[str]:
        return [f"C{x:016x}" for x in s.uidh[idx].tolist()]

    def uid_hashes(self, s: Slots, idx: np.ndarray) -> np.ndarray:
        """The uid hashes of new flows in slots ``idx`` (key and first-packet time are set):
        same vantage, flow and start time give the same uid."""
        h = self._seed ^ s.first_ts[idx].astype(np.uint64)
        ports = ((s.a_port[idx] << 32) | (s.b_port[idx] << 16) | s.proto[idx]).astype(np.uint64)
        for part in (
            s.a_hi[idx],
            s.a_lo[idx],
            s.b_hi[idx],
            s.b_lo[idx],
            ports,
            (s.vlan[idx] + 1).astype(np.uint64),
        ):
            h = (h ^ part) * _M2
            h ^= h >> np.uint64(29)
        return h

    def _endpoints(self, ver: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """(4, n) object array: address text, enterprise, zone, role of each address.

        Cached per address; the cache key is the low 64 bits for IPv4 (an int, no tuple) and
        (high, low) for IPv6.
        """
        cache = self._ip
        v6 = ver == 6
        keys: list[Any] = lo.tolist()
        if v6.any():
            for i, h in zip(np.flatnonzero(v6).tolist(), hi[v6].tolist(), strict=True):
                keys[i] = (h, keys[i])
        for key in set(keys).difference(cache):
            if isinstance(key, tuple):
                h, low = key
                raw = h.to_bytes(8, "big") + low.to_bytes(8, "big")
                text = socket.inet_ntop(socket.AF_INET6, raw)
                ep = self.topology.lookup_int(6, (h << 64) | low)
            else:
                text = socket.inet_ntoa((key & 0xFFFFFFFF).to_bytes(4, "big"))
                ep = self.topology.lookup_int(4, key & 0xFFFFFFFF)
            cache[key] = (text, ep.enterprise, ep.zone, ep.role)
        rows = list(map(cache.__getitem__, keys))
        if len(cache) > 200_000:
            cache.clear()
        out = np.empty((4, len(rows)), dtype=object)
        for k, col in enumerate(zip(*rows, strict=True)):
            out[k] = col
        return out

    def _macs(self, macs: np.ndarray) -> np.ndarray:
        cache = self._mac
        values = macs.tolist()
        for m in set(values).difference(cache):
            cache[m] = m.to_bytes(6, "big").hex(":") if m else None
        if len(cache) > 100_000:
            cache.clear()
            return self._macs(macs)
        return _obj(list(map(cache.__getitem__, values)))

    def _community_ids(self, s: Slots, idx: np.ndarray, orig_b: np.ndarray) -> list[str]:
        """Community ID v1 for every flow: inputs packed with numpy, one sha1 per flow."""
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

    def _app_protos(self, proto: np.ndarray, port: np.ndarray) -> np.ndarray:
        keys = ((proto << 16) | (port & 0xFFFF)).tolist()
        cache = self._app
        for key in set(keys).difference(cache):
            cache[key] = app_proto_for(key >> 16, key & 0xFFFF)
        return _obj(list(map(cache.__getitem__, keys)))


def _history_text(key: bytes) -> str:
    orig_b, flipped = key[-2], key[-1]
    text = "^" if flipped else ""
    for col in key[:-2]:
        if col == 255:
            break
        letter = LETTERS[col % NL]
        from_b = col >= NL
        text += letter if from_b == bool(orig_b) else letter.lower()
    return text


def _reasons(why: str, fl_o: np.ndarray, fl_r: np.ndarray) -> list[str]:
    if why not in ("expired", "end_of_capture"):
        return [why] * len(fl_o)
    rst = ((fl_o | fl_r) & RST) != 0
    if why == "expired":
        fin = ((fl_o | fl_r) & FIN) != 0
        out = np.where(rst, "rst", np.where(fin, "fin", "idle_timeout"))
    else:
        fin = ((fl_o & fl_r) & FIN) != 0
        out = np.where(rst, "rst", np.where(fin, "fin", "end_of_capture"))
    return out.tolist()


def _conn_state(
    hist: np.ndarray,
    orig_b: np.ndarray,
    proto: np.ndarray,
    pk_o: np.ndarray,
    pk_r: np.ndarray,
    pl_o: np.ndarray,
    pl_r: np.ndarray,
    fl_o: np.ndarray,
    fl_r: np.ndarray,
) -> list[str]:
    """Zeek's ``conn_state`` from endpoint states rebuilt out of the flags and letters."""
    ob = orig_b[:, None]
    h_o = np.where(ob, hist[:, NL:], hist[:, :NL])
    h_r = np.where(ob, hist[:, :NL], hist[:, NL:])
    seen_o, seen_r = h_o < NEVER, h_r < NEVER

    def ep(seen: np.ndarray, other: np.ndarray, flags: np.ndarray, pk: np.ndarray) -> np.ndarray:
        st = np.full(len(pk), PARTIAL)
        st = np.where(seen[:, _L["H"]], np.where(other[:, _L["S"]], ESTABLISHED, SYN_ACK_SENT), st)
        st = np.where(seen[:, _L["S"]], np.where(other[:, _L["H"]], ESTABLISHED, SYN_SENT), st)
        st = np.where(pk == 0, INACTIVE, st)
        st = np.where((flags & FIN) != 0, CLOSED, st)
        return np.where((flags & RST) != 0, RESET, st)

    os_, rs = ep(seen_o, seen_r, fl_o, pk_o), ep(seen_r, seen_o, fl_r, pk_r)
    o_in, r_in = np.isin(os_, (INACTIVE, PARTIAL)), np.isin(rs, (INACTIVE, PARTIAL))
    first_any = hist.min(axis=1)
    r_o = h_o[:, _L["R"]]
    s0_like = (h_o[:, _L["S"]] == first_any) & np.all(
        h_o[:, [_L[c] for c in "HAFQI"]] >= r_o[:, None], axis=1
    )
    tcp = np.select(
        [
            rs == RESET,
            os_ == RESET,
            (rs == CLOSED) & (os_ == CLOSED),
            os_ == CLOSED,
            rs == CLOSED,
            (os_ == SYN_SENT) & (rs == INACTIVE),
            (os_ == ESTABLISHED) & (rs == ESTABLISHED),
        ],
        [
            np.where(
                np.isin(os_, (SYN_SENT, SYN_ACK_SENT))
                | ((os_ == RESET) & (pl_o == 0) & (pl_r == 0)),
                "REJ",
                np.where(o_in, "RSTRH", "RSTR"),
            ),
            np.where(r_in, np.where(s0_like, "RSTOS0", "OTH"), "RSTO"),
            "SF",
            np.where(r_in, "SH", "S2"),
            np.where(o_in, "SHR", "S3"),
            "S0",
            "S1",
        ],
        "OTH",
    )
    other = np.where(pk_o > 0, np.where(pk_r > 0, "SF", "S0"), np.where(pk_r > 0, "SHR", "OTH"))
    return np.where(proto == 6, tcp, other).tolist()
