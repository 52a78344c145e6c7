"""Deterministic scenario captures for ParkWatch, crafted with scapy.

``python -m replay_pcaps.generate [OUTDIR]`` writes every scenario capture: ``sample_park.pcap``
(defined here) — a few minutes of the demo park of ``park.yaml``: Modbus polling from the HMI
to two PLCs, DNS to the park resolver, web browsing to the Internet, ARP, and an attack from
Beta Chemicals' IT zone: a SYN port scan of Alpha Steel's OT zone followed by an unauthorised
Modbus write — plus the protocol scenarios of :mod:`replay_pcaps.scenarios` (one module per
protocol, each with a ``SCENARIOS`` table), each written with a ``<name>.labels.yaml`` in the
``parkwatch-labels/1`` format of ``shared/LABELS.md``. The same code writes the same bytes every
time (fixed timestamps, sequence numbers and ports).
"""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet
from scapy.utils import wrpcap

from parkwatch.schema import format_ts
from replay_pcaps.craft import MAC, Conversation

T0 = 1_763_700_000.0  # 2025-11-21T04:40:00Z
HMI, PLC1, PLC2, EWS = "10.1.2.20", "10.1.2.10", "10.1.2.11", "10.1.1.50"
DNS_SRV, ATTACKER, WEB = "10.0.0.53", "10.2.1.66", "93.184.216.34"
MAC.update(
    {
        HMI: "02:a1:00:00:02:20",
        PLC1: "02:a1:00:00:02:10",
        PLC2: "02:a1:00:00:02:11",
        EWS: "02:a1:00:00:01:50",
        DNS_SRV: "02:0e:00:00:00:53",
        ATTACKER: "02:b2:00:00:01:66",
        WEB: "02:ff:00:00:00:01",
    }
)


def modbus_read(tid: int, unit: int, start: int, qty: int) -> bytes:
    return (
        tid.to_bytes(2, "big")
        + b"\0\0\0\x06"
        + bytes([unit, 3])
        + start.to_bytes(2, "big")
        + qty.to_bytes(2, "big")
    )


def modbus_read_reply(tid: int, unit: int, qty: int) -> bytes:
    body = bytes([unit, 3, 2 * qty]) + bytes(range(2 * qty))
    return tid.to_bytes(2, "big") + b"\0\0" + len(body).to_bytes(2, "big") + body


def modbus_write(tid: int, unit: int, reg: int, value: int) -> bytes:
    return (
        tid.to_bytes(2, "big")
        + b"\0\0\0\x06"
        + bytes([unit, 6])
        + reg.to_bytes(2, "big")
        + value.to_bytes(2, "big")
    )


def sample_park() -> list[Packet]:
    out: list[Packet] = []
    for i, plc in enumerate((PLC1, PLC2)):  # HMI polls each PLC once a second for 120 s
        conv = Conversation(out, HMI, plc, 49152 + i, 502)
        t = conv.open(T0 + i * 0.1)
        for k in range(120):
            tk = t + k
            conv.send(tk, True, "PA", modbus_read(k, 1, 0, 10))
            conv.send(tk + 0.003, False, "PA", modbus_read_reply(k, 1, 10))
            conv.send(tk + 0.2, True, "A")
        conv.close(t + 120.5)
    for k in range(6):  # DNS lookups and short web sessions from the engineering station
        t = T0 + 5 + 17 * k
        q = (
            Ether(src=MAC[EWS], dst=MAC[DNS_SRV])
            / IP(src=EWS, dst=DNS_SRV)
            / UDP(sport=53000 + k, dport=53)
            / DNS(id=k, rd=1, qd=DNSQR(qname="example.com"))
        )
        r = (
            Ether(src=MAC[DNS_SRV], dst=MAC[EWS])
            / IP(src=DNS_SRV, dst=EWS)
            / UDP(sport=53, dport=53000 + k)
            / DNS(
                id=k,
                qr=1,
                ra=1,
                qd=DNSQR(qname="example.com"),
                an=DNSRR(rrname="example.com", rdata=WEB, ttl=300),
            )
        )
        q.time, r.time = t, t + 0.002
        out += [q, r]
        web = Conversation(out, EWS, WEB, 41000 + k, 80)
        tw = web.open(t + 0.01)
        web.send(tw, True, "PA", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        web.send(tw + 0.03, False, "PA", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        web.close(tw + 0.05)
    who = Ether(src=MAC[HMI], dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=MAC[HMI], psrc=HMI, pdst=PLC1
    )
    isat = Ether(src=MAC[PLC1], dst=MAC[HMI]) / ARP(
        op=2, hwsrc=MAC[PLC1], psrc=PLC1, hwdst=MAC[HMI], pdst=HMI
    )
    who.time, isat.time = T0 + 1.5, T0 + 1.5002
    out += [who, isat]
    t = T0 + 60  # attack: SYN scan of the OT zone from Beta's IT zone, then a Modbus write
    for n, port in enumerate((21, 22, 23, 80, 102, 443, 502, 2404, 20000, 44818)):
        for host in (PLC1, PLC2):
            scan = Conversation(out, ATTACKER, host, 40000 + n, port)
            ts = t + n * 0.05 + (0.01 if host == PLC2 else 0)
            scan.send(ts, True, "S")
            if port == 502:
                scan.send(ts + 0.001, False, "SA")
                scan.send(ts + 0.002, True, "R")
            elif port != 102:
                scan.send(ts + 0.001, False, "RA")
    attack = Conversation(out, ATTACKER, PLC1, 40500, 502)
    ta = attack.open(t + 5)
    attack.send(ta, True, "PA", modbus_write(1, 1, 40, 0xFFFF))
    attack.send(ta + 0.004, False, "PA", modbus_write(1, 1, 40, 0xFFFF))
    attack.close(ta + 0.01)
    out.sort(key=lambda p: float(p.time))
    return out


Scenario = Callable[[], tuple[list[Packet], dict[str, Any] | None]]
"""A scenario returns its packets (time order) and its labels (None: no labels file)."""


def _iso(t: float) -> str:
    """RFC 3339 UTC text of a capture time in seconds (microsecond precision)."""
    return format_ts(round(t * 1e6) * 1000)


SAMPLE_PARK_LABELS = {
    "description": "Demo park: Modbus polling, DNS, web and ARP, with a SYN scan of Alpha "
    "Steel's OT zone from Beta Chemicals' IT zone and an unauthorised Modbus register write.",
    "source": "parkwatch replay_pcaps generator",
    "attacks": [
        {
            "id": "scan-1",
            "category": "recon_scan",
            "techniques": ["T0846"],
            "start": _iso(T0 + 60),
            "end": _iso(T0 + 60.5),
            "attackers": [ATTACKER],
            "targets": [PLC1, PLC2],
            "outcome": "unknown",
        },
        {
            "id": "write-1",
            "category": "ot_unauthorized_write",
            "techniques": ["T0855", "T0836"],
            "start": _iso(T0 + 65),
            "end": _iso(T0 + 65.02),
            "attackers": [ATTACKER],
            "targets": [PLC1],
            "outcome": "succeeded",
        },
    ],
    "notes": "The PLC echoes the write (function 6): the write was accepted. Both attacks "
    "also cross from ent-b into ent-a, which the demo topology's conduits do not allow.",
}

SCENARIOS: dict[str, Scenario] = {"sample_park.pcap": lambda: (sample_park(), SAMPLE_PARK_LABELS)}
"""Capture name -> scenario, for the captures defined in this module."""


def all_scenarios() -> dict[str, Scenario]:
    """This module's scenarios and every ``replay_pcaps.scenarios.*`` module's."""
    from replay_pcaps import scenarios

    out = dict(SCENARIOS)
    for info in sorted(pkgutil.iter_modules(scenarios.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"replay_pcaps.scenarios.{info.name}")
        for name, make in module.SCENARIOS.items():
            if name in out:
                raise ValueError(f"scenario {name} defined twice")
            out[name] = make
    return out


def write_labels(path: Path, labels: dict[str, Any]) -> Path:
    """``<capture>.labels.yaml`` next to the capture, with its sha256 filled in."""
    doc = {
        "format": "parkwatch-labels/1",
        "capture": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        **labels,
    }
    out = path.with_name(path.name.rsplit(".", 1)[0] + ".labels.yaml")
    out.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return out


def generate(outdir: Path, only: list[str] | None = None) -> list[Path]:
    """Write every scenario capture (and labels) into ``outdir``; return the capture paths."""
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in all_scenarios().items():
        if only is not None and name not in only:
            continue
        packets, labels = make()
        path = outdir / name
        wrpcap(str(path), packets)
        if labels is not None:
            write_labels(path, labels)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent):
        print(p)
