"""OPC UA binary encoding (OPC 10000-6 §5.2): the reader the OPC UA decoder parses bodies with.

Built-ins (integers, floats, String, ByteString, Guid, NodeId / ExpandedNodeId, QualifiedName,
LocalizedText, ExtensionObject headers, DiagnosticInfo) and the scalar value of a DataValue.
A read past the end raises :class:`Short`: the body is incomplete or not decoded further.
"""

from __future__ import annotations

import struct
from typing import Any


class Short(Exception):
    """The body ends before the field being read."""


_SCALARS: dict[int, struct.Struct] = {
    1: struct.Struct("<?"), 2: struct.Struct("<b"), 3: struct.Struct("<B"),
    4: struct.Struct("<h"), 5: struct.Struct("<H"), 6: struct.Struct("<i"),
    7: struct.Struct("<I"), 8: struct.Struct("<q"), 9: struct.Struct("<Q"),
    10: struct.Struct("<f"), 11: struct.Struct("<d"), 13: struct.Struct("<q"),
}  # fmt: skip
_U16, _U32, _I32 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<i")


class Reader:
    """Cursor over an OPC UA binary encoded body; raises :class:`Short` past its end."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def _take(self, n: int) -> int:
        at = self.pos
        if n < 0 or at + n > len(self.data):
            raise Short
        self.pos = at + n
        return at

    def skip(self, n: int) -> None:
        self._take(n)

    def u8(self) -> int:
        return self.data[self._take(1)]

    def u16(self) -> int:
        return int(_U16.unpack_from(self.data, self._take(2))[0])

    def u32(self) -> int:
        return int(_U32.unpack_from(self.data, self._take(4))[0])

    def i32(self) -> int:
        return int(_I32.unpack_from(self.data, self._take(4))[0])

    def bytestring(self) -> bytes | None:
        n = self.i32()
        if n < 0:
            return None
        at = self._take(n)
        return self.data[at : at + n]

    def string(self) -> str | None:
        raw = self.bytestring()
        return None if raw is None else raw.decode("utf-8", "replace")

    def array(self, item: Any) -> list[Any]:
        n = self.i32()
        if n > len(self.data) - self.pos:
            raise Short
        return [item() for _ in range(max(n, 0))]

    def nodeid(self) -> str:
        """A NodeId (or ExpandedNodeId) as text: 'i=85', 'ns=2;s=Tag', 'ns=1;g=…', 'ns=1;b=…'."""
        enc = self.u8()
        kind = enc & 0x3F
        if kind == 0:
            ns, ident = 0, f"i={self.u8()}"
        elif kind == 1:
            ns = self.u8()
            ident = f"i={self.u16()}"
        else:
            ns = self.u16()
            if kind == 2:
                ident = f"i={self.u32()}"
            elif kind == 3:
                ident = f"s={self.string()}"
            elif kind == 4:
                at = self._take(16)
                ident = "g=" + self.data[at : at + 16].hex()
            elif kind == 5:
                ident = "b=" + (self.bytestring() or b"").hex()
            else:
                raise Short
        if enc & 0x80:
            self.string()
        if enc & 0x40:
            self.u32()
        return f"ns={ns};{ident}" if ns else ident

    def nodeid_numeric(self) -> int | None:
        text = self.nodeid()
        return int(text[2:]) if text.startswith("i=") else None

    def extension(self) -> None:
        self.nodeid()
        if self.u8() & 3:
            self.bytestring()

    def localized(self) -> None:
        mask = self.u8()
        if mask & 1:
            self.string()
        if mask & 2:
            self.string()

    def diagnostic(self) -> None:
        mask = self.u8()
        self.skip(4 * bin(mask & 0x0F).count("1"))
        if mask & 0x10:
            self.string()
        if mask & 0x20:
            self.u32()
        if mask & 0x40:
            self.diagnostic()


def read_datavalue(r: Reader) -> Any:
    """The scalar value of a DataValue (None for arrays and structured values: stop there)."""
    mask = r.u8()
    value: Any = None
    if mask & 1:
        enc = r.u8()
        kind = enc & 0x3F
        if enc & 0xC0 or (kind not in _SCALARS and kind not in (12, 15)):
            raise Short  # array or structure: not decoded further
        if kind == 12:
            value = r.string()
        elif kind == 15:
            raw = r.bytestring()
            value = None if raw is None else raw.hex()
        else:
            fmt = _SCALARS[kind]
            value = fmt.unpack_from(r.data, r._take(fmt.size))[0]
    if mask & 2:
        r.u32()
    r.skip(8 * bin(mask & 0x0C).count("1") + 2 * bin(mask & 0x30).count("1"))
    return value
