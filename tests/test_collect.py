"""``parkwatch collect``: replay (fast and realtime) equals the embedded pipeline, Kafka
output, SIGTERM flushes open flows, and live capture on a veth pair in network namespaces."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from collectors.collect import collect_command
from collectors.live import parse_drops
from collectors.pipeline import FlowPipeline
from parkwatch.config import load_settings
from parkwatch.schema import FlowRecord, Record
from parkwatch.topology import load_topology
from parkwatch.transport.base import decode_message, record_id
from parkwatch.transport.kafka import KafkaTransport
from tests.servers_kafka import fast_settings, kafka_broker, unique  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "replay_pcaps" / "sample_park.pcap"
PARK = REPO / "replay_pcaps" / "park.yaml"
RUN = (
    "import sys; from parkwatch.cli import cli, main; from collectors.collect import "
    "collect_command; cli.add_command(collect_command); sys.exit(main(sys.argv[1:]))"
)


def embedded_lines(path: Path, vantage: str = "park-gw") -> list[bytes]:
    """What the embedded pipeline (``parkwatch flows --apps``) makes of a capture."""
    pipe = FlowPipeline(load_settings(None, vantage=vantage), load_topology(PARK), apps="all")
    lines: list[bytes] = []

    def emit(rec: Record) -> None:
        lines.append(rec.to_json())

    def flows(cols: Any) -> None:
        lines.extend(cols.jsonl().split(b"\n")[:-1])

    pipe.run([str(path)], emit, flows)
    return sorted(lines)


def collect(*args: str) -> Any:
    return CliRunner().invoke(collect_command, list(args), catch_exceptions=False)


def test_replay_equals_embedded_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    res = collect("--pcap", str(SAMPLE), "--topology", str(PARK), "--vantage", "park-gw",
                  "--out", str(out))  # fmt: skip
    assert res.exit_code == 0, res.output
    got = sorted(out.read_bytes().splitlines())
    assert got == embedded_lines(SAMPLE) and len(got) > 100
    assert "842 packets, 35 flows" in res.output


def test_realtime_replay_keeps_the_pace_and_the_result(tmp_path: Path) -> None:
    out = tmp_path / "rt.jsonl"
    t0 = time.monotonic()
    res = collect("--pcap", str(SAMPLE), "--topology", str(PARK), "--vantage", "park-gw",
                  "--realtime", "--speed", "60", "--out", str(out))  # fmt: skip
    took = time.monotonic() - t0
    assert res.exit_code == 0, res.output
    assert 120.6 / 60 <= took < 120.6 / 60 + 3  # the capture spans 120.6 s
    assert sorted(out.read_bytes().splitlines()) == embedded_lines(SAMPLE)


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"this is not a capture file")
    for args in (
        [],
        ["--pcap", str(SAMPLE), "--iface", "lo"],
        ["--pcap", str(bad)],
        ["--pcap", str(tmp_path / "missing.pcap")],
        ["--iface", "no-such-iface0", "--duration", "1"],
    ):
        p = subprocess.run([sys.executable, "-c", RUN, "collect", *args], capture_output=True,
                           text=True, timeout=60)  # fmt: skip
        assert p.returncode == 2, (args, p.stderr)
        last = p.stderr.strip().splitlines()[-1]
        assert last.startswith("parkwatch: error:") and "Traceback" not in p.stderr, p.stderr


@pytest.mark.server
def test_replay_into_kafka(kafka_broker: Any, tmp_path: Path) -> None:  # noqa: F811
    flows_t, events_t = unique("flows"), unique("events")
    kafka_broker.create_topics([flows_t, events_t])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run(
        [sys.executable, "-c", RUN, "collect", "--pcap", str(SAMPLE), "--topology",
         str(PARK), "--vantage", "park-gw", "--to", kafka_broker.url,
         "--spool", str(tmp_path / "spool")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "543 records out (0 spooled" in p.stderr
    t = KafkaTransport([kafka_broker.bootstrap], fast_settings())
    c = t.subscribe(["parkwatch.flows", "parkwatch.events"], unique("g"))
    got: dict[str, Record] = {}
    deadline = time.monotonic() + 30
    while len(got) < 543 and time.monotonic() < deadline:
        for m in c.poll(0.2, 1000):
            rec = decode_message(m)
            got[record_id(rec)] = rec
    c.close()
    expected = sorted(embedded_lines(SAMPLE))
    mine = sorted(r.to_json() for r in got.values() if getattr(r, "vantage", None) == "park-gw")
    assert mine == expected


def truncated(src: Path, dst: Path, packets: int) -> None:
    """The first ``packets`` records of a classic pcap."""
    data = src.read_bytes()
    o = 24
    for _ in range(packets):
        o += 16 + struct.unpack_from("<I", data, o + 8)[0]
    dst.write_bytes(data[:o])


def test_sigterm_flushes_open_flows(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN, "collect", "--pcap", str(SAMPLE), "--topology", str(PARK),
         "--vantage", "park-gw", "--realtime", "--speed", "4", "--out", str(out)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(6)  # 24 s of the 120 s capture
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    packets = int(err.split("parkwatch collect: ")[1].split(" packets")[0].replace(",", ""))
    assert 0 < packets < 842
    lines = out.read_bytes().splitlines()
    flows = [orjson.loads(x) for x in lines if b'"parkwatch.flow/' in x]
    assert any(f["end_reason"] == "end_of_capture" for f in flows)  # open ones were flushed
    part = tmp_path / "part.pcap"
    truncated(SAMPLE, part, packets)
    assert sorted(lines) == embedded_lines(part)  # exactly the flows of what was read


def test_parse_drop_counters() -> None:
    dumpcap = (
        "Capturing on 'veth0'\nFile: -\nPackets captured: 120\nPackets received/dropped on "
        "interface 'veth0': 120/7 (pcap:5/dumpcap:2/flushed:0/ps_ifdrop:1) (94.5%)\n"
    )
    d = parse_drops("dumpcap", dumpcap)
    assert d is not None and (d.received, d.kernel, d.app, d.ifdrop) == (120, 5, 2, 1)
    tcpdump = "120 packets captured\n130 packets received by filter\n9 packets dropped by kernel\n"
    t = parse_drops("tcpdump", tcpdump)
    assert t is not None and (t.received, t.kernel, t.app) == (130, 9, 0)
    assert parse_drops("dumpcap", "dumpcap: There are no interfaces") is None


# -- live capture on a veth pair between two namespaces made here ---------------------------
A_IP, B_IP = "169.254.77.1", "169.254.77.2"


@pytest.fixture
def veth() -> Iterator[tuple[str, str, str]]:
    if os.geteuid() != 0:
        pytest.skip("live capture test needs root (ip netns, veth, packet capture)")
    if not shutil.which("ip") or not (shutil.which("dumpcap") or shutil.which("tcpdump")):
        pytest.skip("needs iproute2 and dumpcap (Debian tshark) or tcpdump")
    tag = uuid.uuid4().hex[:6]
    ns_a, ns_b, va, vb = f"pwa{tag}", f"pwb{tag}", f"pwva{tag}", f"pwvb{tag}"
    cmds = [
        f"ip netns add {ns_a}", f"ip netns add {ns_b}",
        f"ip link add {va} type veth peer name {vb}",
        f"ip link set {va} netns {ns_a}", f"ip link set {vb} netns {ns_b}",
        f"ip -n {ns_a} addr add {A_IP}/24 dev {va}", f"ip -n {ns_b} addr add {B_IP}/24 dev {vb}",
        f"ip -n {ns_a} link set {va} up", f"ip -n {ns_b} link set {vb} up",
    ]  # fmt: skip
    try:
        for c in cmds:
            r = subprocess.run(c.split(), capture_output=True, text=True)
            if r.returncode:
                pytest.skip(f"cannot make network namespaces here ({c}: {r.stderr.strip()})")
        yield ns_a, ns_b, va
    finally:
        for ns in (ns_a, ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


SENDER = """
import socket, time
for i in range(5):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("{b}", 40000)); s.sendto(b"hello %d" % i, ("{a}", 5000)); s.close()
    time.sleep(0.05)
t = socket.socket()
t.settimeout(2)
try:
    t.connect(("{a}", 5001))
except OSError:
    pass
"""


def live(ns: str, iface: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", RUN, "collect", "--iface", iface,
         "--vantage", "lab", "--out", str(out), *extra],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "capturing on …" once the capture tool runs
    assert "capturing on" in line, line + proc.stderr.read()
    return proc


@pytest.mark.root
@pytest.mark.slow
def test_live_capture_on_veth_flushes_on_sigterm(
    veth: tuple[str, str, str], tmp_path: Path
) -> None:
    ns_a, ns_b, va = veth
    out = tmp_path / "live.jsonl"
    proc = live(ns_a, va, out)
    send = SENDER.format(a=A_IP, b=B_IP)
    subprocess.run(["ip", "netns", "exec", ns_b, sys.executable, "-c", send], check=True)
    time.sleep(0.8)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    flows = [FlowRecord.from_json(x) for x in out.read_bytes().splitlines()
             if b'"parkwatch.flow/' in x]  # fmt: skip
    udp = [f for f in flows if f.proto == 17 and f.dst_port == 5000]
    assert len(udp) == 1 and (udp[0].src_ip, udp[0].dst_ip) == (B_IP, A_IP)
    assert udp[0].orig_pkts == 5 and udp[0].vantage == "lab"
    tcp = [f for f in flows if f.proto == 6 and f.dst_port == 5001]
    assert len(tcp) == 1 and tcp[0].conn_state == "REJ"
    assert "kernel drops 0" in err and "capture drops 0" in err  # counters in the summary
    received = int(err.split("received ")[1].split(",")[0])
    assert received >= 7  # 5 datagrams, SYN, RST (and maybe ARP)


@pytest.mark.root
@pytest.mark.slow
def test_live_capture_bpf_and_duration(veth: tuple[str, str, str], tmp_path: Path) -> None:
    ns_a, ns_b, va = veth
    out = tmp_path / "bpf.jsonl"
    proc = live(ns_a, va, out, "--bpf", "udp port 5000", "--duration", "2")
    send = SENDER.format(a=A_IP, b=B_IP)
    subprocess.run(["ip", "netns", "exec", ns_b, sys.executable, "-c", send], check=True)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    recs = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert {(r["proto"], r["dst_port"]) for r in recs if "proto" in r} == {(17, 5000)}
    assert not [r for r in recs if r["schema"].startswith("parkwatch.arp")]  # filtered out
