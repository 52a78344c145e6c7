"""Flow-table storage: one row ("slot") per active flow, columns as numpy arrays.

Canonical orientation: endpoint A is the smaller (address, port), B the larger; direction 0 is
A→B. Counters are per direction. History letters keep the frame number of their first
occurrence per direction, so the order of events can be rebuilt at emission.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

LETTERS = "SHADFRQI"
"""History letters: SYN, SYN-ACK, pure ACK, data, FIN, RST, SYN+FIN, SYN+RST (Zeek)."""
NL = len(LETTERS)
NEVER = np.iinfo(np.int64).max

KEY_U64 = ("a_hi", "a_lo", "b_hi", "b_lo", "h", "uidh")
KEY_I64 = ("a_port", "b_port", "proto", "vlan", "vlan_inner")
STATIC_I64 = ("ver", "first_dir", "first_frame")
STATIC_U64 = ("mac_a", "mac_b")
PAIR_I64 = ("pkts", "bytes", "payload", "l2bytes")


ROW_FIELDS = (
    *KEY_U64, *STATIC_U64, *KEY_I64, *STATIC_I64, *PAIR_I64,
    "flags", "hist", "first_ts", "last_ts", "has_mac",
)  # fmt: skip
"""Every per-slot column (what :class:`SlotRows` copies)."""


class Slots:
    """Growable struct-of-arrays; ``active[i]`` tells whether slot i holds a flow."""

    h: np.ndarray  # uint64 hash of the key (the flow index's key)
    uidh: np.ndarray  # uint64 flow uid hash, fixed when the flow starts ('C%016x' is its uid)
    a_hi: np.ndarray  # uint64 halves of endpoint A's address (IPv4 as ::ffff:a.b.c.d)
    a_lo: np.ndarray
    b_hi: np.ndarray
    b_lo: np.ndarray
    a_port: np.ndarray  # ports (ICMP: type / counterpart type or code)
    b_port: np.ndarray
    proto: np.ndarray
    vlan: np.ndarray  # -1 untagged
    vlan_inner: np.ndarray
    ver: np.ndarray  # 4 or 6
    first_dir: np.ndarray  # direction of the first packet: 0 A->B, 1 B->A
    first_frame: np.ndarray
    mac_a: np.ndarray
    mac_b: np.ndarray
    has_mac: np.ndarray
    pkts: np.ndarray  # (capacity, 2): per direction
    bytes: np.ndarray
    payload: np.ndarray
    l2bytes: np.ndarray
    flags: np.ndarray  # (capacity, 2) OR of TCP flags
    hist: np.ndarray  # (capacity, 2*NL) first frame of each history letter per direction
    first_ts: np.ndarray
    last_ts: np.ndarray  # NEVER for free slots

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = 0
        self.free: list[int] = []
        self.active = np.zeros(0, dtype=bool)
        self._grow(capacity)

    def _alloc(self, name: str, shape: tuple[int, ...], dtype: type, fill: int = 0) -> None:
        new: np.ndarray = np.full(shape, fill, dtype=dtype)
        old = getattr(self, name, None)
        if old is not None:
            new[: len(old)] = old
        setattr(self, name, new)

    def _grow(self, capacity: int) -> None:
        old = self.capacity
        for name in (*KEY_U64, *STATIC_U64):
            self._alloc(name, (capacity,), np.uint64)
        for name in (*KEY_I64, *STATIC_I64):
            self._alloc(name, (capacity,), np.int64)
        for name in PAIR_I64:
            self._alloc(name, (capacity, 2), np.int64)
        self._alloc("flags", (capacity, 2), np.uint8)
        self._alloc("hist", (capacity, 2 * NL), np.int64, NEVER)
        self._alloc("first_ts", (capacity,), np.int64)
        self._alloc("last_ts", (capacity,), np.int64, NEVER)
        self._alloc("has_mac", (capacity,), np.bool_)
        self._alloc("active", (capacity,), np.bool_)
        self.capacity = capacity
        self.free.extend(range(capacity - 1, old - 1, -1))

    def take(self, count: int) -> np.ndarray:
        """Allocate ``count`` free slots (growing as needed)."""
        while len(self.free) < count:
            self._grow(max(self.capacity * 2, 1024))
        got = self.free[-count:] if count else []
        del self.free[len(self.free) - count :]
        idx = np.array(got[::-1], dtype=np.int64)
        self.active[idx] = True
        return idx

    def release(self, idx: np.ndarray) -> None:
        """Free slots and reset their accumulators."""
        self.active[idx] = False
        self.last_ts[idx] = NEVER
        self.hist[idx] = NEVER
        for name in PAIR_I64:
            getattr(self, name)[idx] = 0
        self.flags[idx] = 0
        self.has_mac[idx] = False
        self.free.extend(idx.tolist())

    def nbytes_per_slot(self) -> float:
        """Bytes of array storage per slot (for the memory-per-flow benchmark)."""
        total = sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))
        return total / max(self.capacity, 1)


class Vocab:
    """Values of keys, cached for whole arrays: emission's per-address, per-MAC and
    per-port facts.

    A key maps to a code, a row of :attr:`cols` (one object array per value field). A batch
    of uint64 keys is looked up with one ``searchsorted``; only keys never seen before are
    resolved in Python. Keys that are not uint64 (IPv6 address pairs) use a dict, with the
    same codes. :meth:`trim` (called between batches, never between lookups whose codes are
    still in use) starts afresh once there are more than ``limit`` keys.
    """

    def __init__(self, width: int, limit: int) -> None:
        self.width, self.limit = width, limit
        self.clear()

    def clear(self) -> None:
        self._keys = np.zeros(0, dtype=np.uint64)  # sorted
        self._codes = np.zeros(0, dtype=np.int64)  # code of each sorted key
        self._other: dict[object, int] = {}
        self.cols = [np.empty(256, dtype=object) for _ in range(self.width)]
        self.n = 0

    def trim(self) -> None:
        if self.n > self.limit:
            self.clear()

    def _add(self, rows: list[tuple[object, ...]]) -> np.ndarray:
        k, n = len(rows), self.n
        if n + k > len(self.cols[0]):
            cap = max(2 * len(self.cols[0]), n + k)
            for j, old in enumerate(self.cols):
                new = np.empty(cap, dtype=object)
                new[:n] = old[:n]
                self.cols[j] = new
        for j in range(self.width):
            col = self.cols[j]
            for i, row in enumerate(rows):  # element-wise: a value may be a tuple or None
                col[n + i] = row[j]
        self.n = n + k
        return np.arange(n, n + k, dtype=np.int64)

    def codes(
        self, keys: np.ndarray, resolve: Callable[[list[int]], list[tuple[Any, ...]]]
    ) -> np.ndarray:
        """Codes of the uint64 ``keys``; ``resolve`` gives the value rows of new keys."""
        keys = keys.astype(np.uint64, copy=False)
        known = self._keys
        if len(known):
            pos = np.searchsorted(known, keys)
            pos[pos == len(known)] = 0
            hit = known[pos] == keys
            if hit.all():
                return self._codes[pos]
            keys_new = keys[~hit]
        else:
            keys_new = keys
        new = np.sort(keys_new)
        if len(new) > 1:
            new = new[np.append(True, new[1:] != new[:-1])]
        fresh = self._add(resolve(new.tolist()))
        allk = np.concatenate((self._keys, new))
        order = np.argsort(allk, kind="stable")
        self._keys = allk[order]
        self._codes = np.concatenate((self._codes, fresh))[order]
        return self._codes[np.searchsorted(self._keys, keys)]

    def codes_of(
        self, keys: list[Any], resolve: Callable[[list[Any]], list[tuple[Any, ...]]]
    ) -> np.ndarray:
        """Codes of hashable keys of any type (the dict path)."""
        table = self._other
        new = [k for k in set(keys) if k not in table]
        if new:
            table.update(zip(new, self._add(resolve(new)).tolist(), strict=True))
        return np.array([table[k] for k in keys], dtype=np.int64)


class SlotRows:
    """Copies of the rows of some slots, with the same column names as :class:`Slots`: what
    emission needs of flows that ended, kept after their slots are freed and reused, so that
    a batch's ended flows are turned into records all at once."""

    def __init__(self, cols: dict[str, np.ndarray]) -> None:
        self.__dict__.update(cols)
        self.n = len(cols["h"])

    def __getattr__(self, name: str) -> np.ndarray:  # the columns (for type checkers)
        raise AttributeError(name)

    @staticmethod
    def take(s: Slots, idx: np.ndarray) -> SlotRows:
        return SlotRows({name: getattr(s, name)[idx] for name in ROW_FIELDS})

    @staticmethod
    def concat(parts: list[SlotRows]) -> SlotRows:
        if len(parts) == 1:
            return parts[0]
        return SlotRows(
            {name: np.concatenate([getattr(p, name) for p in parts]) for name in ROW_FIELDS}
        )
