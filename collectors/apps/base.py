"""Application-protocol decoders: the unit of extension for OT and IT protocols.

A decoder is one small module in ``collectors/apps`` with one class decorated ``@register``:

- ``name`` (the event ``protocol``), the ports it binds (like scapy's ``bind_layers``: a flow
  whose server port is bound goes to the decoder), and ``probe`` for content-based recognition
  of the protocol on other ports;
- ``FUNCTIONS`` (code -> name) and ``ATTRS`` (each ``attrs`` key it sets -> one-line doc), the
  protocol's field table;
- ``parse`` (TCP: the in-order, reassembled bytes of one direction) or ``datagram`` (UDP: one
  payload) returning :class:`Msg` objects, one per request or response.

The engine (:mod:`collectors.apps.engine`) makes one decoder instance per flow, reassembles TCP
streams, turns each ``Msg`` into an :class:`~parkwatch.schema.OtEvent`, links every response to
its request (by ``Msg.match`` key, else first-in-first-out) and turns a :class:`DecodeError` into
a counted weird. A decoder never judges: it states what was said.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from parkwatch.registry import Registry


class DecodeError(Exception):
    """Bytes that do not parse as the protocol; ``reason`` is a short snake_case name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class NeedMore(Exception):
    """Raised by helpers inside ``parse`` when the buffer holds only part of a PDU."""


@dataclass(slots=True)
class Msg:
    """One decoded protocol message (fields as in :class:`~parkwatch.schema.OtEvent`)."""

    direction: str
    """'request' or 'response'."""
    function_code: int | None = None
    function_name: str | None = None
    unit: int | None = None
    exception_code: int | None = None
    address: int | None = None
    quantity: int | None = None
    values: tuple[Any, ...] | None = None
    data_area: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    match: Hashable | None = None
    """Request/response matching key (Modbus transaction id, DNS id …); None = FIFO order."""
    link: bool = True
    """False for messages that answer nothing and expect no answer (unsolicited reports)."""


class AppDecoder:
    """Base class: one instance per flow (a TCP connection or a UDP flow)."""

    name: ClassVar[str]
    tcp_ports: ClassVar[tuple[int, ...]] = ()
    udp_ports: ClassVar[tuple[int, ...]] = ()
    FUNCTIONS: ClassVar[dict[int, str]] = {}
    ATTRS: ClassVar[dict[str, str]] = {}
    max_buffer: ClassVar[int] = 1 << 20
    """Bytes a direction may hold unparsed before the engine gives up on the stream."""

    @classmethod
    def probe(cls, data: bytes, from_client: bool) -> bool:
        """True when ``data`` (the first payload of a flow on an unbound port) is this protocol."""
        return False

    def parse(self, buf: bytes, from_client: bool) -> tuple[int, list[Msg]]:
        """TCP: decode whole PDUs at the start of ``buf`` (unconsumed in-order bytes of one
        direction); return the bytes consumed and the messages. Leave a partial PDU
        unconsumed. Raise :class:`DecodeError` for bytes that cannot be the protocol."""
        raise DecodeError("no_tcp_decoder", self.name)

    def datagram(self, data: bytes, from_client: bool) -> list[Msg]:
        """UDP: decode one datagram."""
        raise DecodeError("no_udp_decoder", self.name)

    def note(self, reason: str, detail: str = "") -> None:
        """Report a problem without giving up the messages decoded in the same call (the
        engine turns each note into a counted weird after ``parse``/``datagram`` returns)."""
        notes: list[tuple[str, str]] = self.__dict__.setdefault("_notes", [])
        if len(notes) < 64:
            notes.append((reason, detail))

    def take_notes(self) -> list[tuple[str, str]]:
        return self.__dict__.pop("_notes", [])

    @classmethod
    def fname(cls, code: int) -> str:
        """Name of ``code`` in ``FUNCTIONS`` ('unknown-<n>' when not in the table)."""
        return cls.FUNCTIONS.get(code, f"unknown-{code}")


APP_DECODERS: Registry[type[AppDecoder]] = Registry("application decoder")


def register(cls: type[AppDecoder]) -> type[AppDecoder]:
    """Class decorator: register the decoder; its ``tcp_ports``/``udp_ports`` bind it (the
    engine's port table is built from them).

    The flow table's port labels (``app_proto`` before decoding, and which side of a
    one-way flow is the server) come from :mod:`collectors.services` only, so a flow record
    does not depend on whether the decoders happen to be imported.
    """
    APP_DECODERS.register(cls.name, cls)
    return cls
