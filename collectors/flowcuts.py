"""Where flows end inside a batch: the cuts of the flow table (:mod:`collectors.flowtable`).

:class:`FlowCuts` is a mixin of :class:`~collectors.flowtable.FlowTable`: idle-timeout cuts of
non-TCP groups with numpy (:meth:`FlowCuts._idle_splits`) and the exact per-packet walk for TCP
(FIN/RST then a new SYN) and active-timeout cases (:meth:`FlowCuts._exact`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from collectors.flowgroup import Packets
from collectors.slots import Slots

if TYPE_CHECKING:
    from collectors.flowtable import FlowStats

FIN, SYN, RST, ACK = 1, 2, 4, 16


class FlowCuts:
    """Flow-end detection methods of :class:`~collectors.flowtable.FlowTable`."""

    slots: Slots
    stats: FlowStats
    _idle: np.ndarray
    _active: np.ndarray
    _linger: int

    def _idle_splits(
        self,
        pk: Packets,
        groups: np.ndarray,
        gap: np.ndarray,
        first_g: np.ndarray,
        splits: dict[int, str],
    ) -> np.ndarray:
        """Idle-timeout cuts of non-TCP groups, vectorised; returns groups needing _exact.

        Without TCP state a flow ends only by an idle gap or the active timeout. Gaps are
        cut here; a group where a cut-out piece would still exceed the active timeout goes
        to the exact per-packet walk instead.
        """
        if not len(groups):
            return groups
        gid, ts, gstart = pk.gid, pk.ts, pk.gstart
        in_g = np.zeros(len(gstart), dtype=bool)
        in_g[groups] = True
        mine = in_g[gid]
        cut = mine & (gap > self._idle[pk.proto])
        pos = np.arange(len(ts))
        last_cut = np.maximum.accumulate(np.where(cut, pos, -1))
        own = last_cut >= gstart[gid]
        seg_t0 = np.where(own, ts[np.maximum(last_cut, 0)], first_g[gid])
        too_long = _sorted_unique(gid[mine & (ts - seg_t0 > self._active[pk.proto])])
        ok = cut & ~np.isin(gid, too_long)
        self.stats.slow_groups += len(groups) - len(too_long)
        for p in np.flatnonzero(ok).tolist():
            splits[p] = "idle_timeout"
        return too_long

    def _exact(self, pk: Packets, g: int, slot: int, splits: dict[int, str]) -> None:
        """Walk one group's packets in order and record where flows end (rare path)."""
        self.stats.slow_groups += 1
        s = self.slots
        lo = int(pk.gstart[g])
        hi = int(pk.gstart[g + 1]) if g + 1 < len(pk.gstart) else len(pk.ts)
        ts = pk.ts[lo:hi].tolist()
        fl = pk.flags[lo:hi].tolist()
        fw = pk.fwd[lo:hi].tolist()
        tcp = int(pk.proto[lo]) == 6
        idle = int(self._idle[int(pk.proto[lo])])
        active = int(self._active[int(pk.proto[lo])])
        if slot >= 0:
            first, last = int(s.first_ts[slot]), int(s.last_ts[slot])
            fa, fb = bool(s.flags[slot, 0] & FIN), bool(s.flags[slot, 1] & FIN)
            rst = bool((s.flags[slot] & RST).any())
        else:
            first = last = ts[0]
            fa = fb = rst = False
        for i, t in enumerate(ts):
            closed = rst or (fa and fb)
            why = None
            if t - last > (self._linger if closed else idle):
                why = "rst" if rst else "fin" if (fa or fb) else "idle_timeout"
            elif closed and tcp and (fl[i] & (SYN | ACK | RST | FIN)) == SYN:
                why = "rst" if rst else "fin"
            elif t - first > active:
                why = "active_timeout"
            if why is not None and (i > 0 or slot >= 0):
                splits[lo + i] = why
                first, fa, fb, rst = t, False, False, False
            last = t
            if tcp:
                f = fl[i]
                if f & FIN:
                    fa, fb = (True, fb) if fw[i] else (fa, True)
                rst = rst or bool(f & RST)


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """The distinct values of the sorted array ``a`` (np.unique without its sort, and
    without the import of numpy.ma that np.unique costs on first use)."""
    if len(a) < 2:
        return a
    keep = np.empty(len(a), dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]
