"""MQTT 3.1.1 (TCP 1883) scenario: reactor telemetry and a wildcard subscription by a stranger.

The capture ``mqtt_wildcard_subscribe.pcap`` (10 minutes) holds:

- normal: Beta's reactor RTU (10.2.2.10) publishes telemetry (QoS 0) every 5 s to the broker
  10.2.2.40 in Beta's OT zone; the Beta reactor HMI (10.2.2.20) subscribes to
  ``beta/reactor1/+`` and receives it, pinging the broker every 60 s;
- attack from 10.2.1.66 (Beta IT, not an MQTT client of the plant): CONNECT with an MQTT
  explorer client id, SUBSCRIBE to ``#`` (every topic), a minute of forwarded telemetry, then
  DISCONNECT.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from scapy.packet import Packet

from replay_pcaps.craft import Conversation
from replay_pcaps.scenarios.s7comm import SOURCE, Tape, Value, attack

T0 = 1_763_840_000.0
RTU, BETA_HMI, BROKER, ATTACKER = "10.2.2.10", "10.2.2.20", "10.2.2.40", "10.2.1.66"
PORT = 1883
CONNECT, CONNACK, PUBLISH, SUBSCRIBE, SUBACK = 1, 2, 3, 8, 9
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14
TOPICS = ("beta/reactor1/temperature", "beta/reactor1/pressure")


def text(s: str) -> bytes:
    raw = s.encode()
    return len(raw).to_bytes(2, "big") + raw


def packet(kind: int, flags: int, body: bytes) -> bytes:
    """Fixed header (type, flags, variable-length remaining length) + body."""
    n, size = len(body), b""
    while True:
        n, digit = divmod(n, 128)
        size += bytes([digit | (0x80 if n else 0)])
        if not n:
            break
    return bytes([kind << 4 | flags]) + size + body


def connect(client_id: str) -> bytes:
    return packet(CONNECT, 0, text("MQTT") + b"\x04\x02\x00\x3c" + text(client_id))


def publish(topic: str, payload: bytes) -> bytes:
    return packet(PUBLISH, 0, text(topic) + payload)


class Client:
    """An MQTT client connection to the broker; records intended (msgtype, topic)."""

    def __init__(self, tape: Tape, ip: str, cport: int) -> None:
        self.tape = tape
        self.conv: Conversation = tape.tcp(ip, BROKER, cport, PORT)

    def send(self, t: float, from_client: bool, data: bytes, kind: int, topic: str | None) -> None:
        self.conv.send(t, from_client, "PA", data)
        self.tape.mark(kind, topic)

    def connect(self, t: float, client_id: str) -> float:
        t = self.conv.open(t)
        self.send(t, True, connect(client_id), CONNECT, None)
        self.send(t + 0.002, False, packet(CONNACK, 0, b"\x00\x00"), CONNACK, None)
        self.conv.send(t + 0.1, True, "A")
        return t + 0.2

    def subscribe(self, t: float, packet_id: int, topic_filter: str) -> float:
        body = packet_id.to_bytes(2, "big") + text(topic_filter) + b"\x00"
        self.send(t, True, packet(SUBSCRIBE, 2, body), SUBSCRIBE, topic_filter)
        self.send(t + 0.002, False, packet(SUBACK, 0, body[:2] + b"\x00"), SUBACK, None)
        self.conv.send(t + 0.1, True, "A")
        return t + 0.2

    def publish(self, t: float, from_client: bool, topic: str, payload: bytes) -> None:
        self.send(t, from_client, publish(topic, payload), PUBLISH, topic)
        self.conv.send(t + 0.05, not from_client, "A")

    def ping(self, t: float) -> None:
        self.send(t, True, packet(PINGREQ, 0, b""), PINGREQ, None)
        self.send(t + 0.002, False, packet(PINGRESP, 0, b""), PINGRESP, None)

    def disconnect(self, t: float) -> float:
        self.send(t, True, packet(DISCONNECT, 0, b""), DISCONNECT, None)
        self.conv.close(t + 0.001)
        return t + 0.002


def reading(k: int) -> tuple[str, bytes]:
    topic = TOPICS[k % 2]
    value = 182.5 + (k % 9) * 0.1 if k % 2 == 0 else 14.2 + (k % 5) * 0.01
    return topic, f'{{"ts":{int(T0) + 3 + 5 * k},"value":{value:.2f}}}'.encode()


def build() -> tuple[list[Packet], dict[str, Any], list[tuple[Value, ...]]]:
    tape = Tape()
    rtu, hmi = Client(tape, RTU, 49700), Client(tape, BETA_HMI, 49701)
    t_rtu = rtu.connect(T0 + 1, "beta-rtu-reactor1")
    t_hmi = hmi.subscribe(hmi.connect(T0 + 2, "beta-hmi-1"), 1, "beta/reactor1/+")
    rogue = Client(tape, ATTACKER, 53000)
    t_attack = T0 + 300
    t_sub = rogue.subscribe(rogue.connect(t_attack, "mqtt-explorer-3f9c0a"), 1, "#")
    t_bye = t_sub + 60
    # each connection's sequence numbers advance in call order: run events in time order
    events: list[tuple[float, Callable[[], None]]] = []
    for k in range(118):
        t = T0 + 3 + 5 * k
        topic, payload = reading(k)
        events.append((t, partial(rtu.publish, t, True, topic, payload)))
        events.append((t + 0.004, partial(hmi.publish, t + 0.004, False, topic, payload)))
        if t_sub < t < t_bye:
            events.append((t + 0.005, partial(rogue.publish, t + 0.005, False, topic, payload)))
    events += [(t_hmi + 60 * k, partial(hmi.ping, t_hmi + 60 * k)) for k in range(1, 10)]
    for _, run in sorted(events, key=lambda e: e[0]):
        run()
    end = rogue.disconnect(t_bye)
    rtu.disconnect(t_rtu + 595)
    hmi.disconnect(t_hmi + 595)
    packets, intended = tape.finish()
    labels = {
        "description": (
            "MQTT: reactor RTU telemetry through Beta's OT broker to the reactor HMI; a Beta IT "
            "host connects to the broker and subscribes to the '#' wildcard."
        ),
        "source": SOURCE,
        "attacks": [
            attack(
                "mqtt-wildcard-subscribe",
                "ot_recon",
                ["T0861", "T0802"],
                t_attack,
                end,
                [ATTACKER],
                [BROKER],
            )
        ],
        "notes": (
            "Crafted. The broker accepts the anonymous CONNECT and the '#' subscription, then "
            "forwards every telemetry message to the stranger for a minute (point and tag "
            "identification, automated collection). Its traffic also crosses a conduit the park "
            "does not allow (mqtt from ent-b IT to ent-b OT)."
        ),
    }
    return packets, labels, intended


SCENARIOS = {"mqtt_wildcard_subscribe.pcap": lambda: build()[:2]}
"""Capture name -> scenario."""

INTENDED = {"mqtt_wildcard_subscribe.pcap": lambda: build()[2]}
"""Capture name -> intended values of :data:`TSHARK_FIELDS`, one tuple per OT frame."""

TSHARK_FILTER = "mqtt"
TSHARK_FIELDS = ("mqtt.msgtype", "mqtt.topic")
