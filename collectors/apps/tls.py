"""TLS 1.0–1.3 record and handshake layer (RFC 5246, RFC 8446; TCP 443, 8443 and any
port whose first bytes are a handshake record carrying a hello).

One event per cleartext handshake message: ``function_code`` = HandshakeType, ``function_name``
from ``FUNCTIONS``. Records are reassembled across segments and handshake messages across
records; several messages in one record give several events. ClientHello: versions, SNI, ALPN
and the JA3 fingerprint (https://github.com/salesforce/ja3: ``SSLVersion,Ciphers,Extensions,
EllipticCurves,EllipticCurvePointFormats``, decimal values joined by '-', GREASE values
(RFC 8701) left out; ``ja3_hash`` its MD5). ServerHello: the version and cipher chosen and
JA3S (``SSLVersion,Cipher,Extensions``). Alerts are events with ``function_name`` 'alert',
``function_code`` None and ``exception_code`` = AlertDescription; heartbeat records (RFC 6520)
are events 'heartbeat' with ``attrs['heartbeat_overlong']`` when the claimed payload does not
fit the record (Heartbleed).

After a side's ChangeCipherSpec or first application-data record (and, for TLS 1.3, after
the ServerHello) that side is encrypted: records are still framed (bad framing is a
:class:`DecodeError`) but not decoded, except that an encrypted alert is reported as such.
ClientHello and ServerHello are a request/response pair; all other messages answer nothing.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any, ClassVar

from collectors.apps.base import AppDecoder, DecodeError, Msg, register

FUNCTIONS: dict[int, str] = {
    0: "hello_request", 1: "client_hello", 2: "server_hello", 3: "hello_verify_request",
    4: "new_session_ticket", 5: "end_of_early_data", 6: "hello_retry_request",
    8: "encrypted_extensions", 11: "certificate", 12: "server_key_exchange",
    13: "certificate_request", 14: "server_hello_done", 15: "certificate_verify",
    16: "client_key_exchange", 20: "finished", 21: "certificate_url", 22: "certificate_status",
    23: "supplemental_data", 24: "key_update", 25: "compressed_certificate", 254: "message_hash",
}  # fmt: skip
ALERTS: dict[int, str] = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 21: "decryption_failed",
    22: "record_overflow", 30: "decompression_failure", 40: "handshake_failure",
    41: "no_certificate", 42: "bad_certificate", 43: "unsupported_certificate",
    44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown",
    47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied", 50: "decode_error",
    51: "decrypt_error", 60: "export_restriction", 70: "protocol_version",
    71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback",
    90: "user_canceled", 100: "no_renegotiation", 109: "missing_extension",
    110: "unsupported_extension", 111: "certificate_unobtainable", 112: "unrecognized_name",
    113: "bad_certificate_status_response", 114: "bad_certificate_hash_value",
    115: "unknown_psk_identity", 116: "certificate_required", 120: "no_application_protocol",
}  # fmt: skip
VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2",
            0x0304: "TLS 1.3"}  # fmt: skip
MAX_RECORD = 16384 + 2048
MAX_HANDSHAKE = 64 * 1024
"""Handshake messages longer than this are skipped (event without details), not buffered."""
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
_H = struct.Struct(">H")


def is_grease(v: int) -> bool:
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


def vname(v: int) -> str:
    return VERSIONS.get(v, f"0x{v:04x}")


class _R:
    """Bounds-checked reader over one handshake body."""

    __slots__ = ("b", "end", "p")

    def __init__(self, b: bytes, p: int = 0, end: int | None = None) -> None:
        self.b, self.p, self.end = b, p, len(b) if end is None else end

    def take(self, n: int) -> bytes:
        if self.p + n > self.end:
            raise DecodeError("truncated_hello", f"{n} octets wanted at {self.p}")
        self.p += n
        return self.b[self.p - n : self.p]

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def vec(self, width: int) -> bytes:
        return self.take(int.from_bytes(self.take(width), "big"))


def _u16s(b: bytes) -> list[int]:
    return [v for (v,) in _H.iter_unpack(b[: len(b) & ~1])]


def _exts(r: _R) -> list[tuple[int, bytes]]:
    if r.p >= r.end:
        return []
    e = _R(r.vec(2))
    out = []
    while e.p < e.end:
        kind = e.u16()
        out.append((kind, e.vec(2)))
    return out


def client_hello(body: bytes, attrs: dict[str, Any]) -> None:
    r = _R(body)
    legacy = r.u16()
    r.take(32)
    attrs["session_id_len"] = len(r.vec(1))
    ciphers = _u16s(r.vec(2))
    r.vec(1)  # compression methods
    exts = _exts(r)
    attrs["legacy_version"] = vname(legacy)
    attrs["cipher_suites"] = len(ciphers)
    groups: list[int] = []
    points: bytes = b""
    best = legacy
    for kind, data in exts:
        x = _R(data)
        if kind == 0 and data:
            names = _R(x.vec(2))
            while names.p < names.end:
                ntype, name = names.u8(), names.vec(2)
                if ntype == 0:
                    attrs["sni"] = name.decode("latin-1")
                    break
        elif kind == 16 and data:
            lst, alpn = _R(x.vec(2)), []
            while lst.p < lst.end:
                alpn.append(lst.vec(1).decode("latin-1"))
            attrs["alpn"] = alpn
        elif kind == 43 and data:
            vs = [v for v in _u16s(x.vec(1)) if not is_grease(v)]
            attrs["supported_versions"] = [vname(v) for v in vs]
            best = max(vs, default=legacy)
        elif kind == 10 and data:
            groups = [g for g in _u16s(x.vec(2)) if not is_grease(g)]
        elif kind == 11 and data:
            points = x.vec(1)
    attrs["tls_version"] = vname(best)
    ja3 = ",".join(
        [
            str(legacy),
            "-".join(str(c) for c in ciphers if not is_grease(c)),
            "-".join(str(k) for k, _ in exts if not is_grease(k)),
            "-".join(str(g) for g in groups),
            "-".join(str(p) for p in points),
        ]
    )
    attrs["ja3"] = ja3
    attrs["ja3_hash"] = hashlib.md5(ja3.encode(), usedforsecurity=False).hexdigest()


def server_hello(body: bytes, attrs: dict[str, Any]) -> int:
    """Fill attrs; return the version chosen."""
    r = _R(body)
    legacy = r.u16()
    if r.take(32) == HRR_RANDOM:
        attrs["hello_retry"] = True
    r.vec(1)
    cipher = r.u16()
    r.u8()
    exts = _exts(r)
    chosen = legacy
    for kind, data in exts:
        if kind == 43 and len(data) == 2:
            chosen = _H.unpack(data)[0]
        elif kind == 16 and len(data) > 3:
            attrs["alpn"] = [_R(data, 2).vec(1).decode("latin-1")]
    attrs["tls_version"] = vname(chosen)
    attrs["legacy_version"] = vname(legacy)
    attrs["cipher"] = cipher
    ja3s = f"{legacy},{cipher},{'-'.join(str(k) for k, _ in exts)}"
    attrs["ja3s"] = ja3s
    attrs["ja3s_hash"] = hashlib.md5(ja3s.encode(), usedforsecurity=False).hexdigest()
    return chosen


class _Side:
    __slots__ = ("encrypted", "hs", "skip", "skip_type")

    def __init__(self) -> None:
        self.hs = bytearray()
        self.encrypted = False
        self.skip = 0
        self.skip_type = 0


@register
class Tls(AppDecoder):
    name = "tls"
    tcp_ports = (443, 8443)  # 8883 (MQTT over TLS) is bound to mqtt in collectors/services.py
    FUNCTIONS: ClassVar[dict[int, str]] = FUNCTIONS
    ATTRS: ClassVar[dict[str, str]] = {
        "tls_version": "ClientHello: highest version offered (supported_versions, else legacy); "
        "ServerHello: version chosen. 'TLS 1.2', 'TLS 1.3' …",
        "legacy_version": "The hello's legacy_version field ('TLS 1.2' …).",
        "supported_versions": "ClientHello: supported_versions extension, GREASE left out.",
        "sni": "ClientHello: server_name (host_name) — copied to the flow record.",
        "alpn": "ALPN protocols offered (ClientHello) or chosen (ServerHello), list of str.",
        "cipher_suites": "ClientHello: number of cipher suites offered (GREASE included).",
        "session_id_len": "ClientHello: length of the legacy session id (resumption attempt).",
        "ja3": "ClientHello: JA3 string.",
        "ja3_hash": "ClientHello: MD5 of the JA3 string (hex).",
        "cipher": "ServerHello: cipher suite chosen (int, e.g. 4865 = 0x1301).",
        "ja3s": "ServerHello: JA3S string.",
        "ja3s_hash": "ServerHello: MD5 of the JA3S string (hex).",
        "hello_retry": "ServerHello is a TLS 1.3 HelloRetryRequest.",
        "too_long": "Message longer than MAX_HANDSHAKE: skipped, no other details.",
        "alert_level": "Alert: 1 warning, 2 fatal.",
        "alert": "Alert: description name ('handshake_failure' …).",
        "encrypted": "Alert sent after ChangeCipherSpec: level and description unreadable.",
        "heartbeat_type": "Heartbeat: 1 request, 2 response.",
        "heartbeat_length": "Heartbeat: payload_length claimed.",
        "heartbeat_overlong": "Heartbeat: claimed payload longer than the record can hold.",
        "malformed": "Hello body could not be parsed to its end: the reason.",
    }

    def __init__(self) -> None:
        self._sides = (_Side(), _Side())

    @classmethod
    def probe(cls, data: bytes, from_client: bool) -> bool:
        if len(data) < 11 or data[0] != 0x16 or data[1] != 3 or data[2] > 4:
            return False
        ln = int.from_bytes(data[3:5], "big")
        return 4 <= ln <= MAX_RECORD and data[5] in (1, 2) and data[9] == 3 and data[10] <= 4

    def parse(self, buf: bytes, from_client: bool) -> tuple[int, list[Msg]]:
        side = self._sides[0 if from_client else 1]
        pos, n = 0, len(buf)
        out: list[Msg] = []
        while pos + 5 <= n:
            ctype, major, minor = buf[pos], buf[pos + 1], buf[pos + 2]
            if not 20 <= ctype <= 25:
                raise DecodeError("bad_record_type", f"content type {ctype}")
            if major != 3 or minor > 4:
                raise DecodeError("bad_record_version", f"version {major}.{minor}")
            ln = int.from_bytes(buf[pos + 3 : pos + 5], "big")
            if ln > MAX_RECORD:
                raise DecodeError("record_too_long", f"record of {ln} octets")
            if pos + 5 + ln > n:
                break
            body = buf[pos + 5 : pos + 5 + ln]
            pos += 5 + ln
            if ctype == 22 and not side.encrypted:
                self._handshake(side, body, from_client, out)
            elif ctype == 20 or ctype == 23:
                side.encrypted = True
            elif ctype == 21:
                out.append(self._alert(side, body, from_client))
            elif ctype == 24 and not side.encrypted and ln >= 3:
                plen = int.from_bytes(body[1:3], "big")
                attrs = {"heartbeat_type": body[0], "heartbeat_length": plen}
                if 3 + plen + 16 > ln:
                    attrs["heartbeat_overlong"] = True
                d = "request" if body[0] == 1 else "response"
                out.append(Msg(d, function_name="heartbeat", attrs=attrs, link=False))
        return pos, out

    @staticmethod
    def _alert(side: _Side, body: bytes, from_client: bool) -> Msg:
        d = "request" if from_client else "response"
        if side.encrypted or len(body) != 2:
            return Msg(d, function_name="alert", attrs={"encrypted": True}, link=False)
        attrs = {"alert_level": body[0], "alert": ALERTS.get(body[1], f"alert-{body[1]}")}
        return Msg(d, function_name="alert", exception_code=body[1], attrs=attrs, link=False)

    def _handshake(self, side: _Side, body: bytes, from_client: bool, out: list[Msg]) -> None:
        if side.skip:
            take = min(side.skip, len(body))
            side.skip -= take
            body = body[take:]
            if not side.skip:
                out.append(self._msg(side.skip_type, None, from_client))
        hs = side.hs
        hs += body
        while len(hs) >= 4 and not side.encrypted:
            htype = hs[0]
            hlen = int.from_bytes(hs[1:4], "big")
            if 4 + hlen > len(hs):
                if hlen > MAX_HANDSHAKE:
                    side.skip, side.skip_type = 4 + hlen - len(hs), htype
                    hs.clear()
                break
            msg = self._msg(htype, bytes(hs[4 : 4 + hlen]), from_client)
            del hs[: 4 + hlen]
            out.append(msg)
            tls13 = htype == 2 and msg.attrs.get("tls_version") == "TLS 1.3"
            if tls13 and not msg.attrs.get("hello_retry"):
                side.encrypted = True  # the rest of the server's flight is encrypted
        if side.encrypted:
            hs.clear()

    def _msg(self, htype: int, body: bytes | None, from_client: bool) -> Msg:
        attrs: dict[str, Any] = {}
        d = "request" if from_client else "response"
        link = htype in (1, 2)
        if body is None:
            attrs["too_long"] = True
        elif htype == 1 or htype == 2:
            try:
                (client_hello if htype == 1 else server_hello)(body, attrs)
            except DecodeError as exc:
                attrs["malformed"] = exc.reason
            d = "request" if htype == 1 else "response"
        return Msg(d, function_code=htype, function_name=self.fname(htype), attrs=attrs, link=link)
