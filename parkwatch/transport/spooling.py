"""A producer transport that spools: records go to the broker while it acknowledges them and
to the bounded on-disk :class:`~parkwatch.transport.spool.Spool` while it is away; the spool
drains in order when the broker returns (the spool, its format and bound:
:mod:`parkwatch.transport.spool`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from parkwatch.errors import TransportError
from parkwatch.schema import Weird, format_ts
from parkwatch.transport.base import key_for, schema_header
from parkwatch.transport.spool import Batch, Spool

log = logging.getLogger(__name__)


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
