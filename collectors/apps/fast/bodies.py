"""Fast-path shape of HTTP message bodies: octets the decoder only counts.

A side of an :class:`~collectors.apps.http.Http` decoder that is inside a body framed by
Content-Length or inside a chunk's data (``remaining`` octets to go), or that reads to the end
of the connection (a response without framing, or an opaque connection after ``101`` or
CONNECT), parses a segment by counting its octets: no event, no note. Segments that stay below
``remaining`` (the octet that completes a body gives the event, so it stays per-packet) are
taken here whole, and the decoder's counters are advanced by what was taken.
"""

from __future__ import annotations

from typing import Any

from collectors.apps.fast.protos import Proto


class HttpBodyFast(Proto):
    """Body octets that complete nothing: consumed, no event."""

    name, events, whole, limited = "http", False, True, True

    def __init__(self) -> None:
        from collectors.apps import http

        self.counted = (http.LENGTH, http.CHUNK_DATA)
        self.to_end = (http.CLOSE, http.OPAQUE)

    def ready(self, dec: Any, from_client: bool) -> bool:
        mode = dec._sides[0 if from_client else 1].mode
        return mode in self.counted or mode in self.to_end

    def limit(self, dec: Any, from_client: bool) -> int | None:
        side = dec._sides[0 if from_client else 1]
        return side.remaining - 1 if side.mode in self.counted else None

    def consume(self, dec: Any, from_client: bool, octets: int) -> None:
        side = dec._sides[0 if from_client else 1]
        if side.mode in self.counted:
            side.remaining -= octets
        side.body += octets
