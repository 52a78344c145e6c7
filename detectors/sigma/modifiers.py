"""Value matchers: one pySigma value (modifiers already applied) -> ``match(field_value) -> bool``.

pySigma turns ``field|modifier: value`` into typed values; each becomes a small Python function
here. Semantics (Sigma specification, Elasticsearch-like where the spec is silent):

- strings match case-insensitively (``|cased`` makes them case-sensitive); ``*`` and ``?``
  wildcards (from the value, or added by ``contains``/``startswith``/``endswith``) cover the
  whole field value; ``base64``, ``base64offset``, ``wide``/``utf16*`` and ``windash`` are
  encodings pySigma expands into plain strings (alternatives OR-linked);
- a number matches a numeric field of that value or a text field spelling it (``"22"``); a
  string that spells a number also matches the number; booleans match booleans (or
  ``"true"``/``"false"`` text); numbers and booleans match case-insensitive text otherwise;
- ``re`` searches (not anchored: write ``^``/``$``) with the ``i``, ``m``, ``s`` flags;
- ``cidr`` matches IPv4/IPv6 address text inside the network (never a non-address);
- ``gt``/``gte``/``lt``/``lte``/``neq`` compare numeric fields only (booleans and text never
  match);
- list-valued fields (``values``, ``answers`` …) match when any element matches;
- a missing field and a ``None`` value match only ``null``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExpansion,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SpecialChars,
    TimestampPart,
)

Matcher = Callable[[Any], bool]
_SEQ = (list, tuple)


class UnsupportedValue(Exception):
    """A value type ParkWatch cannot evaluate in-stream (placeholders, query expressions)."""


def text(v: Any) -> str:
    """Text form of a scalar field value for string matching."""
    if v.__class__ is bool:
        return "true" if v else "false"
    return v if v.__class__ is str else str(v)


def is_plain(value: Any) -> bool:
    """Whether ``value`` is a plain equality value (mergeable into one set lookup)."""
    if isinstance(value, SigmaCasedString):
        return False
    if isinstance(value, SigmaString):
        return not value.contains_special() and all(isinstance(p, str) for p in value.s)
    return isinstance(value, (SigmaNumber, SigmaBool)) and not isinstance(value, SigmaTimestampPart)


def equality_set(values: list[Any]) -> Matcher:
    """One set lookup for OR-linked plain values (strings lower-cased, numbers both ways)."""
    strs: set[str] = set()
    nums: set[int | float] = set()
    bools: set[bool] = set()
    for value in values:
        if isinstance(value, SigmaBool):
            bools.add(value.boolean)
            strs.add("true" if value.boolean else "false")
        elif isinstance(value, SigmaNumber):
            nums.add(value.number)
            strs.add(str(value.number))
        else:
            s = str(value.s[0]) if value.s else ""
            strs.add(s.lower())
            if s.lstrip("-").isdigit():
                nums.add(int(s))
    fs, fn, fb = frozenset(strs), frozenset(nums), frozenset(bools)

    def match(v: Any) -> bool:
        t = v.__class__
        if t is str:
            return v.lower() in fs
        if t is int or t is float:
            return v in fn
        if t is bool:
            return v in fb
        if v is None:
            return False
        if t in _SEQ:
            return any(match(x) for x in v)
        return text(v).lower() in fs

    return match


def _on_text(f: Callable[[str], bool]) -> Matcher:
    def match(v: Any) -> bool:
        if v is None:
            return False
        t = v.__class__
        if t is str:
            return f(v)
        if t in _SEQ:
            return any(match(x) for x in v)
        return f(text(v))

    return match


def _string(value: SigmaString, cased: bool) -> Matcher:
    parts = value.s
    for p in parts:
        if not isinstance(p, (str, SpecialChars)):
            raise UnsupportedValue(f"placeholder {p!r} in value (expand modifier) is not supported")
    multi = SpecialChars.WILDCARD_MULTI
    plain = [p for p in parts if isinstance(p, str)]
    norm = (lambda s: s) if cased else str.lower
    if all(isinstance(p, str) for p in parts):
        c = norm("".join(plain))
        return _on_text(lambda s: norm(s) == c)
    if len(parts) == 3 and parts[0] is multi and parts[2] is multi and len(plain) == 1:
        c = norm(plain[0])
        return _on_text(lambda s: c in norm(s))
    if len(parts) == 2 and parts[1] is multi and isinstance(parts[0], str):
        c = norm(parts[0])
        return _on_text(lambda s: norm(s).startswith(c))
    if len(parts) == 2 and parts[0] is multi and isinstance(parts[1], str):
        c = norm(parts[1])
        return _on_text(lambda s: norm(s).endswith(c))
    pattern = "".join(
        re.escape(p) if isinstance(p, str) else (".*" if p is multi else ".") for p in parts
    )
    rx = re.compile(pattern, re.DOTALL | (0 if cased else re.IGNORECASE))
    return _on_text(lambda s: rx.fullmatch(s) is not None)


def _regex(value: SigmaRegularExpression) -> Matcher:
    flags = 0
    for flag in value.flags:
        flags |= {
            SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
            SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
            SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
        }[flag]
    rx = re.compile(str(value.regexp), flags)
    return _on_text(lambda s: rx.search(s) is not None)


def _cidr(value: SigmaCIDRExpression) -> Matcher:
    net = value.network
    cache: dict[str, bool] = {}

    def inside(s: str) -> bool:
        hit = cache.get(s)
        if hit is None:
            try:
                addr = ipaddress.ip_address(s)
                hit = addr.version == net.version and addr in net
            except ValueError:
                hit = False
            if len(cache) >= 65536:
                cache.clear()
            cache[s] = hit
        return hit

    def match(v: Any) -> bool:
        if v.__class__ is str:
            return inside(v)
        if v.__class__ in _SEQ:
            return any(match(x) for x in v)
        return False

    return match


_OPS: dict[CompareOperators, Callable[[Any, Any], bool]] = {
    CompareOperators.LT: lambda a, b: a < b,
    CompareOperators.LTE: lambda a, b: a <= b,
    CompareOperators.GT: lambda a, b: a > b,
    CompareOperators.GTE: lambda a, b: a >= b,
    CompareOperators.NEQ: lambda a, b: a != b,
}


def _compare(value: SigmaCompareExpression) -> Matcher:
    op, n = _OPS[value.op], value.number.number

    def match(v: Any) -> bool:
        t = v.__class__
        if t is int or t is float:
            return op(v, n)
        if t in _SEQ:
            return any(match(x) for x in v)
        return False

    return match


_TS_PART = {
    TimestampPart.MINUTE: lambda d: d.minute,
    TimestampPart.HOUR: lambda d: d.hour,
    TimestampPart.DAY: lambda d: d.day,
    TimestampPart.WEEK: lambda d: d.isocalendar()[1],
    TimestampPart.MONTH: lambda d: d.month,
    TimestampPart.YEAR: lambda d: d.year,
}


def _timestamp(value: SigmaTimestampPart) -> Matcher:
    import datetime as dt

    from parkwatch.schema import SchemaError, parse_ts

    part, n = _TS_PART[value.timestamp_part], value.number

    def match(v: Any) -> bool:
        try:
            ns = parse_ts(v) if isinstance(v, str) else v
            if ns.__class__ is not int:
                return False
        except SchemaError:
            return False
        return bool(part(dt.datetime.fromtimestamp(ns / 1e9, dt.UTC)) == n)

    return match


def matcher(value: Any) -> Matcher:
    """The matcher of one pySigma value (UnsupportedValue for types without one)."""
    if isinstance(value, SigmaTimestampPart):
        return _timestamp(value)
    if isinstance(value, SigmaCasedString):
        return _string(value, cased=True)
    if is_plain(value):
        return equality_set([value])
    if isinstance(value, SigmaString):
        return _string(value, cased=False)
    if isinstance(value, SigmaRegularExpression):
        return _regex(value)
    if isinstance(value, SigmaCIDRExpression):
        return _cidr(value)
    if isinstance(value, SigmaCompareExpression):
        return _compare(value)
    if isinstance(value, SigmaNull):
        return lambda v: v is None
    if isinstance(value, SigmaExpansion):
        subs = [matcher(v) for v in value.values]
        return lambda v: any(m(v) for m in subs)
    raise UnsupportedValue(f"value type {type(value).__name__} is not supported in-stream")
