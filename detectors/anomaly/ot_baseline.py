"""OT behaviour baseline: who talks to whom, with which protocol and function codes, which
masters poll which outstations, and how regularly.

Learned from ``OtEvent`` dicts (``parkwatch.ot_event/2``):

- talker pairs ``(src_ip, dst_ip, protocol)``;
- function codes per pair ``(src_ip, dst_ip, protocol) -> {function_code}``;
- unit ids per pair (Modbus unit, DNP3 destination, IEC 104 common address);
- masters per outstation ``(dst_ip, protocol) -> {src_ip}``, from requests only
  (``direction == "request"``);
- polling intervals per ``(master, outstation, protocol, function_code)``: the times between
  successive requests, summarised robustly by median and MAD (scaled by 1.4826 to estimate a
  standard deviation under normality).

Score scale (the highest finding wins; 0.0 = everything about the event was seen in learning):

| finding | rule_id | score | level |
| --- | --- | --- | --- |
| request from a host never seen as master of a known outstation | ``new_master`` | 0.95 | high |
| pair never seen talking with this protocol | ``new_talker`` | 0.90 | medium |
| function code never seen for a known pair | ``new_function_code`` | 0.85 | medium |
| unit id never seen for a known pair | ``new_unit`` | 0.70 | low |
| request interval beyond the tolerance | ``polling_interval_break`` | 0.5–0.8 | low |

The interval tolerance is ``max(k·MAD, rel_tol·median, min_tol)``; the score of a break rises
from 0.5 towards 0.8 with the deviation: ``0.5 + 0.3·(1 - tolerance / deviation)``.

Interval checks need ``min_intervals`` learned intervals for the key. The per-key clock (time
of the previous request) advances on every request, learned or scored, so ``assess`` is not
pure: it is the only state scoring changes; the baseline itself changes only in ``learn``.
Assessing the same event twice in a row gives the same answer (the last result is cached); a
request older than the clock (out of order) is not judged for timing and leaves the clock.

Techniques: ``new_master`` carries ATT&CK for ICS T0848 (Rogue Master, tactic initial-access):
a host acting as master of an outstation it never polled is that technique's definition.
Other findings name no technique and no category: a new function code or a timing break is
unusual, not by itself proof of an attack class; the Sigma rules assign those.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence
from typing import Any, ClassVar

from detectors.anomaly.base import Assessment, RecordDict, record_time
from parkwatch.errors import ConfigError

Pair = tuple[str, str, str]
IntervalKey = tuple[str, str, str, int | None]
MAD_SCALE = 1.4826


class OtBaseline:
    """Learned allow-list of OT conversations with robust polling-interval statistics."""

    name: ClassVar[str] = "ot_baseline"
    kinds: ClassVar[tuple[str, ...]] = ("ot_event",)

    def __init__(
        self,
        k: float = 5.0,
        min_intervals: int = 8,
        rel_tol: float = 0.25,
        min_tol_s: float = 0.05,
        max_intervals: int = 2048,
        seed: int = 0,
    ) -> None:
        if k <= 0 or min_intervals < 2 or rel_tol < 0 or min_tol_s < 0 or max_intervals < 2:
            raise ConfigError("ot_baseline: k > 0, min_intervals >= 2, tolerances >= 0 required")
        self.k, self.min_intervals, self.rel_tol = k, min_intervals, rel_tol
        self.min_tol_ns = int(min_tol_s * 1e9)
        self.max_intervals = max_intervals
        self.seed = seed  # no randomness; kept so every detector takes a seed
        self.pairs: dict[Pair, int] = {}
        self.functions: dict[Pair, set[int]] = {}
        self.units: dict[Pair, set[int]] = {}
        self.masters: dict[tuple[str, str], set[str]] = {}
        self.intervals: dict[IntervalKey, deque[int]] = {}
        self._clock: dict[IntervalKey, int] = {}
        self._stats: dict[IntervalKey, tuple[float, float]] = {}
        self._last: tuple[Any, Assessment] | None = None
        self.learned = 0
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    # -- learning ----------------------------------------------------------------------

    @staticmethod
    def _pair(x: RecordDict) -> Pair:
        return (str(x.get("src_ip")), str(x.get("dst_ip")), str(x.get("protocol")))

    def _ikey(self, x: RecordDict) -> IntervalKey | None:
        if x.get("direction") != "request":
            return None
        src, dst, proto = self._pair(x)
        return (src, dst, proto, x.get("function_code"))

    def learn(self, x: RecordDict) -> None:
        pair = self._pair(x)
        t = record_time(x)
        self.pairs[pair] = self.pairs.get(pair, 0) + 1
        if x.get("function_code") is not None:
            self.functions.setdefault(pair, set()).add(int(x["function_code"]))
        if x.get("unit") is not None:
            self.units.setdefault(pair, set()).add(int(x["unit"]))
        key = self._ikey(x)
        if key is not None:
            self.masters.setdefault((pair[1], pair[2]), set()).add(pair[0])
            prev = self._clock.get(key)
            if prev is not None and t > prev:
                dq = self.intervals.setdefault(key, deque(maxlen=self.max_intervals))
                dq.append(t - prev)
                self._stats.pop(key, None)
            if prev is None or t > prev:
                self._clock[key] = t
        self.learned += 1
        self.first_ts = t if self.first_ts is None else min(self.first_ts, t)
        self.last_ts = t if self.last_ts is None else max(self.last_ts, t)
        self._last = None

    def _interval_stats(self, key: IntervalKey) -> tuple[float, float] | None:
        dq = self.intervals.get(key)
        if dq is None or len(dq) < self.min_intervals:
            return None
        st = self._stats.get(key)
        if st is None:
            med = statistics.median(dq)
            mad = statistics.median(abs(v - med) for v in dq) * MAD_SCALE
            st = self._stats[key] = (med, mad)
        return st

    # -- scoring -----------------------------------------------------------------------

    def assess(self, x: RecordDict) -> Assessment:
        ident = (x.get("uid"), x.get("ts"))
        if self._last is not None and self._last[0] == ident:
            return self._last[1]
        found = self._findings(x)
        result = max(found, key=lambda a: a.score) if found else Assessment(0.0, "as learned")
        if len(found) > 1:
            others = "; also " + "; ".join(a.reason for a in found if a is not result)
            result = Assessment(
                result.score,
                result.reason + others,
                result.rule_id,
                result.title,
                result.level,
                result.techniques,
                result.tactics,
                result.category,
                {**result.evidence, "findings": [a.rule_id for a in found]},
            )
        self._last = (ident, result)
        return result

    def _findings(self, x: RecordDict) -> list[Assessment]:
        src, dst, proto = pair = self._pair(x)
        fc, unit = x.get("function_code"), x.get("unit")
        fname = x.get("function_name") or (f"fc {fc}" if fc is not None else "no function code")
        base_ev = {"protocol": proto, "function_code": fc, "function_name": x.get("function_name")}
        out: list[Assessment] = []
        is_req = x.get("direction") == "request"
        known_masters = self.masters.get((dst, proto))
        if is_req and known_masters and src not in known_masters:
            out.append(
                Assessment(
                    0.95,
                    f"{src} sent {proto} request {fname} to outstation {dst}, whose learned "
                    f"masters are {', '.join(sorted(known_masters))}",
                    "new_master",
                    f"New {proto} master {src} for outstation {dst}",
                    "high",
                    ("T0848",),
                    ("initial-access",),
                    None,
                    {**base_ev, "learned_masters": sorted(known_masters)},
                )
            )
        if pair not in self.pairs:
            out.append(
                Assessment(
                    0.90,
                    f"{src} -> {dst} never talked {proto} while learning ({self.learned} events)",
                    "new_talker",
                    f"New {proto} talker pair {src} -> {dst}",
                    "medium",
                    evidence=base_ev,
                )
            )
        else:
            fcs = self.functions.get(pair, set())
            if fc is not None and int(fc) not in fcs:
                out.append(
                    Assessment(
                        0.85,
                        f"{src} -> {dst} {proto}: function {fname} never seen for this pair "
                        f"(learned: {', '.join(str(c) for c in sorted(fcs)) or 'none'})",
                        "new_function_code",
                        f"New {proto} function {fname} from {src} to {dst}",
                        "medium",
                        evidence={**base_ev, "learned_function_codes": sorted(fcs)},
                    )
                )
            units = self.units.get(pair, set())
            if unit is not None and units and int(unit) not in units:
                out.append(
                    Assessment(
                        0.70,
                        f"{src} -> {dst} {proto}: unit {unit} never seen for this pair "
                        f"(learned: {', '.join(str(u) for u in sorted(units))})",
                        "new_unit",
                        f"New {proto} unit {unit} from {src} to {dst}",
                        "low",
                        evidence={**base_ev, "unit": unit, "learned_units": sorted(units)},
                    )
                )
        brk = self._interval_break(x)
        if brk is not None:
            out.append(brk)
        return out

    def _interval_break(self, x: RecordDict) -> Assessment | None:
        key = self._ikey(x)
        if key is None:
            return None
        t = record_time(x)
        prev = self._clock.get(key)
        if prev is not None and t <= prev:
            return None  # out of order or a repeat: no interval to judge, the clock stays
        self._clock[key] = t
        st = self._interval_stats(key)
        if prev is None or st is None:
            return None
        med, mad = st
        gap = t - prev
        tol = max(self.k * mad, self.rel_tol * med, self.min_tol_ns)
        dev = abs(gap - med)
        if dev <= tol:
            return None
        score = 0.5 + 0.3 * (1.0 - tol / dev)
        src, dst, proto, fc = key
        how = "early" if gap < med else "late"
        return Assessment(
            score,
            f"{src} -> {dst} {proto} fc {fc}: request {gap / 1e9:.3f} s after the previous one "
            f"({how}); learned interval median {med / 1e9:.3f} s, MAD {mad / 1e9:.3f} s, "
            f"tolerance {tol / 1e9:.3f} s",
            "polling_interval_break",
            f"Polling interval break {src} -> {dst} ({proto})",
            "low",
            evidence={
                "protocol": proto,
                "function_code": fc,
                "interval_s": gap / 1e9,
                "median_s": med / 1e9,
                "mad_s": mad / 1e9,
                "tolerance_s": tol / 1e9,
            },
        )

    def assess_many(self, xs: Sequence[RecordDict]) -> list[Assessment]:
        return [self.assess(x) for x in xs]

    def score(self, x: RecordDict) -> float:
        return self.assess(x).score

    def explain(self, x: RecordDict) -> str:
        return self.assess(x).reason

    def training_scores(self) -> list[float]:
        """Every learned event is, by construction, in the baseline: score 0."""
        return [0.0] * self.learned

    def summary(self) -> dict[str, Any]:
        """Counts for a model card."""
        return {
            "events": self.learned,
            "talker_pairs": len(self.pairs),
            "outstations": len(self.masters),
            "interval_keys": sum(1 for k in self.intervals if self._interval_stats(k)),
            "k": self.k,
            "min_intervals": self.min_intervals,
            "rel_tol": self.rel_tol,
        }
