"""FTP decoder: crafted dialogues, then golden comparison with tshark 4.0.

Golden: per frame (time, src, dst) commands equal tshark's ``ftp.request.command`` and replies
its ``ftp.response.code``; login outcomes are checked against the scenario generator's own
table of guesses (``it_ftp_brute_force``). No differences are known on these captures.
"""

from __future__ import annotations

import contextlib
import random
import shutil
from pathlib import Path

import pytest

from collectors.apps.base import DecodeError
from collectors.apps.ftp import Ftp
from tests import helpers

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "pcaps"
TSHARK = shutil.which("tshark")


def test_login_dialogue_and_no_password():
    dec = Ftp()
    greet = dec.parse(b"220 (vsFTPd 3.0.3)\r\n", False)[1][0]
    assert (greet.function_code, greet.link, greet.exception_code) == (220, False, None)
    used, msgs = dec.parse(b"USER ftpadmin\r\nPASS hunter2\r\n", True)  # two commands at once
    assert [(m.function_name, m.attrs) for m in msgs] == [
        ("USER", {"arg": "ftpadmin"}),
        ("PASS", {"arg_len": 7}),
    ]
    replies = b"331 Please specify the password.\r\n530 Login incorrect.\r\n"
    used, msgs = dec.parse(replies, False)
    assert used == len(replies)
    assert msgs[0].function_name == "need_password" and "login" not in msgs[0].attrs
    fail = msgs[1]
    assert (fail.function_code, fail.exception_code) == (530, 530)
    assert fail.function_name == "not_logged_in"
    assert fail.attrs["login"] == "failure" and fail.attrs["user"] == "ftpadmin"
    dec.parse(b"USER ftpadmin\r\n", True)
    dec.parse(b"331 ok\r\n", False)
    dec.parse(b"PASS Alpha2025!\r\n", True)
    ok = dec.parse(b"230 Login successful.\r\n", False)[1][0]
    assert ok.attrs["login"] == "success" and ok.attrs["text"] == "Login successful."
    assert "hunter2" not in repr(fail.attrs) and "Alpha2025" not in repr(ok.attrs)


def test_multiline_split_preliminary_unknown():
    dec = Ftp()
    dec.parse(b"FEAT\r\n", True)
    multi = b"211-Features:\r\n EPRT\r\n 211 is not the end\r\n MDTM\r\n211 End\r\n"
    assert dec.parse(multi[:30], False) == (0, [])  # partial multi-line reply stays
    used, msgs = dec.parse(multi, False)
    assert used == len(multi) and len(msgs) == 1 and msgs[0].attrs["lines"] == 5
    assert msgs[0].attrs["text"] == "Features:" and msgs[0].link
    dec.parse(b"RETR a.bin\r\n", True)
    _, msgs = dec.parse(b"150 Opening\r\n226 Done\r\n", False)
    assert [(m.function_code, m.link) for m in msgs] == [(150, False), (226, True)]
    m = Ftp().parse(b"299 odd\r\n", False)[1][0]
    assert m.function_name == "unknown-299"
    assert Ftp().parse(b"USER ab", True) == (0, [])


def test_errors_and_auth_tls():
    for data, fc in ((b"\x16\x03\x01\x00\x05hello\r\n", True), (b"hello\r\n", False),
                     (b"X" * 9000, True)):  # fmt: skip
        with pytest.raises(DecodeError):
            Ftp().parse(data, fc)
    dec = Ftp()
    dec.parse(b"AUTH TLS\r\n", True)
    m = dec.parse(b"234 Proceed with negotiation.\r\n", False)[1][0]
    assert m.attrs["tls"]
    assert dec.parse(b"\x16\x03\x01\x00\x05hello", True) == (10, [])


def test_probe():
    assert Ftp.probe(b"220 ProFTPD Server (Debian)\r\n", False)
    assert Ftp.probe(b"USER anonymous\r\n", True)
    assert not Ftp.probe(b"220 mail.example ESMTP Postfix\r\n", False)
    assert not Ftp.probe(b"GET / HTTP/1.1\r\n", True)
    rng = random.Random(21)
    assert not any(Ftp.probe(rng.randbytes(40), True) for _ in range(3000))


def test_fuzz_only_decode_errors():
    rng = random.Random(2121)
    seeds = [(b"USER a\r\nPASS b\r\n", True), (b"230-a\r\nb\r\n230 c\r\n", False)]
    for _ in range(2000):
        data, fc = rng.choice(seeds)
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        with contextlib.suppress(DecodeError):
            Ftp().parse(bytes(b), fc)


# -- golden ----------------------------------------------------------------------------------


def tshark_rows(path: Path, display: str, *fields: str) -> list[tuple]:
    return helpers.tshark_rows(path, display, *fields)


CAPTURES = [
    ROOT / "replay_pcaps" / "it_ftp_login.pcap",
    ROOT / "replay_pcaps" / "it_ftp_brute_force.pcap",
    SHARED / "chrissanders_packets" / "ppa1e_history_5bf3c57" / "ftp-crack.pcap",
]


@pytest.mark.tshark
@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_golden_tshark(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} absent")
    from collectors.apps.engine import decode_capture

    res = decode_capture(path, protocols={"ftp"})
    assert res.events and not res.weirds
    want = tshark_rows(path, "ftp.request.command || ftp.response.code", "ftp.request.command",
                       "ftp.response.code")  # fmt: skip
    got = [
        (round(e.ts / 1e9, 6), e.src_ip, e.dst_ip,
         e.function_name if e.direction == "request" else "",
         str(e.function_code) if e.direction == "response" else "")
        for e in res.events
    ]  # fmt: skip
    assert got == want
    logins = [(e.attrs.get("user"), e.attrs["login"]) for e in res.events if "login" in e.attrs]
    for e in res.events:
        if e.function_name == "PASS":
            assert set(e.attrs) <= {"arg_len"}  # never the password
    if path.name == "it_ftp_brute_force.pcap":
        from replay_pcaps.scenarios.it_login import FTP_GUESSES

        attacker = [("ftpadmin", "success" if pw == FTP_GUESSES[-1] else "failure")
                    for pw in FTP_GUESSES]  # fmt: skip
        assert logins == [("engineer", "success"), *attacker, ("engineer", "success")]
    elif path.name == "ftp-crack.pcap":
        assert len(logins) > 600 and {o for _, o in logins} == {"failure"}
