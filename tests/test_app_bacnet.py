"""BACnet/IP decoder: crafted datagrams, and golden comparison with tshark 4.0.

Golden: for ``replay_pcaps/bacnet_*.pcap`` the sequence of (frame time, src ip, dst ip,
service choice) equals tshark's ``bacapp.confirmed_service`` (Confirmed-Request, Simple/Complex
ACK, Error) and ``bacapp.unconfirmed_service`` (Unconfirmed-Request) lists, the APDU type
equals ``bacapp.type``, and invoke id, object instance and property id equal
``bacapp.invoke_id``, ``bacapp.instance_number`` and ``bacapp.property_identifier``. No
differences from tshark were found (the shared set holds no BACnet capture).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from collectors.apps.bacnet import PDU_TYPES, BacnetDecoder
from collectors.apps.base import DecodeError
from replay_pcaps.scenarios.bacnet import BCAST, UNICAST, bvlc, property_ref, real

ROOT = Path(__file__).resolve().parents[1]
TSHARK = shutil.which("tshark")
REPLAY = sorted((ROOT / "replay_pcaps").glob("bacnet_*.pcap"))
AV, AI = 2, 0


def confirmed(invoke: int, service: int, args: bytes) -> bytes:
    return bvlc(UNICAST, bytes([0x00, 0x05, invoke, service]) + args, expecting_reply=True)


def test_write_property_and_simple_ack() -> None:
    d = BacnetDecoder()
    [w] = d.datagram(confirmed(3, 15, property_ref(AV, 2) + real(95.0) + b"\x49\x08"), True)
    assert (w.function_code, w.function_name, w.direction, w.match) == (
        15,
        "writeProperty",
        "request",
        3,
    )
    assert (w.data_area, w.address, w.values) == ("analog-value 2", 2, (95.0,))
    assert w.attrs["property_name"] == "present-value" and w.attrs["priority"] == 8
    [ack] = d.datagram(bvlc(UNICAST, b"\x20\x03\x0f"), False)
    assert (ack.direction, ack.function_code, ack.match, ack.exception_code) == (
        "response",
        15,
        3,
        None,
    )


def test_read_property_complex_ack_value() -> None:
    d = BacnetDecoder()
    [r] = d.datagram(confirmed(9, 12, property_ref(AI, 1)), True)
    assert r.values is None and r.data_area == "analog-input 1"
    [ack] = d.datagram(bvlc(UNICAST, b"\x30\x09\x0c" + property_ref(AI, 1) + real(31.5)), False)
    assert (ack.attrs["pdu_type"], ack.values, ack.match) == ("complex-ack", (31.5,), 9)


def test_errors_rejects_aborts() -> None:
    d = BacnetDecoder()
    d.datagram(confirmed(4, 20, b"\x09\x01\x1d\x07\x00filter"), True)
    [err] = d.datagram(
        bvlc(UNICAST, b"\x50\x04\x14\x91\x04\x91\x1a"), False
    )  # security, password-failure
    assert err.exception_code == (4 << 16 | 26) and err.attrs["error_class_name"] == "security"
    d.datagram(confirmed(5, 17, b"\x09\x05\x19\x01"), True)
    [rej] = d.datagram(bvlc(UNICAST, b"\x60\x05\x09"), False)
    assert (rej.function_code, rej.exception_code, rej.attrs["reject_reason"]) == (
        17,
        9,
        "unrecognized-service",
    )
    [abort] = d.datagram(bvlc(UNICAST, b"\x71\x06\x04"), False)
    assert abort.function_code is None and abort.exception_code == 4 and abort.attrs["from_server"]
    [res] = d.datagram(bytes([0x81, 0x00, 0x00, 0x06, 0x00, 0x30]), False)
    assert res.function_name == "bvlc-result" and res.exception_code == 0x30


def test_device_commands_and_unconfirmed() -> None:
    d = BacnetDecoder()
    [re] = d.datagram(confirmed(1, 20, b"\x09\x00\x1d\x07\x00secret"), True)
    assert re.attrs["reinitialize_state"] == "coldstart" and re.attrs["password_present"]
    [dcc] = d.datagram(confirmed(2, 17, b"\x09\x05\x19\x01"), True)
    assert (dcc.function_name, dcc.attrs["duration"], dcc.attrs["enable_disable"]) == (
        "deviceCommunicationControl", 5, "disable",
    )  # fmt: skip
    [who] = d.datagram(bvlc(BCAST, b"\x10\x08\x09\x00\x1b\x3f\xff\xff"), True)
    assert (who.function_name, who.link, who.attrs["low_limit"], who.attrs["high_limit"]) == (
        "who-is", False, 0, 0x3FFFFF,
    )  # fmt: skip
    [unk] = d.datagram(bvlc(UNICAST, b"\x00\x05\x01\x3f"), True)
    assert unk.function_name == "unknown-63"


def test_network_message_and_bad_datagrams() -> None:
    d = BacnetDecoder()
    [net] = d.datagram(bytes([0x81, 0x0B, 0x00, 0x07, 0x01, 0x80, 0x00]), True)
    assert net.function_name == "who-is-router-to-network" and net.function_code is None
    for bad, reason in (
        (b"\x82\x0a\x00\x04", "bad_bvlc_type"),
        (b"\x81\x0a\x00\x09\x01\x04", "bad_bvlc_length"),
        (b"\x81\x0a\x00\x06\x02\x00", "bad_npdu_version"),
        (b"\x81\x0a\x00\x07\x01\x04\x00", "truncated_npdu"),
    ):
        with pytest.raises(DecodeError) as exc:
            d.datagram(bad, True)
        assert exc.value.reason == reason


def test_probe_and_fuzz() -> None:
    assert BacnetDecoder.probe(confirmed(1, 12, property_ref(AI, 1)), True)
    assert not BacnetDecoder.probe(b"\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x0a", True)
    assert not BacnetDecoder.probe(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", True)  # DNS
    rng = random.Random(47808)
    assert not any(
        BacnetDecoder.probe(rng.randbytes(rng.randint(4, 64)), True) for _ in range(20000)
    )
    seeds = [confirmed(1, 15, property_ref(AV, 2) + real(1.0)), bvlc(BCAST, b"\x10\x08")]
    for _ in range(5000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(4, len(data))] = rng.randrange(256)
        with contextlib.suppress(DecodeError):
            BacnetDecoder().datagram(bytes(data), True)


@pytest.mark.tshark
@pytest.mark.skipif(TSHARK is None or not REPLAY, reason="tshark or captures absent")
@pytest.mark.parametrize("path", REPLAY, ids=lambda p: p.name)
def test_golden_against_tshark(path: Path) -> None:
    from collectors.apps.engine import decode_capture

    assert TSHARK
    fields = ["frame.time_epoch", "ip.src", "ip.dst", "bacapp.type", "bacapp.confirmed_service",
              "bacapp.unconfirmed_service", "bacapp.invoke_id", "bacapp.instance_number",
              "bacapp.property_identifier"]  # fmt: skip
    out = subprocess.run(
        [TSHARK, "-r", str(path), "-Y", "bvlc", "-T", "fields",
         *(a for f in fields for a in ("-e", f))],
        capture_output=True, text=True, check=True, env={**os.environ, "LC_ALL": "C"},
    ).stdout  # fmt: skip
    rows = [line.split("\t") for line in out.splitlines()]
    res = decode_capture(path, protocols={"bacnet"})
    assert res.weirds == []
    ev = [e for e in res.events if e.protocol == "bacnet"]
    assert len(ev) == len(rows)
    for e, r in zip(ev, rows, strict=True):
        sec, _, frac = r[0].partition(".")
        assert (e.ts, e.src_ip, e.dst_ip) == (
            int(sec) * 10**9 + int(frac.ljust(9, "0")),
            r[1],
            r[2],
        )
        assert e.attrs["pdu_type"] == PDU_TYPES[int(r[3])]
        assert e.function_code == int(r[4] or r[5])
        assert e.attrs.get("invoke_id") == (int(r[6]) if r[6] else None)
        if r[7] and "instance" in e.attrs:
            assert e.attrs["instance"] == int(r[7].split(",")[0])
        assert e.attrs.get("property_id") == (int(r[8].split(",")[0]) if r[8] else None)
    acks = [e for e in ev if e.direction == "response"]
    assert acks and all(e.request_uid is not None for e in acks)
    writes = [e for e in ev if e.function_code == 15 and e.direction == "request"]
    assert writes and all(e.values == (95.0,) and e.attrs["priority"] == 8 for e in writes)
