"""Numpy helpers of the fast path: big/little-endian fields, PDU splitting, CRC-16/DNP.

Every function works on ``u8`` (the batch buffer as uint8) and arrays of byte offsets; rows
that turn out invalid may read garbage (indices are clipped to the buffer) and are masked out
by the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Arr = np.ndarray
SizeFn = Callable[[Arr, Arr], tuple[Arr, Arr]]
MAX_PDUS = 16
"""PDUs one segment may carry on the fast path (more: per-packet path)."""


def at(u8: Arr, off: Arr) -> Arr:
    """``u8[off]`` as int64, offsets clipped to the buffer."""
    return u8[np.minimum(off, len(u8) - 1)].astype(np.int64)


def be16(u8: Arr, off: Arr) -> Arr:
    return (at(u8, off) << 8) | at(u8, off + 1)


def le16(u8: Arr, off: Arr) -> Arr:
    return at(u8, off) | (at(u8, off + 1) << 8)


def be24(u8: Arr, off: Arr) -> Arr:
    return (at(u8, off) << 16) | (at(u8, off + 1) << 8) | at(u8, off + 2)


def split(
    u8: Arr, start: Arr, length: Arr, hdr: int, size_of: SizeFn
) -> tuple[Arr, Arr, Arr, Arr]:
    """Cut each payload ``[start, start + length)`` into whole PDUs.

    ``size_of(u8, off)`` gives (header valid, PDU size) for headers at ``off`` (``hdr`` octets
    available). Returns (ok per payload, PDU's payload row, PDU offset, PDU size); PDUs come in
    (row, order in the payload) order. A payload is not ok when a header is invalid, a PDU is
    cut off at its end, or it holds more than :data:`MAX_PDUS` PDUs.
    """
    n = len(start)
    ok = np.ones(n, dtype=bool)
    pos = start.astype(np.int64).copy()
    rem = length.astype(np.int64).copy()
    rows: list[Arr] = []
    offs: list[Arr] = []
    sizes: list[Arr] = []
    live = np.flatnonzero(rem > 0)
    for k in range(MAX_PDUS):
        if not len(live):
            break
        valid, size = size_of(u8, pos[live])
        valid &= (rem[live] >= hdr) & (size <= rem[live]) & (size > 0)
        ok[live[~valid]] = False
        live, size = live[valid], size[valid]
        rows.append(live)
        offs.append(pos[live].copy())
        sizes.append(size)
        pos[live] += size
        rem[live] -= size
        live = live[rem[live] > 0]
        del k
    ok[live] = False  # more PDUs than MAX_PDUS
    if not rows:
        e = np.zeros(0, dtype=np.int64)
        return ok, e, e, e
    row, off, size = np.concatenate(rows), np.concatenate(offs), np.concatenate(sizes)
    order = np.argsort(row, kind="stable")  # iterations are in PDU order already
    return ok, row[order], off[order], size[order]


def _crc_table() -> Arr:
    out = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA6BC if crc & 1 else crc >> 1
        out.append(crc)
    return np.array(out, dtype=np.int64)


_TABLE = _crc_table()


def crc_dnp(u8: Arr, start: Arr, length: Arr) -> Arr:
    """CRC-16/DNP of ``u8[start : start + length]`` per row (length <= 16)."""
    crc = np.zeros(len(start), dtype=np.int64)
    for b in range(int(length.max()) if len(length) else 0):
        m = np.flatnonzero(length > b)
        c = crc[m]
        crc[m] = (c >> 8) ^ _TABLE[(c ^ at(u8, start[m] + b)) & 0xFF]
    return ~crc & 0xFFFF


def objcol(values: Any, n: int) -> Arr:
    """A 1-d object column from an iterable of ``n`` Python objects (tuples stay items)."""
    return np.fromiter(values, dtype=object, count=n)
