"""Constants and per-flow state of the application engine (:mod:`collectors.apps.engine`).

:class:`AppFlow` (one flow's decoder, streams and request links), :class:`Pkt` (what messages
and weirds are stamped with), :class:`AppStats`, and the small array helpers the engine uses
(port table, big-endian reads, packed addresses).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from collectors.apps import APP_DECODERS
from collectors.apps.base import AppDecoder
from collectors.apps.streams import Stream
from parkwatch.schema import OtEvent, Weird
from parkwatch.schema.columns import Columns

SYN, FIN, RST, ACK = 2, 1, 4, 16
PROBE_PACKETS = 4
MAX_ERRORS = 8
MAX_PENDING = 4096
FAST_CHUNK = 1 << 16
"""Candidates per fast-path chunk (each chunk runs up to ``MAX_ROUNDS`` rounds)."""
MAX_ROUNDS = 8
"""Fast/per-packet turns per chunk; the last round is all per-packet."""
Emit = Callable[[OtEvent | Weird], None]
EventsOut = Callable[[Columns[OtEvent]], None]


def _port_table() -> tuple[np.ndarray, list[type[AppDecoder]]]:
    """(2, 65536) table: decoder index + 1 bound to each TCP (row 0) / UDP (row 1) port."""
    decoders = [cls for _, cls in APP_DECODERS.items()]
    table = np.zeros((2, 65536), dtype=np.int16)
    for i, cls in enumerate(decoders):
        for row, ports in ((0, cls.tcp_ports), (1, cls.udp_ports)):
            for p in ports:
                if not table[row, p]:
                    table[row, p] = i + 1
    return table, decoders


class Pkt(NamedTuple):
    """The packet a chunk of stream came in: what its messages and weirds are stamped with."""

    ts: int
    frame: int
    src: tuple[str, Any]  # (address text, topology Endpoint)
    dst: tuple[str, Any]
    sport: int
    dport: int


@dataclass
class AppFlow:
    """Application state of one flow."""

    decoder: AppDecoder | None
    client_is_a: bool | None  # True: the canonical A endpoint is the client
    cid: str
    uid: str
    streams: tuple[Stream, Stream] = field(default_factory=lambda: (Stream(), Stream()))
    pending: dict[Hashable, deque[str]] = field(default_factory=dict)
    fifo: deque[str] = field(default_factory=deque)
    count: int = 0
    errors: int = 0
    probes: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    ends: tuple[tuple[str, Any], tuple[str, Any]] | None = None  # (A, B): text, Endpoint


@dataclass
class AppStats:
    candidates: int = 0
    events: int = 0
    weird: int = 0
    gaps: int = 0
    fast: int = 0  # candidates decoded by the fast path
    by_protocol: dict[str, int] = field(default_factory=dict)


def _be32(u8: np.ndarray, at: np.ndarray) -> np.ndarray:
    return (
        (u8[at].astype(np.int64) << 24)
        | (u8[at + 1].astype(np.int64) << 16)
        | (u8[at + 2].astype(np.int64) << 8)
        | u8[at + 3]
    )
