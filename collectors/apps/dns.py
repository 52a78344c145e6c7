"""DNS (RFC 1035; UDP port 53, and TCP port 53 with the 2-octet length prefix of RFC 7766).

One event per query or response. ``function_code`` = header OPCODE (``FUNCTIONS``); the QR
bit gives ``direction``; ``match`` = the 16-bit message id. A response with a non-zero RCODE
sets ``exception_code`` = RCODE. ``attrs`` carry the first question (``name`` lower-case
without the trailing dot, '.' for the root; ``qtype``/``qtype_name``), the answer count and,
bounded, the data of A/AAAA/CNAME/NS/PTR/MX/TXT answers. Zone transfers are ordinary queries
with ``qtype`` 252 (AXFR) / 251 (IXFR); each message of a multi-message transfer response is
one event.

Names follow compression pointers (RFC 1035 4.1.4) only backwards — a pointer must point
before the label that holds it, which rules out loops — and at most 255 octets. A header or
question that cannot be parsed is a :class:`DecodeError`; damage in the answer section still
gives the event with ``attrs['malformed']`` naming what is wrong (like tshark, which dissects
what it can and flags the rest).
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from typing import Any, ClassVar

from collectors.apps.base import AppDecoder, DecodeError, Msg, register

_HDR = struct.Struct(">HHHHHH")
_RR = struct.Struct(">HHIH")
_QQ = struct.Struct(">HH")

FUNCTIONS: dict[int, str] = {
    0: "query",
    1: "iquery",
    2: "status",
    4: "notify",
    5: "update",
    6: "dso",
}

QTYPES: dict[int, str] = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT",
    17: "RP", 18: "AFSDB", 24: "SIG", 25: "KEY", 28: "AAAA", 29: "LOC", 33: "SRV",
    35: "NAPTR", 36: "KX", 37: "CERT", 39: "DNAME", 41: "OPT", 42: "APL", 43: "DS",
    44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 49: "DHCID",
    50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 53: "SMIMEA", 55: "HIP", 59: "CDS",
    60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD", 64: "SVCB", 65: "HTTPS",
    99: "SPF", 249: "TKEY", 250: "TSIG", 251: "IXFR", 252: "AXFR", 253: "MAILB",
    254: "MAILA", 255: "ANY", 256: "URI", 257: "CAA",
}  # fmt: skip

RCODES: dict[int, str] = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE",
}  # fmt: skip

MAX_ANSWER_DATA = 16
"""Answers whose data is kept in ``attrs['answer_data']`` (per message)."""
MAX_DATA_CHARS = 255
"""Characters kept of one answer's data (TXT strings are joined, then cut)."""
_NAME_TYPES = {2, 5, 12, 39}  # NS, CNAME, PTR, DNAME: rdata is one domain name


def read_name(msg: bytes, pos: int) -> tuple[str, int]:
    """(name, offset after it in the message) of the domain name at ``pos``."""
    labels: list[bytes] = []  # decoded and lower-cased once, joined
    end = -1  # where the name ends in the original position (set at the first pointer)
    total = 0
    limit = pos  # a pointer must point strictly before the label that holds it
    n = len(msg)
    while True:
        if pos >= n:
            raise DecodeError("truncated_name", f"name runs past the message at {pos}")
        ln = msg[pos]
        if ln < 0x40:  # a label (0: the root, the end of the name)
            if not ln:
                pos += 1
                break
            total += ln + 1
            if total > 255:
                raise DecodeError("name_too_long", f"name longer than 255 octets at {pos}")
            nxt = pos + 1 + ln
            if nxt > n:
                raise DecodeError("truncated_name", f"label runs past the message at {pos}")
            labels.append(msg[pos + 1 : nxt])
            pos = nxt
            continue
        if ln < 0xC0:
            raise DecodeError("bad_label_type", f"label type 0x{ln:02x} at {pos}")
        if pos + 1 >= n:
            raise DecodeError("truncated_name", f"pointer cut at {pos}")
        ptr = ((ln & 0x3F) << 8) | msg[pos + 1]
        if ptr >= limit:
            raise DecodeError("bad_name_pointer", f"pointer at {pos} to {ptr} is not backwards")
        if end < 0:
            end = pos + 2
        pos = limit = ptr
    name = b".".join(labels).decode("latin-1").lower() if labels else "."
    return name, (end if end >= 0 else pos)


@functools.lru_cache(maxsize=1024)
def _ipv6(packed: bytes) -> str:
    """The text form of an AAAA answer: the standard library's, remembered (answers repeat)."""
    return str(ipaddress.IPv6Address(packed))


def _rdata(msg: bytes, rtype: int, pos: int, rdlen: int) -> str | None:
    if rtype == 1 and rdlen == 4:
        return f"{msg[pos]}.{msg[pos + 1]}.{msg[pos + 2]}.{msg[pos + 3]}"  # str(IPv4Address)
    data = msg[pos : pos + rdlen]
    if rtype == 28 and rdlen == 16:
        return _ipv6(bytes(data))  # hashable even when msg is a bytearray
    if rtype in _NAME_TYPES:
        return read_name(msg, pos)[0]
    if rtype == 15 and rdlen >= 3:
        return read_name(msg, pos + 2)[0]
    if rtype == 16:
        parts, i = [], 0
        while i < rdlen:
            ln = data[i]
            parts.append(data[i + 1 : i + 1 + ln].decode("latin-1"))
            i += 1 + ln
        return "".join(parts)[:MAX_DATA_CHARS]
    return None


def decode_message(msg: bytes) -> Msg:
    """One DNS message (without the TCP length prefix) as a :class:`Msg`."""
    if len(msg) < 12:
        raise DecodeError("truncated_header", f"{len(msg)} of 12 header octets")
    qid, flags, qd, an, ns, ar = _HDR.unpack_from(msg)
    response = bool(flags & 0x8000)
    opcode = (flags >> 11) & 0xF
    rcode = flags & 0xF
    attrs: dict[str, Any] = {"rcode": rcode, "rcode_name": RCODES.get(rcode) or f"rcode-{rcode}"}
    pos = 12
    for k in range(qd):
        name, pos = read_name(msg, pos)
        if pos + 4 > len(msg):
            raise DecodeError("truncated_question", f"question {k} cut at {pos}")
        qtype, qclass = _QQ.unpack_from(msg, pos)
        pos += 4
        if k == 0:
            attrs["name"] = name
            attrs["qtype"] = qtype
            attrs["qtype_name"] = QTYPES.get(qtype) or f"TYPE{qtype}"
            attrs["qclass"] = qclass
    if qd != 1:
        attrs["questions"] = qd
    attrs["answers"] = an
    if response:
        attrs["authority"] = ns
        attrs["additional"] = ar
        data: list[dict[str, Any]] = []
        try:
            for _ in range(an):
                rname, pos = read_name(msg, pos)
                if pos + 10 > len(msg):
                    raise DecodeError("truncated_rr", f"record header cut at {pos}")
                rtype, _cls, ttl, rdlen = _RR.unpack_from(msg, pos)
                pos += 10
                if pos + rdlen > len(msg):
                    raise DecodeError("truncated_rr", f"rdata of {rdlen} octets cut at {pos}")
                if len(data) < MAX_ANSWER_DATA:
                    value = _rdata(msg, rtype, pos, rdlen)
                    if value is not None:
                        rt = QTYPES.get(rtype) or f"TYPE{rtype}"
                        data.append({"name": rname, "type": rt, "ttl": ttl, "data": value})
                pos += rdlen
        except (DecodeError, IndexError, ValueError) as exc:
            attrs["malformed"] = exc.reason if isinstance(exc, DecodeError) else "bad_rdata"
        if data:
            attrs["answer_data"] = data
    if flags & 0x0200:
        attrs["tc"] = True
    return Msg(
        direction="response" if response else "request",
        function_code=opcode,
        function_name=FUNCTIONS.get(opcode) or f"unknown-{opcode}",
        exception_code=rcode if response and rcode else None,
        attrs=attrs,
        match=qid,
    )


def _plausible(msg: bytes) -> bool:
    if len(msg) < 17:
        return False
    _qid, flags, qd, an, ns, ar = _HDR.unpack_from(msg)
    if qd != 1 or (flags >> 11) & 0xF not in FUNCTIONS or flags & 0x0040:  # Z bit must be 0
        return False
    if not flags & 0x8000 and (an > 0 or ns > 0 or ar > 2 or flags & 0xF):
        return False
    try:
        decode_message(msg)
    except DecodeError:
        return False
    return True


@register
class Dns(AppDecoder):
    name = "dns"
    tcp_ports = (53,)
    udp_ports = (53,)
    FUNCTIONS: ClassVar[dict[int, str]] = FUNCTIONS
    ATTRS: ClassVar[dict[str, str]] = {
        "name": "First question's name, lower-case, no trailing dot ('.' = root).",
        "qtype": "First question's QTYPE (int; 252 = AXFR, 251 = IXFR, 16 = TXT …).",
        "qtype_name": "Mnemonic of qtype ('A', 'TXT', 'AXFR'; 'TYPE<n>' when unknown).",
        "qclass": "First question's QCLASS (1 = IN).",
        "questions": "QDCOUNT, only when it is not 1.",
        "rcode": "Header RCODE (int).",
        "rcode_name": "RCODE mnemonic ('NOERROR', 'NXDOMAIN' …).",
        "answers": "ANCOUNT: number of answer records.",
        "authority": "NSCOUNT (responses).",
        "additional": "ARCOUNT (responses).",
        "answer_data": (
            "Responses: up to 16 answers of type A/AAAA/CNAME/NS/PTR/DNAME/MX/TXT as "
            "{name, type, ttl, data} (data cut at 255 characters)."
        ),
        "tc": "True when the TC (truncated) bit is set.",
        "malformed": "The answer section could not be parsed to its end: the reason.",
    }

    def __init__(self) -> None:
        self._tcp_prefix_checked = False

    @classmethod
    def probe(cls, data: bytes, from_client: bool) -> bool:
        if _plausible(data):
            return True
        if len(data) >= 19 and int.from_bytes(data[:2], "big") == len(data) - 2:
            return _plausible(data[2:])
        return False

    def datagram(self, data: bytes, from_client: bool) -> list[Msg]:
        return [decode_message(data)]

    def parse(self, buf: bytes, from_client: bool) -> tuple[int, list[Msg]]:
        pos, out = 0, []
        n = len(buf)
        while pos + 2 <= n:
            ln = int.from_bytes(buf[pos : pos + 2], "big")
            if ln < 12:
                raise DecodeError("bad_tcp_length", f"length prefix {ln} < 12")
            if pos + 2 + ln > n:
                break
            out.append(decode_message(buf[pos + 2 : pos + 2 + ln]))
            pos += 2 + ln
        return pos, out
