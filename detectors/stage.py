"""The detection stage: facts in, alerts out — the Sigma pack plus the anomaly detectors.

``DetectionStage.process(record)`` routes a record to the Sigma engine under its log-source
kind (``flow``, ``arp``, ``weird`` or the event's protocol) and to the anomaly detectors: a
trained model file (``--model``, verified against its model card) and/or baselines learned from
the first part of the input (``--learn-for``). With ``correlations="publish"`` the Sigma
correlations are not counted here: their hits wait in ``sigma.take_hits()`` for the member that
counts them (see :mod:`detectors.detect_cli`). Detectors never parse packets: they see records only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detectors.anomaly import FlowModel, LearnThenScore, OtBaseline, QuantileThreshold
from detectors.anomaly.modelcard import LoadedModel, load_model
from detectors.sigma.engine import SigmaEngine
from detectors.sigma.loader import KINDS, load_pack
from parkwatch.schema import Alert, ArpEvent, FlowRecord, OtEvent, Record, Weird
from parkwatch.topology import Topology

RULES = Path(__file__).resolve().parents[1] / "rules"
"""The rule pack shipped with ParkWatch."""


def kind_of(rec: Record) -> str | None:
    """Log-source category of a record (``weird`` for weirds), None for records no detector
    reads (alerts, incidents, events of protocols without a category)."""
    if isinstance(rec, FlowRecord):
        return "flow"
    if isinstance(rec, ArpEvent):
        return "arp"
    if isinstance(rec, OtEvent) and rec.protocol in KINDS:
        return rec.protocol
    if isinstance(rec, Weird):
        return "weird"
    return None


class DetectionStage:
    """Sigma rules and anomaly detectors over one stream of records."""

    def __init__(
        self,
        topology: Topology,
        rules: str | Path | list[Path] | None = None,
        model: str | Path | None = None,
        learn_for_ns: int | None = None,
        correlations: str = "local",
    ) -> None:
        self.sigma = SigmaEngine(
            load_pack(rules if rules is not None else RULES), topology, correlations=correlations
        )
        self.model: LoadedModel | None = load_model(model) if model else None
        self.learners: list[LearnThenScore] = []
        if learn_for_ns:
            self.learners = [
                LearnThenScore(OtBaseline(), learn_for_ns),
                LearnThenScore(FlowModel(), learn_for_ns, policy=QuantileThreshold(0.999)),
            ]
        self.records = 0
        self._batch: list[dict[str, Any]] = []

    BATCH = 512
    """Records scored together by the anomaly models (a forest call per batch, not per flow)."""

    def process(self, rec: Record) -> list[Alert]:
        """Alerts on ``rec`` (Sigma at once; anomaly alerts when a batch is full)."""
        kind = kind_of(rec)
        if kind is None:
            return []
        self.records += 1
        d = rec.to_dict()
        out = self.sigma.process(kind, d)
        if self.model is not None or self.learners:
            self._batch.append(d)
            if len(self._batch) >= self.BATCH:
                out.extend(self._score())
        return out

    def _score(self) -> list[Alert]:
        batch, self._batch = self._batch, []
        out: list[Alert] = []
        if self.model is not None:
            out.extend(self.model.alerts_many(batch))
        for learner in self.learners:
            out.extend(a for a in learner.alerts_many(batch) if a is not None)
        return out

    def flush(self) -> list[Alert]:
        """End of input: the last anomaly batch and Sigma's open windows."""
        return self._score() + self.sigma.flush()

    def counters(self) -> dict[str, Any]:
        return {"records": self.records, **self.sigma.counters()}
