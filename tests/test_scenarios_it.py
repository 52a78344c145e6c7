"""The IT scenario captures (replay_pcaps.scenarios.it, it_login, it_web) dissect in tshark as
the generator intended.

Expectations come from the generator itself: the packets a scenario returns (parsed here with
scapy or by hand) and the module constants it builds them from — never from a copy of tshark's
output. Every capture must also be free of malformed packets and expert errors.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from scapy.layers.dns import DNS
from scapy.packet import Packet
from scapy.utils import wrpcap

from replay_pcaps.scenarios import it, it_login, it_web
from replay_pcaps.scenarios.it_login import payloads

TSHARK = shutil.which("tshark")
pytestmark = [
    pytest.mark.tshark,
    pytest.mark.skipif(TSHARK is None, reason="tshark not installed"),
]

SCENARIOS = {**it.SCENARIOS, **it_login.SCENARIOS, **it_web.SCENARIOS}
NAMES = sorted(SCENARIOS)


PACKETS: dict[str, list[Packet]] = {}


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each scenario generated once, written as generate() writes it."""
    out = tmp_path_factory.mktemp("it")
    for name in NAMES:
        PACKETS[name] = SCENARIOS[name]()[0]
        wrpcap(str(out / name), PACKETS[name])
    return out


def packets(name: str) -> list[Packet]:
    return PACKETS[name]


def tshark(path: Path, *args: str) -> str:
    assert TSHARK is not None
    done = subprocess.run(
        [TSHARK, "-n", "-r", str(path), *args], capture_output=True, text=True, check=True
    )
    return done.stdout


@cache
def fields(path: Path, display_filter: str, *names: str) -> list[list[str]]:
    """One row per frame matching ``display_filter``; repeated values joined by ``|``."""
    args = ["-Y", display_filter, "-T", "fields", "-E", "aggregator=|", "-E", "occurrence=a"]
    for n in names:
        args += ["-e", n]
    return [line.split("\t") for line in tshark(path, *args).splitlines()]


def unescape(s: str) -> str:
    return s.replace("\\r", "\r").replace("\\n", "\n").replace("\\t", "\t")


COMMITTED = Path(__file__).resolve().parents[1] / "replay_pcaps"


@pytest.mark.parametrize("name", NAMES)
def test_same_bytes_whatever_else_is_imported(captures, name):
    """Only the IT modules are imported here, unlike in generate(): the bytes must not care."""
    committed = COMMITTED / name
    if not committed.exists():
        pytest.skip("not generated yet")
    assert (captures / name).read_bytes() == committed.read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_no_malformed_or_error(captures, name):
    path = captures / name
    assert path.stat().st_size < 150_000
    assert tshark(path, "-Y", "_ws.malformed || _ws.expert.severity == error") == ""


@pytest.mark.parametrize("name", ["it_ftp_brute_force.pcap", "it_ftp_login.pcap"])
def test_ftp_commands_and_replies(captures, name):
    expected = []
    for to_server, data in payloads(packets(name), 21):
        line = data.decode().rstrip("\r\n")
        if to_server:
            cmd, _, arg = line.partition(" ")
            expected.append([cmd, arg, ""])
        else:
            expected.append(["", "", line[:3]])
    got = fields(
        captures / name, "ftp", "ftp.request.command", "ftp.request.arg", "ftp.response.code"
    )
    assert got == expected
    codes = [r[2] for r in got if r[2]]
    if name == "it_ftp_brute_force.pcap":
        assert codes.count("530") == len(it_login.FTP_GUESSES) - 1
        passes = [r[1] for r in got if r[0] == "PASS"]
        assert it_login.FTP_GUESSES[-1] in passes
        assert set(it_login.FTP_GUESSES) <= set(passes)
    assert codes.count("230") >= 1


def test_ssh_banners_kexinit_and_resets(captures):
    name = "it_ssh_brute_force.pcap"
    banners = [
        d.decode().rstrip("\r\n") for _, d in payloads(packets(name), 22) if d.startswith(b"SSH-")
    ]
    rows = fields(
        captures / name,
        "ssh || tcp.flags.reset == 1",
        "ip.src",
        "ssh.protocol",
        "ssh.message_code",
        "tcp.flags.reset",
    )
    assert [r[1] for r in rows if r[1]] == banners
    assert Counter(banners) == {
        it_login.SSH_SERVER_BANNER.decode().strip(): it_login.SSH_SESSIONS,
        it_login.SSH_CLIENT_BANNER.decode().strip(): it_login.SSH_SESSIONS,
    }
    assert [r[2] for r in rows if r[2]] == ["20"] * (2 * it_login.SSH_SESSIONS)
    resets = [r[0] for r in rows if r[3] in ("1", "True")]
    assert resets == [it_login.SSH_ATTACKER] * it_login.SSH_SESSIONS


def _strip_iac(data: bytes) -> tuple[bytes, list[int]]:
    """Text and IAC command bytes of a Telnet payload (three-byte option negotiations only)."""
    text, cmds, i = b"", [], 0
    while i < len(data):
        if data[i] == it_login.IAC:
            cmds.append(data[i + 1])
            i += 3
        else:
            text += data[i : i + 1]
            i += 1
    return text, cmds


def test_telnet_login_dialogue(captures):
    name = "it_telnet_ot_login.pcap"
    expected = []
    for _, data in payloads(packets(name), 23):
        text, cmds = _strip_iac(data)
        expected.append((text.decode(), cmds))
    got = fields(captures / name, "telnet", "telnet.data", "telnet.cmd")
    assert len(got) == len(expected) == len(it_login.TELNET_DIALOGUE)
    for (text, cmds), (data, cmd) in zip(expected, got, strict=True):
        assert "".join(unescape(x) for x in data.split("|")) == text
        assert [int(x) for x in cmd.split("|") if x] == cmds
    texts = [t for t, _ in expected]
    assert any(t.endswith("$ ") for t in texts)


def test_dns_queries_answers_and_nxdomain(captures):
    name = "it_dns_tunnel.pcap"
    expected = []
    for p in packets(name):
        d = p[DNS]
        q = d.qd[0]
        txt = ""
        if d.qr and d.an and d.an[0].type == 16:
            txt = "|".join(x.decode() for x in d.an[0].rdata)
        expected.append(
            [
                q.qname.decode().rstrip("."),
                str(q.qtype),
                str(d.qr),
                str(d.rcode) if d.qr else "",
                txt,
            ]
        )
    got = fields(
        captures / name,
        "dns",
        "dns.qry.name",
        "dns.qry.type",
        "dns.flags.response",
        "dns.flags.rcode",
        "dns.txt",
    )
    got = [
        [n, t, "1" if r in ("1", "True") else "0", rc if r in ("1", "True") else "", x]
        for n, t, r, rc, x in got
    ]
    assert got == expected
    tunnel = set(it_web.tunnel_names())
    txt_queries = [r[0] for r in got if r[1] == "16" and r[2] == "0"]
    assert txt_queries == it_web.tunnel_names()
    assert all(r[4] for r in got if r[0] in tunnel and r[2] == "1")
    nx = [r[0] for r in got if r[3] == "3"]
    assert nx == [n for n, a in it_web.NORMAL_LOOKUPS * 3 if a is None]


def _hellos(path: Path) -> list[list[str]]:
    return fields(
        path,
        "tls.handshake.type == 1 || tls.handshake.type == 2",
        "frame.time_epoch",
        "ip.src",
        "ip.dst",
        "tls.handshake.type",
        "tls.handshake.extensions_server_name",
        "tls.handshake.extensions_alpn_str",
        "tls.handshake.ciphersuite",
        "tls.handshake.extensions.supported_version",
    )


@pytest.mark.parametrize("name", ["it_tls_browsing.pcap", "it_tls_beacon.pcap"])
def test_tls_hellos(captures, name):
    rows = _hellos(captures / name)
    clients = [r for r in rows if r[3] == "1"]
    servers = [r for r in rows if r[3] == "2"]
    assert len(clients) == len(servers)
    repeat = 2 if name == "it_tls_browsing.pcap" else 4
    want = Counter((sni, "|".join(alpn)) for sni, _, alpn, _ in it_web.BROWSING * repeat)
    if name == "it_tls_beacon.pcap":
        want[(it_web.BEACON_SNI, "|".join(it_web.BEACON_ALPN))] += it_web.BEACON_COUNT
    assert Counter((r[4], r[5]) for r in clients) == want
    offered = "|".join(f"0x{c:04x}" for c in it_web.TLS13_CIPHERS)
    assert all(r[6] == offered and r[7] == "0x0304|0x0303" for r in clients)
    assert all(r[6] == "0x1301" and r[7] == "0x0304" for r in servers)
    servers_by_sni = {sni: srv for sni, srv, _, _ in it_web.BROWSING}
    servers_by_sni[it_web.BEACON_SNI] = it_web.C2_SRV
    assert all(r[2] == servers_by_sni[r[4]] for r in clients)


def test_tls_beacon_period(captures):
    rows = _hellos(captures / "it_tls_beacon.pcap")
    times = [float(r[0]) for r in rows if r[3] == "1" and r[2] == it_web.C2_SRV]
    assert len(times) == it_web.BEACON_COUNT
    assert {r[1] for r in rows if r[2] == it_web.C2_SRV} == {it_web.BEACON_HOST}
    first = times[0]
    for k, t in enumerate(times):  # each beacon within ±1 s of its 60 s slot
        assert abs(t - (first + 60 * k)) <= 2.0
    assert 14 * 60 <= times[-1] - first <= 16 * 60


def _http_expected(name: str) -> list[list[str]]:
    out = []
    for to_server, data in payloads(packets(name), 80):
        head = data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
        hdr = dict(h.split(": ", 1) for h in head[1:])
        if to_server:
            auth = hdr.get("Authorization", "")
            basic = base64.b64decode(auth.split(" ", 1)[1]).decode() if auth else ""
            out.append([head[0].split(" ")[0], hdr["Host"], hdr["User-Agent"], "", basic])
        else:
            out.append(["", "", "", head[0].split(" ")[1], ""])
    return out


@pytest.mark.parametrize("name", ["it_http_browsing.pcap", "it_http_basic_auth_brute.pcap"])
def test_http_requests_and_responses(captures, name):
    got = fields(
        captures / name,
        "http.request || http.response",
        "http.request.method",
        "http.host",
        "http.user_agent",
        "http.response.code",
        "http.authbasic",
    )
    assert got == _http_expected(name)
    codes = Counter(r[3] for r in got if r[3])
    if name == "it_http_browsing.pcap":
        assert codes == {"200": len(it_web.HTTP_PAGES) * 2}
    else:
        attempts = len(it_web.HTTP_ADMIN_USERS) * len(it_web.HTTP_PASSWORDS)
        assert codes == {
            "401": it_web.HTTP_LOCKOUT_AFTER,
            "403": attempts - it_web.HTTP_LOCKOUT_AFTER,
        }


def test_smb2_psexec(captures):
    name = "it_smb_psexec.pcap"
    cmds = []
    for _, data in payloads(packets(name), 445):
        assert data[4:8] == b"\xfeSMB"
        assert int.from_bytes(data[1:4], "big") == len(data) - 4
        cmds.append(str(int.from_bytes(data[16:18], "little")))
    rows = fields(
        captures / name,
        "smb2",
        "smb2.cmd",
        "smb2.flags.response",
        "smb2.nt_status",
        "smb2.dialect",
        "ntlmssp.auth.domain",
        "ntlmssp.auth.username",
        "smb2.tree",
        "smb2.filename",
        "smb2.fid",
        "smb2.write_length",
        "dcerpc.pkt_type",
        "svcctl.opnum",
        "svcctl.servicename",
        "svcctl.binarypathname",
        "svcctl.rc",
    )
    assert [r[0] for r in rows] == cmds
    requests = [r for r in rows if r[1] in ("0", "False")]
    responses = [r for r in rows if r[1] in ("1", "True")]
    assert len(requests) == len(responses)
    assert {r[2] for r in responses} == {"0x00000000", "0xc0000016"}
    want = "|".join(f"0x{d:04x}" for d in it.DIALECTS)
    assert [r[3] for r in rows if r[0] == "0"] == [want, f"0x{it.DIALECT:04x}"]
    assert [r[4:6] for r in rows if r[5]] == [[it.DOMAIN, it.USER]]
    assert [r[6] for r in requests if r[0] == "3"] == [it.SHARE_ADMIN, it.SHARE_IPC]
    creates = [r[6:8] for r in requests if r[0] == "5"]
    assert creates == [[it.SHARE_ADMIN, it.EXE_NAME], [it.SHARE_IPC, it.PIPE_NAME]]
    exe_fid = next(r[8] for r in responses if r[0] == "5")
    lengths = [int(r[9]) for r in requests if r[0] == "9" and r[8] == exe_fid]
    assert lengths == [it.EXE_CHUNK] * it.EXE_CHUNKS
    rpc = [r[11:14] for r in requests if r[10] == "0"]
    ops = [it.OPEN_SCM, it.CREATE_SERVICE, it.START_SERVICE]
    assert [r[0] for r in rpc] == [str(op) for op in ops]
    assert rpc[1][1:] == [it.SERVICE_NAME, it.SERVICE_BINARY]
    rc = [r[14] for r in responses if r[10] == "2"]
    assert rc[:2] == ["0x00000000"] * 2  # tshark 4.0 leaves StartServiceW undecoded
