"""In-order TCP reassembly for one direction of one connection.

Segments are placed by sequence number relative to the next expected byte: retransmitted or
overlapping bytes are trimmed (never delivered twice), segments from the future wait in a
small bounded out-of-order store, and a hole is skipped — a *gap*, which the caller counts —
as soon as the peer acknowledges bytes beyond it (they were sent, the capture missed them) or
when the store is full. A capture that starts mid-stream starts the stream at the first data.

``feed`` and ``acked`` return the *chunks* that became deliverable, in stream order, each
with the ``meta`` it was fed with (the packet it came in), so a message is stamped with the
packet that completed it even when that packet waited out of order.
"""

from __future__ import annotations

from typing import Any

MOD = 1 << 32
HALF = 1 << 31


def seq_diff(a: int, b: int) -> int:
    """a - b in sequence space (signed, wrap-around aware)."""
    d = (a - b) % MOD
    return d - MOD if d >= HALF else d


Chunk = tuple[bytes, Any]


class Stream:
    """One direction's byte stream; ``buf`` holds bytes delivered but not yet parsed."""

    __slots__ = ("buf", "dead", "next_seq", "ooo", "ooo_bytes", "retrans")

    MAX_OOO_SEGMENTS = 64
    MAX_OOO_BYTES = 256 * 1024

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self.buf = bytearray()
        self.ooo: dict[int, Chunk] = {}
        self.ooo_bytes = 0
        self.retrans = 0
        self.dead = False

    def syn(self, seq: int) -> None:
        """A SYN (or SYN-ACK) with initial sequence number ``seq``."""
        if self.next_seq is None:
            self.next_seq = (seq + 1) % MOD

    def feed(self, seq: int, data: bytes, meta: Any = None) -> tuple[bool, list[Chunk]]:
        """Add a segment: (False if a full store forced a gap, chunks now deliverable)."""
        if self.next_seq is None:
            self.next_seq = seq
        rel = seq_diff(seq, self.next_seq)
        if rel < 0:  # retransmission or overlap: keep only the new bytes
            if -rel >= len(data):
                self.retrans += 1
                return True, []
            data = data[-rel:]
            seq = self.next_seq
            rel = 0
        if rel > 0:
            if seq not in self.ooo:
                self.ooo[seq] = (data, meta)
                self.ooo_bytes += len(data)
            if len(self.ooo) <= self.MAX_OOO_SEGMENTS and self.ooo_bytes <= self.MAX_OOO_BYTES:
                return True, []
            return False, self._skip()  # the hole never filled
        self.next_seq = (seq + len(data)) % MOD
        if not self.ooo:  # the common case: in order, nothing waiting
            return True, [(data, meta)]
        return True, [(data, meta), *self._drain()]

    def acked(self, ack: int) -> tuple[bool, list[Chunk]]:
        """The peer acknowledged up to ``ack``; a hole below it is skipped now."""
        if self.next_seq is None or not self.ooo or seq_diff(ack, self.next_seq) <= 0:
            return True, []
        return False, self._skip()

    def _skip(self) -> list[Chunk]:
        self.buf.clear()  # a partial message before the hole cannot complete
        self.next_seq = min(self.ooo, key=lambda s: seq_diff(s, self.next_seq or 0))
        return self._drain()

    def _drain(self) -> list[Chunk]:
        out: list[Chunk] = []
        while self.ooo:
            nxt = self.next_seq or 0
            ready = sorted(
                (s for s in self.ooo if seq_diff(s, nxt) <= 0), key=lambda s: seq_diff(s, nxt)
            )
            if not ready:
                break
            for s in ready:
                data, meta = self.ooo.pop(s)
                self.ooo_bytes -= len(data)
                over = seq_diff(nxt, s)
                if over < len(data):
                    out.append((data[over:], meta))
                    nxt = (s + len(data)) % MOD
                else:
                    self.retrans += 1
            self.next_seq = nxt
        return out

    def consume(self, n: int) -> None:
        if n:
            del self.buf[:n]

    def reset(self) -> None:
        """Drop unparsed bytes (after a decode error): the decoder resynchronises later."""
        self.buf.clear()
