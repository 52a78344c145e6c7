"""SSH decoder: crafted banners and KEXINIT, then golden comparison with tshark 4.0.

Golden: per frame (time, src, dst) the banners equal tshark's ``ssh.protocol`` and the KEXINIT
events tshark's ``ssh.message_code`` 20 (``-d tcp.port==902,ssh`` for the Stratosphere capture,
whose SSH server listens on 902). Documented differences:

- ParkWatch stops after each side's KEXINIT; tshark also lists the unencrypted key-exchange
  messages after it (code 30 KEXDH_INIT, often in the same frame), so only code 20 is compared.
- On port 902 (not bound to SSH) the engine recognises the flow by content, probing each of a
  flow's first payloads, so connections whose server first sends a refusal line ("Exceeded
  MaxStartups") are still recognised at the next payload and compared like the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import shutil
from pathlib import Path

import pytest

from collectors.apps.base import DecodeError
from collectors.apps.ssh import Ssh
from tests import helpers

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "pcaps"
TSHARK = shutil.which("tshark")

SERVER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
CLIENT = b"SSH-2.0-libssh2_1.10.0\r\n"
LISTS = ["curve25519-sha256,ecdh-sha2-nistp256", "ssh-ed25519", "aes128-ctr", "aes256-ctr",
         "hmac-sha2-256", "hmac-sha1", "none", "zlib", "", ""]  # fmt: skip


def kexinit(lists: list[str] = LISTS, code: int = 20) -> bytes:
    payload = bytes([code]) + bytes(16)
    for s in lists:
        payload += len(s).to_bytes(4, "big") + s.encode()
    payload += b"\0" + bytes(4)
    pad = 8 - (len(payload) + 5) % 8
    pad += 8 if pad < 4 else 0
    body = bytes([pad]) + payload + bytes(pad)
    return len(body).to_bytes(4, "big") + body


def test_banners_and_kexinit_in_one_buffer():
    dec = Ssh()
    data = CLIENT + kexinit() + b"\x00\x00\x00\x2c" + bytes(44)  # then key exchange / encrypted
    used, msgs = dec.parse(data, True)
    assert used == len(data)
    b, k = msgs
    assert (b.direction, b.function_name, b.function_code, b.link) == (
        "request", "banner", None, False,
    )  # fmt: skip
    assert b.attrs == {"banner": "SSH-2.0-libssh2_1.10.0", "proto_version": "2.0",
                       "software": "libssh2_1.10.0"}  # fmt: skip
    assert (k.function_code, k.function_name) == (20, "kexinit")
    hassh = "curve25519-sha256,ecdh-sha2-nistp256;aes128-ctr;hmac-sha2-256;none"
    assert k.attrs["hassh"] == hashlib.md5(hassh.encode()).hexdigest()
    assert dec.parse(b"\xde\xad" * 50, True) == (100, [])  # encrypted: consumed, not decoded
    m = Ssh().parse(SERVER, False)[1][0]
    assert m.direction == "response" and m.attrs["software"] == "OpenSSH_9.2p1"
    assert m.attrs["comments"] == "Debian-2+deb12u3"
    server_hassh = "curve25519-sha256,ecdh-sha2-nistp256;aes256-ctr;hmac-sha1;zlib"
    dec = Ssh()
    dec.parse(SERVER, False)
    k = dec.parse(kexinit(), False)[1][0]
    assert k.attrs["hassh"] == hashlib.md5(server_hassh.encode()).hexdigest()


def test_split_pre_banner_lines_unknown_and_errors():
    dec = Ssh()
    assert dec.parse(SERVER[:10], False) == (0, [])
    used, msgs = dec.parse(b"Welcome\r\n" + SERVER[:10], False)
    assert used == 9 and msgs == []
    used, msgs = dec.parse(SERVER + kexinit()[:30], False)
    assert used == len(SERVER) and msgs[0].attrs["pre_banner_lines"] == 1
    m = dec.parse(kexinit(code=199), False)[1][0]
    assert (m.function_code, m.function_name) == (199, "unknown-199")
    with pytest.raises(DecodeError):
        Ssh().parse(b"GET / HTTP/1.1\r\n", True)
    with pytest.raises(DecodeError):
        Ssh().parse(b"SSH-" + b"x" * 2000, True)
    dec = Ssh()
    dec.parse(CLIENT, True)
    with pytest.raises(DecodeError):
        dec.parse(b"\xff\xff\xff\xff\x04" + bytes(20), True)


def test_probe():
    assert Ssh.probe(SERVER, False) and Ssh.probe(CLIENT, True)
    assert not Ssh.probe(b"GET / HTTP/1.1\r\n\r\n", True)
    assert not Ssh.probe(b"SSH-garbage", True)
    rng = random.Random(22)
    assert not any(Ssh.probe(rng.randbytes(40), True) for _ in range(3000))


def test_fuzz_only_decode_errors():
    rng = random.Random(2222)
    for _ in range(2000):
        b = bytearray(CLIENT + kexinit())
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        with contextlib.suppress(DecodeError):
            Ssh().parse(bytes(b[: rng.randint(0, len(b))]), rng.random() < 0.5)


# -- golden ----------------------------------------------------------------------------------


def tshark_rows(path: Path, display: str, *fields: str) -> list[tuple]:
    return helpers.tshark_rows(path, display, *fields, decode_as=("tcp.port==902,ssh",))


CAPTURES = [
    ROOT / "replay_pcaps" / "it_ssh_brute_force.pcap",
    SHARED / "stratosphere_slips" / "test19-malicious-ssh" / "malicious-ssh-bruteforce.pcap",
]


@pytest.mark.tshark
@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_golden_tshark(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} absent")
    from collectors.apps.engine import decode_capture

    res = decode_capture(path, protocols={"ssh"})
    assert res.events and not res.weirds

    def keep(rows: list[tuple]) -> list[tuple]:
        return [r[:3] + r[4:] for r in rows]  # every TCP stream (column 3 is its number)

    banners = keep(tshark_rows(path, "ssh.protocol", "tcp.stream", "ssh.protocol"))
    got = [
        (round(e.ts / 1e9, 6), e.src_ip, e.dst_ip, e.attrs["banner"])
        for e in res.events
        if e.function_name == "banner"
    ]
    assert got == banners
    kex = keep(tshark_rows(path, "ssh.message_code==20", "tcp.stream"))
    got2: list[tuple] = [
        (round(e.ts / 1e9, 6), e.src_ip, e.dst_ip) for e in res.events if e.function_code == 20
    ]
    assert got2 == kex
    if path == CAPTURES[0]:
        from replay_pcaps.scenarios.it_login import SSH_CLIENT_BANNER, SSH_SESSIONS

        client = [e for e in res.events if e.function_name == "banner" and e.direction == "request"]
        assert len(client) == SSH_SESSIONS
        assert {e.attrs["banner"].encode() + b"\r\n" for e in client} == {SSH_CLIENT_BANNER}
