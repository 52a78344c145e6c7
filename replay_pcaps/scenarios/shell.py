"""Cleartext command shells: a bind shell on an OT HMI and a reverse shell out of the park.

- ``it_remote_shells.pcap``: a compromised IT workstation connects to a bind shell listening
  on the Alpha furnace HMI (TCP 4444, a Windows ``cmd.exe``: banner, prompt, ``whoami``,
  ``dir``, a copied tool started); later the Beta reactor HMI opens a reverse shell to an
  Internet host on TCP 9001 (a Unix ``sh`` prompt, ``id``, ``uname -a``). Both are remote
  execution inside the park (lateral movement); both succeeded (the shells answered).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scapy.packet import Packet

from replay_pcaps.craft import Conversation
from replay_pcaps.scenarios.it_login import attack, by_time, labels

T0 = 1_763_800_000.0
IT_WS = "10.1.1.77"
HMI_A = "10.1.2.20"
HMI_B = "10.2.2.20"
C2 = "203.0.113.66"

BIND = [
    (False, b"Microsoft Windows [Version 10.0.17763.1]\r\n(c) Microsoft Corporation.\r\n\r\n"
     b"C:\\Windows\\system32>"),
    (True, b"whoami\r\n"),
    (False, b"whoami\r\nalpha\\hmi-operator\r\n\r\nC:\\Windows\\system32>"),
    (True, b"dir C:\\Users\\Public\r\n"),
    (False, b"dir C:\\Users\\Public\r\n 07/11/2025  09:12    1,204,224 tool.exe\r\n\r\n"
     b"C:\\Windows\\system32>"),
    (True, b"start C:\\Users\\Public\\tool.exe\r\n"),
    (False, b"start C:\\Users\\Public\\tool.exe\r\n\r\nC:\\Windows\\system32>"),
]  # fmt: skip
"""(sent by the connecting side, bytes) of the bind shell."""

REVERSE = [
    (False, b"sh-4.2$ "),
    (True, b"id\n"),
    (False, b"uid=1000(hmi) gid=1000(hmi) groups=1000(hmi)\nsh-4.2$ "),
    (True, b"uname -a\n"),
    (False, b"Linux reactor-hmi 4.19.0 #1 SMP x86_64 GNU/Linux\nsh-4.2$ "),
]
"""(sent by the controller on the Internet, bytes): the HMI connected out, then serves a shell."""


def remote_shells() -> tuple[list[Packet], dict[str, Any]]:
    out: list[Packet] = []
    bind = Conversation(out, IT_WS, HMI_A, 50444, 4444)
    t = bind.open(T0)
    bind_pkts = len(out)
    for from_client, data in BIND:
        t += 1.5 if from_client else 0.05
        bind.send(t, from_client, "PA", data)
    bind.close(t + 1)
    bind_part = out[bind_pkts - 3 :]
    # reverse shell: the HMI (client) connects out; the controller (server) types commands
    rev = Conversation(out, HMI_B, C2, 41999, 9001)
    start = len(out)
    t = rev.open(T0 + 600)
    for from_controller, data in REVERSE:
        t += 2.0 if from_controller else 0.05
        rev.send(t, not from_controller, "PA", data)
    rev.close(t + 1)
    rev_part = out[start:]
    atks = [
        attack("bind-shell-1", "lateral_movement", ["T0886", "T1059.003"], bind_part,
               [IT_WS], [HMI_A], "succeeded"),
        attack("reverse-shell-1", "lateral_movement", ["T0886", "T1059.004"], rev_part,
               [C2], [HMI_B], "succeeded"),
    ]  # fmt: skip
    return by_time(out), labels(
        "Command shells on HMIs: a bind shell on Alpha's furnace HMI reached from a compromised "
        "IT workstation, and a reverse shell from Beta's reactor HMI to an Internet host.",
        atks,
        "Both shells answer every command (outcome succeeded). The reverse shell is on an "
        "unbound port (9001): recognised by its content only.",
    )


SCENARIOS: dict[str, Callable[[], tuple[list[Packet], dict[str, Any] | None]]] = {
    "it_remote_shells.pcap": remote_shells,
}
