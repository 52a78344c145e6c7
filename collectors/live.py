"""Live capture for ``parkwatch collect --iface``: a capture tool (``dumpcap -w -``, else
``tcpdump -U -w -``) writes classic pcap to a pipe, :meth:`LiveCapture.segments` cuts it into
segments of whole packets for the foundation reader, and the tool's closing lines give the
kernel's and its own drop counters (:func:`parse_drops`)."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from collectors.pcapio import PCAP_MAGICS
from parkwatch.errors import CaptureError


@dataclass
class Drops:
    """Counters a capture tool reports on exit."""

    tool: str
    received: int = 0
    kernel: int = 0  # dropped by the kernel (ring buffer full)
    app: int = 0  # dropped by the capture tool itself
    ifdrop: int = 0  # dropped by the interface / driver

    def text(self) -> str:
        return (
            f"{self.tool}: received {self.received}, kernel drops {self.kernel}, "
            f"capture drops {self.app}, interface drops {self.ifdrop}"
        )


_DUMPCAP = re.compile(
    r"received/dropped on interface '[^']*': (\d+)/(\d+) "
    r"\(pcap:(\d+)/dumpcap:(\d+)/flushed:(\d+)/ps_ifdrop:(\d+)\)"
)


def parse_drops(tool: str, stderr: str) -> Drops | None:
    """Drop counters from dumpcap's or tcpdump's closing lines (None if absent)."""
    if tool == "dumpcap":
        m = _DUMPCAP.search(stderr)
        if not m:
            return None
        rx, _, pcap, dc, flushed, ifd = map(int, m.groups())
        return Drops(tool, rx, pcap, dc + flushed, ifd)
    got = {k: int(v) for v, k in re.findall(r"(\d+) packets? (received by filter|dropped by "
                                            r"kernel|dropped by interface)", stderr)}  # fmt: skip
    if not got:
        return None
    return Drops(
        tool,
        got.get("received by filter", 0),
        got.get("dropped by kernel", 0),
        0,
        got.get("dropped by interface", 0),
    )


class LiveCapture:
    """A capture tool writing classic pcap to our pipe; :meth:`segments` cuts it."""

    def __init__(
        self, iface: str, bpf: str | None = None, snaplen: int | None = None, tool: str = "auto"
    ) -> None:
        self.iface = iface
        names = ("dumpcap", "tcpdump") if tool == "auto" else (tool,)
        found = [(n, shutil.which(n)) for n in names]
        name, path = next(((n, p) for n, p in found if p), (names[0], None))
        if path is None:
            raise CaptureError(
                f"no capture tool found ({' or '.join(names)})",
                hint="apt-get install tshark (brings dumpcap) or tcpdump",
            )
        self.tool = name
        if name == "dumpcap":
            cmd = [path, "-i", iface, "-P", "-w", "-", "-q"]
            cmd += ["-f", bpf] if bpf else []
            cmd += ["-s", str(snaplen)] if snaplen else []
        else:
            cmd = [path, "-i", iface, "-U", "-n", "-w", "-"]
            cmd += ["-s", str(snaplen)] if snaplen else []
            cmd += [bpf] if bpf else []
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._err: list[bytes] = []
        self._errt = threading.Thread(target=self._read_err, daemon=True)
        self._errt.start()
        self.drops: Drops | None = None

    def wait_ready(self, timeout: float = 10.0, grace: float = 0.3) -> None:
        """Until the tool says it captures (and still runs ``grace`` s later); a tool that
        exits first is a CaptureError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self._failed()
            text = self.stderr
            if "Capturing on" in text or "listening on" in text:
                time.sleep(grace)
                if self.proc.poll() is not None:
                    raise self._failed()
                return
            time.sleep(0.02)

    def _failed(self) -> CaptureError:
        self._errt.join(2)
        lines = [x for x in self.stderr.splitlines() if x.strip() and "Capturing on" not in x]
        return CaptureError(
            f"{self.tool} failed on {self.iface!r}: {' '.join(lines)[-300:]}",
            hint="check the interface name (ip link) and that you may capture (root)",
        )

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._err.append(line)

    @property
    def stderr(self) -> str:
        return b"".join(self._err).decode(errors="replace")

    def segments(
        self, stop: threading.Event, deadline: float | None = None, interval: float = 0.5
    ) -> Iterator[bytes | None]:
        """Pcap files of whole packets, at most every ``interval`` seconds (None: a quiet
        interval), until the tool exits (stopped by ``stop`` or the deadline)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf, header, cut, order = bytearray(), b"", 0, "<"
        last, stopping, eof = time.monotonic(), False, False
        while not eof:
            if not stopping and (stop.is_set() or (deadline and time.monotonic() > deadline)):
                stopping = True
                self.proc.send_signal(signal.SIGTERM)  # the tool prints its counters and ends
            if select.select([fd], [], [], 0.1)[0]:
                data = os.read(fd, 1 << 20)
                eof = not data
                buf += data
            if not header and len(buf) >= 24:
                header, order = bytes(buf[:24]), PCAP_MAGICS.get(bytes(buf[:4]), ("<", 0))[0]
                del buf[:24]
            while header and cut + 16 <= len(buf):
                (caplen,) = struct.unpack_from(order + "I", buf, cut + 8)
                if cut + 16 + caplen > len(buf):
                    break
                cut += 16 + caplen
            now = time.monotonic()
            if cut and (now - last >= interval or cut >= 4 << 20 or eof):
                yield header + bytes(buf[:cut])
                del buf[:cut]
                cut, last = 0, now
            elif now - last >= interval:
                last = now
                yield None
        code = self.proc.wait()
        self._errt.join(5)
        self.drops = parse_drops(self.tool, self.stderr)
        if not header and code not in (0, -signal.SIGTERM):
            raise self._failed()
