"""What the console pages show, computed from the store: the incident queue with its filters,
one incident with its evidence, the dashboard figures and the recommended actions.

Everything here is scoped by the caller: ``scope`` is the one enterprise a user may see
(``User.scope``), None for all. Values stay plain Python (strings, numbers, lists); the
templates escape them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from parkwatch.indicators import DAY, defended_ratio
from parkwatch.schema import (
    CATEGORIES,
    LEVELS,
    FlowRecord,
    Incident,
    OtEvent,
    Record,
    SchemaError,
    parse_ts,
)
from parkwatch.store import results, workflow
from parkwatch.store.sqlite import SqliteStore, record_enterprises

STATUSES = ("open", "acknowledged", "resolved", "false_positive")
"""Incident statuses of the operator workflow."""
SORTS = ("first_seen", "last_seen", "severity", "alert_count")
"""Queue sort keys."""
LEVEL_RANK = {lvl: i for i, lvl in enumerate(LEVELS)}
HOUR = 3600 * 1_000_000_000
PERIODS = {"hour": HOUR, "day": DAY, "week": 7 * DAY}
"""Dashboard periods; ``auto`` picks hours for spans up to 3 days, days up to 120, else weeks."""


def _w(text: str) -> frozenset[str]:
    return frozenset(text.split())


CRITICAL: dict[str, frozenset[str]] = {
    "modbus": _w(
        "write_single_coil write_single_register write_multiple_coils write_multiple_registers"
        " write_file_record mask_write_register read_write_multiple_registers diagnostics"
        " umas"
    ),
    "dnp3": _w(
        "write select operate direct_operate direct_operate_no_ack cold_restart warm_restart"
        " initialize_data initialize_application start_application stop_application"
        " save_configuration disable_unsolicited assign_class delete_file activate_config"
    ),
    "s7comm": _w(
        "write_var request_download download_block download_ended start_upload upload end_upload"
        " plc_control plc_stop set_variable set_multi_variables delete_object invoke"
        " security/plc_password time_functions/set_clock programmer_commands/forces"
        " programmer_commands/erase"
    ),
    "iec104": _w(
        "C_SC_NA_1 C_DC_NA_1 C_RC_NA_1 C_SE_NA_1 C_SE_NB_1 C_SE_NC_1 C_BO_NA_1 C_SC_TA_1"
        " C_DC_TA_1 C_RC_TA_1 C_SE_TA_1 C_SE_TB_1 C_SE_TC_1 C_BO_TA_1 C_RP_NA_1 P_ME_NA_1"
        " P_ME_NB_1 P_ME_NC_1 P_AC_NA_1"
    ),
    "enip": _w(
        "set_attributes_all set_attribute_list set_attribute_single set_member reset start stop"
        " create delete restore apply_attributes initiate_download download_transfer"
        " initiate_upload upload_transfer initiate_partial_write clear_file write_tag"
        " read_modify_write_tag write_tag_fragmented"
    ),
    "bacnet": _w(
        "writeProperty writePropertyMultiple deviceCommunicationControl reinitializeDevice"
        " atomicWriteFile createObject deleteObject"
    ),
    "opcua": _w(
        "WriteRequest CallRequest AddNodesRequest DeleteNodesRequest AddReferencesRequest"
        " DeleteReferencesRequest HistoryUpdateRequest"
    ),
}
"""OT critical commands: requests (``function_name`` as the decoders in ``collectors/apps``
name them) that write process values, operate outputs, change a controller's program,
configuration or run state (stop, restart, download/upload), or silence its reporting."""

ACTIONS: dict[str, str] = {
    "recon_scan": "find out who runs the scanner; block the source at the enterprise boundary "
    "if it is not an authorised scan",
    "ot_recon": "confirm the source is not an engineering workstation on a job; block it from "
    "the OT zone and watch for writes that follow",
    "brute_force": "lock or reset the targeted accounts, block the source, and check the "
    "target's logs for a successful login",
    "exploit": "patch or isolate the targeted service; check the target for compromise",
    "c2": "isolate the beaconing host from the network and image it for forensics",
    "lateral_movement": "isolate the source host, reset the credentials it used, and check "
    "the targets for new services or accounts",
    "exfiltration": "block the destination, preserve the flows, and find what data left",
    "dos": "rate-limit or block the source at the boundary; check the target is still "
    "answering its masters",
    "mitm": "find the host answering for addresses it does not own (ARP/MAC), unplug it, "
    "and flush the ARP caches of the affected hosts",
    "ot_unauthorized_write": "check the PLC's program and setpoints against the engineering "
    "baseline; block the writer at the enterprise boundary",
    "ot_unauthorized_command": "check the device's run state, configuration and program "
    "against the baseline; block the sender from the OT zone",
    "ot_replay_injection": "compare the device's values with the field; block the injecting "
    "host and enable authentication where the protocol allows it",
    "policy_violation": "close the conduit that was used or grant it in the policy; find "
    "who opened it",
}
"""Recommended first action per attack category (when the incident is in no campaign)."""
ATTR_FIRST = (
    "host", "method", "uri", "status", "user_agent", "name", "qtype_name", "rcode_name",
    "topic", "sni", "server_name", "auth_user",
)
"""Protocol metadata keys shown first among an event's ``attrs``."""


TIMELINE_MAX = 300
"""Alerts shown in an incident's timeline: the first ones and the last ``TIMELINE_TAIL`` (a
scan can group thousands; all of them are in the per-rule counts, the exports and the API)."""
TIMELINE_TAIL = 50


class FilterError(ValueError):
    """A queue or dashboard parameter that makes no sense (shown to the user, status 400)."""


def parse_time(text: str | None, end: bool = False) -> int | None:
    """ns from RFC 3339 text or a date ``YYYY-MM-DD`` (its start; its last ns when ``end``)."""
    if not text or not text.strip():
        return None
    s = text.strip()
    try:
        if len(s) == 10:
            ns = parse_ts(s + "T00:00:00Z")
            ns = ns + DAY - 1 if end else ns
        else:
            ns = parse_ts(s)
    except SchemaError as exc:
        raise FilterError(f"not a date or RFC 3339 time: {s!r}") from exc
    if not -(2**63) <= ns < 2**63:  # the store's times are signed 64-bit ns (1678..2262)
        raise FilterError(f"{s!r} is outside the years 1678..2262")
    return ns


@dataclass
class QueueFilter:
    """The incident queue's query parameters, validated."""

    enterprise: str | None = None
    severity: str | None = None
    category: str | None = None
    status: str | None = None
    attacker: str | None = None
    since: str | None = None
    until: str | None = None
    sort: str = "last_seen"
    order: str = "desc"
    errors: list[str] = field(default_factory=list)

    def check(self) -> None:
        for name, allowed in (("severity", LEVELS), ("category", CATEGORIES),
                              ("status", STATUSES), ("sort", SORTS), ("order", ("asc", "desc"))):
            value = getattr(self, name)
            if value and value not in allowed:
                self.errors.append(f"unknown {name} {value!r}")
                setattr(self, name, None if name not in ("sort", "order") else
                        ("last_seen" if name == "sort" else "desc"))

    def params(self, **change: str | None) -> dict[str, str]:
        keys = ("enterprise", "severity", "category", "status", "attacker", "since", "until",
                "sort", "order")
        out = {k: getattr(self, k) for k in keys}
        out.update(change)
        return {k: v for k, v in out.items() if v}


def enterprises(st: SqliteStore, scope: str | None) -> list[str]:
    """Enterprise ids with incidents (only ``scope`` for a scoped user)."""
    if scope is not None:
        return [scope]
    rows = st.conn.execute(
        "SELECT DISTINCT enterprise FROM enterprises WHERE kind = 'incidents' ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def assignees(st: SqliteStore) -> dict[str, str]:
    rows = st.conn.execute("SELECT id, assignee FROM incidents WHERE assignee IS NOT NULL")
    return {r[0]: r[1] for r in rows.fetchall()}


def queue(st: SqliteStore, scope: str | None, f: QueueFilter) -> dict[str, Any]:
    """The filtered, sorted incidents and their counts by status and severity."""
    f.check()
    since = until = None
    try:
        since = parse_time(f.since)
        until = parse_time(f.until, end=True)
    except FilterError as exc:
        f.errors.append(str(exc))
    ent = scope if scope is not None else (f.enterprise or None)
    incs = st.incidents(since_ns=since, until_ns=until, enterprise=ent, status=f.status)
    incs = [i for i in incs if (not f.severity or i.severity == f.severity)
            and (not f.category or i.category == f.category)
            and (not f.attacker or f.attacker in i.attackers)]
    key = {
        "first_seen": lambda i: (i.first_seen, i.id),
        "last_seen": lambda i: (i.last_seen, i.id),
        "severity": lambda i: (LEVEL_RANK.get(i.severity, -1), i.last_seen, i.id),
        "alert_count": lambda i: (i.alert_count, i.last_seen, i.id),
    }[f.sort]
    incs.sort(key=key, reverse=f.order == "desc")
    by_status = Counter(i.status for i in incs)
    by_sev = Counter(i.severity for i in incs)
    return {
        "incidents": incs,
        "by_status": [(s, by_status.get(s, 0)) for s in STATUSES],
        "by_severity": [(s, by_sev.get(s, 0)) for s in reversed(LEVELS)],
        "assignees": assignees(st),
    }


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return text if len(text) <= limit else text[:limit] + "…"


def event_row(rec: Record) -> dict[str, Any]:
    """One evidence event as the incident page lists it (any event schema)."""
    d = rec.to_dict()
    attrs = d.get("attrs") or {}
    keys = [k for k in ATTR_FIRST if k in attrs] + sorted(k for k in attrs if k not in ATTR_FIRST)
    src = d.get("src_ip") or d.get("sender_ip")
    dst = d.get("dst_ip") or d.get("target_ip")
    return {
        "uid": d.get("uid", ""), "ts": d.get("ts"), "schema": type(rec).SCHEMA,
        "protocol": d.get("protocol") or type(rec).SCHEMA.split(".")[-1],
        "direction": d.get("direction") or d.get("op") or d.get("name", ""),
        "src": f"{src}:{d['src_port']}" if src and d.get("src_port") is not None else src,
        "dst": f"{dst}:{d['dst_port']}" if dst and d.get("dst_port") is not None else dst,
        "function_code": d.get("function_code"), "function_name": d.get("function_name"),
        "unit": d.get("unit"), "address": d.get("address"), "quantity": d.get("quantity"),
        "vals": None if d.get("values") is None else _short(list(d["values"])),
        "data_area": d.get("data_area"), "exception_code": d.get("exception_code"),
        "critical": isinstance(rec, OtEvent) and is_critical(rec),
        "attrs": [(k, _short(attrs[k])) for k in keys],
        "detail": d.get("detail", ""),
    }


def flow_row(rec: Record) -> dict[str, Any]:
    d = rec.to_dict()
    return {
        "uid": d.get("uid", ""), "start": d.get("start"), "end": d.get("end"),
        "src": f"{d.get('src_ip')}:{d.get('src_port')}",
        "dst": f"{d.get('dst_ip')}:{d.get('dst_port')}",
        "proto": {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}.get(d.get("proto", -1),
                                                                     str(d.get("proto"))),
        "app_proto": d.get("app_proto"), "conn_state": d.get("conn_state"),
        "history": d.get("history"),
        "bytes": f"{d.get('orig_bytes', 0)} / {d.get('resp_bytes', 0)}",
        "pkts": f"{d.get('orig_pkts', 0)} / {d.get('resp_pkts', 0)}",
        "http_host": d.get("http_host"), "sni": d.get("sni"),
        "zones": f"{d.get('src_zone') or '?'} → {d.get('dst_zone') or '?'}",
    } if isinstance(rec, FlowRecord) else {"uid": getattr(rec, "uid", ""), "start": None}


def _involves(rec: Any, scope: str) -> bool:
    return scope in record_enterprises(rec)


def incident_detail(st: SqliteStore, inc: Incident, scope: str | None = None) -> dict[str, Any]:
    """Everything the incident page shows beside the incident itself. For an enterprise user
    (``scope``) only the alerts, flows and events that involve their enterprise: an incident
    grouped by attacker alone (a scanner probing two enterprises) also holds the other's."""
    alerts = st.alerts(incident_id=inc.id)
    own_uids: tuple[str, ...] = (*inc.flow_uids, *inc.event_uids)
    if scope is not None:
        alerts = [a for a in alerts if _involves(a, scope)]
        own_uids = ()
    flow_uids = list(dict.fromkeys([*(u for u in own_uids if u in inc.flow_uids),
                                    *(u for a in alerts for u in a.flow_uids)]))
    event_uids = list(dict.fromkeys([*(u for u in own_uids if u in inc.event_uids),
                                     *(u for a in alerts for u in a.event_uids)]))
    flows = results.flows_by_uid(st, flow_uids)
    events = results.events_by_uid(st, event_uids)
    if scope is not None:
        flows = [r for r in flows if _involves(r, scope)]
        events = [r for r in events if _involves(r, scope)]
    camp = results.campaign(st, inc.campaign) if inc.campaign else None
    if camp and camp.get("recommendation"):
        action, action_from = str(camp["recommendation"]), "campaign"
    else:
        action = ACTIONS.get(inc.category, "review the evidence and decide")
        action_from = "category"
    by_rule = Counter((a.rule_id, a.title) for a in alerts)
    shown = alerts if len(alerts) <= TIMELINE_MAX else [
        *alerts[:TIMELINE_MAX - TIMELINE_TAIL], *alerts[-TIMELINE_TAIL:]]
    return {
        "alerts": shown,
        "alert_total": len(alerts),
        "alerts_hidden": len(alerts) - len(shown),
        "hidden_after": TIMELINE_MAX - TIMELINE_TAIL,
        "by_rule": sorted(by_rule.items(), key=lambda kv: (-kv[1], kv[0])),
        "flows": [flow_row(r) for r in flows],
        "events": [event_row(r) for r in events],
        "campaign": camp,
        "action": action,
        "action_from": action_from,
        "assignee": workflow.assignee(st, inc.id),
        "comments": workflow.comments(st, inc.id),
        "audit": workflow.audit_log(st, target=inc.id),
        "suppressions": [s for s in workflow.suppressions(st, active_only=False)
                         if s["incident_id"] == inc.id],
        "can_ack": inc.status == "open",
        "can_close": inc.status in workflow.ACTIVE,
    }


def is_critical(ev: OtEvent) -> bool:
    return ev.direction == "request" and (ev.function_name or "") in CRITICAL.get(
        ev.protocol, frozenset()
    )


def pick_period(incs: list[Incident], name: str) -> tuple[str, int]:
    """The dashboard period: a name of PERIODS, or ``auto`` from the incidents' time span."""
    if name in PERIODS:
        return name, PERIODS[name]
    if name not in ("", "auto"):
        raise FilterError(f"unknown period {name!r}: hour, day, week or auto")
    span = (max(i.last_seen for i in incs) - min(i.first_seen for i in incs)) if incs else 0
    pick = "hour" if span <= 3 * DAY else "day" if span <= 120 * DAY else "week"
    return pick, PERIODS[pick]


def ratio_series(
    incs: list[Incident], scope: str | None, period_ns: int
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Per enterprise: its overall defended-ratio cell and its per-period cells
    (:func:`parkwatch.indicators.defended_ratio` over that enterprise's incidents)."""
    ents = sorted({e for i in incs for e in i.enterprises})
    if scope is not None:
        ents = [e for e in ents if e == scope]
    out: dict[str, dict[str, Any]] = {}
    periods: set[str] = set()
    for ent in ents:
        rep = defended_ratio([i for i in incs if ent in i.enterprises], period_ns)
        out[ent] = {"total": rep["enterprise"].get(ent, rep["park"]), "period": rep["period"]}
        periods.update(rep["period"])
    return sorted(periods), out


def top_attackers(incs: list[Incident], n: int = 10) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for inc in incs:
        for ip in inc.attackers:
            r = rows.setdefault(ip, {"ip": ip, "incidents": 0, "enterprises": set(),
                                     "categories": set(), "last_seen": 0})
            r["incidents"] += 1
            r["enterprises"].update(inc.enterprises)
            r["categories"].add(inc.category)
            r["last_seen"] = max(r["last_seen"], inc.last_seen)
    ranked = sorted(rows.values(), key=lambda r: (-r["incidents"], -r["last_seen"], r["ip"]))
    return [{**r, "enterprises": sorted(r["enterprises"]), "categories": sorted(r["categories"])}
            for r in ranked[:n]]


def critical_commands(
    st: SqliteStore, scope: str | None, incs: list[Incident], limit: int = 100
) -> dict[str, Any]:
    """Stored OT critical commands (newest first, at most ``limit``) and counts by function."""
    of_event = {u: i.id for i in incs for u in i.event_uids}
    evs = [e for e in results.events_named(st, CRITICAL, scope)
           if isinstance(e, OtEvent) and is_critical(e)]
    counts = Counter((e.protocol, e.function_name or "") for e in evs)
    rows = [{**event_row(e), "incident": of_event.get(e.uid)} for e in reversed(evs[-limit:])]
    return {"rows": rows, "total": len(evs),
            "counts": sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}


def asset_summary(assets: list[dict[str, Any]]) -> dict[str, Any]:
    roles = Counter(r for a in assets for r in (a.get("roles") or ()))
    return {"total": len(assets), "by_role": sorted(roles.items(), key=lambda kv: (-kv[1], kv[0])),
            "unclassified": sum(1 for a in assets if not a.get("roles"))}

