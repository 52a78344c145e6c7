"""Ground-truth label files (``parkwatch-labels/1``, the auditors' contract in shared/LABELS.md).

``load_labels(path)`` reads and validates one ``<capture>.labels.yaml``; errors name the file,
the line and the field. ``find_labels(capture)`` finds the label file beside a capture.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from parkwatch.errors import ConfigError
from parkwatch.schema import CATEGORIES, SchemaError, parse_ts

FORMAT = "parkwatch-labels/1"
OUTCOMES = ("succeeded", "defended", "unknown")
_SUFFIXES = (".pcapng.gz", ".pcap.gz", ".pcapng", ".pcap")


class LabelError(ConfigError):
    """A label file that does not follow shared/LABELS.md."""

    hint = "fix the label file (format: shared/LABELS.md)"


@dataclass(frozen=True)
class Attack:
    """One labelled attack."""

    id: str
    category: str
    start: int
    end: int
    attackers: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()
    outcome: str = "unknown"


@dataclass
class Labels:
    """One label file."""

    path: Path
    capture: Path
    sha256: str | None
    attacks: list[Attack] = field(default_factory=list)
    description: str = ""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def label_path_for(capture: Path) -> Path:
    name = capture.name
    for suf in _SUFFIXES:
        if name.endswith(suf):
            return capture.with_name(name[: -len(suf)] + ".labels.yaml")
    return capture.with_name(capture.stem + ".labels.yaml")


def _line_of(text: str, key: str, nth: int = 0) -> int | None:
    seen = 0
    for no, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith(f"{key}:") or line.strip().startswith(f"- {key}:"):
            if seen == nth:
                return no
            seen += 1
    return None


def _addresses(value: Any, where: str, fail: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise fail(f"{where} must be a list of IPs or CIDRs", where)
    for item in value:
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            raise fail(f"{item!r} is not an IP address or CIDR", where) from None
    return tuple(str(v) for v in value)


def load_labels(path: str | Path) -> Labels:
    """Read and validate one label file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except OSError as exc:
        raise LabelError(f"cannot read label file: {exc.strerror}", file=str(p)) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise LabelError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            file=str(p),
            line=mark.line + 1 if mark else None,
        ) from exc

    def fail(msg: str, fld: str, nth: int = 0) -> LabelError:
        key = fld.split(".")[-1].split("[")[0]
        return LabelError(msg, file=str(p), line=_line_of(text, key, nth), field=fld)

    if not isinstance(data, dict):
        raise LabelError("a label file is a YAML mapping", file=str(p))
    if data.get("format") != FORMAT:
        raise fail(f"format must be {FORMAT!r}, got {data.get('format')!r}", "format")
    unknown = set(data) - {
        "format",
        "capture",
        "sha256",
        "description",
        "source",
        "attacks",
        "notes",
    }
    if unknown:
        raise fail(f"unknown key {sorted(unknown)[0]!r}", sorted(unknown)[0])
    cap = data.get("capture")
    if not isinstance(cap, str) or not cap:
        raise fail("capture (path relative to the label file) is required", "capture")
    attacks_raw = data.get("attacks")
    if not isinstance(attacks_raw, list):
        raise fail("attacks must be a list (empty for a benign capture)", "attacks")
    attacks: list[Attack] = []
    ids: set[str] = set()
    for k, a in enumerate(attacks_raw):
        where = f"attacks[{k}]"
        if not isinstance(a, dict):
            raise fail("each attack is a mapping", where)
        extra = set(a) - {
            "id",
            "category",
            "techniques",
            "start",
            "end",
            "attackers",
            "targets",
            "outcome",
            "notes",
        }
        if extra:
            raise fail(f"unknown key {sorted(extra)[0]!r}", f"{where}.{sorted(extra)[0]}", k)
        aid = str(a.get("id", ""))
        if not aid or aid in ids:
            raise fail(f"attack id {aid!r} missing or repeated", f"{where}.id", k)
        ids.add(aid)
        cat = a.get("category")
        if cat not in CATEGORIES:
            raise fail(f"category {cat!r} is not one of LABELS.md's", f"{where}.category", k)
        try:
            start, end = parse_ts(str(a.get("start"))), parse_ts(str(a.get("end")))
        except SchemaError as exc:
            raise fail(str(exc), f"{where}.start", k) from None
        if end < start:
            raise fail("end is before start", f"{where}.end", k)
        outcome = a.get("outcome", "unknown")
        if outcome not in OUTCOMES:
            raise fail(f"outcome must be one of {OUTCOMES}", f"{where}.outcome", k)
        attacks.append(
            Attack(
                aid,
                str(cat),
                start,
                end,
                _addresses(a.get("attackers"), f"{where}.attackers", fail),
                _addresses(a.get("targets"), f"{where}.targets", fail),
                tuple(str(t) for t in a.get("techniques") or ()),
                str(outcome),
            )
        )
    sha = data.get("sha256")
    if sha is not None:  # YAML reads an all-digit or 'e'-bearing hex string as a number
        m = re.search(r"^sha256:\s*['\"]?([0-9a-fA-F]{64})['\"]?\s*$", text, re.M)
        if m is None:
            raise fail("sha256 must be 64 hex digits", "sha256")
        sha = m.group(1).lower()
    return Labels(
        p, (p.parent / cap), str(sha) if sha else None, attacks, str(data.get("description") or "")
    )


def check_capture(labels: Labels, capture: Path) -> None:
    """Refuse a capture whose bytes differ from the label's ``sha256``."""
    if labels.sha256 is None:
        return
    got = sha256_of(capture)
    if got != labels.sha256.lower():
        raise LabelError(
            f"capture sha256 {got[:16]}… does not match the label's {labels.sha256[:16]}…",
            file=str(labels.path),
            field="sha256",
            hint="these labels were made for other bytes: use the capture they describe",
        )
