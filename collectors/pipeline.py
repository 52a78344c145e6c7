"""Capture files in, facts out: flows, ARP events and weirds, with counts that add up.

Every packet read ends in exactly one bucket — a flow, an ARP event, "other" (a non-IP link
protocol, counted), or a weird — so ``packets == ip + arp + other + weird`` always holds.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from collectors.decode import (
    KIND_ARP,
    KIND_IP,
    KIND_OTHER,
    KIND_WEIRD,
    WEIRD_NAMES,
    Decoded,
    decode,
)
from collectors.flowemit import Emitter
from collectors.flowtable import FlowTable
from collectors.pcapio import CaptureReader, RawBatch
from parkwatch.config import Settings
from parkwatch.schema import ArpEvent, FlowRecord, OtEvent, Record, Weird
from parkwatch.schema.columns import Columns
from parkwatch.topology import Topology

if TYPE_CHECKING:
    from collectors.apps.engine import AppEngine

_ARP_OPS = {1: "who-has", 2: "is-at"}
_SUMMARY = ("app_proto", "sni", "http_host")
GC_APPS = (100_000, 50, 100)
"""Collector thresholds while decoders run: events make many short-lived containers (attrs
dicts, uid strings) that die with their batch; at the default (700, 10, 10) the cyclic
collector took about a fifth of ``parkwatch events`` CPU on the benchmark corpus."""


@contextmanager
def relaxed_gc(thresholds: tuple[int, int, int] = GC_APPS) -> Iterator[None]:
    """Raise the cyclic collector's thresholds (never lower them) for the block."""
    old = gc.get_threshold()
    gc.set_threshold(*(max(a, b) for a, b in zip(thresholds, old, strict=False)))
    try:
        yield
    finally:
        gc.set_threshold(*old)


@dataclass
class RunStats:
    """What one run read and produced."""

    captures: int = 0
    packets: int = 0
    ip: int = 0
    arp: int = 0
    other: int = 0
    weird: int = 0
    capture_weird: int = 0
    flows: int = 0
    evicted: int = 0
    seconds: float = 0.0
    app_weird: int = 0
    weird_names: dict[str, int] = field(default_factory=dict)

    @property
    def pps(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else 0.0


def check_capture(path: str) -> None:
    """CaptureError / CaptureFormatError for a missing file or one that is no capture."""
    import os

    from parkwatch.errors import CaptureError

    if path != "-" and not os.path.exists(path):
        raise CaptureError("no such capture file", file=path)
    if path != "-":
        CaptureReader(path).close()


def layer_of(name: str) -> str:
    """The layer a weird name belongs to (for the ``layer`` field)."""
    for key, layer in (
        ("tcp", "tcp"),
        ("udp", "udp"),
        ("icmp", "icmp"),
        ("sctp", "sctp"),
        ("ipv6", "ipv6"),
        ("ipv4", "ip"),
        ("ip_", "ip"),
        ("fragment", "ip"),
        ("arp", "arp"),
        ("record", "capture"),
        ("block", "capture"),
        ("interface", "capture"),
        ("file", "capture"),
    ):
        if key in name:
            return layer
    return "link"


class FlowPipeline:
    """Reads captures in order through one flow table (one vantage point).

    With ``apps`` (a set of protocol names, or ``"all"``), the application-layer engine
    decodes the candidate packets of every batch into OT/IT events (emitted with the ARP events
    and weirds) and confirms ``app_proto`` / fills ``sni`` and ``http_host`` on the flows.
    """

    def __init__(
        self,
        settings: Settings,
        topology: Topology,
        vantage: str | None = None,
        apps: set[str] | str | None = None,
    ):
        self.settings = settings
        self.vantage = vantage or settings.vantage
        self.topology = topology
        self.table = FlowTable(settings.flows, Emitter(self.vantage, topology))
        self.stats = RunStats()
        self._last_ts = 0  # capture time of the last packet read (stamps file-level weirds)
        self.apps: AppEngine | None = None
        if apps is not None:
            from collectors.apps.engine import AppEngine  # decoders load only when asked for

            self.apps = AppEngine(topology, self.vantage, None if apps == "all" else set(apps))
            self.table.track_packets = True

    def run(
        self,
        captures: Iterable[str],
        emit: Callable[[Record], None],
        flows: Callable[[Columns[FlowRecord]], None],
        progress: Callable[[int, int], None] | None = None,
        events: Callable[[Columns[OtEvent]], None] | None = None,
    ) -> RunStats:
        """Process ``captures``: ``emit`` gets ARP events and weirds, ``flows`` batches of
        flow records (as :class:`Columns`, in end-time order).

        OT/IT protocol events (with ``apps``) go to ``events`` as one :class:`Columns` batch
        per decoded batch when it is given (in capture order; no dataclass per event), else
        one :class:`OtEvent` at a time to ``emit``."""
        t0 = time.perf_counter()
        st = self.stats
        with relaxed_gc() if self.apps is not None else nullcontext():
            for path in captures:
                st.captures += 1
                with CaptureReader(path, batch_bytes=self.settings.flows.batch_bytes) as reader:
                    seen_weirds = 0
                    for raw in reader.batches():
                        self.feed(raw, reader.name, emit, flows, events)
                        seen_weirds = self._capture_weirds(reader, seen_weirds, emit)
                        if progress is not None:
                            progress(len(raw), reader.consumed)
                    self._capture_weirds(reader, seen_weirds, emit)
            self.finish(flows)
        st.seconds = time.perf_counter() - t0
        return st

    def feed(
        self,
        raw: RawBatch,
        name: str,
        emit: Callable[[Record], None],
        flows: Callable[[Columns[FlowRecord]], None],
        events: Callable[[Columns[OtEvent]], None] | None = None,
    ) -> None:
        """One batch of packets read from capture ``name`` (live collectors call this)."""
        d = decode(raw)
        ended = self.table.add(d)  # may turn orphan fragments into weirds
        self._facts(d, name, emit)
        if self.apps is not None:
            self.apps.file = name
            ended = self._decode_apps(d, ended, emit, events)
        if len(ended):
            flows(ended)

    def advance(self, now_ns: int, flows: Callable[[Columns[FlowRecord]], None]) -> None:
        """No packets for a while (a quiet live link): move the clock so idle flows end."""
        table = self.table
        if now_ns <= table.now:
            return
        table.now = now_ns
        table._expire()
        ended = self._annotate(table._release(table._watermark()))
        if len(ended):
            flows(ended)

    def finish(self, flows: Callable[[Columns[FlowRecord]], None]) -> RunStats:
        """End of input: end every open flow; the run's counters."""
        ended = self._annotate(self.table.flush())
        if len(ended):
            flows(ended)
        st = self.stats
        st.flows = self.table.stats.flows
        st.evicted = self.table.stats.evicted
        return st

    def _decode_apps(
        self,
        d: Decoded,
        ended: Columns[FlowRecord],
        emit: Callable[[Record], None],
        events: Callable[[Columns[OtEvent]], None] | None = None,
    ) -> Columns[FlowRecord]:
        apps = self.apps
        assert apps is not None and self.table.packet_uids is not None
        assert self.table.packet_fwd is not None
        apps.process(d, self.table.packet_uids, self.table.packet_fwd, emit, events)
        for w in apps.take_weirds():
            names = self.stats.weird_names
            names[w.name] = names.get(w.name, 0) + 1
            self.stats.app_weird += 1
            emit(w)
        return self._annotate(ended)

    def _annotate(self, ended: Columns[FlowRecord]) -> Columns[FlowRecord]:
        """Copy the decoders' summary fields onto ended flows and forget their app state."""
        apps = self.apps
        if apps is None or not len(ended):
            return ended
        hashes = [int(u[1:], 16) for u in ended["uid"].tolist()]
        got = apps.finish(hashes)
        if got:
            cols = {k: v.copy() for k, v in ended.data.items() if k in _SUMMARY}
            for row, h in enumerate(hashes):
                fields = got.get(h)
                if fields:
                    for key, value in fields.items():
                        cols[key][row] = value
            ended = Columns(FlowRecord, {**ended.data, **cols})
        return ended

    def _facts(self, d: Decoded, file: str, emit: Callable[[Record], None]) -> None:
        st = self.stats
        if len(d):
            self._last_ts = int(d.raw.ts_ns[-1])
        kind = d.kind
        counts = np.bincount(kind, minlength=4)
        st.packets += len(d)
        st.other += int(counts[KIND_OTHER])
        for i in np.nonzero(kind == KIND_ARP)[0].tolist():
            emit(self._arp(d, i))
        wi = np.nonzero(kind == KIND_WEIRD)[0]
        names = st.weird_names
        for i in wi.tolist():
            w = self._weird(d, i, file)
            names[w.name] = names.get(w.name, 0) + 1
            emit(w)
        st.arp += int(counts[KIND_ARP])
        st.weird += int(counts[KIND_WEIRD])
        st.ip += int(counts[KIND_IP])

    def _weird(self, d: Decoded, i: int, file: str) -> Weird:
        name = WEIRD_NAMES[int(d.weird[i])]
        raw = d.raw
        return Weird(
            int(raw.ts_ns[i]),
            name,
            layer_of(name),
            f"caplen={int(raw.caplen[i])} wirelen={int(raw.wirelen[i])}",
            file,
            raw.first_frame + i,
            self.vantage,
        )

    def _arp(self, d: Decoded, i: int) -> ArpEvent:
        raw = d.raw
        o = int(d.l3[i])
        b = bytes(memoryview(raw.buf)[o : o + 28])
        op = int.from_bytes(b[6:8], "big")
        spa, tpa = ".".join(map(str, b[14:18])), ".".join(map(str, b[24:28]))
        return ArpEvent(
            int(raw.ts_ns[i]),
            _ARP_OPS.get(op, f"op-{op}"),
            b[8:14].hex(":"),
            spa,
            b[18:24].hex(":"),
            tpa,
            int(d.src_mac[i]).to_bytes(6, "big").hex(":") if d.has_mac[i] else None,
            int(d.dst_mac[i]).to_bytes(6, "big").hex(":") if d.dst_mac[i] else None,
            spa == tpa,
            int(d.vlan[i]) if d.vlan[i] >= 0 else None,
            self.vantage,
            raw.first_frame + i,
        )

    def _capture_weirds(
        self, reader: CaptureReader, seen: int, emit: Callable[[Record], None]
    ) -> int:
        names = self.stats.weird_names
        for w in reader.weirds[seen:]:
            self.stats.capture_weird += 1
            names[w.name] = names.get(w.name, 0) + 1
            emit(
                Weird(
                    self._last_ts, w.name, "capture", w.detail, reader.name, w.frame, self.vantage
                )
            )
        return len(reader.weirds)
