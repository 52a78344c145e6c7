"""Every rule in rules/app (IT application-protocol events) replayed over a capture where it must
fire and one where it must not (same harness as tests/test_sigma_rules_ot.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scapy.packet import Packet
from scapy.utils import rdpcap

from tests.helpers import Session
from tests.rules_harness import REPLAY, check_case, moved, outputs, replay


def telnet_guessing(attempts: int) -> list[Packet]:
    """One Telnet session to the DMZ: ``attempts`` wrong passwords, each 'Login incorrect'."""
    s = Session("198.51.100.7", "10.1.3.23", 41500, 23, step=0.05)
    s.handshake().s2c("PA", b"\r\nlogin: ")
    for i in range(attempts):
        s.c2s("PA", b"admin\r\n").s2c("PA", b"Password: ").c2s("PA", f"guess{i}\r\n".encode())
        s.s2c("PA", b"\r\nLogin incorrect\r\nlogin: ")
    return s.c2s("FA").s2c("FA").c2s("A").pkts


def renamed_service(capture: str, old: str, new: str) -> Callable[[], list[Packet]]:
    """A generated capture whose SMB file name ``old`` (UTF-16, same length) reads ``new``."""
    assert len(old) == len(new)

    def make() -> list[Packet]:
        raw_old, raw_new = old.encode("utf-16-le"), new.encode("utf-16-le")
        out = []
        for p in rdpcap(str(REPLAY / f"{capture}.pcap")):
            data = bytes(p)
            if raw_old in data:
                t = p.time
                p = p.__class__(data.replace(raw_old, raw_new))
                p.time = t
            out.append(p)
        return out

    return make


CASES: list[tuple[str, Any, Any, str]] = [
    ("pw_app_dns_tunnel", "it_dns_tunnel", "sample_park", "park"),
    ("pw_app_remote_shell", "it_remote_shells", "it_telnet_ot_login", "park"),
    (
        "pw_app_remote_shell",
        "shared:chrissanders_packets/ppa1e_history_5bf3c57/blaster.pcap",
        "shared:chrissanders_packets/ratinfected.pcapng",
        "default",
    ),
    (
        "pw_app_http_session_reuse",
        "shared:chrissanders_packets/sessionhijacking.pcapng",
        "shared:chrissanders_packets/http_dvwa_sqlinjection.pcapng",
        "default",
    ),
    ("pw_app_dns_txt_volume", "it_dns_tunnel", "sample_park", "park"),
    (
        "pw_app_dns_zone_transfer",
        "shared:chrissanders_packets/dns_axfr.pcapng",
        "it_dns_tunnel",
        "park_or_default",
    ),
    ("pw_app_ftp_login_failures", "it_ftp_brute_force", "it_ftp_login", "park"),
    (
        "pw_app_ftp_login_failures",
        "shared:chrissanders_packets/ppa1e_history_5bf3c57/ftp-crack.pcap",
        "it_ftp_login",
        "park_or_default",
    ),
    ("pw_app_telnet_login_failures", lambda: telnet_guessing(5), "it_telnet_ot_login", "park"),
    (
        "pw_app_telnet_login_failures",
        lambda: telnet_guessing(5),
        lambda: telnet_guessing(2),
        "park",
    ),
    ("pw_app_http_auth_failures", "it_http_basic_auth_brute", "it_http_browsing", "park"),
    ("pw_app_telnet_login_into_ot", "it_telnet_ot_login", "it_telnet_ot_login", "park/default"),
    (
        "pw_app_ftp_login_into_ot",
        moved("it_ftp_login", "10.1.3.21", "10.1.2.21"),
        "it_ftp_login",
        "park",
    ),
    (
        "pw_app_http_basic_auth_into_ot",
        moved("it_http_basic_auth_brute", "10.1.3.80", "10.1.2.80"),
        "it_http_basic_auth_brute",
        "park",
    ),
    (
        "pw_app_http_script_agent_into_ot",
        moved("it_http_basic_auth_brute", "10.1.3.80", "10.1.2.80"),
        "it_http_basic_auth_brute",
        "park",
    ),
    (
        "pw_app_smb_admin_share_executable",
        "it_smb_psexec",
        "shared:lemay_modbus/moving_two_files_modbus_6RTU.pcap",
        "park_or_default",
    ),
    (
        "pw_app_smb_service_control",
        "it_smb_psexec",
        "shared:lemay_modbus/moving_two_files_modbus_6RTU.pcap",
        "park_or_default",
    ),
    (
        "pw_app_smb_psexec_service",
        renamed_service("it_smb_psexec", "upd7.exe", "PSEXESVC"),
        "it_smb_psexec",
        "park",
    ),
    (
        "pw_app_http_sql_injection",
        "shared:chrissanders_packets/http_dvwa_sqlinjection.pcapng",
        "shared:chrissanders_packets/http_dvwa_directorytraversal.pcapng",
        "default",
    ),
    (
        "pw_app_http_sql_injection",
        "shared:chrissanders_packets/http_dvwa_sqlinjection.pcapng",
        "shared:chrissanders_packets/sessionhijacking.pcapng",
        "default",
    ),
    (
        "pw_app_http_directory_traversal",
        "shared:chrissanders_packets/http_dvwa_directorytraversal.pcapng",
        "shared:chrissanders_packets/http_dvwa_sqlinjection.pcapng",
        "default",
    ),
    (
        "pw_app_http_directory_traversal",
        "shared:chrissanders_packets/http_dvwa_directorytraversal.pcapng",
        "it_http_browsing",
        "park_or_default",
    ),
    (
        "pw_app_http_legacy_agent_beacon",
        "shared:chrissanders_packets/cryptowall4_c2.pcapng",
        "it_http_basic_auth_brute",
        "park_or_default",
    ),
    (
        "pw_app_tls_beacon",
        "shared:stratosphere_slips/test-cc/test-cc-capture-1.pcap",
        "it_tls_browsing",
        "park_or_default",
    ),
    (
        "pw_app_tls_beacon",
        "shared:stratosphere_slips/test-cc/test-cc-capture-1.pcap",
        "it_tls_beacon",
        "park_or_default",
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
    """Each standalone rule and each correlation of rules/app has a fire/silent case above."""
    out = outputs("app")
    assert out, "no rules found in rules/app"
    assert out - {c[0] for c in CASES} == set()


def test_brute_force_alert_names_the_client() -> None:
    """Failure replies come from the server: the alert's attacker is the guessing client."""
    from tests.rules_harness import PARK, rule_id

    rid = rule_id("pw_app_ftp_login_failures")
    hits = [a for a in replay(REPLAY / "it_ftp_brute_force.pcap", PARK) if a.rule_id == rid]
    assert hits and {a.attackers for a in hits} == {("198.51.100.23",)}
    assert {t for a in hits for t in a.targets} == {"10.1.3.21"}
