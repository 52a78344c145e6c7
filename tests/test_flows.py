"""Flow-table semantics on crafted conversations: states, history, direction, timeouts, order."""

from __future__ import annotations

import communityid
import numpy as np
import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from collectors import flowgroup
from tests.helpers import Session, icmp, run_packets, udp


def test_http_session_is_sf_with_zeek_history(tmp_path):
    s = Session().http()
    f = run_packets(s.pkts, tmp_path).one()
    assert (f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.proto) == (
        "10.1.1.20",
        40000,
        "10.1.2.10",
        80,
        6,
    )
    assert f.conn_state == "SF"
    assert f.history == "ShADadFf"
    assert (f.orig_pkts, f.resp_pkts) == (5, 5)
    ip_len = [len(p["IP"]) for p in s.pkts]
    assert f.orig_bytes == sum(ip_len[i] for i in (0, 2, 3, 6, 9))
    assert f.resp_bytes == sum(ip_len[i] for i in (1, 4, 5, 7, 8))
    assert f.orig_payload_bytes == len(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert f.resp_payload_bytes == len(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert f.orig_l2_bytes == sum(len(s.pkts[i]) for i in (0, 2, 3, 6, 9))
    assert f.orig_flags == "FSPA" and f.resp_flags == "FSPA"
    assert f.end_reason == "fin"
    assert f.src_mac == "02:00:00:00:00:01" and f.dst_mac == "02:00:00:00:00:02"
    assert f.app_proto == "http"
    assert f.start == round(s.pkts[0].time * 1e6) * 1000
    assert f.end == round(s.pkts[-1].time * 1e6) * 1000


def test_syn_scan_gives_s0_rej_and_rsto(tmp_path):
    pkts = []
    for port, answer in ((21, "RA"), (22, "SA"), (23, None), (25, "RA")):
        s = Session(
            client="10.9.9.9", server="10.1.2.10", cport=55555, sport=port, t0=1_700_000_000 + port
        )
        s.c2s("S")
        if answer == "RA":
            s.s2c("RA")
        elif answer == "SA":
            s.s2c("SA").c2s("R")
        pkts += s.pkts
    res = run_packets(pkts, tmp_path)
    states = {f.dst_port: (f.conn_state, f.history) for f in res.flows}
    assert states == {21: ("REJ", "Sr"), 22: ("RSTO", "ShR"), 23: ("S0", "S"), 25: ("REJ", "Sr")}
    assert all(f.src_ip == "10.9.9.9" for f in res.flows)


@pytest.mark.parametrize(("closer", "state"), [("client", "RSTO"), ("server", "RSTR")])
def test_reset_session(tmp_path, closer, state):
    s = Session().handshake().c2s("PA", b"hello").s2c("A")
    (s.c2s("RA") if closer == "client" else s.s2c("RA"))
    f = run_packets(s.pkts, tmp_path).one()
    assert f.conn_state == state
    assert f.end_reason == "rst"


def test_syn_then_fin_is_sh_and_synack_only_is_flipped(tmp_path):
    s = Session(cport=40001).c2s("S").c2s("F")
    t = Session(cport=40002, t0=1_700_000_100).s2c("SA")
    res = run_packets(s.pkts + t.pkts, tmp_path)
    by_port = {f.src_port: f for f in res.flows}
    assert by_port[40001].conn_state == "SH"
    flipped = by_port[40002]  # only the SYN-ACK was seen: the client is still the originator
    assert (flipped.src_ip, flipped.dst_port) == ("10.1.1.20", 80)
    assert flipped.history == "^h"


def test_midstream_reply_first_is_flipped_to_client(tmp_path):
    s = Session(cport=40003).s2c("PA", b"data").c2s("A")
    f = run_packets(s.pkts, tmp_path).one()
    assert (f.src_ip, f.src_port, f.dst_port) == ("10.1.1.20", 40003, 80)
    assert f.history == "^dA"
    assert f.conn_state == "OTH"


def test_udp_dns_pair_and_unanswered_query(tmp_path):
    t = 1_700_000_000.0
    pkts = [
        udp("10.1.1.20", "10.0.0.53", 33333, 53, t),
        udp("10.0.0.53", "10.1.1.20", 53, 33333, t + 0.01, b"yy"),
        udp("10.1.1.21", "10.0.0.53", 33334, 53, t + 1),
    ]
    res = run_packets(pkts, tmp_path)
    by_port = {f.src_port: f for f in res.flows}
    assert (by_port[33333].conn_state, by_port[33333].history) == ("SF", "Dd")
    assert (by_port[33334].conn_state, by_port[33334].history) == ("S0", "D")
    assert by_port[33333].app_proto == "dns"
    assert by_port[33333].end_reason == "end_of_capture"


def test_icmp_echo_is_one_flow_with_type_and_code(tmp_path):
    t = 1_700_000_000.0
    res = run_packets(
        [icmp("10.1.1.20", "8.8.8.8", 8, t), icmp("8.8.8.8", "10.1.1.20", 0, t + 0.02)], tmp_path
    )
    f = res.one()
    assert (f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.proto) == (
        "10.1.1.20",
        8,
        "8.8.8.8",
        0,
        1,
    )
    assert (f.orig_pkts, f.resp_pkts, f.conn_state) == (1, 1, "SF")
    ref = communityid.CommunityID().calc(
        communityid.FlowTuple.make_icmp("10.1.1.20", "8.8.8.8", 8, 0)
    )
    assert f.community_id == ref
    assert f.dst_enterprise is None and f.dst_zone == "external"
    assert f.src_enterprise == "default" and f.src_zone == "internal"


def test_icmp_reply_seen_first_still_names_requester_as_originator(tmp_path):
    t = 1_700_000_000.0
    res = run_packets(
        [icmp("8.8.8.8", "10.1.1.20", 0, t), icmp("10.1.1.20", "8.8.8.8", 8, t + 1)], tmp_path
    )
    assert res.one().src_ip == "10.1.1.20"


def test_idle_timeout_splits_and_emits_in_end_order(tmp_path):
    t = 1_700_000_000.0
    pkts = [
        udp("10.1.1.20", "10.1.2.10", 1111, 2222, t),
        udp("10.1.1.20", "10.1.2.10", 1111, 2222, t + 10),
        udp("10.1.1.30", "10.1.2.10", 3333, 2222, t + 20),
        udp("10.1.1.20", "10.1.2.10", 1111, 2222, t + 200),
    ]
    res = run_packets(pkts, tmp_path, udp_idle=60)
    got = [(f.src_port, f.orig_pkts, f.end_reason) for f in res.flows]
    assert got == [
        (1111, 2, "idle_timeout"),
        (3333, 1, "idle_timeout"),
        (1111, 1, "end_of_capture"),
    ]
    ends = [f.end for f in res.flows]
    assert ends == sorted(ends)


def test_port_reuse_after_close_starts_a_new_flow(tmp_path):
    s = Session().http().pause(1.0).http()
    res = run_packets(s.pkts, tmp_path)
    assert [(f.conn_state, f.orig_pkts, f.end_reason) for f in res.flows] == [
        ("SF", 5, "fin"),
        ("SF", 5, "fin"),
    ]
    assert res.flows[0].uid != res.flows[1].uid


def test_active_timeout_cuts_long_flows(tmp_path):
    t = 1_700_000_000.0
    pkts = [udp("10.1.1.20", "10.1.2.10", 1111, 502, t + i) for i in range(25)]
    res = run_packets(pkts, tmp_path, active_timeout=10)
    assert [f.orig_pkts for f in res.flows] == [11, 11, 3]
    assert [f.end_reason for f in res.flows] == [
        "active_timeout",
        "active_timeout",
        "end_of_capture",
    ]


def test_eviction_bounds_the_table_and_loses_no_packet(tmp_path):
    t = 1_700_000_000.0
    pkts = [udp("10.1.1.20", "10.1.2.10", 1000 + i % 100, 53, t + i * 0.001) for i in range(400)]
    res = run_packets(pkts, tmp_path, max_flows=16, batch_bytes=1 << 16)
    assert res.stats.evicted > 0
    assert sum(f.orig_pkts + f.resp_pkts for f in res.flows) == 400
    assert any(f.end_reason == "evicted" for f in res.flows)


def test_batch_size_does_not_change_results(tmp_path):
    pkts = []
    for i in range(40):
        pkts += Session(cport=41000 + i % 7, t0=1_700_000_000 + i * 3.0).http().pkts
        pkts.append(udp("10.1.1.20", "10.0.0.53", 30000 + i % 5, 53, 1_700_000_000 + i * 3.0))
    big = run_packets(pkts, tmp_path, "big.pcap", udp_idle=5)
    small = run_packets(pkts, tmp_path, "small.pcap", udp_idle=5, batch_bytes=1 << 16)
    assert len(big.flows) > 40
    assert [f.to_dict() for f in big.flows] == [f.to_dict() for f in small.flows]


def test_community_id_matches_reference_for_tcp_and_udp(tmp_path):
    pkts = Session(client="192.168.1.5", server="10.0.0.1", cport=50000, sport=443).http().pkts
    pkts.append(udp("10.0.0.9", "10.0.0.1", 5353, 53, 1_700_000_100))
    v6 = Ether() / IPv6(src="2001:db8::2", dst="2001:db8::1") / UDP(sport=53, dport=5353)
    v6.time = 1_700_000_101
    pkts.append(v6)
    res = run_packets(pkts, tmp_path)
    assert len(res.flows) == 3
    cid = communityid.CommunityID()
    for f in res.flows:
        make = communityid.FlowTuple.make_tcp if f.proto == 6 else communityid.FlowTuple.make_udp
        assert f.community_id == cid.calc(make(f.src_ip, f.dst_ip, f.src_port, f.dst_port))
    v6flow = next(f for f in res.flows if ":" in f.src_ip)
    assert (v6flow.src_ip, v6flow.src_port) == ("2001:db8::1", 5353)  # flipped: 53 is a server


def test_key_hash_collisions_change_nothing(tmp_path, monkeypatch):
    """With every key hashing to 0, exact-key grouping and indexing must give the same flows."""
    pkts = []
    for i in range(30):
        pkts += Session(cport=42000 + i % 9, t0=1_700_000_000 + i * 2.0).http().pkts
        pkts.append(udp("10.1.1.20", "10.0.0.53", 31000 + i % 4, 53, 1_700_000_000 + i * 2.0))
    normal = run_packets(pkts, tmp_path, "a.pcap", udp_idle=3, batch_bytes=1 << 16)
    monkeypatch.setattr(flowgroup, "_M1", np.uint64(0))
    monkeypatch.setattr(flowgroup, "_M2", np.uint64(0))
    colliding = run_packets(pkts, tmp_path, "b.pcap", udp_idle=3, batch_bytes=1 << 16)
    assert len(normal.flows) > 30
    assert [f.to_dict() for f in colliding.flows] == [f.to_dict() for f in normal.flows]


def test_active_timeout_per_protocol(tmp_path):
    t = 1_700_000_000.0
    pkts = [udp("10.1.1.20", "10.1.2.10", 1111, 502, t + i) for i in range(25)]
    pkts += [
        icmp("10.1.1.20", "10.1.2.10", 8, t + i)
        if i % 2 == 0
        else icmp("10.1.2.10", "10.1.1.20", 0, t + i)
        for i in range(25)
    ]
    res = run_packets(pkts, tmp_path, active_timeout=100, udp_active=10)
    by_proto = {}
    for f in res.flows:
        by_proto.setdefault(f.proto, []).append(f.orig_pkts + f.resp_pkts)
    assert by_proto == {17: [11, 11, 3], 1: [25]}
