"""Correlator units: label files, LABELS.md scoring, grouping, verdicts, campaigns, ratio."""

from __future__ import annotations

from pathlib import Path

import pytest

from correlator.evidence import Facts, verdict
from correlator.incidents import Correlator
from correlator.labels import Attack, LabelError, check_capture, load_labels
from correlator.scoring import matches, score
from correlator.suppress import Suppressions
from parkwatch.indicators import defended_ratio
from parkwatch.schema import Alert, FlowRecord, Incident, OtEvent, parse_ts
from parkwatch.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
PARK = load_topology(ROOT / "replay_pcaps" / "park.yaml")
T0 = parse_ts("2025-11-21T07:00:00Z")
S = 1_000_000_000


def alert(uid: str, ts: int, cat: str, att: str, tgt: str, level: str = "high", **kw) -> Alert:
    return Alert(
        uid=uid,
        ts=ts,
        detector="sigma",
        rule_id="r-" + cat,
        title=cat,
        level=level,
        category=cat,
        attackers=(att,),
        targets=(tgt,),
        **kw,
    )


def incident(first: int, last: int, att=(), tgt=(), cat="recon_scan", defended=None) -> Incident:
    return Incident(
        id=f"inc-{first}",
        first_seen=first,
        last_seen=last,
        category=cat,
        severity="high",
        attackers=att,
        targets=tgt,
        defended=defended,
    )


# -- labels ---------------------------------------------------------------------------------
def test_shipped_label_files_load_and_match_their_captures():
    files = sorted((ROOT / "replay_pcaps").glob("*.labels.yaml"))
    assert len(files) >= 20
    for f in files:
        lab = load_labels(f)
        check_capture(lab, lab.capture)


def test_label_errors_name_file_line_and_field(tmp_path):
    p = tmp_path / "x.labels.yaml"
    p.write_text(
        "format: parkwatch-labels/1\ncapture: x.pcap\nattacks:\n  - id: a\n"
        "    category: hacking\n    start: '2025-01-01T00:00:00Z'\n"
        "    end: '2025-01-01T00:00:01Z'\n"
    )
    with pytest.raises(LabelError) as exc:
        load_labels(p)
    assert exc.value.line == 5 and exc.value.field == "attacks[0].category"
    assert str(p) in str(exc.value)


def test_a_capture_that_differs_from_the_label_sha256_is_refused(tmp_path):
    cap = tmp_path / "c.pcap"
    cap.write_bytes(b"not the labelled bytes")
    p = tmp_path / "c.labels.yaml"
    p.write_text(f"format: parkwatch-labels/1\ncapture: c.pcap\nsha256: {'0' * 64}\nattacks: []\n")
    with pytest.raises(LabelError, match="does not match"):
        check_capture(load_labels(p), cap)


# -- scoring --------------------------------------------------------------------------------
def test_matching_widens_by_60s_and_needs_a_named_address():
    att = Attack("a", "recon_scan", T0, T0 + 10 * S, attackers=("10.0.0.0/24",))
    assert matches(incident(T0 + 125 * S, T0 + 130 * S, ("10.0.0.7",)), att)  # 115 s apart
    assert not matches(incident(T0 + 131 * S, T0 + 140 * S, ("10.0.0.7",)), att)
    assert not matches(incident(T0, T0 + S, ("10.9.9.9",), ("10.8.8.8",)), att)
    anyone = Attack("b", "dos", T0, T0 + S)
    assert matches(incident(T0, T0, ("1.2.3.4",)), anyone)


def test_score_counts_recall_precision_ttd_and_verdict_agreement():
    attacks = [
        Attack("w1", "ot_unauthorized_write", T0, T0 + S, ("10.1.1.77",), outcome="succeeded"),
        Attack(
            "w2",
            "ot_unauthorized_write",
            T0 + 100 * S,
            T0 + 101 * S,
            ("10.1.1.88",),
            outcome="defended",
        ),
        Attack("s", "recon_scan", T0 + 1000 * S, T0 + 1001 * S, ("10.1.1.99",)),
    ]
    incs = [
        incident(
            T0 + 2 * S, T0 + 3 * S, ("10.1.1.77",), cat="ot_unauthorized_write", defended=False
        ),
        incident(T0 + 100 * S, T0 + 100 * S, ("10.1.1.88",), cat="ot_recon", defended=False),
        incident(T0 + 5000 * S, T0 + 5001 * S, ("10.5.5.5",)),
    ]
    sc = score(attacks, incs, 3600 * S).as_dict()
    assert sc["attack_recall"] == round(2 / 3, 4) and sc["category_recall"] == round(1 / 3, 4)
    assert sc["incident_precision"] == round(2 / 3, 4) and sc["false_incidents_per_hour"] == 1.0
    assert sc["time_to_detect_s"]["max"] == 2.0
    assert sc["defended_ratio_check"] == {"labelled": 2, "agree": 1, "ratio": 0.5}
    assert sc["per_category"]["recon_scan"]["recall"] == 0.0


# -- grouping, severity, campaigns ----------------------------------------------------------
def test_grouping_is_deterministic_and_per_target_for_writes():
    a = [
        alert("u3", T0 + 20 * S, "ot_unauthorized_write", "10.1.1.77", "10.1.2.11"),
        alert("u1", T0, "ot_unauthorized_write", "10.1.1.77", "10.1.2.10"),
        alert("u2", T0 + 5 * S, "ot_unauthorized_write", "10.1.1.77", "10.1.2.10"),
        alert("u4", T0 + 3 * S, "recon_scan", "10.1.1.77", "10.1.2.12", level="low"),
        alert("u5", T0 + 4 * S, "recon_scan", "10.1.1.77", "10.1.2.13", level="low"),
    ]
    c1, c2 = Correlator(PARK), Correlator(PARK)
    c1.add(a)
    c2.add(reversed(a))
    i1, i2 = c1.incidents(), c2.incidents()
    assert [i.to_dict() for i in i1] == [i.to_dict() for i in i2]
    by = {(i.category, i.targets) for i in i1}
    assert ("ot_unauthorized_write", ("10.1.2.10",)) in by
    assert ("ot_unauthorized_write", ("10.1.2.11",)) in by
    assert ("recon_scan", ("10.1.2.12", "10.1.2.13")) in by and len(i1) == 3
    writes = [i for i in i1 if i.category == "ot_unauthorized_write"]
    assert all(i.severity == "critical" for i in writes)  # recon first: raised one step
    assert next(i for i in i1 if i.category == "recon_scan").severity == "low"


def test_alerts_far_apart_make_separate_incidents():
    c = Correlator(PARK, window_ns=60 * S)
    c.add(
        [
            alert("a", T0, "brute_force", "10.1.1.5", "10.1.3.5"),
            alert("b", T0 + 600 * S, "brute_force", "10.1.1.5", "10.1.3.5"),
        ]
    )
    assert len(c.incidents()) == 2


def test_one_attacker_against_two_enterprises_is_a_campaign():
    c = Correlator(PARK)
    c.add(
        [
            alert("a", T0, "recon_scan", "203.0.113.9", "10.1.2.10", enterprises=("ent-a",)),
            alert("b", T0 + S, "recon_scan", "203.0.113.9", "10.2.2.10", enterprises=("ent-b",)),
        ]
    )
    camps, incs = c.campaigns(c.incidents())
    assert len(camps) == 1 and camps[0].enterprises == ("ent-a", "ent-b")
    assert "block 203.0.113.9" in camps[0].recommendation
    assert all(i.campaign == camps[0].id for i in incs)


def test_spread_from_one_enterprise_into_another_recommends_cutting_the_conduit():
    c = Correlator(PARK)
    c.add(
        [
            alert(
                "a", T0, "lateral_movement", "10.1.1.50", "10.2.1.7", enterprises=("ent-a", "ent-b")
            )
        ]
    )
    camps, _ = c.campaigns(c.incidents())
    assert (
        camps and "inside ent-a" in camps[0].recommendation and "ent-b" in camps[0].recommendation
    )


def test_suppression_rules_drop_alerts_before_incidents(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("- rule_id: r-recon_scan\n  attacker: 10.1.1.0/24\n  reason: vuln scanner\n")
    c = Correlator(PARK, suppressions=Suppressions.load(f))
    c.add(
        [
            alert("a", T0, "recon_scan", "10.1.1.5", "10.1.2.1"),
            alert("b", T0, "recon_scan", "10.2.1.5", "10.1.2.1"),
        ]
    )
    incs = c.incidents()
    assert c.suppressed == 1 and [i.attackers for i in incs] == [("10.2.1.5",)]
    f.write_text("- rule: x\n")
    with pytest.raises(Exception, match="unknown keys"):
        Suppressions.load(f)


# -- verdicts -------------------------------------------------------------------------------
def _event(uid, direction, exc=None, req=None, attrs=None):
    return OtEvent(
        uid=uid,
        ts=T0,
        protocol="modbus",
        direction=direction,
        src_ip="10.1.2.10",
        src_port=502,
        dst_ip="10.1.1.77",
        dst_port=40000,
        community_id="1:x",
        exception_code=exc,
        request_uid=req,
        attrs=attrs or {},
    )


def test_verdict_follows_the_plcs_response():
    for exc, want in ((2, True), (None, False)):
        c = Correlator(PARK)
        c.add(
            [alert("a", T0, "ot_unauthorized_write", "10.1.1.77", "10.1.2.10", event_uids=("e1",))]
        )
        c.observe(_event("e2", "response", exc=exc, req="e1"))
        (inc,) = c.incidents()
        assert inc.defended is want, inc.defended_evidence


def test_verdict_for_scans_and_logins():
    assert (
        verdict("recon_scan", Facts(flows=[{"conn_state": "S0"}, {"conn_state": "REJ"}]))[0] is True
    )
    assert (
        verdict("recon_scan", Facts(flows=[{"conn_state": "S0"}, {"conn_state": "SF"}]))[0] is False
    )
    assert verdict("brute_force", Facts(alert_evidence=[{"login": "failure"}] * 3))[0] is True
    assert verdict("brute_force", Facts(login_success=True))[0] is False
    assert verdict("c2", Facts())[0] is None


def test_blocked_between_park_and_enterprise_boundary_is_defended():
    c = Correlator(PARK)
    c.add([alert("a", T0, "exploit", "203.0.113.9", "10.1.3.5", vantage="park-gw")])
    c.observe(
        FlowRecord(
            uid="f",
            start=T0,
            end=T0,
            vantage="ent-a-fw",
            src_ip="10.1.1.2",
            src_port=1,
            dst_ip="10.1.3.5",
            dst_port=80,
            proto=6,
            community_id="1:x",
            conn_state="SF",
            history="ShAD",
            end_reason="fin",
            orig_pkts=1,
            orig_bytes=1,
            orig_payload_bytes=1,
            orig_l2_bytes=1,
            orig_flags="",
            resp_pkts=1,
            resp_bytes=1,
            resp_payload_bytes=1,
            resp_l2_bytes=1,
            resp_flags="",
        )
    )
    (inc,) = c.incidents()
    assert inc.defended is True and "ent-a-fw" in inc.defended_evidence


def test_defended_ratio_keeps_unknowns_apart():
    incs = [
        incident(T0, T0, defended=True),
        incident(T0, T0, defended=False),
        incident(T0, T0, defended=None),
        incident(T0 + 86_400 * S, T0, defended=True),
    ]
    r = defended_ratio(incs)
    assert r["park"] == {
        "attacks": 4,
        "defended": 2,
        "succeeded": 1,
        "unknown": 1,
        "ratio": round(2 / 3, 4),
    }
    assert len(r["period"]) == 2 and r["category"]["recon_scan"]["attacks"] == 4


def test_uncategorised_anomalies_corroborate_or_stay_alerts():
    cat = alert("a", T0, "ot_unauthorized_write", "10.1.1.77", "10.1.2.10")
    near = Alert(
        uid="n",
        ts=T0 + 5 * S,
        detector="ot_baseline",
        rule_id="new_master",
        title="new master",
        level="high",
        attackers=("10.1.1.77",),
        targets=("10.1.2.10",),
    )
    low = Alert(
        uid="l",
        ts=T0,
        detector="flow_model",
        rule_id="flow_isolation",
        title="odd flow",
        level="low",
        attackers=("10.9.9.9",),
        targets=("10.1.2.10",),
    )
    high = Alert(
        uid="h",
        ts=T0,
        detector="ot_baseline",
        rule_id="new_master",
        title="new master",
        level="high",
        attackers=("10.8.8.8",),
        targets=("10.1.2.10",),
    )
    c = Correlator(PARK)
    c.add([cat, near, low, high])
    incs = c.incidents()
    assert c.uncorroborated == 1
    by = {i.attackers: i for i in incs}
    assert by[("10.1.1.77",)].alert_count == 2
    assert by[("10.8.8.8",)].category == "policy_violation" and ("10.9.9.9",) not in by


def test_answers_that_came_before_a_correlation_alert_count():
    c = Correlator(PARK)
    c.observe(_event("r1", "response", exc=None, req="q1"))  # unit 1 answered, then the alert
    c.observe(_event("r2", "response", exc=11, req="q2"))
    c.add([alert("a", T0, "ot_recon", "10.1.1.77", "10.1.2.11", event_uids=("q1", "q2"))])
    (inc,) = c.incidents()
    assert inc.defended is False and "answered without error" in inc.defended_evidence


def test_a_refused_and_an_accepted_command_on_one_device_are_two_findings():
    stop = alert(
        "s",
        T0,
        "ot_unauthorized_command",
        "10.2.1.9",
        "10.2.2.10",
        event_uids=("e1",),
        evidence={"function_name": "stop_application"},
    )
    restart = alert(
        "w",
        T0 + 5 * S,
        "ot_unauthorized_command",
        "10.2.1.9",
        "10.2.2.10",
        event_uids=("e2",),
        evidence={"function_name": "warm_restart"},
    )
    same_cmd = alert(
        "w2",
        T0 + 6 * S,
        "ot_unauthorized_command",
        "10.2.1.9",
        "10.2.2.10",
        event_uids=("e2",),
        evidence={"function_name": "warm_restart"},
    )
    c = Correlator(PARK)
    c.add([stop, restart, same_cmd])
    c.observe(_event("x1", "response", exc=4, req="e1"))
    c.observe(_event("x2", "response", exc=None, req="e2"))
    by = {i.alert_uids[0]: i for i in c.incidents()}
    assert len(by) == 2 and by["s"].defended is True and by["w"].defended is False
    assert by["w"].alert_count == 2


def test_scoring_takes_the_incident_that_names_the_attacks_target():
    from correlator.scoring import best

    att = Attack(
        "w2",
        "ot_unauthorized_write",
        T0 + 15 * S,
        T0 + 16 * S,
        ("10.1.1.77",),
        ("10.1.2.11",),
        outcome="defended",
    )
    plc1 = incident(T0, T0 + 2 * S, ("10.1.1.77",), ("10.1.2.10",), "ot_unauthorized_write", False)
    plc2 = incident(
        T0 + 15 * S, T0 + 15 * S, ("10.1.1.77",), ("10.1.2.11",), "ot_unauthorized_write", True
    )
    assert matches(plc1, att) and best([plc1, plc2], att) is plc2
    assert score([att], [plc1, plc2], 3600 * S).as_dict()["defended_ratio_check"]["agree"] == 1
