"""``parkwatch events``: captures in, OT/IT protocol events out (JSON lines)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

import click

from collectors.apps import APP_DECODERS
from collectors.cli import check_captures
from collectors.pipeline import FlowPipeline
from parkwatch.config import load_settings
from parkwatch.errors import ConfigError
from parkwatch.schema import OtEvent, Record, Weird
from parkwatch.sinks import SINKS
from parkwatch.topology import load_topology


@click.command("events")
@click.argument("captures", nargs=-1, required=True)
@click.option(
    "--protocol",
    "protocols",
    multiple=True,
    help="Only this protocol (repeatable): modbus, dnp3, s7comm, iec104, enip, opcua, …",
)
@click.option("--topology", type=click.Path(dir_okay=False), default=None, help="Park topology.")
@click.option("--vantage", default=None, help="Vantage point (collector) id.")
@click.option(
    "--out", type=click.Path(dir_okay=False, allow_dash=True), default="-", help="Output file."
)
@click.option(
    "--weirds/--no-weirds", default=False, help="Also write weird events (decode failures)."
)
@click.option("--config", type=click.Path(dir_okay=False), default=None, help="Settings YAML.")
def events_command(
    captures: tuple[str, ...],
    protocols: tuple[str, ...],
    topology: str | None,
    vantage: str | None,
    out: str,
    weirds: bool,
    config: str | None,
) -> None:
    """Decode CAPTURES into one JSON event per protocol request and response.

    Keys: ts, protocol, src_ip, dst_ip, src_port, dst_port, direction, function_code,
    function_name, unit, exception_code, community_id (schema parkwatch.ot_event/2).
    """
    known = {str(k) for k in APP_DECODERS}
    bad = sorted(set(protocols) - known)
    if bad:
        raise ConfigError(
            f"unknown protocol {', '.join(bad)} (known: {', '.join(sorted(known))})",
            field="--protocol",
        )
    settings = load_settings(config, vantage=vantage, topology=Path(topology) if topology else None)
    topo = load_topology(settings.topology)
    topo.vantage(settings.vantage)
    check_captures(captures)
    pipe = FlowPipeline(settings, topo, apps=set(protocols) if protocols else "all")
    fh: IO[bytes] = sys.stdout.buffer if out == "-" else open(out, "wb")  # noqa: SIM115
    sink = SINKS.get("jsonl")(fh)

    def emit(rec: Record) -> None:
        if isinstance(rec, OtEvent) or (weirds and isinstance(rec, Weird)):
            sink.write(rec)

    try:  # events come as Columns batches: JSON lines straight from the columns
        stats = pipe.run(captures, emit, lambda cols: None, events=sink.write_many)
    finally:
        sink.close()
        if fh is not sys.stdout.buffer:
            fh.close()
    assert pipe.apps is not None
    a = pipe.apps.stats
    by = ", ".join(f"{k} {v:,}" for k, v in sorted(a.by_protocol.items())) or "none"
    click.echo(
        f"parkwatch events: {stats.packets:,} packets, {a.candidates:,} decoded, "
        f"{a.events:,} events ({by}), {a.weird:,} decode weird, {stats.seconds:.2f} s",
        err=True,
    )
