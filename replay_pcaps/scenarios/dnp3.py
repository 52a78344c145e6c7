"""DNP3 over TCP scenarios (port 20000) in Beta Chemicals' OT zone (``park.yaml``).

Beta's reactor HMI (10.2.2.20, DNP3 master address 1) polls the reactor RTU (10.2.2.10,
outstation address 10): a class 0 integrity poll every 30 s and a class 1/2/3 event poll every
2 s (READ, fc 1; responses fc 129 with their internal indications). The attack captures add a
rogue master in Beta's IT zone (10.2.1.77, a compromised workstation that spoofs master
address 1):

- ``dnp3_benign_polling.pcap``: polling only (``attacks: []``).
- ``dnp3_operate_and_write.pcap``: direct operate (fc 5) of a control relay output block
  (trip of output 2), then a write (fc 2) of the analog input deadbands (g34v1).
- ``dnp3_restart_and_stop.pcap``: disable unsolicited (fc 21), stop application (fc 18,
  refused: IIN2 "function code not implemented"), warm restart (fc 14), cold restart (fc 13).

Frames carry real link headers with CRC-16/DNP over the header and every 16-byte block of user
data, a transport header and the application layer. Every DNP3 application PDU the generator
writes is recorded with the tshark fields it must dissect to (``Capture.marks``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from replay_pcaps import craft
from replay_pcaps.craft import MAC, Capture, Conversation, finish

HMI, RTU, ROGUE = "10.2.2.20", "10.2.2.10", "10.2.1.77"
MAC.update({HMI: "02:b2:00:00:02:20", RTU: "02:b2:00:00:02:10", ROGUE: "02:b2:00:00:01:77"})
PORT, MASTER_ADDR, OUTSTATION_ADDR = 20000, 1, 10
FIELDS = ("dnp3.al.func", "dnp3.al.iin")
"""tshark fields recorded per DNP3 application PDU (in this order) in ``Capture.marks``."""

READ, WRITE, DIRECT_OPERATE = 1, 2, 5
COLD_RESTART, WARM_RESTART, STOP_APPL, DISABLE_UNSOLICITED = 13, 14, 18, 21
RESPONSE = 129
IIN1_CLASS1, IIN1_RESTART = 0x02, 0x80
IIN2_NO_FUNC = 0x01

CLASS0 = bytes([60, 1, 0x06])
CLASS123 = bytes([60, 2, 0x06, 60, 3, 0x06, 60, 4, 0x06])


def crc_dnp(data: bytes) -> bytes:
    """CRC-16/DNP (reflected polynomial 0xA6BC, complemented), low octet first."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA6BC if crc & 1 else crc >> 1
    return (~crc & 0xFFFF).to_bytes(2, "little")


def link_frame(from_master: bool, user: bytes) -> bytes:
    """A link-layer frame (unconfirmed user data) with CRCs, carrying ``user`` octets."""
    ctrl = 0xC4 if from_master else 0x44  # DIR, PRM, function 4
    dst, src = (OUTSTATION_ADDR, MASTER_ADDR) if from_master else (MASTER_ADDR, OUTSTATION_ADDR)
    head = b"\x05\x64" + bytes([5 + len(user), ctrl]) + dst.to_bytes(2, "little")
    head += src.to_bytes(2, "little")
    out = head + crc_dnp(head)
    for i in range(0, len(user), 16):
        out += user[i : i + 16] + crc_dnp(user[i : i + 16])
    return out


def u16le(*values: int) -> bytes:
    return b"".join(v.to_bytes(2, "little", signed=v < 0) for v in values)


def binary_inputs(k: int) -> bytes:
    """g1v2 (binary input with flags), indexes 0-3."""
    return bytes([1, 2, 0x00, 0, 3]) + bytes(0x81 if (k + i) % 3 == 0 else 0x01 for i in range(4))


def analog_inputs(k: int) -> bytes:
    """g30v2 (16-bit analog input with flag), indexes 0-3."""
    body = b"".join(b"\x01" + u16le(850 + 10 * i + k % 7) for i in range(4))
    return bytes([30, 2, 0x00, 0, 3]) + body


def analog_event(k: int) -> bytes:
    """g32v2 (16-bit analog event without time), one event of index 1 (1-octet count+index)."""
    return bytes([32, 2, 0x17, 1, 1, 0x01]) + u16le(870 + k % 11)


def crob(index: int, code: int) -> bytes:
    """g12v1 control relay output block, 2-octet count and index prefix, status 0."""
    return bytes([12, 1, 0x28]) + u16le(1, index) + bytes([code, 1]) + bytes(8) + b"\x00"


class Session:
    """A DNP3 master-outstation TCP connection with transport and application sequences."""

    def __init__(self, cap: Capture, master: str, cport: int) -> None:
        self.cap, self.conv = cap, Conversation(cap.packets, master, RTU, cport, PORT)
        self.app_seq, self.tseq = 0, {True: 0, False: 0}

    def open(self, t: float) -> float:
        return self.conv.open(t)

    def close(self, t: float) -> None:
        self.conv.close(t)

    def _send(self, t: float, from_master: bool, apdu: bytes, mark: tuple[str, ...]) -> None:
        tpdu = bytes([0xC0 | self.tseq[from_master]]) + apdu  # FIN, FIR, sequence
        self.tseq[from_master] = (self.tseq[from_master] + 1) & 0x3F
        self.conv.send(t, from_master, "PA", link_frame(from_master, tpdu))
        self.cap.marks.append((self.cap.packets[-1], mark))

    def request(
        self,
        t: float,
        fc: int,
        objects: bytes = b"",
        iin: tuple[int, int] = (0, 0),
        reply: bytes = b"",
        delay: float = 0.015,
    ) -> float:
        """A request and its response (fc 129 with ``iin`` and ``reply`` objects)."""
        seq = self.app_seq
        self.app_seq = (self.app_seq + 1) & 0x0F
        self._send(t, True, bytes([0xC0 | seq, fc]) + objects, (str(fc), ""))
        value = iin[0] << 8 | iin[1]
        resp = bytes([0xC0 | seq, RESPONSE, *iin]) + reply
        self._send(t + delay, False, resp, (str(RESPONSE), str(value)))
        self.conv.send(t + delay + 0.1, True, "A")
        return t + delay + 0.1


def poll(cap: Capture, t0: float, seconds: int, iin1: Callable[[float], int] | None = None) -> None:
    """The HMI's polling: class 0 every 30 s, class 1/2/3 every 2 s."""
    s = Session(cap, HMI, 49300)
    t = s.open(t0)
    for k in range(0, seconds, 2):
        tk = t + k
        flags = iin1(tk) if iin1 else 0
        if k % 30 == 0:
            s.request(tk, READ, CLASS0, (flags, 0), binary_inputs(k) + analog_inputs(k))
        else:
            event = k % 10 == 4
            s.request(tk, READ, CLASS123, (flags, 0), analog_event(k) if event else b"")
    s.close(t + seconds)


def attack(
    ident: str, category: str, techniques: list[str], span: tuple[float, float], outcome: str
) -> dict[str, Any]:
    return craft.attack(
        ident, category, techniques, span, attackers=[ROGUE], targets=[RTU], outcome=outcome
    )


def benign_polling() -> Capture:
    cap = Capture()
    poll(cap, 1_763_720_000.0, 90)
    return finish(
        cap,
        "Benign DNP3 polling: Beta's reactor HMI reads class 0 and class 1/2/3 data from the "
        "reactor RTU.",
        [],
        "No attack: READ (fc 1) requests from the master, RESPONSE (fc 129) from the outstation.",
    )


def operate_and_write() -> Capture:
    cap, t0 = Capture(), 1_763_721_000.0
    poll(cap, t0, 60)
    s = Session(cap, ROGUE, 51620)
    t = s.open(t0 + 19.5)
    ta = t + 0.8
    s.request(ta, DIRECT_OPERATE, crob(2, 0x81), reply=crob(2, 0x81))
    tw = t + 20.8
    deadbands = bytes([34, 1, 0x00, 0, 1]) + u16le(0x7FFF, 0x7FFF)
    s.request(tw, WRITE, deadbands)
    s.close(tw + 1)
    return finish(
        cap,
        "A rogue DNP3 master in Beta's IT zone operates an output of the reactor RTU and "
        "rewrites its analog deadbands, during normal HMI polling.",
        [
            attack(
                "dnp3-direct-operate",
                "ot_unauthorized_write",
                ["T0855", "T0831"],
                (ta, ta + 0.2),
                "succeeded",
            ),
            attack(
                "dnp3-write-deadbands",
                "ot_unauthorized_write",
                ["T0855", "T0836"],
                (tw, tw + 0.2),
                "succeeded",
            ),
        ],
        "10.2.1.77 sends DIRECT_OPERATE (fc 5) of a CROB trip pulse on output 2 (echoed with "
        "status 0), then WRITE (fc 2) of g34v1 deadbands 0-1 to 32767, which silences analog "
        "event reporting (null response, IIN 0x0000).",
    )


def restart_and_stop() -> Capture:
    cap, t0 = Capture(), 1_763_722_000.0
    cold = t0 + 71.0
    poll(cap, t0, 100, lambda t: IIN1_RESTART if t > cold else 0)
    s = Session(cap, ROGUE, 51720)
    s.open(t0 + 14.5)
    td, ts, tw = t0 + 15.0, t0 + 35.0, t0 + 55.0
    s.request(td, DISABLE_UNSOLICITED, CLASS123)
    s.request(ts, STOP_APPL, bytes([90, 1, 0x06]), (0, IIN2_NO_FUNC))
    delay = bytes([52, 2, 0x07, 1]) + u16le(500)  # g52v2 time delay fine: 500 ms
    s.request(tw, WARM_RESTART, reply=delay)
    s.request(cold, COLD_RESTART, reply=delay)
    s.close(cold + 1)
    return finish(
        cap,
        "A rogue DNP3 master in Beta's IT zone disables unsolicited reporting, tries to stop an "
        "application and restarts the reactor RTU (warm, then cold).",
        [
            attack(
                "dnp3-disable-unsolicited",
                "ot_unauthorized_command",
                ["T0855", "T0815"],
                (td, td + 0.2),
                "succeeded",
            ),
            attack(
                "dnp3-stop-application",
                "ot_unauthorized_command",
                ["T0855", "T0881"],
                (ts, ts + 0.2),
                "defended",
            ),
            attack(
                "dnp3-warm-restart",
                "ot_unauthorized_command",
                ["T0855", "T0816"],
                (tw, tw + 0.2),
                "succeeded",
            ),
            attack(
                "dnp3-cold-restart",
                "ot_unauthorized_command",
                ["T0855", "T0816"],
                (cold, cold + 0.2),
                "succeeded",
            ),
        ],
        "10.2.1.77 sends DISABLE_UNSOLICITED (fc 21) for classes 1-3 (accepted), STOP_APPL "
        "(fc 18) for all applications (refused: IIN2 0x01, function code not implemented), "
        "WARM_RESTART (fc 14) and COLD_RESTART (fc 13), both answered with a g52v2 time delay. "
        "After the cold restart the RTU's responses to the HMI carry IIN1 device restart.",
    )


CAPTURES: dict[str, Callable[[], Capture]] = {
    "dnp3_benign_polling.pcap": benign_polling,
    "dnp3_operate_and_write.pcap": operate_and_write,
    "dnp3_restart_and_stop.pcap": restart_and_stop,
}
"""Capture name -> builder with the recorded DNP3 PDUs (for the tests)."""


SCENARIOS = craft.scenarios(CAPTURES)
