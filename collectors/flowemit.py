"""Turn ended flow-table slots into :class:`FlowRecord` objects, vectorised over the batch.

Decides the originator (SYN sender; else SYN-ACK receiver; else first sender, flipped when it
spoke from a server port to a client port, Zeek's ``^``), derives Zeek's ``conn_state`` from
per-endpoint TCP states, rebuilds ``history`` from first-occurrence frame numbers, and attaches
Community ID, topology facts and the port-bound application protocol.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import numpy as np

import collectors.services  # noqa: F401  (port bindings)
from collectors.communityid import ICMP4_REQUESTS, ICMP6_REQUESTS, community_id
from collectors.slots import LETTERS, NEVER, NL
from parkwatch.registry import PORT_BINDINGS, app_proto_for
from parkwatch.schema import FlowRecord

if TYPE_CHECKING:
    from collectors.slots import Slots
    from parkwatch.topology import Topology

FIN, SYN, RST = 1, 2, 4
_FLAG_TEXT = [
    "".join(c for b, c in zip((1, 2, 4, 8, 16, 32, 64, 128), "FSRPAUEC", strict=True) if f & b)
    for f in range(256)
]
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)
_L = {c: i for i, c in enumerate(LETTERS)}
_M1, _M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9)


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
        self._ip: dict[tuple[int, int, int], tuple[str, bytes]] = {}
        self._mac: dict[int, str] = {}
        self._hist: dict[bytes, str] = {}
        self._app: dict[tuple[int, int], str | None] = {}
        self._server = _server_ports()
        seed = int.from_bytes(vantage.encode()[:8].ljust(8, b"\0"), "little")
        self._seed = np.uint64(seed ^ 0x5052_4B57_4154_4348)

    def records(self, s: Slots, idx: np.ndarray, why: str) -> list[FlowRecord]:
        """Records for slots ``idx`` ending for reason ``why``.

        ``why`` may be ``expired`` (resolved to rst / fin / idle_timeout) or
        ``end_of_capture`` (rst / fin when the flow had closed, else end_of_capture).
        """
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

        pk_o, pk_r = pair(s.pkts)
        by_o, by_r = pair(s.bytes)
        pl_o, pl_r = pair(s.payload)
        l2_o, l2_r = pair(s.l2bytes)
        fl_o, fl_r = pair(s.flags)
        state = _conn_state(hist, orig_b, proto, pk_o, pk_r, pl_o, pl_r, fl_o, fl_r)
        reason = _reasons(why, fl_o, fl_r)
        hkeys = self._history_keys(hist, orig_b, orig_b != first_b)
        ports_a, ports_b = s.a_port[idx], s.b_port[idx]
        sport = np.where(orig_b, ports_b, ports_a).tolist()
        dport = np.where(orig_b, ports_a, ports_b).tolist()
        uid = self._uids(s, idx)
        out = []
        ver = s.ver[idx].tolist()
        ahi, alo, bhi, blo = (getattr(s, n)[idx].tolist() for n in ("a_hi", "a_lo", "b_hi", "b_lo"))
        mac_a, mac_b, has_mac = s.mac_a[idx].tolist(), s.mac_b[idx].tolist(), s.has_mac[idx]
        vlan, vlan2 = s.vlan[idx].tolist(), s.vlan_inner[idx].tolist()
        cols = [
            x.tolist()
            for x in (
                s.first_ts[idx],
                s.last_ts[idx],
                proto,
                pk_o,
                by_o,
                pl_o,
                l2_o,
                fl_o,
                pk_r,
                by_r,
                pl_r,
                l2_r,
                fl_r,
                orig_b,
            )
        ]
        lookup = self.topology.lookup
        for i, (t0, t1, pr, po, bo, plo, l2o, fo, pr_, br, plr, l2r, fr, ob) in enumerate(
            zip(*cols, strict=True)
        ):
            ta, tb = self._ipstr(ver[i], ahi[i], alo[i]), self._ipstr(ver[i], bhi[i], blo[i])
            (src, sraw), (dst, draw) = (tb, ta) if ob else (ta, tb)
            sp, dp = sport[i], dport[i]
            ma = self._macstr(mac_a[i]) if has_mac[i] else None
            mb = self._macstr(mac_b[i]) if mac_b[i] else None
            smac, dmac = (mb, ma) if ob else (ma, mb)
            se, de = lookup(src), lookup(dst)
            out.append(
                FlowRecord(
                    uid[i],
                    t0,
                    t1,
                    self.vantage,
                    src,
                    sp,
                    dst,
                    dp,
                    pr,
                    community_id(sraw, draw, pr, sp, dp),
                    state[i],
                    hkeys[i],
                    reason[i],
                    po,
                    bo,
                    plo,
                    l2o,
                    _FLAG_TEXT[fo],
                    pr_,
                    br,
                    plr,
                    l2r,
                    _FLAG_TEXT[fr],
                    vlan[i] if vlan[i] >= 0 else None,
                    vlan2[i] if vlan2[i] >= 0 else None,
                    smac,
                    dmac,
                    self._app_proto(pr, dp),
                    se.enterprise,
                    se.zone,
                    se.role,
                    de.enterprise,
                    de.zone,
                    de.role,
                )
            )
        return out

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
        return [f"C{x:016x}" for x in h.tolist()]

    def _ipstr(self, ver: int, hi: int, lo: int) -> tuple[str, bytes]:
        got = self._ip.get((ver, hi, lo))
        if got is None:
            if ver == 4:
                raw = (lo & 0xFFFFFFFF).to_bytes(4, "big")
                got = (socket.inet_ntoa(raw), raw)
            else:
                raw = hi.to_bytes(8, "big") + lo.to_bytes(8, "big")
                got = (socket.inet_ntop(socket.AF_INET6, raw), raw)
            if len(self._ip) > 200_000:
                self._ip.clear()
            self._ip[(ver, hi, lo)] = got
        return got

    def _macstr(self, mac: int) -> str:
        got = self._mac.get(mac)
        if got is None:
            got = self._mac[mac] = mac.to_bytes(6, "big").hex(":")
        return got

    def _app_proto(self, proto: int, port: int) -> str | None:
        key = (proto, port)
        if key not in self._app:
            self._app[key] = app_proto_for(proto, port)
        return self._app[key]


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
