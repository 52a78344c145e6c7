"""``parkwatch flows``: captures in, flow records out (plus ARP events and weirds on request)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

import click

from parkwatch.errors import CaptureError

if TYPE_CHECKING:
    from collectors.pipeline import FlowPipeline, RunStats
    from parkwatch.schema import FlowRecord, OtEvent, Record
    from parkwatch.schema.columns import Columns


@click.command("flows")
@click.argument("captures", nargs=-1, required=True)
@click.option(
    "--topology",
    "topology",
    type=click.Path(dir_okay=False),
    default=None,
    help="Park topology YAML (default: RFC 1918/ULA internal, one enterprise).",
)
@click.option("--vantage", default=None, help="Vantage point (collector) id.")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "table"]), default="jsonl", show_default=True
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    help="Output file ('-' = stdout).",
)
@click.option(
    "--events",
    "events_out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write ARP events and weirds (JSON lines) to this file.",
)
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Settings YAML (defaults < file < PARKWATCH_* env < flags).",
)
@click.option(
    "--apps/--no-apps",
    default=False,
    help="Run the protocol decoders too: confirmed app_proto, sni and http_host on flows.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar (default: on when stderr is a terminal).",
)
def flows_command(
    captures: tuple[str, ...],
    topology: str | None,
    vantage: str | None,
    fmt: str,
    out: str,
    events_out: str | None,
    config: str | None,
    apps: bool,
    progress: bool | None,
) -> None:
    """Read CAPTURES (pcap, pcapng, .gz, '-' for stdin) and print bidirectional flow records.

    A summary line (packets, flows, weird, seconds, packets/s) goes to stderr.
    """
    # The flow collector does no linear algebra: without this, importing numpy starts an
    # OpenBLAS thread per core, a measurable share of a short run's CPU time. Imports are
    # here, not at the top, so that ``--help`` and argument errors stay instant.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from pathlib import Path

    import collectors.services  # noqa: F401  (port bindings)
    from collectors.pipeline import FlowPipeline
    from parkwatch.config import load_settings
    from parkwatch.sinks import SINKS
    from parkwatch.topology import load_topology

    settings = load_settings(config, vantage=vantage, topology=Path(topology) if topology else None)
    topo = load_topology(settings.topology)
    topo.vantage(settings.vantage)  # an unknown vantage id is an error (named ids listed)
    check_captures(captures)
    pipeline = FlowPipeline(settings, topo, apps="all" if apps else None)
    out_fh: IO[bytes] = sys.stdout.buffer if out == "-" else open(out, "wb")  # noqa: SIM115
    ev_fh: IO[bytes] | None = open(events_out, "wb") if events_out else None  # noqa: SIM115
    sink = SINKS.get(fmt)(out_fh)
    ev_sink = SINKS.get("jsonl")(ev_fh) if ev_fh else None
    ev_cb = ev_sink.write_many if ev_sink is not None else None  # OT/IT events as columns

    def emit(rec: Record) -> None:
        if ev_sink is not None:
            ev_sink.write(rec)

    show = sys.stderr.isatty() if progress is None else progress
    try:
        if show:
            stats = _run_with_progress(pipeline, list(captures), emit, sink.write_many, ev_cb)
        else:
            stats = pipeline.run(captures, emit, sink.write_many, events=ev_cb)
    finally:
        sink.close()
        if ev_sink is not None:
            ev_sink.close()
        if out_fh is not sys.stdout.buffer:
            out_fh.close()
        if ev_fh is not None:
            ev_fh.close()
    click.echo(summary(stats), err=True)


def check_captures(captures: tuple[str, ...] | list[str]) -> None:
    """Check every capture's header before any output is written."""
    from collectors.pcapio import CaptureReader

    for path in captures:
        if path != "-" and not os.path.exists(path):
            raise CaptureError("no such capture file", file=path)
        if path != "-":
            CaptureReader(path).close()  # raises CaptureFormatError for a non-capture
    if list(captures).count("-") > 1:
        raise CaptureError("standard input ('-') can be read only once")


def _run_with_progress(
    pipeline: FlowPipeline,
    captures: list[str],
    emit: Callable[[Record], None],
    flows: Callable[[Columns[FlowRecord]], None],
    events: Callable[[Columns[OtEvent]], None] | None = None,
) -> RunStats:
    """Run with a progress bar on stderr: bytes of the capture files read, packets so far."""
    sizes = [os.path.getsize(p) if p != "-" and os.path.isfile(p) else 0 for p in captures]
    total = sum(sizes)
    with click.progressbar(
        length=max(total, 1),
        label="reading",
        file=sys.stderr,
        show_eta=total > 0,
        show_percent=total > 0,
    ) as bar:
        state = {"packets": 0, "base": 0, "last": 0}

        def tick(packets: int, consumed: int) -> None:
            if consumed < state["last"]:  # the next file started
                state["base"] += state["last"]
            state["last"] = consumed
            state["packets"] += packets
            bar.label = f"{state['packets']:,} packets"
            bar.update(state["base"] + consumed - bar.pos)

        return pipeline.run(captures, emit, flows, progress=tick, events=events)


def summary(st: RunStats) -> str:
    """The one-line run summary."""
    return (
        f"parkwatch flows: {st.packets:,} packets ({st.ip:,} ip, {st.arp:,} arp, "
        f"{st.other:,} other), {st.flows:,} flows, "
        f"{st.weird + st.capture_weird + st.app_weird:,} weird, "
        f"{st.seconds:.2f} s, {st.pps:,.0f} packets/s"
    )
