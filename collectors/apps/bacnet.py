"""BACnet/IP (UDP 47808): one event per BVLC message carrying an APDU or BVLC/network control.

Spec: ANSI/ASHRAE 135 (clause 20: APDU encoding and tags, clause 6: NPDU, Annex J: BVLL for
BACnet/IP).

Events:

- An APDU: ``function_code`` = its service choice. Confirmed-Request, SimpleACK, ComplexACK
  and Error carry a confirmed service choice, named from ``FUNCTIONS`` (readProperty 12,
  writeProperty 15, deviceCommunicationControl 17, reinitializeDevice 20 …); an
  Unconfirmed-Request carries an unconfirmed service choice, named from ``UNCONFIRMED``
  (i-am 0, who-has 7, who-is 8 …) — ``attrs['pdu_type']`` says which table applies.
  Reject and Abort carry no service choice: ``function_code`` is the service of the request
  with the same invoke id seen on this flow, else None. Direction from the PDU type
  (confirmed/unconfirmed requests are requests; ACK, Error, Reject and server Abort are
  responses); ``match`` = invoke id; unconfirmed services answer nothing (``link=False``).
- ``exception_code``: Error PDU -> error class << 16 | error code (names in attrs);
  Reject -> reject reason; Abort -> abort reason; BVLC-Result -> the non-zero result code.
- ReadProperty / WriteProperty (and their ACKs), ReadPropertyMultiple, SubscribeCOV …:
  ``data_area`` = 'analog-value 2' (object type name and instance of the first object
  identifier), ``address`` = instance, property id in attrs; WriteProperty ``values`` = the
  application-tagged value(s) written, ``attrs['priority']``; ReadProperty ComplexACK
  ``values`` = the value read. Who-Is limits, I-Am device instance and vendor,
  ReinitializeDevice state and DeviceCommunicationControl enable/disable in attrs.
- BVLC functions without an NPDU and network-layer messages: ``function_code`` None,
  ``function_name`` = the BVLC function / network message name.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

from collectors.apps.bacnet_tables import (
    ABORTS,
    BVLC,
    DCC,
    ERROR_CLASSES,
    FUNCTIONS,
    NETWORK_MESSAGES,
    NPDU_AT,
    OBJECT_SERVICES,
    OBJECT_TYPES,
    PDU_TYPES,
    PROPERTIES,
    REINIT_STATES,
    REJECTS,
    UNCONFIRMED,
)
from collectors.apps.base import AppDecoder, DecodeError, Msg, register


def _name(table: tuple[str, ...], code: int) -> str:
    return table[code] if 0 <= code < len(table) else f"unknown-{code}"


def _tag(data: bytes, i: int) -> tuple[int, bool, int, int, int]:
    """(tag number, context?, length-value-type, value offset, end) of the tag at ``i``."""
    b = data[i]
    num, ctx, lvt = b >> 4, bool(b & 8), b & 7
    i += 1
    if num == 15:
        num, i = data[i], i + 1
    if lvt == 5:
        lvt, i = data[i], i + 1
        if lvt == 254:
            lvt, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif lvt == 255:
            lvt, i = int.from_bytes(data[i : i + 4], "big"), i + 4
    elif ctx and lvt in (6, 7):
        return num, ctx, lvt, i, i  # opening / closing tag
    if not ctx and num == 1:
        return num, ctx, lvt, i, i  # application boolean: the value is the lvt
    if i + lvt > len(data):
        raise IndexError("tag runs past the APDU")
    return num, ctx, lvt, i, i + lvt


def _app_value(num: int, lvt: int, raw: bytes) -> Any:
    """An application-tagged primitive value."""
    if num == 0:
        return None
    if num == 1:
        return bool(lvt)
    if num in (2, 9):
        return int.from_bytes(raw, "big")
    if num == 3:
        return int.from_bytes(raw, "big", signed=True)
    if num == 4 and len(raw) == 4:
        return struct.unpack(">f", raw)[0]
    if num == 5 and len(raw) == 8:
        return struct.unpack(">d", raw)[0]
    if num == 7 and raw:
        return raw[1:].decode("utf-8" if raw[0] == 0 else "latin-1", "replace")
    if num == 12 and len(raw) == 4:
        v = int.from_bytes(raw, "big")
        return f"{_name(OBJECT_TYPES, v >> 22)} {v & 0x3FFFFF}"
    return raw.hex()


@register
class BacnetDecoder(AppDecoder):
    name = "bacnet"
    udp_ports = (47808,)
    FUNCTIONS: ClassVar[dict[int, str]] = FUNCTIONS
    ATTRS: ClassVar[dict[str, str]] = {
        "bvlc_function": "BVLC function name ('original-unicast-npdu' …).",
        "pdu_type": "APDU type: confirmed-request, unconfirmed-request, simple-ack, complex-ack, "
        "segment-ack, error, reject, abort.",
        "invoke_id": "Invoke id of a confirmed transaction.",
        "segment": "Sequence number of a segmented request / ComplexACK.",
        "expecting_reply": "NPDU control: data-expecting-reply bit.",
        "dnet": "NPDU destination network number, when routed.",
        "snet": "NPDU source network number, when routed.",
        "network_message": "Network-layer message type (no APDU).",
        "object_type": "Object type (number) of the first object identifier.",
        "instance": "Object instance of the first object identifier.",
        "property_id": "Property identifier of Read/WriteProperty.",
        "property_name": "Name of the property, where in the module's short table.",
        "array_index": "Property array index, when present.",
        "priority": "WriteProperty priority (1-16).",
        "low_limit": "Who-Is device instance low limit.",
        "high_limit": "Who-Is device instance high limit.",
        "device_instance": "I-Am device instance.",
        "vendor_id": "I-Am vendor identifier.",
        "reinitialize_state": "ReinitializeDevice state ('coldstart', 'warmstart' …).",
        "enable_disable": "DeviceCommunicationControl: enable, disable, disable-initiation.",
        "duration": "DeviceCommunicationControl time duration (minutes).",
        "password_present": "ReinitializeDevice / DeviceCommunicationControl carry a password.",
        "error_class": "Error PDU error class (number).",
        "error_class_name": "Name of the error class.",
        "error_code": "Error PDU error code (number).",
        "reject_reason": "Name of the Reject reason.",
        "abort_reason": "Name of the Abort reason.",
        "from_server": "Abort PDU SRV bit: sent by the server.",
        "result_code": "BVLC-Result code.",
        "malformed": "What could not be decoded in the service parameters.",
    }

    def __init__(self) -> None:
        self._pending: dict[int, int] = {}  # invoke id -> confirmed service

    @classmethod
    def probe(cls, data: bytes, from_client: bool) -> bool:
        if len(data) < 4 or data[0] != 0x81 or data[1] not in BVLC:
            return False
        if int.from_bytes(data[2:4], "big") != len(data):
            return False
        at = NPDU_AT.get(data[1])
        return at is None or (len(data) > at + 1 and data[at] == 0x01)

    def datagram(self, data: bytes, from_client: bool) -> list[Msg]:
        if len(data) < 4 or data[0] != 0x81:
            raise DecodeError("bad_bvlc_type", f"first octet 0x{data[0]:02x}" if data else "empty")
        func, size = data[1], int.from_bytes(data[2:4], "big")
        if size != len(data):
            raise DecodeError("bad_bvlc_length", f"BVLC length {size}, datagram {len(data)}")
        attrs: dict[str, Any] = {"bvlc_function": BVLC.get(func, f"unknown-{func}")}
        at = NPDU_AT.get(func)
        if at is None:
            direction = "request" if from_client else "response"
            exc = None
            if func == 0x00 and len(data) >= 6:
                exc = attrs["result_code"] = int.from_bytes(data[4:6], "big")
                direction = "response"
            name = attrs["bvlc_function"]
            return [Msg(direction, None, name, exception_code=exc or None, attrs=attrs, link=False)]
        try:
            return [self._npdu(data, at, attrs, from_client)]
        except IndexError as exc:
            raise DecodeError("truncated_npdu", str(exc)) from None

    def _npdu(self, data: bytes, i: int, attrs: dict[str, Any], from_client: bool) -> Msg:
        if data[i] != 0x01:
            raise DecodeError("bad_npdu_version", f"version {data[i]}")
        ctl = data[i + 1]
        i += 2
        attrs["expecting_reply"] = bool(ctl & 0x04)
        if ctl & 0x20:
            attrs["dnet"] = int.from_bytes(data[i : i + 2], "big")
            i += 3 + data[i + 2]
        if ctl & 0x08:
            attrs["snet"] = int.from_bytes(data[i : i + 2], "big")
            i += 3 + data[i + 2]
        if ctl & 0x20:
            i += 1  # hop count
        if ctl & 0x80:
            kind = data[i]
            attrs["network_message"] = kind
            name = NETWORK_MESSAGES[kind] if kind < len(NETWORK_MESSAGES) else f"unknown-{kind}"
            direction = "request" if from_client else "response"
            return Msg(direction, None, name, attrs=attrs, link=False)
        return self._apdu(data, i, attrs)

    def _apdu(self, data: bytes, i: int, attrs: dict[str, Any]) -> Msg:
        b0 = data[i]
        kind = b0 >> 4
        attrs["pdu_type"] = _name(PDU_TYPES, kind)
        if kind == 0:
            invoke, j = data[i + 2], i + 3
            if b0 & 0x08:
                attrs["segment"], j = data[j], j + 2
            service = data[j]
            attrs["invoke_id"] = invoke
            if len(self._pending) > 1024:
                self._pending.clear()
            self._pending[invoke] = service
            msg = Msg("request", service, self.fname(service), attrs=attrs, match=invoke)
            self._params(service, data, j + 1, msg, ack=False)
            return msg
        if kind == 1:
            service = data[i + 1]
            name = UNCONFIRMED.get(service, f"unknown-{service}")
            msg = Msg("request", service, name, attrs=attrs, link=False)
            self._unconfirmed(service, data, i + 2, msg)
            return msg
        if kind > 7:
            raise DecodeError("bad_apdu_type", f"PDU type {kind}")
        invoke = attrs["invoke_id"] = data[i + 1]
        if kind in (2, 3, 5):
            j = i + 2
            if kind == 3 and b0 & 0x08:
                attrs["segment"], j = data[j], j + 2
            service = data[j]
            msg = Msg("response", service, self.fname(service), attrs=attrs, match=invoke)
            if kind == 3:
                self._params(service, data, j + 1, msg, ack=True)
            elif kind == 5:
                self._error(data, j + 1, msg)
            self._pending.pop(invoke, None)
            return msg
        known = self._pending.pop(invoke, None) if kind != 4 else self._pending.get(invoke)
        name = self.fname(known) if known is not None else attrs["pdu_type"]
        msg = Msg("response", known, name, attrs=attrs, match=invoke)
        if kind == 4:
            msg.link = False
        elif kind == 6:
            msg.exception_code = data[i + 2]
            attrs["reject_reason"] = _name(REJECTS, data[i + 2])
        else:
            msg.exception_code = data[i + 2]
            attrs["abort_reason"] = _name(ABORTS, data[i + 2])
            attrs["from_server"] = bool(b0 & 1)
            if not b0 & 1:
                msg.direction, msg.link = "request", False
        return msg

    @staticmethod
    def _tags(data: bytes, i: int) -> list[tuple[int, bool, int, bytes]]:
        """(tag number, context?, lvt, value) of every tag from ``i`` to the end."""
        out = []
        while i < len(data):
            num, ctx, lvt, at, end = _tag(data, i)
            out.append((num, ctx, lvt, data[at:end]))
            i = end
        return out

    def _params(self, service: int, data: bytes, i: int, msg: Msg, ack: bool) -> None:
        try:
            tags = self._tags(data, i)
        except IndexError as exc:
            msg.attrs["malformed"] = str(exc)
            return
        attrs = msg.attrs
        if service in OBJECT_SERVICES:
            for num, ctx, lvt, raw in tags:
                if lvt == 4 and len(raw) == 4 and ((ctx and num in (0, 1)) or num == 12):
                    v = int.from_bytes(raw, "big")
                    kind, inst = v >> 22, v & 0x3FFFFF
                    attrs["object_type"], attrs["instance"] = kind, inst
                    msg.address, msg.data_area = inst, f"{_name(OBJECT_TYPES, kind)} {inst}"
                    break
        if service not in (12, 15):
            self._device_commands(service, tags, attrs)
            return
        depth, values = 0, []
        for num, ctx, lvt, raw in tags:
            if ctx and lvt in (6, 7) and not raw:
                depth += 1 if lvt == 6 else -1
            elif depth == 0 and ctx and num == 1:
                pid = attrs["property_id"] = int.from_bytes(raw, "big")
                attrs["property_name"] = PROPERTIES.get(pid, f"unknown-{pid}")
            elif depth == 0 and ctx and num == 2:
                attrs["array_index"] = int.from_bytes(raw, "big")
            elif depth == 0 and ctx and num == 4:
                attrs["priority"] = int.from_bytes(raw, "big")
            elif depth == 1 and not ctx:
                values.append(_app_value(num, lvt, raw))
        if values and (ack or service == 15):
            msg.values = tuple(values[:32])

    @staticmethod
    def _device_commands(
        service: int, tags: list[tuple[int, bool, int, bytes]], attrs: dict[str, Any]
    ) -> None:
        for num, ctx, _lvt, raw in tags:
            if not ctx:
                continue
            v = int.from_bytes(raw, "big")
            if service == 20 and num == 0:
                attrs["reinitialize_state"] = _name(REINIT_STATES, v)
            elif service == 17 and num == 0:
                attrs["duration"] = v
            elif service == 17 and num == 1:
                attrs["enable_disable"] = _name(DCC, v)
            if (service, num) in ((20, 1), (17, 2)):
                attrs["password_present"] = True

    def _unconfirmed(self, service: int, data: bytes, i: int, msg: Msg) -> None:
        try:
            tags = self._tags(data, i)
        except IndexError as exc:
            msg.attrs["malformed"] = str(exc)
            return
        attrs = msg.attrs
        if service == 8:
            for num, ctx, _lvt, raw in tags:
                if ctx and num in (0, 1):
                    attrs["low_limit" if num == 0 else "high_limit"] = int.from_bytes(raw, "big")
        elif service == 0 and len(tags) >= 4 and tags[0][0] == 12 and len(tags[0][3]) == 4:
            v = int.from_bytes(tags[0][3], "big")
            attrs["device_instance"] = v & 0x3FFFFF
            msg.address, msg.data_area = (
                v & 0x3FFFFF,
                f"{_name(OBJECT_TYPES, v >> 22)} {v & 0x3FFFFF}",
            )
            attrs["vendor_id"] = int.from_bytes(tags[3][3], "big")

    @staticmethod
    def _error(data: bytes, i: int, msg: Msg) -> None:
        try:
            tags = [t for t in BacnetDecoder._tags(data, i) if t[0] == 9 and not t[1]]
        except IndexError as exc:
            msg.attrs["malformed"] = str(exc)
            return
        if len(tags) >= 2:
            cls, code = (int.from_bytes(t[3], "big") for t in tags[:2])
            msg.attrs.update(
                error_class=cls, error_class_name=_name(ERROR_CLASSES, cls), error_code=code
            )
            msg.exception_code = cls << 16 | code
