"""OPC UA binary (TCP 4840) scenario: historian reads and an unsecured rogue session to a PLC.

The capture ``opcua_unsecured_session.pcap`` (10 minutes) holds:

- normal: the Alpha furnace HMI (10.1.2.20, OT) reads three furnace values every 10 s from the
  OPC UA server of the plant historian (10.1.3.5, DMZ): HEL/ACK, OPN, CreateSession,
  ActivateSession, then Read requests, over an allowed conduit (ent-a OT -> ent-a DMZ, opcua);
- attack from 10.1.1.66 (ent-a IT, where no OPC UA client belongs): an OPC UA session to the
  server of PLC 1 (10.1.2.10) opened with SecurityPolicy#None, MessageSecurityMode None and an
  anonymous identity token, a Browse of the Objects folder and a Read of every tag it found, then
  CloseSession and CLO.

Both sessions use SecurityPolicy#None (as many plants do inside their own zones, and as tshark
can only dissect unencrypted messages), so "no security" alone does not tell them apart; the
attack is the unsecured, anonymous session across a conduit the park's policy does not allow
(opcua from ent-a IT to ent-a OT), which enumerates and reads the PLC's tags.
"""

from __future__ import annotations

import struct
from typing import Any

from scapy.packet import Packet

from replay_pcaps import generate
from replay_pcaps.craft import Conversation
from replay_pcaps.scenarios.s7comm import SOURCE, Tape, Value, attack

T0 = 1_763_830_000.0
HMI, PLC1 = generate.HMI, generate.PLC1
HISTORIAN, ROGUE = "10.1.3.5", "10.1.1.66"
PORT = 4840
POLICY_NONE = b"http://opcfoundation.org/UA/SecurityPolicy#None"
# service request/response type ids (DefaultBinary encodings, namespace 0)
OPN_REQ, OPN_RSP, CLO_REQ = 446, 449, 452
CREATE_REQ, CREATE_RSP, ACTIVATE_REQ, ACTIVATE_RSP = 461, 464, 467, 470
CLOSE_REQ, CLOSE_RSP, BROWSE_REQ, BROWSE_RSP = 473, 476, 527, 530
READ_REQ, READ_RSP, ANONYMOUS_TOKEN = 631, 634, 321
TAGS = ["FurnaceTemp", "BlastPressure", "O2Flow", "TapholeOpen", "CoolingFlow", "Setpoint"]


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def i32(v: int) -> bytes:
    return struct.pack("<i", v)


def string(s: bytes | None) -> bytes:
    return i32(-1) if s is None else i32(len(s)) + s


def date(t: float) -> bytes:
    """OPC UA DateTime: 100 ns ticks since 1601-01-01."""
    return struct.pack("<q", round((t + 11_644_473_600) * 10_000_000))


def nodeid(ident: int, ns: int = 0) -> bytes:
    """Numeric NodeId in its shortest encoding."""
    if ns == 0 and ident < 256:
        return bytes([0, ident])
    if ns < 256 and ident < 65536:
        return bytes([1, ns]) + struct.pack("<H", ident)
    return b"\x02" + struct.pack("<HI", ns, ident)


def string_nodeid(ns: int, s: bytes) -> bytes:
    return b"\x03" + struct.pack("<H", ns) + string(s)


EMPTY_EXT = b"\x00\x00\x00"  # ExtensionObject: null type id, no body
NO_SIGNATURE = string(None) + string(None)  # SignatureData: algorithm, signature


def request_header(t: float, handle: int, token: bytes = b"\x00\x00") -> bytes:
    return token + date(t) + u32(handle) + u32(0) + string(None) + u32(10000) + EMPTY_EXT


def response_header(t: float, handle: int) -> bytes:
    return date(t) + u32(handle) + u32(0) + b"\x00" + i32(0) + EMPTY_EXT


def with_size(kind: bytes, rest: bytes) -> bytes:
    return kind + b"F" + u32(len(rest) + 8) + rest


class UaSession:
    """A TCP connection carrying OPC UA; records intended (message type, service id)."""

    def __init__(self, tape: Tape, client: str, server: str, cport: int, channel: int) -> None:
        self.tape = tape
        self.conv: Conversation = tape.tcp(client, server, cport, PORT)
        self.url = f"opc.tcp://{server}:{PORT}".encode()
        self.channel, self.token, self.seq, self.req = channel, 1, 50, 0
        self.auth = b""

    def chunk(self, t: float, from_client: bool, kind: bytes, body: bytes, service: int) -> None:
        self.seq += 1
        if kind == b"OPN":
            sec = string(POLICY_NONE) + string(None) + string(None)
        else:
            sec = u32(self.token)
        msg = with_size(kind, u32(self.channel) + sec + u32(self.seq) + u32(self.req) + body)
        self.conv.send(t, from_client, "PA", msg)
        self.tape.mark(kind.decode(), service)

    def call(self, t: float, kind: bytes, req: tuple[int, bytes], rsp: tuple[int, bytes]) -> float:
        """Request with a body after its RequestHeader, response after its ResponseHeader."""
        self.req += 1
        handle = 1000 + self.req
        token = self.auth or b"\x00\x00"
        body = nodeid(req[0]) + request_header(t, handle, token) + req[1]
        self.chunk(t, True, kind, body, req[0])
        body = nodeid(rsp[0]) + response_header(t + 0.003, handle) + rsp[1]
        self.chunk(t + 0.003, False, kind, body, rsp[0])
        self.conv.send(t + 0.1, True, "A")
        return t + 0.15

    def open(self, t: float, session_name: bytes) -> float:
        t = self.conv.open(t)
        hello = u32(0) + u32(65536) * 2 + u32(0) + u32(0) + string(self.url)
        self.conv.send(t, True, "PA", with_size(b"HEL", hello))
        self.tape.mark("HEL", None)
        self.conv.send(
            t + 0.002, False, "PA", with_size(b"ACK", u32(0) + u32(65536) * 2 + u32(0) * 2)
        )
        self.tape.mark("ACK", None)
        opn = u32(0) + u32(0) + u32(1) + string(b"") + u32(3_600_000)  # issue, mode None
        opened = u32(0) + u32(self.channel) + u32(self.token) + date(t) + u32(3_600_000)
        t = self.call(t + 0.01, b"OPN", (OPN_REQ, opn), (OPN_RSP, opened + string(b"")))
        client = (
            string(b"urn:parkwatch:client:" + session_name)
            + string(b"urn:parkwatch")
            + b"\x02"
            + string(session_name)
            + u32(1)  # ApplicationType Client
            + string(None) * 2
            + i32(0)
        )
        create = (
            client
            + string(None)
            + string(self.url)
            + string(session_name)
            + string(None) * 2
            + struct.pack("<d", 1_200_000.0)
            + u32(0)
        )
        session_id = nodeid(0x7000 + self.channel, 1)
        auth = nodeid(0x7100 + self.channel, 1)
        created = (
            session_id
            + auth
            + struct.pack("<d", 1_200_000.0)
            + string(None) * 2
            + i32(0) * 2
            + NO_SIGNATURE
            + u32(0)
        )
        t = self.call(t, b"MSG", (CREATE_REQ, create), (CREATE_RSP, created))
        self.auth = auth
        anonymous = string(b"anonymous")
        activate = (
            NO_SIGNATURE
            + i32(0)
            + i32(1)
            + string(b"en")
            + nodeid(ANONYMOUS_TOKEN)
            + b"\x01"
            + i32(len(anonymous))
            + anonymous
            + NO_SIGNATURE
        )
        return self.call(
            t, b"MSG", (ACTIVATE_REQ, activate), (ACTIVATE_RSP, string(None) + i32(0) * 2)
        )

    def read(self, t: float, nodes: list[bytes], values: list[float]) -> float:
        req = struct.pack("<d", 0.0) + u32(2) + i32(len(nodes))
        for n in nodes:
            req += n + u32(13) + string(None) + struct.pack("<H", 0) + string(None)
        rsp = i32(len(values))
        for v in values:
            rsp += b"\x01\x0b" + struct.pack("<d", v)  # DataValue with a Double Variant
        return self.call(t, b"MSG", (READ_REQ, req), (READ_RSP, rsp + i32(0)))

    def browse_objects(self, t: float, tags: list[str]) -> float:
        view = b"\x00\x00" + struct.pack("<q", 0) + u32(0)
        req = view + u32(0) + i32(1)
        req += nodeid(85) + u32(0) + nodeid(33) + b"\x01" + u32(0) + u32(63)
        refs = b""
        for tag in tags:
            name = tag.encode()
            refs += (
                nodeid(47)  # HasComponent
                + b"\x01"
                + string_nodeid(3, name)
                + struct.pack("<H", 3)
                + string(name)
                + b"\x02"
                + string(name)
                + u32(2)  # NodeClass Variable
                + nodeid(63)  # BaseDataVariableType
            )
        rsp = i32(1) + u32(0) + string(None) + i32(len(tags)) + refs + i32(0)
        return self.call(t, b"MSG", (BROWSE_REQ, req), (BROWSE_RSP, rsp))

    def close(self, t: float) -> float:
        t = self.call(t, b"MSG", (CLOSE_REQ, b"\x01"), (CLOSE_RSP, b""))
        self.req += 1
        self.chunk(t, True, b"CLO", nodeid(CLO_REQ) + request_header(t, 1000 + self.req), CLO_REQ)
        self.conv.close(t + 0.001)
        return t + 0.002


def hmi_reads(tape: Tape) -> None:
    sess = UaSession(tape, HMI, HISTORIAN, 49600, 11)
    t = sess.open(T0 + 1, b"furnace-hmi")
    nodes = [string_nodeid(2, f"Furnace1.{tag}".encode()) for tag in TAGS[:3]]
    for k in range(60):
        sess.read(t + 10 * k, nodes, [1480.0 + k % 7, 3.2 + 0.01 * (k % 5), 412.5])
    sess.close(t + 600)


def rogue_session(tape: Tape, t: float) -> tuple[float, float]:
    sess = UaSession(tape, ROGUE, PLC1, 52000, 12)
    start = t
    t = sess.open(t, b"UaExpert")
    t = sess.browse_objects(t + 1, TAGS)
    t = sess.read(
        t + 1,
        [string_nodeid(3, tag.encode()) for tag in TAGS],
        [1481.0, 3.21, 412.5, 0.0, 88.0, 1500.0],
    )
    return start, sess.close(t + 1)


def build() -> tuple[list[Packet], dict[str, Any], list[tuple[Value, ...]]]:
    tape = Tape()
    hmi_reads(tape)
    span = rogue_session(tape, T0 + 200)
    packets, intended = tape.finish()
    labels = {
        "description": (
            "OPC UA binary: HMI reads from the historian's OPC UA server; a host in Alpha's IT "
            "zone opens an unsecured (SecurityPolicy#None, anonymous) session to PLC 1's OPC UA "
            "server, browses its Objects folder and reads every tag."
        ),
        "source": SOURCE,
        "attacks": [
            attack(
                "opcua-unsecured-session",
                "policy_violation",
                ["T0886", "T0861"],
                *span,
                [ROGUE],
                [PLC1],
            )
        ],
        "notes": (
            "Crafted. Category policy_violation rather than ot_recon: the defining fact is an "
            "OPC UA session with SecurityPolicy#None, MessageSecurityMode None and an anonymous "
            "token over a conduit the park does not allow (opcua from ent-a IT to ent-a OT); "
            "the Browse + Read that follow are tag identification (T0861). The normal HMI -> "
            "historian session (allowed conduit ent-a OT -> DMZ) uses SecurityPolicy#None too, "
            "so the policy URI alone is not the signal."
        ),
    }
    return packets, labels, intended


SCENARIOS = {"opcua_unsecured_session.pcap": lambda: build()[:2]}
"""Capture name -> scenario."""

INTENDED = {"opcua_unsecured_session.pcap": lambda: build()[2]}
"""Capture name -> intended values of :data:`TSHARK_FIELDS`, one tuple per OT frame."""

TSHARK_FILTER = "opcua"
TSHARK_FIELDS = ("opcua.transport.type", "opcua.servicenodeid.numeric")
