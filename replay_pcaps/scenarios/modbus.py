"""Modbus/TCP scenarios (port 502) in Alpha Steel's OT zone (``park.yaml``).

The furnace HMI (10.1.2.20) polls both PLCs (10.1.2.10, 10.1.2.11) every second: read holding
registers (fc 3) and, every fifth second, read coils (fc 1). The attack captures add a rogue host
in Alpha's IT zone (10.1.1.77, a compromised laptop: it may reach the OT zone over Modbus by the
park's conduits, but it is no HMI and has no business writing or commanding):

- ``modbus_benign_polling.pcap``: polling only (``attacks: []``).
- ``modbus_unauthorized_write.pcap``: write single coil (fc 5), write single register (fc 6),
  write multiple coils (fc 15) and registers (fc 16) to PLC 1, all acknowledged; then a write to
  PLC 2 refused with exception 2 (illegal data address).
- ``modbus_listen_only.pcap``: diagnostics (fc 8) return query data, then force listen only
  mode (sub-function 4, which has no response); PLC 1 stops answering the HMI's polls.
- ``modbus_unit_id_sweep.pcap``: read holding registers to unit ids 1..32 of PLC 2 (a serial
  gateway): units 1 and 2 answer, most others exception 0x0B, some nothing at all.
- ``modbus_exception_storm.pcap``: a flood of reads with illegal addresses and quantities at
  PLC 1, every one answered with exception 2 or 3.
- ``modbus_malformed_frames.pcap``: frames that are not Modbus/TCP at PLC 2 (an MBAP length far
  beyond 254 in 451-byte segments, then a non-zero protocol id), the QuickDraw "illegal packet
  size, possible DoS" pattern; the PLC only acknowledges them at TCP level.

Every Modbus PDU the generator writes is recorded with the tshark fields it must dissect to
(``Capture.marks``), so tests compare tshark's dissection against the generator's intent. The
malformed frames are not PDUs: that capture is in :data:`MALFORMED`, not in :data:`CAPTURES`
(tshark dissects none of its frames as Modbus, only the HMI's polls).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from replay_pcaps import craft
from replay_pcaps.craft import MAC, Capture, Conversation, finish

HMI, PLC1, PLC2, ROGUE = "10.1.2.20", "10.1.2.10", "10.1.2.11", "10.1.1.77"
MAC.update(
    {
        HMI: "02:a1:00:00:02:20",
        PLC1: "02:a1:00:00:02:10",
        PLC2: "02:a1:00:00:02:11",
        ROGUE: "02:a1:00:00:01:77",
    }
)
PORT = 502
FIELDS = ("mbtcp.unit_id", "modbus.func_code", "modbus.exception_code", "modbus.diagnostic_code")
"""tshark fields recorded per Modbus PDU (in this order) in ``Capture.marks``."""


class Session:
    """A Modbus/TCP connection whose PDUs are recorded in the capture's marks."""

    def __init__(self, cap: Capture, client: str, server: str, cport: int) -> None:
        self.cap, self.conv, self.tid = (
            cap,
            Conversation(cap.packets, client, server, cport, PORT),
            0,
        )

    def open(self, t: float) -> float:
        return self.conv.open(t)

    def close(self, t: float) -> None:
        self.conv.close(t)

    def pdu(self, t: float, from_client: bool, unit: int, pdu: bytes, tid: int) -> None:
        mbap = tid.to_bytes(2, "big") + b"\0\0" + (len(pdu) + 1).to_bytes(2, "big")
        self.conv.send(t, from_client, "PA", mbap + bytes([unit]) + pdu)
        fc = pdu[0]
        exc = str(pdu[1]) if fc & 0x80 else ""
        diag = str(int.from_bytes(pdu[1:3], "big")) if fc == 8 else ""
        self.cap.marks.append((self.cap.packets[-1], (str(unit), str(fc & 0x7F), exc, diag)))

    def ask(
        self, t: float, unit: int, request: bytes, response: bytes | None, delay: float = 0.003
    ) -> int:
        """A request and its response (None: no answer, the server only acknowledges)."""
        self.tid = (self.tid + 1) & 0xFFFF
        self.pdu(t, True, unit, request, self.tid)
        if response is None:
            self.conv.send(t + 0.2, False, "A")
        else:
            self.pdu(t + delay, False, unit, response, self.tid)
        return self.tid


def u16(*values: int) -> bytes:
    return b"".join(v.to_bytes(2, "big") for v in values)


def read_holding(start: int, qty: int) -> bytes:
    return b"\x03" + u16(start, qty)


def holding_reply(values: list[int]) -> bytes:
    return bytes([3, 2 * len(values)]) + u16(*values)


def read_coils(start: int, qty: int) -> bytes:
    return b"\x01" + u16(start, qty)


def coils_reply(bits: list[bool]) -> bytes:
    data = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        data[i // 8] |= int(b) << (i % 8)
    return bytes([1, len(data)]) + bytes(data)


def exception(fc: int, code: int) -> bytes:
    return bytes([fc | 0x80, code])


def process_values(plc: int, k: int) -> list[int]:
    """Ten deterministic furnace register values (temperatures, flows) for poll ``k``."""
    return [(1200 + 37 * plc + 11 * r + (k * (r + 3)) % 17) & 0xFFFF for r in range(10)]


def poll(
    cap: Capture, t0: float, seconds: int, answers: Callable[[str, float], bool] | None = None
) -> None:
    """The HMI's polling of both PLCs, once a second, over one connection per PLC."""
    for i, plc in enumerate((PLC1, PLC2)):
        s = Session(cap, HMI, plc, 49200 + i)
        t = s.open(t0 + 0.1 * i)
        for k in range(seconds):
            tk = t + k
            ok = answers is None or answers(plc, tk)
            s.ask(tk, 1, read_holding(0, 10), holding_reply(process_values(i, k)) if ok else None)
            if ok:
                s.conv.send(tk + 0.2, True, "A")
            if k % 5 == 2:
                bits = [(k + b) % 3 == 0 for b in range(16)]
                s.ask(tk + 0.5, 1, read_coils(0, 16), coils_reply(bits) if ok else None)
                if ok:
                    s.conv.send(tk + 0.7, True, "A")
        s.close(t + seconds + 0.1)


def attack(
    ident: str,
    category: str,
    techniques: list[str],
    span: tuple[float, float],
    targets: list[str],
    outcome: str,
    attackers: list[str] | None = None,
) -> dict[str, Any]:
    return craft.attack(
        ident,
        category,
        techniques,
        span,
        attackers=attackers or [ROGUE],
        targets=targets,
        outcome=outcome,
    )


def benign_polling() -> Capture:
    cap = Capture()
    poll(cap, 1_763_710_000.0, 90)
    return finish(
        cap,
        "Benign Modbus/TCP polling: Alpha's furnace HMI reads holding registers and coils of "
        "both PLCs once a second.",
        [],
        "No attack: fc 3 and fc 1 requests from the HMI, each answered.",
    )


def unauthorized_write() -> Capture:
    cap, t0 = Capture(), 1_763_711_000.0
    poll(cap, t0, 60)
    s = Session(cap, ROGUE, PLC1, 51502)
    t = s.open(t0 + 20)
    s.ask(t, 1, b"\x05" + u16(3, 0xFF00), b"\x05" + u16(3, 0xFF00))
    s.ask(t + 0.5, 1, b"\x06" + u16(4, 0x0FA0), b"\x06" + u16(4, 0x0FA0))
    s.ask(t + 1.0, 1, b"\x0f" + u16(0, 10) + b"\x02\xff\x03", b"\x0f" + u16(0, 10))
    values = [0x7FFF, 0x7FFF, 0, 0x1234]
    s.ask(t + 1.5, 1, b"\x10" + u16(10, 4) + bytes([8]) + u16(*values), b"\x10" + u16(10, 4))
    s.close(t + 1.6)
    refused = Session(cap, ROGUE, PLC2, 51503)
    tr = refused.open(t0 + 35)
    refused.ask(tr, 1, b"\x06" + u16(900, 0xFFFF), exception(6, 2))
    refused.close(tr + 0.1)
    return finish(
        cap,
        "Unauthorised Modbus writes from a rogue host in Alpha's IT zone to the furnace PLCs "
        "during normal HMI polling.",
        [
            attack(
                "modbus-write-plc1",
                "ot_unauthorized_write",
                ["T0855", "T0836"],
                (t - 0.001, t + 1.6),
                [PLC1],
                "succeeded",
            ),
            attack(
                "modbus-write-plc2-refused",
                "ot_unauthorized_write",
                ["T0855", "T0836"],
                (tr - 0.001, tr + 0.1),
                [PLC2],
                "defended",
            ),
        ],
        "10.1.1.77 writes coil 3 (fc 5), register 4 (fc 6), coils 0-9 (fc 15) and registers "
        "10-13 (fc 16) of PLC 1, each acknowledged; its write of register 900 of PLC 2 (fc 6) "
        "is refused with exception 2 (illegal data address).",
    )


def listen_only() -> Capture:
    cap, t0 = Capture(), 1_763_712_000.0
    ta = t0 + 25.0  # PLC 1 is forced into listen-only mode at this time
    poll(cap, t0, 60, lambda plc, t: plc != PLC1 or t < ta)
    s = Session(cap, ROGUE, PLC1, 51802)
    t = s.open(ta - 1.0)
    s.ask(t, 1, b"\x08" + u16(0, 0xA55A), b"\x08" + u16(0, 0xA55A))
    s.ask(ta, 1, b"\x08" + u16(4, 0), None)
    s.close(ta + 0.5)
    return finish(
        cap,
        "Modbus diagnostics from a rogue host force PLC 1 into listen-only mode; the PLC stops "
        "answering the HMI.",
        [
            attack(
                "modbus-force-listen-only",
                "ot_unauthorized_command",
                ["T0858", "T0814"],
                (t - 0.002, ta + 0.5),
                [PLC1],
                "succeeded",
            )
        ],
        "10.1.1.77 sends fc 8 sub-function 0 (return query data, echoed), then fc 8 "
        "sub-function 4 (force listen only mode, no response by design). From then on PLC 1 "
        "only acknowledges the HMI's requests at TCP level; PLC 2 keeps answering.",
    )


def unit_id_sweep() -> Capture:
    cap, t0 = Capture(), 1_763_713_000.0
    poll(cap, t0, 60)
    s = Session(cap, ROGUE, PLC2, 52002)
    t = s.open(t0 + 20)
    for unit in range(1, 33):
        tu = t + 0.25 * (unit - 1)
        if unit <= 2:
            reply: bytes | None = holding_reply([unit, 0])
        elif unit % 5 == 0:
            reply = None  # the gateway drops it
        else:
            reply = exception(3, 0x0B)  # gateway target device failed to respond
        s.ask(tu, unit, read_holding(0, 2), reply, delay=0.05)
    end = t + 0.25 * 31 + 0.3
    s.close(end)
    return finish(
        cap,
        "Modbus unit-id sweep from a rogue host: read holding registers to units 1..32 of PLC 2.",
        [
            attack(
                "modbus-unit-sweep",
                "ot_recon",
                ["T0846", "T0888"],
                (t - 0.001, end),
                [PLC2],
                "succeeded",
            )
        ],
        "10.1.1.77 asks units 1..32 (fc 3, 2 registers), 4 per second. Units 1 and 2 answer, "
        "units divisible by 5 get no answer, the others exception 0x0B (gateway target device "
        "failed to respond).",
    )


def exception_storm() -> Capture:
    cap, t0 = Capture(), 1_763_714_000.0
    poll(cap, t0, 45)
    s = Session(cap, ROGUE, PLC1, 52202)
    t = s.open(t0 + 20)
    n = 240
    for k in range(n):
        tk = t + 0.01 * k
        if k % 2:
            s.ask(tk, 1, read_holding(0, 200 + k), exception(3, 3), delay=0.002)
        else:
            s.ask(tk, 1, read_holding(0xF000 + k, 10), exception(3, 2), delay=0.002)
    end = t + 0.01 * n
    s.close(end)
    return finish(
        cap,
        "Modbus exception storm: a rogue host floods PLC 1 with invalid reads, 100 a second, "
        "each refused with an exception.",
        [
            attack(
                "modbus-exception-storm",
                "dos",
                ["T0814"],
                (t - 0.001, end),
                [PLC1],
                "unknown",
            )
        ],
        "10.1.1.77 sends 240 fc 3 requests in 2.4 s: even ones to addresses 0xF000+ (exception "
        "2, illegal data address), odd ones for more than 125 registers (exception 3, illegal "
        "data value). The HMI's polling continues around it.",
    )


def bad_size_frame(tid: int) -> bytes:
    """451 bytes under an MBAP header claiming 0x8804 bytes (the limit is 254)."""
    return (tid.to_bytes(2, "big") + b"\0\0\x88\x04\x05\x07\x08\x09\x10\x00" * 46)[:451]


def bad_protocol_frame(tid: int) -> bytes:
    """A read holding registers PDU under an MBAP header with protocol id 16 (must be 0)."""
    return tid.to_bytes(2, "big") + b"\x00\x10\x00\x06\x0a" + read_holding(1, 3)


def malformed_frames() -> Capture:
    cap, t0 = Capture(), 1_763_715_000.0
    poll(cap, t0, 60)
    conv = Conversation(cap.packets, ROGUE, PLC2, 52402, PORT)
    t = conv.open(t0 + 20)
    frames = [bad_size_frame(1), bad_size_frame(2), bad_size_frame(3)]
    frames += [bad_protocol_frame(4), bad_protocol_frame(5), bad_protocol_frame(6)]
    tk = t
    for k, frame in enumerate(frames):
        tk = t + 1.0 + 2.5 * k
        conv.send(tk, True, "PA", frame)
        conv.send(tk + 0.18, False, "A")
    end = tk + 0.2
    conv.close(end + 1.0)
    return finish(
        cap,
        "Malformed Modbus/TCP frames from a rogue host to PLC 2 (oversized MBAP length, wrong "
        "protocol id) during normal HMI polling.",
        [
            attack(
                "modbus-malformed-frames",
                "dos",
                ["T0814"],
                (t + 0.999, end),
                [PLC2],
                "unknown",
            )
        ],
        "10.1.1.77 sends three 451-byte segments whose MBAP header claims 0x8804 bytes, then "
        "three read requests with MBAP protocol id 16, one every 2.5 s; PLC 2 acknowledges them "
        "at TCP level and answers none. The HMI's polling continues around it.",
    )


CAPTURES: dict[str, Callable[[], Capture]] = {
    "modbus_benign_polling.pcap": benign_polling,
    "modbus_unauthorized_write.pcap": unauthorized_write,
    "modbus_listen_only.pcap": listen_only,
    "modbus_unit_id_sweep.pcap": unit_id_sweep,
    "modbus_exception_storm.pcap": exception_storm,
}
"""Capture name -> builder with the recorded Modbus PDUs (for the tests)."""

MALFORMED: dict[str, Callable[[], Capture]] = {
    "modbus_malformed_frames.pcap": malformed_frames,
}
"""Capture name -> builder of captures whose attack frames are deliberately not Modbus/TCP."""


SCENARIOS = craft.scenarios({**CAPTURES, **MALFORMED})
