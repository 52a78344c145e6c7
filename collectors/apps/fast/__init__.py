"""Vectorised fast path of the application engine for the clean common case.

Most candidate packets of an industrial park are polling PDUs on long-lived connections:
one (or a few) whole Modbus/TCP, S7comm or DNP3 PDU(s) per TCP segment, in order, on a stream
that buffers nothing. For those packets :class:`~collectors.apps.fast.core.FastPath` decodes
the header fields with numpy over the raw batch buffer, updates the per-flow state (next
sequence number, event counters, request/response links) in bulk and returns the events as
columns. Encrypted TLS records on a side whose handshake is over are skipped the same way (they
give no event), and so are HTTP body segments that complete no message
(:mod:`collectors.apps.fast.bodies`). Everything else — new flows, control segments,
out-of-order or partial data, shapes the fast decoders do not cover — goes to the engine's
per-packet path, which stays the reference: the fast path gives exactly the same events,
uids, links, weirds and summaries (``tests/test_app_fast.py`` decodes captures both ways and
compares).

The package imports no decoder module at import time (the decoder package imports every
module beside it in registration order; the fast path must not change that order).
"""

from __future__ import annotations

from collectors.apps.fast.core import FastPath

__all__ = ["FastPath"]
