"""The on-disk spool and the spooling transport: order, bound, crash recovery, and the
broker killed mid-stream (Tansu) with the collector's output compared to the embedded run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from collectors.collect import Collector, Output
from collectors.pipeline import FlowPipeline
from parkwatch.config import load_settings
from parkwatch.errors import TransportError
from parkwatch.schema import FlowRecord, Record, Weird
from parkwatch.topology import load_topology
from parkwatch.transport.base import TOPICS, Message, decode_message, record_id
from parkwatch.transport.kafka import KafkaTransport
from parkwatch.transport.memory import MemoryTransport
from parkwatch.transport.spool import Spool
from parkwatch.transport.spooling import SpoolingTransport
from tests.servers_kafka import fast_settings, tansu_factory, unique  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "replay_pcaps" / "sample_park.pcap"
PARK = REPO / "replay_pcaps" / "park.yaml"


def values(lo: int, hi: int) -> list[bytes]:
    return [orjson.dumps({"n": i, "pad": "x" * (i % 50)}) for i in range(lo, hi)]


def drain_all(spool: Spool) -> list[bytes]:
    out: list[bytes] = []
    while batches := spool.peek(4):
        for b in batches:
            out.extend(b.values)
        spool.pop(batches[-1], sum(len(b.values) for b in batches))
    return out


def test_spool_keeps_order_across_segments_and_reopen(tmp_path: Path) -> None:
    sp = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    keys = [b"k%d" % i if i % 3 else None for i in range(0, 500)]
    assert sp.append("t.a", values(0, 500), keys, {"schema": b"x/1"}) == 500
    assert sp.append("t.b", values(500, 600)) == 100
    assert len(list(tmp_path.glob("*.seg"))) > 3  # rolled
    first = sp.peek(2)
    assert first[0].topic == "t.a" and first[0].headers == {"schema": b"x/1"}
    assert first[0].keys[:4] == [None, b"k1", b"k2", None]
    sp.pop(first[0], len(first[0].values))  # sent: must not come again
    sent = len(first[0].values)
    sp.close()
    sp = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    assert len(sp) == 600 - sent
    assert drain_all(sp) == values(sent, 600)
    assert len(sp) == 0 and sp.bytes_used == 0
    assert sum(p.stat().st_size for p in tmp_path.glob("*.seg")) == 0  # drained files gone


def test_spool_cuts_a_torn_tail(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    sp.append("t", values(0, 10))
    sp.append("t", values(10, 20))
    sp.close()
    seg = max(tmp_path.glob("*.seg"))
    data = seg.read_bytes()
    seg.write_bytes(data[:-7])  # the process died in the middle of the second frame
    sp = Spool(tmp_path)
    assert sp.torn_frames == 1 and len(sp) == 10
    sp.append("t", values(20, 25))  # appends go after the cut
    assert drain_all(sp) == values(0, 10) + values(20, 25)


def test_spool_bound_drops_and_counts(tmp_path: Path) -> None:
    sp = Spool(tmp_path, max_bytes=1 << 16, reserve_bytes=1 << 12)
    big = [b"y" * 1000] * 40
    taken = [sp.append("t.flows", big) for _ in range(3)]
    assert taken == [40, 0, 0]  # 40 kB fit in 64 kB, the next 40 kB do not
    assert sp.bytes_used <= 1 << 16
    assert sp.append("t.events", [b"z" * 10], reserve=True) == 1  # reports use the reserve
    d = sp.take_drops()
    assert d is not None and d.records == 80 and d.bytes == 80_000
    assert d.by_topic == {"t.flows": 80} and d.first_ns <= d.last_ns
    assert sp.take_drops() is None
    assert sp.dropped_total == 80


class Flaky:
    """A transport in front of MemoryTransport whose broker can be 'down' (fault injection)."""

    def __init__(self, inner: MemoryTransport) -> None:
        self.inner, self.down, self.calls = inner, False, 0

    def publish(
        self,
        topic: str,
        values: Sequence[bytes],
        keys: Sequence[bytes | None] | None = None,
        headers: dict[str, bytes] | None = None,
    ) -> None:
        self.calls += 1
        if self.down:
            raise TransportError("broker down")
        self.inner.publish(topic, values, keys, headers)

    def flush(self, timeout: float | None = None) -> None:
        if self.down:
            raise TransportError("broker down")

    def subscribe(self, topics: Sequence[str], group: str) -> object:
        return self.inner.subscribe(topics, group)

    def close(self) -> None:
        pass


def read_topic(mem: MemoryTransport, topic: str) -> list[Message]:
    c = mem.subscribe([topic], unique("g"))
    out: list[Message] = []
    while got := c.poll(0.05, 10_000):
        out.extend(got)
    c.close()
    return out


def test_spooling_transport_outage_keeps_order_and_loses_nothing(tmp_path: Path) -> None:
    mem = MemoryTransport()
    flaky = Flaky(mem)
    st = SpoolingTransport(flaky, Spool(tmp_path / "s"), retry_interval=0.05)
    for i in range(0, 30, 10):
        st.publish("t", values(i, i + 10))
        st.flush()
    flaky.down = True
    st.publish("t", values(30, 40))  # fails: spooled
    for i in range(40, 70, 10):
        st.publish("t", values(i, i + 10))
        st.flush()
    assert not st.online and len(st.spool) == 40
    flaky.down = False
    deadline = time.monotonic() + 5
    while not st.online and time.monotonic() < deadline:
        time.sleep(0.02)
    assert st.online, st.last_error
    st.publish("t", values(70, 80))  # direct again, behind the drained backlog
    st.close()
    got = [m.value for m in read_topic(mem, "t")]
    assert got == values(0, 80)  # every record, in order, once (no ack was lost here)
    assert (st.stats.direct, st.stats.spooled, st.stats.drained) == (40, 40, 40)
    assert st.stats.outages == 1 and st.stats.dropped == 0


def test_spooling_transport_reports_drops_as_weird(tmp_path: Path) -> None:
    mem = MemoryTransport()
    flaky = Flaky(mem)
    flaky.down = True
    st = SpoolingTransport(
        flaky, Spool(tmp_path, max_bytes=1 << 16), vantage="gw-1", retry_interval=0.05
    )
    for _ in range(20):
        st.publish("park.flows", [b"f" * 1000] * 10)
    st.flush()
    assert st.stats.dropped > 0 and st.stats.spooled + st.stats.dropped == 200
    flaky.down = False
    st.close(drain_timeout=5)
    flows = read_topic(mem, "park.flows")
    assert len(flows) == st.stats.spooled
    events = [decode_message(m) for m in read_topic(mem, TOPICS.events)]
    assert len(events) == 1 and isinstance(events[0], Weird)
    w = events[0]
    assert (w.name, w.layer, w.vantage) == ("spool_full_dropped", "transport", "gw-1")
    assert f"dropped {st.stats.dropped} records" in w.detail and "park.flows=" in w.detail


def test_backlog_of_an_earlier_run_goes_first(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    sp.append("t", values(0, 5))
    sp.close()
    mem = MemoryTransport()
    st = SpoolingTransport(Flaky(mem), Spool(tmp_path), retry_interval=0.05)
    st.publish("t", values(5, 8))
    st.close(drain_timeout=5)
    assert [m.value for m in read_topic(mem, "t")] == values(0, 8)


def embedded(vantage: str) -> dict[str, Record]:
    """The embedded pipeline's records (flows, events) on the sample capture, by id."""
    settings = load_settings(None, vantage=vantage)
    pipe = FlowPipeline(settings, load_topology(PARK), apps="all")
    out: dict[str, Record] = {}

    def emit(rec: Record) -> None:
        out[record_id(rec)] = rec

    def flows(cols: object) -> None:
        for r in cols.records():  # type: ignore[attr-defined]
            out[r.uid] = r

    pipe.run([str(SAMPLE)], emit, flows)
    return out


@pytest.mark.server
@pytest.mark.slow
def test_broker_killed_mid_stream_loses_nothing(tansu_factory: Any, tmp_path: Path) -> None:  # noqa: F811
    broker = tansu_factory()
    ts = fast_settings(topics={"flows": unique("flows"), "events": unique("events")})
    names = [ts.topics.flows, ts.topics.events]
    broker.create_topics(names)
    expected = embedded("park-gw")
    n_flows = sum(isinstance(r, FlowRecord) for r in expected.values())
    assert n_flows > 20 and len(expected) > n_flows

    received: dict[str, Record] = {}
    messages = [0]
    stop = threading.Event()

    def consume() -> None:  # a group consumer that lives through the outage
        consumer = KafkaTransport([broker.bootstrap], ts).subscribe(names, unique("grp"))
        while not stop.is_set():
            try:
                msgs = consumer.poll(0.2, 1000)
            except TransportError:
                time.sleep(0.2)
                continue
            for m in msgs:
                rec = decode_message(m)
                received[record_id(rec)] = rec
            messages[0] += len(msgs)
            consumer.commit()
        consumer.close()

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    spooling = SpoolingTransport(
        KafkaTransport([broker.bootstrap], ts),
        Spool(tmp_path / "spool"),
        events_topic=ts.topics.events,
        vantage="park-gw",
        retry_interval=0.3,
        flush_timeout=ts.flush_timeout,
    )
    settings = load_settings(None, vantage="park-gw")
    coll = Collector(
        FlowPipeline(settings, load_topology(PARK), apps="all"),
        Output(spooling, None, ts.topics),
    )
    phase: dict[str, Any] = {"killed": False, "restarted": False, "direct_before": 0}
    total = 842

    def script(done: int) -> None:
        if not phase["killed"] and done >= total // 3:
            wait_until(lambda: len(received) >= spooling.stats.direct, 20)  # all acked read
            broker.kill()
            phase["killed"] = True
        elif phase["killed"] and not phase["restarted"] and done >= 2 * total // 3:
            assert len(spooling.spool) > 0 and not spooling.online
            broker.start()  # empty: Tansu kept everything in memory
            broker.create_topics(names)
            wait_until(lambda: spooling.online, 20)  # drained: the rest goes direct
            phase["restarted"] = True
            phase["direct_before"] = spooling.stats.direct

    try:
        stats = coll.run_file(str(SAMPLE), slice_packets=40, on_slice=script)
        spooling.close(drain_timeout=30)
        assert stats.packets == total and phase["restarted"]
        wait_until(lambda: set(expected) <= set(received), 40)
    finally:
        stop.set()
        reader.join(10)
    assert spooling.stats.outages >= 1 and spooling.stats.spooled > 0
    assert spooling.stats.direct > phase["direct_before"] > 0  # before and after the outage
    assert spooling.stats.drained == spooling.stats.spooled and len(spooling.spool) == 0
    assert spooling.stats.dropped == 0
    assert set(received) == set(expected)  # at least once, nothing else
    for rid, rec in expected.items():
        assert received[rid] == rec, rid  # and exactly the embedded pipeline's records
    assert messages[0] >= len(expected)


def wait_until(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)
