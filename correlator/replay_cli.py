"""``parkwatch replay``: the auditors' command (see :mod:`correlator.replay`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click
import orjson

from correlator.labels import LabelError
from correlator.replay import (
    Writers,
    find_captures,
    labels_for,
    manifest,
    replay_capture,
    scorecard,
)
from correlator.report_html import render
from correlator.suppress import Suppressions
from parkwatch.assets import AssetBook
from parkwatch.config import load_settings
from parkwatch.durations import parse_duration
from parkwatch.schema import RECORD_TYPES, Incident, Record
from parkwatch.store import results as results_store
from parkwatch.store import workflow
from parkwatch.store.sqlite import SqliteStore
from parkwatch.topology import load_topology


@click.command("replay")
@click.argument("captures", nargs=-1, required=True)
@click.option(
    "--labels",
    type=click.Path(exists=True),
    default=None,
    help="Label file or directory (default: <capture>.labels.yaml beside each).",
)
@click.option("--topology", type=click.Path(dir_okay=False, exists=True), default=None)
@click.option("--vantage", default=None, help="Vantage point id of the captures.")
@click.option(
    "--model",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Trained model (parkwatch train) to score flows/events with.",
)
@click.option(
    "--learn-for",
    "learn_for",
    default=None,
    help="Learn baselines from the first DURATION of each capture (e.g. 10m).",
)
@click.option(
    "--rules",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Sigma rule directory (default: the shipped pack).",
)
@click.option(
    "--suppress",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Suppression rules (operators' false-positive decisions).",
)
@click.option("--out", "out", type=click.Path(file_okay=False), required=True)
@click.option(
    "--store",
    "store_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="SQLite store for alerts and incidents (default: OUT/parkwatch.db).",
)
@click.option(
    "--es",
    "es_url",
    default=None,
    help="Also index flows, events, alerts and incidents into Elasticsearch at URL.",
)
@click.option("--config", type=click.Path(dir_okay=False), default=None)
@click.option("--progress/--no-progress", default=None)
def replay_command(
    captures: tuple[str, ...],
    labels: str | None,
    topology: str | None,
    vantage: str | None,
    model: str | None,
    learn_for: str | None,
    rules: str | None,
    suppress: str | None,
    out: str,
    store_path: str | None,
    es_url: str | None,
    config: str | None,
    progress: bool | None,
) -> None:
    """Replay CAPTURE files or directories through the whole pipeline and score the labels.

    Writes flows/events/alerts/incidents/campaigns.jsonl, scorecard.json, report.html and
    manifest.json to OUT. Labels whose sha256 does not match their capture are refused.
    """
    settings = load_settings(config, vantage=vantage, topology=Path(topology) if topology else None)
    topo = load_topology(settings.topology)
    topo.vantage(settings.vantage)
    learn_ns = parse_duration(learn_for) if learn_for else None
    paths = find_captures(captures)
    lab_root = Path(labels) if labels else None
    found = [(p, labels_for(p, lab_root)) for p in paths]
    for p, lab in found:  # refuse mismatched labels before anything is written
        if lab is not None and lab.sha256:
            from correlator.labels import check_capture

            check_capture(lab, p)
    outdir = Path(out)
    db = Path(store_path) if store_path else outdir / "parkwatch.db"
    outdir.mkdir(parents=True, exist_ok=True)
    book = AssetBook()
    with SqliteStore.open(db) as st:  # operators' false positives apply to this replay
        stored = [s["rule"] for s in workflow.suppressions(st)]
        for known in results_store.assets(st):  # the inventory grows replay by replay
            book.merge(known)
    supp = Suppressions.load(suppress) + Suppressions.parse(stored, f"{db} (false positives)")
    writers = Writers(outdir)
    show = sys.stderr.isatty() if progress is None else progress
    results = []
    try:
        for n, (path, lab) in enumerate(found, 1):
            tick = None
            bar = None
            if show:
                bar = click.progressbar(
                    length=max(path.stat().st_size, 1),
                    file=sys.stderr,
                    label=f"[{n}/{len(found)}] {path.name}",
                )
                bar.__enter__()

                def tick(_packets: int, consumed: int, bar: object = bar) -> None:
                    bar.update(consumed - bar.pos)  # type: ignore[attr-defined]

            try:
                results.append(
                    replay_capture(
                        path,
                        lab,
                        settings,
                        topo,
                        writers,
                        rules=Path(rules) if rules else None,
                        model=Path(model) if model else None,
                        learn_for_ns=learn_ns,
                        suppressions=supp,
                        progress=tick,
                        observe=book.observe,
                    )
                )
            finally:
                if bar is not None:
                    bar.__exit__(None, None, None)
    finally:
        writers.close()
    card = scorecard(results)
    (outdir / "scorecard.json").write_bytes(orjson.dumps(card, option=orjson.OPT_INDENT_2))
    camps = [c.to_dict() for r in results for c in r.campaigns]
    incidents = [i for r in results for i in r.incidents]
    (outdir / "report.html").write_text(render(card, incidents, camps), encoding="utf-8")
    opts = {"vantage": settings.vantage, "learn_for": learn_for, "suppress": suppress}
    man = manifest(
        results,
        Path(rules) if rules else None,
        Path(model) if model else None,
        settings.topology,
        opts,
    )
    (outdir / "manifest.json").write_bytes(orjson.dumps(man, option=orjson.OPT_INDENT_2))
    alerts = [a for r in results for a in r.alerts]
    with SqliteStore.open(db) as st:
        st.put(alerts)
        st.put(incidents)
        st.put(_facts(outdir, incidents))
        results_store.put_campaigns(st, [
            {**c.to_dict(), "first_seen_ns": c.first_seen, "last_seen_ns": c.last_seen}
            for r in results for c in r.campaigns
        ])
        results_store.put_replay(st, [str(r.capture) for r in results], card, man)
        results_store.put_assets(st, [a.to_dict() for a in book.assets()])
    if es_url:
        from parkwatch.elastic import ElasticSink

        sink = ElasticSink.open(es_url)
        try:
            for name in ("flows", "events"):
                sink.put(_read_records(outdir / f"{name}.jsonl"))
            sink.put(alerts)
            sink.put(incidents)
        finally:
            sink.close()
    t = card["total"]
    dr = card["defended_ratio"]["park"]
    click.echo(
        f"parkwatch replay: {len(results)} captures, {sum(r.packets for r in results):,} packets, "
        f"{sum(len(r.alerts) for r in results):,} alerts, {len(incidents):,} incidents; "
        f"attack recall {t['attack_recall']}, category recall {t['category_recall']}, "
        f"incident precision {t['incident_precision']}; defended ratio {dr['ratio']} "
        f"({dr['unknown']} unknown) -> {outdir}",
        err=True,
    )


def _facts(outdir: Path, incidents: list[Incident]) -> Iterator[Record]:
    """What the store keeps of this replay's facts, read back from its JSON lines: every event
    (OT/IT transactions, ARP, weirds: the enterprise feeds' ``/events``) and the flows the
    incidents cite (flows are the bulk; ``flows.jsonl`` keeps them all)."""
    want = {u for i in incidents for u in i.flow_uids}
    yield from _read_records(outdir / "events.jsonl")
    for rec in _read_records(outdir / "flows.jsonl"):
        if getattr(rec, "uid", None) in want:
            yield rec


def _read_records(path: Path) -> Iterator[Record]:
    """Records back from a replay's JSON lines (by their schema id)."""
    kinds = {k.schema_id(): k for k in RECORD_TYPES}
    with path.open("rb") as fh:
        for line in fh:
            data = orjson.loads(line)
            kind = kinds.get(data.get("schema"))
            if kind is not None:
                yield kind.from_dict(data)


__all__ = ["LabelError", "replay_command"]
