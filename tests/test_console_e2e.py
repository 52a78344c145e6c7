"""The console as an operator, an auditor and an enterprise user use it: a real store filled
by ``parkwatch replay``, ``parkwatch serve`` started here on a free port, headless Chromium
clicking through the pages, and the store checked afterwards.

One server and one browser for the module; each scenario logs in its own browser context.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from parkwatch.schema import Incident
from parkwatch.store import workflow
from parkwatch.store.sqlite import SqliteStore
from tests.browser import CAPTURES, add_user, chromium, console, login, replay

pytestmark = pytest.mark.slow

MODBUS = CAPTURES / "modbus_unauthorized_write.pcap"  # ent-a-only incidents
DNP3 = CAPTURES / "dnp3_restart_and_stop.pcap"  # ent-b-only incidents
SAMPLE = CAPTURES / "sample_park.pcap"
XSS = "<script>window.__pwned=1</script>"
XSS_ESCAPED = "&lt;script&gt;window.__pwned=1&lt;/script&gt;"


@dataclass
class Park:
    """The module's store, its first replay's output and the console serving it."""

    store: Path
    out: Path
    tmp: Path
    base: str

    def incidents(self, **query: Any) -> list[Incident]:
        with SqliteStore.open(self.store) as st:
            return st.incidents(**query)

    def incident(self, iid: str) -> Incident:
        with SqliteStore.open(self.store) as st:
            inc = st.incident(iid)
        assert inc is not None, iid
        return inc


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def park(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Park]:
    tmp = tmp_path_factory.mktemp("console-e2e")
    store, out = tmp / "parkwatch.db", tmp / "replay-1"
    replay(store, out, MODBUS, DNP3, SAMPLE)
    add_user(store, "op", "operator")
    add_user(store, "aud", "auditor")
    add_user(store, "enta", "enterprise", "ent-a")
    with console(store, tmp / "serve.log") as base:
        yield Park(store, out, tmp, base)


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def queue_ids(page: Any, query: str = "") -> set[str]:
    """Incident ids of the queue's rows (row ids are ``inc-<incident id>``)."""
    page.goto("/incidents" + query)
    rows = page.locator('#queue tbody tr[id^="inc-"]').evaluate_all("els => els.map(e => e.id)")
    shown = int(page.inner_text("#count-total strong"))
    assert shown == len(rows), (shown, len(rows))
    return {rid.removeprefix("inc-") for rid in rows}


def status_text(page: Any) -> str:
    return page.inner_text("#status").strip().lower().replace(" ", "_")


def no_triage(page: Any) -> None:
    for sel in ("#ack", "#assign", "#assignee", "#comment", "#comment-text", "#resolve",
                "#false-positive", "#fp-reason"):
        assert page.locator(sel).count() == 0, f"{sel} shown to a read-only user"


def test_operator_triages_an_incident(park: Park, browser: Any) -> None:
    page = login(browser, park.base, "op")
    stored = park.incidents()
    assert len(stored) == len(jsonl(park.out / "incidents.jsonl")) > 0
    assert queue_ids(page) == {i.id for i in stored}

    target = next(i for i in stored if tuple(i.enterprises) == ("ent-a",) and i.status == "open")
    page.click(f'tr[id="inc-{target.id}"] a[href="/incidents/{target.id}"]')
    page.wait_for_url(f"**/incidents/{target.id}")
    assert target.title in page.inner_text("body")
    assert status_text(page) == "open"

    page.click("#ack")
    page.wait_for_load_state()
    assert status_text(page) == "acknowledged"
    page.fill("#assignee", "op")
    page.click("#assign")
    page.wait_for_load_state()
    assert "op" in page.inner_text("#assignee-now")
    note = "PLC owner confirms: maintenance laptop, not a change window"
    page.fill("#comment-text", note)
    page.click("#comment")
    page.wait_for_load_state()
    assert note in page.inner_text("#comments")
    page.click("#resolve")
    page.wait_for_load_state()
    assert status_text(page) == "resolved"
    assert page.locator("#ack").count() == 0  # a resolved incident cannot be acknowledged
    shown = page.locator("#audit tbody tr").evaluate_all(
        "rows => rows.map(r => [r.querySelector('.actor')?.textContent,"
        " r.querySelector('.action')?.textContent])"
    )
    assert sorted(map(tuple, shown)) == sorted(
        [("op", a) for a in ("acknowledge", "assign", "comment", "resolve")])
    assert not page.dialogs

    inc = park.incident(target.id)
    assert inc.status == "resolved"
    assert inc.acknowledged_at is not None and inc.resolved_at is not None
    with SqliteStore.open(park.store) as st:
        trail = workflow.audit_log(st, target=target.id)
        assert workflow.assignee(st, target.id) == "op"
        assert [c.text for c in workflow.comments(st, target.id)] == [note]
    steps = [(e.actor, e.action) for e in reversed(trail)]
    assert steps == [("op", "acknowledge"), ("op", "assign"), ("op", "comment"),
                     ("op", "resolve")]
    page.context.close()


def test_false_positive_suppresses_the_twin_on_the_next_replay(park: Park, browser: Any) -> None:
    first = jsonl(park.out / "incidents.jsonl")
    keys = [(d["category"], tuple(d["attackers"])) for d in first]
    # an incident of the sample capture whose category and attacker no other incident shares
    twin = next(
        d for d in first
        if d["source"] == SAMPLE.name and d["attackers"] and keys.count(
            (d["category"], tuple(d["attackers"]))) == 1
    )
    category, attacker = twin["category"], twin["attackers"][0]
    page = login(browser, park.base, "op")
    page.goto(f"/incidents/{twin['id']}")
    reason = "authorised vulnerability scan by the park's own team"
    page.fill("#fp-reason", reason)
    page.click("#false-positive")
    page.wait_for_load_state()
    assert status_text(page) == "false_positive"
    with SqliteStore.open(park.store) as st:
        assert st.incident(twin["id"]).status == "false_positive"  # type: ignore[union-attr]
        sups = [s for s in workflow.suppressions(st) if s["incident_id"] == twin["id"]]
        entry = workflow.audit_log(st, target=twin["id"])[0]
    assert [(s["rule"]["category"], s["rule"].get("attacker")) for s in sups] == [
        (category, attacker)]
    assert (entry.actor, entry.action, entry.detail["reason"]) == ("op", "false_positive", reason)

    out2 = park.tmp / "replay-2"
    replay(park.store, out2, SAMPLE)
    again = jsonl(out2 / "incidents.jsonl")
    assert again, "the second replay raised nothing at all"
    assert not [d for d in again if d["category"] == category and attacker in d["attackers"]]
    # the rest of the capture is still detected
    assert {d["id"] for d in again} < {d["id"] for d in first if d["source"] == SAMPLE.name}

    open_twins = [i for i in park.incidents(status="open")
                  if i.category == category and attacker in i.attackers]
    assert open_twins == []
    shown = queue_ids(page, f"?status=open&category={category}&attacker={attacker}")
    assert shown == set()
    assert twin["id"] in queue_ids(page, f"?status=false_positive&category={category}")
    assert not page.dialogs
    page.context.close()


def test_enterprise_user_sees_only_its_enterprise(park: Park, browser: Any) -> None:
    ent_a = {i.id for i in park.incidents(enterprise="ent-a")}
    b_only = [i for i in park.incidents() if "ent-a" not in i.enterprises]
    assert ent_a and b_only
    page = login(browser, park.base, "enta")
    assert "ent-a" in page.inner_text("#whoami")
    assert queue_ids(page) == ent_a
    # asking for the other enterprise changes nothing
    assert queue_ids(page, "?enterprise=ent-b") <= ent_a

    resp = page.goto(f"/incidents/{b_only[0].id}")
    assert resp is not None and resp.status == 404
    body = page.inner_text("body")
    assert "no such incident" in body.lower()
    assert b_only[0].title not in body

    page.goto(f"/incidents/{sorted(ent_a)[0]}")
    assert status_text(page)
    no_triage(page)
    for path in ("/dashboard", "/assets", "/incidents"):
        resp = page.goto(path)
        assert resp is not None and resp.ok, (path, resp and resp.status)
        html = page.content()
        for inc in b_only:
            assert inc.id not in html, f"{path} shows ent-b incident {inc.id}"
    assert not page.dialogs
    page.context.close()


def test_auditor_reads_but_cannot_triage(park: Park, browser: Any) -> None:
    stored = park.incidents()
    page = login(browser, park.base, "aud")
    assert queue_ids(page) == {i.id for i in stored}
    target = next(i for i in stored if i.status == "open")
    page.goto(f"/incidents/{target.id}")
    assert target.title in page.inner_text("body")
    no_triage(page)
    csrf = page.locator('input[name="csrf"]').first.get_attribute("value")
    assert csrf
    for step in ("ack", "resolve"):
        resp = page.request.post(f"/incidents/{target.id}/{step}", form={"csrf": csrf})
        assert resp.status == 403, (step, resp.status)
    resp = page.request.post(f"/incidents/{target.id}/false-positive",
                             form={"csrf": csrf, "reason": "forged"})
    assert resp.status == 403
    assert park.incident(target.id).status == "open"
    with SqliteStore.open(park.store) as st:
        assert [e for e in workflow.audit_log(st, target=target.id) if e.actor == "aud"] == []
    page.context.close()


def xss_capture(path: Path) -> None:
    """A directory-traversal GET (raises an exploit incident) whose Host and User-Agent are
    script tags, answered 404."""
    from scapy.utils import wrpcap

    from replay_pcaps.craft import Conversation

    out: list[Any] = []
    c = Conversation(out, "10.2.1.66", "10.1.3.80", 47001, 80)
    t = c.open(1_764_000_000.0)
    c.send(t, True, "PA", (
        f"GET /../../../etc/passwd HTTP/1.1\r\nHost: {XSS}\r\nUser-Agent: {XSS}\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode())
    body = b"<html>404</html>"
    c.send(t + 0.005, False, "PA", b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    c.send(t + 0.006, True, "A")
    c.close(t + 0.01)
    wrpcap(str(path), out)


def test_script_in_an_http_host_shows_as_text(park: Park, browser: Any) -> None:
    cap = park.tmp / "xss_host.pcap"
    xss_capture(cap)
    out = park.tmp / "replay-xss"
    replay(park.store, out, cap)
    events = [e for e in jsonl(out / "events.jsonl")
              if e.get("protocol") == "http" and e.get("direction") == "request"]
    assert [e["attrs"]["host"] for e in events] == [XSS]
    inc = next(d for d in jsonl(out / "incidents.jsonl") if d["category"] == "exploit")
    assert events[0]["uid"] in inc["event_uids"]

    page = login(browser, park.base, "op")
    page.goto(f"/incidents/{inc['id']}")
    html = page.content()
    assert XSS_ESCAPED in html
    assert XSS not in html
    assert page.locator(f"text={XSS}").count() >= 1  # shown as visible text
    assert page.evaluate("window.__pwned") is None
    for path in ("/incidents", "/dashboard", "/assets"):
        resp = page.goto(path)
        assert resp is not None and resp.ok, (path, resp and resp.status)
        assert XSS not in page.content(), path
        assert page.evaluate("window.__pwned") is None, path
    assert not page.dialogs
    page.context.close()
