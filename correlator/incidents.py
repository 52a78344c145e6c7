"""Alerts in, incidents out: grouping, kill-chain severity, defended verdicts, campaigns.

Grouping: alerts are taken in time order (ties by uid, so the same input gives the same
incidents with the same ids). An alert joins the open incident with the same attacker, the
same category and — for attacks aimed at one device (writes, commands, exploits, logins) —
the same target and command (function name, else rule), if the incident's last alert is at
most ``window`` earlier; otherwise it opens a new incident. Alerts without attackers are keyed
by their targets.

Severity is the highest alert level, raised one step when the same attacker already reached an
earlier kill-chain stage (reconnaissance -> initial access / exploit -> lateral movement / C2 ->
impact), so an attack that progresses stands out. Suppression rules drop alerts before they
reach an incident (operators' false-positive decisions). Campaigns: one attacker with
incidents against two or more enterprises, or an attacker inside one enterprise attacking
another, become one campaign with an isolation recommendation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from correlator.evidence import EvidenceBook, verdict
from correlator.suppress import Suppressions
from parkwatch.schema import LEVELS, Alert, Incident
from parkwatch.schema.alerts import alert_fields
from parkwatch.topology import Topology

MIN = 60 * 1_000_000_000
STAGE = {
    "recon_scan": 1,
    "ot_recon": 1,
    "policy_violation": 1,
    "brute_force": 2,
    "exploit": 2,
    "c2": 3,
    "lateral_movement": 3,
    "mitm": 3,
    "exfiltration": 4,
    "dos": 4,
    "ot_unauthorized_write": 4,
    "ot_unauthorized_command": 4,
    "ot_replay_injection": 4,
}
"""Kill-chain stage of each category (1 recon … 4 impact)."""
TARGETED = {
    "ot_unauthorized_write",
    "ot_unauthorized_command",
    "ot_replay_injection",
    "exploit",
    "brute_force",
    "lateral_movement",
}
TACTIC_ORDER = [
    "reconnaissance",
    "discovery",
    "collection",
    "initial-access",
    "execution",
    "persistence",
    "privilege-escalation",
    "defense-evasion",
    "evasion",
    "credential-access",
    "lateral-movement",
    "command-and-control",
    "inhibit-response-function",
    "impair-process-control",
    "exfiltration",
    "impact",
]


@dataclass
class _Open:
    key: tuple[str, ...]
    alerts: list[Alert] = field(default_factory=list)

    @property
    def last(self) -> int:
        return self.alerts[-1].ts


@dataclass
class Campaign:
    """One attacker across enterprises: the park-level view."""

    id: str
    attacker: str
    enterprises: tuple[str, ...]
    incidents: tuple[str, ...]
    first_seen: int
    last_seen: int
    recommendation: str

    def to_dict(self) -> dict[str, Any]:
        from parkwatch.schema import format_ts

        return {
            "id": self.id,
            "attacker": self.attacker,
            "enterprises": list(self.enterprises),
            "incidents": list(self.incidents),
            "first_seen": format_ts(self.first_seen),
            "last_seen": format_ts(self.last_seen),
            "recommendation": self.recommendation,
        }


def _category(a: Alert) -> str:
    return a.category or "policy_violation"


def _hid(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]


class Correlator:
    """Streaming correlator for one park (or one replayed capture)."""

    def __init__(
        self,
        topology: Topology,
        window_ns: int = 30 * MIN,
        suppressions: Suppressions | None = None,
        source: str | None = None,
    ) -> None:
        self.topology = topology
        self.window = window_ns
        self.suppress = suppressions or Suppressions([])
        self.book = EvidenceBook()
        self.source = source
        self._pending: list[Alert] = []
        self.suppressed = 0

    def observe(self, rec: Any) -> None:
        """Every fact (flow, event) after detection: evidence for verdicts."""
        self.book.observe(rec)

    def add(self, alerts: Iterable[Alert]) -> None:
        for a in alerts:
            if self.suppress.matches(a):
                self.suppressed += 1
                continue
            self.book.watch(a)
            self._pending.append(a)

    def pending(self) -> list[Alert]:
        """The alerts held in memory (added, not suppressed, not forgotten)."""
        return list(self._pending)

    def forget_before(self, ts: int) -> None:
        """Drop alerts older than ``ts`` from memory (a long-running correlator's bound)."""
        self._pending = [a for a in self._pending if a.ts >= ts]

    def incidents(self) -> list[Incident]:
        """Group every alert added so far (deterministic: sorted by time, then uid).

        Alerts without a category (anomaly findings) corroborate: they join an incident of
        the same attacker within the window; alone, only high/critical ones open an incident
        (as ``policy_violation``) — the rest stay alerts, stored but not raised.
        """
        alerts = sorted(self._pending, key=lambda a: (a.ts, a.uid))
        open_: dict[tuple[str, ...], _Open] = {}
        done: list[_Open] = []
        loose: list[Alert] = []
        for a in alerts:
            if a.category is None:
                loose.append(a)
                continue
            key = self._key(a)
            cur = open_.get(key)
            if cur is not None and a.ts - cur.last <= self.window:
                cur.alerts.append(a)
                continue
            if cur is not None:
                done.append(cur)
            open_[key] = _Open(key, [a])
        done.extend(open_.values())
        self.uncorroborated = 0
        extra: list[_Open] = []
        for a in loose:
            home = self._corroborates(a, done)
            if home is not None:
                home.alerts.append(a)
                home.alerts.sort(key=lambda x: (x.ts, x.uid))
            elif a.level in ("high", "critical"):
                extra.append(_Open(self._key(a), [a]))
            else:
                self.uncorroborated += 1
        incs = [self._incident(g) for g in done + extra]
        incs.sort(key=lambda i: (i.first_seen, i.id))
        return self._kill_chain(incs)

    @staticmethod
    def _key(a: Alert) -> tuple[str, ...]:
        cat = _category(a)
        if not a.attackers:
            return ("?", cat, ",".join(sorted(a.targets)))
        if cat not in TARGETED:
            return (sorted(a.attackers)[0], cat, "*")
        tgt = sorted(a.targets)
        # one incident per command/write kind against one device: a refused PLC stop and an
        # accepted restart of the same RTU are two findings with two verdicts; two rules that
        # fire on the same command share its function name and so its incident
        fn = a.evidence.get("function_name")
        kind = ",".join(sorted(map(str, fn))) if isinstance(fn, list | tuple) else fn
        return (sorted(a.attackers)[0], cat, tgt[0] if tgt else "*", str(kind or a.rule_id))

    def _corroborates(self, a: Alert, groups: list[_Open]) -> _Open | None:
        """The earliest incident group of one of ``a``'s attackers around ``a``'s time."""
        who = set(a.attackers)
        for g in groups:
            if g.key[0] in who and g.alerts[0].ts - self.window <= a.ts <= g.last + self.window:
                return g
        return None

    def _incident(self, g: _Open) -> Incident:
        alerts = g.alerts
        cat = g.key[1]
        tactics = {t for a in alerts for t in a.tactics}
        tac = tuple(
            sorted(tactics, key=lambda t: (TACTIC_ORDER.index(t) if t in TACTIC_ORDER else 99, t))
        )
        level = max(
            (a.level for a in alerts), key=lambda lv: LEVELS.index(lv) if lv in LEVELS else 0
        )
        facts = self.book.facts(alerts)
        defended, why = verdict(cat, facts)
        fields = alert_fields(alerts)
        if defended is None:
            targets = sorted({x for a in alerts for x in a.targets})  # all, not the capped list
            defended, why = self._vantage_verdict(targets, facts.vantages, defended, why)
        return Incident(
            id="inc-" + _hid(cat, g.key[0], g.key[2], alerts[0].uid),
            category=cat,
            severity=level,
            defended=defended,
            defended_evidence=why,
            tactics=tac,
            vantages=tuple(sorted(facts.vantages)),
            source=self.source,
            **fields,
        )

    def _vantage_verdict(
        self, targets: list[str], vantages: set[str], defended: bool | None, why: str
    ) -> tuple[bool | None, str]:
        """Seen at the park boundary, never at the watching target-enterprise boundary."""
        topo = self.topology
        if not vantages:
            return defended, why
        kinds = {topo.vantage(v).watches for v in vantages}
        if kinds != {"park_boundary"}:
            return defended, why
        ents = {topo.lookup(t).enterprise for t in targets} - {None}
        watching = {
            v
            for v in self.book.vantages_seen
            if topo.vantage(v).watches == "enterprise_boundary"
            and topo.vantage(v).enterprise in ents
        }
        if watching:
            return True, (
                f"seen at the park boundary but never at {', '.join(sorted(watching))} "
                "(blocked in between)"
            )
        return defended, why

    def _kill_chain(self, incs: list[Incident]) -> list[Incident]:
        """Raise severity one step where the same attacker reached an earlier stage before
        this incident's last alert (the attack progressed)."""
        by: dict[str, list[Incident]] = {}
        for inc in incs:
            for a in inc.attackers:
                by.setdefault(a, []).append(inc)
        out = []
        for inc in incs:
            stage = STAGE.get(inc.category, 1)
            earlier = any(
                STAGE.get(o.category, 1) < stage and o.first_seen <= inc.last_seen
                for a in inc.attackers
                for o in by.get(a, ())
            )
            sev = inc.severity
            if earlier and sev in LEVELS:
                sev = LEVELS[min(LEVELS.index(sev) + 1, len(LEVELS) - 1)]
            out.append(replace(inc, severity=sev) if sev != inc.severity else inc)
        return out

    def campaigns(self, incs: list[Incident]) -> tuple[list[Campaign], list[Incident]]:
        """Attackers reaching two or more enterprises (or crossing from their own into
        another): campaigns, and the incidents with their ``campaign`` set."""
        by: dict[str, list[Incident]] = {}
        for inc in incs:
            for a in inc.attackers:
                by.setdefault(a, []).append(inc)
        camps: list[Campaign] = []
        member: dict[str, str] = {}
        for attacker, group in sorted(by.items()):
            home = self.topology.lookup(attacker).enterprise
            ents = sorted({e for i in group for e in i.enterprises if e})
            victims = [e for e in ents if e != home]
            if len(ents) < 2 and not (home and victims):
                continue
            cid = "camp-" + _hid(attacker, *sorted(i.id for i in group))
            if home and victims:
                rec = (
                    f"isolate {attacker} (inside {home}): cut the conduits from {home} to "
                    f"{', '.join(victims)} at the park boundary until it is cleaned"
                )
            else:
                rec = (
                    f"block {attacker} at the park boundary; cut its access to "
                    f"{', '.join(ents)} and check those enterprises' boundaries"
                )
            camps.append(
                Campaign(
                    cid,
                    attacker,
                    tuple(ents),
                    tuple(i.id for i in group),
                    min(i.first_seen for i in group),
                    max(i.last_seen for i in group),
                    rec,
                )
            )
            for i in group:
                member.setdefault(i.id, cid)
        return camps, [replace(i, campaign=member.get(i.id)) for i in incs]
