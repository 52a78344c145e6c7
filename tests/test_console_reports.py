"""The console's indicator report and exports: the numbers of ``parkwatch report`` for the
user's scope, and JSON-lines downloads that never carry another enterprise's records."""

from __future__ import annotations

import re
from collections.abc import Callable

from parkwatch.indicators import indicators
from parkwatch.store import workflow
from parkwatch.store.sqlite import SqliteStore


def _park_ratio(text: str) -> str:
    m = re.search(r'id="ratio-park">Park: <strong>([^<]+)</strong>', text)
    assert m, "no park ratio"
    return m[1]


def test_report_page_shows_indicators_10_and_13_for_the_scope(
    login: Callable, st: SqliteStore
) -> None:
    incs = st.incidents()
    workflow.acknowledge(st, incs[0].id, "op")
    workflow.resolve(st, incs[0].id, "op")
    workflow.false_positive(st, incs[1].id, "op", "lab")
    want = indicators(st.incidents())
    text = login("aud").get("/report").text
    park = want["indicator_10_defended_ratio"]["park"]
    assert _park_ratio(text) == (str(park["ratio"]) if park["ratio"] is not None else "—")
    assert f"{park['defended']} defended, {park['succeeded']} succeeded" in text
    speed = want["indicator_13_response_speed"]
    assert speed["to_resolve"]["count"] == 2  # a false positive is closed too
    assert re.search(r"<td>resolve</td><td>2</td>", text)
    assert f"still open: {speed['open']}." in text and speed["open"] == len(incs) - 2
    mine = indicators(st.incidents(enterprise="ent-a"))
    ent = login("enta").get("/report", params={"enterprise": "ent-b"}).text  # scope wins
    assert f"{mine['incidents']} incidents involving ent-a" in ent
    rows = re.findall(r"<tr><td>enterprise</td><td>([^<]+)</td><td>(\d+)</td>", ent)
    cells = mine["indicator_10_defended_ratio"]["enterprise"]
    assert "ent-b" in cells  # shared incidents count for ent-b too, but ent-a is not shown it
    assert rows == [("ent-a", str(cells["ent-a"]["attacks"]))]
    assert login("op").get("/report", params={"since": "yesterday"}).status_code == 400


def test_exports_are_scoped_to_the_enterprise(login: Callable, st: SqliteStore) -> None:
    for kind, rows in (("incidents", st.incidents), ("alerts", st.alerts),
                       ("events", st.events)):
        mine = set(login("enta").get(f"/export/{kind}.jsonl",
                                     params={"enterprise": "ent-b"}).content.splitlines())
        want = {r.to_json() for r in rows(enterprise="ent-a")}  # type: ignore[operator]
        every = {r.to_json() for r in rows()}  # type: ignore[operator]
        assert mine == want and want < every, kind
    r = login("op").get("/export/incidents.jsonl")
    assert r.headers["content-disposition"] == (
        'attachment; filename="parkwatch-incidents-park.jsonl"'
    )
    assert len(r.content.splitlines()) == len(st.incidents())
    assert login("op").get("/export/flows.jsonl").status_code == 404
    odd = login("op").get("/export/alerts.jsonl", params={"enterprise": 'x"\r\nSet-Cookie: a=b'})
    assert odd.headers["content-disposition"] == (
        'attachment; filename="parkwatch-alerts-x___Set-Cookie__a_b.jsonl"'
    ) and "set-cookie" not in odd.headers and odd.content == b""
    anon = login("op")
    anon.cookies.clear()
    assert anon.get("/export/incidents.jsonl", follow_redirects=False).status_code == 303
