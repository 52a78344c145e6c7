"""OCSF mapping: required attributes of Detection / Incident Finding and their values."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from parkwatch import __version__
from parkwatch.errors import ParkWatchError
from parkwatch.ocsf import attacks, detection_finding, incident_finding, to_ocsf
from tests.test_store import T0, sample_alert, sample_flow, sample_incident

BASE_REQUIRED = ("activity_id", "category_uid", "class_uid", "metadata", "severity_id", "time",
                 "type_uid")


def check_base(ev: dict[str, Any], class_uid: int) -> None:
    for name in BASE_REQUIRED:
        assert name in ev, name
    assert ev["class_uid"] == class_uid and ev["category_uid"] == 2
    assert ev["type_uid"] == class_uid * 100 + ev["activity_id"]
    assert ev["metadata"]["version"].startswith("1.")
    assert ev["metadata"]["product"] == {"name": "ParkWatch", "vendor_name": "ParkWatch",
                                         "version": __version__}
    for att in ev.get("attacks", []) + ev.get("finding_info", {}).get("attacks", []):
        assert {"tactic", "technique", "sub_technique"} & set(att)  # OCSF at_least_one
    for obs in ev["observables"]:
        assert {"name", "type_id", "value"} <= set(obs)
    orjson.dumps(ev)  # plain JSON


def test_alert_is_a_detection_finding() -> None:
    alert = sample_alert(3)
    ev = detection_finding(alert)
    check_base(ev, 2004)
    assert ev["activity_id"] == 1 and ev["status_id"] == 1
    assert (ev["severity_id"], ev["severity"]) == (4, "High")
    assert ev["time"] == (T0 + 3_000_000_000) // 1_000_000
    info = ev["finding_info"]
    assert info["uid"] == alert.uid and info["title"] == alert.title
    assert info["types"] == ["ot_unauthorized_write"] and info["desc"] == alert.reason
    assert info["analytic"] == {"uid": "pw-ot-write", "name": "pw-ot-write", "type_id": 1,
                                "type": "Rule", "category": "sigma"}
    assert info["attacks"] == [{"technique": {"uid": "T0855"},
                                "tactic": {"name": "impair-process-control", "uid": "TA0106"}}]
    assert {"uid": "F0003", "type": "parkwatch.flow"} in info["related_events"]
    assert ev["observables"] == [
        {"name": "src_endpoint.ip", "type_id": 2, "type": "IP Address", "value": "10.1.1.5"},
        {"name": "dst_endpoint.ip", "type_id": 2, "type": "IP Address", "value": "10.1.2.10"},
    ]
    assert ev["evidences"] == [{"src_endpoint": {"ip": "10.1.1.5"}},
                               {"dst_endpoint": {"ip": "10.1.2.10"}}]
    assert ev["unmapped"]["enterprises"] == ["ent-a"] and "risk_score" not in ev


def test_model_alert_and_levels() -> None:
    alert = sample_alert()
    alert.score, alert.level, alert.detector = 0.93, "critical", "flow_model"
    ev = detection_finding(alert)
    assert ev["finding_info"]["analytic"]["type_id"] == 4 and ev["risk_score"] == 0.93
    assert ev["severity_id"] == 5
    for level, sid in (("informational", 1), ("low", 2), ("medium", 3), ("bogus", 0)):
        alert.level = level
        assert detection_finding(alert)["severity_id"] == sid


@pytest.mark.parametrize(
    ("status", "activity", "status_id"),
    [("open", 1, 1), ("acknowledged", 2, 2), ("resolved", 3, 4)],
)
def test_incident_is_an_incident_finding(status: str, activity: int, status_id: int) -> None:
    inc = sample_incident(defended=False)
    inc.status = status
    if status != "open":
        inc.acknowledged_at = T0 + 60_000_000_000
    ev = incident_finding(inc, {"A0000": sample_alert(0)})
    check_base(ev, 2005)
    assert (ev["activity_id"], ev["status_id"]) == (activity, status_id)
    assert ev["assignee_group"] == {"name": "park-soc"}  # OCSF: assignee or assignee_group
    assert (ev["severity_id"], ev["priority_id"]) == (5, 4)
    assert ev["start_time"] == T0 // 1_000_000 and ev["time"] == ev["end_time"]
    assert ev["end_time"] - ev["start_time"] == 5_000
    infos = ev["finding_info_list"]
    assert [i["uid"] for i in infos] == ["inc-1", "A0000", "A0001"]
    assert infos[0]["types"] == ["ot_unauthorized_write"] and infos[0]["title"] == inc.title
    assert infos[1]["title"] == "Modbus write from IT zone" and "attacks" in infos[1]
    assert "attacks" not in infos[2]  # not given: uid and the incident's title only
    assert ev["attacks"][0]["technique"] == {"uid": "T0855"}
    assert ev["is_suspected_breach"] is True
    assert {o["value"] for o in ev["observables"]} == {"10.1.1.5", "10.1.2.10"}
    assert ev["unmapped"]["enterprises"] == ["ent-a"] and ev["unmapped"]["defended"] is False


def test_defended_and_undecided_incidents() -> None:
    assert incident_finding(sample_incident(defended=True))["is_suspected_breach"] is False
    assert "is_suspected_breach" not in incident_finding(sample_incident(defended=None))


def test_attacks_pairing() -> None:
    assert attacks(("T1110.001", "T1021"), ("credential-access", "lateral-movement")) == [
        {"technique": {"uid": "T1110"}, "sub_technique": {"uid": "T1110.001"}},
        {"technique": {"uid": "T1021"}},
        {"tactic": {"name": "credential-access", "uid": "TA0006"}},
        {"tactic": {"name": "lateral-movement", "uid": "TA0008"}},
    ]
    assert attacks((), ("Discovery",)) == [{"tactic": {"name": "Discovery", "uid": "TA0007"}}]
    assert attacks(("T0846",), ("discovery",))[0]["tactic"]["uid"] == "TA0102"  # ICS matrix
    assert attacks((), ()) == []


def test_other_records_have_no_mapping() -> None:
    assert to_ocsf(sample_alert())["class_uid"] == 2004
    assert to_ocsf(sample_incident())["class_uid"] == 2005
    with pytest.raises(ParkWatchError, match="no OCSF mapping"):
        to_ocsf(sample_flow())
