"""The application-layer engine: TCP reassembly, request/response links, weirds, probing.

Crafted Modbus/TCP conversations (scapy) exercise the engine itself; the decoders have their
own tests. Every assertion is about events decoded from real bytes in a capture file.
"""

from __future__ import annotations

import struct
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

from collectors.apps.engine import decode_capture
from collectors.apps.streams import Stream

C, S = "10.1.1.20", "10.1.2.10"


def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def read_req(tid: int, addr: int = 0, qty: int = 2) -> bytes:
    return mbap(tid, 1, struct.pack(">BHH", 3, addr, qty))


def read_resp(tid: int) -> bytes:
    return mbap(tid, 1, bytes([3, 4, 0, 1, 0, 2]))


class Conv:
    def __init__(self, sport: int = 40000, dport: int = 502) -> None:
        self.pkts: list[Packet] = []
        self.cseq, self.sseq = 1000, 5000
        self.sport, self.dport = sport, dport
        self.t = 1_700_000_000.0

    def pkt(self, client: bool, flags: str, data: bytes = b"", seq: int | None = None) -> None:
        src, dst = (C, S) if client else (S, C)
        sp, dp = (self.sport, self.dport) if client else (self.dport, self.sport)
        own = self.cseq if client else self.sseq
        other = self.sseq if client else self.cseq
        p = (
            Ether()
            / IP(src=src, dst=dst)
            / TCP(sport=sp, dport=dp, flags=flags, seq=own if seq is None else seq, ack=other)
        )
        if data:
            p = p / Raw(data)
        self.t += 0.01
        p.time = self.t
        self.pkts.append(p)
        if seq is None:
            adv = len(data) + (1 if "S" in flags or "F" in flags else 0)
            if client:
                self.cseq += adv
            else:
                self.sseq += adv

    def handshake(self) -> None:
        self.pkt(True, "S")
        self.pkt(False, "SA")
        self.pkt(True, "A")

    def write(self, tmp: Path) -> Path:
        path = tmp / "c.pcap"
        wrpcap(str(path), self.pkts)
        return path


def delivered(s: Stream, got: tuple[bool, list]) -> bool:
    """Append what a feed/acked call delivered (as the engine does); return its 'whole' flag."""
    whole, chunks = got
    for data, _meta in chunks:
        s.buf += data
    return whole


def test_stream_trims_retransmissions_and_fills_holes():
    s = Stream()
    s.syn(99)
    assert delivered(s, s.feed(100, b"abc"))
    assert delivered(s, s.feed(100, b"abc"))  # exact retransmission: nothing new
    assert delivered(s, s.feed(102, b"cdef"))  # overlap: only 'def' is new
    assert bytes(s.buf) == b"abcdef" and s.retrans == 1
    assert delivered(s, s.feed(110, b"kl", "late"))  # future segment waits
    assert bytes(s.buf) == b"abcdef"
    whole, chunks = s.feed(106, b"ghij", "fill")  # hole filled: the waiting segment follows
    assert whole and [m for _, m in chunks] == ["fill", "late"]
    delivered(s, (whole, chunks))
    assert bytes(s.buf) == b"abcdefghijkl"
    s.consume(6)
    assert bytes(s.buf) == b"ghijkl"


def test_stream_skips_a_hole_the_peer_acknowledged():
    s = Stream()
    s.feed(0, b"ab")
    assert delivered(s, s.feed(5, b"fg", "after-hole"))
    assert s.acked(2) == (True, [])  # the peer has only what we have: keep waiting
    whole, chunks = s.acked(6)  # the peer has bytes 2..4 that the capture missed
    assert not whole and chunks == [(b"fg", "after-hole")]


def test_stream_gives_up_on_a_hole_that_never_fills():
    s = Stream()
    s.feed(0, b"x")
    for k in range(Stream.MAX_OOO_SEGMENTS):
        assert delivered(s, s.feed(10 + 2 * k, b"y"))
    whole, chunks = s.feed(10 + 2 * Stream.MAX_OOO_SEGMENTS, b"z")  # gap: resynchronised
    assert not whole and chunks[0][0] == b"y"


def test_stream_sequence_wraps():
    s = Stream()
    s.syn(0xFFFFFFFE)
    assert delivered(s, s.feed(0xFFFFFFFF, b"ab"))
    assert delivered(s, s.feed(1, b"cd"))
    assert bytes(s.buf) == b"abcd"


def test_several_pdus_in_one_segment_and_one_pdu_across_two(tmp_path):
    c = Conv()
    c.handshake()
    c.pkt(True, "PA", read_req(1) + read_req(2, addr=10))  # two PDUs, one segment
    c.pkt(False, "PA", read_resp(1) + read_resp(2))
    whole = read_req(3, addr=20)
    c.pkt(True, "PA", whole[:5])  # one PDU split in two segments
    c.pkt(True, "PA", whole[5:])
    c.pkt(False, "PA", read_resp(3))
    res = decode_capture(c.write(tmp_path))
    reqs = [e for e in res.events if e.direction == "request"]
    assert [e.address for e in reqs] == [0, 10, 20]
    assert reqs[2].ts // 1000 == round(float(c.pkts[6].time) * 1e6)  # the completing packet
    resps = [e for e in res.events if e.direction == "response"]
    assert [r.request_uid for r in resps] == [q.uid for q in reqs]
    assert not res.weirds
    assert res.flows[0].app_proto == "modbus"


def test_retransmission_is_not_decoded_twice(tmp_path):
    c = Conv()
    c.handshake()
    req = read_req(7)
    c.pkt(True, "PA", req)
    c.pkt(True, "PA", req, seq=c.cseq - len(req))  # the same bytes again
    c.pkt(False, "PA", read_resp(7))
    res = decode_capture(c.write(tmp_path))
    assert [e.direction for e in res.events] == ["request", "response"]


def test_capture_starting_mid_stream_is_decoded_with_the_right_direction(tmp_path):
    c = Conv()
    c.pkt(False, "PA", read_resp(1)[3:])  # tail of a PDU whose start we never saw
    c.pkt(True, "PA", read_req(2))
    c.pkt(False, "PA", read_resp(2))
    res = decode_capture(c.write(tmp_path))
    dirs = [(e.direction, e.src_ip) for e in res.events]
    assert ("request", C) in dirs and ("response", S) in dirs


def test_garbage_becomes_a_counted_weird_not_an_exception(tmp_path):
    c = Conv()
    c.handshake()
    c.pkt(True, "PA", b"\xff" * 4 + b"\x00\x06\x01\x03\x00\x00\x00\x01")  # protocol id != 0
    c.pkt(True, "PA", read_req(9))
    res = decode_capture(c.write(tmp_path))
    assert res.weirds and all(w.layer == "modbus" for w in res.weirds)
    assert res.weirds[0].frame == 4
    assert any(e.address == 0 and e.direction == "request" for e in res.events)
    w, ev = res.weirds[0], res.events[0]
    assert (w.src_ip, w.src_port, w.dst_ip, w.dst_port, w.protocol) == (C, 40000, S, 502, "modbus")
    assert (w.community_id, w.flow_uid) == (ev.community_id, ev.flow_uid)
    assert w.flow_uid is not None and w.src_enterprise == w.dst_enterprise == "default"


def test_content_gap_found_by_an_ack_names_the_side_that_sent_the_missing_bytes(tmp_path):
    c = Conv()
    c.handshake()
    c.pkt(True, "PA", read_req(1))
    c.pkt(False, "PA", read_resp(1))
    c.pkt(True, "PA", read_req(2))
    c.pkts.pop()  # the capture missed the client's second request
    c.pkt(True, "PA", read_req(3))
    c.pkt(False, "PA", read_resp(3))  # its ACK covers both requests: the hole never fills
    res = decode_capture(c.write(tmp_path))
    gaps = [w for w in res.weirds if w.name == "tcp_content_gap"]
    assert gaps and gaps[0].frame == 7  # stamped with the server's packet
    assert (gaps[0].src_ip, gaps[0].src_port, gaps[0].dst_ip) == (C, 40000, S)


def test_protocol_on_a_non_standard_port_is_recognised_by_content(tmp_path):
    c = Conv(sport=40001, dport=5020)  # Modbus/TCP on an unbound port
    c.handshake()
    c.pkt(True, "PA", read_req(1))
    c.pkt(False, "PA", read_resp(1))
    res = decode_capture(c.write(tmp_path))
    assert [(e.protocol, e.direction, e.src_ip) for e in res.events] == [
        ("modbus", "request", C),
        ("modbus", "response", S),
    ]
    assert res.flows[0].app_proto == "modbus"


def test_client_port_that_happens_to_be_bound_does_not_choose_the_decoder(tmp_path):
    c = Conv(sport=2404, dport=502)  # the client's ephemeral port is IEC 104's
    c.handshake()
    c.pkt(True, "PA", read_req(5))
    c.pkt(False, "PA", read_resp(5))
    res = decode_capture(c.write(tmp_path))
    assert {e.protocol for e in res.events} == {"modbus"} and not res.weirds


def test_flow_records_do_not_depend_on_the_decoders_being_loaded(tmp_path):
    """`flows` and `flows --apps` orient and label flows alike (decoders add facts only)."""
    import subprocess
    import sys

    import orjson
    from scapy.layers.inet import UDP

    first = Ether() / IP(src=S, dst=C) / UDP(sport=4444, dport=50000) / Raw(b"x")
    reply = Ether() / IP(src=C, dst=S) / UDP(sport=50000, dport=4444) / Raw(b"y")
    first.time, reply.time = 1_700_000_000.0, 1_700_000_000.5
    wrpcap(str(tmp_path / "u.pcap"), [first, reply])
    caps = [str(tmp_path / "u.pcap"), "replay_pcaps/sample_park.pcap"]
    root = Path(__file__).resolve().parents[1]
    plain, apps = (
        subprocess.run(
            [sys.executable, "-m", "parkwatch.cli", "flows", *caps, *extra],
            capture_output=True,
            cwd=root,
            check=True,
        ).stdout.splitlines()
        for extra in ([], ["--apps"])
    )
    assert len(plain) == len(apps) > 10
    facts = ("app_proto", "sni", "http_host")
    for a, b in zip(plain, apps, strict=True):
        da, db = orjson.loads(a), orjson.loads(b)
        assert {k: v for k, v in da.items() if k not in facts} == {
            k: v for k, v in db.items() if k not in facts
        }
