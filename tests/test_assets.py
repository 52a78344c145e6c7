"""Passive asset inventory (parkwatch/assets.py) over the collector's output for the generated
captures, checked against the roles replay_pcaps/park.yaml declares (which it never reads)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
import yaml

from parkwatch import assets as assets_mod
from parkwatch.assets import OT_PROTOCOLS, Asset, AssetBook
from parkwatch.config import load_settings
from parkwatch.schema import ArpEvent, FlowRecord, OtEvent, Record
from parkwatch.stages import load_stage
from parkwatch.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "replay_pcaps"
PARK = PCAPS / "park.yaml"
DECLARED = {a["ip"]: a["role"] for a in yaml.safe_load(PARK.read_text())["assets"]}
OT_CAPTURES = sorted(
    p.name for p in PCAPS.glob("*.pcap") if p.name.split("_")[0] in {
        "modbus", "s7comm", "dnp3", "iec104", "enip", "bacnet", "opcua", "sample"}
)  # fmt: skip
IT_CAPTURES = sorted(p.name for p in PCAPS.glob("it_*.pcap"))
# Declared role -> inferred roles that agree (OPC UA alone does not tell PLC from historian).
AGREES = {
    "plc": {"plc", "opcua_server"},
    "rtu": {"plc"},
    "hmi": {"hmi"},
    "historian": {"opcua_server"},
}


@cache
def facts(name: str) -> tuple[Record, ...]:
    """What the collector emits for a capture: flows, OT/IT events, ARP events, weirds."""
    out: list[Record] = []
    settings = load_settings(vantage="park-gw", topology=PARK)
    pipe = load_stage("collect")(settings, load_topology(PARK), apps="all")
    pipe.run([str(PCAPS / name)], out.append, lambda cols: out.extend(cols.records()))
    return tuple(out)


def book(*names: str, max_hosts: int = 100_000) -> AssetBook:
    b = AssetBook(max_hosts=max_hosts)
    for name in names:
        for rec in facts(name):
            b.observe(rec)
    return b


def by_ip(b: AssetBook) -> dict[str, Asset]:
    return {a.ip: a for a in b.assets()}


def test_modbus_plcs_hmi_and_writer():
    recs = facts("modbus_unauthorized_write.pcap")
    assert {type(r) for r in recs} >= {FlowRecord, OtEvent}
    got = by_ip(book("modbus_unauthorized_write.pcap"))
    assert list(got) == ["10.1.1.77", "10.1.2.10", "10.1.2.11", "10.1.2.20"]
    for plc in ("10.1.2.10", "10.1.2.11"):
        a = got[plc]
        assert (a.roles, a.serves, a.uses) == (("plc",), ("modbus",), ())
        assert a.role_evidence == ("answers modbus on 502",)
        assert (a.enterprise, a.zone) == ("ent-a", "ent-a-ot")
        assert 0 < a.first_seen < a.last_seen
    hmi = got["10.1.2.20"]
    assert (hmi.roles, hmi.uses, hmi.serves, hmi.peers) == (("hmi",), ("modbus",), (), 2)
    assert hmi.polls == hmi.ot_requests == 144
    writer = got["10.1.1.77"]  # five process writes, no reads: neither PLC nor HMI nor EWS
    assert (writer.uses, writer.serves, writer.roles) == (("modbus",), (), ())
    assert (writer.polls, writer.ot_requests, writer.zone) == (0, 5, "ent-a-it")


def test_s7_download_makes_the_client_the_engineering_workstation():
    recs = facts("s7comm_plc_attacks.pcap")
    # On the wire the PLC sends the download_block jobs: ports, not direction, orient them.
    assert any(isinstance(r, OtEvent) and r.src_ip == "10.1.2.10" and r.direction == "request"
               and r.function_name == "download_block" for r in recs)  # fmt: skip
    got = by_ip(book("s7comm_plc_attacks.pcap"))
    plc, ews = got["10.1.2.10"], got["10.1.1.66"]
    assert (plc.roles, plc.serves, plc.uses, plc.engineering) == (("plc",), ("s7comm",), (), ())
    assert ews.roles == ("engineering_workstation",) and ews.serves == ()
    (evidence,) = ews.role_evidence
    assert evidence.startswith("issued s7comm ")
    assert {"download_block", "request_download", "plc_stop", "upload"} <= set(
        evidence.removeprefix("issued s7comm ").split(", ")
    )
    assert got["10.1.2.20"].roles == ("hmi",)
    assert got["10.1.1.50"].roles == ()  # only an S7comm-plus session hello: no claim


def test_mqtt_broker_that_publishes_is_still_the_server():
    assert any(isinstance(r, OtEvent) and r.src_ip == "10.2.2.40" and r.direction == "request"
               for r in facts("mqtt_wildcard_subscribe.pcap"))  # fmt: skip
    got = by_ip(book("mqtt_wildcard_subscribe.pcap"))
    assert (got["10.2.2.40"].roles, got["10.2.2.40"].uses) == (("mqtt_broker",), ())
    assert got["10.2.2.40"].role_evidence == ("answers mqtt on 1883",)
    for client in ("10.2.1.66", "10.2.2.10", "10.2.2.20"):
        assert (got[client].uses, got[client].serves) == (("mqtt",), ())


@pytest.mark.parametrize("name", OT_CAPTURES)
def test_inferred_roles_agree_with_the_declared_topology(name):
    checked = 0
    for a in book(name).assets():
        assert len(a.role_evidence) >= len(a.roles)
        declared = DECLARED.get(a.ip)
        if declared == "ews":
            assert not {"plc", "opcua_server"} & set(a.roles)
        spoke_ot = set(a.serves if declared in ("plc", "rtu", "historian") else a.uses)
        if declared in AGREES and spoke_ot & OT_PROTOCOLS:
            assert set(a.roles) & AGREES[declared], (a.ip, declared, a.roles)
            assert declared != "hmi" or "plc" not in a.roles
            checked += 1
    assert checked >= 1


def test_silent_and_broadcast_addresses_make_no_asset():
    got = by_ip(book("bacnet_rogue_commands.pcap", "enip_cip_attacks.pcap"))
    assert "10.1.2.255" not in got  # BACnet who-is / i-am broadcast target
    assert got["10.1.2.40"].roles == ("plc",) and got["10.1.2.40"].uses == ()  # i-am: a device
    assert got["10.1.1.66"].role_evidence == ("issued bacnet reinitializeDevice",)
    scanner = got["10.2.1.66"]  # ListIdentity to 10.1.2.1-30: peers, but no assets
    assert scanner.peers >= 25 and "10.1.2.30" not in got
    assert scanner.role_evidence == ("issued enip reset, set_attribute_single",)


def test_it_roles():
    got = by_ip(book(*IT_CAPTURES, "sample_park.pcap"))
    expect = {"10.0.0.53": "dns_server", "10.1.3.21": "file_server", "10.1.1.60": "file_server",
              "10.1.3.22": "ssh_server", "10.1.3.80": "web_server", "93.184.216.34": "web_server",
              "198.51.100.23": "it_client", "203.0.113.45": "it_client"}  # fmt: skip
    for ip, role in expect.items():
        assert got[ip].roles == (role,), (ip, got[ip].roles)
    assert got["10.1.3.21"].role_evidence == ("answers ftp on 21",)
    assert got["93.184.216.34"].role_evidence == ("answers http on 80", "answers tls on 443")
    assert (got["93.184.216.34"].enterprise, got["93.184.216.34"].zone) == (None, "external")
    assert {"dns", "ftp", "http", "tls"} <= set(got["10.1.1.50"].uses)
    assert "it_client" in got["10.1.1.50"].roles and got["10.1.1.50"].serves == ()


def test_inventories_of_several_replays_merge():
    parts = [
        "modbus_benign_polling.pcap",
        "s7comm_plc_attacks.pcap",
        "opcua_unsecured_session.pcap",
    ]
    books = [by_ip(book(n)) for n in parts]
    merged = AssetBook()
    for b in books:
        for a in b.values():
            merged.merge(json.loads(json.dumps(a.to_dict())))  # as stored
    got = by_ip(merged)
    plc = got["10.1.2.10"]
    assert plc.serves == ("modbus", "opcua", "s7comm") and plc.roles == ("plc", "opcua_server")
    assert set(plc.role_evidence) == {"answers modbus on 502", "answers s7comm on 102",
                                      "answers opcua on 4840"}  # fmt: skip
    seen = [b["10.1.2.10"] for b in books]
    assert plc.first_seen == min(a.first_seen for a in seen)
    assert plc.last_seen == max(a.last_seen for a in seen)
    assert plc.peer_sample == ("10.1.1.66", "10.1.2.20") and plc.peers == 2
    assert plc.peers == len(set().union(*(a.peer_sample for a in seen)))
    # Roles are recomputed from the union, not unioned: an OPC UA reader that also downloads.
    assert books[2]["10.1.1.66"].roles == ("hmi",)
    assert books[1]["10.1.1.66"].roles == ("engineering_workstation",)
    assert got["10.1.1.66"].roles == ("engineering_workstation",)
    reader = books[2]["10.1.1.66"].to_dict()
    assert Asset.from_dict({**reader, "engineering": ["opcua x"]}).roles == (
        "engineering_workstation",
    )  # engineering outranks polling
    hmi = got["10.1.2.20"]
    assert hmi.uses == ("modbus", "opcua", "s7comm") and hmi.roles == ("hmi",)
    assert hmi.polls == sum(b["10.1.2.20"].polls for b in books)
    assert plc == seen[0].merge(seen[1]).merge(seen[2]) == seen[2].merge(seen[0]).merge(seen[1])
    live = book(parts[0])  # a live book taking in the others' stored assets
    for b in books[1:]:
        for a in b.values():
            live.merge(a)
    assert live.assets() == merged.assets()
    with pytest.raises(ValueError):
        plc.merge(hmi)


def test_to_dict_from_dict_round_trip():
    everything = book(*OT_CAPTURES, *IT_CAPTURES).assets()
    assert len(everything) > 20
    for a in everything:
        d = json.loads(json.dumps(a.to_dict()))
        assert d["schema"] == "parkwatch.asset/1" and Asset.from_dict(d) == a
        d["roles"], d["role_evidence"] = ["dns_server"], ["forged"]
        assert Asset.from_dict(d).roles == a.roles  # roles come from the facts only


def test_memory_is_bounded(monkeypatch):
    full = by_ip(book("sample_park.pcap"))
    small = book("sample_park.pcap", max_hosts=2)
    assert len(small) == 2 and len(full) > 2 and small.overflow > 0
    for a in small.assets():  # a kept host keeps all its facts
        assert a == full[a.ip]
    assert book("enip_cip_attacks.pcap").assets()[-1].peers > 5
    monkeypatch.setattr(assets_mod, "MAX_PEERS", 5)
    monkeypatch.setattr(assets_mod, "MAX_ITEMS", 2)
    scanner = by_ip(book("enip_cip_attacks.pcap"))["10.2.1.66"]
    assert scanner.peers == len(scanner.peer_sample) == 5
    client = by_ip(book(*IT_CAPTURES))["10.1.1.50"]
    assert len(client.uses) == 2


def test_records_of_other_types_and_alerts_are_ignored():
    from correlator.replay import replay_capture

    capture = PCAPS / "sample_park.pcap"
    settings = load_settings(vantage="park-gw", topology=PARK)
    result = replay_capture(capture, None, settings, load_topology(PARK), None)
    others = [r for r in facts(capture.name) if not isinstance(r, (FlowRecord, OtEvent))]
    assert result.alerts and result.incidents and any(isinstance(r, ArpEvent) for r in others)
    b = AssetBook()
    for rec in [*result.alerts, *result.incidents, *others, {"src_ip": "10.9.9.9"}, "x", None]:
        b.observe(rec)
    assert len(b) == 0 and b.assets() == []
    for rec in facts(capture.name):
        b.observe(rec)
    for rec in result.alerts:
        b.observe(rec)
    assert b.assets() == book(capture.name).assets()
