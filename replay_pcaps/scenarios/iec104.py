"""IEC 60870-5-104 scenarios (port 2404) in Beta Chemicals' OT zone (``park.yaml``).

Beta's reactor HMI (10.2.2.20) is the controlling station of the reactor RTU (10.2.2.10,
common address 7): STARTDT act/con, a general interrogation (C_IC_NA_1, type 100: act, actcon,
the measured values as M_ME_NC_1 type 13 with cause "interrogated by station", actterm),
spontaneous M_ME_NC_1 every 2 s, S-frames acknowledging them and TESTFR act/con when idle.

- ``iec104_benign.pcap``: that session only (``attacks: []``).
- ``iec104_rogue_master.pcap``: the same, plus a new master (10.2.1.88, never seen before in
  the capture) that connects, starts data transfer and sends a single command C_SC_NA_1
  (type 45: act, actcon, actterm) and a short-float set point C_SE_NC_1 (type 50: act,
  actcon).

Every APDU the generator writes is recorded with the tshark fields it must dissect to
(``Capture.marks``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from replay_pcaps import craft
from replay_pcaps.craft import MAC, Capture, Conversation, finish

HMI, RTU, ROGUE = "10.2.2.20", "10.2.2.10", "10.2.1.88"
MAC.update({HMI: "02:b2:00:00:02:20", RTU: "02:b2:00:00:02:10", ROGUE: "02:b2:00:00:01:88"})
PORT, COMMON_ADDR = 2404, 7
FIELDS = (
    "iec60870_104.type",
    "iec60870_104.utype",
    "iec60870_asdu.typeid",
    "iec60870_asdu.causetx",
)
"""tshark fields recorded per APDU (in this order) in ``Capture.marks``."""

STARTDT_ACT, STARTDT_CON, TESTFR_ACT, TESTFR_CON = 0x07, 0x0B, 0x43, 0x83
I_TYPE, S_TYPE, U_TYPE = 0, 1, 3  # tshark's iec60870_104.type values
M_ME_NC_1, C_SC_NA_1, C_SE_NC_1, C_IC_NA_1 = 13, 45, 50, 100
SPONT, ACT, ACTCON, ACTTERM, INROGEN = 3, 6, 7, 10, 20
MEASURES = (4001, 4002, 4003, 4004)
"""Information object addresses of the RTU's measured values (temperatures, pressure, flow)."""


def asdu(typeid: int, cause: int, objects: list[tuple[int, bytes]]) -> bytes:
    """An ASDU (SQ=0): 2-octet cause of transmission, common address, 3-octet IOAs."""
    head = bytes([typeid, len(objects), cause, 0]) + COMMON_ADDR.to_bytes(2, "little")
    return head + b"".join(ioa.to_bytes(3, "little") + element for ioa, element in objects)


def short_float(value: float, qds: int = 0) -> bytes:
    return struct.pack("<fB", value, qds)


def measures(k: int) -> list[tuple[int, bytes]]:
    return [(ioa, short_float(180.0 + 2.5 * i + (k % 7) * 0.25)) for i, ioa in enumerate(MEASURES)]


class Session:
    """A 104 connection (master = TCP client) with send and receive sequence numbers."""

    def __init__(self, cap: Capture, master: str, cport: int) -> None:
        self.cap, self.conv = cap, Conversation(cap.packets, master, RTU, cport, PORT)
        self.ns = {True: 0, False: 0}  # I-frames sent, per side (True: master)

    def open(self, t: float) -> float:
        return self.conv.open(t)

    def close(self, t: float) -> None:
        self.conv.close(t)

    def _send(self, t: float, from_master: bool, apdu: bytes, mark: tuple[str, ...]) -> None:
        self.conv.send(t, from_master, "PA", apdu)
        self.cap.marks.append((self.cap.packets[-1], mark))

    def u(self, t: float, from_master: bool, ctrl: int) -> None:
        utype = ctrl >> 2
        self._send(
            t, from_master, bytes([0x68, 4, ctrl, 0, 0, 0]), (str(U_TYPE), str(utype), "", "")
        )

    def s(self, t: float, from_master: bool) -> None:
        nr = self.ns[not from_master] << 1
        self._send(
            t,
            from_master,
            b"\x68\x04\x01\x00" + nr.to_bytes(2, "little"),
            (str(S_TYPE), "", "", ""),
        )

    def i(self, t: float, from_master: bool, body: bytes) -> None:
        ns, nr = self.ns[from_master] << 1, self.ns[not from_master] << 1
        self.ns[from_master] = (self.ns[from_master] + 1) & 0x7FFF
        apci = bytes([0x68, 4 + len(body)]) + ns.to_bytes(2, "little") + nr.to_bytes(2, "little")
        mark = (str(I_TYPE), "", str(body[0]), str(body[2] & 0x3F))
        self._send(t, from_master, apci + body, mark)

    def start(self, t: float) -> float:
        """TCP open and STARTDT act/con; returns the time after."""
        t = self.open(t)
        self.u(t, True, STARTDT_ACT)
        self.u(t + 0.005, False, STARTDT_CON)
        return t + 0.1


def background(cap: Capture, t0: float, seconds: int) -> None:
    """The HMI's session: STARTDT, general interrogation, spontaneous values, TESTFR."""
    s = Session(cap, HMI, 49404)
    t = s.start(t0)
    gi = asdu(C_IC_NA_1, ACT, [(0, b"\x14")])  # QOI 20: station interrogation
    s.i(t, True, gi)
    s.i(t + 0.01, False, asdu(C_IC_NA_1, ACTCON, [(0, b"\x14")]))
    s.i(t + 0.02, False, asdu(M_ME_NC_1, INROGEN, measures(0)))
    s.i(t + 0.03, False, asdu(C_IC_NA_1, ACTTERM, [(0, b"\x14")]))
    s.s(t + 0.2, True)
    for k in range(2, seconds, 2):
        tk = t + k
        s.i(tk, False, asdu(M_ME_NC_1, SPONT, measures(k)[k % 4 : k % 4 + 1]))
        if k % 4 == 0:
            s.s(tk + 0.2, True)
        else:
            s.conv.send(tk + 0.2, True, "A")
        if k % 20 == 10:
            s.u(tk + 1, True, TESTFR_ACT)
            s.u(tk + 1.005, False, TESTFR_CON)
    s.close(t + seconds + 0.5)


def attack(
    ident: str, category: str, techniques: list[str], span: tuple[float, float]
) -> dict[str, Any]:
    return craft.attack(
        ident, category, techniques, span, attackers=[ROGUE], targets=[RTU], outcome="succeeded"
    )


def benign() -> Capture:
    cap = Capture()
    background(cap, 1_763_730_000.0, 90)
    return finish(
        cap,
        "Benign IEC 60870-5-104 session: Beta's reactor HMI interrogates the reactor RTU and "
        "receives spontaneous measured values.",
        [],
        "No attack: STARTDT, general interrogation (type 100) with M_ME_NC_1 (type 13) values, "
        "spontaneous type 13 every 2 s, S-frames and TESTFR keep-alives.",
    )


def rogue_master() -> Capture:
    cap, t0 = Capture(), 1_763_731_000.0
    background(cap, t0, 90)
    s = Session(cap, ROGUE, 51404)
    t = s.start(t0 + 30.3)
    sco = b"\x01"  # single command state ON, direct execute, no qualifier
    s.i(t, True, asdu(C_SC_NA_1, ACT, [(2001, sco)]))
    s.i(t + 0.02, False, asdu(C_SC_NA_1, ACTCON, [(2001, sco)]))
    s.i(t + 0.5, False, asdu(C_SC_NA_1, ACTTERM, [(2001, sco)]))
    s.s(t + 0.6, True)
    ts = t + 10
    setpoint = short_float(450.0)  # QOS 0: execute
    s.i(ts, True, asdu(C_SE_NC_1, ACT, [(3001, setpoint)]))
    s.i(ts + 0.02, False, asdu(C_SE_NC_1, ACTCON, [(3001, setpoint)]))
    s.s(ts + 0.2, True)
    s.close(ts + 1)
    return finish(
        cap,
        "A new IEC 104 master in Beta's IT zone sends a single command and a set point to the "
        "reactor RTU while the HMI's session runs.",
        [
            attack(
                "iec104-single-command", "ot_unauthorized_write", ["T0855", "T0831"], (t, t + 0.6)
            ),
            attack("iec104-setpoint", "ot_unauthorized_write", ["T0855", "T0836"], (ts, ts + 0.2)),
        ],
        "10.2.1.88 (not seen before in the capture) opens a 104 connection, STARTDT act/con, "
        "then C_SC_NA_1 (type 45) ON to IOA 2001 (actcon, actterm) and C_SE_NC_1 (type 50) "
        "450.0 to IOA 3001 (actcon).",
    )


CAPTURES: dict[str, Callable[[], Capture]] = {
    "iec104_benign.pcap": benign,
    "iec104_rogue_master.pcap": rogue_master,
}
"""Capture name -> builder with the recorded APDUs (for the tests)."""


SCENARIOS = craft.scenarios(CAPTURES)
