"""Console pages over a store filled by a real replay: queue filters and counts, the incident
page's evidence, triage with CSRF and roles, enterprise scoping, escaping of captured text,
and dashboard figures equal to the defended-ratio indicator."""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from parkwatch.console.app import create_app
from parkwatch.console.views import LEVEL_RANK, is_critical
from parkwatch.indicators import defended_ratio
from parkwatch.schema import Alert, Incident, OtEvent, format_ts
from parkwatch.store import accounts, results, workflow
from parkwatch.store.sqlite import SqliteStore
from tests.console_fixtures import CAPTURES, PW, XSS, _csrf


def _rows(text: str) -> list[str]:
    """Incident ids of the queue's rows, in page order."""
    return re.findall(r'<tr id="inc-([^"]+)"', text)


def _count(text: str, kind: str, value: str) -> int:
    m = re.search(rf'id="count-{kind}-{value}"[^>]*>{value} <strong>(\d+)</strong>', text)
    assert m, f"no count for {kind} {value}"
    return int(m[1])


def _only(st: SqliteStore, ent: str) -> list[Incident]:
    return [i for i in st.incidents() if set(i.enterprises) == {ent}]


# queue --------------------------------------------------------------------------------------


def test_pages_need_a_login(db: Path) -> None:
    c = TestClient(create_app(db, secure_cookies=False))
    for path in ("/incidents", "/dashboard", "/assets", "/replays", "/audit", "/"):
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith(("/login", "/incidents"))
    r = c.get("/incidents/x", follow_redirects=False)
    assert r.headers["location"] == "/login?next=/incidents/x"


def test_queue_lists_every_incident_with_counts(login: Callable, st: SqliteStore) -> None:
    r = login("op").get("/incidents")
    assert r.status_code == 200
    incs = st.incidents()
    assert sorted(_rows(r.text)) == sorted(i.id for i in incs)
    assert len(incs) >= 10
    status, sev = Counter(i.status for i in incs), Counter(i.severity for i in incs)
    for s in ("open", "acknowledged", "resolved", "false_positive"):
        assert _count(r.text, "status", s) == status.get(s, 0)
    for s in LEVEL_RANK:
        assert _count(r.text, "severity", s) == sev.get(s, 0)
    for inc in incs:
        row = r.text.split(f'<tr id="inc-{inc.id}"', 1)[1].split("</tr>", 1)[0]
        assert f'class="sev-{inc.severity}"' in row
        assert f'href="/incidents/{inc.id}"' in row
        assert html.escape(inc.title) in row and inc.category in row
    assert "<script" not in r.text  # the console needs no JavaScript


def test_queue_filters_match_the_store(login: Callable, st: SqliteStore) -> None:
    c = login("op")
    incs = st.incidents()
    for key, pick in (("severity", lambda i: i.severity), ("category", lambda i: i.category)):
        for value in {pick(i) for i in incs}:
            r = c.get("/incidents", params={key: value})
            assert sorted(_rows(r.text)) == sorted(i.id for i in incs if pick(i) == value)
    for ent in ("ent-a", "ent-b"):
        r = c.get("/incidents", params={"enterprise": ent})
        assert sorted(_rows(r.text)) == sorted(i.id for i in st.incidents(enterprise=ent))
    first = sorted(incs, key=lambda i: i.first_seen)
    cut = first[len(first) // 2]
    since = format_ts(cut.first_seen)
    r = c.get("/incidents", params={"since": since})
    assert sorted(_rows(r.text)) == sorted(i.id for i in incs if i.last_seen >= cut.first_seen)
    day = since[:10]
    r = c.get("/incidents", params={"since": day, "until": day})
    assert sorted(_rows(r.text)) == sorted(i.id for i in st.incidents(
        since_ns=None, until_ns=None) if format_ts(i.first_seen)[:10] <= day
        and format_ts(i.last_seen)[:10] >= day)
    workflow.acknowledge(st, cut.id, "op")
    r = c.get("/incidents", params={"status": "acknowledged"})
    assert _rows(r.text) == [cut.id]
    assert _count(r.text, "status", "acknowledged") == 1
    r = c.get("/incidents", params={"severity": "high", "category": "ot_unauthorized_write"})
    want = {i.id for i in incs if i.severity == "high" and i.category == "ot_unauthorized_write"}
    assert set(_rows(r.text)) == want and want
    assert _count(r.text, "severity", "high") == len(want)
    assert _count(r.text, "severity", "critical") == 0


def test_queue_sorts_and_rejects_bad_filters(login: Callable, st: SqliteStore) -> None:
    c = login("op")
    by_id = {i.id: i for i in st.incidents()}
    for key, val in (("severity", lambda i: LEVEL_RANK[i.severity]),
                     ("alert_count", lambda i: i.alert_count),
                     ("first_seen", lambda i: i.first_seen), ("last_seen", lambda i: i.last_seen)):
        for order in ("asc", "desc"):
            got = [val(by_id[x]) for x in _rows(c.get(
                "/incidents", params={"sort": key, "order": order}).text)]
            assert got == sorted(got, reverse=order == "desc"), (key, order)
            assert len(got) == len(by_id)
    r = c.get("/incidents", params={"severity": "bogus", "since": "yesterday"})
    assert r.status_code == 400
    assert "unknown severity" in r.text and "not a date or RFC 3339 time" in r.text
    assert "&#39;yesterday&#39;" in r.text


# incident page ------------------------------------------------------------------------------


def test_incident_page_shows_alerts_and_evidence(login: Callable, st: SqliteStore) -> None:
    c = login("aud")
    shown_fn = 0
    for inc in st.incidents():
        r = c.get(f"/incidents/{inc.id}")
        assert r.status_code == 200
        alerts = st.alerts(incident_id=inc.id)
        assert alerts
        for a in alerts:
            assert a.rule_id in r.text
            assert html.escape(a.title) in r.text
        for t in inc.techniques:
            assert t in r.text
        assert html.escape(inc.defended_evidence) in r.text
        events = results.events_by_uid(st, list(inc.event_uids))
        for ev in events:
            assert isinstance(ev, OtEvent) and ev.function_name
            assert f"{ev.function_name} ({ev.function_code})" in r.text
            shown_fn += 1
        for fl in results.flows_by_uid(st, list(inc.flow_uids)):
            assert f"{fl.src_ip}:{fl.src_port} → {fl.dst_ip}:{fl.dst_port}" in r.text  # type: ignore[attr-defined]
        assert 'id="ack"' not in r.text  # auditors read only
    assert shown_fn >= 8
    assert "stop_application" in c.get(
        f"/incidents/{next(i.id for i in st.incidents() if 'stop' in i.title)}").text


def test_recommended_action_campaign_or_category(login: Callable, st: SqliteStore) -> None:
    c = login("op")
    camp_inc = next(i for i in st.incidents() if i.campaign)
    camp = results.campaign(st, camp_inc.campaign or "")
    assert camp and camp["recommendation"]
    r = c.get(f"/incidents/{camp_inc.id}")
    action = r.text.split('id="action">', 1)[1].split("</p>", 1)[0]
    assert action == html.escape(camp["recommendation"])
    assert camp["id"] in r.text
    listed = r.text.split('id="campaign-incidents">', 1)[1].split("</ul>", 1)[0]
    assert re.findall(r'href="/incidents/([^"]+)"', listed) == camp["incidents"]
    lone = next(i for i in st.incidents() if not i.campaign
                and i.category == "ot_unauthorized_write")
    r = c.get(f"/incidents/{lone.id}")
    assert "check the PLC&#39;s program and setpoints" in r.text


def test_missing_incident_is_404(login: Callable) -> None:
    r = login("op").get("/incidents/inc-doesnotexist")
    assert r.status_code == 404


# triage -------------------------------------------------------------------------------------


def test_triage_steps_change_the_store_and_audit(login: Callable, st: SqliteStore) -> None:
    c = login("op")
    inc = next(i for i in st.incidents() if i.status == "open")
    url = f"/incidents/{inc.id}"
    page = c.get(url).text
    for element in ("ack", "assign", "assignee", "comment", "comment-text", "resolve",
                    "false-positive", "fp-reason"):
        assert f'id="{element}"' in page
    tok = _csrf(page)

    r = c.post(url + "/ack", data={"csrf": tok}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == url
    assert st.incident(inc.id).status == "acknowledged"  # type: ignore[union-attr]
    r = c.post(url + "/ack", data={"csrf": tok})
    assert r.status_code == 409 and "cannot mark it acknowledged" in r.text

    r = c.post(url + "/assign", data={"csrf": tok, "assignee": "op2"}, follow_redirects=False)
    assert r.status_code == 303 and workflow.assignee(st, inc.id) == "op2"
    r = c.post(url + "/comment", data={"csrf": tok, "text": "PLC checked <b>ok</b>"},
               follow_redirects=False)
    assert r.status_code == 303
    assert [cm.text for cm in workflow.comments(st, inc.id)] == ["PLC checked <b>ok</b>"]
    r = c.post(url + "/comment", data={"csrf": tok, "text": "   "})
    assert r.status_code == 409 and "empty comment" in r.text
    r = c.post(url + "/resolve", data={"csrf": tok, "note": "setpoints restored"},
               follow_redirects=False)
    assert r.status_code == 303
    done = st.incident(inc.id)
    assert done is not None and done.status == "resolved" and done.resolved_at

    log = workflow.audit_log(st, target=inc.id)
    assert [e.action for e in reversed(log)] == ["acknowledge", "assign", "comment", "resolve"]
    assert {e.actor for e in log} == {"op"}
    page = c.get(url).text
    assert "PLC checked &lt;b&gt;ok&lt;/b&gt;" in page and "setpoints restored" in page
    assert 'id="status">resolved<' in page and 'id="assignee-now">op2<' in page
    assert 'id="ack"' not in page and 'id="resolve"' not in page
    queue = c.get("/incidents").text
    row = queue.split(f'<tr id="inc-{inc.id}"', 1)[1].split("</tr>", 1)[0]
    assert "resolved" in row and "op2" in row
    audit = c.get("/audit", params={"target": inc.id}).text
    assert audit.count('<td class="actor">op</td>') == 4


def test_false_positive_creates_a_suppression(login: Callable, st: SqliteStore) -> None:
    c = login("op")
    inc = next(i for i in st.incidents() if i.attackers and i.status == "open")
    url = f"/incidents/{inc.id}"
    tok = _csrf(c.get(url).text)
    r = c.post(url + "/false-positive", data={"csrf": tok, "reason": ""})
    assert r.status_code == 409 and "say why" in r.text
    assert not workflow.suppressions(st)
    r = c.post(url + "/false-positive", data={"csrf": tok, "reason": "lab test"},
               follow_redirects=False)
    assert r.status_code == 303
    assert st.incident(inc.id).status == "false_positive"  # type: ignore[union-attr]
    sups = workflow.suppressions(st)
    assert {s["rule"]["attacker"] for s in sups} == set(inc.attackers)
    assert {s["incident_id"] for s in sups} == {inc.id} and {s["author"] for s in sups} == {"op"}
    entry = workflow.audit_log(st, target=inc.id)[0]
    assert (entry.actor, entry.action, entry.detail["reason"]) == ("op", "false_positive",
                                                                    "lab test")
    page = c.get(url).text
    assert sups[0]["id"] in page and sups[0]["id"] in c.get("/audit").text


def test_triage_needs_the_csrf_token(login: Callable, st: SqliteStore) -> None:
    c = login("op")
    inc = st.incidents()[0]
    url = f"/incidents/{inc.id}"
    tok = _csrf(c.get(url).text)
    for data in ({}, {"csrf": "forged"}):
        for step in ("ack", "resolve", "assign", "comment", "false-positive"):
            r = c.post(f"{url}/{step}", data={**data, "text": "x", "reason": "x",
                                              "assignee": "x"})
            assert r.status_code == 403
    r = c.post(url + "/ack", data={"csrf": tok}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    assert st.incident(inc.id).status == "open"  # type: ignore[union-attr]
    assert workflow.audit_log(st, target=inc.id) == [] and not workflow.comments(st, inc.id)


def test_auditor_reads_but_cannot_triage(login: Callable, st: SqliteStore) -> None:
    c = login("aud")
    inc = st.incidents()[0]
    page = c.get(f"/incidents/{inc.id}").text
    assert 'id="triage"' not in page
    tok = _csrf(page)  # the logout form's token: the session's own
    for step in ("ack", "resolve", "false-positive", "comment", "assign"):
        r = c.post(f"/incidents/{inc.id}/{step}", data={"csrf": tok, "reason": "x", "text": "x"})
        assert r.status_code == 403
    assert st.incident(inc.id).status == "open"  # type: ignore[union-attr]
    assert c.get("/replays").status_code == 200
    assert c.get("/audit").status_code == 200


# enterprise scope ---------------------------------------------------------------------------


def test_enterprise_user_sees_only_its_enterprise(login: Callable, st: SqliteStore) -> None:
    c = login("enta")
    b_only, a_all = _only(st, "ent-b"), st.incidents(enterprise="ent-a")
    assert b_only and a_all
    for params in ({}, {"enterprise": "ent-b"}, {"enterprise": ""}):
        rows = _rows(c.get("/incidents", params=params).text)
        assert sorted(rows) == sorted(i.id for i in a_all)
    for inc in b_only:
        r = c.get(f"/incidents/{inc.id}")
        assert r.status_code == 404 and inc.title not in r.text
    assert c.get(f"/incidents/{a_all[0].id}").status_code == 200
    tok = _csrf(c.get("/incidents").text)
    assert c.post(f"/incidents/{a_all[0].id}/ack", data={"csrf": tok}).status_code == 403
    assert c.get("/replays").status_code == 403
    assert c.get("/audit").status_code == 403
    dash = c.get("/dashboard").text
    assert 'id="dr-ent-a"' in dash and 'id="dr-ent-b"' not in dash
    for inc in b_only:
        assert inc.id not in dash
    assert "10.2.1.77" not in dash  # ent-b's inside attacker


# escaping -----------------------------------------------------------------------------------


def test_captured_script_is_shown_as_text(login: Callable, st: SqliteStore) -> None:
    t0 = st.incidents()[0].first_seen
    ev = OtEvent(uid="Exss.1", ts=t0, protocol="http", direction="request", src_ip="10.1.1.9",
                 src_port=40000, dst_ip="10.1.3.5", dst_port=80, community_id="1:x",
                 function_code=None, function_name="GET", src_enterprise="ent-a",
                 dst_enterprise="ent-a", attrs={"host": XSS, "uri": '/"><img src=x>'})
    alert = Alert(uid="Axss", ts=t0, detector="sigma", rule_id="xss-rule", title=XSS,
                  level="high", category="exploit", attackers=("10.1.1.9",),
                  targets=("10.1.3.5",), event_uids=("Exss.1",), enterprises=("ent-a",))
    inc = Incident(id="inc-xss", first_seen=t0, last_seen=t0, category="exploit",
                   severity="high", title=XSS, attackers=("10.1.1.9",), targets=("10.1.3.5",),
                   enterprises=("ent-a",), alert_count=1, alert_uids=("Axss",),
                   event_uids=("Exss.1",), defended_evidence=XSS)
    st.put([ev, alert, inc])
    workflow.comment(st, "inc-xss", "op", XSS)
    for who in ("op", "enta"):
        c = login(who)
        for path in ("/incidents", "/incidents/inc-xss", "/dashboard"):
            r = c.get(path)
            assert r.status_code == 200
            assert "<script" not in r.text and "<img src=x>" not in r.text
            assert "Content-Security-Policy" in r.headers
        page = c.get("/incidents/inc-xss").text
        assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5  # title ×2, host …
        assert "host=&lt;script&gt;" in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in c.get("/incidents").text


# dashboard, assets, replays -----------------------------------------------------------------


def _dr_row(text: str, ent: str) -> dict[str, str]:
    row = text.split(f'<tr id="dr-{ent}">', 1)[1].split("</tr>", 1)[0]
    return dict(re.findall(r'<td class="(\w+)">([^<]*)</td>', row))


def test_dashboard_numbers_equal_the_indicator(login: Callable, st: SqliteStore) -> None:
    incs = st.incidents()
    workflow.false_positive(st, incs[0].id, "op", "drill")  # left out of the ratio
    incs = st.incidents()
    want = defended_ratio(incs)["enterprise"]
    text = login("op").get("/dashboard").text
    assert set(re.findall(r'<tr id="dr-([^"]+)">', text)) == set(want) == {"ent-a", "ent-b"}
    for ent, cell in want.items():
        got = _dr_row(text, ent)
        for k in ("attacks", "defended", "succeeded", "unknown"):
            assert int(got[k]) == cell[k], (ent, k)
        assert got["ratio"] == (str(cell["ratio"]) if cell["ratio"] is not None else "—")
    for cat, n in Counter(i.category for i in incs).items():
        assert re.search(rf'<tr id="cat-{cat}">.*?<td class="n">{n}</td>', text)
    crit = [e for e in st.events() if isinstance(e, OtEvent) and is_critical(e)]
    assert len(crit) >= 8 and f"OT critical commands ({len(crit)})" in text
    for e in crit:
        assert f'<td class="mono function">{e.function_name}</td>' in text
    top = Counter(a for i in incs for a in i.attackers).most_common(1)[0]
    assert re.search(rf'{re.escape(top[0])}</a></td><td class="n">{top[1]}</td>', text)
    assert text.count("<svg") == 3
    enta = login("enta").get("/dashboard").text
    got = _dr_row(enta, "ent-a")
    assert int(got["attacks"]) == want["ent-a"]["attacks"]
    per_hour = login("op").get("/dashboard", params={"period": "hour"})
    assert per_hour.status_code == 200
    rows = re.findall(r'<tr class="dr-period"><td class="mono">([^<]+)</td><td>([^<]+)</td>'
                      r'<td>(\d+)</td>', per_hour.text)
    by_hour = {(p, e): int(n) for p, e, n in rows}
    for ent in want:
        cells = defended_ratio([i for i in incs if ent in i.enterprises], 3600 * 10**9)["period"]
        assert {p: c["attacks"] for p, c in cells.items()} == {
            p: n for (p, e), n in by_hour.items() if e == ent}
    assert login("op").get("/dashboard", params={"period": "fortnight"}).status_code == 400


def test_assets_page_is_scoped(login: Callable, st: SqliteStore) -> None:
    results.put_assets(st, [
        {"ip": "10.1.2.10", "enterprise": "ent-a", "zone": "ent-a-ot", "first_seen": 1,
         "last_seen": 2, "serves": ["modbus"], "uses": [], "peers": 3, "roles": ["plc"],
         "role_evidence": ["answers modbus"]},
        {"ip": "10.2.2.10", "enterprise": "ent-b", "zone": "ent-b-ot", "first_seen": 1,
         "last_seen": 2, "serves": ["dnp3"], "roles": ["plc"]},
        {"ip": "10.1.1.77", "enterprise": "ent-a", "first_seen": 1, "last_seen": 2,
         "uses": ["modbus"], "roles": ["engineering_workstation"]},
    ])
    text = login("op").get("/assets").text
    assert all(f'id="asset-{ip}"' in text for ip in ("10.1.2.10", "10.2.2.10", "10.1.1.77"))
    assert "answers modbus" in text
    plc = login("op").get("/assets", params={"role": "plc"}).text
    assert 'id="asset-10.1.1.77"' not in plc and 'id="asset-10.2.2.10"' in plc
    mine = login("enta").get("/assets").text
    assert 'id="asset-10.1.2.10"' in mine and "10.2.2.10" not in mine
    n = len(results.assets(st, enterprise="ent-a"))  # the replay's inventory plus these
    assert n > 2 and f'<a href="/assets">{n} hosts</a>' in login("enta").get("/dashboard").text


def test_replays_page_shows_the_scorecard(login: Callable, st: SqliteStore) -> None:
    runs = results.replays(st)
    assert runs
    total = runs[0]["scorecard"]["total"]
    text = login("aud").get("/replays").text
    assert f'<td class="attack-recall">{total["attack_recall"]}</td>' in text
    assert f'<td class="incident-precision">{total["incident_precision"]}</td>' in text
    park = runs[0]["scorecard"]["defended_ratio"]["park"]
    assert f'<td class="defended-ratio">{park["ratio"]} ' in text
    for cap in CAPTURES:
        assert cap in text


def test_repeated_failed_logins_are_throttled_per_user_and_address(db: Path) -> None:
    def client(host: str) -> TestClient:
        return TestClient(create_app(db, secure_cookies=False), client=(host, 40000))

    def attempt(c: TestClient, name: str, password: str) -> int:
        page = c.get("/login")
        return c.post("/login", data={"username": name, "password": password,
                                      "csrf": _csrf(page.text)}, follow_redirects=False).status_code

    here, elsewhere = client("10.9.9.9"), client("10.8.8.8")
    assert attempt(here, "op", PW) == 303  # a success resets the count
    tries = [attempt(here, "op", f"guess-{k}") for k in range(accounts.MAX_FAILED_LOGINS)]
    assert tries == [401] * accounts.MAX_FAILED_LOGINS
    assert attempt(here, "op", PW) == 429  # even the right password, until the window passes
    assert attempt(elsewhere, "op", PW) == 303  # nobody elsewhere can lock the operator out
    assert attempt(here, "aud", PW) == 303  # nor another user from here
    assert attempt(here, "my secret passphrase", "x") == 401
    with SqliteStore.open(db) as st:
        mine = workflow.audit_log(st, actor="op")
        assert [e.action for e in mine][:2] == ["login", "login_throttled"]
        assert {e.target for e in mine if e.action == "login_failed"} == {"ip:10.9.9.9"}
        assert accounts.failed_logins(st, "op", "ip:10.9.9.9") == 10
        assert accounts.failed_logins(st, "op", "ip:10.9.9.9", window_ns=0) == 0
        assert not [e for e in workflow.audit_log(st) if "secret" in e.actor]  # names unknown
        assert workflow.audit_log(st, limit=1)[0].actor == "(unknown user)"


def test_a_huge_incident_shows_a_bounded_timeline_with_per_rule_counts(
    login: Callable, st: SqliteStore
) -> None:
    import dataclasses

    from parkwatch.console.views import TIMELINE_MAX
    from tests.test_store import sample_alert, sample_incident

    alerts = [sample_alert(i) for i in range(TIMELINE_MAX + 120)]
    alerts += [dataclasses.replace(sample_alert(9000 + i), rule_id="pw-other") for i in range(3)]
    inc = dataclasses.replace(sample_incident("inc-huge"), alert_uids=tuple(a.uid for a in alerts),
                              alert_count=len(alerts))
    st.put([*alerts, inc])
    text = login("op").get("/incidents/inc-huge").text
    rows = re.findall(r'<tr id="alert-([^"]+)"', text)
    assert len(rows) == TIMELINE_MAX and f"Timeline ({len(alerts)} alerts)" in text
    assert rows[:3] == ["A0000", "A0001", "A0002"] and rows[-1] == "A9002"  # first and last
    assert rows.index("A9000") == TIMELINE_MAX - 3  # the tail holds the newest
    assert f"… {len(alerts) - TIMELINE_MAX} more alerts not shown" in text
    gap = text.index('id="alerts-hidden"')
    assert text.index(f'id="alert-{rows[249]}"') < gap < text.index(f'id="alert-{rows[250]}"')
    assert rows[249] == "A0249" and rows[250] == f"A{TIMELINE_MAX + 120 - 47:04d}"
    counts = re.findall(r'<tr><td class="mono">([^<]+)</td><td>[^<]*</td><td>(\d+)</td></tr>', text)
    assert counts == [("pw-ot-write", str(TIMELINE_MAX + 120)), ("pw-other", "3")]
