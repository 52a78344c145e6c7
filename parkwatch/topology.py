"""Park topology: who owns an address, which zone it is in, what it is, what may talk to what.

Load a topology file once with :func:`load_topology` (the file format and its rules are in
:mod:`parkwatch.topology_model`). Without a file, :func:`default_topology` applies.

Every problem in a file is a :class:`~parkwatch.errors.TopologyError` naming the file, the
1-based line of the YAML node at fault and the field as a dotted path such as
``enterprises[1].cidrs[0]``. When a file has several problems the first (by line) is raised,
its message says how many more there are and each of them is attached as a note
(``err.__notes__``). YAML syntax errors, unknown keys, duplicate keys in one mapping, missing
keys, bad values and broken cross-references are all reported this way.

Lookups (:meth:`Topology.lookup`), used once per flow for each side:

``enterprise``
    the enterprise whose CIDRs contain the address, else None.
``zone`` / ``zone_kind``
    the zone with the longest matching CIDR (zones may nest). An address inside an enterprise
    but in none of its zones has zone None. An address inside no CIDR at all is in the implicit
    zone ``external`` of kind ``external``.
``role``
    the role of the asset with exactly this address, else None.
``internal``
    True when the address lies in an enterprise CIDR or in a zone whose kind is not
    ``external``.

IPv4 and IPv6 are both supported; an IPv4-mapped IPv6 address (``::ffff:10.1.2.10``) is looked
up as its IPv4 address. Results are cached per address (bounded, oldest dropped first).

:meth:`Topology.conduit_allowed` answers whether a flow from its originator's zone to its
responder's zone with an application protocol is allowed by a conduit (traffic inside one zone
always is; an unknown zone (None) never is without a conduit, which cannot name None).

Default topology (no file): park ``default``; one enterprise ``default`` and one zone
``internal`` (kind ``it``) covering private and link-local address space: 10.0.0.0/8,
172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, fc00::/7 (ULA) and fe80::/10. Everything else
(including carrier-grade NAT 100.64.0.0/10) is external. It has no assets and no conduits,
and accepts any vantage point id as a ``park_boundary`` vantage point.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pydantic

from parkwatch.errors import TopologyError
from parkwatch.topology_model import (
    ANY_PROTOCOL,
    EXTERNAL_ZONE,
    Asset,
    Conduit,
    Enterprise,
    IPNetwork,
    Loc,
    Problem,
    TopologyDocument,
    VantagePoint,
    Zone,
    check_document,
    validation_problems,
)

__all__ = [
    "Endpoint",
    "Topology",
    "TopologyDocument",
    "VantagePoint",
    "default_topology",
    "load_topology",
]

T = TypeVar("T")
DEFAULT_CACHE_SIZE = 65536
_DEFAULT_PRIVATE = (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "fc00::/7", "fe80::/10",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What the topology says about one address (see the module doc)."""

    enterprise: str | None
    zone: str | None
    zone_kind: str | None
    role: str | None
    internal: bool


class _PrefixTable(Generic[T]):
    """Longest-prefix match: one hash table per prefix length, longest first."""

    def __init__(self, entries: Iterable[tuple[IPNetwork, T]]) -> None:
        by_len: dict[int, dict[int, dict[int, T]]] = {4: {}, 6: {}}
        for net, value in entries:
            by_len[net.version].setdefault(net.prefixlen, {})[int(net.network_address)] = value
        self._levels: dict[int, list[tuple[int, dict[int, T]]]] = {}
        for version, bits in ((4, 32), (6, 128)):
            full = (1 << bits) - 1
            self._levels[version] = [
                (full ^ (full >> plen), table)
                for plen, table in sorted(by_len[version].items(), reverse=True)
            ]

    def match(self, version: int, value: int) -> T | None:
        for mask, table in self._levels[version]:
            hit = table.get(value & mask)
            if hit is not None:
                return hit
        return None


class Topology:
    """A validated park topology with fast per-address lookups."""

    def __init__(
        self,
        document: TopologyDocument,
        source: str | None = None,
        *,
        any_vantage: bool = False,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.document = document
        self.park: str = document.park
        self.source = source
        self.enterprises: tuple[Enterprise, ...] = document.enterprises
        self.zones: tuple[Zone, ...] = document.zones
        self.assets: tuple[Asset, ...] = document.assets
        self.vantage_points: tuple[VantagePoint, ...] = document.vantage_points
        self.conduits: tuple[Conduit, ...] = document.conduits
        self._any_vantage = any_vantage
        self._zone_table = _PrefixTable((net, z) for z in self.zones for net in z.cidrs)
        self._ent_table = _PrefixTable((net, e.id) for e in self.enterprises for net in e.cidrs)
        self._roles: dict[tuple[int, int], str] = {
            (a.ip.version, int(a.ip)): a.role for a in self.assets
        }
        self._vantage = {v.id: v for v in self.vantage_points}
        allowed: dict[tuple[str, str], set[str]] = {}
        for c in self.conduits:
            allowed.setdefault((c.src, c.dst), set()).update(c.protocols)
        self._conduits = {pair: frozenset(protos) for pair, protos in allowed.items()}
        self._cache: dict[str, Endpoint] = {}
        self._int_cache: dict[tuple[int, int], Endpoint] = {}
        self._cache_size = max(1, cache_size)

    def __repr__(self) -> str:
        return f"Topology(park={self.park!r}, source={self.source!r})"

    def lookup(self, ip: str) -> Endpoint:
        """Enterprise, zone, role and internal flag of ``ip`` (ValueError if not an address)."""
        cached = self._cache.get(ip)
        if cached is not None:
            return cached
        endpoint = self._resolve(ip)
        if len(self._cache) >= self._cache_size:
            try:
                del self._cache[next(iter(self._cache))]
            except (KeyError, RuntimeError, StopIteration):  # another thread got there first
                self._cache.clear()
        self._cache[ip] = endpoint
        return endpoint

    def _resolve(self, ip: str) -> Endpoint:
        try:
            addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(f"not an IPv4 or IPv6 address: {ip!r}") from None
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return self._resolve_int(addr.version, int(addr))

    def lookup_int(self, version: int, value: int) -> Endpoint:
        """Like :meth:`lookup` for an address given as its integer value (no text parsing).

        ``version`` 6 with an IPv4-mapped value (``::ffff:a.b.c.d``) is looked up as IPv4.
        """
        if version == 6 and (value >> 32) == 0xFFFF:
            version, value = 4, value & 0xFFFFFFFF
        key = (version, value)
        cached = self._int_cache.get(key)
        if cached is None:
            cached = self._resolve_int(version, value)
            if len(self._int_cache) >= self._cache_size:
                self._int_cache.clear()
            self._int_cache[key] = cached
        return cached

    def _resolve_int(self, version: int, value: int) -> Endpoint:
        zone = self._zone_table.match(version, value)
        enterprise = self._ent_table.match(version, value)
        role = self._roles.get((version, value))
        if zone is None and enterprise is None:
            return Endpoint(None, EXTERNAL_ZONE, "external", role, False)
        internal = enterprise is not None or (zone is not None and zone.kind != "external")
        if zone is None:
            return Endpoint(enterprise, None, None, role, internal)
        return Endpoint(enterprise, zone.id, zone.kind, role, internal)

    def vantage(self, vantage_id: str) -> VantagePoint:
        """The vantage point ``vantage_id``; TopologyError naming the known ids if unknown."""
        found = self._vantage.get(vantage_id)
        if found is not None:
            return found
        if self._any_vantage:
            return VantagePoint(id=vantage_id, watches="park_boundary")
        known = ", ".join(self._vantage) or "none defined"
        raise TopologyError(
            f"unknown vantage point {vantage_id!r}: expected one of {known}",
            file=self.source,
            field="vantage_points",
            hint="add it under vantage_points in the topology file, or use a listed id",
        )

    def conduit_allowed(
        self, src_zone: str | None, dst_zone: str | None, app_proto: str | None
    ) -> bool:
        """Whether originator zone -> responder zone traffic with ``app_proto`` is allowed."""
        if src_zone is None or dst_zone is None:
            return False
        if src_zone == dst_zone:
            return True
        protos = self._conduits.get((src_zone, dst_zone))
        if not protos:
            return False
        return ANY_PROTOCOL in protos or (app_proto is not None and app_proto.lower() in protos)


def default_topology() -> Topology:
    """The topology used without a file (see the module doc)."""
    # Built from constants with model_construct (the same models model_validate would give
    # for this input): a run without a topology file builds no pydantic validator.
    cidrs = tuple(ipaddress.ip_network(c) for c in _DEFAULT_PRIVATE)
    doc = TopologyDocument.model_construct(
        park="default",
        enterprises=(
            Enterprise.model_construct(id="default", name="Private address space", cidrs=cidrs),
        ),
        zones=(Zone.model_construct(id="internal", kind="it", enterprise="default", cidrs=cidrs),),
    )
    return Topology(doc, None, any_vantage=True)


def load_topology(path: str | os.PathLike[str] | None) -> Topology:
    """Read, parse and validate the topology file ``path`` once; None gives the default."""
    if path is None:
        return default_topology()
    source = os.fspath(path)
    try:
        with open(source, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise TopologyError(
            f"cannot read topology file: {exc.strerror or exc}", file=source
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TopologyError(
            "not UTF-8 text: save the file as UTF-8", file=source, line=line
        ) from None
    data, lines = _compose(text, source)
    try:
        doc = TopologyDocument.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = validation_problems(exc.errors(include_url=False))
        raise _first_error(source, lines, problems) from None
    problems = check_document(doc)
    if problems:
        raise _first_error(source, lines, problems)
    return Topology(doc, source)


def _compose(text: str, source: str) -> tuple[Any, dict[Loc, int]]:
    """Python data from YAML text, plus the 1-based line of every node by path."""
    import yaml  # only with a file: not part of the start-up of a run without one

    lines: dict[Loc, int] = {}

    def fail(message: str, node: yaml.Node, loc: Loc) -> TopologyError:
        return TopologyError(
            message, file=source, line=node.start_mark.line + 1, field=_field(loc) or None
        )

    def walk(node: yaml.Node, loc: Loc, active: frozenset[int]) -> Any:
        if id(node) in active:
            raise fail("recursive YAML alias: an entry may not contain itself", node, loc)
        if isinstance(node, yaml.MappingNode):
            explicit: dict[str, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    raise fail("a key must be plain text", key_node, loc)
                if key_node.value in explicit:
                    first = explicit[key_node.value].start_mark.line + 1
                    raise fail(
                        f"duplicate key {key_node.value!r} (first at line {first}): "
                        "each key may appear once per entry",
                        key_node,
                        (*loc, key_node.value),
                    )
                explicit[key_node.value] = key_node
            loader.flatten_mapping(node)
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                lines[(*loc, key)] = key_node.start_mark.line + 1
                out[key] = walk(value_node, (*loc, key), active | {id(node)})
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                lines[(*loc, i)] = item.start_mark.line + 1
                items.append(walk(item, (*loc, i), active | {id(node)}))
            return items
        return loader.construct_object(node, deep=True)

    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                raise TopologyError(
                    "the file is empty: expected a mapping with at least 'park'",
                    file=source,
                    line=1,
                )
            lines[()] = root.start_mark.line + 1
            return walk(root, (), frozenset()), lines
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (column {mark.column + 1})" if mark else ""
        context = f", {exc.context}" if exc.context else ""
        tabs = ": indent with spaces, not tabs" if "'\\t'" in str(exc.problem) else ""
        raise TopologyError(
            f"invalid YAML: {exc.problem}{context}{where}{tabs}",
            file=source,
            line=mark.line + 1 if mark else None,
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise TopologyError(
            f"control character {char} is not allowed in YAML: remove it", file=source, line=line
        ) from None
    except yaml.YAMLError as exc:
        raise TopologyError(f"invalid YAML: {exc}", file=source) from None


def _field(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _line(lines: dict[Loc, int], loc: Loc) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _first_error(source: str, lines: dict[Loc, int], problems: list[Problem]) -> TopologyError:
    """The first problem (by line) as an error, with the count and the others as notes."""
    errors = []
    for loc, message, related in problems:
        if related is not None:
            message += f" (see line {_line(lines, related)}, {_field(related)})"
        errors.append(
            TopologyError(message, file=source, line=_line(lines, loc), field=_field(loc) or None)
        )
    errors.sort(key=lambda e: e.line or 0)
    first, rest = errors[0], errors[1:]
    if rest:
        first.message += f"; {len(rest)} more problem{'s' if len(rest) > 1 else ''} in this file"
        first.args = (first.message,)
        for other in rest:
            first.add_note(str(other))
    return first
