"""HTTP/1.0 and 1.1 (RFC 9110/9112; TCP ports 80, 8080, 8000, and any port by its first line).

One event per request and per response, emitted when the message is complete (head and body,
like tshark with body reassembly). Requests: ``function_name`` = the method, ``function_code``
None (methods have no numbers). Responses (like FTP replies): ``function_code`` = the status
code, ``function_name`` its name from ``FUNCTIONS`` (the RFC 9110 status table),
``attrs['status']`` too, ``attrs['method']`` of the request answered, ``exception_code`` =
status when >= 400.
Pipelined requests are answered first-in-first-out: each request gets a sequence number as
``match`` and its response the number of the oldest unanswered request; interim 1xx responses
(except 101) answer nothing (``link=False``).

Bodies are skipped, never kept: framed by Content-Length or chunked transfer coding, no body
for HEAD, 1xx, 204 and 304 responses, a response without either runs to the end of the
connection; after ``101 Switching Protocols`` or a successful CONNECT the connection is opaque.
Heads are limited to ``MAX_HEAD`` octets. Credentials are never stored: of an Authorization
header only the scheme, and for Basic the user name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections import deque
from typing import Any, ClassVar

from collectors.apps.base import AppDecoder, DecodeError, Msg, register

MAX_HEAD = 64 * 1024
"""Octets a request or response head (start line and header fields) may take."""
MAX_FIELD = 2048
"""Characters kept of a URI or header value in attrs."""
MAX_QUEUE = 1024

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_REQ = re.compile(rb"(" + _TOKEN + rb") +(\S+) +HTTP/(\d\.\d) *")
"""Request line: method, request target, version ('1.1')."""
_RESP = re.compile(rb"HTTP/(\d\.\d) +(\d{3})(?: +(.*))?")
"""Status line: version, status code, reason phrase (None when absent)."""
METHODS = (
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT", b"TRACE", b"PATCH",
    b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"SEARCH",
)  # fmt: skip
_PROBE_REQ = re.compile(rb"(?:" + b"|".join(METHODS) + rb") [\x21-\x7e]+ HTTP/1\.[01]\r?\n")
_PROBE_RESP = re.compile(rb"HTTP/1\.[01] [1-5]\d\d[ \r]")
FUNCTIONS: dict[int, str] = {
    100: "continue", 101: "switching_protocols", 102: "processing", 103: "early_hints",
    200: "ok", 201: "created", 202: "accepted", 203: "non_authoritative_information",
    204: "no_content", 205: "reset_content", 206: "partial_content", 207: "multi_status",
    300: "multiple_choices", 301: "moved_permanently", 302: "found", 303: "see_other",
    304: "not_modified", 305: "use_proxy", 307: "temporary_redirect", 308: "permanent_redirect",
    400: "bad_request", 401: "unauthorized", 402: "payment_required", 403: "forbidden",
    404: "not_found", 405: "method_not_allowed", 406: "not_acceptable",
    407: "proxy_authentication_required", 408: "request_timeout", 409: "conflict", 410: "gone",
    411: "length_required", 412: "precondition_failed", 413: "content_too_large",
    414: "uri_too_long", 415: "unsupported_media_type", 416: "range_not_satisfiable",
    417: "expectation_failed", 421: "misdirected_request", 422: "unprocessable_content",
    423: "locked", 424: "failed_dependency", 425: "too_early", 426: "upgrade_required",
    428: "precondition_required", 429: "too_many_requests",
    431: "request_header_fields_too_large", 451: "unavailable_for_legal_reasons",
    500: "internal_server_error", 501: "not_implemented", 502: "bad_gateway",
    503: "service_unavailable", 504: "gateway_timeout", 505: "http_version_not_supported",
    507: "insufficient_storage", 511: "network_authentication_required",
}  # fmt: skip

FIELDS = frozenset(
    {
        b"transfer-encoding", b"content-length", b"content-type", b"host", b"user-agent",
        b"authorization", b"cookie", b"server", b"www-authenticate",
    }
)  # fmt: skip
"""Header fields (lower-case names) that give attrs or frame the body; the others are only
checked for a colon (``attrs['malformed']``), their values are never decoded."""
_FOLD = (b" ", b"\t")
"""A header line starting with one of these continues the previous one (obsolete line folding,
RFC 9112 5.2): it is skipped."""
_KEYS: dict[bytes, bytes] = {}
"""Field name as sent (before the colon) -> its key in FIELDS, b"" when it is none of them (or
starts a folded line): a memo of :func:`_key`, since the same few spellings recur."""
_MAX_KEYS = 4096


def _key(name: bytes) -> bytes:
    key = name.strip().lower()
    if key not in FIELDS or name.startswith(_FOLD):
        key = b""
    if len(_KEYS) < _MAX_KEYS:
        _KEYS[name] = key
    return key


_DIGEST_USER = re.compile(r'username="([^"]*)"')

# body modes
HEAD, LENGTH, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILER, CLOSE, OPAQUE = range(8)


class _Side:
    __slots__ = ("body", "mode", "pending", "remaining")

    def __init__(self) -> None:
        self.mode = HEAD
        self.remaining = 0
        self.body = 0
        self.pending: Msg | None = None


def _auth(value: str, attrs: dict[str, Any]) -> None:
    scheme, _, rest = value.strip().partition(" ")
    attrs["auth_scheme"] = scheme.lower()
    if scheme.lower() == "basic":
        try:
            text = base64.b64decode(rest.strip(), validate=True).decode("latin-1")
        except (binascii.Error, ValueError):
            attrs["auth_invalid"] = True
            return
        attrs["auth_user"] = text.partition(":")[0][:256]
    elif scheme.lower() == "digest":
        m = _DIGEST_USER.search(rest)
        if m:
            attrs["auth_user"] = m.group(1)[:256]


_SESSION_COOKIE = re.compile(r"sess|sid|token|auth", re.I)


def _session_cookie(value: str) -> str | None:
    """A fingerprint of the session cookies in a Cookie header (names that look like session
    ids: *sess*, *sid*, *token*, *auth*): ``sha256:`` + 16 hex digits of ``name=value`` pairs,
    sorted. The cookie itself is never kept; the same fingerprint from two clients means a
    reused (stolen) session."""
    pairs = sorted(
        f"{n.strip()}={v.strip()}"
        for n, _, v in (c.partition("=") for c in value.split(";"))
        if v.strip() and _SESSION_COOKIE.search(n)
    )
    if not pairs:
        return None
    return "sha256:" + hashlib.sha256(";".join(pairs).encode("utf-8", "replace")).hexdigest()[:16]


@register
class Http(AppDecoder):
    name = "http"
    tcp_ports = (80, 8080, 8000)
    FUNCTIONS: ClassVar[dict[int, str]] = FUNCTIONS
    ATTRS: ClassVar[dict[str, str]] = {
        "method": "Request method as sent ('GET', 'POST' …); on responses the request's.",
        "uri": "Request target (cut at 2048 characters).",
        "version": "HTTP version of the start line ('1.1').",
        "host": "Host header of the request (copied to the flow record as http_host).",
        "user_agent": "User-Agent header.",
        "session_cookie": "sha256 prefix of the session cookies sent (never the cookie itself).",
        "auth_scheme": "Authorization scheme, lower-case ('basic', 'bearer', 'digest', 'ntlm').",
        "auth_user": "User name of a Basic (decoded) or Digest Authorization; never the secret.",
        "auth_invalid": "True when a Basic Authorization is not valid base64.",
        "content_length": "Content-Length header (int).",
        "content_type": "Content-Type header.",
        "chunked": "True when the body uses chunked transfer coding.",
        "body_len": "Body octets seen (decoded chunk sizes for chunked bodies).",
        "status": "Response status code (int).",
        "reason": "Response reason phrase.",
        "server": "Server header of a response.",
        "auth_challenge": "Scheme of a WWW-Authenticate challenge, lower-case ('basic').",
        "malformed": "A header line without a colon was skipped.",
    }

    def __init__(self) -> None:
        self._sides = (_Side(), _Side())  # client, server
        self._queue: deque[tuple[int, str]] = deque()
        self._n = 0

    @classmethod
    def probe(cls, data: bytes, from_client: bool) -> bool:
        return bool(_PROBE_REQ.match(data) or _PROBE_RESP.match(data))

    def parse(self, buf: bytes, from_client: bool) -> tuple[int, list[Msg]]:
        side = self._sides[0 if from_client else 1]
        pos, n = 0, len(buf)
        out: list[Msg] = []
        while pos < n:
            mode = side.mode
            if mode == HEAD:
                while buf.startswith(b"\r\n", pos):  # empty lines before a start line
                    pos += 2
                end, sep = buf.find(b"\r\n\r\n", pos, pos + MAX_HEAD), 4
                lf = buf.find(b"\n\n", pos, end if end >= 0 else pos + MAX_HEAD)
                if lf >= 0:
                    end, sep = lf, 2
                if end < 0:
                    if n - pos > MAX_HEAD:
                        raise DecodeError("head_too_long", f"no end of head in {MAX_HEAD} octets")
                    break
                msg = self._head(buf[pos:end], from_client, side)
                pos = end + sep
                if side.mode == HEAD or side.mode == CLOSE or side.mode == OPAQUE:
                    out.append(msg)
                else:
                    side.pending = msg
                continue
            if mode in (CLOSE, OPAQUE):
                side.body += n - pos
                return n, out
            if mode in (LENGTH, CHUNK_DATA):
                take = min(side.remaining, n - pos)
                pos += take
                side.remaining -= take
                side.body += take
                if side.remaining:
                    break
                if mode == CHUNK_DATA:
                    side.mode = CHUNK_END
                else:
                    self._done(side, out)
                continue
            if mode == CHUNK_END:
                if buf[pos] == 0x0A:
                    pos += 1
                elif n - pos < 2:
                    break
                elif buf[pos : pos + 2] == b"\r\n":
                    pos += 2
                else:
                    raise DecodeError("bad_chunk", "chunk data not followed by CRLF")
                side.mode = CHUNK_SIZE
                continue
            nl = buf.find(b"\n", pos, pos + 4096)
            if nl < 0:
                if n - pos >= 4096:
                    raise DecodeError("bad_chunk", "chunk-size or trailer line too long")
                break
            line = buf[pos:nl].rstrip(b"\r")
            pos = nl + 1
            if mode == TRAILER:
                if not line:
                    self._done(side, out)
                continue
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise DecodeError("bad_chunk", f"chunk-size {line[:20]!r}") from None
            if size:
                side.mode, side.remaining = CHUNK_DATA, size
            else:
                side.mode = TRAILER
        return pos, out

    def _done(self, side: _Side, out: list[Msg]) -> None:
        if side.pending is not None:
            side.pending.attrs["body_len"] = side.body
            out.append(side.pending)
        side.pending, side.mode, side.body = None, HEAD, 0

    def _head(self, head: bytes, from_client: bool, side: _Side) -> Msg:
        lines = bytes(head).split(b"\n")  # bytes: the field names are dict keys
        start = lines[0].rstrip(b"\r")
        attrs: dict[str, Any] = {}
        fields: dict[bytes, str] = {}  # the first of each of FIELDS
        for line in lines[1:]:  # a line's '\r' is left to the strips (or has no colon)
            name, colon, value = line.partition(b":")
            if colon:
                key = _KEYS.get(name)
                if key is None:
                    key = _key(name)
                if key and key not in fields:
                    fields[key] = value.strip().decode("latin-1")[:MAX_FIELD]
            elif not line.startswith(_FOLD):
                attrs["malformed"] = "bad_header_line"
        side.body = 0
        chunked = "chunked" in fields.get(b"transfer-encoding", "").lower()
        length = fields.get(b"content-length")
        clen = None
        if length is not None:
            if not length.isdigit():
                raise DecodeError("bad_content_length", repr(length[:40]))
            clen = int(length)
            attrs["content_length"] = clen
        if b"content-type" in fields:
            attrs["content_type"] = fields[b"content-type"]
        if chunked:
            attrs["chunked"] = True
        if from_client:
            m = _REQ.fullmatch(start)
            if m is None:
                raise DecodeError("bad_request_line", repr(start[:60]))
            rmethod, uri, version = m.groups()
            method = rmethod.decode("ascii")
            attrs["method"] = method
            attrs["uri"] = uri.decode("latin-1")[:MAX_FIELD]
            attrs["version"] = version.decode()
            if b"host" in fields:
                attrs["host"] = fields[b"host"]
            if b"user-agent" in fields:
                attrs["user_agent"] = fields[b"user-agent"]
            if b"authorization" in fields:
                _auth(fields[b"authorization"], attrs)
            if b"cookie" in fields:
                fp = _session_cookie(fields[b"cookie"])
                if fp is not None:
                    attrs["session_cookie"] = fp
            idx = self._n
            self._n += 1
            self._queue.append((idx, method))
            if len(self._queue) > MAX_QUEUE:
                self._queue.popleft()
            self._body(side, chunked, clen, request=True)
            return Msg("request", function_name=method, attrs=attrs, match=idx)
        m = _RESP.fullmatch(start)
        if m is None:
            raise DecodeError("bad_status_line", repr(start[:60]))
        version, code, reason = m.groups()
        status = int(code)
        attrs["status"] = status
        attrs["reason"] = (reason or b"").decode("latin-1").strip()[:256]
        attrs["version"] = version.decode()
        if b"server" in fields:
            attrs["server"] = fields[b"server"]
        if b"www-authenticate" in fields:
            attrs["auth_challenge"] = fields[b"www-authenticate"].partition(" ")[0].lower()
        exc = status if status >= 400 else None
        sname = FUNCTIONS.get(status) or f"unknown-{status}"  # self.fname, without its f-string
        if 100 <= status < 200 and status != 101:
            side.mode = HEAD
            return Msg("response", status, sname, exception_code=exc, attrs=attrs, link=False)
        if not self._queue:  # mid-stream capture: the request was not seen
            self._body(side, chunked, clen, request=False)
            return Msg("response", status, sname, exception_code=exc, attrs=attrs, link=False)
        idx, method = self._queue.popleft()
        attrs["method"] = method
        if status == 101 or (method == "CONNECT" and 200 <= status < 300):
            for s in self._sides:
                s.mode = OPAQUE
        elif method == "HEAD" or status in (204, 304):
            side.mode = HEAD
        else:
            self._body(side, chunked, clen, request=False)
        return Msg("response", status, sname, exception_code=exc, attrs=attrs, match=idx)

    @staticmethod
    def _body(side: _Side, chunked: bool, clen: int | None, request: bool) -> None:
        if chunked:
            side.mode = CHUNK_SIZE
        elif clen:
            side.mode, side.remaining = LENGTH, clen
        elif clen == 0 or request:
            side.mode = HEAD
        else:
            side.mode = CLOSE
