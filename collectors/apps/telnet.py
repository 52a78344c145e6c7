"""Telnet (RFC 854, RFC 855; TCP port 23): option negotiation and the login dialogue.

Telnet has no messages, only a byte stream with IAC commands, so the events are what matter
for security, all ``link=False`` with no ``function_code`` (``FUNCTIONS`` is the IAC command
table, for reference):

- 'negotiation': the DO/DONT/WILL/WONT options and subnegotiated options (SB … SE) one
  ``parse`` call carried, as lists of option numbers;
- 'login_prompt' / 'password_prompt': the server's output ends with ``login:`` /
  ``username:`` / ``password:`` (case-insensitive), i.e. it waits for that input;
- 'username': the client's line after a login prompt (``attrs['user']``); 'password': the
  line after a password prompt — only its length is kept, never the text;
- 'login_result': after a password, the server's answer: ``attrs['login']`` 'failure'
  ('Login incorrect', 'Authentication failed', 'Access denied' …) or 'success' (a shell prompt
  or a welcome / last-login line), with the ``user``.

Only a bounded tail of text is looked at (``TAIL`` characters of the server, ``MAX_LINE`` of a
client line). An unterminated subnegotiation longer than ``MAX_SB`` is a :class:`DecodeError`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from collectors.apps.base import AppDecoder, DecodeError, Msg, register

IAC, SB, SE = 255, 250, 240
NEGOTIATION = {251: "will", 252: "wont", 253: "do", 254: "dont"}
FUNCTIONS: dict[int, str] = {
    240: "se", 241: "nop", 242: "data_mark", 243: "break", 244: "interrupt_process",
    245: "abort_output", 246: "are_you_there", 247: "erase_character", 248: "erase_line",
    249: "go_ahead", 250: "sb", 251: "will", 252: "wont", 253: "do", 254: "dont",
}  # fmt: skip
TAIL = 256
MAX_LINE = 256
MAX_SB = 4096
MAX_OPTIONS = 32
_LOGIN = re.compile(r"(?i)(?:login|username|user name)\s*:\s*$")
_PASSWORD = re.compile(r"(?i)(?:password|passcode|passwort)\s*:\s*$")
_FAILURE = re.compile(
    r"(?i)login incorrect|authentication fail|login fail|access denied|"
    r"invalid (?:login|password|user)|incorrect password"
)
_SUCCESS = re.compile(r"(?i)(?:^|\n)[^\n]*(?:welcome|last login)|[$#>%] ?$")


@register
class Telnet(AppDecoder):
    name = "telnet"
    tcp_ports = (23,)
    FUNCTIONS: ClassVar[dict[int, str]] = FUNCTIONS
    ATTRS: ClassVar[dict[str, str]] = {
        **{
            v: f"negotiation: options of IAC {v.upper()} (list of int)"
            for v in NEGOTIATION.values()
        },
        "subneg": "negotiation: options subnegotiated (SB … SE), list of int.",
        "user": "username / login_result: the user name the client typed after a login prompt.",
        "arg_len": "password: length of the line typed (the password itself is never kept).",
        "login": "login_result: 'success' or 'failure'.",
        "prompt": "login_prompt / password_prompt: the prompt text.",
    }

    def __init__(self) -> None:
        self._tail = ""
        self._line = bytearray()
        self._expect: str | None = None  # 'user' / 'password' after a prompt
        self._user: str | None = None
        self._after_password = False

    @classmethod
    def probe(cls, data: bytes, from_client: bool) -> bool:
        if len(data) < 3 or data[0] != IAC or data[1] not in NEGOTIATION:
            return False
        return len(data) < 6 or (data[3] == IAC and data[4] in NEGOTIATION | {SB: ""})

    def parse(self, buf: bytes, from_client: bool) -> tuple[int, list[Msg]]:
        pos, n = 0, len(buf)
        text = bytearray()
        opts: dict[str, list[int]] = {}
        while pos < n:
            i = buf.find(b"\xff", pos)
            if i < 0:
                text += buf[pos:]
                pos = n
                break
            text += buf[pos:i]
            pos = i
            if i + 1 >= n:
                break
            cmd = buf[i + 1]
            if cmd == IAC:
                text.append(IAC)
                pos = i + 2
            elif cmd in NEGOTIATION:
                if i + 2 >= n:
                    break
                lst = opts.setdefault(NEGOTIATION[cmd], [])
                if len(lst) < MAX_OPTIONS:
                    lst.append(buf[i + 2])
                pos = i + 3
            elif cmd == SB:
                end = buf.find(b"\xff\xf0", i + 2)
                if end < 0:
                    if n - i > MAX_SB:
                        raise DecodeError("subnegotiation_too_long", f"no IAC SE in {MAX_SB}")
                    break
                if end > i + 2:
                    lst = opts.setdefault("subneg", [])
                    if len(lst) < MAX_OPTIONS:
                        lst.append(buf[i + 2])
                pos = end + 2
            else:
                pos = i + 2
        d = "request" if from_client else "response"
        out = [Msg(d, function_name="negotiation", attrs=dict(opts), link=False)] if opts else []
        if text:
            out += self._client(bytes(text)) if from_client else self._server(bytes(text))
        return pos, out

    def _client(self, text: bytes) -> list[Msg]:
        if self._expect is None:
            return []
        out = []
        for ch in re.split(rb"([\r\n])", text):
            if ch in (b"\r", b"\n"):
                if not self._line:
                    continue
                line = self._line.decode("latin-1")
                self._line.clear()
                if self._expect == "user":
                    self._user = line.strip()
                    out.append(Msg("request", function_name="username",
                                   attrs={"user": self._user}, link=False))  # fmt: skip
                elif self._expect == "password":
                    out.append(Msg("request", function_name="password",
                                   attrs={"arg_len": len(line)}, link=False))  # fmt: skip
                    self._after_password = True
                self._expect = None
                break
            if len(self._line) < MAX_LINE:
                self._line += ch[: MAX_LINE - len(self._line)]
        return out

    def _server(self, data: bytes) -> list[Msg]:
        text = (self._tail + data.decode("latin-1").replace("\0", ""))[-TAIL:]
        self._tail = text
        out = []
        attrs: dict[str, Any]
        if self._after_password:
            relogin = _LOGIN.search(text.rpartition("\n")[2])
            verdict = "failure" if _FAILURE.search(text) or relogin else None
            if verdict is None and _SUCCESS.search(text.rstrip("\r\n") if "\n" in text else text):
                verdict = "success"
            if verdict is not None:
                attrs = {"login": verdict}
                if self._user is not None:
                    attrs["user"] = self._user
                out.append(Msg("response", function_name="login_result", attrs=attrs, link=False))
                self._after_password = False
                self._tail = ""
        last = text.rpartition("\n")[2]
        for rx, name, expect in ((_LOGIN, "login_prompt", "user"),
                                 (_PASSWORD, "password_prompt", "password")):  # fmt: skip
            if rx.search(last):
                attrs = {"prompt": last.strip()[-64:]}
                out.append(Msg("response", function_name=name, attrs=attrs, link=False))
                self._expect, self._line = expect, bytearray()
                self._tail = ""
                break
        return out
