"""Passive asset inventory: which hosts exist, what they serve and use, and what they are.

Built only from observed facts (:class:`~parkwatch.schema.FlowRecord`,
:class:`~parkwatch.schema.OtEvent`), never from alerts nor from the topology's declared roles;
enterprise and zone are copied from the records, as the collector resolved them.

Server side: a flow's responder serves ``app_proto`` if it sent payload back, and its originator
uses it. An event's server is the side on the protocol's well-known port (``SERVER_PORTS``) when
exactly one side is on it, else the receiver of a request / the sender of a response or of an
``ANNOUNCE``: ports come first because servers send requests too (an S7 PLC sends the
``download_block`` jobs of a download, an MQTT broker PUBLISHes to subscribers). A host becomes an
asset only by sending something, so requests to silent or broadcast addresses make no asset.

Roles (``ROLES``) are recomputed from the kept facts whenever an :class:`Asset` is built or
merged, each with ``role_evidence``. An OT client's requests count as reads (``POLLS``), session
housekeeping (``SESSION``, not counted) or other; ``ENGINEERING`` functions change a controller's
program, configuration or run state. Process writes and operate commands (Modbus write_*, DNP3
operate, IEC 104 C_SC/C_SE, BACnet writeProperty, CIP write_tag) are what HMIs and SCADA masters
send routinely: they make no engineering workstation (nor an HMI).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

from parkwatch.schema import FlowRecord, OtEvent

SCHEMA = "parkwatch.asset/1"
"""Schema id written by :meth:`Asset.to_dict`."""
MAX_HOSTS = 100_000
"""Hosts an AssetBook keeps; sightings of further new hosts are counted in ``overflow``."""
MAX_PEERS = 1_000
"""Distinct peers remembered per host: ``peers`` is exact up to this, a lower bound beyond."""
MAX_ITEMS = 64
"""Entries kept per host in each of ``serves``, ``uses``, ``ports`` and ``engineering``."""
HMI_READ_SHARE = 0.8
"""Share of an OT client's counted requests that must be reads to make it an ``hmi``."""


def _w(text: str) -> frozenset[str]:
    return frozenset(text.split())


ROLES: dict[str, str] = {
    "plc": "answers a PLC_PROTOCOLS protocol (PLC, RTU, outstation, BACnet device …)",
    "opcua_server": "answers opcua (a PLC, gateway or historian: the protocol does not tell which)",
    "hmi": "OT client, no engineering, whose counted requests are >= HMI_READ_SHARE reads",
    "engineering_workstation": "OT client party to ENGINEERING functions",
    "mqtt_broker": "answers mqtt",
    "dns_server": "answers dns",
    "web_server": "answers http or tls",
    "file_server": "answers smb or ftp",
    "ssh_server": "answers ssh",
    "it_client": "speaks an IT_CLIENT_PROTOCOLS protocol as client",
}  # fmt: skip
"""Inferred roles (in output order) and the evidence each needs."""
PLC_PROTOCOLS = _w("modbus s7comm enip iec104 dnp3 bacnet")
"""Field protocols whose server is a controller."""
OT_PROTOCOLS = PLC_PROTOCOLS | {"opcua"}
"""Protocols whose client requests count for ``hmi`` / ``engineering_workstation``."""
IT_CLIENT_PROTOCOLS = _w("dns http tls ssh ftp smb telnet rdp")
"""Protocols whose client is an ``it_client``."""
SERVER_ROLES: dict[str, str] = {
    **dict.fromkeys(PLC_PROTOCOLS, "plc"), "opcua": "opcua_server", "mqtt": "mqtt_broker",
    "dns": "dns_server", "http": "web_server", "tls": "web_server", "smb": "file_server",
    "ftp": "file_server", "ssh": "ssh_server",
}  # fmt: skip
"""Role of the server of each protocol."""
SERVER_PORTS: dict[str, tuple[int, ...]] = {
    "modbus": (502,), "s7comm": (102,), "dnp3": (20000,), "iec104": (2404,),
    "enip": (44818, 2222), "opcua": (4840,), "bacnet": (47808,), "mqtt": (1883, 8883),
    "dns": (53,), "http": (80, 8080), "tls": (443,), "ssh": (22,), "ftp": (21,), "telnet": (23,),
    "smb": (445,),
}  # fmt: skip
"""Well-known server ports (as collectors/services.py binds them) that orient an event."""
ANNOUNCE = _w("i-am i-have")
"""Unsolicited messages a server sends about itself (BACnet)."""
SESSION = _w(
    "STARTDT_act STOPDT_act TESTFR_act C_CS_NA_1 C_TS_NA_1 setup_communication create_object"
    " register_session unregister_session list_identity list_services list_interfaces nop"
    " forward_open forward_close large_forward_open unconnected_send multiple_service_packet"
    " HEL OpenSecureChannelRequest CloseSecureChannelRequest CreateSessionRequest"
    " ActivateSessionRequest CloseSessionRequest GetEndpointsRequest FindServersRequest"
    " CreateSubscriptionRequest CreateMonitoredItemsRequest confirm disable_unsolicited"
    " enable_unsolicited delay_measurement record_current_time who-is who-has"
)
"""Housekeeping requests (sessions, link tests, discovery): not counted as OT requests."""
POLLS: dict[str, frozenset[str]] = {
    "modbus": _w("read_coils read_discrete_inputs read_holding_registers read_input_registers"
                 " read_exception_status read_fifo_queue read_file_record"),
    "s7comm": _w("read_var cpu_functions/read_szl time_functions/read_clock get_variable"
                 " get_multi_variables"),
    "dnp3": _w("read"),
    "iec104": _w("C_IC_NA_1 C_CI_NA_1 C_RD_NA_1"),
    "enip": _w("get_attribute_single get_attributes_all get_attribute_list get_member read_tag"
               " read_tag_fragmented"),
    "bacnet": _w("readProperty readPropertyMultiple readPropertyConditional readRange"),
    "opcua": _w("ReadRequest BrowseRequest BrowseNextRequest PublishRequest"),
}  # fmt: skip
"""Read / poll requests per protocol (``function_name`` as the decoders emit it)."""
ENGINEERING: dict[str, frozenset[str]] = {
    "s7comm": _w("request_download download_block download_ended start_upload upload end_upload"
                 " plc_control plc_stop programmer_commands/erase programmer_commands/forces"
                 " security/plc_password time_functions/set_clock delete_object")
    | {f"mode_transition/{m}" for m in _w("stop run run_r warm_restart hot_restart cold_restart")},
    "modbus": _w("diagnostics write_file_record umas"),
    "enip": _w("set_attribute_single set_attributes_all set_attribute_list set_member reset start"
               " stop create delete restore save apply_attributes initiate_download"
               " download_transfer initiate_upload upload_transfer initiate_partial_write"
               " clear_file"),
    "dnp3": _w("cold_restart warm_restart initialize_data initialize_application"
               " start_application stop_application save_configuration activate_config"
               " open_file close_file delete_file get_file_info authenticate_file abort_file"),
    "iec104": _w("C_RP_NA_1 P_ME_NA_1 P_ME_NB_1 P_ME_NC_1 P_AC_NA_1 F_FR_NA_1 F_SR_NA_1"
                 " F_SC_NA_1 F_LS_NA_1 F_AF_NA_1 F_SG_NA_1 F_DR_TA_1 F_SC_NB_1"),
    "bacnet": _w("reinitializeDevice deviceCommunicationControl atomicWriteFile createObject"
                 " deleteObject"),
}  # fmt: skip
"""Program / configuration / run-state functions per protocol (sent or answered as client)."""


@lru_cache(maxsize=65_536)
def _addr(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None


def _unicast(ip: str) -> bool:
    a = _addr(ip)
    return a is not None and not (a.is_multicast or a.is_unspecified or a.packed == b"\xff" * 4)


def _ip_key(ip: str) -> tuple[int, int, str]:
    a = _addr(ip)
    return (0, 0, ip) if a is None else (a.version, int(a), ip)


def _port_key(entry: str) -> tuple[str, int]:
    proto, _, port = entry.rpartition("/")
    return (proto, int(port) if port.isdigit() else -1)


@dataclass(frozen=True)
class Asset:
    """One host as the traffic showed it; roles are inferred from the other fields."""

    ip: str  #: IP address of the host, as the records write it.
    enterprise: str | None  #: Enterprise id from the records (first one seen), None if none.
    zone: str | None  #: Zone id from the records (first one seen), None if none.
    first_seen: int  #: Earliest time the host sent something (ns since epoch).
    last_seen: int  #: Latest time the host sent something (ns since epoch).
    serves: tuple[str, ...] = ()  #: Protocols / app labels it answered as server, sorted.
    uses: tuple[str, ...] = ()  #: Protocols / app labels it spoke as client, sorted.
    peers: int = 0  #: Distinct peers (exact up to MAX_PEERS, a lower bound beyond).
    roles: tuple[str, ...] = ()  #: Inferred roles, in ROLES order.
    role_evidence: tuple[str, ...] = ()  #: Why: short human strings, at least one per role.
    ports: tuple[str, ...] = ()  #: 'protocol/port' entries it answered on as server.
    polls: int = 0  #: OT read / poll requests it sent as client.
    ot_requests: int = 0  #: OT requests it sent as client, SESSION ones not counted.
    engineering: tuple[str, ...] = ()  #: 'protocol function' ENGINEERING functions it was party to.
    peer_sample: tuple[str, ...] = ()  #: Peers remembered (<= MAX_PEERS), what merges union.

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples as lists), read back by :meth:`from_dict`."""
        out: dict[str, Any] = {"schema": SCHEMA}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Asset:
        """An Asset from :meth:`to_dict` output; roles are recomputed from the facts."""
        kw = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
        for derived in ("roles", "role_evidence"):
            kw.pop(derived, None)
        return _Host(str(kw["ip"])).absorb(cls(**kw)).asset()

    def merge(self, other: Asset) -> Asset:
        """The same host seen elsewhere: union of sets, min first / max last, roles recomputed."""
        if other.ip != self.ip:
            raise ValueError(f"cannot merge asset {other.ip} into {self.ip}")
        return _Host(self.ip).absorb(self).absorb(other).asset()


class _Host:
    """Mutable, bounded per-host accumulator behind an Asset."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.enterprise: str | None = None
        self.zone: str | None = None
        self.first: int | None = None
        self.last: int | None = None
        self.serves: set[str] = set()
        self.uses: set[str] = set()
        self.ports: set[str] = set()
        self.engineering: set[str] = set()
        self.peer_set: set[str] = set()
        self.peer_count = self.polls = self.ot_requests = 0

    def seen(self, first: int, last: int, enterprise: str | None, zone: str | None) -> None:
        self.first = first if self.first is None else min(self.first, first)
        self.last = last if self.last is None else max(self.last, last)
        self.enterprise, self.zone = self.enterprise or enterprise, self.zone or zone

    def peer(self, ip: str) -> None:
        if ip != self.ip and len(self.peer_set) < MAX_PEERS and _unicast(ip):
            self.peer_set.add(ip)
            self.peer_count = max(self.peer_count, len(self.peer_set))

    @staticmethod
    def add(bucket: set[str], *items: str) -> None:
        for item in items:
            if len(bucket) < MAX_ITEMS or item in bucket:
                bucket.add(item)

    def absorb(self, a: Asset) -> _Host:
        self.seen(a.first_seen, a.last_seen, a.enterprise, a.zone)
        for mine, theirs in ((self.serves, a.serves), (self.uses, a.uses),
                             (self.ports, a.ports), (self.engineering, a.engineering)):  # fmt: skip
            self.add(mine, *theirs)
        for ip in a.peer_sample:
            self.peer(ip)
        self.peer_count = max(self.peer_count, a.peers)
        self.polls += a.polls
        self.ot_requests += a.ot_requests
        return self

    def asset(self) -> Asset:
        found: dict[str, list[str]] = {}
        for entry in sorted(self.ports, key=_port_key):
            proto, _, port = entry.rpartition("/")
            if proto in SERVER_ROLES:
                found.setdefault(SERVER_ROLES[proto], []).append(f"answers {proto} on {port}")
        by_proto: dict[str, list[str]] = {}
        for entry in sorted(self.engineering):
            proto, _, fn = entry.partition(" ")
            by_proto.setdefault(proto, []).append(fn)
        if by_proto:
            found["engineering_workstation"] = [
                f"issued {p} {', '.join(fns)}" for p, fns in by_proto.items()
            ]
        elif self.ot_requests and self.polls >= HMI_READ_SHARE * self.ot_requests:
            ot = ", ".join(sorted(self.uses & OT_PROTOCOLS))
            found["hmi"] = [f"polls {ot}: {self.polls} of {self.ot_requests} OT requests read"]
        if it := sorted(self.uses & IT_CLIENT_PROTOCOLS):
            found["it_client"] = [f"speaks {', '.join(it)} as client"]
        roles = tuple(r for r in ROLES if r in found)
        return Asset(
            ip=self.ip, enterprise=self.enterprise, zone=self.zone, first_seen=self.first or 0,
            last_seen=self.last or 0, serves=tuple(sorted(self.serves)),
            uses=tuple(sorted(self.uses)), peers=max(self.peer_count, len(self.peer_set)),
            roles=roles, role_evidence=tuple(e for r in roles for e in found[r]),
            ports=tuple(sorted(self.ports, key=_port_key)), polls=self.polls,
            ot_requests=self.ot_requests, engineering=tuple(sorted(self.engineering)),
            peer_sample=tuple(sorted(self.peer_set, key=_ip_key)),
        )  # fmt: skip


class AssetBook:
    """Inventory of the hosts seen in flows and OT/IT events (at most ``max_hosts``)."""

    def __init__(self, max_hosts: int = MAX_HOSTS) -> None:
        self.max_hosts = max_hosts
        self.overflow = 0  #: Sightings of new hosts dropped because the book was full.
        self._hosts: dict[str, _Host] = {}

    def __len__(self) -> int:
        return len(self._hosts)

    def _host(self, ip: str, ent: str | None, zone: str | None, t0: int, t1: int) -> _Host | None:
        h = self._hosts.get(ip)
        if h is None:
            if not _unicast(ip):
                return None
            if len(self._hosts) >= self.max_hosts:
                self.overflow += 1
                return None
            h = self._hosts[ip] = _Host(ip)
        h.seen(t0, t1, ent, zone)
        return h

    def observe(self, rec: object) -> None:
        """Take one record; anything but a FlowRecord or an OtEvent is ignored."""
        if isinstance(rec, OtEvent):
            self._event(rec)
        elif isinstance(rec, FlowRecord):
            self._flow(rec)

    def _flow(self, rec: FlowRecord) -> None:
        app, answered = rec.app_proto, rec.resp_pkts > 0
        if o := self._host(rec.src_ip, rec.src_enterprise, rec.src_zone, rec.start, rec.end):
            o.peer(rec.dst_ip)
            if app and answered and rec.orig_payload_bytes > 0:
                o.add(o.uses, app)
        if answered and (
            r := self._host(rec.dst_ip, rec.dst_enterprise, rec.dst_zone, rec.start, rec.end)
        ):
            r.peer(rec.src_ip)
            if app and rec.resp_payload_bytes > 0:
                r.add(r.serves, app)
                r.add(r.ports, f"{app}/{rec.dst_port}")

    def _event(self, rec: OtEvent) -> None:
        proto, fn = rec.protocol, rec.function_name or ""
        ports = SERVER_PORTS.get(proto, ())
        if fn in ANNOUNCE:
            from_server = True
        elif (rec.src_port in ports) != (rec.dst_port in ports):
            from_server = rec.src_port in ports
        else:
            from_server = rec.direction == "response"
        if (h := self._host(rec.src_ip, rec.src_enterprise, rec.src_zone, rec.ts, rec.ts)) is None:
            return
        h.peer(rec.dst_ip)
        if from_server:
            h.add(h.serves, proto)
            h.add(h.ports, f"{proto}/{rec.src_port}")
            return
        h.add(h.uses, proto)
        if fn in ENGINEERING.get(proto, ()):
            h.add(h.engineering, f"{proto} {fn}")
        if rec.direction == "request" and proto in OT_PROTOCOLS and fn not in SESSION:
            h.ot_requests += 1
            h.polls += fn in POLLS.get(proto, ())

    def merge(self, asset: Asset | dict[str, Any]) -> None:
        """Fold in an asset (or its :meth:`Asset.to_dict`) from another inventory."""
        a = asset if isinstance(asset, Asset) else Asset.from_dict(asset)
        if h := self._host(a.ip, a.enterprise, a.zone, a.first_seen, a.last_seen):
            h.absorb(a)

    def assets(self) -> list[Asset]:
        """Every host, sorted by IP address (numerically, IPv4 before IPv6)."""
        return [self._hosts[ip].asset() for ip in sorted(self._hosts, key=_ip_key)]
