"""Flow-collector benchmark: packets per second per core, from pcap to flow records.

Run by hand from the repository root::

    python benchmarks/flows.py [--packets N] [--capture FILE] [--repeat 3] [--json OUT]

Without ``--capture`` it builds the deterministic synthetic park corpus (``corpus.py``) into
``benchmarks/out/`` (cached) and measures, on the same file and in one run:

1. ``parkwatch flows FILE --format jsonl --out /dev/null`` (the product);
2. a plain dpkt loop counting packets and bytes per bidirectional 5-tuple (the honest
   "simple Python" baseline; runs as ``python benchmarks/flows.py --peer dpkt FILE``);
3. ``argus -r FILE -w OUT.argus`` when installed (flows counted with ``racluster``/``ra``);
4. ``tshark -r FILE -c 100000 -T fields ...`` when installed (first 100 k packets only).

CPU time is the user + system time of the child process tree (``getrusage(RUSAGE_CHILDREN)``
deltas around each subprocess), so packets / CPU second is a per-core rate even when a
contestant uses several processes. Best of ``--repeat`` runs. A contestant that is missing or
fails is reported as "not available"; the script still exits 0.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import platform
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, cast

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT_DIR = HERE / "out"
TIME_BIN = "/usr/bin/time"
TARGET_PPS = 1_000_000
TSHARK_FIELDS = ("-T", "fields", "-e", "frame.number", "-e", "ip.src", "-e", "tcp.srcport")
STARTUP_PACKETS = 1_000


# --------------------------------------------------------------------------------------------
# Peers: code that runs in a child process


def peer_dpkt(path: str) -> int:
    """The baseline: dpkt decode, packets and bytes per bidirectional 5-tuple in a dict."""
    import dpkt

    flows: dict[tuple[Any, ...], list[int]] = {}
    packets = 0
    with _open_capture(path) as f:
        magic = f.read(4)
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        ip4, ip6, tcp, udp = dpkt.ip.IP, dpkt.ip6.IP6, dpkt.tcp.TCP, dpkt.udp.UDP
        for _ts, buf in reader:
            packets += 1
            try:
                eth = dpkt.ethernet.Ethernet(buf)
            except (dpkt.UnpackError, ValueError):
                continue
            ip = eth.data
            if isinstance(ip, ip4 | ip6):
                l4 = ip.data
                if isinstance(l4, tcp | udp):
                    a, b = (ip.src, l4.sport), (ip.dst, l4.dport)
                else:
                    a, b = (ip.src, 0), (ip.dst, 0)
                key = (ip.p, a, b) if a <= b else (ip.p, b, a)
                rec = flows.get(key)
                if rec is None:
                    flows[key] = [1, len(buf)]
                else:
                    rec[0] += 1
                    rec[1] += len(buf)
    nbytes = sum(r[1] for r in flows.values())
    print(json.dumps({"packets": packets, "flows": len(flows), "bytes": nbytes}))
    return 0


def peer_rusage(out: str, cmd: Sequence[str]) -> int:
    """Run ``cmd`` and write its CPU seconds and peak RSS (KiB) as JSON to ``out``.

    Used only when ``/usr/bin/time`` is missing; the parent then takes these numbers instead
    of its own (which would include this wrapper's interpreter start-up).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rc = subprocess.call(list(cmd))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    Path(out).write_text(json.dumps({"cpu_s": cpu, "rss_kb": after.ru_maxrss}))
    return rc


def _open_capture(path: str) -> IO[bytes]:
    if path.endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")


# --------------------------------------------------------------------------------------------
# Measurement


@dataclass
class Run:
    rc: int
    cpu_s: float
    wall_s: float
    rss_kb: int | None
    stdout: str
    stderr: str


@dataclass
class Result:
    name: str
    command: str
    available: bool = False
    packets: int = 0
    cpu_s: float | None = None
    wall_s: float | None = None
    pps_cpu: float | None = None
    pps_wall: float | None = None
    startup_cpu_s: float | None = None
    pps_cpu_net: float | None = None
    flows: int | None = None
    flows_note: str = ""
    peak_rss_mib: float | None = None
    vs_parkwatch: float | None = None
    runs_cpu_s: list[float] = field(default_factory=list)
    error: str = ""


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def measure(cmd: Sequence[str], keep_stdout: bool = False) -> Run:
    """Run ``cmd`` once; CPU from RUSAGE_CHILDREN deltas, peak RSS from /usr/bin/time."""
    with tempfile.TemporaryDirectory(prefix="pw-bench-") as tmp:
        info = Path(tmp) / "rusage"
        wrapped = os.access(TIME_BIN, os.X_OK)
        if wrapped:
            full = [TIME_BIN, "-f", "%M", "-o", str(info), *cmd]
        else:
            full = [sys.executable, str(Path(__file__).resolve()), "--peer", "rusage",
                    str(info), "--", *cmd]  # fmt: skip
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            stdout: Any = out if keep_stdout else subprocess.DEVNULL
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            try:
                rc = subprocess.run(
                    full, stdout=stdout, stderr=err, cwd=ROOT, check=False
                ).returncode
            except OSError as exc:
                return Run(127, 0.0, 0.0, None, "", str(exc))
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        rss: int | None = None
        if info.exists():
            text = info.read_text().strip()
            if wrapped:  # GNU time may print "Command exited with non-zero status N" first
                last = text.splitlines()[-1] if text else ""
                rss = int(last) if last.isdigit() else None
            elif text:
                data = json.loads(text)
                cpu, rss = float(data["cpu_s"]), int(data["rss_kb"])
        return Run(
            rc, cpu, wall, rss,
            out_path.read_text(errors="replace") if keep_stdout else "",
            err_path.read_text(errors="replace"),
        )  # fmt: skip


@dataclass
class Contestant:
    name: str
    cmd: Callable[[str], list[str]] | None  # capture path -> command; None = not installed
    packets: Callable[[int], int] = lambda n: n  # packets one run processes
    keep_stdout: bool = False
    flows: Callable[[str, Run], tuple[int | None, str]] | None = None
    why_missing: str = ""


def bench(c: Contestant, capture: str, n: int, repeat: int, tiny: tuple[str, int] | None) -> Result:
    res = Result(c.name, "")
    if c.cmd is None:
        res.error = c.why_missing or "not installed"
        return res
    cmd = c.cmd(capture)
    res.command = " ".join(cmd)
    res.packets = c.packets(n)
    best: Run | None = None
    for i in range(repeat):
        run = measure(cmd, keep_stdout=c.keep_stdout)
        print(f"  {c.name:<10} run {i + 1}/{repeat}: rc={run.rc} cpu={run.cpu_s:.3f}s "
              f"wall={run.wall_s:.3f}s", file=sys.stderr, flush=True)  # fmt: skip
        if run.rc != 0:
            res.error = f"exit {run.rc}: {_tail(run.stderr) or '(no message)'}"
            return res
        res.runs_cpu_s.append(round(run.cpu_s, 4))
        if best is None or run.cpu_s < best.cpu_s:
            best = run
    assert best is not None
    res.available = True
    res.cpu_s, res.wall_s = round(best.cpu_s, 4), round(best.wall_s, 4)
    res.peak_rss_mib = None if best.rss_kb is None else round(best.rss_kb / 1024, 1)
    if c.flows is not None:
        res.flows, res.flows_note = c.flows(capture, best)
    if best.cpu_s > 0:
        res.pps_cpu = res.packets / best.cpu_s
    if best.wall_s > 0:
        res.pps_wall = res.packets / best.wall_s
    if tiny is not None:  # fixed cost: interpreter start-up, imports, file open, teardown
        tiny_path, tiny_n = tiny
        tiny_cmd = c.cmd(tiny_path)
        runs = [measure(tiny_cmd, keep_stdout=c.keep_stdout) for _ in range(repeat)]
        ok = [r.cpu_s for r in runs if r.rc == 0]
        if ok:
            res.startup_cpu_s = round(min(ok), 4)
            work = best.cpu_s - min(ok)
            done = res.packets - min(c.packets(tiny_n), tiny_n)
            res.pps_cpu_net = done / work if work > 0 else None
    return res


# --------------------------------------------------------------------------------------------
# Contestants


def _parkwatch_base() -> list[str]:
    exe = shutil.which("parkwatch")
    return [exe] if exe else [sys.executable, "-m", "parkwatch.cli"]


def _parkwatch_flows(capture: str, _run: Run) -> tuple[int | None, str]:
    """One extra (untimed) run writing real JSON lines, to count records and packets."""
    with tempfile.TemporaryDirectory(prefix="pw-bench-") as tmp:
        out = Path(tmp) / "flows.jsonl"
        cmd = [*_parkwatch_base(), "flows", capture, "--format", "jsonl", "--out", str(out)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, check=False)
        if proc.returncode != 0 or not out.exists():
            return None, "count run failed: " + _tail(proc.stderr.decode(errors="replace"))
        records = pkts = 0
        bad = 0
        with open(out, "rb") as f:
            for line in f:
                if not line.strip():
                    continue
                records += 1
                try:
                    rec = json.loads(line)
                    pkts += int(rec.get("orig_pkts", 0)) + int(rec.get("resp_pkts", 0))
                except (ValueError, TypeError, AttributeError):
                    bad += 1
        note = f"{pkts} packets in records" if pkts else ""
        if bad:
            note += f"; {bad} lines not JSON objects"
        return records, note.strip("; ")


def _dpkt_flows(_capture: str, run: Run) -> tuple[int | None, str]:
    try:
        data = json.loads(run.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, "no summary printed"
    return int(data["flows"]), f"{data['packets']} packets read"


def _argus_out(capture: str) -> str:
    return str(OUT_DIR / (Path(capture).name + ".argus"))


def _argus_cmd(capture: str) -> list[str]:
    out = _argus_out(capture)
    Path(out).unlink(missing_ok=True)  # argus appends to an existing file
    return ["argus", "-r", capture, "-w", out]


def _ra_count(tool: str, path: str) -> int | None:
    if not shutil.which(tool):
        return None
    proc = subprocess.run([tool, "-r", path, "-n", "-s", "proto"], capture_output=True,
                          text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        return None
    lines = [x.strip() for x in proc.stdout.splitlines()]
    return sum(1 for x in lines if x and x not in ("Proto", "man"))


def _argus_flows(capture: str, _run: Run) -> tuple[int | None, str]:
    out = _argus_out(capture)
    records = _ra_count("ra", out)
    merged = _ra_count("racluster", out)
    if merged is not None:
        note = f"racluster-merged; {records} ra records (status every 5 s)" if records else ""
        return merged, note
    return records, "ra records (status records, not merged)" if records is not None else ""


def contestants(tshark_packets: int) -> list[Contestant]:
    me = str(Path(__file__).resolve())
    argus = shutil.which("argus")
    if argus is None and os.access("/usr/sbin/argus", os.X_OK):  # sbin is not on every PATH
        argus = "/usr/sbin/argus"
    tshark = shutil.which("tshark")
    has_dpkt = importlib.util.find_spec("dpkt") is not None

    def argus_cmd(capture: str) -> list[str]:
        cmd = _argus_cmd(capture)
        cmd[0] = argus or "argus"
        return cmd

    return [
        Contestant(
            "parkwatch",
            lambda cap: [
                *_parkwatch_base(),
                "flows",
                cap,
                "--format",
                "jsonl",
                "--out",
                os.devnull,
            ],
            flows=_parkwatch_flows,
        ),
        Contestant(
            "dpkt loop",
            (lambda cap: [sys.executable, me, "--peer", "dpkt", cap]) if has_dpkt else None,
            keep_stdout=True,
            flows=_dpkt_flows,
            why_missing="dpkt not installed (pip install dpkt)",
        ),
        Contestant(
            "argus",
            argus_cmd if argus else None,
            flows=_argus_flows,
            why_missing="argus not installed (apt-get install argus-server argus-client)",
        ),
        Contestant(
            "tshark",
            (lambda cap: ["tshark", "-r", cap, "-c", str(tshark_packets), *TSHARK_FIELDS])
            if tshark
            else None,
            packets=lambda n: min(n, tshark_packets),
            why_missing="tshark not installed (apt-get install tshark)",
        ),
    ]


# --------------------------------------------------------------------------------------------
# Captures


def count_packets(path: str) -> int:
    """Packets in a pcap or pcapng file (optionally .gz), by walking record headers."""
    with _open_capture(path) as f:
        head = f.read(24)
        if len(head) < 24:
            raise ValueError(f"{path}: too short to be a capture")
        magic = head[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            endian = "<"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            endian = ">"
        elif magic == b"\x0a\x0d\x0d\x0a":
            return _count_pcapng(f, head)
        else:
            raise ValueError(f"{path}: not a pcap or pcapng file")
        n = 0
        rec = struct.Struct(endian + "IIII")
        while True:
            hdr = f.read(16)
            if len(hdr) < 16:
                return n
            incl = rec.unpack(hdr)[2]
            f.seek(incl, os.SEEK_CUR)
            n += 1


def _count_pcapng(f: IO[bytes], head: bytes) -> int:
    endian = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    f.seek(0)
    n = 0
    while True:
        hdr = f.read(8)
        if len(hdr) < 8:
            return n
        btype, blen = struct.unpack(endian + "II", hdr)
        if btype == 0x0A0D0D0A:  # each section header may switch byte order
            bom = f.read(4)
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            blen = struct.unpack(endian + "I", hdr[4:])[0]
            f.seek(blen - 12, os.SEEK_CUR)
            continue
        if btype in (2, 3, 6):
            n += 1
        if blen < 12:
            raise ValueError("corrupt pcapng block length")
        f.seek(blen - 8, os.SEEK_CUR)


def build_corpus(packets: int, seed: int) -> tuple[str, dict[str, Any]]:
    """The cached synthetic corpus for (packets, seed), built when missing or stale."""
    sys.path.insert(0, str(HERE))
    import corpus

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stem = f"corpus-v{corpus.CORPUS_VERSION}-{packets}-s{seed}"
    pcap, meta = OUT_DIR / f"{stem}.pcap", OUT_DIR / f"{stem}.json"
    if pcap.exists() and meta.exists():
        summary: dict[str, Any] = json.loads(meta.read_text())
        if summary.get("bytes") == pcap.stat().st_size:
            summary["cached"] = True
            return str(pcap), summary
    print(f"building corpus {pcap} ({packets} packets) ...", file=sys.stderr, flush=True)
    summary = corpus.write_corpus(pcap, packets=packets, seed=seed)
    meta.write_text(json.dumps(summary, indent=2) + "\n")
    summary["cached"] = False
    return str(pcap), summary


# --------------------------------------------------------------------------------------------
# Report


def _fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1e6:.3f} M" if x >= 1e5 else f"{x / 1e3:.1f} k"


def _fmt(x: float | int | None, spec: str = "") -> str:
    return "-" if x is None else format(x, spec)


def table(results: Sequence[Result]) -> str:
    head = ("contestant", "packets", "pkts/s/core", "net of start-up", "CPU s", "wall s",
            "start-up s", "flows", "peak RSS MiB", "vs parkwatch")  # fmt: skip
    rows: list[tuple[str, ...]] = [head]
    for r in results:
        if not r.available:
            rows.append((r.name, *(["n/a"] * (len(head) - 1))))
            continue
        rows.append((
            r.name, str(r.packets), _fmt_rate(r.pps_cpu), _fmt_rate(r.pps_cpu_net),
            _fmt(r.cpu_s, ".3f"), _fmt(r.wall_s, ".3f"), _fmt(r.startup_cpu_s, ".3f"),
            _fmt(r.flows), _fmt(r.peak_rss_mib, ".1f"),
            "-" if r.vs_parkwatch is None else f"{r.vs_parkwatch:.3f}x",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for j, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}  # fmt: skip


# --------------------------------------------------------------------------------------------
# CLI


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["--peer", "dpkt"] and len(argv) == 3:
        return peer_dpkt(argv[2])
    if argv[:2] == ["--peer", "rusage"] and len(argv) >= 5 and argv[3] == "--":
        return peer_rusage(argv[2], argv[4:])

    ap = argparse.ArgumentParser(
        description="Measure pcap -> flow records throughput (packets/s per core) of parkwatch "
        "against a dpkt loop, argus and tshark on the same capture."
    )
    ap.add_argument("--packets", type=int, default=1_200_000, help="synthetic corpus size")
    ap.add_argument("--seed", type=int, default=7, help="synthetic corpus seed")
    ap.add_argument("--capture", help="measure this pcap/pcapng instead of the synthetic corpus")
    ap.add_argument("--repeat", type=int, default=3, help="runs per contestant; best CPU wins")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    ap.add_argument("--only", help="comma-separated subset: parkwatch,dpkt,argus,tshark")
    ap.add_argument("--tshark-packets", type=int, default=100_000,
                    help="tshark reads only this many packets (it is slow)")  # fmt: skip
    ap.add_argument("--no-startup", action="store_true",
                    help="skip the start-up cost runs on a 1,000-packet capture")  # fmt: skip
    ap.add_argument("--target", type=float, default=TARGET_PPS, help="parkwatch target pkts/s")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")

    summary: dict[str, Any] | None = None
    t0 = time.perf_counter()
    if args.capture:
        capture = str(Path(args.capture).resolve())
        if not Path(capture).is_file():
            print(f"error: {args.capture}: no such file", file=sys.stderr)
            return 2
        try:
            n = count_packets(capture)
        except (OSError, ValueError, struct.error) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        capture, summary = build_corpus(args.packets, args.seed)
        n = int(summary["packets"])
    prep_s = time.perf_counter() - t0
    tiny: tuple[str, int] | None = None
    if not args.no_startup:
        tiny_path, tiny_summary = build_corpus(STARTUP_PACKETS, args.seed)
        tiny = (tiny_path, int(tiny_summary["packets"]))

    size = Path(capture).stat().st_size
    print(f"capture: {capture}")
    print(f"  {n} packets, {size / 1e6:.1f} MB", end="")
    if summary is not None:
        print(
            f", {summary['flows']} flows ({summary['five_tuples']} distinct 5-tuples), "
            f"{summary['duration_s']} s; "
            + (
                "cached"
                if summary.get("cached")
                else f"generated in {summary.get('generate_s', prep_s):.2f} s"
            )
        )
    else:
        print()
    sys.stdout.flush()  # progress lines go to stderr

    wanted = {x.strip() for x in args.only.split(",")} if args.only else None
    results: list[Result] = []
    for c in contestants(args.tshark_packets):
        short = c.name.split()[0]
        if wanted is not None and short not in wanted:
            continue
        results.append(bench(c, capture, n, args.repeat, tiny))

    pw = next((r for r in results if r.name == "parkwatch" and r.available), None)
    for r in results:
        if pw and pw.pps_cpu and r.pps_cpu:
            r.vs_parkwatch = r.pps_cpu / pw.pps_cpu

    print()
    print(table(results))
    print()
    for r in results:
        if not r.available:
            print(f"{r.name}: not available ({r.error})")
        elif r.flows_note:
            print(f"{r.name}: flows {r.flows} ({r.flows_note})")
    if summary is not None:
        print(f"corpus: {summary['flows']} conversations, {summary['five_tuples']} distinct "
              f"bidirectional 5-tuples (ICMP without ports), idle splits "
              f"{summary['flows_idle_split']}")  # fmt: skip
    if pw is not None and pw.pps_cpu is not None:
        verdict = "PASS" if pw.pps_cpu >= args.target else "FAIL"
        net = "" if pw.pps_cpu_net is None else f", {_fmt_rate(pw.pps_cpu_net)} net of start-up"
        print(f"parkwatch: {_fmt_rate(pw.pps_cpu)} pkts/s/core{net}; "
              f"target {_fmt_rate(args.target)}: {verdict}")  # fmt: skip
    else:
        print("parkwatch: not available, no verdict")

    if args.json:
        doc = {
            "capture": capture,
            "packets": n,
            "capture_bytes": size,
            "corpus": summary,
            "repeat": args.repeat,
            "target_pps": args.target,
            "machine": machine(),
            "results": [asdict(r) for r in results],
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
