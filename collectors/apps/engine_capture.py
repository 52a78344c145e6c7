"""One-call decoding of a capture with the application decoders (tests, tools).

:func:`decode_capture` runs the flow pipeline with every decoder (or ``protocols``) over one
capture and collects its events, weirds and flow records in a :class:`CaptureEvents`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from parkwatch.schema import OtEvent, Weird
from parkwatch.topology import Topology


@dataclass
class CaptureEvents:
    """What :func:`decode_capture` found: events and weirds in emission order, and flows."""

    events: list[OtEvent] = field(default_factory=list)
    weirds: list[Weird] = field(default_factory=list)
    flows: list[Any] = field(default_factory=list)


def decode_capture(
    path: str | Any,
    topology: Topology | None = None,
    protocols: set[str] | None = None,
    vantage: str | None = None,
) -> CaptureEvents:
    """Run the flow pipeline with every decoder (or ``protocols``) over one capture."""
    from collectors.pipeline import FlowPipeline  # the pipeline imports this module
    from parkwatch.config import load_settings
    from parkwatch.topology import default_topology

    out = CaptureEvents()
    pipe = FlowPipeline(
        load_settings(vantage=vantage),
        topology or default_topology(),
        apps=protocols if protocols is not None else "all",
    )

    def emit(rec: Any) -> None:
        if isinstance(rec, OtEvent):
            out.events.append(rec)
        elif isinstance(rec, Weird):
            out.weirds.append(rec)

    pipe.run([str(path)], emit, lambda cols: out.flows.extend(cols.records()))
    return out
