"""DNS decoder: crafted messages (scapy builds them), then golden comparison with tshark 4.0.

Golden: per frame (time, src, dst) the question name, QTYPE, answer count and, for
responses, RCODE equal tshark's ``dns.qry.name`` / ``dns.qry.type`` / ``dns.count.answers`` /
``dns.flags.rcode``. Documented difference: ParkWatch lower-cases names (DNS names are
case-insensitive; tshark shows them as sent, e.g. 'AS4134.asn.cymru.com'), so tshark's names
are lower-cased before comparing.
"""

from __future__ import annotations

import contextlib
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR

from collectors.apps.base import DecodeError
from collectors.apps.dns import Dns, decode_message, read_name
from tests import helpers

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "pcaps"
TSHARK = shutil.which("tshark")


def q(name: str = "www.example.com", qtype: str | int = "A", qid: int = 7) -> bytes:
    return bytes(DNS(id=qid, rd=1, qd=DNSQR(qname=name, qtype=qtype)))


def r(name: str = "www.example.com", rcode: int = 0, qid: int = 7, **kw: Any) -> bytes:
    return bytes(DNS(id=qid, qr=1, rd=1, ra=1, rcode=rcode, qd=DNSQR(qname=name), **kw))


def test_query_and_answers():
    m = Dns().datagram(q("WWW.Example.COM."), True)[0]
    assert (m.direction, m.function_code, m.function_name, m.match) == ("request", 0, "query", 7)
    assert m.attrs["name"] == "www.example.com" and m.attrs["qtype_name"] == "A"
    assert m.exception_code is None
    an = [
        DNSRR(rrname="www.example.com", type="CNAME", rdata="edge.example.net"),
        DNSRR(rrname="edge.example.net", type="A", rdata="192.0.2.9"),
        DNSRR(rrname="edge.example.net", type="AAAA", rdata="2001:db8::1"),
        DNSRR(rrname="t.example", type="TXT", rdata=[b"v=spf1 ", b"-all"]),
    ]
    m = Dns().datagram(r(an=an), False)[0]
    assert m.direction == "response" and m.attrs["answers"] == 4
    data = [(a["type"], a["data"]) for a in m.attrs["answer_data"]]
    assert data == [
        ("CNAME", "edge.example.net"),
        ("A", "192.0.2.9"),
        ("AAAA", "2001:db8::1"),
        ("TXT", "v=spf1 -all"),
    ]


def test_rcode_exception_and_axfr_and_unknown_opcode():
    m = Dns().datagram(r("nope.example", rcode=3), False)[0]
    assert m.exception_code == 3 and m.attrs["rcode_name"] == "NXDOMAIN"
    m = Dns().datagram(q("contoso.local", 252), True)[0]
    assert m.attrs["qtype"] == 252 and m.attrs["qtype_name"] == "AXFR"
    raw = bytearray(q())
    raw[2] = (raw[2] & 0x87) | (9 << 3)  # opcode 9: not assigned
    m = Dns().datagram(bytes(raw), True)[0]
    assert (m.function_code, m.function_name) == (9, "unknown-9")


def test_compression_pointer_loops_and_forward_pointers_are_refused():
    base = bytearray(q("a.example"))
    # question name replaced by a pointer to itself (offset 12): a loop
    looped = bytes(base[:12]) + b"\xc0\x0c" + bytes(base[-4:])
    with pytest.raises(DecodeError) as e:
        decode_message(looped)
    assert e.value.reason == "bad_name_pointer"
    # a label followed by a pointer back into that very label: also a loop
    msg = bytes(12) + b"\x01a\xc0\x0d"
    with pytest.raises(DecodeError):
        read_name(msg, 12)
    # a valid backwards pointer is followed
    msg = bytes(12) + b"\x07example\x00" + b"\x03www\xc0\x0c"
    assert read_name(msg, 21) == ("www.example", 27)
    assert read_name(b"\0" * 12 + b"\x00", 12) == (".", 13)


def test_truncated_and_malformed():
    with pytest.raises(DecodeError):
        decode_message(b"\x00\x01\x01")
    good = r(an=DNSRR(rrname="www.example.com", rdata="192.0.2.1"))
    m = decode_message(good[:-3])  # answer cut: the event stays, flagged
    assert m.attrs["malformed"] == "truncated_rr" and m.attrs["name"] == "www.example.com"


def test_tcp_several_messages_and_split():
    a, b = q(qid=1), r(qid=1, an=DNSRR(rrname="www.example.com", rdata="192.0.2.1"))
    framed = len(a).to_bytes(2, "big") + a + len(b).to_bytes(2, "big") + b
    dec = Dns()
    used, msgs = dec.parse(framed, True)
    assert used == len(framed) and [m.direction for m in msgs] == ["request", "response"]
    used, msgs = dec.parse(framed[:10], True)
    assert (used, msgs) == (0, [])
    used, msgs = dec.parse(framed[: len(a) + 5], True)
    assert used == len(a) + 2 and len(msgs) == 1
    with pytest.raises(DecodeError):
        dec.parse(b"\x00\x03abc", True)


def test_probe():
    assert Dns.probe(q(), True) and Dns.probe(r(), True)
    assert Dns.probe(len(q()).to_bytes(2, "big") + q(), True)
    assert not Dns.probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True)
    assert not Dns.probe(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(40), True)
    rng = random.Random(53)
    hits = sum(Dns.probe(rng.randbytes(rng.randint(12, 80)), True) for _ in range(3000))
    assert hits == 0


def test_fuzz_only_decode_errors():
    rng = random.Random(5353)
    seeds = [q(), r(an=DNSRR(rrname="www.example.com", rdata="192.0.2.1")), q("x.y", 16)]
    for _ in range(3000):
        b = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        b = b[: rng.randint(0, len(b))]
        with contextlib.suppress(DecodeError):
            Dns().datagram(bytes(b), True)


# -- golden ----------------------------------------------------------------------------------


def tshark_rows(path: Path, display: str, *fields: str) -> list[tuple]:
    return helpers.tshark_rows(path, display, *fields, every=False)


CAPTURES = [
    ROOT / "replay_pcaps" / "it_dns_tunnel.pcap",
    SHARED / "chrissanders_packets" / "dns_axfr.pcapng",
    SHARED / "chrissanders_packets" / "arppoison.pcapng",
    SHARED / "stratosphere_slips" / "test-cc" / "test-cc-capture-2.pcap",
]


@pytest.mark.tshark
@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_golden_tshark(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} absent")
    from collectors.apps.engine import decode_capture

    events = decode_capture(path, protocols={"dns"}).events
    assert events
    fields = ("dns.flags.response", "dns.qry.name", "dns.qry.type", "dns.count.answers")
    want = [
        (t, s, d, resp == "1", name.lower(), int(qt), int(an), int(rc) if resp == "1" else 0)
        for t, s, d, resp, name, qt, an, rc in tshark_rows(path, "dns", *fields, "dns.flags.rcode")
    ]
    got = [
        (round(e.ts / 1e9, 6), e.src_ip, e.dst_ip, e.direction == "response", e.attrs["name"],
         e.attrs["qtype"], e.attrs["answers"], e.exception_code or 0)
        for e in events
    ]  # fmt: skip
    assert got == want
    if path.name == "dns_axfr.pcapng":
        assert [e.attrs["qtype_name"] for e in events] == ["AXFR", "AXFR"]
        assert events[1].request_uid == events[0].uid
