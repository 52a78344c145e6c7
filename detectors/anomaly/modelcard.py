"""Model files and their model cards.

``save_model(path, …)`` writes two files:

- ``MODEL`` — a pickle of ``{"format": "parkwatch-model/1", "detectors": {name: detector},
  "policies": {name: threshold policy}}``;
- ``MODEL.card.json`` — the model card: the detectors and their settings and counts, the flow
  features (names, meanings, version), the training window (first/last record time), number
  of flows and OT events, contamination, threshold policies, the Python / numpy /
  scikit-learn / ParkWatch versions, the training captures with their sha256, and the sha256
  and size of the ``MODEL`` bytes.

``load_model(path)`` reads the card first, hashes ``MODEL`` and refuses it (:class:`ModelError`)
when the hash, the format, the feature version or the scikit-learn version differ — scikit-learn
does not support unpickling a model across versions. A model file is a trusted artefact (it is
a pickle): load only models you trained; the hash guards against corruption and mix-ups, not
against someone who can rewrite both files. The card has no creation time, so the same
training gives the same card.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import sklearn

import parkwatch
from detectors.anomaly.base import (
    Detector,
    FixedThreshold,
    ThresholdPolicy,
    make_alert,
    record_kind,
)
from detectors.anomaly.features import FEATURES, FEATURES_VERSION
from parkwatch.errors import ParkWatchError
from parkwatch.schema import Alert, format_ts

MODEL_FORMAT = "parkwatch-model/1"
CARD_FORMAT = "parkwatch-model-card/1"


class ModelError(ParkWatchError):
    """A model file that is missing, altered, or made by another version."""

    hint = "retrain with 'parkwatch train --baseline CAPTURE... --out MODEL'"


def card_path(model: str | Path) -> Path:
    return Path(f"{model}.card.json")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "parkwatch": parkwatch.__version__,
    }


@dataclass
class LoadedModel:
    """A verified model: its detectors, their threshold policies and the card."""

    detectors: dict[str, Detector]
    policies: dict[str, ThresholdPolicy]
    card: dict[str, Any]

    def alerts(self, x: dict[str, Any]) -> list[Alert]:
        """Alerts of every detector that consumes ``x``'s record kind (detection)."""
        return self.alerts_many([x])

    def alerts_many(self, xs: Sequence[dict[str, Any]]) -> list[Alert]:
        """Alerts for a batch of records, in record order then detector order."""
        out: list[tuple[int, int, Alert]] = []
        for d, (name, det) in enumerate(self.detectors.items()):
            idx = [i for i, x in enumerate(xs) if record_kind(x) in det.kinds]
            if not idx:
                continue
            policy = self.policies.get(name) or FixedThreshold(0.5)
            for i, a in zip(idx, det.assess_many([xs[i] for i in idx]), strict=True):
                alert = make_alert(name, xs[i], a, policy)
                if alert is not None:
                    out.append((i, d, alert))
        return [a for _, _, a in sorted(out, key=lambda t: (t[0], t[1]))]


def _window(detectors: dict[str, Detector]) -> dict[str, str | None]:
    firsts = [getattr(d, "first_ts", None) for d in detectors.values()]
    lasts = [getattr(d, "last_ts", None) for d in detectors.values()]
    f = [t for t in firsts if t is not None]
    la = [t for t in lasts if t is not None]
    return {
        "first": format_ts(min(f)) if f else None,
        "last": format_ts(max(la)) if la else None,
    }


def _summary(det: Detector) -> dict[str, Any]:
    fn = getattr(det, "summary", None)
    return dict(fn()) if callable(fn) else {}


def save_model(
    path: str | Path,
    detectors: dict[str, Detector],
    policies: dict[str, ThresholdPolicy],
    captures: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``path`` and ``path.card.json``; return the card."""
    blob = pickle.dumps(
        {"format": MODEL_FORMAT, "detectors": detectors, "policies": policies},
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    summaries = {n: _summary(d) for n, d in detectors.items()}
    flow = summaries.get("flow_model", {})
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "model_file": Path(path).name,
        "model_format": MODEL_FORMAT,
        "model_sha256": hashlib.sha256(blob).hexdigest(),
        "model_bytes": len(blob),
        "detectors": {
            n: {"summary": summaries[n], "policy": policies[n].describe() if n in policies else {}}
            for n in detectors
        },
        "features_version": FEATURES_VERSION,
        "features": [{"name": n, "meaning": m} for n, m in FEATURES],
        "training_window": _window(detectors),
        "flows": flow.get("flows", 0),
        "ot_events": summaries.get("ot_baseline", {}).get("events", 0),
        "contamination": flow.get("contamination"),
        "versions": versions(),
        "training_captures": [
            {"path": str(c), "sha256": sha256_file(c), "bytes": Path(c).stat().st_size}
            for c in captures or []
        ],
        **(extra or {}),
    }
    try:
        Path(path).write_bytes(blob)
        card_path(path).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    except OSError as exc:
        raise ModelError(f"cannot write model: {exc.strerror}", file=str(path)) from exc
    return card


def load_model(path: str | Path) -> LoadedModel:
    """Load a model after checking it against its card (see the module doc)."""
    cpath = card_path(path)
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model: {exc.strerror}", file=str(path)) from exc
    try:
        card = json.loads(cpath.read_text())
    except OSError as exc:
        raise ModelError(
            f"model card missing or unreadable: {exc.strerror}", file=str(cpath)
        ) from exc
    except json.JSONDecodeError as exc:
        raise ModelError(
            f"model card is not JSON: {exc.msg}", file=str(cpath), line=exc.lineno
        ) from exc
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelError(f"not a {CARD_FORMAT} model card", file=str(cpath), field="format")
    digest = hashlib.sha256(blob).hexdigest()
    if digest != card.get("model_sha256"):
        raise ModelError(
            f"model bytes do not match their card (sha256 {digest[:16]}…, card says "
            f"{str(card.get('model_sha256'))[:16]}…): the file was altered or belongs to "
            "another card",
            file=str(path),
            field="model_sha256",
        )
    if card.get("features_version") != FEATURES_VERSION:
        raise ModelError(
            f"model uses flow features v{card.get('features_version')}, this ParkWatch has "
            f"v{FEATURES_VERSION}",
            file=str(path),
            field="features_version",
        )
    want = card.get("versions", {}).get("scikit-learn")
    if want != sklearn.__version__:
        raise ModelError(
            f"model was trained with scikit-learn {want}, this is {sklearn.__version__}",
            file=str(path),
            field="versions.scikit-learn",
        )
    try:
        data = pickle.loads(blob)
    except Exception as exc:  # a pickle can fail in many ways; all mean "not our model"
        raise ModelError(f"model file does not unpickle: {exc}", file=str(path)) from exc
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise ModelError(f"not a {MODEL_FORMAT} file", file=str(path))
    return LoadedModel(dict(data["detectors"]), dict(data["policies"]), card)
