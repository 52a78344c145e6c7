"""DNP3 object headers: :func:`parse_objects` walks the object headers of an application
fragment and picks CROB (g12v1), analog output (g41) and file (g70) data for
:mod:`collectors.apps.dnp3`; no decoder is registered here.
"""

from __future__ import annotations

import struct

from collectors.apps.dnp3_tables import NO_DATA, SIZES

MAX_OBJECTS = 16
"""Object headers recorded in ``attrs['objects']`` (all are counted in ``object_count``)."""
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
