"""Output sinks for records, registered by format name (``--format``).

A sink takes records one at a time and is closed at the end. ``jsonl`` writes one JSON object a
line (the records' schema form); ``table`` writes an aligned text table for a person.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import IO, Any, Protocol

import orjson

from parkwatch.registry import Registry
from parkwatch.schema import Record, format_ts
from parkwatch.schema.columns import Columns


class Sink(Protocol):
    def write(self, record: Record) -> None: ...
    def write_many(self, batch: Columns[Any]) -> None: ...
    def close(self) -> None: ...


SINKS: Registry[Callable[[IO[bytes]], Sink]] = Registry("output format")


@SINKS.add("jsonl")
class JsonlSink:
    """One JSON object a line, as :meth:`Record.to_dict` gives it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self._buf: list[bytes] = []

    def write(self, record: Record) -> None:
        self._buf.append(orjson.dumps(record.to_dict()))
        if len(self._buf) >= 4096:
            self._flush()

    def write_many(self, batch: Columns[Any]) -> None:
        """A whole batch at once (the fast path: no dataclass per row)."""
        self._flush()
        self.out.write(batch.jsonl())

    def _flush(self) -> None:
        if self._buf:
            self.out.write(b"\n".join(self._buf) + b"\n")
            self._buf.clear()

    def close(self) -> None:
        self._flush()
        self.out.flush()


TABLE_COLUMNS: dict[str, Sequence[str]] = {
    "parkwatch.flow": (
        "start",
        "duration",
        "proto",
        "src",
        "dst",
        "conn_state",
        "history",
        "orig_pkts",
        "resp_pkts",
        "orig_bytes",
        "resp_bytes",
        "app_proto",
        "end_reason",
    ),
}


@SINKS.add("table")
class TableSink:
    """Aligned columns for a terminal; flows get a curated column set."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.rows: list[list[str]] = []
        self.header: Sequence[str] | None = None

    def write(self, record: Record) -> None:
        d = record.to_dict()
        cols = TABLE_COLUMNS.get(type(record).SCHEMA)
        if cols is None:
            cols = [k for k in d if k != "schema"]
        self.header = self.header or cols
        if "src" in cols and "src" not in d:
            d["src"] = _endpoint(d.get("src_ip"), d.get("src_port"))
            d["dst"] = _endpoint(d.get("dst_ip"), d.get("dst_port"))
        if "duration" in cols:
            dur = (getattr(record, "end", 0) - getattr(record, "start", 0)) / 1e9
            d["duration"] = f"{dur:.3f}"
            d["start"] = format_ts(getattr(record, "start", 0))
        self.rows.append(["-" if d.get(c) is None else str(d.get(c)) for c in cols])

    def write_many(self, batch: Columns[Any]) -> None:
        for rec in batch.records():
            self.write(rec)

    def close(self) -> None:
        if self.header is None:
            self.out.flush()
            return
        table = [list(self.header), *self.rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(self.header))]
        for row in table:
            line = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            self.out.write(line.encode() + b"\n")
        self.out.flush()


def _endpoint(ip: object, port: object) -> str:
    text = str(ip)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"
