"""The indicator report page and data exports.

* ``GET /report`` — park security indicators 10 (defended-attack ratio park-wide and per
  enterprise, category and day, unknown verdicts beside it) and 13 (response speed), the same
  numbers as ``parkwatch report``, for a period. Every role may read it; an enterprise user
  gets their enterprise's figures only.
* ``GET /export/{incidents,alerts,events}.jsonl`` — the records as JSON lines, a download.
  An enterprise user exports only records involving their enterprise (the same store links
  the API and the pages use); operators and auditors may pass ``enterprise=`` to narrow.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from parkwatch.console.app import TEMPLATES
from parkwatch.console.deps import CurrentLogin, Store
from parkwatch.console.views import FilterError, parse_time
from parkwatch.indicators import indicators
from parkwatch.schema import Record
from parkwatch.store.sqlite import SqliteStore

router = APIRouter(include_in_schema=False)
KINDS = ("incidents", "alerts", "events")


def _scope(who: CurrentLogin, enterprise: str) -> str | None:
    return who.user.scope or (enterprise[:64] or None)


@router.get("/report")
def report(
    request: Request, st: Store, who: CurrentLogin, since: str = "", until: str = "",
    enterprise: str = "",
) -> Response:
    scope = _scope(who, enterprise)
    try:
        lo, hi = parse_time(since), parse_time(until, end=True)
    except FilterError as exc:
        return TEMPLATES.TemplateResponse(
            request, "error.html", {"message": str(exc), "who": who}, status_code=400
        )
    rep = indicators(st.incidents(lo, hi, scope))
    if who.user.scope is not None:  # shared incidents also count for the other side: not shown
        cells = rep["indicator_10_defended_ratio"]["enterprise"]
        rep["indicator_10_defended_ratio"]["enterprise"] = {
            k: v for k, v in cells.items() if k == who.user.scope
        }
    resp = TEMPLATES.TemplateResponse(request, "report.html", {
        "who": who, "rep": rep, "since": since[:40], "until": until[:40], "scope": scope,
        "enterprise": enterprise[:64],
    })
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _records(st: SqliteStore, kind: str, scope: str | None) -> list[Record]:
    if kind == "incidents":
        return list(st.incidents(enterprise=scope))
    if kind == "alerts":
        return list(st.alerts(enterprise=scope))
    return st.events(enterprise=scope)


@router.get("/export/{kind}.jsonl")
def export(st: Store, who: CurrentLogin, kind: str, enterprise: str = "") -> Response:
    if kind not in KINDS:
        return Response("unknown export; incidents, alerts or events\n", 404,
                        media_type="text/plain")
    scope = _scope(who, enterprise)
    recs = _records(st, kind, scope)

    def lines() -> Iterator[bytes]:
        for r in recs:
            yield r.to_json() + b"\n"

    label = re.sub(r"[^A-Za-z0-9._-]", "_", scope or "park")  # no quotes or CRLF in a header
    name = f"parkwatch-{kind}-{label}.jsonl"
    return StreamingResponse(lines(), media_type="application/x-ndjson", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store",
    })
