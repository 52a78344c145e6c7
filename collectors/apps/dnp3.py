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
from collectors.apps.dnp3_objects import MAX_OBJECTS as MAX_OBJECTS
from collectors.apps.dnp3_objects import DnpObjects, parse_objects
from collectors.apps.dnp3_tables import (
    FUNCTIONS,
    IIN2_REFUSAL,
    IIN_BITS,
    LINK_PRIMARY,
    LINK_SECONDARY,
    RESPONSES,
)
from collectors.apps.dnp3_tables import NO_DATA as NO_DATA
from collectors.apps.dnp3_tables import SIZES as SIZES

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
