"""``parkwatch detect``: the detection stage as a consumer group on the transport.

Consumes flows and OT/IT/ARP events, publishes alerts. At least once: a batch's alerts are
durably published before its input offsets are committed (``run_stage``), and records seen
twice (by id) are dropped. Within a batch, records are taken in event time so Sigma's
windows see the order the capture had; a park scales out by adding partitions and processes
(correlation rules then count per consumer: key the topics by source, or run one consumer
per rule family, when exact counts across partitions matter).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from detectors.stage import DetectionStage
from parkwatch.config import load_settings
from parkwatch.durations import parse_duration
from parkwatch.schema import Alert, FlowRecord, Record
from parkwatch.topology import load_topology
from parkwatch.transport.base import open_transport, publish_records
from parkwatch.transport.worker import run_stage


def event_time(rec: Record) -> int:
    """The time a record happened (flows: their end, when they are emitted)."""
    if isinstance(rec, FlowRecord):
        return rec.end
    ts = getattr(rec, "ts", 0)
    return ts if isinstance(ts, int) else 0


def detect_batches(stage: DetectionStage, alerts_topic: str):  # type: ignore[no-untyped-def]
    """The ``process`` function of the stage: records (any order) -> (topic, alert) pairs."""

    def process(records: list[Record]) -> list[tuple[str, Record]]:
        out: list[Alert] = []
        for rec in sorted(records, key=event_time):
            out.extend(stage.process(rec))
        return [(alerts_topic, a) for a in out]

    return process


@click.command("detect")
@click.option("--from", "url", required=True, help="Transport: kafka://HOST:PORT or memory://.")
@click.option("--group", default="parkwatch-detect", show_default=True, help="Consumer group.")
@click.option("--topology", type=click.Path(dir_okay=False, exists=True), default=None)
@click.option("--rules", type=click.Path(file_okay=False, exists=True), default=None)
@click.option("--model", type=click.Path(dir_okay=False, exists=True), default=None)
@click.option("--learn-for", "learn_for", default=None, help="Learn baselines first (10m …).")
@click.option("--idle-exit", type=float, default=None, help="Stop after SECONDS without input.")
@click.option("--config", type=click.Path(dir_okay=False), default=None)
def detect_command(
    url: str,
    group: str,
    topology: str | None,
    rules: str | None,
    model: str | None,
    learn_for: str | None,
    idle_exit: float | None,
    config: str | None,
) -> None:
    """Consume flows and events from the transport, publish alerts (a consumer group)."""
    settings = load_settings(config, topology=Path(topology) if topology else None)
    topo = load_topology(settings.topology)
    ts = settings.transport
    stage = DetectionStage(
        topo,
        Path(rules) if rules else None,
        Path(model) if model else None,
        parse_duration(learn_for) if learn_for else None,
    )
    transport = open_transport(url, ts)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        st = run_stage(
            transport,
            [ts.topics.flows, ts.topics.events],
            group,
            detect_batches(stage, ts.topics.alerts),
            stop=stop,
            idle_exit=idle_exit,
        )
        tail = stage.flush()  # open windows at the end of input
        publish_records(transport, [(ts.topics.alerts, a) for a in tail])
        transport.flush()
    finally:
        transport.close()
    click.echo(
        f"parkwatch detect: {st.records:,} records, {st.duplicates:,} duplicates dropped, "
        f"{st.published + len(tail):,} alerts published, {st.commits:,} commits",
        err=True,
    )
