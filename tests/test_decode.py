"""Packet decoding on crafted bytes: link types, VLANs, fragments, IPv6 chains, ICMP, ARP, weirds.

Most tests write a small pcap with a chosen LINKTYPE and run the whole pipeline over it, so they
check what reaches the records (flow 5-tuples and byte counts, ARP events, weirds with their
frame numbers). A few build a :class:`RawBatch` by hand and look at the decoded columns.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import communityid
import numpy as np
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import (
    ARP,
    LLC,
    STP,
    CookedLinux,
    CookedLinuxV2,
    Dot1AD,
    Dot1Q,
    Dot3,
    Ether,
)
from scapy.packet import Packet

from collectors.decode import (
    FRAG_FIRST,
    FRAG_LATER,
    KIND_IP,
    KIND_OTHER,
    KIND_WEIRD,
    WEIRD_NAMES,
    decode,
)
from collectors.linktypes import ETH_IPV4, ETH_IPV6
from collectors.pcapio import RawBatch
from collectors.pipeline import FlowPipeline
from parkwatch.config import load_settings
from parkwatch.schema import FlowRecord, Record
from parkwatch.topology import load_topology
from tests.helpers import CLIENT_MAC, SERVER_MAC, Result, Session, run_capture, udp

T0 = 1_700_000_000.0
T0_NS = 1_700_000_000 * 10**9
CLIENT, SERVER = "10.1.1.20", "10.1.2.10"
V6 = {CLIENT: "2001:db8:1::20", SERVER: "2001:db8:2::10"}
BROADCAST = "ff:ff:ff:ff:ff:ff"
ROUTER_MAC = "02:00:00:00:00:fe"


# -- capture writing ------------------------------------------------------------------------
Frame = tuple[float, bytes]


def write_frames(path: Path, frames: list[Frame], linktype: int, snaplen: int = 65535) -> str:
    """Write ``(time, bytes)`` frames as classic pcap (µs); bytes past ``snaplen`` are cut.

    Written by hand rather than with scapy's RawPcapWriter, which silently turns LINKTYPE 0
    (BSD null) into 1 (Ethernet).
    """
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for t, data in frames:
        sec = int(t)
        cap = data[:snaplen]
        out.append(struct.pack("<IIII", sec, round((t - sec) * 1e6), len(cap), len(data)) + cap)
    path.write_bytes(b"".join(out))
    return str(path)


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


ETH_HDR = _mac(SERVER_MAC) + _mac(CLIENT_MAC)
IP4 = IP(src=CLIENT, dst=SERVER)


def _eth(ethertype: int, rest: bytes | Packet) -> bytes:
    return ETH_HDR + struct.pack(">H", ethertype) + bytes(rest)


def _with_version(ip: Packet, version: int) -> bytes:
    b = bytes(ip)
    return bytes([(version << 4) | (b[0] & 0x0F)]) + b[1:]


def _ip(**kw: object) -> Packet:
    return IP(src=CLIENT, dst=SERVER, **kw)


def run_frames(tmp_path: Path, frames: list[Frame], linktype: int = 1, **kw: int) -> Result:
    return run_capture(write_frames(tmp_path / f"lt{linktype}.pcap", frames, linktype, **kw))


def eth_frames(pkts: list[Packet]) -> list[Frame]:
    return [(float(p.time), bytes(p)) for p in pkts]


def stamp(pkts: list[Packet], t0: float = T0, step: float = 0.01) -> list[Packet]:
    for i, p in enumerate(pkts):
        p.time = t0 + i * step
    return pkts


def run_pipeline(path: str) -> tuple[FlowPipeline, list[Record]]:
    """Like ``run_capture`` but also hands back the pipeline (for its flow-table stats)."""
    pipe = FlowPipeline(load_settings(None), load_topology(None), "test")
    out: list[Record] = []
    pipe.run([path], out.append, lambda cols: out.extend(cols.records()))
    return pipe, out


def raw_batch(frames: list[bytes], linktypes: list[int] | int = 1) -> RawBatch:
    """A RawBatch holding ``frames`` back to back (caplen == wirelen), frame numbers from 1."""
    sizes = np.array([len(f) for f in frames], dtype=np.int64)
    off = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    lts = [linktypes] * len(frames) if isinstance(linktypes, int) else linktypes
    return RawBatch(
        b"".join(frames),
        off,
        sizes,
        sizes.copy(),
        np.zeros(len(frames), dtype=np.int64),
        np.array(lts, dtype=np.int64),
        1,
    )


def weird_names(res: Result) -> list[tuple[str, int | None]]:
    return [(w.name, w.frame) for w in res.weird]


def counts_add_up(res: Result) -> bool:
    st = res.stats
    assert st is not None
    return st.packets == st.ip + st.arp + st.other + st.weird


# -- one conversation in every link type ------------------------------------------------------
def conversation(v6: bool) -> list[Packet]:
    """An HTTP session and a DNS query/answer, as Ethernet frames (IPv4 or IPv6)."""
    pkts = Session(client=CLIENT, server=SERVER).http().pkts
    pkts += [
        udp(CLIENT, SERVER, 33333, 53, T0 + 1, b"query"),
        udp(SERVER, CLIENT, 53, 33333, T0 + 1.01, b"answer!"),
    ]
    if not v6:
        return pkts
    out = []
    for p in pkts:
        ip = p[IP]
        q = Ether(src=p.src, dst=p.dst) / IPv6(src=V6[ip.src], dst=V6[ip.dst]) / ip.payload.copy()
        q.time = p.time
        out.append(q)
    return out


def _l3(p: Packet) -> bytes:
    return bytes(p.payload)


def _ethertype(p: Packet) -> int:
    return ETH_IPV6 if IPv6 in p else ETH_IPV4


def enc_ethernet(p: Packet) -> bytes:
    return bytes(p)


def enc_sll(p: Packet) -> bytes:
    hdr = CookedLinux(
        pkttype=4 if p.src == CLIENT_MAC else 0,
        lladdrtype=1,
        lladdrlen=6,
        src=_mac(p.src) + b"\0\0",
        proto=_ethertype(p),
    )
    return bytes(hdr) + _l3(p)


def enc_sll2(p: Packet) -> bytes:
    hdr = CookedLinuxV2(
        proto=_ethertype(p),
        ifindex=2,
        lladdrtype=1,
        pkttype=4 if p.src == CLIENT_MAC else 0,
        lladdrlen=6,
        src=_mac(p.src) + b"\0\0",
    )
    return bytes(hdr) + _l3(p)


def enc_family(fmt: str, family: int) -> Callable[[Packet], bytes]:
    def enc(p: Packet) -> bytes:
        return struct.pack(fmt, family) + _l3(p)

    return enc


def enc_raw(p: Packet) -> bytes:
    return _l3(p)


# (id, linktype, IPv6?, encoder, link header bytes, expected (src_mac, dst_mac))
ETH_MACS = (CLIENT_MAC, SERVER_MAC)
SLL_MACS = (CLIENT_MAC, None)
NO_MACS = (None, None)
LINK_CASES = [
    ("ethernet-v4", 1, False, enc_ethernet, 14, ETH_MACS),
    ("ethernet-v6", 1, True, enc_ethernet, 14, ETH_MACS),
    ("sll-v4", 113, False, enc_sll, 16, SLL_MACS),
    ("sll-v6", 113, True, enc_sll, 16, SLL_MACS),
    ("sll2-v4", 276, False, enc_sll2, 20, SLL_MACS),
    ("sll2-v6", 276, True, enc_sll2, 20, SLL_MACS),
    ("null-le-af2", 0, False, enc_family("<I", 2), 4, NO_MACS),
    ("null-be-af2", 0, False, enc_family(">I", 2), 4, NO_MACS),
    ("null-le-af24", 0, True, enc_family("<I", 24), 4, NO_MACS),
    ("null-be-af24", 0, True, enc_family(">I", 24), 4, NO_MACS),
    ("null-le-af28", 0, True, enc_family("<I", 28), 4, NO_MACS),
    ("null-be-af28", 0, True, enc_family(">I", 28), 4, NO_MACS),
    ("null-le-af30", 0, True, enc_family("<I", 30), 4, NO_MACS),
    ("null-be-af30", 0, True, enc_family(">I", 30), 4, NO_MACS),
    ("loop-af2", 108, False, enc_family(">I", 2), 4, NO_MACS),
    ("loop-af24", 108, True, enc_family(">I", 24), 4, NO_MACS),
    ("raw101-v4", 101, False, enc_raw, 0, NO_MACS),
    ("raw101-v6", 101, True, enc_raw, 0, NO_MACS),
    ("ipv4-228", 228, False, enc_raw, 0, NO_MACS),
    ("ipv6-229", 229, True, enc_raw, 0, NO_MACS),
    ("dlt12-v4", 12, False, enc_raw, 0, NO_MACS),
    ("dlt14-v4", 14, False, enc_raw, 0, NO_MACS),
    ("dlt14-v6", 14, True, enc_raw, 0, NO_MACS),
]


def _tuple(f: FlowRecord) -> tuple[str, int, str, int, int]:
    return (f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.proto)


def _counts(f: FlowRecord) -> tuple[object, ...]:
    return (
        f.orig_pkts,
        f.resp_pkts,
        f.orig_bytes,
        f.resp_bytes,
        f.orig_payload_bytes,
        f.resp_payload_bytes,
        f.conn_state,
        f.history,
        f.community_id,
    )


@pytest.fixture(scope="module")
def ethernet_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, list[FlowRecord]]:
    base = tmp_path_factory.mktemp("ref")
    out = {}
    for v6 in (False, True):
        frames = eth_frames(conversation(v6))
        out[v6] = run_capture(write_frames(base / f"eth{int(v6)}.pcap", frames, 1)).flows
    return out


@pytest.mark.parametrize(
    ("linktype", "v6", "enc", "hdr", "macs"),
    [pytest.param(*c[1:], id=c[0]) for c in LINK_CASES],
)
def test_link_type_gives_same_flows_as_ethernet(
    tmp_path, ethernet_reference, linktype, v6, enc, hdr, macs
):
    frames = [(float(p.time), enc(p)) for p in conversation(v6)]
    res = run_frames(tmp_path, frames, linktype)
    ref = ethernet_reference[v6]
    assert res.weird == [] and len(ref) == 2
    assert [_tuple(f) for f in res.flows] == [_tuple(f) for f in ref]
    assert [_counts(f) for f in res.flows] == [_counts(f) for f in ref]
    for got, want in zip(res.flows, ref, strict=True):
        assert got.orig_l2_bytes == want.orig_l2_bytes + (hdr - 14) * got.orig_pkts
        assert got.resp_l2_bytes == want.resp_l2_bytes + (hdr - 14) * got.resp_pkts
        assert got.orig_l2_bytes == got.orig_bytes + hdr * got.orig_pkts  # no padding here
    assert [(f.src_mac, f.dst_mac) for f in res.flows] == [macs, macs]


@pytest.mark.parametrize("linktype", [113, 276], ids=["sll", "sll2"])
def test_sll_originator_mac_with_client_on_the_higher_address(tmp_path, linktype):
    # 10.1.2.30 > 10.1.2.10: the first packet runs against the flow table's canonical order
    s = Session(client="10.1.2.30", server=SERVER).http()
    enc = enc_sll if linktype == 113 else enc_sll2
    f = run_frames(tmp_path, [(float(p.time), enc(p)) for p in s.pkts], linktype).one()
    assert (f.src_ip, f.src_mac, f.dst_mac) == ("10.1.2.30", CLIENT_MAC, None)


def test_sll_flipped_flow_keeps_the_first_senders_mac_on_the_responder_side(tmp_path):
    # only the answer is seen first: originator = client, but the MAC known is the server's
    pkts = [
        udp(SERVER, CLIENT, 53, 33333, T0, b"answer"),
        udp(CLIENT, SERVER, 33333, 53, T0 + 0.01, b"query"),
    ]
    pkts[0].src, pkts[0].dst = SERVER_MAC, CLIENT_MAC
    f = run_frames(tmp_path, [(float(p.time), enc_sll(p)) for p in pkts], 113).one()
    assert (f.src_ip, f.src_port) == (CLIENT, 33333)
    assert (f.src_mac, f.dst_mac) == (None, SERVER_MAC)


def test_sll_without_a_six_byte_address_has_no_mac(tmp_path):
    p = udp(CLIENT, SERVER, 33333, 53, T0)
    hdr = CookedLinux(pkttype=4, lladdrtype=0x0200, lladdrlen=0, src=b"", proto=ETH_IPV4)
    f = run_frames(tmp_path, [(T0, bytes(hdr) + _l3(p))], 113).one()
    assert (f.src_mac, f.dst_mac) == (None, None)
    assert f.orig_l2_bytes == f.orig_bytes + 16


@pytest.mark.parametrize(
    ("fmt", "family", "ethertype"),
    [
        ("<I", 2, ETH_IPV4),
        (">I", 2, ETH_IPV4),
        ("<I", 24, ETH_IPV6),
        (">I", 24, ETH_IPV6),
        ("<I", 28, ETH_IPV6),
        (">I", 28, ETH_IPV6),
        ("<I", 30, ETH_IPV6),
        (">I", 30, ETH_IPV6),
    ],
)
def test_bsd_null_family_in_either_byte_order(fmt, family, ethertype):
    ip = IP(src=CLIENT, dst=SERVER) if ethertype == ETH_IPV4 else IPv6(src=V6[CLIENT])
    frame = struct.pack(fmt, family) + bytes(ip / UDP(sport=1, dport=2) / b"abc")
    d = decode(raw_batch([frame], 0))
    assert (int(d.kind[0]), int(d.ethertype[0]), int(d.l3[0])) == (KIND_IP, ethertype, 4)
    assert (int(d.proto[0]), int(d.sport[0]), int(d.dport[0]), int(d.payload[0])) == (17, 1, 2, 3)
    assert not d.has_mac[0]


def test_bsd_null_unknown_family_is_other_not_weird():
    frame = struct.pack("<I", 7) + bytes(IP4 / UDP())
    d = decode(raw_batch([frame], 0))
    assert (int(d.kind[0]), int(d.weird[0])) == (KIND_OTHER, 0)


def test_one_batch_may_mix_link_types():
    p = udp(CLIENT, SERVER, 1111, 2222, T0, b"hello")
    frames = [enc_ethernet(p), enc_raw(p), enc_family("<I", 2)(p), enc_sll2(p)]
    d = decode(raw_batch(frames, [1, 101, 0, 276]))
    assert d.kind.tolist() == [KIND_IP] * 4
    starts = np.cumsum([0] + [len(f) for f in frames[:-1]])
    assert (d.l3 - starts).tolist() == [14, 0, 4, 20]
    assert d.sport.tolist() == [1111] * 4 and d.payload.tolist() == [5] * 4
    assert d.has_mac.tolist() == [True, False, False, True]
    assert int(d.src_mac[3]) == int.from_bytes(_mac(CLIENT_MAC), "big")
    assert int(d.dst_mac[3]) == 0


def test_unsupported_link_type_is_weird_for_every_packet(tmp_path):
    frames = eth_frames(stamp([udp(CLIENT, SERVER, 1, 2, T0) for _ in range(3)]))
    res = run_frames(tmp_path, frames, 147)
    assert weird_names(res) == [("unsupported_link_type_147", n) for n in (1, 2, 3)]
    assert {w.layer for w in res.weird} == {"link"}
    assert res.flows == []
    assert (res.stats.packets, res.stats.weird) == (3, 3) and counts_add_up(res)


# -- VLANs -----------------------------------------------------------------------------------
def _udp_pair(link: Callable[[], Packet], sport: int = 1111) -> list[Packet]:
    return stamp(
        [
            link() / IP(src=CLIENT, dst=SERVER) / UDP(sport=sport, dport=2222) / b"ping",
            link() / IP(src=SERVER, dst=CLIENT) / UDP(sport=2222, dport=sport) / b"pong",
        ]
    )


def test_dot1q_tag_sets_vlan_and_not_the_priority_bits(tmp_path):
    pkts = _udp_pair(lambda: Ether(src=CLIENT_MAC, dst=SERVER_MAC) / Dot1Q(prio=5, vlan=10))
    f = run_frames(tmp_path, eth_frames(pkts)).one()
    assert (f.vlan, f.vlan_inner) == (10, None)
    assert (f.orig_pkts, f.resp_pkts) == (1, 1)
    assert f.orig_l2_bytes == f.orig_bytes + 18
    assert f.orig_payload_bytes == 4


def test_qinq_sets_outer_and_inner_vlan(tmp_path):
    pkts = _udp_pair(
        lambda: Ether(src=CLIENT_MAC, dst=SERVER_MAC) / Dot1AD(vlan=100) / Dot1Q(vlan=200)
    )
    assert bytes(pkts[0])[12:14] == b"\x88\xa8"
    f = run_frames(tmp_path, eth_frames(pkts)).one()
    assert (f.vlan, f.vlan_inner) == (100, 200)
    assert f.orig_l2_bytes == f.orig_bytes + 22
    assert (f.src_ip, f.src_port, f.dst_port) == (CLIENT, 1111, 2222)


def test_same_five_tuple_on_different_vlans_are_different_flows(tmp_path):
    def tagged(*vids: int) -> Callable[[], Packet]:
        def link() -> Packet:
            p = Ether(src=CLIENT_MAC, dst=SERVER_MAC)
            for v in vids:
                p = p / Dot1Q(vlan=v)
            return p

        return link

    pkts = []
    for i, vids in enumerate([(), (10,), (20,), (10, 5), (10, 6)]):
        pkts += stamp(_udp_pair(tagged(*vids)), T0 + i)
    res = run_frames(tmp_path, eth_frames(pkts))
    got = sorted((f.vlan or 0, f.vlan_inner or 0, f.orig_pkts, f.resp_pkts) for f in res.flows)
    assert got == [(0, 0, 1, 1), (10, 0, 1, 1), (10, 5, 1, 1), (10, 6, 1, 1), (20, 0, 1, 1)]
    assert {_tuple(f) for f in res.flows} == {(CLIENT, 1111, SERVER, 2222, 17)}


# -- IPv4 fragments ----------------------------------------------------------------------------
def _fragmented(inner: Packet, ip_id: int) -> list[Packet]:
    """``inner`` (UDP/ICMP with 1200 bytes of IP payload) cut in three 400-byte fragments."""
    big = Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IP(src=CLIENT, dst=SERVER, id=ip_id) / inner
    frags = fragment(big, fragsize=400)
    assert len(frags) == 3
    return frags


def _fragments_and_orphan(make: Callable[[], Packet]) -> list[Packet]:
    frags = _fragmented(make(), 77)
    orphan = _fragmented(make(), 99)[1]  # the first fragment of datagram 99 is never sent
    return stamp([*frags, orphan])


def _udp_1200() -> Packet:
    return UDP(sport=5000, dport=6000) / (b"A" * 1192)


def _icmp_1200() -> Packet:
    return ICMP(type=8, id=7, seq=1) / (b"A" * 1192)


def test_udp_fragments_form_one_flow_and_orphan_is_weird(tmp_path):
    pkts = _fragments_and_orphan(_udp_1200)
    res = run_frames(tmp_path, eth_frames(pkts))
    f = res.one()
    assert (f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.proto) == (CLIENT, 5000, SERVER, 6000, 17)
    assert f.orig_pkts == 3
    assert f.orig_bytes == sum(len(p[IP]) for p in pkts[:3]) == 1260
    assert f.orig_payload_bytes == 1192
    assert f.orig_l2_bytes == sum(len(p) for p in pkts[:3])
    assert weird_names(res) == [("fragment_without_first_fragment", 4)]
    assert (res.stats.packets, res.stats.ip, res.stats.weird) == (4, 3, 1)


def test_first_udp_fragment_is_not_weird():
    first = bytes(_fragmented(_udp_1200(), 77)[0])
    d = decode(raw_batch([first]))
    assert WEIRD_NAMES[int(d.weird[0])] == ""
    assert (int(d.kind[0]), int(d.frag[0]), int(d.sport[0]), int(d.dport[0])) == (
        KIND_IP,
        FRAG_FIRST,
        5000,
        6000,
    )


def test_icmp_fragments_form_one_flow_and_orphan_is_weird(tmp_path):
    pkts = _fragments_and_orphan(_icmp_1200)
    res = run_frames(tmp_path, eth_frames(pkts))
    f = res.one()
    assert (f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.proto) == (CLIENT, 8, SERVER, 0, 1)
    assert f.orig_pkts == 3
    assert f.orig_bytes == sum(len(p[IP]) for p in pkts[:3]) == 1260
    assert f.orig_payload_bytes == 1192
    assert f.orig_l2_bytes == sum(len(p) for p in pkts[:3])
    assert weird_names(res) == [("fragment_without_first_fragment", 4)]
    assert res.weird[0].layer == "ip"


def test_fragment_counts_add_up_in_run_and_flow_stats(tmp_path):
    pkts = _fragments_and_orphan(_icmp_1200)
    pipe, _ = run_pipeline(write_frames(tmp_path / "f.pcap", eth_frames(pkts), 1))
    st, ft = pipe.stats, pipe.table.stats
    assert (st.packets, st.ip, st.arp, st.other, st.weird) == (4, 3, 0, 0, 1)
    assert st.packets == st.ip + st.arp + st.other + st.weird
    assert (ft.fragments, ft.orphan_fragments, ft.ip_packets, ft.flows) == (4, 1, 3, 1)
    assert ft.ip_packets == st.ip


def _filler(n: int) -> list[Packet]:
    """n 1400-byte UDP frames of an unrelated flow: 50 of them overflow a 64 KiB batch."""
    return [udp("10.9.9.9", SERVER, 4444, 5555, T0, b"f" * 1358) for _ in range(n)]


def test_fragments_split_across_batches_still_form_one_flow(tmp_path):
    frags = _fragmented(_icmp_1200(), 77)
    pkts = stamp([frags[0], *_filler(60), frags[1], frags[2]])
    path = write_frames(tmp_path / "f.pcap", eth_frames(pkts), 1)
    res = run_capture(path, batch_bytes=1 << 16)
    f = next(f for f in res.flows if f.proto == 1)
    assert (f.orig_pkts, f.orig_bytes, f.orig_payload_bytes) == (3, 1260, 1192)
    assert res.weird == []


def test_later_fragment_columns_carry_id_and_whole_payload():
    frags = [bytes(p) for p in _fragmented(_icmp_1200(), 0x4242)]
    d = decode(raw_batch(frags))
    assert d.frag.tolist() == [FRAG_FIRST, FRAG_LATER, FRAG_LATER]
    assert d.ip_id.tolist() == [0x4242] * 3
    assert d.ip_len.tolist() == [420, 420, 420]
    assert d.payload.tolist() == [392, 400, 400]


def test_unfragmented_packet_has_no_fragment_id():
    d = decode(raw_batch([_eth(ETH_IPV4, _ip(id=5, flags="DF") / UDP() / b"x")]))
    assert (int(d.frag[0]), int(d.ip_id[0])) == (0, 0)


# -- IPv6 -----------------------------------------------------------------------------------------
def _v6(nxt: Packet, src: str = CLIENT, dst: str = SERVER) -> Packet:
    return Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IPv6(src=V6[src], dst=V6[dst]) / nxt


def test_ipv6_extension_header_chain_before_tcp(tmp_path):
    chain = (
        IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrRouting(addresses=["2001:db8::9"])
        / TCP(sport=40000, dport=502, flags="PA")
        / b"hello world"
    )
    p = stamp([_v6(chain)])[0]
    f = run_frames(tmp_path, eth_frames([p])).one()
    assert _tuple(f) == (V6[CLIENT], 40000, V6[SERVER], 502, 6)
    assert (f.orig_bytes, f.orig_payload_bytes) == (len(p[IPv6]), 11)
    assert f.orig_flags == "PA"


def test_ipv6_extension_chain_puts_transport_after_the_last_header():
    p = _v6(IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / UDP(sport=7, dport=9) / b"xyz")
    d = decode(raw_batch([bytes(p)]))
    assert (int(d.proto[0]), int(d.l4[0])) == (17, 14 + 40 + 8 + 8)
    assert (int(d.sport[0]), int(d.dport[0]), int(d.payload[0])) == (7, 9, 3)


def test_ipv6_ah_header_before_tcp(tmp_path):
    ah = AH(nh=6, payloadlen=4, spi=0x100, seq=1, icv=b"\0" * 12)  # (4 + 2) * 4 = 24 bytes
    p = stamp([_v6(ah / TCP(sport=40000, dport=502, flags="PA") / b"hello")])[0]
    f = run_frames(tmp_path, eth_frames([p])).one()
    assert _tuple(f) == (V6[CLIENT], 40000, V6[SERVER], 502, 6)
    assert (f.orig_bytes, f.orig_payload_bytes) == (40 + 24 + 20 + 5, 5)


def _v6_fragments(inner: Packet) -> list[Packet]:
    base = IPv6(src=V6[CLIENT], dst=V6[SERVER]) / IPv6ExtHdrFragment(id=0x1234) / inner
    frags = fragment6(base, 600)
    assert len(frags) == 2
    return stamp([Ether(src=CLIENT_MAC, dst=SERVER_MAC) / f for f in frags])


def test_ipv6_udp_fragments_form_one_flow(tmp_path):
    pkts = _v6_fragments(UDP(sport=5000, dport=6000) / (b"C" * 1000))
    res = run_frames(tmp_path, eth_frames(pkts))
    assert res.weird == []
    f = res.one()
    assert _tuple(f) == (V6[CLIENT], 5000, V6[SERVER], 6000, 17)
    assert f.orig_pkts == 2
    assert f.orig_bytes == sum(len(p[IPv6]) for p in pkts)
    assert f.orig_payload_bytes == 1000


def test_ipv6_icmp_fragments_form_one_flow(tmp_path):
    pkts = _v6_fragments(ICMPv6EchoRequest(id=1, seq=1, data=b"C" * 1000))
    res = run_frames(tmp_path, eth_frames(pkts))
    assert res.weird == []
    f = res.one()
    assert (f.src_ip, f.src_port, f.dst_ip, f.proto) == (V6[CLIENT], 128, V6[SERVER], 58)
    assert f.orig_pkts == 2
    assert f.orig_bytes == sum(len(p[IPv6]) for p in pkts)
    assert f.orig_payload_bytes == 1000


def test_ipv6_fragment_header_columns():
    pkts = _v6_fragments(ICMPv6EchoRequest(id=1, seq=1, data=b"C" * 1000))
    d = decode(raw_batch([bytes(p) for p in pkts]))
    assert d.frag.tolist() == [FRAG_FIRST, FRAG_LATER]
    assert d.ip_id.tolist() == [0x1234, 0x1234]
    assert d.proto.tolist() == [58, 58]
    assert d.ip_len.tolist() == [len(p[IPv6]) for p in pkts]


# -- ICMP ----------------------------------------------------------------------------------------
def test_icmp_echo_request_and_reply_are_one_flow(tmp_path):
    pkts = stamp(
        [
            Ether(src=CLIENT_MAC, dst=SERVER_MAC)
            / IP(src=CLIENT, dst=SERVER)
            / ICMP(type=8, id=3, seq=1)
            / b"ping",
            Ether(src=SERVER_MAC, dst=CLIENT_MAC)
            / IP(src=SERVER, dst=CLIENT)
            / ICMP(type=0, id=3, seq=1)
            / b"ping",
        ]
    )
    f = run_frames(tmp_path, eth_frames(pkts)).one()
    assert _tuple(f) == (CLIENT, 8, SERVER, 0, 1)
    assert (f.orig_pkts, f.resp_pkts, f.orig_payload_bytes, f.resp_payload_bytes) == (1, 1, 4, 4)
    assert (f.orig_bytes, f.resp_bytes) == (32, 32)


def _icmp6_echo() -> list[Packet]:
    return stamp(
        [
            _v6(ICMPv6EchoRequest(id=1, seq=1, data=b"ping")),
            _v6(ICMPv6EchoReply(id=1, seq=1, data=b"ping"), SERVER, CLIENT),
        ]
    )


def test_icmpv6_echo_request_and_reply_are_one_flow(tmp_path):
    f = run_frames(tmp_path, eth_frames(_icmp6_echo())).one()
    assert (f.src_ip, f.src_port, f.dst_ip, f.proto) == (V6[CLIENT], 128, V6[SERVER], 58)
    assert (f.orig_pkts, f.resp_pkts, f.orig_payload_bytes, f.resp_payload_bytes) == (1, 1, 4, 4)
    ref = communityid.CommunityID().calc(
        communityid.FlowTuple.make_icmp6(V6[CLIENT], V6[SERVER], 128, 0)
    )
    assert f.community_id == ref


def test_icmpv6_echo_ports_are_type_and_counterpart_type_as_zeek(tmp_path):
    f = run_frames(tmp_path, eth_frames(_icmp6_echo())).one()
    assert (f.src_port, f.dst_port) == (128, 129)


def test_icmp_unreachable_with_embedded_udp_is_an_icmp_flow(tmp_path):
    probe = IP(src=CLIENT, dst=SERVER) / UDP(sport=33333, dport=9999) / b"probe"
    pkts = stamp(
        [
            Ether(src=CLIENT_MAC, dst=SERVER_MAC) / probe,
            Ether(src=SERVER_MAC, dst=CLIENT_MAC)
            / IP(src=SERVER, dst=CLIENT)
            / ICMP(type=3, code=3)
            / bytes(probe)[:28],
        ]
    )
    res = run_frames(tmp_path, eth_frames(pkts))
    by_proto = {f.proto: f for f in res.flows}
    assert sorted(by_proto) == [1, 17]
    err = by_proto[1]
    assert _tuple(err) == (SERVER, 3, CLIENT, 3, 1)  # type 3 / code 3, not the embedded ports
    assert (err.orig_pkts, err.orig_bytes, err.orig_payload_bytes) == (1, 56, 28)
    assert (by_proto[17].orig_pkts, by_proto[17].resp_pkts) == (1, 0)
    assert res.weird == []


# -- ARP -----------------------------------------------------------------------------------------
GATEWAY = "10.1.1.1"
ZERO_MAC = "00:00:00:00:00:00"


def one_arp(tmp_path: Path, pkt: Packet) -> dict[str, object]:
    res = run_frames(tmp_path, eth_frames(stamp([pkt])))
    assert (res.flows, res.weird) == ([], [])
    assert (res.stats.packets, res.stats.arp) == (1, 1)
    (a,) = res.arp
    return asdict(a)


def arp_event(**fields: object) -> dict[str, object]:
    return {"ts": T0_NS, "vlan": None, "vantage": "test", "frame": 1, **fields}


def test_arp_who_has_request(tmp_path):
    pkt = Ether(src=CLIENT_MAC, dst=BROADCAST) / ARP(
        op=1, hwsrc=CLIENT_MAC, psrc=CLIENT, hwdst=ZERO_MAC, pdst=GATEWAY
    )
    assert one_arp(tmp_path, pkt) == arp_event(
        op="who-has",
        sender_mac=CLIENT_MAC,
        sender_ip=CLIENT,
        target_mac=ZERO_MAC,
        target_ip=GATEWAY,
        src_mac=CLIENT_MAC,
        dst_mac=BROADCAST,
        gratuitous=False,
    )


def test_arp_is_at_reply(tmp_path):
    pkt = Ether(src=ROUTER_MAC, dst=CLIENT_MAC) / ARP(
        op=2, hwsrc=ROUTER_MAC, psrc=GATEWAY, hwdst=CLIENT_MAC, pdst=CLIENT
    )
    assert one_arp(tmp_path, pkt) == arp_event(
        op="is-at",
        sender_mac=ROUTER_MAC,
        sender_ip=GATEWAY,
        target_mac=CLIENT_MAC,
        target_ip=CLIENT,
        src_mac=ROUTER_MAC,
        dst_mac=CLIENT_MAC,
        gratuitous=False,
    )


def test_gratuitous_arp_announcement(tmp_path):
    # the Ethernet source differs from the claimed sender: both are reported as seen
    pkt = Ether(src=ROUTER_MAC, dst=BROADCAST) / ARP(
        op=2, hwsrc=SERVER_MAC, psrc=SERVER, hwdst=BROADCAST, pdst=SERVER
    )
    assert one_arp(tmp_path, pkt) == arp_event(
        op="is-at",
        sender_mac=SERVER_MAC,
        sender_ip=SERVER,
        target_mac=BROADCAST,
        target_ip=SERVER,
        src_mac=ROUTER_MAC,
        dst_mac=BROADCAST,
        gratuitous=True,
    )


def test_arp_frame_numbers_follow_the_capture(tmp_path):
    pkts = [udp(CLIENT, SERVER, 1, 2, T0)] + [
        Ether(src=CLIENT_MAC, dst=BROADCAST) / ARP(hwsrc=CLIENT_MAC, psrc=CLIENT, pdst=ip)
        for ip in (GATEWAY, SERVER)
    ]
    res = run_frames(tmp_path, eth_frames(stamp(pkts)))
    assert [(a.target_ip, a.frame, a.ts) for a in res.arp] == [
        (GATEWAY, 2, T0_NS + 10_000_000),
        (SERVER, 3, T0_NS + 20_000_000),
    ]


def test_vlan_tagged_arp_carries_the_vlan(tmp_path):
    pkt = (
        Ether(src=CLIENT_MAC, dst=BROADCAST)
        / Dot1Q(vlan=30)
        / ARP(op=1, hwsrc=CLIENT_MAC, psrc=CLIENT, hwdst=ZERO_MAC, pdst=GATEWAY)
    )
    a = one_arp(tmp_path, pkt)
    assert (a["op"], a["sender_ip"], a["target_ip"], a["vlan"]) == ("who-has", CLIENT, GATEWAY, 30)


def test_arp_with_unknown_opcode_is_named_by_number(tmp_path):
    pkt = Ether(src=CLIENT_MAC, dst=BROADCAST) / ARP(
        op=8, hwsrc=CLIENT_MAC, psrc=CLIENT, pdst=SERVER
    )
    assert one_arp(tmp_path, pkt)["op"] == "op-8"


def test_arp_over_linux_sll_has_source_mac_only(tmp_path):
    arp = ARP(op=1, hwsrc=CLIENT_MAC, psrc=CLIENT, hwdst=ZERO_MAC, pdst=GATEWAY)
    hdr = CookedLinux(
        pkttype=4, lladdrtype=1, lladdrlen=6, src=_mac(CLIENT_MAC) + b"\0\0", proto=0x0806
    )
    (a,) = run_frames(tmp_path, [(T0, bytes(hdr) + bytes(arp))], 113).arp
    assert (a.sender_ip, a.src_mac, a.dst_mac) == (CLIENT, CLIENT_MAC, None)


# -- non-IP link protocols -----------------------------------------------------------------------
def test_lldp_and_llc_frames_are_other_not_weird(tmp_path):
    lldp_tlvs = bytes.fromhex("0207040200000000010403020001060200780000")
    pkts = stamp(
        [
            Ether(src=CLIENT_MAC, dst="01:80:c2:00:00:0e", type=0x88CC) / lldp_tlvs,
            Dot3(src=CLIENT_MAC, dst="01:80:c2:00:00:00")
            / LLC(dsap=0x42, ssap=0x42, ctrl=3)
            / STP(),
        ]
    )
    res = run_frames(tmp_path, eth_frames(pkts))
    assert (res.flows, res.arp, res.weird) == ([], [], [])
    st = res.stats
    assert (st.packets, st.other, st.ip, st.weird) == (2, 2, 0, 0)


def test_counts_add_up_across_all_kinds(tmp_path):
    pkts = [
        *Session().handshake().pkts,
        Ether(src=CLIENT_MAC, dst=BROADCAST) / ARP(hwsrc=CLIENT_MAC, psrc=CLIENT, pdst=GATEWAY),
        Ether(src=CLIENT_MAC, dst="01:80:c2:00:00:0e", type=0x88CC) / b"\x00\x00",
        Ether(src=CLIENT_MAC, dst=SERVER_MAC) / _ip(ihl=4) / UDP(),
    ]
    res = run_frames(tmp_path, eth_frames(stamp(pkts)))
    st = res.stats
    assert (st.packets, st.ip, st.arp, st.other, st.weird) == (6, 3, 1, 1, 1)
    assert counts_add_up(res)


def test_run_stats_count_weirds_by_name(tmp_path):
    pkts = [
        udp(CLIENT, SERVER, 1, 2, T0),
        Ether(src=CLIENT_MAC, dst=SERVER_MAC) / _ip(ihl=4) / UDP(),
        Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IP4 / UDP(len=4),
        Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IP4 / UDP(len=3),
    ]
    res = run_frames(tmp_path, eth_frames(stamp(pkts)))
    assert res.stats.weird_names == {"bad_ipv4_header_length": 1, "bad_udp_length": 2}


# -- malformed packets ---------------------------------------------------------------------------
MALFORMED = [
    ("truncated_ethernet_header", "link", 1, ETH_HDR[:10]),
    ("truncated_vlan_tag", "link", 1, _eth(0x8100, b"\x00")),
    ("truncated_vlan_tag", "link", 1, _eth(0x88A8, struct.pack(">HH", 100, 0x8100) + b"\x00")),
    ("truncated_ipv4_header", "ip", 1, _eth(ETH_IPV4, bytes(IP4 / UDP())[:12])),
    ("bad_ipv4_header_length", "ip", 1, _eth(ETH_IPV4, _ip(ihl=4) / UDP())),
    ("bad_ipv4_total_length", "ip", 1, _eth(ETH_IPV4, _ip(len=1000) / UDP())),
    ("bad_ipv4_total_length", "ip", 1, _eth(ETH_IPV4, _ip(len=12) / UDP())),
    ("bad_ip_version", "ip", 1, _eth(ETH_IPV4, _with_version(IP4 / UDP(), 6))),
    ("truncated_ipv6_header", "ipv6", 1, _eth(ETH_IPV6, bytes(IPv6())[:30])),
    ("bad_ipv6_payload_length", "ipv6", 1, _eth(ETH_IPV6, IPv6(plen=500) / UDP())),
    (
        "truncated_ipv6_extension_header",
        "ipv6",
        1,
        _eth(ETH_IPV6, bytes(IPv6(nh=0, plen=4)) + b"\x11\x00\x00\x00"),
    ),
    (
        "bad_ipv6_extension_length",
        "ipv6",
        1,
        _eth(ETH_IPV6, bytes(IPv6(nh=60, plen=8)) + b"\x11\x05" + bytes(6)),
    ),
    ("truncated_tcp_header", "tcp", 1, _eth(ETH_IPV4, _ip(proto=6) / bytes(TCP())[:10])),
    ("bad_tcp_data_offset", "tcp", 1, _eth(ETH_IPV4, IP4 / TCP(dataofs=3))),
    ("bad_tcp_data_offset", "tcp", 1, _eth(ETH_IPV4, IP4 / TCP(dataofs=15))),
    ("truncated_udp_header", "udp", 1, _eth(ETH_IPV4, _ip(proto=17) / bytes(5))),
    ("bad_udp_length", "udp", 1, _eth(ETH_IPV4, IP4 / UDP(len=4) / b"data")),
    ("bad_udp_length", "udp", 1, _eth(ETH_IPV4, IP4 / UDP(len=100) / b"data")),
    ("truncated_icmp_header", "icmp", 1, _eth(ETH_IPV4, _ip(proto=1) / b"\x08\x00")),
    ("truncated_arp", "arp", 1, _eth(0x0806, bytes(ARP(hwsrc=CLIENT_MAC, psrc=CLIENT))[:20])),
    ("bad_ip_version", "ip", 101, _with_version(IP4 / UDP(), 5)),
    ("truncated_ip_header", "ip", 101, b""),
    ("truncated_sll_header", "link", 113, bytes(CookedLinux())[:10]),
    ("truncated_null_header", "link", 0, b"\x02\x00\x00"),
    ("truncated_null_header", "link", 108, b"\x00\x00"),
]
ENCODERS = {1: enc_ethernet, 101: enc_raw, 113: enc_sll, 0: enc_family("<I", 2)}
ENCODERS[108] = enc_family(">I", 2)


@pytest.mark.parametrize(
    ("name", "layer", "linktype", "data"),
    MALFORMED,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(MALFORMED)],
)
def test_malformed_packet_is_one_weird_with_its_frame(tmp_path, name, layer, linktype, data):
    query, answer = (
        udp(CLIENT, SERVER, 33333, 53, T0, b"q"),
        udp(SERVER, CLIENT, 53, 33333, T0 + 0.02, b"a"),
    )
    enc = ENCODERS[linktype]
    frames = [(T0, enc(query)), (T0 + 0.01, data), (T0 + 0.02, enc(answer))]
    res = run_frames(tmp_path, frames, linktype)
    assert [(w.name, w.frame, w.layer) for w in res.weird] == [(name, 2, layer)]
    f = res.one()  # the packets around it are untouched
    assert (f.orig_pkts, f.resp_pkts) == (1, 1)
    st = res.stats
    assert (st.packets, st.ip, st.weird) == (3, 2, 1) and counts_add_up(res)


def test_weird_frame_numbers_count_across_batches(tmp_path):
    frames = eth_frames(stamp(_filler(120)))
    assert sum(len(b) for _, b in frames) > 2 * (1 << 16)
    frames[99] = (frames[99][0], _eth(ETH_IPV4, _ip(ihl=4) / UDP()))
    res = run_capture(write_frames(tmp_path / "b.pcap", frames, 1), batch_bytes=1 << 16)
    assert weird_names(res) == [("bad_ipv4_header_length", 100)]
    assert res.one().orig_pkts == 119


def test_malformed_packets_do_not_disturb_the_batch_columns():
    good = _eth(ETH_IPV4, IP4 / UDP(sport=1, dport=2) / b"ok")
    bad = [c[3] for c in MALFORMED if c[2] == 1]
    d = decode(raw_batch([good, *bad, good]))
    assert d.kind.tolist() == [KIND_IP] + [KIND_WEIRD] * len(bad) + [KIND_IP]
    assert [WEIRD_NAMES[c] for c in d.weird.tolist()[1:-1]] == [
        c[0] for c in MALFORMED if c[2] == 1
    ]
    assert (int(d.sport[-1]), int(d.dport[-1]), int(d.payload[-1])) == (1, 2, 2)


# -- lengths: snaplen and padding -----------------------------------------------------------------
def test_snaplen_truncated_packets_count_wire_bytes_and_are_not_weird(tmp_path):
    body = b"x" * 1446  # 14 + 20 + 20 + 1446 = 1500-byte frames
    s = Session().handshake().c2s("PA", body).s2c("PA", body).c2s("A")
    frames = eth_frames(s.pkts)
    assert max(len(b) for _, b in frames) == 1500
    cut = run_capture(write_frames(tmp_path / "cut.pcap", frames, 1, snaplen=60))
    full = run_capture(write_frames(tmp_path / "full.pcap", frames, 1))
    assert cut.weird == []
    f = cut.one()
    client = [p for p in s.pkts if p[IP].src == CLIENT]
    assert f.orig_bytes == sum(len(p[IP]) for p in client)
    assert f.orig_l2_bytes == sum(len(p) for p in client)
    assert (f.orig_payload_bytes, f.resp_payload_bytes) == (1446, 1446)
    assert f.to_dict() == full.one().to_dict()


def test_snaplen_truncated_ipv6_counts_payload_length(tmp_path):
    p = stamp([_v6(UDP(sport=5000, dport=6000) / (b"y" * 1400))])
    f = run_capture(write_frames(tmp_path / "cut6.pcap", eth_frames(p), 1, snaplen=80)).one()
    assert (f.orig_bytes, f.orig_payload_bytes, f.orig_l2_bytes) == (1448, 1400, 1462)


def test_ethernet_padding_is_not_payload(tmp_path):
    p = Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IP4 / TCP(sport=40000, dport=80, flags="S")
    frame = bytes(p) + b"\x00" * 6
    assert (len(frame), len(p[IP])) == (60, 40)
    res = run_frames(tmp_path, [(T0, frame)])
    f = res.one()
    assert (f.orig_payload_bytes, f.orig_bytes, f.orig_l2_bytes) == (0, 40, 60)
    assert res.weird == []


def test_zero_ipv4_total_length_uses_the_wire_length():
    # TSO / offloaded captures carry total length 0: count what is on the wire
    ip = bytearray(bytes(IP4 / UDP(sport=1, dport=2) / b"abcd"))
    ip[2:4] = b"\x00\x00"
    d = decode(raw_batch([_eth(ETH_IPV4, bytes(ip))]))
    assert (int(d.kind[0]), int(d.ip_len[0]), int(d.payload[0])) == (KIND_IP, 32, 4)
