"""OT behaviour baseline: talkers, function codes, masters, polling intervals (synthetic events)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from detectors.anomaly import LearnThenScore, OtBaseline, make_alert, parse_duration
from detectors.anomaly.base import FixedThreshold, alert_uid, record_time
from parkwatch.errors import ConfigError
from parkwatch.schema import Alert, OtEvent

T0 = 1_763_700_000 * 1_000_000_000
S = 1_000_000_000
HMI1, PLC1, HMI2, PLC2 = "10.1.1.10", "10.1.2.10", "10.1.1.11", "10.1.2.11"
MASTER3, RTU3, ROGUE = "10.1.3.5", "10.1.3.20", "10.2.1.66"
PORTS = {"modbus": 502, "dnp3": 20000}
FC_NAMES = {3: "read_holding_registers", 4: "read_input_registers", 6: "write_single_register",
            16: "write_multiple_registers", 1: "read", 5: "direct_operate"}  # fmt: skip


def ev(
    ts: int,
    src: str,
    dst: str,
    fc: int,
    direction: str = "request",
    protocol: str = "modbus",
    unit: int = 1,
) -> dict[str, Any]:
    """One OtEvent dict as the decoders emit it (built through the schema class)."""
    port = PORTS[protocol]
    req = direction == "request"
    uid = f"E{protocol}{ts}{src}{dst}{fc}{direction}"
    return OtEvent(
        uid=uid,
        ts=ts,
        protocol=protocol,
        direction=direction,
        src_ip=src,
        src_port=40000 if req else port,
        dst_ip=dst,
        dst_port=port if req else 40000,
        community_id="1:test",
        flow_uid=f"C{src}{dst}" if req else f"C{dst}{src}",
        vantage="test",
        unit=unit,
        function_code=fc,
        function_name=FC_NAMES.get(fc, f"unknown-{fc}"),
        address=100,
        quantity=2,
        src_enterprise="ent-b" if src == ROGUE else "ent-a",
        dst_enterprise="ent-a",
    ).to_dict()


def polls(start: int, end: int, seed: int) -> list[dict[str, Any]]:
    """Benign polling with ±20 ms jitter: HMI1->PLC1 fc 3 each 1 s, HMI2->PLC2 fc 4 each 2 s,
    MASTER3->RTU3 DNP3 fc 1 each 5 s; every request answered 5 ms later."""
    rnd = random.Random(seed)
    out: list[dict[str, Any]] = []
    for master, slave, fc, period, proto, unit in (
        (HMI1, PLC1, 3, 1, "modbus", 1),
        (HMI2, PLC2, 4, 2, "modbus", 1),
        (MASTER3, RTU3, 1, 5, "dnp3", 10),
    ):
        t = start
        while t < end:
            ts = t + rnd.randint(-20, 20) * 1_000_000
            out.append(ev(ts, master, slave, fc, "request", proto, unit))
            out.append(ev(ts + 5_000_000, slave, master, fc, "response", proto, unit))
            t += period * S
    return sorted(out, key=lambda x: (x["ts"], x["uid"]))


def labelled_stream(seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[int]]:
    """(training events: 10 min benign; test events: 5 min benign + attacks; test labels)."""
    benign = polls(T0, T0 + 900 * S, seed)
    cut = record_time(benign[0]) + 600 * S  # as LearnThenScore(…, 10 min) splits it
    train = [x for x in benign if record_time(x) < cut]
    test_benign = benign[len(train) :]
    attacks: list[dict[str, Any]] = []
    base = T0 + 700 * S + 300_000_000
    for i in range(5):  # rogue master writes a register, PLC answers
        attacks.append(ev(base + i * S, ROGUE, PLC1, 6))
        attacks.append(ev(base + i * S + 5_000_000, PLC1, ROGUE, 6, "response"))
    attacks.append(ev(T0 + 750 * S + 500_000_000, HMI1, PLC1, 16))  # new function code
    attacks.append(ev(T0 + 760 * S + 500_000_000, HMI1, PLC1, 3, unit=7))  # new unit id
    for i in range(6):  # request flood from the known master: polling-interval break
        attacks.append(ev(T0 + 800 * S + 400_000_000 + i * 50_000_000, HMI1, PLC1, 3))
    attacks.append(ev(T0 + 820 * S + 300_000_000, MASTER3, RTU3, 5, protocol="dnp3", unit=10))
    test = [(x, 0) for x in test_benign] + [(x, 1) for x in attacks]
    test.sort(key=lambda p: (p[0]["ts"], p[0]["uid"]))
    return train, [x for x, _ in test], [y for _, y in test]


def trained(seed: int = 0, **kw: Any) -> OtBaseline:
    det = OtBaseline(**kw)
    for x in labelled_stream(seed)[0]:
        det.learn(x)
    return det


def test_learned_traffic_scores_zero() -> None:
    det = trained()
    for x in polls(T0 + 600 * S, T0 + 700 * S, 5):
        a = det.assess(x)
        assert a.score == 0.0, a.reason
        assert a.rule_id == "normal"
    assert det.summary()["talker_pairs"] == 6
    assert det.summary()["outstations"] == 3
    assert det.training_scores() == [0.0] * det.learned


def test_new_master_named_with_reason_and_alert() -> None:
    det = trained()
    det.assess(ev(T0 + 600 * S, HMI1, PLC1, 3))
    x = ev(T0 + 601 * S, ROGUE, PLC1, 6)
    a = det.assess(x)
    assert a.rule_id == "new_master"
    assert a.score == pytest.approx(0.95)
    assert ROGUE in a.reason and PLC1 in a.reason and HMI1 in a.reason
    assert "write_single_register" in a.reason
    assert "new_talker" in a.evidence["findings"]  # also a pair never seen
    assert a.techniques == ("T0848",)
    alert = make_alert("ot_baseline", x, a, FixedThreshold(0.5))
    assert isinstance(alert, Alert)
    assert alert.attackers == (ROGUE,) and alert.targets == (PLC1,)
    assert alert.level == "high" and alert.category is None
    assert alert.event_uids == (x["uid"],) and alert.flow_uids == (x["flow_uid"],)
    assert alert.enterprises == ("ent-a", "ent-b")
    assert alert.uid == alert_uid("ot_baseline", "new_master", x["uid"])
    assert alert.evidence["learned_masters"] == [HMI1]
    assert Alert.from_dict(alert.to_dict()) == alert
    assert make_alert("ot_baseline", x, a, FixedThreshold(0.96)) is None


def test_new_function_code_and_new_unit_for_known_pair() -> None:
    det = trained()
    a = det.assess(ev(T0 + 600 * S, HMI1, PLC1, 16))
    assert a.rule_id == "new_function_code"
    assert "write_multiple_registers" in a.reason and "learned: 3" in a.reason
    b = det.assess(ev(T0 + 600 * S, HMI1, PLC1, 3, unit=9))  # on time: no interval break
    assert b.rule_id == "new_unit" and "unit 9" in b.reason
    assert b.score < a.score


def test_new_talker_for_responses_and_unknown_outstations() -> None:
    det = trained()
    x = ev(T0 + 600 * S, PLC1, ROGUE, 6, "response")
    a = det.assess(x)
    assert a.rule_id == "new_talker" and a.score == pytest.approx(0.9)
    alert = make_alert("ot_baseline", x, a, FixedThreshold(0.5))
    assert alert is not None  # the requester of a response is the actor
    assert alert.attackers == (ROGUE,) and alert.targets == (PLC1,)
    # a request to a host never polled: new talker, not new master (no learned masters)
    b = det.assess(ev(T0 + 601 * S, HMI1, "10.1.2.99", 3))
    assert b.rule_id == "new_talker"


def test_masters_come_from_requests_only() -> None:
    det = OtBaseline()
    for i in range(5):  # only responses seen from PLC1 to HMI1
        det.learn(ev(T0 + i * S, PLC1, HMI1, 3, "response"))
    assert det.masters == {}
    a = det.assess(ev(T0 + 10 * S, ROGUE, PLC1, 3))
    assert a.rule_id == "new_talker"


def test_polling_interval_break_late_and_early() -> None:
    det = trained()
    last = max(record_time(x) for x in labelled_stream()[0] if x["src_ip"] == HMI1)
    late = ev(last + 6 * S, HMI1, PLC1, 3)
    a = det.assess(late)
    assert a.rule_id == "polling_interval_break"
    assert 0.5 < a.score < 0.8
    assert "late" in a.reason and "median 1.0" in a.reason
    assert a.evidence["interval_s"] == pytest.approx(6.0, abs=0.05)
    assert det.assess(late) == a  # assessing the same event twice: same answer
    early = ev(last + 6 * S + 100_000_000, HMI1, PLC1, 3)
    b = det.assess(early)
    assert b.rule_id == "polling_interval_break" and "early" in b.reason
    ok = ev(last + 7 * S + 100_000_000, HMI1, PLC1, 3)
    assert det.assess(ok).score == 0.0


def test_interval_needs_minimum_samples() -> None:
    det = OtBaseline(min_intervals=8)
    for i in range(6):  # 5 intervals < 8
        det.learn(ev(T0 + i * S, HMI1, PLC1, 3))
    assert det.assess(ev(T0 + 30 * S, HMI1, PLC1, 3)).score == 0.0
    det2 = OtBaseline(min_intervals=4)
    for i in range(6):
        det2.learn(ev(T0 + i * S, HMI1, PLC1, 3))
    assert det2.assess(ev(T0 + 30 * S, HMI1, PLC1, 3)).rule_id == "polling_interval_break"


def test_learn_then_score_on_one_stream_with_benign_lead_in() -> None:
    train, test, labels = labelled_stream()
    runner = LearnThenScore(OtBaseline(), parse_duration("10m"))
    alerts = [runner.alert(x) for x in train + test]
    assert runner.learned == len(train) and runner.scored == len(test)
    assert all(a is None for a in alerts[: len(train)])
    fired = [a for a in alerts[len(train) :] if a is not None]
    rules = {a.rule_id for a in fired}
    assert {"new_master", "new_function_code", "new_unit", "polling_interval_break"} <= rules
    hit = {a.event_uids[0] for a in fired}
    attack_uids = {x["uid"] for x, y in zip(test, labels, strict=True) if y}
    assert len(hit & attack_uids) >= 0.8 * len(attack_uids)
    benign_hits = len(hit - attack_uids)
    assert benign_hits <= 3  # the poll right after the flood breaks the interval, no more


def test_bad_settings_and_records() -> None:
    with pytest.raises(ConfigError):
        OtBaseline(k=0)
    with pytest.raises(ConfigError):
        OtBaseline(min_intervals=1)
    with pytest.raises(ConfigError, match="no time"):
        OtBaseline().learn({"schema": "parkwatch.ot_event/2", "src_ip": "1.2.3.4"})


@pytest.mark.parametrize(
    ("text", "ns"),
    [("90s", 90 * S), ("10m", 600 * S), ("1h", 3600 * S), ("1h30m", 5400 * S),
     ("250ms", 250_000_000), ("1.5h", 5400 * S), ("45", 45 * S), (" 2M ", 120 * S)],
)  # fmt: skip
def test_parse_duration(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "abc", "10x", "m10", "-5s", "0s", "10m junk"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)


def test_real_iec104_capture_rogue_master() -> None:
    """replay_pcaps/iec104_rogue_master.pcap through the flow pipeline and the IEC 104 decoder:
    learning up to the first attack, then the new master 10.2.1.88 is named."""
    import inspect

    import yaml

    from collectors.pipeline import FlowPipeline
    from detectors.anomaly.train_cli import read_records
    from parkwatch.schema import parse_ts

    if "apps" not in inspect.signature(FlowPipeline).parameters:
        pytest.skip("this build has no application decoders")
    replay = Path(__file__).resolve().parents[1] / "replay_pcaps"
    _, events = read_records([str(replay / "iec104_rogue_master.pcap")], str(replay / "park.yaml"),
                             "park-gw")  # fmt: skip
    assert events and all(e["protocol"] == "iec104" for e in events)
    labels = yaml.safe_load((replay / "iec104_rogue_master.labels.yaml").read_text())
    attack = min(parse_ts(a["start"]) for a in labels["attacks"])
    runner = LearnThenScore(OtBaseline(), attack - record_time(events[0]))
    alerts = [a for a in runner.alerts_many(events) if a is not None]
    assert runner.learned > 10 and alerts
    assert {a.attackers for a in alerts} == {("10.2.1.88",)}
    assert {a.targets for a in alerts} == {("10.2.2.10",)}
    masters = [a for a in alerts if a.rule_id == "new_master"]
    assert masters and "10.2.2.20" in masters[0].reason and masters[0].techniques == ("T0848",)
    assert any("C_SC_NA_1" in a.reason for a in masters)
