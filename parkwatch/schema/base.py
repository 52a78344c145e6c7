"""Record base: versioned, documented dataclasses with an exact JSON round trip.

Every record type names its schema (``parkwatch.flow``) and major version; its JSON form carries
``"schema": "parkwatch.flow/1"``. Every field has a one-line doc in ``metadata["doc"]``.
Timestamps are integers (nanoseconds since the Unix epoch) in Python and RFC 3339 UTC strings
in JSON (6 fractional digits, 9 when the nanoseconds need them), so a round trip is exact.
"""

from __future__ import annotations

import calendar
import dataclasses
import time
from typing import Any, ClassVar, Self

import orjson

from parkwatch.errors import ParkWatchError


class SchemaError(ParkWatchError):
    """A record that does not fit its schema (unknown field, wrong version, bad timestamp)."""

    hint = "check the producer's schema version against this ParkWatch version"


def doc(
    text: str,
    *,
    ts: bool = False,
    safe: bool = False,
    default: Any = dataclasses.MISSING,
    factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with its one-line doc.

    ``ts=True`` marks a nanosecond timestamp (RFC 3339 in JSON); ``safe=True`` promises ASCII
    text with nothing JSON must escape (lets :mod:`parkwatch.schema.columns` skip encoding).
    """
    meta = {"doc": text, "ts": ts, "safe": safe}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


_sec_cache: dict[int, str] = {}


def format_ts(ns: int) -> str:
    """RFC 3339 UTC text for ``ns`` nanoseconds since the epoch."""
    sec, frac = divmod(ns, 1_000_000_000)
    head = _sec_cache.get(sec)
    if head is None:
        if len(_sec_cache) > 4096:
            _sec_cache.clear()
        head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _sec_cache[sec] = head
    if frac % 1000:
        return f"{head}.{frac:09d}Z"
    return f"{head}.{frac // 1000:06d}Z"


def parse_ts(text: str) -> int:
    """Nanoseconds since the epoch from RFC 3339 text (``Z`` or a numeric offset)."""
    try:
        s = text.strip()
        offset = 0
        if s.endswith(("Z", "z")):
            s = s[:-1]
        elif len(s) > 6 and s[-6] in "+-" and s[-3] == ":":
            sign = 1 if s[-6] == "+" else -1
            offset = sign * (int(s[-5:-3]) * 3600 + int(s[-2:]) * 60)
            s = s[:-6]
        frac_ns = 0
        if "." in s:
            s, frac = s.split(".", 1)
            if not frac.isdigit() or len(frac) > 9:
                raise ValueError(frac)
            frac_ns = int(frac.ljust(9, "0"))
        sec = calendar.timegm(time.strptime(s.replace("t", "T"), "%Y-%m-%dT%H:%M:%S"))
        return (sec - offset) * 1_000_000_000 + frac_ns
    except (ValueError, IndexError) as exc:
        raise SchemaError(f"not an RFC 3339 timestamp: {text!r}") from exc


def _compile_to_dict(cls: type) -> Any:
    items = [f'"schema": {cls.schema_id()!r}']  # type: ignore[attr-defined]
    for f in dataclasses.fields(cls):
        value = f"self.{f.name}"
        if f.metadata.get("ts"):
            value = f"(None if self.{f.name} is None else _fmt(self.{f.name}))"
        items.append(f"{f.name!r}: {value}")
    src = "def to_dict(self):\n    return {" + ", ".join(items) + "}\n"
    scope: dict[str, Any] = {"_fmt": format_ts}
    exec(compile(src, f"<to_dict {cls.__name__}>", "exec"), scope)
    return scope["to_dict"]


class Record:
    """Mixin for schema dataclasses: ``to_dict``/``from_dict`` and JSON."""

    SCHEMA: ClassVar[str]
    VERSION: ClassVar[int]
    READS: ClassVar[tuple[int, ...]] = ()
    """Older major versions whose records read as this one (fields added since are optional)."""
    _TS_FIELDS: ClassVar[frozenset[str]]
    _FIELDS: ClassVar[tuple[str, ...]]

    @classmethod
    def _meta(cls) -> None:
        if "_FIELDS" not in cls.__dict__:
            fields = dataclasses.fields(cls)  # type: ignore[arg-type]
            cls._FIELDS = tuple(f.name for f in fields)
            cls._TS_FIELDS = frozenset(f.name for f in fields if f.metadata.get("ts"))
            cls._to_dict = _compile_to_dict(cls)  # type: ignore[attr-defined]

    @classmethod
    def schema_id(cls) -> str:
        return f"{cls.SCHEMA}/{cls.VERSION}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the schema id first, timestamps as RFC 3339 text.

        Generated once per class (one dict display, no loop): this runs once per record.
        """
        fn = type(self).__dict__.get("_to_dict")
        if fn is None:
            type(self)._meta()
            fn = type(self).__dict__["_to_dict"]
        return fn(self)

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; refuses unknown fields and other schemas/versions."""
        cls._meta()
        data = dict(data)
        sid = data.pop("schema", cls.schema_id())
        name, _, version = str(sid).partition("/")
        if name != cls.SCHEMA or (
            version != str(cls.VERSION) and version not in {str(v) for v in cls.READS}
        ):
            raise SchemaError(f"record is {sid!r}, expected {cls.schema_id()!r}")
        unknown = set(data) - set(cls._FIELDS)
        if unknown:
            raise SchemaError(f"unknown fields for {cls.schema_id()}: {sorted(unknown)}")
        for name in cls._TS_FIELDS:
            if isinstance(data.get(name), str):
                data[name] = parse_ts(data[name])
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if isinstance(data.get(f.name), list) and "tuple" in str(f.type):
                data[f.name] = tuple(data[f.name])
        try:
            return cls(**data)
        except TypeError as exc:
            raise SchemaError(f"{cls.schema_id()}: {exc}") from exc

    @classmethod
    def from_json(cls, text: bytes | str) -> Self:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise SchemaError(f"not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise SchemaError("a record must be a JSON object")
        return cls.from_dict(data)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(field, type, one-line doc) for every field — the schema's documentation."""
        return [(f.name, str(f.type), f.metadata.get("doc", "")) for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
