"""DNP3 decoder: crafted frames, and golden comparison with tshark 4.0 on real captures.

Golden: per application fragment, (time of the frame completing it, src ip, dst ip, function
code) must equal tshark's ``dnp3.al.func``; the IIN of every response ``dnp3.al.iin``; and the
object headers (group << 8 | variation) of each frame ``dnp3.al.obj``.

Known differences (documented):

- tshark shows no objects for stop / start / initialize application (fc 16-18) requests; the
  decoder lists their g90 / class headers (dnp3_test_data_part1.pcap frames 163-176). These
  function codes are left out of the object comparison.
- CRCs: tshark does not take a frame with a bad header CRC for DNP3 at all and dissects a frame
  with a bad data-block CRC only to the link layer. The decoder does the same and raises
  ``bad_header_crc`` / ``bad_data_crc`` (a weird), see the crafted tests; none of the shared
  captures has a bad CRC.
- Frames that do not start with 0x0564 (dnp3_test_data_part1.pcap frames 19 and 21): tshark
  shows TCP data, the decoder counts a ``bad_start_octets`` weird.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from collectors.apps.base import DecodeError, Msg
from collectors.apps.dnp3 import Dnp3, crc_dnp
from collectors.apps.engine import CaptureEvents, decode_capture
from replay_pcaps.scenarios.dnp3 import crc_dnp as reference_crc

SHARED = Path(__file__).resolve().parents[2] / "shared" / "pcaps"
REPLAY = Path(__file__).resolve().parents[1] / "replay_pcaps"
MASTER, OUTSTATION = 1, 10


def frame(user: bytes, from_master: bool = True, dst: int | None = None) -> bytes:
    """A link frame (unconfirmed user data) with CRCs (the scenario generator's CRC)."""
    ctrl = 0xC4 if from_master else 0x44
    if dst is None:
        dst = OUTSTATION if from_master else MASTER
    src = MASTER if dst == OUTSTATION else OUTSTATION
    head = b"\x05\x64" + bytes([5 + len(user), ctrl]) + dst.to_bytes(2, "little")
    head += src.to_bytes(2, "little")
    out = head + reference_crc(head)
    for i in range(0, len(user), 16):
        out += user[i : i + 16] + reference_crc(user[i : i + 16])
    return out


def apdu_frames(apdu: bytes, from_master: bool = True, seq0: int = 0) -> list[bytes]:
    """``apdu`` split into link frames of at most 249 application octets each."""
    chunks = [apdu[i : i + 249] for i in range(0, len(apdu), 249)]
    out = []
    for k, chunk in enumerate(chunks):
        th = (seq0 + k) & 0x3F | (0x40 if k == 0 else 0) | (0x80 if k == len(chunks) - 1 else 0)
        out.append(frame(bytes([th]) + chunk, from_master))
    return out


def request(fc: int, objects: bytes = b"", seq: int = 3) -> bytes:
    return apdu_frames(bytes([0xC0 | seq, fc]) + objects)[0]


def response(iin: int, objects: bytes = b"", seq: int = 3, fc: int = 129) -> bytes:
    return apdu_frames(bytes([0xC0 | seq, fc, iin >> 8, iin & 0xFF]) + objects, False)[0]


def one(data: bytes, from_client: bool = True) -> Msg:
    used, msgs = Dnp3().parse(data, from_client)
    assert used == len(data) and len(msgs) == 1, msgs
    assert set(msgs[0].attrs) <= Dnp3.ATTRS.keys()
    return msgs[0]


CLASS0123 = bytes([60, 1, 0x06, 60, 2, 0x06, 60, 3, 0x06, 60, 4, 0x06])


# -- crafted -----------------------------------------------------------------------------------


def test_crc_matches_the_reference_implementation():
    rng = random.Random(1815)
    for _ in range(200):
        data = rng.randbytes(rng.randint(0, 40))
        assert crc_dnp(data).to_bytes(2, "little") == reference_crc(data)


def test_several_frames_in_one_buffer_and_a_split_one():
    a, b, c = (
        request(1, CLASS0123, 1),
        request(1, CLASS0123, 2),
        request(2, b"\x50\x01\x00\x07\x07\x00", 3),
    )
    dec = Dnp3()
    used, msgs = dec.parse(a + b + c[:12], True)
    assert used == len(a + b) and [m.attrs["app_seq"] for m in msgs] == [1, 2]
    assert dec.parse(c[:12], True) == (0, [])
    used, msgs = dec.parse(c, True)
    assert used == len(c) and msgs[0].function_name == "write" and msgs[0].data_area == "g80v1"


def test_read_request_fields():
    m = one(request(1, CLASS0123, 5))
    assert (m.direction, m.function_code, m.function_name, m.unit) == ("request", 1, "read", 10)
    assert (m.attrs["src_addr"], m.attrs["dst_addr"]) == (MASTER, OUTSTATION)
    assert m.match == (5, MASTER, OUTSTATION) and m.link
    assert m.data_area == "g60v1" and m.attrs["object_count"] == 4
    assert [(o["group"], o["variation"], o["qualifier"]) for o in m.attrs["objects"]] == [
        (60, 1, 6),
        (60, 2, 6),
        (60, 3, 6),
        (60, 4, 6),
    ]


def test_response_iin_and_exception_code():
    ok = one(response(0x9000, bytes([1, 2, 0x00, 2, 5]) + b"\x81\x01\x01\x81", 5), False)
    assert ok.direction == "response" and ok.unit == OUTSTATION
    assert ok.match == (5, MASTER, OUTSTATION) and ok.exception_code is None
    assert ok.attrs["iin"] == 0x9000 and ok.attrs["iin_flags"] == ["need_time", "device_restart"]
    assert (ok.data_area, ok.address, ok.quantity) == ("g1v2", 2, 4)
    refused = one(response(0x0001), False)
    assert refused.exception_code == 0x01 and refused.attrs["iin_flags"] == ["no_func_code_support"]
    both = one(response(0x0006), False)
    assert both.exception_code == 0x06
    overflow = one(response(0x0008), False)  # event buffer overflow: a state, not a refusal
    assert overflow.exception_code is None and overflow.attrs["iin"] == 8


def test_direction_comes_from_the_dir_bit():
    m = one(response(0), from_client=True)  # sent by the originator, but DIR = 0
    assert m.direction == "response"


def test_crob_direct_operate():
    crob = bytes([12, 1, 0x28, 2, 0, 7, 0, 0x41, 1, 100, 0, 0, 0, 0, 0, 0, 0, 0])
    crob += bytes([9, 0, 0x03, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    m = one(request(5, crob))
    assert (m.function_name, m.data_area, m.address, m.quantity) == (
        "direct_operate",
        "g12v1",
        7,
        2,
    )
    assert m.values == (0x41, 0x03)
    first, second = m.attrs["crob"]
    assert first == {
        "index": 7,
        "code": 0x41,
        "op": 1,
        "queue": 0,
        "clear": 0,
        "tcc": 1,
        "count": 1,
        "on_ms": 100,
        "off_ms": 0,
        "status": 0,
    }
    assert (second["index"], second["op"], second["tcc"]) == (9, 3, 0)
    cut = one(request(3, crob[:20]))  # two CROBs announced, one present
    assert len(cut.attrs["crob"]) == 1 and cut.attrs["objects_incomplete"] == "g12v1 data truncated"


def test_analog_output_values_and_file_name():
    ao = bytes([41, 2, 0x17, 2, 3]) + b"\xe8\x03\x00" + bytes([4]) + b"\x18\xfc\x00"
    m = one(request(5, ao))
    assert (m.data_area, m.values, m.address) == ("g41v2", (1000, -1000), 3)
    name = b"./x.txt"
    obj = b"\x1a\x00" + len(name).to_bytes(2, "little") + bytes(22) + name
    g70 = bytes([70, 3, 0x5B, 1]) + len(obj).to_bytes(2, "little") + obj
    f = one(request(27, g70))
    assert (f.function_name, f.attrs["file_name"], f.data_area) == (
        "delete_file",
        "./x.txt",
        "g70v3",
    )


def test_unknown_object_size_stops_parsing_but_keeps_the_headers():
    m = one(request(2, bytes([99, 1, 0x00, 0, 0, 0xAA, 60, 1, 0x06])))
    assert m.data_area == "g99v1" and m.attrs["object_count"] == 1
    assert m.attrs["objects_incomplete"] == "g99v1: object size not known"
    bad = one(request(1, bytes([60, 1, 0x0D])))  # reserved range code: listed, then stop
    assert bad.attrs["objects"] == [{"group": 60, "variation": 1, "qualifier": 0x0D}]


def test_multi_fragment_reassembly():
    objects = bytes([30, 3, 0x01, 0, 0, 99, 0]) + bytes(range(200)) * 2  # 100 x 4 octets
    apdu = bytes([0xC2, 129, 0, 0]) + objects
    frames = apdu_frames(apdu, from_master=False, seq0=62)
    assert len(frames) == 2
    dec = Dnp3()
    used, msgs = dec.parse(frames[0], False)
    assert used == len(frames[0]) and msgs == []
    msgs = dec.parse(frames[1], False)[1]
    assert len(msgs) == 1
    m = msgs[0]
    assert (m.function_code, m.attrs["frames"], m.data_area, m.quantity) == (129, 2, "g30v3", 100)
    assert "objects_incomplete" not in m.attrs
    lost = Dnp3()
    lost.parse(frames[0], False)
    wrong_seq = apdu_frames(apdu, from_master=False, seq0=10)[1]
    assert lost.parse(wrong_seq, False)[1] == []  # sequence gap: fragment dropped
    assert Dnp3().parse(frames[1], False)[1] == []  # continuation without a first segment


def test_confirm_and_unsolicited_answer_nothing():
    unsol = one(response(0x0100, seq=7, fc=130), False)
    assert unsol.function_name == "unsolicited_response" and not unsol.link
    confirm = one(request(0, seq=7))
    assert confirm.function_name == "confirm" and not confirm.link


def test_unknown_function_code():
    m = one(request(99))
    assert (m.function_code, m.function_name) == (99, "unknown-99")


def test_link_only_frames_give_no_event():
    head = b"\x05\x64\x05\xc9\x0a\x00\x01\x00"  # request link status
    assert Dnp3().parse(head + reference_crc(head), True) == (10, [])


def test_bad_crcs_raise_after_the_good_frames():
    good = request(1, CLASS0123)
    bad_head = bytearray(good)
    bad_head[8] ^= 0xFF
    bad_data = bytearray(good)
    bad_data[-1] ^= 0xFF
    junk = b"\x05\x05" + bytes(12)
    for bad, reason in (
        (bad_head, "bad_header_crc"),
        (bad_data, "bad_data_crc"),
        (junk, "bad_start_octets"),
    ):
        dec = Dnp3()
        used, msgs = dec.parse(good + bytes(bad), True)
        assert used == len(good) and len(msgs) == 1
        with pytest.raises(DecodeError) as err:
            dec.parse(bytes(bad), True)
        assert err.value.reason == reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"\x05\x65" + bytes(8), "bad_start_octets"), (b"\x05\x64\x04" + bytes(7), "bad_link_length")],
)
def test_bad_frames_raise(data, reason):
    with pytest.raises(DecodeError) as err:
        Dnp3().parse(data, True)
    assert err.value.reason == reason


def test_udp_datagrams():
    dec = Dnp3()
    msgs = dec.datagram(request(1, CLASS0123) + request(23, seq=4), True)
    assert [m.function_name for m in msgs] == ["read", "delay_measurement"]
    with pytest.raises(DecodeError) as err:
        dec.datagram(request(1, CLASS0123)[:-3], True)
    assert err.value.reason == "truncated_frame"


def test_probe():
    assert Dnp3.probe(request(1, CLASS0123), True)
    assert Dnp3.probe(response(0), False)
    broken = bytearray(request(1))
    broken[9] ^= 1
    assert not Dnp3.probe(bytes(broken), True)
    assert not Dnp3.probe(b"\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x0a", True)  # Modbus
    assert not Dnp3.probe(b"\x68\x04\x07\x00\x00\x00", True)  # IEC 104 STARTDT
    rng = random.Random(20000)
    assert not any(Dnp3.probe(rng.randbytes(rng.randint(10, 80)), True) for _ in range(5000))


# -- golden ------------------------------------------------------------------------------------

GOLDEN = [
    *sorted(SHARED.glob("iti_ics_security_tools/dnp3/*.pcap")),
    *sorted(SHARED.glob("iti_ics_security_tools/quickdraw/dnp3_*.pcap")),
    SHARED / "suricata_verify/dnp3-flood/input.pcap",
    *sorted(REPLAY.glob("dnp3_*.pcap")),
]
NO_OBJECTS_IN_TSHARK = {16, 17, 18}


def ns(epoch: str) -> int:
    sec, _, frac = epoch.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


def tshark_rows(path: Path) -> list[tuple[int, str, str, list[int], list[int], list[int]]]:
    fields = ["frame.time_epoch", "ip.src", "ip.dst", "dnp3.al.func", "dnp3.al.iin", "dnp3.al.obj"]
    cmd = ["tshark", "-r", str(path), "-Y", "dnp3.al.func", "-T", "fields"]
    out = subprocess.run(
        cmd + [x for f in fields for x in ("-e", f)], capture_output=True, text=True, check=True
    ).stdout
    rows = []
    for line in out.splitlines():
        t, src, dst, fcs, iins, objs = line.split("\t")
        ints = [[int(x, 0) for x in col.split(",") if x] for col in (fcs, iins, objs)]
        rows.append((ns(t), src, dst, ints[0], ints[1], ints[2]))
    return rows


@pytest.fixture(scope="module")
def decoded() -> Callable[[Path], CaptureEvents]:
    cache: dict[Path, CaptureEvents] = {}

    def get(path: Path) -> CaptureEvents:
        if not path.exists():
            pytest.skip(f"{path} not present")
        if path not in cache:
            cache[path] = decode_capture(path, protocols={"dnp3"})
        return cache[path]

    return get


@pytest.mark.tshark
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_golden_against_tshark(path, decoded):
    events = [e for e in decoded(path).events if e.protocol == "dnp3"]
    assert all(set(e.attrs) <= Dnp3.ATTRS.keys() for e in events)
    rows = tshark_rows(path)
    want = [(t, s, d, fc) for t, s, d, fcs, _i, _o in rows for fc in fcs]
    assert [(e.ts, e.src_ip, e.dst_ip, e.function_code) for e in events] == want
    by_frame: dict[tuple[int, str], list] = {}
    for e in events:
        by_frame.setdefault((e.ts, e.src_ip), []).append(e)
    for t, src, _dst, fcs, iins, objs in rows:
        mine = by_frame[(t, src)]
        assert [e.attrs["iin"] for e in mine if "iin" in e.attrs] == iins
        if not set(fcs) & NO_OBJECTS_IN_TSHARK:
            got = [
                o["group"] << 8 | o["variation"] for e in mine for o in e.attrs.get("objects", [])
            ]
            assert got == objs, (t, fcs)


@pytest.mark.tshark
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_golden_attack_details(decoded):
    res = decoded(REPLAY / "dnp3_operate_and_write.pcap")
    operate = [e for e in res.events if e.function_code == 5]
    assert [e.src_ip for e in operate] == ["10.2.1.77"]
    assert operate[0].attrs["crob"][0]["index"] == 2 and operate[0].values == (0x81,)
    res = decoded(REPLAY / "dnp3_restart_and_stop.pcap")
    stop = [e for e in res.events if e.function_code == 18]
    refusal = [e for e in res.events if e.exception_code == 1]
    assert len(stop) == 1 and len(refusal) == 1 and refusal[0].request_uid == stop[0].uid
    res = decoded(SHARED / "iti_ics_security_tools/dnp3/file_delete.pcap")
    assert [e.attrs.get("file_name") for e in res.events] == ["./helloworld.txt", None]


@pytest.mark.tshark
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_bad_crc_frames_in_a_capture_match_tshark(tmp_path):
    """Good, bad header CRC, bad data CRC, good: two events and two weirds, as tshark sees it."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    good = request(1, CLASS0123)
    bad_head, bad_data = bytearray(good), bytearray(good)
    bad_head[8] ^= 0xFF
    bad_data[-1] ^= 0xFF
    pkts, seq = [], 1000
    for k, payload in enumerate([good, bytes(bad_head), bytes(bad_data), request(2, seq=4)]):
        p = (
            Ether()
            / IP(src="10.0.0.1", dst="10.0.0.2")
            / TCP(sport=40000, dport=20000, flags="PA", seq=seq, ack=1)
            / payload
        )
        p.time = 1_700_000_000 + k
        pkts.append(p)
        seq += len(payload)
    path = tmp_path / "crc.pcap"
    wrpcap(str(path), pkts)
    res = decode_capture(path, protocols={"dnp3"})
    assert [(e.ts, e.function_code) for e in res.events] == [
        (t, fc) for t, _s, _d, fcs, _i, _o in tshark_rows(path) for fc in fcs
    ]
    assert [e.function_code for e in res.events] == [1, 2]
    assert [(w.name, w.layer, w.frame) for w in res.weirds] == [
        ("bad_header_crc", "dnp3", 2),
        ("bad_data_crc", "dnp3", 3),
    ]
