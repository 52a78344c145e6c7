"""EtherNet/IP encapsulation and CIP explicit messages (TCP/UDP 44818), CIP I/O (UDP 2222).

Spec: ODVA *The CIP Networks Library* Vol. 1 (CIP: message router request/response, EPATH,
Connection Manager) and Vol. 2 (EtherNet/IP: 24-octet encapsulation header, common packet
format items); Logix tag services from Rockwell 1756-PM020.

Events:

- A **CIP message** (in SendRRData's unconnected data item or SendUnitData's connected data
  item) gives an event with ``function_code`` = CIP service without the 0x80 reply bit
  (reply bit set -> ``response``, else ``request``), ``data_area`` = the request path
  ('class 0x04, instance 100, attribute 3', or 'symbol Tag.Member' for a Logix tag path), and
  for a reply ``exception_code`` = general status when non-zero. ``function_name``: the
  common service name (``FUNCTIONS``), else the object-specific name of the addressed class
  (Connection Manager 0x52 'unconnected_send', 0x54 'forward_open' …, File object, PCCC) or a
  Logix tag service for a symbolic path; a reply takes the name of its request.
- **Embedded messages** get their own events (``attrs['embedded']`` True), after the event of
  the carrier, in order, as tshark lists them in ``cip.sc``: the request inside an Unconnected
  Send (0x52 to the Connection Manager; its reply is the embedded service's reply, so the
  embedded request carries the match key and the 0x52 carrier event ``link=False``), and each
  service of a Multiple Service Packet (0x0a) request and reply (matched by position).
- An encapsulation command without CIP (ListIdentity, ListServices, RegisterSession, …) gives
  one event with ``function_code`` None and ``function_name`` = the command name
  ('list_identity' …); a non-zero encapsulation status is its ``exception_code``. ListIdentity
  replies put the identity (vendor, product name, revision, serial …) in attrs.
- UDP 2222 CIP I/O (class 0/1 implicit data): one event 'io_data' per datagram, ``link=False``.

Matching: SendRRData by the encapsulation sender context, SendUnitData by the connected data
sequence count, other commands by (command, sender context). Direction of encapsulation-only
messages: from the connection's client = request.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable
from typing import Any, ClassVar

from collectors.apps.base import AppDecoder, DecodeError, Msg, register
from collectors.apps.cip_tables import (
    CLASSES,
    COMMANDS,
    CPF_ITEMS,
    ENCAP_STATUS,
    GENERAL_STATUS,
    OBJECT_SERVICES,
    SERVICES,
    TAG_SERVICES,
    VENDORS,
)

_HDR = struct.Struct("<HHII8sI")
_HH = struct.Struct("<HH")
_IDENT = struct.Struct("<HHHBBHI")
LOGICAL = {0: "class", 1: "instance", 2: "member", 3: "connection_point", 4: "attribute"}
WRITES = frozenset((0x02, 0x04, 0x10, 0x19, 0x4D, 0x4E, 0x53))
MAX_DEPTH = 2
MAX_NAMES = 4096


def _epath(path: bytes) -> dict[str, Any]:
    """Logical segments (first of each kind), symbols and route ports of a padded EPATH."""
    out: dict[str, Any] = {}
    i, n = 0, len(path)
    while i < n:
        b = path[i]
        kind = b & 0xE0
        if kind == 0x00:  # port segment
            port, j = b & 0x0F, i + 1
            if port == 0x0F:
                port, j = int.from_bytes(path[j : j + 2], "little"), j + 2
            if b & 0x10:
                size = path[j] if j < n else 0
                link: Any = path[j + 1 : j + 1 + size].decode("latin-1")
                j += 1 + size
            else:
                link, j = (path[j] if j < n else None), j + 1
            out.setdefault("route", []).append([port, link])
            i = j + ((j - i) & 1)
        elif kind == 0x20:
            ltype, fmt = b >> 2 & 7, b & 3
            if ltype == 5 and fmt == 0 and i + 1 < n and path[i + 1] == 4:
                i += 10  # electronic key
                continue
            if fmt == 3 or ltype not in LOGICAL:
                break
            size = (1, 2, 4)[fmt]
            at = i + (1 if fmt == 0 else 2)
            if at + size > n:
                out["truncated"] = True
                break
            out.setdefault(LOGICAL[ltype], int.from_bytes(path[at : at + size], "little"))
            i = at + size
        elif kind == 0x40:  # network segment
            i += 2 + (2 * path[i + 1] if b & 0x10 and i + 1 < n else 0)
        elif b == 0x91:  # ANSI extended symbol
            size = path[i + 1] if i + 1 < n else 0
            out.setdefault("symbol", []).append(path[i + 2 : i + 2 + size].decode("latin-1"))
            i += 2 + size + (size & 1)
        elif kind == 0x60:  # symbolic segment
            size = b & 0x1F
            out.setdefault("symbol", []).append(path[i + 1 : i + 1 + size].decode("latin-1"))
            i += 1 + size + ((1 + size) & 1)
        elif b == 0x80:  # simple data segment
            i += 2 + 2 * (path[i + 1] if i + 1 < n else 0)
        else:
            break
    return out


def _area(seg: dict[str, Any]) -> str | None:
    if "symbol" in seg:
        return "symbol " + ".".join(seg["symbol"])
    parts = []
    if "class" in seg:
        parts.append(f"class 0x{seg['class']:02x}")
    for key in ("instance", "attribute", "member", "connection_point"):
        if key in seg:
            parts.append(f"{key} {seg[key]}")
    return ", ".join(parts) or None


def _cpf(data: bytes, at: int) -> list[tuple[int, bytes]]:
    """Common packet format items from ``at``: [(type id, data)]."""
    if len(data) < at + 2:
        raise DecodeError("short_cpf", f"{len(data)} octets")
    count, pos, items = int.from_bytes(data[at : at + 2], "little"), at + 2, []
    for _ in range(count):
        if pos + 4 > len(data):
            raise DecodeError("short_cpf_item", f"item at {pos} of {len(data)} octets")
        kind, size = _HH.unpack_from(data, pos)
        items.append((kind, data[pos + 4 : pos + 4 + size]))
        pos += 4 + size
    return items


@register
class EnipDecoder(AppDecoder):
    name = "enip"
    tcp_ports = (44818,)
    udp_ports = (44818, 2222)
    FUNCTIONS: ClassVar[dict[int, str]] = SERVICES
    ATTRS: ClassVar[dict[str, str]] = {
        "command": "Encapsulation command (0x63 ListIdentity, 0x6f SendRRData, 0x70 SendUnitData).",
        "command_name": "Name of the encapsulation command.",
        "session": "Encapsulation session handle.",
        "encap_status": "Non-zero encapsulation status (0x64 invalid session handle …).",
        "encap_status_name": "Name of the encapsulation status.",
        "connection_id": "Connection id of a connected (SendUnitData / I/O) message.",
        "sequence": "Connected data sequence count / I/O sequence number.",
        "class": "CIP class id of the request path.",
        "class_name": "Name of the CIP class, where published.",
        "instance": "CIP instance id of the request path.",
        "attribute": "CIP attribute id of the request path.",
        "member": "CIP member id (Logix array element) of the request path.",
        "symbol": "Logix tag name of a symbolic request path (members joined by '.').",
        "route": "Unconnected Send route path: [[port, link address], …].",
        "embedded": "True for a message inside an Unconnected Send or Multiple Service Packet.",
        "via": "Carrier of an embedded message: 'unconnected_send' / 'multiple_service_packet'.",
        "general_status": "CIP general status of a reply.",
        "status_name": "Name of the general status.",
        "extended_status": "Additional status words of a reply.",
        "data_len": "Octets of request / reply data after the path / status.",
        "vendor_id": "ListIdentity: vendor id.",
        "vendor": "ListIdentity: vendor name, where known.",
        "device_type": "ListIdentity: device type.",
        "product_code": "ListIdentity: product code.",
        "revision": "ListIdentity: revision 'major.minor'.",
        "serial": "ListIdentity: serial number.",
        "product_name": "ListIdentity: product name.",
        "device_ip": "ListIdentity: IP address in the identity's socket address.",
        "device_state": "ListIdentity: state octet.",
        "services": "ListServices reply: names of the services offered.",
        "protocol_version": "RegisterSession: encapsulation protocol version.",
        "io_bytes": "UDP I/O: octets of connected data.",
        "malformed": "What is wrong with a message too short or inconsistent for its type.",
    }

    def __init__(self) -> None:
        self._names: dict[Hashable, str] = {}

    @classmethod
    def probe(cls, data: bytes, from_client: bool) -> bool:
        if len(data) < 24:
            return False
        cmd, length, _session, status, _ctx, options = _HDR.unpack_from(data)
        if cmd not in COMMANDS or options != 0 or (status and from_client):
            return False
        return len(data) >= 24 + length

    def parse(self, buf: bytes, from_client: bool) -> tuple[int, list[Msg]]:
        pos, n = 0, len(buf)
        msgs: list[Msg] = []
        while n - pos >= 24:
            cmd, length, session, status, ctx, _opt = _HDR.unpack_from(buf, pos)
            if cmd not in COMMANDS:
                if msgs:
                    break
                raise DecodeError("unknown_command", f"encapsulation command 0x{cmd:04x}")
            end = pos + 24 + length
            if end > n:
                break
            try:
                got = self._encap(cmd, session, status, ctx, buf[pos + 24 : end], from_client)
            except DecodeError:
                if msgs:
                    break
                raise
            msgs.extend(got)
            pos = end
        return pos, msgs

    def datagram(self, data: bytes, from_client: bool) -> list[Msg]:
        if len(data) >= 6 and data[0:2] not in (b"\x63\x00", b"\x04\x00", b"\x64\x00"):
            count, first = _HH.unpack_from(data)
            if 1 <= count <= 8 and first in (0x8002, 0x00A1, 0x0000):
                return [self._io(data, from_client)]
        used, msgs = self.parse(data, from_client)
        if used != len(data):
            raise DecodeError("bad_datagram", f"{used} of {len(data)} octets are encapsulation")
        return msgs

    # -- encapsulation ---------------------------------------------------------------------
    def _encap(
        self, cmd: int, session: int, status: int, ctx: bytes, data: bytes, from_client: bool
    ) -> list[Msg]:
        attrs: dict[str, Any] = {
            "command": cmd,
            "command_name": COMMANDS[cmd],
            "session": session,
        }
        if status:
            attrs["encap_status"] = status
            attrs["encap_status_name"] = ENCAP_STATUS.get(status, f"unknown-{status}")
        context = int.from_bytes(ctx, "little")
        if cmd in (0x6F, 0x70) and len(data) >= 8:
            items = _cpf(data, 6)
            cip, key = None, None
            for kind, item in items:
                if kind == 0x00A1 and len(item) >= 4:
                    attrs["connection_id"] = int.from_bytes(item[:4], "little")
                elif kind == 0x00B1 and len(item) >= 2:
                    attrs["sequence"] = seq = int.from_bytes(item[:2], "little")
                    cip, key = item[2:], ("c", seq)
                elif kind == 0x00B2:
                    cip, key = item, ("u", context)
            if cip:
                return self._cip(cip, key, attrs, 0)
        direction = "request" if from_client else "response"
        if not from_client:
            self._identity(cmd, data, attrs)
        elif cmd == 0x0065 and len(data) >= 2:
            attrs["protocol_version"] = int.from_bytes(data[:2], "little")
        link = cmd not in (0x0000, 0x0066)
        return [
            Msg(
                direction,
                None,
                COMMANDS[cmd],
                exception_code=status or None,
                attrs=attrs,
                match=("e", cmd, context),
                link=link,
            )
        ]

    @staticmethod
    def _identity(cmd: int, data: bytes, attrs: dict[str, Any]) -> None:
        """Reply details of ListIdentity / ListServices / RegisterSession."""
        if cmd == 0x0065 and len(data) >= 2:
            attrs["protocol_version"] = int.from_bytes(data[:2], "little")
            return
        if cmd not in (0x0063, 0x0004) or len(data) < 2:
            return
        for kind, item in _cpf(data, 0):
            if kind == 0x0100 and len(item) >= 20:
                name = item[4:20].split(b"\x00", 1)[0].decode("latin-1")
                attrs.setdefault("services", []).append(name)
            elif kind == 0x000C and len(item) >= 33:
                vendor, dtype, product, major, minor, state, serial = _IDENT.unpack_from(item, 18)
                size = item[32]
                attrs.update(
                    vendor_id=vendor,
                    device_type=dtype,
                    product_code=product,
                    revision=f"{major}.{minor}",
                    serial=serial,
                    product_name=item[33 : 33 + size].decode("latin-1"),
                    device_ip=".".join(str(x) for x in item[6:10]),
                )
                if vendor in VENDORS:
                    attrs["vendor"] = VENDORS[vendor]
                if len(item) > 33 + size:
                    attrs["device_state"] = item[33 + size]
                del state

    def _io(self, data: bytes, from_client: bool) -> Msg:
        attrs: dict[str, Any] = {}
        for kind, item in _cpf(data, 0):
            if kind == 0x8002 and len(item) >= 8:
                attrs["connection_id"] = int.from_bytes(item[:4], "little")
                attrs["sequence"] = int.from_bytes(item[4:8], "little")
            elif kind == 0x00B1:
                attrs["io_bytes"] = len(item)
            elif kind not in CPF_ITEMS:
                raise DecodeError("unknown_cpf_item", f"item type 0x{kind:04x} in I/O datagram")
        direction = "request" if from_client else "response"
        return Msg(direction, None, "io_data", attrs=attrs, link=False)

    # -- CIP ---------------------------------------------------------------------------------
    def _remember(self, key: Hashable, name: str) -> None:
        if len(self._names) >= MAX_NAMES:
            self._names.clear()
        self._names[key] = name

    def _cip(self, data: bytes, key: Hashable, base: dict[str, Any], depth: int) -> list[Msg]:
        attrs = dict(base)
        sc = data[0]
        service = sc & 0x7F
        if sc & 0x80:
            return self._reply(data, service, key, attrs, depth)
        words = data[1] if len(data) > 1 else 0
        body_at = 2 + 2 * words
        if len(data) < body_at:
            attrs["malformed"] = f"path of {words} words in {len(data)} octets"
            return [Msg("request", service, self.fname(service), attrs=attrs, match=key)]
        seg = _epath(data[2:body_at])
        body = data[body_at:]
        cls = seg.get("class")
        for k in ("class", "instance", "attribute", "member", "route"):
            if k in seg:
                attrs[k] = seg[k]
        if cls is not None and cls in CLASSES:
            attrs["class_name"] = CLASSES[cls]
        if "symbol" in seg:
            attrs["symbol"] = ".".join(seg["symbol"])
            name = TAG_SERVICES.get(service) or self.fname(service)
        else:
            name = OBJECT_SERVICES.get((cls or 0, service)) or self.fname(service)
        attrs["data_len"] = len(body)
        values = (body[:64].hex(),) if service in WRITES and body else None
        area = _area(seg)
        if name == "unconnected_send" and depth < MAX_DEPTH and len(body) >= 4:
            size = int.from_bytes(body[2:4], "little")
            inner = body[4 : 4 + size]
            after = 4 + size + (size & 1)
            if len(body) >= after + 2:
                attrs["route"] = _epath(body[after + 2 : after + 2 + 2 * body[after]]).get(
                    "route", []
                )
            outer = Msg("request", service, name, data_area=area, attrs=attrs, link=False)
            if not inner:
                return [outer]
            sub = {**base, "embedded": True, "via": "unconnected_send"}
            return [outer, *self._cip(inner, key, sub, depth + 1)]
        self._remember(key, name)
        out = [Msg("request", service, name, data_area=area, values=values, attrs=attrs, match=key)]
        if service == 0x0A and depth < MAX_DEPTH:
            out += self._multiple(body, key, base, depth)
        return out

    def _reply(
        self, data: bytes, service: int, key: Hashable, attrs: dict[str, Any], depth: int
    ) -> list[Msg]:
        name = self._names.pop(key, None) or self.fname(service)
        if len(data) < 4:
            attrs["malformed"] = f"reply of {len(data)} octets, header needs 4"
            return [Msg("response", service, name, attrs=attrs, match=key)]
        status, ext = data[2], data[3]
        attrs["general_status"] = status
        attrs["status_name"] = GENERAL_STATUS.get(status, f"unknown-{status}")
        if ext:
            raw = data[4 : 4 + 2 * ext]
            attrs["extended_status"] = [
                int.from_bytes(raw[k : k + 2], "little") for k in range(0, len(raw) - 1, 2)
            ]
        body = data[4 + 2 * ext :]
        attrs["data_len"] = len(body)
        out = [
            Msg("response", service, name, exception_code=status or None, attrs=attrs, match=key)
        ]
        if service == 0x0A and depth < MAX_DEPTH and status in (0x00, 0x1E):
            keep = ("command", "command_name", "session", "connection_id", "sequence")
            base: dict[str, Any] = {k: attrs[k] for k in keep if k in attrs}
            out += self._multiple(body, key, base, depth)
        return out

    def _multiple(self, body: bytes, key: Hashable, base: dict[str, Any], depth: int) -> list[Msg]:
        """The services of a Multiple Service Packet request or reply body."""
        if len(body) < 2:
            return []
        count = int.from_bytes(body[:2], "little")
        if len(body) < 2 + 2 * count:
            return []
        offs = struct.unpack_from(f"<{count}H", body, 2)
        sub = {**base, "embedded": True, "via": "multiple_service_packet"}
        out: list[Msg] = []
        for i, off in enumerate(offs):
            end = offs[i + 1] if i + 1 < count else len(body)
            part = body[off:end]
            if part:
                out += self._cip(part, (key, i), sub, depth + 1)
        return out
