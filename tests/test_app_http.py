"""HTTP/1.x decoder: crafted messages, then golden comparison with tshark 4.0.

Golden: per frame (time, src, dst) the request method and Host equal tshark's
``http.request.method`` / ``http.host`` and the response status its ``http.response.code``.
tshark reports a message in the frame that completes it, bodies included (body
desegmentation and de-chunking are on by default), and so does ParkWatch. No differences
are known on these captures.
"""

from __future__ import annotations

import base64
import contextlib
import random
import shutil
from pathlib import Path

import pytest

from collectors.apps.base import DecodeError
from collectors.apps.http import MAX_HEAD, Http
from tests import helpers

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "pcaps"
TSHARK = shutil.which("tshark")

REQ = (
    b"GET /admin/?q=1 HTTP/1.1\r\nHost: dmz.example\r\nUser-Agent: Hydra\r\n"
    b"Authorization: Basic " + base64.b64encode(b"admin:s3cret!") + b"\r\n\r\n"
)
POST = b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"


def resp(code: int, body: bytes = b"", extra: bytes = b"") -> bytes:
    head = b"HTTP/1.1 %d X\r\nContent-Type: text/html\r\nContent-Length: %d\r\n" % (code, len(body))
    return head + extra + b"\r\n" + body


def test_request_attrs_and_no_credentials():
    used, msgs = Http().parse(REQ, True)
    assert used == len(REQ) and len(msgs) == 1
    m = msgs[0]
    assert (m.direction, m.function_code, m.function_name) == ("request", None, "GET")
    assert m.attrs["host"] == "dmz.example" and m.attrs["uri"] == "/admin/?q=1"
    assert m.attrs["user_agent"] == "Hydra"
    assert m.attrs["auth_scheme"] == "basic" and m.attrs["auth_user"] == "admin"
    secret = base64.b64encode(b"admin:s3cret!").decode()
    assert "s3cret" not in repr(m.attrs) and secret not in repr(m.attrs)
    bearer = b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer abc.def.ghi\r\n\r\n"
    m = Http().parse(bearer, True)[1][0]
    assert m.attrs["auth_scheme"] == "bearer" and "abc" not in repr(m.attrs)


def test_pipelining_bodies_and_errors():
    dec = Http()
    reqs = POST + REQ + b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n"
    used, msgs = dec.parse(reqs, True)
    assert used == len(reqs) and [m.function_name for m in msgs] == ["POST", "GET", "HEAD"]
    assert msgs[0].attrs["body_len"] == 5
    assert [m.match for m in msgs] == [0, 1, 2]
    answers = resp(200, b"ok") + resp(401, b"no", b"WWW-Authenticate: Basic realm=x\r\n")
    answers += b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"  # HEAD: no body follows
    used, msgs = dec.parse(answers, False)
    assert used == len(answers)
    assert [(m.function_code, m.function_name, m.match, m.attrs["method"]) for m in msgs] == [
        (200, "ok", 0, "POST"),
        (401, "unauthorized", 1, "GET"),
        (200, "ok", 2, "HEAD"),
    ]
    assert [m.exception_code for m in msgs] == [None, 401, None]
    assert msgs[1].attrs["auth_challenge"] == "basic"


def test_split_chunked_and_interim():
    dec = Http()
    dec.parse(REQ, True)
    body = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    body += b"5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"
    out = []
    pos = 0
    for cut in (10, 30, 75, 90, 101, len(body)):  # split anywhere, bytes arrive in pieces
        buf = body[pos:cut]
        while buf:
            used, msgs = dec.parse(buf, False)
            out += msgs
            if not used:
                break
            buf = buf[used:]
            pos += used
    assert pos == len(body)
    assert [(m.function_code, m.link) for m in out] == [(100, False), (200, True)]
    assert out[1].attrs["body_len"] == 8 and out[1].attrs["chunked"]
    # a head not yet complete stays unconsumed
    assert Http().parse(REQ[:20], True) == (0, [])


def test_bad_input_is_decode_error():
    for data, fc in [
        (b"GARBAGE\r\n\r\n", True),
        (b"HTTP/1.1 abc\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * (MAX_HEAD // 8 + 10), True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", False),
    ]:
        dec = Http()
        if not fc:
            dec.parse(b"GET / HTTP/1.1\r\n\r\n", True)
        with pytest.raises(DecodeError):
            dec.parse(data, fc)


def test_upgrade_goes_opaque_and_response_without_length_runs_to_close():
    dec = Http()
    dec.parse(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", True)
    data = b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x05hello"
    used, msgs = dec.parse(data, False)
    assert msgs[0].attrs["status"] == 101 and used == len(data)
    assert dec.parse(b"\x81\x85binary", True) == (8, [])
    dec = Http()
    dec.parse(b"GET / HTTP/1.0\r\n\r\n", True)
    data = b"HTTP/1.0 200 OK\r\n\r\nbody until close"
    used, msgs = dec.parse(data, False)
    assert len(msgs) == 1 and used == len(data) and dec.parse(b"more", False) == (4, [])


def test_probe():
    assert Http.probe(REQ, True) and Http.probe(resp(200), False)
    assert not Http.probe(b"SSH-2.0-OpenSSH_9.2\r\n", True)
    assert not Http.probe(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", True)
    assert not Http.probe(b"GETTING / nothing\r\n", True)
    rng = random.Random(80)
    assert not any(Http.probe(rng.randbytes(60), True) for _ in range(3000))


def test_fuzz_only_decode_errors():
    rng = random.Random(8080)
    for _ in range(2000):
        b = bytearray(rng.choice([REQ, POST, resp(200, b"abc")]))
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        dec = Http()
        with contextlib.suppress(DecodeError):
            dec.parse(b"GET / HTTP/1.1\r\n\r\n", True)
            dec.parse(bytes(b), rng.random() < 0.5)


# -- golden ----------------------------------------------------------------------------------


def tshark_rows(path: Path, display: str, *fields: str) -> list[tuple]:
    return helpers.tshark_rows(path, display, *fields, every=False)


CAPTURES = [
    ROOT / "replay_pcaps" / "it_http_browsing.pcap",
    ROOT / "replay_pcaps" / "it_http_basic_auth_brute.pcap",
    *(
        SHARED / "chrissanders_packets" / f"{n}.pcapng"
        for n in (
            "http_dvwa_directorytraversal",
            "http_dvwa_sqlinjection",
            "sessionhijacking",
            "cryptowall4_c2",
            "arppoison",
        )
    ),
]


@pytest.mark.tshark
@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_golden_tshark(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} absent")
    from collectors.apps.engine import decode_capture

    res = decode_capture(path, protocols={"http"})
    assert res.events and not res.weirds
    want = [
        (t, s, d, method or None, host or None, int(code) if code else None)
        for t, s, d, method, host, code in tshark_rows(
            path, "http", "http.request.method", "http.host", "http.response.code"
        )
    ]
    got = []
    for e in res.events:
        req = e.direction == "request"
        got.append(
            (
                round(e.ts / 1e9, 6),
                e.src_ip,
                e.dst_ip,
                e.function_name if req else None,
                e.attrs.get("host"),
                e.attrs.get("status"),
            )
        )
        if not req:
            assert e.request_uid is not None
            assert e.function_code == e.attrs["status"]
            assert e.exception_code == (e.attrs["status"] if e.attrs["status"] >= 400 else None)
    assert got == want
    if path.name == "it_http_basic_auth_brute.pcap":
        from replay_pcaps.scenarios.it_web import HTTP_ADMIN_USERS, HTTP_PASSWORDS

        users = [e.attrs["auth_user"] for e in res.events if e.direction == "request"]
        assert users == [u for u in HTTP_ADMIN_USERS for _ in HTTP_PASSWORDS]
        text = repr([e.attrs for e in res.events])
        assert not any(f":{p}" in text for p in HTTP_PASSWORDS)
        flows = {f.community_id: f for f in res.flows}
        assert {flows[e.community_id].http_host for e in res.events} == {"10.1.3.80"}


def test_session_cookies_are_fingerprinted_never_kept() -> None:
    from collectors.apps.http import Http

    def cookie(value: str) -> dict:
        req = f"GET / HTTP/1.1\r\nHost: a\r\nCookie: {value}\r\n\r\n".encode()
        _used, msgs = Http().parse(req, True)
        return msgs[0].attrs

    a = cookie("security=low; PHPSESSID=ncobrqrb8qpve")
    b = cookie("PHPSESSID=ncobrqrb8qpve; security=high")
    assert a["session_cookie"] == b["session_cookie"]  # only the session cookie counts
    assert a["session_cookie"].startswith("sha256:") and "ncobrqrb" not in str(a)
    assert cookie("PHPSESSID=other")["session_cookie"] != a["session_cookie"]
    assert "session_cookie" not in cookie("lang=en; theme=dark")
