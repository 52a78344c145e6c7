"""``parkwatch train``: learn the anomaly baselines from benign captures and write a model.

``parkwatch train --baseline CAPTURE... --out MODEL [--topology FILE]`` reads the captures in
order through the flow pipeline (with the application decoders when this build has them),
trains the flow model on every flow and the OT baseline on every OT event, fits each
detector's threshold policy on its training scores, and writes ``MODEL`` plus
``MODEL.card.json`` (see ``detectors/anomaly/modelcard.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from detectors.anomaly.base import Detector, FixedThreshold, ThresholdPolicy
from detectors.anomaly.flow_model import FlowModel
from detectors.anomaly.modelcard import save_model
from detectors.anomaly.ot_baseline import OtBaseline
from parkwatch.config import load_settings
from parkwatch.errors import CaptureError, ConfigError
from parkwatch.schema import FlowRecord, OtEvent, Record
from parkwatch.schema.columns import Columns
from parkwatch.stages import load_stage
from parkwatch.topology import load_topology

MIN_FLOWS = 100
"""Below this many training flows ``train`` warns that the isolation forest is coarse."""


def read_records(
    captures: list[str],
    topology: str | None = None,
    vantage: str | None = None,
    config: str | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(flow dicts, OT event dicts) of ``captures``, read through one pipeline."""
    for path in captures:
        if not os.path.exists(path):
            raise CaptureError("no such capture file", file=path)
        load_stage("check_capture")(path)  # CaptureFormatError for a non-capture, first
    settings = load_settings(config, vantage=vantage, topology=Path(topology) if topology else None)
    topo = load_topology(settings.topology)
    topo.vantage(settings.vantage)
    collector = load_stage("collect")
    pipeline = collector(settings, topo, apps="all")  # OT/IT events for the OT baseline
    flows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []

    def emit(rec: Record) -> None:
        if isinstance(rec, OtEvent):
            events.append(rec.to_dict())

    def on_flows(cols: Columns[FlowRecord]) -> None:
        flows.extend(r.to_dict() for r in cols.records())

    pipeline.run(captures, emit, on_flows)
    return flows, events


def train(
    flows: list[dict[str, Any]],
    events: list[dict[str, Any]],
    contamination: float | str = "auto",
    seed: int = 0,
) -> tuple[dict[str, Detector], dict[str, ThresholdPolicy]]:
    """Train the detectors that have data; each policy is fitted on its training scores."""
    detectors: dict[str, Detector] = {}
    policies: dict[str, ThresholdPolicy] = {}
    if flows:
        fm = FlowModel(contamination=contamination, seed=seed)
        for x in flows:
            fm.learn(x)
        fm.fit()
        detectors[fm.name] = fm
        policies[fm.name] = fm.default_policy().fit(fm.training_scores())
    if events:
        ob = OtBaseline(seed=seed)
        for x in events:
            ob.learn(x)
        detectors[ob.name] = ob
        policies[ob.name] = FixedThreshold(0.5)
    if not detectors:
        raise ConfigError(
            "the baseline captures held no flows and no OT events: nothing to learn",
            hint="pass captures of normal traffic to --baseline",
        )
    return detectors, policies


def _contamination(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise ConfigError(
            f"contamination must be 'auto' or a number in (0, 0.5], got {value!r}",
            field="contamination",
        ) from None


@click.command("train")
@click.option(
    "--baseline",
    "baseline",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False),
    help="Capture of normal traffic (repeat for several; read in order).",
)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Model file.")
@click.option("--topology", type=click.Path(dir_okay=False), default=None, help="Park topology.")
@click.option("--vantage", default=None, help="Vantage point (collector) id.")
@click.option("--config", type=click.Path(dir_okay=False), default=None, help="Settings YAML.")
@click.option(
    "--contamination",
    default="auto",
    show_default=True,
    help="Expected share of anomalies in the baseline, or 'auto' (threshold 0.5).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
def train_command(
    baseline: tuple[str, ...],
    out: str,
    topology: str | None,
    vantage: str | None,
    config: str | None,
    contamination: str,
    seed: int,
) -> None:
    """Learn the flow model and OT baseline from --baseline captures and write --out MODEL
    with its model card MODEL.card.json."""
    cont = _contamination(contamination)
    FlowModel(contamination=cont)  # validate before reading captures
    flows, events = read_records(list(baseline), topology, vantage, config)
    detectors, policies = train(flows, events, cont, seed)
    card = save_model(
        out, detectors, policies, list(baseline), {"topology": topology, "seed": seed}
    )
    if 0 < card["flows"] < MIN_FLOWS:
        click.echo(
            f"parkwatch train: warning: only {card['flows']} flows to learn from; flow-model "
            f"scores will be coarse (a baseline of {MIN_FLOWS}+ flows is advised)",
            err=True,
        )
    window = card["training_window"]
    click.echo(
        f"parkwatch train: {card['flows']:,} flows, {card['ot_events']:,} OT events "
        f"({window['first']} .. {window['last']}), detectors {', '.join(detectors)}; "
        f"wrote {out} and {out}.card.json (sha256 {card['model_sha256'][:16]}…)",
        err=True,
    )
