"""Telnet decoder: crafted streams, then golden comparison with tshark 4.0 and the generator.

Golden (``it_telnet_ot_login.pcap``): per frame (time, src, dst) the negotiated (command,
option) pairs equal tshark's ``telnet.cmd`` / ``telnet.subcmd``; the login dialogue events
follow the scenario's own ``TELNET_DIALOGUE`` (prompt, user name, password, result) and the
password typed never appears in any event.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from collectors.apps.base import DecodeError
from collectors.apps.telnet import Telnet

ROOT = Path(__file__).resolve().parents[1]
TSHARK = shutil.which("tshark")
IAC, DO, WILL, WONT, SB, SE = 255, 253, 251, 252, 250, 240


def test_negotiation_and_partial_iac():
    dec = Telnet()
    data = bytes([IAC, DO, 24, IAC, WILL, 1, IAC, SB, 24, 1, IAC, SE, IAC, DO])
    used, msgs = dec.parse(data, False)
    assert used == len(data) - 2  # the cut IAC DO stays unconsumed
    assert msgs[0].function_name == "negotiation" and msgs[0].direction == "response"
    assert msgs[0].attrs == {"do": [24], "will": [1], "subneg": [24]}
    used, msgs = dec.parse(bytes([IAC, DO, 31]), False)
    assert used == 3 and msgs[0].attrs == {"do": [31]}
    with pytest.raises(DecodeError):
        dec.parse(bytes([IAC, SB, 24]) + bytes(5000), True)


def test_login_failure_then_success_never_keeps_password():
    dec = Telnet()
    seq = [
        (False, b"\r\nUbuntu 22.04\r\nlog"),
        (False, b"in: "),  # prompt split across segments
        (True, b"m"),  # character mode: one key per segment
        (True, b"aint\r\n"),
        (False, b"maint\r\nPassword: "),
        (True, b"wrong-pw\r\n"),
        (False, b"\r\nLogin incorrect\r\nlogin: "),
        (True, b"maint\r\n"),
        (False, b"Password: "),
        (True, b"s3cret\r\n"),
        (False, b"Last login: Mon\r\nmaint@gw:~$ "),
    ]
    out = []
    for fc, data in seq:
        used, msgs = dec.parse(data, fc)
        assert used == len(data)
        out += msgs
    assert [m.function_name for m in out] == [
        "login_prompt", "username", "password_prompt", "password", "login_result",
        "login_prompt", "username", "password_prompt", "password", "login_result",
    ]  # fmt: skip
    results = [m.attrs for m in out if m.function_name == "login_result"]
    assert results == [{"login": "failure", "user": "maint"}, {"login": "success", "user": "maint"}]
    assert [m.attrs["arg_len"] for m in out if m.function_name == "password"] == [8, 6]
    assert "s3cret" not in repr([m.attrs for m in out]) and "wrong" not in repr(out)
    assert all(not m.link and m.function_code is None for m in out)


def test_probe_and_unknown():
    assert Telnet.probe(bytes([IAC, DO, 24, IAC, DO, 32]), False)
    assert not Telnet.probe(b"login: ", False)
    assert not Telnet.probe(bytes([IAC, 1, 2, 3]), False)
    assert Telnet.fname(7) == "unknown-7" and Telnet.fname(253) == "do"
    rng = random.Random(23)
    assert sum(Telnet.probe(rng.randbytes(30), True) for _ in range(5000)) <= 1


def test_fuzz_only_decode_errors():
    rng = random.Random(2323)
    for _ in range(2000):
        b = bytearray(bytes([IAC, DO, 24, IAC, SB, 24, 0, IAC, SE]) + b"login: ")
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.choice([IAC, SB, SE, rng.randrange(256)])
        with contextlib.suppress(DecodeError):
            Telnet().parse(bytes(b), rng.random() < 0.5)


@pytest.mark.tshark
@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_golden_scenario():
    from collectors.apps.engine import decode_capture
    from replay_pcaps.scenarios.it_login import TELNET_DIALOGUE

    path = ROOT / "replay_pcaps" / "it_telnet_ot_login.pcap"
    res = decode_capture(path, protocols={"telnet"})
    assert not res.weirds
    assert TSHARK is not None
    cmd = [TSHARK, "-n", "-r", str(path), "-Y", "telnet.cmd", "-T", "fields", "-E", "occurrence=a"]
    for f in ("frame.time_epoch", "ip.src", "ip.dst", "telnet.cmd", "telnet.subcmd"):
        cmd += ["-e", f]
    want = []
    for line in subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines():
        t, s, d, cmds, opts = line.split("\t")
        pairs = sorted(zip(map(int, cmds.split(",")), map(int, opts.split(",")), strict=True))
        want.append((round(float(t), 6), s, d, pairs))
    names = {"will": WILL, "wont": WONT, "do": DO, "dont": 254}
    got = [
        (round(e.ts / 1e9, 6), e.src_ip, e.dst_ip,
         sorted((names[k], o) for k, v in e.attrs.items() for o in v))
        for e in res.events if e.function_name == "negotiation"
    ]  # fmt: skip
    assert got == want
    dialogue = [e for e in res.events if e.function_name != "negotiation"]
    assert [e.function_name for e in dialogue] == [
        "login_prompt", "username", "password_prompt", "password", "login_result",
    ]  # fmt: skip
    typed = [data.strip().decode() for fc, data in TELNET_DIALOGUE if fc and IAC not in data]
    user, password = typed[0], typed[1]
    assert dialogue[1].attrs == {"user": user}
    assert dialogue[3].attrs == {"arg_len": len(password)}
    assert dialogue[4].attrs == {"login": "success", "user": user}
    assert password not in repr([e.attrs for e in res.events])
