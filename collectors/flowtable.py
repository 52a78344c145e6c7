"""Bidirectional flow table fed with decoded batches.

Per batch, packets are grouped by canonical 5-tuple (+VLANs) (:mod:`collectors.flowgroup`),
cut into per-flow *segments*, and every segment is folded into its slot with ``reduceat``.
Groups that might end a flow inside the batch are cut exactly: UDP/ICMP idle gaps with numpy,
TCP (FIN/RST then a new SYN) and active-timeout cases with a per-packet Python loop over just
those groups. Ended flows are released to the caller in end-time order: a flow is held back
until no open flow can still end before it (see :meth:`FlowTable.add`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from collectors.decode import FRAG_FIRST, FRAG_LATER, KIND_IP, KIND_WEIRD, Decoded, weird_code
from collectors.flowcuts import ACK, FIN, RST, SYN, FlowCuts, _sorted_unique
from collectors.flowemit import Emitter
from collectors.flowgroup import Packets, group_packets
from collectors.flowindex import KEY_NAMES as KEY_NAMES
from collectors.flowindex import FlowIndex
from collectors.slots import LETTERS, NEVER, NL, SlotRows, Slots
from parkwatch.config import FlowSettings
from parkwatch.schema import FlowRecord
from parkwatch.schema.columns import Columns

NS = 1_000_000_000


@dataclass
class FlowStats:
    """Counters of one flow table; every IP packet ends in a flow or in ``weird``."""

    ip_packets: int = 0
    fragments: int = 0
    orphan_fragments: int = 0
    flows: int = 0
    evicted: int = 0
    slow_groups: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class FlowTable(FlowIndex, FlowCuts):
    """Flow state for one vantage point; ``add`` batches, ``flush`` at the end of capture."""

    def __init__(self, settings: FlowSettings, emitter: Emitter) -> None:
        self.cfg = settings
        self.emit = emitter
        self.slots = Slots()
        self.index: dict[int, int] = {}  # key hash -> slot (verified on every hit)
        self.collide: dict[tuple[int, ...], int] = {}  # exact key -> slot, for hash twins
        self.frags: dict[tuple[int, ...], tuple[int, int, int]] = {}
        self.stats = FlowStats()
        self._pending: list[Columns[FlowRecord]] = []
        self._ended: list[tuple[SlotRows, str]] = []  # ended flows not yet made records
        self._idle = settings.per_protocol("idle")  # ns, indexed by IP protocol
        self._active = settings.per_protocol("active")
        self._linger = int(settings.tcp_close_linger * NS)
        self.now = -NEVER
        self.packet_uids: np.ndarray | None = None  # set by add() when track_packets
        self.packet_fwd: np.ndarray | None = None
        self.track_packets = False

    # -- public -------------------------------------------------------------------------
    def add(self, d: Decoded) -> Columns[FlowRecord]:
        """Fold a decoded batch in; return flows that ended and can be released in order."""
        sel = np.nonzero(d.kind == KIND_IP)[0]
        if self.track_packets:  # per packet: uid hash of its flow (0: none), A->B direction
            self.packet_uids = np.zeros(len(d), dtype=np.uint64)
            self.packet_fwd = np.zeros(len(d), dtype=bool)
        if len(sel):
            sel = self._fragments(d, sel)
        if len(sel):
            self.stats.ip_packets += len(sel)
            self._fold(d, sel)
            self.now = max(self.now, int(d.raw.ts_ns[sel].max()))
        self._expire()
        return self._release(self._watermark())

    def flush(self) -> Columns[FlowRecord]:
        """End every open flow (end of capture) and release everything pending."""
        live = np.nonzero(self.slots.active)[0]
        self._end(live, "end_of_capture")
        return self._release(NEVER)

    @property
    def active_flows(self) -> int:
        return int(self.slots.active.sum())

    # -- fragments ------------------------------------------------------------------------
    def _fragments(self, d: Decoded, sel: np.ndarray) -> np.ndarray:
        fr = np.nonzero(d.frag[sel] != 0)[0]
        if not len(fr):
            return sel
        self.stats.fragments += len(fr)
        drop = []
        for i in sel[fr].tolist():
            key = (
                int(d.ver[i]),
                int(d.src_hi[i]),
                int(d.src_lo[i]),
                int(d.dst_hi[i]),
                int(d.dst_lo[i]),
                int(d.proto[i]),
                int(d.ip_id[i]),
            )
            if d.frag[i] == FRAG_FIRST:
                if len(self.frags) > 65536:
                    self.frags.pop(next(iter(self.frags)))
                self.frags[key] = (int(d.sport[i]), int(d.dport[i]), int(d.flags[i]))
            elif d.frag[i] == FRAG_LATER:
                got = self.frags.get(key)
                if got is None:
                    d.kind[i] = KIND_WEIRD
                    d.weird[i] = weird_code("fragment_without_first_fragment")
                    self.stats.orphan_fragments += 1
                    drop.append(i)
                else:
                    d.sport[i], d.dport[i] = got[0], got[1]
        if drop:
            sel = sel[~np.isin(sel, drop)]
        return sel

    # -- folding ----------------------------------------------------------------------------
    def _fold(self, d: Decoded, sel: np.ndarray) -> None:
        pk = group_packets(d, sel)
        slot_g, exact = self._lookup(pk, pk.hg, pk.gstart, pk.unique_hashes)
        self._segment_and_fold(pk, slot_g, exact)

    def _segment_and_fold(self, pk: Packets, slot_g: np.ndarray, exact: np.ndarray) -> None:
        s = self.slots
        ts, gstart, gid = pk.ts, pk.gstart, pk.gid
        known = slot_g >= 0
        sg = np.where(known, slot_g, 0)
        prev = np.empty_like(ts)
        prev[1:] = ts[:-1]
        prev[gstart] = np.where(known, s.last_ts[sg], ts[gstart])
        gap = ts - prev
        tcp = pk.proto == 6
        finrst = tcp & ((pk.flags & (FIN | RST)) != 0)
        cum = np.cumsum(finrst)
        before = cum - finrst - (cum - finrst)[gstart][gid]
        closed_g = known & ((s.flags[sg] & (FIN | RST)).any(axis=1))
        maybe_closed = (before > 0) | closed_g[gid]
        pure_syn = tcp & ((pk.flags & (SYN | ACK | RST | FIN)) == SYN)
        first_g = np.where(known, s.first_ts[sg], ts[gstart])
        cand = (gap > self._idle[pk.proto]) | (ts - first_g[gid] > self._active[pk.proto])
        cand |= maybe_closed & ((gap > self._linger) | pure_syn)
        splits: dict[int, str] = {}  # sorted position where a new flow starts -> why the old ended
        if cand.any():
            groups = _sorted_unique(gid[cand])
            tcp_g = pk.proto[gstart[groups]] == 6
            slow = groups[tcp_g]  # TCP: FIN/RST state matters
            slow = np.sort(  # two disjoint sorted sets (TCP, non-TCP groups)
                np.concatenate((slow, self._idle_splits(pk, groups[~tcp_g], gap, first_g, splits)))
            )
            for g in slow.tolist():
                self._exact(pk, g, int(slot_g[g]), splits)
        seg_start = gstart
        if splits:
            cuts = np.fromiter(splits, dtype=np.int64, count=len(splits))
            seg_start = _sorted_unique(np.sort(np.concatenate((gstart, cuts))))
        seg_g = gid[seg_start]
        first_in_g = seg_start == gstart[seg_g]
        cont = first_in_g & known[seg_g]
        ended_at_start = [p for p in splits if p == gstart[gid[p]] and known[gid[p]]]
        if ended_at_start:  # an existing flow ends before this batch's first packet of it
            old = slot_g[gid[ended_at_start]]
            cont &= ~np.isin(seg_start, ended_at_start)
            self._end_grouped(old, [splits[p] for p in ended_at_start])
            for p in ended_at_start:
                del splits[p]
        slot_of = np.where(cont, slot_g[seg_g], -1)
        is_new = slot_of < 0
        new = np.nonzero(is_new)[0]
        if len(new):
            fresh = s.take(len(new))
            slot_of[new] = fresh
            self._init_slots(pk, fresh, seg_start[new])
        self._accumulate(pk, seg_start, slot_of)
        if self.packet_uids is not None and self.packet_fwd is not None:  # for app decoding
            seg_of = np.repeat(np.arange(len(seg_start)), np.diff(np.append(seg_start, len(gid))))
            self.packet_uids[pk.psel] = s.uidh[slot_of[seg_of]]
            self.packet_fwd[pk.psel] = pk.fwd
        last_seg = np.append(seg_g[1:] != seg_g[:-1], True)
        newest = np.nonzero(last_seg & is_new)[0]
        self._index(pk, seg_g[newest], slot_of[newest], exact)
        if splits:  # segments that ended inside the batch: the next segment started a new flow
            pos = np.searchsorted(seg_start, list(splits)) - 1
            self._end_grouped(slot_of[pos], list(splits.values()), reindex=False)

    def _init_slots(self, pk: Packets, idx: np.ndarray, at: np.ndarray) -> None:
        s = self.slots
        for name, col in zip(
            ("a_hi", "a_lo", "b_hi", "b_lo", "a_port", "b_port", "proto", "vlan", "vlan_inner"),
            pk.key_cols(at),
            strict=True,
        ):
            getattr(s, name)[idx] = col
        d = pk.d
        s.ver[idx] = pk.at(d.ver, at)
        fwd = pk.fwd[at]
        s.first_dir[idx] = np.where(fwd, 0, 1)
        s.first_frame[idx] = pk.frame[at]
        s.first_ts[idx] = pk.ts[at]
        s.uidh[idx] = self.emit.uid_hashes(s, idx)
        src, dst = pk.at(d.src_mac, at), pk.at(d.dst_mac, at)
        s.mac_a[idx] = np.where(fwd, src, dst)
        s.mac_b[idx] = np.where(fwd, dst, src)
        s.has_mac[idx] = pk.at(d.has_mac, at)

    def _accumulate(self, pk: Packets, seg: np.ndarray, slot: np.ndarray) -> None:
        s = self.slots
        rev = ~pk.fwd
        add = np.add.reduceat
        for name, vals in (
            ("pkts", None),
            ("bytes", pk.ip_len),
            ("payload", pk.payload),
            ("l2bytes", pk.wirelen),
        ):
            if vals is None:
                tot = np.diff(np.append(seg, len(pk.ts)))
                r = add(rev.astype(np.int64), seg)
            else:
                tot = add(vals, seg)
                r = add(np.where(rev, vals, 0), seg)
            arr = getattr(s, name)
            arr[slot, 0] += tot - r
            arr[slot, 1] += r
        orr = np.bitwise_or.reduceat
        s.flags[slot, 0] |= orr(np.where(rev, 0, pk.flags), seg).astype(np.uint8)
        s.flags[slot, 1] |= orr(np.where(rev, pk.flags, 0), seg).astype(np.uint8)
        s.last_ts[slot] = np.maximum(
            np.where(s.last_ts[slot] == NEVER, 0, s.last_ts[slot]), np.maximum.reduceat(pk.ts, seg)
        )
        s.first_ts[slot] = np.minimum(s.first_ts[slot], np.minimum.reduceat(pk.ts, seg))
        letters = pk.letters
        present = int(np.bitwise_or.reduce(letters)) if len(letters) else 0
        hist = s.hist[slot]
        seg_of = np.repeat(np.arange(len(seg)), np.diff(np.append(seg, len(letters))))
        for bit in range(2 * NL):  # dense letters (A, D): one reduceat over the batch
            if present & (1 << bit) & _DENSE:
                fr = np.where(letters & (1 << bit), pk.frame, NEVER)
                hist[:, bit] = np.minimum(hist[:, bit], np.minimum.reduceat(fr, seg))
        rare_at = np.flatnonzero(letters & _RARE) if present & _RARE else letters[:0]
        if len(rare_at):  # rare letters (S H F R Q I): only the packets that carry them
            rl, rs, rf = letters[rare_at], seg_of[rare_at], pk.frame[rare_at]
            for bit in range(2 * NL):
                if present & (1 << bit) & _RARE:
                    m = (rl & (1 << bit)) != 0
                    sid, fr = rs[m], rf[m]
                    first = np.ones(len(sid), dtype=bool)
                    first[1:] = sid[1:] != sid[:-1]  # sorted: the first of each segment
                    sid, fr = sid[first], fr[first]
                    hist[sid, bit] = np.minimum(hist[sid, bit], fr)
        s.hist[slot] = hist

    # -- ending -----------------------------------------------------------------------------
    def _end_grouped(self, idx: np.ndarray, reasons: list[str], reindex: bool = True) -> None:
        for why in set(reasons):
            pick = np.array([r == why for r in reasons])
            self._end(np.asarray(idx)[pick], why, reindex)

    def _end(self, idx: np.ndarray, why: str, reindex: bool = True) -> None:
        """End the flows of slots ``idx``: their rows are copied (records are made for all
        of a batch's ended flows at once, see :meth:`_emit_ended`) and the slots freed."""
        if not len(idx):
            return
        s = self.slots
        self._ended.append((SlotRows.take(s, idx), why))
        if reindex:
            self._unindex(idx)
        s.release(idx)
        self.stats.flows += len(idx)

    def _emit_ended(self) -> None:
        """Records of the flows ended since the last call, in the order they ended."""
        if not self._ended:
            return
        rows = SlotRows.concat([r for r, _ in self._ended])
        reasons = {why for _, why in self._ended}
        why: str | np.ndarray = reasons.pop() if len(reasons) == 1 else np.concatenate(
            [np.full(r.n, w, dtype=object) for r, w in self._ended]
        )
        self._ended = []
        cols = self.emit.columns(rows, np.arange(rows.n), why)
        by = self.stats.by_reason
        names, counts = np.unique(cols["end_reason"].astype(str), return_counts=True)
        for name, count in zip(names.tolist(), counts.tolist(), strict=True):
            by[name] = by.get(name, 0) + count
        self._pending.append(cols)

    def _expire(self) -> None:
        s = self.slots
        act = np.nonzero(s.active)[0]
        if not len(act):
            return
        quiet = self.now - s.last_ts[act]
        closed = (s.flags[act] & RST).any(axis=1) | (s.flags[act] & FIN).all(axis=1)
        limit = np.where(closed & (s.proto[act] == 6), self._linger, self._idle[s.proto[act]])
        self._end(act[quiet > limit], "expired")
        act = np.nonzero(s.active)[0]
        self._end(act[self.now - s.first_ts[act] > self._active[s.proto[act]]], "active_timeout")
        over = len(act) - self.cfg.max_flows
        if over > 0:
            act = np.nonzero(s.active)[0]
            oldest = act[np.argsort(s.last_ts[act], kind="stable")[:over]]
            self.stats.evicted += len(oldest)
            self._end(oldest, "evicted")

    def _watermark(self) -> int:
        s = self.slots
        return int(s.last_ts.min()) if s.active.any() else NEVER

    def _release(self, upto: int) -> Columns[FlowRecord]:
        """Pending flows with ``end <= upto``, in end order (stable for equal ends)."""
        self._emit_ended()
        pend = Columns.concat(FlowRecord, self._pending)
        if not len(pend):
            self._pending = []
            return pend
        order = np.argsort(pend["end"], kind="stable")
        cut = int(np.searchsorted(pend["end"][order], upto, side="right"))
        self._pending = [pend.take(order[cut:])] if cut < len(order) else []
        return pend.take(order[:cut])


_DENSE = sum(1 << (d * NL + LETTERS.index(c)) for d in (0, 1) for c in "AD")
_RARE = ((1 << (2 * NL)) - 1) & ~_DENSE
