"""Modbus/TCP decoder: crafted PDUs, and golden comparison with tshark 4.0 on real captures.

Golden: for every Modbus PDU, (frame time, src ip, dst ip, function code, unit id) must equal
tshark's ``modbus.func_code`` / ``mbtcp.unit_id`` (several PDUs of one frame compared as the
full list), and per frame the exception codes must equal ``modbus.exception_code``.

Known differences (documented, not compared):

- ``iti_ics_security_tools/modbus/fuzz-*.pcap`` are fuzzer output with scrambled TCP sequence
  numbers (and IP headers). tshark dissects every segment on its own; ParkWatch reassembles the
  stream by sequence number, so scrambled segments are trimmed as retransmissions or held as
  out-of-order data. Only checked not to crash and to decode the segments that are in order.
- MBAP headers with a protocol id other than 0 or a length over 254 (suricata_verify
  modbus.pcap frames 76-82): tshark waits for a reassembled PDU that never comes and shows none;
  ParkWatch shows none either and counts a weird (bad_protocol_id / bad_mbap_length).
- tshark decides request/response by the port (502 = server); ParkWatch by the connection
  originator, except that an exception (fc | 0x80) is always a response — in suricata_verify
  modbus.pcap the server at port 502 opens the connection and sends exceptions.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from collectors.apps.base import DecodeError, Msg
from collectors.apps.engine import CaptureEvents, decode_capture
from collectors.apps.modbus import Modbus

SHARED = Path(__file__).resolve().parents[2] / "shared" / "pcaps"
REPLAY = Path(__file__).resolve().parents[1] / "replay_pcaps"


def adu(tid: int, unit: int, pdu: bytes, proto: int = 0) -> bytes:
    return struct.pack(">HHHB", tid, proto, len(pdu) + 1, unit) + pdu


def one(data: bytes, from_client: bool = True) -> Msg:
    used, msgs = Modbus().parse(data, from_client)
    assert used == len(data) and len(msgs) == 1
    assert set(msgs[0].attrs) <= Modbus.ATTRS.keys()
    return msgs[0]


# -- crafted -----------------------------------------------------------------------------------


def test_several_pdus_in_one_buffer_and_a_split_one():
    a = adu(1, 1, b"\x03\x00\x10\x00\x04")
    b = adu(2, 1, b"\x01\x00\x00\x00\x08")
    c = adu(3, 7, b"\x06\x00\x05\x12\x34")
    dec = Modbus()
    used, msgs = dec.parse(a + b + c[:5], True)
    assert used == len(a + b)
    assert [(m.function_code, m.attrs["transaction_id"]) for m in msgs] == [(3, 1), (1, 2)]
    used, msgs = dec.parse(c[:5], True)  # still partial: nothing consumed
    assert (used, msgs) == (0, [])
    used, msgs = dec.parse(c, True)
    assert used == len(c) and msgs[0].values == (0x1234,) and msgs[0].unit == 7


def test_read_request_and_response_fields():
    req = one(adu(9, 3, b"\x04\x00\x64\x00\x02"))
    assert (req.direction, req.function_name, req.data_area) == (
        "request",
        "read_input_registers",
        "input_register",
    )
    assert (req.address, req.quantity, req.unit, req.match) == (100, 2, 3, (9, 3))
    resp = one(adu(9, 3, b"\x04\x04\x00\x01\x00\x02"), from_client=False)
    assert resp.direction == "response" and resp.match == req.match
    assert resp.attrs["byte_count"] == 4 and resp.exception_code is None


def test_written_values():
    coil = one(adu(1, 1, b"\x05\x00\x07\xff\x00"))
    assert (coil.address, coil.values, coil.data_area) == (7, (1,), "coil")
    off = one(adu(1, 1, b"\x05\x00\x07\x00\x00"))
    assert off.values == (0,)
    odd = one(adu(1, 1, b"\x05\x00\x07\x12\x34"))
    assert odd.values == (0x1234,) and odd.attrs["invalid_coil_value"]
    coils = one(adu(1, 1, b"\x0f\x00\x13\x00\x0a\x02\xcd\x01"))
    assert coils.address == 0x13 and coils.quantity == 10
    assert coils.values == (1, 0, 1, 1, 0, 0, 1, 1, 1, 0)
    regs = one(adu(1, 1, b"\x10\x00\x01\x00\x02\x04\x00\x0a\x01\x02"))
    assert (regs.address, regs.quantity, regs.values) == (1, 2, (10, 258))
    mask = one(adu(1, 1, b"\x16\x00\x04\x00\xf2\x00\x25"))
    assert (mask.address, mask.values) == (4, (0xF2, 0x25))
    rw = one(adu(1, 1, b"\x17\x00\x03\x00\x06\x00\x0e\x00\x03\x06\x00\xff\x00\xff\x00\xff"))
    assert (rw.address, rw.quantity, rw.values) == (3, 6, (255, 255, 255))
    assert (rw.attrs["write_address"], rw.attrs["write_quantity"]) == (14, 3)
    fwrite = one(adu(1, 1, b"\x15\x0d\x06\x00\x04\x00\x07\x00\x03\x06\xaf\x04\xbe\x10\x0d"))
    assert (fwrite.data_area, fwrite.address, fwrite.quantity) == ("file_record", 7, 3)
    assert fwrite.values == (0x06AF, 0x04BE, 0x100D) and fwrite.attrs["file_number"] == 4


def test_write_echo_responses():
    resp = one(adu(1, 1, b"\x10\x00\x01\x00\x02"), from_client=False)
    assert (resp.address, resp.quantity, resp.values) == (1, 2, None)
    resp = one(adu(1, 1, b"\x06\x00\x01\x00\x03"), from_client=False)
    assert (resp.address, resp.values) == (1, (3,))


def test_exception_is_a_response_with_the_original_function_code():
    for from_client in (True, False):
        m = one(adu(5, 2, b"\x83\x02"), from_client)
        assert m.direction == "response" and m.function_code == 3
        assert m.function_name == "read_holding_registers"
        assert m.exception_code == 2 and m.attrs["exception_name"] == "illegal_data_address"
    gw = one(adu(5, 2, b"\x90\x0b"), False)
    assert (gw.function_code, gw.exception_code) == (16, 11)
    assert gw.attrs["exception_name"] == "gateway_target_device_failed_to_respond"


def test_diagnostics_force_listen_only():
    m = one(adu(1, 1, b"\x08\x00\x04\x00\x00"))
    assert m.function_name == "diagnostics" and m.attrs["subfunction"] == 4
    assert m.attrs["subfunction_name"] == "force_listen_only_mode"
    assert one(adu(1, 1, b"\x08\x00\x63\x00\x00")).attrs["subfunction_name"] == "unknown-99"


def test_read_device_identification():
    req = one(adu(1, 1, b"\x2b\x0e\x01\x00"))
    assert req.attrs["mei_name"] == "read_device_identification"
    assert (req.attrs["read_device_id_code"], req.attrs["object_id"]) == (1, 0)
    objs = b"\x00\x07Siemens\x01\x04S7-3\x02\x05V3.2a"
    resp = one(adu(1, 1, b"\x2b\x0e\x01\x01\x00\x00\x03" + objs), from_client=False)
    assert resp.attrs["device_id"] == {
        "vendor_name": "Siemens",
        "product_code": "S7-3",
        "major_minor_revision": "V3.2a",
    }
    cut = one(adu(1, 1, b"\x2b\x0e\x01\x01\x00\x00\x03" + objs[:12]), from_client=False)
    assert cut.attrs["device_id"] == {"vendor_name": "Siemens"} and "malformed" in cut.attrs


def test_unknown_function_and_short_pdus():
    m = one(adu(1, 1, b"\x41\x01\x02"))
    assert (m.function_code, m.function_name) == (65, "unknown-65")
    short = one(adu(1, 1, b"\x03\x00"))
    assert short.function_code == 3 and short.address is None
    assert short.attrs["malformed"] == "needs 4 data octets, has 1"
    lying = one(adu(1, 1, b"\x10\x00\x01\x00\x04\x08\x00\x01"))
    assert lying.values == (1,) and lying.attrs["malformed"] == "4 registers in 2 octets"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (adu(1, 1, b"\x03\x00\x00\x00\x01", proto=1), "bad_protocol_id"),
        (b"\x00\x01\x00\x00\x00\x01\x01\x03", "bad_mbap_length"),
        (b"\x00\x01\x00\x00\x01\x00\x01\x03", "bad_mbap_length"),
    ],
)
def test_bad_headers_raise(data, reason):
    with pytest.raises(DecodeError) as err:
        Modbus().parse(data, True)
    assert err.value.reason == reason
    good = adu(1, 1, b"\x03\x00\x00\x00\x01")
    used, msgs = Modbus().parse(good + data, True)  # the good PDU first, the error next call
    assert used == len(good) and len(msgs) == 1


def test_probe():
    assert Modbus.probe(adu(1, 1, b"\x03\x00\x00\x00\x0a"), True)
    assert Modbus.probe(adu(1, 1, b"\x83\x02"), False)
    assert not Modbus.probe(adu(1, 1, b"\x03\x00\x00\x00\x0a", proto=3), True)
    assert not Modbus.probe(adu(1, 1, b"\x64\x00"), True)  # fc 100: not a Modbus function
    assert not Modbus.probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True)
    assert not Modbus.probe(b"\x05\x64\x05\xc9\x01\x00\x00\x04\xe9\x21", True)  # DNP3
    assert not Modbus.probe(b"\x03\x00\x00\x16\x11\xe0\x00\x00\x00\x01\x00", True)  # TPKT
    rng = random.Random(502)
    assert sum(Modbus.probe(rng.randbytes(rng.randint(8, 64)), True) for _ in range(5000)) < 5


# -- golden ------------------------------------------------------------------------------------

GOLDEN = [
    *sorted(SHARED.glob("lemay_modbus/*.pcap")),
    *sorted(SHARED.glob("iti_ics_security_tools/quickdraw/modbus_*.pcap")),
    SHARED / "suricata_verify/modbus/modbus.pcap",
    *sorted(REPLAY.glob("modbus_*.pcap")),
]


def ns(epoch: str) -> int:
    sec, _, frac = epoch.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


def tshark_rows(path: Path) -> tuple[list[tuple], dict[tuple[str, int], list[int]]]:
    """Per PDU (time, src, dst, fc, unit); per (field, frame time) exception / diag codes."""
    fields = ["frame.time_epoch", "ip.src", "ip.dst", "modbus.func_code", "mbtcp.unit_id"]
    fields += ["modbus.exception_code", "modbus.diagnostic_code"]
    cmd = ["tshark", "-r", str(path), "-Y", "modbus", "-T", "fields"]
    out = subprocess.run(
        cmd + [x for f in fields for x in ("-e", f)], capture_output=True, text=True, check=True
    ).stdout
    rows, codes = [], {}
    for line in out.splitlines():
        t, src, dst, fcs, units, excs, diags = line.split("\t")
        for fc, unit in zip(fcs.split(","), units.split(","), strict=True):
            rows.append((ns(t), src, dst, int(fc), int(unit)))
        for name, col in (("exception", excs), ("diag", diags)):
            if col:
                codes[(name, ns(t))] = sorted(int(x) for x in col.split(","))
    return rows, codes


@pytest.fixture(scope="module")
def decoded() -> Callable[[Path], CaptureEvents]:
    cache: dict[Path, CaptureEvents] = {}

    def get(path: Path) -> CaptureEvents:
        if path not in cache:
            cache[path] = decode_capture(path, protocols={"modbus"})
        return cache[path]

    return get


def present(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


@pytest.mark.tshark
@needs_tshark
@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_golden_against_tshark(path, decoded):
    res = decoded(present(path))
    events = [e for e in res.events if e.protocol == "modbus"]
    assert all(set(e.attrs) <= Modbus.ATTRS.keys() for e in events)
    ours = [(e.ts, e.src_ip, e.dst_ip, e.function_code, e.unit) for e in events]
    rows, codes = tshark_rows(path)
    assert ours == rows
    mine: dict[tuple[str, int], list[int]] = {}
    for e in events:
        if e.exception_code is not None:
            mine.setdefault(("exception", e.ts), []).append(e.exception_code)
        if "subfunction" in e.attrs:
            mine.setdefault(("diag", e.ts), []).append(e.attrs["subfunction"])
    assert {k: sorted(v) for k, v in mine.items()} == codes
    assert all(e.request_uid for e in events if e.direction == "response") or path.name in (
        "modbus.pcap",  # exceptions answer requests sent before the capture started
        "modbus_test_data_part1.pcap",
    )


@pytest.mark.tshark
@needs_tshark
def test_golden_values_of_the_unauthorized_write_scenario(decoded):
    res = decoded(present(REPLAY / "modbus_unauthorized_write.pcap"))
    writes = [e for e in res.events if e.function_code in (5, 6, 15, 16)]
    requests = [e for e in writes if e.direction == "request"]
    assert {e.function_code for e in requests} == {5, 6, 15, 16}
    assert all(e.values and e.address is not None for e in requests)
    assert {e.src_ip for e in requests} == {"10.1.1.77"}
    refused = [e for e in res.events if e.exception_code == 2]
    assert refused and all(e.dst_ip == "10.1.1.77" and e.request_uid for e in refused)


@pytest.mark.parametrize("name", ["fuzz-72.pcap", "fuzz-1011.pcap"])
def test_fuzz_captures_decode_without_decoder_errors(name, decoded):
    res = decoded(present(SHARED / "iti_ics_security_tools/modbus" / name))
    assert [e for e in res.events if e.protocol == "modbus"]
    assert not [w for w in res.weirds if w.name == "decoder_exception"]
