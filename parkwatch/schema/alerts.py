"""Alerts (a detector's opinion on facts) and incidents (alerts grouped into one attack).

Schemas ``parkwatch.alert/1`` and ``parkwatch.incident/1``. Incident fields follow the auditors'
contract in ``shared/LABELS.md`` (``incidents.jsonl``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from parkwatch.schema.base import Record, doc

CATEGORIES = (
    "recon_scan",
    "ot_recon",
    "brute_force",
    "exploit",
    "c2",
    "lateral_movement",
    "exfiltration",
    "dos",
    "mitm",
    "ot_unauthorized_write",
    "ot_unauthorized_command",
    "ot_replay_injection",
    "policy_violation",
)
"""Closed vocabulary of attack categories (LABELS.md)."""

LEVELS = ("informational", "low", "medium", "high", "critical")
"""Alert levels and incident severities, Sigma's scale."""


@dataclass(slots=True)
class Alert(Record):
    """One detector finding on one or more facts (flows, events)."""

    SCHEMA = "parkwatch.alert"
    VERSION = 1

    uid: str = doc("Stable alert id: the same input gives the same id.")
    ts: int = doc("Capture time of the fact that triggered it (RFC 3339 in JSON).", ts=True)
    detector: str = doc("Detector that raised it: 'sigma', 'ot_baseline', 'flow_model', …")
    rule_id: str = doc("Rule or model id within the detector.")
    title: str = doc("One-line title for an operator.")
    level: str = doc("One of LEVELS.")
    category: str | None = doc(
        "Attack category from CATEGORIES, if the rule states one.", default=None
    )
    techniques: tuple[str, ...] = doc(
        "MITRE ATT&CK (ICS or Enterprise) technique ids.", factory=tuple
    )
    attackers: tuple[str, ...] = doc("IP addresses acting as attacker.", factory=tuple)
    targets: tuple[str, ...] = doc("IP addresses attacked.", factory=tuple)
    vantage: str | None = doc("Vantage point of the facts.", default=None)
    flow_uids: tuple[str, ...] = doc("uids of flows that are evidence.", factory=tuple)
    event_uids: tuple[str, ...] = doc("uids of events that are evidence.", factory=tuple)
    reason: str = doc(
        "Why it fired, spelled out (which fields, which values, which baseline).", default=""
    )
    tactics: tuple[str, ...] = doc(
        "ATT&CK tactics (kill-chain phases) of the techniques, e.g. 'discovery', 'impact'.",
        factory=tuple,
    )
    enterprises: tuple[str, ...] = doc(
        "Enterprise ids of the attacker and target sides (park topology).", factory=tuple
    )
    score: float | None = doc(
        "Anomaly score of a model detector (higher = more anomalous); None for rules.",
        default=None,
    )
    evidence: dict[str, Any] = doc(
        "Facts verdicts rest on, from the triggering records (conn_state, exception_code …).",
        factory=dict,
    )


@dataclass(slots=True)
class Incident(Record):
    """Alerts grouped into one attack: same attacker against the same targets in a window."""

    SCHEMA = "parkwatch.incident"
    VERSION = 1

    id: str = doc("Stable incident id, 'inc-…'.")
    first_seen: int = doc("Time of the first alert (RFC 3339 in JSON).", ts=True)
    last_seen: int = doc("Time of the last alert (RFC 3339 in JSON).", ts=True)
    category: str = doc("Attack category, one of CATEGORIES.")
    severity: str = doc("One of LEVELS.")
    techniques: tuple[str, ...] = doc("ATT&CK technique ids of its alerts.", factory=tuple)
    attackers: tuple[str, ...] = doc("Attacker IPs.", factory=tuple)
    targets: tuple[str, ...] = doc("Target IPs.", factory=tuple)
    enterprises: tuple[str, ...] = doc(
        "Enterprise ids involved (attacker or target side).", factory=tuple
    )
    defended: bool | None = doc(
        "True defended, False succeeded, None not enough evidence.", default=None
    )
    alert_count: int = doc("Number of alerts grouped.", default=0)
    alert_uids: tuple[str, ...] = doc("uids of the grouped alerts.", factory=tuple)
    defended_evidence: str = doc("What the defended verdict rests on.", default="")
    title: str = doc("One-line summary for an operator.", default="")
    tactics: tuple[str, ...] = doc("ATT&CK tactics seen, in kill-chain order.", factory=tuple)
    vantages: tuple[str, ...] = doc("Vantage points whose facts are evidence.", factory=tuple)
    flow_uids: tuple[str, ...] = doc("uids of flows that are evidence.", factory=tuple)
    event_uids: tuple[str, ...] = doc("uids of OT/IT events that are evidence.", factory=tuple)
    campaign: str | None = doc(
        "Park-level campaign id when this incident is part of a multi-enterprise campaign.",
        default=None,
    )
    status: str = doc("'open', 'acknowledged', 'resolved' or 'false_positive' (operator workflow).", default="open")
    acknowledged_at: int | None = doc(
        "When an operator acknowledged it (RFC 3339 in JSON).", ts=True, default=None
    )
    resolved_at: int | None = doc("When it was resolved (RFC 3339 in JSON).", ts=True, default=None)
    source: str | None = doc("Capture the evidence came from (replay), None when live.", default=None)


MAX_TARGETS, MAX_UIDS = 256, 1000
"""Caps on an incident's target and uid lists."""


def alert_fields(alerts: Sequence[Alert]) -> dict[str, Any]:
    """The Incident fields that follow from its ``alerts`` (in time order, at least one):
    times, techniques, attackers, targets, enterprises, count, title and the alert, flow and
    event uids. The correlator builds incidents with it, and an enterprise's part of a shared
    incident is built with it from that enterprise's alerts."""
    titles = sorted({a.title for a in alerts})
    return {
        "first_seen": alerts[0].ts,
        "last_seen": alerts[-1].ts,
        "techniques": tuple(sorted({t for a in alerts for t in a.techniques})),
        "attackers": tuple(sorted({x for a in alerts for x in a.attackers})),
        "targets": tuple(sorted({x for a in alerts for x in a.targets})[:MAX_TARGETS]),
        "enterprises": tuple(sorted({e for a in alerts for e in a.enterprises})),
        "alert_count": len(alerts),
        "alert_uids": tuple(a.uid for a in alerts[:MAX_UIDS]),
        "title": titles[0] if len(titles) == 1 else f"{titles[0]} (+{len(titles) - 1} more)",
        "flow_uids": tuple(sorted({u for a in alerts for u in a.flow_uids})[:MAX_UIDS]),
        "event_uids": tuple(sorted({u for a in alerts for u in a.event_uids})[:MAX_UIDS]),
    }
