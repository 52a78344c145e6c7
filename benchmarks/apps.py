"""Decoder benchmark: flows only vs flows + protocol decoders + events, on the same corpus.

Run by hand from the repository root::

    python benchmarks/apps.py [--packets N] [--capture FILE] [--repeat 3] [--json OUT]

Measures, in one run and on the same file (the cached synthetic park corpus of
``benchmarks/flows.py`` unless ``--capture`` is given):

1. ``parkwatch flows FILE --out /dev/null`` (flows only: the baseline);
2. ``parkwatch events FILE --out /dev/null`` (decoders on, every OT/IT event written as JSON);
3. the same with the engine's fast path off (``--slow``: the per-packet reference path,
   run through ``python benchmarks/apps.py --peer slow FILE``);
4. the same without writing the events (``--unrendered``: the event columns are built and
   dropped, so the difference to 2. is the JSON rendering; ``--peer unrendered FILE``).

CPU time is user + system of the child (best of ``--repeat``), as in ``benchmarks/flows.py``.
The ratio printed is flows-only CPU / events CPU, i.e. the throughput the mixed benchmark keeps
with decoders on (project issue 3 asks >= 70 %).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from flows import ROOT, _parkwatch_base, build_corpus, measure  # noqa: E402


def peer_unrendered(path: str) -> int:
    """``parkwatch events PATH`` without the JSON: the event columns are made, then dropped."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from collectors.pipeline import FlowPipeline
    from parkwatch.config import load_settings
    from parkwatch.topology import load_topology

    settings = load_settings()
    topo = load_topology(settings.topology)
    topo.vantage(settings.vantage)
    pipe = FlowPipeline(settings, topo, apps="all")
    pipe.run([path], lambda rec: None, lambda cols: None, events=lambda cols: None)
    return 0


def peer_slow(path: str) -> int:
    """``parkwatch events PATH --out /dev/null`` with the fast path off."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from collectors.apps import engine

    real = engine.AppEngine.__init__

    def init(self: engine.AppEngine, *a: object, **k: object) -> None:
        real(self, *a, **k)  # type: ignore[arg-type]
        self.fast = None

    engine.AppEngine.__init__ = init  # type: ignore[method-assign]
    from collectors.events_cli import events_command

    events_command.main([path, "--out", os.devnull], standalone_mode=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=1_200_000, help="synthetic corpus size")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--capture", help="measure this capture instead of the synthetic corpus")
    ap.add_argument("--repeat", type=int, default=3, help="runs per contestant (best CPU)")
    ap.add_argument("--slow", action="store_true", help="also time the per-packet path alone")
    ap.add_argument(
        "--unrendered", action="store_true", help="also time decoding without the JSON output"
    )
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--peer", nargs=2, metavar=("KIND", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peer:
        peer = peer_unrendered if args.peer[0] == "unrendered" else peer_slow
        return peer(args.peer[1])
    capture = args.capture or build_corpus(args.packets, args.seed)[0]
    pw = _parkwatch_base()
    runs = {
        "flows only": [*pw, "flows", capture, "--out", os.devnull],
        "flows + decoders + events": [*pw, "events", capture, "--out", os.devnull],
    }
    if args.unrendered:
        runs["same, events not rendered"] = [
            sys.executable, str(Path(__file__).resolve()), "--peer", "unrendered", capture,
        ]  # fmt: skip
    if args.slow:
        runs["same, per-packet path only"] = [
            sys.executable, str(Path(__file__).resolve()), "--peer", "slow", capture,
        ]  # fmt: skip
    best: dict[str, float] = {}
    for name, cmd in runs.items():
        for i in range(args.repeat):
            r = measure(cmd)
            print(f"  {name:<28} run {i + 1}/{args.repeat}: rc={r.rc} cpu={r.cpu_s:.3f}s "
                  f"wall={r.wall_s:.3f}s", file=sys.stderr, flush=True)  # fmt: skip
            if r.rc != 0:
                print(f"{name} failed: {r.stderr.strip()[-400:]}", file=sys.stderr)
                return 1
            best[name] = min(best.get(name, r.cpu_s), r.cpu_s)
    base = best["flows only"]
    print(f"\ncapture: {capture}")
    print(f"{'run':<28} {'CPU s':>8} {'vs flows-only throughput':>26}")
    for name, cpu in best.items():
        print(f"{name:<28} {cpu:>8.2f} {base / cpu:>25.0%}")
    ratio = base / best["flows + decoders + events"]
    print(f"\ndecoders on keep {ratio:.0%} of flows-only throughput (target >= 70 %)")
    if args.json:
        out = {"capture": capture, "cpu_s": best, "ratio": ratio}
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
