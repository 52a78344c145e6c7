"""``parkwatch detect``: the detection stage as a consumer group on the transport.

Consumes flows and OT/IT/ARP events, publishes alerts. At least once: a batch's alerts are
durably published before its input offsets are committed (``run_stage``), and records seen
twice (by id) are dropped. Within a batch, records are taken in event time so Sigma's
windows see the order the capture had.

A park scales out by adding partitions and ``detect`` processes. Flows and events are keyed
by Community ID, so one scanner's probes land on many partitions and so on many members.
``--correlations local`` (the default, right for one member) counts correlation rules in each
member, which then sees only its share of a scan. ``--correlations split`` runs two consumers
per process: the rule member publishes each correlation hit to the hits topic keyed by the
correlation rule and its group-by values, and the counting member (group
``<group>-correlations``) counts them, so all hits of one group meet in one member and counts
are exact however many processes run. Members' event times must agree within a rule's
timespan; hits further behind are counted as ``late``. Open windows are not handed over when
partitions move to another member (a member joins, leaves or idles out with ``--idle-exit``):
keep members running for exact counts.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import click

from detectors.sigma.engine import SigmaEngine
from detectors.sigma.loader import load_pack
from detectors.stage import RULES, DetectionStage
from parkwatch.config import load_settings
from parkwatch.durations import parse_duration
from parkwatch.errors import ParkWatchError
from parkwatch.schema import Alert, CorrelationHit, FlowRecord, Record
from parkwatch.topology import load_topology
from parkwatch.transport.base import TransportSettings, open_transport, publish_records
from parkwatch.transport.worker import StageStats, run_stage


def event_time(rec: Record) -> int:
    """The time a record happened (flows: their end, when they are emitted)."""
    if isinstance(rec, FlowRecord):
        return rec.end
    ts = getattr(rec, "ts", 0)
    return ts if isinstance(ts, int) else 0


def detect_batches(stage: DetectionStage, alerts_topic: str, hits_topic: str | None = None):  # type: ignore[no-untyped-def]
    """The ``process`` function of the stage: records (any order) -> (topic, alert) pairs,
    plus (``hits_topic``, hit) pairs when the stage publishes its correlation hits."""

    def process(records: list[Record]) -> list[tuple[str, Record]]:
        out: list[Alert] = []
        for rec in sorted(records, key=event_time):
            out.extend(stage.process(rec))
        pairs: list[tuple[str, Record]] = [(alerts_topic, a) for a in out]
        hits = stage.sigma.take_hits()
        if hits:
            if hits_topic is None:
                raise ParkWatchError("correlation hits made but no hits topic to publish them to")
            pairs.extend((hits_topic, h) for h in hits)
        return pairs

    return process


def count_batches(engine: SigmaEngine, alerts_topic: str):  # type: ignore[no-untyped-def]
    """The ``process`` function of the counting member: correlation hits -> alerts."""

    def process(records: list[Record]) -> list[tuple[str, Record]]:
        hits = [r for r in records if isinstance(r, CorrelationHit)]
        engine.stats["not_a_hit"] += len(records) - len(hits)
        hits.sort(key=lambda h: h.ts)
        return [(alerts_topic, a) for h in hits for a in engine.correlate(h)]

    return process


@dataclass
class DetectRun:
    """Counters of one :func:`run_detect`: the rule member's, the counting member's (split
    mode) and the alerts published at the end of input."""

    rules: StageStats
    counting: StageStats | None
    tail: int
    late: int
    hits: int


def run_detect(
    url: str,
    ts: TransportSettings,
    group: str,
    stage: DetectionStage,
    counter: SigmaEngine | None = None,
    *,
    stop: threading.Event | None = None,
    idle_exit: float | None = None,
    poll_timeout: float = 0.5,
) -> DetectRun:
    """Run the detect stage until ``stop`` or ``idle_exit``; with ``counter`` (split mode, and
    ``stage`` made with ``correlations="publish"``) also its counting member, in a thread
    with a transport of its own, which stops once the rule member is done and its own input
    has been idle for ``idle_exit``."""
    stop = stop or threading.Event()
    done = threading.Event()
    counted: list[StageStats] = []
    failed: list[BaseException] = []
    tail = 0
    hits_topic = ts.topics.hits if counter is not None else None

    def counting() -> None:
        assert counter is not None
        tr = open_transport(url, ts)
        try:
            counted.append(
                run_stage(tr, [ts.topics.hits], f"{group}-correlations",
                          count_batches(counter, ts.topics.alerts), stop=stop,
                          idle_exit=idle_exit, idle_when=done.is_set, poll_timeout=poll_timeout)
            )  # fmt: skip
            tr.flush()
            publish_records(tr, [(ts.topics.alerts, a) for a in counter.flush()])
            tr.flush()
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)
            stop.set()
        finally:
            tr.close()

    thread = threading.Thread(target=counting, name="detect-counting", daemon=True)
    transport = open_transport(url, ts)
    try:
        if counter is not None:
            thread.start()
        st = run_stage(
            transport,
            [ts.topics.flows, ts.topics.events],
            group,
            detect_batches(stage, ts.topics.alerts, hits_topic),
            stop=stop,
            idle_exit=idle_exit,
            poll_timeout=poll_timeout,
        )
        last = stage.flush()  # open windows at the end of input
        tail = publish_records(transport, [(ts.topics.alerts, a) for a in last])
        transport.flush()
    finally:
        done.set()
        transport.close()
        if thread.ident is not None:
            thread.join()
    if failed:
        raise failed[0]
    engine = counter or stage.sigma
    made = stage.sigma.stats["hits_published"]
    return DetectRun(st, counted[0] if counted else None, tail, engine.counters()["late"], made)


@click.command("detect")
@click.option("--from", "url", required=True, help="Transport: kafka://HOST:PORT or memory://.")
@click.option("--group", default="parkwatch-detect", show_default=True, help="Consumer group.")
@click.option("--topology", type=click.Path(dir_okay=False, exists=True), default=None)
@click.option("--rules", type=click.Path(file_okay=False, exists=True), default=None)
@click.option("--model", type=click.Path(dir_okay=False, exists=True), default=None)
@click.option("--learn-for", "learn_for", default=None, help="Learn baselines first (10m …).")
@click.option(
    "--correlations",
    type=click.Choice(["local", "split"]),
    default="local",
    show_default=True,
    help="split: count correlation rules exactly across several detect processes.",
)
@click.option("--idle-exit", type=float, default=None, help="Stop after SECONDS without input.")
@click.option("--config", type=click.Path(dir_okay=False), default=None)
def detect_command(
    url: str,
    group: str,
    topology: str | None,
    rules: str | None,
    model: str | None,
    learn_for: str | None,
    correlations: str,
    idle_exit: float | None,
    config: str | None,
) -> None:
    """Consume flows and events from the transport, publish alerts (a consumer group)."""
    settings = load_settings(config, topology=Path(topology) if topology else None)
    topo = load_topology(settings.topology)
    ts = settings.transport
    split = correlations == "split"
    stage = DetectionStage(
        topo,
        Path(rules) if rules else None,
        Path(model) if model else None,
        parse_duration(learn_for) if learn_for else None,
        correlations="publish" if split else "local",
    )
    counter = SigmaEngine(load_pack(Path(rules) if rules else RULES), topo) if split else None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run = run_detect(url, ts, group, stage, counter, stop=stop, idle_exit=idle_exit)
    st, cs = run.rules, run.counting
    alerts = st.published - run.hits + run.tail + (cs.published if cs else 0)
    click.echo(
        f"parkwatch detect: {st.records:,} records, {st.duplicates:,} duplicates dropped, "
        f"{alerts:,} alerts published, {st.commits:,} commits"
        + (f"; {run.hits:,} correlation hits published, {cs.records:,} counted" if cs else "")
        + (f"; {run.late:,} late correlation hits dropped" if run.late else ""),
        err=True,
    )
