"""The rule-test harness: replay a capture through the whole detection input (flows, ARP,
protocol events and weirds, decoders on) and check that a rule fires on one capture and not on
another.

Used by tests/test_sigma_rules_{it,ot,app}.py. A capture spec is a generated scenario name
(``replay_pcaps/<name>.pcap``), ``shared:<path>`` (skipped when ../shared is absent) or a
function returning scapy packets; ``without``/``moved`` make variants of generated captures.
Topology kinds: ``park``, ``default``, ``park_or_default`` (shared captures without the park
topology) and ``park/default`` (the firing capture with it, the silent one without).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import Packet
from scapy.utils import rdpcap, wrpcap

from collectors.pipeline import FlowPipeline
from detectors.sigma import SigmaEngine, load_pack
from parkwatch.config import load_settings
from parkwatch.schema import Alert, ArpEvent, FlowRecord, OtEvent, Weird
from parkwatch.topology import Topology, load_topology
from tests.helpers import SHARED

ROOT = Path(__file__).resolve().parents[1]
REPLAY = ROOT / "replay_pcaps"
PACK = load_pack(ROOT / "rules")
PARK = load_topology(REPLAY / "park.yaml")


def replay(path: Path, topology: Topology | None) -> list[Alert]:
    """Flows, ARP, protocol events and weirds of a capture through the engine (decoders on),
    then flush."""
    topo = topology or load_topology(None)
    engine = SigmaEngine(PACK, topo)
    pipe = FlowPipeline(load_settings(None), topo, "test", apps="all")
    alerts: list[Alert] = []

    def emit(rec: Any) -> None:
        if isinstance(rec, ArpEvent):
            alerts.extend(engine.process("arp", rec.to_dict()))
        elif isinstance(rec, OtEvent):
            alerts.extend(engine.process(rec.protocol, rec.to_dict()))
        elif isinstance(rec, Weird):
            alerts.extend(engine.process("weird", rec.to_dict()))

    def flows(cols: Any) -> None:
        for rec in cols.records():
            if isinstance(rec, FlowRecord):
                alerts.extend(engine.process("flow", rec.to_dict()))

    pipe.run([str(path)], emit, flows)
    return alerts + engine.flush()


def rule_id(name: str) -> str:
    for rule, meta in [*PACK.rules, *PACK.correlations]:
        if rule.name == name:
            return meta.id
    raise KeyError(name)


def without(capture: str, host: str) -> Callable[[], list[Packet]]:
    """A generated capture with every packet to or from ``host`` left out."""

    def make() -> list[Packet]:
        return [
            p
            for p in rdpcap(str(REPLAY / f"{capture}.pcap"))
            if IP not in p or host not in (p[IP].src, p[IP].dst)
        ]

    return make


def moved(capture: str, old: str, new: str) -> Callable[[], list[Packet]]:
    """A generated capture with address ``old`` replaced by ``new`` (checksums recomputed)."""

    def make() -> list[Packet]:
        out = []
        for p in rdpcap(str(REPLAY / f"{capture}.pcap")):
            if IP in p and old in (p[IP].src, p[IP].dst):
                t = p.time
                if p[IP].src == old:
                    p[IP].src = new
                if p[IP].dst == old:
                    p[IP].dst = new
                del p[IP].chksum
                for layer in (TCP, UDP):
                    if layer in p:
                        del p[layer].chksum
                p = p.__class__(bytes(p))
                p.time = t
            out.append(p)
        return out

    return make


def capture(spec: Any, tmp_path: Path, tag: str) -> Path:
    if callable(spec):
        path = tmp_path / f"{tag}.pcap"
        wrpcap(str(path), spec())
        return path
    if spec.startswith("shared:"):
        path = SHARED / spec.removeprefix("shared:")
        if not path.exists():
            pytest.skip(f"shared capture {path} absent")
        return path
    return REPLAY / f"{spec}.pcap"


def topology(kind: str, spec: Any, firing: bool) -> Topology | None:
    if kind == "park_or_default":  # shared captures use their own addresses
        return None if isinstance(spec, str) and spec.startswith("shared:") else PARK
    if kind == "park/default":
        return PARK if firing else None
    return PARK if kind == "park" else None


def check_case(name: str, fires: Any, silent: Any, topo: str, tmp_path: Path) -> None:
    rid = rule_id(name)
    hits = [
        a
        for a in replay(capture(fires, tmp_path, "fire"), topology(topo, fires, True))
        if a.rule_id == rid
    ]
    assert hits, f"{name} did not fire"
    a = hits[0]
    assert a.detector == "sigma" and a.techniques and a.category and a.level
    assert a.attackers and a.reason
    assert a.event_uids or a.flow_uids or a.evidence.get("count")
    quiet = [
        a
        for a in replay(capture(silent, tmp_path, "silent"), topology(topo, silent, False))
        if a.rule_id == rid
    ]
    assert not quiet, f"{name} fired on the silent capture: {quiet[0].reason}"


def outputs(folder: str) -> set[str]:
    """Names of the standalone rules and correlations loaded from ``rules/<folder>``."""
    base = ROOT / "rules" / folder
    corr = {
        str(r.name)
        for r, m in PACK.correlations
        if m.source and base in Path(m.source).resolve().parents
    }
    referenced = {ref.reference for r, _ in PACK.correlations for ref in r.referenced_rules}
    alone = {
        str(r.name)
        for r, m in PACK.rules
        if r.name not in referenced
        and m.source is not None
        and base in Path(m.source).resolve().parents
    }
    return corr | alone
