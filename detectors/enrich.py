"""Topology facts a rule can test, added to every flow and event record before matching.

Computed from the park topology (:meth:`parkwatch.topology.Topology.lookup` of ``src_ip`` and
``dst_ip``, :meth:`~parkwatch.topology.Topology.conduit_allowed`):

``src_zone_kind`` / ``dst_zone_kind``
    kind of each side's zone (``it``, ``ot``, ``dmz``, ``park_services``, ``external`` …);
    None inside an enterprise but in none of its zones, or when the address does not parse;
``src_internal`` / ``dst_internal``
    the side lies in an enterprise CIDR or a non-external zone (None if the address does not
    parse);
``cross_enterprise``
    both sides internal, both in an enterprise, and the enterprises differ;
``same_zone``
    both sides in the same (known) zone;
``conduit_allowed``
    for traffic between two internal sides: whether the topology allows originator zone ->
    responder zone with the record's application protocol (``app_proto`` of a flow,
    ``protocol`` of an event; traffic inside one zone always is); None when a side is external
    (conduits govern the inside of the park; boundary traffic has its own rules).

The topology lookup is cached per address, so this costs two dictionary hits per record.
ARP records have no IP sides and get none of these fields.
"""

from __future__ import annotations

from typing import Any

from parkwatch.topology import Endpoint, Topology

FIELDS = (
    "src_zone_kind",
    "dst_zone_kind",
    "src_internal",
    "dst_internal",
    "cross_enterprise",
    "conduit_allowed",
    "same_zone",
)
"""Fields this module adds."""

_UNKNOWN = Endpoint(None, None, None, None, False)


class Enricher:
    """Adds :data:`FIELDS` to flow and event records (in place)."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology

    def _side(self, ip: Any) -> Endpoint | None:
        if not isinstance(ip, str):
            return None
        try:
            return self.topology.lookup(ip)
        except ValueError:
            return None

    def enrich(self, rec: dict[str, Any]) -> dict[str, Any]:
        """Add the topology fields to ``rec`` and return it."""
        src, dst = self._side(rec.get("src_ip")), self._side(rec.get("dst_ip"))
        s, d = src or _UNKNOWN, dst or _UNKNOWN
        rec["src_zone_kind"] = s.zone_kind
        rec["dst_zone_kind"] = d.zone_kind
        rec["src_internal"] = None if src is None else s.internal
        rec["dst_internal"] = None if dst is None else d.internal
        both = src is not None and dst is not None and s.internal and d.internal
        rec["cross_enterprise"] = bool(
            both and s.enterprise and d.enterprise and s.enterprise != d.enterprise
        )
        rec["same_zone"] = s.zone is not None and s.zone == d.zone
        if both:
            proto = rec.get("app_proto") or rec.get("protocol")
            rec["conduit_allowed"] = self.topology.conduit_allowed(
                s.zone, d.zone, proto if isinstance(proto, str) else None
            )
        else:
            rec["conduit_allowed"] = None
        return rec
