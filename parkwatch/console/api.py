"""The enterprise API (``/api/v1``): an enterprise platform pulls its own incidents, alerts and
events with a bearer token.

* Auth: ``Authorization: Bearer <token>``, a token made by
  ``parkwatch tokens add --enterprise E`` and bound to that one enterprise. A missing,
  malformed, unknown or revoked token gets 401 with ``WWW-Authenticate: Bearer``.
* Tenant isolation: every query is scoped to the token's enterprise in the store (the same
  ``enterprises`` links the console's enterprise users go through); an incident of another
  enterprise answers 404 exactly like one that does not exist.
* Feeds are cursor pages: pass the ``next`` of a page as ``since`` to get what came after it.
  Items are the records' JSON form (``parkwatch.incident/1``, ``parkwatch.alert/1``,
  ``parkwatch.ot_event/2`` …, each carrying its ``schema``), timestamps as RFC 3339 text.

The OpenAPI schema is served at ``/api/v1/openapi.json``; only these routes appear in it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from parkwatch.console.deps import Store
from parkwatch.console.models import AlertRecord, EventRecord, IncidentRecord
from parkwatch.schema import Record
from parkwatch.store import accounts, results
from parkwatch.store.sqlite import SqliteStore

router = APIRouter(prefix="/api/v1")

CURSOR_MAX = 2**63 - 1
"""Largest cursor (SQLite's integer range; a larger one would not bind)."""

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="EnterpriseToken",
    bearerFormat="opaque",
    description="An enterprise API token (`parkwatch tokens add --enterprise E`); it sees only "
    "its own enterprise's data.",
)


class Problem(BaseModel):
    """An error answer."""

    detail: str = Field(description="What went wrong, for a person.")


class Me(BaseModel):
    """Who a token is."""

    enterprise: str = Field(description="The enterprise this token belongs to.")


class Page(BaseModel):
    """One page of a feed."""

    enterprise: str = Field(description="The token's enterprise: every item involves it.")
    next: int = Field(
        ge=0, description="Cursor to pass as `since` for what comes after this page "
        "(unchanged when the page is empty)."
    )
    more: bool = Field(description="True when the page is full: poll again at once with `next`.")


class IncidentPage(Page):
    """A page of incidents."""

    items: list[IncidentRecord] = Field(description="Incidents, oldest change first.")  # type: ignore[valid-type]


class AlertPage(Page):
    """A page of alerts."""

    items: list[AlertRecord] = Field(description="Alerts, in the order they were stored.")  # type: ignore[valid-type]


class EventPage(Page):
    """A page of events (told apart by `schema`)."""

    items: list[EventRecord] = Field(description="Events, in the order they were stored.")


_HEADERS_401 = {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}}
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing, malformed, unknown or revoked token.",
          "headers": _HEADERS_401},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such incident for this token's enterprise."},
}


def token_enterprise(
    st: Store, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str:
    """The enterprise of the request's bearer token, or 401."""
    enterprise = accounts.token_enterprise(st, cred.credentials if cred else None)
    if enterprise is None:
        raise HTTPException(
            401,
            "missing or invalid API token: send 'Authorization: Bearer <token>'"
            if cred is None else "unknown or revoked API token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return enterprise


Enterprise = Annotated[str, Depends(token_enterprise)]


class Cursor(BaseModel):
    """Query of a feed; an unknown parameter (a typo of ``since``) is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    since: int = Field(
        0, ge=0, le=CURSOR_MAX, description="Cursor: the `next` of the previous page; 0 from "
        "the start."
    )
    limit: int = Field(100, ge=1, le=results.PAGE_MAX, description="Most items in the page.")


FeedQuery = Annotated[Cursor, Query()]
PageFn = Callable[[SqliteStore, str | None, int, int], tuple[list[Any], int]]


def _page(fn: PageFn, st: SqliteStore, enterprise: str, q: Cursor) -> dict[str, Any]:
    """The page as JSON-ready data; FastAPI checks it against the route's page model."""
    records, nxt = fn(st, enterprise, q.since, q.limit)
    return {"enterprise": enterprise, "items": [_json(r) for r in records], "next": nxt,
            "more": len(records) >= q.limit}


def _json(rec: Record) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(rec.to_json())
    return out


@router.get("/me", response_model=Me, responses=UNAUTHORIZED, tags=["enterprise API"],
            summary="The token's enterprise")
def me(enterprise: Enterprise) -> Me:
    """Which enterprise this token sees (a cheap way for a platform to test its token)."""
    return Me(enterprise=enterprise)


@router.get("/incidents", response_model=IncidentPage, responses=UNAUTHORIZED,
            tags=["enterprise API"],
            summary="Incidents involving the token's enterprise, by change")
def incidents(st: Store, enterprise: Enterprise, q: FeedQuery) -> dict[str, Any]:
    """Incidents (`parkwatch.incident/1`) involving this enterprise, in the order they last
    changed. The cursor follows the store's change sequence: every correlator update and every
    triage step (acknowledged, assigned, resolved, marked false positive …) moves an incident
    to the end, so polling with the last `next` also returns incidents seen before that have
    changed since, with their new `status`. Keep the latest copy of each `id`. An incident
    shared with another enterprise comes as this enterprise's part: its targets, alerts and
    evidence ids are those of the alerts that involve this enterprise."""
    return _page(results.incident_page, st, enterprise, q)


@router.get("/incidents/{incident_id}", response_model=IncidentRecord,
            responses={**UNAUTHORIZED, **NOT_FOUND}, tags=["enterprise API"],
            summary="One incident of the token's enterprise")
def incident(
    st: Store, enterprise: Enterprise,
    incident_id: Annotated[str, Path(description="Incident id, `inc-…`.")],
) -> dict[str, Any]:
    """One incident (`parkwatch.incident/1`); 404 when there is none with this id involving
    this enterprise (an incident of another enterprise is not told apart from a missing one)."""
    inc = st.incident(incident_id, enterprise)
    if inc is None:
        raise HTTPException(404, "no such incident")
    return _json(inc)


@router.get("/alerts", response_model=AlertPage, responses=UNAUTHORIZED, tags=["enterprise API"],
            summary="Alerts involving the token's enterprise")
def alerts(st: Store, enterprise: Enterprise, q: FeedQuery) -> dict[str, Any]:
    """Alerts (`parkwatch.alert/1`) whose attacker or target side is this enterprise, in the
    order they were stored. A re-sent alert keeps its place and is not returned again."""
    return _page(results.alert_page, st, enterprise, q)


@router.get("/events", response_model=EventPage, responses=UNAUTHORIZED, tags=["enterprise API"],
            summary="OT and network events involving the token's enterprise")
def events(st: Store, enterprise: Enterprise, q: FeedQuery) -> dict[str, Any]:
    """Events (`parkwatch.ot_event/2` commands with function names and values,
    `parkwatch.arp/1`, `parkwatch.weird/2`) involving this enterprise, in the order they were
    stored."""
    return _page(results.event_page, st, enterprise, q)
