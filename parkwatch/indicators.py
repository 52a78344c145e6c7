"""The defended-attack ratio (AII park indicator 10): defended attacks / all attacks.

Counted over attack incidents with a verdict; incidents without one (``defended`` is None) are
reported beside the ratio as ``unknown`` and never counted as either; incidents an operator marked
``false_positive`` were no attack and are left out. Reported park-wide and per enterprise,
category and period (UTC day by default). Shared by the correlator's reports and the console.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from parkwatch.schema import Incident

DAY = 86_400 * 1_000_000_000
NS = 1_000_000_000


def _cell() -> dict[str, int]:
    return {"attacks": 0, "defended": 0, "succeeded": 0, "unknown": 0}


def _finish(c: dict[str, int]) -> dict[str, Any]:
    known = c["defended"] + c["succeeded"]
    return {**c, "ratio": round(c["defended"] / known, 4) if known else None}


def defended_ratio(incidents: Iterable[Incident], period_ns: int = DAY) -> dict[str, Any]:
    """Park-wide, per enterprise, per category and per period counts and ratios."""
    total = _cell()
    by: dict[str, dict[str, dict[str, int]]] = {"enterprise": {}, "category": {}, "period": {}}
    for inc in incidents:
        if inc.status == "false_positive":
            continue
        verdict = "unknown" if inc.defended is None else "defended" if inc.defended else "succeeded"
        start = inc.first_seen - inc.first_seen % period_ns
        period = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start // 1_000_000_000))
        keys = {
            "enterprise": list(inc.enterprises) or ["(none)"],
            "category": [inc.category],
            "period": [period],
        }
        for cell in [total] + [by[g].setdefault(k, _cell()) for g, ks in keys.items() for k in ks]:
            cell["attacks"] += 1
            cell[verdict] += 1
    return {
        "park": _finish(total),
        **{g: {k: _finish(v) for k, v in sorted(cells.items())} for g, cells in by.items()},
    }


def _spread(values: list[int]) -> dict[str, Any]:
    if not values:
        return {"count": 0, "median_s": None, "mean_s": None, "p90_s": None}
    v = sorted(values)
    return {
        "count": len(v),
        "median_s": round(v[len(v) // 2] / NS, 3),
        "mean_s": round(sum(v) / len(v) / NS, 3),
        "p90_s": round(v[min(len(v) - 1, int(0.9 * len(v)))] / NS, 3),
    }


def indicators(incidents: list[Incident]) -> dict[str, Any]:
    """Indicator 10 (defended ratio) and 13 (response speed: first alert to acknowledgement
    and to resolution; incidents never acknowledged and still open counted apart)."""
    ack = [i.acknowledged_at - i.first_seen for i in incidents if i.acknowledged_at is not None]
    res = [i.resolved_at - i.first_seen for i in incidents if i.resolved_at is not None]
    return {
        "incidents": len(incidents),
        "indicator_10_defended_ratio": defended_ratio(incidents),
        "indicator_13_response_speed": {
            "to_acknowledge": _spread(ack),
            "to_resolve": _spread(res),
            "never_acknowledged": sum(
                1 for i in incidents if i.acknowledged_at is None and i.resolved_at is None
            ),
            "open": sum(1 for i in incidents if i.status in ("open", "acknowledged")),
        },
    }
