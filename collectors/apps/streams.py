"""In-order TCP reassembly for one direction of one connection.

Segments are placed by sequence number relative to the next expected byte: retransmitted or
overlapping bytes are trimmed (never delivered twice), segments from the future wait in a
small bounded out-of-order store, and a hole that does not fill before the store is full is a
*gap*: the caller is told (a counted weird) and the stream resynchronises at the new data.
A capture that starts mid-stream starts the stream at the first data seen.
"""

from __future__ import annotations

MOD = 1 << 32
HALF = 1 << 31


def seq_diff(a: int, b: int) -> int:
    """a - b in sequence space (signed, wrap-around aware)."""
    d = (a - b) % MOD
    return d - MOD if d >= HALF else d


class Stream:
    """One direction's byte stream: ``feed`` segments, read ``buf``, ``consume`` parsed bytes."""

    __slots__ = ("buf", "dead", "next_seq", "ooo", "ooo_bytes", "retrans")

    MAX_OOO_SEGMENTS = 64
    MAX_OOO_BYTES = 256 * 1024

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self.buf = bytearray()
        self.ooo: dict[int, bytes] = {}
        self.ooo_bytes = 0
        self.retrans = 0
        self.dead = False

    def syn(self, seq: int) -> None:
        """A SYN (or SYN-ACK) with initial sequence number ``seq``."""
        if self.next_seq is None:
            self.next_seq = (seq + 1) % MOD

    def feed(self, seq: int, data: bytes) -> bool:
        """Add a segment; returns False when a gap forced a resynchronisation."""
        if self.next_seq is None:
            self.next_seq = seq
        rel = seq_diff(seq, self.next_seq)
        if rel < 0:  # retransmission or overlap: keep only the new bytes
            if -rel >= len(data):
                self.retrans += 1
                return True
            data = data[-rel:]
            seq = self.next_seq
            rel = 0
        if rel > 0:
            if seq not in self.ooo:
                self.ooo[seq] = data
                self.ooo_bytes += len(data)
            if len(self.ooo) <= self.MAX_OOO_SEGMENTS and self.ooo_bytes <= self.MAX_OOO_BYTES:
                return True
            # the hole never filled: skip to the earliest waiting segment
            self.buf.clear()
            first = min(self.ooo, key=lambda s: seq_diff(s, self.next_seq or 0))
            self.next_seq = first
            self._drain()
            return False
        self.buf += data
        self.next_seq = (seq + len(data)) % MOD
        if self.ooo:
            self._drain()
        return True

    def _drain(self) -> None:
        while self.ooo:
            nxt = self.next_seq or 0
            ready = [s for s in self.ooo if seq_diff(s, nxt) <= 0]
            if not ready:
                return
            for s in ready:
                data = self.ooo.pop(s)
                self.ooo_bytes -= len(data)
                over = -seq_diff(s, nxt)
                if over < len(data):
                    self.buf += data[over:]
                    nxt = (s + len(data)) % MOD
                else:
                    self.retrans += 1
            self.next_seq = nxt

    def consume(self, n: int) -> None:
        if n:
            del self.buf[:n]

    def reset(self) -> None:
        """Drop unparsed bytes (after a decode error): the decoder resynchronises later."""
        self.buf.clear()
