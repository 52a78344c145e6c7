"""Command-shell decoder: prompts from the shell side, commands from the other, by content.

Golden: the project's scenario capture (its generator's dialogue) and the public Blaster
capture, whose bind shell on 4444 shows a cmd.exe prompt; tshark has no dissector for raw
shells, so the dialogue itself (the TCP payloads) is the reference. The Blaster capture holds
its dialogue twice (the same sequence numbers again: retransmissions), decoded once.
"""

from __future__ import annotations

import random
from pathlib import Path

import dpkt
import pytest

from collectors.apps.engine import decode_capture
from collectors.apps.shell import Shell
from replay_pcaps.scenarios.shell import BIND, REVERSE

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "pcaps"
BLASTER = SHARED / "chrissanders_packets" / "ppa1e_history_5bf3c57" / "blaster.pcap"


def test_prompt_side_is_the_shell_whoever_connected():
    d = Shell()
    used, msgs = d.parse(b"Microsoft Windows [Version 10.0.1]\r\nC:\\Users\\x>", False)
    assert used and [m.function_name for m in msgs] == ["prompt"]
    assert msgs[0].direction == "response" and msgs[0].attrs["prompt"] == "C:\\Users\\x>"
    used, msgs = d.parse(b"whoami\r\nipconfig\r\npart", True)  # two lines, one partial
    assert [m.attrs["command"] for m in msgs] == ["whoami", "ipconfig"]
    assert used == len(b"whoami\r\nipconfig\r\n")
    used, msgs = d.parse(b"output without a prompt yet", False)
    assert used == 0 and not msgs  # the shell's output waits for its prompt


def test_probe_is_content_only_and_strict():
    assert Shell.probe(b"\r\nC:\\WINNT\\system32>", False)
    assert Shell.probe(b"sh-4.2$ ", False)
    assert Shell.probe(b"uid=0(root) gid=0(root) groups=0(root)\n", False)
    assert not Shell.probe(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", True)
    assert not Shell.probe(b"SSH-2.0-OpenSSH_8.9\r\n", False)
    rng = random.Random(7)
    assert not any(Shell.probe(rng.randbytes(120), False) for _ in range(5000))


def test_scenario_dialogue_is_decoded_in_order():
    res = decode_capture(ROOT / "replay_pcaps" / "it_remote_shells.pcap")
    shell = [e for e in res.events if e.protocol == "shell"]
    commands = [e.attrs["command"] for e in shell if e.direction == "request"]
    sent = [d.decode().strip() for c, d in BIND if c] + [
        d.decode().strip() for c, d in REVERSE if c
    ]
    assert commands == sent
    prompts = [e for e in shell if e.direction == "response"]
    assert {e.src_ip for e in prompts} == {"10.1.2.20", "10.2.2.20"}  # the two HMIs
    assert len(prompts) == sum(1 for c, _ in BIND if not c) + sum(1 for c, _ in REVERSE if not c)
    assert not res.weirds


@pytest.mark.shared
def test_blaster_bind_shell():
    if not BLASTER.exists():
        pytest.skip("shared captures absent")
    res = decode_capture(BLASTER)
    with BLASTER.open("rb") as fh:
        payloads = {  # one per (direction, sequence number): retransmissions count once
            (ip.data.sport, ip.data.seq): bytes(ip.data.data)
            for _ts, buf in dpkt.pcap.Reader(fh)
            for ip in [dpkt.ethernet.Ethernet(buf).data]
            if ip.data.data
        }
    shell = [e for e in res.events if e.protocol == "shell"]
    prompts = [e for e in shell if e.function_name == "prompt"]
    assert len(payloads) == 4
    assert len(prompts) == sum(1 for p in payloads.values() if p.rstrip().endswith(b">"))
    assert all(e.src_ip == "10.234.2.116" and e.dst_ip == "10.234.0.239" for e in prompts)
    assert "start msblast.exe" in {e.attrs.get("command") for e in shell}
