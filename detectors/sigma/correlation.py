"""Sigma correlation rules over sliding windows in event time, with bounded memory.

Event time is the record's ``ts`` (events, ARP) or ``end`` (flows: a flow record is emitted
when it ends). Records arrive roughly in time order; a group's window is measured back from
the newest time seen in that group, so modest disorder inside the timespan is harmless. A hit
older than the engine's watermark (newest time seen by this correlation) minus the timespan is
dropped and counted as ``late``.

Types (pySigma ``SigmaCorrelationType``):

``event_count``
    number of hits of the referenced rules per group within ``timespan``;
``value_count``
    number of distinct values of ``condition.field`` per group within ``timespan``;
``temporal``
    the referenced rules all hit (or the condition's count of them, or the extended boolean
    condition holds) within ``timespan`` per group;
``temporal_ordered``
    the referenced rules hit in the listed order within ``timespan`` per group.

Conditions ``gt``/``gte`` are tested at every hit (sliding window). ``lt``/``lte``/``eq``/
``neq`` can only be decided when a window closes, so they use tumbling windows per group that
start at the group's first hit and close ``timespan`` later (on a later hit, on the sweep of
expired groups, or on :meth:`Correlator.flush`).

De-duplication: a sliding-window group fires when its condition becomes true and is then muted
until the condition is false again (the group's count fell below the threshold as hits
expired, or the group expired); a long scan therefore gives one alert, a scan that pauses for
longer than the timespan and restarts gives another. A ``temporal`` group is also re-armed once
every hit of its last firing has left the window (a second write long after the first fires
again even when the condition never turned false in between). ``temporal_ordered`` restarts
its chain after firing; a tumbling window fires at most once.

Memory: per group at most threshold+1 hits (events, or distinct values with their latest hit)
are kept, at most ``max_groups`` groups (least recently hit dropped first, counted), and
groups whose window has passed are removed by :meth:`Correlator.expire`.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from sigma.correlations import (
    CorrelationConditionAND,
    CorrelationConditionNOT,
    CorrelationConditionOR,
    SigmaCorrelationCondition,
    SigmaCorrelationConditionOperator,
    SigmaCorrelationRule,
    SigmaCorrelationType,
    SigmaExtendedCorrelationCondition,
    SigmaRuleReference,
)

from detectors.sigma.loader import RuleError

Op = SigmaCorrelationConditionOperator
_STREAM_OPS = {Op.GT, Op.GTE}
_OP_TEXT = {Op.LT: "<", Op.LTE: "<=", Op.GT: ">", Op.GTE: ">=", Op.EQ: "==", Op.NEQ: "!="}
NS = 1_000_000_000


@dataclass(slots=True)
class Hit:
    """One record matched by a referenced rule, reduced to what an alert needs."""

    ts: int
    uid: str
    flow_uids: tuple[str, ...]
    event_uids: tuple[str, ...]
    attackers: tuple[str, ...]
    targets: tuple[str, ...]
    enterprises: tuple[str, ...]
    vantage: str | None
    evidence: dict[str, Any]


@dataclass
class Fired:
    """A correlation whose condition held: the group, its count and the hits in the window."""

    group: dict[str, Any]
    count: int
    hits: list[Hit]
    first: int
    last: int
    condition: str


@dataclass
class _Group:
    newest: int = 0
    start: int = 0
    count: int = 0
    armed: bool = True
    fired_ts: int = 0  # newest hit time of the last firing
    events: deque[Hit] = field(default_factory=deque)
    values: OrderedDict[Any, Hit] = field(default_factory=OrderedDict)
    latest: dict[int, Hit] = field(default_factory=dict)
    chain: dict[int, tuple[int, list[Hit]]] = field(default_factory=dict)


def _holds(op: Op, n: int, c: int) -> bool:
    return {
        Op.LT: n < c,
        Op.LTE: n <= c,
        Op.GT: n > c,
        Op.GTE: n >= c,
        Op.EQ: n == c,
        Op.NEQ: n != c,
    }[op]


class Correlator:
    """State of one correlation rule (``positions``: its rule references, in order)."""

    def __init__(self, rule: SigmaCorrelationRule, max_groups: int = 100_000):
        self.rule = rule
        self.type = rule.type
        self.span = rule.timespan.seconds * NS
        self.group_by = list(rule.group_by or [])
        self.max_groups = max_groups
        self.groups: OrderedDict[tuple[Any, ...], _Group] = OrderedDict()
        self.watermark = 0
        self.late = 0
        self.evicted = 0
        self.extended: Any = None
        cond = rule.condition
        if isinstance(cond, SigmaExtendedCorrelationCondition):
            self.extended = cond.parsed
            self.op, self.count, self.value_field = Op.GTE, 1, None
        elif isinstance(cond, SigmaCorrelationCondition):
            self.op, self.count = cond.op, cond.count
            self.value_field = cond.fieldref
        else:  # pragma: no cover - pySigma always sets one
            raise RuleError("correlation without condition", file=_where(rule))
        supported = {
            SigmaCorrelationType.EVENT_COUNT,
            SigmaCorrelationType.VALUE_COUNT,
            SigmaCorrelationType.TEMPORAL,
            SigmaCorrelationType.TEMPORAL_ORDERED,
        }
        if self.type not in supported:
            raise RuleError(
                f"correlation type {self.type} is not supported in-stream", file=_where(rule)
            )
        temporal = self.type in (
            SigmaCorrelationType.TEMPORAL,
            SigmaCorrelationType.TEMPORAL_ORDERED,
        )
        self.streaming = temporal or self.op in _STREAM_OPS
        self.cap = self.count + 1
        self.positions = [r.reference for r in rule.referenced_rules]
        self.aliases: dict[str, dict[str, str]] = {}
        for alias in rule.aliases:
            self.aliases[alias.alias] = {ref.reference: f for ref, f in alias.mapping.items()}

    def describe(self) -> str:
        t = self.type.name.lower()
        if self.extended is not None:
            return f"{t} ({self.rule.condition.expression})"  # type: ignore[union-attr]
        what = f" of {self.value_field}" if self.value_field else ""
        return f"{t}{what} {_OP_TEXT[self.op]} {self.count}"

    def _field(self, name: str, ref_name: str) -> str:
        return self.aliases.get(name, {}).get(ref_name, name)

    def key_of(self, ref_name: str, rec: dict[str, Any]) -> tuple[tuple[Any, ...], Any]:
        """The group key of ``rec`` and, for ``value_count``, its counted values (a tuple
        holding None: the record lacks a counted field and does not count)."""
        key = tuple(rec.get(self._field(f, ref_name)) for f in self.group_by)
        value = None
        if self.type is SigmaCorrelationType.VALUE_COUNT:
            vf = self.value_field
            fields = vf if isinstance(vf, list) else [vf or ""]
            value = tuple(rec.get(self._field(f, ref_name)) for f in fields)
        return key, value

    def feed(self, ref_name: str, key: tuple[Any, ...], value: Any, hit: Hit) -> Fired | None:
        """Add a hit of the rule referenced as ``ref_name``, with the group key and value
        :meth:`key_of` took from the record it matched (in this process, or in another that
        published it as a :class:`~parkwatch.schema.CorrelationHit`)."""
        ts = hit.ts
        if ts > self.watermark:
            self.watermark = ts
        elif ts < self.watermark - self.span:
            self.late += 1
            return None
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Group(newest=ts, start=ts)
            if len(self.groups) > self.max_groups:
                self.groups.popitem(last=False)
                self.evicted += 1
        else:
            self.groups.move_to_end(key)
        fired = None
        if not self.streaming and ts >= group.start + self.span:
            fired = self._close(key, group)
            group = self.groups[key] = _Group(newest=ts, start=ts)
        if ts > group.newest:
            group.newest = ts
        if value is not None and None in value:
            return fired
        return self._add(key, group, ref_name, hit, value) or fired

    def _add(self, key: tuple[Any, ...], g: _Group, ref: str, hit: Hit, value: Any) -> Fired | None:
        low = g.newest - self.span
        t = self.type
        if t is SigmaCorrelationType.TEMPORAL_ORDERED:
            return self._ordered(key, g, ref, hit, low)
        if t is SigmaCorrelationType.TEMPORAL:
            for i, name in enumerate(self.positions):
                if name == ref:
                    g.latest[i] = hit
            present = {self.positions[i] for i, h in g.latest.items() if h.ts > low}
            hits = sorted((h for h in g.latest.values() if h.ts > low), key=lambda h: h.ts)
            if self.extended is not None:
                ok = _eval(self.extended, present)
            else:
                ok = _holds(self.op, len(present), self.count)
            if not g.armed and g.fired_ts <= low:  # what fired last time has expired
                g.armed = True
            return self._arm(key, g, ok, len(present), hits)
        if t is SigmaCorrelationType.EVENT_COUNT:
            g.count += 1
            if self.streaming:
                g.events.append(hit)
                while g.events and (g.events[0].ts <= low or len(g.events) > self.cap):
                    g.events.popleft()
                n = len(g.events)
                return self._arm(key, g, _holds(self.op, n, self.count), n, list(g.events))
            if len(g.events) < self.cap:
                g.events.append(hit)
            return None
        g.values[value] = hit  # VALUE_COUNT
        g.values.move_to_end(value)
        if self.streaming:
            while g.values and (
                next(iter(g.values.values())).ts <= low or len(g.values) > self.cap
            ):
                g.values.popitem(last=False)
        elif len(g.values) > self.cap:
            g.values.popitem(last=False)
        if not self.streaming:
            return None
        n = len(g.values)
        return self._arm(key, g, _holds(self.op, n, self.count), n, list(g.values.values()))

    def _arm(
        self, key: tuple[Any, ...], g: _Group, ok: bool, n: int, hits: list[Hit]
    ) -> Fired | None:
        if not ok:
            g.armed = True
            return None
        if not g.armed:
            return None
        g.armed = False
        g.fired_ts = max((h.ts for h in hits), default=g.newest)
        return self._fired(key, n, hits)

    def _ordered(
        self, key: tuple[Any, ...], g: _Group, ref: str, hit: Hit, low: int
    ) -> Fired | None:
        last = len(self.positions) - 1
        for i in range(last, -1, -1):  # descending: one record advances a chain one step
            if self.positions[i] != ref:
                continue
            if i == 0:
                g.chain[0] = (hit.ts, [hit])
                continue
            prev = g.chain.get(i - 1)
            if prev is None or prev[0] <= low or prev[1][-1].ts > hit.ts:
                continue
            g.chain[i] = (prev[0], [*prev[1], hit])
            if i == last:
                hits = g.chain[i][1]
                g.chain.clear()
                return self._fired(key, len(hits), hits)
        return None

    def _fired(self, key: tuple[Any, ...], n: int, hits: list[Hit]) -> Fired:
        group = dict(zip(self.group_by, key, strict=True))
        first = min(h.ts for h in hits)
        last = max(h.ts for h in hits)
        return Fired(group, n, hits, first, last, self.describe())

    def _close(self, key: tuple[Any, ...], g: _Group) -> Fired | None:
        n = g.count if self.type is SigmaCorrelationType.EVENT_COUNT else len(g.values)
        if not _holds(self.op, n, self.count):
            return None
        hits = (
            list(g.events)
            if self.type is SigmaCorrelationType.EVENT_COUNT
            else list(g.values.values())
        )
        return self._fired(key, n, hits) if hits else None

    def expire(self, now: int) -> list[Fired]:
        """Drop groups whose window ended before ``now``; tumbling windows close (may fire)."""
        out: list[Fired] = []
        for key in [
            k
            for k, g in self.groups.items()
            if (g.newest if self.streaming else g.start) + self.span <= now
        ]:
            g = self.groups.pop(key)
            if not self.streaming:
                f = self._close(key, g)
                if f is not None:
                    out.append(f)
        return out

    def flush(self) -> list[Fired]:
        """Close every open tumbling window (end of input) and forget all state."""
        out = [f for k, g in self.groups.items() if not self.streaming and (f := self._close(k, g))]
        self.groups.clear()
        return out


def _eval(node: Any, present: set[str]) -> bool:
    if isinstance(node, SigmaRuleReference):
        return node.reference in present
    if isinstance(node, CorrelationConditionAND):
        return all(_eval(a, present) for a in node.args)
    if isinstance(node, CorrelationConditionOR):
        return any(_eval(a, present) for a in node.args)
    if isinstance(node, CorrelationConditionNOT):
        return not _eval(node.args[0], present)
    raise RuleError(f"unsupported correlation condition item {type(node).__name__}")


def _where(rule: SigmaCorrelationRule) -> str | None:
    return str(rule.source.path) if rule.source and rule.source.path else None
