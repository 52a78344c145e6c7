"""Durations on the command line and in settings: ``90s``, ``10m``, ``1h30m``, ``250ms``."""

from __future__ import annotations

import re

from parkwatch.errors import ConfigError

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h|d)")


def parse_duration(text: str) -> int:
    """Nanoseconds from a duration: ``"90s"``, ``"10m"``, ``"1h"``, ``"1h30m"``, ``"250ms"``,
    ``"1.5h"``; a bare number is seconds. Units: ns, us, ms, s, m, h, d. Must be > 0."""
    s = str(text).strip().lower().replace(" ", "")
    try:
        if re.fullmatch(r"\d+(?:\.\d+)?", s):
            ns = round(float(s) * 1e9)
        else:
            pos, ns = 0, 0
            for m in _PART.finditer(s):
                if m.start() != pos:
                    raise ValueError(s)
                ns += round(float(m.group(1)) * _UNITS_NS[m.group(2)])
                pos = m.end()
            if pos != len(s) or not s:
                raise ValueError(s)
    except ValueError:
        raise ConfigError(
            f"not a duration: {text!r}",
            hint="write e.g. 90s, 10m, 1h, 1h30m or 250ms (a bare number is seconds)",
        ) from None
    if ns <= 0:
        raise ConfigError(f"duration must be positive: {text!r}")
    return ns


def parse_time_option(text: str | None, flag: str) -> int | None:
    """ns since the epoch from an RFC 3339 command-line value (None stays None); a bad one is
    a ConfigError naming the option."""
    from parkwatch.schema import SchemaError, parse_ts

    if text is None:
        return None
    try:
        return parse_ts(text)
    except SchemaError:
        raise ConfigError(f"not an RFC 3339 time: {text!r}", field=flag) from None
