"""The scale-out path: collector -> transport -> ``detect`` -> ``correlate`` equals the embedded
replay on the same capture (in-process transport, and the real CLI over a Tansu broker)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from correlator.correlate_cli import LiveCorrelator
from correlator.incidents import Correlator
from correlator.replay import replay_capture
from detectors.detect_cli import detect_batches, event_time
from detectors.stage import DetectionStage
from parkwatch.config import load_settings
from parkwatch.schema import Incident, Record
from parkwatch.store.sqlite import SqliteStore
from parkwatch.topology import load_topology
from parkwatch.transport.base import TransportSettings, open_transport, publish_records
from parkwatch.transport.worker import run_stage
from tests.servers_kafka import tansu_factory  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "replay_pcaps"
PARK = PCAPS / "park.yaml"
CAPTURES = [
    "modbus_unauthorized_write.pcap",
    "it_ftp_brute_force.pcap",
    "s7comm_plc_attacks.pcap",
    "sample_park.pcap",
]


def facts(capture: Path) -> list[Record]:
    """What the collector publishes for ``capture`` (flows, events, ARP, weirds)."""
    from collectors.pipeline import FlowPipeline

    out: list[Record] = []
    settings = load_settings(vantage="park-gw", topology=PARK)
    pipe = FlowPipeline(settings, load_topology(PARK), apps="all")
    pipe.run([str(capture)], out.append, lambda cols: out.extend(cols.records()))
    return out


def shape(incs: list[Incident]) -> set[tuple[Any, ...]]:
    return {(i.category, i.attackers, i.targets, i.defended, i.alert_count) for i in incs}


def embedded(capture: Path) -> list[Incident]:
    topo = load_topology(PARK)
    settings = load_settings(vantage="park-gw", topology=PARK)
    return replay_capture(capture, None, settings, topo, None).incidents


@pytest.mark.parametrize("name", CAPTURES)
def test_stages_over_the_transport_equal_the_embedded_replay(name):
    capture = PCAPS / name
    topo = load_topology(PARK)
    ts = TransportSettings()
    tr = open_transport(f"memory://{name}", ts)
    recs = facts(capture)
    publish_records(tr, [(ts.topics.for_record(r), r) for r in recs])
    publish_records(tr, [(ts.topics.for_record(r), r) for r in recs[: len(recs) // 3]])  # again
    stage = DetectionStage(topo)
    det = run_stage(
        tr,
        [ts.topics.flows, ts.topics.events],
        "det",
        detect_batches(stage, ts.topics.alerts),
        idle_exit=0.2,
        poll_timeout=0.05,
    )
    assert det.duplicates >= len(recs) // 3  # at-least-once input, duplicates dropped
    publish_records(tr, [(ts.topics.alerts, a) for a in stage.flush()])
    live = LiveCorrelator(Correlator(topo), 24 * 3600 * 10**9)
    latest: dict[str, Incident] = {}

    def correlate(batch: list[Record]) -> list[tuple[str, Record]]:
        _alerts, changed, gone = live.process(batch)
        latest.update({i.id: i for i in changed})
        for i in gone:
            del latest[i]
        return [(ts.topics.incidents, i) for i in changed]

    run_stage(
        tr,
        [ts.topics.alerts, ts.topics.flows, ts.topics.events],
        "cor",
        correlate,
        idle_exit=0.2,
        poll_timeout=0.05,
        max_records=50,
    )
    want = embedded(capture)
    assert want, name
    assert shape(list(latest.values())) == shape(want)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_live_correlator_in_any_delivery_order_stores_the_embedded_incidents(seed, tmp_path):
    """Partitions deliver alerts and facts in any order: incidents that later alerts regroup
    (their id changes, or a loose anomaly alert joins one) are withdrawn from the store."""
    import random

    capture = PCAPS / "sample_park.pcap"
    topo = load_topology(PARK)
    recs = facts(capture)
    stage = DetectionStage(topo)
    alerts = [a for r in sorted(recs, key=event_time) for a in stage.process(r)] + stage.flush()
    todo = [*recs, *alerts]
    random.Random(seed).shuffle(todo)
    live = LiveCorrelator(Correlator(topo), 24 * 3600 * 10**9)
    withdrawn = 0
    with SqliteStore.open(tmp_path / "park.db") as st:
        for lo in range(0, len(todo), 50):
            got_alerts, changed, gone = live.process(todo[lo : lo + 50])
            st.put([*got_alerts, *changed])
            withdrawn += st.remove_incidents(gone)
        stored = st.incidents()
    want = embedded(capture)
    assert withdrawn  # this order did regroup incidents (else the test shows nothing)
    assert shape(stored) == shape(want) and len(stored) == len(want)


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "name"), [("local", CAPTURES[0]), ("split", CAPTURES[1]), ("split", CAPTURES[3])]
)  # correlations (FTP brute force, a port scan) counted by the split mode counting member
def test_cli_stages_over_kafka_fill_the_store_like_the_embedded_replay(
    tansu_factory,  # noqa: F811
    tmp_path,
    mode,
    name,
):
    broker = tansu_factory()
    ts = TransportSettings()
    topics = [ts.topics.flows, ts.topics.events, ts.topics.alerts, ts.topics.incidents]
    broker.create_topics(topics)  # split mode: detect creates the hits topic itself
    capture = PCAPS / name

    def pw(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "parkwatch.cli", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)

    res = pw(
        "collect",
        "--pcap",
        str(capture),
        "--vantage",
        "park-gw",
        "--topology",
        str(PARK),
        "--to",
        broker.url,
        "--apps",
        "--spool",
        str(tmp_path / "spool"),
    )
    assert res.returncode == 0, res.stderr
    res = pw("detect", "--from", broker.url, "--topology", str(PARK), "--idle-exit", "6",
             "--correlations", mode)  # fmt: skip
    assert res.returncode == 0 and "alerts published" in res.stderr, res.stderr
    assert ("correlation hits published" in res.stderr) == (mode == "split"), res.stderr
    db = tmp_path / "park.db"
    res = pw(
        "correlate",
        "--from",
        broker.url,
        "--topology",
        str(PARK),
        "--store",
        str(db),
        "--idle-exit",
        "6",
    )
    assert res.returncode == 0, res.stderr
    with SqliteStore.open(db) as st:
        got = st.incidents()
    assert shape(got) == shape(embedded(capture))
    assert got, "the store holds the incidents"
