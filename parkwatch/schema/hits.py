"""Correlation hits: one record matched by a rule that a Sigma correlation counts.

Schema ``parkwatch.hit/1``. When detection is scaled out, the members that evaluate rules on
flows and events publish these instead of counting them themselves; they are keyed by the
correlation rule and its group-by values, so every hit of one group reaches the one member
that counts that group (``parkwatch detect --correlations split``). A hit carries only what
the correlation alert needs, never the whole record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from parkwatch.schema.base import Record, doc


@dataclass(slots=True)
class CorrelationHit(Record):
    """One hit of a correlation rule's referenced rule, with its group already computed."""

    SCHEMA = "parkwatch.hit"
    VERSION = 1

    uid: str = doc("Stable id from the correlation, the reference and the matched record.")
    ts: int = doc("Event time of the matched record (RFC 3339 in JSON).", ts=True)
    rule_id: str = doc("Id of the correlation rule that counts this hit.")
    reference: str = doc("Name under which the correlation references the matched rule.")
    group: tuple[Any, ...] = doc("Values of the correlation's group-by fields, in its order.")
    value: tuple[Any, ...] | None = doc(
        "value_count correlations: the counted field values; None for other types.", default=None
    )
    source_uid: str = doc("uid of the matched record (or a derived id for ARP).", default="")
    flow_uids: tuple[str, ...] = doc("uids of flows that are evidence.", factory=tuple)
    event_uids: tuple[str, ...] = doc("uids of events that are evidence.", factory=tuple)
    attackers: tuple[str, ...] = doc("IP addresses acting as attacker.", factory=tuple)
    targets: tuple[str, ...] = doc("IP addresses attacked.", factory=tuple)
    enterprises: tuple[str, ...] = doc("Enterprise ids of both sides.", factory=tuple)
    vantage: str | None = doc("Vantage point of the matched record.", default=None)
    evidence: dict[str, Any] = doc("Evidence fields of the matched record.", factory=dict)

    def partition_key(self) -> bytes:
        """Rule id and group values: one group's hits share a partition."""
        return self.rule_id.encode() + b"|" + orjson.dumps(list(self.group))

    @staticmethod
    def make_uid(rule_id: str, reference: str, source_uid: str) -> str:
        """The hit id for one matched record (the same input gives the same id)."""
        h = hashlib.blake2b(f"{rule_id}|{reference}|{source_uid}".encode(), digest_size=12)
        return "hit-" + h.hexdigest()
