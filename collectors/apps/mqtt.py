"""MQTT 3.1, 3.1.1 and 5.0 (TCP 1883): one event per control packet.

Spec: OASIS MQTT Version 3.1.1 (2014) and MQTT Version 5.0 (2019); IBM MQTT V3.1 (protocol
name 'MQIsdp', level 3).

Port 8883 is MQTT over TLS: its bytes are TLS records, so it is left to the TLS decoder (which
binds 8883); this decoder binds 1883 only and recognises MQTT elsewhere by its CONNECT.

Events: ``function_code`` = control packet type (CONNECT 1 … DISCONNECT 14, AUTH 15), named
from ``FUNCTIONS``. Direction from the packet type: CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ,
PUBLISH (either way: the sender asks for delivery) and PUBREL are requests; CONNACK, SUBACK,
UNSUBACK, PINGRESP, PUBACK, PUBREC and PUBCOMP are responses; DISCONNECT and AUTH go by
sender (client = request) and answer nothing. ``match`` pairs CONNECT/CONNACK,
PINGREQ/PINGRESP, SUBSCRIBE/SUBACK and UNSUBSCRIBE/UNSUBACK (by packet identifier),
PUBLISH QoS 1/2 with PUBACK/PUBREC and PUBREL with PUBCOMP (packet identifier and which side
published); a QoS 0 PUBLISH answers nothing (``link=False``).

``exception_code``: CONNACK return / reason code when non-zero; SUBACK: the first failure
(0x80, or an MQTT 5 reason code >= 0x80); MQTT 5 PUBACK/PUBREC/PUBREL/PUBCOMP/UNSUBACK/
DISCONNECT reason codes >= 0x80. ``quantity`` = topic filters of (UN)SUBSCRIBE.
"""

from __future__ import annotations

from typing import ClassVar

from collectors.apps.base import AppDecoder, DecodeError, Msg, register

FUNCTIONS: dict[int, str] = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
    7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
    12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH",
}  # fmt: skip

CONNACK_CODES = {
    0: "accepted", 1: "unacceptable_protocol_version", 2: "identifier_rejected",
    3: "server_unavailable", 4: "bad_user_name_or_password", 5: "not_authorized",
}  # fmt: skip
REQUESTS = frozenset((1, 3, 6, 8, 10, 12))
RESPONSES = frozenset((2, 4, 5, 7, 9, 11, 13))
FIXED_FLAGS = {6: 2, 8: 2, 10: 2}  # packets whose fixed-header flags must be 0b0010
MAX_TOPICS = 64


class _Short(Exception):
    """A field runs past the packet."""


def _varint(data: bytes, i: int, limit: int) -> tuple[int, int]:
    """(value, next offset) of a variable byte integer; (-1, i) if incomplete."""
    value, shift = 0, 0
    for k in range(4):
        if i + k >= limit:
            return -1, i
        b = data[i + k]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i + k + 1
        shift += 7
    raise DecodeError("bad_remaining_length", "variable byte integer longer than 4 octets")


class _Body:
    """Cursor over one packet's variable header and payload."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def take(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise _Short
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def text(self) -> str:
        return self.take(self.u16()).decode("utf-8", "replace")

    def properties(self) -> None:
        """Skip MQTT 5 properties."""
        size, nxt = _varint(self.data, self.pos, self.end)
        if size < 0:
            raise _Short
        self.pos = nxt
        self.take(size)

    def left(self) -> int:
        return self.end - self.pos


@register
class MqttDecoder(AppDecoder):
    name = "mqtt"
    tcp_ports = (1883,)
    FUNCTIONS: ClassVar[dict[int, str]] = FUNCTIONS
    ATTRS: ClassVar[dict[str, str]] = {
        "protocol_name": "CONNECT protocol name ('MQTT', or 'MQIsdp' for 3.1).",
        "protocol_level": "CONNECT protocol level: 3 (3.1), 4 (3.1.1), 5 (5.0).",
        "client_id": "CONNECT client identifier.",
        "clean_session": "CONNECT clean session / clean start flag.",
        "keep_alive": "CONNECT keep alive (seconds).",
        "username_present": "CONNECT carries a user name.",
        "password_present": "CONNECT carries a password.",
        "username": "CONNECT user name.",
        "will_topic": "CONNECT will topic, when a will is set.",
        "session_present": "CONNACK session present flag.",
        "return_code": "CONNACK return code (3.1.1) / reason code (5.0).",
        "return_name": "Name of a 3.1.1 CONNACK return code.",
        "topic": "PUBLISH topic name.",
        "qos": "PUBLISH QoS (0-2).",
        "retain": "PUBLISH retain flag.",
        "dup": "PUBLISH duplicate delivery flag.",
        "payload_len": "PUBLISH application message length (octets).",
        "packet_id": "Packet identifier.",
        "topics": "SUBSCRIBE / UNSUBSCRIBE topic filters (wildcards '#', '+' as sent).",
        "requested_qos": "SUBSCRIBE maximum QoS requested per filter.",
        "granted": "SUBACK return codes per filter (QoS granted, or 0x80 failure).",
        "reason_code": "MQTT 5 reason code of PUBACK, PUBREC, PUBREL, PUBCOMP, DISCONNECT, AUTH.",
        "malformed": "What is wrong with a packet too short or inconsistent for its type.",
    }

    def __init__(self) -> None:
        self.level = 4

    @classmethod
    def probe(cls, data: bytes, from_client: bool) -> bool:
        if len(data) < 12 or data[0] != 0x10:
            return False
        try:
            size, i = _varint(data, 1, len(data))
        except DecodeError:
            return False
        if size < 10:
            return False
        name = data[i : i + 8]
        return (name[:6] == b"\x00\x04MQTT" and name[6] in (4, 5)) or name == b"\x00\x06MQIs"

    def parse(self, buf: bytes, from_client: bool) -> tuple[int, list[Msg]]:
        pos, n = 0, len(buf)
        msgs: list[Msg] = []
        while n - pos >= 2:
            b0 = buf[pos]
            kind = b0 >> 4
            if kind == 0:
                if msgs:
                    break
                raise DecodeError("reserved_packet_type", f"fixed header 0x{b0:02x}")
            size, body = _varint(buf, pos + 1, n)
            if size < 0 or body + size > n:
                break
            msgs.append(self._packet(kind, b0 & 0x0F, buf, body, body + size, from_client))
            pos = body + size
        return pos, msgs

    def _packet(
        self, kind: int, flags: int, buf: bytes, at: int, end: int, from_client: bool
    ) -> Msg:
        if kind in REQUESTS:
            direction = "request"
        elif kind in RESPONSES:
            direction = "response"
        else:
            direction = "request" if from_client else "response"
        msg = Msg(direction, kind, self.fname(kind), link=kind in REQUESTS or kind in RESPONSES)
        attrs = msg.attrs
        if FIXED_FLAGS.get(kind, 0 if kind != 3 else flags) != flags:
            attrs["malformed"] = f"fixed header flags 0x{flags:x}"
        r = _Body(buf, at, end)
        try:
            self._body(kind, flags, r, msg, from_client)
        except _Short:
            attrs["malformed"] = f"{FUNCTIONS[kind]} of {end - at} octets is truncated"
        return msg

    def _body(self, kind: int, flags: int, r: _Body, msg: Msg, from_client: bool) -> None:
        attrs, v5 = msg.attrs, self.level >= 5
        if kind == 1:
            self._connect(r, msg)
        elif kind == 2:
            attrs["session_present"] = bool(r.u8() & 1)
            code = attrs["return_code"] = r.u8()
            if not v5:
                attrs["return_name"] = CONNACK_CODES.get(code, f"unknown-{code}")
            msg.exception_code = code or None
            msg.match = ("connect",)
        elif kind == 3:
            qos = flags >> 1 & 3
            attrs.update(topic=r.text(), qos=qos, retain=bool(flags & 1), dup=bool(flags & 8))
            if qos:
                pid = attrs["packet_id"] = r.u16()
                msg.match = ("pub", pid, from_client)
            else:
                msg.link = False
            if v5:
                r.properties()
            attrs["payload_len"] = r.left()
        elif kind in (4, 5, 6, 7):
            pid = attrs["packet_id"] = r.u16()
            family = "pub" if kind in (4, 5) else "rel"
            msg.match = (family, pid, from_client if kind == 6 else not from_client)
            if v5 and r.left():
                self._reason(r.u8(), msg)
        elif kind in (8, 10):
            pid = attrs["packet_id"] = r.u16()
            msg.match = ("sub" if kind == 8 else "unsub", pid)
            if v5:
                r.properties()
            topics: list[str] = []
            wanted: list[int] = []
            while r.left() and len(topics) < MAX_TOPICS:
                topics.append(r.text())
                if kind == 8:
                    wanted.append(r.u8() & 3)
            attrs["topics"] = topics
            if kind == 8:
                attrs["requested_qos"] = wanted
            msg.quantity = len(topics)
        elif kind in (9, 11):
            pid = attrs["packet_id"] = r.u16()
            msg.match = ("sub" if kind == 9 else "unsub", pid)
            if v5:
                r.properties()
            codes = list(r.take(r.left()))
            if kind == 9:
                attrs["granted"] = codes
            failed = [c for c in codes if c >= 0x80]
            msg.exception_code = failed[0] if failed else None
        elif kind == 12 or kind == 13:
            msg.match = ("ping",)
        elif kind in (14, 15):
            msg.link = False
            if v5 and r.left():
                self._reason(r.u8(), msg)

    @staticmethod
    def _reason(code: int, msg: Msg) -> None:
        msg.attrs["reason_code"] = code
        if code >= 0x80:
            msg.exception_code = code

    def _connect(self, r: _Body, msg: Msg) -> None:
        attrs = msg.attrs
        msg.match = ("connect",)
        name = attrs["protocol_name"] = r.text()
        level = attrs["protocol_level"] = r.u8()
        if name not in ("MQTT", "MQIsdp"):
            attrs["malformed"] = f"protocol name {name!r}"
            return
        self.level = level
        flags = r.u8()
        attrs["keep_alive"] = r.u16()
        attrs["clean_session"] = bool(flags & 0x02)
        attrs["username_present"] = bool(flags & 0x80)
        attrs["password_present"] = bool(flags & 0x40)
        if level >= 5:
            r.properties()
        attrs["client_id"] = r.text()
        if flags & 0x04:  # will
            if level >= 5:
                r.properties()
            attrs["will_topic"] = r.text()
            r.take(r.u16())
        if flags & 0x80:
            attrs["username"] = r.text()
