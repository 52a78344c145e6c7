"""Anomaly detectors: learned baselines that score records (higher = more anomalous, in [0, 1]).

``DETECTORS`` maps a detector name to its class; every class takes keyword settings and a
``seed`` and implements :class:`detectors.anomaly.base.Detector`. The contract tests in
``tests/test_anomaly_contract.py`` run over every entry. See ``docs/ANOMALY.md``.
"""

from __future__ import annotations

from typing import Any

from detectors.anomaly.base import (
    Assessment,
    Detector,
    FixedThreshold,
    LearnThenScore,
    QuantileThreshold,
    ThresholdPolicy,
    make_alert,
    parse_duration,
)
from detectors.anomaly.flow_model import FlowModel
from detectors.anomaly.ot_baseline import OtBaseline
from parkwatch.registry import Registry

DETECTORS: Registry[Any] = Registry("anomaly detector")
"""name -> detector class (a factory taking keyword settings and ``seed``)."""

DETECTORS.register(OtBaseline.name, OtBaseline)
DETECTORS.register(FlowModel.name, FlowModel)

__all__ = [
    "DETECTORS",
    "Assessment",
    "Detector",
    "FixedThreshold",
    "FlowModel",
    "LearnThenScore",
    "OtBaseline",
    "QuantileThreshold",
    "ThresholdPolicy",
    "make_alert",
    "parse_duration",
]
