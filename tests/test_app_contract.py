"""Contract and fuzz tests over every registered application decoder.

Each decoder must document itself (field tables), bind ports, return well-formed messages and
never let anything but :class:`DecodeError` escape — on real payloads taken from the project's
scenario captures and on thousands of mutations of them (truncations, bit flips, splices,
random bytes). A new decoder module is covered by adding it, with no change here.
"""

from __future__ import annotations

import contextlib
import random
from collections import defaultdict
from pathlib import Path

import dpkt
import pytest

from collectors.apps import APP_DECODERS
from collectors.apps.base import AppDecoder, DecodeError, Msg

ROOT = Path(__file__).resolve().parents[1] / "replay_pcaps"
NAMES = sorted(str(k) for k in APP_DECODERS)
CASES_PER_SAMPLE = 60
MAX_SAMPLES = 60


def _payloads() -> dict[tuple[str, str], list[tuple[bytes, bool, bool]]]:
    """(transport, port) -> payloads seen with that server port, with from-client flags."""
    out: dict[tuple[str, str], list[tuple[bytes, bool]]] = defaultdict(list)
    for path in sorted(ROOT.glob("*.pcap")):
        with path.open("rb") as fh:
            for _ts, buf in dpkt.pcap.Reader(fh):
                ip = dpkt.ethernet.Ethernet(buf).data
                l4 = getattr(ip, "data", None)
                if not isinstance(l4, dpkt.tcp.TCP | dpkt.udp.UDP) or not l4.data:
                    continue
                kind = "tcp" if isinstance(l4, dpkt.tcp.TCP) else "udp"
                tcp = kind == "tcp"
                out[(kind, str(l4.dport))].append((bytes(l4.data), True, tcp))
                out[(kind, str(l4.sport))].append((bytes(l4.data), False, tcp))
    return out


PAYLOADS = _payloads()


def samples(cls: type[AppDecoder]) -> list[tuple[bytes, bool, bool]]:
    """(payload, from client, over TCP) samples of the decoder's ports."""
    got: list[tuple[bytes, bool, bool]] = []
    for kind, ports in (("tcp", cls.tcp_ports), ("udp", cls.udp_ports)):
        for p in ports:
            got.extend(PAYLOADS.get((kind, str(p)), []))
    rng = random.Random(cls.name)
    rng.shuffle(got)
    return got[:MAX_SAMPLES]


def run(
    dec: AppDecoder, cls: type[AppDecoder], data: bytes, from_client: bool, tcp: bool
) -> list[Msg]:
    """Call the decoder the way the engine does and check the shape of what it returns."""
    if tcp:
        used, msgs = dec.parse(data, from_client)
        assert isinstance(used, int) and 0 <= used <= len(data), (cls.name, used, len(data))
    else:
        msgs = dec.datagram(data, from_client)
    for m in msgs:
        assert isinstance(m, Msg)
        assert m.direction in ("request", "response"), m
        if m.function_code is not None:
            assert isinstance(m.function_code, int)
            assert isinstance(m.function_name, str) and m.function_name, m
        assert all(isinstance(k, str) for k in m.attrs)
    return msgs


def mutations(data: bytes, rng: random.Random) -> list[bytes]:
    out = [data[:k] for k in sorted({rng.randrange(len(data) + 1) for _ in range(8)})]
    for _ in range(CASES_PER_SAMPLE - len(out) - 4):
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            pos = rng.randrange(len(b) + 1)
            if op < 0.5 and b:
                b[min(pos, len(b) - 1)] ^= 1 << rng.randrange(8)
            elif op < 0.7:
                b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            elif op < 0.85 and b:
                del b[pos : pos + rng.randint(1, 8)]
            else:
                b[pos:pos] = b"\xff\xff\x00\x00"
        out.append(bytes(b))
    out += [rng.randbytes(rng.randint(0, 64)) for _ in range(3)] + [data * 3]
    return out


def test_every_protocol_of_the_issue_has_a_decoder():
    want = {"modbus", "dnp3", "s7comm", "iec104", "enip", "opcua", "bacnet", "mqtt"}
    want |= {"dns", "http", "tls", "ssh", "ftp", "telnet", "smb"}
    assert want <= set(NAMES), sorted(want - set(NAMES))


@pytest.mark.parametrize("name", NAMES)
def test_decoder_documents_itself(name):
    cls = APP_DECODERS.get(name)
    assert cls.name == name and name.isidentifier()
    assert cls.tcp_ports or cls.udp_ports
    assert cls.FUNCTIONS, "a function/command table"
    assert all(isinstance(k, int) and isinstance(v, str) and v for k, v in cls.FUNCTIONS.items())
    assert cls.fname(0xFFFFFF) == f"unknown-{0xFFFFFF}"
    assert cls.ATTRS, "ATTRS documents every attrs key"
    for key, text in cls.ATTRS.items():
        assert key.isidentifier() and text and len(text) < 160, key


@pytest.mark.parametrize("name", NAMES)
def test_decoder_survives_mutated_payloads(name):
    cls = APP_DECODERS.get(name)
    got = samples(cls)
    assert got, f"no payload of {name} in replay_pcaps: add a scenario capture"
    rng = random.Random(f"fuzz-{name}")
    decoded = 0
    cases = 0
    for data, from_client, tcp in got:
        dec = cls()
        with contextlib.suppress(DecodeError):
            decoded += len(run(dec, cls, data, from_client, tcp))
        for mutated in mutations(data, rng):
            cases += 1
            fresh = cls() if rng.random() < 0.5 else dec  # also with state from earlier input
            try:
                run(fresh, cls, mutated, from_client, tcp)
            except DecodeError as exc:
                assert exc.reason and exc.reason.replace("_", "").isalnum(), exc.reason
    assert decoded > 0, f"{name} decoded nothing from its own scenario payloads"
    assert cases >= 1000 or len(got) < 20


@pytest.mark.parametrize("name", NAMES)
def test_probe_is_strict(name):
    cls = APP_DECODERS.get(name)
    rng = random.Random(f"probe-{name}")
    noise = [rng.randbytes(rng.randint(1, 200)) for _ in range(2000)]
    hits = sum(bool(cls.probe(b, True)) or bool(cls.probe(b, False)) for b in noise)
    assert hits <= 10, f"{name}.probe accepts {hits} of 2000 random payloads"
    for other in NAMES:
        if other == name:
            continue
        for data, fc, _tcp in samples(APP_DECODERS.get(other))[:10]:
            assert isinstance(cls.probe(data, fc), bool)
