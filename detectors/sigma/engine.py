"""The in-stream Sigma engine: records in, :class:`~parkwatch.schema.Alert` out.

``SigmaEngine(load_pack("rules"), topology).process(kind, record)`` takes a record's
``to_dict()`` and its log-source category (:data:`~detectors.sigma.loader.KINDS`). An
``OtEvent``'s ``attrs`` keys are merged into the top level (core fields win on a name clash),
flows and events get the topology fields of :mod:`detectors.enrich`, then the record meets only
the precompiled rules of its kind. A base rule emits one alert per matching record unless a
correlation rule references it (Sigma: ``generate: false``, the default); its hits then feed
the correlations (:mod:`detectors.sigma.correlation`). Call :meth:`SigmaEngine.flush` at the
end of input to close tumbling windows.

Records without a readable event time (``end`` for flows, ``ts`` otherwise; RFC 3339 text or
integer nanoseconds) are counted in ``stats['bad_time']`` and raise no alert.
"""

from __future__ import annotations

import calendar
import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sigma.correlations import SigmaCorrelationRule

from detectors.enrich import Enricher
from detectors.sigma.compile import Node, compile_kind, explain, rule_node
from detectors.sigma.correlation import NS, Correlator, Fired, Hit
from detectors.sigma.loader import KINDS, RuleError, RuleMeta, RulePack
from detectors.sigma.modifiers import UnsupportedValue
from parkwatch.errors import ParkWatchError
from parkwatch.schema import Alert, CorrelationHit, SchemaError, format_ts, parse_ts
from parkwatch.topology import Topology, default_topology

EVIDENCE_KEYS = (
    "conn_state",
    "history",
    "orig_payload_bytes",
    "resp_payload_bytes",
    "exception_code",
    "function_code",
    "function_name",
    "direction",
    "op",
    "sender_mac",
    "frame",
    "login",
    "login_success",
    "auth_success",
    "outcome",
    "reply_code",
    "status",
)
"""Record fields copied into an alert's ``evidence`` when present (login outcome attrs too)."""

MAX_LISTED = 256  # attackers/targets/uids listed per correlation alert


CORRELATION_MODES = ("local", "publish")
"""``local``: :meth:`SigmaEngine.process` counts the correlations itself; ``publish``: it hands
their hits out instead (:meth:`SigmaEngine.take_hits`), for the engine that counts them
(:meth:`SigmaEngine.correlate`, in any mode)."""


class EngineError(ParkWatchError):
    """A caller error: unknown record kind."""

    hint = f"kind must be one of {', '.join(KINDS)}"


@dataclass
class _Base:
    meta: RuleMeta
    node: Node
    output: bool
    feeds: list[tuple[Correlator, str, RuleMeta]] = field(default_factory=list)


@dataclass
class _Corr:
    meta: RuleMeta
    state: Correlator
    bases: list[RuleMeta]
    last_sweep: int = 0


def _default_sides(kind: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (("sender_ip",), ("target_ip",)) if kind == "arp" else (("src_ip",), ("dst_ip",))


_sec: dict[str, int] = {}


def event_time(kind: str, rec: dict[str, Any]) -> int | None:
    """Event time in ns: ``end`` for flows, ``ts`` otherwise (None when unreadable)."""
    v = rec.get("end" if kind == "flow" else "ts")
    if v.__class__ is int:
        return v
    if not isinstance(v, str):
        return None
    head = v[:19]
    sec = _sec.get(head)
    if sec is None:
        try:
            sec = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            sec = -1
        if len(_sec) > 65536:
            _sec.clear()
        _sec[head] = sec
    tail = v[19:]
    if (
        sec >= 0
        and tail.endswith("Z")
        and (tail == "Z" or (tail[0] == "." and tail[1:-1].isdigit()))
    ):
        return sec * NS + (int(tail[1:-1].ljust(9, "0")[:9]) if len(tail) > 1 else 0)
    try:
        return parse_ts(v)
    except SchemaError:
        return None


class SigmaEngine:
    """Evaluates a rule pack over records of every kind (see the module doc)."""

    def __init__(
        self,
        pack: RulePack,
        topology: Topology | None = None,
        *,
        max_groups: int = 100_000,
        correlations: str = "local",
    ):
        if correlations not in CORRELATION_MODES:
            raise EngineError(f"unknown correlations mode {correlations!r}")
        self.mode = correlations
        self.hits: list[CorrelationHit] = []  # "publish" mode: hits not yet taken
        self.enricher = Enricher(topology or default_topology())
        self.stats: Counter[str] = Counter()
        self.bases: list[_Base] = []
        self.corrs: list[_Corr] = []
        fed_by: dict[int, list[tuple[Correlator, str, RuleMeta]]] = {}
        silent: set[int] = set()
        for crule, cmeta in pack.correlations:
            state = Correlator(crule, max_groups=max_groups)
            bases: list[RuleMeta] = []
            for ref in crule.referenced_rules:
                target = ref.rule
                if isinstance(target, SigmaCorrelationRule):
                    raise RuleError(
                        "a correlation of correlations is not supported in-stream",
                        file=cmeta.source,
                    )
                feeds = fed_by.setdefault(id(target), [])
                if all(f[0] is not state or f[1] != ref.reference for f in feeds):
                    feeds.append((state, ref.reference, cmeta))
                if not crule.generate:
                    silent.add(id(target))
            self.corrs.append(_Corr(cmeta, state, bases))
        self._corr_of = {id(c.state): c for c in self.corrs}
        self._by_rule = {c.meta.id: c for c in self.corrs}
        by_kind: dict[str, list[tuple[int, Node]]] = {}
        for rule, meta in pack.rules:
            try:
                node = rule_node(rule)
            except (UnsupportedValue, ValueError) as exc:
                raise RuleError(
                    f"cannot compile rule {meta.title!r}: {exc}", file=meta.source
                ) from None
            base = _Base(meta, node, id(rule) not in silent, fed_by.get(id(rule), []))
            for state, _, _ in base.feeds:
                self._corr_of[id(state)].bases.append(meta)
            by_kind.setdefault(meta.kind or "", []).append((len(self.bases), node))
            self.bases.append(base)
        self.kinds = {k: compile_kind(nodes) for k, nodes in by_kind.items()}

    def process(self, kind: str, record: dict[str, Any]) -> list[Alert]:
        """Alerts raised by one record of ``kind`` (its ``to_dict()``)."""
        match = self.kinds.get(kind)
        self.stats["records"] += 1
        if match is None:
            if kind not in KINDS:
                raise EngineError(f"unknown record kind {kind!r}")
            return []
        rec = dict(record)
        attrs = rec.pop("attrs", None)
        if attrs.__class__ is dict:
            rec = {**attrs, **rec}
        if kind != "arp":
            self.enricher.enrich(rec)
        hits = match(rec)
        if not hits:
            return []
        ts = event_time(kind, rec)
        if ts is None:
            self.stats["bad_time"] += 1
            return []
        self.stats["matches"] += len(hits)
        out: list[Alert] = []
        for i in hits:
            base = self.bases[i]
            if base.output:
                out.append(self._alert(base, kind, rec, ts))
            for state, ref_name, cmeta in base.feeds:
                hit = self._hit(kind, rec, ts, base.meta, cmeta)
                if self.mode == "publish":
                    self.hits.append(
                        _published(cmeta.id, ref_name, state.key_of(ref_name, rec), hit)
                    )
                else:
                    key, value = state.key_of(ref_name, rec)
                    out.extend(self._count(self._corr_of[id(state)], ref_name, key, value, hit))
        self.stats["alerts"] += len(out)
        return out

    def correlate(self, hit: CorrelationHit) -> list[Alert]:
        """Alerts of the correlation that counts ``hit`` (published by another member in
        ``publish`` mode); a hit of a rule this pack does not have is counted and dropped."""
        corr = self._by_rule.get(hit.rule_id)
        if corr is None:
            self.stats["unknown_correlation"] += 1
            return []
        h = Hit(hit.ts, hit.source_uid, hit.flow_uids, hit.event_uids, hit.attackers,
                hit.targets, hit.enterprises, hit.vantage, hit.evidence)  # fmt: skip
        value = None if hit.value is None else _frozen(hit.value)
        out = self._count(corr, hit.reference, _frozen(hit.group), value, h)
        self.stats["alerts"] += len(out)
        return out

    def take_hits(self) -> list[CorrelationHit]:
        """``publish`` mode: the hits made since the last call, for the hits topic."""
        out, self.hits = self.hits, []
        self.stats["hits_published"] += len(out)
        return out

    def _count(
        self, corr: _Corr, ref: str, key: tuple[Any, ...], value: Any, hit: Hit
    ) -> list[Alert]:
        state, out = corr.state, []
        fired = state.feed(ref, key, value, hit)
        if fired is not None:
            out.append(self._corr_alert(corr, fired))
        if hit.ts - corr.last_sweep >= max(state.span // 4, NS):
            corr.last_sweep = hit.ts
            out.extend(self._corr_alert(corr, f) for f in state.expire(state.watermark))
        return out

    def flush(self) -> list[Alert]:
        """End of input: close open tumbling windows (``lt``/``eq``… conditions)."""
        out = [self._corr_alert(c, f) for c in self.corrs for f in c.state.flush()]
        self.stats["alerts"] += len(out)
        return out

    def counters(self) -> dict[str, int]:
        """Engine counters plus late hits and evicted groups over all correlations."""
        c = dict(self.stats)
        c["late"] = sum(x.state.late for x in self.corrs)
        c["evicted_groups"] = sum(x.state.evicted for x in self.corrs)
        return c

    # -- alerts --------------------------------------------------------------------------

    def _sides(self, kind: str, rec: dict[str, Any], meta: RuleMeta, over: RuleMeta | None = None):  # type: ignore[no-untyped-def]
        att, tgt = _default_sides(kind)
        att = (over and over.attackers) or meta.attackers or att
        tgt = (over and over.targets) or meta.targets or tgt
        return _values(rec, att), _values(rec, tgt)

    def _hit(self, kind: str, rec: dict[str, Any], ts: int, meta: RuleMeta, cmeta: RuleMeta) -> Hit:
        attackers, targets = self._sides(kind, rec, meta, cmeta)
        uid = rec.get("uid")
        flows: tuple[str, ...]
        events: tuple[str, ...]
        if kind == "flow":
            flows, events = (uid,) if uid else (), ()
        else:
            fu = rec.get("flow_uid")
            flows, events = ((fu,) if fu else ()), ((uid,) if uid else ())
        if not uid:
            who = f"{rec.get('sender_mac', '')}:{rec.get('sender_ip', '')}"
            uid = f"{kind}:{ts}:{who}:{rec.get('frame')}"
        ents = tuple(
            dict.fromkeys(e for e in (rec.get("src_enterprise"), rec.get("dst_enterprise")) if e)
        )
        ev = {k: rec[k] for k in EVIDENCE_KEYS if rec.get(k) is not None}
        return Hit(ts, uid, flows, events, attackers, targets, ents, rec.get("vantage"), ev)

    def _alert(self, base: _Base, kind: str, rec: dict[str, Any], ts: int) -> Alert:
        m = base.meta
        hit = self._hit(kind, rec, ts, m, m)
        return Alert(
            uid=_uid(m.id, [hit.uid], ts),
            ts=ts,
            detector="sigma",
            rule_id=m.id,
            title=m.title,
            level=m.level,
            category=m.category,
            techniques=m.techniques,
            tactics=m.tactics,
            attackers=hit.attackers,
            targets=hit.targets,
            vantage=hit.vantage,
            flow_uids=hit.flow_uids,
            event_uids=hit.event_uids,
            enterprises=hit.enterprises,
            reason=f"{m.title}: " + "; ".join(explain(base.node, rec)),
            evidence=hit.evidence,
        )

    def _corr_alert(self, corr: _Corr, f: Fired) -> Alert:
        m, hits = corr.meta, f.hits
        first_base = corr.bases[0] if corr.bases else m

        def union(attr: str) -> tuple[str, ...]:
            return tuple(dict.fromkeys(x for h in hits for x in getattr(h, attr)))[:MAX_LISTED]

        evidence: dict[str, Any] = {
            "count": f.count,
            "window_s": corr.state.span // NS,
            "group": f.group,
            "first": format_ts(f.first),
            "last": format_ts(f.last),
        }
        for k in EVIDENCE_KEYS:
            seen = sorted({str(h.evidence[k]) for h in hits if k in h.evidence})
            if seen:
                evidence[k] = seen[:20]
        group = ", ".join(f"{k}={v}" for k, v in f.group.items()) or "all records"
        names = ", ".join(repr(b.title) for b in corr.bases) or "its rules"
        reason = (
            f"{m.title}: {corr.state.describe()} over {names} grouped by {group}: "
            f"{f.count} within {corr.state.span // NS}s window "
            f"({format_ts(f.first)} .. {format_ts(f.last)})"
        )
        return Alert(
            uid=_uid(m.id, [h.uid for h in hits], f.last),
            ts=f.last,
            detector="sigma",
            rule_id=m.id,
            title=m.title,
            level=m.level,
            category=m.category or first_base.category,
            techniques=m.techniques
            or tuple(dict.fromkeys(t for b in corr.bases for t in b.techniques)),
            tactics=m.tactics or tuple(dict.fromkeys(t for b in corr.bases for t in b.tactics)),
            attackers=union("attackers"),
            targets=union("targets"),
            vantage=hits[-1].vantage if hits else None,
            flow_uids=union("flow_uids"),
            event_uids=union("event_uids"),
            enterprises=union("enterprises"),
            reason=reason,
            evidence=evidence,
        )


def _published(rule_id: str, ref: str, kv: tuple[tuple[Any, ...], Any], h: Hit) -> CorrelationHit:
    return CorrelationHit(
        CorrelationHit.make_uid(rule_id, ref, h.uid), h.ts, rule_id, ref, kv[0], kv[1], h.uid,
        h.flow_uids, h.event_uids, h.attackers, h.targets, h.enterprises, h.vantage, h.evidence,
    )  # fmt: skip


def _frozen(values: Any) -> tuple[Any, ...]:
    """Group or counted values as they were before JSON (lists back to tuples: hashable)."""
    return tuple(_frozen(v) if isinstance(v, list | tuple) else v for v in values)


def _values(rec: dict[str, Any], fields: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for f in fields:
        v = rec.get(f)
        if isinstance(v, str) and v and v not in out:
            out.append(v)
    return tuple(out)


def _uid(rule_id: str, uids: list[str], ts: int) -> str:
    h = hashlib.sha256(f"{rule_id}|{ts}|{'|'.join(uids)}".encode()).hexdigest()
    return f"sig-{h[:24]}"
