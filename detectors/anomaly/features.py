"""Flow features for the flow model: one fixed-length numeric vector per ``FlowRecord`` dict.

Every feature comes from the flow record alone (no wall clock, no hour of day, no address
bits, no counters across flows), so a replay of the same capture gives the same vectors in any
order and at any time. Byte and packet counts are heavy-tailed, so they enter as ``log1p``;
categorical fields enter one-hot. ``FEATURES`` lists (name, meaning) in vector order; the
model card records the names and ``FEATURES_VERSION``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from detectors.anomaly.base import RecordDict
from parkwatch.schema import parse_ts

FEATURES_VERSION = 1
"""Bump when a feature is added, removed or changes meaning (old models then refuse to load)."""

STATE_GROUPS: dict[str, tuple[str, ...]] = {
    "state_sf": ("SF",),
    "state_s0": ("S0",),
    "state_rej": ("REJ",),
    "state_rst": ("RSTO", "RSTR", "RSTOS0", "RSTRH"),
    "state_open": ("S1", "S2", "S3"),
    "state_half": ("SH", "SHR"),
    "state_oth": ("OTH",),
}
_STATE_INDEX = {s: i for i, g in enumerate(STATE_GROUPS.values()) for s in g}

FEATURES: tuple[tuple[str, str], ...] = (
    ("orig_bytes_log", "log1p of IP-layer bytes sent by the originator"),
    ("resp_bytes_log", "log1p of IP-layer bytes sent by the responder"),
    ("orig_pkts_log", "log1p of packets sent by the originator"),
    ("resp_pkts_log", "log1p of packets sent by the responder"),
    ("orig_payload_log", "log1p of transport payload bytes sent by the originator"),
    ("resp_payload_log", "log1p of transport payload bytes sent by the responder"),
    ("duration_log", "log1p of the flow duration in milliseconds (end - start)"),
    ("resp_byte_share", "responder's share of the IP bytes of both directions (0..1)"),
    ("orig_payload_ratio", "originator payload bytes / originator IP bytes (0 for bare SYNs)"),
    ("orig_bytes_per_pkt_log", "log1p of the originator's mean IP bytes per packet"),
    ("port_well_known", "1 if the responder port is below 1024 (TCP/UDP only)"),
    ("port_registered", "1 if the responder port is 1024..49151 (TCP/UDP only)"),
    ("port_dynamic", "1 if the responder port is 49152 or above (TCP/UDP only)"),
    ("app_known", "1 if the responder port is bound to a known application protocol"),
    *((name, "1 if conn_state is " + " / ".join(states)) for name, states in STATE_GROUPS.items()),
    ("proto_tcp", "1 for TCP (IP protocol 6)"),
    ("proto_udp", "1 for UDP (17)"),
    ("proto_icmp", "1 for ICMP or ICMPv6 (1, 58)"),
    ("proto_other", "1 for any other IP protocol"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _ in FEATURES)
N_FEATURES = len(FEATURES)


def _ns(value: object) -> int:
    if isinstance(value, str):
        return parse_ts(value)
    return int(value) if isinstance(value, int) else 0


def _int(x: RecordDict, key: str) -> int:
    v = x.get(key)
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) and v > 0 else 0


def flow_features(x: RecordDict) -> list[float]:
    """The feature vector of one flow dict, in ``FEATURES`` order."""
    ob, rb = _int(x, "orig_bytes"), _int(x, "resp_bytes")
    op, rp = _int(x, "orig_pkts"), _int(x, "resp_pkts")
    opl, rpl = _int(x, "orig_payload_bytes"), _int(x, "resp_payload_bytes")
    dur_ms = max(0, _ns(x.get("end")) - _ns(x.get("start"))) / 1e6
    proto = x.get("proto")
    port = _int(x, "dst_port")
    ported = proto in (6, 17, 132)
    out = [
        math.log1p(ob),
        math.log1p(rb),
        math.log1p(op),
        math.log1p(rp),
        math.log1p(opl),
        math.log1p(rpl),
        math.log1p(dur_ms),
        rb / (ob + rb) if ob + rb else 0.0,
        min(1.0, opl / ob) if ob else 0.0,
        math.log1p(ob / op) if op else 0.0,
        1.0 if ported and port < 1024 else 0.0,
        1.0 if ported and 1024 <= port < 49152 else 0.0,
        1.0 if ported and port >= 49152 else 0.0,
        1.0 if x.get("app_proto") else 0.0,
    ]
    states = [0.0] * len(STATE_GROUPS)
    idx = _STATE_INDEX.get(str(x.get("conn_state")))
    if idx is not None:
        states[idx] = 1.0
    out.extend(states)
    out.extend(
        [
            1.0 if proto == 6 else 0.0,
            1.0 if proto == 17 else 0.0,
            1.0 if proto in (1, 58) else 0.0,
            1.0 if proto not in (1, 6, 17, 58) else 0.0,
        ]
    )
    return out


def feature_matrix(records: Iterable[RecordDict]) -> npt.NDArray[np.float64]:
    """Rows of :func:`flow_features`, shape (n, N_FEATURES)."""
    rows = [flow_features(x) for x in records]
    if not rows:
        return np.zeros((0, N_FEATURES), dtype=np.float64)
    return np.asarray(rows, dtype=np.float64)


def zone_key(x: RecordDict) -> str:
    """Which per-zone model scores a flow: the responder's zone id (what is being talked to),
    ``"external"`` when the responder is outside every listed zone."""
    return str(x.get("dst_zone") or "external")
