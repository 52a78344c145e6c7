"""Crafting helpers shared by the scenario generators (scapy, deterministic)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha1
from typing import Any

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

MAC: dict[str, str] = {}
"""Fixed MAC per IP address; unknown addresses get one derived from the address."""


def mac_of(ip: str) -> str:
    """A stable locally administered MAC for ``ip``."""
    if ip in MAC:
        return MAC[ip]
    tail = bytes(int(x) for x in ip.split(".")) if "." in ip else sha1(ip.encode()).digest()[:4]
    return (b"\x02\xa0" + tail).hex(":")


class Conversation:
    """A TCP connection with consistent sequence numbers."""

    def __init__(self, out: list[Packet], c: str, s: str, cport: int, sport: int) -> None:
        self.out, self.c, self.s, self.cp, self.sp = out, c, s, cport, sport
        self.cseq, self.sseq = 0x1000 + cport, 0x8000 + sport

    def send(self, t: float, from_client: bool, flags: str, data: bytes = b"") -> None:
        src, dst = (self.c, self.s) if from_client else (self.s, self.c)
        sp, dp = (self.cp, self.sp) if from_client else (self.sp, self.cp)
        seq, ack = (self.cseq, self.sseq) if from_client else (self.sseq, self.cseq)
        p = (
            Ether(src=MAC.get(src, "02:00:00:00:00:fe"), dst=MAC.get(dst, "02:00:00:00:00:fe"))
            / IP(src=src, dst=dst, id=(seq & 0xFFFF), ttl=64)
            / TCP(
                sport=sp,
                dport=dp,
                flags=flags,
                seq=seq,
                ack=ack if "A" in flags else 0,
                window=8192,
            )
        )
        if data:
            p = p / Raw(data)
        p.time = t
        self.out.append(p)
        adv = len(data) + (1 if ("S" in flags or "F" in flags) else 0)
        if from_client:
            self.cseq += adv
        else:
            self.sseq += adv

    def open(self, t: float) -> float:
        self.send(t, True, "S")
        self.send(t + 0.0004, False, "SA")
        self.send(t + 0.0008, True, "A")
        return t + 0.001

    def close(self, t: float) -> None:
        self.send(t, True, "FA")
        self.send(t + 0.0004, False, "FA")
        self.send(t + 0.0008, True, "A")


def udp_packet(t: float, src: str, dst: str, sport: int, dport: int, payload: bytes) -> Packet:
    """One Ethernet/IPv4/UDP packet at time ``t``."""
    p = (
        Ether(src=mac_of(src), dst=mac_of(dst))
        / IP(src=src, dst=dst, ttl=64)
        / UDP(sport=sport, dport=dport)
        / Raw(payload)
    )
    p.time = t
    return p


SOURCE = "parkwatch replay_pcaps generator"


@dataclass
class Capture:
    """Packets of one scenario, its protocol messages with the tshark fields each must show
    (``marks``), and its labels."""

    packets: list[Packet] = field(default_factory=list)
    marks: list[tuple[Packet, tuple[str, ...]]] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)

    def expected(self) -> list[tuple[int, str, tuple[str, ...]]]:
        """(frame number, IP source, tshark fields) of every marked message, in frame order."""
        frame = {id(p): n for n, p in enumerate(self.packets, 1)}
        return sorted((frame[id(p)], p["IP"].src, f) for p, f in self.marks)


def iso(t: float) -> str:
    """RFC 3339 UTC text of a capture time (whole seconds)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def attack(
    ident: str,
    category: str,
    techniques: list[str],
    span: tuple[float, float],
    *,
    attackers: list[str],
    targets: list[str],
    outcome: str,
) -> dict[str, Any]:
    """One labelled attack (LABELS.md); the window is widened to whole seconds."""
    return {
        "id": ident,
        "category": category,
        "techniques": techniques,
        "start": iso(math.floor(span[0])),
        "end": iso(math.ceil(span[1])),
        "attackers": attackers,
        "targets": targets,
        "outcome": outcome,
    }


def finish(cap: Capture, description: str, attacks: list[dict[str, Any]], notes: str) -> Capture:
    """Sort the packets by time and attach the labels."""
    cap.packets.sort(key=lambda p: float(p.time))
    cap.labels = {"description": description, "source": SOURCE, "attacks": attacks, "notes": notes}
    return cap


def scenarios(captures: dict[str, Callable[[], Capture]]) -> dict[str, Any]:
    """The ``SCENARIOS`` table of a module whose builders return a :class:`Capture`."""

    def scenario(build: Callable[[], Capture]) -> Callable[[], tuple[list[Packet], dict]]:
        def make() -> tuple[list[Packet], dict]:
            cap = build()
            return cap.packets, cap.labels

        return make

    return {name: scenario(build) for name, build in captures.items()}
