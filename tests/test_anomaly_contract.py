"""Contract of every registered anomaly detector: interface, pickling, seeded determinism,
score range, alerts that round-trip, and ROC AUC > 0.5 on labelled data of its record kind.

Labelled data per record kind: ``flow`` — trained on the benchmark corpus without its scanner,
scored on ``replay_pcaps/sample_park.pcap`` labelled by its ``.labels.yaml``; ``ot_event`` —
synthetic Modbus/DNP3 polling with a rogue master, new function codes and a request flood
(``tests/test_ot_baseline.py``). A new detector kind must add its data here.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from sklearn.metrics import roc_auc_score

from detectors.anomaly import DETECTORS, FixedThreshold, LearnThenScore, make_alert
from detectors.anomaly.base import Detector, QuantileThreshold, record_kind, record_time
from parkwatch.schema import Alert
from tests import test_flow_model as flowdata
from tests import test_ot_baseline as otdata

Data = tuple[list[dict[str, Any]], list[dict[str, Any]], list[int]]


def _flow_data() -> Data:
    train = list(flowdata.benign_training())
    test = list(flowdata.flows_of(str(flowdata.REPLAY / "sample_park.pcap")))
    labels = flowdata.labels_for(tuple(test), flowdata.REPLAY / "sample_park.labels.yaml")
    return train, test, labels


DATA: dict[str, Callable[[], Data]] = {"flow": _flow_data, "ot_event": otdata.labelled_stream}
NAMES = sorted(str(n) for n in DETECTORS)


def _trained(name: str, seed: int = 0) -> tuple[Any, Data]:
    cls = DETECTORS.get(name)
    det = cls(seed=seed)
    data = DATA[cls.kinds[0]]()
    for x in data[0]:
        det.learn(x)
    return det, data


def test_registry_is_not_empty() -> None:
    assert {"ot_baseline", "flow_model"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_interface(name: str) -> None:
    cls = DETECTORS.get(name)
    det = cls(seed=0)
    assert isinstance(det, Detector)
    assert cls.name == name
    assert cls.kinds and all(k in DATA for k in cls.kinds), "add labelled data for its kinds"


@pytest.mark.parametrize("name", NAMES)
def test_labelled_data_has_both_classes(name: str) -> None:
    _, (train, test, labels) = _trained(name)
    assert train and len(test) == len(labels) and 0 < sum(labels) < len(labels)
    kind = DETECTORS.get(name).kinds[0]
    assert all(record_kind(x) == kind for x in train + test)


@pytest.mark.parametrize("name", NAMES)
def test_scores_in_unit_range_and_explained(name: str) -> None:
    det, (_, test, _) = _trained(name)
    batch, _ = _trained(name)
    assessments = batch.assess_many(test)
    for x, a in zip(test, assessments, strict=True):  # one at a time == batched
        assert isinstance(a.score, float) and math.isfinite(a.score) and 0.0 <= a.score <= 1.0
        assert isinstance(a.reason, str) and a.reason
        assert det.assess(x) == a
        assert det.explain(x) == a.reason and det.score(x) == a.score
    assert all(0.0 <= s <= 1.0 for s in det.training_scores())


@pytest.mark.parametrize("name", NAMES)
def test_pickle_round_trip_gives_identical_scores(name: str) -> None:
    det, (_, test, _) = _trained(name)
    det.assess_many(test[:1])  # fitted state included
    clone = pickle.loads(pickle.dumps(det))
    a = [(s.score, s.reason) for s in det.assess_many(test[1:])]
    b = [(s.score, s.reason) for s in clone.assess_many(test[1:])]
    assert a == b


@pytest.mark.parametrize("name", NAMES)
def test_seeded_determinism(name: str) -> None:
    one, (_, test, _) = _trained(name, seed=3)
    two, _ = _trained(name, seed=3)
    assert [a.score for a in one.assess_many(test)] == [a.score for a in two.assess_many(test)]


@pytest.mark.parametrize("name", NAMES)
def test_roc_auc_above_chance_on_labelled_data(name: str) -> None:
    det, (_, test, labels) = _trained(name)
    scores = [a.score for a in det.assess_many(test)]
    assert roc_auc_score(labels, scores) > 0.5


@pytest.mark.parametrize("name", NAMES)
def test_alerts_round_trip_and_are_deterministic(name: str) -> None:
    det, (_, test, _) = _trained(name)
    twin, _ = _trained(name)
    policy = QuantileThreshold(0.95).fit([a.score for a in det.assess_many(test)])
    pairs = zip(test, twin.assess_many(test), strict=True)
    alerts = [make_alert(name, x, a, policy) for x, a in pairs]
    fired = [a for a in alerts if a is not None]
    assert fired
    for a in fired:
        assert isinstance(a, Alert) and a.detector == name and a.reason and a.attackers
        assert a.score is not None and a.score > policy.threshold
        assert Alert.from_json(a.to_json()) == a
    assert len({a.uid for a in fired}) == len(fired)
    assert make_alert(name, test[0], det.assess(test[0]), FixedThreshold(1.0)) is None


@pytest.mark.parametrize("name", NAMES)
def test_learn_then_score_splits_by_time(name: str) -> None:
    cls = DETECTORS.get(name)
    train, test, _ = DATA[cls.kinds[0]]()
    stream = sorted(train + test, key=record_time)
    first = record_time(stream[0])
    cut = sorted(record_time(x) for x in stream)[len(stream) // 2] - first
    runner = LearnThenScore(cls(seed=0), cut)
    out = runner.process_many(stream)
    for x, a in zip(stream, out, strict=True):
        assert (a is None) == (record_time(x) < first + cut)
    assert runner.learned + runner.scored == len(stream)
