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
GREASE = frozenset(0x0A0A + 0x1010 * i for i in range(16))
"""The 16 GREASE values of RFC 8701 (0x0a0a, 0x1a1a … 0xfafa): what :func:`is_grease` accepts."""
_HH = struct.Struct(">HH")


def is_grease(v: int) -> bool:
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


def vname(v: int) -> str:
    return VERSIONS.get(v) or f"0x{v:04x}"


# The hellos are read with plain offsets into the body (no reader object: they are on the
# per-packet path). Every field is checked against the end of the vector that holds it; a
# field that runs past it is a DecodeError 'truncated_hello', of which only the reason is kept.


def _cut(at: int) -> DecodeError:
    return DecodeError("truncated_hello", f"field cut at octet {at}")


def _vec(b: bytes, p: int, end: int, width: int) -> int:
    """End of the vector at ``p`` (a ``width``-octet length, 1 or 2, then the data) that must
    fit before ``end``; its data starts at ``p + width``."""
    q = p + width
    if q > end:
        raise _cut(p)
    stop = q + (b[p] if width == 1 else (b[p] << 8) | b[p + 1])
    if stop > end:
        raise _cut(q)
    return stop


def _u16s(b: bytes, start: int, stop: int) -> tuple[int, ...]:
    """The 16-bit values in ``b[start:stop]`` (an odd last octet is left out)."""
    return struct.unpack_from(f">{(stop - start) >> 1}H", b, start)


def _exts(b: bytes, p: int, end: int) -> list[tuple[int, int, int]]:
    """(type, start, stop) of each extension in the block at ``p`` (none when the hello ends
    at ``p``); the extension's data is ``b[start:stop]``."""
    if p >= end:
        return []
    stop = _vec(b, p, end, 2)
    p += 2
    out = []
    while p < stop:
        if p + 4 > stop:
            raise _cut(p)
        kind, ln = _HH.unpack_from(b, p)
        p += 4
        if p + ln > stop:
            raise _cut(p)
        out.append((kind, p, p + ln))
        p += ln
    return out


def client_hello(body: bytes, attrs: dict[str, Any]) -> None:
    """Fill attrs from a ClientHello body (versions, SNI, ALPN, JA3)."""
    n = len(body)
    if n < 35:  # legacy_version, random, session id length
        raise _cut(n)
    legacy = (body[0] << 8) | body[1]
    p = _vec(body, 34, n, 1)
    attrs["session_id_len"] = p - 35
    q = _vec(body, p, n, 2)
    ciphers = _u16s(body, p + 2, q)
    p = _vec(body, q, n, 1)  # compression methods
    exts = _exts(body, p, n)
    attrs["legacy_version"] = vname(legacy)
    attrs["cipher_suites"] = len(ciphers)
    groups: list[int] = []
    points: bytes = b""
    best = legacy
    for kind, s, e in exts:
        if s == e:
            continue
        if kind == 0:  # server_name_list<2>: name_type, host_name<2>
            lst, p = _vec(body, s, e, 2), s + 2
            while p < lst:
                q = _vec(body, p + 1, lst, 2)
                if body[p] == 0:
                    attrs["sni"] = body[p + 3 : q].decode("latin-1")
                    break
                p = q
        elif kind == 16:  # protocol_name_list<2>: ProtocolName<1>
            lst, p = _vec(body, s, e, 2), s + 2
            alpn = []
            while p < lst:
                q = _vec(body, p, lst, 1)
                alpn.append(body[p + 1 : q].decode("latin-1"))
                p = q
            attrs["alpn"] = alpn
        elif kind == 43:  # versions<1>
            vs = [v for v in _u16s(body, s + 1, _vec(body, s, e, 1)) if v not in GREASE]
            attrs["supported_versions"] = [vname(v) for v in vs]
            best = max(vs, default=legacy)
        elif kind == 10:  # named_group_list<2>
            groups = [g for g in _u16s(body, s + 2, _vec(body, s, e, 2)) if g not in GREASE]
        elif kind == 11:  # ec_point_format_list<1>
            points = body[s + 1 : _vec(body, s, e, 1)]
    attrs["tls_version"] = vname(best)
    ja3 = ",".join(
        [
            str(legacy),
            "-".join([str(c) for c in ciphers if c not in GREASE]),
            "-".join([str(k) for k, _, _ in exts if k not in GREASE]),
            "-".join(map(str, groups)),
            "-".join(map(str, points)),
        ]
    )
    attrs["ja3"] = ja3
    attrs["ja3_hash"] = hashlib.md5(ja3.encode(), usedforsecurity=False).hexdigest()


def server_hello(body: bytes, attrs: dict[str, Any]) -> int:
    """Fill attrs; return the version chosen."""
    n = len(body)
    if n < 34:  # legacy_version, random
        raise _cut(n)
    legacy = (body[0] << 8) | body[1]
    if body[2:34] == HRR_RANDOM:
        attrs["hello_retry"] = True
    p = _vec(body, 34, n, 1)  # legacy_session_id_echo
    if p + 3 > n:  # cipher_suite, legacy_compression_method
        raise _cut(p)
    cipher = (body[p] << 8) | body[p + 1]
    exts = _exts(body, p + 3, n)
    chosen = legacy
    for kind, s, e in exts:
        if kind == 43 and e - s == 2:
            chosen = (body[s] << 8) | body[s + 1]
        elif kind == 16 and e - s > 3:  # protocol_name_list<2> of one ProtocolName<1>
            attrs["alpn"] = [body[s + 3 : _vec(body, s + 2, e, 1)].decode("latin-1")]
    attrs["tls_version"] = vname(chosen)
    attrs["legacy_version"] = vname(legacy)
    attrs["cipher"] = cipher
    ja3s = f"{legacy},{cipher},{'-'.join([str(k) for k, _, _ in exts])}"
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
            ln = (buf[pos + 3] << 8) | buf[pos + 4]
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
                plen = (body[1] << 8) | body[2]
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
        name = ALERTS.get(body[1]) or f"alert-{body[1]}"
        attrs = {"alert_level": body[0], "alert": name}
        return Msg(d, function_name="alert", exception_code=body[1], attrs=attrs, link=False)

    def _handshake(self, side: _Side, body: bytes, from_client: bool, out: list[Msg]) -> None:
        """Messages of one handshake record, after what ``side.hs`` holds of earlier records;
        what is left of a message that is not complete stays in ``side.hs``."""
        if side.skip:
            take = min(side.skip, len(body))
            side.skip -= take
            body = body[take:]
            if not side.skip:
                out.append(self._msg(side.skip_type, None, from_client))
        hs = side.hs
        if hs:  # a message continued from an earlier record
            hs += body
            body = bytes(hs)
            hs.clear()
        pos, n = 0, len(body)
        while n - pos >= 4 and not side.encrypted:
            htype = body[pos]
            hlen = (body[pos + 1] << 16) | (body[pos + 2] << 8) | body[pos + 3]
            if pos + 4 + hlen > n:
                if hlen > MAX_HANDSHAKE:
                    side.skip, side.skip_type = pos + 4 + hlen - n, htype
                    pos = n
                break
            msg = self._msg(htype, bytes(body[pos + 4 : pos + 4 + hlen]), from_client)
            pos += 4 + hlen
            out.append(msg)
            tls13 = htype == 2 and msg.attrs.get("tls_version") == "TLS 1.3"
            if tls13 and not msg.attrs.get("hello_retry"):
                side.encrypted = True  # the rest of the server's flight is encrypted
        if pos < n and not side.encrypted:
            hs += body[pos:]

    def _msg(self, htype: int, body: bytes | None, from_client: bool) -> Msg:
        attrs: dict[str, Any] = {}
        d = "request" if from_client else "response"
        link = htype == 1 or htype == 2
        if body is None:
            attrs["too_long"] = True
        elif link:
            try:
                (client_hello if htype == 1 else server_hello)(body, attrs)
            except DecodeError as exc:
                attrs["malformed"] = exc.reason
            d = "request" if htype == 1 else "response"
        name = FUNCTIONS.get(htype) or f"unknown-{htype}"  # self.fname, without its f-string
        return Msg(d, function_code=htype, function_name=name, attrs=attrs, link=link)
