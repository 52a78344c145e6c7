"""Community ID v1 against the reference implementation (the ``communityid`` package)."""

from __future__ import annotations

import ipaddress

import communityid
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
