"""Modbus/TCP (MBAP over TCP port 502): one event per request, response or exception.

Spec: *MODBUS Application Protocol Specification V1.1b3* and *MODBUS Messaging on TCP/IP
Implementation Guide V1.0b*. An ADU is the 7-octet MBAP header (transaction id, protocol id 0,
length = octets that follow it, unit id) and the PDU (function code + data). Modbus carries no
direction bit: a PDU from the connection's client is a request, from the server a response.

Event fields: ``unit`` = MBAP unit id; ``function_code`` = fc without the 0x80 exception bit;
``exception_code`` set for an exception response; ``address`` / ``quantity`` / ``data_area`` for
the table a request (or its echo) addresses; ``values`` = what a write carries (coil 1/0 values
for fc 5 and 15, register values for 6, 16, 21, 23; (AND mask, OR mask) for 22). ``match`` =
(transaction id, unit id). A PDU whose data is too short or inconsistent for its function still
gives its event (like tshark, which dissects the function code and flags it malformed) with
``attrs['malformed']`` naming what is wrong; only a header that cannot be Modbus/TCP (protocol id
not 0, length < 2 or > 254) is a :class:`DecodeError`.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

from collectors.apps.base import AppDecoder, DecodeError, Msg, register

_H = struct.Struct(">H")
_HH = struct.Struct(">HH")
_MBAP = struct.Struct(">HHHBB")  # transaction, protocol, length, unit, function code

FUNCTIONS: dict[int, str] = {
    1: "read_coils",
    2: "read_discrete_inputs",
    3: "read_holding_registers",
    4: "read_input_registers",
    5: "write_single_coil",
    6: "write_single_register",
    7: "read_exception_status",
    8: "diagnostics",
    11: "get_comm_event_counter",
    12: "get_comm_event_log",
    15: "write_multiple_coils",
    16: "write_multiple_registers",
    17: "report_server_id",
    20: "read_file_record",
    21: "write_file_record",
    22: "mask_write_register",
    23: "read_write_multiple_registers",
    24: "read_fifo_queue",
    43: "encapsulated_interface_transport",
    90: "umas",  # Schneider Electric Unity (UMAS), vendor-specific, not in the public spec
}

EXCEPTIONS: dict[int, str] = {
    1: "illegal_function",
    2: "illegal_data_address",
    3: "illegal_data_value",
    4: "server_device_failure",
    5: "acknowledge",
    6: "server_device_busy",
    7: "negative_acknowledge",
    8: "memory_parity_error",
    10: "gateway_path_unavailable",
    11: "gateway_target_device_failed_to_respond",
}

DIAGNOSTICS: dict[int, str] = {
    0: "return_query_data",
    1: "restart_communications_option",
    2: "return_diagnostic_register",
    3: "change_ascii_input_delimiter",
    4: "force_listen_only_mode",
    10: "clear_counters_and_diagnostic_register",
    11: "return_bus_message_count",
    12: "return_bus_communication_error_count",
    13: "return_bus_exception_error_count",
    14: "return_server_message_count",
    15: "return_server_no_response_count",
    16: "return_server_nak_count",
    17: "return_server_busy_count",
    18: "return_bus_character_overrun_count",
    20: "clear_overrun_counter_and_flag",
}

MEI_TYPES = {13: "canopen_general_reference", 14: "read_device_identification"}
DEVICE_ID_OBJECTS = {
    0: "vendor_name",
    1: "product_code",
    2: "major_minor_revision",
    3: "vendor_url",
    4: "product_name",
    5: "model_name",
    6: "user_application_name",
}
AREAS = {
    1: "coil",
    2: "discrete_input",
    3: "holding_register",
    4: "input_register",
    5: "coil",
    6: "holding_register",
    15: "coil",
    16: "holding_register",
    20: "file_record",
    21: "file_record",
    22: "holding_register",
    23: "holding_register",
    24: "fifo",
}


def _regs(data: bytes, off: int, count: int) -> tuple[int, ...]:
    return struct.unpack_from(f">{count}H", data, off)


def _bits(data: bytes, count: int) -> tuple[int, ...]:
    """The first ``count`` bits of ``data``, least significant bit of the first octet first."""
    as_int = int.from_bytes(data, "little")
    return tuple((as_int >> i) & 1 for i in range(min(count, 8 * len(data))))


def _coil(raw: int) -> int:
    """A single-coil value: 0xff00 -> 1, 0x0000 -> 0, anything else stays as sent."""
    return 1 if raw == 0xFF00 else 0 if raw == 0 else raw


class _Short(Exception):
    """Internal: the PDU data is shorter than its function needs."""


def _need(data: bytes, n: int) -> None:
    if len(data) < n:
        raise _Short(f"needs {n} data octets, has {len(data)}")


@register
class Modbus(AppDecoder):
    """Modbus/TCP client/server decoder."""

    name = "modbus"
    tcp_ports = (502,)
    FUNCTIONS: ClassVar[dict[int, str]] = FUNCTIONS
    ATTRS: ClassVar[dict[str, str]] = {
        "transaction_id": "MBAP transaction identifier.",
        "exception_name": "Name of the exception code (illegal_data_address …).",
        "byte_count": "Byte count field of a read response or a multiple write request.",
        "subfunction": "Diagnostics (fc 8) sub-function code (4 = force listen only mode).",
        "subfunction_name": "Name of the diagnostics sub-function ('unknown-<n>' if not in spec).",
        "diag_data": "Diagnostics data field as hex.",
        "write_address": "fc 23: start address of the write part.",
        "write_quantity": "fc 23: number of registers written.",
        "file_number": "fc 20/21: file number of the first sub-request.",
        "subrequests": "fc 20/21: number of sub-requests in the request.",
        "mei_type": "fc 43: MEI type (13 CANopen, 14 read device identification).",
        "mei_name": "fc 43: name of the MEI type.",
        "read_device_id_code": "fc 43/14: device id code (1 basic, 2 regular, 3 extended, 4 one).",
        "object_id": "fc 43/14 request: first object id asked for.",
        "conformity_level": "fc 43/14 response: conformity level.",
        "more_follows": "fc 43/14 response: more-follows flag (0 or 0xff).",
        "device_id": "fc 43/14 response: object name (vendor_name, product_code …) -> text.",
        "server_id": "fc 17 response: server id, run indicator status, additional data (hex).",
        "status": "fc 11/12 response: status word.",
        "event_count": "fc 11/12 response: event counter.",
        "exception_status": "fc 7 response: the eight exception status outputs.",
        "umas_code": "fc 90 (Schneider UMAS): UMAS function code octet.",
        "invalid_coil_value": "fc 5: the value was neither 0xff00 nor 0x0000.",
        "malformed": "What is wrong with a PDU too short or inconsistent for its function.",
    }

    @classmethod
    def probe(cls, data: bytes, from_client: bool) -> bool:
        if len(data) < 8:
            return False
        _tid, proto, length, _unit, fc = _MBAP.unpack_from(data)
        return (
            proto == 0
            and 2 <= length <= 254
            and len(data) >= 6 + length
            and (fc & 0x7F) in FUNCTIONS
        )

    def parse(self, buf: bytes, from_client: bool) -> tuple[int, list[Msg]]:
        msgs: list[Msg] = []
        pos, end = 0, len(buf)
        while end - pos >= 8:
            tid, proto, length, unit, fc = _MBAP.unpack_from(buf, pos)
            if proto != 0 or not 2 <= length <= 254:
                if msgs:  # report the good PDUs first; the bad header raises on the next call
                    break
                if proto != 0:
                    raise DecodeError("bad_protocol_id", f"MBAP protocol id {proto}, not 0")
                raise DecodeError("bad_mbap_length", f"MBAP length {length} (2..254)")
            if end - pos < 6 + length:
                break
            data = bytes(buf[pos + 8 : pos + 6 + length])
            pos += 6 + length
            msgs.append(self._pdu(tid, unit, fc, data, from_client))
        return pos, msgs

    def _pdu(self, tid: int, unit: int, fc: int, data: bytes, request: bool) -> Msg:
        code = fc & 0x7F
        request = request and not fc & 0x80  # an exception is a response whoever sent it
        msg = Msg(
            "request" if request else "response",
            function_code=code,
            function_name=self.fname(code),
            unit=unit,
            data_area=AREAS.get(code),
            attrs={"transaction_id": tid},
            match=(tid, unit),
        )
        try:
            if fc & 0x80:
                _need(data, 1)
                msg.exception_code = data[0]
                msg.attrs["exception_name"] = EXCEPTIONS.get(data[0], f"unknown-{data[0]}")
            elif request:
                _request(msg, code, data)
            else:
                _response(msg, code, data)
        except (_Short, struct.error) as err:
            msg.attrs["malformed"] = str(err) or "short"
        return msg


def _request(m: Msg, fc: int, d: bytes) -> None:
    a = m.attrs
    if fc in (1, 2, 3, 4):
        _need(d, 4)
        m.address, m.quantity = _HH.unpack_from(d)
    elif fc == 5:
        _need(d, 4)
        m.address, raw = _HH.unpack_from(d)
        m.quantity = 1
        if raw not in (0xFF00, 0):
            a["invalid_coil_value"] = True
        m.values = (_coil(raw),)
    elif fc == 6:
        _need(d, 4)
        m.address, value = _HH.unpack_from(d)
        m.quantity, m.values = 1, (value,)
    elif fc in (15, 16):
        _need(d, 5)
        m.address, m.quantity = _HH.unpack_from(d)
        a["byte_count"] = d[4]
        payload = d[5 : 5 + d[4]]
        if fc == 15:
            m.values = _bits(payload, m.quantity)
            if len(payload) * 8 < m.quantity or len(payload) < d[4]:
                a["malformed"] = f"{m.quantity} coils in {len(payload)} octets"
        else:
            count = min(m.quantity, len(payload) // 2)
            m.values = _regs(payload, 0, count)
            if count < m.quantity or len(payload) < d[4]:
                a["malformed"] = f"{m.quantity} registers in {len(payload)} octets"
    elif fc == 8:
        _diag(m, d)
    elif fc in (20, 21):
        _file_record(m, fc, d)
    elif fc == 22:
        _need(d, 6)
        m.address, and_mask, or_mask = struct.unpack_from(">HHH", d)
        m.values = (and_mask, or_mask)
    elif fc == 23:
        _need(d, 9)
        m.address, m.quantity, wa, wq, _n = struct.unpack_from(">HHHHB", d)
        a["write_address"], a["write_quantity"] = wa, wq
        count = min(wq, (len(d) - 9) // 2)
        m.values = _regs(d, 9, count)
        if count < wq:
            a["malformed"] = f"{wq} registers in {len(d) - 9} octets"
    elif fc == 24:
        _need(d, 2)
        (m.address,) = _H.unpack_from(d)
    elif fc == 43:
        _mei(m, d, True)
    elif fc == 90:
        _need(d, 2)
        a["umas_code"] = d[1]


def _response(m: Msg, fc: int, d: bytes) -> None:
    a = m.attrs
    if fc in (1, 2, 3, 4, 12, 17, 20, 23):
        _need(d, 1)
        a["byte_count"] = d[0]
        if len(d) < 1 + d[0]:
            a["malformed"] = f"byte count {d[0]}, {len(d) - 1} octets follow"
        if fc == 12 and len(d) >= 7:
            a["status"], a["event_count"] = _HH.unpack_from(d, 1)
        elif fc == 17:
            a["server_id"] = d[1 : 1 + d[0]].hex()
    elif fc in (5, 6, 15, 16):
        _need(d, 4)
        m.address, value = _HH.unpack_from(d)
        if fc in (15, 16):
            m.quantity = value
        else:
            m.quantity = 1
            m.values = (_coil(value) if fc == 5 else value,)
    elif fc == 7:
        _need(d, 1)
        a["exception_status"] = d[0]
    elif fc == 8:
        _diag(m, d)
    elif fc == 11:
        _need(d, 4)
        a["status"], a["event_count"] = _HH.unpack_from(d)
    elif fc == 21:
        _file_record(m, fc, d)
    elif fc == 22:
        _need(d, 6)
        m.address, and_mask, or_mask = struct.unpack_from(">HHH", d)
        m.values = (and_mask, or_mask)
    elif fc == 24:
        _need(d, 4)
        a["byte_count"], m.quantity = _HH.unpack_from(d)
    elif fc == 43:
        _mei(m, d, False)
    elif fc == 90:
        _need(d, 2)
        a["umas_code"] = d[1]


def _diag(m: Msg, d: bytes) -> None:
    _need(d, 2)
    (sub,) = _H.unpack_from(d)
    m.attrs["subfunction"] = sub
    m.attrs["subfunction_name"] = DIAGNOSTICS.get(sub, f"unknown-{sub}")
    m.attrs["diag_data"] = d[2:].hex()


def _file_record(m: Msg, fc: int, d: bytes) -> None:
    _need(d, 8)
    size = d[0]
    pos, count, first = 1, 0, True
    while pos + 7 <= min(len(d), 1 + size):
        _ref, fnum, rnum, rlen = struct.unpack_from(">BHHH", d, pos)
        if first:
            m.address, m.quantity = rnum, rlen
            m.attrs["file_number"] = fnum
            if fc == 21:
                m.values = _regs(d, pos + 7, min(rlen, (len(d) - pos - 7) // 2))
            first = False
        count += 1
        pos += 7 + (2 * rlen if fc == 21 else 0)
    m.attrs["subrequests"] = count


def _mei(m: Msg, d: bytes, request: bool) -> None:
    _need(d, 1)
    a: dict[str, Any] = m.attrs
    a["mei_type"] = d[0]
    a["mei_name"] = MEI_TYPES.get(d[0], f"unknown-{d[0]}")
    if d[0] != 14:
        return
    _need(d, 3)
    a["read_device_id_code"] = d[1]
    if request:
        a["object_id"] = d[2]
        return
    _need(d, 6)
    a["conformity_level"], a["more_follows"] = d[2], d[3]
    objects: dict[str, str] = {}
    pos = 6
    for _ in range(d[5]):
        if pos + 2 > len(d) or pos + 2 + d[pos + 1] > len(d):
            a["malformed"] = f"device id object list ends at octet {pos}"
            break
        oid, olen = d[pos], d[pos + 1]
        text = d[pos + 2 : pos + 2 + olen].decode("latin-1")
        objects[DEVICE_ID_OBJECTS.get(oid, f"object_{oid}")] = text
        pos += 2 + olen
    a["device_id"] = objects
