"""Request/response links of fast-path events (a mixin of :class:`~collectors.apps.fast.core.
FastPath`): ``request_uid`` per event and the flows' pending queues, exactly as the per-packet
path (:meth:`~collectors.apps.engine.AppEngine._event`) leaves them."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np

from collectors.apps.fast.pdus import Arr
from collectors.apps.fast.protos import Proto

if TYPE_CHECKING:
    from collectors.apps.engine import AppFlow

KEY_BITS = 37
"""Request keys are packed below this bit; the flow index above it."""


class Links:
    """Needs ``pmap`` (decoder class -> :class:`Proto`)."""

    pmap: dict[type, Proto]

    # -- request/response links -------------------------------------------------------------------
    def _link(
        self, ef: Arr, req: Arr, rsp: Arr, key: Arr, uid: Arr, sts: list[AppFlow | None]
    ) -> Arr:
        """``request_uid`` per event; the flows' pending queues as the per-packet path leaves
        them. A response takes the oldest queued request of its key (FIFO per key).

        Groups (flow, key) without queued requests from earlier batches are matched with
        numpy: the queue length is a reflected random walk (+1 request, -1 response), a
        response finds a request when the length before it is positive, and the k-th such
        response takes the group's k-th request. Other groups run the queue in Python.
        """
        from collectors.apps.engine import MAX_PENDING

        out = np.full(len(ef), None, dtype=object)
        li = np.flatnonzero(req | rsp)
        if not len(li):
            return out
        gk = (ef[li] << KEY_BITS) | key[li]
        o = np.argsort(gk, kind="stable")
        ls, gs = li[o], gk[o]
        nl = len(ls)
        head = np.ones(nl, dtype=bool)
        head[1:] = gs[1:] != gs[:-1]
        gid = np.cumsum(head) - 1
        ug = gs[head]
        x = np.where(req[ls], 1, -1)
        pushes = np.bincount(gid, weights=(x == 1), minlength=len(ug))
        special = self._queued(ug, sts) | (pushes >= MAX_PENDING)
        sp = special[gid]
        if sp.any():
            self._python_groups(ls[sp], gs[sp], head[sp], req, uid, sts, out)
        keep = ~sp
        ls, gs, head, x = ls[keep], gs[keep], head[keep], x[keep]
        if not len(ls):
            return out
        gid = np.cumsum(head) - 1
        ng = int(gid[-1]) + 1
        cs = np.cumsum(x)
        hs = np.flatnonzero(head)
        s = cs - (cs[hs] - x[hs])[gid]
        big = 2 * len(ls) + 2
        off = (ng - 1 - gid) * big
        low = np.minimum(np.minimum.accumulate(s + off) - off, 0)
        q = s - low
        qprev = np.empty_like(q)
        qprev[1:] = q[:-1]
        qprev[head] = 0
        hit = (x == -1) & (qprev > 0)
        is_push = x == 1
        pr = np.cumsum(is_push)
        pr = pr - (pr[hs] - is_push[hs])[gid] - 1  # rank of each push in its group
        hr = np.cumsum(hit)
        hr = hr - (hr[hs] - hit[hs])[gid] - 1
        pidx = np.flatnonzero(is_push)
        first_push = np.searchsorted(gid[pidx], np.arange(ng))
        h = np.flatnonzero(hit)
        match = pidx[first_push[gid[h]] + hr[h]]
        out[ls[h]] = uid[ls[match]]
        nhit = np.bincount(gid[h], minlength=ng)
        left = np.flatnonzero(is_push & (pr >= nhit[gid]))
        for e, g in zip(ls[left].tolist(), gs[left].tolist(), strict=True):
            st = sts[g >> KEY_BITS]
            assert st is not None
            pk = self._proto(st).decode(g & ((1 << KEY_BITS) - 1))
            st.pending.setdefault(pk, deque()).append(uid[e])
        return out

    def _proto(self, st: AppFlow) -> Proto:
        return self.pmap[type(st.decoder)]

    def _queued(self, ug: Arr, sts: list[AppFlow | None]) -> Arr:
        """Per group (flow << KEY_BITS | key): requests of it queued before this batch."""
        flows = ug >> KEY_BITS
        hit: list[int] = []
        uf, first, cnt = np.unique(flows, return_index=True, return_counts=True)
        mask = (1 << KEY_BITS) - 1
        for f, at, k in zip(uf.tolist(), first.tolist(), cnt.tolist(), strict=True):
            st = sts[f]
            assert st is not None
            pend = st.pending
            if not pend:
                continue
            p = self._proto(st)
            if len(pend) <= k:
                for key, q in pend.items():
                    ik = p.encode(key) if q else None
                    if ik is not None:
                        hit.append(f << KEY_BITS | ik)
            else:
                for g in ug[at : at + k].tolist():
                    if pend.get(p.decode(g & mask)):
                        hit.append(g)
        if not hit:
            return np.zeros(len(ug), dtype=bool)
        return np.isin(ug, np.array(hit, dtype=np.int64))

    def _python_groups(
        self, ls: Arr, gs: Arr, head: Arr, req: Arr, uid: Arr, sts: list[AppFlow | None],
        out: Arr,
    ) -> None:  # fmt: skip
        """The per-packet queue semantics, event by event, for groups with history."""
        from collectors.apps.engine import MAX_PENDING

        mask = (1 << KEY_BITS) - 1
        q: deque[str] | None = None
        pend: dict[Hashable, deque[str]] = {}
        pk: Hashable = None
        for e, g, h in zip(ls.tolist(), gs.tolist(), head.tolist(), strict=True):
            if h:
                st = sts[g >> KEY_BITS]
                assert st is not None
                pend, pk = st.pending, self._proto(st).decode(g & mask)
            if req[e]:
                q = pend.setdefault(pk, deque())
                if len(q) < MAX_PENDING:
                    q.append(uid[e])
            else:
                q = pend.get(pk)
                if q:
                    out[e] = q.popleft()
                    if not q:
                        del pend[pk]
