"""Cleartext interactive command shells on raw TCP (bind and reverse shells, netcat, exploits).

Not a protocol with a port: recognised by content on unbound ports — a Windows ``cmd.exe``
banner (``Microsoft Windows [Version …]``) or prompt (``C:\\WINDOWS\\system32>``), or a Unix
shell's tell-tale output (``sh-4.2$``, ``bash: no job control in this shell``, ``uid=0(root)
gid=0(root)``). Events:

- the side that prints prompts / banners is the shell (``response``): ``function_name``
  'banner' or 'prompt', ``attrs`` ``prompt`` (the prompt line, e.g. the working directory);
- each line the other side sends is a ``request``: ``function_name`` 'command', ``attrs``
  ``command`` (the line, cut at 256 characters).

The direction comes from the content (who prints the prompt), not from who connected: a
reverse shell connects out, a bind shell is connected to.
"""

from __future__ import annotations

import re
from typing import ClassVar

from collectors.apps.base import AppDecoder, DecodeError, Msg, register

FUNCTIONS: dict[int, str] = {1: "banner", 2: "prompt", 3: "command"}
MAX_LINE = 4096
_BANNER = re.compile(
    rb"Microsoft Windows (XP )?\[Version [0-9.]+\]|bash: no job control in this shell"
)
_PROMPT = re.compile(
    rb"(?:^|\n)\s*([A-Za-z]:\\[^\r\n<>|\"]{0,200}>)\s*$|(?:^|\n)((?:ba)?sh-\d\.\d[#$]) ?$"
)
_ID = re.compile(rb"uid=\d+\([\w-]+\) gid=\d+\([\w-]+\)")


@register
class Shell(AppDecoder):
    """A command shell over TCP (content-recognised only)."""

    name = "shell"
    tcp_ports: ClassVar[tuple[int, ...]] = (4444,)
    FUNCTIONS: ClassVar[dict[int, str]] = FUNCTIONS
    ATTRS: ClassVar[dict[str, str]] = {
        "prompt": "The prompt or banner line the shell printed (e.g. 'C:\\WINNT\\system32>').",
        "command": "A line sent to the shell (cut at 256 characters).",
    }

    def __init__(self) -> None:
        self.shell_side: bool | None = None  # from_client value of the side running the shell

    @classmethod
    def probe(cls, data: bytes, from_client: bool) -> bool:
        head = data[:512]
        return bool(_BANNER.search(head) or _PROMPT.search(head) or _ID.search(head))

    def parse(self, buf: bytes, from_client: bool) -> tuple[int, list[Msg]]:
        if b"\x00" in buf[:64] and self.shell_side is None:
            raise DecodeError("binary_data", "not a text shell")
        msgs: list[Msg] = []
        text = bytes(buf)
        shows = _BANNER.search(text) or _PROMPT.search(text)
        if shows is not None:
            self.shell_side = from_client
        if self.shell_side is not None and from_client == self.shell_side:
            if shows is not None:  # a prompt ends the shell's output: report it
                m = _PROMPT.search(text)
                line = (m.group(1) or m.group(2)) if m else shows.group(0)
                kind = 2 if m else 1
                msgs.append(Msg("response", kind, FUNCTIONS[kind], attrs={"prompt": _txt(line)}))
                return len(buf), msgs
            return (len(buf), msgs) if len(buf) > MAX_LINE else (0, msgs)
        used = 0
        while True:  # the other side: one command per line
            nl = text.find(b"\n", used)
            if nl < 0:
                break
            line = text[used:nl].strip()
            used = nl + 1
            if line:
                msgs.append(Msg("request", 3, FUNCTIONS[3], attrs={"command": _txt(line)[:256]}))
        if used == 0 and len(buf) > MAX_LINE:
            used = len(buf)
        return used, msgs


def _txt(b: bytes) -> str:
    return b.decode("utf-8", "replace")
