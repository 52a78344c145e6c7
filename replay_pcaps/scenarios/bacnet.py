"""BACnet/IP (UDP 47808) scenario: HVAC reads and rogue commands to a building controller.

The capture ``bacnet_rogue_commands.pcap`` (10 minutes) holds:

- normal: the Alpha furnace HMI (10.1.2.20) broadcasts Who-Is, the furnace-hall HVAC controller
  (10.1.2.40, device 1040) answers I-Am, and the HMI reads the present value of analog-input 1
  (cooling water temperature) every 10 s with ReadProperty / ComplexACK;
- attacks from 10.1.1.66 (ent-a IT, no BACnet client belongs there): WriteProperty of
  analog-value 2 (cooling setpoint) at priority 8, and two minutes later ReinitializeDevice
  (warm start, with the device password), each acknowledged with a SimpleACK.
"""

from __future__ import annotations

import struct
from typing import Any

from scapy.packet import Packet

from replay_pcaps import generate
from replay_pcaps.scenarios.s7comm import SOURCE, Tape, Value, attack

T0 = 1_763_850_000.0
HMI, CONTROLLER, ROGUE = generate.HMI, "10.1.2.40", "10.1.1.66"
BROADCAST, PORT = "10.1.2.255", 47808
UNICAST, BCAST = 0x0A, 0x0B  # BVLC functions
CONFIRMED, UNCONFIRMED, SIMPLE_ACK, COMPLEX_ACK = 0, 1, 2, 3  # APDU types
I_AM, WHO_IS = 0, 8
READ_PROPERTY, WRITE_PROPERTY, REINITIALIZE = 12, 15, 20
ANALOG_INPUT, ANALOG_VALUE, DEVICE = 0, 2, 8
PRESENT_VALUE = 85
DEVICE_ID = 1040


def object_id(kind: int, instance: int) -> bytes:
    return struct.pack(">I", kind << 22 | instance)


def bvlc(function: int, apdu: bytes, expecting_reply: bool = False) -> bytes:
    npdu = b"\x01\x04" if expecting_reply else b"\x01\x00"
    return bytes([0x81, function]) + struct.pack(">H", len(npdu + apdu) + 4) + npdu + apdu


def property_ref(kind: int, instance: int) -> bytes:
    """Context tag 0 object identifier, context tag 1 property identifier present-value."""
    return b"\x0c" + object_id(kind, instance) + bytes([0x19, PRESENT_VALUE])


def real(value: float) -> bytes:
    """Opening tag 3, application REAL, closing tag 3."""
    return b"\x3e\x44" + struct.pack(">f", value) + b"\x3f"


class Bacnet:
    """Records each BACnet message with its intended (bvlc, apdu type, service) values."""

    def __init__(self, tape: Tape) -> None:
        self.tape = tape

    def send(self, t: float, src: str, dst: str, function: int, apdu: bytes, **kw: bool) -> None:
        self.tape.udp(t, src, dst, PORT, PORT, bvlc(function, apdu, **kw))
        kind = apdu[0] >> 4
        confirmed = None
        if kind == CONFIRMED:
            confirmed = apdu[3]
        elif kind in (SIMPLE_ACK, COMPLEX_ACK):
            confirmed = apdu[2]
        unconfirmed = apdu[1] if kind == UNCONFIRMED else None
        self.tape.mark(function, kind, confirmed, unconfirmed)

    def call(
        self, t: float, client: str, invoke: int, service: int, args: bytes, result: bytes | None
    ) -> float:
        """Confirmed request (max APDU 1476), then SimpleACK or ComplexACK with ``result``."""
        request = bytes([CONFIRMED << 4, 0x05, invoke, service]) + args
        self.send(t, client, CONTROLLER, UNICAST, request, expecting_reply=True)
        if result is None:
            reply = bytes([SIMPLE_ACK << 4, invoke, service])
        else:
            reply = bytes([COMPLEX_ACK << 4, invoke, service]) + result
        self.send(t + 0.01, CONTROLLER, client, UNICAST, reply)
        return t + 0.011


def build() -> tuple[list[Packet], dict[str, Any], list[tuple[Value, ...]]]:
    tape = Tape()
    net = Bacnet(tape)
    net.send(T0 + 1, HMI, BROADCAST, BCAST, bytes([UNCONFIRMED << 4, WHO_IS]))
    i_am = (
        bytes([UNCONFIRMED << 4, I_AM])
        + b"\xc4"
        + object_id(DEVICE, DEVICE_ID)
        + b"\x22\x05\xc4\x91\x03\x21\x18"  # max APDU 1476, no segmentation, vendor 24
    )
    net.send(T0 + 1.02, CONTROLLER, BROADCAST, BCAST, i_am)
    for k in range(60):
        net.call(
            T0 + 2 + 10 * k,
            HMI,
            k,
            READ_PROPERTY,
            property_ref(ANALOG_INPUT, 1),
            property_ref(ANALOG_INPUT, 1) + real(31.5 + 0.25 * (k % 4)),
        )
    write_start = T0 + 150
    write_end = write_start
    for n in range(2):
        write_end = net.call(
            write_start + n,
            ROGUE,
            n,
            WRITE_PROPERTY,
            property_ref(ANALOG_VALUE, 2) + real(95.0) + b"\x49\x08",  # priority 8
            None,
        )
    password = b"\x00" + b"filter"  # character set 0 (UTF-8)
    reinit_start = T0 + 330
    reinit_end = net.call(
        reinit_start,
        ROGUE,
        2,
        REINITIALIZE,
        b"\x09\x01\x1d" + bytes([len(password)]) + password,  # warmstart, password
        None,
    )
    packets, intended = tape.finish()
    who, target = [ROGUE], [CONTROLLER]
    labels = {
        "description": (
            "BACnet/IP: HMI discovery and ReadProperty polling of the furnace-hall HVAC "
            "controller; an ent-a IT host writes its cooling setpoint and reinitialises it."
        ),
        "source": SOURCE,
        "attacks": [
            attack(
                "bacnet-write-property",
                "ot_unauthorized_write",
                ["T0855", "T0836"],
                write_start,
                write_end,
                who,
                target,
            ),
            attack(
                "bacnet-reinitialize",
                "ot_unauthorized_command",
                ["T0816", "T0858"],
                reinit_start,
                reinit_end,
                who,
                target,
            ),
        ],
        "notes": (
            "Crafted. WriteProperty of a setpoint is labelled ot_unauthorized_write (a process "
            "value write); ReinitializeDevice (warm start) is ot_unauthorized_command (restart). "
            "The controller 10.1.2.40 is not in park.yaml's asset list; it lies in ent-a OT."
        ),
    }
    return packets, labels, intended


SCENARIOS = {"bacnet_rogue_commands.pcap": lambda: build()[:2]}
"""Capture name -> scenario."""

INTENDED = {"bacnet_rogue_commands.pcap": lambda: build()[2]}
"""Capture name -> intended values of :data:`TSHARK_FIELDS`, one tuple per OT frame."""

TSHARK_FILTER = "bvlc"
TSHARK_FIELDS = (
    "bvlc.function",
    "bacapp.type",
    "bacapp.confirmed_service",
    "bacapp.unconfirmed_service",
)
