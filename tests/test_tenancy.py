"""An incident shared by two enterprises, as each of them sees it (store, API, feeds)."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from correlator.incidents import Correlator
from parkwatch.feeds import Feeds, load_feed_settings
from parkwatch.schema import Alert, Incident
from parkwatch.store import results
from parkwatch.store.sqlite import SqliteStore
from parkwatch.tenancy import scope_incident
from parkwatch.topology import load_topology
from tests.test_feeds import SECRET_A, SECRET_B, Receiver, receiver  # noqa: F401
from tests.test_store import T0, S

SCANNER = "203.0.113.9"


def scan(uid: str, k: int, target: str, ents: tuple[str, ...], **kw: Any) -> Alert:
    fields: dict[str, Any] = {
        "rule_id": "pw-net-scan", "title": "port scan", "techniques": ("T0846",),
        "attackers": (SCANNER,), "vantage": "park-gw", **kw,
    }  # fmt: skip
    return Alert(
        uid=uid, ts=T0 + k * S, detector="sigma", level="medium", category="recon_scan",
        targets=(target,), flow_uids=(f"F-{uid}",), event_uids=(f"E-{uid}",),
        tactics=("discovery",), enterprises=ents, **fields,
    )  # fmt: skip


def shared() -> tuple[list[Alert], Incident]:
    """The correlator's own incident for one scanner probing ent-a, then ent-b."""
    alerts = [
        scan("Aa1", 1, "10.1.2.10", ("ent-a",)),
        scan("Ab1", 2, "10.2.2.99", ("ent-b",), rule_id="b-only-rule", title="b-only title",
             techniques=("T1046",), vantage="ent-b-gw"),
        scan("Aa2", 3, "10.1.2.11", ("ent-a",)),
    ]  # fmt: skip
    corr = Correlator(load_topology(None))
    corr.add(alerts)
    (inc,) = corr.incidents()
    return alerts, inc


def test_the_correlator_makes_one_incident_of_both_enterprises() -> None:
    _, inc = shared()
    assert inc.enterprises == ("ent-a", "ent-b") and inc.alert_count == 3
    assert set(inc.targets) == {"10.1.2.10", "10.1.2.11", "10.2.2.99"}


def test_each_enterprise_gets_only_its_part() -> None:
    alerts, inc = shared()
    a, b = (scope_incident(inc, alerts, e) for e in ("ent-a", "ent-b"))
    assert a.targets == ("10.1.2.10", "10.1.2.11") and b.targets == ("10.2.2.99",)
    assert a.alert_uids == ("Aa1", "Aa2") and a.alert_count == 2 and b.alert_count == 1
    assert a.enterprises == ("ent-a",) and b.enterprises == ("ent-b",)
    assert a.flow_uids == ("F-Aa1", "F-Aa2") and b.event_uids == ("E-Ab1",)
    assert a.techniques == ("T0846",) and b.techniques == ("T1046",)
    assert a.vantages == ("park-gw",) and b.vantages == ("ent-b-gw",)
    assert (a.first_seen, a.last_seen) == (T0 + S, T0 + 3 * S)
    assert a.title == "port scan" and b.title == "b-only title"
    for cut in (a, b):  # one incident: same id, verdict and workflow state
        assert (cut.id, cut.category, cut.severity, cut.defended, cut.status) == (
            inc.id, inc.category, inc.severity, inc.defended, inc.status)
    assert "b-only" not in orjson.dumps(a.to_dict()).decode()
    assert "10.2.2.99" not in orjson.dumps(a.to_dict()).decode()


def test_an_alert_of_both_sides_is_in_both_parts_and_own_incidents_stay_whole() -> None:
    alerts, inc = shared()
    both = scan("Aab", 4, "10.2.2.50", ("ent-a", "ent-b"), attackers=("10.1.1.5",))
    a = scope_incident(inc, [*alerts, both], "ent-a")
    assert "Aab" in a.alert_uids and a.enterprises == ("ent-a", "ent-b")
    own = dataclasses.replace(inc, enterprises=("ent-a",))
    assert scope_incident(own, alerts, "ent-a") is own


def test_store_reads_for_an_enterprise_give_its_part(tmp_path) -> None:
    alerts, inc = shared()
    st = SqliteStore.open(tmp_path / "s.db")
    st.put([*alerts, inc])
    assert st.incidents() == [inc] and st.incident(inc.id) == inc  # operators: whole
    (a,) = st.incidents(enterprise="ent-a")
    assert a.targets == ("10.1.2.10", "10.1.2.11") and a.alert_count == 2
    assert st.incident(inc.id, "ent-b") == scope_incident(inc, alerts, "ent-b")
    assert st.incident(inc.id, "ent-c") is None
    (page_b,), _ = results.incident_page(st, "ent-b")
    assert page_b.targets == ("10.2.2.99",) and page_b.alert_uids == ("Ab1",)


def test_feeds_deliver_each_enterprise_its_part(receiver: Receiver, tmp_path) -> None:  # noqa: F811
    alerts, inc = shared()
    conf = {"enterprises": {"ent-a": {"webhook": receiver.url + "/a", "secret": SECRET_A},
                            "ent-b": {"webhook": receiver.url + "/b", "secret": SECRET_B}}}
    st = SqliteStore.open(tmp_path / "s.db")
    st.put([*alerts, inc])
    for feeds in (Feeds(load_feed_settings(conf)),  # the alerts published with it
                  Feeds(load_feed_settings(conf), alerts_of=lambda i: st.alerts(incident_id=i))):
        receiver.got.clear()
        feeds.publish([*alerts, inc] if feeds.alerts_of is None else [inc])
        for path, ent in (("/a", "ent-a"), ("/b", "ent-b")):
            (got,) = [r for b in receiver.bodies(path) for r in b["records"] if "id" in r]
            want = scope_incident(inc, alerts, ent)
            assert got == orjson.loads(want.to_json())
            assert got["targets"] == list(want.targets) and got["enterprises"] == [ent]
