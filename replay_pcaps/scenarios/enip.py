"""EtherNet/IP + CIP (port 44818) scenario: HMI reads of a CIP PLC and attacks on it.

The capture ``enip_cip_attacks.pcap`` (10 minutes) holds:

- normal: the Alpha furnace HMI (10.1.2.20) registers a session with PLC 2 (10.1.2.11) and,
  every 5 s, reads the input assembly (class 0x04, instance 0x64, attribute 3) with an
  unconnected CIP Get_Attribute_Single (0x0e) in SendRRData; once at start it reads the
  Identity object's status (class 0x01, attribute 5);
- attacks from 10.2.1.66 (Beta Chemicals IT, no business in Alpha's OT zone): a ListIdentity
  (0x63) sweep over UDP 44818 of 10.1.2.1-.30 that PLC 2 answers, then on TCP a
  Set_Attribute_Single (0x10) of the output assembly (class 0x04, instance 0x96, attribute 3),
  then a CIP Reset (0x05) of the Identity object (class 0x01, instance 1).
"""

from __future__ import annotations

import struct
from typing import Any

from scapy.packet import Packet

from replay_pcaps import generate
from replay_pcaps.scenarios.s7comm import SOURCE, Tape, Value, attack

T0 = 1_763_820_000.0
HMI, PLC2 = generate.HMI, generate.PLC2
ATTACKER = "10.2.1.66"
PORT = 44818
LIST_IDENTITY, REGISTER, UNREGISTER, SEND_RR = 0x63, 0x65, 0x66, 0x6F
GET_SINGLE, SET_SINGLE, RESET = 0x0E, 0x10, 0x05


def encap(command: int, data: bytes, session: int = 0, context: int = 0) -> bytes:
    """Encapsulation header (24 bytes, little endian) + command data."""
    return (
        struct.pack("<HHII8sI", command, len(data), session, 0, context.to_bytes(8, "little"), 0)
        + data
    )


def path(cls: int, instance: int, attribute: int | None = None) -> bytes:
    """Padded EPATH of 8-bit logical segments, preceded by its size in words."""
    segs = bytes([0x20, cls, 0x24, instance])
    if attribute is not None:
        segs += bytes([0x30, attribute])
    return bytes([len(segs) // 2]) + segs


def send_rr(session: int, context: int, cip: bytes) -> bytes:
    """SendRRData: interface 0, timeout 10 s, null address item + unconnected data item."""
    items = struct.pack("<IHHHHHH", 0, 10, 2, 0x0000, 0, 0x00B2, len(cip)) + cip
    return encap(SEND_RR, items, session, context)


def identity_item(ip: str) -> bytes:
    """ListIdentity reply item 0x0c for a 1756-L8x-like controller at ``ip``."""
    name = b"1756-L83E/B"
    body = (
        struct.pack("<H", 1)
        + struct.pack(">hH", 2, PORT)
        + bytes(int(x) for x in ip.split("."))
        + bytes(8)
        + struct.pack("<HHHBBHI", 1, 0x0E, 0x00A6, 32, 11, 0x0060, 0x60C0FFEE)
        + bytes([len(name)])
        + name
        + b"\x03"
    )
    return struct.pack("<HHH", 1, 0x000C, len(body)) + body


class CipSession:
    """A TCP EtherNet/IP session; records intended (enip.command, cip.rr, cip.sc)."""

    def __init__(self, tape: Tape, client: str, cport: int, handle: int) -> None:
        self.tape, self.conv = tape, tape.tcp(client, PLC2, cport, PORT)
        self.handle, self.context = handle, 0

    def register(self, t: float) -> float:
        t = self.conv.open(t)
        self.conv.send(t, True, "PA", encap(REGISTER, struct.pack("<HH", 1, 0)))
        self.tape.mark(REGISTER, None, None)
        self.conv.send(
            t + 0.002, False, "PA", encap(REGISTER, struct.pack("<HH", 1, 0), self.handle)
        )
        self.tape.mark(REGISTER, None, None)
        return t + 0.01

    def request(self, t: float, service: int, epath: bytes, data: bytes, reply: bytes) -> float:
        self.context += 1
        cip = bytes([service]) + epath + data
        self.conv.send(t, True, "PA", send_rr(self.handle, self.context, cip))
        self.tape.mark(SEND_RR, 0, service)
        answer = bytes([service | 0x80, 0, 0, 0]) + reply
        self.conv.send(t + 0.003, False, "PA", send_rr(self.handle, self.context, answer))
        self.tape.mark(SEND_RR, 1, service)
        self.conv.send(t + 0.2, True, "A")
        return t + 0.25

    def close(self, t: float) -> float:
        self.conv.send(t, True, "PA", encap(UNREGISTER, b"", self.handle))
        self.tape.mark(UNREGISTER, None, None)
        self.conv.close(t + 0.001)
        return t + 0.002


def hmi_reads(tape: Tape) -> None:
    sess = CipSession(tape, HMI, 49500, 0x1A2B0001)
    t = sess.register(T0 + 1)
    t = sess.request(t, GET_SINGLE, path(0x01, 1, 5), b"", struct.pack("<H", 0x0060))
    for k in range(120):
        values = bytes((3 * k + i) & 0xFF for i in range(16))
        sess.request(t + 5 * k, GET_SINGLE, path(0x04, 0x64, 3), b"", values)
    sess.close(t + 600)


def list_identity_sweep(tape: Tape, t: float) -> tuple[float, float]:
    for host in range(1, 31):
        ip = f"10.1.2.{host}"
        ts = t + 0.02 * host
        tape.udp(ts, ATTACKER, ip, 51000, PORT, encap(LIST_IDENTITY, b""))
        tape.mark(LIST_IDENTITY, None, None)
        if ip == PLC2:
            tape.udp(ts + 0.002, ip, ATTACKER, PORT, 51000, encap(LIST_IDENTITY, identity_item(ip)))
            tape.mark(LIST_IDENTITY, None, None)
    return t, t + 0.02 * 30 + 0.001


def rogue_set(tape: Tape, t: float) -> tuple[float, float]:
    sess = CipSession(tape, ATTACKER, 51100, 0x1A2B0002)
    start = t
    t = sess.register(t)
    for k in range(3):
        t = sess.request(t, SET_SINGLE, path(0x04, 0x96, 3), bytes([0xFF] * 7 + [k]), b"")
    return start, sess.close(t)


def rogue_reset(tape: Tape, t: float) -> tuple[float, float]:
    sess = CipSession(tape, ATTACKER, 51200, 0x1A2B0003)
    start = t
    t = sess.register(t)
    t = sess.request(t, RESET, path(0x01, 1), b"\x00", b"")  # type 0: emulate a power cycle
    return start, sess.close(t)


def build() -> tuple[list[Packet], dict[str, Any], list[tuple[Value, ...]]]:
    tape = Tape()
    hmi_reads(tape)
    sweep = list_identity_sweep(tape, T0 + 120)
    write = rogue_set(tape, T0 + 240)
    reset = rogue_reset(tape, T0 + 360)
    packets, intended = tape.finish()
    who = [ATTACKER]
    labels = {
        "description": (
            "EtherNet/IP/CIP: HMI reads of PLC 2's assemblies; a Beta Chemicals IT host sweeps "
            "Alpha's OT subnet with ListIdentity, then writes PLC 2's output assembly and resets "
            "its Identity object."
        ),
        "source": SOURCE,
        "attacks": [
            attack(
                "enip-listidentity-sweep",
                "ot_recon",
                ["T0846", "T0888"],
                *sweep,
                who,
                ["10.1.2.0/24"],
            ),
            attack(
                "enip-set-attribute",
                "ot_unauthorized_write",
                ["T0855", "T0836"],
                *write,
                who,
                [PLC2],
            ),
            attack("enip-reset", "ot_unauthorized_command", ["T0816"], *reset, who, [PLC2]),
        ],
        "notes": (
            "Crafted. The sweep is unicast ListIdentity over UDP 44818 to 10.1.2.1-.30; only "
            "PLC 2 (10.1.2.11) answers. Writes and reset are unconnected explicit messages "
            "(SendRRData) sent straight to PLC 2; the attacker's traffic also crosses the "
            "enterprise boundary (ent-b IT to ent-a OT), which the park policy forbids."
        ),
    }
    return packets, labels, intended


SCENARIOS = {"enip_cip_attacks.pcap": lambda: build()[:2]}
"""Capture name -> scenario."""

INTENDED = {"enip_cip_attacks.pcap": lambda: build()[2]}
"""Capture name -> intended values of :data:`TSHARK_FIELDS`, one tuple per OT frame."""

TSHARK_FILTER = "enip"
TSHARK_FIELDS = ("enip.command", "cip.rr", "cip.sc")
