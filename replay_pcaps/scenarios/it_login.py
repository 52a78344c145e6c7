"""IT login protocols: FTP and SSH brute force, a benign FTP login, Telnet from IT into OT.

Captures (all labels in ``parkwatch-labels/1``, see ``shared/LABELS.md``):

- ``it_ftp_brute_force.pcap``: an Internet host guesses passwords on the DMZ FTP server, three
  ``USER``/``PASS`` pairs per connection answered ``530``, until ``PASS`` gets ``230``.
- ``it_ftp_login.pcap``: benign — the engineering workstation logs in once and lists a folder.
- ``it_ssh_brute_force.pcap``: an Internet host opens many short SSH sessions to the DMZ jump
  host: banner exchange, key-exchange init both ways, then the client resets the connection.
- ``it_telnet_ot_login.pcap``: an IT workstation logs into an OT gateway over cleartext Telnet
  (option negotiation, ``login:``, user name, ``Password:``, password, shell prompt, a command).

The SMB2 scenario is in :mod:`replay_pcaps.scenarios.it`; DNS, TLS and HTTP in
:mod:`replay_pcaps.scenarios.it_web`. Helpers shared by those modules live here.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from scapy.layers.inet import IP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from replay_pcaps.craft import Conversation

SOURCE = "parkwatch replay_pcaps generator"

EWS = "10.1.1.50"  # Alpha engineering workstation (park.yaml)
IT_WS = "10.1.1.77"  # an Alpha IT workstation (compromised in some scenarios)
FTP_SRV = "10.1.3.21"  # Alpha DMZ FTP server
SSH_SRV = "10.1.3.22"  # Alpha DMZ SSH jump host
OT_GW = "10.1.2.41"  # Alpha OT Linux gateway with Telnet enabled
FTP_ATTACKER = "198.51.100.23"
SSH_ATTACKER = "203.0.113.45"


def rfc3339(t: float, up: bool) -> str:
    """``t`` in UTC with millisecond precision, rounded up (``up``) or down."""
    ms = math.ceil(t * 1000) if up else math.floor(t * 1000)
    d = datetime.fromtimestamp(ms // 1000, UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def window(packets: Iterable[Packet]) -> tuple[str, str]:
    """Start (rounded up) and end (rounded down) of ``packets``: inside their time span."""
    times = [float(p.time) for p in packets]
    return rfc3339(min(times), True), rfc3339(max(times), False)


def attack(
    ident: str,
    category: str,
    techniques: list[str],
    packets: list[Packet],
    attackers: list[str],
    targets: list[str],
    outcome: str,
) -> dict[str, Any]:
    """One ``attacks`` entry spanning ``packets``."""
    start, end = window(packets)
    return {
        "id": ident,
        "category": category,
        "techniques": techniques,
        "start": start,
        "end": end,
        "attackers": attackers,
        "targets": targets,
        "outcome": outcome,
    }


def labels(description: str, attacks: list[dict[str, Any]], notes: str) -> dict[str, Any]:
    return {"description": description, "source": SOURCE, "attacks": attacks, "notes": notes}


def mac(ip: str) -> str:
    """The MAC these scenarios give ``ip``: locally administered, derived from the address."""
    return (b"\x02\xa0" + bytes(int(x) for x in ip.split("."))).hex(":")


def by_time(packets: list[Packet]) -> list[Packet]:
    """``packets`` in time order, each with the Ethernet addresses of :func:`mac`.

    The MACs are set here rather than through ``craft.MAC`` so that these captures neither
    depend on nor change what other scenario modules put in that shared table.
    """
    for p in packets:
        p[Ether].src, p[Ether].dst = mac(p[IP].src), mac(p[IP].dst)
    return sorted(packets, key=lambda p: float(p.time))


def payloads(packets: Iterable[Packet], port: int) -> list[tuple[bool, bytes]]:
    """(sent to ``port``, TCP/UDP payload) of every packet with a payload on ``port``."""
    out = []
    for p in packets:
        if Raw in p and port in (p.sport, p.dport):
            out.append((p.dport == port, bytes(p[Raw].load)))
    return out


# --- FTP ---------------------------------------------------------------------------------

T_FTP_BRUTE = 1_763_900_000.0
T_FTP_LOGIN = 1_763_910_000.0
FTP_BANNER = b"220 (vsFTPd 3.0.3)\r\n"
FTP_GUESSES = [
    "123456",
    "password",
    "admin",
    "ftp",
    "12345678",
    "qwerty",
    "letmein",
    "welcome",
    "admin123",
    "changeme",
    "Passw0rd",
    "ftpadmin",
    "dmz2024",
    "alpha",
    "steel2025",
    "Alpha2025!",
]
"""Passwords the attacker tries for ``ftpadmin``; the last one works."""


def ftp_session(
    out: list[Packet],
    client: str,
    cport: int,
    t: float,
    logins: list[tuple[str, str, bool]],
    after: list[tuple[str, str]],
) -> float:
    """One FTP control connection: banner, ``logins`` (user, password, accepted), then the
    ``after`` (command, reply) pairs, QUIT; returns the time of its last packet."""
    c = Conversation(out, client, FTP_SRV, cport, 21)
    t = c.open(t)
    c.send(t + 0.01, False, "PA", FTP_BANNER)
    t += 0.05
    for user, password, ok in logins:
        c.send(t, True, "PA", f"USER {user}\r\n".encode())
        c.send(t + 0.002, False, "PA", b"331 Please specify the password.\r\n")
        c.send(t + 0.2, True, "PA", f"PASS {password}\r\n".encode())
        verdict = b"230 Login successful.\r\n" if ok else b"530 Login incorrect.\r\n"
        c.send(t + 0.2 + (0.003 if ok else 1.5), False, "PA", verdict)
        t += 1.8
    for command, reply in [*after, ("QUIT", "221 Goodbye.")]:
        c.send(t, True, "PA", f"{command}\r\n".encode())
        c.send(t + 0.002, False, "PA", f"{reply}\r\n".encode())
        t += 0.3
    c.close(t)
    return t + 0.0008


def ftp_brute_force() -> tuple[list[Packet], dict[str, Any]]:
    out: list[Packet] = []
    t = T_FTP_BRUTE + 2
    for k in range(0, len(FTP_GUESSES), 3):
        tries = [("ftpadmin", pw, pw == FTP_GUESSES[-1]) for pw in FTP_GUESSES[k : k + 3]]
        done = tries[-1][2]
        after = [("SYST", "215 UNIX Type: L8"), ("PWD", '257 "/" is the current directory')]
        t = ftp_session(out, FTP_ATTACKER, 51000 + k, t, tries, after if done else []) + 0.5
    atk = attack(
        "ftp-brute-1",
        "brute_force",
        ["T1110.001"],
        out,
        [FTP_ATTACKER],
        [FTP_SRV],
        "succeeded",
    )
    # Benign background before and after: the EWS logs in once each side of the attack.
    ftp_session(out, EWS, 40100, T_FTP_BRUTE, [("engineer", "Furnace#7", True)], [])
    ftp_session(out, EWS, 40101, t + 3, [("engineer", "Furnace#7", True)], [])
    return by_time(out), labels(
        "FTP password guessing from the Internet against Alpha Steel's DMZ FTP server; "
        f"{len(FTP_GUESSES) - 1} attempts fail with 530, the last one gets 230.",
        [atk],
        "Three USER/PASS pairs per control connection, then the client reconnects; after the "
        "successful login it sends SYST, PWD and QUIT. Benign logins of the engineering "
        "workstation come before and after the attack.",
    )


def ftp_login() -> tuple[list[Packet], dict[str, Any]]:
    out: list[Packet] = []
    ftp_session(
        out,
        EWS,
        40200,
        T_FTP_LOGIN,
        [("engineer", "Furnace#7", True)],
        [
            ("SYST", "215 UNIX Type: L8"),
            ("PWD", '257 "/home/engineer" is the current directory'),
            ("CWD recipes", "250 Directory successfully changed."),
            ("TYPE I", "200 Switching to Binary mode."),
        ],
    )
    return by_time(out), labels(
        "Benign FTP login of the engineering workstation to the DMZ FTP server.",
        [],
        "One successful login, a few navigation commands, QUIT.",
    )


# --- SSH ---------------------------------------------------------------------------------

T_SSH_BRUTE = 1_763_920_000.0
SSH_SERVER_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
SSH_CLIENT_BANNER = b"SSH-2.0-libssh2_1.10.0\r\n"
SSH_SESSIONS = 40


def _namelist(names: list[str]) -> bytes:
    s = ",".join(names).encode()
    return len(s).to_bytes(4, "big") + s


def ssh_kexinit(cookie: bytes, server: bool) -> bytes:
    """An SSH binary packet (unencrypted) holding SSH_MSG_KEXINIT (RFC 4253 7.1)."""
    kex = ["curve25519-sha256", "ecdh-sha2-nistp256", "diffie-hellman-group14-sha256"]
    hostkey = ["ssh-ed25519", "rsa-sha2-512"] if server else ["ssh-ed25519", "ssh-rsa"]
    cipher = ["chacha20-poly1305@openssh.com", "aes128-ctr", "aes256-gcm@openssh.com"]
    mac = ["hmac-sha2-256", "hmac-sha1"]
    comp = ["none", "zlib@openssh.com"] if server else ["none"]
    payload = (
        bytes([20])
        + cookie
        + _namelist(kex)
        + _namelist(hostkey)
        + _namelist(cipher) * 2
        + _namelist(mac) * 2
        + _namelist(comp) * 2
        + _namelist([]) * 2
        + b"\0"
        + b"\0\0\0\0"
    )
    pad = 8 - (len(payload) + 5) % 8
    if pad < 4:
        pad += 8
    body = bytes([pad]) + payload + bytes(pad)
    return len(body).to_bytes(4, "big") + body


def ssh_brute_force() -> tuple[list[Packet], dict[str, Any]]:
    rng = random.Random(2202)
    out: list[Packet] = []
    t = T_SSH_BRUTE + 1
    for k in range(SSH_SESSIONS):
        c = Conversation(out, SSH_ATTACKER, SSH_SRV, 52000 + 7 * k, 22)
        t0 = c.open(t)
        c.send(t0 + 0.004, False, "PA", SSH_SERVER_BANNER)
        c.send(t0 + 0.03, True, "PA", SSH_CLIENT_BANNER)
        c.send(t0 + 0.031, True, "PA", ssh_kexinit(rng.randbytes(16), False))
        c.send(t0 + 0.035, False, "PA", ssh_kexinit(rng.randbytes(16), True))
        c.send(t0 + 0.06, True, "RA")
        t += 1.5 + rng.random()
    atk = attack("ssh-brute-1", "brute_force", ["T1110"], out, [SSH_ATTACKER], [SSH_SRV], "unknown")
    return by_time(out), labels(
        f"{SSH_SESSIONS} short SSH sessions from one Internet host to Alpha Steel's DMZ jump "
        "host within about a minute: password guessing with a scripted client.",
        [atk],
        "Each session exchanges banners and KEXINIT, then the client resets the connection; "
        "nothing shows whether any guess worked, hence outcome unknown.",
    )


# --- Telnet ------------------------------------------------------------------------------

T_TELNET = 1_763_930_000.0
IAC, DO, WILL, WONT, DONT = 255, 253, 251, 252, 254
TELNET_DIALOGUE: list[tuple[bool, bytes]] = [
    (False, bytes([IAC, DO, 24, IAC, DO, 32, IAC, DO, 35, IAC, DO, 39])),
    (True, bytes([IAC, WONT, 24, IAC, WONT, 32, IAC, WONT, 35, IAC, WONT, 39])),
    (False, bytes([IAC, WILL, 3, IAC, DO, 1, IAC, WILL, 1])),
    (True, bytes([IAC, DO, 3, IAC, WONT, 1, IAC, DO, 1])),
    (False, b"\r\nAlpha OT gateway (BusyBox v1.36.1)\r\nlogin: "),
    (True, b"maint\r\n"),
    (False, b"Password: "),
    (True, b"Alpha-OT-1\r\n"),
    (False, b"\r\nWelcome maint\r\n$ "),
    (True, b"cat /etc/plc_targets\r\n"),
    (False, b"10.1.2.10 blast-furnace-1\r\n10.1.2.11 blast-furnace-2\r\n$ "),
    (True, b"exit\r\n"),
    (False, b"logout\r\n"),
]
"""(from the client, bytes) in order; the client works in line mode."""


def telnet_ot_login() -> tuple[list[Packet], dict[str, Any]]:
    out: list[Packet] = []
    c = Conversation(out, IT_WS, OT_GW, 50123, 23)
    t = c.open(T_TELNET + 1)
    for from_client, data in TELNET_DIALOGUE:
        t += 0.8 if from_client else 0.01
        c.send(t, from_client, "PA", data)
    c.send(t + 0.01, False, "FA")
    c.send(t + 0.0104, True, "FA")
    c.send(t + 0.0108, False, "A")
    atk = attack(
        "telnet-it-ot-1",
        "policy_violation",
        ["T0859", "T0886"],
        out,
        [IT_WS],
        [OT_GW],
        "succeeded",
    )
    return by_time(out), labels(
        "Cleartext Telnet login from an Alpha Steel IT workstation into an OT gateway: the "
        "IT→OT conduit allows only Modbus and S7comm.",
        [atk],
        "Valid account (maint) used over Telnet; the credentials cross the network in clear.",
    )


SCENARIOS: dict[str, Callable[[], tuple[list[Packet], dict[str, Any] | None]]] = {
    "it_ftp_brute_force.pcap": ftp_brute_force,
    "it_ftp_login.pcap": ftp_login,
    "it_ssh_brute_force.pcap": ssh_brute_force,
    "it_telnet_ot_login.pcap": telnet_ot_login,
}
