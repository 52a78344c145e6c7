"""ParkWatch field names -> Elasticsearch Common Schema (ECS) field names.

One table, used by the Elasticsearch sink (documents are written with these names) and by the
Sigma processing pipeline in ``rules/`` (rules written against ParkWatch fields convert to
queries over the indexed documents). OT fields live in an ``ics.*`` group, protocol-specific
attributes under ``ics.attrs.*`` (OT) or their ECS home where ECS has one (``dns.*``,
``http.*``, ``tls.*``, ``url.*``, ``user_agent.*``).
"""

from __future__ import annotations

COMMON: dict[str, str] = {
    "uid": "event.id",
    "ts": "@timestamp",
    "start": "event.start",
    "end": "event.end",
    "vantage": "observer.name",
    "src_ip": "source.ip",
    "src_port": "source.port",
    "dst_ip": "destination.ip",
    "dst_port": "destination.port",
    "src_mac": "source.mac",
    "dst_mac": "destination.mac",
    "community_id": "network.community_id",
    "proto": "network.iana_number",
    "vlan": "network.vlan.id",
    "vlan_inner": "network.inner.vlan.id",
    "app_proto": "network.protocol",
    "src_enterprise": "source.enterprise",
    "src_zone": "source.zone",
    "src_role": "source.role",
    "dst_enterprise": "destination.enterprise",
    "dst_zone": "destination.zone",
    "dst_role": "destination.role",
}
"""Fields shared by flows and events."""

FLOW: dict[str, str] = {
    **COMMON,
    "conn_state": "zeek.connection.state",
    "history": "zeek.connection.history",
    "end_reason": "flow.end_reason",
    "orig_pkts": "source.packets",
    "orig_bytes": "source.bytes",
    "orig_payload_bytes": "source.payload_bytes",
    "orig_l2_bytes": "source.l2_bytes",
    "orig_flags": "source.tcp_flags",
    "resp_pkts": "destination.packets",
    "resp_bytes": "destination.bytes",
    "resp_payload_bytes": "destination.payload_bytes",
    "resp_l2_bytes": "destination.l2_bytes",
    "resp_flags": "destination.tcp_flags",
    "sni": "tls.client.server_name",
    "http_host": "url.domain",
}
"""FlowRecord fields."""

EVENT: dict[str, str] = {
    **COMMON,
    "protocol": "network.protocol",
    "direction": "ics.direction",
    "flow_uid": "flow.id",
    "unit": "ics.unit",
    "function_code": "ics.function_code",
    "function_name": "ics.function_name",
    "exception_code": "ics.exception_code",
    "request_uid": "ics.request_id",
    "address": "ics.address",
    "quantity": "ics.quantity",
    "values": "ics.values",
    "data_area": "ics.data_area",
    # IT attributes with an ECS home (decoders' attrs keys)
    "query": "dns.question.name",
    "qtype_name": "dns.question.type",
    "rcode_name": "dns.response_code",
    "answers": "dns.answers_count",
    "method": "http.request.method",
    "host": "url.domain",
    "uri": "url.original",
    "user_agent": "user_agent.original",
    "status": "http.response.status_code",
    "sni": "tls.client.server_name",
    "ja3": "tls.client.ja3",
    "tls_version": "tls.version",
    "user": "user.name",
    "name": "dns.question.name",
    "qtype": "dns.question.type_code",
    "login": "event.outcome_login",
    "auth_scheme": "http.request.auth_scheme",
    "share": "file.share",
    "filename": "file.name",
    "iin_flags": "ics.dnp3.iin_flags",
    "class": "ics.cip.class",
    "mei_type": "ics.modbus.mei_type",
    "subfunction": "ics.subfunction",
    "topics": "ics.mqtt.topics",
    "identity_token": "ics.opcua.identity_token",
    "security_mode": "ics.opcua.security_mode",
    "pi_service": "ics.s7.pi_service",
    "session_cookie": "http.request.session_fingerprint",
    "prompt": "process.shell.prompt",
    "command": "process.command_line",
}
"""OtEvent fields (attrs keys not listed map to ``ics.attrs.<key>``)."""

WEIRD: dict[str, str] = {
    **COMMON,
    "protocol": "network.protocol",
    "flow_uid": "flow.id",
}
"""Weird fields (the flow context of a decoder's weird, named as in events)."""

ALERT: dict[str, str] = {
    "uid": "event.id",
    "ts": "@timestamp",
    "detector": "event.provider",
    "rule_id": "rule.id",
    "title": "rule.name",
    "level": "event.severity_name",
    "category": "event.category_name",
    "techniques": "threat.technique.id",
    "tactics": "threat.tactic.name",
    "attackers": "source.ip",
    "targets": "destination.ip",
    "enterprises": "organization.id",
    "vantage": "observer.name",
    "flow_uids": "related.flow_ids",
    "event_uids": "related.event_ids",
    "reason": "event.reason",
    "score": "event.risk_score",
}
"""Alert fields."""

INCIDENT: dict[str, str] = {
    "id": "event.id",
    "first_seen": "event.start",
    "last_seen": "event.end",
    "category": "event.category_name",
    "severity": "event.severity_name",
    "techniques": "threat.technique.id",
    "tactics": "threat.tactic.name",
    "attackers": "source.ip",
    "targets": "destination.ip",
    "enterprises": "organization.id",
    "defended": "event.outcome_defended",
    "alert_count": "event.alert_count",
    "title": "message",
    "campaign": "threat.campaign.id",
    "status": "event.status",
}
"""Incident fields."""

BY_SCHEMA: dict[str, dict[str, str]] = {
    "parkwatch.flow": FLOW,
    "parkwatch.ot_event": EVENT,
    "parkwatch.weird": WEIRD,
    "parkwatch.alert": ALERT,
    "parkwatch.incident": INCIDENT,
}


def ecs_name(schema: str, field: str) -> str:
    """The ECS name of ParkWatch ``field`` in records of ``schema`` (``parkwatch.flow``).

    Unmapped fields keep their name under ``parkwatch.``; unmapped event attributes go to
    ``ics.attrs.<key>``.
    """
    table = BY_SCHEMA.get(schema, {})
    if field in table:
        return table[field]
    if schema == "parkwatch.ot_event":
        return f"ics.attrs.{field}"
    return f"parkwatch.{field}"
