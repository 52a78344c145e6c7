"""IT web protocols: DNS (normal and tunnelling), TLS (browsing and C2 beaconing), HTTP.

Captures:

- ``it_dns_tunnel.pcap``: normal lookups at the park resolver (A answers, NXDOMAIN for one
  name) and a DNS tunnel — TXT queries with long base32 subdomains of one external domain,
  TXT answers.
- ``it_tls_browsing.pcap``: benign TLS 1.3 sessions (ClientHello with SNI and ALPN, ServerHello,
  ChangeCipherSpec, application data). TLS records are built by hand (RFC 8446 layouts).
- ``it_tls_beacon.pcap``: one workstation opens a short TLS session to the same Internet
  address every 60 s ± 1 s for 15 minutes (C2 beaconing), next to some benign browsing.
- ``it_http_browsing.pcap``: benign HTTP/1.1 GETs with Host and User-Agent, 200 answers.
- ``it_http_basic_auth_brute.pcap``: password guessing on a DMZ web admin page with HTTP basic
  authentication: 401 answers, then 403 once the server locks the account.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from typing import Any

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from replay_pcaps.craft import Conversation
from replay_pcaps.scenarios.it_login import EWS, IT_WS, attack, by_time, labels, mac

DNS_SRV = "10.0.0.53"  # park DNS (park.yaml)
WEB_SRV = "93.184.216.34"
CDN_SRV = "151.101.65.140"
C2_SRV = "203.0.113.200"
DMZ_WEB = "10.1.3.80"  # Alpha DMZ web server with a basic-auth admin page
HTTP_ATTACKER = "10.2.1.66"  # Beta Chemicals IT host
BEACON_HOST = "10.1.1.88"


# --- DNS ---------------------------------------------------------------------------------

T_DNS = 1_763_940_000.0
TUNNEL_DOMAIN = "t.cdn-telemetry.example"
TUNNEL_QUERIES = 60
NORMAL_LOOKUPS: list[tuple[str, str | None]] = [
    ("www.example.com", "93.184.216.34"),
    ("intranet.alpha-steel.example", "10.1.1.10"),
    ("updates.vendor.example", "198.51.100.10"),
    ("wpad.alpha-steel.example", None),  # NXDOMAIN
    ("historian.alpha-steel.example", "10.1.3.5"),
]
"""(name, A record or None for NXDOMAIN) looked up by the engineering workstation."""


def dns_exchange(
    t: float, client: str, sport: int, qid: int, query: DNS, answer: DNS
) -> list[Packet]:
    q = (
        Ether(src=mac(client), dst=mac(DNS_SRV))
        / IP(src=client, dst=DNS_SRV, ttl=64, id=qid)
        / UDP(sport=sport, dport=53)
        / query
    )
    r = (
        Ether(src=mac(DNS_SRV), dst=mac(client))
        / IP(src=DNS_SRV, dst=client, ttl=64, id=qid ^ 0x5A5A)
        / UDP(sport=53, dport=sport)
        / answer
    )
    q.time, r.time = t, t + 0.012
    return [q, r]


def tunnel_names() -> list[str]:
    """The tunnel's query names: ``<base32 chunk>.<base32 chunk>.<seq>.TUNNEL_DOMAIN``."""
    rng = random.Random(4071)
    names = []
    for k in range(TUNNEL_QUERIES):
        data = base64.b32encode(rng.randbytes(60)).decode().rstrip("=").lower()
        names.append(f"{data[:48]}.{data[48:]}.{k:04x}.{TUNNEL_DOMAIN}")
    return names


def dns_tunnel() -> tuple[list[Packet], dict[str, Any]]:
    rng = random.Random(4072)
    out: list[Packet] = []
    for k, (name, addr) in enumerate(NORMAL_LOOKUPS * 3):
        t = T_DNS + 1 + 20 * k
        q = DNS(id=0x1000 + k, rd=1, qd=DNSQR(qname=name, qtype="A"))
        if addr is None:
            r = DNS(id=0x1000 + k, qr=1, rd=1, ra=1, rcode=3, qd=DNSQR(qname=name, qtype="A"))
        else:
            r = DNS(
                id=0x1000 + k,
                qr=1,
                rd=1,
                ra=1,
                qd=DNSQR(qname=name, qtype="A"),
                an=DNSRR(rrname=name, type="A", rdata=addr, ttl=300),
            )
        out += dns_exchange(t, EWS, 50300 + k, 0x1000 + k, q, r)
    tunnel: list[Packet] = []
    t = T_DNS + 30
    for k, name in enumerate(tunnel_names()):
        qid = 0x7000 + k
        q = DNS(id=qid, rd=1, qd=DNSQR(qname=name, qtype="TXT"))
        reply = base64.b64encode(rng.randbytes(90))
        r = DNS(
            id=qid,
            qr=1,
            rd=1,
            ra=1,
            qd=DNSQR(qname=name, qtype="TXT"),
            an=DNSRR(rrname=name, type="TXT", rdata=[reply], ttl=0),
        )
        tunnel += dns_exchange(t, IT_WS, 30000 + 13 * k, qid, q, r)
        t += 2 + rng.random()
    atk = attack(
        "dns-tunnel-1", "c2", ["T1071.004", "T1572"], tunnel, [IT_WS], [DNS_SRV], "unknown"
    )
    return by_time(out + tunnel), labels(
        f"DNS tunnel: {TUNNEL_QUERIES} TXT queries with long high-entropy subdomains of "
        f"{TUNNEL_DOMAIN} from an Alpha IT workstation through the park resolver, amid normal "
        "A lookups of the engineering workstation (one name answered NXDOMAIN).",
        [atk],
        "attackers is the implant host (the only sender of the tunnel); the target listed is "
        "the park resolver that relays it, since the tunnel's own server never appears.",
    )


# --- TLS ---------------------------------------------------------------------------------

T_TLS = 1_763_950_000.0
T_BEACON = 1_763_960_000.0
TLS13_CIPHERS = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xCCA9, 0xCCA8]
BROWSING: list[tuple[str, str, list[str], str]] = [
    ("www.example.com", WEB_SRV, ["h2", "http/1.1"], "h2"),
    ("cdn.example.net", CDN_SRV, ["h2", "http/1.1"], "h2"),
    ("updates.vendor.example", WEB_SRV, ["http/1.1"], "http/1.1"),
]
"""(SNI, server address, client ALPN offer, protocol chosen) of the benign sessions."""
BEACON_SNI = "static.cloud-metrics.example"
BEACON_ALPN = ["http/1.1"]
BEACON_COUNT = 16  # t = 0, 60, ..., 900 s


def _u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def _ext(kind: int, body: bytes) -> bytes:
    return _u16(kind) + _u16(len(body)) + body


def _vec8(b: bytes) -> bytes:
    return bytes([len(b)]) + b


def _vec16(b: bytes) -> bytes:
    return _u16(len(b)) + b


def tls_record(ctype: int, body: bytes, version: int = 0x0303) -> bytes:
    return bytes([ctype]) + _u16(version) + _vec16(body)


def _handshake(htype: int, body: bytes) -> bytes:
    return bytes([htype]) + len(body).to_bytes(3, "big") + body


def client_hello(rng: random.Random, sni: str, alpn: list[str]) -> bytes:
    """A TLS 1.3 ClientHello record with SNI, ALPN, versions, groups and a key share."""
    exts = (
        _ext(0x0000, _vec16(b"\0" + _vec16(sni.encode())))  # server_name
        + _ext(0x000A, _vec16(_u16(0x001D) + _u16(0x0017)))  # supported_groups
        + _ext(0x000B, _vec8(b"\0"))  # ec_point_formats
        + _ext(0x000D, _vec16(b"".join(_u16(s) for s in (0x0403, 0x0804, 0x0401))))
        + _ext(0x0010, _vec16(b"".join(_vec8(p.encode()) for p in alpn)))  # ALPN
        + _ext(0x002B, _vec8(_u16(0x0304) + _u16(0x0303)))  # supported_versions
        + _ext(0x0033, _vec16(_u16(0x001D) + _vec16(rng.randbytes(32))))  # key_share
    )
    body = (
        _u16(0x0303)
        + rng.randbytes(32)
        + _vec8(rng.randbytes(32))
        + _vec16(b"".join(_u16(c) for c in TLS13_CIPHERS))
        + _vec8(b"\0")
        + _vec16(exts)
    )
    return tls_record(22, _handshake(1, body), version=0x0301)


def server_hello(rng: random.Random, cipher: int = 0x1301) -> bytes:
    """A TLS 1.3 ServerHello record, then ChangeCipherSpec (middlebox compatibility)."""
    exts = _ext(0x002B, _u16(0x0304)) + _ext(0x0033, _u16(0x001D) + _vec16(rng.randbytes(32)))
    body = (
        _u16(0x0303)
        + rng.randbytes(32)
        + _vec8(rng.randbytes(32))
        + _u16(cipher)
        + b"\0"
        + _vec16(exts)
    )
    return tls_record(22, _handshake(2, body)) + tls_record(20, b"\1")


def tls_session(
    out: list[Packet],
    rng: random.Random,
    client: str,
    server: str,
    cport: int,
    t: float,
    sni: str,
    alpn: list[str],
    exchanges: list[tuple[int, int]],
) -> float:
    """One TLS 1.3 connection: hello exchange, then (request, response) sizes of encrypted
    application data; returns the time of its last packet."""
    c = Conversation(out, client, server, cport, 443)
    t = c.open(t)
    c.send(t, True, "PA", client_hello(rng, sni, alpn))
    c.send(t + 0.02, False, "PA", server_hello(rng) + tls_record(23, rng.randbytes(1100)))
    c.send(t + 0.021, True, "A")
    finished = tls_record(20, b"\1") + tls_record(23, rng.randbytes(53))
    c.send(t + 0.022, True, "PA", finished)
    t += 0.03
    for req, resp in exchanges:
        c.send(t, True, "PA", tls_record(23, rng.randbytes(req)))
        c.send(t + 0.04, False, "PA", tls_record(23, rng.randbytes(resp)))
        c.send(t + 0.041, True, "A")
        t += 0.3
    c.close(t)
    return t + 0.0008


def tls_browsing() -> tuple[list[Packet], dict[str, Any]]:
    rng = random.Random(8446)
    out: list[Packet] = []
    for k, (sni, server, alpn, _) in enumerate(BROWSING * 2):
        exchanges = [(300 + 40 * j, 900 + 300 * j) for j in range(3)]
        tls_session(out, rng, EWS, server, 44300 + k, T_TLS + 1 + 9 * k, sni, alpn, exchanges)
    return by_time(out), labels(
        "Benign HTTPS browsing of the engineering workstation (TLS 1.3, SNI and ALPN).",
        [],
        "Handshakes after ServerHello and all application data are random bytes in TLS "
        "application-data records, as encrypted TLS 1.3 traffic looks on the wire.",
    )


def tls_beacon() -> tuple[list[Packet], dict[str, Any]]:
    rng = random.Random(1071)
    out: list[Packet] = []
    for k, (sni, server, alpn, _) in enumerate(BROWSING * 4):
        exchanges = [(350, 1500 + 100 * k)]
        tls_session(out, rng, EWS, server, 44400 + k, T_BEACON + 13 + 61 * k, sni, alpn, exchanges)
    beacons: list[Packet] = []
    for k in range(BEACON_COUNT):
        t = T_BEACON + 5 + 60 * k + rng.uniform(-1.0, 1.0)
        tls_session(
            beacons, rng, BEACON_HOST, C2_SRV, 49700 + k, t, BEACON_SNI, BEACON_ALPN, [(180, 96)]
        )
    atk = attack(
        "tls-beacon-1",
        "c2",
        ["T1071.001", "T1573.002"],
        beacons,
        [BEACON_HOST],
        [C2_SRV],
        "unknown",
    )
    return by_time(out + beacons), labels(
        f"C2 beaconing over TLS: {BEACON_HOST} connects to {C2_SRV} (SNI {BEACON_SNI}) every "
        "60 s ± 1 s for 15 minutes, each a short session with one small request and reply; the "
        "engineering workstation browses the web meanwhile.",
        [atk],
        "attackers is the implant host that sends the beacons; targets the C2 server.",
    )


# --- HTTP --------------------------------------------------------------------------------

T_HTTP = 1_763_970_000.0
T_HTTP_BRUTE = 1_763_980_000.0
UA_BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
UA_HYDRA = "Mozilla/4.0 (Hydra)"
HTTP_PAGES: list[tuple[str, str, str]] = [
    ("www.example.com", "/", "text/html"),
    ("www.example.com", "/style.css", "text/css"),
    ("www.example.com", "/firmware.bin", "application/octet-stream"),
    ("intranet.alpha-steel.example", "/shifts/today", "text/html"),
    ("updates.vendor.example", "/release-notes.txt", "text/plain"),
]
"""(Host, path, content type) fetched with 200 OK."""
HTTP_ADMIN_USERS = ["admin", "administrator", "root", "webadmin"]
HTTP_PASSWORDS = ["admin", "password", "123456", "alpha", "changeme"]
HTTP_LOCKOUT_AFTER = 12
"""Attempts answered 401; every later one is answered 403 (account locked)."""


def http_request(host: str, path: str, ua: str, extra: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\n"
        f"Accept: */*\r\n{extra}Connection: keep-alive\r\n\r\n"
    ).encode()


def http_response(code: int, reason: str, ctype: str, body: bytes, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {code} {reason}\r\nServer: nginx/1.24.0\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def http_browsing() -> tuple[list[Packet], dict[str, Any]]:
    rng = random.Random(9110)
    out: list[Packet] = []
    servers = {"www.example.com": WEB_SRV, "updates.vendor.example": WEB_SRV}
    for k, (host, path, ctype) in enumerate(HTTP_PAGES * 2):
        c = Conversation(out, EWS, servers.get(host, "10.1.1.10"), 45000 + k, 80)
        t = c.open(T_HTTP + 1 + 4 * k)
        c.send(t, True, "PA", http_request(host, path, UA_BROWSER))
        body = rng.randbytes(600) if ctype == "application/octet-stream" else b"x" * (200 + 50 * k)
        c.send(t + 0.03, False, "PA", http_response(200, "OK", ctype, body))
        c.send(t + 0.031, True, "A")
        c.close(t + 0.5)
    return by_time(out), labels(
        "Benign HTTP/1.1 browsing of the engineering workstation (GET, 200 OK).", [], ""
    )


def http_basic_auth_brute() -> tuple[list[Packet], dict[str, Any]]:
    out: list[Packet] = []
    page = b"<html><body>401 Authorization Required</body></html>"
    denied = b"<html><body>403 Forbidden: account locked</body></html>"
    t = T_HTTP_BRUTE + 1
    attempt = 0
    for u, user in enumerate(HTTP_ADMIN_USERS):
        c = Conversation(out, HTTP_ATTACKER, DMZ_WEB, 46000 + u, 80)
        t = c.open(t)
        for password in HTTP_PASSWORDS:
            cred = base64.b64encode(f"{user}:{password}".encode()).decode()
            auth = f"Authorization: Basic {cred}\r\n"
            c.send(t, True, "PA", http_request(DMZ_WEB, "/admin/", UA_HYDRA, auth))
            if attempt < HTTP_LOCKOUT_AFTER:
                challenge = 'WWW-Authenticate: Basic realm="Alpha DMZ admin"\r\n'
                resp = http_response(401, "Unauthorized", "text/html", page, challenge)
            else:
                resp = http_response(403, "Forbidden", "text/html", denied)
            c.send(t + 0.005, False, "PA", resp)
            c.send(t + 0.006, True, "A")
            attempt += 1
            t += 0.4
        c.close(t)
        t += 0.5
    atk = attack(
        "http-basic-brute-1",
        "brute_force",
        ["T1110.001"],
        out,
        [HTTP_ATTACKER],
        [DMZ_WEB],
        "defended",
    )
    return by_time(out), labels(
        "HTTP basic-auth password guessing from Beta Chemicals' IT zone against Alpha "
        f"Steel's DMZ web admin page: {HTTP_LOCKOUT_AFTER} attempts get 401, the rest 403 "
        "(account locked); none succeeds.",
        [atk],
        "Keep-alive connections, one per user name, five passwords each.",
    )


SCENARIOS: dict[str, Callable[[], tuple[list[Packet], dict[str, Any] | None]]] = {
    "it_dns_tunnel.pcap": dns_tunnel,
    "it_tls_browsing.pcap": tls_browsing,
    "it_tls_beacon.pcap": tls_beacon,
    "it_http_browsing.pcap": http_browsing,
    "it_http_basic_auth_brute.pcap": http_basic_auth_brute,
}
