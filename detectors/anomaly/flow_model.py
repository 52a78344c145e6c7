"""Flow model: scikit-learn IsolationForest over the flow features of ``features.py``, one
model per responder zone with a global fallback.

Why an Isolation Forest: the training data is unlabelled benign traffic, the features are a
mix of log counts and one-hot flags with no meaningful density, and the anomalies we need
(scan probes, half-open floods, odd transfers) are few and *different* — exactly what
isolation by random splits finds, with no scaling of features, in linear time, with a fixed
``random_state`` for reproducibility. One-class SVM and LOF need feature scaling and
distances over one-hot flags, and LOF scores only the training set without ``novelty=True``.

Score scale: ``score(x)`` is the anomaly score of Liu, Ting & Zhou (2008),
``s = 2 ** (-E[h(x)] / c(n))`` (``-IsolationForest.score_samples``), in (0, 1]: about 0.5 or
below is ordinary for the training data, values towards 1 are isolated in few splits. The
same normalisation ``c(n)`` makes scores of the per-zone models comparable.

Per zone: flows are grouped by :func:`features.zone_key` (the responder's zone id). A zone
with at least ``min_zone_flows`` training flows gets its own forest; any other flow (a zone
unseen or thin in training) is scored by the global forest trained on all flows.

``contamination`` is the expected share of anomalies in the training data; it sets the
default threshold policy (``QuantileThreshold(1 - contamination)`` of the training scores;
``"auto"`` gives the paper's fixed 0.5) and is recorded in the model card.

Explanation: the features of the flow with the largest standardised deviation from the
training median of the model that scored it (scale: 1.4826·MAD, else the standard deviation,
else 1 for a feature constant in training; at least ``SCALE_FLOOR``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import IsolationForest

from detectors.anomaly.base import (
    Assessment,
    FixedThreshold,
    QuantileThreshold,
    RecordDict,
    ThresholdPolicy,
    record_time,
)
from detectors.anomaly.features import FEATURE_NAMES, N_FEATURES, flow_features, zone_key
from parkwatch.errors import ConfigError

Arr = npt.NDArray[np.float64]
GLOBAL = "*"
SCALE_FLOOR = 0.1
"""Smallest feature scale in explanations: a near-constant training feature (a single
polling session) would otherwise turn a tiny difference into thousands of σ."""


class _Zone:
    """One fitted forest with the robust location and scale of its training features."""

    def __init__(self, rows: Arr, seed: int, n_estimators: int, contamination: Any) -> None:
        self.n = len(rows)
        self.forest = IsolationForest(
            n_estimators=n_estimators,
            contamination=contamination,
            random_state=seed,
            n_jobs=1,
        ).fit(rows)
        self.median = np.median(rows, axis=0)
        mad = np.median(np.abs(rows - self.median), axis=0) * 1.4826
        std = rows.std(axis=0)
        scale = np.where(mad > 0, mad, np.where(std > 0, std, 1.0))
        self.scale = np.maximum(scale, SCALE_FLOOR)

    def scores(self, rows: Arr) -> Arr:
        return np.clip(-self.forest.score_samples(rows), 0.0, 1.0)


class FlowModel:
    """Isolation-forest flow anomaly model (``learn`` buffers, the first ``assess`` fits)."""

    name: ClassVar[str] = "flow_model"
    kinds: ClassVar[tuple[str, ...]] = ("flow",)

    def __init__(
        self,
        contamination: float | str = "auto",
        n_estimators: int = 100,
        min_zone_flows: int = 32,
        top_k: int = 3,
        seed: int = 0,
    ) -> None:
        if contamination != "auto" and not (
            isinstance(contamination, float | int) and 0.0 < float(contamination) <= 0.5
        ):
            raise ConfigError(
                f"contamination must be 'auto' or in (0, 0.5], got {contamination!r}",
                field="contamination",
            )
        if n_estimators < 1 or min_zone_flows < 2 or top_k < 1:
            raise ConfigError("flow_model: n_estimators >= 1, min_zone_flows >= 2, top_k >= 1")
        self.contamination: float | str = (
            contamination if contamination == "auto" else float(contamination)
        )
        self.n_estimators, self.min_zone_flows = n_estimators, min_zone_flows
        self.top_k, self.seed = top_k, seed
        self._mat: Arr = np.zeros((0, N_FEATURES), dtype=np.float64)  # fitted-on rows
        self._rows: list[list[float]] = []  # learned since the last fit
        self._keys: list[str] = []
        self.zones: dict[str, _Zone] = {}
        self._dirty = False
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    # -- learning ----------------------------------------------------------------------

    def learn(self, x: RecordDict) -> None:
        self._rows.append(flow_features(x))
        self._keys.append(zone_key(x))
        t = record_time(x)
        self.first_ts = t if self.first_ts is None else min(self.first_ts, t)
        self.last_ts = t if self.last_ts is None else max(self.last_ts, t)
        self._dirty = True

    def fit(self) -> FlowModel:
        """(Re)fit every forest on the flows learned so far; deterministic for a given seed."""
        if self._rows:
            self._mat = np.vstack([self._mat, np.asarray(self._rows, dtype=np.float64)])
            self._rows = []
        if not len(self._mat):
            raise ConfigError(
                "flow model has learned no flows", hint="train on a capture with traffic first"
            )
        rows = self._mat
        keys = np.asarray(self._keys)
        zones = {GLOBAL: _Zone(rows, self.seed, self.n_estimators, self.contamination)}
        for key in sorted(set(self._keys)):
            mask = keys == key
            if int(mask.sum()) >= self.min_zone_flows:
                zones[key] = _Zone(rows[mask], self.seed, self.n_estimators, self.contamination)
        self.zones = zones
        self._dirty = False
        return self

    def _ready(self) -> None:
        if self._dirty or not self.zones:
            self.fit()

    def _zone_for(self, key: str) -> tuple[str, _Zone]:
        if key in self.zones:
            return key, self.zones[key]
        return GLOBAL, self.zones[GLOBAL]

    # -- scoring -----------------------------------------------------------------------

    def assess(self, x: RecordDict) -> Assessment:
        return self.assess_many([x])[0]

    def assess_many(self, xs: Sequence[RecordDict]) -> list[Assessment]:
        """Assessments of many flows, scored in one forest call per zone (much faster than
        one ``assess`` each: a forest call costs milliseconds whatever its batch size)."""
        if not xs:
            return []
        self._ready()
        rows = np.asarray([flow_features(x) for x in xs], dtype=np.float64)
        picked = [self._zone_for(zone_key(x)) for x in xs]
        scores = np.zeros(len(xs))
        for key in sorted({k for k, _ in picked}):
            idx = [i for i, (k, _) in enumerate(picked) if k == key]
            scores[idx] = self.zones[key].scores(rows[idx])
        return [self._describe(x, rows[i], *picked[i], float(scores[i])) for i, x in enumerate(xs)]

    def _describe(
        self, x: RecordDict, vec: Arr, zkey: str, zone: _Zone, score: float
    ) -> Assessment:
        z = (vec - zone.median) / zone.scale
        order = sorted(range(N_FEATURES), key=lambda i: (-abs(float(z[i])), i))
        top = [i for i in order[: self.top_k] if z[i] != 0]
        devs = [
            {
                "feature": FEATURE_NAMES[i],
                "value": round(float(vec[i]), 4),
                "median": round(float(zone.median[i]), 4),
                "z": round(float(z[i]), 2),
            }
            for i in top
        ]
        model = "global model" if zkey == GLOBAL else f"zone {zkey} model"
        said = ", ".join(
            f"{d['feature']}={d['value']:g} (median {d['median']:g}, {d['z']:+.1f}σ)" for d in devs
        )
        src, dst = x.get("src_ip"), x.get("dst_ip")
        reason = (
            f"flow {src}:{x.get('src_port')} -> {dst}:{x.get('dst_port')} "
            f"({x.get('conn_state')}, {x.get('app_proto') or 'proto ' + str(x.get('proto'))}) "
            f"isolation score {score:.3f} under the {model} ({zone.n} training flows); "
            f"most deviating features: {said or 'none (all at the training median)'}"
        )
        return Assessment(
            score,
            reason,
            "flow_isolation",
            f"Unusual flow {src} -> {dst}",
            "medium" if score >= 0.7 else "low",
            evidence={
                "model": zkey,
                "features": [d["feature"] for d in devs],
                "deviations": devs,
                "conn_state": x.get("conn_state"),
                "dst_port": x.get("dst_port"),
                "app_proto": x.get("app_proto"),
            },
        )

    def score(self, x: RecordDict) -> float:
        return self.assess(x).score

    def explain(self, x: RecordDict) -> str:
        return self.assess(x).reason

    def training_scores(self) -> list[float]:
        """Scores of the training flows, each by the forest that scores its zone."""
        if not self._keys:
            return []
        self._ready()
        rows = self._mat
        keys = np.asarray(self._keys)
        out = np.zeros(len(rows))
        for key in sorted(set(self._keys)):
            mask = keys == key
            out[mask] = self._zone_for(key)[1].scores(rows[mask])
        return [float(v) for v in out]

    def default_policy(self) -> ThresholdPolicy:
        if self.contamination == "auto":
            return FixedThreshold(0.5)
        return QuantileThreshold(q=1.0 - float(self.contamination))

    def summary(self) -> dict[str, Any]:
        """Facts for a model card."""
        self._ready()
        return {
            "flows": len(self._keys),
            "zones": {k: z.n for k, z in sorted(self.zones.items())},
            "contamination": self.contamination,
            "n_estimators": self.n_estimators,
            "min_zone_flows": self.min_zone_flows,
            "seed": self.seed,
        }
