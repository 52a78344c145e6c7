"""Security review of the console and the enterprise API (issue 7, docs/CONSOLE.md).

Each test asserts the safe behaviour: a failing test demonstrates a weakness, a passing one
guards against a regression. Clients are made with ``raise_server_exceptions=False`` where a
500 is the point, so a crash shows as a status code, not a traceback."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from parkwatch.console.app import create_app
from parkwatch.schema import Alert, FlowRecord, Incident, OtEvent
from parkwatch.store import accounts, results, workflow
from parkwatch.store.sqlite import SqliteStore
from tests.console_fixtures import PW, XSS, _csrf


def _client(db: Path, name: str | None = None, secure: bool = False) -> TestClient:
    """A client that turns server exceptions into 500s, logged in as ``name`` if given."""
    c = TestClient(create_app(db, secure_cookies=secure), raise_server_exceptions=False)
    if name is not None:
        page = c.get("/login")
        r = c.post("/login", data={"username": name, "password": PW, "csrf": _csrf(page.text)},
                   follow_redirects=False)
        assert r.status_code == 303, r.text
    return c


def _token(c: TestClient, path: str = "/incidents") -> str:
    return _csrf(c.get(path).text)


# error handling: odd input must never be a 500 ----------------------------------------------


@pytest.mark.parametrize("path,params", [
    ("/incidents", {"since": "9999-12-31"}),
    ("/incidents", {"until": "0001-01-01"}),
    ("/incidents", {"since": "2300-01-01T00:00:00Z"}),
    ("/report", {"since": "9999-12-31"}),
    ("/report", {"until": "1600-01-01T00:00:00Z"}),
])
def test_dates_outside_the_ns_range_are_400_not_500(db: Path, path: str,
                                                    params: dict[str, str]) -> None:
    """parse_ts gives ns beyond SQLite's int64 for years < 1678 or > 2262: the bind raises
    OverflowError (not SchemaError), which nothing catches."""
    r = _client(db, "op").get(path, params=params)
    assert r.status_code == 400, (r.status_code, r.text[:200])


def test_non_ascii_form_tokens_are_403_not_500(db: Path, st: SqliteStore) -> None:
    """hmac.compare_digest raises TypeError on non-ASCII str: a form token of 'é' crashes
    check_csrf and the login form's double-submit check."""
    inc = st.incidents()[0]
    c = _client(db, "op")
    for step in ("ack", "comment", "resolve"):
        r = c.post(f"/incidents/{inc.id}/{step}", data={"csrf": "é", "text": "x"})
        assert r.status_code == 403, (step, r.status_code)
    assert c.post("/logout", data={"csrf": "é"}).status_code == 403
    anon = _client(db)
    anon.get("/login")
    r = anon.post("/login", data={"username": "op", "password": PW, "csrf": "é"})
    assert r.status_code == 403, r.status_code
    assert st.incident(inc.id).status == "open"  # type: ignore[union-attr]


@pytest.mark.parametrize("path", [
    "/incidents/%ff%fe", "/incidents/%00", "/incidents/inc-" + "x" * 5000,
    "/incidents?attacker=%ff&since=%00&sort=%ed%a0%80", "/incidents?enterprise=" + "é" * 5000,
    "/audit?target=%00&actor=%ff", "/assets?role=" + "x" * 10000, "/dashboard?period=%00",
    "/report?enterprise=%ff&since=%00", "/export/events.jsonl?enterprise=%00",
    "/incidents?since=2025-01-01T00:00:00.1234567890Z", "/incidents?since=%EF%BC%92025-01-01",
    "/static/%2e%2e/app.py", "/static/..%2fapp.py", "/export/..%2f..%2fapp.py.jsonl",
])
def test_odd_query_values_never_500(db: Path, path: str) -> None:
    r = _client(db, "op").get(path)
    assert r.status_code < 500, (path, r.status_code)
    assert "create_app" not in r.text  # no source file served


@pytest.mark.parametrize("query", [
    "since=9223372036854775808", "since=-1", "limit=0", "limit=1001", "limit=%00",
    "since=1e3", "sinse=0", "since=%ff",
])
def test_api_odd_cursors_are_422(db: Path, st: SqliteStore, query: str) -> None:
    _, secret = accounts.add_token(st, "ent-a")
    r = _client(db).get(f"/api/v1/alerts?{query}", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 422, (query, r.status_code)


@pytest.mark.parametrize("body", [
    "csrf=%ff%fe&text=%00", "csrf=TOKEN&text=%ff%fe%00", "%%%%&&&==",
    "csrf=TOKEN&text=" + "x" * 9000, "csrf=TOKEN&csrf=TOKEN2&text=x", "csrf=%00&text=x",
])
def test_odd_form_bodies_never_500(db: Path, st: SqliteStore, body: str) -> None:
    inc = st.incidents()[0]
    c = _client(db, "op")
    tok = _token(c)
    r = c.post(f"/incidents/{inc.id}/comment",
               content=body.replace("TOKEN", tok).encode(),
               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code < 500, (body[:40], r.status_code)


@pytest.mark.parametrize("body", [
    "username=%ff%00&password=%ff&csrf=%ff", "username=op&password=x&csrf=%00",
    "username=" + "a" * 100 + "&password=x&csrf=x", "username[]=op&password=x",
])
def test_odd_login_bodies_never_500(db: Path, body: str) -> None:
    anon = _client(db)
    anon.get("/login")
    r = anon.post("/login", content=body.encode(),
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code < 500, (body[:40], r.status_code)


# tenant isolation -----------------------------------------------------------------------------


def _shared_incident(st: SqliteStore) -> dict[str, str]:
    """An external scanner probing both enterprises: the correlator keys recon_scan by
    (attacker, category, '*'), so its alerts against ent-a and against ent-b land in ONE
    incident involving both. Returns the markers of the ent-b-only evidence."""
    t0 = st.incidents()[0].first_seen
    base = next(iter(st.flows()))
    fa = dataclasses.replace(base, uid="Fshared-a", start=t0, end=t0 + 1, src_ip="203.0.113.9",
                             dst_ip="10.1.2.10", src_enterprise=None, dst_enterprise="ent-a",
                             http_host=None, sni=None)
    fb = dataclasses.replace(base, uid="Fshared-b", start=t0 + 2, end=t0 + 3,
                             src_ip="203.0.113.9", dst_ip="10.2.2.99", src_enterprise=None,
                             dst_enterprise="ent-b", http_host="b-only-host.ent-b.example",
                             sni=None)
    eb = OtEvent(uid="Eshared-b", ts=t0 + 2, protocol="dnp3", direction="request",
                 src_ip="203.0.113.9", src_port=40000, dst_ip="10.2.2.99", dst_port=20000,
                 community_id="1:y", function_code=13, function_name="cold_restart",
                 src_enterprise=None, dst_enterprise="ent-b", attrs={"host": "b-only-attr"})
    aa = Alert(uid="Ashared-a", ts=t0, detector="sigma", rule_id="scan-a", title="scan of a",
               level="medium", category="recon_scan", attackers=("203.0.113.9",),
               targets=("10.1.2.10",), flow_uids=("Fshared-a",), enterprises=("ent-a",))
    ab = Alert(uid="Ashared-b", ts=t0 + 2, detector="sigma", rule_id="b-only-rule",
               title="b-only alert title", level="medium", category="recon_scan",
               attackers=("203.0.113.9",), targets=("10.2.2.99",), flow_uids=("Fshared-b",),
               event_uids=("Eshared-b",), enterprises=("ent-b",))
    inc = Incident(id="inc-shared", first_seen=t0, last_seen=t0 + 2, category="recon_scan",
                   severity="medium", title="scan of the park", attackers=("203.0.113.9",),
                   targets=("10.1.2.10", "10.2.2.99"), enterprises=("ent-a", "ent-b"),
                   alert_count=2,
                   alert_uids=("Ashared-a", "Ashared-b"))
    assert isinstance(fa, FlowRecord)
    st.put([fa, fb, eb, aa, ab, inc])
    return {"alert": "b-only-rule", "title": "b-only alert title", "target": "10.2.2.99",
            "host": "b-only-host.ent-b.example", "attr": "b-only-attr"}


def test_shared_incident_hides_the_other_enterprises_evidence(
    login: Callable, st: SqliteStore
) -> None:
    """ent-a may see an incident involving ent-a and ent-b, but not the alerts, flows and OT
    commands of it that involve only ent-b: its own export and API token do not return them
    (the alert is not ent-a's), yet the incident page lists them all."""
    secret = _shared_incident(st)
    assert "Ashared-b" not in {a.uid for a in st.alerts(enterprise="ent-a")}
    op = login("op").get("/incidents/inc-shared").text
    assert all(v in op for v in secret.values())  # the evidence is there for operators
    r = login("enta").get("/incidents/inc-shared")
    assert r.status_code == 200 and "scan-a" in r.text
    leaked = [k for k, v in secret.items() if v in r.text]
    assert leaked == [], f"ent-b-only evidence shown to ent-a: {leaked}"


def test_shared_incident_evidence_not_in_ent_a_exports(login: Callable, st: SqliteStore) -> None:
    """Regression: the exports use the per-record links, so ent-b-only evidence stays out."""
    _shared_incident(st)
    c = login("enta")
    assert b"Ashared-b" not in c.get("/export/alerts.jsonl").content
    assert b"Eshared-b" not in c.get("/export/events.jsonl").content
    assert b"inc-shared" in c.get("/export/incidents.jsonl").content


def _campaign_with_hidden_member(st: SqliteStore) -> tuple[str, str]:
    """An attacker with one incident in ent-a and three in ent-b: one campaign."""
    t0 = st.incidents()[0].first_seen
    incs = [Incident(id=f"inc-camp-{k}", first_seen=t0 + k, last_seen=t0 + k,
                     category="recon_scan", severity="low", title=f"camp member {k}",
                     attackers=("198.51.100.7",), enterprises=(ent,), campaign="camp-hidden")
            for k, ent in enumerate(("ent-a", "ent-b", "ent-b", "ent-b"))]
    st.put(incs)
    results.put_campaigns(st, [{
        "id": "camp-hidden", "attacker": "198.51.100.7", "enterprises": ["ent-a", "ent-b"],
        "incidents": [i.id for i in incs], "first_seen": "x", "last_seen": "y",
        "first_seen_ns": t0, "last_seen_ns": t0 + 3,
        "recommendation": "block 198.51.100.7 at the park boundary",
    }])
    return incs[0].id, incs[1].id


def test_campaign_siblings_of_another_enterprise_are_not_listed(
    login: Callable, st: SqliteStore
) -> None:
    """Regression: the sibling list is filtered by what the user may see."""
    mine, theirs = _campaign_with_hidden_member(st)
    text = login("enta").get(f"/incidents/{mine}").text
    listed = text.split('id="campaign-incidents">', 1)[1].split("</ul>", 1)[0]
    assert re.findall(r'href="/incidents/([^"]+)"', listed) == [mine]
    assert theirs not in text
    assert login("enta").get(f"/incidents/{theirs}").status_code == 404


def test_campaign_does_not_count_another_enterprises_incidents(
    login: Callable, st: SqliteStore
) -> None:
    """The campaign paragraph says '4 incidents' to ent-a, who may see 1: it tells ent-a how
    many incidents ent-b has from that attacker (and their time span)."""
    mine, _ = _campaign_with_hidden_member(st)
    text = login("enta").get(f"/incidents/{mine}").text
    para = text.split('id="campaign">', 1)[1].split("</p>", 1)[0]
    assert "4 incidents" not in para, para


def test_enterprise_user_cannot_widen_its_scope_anywhere(login: Callable, st: SqliteStore) -> None:
    """Regression: every page and export ignores enterprise= for a scoped user."""
    b_only = [i for i in st.incidents() if set(i.enterprises) == {"ent-b"}]
    assert b_only
    c = login("enta")
    for path in ("/incidents", "/dashboard", "/assets", "/report", "/export/incidents.jsonl",
                 "/export/alerts.jsonl", "/export/events.jsonl"):
        for params in ({}, {"enterprise": "ent-b"}, {"enterprise": ""}, {"attacker": "10.2.1.77"}):
            r = c.get(path, params=params)
            assert r.status_code == 200
            for inc in b_only:
                assert inc.id not in r.text, (path, params)
            assert "10.2.2.10" not in r.text, (path, params)  # ent-b's inside target
    for path in ("/audit", "/replays"):
        assert c.get(path, params={"target": b_only[0].id}).status_code == 403
    for inc in b_only:
        assert c.get(f"/incidents/{inc.id}").status_code == 404
        assert c.get(f"/incidents/{inc.id.upper()}").status_code == 404


def test_enterprise_role_without_an_enterprise_sees_nothing(db: Path, st: SqliteStore) -> None:
    """User.scope is None ('every enterprise') for an enterprise user whose enterprise is
    NULL (a hand-edited or migrated row): the role fails open to the operator's view.
    add_user refuses such a user, but the check should not depend on that."""
    st.conn.execute(
        "INSERT INTO users (name, role, enterprise, pw_hash, created_ns) VALUES (?, ?, ?, ?, 0)",
        ("entnull", "enterprise", None, accounts.hash_password(PW)),
    )
    c = _client(db)
    page = c.get("/login")
    r = c.post("/login", data={"username": "entnull", "password": PW, "csrf": _csrf(page.text)},
               follow_redirects=False)
    assert r.status_code == 401  # such a row opens no session (fails closed)
    for path in ("/incidents", "/audit", "/export/incidents.jsonl"):
        assert c.get(path, follow_redirects=False).status_code == 303  # to /login
    u = accounts.User("entnull", "enterprise", None)
    sid, _ = accounts.new_session(st, u)  # a session made before the row was broken
    assert accounts.session(st, sid) is None


def test_api_token_and_console_session_are_not_interchangeable(
    db: Path, st: SqliteStore
) -> None:
    _, secret = accounts.add_token(st, "ent-a")
    c = _client(db, "op")
    assert c.get("/api/v1/incidents").status_code == 401  # a session cookie is no token
    anon = _client(db)
    r = anon.get("/incidents", headers={"Authorization": f"Bearer {secret}"},
                 follow_redirects=False)
    assert r.status_code == 303  # a token is no console login
    b_only = next(i for i in st.incidents() if set(i.enterprises) == {"ent-b"})
    for bad in (secret + "x", secret.upper(), secret[:-1], f"pw_{b_only.id}_x"):
        r = anon.get("/api/v1/me", headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401
    r = anon.get(f"/api/v1/incidents/{b_only.id}", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 404
    r = anon.get("/api/v1/incidents", params={"enterprise": "ent-b"},
                 headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 422  # no way to name another enterprise


# auditors read only ----------------------------------------------------------------------------


def test_auditor_cannot_write_through_any_route(db: Path, st: SqliteStore) -> None:
    inc = st.incidents()[0]
    c = _client(db, "aud")
    tok = _token(c)
    before = (len(workflow.audit_log(st, limit=10**6)), st.incident(inc.id))
    for step in ("ack", "assign", "comment", "resolve", "false-positive"):
        r = c.post(f"/incidents/{inc.id}/{step}",
                   data={"csrf": tok, "assignee": "aud", "text": "x", "note": "x", "reason": "x"})
        assert r.status_code == 403, step
    for method in ("PUT", "PATCH", "DELETE"):
        assert c.request(method, f"/incidents/{inc.id}").status_code in (404, 405)
    for path in ("/incidents/{}/ack", "/incidents/{}/resolve", "/incidents/{}/false-positive"):
        assert c.get(path.format(inc.id)).status_code in (404, 405)  # no state-changing GET
    assert st.incident(inc.id) == before[1]
    assert not workflow.comments(st, inc.id) and not workflow.suppressions(st)


def test_operator_cannot_assign_to_a_non_operator(login: Callable, st: SqliteStore) -> None:
    inc = st.incidents()[0]
    c = login("op")
    tok = _token(c)
    for who in ("aud", "enta", "nobody"):
        r = c.post(f"/incidents/{inc.id}/assign", data={"csrf": tok, "assignee": who})
        assert r.status_code == 409
    assert workflow.assignee(st, inc.id) is None


# CSRF ----------------------------------------------------------------------------------------


def test_csrf_token_of_another_session_is_refused(db: Path, st: SqliteStore) -> None:
    inc = st.incidents()[0]
    mine, other = _client(db, "op"), _client(db, "op2")
    r = mine.post(f"/incidents/{inc.id}/ack", data={"csrf": _token(other)})
    assert r.status_code == 403
    tok = _token(mine)
    r = mine.post(f"/incidents/{inc.id}/ack", data={"csrf": tok},
                  headers={"Origin": "http://testserver.evil.example"})
    assert r.status_code == 403
    r = mine.post(f"/incidents/{inc.id}/ack", params={"csrf": tok})  # token in the URL
    assert r.status_code == 403
    assert st.incident(inc.id).status == "open"  # type: ignore[union-attr]


def test_logout_needs_post_and_the_token(db: Path) -> None:
    c = _client(db, "op")
    assert c.get("/logout").status_code == 405
    assert c.post("/logout", data={}).status_code == 403
    assert c.get("/incidents", follow_redirects=False).status_code == 200
    assert c.post("/logout", data={"csrf": _token(c)}, follow_redirects=False).status_code == 303
    assert c.get("/incidents", follow_redirects=False).status_code == 303


def test_login_form_needs_its_double_submit_cookie(db: Path) -> None:
    c = _client(db)
    page = c.get("/login")
    tok = _csrf(page.text)
    c.cookies.clear()  # a cross-site form post carries no SameSite=Strict cookie
    r = c.post("/login", data={"username": "op", "password": PW, "csrf": tok},
               follow_redirects=False)
    assert r.status_code == 403 and "pw_session" not in r.cookies


# sessions and cookies -------------------------------------------------------------------------


def test_session_cookie_flags(db: Path) -> None:
    c = TestClient(create_app(db), base_url="https://testserver")
    page = c.get("/login")
    login_cookie = page.headers["set-cookie"].lower()
    assert "httponly" in login_cookie and "samesite=strict" in login_cookie
    assert "secure" in login_cookie
    r = c.post("/login", data={"username": "op", "password": PW, "csrf": _csrf(page.text)},
               follow_redirects=False)
    cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("pw_session="))
    low = cookie.lower()
    assert "httponly" in low and "samesite=strict" in low and "secure" in low
    assert "max-age=43200" in low and "path=/" in low
    assert len(cookie.split(";")[0].split("=", 1)[1]) >= 43  # 256 bits, urlsafe base64


def test_a_new_login_is_a_new_session_and_a_planted_cookie_is_useless(
    db: Path, st: SqliteStore
) -> None:
    c = _client(db)
    c.cookies.set("pw_session", "attacker-chosen-value")
    page = c.get("/login")
    r = c.post("/login", data={"username": "op", "password": PW, "csrf": _csrf(page.text)},
               follow_redirects=False)
    sid = r.cookies.get("pw_session")
    assert sid and sid != "attacker-chosen-value"
    assert accounts.session(st, "attacker-chosen-value") is None
    stored = [row[0] for row in st.conn.execute("SELECT id_hash FROM sessions")]
    assert sid not in stored  # only the digest is kept


def test_removed_user_and_expired_session_lose_access(db: Path, st: SqliteStore) -> None:
    c = _client(db, "op2")
    assert c.get("/incidents", follow_redirects=False).status_code == 200
    accounts.remove_user(st, "op2")
    assert c.get("/incidents", follow_redirects=False).status_code == 303
    d = _client(db, "aud")
    st.conn.execute("UPDATE sessions SET expires_ns = 1")
    assert d.get("/incidents", follow_redirects=False).status_code == 303


def test_login_errors_do_not_tell_users_apart(db: Path) -> None:
    c = _client(db)

    def attempt(name: str) -> tuple[int, str]:
        page = c.get("/login")
        r = c.post("/login", data={"username": name, "password": "wrong password",
                                   "csrf": _csrf(page.text)}, follow_redirects=False)
        msg = re.search(r'id="login-error">([^<]*)<', r.text)
        return r.status_code, msg[1] if msg else ""

    assert attempt("op") == attempt("no-such-user") == (401, "Wrong user name or password.")


# audit log integrity -----------------------------------------------------------------------


def test_login_noise_cannot_push_triage_out_of_the_audit_page(db: Path, st: SqliteStore) -> None:
    """Anyone who reaches the login form writes audit rows: 10 failed logins per user name,
    then a fast (no scrypt) 'login_throttled' row per attempt, without limit. /audit reads the
    newest 1000 rows and only then filters by actor/action, so 1000 bogus attempts make
    '/audit?actor=op' show nothing of the operator's triage."""
    inc = st.incidents()[0]
    workflow.acknowledge(st, inc.id, "op")
    for k in range(1000):  # as POST /login with a throttled user name would write them
        workflow.audit(st, f"x{k % 7}", "login_throttled", None)
    text = _client(db, "aud").get("/audit", params={"actor": "op", "action": "acknowledge"}).text
    assert f'href="/incidents/{inc.id}"' in text


# redirects ------------------------------------------------------------------------------------


@pytest.mark.parametrize("nxt", [
    "//evil.example", "/\\evil.example", "https://evil.example", "/\t/evil.example",
    "/\n/evil.example", "/%2F/evil.example", "/%5Cevil.example", "\\\\evil.example",
    "javascript:alert(1)", "/ /evil.example", "/\u3000/evil.example", "http:/evil.example",
    "/.//evil.example", "/\r\nSet-Cookie: pw_session=x",
])
def test_login_next_stays_on_this_site(db: Path, nxt: str) -> None:
    c = _client(db)
    page = c.get("/login", params={"next": nxt})
    assert page.status_code == 200
    r = c.post("/login", data={"username": "op", "password": PW, "csrf": _csrf(page.text),
                               "next": nxt}, follow_redirects=False)
    assert r.status_code == 303
    loc = r.headers["location"]
    assert not re.search(r"[\x00-\x20\\]", loc), loc
    target = urlsplit(urljoin("https://console.example/login", loc))
    assert target.netloc == "console.example" and target.scheme == "https", loc
    cookies = [v.split(";")[0] for v in r.headers.get_list("set-cookie")]
    assert "pw_session=x" not in cookies  # no header smuggled in (a real session id is random)


# escaping -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path,params", [
    ("/incidents", {"attacker": XSS, "since": XSS, "until": '"><svg onload=alert(1)>',
                    "sort": XSS, "order": XSS, "enterprise": XSS, "severity": XSS}),
    ("/audit", {"actor": XSS, "action": '"><svg onload=alert(1)>', "target": XSS}),
    ("/assets", {"role": '"><svg onload=alert(1)>'}),
    ("/dashboard", {"period": "<svg onload=x>"}),
    ("/report", {"since": XSS, "enterprise": '"><svg onload=alert(1)>'}),
    ("/login", {"next": '/"><svg onload=alert(1)>'}),
])
def test_reflected_parameters_are_escaped(db: Path, path: str, params: dict[str, str]) -> None:
    r = _client(db, "op").get(path, params=params)
    assert r.status_code < 500
    assert "<script" not in r.text and "<svg onload" not in r.text
    assert "CSP" not in r.text and "script-src 'self'" in r.headers["content-security-policy"]


def test_stored_strings_are_text_in_svg_links_and_attributes(
    login: Callable, st: SqliteStore
) -> None:
    """Attacker-shaped enterprise ids, categories, attacker IPs, campaign text, asset fields
    and audit details must stay text in the SVG charts, hrefs and attribute values."""
    t0 = st.incidents()[0].first_seen
    evil = '"><svg onload=alert(1)>'
    inc = Incident(id="inc-evil", first_seen=t0, last_seen=t0, category=evil,
                   severity="high", title=evil, attackers=("javascript:alert(1)", evil),
                   targets=(evil,), enterprises=(evil, "ent-a"), alert_count=0,
                   campaign="camp-evil", defended=False, techniques=(evil,), tactics=(evil,))
    st.put([inc])
    results.put_campaigns(st, [{
        "id": "camp-evil", "attacker": evil, "enterprises": [evil], "incidents": ["inc-evil"],
        "first_seen": evil, "last_seen": evil, "first_seen_ns": t0, "last_seen_ns": t0,
        "recommendation": evil,
    }])
    results.put_assets(st, [{"ip": evil, "enterprise": "ent-a", "zone": evil, "first_seen": 1,
                             "last_seen": 2, "serves": [evil], "uses": [evil], "peers": evil,
                             "roles": [evil], "role_evidence": [evil], "ports": [evil]}])
    workflow.audit(st, evil, evil, "inc-evil", **{evil: evil})
    for who in ("op", "enta"):
        c = login(who)
        for path in ("/incidents", "/incidents/inc-evil", "/dashboard", "/assets", "/report",
                     "/audit", "/assets?role=" + evil):
            r = c.get(path)
            if r.status_code == 403:
                continue
            assert r.status_code == 200, (who, path)
            assert "<svg onload" not in r.text, (who, path)
            hrefs = re.findall(r'href="([^"]*)"', r.text)
            hrefs = [h for h in hrefs if h != "data:,"]  # base.html's empty favicon
            assert hrefs and all(h.startswith(("/", "#")) for h in hrefs), (who, path)
            assert not re.search(r'href=[^"]', r.text)
    dash = login("op").get("/dashboard").text
    assert dash.count("<svg") == 3 and "&#34;&gt;&lt;svg onload" in dash


def test_export_filename_and_headers_carry_no_injection(login: Callable) -> None:
    r = login("op").get("/export/events.jsonl", params={"enterprise": '../"\r\nX-Evil: 1'})
    assert r.status_code == 200 and "x-evil" not in r.headers
    assert re.fullmatch(r'attachment; filename="parkwatch-events-[A-Za-z0-9._-]+\.jsonl"',
                        r.headers["content-disposition"])
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
