"""Test helpers: write crafted packets to a capture and run the flow pipeline over it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.utils import wrpcap

from collectors.pipeline import FlowPipeline, RunStats
from parkwatch.config import load_settings
from parkwatch.schema import ArpEvent, FlowRecord, Record, Weird
from parkwatch.schema.columns import Columns
from parkwatch.topology import Topology, load_topology

SHARED = Path(__file__).resolve().parents[2] / "shared" / "pcaps"
CLIENT_MAC, SERVER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"


@dataclass
class Result:
    flows: list[FlowRecord] = field(default_factory=list)
    arp: list[ArpEvent] = field(default_factory=list)
    weird: list[Weird] = field(default_factory=list)
    order: list[Record] = field(default_factory=list)
    stats: RunStats | None = None

    def one(self) -> FlowRecord:
        assert len(self.flows) == 1, self.flows
        return self.flows[0]


def run_capture(
    paths: list[str] | str, topology: Topology | None = None, **flow_settings: Any
) -> Result:
    """Run the pipeline with settings overrides (``tcp_idle=10``, ``batch_bytes=…``)."""
    settings = load_settings(None, flows=flow_settings or None)
    pipe = FlowPipeline(settings, topology or load_topology(None), "test")
    res = Result()

    def emit(rec: Record) -> None:
        res.order.append(rec)
        if isinstance(rec, FlowRecord):
            res.flows.append(rec)
        elif isinstance(rec, ArpEvent):
            res.arp.append(rec)
        elif isinstance(rec, Weird):
            res.weird.append(rec)

    def flows(cols: Columns[FlowRecord]) -> None:
        recs = cols.records()
        assert cols.jsonl() == b"".join(r.to_json() + b"\n" for r in recs)  # fast path == slow
        res.flows.extend(recs)
        res.order.extend(recs)

    res.stats = pipe.run([paths] if isinstance(paths, str) else paths, emit, flows)
    return res


def run_packets(
    pkts: list[Packet], tmp_path: Path, name: str = "t.pcap", **flow_settings: Any
) -> Result:
    path = tmp_path / name
    wrpcap(str(path), pkts)
    return run_capture(str(path), **flow_settings)


class Session:
    """Builds a TCP conversation with consistent seq/ack numbers and timestamps."""

    def __init__(
        self,
        client: str = "10.1.1.20",
        server: str = "10.1.2.10",
        cport: int = 40000,
        sport: int = 80,
        t0: float = 1_700_000_000.0,
        step: float = 0.01,
    ) -> None:
        self.c, self.s, self.cp, self.sp = client, server, cport, sport
        self.t, self.step = t0, step
        self.cseq, self.sseq = 1000, 5000
        self.pkts: list[Packet] = []

    def _add(self, from_client: bool, flags: str, data: bytes = b"") -> Packet:
        if from_client:
            p = (
                Ether(src=CLIENT_MAC, dst=SERVER_MAC)
                / IP(src=self.c, dst=self.s)
                / TCP(
                    sport=self.cp,
                    dport=self.sp,
                    flags=flags,
                    seq=self.cseq,
                    ack=self.sseq if "A" in flags else 0,
                )
            )
        else:
            p = (
                Ether(src=SERVER_MAC, dst=CLIENT_MAC)
                / IP(src=self.s, dst=self.c)
                / TCP(
                    sport=self.sp,
                    dport=self.cp,
                    flags=flags,
                    seq=self.sseq,
                    ack=self.cseq if "A" in flags else 0,
                )
            )
        if data:
            p = p / data
        adv = len(data) + (1 if ("S" in flags or "F" in flags) else 0)
        if from_client:
            self.cseq += adv
        else:
            self.sseq += adv
        p.time = self.t
        self.t += self.step
        self.pkts.append(p)
        return p

    def c2s(self, flags: str, data: bytes = b"") -> Session:
        self._add(True, flags, data)
        return self

    def s2c(self, flags: str, data: bytes = b"") -> Session:
        self._add(False, flags, data)
        return self

    def handshake(self) -> Session:
        return self.c2s("S").s2c("SA").c2s("A")

    def http(self) -> Session:
        return (
            self.handshake()
            .c2s("PA", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .s2c("A")
            .s2c("PA", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .c2s("FA")
            .s2c("A")
            .s2c("FA")
            .c2s("A")
        )

    def pause(self, seconds: float) -> Session:
        self.t += seconds
        return self


def udp(src: str, dst: str, sport: int, dport: int, t: float, data: bytes = b"x") -> Packet:
    p = (
        Ether(src=CLIENT_MAC, dst=SERVER_MAC)
        / IP(src=src, dst=dst)
        / UDP(sport=sport, dport=dport)
        / data
    )
    p.time = t
    return p


def icmp(src: str, dst: str, typ: int, t: float, code: int = 0) -> Packet:
    p = Ether() / IP(src=src, dst=dst) / ICMP(type=typ, code=code, id=7, seq=1) / b"ping"
    p.time = t
    return p


def tshark_rows(
    path: Path, display: str, *fields: str, every: bool = True, decode_as: tuple[str, ...] = ()
) -> list[tuple]:
    """tshark's (time rounded to µs, ip.src, ip.dst, *fields) per frame matching ``display``.

    ``every``: each field's values in the frame joined by '|' (else only the first value);
    ``decode_as``: ``-d`` rules such as ``tcp.port==902,ssh``.
    """
    import shutil
    import subprocess

    tshark = shutil.which("tshark")
    assert tshark is not None
    cmd = [tshark, "-n", *(x for rule in decode_as for x in ("-d", rule)), "-r", str(path)]
    cmd += ["-Y", display, "-T", "fields"]
    cmd += ["-E", "occurrence=a", "-E", "aggregator=|"] if every else ["-E", "occurrence=f"]
    for f in ("frame.time_epoch", "ip.src", "ip.dst", *fields):
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
    rows = []
    for line in out.splitlines():
        t, s, d, *v = line.split("\t")
        rows.append((round(float(t), 6), s, d, *v))
    return rows
