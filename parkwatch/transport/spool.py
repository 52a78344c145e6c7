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
records are lost; :class:`SpoolingTransport` reports the count as a ``spool_full_dropped``
weird. ``reserve_bytes`` beyond the bound are kept for
those reports.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import crc32c

from parkwatch.errors import TransportError
from parkwatch.schema import Weird, format_ts
from parkwatch.transport.base import key_for, schema_header

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


@dataclass
class SpoolStats:
    """What a :class:`SpoolingTransport` did with the records given to it."""

    direct: int = 0  # published to the broker straight away (acknowledged at a flush)
    spooled: int = 0  # written to the spool
    drained: int = 0  # sent from the spool and acknowledged
    dropped: int = 0  # refused by a full spool
    outages: int = 0  # times the broker was found unreachable


class SpoolingTransport:
    """A producer-side :class:`~parkwatch.transport.base.Transport` that never blocks on an
    absent broker: records go to ``inner`` while it acknowledges them, to the spool as soon
    as a publish or flush fails (together with everything not yet acknowledged: at least
    once), and stay there — new ones behind them, in order — until a background thread
    has sent the backlog and the spool is empty again. Drops of a full spool become a
    ``spool_full_dropped`` Weird on the events topic (at most one per ``report_interval``
    seconds, and at close).
    """

    def __init__(
        self,
        inner: Any,
        spool: Spool,
        *,
        events_topic: str = "parkwatch.events",
        vantage: str | None = None,
        retry_interval: float = 1.0,
        flush_timeout: float = 10.0,
        report_interval: float = 60.0,
    ) -> None:
        self.inner, self.spool = inner, spool
        self.events_topic, self.vantage = events_topic, vantage
        self.retry_interval, self.flush_timeout = retry_interval, flush_timeout
        self.report_interval = report_interval
        self.stats = SpoolStats()
        self.weirds: list[Weird] = []
        self.last_error: str | None = None
        self._lock = threading.RLock()
        self._unflushed: list[Batch] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_report = time.monotonic()
        self.online = True
        if len(spool):  # a backlog from an earlier run goes first
            self._offline(None)

    def publish(
        self,
        topic: str,
        values: Sequence[bytes],
        keys: Sequence[bytes | None] | None = None,
        headers: dict[str, bytes] | None = None,
    ) -> None:
        batch: Batch = (
            topic,
            list(values),
            list(keys) if keys is not None else None,
            headers or {},
        )
        with self._lock:
            if self.online:
                try:
                    self.inner.publish(*batch)
                    self._unflushed.append(batch)
                    return
                except TransportError as exc:
                    self._offline(exc)
            self._to_spool(batch)

    def flush(self, timeout: float | None = None) -> None:
        """Wait for the broker's acknowledgements (online) or make the spool durable."""
        with self._lock:
            if self.online and self._unflushed:
                try:
                    self.inner.flush(timeout if timeout is not None else self.flush_timeout)
                    self.stats.direct += sum(len(b[1]) for b in self._unflushed)
                    self._unflushed.clear()
                except TransportError as exc:
                    self._offline(exc)
            if self.spool.drops.records and (
                time.monotonic() - self._last_report >= self.report_interval
            ):
                self._report_drops()
            self.spool._sync()

    def _to_spool(self, batch: Batch, reserve: bool = False) -> None:
        taken = self.spool.append(batch[0], batch[1], batch[2], batch[3], reserve=reserve)
        self.stats.spooled += taken
        self.stats.dropped += len(batch[1]) - taken

    def _offline(self, exc: TransportError | None) -> None:
        """Switch to spooling: everything not acknowledged goes to the spool, in order."""
        if exc is not None:
            self.last_error = str(exc)
            self.stats.outages += 1
            log.warning("broker unreachable, spooling to %s: %s", self.spool.path, exc)
        self.online = False
        for batch in self._unflushed:
            self._to_spool(batch)
        self._unflushed.clear()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._drain_loop, daemon=True, name="spool")
            self._thread.start()

    def _drain_loop(self) -> None:
        while not self._stop.is_set():
            if self.drain_once():
                return
            self._wake.wait(self.retry_interval)
            self._wake.clear()

    def drain_once(self) -> bool:
        """Send the backlog in order; True when it is empty and publishing is direct again."""
        while True:
            batches = self.spool.peek()
            if not batches:
                with self._lock:  # publish() appends under this lock: none can come now
                    if self.spool.peek(1):
                        continue
                    self.spool.pending_records = 0
                    self.online = True
                    if self.spool.drops.records:
                        self._report_drops(direct=True)
                    log.info("broker back: spool drained (%d records)", self.stats.drained)
                    return self.online  # False if the drop report found the broker gone
            try:
                for b in batches:
                    self.inner.publish(b.topic, b.values, b.keys, b.headers)
                self.inner.flush(self.flush_timeout)
            except TransportError as exc:
                self.last_error = str(exc)
                return False
            count = sum(len(b.values) for b in batches)
            self.spool.pop(batches[-1], count)
            self.stats.drained += count

    def _report_drops(self, direct: bool = False) -> None:
        d = self.spool.take_drops()
        self._last_report = time.monotonic()
        if d is None:
            return
        topics = ", ".join(f"{t}={n}" for t, n in sorted(d.by_topic.items()))
        weird = Weird(
            d.first_ns,
            "spool_full_dropped",
            "transport",
            f"dropped {d.records} records ({d.bytes} bytes) from {format_ts(d.first_ns)} to "
            f"{format_ts(d.last_ns)}, spool full at {self.spool.max_bytes} bytes: {topics}",
            str(self.spool.path),
            None,
            self.vantage,
        )
        self.weirds.append(weird)
        log.error("spool full: %s", weird.detail)
        batch: Batch = (
            self.events_topic,
            [weird.to_json()],
            [key_for(weird)],
            schema_header(Weird),
        )
        if direct:
            try:
                self.inner.publish(*batch)
                self._unflushed.append(batch)
                return
            except TransportError as exc:
                self._offline(exc)
        self._to_spool(batch, reserve=True)

    def subscribe(self, topics: Sequence[str], group: str) -> Any:
        return self.inner.subscribe(topics, group)

    def close(self, drain_timeout: float = 30.0) -> None:
        """Flush, give the drainer up to ``drain_timeout`` seconds to empty the spool, report
        drops (into the spool when the broker is still away: the next run sends them)."""
        self.flush()
        deadline = time.monotonic() + drain_timeout
        while not self.online and time.monotonic() < deadline and self._thread is not None:
            self._wake.set()
            self._thread.join(min(0.2, max(0.0, deadline - time.monotonic())))
        with self._lock:
            self._stop.set()
            self._wake.set()
            if self.spool.drops.records:
                self._report_drops(direct=self.online)
            self.flush()
        if self._thread is not None:
            self._thread.join(self.flush_timeout + 5)
        self.inner.close()
        self.spool.close()
