"""Turn ended flow-table slots into :class:`FlowRecord` objects, vectorised over the batch.

Decides the originator (SYN sender; else SYN-ACK receiver; else first sender, flipped when it
spoke from a server port to a client port, Zeek's ``^``), derives Zeek's ``conn_state`` from
per-endpoint TCP states, rebuilds ``history`` from first-occurrence frame numbers, and attaches
Community ID, topology facts and the port-bound application protocol.
"""

from __future__ import annotations

import binascii
import socket
from typing import TYPE_CHECKING, Any

import numpy as np

import collectors.services  # noqa: F401  (port bindings)
from collectors.communityid import (
    ICMP4_REQUESTS,
    ICMP6_REQUESTS,
    community_ids,
)
from collectors.slots import LETTERS, NEVER, NL, Vocab
from parkwatch.registry import PORT_BINDINGS, app_proto_for
from parkwatch.schema import FlowRecord
from parkwatch.schema.columns import Columns

if TYPE_CHECKING:
    from collectors.slots import SlotRows, Slots
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
        self._ip = Vocab(4, 200_000)  # address -> text, enterprise, zone, role
        self._mac = Vocab(1, 100_000)  # MAC (0: none) -> text or None
        self._hist: dict[bytes, str] = {}
        self._app = Vocab(1, 1 << 20)  # proto << 16 | port -> app_proto
        self._server = _server_ports()
        seed = int.from_bytes(vantage.encode()[:8].ljust(8, b"\0"), "little")
        self._seed = np.uint64(seed ^ 0x5052_4B57_4154_4348)

    def columns(
        self, s: Slots | SlotRows, idx: np.ndarray, why: str | np.ndarray
    ) -> Columns[FlowRecord]:
        """Flow records for slots ``idx`` ending for reason ``why``, as columns.

        ``why`` (one for all, or an object array with one per row) may be ``expired``
        (resolved to rst / fin / idle_timeout) or ``end_of_capture`` (rst / fin when the flow
        had closed, else end_of_capture).
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
        for vocab in (self._ip, self._mac):
            vocab.trim()
        ends = [
            self._endpoints(ver, getattr(s, side + "_hi")[idx], getattr(s, side + "_lo")[idx])
            for side in ("a", "b")
        ]
        src_c, dst_c = orient(ends[0], ends[1])
        src = [col[src_c] for col in self._ip.cols]  # text, enterprise, zone, role
        dst = [col[dst_c] for col in self._ip.cols]
        sport, dport = orient(s.a_port[idx], s.b_port[idx])
        has_mac = s.has_mac[idx]
        macs = [self._macs(np.where(has_mac, getattr(s, "mac_" + side)[idx], 0)) for side in "ab"]
        smac_c, dmac_c = orient(macs[0], macs[1])
        mac_text = self._mac.cols[0]
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
            "community_id": _obj(community_ids(s, idx, orig_b)),
            "conn_state": _conn_state(hist, orig_b, proto, pk_o, pk_r, pl_o, pl_r, fl_o, fl_r),
            "history": self._history(hist, orig_b, orig_b != first_b),
            "end_reason": _reasons(why, fl_o, fl_r),
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
            "src_mac": mac_text[smac_c],
            "dst_mac": mac_text[dmac_c],
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

    def _history(self, hist: np.ndarray, orig_b: np.ndarray, flipped: np.ndarray) -> np.ndarray:
        """History strings: rows of letter columns in first-occurrence order, built once per
        distinct row (a handful per batch) and spread with one gather."""
        order_key = np.where(hist < NEVER, hist * 16 + (np.arange(2 * NL) % NL), NEVER)
        srt = np.argsort(order_key, axis=1, kind="stable").astype(np.uint8)
        srt[np.take_along_axis(order_key, srt.astype(np.int64), axis=1) == NEVER] = 255
        tail = np.stack([orig_b, flipped], axis=1).astype(np.uint8)
        blob = np.ascontiguousarray(np.concatenate([srt, tail], axis=1))
        rows, inv = np.unique(blob.view(f"V{blob.shape[1]}").ravel(), return_inverse=True)
        cache = self._hist
        texts = np.empty(len(rows), dtype=object)
        for i, key in enumerate(rows.tolist()):
            text = cache.get(key)
            if text is None:
                text = cache[key] = _history_text(key)
            texts[i] = text
        return texts[inv.ravel()]

    def _uids(self, s: Slots | SlotRows, idx: np.ndarray) -> list[str]:
        """``C`` and the 16 hex digits of each uid hash: one hexlify, one split."""
        if not len(idx):
            return []
        hx = binascii.hexlify(s.uidh[idx].astype(">u8").tobytes(), "\n", 8).decode("ascii")
        return ("C" + hx.replace("\n", "\nC")).split("\n")

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
        """Codes into ``self._ip.cols`` (address text, enterprise, zone, role) of addresses.

        IPv4 addresses are keyed by their low 64 bits (one searchsorted for the batch), IPv6
        by (high, low) through a dict.
        """
        v6 = ver == 6
        if not v6.any():
            return self._ip.codes(lo, self._resolve4)
        codes = np.empty(len(ver), dtype=np.int64)
        v4 = ~v6
        if v4.any():
            codes[v4] = self._ip.codes(lo[v4], self._resolve4)
        keys = list(zip(hi[v6].tolist(), lo[v6].tolist(), strict=True))
        codes[v6] = self._ip.codes_of(keys, self._resolve6)
        return codes

    def _resolve4(self, keys: list[int]) -> list[tuple[Any, ...]]:
        out = []
        for key in keys:
            value = key & 0xFFFFFFFF
            ep = self.topology.lookup_int(4, value)
            text = socket.inet_ntoa(value.to_bytes(4, "big"))
            out.append((text, ep.enterprise, ep.zone, ep.role))
        return out

    def _resolve6(self, keys: list[tuple[int, int]]) -> list[tuple[Any, ...]]:
        out = []
        for h, low in keys:
            text = socket.inet_ntop(socket.AF_INET6, h.to_bytes(8, "big") + low.to_bytes(8, "big"))
            ep = self.topology.lookup_int(6, (h << 64) | low)
            out.append((text, ep.enterprise, ep.zone, ep.role))
        return out

    def _macs(self, macs: np.ndarray) -> np.ndarray:
        """Codes into ``self._mac.cols[0]`` (text, None for 0) of MAC values."""
        return self._mac.codes(
            macs, lambda keys: [(m.to_bytes(6, "big").hex(":") if m else None,) for m in keys]
        )

    def _app_protos(self, proto: np.ndarray, port: np.ndarray) -> np.ndarray:
        keys = ((proto << 16) | (port & 0xFFFF)).astype(np.uint64)
        codes = self._app.codes(
            keys, lambda new: [(app_proto_for(k >> 16, k & 0xFFFF),) for k in new]
        )
        return self._app.cols[0][codes]


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


_REASON_OBJ = np.array(["rst", "fin", "idle_timeout", "end_of_capture"], dtype=object)


def _reasons(why: str | np.ndarray, fl_o: np.ndarray, fl_r: np.ndarray) -> np.ndarray:
    """End reasons; ``expired`` and ``end_of_capture`` are resolved by the flows' flags."""
    if isinstance(why, str):
        if why not in ("expired", "end_of_capture"):
            return np.full(len(fl_o), why, dtype=object)
        why = np.full(len(fl_o), why, dtype=object)
    out = why.copy()
    rst = ((fl_o | fl_r) & RST) != 0
    for name, fin, other in (
        ("expired", ((fl_o | fl_r) & FIN) != 0, 2),
        ("end_of_capture", ((fl_o & fl_r) & FIN) != 0, 3),
    ):
        m = why == name
        if m.any():
            out[m] = _REASON_OBJ[np.where(rst, 0, np.where(fin, 1, other))[m]]
    return out


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
) -> np.ndarray:
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
                _ST["REJ"],
                np.where(o_in, _ST["RSTRH"], _ST["RSTR"]),
            ),
            np.where(r_in, np.where(s0_like, _ST["RSTOS0"], _ST["OTH"]), _ST["RSTO"]),
            _ST["SF"],
            np.where(r_in, _ST["SH"], _ST["S2"]),
            np.where(o_in, _ST["SHR"], _ST["S3"]),
            _ST["S0"],
            _ST["S1"],
        ],
        _ST["OTH"],
    )
    other = np.where(
        pk_o > 0,
        np.where(pk_r > 0, _ST["SF"], _ST["S0"]),
        np.where(pk_r > 0, _ST["SHR"], _ST["OTH"]),
    )
    return _STATE_OBJ[np.where(proto == 6, tcp, other)]


_STATES: tuple[str, ...] = ("REJ", "RSTRH", "RSTR", "RSTOS0", "OTH", "RSTO", "SF", "SH", "S2")
_STATES += ("SHR", "S3", "S0", "S1")
_ST = {name: i for i, name in enumerate(_STATES)}
_STATE_OBJ = np.array(_STATES, dtype=object)
