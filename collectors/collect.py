"""``parkwatch collect``: a live interface or a replayed capture into the transport.

Live (``--iface``): ``dumpcap -w -`` (or ``tcpdump -U -w -``) writes the capture to a pipe;
it is cut into segments of whole packets (at most every ``0.5`` s, or 4 MiB) that go through
the foundation reader (:class:`~collectors.pcapio.CaptureReader` on each segment) and the
flow pipeline — never one scapy object per packet. On a quiet link the flow table's clock
follows the wall clock, so idle flows still end. SIGINT/SIGTERM (or ``--duration``) stops
the capture tool, reads what it still wrote, flushes every open flow and prints the summary
with the kernel's and the capture tool's drop counters (a ``capture_dropped`` weird is
published when any is non-zero).

Replay (``--pcap FILE``): the capture as fast as it reads, or at its own pace with
``--realtime`` (``--speed X`` for X times faster), packets emitted no earlier than due.

Output: ``--to kafka://HOST:PORT`` (through the on-disk spool, see
:mod:`parkwatch.transport.spool`), ``--to memory://``, or JSON lines on ``--out`` (stdout).
"""

from __future__ import annotations

import io
import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import click
import numpy as np

import collectors.services  # noqa: F401  (port bindings)
from collectors.live import Drops, LiveCapture
from collectors.pcapio import CaptureReader, RawBatch
from collectors.pipeline import FlowPipeline, RunStats
from parkwatch.config import load_settings
from parkwatch.errors import ConfigError
from parkwatch.schema import FlowRecord, Record, Weird
from parkwatch.schema.columns import Columns
from parkwatch.transport.base import (
    Transport,
    TransportSettings,
    open_transport,
    publish_flows,
    publish_records,
)
from parkwatch.transport.spool import Spool
from parkwatch.transport.spooling import SpoolingTransport

PACE_NS = 20_000_000  # realtime: packets are handed on in slices of at most 20 ms


class Output:
    """Where records go: a transport (flushed after every batch) or JSON lines."""

    def __init__(self, transport: Transport | None, fh: IO[bytes] | None, topics: Any) -> None:
        self.transport, self.fh, self.topics = transport, fh, topics
        self.events: list[Record] = []
        self.published = 0

    def flows(self, cols: Columns[FlowRecord]) -> None:
        if self.transport is not None:
            self.published += publish_flows(self.transport, self.topics.flows, cols)
        elif self.fh is not None:
            self.fh.write(cols.jsonl())
            self.published += len(cols)

    def event(self, rec: Record) -> None:
        self.events.append(rec)

    def end_batch(self) -> None:
        events, self.events = self.events, []
        if self.transport is not None:
            self.published += publish_records(
                self.transport, [(self.topics.for_record(r), r) for r in events]
            )
            self.transport.flush()
        elif self.fh is not None:
            self.fh.write(b"".join(r.to_json() + b"\n" for r in events))
            self.published += len(events)
            self.fh.flush()


class Collector:
    """Drives a :class:`FlowPipeline` batch by batch (live segments, paced slices)."""

    def __init__(self, pipe: FlowPipeline, out: Output) -> None:
        self.pipe, self.out = pipe, out
        self.stop = threading.Event()
        self.frame_base = 0  # frames of earlier live segments
        self._t0 = time.perf_counter()

    def feed(self, raw: RawBatch, name: str) -> None:
        """One batch through the pipeline (the body of FlowPipeline.run's loop)."""
        self.pipe.feed(raw, name, self.out.event, self.out.flows)

    def capture_weirds(self, reader: CaptureReader, seen: int, name: str) -> int:
        st = self.pipe.stats
        for w in reader.weirds[seen:]:
            st.capture_weird += 1
            st.weird_names[w.name] = st.weird_names.get(w.name, 0) + 1
            self.out.event(
                Weird(
                    self.pipe._last_ts, w.name, "capture", w.detail, name,
                    w.frame + self.frame_base, self.pipe.vantage,
                )
            )  # fmt: skip
        return len(reader.weirds)

    def advance(self, now_ns: int) -> None:
        """Quiet link: let the flow table's clock follow the wall clock so idle flows end."""
        if now_ns > self.pipe.table.now:
            self.pipe.advance(now_ns, self.out.flows)
            self.out.end_batch()

    def finish(self) -> RunStats:
        """End every open flow and publish it; the run's counters."""
        st = self.pipe.finish(self.out.flows)
        self.out.end_batch()
        st.seconds = time.perf_counter() - self._t0
        return st

    def run_file(
        self,
        path: str,
        realtime: bool = False,
        speed: float = 1.0,
        slice_packets: int | None = None,
        on_slice: Callable[[int], None] | None = None,
    ) -> RunStats:
        """Replay a capture; ``on_slice(packets so far)`` runs after each published slice."""
        batch = 1 << 20 if realtime or slice_packets else self.pipe.settings.flows.batch_bytes
        clock: list[float] = []  # [wall start, capture start ns]
        with CaptureReader(path, batch_bytes=batch) as reader:
            self.pipe.stats.captures += 1
            seen = 0
            for raw in reader.batches():
                for sub in _slices(raw, PACE_NS * speed if realtime else None, slice_packets):
                    if self.stop.is_set():
                        return self.finish()
                    if realtime:
                        self._pace(int(sub.ts_ns[0]), int(sub.ts_ns[-1]), speed, clock)
                    self.feed(sub, reader.name)
                    seen = self.capture_weirds(reader, seen, reader.name)
                    self.out.end_batch()
                    if on_slice is not None:
                        on_slice(self.pipe.stats.packets)
            self.capture_weirds(reader, seen, reader.name)
        return self.finish()

    def _pace(self, first: int, ts: int, speed: float, clock: list[float]) -> None:
        """Sleep until the slice's last packet is due (or until stopped)."""
        if not clock:
            clock.extend((time.monotonic(), float(first)))
        due = clock[0] + (ts - clock[1]) / 1e9 / speed
        self.stop.wait(max(0.0, due - time.monotonic()))

    def run_live(self, cap: LiveCapture, duration: float | None = None) -> RunStats:
        deadline = time.monotonic() + duration if duration else None
        for seg in cap.segments(self.stop, deadline):
            if seg is None:
                self.advance(time.time_ns())
                continue
            src = io.BytesIO(seg)
            src.name = f"iface:{cap.iface}"
            with CaptureReader(src, batch_bytes=len(seg) + 64) as reader:
                for raw in reader.batches():
                    raw.first_frame += self.frame_base
                    self.feed(raw, src.name)
                self.capture_weirds(reader, 0, src.name)
                self.frame_base += reader.packets
            self.out.end_batch()
        drops = cap.drops
        if drops is not None and (drops.kernel or drops.app or drops.ifdrop):
            self.out.event(
                Weird(
                    time.time_ns(), "capture_dropped", "capture", drops.text(),
                    f"iface:{cap.iface}", None, self.pipe.vantage,
                )
            )  # fmt: skip
        return self.finish()


def _slices(raw: RawBatch, pace_ns: float | None, every: int | None) -> Iterator[RawBatch]:
    """Cut a batch where the (scaled) capture time crosses a pacing step, or every N packets."""
    n = len(raw)
    cuts = np.zeros(0, np.int64)
    if pace_ns:
        step = (raw.ts_ns - raw.ts_ns[0]) // max(1, int(pace_ns))
        cuts = np.flatnonzero(np.diff(step)) + 1
    if every:
        cuts = np.union1d(cuts, np.arange(every, n, every))
    bounds = [0, *cuts.tolist(), n]
    for a, b in itertools.pairwise(bounds):
        if b > a:
            yield RawBatch(
                raw.buf, raw.data_off[a:b], raw.caplen[a:b], raw.wirelen[a:b],
                raw.ts_ns[a:b], raw.linktype[a:b], raw.first_frame + a,
            )  # fmt: skip


def default_spool(vantage: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "parkwatch" / "spool" / vantage


def open_output(
    to: str | None, spool_dir: str | None, vantage: str, ts: TransportSettings, out: str
) -> tuple[Output, Transport | None]:
    if to is None:
        fh = sys.stdout.buffer if out == "-" else open(out, "wb")  # noqa: SIM115
        return Output(None, fh, ts.topics), None
    inner = open_transport(to, ts)
    transport: Transport = inner
    if to.startswith("kafka"):
        spool = Spool(
            spool_dir or default_spool(vantage),
            ts.spool_max_bytes,
            ts.spool_segment_bytes,
            ts.spool_fsync,
        )
        transport = SpoolingTransport(
            inner, spool, events_topic=ts.topics.events, vantage=vantage,
            retry_interval=ts.retry_interval, flush_timeout=ts.flush_timeout,
        )  # fmt: skip
    return Output(transport, None, ts.topics), transport


def summary(st: RunStats, out: Output, transport: Any, drops: Drops | None) -> str:
    text = (
        f"parkwatch collect: {st.packets:,} packets, {st.flows:,} flows, "
        f"{st.weird + st.capture_weird + getattr(st, 'app_weird', 0):,} weird, "
        f"{out.published:,} records out"
    )
    ss = getattr(transport, "stats", None)
    if ss is not None:
        text += f" ({ss.spooled:,} spooled, {ss.drained:,} drained, {ss.dropped:,} dropped"
        text += f", {len(transport.spool):,} still spooled)"
    if drops is not None:
        text += f", {drops.text()}"
    return text + f", {st.seconds:.2f} s"


@click.command("collect")
@click.option("--iface", default=None, help="Capture live on this interface.")
@click.option("--pcap", "pcap", type=click.Path(dir_okay=False), default=None, help="Replay.")
@click.option("--realtime", is_flag=True, help="Replay at the capture's own pace.")
@click.option("--speed", type=click.FloatRange(min=0.001), default=1.0, show_default=True)
@click.option("--vantage", default=None, help="Vantage point (collector) id.")
@click.option("--bpf", default=None, help="Capture filter (BPF), live only.")
@click.option("--snaplen", type=click.IntRange(min=64), default=None, help="Live snap length.")
@click.option("--tool", type=click.Choice(["auto", "dumpcap", "tcpdump"]), default="auto")
@click.option("--duration", type=click.FloatRange(min=0), default=None, help="Live: stop after.")
@click.option("--topology", type=click.Path(dir_okay=False), default=None)
@click.option("--to", "to", default=None, help="kafka://HOST:PORT[,…] or memory:// (else JSON).")
@click.option("--spool", "spool_dir", default=None, help="Spool directory for --to kafka.")
@click.option("--out", default="-", help="JSON lines file without --to ('-' = stdout).")
@click.option("--apps/--no-apps", default=True, help="Run the protocol decoders (events).")
@click.option("--config", type=click.Path(dir_okay=False), default=None)
def collect_command(
    iface: str | None,
    pcap: str | None,
    realtime: bool,
    speed: float,
    vantage: str | None,
    bpf: str | None,
    snaplen: int | None,
    tool: str,
    duration: float | None,
    topology: str | None,
    to: str | None,
    spool_dir: str | None,
    out: str,
    apps: bool,
    config: str | None,
) -> None:
    """Capture live (--iface) or replay a capture (--pcap) into the transport."""
    if (iface is None) == (pcap is None):
        raise ConfigError("give exactly one of --iface and --pcap", field="iface")
    settings = load_settings(config, vantage=vantage, topology=Path(topology) if topology else None)
    from parkwatch.topology import load_topology

    topo = load_topology(settings.topology)
    topo.vantage(settings.vantage)
    if pcap is not None:
        CaptureReader(pcap).close()  # a missing or non-capture file fails before any output
    ts = getattr(settings, "transport", None) or TransportSettings()
    output, transport = open_output(to, spool_dir, settings.vantage, ts, out)
    coll = Collector(FlowPipeline(settings, topo, apps="all" if apps else None), output)
    cap: LiveCapture | None = None
    old = {s: signal.signal(s, lambda *_: coll.stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if pcap is not None:
            st = coll.run_file(pcap, realtime=realtime, speed=speed)
        else:
            assert iface is not None
            cap = LiveCapture(iface, bpf, snaplen, tool)
            cap.wait_ready()
            click.echo(f"parkwatch collect: capturing on {iface} ({cap.tool})", err=True)
            st = coll.run_live(cap, duration)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if transport is not None:
            transport.close()
        elif output.fh is not None and output.fh is not sys.stdout.buffer:
            output.fh.close()
    click.echo(summary(st, output, transport, cap.drops if cap else None), err=True)
