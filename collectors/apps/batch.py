"""One batch's output of the application engine, put back in candidate order.

The engine decodes a batch in rounds (fast path, then per-packet runs, then the fast path
again, ...; see :meth:`~collectors.apps.engine.AppEngine.process`), so events and weirds are
made flow by flow rather than in capture order. Each is tagged with the position of the
candidate being processed when it was made; a stable sort on that position gives exactly the
order the per-packet path alone gives (flows are independent, and within one candidate the
order of making is kept).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, TypeVar

import numpy as np

from collectors.apps.fast.core import FastResult
from collectors.apps.fast.pdus import objcol
from parkwatch.schema import OtEvent

T = TypeVar("T")
INT_FIELDS = ("ts", "src_port", "dst_port")
FIELDS = tuple(f.name for f in dataclasses.fields(OtEvent))


def in_order(items: list[T], pos: list[int]) -> tuple[list[T], list[int]]:
    """``items`` and their positions ``pos``, stably sorted by position."""
    if all(a <= b for a, b in itertools.pairwise(pos)):
        return items, pos
    order = sorted(range(len(pos)), key=pos.__getitem__)
    return [items[k] for k in order], [pos[k] for k in order]


def merge(
    results: list[FastResult], rows: list[tuple[Any, ...]], rowpos: list[int]
) -> dict[str, np.ndarray] | None:
    """Fast-path columns and per-packet event rows (OtEvent field order) as one set of
    columns in candidate order; None when there is no event."""
    parts = [(fr.pos, fr.cols) for fr in results if len(fr.pos)]
    if rows:
        rows, rowpos = in_order(rows, rowpos)
        parts.append((np.array(rowpos, dtype=np.int64), row_columns(rows)))
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0][1]
    order = np.argsort(np.concatenate([p for p, _ in parts]), kind="stable")
    return {k: np.concatenate([c[k] for _, c in parts])[order] for k in parts[0][1]}


def row_columns(rows: list[tuple[Any, ...]]) -> dict[str, np.ndarray]:
    """Per-packet event rows (OtEvent field order) as columns."""
    n = len(rows)
    out: dict[str, np.ndarray] = {}
    for name, col in zip(FIELDS, zip(*rows, strict=True), strict=True):
        out[name] = np.array(col, dtype=np.int64) if name in INT_FIELDS else objcol(col, n)
    return out
