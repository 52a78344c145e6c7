"""Parameter and data parts of S7comm job / ack-data PDUs for :mod:`collectors.apps.s7comm`:
read/write var request items and return codes, block file names (download, upload) and
PI services. No decoder is registered here.
"""

from __future__ import annotations

import struct

from collectors.apps.base import Msg
from collectors.apps.s7comm_tables import AREAS, BLOCK_TYPES, RETURN_CODES

MAX_ITEMS = 16
"""Request items recorded in ``attrs['items']`` (all are counted in ``item_count``)."""


class _Short(Exception):
    """Internal: a parameter or data part shorter than its function needs."""


def _items(msg: Msg, param: bytes) -> None:
    items: list[dict[str, int]] = []
    pos, count = 2, param[1]
    for i in range(count):
        if pos + 2 > len(param):
            raise _Short(f"item {i} of {count} missing")
        spec, n = param[pos], param[pos + 1]
        body = param[pos + 2 : pos + 2 + n]
        pos += 2 + n
        if spec != 0x12 or len(body) < 1:
            raise _Short(f"item {i}: variable specification 0x{spec:02x}")
        if body[0] == 0x10 and len(body) >= 10:  # S7ANY
            tsize, qty, db, area = struct.unpack_from(">BHHB", body, 1)
            addr = int.from_bytes(body[7:10], "big")
            if area in (0x1C, 0x1D):  # counters and timers are addressed by number
                addr <<= 3
            item = {"area": area, "db": db, "address": addr >> 3, "bit": addr & 7}
            item.update(count=qty, transport_size=tsize)
        else:
            item = {"syntax_id": body[0]}
        if i == 0:
            _first_item(msg, item)
        if len(items) < MAX_ITEMS:
            items.append(item)
    msg.attrs["items"] = items


def _first_item(msg: Msg, item: dict[str, int]) -> None:
    if "area" not in item:
        return
    area = item["area"]
    name = AREAS.get(area, f"area_0x{area:02x}")
    if area in (0x84, 0x85):
        msg.attrs["db_number"] = item["db"]
        name += str(item["db"])
    msg.data_area, msg.address, msg.quantity = name, item["address"], item["count"]
    msg.attrs["bit"] = item["bit"]


def _write_values(msg: Msg, data: bytes) -> None:
    if len(data) < 4:
        raise _Short("write data item missing")
    tsize, length = data[1], int.from_bytes(data[2:4], "big")
    if tsize in (3, 4, 5):  # BIT, BYTE/WORD/DWORD, INTEGER: length in bits
        length = (length + 7) // 8
    msg.values = tuple(data[4 : 4 + min(length, 256)])


def _return_codes(msg: Msg, data: bytes, fc: int) -> None:
    codes: list[int] = []
    pos, count = 0, msg.attrs["item_count"]
    for _ in range(count):
        if pos >= len(data):
            break
        codes.append(data[pos])
        if fc == 0x05:
            pos += 1
            continue
        if pos + 4 > len(data):
            break
        tsize, length = data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big")
        if tsize in (3, 4, 5):
            length = (length + 7) // 8
        if data[pos] != 0xFF:
            length = 0
        pos += 4 + length + (length & 1)  # items are padded to even length
    msg.attrs["return_codes"] = codes
    errors = [RETURN_CODES.get(c, f"unknown-{c}") for c in codes if c != 0xFF]
    if errors:
        msg.attrs["item_errors"] = errors


def _filename(msg: Msg, param: bytes, at: int) -> None:
    if len(param) <= at:
        raise _Short("file name missing")
    name = param[at + 1 : at + 1 + param[at]].decode("latin-1")
    block_name(msg, name)


def block_name(msg: Msg, name: str) -> None:
    """Set the block attrs and ``data_area`` from a file name such as '_0800001P'."""
    msg.attrs["filename"] = name
    if len(name) == 9 and name[0] == "_" and name[3:8].isdigit():
        btype = BLOCK_TYPES.get(name[1:3].upper(), f"type_{name[1:3]}")
        msg.attrs.update(block_type=btype, block_number=int(name[3:8]), filesystem=name[8])
        msg.data_area = f"{btype}{int(name[3:8])}"
        msg.address = int(name[3:8])


def _part2(msg: Msg, rest: bytes) -> None:
    if not rest:
        return
    text = rest[1 : 1 + rest[0]].decode("latin-1")
    if len(text) == 13 and text[1:].isdigit():
        msg.attrs["load_length"], msg.attrs["mc7_length"] = int(text[1:7]), int(text[7:13])


def _block_data(msg: Msg, param: bytes, data: bytes) -> None:
    msg.attrs["more_data"] = bool(param[1] & 0x01) if len(param) > 1 else False
    if len(data) >= 2:
        msg.attrs["data_length"] = int.from_bytes(data[0:2], "big")
        msg.quantity = msg.attrs["data_length"]


def _pi_service(msg: Msg, param: bytes) -> None:
    if len(param) < 10:
        raise _Short("PI service parameters truncated")
    blen = int.from_bytes(param[8:10], "big")
    block = param[10 : 10 + blen]
    at = 10 + blen
    if at >= len(param):
        raise _Short("PI service name missing")
    service = param[at + 1 : at + 1 + param[at]].decode("latin-1")
    msg.attrs["pi_service"] = service
    params: list[str] = []
    if service in ("_INSE", "_DELE", "_INS", "_DEL") and len(block) >= 2:
        raw = block[2:].decode("latin-1")
        for k in range(min(block[0], len(raw) // 8)):
            part = raw[8 * k : 8 * k + 8]
            btype = BLOCK_TYPES.get(part[0:2].upper(), part[0:2])
            params.append(f"{btype}{int(part[2:7])}" if part[2:7].isdigit() else part)
    elif block:
        params.append(block.decode("latin-1"))
    msg.attrs["pi_params"] = params
