"""Batch parser for pcapng block streams (used by :mod:`collectors.pcapio`).

A tight Python loop collects only block offsets; every field of the Enhanced, Simple and
obsolete Packet Blocks is then gathered for all blocks at once with numpy. Python does
per-block work only for Section Header and Interface Description Blocks; every other block
type (name resolution, statistics, decryption secrets, custom ...) is skipped untouched.
"""

from __future__ import annotations

import itertools
import struct
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

SHB = 0x0A0D0D0A
IDB, PB, SPB, EPB = 1, 2, 3, 6
MAX_BLOCK = 32 << 20  # a longer block length is corruption, not data
NS = 1_000_000_000
MAX_REPORT = 1000  # weirds reported per kind and chunk; more are dropped

Emit = Callable[[int, str, str], None]
"""Callback ``(frame, name, detail)`` that records a structural problem."""

Arr = np.ndarray[Any, Any]
Part = tuple[Arr, Arr, Arr, Arr, Arr, int]
"""``(data_off, caplen, wirelen, ts_ns, linktype, first_frame)`` of consecutive frames."""

Feed = tuple[list[Part], int, int, bool]
"""``(parts, consumed, need, stop)`` as returned by a parser's ``feed``."""


NATIVE = "<" if sys.byteorder == "little" else ">"


def u32_views(buf: Any) -> tuple[memoryview, ...]:
    """Four native-order u32 views of buf: element k of view i is the u32 at byte i + 4k.

    ``views[p & 3][p >> 2]`` reads the u32 at any offset p (IndexError past the end) with
    no function call: the record walks (:func:`walk_blocks`, pcapio's ``_walk``) spend most
    of their time on that read, and it is about a third cheaper than ``unpack_from``.
    """
    mv = memoryview(buf).cast("B")
    n = len(mv)
    return tuple(mv[i : i + max(n - i, 0) // 4 * 4].cast("I") for i in range(4))


def walk_blocks(buf: Any, o: int, order: str) -> tuple[Arr, int]:
    """Offsets of the blocks from o on that fit in buf, and the offset where the walk stopped.

    A block length under 4 stops the walk there. Other absurd lengths are checked
    afterwards with numpy: a bogus block ends the useful part anyway, which is why the
    native-order walk may step by the length rounded down to a multiple of 4 and so index
    a single u32 view (once a length is not a multiple of 4, the offsets after that block
    are not the ones the file means, and are never used).
    """
    n = len(buf)
    offs: list[int] = []
    append = offs.append
    if order == NATIVE:
        a = (o + 4) & 3  # alignment of the length fields, o + 4, o + 4 + bl, ...
        v = u32_views(buf)[a]
        k = (o + 4) >> 2  # index in v of the block's length field
        jump = (n >> 2) + 2  # past the end of v, for a length under 4
        try:
            while True:
                append(k)
                k += (v[k] >> 2) or jump
        except IndexError:
            pass
        k = offs.pop()  # its length field is past the end
        if 4 * k + a - 4 > n:  # the block before ends past the end
            k = offs.pop()
        b = np.fromiter(offs, np.int64, len(offs))
        b *= 4
        b += a - 4
        return b, 4 * k + a - 4
    unpack = struct.Struct(order + "I").unpack_from
    q = o + 4  # offset of the block's length field
    try:
        while True:
            append(q)
            q += unpack(buf, q)[0] or n + 4
    except struct.error:
        pass
    q = offs.pop()
    if q - 4 > n:
        q = offs.pop()
    b = np.fromiter(offs, np.int64, len(offs))
    b -= 4
    return b, q - 4


def slide(buf: Any, order: str, size: int) -> Arr:
    """View where element *i* is the unsigned int of *size* bytes at byte offset *i* of buf."""
    n = len(buf)
    if n < size:
        return np.zeros(0, np.dtype(f"{order}u{size}"))
    return np.ndarray((n - size + 1,), np.dtype(f"{order}u{size}"), buf, 0, (1,))


def split_frames(
    off: Arr, cl: Arr, wl: Arr, ts: Arr, lt: Arr, frames: Arr, first: int
) -> list[Part]:
    """Cut per-packet arrays into parts whose frame numbers are consecutive.

    ``frames`` holds each packet's frame number; when it is empty the numbers are known to
    be ``first, first + 1, ...`` and no cut is needed. An empty input gives no part.
    """
    if len(off) == 0:
        return []
    if len(frames) == 0:
        return [(off, cl, wl, ts, lt, first)]
    cuts = (np.flatnonzero(np.diff(frames) != 1) + 1).tolist()
    bounds = [0, *cuts, len(off)]
    return [
        (off[a:b], cl[a:b], wl[a:b], ts[a:b], lt[a:b], int(frames[a]))
        for a, b in itertools.pairwise(bounds)
    ]


def halves(v: Arr, order: str) -> tuple[Arr, Arr]:
    """Split uint64 values read in byte order ``order`` into their (first, second) u32 fields."""
    w = np.ascontiguousarray(v).view(np.dtype(order + "u4")).reshape(-1, 2)
    return w[:, 0].astype(np.int64), w[:, 1].astype(np.int64)


def _sub(e: Arr | slice, w: Arr) -> Arr:
    """Positions (in the full array) of the elements w selects within the subset e."""
    return np.flatnonzero(w) if isinstance(e, slice) else e[w]


def ticks_to_ns(ticks: Arr, base: int, exp: int) -> Arr:
    """Convert uint64 timestamps in units of ``base ** -exp`` seconds to int64 nanoseconds."""
    if base == 10:
        if exp <= 9:
            return ticks.astype(np.int64) * (10 ** (9 - exp))
        if exp <= 19:
            return (ticks // np.uint64(10 ** (exp - 9))).astype(np.int64)
        return np.zeros(len(ticks), np.int64)
    if exp >= 64:
        return (ticks.astype(np.float64) * (NS / 2.0**exp)).astype(np.int64)
    sec = (ticks >> np.uint64(exp)).astype(np.int64)
    frac = ticks & np.uint64((1 << exp) - 1)
    if exp <= 34:  # frac * 1e9 < 2**64: exact floor
        sub = (frac * np.uint64(NS)) >> np.uint64(exp)
    else:
        sub = ((frac >> np.uint64(exp - 34)) * np.uint64(NS)) >> np.uint64(34)
    return sec * NS + sub.astype(np.int64)


class _Iface:
    """One Interface Description Block of the current section."""

    __slots__ = ("base", "exp", "linktype", "offset_ns", "snaplen", "valid")

    def __init__(self, linktype: int = -1, snaplen: int = 0, valid: bool = False) -> None:
        self.linktype = linktype
        self.snaplen = snaplen
        self.valid = valid
        self.base, self.exp, self.offset_ns = 10, 6, 0


class PcapngParser:
    """Incremental pcapng parser: ``feed`` it buffers, get packet arrays back.

    ``frames`` counts every packet block seen (EPB, SPB, PB), including the ones skipped
    because they are broken, so that the frames after them keep the numbers Wireshark shows.
    """

    def __init__(self, weird: Emit) -> None:
        self._weird = weird
        self.frames = 0
        self._order = "<"
        self._ifaces: list[_Iface] = []
        self._last_ts = 0
        self._in_section = False

    def feed(self, buf: Any, eof: bool) -> Feed:
        """Parse every complete block of ``buf``; see :data:`Feed` for the result."""
        parts: list[Part] = []
        n, pos = len(buf), 0
        while True:
            if n - pos < 12 or not self._in_section or _u32(buf, pos, "<") == SHB:
                if n - pos < 12:
                    return self._short(parts, buf, pos, 12, eof)
                got = self._section(buf, pos)
                if got < 0:
                    return parts, pos, 0, True
                if got > n - pos:
                    return self._short(parts, buf, pos, got, eof)
                self._ifaces, self._in_section = [], True
                pos += got
                continue
            pos, need, stop = self._segment(buf, pos, parts)
            if stop:
                return parts, pos, 0, True
            if need:
                return self._short(parts, buf, pos, need, eof)

    def _short(self, parts: list[Part], buf: Any, pos: int, need: int, eof: bool) -> Feed:
        if eof and pos < len(buf):
            left = len(buf) - pos
            name = "truncated_record" if self._in_section else "truncated_file_header"
            self._weird(self.frames + 1, name, f"file ends {left} bytes into a block")
            return parts, len(buf), 0, True
        return parts, pos, need, False

    def _section(self, buf: Any, pos: int) -> int:
        """Read the SHB at pos: its length, or -1 when reading must stop."""
        if _u32(buf, pos, "<") != SHB:
            self._weird(self.frames + 1, "missing_section_header", f"block at byte {pos}")
            return -1
        bom = bytes(buf[pos + 8 : pos + 12])
        if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
            self._weird(self.frames + 1, "bad_section_header", f"byte-order magic {bom.hex()}")
            return -1
        self._order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
        bl = _u32(buf, pos + 4, self._order)
        if bl < 28 or bl % 4 or bl > MAX_BLOCK:
            self._weird(self.frames + 1, "bad_block_length", f"section header length {bl}")
            return -1
        return bl

    def _segment(self, buf: Any, pos: int, parts: list[Part]) -> tuple[int, int, bool]:
        """Walk blocks from pos up to the next SHB, problem or buffer end.

        Returns ``(new_pos, need, stop)``: need > 0 asks for that many bytes at new_pos.
        """
        n, order = len(buf), self._order
        b, o = walk_blocks(buf, pos, order)
        types, bls = halves(slide(buf, order, 8)[b], order)
        bad = (bls < 12) | (bls & 3 != 0) | (bls > MAX_BLOCK) | (types == SHB)
        bad |= slide(buf, order, 4)[np.where(bad, b, b + bls - 4)] != bls  # trailing length
        k = int(np.argmax(bad)) if bad.any() else len(b)
        self._blocks(buf, b[:k], types[:k], bls[:k], parts)
        if k < len(b):
            o = int(b[k])
        if n - o < 12:
            return o, 12, False
        t, bl = _u32(buf, o, order), _u32(buf, o + 4, order)
        if t == SHB:
            return o, 0, False
        if bl < 12 or bl % 4 or bl > MAX_BLOCK:
            self._weird(self.frames + 1, "bad_block_length", f"block type {t:#x} length {bl}")
            return o, 0, True
        if o + bl > n:
            return o, bl, False
        trail = _u32(buf, o + bl - 4, order)
        self._weird(self.frames + 1, "bad_block_length", f"block length {bl} but trailer {trail}")
        return o, 0, True

    def _blocks(self, buf: Any, b: Arr, types: Arr, bls: Arr, parts: list[Part]) -> None:
        """Handle the well-formed blocks at offsets b: IDBs in Python, packets with numpy."""
        nif0, ifs, order = len(self._ifaces), self._ifaces, self._order
        sel = (types == EPB) | (types == SPB) | (types == PB)
        p, t, bl = (b, types, bls) if sel.all() else (b[sel], types[sel], bls[sel])
        idb_at = b[types == IDB]
        for o in idb_at.tolist():
            ifs.append(self._idb(buf, o, self.frames + 1 + int(np.searchsorted(p, o))))
        m = len(p)
        if m == 0:
            return
        first = self.frames + 1
        self.frames += m
        s32, s64 = slide(buf, order, 4), slide(buf, order, 8)
        is_spb = t == SPB
        short = bl < np.where(is_spb, 16, 32)
        any_spb, any_short = bool(is_spb.any()), bool(short.any())
        # e: the EPBs and PBs long enough to read (a slice, so views, in the common case)
        e: Arr | slice = slice(None)
        if any_spb or any_short:
            e = np.flatnonzero(~is_spb & ~short)
        pe = p[e]
        iface = np.zeros(m, np.int64)
        iface[e] = s32[pe + 8]
        if (t == PB).any():  # obsolete Packet Block: 16-bit interface id
            iface[e] = np.where(t[e] == PB, slide(buf, order, 2)[pe + 8], iface[e])
        v = s64[pe + 12]
        ticks = v if order == ">" else (v << np.uint64(32)) | (v >> np.uint64(32))
        cl, wl = np.zeros(m, np.int64), np.zeros(m, np.int64)
        cl[e], wl[e] = halves(s64[pe + 20], order)
        off = p + 28
        room = bl - 32
        if any_spb:
            s = np.flatnonzero(is_spb & ~short)
            wl[s], off[s], room[s] = s32[p[s] + 8], p[s] + 12, bl[s] - 16
            if ifs:  # SPB: interface 0, caplen = min(wirelen, snaplen, block room)
                cl[s] = np.minimum(np.minimum(wl[s], room[s]), ifs[0].snaplen or 1 << 32)
        known = iface < (nif0 + np.searchsorted(idb_at, p) if len(idb_at) else nif0)
        if not all(f.valid for f in ifs):
            known[known] = np.array([f.valid for f in ifs], bool)[iface[known]]
        overrun = cl > room
        ok = ~short & known & ~overrun
        all_ok = bool(ok.all())
        if not all_ok:
            frames = first + np.arange(m, dtype=np.int64)
            for name, mask in (
                ("bad_block_length", short),
                ("unknown_interface", ~short & ~known),
                ("bad_record_length", overrun & known & ~short),
            ):
                for i in np.flatnonzero(mask)[:MAX_REPORT].tolist():
                    detail = f"block type {t[i]}, interface {iface[i]}, length {bl[i]}"
                    self._weird(int(frames[i]), name, detail)
        ep_ok = ok[e]
        ife = iface[e]
        used = range(len(ifs)) if len(ifs) <= 1 else np.flatnonzero(np.bincount(ife[ep_ok]))
        if all_ok and isinstance(e, slice) and len(used) == 1:  # the common case: no masks
            f = ifs[int(used[0])]
            ts = ticks_to_ns(ticks, f.base, f.exp)
            ts += f.offset_ns
        else:
            ts = np.zeros(m, np.int64)
            for ifn in used:
                f = ifs[ifn]
                w = ep_ok & (ife == ifn) if len(ifs) > 1 else ep_ok
                ts[_sub(e, w)] = ticks_to_ns(ticks[w], f.base, f.exp) + f.offset_ns
        has_ts = ok & ~is_spb
        if any_spb:
            idx = np.maximum.accumulate(np.where(has_ts, np.arange(m), -1))
            sp = np.flatnonzero(ok & is_spb)
            ts[sp] = np.where(idx[sp] >= 0, ts[np.maximum(idx[sp], 0)], self._last_ts)
        if has_ts.any():
            self._last_ts = int(ts[m - 1 - int(np.argmax(has_ts[::-1]))])
        lts = [f.linktype for f in ifs]
        if len(set(lts)) == 1:
            lt = np.full(m, lts[0], np.int64)
        else:
            lt = np.array([*lts, -1], np.int64)[np.where(known, iface, len(lts))]
        if all_ok:
            parts.append((off, cl, wl, ts, lt, first))
        else:
            x = np.flatnonzero(ok)
            parts.extend(split_frames(off[x], cl[x], wl[x], ts[x], lt[x], frames[x], 0))

    def _idb(self, buf: Any, o: int, frame: int) -> _Iface:
        """Parse the Interface Description Block at offset o (frame: the next frame's number)."""
        order = self._order
        bl = _u32(buf, o + 4, order)
        if bl < 20:
            self._weird(frame, "bad_block_length", f"interface block length {bl}")
            return _Iface()
        lt, snap = struct.unpack_from(order + "H2xI", buf, o + 8)
        f = _Iface(lt, snap, True)
        q, end = o + 16, o + bl - 4
        while q + 4 <= end:
            code, ln = struct.unpack_from(order + "HH", buf, q)
            if code == 0 or q + 4 + ln > end:
                break
            if code == 9 and ln >= 1:
                r = buf[q + 4]
                f.base, f.exp = (2, r & 0x7F) if r & 0x80 else (10, r)
            elif code == 14 and ln >= 8:
                secs = struct.unpack_from(order + "q", buf, q + 4)[0]
                if abs(secs) < 1 << 32:
                    f.offset_ns = secs * NS
                else:
                    self._weird(frame, "bad_interface_option", f"if_tsoffset {secs} s")
            q += 4 + ((ln + 3) & ~3)
        return f


def _u32(buf: Any, o: int, order: str) -> int:
    """The unsigned 32-bit integer at offset o."""
    return int.from_bytes(buf[o : o + 4], "little" if order == "<" else "big")
