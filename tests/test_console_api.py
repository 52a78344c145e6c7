"""The enterprise API over a real replay store: tenant isolation, bad tokens, cursor paging,
triage updates in the incident feed, the OpenAPI schema, and schemathesis against it.

The store is built once per module by the real ``parkwatch replay`` over three captures: the
Modbus one gives incidents of ent-a only, the DNP3 one of ent-b only, the sample park one
incidents involving both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from click.testing import CliRunner
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection

from correlator.replay_cli import replay_command
from parkwatch.console.app import create_app
from parkwatch.console.deps import ConsoleConfig
from parkwatch.schema import RECORD_TYPES
from parkwatch.store import accounts, workflow
from parkwatch.store.sqlite import SqliteStore
from parkwatch.transport.base import record_id

CAPTURES = ["modbus_unauthorized_write", "dnp3_restart_and_stop", "sample_park"]
ENTS = ("ent-a", "ent-b")
FEEDS = {"incidents": "id", "alerts": "uid", "events": None}
EVENT_TYPES = {t.schema_id(): t for t in RECORD_TYPES
               if t.SCHEMA in ("parkwatch.ot_event", "parkwatch.arp", "parkwatch.weird")}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("api")
    CliRunner().invoke(
        replay_command,
        [*(f"replay_pcaps/{c}.pcap" for c in CAPTURES), "--topology", "replay_pcaps/park.yaml",
         "--vantage", "park-gw", "--out", str(out), "--no-progress"],
        catch_exceptions=False,
    )
    return out / "parkwatch.db"


@pytest.fixture(scope="module")
def st(db: Path) -> Iterator[SqliteStore]:
    with SqliteStore.open(db) as store:
        yield store


@pytest.fixture(scope="module")
def tokens(st: SqliteStore) -> dict[str, str]:
    return {e: accounts.add_token(st, e, "test")[1] for e in ENTS}


@pytest.fixture(scope="module")
def client(db: Path) -> TestClient:
    return TestClient(create_app(db, secure_cookies=False))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def walk(client: TestClient, feed: str, token: str, since: int = 0, limit: int = 100
         ) -> tuple[list[dict[str, Any]], int, int]:
    """Every item of ``feed`` after ``since``: (items, last cursor, pages fetched)."""
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        r = client.get(f"/api/v1/{feed}", params={"since": since, "limit": limit},
                       headers=auth(token))
        assert r.status_code == 200, r.text
        page = r.json()
        pages += 1
        items += page["items"]
        assert page["next"] >= since
        since = page["next"]
        if not page["more"]:
            return items, since, pages


def stored_ids(st: SqliteStore, feed: str, enterprise: str | None) -> set[str]:
    if feed == "incidents":
        return {i.id for i in st.incidents(enterprise=enterprise)}
    if feed == "alerts":
        return {a.uid for a in st.alerts(enterprise=enterprise)}
    return {record_id(e) for e in st.events(enterprise=enterprise)}


def item_id(feed: str, item: dict[str, Any]) -> str:
    """The store id of an API item (events: parsed back into their record)."""
    if feed == "events":
        assert item["schema"] in EVENT_TYPES
        return record_id(EVENT_TYPES[item["schema"]].from_dict(item))
    return str(item[FEEDS[feed] or ""])


def test_store_has_data_of_each_side(st: SqliteStore) -> None:
    a, b = (stored_ids(st, "incidents", e) for e in ENTS)
    assert a - b and b - a and a & b  # ent-a only, ent-b only, shared
    assert stored_ids(st, "alerts", "ent-a") and stored_ids(st, "events", "ent-b")


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("ent", ENTS)
def test_token_sees_exactly_its_enterprise(
    client: TestClient, st: SqliteStore, tokens: dict[str, str], feed: str, ent: str
) -> None:
    items, _, _ = walk(client, feed, tokens[ent])
    got = [item_id(feed, i) for i in items]
    assert len(got) == len(set(got))
    assert set(got) == stored_ids(st, feed, ent)
    other = next(e for e in ENTS if e != ent)
    assert not set(got) & (stored_ids(st, feed, other) - stored_ids(st, feed, ent))
    for item in items:
        if "enterprises" in item and feed != "events":
            assert ent in item["enterprises"]


def test_me(client: TestClient, tokens: dict[str, str]) -> None:
    for ent in ENTS:
        r = client.get("/api/v1/me", headers=auth(tokens[ent]))
        assert r.status_code == 200 and r.json() == {"enterprise": ent}


def test_incident_of_another_enterprise_is_404(
    client: TestClient, st: SqliteStore, tokens: dict[str, str]
) -> None:
    a, b = (stored_ids(st, "incidents", e) for e in ENTS)
    own = sorted(a - b)[0]
    r = client.get(f"/api/v1/incidents/{own}", headers=auth(tokens["ent-a"]))
    assert r.status_code == 200 and r.json()["id"] == own
    assert r.json()["schema"] == "parkwatch.incident/1"
    shared = sorted(a & b)[0]
    for ent in ENTS:  # each side gets its part: only alerts that involve it, its name only
        r = client.get(f"/api/v1/incidents/{shared}", headers=auth(tokens[ent]))
        assert r.status_code == 200
        assert set(r.json()["alert_uids"]) <= stored_ids(st, "alerts", ent)
        assert ent in r.json()["enterprises"] and r.json()["alert_count"] >= 1
    foreign = client.get(f"/api/v1/incidents/{sorted(b - a)[0]}", headers=auth(tokens["ent-a"]))
    missing = client.get("/api/v1/incidents/inc-0000000000000000", headers=auth(tokens["ent-a"]))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()  # nothing tells "other enterprise" from "none"


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "pw_deadbeef_x"},
    {"Authorization": "Bearer pw_deadbeef_not-a-real-token"},
], ids=["missing", "no-token", "empty-token", "basic", "no-scheme", "unknown"])
@pytest.mark.parametrize("path", ["/api/v1/incidents", "/api/v1/alerts", "/api/v1/events",
                                  "/api/v1/me", "/api/v1/incidents/inc-x"])
def test_bad_tokens_are_401(client: TestClient, path: str, headers: dict[str, str]) -> None:
    r = client.get(path, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert isinstance(r.json()["detail"], str)


def test_revoked_token_is_401(client: TestClient, st: SqliteStore) -> None:
    tok, secret = accounts.add_token(st, "ent-a", "to revoke")
    assert client.get("/api/v1/me", headers=auth(secret)).status_code == 200
    assert accounts.revoke_token(st, tok.id)
    r = client.get("/api/v1/incidents", headers=auth(secret))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "detail" in r.json()


@pytest.mark.parametrize("feed", FEEDS)
def test_cursor_paging_walks_every_item_once(
    client: TestClient, tokens: dict[str, str], feed: str
) -> None:
    whole, cursor, _ = walk(client, feed, tokens["ent-a"], limit=1000)
    paged, cursor2, pages = walk(client, feed, tokens["ent-a"], limit=2)
    assert [item_id(feed, i) for i in paged] == [item_id(feed, i) for i in whole]
    assert cursor2 == cursor and pages >= len(whole) // 2
    r = client.get(f"/api/v1/{feed}", params={"since": cursor}, headers=auth(tokens["ent-a"]))
    assert r.json() == {"enterprise": "ent-a", "items": [], "next": cursor, "more": False}


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"since": -1}, {"since": "1.5"},
    {"since": 2**63}, {"since": 10**30}, {"sinse": 5},
])
def test_bad_query_values_are_422(
    client: TestClient, tokens: dict[str, str], params: dict[str, Any]
) -> None:
    r = client.get("/api/v1/alerts", params=params, headers=auth(tokens["ent-a"]))
    assert r.status_code == 422 and "detail" in r.json()


def test_largest_cursor_is_accepted(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.get("/api/v1/incidents", params={"since": 2**63 - 1, "limit": 1000},
                   headers=auth(tokens["ent-b"]))
    assert r.status_code == 200 and r.json()["items"] == []


def test_acknowledged_incident_comes_back_on_next_poll(
    client: TestClient, st: SqliteStore, tokens: dict[str, str]
) -> None:
    seen, cursor, _ = walk(client, "incidents", tokens["ent-b"])
    _, a_cursor, _ = walk(client, "incidents", tokens["ent-a"])
    target = next(i["id"] for i in seen if i["status"] == "open" and i["enterprises"] == ["ent-b"])
    workflow.acknowledge(st, target, "op")
    r = client.get("/api/v1/incidents", params={"since": cursor}, headers=auth(tokens["ent-b"]))
    page = r.json()
    assert [(i["id"], i["status"]) for i in page["items"]] == [(target, "acknowledged")]
    assert page["items"][0]["acknowledged_at"] is not None
    assert page["next"] > cursor and page["more"] is False
    # the change of an ent-b-only incident does not show in ent-a's feed
    r = client.get("/api/v1/incidents", params={"since": a_cursor}, headers=auth(tokens["ent-a"]))
    assert r.json()["items"] == []


def test_openapi_lists_api_paths_and_bearer_scheme(client: TestClient) -> None:
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert set(spec["paths"]) == {
        "/api/v1/me", "/api/v1/incidents", "/api/v1/incidents/{incident_id}",
        "/api/v1/alerts", "/api/v1/events",
    }
    scheme = spec["components"]["securitySchemes"]["EnterpriseToken"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    for path, ops in spec["paths"].items():
        op = ops["get"]
        assert op["security"] == [{"EnterpriseToken": []}]
        assert "401" in op["responses"]
        assert ("404" in op["responses"]) == path.endswith("{incident_id}")
    assert "change" in spec["paths"]["/api/v1/incidents"]["get"]["description"]


def test_openapi_documents_every_record_field_from_the_schema(client: TestClient) -> None:
    import dataclasses

    from parkwatch.schema import Alert, ArpEvent, Incident, OtEvent, Weird

    comps = client.get("/api/v1/openapi.json").json()["components"]["schemas"]
    for cls in (Incident, Alert, OtEvent, ArpEvent, Weird):
        model = comps[cls.__name__ + "Record"]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert set(model["properties"]) == {"schema", *fields}, cls
        assert model["properties"]["schema"]["const"] == cls.schema_id()
        assert model["additionalProperties"] is False
        assert set(model["required"]) == {"schema", *fields}  # to_dict writes every key
        for name, f in fields.items():
            prop = model["properties"][name]
            assert prop["description"] == f.metadata["doc"], (cls, name)
            assert (prop.get("format") == "date-time") == bool(f.metadata.get("ts")), name
    page = comps["EventPage"]["properties"]["items"]["items"]
    assert {m["$ref"].rsplit("/", 1)[1] for m in page["oneOf"]} == {
        "OtEventRecord", "ArpEventRecord", "WeirdRecord",
    }
    assert comps["IncidentPage"]["properties"]["items"]["items"]["$ref"].endswith(
        "/IncidentRecord"
    )


# schemathesis needs the schema when tests are collected, before the store exists (its lazy
# from_fixture loader fails under pytest 9): load it from an app over an in-memory store, then
# point that app at the replay store for the run (the schema does not depend on the data).
FUZZ_APP = create_app(":memory:", secure_cookies=False)
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", FUZZ_APP)


@pytest.fixture(scope="module")
def fuzz_store(db: Path) -> None:
    FUZZ_APP.state.console = ConsoleConfig(str(db), secure_cookies=False)


FUZZ = settings(max_examples=int(os.environ.get("PW_FUZZ_EXAMPLES", "30")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@schema.parametrize()
@FUZZ
def test_schemathesis_with_token(case: Any, tokens: dict[str, str], fuzz_store: None) -> None:
    # the test supplies a valid Authorization header, undoing a generated mutation of it: such
    # a case is no longer the invalid request schemathesis made (its other mutation may not
    # reach the wire, e.g. an extra query key with an empty list), so "invalid data must be
    # rejected" does not apply to it; every other check does (no 5xx, answers fit the schema)
    hdr = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
    undone = hdr is not None and hdr.mode == GenerationMode.NEGATIVE
    case.call_and_validate(headers=auth(tokens["ent-a"]),
                           excluded_checks=[negative_data_rejection] if undone else None)


@schema.parametrize()
@FUZZ
def test_schemathesis_without_token(case: Any, fuzz_store: None) -> None:
    response = case.call_and_validate()
    assert response.status_code in (401, 405)  # 405: methods the API has not


def test_real_answers_conform_to_the_schema(
    st: SqliteStore, tokens: dict[str, str], fuzz_store: None
) -> None:
    """Fuzzing rarely draws an existing incident id: validate real 200/404 answers too."""
    a, b = (stored_ids(st, "incidents", e) for e in ENTS)
    detail = schema["/api/v1/incidents/{incident_id}"]["GET"]
    for iid, status in [(sorted(a)[0], 200), (sorted(b - a)[0], 404)]:
        r = detail.Case(path_parameters={"incident_id": iid}).call_and_validate(
            headers=auth(tokens["ent-a"]))
        assert r.status_code == status
    for feed in FEEDS:
        case = schema[f"/api/v1/{feed}"]["GET"].Case(query={"limit": 1000})
        r = case.call_and_validate(headers=auth(tokens["ent-b"]))
        assert r.status_code == 200 and r.json()["items"]
