"""DNP3 over TCP and UDP (port 20000): link frames, transport reassembly, application layer.

Spec: IEEE 1815-2012. A link frame is a 10-octet header (0x05 0x64, length, control, destination
and source address little-endian, CRC) and up to 250 octets of user data in blocks of 16, each
followed by its CRC (CRC-16/DNP). User data = one transport octet (FIN, FIR, sequence) + a piece
of an application fragment; the fragment (application control, function code, IIN for
responses, object headers and data) is reassembled per direction and address pair.

CRCs are checked, as tshark does: a frame whose header CRC is wrong is not DNP3 to tshark (it
dissects nothing) and a frame whose data-block CRC is wrong is dissected only to the link
layer. ParkWatch does the same: both raise a :class:`DecodeError` (``bad_header_crc`` /
``bad_data_crc``, a counted weird) and the frame's data is not used; the engine then drops the
rest of the buffered stream and resynchronises on the next segment. A transport segment that
does not continue a fragment (not FIR, no fragment open, or a sequence gap) is dropped silently
like tshark does (normal at the start of a capture).

Event fields: ``direction`` from the link DIR bit (1 = from the master = request); ``unit`` = the
outstation address (link destination of a request, link source of a response), both link
addresses in attrs; ``function_code`` = application function code; ``match`` = (application
sequence, master address, outstation address); confirms (fc 0) and unsolicited responses
(fc 130) have ``link=False``. Responses carry ``attrs['iin']`` (IIN1 << 8 | IIN2, like tshark's
dnp3.al.iin) and ``exception_code`` = IIN2 & 0x17 (function code not supported 0x01, object
unknown 0x02, parameter error 0x04, already executing 0x10: the bits that refuse a request;
event buffer overflow and configuration corrupt describe the device, they stay in ``iin``) when
non-zero. ``data_area`` = 'g<group>v<variation>' of the first object header, ``address`` /
``quantity`` its start index and count; every header parsed (up to ``MAX_OBJECTS``) is in
``attrs['objects']``; g12v1 control relay output blocks are in ``attrs['crob']`` and their
control codes (g41 analog outputs: their values) in ``values``.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

from collectors.apps.base import AppDecoder, DecodeError, Msg, register

MAX_OBJECTS = 16
"""Object headers recorded in ``attrs['objects']`` (all are counted in ``object_count``)."""
MAX_OPEN = 64
"""Fragments (address pairs) a flow may have open at once."""
MAX_FRAGMENT = 65536
"""Octets an application fragment may reach before it is dropped (``fragment_too_large``)."""


def _crc_table() -> tuple[int, ...]:
    out = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA6BC if crc & 1 else crc >> 1
        out.append(crc)
    return tuple(out)


_TABLE = _crc_table()


def crc_dnp(data: bytes | memoryview) -> int:
    """CRC-16/DNP of ``data`` (as the 16-bit value sent little-endian on the wire)."""
    crc, table = 0, _TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return ~crc & 0xFFFF


FUNCTIONS: dict[int, str] = {
    0: "confirm",
    1: "read",
    2: "write",
    3: "select",
    4: "operate",
    5: "direct_operate",
    6: "direct_operate_no_ack",
    7: "immediate_freeze",
    8: "immediate_freeze_no_ack",
    9: "freeze_clear",
    10: "freeze_clear_no_ack",
    11: "freeze_at_time",
    12: "freeze_at_time_no_ack",
    13: "cold_restart",
    14: "warm_restart",
    15: "initialize_data",
    16: "initialize_application",
    17: "start_application",
    18: "stop_application",
    19: "save_configuration",
    20: "enable_unsolicited",
    21: "disable_unsolicited",
    22: "assign_class",
    23: "delay_measurement",
    24: "record_current_time",
    25: "open_file",
    26: "close_file",
    27: "delete_file",
    28: "get_file_info",
    29: "authenticate_file",
    30: "abort_file",
    31: "activate_config",
    32: "authenticate_request",
    33: "authenticate_request_no_ack",
    129: "response",
    130: "unsolicited_response",
    131: "authenticate_response",
}

LINK_PRIMARY = {
    0: "reset_link_states",
    2: "test_link_states",
    3: "confirmed_user_data",
    4: "unconfirmed_user_data",
    9: "request_link_status",
}
LINK_SECONDARY = {0: "ack", 1: "nack", 11: "link_status", 15: "not_supported"}
IIN_BITS = (
    "all_stations", "class1_events", "class2_events", "class3_events",
    "need_time", "local_control", "device_trouble", "device_restart",
    "no_func_code_support", "object_unknown", "parameter_error", "event_buffer_overflow",
    "already_executing", "config_corrupt", "reserved2", "reserved1",
)  # fmt: skip
"""IIN1 bits 0-7 then IIN2 bits 0-7."""
IIN2_REFUSAL = 0x17
RESPONSES = (129, 130, 131)

_HDR = struct.Struct("<HBBHH")  # start (0x6405 read little-endian), length, control, dst, src


@register
class Dnp3(AppDecoder):
    """DNP3 master/outstation decoder (TCP stream or UDP datagrams)."""

    name = "dnp3"
    tcp_ports = (20000,)
    udp_ports = (20000,)
    FUNCTIONS: ClassVar[dict[int, str]] = FUNCTIONS
    ATTRS: ClassVar[dict[str, str]] = {
        "src_addr": "Link-layer source address.",
        "dst_addr": "Link-layer destination address.",
        "link_function": "Link control function name (unconfirmed_user_data …).",
        "app_seq": "Application sequence number (0-15).",
        "app_control": "Application control octet (FIR 0x80, FIN 0x40, CON 0x20, UNS 0x10).",
        "frames": "Link frames the application fragment was reassembled from.",
        "iin": "Response internal indications, IIN1 << 8 | IIN2.",
        "iin_flags": "Names of the IIN bits set (device_restart, need_time, …).",
        "objects": "Object headers: list of {group, variation, qualifier, start/stop or count}.",
        "object_count": "Number of object headers parsed.",
        "objects_incomplete": "Why parsing stopped before the end (unknown object size …).",
        "crob": "g12v1 blocks: list of {index, code, op, tcc, queue, clear, count, on_ms, "
        "off_ms, status}.",
        "file_name": "g70 file command / transport: the file name, where carried.",
    }

    def __init__(self) -> None:
        self._frag: dict[tuple[int, int], tuple[int, bytearray, int]] = {}

    @classmethod
    def probe(cls, data: bytes, from_client: bool) -> bool:
        return (
            len(data) >= 10
            and data[0] == 0x05
            and data[1] == 0x64
            and data[2] >= 5
            and crc_dnp(data[:8]) == int.from_bytes(data[8:10], "little")
        )

    def parse(self, buf: bytes, from_client: bool) -> tuple[int, list[Msg]]:
        msgs: list[Msg] = []
        pos, end = 0, len(buf)
        while end - pos >= 10:
            try:
                size = self._frame_size(buf, pos)
                if end - pos < size:
                    break
                msg = self._frame(buf, pos, size)
            except DecodeError:
                if msgs:  # report the good messages first; the bad frame raises next call
                    return pos, msgs
                raise
            pos += size
            if msg is not None:
                msgs.append(msg)
        return pos, msgs

    def datagram(self, data: bytes, from_client: bool) -> list[Msg]:
        msgs: list[Msg] = []
        pos = 0
        while pos < len(data):
            if len(data) - pos < 10:
                raise DecodeError("truncated_frame", f"{len(data) - pos} octets after last frame")
            size = self._frame_size(data, pos)
            if len(data) - pos < size:
                raise DecodeError("truncated_frame", f"frame of {size} octets, {len(data) - pos}")
            msg = self._frame(data, pos, size)
            pos += size
            if msg is not None:
                msgs.append(msg)
        return msgs

    @staticmethod
    def _frame_size(buf: bytes, pos: int) -> int:
        if buf[pos] != 0x05 or buf[pos + 1] != 0x64:
            raise DecodeError("bad_start_octets", f"0x{buf[pos]:02x}{buf[pos + 1]:02x}, not 0x0564")
        length = buf[pos + 2]
        if length < 5:
            raise DecodeError("bad_link_length", f"length {length} < 5")
        user = length - 5
        return 10 + user + 2 * ((user + 15) // 16)

    def _frame(self, buf: bytes, pos: int, size: int) -> Msg | None:
        _start, length, ctrl, dst, src = _HDR.unpack_from(buf, pos)
        if crc_dnp(buf[pos : pos + 8]) != int.from_bytes(buf[pos + 8 : pos + 10], "little"):
            raise DecodeError("bad_header_crc", f"link header {dst} <- {src}")
        if length == 5:
            return None  # link-layer only (reset link, link status …)
        user = bytearray()
        p, stop = pos + 10, pos + size
        while p < stop:
            n = min(16, stop - p - 2)
            block = buf[p : p + n]
            if crc_dnp(block) != int.from_bytes(buf[p + n : p + n + 2], "little"):
                self._frag.pop((src, dst), None)
                raise DecodeError("bad_data_crc", f"data block at octet {p - pos}, {dst} <- {src}")
            user += block
            p += n + 2
        return self._transport(ctrl, dst, src, user)

    def _transport(self, ctrl: int, dst: int, src: int, user: bytearray) -> Msg | None:
        th, key = user[0], (src, dst)
        fin, fir, seq = th & 0x80, th & 0x40, th & 0x3F
        if fir:
            frag, frames = bytearray(user[1:]), 1
        else:
            open_ = self._frag.pop(key, None)
            if open_ is None or open_[0] != seq:
                return None  # no fragment to continue (capture start) or a lost segment
            frag, frames = open_[1], open_[2] + 1
            frag += user[1:]
        if len(frag) > MAX_FRAGMENT:
            raise DecodeError("fragment_too_large", f"{len(frag)} octets, {dst} <- {src}")
        if not fin:
            if len(self._frag) >= MAX_OPEN and key not in self._frag:
                self._frag.clear()  # address-spoofing flood: forget the open fragments
            self._frag[key] = ((seq + 1) & 0x3F, frag, frames)
            return None
        return _application(ctrl, dst, src, bytes(frag), frames)


def _application(ctrl: int, dst: int, src: int, apdu: bytes, frames: int) -> Msg | None:
    if len(apdu) < 2:
        return None  # tshark shows no application layer for a fragment this short
    ac, fc = apdu[0], apdu[1]
    from_master = bool(ctrl & 0x80)
    prm = LINK_PRIMARY if ctrl & 0x40 else LINK_SECONDARY
    attrs: dict[str, Any] = {
        "src_addr": src,
        "dst_addr": dst,
        "link_function": prm.get(ctrl & 0x0F, f"unknown-{ctrl & 0x0F}"),
        "app_seq": ac & 0x0F,
        "app_control": ac & 0xF0,
    }
    if frames > 1:
        attrs["frames"] = frames
    master, outstation = (src, dst) if from_master else (dst, src)
    msg = Msg(
        "request" if from_master else "response",
        function_code=fc,
        function_name=Dnp3.fname(fc),
        unit=outstation,
        attrs=attrs,
        match=(ac & 0x0F, master, outstation),
        link=fc not in (0, 130),
    )
    off = 2
    if fc in RESPONSES:
        if len(apdu) < 4:
            attrs["objects_incomplete"] = "response without IIN"
            return msg
        iin = apdu[2] << 8 | apdu[3]
        attrs["iin"] = iin
        attrs["iin_flags"] = [
            IIN_BITS[8 * (1 - byte) + bit]
            for byte in (1, 0)
            for bit in range(8)
            if (iin >> (8 * byte + bit)) & 1
        ]
        if iin & IIN2_REFUSAL:
            msg.exception_code = iin & IIN2_REFUSAL
        off = 4
    objs: DnpObjects = parse_objects(apdu, off, fc)
    _fill(msg, objs)
    return msg


def _fill(msg: Msg, objs: DnpObjects) -> None:
    attrs = msg.attrs
    if objs.headers:
        first = objs.headers[0]
        msg.data_area = f"g{first['group']}v{first['variation']}"
        msg.address = first.get("start", objs.first_index)
        msg.quantity = first.get("count")
        attrs["objects"] = objs.headers
        attrs["object_count"] = objs.total
    if objs.incomplete:
        attrs["objects_incomplete"] = objs.incomplete
    if objs.crob:
        attrs["crob"] = objs.crob
        msg.values = tuple(c["code"] for c in objs.crob)
    elif objs.values:
        msg.values = tuple(objs.values)
    if objs.file_name is not None:
        attrs["file_name"] = objs.file_name


# -- objects -------------------------------------------------------------------------------------

SIZES: dict[int, tuple[int, ...]] = {
    1: (-1, 1), 2: (1, 7, 3), 3: (-2, 1), 4: (1, 7, 3), 10: (-1, 1), 11: (1, 7),
    12: (11, 11, -1), 13: (1, 7), 20: (5, 3, 5, 3, 4, 2, 4, 2),
    21: (5, 3, 5, 3, 11, 9, 11, 9, 4, 2, 4, 2), 22: (5, 3, 5, 3, 11, 9, 11, 9),
    23: (5, 3, 5, 3, 11, 9, 11, 9), 30: (5, 3, 4, 2, 5, 9), 31: (5, 3, 11, 9, 4, 2, 5, 9),
    32: (5, 3, 11, 9, 5, 9, 11, 15), 33: (5, 3, 11, 9, 5, 9, 11, 15), 34: (2, 4, 4),
    40: (5, 3, 5, 9), 41: (5, 3, 5, 9), 42: (5, 3, 11, 9, 5, 9, 11, 15),
    43: (5, 3, 11, 9, 5, 9, 11, 15), 50: (6, 10, 6, 11), 51: (6, 6), 52: (2, 2), 80: (-1,),
}  # fmt: skip
"""Octets per object of (group, variation) = SIZES[group][variation - 1]; -n: packed n-bit
values. Groups 110-113 (octet strings, virtual terminal): the variation is the size."""
NO_DATA = {0, 1, 7, 8, 9, 10, 13, 14, 20, 21, 22, 23, 24}
"""Request function codes whose object headers carry no object data."""
_WIDTH = (0, 1, 2, 4, 1, 2, 4, 0)  # prefix code -> index / size octets
_G41 = {1: "<i", 2: "<h", 3: "<f", 4: "<d"}


class DnpObjects:
    """What :func:`parse_objects` found in one application fragment."""

    __slots__ = ("crob", "file_name", "first_index", "headers", "incomplete", "total", "values")

    def __init__(self) -> None:
        self.headers: list[dict[str, int]] = []
        self.total = 0
        self.incomplete: str | None = None
        self.crob: list[dict[str, int]] = []
        self.values: list[float] = []
        self.file_name: str | None = None
        self.first_index: int | None = None


def _size(group: int, var: int) -> int | None:
    if 110 <= group <= 113:
        return var or None
    sizes = SIZES.get(group)
    return sizes[var - 1] if sizes and 1 <= var <= len(sizes) else None


def parse_objects(apdu: bytes, off: int, fc: int) -> DnpObjects:
    """Object headers (and the data of CROB, g41 and g70 objects) from ``apdu[off:]``."""
    out, end = DnpObjects(), len(apdu)
    data_follows = fc not in NO_DATA
    while off < end:
        if end - off < 3:
            out.incomplete = f"object header truncated at octet {off}"
            break
        group, var, qual = apdu[off], apdu[off + 1], apdu[off + 2]
        off += 3
        prefix, rng = (qual >> 4) & 7, qual & 0x0F
        head = {"group": group, "variation": var, "qualifier": qual}
        count: int | None = None
        if rng <= 5 or rng in (7, 8, 9, 0x0B):
            width = (1, 2, 4)[rng % 3] if rng <= 5 else {7: 1, 8: 2, 9: 4, 0x0B: 1}[rng]
            nfield = 2 if rng <= 5 else 1
            if end - off < nfield * width:
                out.incomplete = f"range of g{group}v{var} truncated"
                break
            first = int.from_bytes(apdu[off : off + width], "little")
            if rng <= 5:
                last = int.from_bytes(apdu[off + width : off + 2 * width], "little")
                if last < first:
                    out.incomplete = f"g{group}v{var} range {first}-{last}"
                    break
                head["start"], head["stop"], count = first, last, last - first + 1
            else:
                count = first
            off += nfield * width
            head["count"] = count
        if len(out.headers) < MAX_OBJECTS:
            out.headers.append(head)
        out.total += 1
        if rng not in (6, 0x0B) and rng > 9:  # listed, like tshark, but nothing follows
            out.incomplete = f"reserved range code {rng} (qualifier 0x{qual:02x})"
            break
        if not data_follows or count is None or group == 60 or not count:
            continue
        off = _data(out, apdu, off, group, var, prefix, count)
        if out.incomplete:
            break
    return out


def _data(out: DnpObjects, apdu: bytes, off: int, group: int, var: int, prefix: int, n: int) -> int:
    """Skip (and pick from) the data of ``n`` objects; returns the offset after them."""
    end, width = len(apdu), _WIDTH[prefix]
    if prefix == 7:
        out.incomplete = "reserved prefix code 7"
        return off
    if prefix >= 4:  # each object is preceded by its size
        for _ in range(n):
            if end - off < width:
                out.incomplete = f"g{group}v{var} object size truncated"
                return off
            osize = int.from_bytes(apdu[off : off + width], "little")
            obj = apdu[off + width : off + width + osize]
            if len(obj) < osize:
                out.incomplete = f"g{group}v{var} object of {osize} octets truncated"
                return end
            if group == 70 and out.file_name is None:
                _file_name(out, var, obj)
            off += width + osize
        return off
    size = _size(group, var)
    if size is None:
        out.incomplete = f"g{group}v{var}: object size not known"
        return off
    if size < 0:
        if prefix:
            out.incomplete = f"g{group}v{var}: packed objects with index prefix"
            return off
        off += (n * -size + 7) // 8
    else:
        step = width + size
        room = (end - off) // step
        for i in range(min(n, room, 256)):
            at = off + i * step
            index = int.from_bytes(apdu[at : at + width], "little") if width else -1
            if i == 0 and width:
                out.first_index = index
            _pick(out, apdu, at + width, group, var, index)
        off += n * step
    if off > end:
        out.incomplete = f"g{group}v{var} data truncated"
    return off


def _pick(out: DnpObjects, apdu: bytes, at: int, group: int, var: int, index: int) -> None:
    if group == 12 and var == 1:
        code, count, on_ms, off_ms, status = struct.unpack_from("<BBIIB", apdu, at)
        out.crob.append(
            {
                "index": index,
                "code": code,
                "op": code & 0x0F,
                "queue": (code >> 4) & 1,
                "clear": (code >> 5) & 1,
                "tcc": code >> 6,
                "count": count,
                "on_ms": on_ms,
                "off_ms": off_ms,
                "status": status & 0x7F,
            }
        )
    elif group == 41 and var in _G41:
        out.values.append(struct.unpack_from(_G41[var], apdu, at)[0])


def _file_name(out: DnpObjects, var: int, obj: bytes) -> None:
    if var in (3, 7) and len(obj) >= 4:  # file command / descriptor: name offset and size
        name_off, name_size = struct.unpack_from("<HH", obj)
        out.file_name = obj[name_off : name_off + name_size].decode("latin-1")
    elif var == 8:  # file specification string
        out.file_name = obj.decode("latin-1")
