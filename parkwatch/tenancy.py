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
from typing import Any

from parkwatch.schema import Alert, Incident
from parkwatch.schema.alerts import alert_fields


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
    if not own:
        empty: dict[str, Any] = dict.fromkeys(("techniques", "attackers", "targets",
            "alert_uids", "flow_uids", "event_uids", "tactics", "vantages"), ())  # fmt: skip
        return replace(inc, **empty, enterprises=(enterprise,), alert_count=0, title="",
                       last_seen=inc.first_seen)  # fmt: skip
    fields = alert_fields(own)
    fields["enterprises"] = tuple(sorted({*fields["enterprises"], enterprise}))
    tactics = {t for a in own for t in a.tactics}
    return replace(
        inc, **fields, tactics=tuple(t for t in inc.tactics if t in tactics),
        vantages=tuple(sorted({a.vantage for a in own if a.vantage})),
    )  # fmt: skip
