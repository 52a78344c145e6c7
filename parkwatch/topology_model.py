"""Park topology file: every key, every value and every rule a file must satisfy.

A topology file is YAML with these top-level keys (only ``park`` is required; every list may be
left out, and a key that is not listed here is an error, so typos never pass silently)::

    park: demo-park            # park id
    enterprises: [...]         # tenants of the park and the address space they own
    zones: [...]               # network segments with a kind (it, ot, dmz, ...)
    assets: [...]              # known hosts and their roles (plc, hmi, ...)
    vantage_points: [...]      # collectors and which boundary each one watches
    conduits: [...]            # allowed zone -> zone traffic and its protocols

Ids (``park``, enterprise, zone and vantage point ids) are letters, digits, ``-``, ``_`` and
``.``, starting with a letter or digit. They appear in every flow, event and alert.

``enterprises[]``
    ``id`` (required, unique among enterprises), ``name`` (required, free text) and ``cidrs``
    (required, at least one IPv4 or IPv6 network such as ``10.1.0.0/16`` or ``"fd00:b::/48"``;
    write the network address, host bits must be zero). No two enterprise CIDRs may overlap,
    whether they belong to the same enterprise or to two.
``zones[]``
    ``id`` (required, unique among zones; ``external`` is reserved, see below), ``kind``
    (required, one of ``it``, ``ot``, ``dmz``, ``park_services``, ``management``, ``external``),
    ``enterprise`` (optional id of a listed enterprise; park-wide zones such as park services
    have none) and ``cidrs`` (required, at least one network). When a zone names an enterprise,
    each of its CIDRs must lie inside one of that enterprise's CIDRs. Zones may nest (a /25 zone
    inside a /24 zone: the longest prefix wins) but two zones may not list the same CIDR.
``assets[]``
    ``ip`` (required, one address; each address at most once), ``role`` (required, one of
    ``plc``, ``rtu``, ``hmi``, ``ews``, ``historian``, ``server``, ``workstation``, ``router``,
    ``firewall``, ``iot``, ``opc_server``, ``scada_server``, ``other``) and ``name`` (optional).
``vantage_points[]``
    ``id`` (required, unique; the collector id given to ``parkwatch flows --vantage``),
    ``watches`` (required: ``park_boundary`` for the park gateway, ``enterprise_boundary`` for an
    enterprise's own firewall) and ``enterprise`` (required with ``enterprise_boundary``, must be
    a listed enterprise; not allowed with ``park_boundary``).
``conduits[]``
    ``from`` and ``to`` (required zone ids; the implicit zone ``external`` may be used) and
    ``protocols`` (required, at least one lower-case application protocol name as ParkWatch
    labels flows, e.g. ``modbus``, ``s7comm``, ``dnp3``, ``iec104``, ``opcua``, ``dns``; ``any``
    allows every protocol). A conduit allows flows whose originator is in ``from`` and whose
    responder is in ``to`` (replies belong to the same flow). Traffic inside one zone is always
    allowed. Several conduits between the same two zones add up.

Addresses inside no listed CIDR belong to the implicit zone ``external`` (kind ``external``).

Quoting: YAML reads ``yes``/``no``/``on``/``off``/``true``/``false`` as booleans, bare numbers as
numbers and some IPv6 addresses (``1:2:3:4:5:6:7:8``) as numbers; quote such values.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Annotated, Any, Literal, NamedTuple, TypeAlias, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Loc: TypeAlias = tuple[str | int, ...]

ZoneKind = Literal["it", "ot", "dmz", "park_services", "management", "external"]
AssetRole = Literal[
    "plc", "rtu", "hmi", "ews", "historian", "server", "workstation", "router", "firewall",
    "iot", "opc_server", "scada_server", "other",
]  # fmt: skip
Watches = Literal["park_boundary", "enterprise_boundary"]
ZONE_KINDS: tuple[str, ...] = get_args(ZoneKind)
ASSET_ROLES: tuple[str, ...] = get_args(AssetRole)
WATCHES: tuple[str, ...] = get_args(Watches)
ANY_PROTOCOL = "any"
EXTERNAL_ZONE = "external"

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_PROTO_RE = re.compile(r"[a-z0-9][a-z0-9_.+-]*\Z")


def yaml_hint(value: object) -> str:
    """A hint for values YAML typed as something other than text."""
    if value is None:
        return " (the value is empty)"
    if isinstance(value, bool | int | float):
        return " (YAML read it as a number or boolean: put the value in quotes)"
    return ""


def _check_id(value: str) -> str:
    if not _ID_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid id: use letters, digits, '-', '_' and '.', "
            "starting with a letter or digit"
        )
    return value


def _check_protocol(value: str) -> str:
    if not _PROTO_RE.match(value):
        raise ValueError(
            f"{value!r} is not a protocol name: expected a lower-case name such as "
            f"'modbus' or 'dns', or '{ANY_PROTOCOL}'"
        )
    return value


def parse_network(value: Any) -> IPNetwork:
    """An IPv4/IPv6 network from text; ValueError says what is wrong and what is expected."""
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a CIDR such as 10.1.0.0/16, got {value!r}{yaml_hint(value)}")
    text = value.strip()
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a CIDR: expected an IPv4 or IPv6 network such as "
            "10.1.0.0/16 or fd00:b::/48"
        ) from None
    raise ValueError(f"{value!r} has host bits set: expected the network address, {loose}")


def parse_address(value: Any) -> IPAddress:
    """One IPv4/IPv6 address from text (IPv4-mapped IPv6 becomes IPv4)."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        addr: IPAddress = value
    elif not isinstance(value, str):
        raise ValueError(f"expected an IP address, got {value!r}{yaml_hint(value)}")
    elif "/" in value:
        raise ValueError(f"{value!r} is a network: expected one IP address such as 10.1.2.10")
    else:
        try:
            addr = ipaddress.ip_address(value.strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IP address: expected e.g. 10.1.2.10 or fd00:b::10"
            ) from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


Id = Annotated[str, AfterValidator(_check_id)]
Protocol = Annotated[str, AfterValidator(_check_protocol)]
Network = Annotated[IPNetwork, PlainValidator(parse_network)]
Address = Annotated[IPAddress, PlainValidator(parse_address)]
Name = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    # Validators are built on first use: a run with the default topology never needs them.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Enterprise(_Model):
    """A tenant of the park and the address space it owns."""

    id: Id
    name: Name
    cidrs: tuple[Network, ...] = Field(min_length=1)


class Zone(_Model):
    """A network segment of one kind, owned by an enterprise or park-wide."""

    id: Id
    kind: ZoneKind
    enterprise: Id | None = None
    cidrs: tuple[Network, ...] = Field(min_length=1)


class Asset(_Model):
    """A known host and its role."""

    ip: Address
    role: AssetRole
    name: Name | None = None


class VantagePoint(_Model):
    """A collector and the boundary it watches."""

    id: Id
    watches: Watches
    enterprise: Id | None = None


class Conduit(_Model):
    """Allowed traffic from one zone (originator) to another (responder)."""

    src: Id = Field(alias="from")
    dst: Id = Field(alias="to")
    protocols: tuple[Protocol, ...] = Field(min_length=1)


class TopologyDocument(_Model):
    """A whole topology file."""

    park: Id
    enterprises: tuple[Enterprise, ...] = ()
    zones: tuple[Zone, ...] = ()
    assets: tuple[Asset, ...] = ()
    vantage_points: tuple[VantagePoint, ...] = ()
    conduits: tuple[Conduit, ...] = ()


SECTION_MODELS: dict[str, type[BaseModel]] = {
    "enterprises": Enterprise,
    "zones": Zone,
    "assets": Asset,
    "vantage_points": VantagePoint,
    "conduits": Conduit,
}


def allowed_keys(parent: Loc) -> list[str]:
    """The keys a mapping at ``parent`` may have (empty when not a known mapping)."""
    model: type[BaseModel] | None = TopologyDocument if parent == () else None
    if len(parent) == 2 and isinstance(parent[0], str) and isinstance(parent[1], int):
        model = SECTION_MODELS.get(parent[0])
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


class Problem(NamedTuple):
    """A rule broken at ``loc``; ``related`` is the other place involved (e.g. first use)."""

    loc: Loc
    message: str
    related: Loc | None = None


def _inside(net: IPNetwork, outer: IPNetwork) -> bool:
    return net.version == outer.version and (
        int(outer.network_address) <= int(net.network_address)
        and int(net.broadcast_address) <= int(outer.broadcast_address)
    )


def _known(ids: dict[str, int]) -> str:
    return ", ".join(ids) or "none defined"


def check_document(doc: TopologyDocument) -> list[Problem]:
    """The rules that span entries: unique ids, references, CIDR nesting and overlaps."""
    out: list[Problem] = []

    def unique(section: str, ids: list[str], what: str) -> dict[str, int]:
        first: dict[str, int] = {}
        for i, ident in enumerate(ids):
            if ident in first:
                loc = (section, first[ident], "id")
                out.append(Problem((section, i, "id"), f"duplicate {what} id {ident!r}", loc))
            else:
                first[ident] = i
        return first

    ents = unique("enterprises", [e.id for e in doc.enterprises], "enterprise")
    zones = unique("zones", [z.id for z in doc.zones], "zone")
    unique("vantage_points", [v.id for v in doc.vantage_points], "vantage point")

    # Enterprise CIDRs: sorted by start, a CIDR overlaps an earlier one iff it starts before
    # the furthest end seen so far (CIDRs either nest or are disjoint).
    nets = sorted(
        ((net, i, j) for i, e in enumerate(doc.enterprises) for j, net in enumerate(e.cidrs)),
        key=lambda t: (t[0].version, int(t[0].network_address), t[0].prefixlen),
    )
    cover: tuple[IPNetwork, int, int] | None = None
    for cur in nets:
        net = cur[0]
        if (
            cover is not None
            and cover[0].version == net.version
            and int(net.network_address) <= int(cover[0].broadcast_address)
        ):
            a, b = sorted((cover, cur), key=lambda t: (t[1], t[2]))
            owner = doc.enterprises[a[1]].id
            out.append(
                Problem(
                    ("enterprises", b[1], "cidrs", b[2]),
                    f"{b[0]} overlaps {a[0]} of enterprise {owner!r}: enterprise "
                    "address space must not overlap",
                    ("enterprises", a[1], "cidrs", a[2]),
                )
            )
        if (
            cover is None
            or cover[0].version != net.version
            or (int(net.broadcast_address) > int(cover[0].broadcast_address))
        ):
            cover = cur

    zone_nets: dict[IPNetwork, tuple[int, int]] = {}
    for i, z in enumerate(doc.zones):
        if z.id == EXTERNAL_ZONE:
            out.append(
                Problem(
                    ("zones", i, "id"),
                    f"zone id {EXTERNAL_ZONE!r} is reserved for addresses outside every CIDR: "
                    "choose another id (e.g. 'internet')",
                )
            )
        ent = None
        if z.enterprise is not None:
            if z.enterprise in ents:
                ent = doc.enterprises[ents[z.enterprise]]
            else:
                out.append(
                    Problem(
                        ("zones", i, "enterprise"),
                        f"unknown enterprise {z.enterprise!r}: expected one of {_known(ents)}",
                    )
                )
        for j, net in enumerate(z.cidrs):
            if net in zone_nets:
                fi, fj = zone_nets[net]
                out.append(
                    Problem(
                        ("zones", i, "cidrs", j),
                        f"{net} is already a CIDR of zone {doc.zones[fi].id!r}: a CIDR may "
                        "belong to one zone only",
                        ("zones", fi, "cidrs", fj),
                    )
                )
            else:
                zone_nets[net] = (i, j)
            if ent is not None and not any(_inside(net, e) for e in ent.cidrs):
                cidrs = ", ".join(str(c) for c in ent.cidrs)
                out.append(
                    Problem(
                        ("zones", i, "cidrs", j),
                        f"{net} is not inside the CIDRs of enterprise {ent.id!r} ({cidrs}): "
                        "a zone's CIDRs must lie inside its enterprise's CIDRs",
                    )
                )

    seen_ips: dict[IPAddress, int] = {}
    for i, asset in enumerate(doc.assets):
        if asset.ip in seen_ips:
            first = ("assets", seen_ips[asset.ip], "ip")
            out.append(Problem(("assets", i, "ip"), f"asset {asset.ip} is listed twice", first))
        else:
            seen_ips[asset.ip] = i

    for i, v in enumerate(doc.vantage_points):
        loc = ("vantage_points", i, "enterprise")
        if v.watches == "enterprise_boundary" and v.enterprise is None:
            out.append(
                Problem(
                    loc,
                    "missing required key 'enterprise': a vantage point that watches "
                    f"enterprise_boundary must name its enterprise ({_known(ents)})",
                )
            )
        elif v.watches == "park_boundary" and v.enterprise is not None:
            out.append(
                Problem(
                    loc,
                    "a park_boundary vantage point has no enterprise: remove the key, or "
                    "use 'watches: enterprise_boundary'",
                )
            )
        elif v.enterprise is not None and v.enterprise not in ents:
            out.append(
                Problem(loc, f"unknown enterprise {v.enterprise!r}: expected one of {_known(ents)}")
            )

    for i, c in enumerate(doc.conduits):
        for key, zone_id in (("from", c.src), ("to", c.dst)):
            if zone_id not in zones and zone_id != EXTERNAL_ZONE:
                out.append(
                    Problem(
                        ("conduits", i, key),
                        f"unknown zone {zone_id!r}: expected one of {_known(zones)} "
                        f"or {EXTERNAL_ZONE!r}",
                    )
                )
    return out


def _show(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_error(err: Any) -> str:
    """An operator's message for one pydantic error: what is wrong and what is expected."""
    kind, loc, value = err["type"], tuple(err["loc"]), err.get("input")
    key = loc[-1] if loc else ""
    if kind == "missing":
        return f"missing required key '{key}'"
    if kind == "extra_forbidden":
        allowed = allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(key), allowed, n=1)
        guess = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown key '{key}'{guess}: expected one of {', '.join(allowed)}"
    if kind == "value_error":
        return str(err["ctx"]["error"])
    if kind == "literal_error":
        return f"{_show(value)} is not a valid {key}: expected {err['ctx']['expected']}"
    if kind in ("tuple_type", "list_type"):
        return f"expected a list, got {_show(value)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of 'key: value' lines, got {_show(value)}"
    if kind == "string_type":
        return f"expected text, got {_show(value)}{yaml_hint(value)}"
    if kind == "too_short":
        return "must list at least one entry"
    if kind == "string_too_short":
        return "must not be empty"
    return f"{err['msg']} (got {_show(value)})"


def validation_problems(errors: list[Any]) -> list[Problem]:
    """Problems from pydantic errors; a missing key explained by a typo'd key is left out."""
    typos = set()
    for err in errors:
        if err["type"] == "extra_forbidden":
            parent = tuple(err["loc"][:-1])
            for guess in difflib.get_close_matches(str(err["loc"][-1]), allowed_keys(parent), 1):
                typos.add((*parent, guess))
    # An invalid list item also makes the list "too short": report only the item.
    item_parents = {tuple(err["loc"][:-1]) for err in errors if err["loc"]}
    return [
        Problem(tuple(err["loc"]), describe_error(err))
        for err in errors
        if not (err["type"] == "missing" and tuple(err["loc"]) in typos)
        and not (err["type"] == "too_short" and tuple(err["loc"]) in item_parents)
    ]
