"""FTP control connection (RFC 959, RFC 2228, RFC 2428; TCP port 21).

One event per command line (request: ``function_name`` = the command in upper case, no code,
``attrs['arg']``) and per reply (response: ``function_code`` = the 3-digit reply code,
``function_name`` from ``FUNCTIONS``, ``exception_code`` = the code when >= 400,
``attrs['text']`` = its first line). Multi-line replies (``123-`` … ``123 ``) are one event.
Replies answer commands first-in-first-out; preliminary 1xx replies and replies with no
command outstanding (the greeting) answer nothing. The reply that answers PASS (or a USER
that needs no password) carries ``attrs['login']`` 'success' (230, 202) or 'failure'
(>= 400) and the ``user`` of the preceding USER. Passwords are never stored: PASS and ACCT
keep only ``arg_len``. After ``AUTH TLS`` is accepted (234) the connection is opaque.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, ClassVar

from collectors.apps.base import AppDecoder, DecodeError, Msg, register

FUNCTIONS: dict[int, str] = {
    110: "restart_marker", 120: "service_ready_later", 125: "transfer_starting",
    150: "file_status_okay", 200: "command_okay", 202: "command_superfluous",
    211: "system_status", 212: "directory_status", 213: "file_status", 214: "help_message",
    215: "system_type", 220: "service_ready", 221: "closing_control",
    225: "data_connection_open", 226: "closing_data_connection", 227: "entering_passive_mode",
    228: "entering_long_passive_mode", 229: "entering_extended_passive_mode",
    230: "user_logged_in", 232: "user_logged_in_authorized", 234: "security_exchange_done",
    235: "security_data_exchange_done", 250: "file_action_okay", 257: "pathname_created",
    331: "need_password", 332: "need_account", 334: "security_mechanism_accepted",
    335: "security_data_acceptable", 350: "file_action_pending",
    421: "service_not_available", 425: "cannot_open_data_connection",
    426: "connection_closed_transfer_aborted", 430: "invalid_username_or_password",
    431: "need_unavailable_resource", 434: "requested_host_unavailable",
    450: "file_unavailable", 451: "local_error", 452: "insufficient_storage",
    500: "syntax_error", 501: "syntax_error_in_arguments", 502: "command_not_implemented",
    503: "bad_sequence_of_commands", 504: "parameter_not_implemented", 530: "not_logged_in",
    532: "need_account_for_storing", 533: "command_protection_denied",
    534: "request_denied_for_policy", 535: "failed_security_check",
    536: "protection_level_not_supported", 550: "file_unavailable_permanent",
    551: "page_type_unknown", 552: "exceeded_storage_allocation", 553: "file_name_not_allowed",
    631: "integrity_protected_reply", 632: "confidentiality_integrity_protected_reply",
    633: "confidentiality_protected_reply",
}  # fmt: skip
MAX_LINE = 8192
MAX_REPLY = 64 * 1024
MAX_ARG = 256
MAX_QUEUE = 256
SECRET = {"PASS", "ACCT"}
_CMD = re.compile(rb"[A-Za-z]{3,4}")
_REPLY = re.compile(rb"([1-6]\d\d)([ -])(.*)")


@register
class Ftp(AppDecoder):
    name = "ftp"
    tcp_ports = (21,)
    FUNCTIONS: ClassVar[dict[int, str]] = FUNCTIONS
    ATTRS: ClassVar[dict[str, str]] = {
        "arg": f"Command argument (cut at {MAX_ARG} characters); not set for PASS and ACCT.",
        "arg_len": "PASS / ACCT: length of the argument (the secret itself is never kept).",
        "text": "Reply: text of its first line.",
        "lines": "Reply: number of lines of a multi-line reply.",
        "login": "Reply answering PASS (or USER): 'success' (230/202) or 'failure' (>= 400).",
        "user": "Reply carrying login: the user name of the preceding USER command.",
        "tls": "True on the 234 reply after which the control connection is TLS.",
    }

    def __init__(self) -> None:
        self._queue: deque[str] = deque()
        self._user: str | None = None
        self._auth = False
        self._opaque = False

    @classmethod
    def probe(cls, data: bytes, from_client: bool) -> bool:
        if re.match(rb"220[ -][^\r\n]*FTP[^\r\n]*\r?\n", data, re.IGNORECASE):
            return True
        return bool(re.match(rb"(USER|AUTH|FEAT) [\x21-\x7e]{1,64}\r\n", data))

    def parse(self, buf: bytes, from_client: bool) -> tuple[int, list[Msg]]:
        pos, n = 0, len(buf)
        out: list[Msg] = []
        while pos < n and not self._opaque:
            if from_client and self._auth and buf[pos] == 0x16:
                self._opaque = True  # TLS ClientHello after AUTH TLS
                break
            nl = buf.find(b"\n", pos, pos + MAX_LINE)
            if nl < 0:
                if n - pos >= MAX_LINE:
                    raise DecodeError("line_too_long", f"no line end in {MAX_LINE} octets")
                break
            if from_client:
                line = buf[pos:nl].rstrip(b"\r")
                pos = nl + 1
                msg = self._command(line)
                if msg is not None:
                    out.append(msg)
                continue
            m = _REPLY.fullmatch(buf[pos:nl].rstrip(b"\r"))
            if m is None:
                raise DecodeError("bad_reply", repr(buf[pos : min(nl, pos + 40)]))
            end, lines = nl + 1, 1
            if m.group(2) == b"-":
                last = b"\n" + m.group(1) + b" "
                k = buf.find(last, nl, pos + MAX_REPLY)
                if k < 0:
                    if n - pos >= MAX_REPLY:
                        raise DecodeError("reply_too_long", f"multi-line reply over {MAX_REPLY}")
                    break
                e = buf.find(b"\n", k + 1)
                if e < 0:
                    break
                lines = buf.count(b"\n", pos, e) + 1
                end = e + 1
            pos = end
            out.append(self._reply(int(m.group(1)), m.group(3), lines))
        if self._opaque:
            return n, out
        return pos, out

    def _command(self, line: bytes) -> Msg | None:
        while line[:1] == b"\xff" and len(line) >= 2:  # Telnet IP / DM before ABOR
            line = line[2:]
        if not line.strip():
            return None
        cmd, _, arg = line.partition(b" ")
        if not _CMD.fullmatch(cmd):
            raise DecodeError("bad_command", repr(line[:40]))
        name = cmd.decode("ascii").upper()
        text = arg.decode("latin-1")
        attrs: dict[str, Any] = {}
        if name in SECRET:
            attrs["arg_len"] = len(arg)
        elif arg:
            attrs["arg"] = text[:MAX_ARG]
        if name == "USER":
            self._user = text[:MAX_ARG]
        elif name == "AUTH" and text.upper().startswith(("TLS", "SSL")):
            self._auth = True
        self._queue.append(name)
        if len(self._queue) > MAX_QUEUE:
            self._queue.popleft()
        return Msg("request", function_name=name, attrs=attrs)

    def _reply(self, code: int, text: bytes, lines: int) -> Msg:
        attrs: dict[str, Any] = {"text": text.decode("latin-1").strip()[:512]}
        if lines > 1:
            attrs["lines"] = lines
        link = code >= 200 and bool(self._queue)
        if link:
            cmd = self._queue.popleft()
            if cmd == "PASS" or (cmd == "USER" and code != 331 and code != 332):
                if code in (230, 202):
                    attrs["login"] = "success"
                elif code >= 400:
                    attrs["login"] = "failure"
                if "login" in attrs and self._user is not None:
                    attrs["user"] = self._user
            elif cmd == "AUTH" and code == 234 and self._auth:
                attrs["tls"] = True
                self._opaque = True
        return Msg(
            "response",
            function_code=code,
            function_name=self.fname(code),
            exception_code=code if code >= 400 else None,
            attrs=attrs,
            link=link,
        )
