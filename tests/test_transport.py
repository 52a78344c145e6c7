"""Transport contract (every registered transport: memory, and Kafka on Tansu), keys and
decoding, and the at-least-once stage loop (crash before commit, redelivery, duplicates)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from parkwatch.errors import ConfigError, TransportError
from parkwatch.schema import (
    RECORD_TYPES,
    Alert,
    CorrelationHit,
    FlowRecord,
    Incident,
    OtEvent,
    Record,
    Weird,
)
from parkwatch.transport import TRANSPORTS, open_transport
from parkwatch.transport.base import (
    Message,
    Topics,
    TransportSettings,
    decode_message,
    key_for,
    publish_records,
    record_id,
)
from parkwatch.transport.kafka import KafkaTransport, compression_type
from parkwatch.transport.memory import MemoryTransport
from parkwatch.transport.worker import Dedup, run_stage
from tests.helpers import run_capture
from tests.servers_kafka import fast_settings, kafka_broker, unique  # noqa: F401

SAMPLE = Path(__file__).resolve().parents[1] / "replay_pcaps" / "sample_park.pcap"


@pytest.fixture(scope="module")
def flows() -> list[FlowRecord]:
    return run_capture(str(SAMPLE)).flows


def samples(flows: list[FlowRecord]) -> dict[type[Record], Record]:
    f = flows[0]
    arp = run_capture(str(SAMPLE)).arp[0]
    ot = OtEvent(
        "E1", f.start, "modbus", "request", f.src_ip, f.src_port, f.dst_ip, 502, f.community_id
    )
    alert = Alert("A1", f.start, "sigma", "r1", "t", "high", attackers=("10.9.9.9",))
    inc = Incident("inc-1", f.start, f.end, "recon_scan", "high", enterprises=("ent-a",))
    weird = Weird(f.start, "bad_tcp_data_offset", "tcp", "x", vantage="gw")
    hit = CorrelationHit("hit-1", f.start, "rule-1", "probe", ("10.9.9.9", 502), (7,), "C1")
    return {
        FlowRecord: f, OtEvent: ot, Alert: alert, Incident: inc, Weird: weird, type(arp): arp,
        CorrelationHit: hit,
    }  # fmt: skip


def test_every_record_type_round_trips_with_key_and_id(flows: list[FlowRecord]) -> None:
    recs = samples(flows)
    assert set(recs) == set(RECORD_TYPES)
    mem = MemoryTransport()
    publish_records(mem, [(Topics().for_record(r), r) for r in recs.values()])
    c = mem.subscribe(["parkwatch.flows", "parkwatch.events", "parkwatch.alerts",
                       "parkwatch.incidents", "parkwatch.hits"], "g")  # fmt: skip
    got = [decode_message(m) for m in c.poll(0.1, 100)]
    assert sorted(map(repr, got)) == sorted(map(repr, recs.values()))
    assert key_for(recs[FlowRecord]) == flows[0].community_id.encode()
    assert key_for(recs[OtEvent]) == flows[0].community_id.encode()
    assert key_for(recs[Alert]) == b"10.9.9.9" and key_for(recs[Incident]) == b"ent-a"
    assert key_for(recs[CorrelationHit]) == b'rule-1|["10.9.9.9",502]'
    assert record_id(recs[CorrelationHit]) == "hit-1"
    assert record_id(recs[FlowRecord]) == flows[0].uid and record_id(recs[Incident]) == "inc-1"
    w = recs[Weird]
    assert isinstance(w, Weird)
    assert record_id(w) == record_id(Weird(w.ts, w.name, w.layer, w.detail, vantage=w.vantage))
    assert record_id(w) != record_id(Weird(w.ts, w.name, w.layer, "other detail"))


def test_decoding_refuses_bad_messages() -> None:
    bad = [
        Message("t", 0, 0, None, b"not json", {}),
        Message("t", 0, 1, None, b"{}", {"schema": b"parkwatch.nope/1"}),
        Message("t", 0, 2, None, b'{"uid": 1}', {"schema": FlowRecord.schema_id().encode()}),
    ]
    for m in bad:
        with pytest.raises(Exception) as err:
            decode_message(m)
        assert err.type.__name__ == "SchemaError"


def test_open_transport_urls() -> None:
    assert set(TRANSPORTS) >= {"memory", "kafka"}
    a, b, c = open_transport(None), open_transport("memory://"), open_transport("memory://x")
    assert isinstance(a, MemoryTransport) and isinstance(b, MemoryTransport)
    assert isinstance(c, MemoryTransport)
    assert a.broker is b.broker and c.broker is not a.broker  # one per process and name
    k = open_transport("kafka://127.0.0.1:1,h2")
    assert isinstance(k, KafkaTransport) and k.bootstrap == ["127.0.0.1:1", "h2:9092"]
    with pytest.raises(ConfigError):
        open_transport("127.0.0.1:9092")
    with pytest.raises(ConfigError):
        open_transport("nats://x")
    assert compression_type("auto") in ("lz4", "gzip") and compression_type("none") is None


def test_kafka_unreachable_is_a_transport_error() -> None:
    from tests.servers_kafka import free_port

    t = KafkaTransport([f"127.0.0.1:{free_port()}"], fast_settings(max_block_ms=300))
    t0 = time.monotonic()
    with pytest.raises(TransportError) as err:
        t.publish("x", [b"1"])
    assert time.monotonic() - t0 < 10 and "127.0.0.1" in str(err.value)


# -- contract: every registered transport -------------------------------------------------
@pytest.fixture(params=sorted(str(k) for k in TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryTransport()
        return
    assert request.param == "kafka"
    broker = request.getfixturevalue("kafka_broker")
    t = open_transport(broker.url, fast_settings(pack=3))  # small envelopes: poll buffering
    yield t
    t.close()


def poll_until(c: Any, n: int, timeout: float = 20) -> list[Message]:
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out.extend(c.poll(0.2, 1000))
    return out


@pytest.mark.server
def test_contract_publish_consume_commit_redeliver(transport: Any) -> None:
    topic, group = unique("contract"), unique("grp")
    vals = [b'{"n":%d}' % i for i in range(300)]
    keys = [b"key-%d" % (i % 5) for i in range(300)]
    ensure(transport, [topic])
    transport.publish(topic, vals[:200], keys[:200], {"schema": b"x/1"})
    transport.flush()
    c = transport.subscribe([topic], group)
    got = poll_until(c, 200)
    assert sorted(m.value for m in got) == sorted(vals[:200])
    assert all(m.headers == {"schema": b"x/1"} for m in got)
    by_key: dict[bytes, set[int]] = {}
    for m in got:  # partition affinity: a key stays on one partition
        by_key.setdefault(orjson_key(m, keys), set()).add(m.partition)
    assert all(len(p) == 1 for p in by_key.values())
    c.commit()
    transport.publish(topic, vals[200:], keys[200:], {"schema": b"x/1"})
    transport.flush()
    assert sorted(m.value for m in poll_until(c, 100)) == sorted(vals[200:])
    c.close()  # closed without committing the last 100: they come again
    c2 = transport.subscribe([topic], group)
    again = poll_until(c2, 100)
    assert sorted(m.value for m in again) == sorted(vals[200:])
    c2.commit()
    c2.close()


def orjson_key(m: Message, keys: list[bytes]) -> bytes:
    import orjson

    return keys[orjson.loads(m.value)["n"]]


def ensure(transport: Any, topics: list[str]) -> None:
    if isinstance(transport, KafkaTransport):
        transport.ensure_topics(topics, 3)


@pytest.mark.server
def test_kafka_packing_and_plain_modes(kafka_broker: Any) -> None:  # noqa: F811
    for pack in (0, 7):
        t = KafkaTransport([kafka_broker.bootstrap], fast_settings(pack=pack))
        topic = unique(f"pack{pack}")
        t.ensure_topics([topic], 2)
        vals = [b'{"n":%d}' % i for i in range(50)] + [b"two\nlines"]
        t.publish(topic, vals, [b"k%d" % (i % 3) for i in range(51)], {"schema": b"x/1"})
        t.flush()
        assert t.sent_messages == (51 if pack == 0 else sum(-(-n // 7) for n in
                                                             part_sizes(vals, 2)) + 1)  # fmt: skip
        c = t.subscribe([topic], unique("g"))
        got = poll_until(c, 51)
        assert sorted(m.value for m in got) == sorted(vals)
        if pack == 0:
            assert {m.key for m in got} == {b"k0", b"k1", b"k2"}
        c.close()
        t.close()


def part_sizes(vals: list[bytes], n: int) -> list[int]:
    import crc32c

    sizes = [0] * n
    for i in range(50):
        sizes[crc32c.crc32c(b"k%d" % (i % 3)) % n] += 1
    return [s for s in sizes if s]


@pytest.mark.server
def test_kafka_group_members_share_and_take_over(kafka_broker: Any) -> None:  # noqa: F811
    t = KafkaTransport([kafka_broker.bootstrap], fast_settings(pack=0))
    topic, group = unique("share"), unique("grp")
    t.ensure_topics([topic], 4)
    t.publish(topic, [b"%d" % i for i in range(400)], [b"k%d" % i for i in range(400)])
    t.flush()
    a = t.subscribe([topic], group)
    got_a = poll_until(a, 400, timeout=5)
    a.commit()
    b = t.subscribe([topic], group)  # joins: the partitions are split between a and b
    deadline = time.monotonic() + 20

    def settled() -> bool:
        sa, sb = a.assignment(), b.assignment()
        return bool(sa and sb and not sa & sb)

    while not settled() and time.monotonic() < deadline:
        assert not a.poll(0.1) + b.poll(0.1)  # nothing new yet, a's offsets were committed
    assert len(a.assignment() | b.assignment()) == 4 and not a.assignment() & b.assignment()
    t.publish(topic, [b"x%d" % i for i in range(400)], [b"k%d" % i for i in range(400)])
    t.flush()
    seen_a: list[Message] = []
    seen_b: list[Message] = []
    deadline = time.monotonic() + 20
    while len(seen_a) + len(seen_b) < 400 and time.monotonic() < deadline:
        seen_a += a.poll(0.1, 1000)
        seen_b += b.poll(0.1, 1000)
    a.commit()
    b.commit()
    assert len(got_a) == 400
    values = sorted(m.value for m in seen_a + seen_b)
    assert set(values) == {b"x%d" % i for i in range(400)}
    assert {(m.topic, m.partition) for m in seen_a} <= a.assignment()
    assert {(m.topic, m.partition) for m in seen_b} <= b.assignment()
    assert seen_a and seen_b  # both members worked
    a.close()
    b.close()


# -- the stage loop -------------------------------------------------------------------------
OUT = unique("out.alerts")


def derive(records: list[Record]) -> list[tuple[str, Record]]:
    """A stage: every flow becomes an alert whose id derives from the flow's uid."""
    out: list[tuple[str, Record]] = []
    for r in records:
        assert isinstance(r, FlowRecord)
        a = Alert("A-" + r.uid, r.start, "test", "derive", r.conn_state, "low",
                  attackers=(r.src_ip,), flow_uids=(r.uid,))  # fmt: skip
        out.append((OUT, a))
    return out


class CrashBeforeCommit:
    """Wraps a transport: the n-th commit raises, as if the process died after its output
    was flushed but before the input offsets were committed."""

    def __init__(self, inner: Any, crash_at: int) -> None:
        self.inner, self.crash_at, self.commits = inner, crash_at, 0

    def publish(self, *a: Any, **k: Any) -> None:
        self.inner.publish(*a, **k)

    def flush(self, timeout: float | None = None) -> None:
        self.inner.flush(timeout)

    def close(self) -> None:
        pass

    def subscribe(self, topics: Sequence[str], group: str) -> Any:
        consumer = self.inner.subscribe(topics, group)
        outer = self

        class C:
            def poll(self, timeout: float = 1.0, max_records: int = 500) -> list[Message]:
                return consumer.poll(timeout, max_records)

            def commit(self) -> None:
                outer.commits += 1
                if outer.commits == outer.crash_at:
                    raise RuntimeError("crash")
                consumer.commit()

            def close(self) -> None:
                consumer.close()

        return C()


@pytest.mark.server
def test_stage_crash_redelivers_and_next_stage_drops_duplicates(
    transport: Any, flows: list[FlowRecord]
) -> None:
    src, group = unique("in.flows"), unique("stage")
    ensure(transport, [src, OUT])
    dupes = flows[:5]  # the collector resent these (spool): the stage must see them once
    publish_records(transport, [(src, f) for f in flows + dupes])
    transport.flush()
    crashing = CrashBeforeCommit(transport, crash_at=2)
    outs: list[int] = []

    def counting(records: list[Record]) -> list[tuple[str, Record]]:
        got = derive(records)
        outs.append(len(got))
        return got

    with pytest.raises(RuntimeError, match="crash"):
        run_stage(crashing, [src], group, counting, max_records=10, idle_exit=3)
    assert len(outs) == 2 and outs[1] > 0  # the second batch's output went out, no commit
    st = run_stage(transport, [src], group, derive, max_records=10, idle_exit=3)  # restart
    assert st.records + st.duplicates == st.messages >= len(flows) - 20
    down = unique("down")
    collected: list[Record] = []

    def sink(records: list[Record]) -> list[tuple[str, Record]]:
        collected.extend(records)
        return []

    ds = run_stage(transport, [OUT], down, sink, idle_exit=3)
    uids = sorted(a.flow_uids[0] for a in collected if isinstance(a, Alert))
    assert uids == sorted(f.uid for f in flows)  # every flow, exactly once
    assert len(collected) == ds.records == len(flows)
    # the crashed batch's alerts were published twice (and resent flows whose first copy
    # was committed before the crash, when the restarted stage no longer knew them)
    assert outs[1] <= ds.duplicates <= outs[1] + len(dupes)


def test_stage_drops_input_duplicates_and_reports_bad_messages() -> None:
    mem = MemoryTransport()
    flows = run_capture(str(SAMPLE)).flows
    publish_records(mem, [("in", f) for f in flows + flows[:3]])
    mem.publish("in", [b"garbage"], None, {"schema": b"parkwatch.flow/999"})
    seen: list[Record] = []

    def process(records: list[Record]) -> list[tuple[str, Record]]:
        seen.extend(records)
        return derive(records)

    st = run_stage(mem, ["in"], "g", process, idle_exit=0.2)
    assert len(seen) == len(flows) and st.duplicates == 3 and st.undecodable == 1
    weird = [decode_message(m) for m in mem.subscribe(["parkwatch.events"], "w").poll(0.1)]
    assert len(weird) == 1 and isinstance(weird[0], Weird)
    assert weird[0].name == "undecodable_record" and "in[0]@" in weird[0].detail
    assert run_stage(mem, ["in"], "g", derive, idle_exit=0.2).messages == 0  # all committed


def test_stage_stops_on_event_and_dedup_is_bounded() -> None:
    stop = threading.Event()
    stop.set()
    assert run_stage(MemoryTransport(), ["x"], "g", derive, stop=stop).batches == 0
    d = Dedup(size=4)
    assert not d.seen(("s", "a")) and d.seen(("s", "a"))
    for k in "bcdefg":
        d.seen(("s", k))
    assert not d.seen(("s", "a"))  # forgotten after two generations


def test_settings_defaults_are_valid() -> None:
    s = TransportSettings()
    assert s.topics.feed("ent-a") == "parkwatch.feed.ent-a"
    assert s.linger_ms > 0 and s.pack > 0 and s.spool_fsync == "batch"
