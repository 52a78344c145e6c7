"""Events: facts below and beside flows (schemas ``parkwatch.weird/2``, ``parkwatch.arp/1``,
``parkwatch.ot_event/2``).

Collectors emit these; they state what was seen, never whether it is bad.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from parkwatch.schema.base import Record, doc


@dataclass(slots=True)
class Weird(Record):
    """Something that could not be decoded as the standards say (Zeek's weird.log is the model).

    Schema 2 adds the flow context of a protocol decoder's weird (who sent the bytes that do
    not parse, to whom, over which flow), so rules can name the sender; packet-level weirds
    (truncated headers, capture problems, transport) leave those fields None.
    """

    SCHEMA = "parkwatch.weird"
    VERSION = 2
    READS = (1,)  # a stored weird/1 is a weird/2 without flow context

    ts: int = doc("Capture time of the packet (ns since epoch; RFC 3339 in JSON).", ts=True)
    name: str = doc("Short snake_case reason, e.g. 'truncated_ipv4_header', 'bad_tcp_data_offset'.")
    layer: str = doc(
        "Layer at fault: capture, link, ip, ipv6, tcp, udp, icmp, arp, or a protocol name."
    )
    detail: str = doc("Human-readable detail (lengths found vs expected …).")
    file: str | None = doc(
        "Capture file the packet came from ('<stdin>' for a pipe).", default=None
    )
    frame: int | None = doc(
        "1-based packet number in that capture, as Wireshark counts.", default=None
    )
    vantage: str | None = doc("Vantage point id.", default=None)
    src_ip: str | None = doc(
        "Sender of the data that did not decode (protocol weirds; None for packet-level ones).",
        default=None,
    )
    src_port: int | None = doc("Sender port.", default=None)
    dst_ip: str | None = doc("Receiver of that data.", default=None)
    dst_port: int | None = doc("Receiver port.", default=None)
    protocol: str | None = doc(
        "Decoder of the flow (modbus, dnp3, s7comm, …); None before a decoder was chosen.",
        default=None,
    )
    community_id: str | None = doc("Community ID v1 of the flow.", default=None)
    flow_uid: str | None = doc("uid of the FlowRecord of the flow.", default=None)
    src_enterprise: str | None = doc("Enterprise of the sender (park topology).", default=None)
    dst_enterprise: str | None = doc("Enterprise of the receiver.", default=None)


@dataclass(slots=True)
class ArpEvent(Record):
    """One ARP packet: who-has (request) or is-at (reply), with the MACs it claims."""

    SCHEMA = "parkwatch.arp"
    VERSION = 1

    ts: int = doc("Capture time (ns since epoch; RFC 3339 in JSON).", ts=True)
    op: str = doc("'who-has' (1), 'is-at' (2), or 'op-<n>' for other opcodes.")
    sender_mac: str = doc("Sender hardware address claimed inside the ARP payload.")
    sender_ip: str = doc("Sender protocol (IPv4) address claimed inside the ARP payload.")
    target_mac: str = doc("Target hardware address (00:00:00:00:00:00 in a request).")
    target_ip: str = doc("Target protocol address.")
    src_mac: str | None = doc(
        "Ethernet source MAC of the frame (may differ from sender_mac).", default=None
    )
    dst_mac: str | None = doc(
        "Ethernet destination MAC (ff:ff:ff:ff:ff:ff when broadcast).", default=None
    )
    gratuitous: bool = doc(
        "True when sender_ip == target_ip (announcement / gratuitous ARP).", default=False
    )
    vlan: int | None = doc("Outer VLAN id, None if untagged.", default=None)
    vantage: str | None = doc("Vantage point id.", default=None)
    frame: int | None = doc("1-based packet number in its capture.", default=None)


@dataclass(slots=True)
class OtEvent(Record):
    """One protocol message (request or response) of an OT or IT protocol.

    Produced by the protocol decoders in ``collectors/apps`` (one module per protocol; each
    documents the ``attrs`` keys it sets in its ``ATTRS`` table). Schema 2 adds the explicit
    data-area fields and the topology facts of both sides, so rules need no lookups.
    """

    SCHEMA = "parkwatch.ot_event"
    VERSION = 2

    uid: str = doc(
        "Stable event id: same capture, vantage and message give the same uid.", safe=True
    )
    ts: int = doc("Capture time of the packet that completed the message (RFC 3339 in JSON).", ts=True)
    protocol: str = doc(
        "Protocol: modbus, dnp3, s7comm, iec104, enip, opcua, bacnet, mqtt, dns, http, tls, ssh, ftp, …",
        safe=True,
    )
    direction: str = doc(
        "'request' (client/master to server/outstation) or 'response'.", safe=True
    )
    src_ip: str = doc("Sender of this message.", safe=True)
    src_port: int = doc("Sender port.")
    dst_ip: str = doc("Receiver of this message.", safe=True)
    dst_port: int = doc("Receiver port.")
    community_id: str = doc("Community ID v1 of the flow carrying the message.", safe=True)
    flow_uid: str | None = doc("uid of the FlowRecord carrying the message.", default=None)
    vantage: str | None = doc("Vantage point id.", default=None)
    unit: int | None = doc(
        "Unit id (Modbus), destination address (DNP3), common address (IEC 104), where any.",
        default=None,
    )
    function_code: int | None = doc(
        "Function / service / type code (Modbus fc, DNP3 AL func, S7 func, IEC 104 type id, CIP service).",
        default=None,
    )
    function_name: str | None = doc(
        "Name of the function code from the protocol's table ('unknown-<n>' when not in it).",
        default=None,
    )
    exception_code: int | None = doc(
        "Error code of a refusal (Modbus exception, S7 class<<8|code, DNP3 IIN2 bits …); None if none.",
        default=None,
    )
    request_uid: str | None = doc("For a response: uid of the request it answers.", default=None)
    address: int | None = doc(
        "Start address / register / object index / IOA the message addresses, where any.",
        default=None,
    )
    quantity: int | None = doc("Number of items (registers, coils, objects, bytes) addressed.", default=None)
    values: tuple[Any, ...] | None = doc(
        "Values written (or set) by a request, where the protocol carries them.", default=None
    )
    data_area: str | None = doc(
        "Data area: Modbus table ('holding_register' …), DNP3 'g12v1', S7 area, CIP path …",
        default=None,
    )
    src_enterprise: str | None = doc("Enterprise of the sender (park topology).", default=None)
    src_zone: str | None = doc("Zone of the sender.", default=None)
    src_role: str | None = doc("Asset role of the sender (plc, hmi, ews, …), if known.", default=None)
    dst_enterprise: str | None = doc("Enterprise of the receiver.", default=None)
    dst_zone: str | None = doc("Zone of the receiver.", default=None)
    dst_role: str | None = doc("Asset role of the receiver, if known.", default=None)
    attrs: dict[str, Any] = doc(
        "Protocol-specific fields, documented in the decoder module's ATTRS table.", factory=dict
    )
