"""MQTT decoder: crafted packets, and golden comparison with tshark 4.0.

Golden: for ``replay_pcaps/mqtt_*.pcap`` the sequence of (frame time, src ip, dst ip, control
packet type) equals tshark's ``mqtt.msgtype`` list (all packets of a frame), topics equal
``mqtt.topic`` and client ids ``mqtt.clientid``. No differences from tshark were found (the
shared set holds no MQTT capture).

Port 8883 (MQTT over TLS) is not bound here: its bytes are TLS, decoded by the TLS decoder.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from collectors.apps.base import DecodeError
from collectors.apps.mqtt import MqttDecoder
from replay_pcaps.scenarios.mqtt import connect, packet, publish, text

ROOT = Path(__file__).resolve().parents[1]
TSHARK = shutil.which("tshark")
REPLAY = sorted((ROOT / "replay_pcaps").glob("mqtt_*.pcap"))


def connect_v5(client: str, user: str) -> bytes:
    body = text("MQTT") + b"\x05\xc2\x00\x3c" + b"\x00" + text(client) + text(user) + text("pw")
    return packet(1, 0, body)


def test_connect_subscribe_several_in_one_buffer() -> None:
    d = MqttDecoder()
    sub = packet(8, 2, b"\x00\x07" + text("#") + b"\x01" + text("plant/+/cmd") + b"\x00")
    buf = connect("explorer") + sub + packet(12, 0, b"")
    used, msgs = d.parse(buf, True)
    assert used == len(buf)
    assert [(m.function_code, m.function_name, m.direction) for m in msgs] == [
        (1, "CONNECT", "request"), (8, "SUBSCRIBE", "request"), (12, "PINGREQ", "request"),
    ]  # fmt: skip
    c = msgs[0].attrs
    assert (c["client_id"], c["protocol_level"], c["username_present"]) == ("explorer", 4, False)
    assert msgs[1].attrs["topics"] == ["#", "plant/+/cmd"] and msgs[1].quantity == 2
    _, [ack] = d.parse(packet(9, 0, b"\x00\x07\x01\x80"), False)
    assert (
        ack.match == msgs[1].match
        and ack.exception_code == 0x80
        and ack.attrs["granted"] == [1, 0x80]
    )


def test_split_packet_and_long_remaining_length() -> None:
    d = MqttDecoder()
    big = publish("t/x", b"x" * 300)  # two-octet remaining length
    for cut in (1, 2, 3, len(big) - 1):
        assert d.parse(big[:cut], True) == (0, [])
    used, [m] = d.parse(big + big[:2], True)
    assert used == len(big) and m.attrs["payload_len"] == 300 and m.link is False
    with pytest.raises(DecodeError) as exc:
        d.parse(b"\x30\xff\xff\xff\xff\x01", True)
    assert exc.value.reason == "bad_remaining_length"
    with pytest.raises(DecodeError):
        d.parse(b"\x00\x00", True)


def test_connack_refused_and_qos1_matching() -> None:
    d = MqttDecoder()
    _, [ca] = d.parse(packet(2, 0, b"\x00\x05"), False)
    assert ca.exception_code == 5 and ca.attrs["return_name"] == "not_authorized"
    _, [pub] = d.parse(packet(3, 2, text("plant/valve") + b"\x00\x2a" + b"open"), True)
    assert (pub.attrs["qos"], pub.attrs["packet_id"], pub.attrs["payload_len"]) == (1, 42, 4)
    _, [puback] = d.parse(packet(4, 0, b"\x00\x2a"), False)
    assert puback.direction == "response" and puback.match == pub.match
    _, [srv_pub] = d.parse(packet(3, 2, text("a") + b"\x00\x2a"), False)
    assert srv_pub.match != pub.match  # the broker's own packet id space


def test_v5_connect_and_reason_codes() -> None:
    d = MqttDecoder()
    _, [c] = d.parse(connect_v5("dev1", "alice"), True)
    assert (c.attrs["protocol_level"], c.attrs["username"], c.attrs["password_present"]) == (
        5,
        "alice",
        True,
    )
    _, [ca] = d.parse(packet(2, 0, b"\x00\x87\x00"), False)
    assert ca.exception_code == 0x87
    _, [pa] = d.parse(packet(4, 0, b"\x00\x01\x87\x00"), False)
    assert pa.exception_code == 0x87 and pa.attrs["reason_code"] == 0x87
    _, [sub] = d.parse(packet(8, 2, b"\x00\x02\x00" + text("#") + b"\x00"), True)
    assert sub.attrs["topics"] == ["#"]


def test_malformed_and_unknown() -> None:
    d = MqttDecoder()
    _, [m] = d.parse(packet(8, 0, b"\x00\x01" + text("a") + b"\x00"), True)
    assert "malformed" in m.attrs
    _, [t] = d.parse(packet(3, 0, b"\x00\x09ab"), True)
    assert "malformed" in t.attrs
    assert MqttDecoder.fname(0) == "unknown-0"


def test_probe_and_fuzz() -> None:
    assert MqttDecoder.probe(connect("x"), True)
    assert MqttDecoder.probe(connect_v5("x", "y"), True)
    assert not MqttDecoder.probe(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(20), True)
    assert not MqttDecoder.probe(b"GET / HTTP/1.1\r\nHost: broker\r\n\r\n", True)
    rng = random.Random(1883)
    assert not any(MqttDecoder.probe(rng.randbytes(rng.randint(2, 64)), True) for _ in range(20000))
    seeds = [
        connect_v5("a", "b"),
        packet(8, 2, b"\x00\x01" + text("#") + b"\x00"),
        publish("t", b"v"),
    ]
    for _ in range(5000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        with contextlib.suppress(DecodeError):
            MqttDecoder().parse(bytes(data), rng.random() < 0.5)


@pytest.mark.tshark
@pytest.mark.skipif(TSHARK is None or not REPLAY, reason="tshark or captures absent")
@pytest.mark.parametrize("path", REPLAY, ids=lambda p: p.name)
def test_golden_against_tshark(path: Path) -> None:
    from collectors.apps.engine import decode_capture

    assert TSHARK
    out = subprocess.run(
        [TSHARK, "-r", str(path), "-Y", "mqtt", "-T", "fields", "-E", "occurrence=a",
         "-e", "frame.time_epoch", "-e", "ip.src", "-e", "ip.dst", "-e", "mqtt.msgtype",
         "-e", "mqtt.topic", "-e", "mqtt.clientid"],
        capture_output=True, text=True, check=True, env={**os.environ, "LC_ALL": "C"},
    ).stdout  # fmt: skip
    rows = [line.split("\t") for line in out.splitlines()]
    res = decode_capture(path, protocols={"mqtt"})
    assert res.weirds == []
    ev = [e for e in res.events if e.protocol == "mqtt"]

    def ns(s: str) -> int:
        sec, _, frac = s.partition(".")
        return int(sec) * 10**9 + int(frac.ljust(9, "0"))

    assert [(e.ts, e.src_ip, e.dst_ip, e.function_code) for e in ev] == [
        (ns(r[0]), r[1], r[2], int(v)) for r in rows for v in r[3].split(",")
    ]
    topics = [
        t
        for e in ev
        for t in ([e.attrs["topic"]] if "topic" in e.attrs else e.attrs.get("topics", []))
    ]
    assert topics == [t for r in rows if r[4] for t in r[4].split(",")]
    assert [e.attrs["client_id"] for e in ev if e.function_code == 1] == [
        r[5] for r in rows if r[5]
    ]
    wild = [e for e in ev if "#" in e.attrs.get("topics", [])]
    assert len(wild) == 1 and wild[0].src_ip == "10.2.1.66"
