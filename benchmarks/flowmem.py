"""Memory per active flow in the flow table (target: <= 1 KB).

``python benchmarks/flowmem.py [--flows N]`` writes N distinct UDP flows (one packet each,
all within a few seconds, so none expires), feeds them to a FlowTable without flushing and
reports the memory the table holds per active flow, measured with tracemalloc (numpy
registers its buffers with it) and, as a cross-check, the growth of the process RSS.
"""

from __future__ import annotations

import argparse
import resource
import struct
import sys
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.decode import IPV4_HDR, decode
from collectors.flowemit import Emitter
from collectors.flowtable import FlowTable
from collectors.pcapio import CaptureReader
from parkwatch.config import FlowSettings
from parkwatch.topology import load_topology


def write_udp_flows(path: Path, n: int) -> None:
    """n Ethernet/IPv4/UDP packets, each a different 5-tuple, 10 microseconds apart."""
    rng = np.random.default_rng(1)
    rec = np.zeros(
        n,
        dtype=[
            ("sec", "<u4"),
            ("usec", "<u4"),
            ("cl", "<u4"),
            ("wl", "<u4"),
            ("eth", "S12"),
            ("et", ">u2"),
            *IPV4_HDR.descr,
            ("sp", ">u2"),
            ("dp", ">u2"),
            ("ulen", ">u2"),
            ("ucsum", ">u2"),
            ("pad", "S4"),
        ],
    )
    t = np.arange(n) * 10
    rec["sec"], rec["usec"] = 1_700_000_000 + t // 1_000_000, t % 1_000_000
    rec["cl"] = rec["wl"] = 46
    rec["eth"] = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01"
    rec["et"], rec["vihl"], rec["len"], rec["ttl"], rec["proto"] = 0x0800, 0x45, 32, 64, 17
    rec["src"] = 0x0A000000 + rng.permutation(n)  # 10.x.y.z, all different
    rec["dst"] = 0x0A640001
    rec["sp"], rec["dp"], rec["ulen"] = 40000, 53, 12
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        f.write(rec.tobytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=500_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flows.pcap"
        write_udp_flows(path, args.flows)
        with CaptureReader(path) as reader:
            batches = [decode(raw) for raw in reader.batches()]
    table = FlowTable(FlowSettings(max_flows=args.flows * 2), Emitter("bench", load_topology(None)))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for d in batches:
        table.add(d)
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = table.active_flows
    print(f"active flows            {n:,}")
    print(f"slot capacity           {table.slots.capacity:,}")
    print(f"traced bytes per flow   {held / n:,.0f}  (target <= 1024)")
    print(f"array bytes per slot    {table.slots.nbytes_per_slot():,.0f}")
    print(f"peak RSS growth / flow  {(rss1 - rss0) * 1024 / n:,.0f}  (includes tracemalloc)")


if __name__ == "__main__":
    main()
