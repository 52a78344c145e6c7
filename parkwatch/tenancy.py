"""What one enterprise may see of an incident that involves several.

The correlator groups some alerts by attacker alone (a scanner probing two enterprises of the
park, a brute-forcer trying hosts of both): one incident then names the targets, alerts,
flows and events of each. An enterprise user, an enterprise API token and an enterprise feed
get :func:`scope_incident`'s cut of it instead: the same incident id, status and defended
verdict, with every list and count taken from the alerts that involve that enterprise only.

Kept as a whole: ``id`` (so updates upsert), ``category``, ``severity`` (the incident's, the
operator triages it as one), ``defended`` and its evidence text (counts, never addresses),
``campaign`` (an opaque id; campaign pages apply their own scope), the workflow fields and
``source``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from parkwatch.schema import Alert, Incident

MAX_TARGETS, MAX_UIDS = 256, 1000
"""The correlator's own caps on an incident's lists."""


def involves(alert: Alert, enterprise: str) -> bool:
    """True when ``alert`` names ``enterprise`` (attacker or target side)."""
    return enterprise in alert.enterprises


def scope_incident(inc: Incident, alerts: Iterable[Alert], enterprise: str) -> Incident:
    """``inc`` as ``enterprise`` may see it, from the incident's ``alerts``.

    An incident of that enterprise alone comes back unchanged. Otherwise targets, attackers,
    enterprises, techniques, tactics, vantages, times, title, alert, flow and event uids
    and the alert count are those of its alerts that involve ``enterprise``; an enterprise
    with none of them (it is named, but only through facts) sees the incident's shell with
    empty lists.
    """
    if not set(inc.enterprises) - {enterprise}:
        return inc
    own = sorted((a for a in alerts if involves(a, enterprise)), key=lambda a: (a.ts, a.uid))
    techs = {t for a in own for t in a.techniques}
    tactics = {t for a in own for t in a.tactics}
    titles = sorted({a.title for a in own})
    title = ""
    if titles:
        title = titles[0] if len(titles) == 1 else f"{titles[0]} (+{len(titles) - 1} more)"
    return replace(
        inc,
        first_seen=own[0].ts if own else inc.first_seen,
        last_seen=own[-1].ts if own else inc.first_seen,
        techniques=tuple(sorted(techs)),
        attackers=tuple(sorted({x for a in own for x in a.attackers})),
        targets=tuple(sorted({x for a in own for x in a.targets})[:MAX_TARGETS]),
        enterprises=tuple(sorted({e for a in own for e in a.enterprises} | {enterprise})),
        alert_count=len(own),
        alert_uids=tuple(a.uid for a in own[:MAX_UIDS]),
        title=title,
        tactics=tuple(t for t in inc.tactics if t in tactics),
        vantages=tuple(sorted({a.vantage for a in own if a.vantage})),
        flow_uids=tuple(sorted({u for a in own for u in a.flow_uids})[:MAX_UIDS]),
        event_uids=tuple(sorted({u for a in own for u in a.event_uids})[:MAX_UIDS]),
    )
