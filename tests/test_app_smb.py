"""SMB decoder: crafted SMB2/SMB1 messages, then golden comparison with tshark 4.0.

Golden (``it_smb_psexec.pcap``): per frame (time, src, dst) the SMB2 commands equal tshark's
``smb2.cmd``, the response flag ``smb2.flags.response``, the NTSTATUS ``smb2.nt_status``;
TREE_CONNECT requests' share equals ``smb2.tree`` and CREATE requests' file name
``smb2.filename``. ParkWatch also copies share and file name onto later messages on the same
tree / file id, which tshark shows differently, so those two are compared on the requests
that carry them only.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from collectors.apps.base import DecodeError
from collectors.apps.smb import BIG, Smb

ROOT = Path(__file__).resolve().parents[1]
TSHARK = shutil.which("tshark")


def header(cmd: int, mid: int, resp: bool = False, status: int = 0, nxt: int = 0,
           tree: int = 0, flags: int = 0) -> bytes:  # fmt: skip
    return (
        b"\xfeSMB" + struct.pack("<HHIHHIIQ", 64, 1, status, cmd, 1, flags | resp, nxt, mid)
        + struct.pack("<II", 0xFEFF, tree) + struct.pack("<Q", 0x11) + bytes(16)
    )  # fmt: skip


def nb(msg: bytes) -> bytes:
    return b"\0" + len(msg).to_bytes(3, "big") + msg


def tree_connect(mid: int, path: str) -> bytes:
    name = path.encode("utf-16-le")
    return header(3, mid) + struct.pack("<HHHH", 9, 0, 72, len(name)) + name


def create(mid: int, name: str, tree: int) -> bytes:
    n = name.encode("utf-16-le")
    body = struct.pack("<HBBIQQIIIIIHHII", 57, 0, 0, 2, 0, 0, 0x12019F, 0x80, 7, 5, 0x44,
                       120, len(n), 0, 0)  # fmt: skip
    return header(5, mid, tree=tree) + body + n


def test_negotiate_tree_create_and_names_on_later_messages():
    dec = Smb()
    neg = header(0, 0) + struct.pack("<HHHHI", 36, 2, 1, 0, 0x7F) + bytes(24)
    neg += struct.pack("<HH", 0x0302, 0x0311)
    neg_resp = header(0, 0, resp=True) + struct.pack("<HHH", 65, 1, 0x0311) + bytes(58)
    _, msgs = dec.parse(nb(neg), True)
    assert msgs[0].attrs["dialects"] == ["3.0.2", "3.1.1"] and msgs[0].match == 0
    m = dec.parse(nb(neg_resp), False)[1][0]
    assert (m.direction, m.attrs["dialect"], m.exception_code) == ("response", "3.1.1", None)
    m = dec.parse(nb(tree_connect(1, "\\\\fs\\ADMIN$")), True)[1][0]
    assert (m.function_code, m.function_name) == (3, "tree_connect")
    assert m.attrs["share"] == "\\\\fs\\ADMIN$"
    tc_resp = header(3, 1, resp=True, tree=5) + struct.pack("<HBBIII", 16, 1, 0, 0, 0, 0x1F01FF)
    m = dec.parse(nb(tc_resp), False)[1][0]
    assert m.attrs["share"] == "\\\\fs\\ADMIN$" and m.attrs["share_type"] == "disk"
    m = dec.parse(nb(create(2, "PSEXESVC.exe", 5)), True)[1][0]
    assert m.attrs["filename"] == "PSEXESVC.exe" and m.attrs["disposition"] == "overwrite_if"
    assert m.attrs["share"] == "\\\\fs\\ADMIN$"
    fid = bytes(range(16))
    cr = struct.pack("<HBBI", 89, 0, 0, 2) + bytes(56) + fid + bytes(8)
    dec.parse(nb(header(5, 2, resp=True, tree=5) + cr), False)
    write = header(9, 3, tree=5) + struct.pack("<HHIQ", 49, 112, 4, 0) + fid + bytes(16) + b"MZ\0\0"
    m = dec.parse(nb(write), True)[1][0]
    assert (m.function_name, m.attrs["filename"], m.attrs["length"]) == ("write", "PSEXESVC.exe", 4)


def test_compound_split_and_errors():
    first = tree_connect(7, "\\\\fs\\IPC$")
    first += bytes(-len(first) % 8)
    first = first[:20] + struct.pack("<I", len(first)) + first[24:]  # NextCommand
    chain = nb(first + create(8, "svcctl", 0))
    dec = Smb()
    assert dec.parse(chain[:50], True) == (0, [])  # partial message stays unconsumed
    used, msgs = dec.parse(chain + nb(header(13, 9)), True)  # compound + an ECHO
    assert used == len(chain) + 68
    assert [(m.function_name, m.match) for m in msgs] == [
        ("tree_connect", 7), ("create", 8), ("echo", 9),
    ]  # fmt: skip
    fail = header(1, 4, resp=True, status=0xC000006D) + struct.pack("<HHHH", 9, 0, 0, 0)
    m = Smb().parse(nb(fail), False)[1][0]
    assert (m.exception_code, m.attrs["login"], m.attrs["status_name"]) == (
        0xC000006D, "failure", "LOGON_FAILURE",
    )  # fmt: skip
    more = header(1, 4, resp=True, status=0xC0000016) + struct.pack("<HHHH", 9, 0, 0, 0)
    m = Smb().parse(nb(more), False)[1][0]
    assert m.exception_code is None and "login" not in m.attrs
    m = Smb().parse(nb(header(99, 1)), True)[1][0]
    assert (m.function_code, m.function_name) == (99, "unknown-99")
    for bad in (b"\x07\x00\x00\x04abcd", nb(b"\xfeXYZ" + bytes(60)), nb(header(0, 0)[:40])):
        with pytest.raises(DecodeError):
            Smb().parse(bad, True)


def test_smb1_negotiate_and_large_message_skipped():
    smb1 = b"\xffSMB\x72" + bytes(4) + b"\x18" + struct.pack("<H", 0xC853) + bytes(20)
    dialects = b"\x02NT LM 0.12\x00\x02SMB 2.002\x00\x02SMB 2.???\x00"
    smb1 += b"\x00" + struct.pack("<H", len(dialects)) + dialects
    m = Smb().parse(nb(smb1), True)[1][0]
    assert (m.function_code, m.function_name) == (0x172, "smb1_negotiate")
    assert m.attrs["dialects"] == ["NT LM 0.12", "SMB 2.002", "SMB 2.???"] and m.attrs["smb1"]
    big = nb(header(9, 5) + struct.pack("<HHIQ", 49, 112, 300_000, 0) + bytes(32) + bytes(300_000))
    dec = Smb()
    used, msgs = dec.parse(big[: BIG + 10], True)
    assert used == BIG + 10 and msgs == []  # decoded from its first BIG octets, the rest skipped
    rest = big[used:]
    used2, msgs = dec.parse(rest, True)
    assert used2 == len(rest) and msgs[0].attrs["truncated"] and msgs[0].attrs["length"] == 300_000


def test_probe():
    assert Smb.probe(nb(header(0, 0) + bytes(40)), True)
    assert not Smb.probe(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" + bytes(20), True)
    assert not Smb.probe(b"\x16\x03\x01\x00\xa5\x01" + bytes(60), True)
    rng = random.Random(445)
    assert not any(Smb.probe(rng.randbytes(80), True) for _ in range(5000))


def test_fuzz_only_decode_errors():
    rng = random.Random(4455)
    seeds = [nb(tree_connect(1, "\\\\a\\b")), nb(create(2, "x", 1)), nb(header(1, 3, resp=True))]
    for _ in range(3000):
        b = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        with contextlib.suppress(DecodeError):
            Smb().parse(bytes(b[: rng.randint(0, len(b))]), rng.random() < 0.5)


@pytest.mark.tshark
@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_golden_tshark() -> None:
    from collectors.apps.engine import decode_capture

    path = ROOT / "replay_pcaps" / "it_smb_psexec.pcap"
    res = decode_capture(path, protocols={"smb"})
    assert res.events and not res.weirds
    assert TSHARK is not None
    fields = ("frame.time_epoch", "ip.src", "ip.dst", "smb2.cmd", "smb2.flags.response",
              "smb2.nt_status", "smb2.tree", "smb2.filename")  # fmt: skip
    cmd = [TSHARK, "-n", "-r", str(path), "-Y", "smb2", "-T", "fields", "-E", "occurrence=f"]
    for f in fields:
        cmd += ["-e", f]
    want: list[tuple] = []
    for line in subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines():
        t, s, d, c_text, resp, status, tree, name = line.split("\t")
        c, req = int(c_text), resp in ("False", "0")
        row = (round(float(t), 6), s, d, c, not req, int(status, 16) if not req else None)
        want.append((*row, tree if req and c == 3 else None, name if req and c == 5 else None))
    got: list[tuple] = []
    for e in res.events:
        req = e.direction == "request"
        head = (round(e.ts / 1e9, 6), e.src_ip, e.dst_ip, e.function_code, not req)
        share = e.attrs["share"] if req and e.function_code == 3 else None
        fname = e.attrs["filename"] if req and e.function_code == 5 else None
        got.append((*head, e.attrs.get("status"), share, fname))
    assert got == want
    login = [e.attrs for e in res.events if "login" in e.attrs]
    assert login == [{**login[0], "login": "success", "user": "administrator"}]
    assert all(e.request_uid for e in res.events if e.direction == "response")
