"""Elasticsearch index templates and documents for ParkWatch records (ECS names, ``ics.*``).

Field names come from :func:`parkwatch.ecs.ecs_name`; documents are nested objects built from
the dotted names (``source.ip`` -> ``{"source": {"ip": …}}``). Mappings are explicit and
``dynamic: strict``: a field the template does not know is refused (with its name) instead of
being guessed. Two open groups take any key as ``keyword``: ``ics.attrs.*`` (protocol attributes
without an ECS home) and ``parkwatch.evidence.*`` (alert evidence); nested values there are
flattened to dotted keys and lists of objects are stored as JSON text.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from parkwatch.ecs import BY_SCHEMA, COMMON, ecs_name
from parkwatch.schema import Alert, ArpEvent, FlowRecord, Incident, OtEvent, Record, Weird
from parkwatch.transport.base import record_id

KINDS: dict[str, tuple[type[Record], ...]] = {
    "flows": (FlowRecord,),
    "events": (OtEvent, ArpEvent, Weird),
    "alerts": (Alert,),
    "incidents": (Incident,),
}
"""Index kind -> record types written to it."""

KIND_OF: dict[str, str] = {t.SCHEMA: kind for kind, types in KINDS.items() for t in types}

IP_FIELDS = frozenset({"src_ip", "dst_ip", "attackers", "targets", "sender_ip", "target_ip"})
TEXT_FIELDS = frozenset({"title", "reason", "detail", "defended_evidence"})
OPEN_GROUPS = ("ics.attrs", "parkwatch.evidence")
ECS_KIND = {"flows": "event", "events": "event", "alerts": "alert", "incidents": "alert"}
TIMESTAMP_FROM = {"parkwatch.flow": "start", "parkwatch.incident": "first_seen"}
"""Records without a ``ts`` field get ``@timestamp`` from this field."""

# OtEvent attrs keys with an ECS home (ecs.EVENT) and their types; other keys -> ics.attrs.<key>
ATTR_TYPES = {"answers": "long", "status": "long"}


def field_name(schema: str, field: str) -> str:
    """Dotted ECS name of ``field``; record types without an ECS table use the common names."""
    if schema in BY_SCHEMA:
        return ecs_name(schema, field)
    return COMMON.get(field, f"parkwatch.{field}")


_EVENT_FIELDS = frozenset(f.name for f in dataclasses.fields(OtEvent))


def attr_name(key: str) -> str:
    """ECS name of an OtEvent ``attrs`` key: its ECS home (``dns.question.name``) or ics.attrs."""
    if key not in _EVENT_FIELDS and key not in COMMON and key in BY_SCHEMA[OtEvent.SCHEMA]:
        return ecs_name(OtEvent.SCHEMA, key)
    return f"ics.attrs.{key}"


def _es_type(f: dataclasses.Field[Any]) -> dict[str, Any]:
    t = str(f.type)
    if f.metadata.get("ts"):
        return {"type": "date_nanos"}
    if f.name in IP_FIELDS:
        return {"type": "ip"}
    if f.name in TEXT_FIELDS:
        return {"type": "text"}
    if t.startswith("dict"):
        return {"type": "object", "dynamic": True}
    if t.startswith("bool"):
        return {"type": "boolean"}
    if t.startswith("int"):
        return {"type": "long"}
    if t.startswith("float"):
        return {"type": "double"}
    return {"type": "keyword", "ignore_above": 4096}


def _put(props: dict[str, Any], dotted: str, leaf: dict[str, Any], where: str) -> None:
    *parents, last = dotted.split(".")
    node = props
    for part in parents:
        obj = node.setdefault(part, {"properties": {}})
        if "properties" not in obj:
            raise ValueError(f"{where}: {dotted} nests under leaf field {part}")
        node = obj["properties"]
    old = node.get(last)
    if old is not None and old != leaf:
        raise ValueError(f"{where}: {dotted} mapped twice ({old} vs {leaf})")
    node[last] = leaf


def mappings(kind: str) -> dict[str, Any]:
    """Explicit mappings of the ``kind`` index (see :data:`KINDS`)."""
    props: dict[str, Any] = {}
    base = {"type": "keyword"}
    for name in ("event.dataset", "event.kind", "parkwatch.schema"):
        _put(props, name, base, kind)
    _put(props, "@timestamp", {"type": "date_nanos"}, kind)
    for cls in KINDS[kind]:
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if cls is OtEvent and f.name == "attrs":
                continue
            _put(props, field_name(cls.SCHEMA, f.name), _es_type(f), cls.SCHEMA)
        if cls is OtEvent:
            for key in BY_SCHEMA[OtEvent.SCHEMA]:
                name = attr_name(key)
                if not name.startswith("ics.attrs."):
                    _put(props, name, {"type": ATTR_TYPES.get(key, "keyword")}, "attrs")
    _put(props, "ics.attrs", {"type": "object", "dynamic": True}, kind)
    templates = [
        {
            f"open_{group.replace('.', '_')}": {
                "path_match": f"{group}.*",
                "match_mapping_type": "*",
                "mapping": {"type": "keyword", "ignore_above": 4096},
            }
        }
        for group in OPEN_GROUPS
    ]
    return {"dynamic": "strict", "dynamic_templates": templates, "properties": props}


def doc_id(record: Record) -> str:
    """Document id: the record's ``uid`` / ``id``; content hash for records without one
    (:func:`parkwatch.transport.base.record_id`, the id every stage dedups by)."""
    return record_id(record)


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _flatten(prefix: str, value: dict[str, Any], out: dict[str, Any]) -> None:
    for key, item in value.items():
        name = f"{prefix}.{key}".replace("..", ".")
        if isinstance(item, dict):
            _flatten(name, item, out)
        elif isinstance(item, list | tuple):
            out[name] = [_scalar(v) for v in item]
        else:
            out[name] = _scalar(item)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, last = dotted.split(".")
        node = doc
        for part in parents:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):  # a flattened key under a scalar: keep both readable
                nxt = node[part] = {"value": nxt}
            node = nxt
        if isinstance(node.get(last), dict):
            node[last]["value"] = value
        else:
            node[last] = value
    return doc


def document(record: Record) -> dict[str, Any]:
    """The ECS document of ``record`` (nested objects; ``None`` fields left out)."""
    schema = type(record).SCHEMA
    kind = KIND_OF[schema]
    data = record.to_dict()
    flat: dict[str, Any] = {
        "event.dataset": schema,
        "event.kind": ECS_KIND[kind],
        "parkwatch.schema": data.pop("schema"),
    }
    attrs = data.pop("attrs", None) if schema == OtEvent.SCHEMA else None
    for key, value in data.items():
        if value is None:
            continue
        name = field_name(schema, key)
        if isinstance(value, dict):
            _flatten(name, value, flat)
        elif isinstance(value, list):
            flat[name] = [_scalar(v) for v in value]
        else:
            flat[name] = value
    if attrs:
        for key, value in attrs.items():
            name = attr_name(key)
            if isinstance(value, dict):
                _flatten(name, value, flat)
            elif isinstance(value, list | tuple):
                flat[name] = [_scalar(v) for v in value]
            else:
                flat[name] = _scalar(value)
    source = TIMESTAMP_FROM.get(schema)
    if source is not None:
        flat["@timestamp"] = data[source]
    return _nest(flat)
