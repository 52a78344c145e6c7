"""Detection quality: replay every labelled capture and print recall and precision per category.

    python benchmarks/quality.py                 # ../shared/pcaps and replay_pcaps/
    python benchmarks/quality.py --json out.json --set generated

Each capture is replayed on its own with the shipped rule pack (``parkwatch replay``'s code
path: collectors -> decoders -> detectors -> correlator); shared captures use the default
topology (RFC 1918 internal, one enterprise), generated ones ``replay_pcaps/park.yaml`` with
vantage ``park-gw``. Printed: per category the attacks, attack recall, category recall, and the
incident precision and false incidents per hour of each set — the numbers the README reports.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from correlator.replay import find_captures, labels_for, replay_capture, scorecard  # noqa: E402
from parkwatch.config import load_settings  # noqa: E402
from parkwatch.topology import default_topology, load_topology  # noqa: E402

SETS = {
    "shared": (ROOT.parent / "shared" / "pcaps", None, "default"),
    "generated": (ROOT / "replay_pcaps", ROOT / "replay_pcaps" / "park.yaml", "park-gw"),
}


def run_set(name: str) -> dict[str, Any] | None:
    root, topo_path, vantage = SETS[name]
    if not root.is_dir():
        print(f"{name}: {root} not found, skipped")
        return None
    topo = load_topology(topo_path) if topo_path else default_topology()
    settings = load_settings(vantage=vantage, topology=topo_path)
    results = []
    t0 = time.perf_counter()
    for cap in find_captures([root]):
        lab = labels_for(cap, None)
        if lab is None:
            continue
        results.append(replay_capture(cap, lab, settings, topo, None))
    card = scorecard(results)
    card["seconds"] = round(time.perf_counter() - t0, 1)
    return card


def show(name: str, card: dict[str, Any]) -> None:
    t = card["total"]
    print(f"\n== {name}: {card['labelled_captures']} labelled captures, {t['attacks']} attacks, "
          f"{card['seconds']} s")  # fmt: skip
    print(f"{'category':26} {'attacks':>7} {'recall':>7} {'cat.recall':>10}")
    for cat, row in t["per_category"].items():
        rec = "-" if row["recall"] is None else f"{row['recall']:.2f}"
        crec = "-" if row["category_recall"] is None else f"{row['category_recall']:.2f}"
        print(f"{cat:26} {row['attacks']:>7} {rec:>7} {crec:>10}")
    print(
        f"{'all':26} {t['attacks']:>7} {t['attack_recall'] or 0:>7.2f} "
        f"{t['category_recall'] or 0:>10.2f}"
    )
    print(
        f"incidents {t['incidents']}, precision {t['incident_precision']}, false incidents/h "
        f"{t['false_incidents_per_hour']}, median time to detect "
        f"{t['time_to_detect_s']['median']} s,"
        f" defended-ratio check {t['defended_ratio_check']}"
    )
    if t["missed_attacks"]:
        print("missed:", ", ".join(t["missed_attacks"][:40]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=[*SETS, "all"], default="all")
    ap.add_argument("--json", default=None, help="also write the scorecards as JSON")
    args = ap.parse_args()
    cards = {}
    for name in SETS if args.set == "all" else [args.set]:
        card = run_set(name)
        if card is not None:
            show(name, card)
            cards[name] = card
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(cards, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
