"""OCSF 1.3 events for alerts (Detection Finding, 2004) and incidents (Incident Finding, 2005).

The field mapping is documented in ``docs/OCSF.md``. Times are OCSF timestamps (milliseconds
since the epoch, floored from the records' nanoseconds). ParkWatch fields OCSF has no place
for (enterprises, detector, vantage, defended verdict …) go under ``unmapped``.
"""

from __future__ import annotations

from typing import Any

from parkwatch import __version__
from parkwatch.schema import Alert, Incident, Record

OCSF_VERSION = "1.3.0"
FINDINGS_CATEGORY = 2
DETECTION_FINDING = 2004
INCIDENT_FINDING = 2005
IP_ADDRESS = 2  # observable type_id

SEVERITY_ID = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
SEVERITY_NAME = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High",
                 5: "Critical"}
PRIORITY_ID = {"informational": 1, "low": 1, "medium": 2, "high": 3, "critical": 4}
PRIORITY_NAME = {1: "Low", 2: "Medium", 3: "High", 4: "Critical"}
# incident status -> (activity_id, activity, status_id, status)
INCIDENT_STATUS = {
    "open": (1, "Create", 1, "New"),
    "acknowledged": (2, "Update", 2, "In Progress"),
    "resolved": (3, "Close", 4, "Resolved"),
    "false_positive": (3, "Close", 5, "Closed"),  # closed as a false positive
}

ENTERPRISE_TACTICS = {
    "reconnaissance": "TA0043", "resource-development": "TA0042", "initial-access": "TA0001",
    "execution": "TA0002", "persistence": "TA0003", "privilege-escalation": "TA0004",
    "defense-evasion": "TA0005", "credential-access": "TA0006", "discovery": "TA0007",
    "lateral-movement": "TA0008", "collection": "TA0009", "command-and-control": "TA0011",
    "exfiltration": "TA0010", "impact": "TA0040",
}
ICS_TACTICS = {
    "initial-access": "TA0108", "execution": "TA0104", "persistence": "TA0110",
    "privilege-escalation": "TA0111", "evasion": "TA0103", "discovery": "TA0102",
    "lateral-movement": "TA0109", "collection": "TA0100", "command-and-control": "TA0101",
    "inhibit-response-function": "TA0107", "impair-process-control": "TA0106",
    "impact": "TA0105",
}
"""ATT&CK tactic ids by name (Enterprise and ICS matrices)."""


def _ms(ns: int) -> int:
    return ns // 1_000_000


def _metadata(uid: str, kind: str) -> dict[str, Any]:
    return {
        "version": OCSF_VERSION,
        "uid": uid,
        "log_name": kind,
        "product": {"name": "ParkWatch", "vendor_name": "ParkWatch", "version": __version__},
    }


def _tactic(name: str, ics: bool) -> dict[str, str]:
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    uid = (ICS_TACTICS if ics else ENTERPRISE_TACTICS).get(key)
    return {"name": name, "uid": uid} if uid else {"name": name}


def attacks(techniques: tuple[str, ...], tactics: tuple[str, ...]) -> list[dict[str, Any]]:
    """One ATT&CK object per technique (``T1110.001`` -> technique ``T1110`` + sub-technique);
    the tactic is attached when the record names exactly one, else each tactic is listed on its
    own. ICS technique ids (``T08xx``) use the ICS matrix's tactic ids."""
    ics = any(t.upper().startswith("T0") for t in techniques)
    out: list[dict[str, Any]] = []
    shared = _tactic(tactics[0], ics) if len(tactics) == 1 else None
    for tech in dict.fromkeys(techniques):
        base, _, sub = tech.partition(".")
        item: dict[str, Any] = {"technique": {"uid": base}}
        if sub:
            item["sub_technique"] = {"uid": tech}
        if shared:
            item["tactic"] = shared
        out.append(item)
    if shared is None or not techniques:
        out.extend({"tactic": _tactic(t, ics)} for t in dict.fromkeys(tactics))
    return out


def _observables(pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    seen = dict.fromkeys(pairs)
    return [{"name": n, "type_id": IP_ADDRESS, "type": "IP Address", "value": v} for n, v in seen]


def _severity(level: str) -> tuple[int, str]:
    sid = SEVERITY_ID.get(level, 0)
    return sid, SEVERITY_NAME[sid]


def detection_finding(alert: Alert) -> dict[str, Any]:
    """The OCSF Detection Finding (class 2004) of ``alert``."""
    sid, sname = _severity(alert.level)
    model = alert.score is not None
    info: dict[str, Any] = {
        "uid": alert.uid,
        "title": alert.title,
        "desc": alert.reason or alert.title,
        "types": [alert.category] if alert.category else [],
        "created_time": _ms(alert.ts),
        "first_seen_time": _ms(alert.ts),
        "last_seen_time": _ms(alert.ts),
        "analytic": {
            "uid": alert.rule_id,
            "name": alert.rule_id,
            "type_id": 4 if model else 1,
            "type": "Learning (ML/DL)" if model else "Rule",
            "category": alert.detector,
        },
        "attacks": attacks(alert.techniques, alert.tactics),
        "related_events": [{"uid": u, "type": "parkwatch.flow"} for u in alert.flow_uids]
        + [{"uid": u, "type": "parkwatch.ot_event"} for u in alert.event_uids],
    }
    evidences = [{"src_endpoint": {"ip": ip}} for ip in alert.attackers]
    evidences += [{"dst_endpoint": {"ip": ip}} for ip in alert.targets]
    out: dict[str, Any] = {
        "class_uid": DETECTION_FINDING,
        "class_name": "Detection Finding",
        "category_uid": FINDINGS_CATEGORY,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": DETECTION_FINDING * 100 + 1,
        "type_name": "Detection Finding: Create",
        "time": _ms(alert.ts),
        "severity_id": sid,
        "severity": sname,
        "status_id": 1,
        "status": "New",
        "message": alert.title,
        "metadata": _metadata(alert.uid, "parkwatch.alert"),
        "finding_info": info,
        "evidences": evidences,
        "observables": _observables(
            [("src_endpoint.ip", ip) for ip in alert.attackers]
            + [("dst_endpoint.ip", ip) for ip in alert.targets]
        ),
        "unmapped": {
            "enterprises": list(alert.enterprises),
            "detector": alert.detector,
            "vantage": alert.vantage,
            "score": alert.score,
            "evidence": alert.evidence,
        },
    }
    if model:
        out["risk_score"] = alert.score
    return out


def incident_finding(
    incident: Incident, alerts: dict[str, Alert] | None = None, assignee_group: str = "park-soc"
) -> dict[str, Any]:
    """The OCSF Incident Finding (class 2005) of ``incident``; ``alerts`` (uid -> Alert), when
    given, fills each grouped alert's finding_info with its title and attacks."""
    activity_id, activity, status_id, status = INCIDENT_STATUS.get(
        incident.status, (99, "Other", 99, incident.status)
    )
    sid, sname = _severity(incident.severity)
    pid = PRIORITY_ID.get(incident.severity)
    title = incident.title or f"{incident.category} incident"
    infos: list[dict[str, Any]] = [{
        "uid": incident.id,
        "title": title,
        "types": [incident.category],
        "first_seen_time": _ms(incident.first_seen),
        "last_seen_time": _ms(incident.last_seen),
        "attacks": attacks(incident.techniques, incident.tactics),
        "related_events_count": incident.alert_count,
    }]
    for uid in incident.alert_uids:
        alert = (alerts or {}).get(uid)
        info: dict[str, Any] = {"uid": uid, "title": alert.title if alert else title}
        if alert is not None:
            info["types"] = [alert.category] if alert.category else []
            info["attacks"] = attacks(alert.techniques, alert.tactics)
            info["created_time"] = _ms(alert.ts)
        infos.append(info)
    out: dict[str, Any] = {
        "class_uid": INCIDENT_FINDING,
        "class_name": "Incident Finding",
        "category_uid": FINDINGS_CATEGORY,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": activity,
        "type_uid": INCIDENT_FINDING * 100 + activity_id,
        "type_name": f"Incident Finding: {activity}",
        "time": _ms(incident.last_seen),
        "start_time": _ms(incident.first_seen),
        "end_time": _ms(incident.last_seen),
        "severity_id": sid,
        "severity": sname,
        "status_id": status_id,
        "status": status,
        "desc": title,
        "message": title,
        "metadata": _metadata(incident.id, "parkwatch.incident"),
        "finding_info_list": infos,
        "attacks": attacks(incident.techniques, incident.tactics),
        "assignee_group": {"name": assignee_group},
        "observables": _observables(
            [("unmapped.attackers", ip) for ip in incident.attackers]
            + [("unmapped.targets", ip) for ip in incident.targets]
        ),
        "unmapped": {
            "attackers": list(incident.attackers),
            "targets": list(incident.targets),
            "enterprises": list(incident.enterprises),
            "defended": incident.defended,
            "defended_evidence": incident.defended_evidence,
            "campaign": incident.campaign,
            "vantages": list(incident.vantages),
        },
    }
    if pid is not None:
        out["priority_id"], out["priority"] = pid, PRIORITY_NAME[pid]
    if incident.defended is not None:
        out["is_suspected_breach"] = not incident.defended
    if incident.acknowledged_at is not None:
        out["unmapped"]["acknowledged_time"] = _ms(incident.acknowledged_at)
    if incident.resolved_at is not None:
        out["unmapped"]["resolved_time"] = _ms(incident.resolved_at)
    return out


def to_ocsf(record: Record) -> dict[str, Any]:
    """OCSF event of an Alert or Incident."""
    if isinstance(record, Alert):
        return detection_finding(record)
    if isinstance(record, Incident):
        return incident_finding(record)
    from parkwatch.errors import ParkWatchError

    raise ParkWatchError(f"no OCSF mapping for {type(record).schema_id()} records")
