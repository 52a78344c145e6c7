"""Community ID v1 against the reference implementation (the ``communityid`` package)."""

from __future__ import annotations

import ipaddress

import communityid
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from collectors.communityid import community_id

REF = communityid.CommunityID()
v4 = st.integers(0, 2**32 - 1).map(lambda x: ipaddress.IPv4Address(x))
v6 = st.integers(0, 2**128 - 1).map(lambda x: ipaddress.IPv6Address(x))
port = st.integers(0, 65535)


@given(st.one_of(st.tuples(v4, v4), st.tuples(v6, v6)), st.sampled_from([6, 17, 132]), port, port)
def test_ported_protocols(addrs, proto, sport, dport):
    src, dst = addrs
    make = {
        6: communityid.FlowTuple.make_tcp,
        17: communityid.FlowTuple.make_udp,
        132: communityid.FlowTuple.make_sctp,
    }[proto]
    ref = REF.calc(make(str(src), str(dst), sport, dport))
    assert community_id(src.packed, dst.packed, proto, sport, dport) == ref


@given(st.tuples(v4, v4), st.integers(0, 255), st.integers(0, 255))
def test_icmp_types_and_codes(addrs, typ, code):
    src, dst = addrs
    ref = REF.calc(communityid.FlowTuple.make_icmp(str(src), str(dst), typ, code))
    assert community_id(src.packed, dst.packed, 1, typ, code) == ref


@given(st.tuples(v6, v6), st.integers(0, 255), st.integers(0, 255))
def test_icmpv6_types_and_codes(addrs, typ, code):
    src, dst = addrs
    ref = REF.calc(communityid.FlowTuple.make_icmp6(str(src), str(dst), typ, code))
    assert community_id(src.packed, dst.packed, 58, typ, code) == ref


def test_spec_example():
    src, dst = ipaddress.ip_address("128.232.110.120"), ipaddress.ip_address("66.35.250.204")
    assert community_id(src.packed, dst.packed, 6, 34855, 80) == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="


def test_packet_batch_form_matches_the_reference_both_ways():
    """The app engine's batch form over decoded real packets: both directions of IPv4 and
    IPv6 TCP/UDP flows, equal addresses ordered by port, give the reference package's ID."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    from collectors.communityid import packet_community_ids
    from collectors.decode import decode
    from tests.test_decode import raw_batch

    cases = [
        (IP, "10.0.0.9", "10.0.0.1", TCP, 40000, 502),
        (IP, "192.168.1.1", "192.168.1.1", UDP, 5000, 53),
        (IP, "192.168.1.1", "192.168.1.1", TCP, 53, 5000),
        (IPv6, "2001:db8::ff", "2001:db8::1", TCP, 443, 51000),
        (IPv6, "fe80::1", "2001:db8::1", UDP, 47808, 47808),
    ]
    frames, refs = [], []
    for ip, a, b, l4, pa, pb in cases:
        make = communityid.FlowTuple.make_tcp if l4 is TCP else communityid.FlowTuple.make_udp
        for (s, sp), (t, tp) in (((a, pa), (b, pb)), ((b, pb), (a, pa))):
            frames.append(bytes(Ether() / ip(src=s, dst=t) / l4(sport=sp, dport=tp)))
            refs.append(REF.calc(make(s, t, sp, tp)))
    d = decode(raw_batch(frames))
    assert packet_community_ids(d, np.arange(len(frames))) == refs
    assert refs[0] == refs[1] and refs[0] != refs[2]
