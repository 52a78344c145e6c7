"""SSH transport, cleartext part only (RFC 4253; TCP 22 and any port opening with 'SSH-').

Per side: one event for the identification string (``function_name`` 'banner', no code;
client banner = request, server banner = response, both ``link=False``) with the protocol
version, software version and comments; then one event for the first binary packet, the
side's SSH_MSG_KEXINIT (``function_code`` 20) with its algorithm lists and the HASSH
fingerprint (https://github.com/salesforce/hassh: MD5 of ``kex;enc;mac;comp`` of the side's
own direction — the server's is hasshServer). Everything after that is key exchange and then
encrypted traffic: consumed, not decoded. The server may send other lines before its banner
(RFC 4253 4.2); they are skipped. A client line that is not a banner, an overlong banner or a
first packet whose length cannot be right is a :class:`DecodeError`.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any, ClassVar

from collectors.apps.base import AppDecoder, DecodeError, Msg, register

FUNCTIONS: dict[int, str] = {
    1: "disconnect", 2: "ignore", 3: "unimplemented", 4: "debug", 5: "service_request",
    6: "service_accept", 7: "ext_info", 8: "newcompress", 20: "kexinit", 21: "newkeys",
    30: "kexdh_init", 31: "kexdh_reply", 32: "kex_dh_gex_init", 33: "kex_dh_gex_reply",
    34: "kex_dh_gex_request", 50: "userauth_request", 51: "userauth_failure",
    52: "userauth_success", 53: "userauth_banner", 60: "userauth_info_request",
    61: "userauth_info_response", 80: "global_request", 81: "request_success",
    82: "request_failure", 90: "channel_open", 91: "channel_open_confirmation",
    92: "channel_open_failure", 93: "channel_window_adjust", 94: "channel_data",
    95: "channel_extended_data", 96: "channel_eof", 97: "channel_close", 98: "channel_request",
    99: "channel_success", 100: "channel_failure",
}  # fmt: skip
NAME_LISTS = (
    "kex_algorithms", "server_host_key_algorithms", "encryption_c2s", "encryption_s2c",
    "mac_c2s", "mac_s2c", "compression_c2s", "compression_s2c", "languages_c2s",
    "languages_s2c",
)  # fmt: skip
MAX_LINE = 1024
MAX_PRE_LINES = 64
MAX_PACKET = 35000  # RFC 4253 6.1
MAX_LIST = 2048
BANNER, KEX, OPAQUE = range(3)
_U32 = struct.Struct(">I")


def kexinit(payload: bytes, from_client: bool) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    p = 17
    lists: list[str] = []
    for key in NAME_LISTS:
        if p + 4 > len(payload):
            attrs["malformed"] = "truncated_kexinit"
            return attrs
        (ln,) = _U32.unpack_from(payload, p)
        if p + 4 + ln > len(payload):
            attrs["malformed"] = "truncated_kexinit"
            return attrs
        value = payload[p + 4 : p + 4 + ln].decode("latin-1")
        p += 4 + ln
        lists.append(value)
        attrs[key] = value[:MAX_LIST]
    own = (2, 4, 6) if from_client else (3, 5, 7)
    hassh = ";".join([lists[0], *(lists[i] for i in own)])
    attrs["hassh"] = hashlib.md5(hassh.encode(), usedforsecurity=False).hexdigest()
    if p < len(payload):
        attrs["first_kex_follows"] = bool(payload[p])
    return attrs


class _Side:
    __slots__ = ("lines", "mode")

    def __init__(self) -> None:
        self.mode = BANNER
        self.lines = 0


@register
class Ssh(AppDecoder):
    name = "ssh"
    tcp_ports = (22,)
    FUNCTIONS: ClassVar[dict[int, str]] = FUNCTIONS
    ATTRS: ClassVar[dict[str, str]] = {
        "banner": "Identification string as sent, without CR LF (at most 255 characters).",
        "proto_version": "Protocol version of the banner ('2.0', '1.99').",
        "software": "Software version of the banner ('OpenSSH_9.2p1').",
        "comments": "Comments after the software version ('Debian-2+deb12u3').",
        "pre_banner_lines": "Server lines skipped before its banner, when any.",
        **{k: f"KEXINIT name-list {k} (comma-separated, cut at {MAX_LIST})" for k in NAME_LISTS},
        "hassh": "KEXINIT: HASSH of the sender (hasshServer for the server), MD5 hex.",
        "first_kex_follows": "KEXINIT: first_kex_packet_follows flag.",
        "malformed": "KEXINIT could not be parsed to its end: the reason.",
    }

    def __init__(self) -> None:
        self._sides = (_Side(), _Side())

    @classmethod
    def probe(cls, data: bytes, from_client: bool) -> bool:
        return data.startswith((b"SSH-2.0-", b"SSH-1.99-", b"SSH-1.5-")) and b"\n" in data[:256]

    def parse(self, buf: bytes, from_client: bool) -> tuple[int, list[Msg]]:
        side = self._sides[0 if from_client else 1]
        pos, n = 0, len(buf)
        out: list[Msg] = []
        d = "request" if from_client else "response"
        while pos < n:
            if side.mode == OPAQUE:
                return n, out
            if side.mode == BANNER:
                nl = buf.find(b"\n", pos, pos + MAX_LINE)
                if nl < 0:
                    if n - pos >= MAX_LINE:
                        raise DecodeError("banner_too_long", f"no line end in {MAX_LINE} octets")
                    break
                line = buf[pos:nl].rstrip(b"\r")
                pos = nl + 1
                if not line.startswith(b"SSH-"):
                    side.lines += 1
                    if from_client or side.lines > MAX_PRE_LINES:
                        raise DecodeError("bad_banner", repr(line[:40]))
                    continue
                out.append(self._banner(line, d, side.lines))
                side.mode = KEX
                continue
            if n - pos < 6:
                break
            (plen,) = _U32.unpack_from(buf, pos)
            pad = buf[pos + 4]
            if plen < 12 or plen > MAX_PACKET or pad >= plen:
                raise DecodeError("bad_packet_length", f"packet length {plen}, padding {pad}")
            if pos + 4 + plen > n:
                break
            payload = buf[pos + 5 : pos + 4 + plen - pad]
            pos += 4 + plen
            side.mode = OPAQUE
            code = payload[0] if payload else -1
            attrs = kexinit(payload, from_client) if code == 20 else {}
            out.append(Msg(d, function_code=code, function_name=self.fname(code), attrs=attrs,
                           link=False))  # fmt: skip
        return pos, out

    @staticmethod
    def _banner(line: bytes, d: str, skipped: int) -> Msg:
        text = line[:255].decode("latin-1")
        attrs: dict[str, Any] = {"banner": text}
        proto, _, rest = text[4:].partition("-")
        software, _, comments = rest.partition(" ")
        attrs["proto_version"] = proto
        attrs["software"] = software
        if comments:
            attrs["comments"] = comments
        if skipped:
            attrs["pre_banner_lines"] = skipped
        return Msg(d, function_name="banner", attrs=attrs, link=False)
