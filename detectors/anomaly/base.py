"""The anomaly-detector interface, threshold policies, alerts from scores, and learn-then-score.

A detector is river-like: ``learn(x)`` updates it with one record, ``score(x)`` returns how
anomalous ``x`` is, **higher = more anomalous, always in [0, 1]** (each detector documents
what its scale means). ``x`` is a record dict as ``Record.to_dict()`` makes it
(``FlowRecord`` for kind ``"flow"``, ``OtEvent`` for kind ``"ot_event"``); a detector names
the kinds it consumes in ``kinds``.

Deciding whether a score is an alert is not the detector's business: a :class:`ThresholdPolicy`
(:class:`FixedThreshold`, :class:`QuantileThreshold` of training scores) does that, and
:func:`make_alert` turns (record, assessment, policy) into a :class:`parkwatch.schema.Alert`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from parkwatch.durations import parse_duration as parse_duration
from parkwatch.errors import ConfigError
from parkwatch.schema import LEVELS, Alert, parse_ts

RecordDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Assessment:
    """What a detector thinks of one record: the score and everything an alert needs."""

    score: float
    reason: str = ""
    rule_id: str = "normal"
    title: str = ""
    level: str = "low"
    techniques: tuple[str, ...] = ()
    tactics: tuple[str, ...] = ()
    category: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Detector(Protocol):
    """The interface every registered anomaly detector implements."""

    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]  # record kinds consumed: "flow", "ot_event"

    def learn(self, x: RecordDict) -> None: ...

    def assess(self, x: RecordDict) -> Assessment: ...

    def assess_many(self, xs: Sequence[RecordDict]) -> list[Assessment]: ...

    def score(self, x: RecordDict) -> float: ...

    def explain(self, x: RecordDict) -> str: ...

    def training_scores(self) -> list[float]: ...


def record_kind(x: RecordDict) -> str:
    """``"flow"``, ``"ot_event"``, … from the record's ``schema`` id (``parkwatch.flow/1``)."""
    schema = str(x.get("schema", ""))
    return schema.partition("/")[0].removeprefix("parkwatch.")


def record_time(x: RecordDict) -> int:
    """Capture time of a record in ns: ``start`` of a flow, ``ts`` of an event."""
    value = x.get("start", x.get("ts")) if record_kind(x) == "flow" else x.get("ts")
    if value is None:
        value = x.get("ts", x.get("start"))
    if isinstance(value, str):
        return parse_ts(value)
    if isinstance(value, int):
        return value
    raise ConfigError(f"record has no time ('start' or 'ts'): {sorted(x)[:8]}", field="ts")


# -- threshold policies --------------------------------------------------------------------


class ThresholdPolicy:
    """Decides which scores are alerts and at which level. Apart from scoring, by design."""

    threshold: float = 0.5

    def fit(self, scores: Iterable[float]) -> ThresholdPolicy:
        return self

    def is_alert(self, score: float) -> bool:
        """Strictly above the threshold (a detector's 0 for "nothing new" never alerts)."""
        return score > self.threshold

    def describe(self) -> dict[str, Any]:
        return {"policy": type(self).__name__, "threshold": self.threshold}


@dataclass
class FixedThreshold(ThresholdPolicy):
    """Alert when ``score > threshold``."""

    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold {self.threshold} is outside [0, 1]", field="threshold")


@dataclass
class QuantileThreshold(ThresholdPolicy):
    """Alert when ``score`` exceeds the ``q`` quantile of the training scores (times
    ``margin``, capped at 1), e.g. q=0.99: about 1 % of training-like records would alert."""

    q: float = 0.99
    margin: float = 1.0
    threshold: float = 1.0
    fitted: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.q <= 1.0:
            raise ConfigError(f"quantile {self.q} is outside (0, 1]", field="q")

    def fit(self, scores: Iterable[float]) -> QuantileThreshold:
        vals = sorted(float(s) for s in scores)
        if not vals:
            raise ConfigError("a quantile threshold needs training scores; none were given")
        pos = self.q * (len(vals) - 1)  # linear interpolation, as numpy's default
        lo = math.floor(pos)
        hi = min(lo + 1, len(vals) - 1)
        value = vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)
        self.threshold = min(1.0, value * self.margin)
        self.fitted = True
        return self

    def is_alert(self, score: float) -> bool:
        if not self.fitted:
            raise ConfigError("quantile threshold used before fit() on training scores")
        return score > self.threshold

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "q": self.q, "margin": self.margin}


# -- alerts --------------------------------------------------------------------------------


def alert_uid(detector: str, rule_id: str, record_uid: str) -> str:
    """Deterministic alert id: same detector, rule and record give the same id."""
    digest = hashlib.sha256(f"{detector}\0{rule_id}\0{record_uid}".encode()).hexdigest()
    return "al-" + digest[:20]


def make_alert(
    detector: str, x: RecordDict, assessment: Assessment, policy: ThresholdPolicy
) -> Alert | None:
    """An :class:`Alert` for ``x`` if ``policy`` says its score is one, else None.

    Attackers are the flow's originator or the event's requester (``src_ip``, or ``dst_ip`` of
    a response), targets the other side; evidence carries the assessment's facts plus the
    threshold crossed.
    """
    if not policy.is_alert(assessment.score):
        return None
    kind = record_kind(x)
    uid = str(x.get("uid", ""))
    if kind == "flow":
        flow_uids: tuple[str, ...] = (uid,) if uid else ()
        event_uids: tuple[str, ...] = ()
    else:
        flow_uids = (str(x["flow_uid"]),) if x.get("flow_uid") else ()
        event_uids = (uid,) if uid else ()
    enterprises = tuple(
        sorted({e for e in (x.get("src_enterprise"), x.get("dst_enterprise")) if e})
    )
    # the requester is the actor: a response's receiver asked for it
    actor, acted = (
        ("dst_ip", "src_ip") if x.get("direction") == "response" else ("src_ip", "dst_ip")
    )
    level = assessment.level if assessment.level in LEVELS else "low"
    evidence = {**assessment.evidence, "threshold": round(policy.threshold, 6)}
    return Alert(
        uid=alert_uid(detector, assessment.rule_id, uid or str(record_time(x))),
        ts=record_time(x),
        detector=detector,
        rule_id=assessment.rule_id,
        title=assessment.title or f"{detector}: {assessment.rule_id}",
        level=level,
        category=assessment.category,
        techniques=assessment.techniques,
        tactics=assessment.tactics,
        attackers=(str(x[actor]),) if x.get(actor) else (),
        targets=(str(x[acted]),) if x.get(acted) else (),
        vantage=x.get("vantage"),
        flow_uids=flow_uids,
        event_uids=event_uids,
        reason=assessment.reason,
        enterprises=enterprises,
        score=round(float(assessment.score), 6),
        evidence=evidence,
    )


# -- durations and learn-then-score --------------------------------------------------------

# parse_duration lives in parkwatch.durations (shared by every stage); re-exported here.


class LearnThenScore:
    """``--learn-for DURATION``: learn from records whose time is before ``first + learn_ns``
    (``first`` = time of the first record seen), score every later one.

    ``process(x)`` returns None while learning and the :class:`Assessment` once scoring;
    ``alert(x)`` returns an Alert or None. The policy is fitted on the detector's training
    scores when scoring starts (a :class:`QuantileThreshold` needs it; fixed ones ignore it).
    """

    def __init__(
        self,
        detector: Detector,
        learn_ns: int,
        policy: ThresholdPolicy | None = None,
        kinds: Sequence[str] | None = None,
    ) -> None:
        if learn_ns <= 0:
            raise ConfigError("learn duration must be positive", field="learn_for")
        self.detector = detector
        self.learn_ns = learn_ns
        self.policy = policy if policy is not None else FixedThreshold(0.5)
        self.kinds = tuple(kinds) if kinds is not None else tuple(detector.kinds)
        self.first_ts: int | None = None
        self.learned = 0
        self.scored = 0
        self._policy_ready = False

    def accepts(self, x: RecordDict) -> bool:
        return record_kind(x) in self.kinds

    def process(self, x: RecordDict) -> Assessment | None:
        return self.process_many([x])[0]

    def process_many(self, xs: Sequence[RecordDict]) -> list[Assessment | None]:
        """:meth:`process` for a batch, same results, with scoring done in batches between
        learned records (the flow model scores a batch in one forest call)."""
        out: list[Assessment | None] = [None] * len(xs)
        pending: list[int] = []
        for i, x in enumerate(xs):
            if not self.accepts(x):
                continue
            t = record_time(x)
            if self.first_ts is None:
                self.first_ts = t
            if t < self.first_ts + self.learn_ns:
                self._score(xs, pending, out)
                self.detector.learn(x)
                self.learned += 1
                self._policy_ready = False
            else:
                pending.append(i)
        self._score(xs, pending, out)
        return out

    def _score(
        self, xs: Sequence[RecordDict], pending: list[int], out: list[Assessment | None]
    ) -> None:
        if not pending:
            return
        if not self._policy_ready:
            scores = self.detector.training_scores()
            if scores or not isinstance(self.policy, QuantileThreshold):
                self.policy.fit(scores)
            self._policy_ready = True
        for i, a in zip(pending, self.detector.assess_many([xs[i] for i in pending]), strict=True):
            out[i] = a
        self.scored += len(pending)
        pending.clear()

    def alert(self, x: RecordDict) -> Alert | None:
        return self.alerts_many([x])[0]

    def alerts_many(self, xs: Sequence[RecordDict]) -> list[Alert | None]:
        """One Alert or None per record, aligned with ``xs``."""
        return [
            None if a is None else make_alert(self.detector.name, x, a, self.policy)
            for x, a in zip(xs, self.process_many(xs), strict=True)
        ]
