"""Bounded on-disk spool: a collector's records wait here while the broker is away.

Layout: a directory of append-only segment files ``<n>.seg`` (16 decimal digits, rolled at
``segment_bytes``) and a ``cursor`` file (``<segment> <offset>``: where the oldest unsent
frame starts), replaced atomically (write, fsync, rename) after every drained step. A frame
is one published batch (or a ≤ 1 MiB piece of one)::

    "PWS1" | body length u32 | records u32 | crc32c(body) u32 | body
    body = topic (u16 length) | headers (u16 count, then u16 key length, key, u32 value
           length, value) | records (i32 key length, -1 = no key, key, u32 length, value)

fsync policy (``fsync``): ``batch`` (default) fsyncs the segment after every appended
frame and the cursor after every drained step, so an acknowledged append survives a power
cut; ``interval`` fsyncs at most once a second (a crash of the machine can lose the last
second; a crash of the process loses nothing, the page cache holds it); ``never`` leaves it
to the kernel. On open, a torn or corrupt tail (a frame cut by a crash, a bad CRC) is cut
off and counted in ``torn_frames``; everything before it is kept.

Bound: the segment files never exceed ``max_bytes`` together. A batch that does not fit is
dropped whole and counted (records, bytes, per topic, first and last time) — the only way
records are lost; :class:`~parkwatch.transport.spooling.SpoolingTransport` reports the count
as a ``spool_full_dropped`` weird. ``reserve_bytes`` beyond the bound are kept for those
reports.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import crc32c

from parkwatch.errors import TransportError

log = logging.getLogger(__name__)
Batch = tuple[str, list[bytes], list[bytes | None] | None, dict[str, bytes]]

MAGIC = b"PWS1"
_HEAD = struct.Struct("<4sIII")
CHUNK = 1 << 20  # a batch is split into frames of about this size


@dataclass
class SpoolBatch:
    """One frame read back: what to publish, and where the cursor goes once it is sent."""

    topic: str
    values: list[bytes]
    keys: list[bytes | None]
    headers: dict[str, bytes]
    next_pos: tuple[int, int]


@dataclass
class Drops:
    """Records refused because the spool was full, since the last :meth:`Spool.take_drops`."""

    records: int = 0
    bytes: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)
    first_ns: int = 0
    last_ns: int = 0


def encode_frame(
    topic: str, values: list[bytes], keys: list[bytes | None], headers: dict[str, bytes]
) -> bytes:
    parts = [struct.pack("<H", len(t := topic.encode())), t, struct.pack("<H", len(headers))]
    for k, v in headers.items():
        kb = k.encode()
        parts += [struct.pack("<H", len(kb)), kb, struct.pack("<I", len(v)), v]
    pack = struct.Struct("<iI").pack
    for key, value in zip(keys, values, strict=True):
        if key is None:
            parts += [pack(-1, len(value)), value]
        else:
            parts += [struct.pack("<i", len(key)), key, struct.pack("<I", len(value)), value]
    body = b"".join(parts)
    return _HEAD.pack(MAGIC, len(body), len(values), crc32c.crc32c(body)) + body


def decode_body(body: bytes, count: int) -> tuple[str, list[bytes], list[bytes | None], dict]:
    mv = memoryview(body)
    (n,) = struct.unpack_from("<H", mv, 0)
    topic, o = bytes(mv[2 : 2 + n]).decode(), 2 + n
    (nh,) = struct.unpack_from("<H", mv, o)
    o += 2
    headers: dict[str, bytes] = {}
    for _ in range(nh):
        (kl,) = struct.unpack_from("<H", mv, o)
        k = bytes(mv[o + 2 : o + 2 + kl]).decode()
        o += 2 + kl
        (vl,) = struct.unpack_from("<I", mv, o)
        headers[k] = bytes(mv[o + 4 : o + 4 + vl])
        o += 4 + vl
    values: list[bytes] = []
    keys: list[bytes | None] = []
    for _ in range(count):
        (kl,) = struct.unpack_from("<i", mv, o)
        o += 4
        if kl < 0:
            keys.append(None)
        else:
            keys.append(bytes(mv[o : o + kl]))
            o += kl
        (vl,) = struct.unpack_from("<I", mv, o)
        values.append(bytes(mv[o + 4 : o + 4 + vl]))
        o += 4 + vl
    return topic, values, keys, headers


class Spool:
    """The queue on disk (thread-safe). ``append`` at the tail, ``peek``/``pop`` at the head."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_bytes: int = 256 << 20,
        segment_bytes: int = 16 << 20,
        fsync: Literal["batch", "interval", "never"] = "batch",
        reserve_bytes: int = 64 << 10,
    ) -> None:
        self.path = Path(path)
        self.max_bytes, self.segment_bytes = max_bytes, segment_bytes
        self.fsync, self.reserve_bytes = fsync, reserve_bytes
        self._chunk = max(1024, min(CHUNK, segment_bytes // 4))  # frame size
        self._lock = threading.RLock()
        self.drops = Drops()
        self.dropped_total = 0
        self.torn_frames = 0
        self._last_sync = 0.0
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._recover()
        except OSError as exc:
            raise TransportError(
                f"cannot open spool: {exc.strerror or exc}",
                file=str(self.path),
                hint="give --spool a writable directory",
            ) from exc

    # -- recovery -------------------------------------------------------------------------
    def _seg(self, n: int) -> Path:
        return self.path / f"{n:016d}.seg"

    def _recover(self) -> None:
        segs = sorted(int(p.stem) for p in self.path.glob("*.seg") if p.stem.isdigit())
        cur = (segs[0] if segs else 1, 0)
        cursor = self.path / "cursor"
        if cursor.exists():
            try:
                a, b = cursor.read_text().split()
                cur = (int(a), int(b))
            except ValueError:
                self.torn_frames += 1  # unreadable cursor: resend from the oldest segment
        for n in segs:
            if n < cur[0]:
                self._seg(n).unlink()
        segs = [n for n in segs if n >= cur[0]]
        if not segs or segs[0] != cur[0]:
            cur = (segs[0] if segs else cur[0], 0)
        self.pending_records = 0
        for n in segs:  # count records and cut a torn tail
            start = cur[1] if n == cur[0] else 0
            good, count = self._scan(self._seg(n), start)
            self.pending_records += count
            if good < self._seg(n).stat().st_size:
                self.torn_frames += 1
                os.truncate(self._seg(n), good)
        self._head = cur
        self._tail_no = segs[-1] if segs else cur[0]
        self._tail: BinaryIO = open(self._seg(self._tail_no), "ab")  # noqa: SIM115
        self._size = sum(self._seg(n).stat().st_size for n in segs) if segs else 0
        self._write_cursor()

    @staticmethod
    def _scan(path: Path, start: int) -> tuple[int, int]:
        """(offset after the last good frame, records in good frames) from ``start`` on."""
        data = path.read_bytes()
        o, count = start, 0
        while o + _HEAD.size <= len(data):
            magic, blen, n, crc = _HEAD.unpack_from(data, o)
            end = o + _HEAD.size + blen
            if magic != MAGIC or end > len(data) or crc32c.crc32c(data[o + 16 : end]) != crc:
                break
            o, count = end, count + n
        return o, count

    # -- tail -----------------------------------------------------------------------------
    def append(
        self,
        topic: str,
        values: list[bytes],
        keys: list[bytes | None] | None = None,
        headers: dict[str, bytes] | None = None,
        reserve: bool = False,
    ) -> int:
        """Append a batch; return how many records were taken (the rest is counted as
        dropped: the spool was full)."""
        keys = list(keys) if keys is not None else [None] * len(values)
        hdrs = headers or {}
        limit = self.max_bytes + (self.reserve_bytes if reserve else 0)
        taken, i = 0, 0
        with self._lock:
            while i < len(values):
                j, size = i, 0
                while j < len(values) and (j == i or size + len(values[j]) < self._chunk):
                    size += len(values[j]) + 8
                    j += 1
                frame = encode_frame(topic, values[i:j], keys[i:j], hdrs)
                if self._size + len(frame) > limit:
                    self._drop(topic, values[i:])
                    break
                self._write(frame)
                taken += j - i
                self.pending_records += j - i
                i = j
            self._sync()
        return taken

    def _drop(self, topic: str, values: list[bytes]) -> None:
        d, now = self.drops, time.time_ns()
        d.first_ns = d.first_ns or now
        d.last_ns = now
        d.records += len(values)
        d.bytes += sum(len(v) for v in values)
        d.by_topic[topic] += len(values)
        self.dropped_total += len(values)

    def _write(self, frame: bytes) -> None:
        if self._tail.tell() >= self.segment_bytes:
            self._tail.close()
            self._tail_no += 1
            self._tail = open(self._seg(self._tail_no), "ab")  # noqa: SIM115
        self._tail.write(frame)
        self._size += len(frame)

    def _sync(self, force: bool = False) -> None:
        self._tail.flush()
        now = time.monotonic()
        due = self.fsync == "interval" and now - self._last_sync > 1
        if force or self.fsync == "batch" or due:
            os.fsync(self._tail.fileno())
            self._last_sync = now

    def take_drops(self) -> Drops | None:
        """The drops since the last call (None if none) and start counting afresh."""
        with self._lock:
            d, self.drops = self.drops, Drops()
            return d if d.records else None

    # -- head -----------------------------------------------------------------------------
    def peek(self, limit: int = 16) -> list[SpoolBatch]:
        """Up to ``limit`` oldest frames, in order (nothing is removed: see :meth:`pop`)."""
        out: list[SpoolBatch] = []
        with self._lock:
            self._tail.flush()
            seg, off = self._head
            while len(out) < limit:
                path = self._seg(seg)
                size = path.stat().st_size if path.exists() else 0
                if off >= size:
                    if seg >= self._tail_no:
                        break
                    seg, off = seg + 1, 0
                    continue
                with open(path, "rb") as f:
                    f.seek(off)
                    head = f.read(_HEAD.size)
                    magic, blen, n, crc = _HEAD.unpack(head)
                    body = f.read(blen)
                if magic != MAGIC or crc32c.crc32c(body) != crc:
                    raise TransportError(f"corrupt spool frame at {path}:{off}", file=str(path))
                off += _HEAD.size + blen
                topic, values, keys, headers = decode_body(body, n)
                out.append(SpoolBatch(topic, values, keys, headers, (seg, off)))
        return out

    def pop(self, upto: SpoolBatch, count: int) -> None:
        """Forget everything up to and including ``upto`` (``count`` records): it was sent."""
        with self._lock:
            seg, off = upto.next_pos
            for n in range(self._head[0], seg):
                p = self._seg(n)
                if p.exists():
                    self._size -= p.stat().st_size
                    p.unlink()
            self._head = (seg, off)
            self.pending_records -= count
            if seg == self._tail_no and off >= self._tail.tell():  # empty: start a new segment
                self._tail.close()
                self._size -= self._seg(seg).stat().st_size
                self._seg(seg).unlink()
                self._tail_no += 1
                self._tail = open(self._seg(self._tail_no), "ab")  # noqa: SIM115
                self._head = (self._tail_no, 0)
            self._write_cursor()

    def _write_cursor(self) -> None:
        tmp = self.path / "cursor.tmp"
        with open(tmp, "w") as f:
            f.write(f"{self._head[0]} {self._head[1]}\n")
            f.flush()
            if self.fsync != "never":
                os.fsync(f.fileno())
        os.replace(tmp, self.path / "cursor")

    @property
    def bytes_used(self) -> int:
        return self._size

    def __len__(self) -> int:
        return self.pending_records

    def close(self) -> None:
        with self._lock:
            if not self._tail.closed:
                self._sync(force=self.fsync != "never")
                self._tail.close()
