"""Key index of the flow table (:mod:`collectors.flowtable`): flow key -> slot.

:class:`FlowIndex` is a mixin of :class:`~collectors.flowtable.FlowTable`. The index maps the
64-bit key hash to a slot; every hit is verified against the slot's stored key, and keys whose
hash is taken by another key live in ``collide``, keyed by the full key tuple.
"""

from __future__ import annotations

import numpy as np

from collectors.flowgroup import Packets
from collectors.slots import Slots

KEY_NAMES = ("a_hi", "a_lo", "b_hi", "b_lo", "a_port", "b_port", "proto", "vlan", "vlan_inner")


class FlowIndex:
    """Index lookup and maintenance methods of :class:`~collectors.flowtable.FlowTable`."""

    slots: Slots
    index: dict[int, int]
    collide: dict[tuple[int, ...], int]

    def _lookup(
        self, pk: Packets, hg: np.ndarray, gstart: np.ndarray, unique_hashes: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Slot of each group's key (-1 if new) and which groups need exact-key indexing.

        The index maps the 64-bit key hash to a slot; every hit is verified against the
        slot's stored key, and keys whose hash is taken by another key live in ``collide``
        keyed by the full key tuple (never seen in practice, but never wrong either).
        """
        get = self.index.get
        slot_g = np.array([get(x, -1) for x in hg.tolist()], dtype=np.int64)
        exact = np.zeros(len(hg), dtype=bool) if unique_hashes else np.ones(len(hg), bool)
        hit = np.nonzero(slot_g >= 0)[0]
        if len(hit):
            s, sl = self.slots, slot_g[hit]
            ok = np.ones(len(hit), dtype=bool)
            for name, c in zip(KEY_NAMES, pk.key_cols(gstart[hit]), strict=True):
                ok &= getattr(s, name)[sl] == c
            exact[hit[~ok]] = True
        if exact.any() or self.collide:
            for g in np.nonzero(exact | (slot_g < 0) if self.collide else exact)[0].tolist():
                key = tuple(int(c[0]) for c in pk.key_cols(gstart[g : g + 1]))
                got = self.collide.get(key)
                if got is not None:
                    slot_g[g], exact[g] = got, True
                elif exact[g]:
                    slot_g[g] = -1
        return slot_g, exact

    def _index(self, pk: Packets, groups: np.ndarray, slots: np.ndarray, exact: np.ndarray) -> None:
        """The newest flow of each key owns the key's index entry."""
        index, s = self.index, self.slots
        hs = pk.hg[groups]
        s.h[slots] = hs
        hl, sl_l = hs.tolist(), slots.tolist()
        get = index.get
        owners = [get(h) for h in hl]
        if not self.collide and not exact.any() and owners.count(None) == len(owners):
            index.update(zip(hl, sl_l, strict=True))  # common case: every key new to the index
            return
        for g, sl, h, owner in zip(groups.tolist(), sl_l, hl, owners, strict=True):
            if not exact[g] and (
                owner is None or owner == sl or not s.active[owner] or _same_key(s, owner, sl)
            ):
                index[h] = sl
            else:
                self.collide[tuple(int(getattr(s, n)[sl]) for n in KEY_NAMES)] = sl

    def _unindex(self, idx: np.ndarray) -> None:
        index, s = self.index, self.slots
        if not self.collide:  # the common case: drop the entries these slots own
            get = index.get
            for sl, h in zip(idx.tolist(), s.h[idx].tolist(), strict=True):
                if get(h) == sl:
                    del index[h]
            return
        for sl, h in zip(idx.tolist(), s.h[idx].tolist(), strict=True):
            if index.get(h) == sl:
                del index[h]
                for key, other in list(self.collide.items()):  # promote a waiting twin
                    if other != sl and int(s.h[other]) == h:
                        index[h] = other
                        del self.collide[key]
                        break
            elif self.collide:
                for key, other in list(self.collide.items()):
                    if other == sl:
                        del self.collide[key]


def _same_key(s: Slots, x: int, y: int) -> bool:
    return all(getattr(s, n)[x] == getattr(s, n)[y] for n in KEY_NAMES)
