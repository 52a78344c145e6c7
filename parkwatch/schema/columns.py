"""Columns: a batch of records of one schema, stored column by column.

Stages that produce many records at once (the flow table ends thousands of flows per batch)
hand them on as :class:`Columns` instead of one dataclass each. ``records()`` materialises the
dataclasses when a consumer wants them; ``jsonl()`` writes the JSON lines directly from the
columns — byte-identical to ``record.to_json()`` for every row (a test holds it to that), at a
fraction of the cost, because timestamps are formatted with numpy and each line is filled
from a template generated once per record type.

A column is a numpy array: int64 for non-null integer fields, object for everything else.
Fields declared ``safe`` in the schema hold ASCII text without characters JSON must escape
(addresses, hex/base64 ids, state letters); other text is encoded with orjson.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import numpy as np
import orjson

from parkwatch.schema.base import Record, SchemaError, format_ts

R = TypeVar("R", bound=Record)


class Columns(Generic[R]):
    """Rows of record type ``kind``; ``data`` maps every field name to a column."""

    def __init__(self, kind: type[R], data: dict[str, np.ndarray]) -> None:
        names = _plan(kind)[0]
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
        names = _plan(kind)[0]
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
        if not self.n:
            return b""
        names, kinds, template = _plan(self.kind)
        cols = [_render(self.data[name], kind) for name, kind in zip(names, kinds, strict=True)]
        lines = [template % row for row in zip(*cols, strict=True)]
        lines.append("")
        return "\n".join(lines).encode("utf-8")


_PLANS: dict[type, tuple[list[str], list[str], str]] = {}


def _plan(kind: type[Record]) -> tuple[list[str], list[str], str]:
    """Field names, their render kinds and the %-template of one JSON line."""
    plan = _PLANS.get(kind)
    if plan is None:
        names, kinds, parts = [], [], [f'"schema":"{kind.schema_id()}"']
        for f in dataclasses.fields(kind):  # type: ignore[arg-type]
            t = str(f.type)
            if f.metadata.get("ts") and "None" not in t:
                k, slot = "ts", '"%sZ"'
            elif t == "int":
                k, slot = "int", "%d"
            elif f.metadata.get("safe") and t == "str":
                k, slot = "safe", '"%s"'
            else:
                k, slot = ("tsjson" if f.metadata.get("ts") else "json"), "%s"
            names.append(f.name)
            kinds.append(k)
            parts.append(f'"{f.name}":{slot}')
        template = "{" + ",".join(parts) + "}"  # names are identifiers: no % to escape
        plan = _PLANS[kind] = (names, kinds, template)
    return plan


def _render(col: np.ndarray, kind: str) -> list[Any]:
    if kind == "int":
        return col.tolist()
    if kind == "safe":
        return col.tolist()
    if kind == "ts":
        ns = col.astype(np.int64)
        text = np.datetime_as_string(ns.astype("datetime64[ns]"), unit="us").tolist()
        fine = np.nonzero(ns % 1000)[0]
        for i in fine.tolist():  # nanosecond precision needed: the slow, exact formatter
            text[i] = format_ts(int(ns[i]))[:-1]
        return text
    values = col.tolist()
    if kind == "tsjson":
        values = [None if v is None else format_ts(v) for v in values]
    first = values[0] if values else None
    if (
        values
        and (first is None or type(first) is str)
        and values[-1] == first
        and values.count(first) == len(values)
    ):
        return [orjson.dumps(first).decode("utf-8")] * len(values)  # one value (vantage, None)
    try:  # few distinct values (states, zones, MACs): encode each once, map at C speed
        cache = {v: orjson.dumps(v).decode("utf-8") for v in set(values)}
        return list(map(cache.__getitem__, values))
    except TypeError:  # unhashable values (dicts, lists)
        return [orjson.dumps(v).decode("utf-8") for v in values]
