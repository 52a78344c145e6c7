"""Fast-path shapes of Modbus/TCP, S7comm (read var), DNP3, encrypted TLS records (and HTTP
body octets, :mod:`collectors.apps.fast.bodies`).

Each :class:`Proto` says how long the PDU at an offset is (``size_of``), whether a flow's
decoder state lets a direction take the fast path (``ready``), which PDUs have a shape it
decodes exactly like the per-packet decoder (``check``), and builds their event fields
(``build``; one event per PDU). Shapes not covered fall back to the per-packet path. The
request/response key of each event is packed into an int (``encode``/``decode`` convert the
decoders' ``Msg.match`` keys).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from collectors.apps.fast.pdus import Arr, at, be16, be24, crc_dnp, le16, objcol


@dataclass
class Built:
    """Event fields of ``n`` PDUs (one event each), as columns."""

    direction: Arr
    unit: Arr
    function_code: Arr
    function_name: Arr
    exception_code: Arr
    address: Arr
    quantity: Arr
    values: Arr
    data_area: Arr
    attrs: Arr
    req: Arr  # bool: a linked request (queued for its response)
    rsp: Arr  # bool: a linked response (takes the oldest request of its key)
    key: Arr  # int64 request/response key


def _none(n: int) -> Arr:
    return np.full(n, None, dtype=object)


def _names(table: dict[int, str], codes: list[int]) -> list[str]:
    return [table.get(c) or f"unknown-{c}" for c in codes]


class Proto:
    """Base: a protocol the fast path decodes; ``index`` is set by the fast path."""

    name = ""
    hdr = 1
    index = 0
    events = True
    whole = False  # True: a segment's payload is one unit (no size_of/check)
    limited = False  # True: limit() caps the octets a side takes, consume() takes them

    def size_of(self, u8: Arr, off: Arr) -> tuple[Arr, Arr]:
        raise NotImplementedError

    def ready(self, dec: Any, from_client: bool) -> bool:
        return True

    def check(self, u8: Arr, off: Arr, size: Arr, from_client: Arr) -> Arr:
        return np.ones(len(off), dtype=bool)

    def build(self, u8: Arr, buf: Any, off: Arr, size: Arr, from_client: Arr) -> Built:
        raise NotImplementedError

    def limit(self, dec: Any, from_client: bool) -> int | None:
        return None

    def consume(self, dec: Any, from_client: bool, octets: int) -> None:
        """The fast path took ``octets`` stream octets of this side (``limited`` shapes)."""

    def encode(self, key: Hashable) -> int | None:
        return None

    def decode(self, ik: int) -> Hashable:
        return ik


class ModbusFast(Proto):
    """Reads (fc 1-4), single writes (5, 6), write echoes (5, 6, 15, 16), exceptions."""

    name, hdr = "modbus", 8

    def __init__(self) -> None:
        from collectors.apps import modbus

        self.functions, self.areas, self.exceptions = (
            modbus.FUNCTIONS,
            modbus.AREAS,
            modbus.EXCEPTIONS,
        )

    def size_of(self, u8: Arr, off: Arr) -> tuple[Arr, Arr]:
        length = be16(u8, off + 4)
        return (be16(u8, off + 2) == 0) & (length >= 2) & (length <= 254), 6 + length

    def check(self, u8: Arr, off: Arr, size: Arr, from_client: Arr) -> Arr:
        fc, dlen = at(u8, off + 7), size - 8
        code, exc = fc & 0x7F, (fc & 0x80) != 0
        req = from_client & ~exc
        read = (code >= 1) & (code <= 4)
        ok_req = req & (read | (code == 5) | (code == 6)) & (dlen >= 4)
        rsp = ~from_client & ~exc
        ok_read = read & (dlen >= 1) & (dlen >= 1 + at(u8, off + 8))
        echo = (code == 5) | (code == 6) | (code == 15) | (code == 16)
        ok_rsp = rsp & (ok_read | (echo & (dlen >= 4)))
        return ok_req | ok_rsp | (exc & (dlen >= 1))

    def build(self, u8: Arr, buf: Any, off: Arr, size: Arr, from_client: Arr) -> Built:
        n = len(off)
        tid, unit, fc = be16(u8, off), at(u8, off + 6), at(u8, off + 7)
        code, exc = fc & 0x7F, (fc & 0x80) != 0
        req = from_client & ~exc
        w1, w2 = be16(u8, off + 8), be16(u8, off + 10)
        codes = code.tolist()
        tids = tid.tolist()
        address, quantity, values, excode = _none(n), _none(n), _none(n), _none(n)
        attrs = objcol(({"transaction_id": t} for t in tids), n)
        read = (code >= 1) & (code <= 4)
        single = (code == 5) | (code == 6)
        ra = np.flatnonzero(req & read)
        address[ra], quantity[ra] = w1[ra].tolist(), w2[ra].tolist()
        wa = np.flatnonzero(~exc & single)  # single-write requests and their echoes
        raw = w2[wa]
        coil = np.where(raw == 0xFF00, 1, np.where(raw == 0, 0, raw))
        val = np.where(code[wa] == 5, coil, raw).tolist()
        address[wa], quantity[wa] = w1[wa].tolist(), 1
        values[wa] = objcol(((v,) for v in val), len(wa))
        for i in wa[(code[wa] == 5) & req[wa] & (raw != 0xFF00) & (raw != 0)].tolist():
            attrs[i]["invalid_coil_value"] = True
        ma = np.flatnonzero(~exc & ~req & ((code == 15) | (code == 16)))
        address[ma], quantity[ma] = w1[ma].tolist(), w2[ma].tolist()
        rr = np.flatnonzero(~exc & ~req & read)
        for i, bc in zip(rr.tolist(), at(u8, off[rr] + 8).tolist(), strict=True):
            attrs[i]["byte_count"] = bc
        xa = np.flatnonzero(exc)
        ex = at(u8, off[xa] + 8).tolist()
        excode[xa] = ex
        for i, e in zip(xa.tolist(), _names(self.exceptions, ex), strict=True):
            attrs[i]["exception_name"] = e
        direction = np.where(req, "request", "response").astype(object)
        names = objcol(_names(self.functions, codes), n)
        areas = objcol((self.areas.get(c) for c in codes), n)
        return Built(
            direction, objcol(unit.tolist(), n), objcol(codes, n), names, excode,
            address, quantity, values, areas, attrs, req, ~req, (tid << 8) | unit,
        )  # fmt: skip

    def encode(self, key: Hashable) -> int | None:
        if isinstance(key, tuple) and len(key) == 2:
            return int(key[0]) << 8 | int(key[1])
        return None

    def decode(self, ik: int) -> Hashable:
        return (ik >> 8, ik & 0xFF)


class S7Fast(Proto):
    """S7comm read var: one-item S7ANY job, and its one-item ack-data."""

    name, hdr = "s7comm", 4

    def __init__(self) -> None:
        from collectors.apps import s7comm_tables as t

        self.areas, self.classes, self.codes = t.AREAS, t.ERROR_CLASSES, t.RETURN_CODES
        self.job, self.ack = t.ROSCTR[1], t.ROSCTR[3]
        self.fname = t.FUNCTIONS[4]

    def size_of(self, u8: Arr, off: Arr) -> tuple[Arr, Arr]:
        length = be16(u8, off + 2)
        return (at(u8, off) == 3) & (at(u8, off + 1) == 0) & (length >= 7), length

    def ready(self, dec: Any, from_client: bool) -> bool:
        return not dec._tsaps and not dec._frag[from_client]

    def check(self, u8: Arr, off: Arr, size: Arr, from_client: Arr) -> Arr:
        q = off + 7
        head = (size >= 17) & (at(u8, off + 4) == 2) & ((at(u8, off + 5) & 0xF0) == 0xF0)
        head &= ((at(u8, off + 6) & 0x80) != 0) & (at(u8, q) == 0x32)
        rosctr, plen, dlen, pdul = at(u8, q + 1), be16(u8, q + 6), be16(u8, q + 8), size - 7
        job = (rosctr == 1) & (pdul >= 10 + plen + dlen) & (plen >= 14)
        job &= (at(u8, q + 10) == 4) & (at(u8, q + 11) == 1) & (at(u8, q + 12) == 0x12)
        job &= (at(u8, q + 13) >= 10) & (at(u8, q + 14) == 0x10)
        ack = (rosctr == 3) & (pdul >= 12 + plen + dlen) & (plen >= 2)
        ack &= (at(u8, q + 12) == 4) & (at(u8, q + 13) == 1)
        return head & (job | ack)

    def build(self, u8: Arr, buf: Any, off: Arr, size: Arr, from_client: Arr) -> Built:
        n = len(off)
        q = off + 7
        req = at(u8, q + 1) == 1
        ref = be16(u8, q + 4)
        address, quantity, area_col, excode = _none(n), _none(n), _none(n), _none(n)
        attrs = _none(n)
        j = np.flatnonzero(req)
        p = q[j] + 10
        tsize, qty, db, area = at(u8, p + 5), be16(u8, p + 6), be16(u8, p + 8), at(u8, p + 10)
        addr = be24(u8, p + 11)
        addr = np.where((area == 0x1C) | (area == 0x1D), addr << 3, addr)
        byte, bit = addr >> 3, addr & 7
        job_attrs, job_areas = [], []
        for ts, c, b, a, by, bi, r in zip(
            tsize.tolist(), qty.tolist(), db.tolist(), area.tolist(), byte.tolist(),
            bit.tolist(), ref[j].tolist(), strict=True,
        ):  # fmt: skip
            item = {"area": a, "db": b, "address": by, "bit": bi, "count": c, "transport_size": ts}
            at_ = {"variant": "s7comm", "rosctr": 1, "rosctr_name": self.job, "pdu_ref": r}
            at_["item_count"] = 1
            name = self.areas.get(a) or f"area_0x{a:02x}"
            if a in (0x84, 0x85):
                at_["db_number"] = b
                name += str(b)
            at_["bit"] = bi
            at_["items"] = [item]
            job_attrs.append(at_)
            job_areas.append(name)
        attrs[j] = objcol(job_attrs, len(j))
        area_col[j] = job_areas
        address[j], quantity[j] = byte.tolist(), qty.tolist()
        k = np.flatnonzero(~req)
        qk = q[k]
        cls, code = at(u8, qk + 10), at(u8, qk + 11)
        dlen, first = be16(u8, qk + 8), at(u8, qk + 12 + be16(u8, qk + 6))
        ack_attrs, exc = [], []
        for c, e, r, dl, rc in zip(
            cls.tolist(), code.tolist(), ref[k].tolist(), dlen.tolist(), first.tolist(),
            strict=True,
        ):  # fmt: skip
            a2: dict[str, Any] = {"variant": "s7comm", "rosctr": 3, "rosctr_name": self.ack}
            a2["pdu_ref"], a2["error_class"], a2["error_code"] = r, c, e
            a2["error_class_name"] = self.classes.get(c) or f"unknown-{c}"
            a2["item_count"] = 1
            codes = [rc] if dl else []
            a2["return_codes"] = codes
            if codes and rc != 0xFF:
                a2["item_errors"] = [self.codes.get(rc) or f"unknown-{rc}"]
            ack_attrs.append(a2)
            exc.append(c << 8 | e if c or e else None)
        attrs[k] = objcol(ack_attrs, len(k))
        excode[k] = exc
        direction = np.where(req, "request", "response").astype(object)
        return Built(
            direction, _none(n), objcol([4] * n, n), objcol([self.fname] * n, n), excode,
            address, quantity, _none(n), area_col, attrs, req, ~req, ref,
        )  # fmt: skip

    def encode(self, key: Hashable) -> int | None:
        return key if isinstance(key, int) else None


class Dnp3Fast(Proto):
    """DNP3 link frames carrying a whole application fragment (FIR and FIN set), CRCs good.

    The application layer of a fragment is decoded by the decoder's own function, memoised
    on the fragment (polls repeat the same few fragments); each event gets a copy of the attrs
    (parsed from their JSON when that round trip is exact, i.e. no tuples or bytes in them).
    """

    name, hdr = "dnp3", 10
    MEMO = 4096

    def __init__(self) -> None:
        from collectors.apps import dnp3

        self.app = dnp3._application
        self.memo: dict[tuple[int, int, int, bytes], Any] = {}

    def size_of(self, u8: Arr, off: Arr) -> tuple[Arr, Arr]:
        length = at(u8, off + 2)
        user = length - 5
        ok = (at(u8, off) == 0x05) & (at(u8, off + 1) == 0x64) & (length >= 5)
        return ok, 10 + user + 2 * ((user + 15) // 16)

    def check(self, u8: Arr, off: Arr, size: Arr, from_client: Arr) -> Arr:
        user = at(u8, off + 2) - 5
        ok = (user >= 3) & ((at(u8, off + 10) & 0xC0) == 0xC0)
        ok &= crc_dnp(u8, off, np.full(len(off), 8)) == le16(u8, off + 8)
        bs, bl, row = self._blocks(off, user)
        good = crc_dnp(u8, bs, bl) == le16(u8, bs + bl)
        ok[row[~good]] = False
        return ok

    @staticmethod
    def _blocks(off: Arr, user: Arr) -> tuple[Arr, Arr, Arr]:
        nb = np.maximum((user + 15) // 16, 0)
        row = np.repeat(np.arange(len(off)), nb)
        b = np.arange(len(row)) - np.repeat(np.cumsum(nb) - nb, nb)
        return off[row] + 10 + 18 * b, np.minimum(16, user[row] - 16 * b), row

    def build(self, u8: Arr, buf: Any, off: Arr, size: Arr, from_client: Arr) -> Built:
        n = len(off)
        user = at(u8, off + 2) - 5
        ctrl, dst, src = at(u8, off + 3).tolist(), le16(u8, off + 4), le16(u8, off + 6)
        got_all: list[tuple[Any, bytes | None]] = []
        memo, app = self.memo, self.app
        for o, us, c, d, s in zip(
            off.tolist(), user.tolist(), ctrl, dst.tolist(), src.tolist(), strict=True
        ):
            if us <= 16:
                apdu = bytes(buf[o + 11 : o + 10 + us])
            else:
                blocks = range(o + 10, o + 10 + 18 * ((us + 15) // 16), 18)
                apdu = b"".join(buf[b : b + min(16, us - 16 * i)] for i, b in enumerate(blocks))
                apdu = apdu[1:]
            mk = (c, d, s, apdu)
            got = memo.get(mk)
            if got is None:
                if len(memo) >= self.MEMO:
                    memo.clear()
                m = app(c, d, s, apdu, 1)
                assert m is not None  # FIR+FIN fragments of >= 2 octets always give one
                try:
                    js: bytes | None = orjson.dumps(m.attrs)
                except TypeError:  # bytes or other non-JSON values: copy by hand
                    js = None
                if js is not None and orjson.loads(js) != m.attrs:
                    js = None
                got = memo[mk] = (m, js)
            got_all.append(got)
        ms = [g[0] for g in got_all]
        attrs = objcol((clone(m.attrs) if js is None else orjson.loads(js) for m, js in got_all), n)
        cols = [
            objcol([getattr(m, k) for m in ms], n)
            for k in ("direction", "unit", "function_code", "function_name", "exception_code",
                      "address", "quantity", "values", "data_area")
        ]  # fmt: skip
        req = np.array([m.link and m.direction == "request" for m in ms], dtype=bool)
        rsp = np.array([m.link and m.direction == "response" for m in ms], dtype=bool)
        key = np.array([a << 32 | b << 16 | c for a, b, c in (m.match for m in ms)], np.int64)
        dirs, unit, fc, fname, exc, addr, qty, vals, area = cols
        return Built(dirs, unit, fc, fname, exc, addr, qty, vals, area, attrs, req, rsp, key)

    def encode(self, key: Hashable) -> int | None:
        if isinstance(key, tuple) and len(key) == 3:
            return int(key[0]) << 32 | int(key[1]) << 16 | int(key[2])
        return None

    def decode(self, ik: int) -> Hashable:
        return (ik >> 32, (ik >> 16) & 0xFFFF, ik & 0xFFFF)


def clone(v: Any) -> Any:
    """A copy of nested dicts and lists (attrs of a memoised message)."""
    if isinstance(v, dict):
        return {k: clone(x) for k, x in v.items()}
    if isinstance(v, list):
        return [clone(x) for x in v]
    return v


class TlsFast(Proto):
    """Records after ChangeCipherSpec on a side that is encrypted: consumed, no event."""

    name, hdr, events = "tls", 5, False

    def __init__(self) -> None:
        from collectors.apps import tls

        self.max_record = tls.MAX_RECORD

    def size_of(self, u8: Arr, off: Arr) -> tuple[Arr, Arr]:
        ctype, ln = at(u8, off), be16(u8, off + 3)
        ok = (ctype >= 20) & (ctype <= 25) & (ctype != 21)  # 21 (alert) gives an event
        ok &= (at(u8, off + 1) == 3) & (at(u8, off + 2) <= 4) & (ln <= self.max_record)
        return ok, 5 + ln

    def ready(self, dec: Any, from_client: bool) -> bool:
        return bool(dec._sides[0 if from_client else 1].encrypted)


def protos() -> dict[type, Proto]:
    """Decoder class -> its fast shapes."""
    from collectors.apps import dnp3, http, modbus, s7comm, tls
    from collectors.apps.fast.bodies import HttpBodyFast

    table: dict[type, Proto] = {
        modbus.Modbus: ModbusFast(),
        s7comm.S7comm: S7Fast(),
        dnp3.Dnp3: Dnp3Fast(),
        tls.Tls: TlsFast(),
        http.Http: HttpBodyFast(),
    }
    for i, p in enumerate(table.values()):
        p.index = i + 1
    return table
