"""Columns: a batch of records of one schema, stored column by column.

Stages that produce many records at once (the flow table ends thousands of flows per batch)
hand them on as :class:`Columns` instead of one dataclass each. ``records()`` materialises the
dataclasses when a consumer wants them; ``jsonl()`` writes the JSON lines directly from the
columns — byte-identical to ``record.to_json()`` for every row (a test holds it to that), at a
fraction of the cost.

A column is a numpy array: int64 for non-null integer fields, object for everything else.
Fields declared ``safe`` in the schema hold ASCII text without characters JSON must escape
(addresses, hex/base64 ids, state letters); other values are encoded with orjson.

How ``jsonl()`` renders a batch: every line is the same sequence of *pieces*, and the output
is one ``b"".join`` over the pieces of all rows. Each column is looked at on a sample of rows:

* a column of one value becomes constant text;
* adjacent columns of few distinct values (protocol, zones, a flow's addresses and ports …)
  form a group: each distinct combination of their values is rendered once, and a row's piece
  is the text of its combination;
* the other columns are rendered a column at a time: timestamps as a numpy byte matrix (date
  and time once per distinct second), ints with ``%``, safe text joined and split, all other
  values with one orjson call for the whole column.

Keys and constant text go into a neighbouring piece, so a 27-field ``ot_event`` line is six
pieces. Values that compare equal but render differently (``1``, ``1.0``, ``True``) never
share a rendering, and safe text that would need escaping after all is escaped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import orjson

from parkwatch.schema.base import Record, SchemaError, format_ts

R = TypeVar("R", bound=Record)


class Columns(Generic[R]):
    """Rows of record type ``kind``; ``data`` maps every field name to a column."""

    def __init__(self, kind: type[R], data: dict[str, np.ndarray]) -> None:
        names = [f.name for f in _plan(kind)]
        if list(data) != names:
            raise SchemaError(f"columns for {kind.schema_id()} must be {names}, got {list(data)}")
        sizes = {len(col) for col in data.values()}
        if len(sizes) > 1:
            raise SchemaError(f"columns of {kind.schema_id()} differ in length: {sizes}")
        self.kind = kind
        self.data = data
        self.n = sizes.pop() if sizes else 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name]

    def take(self, idx: np.ndarray | slice) -> Columns[R]:
        """The rows at ``idx`` (an index array or a slice), in that order."""
        return Columns(self.kind, {k: v[idx] for k, v in self.data.items()})

    @staticmethod
    def concat(kind: type[R], parts: Sequence[Columns[R]]) -> Columns[R]:
        names = [f.name for f in _plan(kind)]
        if not parts:
            return Columns(kind, {k: np.zeros(0, dtype=object) for k in names})
        if len(parts) == 1:
            return parts[0]
        return Columns(kind, {k: np.concatenate([p.data[k] for p in parts]) for k in names})

    def records(self) -> list[R]:
        """One dataclass per row (Python ints and objects, as the schema types say)."""
        cols = [col.tolist() for col in self.data.values()]
        kind = self.kind
        return [kind(*row) for row in zip(*cols, strict=True)]

    def jsonl(self) -> bytes:
        """All rows as JSON lines (each ending in a newline), equal to ``to_json()`` per row."""
        n = self.n
        if not n:
            return b""
        sep = b'}\n{"schema":' + orjson.dumps(self.kind.schema_id())  # ends a line, starts one
        with _collector_paused():
            pieces = _pieces([_slot(f, self.data[f.name]) for f in _plan(self.kind)], n, sep)
        k = len(pieces)
        out: list[bytes] = [b""] * (n * k)
        for i, piece in enumerate(pieces):
            out[i::k] = [piece] * n if isinstance(piece, bytes) else piece
        out[0] = out[0][2:]  # no line ends before the first
        out.append(b"}\n")
        return b"".join(out)


class _Field(NamedTuple):
    name: str
    kind: str  # ts | int | safe | json | tsjson (a ts that may be None)
    key: bytes  # ,"name":
    hashable: bool  # declared type lets equal values stand for each other (str / None only)


_PLANS: dict[type, list[_Field]] = {}


def _plan(kind: type[Record]) -> list[_Field]:
    """The fields of ``kind`` in order, with how each is rendered."""
    plan = _PLANS.get(kind)
    if plan is None:
        plan = []
        for f in dataclasses.fields(kind):  # type: ignore[arg-type]
            t = str(f.type)
            if f.metadata.get("ts"):
                k = "tsjson" if "None" in t else "ts"
            elif t == "int":
                k = "int"
            elif f.metadata.get("safe") and t == "str":
                k = "safe"
            else:
                k = "json"
            key = b"," + orjson.dumps(f.name) + b":"
            plan.append(_Field(f.name, k, key, t in ("str", "str | None")))
        plan = _PLANS[kind] = plan
    return plan


class _Slot(NamedTuple):
    """A column's values and how to render them as JSON text."""

    key: bytes  # ,"name":
    values: list[Any]  # one per row
    render: Callable[[list[Any], bytes], list[bytes]]  # (values, prefix) -> prefix + text each
    hashable: bool = True  # equal values render the same, so they can share one rendering
    prefixed: bool = True  # render() adds a prefix for free (else it copies every text)


def _slot(f: _Field, col: np.ndarray) -> _Slot:
    if f.kind == "ts":
        ns = col.astype(np.int64)
        values = ns.tolist()
        return _Slot(f.key, values, lambda vs, p: _ts(ns if vs is values else np.array(vs), p))
    values = col.tolist()
    if f.kind == "int" and col.dtype.kind in "iu":  # (in an object column, True is not 1)
        return _Slot(f.key, values, _ints)
    if f.kind == "safe":
        return _Slot(f.key, values, _safe)
    if f.kind == "tsjson":
        values = [None if v is None else format_ts(v) for v in values]
    hashable = f.hashable or f.kind == "tsjson" or col.dtype.kind in "iub" or _hash_safe(values)
    return _Slot(f.key, values, _json, hashable, prefixed=False)


def _hash_safe(values: list[Any]) -> bool:
    """Whether values that compare equal render the same (not so for 1, 1.0 and True)."""
    if set(map(type, values[::64])) <= {type(None), int}:  # likely ints and nulls: make sure
        return not orjson.dumps(values).translate(None, b"[],-0123456789nul")  # (fast)
    types = set(map(type, values))
    return types <= {type(None), str, int} or types <= {type(None), str, bool}


_NUL = orjson.Fragment(b"\x00")  # orjson escapes control characters, so it writes no raw NUL


def _json(values: list[Any], prefix: bytes) -> list[bytes]:
    """``prefix`` + ``orjson.dumps(v)`` for every value, from one orjson call (NUL-separated)."""
    seq = [_NUL] * (2 * len(values) - 1)
    seq[::2] = values
    parts = orjson.dumps(seq).split(b",\x00,")  # fails where to_json() would (same depth)
    parts[0] = parts[0][1:]  # the list's [ and ] (one part may carry both)
    parts[-1] = parts[-1][:-1]
    return list(map(prefix.__add__, parts)) if prefix else parts


def _ints(values: list[int], prefix: bytes) -> list[bytes]:
    return list(map((prefix.replace(b"%", b"%%") + b"%d").__mod__, values))


def _safe(values: list[str], prefix: bytes) -> list[bytes]:
    """``prefix`` and the quoted text, not escaped: the schema promises no escape is needed.

    The promise is checked for the column at once (orjson's text of all the values together
    would be longer if any needed escaping); where it does not hold, orjson renders them.
    """
    try:
        text = "".join(values)
    except TypeError:  # not all str (None in a safe field)
        return _json(values, prefix)
    if not text.isascii() or len(orjson.dumps(text)) != len(text) + 2:
        return _json(values, prefix)
    p = prefix.decode()
    return (p + '"' + f'"\x00{p}"'.join(values) + '"').encode().split(b"\x00")


def _ts(ns: np.ndarray, prefix: bytes) -> list[bytes]:
    """``prefix`` and the RFC 3339 text of each timestamp, composed as a byte matrix.

    The head (``format_ts`` of the second, 20 characters: int64 nanoseconds span the years
    1677-2262) is formatted once per distinct second, the digits with numpy.
    """
    sec, frac = np.divmod(ns, 1_000_000_000)
    secs, inv = np.unique(sec, return_inverse=True)
    heads = b"".join(format_ts(s * 1_000_000_000)[:-7].encode() for s in secs.tolist())
    p = len(prefix) + 1  # prefix, '"', 'YYYY-MM-DDTHH:MM:SS.', 6 or 9 digits, 'Z"'
    m = np.zeros((len(ns), p + 31), np.uint8)
    m[:, :p] = np.frombuffer(prefix + b'"', np.uint8)
    m[:, p : p + 20] = np.frombuffer(heads, np.uint8).reshape(-1, 20)[inv]
    m[:, p + 20 : p + 26] = _digits(frac // 1000, 6)
    m[:, p + 26 : p + 28] = _ZQ
    fine = np.flatnonzero(frac % 1000)  # nanoseconds: 9 digits
    m[fine, p + 20 : p + 29] = _digits(frac[fine], 9)
    m[fine, p + 29 : p + 31] = _ZQ
    return m.view(f"S{p + 31}").ravel().tolist()  # the 3 NULs after 6 digits drop off


_ZQ = np.frombuffer(b'Z"', np.uint8)


def _digits(a: np.ndarray, width: int) -> np.ndarray:
    """ASCII decimal digits of non-negative ``a``, zero-padded: shape ``(len(a), width)``."""
    return (a[:, None] // 10 ** np.arange(width - 1, -1, -1) % 10 + 48).astype(np.uint8)


def _pieces(slots: list[_Slot], n: int, text: bytes) -> list[bytes | list[bytes]]:
    """The pieces of every line, in order: per-row texts (lists) and constant texts (bytes).

    ``text`` comes before the first slot. The values of each slot are sampled: a slot of one
    value becomes constant text; adjacent slots of few distinct values form a group, one piece
    rendered once per distinct combination of their values; the others are rendered a column
    at a time. Constant text goes into the next piece, or the group before a JSON column.
    """
    step = max(1, n // 512)
    parts: list[bytes | _Slot | list[bytes | _Slot]] = []  # constant, direct slot, group
    group: list[bytes | _Slot] = []  # the open group: constant texts and slots
    combined: list[Any] = []  # the sampled value combinations of the open group
    for s in slots:
        sample = s.values[::step]
        try:
            distinct = len(set(sample)) if s.hashable else n
        except TypeError:  # unhashable values (dicts, lists)
            distinct = n
        if distinct == 1 and s.values.count(sample[0]) == n:
            (group or parts).append(s.render(sample[:1], s.key)[0])
            continue
        if distinct <= 0.45 * len(sample):  # (combinations as hashes: no nested tuples)
            ext = list(map(hash, zip(combined, sample, strict=True))) if group else sample
            if group and len(set(ext)) <= 0.6 * len(ext):
                group.append(s)
                combined = ext
                continue
            group, combined = [s], sample
            parts.append(group)
        else:
            group = []
            parts.append(s)
    pieces: list[bytes | list[bytes]] = []
    for i, part in enumerate(parts):
        if isinstance(part, bytes):
            text += part
            continue
        if isinstance(part, list):
            after = parts[i + 1] if i + 1 < len(parts) else None
            if isinstance(after, _Slot) and not after.prefixed:  # its key goes here
                part = [*part, after.key]
                parts[i + 1] = after._replace(key=b"")
            pieces.append(_group(text, part))
        elif part.prefixed:
            pieces.append(part.render(part.values, text + part.key))
        else:
            pieces += [text + part.key] if text + part.key else []
            pieces.append(part.render(part.values, b""))
        text = b""
    return [*pieces, text] if text else pieces


def _group(text: bytes, part: list[bytes | _Slot]) -> list[bytes]:
    """Per-row texts of ``text`` and the group's constant texts and slots.

    Each distinct combination of the slots' values is rendered once, a column at a time.
    """
    slots = [p for p in part if isinstance(p, _Slot)]
    rows = zip(*[s.values for s in slots], strict=True)
    first: dict[tuple[Any, ...], int] = {}  # combination -> first row with it
    try:
        at = list(map(first.setdefault, rows, itertools.count()))
        values = [list(v) for v in zip(*first, strict=True)]
    except TypeError:  # unhashable values the sample did not show: every row on its own
        at, values = [], [s.values for s in slots]
    cols: list[Iterable[bytes]] = []
    for p in part:
        if isinstance(p, bytes):
            text += p
        elif p.prefixed:
            cols.append(p.render(values.pop(0), text + p.key))
            text = b""
        else:
            cols += [itertools.repeat(text + p.key), p.render(values.pop(0), b"")]
            text = b""
    if text:
        cols.append(itertools.repeat(text))
    texts = list(map(b"".join, zip(*cols, strict=False)))  # the repeats are endless
    if not at:
        return texts
    return list(map(dict(zip(first.values(), texts, strict=True)).__getitem__, at))


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, if on: a batch keeps thousands of small tuples (its
    distinct combinations, no cycles among them), and every collection they set off would walk
    the big per-row lists again — a quarter of the rendering time of the events of a capture."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
