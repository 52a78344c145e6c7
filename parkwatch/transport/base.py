"""The transport interface: publish batches of records, consume them in a group, commit.

Records travel as their schema JSON (``record.to_json()``) with a ``schema`` header
(``record.schema_id()``, e.g. ``b"parkwatch.flow/2"``) so a consumer decodes without guessing.
Keys give partition affinity: the Community ID for flow-level data (flows, OT/IT events),
the attacker (else the enterprise) for alerts and incidents (:func:`key_for`).

Two implementations register in :data:`TRANSPORTS` by URL scheme: ``memory`` (in-process,
the default) and ``kafka`` (kafka-python). :func:`open_transport` picks one from a URL.
Consumers are at-least-once: :meth:`Consumer.commit` commits what ``poll`` returned, and a
stage calls it only after its own output was flushed (see :mod:`parkwatch.transport.worker`);
duplicates are dropped downstream by record id (:func:`record_id`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field

from parkwatch.errors import ConfigError
from parkwatch.registry import Registry
from parkwatch.schema import (
    RECORD_TYPES,
    Alert,
    ArpEvent,
    CorrelationHit,
    FlowRecord,
    Incident,
    OtEvent,
    Record,
    SchemaError,
    Weird,
)
from parkwatch.schema.columns import Columns


@dataclass(frozen=True)
class Message:
    """One record as a consumer receives it (``offset`` is the broker's; records packed into
    one Kafka message share its offset)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


class Consumer(Protocol):
    def poll(self, timeout: float = 1.0, max_records: int = 500) -> list[Message]: ...
    def commit(self) -> None: ...  # commit everything returned by poll so far
    def close(self) -> None: ...


class Transport(Protocol):
    def publish(
        self,
        topic: str,
        values: Sequence[bytes],
        keys: Sequence[bytes | None] | None = None,
        headers: dict[str, bytes] | None = None,
    ) -> None: ...
    def flush(self, timeout: float | None = None) -> None: ...
    def subscribe(self, topics: Sequence[str], group: str) -> Consumer: ...
    def close(self) -> None: ...


class Topics(BaseModel):
    """Topic names (configurable); one feed topic per enterprise: ``<feed_prefix>.<id>``."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    flows: str = Field("parkwatch.flows", description="Flow records.")
    events: str = Field("parkwatch.events", description="OT/IT events, ARP events, weirds.")
    alerts: str = Field("parkwatch.alerts", description="Detector alerts.")
    incidents: str = Field("parkwatch.incidents", description="Correlated incidents.")
    hits: str = Field(
        "parkwatch.hits", description="Correlation hits between detect members (split mode)."
    )
    feed_prefix: str = Field("parkwatch.feed", description="Per-enterprise feed topic prefix.")

    def feed(self, enterprise: str) -> str:
        return f"{self.feed_prefix}.{enterprise}"

    def for_record(self, record: Record) -> str:
        """The default topic of a record by its type."""
        if isinstance(record, FlowRecord):
            return self.flows
        if isinstance(record, Alert):
            return self.alerts
        if isinstance(record, Incident):
            return self.incidents
        if isinstance(record, CorrelationHit):
            return self.hits
        return self.events


TOPICS = Topics.model_construct()  # the defaults (validated models are built on first use)
"""Default topic names."""


class TransportSettings(BaseModel):
    """Producer, consumer and spool settings (``Settings.transport``)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    topics: Topics = Field(default_factory=Topics)
    partitions: int = Field(3, ge=1, description="Partitions of topics this client creates.")
    linger_ms: int = Field(20, ge=0, description="Producer: wait this long to fill a batch.")
    batch_size: int = Field(1 << 20, ge=1024, description="Producer batch bytes per partition.")
    compression: Literal["auto", "lz4", "gzip", "none"] = Field(
        "auto", description="auto: lz4 when the lz4 package is installed, else gzip."
    )
    pack: int = Field(
        500, ge=0, description="Records per Kafka message (JSON lines); 0: one message each."
    )
    pack_bytes: int = Field(512 << 10, ge=1024, description="Bytes per packed Kafka message.")
    request_timeout_ms: int = Field(5000, ge=100)
    max_block_ms: int = Field(3000, ge=10, description="Wait for metadata / buffer space.")
    flush_timeout: float = Field(10.0, gt=0, description="Seconds before a flush counts failed.")
    fetch_max_wait_ms: int = Field(100, ge=0, description="Consumer: broker waits for data.")
    session_timeout_ms: int = Field(10000, ge=1000)
    heartbeat_interval_ms: int = Field(3000, ge=100)
    spool_max_bytes: int = Field(256 << 20, ge=1 << 16, description="Spool bound on disk.")
    spool_segment_bytes: int = Field(16 << 20, ge=1 << 12)
    spool_fsync: Literal["batch", "interval", "never"] = Field(
        "batch", description="fsync spool writes: every batch, once a second, or never."
    )
    retry_interval: float = Field(1.0, gt=0, description="Seconds between broker probes.")


TRANSPORTS: Registry[Callable[[str, TransportSettings], Transport]] = Registry("transport")
"""URL scheme -> factory(url, settings)."""


def open_transport(url: str | None, settings: TransportSettings | None = None) -> Transport:
    """``None``/``memory://[name]`` -> in-process; ``kafka://host:port[,host:port]`` -> Kafka."""
    import parkwatch.transport.kafka
    import parkwatch.transport.memory  # noqa: F401  (register the implementations)

    url = url or "memory://"
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ConfigError(
            f"transport URL {url!r} has no scheme",
            field="to",
            hint="use memory:// or kafka://HOST:PORT[,HOST:PORT]",
        )
    return TRANSPORTS.get(scheme.lower())(url, settings or TransportSettings())


SCHEMAS: dict[str, type[Record]] = {cls.schema_id(): cls for cls in RECORD_TYPES}
"""Schema id -> record type (the ``schema`` header names one)."""


def record_id(record: Record) -> str:
    """The record's id (``uid`` or ``id`` field); records without one (weirds, ARP events)
    get a content hash, so the same fact delivered twice has the same id."""
    for name in ("uid", "id"):
        value = getattr(record, name, None)
        if isinstance(value, str) and value:
            return value
    return "h" + hashlib.blake2b(record.to_json(), digest_size=12).hexdigest()


def key_for(record: Record) -> bytes | None:
    """Partition key: Community ID for flows and OT/IT events, the first attacker (else the
    first enterprise) for alerts and incidents, the sender IP for ARP, the vantage for weirds,
    the correlation rule and group for correlation hits."""
    if isinstance(record, CorrelationHit):
        return record.partition_key()
    key: str | None = None
    if isinstance(record, FlowRecord | OtEvent):
        key = record.community_id
    elif isinstance(record, Alert | Incident):
        pick = record.attackers or record.enterprises
        key = pick[0] if pick else record_id(record)
    elif isinstance(record, ArpEvent):
        key = record.sender_ip
    elif isinstance(record, Weird):
        key = record.vantage
    return key.encode() if key else None


def schema_header(kind: type[Record]) -> dict[str, bytes]:
    return {"schema": kind.schema_id().encode()}


def decode_message(msg: Message) -> Record:
    """The record in ``msg``, typed by its ``schema`` header (else the JSON's ``schema``)."""
    sid = msg.headers.get("schema")
    if sid is None:
        try:
            data: Any = orjson.loads(msg.value)
        except orjson.JSONDecodeError as exc:
            raise SchemaError(f"not JSON: {exc}") from exc
        if not isinstance(data, dict) or "schema" not in data:
            raise SchemaError("message has no schema header and no 'schema' field")
        sid = str(data["schema"]).encode()
    kind = SCHEMAS.get(sid.decode("utf-8", "replace"))
    if kind is None:
        raise SchemaError(f"unknown schema {sid!r} (known: {', '.join(SCHEMAS)})")
    return kind.from_json(msg.value)


def publish_records(transport: Transport, pairs: Iterable[tuple[str, Record]]) -> int:
    """Publish ``(topic, record)`` pairs, one ``publish`` per run of equal topic and schema
    (order kept within a topic); return the number of records."""
    groups: dict[tuple[str, type[Record]], list[Record]] = {}
    for topic, rec in pairs:
        groups.setdefault((topic, type(rec)), []).append(rec)
    n = 0
    for (topic, kind), recs in groups.items():
        transport.publish(
            topic, [r.to_json() for r in recs], [key_for(r) for r in recs], schema_header(kind)
        )
        n += len(recs)
    return n


def publish_flows(transport: Transport, topic: str, cols: Columns[FlowRecord]) -> int:
    """Publish a batch of flows straight from their columns (no dataclass per row)."""
    if not len(cols):
        return 0
    values = cols.jsonl().split(b"\n")[:-1]
    keys = [c.encode() if c else None for c in cols["community_id"].tolist()]
    transport.publish(topic, values, keys, schema_header(FlowRecord))
    return len(values)
