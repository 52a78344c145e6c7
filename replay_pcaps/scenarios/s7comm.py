"""S7comm (ISO-on-TCP, port 102) scenario: HMI polling of an S7-300/400 PLC and attacks on it.

The capture ``s7comm_plc_attacks.pcap`` (10 minutes) holds:

- normal: the Alpha furnace HMI (10.1.2.20) reads DB1 of PLC 1 every 5 s over one ISO-on-TCP
  connection (COTP CR/CC, S7 setup communication 0xf0, read var 0x04 / ack-data); the
  engineering workstation (10.1.1.50) opens an S7comm-plus session to PLC 2 (COTP CR with the
  TSAP ``SIMATIC-ROOT-ES``, then a CreateObject "hello", protocol id 0x72, and its response);
- attacks from 10.1.1.66, an ent-a IT laptop that is not the engineering workstation (s7comm
  from ent-a IT to ent-a OT is an allowed conduit, so only the commands give it away), each on its
  own connection two minutes apart: write var 0x05 into DB1, block upload (0x1d/0x1e/0x1f) of
  OB1, program download (0x1a, then the PLC's 0x1b and 0x1c jobs), and PLC stop 0x29.

Also home of :class:`Tape`, the packet collector the other scenario modules of this package use:
it records, for each OT message, the field values a dissector should show (``intended``), so that
tests compare tshark's reading with what the generator meant to write.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from scapy.layers.inet import IP
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from replay_pcaps import generate
from replay_pcaps.craft import Conversation, udp_packet

Value = int | str | None
"""One intended field value: an integer, a string, or None (field absent)."""

SOURCE = "parkwatch replay_pcaps generator"


def mac(ip: str) -> str:
    """The MAC of ``ip``: the one ``generate`` fixes for the demo park, else derived from it."""
    if ip in generate.MAC:
        return generate.MAC[ip]
    if ip.endswith(".255"):
        return "ff:ff:ff:ff:ff:ff"
    return (b"\x02\xa0" + bytes(int(x) for x in ip.split("."))).hex(":")


class Tape:
    """Packets of one scenario plus, per OT message, the field values it is meant to carry."""

    def __init__(self) -> None:
        self.packets: list[Packet] = []
        self._marks: dict[int, tuple[Value, ...]] = {}

    def mark(self, *values: Value) -> None:
        """Record the intended dissector fields of the packet appended last."""
        self._marks[id(self.packets[-1])] = values

    def tcp(self, client: str, server: str, cport: int, sport: int) -> Conversation:
        return Conversation(self.packets, client, server, cport, sport)

    def udp(self, t: float, src: str, dst: str, sport: int, dport: int, payload: bytes) -> None:
        self.packets.append(udp_packet(t, src, dst, sport, dport, payload))

    def finish(self) -> tuple[list[Packet], list[tuple[Value, ...]]]:
        """Packets in time order with stable MACs, and the intended values in the same order."""
        for p in self.packets:
            p[Ether].src, p[Ether].dst = mac(p[IP].src), mac(p[IP].dst)
        ordered = sorted(self.packets, key=lambda p: float(p.time))
        return ordered, [self._marks[id(p)] for p in ordered if id(p) in self._marks]


def rfc3339(t: float, up: bool = False) -> str:
    """``t`` as an RFC 3339 UTC string, whole seconds (rounded down, or up with ``up``)."""
    s = math.ceil(t) if up else math.floor(t)
    return datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def attack(
    ident: str,
    category: str,
    techniques: list[str],
    start: float,
    end: float,
    attackers: list[str],
    targets: list[str],
    outcome: str = "succeeded",
) -> dict[str, Any]:
    """One ``attacks`` entry of a labels file."""
    return {
        "id": ident,
        "category": category,
        "techniques": list(techniques),
        "start": rfc3339(start),
        "end": rfc3339(end, up=True),
        "attackers": list(attackers),  # copies: no YAML anchors between attacks
        "targets": list(targets),
        "outcome": outcome,
    }


# ---------------------------------------------------------------------------------------------
# S7comm encoding

T0 = 1_763_810_000.0
HMI, PLC1, PLC2, EWS = generate.HMI, generate.PLC1, generate.PLC2, generate.EWS
ROGUE = "10.1.1.66"
JOB, ACK_DATA = 1, 3
SETUP, READ, WRITE = 0xF0, 0x04, 0x05
REQ_DOWNLOAD, DOWNLOAD_BLOCK, DOWNLOAD_ENDED = 0x1A, 0x1B, 0x1C
START_UPLOAD, UPLOAD, END_UPLOAD, PLC_STOP = 0x1D, 0x1E, 0x1F, 0x29
COTP_CR, COTP_CC, COTP_DT = 0xE0, 0xD0, 0xF0
OB1 = b"_0800001P"  # file ident '_', block type '08' (OB), number 00001, passive file system


def tpkt(payload: bytes) -> bytes:
    return b"\x03\x00" + (len(payload) + 4).to_bytes(2, "big") + payload


def cotp_connect(kind: int, src_tsap: bytes, dst_tsap: bytes) -> bytes:
    """COTP connection request (0xe0) or confirm (0xd0), class 0, TPDU size 1024."""
    refs = b"\x00\x00\x00\x01" if kind == COTP_CR else b"\x00\x01\x00\x02"
    params = (
        b"\xc1" + bytes([len(src_tsap)]) + src_tsap
        + b"\xc2" + bytes([len(dst_tsap)]) + dst_tsap
        + b"\xc0\x01\x0a"
    )  # fmt: skip
    body = bytes([kind]) + refs + b"\x00" + params
    return tpkt(bytes([len(body)]) + body)


def s7(rosctr: int, ref: int, param: bytes, data: bytes = b"") -> bytes:
    """TPKT + COTP DT + S7comm PDU (header with error fields for ack-data)."""
    header = (
        bytes([0x32, rosctr, 0, 0])
        + ref.to_bytes(2, "big")
        + len(param).to_bytes(2, "big")
        + len(data).to_bytes(2, "big")
    )
    if rosctr == ACK_DATA:
        header += b"\x00\x00"
    return tpkt(b"\x02\xf0\x80" + header + param + data)


def setup_param() -> bytes:
    return bytes([SETUP, 0]) + b"\x00\x01\x00\x01\x01\xe0"  # 1 job each way, PDU 480


def var_item(db: int, start: int, count: int) -> bytes:
    """S7ANY item: BYTE x count at DBdb.DBX start.0."""
    return (
        b"\x12\x0a\x10\x02"
        + count.to_bytes(2, "big")
        + db.to_bytes(2, "big")
        + b"\x84"
        + (start * 8).to_bytes(3, "big")
    )


def data_item(code: int, values: bytes) -> bytes:
    """Data item: return code, transport size 4 (length in bits), length, values (padded)."""
    pad = b"\x00" if len(values) % 2 else b""
    return bytes([code, 4]) + (8 * len(values)).to_bytes(2, "big") + values + pad


def filename(name: bytes) -> bytes:
    return bytes([len(name)]) + name


class S7Session:
    """An ISO-on-TCP connection carrying S7comm; records the intended (rosctr, function)."""

    def __init__(self, tape: Tape, client: str, server: str, cport: int) -> None:
        self.tape, self.conv, self.ref = tape, tape.tcp(client, server, cport, 102), 0x0100

    def open(self, t: float, dst_tsap: bytes = b"\x01\x02") -> float:
        t = self.conv.open(t)
        self.conv.send(t, True, "PA", cotp_connect(COTP_CR, b"\x01\x00", dst_tsap))
        self.tape.mark(COTP_CR >> 4, None, None, None)
        self.conv.send(t + 0.002, False, "PA", cotp_connect(COTP_CC, b"\x01\x00", dst_tsap))
        self.tape.mark(COTP_CC >> 4, None, None, None)
        return t + 0.01

    def pdu(
        self, t: float, from_client: bool, rosctr: int, param: bytes, data: bytes = b""
    ) -> None:
        self.conv.send(t, from_client, "PA", s7(rosctr, self.ref, param, data))
        self.tape.mark(COTP_DT >> 4, rosctr, param[0], None)

    def call(self, t: float, param: bytes, data: bytes, rparam: bytes, rdata: bytes = b"") -> float:
        """Job from the client, ack-data from the PLC, then the client's TCP ACK."""
        self.ref += 1
        self.pdu(t, True, JOB, param, data)
        self.pdu(t + 0.004, False, ACK_DATA, rparam, rdata)
        self.conv.send(t + 0.2, True, "A")
        return t + 0.25

    def setup(self, t: float) -> float:
        return self.call(t, setup_param(), b"", setup_param())


def hmi_polling(tape: Tape) -> None:
    sess = S7Session(tape, HMI, PLC1, 49300)
    t = sess.setup(sess.open(T0 + 1))
    for k in range(120):
        values = bytes((k + i) & 0xFF for i in range(20))
        sess.call(
            t + 5 * k,
            bytes([READ, 1]) + var_item(1, 0, 20),
            b"",
            bytes([READ, 1]),
            data_item(0xFF, values),
        )
    sess.conv.close(t + 600)


def s7comm_plus_hello(tape: Tape) -> None:
    """EWS -> PLC 2: an S7comm-plus (0x72) CreateObject request and its response."""
    conv = tape.tcp(EWS, PLC2, 49400, 102)
    t = conv.open(T0 + 30)
    conv.send(t, True, "PA", cotp_connect(COTP_CR, b"\x06\x00", b"SIMATIC-ROOT-ES"))
    tape.mark(COTP_CR >> 4, None, None, None)
    conv.send(t + 0.002, False, "PA", cotp_connect(COTP_CC, b"\x06\x00", b"SIMATIC-ROOT-ES"))
    tape.mark(COTP_CC >> 4, None, None, None)
    for k, (opcode, body) in enumerate(
        (
            (0x31, b"\x00\x00\x04\xca\x00\x00\x00\x01\x00\x00\x01\x20\x36\x00\x00\x01\x1d"),
            (0x32, b"\x00\x00\x04\xca\x00\x00\x00\x01\x00\x00\x00\x00\x70\x00\x00\x02\x05"),
        )
    ):
        payload = bytes([opcode]) + body + b"\x00\x00\x00\x00"
        plus = b"\x72\x01" + len(payload).to_bytes(2, "big") + payload + b"\x72\x01\x00\x00"
        conv.send(t + 0.01 + 0.005 * k, k == 0, "PA", tpkt(b"\x02\xf0\x80" + plus))
        tape.mark(COTP_DT >> 4, None, None, plus.hex())  # no S7comm-plus dissector: plain data
    conv.close(t + 1)


def rogue_write(tape: Tape, t: float) -> tuple[float, float]:
    sess = S7Session(tape, ROGUE, PLC1, 50102)
    start = t
    t = sess.setup(sess.open(t))
    for k in range(3):
        t = sess.call(
            t,
            bytes([WRITE, 1]) + var_item(1, 10, 4),
            data_item(0x00, bytes([0x7F, 0xFF, 0xFF, k])),
            bytes([WRITE, 1]),
            b"\xff",
        )
    sess.conv.close(t)
    return start, t + 0.001


def rogue_upload(tape: Tape, t: float) -> tuple[float, float]:
    sess = S7Session(tape, ROGUE, PLC1, 50103)
    start = t
    t = sess.setup(sess.open(t))
    upload_id = b"\x00\x00\x00\x07"
    t = sess.call(
        t,
        bytes([START_UPLOAD, 0, 0, 0]) + upload_id + filename(OB1),
        b"",
        bytes([START_UPLOAD, 0, 1, 0]) + upload_id + filename(b"0000064"),
    )
    block = bytes(range(0x70, 0x70 + 60))
    t = sess.call(
        t,
        bytes([UPLOAD, 0, 0, 0]) + upload_id,
        b"",
        bytes([UPLOAD, 0]),
        len(block).to_bytes(2, "big") + b"\x00\xfb" + block,
    )
    t = sess.call(t, bytes([END_UPLOAD, 0, 0, 0]) + upload_id, b"", bytes([END_UPLOAD]))
    sess.conv.close(t)
    return start, t + 0.001


def rogue_download(tape: Tape, t: float) -> tuple[float, float]:
    sess = S7Session(tape, ROGUE, PLC1, 50104)
    start = t
    t = sess.setup(sess.open(t))
    sess.ref += 1
    sess.pdu(
        t,
        True,
        JOB,
        bytes([REQ_DOWNLOAD, 0, 1, 0, 0, 0, 0, 0])
        + filename(OB1)
        + filename(b"1000094000038"),  # part 2: '1', load memory 94, MC7 code 38 bytes
    )
    sess.pdu(t + 0.004, False, ACK_DATA, bytes([REQ_DOWNLOAD]))
    # the PLC now pulls the block from the client, then reports the download as ended
    block = bytes(range(0x20, 0x20 + 38))
    sess.pdu(t + 0.01, False, JOB, bytes([DOWNLOAD_BLOCK, 0, 1, 0, 0, 0, 0, 0]) + filename(OB1))
    sess.pdu(
        t + 0.014,
        True,
        ACK_DATA,
        bytes([DOWNLOAD_BLOCK, 0]),
        len(block).to_bytes(2, "big") + b"\x00\xfb" + block,
    )
    sess.pdu(t + 0.02, False, JOB, bytes([DOWNLOAD_ENDED, 0, 0, 0, 0, 0, 0, 0]) + filename(OB1))
    sess.pdu(t + 0.024, True, ACK_DATA, bytes([DOWNLOAD_ENDED]))
    sess.conv.send(t + 0.2, False, "A")
    sess.conv.close(t + 0.3)
    return start, t + 0.301


def rogue_stop(tape: Tape, t: float) -> tuple[float, float]:
    sess = S7Session(tape, ROGUE, PLC1, 50105)
    start = t
    t = sess.setup(sess.open(t))
    t = sess.call(t, bytes([PLC_STOP, 0, 0, 0, 0, 0]) + filename(b"P_PROGRAM"), b"", b"\x29")
    sess.conv.close(t)
    return start, t + 0.001


def build() -> tuple[list[Packet], dict[str, Any], list[tuple[Value, ...]]]:
    tape = Tape()
    hmi_polling(tape)
    s7comm_plus_hello(tape)
    w = rogue_write(tape, T0 + 120)
    u = rogue_upload(tape, T0 + 240)
    d = rogue_download(tape, T0 + 360)
    s = rogue_stop(tape, T0 + 480)
    packets, intended = tape.finish()
    rogue, plc = [ROGUE], [PLC1]
    labels = {
        "description": (
            "S7comm: HMI polling of PLC 1 (read var) and an S7comm-plus hello from the "
            "engineering workstation to PLC 2; a non-engineering IT host writes DB1, uploads "
            "and downloads OB1 and stops PLC 1."
        ),
        "source": SOURCE,
        "attacks": [
            attack("s7-write-var", "ot_unauthorized_write", ["T0855", "T0836"], *w, rogue, plc),
            attack("s7-upload-ob1", "ot_unauthorized_command", ["T0845"], *u, rogue, plc),
            attack(
                "s7-download-ob1", "ot_unauthorized_command", ["T0843", "T0889"], *d, rogue, plc
            ),
            attack("s7-plc-stop", "ot_unauthorized_command", ["T0858", "T0881"], *s, rogue, plc),
        ],
        "notes": (
            "Crafted. 10.1.1.66 is in ent-a IT, from where s7comm to ent-a OT is an allowed "
            "conduit; only the engineering workstation 10.1.1.50 has business programming the "
            "PLCs. Download: request download (0x1a) from the attacker, download block (0x1b) and "
            "download ended (0x1c) jobs from the PLC, as on the wire. S7comm-plus frames carry "
            "protocol id 0x72 after COTP DT and are benign here."
        ),
    }
    return packets, labels, intended


SCENARIOS = {"s7comm_plc_attacks.pcap": lambda: build()[:2]}
"""Capture name -> scenario."""

INTENDED = {"s7comm_plc_attacks.pcap": lambda: build()[2]}
"""Capture name -> intended values of :data:`TSHARK_FIELDS`, one tuple per OT frame."""

TSHARK_FILTER = "cotp"
TSHARK_FIELDS = ("cotp.type", "s7comm.header.rosctr", "s7comm.param.func", "data.data")
