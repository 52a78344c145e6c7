"""ParkWatch flows against tshark, an independent decoder, on the shared capture set.

1. Conversations: per address/port pair, packets and frame bytes per direction (and first/last
   packet time) agree with ``tshark -z conv,tcp|udp|ip|ipv6``; every packet is accounted for
   (capinfos' count == packets in flows + ARP + other + weird).
2. Link types: two Ethernet captures rewritten (scapy) as Linux SLL, SLL2, BSD null and raw IP
   give the same answers in tshark and ParkWatch, and the same flows as the Ethernet original;
   the same capture cut by a snaplen of 54 and 40 bytes differs only as documented below.
3. Community ID: tshark's ``communityid`` post-dissector gives every packet of a ParkWatch flow
   the flow's ``community_id``, and each ID covers exactly the packets and bytes of its flows.

Comparisons aggregate ParkWatch flows by unordered endpoint pair: tshark neither splits on idle
or active timeouts nor keeps a notion of originator, and tshark 4.0 splits port reuse into
separate rows (``[TCP Port numbers reused]``), which are summed here.

Known, intended differences (narrow adjustments, see ``WeirdFrame.lenient``, ``_same_host``
and ``restore_cut_tcp``):

- Frames whose IPv4 total length runs past the captured bytes (with wire length == captured
  length, so not a snaplen cut) are a ``bad_ipv4_total_length`` weird in ParkWatch; tshark
  dissects them anyway (expert error "IPv4 total length exceeds packet length") and counts them
  in its conversations. They are subtracted from tshark's tables only after tshark's own expert
  info confirms the same defect on that very frame (fuzz-72.pcap frames 1 and 20).
- A conversation of a host with itself (same address both sides) has no direction in tshark
  (everything lands in "->"); only its totals are compared.
- Snaplen cuts (item 2, ``test_snaplen_cut``): a frame cut inside its TCP/UDP/ICMP header is a
  ``truncated_*_header`` weird in ParkWatch (no ports, no flow key: Zeek's "truncated_header"),
  while tshark still counts it in ``conv,ip``; a TCP segment cut inside its *options* is a
  normal flow packet for ParkWatch (ports, flags, seq are in the fixed 20 bytes) but tshark's TCP
  dissector throws before its conversation tap ("[Packet size limited during capture: TCP
  truncated]"), so it is missing from ``conv,tcp`` (still in ``conv,ip``). Both are evened out
  frame by frame, each only when tshark's per-frame fields show that very situation.

tshark's byte columns are rounded down to SI units from 10 kB on ("535 kB"); such cells are
compared as intervals, and exact bytes are checked through the per-packet dump of item 3.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Loopback
from scapy.utils import PcapWriter, RawPcapReader

from parkwatch.schema import FlowRecord
from tests.helpers import SHARED, Result, run_capture

pytestmark = [pytest.mark.tshark, pytest.mark.shared]

TSHARK = shutil.which("tshark")
CAPINFOS = shutil.which("capinfos")

# ParkWatch weird name -> tshark expert message proving tshark saw the same defect on the frame
# but counted it in its conversation tables all the same (see the module docstring).
TSHARK_LENIENT = {"bad_ipv4_total_length": "IPv4 total length exceeds packet length"}
# Weirds for a transport header cut by the snaplen: tshark counts the frame at the IP layer only.
SNAP_CUT_WEIRDS = {"truncated_tcp_header", "truncated_udp_header", "truncated_icmp_header"}

START_TOL = 2e-6  # tshark prints "Relative Start" with 9 decimals
END_TOL = 6e-5  # ... and "Duration" with 4

# --------------------------------------------------------------------------------------------
# Captures


@dataclass(frozen=True)
class Cap:
    name: str
    why: str
    kinds: tuple[str, ...] = ("tcp", "udp", "ip")

    def __str__(self) -> str:
        return self.name


GOLDEN = [
    Cap("chrissanders_packets/synscan.pcapng", "pcapng, SYN scan: ~2000 one-packet flows"),
    Cap("chrissanders_packets/ppa1e_history_5bf3c57/ftp-crack.pcap", "TCP-heavy, port reuse"),
    Cap("chrissanders_packets/activeosfingerprinting.pcapng", "OS probes: odd flags, ICMP, UDP"),
    Cap("chrissanders_packets/arppoison.pcapng", "pcapng, UDP + ARP"),
    Cap("stratosphere_slips/test12-icmp-portscan.pcap", "ICMP"),
    Cap("stratosphere_slips/test-cc/test-cc-capture-1.pcap", "TCP, ports reused (tshark splits)"),
    Cap("stratosphere_slips/test-cc/test-cc-capture-2.pcap", "UDP-heavy"),
    Cap("suricata_verify/dnp3-flood/input.pcap", "raw IPv4 link type (228)"),
    Cap(
        "lemay_modbus/characterization_modbus_6RTU_with_operate.pcap",
        "Modbus/TCP, UDP, DHCPv6, ARP",
        ("tcp", "udp", "ip", "ipv6"),
    ),
    Cap("lemay_modbus/moving_two_files_modbus_6RTU.pcap", "Modbus/TCP + SMB, ARP"),
    Cap(
        "iti_ics_security_tools/quickdraw/CL5000EIP-IP_Address_Change_Attempt.pcap",
        "ENIP; ARP-heavy, non-IP L2, IGMP, ICMP, UDP",
    ),
    Cap("iti_ics_security_tools/iec104_benign/090813_diverse.pcap", "a host talking to itself"),
    Cap("iti_ics_security_tools/modbus/fuzz-72.pcap", "fuzzed: bad IPv4 total lengths"),
    Cap("iti_ics_security_tools/modbus/fuzz-1011.pcap", "fuzzed: bad IP version"),
    Cap("iti_ics_security_tools/s7/snap7_s300_everything.pcapng", "pcap named .pcapng"),
    Cap("iti_ics_security_tools/dnp3/cold_restart_and_response.pcap", "small DNP3 session"),
]

DERIVE_FROM = [
    "lemay_modbus/characterization_modbus_6RTU_with_operate.pcap",  # has IPv6 (DHCPv6) + ARP
    "chrissanders_packets/activeosfingerprinting.pcapng",
]
DERIVED_LINKTYPES = {113: "sll", 276: "sll2", 0: "null", 101: "raw"}

COMMUNITY = [
    "stratosphere_slips/test12-icmp-portscan.pcap",
    "chrissanders_packets/activeosfingerprinting.pcapng",
    "chrissanders_packets/ppa1e_history_5bf3c57/ftp-crack.pcap",
    "lemay_modbus/characterization_modbus_6RTU_with_operate.pcap",
    # ICMP echo replies only: ParkWatch flips the flow to the (unseen) requester
    "iti_ics_security_tools/quickdraw/CL5000EIP-IP_Address_Change_Attempt.pcap",
]


def _shared(name: str) -> Path:
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"{name} absent from the shared capture set")
    return path


# --------------------------------------------------------------------------------------------
# Running tshark / capinfos


class Job:
    """A tool started in the background; :meth:`out` waits and checks its exit status."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )

    def out(self) -> str:
        stdout, stderr = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, (
            f"{' '.join(self.args)} exited {self.proc.returncode}: {stderr.strip()}"
        )
        return stdout


class Tools:
    def __init__(self, config_dir: Path) -> None:
        # An empty configuration directory: tshark runs with its default preferences.
        self.env = {**os.environ, "WIRESHARK_CONFIG_DIR": str(config_dir)}

    def tshark(self, path: Path, *args: str) -> Job:
        return Job([str(TSHARK), "-n", "-r", str(path), *args], self.env)

    def conv(self, path: Path, kind: str) -> Job:
        return self.tshark(path, "-q", "-z", f"conv,{kind}")

    def capinfos(self, path: Path) -> Job:
        return Job([str(CAPINFOS), "-M", "-T", "-r", "-c", str(path)], self.env)

    def fields(self, path: Path, names: Iterable[str], *args: str) -> Job:
        cmd = [*args, "-T", "fields", "-E", "separator=/t", "-E", "aggregator=|"]
        for n in names:
            cmd += ["-e", n]
        return self.tshark(path, *cmd)


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Tools:
    if TSHARK is None or CAPINFOS is None:
        pytest.skip("tshark/capinfos not installed (Debian package tshark)")
    if not SHARED.is_dir():
        pytest.skip(f"shared capture set {SHARED} absent")
    return Tools(tmp_path_factory.mktemp("wireshark-config"))


def _capinfos_packets(job: Job) -> int:
    return int(job.out().strip().splitlines()[-1].split("\t")[1])


# --------------------------------------------------------------------------------------------
# Conversation tables

Endpoint = tuple[str, int | None]
Key = tuple[Endpoint, Endpoint]  # sorted
_UNITS = {"bytes": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_NUM = r"(\d+)\s+(\d+ \w+)"
_ROW = re.compile(rf"^(\S+)\s+<->\s+(\S+)\s+{_NUM}\s+{_NUM}\s+{_NUM}\s+([\d.]+)\s+([\d.]+)\s*$")


@dataclass
class Conv:
    """One conversation: index 0 = first endpoint of the sorted key to the second."""

    pkts: list[int] = field(default_factory=lambda: [0, 0])
    lo: list[int] = field(default_factory=lambda: [0, 0])  # bytes, lower bound
    hi: list[int] = field(default_factory=lambda: [0, 0])  # bytes, upper bound
    start: float = float("inf")  # seconds since the first frame of the capture
    end: float = float("-inf")
    trimmed: bool = False  # frames were discounted: start/end are only outer bounds

    def add(self, d: int, pkts: int, lo: int, hi: int) -> None:
        self.pkts[d] += pkts
        self.lo[d] += lo
        self.hi[d] += hi

    def span(self, start: float, end: float) -> None:
        self.start, self.end = min(self.start, start), max(self.end, end)


def _ip(text: str) -> str:
    return ipaddress.ip_address(text.strip("[]")).compressed


def _endpoint(text: str, ported: bool) -> Endpoint:
    if not ported:
        return (_ip(text), None)
    addr, port = text.rsplit(":", 1)
    return (_ip(addr), int(port))


def _bytes(cell: str) -> tuple[int, int]:
    value, unit = cell.split()
    m = _UNITS[unit]
    return int(value) * m, int(value) * m + m - 1


def _key(a: Endpoint, b: Endpoint) -> tuple[Key, bool]:
    """Sorted key and whether (a, b) was swapped to get it."""
    ka = (a[0], -1 if a[1] is None else a[1])
    kb = (b[0], -1 if b[1] is None else b[1])
    return ((b, a), True) if kb < ka else ((a, b), False)


def parse_conv(text: str, kind: str) -> dict[Key, Conv]:
    ported = kind in ("tcp", "udp")
    out: dict[Key, Conv] = defaultdict(Conv)
    rows = [line for line in text.splitlines() if " <-> " in line]
    for line in rows:
        m = _ROW.match(line)
        assert m, f"unparsed tshark conv,{kind} row: {line!r}"
        a, b = _endpoint(m.group(1), ported), _endpoint(m.group(2), ported)
        ba_pkts, ba_bytes, ab_pkts, ab_bytes = m.group(3), m.group(4), m.group(5), m.group(6)
        key, swapped = _key(a, b)
        c = out[key]
        d_ab = 1 if swapped else 0
        c.add(d_ab, int(ab_pkts), *_bytes(ab_bytes))
        c.add(1 - d_ab, int(ba_pkts), *_bytes(ba_bytes))
        start = float(m.group(9))
        c.span(start, start + float(m.group(10)))
    assert "Conversations" in text, f"no conv,{kind} table in tshark output:\n{text}"
    return dict(out)


def _flow_kind(f: FlowRecord, kind: str) -> bool:
    v6 = ":" in f.src_ip
    return {
        "tcp": f.proto == 6,
        "udp": f.proto == 17,
        "ip": not v6,
        "ipv6": v6,
    }[kind]


def pw_conv(flows: Iterable[FlowRecord], kind: str, t0_ns: int) -> dict[Key, Conv]:
    ported = kind in ("tcp", "udp")
    out: dict[Key, Conv] = defaultdict(Conv)
    for f in flows:
        if not _flow_kind(f, kind):
            continue
        a: Endpoint = (f.src_ip, f.src_port if ported else None)
        b: Endpoint = (f.dst_ip, f.dst_port if ported else None)
        key, swapped = _key(a, b)
        c = out[key]
        d = 1 if swapped else 0
        c.add(d, f.orig_pkts, f.orig_l2_bytes, f.orig_l2_bytes)
        c.add(1 - d, f.resp_pkts, f.resp_l2_bytes, f.resp_l2_bytes)
        c.span((f.start - t0_ns) / 1e9, (f.end - t0_ns) / 1e9)
    return dict(out)


def _same_host(key: Key) -> bool:
    return key[0] == key[1]


def compare_conv(pw: dict[Key, Conv], ts: dict[Key, Conv], kind: str) -> list[str]:
    bad = []
    for key in sorted(set(pw) | set(ts), key=str):
        p, t = pw.get(key), ts.get(key)
        if p is None or t is None:
            only = "tshark" if p is None else "ParkWatch"
            c = t or p
            assert c is not None
            bad.append(f"{kind} {key}: only in {only}: pkts={c.pkts} bytes={c.lo}..{c.hi}")
            continue
        if _same_host(key):  # tshark has no direction here: compare totals
            pairs = [(sum(p.pkts), sum(t.pkts), sum(p.lo), sum(t.lo), sum(t.hi))]
        else:
            pairs = [(p.pkts[d], t.pkts[d], p.lo[d], t.lo[d], t.hi[d]) for d in (0, 1)]
        for pp, tp, pb, tlo, thi in pairs:
            if pp != tp or not tlo <= pb <= thi:
                bad.append(
                    f"{kind} {key}: ParkWatch pkts={p.pkts} bytes={p.lo}, "
                    f"tshark pkts={t.pkts} bytes={t.lo}..{t.hi}"
                )
                break
        if t.trimmed:  # ParkWatch's span lies within tshark's
            off = p.start < t.start - START_TOL or p.end > t.end + END_TOL
        else:
            off = abs(p.start - t.start) > START_TOL or abs(p.end - t.end) > END_TOL
        if off:
            bad.append(
                f"{kind} {key}: ParkWatch time {p.start:.9f}..{p.end:.9f}, "
                f"tshark {t.start:.9f}..{t.end:.9f}"
            )
    return bad


# --------------------------------------------------------------------------------------------
# Frames ParkWatch reports as weird


WEIRD_FIELDS = (
    "frame.number",
    "frame.len",
    "frame.cap_len",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.nxt",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "_ws.short",
    "_ws.expert.message",
)


@dataclass
class WeirdFrame:
    frame: int
    name: str
    length: int
    caplen: int
    short: str  # tshark's "[Packet size limited during capture: … truncated]", if any
    v6: bool
    src: str | None  # None: tshark did not decode an IP header either
    dst: str | None
    sport: int | None
    dport: int | None
    proto: int | None
    expert: str

    @property
    def lenient(self) -> bool:
        """tshark counts this frame ParkWatch rejects, for a documented reason."""
        if self.src is None:
            return False  # tshark rejects it too: nothing to even out
        if self.name in SNAP_CUT_WEIRDS:  # transport header cut by the snaplen
            return self.caplen < self.length and "truncated" in self.short
        hint = TSHARK_LENIENT.get(self.name)
        return hint is not None and hint in self.expert


def weird_frames(tools: Tools, path: Path, res: Result) -> list[WeirdFrame]:
    """tshark's view of every packet ParkWatch counted as weird."""
    names = {w.frame: w.name for w in res.weird if w.layer != "capture" and w.frame > 0}
    if not names:
        return []
    flt = "frame.number in {" + ", ".join(map(str, sorted(names))) + "}"
    text = tools.fields(path, WEIRD_FIELDS, "-Y", flt, "-E", "occurrence=a").out()
    out = []
    for line in text.splitlines():
        v = {k: x.split("|")[0] for k, x in zip(WEIRD_FIELDS, line.split("\t"), strict=True)}
        expert = line.split("\t")[-1]
        v6 = not v["ip.src"] and bool(v["ipv6.src"])
        src = v["ipv6.src"] if v6 else v["ip.src"] or None
        dst = v["ipv6.dst"] if v6 else v["ip.dst"] or None
        proto = v["ipv6.nxt"] if v6 else v["ip.proto"]
        pr = int(proto) if proto else None
        ports = {6: ("tcp.srcport", "tcp.dstport"), 17: ("udp.srcport", "udp.dstport")}.get(pr or 0)
        sport = int(v[ports[0]]) if ports and v[ports[0]] else None
        dport = int(v[ports[1]]) if ports and v[ports[1]] else None
        n = int(v["frame.number"])
        length, caplen = int(v["frame.len"]), int(v["frame.cap_len"])
        out.append(
            WeirdFrame(
                n, names[n], length, caplen, v["_ws.short"], v6, src, dst, sport, dport, pr, expert
            )
        )
    assert sorted(w.frame for w in out) == sorted(names), "tshark lost some weird frames"
    return out


def discount(tables: dict[str, dict[Key, Conv]], w: WeirdFrame) -> None:
    """Take a lenient frame (see :attr:`WeirdFrame.lenient`) out of tshark's tables."""
    if w.src is None or w.dst is None:
        return
    s, d = _ip(w.src), _ip(w.dst)
    hits: list[tuple[str, Endpoint, Endpoint]] = [("ipv6" if w.v6 else "ip", (s, None), (d, None))]
    # A transport header cut by the snaplen never reaches tshark's TCP/UDP conversation tap.
    if w.name not in SNAP_CUT_WEIRDS and w.sport is not None and w.dport is not None:
        hits.append(({6: "tcp", 17: "udp"}[w.proto or 0], (s, w.sport), (d, w.dport)))
    for kind, a, b in hits:
        if kind not in tables:
            continue
        key, swapped = _key(a, b)
        c = tables[kind].get(key)
        assert c is not None, f"tshark has no conv,{kind} {key} for weird frame {w.frame}"
        c.add(1 if swapped else 0, -1, -w.length, -w.length)
        c.trimmed = True
        if sum(c.pkts) == 0:
            del tables[kind][key]


CUT_FIELDS = (
    "frame.number",
    "frame.len",
    "frame.cap_len",
    "frame.time_relative",
    "ip.src",
    "ip.dst",
    "ip.hdr_len",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.hdr_len",
)


def restore_cut_tcp(tcp: dict[Key, Conv], text: str) -> int:
    """Put back into tshark's ``conv,tcp`` the segments whose TCP options the snaplen cut.

    Only for untagged Ethernet + IPv4 (the derived snaplen captures): such a frame holds the
    fixed 20-byte TCP header but not the whole ``tcp.hdr_len``. Returns how many were restored.
    """
    n = 0
    for line in text.splitlines():
        v = dict(zip(CUT_FIELDS, line.split("\t"), strict=True))
        if not v["tcp.srcport"] or not v["tcp.hdr_len"]:
            continue  # cut before the ports: a ParkWatch weird, handled by discount()
        tcp_at = 14 + int(v["ip.hdr_len"])
        if not tcp_at + 20 <= int(v["frame.cap_len"]) < tcp_at + int(v["tcp.hdr_len"]):
            continue  # header complete: tshark tapped it
        a, b = (_ip(v["ip.src"]), int(v["tcp.srcport"])), (_ip(v["ip.dst"]), int(v["tcp.dstport"]))
        key, swapped = _key(a, b)
        c = tcp.setdefault(key, Conv())
        length = int(v["frame.len"])
        c.add(1 if swapped else 0, 1, length, length)
        t = float(v["frame.time_relative"])
        c.span(t, t)
        n += 1
    return n


# --------------------------------------------------------------------------------------------
# The whole comparison of one capture


def _first_frame_ns(path: Path) -> int:
    with RawPcapReader(str(path)) as rd:
        for _data, meta in rd:
            return _ts_ns(rd, meta)
    raise AssertionError(f"{path} has no packets")


def _ts_ns(rd: RawPcapReader, meta: object) -> int:
    if hasattr(meta, "tsresol"):  # pcapng
        return ((meta.tshigh << 32) | meta.tslow) * 10**9 // meta.tsresol
    return meta.sec * 10**9 + meta.usec * (1 if rd.nano else 1000)


def check_against_tshark(
    tools: Tools, path: Path, kinds: Iterable[str] = ("tcp", "udp", "ip"), snap_cut: bool = False
) -> tuple[Result, dict[str, int]]:
    """Compare; returns the ParkWatch result and how many frames were evened out, by kind."""
    kinds = tuple(kinds)
    jobs = {k: tools.conv(path, k) for k in kinds}
    count = tools.capinfos(path)
    cut = (
        tools.fields(path, CUT_FIELDS, "-Y", "tcp && frame.cap_len < frame.len")
        if snap_cut
        else None
    )
    res = run_capture(str(path))  # in-process, while tshark runs
    st = res.stats
    assert st is not None
    tables = {k: parse_conv(job.out(), k) for k, job in jobs.items()}
    packets = _capinfos_packets(count)

    in_flows = sum(f.orig_pkts + f.resp_pkts for f in res.flows)
    assert st.packets == packets, f"ParkWatch read {st.packets} packets, capinfos {packets}"
    assert packets == in_flows + st.arp + st.other + st.weird, (
        f"{packets} packets != {in_flows} in flows + {st.arp} ARP + {st.other} other "
        f"+ {st.weird} weird"
    )

    weirds = weird_frames(tools, path, res)
    adjusted = {"discounted": 0, "restored": 0}
    for w in weirds:
        if w.lenient:
            discount(tables, w)
            adjusted["discounted"] += 1
    if cut is not None and "tcp" in tables:
        adjusted["restored"] = restore_cut_tcp(tables["tcp"], cut.out())
    t0 = _first_frame_ns(path)
    bad = []
    for kind in kinds:
        bad += compare_conv(pw_conv(res.flows, kind, t0), tables[kind], kind)
    undocumented = [w for w in weirds if w.src is not None and not w.lenient]
    note = "".join(
        f"\n  ParkWatch weird tshark decodes: frame {w.frame} {w.name} ({w.expert})"
        for w in undocumented
    )
    assert not bad, f"{path.name}: {len(bad)} disagreements:\n  " + "\n  ".join(bad[:20]) + note
    return res, adjusted


# --------------------------------------------------------------------------------------------
# 1. Conversations of shared captures


@pytest.mark.parametrize("cap", GOLDEN, ids=str)
def test_conversations_match_tshark(tools: Tools, cap: Cap) -> None:
    res, adjusted = check_against_tshark(tools, _shared(cap.name), cap.kinds)
    assert res.flows, "no flows"
    assert adjusted["discounted"] == (2 if cap.name.endswith("fuzz-72.pcap") else 0)


def test_lenient_frames_are_the_documented_ones(tools: Tools) -> None:
    """The weird adjustment of item 1 is narrow: exactly these frames, for this reason."""
    path = _shared("iti_ics_security_tools/modbus/fuzz-72.pcap")
    res = run_capture(str(path))
    got = [(w.frame, w.name, w.lenient) for w in weird_frames(tools, path, res)]
    assert got == [(1, "bad_ipv4_total_length", True), (20, "bad_ipv4_total_length", True)]
    # fuzz-1011 frame 2 (IP version 2): both reject it, nothing to adjust.
    path = _shared("iti_ics_security_tools/modbus/fuzz-1011.pcap")
    res = run_capture(str(path))
    (w,) = weird_frames(tools, path, res)
    assert (w.frame, w.name, w.src, w.lenient) == (2, "bad_ip_version", None, False)


# --------------------------------------------------------------------------------------------
# 2. Derived link types


_IP_TYPES = {0x0800: 4, 0x86DD: 6}
_VLAN = (0x8100, 0x88A8, 0x9100)


def _derived_frames(src: Path, linktype: int) -> Iterator[tuple[bytes, int, int]]:
    """(frame, timestamp ns, wire length) of ``src`` re-encapsulated for ``linktype``
    (1: Ethernet as it was)."""
    with RawPcapReader(str(src)) as rd:
        for data, meta in rd:
            assert getattr(meta, "linktype", getattr(rd, "linktype", 1)) == 1, "not Ethernet"
            et = int.from_bytes(data[12:14], "big")
            assert et not in _VLAN, "VLAN-tagged source: pick another capture"
            payload, mac = data[14:], data[6:12]
            if linktype == 1:
                hdr = data[:14]
            elif linktype == 113:
                hdr = bytes(
                    CookedLinux(
                        pkttype=0,
                        lladdrtype=1,
                        lladdrlen=6,
                        src=mac,
                        proto=et if et >= 0x600 else 4,
                    )
                )
            elif linktype == 276:
                hdr = bytes(
                    CookedLinuxV2(
                        proto=et if et >= 0x600 else 4,
                        ifindex=1,
                        lladdrtype=1,
                        pkttype=0,
                        lladdrlen=6,
                        src=mac,
                    )
                )
            elif et not in _IP_TYPES:
                continue  # BSD null and raw IP carry only IP
            elif linktype == 0:
                hdr = bytes(Loopback(type=2 if _IP_TYPES[et] == 4 else 24))
            else:
                hdr = b""
            yield hdr + payload, _ts_ns(rd, meta), meta.wirelen - 14 + len(hdr)


def derive(src: Path, dst: Path, linktype: int, snaplen: int | None = None) -> int:
    n = 0
    with PcapWriter(str(dst), linktype=linktype, nano=True, snaplen=snaplen or 65535) as wr:
        wr.linktype = linktype  # scapy takes linktype=0 (BSD null) for "unset"
        wr.write_header(None)
        for frame, ts, wirelen in _derived_frames(src, linktype):
            cut = frame[:snaplen] if snaplen else frame
            wr.write_packet(cut, sec=ts // 10**9, usec=ts % 10**9, wirelen=wirelen)
            n += 1
    return n


@cache
def _original(path: Path) -> Result:
    return run_capture(str(path))


@pytest.mark.parametrize("linktype", list(DERIVED_LINKTYPES), ids=DERIVED_LINKTYPES.get)
@pytest.mark.parametrize("name", DERIVE_FROM)
def test_derived_link_types(tools: Tools, tmp_path: Path, name: str, linktype: int) -> None:
    src = _shared(name)
    dst = tmp_path / f"{Path(name).stem}.{DERIVED_LINKTYPES[linktype]}.pcap"
    n = derive(src, dst, linktype)
    with RawPcapReader(str(dst)) as rd:
        assert rd.linktype == linktype
    head = tools.capinfos(dst)
    kinds = ("tcp", "udp", "ip", "ipv6")
    res, adjusted = check_against_tshark(tools, dst, kinds)
    assert _capinfos_packets(head) == n
    assert adjusted == {"discounted": 0, "restored": 0}

    # Same flows as from the Ethernet original, frame bytes short by the header difference.
    orig = _original(src)
    assert orig.stats is not None and res.stats is not None
    assert res.stats.weird == orig.stats.weird
    keep = 14 - {113: 16, 276: 20, 0: 4, 101: 0}[linktype]
    if linktype in (113, 276):
        assert (res.stats.arp, res.stats.other) == (orig.stats.arp, orig.stats.other)

    def view(f: FlowRecord, shift: int) -> tuple[object, ...]:
        return (
            f.src_ip,
            f.src_port,
            f.dst_ip,
            f.dst_port,
            f.proto,
            f.start,
            f.end,
            f.community_id,
            f.conn_state,
            f.history,
            f.orig_pkts,
            f.resp_pkts,
            f.orig_bytes,
            f.resp_bytes,
            f.orig_payload_bytes,
            f.resp_payload_bytes,
            f.orig_l2_bytes - shift * f.orig_pkts,
            f.resp_l2_bytes - shift * f.resp_pkts,
        )

    want = {f.uid: view(f, keep) for f in orig.flows}
    got = {f.uid: view(f, 0) for f in res.flows}
    assert got == want


# 54 = 14 + 20 + 20: fixed TCP header kept, options cut; 40 = 14 + 20 + 6: transport headers cut
@pytest.mark.parametrize("snaplen", [54, 40], ids=["tcp-options-cut", "headers-cut"])
def test_snaplen_cut(tools: Tools, tmp_path: Path, snaplen: int) -> None:
    """An Ethernet capture cut to ``snaplen`` bytes (wire lengths kept): the documented
    differences of the module docstring, and nothing else."""
    src = _shared("chrissanders_packets/activeosfingerprinting.pcapng")
    dst = tmp_path / f"cut{snaplen}.pcap"
    derive(src, dst, 1, snaplen)
    res, adjusted = check_against_tshark(tools, dst, snap_cut=True)
    assert res.stats is not None
    if snaplen == 54:  # 14 + 20 + 20: fixed TCP header kept, options cut
        # all 40 TCP segments of this capture carry options: tshark's conv,tcp is empty
        assert adjusted == {"discounted": 0, "restored": 40}, adjusted
        assert res.stats.weird == 0

        # nothing lost: the flows of the uncut original, frame bytes from the wire length
        def counts(flows: list[FlowRecord]) -> list[tuple[str, int, int, int, int]]:
            return sorted(
                (f.uid, f.orig_pkts, f.resp_pkts, f.orig_l2_bytes, f.resp_l2_bytes) for f in flows
            )

        assert counts(res.flows) == counts(_original(src).flows)
    else:  # 14 + 20 + 6: ports at most
        assert adjusted["restored"] == 0 and adjusted["discounted"] == res.stats.weird > 0
        assert {w.name for w in res.weird} <= SNAP_CUT_WEIRDS


# --------------------------------------------------------------------------------------------
# 3. Community ID

CID_FIELDS = (
    "frame.number",
    "frame.len",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.len",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.nxt",
    "ipv6.plen",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.len",
    "udp.srcport",
    "udp.dstport",
    "udp.length",
    "icmp.type",
    "icmp.code",
    "icmpv6.type",
    "icmpv6.code",
    "communityid",
)

# Request/reply ICMP types (Community ID spec), written out here rather than taken from
# collectors.communityid so that the test does not share the code under test.
_ECHO4 = {8: 0, 13: 14, 15: 16, 10: 9, 17: 18}
_ECHO6 = {128: 129, 133: 134, 135: 136, 130: 131, 144: 145, 139: 140}
ICMP_COUNTERPART = {
    1: {**_ECHO4, **{v: k for k, v in _ECHO4.items()}},
    58: {**_ECHO6, **{v: k for k, v in _ECHO6.items()}},
}
FlowKey = tuple[object, ...]


def tshark_ids(text: str, skip: set[int]) -> tuple[dict[str, list[int]], dict[FlowKey, set[str]]]:
    """Per Community ID: [packets, frame bytes, IP bytes, TCP/UDP payload bytes]; and per
    flow key (TCP/UDP: proto + sorted endpoints; ICMP: proto, src, dst, type, code) the IDs
    its packets carry. Frames in ``skip`` are left out."""
    per_id: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    ids_of: dict[FlowKey, set[str]] = defaultdict(set)
    for line in text.splitlines():
        v = dict(zip(CID_FIELDS, line.split("\t"), strict=True))
        cid = v["communityid"]
        if not cid or int(v["frame.number"]) in skip:
            continue
        v6 = not v["ip.src"]
        s, d = _ip(v["ipv6.src" if v6 else "ip.src"]), _ip(v["ipv6.dst" if v6 else "ip.dst"])
        proto = int(v["ipv6.nxt" if v6 else "ip.proto"])
        payload = 0
        if proto in (6, 17):
            pre = "tcp" if proto == 6 else "udp"
            a, b = (s, int(v[f"{pre}.srcport"])), (d, int(v[f"{pre}.dstport"]))
            ids_of[(proto, *_key(a, b)[0])].add(cid)
            payload = int(v["tcp.len"]) if proto == 6 else int(v["udp.length"]) - 8
        elif proto in (1, 58):
            pre = "icmp" if proto == 1 else "icmpv6"
            ids_of[(proto, s, d, int(v[f"{pre}.type"]), int(v[f"{pre}.code"]))].add(cid)
        ip_bytes = int(v["ipv6.plen"]) + 40 if v6 else int(v["ip.len"])
        for i, x in enumerate((1, int(v["frame.len"]), ip_bytes, payload)):
            per_id[cid][i] += x
    return dict(per_id), dict(ids_of)


@pytest.mark.parametrize("name", COMMUNITY)
def test_community_id_matches_tshark(tools: Tools, name: str) -> None:
    path = _shared(name)
    job = tools.fields(path, CID_FIELDS, "--enable-protocol", "communityid", "-E", "occurrence=f")
    res = run_capture(str(path))
    lenient = {w.frame for w in weird_frames(tools, path, res) if w.lenient}
    per_id, ids_of = tshark_ids(job.out(), lenient)

    pw_id: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    bad = []
    for f in res.flows:
        ported = f.proto in (6, 17)
        payload = f.orig_payload_bytes + f.resp_payload_bytes if ported else 0
        total = (f.orig_pkts + f.resp_pkts, f.orig_l2_bytes + f.resp_l2_bytes)
        for i, x in enumerate((*total, f.orig_bytes + f.resp_bytes, payload)):
            pw_id[f.community_id][i] += x
        if ported:
            k: FlowKey = (f.proto, *_key((f.src_ip, f.src_port), (f.dst_ip, f.dst_port))[0])
            got = ids_of.get(k, set())
        elif f.proto in (1, 58):
            # src_port/dst_port are type and code; a request/reply type covers both directions
            # (a flow flipped because only replies were seen names the request type).
            k = (f.proto, f.src_ip, f.dst_ip, f.src_port, f.dst_port)
            got = set(ids_of.get(k, ()))
            back = ICMP_COUNTERPART[f.proto].get(f.src_port)
            if back is not None:
                got |= ids_of.get((f.proto, f.dst_ip, f.src_ip, back, f.dst_port), set())
        else:
            continue
        if got != {f.community_id}:
            bad.append(f"{k}: ParkWatch {f.community_id}, tshark {got}")
    assert not bad, "\n".join(bad[:20])
    assert res.flows
    diff = {c: (pw_id.get(c), per_id.get(c)) for c in set(pw_id) | set(per_id)}
    diff = {c: pt for c, pt in diff.items() if pt[0] != pt[1]}
    assert not diff, (
        "per Community ID [packets, frame bytes, IP bytes, payload], ParkWatch vs tshark: "
        + str(sorted(diff.items())[:10])
    )
