"""The application-layer engine: candidate packets in, OT/IT events out.

Per decoded batch, only *candidate* packets reach per-packet work: TCP/UDP packets of flows
whose client or server port is bound to a decoder, plus the first payload packets of unbound
flows (content probing, at most ``PROBE_PACKETS`` per flow). Everything else is left to the
vectorised flow table. Per flow the engine keeps one decoder instance, two TCP
:class:`~collectors.apps.streams.Stream` objects, the request queue for linking responses, and
the summary fields copied onto the flow record (confirmed ``app_proto``, TLS SNI, HTTP host).

Nothing raises out: a :class:`DecodeError` (or any exception a decoder lets escape) becomes a
weird with the protocol as its layer, the direction's buffer is dropped, and a flow with more
than ``MAX_ERRORS`` errors is no longer decoded (counted once more).

The clean common case (whole OT polling PDUs in order on long-lived connections, encrypted TLS
records, HTTP body octets) is decoded in bulk by :mod:`collectors.apps.fast`; the per-packet
path below handles everything else and is the reference the fast path is tested against. The
two take turns within a batch (``_rounds``): a short session's handshake goes per packet, and
its encrypted records or body segments go back to the fast path in the same batch. Events and
weirds of a batch come out in capture order (:mod:`collectors.apps.batch`), events as
:class:`~parkwatch.schema.columns.Columns` (``events``) or one record at a time (``emit``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from collectors.apps.batch import in_order
from collectors.apps.engine_capture import CaptureEvents as CaptureEvents
from collectors.apps.engine_capture import decode_capture as decode_capture
from collectors.apps.engine_decode import EngineDecode
from collectors.apps.engine_state import (
    ACK,
    FAST_CHUNK,
    FIN,
    MAX_ROUNDS,
    PROBE_PACKETS,
    RST,
    SYN,
    AppFlow,
    AppStats,
    Emit,
    EventsOut,
    Pkt,
    _be32,
    _port_table,
)
from collectors.apps.engine_state import MAX_ERRORS as MAX_ERRORS
from collectors.apps.engine_state import MAX_PENDING as MAX_PENDING
from collectors.apps.fast import FastPath
from collectors.apps.fast.core import Cand, FastResult
from collectors.communityid import packet_community_ids
from collectors.decode import FRAG_LATER, KIND_IP, Decoded
from parkwatch.schema import Weird
from parkwatch.topology import Topology


class AppEngine(EngineDecode):
    """Application decoding for one vantage point."""

    def __init__(
        self,
        topology: Topology,
        vantage: str,
        protocols: set[str] | None = None,
        fast: bool = True,
    ) -> None:
        self.topology = topology
        self.vantage = vantage
        self.table, self.decoders = _port_table()
        if protocols is not None:
            keep = np.array([0] + [cls.name in protocols for cls in self.decoders], dtype=bool)
            self.table = np.where(keep[self.table], self.table, 0).astype(np.int16)
        self.probers = [c for c in self.decoders if protocols is None or c.name in protocols]
        self.flows: dict[int, AppFlow | None] = {}  # None: unbound flow, probing failed
        self.stats = AppStats()
        self._ep: dict[tuple[int, int, int], tuple[str, Any]] = {}
        self.file: str | None = None  # capture being read (for weirds)
        self.weirds: list[Weird] = []
        self.syn_client: dict[int, bool] = {}  # unbound flow uid -> SYN sent A->B
        self.fast: FastPath | None = FastPath(self) if fast else None
        self._rows: list[tuple[Any, ...]] = []  # events of the batch (OtEvent field order)
        self._rowpos: list[int] = []  # candidate being processed when each was made
        self._at = 0
        self._wpos: list[int] = []  # candidate being processed when each weird was made

    # -- per batch --------------------------------------------------------------------------
    def process(
        self,
        d: Decoded,
        uids: np.ndarray,
        fwd: np.ndarray,
        emit: Emit,
        events: EventsOut | None = None,
    ) -> None:
        """Decode the candidate packets of batch ``d`` (``uids``/``fwd`` from the flow table).

        The batch's events go to ``events`` as one :class:`Columns` batch when it is given,
        else one :class:`OtEvent` at a time to ``emit``; in capture order either way.
        """
        proto = d.proto
        ok = (d.kind == KIND_IP) & (uids != 0) & ((proto == 6) | (proto == 17))
        ok &= d.frag != FRAG_LATER
        if not ok.any():
            return
        row = (proto == 17).astype(np.int64)
        bound = np.maximum(self.table[row, d.sport & 0xFFFF], self.table[row, d.dport & 0xFFFF])
        tcp = proto == 6
        tcpctl = tcp & ((d.flags & (SYN | FIN | RST)) != 0)
        has_data = d.payload > 0
        cand = ok & (bound > 0) & (has_data | tcpctl)
        unbound = ok & (bound == 0) & has_data
        if unbound.any():
            cand |= unbound & self._probing(uids, unbound)
        syn_only = ok & tcp & (bound == 0) & ((d.flags & (SYN | ACK)) == SYN)
        for uid, a_to_b in zip(uids[syn_only].tolist(), fwd[syn_only].tolist(), strict=True):
            self.syn_client[uid] = a_to_b  # who opened an unbound connection
        idx = np.flatnonzero(cand)
        if not len(idx):
            return
        self.stats.candidates += len(idx)
        raw = d.raw
        l4 = d.l4[idx]
        u8 = np.frombuffer(raw.buf, dtype=np.uint8)
        end = raw.data_off[idx].astype(np.int64) + raw.caplen[idx]
        is_tcp = proto[idx] == 6
        tcp_at = np.where(is_tcp, l4, 0)
        doff = np.where(is_tcp, (u8[np.minimum(tcp_at + 12, len(u8) - 1)] >> 4) * 4, 8)
        poff = l4 + doff
        avail = np.clip(np.minimum(d.payload[idx], end - poff), 0, None)
        seq = np.zeros(len(idx), dtype=np.int64)
        ack = np.zeros(len(idx), dtype=np.int64)
        if is_tcp.any():
            t = np.flatnonzero(is_tcp)
            seq[t] = _be32(u8, tcp_at[t] + 4)
            ack[t] = _be32(u8, tcp_at[t] + 8)
        c = Cand(idx, uids[idx], fwd[idx], is_tcp, poff, avail, d.payload[idx].astype(np.int64),
                 seq, d.flags[idx].astype(np.int64))  # fmt: skip
        results: list[FastResult] = []
        w0 = len(self.weirds)
        if self.fast is None:
            self._slow(d, c, np.arange(len(idx)), ack)
        else:
            for lo in range(0, len(idx), FAST_CHUNK):
                self._rounds(d, c, np.arange(lo, min(lo + FAST_CHUNK, len(idx))), ack, results)
        pos, self._wpos = self._wpos, []
        if len(pos) == len(self.weirds) - w0:  # each made by _weird in this batch
            self.weirds[w0:] = in_order(self.weirds[w0:], pos)[0]
        self._output(results, emit, events)

    def _rounds(
        self, d: Decoded, c: Cand, part: np.ndarray, ack: np.ndarray, results: list[FastResult]
    ) -> None:
        """Fast path and per-packet path in turns over candidates ``part`` of ``c``.

        Each round the fast path takes every flow's qualifying prefix; the per-packet path then
        runs each remaining flow up to the next segment that looks fast-ready again (a TLS
        side now encrypted, ...), and the rest goes back to the fast path. Flows are
        independent, so only the output order changes; events and weirds are put back in
        candidate order afterwards. The last round runs everything left per packet.
        """
        assert self.fast is not None
        for r in range(MAX_ROUNDS):
            fr = self.fast.run(d, c.take(part))
            if fr is None:
                todo = part
            else:
                todo = part[~fr.fast]
                self.stats.fast += len(part) - len(todo)
                fr.pos = part[fr.pos]
                results.append(fr)
            if not len(todo):
                return
            part = self._slow(d, c, todo, ack, lead=r < MAX_ROUNDS - 1)
            if not len(part):
                return

    def _slow(
        self, d: Decoded, c: Cand, todo: np.ndarray, ack: np.ndarray, lead: bool = False
    ) -> np.ndarray:
        """The per-packet path over candidates ``todo`` (positions into ``c``).

        With ``lead``, a flow stops at its first candidate after the first that looks
        fast-ready (:meth:`FastPath.looks_ready`); that one and the flow's later candidates
        are returned (positions), untouched.
        """
        raw = d.raw
        i_ = c.idx[todo]
        cols = zip(
            todo.tolist(),
            i_.tolist(),
            c.uid[todo].tolist(),
            c.fwd[todo].tolist(),
            c.tcp[todo].tolist(),
            c.poff[todo].tolist(),
            c.avail[todo].tolist(),
            c.wire[todo].tolist(),
            c.seq[todo].tolist(),
            ack[todo].tolist(),
            c.flags[todo].tolist(),
            raw.ts_ns[i_].tolist(),
            d.sport[i_].tolist(),
            d.dport[i_].tolist(),
            strict=True,
        )
        mv = memoryview(raw.buf)
        flows = self.flows
        cids = self._new_cids(d, c.uid[todo], i_)
        first = raw.first_frame
        fast = self.fast if lead else None
        seen: set[int] = set()
        paused: set[int] = set()
        back: list[int] = []
        for j, i, uid, a_to_b, is_t, off, n, wire_n, sq, ak, fl, ts, sp, dp in cols:
            self._at = j
            if uid in flows:
                st = flows[uid]
                if st is None:  # unbound flow whose probing failed
                    continue
                if fast is not None:
                    if uid in paused:
                        back.append(j)
                        continue
                    if (
                        uid in seen
                        and n == wire_n > 0
                        and is_t
                        and not fl & 7
                        and fast.looks_ready(st, a_to_b, sq, n)
                    ):
                        paused.add(uid)
                        back.append(j)
                        continue
                    seen.add(uid)
            else:
                st = self._new_flow(d, i, uid, a_to_b, bool(is_t), cids[uid])
                seen.add(uid)
            if (  # FIN/RST without payload: nothing to do unless its ACK closes a hole
                is_t
                and not wire_n
                and not fl & SYN
                and not (fl & ACK and st.streams[1 if a_to_b else 0].ooo)
            ):
                continue
            data = bytes(mv[off : off + n])
            if st.decoder is None and (
                not data or not self._probe(st, uid, data, a_to_b == st.client_is_a)
            ):
                continue
            ends = st.ends or self.ends(st, d, i, a_to_b)
            pk = Pkt(ts, first + i, *((ends[0], ends[1]) if a_to_b else (ends[1], ends[0])), sp, dp)
            if n < wire_n:
                self._weird(pk, st, "truncated_payload", f"{n} of {wire_n} payload bytes")
                if is_t:  # the stream has a hole now
                    st.streams[0 if a_to_b else 1].reset()
                    continue
            if is_t:
                self._tcp(pk, st, a_to_b, fl, sq, ak, data)
            elif data:
                self._udp(pk, st, a_to_b, data)
        return np.array(back, dtype=np.int64)

    def _probing(self, uids: np.ndarray, unbound: np.ndarray) -> np.ndarray:
        """Mask of unbound packets still worth probing (flow unknown or still probing)."""
        at = np.flatnonzero(unbound)
        uu = np.unique(uids[at])
        flows = self.flows
        keep = [u for u in uu.tolist() if u not in flows or flows[u] is not None]
        out = np.zeros(len(uids), dtype=bool)
        if len(keep) == len(uu):
            out[at] = True
        elif keep:
            out[at] = np.isin(uids[at], np.array(keep, dtype=np.uint64))
        return out

    # -- flow state ---------------------------------------------------------------------------
    def _new_cids(self, d: Decoded, uids: np.ndarray, idx: np.ndarray) -> dict[int, str]:
        """Community IDs of the flows among ``uids`` (packets ``idx`` of ``d``) that have no
        state yet, computed in one batch."""
        uu, at = np.unique(uids, return_index=True)
        flows = self.flows
        new = [k for k, u in enumerate(uu.tolist()) if u not in flows]
        if not new:
            return {}
        return dict(zip(uu[new].tolist(), packet_community_ids(d, idx[at[new]]), strict=True))

    def _new_flow(self, d: Decoded, i: int, uid: int, a_to_b: bool, tcp: bool, cid: str) -> AppFlow:
        """State for a new flow: who the client is, and the decoder of the server's port.

        The client is the SYN sender when the handshake was seen; otherwise the side whose
        port is not bound (both bound: the lower port is the server's). A binding on the
        client's own (ephemeral) port never chooses the decoder.
        """
        sp, dp = int(d.sport[i]) & 0xFFFF, int(d.dport[i]) & 0xFFFF
        flow = AppFlow(None, None, cid, f"C{uid:016x}")
        row = 0 if tcp else 1
        client: bool | None = None  # True: this packet's sender is the client
        if tcp and int(d.flags[i]) & (SYN | ACK) == SYN:
            client = True
        elif uid in self.syn_client:
            client = self.syn_client.pop(uid) == a_to_b
        at_s, at_d = int(self.table[row, sp]), int(self.table[row, dp])
        if client is None:
            if at_d and (not at_s or dp <= sp):
                client = True
            elif at_s:
                client = False
            else:
                client = True  # unbound: the first sender (probing decides the protocol)
        flow.client_is_a = a_to_b if client else not a_to_b
        dec_i = at_d if client else at_s
        if dec_i:
            flow.decoder = self.decoders[dec_i - 1]()
        self.flows[uid] = flow
        return flow

    def _probe(self, flow: AppFlow, uid: int, data: bytes, from_client: bool) -> bool:
        """Content recognition on an unbound flow's payload; True when a decoder took it."""
        for cls in self.probers:
            try:
                hit = cls.probe(data, from_client)
            except Exception:
                hit = False
            if hit:
                flow.decoder = cls()
                return True
        flow.probes += 1
        if flow.probes >= PROBE_PACKETS:
            self.flows[uid] = None
        return False

    # -- flow ends ------------------------------------------------------------------------------
    def finish(self, uid_hashes: list[int]) -> dict[int, dict[str, Any]]:
        """Forget ended flows; return their summaries (uid hash -> fields for the flow record)."""
        out: dict[int, dict[str, Any]] = {}
        flows = self.flows
        for u in uid_hashes:
            self.syn_client.pop(u, None)
            st = flows.pop(u, None)
            if st is not None and st.summary:
                out[u] = st.summary
        return out
