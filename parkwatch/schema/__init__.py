"""ParkWatch record schemas, versioned and documented (see each module)."""

from parkwatch.schema.alerts import CATEGORIES, LEVELS, Alert, Incident
from parkwatch.schema.base import Record, SchemaError, format_ts, parse_ts
from parkwatch.schema.events import ArpEvent, OtEvent, Weird
from parkwatch.schema.flow import CONN_STATES, END_REASONS, FlowRecord
from parkwatch.schema.hits import CorrelationHit

RECORD_TYPES: tuple[type[Record], ...] = (
    FlowRecord,
    Weird,
    ArpEvent,
    OtEvent,
    Alert,
    Incident,
    CorrelationHit,
)
"""Every record type; contract tests run over all of them."""

__all__ = [
    "CATEGORIES",
    "CONN_STATES",
    "END_REASONS",
    "LEVELS",
    "RECORD_TYPES",
    "Alert",
    "ArpEvent",
    "CorrelationHit",
    "FlowRecord",
    "Incident",
    "OtEvent",
    "Record",
    "SchemaError",
    "Weird",
    "format_ts",
    "parse_ts",
]
