"""Scoring a replay against labels, exactly as shared/LABELS.md defines it.

- An incident *matches* an attack when their time spans overlap, each widened by 60 s, and —
  where the attack lists attackers or targets — the incident names at least one of those
  addresses (IPs or CIDRs) among its attackers or targets.
- attack recall = matched attacks / attacks; category recall counts only matches with the same
  category; incident precision = incidents matching some attack / incidents; false incidents
  per hour = unmatched incidents / capture hours; time to detect = first alert time of the
  earliest matching incident - attack start (clipped at 0); defended-ratio check = for attacks
  labelled succeeded/defended, the share whose matching incident's verdict agrees (*the*
  matching incident: same category first, then naming the attack's targets, then overlapping
  its window unwidened, then the earliest — see :func:`best`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from correlator.labels import Attack
from parkwatch.schema import CATEGORIES, Incident

WIDEN_NS = 60 * 1_000_000_000
NS_PER_H = 3600 * 1_000_000_000


def _nets(addrs: Iterable[str]) -> list[Any]:
    out = []
    for a in addrs:
        try:
            out.append(ipaddress.ip_network(a, strict=False))
        except ValueError:
            continue
    return out


def matches(inc: Incident, att: Attack) -> bool:
    if inc.first_seen - WIDEN_NS > att.end + WIDEN_NS:
        return False
    if att.start - WIDEN_NS > inc.last_seen + WIDEN_NS:
        return False
    if not att.attackers and not att.targets:
        return True
    nets = _nets((*att.attackers, *att.targets))
    for addr in (*inc.attackers, *inc.targets):
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            continue
        if any(ip.version == n.version and ip in n for n in nets):
            return True
    return False


@dataclass
class Score:
    """Counts for one capture (or a total); ratios are derived."""

    attacks: int = 0
    matched: int = 0
    category_matched: int = 0
    incidents: int = 0
    true_incidents: int = 0
    hours: float = 0.0
    ttd_s: list[float] = field(default_factory=list)
    outcome_labelled: int = 0
    outcome_agree: int = 0
    per_category: dict[str, list[int]] = field(
        default_factory=dict
    )  # cat -> [attacks, hit, cat_hit]
    missed: list[str] = field(default_factory=list)

    def add(self, other: Score) -> None:
        for name in ("attacks", "matched", "category_matched", "incidents", "true_incidents"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.hours += other.hours
        self.ttd_s += other.ttd_s
        self.outcome_labelled += other.outcome_labelled
        self.outcome_agree += other.outcome_agree
        for cat, (n, hit, chit) in other.per_category.items():
            row = self.per_category.setdefault(cat, [0, 0, 0])
            row[0] += n
            row[1] += hit
            row[2] += chit
        self.missed += other.missed

    def as_dict(self) -> dict[str, Any]:
        def ratio(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        ttd = sorted(self.ttd_s)
        unmatched = self.incidents - self.true_incidents
        return {
            "attacks": self.attacks,
            "matched_attacks": self.matched,
            "attack_recall": ratio(self.matched, self.attacks),
            "category_recall": ratio(self.category_matched, self.attacks),
            "incidents": self.incidents,
            "true_incidents": self.true_incidents,
            "incident_precision": ratio(self.true_incidents, self.incidents),
            "false_incidents": unmatched,
            "false_incidents_per_hour": round(unmatched / self.hours, 3) if self.hours else None,
            "capture_hours": round(self.hours, 6),
            "time_to_detect_s": {
                "median": ttd[len(ttd) // 2] if ttd else None,
                "mean": round(sum(ttd) / len(ttd), 3) if ttd else None,
                "max": ttd[-1] if ttd else None,
            },
            "defended_ratio_check": {
                "labelled": self.outcome_labelled,
                "agree": self.outcome_agree,
                "ratio": ratio(self.outcome_agree, self.outcome_labelled),
            },
            "per_category": {
                cat: {
                    "attacks": n,
                    "recall": ratio(hit, n),
                    "category_recall": ratio(chit, n),
                }
                for cat, (n, hit, chit) in sorted(self.per_category.items())
                if cat in CATEGORIES
            },
            "missed_attacks": list(self.missed),
        }


def best(found: Sequence[Incident], att: Attack) -> Incident:
    """The matching incident that is *the* attack's: one naming its targets first, then one
    overlapping its window without the 60 s widening, then the earliest."""
    tnets = _nets(att.targets)

    def names_target(i: Incident) -> bool:
        for addr in i.targets:
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                continue
            if any(ip.version == n.version and ip in n for n in tnets):
                return True
        return False

    def overlaps(i: Incident) -> bool:
        return i.first_seen <= att.end and att.start <= i.last_seen

    return min(found, key=lambda i: (not names_target(i), not overlaps(i), i.first_seen, i.id))


def score(
    attacks: Sequence[Attack], incidents: Sequence[Incident], duration_ns: int, name: str = ""
) -> Score:
    """Score one capture's incidents against its attacks."""
    sc = Score(attacks=len(attacks), incidents=len(incidents), hours=duration_ns / NS_PER_H)
    hit_inc: set[str] = set()
    by_time = sorted(incidents, key=lambda i: (i.first_seen, i.id))
    for att in attacks:
        row = sc.per_category.setdefault(att.category, [0, 0, 0])
        row[0] += 1
        found = [i for i in by_time if matches(i, att)]
        hit_inc.update(i.id for i in found)
        if not found:
            sc.missed.append(f"{name}:{att.id}" if name else att.id)
            continue
        sc.matched += 1
        row[1] += 1
        same = [i for i in found if i.category == att.category]
        if same:
            sc.category_matched += 1
            row[2] += 1
        sc.ttd_s.append(max(0.0, (found[0].first_seen - att.start) / 1e9))
        if att.outcome in ("succeeded", "defended"):
            sc.outcome_labelled += 1
            verdict = best(same or found, att).defended
            if verdict is (att.outcome == "defended"):
                sc.outcome_agree += 1
    sc.true_incidents = sum(1 for i in incidents if i.id in hit_inc)
    return sc
