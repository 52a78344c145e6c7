"""Auditor replay: captures (with labels) in, the whole pipeline in capture time, a scorecard out.

Each capture is replayed on its own (fresh flow table, detectors and correlator: a test set
must not leak state into the next) through collectors -> protocol decoders -> detection ->
correlation, in-process and in capture time. Outputs in ``OUT``: ``flows.jsonl``,
``events.jsonl`` (OT/IT events, ARP events, weirds), ``alerts.jsonl``, ``incidents.jsonl``,
``campaigns.jsonl``, ``scorecard.json``, ``report.html`` and ``manifest.json``.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from correlator.incidents import Campaign, Correlator
from correlator.labels import (
    LabelError,
    Labels,
    check_capture,
    label_path_for,
    load_labels,
    sha256_of,
)
from correlator.scoring import Score, score
from correlator.suppress import Suppressions
from parkwatch import __version__
from parkwatch.config import Settings
from parkwatch.errors import CaptureError
from parkwatch.indicators import defended_ratio
from parkwatch.schema import Alert, FlowRecord, Incident, Record
from parkwatch.schema.columns import Columns
from parkwatch.stages import load_stage
from parkwatch.topology import Topology

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz", ".cap")


def find_captures(paths: Iterable[str | Path]) -> list[Path]:
    """Capture files named, and every capture under named directories (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.name.endswith(CAPTURE_SUFFIXES)
            )
            if not found:
                raise CaptureError("no capture files in this directory", file=str(p))
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise CaptureError("no such capture file", file=str(p))
    return out


def labels_for(capture: Path, labels: Path | None) -> Labels | None:
    """The label file of ``capture``: from ``--labels`` (a file or a directory), else beside it."""
    candidates: list[Path] = []
    if labels is not None and labels.is_file():
        lab = load_labels(labels)
        return (
            lab
            if lab.capture.resolve() == capture.resolve() or lab.capture.name == capture.name
            else None
        )
    if labels is not None and labels.is_dir():
        candidates += sorted(labels.rglob(label_path_for(capture).name))
    candidates.append(label_path_for(capture))
    for c in candidates:
        if c.is_file():
            return load_labels(c)
    return None


@dataclass
class CaptureResult:
    """What one capture's replay produced."""

    capture: Path
    sha256: str
    labels: Labels | None
    first_ns: int | None = None
    last_ns: int | None = None
    packets: int = 0
    flows: int = 0
    events: int = 0
    weirds: int = 0
    alerts: list[Alert] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    campaigns: list[Campaign] = field(default_factory=list)
    score: Score | None = None

    @property
    def duration_ns(self) -> int:
        if self.first_ns is None or self.last_ns is None:
            return 0
        return self.last_ns - self.first_ns


class Writers:
    """The JSON-lines outputs of a replay."""

    NAMES = ("flows", "events", "alerts", "incidents", "campaigns")

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.fh: dict[str, IO[bytes]] = {n: (out / f"{n}.jsonl").open("wb") for n in self.NAMES}

    def write(self, name: str, rec: Record | dict[str, Any]) -> None:
        data = rec if isinstance(rec, dict) else rec.to_dict()
        self.fh[name].write(orjson.dumps(data) + b"\n")

    def close(self) -> None:
        for fh in self.fh.values():
            fh.close()


def replay_capture(
    capture: Path,
    labels: Labels | None,
    settings: Settings,
    topology: Topology,
    writers: Writers | None,
    *,
    rules: Path | None = None,
    model: Path | None = None,
    learn_for_ns: int | None = None,
    suppressions: Suppressions | None = None,
    progress: Callable[[int, int], None] | None = None,
    observe: Callable[[Record], None] | None = None,
) -> CaptureResult:
    """Replay one capture through the whole pipeline (``observe`` also sees every fact)."""
    digest = sha256_of(capture)
    if labels is not None:
        check_capture(labels, capture)
    res = CaptureResult(capture, digest, labels)
    pipe = load_stage("collect")(settings, topology, apps="all")
    stage = load_stage("detect")(topology, rules, model, learn_for_ns)
    corr = Correlator(topology, suppressions=suppressions, source=capture.name)

    def seen(ts: int) -> None:
        if res.first_ns is None or ts < res.first_ns:
            res.first_ns = ts
        if res.last_ns is None or ts > res.last_ns:
            res.last_ns = ts

    def fact(rec: Record) -> None:
        if observe is not None:
            observe(rec)
        alerts = stage.process(rec)
        if alerts:
            corr.add(alerts)
            res.alerts.extend(alerts)
        corr.observe(rec)

    def emit(rec: Record) -> None:
        ts = getattr(rec, "ts", None)
        if isinstance(ts, int) and rec.SCHEMA != "parkwatch.weird":
            seen(ts)
        if rec.SCHEMA == "parkwatch.weird":
            res.weirds += 1
        else:
            res.events += 1
        if writers is not None:
            writers.write("events", rec)
        fact(rec)

    def flows(cols: Columns[FlowRecord]) -> None:
        if writers is not None:
            writers.fh["flows"].write(cols.jsonl())
        for rec in cols.records():
            seen(rec.start)
            seen(rec.end)
            res.flows += 1
            fact(rec)

    stats = pipe.run([str(capture)], emit, flows, progress=progress)
    res.packets = stats.packets
    tail = stage.flush()
    corr.add(tail)
    res.alerts.extend(tail)
    incidents = corr.incidents()
    res.campaigns, res.incidents = corr.campaigns(incidents)
    if writers is not None:
        for a in sorted(res.alerts, key=lambda a: (a.ts, a.uid)):
            writers.write("alerts", a)
        for inc in res.incidents:
            writers.write("incidents", inc)
        for c in res.campaigns:
            writers.write("campaigns", c.to_dict())
    if labels is not None:
        res.score = score(labels.attacks, res.incidents, res.duration_ns, capture.name)
    return res


def scorecard(results: list[CaptureResult]) -> dict[str, Any]:
    """Per capture and total metrics (shared/LABELS.md) and the defended ratio."""
    total = Score()
    per: dict[str, Any] = {}
    for r in results:
        entry: dict[str, Any] = {
            "sha256": r.sha256,
            "labels": str(r.labels.path) if r.labels else None,
            "packets": r.packets,
            "flows": r.flows,
            "events": r.events,
            "weirds": r.weirds,
            "alerts": len(r.alerts),
            "incidents": len(r.incidents),
        }
        if r.score is not None:
            entry["score"] = r.score.as_dict()
            total.add(r.score)
        per[str(r.capture)] = entry
    incidents = [i for r in results for i in r.incidents]
    return {
        "format": "parkwatch-scorecard/1",
        "tool_version": __version__,
        "labelled_captures": sum(1 for r in results if r.score is not None),
        "captures": per,
        "total": total.as_dict(),
        "defended_ratio": defended_ratio(incidents),
    }


def manifest(
    results: list[CaptureResult],
    rules: Path | None,
    model: Path | None,
    topology_path: Path | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """What produced the scorecard: sha256 of every input, and the tool versions."""
    rule_root = rules or load_stage("rules")
    rule_files = sorted(p for p in rule_root.rglob("*") if p.suffix in (".yml", ".yaml"))
    doc: dict[str, Any] = {
        "format": "parkwatch-manifest/1",
        "tool": {"parkwatch": __version__, "python": platform.python_version()},
        "captures": {str(r.capture): r.sha256 for r in results},
        "labels": {str(r.labels.path): sha256_of(r.labels.path) for r in results if r.labels},
        "rules": {str(p): sha256_of(p) for p in rule_files},
        "model": {str(model): sha256_of(model)} if model else {},
        "topology": {str(topology_path): sha256_of(topology_path)} if topology_path else {},
        "options": options,
        "decoders": load_stage("decoders")(),
    }
    for lib in ("numpy", "pysigma", "scikit-learn", "scapy"):
        try:
            from importlib.metadata import version

            doc["tool"][lib] = version(lib)
        except Exception:
            continue
    return doc


__all__ = [
    "CaptureResult",
    "LabelError",
    "Writers",
    "find_captures",
    "labels_for",
    "manifest",
    "replay_capture",
    "scorecard",
]
