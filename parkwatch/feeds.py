"""Per-enterprise feeds: each enterprise's topic and webhook get its own alerts and incidents.

Routing: a record (Alert or Incident) belongs to the enterprises named in its ``enterprises``
field, compared as exact strings against the configured enterprise ids; a record naming
several goes to each of them, a record naming none, or only unknown ids, goes to no feed (both
counted). An incident shared by several enterprises goes to each as its cut
(:func:`parkwatch.tenancy.scope_incident`): only the targets, alerts and evidence that involve
that enterprise. Topics come from the configuration, never from record content
(``<prefix>.<enterprise id>`` unless set), and two enterprises may not share a topic or a
webhook secret.

Webhooks: ``POST`` of JSON ``{"enterprise", "delivery", "records": [...]}`` (up to
``batch_size`` records of that one enterprise), signed as documented in ``docs/OUTPUTS.md``::

    X-ParkWatch-Timestamp: <unix seconds>
    X-ParkWatch-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

Retries with exponential backoff on 5xx, 429 and connection errors; redirects are refused (they
could carry one tenant's data elsewhere); anything undeliverable is kept as a dead letter and
counted, never dropped silently.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from parkwatch.errors import ConfigError, ParkWatchError
from parkwatch.schema import Alert, Incident, Record
from parkwatch.tenancy import scope_incident
from parkwatch.transport.base import Transport, key_for, record_id, schema_header

SIGNATURE_HEADER = "X-ParkWatch-Signature"
TIMESTAMP_HEADER = "X-ParkWatch-Timestamp"
ENTERPRISE_HEADER = "X-ParkWatch-Enterprise"
DELIVERY_HEADER = "X-ParkWatch-Delivery"
ENTERPRISE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class EnterpriseFeed(BaseModel):
    """Where one enterprise's feed goes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str | None = Field(None, description="Topic (default: '<prefix>.<enterprise id>').")
    webhook: str | None = Field(None, description="https:// (or http://) URL to POST to.")
    secret: str | None = Field(None, min_length=16, description="HMAC key of the webhook.")

    @model_validator(mode="after")
    def _check(self) -> EnterpriseFeed:
        if self.webhook is not None:
            if not re.match(r"^https?://[^/\s]+", self.webhook):
                raise ValueError("webhook must be an http:// or https:// URL")
            if self.secret is None:
                raise ValueError("a webhook needs a secret (16 characters or more)")
        return self


class FeedSettings(BaseModel):
    """Feed routing table and delivery settings."""

    model_config = ConfigDict(extra="forbid")

    prefix: str = Field("parkwatch.feed", description="Feed topic prefix.")
    enterprises: dict[str, EnterpriseFeed] = Field(default_factory=dict)
    batch_size: int = Field(50, ge=1, le=1000, description="Records per webhook POST.")
    max_retries: int = Field(5, ge=0, description="Webhook retries after the first try.")
    initial_backoff: float = Field(0.5, ge=0, description="Seconds before the first retry.")
    max_backoff: float = Field(30.0, ge=0)
    timeout: float = Field(10.0, gt=0, description="Seconds per webhook request.")

    @model_validator(mode="after")
    def _check(self) -> FeedSettings:
        topics: dict[str, str] = {}
        secrets: dict[str, str] = {}
        for ent, feed in self.enterprises.items():
            if not ENTERPRISE_ID.match(ent):
                raise ValueError(f"enterprise id {ent!r} must match {ENTERPRISE_ID.pattern}")
            topic = self.topic(ent)
            if topic in topics:
                raise ValueError(f"enterprises {topics[topic]!r} and {ent!r} share topic {topic}")
            topics[topic] = ent
            if feed.secret is not None:
                if feed.secret in secrets:
                    raise ValueError(
                        f"enterprises {secrets[feed.secret]!r} and {ent!r} share a webhook secret"
                    )
                secrets[feed.secret] = ent
        return self

    def topic(self, enterprise: str) -> str:
        feed = self.enterprises.get(enterprise)
        return (feed.topic if feed and feed.topic else None) or f"{self.prefix}.{enterprise}"


def load_feed_settings(data: Mapping[str, Any]) -> FeedSettings:
    """Validate a feed configuration mapping; errors name the field."""
    from pydantic import ValidationError

    try:
        return FeedSettings.model_validate(dict(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(err["msg"], field=".".join(str(p) for p in err["loc"]) or None) from exc


def sign(body: bytes, secret: str | bytes, timestamp: int) -> str:
    """``sha256=<hex>``: HMAC-SHA256 keyed by ``secret`` over ``b"<timestamp>." + body``."""
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | bytes,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """True when ``headers`` carry a valid signature of ``body`` under ``secret`` made within
    ``tolerance`` seconds of ``now`` (replay protection). Self-contained: copy it as is."""
    lower = {k.lower(): v for k, v in headers.items()}
    stamp, given = lower.get(TIMESTAMP_HEADER.lower()), lower.get(SIGNATURE_HEADER.lower())
    if not stamp or not given or not stamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(body, secret, int(stamp)), given)


@dataclass
class DeadLetter:
    enterprise: str
    channel: str  # "webhook" or "topic"
    reason: str
    records: list[str]  # record ids
    body: bytes = b""


@dataclass
class FeedStats:
    topic_records: Counter[str] = field(default_factory=Counter)
    webhook_records: Counter[str] = field(default_factory=Counter)
    webhook_posts: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    no_enterprise: int = 0
    unknown_enterprise: Counter[str] = field(default_factory=Counter)
    not_a_feed_record: int = 0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is then an HTTPError: undeliverable, dead-lettered


_OPENER = urllib.request.build_opener(_NoRedirect)


class Feeds:
    """Routes alerts and incidents to enterprise topics (``transport``) and webhooks."""

    def __init__(
        self,
        settings: FeedSettings,
        transport: Transport | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        alerts_of: Callable[[str], Iterable[Alert]] | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.alerts_of = alerts_of
        self.sleep = sleep
        self.clock = clock
        self.stats = FeedStats()
        self.dead: list[DeadLetter] = []

    def route(self, record: Record) -> list[str]:
        """Configured enterprises ``record`` belongs to (exact ids, each once, in order)."""
        ents = getattr(record, "enterprises", ())
        return [e for e in dict.fromkeys(ents) if e in self.settings.enterprises]

    def publish(self, records: Iterable[Record]) -> int:
        """Deliver ``records`` to their enterprises' feeds; returns the deliveries made
        (record x enterprise x channel). Failures become dead letters (see ``stats``)."""
        per_ent: dict[str, list[Record]] = {}
        records = list(records)
        batch = [r for r in records if isinstance(r, Alert)]
        for rec in records:
            if not isinstance(rec, Alert | Incident):
                self.stats.not_a_feed_record += 1
                continue
            if not rec.enterprises:
                self.stats.no_enterprise += 1
                continue
            for ent in dict.fromkeys(rec.enterprises):
                if ent not in self.settings.enterprises:
                    self.stats.unknown_enterprise[ent] += 1
            for ent in self.route(rec):
                per_ent.setdefault(ent, []).append(self._cut(rec, ent, batch))
        done = 0
        for ent, recs in per_ent.items():
            if self.transport is not None:
                done += self._to_topic(ent, recs)
            if self.settings.enterprises[ent].webhook:
                for i in range(0, len(recs), self.settings.batch_size):
                    done += self._post(ent, recs[i : i + self.settings.batch_size])
        return done

    def _cut(self, rec: Alert | Incident, ent: str, batch: list[Alert]) -> Record:
        """An incident shared with other enterprises as ``ent`` may see it: from its stored
        alerts (``alerts_of``), else from the alerts published with it."""
        if isinstance(rec, Alert) or not set(rec.enterprises) - {ent}:
            return rec
        if self.alerts_of is not None:
            alerts: Iterable[Alert] = self.alerts_of(rec.id)
        else:
            uids = set(rec.alert_uids)
            alerts = [a for a in batch if a.uid in uids]
        return scope_incident(rec, alerts, ent)

    def flush(self) -> None:
        if self.transport is not None:
            self.transport.flush()

    def _to_topic(self, ent: str, recs: list[Record]) -> int:
        assert self.transport is not None
        topic = self.settings.topic(ent)
        by_kind: dict[type[Record], list[Record]] = {}
        for rec in recs:
            by_kind.setdefault(type(rec), []).append(rec)
        n = 0
        for kind, group in by_kind.items():
            headers = {**schema_header(kind), "enterprise": ent.encode()}
            try:
                self.transport.publish(
                    topic, [r.to_json() for r in group], [key_for(r) for r in group], headers
                )
            except ParkWatchError as exc:
                self._dead(ent, "topic", f"{topic}: {exc}", group)
                continue
            self.stats.topic_records[ent] += len(group)
            n += len(group)
        return n

    def payload(self, ent: str, recs: list[Record]) -> bytes:
        ids = [record_id(r) for r in recs]
        delivery = hashlib.sha256("\n".join([ent, *ids]).encode()).hexdigest()[:32]
        return orjson.dumps(
            {"enterprise": ent, "delivery": delivery, "records": [r.to_dict() for r in recs]}
        )

    def _post(self, ent: str, recs: list[Record]) -> int:
        feed = self.settings.enterprises[ent]
        assert feed.webhook and feed.secret
        body = self.payload(ent, recs)
        delivery = orjson.loads(body)["delivery"]
        delay = self.settings.initial_backoff
        reason = ""
        for attempt in range(self.settings.max_retries + 1):
            if attempt:
                self.stats.retries[ent] += 1
                self.sleep(delay)
                delay = min(delay * 2, self.settings.max_backoff)
            stamp = int(self.clock())
            req = urllib.request.Request(
                feed.webhook,
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    ENTERPRISE_HEADER: ent,
                    DELIVERY_HEADER: delivery,
                    TIMESTAMP_HEADER: str(stamp),
                    SIGNATURE_HEADER: sign(body, feed.secret, stamp),
                },
            )
            try:
                with _OPENER.open(req, timeout=self.settings.timeout) as resp:
                    resp.read()
                self.stats.webhook_posts[ent] += 1
                self.stats.webhook_records[ent] += len(recs)
                return len(recs)
            except urllib.error.HTTPError as exc:
                reason = f"HTTP {exc.code}"
                if exc.code < 500 and exc.code != 429:
                    break  # refused for good: retrying will not help
            except (urllib.error.URLError, OSError) as exc:
                reason = f"connection: {getattr(exc, 'reason', exc)}"
        self._dead(ent, "webhook", f"{feed.webhook}: {reason}", recs, body)
        return 0

    def _dead(
        self, ent: str, channel: str, reason: str, recs: list[Record], body: bytes = b""
    ) -> None:
        self.stats.dead_letters[ent] += len(recs)
        self.dead.append(DeadLetter(ent, channel, reason, [record_id(r) for r in recs], body))
