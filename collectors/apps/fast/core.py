"""The fast path proper: which candidates qualify, flow-state updates, events as columns.

A candidate takes the fast path when its flow already has a decoder with fast shapes
(:mod:`collectors.apps.fast.protos`), both TCP streams of the flow are clean (nothing
buffered, nothing out of order, not dead), the segment is a plain data segment (no SYN, FIN
or RST, not truncated) whose sequence number is the next expected one, and its payload is
whole PDUs of shapes the fast decoders cover. Per flow only a *prefix* of the batch's
candidates is taken: from the first candidate that does not qualify on, the flow's
candidates go to the per-packet path, which then sees exactly the state the per-packet path
would have left.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from collectors.apps.fast.links import Links
from collectors.apps.fast.pdus import Arr, objcol, split
from collectors.apps.fast.protos import Built, Proto, protos

if TYPE_CHECKING:
    from collectors.apps.engine import AppEngine, AppFlow

MOD = 1 << 32


def _lim(v: int | None) -> int:
    return -1 if v is None else v


@dataclass
class Cand:
    """The candidate packets of one batch (engine order), as columns."""

    idx: Arr  # packet index in the batch
    uid: Arr  # flow uid hash (uint64)
    fwd: Arr  # sent A -> B
    tcp: Arr
    poff: Arr  # payload offset in the batch buffer
    avail: Arr  # payload octets captured
    wire: Arr  # payload octets on the wire
    seq: Arr
    flags: Arr

    def take(self, ix: Arr) -> Cand:
        """Candidates at positions ``ix`` (positions then count in ``ix``)."""
        return Cand(*(getattr(self, f.name)[ix] for f in fields(self)))


@dataclass
class FastResult:
    fast: Arr  # bool per candidate: handled here
    pos: Arr  # candidate position of each event (events in capture order)
    cols: dict[str, Arr]  # the events' OtEvent columns (without uid order changes)


class FastPath(Links):
    """Bulk decoding of the clean common case for one :class:`AppEngine`."""

    def __init__(self, engine: AppEngine) -> None:
        self.engine = engine
        self.pmap = protos()
        self.plist = list(self.pmap.values())
        self.packets = 0  # candidates handled here (for tests and benchmarks)

    def looks_ready(self, st: AppFlow, a_to_b: bool, seq: int, size: int) -> bool:
        """Would a plain, whole data segment (``seq``, ``size`` octets) of flow ``st`` sent
        A -> B (``a_to_b``) qualify here now? The engine's rounds pause a flow's per-packet
        run at such a segment and hand the rest of its candidates back to :meth:`run`."""
        dec = st.decoder
        p = self.pmap.get(type(dec))
        if p is None:
            return False
        s0, s1 = st.streams
        if s0.buf or s1.buf or s0.ooo or s1.ooo or s0.dead or s1.dead:
            return False
        if st.streams[0 if a_to_b else 1].next_seq != seq:
            return False
        fc = a_to_b == st.client_is_a
        if not p.ready(dec, fc):
            return False
        lm = p.limit(dec, fc) if p.limited else None
        return lm is None or size <= lm

    # -- selection ------------------------------------------------------------------------------
    def run(self, d: Any, c: Cand) -> FastResult | None:
        n = len(c.idx)
        pre = c.tcp & (c.avail == c.wire) & (c.avail > 0) & ((c.flags & 7) == 0)
        pj = np.flatnonzero(pre)
        if not len(pj):
            return None
        uu, inv = np.unique(c.uid[pj], return_inverse=True)
        nf = len(uu)
        sts: list[AppFlow | None] = [None] * nf
        pid = np.zeros(nf, dtype=np.int64)
        nxt = np.full((nf, 2), -1, dtype=np.int64)
        dok = np.zeros((nf, 2), dtype=bool)
        lim = np.full((nf, 2), -1, dtype=np.int64)  # octets a side may take here (-1: any)
        cia = np.zeros(nf, dtype=bool)
        flows, pmap = self.engine.flows, self.pmap
        for f, u in enumerate(uu.tolist()):
            st = flows.get(u)
            if st is None or (p := pmap.get(type(st.decoder))) is None:
                continue
            s0, s1 = st.streams
            if s0.buf or s1.buf or s0.ooo or s1.ooo or s0.dead or s1.dead:
                continue
            ca = bool(st.client_is_a)
            r0, r1 = p.ready(st.decoder, ca), p.ready(st.decoder, not ca)
            if r0 or r1:
                sts[f], pid[f], cia[f], dok[f] = st, p.index, ca, (r0, r1)
                nxt[f] = [-1 if s.next_seq is None else s.next_seq for s in (s0, s1)]
                if p.limited:
                    lim[f] = [_lim(p.limit(st.decoder, ca)), _lim(p.limit(st.decoder, not ca))]
        if not pid.any():
            return None
        u8 = np.frombuffer(d.raw.buf, dtype=np.uint8)
        fidx = np.full(n, -1, dtype=np.int64)
        fidx[pj] = inv
        sdir = np.where(c.fwd, 0, 1)
        fromc = c.fwd == cia[np.maximum(fidx, 0)]
        elig = np.zeros(n, dtype=bool)
        pdus: list[tuple[Proto, Arr, Arr, Arr]] = []
        for p in self.plist:
            sel = pj[pid[inv] == p.index]
            sel = sel[dok[fidx[sel], sdir[sel]]]
            if not len(sel):
                continue
            if p.whole:  # the payload is one unit (stream bytes, no PDU framing)
                ok, row = np.ones(len(sel), dtype=bool), np.arange(len(sel))
                off, size = c.poff[sel], c.avail[sel]
            else:
                ok, row, off, size = split(u8, c.poff[sel], c.avail[sel], p.hdr, p.size_of)
            ppos = sel[row]
            good = p.check(u8, off, size, fromc[ppos])
            ok[row[~good]] = False
            elig[sel[ok]] = True
            pdus.append((p, ppos, off, size))
        fast = self._prefix(c, elig, fidx, sdir, nxt, sts, lim, fromc)
        if not fast.any():
            return None
        self.packets += int(fast.sum())
        return self._events(d, c, fast, fidx, fromc, sts, pdus, u8)

    def _prefix(
        self, c: Cand, elig: Arr, fidx: Arr, sdir: Arr, nxt: Arr, sts: list[AppFlow | None],
        lim: Arr, fromc: Arr,
    ) -> Arr:  # fmt: skip
        """Sequence numbers in order, side limits, then each flow's prefix; advances the
        streams (and the decoders of limited shapes by the octets they took)."""
        e = np.flatnonzero(elig)
        g = fidx[e] * 2 + sdir[e]
        o = np.lexsort((e, g))
        es, gs = e[o], g[o]
        sq = c.seq[es]
        end = (sq + c.avail[es]) % MOD
        first = np.ones(len(es), dtype=bool)
        first[1:] = gs[1:] != gs[:-1]
        exp = np.empty_like(sq)
        exp[1:] = end[:-1]
        start = nxt[fidx[es[first]], sdir[es[first]]]
        exp[first] = np.where(start >= 0, start, sq[first])
        elig[es[sq != exp]] = False
        took = np.cumsum(c.avail[es])  # octets per side so far, this side's before subtracted
        hs = np.flatnonzero(first)
        took -= (took[hs] - c.avail[es[hs]])[np.cumsum(first) - 1]
        gl = lim[fidx[es], sdir[es]]
        elig[es[(gl >= 0) & (took > gl)]] = False
        n = len(elig)
        o2 = np.argsort(c.uid, kind="stable")
        bad = ~elig[o2]
        head = np.ones(n, dtype=bool)
        head[1:] = c.uid[o2][1:] != c.uid[o2][:-1]
        cb = np.cumsum(bad)
        starts = np.flatnonzero(head)
        before = (cb[starts] - bad[starts])[np.cumsum(head) - 1]
        fast = np.zeros(n, dtype=bool)
        fast[o2] = ~bad & (cb - before == 0)
        fm = fast[es]
        last = fm.copy()
        last[:-1] &= ~(fm[1:] & (gs[1:] == gs[:-1]))
        for j, e_end, k, lm in zip(
            es[last].tolist(), end[last].tolist(), took[last].tolist(), gl[last].tolist(),
            strict=True,
        ):  # fmt: skip
            st = sts[int(fidx[j])]
            assert st is not None
            st.streams[int(sdir[j])].next_seq = e_end
            if lm >= 0:
                self.pmap[type(st.decoder)].consume(st.decoder, bool(fromc[j]), k)
        return fast

    # -- events -----------------------------------------------------------------------------------
    def _events(
        self,
        d: Any,
        c: Cand,
        fast: Arr,
        fidx: Arr,
        fromc: Arr,
        sts: list[AppFlow | None],
        pdus: list[tuple[Proto, Arr, Arr, Arr]],
        u8: Arr,
    ) -> FastResult:
        parts: list[tuple[Proto, Arr, Built]] = []
        for p, ppos, off, size in pdus:
            m = fast[ppos]
            if p.events and m.any():
                parts.append((p, ppos[m], p.build(u8, d.raw.buf, off[m], size[m], fromc[ppos[m]])))
        if not parts:
            return FastResult(fast, np.zeros(0, dtype=np.int64), {})
        pos = np.concatenate([pp for _, pp, _ in parts])
        order = np.argsort(pos, kind="stable")
        pos = pos[order]
        names = [f.name for f in fields(Built)]
        b = {k: np.concatenate([getattr(bb, k) for _, _, bb in parts])[order] for k in names}
        proto = np.concatenate([np.full(len(pp), p.name, dtype=object) for p, pp, _ in parts])
        proto = proto[order]
        ef = fidx[pos]
        m = len(pos)
        # uids: the flow's counter, in event order
        o3 = np.argsort(ef, kind="stable")
        efs = ef[o3]
        head = np.ones(m, dtype=bool)
        head[1:] = efs[1:] != efs[:-1]
        hs = np.flatnonzero(head)
        rank = np.arange(m) - hs[np.cumsum(head) - 1]
        flows_here = efs[hs].tolist()
        base = np.zeros(len(sts), dtype=np.int64)
        fuid = np.full(len(sts), None, dtype=object)
        cid = np.full(len(sts), None, dtype=object)
        ends: list[Any] = [None] * len(sts)
        counts = np.diff(np.append(hs, m)).tolist()
        stats = self.engine.stats
        by = stats.by_protocol
        for f, k, j in zip(flows_here, counts, hs.tolist(), strict=True):
            st = sts[f]
            assert st is not None and st.decoder is not None
            base[f], fuid[f], cid[f] = st.count, st.uid, st.cid
            st.count += k
            st.summary.setdefault("app_proto", st.decoder.name)
            by[st.decoder.name] = by.get(st.decoder.name, 0) + k
            ends[f] = self.engine.ends(st, d, int(c.idx[pos[o3[j]]]), bool(c.fwd[pos[o3[j]]]))
        stats.events += m
        num = np.empty(m, dtype=np.int64)
        num[o3] = base[efs] + rank + 1
        uid = objcol((f"{a}.{k}" for a, k in zip(fuid[ef].tolist(), num.tolist(), strict=True)), m)
        request_uid = self._link(ef, b["req"], b["rsp"], b["key"], uid, sts)
        return FastResult(fast, pos, self._columns(d, c, pos, ef, ends, proto, uid, cid, fuid,
                                                   request_uid, b))  # fmt: skip

    def _columns(
        self, d: Any, c: Cand, pos: Arr, ef: Arr, ends: list[Any], proto: Arr, uid: Arr,
        cid: Arr, fuid: Arr, request_uid: Arr, b: dict[str, Arr],
    ) -> dict[str, Arr]:  # fmt: skip
        m = len(pos)
        i = c.idx[pos]
        fw = c.fwd[pos]
        nf = len(ends)
        # per flow: A text, B text, then enterprise, zone, role of A and of B
        side: list[list[Any]] = [[None] * nf for _ in range(8)]
        for f, e in enumerate(ends):
            if e is not None:
                (ta, ea), (tb, eb) = e
                vals = (ta, tb, ea.enterprise, eb.enterprise, ea.zone, eb.zone, ea.role, eb.role)
                for k, v in enumerate(vals):
                    side[k][f] = v
        cols = [objcol(s_, nf) for s_ in side]

        def pick(k: int) -> tuple[Arr, Arr]:
            a_, b_ = cols[k][ef], cols[k + 1][ef]
            return np.where(fw, a_, b_), np.where(fw, b_, a_)

        src_t, dst_t = pick(0)
        src_ent, dst_ent = pick(2)
        src_zone, dst_zone = pick(4)
        src_role, dst_role = pick(6)
        return {
            "uid": uid,
            "ts": d.raw.ts_ns[i].astype(np.int64),
            "protocol": proto,
            "direction": b["direction"],
            "src_ip": src_t,
            "src_port": d.sport[i].astype(np.int64),
            "dst_ip": dst_t,
            "dst_port": d.dport[i].astype(np.int64),
            "community_id": cid[ef],
            "flow_uid": fuid[ef],
            "vantage": np.full(m, self.engine.vantage, dtype=object),
            "unit": b["unit"],
            "function_code": b["function_code"],
            "function_name": b["function_name"],
            "exception_code": b["exception_code"],
            "request_uid": request_uid,
            "address": b["address"],
            "quantity": b["quantity"],
            "values": b["values"],
            "data_area": b["data_area"],
            "src_enterprise": src_ent,
            "src_zone": src_zone,
            "src_role": src_role,
            "dst_enterprise": dst_ent,
            "dst_zone": dst_zone,
            "dst_role": dst_role,
            "attrs": b["attrs"],
        }
