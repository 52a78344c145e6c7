"""Decoder side of the application engine: from a flow's payload to events and weirds.

:class:`EngineDecode` is a mixin of :class:`~collectors.apps.engine.AppEngine`: it feeds TCP
streams (reassembly, content gaps) and UDP datagrams to the flow's decoder, turns decode errors
into weirds, makes event rows (request/response links, the flow summary) and weirds, resolves
endpoints through the topology, and merges a batch's fast and per-packet events in capture
order.
"""

from __future__ import annotations

import socket
from collections import deque
from typing import Any

from collectors.apps.base import DecodeError, Msg
from collectors.apps.batch import in_order, merge
from collectors.apps.engine_state import (
    ACK,
    MAX_ERRORS,
    MAX_PENDING,
    SYN,
    AppFlow,
    AppStats,
    Emit,
    EventsOut,
    Pkt,
)
from collectors.apps.fast.core import FastResult
from collectors.apps.streams import Stream
from collectors.decode import Decoded
from parkwatch.schema import OtEvent, Weird
from parkwatch.schema.columns import Columns
from parkwatch.topology import Topology


class EngineDecode:
    """Delivery, event, weird and endpoint methods of :class:`~collectors.apps.engine.AppEngine`."""

    topology: Topology
    vantage: str
    stats: AppStats
    file: str | None
    weirds: list[Weird]
    _ep: dict[tuple[int, int, int], tuple[str, Any]]
    _rows: list[tuple[Any, ...]]
    _rowpos: list[int]
    _at: int
    _wpos: list[int]

    # -- delivery -----------------------------------------------------------------------------
    def _tcp(
        self, pk: Pkt, st: AppFlow, a_to_b: bool, flags: int, seq: int, ack: int, data: bytes
    ) -> None:
        stream = st.streams[0 if a_to_b else 1]
        if flags & SYN:
            stream.syn(seq)
            if not flags & ACK:
                st.client_is_a = a_to_b
        if flags & ACK:  # the peer has these bytes: a hole below it will never fill
            peer = st.streams[1 if a_to_b else 0]
            if peer.ooo:
                whole, chunks = peer.acked(ack)
                if not whole:
                    self.stats.gaps += 1
                    self._weird(
                        pk, st, "tcp_content_gap", "bytes acknowledged but not captured", True
                    )
                    self._deliver(st, peer, not a_to_b, chunks)
        if not data or stream.dead:
            return
        whole, chunks = stream.feed(seq, data, pk)
        if not whole:
            self.stats.gaps += 1
            self._weird(pk, st, "tcp_content_gap", "missing bytes, stream resynchronised")
        if chunks:
            self._deliver(st, stream, a_to_b, chunks)

    def _deliver(
        self, st: AppFlow, stream: Stream, a_to_b: bool, chunks: list[tuple[bytes, Any]]
    ) -> None:
        """Parse after each delivered chunk: messages carry the packet that completed them.

        The unparsed bytes live in ``stream.buf`` between chunks; within one chunk they are a
        local ``bytes`` (no copy when nothing was buffered before).
        """
        from_client = a_to_b == st.client_is_a
        for data, pk in chunks:
            dec = st.decoder
            if dec is None or stream.dead:
                return
            if stream.buf:
                stream.buf += data
                buf = bytes(stream.buf)
                stream.buf.clear()
            else:
                buf = data
            while buf:
                try:
                    used, msgs = dec.parse(buf, from_client)
                except Exception as exc:
                    self._decode_error(pk, st, exc)
                    buf = b""
                    break
                if used <= 0 and not msgs:
                    if len(buf) > dec.max_buffer:
                        self._weird(pk, st, "pdu_too_large", f"{len(buf)} bytes unparsed")
                        buf = b""
                    break
                if used > 0:
                    buf = buf[used:]
                for reason, detail in dec.take_notes():
                    self._weird(pk, st, reason, detail)
                for m in msgs:
                    self._event(pk, st, m)
                if used <= 0:
                    break
            if buf:
                stream.buf += buf

    def _udp(self, pk: Pkt, st: AppFlow, a_to_b: bool, data: bytes) -> None:
        dec = st.decoder
        assert dec is not None
        try:
            msgs = dec.datagram(data, a_to_b == st.client_is_a)
        except Exception as exc:
            self._decode_error(pk, st, exc)
            return
        for reason, detail in dec.take_notes():
            self._weird(pk, st, reason, detail)
        for m in msgs:
            self._event(pk, st, m)

    def _decode_error(self, pk: Pkt, st: AppFlow, exc: Exception) -> None:
        if isinstance(exc, DecodeError):
            name, detail = exc.reason, exc.detail
        else:
            name, detail = "decoder_exception", f"{type(exc).__name__}: {exc}"
        st.errors += 1
        self._weird(pk, st, name, detail)
        if st.errors >= MAX_ERRORS:
            self._weird(pk, st, "too_many_decode_errors", f"{st.errors} errors: flow dropped")
            for s in st.streams:
                s.dead = True
            st.decoder = None

    # -- output -------------------------------------------------------------------------------
    def _event(self, pk: Pkt, st: AppFlow, m: Msg) -> None:
        dec = st.decoder
        assert dec is not None
        st.count += 1
        uid = f"{st.uid}.{st.count}"
        request_uid = None
        if m.link:
            if m.direction == "request":
                q = st.pending.setdefault(m.match, deque()) if m.match is not None else st.fifo
                if len(q) < MAX_PENDING:
                    q.append(uid)
            elif m.direction == "response":
                q2 = st.pending.get(m.match) if m.match is not None else st.fifo
                if q2:
                    request_uid = q2.popleft()
                    if not q2 and m.match is not None:
                        del st.pending[m.match]  # no empty queues kept (same links)
        src, s_ep = pk.src
        dst, d_ep = pk.dst
        summary = st.summary
        name = dec.name
        if "app_proto" not in summary:
            summary["app_proto"] = name
        if m.direction == "request" and m.attrs:
            for key, dest in (("sni", "sni"), ("host", "http_host")):
                if key in m.attrs and dest not in summary:
                    summary[dest] = m.attrs[key]
        self._rows.append(
            (uid, pk.ts, name, m.direction, src, pk.sport, dst, pk.dport, st.cid, st.uid,
             self.vantage, m.unit, m.function_code, m.function_name, m.exception_code,
             request_uid, m.address, m.quantity, m.values, m.data_area, s_ep.enterprise,
             s_ep.zone, s_ep.role, d_ep.enterprise, d_ep.zone, d_ep.role, m.attrs)
        )  # fmt: skip
        self._rowpos.append(self._at)
        self.stats.events += 1
        by = self.stats.by_protocol
        by[name] = by.get(name, 0) + 1

    def _weird(
        self, pk: Pkt, st: AppFlow, name: str, detail: str, from_dst: bool = False
    ) -> None:
        """A weird stamped with packet ``pk`` and the flow's context; its sender is the side
        that sent the bad (or missing) data: ``pk``'s sender, its receiver with ``from_dst``."""
        self.stats.weird += 1
        self._wpos.append(self._at)
        proto = st.decoder.name if st.decoder is not None else None
        (src, s_ep), sport, (dst, d_ep), dport = pk.src, pk.sport, pk.dst, pk.dport
        if from_dst:
            (src, s_ep), sport, (dst, d_ep), dport = pk.dst, pk.dport, pk.src, pk.sport
        self.weirds.append(
            Weird(
                pk.ts, name, proto or "app", f"{detail} (flow {st.uid})", self.file, pk.frame,
                self.vantage, src, sport, dst, dport, proto, st.cid, st.uid, s_ep.enterprise,
                d_ep.enterprise,
            )
        )  # fmt: skip

    def ends(self, st: AppFlow, d: Decoded, i: int, a_to_b: bool) -> tuple[Any, Any]:
        """The flow's (A, B) endpoints (address text, topology Endpoint), from packet ``i``."""
        if st.ends is None:
            s, t = self._endpoint(d, i, "src"), self._endpoint(d, i, "dst")
            st.ends = (s, t) if a_to_b else (t, s)
        return st.ends

    def take_weirds(self) -> list[Weird]:
        out, self.weirds = self.weirds, []
        return out

    def _endpoint(self, d: Decoded, i: int, side: str) -> tuple[str, Any]:
        ver = int(d.ver[i])
        hi = int(getattr(d, side + "_hi")[i])
        lo = int(getattr(d, side + "_lo")[i])
        key = (ver, hi, lo)
        got = self._ep.get(key)
        if got is None:
            if ver == 4:
                text = socket.inet_ntoa((lo & 0xFFFFFFFF).to_bytes(4, "big"))
                ep = self.topology.lookup_int(4, lo & 0xFFFFFFFF)
            else:
                text = socket.inet_ntop(
                    socket.AF_INET6, hi.to_bytes(8, "big") + lo.to_bytes(8, "big")
                )
                ep = self.topology.lookup_int(6, (hi << 64) | lo)
            if len(self._ep) > 100_000:
                self._ep.clear()
            got = self._ep[key] = (text, ep)
        return got

    def _output(self, results: list[FastResult], emit: Emit, events: EventsOut | None) -> None:
        """The batch's events, fast and per-packet, merged in capture order."""
        rows, self._rows = self._rows, []
        rowpos, self._rowpos = self._rowpos, []
        if events is None and not any(len(fr.pos) for fr in results):
            for r in in_order(rows, rowpos)[0]:
                emit(OtEvent(*r))
            return
        data = merge(results, rows, rowpos)
        if data is None:
            return
        cols = Columns(OtEvent, data)
        if events is not None:
            events(cols)
        else:
            for rec in cols.records():
                emit(rec)
