"""Flow records: one bidirectional conversation as a collector saw it (schema ``parkwatch.flow/2``;
version 2 added ``sni`` and ``http_host``).

Conventions (Zeek's conn.log is the model):
- the *originator* is the host that sent the first SYN (TCP), or the first packet's sender,
  flipped when only the reply side was seen (``^`` in ``history``); ``src_*`` is the originator;
- for ICMP/ICMPv6 (Zeek's convention), ``src_port`` is the originator's ICMP type and
  ``dst_port`` the counterpart type for request/reply pairs (echo 8/0, ICMPv6 echo 128/129,
  timestamp 13/14, neighbor solicitation 135/136 …), else the code of the first message;
- byte counts come in three layers per direction: IP (header + payload, IPFIX octet count),
  transport payload, and link-layer frame bytes (what tshark's ``-z conv`` and argus count).
"""

from __future__ import annotations

from dataclasses import dataclass

from parkwatch.schema.base import Record, doc

CONN_STATES = {
    "S0": "connection attempt seen, no reply",
    "S1": "connection established, not terminated",
    "SF": "normal establishment and termination (or, for UDP/ICMP, both sides sent)",
    "REJ": "connection attempt rejected (SYN answered by RST)",
    "S2": "established, close attempt by originator seen (no reply from responder)",
    "S3": "established, close attempt by responder seen (no reply from originator)",
    "RSTO": "established, originator aborted (sent a RST)",
    "RSTR": "responder sent a RST",
    "RSTOS0": "originator sent a SYN followed by a RST, never saw a SYN-ACK",
    "RSTRH": "responder sent a SYN-ACK followed by a RST, never saw a SYN",
    "SH": "originator sent a SYN followed by a FIN, never saw a SYN-ACK (half open)",
    "SHR": "responder sent a SYN-ACK followed by a FIN, never saw a SYN",
    "OTH": "no SYN seen, just midstream traffic (or, for UDP/ICMP, only one side)",
}
"""Zeek connection states (``conn_state``) and what each means."""

END_REASONS = {
    "fin": "closed by FIN from both sides (or FIN then silence)",
    "rst": "aborted by a RST",
    "idle_timeout": "no packet for the idle timeout of its protocol",
    "active_timeout": "longer than the active timeout; the next packet starts a new record",
    "end_of_capture": "still open when the capture ended",
    "evicted": "removed early to keep the flow table within its memory bound",
}
"""Why a flow record was closed (``end_reason``)."""


@dataclass(slots=True)
class FlowRecord(Record):
    """One bidirectional flow between two endpoints, as seen at one vantage point."""

    SCHEMA = "parkwatch.flow"
    VERSION = 2

    uid: str = doc("Stable flow id: same capture, vantage and flow give the same uid.", safe=True)
    start: int = doc("Time of the first packet (ns since epoch; RFC 3339 UTC in JSON).", ts=True)
    end: int = doc("Time of the last packet (ns since epoch; RFC 3339 UTC in JSON).", ts=True)
    vantage: str = doc("Collector / vantage point id that saw the flow.")
    src_ip: str = doc("Originator IP address (IPv4 dotted or IPv6 compressed text).", safe=True)
    src_port: int = doc("Originator port; ICMP type for ICMP; 0 for protocols without ports.")
    dst_ip: str = doc("Responder IP address.", safe=True)
    dst_port: int = doc(
        "Responder port; ICMP counterpart type or code (see module doc); 0 without ports."
    )
    proto: int = doc("IP protocol number (IANA): 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, …")
    community_id: str = doc(
        "Community ID v1 flow hash (seed 0), e.g. '1:LQU9qZlK+B5F3KDmev6m5PMibrg='.", safe=True
    )
    conn_state: str = doc("Zeek-style connection state, one of CONN_STATES.", safe=True)
    history: str = doc(
        "Zeek-style history: S H A D F R (upper = originator), ^ = direction flipped.", safe=True
    )
    end_reason: str = doc("Why the record was closed, one of END_REASONS.", safe=True)
    orig_pkts: int = doc("Packets sent by the originator.")
    orig_bytes: int = doc("IP-layer bytes (headers + payload) sent by the originator.")
    orig_payload_bytes: int = doc(
        "Transport payload bytes sent by the originator (retransmits included)."
    )
    orig_l2_bytes: int = doc("Link-layer frame bytes (original length) sent by the originator.")
    orig_flags: str = doc(
        "TCP flags seen from the originator, in order FSRPAUEC (empty if none/not TCP).", safe=True
    )
    resp_pkts: int = doc("Packets sent by the responder.")
    resp_bytes: int = doc("IP-layer bytes sent by the responder.")
    resp_payload_bytes: int = doc("Transport payload bytes sent by the responder.")
    resp_l2_bytes: int = doc("Link-layer frame bytes sent by the responder.")
    resp_flags: str = doc("TCP flags seen from the responder, in order FSRPAUEC.", safe=True)
    vlan: int | None = doc("Outer 802.1Q/802.1ad VLAN id, None if untagged.", default=None)
    vlan_inner: int | None = doc(
        "Inner VLAN id of a QinQ frame, None if not double-tagged.", default=None
    )
    src_mac: str | None = doc(
        "Originator-side MAC of the first packet (None without Ethernet/SLL).", default=None
    )
    dst_mac: str | None = doc("Responder-side MAC of the first packet.", default=None)
    app_proto: str | None = doc(
        "Application protocol: confirmed by a decoder when decoding ran, else by port binding.",
        default=None,
    )
    sni: str | None = doc("TLS server name of the first ClientHello (decoders on).", default=None)
    http_host: str | None = doc("Host header of the first HTTP request (decoders on).", default=None)
    src_enterprise: str | None = doc(
        "Enterprise id of the originator from the park topology.", default=None
    )
    src_zone: str | None = doc("Zone id of the originator from the park topology.", default=None)
    src_role: str | None = doc(
        "Asset role of the originator (plc, hmi, ews, …) if a known asset.", default=None
    )
    dst_enterprise: str | None = doc(
        "Enterprise id of the responder from the park topology.", default=None
    )
    dst_zone: str | None = doc("Zone id of the responder from the park topology.", default=None)
    dst_role: str | None = doc("Asset role of the responder if a known asset.", default=None)

    @property
    def duration_ns(self) -> int:
        return self.end - self.start
