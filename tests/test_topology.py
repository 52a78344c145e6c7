"""Park topology: loading, validation errors (file, line, field) and lookups."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from parkwatch.errors import TopologyError
from parkwatch.topology import Endpoint, Topology, default_topology, load_topology

EXAMPLE = Path(__file__).resolve().parents[1] / "replay_pcaps" / "park.yaml"

BASE = """\
park: test-park
enterprises:
  - id: ent-a
    name: Alpha Steel
    cidrs: [10.1.0.0/16]
  - id: ent-b
    name: Beta Chemicals
    cidrs: [10.2.0.0/16, "fd00:b::/48"]
zones:
  - id: ent-a-it
    kind: it
    enterprise: ent-a
    cidrs: [10.1.1.0/24]
  - id: ent-a-ot
    kind: ot
    enterprise: ent-a
    cidrs: [10.1.2.0/24]
  - id: ent-a-safety
    kind: ot
    enterprise: ent-a
    cidrs: [10.1.2.128/25]
  - id: ent-b-ot
    kind: ot
    enterprise: ent-b
    cidrs: [10.2.2.0/24, "fd00:b:0:2::/64"]
  - id: park-services
    kind: park_services
    cidrs: [10.0.0.0/24]
  - id: partner
    kind: external
    cidrs: [203.0.113.0/24]
assets:
  - ip: 10.1.2.10
    role: plc
    name: Blast furnace PLC
  - ip: "fd00:b:0:2::10"
    role: rtu
vantage_points:
  - id: park-gw
    watches: park_boundary
  - id: ent-a-fw
    watches: enterprise_boundary
    enterprise: ent-a
conduits:
  - from: ent-a-it
    to: ent-a-ot
    protocols: [modbus, s7comm]
  - from: ent-a-ot
    to: park-services
    protocols: [any]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "park.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def edit(old: str, new: str) -> str:
    assert BASE.count(old) == 1, f"{old!r} must occur exactly once in BASE"
    return BASE.replace(old, new)


def line_of(text: str, needle: str) -> int:
    """1-based line of the only line of ``text`` that contains ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def load_error(tmp_path: Path, text: str) -> TopologyError:
    path = write(tmp_path, text)
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert info.value.file == str(path)
    return info.value


@pytest.fixture
def topo(tmp_path: Path) -> Topology:
    return load_topology(write(tmp_path, BASE))


# --- the example file ----------------------------------------------------------------------


def test_example_file_loads() -> None:
    t = load_topology(EXAMPLE)
    assert t.park == "demo-park"
    assert t.source == str(EXAMPLE)
    assert [e.id for e in t.enterprises] == ["ent-a", "ent-b"]
    assert [z.id for z in t.zones] == [
        "ent-a-it", "ent-a-ot", "ent-a-dmz", "ent-b-it", "ent-b-ot", "park-services",
    ]  # fmt: skip
    assert len(t.assets) == 8
    assert t.vantage("ent-b-fw").enterprise == "ent-b"
    assert t.vantage("park-gw").watches == "park_boundary"


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("10.1.2.10", Endpoint("ent-a", "ent-a-ot", "ot", "plc", True)),
        ("10.1.2.11", Endpoint("ent-a", "ent-a-ot", "ot", "plc", True)),
        ("10.1.1.50", Endpoint("ent-a", "ent-a-it", "it", "ews", True)),
        ("10.1.3.5", Endpoint("ent-a", "ent-a-dmz", "dmz", "historian", True)),
        ("10.2.2.10", Endpoint("ent-b", "ent-b-ot", "ot", "rtu", True)),
        ("10.2.1.7", Endpoint("ent-b", "ent-b-it", "it", None, True)),
        ("10.0.0.53", Endpoint(None, "park-services", "park_services", "server", True)),
        ("10.3.0.1", Endpoint(None, "external", "external", None, False)),
    ],
)
def test_example_lookups(ip: str, expected: Endpoint) -> None:
    assert load_topology(EXAMPLE).lookup(ip) == expected


@pytest.mark.parametrize(
    ("src", "dst", "proto", "allowed"),
    [
        ("ent-a-it", "ent-a-ot", "s7comm", True),
        ("ent-a-ot", "ent-a-dmz", "opcua", True),
        ("ent-b-it", "ent-b-ot", "iec104", True),
        ("ent-b-ot", "park-services", "dns", True),
        ("ent-a-dmz", "park-services", "dns", True),
        ("ent-b-it", "ent-b-ot", "modbus", False),
        ("ent-a-it", "ent-b-ot", "dnp3", False),
        ("external", "ent-a-ot", "modbus", False),
    ],
)
def test_example_conduits(src: str, dst: str, proto: str, allowed: bool) -> None:
    assert load_topology(EXAMPLE).conduit_allowed(src, dst, proto) is allowed


# --- lookups -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        # longest prefix: the /25 safety zone inside the /24 OT zone
        ("10.1.2.200", Endpoint("ent-a", "ent-a-safety", "ot", None, True)),
        ("10.1.2.127", Endpoint("ent-a", "ent-a-ot", "ot", None, True)),
        ("10.1.2.10", Endpoint("ent-a", "ent-a-ot", "ot", "plc", True)),
        # inside the enterprise, in none of its zones
        ("10.1.200.1", Endpoint("ent-a", None, None, None, True)),
        # IPv6, and the same address spelled out in full
        ("fd00:b:0:2::10", Endpoint("ent-b", "ent-b-ot", "ot", "rtu", True)),
        (
            "fd00:000b:0000:0002:0000:0000:0000:0010",
            Endpoint("ent-b", "ent-b-ot", "ot", "rtu", True),
        ),
        ("fd00:b:0:9::1", Endpoint("ent-b", None, None, None, True)),
        # IPv4-mapped IPv6 is looked up as IPv4
        ("::ffff:10.1.2.10", Endpoint("ent-a", "ent-a-ot", "ot", "plc", True)),
        # park-wide zone without an enterprise
        ("10.0.0.9", Endpoint(None, "park-services", "park_services", None, True)),
        # a listed zone of kind external is not internal
        ("203.0.113.5", Endpoint(None, "partner", "external", None, False)),
        # outside every CIDR; private ranges are not special in a file topology
        ("8.8.8.8", Endpoint(None, "external", "external", None, False)),
        ("192.168.1.1", Endpoint(None, "external", "external", None, False)),
        ("2001:db8::1", Endpoint(None, "external", "external", None, False)),
    ],
)
def test_lookup(topo: Topology, ip: str, expected: Endpoint) -> None:
    assert topo.lookup(ip) == expected
    assert topo.lookup(ip) == expected  # second time from the cache


def test_lookup_cache_is_bounded_and_stays_correct(tmp_path: Path) -> None:
    base = load_topology(write(tmp_path, BASE))
    small = Topology(base.document, base.source, cache_size=3)
    ips = ["10.1.2.10", "10.1.1.1", "8.8.8.8", "fd00:b:0:2::10", "10.0.0.9"] * 3
    for ip in ips:
        assert small.lookup(ip) == base.lookup(ip)
    assert len(small._cache) == 3


def test_lookup_rejects_non_address(topo: Topology) -> None:
    with pytest.raises(ValueError, match="not an IPv4 or IPv6 address"):
        topo.lookup("10.1.2")


def test_vantage(topo: Topology) -> None:
    fw = topo.vantage("ent-a-fw")
    assert (fw.id, fw.watches, fw.enterprise) == ("ent-a-fw", "enterprise_boundary", "ent-a")
    with pytest.raises(TopologyError) as info:
        topo.vantage("ent-z-fw")
    assert "'ent-z-fw'" in info.value.message
    assert "park-gw, ent-a-fw" in info.value.message
    assert info.value.file == topo.source


@pytest.mark.parametrize(
    ("src", "dst", "proto", "allowed"),
    [
        ("ent-a-it", "ent-a-ot", "modbus", True),
        ("ent-a-it", "ent-a-ot", "MODBUS", True),
        ("ent-a-it", "ent-a-ot", "dnp3", False),
        ("ent-a-it", "ent-a-ot", None, False),
        ("ent-a-ot", "ent-a-it", "modbus", False),  # conduits have a direction
        ("ent-a-ot", "park-services", "whatever", True),  # protocols: [any]
        ("ent-a-ot", "park-services", None, True),
        ("ent-b-ot", "ent-b-ot", "telnet", True),  # same zone
        ("external", "external", None, True),
        (None, None, "modbus", False),
        ("ent-a-it", None, "modbus", False),
        ("nowhere", "ent-a-ot", "modbus", False),
    ],
)
def test_conduit_allowed(
    topo: Topology, src: str | None, dst: str | None, proto: str | None, allowed: bool
) -> None:
    assert topo.conduit_allowed(src, dst, proto) is allowed


def test_conduits_between_the_same_zones_add_up(tmp_path: Path) -> None:
    text = BASE + "  - from: ent-a-it\n    to: ent-a-ot\n    protocols: [dnp3]\n"
    t = load_topology(write(tmp_path, text))
    assert t.conduit_allowed("ent-a-it", "ent-a-ot", "dnp3")
    assert t.conduit_allowed("ent-a-it", "ent-a-ot", "modbus")


def test_conduit_to_implicit_external_zone(tmp_path: Path) -> None:
    text = BASE + "  - from: ent-a-it\n    to: external\n    protocols: [https]\n"
    t = load_topology(write(tmp_path, text))
    assert t.conduit_allowed("ent-a-it", t.lookup("8.8.8.8").zone, "https")
    assert not t.conduit_allowed("ent-a-ot", t.lookup("8.8.8.8").zone, "https")


# --- default topology ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "internal"),
    [
        ("10.20.30.40", True),
        ("172.16.0.1", True),
        ("172.31.255.255", True),
        ("192.168.1.1", True),
        ("169.254.10.10", True),
        ("fd12:3456::1", True),
        ("fe80::1", True),
        ("172.32.0.1", False),
        ("100.64.0.1", False),
        ("8.8.8.8", False),
        ("2001:db8::1", False),
    ],
)
def test_default_topology(ip: str, internal: bool) -> None:
    t = default_topology()
    if internal:
        assert t.lookup(ip) == Endpoint("default", "internal", "it", None, True)
    else:
        assert t.lookup(ip) == Endpoint(None, "external", "external", None, False)


def test_load_none_is_default() -> None:
    t = load_topology(None)
    assert (t.park, t.source) == ("default", None)
    assert t.lookup("10.0.0.1").internal
    vp = t.vantage("any-collector")
    assert (vp.id, vp.watches, vp.enterprise) == ("any-collector", "park_boundary", None)
    assert t.conduit_allowed("internal", "internal", "modbus")
    assert not t.conduit_allowed("internal", "external", "https")


# --- validation: each rule names file, line and field -----------------------------------------

CASES = [
    # (case id, old text, new text, needle on the expected line, field, message part)
    ("yaml-syntax", "name: Alpha Steel", "name: Alpha: Steel", "Alpha: Steel", None,
     "mapping values are not allowed"),
    ("unknown-top-key", "zones:", "zone:", "zone:", "zone", "did you mean 'zones'"),
    ("unknown-nested-key", "    name: Beta Chemicals\n", "    name: Beta Chemicals\n    owner: x\n",
     "owner: x", "enterprises[1].owner", "unknown key 'owner'"),
    ("typo-key", "    watches: park_boundary", "    watch: park_boundary", "watch: park",
     "vantage_points[0].watch", "did you mean 'watches'"),
    ("missing-key", "    name: Beta Chemicals\n", "", "- id: ent-b\n    cidrs",
     "enterprises[1].name", "missing required key 'name'"),
    ("missing-park", "park: test-park\n", "", "enterprises:", "park",
     "missing required key 'park'"),
    ("bad-cidr", "[10.2.0.0/16, ", "[10.2.0.300/16, ", "10.2.0.300/16",
     "enterprises[1].cidrs[0]", "is not a CIDR"),
    ("host-bits", "cidrs: [10.1.1.0/24]", "cidrs: [10.1.1.1/24]", "10.1.1.1/24",
     "zones[0].cidrs[0]", "host bits set: expected the network address, 10.1.1.0/24"),
    ("bad-ipv6-cidr", '"fd00:b:0:2::/64"', '"fd00:b:0:2::/129"', "fd00:b:0:2::/129",
     "zones[3].cidrs[1]", "is not a CIDR"),
    ("bad-ip", "ip: 10.1.2.10", "ip: 10.1.2.999", "10.1.2.999", "assets[0].ip",
     "is not an IP address"),
    ("ip-read-as-number", "ip: 10.1.2.10", "ip: 1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8",
     "assets[0].ip", "put the value in quotes"),
    ("network-as-ip", "ip: 10.1.2.10", "ip: 10.1.2.0/24", "ip: 10.1.2.0/24", "assets[0].ip",
     "is a network"),
    ("bad-kind", "kind: park_services", "kind: services", "kind: services", "zones[4].kind",
     "'park_services'"),
    ("bad-role", "role: rtu", "role: robot", "role: robot", "assets[1].role", "'scada_server'"),
    ("bad-watches", "watches: park_boundary", "watches: gateway", "watches: gateway",
     "vantage_points[0].watches", "'enterprise_boundary'"),
    ("dup-enterprise", "  - id: ent-b\n", "  - id: ent-a\n", "- id: ent-a\n    name: Beta",
     "enterprises[1].id", "duplicate enterprise id 'ent-a' (see line 3, enterprises[0].id)"),
    ("dup-zone", "  - id: ent-a-safety", "  - id: ent-a-it", "- id: ent-a-it\n    kind: ot",
     "zones[2].id", "duplicate zone id 'ent-a-it'"),
    ("dup-vantage", "  - id: ent-a-fw", "  - id: park-gw", "- id: park-gw\n    watches: enterprise",
     "vantage_points[1].id", "duplicate vantage point id 'park-gw'"),
    ("zone-unknown-enterprise", "enterprise: ent-b", "enterprise: ent-c", "ent-c",
     "zones[3].enterprise", "unknown enterprise 'ent-c': expected one of ent-a, ent-b"),
    ("vantage-unknown-enterprise", "    enterprise: ent-a\nconduits:",
     "    enterprise: ent-x\nconduits:", "ent-x", "vantage_points[1].enterprise",
     "unknown enterprise 'ent-x'"),
    ("conduit-unknown-zone", "to: park-services", "to: park-service", "to: park-service",
     "conduits[1].to", "unknown zone 'park-service'"),
    ("conduit-unknown-from", "from: ent-a-it", "from: ent-a-IT", "ent-a-IT", "conduits[0].from",
     "unknown zone 'ent-a-IT'"),
    ("zone-outside-enterprise", "cidrs: [10.1.1.0/24]", "cidrs: [10.1.1.0/24, 10.9.1.0/24]",
     "10.9.1.0/24", "zones[0].cidrs[1]", "not inside the CIDRs of enterprise 'ent-a'"),
    ("ipv6-zone-in-ipv4-enterprise", "cidrs: [10.1.1.0/24]", 'cidrs: [10.1.1.0/24, "fd00:a::/64"]',
     "fd00:a::/64", "zones[0].cidrs[1]", "not inside the CIDRs of enterprise 'ent-a'"),
    ("enterprise-overlap", "[10.2.0.0/16, ", "[10.1.128.0/17, ", "10.1.128.0/17",
     "enterprises[1].cidrs[0]", "10.1.128.0/17 overlaps 10.1.0.0/16 of enterprise 'ent-a'"),
    ("enterprise-overlap-bigger-later", "[10.2.0.0/16, ", "[10.0.0.0/8, ", "10.0.0.0/8",
     "enterprises[1].cidrs[0]", "10.0.0.0/8 overlaps 10.1.0.0/16 of enterprise 'ent-a'"),
    ("enterprise-overlap-ipv6", "cidrs: [10.1.0.0/16]", 'cidrs: [10.1.0.0/16, "fd00:b:0:1::/64"]',
     "fd00:b::/48", "enterprises[1].cidrs[1]",
     "fd00:b::/48 overlaps fd00:b:0:1::/64 of enterprise 'ent-a'"),
    ("same-zone-cidr-twice", "cidrs: [10.1.2.128/25]", "cidrs: [10.1.2.0/24]",
     "cidrs: [10.1.2.0/24]\n  - id: ent-b", "zones[2].cidrs[0]",
     "already a CIDR of zone 'ent-a-ot'"),
    ("asset-twice", 'ip: "fd00:b:0:2::10"', "ip: 10.1.2.10", "  - ip: 10.1.2.10\n    role: rtu",
     "assets[1].ip", "asset 10.1.2.10 is listed twice (see line"),
    ("asset-twice-ipv6-spelling", "    role: rtu\n",
     '    role: rtu\n  - ip: "fd00:b:0:2:0:0:0:10"\n    role: plc\n', "fd00:b:0:2:0:0:0:10",
     "assets[2].ip", "asset fd00:b:0:2::10 is listed twice"),
    ("enterprise-boundary-without-enterprise", "    enterprise: ent-a\nconduits:", "conduits:",
     "- id: ent-a-fw", "vantage_points[1].enterprise", "must name its enterprise"),
    ("park-boundary-with-enterprise", "    watches: park_boundary\n",
     "    watches: park_boundary\n    enterprise: ent-a\n", "enterprise: ent-a\n  - id: ent-a-fw",
     "vantage_points[0].enterprise", "park_boundary vantage point has no enterprise"),
    ("reserved-zone-id", "  - id: partner", "  - id: external", "- id: external", "zones[5].id",
     "reserved"),
    ("duplicate-yaml-key", "    name: Alpha Steel\n", "    name: Alpha Steel\n    name: Again\n",
     "name: Again", "enterprises[0].name", "duplicate key 'name' (first at line 4)"),
    ("not-a-list", "cidrs: [10.1.0.0/16]", "cidrs: 10.1.0.0/16", "cidrs: 10.1.0.0/16",
     "enterprises[0].cidrs", "expected a list"),
    ("empty-list", "protocols: [any]", "protocols: []", "protocols: []", "conduits[1].protocols",
     "at least one entry"),
    ("boolean-name", "name: Alpha Steel", "name: yes", "name: yes", "enterprises[0].name",
     "put the value in quotes"),
    ("bad-id", "  - id: ent-a-it", "  - id: ent a it", "ent a it", "zones[0].id",
     "is not a valid id"),
    ("bad-protocol", "[modbus, s7comm]", "[Modbus, s7comm]", "Modbus", "conduits[0].protocols[0]",
     "lower-case"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "needle", "field", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_validation_error(
    tmp_path: Path, old: str, new: str, needle: str, field: str | None, message: str
) -> None:
    text = edit(old, new)
    if "\n" in needle:  # a needle spanning lines: the error is on its first line
        expected_line = text[: text.index(needle)].count("\n") + 1
        assert text.count(needle) == 1
    else:
        expected_line = line_of(text, needle)
    err = load_error(tmp_path, text)
    assert (err.line, err.field) == (expected_line, field), str(err)
    assert message in err.message


def test_neighbouring_cidrs_do_not_overlap(tmp_path: Path) -> None:
    # 10.3.0.0/16 starts right after ent-b's 10.2.0.0/16; fd00:b:1::/64 lies just past fd00:b::/48
    text = edit("cidrs: [10.1.0.0/16]", 'cidrs: [10.1.0.0/16, 10.3.0.0/16, "fd00:b:1::/64"]')
    t = load_topology(write(tmp_path, text))
    assert t.lookup("10.3.0.1").enterprise == "ent-a"
    assert t.lookup("fd00:b:1::1").enterprise == "ent-a"
    assert t.lookup("fd00:b:0:ffff::1").enterprise == "ent-b"


def test_one_cidr_overlapping_several(tmp_path: Path) -> None:
    ent_c = "  - id: ent-c\n    name: Gamma\n    cidrs: [10.0.0.0/8]\nzones:"
    text = edit("zones:", ent_c)
    err = load_error(tmp_path, text)
    assert (err.line, err.field) == (line_of(text, "10.0.0.0/8"), "enterprises[2].cidrs[0]")
    assert "overlaps 10.1.0.0/16 of enterprise 'ent-a'" in err.message
    assert "1 more problem in this file" in err.message
    assert "overlaps 10.2.0.0/16 of enterprise 'ent-b'" in err.__notes__[0]


def test_bad_only_item_is_not_also_an_empty_list(tmp_path: Path) -> None:
    err = load_error(tmp_path, edit("protocols: [any]", "protocols: [ANY]"))
    assert err.field == "conduits[1].protocols[0]"
    assert "more problem" not in err.message


def test_error_text_names_file_line_and_field(tmp_path: Path) -> None:
    err = load_error(tmp_path, edit("role: rtu", "role: robot"))
    path = tmp_path / "park.yaml"
    assert str(err).startswith(f"{path}:{line_of(BASE, 'role: rtu')}, field 'assets[1].role': ")


def test_typo_is_not_also_reported_as_missing_key(tmp_path: Path) -> None:
    err = load_error(tmp_path, edit("    name: Beta Chemicals", "    nmae: Beta Chemicals"))
    assert err.field == "enterprises[1].nmae"
    assert "more problem" not in err.message
    assert not getattr(err, "__notes__", [])


def test_several_problems_first_raised_others_noted(tmp_path: Path) -> None:
    text = edit("role: rtu", "role: robot").replace("kind: ot", "kind: 0t")
    err = load_error(tmp_path, text)
    # three "kind: 0t" lines and one bad role: the first kind (zones[1]) is raised
    assert (err.line, err.field) == (15, "zones[1].kind")
    assert "3 more problems in this file" in err.message
    notes = err.__notes__
    assert len(notes) == 3
    assert "zones[2].kind" in notes[0]
    assert f":{line_of(text, 'role: robot')}, field 'assets[1].role'" in notes[2]


def test_problems_are_reported_top_down(tmp_path: Path) -> None:
    text = edit("  - id: ent-a-fw", "  - id: park-gw").replace(
        'ip: "fd00:b:0:2::10"', "ip: 10.1.2.10"
    )
    err = load_error(tmp_path, text)
    assert err.field == "assets[1].ip"
    assert "vantage_points[1].id" in err.__notes__[0]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "the file is empty"),
        ("# only a comment\n", 1, "the file is empty"),
        ("- park: x\n", 1, "expected a mapping"),
        ("park: x\nenterprises:\n\t- id: a\n", 3, "indent with spaces"),
        ("park: x\nzones: [a, b\n", 3, "invalid YAML"),
        ("park: x\nenterprises: {id: a}\n", 2, "expected a list"),
        ("park: x\nassets:\n  - 10.1.2.3\n", 3, "expected a mapping"),
        ("park: x\n---\npark: y\n", 2, "invalid YAML"),
        ("park: x\x07\n", 1, "control character U+0007"),
        ("park: &a [*a]\n", 1, "recursive YAML alias"),
        ("park: !!python/object:os.system x\n", 1, "invalid YAML"),
    ],
)
def test_unusable_files(tmp_path: Path, text: str, line: int, message: str) -> None:
    err = load_error(tmp_path, text)
    assert err.line == line, str(err)
    assert message in err.message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "park.yaml"
    path.write_bytes(b"park: x\nenterprises:\n  - name: \xff\n")
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert (info.value.file, info.value.line) == (str(path), 3)
    assert "UTF-8" in info.value.message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert info.value.file == str(path)
    assert "cannot read topology file" in info.value.message


def test_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    text = edit(
        "  - id: ent-a-ot\n    kind: ot\n    enterprise: ent-a\n",
        "  - &ot\n    id: ent-a-ot\n    kind: ot\n    enterprise: ent-a\n",
    ).replace(
        "  - id: ent-a-safety\n    kind: ot\n    enterprise: ent-a\n",
        "  - <<: *ot\n    id: ent-a-safety\n",
    )
    t = load_topology(write(tmp_path, text))
    assert t.lookup("10.1.2.200") == Endpoint("ent-a", "ent-a-safety", "ot", None, True)


def test_lookup_int_agrees_with_text_lookup():
    topo = load_topology(EXAMPLE)
    for text in (
        "10.1.2.10",
        "10.1.1.77",
        "10.2.2.20",
        "10.0.0.53",
        "8.8.8.8",
        "fd00:b::1",
        "2001:db8::1",
    ):
        addr = ipaddress.ip_address(text)
        assert topo.lookup_int(addr.version, int(addr)) == topo.lookup(text), text
    mapped = int(ipaddress.ip_address("::ffff:10.1.2.10"))
    assert topo.lookup_int(6, mapped) == topo.lookup("10.1.2.10")
