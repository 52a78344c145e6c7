"""Every rule in rules/ replayed over a capture where it must fire and one where it must not.

Captures: the generated scenarios in replay_pcaps/ (park topology), the shared development set
(skipped when ../shared is absent) and small captures crafted here with scapy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet

from tests.helpers import Session
from tests.rules_harness import PACK, PARK, REPLAY, check_case, replay, rule_id
from tests.rules_harness import outputs as folder_outputs

# -- crafted captures ----------------------------------------------------------------------


def _at(p: Packet, t: float) -> Packet:
    p.time = t
    return p


def sessions(
    n: int, port: int, client: str = "198.51.100.7", server: str = "10.1.3.22"
) -> list[Packet]:
    pkts: list[Packet] = []
    for i in range(n):
        s = Session(client, server, 41000 + i, port, t0=1_700_000_000.0 + 3 * i)
        s.handshake().c2s("PA", b"user admin\r\n").s2c("PA", b"denied\r\n").c2s("FA").s2c("FA").c2s(
            "A"
        )
        pkts += s.pkts
    return pkts


def syn_flood(n: int) -> list[Packet]:
    return [
        _at(
            Ether()
            / IP(src=f"198.18.{i // 250}.{i % 250 + 1}", dst="10.1.3.80")
            / TCP(sport=1024 + i, dport=80, flags="S"),
            1_700_000_000.0 + i * 0.005,
        )
        for i in range(n)
    ]


def tcp_sweep(hosts: int) -> list[Packet]:
    return [
        _at(
            Ether()
            / IP(src="10.2.1.66", dst=f"10.1.2.{10 + i}")
            / TCP(sport=50000 + i, dport=502, flags="S"),
            1_700_000_000.0 + i * 0.1,
        )
        for i in range(hosts)
    ]


def arp_reply(ip: str, mac: str, t: float, target: str = "10.1.2.20") -> Packet:
    return _at(
        Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=2, psrc=ip, hwsrc=mac, pdst=target, hwdst="02:00:00:00:00:20"),
        t,
    )


def gratuitous(n: int) -> list[Packet]:
    mac = "02:66:66:66:66:66"
    return [
        _at(
            Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=2, psrc="10.1.2.1", hwsrc=mac, pdst="10.1.2.1"),
            1_700_000_000.0 + i,
        )
        for i in range(n)
    ]


def mac_change() -> list[Packet]:
    return [
        arp_reply("10.1.2.1", "02:00:00:00:00:01", 1_700_000_000.0),
        arp_reply("10.1.2.1", "02:66:66:66:66:66", 1_700_000_030.0),
    ]


def ot_from_outside() -> list[Packet]:
    s = Session("198.51.100.9", "10.1.2.10", 40100, 502)
    return (
        s.handshake().c2s("PA", b"\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x01").s2c("A").pkts
    )


def big_upload(payload_bytes: int) -> list[Packet]:
    s = Session("10.1.1.50", "203.0.113.77", 40200, 443, step=0.0001)
    s.handshake()
    chunk = b"x" * 1400
    for _ in range(payload_bytes // len(chunk) + 1):
        s.c2s("PA", chunk)
    return s.c2s("FA").s2c("FA").c2s("A").pkts


Crafted = Callable[[], list[Packet]]
CASES: list[tuple[str, Any, Any, str]] = [
    # rule name, capture that fires, capture that stays silent, topology ("park" / "default")
    (
        "pw_net_port_scan_vertical",
        "shared:chrissanders_packets/synscan.pcapng",
        "it_tls_browsing",
        "default",
    ),
    (
        "pw_net_port_scan_vertical",
        "shared:chrissanders_packets/ppa1e_history_5bf3c57/portscan.pcap",
        "shared:stratosphere_slips/test12-icmp-portscan.pcap",
        "default",
    ),
    ("pw_net_port_scan_vertical", "sample_park", "modbus_benign_polling", "park"),
    ("pw_net_host_sweep_horizontal", lambda: tcp_sweep(15), lambda: tcp_sweep(6), "park"),
    (
        "pw_net_syn_scan_burst",
        "shared:chrissanders_packets/synscan.pcapng",
        "shared:chrissanders_packets/ppa1e_history_5bf3c57/portscan.pcap",
        "default",
    ),
    (
        "pw_net_syn_flood",
        lambda: syn_flood(300),
        "shared:chrissanders_packets/synscan.pcapng",
        "park",
    ),
    (
        "pw_net_syn_flood_spoofed",
        "shared:chrissanders_packets/ppa1e_history_5bf3c57/dosattack.pcap",
        "shared:chrissanders_packets/synscan.pcapng",
        "default",
    ),
    (
        "pw_net_invalid_tcp_flags",
        "shared:chrissanders_packets/activeosfingerprinting.pcapng",
        "shared:chrissanders_packets/synscan.pcapng",
        "default",
    ),
    (
        "pw_net_icmp_sweep",
        "shared:stratosphere_slips/test12-icmp-portscan.pcap",
        "sample_park",
        "default",
    ),
    (
        "pw_net_arp_ip_mac_change",
        mac_change,
        "shared:chrissanders_packets/arppoison.pcapng",
        "park",
    ),
    (
        "pw_net_arp_mac_many_ips",
        "shared:chrissanders_packets/arppoison.pcapng",
        "shared:stratosphere_slips/test8-malicious.pcap",
        "default",
    ),
    ("pw_net_arp_gratuitous_storm", lambda: gratuitous(30), lambda: gratuitous(5), "park"),
    (
        "pw_net_arp_scan",
        "shared:stratosphere_slips/test8-malicious.pcap",
        "shared:chrissanders_packets/arppoison.pcapng",
        "default",
    ),
    ("pw_net_cross_enterprise_unallowed", "sample_park", "modbus_benign_polling", "park"),
    ("pw_net_ot_from_outside", ot_from_outside, "modbus_unauthorized_write", "park"),
    ("pw_net_it_to_ot_conduit_breach", "it_telnet_ot_login", "modbus_unauthorized_write", "park"),
    (
        "pw_net_dns_non_park_resolver",
        "shared:chrissanders_packets/arppoison.pcapng",
        "it_dns_tunnel",
        "park_or_default",
    ),
    (
        "pw_net_exfil_large_outbound",
        lambda: big_upload(6_000_000),
        lambda: big_upload(1_000_000),
        "park",
    ),
    ("pw_net_beacon_external", "it_tls_beacon", "it_tls_browsing", "park"),
    ("pw_it_ssh_brute_force", "it_ssh_brute_force", lambda: sessions(5, 22), "park"),
    ("pw_it_ftp_brute_force", "it_ftp_brute_force", "it_ftp_login", "park"),
    (
        "pw_it_ftp_brute_force",
        "shared:chrissanders_packets/ppa1e_history_5bf3c57/ftp-crack.pcap",
        "it_ftp_login",
        "default",
    ),
    ("pw_it_telnet_brute_force", lambda: sessions(6, 23), "it_telnet_ot_login", "park"),
    (
        "pw_it_rdp_brute_force",
        lambda: sessions(12, 3389),
        "shared:chrissanders_packets/synscan.pcapng",
        "park",
    ),
    ("pw_it_smb_brute_force", lambda: sessions(12, 445), "it_smb_psexec", "park"),
    (
        "pw_it_repeated_short_sessions",
        "shared:stratosphere_slips/test19-malicious-ssh/malicious-ssh-bruteforce.pcap",
        "it_http_browsing",
        "default",
    ),
    (
        "pw_it_repeated_short_sessions",
        lambda: sessions(35, 2222),
        lambda: sessions(35, 443),
        "park",
    ),
]


@pytest.mark.parametrize(
    ("name", "fires", "silent", "topo"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_rule_fires_and_stays_silent(
    name: str, fires: Any, silent: Any, topo: str, tmp_path: Path
) -> None:
    check_case(name, fires, silent, topo, tmp_path)


def test_every_rule_is_tested() -> None:
    """Each standalone rule and each correlation has a fire/silent case above."""
    tested = {c[0] for c in CASES}
    outputs = folder_outputs("net") | folder_outputs("it")  # rules/ot, rules/app: their tests
    assert outputs and outputs - tested == set()
    assert len(PACK) >= 40


def test_scan_alert_names_attacker_and_targets() -> None:
    alerts = replay(REPLAY / "sample_park.pcap", PARK)
    vertical = [a for a in alerts if a.rule_id == rule_id("pw_net_port_scan_vertical")]
    assert {a.attackers for a in vertical} == {("10.2.1.66",)}
    assert {t for a in vertical for t in a.targets} <= {"10.1.2.10", "10.1.2.11"}
    assert all(a.category == "recon_scan" and "T1046" in a.techniques for a in vertical)
    assert all(a.enterprises and set(a.enterprises) <= {"ent-a", "ent-b"} for a in vertical)
    assert all("dst_port" in a.reason and "src_ip=10.2.1.66" in a.reason for a in vertical)
    cross = [a for a in alerts if a.rule_id == rule_id("pw_net_cross_enterprise_unallowed")]
    assert cross and all(a.attackers == ("10.2.1.66",) for a in cross)
    assert "cross_enterprise=True" in cross[0].reason and "conduit_allowed=False" in cross[0].reason
