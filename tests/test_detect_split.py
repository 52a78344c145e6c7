"""Correlation rules counted exactly when detection is scaled out (``detect --correlations
split``): several detect members share the flow partitions, correlation hits are re-keyed by
their group, and each group is counted by one member. The capture's vertical port scan is
spread over partitions by Community ID, so members counting locally miss it."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from detectors.detect_cli import DetectRun, event_time, run_detect
from detectors.sigma.engine import SigmaEngine
from detectors.sigma.loader import load_pack
from detectors.stage import RULES, DetectionStage
from parkwatch.schema import Alert, CorrelationHit, Record
from parkwatch.topology import load_topology
from parkwatch.transport.base import TransportSettings, decode_message, open_transport
from parkwatch.transport.base import publish_records as publish
from parkwatch.transport.memory import broker
from tests.servers_kafka import fast_settings, kafka_broker, unique  # noqa: F401
from tests.test_stages import PARK, PCAPS, facts

CAPTURE = PCAPS / "sample_park.pcap"
PARTS = 4
CHUNK = 10
VERTICAL = "76feeb52-6fc8-567c-b010-7e21643be96d"  # rules/net/net_port_scan_vertical.yml
SCAN = "Vertical port scan: one source probes many ports of one host"


@pytest.fixture(scope="module")
def records() -> list[Record]:
    return facts(CAPTURE)


def single_member(records: list[Record]) -> list[Alert]:
    """The reference: one engine over every record in event time (the embedded pipeline)."""
    stage = DetectionStage(load_topology(PARK))
    out = [a for r in sorted(records, key=event_time) for a in stage.process(r)]
    return out + stage.flush()


def corr_shape(alerts: list[Alert]) -> set[tuple[Any, ...]]:
    """Correlation alerts without their order-dependent uid."""
    return {
        (
            a.rule_id,
            str(a.evidence["group"]),
            a.evidence["count"],
            a.attackers,
            tuple(sorted(a.targets)),
            tuple(sorted(a.flow_uids)),
        )
        for a in alerts
        if "group" in a.evidence
    }


def read_alerts(url: str, ts: TransportSettings) -> list[Alert]:
    tr = open_transport(url, ts)
    c = tr.subscribe([ts.topics.alerts], unique("reader"))
    out: list[Alert] = []
    idle = time.monotonic()
    while time.monotonic() - idle < 3:
        msgs = c.poll(0.2, 500)
        if msgs:
            idle = time.monotonic()
        out.extend(r for r in map(decode_message, msgs) if isinstance(r, Alert))
    c.close()
    tr.close()
    return out


def members(url: str, ts: TransportSettings, split: bool, n: int, ready: Any, settle: Any,
            records: list[Record], idle_exit: float = 2.0) -> list[DetectRun]:  # fmt: skip
    """``n`` detect members in threads on ``url``; ``ready()`` says when they all joined,
    then the collector's records are published in time order, ``CHUNK`` at a time, calling
    ``settle()`` after each (live traffic: the members keep up with the collector)."""
    topo = load_topology(PARK)
    runs: list[DetectRun] = []
    errors: list[BaseException] = []

    def member() -> None:
        stage = DetectionStage(topo, correlations="publish" if split else "local")
        counter = SigmaEngine(load_pack(RULES), topo) if split else None
        try:
            run = run_detect(url, ts, "det", stage, counter, idle_exit=idle_exit, poll_timeout=0.05)
            runs.append(run)
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=member) for _ in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready(), "the members did not all join"
    tr = open_transport(url, ts)
    ordered = sorted(records, key=event_time)
    for lo in range(0, len(ordered), CHUNK):  # as a live collector does: in time, bit by bit
        publish(tr, [(ts.topics.for_record(r), r) for r in ordered[lo : lo + CHUNK]])
        tr.flush()
        settle()
    tr.close()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return runs


def memory_members(records: list[Record], split: bool) -> tuple[list[Alert], list[DetectRun]]:
    name = unique("split")
    ts = TransportSettings()
    b = broker(name)
    for t in (ts.topics.flows, ts.topics.events, ts.topics.hits, ts.topics.alerts):
        b.create_topic(t, PARTS)

    def ready() -> bool:
        groups = ["det", "det-correlations"] if split else ["det"]
        return all(len(b.members.get(g, [])) == 2 for g in groups)

    def settle() -> None:  # every member has committed all there is (lock step)
        groups = {"det": (ts.topics.flows, ts.topics.events), "det-correlations": (ts.topics.hits,)}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with b.cond:
                todo = [
                    (g, t, p)
                    for g, topics in groups.items()
                    if split or g == "det"
                    for t in topics
                    for p, log in enumerate(b.logs[t])
                    if b.committed.get((g, t, p), 0) < len(log)
                ]
            if not todo:
                return
            time.sleep(0.01)
        raise AssertionError(f"members did not keep up: {todo[:3]}")

    runs = members(f"memory://{name}", ts, split, 2, ready, settle, records)
    return read_alerts(f"memory://{name}", ts), runs


def test_scan_spread_over_partitions_is_missed_by_members_counting_locally(records):
    want = single_member(records)
    scans = [a for a in want if a.title == SCAN]
    assert len(scans) == 2  # one per scanned host, 10 ports each
    got, runs = memory_members(records, split=False)
    assert all(r.rules.records for r in runs)  # both members had work
    assert not [a for a in got if a.title == SCAN]  # each saw only its share of the probes
    assert corr_shape(got) != corr_shape(want)


def test_split_correlations_count_exactly_across_members(records):
    want = single_member(records)
    got, runs = memory_members(records, split=True)
    assert all(r.rules.records and r.counting and r.counting.records for r in runs)
    assert corr_shape(got) == corr_shape(want)
    assert len([a for a in got if a.title == SCAN]) == 2
    base = {a.uid for a in want if "group" not in a.evidence}
    assert {a.uid for a in got if "group" not in a.evidence} == base  # base alerts unchanged
    assert sum(r.hits for r in runs) == sum(r.counting.records for r in runs if r.counting)
    assert not sum(r.late for r in runs)


def test_a_hit_survives_json_with_its_group_and_value():
    pack = load_pack(RULES)
    topo = load_topology(PARK)
    local = SigmaEngine(pack, topo)
    pub = SigmaEngine(pack, topo, correlations="publish")
    counter = SigmaEngine(pack, topo)
    base = {"proto": 6, "conn_state": "S0", "orig_payload_bytes": 0, "src_ip": "10.2.1.66",
            "dst_ip": "10.1.2.10", "vantage": "park-gw"}  # fmt: skip
    want: list[Alert] = []
    got: list[Alert] = []
    for port in range(1, 13):
        rec = {**base, "uid": f"C{port}", "dst_port": port, "end": f"2025-11-21T04:41:{port:02}Z"}
        want += local.process("flow", rec)
        got += pub.process("flow", rec)  # base rules alert as before
        hits = pub.take_hits()
        assert VERTICAL in {h.rule_id for h in hits}  # the probe counts for the scan rule
        for hit in hits:  # (and for the other scan correlations)
            wire = CorrelationHit.from_json(hit.to_json())
            assert wire == hit
            if hit.rule_id == VERTICAL:
                assert wire.group == ("10.2.1.66", "10.1.2.10") and wire.value == (port,)
            got += counter.correlate(wire)
    assert [a.to_dict() for a in got] == [a.to_dict() for a in want]
    assert [a.evidence["count"] for a in got if a.rule_id == VERTICAL] == [10]
    assert counter.correlate(CorrelationHit("h", 0, "no-such-rule", "x", ())) == []
    assert counter.counters()["unknown_correlation"] == 1


@pytest.mark.server
@pytest.mark.slow
def test_split_correlations_over_kafka(records, kafka_broker, caplog):  # noqa: F811
    ts = fast_settings(topics={k: unique(k) for k in ("flows", "events", "alerts", "hits")})
    kafka_broker.create_topics(
        [ts.topics.flows, ts.topics.events, ts.topics.alerts, ts.topics.hits], PARTS
    )
    caplog.set_level("INFO", logger="parkwatch.transport.kafka")

    def ready() -> bool:
        last: dict[tuple[str, str], set[str]] = {}
        for r in caplog.records:
            if r.getMessage().startswith("group "):
                _, group, _, member, _, parts = r.getMessage().split(" ", 5)
                last[(group, member)] = set(parts.split(",")) if parts else set()
        for g in ("det", "det-correlations"):
            held = [p for (gg, _), p in last.items() if gg == g]
            if len([p for p in held if p]) != 2 or sum(map(len, held)) != len(set().union(*held)):
                return False
        return True

    # a member that idles out hands its partitions over without its counts: stay to the end
    runs = members(kafka_broker.url, ts, True, 2, ready, lambda: time.sleep(0.1), records, 12.0)
    got = read_alerts(kafka_broker.url, ts)
    assert corr_shape(got) == corr_shape(single_member(records))
    assert all(r.counting and r.counting.records for r in runs)


def test_detect_cli_names_the_mode():
    from click.testing import CliRunner

    from detectors.detect_cli import detect_command

    res = CliRunner().invoke(detect_command, ["--from", "memory://", "--correlations", "nope"])
    assert res.exit_code == 2 and "local" in res.output and "split" in res.output
