"""Console pages: the incident queue, one incident with its triage forms, the dashboard, the
asset inventory, replay results and the audit log.

Every page needs a login. Enterprise users only ever see their enterprise (``User.scope``):
the queue, dashboard and inventory are queried with it, and an incident outside it is a 404
like a missing one. Triage is for operators only (403 otherwise); each triage form posts the
session's CSRF token, checked before any write, and a refused step (e.g. acknowledging a
resolved incident) shows the page again with the reason (409). Replays are for operators and
auditors, the audit log too (read-only for auditors).
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from parkwatch.console import charts, views
from parkwatch.console.app import TEMPLATES
from parkwatch.console.deps import CurrentLogin, Login, OperatorLogin, Store, check_csrf, sees
from parkwatch.errors import StoreError
from parkwatch.schema import CATEGORIES, LEVELS, Incident, format_ts
from parkwatch.store import accounts, results, workflow
from parkwatch.store.sqlite import SqliteStore

router = APIRouter(include_in_schema=False)
Text = Annotated[str, Form(max_length=8000)]
Token = Annotated[str, Form(max_length=128)]


def _ts(value: Any) -> str:
    """Jinja filter ``ts``: ns since the epoch (or RFC 3339 text) as RFC 3339, '—' for None."""
    if value is None or value == "":
        return "—"
    if isinstance(value, int):
        return format_ts(value)
    return str(value)


def _pct(value: Any) -> str:
    """Jinja filter ``pct``: a ratio in [0, 1] as a percentage, '—' for None."""
    return "—" if value is None else f"{float(value) * 100:.1f}%"


TEMPLATES.env.filters["ts"] = _ts
TEMPLATES.env.filters["pct"] = _pct


def _page(
    request: Request, who: Login, name: str, ctx: dict[str, Any], status: int = 200
) -> Response:
    resp = TEMPLATES.TemplateResponse(request, name, {**ctx, "who": who}, status_code=status)
    resp.headers["Cache-Control"] = "no-store"  # pages carry incident data: keep no copies
    return resp


def _error(request: Request, who: Login, status: int, message: str) -> Response:
    return _page(request, who, "error.html", {"message": message}, status)


@router.get("/")
def index() -> RedirectResponse:
    return RedirectResponse("/incidents", status_code=303)


# queue ---------------------------------------------------------------------------------------


@router.get("/incidents")
def incident_queue(
    request: Request, st: Store, who: CurrentLogin,
    enterprise: str = "", severity: str = "", category: str = "", status: str = "",
    attacker: str = "", since: str = "", until: str = "", sort: str = "last_seen",
    order: str = "desc",
) -> Response:
    scope = who.user.scope
    f = views.QueueFilter(
        enterprise=scope or enterprise[:64] or None, severity=severity or None,
        category=category or None, status=status or None, attacker=attacker[:64] or None,
        since=since[:64] or None, until=until[:64] or None, sort=sort or "last_seen",
        order=order or "desc",
    )
    data = views.queue(st, scope, f)

    def link(**change: str | None) -> str:
        return "/incidents?" + urlencode(f.params(**change))

    def sort_link(key: str) -> str:
        flip = "asc" if f.sort == key and f.order == "desc" else "desc"
        return link(sort=key, order=flip)

    return _page(request, who, "incidents.html", {
        **data, "f": f, "link": link, "sort_link": sort_link,
        "enterprises": views.enterprises(st, scope), "levels": list(reversed(LEVELS)),
        "categories": CATEGORIES, "statuses": views.STATUSES, "sorts": views.SORTS,
    }, 400 if f.errors else 200)


# one incident and its triage -----------------------------------------------------------------


def _visible(st: SqliteStore, who: Login, iid: str) -> Incident | None:
    if who.user.scope is not None:  # their cut of an incident shared with another enterprise
        return st.incident(iid, who.user.scope)
    inc = st.incident(iid)
    return inc if inc is not None and sees(who.user, inc.enterprises) else None


def _incident_page(
    request: Request, st: SqliteStore, who: Login, inc: Incident, error: str = "",
    status: int = 200,
) -> Response:
    ops = [u.name for u in accounts.users(st) if u.role == "operator"]
    detail = views.incident_detail(st, inc, who.user.scope)
    camp = detail["campaign"]
    visible = [i for cid in (camp or {}).get("incidents", ()) if (i := _visible(st, who, cid))]
    siblings = [i.id for i in visible]
    if camp and who.user.scope is not None:  # a campaign told only through what they may see
        detail["campaign"] = camp = {
            **camp, "incidents": siblings,
            "enterprises": sorted({e for i in visible for e in i.enterprises}),
            "first_seen": format_ts(min(i.first_seen for i in visible)),
            "last_seen": format_ts(max(i.last_seen for i in visible)),
        }
    return _page(request, who, "incident.html", {
        "inc": inc, **detail, "siblings": siblings, "error": error, "operators": ops,
    }, status)


@router.get("/incidents/{iid}")
def incident_page(request: Request, st: Store, who: CurrentLogin, iid: str) -> Response:
    inc = _visible(st, who, iid)
    if inc is None:
        return _error(request, who, 404, "No such incident (or not one you may see).")
    return _incident_page(request, st, who, inc)


def _triage(request: Request, st: SqliteStore, who: Login, iid: str, csrf: str,
            step: str, **form: str) -> Response:
    check_csrf(request, who, csrf)
    inc = _visible(st, who, iid)
    if inc is None:
        return _error(request, who, 404, "No such incident.")
    actor = who.user.name
    try:
        if step == "ack":
            workflow.acknowledge(st, iid, actor)
        elif step == "assign":
            workflow.assign(st, iid, actor, form["assignee"].strip()[:64])
        elif step == "comment":
            workflow.comment(st, iid, actor, form["text"])
        elif step == "resolve":
            workflow.resolve(st, iid, actor, note=form["note"].strip())
        else:
            workflow.false_positive(st, iid, actor, form["reason"])
    except StoreError as exc:
        fresh = _visible(st, who, iid) or inc
        return _incident_page(request, st, who, fresh, exc.message, 409)
    return RedirectResponse(f"/incidents/{quote(iid, safe='')}", status_code=303)


@router.post("/incidents/{iid}/ack")
def ack(request: Request, st: Store, who: OperatorLogin, iid: str, csrf: Token = "") -> Response:
    return _triage(request, st, who, iid, csrf, "ack")


@router.post("/incidents/{iid}/assign")
def assign(
    request: Request, st: Store, who: OperatorLogin, iid: str, csrf: Token = "",
    assignee: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    return _triage(request, st, who, iid, csrf, "assign", assignee=assignee)


@router.post("/incidents/{iid}/comment")
def comment(
    request: Request, st: Store, who: OperatorLogin, iid: str, csrf: Token = "", text: Text = ""
) -> Response:
    return _triage(request, st, who, iid, csrf, "comment", text=text)


@router.post("/incidents/{iid}/resolve")
def resolve(
    request: Request, st: Store, who: OperatorLogin, iid: str, csrf: Token = "", note: Text = ""
) -> Response:
    return _triage(request, st, who, iid, csrf, "resolve", note=note)


@router.post("/incidents/{iid}/false-positive")
def false_positive(
    request: Request, st: Store, who: OperatorLogin, iid: str, csrf: Token = "",
    reason: Text = "",
) -> Response:
    return _triage(request, st, who, iid, csrf, "false-positive", reason=reason)


# dashboard, assets, replays, audit -----------------------------------------------------------


def _short_period(label: str, period: str) -> str:
    """'2025-11-21T04:00:00Z' as '11-21 04:00' (hours) or '2025-11-21' (days, weeks)."""
    return f"{label[5:10]} {label[11:16]}" if period == "hour" else label[:10]


@router.get("/dashboard")
def dashboard(request: Request, st: Store, who: CurrentLogin, period: str = "auto") -> Response:
    scope = who.user.scope
    incs = st.incidents(enterprise=scope)
    try:
        pname, pns = views.pick_period(incs, period[:16])
    except views.FilterError as exc:
        return _error(request, who, 400, str(exc))
    labels, per_ent = views.ratio_series(incs, scope, pns)
    line = charts.line_chart(
        "Defended-attack ratio per enterprise and " + pname,
        [_short_period(p, pname) for p in labels],
        {e: [s["period"].get(p, {}).get("ratio") for p in labels] for e, s in per_ent.items()},
    )
    by_cat = sorted(Counter(i.category for i in incs).items(), key=lambda kv: -kv[1])
    sev = Counter(i.severity for i in incs)
    by_sev = [(lvl, sev.get(lvl, 0)) for lvl in reversed(LEVELS)]
    inventory = results.assets(st, enterprise=scope)
    return _page(request, who, "dashboard.html", {
        "period": pname, "periods": ["auto", *views.PERIODS], "labels": labels,
        "per_ent": per_ent, "line": line, "incident_total": len(incs),
        "by_cat": by_cat, "cat_chart": charts.bar_chart("Incidents by category", by_cat),
        "by_sev": by_sev,
        "sev_chart": charts.bar_chart("Incidents by severity", by_sev, charts.SEVERITY_FILL),
        "attackers": views.top_attackers(incs),
        "critical": views.critical_commands(st, scope, incs),
        "assets": views.asset_summary(inventory),
    })


@router.get("/assets")
def assets(request: Request, st: Store, who: CurrentLogin, role: str = "") -> Response:
    inventory = results.assets(st, enterprise=who.user.scope)
    roles = sorted({r for a in inventory for r in (a.get("roles") or ())})
    if role:
        inventory = [a for a in inventory if role in (a.get("roles") or ())]
    return _page(request, who, "assets.html", {
        "assets": inventory, "roles": roles, "role": role[:64],
    })


@router.get("/replays")
def replays(request: Request, st: Store, who: CurrentLogin) -> Response:
    if who.user.scope is not None:
        return _error(request, who, 403, "Replay results are for operators and auditors.")
    return _page(request, who, "replays.html", {"replays": results.replays(st)})


@router.get("/audit")
def audit(
    request: Request, st: Store, who: CurrentLogin, actor: str = "", action: str = "",
    target: str = "",
) -> Response:
    if who.user.scope is not None:
        return _error(request, who, 403, "The audit log is for operators and auditors.")
    entries = workflow.audit_log(st, target=target or None, limit=1000, actor=actor or None,
                                 action=action or None)
    return _page(request, who, "audit.html", {
        "entries": entries, "actor": actor[:64], "action": action[:64], "target": target[:128],
        "suppressions": workflow.suppressions(st, active_only=False),
    })
